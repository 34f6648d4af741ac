"""A `SimResult` as a `pipeline.timeline.SimulatedRun`: the plain records a timeline writer draws
(so the Perfetto writer never imports the simulator)."""

from __future__ import annotations

from collections.abc import Iterable

from trace_pipe.pipeline.timeline import EnginePass, SimulatedRequest, SimulatedRun, WorkerSample

from .result import SimResult


def simulated_run(res: SimResult, edges: Iterable[tuple[str, str, str]] = (), description: str = "") -> SimulatedRun:
    """`edges`: (dependency id, dependent id, relation) of the replayed DAG, one flow each."""
    reqs = tuple(SimulatedRequest(
        request_id=r.request_id, play=r.play, session_id=r.session_id, worker=r.worker, ready_ms=r.ready_ms,
        admit_ms=r.first_admit_ms, first_token_ms=r.first_token_ms, end_ms=r.end_ms,
        prefill_chunks=tuple((c.start_ms, c.end_ms, c.tokens) for c in r.prefill_chunks),
        input_length=r.input_length, output_tokens=r.output_tokens, cached_tokens=r.cached_tokens,
        admissions=r.admissions, status=r.status) for r in res.requests)
    passes: list[EnginePass] = []
    samples: list[WorkerSample] = []
    runs = list(res.timeline.runs())
    for k, (wid, start, end, row) in enumerate(runs):
        passes.append(EnginePass(wid, start, end, row[2], row[3], row[4], row[10], row[11]))
        # counters are sampled at each pass start and stay constant through a run
        samples.append(WorkerSample(wid, start, row[5], row[6], row[7], row[8], row[9]))
        nxt = runs[k + 1] if k + 1 < len(runs) else None
        if nxt is None or nxt[0] != wid or nxt[1] > end:
            # the worker goes idle: nothing runs or waits then and no prefix hits land, so the
            # counters drop to 0 rather than hold across the gap; freed blocks stay cached
            samples.append(WorkerSample(wid, end, 0, 0, 0, row[8], 0))
    return SimulatedRun(reqs, passes, samples, tuple(edges), res.num_workers, description)
