"""Dynamo's mocker as a pass scheduler: ai-dynamo 1.4.2's vLLM-style passes (observed notes
§0.3), with what 1.5.1 and 1.6.1 changed read from the `DynamoRules` row the worker is given
(sim/versions.py), never from version checks here. Registered as dynamo-1.4, dynamo-1.5 and
dynamo-1.6 (sim/schedulers.py); the machinery it runs on is sim/engine.py's.

A pass: decode-ready requests crossing a block boundary take a block (preempting when none is
free, LIFO or FIFO), the prompt in flight takes its next chunk, the head of the queue is admitted
(prefix hits, chunked prefill, `max_num_seqs`), then prefill and decode time are charged and every
running request emits at the pass end.

Under 1.6.1's rules a prompt's first token comes at the end of its last prefill pass with no
decode charge, and a pass charges the decode step only for requests that already have a token (a
resumed recompute counts), with u their context tokens; FIFO-skipped requests are not in u (1.5.1
too). A decode run holds only requests that already have tokens, so its passes are the ones
`step` would run under every rule set.

A request with 0 output tokens (observed from 1.4.2) is admitted like any other and takes all of
its cached prefix (no last block is recomputed: it samples no token). In the pass that completes
its prompt it finishes at the pass end with no token; it is not decode-ready, and its blocks,
hashed, are released before the decode step, so they are not in that pass's u.
"""

from __future__ import annotations

import math
from heapq import heappop, heappush

from trace_pipe.pipeline.errors import TraceError

from .engine import _BOUNDARY, EngineWorker, Stats
from .versions import DynamoRules
from .workload import PromptKeys, SimRequest, gen_key


class DynamoWorker(EngineWorker):
    """A worker scheduling passes as Dynamo's mocker does under one `DynamoRules` row."""

    __slots__ = ("rules", "lifo", "chunked", "first_decodes", "resume_chunks", "lag")

    def __init__(self, wid: int, args, timing, trace_block_size: int, stats: Stats, record: bool = True,
                 prompts: PromptKeys | None = None, rules: DynamoRules | None = None) -> None:
        super().__init__(wid, args, timing, trace_block_size, stats, record, prompts)
        self.rules = rules
        self.lifo = args.preemption_mode == "lifo"
        self.chunked = args.enable_chunked_prefill
        # 1.4.2 and 1.5.1 charge a decode step in the pass that completes a prompt (and count that
        # request in it); 1.6.1 emits the first token at the prefill's end, decode-free
        self.first_decodes = rules.prompt_pass_decodes
        self.resume_chunks = rules.resume_chunks
        # decode requests skipped by a FIFO preemption (see `_skip_next`): seq -> (request, the
        # time of its last token), so its next gap spans the skipped pass
        self.lag: dict[int, tuple[SimRequest, float]] = {}

    def decode_run_applies(self) -> bool:
        # nothing to admit or chunk, nobody awaiting a second token or lagging a skipped pass
        return (self.chunking is None and not self.waiting and bool(self.dec) and not self.need_second
                and not self.lag and not self.fresh)

    # -- one pass --------------------------------------------------------------------------
    def step(self, now: float, horizon: float = math.inf) -> float:
        self._begin()
        if self.decode_run_applies():
            end = self._decode_run_if_due(now, horizon)
            if end is not None:
                return end
        ev = self.ev
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
                self._admitted(r, now, cached)
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
            nf = len(self.fresh)
            if len(dec) > n_skip + lagging + nf:
                stats.add_gap(gap, len(dec) - n_skip - lagging - nf)
            ns = self.need_second
            if ns:
                for r, ep in ns:
                    if r.epoch == ep and r.t_second < 0:
                        r.t_second = end
                self.need_second = []
            if nf:
                self._emit_fresh(end)
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
                self._join_decode(r, d1 - r.g)
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
        if self._evict(v, processed):
            # its last token came at the previous pass end, or before a pass it skipped
            lag = self.lag.pop(v.seq, None)
            v.t_last = now if lag is None else lag[1]

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
