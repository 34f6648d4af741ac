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
    passes = [EnginePass(p.worker, p.start_ms, p.end_ms, p.batch_size, p.prefill_tokens, p.decode_requests)
              for p in res.timeline.passes()]
    samples = _samples(res, passes)
    return SimulatedRun(reqs, passes, samples, tuple(edges), res.num_workers, description)


def _samples(res: SimResult, passes: list[EnginePass]) -> list[WorkerSample]:
    """The result's samples (one per pass start) plus one where a worker goes idle: nothing runs
    or waits there then and no prefix hits land, so the counters drop to 0 instead of holding the
    last pass's values across the gap. Cached blocks keep their last value (freed blocks stay
    cached)."""
    out: list[WorkerSample] = []
    for k, c in enumerate(res.timeline.counters()):
        out.append(WorkerSample(c.worker, c.time_ms, c.running, c.waiting, c.kv_blocks_active, c.kv_blocks_cached,
                                c.prefix_hit_tokens))
        p = passes[k]
        nxt = passes[k + 1] if k + 1 < len(passes) else None
        if nxt is None or nxt.worker != p.worker or nxt.start_ms > p.end_ms:
            out.append(WorkerSample(p.worker, p.end_ms, 0, 0, 0, c.kv_blocks_cached, 0))
    return out
