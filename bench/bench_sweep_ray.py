"""`trace-pipe sweep` on Ray against the local process pool, on the same cores, in one run.

One grid (worker counts x router modes, 8 configurations by default) of the Mooncake conversation
trace (its first --rows rows) goes through `sweep.run_sweep` with --jobs processes, then through
`sweep_ray.run_sweep_ray` on a local Ray started here with the same number of CPUs (a one-node
cluster: every Ray process on 127.0.0.1). Prints both wall times and their ratio, Ray's start-up
(paid once per cluster, not per sweep: `ray start --head` keeps it up) apart, and checks that the
two CSVs are byte-identical. Target: Ray's sweep at most 15% over the local pool.

    .venv/bin/python bench/bench_sweep_ray.py [--rows 6000] [--num-workers 1,2,4,8]
        [--router-mode round_robin,kv_router] [--jobs 2]

How it scales with nodes: each configuration is one task on one CPU, so a grid of G
configurations on C CPUs (all nodes together) takes about max(longest configuration, total
configuration time / C), plus per task a few milliseconds of scheduling and, once per worker
process, the trace fetched from the object store (the pickled size is printed; on other nodes it
crosses the network once per node, then once per worker from that node's shared memory). The
trace is parsed once, by the driver. Adding nodes shortens a grid until the longest single
configuration (the fewest workers on the most requests) is the whole time: a single replay is
not split across CPUs.
"""

from __future__ import annotations

import argparse
import itertools
import os
import pickle
import tempfile
import time

# One machine: Ray binds 127.0.0.1 only and reports nothing to its developers.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"

import ray  # noqa: E402

from trace_pipe.pipeline.replay_input import load_input  # noqa: E402
from trace_pipe.sim import sweep, sweep_ray  # noqa: E402
from trace_pipe.sim.config import EngineArgs, RouterConfig  # noqa: E402
from trace_pipe.sim.versions import VERSIONS  # noqa: E402

TRACE = "/work/shared/fixtures/mooncake/conversation_trace.jsonl"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trace", default=TRACE)
    ap.add_argument("--rows", type=int, default=6000, help="first N rows of the trace")
    ap.add_argument("--num-workers", default="1,2,4,8")
    ap.add_argument("--router-mode", default="round_robin,kv_router")
    ap.add_argument("--trace-block-size", type=int, default=512)
    ap.add_argument("--jobs", type=int, default=2, help="local processes = Ray CPUs")
    a = ap.parse_args()

    with open(a.trace, "rb") as f, tempfile.NamedTemporaryFile(suffix=".jsonl") as cut:
        cut.write(b"".join(itertools.islice(f, a.rows)))
        cut.flush()
        inp = load_input([cut.name], "mooncake", a.trace_block_size)
    rules = VERSIONS["1.6"]
    spec = sweep.SweepSpec(inp.sim_format, inp.block_size, EngineArgs.from_json(None), RouterConfig.from_json(None),
                           None, rules=rules)
    points = sweep.grid(sweep.parse_list(a.num_workers, "--num-workers", int),
                        sweep.parse_list(a.router_mode, "--router-mode"))
    size = len(pickle.dumps((inp.rows, inp.sources, spec), protocol=5))
    print(f"grid: {len(points)} configurations x {len(inp.rows)} requests of {os.path.basename(a.trace)}; "
          f"{a.jobs} CPUs each way; pickled trace {size / 1e6:.1f} MB")

    t = time.perf_counter()
    local = sweep.run_sweep(inp.rows, inp.sources, spec, points, a.jobs)
    t_local = time.perf_counter() - t
    print(f"local pool ({a.jobs} processes): {t_local:8.2f} s")

    t = time.perf_counter()
    ray.init(num_cpus=a.jobs, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    t_start = time.perf_counter() - t
    try:
        t = time.perf_counter()
        on_ray = sweep_ray.run_sweep_ray(inp.rows, inp.sources, spec, points)
        t_ray = time.perf_counter() - t
    finally:
        ray.shutdown()
    print(f"Ray ({a.jobs} CPUs, one node):    {t_ray:8.2f} s   (+ {t_start:.2f} s to start Ray, once per cluster)")
    same = sweep.to_csv(on_ray) == sweep.to_csv(local)
    print(f"ratio Ray / local: {t_ray / t_local:.3f} (target <= 1.15); with start-up: "
          f"{(t_ray + t_start) / t_local:.3f}; CSV byte-identical: {same}")
    if not same:
        raise SystemExit("error: the Ray sweep's CSV differs from the local pool's")


if __name__ == "__main__":
    main()
