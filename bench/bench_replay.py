"""Speed and memory of `trace-pipe replay` against Dynamo's own replay, same inputs, both tools
timed in one run as child processes measured alike (see parity_replay.run_child).

    .venv/bin/python bench/bench_replay.py                     # 1.6 rules against ai-dynamo 1.6.1
    .venv/bin/python bench/bench_replay.py --repeat 3          # best of 3 runs of each tool per input
    .venv/bin/python bench/bench_replay.py --only conversation --skip-kv
    .venv/bin/python bench/bench_replay.py --dynamo-version 1.4 [--skip-agentic]   # against 1.4.2

Inputs (issue 16): the Mooncake conversation trace (trace block 512; engine block 512 and 64), WEKA
0277 and 0282, all 29 WEKA traces together, and Dynamo's weka-two-plays (the WEKA ones converted to
agentic Mooncake v2 with `trace-pipe convert --agentic`), each under round_robin x1 and kv_router x4.
trace-pipe runs as `trace-pipe replay --dynamo-version 1.6`; the oracle as
`$TRACE_PIPE_ORACLE16_PYTHON ../shared/tools/dynamo16_replay.py` (default /work/oracle16/bin/python).
Both write the summary report only (--jsonl: the per-request rows too). A round_robin summary that
differs from the oracle's is flagged (parity itself is parity_replay.py's job).

Wall time, CPU time (user + system) and peak RSS come from os.wait4 on each child. The machine may
be shared: CPU time is the steadier number, and --repeat N keeps each tool's fastest run. The
children run with bytecode caching on (PYTHONDONTWRITEBYTECODE dropped, one warm-up run first), as
an installed tool runs; the start-up lines say what a bare interpreter and the imports cost, which
is the floor under the ratio on small inputs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import parity_replay as pr  # noqa: E402

TP = str(pr.ROOT / ".venv" / "bin" / "trace-pipe")
OURS_PY = str(pr.ROOT / ".venv" / "bin" / "python")


def best(cmd: list[str], cwd: str, repeat: int) -> tuple[float, float, int]:
    """(wall s, cpu s, peak RSS MiB): the fastest of `repeat` runs (its CPU and RSS with it)."""
    return min((pr.run_child(cmd, cwd) for _ in range(max(1, repeat))), key=lambda x: x[0])


def tiny_trace(tmp: str) -> str:
    tiny = os.path.join(tmp, "tiny.jsonl")
    Path(tiny).write_text('{"timestamp": 0, "input_length": 10, "output_length": 2, "hash_ids": [1]}\n')
    return tiny


def startup(theirs_py: str, tmp: str, repeat: int) -> None:
    """What a process costs before it replays anything: the interpreter, then the imports."""
    tiny = tiny_trace(tmp)
    rows = [("python -c pass (ours)", [OURS_PY, "-c", "pass"]),
            ("python -c pass (oracle)", [theirs_py, "-c", "pass"]),
            ("import trace_pipe.cli.main", [OURS_PY, "-c", "import trace_pipe.cli.main"]),
            ("import replay modules", [OURS_PY, "-c", "import trace_pipe.cli.replay_cmd"]),
            ("import dynamo.replay (oracle)", [theirs_py, "-c", "import dynamo.replay"]),
            ("trace-pipe replay, 1 request", [TP, "replay", tiny, "--report-json", os.path.join(tmp, "s.json")]),
            ("oracle replay, 1 request", pr.oracle_command("1.6") + [tiny, "--report-json", os.path.join(tmp, "s.json")])]
    print("== start-up (best of %d)" % max(3, repeat))
    for name, cmd in rows:
        w, c, m = best(cmd, tmp, max(3, repeat))
        print(f"   {name:32s} wall {w:6.3f} s  cpu {c:6.3f} s  RSS {m:5d} MiB")


def main_v16(args) -> int:
    theirs_cmd = pr.oracle_command("1.6")
    if theirs_cmd is None:
        print("skip: no ai-dynamo 1.6 oracle (set TRACE_PIPE_ORACLE16_PYTHON; see parity_replay.py)")
        return 0
    ours_cmd = [TP, "replay", "--dynamo-version", "1.6"]
    flagged = 0
    total = {"ours": 0.0, "dynamo": 0.0}
    with tempfile.TemporaryDirectory() as tmp:
        # warm-up: bytecode caches written, the page cache holding both tools and the inputs
        pr.run_child([TP, "replay", tiny_trace(tmp), "--report-json", os.path.join(tmp, "s.json")], tmp)
        if not args.skip_startup:
            startup(theirs_cmd[0], tmp, args.repeat)
        for name, trace, fmt, tbs, bs in pr.cases_v16(tmp):
            if args.only and args.only not in name:
                continue
            eng = ["--extra-engine-args", json.dumps({"block_size": bs})]
            for mode, workers in (("round_robin", 1), ("kv_router", 4)):
                if mode == "kv_router" and args.skip_kv:
                    continue
                ro, rt = os.path.join(tmp, "o.json"), os.path.join(tmp, "t.json")
                extra_o = ["--report-jsonl", os.path.join(tmp, "o.jsonl")] if args.jsonl else []
                extra_t = ["--report-jsonl", os.path.join(tmp, "t.jsonl")] if args.jsonl else []
                a = best(ours_cmd + pr.replay_args(trace, fmt, mode, workers, tbs, ro) + eng + extra_o, tmp, args.repeat)
                b = best(theirs_cmd + pr.replay_args(trace, fmt, mode, workers, tbs, rt) + eng + extra_t, tmp,
                         args.repeat)
                total["ours"] += a[0]
                total["dynamo"] += b[0]
                note = ""
                if workers == 1:
                    bad = pr.compare_report(json.loads(Path(ro).read_text()), json.loads(Path(rt).read_text()))
                    if bad:
                        flagged += 1
                        note = f"  (summary differs: {len(bad)} keys, e.g. {bad[0][:60]})"
                print(f"== {name} {mode} x{workers}{note}")
                print(f"   wall  ours {a[0]:6.2f} s  dynamo {b[0]:6.2f} s  ratio {a[0] / b[0]:.2f}")
                print(f"   cpu   ours {a[1]:6.2f} s  dynamo {b[1]:6.2f} s  ratio {a[1] / b[1]:.2f}")
                print(f"   RSS   ours {a[2]:6d} MiB dynamo {b[2]:6d} MiB ratio {a[2] / b[2]:.2f}")
    if total["dynamo"]:
        print(f"== total wall  ours {total['ours']:.2f} s  dynamo {total['dynamo']:.2f} s  "
              f"ratio {total['ours'] / total['dynamo']:.2f}")
    if flagged:
        print(f"{flagged} round_robin summaries differ from the oracle's (run parity_replay.py)")
    return 1 if flagged else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dynamo-version", default="1.6", choices=("1.4", "1.6"),
                    help="1.6: against ai-dynamo 1.6.1 (issue 16's inputs); 1.4: against 1.4.2 (parity_replay --bench)")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each tool per input; the fastest counts")
    ap.add_argument("--only", help="only the inputs whose name contains this")
    ap.add_argument("--skip-kv", action="store_true", help="round_robin only")
    ap.add_argument("--skip-startup", action="store_true", help="no start-up lines")
    ap.add_argument("--jsonl", action="store_true", help="both tools also write the per-request rows")
    ap.add_argument("--skip-agentic", action="store_true", help="1.4: the conversation trace only")
    args = ap.parse_args()
    # as an installed tool runs: compiled bytecode cached (this sandbox turns caching off)
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    if args.dynamo_version == "1.4":
        sys.argv = [sys.argv[0], "--bench"] + (["--skip-agentic"] if args.skip_agentic else [])
        return pr.main()
    return main_v16(args)


if __name__ == "__main__":
    sys.exit(main())
