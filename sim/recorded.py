"""`--timing recorded`: every request is served for exactly its recorded service time.

No engine passes and no KV cache: a request admitted at `t` produces its first token at
`t + ttft` (its recorded TTFT, when known and within the service time; else at its end) and
finishes at `t + service`, where `service` is its recorded end - start. What is still simulated
is everything around the service: the DAG release rule (sim/dag.py, so a dependent is released
at its dependencies' simulated completion plus the recorded delay / tool wait), the router, and a
per-worker concurrency limit (`max_num_seqs`): a released request waits in its worker's FIFO
queue until fewer than `max_num_seqs` requests run there.

With enough workers that nothing queues, simulated start and end equal the recorded ones, which
checks the DAG reconstruction and the release rule against the recorded run.

The run is the engine replay's loop (sim/replay.py `drive`) over `RecordedWorker`s, so per
timestamp it is the same: deliver first tokens and completions due now (completions release
dependents), drain the router queue, release ready requests in (ready time, trace order) and
route them, then admit on every worker with a free slot. The workers share one event queue
(`RecordedService`): every worker's step ends at its next event (or the next release), so all of
them are idle whenever a request can reach any of them, and the events of one instant are
delivered together in admission order, first tokens before completions.

The timeline has one "pass" per stretch of constant membership on a worker (batch size =
running requests, prefill tokens = prompts admitted at its start, decode requests = running
requests past their first token); `kv_blocks_active` counts the running requests' prompt blocks
(`block_size`); cached blocks and prefix hits are 0 (no cache is modelled).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from heapq import heappop, heappush
from typing import Callable

from trace_pipe.pipeline.errors import TraceError
from trace_pipe.pipeline.mooncake import Row
from trace_pipe.pipeline.timeline import PrefillChunk, SimulatedRequest

from . import dag as dagmod
from .replay import ReplayOptions, dead_end, drive, play_records, report_graph, report_status
from .result import SimResult, Timeline
from .router import make_router
from .workload import SimRequest

_FIRST, _DONE = 0, 1


@dataclass(frozen=True, slots=True)
class Service:
    """A request's recorded service: total time (end - start) and time to first token, in ms."""

    duration_ms: float
    ttft_ms: float | None = None


class RecordedService:
    """The recorded service of one run: every worker's FIFO queue in front of one event queue of
    first tokens and completions, (time, first tokens before completions, admission order)."""

    __slots__ = ("service", "speed", "limit", "workers", "events", "seq")

    def __init__(self, n: int, service: Sequence[Service], speed: float, limit: int) -> None:
        self.service = service
        self.speed = speed
        self.limit = limit
        self.workers = [RecordedWorker(i, self) for i in range(n)]
        self.events: list[tuple[float, int, int, SimRequest]] = []  # (time, kind, admission, request)
        self.seq = 0  # admissions so far, over every worker

    def admit(self, now: float) -> None:
        """On every worker in turn, admit from the head of its queue while fewer than
        `max_num_seqs` run there (what is left after one call waits for a completion)."""
        events = self.events
        for w in self.workers:
            q = w.waiting
            while q and w.running < self.limit:
                r = q.popleft()
                w.running += 1
                s = self.service[r.idx]
                dur = s.duration_ms / self.speed
                r.first_admit = now
                r.n_admit = 1
                r.g = r.out
                if r.out:
                    first = dur if s.ttft_ms is None else min(max(0.0, s.ttft_ms / self.speed), dur)
                    r.t_first = now + first
                    r.t_last = now + dur
                    r.chunks = [(now, r.t_first, r.prompt)]
                    heappush(events, (r.t_first, _FIRST, self.seq, r))
                    end = r.t_last
                else:  # 0 output tokens: its whole service is prefill, and no token is emitted
                    end = now + dur
                    r.chunks = [(now, end, r.prompt)]
                heappush(events, (end, _DONE, self.seq, r))
                self.seq += 1

    def deliver(self, now: float, w: RecordedWorker) -> None:
        """Hand every event due by `now` to `w`, the first worker whose step ends then."""
        events = self.events
        first: list[SimRequest] = []
        done: list[SimRequest] = []
        while events and events[0][0] <= now:
            t, kind, _, r = heappop(events)
            if kind == _FIRST:
                first.append(r)
                continue
            r.status = "completed"
            r.terminal = t
            self.workers[r.worker].running -= 1
            done.append(r)
        w.first_tokens = first
        w.finished = done


class RecordedWorker:
    """A worker of the recorded service, as the replay loop drives it (sim/replay.py
    `ReplayWorker`). A step admits (on every worker: the service's next event depends on all of
    them) and ends at the service's next event, or sooner at the horizon; the events are
    delivered when the step ends (`collect`), not when it starts: admissions at the same instant
    on workers stepped later may come first."""

    __slots__ = ("wid", "service", "waiting", "running", "busy", "first_tokens", "finished")
    # its steps are not engine passes: they take no place in the run's event order
    LIFECYCLE_PASSES = False

    def __init__(self, wid: int, service: RecordedService) -> None:
        self.wid = wid
        self.service = service
        self.waiting: deque[SimRequest] = deque()
        self.running = 0  # admitted and not yet delivered as completed
        self.busy = False
        self.first_tokens: list[SimRequest] = []
        self.finished: list[SimRequest] = []

    def has_work(self) -> bool:
        return bool(self.waiting) or self.running > 0

    def n_running(self) -> int:
        return self.running

    def step(self, now: float, horizon: float) -> float:
        s = self.service
        s.admit(now)
        self.first_tokens = []
        self.finished = []
        t = s.events[0][0]  # this worker runs something, so an event is pending
        # Every worker's step ends at the same time: the next event, or the next release (the
        # horizon). A horizon at `now` is the simulated-time limit (the loop stops past it) or
        # another worker's step ending now, which is an event now.
        return t if t <= horizon or horizon <= now else horizon

    def collect(self, now: float) -> None:
        self.busy = False
        self.service.deliver(now, self)


def run_recorded(rows: list[Row], sources: list[str], fmt: str, opts: ReplayOptions, service: Sequence[Service],
                 progress: Callable[[int], None] | None = None) -> SimResult:
    """Replay `rows` with each request taking its recorded `service` (same order as `rows`)."""
    t_wall = time.perf_counter()
    if opts.num_workers < 1:
        raise TraceError("error: --num-workers must be >= 1")
    if len(service) != len(rows):
        raise ValueError("one Service per row")
    if opts.router_mode == "kv_router":
        raise TraceError("error: --router-mode kv_router needs the engine's KV cache; with --timing recorded use "
                         "round_robin, least_loaded or random")
    a = opts.engine
    speed = a.speedup_ratio if a.speedup_ratio not in (0, 1) else 1.0
    for i, s in enumerate(service):
        if not (math.isfinite(s.duration_ms) and s.duration_ms >= 0):
            raise TraceError(f"{sources[i]}: recorded service time must be a finite number >= 0, got {s.duration_ms}")
    reqs = _requests(rows, sources)
    dag = dagmod.build_dag(rows, sources, fmt, opts.arrival_speedup_ratio, opts.rules)
    n_w = opts.num_workers
    svc = RecordedService(n_w, service, speed, a.max_num_seqs)
    router = make_router(opts.router_mode, svc.workers, opts.router, block_size=a.block_size,
                         trace_block_size=opts.trace_block_size, max_num_batched_tokens=a.max_num_batched_tokens,
                         seed=opts.seed)
    # every worker's step ends at the service's next event (see RecordedWorker.step): the
    # pass-end horizon is exact, and a run-ahead bound would only split steps
    stopped_at = drive(svc.workers, reqs, dag, router, opts, ahead=False, progress=progress)
    if stopped_at is None:
        dead_end(reqs)
    return _result(reqs, dag, rows, opts, stopped_at, t_wall, n_w)


def _requests(rows: list[Row], sources: list[str]) -> list[SimRequest]:
    """Only what routing and the report read: no prompt identities (no cache is modelled, and
    interning every prompt's hash chain would be most of the run's time)."""
    out = []
    for i, r in enumerate(rows):
        L = r.input_length or 0
        rid = r.request_id if r.request_id is not None else str(i)
        out.append(SimRequest(i, rid, r.session_id, L, r.output_length, [], sources[i], r.play_id))
    return out


def _second_token(r: SimRequest) -> float:
    if r.out < 2:
        return -1.0
    return r.t_first + (r.t_last - r.t_first) / (r.out - 1)


def _timeline(reqs: list[SimRequest], n_w: int, block_size: int) -> Timeline:
    """Per worker, one raw row per stretch of constant membership (see the module doc)."""
    per: list[list[tuple[float, int, int]]] = [[] for _ in range(n_w)]
    # (time, order, request idx): order 0 = end (frees a slot first), 1 = first token, 2 = admit, 3 = queued
    for r in reqs:
        if r.worker < 0 or r.first_admit < 0:
            if r.worker >= 0 and r.dispatch >= 0:
                per[r.worker].append((r.dispatch, 3, r.idx))
            continue
        ev = per[r.worker]
        if r.first_admit > r.dispatch:
            ev.append((r.dispatch, 3, r.idx))
            ev.append((r.first_admit, 4, r.idx))  # leaves the queue
        ev.append((r.first_admit, 2, r.idx))
        if r.terminal >= 0:
            if r.out:
                ev.append((r.t_first, 1, r.idx))
            ev.append((r.terminal, 0, r.idx))
    raw = []
    for evs in per:
        evs.sort()
        rows = []
        run = wait = dec = blocks = 0
        k = 0
        while k < len(evs):
            t = evs[k][0]
            admitted = 0
            while k < len(evs) and evs[k][0] == t:
                _, kind, idx = evs[k]
                r = reqs[idx]
                nb = -(-r.prompt // block_size)
                if kind == 0:
                    run -= 1
                    dec -= r.out > 0  # a 0-output request never decoded
                    blocks -= nb
                elif kind == 1:
                    dec += 1
                elif kind == 2:
                    run += 1
                    blocks += nb
                    admitted += r.prompt
                elif kind == 3:
                    wait += 1
                else:
                    wait -= 1
                k += 1
            if run > 0 and k < len(evs):
                end = evs[k][0]
                rows.append((t, end, run, admitted, dec, run, wait, blocks, 0, 0, 1, 0.0))
        raw.append(tuple(rows))
    return Timeline(tuple(raw))


def _result(reqs: list[SimRequest], dag: dagmod.RequestDag, rows: list[Row], opts: ReplayOptions,
            stopped_at: float | None, t_wall: float, n_w: int) -> SimResult:
    def opt(x: float) -> float | None:
        return None if x < 0 else x

    play_recs, names = play_records(dag, rows, reqs)
    recs = []
    gaps: dict[float, int] = {}
    for r in reqs:
        status = report_status(r.status)
        done = status == "completed"
        if done and r.out > 1:
            g = (r.t_last - r.t_first) / (r.out - 1)
            gaps[g] = gaps.get(g, 0) + r.out - 1
        recs.append(SimulatedRequest(
            request_id=r.request_id, session_id=r.session_id, play=names.get(r.idx, r.request_id), source=r.source,
            worker=r.worker if r.worker >= 0 else None, ready_ms=opt(r.ready), dispatch_ms=opt(r.dispatch),
            first_admit_ms=opt(r.first_admit), first_token_ms=opt(r.t_first) if done else None,
            second_token_ms=opt(_second_token(r)) if done else None, last_token_ms=opt(r.t_last) if done else None,
            end_ms=opt(r.terminal), input_length=r.prompt, requested_output_length=r.out,
            output_tokens=r.out if done else 0, cached_tokens=0, first_cached_tokens=0, admissions=r.n_admit,
            prefill_chunks=tuple(PrefillChunk(*c) for c in (r.chunks or ())) if done else (), status=status,
            release_seq=r.release_seq if r.release_seq >= 0 else None,
            terminal_seq=r.terminal_seq if r.terminal_seq >= 0 else None))
    timeline = _timeline(reqs, n_w, opts.engine.block_size)
    return SimResult(tuple(recs), timeline, tuple(play_recs), tuple(sorted(gaps.items())), n_w,
                     (time.perf_counter() - t_wall) * 1000.0, stopped_at, report_graph(dag, rows, reqs, opts))
