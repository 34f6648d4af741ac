"""Convert throughput and memory against a bare `orjson.loads` pass over the same lines.

Input: the 29 WEKA fixtures' LLM calls, repeated as Dynamo G3b `request_end` rows (with tool rows
from their think times) until about --rows request rows, written once to a temp file. WEKA prompts
are ~100k tokens (1,600 64-token blocks); at that resolution 1M rows would be ~40 GB of JSON, so
the rows carry one hash per 4 WEKA blocks (trace_block_size 256, ~400 hashes per row): the same
prefix structure at a size this machine can parse in a benchmark.

Hash values (`--hashes`): `sequence` (default) writes what Dynamo writes, 64-bit sequence hashes,
each covering its block and the whole prefix before it (a chain's next prompt repeats the
previous one's hashes only up to the first changed block). `content` writes WEKA's own block ids
plus a per-repetition offset (small integers that repeat wherever a block's content does), as
earlier sessions measured: lines are ~30% shorter, so the bare parse is cheaper and the ratio higher.

    python bench/bench_convert.py [--rows 1000000] [--repeat 3] [--hashes sequence|content] [--keep FILE]

Prints rows/s, peak RSS and the time ratio convert / bare parse (target <= 3), both passes
timed in one child process, alternating, best of --repeat each.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
WEKA = SHARED / "fixtures" / "kv_cache_tester_traces"
STRIDE = 4  # WEKA blocks per benchmark block (trace_block_size 256)


_M64 = (1 << 64) - 1


def _sequence(content: list[int], key: str, cache: dict) -> list[int]:
    """64-bit sequence hashes of a block list (each mixes the previous hash with the block's
    content), reusing the chain's last list up to the first block that differs."""
    prev = cache.get(key)
    k = 0
    seq: list[int] = []
    if prev is not None:
        pc, ps = prev
        lo, hi = 0, min(len(pc), len(content))
        while lo < hi:  # longest common prefix, by C-level slice compares
            mid = (lo + hi + 1) // 2
            if pc[:mid] == content[:mid]:
                lo = mid
            else:
                hi = mid - 1
        k = lo
        seq = ps[:k]
    s = seq[-1] if seq else 0
    for c in content[k:]:
        s = (s * 0x9E3779B97F4A7C15 + c * 0xBF58476D1CE4E5B9 + 0x632BE59BD9B4E019) & _M64
        s ^= s >> 29
        seq.append(s)
    cache[key] = (content, seq)
    return seq


def generate(path: Path, rows: int, hashes_kind: str = "sequence") -> int:
    calls = []
    for f in sorted(WEKA.glob("*.json")):
        d = json.loads(f.read_text())
        stack = [(d["requests"], f.stem, 0.0)]
        while stack:
            entries, chain, t0 = stack.pop()
            for i, e in enumerate(entries):
                if e.get("type") == "subagent":
                    stack.append((e["requests"], f"{chain}/{e['agent_id']}", t0 + e["t"]))
                    continue
                calls.append((chain, t0 + e["t"], e.get("api_time") or 1.0, e.get("think_time") or 0.0,
                              e["in"], e["out"], e["hash_ids"][::STRIDE], e["model"]))
    n = 0
    rep = 0
    chains: dict = {}
    with open(path, "wb") as f:
        while n < rows:
            base = rep << 40
            for chain, t, api, think, n_in, n_out, hids, model in calls:
                start = 1_760_000_000_000 + rep * 1_000_000 + int(t * 1000)
                total = api * 1000.0
                sid = f"r{rep}/{chain}"
                hashes = [base + h for h in hids]
                need = -(-n_in // 256)
                hashes = (hashes + [base + (1 << 39) + n + k for k in range(need)])[:need]
                if hashes_kind == "sequence":
                    hashes = _sequence(hashes, sid, chains)
                rec = {"schema": "dynamo.request.trace.v1", "event_type": "request_end",
                       "event_time_unix_ms": start + round(total), "event_source": "dynamo",
                       "agent_context": {"session_id": sid},
                       "request": {"request_id": f"req-{n}", "model": model, "input_tokens": n_in,
                                   "output_tokens": n_out, "cached_tokens": n_in // 2, "request_received_ms": start,
                                   "prefill_wait_time_ms": 1.5, "prefill_time_ms": 120.25, "ttft_ms": 121.75,
                                   "total_time_ms": total, "avg_itl_ms": 11.5, "kv_hit_rate": 0.5, "queue_depth": 0,
                                   "worker": {"prefill_worker_id": n % 8, "prefill_dp_rank": 0,
                                              "decode_worker_id": n % 8, "decode_dp_rank": 0},
                                   "replay": {"trace_block_size": 256, "input_length": n_in,
                                              "input_sequence_hashes": hashes}}}
                f.write(orjson.dumps({"timestamp": n, "event": rec}) + b"\n")
                if think:
                    tool = {"schema": "dynamo.request.trace.v1", "event_type": "tool_end",
                            "event_time_unix_ms": start, "event_source": "harness", "agent_context": {"session_id": sid},
                            "tool": {"tool_call_id": f"call-{n}", "tool_class": "bash", "status": "succeeded",
                                     "started_at_unix_ms": start - int(think * 1000), "ended_at_unix_ms": start,
                                     "duration_ms": think * 1000.0}}
                    f.write(orjson.dumps({"timestamp": n, "event": tool}) + b"\n")
                n += 1
                if n >= rows:
                    break
            rep += 1
    return n


def _child(path: str, out: str, repeat: int) -> None:
    """Both passes in one process, by CPU time, alternating, best of `repeat` each: this machine's
    CPU time varies by 10-15% from run to run, as much as what is being measured."""
    import io

    from trace_pipe.cli.convert_cmd import run_convert

    loads = orjson.loads
    bare = conv = float("inf")
    base_rss = 0.0
    split = (0.0, 0.0, 0)
    for _ in range(repeat):
        t = time.process_time()
        with open(path, "rb") as f:
            for line in f:
                loads(line)
        bare = min(bare, time.process_time() - t)
        base_rss = base_rss or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        t = time.process_time()
        run_convert([path], mooncake=out, agentic_rows=True, out=io.StringIO(), err=io.StringIO())
        dt = time.process_time() - t
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        if dt < conv:
            conv = dt
            split = (r1.ru_utime - r0.ru_utime, r1.ru_stime - r0.ru_stime, r1.ru_minflt - r0.ru_minflt)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"bare": bare, "bare_rss": base_rss, "convert": conv, "rss": rss, "split": split}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--keep", type=Path, default=None,
                    help="reuse/keep the generated input here (an existing file is reused whatever --hashes says)")
    ap.add_argument("--repeat", type=int, default=3, help="best of N alternating runs of each pass")
    ap.add_argument("--hashes", choices=("sequence", "content"), default="sequence",
                    help="hash values: Dynamo's 64-bit sequence hashes (default) or WEKA's content ids")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        _child(a.child[0], a.child[1], int(a.child[2]))
        return
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR", "/tmp")) as tmp:
        path = a.keep or Path(tmp) / "bench.jsonl"
        t = time.perf_counter()
        if not path.exists():
            n = generate(path, a.rows, a.hashes)
            print(f"generated {n:,} request rows with {a.hashes} hashes ({path.stat().st_size / 2**30:.2f} GiB) "
                  f"in {time.perf_counter() - t:.1f}s")
        out = Path(tmp) / "out.jsonl"
        p = subprocess.run([sys.executable, __file__, "--child", str(path), str(out), str(a.repeat)], capture_output=True, text=True,
                           check=True)
        m = json.loads(p.stdout.strip().splitlines()[-1])
        rows = sum(1 for _ in open(out, "rb"))
        print(f"bare orjson.loads pass: {m['bare']:.2f}s CPU (best of {a.repeat})")
        print(f"trace-pipe convert --agentic: {m['convert']:.2f}s CPU, {rows / m['convert']:,.0f} rows/s, "
              f"peak RSS {m['rss']:.0f} MiB ({(m['rss'] - m['bare_rss']) * 2**20 / rows:,.0f} B/row above the bare pass)")
        user, system, faults = m["split"]
        # system time is mostly first-touch page faults, which cost this VM ~8 µs each: memory is time
        print(f"  of which user {user:.2f}s, system {system:.2f}s ({faults:,} page faults)")
        print(f"ratio convert / bare parse: {m['convert'] / m['bare']:.2f} (target <= 3.00)")


if __name__ == "__main__":
    main()
