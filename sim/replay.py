"""The offline harness: a virtual clock, the request DAG, a router and N workers, driven by one
loop (`drive`) over the worker interface (`ReplayWorker`): mock engine workers under a pass
scheduler (sim/engine.py, sim/schedulers.py; `run_replay`) or recorded service times
(sim/recorded.py, `--timing recorded`).

Per timestamp (dynamo-replay.md §4.2): deliver the outputs of passes ending now (first tokens to
the router; completions free router state and release DAG dependents), release ready requests in
(ready time, trace order) and route them, then start a pass on every idle worker with work. The
clock then jumps to the next pass end or ready time.
"""

from __future__ import annotations

import itertools
import math
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from heapq import heappop, heappush
from typing import Callable, ClassVar, Protocol

from trace_pipe.pipeline.errors import TraceError
from trace_pipe.pipeline.mooncake import Row
from trace_pipe.pipeline.timeline import PrefillChunk, RouteOverlap, SimulatedRequest

from . import agentic_graph
from . import dag as dagmod
from .config import Disaggregation, EngineArgs, RouterConfig
from .engine import EngineWorker, Stats
from .result import PlayRecord, SimResult, Timeline
from .router import make_router
from .schedulers import PassScheduler, scheduler_for
from .timing import TimingModel, make_timing
from .versions import VERSIONS, DynamoRules
from .workload import PromptKeys, SimRequest


AHEAD = True  # decode runs may pass other workers' pass ends that cannot release work (tests compare)


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    num_workers: int = 1
    router_mode: str = "round_robin"
    trace_block_size: int = 512
    engine: EngineArgs = field(default_factory=EngineArgs)
    router: RouterConfig = field(default_factory=RouterConfig)
    arrival_speedup_ratio: float = 1.0
    max_sim_time_ms: float | None = None
    seed: int = 0
    timing: TimingModel | None = None  # default: Dynamo's polynomial, decode input as `rules` says
    record: bool = True  # keep passes, counters and chunks for timeline writers
    # which Dynamo release to reproduce (sim/versions.py); the CLI's default is the newest
    rules: DynamoRules = VERSIONS["1.4"]
    # the input's provenance as Dynamo 1.5+ reports name it, (format, digest): the v2 header's
    # `source` or the raw loader's; None reads it from the v2 header of the first source's file
    graph_source: tuple[str, str] | None = None
    # separate prefill and decode pools (sim/disagg.py; `num_workers` and `engine` then unused)
    disagg: Disaggregation | None = None


def build_requests(rows: list[Row], sources: list[str], fmt: str, tbs: int) -> list[SimRequest]:
    """Lengths and the hash ids prompts are synthesised from (identities are built per request in
    flight, by `PromptKeys`). Plain Mooncake clamps input_length to what the hash ids can
    synthesise; agentic formats reject it (as 1.4.2)."""
    strict = fmt != "mooncake"
    out = []
    for i, r in enumerate(rows):
        cap = len(r.hash_ids) * tbs
        L = r.input_length or cap
        if L > cap:
            if strict:
                raise TraceError(f"{sources[i]}: field `input_length`: {L} tokens but only {cap} tokens can be "
                                 f"synthesized from {len(r.hash_ids)} hash_ids at trace block size {tbs}")
            L = cap
        if L <= 0:
            raise TraceError(f"{sources[i]}: field `input_length`: the prompt is empty (no hash_ids)")
        rid = r.request_id if r.request_id is not None else str(i)
        out.append(SimRequest(i, rid, r.session_id, L, r.output_length, r.hash_ids, sources[i], r.play_id))
    return out


def _check_feasible(reqs: list[SimRequest], a: EngineArgs, sched: PassScheduler, lazy: bool = False) -> dict[int, str]:
    """Requests no worker can ever finish: an error now, or (`lazy`, when a rejection can end a
    play before such a request is released) the errors to raise if they are dispatched; and those
    the pass scheduler could never finish (`EngineWorker.infeasible`), an error now."""
    cap = a.num_gpu_blocks * a.block_size
    infeasible = sched.worker.infeasible
    later: dict[int, str] = {}
    for r in reqs:
        if -(-r.prompt // a.block_size) > a.num_gpu_blocks:
            continue  # rejected at admission, like Dynamo
        if r.prompt + r.out - 1 > cap:
            msg = (f"{r.source}: request {r.request_id!r} needs {r.prompt + r.out - 1} tokens of KV but a "
                   f"worker holds {cap} (num_gpu_blocks x block_size); Dynamo's replay would reach a dead end")
            if not lazy:
                raise TraceError(msg)
            later[r.idx] = msg
        msg = infeasible(r, a)
        if msg is not None:
            raise TraceError(msg)
    return later


def run_replay(rows: list[Row], sources: list[str], fmt: str, opts: ReplayOptions,
               progress: Callable[[int], None] | None = None) -> SimResult:
    if opts.disagg is not None:
        from .disagg import run_disagg

        return run_disagg(rows, sources, fmt, opts, progress)
    t_wall = time.perf_counter()
    if opts.engine.worker_type != "aggregated":
        raise TraceError(f"error: --extra-engine-args: `worker_type` {opts.engine.worker_type} needs disaggregated "
                         "replay (--num-prefill-workers, --num-decode-workers)")
    if opts.num_workers < 1:
        raise TraceError("error: --num-workers must be >= 1")
    if opts.trace_block_size < 1:
        raise TraceError("error: --trace-block-size must be >= 1")
    a = opts.engine
    tbs = opts.trace_block_size
    reqs = build_requests(rows, sources, fmt, tbs)
    rules = opts.rules
    dag = dagmod.build_dag(rows, sources, fmt, opts.arrival_speedup_ratio, rules)
    timing = opts.timing or make_timing("poly", block_size=a.block_size, decode=rules.decode_input)
    stats = Stats()
    prompts = PromptKeys(a.block_size, tbs)
    sched = scheduler_for(a, rules)
    workers = [sched.make(i, a, timing, tbs, stats, opts.record, prompts) for i in range(opts.num_workers)]
    router = make_router(opts.router_mode, workers, opts.router, block_size=a.block_size, trace_block_size=tbs,
                         max_num_batched_tokens=a.max_num_batched_tokens, seed=opts.seed, prompts=prompts,
                         rules=rules)

    ended = PlayEnds.of(dag, rows) if rules.rejection_ends_play else None
    infeasible = _check_feasible(reqs, a, sched, lazy=ended is not None)
    stopped_at = drive(workers, reqs, dag, router, opts, ahead=AHEAD and not opts.record, ended=ended,
                       infeasible=infeasible, progress=progress)
    if stopped_at is None:
        dead_end(reqs, ended)
    return _result(reqs, workers, dag, rows, stats, opts, stopped_at, t_wall)


class ReplayWorker(Protocol):
    """What the replay loop drives: a worker runs one step at a time. `step(now, horizon)` starts
    one and returns its end; what it produces is delivered at that end, after `collect(end)`:
    requests that emitted their first token in `first_tokens`, completed or rejected ones in
    `finished` (in delivery order). A step may run past `horizon` only by its own last pass: the
    next time anything outside the worker can change its queue. Engine workers (sim/engine.py)
    step by passes; recorded service (sim/recorded.py) by its requests' recorded times."""

    wid: int
    busy: bool
    waiting: deque[SimRequest]
    first_tokens: list[SimRequest]
    finished: list[SimRequest]
    #: its steps are engine passes: each ticks the run's event order, as 1.6.1's lifecycle
    #: transcript has them between releases and terminal deliveries (sim/agentic_lifecycle.py)
    LIFECYCLE_PASSES: ClassVar[bool]

    def has_work(self) -> bool: ...

    def n_running(self) -> int: ...

    def step(self, now: float, horizon: float) -> float: ...

    def collect(self, now: float) -> None: ...


def drive(workers: Sequence[ReplayWorker], reqs: list[SimRequest], dag: dagmod.RequestDag, router,
          opts: ReplayOptions, *, ahead: bool, ended: PlayEnds | None = None, infeasible: dict[int, str] | None = None,
          progress: Callable[[int], None] | None = None) -> float | None:
    """Run the replay to its end; return where it stopped (None: nothing was left, or the
    simulated-time limit). `ahead`: a worker's step may run past other workers' step ends that
    cannot release work to it (the tight horizon below); `ended`: plays a rejection ends;
    `infeasible`: requests to refuse (their error) if they are ever dispatched."""
    ready = dag.initial()
    comp: list[tuple[float, int, int]] = []
    # one counter for releases, terminal deliveries and pass starts (also the pass-end heap's
    # tie-break): Dynamo 1.6's lifecycle transcript follows this order within an instant
    order = itertools.count()
    tick = order if type(workers[0]).LIFECYCLE_PASSES else itertools.count()
    now = 0.0
    limit = opts.max_sim_time_ms
    stopped_at = None
    fire = dag.fire
    COMPLETION, DISPATCH = dagmod.COMPLETION, dagmod.DISPATCH
    has_dispatch = dag.mode == "v2"
    # Other workers' pass ends can create arrivals only through DAG dependents or the router
    # queue. A worker's run of identical decode passes must stop at the first pass end at or
    # after the earliest time such an arrival could appear. With a router queue that is any
    # pass end. Otherwise a request with completion dependents releases them no earlier than
    # its end plus the smallest of their delays (`release_after`), so the bound is:
    # - for passes in flight that finish such requests, their end plus that delay (`effects`);
    # - for every other worker X, the start of its next pass (its current pass end, or now)
    #   plus the smallest `release_after` of the requests it holds (`held[X]`): only those can
    #   finish there before X receives anything new, which itself needs an arrival.
    # A lower bound is enough for exactness: it only decides how far one step may run ahead.
    # (Only without pass records: with them, runs would be cut differently than they always were.
    # Then, and with a router queue, a run stops at the earliest pass end in flight, or at once
    # when another worker starts a pass at this instant that may release or drain work.)
    queue_drains = opts.router.router_queue_threshold is not None
    release_after = [math.inf] * len(reqs)
    if dag.has_edges():
        for i, kids in enumerate(dag.children):
            if kids:
                release_after[i] = min((d for _c, t, d in kids if t == COMPLETION), default=math.inf)
    held: list[list[tuple[float, int]]] = [[] for _ in workers]  # heaps of (release_after, idx)
    pass_end = [0.0] * len(workers)

    def held_min(x: int) -> float:
        h = held[x]
        while h and reqs[h[0][1]].status in ("completed", "rejected"):
            heappop(h)
        return h[0][0] if h else math.inf
    effects: list[float] = []

    def dispatch(r: SimRequest, w: int) -> None:
        if infeasible and r.idx in infeasible:
            raise TraceError(infeasible[r.idx])
        r.worker = w
        r.dispatch = now
        r.status = "running"
        workers[w].waiting.append(r)
        if release_after[r.idx] != math.inf:
            heappush(held[w], (release_after[r.idx], r.idx))
        if has_dispatch:
            fire(r.idx, now, DISPATCH, ready)

    while True:
        # 1. outputs of passes ending now
        freed = False
        while comp and comp[0][0] <= now:
            _, _, wid = heappop(comp)
            w = workers[wid]
            w.collect(now)
            router.on_pass_end(wid)
            for r in w.first_tokens:
                router.on_first_token(r)
                freed = True
            if w.finished:
                if ended is not None:
                    ended.note(w.finished)
                for r in w.finished:
                    r.terminal_seq = next(order)
                    router.on_free(r)
                    fire(r.idx, r.terminal, COMPLETION, ready)
                freed = True
                if progress is not None:
                    progress(len(w.finished))
        if freed:
            for r, wi in router.drain(now):
                dispatch(r, wi)
        # 3. release ready requests
        release_ready(ready, reqs, now, router, dispatch, ended, order)
        # 4. start passes on idle workers
        while effects and effects[0] <= now:
            heappop(effects)  # its pass has ended: what it released is in `ready` now
        for w in workers:
            if not w.busy and w.has_work():
                horizon = ready[0][0] if ready else math.inf
                if queue_drains or not ahead:
                    if comp and comp[0][0] < horizon and (queue_drains or dag.has_edges()):
                        horizon = comp[0][0]
                    # a worker that starts a pass later at this instant is not in `comp` yet: its
                    # pass may end at once, releasing what it holds (or draining the router queue)
                    for x in workers:
                        if x is not w and not x.busy and (queue_drains or held[x.wid]) and x.has_work():
                            t = now if queue_drains else now + held_min(x.wid)
                            if t < horizon:
                                horizon = t
                else:
                    if effects and effects[0] < horizon:
                        horizon = effects[0]
                    for x in workers:
                        if x is not w and held[x.wid]:
                            t = (pass_end[x.wid] if x.busy else now) + held_min(x.wid)
                            if t < horizon:
                                horizon = t
                if limit is not None and limit < horizon:
                    horizon = limit
                end = w.step(now, horizon)
                if end == now and not w.finished and not w.first_tokens and not w.n_running():
                    stuck(w, workers, opts.engine)
                w.busy = True
                pass_end[w.wid] = end
                if w.finished and not queue_drains:
                    d = min(release_after[r.idx] for r in w.finished)
                    if d != math.inf:
                        heappush(effects, end + d)
                heappush(comp, (end, next(tick), w.wid))
        nxt, stopped_at = advance(comp, ready, now, limit)
        if nxt is None:
            break
        now = nxt
    return stopped_at


class PlayEnds:
    """1.5.1 and 1.6.1 end an agentic play at its first rejected request: whatever the play has
    not released by then is never released (nor counted), whether or not it depends on it."""

    __slots__ = ("play_of", "ended")

    def __init__(self, play_of: list[int], n: int) -> None:
        self.play_of = play_of
        self.ended = [False] * n

    @classmethod
    def of(cls, dag: dagmod.RequestDag, rows: list[Row]) -> "PlayEnds | None":
        if dag.mode not in ("v2", "agentic"):
            return None  # plain Mooncake rows have no plays
        groups = dagmod.plays(dag, rows)
        play_of = [0] * dag.n
        for k, members in enumerate(groups):
            for i in members:
                play_of[i] = k
        return cls(play_of, len(groups))

    def note(self, finished: list[SimRequest]) -> None:
        for r in finished:
            if r.status == "rejected":
                self.ended[self.play_of[r.idx]] = True

    def blocks(self, idx: int) -> bool:
        return self.ended[self.play_of[idx]]


def release_ready(ready: list, reqs: list[SimRequest], now: float, router, dispatch,
                  ended: PlayEnds | None = None, order=None) -> None:
    """Hand every request the DAG has released by `now` to the router: dispatched to the worker
    it picks, or queued at the router (it dispatches them from `drain` as capacity frees); a
    request of a play a rejection ended stays unreleased."""
    while ready and ready[0][0] <= now:
        t, _o, _turn, idx = heappop(ready)
        if ended is not None and ended.blocks(idx):
            continue
        r = reqs[idx]
        r.ready = t
        if order is not None:
            r.release_seq = next(order)
        wi = router.route(r, now)
        if wi is None:
            r.status = "queued"
        else:
            dispatch(r, wi)


def next_time(events: list, ready: list) -> float:
    """The next instant anything happens: the earliest of the event heap and the release heap
    (both keyed by time first); inf when both are empty."""
    nxt = events[0][0] if events else math.inf
    if ready and ready[0][0] < nxt:
        nxt = ready[0][0]
    return nxt


def advance(events: list, ready: list, now: float, limit: float | None) -> tuple[float | None, float | None]:
    """(the clock's next value, never back; None when the run is over, and where it stopped:
    None when nothing is left, `limit` when the next event lies beyond it)."""
    nxt = next_time(events, ready)
    if nxt == math.inf:
        return None, None
    if limit is not None and nxt > limit:
        return None, limit
    return (nxt if nxt > now else now), None


def stuck(w: ReplayWorker, workers: Sequence[ReplayWorker], a: EngineArgs) -> None:
    """A worker with nothing running could not admit its queue head, and nothing can change that:
    Dynamo's dead end. A prompt over the token budget with chunked prefill disabled is only
    known to be one here: with a large enough cached prefix it is admitted (observed)."""
    n = sum(x.n_running() + len(x.waiting) for x in workers)
    head = w.waiting[0] if w.waiting else None
    if head is not None and not a.enable_chunked_prefill and head.prompt > a.max_num_batched_tokens:
        raise TraceError(f"{head.source}: request {head.request_id!r} has a {head.prompt}-token prompt, more than "
                         f"max_num_batched_tokens {a.max_num_batched_tokens} with chunked prefill disabled, and "
                         f"not enough of it is cached; Dynamo's replay would reach a dead end with {n} in-flight "
                         f"requests remaining")
    raise TraceError(f"error: offline replay reached a dead end with {n} in-flight requests remaining")


def dead_end(reqs: list[SimRequest], ended: PlayEnds | None = None) -> None:
    """Dynamo's error when a finished run leaves requests never released or never served (but
    those of a play a rejection ended)."""
    pending = sum(1 for r in reqs if r.status in ("pending", "queued") and not (ended and ended.blocks(r.idx)))
    if pending:
        raise TraceError(f"error: offline replay reached a dead end with {pending} in-flight requests remaining")


def _emitted(r: SimRequest, workers: list[EngineWorker]) -> int:
    if r.status == "running" and r.worker >= 0:
        w = workers[r.worker]
        if w.dec.get(r.seq) is r:
            return w.dclock - r.base
    return r.g if r.status != "completed" else r.out


_REPORT_STATUS = {"running": "incomplete", "pending": "not_started", "queued": "not_started"}


def report_status(status: str) -> str:
    """A request's status in the report: in service when the run stopped is "incomplete", never
    dispatched "not_started"; "completed" and "rejected" as they are."""
    return _REPORT_STATUS.get(status, status)


def _result(reqs: list[SimRequest], workers: list[EngineWorker], dag: dagmod.RequestDag, rows: list[Row],
            stats: Stats, opts: ReplayOptions, stopped_at: float | None, t_wall: float) -> SimResult:
    def opt(x: float) -> float | None:
        return None if x < 0 else x

    play_recs, names = play_records(dag, rows, reqs)
    recs = []
    kv = opts.router_mode == "kv_router"
    for r in reqs:
        status = report_status(r.status)
        recs.append(SimulatedRequest(
            request_id=r.request_id, session_id=r.session_id, play=names.get(r.idx, r.request_id), source=r.source,
            worker=r.worker if r.worker >= 0 else None,
            ready_ms=opt(r.ready), dispatch_ms=opt(r.dispatch), first_admit_ms=opt(r.first_admit),
            first_token_ms=opt(r.t_first), second_token_ms=opt(r.t_second), last_token_ms=opt(r.t_last),
            end_ms=opt(r.terminal), input_length=r.prompt, requested_output_length=r.out,
            output_tokens=_emitted(r, workers), cached_tokens=r.reused_max,
            first_cached_tokens=max(0, r.reused_first), admissions=r.n_admit,
            prefill_chunks=tuple(PrefillChunk(*c) for c in (r.chunks or ())), status=status,
            admission_history=tuple(r.admits), prefill_tokens=r.prefilled,
            route=RouteOverlap(r.overlap_blocks, r.best_overlap_blocks, r.overlap_blocks * opts.engine.block_size)
            if kv and r.worker >= 0 else None,
            release_seq=r.release_seq if r.release_seq >= 0 else None,
            terminal_seq=r.terminal_seq if r.terminal_seq >= 0 else None))

    timeline = Timeline(tuple(tuple(w.passes) for w in workers))
    gaps = tuple(sorted(stats.gaps.items()))
    return SimResult(tuple(recs), timeline, tuple(play_recs), gaps, len(workers),
                     (time.perf_counter() - t_wall) * 1000.0, stopped_at, report_graph(dag, rows, reqs, opts))


def play_records(dag: dagmod.RequestDag, rows: list[Row], reqs: list[SimRequest]) -> tuple[list[PlayRecord], dict[int, str]]:
    """Each play's span, completion and critical path, and every request's play name (one rule
    for the engine replay and `--timing recorded`)."""
    play_recs = []
    names: dict[int, str] = {}
    terminal = [r.terminal if r.terminal >= 0 else math.inf for r in reqs]
    for members in dagmod.plays(dag, rows):
        first = rows[members[0]]
        name = first.play_id or first.session_id or reqs[members[0]].request_id
        for i in members:
            names[i] = name
        if len(members) == 1 and dag.mode != "v2" and dag.isolated(members[0]):
            continue  # a lone request is not a play worth reporting
        starts = [reqs[i].ready for i in members if reqs[i].ready >= 0]
        ends = [terminal[i] for i in members if terminal[i] != math.inf]
        start = min(starts) if starts else 0.0
        end = max(ends) if ends else start
        chain = dagmod.critical_path(dag, members, [t if t != math.inf else -1.0 for t in terminal])
        waits = tuple(0.0 if dag.binding[i] is None or dag.binding[i].parent is None else dag.binding[i].wait_ms
                      for i in chain)
        play_recs.append(PlayRecord(name, tuple(reqs[i].request_id for i in members), start, end, end - start,
                                    all(reqs[i].status == "completed" for i in members),
                                    tuple(reqs[i].request_id for i in chain), waits))
    return play_recs, names


def report_graph(dag: dagmod.RequestDag, rows: list[Row], reqs: list[SimRequest], opts: ReplayOptions):
    """Dynamo 1.5+ reports name requests and plays by the agentic graph it builds from the rows."""
    if opts.rules.report != "1.4" and (dag.mode == "v2" or (dag.mode == "agentic" and opts.rules.agentic_v1 == "lift")):
        return agentic_graph.build(rows, [r.source for r in reqs], block_size=opts.trace_block_size,
                                   speedup=opts.arrival_speedup_ratio, source=opts.graph_source)
    return None
