"""The mock engine worker's machinery, shared by every pass scheduler: the KV block pool, the
event heap, the pass counter, the pass and request records, admission bookkeeping and the exact
decode fast path. What a pass schedules (which prompts are admitted, chunked, preempted, how a
pass is timed) is the scheduler's: one subclass per rule set, chosen by name from the registry in
sim/schedulers.py (Dynamo's mocker in sim/pass_dynamo.py, vLLM 0.2/0.3 in sim/pass_vllm_v0.py).

Invariant that makes a worker cheap: the running set is always [decode-ready requests in
admission order] + [at most one request part-way through its prompt, last]. Every decode-ready
request schedules exactly one token per decode pass, so its generated count is `dclock - base` (a
per-worker pass counter), and the passes at which it crosses a block boundary or finishes are
known in advance: they sit in a heap keyed by pass number. A pass touches only the requests with
an event.

Between events a worker runs identical decode passes (`_decode_run`), jumped over in closed form
within each float binade (`identical_passes`, bit-exact with the repeated additions). Without
pass records, block-boundary crossings are allocated inside such a run (`_boundaries_inline`):
only the decode time changes at them. Each scheduler says when its next pass is one of such a
run (`decode_run_applies`); the run then replays exactly the passes its `step` would. The
closed-form jump and the inline crossings need a decode time that depends on physical blocks
(1.4.2's u, constant timings): a logical u grows every pass.
"""

from __future__ import annotations

import math
from collections import deque
from heapq import heappop, heappush
from math import ceil, floor, frexp, ldexp
from typing import TYPE_CHECKING

from .kvcache import BlockPool
from .timing import PassInfo, TimingModel, quantize_ms
from .workload import PromptKeys, SimRequest, gen_key

if TYPE_CHECKING:
    from .config import EngineArgs

INLINE = True  # block-boundary crossings inside decode runs (tests compare both)
_BOUNDARY = 0  # needs one more block at pass start
_DONE = 1  # emits its last token at pass end


class EngineWorker:
    """One mock worker's state and the pass mechanics every scheduler shares; `step` (one pass)
    and `decode_run_applies` are the scheduler's (see the module doc)."""

    __slots__ = (
        "wid", "args", "timing", "pool", "bs", "tbs", "G", "mnbt", "max_seqs", "caching", "waiting", "dec",
        "chunking", "ev", "dclock", "seq", "sum_pb", "need_second", "pmemo", "dmemo", "p_speed", "d_speed",
        "stats", "passes", "first_tokens", "finished", "busy", "record", "inline", "prompts", "fresh",
    )
    #: blocks a decode run must leave free after the block-boundary crossings it takes inline
    RUN_RESERVE = 0
    #: its steps are engine passes (the replay loop's worker interface, sim/replay.py)
    LIFECYCLE_PASSES = True

    def __init__(self, wid: int, args: EngineArgs, timing: TimingModel, trace_block_size: int,
                 stats: Stats, record: bool = True, prompts: PromptKeys | None = None) -> None:
        self.wid = wid
        self.args = args
        self.timing = timing
        self.G = args.num_gpu_blocks
        self.pool = BlockPool(self.G)
        self.bs = args.block_size
        self.tbs = trace_block_size
        self.mnbt = args.max_num_batched_tokens
        self.max_seqs = args.max_num_seqs
        self.caching = args.enable_prefix_caching
        self.waiting: deque[SimRequest] = deque()
        self.dec: dict[int, SimRequest] = {}  # seq -> request, admission order
        self.chunking: SimRequest | None = None
        self.ev: list[tuple] = []  # (pass number, kind, seq, epoch, request)
        self.dclock = 0
        self.seq = 0
        self.sum_pb = 0  # sum over dec of (prompt - base): logical context = sum_pb + len(dec)*dclock
        # requests that joined `dec` since the last decode pass, with their epoch then: their
        # next token is their second (TTST), whatever the scheduler
        self.need_second: list[tuple[SimRequest, int]] = []
        # requests that joined `dec` with their prompt's KV handed over (a disaggregated decode
        # worker, sim/disagg.py): the next decode pass emits their first token, which has no gap
        self.fresh: list[SimRequest] = []
        self.pmemo: dict[int, float] = {}
        self.dmemo: dict[int, float] = {}
        self.p_speed = float(args.speedup_ratio)
        self.d_speed = float(args.speedup_ratio) * float(args.decode_speedup_ratio)
        self.stats = stats
        # (start, end, scheduled, prefill tokens, decode reqs, running, waiting, active, cached,
        # hit tokens, repeat, decode ms): `repeat` > 1 is a run of identical decode passes.
        self.passes: list[tuple] = []
        self.first_tokens: list[SimRequest] = []
        self.finished: list[SimRequest] = []
        self.busy = False
        self.record = record
        # block-boundary crossings inside decode runs (pass records would differ: not when recording)
        self.inline = INLINE and not record and timing.decode_input == "physical" and not timing.needs_requests
        # shared with the router and the other workers: identities are compared across them
        self.prompts = prompts or PromptKeys(self.bs, trace_block_size)

    # -- what a scheduler provides -------------------------------------------------------------
    def step(self, now: float, horizon: float = math.inf) -> float:
        """Run one pass starting at `now`; return its end. Requests that emitted their first token
        are left in `first_tokens`, finished/rejected ones in `finished` (in running order).

        When the pass is pure decode with no event due, it and the following identical passes
        are replayed (`_decode_run`) until an event is due or the next pass would start at or
        after `horizon` (the next time anything outside this worker can change its queue)."""
        raise NotImplementedError

    def decode_run_applies(self) -> bool:
        """Whether the next pass is a pure decode pass of every running request, which the
        scheduler would repeat identically until an event is due (the decode fast path)."""
        raise NotImplementedError

    @staticmethod
    def infeasible(r: SimRequest, args: EngineArgs) -> str | None:
        """Why this scheduler could never finish `r` on any worker (checked before the run,
        beyond the KV capacity every scheduler needs), or None."""
        return None

    # -- the replay loop's side (sim/replay.py ReplayWorker) ---------------------------------
    def collect(self, now: float) -> None:
        self.busy = False  # its outputs were known when the pass started

    def has_work(self) -> bool:
        return bool(self.waiting or self.dec or self.chunking is not None)

    def n_running(self) -> int:
        return len(self.dec) + (self.chunking is not None)

    def _begin(self) -> None:
        """A pass starts: no outputs yet, and the events of preempted requests are dropped."""
        self.first_tokens = []
        self.finished = []
        ev = self.ev
        d = self.dclock
        while ev and (ev[0][0] < d or ev[0][3] != ev[0][4].epoch):
            heappop(ev)  # stale: its request was preempted since the event was scheduled

    def _keys(self, r: SimRequest) -> list[int]:
        pk = r.pkeys
        return pk if pk is not None else self.prompts.keys(r)


    def _register(self, r: SimRequest, upto: int) -> None:
        """Hash every block of `r` that `upto` computed tokens fill completely."""
        nfull = upto // self.bs
        lo = r.nreg
        if nfull > lo:
            pk = r.pkeys
            npk = len(pk)
            if nfull <= npk:
                keys = pk[lo:nfull]
            else:
                keys = pk[lo:npk] + [gen_key(r.idx, i) for i in range(max(lo, npk), nfull)]
            if self.pool.register_many(r.blocks[lo:nfull], keys):
                r.dup = True
            r.nreg = nfull

    def _push_decode_events(self, r: SimRequest) -> None:
        last = r.base + r.out - 1  # pass in which it emits its last token
        heappush(self.ev, (last, _DONE, r.seq, r.epoch, r))
        b = r.base + len(r.blocks) * self.bs + 1 - r.prompt
        if b <= last:
            heappush(self.ev, (b, _BOUNDARY, r.seq, r.epoch, r))

    def _admitted(self, r: SimRequest, now: float, cached: int) -> None:
        """Admission bookkeeping: its running-order number and its admission history."""
        r.seq = self.seq
        self.seq += 1
        r.n_admit += 1
        r.admits.append((now, cached))
        if r.first_admit < 0:
            r.first_admit = now
            r.reused_first = cached
        if cached > r.reused_max:
            r.reused_max = cached

    def _join_decode(self, r: SimRequest, base: int) -> None:
        """`r` has its whole known sequence computed: it decodes from pass `base + r.g` on."""
        r.base = base
        self.dec[r.seq] = r
        self.sum_pb += r.prompt - base
        self._push_decode_events(r)

    def _evict(self, v: SimRequest, processed: bool) -> bool:
        """Recompute preemption: free its KV, keep its generated tokens (`processed`: the token
        of this pass is already computed), front of the queue. True when it was decoding (the
        scheduler then says when its last token came)."""
        decoding = v is not self.chunking
        if decoding:
            del self.dec[v.seq]
            g = self.dclock - v.base
            v.g = g
            self.sum_pb -= v.prompt - v.base
            self._register(v, v.prompt + g - 1 + processed)
        else:
            self.chunking = None
        self.pool.release(v.blocks, v.nreg)
        v.blocks = []
        v.computed = 0
        v.nreg = 0
        v.epoch += 1
        self.waiting.appendleft(v)
        return decoding

    def _finish(self, r: SimRequest, computed: int) -> None:
        self._register(r, computed)
        self._free(r)
        r.status = "completed"
        self.finished.append(r)

    def _free(self, r: SimRequest) -> None:
        """A finished request's blocks go back to the pool, their hashes cached."""
        if r.dup:
            self.pool.release(r.blocks, r.nreg)
        else:
            # The next turn of its session usually takes most of these blocks straight back.
            r.run = self.pool.release_run(r.blocks, r.nreg, r.pkeys)
        r.blocks = []
        r.pkeys = None

    def _prefill_ms(self, t: int, k: int, parts: list) -> float:
        timing = self.timing
        if timing.needs_requests:
            info = PassInfo(self.wid, tuple(p[0].request_id for p in parts), tuple(p[2] for p in parts),
                            tuple(p[1] for p in parts), tuple(r.request_id for r in self.dec.values()))
            return quantize_ms(timing.prefill_ms(t, k, info), self.p_speed)
        v = self.pmemo.get(t)
        if v is None:
            v = self.pmemo[t] = quantize_ms(timing.prefill_ms(t, k, None), self.p_speed)
        return v

    def _decode_ms(self, batch: int, logical: int, newly: list) -> float:
        timing = self.timing
        active = self.pool.active
        if timing.needs_requests:
            info = PassInfo(self.wid, (), (), (), tuple(r.request_id for r in self.dec.values())
                            + tuple(r.request_id for r in newly))
            return quantize_ms(timing.decode_ms(active, self.G, logical, batch, info), self.d_speed)
        key = active if timing.decode_input == "physical" else logical
        v = self.dmemo.get(key)
        if v is None:
            v = self.dmemo[key] = quantize_ms(timing.decode_ms(active, self.G, logical, batch, None), self.d_speed)
        return v

    # -- emission ----------------------------------------------------------------------------
    def _prompt_token(self, r: SimRequest, end: float) -> bool:
        """`r` emits the token its prompt pass produced, at `end`; True when it is its first."""
        r.g += 1
        first = r.t_first < 0
        if first:
            r.t_first = end
            self.first_tokens.append(r)
        else:  # a recomputed request resumes
            self.stats.add_gap(end - r.t_last, 1)
            if r.t_second < 0:
                r.t_second = end
        r.t_last = end
        return first

    def _emit_fresh(self, end: float) -> None:
        """The first tokens of the handed-off requests that joined `dec` for this pass: no gap;
        their next token is their second."""
        for r in self.fresh:
            if r.t_first < 0:
                r.t_first = end
                self.first_tokens.append(r)
                if r.out > 1:
                    self.need_second.append((r, r.epoch))
            r.t_last = end
        self.fresh = []

    def _finish_due(self, d: int, end: float) -> None:
        """Finish the decoding requests whose last token is emitted by decode pass `d` (ending at
        `end`); stale events (of a request preempted since) are dropped."""
        ev, dec = self.ev, self.dec
        while ev and ev[0][0] == d:
            _, kind, seq, epoch, r = heappop(ev)
            if r.epoch != epoch or kind != _DONE:
                continue
            del dec[seq]
            self.sum_pb -= r.prompt - r.base
            r.g = r.out
            r.t_last = end
            self._finish(r, r.prompt + r.out - 1)

    # -- the decode fast path ------------------------------------------------------------------
    def _decode_run_if_due(self, now: float, horizon: float) -> float | None:
        """The run of identical decode passes starting at `now` (its end), when no event other
        than block-boundary crossings taken inline is due at its first pass; else None (the
        scheduler runs the pass itself). Only where `decode_run_applies`; a timing model that reads
        each pass's requests (`needs_requests`) is asked pass by pass instead."""
        if self.timing.needs_requests:
            return None
        ev = self.ev
        d = self.dclock
        if not ev or ev[0][0] > d or (self.inline and self._boundaries_inline(d)):
            return self._decode_run(now, horizon)
        return None

    def _boundaries_inline(self, p: int) -> bool:
        """Inside a decode run, the events due at pass `p`: when they are only block-boundary
        crossings that fit in the free blocks (no preemption, nothing finishing), allocate them
        exactly as `step` would and return True; otherwise leave them queued for `step`."""
        ev = self.ev
        pool = self.pool
        due = []
        while ev and ev[0][0] == p:
            item = heappop(ev)
            if item[3] == item[4].epoch:
                due.append(item)
        if (len(self.dec) > self.mnbt or pool.free < len(due) + self.RUN_RESERVE
                or any(item[1] == _DONE for item in due)):
            for item in due:
                heappush(ev, item)
            return False
        bs = self.bs
        for _p, _k, _s, _e, r in due:
            r.blocks.extend(pool.alloc(1))
            b = r.base + len(r.blocks) * bs + 1 - r.prompt
            if b <= r.base + r.out - 1:
                heappush(ev, (b, _BOUNDARY, r.seq, r.epoch, r))
        return True

    def _decode_run(self, now: float, horizon: float) -> float:
        """Identical decode passes (nothing waiting, no prompt in flight) until an event is due
        or a pass ends at or after `horizon`. Without pass records, block-boundary crossings are
        handled in the run (`_boundaries_inline`): only the decode time changes with them."""
        d = self.dclock
        k = len(self.dec)
        ev = self.ev
        m_max = ev[0][0] - d if ev else 1 << 62
        gaps = self.stats.gaps
        physical = self.timing.decode_input == "physical"
        dms = self._decode_ms(k, self.sum_pb + k * d, ())
        start = now
        n = n0 = 0
        inline = self.inline
        record = self.record
        while True:
            if n >= m_max:  # only after a pass: an event is due at pass d + n
                if not inline or not self._boundaries_inline(d + n):
                    break
                m_max = ev[0][0] - d if ev else 1 << 62
                dms = self._decode_ms(k, self.sum_pb + k * (d + n), ())
            if not physical:
                nd = self._decode_ms(k, self.sum_pb + k * (d + n), ())
                if record and nd != dms and n > n0:
                    # a recorded row repeats one pass length, so each pass expands exactly
                    self._record_run(start, now, k, n - n0, dms)
                    start, n0 = now, n
                dms = nd
            elif now >= 1.0:
                j, g, end = identical_passes(now, dms, horizon, m_max - n)
                if j:
                    gaps[g] = gaps.get(g, 0) + k * j
                    n += j
                    now = end
                    if now >= horizon:
                        break
                    continue
            end = now + dms
            gap = end - now
            gaps[gap] = gaps.get(gap, 0) + k
            n += 1
            now = end
            if now >= horizon:
                break
        self.dclock = d + n
        if record:
            self._record_run(start, now, k, n - n0, dms)
        return now

    def _record_run(self, start: float, end: float, k: int, n: int, dms: float) -> None:
        pool = self.pool
        self.passes.append((start, end, k, 0, k, k, len(self.waiting), pool.active, pool.ncached, 0, n, dms))

_TOP = 1 << 53  # a binade holds 2**52 floats: [2**52, 2**53) ulps of its own


def identical_passes(now: float, dms: float, horizon: float, left: int) -> tuple[int, float, float]:
    """Jump over a run of identical passes exactly: (passes, gap, end) for up to `left` passes of
    `dms` from `now` (>= 1), stopping at the first end >= `horizon`, as repeated float additions
    `now = now + dms` would give them; (0, 0, now) when the jump cannot be taken.

    While the sum stays in now's binade every value is a multiple of its ulp u, and
    `now + dms` rounds to `now + G*u` with G = dms/u rounded to nearest, the same for every pass
    unless dms/u ends in exactly .5 (then round-half-even depends on now's last bit: no jump).
    So each gap is exactly G*u and the k-th end is exactly now + k*G*u (integers below 2**53)."""
    m, e = frexp(now)  # now = m * 2**e, 0.5 <= m < 1, ulp u = 2**(e-53)
    q = ldexp(dms, 53 - e)  # dms / u, exact (a power-of-two scaling)
    t = floor(q)
    frac = q - t
    if frac == 0.5:
        return 0, 0.0, now
    G = int(t) + (frac > 0.5)
    n0 = int(ldexp(m, 53))
    j = (_TOP - 1 - n0) // G if G > 0 else 0  # ends stay below the binade's top
    if j > left:
        j = left
    if j and horizon != math.inf:
        jh = -(-(ceil(ldexp(horizon, 53 - e)) - n0) // G)  # first pass ending at or after horizon
        if jh < 1:
            jh = 1
        if jh < j:
            j = jh
    if j <= 0:
        return 0, 0.0, now
    return j, ldexp(float(G), e - 53), ldexp(float(n0 + j * G), e - 53)


class Stats:
    """Token-level inter-token gaps, accumulated by weight: every request decoding on a worker
    emits at the same pass end, so one pass adds one (gap, count) pair."""

    __slots__ = ("gaps",)

    def __init__(self) -> None:
        self.gaps: dict[float, int] = {}

    def add_gap(self, gap: float, count: int) -> None:
        g = self.gaps
        g[gap] = g.get(gap, 0) + count
