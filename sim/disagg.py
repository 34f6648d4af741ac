"""Disaggregated replay: a prefill pool and a decode pool, the prompt's KV handed from one to the
other, as ai-dynamo 1.6.1's offline disaggregated replay runs it (measured against the oracle:
tests/test_disagg_cases.py, bench/parity_replay.py).

A released request is routed to a prefill worker as a copy of itself
asking for one output token (none if it asks for none): an ordinary engine request there (prefix cache, chunking, the
version's pass rules). When that copy completes, the prefill worker holds the prompt's KV
(`source_held`) and the request is handed to a decode worker. The
decode worker takes handoffs at the start of its passes, in arrival order, while it has the
sequence slots and the free blocks for the whole prompt (no prefix lookup there: Dynamo reports
none): it reserves them (`destination_reserved`); the transfer then takes the prefill pool's
`kv_transfer_bytes_per_token` x tokens / `kv_transfer_bandwidth` (GB/s), none when unset; once
it is done (`destination_activated`, and the source's blocks are released) the request joins
the decode set at the decode worker's next pass start (`decode_admit`). Every output token,
the first included, comes from a decode pass there, whose u counts the request from its first
pass on (its context = prompt + tokens so far). TTFT is that first decode token's time minus
the release; completions release DAG dependents as in the aggregated replay.

Routing: round robin per pool (prefill over releases, decode over handoffs), or under 1.6 with
`--router-mode kv_router` 1.6.1's KV router per pool: the prefill copies by prefix overlap and
prefill load without active blocks (`KvRouter(track_blocks=False)`: the cost is the prefill term,
the overlap visible as of the last pass end; load from routing to the copy's end), the handoffs by
active prompt blocks alone (`DecodeKvRouter`: no overlap credit, no prefill load, no KV reuse;
blocks from the handoff to the request's end). Ties are broken by the seeded RNG (Dynamo's are
random), so kv_router runs are checked against the oracle's spread (bench/parity_replay.py).

Within one instant the order is Dynamo's: pass ends (prefill pool, then decode, by worker index),
handoffs whose transfer ends, releases, then prefill workers, then decode workers start passes.
"""

from __future__ import annotations

import itertools
import math
import time
from collections import deque
from heapq import heappop, heappush
from typing import Callable

from trace_pipe.pipeline.errors import TraceError
from trace_pipe.pipeline.mooncake import Row
from trace_pipe.pipeline.timeline import Handoff, PrefillChunk, RouteOverlap, SimulatedRequest

from . import dag as dagmod
from .config import EngineArgs
from .engine import EngineWorker, Stats
from .replay import (PlayEnds, ReplayOptions, advance, build_requests, dead_end, play_records, release_ready,
                     report_graph, report_status)
from .result import SimResult, Timeline
from .router import DecodeKvRouter, KvRouter, RoundRobin
from .schedulers import scheduler_for
from .timing import FixedTiming, TimingModel, make_timing
from .workload import PromptKeys, SimRequest

_PREFILL, _DECODE, _ACTIVATE = 0, 1, 2  # event kinds


class HandoffTimes:
    """One request's handoff instants (ms; -1 until reached)."""

    __slots__ = ("held", "reserved", "activated", "admitted", "released")

    def __init__(self) -> None:
        self.held = self.reserved = self.activated = self.admitted = self.released = -1.0


def prefill_class(base: type[EngineWorker]) -> type[EngineWorker]:
    """`base`'s pass rules on a prefill worker: a finished request keeps its blocks (the source of
    the KV handoff) until `release` gives them back to the pool."""

    class PrefillWorker(base):  # type: ignore[misc, valid-type]
        __slots__ = ("deferred",)

        def __init__(self, *a, **k) -> None:
            super().__init__(*a, **k)
            self.deferred: list[SimRequest] = []  # releases asked for while a pass ran
            # the prefill copy's first token is never charged a decode step here (whatever the
            # release's rule for aggregated workers); 1.4.2's copy decodes the rest for free
            self.first_decodes = False

        def _free(self, r: SimRequest) -> None:
            pass  # held for the handoff

        def release(self, r: SimRequest) -> None:
            base._free(self, r)

    PrefillWorker.__name__ = PrefillWorker.__qualname__ = f"Prefill{base.__name__}"
    return PrefillWorker


def decode_class(base: type[EngineWorker]) -> type[EngineWorker]:
    """`base`'s pass rules on a decode worker: handed-off requests join the decode set with their
    prompt's KV in place and no prefill; their first token comes from their first decode pass."""

    class DecodeWorker(base):  # type: ignore[misc, valid-type]
        __slots__ = ("handoffs", "joinable", "transferring")

        def __init__(self, *a, **k) -> None:
            super().__init__(*a, **k)
            self.handoffs: deque[SimRequest] = deque()  # accepted, awaiting their reservation
            self.joinable: list[SimRequest] = []  # KV in place, joining at the next pass start
            self.transferring = 0  # reserved, KV still in flight
            self.inline = False  # handoffs arrive between passes: no block crossings inside runs

        def has_work(self) -> bool:
            return bool(self.joinable) or super().has_work()

        def n_running(self) -> int:
            return super().n_running() + len(self.joinable)

        def decode_run_applies(self) -> bool:
            return not self.joinable and not self.handoffs and super().decode_run_applies()

        def reserve(self, now: float) -> list[tuple[SimRequest, int]]:
            """Reserve sequence slots and prompt blocks for the waiting handoffs, in order, while
            they fit; the reserved requests, in order, each with how many of its blocks this
            pool already held."""
            q = self.handoffs
            pool = self.pool
            bs = self.bs
            out = []
            while q and self.n_running() + len(out) + self.transferring < self.max_seqs:
                r = q[0]
                nb = -(-r.prompt // bs)
                pk = self._keys(r)
                # blocks this pool already holds with the prompt's hashes are shared, not
                # copied (Dynamo's block manager dedups by hash; it reports no reuse here)
                hitb = pool.lookup_after(r.src.run if r.src is not None else None, r.src_n, pk,
                                         r.prompt // bs) if self.caching else []
                if hitb:
                    active_hits, hruns, hrest, hrefs = pool.hits(hitb, pk[0])
                else:
                    active_hits = 0
                if nb - active_hits > pool.free:
                    break
                q.popleft()
                if hitb:
                    pool.take(hruns, hrest, hrefs)
                hit = len(hitb)
                r.blocks = hitb + pool.alloc(nb - hit)
                r.nreg = hit
                r.computed = r.prompt
                out.append((r, hit))
            # the prompts' hashes are the pool's once the round is over: handoffs reserved
            # together do not share blocks with one another
            for r, _hit in out:
                self._register(r, r.prompt)
            return out

        def step(self, now: float, horizon: float = math.inf) -> float:
            j = self.joinable
            zeros = []
            if j:
                d = self.dclock
                for r in j:
                    self._admitted(r, now, 0)
                    if r.out:
                        self._join_decode(r, d)
                        self.fresh.append(r)
                    else:
                        zeros.append(r)  # no token to decode: done when this pass ends
                self.joinable = []
            if self.dec or self.waiting or self.chunking is not None:
                end = super().step(now, horizon)
            else:
                self._begin()
                end = now
            for r in zeros:
                self._finish(r, r.prompt)
                r.terminal = end
            return end

    DecodeWorker.__name__ = DecodeWorker.__qualname__ = f"Decode{base.__name__}"
    return DecodeWorker


class FreeDecode:
    """A timing model whose decode steps take no time (1.4.2's prefill worker)."""

    def __init__(self, inner: TimingModel) -> None:
        self.inner = inner
        self.needs_requests = inner.needs_requests
        self.decode_input = inner.decode_input

    def prefill_ms(self, tokens: int, batch: int, info) -> float:
        return self.inner.prefill_ms(tokens, batch, info)

    def decode_ms(self, active_blocks: int, total_blocks: int, logical_tokens: int, batch: int, info) -> float:
        return 0.0


class FreePrefill(FreeDecode):
    """A timing model whose prefill takes no time (a decode worker recomputing a preempted
    request's context)."""

    def prefill_ms(self, tokens: int, batch: int, info) -> float:
        return 0.0

    def decode_ms(self, active_blocks: int, total_blocks: int, logical_tokens: int, batch: int, info) -> float:
        return self.inner.decode_ms(active_blocks, total_blocks, logical_tokens, batch, info)


def transfer_ms(a: EngineArgs, prompt: int, held_blocks: int, block_size: int) -> float:
    """The KV handoff's duration under the prefill pool's settings: the whole prompt's tokens, or
    (`destination_missing`) the whole blocks the decode worker did not hold already."""
    if a.kv_transfer_bandwidth is None or a.kv_transfer_bytes_per_token is None:
        return 0.0
    tokens = prompt if a.kv_transfer_timing_mode == "full_prompt" else (-(-prompt // block_size) - held_blocks) * block_size
    return tokens * a.kv_transfer_bytes_per_token / (a.kv_transfer_bandwidth * 1e9) * 1000.0


def _pool_timing(opts: ReplayOptions, a: EngineArgs) -> TimingModel:
    if a.timing_model == "fixed":
        return FixedTiming(a.fixed_prefill_ms, a.fixed_decode_ms)
    return opts.timing or make_timing("poly", block_size=a.block_size, decode=opts.rules.decode_input)


def run_disagg(rows: list[Row], sources: list[str], fmt: str, opts: ReplayOptions,
               progress: Callable[[int], None] | None = None) -> SimResult:
    t_wall = time.perf_counter()
    lay = opts.disagg
    assert lay is not None
    if opts.router_mode != "round_robin" and not (opts.router_mode == "kv_router" and opts.rules.disagg_kv_router):
        raise TraceError("error: disaggregated replay supports --router-mode round_robin only (kv_router: not yet)")
    if opts.trace_block_size < 1:
        raise TraceError("error: --trace-block-size must be >= 1")
    pa, da = lay.prefill, lay.decode
    rules = opts.rules
    tbs = opts.trace_block_size
    psched, dsched = scheduler_for(pa, rules), scheduler_for(da, rules)
    if psched.rules is None or dsched.rules is None:
        raise TraceError("error: disaggregated replay runs Dynamo's scheduler only (not `scheduler` vllm_v0)")
    reqs = build_requests(rows, sources, fmt, tbs)
    # the prefill pool's copy of each request: one output token (none for a 0-output request, so
    # a fully cached prompt computes nothing there), or 1.4.2's whole output decoded for free
    whole = rules.prefill_copy_decodes
    pre = [SimRequest(r.idx, r.request_id, r.session_id, r.prompt, r.out if whole else min(r.out, 1), r.hash_ids,
                      r.source, r.play_id) for r in reqs]
    for r in reqs:
        if -(-r.prompt // da.block_size) > da.num_gpu_blocks or r.prompt + r.out - 1 > da.num_gpu_blocks * da.block_size:
            if -(-r.prompt // pa.block_size) <= pa.num_gpu_blocks:
                raise TraceError(f"{r.source}: request {r.request_id!r} needs {r.prompt + r.out - 1} tokens of KV but "
                                 f"a decode worker holds {da.num_gpu_blocks * da.block_size} (num_gpu_blocks x "
                                 f"block_size); Dynamo's replay would reach a dead end")
    dag = dagmod.build_dag(rows, sources, fmt, opts.arrival_speedup_ratio, rules)
    pstats, dstats = Stats(), Stats()
    PW = prefill_class(psched.worker)
    pt = _pool_timing(opts, pa)
    if whole:
        pt = FreeDecode(pt)
    pkeys = PromptKeys(pa.block_size, tbs)
    pw = [PW(i, pa, pt, tbs, pstats, opts.record, pkeys, psched.rules) for i in range(lay.num_prefill_workers)]
    kv = opts.router_mode == "kv_router"
    dkeys = PromptKeys(da.block_size, tbs)
    DW = decode_class(dsched.worker)
    dt = FreePrefill(_pool_timing(opts, da))
    dw = [DW(i, da, dt, tbs, dstats, opts.record, dkeys, dsched.rules) for i in range(lay.num_decode_workers)]
    hand = [HandoffTimes() for _ in reqs]
    ended = PlayEnds.of(dag, rows) if rules.rejection_ends_play else None
    if kv:
        routers = (CopyRouter(KvRouter(pw, opts.router, pa.block_size, tbs, pa.max_num_batched_tokens, opts.seed, pkeys,
                                       rules, track_blocks=False), reqs, pre),
                   DecodeKvRouter(dw, opts.router, da.block_size, opts.seed + 1))
    else:
        routers = (RoundRobin(len(pw)), RoundRobin(len(dw)))
    stopped_at = _drive(reqs, pre, hand, pw, dw, dag, opts, ended, progress, routers)
    if stopped_at is None:
        dead_end(reqs, ended)
        stranded = sum(1 for r in reqs if r.status == "running")
        if stranded:  # blocked on KV that nothing in flight could free
            raise TraceError(f"error: offline replay reached a dead end with {stranded} in-flight requests remaining")
    return _result(reqs, pre, hand, pw, dw, dstats, dag, rows, opts, stopped_at, t_wall)


class CopyRouter:
    """The prefill pool's router: `inner` places each released request's prefill copy (the
    request the prefill worker runs) and sees that copy's first token and end."""

    def __init__(self, inner, reqs: list[SimRequest], pre: list[SimRequest]) -> None:
        self.inner, self.reqs, self.pre = inner, reqs, pre

    def route(self, req: SimRequest, now: float) -> int | None:
        return self.inner.route(self.pre[req.idx], now)

    def on_pass_end(self, worker: int) -> None:
        self.inner.on_pass_end(worker)

    def on_first_token(self, copy: SimRequest) -> None:
        self.inner.on_first_token(copy)

    def on_free(self, copy: SimRequest) -> None:
        self.inner.on_free(copy)

    def drain(self, now: float) -> list[tuple[SimRequest, int]]:
        return [(self.reqs[p.idx], w) for p, w in self.inner.drain(now)]


def _drive(reqs, pre, hand, pw, dw, dag, opts: ReplayOptions, ended, progress, routers) -> float | None:
    lay = opts.disagg
    pa = lay.prefill
    ready = dag.initial()
    # (time, kind, tie, worker or request index): pass ends at one instant are delivered prefill
    # pool first, each pool by worker index (1.6.1: not by start order); transfers by start order
    events: list[tuple] = []
    seq = itertools.count()  # transfers ending at one instant: in start order
    order = itertools.count()  # releases, terminal deliveries, pass starts (the lifecycle order)
    fire = dag.fire
    COMPLETION, DISPATCH = dagmod.COMPLETION, dagmod.DISPATCH
    has_dispatch = dag.mode == "v2"
    prefill_router, decode_router = routers
    kv = not isinstance(prefill_router, RoundRobin)
    limit = opts.max_sim_time_ms
    eager = opts.rules.reserve_when_idle
    # the order workers are driven in within an instant
    pools = (dw, pw) if opts.rules.decode_workers_first else (pw, dw)
    edges = dag.has_edges()
    # a router queue: a prefill pass end may dispatch to any prefill worker
    qd = kv and opts.router.router_queue_threshold is not None
    pwset = set(pw)
    now = 0.0
    stopped_at = None

    def dispatch(r: SimRequest, w: int) -> None:
        p = pre[r.idx]
        r.dispatch = p.dispatch = now
        r.status = p.status = "running"
        p.ready = r.ready
        p.worker = w
        pw[w].waiting.append(p)
        if has_dispatch:
            fire(r.idx, now, DISPATCH, ready)

    def terminal(r: SimRequest) -> None:
        r.terminal_seq = next(order)
        fire(r.idx, r.terminal, COMPLETION, ready)

    def release_source(r: SimRequest) -> None:
        # the prefill worker gives the prompt's blocks back at once when idle, else when its
        # pass ends
        w = pw[pre[r.idx].worker]
        if w.busy:
            w.deferred.append(r)
        else:
            w.release(pre[r.idx])
            hand[r.idx].released = now

    def activate(r: SimRequest) -> None:
        hand[r.idx].activated = now
        dw[r.worker].joinable.append(r)
        release_source(r)

    def reserve(w) -> None:
        # an idle decode worker reserves blocks for its waiting handoffs at once; a busy one
        # when its pass ends
        if w.busy or not w.handoffs:
            return
        for r, held in w.reserve(now):
            hand[r.idx].reserved = now
            d = transfer_ms(pa, r.prompt, held, w.bs)
            if d > 0:
                w.transferring += 1
                heappush(events, (now + d, _ACTIVATE, next(seq), r.idx))
            else:
                activate(r)

    def hand_off(r: SimRequest) -> None:
        w = dw[decode_router.route(r, now)]
        r.worker = w.wid
        w.handoffs.append(r)
        if eager:
            reserve(w)

    def prefill_done(finished: list[SimRequest]) -> None:
        if ended is not None:
            ended.note(finished)
        for p in finished:
            r = reqs[p.idx]
            if p.status == "rejected":
                r.status = "rejected"
                r.terminal = now
                terminal(r)
                if progress is not None:
                    progress(1)
                continue
            hand[r.idx].held = now
            hand_off(r)

    def prefill_end(w) -> None:
        w.collect(now)
        if kv:
            prefill_router.on_pass_end(w.wid)
            for p in w.first_tokens:
                prefill_router.on_first_token(p)
            for p in w.finished:
                prefill_router.on_free(p)
            for r, wi in prefill_router.drain(now):
                dispatch(r, wi)
        if w.deferred:
            for r in w.deferred:
                w.release(pre[r.idx])
                hand[r.idx].released = now
            w.deferred = []
        if w.finished:
            prefill_done(w.finished)

    def decode_end(w) -> None:
        w.collect(now)
        if w.finished:
            if ended is not None:
                ended.note(w.finished)
            for r in w.finished:
                decode_router.on_free(r)
                terminal(r)
            if progress is not None:
                progress(len(w.finished))
        if eager:
            reserve(w)

    while True:
        # 1. pass ends and finished transfers due now, in (time, pool, worker) order
        while events and events[0][0] <= now:
            _t, kind, _s, x = heappop(events)
            if kind == _PREFILL:
                prefill_end(pw[x])
            elif kind == _DECODE:
                decode_end(dw[x])
            else:
                r = reqs[x]
                dw[r.worker].transferring -= 1
                activate(r)
        # 2. releases, to the prefill pool
        release_ready(ready, reqs, now, prefill_router, dispatch, ended, order)
        # 3. passes: prefill workers, then decode workers (1.4.2: the other way round); a pass
        # that takes no time is delivered at once and the worker goes on (as Dynamo drives them)
        horizon = ready[0][0] if ready else math.inf
        again = False
        for pool in pools:
            for w in pool:
                if w in pwset:
                    while not w.busy and w.has_work():
                        h = _horizon(w, now, horizon, events, pw, dw, limit, True, edges, qd)
                        if _start(w, now, h, events, order, _PREFILL) > now:
                            break
                        prefill_end(w)
                        again = True
                    continue
                while not w.busy:
                    reserve(w)
                    if not w.has_work():
                        break
                    for r in w.joinable:
                        hand[r.idx].admitted = now
                    h = _horizon(w, now, horizon, events, pw, dw, limit, False, edges)
                    if _start(w, now, h, events, order, _DECODE) > now:
                        break
                    decode_end(w)
                    again = True
        if again:
            continue  # what those passes released or handed off at this instant
        nxt, stopped_at = advance(events, ready, now, limit)
        if nxt is None:
            break
        now = nxt
    return stopped_at


def _horizon(w, now: float, horizon: float, events: list, pw, dw, limit, prefill: bool, edges: bool,
             queue: bool = False) -> float:
    """How far a run of identical decode passes on `w` may go: to the first pass end at or after
    the earliest instant anything could join its queue. A prefill worker's queue grows only by
    releases: the next one due, or (with DAG edges) a decode pass end that completes a request.
    A decode worker's grows by handoffs: a prefill pass end or a transfer's end, or (with edges)
    a decode pass end, whose release then passes the prefill pool; with a router queue, a prefill
    worker's grows at any prefill pass end too (it may dispatch what is queued). A worker of those kinds about
    to start a pass at this instant may end it at once: then now. A lower bound is enough."""
    for t, kind, _s, _x in events:
        if t < horizon and ((kind == _DECODE or queue) if prefill else kind != _DECODE or edges):
            horizon = t
    for x in (dw if prefill else pw):
        if not x.busy and x.has_work() and (edges or not prefill):
            return now
    if edges or (queue and prefill):
        for x in (pw if prefill else dw):
            if x is not w and not x.busy and x.has_work():
                return now
    if limit is not None and limit < horizon:
        horizon = limit
    return horizon


def _start(w, now: float, horizon: float, events, order, kind: int) -> float:
    """Start a pass on `w`; its end (a pass ending later is in `events`, one ending now is the
    caller's to deliver), or inf when `w` could do nothing: what blocks it (KV its finished
    prompts hold for their handoff, a decode worker's full pool) can only change when another
    worker's pass ends; when nothing is left in flight the run ends in `dead_end`."""
    end = w.step(now, horizon)
    if end == now and not w.finished and not w.first_tokens and not w.n_running():
        return math.inf
    next(order)  # a pass start, in the run's event order (as the aggregated loop ticks it)
    if end > now:
        w.busy = True
        heappush(events, (end, kind, w.wid, w.wid))
    return end


def _emitted(r: SimRequest, dw) -> int:
    if r.status == "running" and r.worker >= 0:
        w = dw[r.worker]
        if w.dec.get(r.seq) is r:
            return w.dclock - r.base
        return 0
    return r.g if r.status != "completed" else r.out


def _result(reqs, pre, hand, pw, dw, dstats: Stats, dag, rows, opts: ReplayOptions, stopped_at, t_wall) -> SimResult:
    def opt(x: float) -> float | None:
        return None if x < 0 else x

    play_recs, names = play_records(dag, rows, reqs)
    recs = []
    kv = opts.router_mode == "kv_router"
    pbs = opts.disagg.prefill.block_size
    for r in reqs:
        p = pre[r.idx]
        h = hand[r.idx]
        status = report_status(r.status)
        ho = None
        if p.worker >= 0:
            ho = Handoff(prefill_worker=p.worker, prefill_admit_ms=opt(p.first_admit), source_held_ms=opt(h.held),
                         destination_reserved_ms=opt(h.reserved), destination_activated_ms=opt(h.activated),
                         decode_admit_ms=opt(h.admitted), source_released_ms=opt(h.released),
                         decode_reused_tokens=r.reused_max if h.admitted >= 0 else None,
                         decode_admissions=tuple(r.admits), prefill_reused_tokens=p.reused_max)
        recs.append(SimulatedRequest(
            request_id=r.request_id, session_id=r.session_id, play=names.get(r.idx, r.request_id), source=r.source,
            worker=r.worker if r.worker >= 0 else None,
            ready_ms=opt(r.ready), dispatch_ms=opt(r.dispatch), first_admit_ms=opt(p.first_admit),
            first_token_ms=opt(r.t_first), second_token_ms=opt(r.t_second), last_token_ms=opt(r.t_last),
            end_ms=opt(r.terminal), input_length=r.prompt, requested_output_length=r.out,
            output_tokens=_emitted(r, dw), cached_tokens=max(p.reused_max, r.reused_max),
            first_cached_tokens=max(0, p.reused_first), admissions=p.n_admit + r.n_admit,
            prefill_chunks=tuple(PrefillChunk(*c) for c in (p.chunks or ())), status=status,
            admission_history=tuple(p.admits), prefill_tokens=p.prefilled + r.prefilled,
            # the prefill pool's placement (the decode pool's credits no overlap: zeros)
            route=RouteOverlap(p.overlap_blocks, p.best_overlap_blocks, p.overlap_blocks * pbs)
            if kv and p.worker >= 0 else None,
            release_seq=r.release_seq if r.release_seq >= 0 else None,
            terminal_seq=r.terminal_seq if r.terminal_seq >= 0 else None, handoff=ho))
    timeline = Timeline(tuple(tuple(w.passes) for w in dw))
    prefill_timeline = Timeline(tuple(tuple(w.passes) for w in pw))
    gaps = tuple(sorted(dstats.gaps.items()))
    return SimResult(tuple(recs), timeline, tuple(play_recs), gaps, len(dw), (time.perf_counter() - t_wall) * 1000.0,
                     stopped_at, report_graph(dag, rows, reqs, opts), num_prefill_workers=len(pw),
                     prefill_timeline=prefill_timeline)
