"""vLLM 0.2/0.3's scheduler as a pass scheduler (`scheduler: vllm_v0` in the engine arguments,
registered as vllm-v0 in sim/schedulers.py; the machinery it runs on is sim/engine.py's).

Each step is either prefill-only or decode-only (vLLM 0.x `Scheduler._schedule`): while the head
of the waiting queue can be admitted (KV blocks above the watermark, the prompt token budget,
max_num_seqs) a step prefills every prompt admitted, whole, and each emits its next token at that
step's end; otherwise all running requests decode one token. Prefill steps do not advance
`dclock`: only decode steps generate tokens for the running set. KV exhaustion during decode
preempts by recompute, the latest arrival first. That vLLM had neither chunked prefill nor prefix
caching: the engine arguments must turn both off (EngineArgs.validate).
"""

from __future__ import annotations

import math
from heapq import heappop, heappush

from .engine import _BOUNDARY, EngineWorker, Stats
from .workload import PromptKeys, SimRequest

V0_WATERMARK = 0.01  # vLLM 0.x BlockSpaceManager's default: 1% of the blocks stay free at admission


class VllmV0Worker(EngineWorker):
    """A worker scheduling steps as vLLM 0.2/0.3 does."""

    __slots__ = ("wm", "stalled", "last_dec_end")
    # vLLM 0.x preempts as soon as no block is free at a request's turn, even one that needs none:
    # a decode run continues only if a block is still free after its allocations
    RUN_RESERVE = 1

    def __init__(self, wid: int, args, timing, trace_block_size: int, stats: Stats, record: bool = True,
                 prompts: PromptKeys | None = None) -> None:
        if args.enable_chunked_prefill or args.enable_prefix_caching:
            args.validate()  # the engine arguments' own error (it names both flags)
        super().__init__(wid, args, timing, trace_block_size, stats, record, prompts)
        # watermark blocks kept free at admission, whether a prefill-only step ran since the last
        # decode step, and that decode step's end
        self.wm = int(V0_WATERMARK * self.G)
        self.stalled = False
        self.last_dec_end = 0.0

    @staticmethod
    def infeasible(r: SimRequest, args) -> str | None:
        G = args.num_gpu_blocks
        nb = -(-(r.prompt + r.out - 1) // args.block_size)
        if r.out > 1 and nb + max(1, int(V0_WATERMARK * G)) > G:
            # vLLM 0.x preempts a running request whenever no block is free at its turn: one that
            # fills the pool (less the 1% admission watermark) alone would be recomputed forever
            return (f"{r.source}: request {r.request_id!r} needs {nb} KV blocks but a worker has {G}; the vllm_v0 "
                    f"scheduler needs at least one more free (and 1% of the blocks) to make progress")
        if r.prompt > args.max_num_batched_tokens:
            # exact here (no prefix caching); for Dynamo's scheduler a cached prefix can make it
            # fit, so that case is caught when a worker gets stuck (`replay.stuck`)
            return (f"{r.source}: request {r.request_id!r} has a {r.prompt}-token prompt, more than "
                    f"max_num_batched_tokens {args.max_num_batched_tokens} with chunked prefill disabled")
        return None

    def decode_run_applies(self) -> bool:
        # the previous step decoded (every running request emitted at `now`) and at least one
        # block stays free (vLLM preempts at zero free)
        return not self.stalled and self.pool.free >= 1

    def step(self, now: float, horizon: float = math.inf) -> float:
        self._begin()
        if self.waiting:
            end = self._prefill(now)
            if end is not None:
                return end
        if not self.dec:
            for r in self.finished:  # only rejections: nothing ran
                r.terminal = now
            return now
        if self.decode_run_applies():
            end = self._decode_run_if_due(now, horizon)
            if end is not None:
                self.last_dec_end = end
                return end
        return self._decode(now)

    def _prefill(self, now: float) -> float | None:
        """Admit from the head of the waiting queue as vLLM 0.x does and run the prefill-only
        step; None when nothing could be admitted (rejections are left in `finished`)."""
        waiting = self.waiting
        pool = self.pool
        bs = self.bs
        dec = self.dec
        G = self.G
        wm = self.wm
        parts: list[tuple[SimRequest, int, int]] = []
        tokens = longest = 0
        max_pad = self.args.max_paddings
        while waiting:
            r = waiting[0]
            kn = r.prompt + r.g  # a recompute re-prefills its generated tokens too
            nb = -(-kn // bs)
            # vLLM ignores a prompt over its limit (min(max_model_len, max_num_batched_tokens))
            # or one that could never leave the watermark free
            if kn > self.mnbt or G - nb < wm:
                waiting.popleft()
                r.status = "rejected"
                self.finished.append(r)
                continue
            # vLLM 0.2/0.3 pads the prompts of a step to the longest one (`max_paddings`)
            longest = kn if kn > longest else longest
            padded = (len(parts) + 1) * longest
            if (pool.free - nb < wm or padded > self.mnbt or padded - tokens - kn > max_pad
                    or len(dec) + len(parts) + 1 > self.max_seqs):
                break
            waiting.popleft()
            r.hmemo = None
            self._keys(r)  # builds its prompt identities (hashed into the pool as Dynamo's are)
            r.blocks = pool.alloc(nb)
            r.nreg = 0
            self._register(r, kn)
            r.computed = kn
            self._admitted(r, now, 0)
            r.prefilled += kn
            parts.append((r, 0, kn))
            tokens += kn
        if not parts:
            return None
        end = now + self._prefill_ms(tokens, len(parts), parts)
        d = self.dclock
        for r, _pre, _n in parts:
            if r.out:  # a 0-output request is prefilled and finishes with no token
                self._prompt_token(r, end)
            if r.g >= r.out:
                self._finish(r, r.computed)
            else:
                self._join_decode(r, d - r.g)  # the next decode step (pass d) emits its token g + 1
                self.need_second.append((r, r.epoch))  # joined since the last decode step
        self.stalled = True
        for r in self.finished:
            r.terminal = end
        if self.record:
            for r, _pre, n in parts:
                if r.chunks is None:
                    r.chunks = []
                r.chunks.append((now, end, n))
            self.passes.append((now, end, len(parts), tokens, len(parts), self.n_running(), len(waiting), pool.active,
                                pool.ncached, 0, 1, 0.0))
        return end

    def _preempt(self, v: SimRequest, now: float) -> None:
        # its last token came from the last decode step, or from its prefill step if later
        t_last = v.t_last if v.t_last > self.last_dec_end else self.last_dec_end
        self._evict(v, False)
        v.t_last = t_last

    def _decode(self, now: float) -> float:
        """One decode-only step. Before it, vLLM 0.x walks the running requests in FCFS order and
        appends a slot to each; whenever no block is free at a request's turn it preempts (by
        recompute) the latest-arrived request still unvisited, or the request itself if none."""
        pool = self.pool
        bs = self.bs
        d = self.dclock
        dec = self.dec
        ev = self.ev
        due: list[SimRequest] = []
        while ev and ev[0][0] == d and ev[0][1] == _BOUNDARY:
            _, _, _seq, epoch, r = heappop(ev)
            if r.epoch == epoch:
                due.append(r)
        if pool.free > len(due):
            # a block stays free at every request's turn: no preemption, the order does not matter
            for r in due:
                r.blocks.extend(pool.alloc(1))
            grown = due
        else:
            needs = {id(r) for r in due}
            order = sorted(dec.values(), key=lambda r: (r.dispatch, r.idx))
            grown = []
            i, j = 0, len(order)
            while i < j:
                r = order[i]
                while pool.free < 1 and j > i:
                    j -= 1
                    self._preempt(order[j], now)
                if j == i:
                    break  # it preempted itself
                if id(r) in needs:
                    r.blocks.extend(pool.alloc(1))
                    grown.append(r)
                i += 1
        for r in grown:
            b = r.base + len(r.blocks) * bs + 1 - r.prompt
            if b <= r.base + r.out - 1:
                heappush(ev, (b, _BOUNDARY, r.seq, r.epoch, r))
        if not dec:
            # everything was preempted: the waiting queue holds them again
            end = self._prefill(now)
            if end is not None:
                return end
            for r in self.finished:
                r.terminal = now
            return now
        k = len(dec)
        end = now + self._decode_ms(k, self.sum_pb + k * d, ())
        stats = self.stats
        fresh = 0
        for r, ep in self.need_second:
            if r.epoch == ep and dec.get(r.seq) is r:
                fresh += 1
                stats.add_gap(end - r.t_last, 1)
                if r.t_second < 0:
                    r.t_second = end
        self.need_second = []
        if k > fresh:
            stats.add_gap(end - self.last_dec_end, k - fresh)
        self._finish_due(d, end)
        self.dclock = d + 1
        self.stalled = False
        self.last_dec_end = end
        for r in self.finished:
            r.terminal = end
        if self.record:
            self.passes.append((now, end, k, 0, k, self.n_running(), len(self.waiting), pool.active, pool.ncached,
                                0, 1, 0.0))
        return end
