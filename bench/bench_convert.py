"""Convert throughput and memory against a bare `orjson.loads` pass over the same lines, on two
input shapes (issue 21), each timed against its own bare pass in the same run.

Both shapes are the 29 WEKA fixtures' LLM calls, repeated as Dynamo G3b rows (with a tool row
from each call's think time) until the wanted size, written once to temp files:

- `long` (--rows request rows, default 1M, one plain file, enveloped `{"timestamp","event"}`
  records): WEKA prompts are ~100k tokens (1,600 64-token blocks); at that resolution 1M rows
  would be ~40 GB of JSON, so the rows carry one hash per 4 WEKA blocks (trace_block_size 256,
  ~400 hashes per row): the same prefix structure at a size this machine can parse. Target <= 2x.
- `short` (--short-lines lines, default 224k, bare records, a gzip shard then a plain shard): one
  hash per 128 WEKA blocks (trace_block_size 8192, ~6 hashes per row) and about one tool row per
  request: the many-short-rows shape where per-row Python, not parsing, sets the pace. Target <= 2.5x.

Hash values (`--hashes`): `sequence` (default) writes what Dynamo writes, 64-bit sequence hashes,
each covering its block and the whole prefix before it (a chain's next prompt repeats the
previous one's hashes only up to the first changed block). `content` writes WEKA's own block ids
plus a per-repetition offset (small integers that repeat wherever a block's content does).

    python bench/bench_convert.py [--shape both|long|short] [--rows 1000000] [--short-lines 224000]
                                  [--repeat 3] [--hashes sequence|content] [--keep DIR]

Prints rows/s, peak RSS and the time ratio convert --agentic / bare parse per shape, both passes
timed in one child process per shape, alternating, best of --repeat each (CPU time).
"""

from __future__ import annotations

import argparse
import gzip
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
TARGETS = {"long": 2.0, "short": 2.5}


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


def _calls(stride: int) -> list[tuple]:
    calls = []
    for f in sorted(WEKA.glob("*.json")):
        d = json.loads(f.read_text())
        stack = [(d["requests"], f.stem, 0.0)]
        while stack:
            entries, chain, t0 = stack.pop()
            for e in entries:
                if e.get("type") == "subagent":
                    stack.append((e["requests"], f"{chain}/{e['agent_id']}", t0 + e["t"]))
                    continue
                calls.append((chain, t0 + e["t"], e.get("api_time") or 1.0, e.get("think_time") or 0.0,
                              e["in"], e["out"], e["hash_ids"][::stride], e["model"]))
    return calls


def _records(rows: int, hashes_kind: str, stride: int, short: bool):
    """(request row, tool row or None) pairs, `rows` of them."""
    bs = 64 * stride
    n = 0
    rep = 0
    chains: dict = {}
    calls = _calls(stride)
    while True:
        base = rep << 40
        for chain, t, api, think, n_in, n_out, hids, model in calls:
            start = 1_760_000_000_000 + rep * 1_000_000 + int(t * 1000)
            total = api * 1000.0
            sid = f"r{rep}/{chain}"
            hashes = [base + h for h in hids]
            need = -(-n_in // bs)
            hashes = (hashes + [base + (1 << 39) + n + k for k in range(need)])[:need]
            if hashes_kind == "sequence":
                hashes = _sequence(hashes, sid, chains)
            request = {"request_id": f"req-{n}", "model": model, "input_tokens": n_in, "output_tokens": n_out,
                       "cached_tokens": n_in // 2, "request_received_ms": start, "prefill_wait_time_ms": 1.5,
                       "prefill_time_ms": 120.25, "ttft_ms": 121.75, "total_time_ms": total, "avg_itl_ms": 11.5,
                       "kv_hit_rate": 0.5, "queue_depth": 0,
                       "worker": {"prefill_worker_id": n % 8, "prefill_dp_rank": 0,
                                  "decode_worker_id": n % 8, "decode_dp_rank": 0},
                       "replay": {"trace_block_size": bs, "input_length": n_in, "input_sequence_hashes": hashes}}
            if short:
                request["finish_reason_metadata"] = {"finish_reason": "tool_calls", "tool_calls": [
                    {"choice_index": 0, "tool_call_index": 0, "id": f"call-{n}", "name": "bash"}]}
            rec = {"schema": "dynamo.request.trace.v1", "event_type": "request_end",
                   "event_time_unix_ms": start + round(total), "event_source": "dynamo",
                   "agent_context": {"session_id": sid}, "request": request}
            tool = None
            if think or short:
                think_ms = max(1, int(think * 1000))
                tool = {"schema": "dynamo.request.trace.v1", "event_type": "tool_end",
                        "event_time_unix_ms": start, "event_source": "harness", "agent_context": {"session_id": sid},
                        "tool": {"tool_call_id": f"call-{n}", "tool_class": "bash", "status": "succeeded",
                                 "started_at_unix_ms": start - think_ms, "ended_at_unix_ms": start,
                                 "duration_ms": float(think_ms)}}
            yield n, rec, tool
            n += 1
            if n >= rows:
                return
        rep += 1


def generate(path: Path, rows: int, hashes_kind: str = "sequence") -> int:
    """The long-row shape: `rows` enveloped request rows (and their tool rows) in one file."""
    n = 0
    with open(path, "wb") as f:
        for n, rec, tool in _records(rows, hashes_kind, 4, short=False):
            f.write(orjson.dumps({"timestamp": n, "event": rec}) + b"\n")
            if tool is not None:
                f.write(orjson.dumps({"timestamp": n, "event": tool}) + b"\n")
    return n + 1


def generate_short(directory: Path, lines: int, hashes_kind: str = "sequence") -> int:
    """The short-row shape: about `lines` bare lines (a request row and a tool row per call), the
    first half in `a.jsonl.gz`, the rest in `b.jsonl`; returns the lines written."""
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for _, rec, tool in _records(lines // 2, hashes_kind, 128, short=True):
        if tool is not None:
            out.append(orjson.dumps(tool))
        out.append(orjson.dumps(rec))
    half = len(out) // 2
    with gzip.open(directory / "a.jsonl.gz", "wb", compresslevel=6) as f:
        f.write(b"\n".join(out[:half]) + b"\n")
    (directory / "b.jsonl").write_bytes(b"\n".join(out[half:]) + b"\n")
    return len(out)


def _files(path: str) -> list[str]:
    p = Path(path)
    return [str(p)] if p.is_file() else [str(p / "a.jsonl.gz"), str(p / "b.jsonl")]


def _child(path: str, out: str, repeat: int) -> None:
    """Both passes in one process, by CPU time, alternating, best of `repeat` each: this machine's
    CPU time varies by 10-15% from run to run, as much as what is being measured. The bare pass
    reads the same files, gzip included."""
    import io

    from trace_pipe.cli.convert_cmd import run_convert

    loads = orjson.loads
    files = _files(path)
    bare = conv = float("inf")
    base_rss = 0.0
    split = (0.0, 0.0, 0)
    for _ in range(repeat):
        t = time.process_time()
        for name in files:
            with (gzip.open(name, "rb") if name.endswith(".gz") else open(name, "rb")) as f:
                for line in f:
                    loads(line)
        bare = min(bare, time.process_time() - t)
        base_rss = base_rss or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        t = time.process_time()
        run_convert(files, mooncake=out, agentic_rows=True, out=io.StringIO(), err=io.StringIO())
        dt = time.process_time() - t
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        if dt < conv:
            conv = dt
            split = (r1.ru_utime - r0.ru_utime, r1.ru_stime - r0.ru_stime, r1.ru_minflt - r0.ru_minflt)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"bare": bare, "bare_rss": base_rss, "convert": conv, "rss": rss, "split": split}))


def _measure(shape: str, path: Path, out: Path, repeat: int) -> None:
    p = subprocess.run([sys.executable, __file__, "--child", str(path), str(out), str(repeat)], capture_output=True,
                       text=True, check=True)
    m = json.loads(p.stdout.strip().splitlines()[-1])
    rows = sum(1 for _ in open(out, "rb"))
    print(f"[{shape}] bare orjson.loads pass: {m['bare']:.2f}s CPU (best of {repeat})")
    print(f"[{shape}] trace-pipe convert --agentic: {m['convert']:.2f}s CPU, {rows / m['convert']:,.0f} rows/s, "
          f"peak RSS {m['rss']:.0f} MiB ({(m['rss'] - m['bare_rss']) * 2**20 / rows:,.0f} B/row above the bare pass)")
    user, system, faults = m["split"]
    # system time is mostly first-touch page faults, which cost this VM ~8 µs each: memory is time
    print(f"[{shape}]   of which user {user:.2f}s, system {system:.2f}s ({faults:,} page faults)")
    print(f"[{shape}] ratio convert / bare parse: {m['convert'] / m['bare']:.2f} (target <= {TARGETS[shape]:.2f})")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", choices=("both", "long", "short"), default="both")
    ap.add_argument("--rows", type=int, default=1_000_000, help="request rows of the long-row shape")
    ap.add_argument("--short-lines", type=int, default=224_000, help="lines of the short-row shape")
    ap.add_argument("--keep", type=Path, default=None,
                    help="reuse/keep the generated inputs in this directory (long.jsonl, short/); existing "
                         "ones are reused whatever the other options say")
    ap.add_argument("--repeat", type=int, default=3, help="best of N alternating runs of each pass")
    ap.add_argument("--hashes", choices=("sequence", "content"), default="sequence",
                    help="hash values: Dynamo's 64-bit sequence hashes (default) or WEKA's content ids")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        _child(a.child[0], a.child[1], int(a.child[2]))
        return
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR", "/tmp")) as tmp:
        where = a.keep or Path(tmp)
        where.mkdir(parents=True, exist_ok=True)
        for shape in ("short", "long"):
            if a.shape not in ("both", shape):
                continue
            path = where / ("long.jsonl" if shape == "long" else "short")
            t = time.perf_counter()
            if not path.exists():
                if shape == "long":
                    n = generate(path, a.rows, a.hashes)
                    what = f"{n:,} request rows ({path.stat().st_size / 2**30:.2f} GiB)"
                else:
                    n = generate_short(path, a.short_lines, a.hashes)
                    what = f"{n:,} lines over a gzip and a plain shard"
                print(f"[{shape}] generated {what} with {a.hashes} hashes in {time.perf_counter() - t:.1f}s")
            _measure(shape, path, Path(tmp) / f"out-{shape}.jsonl", a.repeat)


if __name__ == "__main__":
    main()
