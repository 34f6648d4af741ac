"""One mock worker: ai-dynamo 1.4.2's vLLM-style pass scheduler (observed notes §0.3), made O(1)
per pass plus O(log n) per event.

Invariant that makes it cheap: the running set is always [decode-ready requests in admission
order] + [at most one request part-way through its prompt, last]. Every decode-ready request
schedules exactly one token per pass, so its generated count is `dclock - base` (a per-worker pass
counter), and the passes at which it crosses a block boundary or finishes are known in advance:
they sit in a heap keyed by pass number. A pass touches only the requests with an event.

Between events a worker runs identical decode passes (`_decode_run`), jumped over in closed form
within each float binade (`identical_passes`, bit-exact with the repeated additions). Without
pass records, block-boundary crossings are allocated inside such a run (`_boundaries_inline`):
only the decode time changes at them.

What differs between Dynamo versions comes from the `DynamoRules` row the worker is given
(sim/versions.py), never from version checks here. Under 1.6.1's rules a prompt's first token
comes at the end of its last prefill pass with no decode charge, and a pass charges the decode
step only for requests that already have a token (a resumed recompute counts), with u their
context tokens; FIFO-skipped requests are not in u (1.5.1 too). The fast paths stay exact under
every rule set: a decode run holds only requests that already have tokens, so its passes are the
ones `step` would run; the closed-form jump and inline block boundaries apply only when the
decode time depends on physical blocks (1.4.2's u, constant timings), since a logical u grows
every pass.

A request with 0 output tokens (observed from 1.4.2) is admitted like any other and takes all of
its cached prefix (no last block is recomputed: it samples no token). In the pass that completes
its prompt it finishes at the pass end with no token; it is not decode-ready, and its blocks,
hashed, are released before the decode step, so they are not in that pass's u.
"""

from __future__ import annotations

import math
from collections import deque
from heapq import heappop, heappush
from math import ceil, floor, frexp, ldexp

from trace_pipe.pipeline.errors import TraceError

from .config import EngineArgs
from .kvcache import BlockPool
from .timing import PassInfo, TimingModel, quantize_ms
from .versions import VERSIONS, DynamoRules
from .workload import PromptKeys, SimRequest, gen_key

INLINE = True  # block-boundary crossings inside decode runs (tests compare both)
V0_WATERMARK = 0.01  # vLLM 0.x BlockSpaceManager's default: 1% of the blocks stay free at admission
_BOUNDARY = 0  # needs one more block at pass start
_DONE = 1  # emits its last token at pass end


class Worker:
    __slots__ = (
        "wid", "args", "timing", "pool", "bs", "tbs", "G", "mnbt", "max_seqs", "lifo", "caching",
        "chunked", "waiting", "dec", "chunking", "ev", "dclock", "seq", "sum_pb", "need_second",
        "pmemo", "dmemo", "p_speed", "d_speed", "stats", "passes", "first_tokens", "finished",
        "busy", "record", "cached_tokens_pass", "prompts", "inline", "v0", "wm", "stalled", "last_dec_end",
        "lag", "rules", "first_decodes", "resume_chunks",
    )

    def __init__(self, wid: int, args: EngineArgs, timing: TimingModel, trace_block_size: int,
                 stats: "Stats", record: bool = True, prompts: PromptKeys | None = None,
                 rules: DynamoRules = VERSIONS["1.4"]) -> None:
        self.wid = wid
        self.rules = rules
        # 1.4.2 and 1.5.1 charge a decode step in the pass that completes a prompt (and count that
        # request in it); 1.6.1 emits the first token at the prefill's end, decode-free
        self.first_decodes = rules.prompt_pass_decodes
        self.resume_chunks = rules.resume_chunks
        self.args = args
        self.timing = timing
        self.G = args.num_gpu_blocks
        self.pool = BlockPool(self.G)
        self.bs = args.block_size
        self.tbs = trace_block_size
        self.mnbt = args.max_num_batched_tokens
        self.max_seqs = args.max_num_seqs
        self.lifo = args.preemption_mode == "lifo"
        self.caching = args.enable_prefix_caching
        self.chunked = args.enable_chunked_prefill
        self.waiting: deque[SimRequest] = deque()
        self.dec: dict[int, SimRequest] = {}  # seq -> request, admission order
        self.chunking: SimRequest | None = None
        self.ev: list[tuple] = []  # (pass number, kind, seq, epoch, request)
        self.dclock = 0
        self.seq = 0
        self.sum_pb = 0  # sum over dec of (prompt - base): logical context = sum_pb + len(dec)*dclock
        self.need_second: list[tuple[SimRequest, int]] = []
        # decode requests skipped by a FIFO preemption (see `_skip_next`): seq -> (request, the
        # time of its last token), so its next gap spans the skipped pass
        self.lag: dict[int, tuple[SimRequest, float]] = {}
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
        # vLLM 0.2/0.3 scheduling (`_step_v0`): watermark blocks kept free at admission, whether a
        # prefill-only step ran since the last decode step, and that decode step's end.
        self.v0 = args.scheduler == "vllm_v0"
        if self.v0 and (self.chunked or self.caching):
            raise TraceError("error: --extra-engine-args: `scheduler` vllm_v0 (vLLM 0.2/0.3) needs "
                             "enable_chunked_prefill false and enable_prefix_caching false")
        self.wm = int(V0_WATERMARK * self.G)
        self.stalled = False
        self.last_dec_end = 0.0

    # -- helpers ---------------------------------------------------------------------------
    def has_work(self) -> bool:
        return bool(self.waiting or self.dec or self.chunking is not None)

    def n_running(self) -> int:
        return len(self.dec) + (self.chunking is not None)

    def _keys(self, r: SimRequest) -> list[int]:
        pk = r.pkeys
        return pk if pk is not None else self.prompts.keys(r)

    def _key(self, r: SimRequest, i: int) -> int:
        pk = r.pkeys
        return pk[i] if i < len(pk) else gen_key(r.idx, i)

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

    def _victim(self) -> SimRequest:
        dec = self.dec
        if self.lifo:
            if self.chunking is not None:
                return self.chunking
            return dec[next(reversed(dec))]
        if dec:
            return dec[next(iter(dec))]
        return self.chunking  # type: ignore[return-value]

    def _preempt(self, v: SimRequest, now: float, processed: bool) -> None:
        """Recompute preemption: free its KV, keep its generated tokens, front of the queue."""
        if v is self.chunking:
            self.chunking = None
        else:
            del self.dec[v.seq]
            g = self.dclock - v.base
            v.g = g
            self.sum_pb -= v.prompt - v.base
            self._register(v, v.prompt + g - 1 + processed)
            lag = self.lag.pop(v.seq, None)
            v.t_last = now if lag is None else lag[1]
        self.pool.release(v.blocks, v.nreg)
        v.blocks = []
        v.computed = 0
        v.nreg = 0
        v.epoch += 1
        self.waiting.appendleft(v)

    def _finish(self, r: SimRequest, computed: int) -> None:
        self._register(r, computed)
        if r.dup:
            self.pool.release(r.blocks, r.nreg)
        else:
            # The next turn of its session usually takes most of these blocks straight back.
            r.run = self.pool.release_run(r.blocks, r.nreg, r.pkeys)
        r.blocks = []
        r.pkeys = None
        r.status = "completed"
        self.finished.append(r)

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

    # -- one pass --------------------------------------------------------------------------
    def step(self, now: float, horizon: float = math.inf) -> float:
        """Run one pass starting at `now`; return its end. Requests that emitted their first token
        are left in `first_tokens`, finished/rejected ones in `finished` (in running order).

        When the pass is pure decode with no event due, it and the following identical passes
        are replayed in a tight loop (same float additions, same per-pass gaps) until an event is
        due or the next pass would start at or after `horizon` (the next time anything outside
        this worker can change its queue)."""
        if self.v0:
            return self._step_v0(now, horizon)
        self.first_tokens = []
        self.finished = []
        ev = self.ev
        d0 = self.dclock
        while ev and (ev[0][0] < d0 or ev[0][3] != ev[0][4].epoch):
            heappop(ev)  # stale: its request was preempted since the event was scheduled
        if (self.chunking is None and not self.waiting and self.dec and not self.need_second and not self.lag
                and not self.timing.needs_requests):
            if not ev or ev[0][0] > self.dclock:
                return self._decode_run(now, horizon)
            if self.inline and self._boundaries_inline(d0):
                return self._decode_run(now, horizon)
        pool = self.pool
        bs = self.bs
        d = self.dclock
        dec = self.dec
        preempted = False
        stopped = False
        # FIFO (1.4.2 walks the running list by index): a victim taken from the front, ahead of
        # the request being scheduled, shifts the list left, so the request after it is skipped
        # this pass (it computes and emits nothing); the victim's scheduled token is undone.
        skipped: set[int] = set()  # seqs skipped this pass
        skip_chunk = False

        # 1. decode-ready requests: only those crossing a block boundary need work.
        while ev and ev[0][0] == d and ev[0][1] == _BOUNDARY:
            _, _, _seq, epoch, r = heappop(ev)
            if r.epoch != epoch:
                continue
            ahead = 0
            current = False
            while pool.free < 1:
                v = self._victim()
                self._preempt(v, now, v is not r and not self.lifo and v is not self.chunking
                              and v.seq not in skipped)
                preempted = True
                if v is r:
                    current = True
                    break
                ahead += v is not self.chunking and not self.lifo
            if current:
                if self.lifo:
                    stopped = True  # the last running request: nothing after it
                    break
                continue  # FIFO: the loop goes on with the request now at its index
            r.blocks.extend(pool.alloc(1))
            b = r.base + len(r.blocks) * bs + 1 - r.prompt
            if b <= r.base + r.out - 1:
                heappush(ev, (b, _BOUNDARY, r.seq, r.epoch, r))
            if ahead:
                skip_chunk |= self._skip_next(r.seq, ahead, skipped, now)

        budget = self.mnbt - len(dec) + (sum(1 for q in skipped if q in dec) if skipped else 0)
        if budget < 0:
            # More decoding requests than the token budget: the pass would stop part-way through
            # the decode set, which this aggregated scheduler does not model.
            raise TraceError(f"error: {len(dec)} requests decoding on worker {self.wid} exceed max_num_batched_tokens "
                             f"{self.mnbt}; lower max_num_seqs")
        parts: list[tuple[SimRequest, int, int]] = []  # (request, prefix, n)
        newly: list[SimRequest] = []
        hit_tokens = 0

        # 2. the request part-way through its prompt (always last in the running order).
        c = self.chunking
        if c is not None and not stopped and not skip_chunk and budget > 0:
            kn = c.prompt + c.g
            n = min(kn - c.computed, budget)
            need = -(-(c.computed + n) // bs) - len(c.blocks)
            while need > pool.free:
                v = self._victim()
                self._preempt(v, now, v is not c and not self.lifo and v.seq not in skipped)
                preempted = True
                if v is c:
                    stopped = True
                    break
            if not stopped:
                if need > 0:
                    c.blocks.extend(pool.alloc(need))
                self._register(c, c.computed + n)
                parts.append((c, c.computed, n))
                budget -= n
                c.computed += n
                if c.computed >= kn:
                    self.chunking = None
                    newly.append(c)

        # 3. admission: FIFO head only, and only if nothing was preempted this pass. Once the
        # token budget is spent, 1.4.2 still examines one more head (observed): a 0-output
        # request whose prompt is all cached computes nothing and is admitted, anything else
        # stops admission. Heads too large for the pool are rejected whatever the budget.
        if not preempted:
            waiting = self.waiting
            G = self.G
            more = True
            while more and waiting and len(dec) + len(newly) + (self.chunking is not None) < self.max_seqs:
                r = waiting[0]
                kn = r.prompt + r.g
                nb = -(-kn // bs)
                if nb > G:
                    waiting.popleft()
                    r.status = "rejected"
                    self.finished.append(r)
                    continue
                if budget <= 0:
                    if r.out:
                        break  # it has at least its last block to compute
                    more = False
                pk = self._keys(r)
                lim = kn // bs
                if self.caching:
                    if lim > len(pk):
                        pk = pk + [gen_key(r.idx, i) for i in range(len(pk), lim)]
                    # A request blocked at the head is looked up again every pass; its hit
                    # prefix only changes when the pool caches or evicts a hash.
                    memo = r.hmemo
                    if memo is not None and memo[0] == pool.gen and memo[1] == lim:
                        hitb = memo[2][:]
                    else:
                        src = r.src
                        hitb = pool.lookup_after(src.run if src is not None else None, r.src_n, pk, lim)
                        r.hmemo = (pool.gen, lim, hitb[:])
                    if len(hitb) * bs >= kn and r.out:
                        hitb.pop()  # the last block is recomputed to sample a token; 0-output needs none
                    if hitb:
                        active_hits, hruns, hrest, hrefs = pool.hits(hitb, pk[0])
                    else:
                        active_hits = 0
                else:
                    hitb = []
                    active_hits = 0
                hit = len(hitb)
                if nb - active_hits > pool.free:
                    break
                cached = hit * bs
                rest = kn - cached
                n = min(rest, budget)
                if n < rest and (n <= 0 or not self.chunked and not (
                        self.resume_chunks and r.g and r.prompt - cached <= budget)):
                    break
                waiting.popleft()
                r.hmemo = None
                if hit:
                    pool.take(hruns, hrest, hrefs)
                blocks = hitb
                need = -(-(cached + n) // bs) - hit
                if need > 0:
                    blocks.extend(pool.alloc(need))
                r.blocks = blocks
                r.nreg = hit
                r.computed = cached
                self._register(r, cached + n)
                r.seq = self.seq
                self.seq += 1
                r.n_admit += 1
                r.admits.append((now, cached))
                if r.first_admit < 0:
                    r.first_admit = now
                    r.reused_first = cached
                if cached > r.reused_max:
                    r.reused_max = cached
                hit_tokens += cached
                parts.append((r, cached, n))
                budget -= n
                r.computed = cached + n
                if r.computed >= kn:
                    newly.append(r)
                else:
                    self.chunking = r  # the budget is spent (see above for what may follow)

        # A 0-output request whose prompt is all computed finishes now: its blocks are released
        # (hashes kept) before the decode step, so they are not in u, and it emits no token.
        if newly and not all(r.out for r in newly):
            self._finish_zero(newly)

        # 4-5. prefill time over participants that computed prompt tokens.
        k = 0
        s_isl = 0
        s_pre = 0
        prefill_tok = 0
        for r, pre, n in parts:
            if pre < r.prompt:
                r.prefilled += n  # what 1.6.1 counts as committed prefill (a resumed recompute's too)
                k += 1
                isl = pre + n
                s_isl += isl if isl < r.prompt else r.prompt
                s_pre += pre
                prefill_tok += n
        p_ms = self._prefill_ms(k * (s_isl // k - s_pre // k), k, parts) if k else 0.0

        # 6. decode step for every request whose known tokens are all computed.
        n_skip = sum(1 for q in skipped if q in dec) if skipped else 0
        n_ready = len(dec) - n_skip
        # 1.6.1: a request resumed after a preemption already has tokens, so its recompute pass
        # is a decode for it (charged, in u); a first prompt is not
        charged = newly if self.first_decodes else [r for r in newly if r.g]
        n_ready += len(charged)
        if n_ready:
            logical = self.sum_pb + len(dec) * d
            if n_skip:
                # a request skipped this pass (FIFO, `_skip_next`) is not in u (1.5.1, 1.6.1)
                for q in skipped:
                    r = dec.get(q)
                    if r is not None:
                        logical -= r.prompt - r.base + d
            for r in charged:
                logical += r.prompt + r.g
            d_ms = self._decode_ms(n_ready, logical, charged)
        else:
            d_ms = 0.0
        end = now
        if k:
            end = end + p_ms
        if n_ready:
            end = end + d_ms

        scheduled = len(parts) + len(dec)  # before emission changes `dec`
        # 7. emit tokens at the pass end, in running order.
        stats = self.stats
        if dec:
            gap = end - now
            lagging = 0
            if self.lag:
                lagging = self._emit_lagging(end, skipped)
            if len(dec) > n_skip + lagging:
                stats.add_gap(gap, len(dec) - n_skip - lagging)
            ns = self.need_second
            if ns:
                for r, ep in ns:
                    if r.epoch == ep and r.t_second < 0:
                        r.t_second = end
                self.need_second = []
            self._finish_due(d, end)
        else:
            self.need_second = []
            self.lag.clear()  # nothing is decoding: no skipped request is left
        d1 = d + 1
        for r in newly:
            if self._prompt_token(r, end):
                self.need_second.append((r, r.epoch))
            if r.g >= r.out:
                self._finish(r, r.computed)
            else:
                r.base = d1 - r.g
                dec[r.seq] = r
                self.sum_pb += r.prompt - r.base
                self._push_decode_events(r)
        self.dclock = d1
        for r in self.finished:
            r.terminal = end
        if self.record:
            for r, pre, n in parts:
                if pre < r.prompt:
                    if r.chunks is None:
                        r.chunks = []
                    r.chunks.append((now, end, n))
            self.passes.append((now, end, scheduled, prefill_tok, n_ready,
                                self.n_running(), len(self.waiting), pool.active, pool.ncached, hit_tokens, 1, 0.0))
        return end

    def _finish_zero(self, newly: list[SimRequest]) -> None:
        """Finish (in running order) the 0-output requests among those whose prompt just
        completed, leaving the others in `newly` (see the module doc)."""
        keep = []
        for r in newly:
            if r.out:
                keep.append(r)
            else:
                self._finish(r, r.computed)
        newly[:] = keep

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

    # -- vLLM 0.2/0.3 scheduling -------------------------------------------------------------
    # Each step is either prefill-only or decode-only (vLLM 0.x `Scheduler._schedule`): while the
    # head of the waiting queue can be admitted (KV blocks above the watermark, the prompt token
    # budget, max_num_seqs) a step prefills every prompt admitted, whole, and each emits its next
    # token at that step's end; otherwise all running requests decode one token. Prefill steps
    # do not advance `dclock`: only decode steps generate tokens for the running set.

    def _step_v0(self, now: float, horizon: float) -> float:
        self.first_tokens = []
        self.finished = []
        ev = self.ev
        d = self.dclock
        while ev and (ev[0][0] < d or ev[0][3] != ev[0][4].epoch):
            heappop(ev)
        if self.waiting:
            end = self._prefill_v0(now)
            if end is not None:
                return end
        if not self.dec:
            for r in self.finished:  # only rejections: nothing ran
                r.terminal = now
            return now
        # A run of identical decode steps: the previous step decoded (every running request
        # emitted at `now`) and at least one block stays free (vLLM preempts at zero free).
        if not self.stalled and not self.timing.needs_requests and self.pool.free >= 1:
            if not ev or ev[0][0] > d or (self.inline and self._boundaries_inline(d)):
                end = self._decode_run(now, horizon)
                self.last_dec_end = end
                return end
        return self._decode_v0(now)

    def _prefill_v0(self, now: float) -> float | None:
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
            r.seq = self.seq
            self.seq += 1
            r.n_admit += 1
            r.admits.append((now, 0))
            r.prefilled += kn
            if r.first_admit < 0:
                r.first_admit = now
                r.reused_first = 0
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
                r.base = d - r.g  # the next decode step (pass d) emits its token g + 1
                dec[r.seq] = r
                self.sum_pb += r.prompt - r.base
                self._push_decode_events(r)
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

    def _preempt_v0(self, v: SimRequest, now: float) -> None:
        # its last token came from the last decode step, or from its prefill step if later
        t_last = v.t_last if v.t_last > self.last_dec_end else self.last_dec_end
        self._preempt(v, now, False)
        v.t_last = t_last

    def _decode_v0(self, now: float) -> float:
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
                    self._preempt_v0(order[j], now)
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
            end = self._prefill_v0(now)
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
        # vLLM 0.x preempts as soon as no block is free at a request's turn, even one that needs
        # none: a v0 run continues only if a block is still free after these allocations.
        if len(self.dec) > self.mnbt or pool.free < len(due) + self.v0 or any(item[1] == _DONE for item in due):
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

    def _skip_next(self, seq: int, k: int, skipped: set[int], now: float) -> bool:
        """FIFO preemption removed `k` requests ahead of `seq` in the running list: the `k`
        requests after it skip this pass (no token), and True when the prompt in flight, last in
        the running list, is among them."""
        for s, r in self.dec.items():
            if k == 0:
                return False
            if s > seq and s not in skipped:
                k -= 1
                skipped.add(s)
                self.sum_pb -= r.prompt - r.base
                r.base += 1
                self.sum_pb += r.prompt - r.base
                r.epoch += 1
                self._push_decode_events(r)
                if s not in self.lag:
                    self.lag[s] = (r, now)  # its last token came at the previous pass end
        return k > 0 and self.chunking is not None

    def _emit_lagging(self, end: float, skipped: set[int]) -> int:
        """Gaps of the requests emitting for the first time since a skipped pass; their count."""
        n = 0
        dec = self.dec
        for s, (r, t) in list(self.lag.items()):
            if s in skipped:
                continue
            del self.lag[s]
            if dec.get(s) is r:
                self.stats.add_gap(end - t, 1)
                if r.t_second < 0:
                    r.t_second = end
                n += 1
        return n


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
