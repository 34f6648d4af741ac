#!/usr/bin/env python3
"""Run ai-dynamo 1.6.1's disaggregated replay with trace-pipe's flags (the oracle's driver for
bench/parity_replay.py --num-prefill-workers/--num-decode-workers and tests/test_disagg_oracle.py).

1.6.1 selects its disaggregated replay by `prefill_engine_args` / `decode_engine_args` (each a
launch config whose `engine.worker_type` names its pool) and refuses `extra_engine_args` beside
them. Here `--prefill-engine-args` / `--decode-engine-args` take flat MockEngineArgs ({"block_size":
64}), wrapped under "engine" with the pool's worker_type; `--extra-engine-args` alone stands for both
(as in `trace-pipe replay`). Writes the flat summary to --report-json, the whole report to
--report-full-json and the per-request rows to --report-jsonl.
"""
import argparse
import json

from dynamo.llm import KvRouterConfig
from dynamo.replay import run_trace_replay

ap = argparse.ArgumentParser()
ap.add_argument("trace_files", nargs="+")
ap.add_argument("--trace-format", default="mooncake")
ap.add_argument("--replay-mode", default="offline")
ap.add_argument("--router-mode", default="round_robin")
ap.add_argument("--num-prefill-workers", type=int, default=1)
ap.add_argument("--num-decode-workers", type=int, default=1)
ap.add_argument("--trace-block-size", type=int)
ap.add_argument("--extra-engine-args")
ap.add_argument("--prefill-engine-args")
ap.add_argument("--decode-engine-args")
ap.add_argument("--router-config")
ap.add_argument("--arrival-speedup-ratio", type=float, default=1.0)
ap.add_argument("--execution-model")
ap.add_argument("--report-json", required=True)
ap.add_argument("--report-jsonl")
ap.add_argument("--report-full-json")
ap.add_argument("--max-sim-time-seconds", type=float)
a = ap.parse_args()


def pool(text, role):
    eng = json.loads(text or a.extra_engine_args or "{}")
    if "engine" not in eng:
        eng = {"engine": eng}
    eng["engine"] = {**eng["engine"], "worker_type": role}
    return eng


exec_model = a.execution_model
if exec_model is None and a.trace_format in ("agentic_mooncake", "agentic-mooncake", "weka", "dynamo"):
    exec_model = "mock"
rep = run_trace_replay(
    a.trace_files,
    trace_format=a.trace_format,
    replay_mode=a.replay_mode,
    router_mode=a.router_mode,
    num_prefill_workers=a.num_prefill_workers,
    num_decode_workers=a.num_decode_workers,
    trace_block_size=a.trace_block_size,
    prefill_engine_args=pool(a.prefill_engine_args, "prefill"),
    decode_engine_args=pool(a.decode_engine_args, "decode"),
    # the disaggregated path takes no dict (the aggregated one converts it): Dynamo's own parser
    router_config=KvRouterConfig.from_json(a.router_config) if a.router_config else None,
    arrival_speedup_ratio=a.arrival_speedup_ratio,
    execution_model=exec_model,
    report_jsonl_path=a.report_jsonl,
    max_sim_time_ms=None if a.max_sim_time_seconds is None else a.max_sim_time_seconds * 1000.0,
)
d = rep.to_dict() if hasattr(rep, "to_dict") else rep
with open(a.report_json, "w") as f:
    json.dump(d["summary"], f, indent=1)
if a.report_full_json:
    with open(a.report_full_json, "w") as f:
        json.dump(d, f, indent=1)
