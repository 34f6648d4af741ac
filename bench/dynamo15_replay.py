#!/usr/bin/env python3
"""Run ai-dynamo 1.5.1's replay with 1.4.2's command-line flags (the 1.5.1 oracle's driver).

1.5.1 has no `python -m dynamo.replay` any more but keeps `dynamo.replay.run_trace_replay`. Unlike
1.6.1 (driven by ../shared/tools/dynamo16_replay.py) it takes flat engine arguments as a
`MockEngineArgs` object and has no `execution_model` argument. Writes the flat summary to
--report-json and the whole report object to --report-full-json.
"""
import argparse
import json

from dynamo.mocker import MockEngineArgs
from dynamo.replay import run_trace_replay

ap = argparse.ArgumentParser()
ap.add_argument("trace_files", nargs="+")
ap.add_argument("--trace-format", default="mooncake")
ap.add_argument("--replay-mode", default="offline")
ap.add_argument("--router-mode", default="round_robin")
ap.add_argument("--num-workers", type=int, default=1)
ap.add_argument("--trace-block-size", type=int)
ap.add_argument("--extra-engine-args")
ap.add_argument("--router-config")
ap.add_argument("--arrival-speedup-ratio", type=float, default=1.0)
ap.add_argument("--report-json", required=True)
ap.add_argument("--report-jsonl")
ap.add_argument("--report-full-json")
ap.add_argument("--max-sim-time-seconds", type=float)
a = ap.parse_args()

rep = run_trace_replay(
    a.trace_files, trace_format=a.trace_format, replay_mode=a.replay_mode, router_mode=a.router_mode,
    num_workers=a.num_workers, trace_block_size=a.trace_block_size,
    extra_engine_args=MockEngineArgs.from_json(a.extra_engine_args) if a.extra_engine_args else None,
    router_config=json.loads(a.router_config) if a.router_config else None,
    arrival_speedup_ratio=a.arrival_speedup_ratio, report_jsonl_path=a.report_jsonl,
    max_sim_time_ms=None if a.max_sim_time_seconds is None else a.max_sim_time_seconds * 1000.0)
d = rep.to_dict() if hasattr(rep, "to_dict") else rep
with open(a.report_json, "w") as f:
    json.dump(d.get("summary", d), f, indent=1)
if a.report_full_json:
    with open(a.report_full_json, "w") as f:
        json.dump(d, f, indent=1)
