"""Parity and speed of `trace-pipe replay` against Dynamo's own replay (ai-dynamo 1.4.2, the oracle).

    .venv/bin/python bench/parity_replay.py            # parity: round_robin x1 exact, kv_router x4 means
    .venv/bin/python bench/parity_replay.py --bench    # also wall time ratio and peak RSS of both
    .venv/bin/python bench/parity_replay.py --dynamo-runs 5   # kv_router: Dynamo's spread over 5 runs

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
SHARED = ROOT.parent / "shared"
CONV = SHARED / "fixtures" / "mooncake" / "conversation_trace.jsonl"
WEKA = SHARED / "fixtures" / "kv_cache_tester_traces"
SKIP = {"wall_time_ms", "processed_tokens_per_s", "processed_output_tokens_per_s", "trace_pipe"}


def oracle_python() -> str | None:
    p = os.environ.get("TRACE_PIPE_ORACLE_PYTHON", "/work/oracle/bin/python")
    return p if Path(p).exists() else None


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


def run_child(cmd: list[str], cwd: str) -> tuple[float, float, int]:
    """(wall s, cpu s, peak RSS MiB) of one child process."""
    t = time.perf_counter()
    # stderr to a file, not a pipe: Dynamo's kv_router logs enough to fill a pipe and block.
    with tempfile.TemporaryFile() as errf:
        p = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=errf)
        _pid, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t
        errf.seek(0)
        err = errf.read().decode(errors="replace")
    if status != 0:
        raise SystemExit(f"failed ({status}): {' '.join(cmd)}\n{err[-2000:]}")
    return wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss // 1024


def replay_args(trace: str, fmt: str, mode: str, workers: int, tbs: int, report: str) -> list[str]:
    return [trace, "--trace-format", fmt, "--router-mode", mode, "--num-workers", str(workers),
            "--trace-block-size", str(tbs), "--report-json", report]


def agentic_input(tmp: str) -> str:
    out = os.path.join(tmp, "weka_agentic.jsonl")
    subprocess.run([str(ROOT / ".venv" / "bin" / "trace-pipe"), "convert", str(WEKA), "--mooncake", out, "--agentic"],
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


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", action="store_true", help="print wall ratio and peak RSS")
    ap.add_argument("--skip-agentic", action="store_true")
    ap.add_argument("--dynamo-runs", type=int, default=3, help="Dynamo runs per kv_router case (random ties)")
    args = ap.parse_args()
    py = oracle_python()
    if py is None:
        print("skip: no oracle (set TRACE_PIPE_ORACLE_PYTHON or create /work/oracle)")
        return 0
    if not CONV.exists():
        print(f"skip: fixture missing: {CONV}")
        return 0
    ours_cmd = [str(ROOT / ".venv" / "bin" / "trace-pipe"), "replay"]
    theirs_cmd = [py, "-m", "dynamo.replay"]
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        cases = [("conversation", str(CONV), "mooncake", 512)]
        if not args.skip_agentic and WEKA.exists():
            cases.append(("weka-agentic", agentic_input(tmp), "agentic_mooncake", 64))
        for name, trace, fmt, tbs in cases:
            for mode, workers in (("round_robin", 1), ("kv_router", 4)):
                ro, rt = os.path.join(tmp, "o.json"), os.path.join(tmp, "t.json")
                a = run_child(ours_cmd + replay_args(trace, fmt, mode, workers, tbs, ro), tmp)
                ours = json.loads(Path(ro).read_text())
                runs = []
                for _ in range(1 if workers == 1 else max(1, args.dynamo_runs)):
                    b = run_child(theirs_cmd + replay_args(trace, fmt, mode, workers, tbs, rt)
                                  + ["--replay-mode", "offline"], tmp)
                    runs.append(json.loads(Path(rt).read_text()))
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
                    print(f"   wall  ours {a[0]:6.2f} s  dynamo {b[0]:6.2f} s  ratio {a[0] / b[0]:.2f}")
                    print(f"   cpu   ours {a[1]:6.2f} s  dynamo {b[1]:6.2f} s  ratio {a[1] / b[1]:.2f}")
                    print(f"   RSS   ours {a[2]:6d} MiB dynamo {b[2]:6d} MiB ratio {a[2] / b[2]:.2f}")
    print("PARITY OK" if not failures else f"PARITY FAILED ({failures})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
