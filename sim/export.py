"""A `SimResult` as a `pipeline.timeline.SimulatedRun`: what a timeline writer draws (so the Perfetto
writer never imports the simulator). The requests are the result's own records; the compact pass
rows become runs of passes and worker samples."""

from __future__ import annotations

from collections.abc import Sequence

from trace_pipe.pipeline.request_graph import Edge
from trace_pipe.pipeline.timeline import EnginePass, SimulatedRun, WorkerSample

from .result import SimResult


def simulated_run(res: SimResult, edges: Sequence[Edge] = (), description: str = "") -> SimulatedRun:
    """`edges`: the replayed DAG's dependencies, one flow each. A disaggregated run's workers are
    numbered prefill pool first: decode worker k is P + k."""
    npre = res.num_prefill_workers
    passes: list[EnginePass] = []
    samples: list[WorkerSample] = []
    timelines = ((0, res.prefill_timeline), (npre, res.timeline)) if res.prefill_timeline is not None else (
        (0, res.timeline),)
    for first, timeline in timelines:
        runs = list(timeline.runs())
        for k, (wid, start, end, row) in enumerate(runs):
            wid += first
            passes.append(EnginePass(wid, start, end, row[2], row[3], row[4], row[10], row[11]))
            # counters are sampled at each pass start and stay constant through a run
            samples.append(WorkerSample(wid, start, row[5], row[6], row[7], row[8], row[9]))
            nxt = runs[k + 1] if k + 1 < len(runs) else None
            if nxt is None or nxt[0] + first != wid or nxt[1] > end:
                # the worker goes idle: nothing runs or waits then and no prefix hits land, so the
                # counters drop to 0 rather than hold across the gap; freed blocks stay cached
                samples.append(WorkerSample(wid, end, 0, 0, 0, row[8], 0))
    pools = ("prefill",) * npre + ("decode",) * res.num_workers if npre else ()
    return SimulatedRun(res.requests, passes, samples, tuple(edges), npre + res.num_workers, description, pools)
