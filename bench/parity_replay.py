"""Parity and speed of `trace-pipe replay` against Dynamo's own replay (the oracles).

    .venv/bin/python bench/parity_replay.py            # 1.4.2: round_robin x1 exact, kv_router x4 means
    .venv/bin/python bench/parity_replay.py --bench    # also wall time ratio and peak RSS of both
    .venv/bin/python bench/parity_replay.py --dynamo-runs 5   # kv_router: Dynamo's spread over 5 runs
    .venv/bin/python bench/parity_replay.py --dynamo-version 1.6 [--bench]   # against ai-dynamo 1.6.1
    .venv/bin/python bench/parity_replay.py --dynamo-version 1.5              # against ai-dynamo 1.5.1
    .venv/bin/python bench/parity_replay.py --dynamo-version 1.6 --num-prefill-workers 2 --num-decode-workers 2
                                     # disaggregated round_robin (exact) and kv_router (within the oracle's
                                     # spread) against 1.6.1 (driver: bench/dynamo16_disagg_replay.py)
    .venv/bin/python bench/parity_replay.py --dynamo-version 1.4 --num-prefill-workers 1 --num-decode-workers 1
                                     # the same against 1.4.2 (its own CLI; the Mooncake inputs)

With --dynamo-version 1.6 or 1.5 (see `main_v16`), the inputs are issue 16's: the Mooncake
conversation trace (trace block 512; engine block 64 and 512), WEKA 0277 and 0282, all 29 WEKA
traces together, and Dynamo's weka-two-plays, the WEKA ones converted to agentic Mooncake v2.
round_robin x1 must equal the oracle on every summary key (1e-9 relative; wall-clock keys aside)
and on every per-request row; kv_router x4 must fall inside the oracle's min-max over
--dynamo-runs runs (default 15 here: Dynamo breaks kv_router ties at random, unseeded, and over 5
runs its range is narrow enough that one seeded run of ours falls outside it about as often as a
sixth oracle run would) widened by 0.5%. The 1.6.1 oracle: $TRACE_PIPE_ORACLE16_PYTHON (default
/work/oracle16/bin/python) driven by ../shared/tools/dynamo16_replay.py; 1.5.1:
$TRACE_PIPE_ORACLE15_PYTHON (default /work/oracle15/bin/python) driven by bench/dynamo15_replay.py
(install recipe: dynamo-1.6.md §1).

The oracle runs from its own venv: $TRACE_PIPE_ORACLE_PYTHON, default /work/oracle/bin/python
(`python3 -m venv /work/oracle && /work/oracle/bin/pip install ai-dynamo==1.4.2 ai-dynamo-runtime==1.4.2`).
Both tools run as child processes, one after the other, so wall time and peak RSS are measured the
same way (os.wait4). Inputs: the Mooncake conversation trace, and the WEKA fixtures converted with
`trace-pipe convert --agentic` (Dynamo 1.4.2 writes an empty --report-jsonl for agentic traces, so
those runs are compared on the summary).

kv_router breaks ties at random in Dynamo (ours is seeded), so one Dynamo run is one sample: over 9
runs its agentic x4 mean TTFT ranged 175.0-182.7 ms. The kv_router check therefore runs Dynamo
--dynamo-runs times (default 3) and passes when our mean TTFT lies within Dynamo's observed range
widened by 2% of its mean on each side.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# this interpreter's trace-pipe, wherever its venv is
TRACE_PIPE = [sys.executable, "-m", "trace_pipe.cli.main"]
SHARED = ROOT.parent / "shared"
CONV = SHARED / "fixtures" / "mooncake" / "conversation_trace.jsonl"
WEKA = SHARED / "fixtures" / "kv_cache_tester_traces"
SKIP = {"wall_time_ms", "processed_tokens_per_s", "processed_output_tokens_per_s", "trace_pipe"}


def oracle_python(version: str = "1.4") -> str | None:
    var, default = {"1.4": ("TRACE_PIPE_ORACLE_PYTHON", "/work/oracle/bin/python"),
                    "1.5": ("TRACE_PIPE_ORACLE15_PYTHON", "/work/oracle15/bin/python"),
                    "1.6": ("TRACE_PIPE_ORACLE16_PYTHON", "/work/oracle16/bin/python")}[version]
    p = os.environ.get(var, default)
    return p if Path(p).exists() else None


def oracle_command(version: str, disagg: bool = False) -> list[str] | None:
    """How to run the oracle of `version` with 1.4.2's flags (None when it is not installed);
    `disagg`: its disaggregated replay, with --num-prefill-workers / --num-decode-workers."""
    py = oracle_python(version)
    if py is None:
        return None
    if version == "1.4":
        return [py, "-m", "dynamo.replay"]
    if disagg and version == "1.6":
        driver = ROOT / "bench" / "dynamo16_disagg_replay.py"
    elif disagg:
        return None  # 1.5.1: not measured
    else:
        driver = SHARED / "tools" / "dynamo16_replay.py" if version == "1.6" else ROOT / "bench" / "dynamo15_replay.py"
    return [py, str(driver)] if driver.exists() else None


def run_oracle(py: str, rows: list[dict], tmp: Path, *, fmt: str = "mooncake", mode: str = "round_robin",
               workers: int = 1, tbs: int = 4, engine: dict | None = None) -> tuple[dict, list[dict]]:
    """The oracle's report and --report-jsonl rows for `rows` (a small trace written to `tmp`)."""
    tr = tmp / "t.jsonl"
    tr.write_text("".join(json.dumps(r) + "\n" for r in rows))
    subprocess.run([py, "-m", "dynamo.replay", str(tr), "--trace-format", fmt, "--replay-mode", "offline",
                    "--router-mode", mode, "--num-workers", str(workers), "--trace-block-size", str(tbs),
                    "--extra-engine-args", json.dumps(engine or {}), "--report-json", str(tmp / "r.json"),
                    "--report-jsonl", str(tmp / "r.jsonl")], check=True, capture_output=True, cwd=tmp)
    jl = tmp / "r.jsonl"
    return (json.loads((tmp / "r.json").read_text()),
            [json.loads(x) for x in jl.read_text().splitlines() if x.strip()] if jl.exists() else [])


def request_rows(jsonl) -> list[tuple]:
    """Per-request JSONL rows as comparable tuples (arrival, input, requested output, output, first
    admit, first token, last token, terminal, reused), sorted: Dynamo's own order breaks ties at
    random."""
    return sorted((r["arrival_time_ms"], r["input_length"], r["requested_output_length"], r["output_length"],
                   r["first_admit_ms"], r["first_token_ms"], r["last_token_ms"], r["terminal_time_ms"],
                   r["reused_input_tokens"]) for r in jsonl)


def _run_child(cmd: list[str], cwd: str) -> tuple[float, float, int]:
    t = time.perf_counter()
    # stderr to a file, not a pipe: Dynamo's kv_router logs enough to fill a pipe and block.
    with tempfile.TemporaryFile() as errf:
        p = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=errf)
        _pid, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t
        errf.seek(0)
        err = errf.read().decode(errors="replace")
    if status != 0:
        # (not SystemExit: raised in the forkserver pool's worker, it kills the worker and the
        # caller's apply() waits forever; an ordinary exception reaches the caller)
        raise RuntimeError(f"failed ({status}): {' '.join(cmd)}\n{err[-2000:]}")
    return wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss // 1024


_LAUNCHER = None


def run_child(cmd: list[str], cwd: str) -> tuple[float, float, int]:
    """(wall s, cpu s, peak RSS MiB) of one child process. Children are started from a small
    forkserver process: Linux counts the memory a child is forked (or vforked) with in its
    ru_maxrss, so a child of this process, once it holds the compared reports, would report this
    process's size instead of its own."""
    global _LAUNCHER
    if _LAUNCHER is None:
        import multiprocessing

        _LAUNCHER = multiprocessing.get_context("forkserver").Pool(1)
    return _LAUNCHER.apply(_run_child, (cmd, cwd))


def replay_args(trace: str, fmt: str, mode: str, workers: int, tbs: int, report: str | None = None) -> list[str]:
    out = [trace, "--trace-format", fmt, "--router-mode", mode, "--num-workers", str(workers),
           "--trace-block-size", str(tbs)]
    return out + ["--report-json", report] if report else out


def agentic_input(tmp: str) -> str:
    out = os.path.join(tmp, "weka_agentic.jsonl")
    subprocess.run([*TRACE_PIPE, "convert", str(WEKA), "--mooncake", out, "--agentic",
                    "--format", "v1"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return out


def compare_exact(ours: dict, theirs: dict, tol: float = 1e-6, abs_tol: float = 0.0) -> list[str]:
    """The report keys (but the timing ones) where ours is off Dynamo's by more than `tol`
    relative or `abs_tol` absolute, whichever is larger."""
    bad = []
    for k, v in theirs.items():
        if k in SKIP:
            continue
        x = ours.get(k)
        if x is None:
            bad.append(f"{k}: missing")
        elif abs(x - v) > max(tol * max(abs(v), 1e-12), abs_tol) and not (v == 0 and abs(x) < 1e-12):
            bad.append(f"{k}: ours {x!r} dynamo {v!r}")
    return bad


# wall-clock keys differ run to run; `trace_pipe` is ours alone
SKIP16 = SKIP | {"agentic_lifecycle_digest"}
ROW_KEYS = ("arrival_time_ms", "dispatched_at_ms", "first_admit_ms", "first_token_ms", "last_token_ms",
            "terminal_time_ms", "input_length", "requested_output_length", "output_length", "reused_input_tokens",
            "terminal_status")
#: a disaggregated row's workers and handoff instants, compared besides ROW_KEYS
DISAGG_ROW_KEYS = ("prefill_worker_idx", "decode_worker_idx", "prefill_admit_ms", "source_held_ms",
                   "destination_reserved_ms", "destination_activated_ms", "decode_admit_ms", "source_released_ms",
                   "decode_reused_input_tokens", "prefill_route_overlap_tokens", "decode_route_overlap_tokens",
                   "ttft_ms", "ttst_ms", "itl_ms", "admission_count")
WEKA_TWO_PLAYS = SHARED / "fixtures" / "dynamo" / "weka-two-plays.jsonl"


def compare_report(ours: dict, theirs: dict, tol: float = 1e-9, skip: set = SKIP16) -> list[str]:
    """Every key of the oracle's summary: numbers within `tol` relative, anything else equal."""
    bad = []
    for k, v in theirs.items():
        if k in skip:
            continue
        if k not in ours:
            bad.append(f"{k}: missing")
            continue
        x = ours[k]
        if isinstance(v, (int, float)) and not isinstance(v, bool) and isinstance(x, (int, float)):
            if abs(x - v) > tol * max(abs(v), 1e-12) and not (v == 0 and abs(x) < 1e-12):
                bad.append(f"{k}: ours {x!r} dynamo {v!r}")
        elif x != v:
            bad.append(f"{k}: ours {str(x)[:80]} dynamo {str(v)[:80]}")
    return bad


def compare_rows(ours: list[dict], theirs: list[dict], tol: float = 1e-9,
                 keys: tuple[str, ...] = ROW_KEYS) -> tuple[int, list[str]]:
    """(rows equal, first differences): rows matched by request_id when the oracle writes one, else
    compared as sorted tuples (plain Mooncake rows have random uuids there)."""
    def key(r: dict) -> tuple:
        return tuple(r.get(k) for k in keys)

    def same(a: tuple, b: tuple) -> bool:
        return all(x == y or (isinstance(x, float) and isinstance(y, float) and abs(x - y) <= tol * max(abs(y), 1e-12))
                   for x, y in zip(a, b))
    if theirs and "request_id" in theirs[0]:
        mine = {r["request_id"]: key(r) for r in ours}
        pairs = [(r["request_id"], mine.get(r["request_id"]), key(r)) for r in theirs]
    else:
        a, b = sorted(map(key, ours), key=repr), sorted(map(key, theirs), key=repr)
        pairs = [(str(i), x, y) for i, (x, y) in enumerate(zip(a, b))]
    bad = [f"{rid}: ours {x} dynamo {y}" for rid, x, y in pairs if x is None or not same(x, y)]
    if len(ours) != len(theirs):
        bad.insert(0, f"{len(ours)} rows, dynamo {len(theirs)}")
    return len(pairs) - len(bad), bad


def run_pair(ours_cmd: list[str], theirs_cmd: list[str], args: list[str], tmp: str, runs: int,
             rows: bool = False) -> tuple[dict, list[dict], tuple, tuple, list[dict], list[dict]]:
    """Our report and `runs` oracle reports for one replay (`args` after the trace file's flags:
    both tools get the same), with each tool's (wall, cpu, RSS) of its last run and, with `rows`,
    both per-request JSONL files read back."""
    ro, rt = os.path.join(tmp, "o.json"), os.path.join(tmp, "t.json")
    jo, jt = os.path.join(tmp, "o.jsonl"), os.path.join(tmp, "t.jsonl")
    a = run_child(ours_cmd + args + ["--report-json", ro] + (["--report-jsonl", jo] if rows else []), tmp)
    ours = json.loads(Path(ro).read_text())
    theirs = []
    for _ in range(runs):
        b = run_child(theirs_cmd + args + ["--report-json", rt] + (["--report-jsonl", jt] if rows else []), tmp)
        theirs.append(json.loads(Path(rt).read_text()))
    read = (lambda p: [json.loads(x) for x in Path(p).read_text().splitlines()]) if rows else (lambda p: [])
    return ours, theirs, a, b, read(jo), read(jt)


def print_bench(a: tuple, b: tuple) -> None:
    print(f"   wall  ours {a[0]:6.2f} s  dynamo {b[0]:6.2f} s  ratio {a[0] / b[0]:.2f}")
    print(f"   cpu   ours {a[1]:6.2f} s  dynamo {b[1]:6.2f} s  ratio {a[1] / b[1]:.2f}")
    print(f"   RSS   ours {a[2]:6d} MiB dynamo {b[2]:6d} MiB ratio {a[2] / b[2]:.2f}")


def cases_v16(tmp: str) -> list[tuple[str, str, str, int, int]]:
    """(name, trace, format, trace block size, engine block size) of issue 16's parity inputs."""
    out = [("conversation bs512", str(CONV), "mooncake", 512, 512), ("conversation bs64", str(CONV), "mooncake", 512, 64)]
    weka = [("weka 0277", [str(WEKA / "trace_0277.json")]), ("weka 0282", [str(WEKA / "trace_0282.json")]),
            ("weka all 29", [str(WEKA)]), ("weka-two-plays", [str(WEKA_TWO_PLAYS)])]
    for name, src in weka:
        if not all(Path(x).exists() for x in src):
            continue
        dst = os.path.join(tmp, name.replace(" ", "_") + ".v2.jsonl")
        subprocess.run([*TRACE_PIPE, "convert", *src, "--mooncake", dst, "--agentic", "--format", "v2"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        bs = json.loads(Path(dst).read_text().split("\n", 1)[0])["block_size"]
        out.append((name, dst, "agentic_mooncake", bs, 64))
    return out


def disagg_args(trace: str, fmt: str, tbs: int, prefill: int, decode: int, bs: int,
                mode: str = "round_robin") -> list[str]:
    """The flags of one disaggregated replay, the same for both tools (1.4.2's CLI wants each
    pool's worker_type; trace-pipe and the 1.6.1 driver take it too)."""
    return [trace, "--trace-format", fmt, "--router-mode", mode, "--num-prefill-workers", str(prefill),
            "--num-decode-workers", str(decode), "--trace-block-size", str(tbs),
            "--prefill-engine-args", json.dumps({"block_size": bs, "worker_type": "prefill"}),
            "--decode-engine-args", json.dumps({"block_size": bs, "worker_type": "decode"})]


def main_v16(version: str, args) -> int:
    disagg = args.num_prefill_workers is not None or args.num_decode_workers is not None
    theirs_cmd = oracle_command(version, disagg)
    if theirs_cmd is None:
        print(f"skip: no ai-dynamo {version} oracle{' with a disaggregated driver' if disagg else ''} "
              "(see the module doc)")
        return 0
    ours_cmd = [*TRACE_PIPE, "replay", "--dynamo-version", version]
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name, trace, fmt, tbs, bs in cases_v16(tmp):
            if args.only and args.only not in name:
                continue
            if version == "1.4" and fmt != "mooncake":
                continue  # 1.4.2 replays agentic traces aggregated only
            eng = ["--extra-engine-args", json.dumps({"block_size": bs})]
            layouts = [("round_robin", 1), ("kv_router", 4)]
            if disagg:
                # kv_router: 1.6.1 routes both pools by its KV router (random ties)
                p, d = args.num_prefill_workers or 1, args.num_decode_workers or 1
                layouts = [("round_robin", 1)] + ([("kv_router", p + d)] if version == "1.6" else [])
            for mode, workers in layouts:
                if mode == "kv_router" and args.skip_kv:
                    continue
                flags = (disagg_args(trace, fmt, tbs, p, d, bs, mode) if disagg
                         else replay_args(trace, fmt, mode, workers, tbs) + eng)
                exact = mode == "round_robin"
                ours, runs, a, b, rows_o, rows_t = run_pair(
                    ours_cmd, theirs_cmd, flags, tmp, 1 if exact else max(1, args.dynamo_runs or 15), rows=exact)
                theirs = runs[0]
                print(f"== {name} " + (f"disagg {p}P+{d}D {mode}" if disagg else mode + f" x{workers}"))
                if exact:
                    bad = compare_report(ours, theirs)
                    keys = sum(1 for k in theirs if k not in SKIP16)
                    eq, rbad = compare_rows(rows_o, rows_t, keys=ROW_KEYS + DISAGG_ROW_KEYS if disagg else ROW_KEYS)
                    print(f"   summary (rel 1e-9): {keys - len(bad)}/{keys} keys equal; rows: {eq}/{len(rows_t)} equal")
                    missing = [b for b in bad if b.endswith(": missing")]
                    bad = [b for b in bad if not b.endswith(": missing")] + (
                        [f"missing: {len(missing)} keys ({', '.join(m.split(':')[0] for m in missing[:6])} ...)"]
                        if missing else [])
                    for line in bad[:12] + rbad[:3]:
                        print("   MISMATCH", line)
                    failures += bool(bad or rbad)
                else:
                    for k in ("mean_ttft_ms", "median_ttft_ms", "mean_itl_ms", "duration_ms", "prefix_cache_reused_ratio"):
                        vs = [r[k] for r in runs]
                        lo, hi, x = min(vs), max(vs), ours[k]
                        ok = lo - 0.005 * abs(lo) <= x <= hi + 0.005 * abs(hi)
                        print(f"   {k:28s} ours {x:16.6f} dynamo [{lo:.6f}, {hi:.6f}] {'ok' if ok else 'OUTSIDE'}")
                        failures += not ok
                if args.bench:
                    print_bench(a, b)
    print("PARITY OK" if not failures else f"PARITY FAILED ({failures})")
    return 1 if failures else 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", action="store_true", help="print wall ratio and peak RSS")
    ap.add_argument("--skip-agentic", action="store_true")
    ap.add_argument("--dynamo-runs", type=int, default=None,
                    help="Dynamo runs per kv_router case (random ties); default 3 for 1.4, 15 for 1.5/1.6")
    ap.add_argument("--dynamo-version", default="1.4", choices=("1.4", "1.5", "1.6"))
    ap.add_argument("--only", help="1.5/1.6: only the inputs whose name contains this")
    ap.add_argument("--skip-kv", action="store_true", help="1.5/1.6: round_robin only")
    ap.add_argument("--num-prefill-workers", type=int, help="1.6 or 1.4: disaggregated round_robin with this "
                    "many prefill workers (default 1 when --num-decode-workers is given; 1.4: Mooncake inputs only)")
    ap.add_argument("--num-decode-workers", type=int, help="1.6 or 1.4: disaggregated, this many decode workers")
    args = ap.parse_args()
    if args.dynamo_version != "1.4" or args.num_prefill_workers is not None or args.num_decode_workers is not None:
        return main_v16(args.dynamo_version, args)
    py = oracle_python()
    if py is None:
        print("skip: no oracle (set TRACE_PIPE_ORACLE_PYTHON or create /work/oracle)")
        return 0
    if not CONV.exists():
        print(f"skip: fixture missing: {CONV}")
        return 0
    ours_cmd = [*TRACE_PIPE, "replay", "--dynamo-version", "1.4"]
    theirs_cmd = [py, "-m", "dynamo.replay"]
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        cases = [("conversation", str(CONV), "mooncake", 512)]
        if not args.skip_agentic and WEKA.exists():
            cases.append(("weka-agentic", agentic_input(tmp), "agentic_mooncake", 64))
        for name, trace, fmt, tbs in cases:
            for mode, workers in (("round_robin", 1), ("kv_router", 4)):
                ours, runs, a, b, _, _ = run_pair(
                    ours_cmd, theirs_cmd, replay_args(trace, fmt, mode, workers, tbs) + ["--replay-mode", "offline"],
                    tmp, 1 if workers == 1 else max(1, args.dynamo_runs or 3))
                theirs = runs[0]
                print(f"== {name} {mode} x{workers}")
                if workers == 1:
                    bad = compare_exact(ours, theirs)
                    keys = sum(1 for k in theirs if k not in SKIP)
                    print(f"   exact parity (rel 1e-6): {keys - len(bad)}/{keys} keys equal")
                    for line in bad[:20]:
                        print("   MISMATCH", line)
                    failures += bool(bad)
                else:
                    for k in sorted(theirs):
                        if k.startswith("mean_") or k in ("duration_ms", "prefix_cache_reused_ratio", "completed_requests"):
                            vs = [r[k] for r in runs]
                            v, x = sum(vs) / len(vs), ours[k]
                            rel = (x - v) / v if v else 0.0
                            print(f"   {k:45s} ours {x:16.6f} dynamo mean {v:16.6f} [{min(vs):.3f}, {max(vs):.3f}]"
                                  f" diff {rel * 100:+.3f}%")
                            if k == "mean_ttft_ms" and not min(vs) - 0.02 * v <= x <= max(vs) + 0.02 * v:
                                failures += 1
                if args.bench:
                    print_bench(a, b)
    print("PARITY OK" if not failures else f"PARITY FAILED ({failures})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
