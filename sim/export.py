"""A `SimResult` as a `pipeline.timeline.SimulatedRun`: the plain records a timeline writer draws
(so the Perfetto writer never imports the simulator)."""

from __future__ import annotations

from collections.abc import Iterable

from trace_pipe.pipeline.timeline import EnginePass, SimulatedRequest, SimulatedRun, WorkerSample

from .result import SimResult


def simulated_run(res: SimResult, edges: Iterable[tuple[str, str, str]] = (), description: str = "") -> SimulatedRun:
    """`edges`: (dependency id, dependent id, relation) of the replayed DAG, one flow each. A
    disaggregated run's workers are numbered prefill pool first: decode worker k is P + k."""
    npre = res.num_prefill_workers

    def handoff(r):
        h = r.handoff
        if h is None:
            return None, None, None
        return h.prefill_worker, h.source_held_ms, h.decode_admit_ms

    reqs = tuple(SimulatedRequest(
        request_id=r.request_id, play=r.play, session_id=r.session_id,
        worker=None if r.worker is None else npre + r.worker, ready_ms=r.ready_ms,
        admit_ms=r.first_admit_ms, first_token_ms=r.first_token_ms, end_ms=r.end_ms,
        prefill_chunks=tuple((c.start_ms, c.end_ms, c.tokens) for c in r.prefill_chunks),
        input_length=r.input_length, output_tokens=r.output_tokens, cached_tokens=r.cached_tokens,
        admissions=r.admissions, status=r.status, **dict(zip(("prefill_worker", "kv_held_ms", "decode_admit_ms"),
                                                             handoff(r)))) for r in res.requests)
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
    return SimulatedRun(reqs, passes, samples, tuple(edges), npre + res.num_workers, description, pools)
