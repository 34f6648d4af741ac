"""Routers: pick a worker for each released request.

Interface: `route(req, now) -> worker index | None` (None = hold in the router queue),
`on_first_token(req)`, `on_free(req)`, `on_pass_end(worker)`, and `drain(now) -> [(req, worker)]`
for queued requests.
`kv_router` follows ai-dynamo 1.4.2 (observed notes §9) and 1.6.1 (tests/test_router16.py): cost
`scale * max(0, (pending_prefill_w + ISL)/bs - credit * overlap_w) + active_blocks_w + new_blocks_w
+ active_request_weight * active_requests_w` (`prefill_load_scale`, alias `overlap_score_weight`,
and `overlap_score_credit`, both 1 by default: then the cost is 1.4.2's observed
`(pending + ISL - overlap*bs)/bs + active + new`; measured with credit 2 and scale 2 on 1.4.2 and
1.6.1), ties broken by a seeded RNG (Dynamo's are unseeded) or, with `router_temperature` T > 0, a
worker drawn with probability proportional to exp(-(cost - min)/((max - min) * T)) as Dynamo's
selector draws it; optional queue threshold (disabled by default); no overlap at all with prefix
caching off. Exact overlaps are only counted for workers whose cost could still be the minimum
(see `KvRouter._place`). The one rule that changed since (`DynamoRules.kv_visibility`): 1.4.2's
router sees the blocks a pass stores or evicts as soon as the pass is scheduled, 1.5.1's and
1.6.1's only when the pass ends (measured: a request arriving while the pass that fills its prefix
is in flight finds no overlap there, one arriving at the pass end finds it).
Disaggregated replay (1.6.1, sim/disagg.py) configures one per pool: the prefill pool's tracks no
active blocks (`track_blocks=False`), the decode pool's is `DecodeKvRouter`.
"""

from __future__ import annotations

import math
import random
from collections import deque
from itertools import takewhile
from typing import Protocol

from trace_pipe.pipeline.errors import TraceError

from .config import RouterConfig
from .versions import VERSIONS, DynamoRules
from .workload import PromptKeys, SimRequest

ROUTER_MODES = ("round_robin", "kv_router", "random", "least_loaded")
PRUNE = True  # kv_router: skip exact overlaps of workers that cannot win (tests compare both)


class Router(Protocol):
    def route(self, req: SimRequest, now: float) -> int | None: ...

    def on_first_token(self, req: SimRequest) -> None: ...

    def on_free(self, req: SimRequest) -> None: ...

    def on_pass_end(self, worker: int) -> None: ...

    def drain(self, now: float) -> list[tuple[SimRequest, int]]: ...


class _Base:
    def on_first_token(self, req: SimRequest) -> None:
        pass

    def on_free(self, req: SimRequest) -> None:
        pass

    def on_pass_end(self, worker: int) -> None:
        pass

    def drain(self, now: float) -> list[tuple[SimRequest, int]]:
        return []


class RoundRobin(_Base):
    """Request k (in release order) goes to worker k mod N."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.k = 0

    def route(self, req: SimRequest, now: float) -> int:
        w = self.k % self.n
        self.k += 1
        return w


class RandomRouter(_Base):
    def __init__(self, n: int, seed: int) -> None:
        self.n = n
        self.rng = random.Random(seed)

    def route(self, req: SimRequest, now: float) -> int:
        return self.rng.randrange(self.n)


class LeastLoaded(_Base):
    """Fewest requests routed and not yet finished; ties to the lowest index."""

    def __init__(self, n: int) -> None:
        self.load = [0] * n

    def route(self, req: SimRequest, now: float) -> int:
        w = min(range(len(self.load)), key=self.load.__getitem__)
        self.load[w] += 1
        return w

    def on_free(self, req: SimRequest) -> None:
        self.load[req.worker] -= 1


def _active_prefix(act: dict[int, int], keys: list[int]) -> int:
    """How many leading `keys` are in `act`. The active set is a union of whole prompt prefixes
    and identities are chained (an identity implies its whole prefix), so membership is monotone
    along `keys` and a binary search finds the boundary."""
    n = len(keys)
    if not n or keys[0] not in act:
        return 0
    if keys[-1] in act:
        return n
    lo, hi = 1, n - 1  # keys[lo-1] in act, keys[hi] not
    while lo < hi:
        mid = (lo + hi) >> 1
        if keys[mid] in act:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _last_shared(act: dict[int, int], keys: list[int]) -> int:
    """How many leading `keys` have a count >= 2 (counts never increase along a prefix)."""
    n = len(keys)
    if not n or act[keys[0]] < 2:
        return 0
    if act[keys[-1]] >= 2:
        return n
    lo, hi = 1, n - 1
    while lo < hi:
        mid = (lo + hi) >> 1
        if act[keys[mid]] >= 2:
            lo = mid + 1
        else:
            hi = mid
    return lo


class KvRouter(_Base):
    def __init__(self, workers: list, cfg: RouterConfig, block_size: int, trace_block_size: int,
                 max_num_batched_tokens: int, seed: int, prompts: PromptKeys | None = None,
                 rules: DynamoRules = VERSIONS["1.4"], track_blocks: bool = True) -> None:
        self.workers = workers
        # Dynamo's `router_track_active_blocks`: off for a disaggregated prefill pool, whose
        # workers hold no decoding sequences (the cost is then the prefill term alone)
        self.track_blocks = track_blocks
        self.prompts = prompts or PromptKeys(block_size, trace_block_size)
        self.cfg = cfg
        self.bs = block_size
        self.tbs = trace_block_size
        self.mnbt = max_num_batched_tokens
        self.rng = random.Random(seed)
        n = len(workers)
        self.pending = [0] * n  # prefill tokens routed and not yet past their first token
        self.active: list[dict[int, int]] = [{} for _ in range(n)]  # block hash -> refcount
        self.contrib: dict[int, int] = {}  # request idx -> its pending prefill tokens
        self.keys: dict[int, list[int]] = {}  # request idx -> its full-block hashes while routed
        self.nreq = [0] * n  # requests routed and not yet freed
        self.queue: deque[SimRequest] = deque()
        # Pass-end visibility: each pool records what the pass in flight changed (cleared at
        # every pass end), so a busy worker's cache is seen as it was before that pass.
        self.deferred = rules.kv_visibility == "pass_end"
        self.before: list[dict[int, bool] | None] = [None] * n  # see `_seen`
        if self.deferred:
            for worker in workers:
                worker.pool.changes = []

    def on_pass_end(self, worker: int) -> None:
        if self.deferred:
            self.workers[worker].pool.changes.clear()
            self.before[worker] = None

    def _busy(self) -> bool:
        thr = self.cfg.router_queue_threshold
        if thr is None:
            return False
        lim = thr * self.mnbt
        return all(p > lim for p in self.pending)

    def route(self, req: SimRequest, now: float) -> int | None:
        if self._busy():
            self.queue.append(req)
            return None
        return self._place(req)

    def _place(self, req: SimRequest) -> int:
        keys = req.pkeys
        if keys is None:
            keys = self.prompts.keys(req)
        bs = self.bs
        isl = req.prompt
        nk = len(keys)
        cfg = self.cfg
        scale = cfg.overlap_score_weight
        credit = cfg.overlap_score_credit
        wa = cfg.decode_active_request_weight
        nreq = self.nreq
        pending = self.pending

        def cost(w: int, o: int, blocks: int) -> float:
            # Dynamo's expression and order of float operations (ties are exact comparisons)
            adj = (pending[w] + isl) / bs - credit * o
            return scale * (adj if adj > 0.0 else 0.0) + blocks + wa * nreq[w]
        # Per worker, a cheap upper bound on the cached prefix (a probed miss), hence a lower
        # bound on its cost (the cost only falls as the overlap grows); exact overlaps are then
        # counted in order of those bounds, only while a bound does not exceed the best cost,
        # so a long prefix cached on a worker that cannot win is never walked. Every cost that
        # can be the minimum (or tie it) is the exact expression the router always used.
        cands = []
        deferred = self.deferred
        for w, worker in enumerate(self.workers):
            pool = worker.pool
            cache = pool.cache
            if not worker.caching:
                u, exact = 0, True  # no prefix caching: the engine publishes no stored blocks
            elif deferred and worker.busy and pool.changes:
                u, exact = self._seen(w, keys, self._overlap(pool, keys, nk, req)), True
            elif not nk or keys[0] not in cache:
                u, exact = 0, True
            elif keys[-1] in cache:
                u, exact = nk, False
            else:
                lo, hi = 0, nk - 1  # keys[lo] cached, keys[hi] not
                while hi - lo > 1:
                    mid = (lo + hi) >> 1
                    if keys[mid] in cache:
                        lo = mid
                    else:
                        hi = mid
                u, exact = hi, False
            act = self.active[w]
            p = _active_prefix(act, keys)
            la = len(act)
            new = nk - p if self.track_blocks else 0
            cands.append((cost(w, u, la + new), w, u, exact, la, new, p))
        temperature = cfg.router_temperature
        prune = PRUNE and not temperature
        if prune:
            cands.sort(key=lambda c: (c[0], c[1]))
        best = None
        ties: list[int] = []
        overs = {}
        shared = {}
        costs = {}
        pruned = []
        for i, (lb, w, u, exact, la, new, p) in enumerate(cands):
            if prune and best is not None and lb > best:
                pruned = cands[i:]
                break
            o = u if exact else self._overlap(self.workers[w].pool, keys, u, req)
            overs[w] = o
            shared[w] = p
            logit = costs[w] = cost(w, o, la + new)
            if best is None or logit < best:
                best = logit
                ties = [w]
            elif logit == best:
                ties.append(w)
        w = self._sample(costs, temperature) if temperature else self._pick(req, sorted(ties))
        best_over = overs[w]
        req.overlap_blocks = best_over
        # Dynamo reports the best overlap over every worker: a pruned worker's is only counted
        # when its bound could beat the best so far
        top = max(overs.values())
        for _lb, x, u, exact, *_ in pruned:
            if u > top:
                top = max(top, u if exact else self._overlap(self.workers[x].pool, keys, u, req))
        req.best_overlap_blocks = top
        c = max(0, isl - best_over * bs)
        self.contrib[req.idx] = c
        self.pending[w] += c
        if self.track_blocks:
            act = self.active[w]
            p = shared[w]
            if p:
                for h in keys[:p]:
                    act[h] += 1
            act.update(dict.fromkeys(keys[p:] if p else keys, 1))
            self.keys[req.idx] = keys
        nreq[w] += 1
        req.worker = w
        return w

    def _pick(self, req: SimRequest, ties: list[int]) -> int:
        """One of the workers of least cost (every one of them, in index order): Dynamo picks
        uniformly at random (unseeded), trace-pipe by its seeded RNG."""
        return ties[0] if len(ties) == 1 else ties[self.rng.randrange(len(ties))]

    def _sample(self, costs: dict[int, float], temperature: float) -> int:
        """Dynamo's softmax draw over the workers' costs (in worker order): costs normalised by
        their range, probabilities exp(-(c - min) / (range * T)); uniform when all are equal."""
        ws = sorted(costs)
        cs = [costs[w] for w in ws]
        lo, hi = min(cs), max(cs)
        if lo == hi:
            probs = [1.0 / len(cs)] * len(cs)
        else:
            mag = 1.0 if math.isfinite(hi - lo) else max(abs(lo), abs(hi))
            lo_n = lo / mag
            k = -1.0 / ((hi / mag - lo_n) * temperature)
            top = lo_n * k
            probs = [math.exp(c / mag * k - top) for c in cs]
        total = sum(probs)
        u = self.rng.random()
        acc = 0.0
        for w, p in zip(ws, probs):
            acc += p / total
            if u <= acc:
                return w
        return ws[-1]

    @staticmethod
    def _overlap(pool, keys: list[int], upto: int, req: SimRequest) -> int:
        """Length of the cached prefix of `keys`, known to end at or before `upto`. Positions
        the request shares with its session's previous request, while that request's released
        run is whole in this pool, are cached without looking (see sim.kvcache)."""
        cache = pool.cache
        m = 0
        src = req.src
        run = src.run if src is not None else None
        if run is not None and run.pool is pool and not run.lo and run.hi > 0:
            m = min(req.src_n, run.hi, upto)
        rest = keys[m:upto]
        if all(map(cache.__contains__, rest)):
            return upto
        return m + len(list(takewhile(cache.__contains__, rest)))

    def _seen(self, w: int, keys: list[int], m: int) -> int:
        """The cached prefix of `keys` as the router sees it while a pass is in flight on worker
        `w`, from the live one (`m` keys): cut at the first key that pass stored, and extended
        over keys it evicted (both are published at its end)."""
        pool = self.workers[w].pool
        ch = self.before[w]
        if ch is None:
            # hash -> whether it was cached before the pass (its first change in the pass says);
            # the pool does not change while its pass is in flight, so once per pass
            ch = self.before[w] = {}
            for dropped, hashes in pool.changes:
                for h in hashes:
                    ch.setdefault(h, dropped)
        if m and not ch.keys().isdisjoint(keys[:m]):
            seen = list(map(ch.get, keys[:m]))
            if False in seen:
                return seen.index(False)
        cache = pool.cache
        n = len(keys)
        while m < n:
            v = ch.get(keys[m])
            if not (keys[m] in cache if v is None else v):
                break
            m += 1
        return m

    def on_first_token(self, req: SimRequest) -> None:
        c = self.contrib.pop(req.idx, None)
        if c is not None:
            self.pending[req.worker] -= c

    def on_free(self, req: SimRequest) -> None:
        self.on_first_token(req)
        self.nreq[req.worker] -= 1
        keys = self.keys.pop(req.idx, None)
        if keys is None:
            return  # blocks not tracked
        act = self.active[req.worker]
        q = _last_shared(act, keys)
        for h in keys[q:] if q else keys:
            del act[h]
        if q:
            for h in keys[:q]:
                act[h] -= 1

    def drain(self, now: float) -> list[tuple[SimRequest, int]]:
        out = []
        while self.queue and not self._busy():
            r = self.queue.popleft()
            out.append((r, self._place(r)))
        return out


class DecodeKvRouter(KvRouter):
    """Dynamo's KV router as 1.6.1 configures it for a disaggregated decode pool (measured: the
    oracle's logged costs): no prefix overlap credited, no prefill load tracked and no KV reuse
    assumed, so the cost is the worker's active blocks (every routed, unfinished request's full
    prompt blocks, none shared) + the request's own full blocks + `decode_active_request_weight`
    x its active requests; ties and `router_temperature` as in `KvRouter`. A request's blocks
    count from its handoff to its end; no router queue (with no prefill load it is never busy)."""

    def __init__(self, workers: list, cfg: RouterConfig, block_size: int, seed: int) -> None:
        super().__init__(workers, cfg, block_size, block_size, 0, seed)
        self.load = [0] * len(workers)  # active full prompt blocks per worker
        self.held: dict[int, int] = {}  # request idx -> its blocks while routed

    def route(self, req: SimRequest, now: float) -> int:
        nb = req.prompt // self.bs
        wa = self.cfg.decode_active_request_weight
        costs = {w: float(self.load[w] + nb) + wa * self.nreq[w] for w in range(len(self.workers))}
        temperature = self.cfg.router_temperature
        if temperature:
            w = self._sample(costs, temperature)
        else:
            best = min(costs.values())
            w = self._pick(req, [x for x, c in costs.items() if c == best])
        self.load[w] += nb
        self.held[req.idx] = nb
        self.nreq[w] += 1
        req.overlap_blocks = req.best_overlap_blocks = 0
        req.worker = w
        return w

    def on_first_token(self, req: SimRequest) -> None:
        pass

    def on_free(self, req: SimRequest) -> None:
        self.load[req.worker] -= self.held.pop(req.idx)
        self.nreq[req.worker] -= 1


def make_router(mode: str, workers: list, cfg: RouterConfig, *, block_size: int, trace_block_size: int,
                max_num_batched_tokens: int, seed: int, prompts: PromptKeys | None = None,
                rules: DynamoRules = VERSIONS["1.4"]) -> Router:
    n = len(workers)
    if mode == "round_robin":
        return RoundRobin(n)
    if mode == "kv_router":
        return KvRouter(workers, cfg, block_size, trace_block_size, max_num_batched_tokens, seed, prompts, rules)
    if mode == "random":
        return RandomRouter(n, seed)
    if mode == "least_loaded":
        return LeastLoaded(n)
    raise TraceError(f"error: --router-mode must be one of {', '.join(ROUTER_MODES)}, got {mode!r}")
