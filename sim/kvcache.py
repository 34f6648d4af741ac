"""A worker's KV block pool: content-addressed full blocks, prefix reuse, LRU eviction.

Matches ai-dynamo 1.4.2's native vLLM pool (dynamo-replay-1.4.2-observed.md §0.4):
- a block is active while its reference count is > 0; a cached block keeps its hash at refcount 0;
- free blocks sit in one queue; a request releases its blocks last-first onto the tail;
- allocation takes a free block that never had a hash (or lost it) if one exists, otherwise it
  evicts the oldest cached free block (the queue head) and drops its hash;
- duplicate copies of a hash are all cached; a lookup returns the oldest copy still cached.

Block identities are plain ints (see `sim.workload` for how they are derived), so the pool never
sees tokens. Agentic prompts are ~1,500 blocks long, and the next turn of a session hits almost all
of the blocks the previous turn just released, so per-block work on release and hit was most of a
replay. A finishing request that registered no duplicate copy is therefore released *lazily*:
the hashed blocks it holds alone (all of them, or the tail after a prefix it shares with other
running requests, which is released block by block after it) enter the free queue as one `_Run`
(a window [lo, hi) of its block list, queued hi-1 .. lo), with their reference counts left at 1.
Why this stays exact:
- every block in a window is the oldest cached copy of its hash (it was a hit, so the oldest, or
  its first registration), and stays so while cached (new copies are younger);
- identities are chained, so a request that hits the window's block at position p has the same
  identities at every position <= p and therefore hits the window's block at `lo` too: a hit
  always takes a window's *front* [lo, lo+e), leaving one window; eviction takes its back;
- a block taken from a window goes from count 0 to 1, which the stale stored count already says;
  blocks still in a window are the only ones whose stored count is wrong, and every reader of
  counts (`hits`) corrects for them.
Everything else is the per-block bookkeeping, with plain `for` loops for index writes, C-level
`map` for reads and a plain insertion-ordered dict as the free queue (fastest on CPython 3.11,
measured). `LAZY = False` turns lazy release off (the equivalence tests compare both).
"""

from __future__ import annotations

from itertools import islice, repeat

from trace_pipe.pipeline.shared_hashes import common_prefix_flat

LAZY = True


class _Run:
    """Blocks at positions [lo, hi) of a released request, free and cached, queued hi-1 first.
    `blocks[i]` is the block at position `base + i` (taken fronts are cut off, to free memory)."""

    __slots__ = ("blocks", "base", "lo", "hi", "hlim", "pool", "key0")

    def __init__(self, blocks: list[int], hi: int, hlim: int, pool: "BlockPool") -> None:
        self.blocks = blocks
        self.base = 0
        self.lo = 0
        self.hi = hi
        self.hlim = hlim  # positions below this hold prompt identities (others can never be hit)
        self.key0 = 0  # identity at position 0 (see BlockPool.roots)
        self.pool = pool


class BlockPool:
    __slots__ = ("num_blocks", "fresh", "ref", "bhash", "plain_free", "lru", "cache", "dups", "active", "gen",
                 "head_dead", "nshared", "lazy", "nruns", "runset", "roots", "changes")

    def __init__(self, num_blocks: int) -> None:
        self.num_blocks = num_blocks
        # Blocks come into being when first handed out (ids `fresh`, `fresh + 1`, ...): a pool
        # costs memory for the blocks a trace uses, not for the `num_gpu_blocks` it was given.
        self.fresh = 0
        self.ref: list[int] = []
        self.bhash: list[int | None] = []
        # Released free blocks without a hash: which one is taken never matters, so a stack
        # (the never-used blocks lie below it, lowest id on top).
        self.plain_free: list[int] = []
        # Free blocks with a hash, oldest first (the eviction order): dict order is insertion
        # order and a re-inserted key goes to the end, exactly a queue with removal. A key is a
        # block id or a `_Run` (several blocks at that place in the queue).
        self.lru: dict = {}
        self.cache: dict[int, int] = {}  # hash -> oldest cached copy (block id)
        self.dups: dict[int, list[int]] = {}  # hash -> younger copies, oldest first
        self.active = 0
        self.gen = 0  # bumped whenever a hash is cached or dropped (lookups may change)
        # Deleted dict slots stay in place until the dict resizes, and iterating from the front
        # walks over them: evictions leave theirs at the head, so the queue is rebuilt once they
        # outnumber its live keys (a fixed 4,096 had each eviction skip ~2,000 dead slots).
        self.head_dead = 0
        self.nshared = 0  # blocks with refcount >= 2 (0: every active block has one holder)
        self.lazy = 0  # blocks inside runs
        self.nruns = 0  # runs in `lru`
        self.runset: dict[_Run, None] = {}  # the same runs, for C-level disjointness checks
        # identity at position 0 -> {block at the window's front: run} for runs that still hold
        # prompt blocks: only a request with that first identity can hit them, and it hits a
        # run exactly when its hit at the run's front position is that block
        self.roots: dict[int, dict[int, _Run]] = {}
        # the hashes cached (False) and dropped (True) since the owner last cleared this, in
        # order, as (dropped, hashes) per call; None: not kept. Dynamo 1.5+ routers see a pass's
        # stores and evictions only at the pass end, so the router asks what the cache held
        # before the pass in flight (appends only: most passes are never asked about).
        self.changes: list[tuple[bool, list[int]]] | None = None

    # -- queries ---------------------------------------------------------------------------
    @property
    def free(self) -> int:
        return self.num_blocks - self.active

    @property
    def ncached(self) -> int:
        """Free blocks that still carry a hash."""
        return len(self.lru) - self.nruns + self.lazy

    cached_free = ncached

    def __contains__(self, h: int) -> bool:
        return h in self.cache

    @staticmethod
    def active_count(refs: list[int]) -> int:
        """How many of these reference counts (read from `ref`) belong to active blocks."""
        return len(refs) - refs.count(0)

    # -- lookups ---------------------------------------------------------------------------
    def lookup(self, keys: list[int], limit: int) -> list[int]:
        """Block ids of the longest cached prefix of `keys[:limit]` (oldest copy of each)."""
        cache = self.cache
        n = min(limit, len(keys))
        if not n or keys[0] not in cache:
            return []
        # C-level passes over growing windows (16, 64, 256, ... keys) up to the first miss: a
        # long hit (agentic turns) costs a few passes, a short one (a shared system prompt ahead
        # of a new conversation) no longer walks the whole prompt.
        got: list[int] = []
        k = 0
        step = 16
        get = cache.get
        while k < n:
            e = k + step if k + step < n else n
            part = list(map(get, keys[k:e]))
            if None in part:
                del part[part.index(None):]
                got += part
                return got
            got += part
            k = e
            step <<= 2
        return got

    def lookup_after(self, run: "_Run | None", shared: int, keys: list[int], limit: int) -> list[int]:
        """`lookup`, for a request whose first `shared` identities are those of the request that
        released `run`: while that run is whole, those positions are its blocks (the oldest
        copies, all cached), so only the rest is looked up."""
        if run is None or run.pool is not self or run.lo or run.hi <= 0 or shared <= 0:
            return self.lookup(keys, limit)
        m = min(shared, run.hi, limit)
        got = run.blocks[:m]
        if m < limit and m < len(keys):
            got += self.lookup(keys[m:limit], limit - m)
        return got

    def hits(self, hitb: list[int], key0: int) -> tuple[int, list, list[int], list[int]]:
        """For the hit blocks `hitb` (positions 0..): (how many are active, the runs they take
        [(lo, count, run)], the other blocks, those blocks' reference counts)."""
        runs = []
        fronts = self.roots.get(key0) if self.roots else None
        if fronts:
            h = len(hitb)
            # few runs: look at each; many (a prompt prefix shared by every request): one
            # C-level intersection with the hit blocks
            cand = list(fronts.items()) if len(fronts) <= 8 else [(b, fronts[b]) for b in fronts.keys() & hitb]
            for b, run in cand:
                lo = run.lo
                if lo < h and hitb[lo] == b:
                    end = min(run.hlim, run.hi, h)
                    base = run.base
                    runs.append((lo, common_prefix_flat(hitb[lo:end], run.blocks[lo - base:end - base]), run))
        if runs:
            if len(runs) > 1:
                runs.sort(key=lambda x: x[0])
            rest = []
            at = 0
            for lo, e, _run in runs:
                rest += hitb[at:lo]
                at = lo + e
            rest += hitb[at:]
        else:
            rest = hitb
        refs = list(map(self.ref.__getitem__, rest))
        return len(refs) - refs.count(0), runs, rest, refs

    # -- mutation --------------------------------------------------------------------------
    def take(self, runs: list, rest: list[int], refs: list[int]) -> None:
        """Take a reference on hit blocks, as split by `hits`."""
        for lo, e, run in runs:
            self._unindex(run)
            lo += e
            run.lo = lo
            self.lazy -= e
            self.active += e
            if lo >= run.hi:
                del self.lru[run]
                self.nruns -= 1
                del self.runset[run]
                run.blocks = []
            else:
                run.blocks = run.blocks[lo - run.base:run.hi - run.base]
                run.base = lo
                self._index(run)
        if rest:
            self.touch_many(rest, refs)

    def _index(self, run: _Run) -> None:
        """List `run` under its front block while it holds prompt blocks."""
        if run.lo < run.hlim and run.lo < run.hi:
            self.roots.setdefault(run.key0, {})[run.blocks[run.lo - run.base]] = run

    def _unindex(self, run: _Run) -> None:
        if run.lo < run.hlim and run.lo < run.hi:
            fronts = self.roots[run.key0]
            del fronts[run.blocks[run.lo - run.base]]
            if not fronts:
                del self.roots[run.key0]

    def touch_many(self, blocks: list[int], refs: list[int] | None = None) -> None:
        """Take a reference on each cached block (a prefix hit) that is not in a run. `refs`:
        their current counts."""
        ref = self.ref
        if refs is None:
            refs = list(map(ref.__getitem__, blocks))
        nz = refs.count(0)
        if nz == len(refs):  # all were free (the usual case): leave the queue, count 1
            lru = self.lru
            for b in blocks:
                del lru[b]
                ref[b] = 1
        else:
            self.nshared += refs.count(1)
            if nz:
                lru = self.lru
                for b, x in zip(blocks, refs):
                    if not x:
                        del lru[b]
            for b, x in zip(blocks, refs):
                ref[b] = x + 1
        self.active += nz

    def alloc(self, n: int) -> list[int]:
        """`n` fresh blocks (refcount 1, no hash). The caller made sure `n <= free`."""
        pf = self.plain_free
        k = min(n, len(pf))
        if k < n and self.fresh < self.num_blocks:
            m = min(n - k, self.num_blocks - self.fresh)
            f = self.fresh
            self.fresh = f + m
            self.ref.extend(repeat(0, m))
            self.bhash.extend(repeat(None, m))
            out = list(range(f + m - 1, f - 1, -1)) + pf  # the stack's top k + m, as one list held them
            pf.clear()
            k += m
        elif k:
            out = pf[len(pf) - k:]
            del pf[len(pf) - k:]
        else:
            out = []
        if k < n:
            out += self._evict(n - k)
        ref = self.ref
        for b in out:
            ref[b] = 1
        self.active += n
        return out

    def _evict(self, need: int) -> list[int]:
        """Drop the hashes of the `need` oldest cached free blocks and return them."""
        self.gen += 1
        lru = self.lru
        if self.head_dead > 64 and self.head_dead > len(lru):
            lru = self.lru = dict(lru)  # same order, without the dead slots
            self.head_dead = 0
        ev = list(islice(lru, need))
        if not self.nruns or self.runset.keys().isdisjoint(ev):  # single blocks only (C-level checks)
            for b in ev:
                del lru[b]
            self.head_dead += need
            self._drop_hashes(ev)
            return ev
        ev = []
        done: list = []
        for item in lru:
            if type(item) is _Run:
                c = min(need - len(ev), item.hi - item.lo)
                hi = item.hi - item.base
                ev += item.blocks[hi - c:hi][::-1]
                if item.hi - c <= item.lo:
                    self._unindex(item)  # emptied (a run that keeps blocks keeps its front: listed as it was)
                    done.append(item)
                del item.blocks[hi - c:]
                item.hi -= c
                self.lazy -= c
            else:
                ev.append(item)
                done.append(item)
            if len(ev) >= need:
                break
        for item in done:
            del lru[item]
            if type(item) is _Run:
                self.nruns -= 1
                del self.runset[item]
        self.head_dead += len(done)
        self._drop_hashes(ev)
        return ev

    def _drop_hashes(self, ev: list[int]) -> None:
        # bhash of an evicted block is left stale: only blocks a request registered (its first
        # `nreg`) are ever released onto the LRU, and registering overwrites it.
        bhash = self.bhash
        dups = self.dups
        if dups:
            cache = self.cache
            for b in ev:
                h = bhash[b]
                if h in dups:
                    self._drop_hash(b, h)
                else:  # the only copy
                    del cache[h]
                    if self.changes is not None:
                        self.changes.append((True, [h]))
        elif self.changes is None:
            cache = self.cache
            for b in ev:
                del cache[bhash[b]]
        else:
            cache = self.cache
            hs = [bhash[b] for b in ev]  # read once: they go to the router's list too
            for h in hs:
                del cache[h]
            self.changes.append((True, hs))

    def _drop_hash(self, b: int, h: int) -> None:
        d = self.dups.get(h)
        if self.cache[h] == b:
            if d:
                self.cache[h] = d.pop(0)
                if not d:
                    del self.dups[h]
            else:
                del self.cache[h]
                if self.changes is not None:
                    self.changes.append((True, [h]))
        else:
            d.remove(b)
            if not d:
                del self.dups[h]

    def register_many(self, blocks: list[int], keys: list[int]) -> bool:
        """Give just-filled blocks their hashes; they become matchable at once. A hash that is
        already cached gets a duplicate copy (both stay matchable). True if any did."""
        cache = self.cache
        self.gen += 1
        if cache.keys().isdisjoint(keys):
            cache.update(zip(keys, blocks))
            if self.changes is not None:
                self.changes.append((False, keys))
            bhash = self.bhash
            for b, h in zip(blocks, keys):
                bhash[b] = h
            return False
        dup = False
        for b, h in zip(blocks, keys):
            dup |= self.register(b, h)
        return dup

    def register(self, b: int, h: int) -> bool:
        self.gen += 1
        self.bhash[b] = h
        if h in self.cache:
            self.dups.setdefault(h, []).append(b)
            return True
        self.cache[h] = b
        if self.changes is not None:
            self.changes.append((False, [h]))
        return False

    def release(self, blocks: list[int], nreg: int, refs: list[int] | None = None) -> None:
        """Drop one reference on each block, last block first (leaves are evicted first). The
        first `nreg` blocks carry hashes (they go to the LRU), the rest are plain. `refs`: the
        blocks' counts, last block first, when the caller has them."""
        ref = self.ref
        rev = blocks[::-1]
        nplain = len(blocks) - nreg
        if refs is None:
            refs = list(map(ref.__getitem__, rev))
        if refs.count(1) == len(refs):  # sole holder of every block (the usual case)
            for b in rev:
                ref[b] = 0
            if nplain:
                self.plain_free += rev[:nplain]
                self.lru.update(zip(rev[nplain:], repeat(None)))
            else:
                self.lru.update(zip(rev, repeat(None)))
            self.active -= len(rev)
            return
        self.nshared -= refs.count(2)
        freed = 0
        lru = self.lru
        pf = self.plain_free
        i = 0
        for b, x in zip(rev, refs):
            x -= 1
            ref[b] = x
            if not x:
                freed += 1
                if i < nplain:
                    pf.append(b)
                else:
                    lru[b] = None
            i += 1
        self.active -= freed

    def release_run(self, blocks: list[int], nreg: int, prompt_keys: list[int] | None) -> _Run | None:
        """`release` for a finishing request that registered no duplicate: when it holds every
        block alone, its hashed blocks go to the queue as one run (no per-block work). Returns
        the run, or None when it was released block by block."""
        if not LAZY or nreg == 0:
            self.release(blocks, nreg)
            return None
        q = 0  # blocks [0, q) are shared with other requests (a common prompt prefix)
        if self.nshared:
            refs = list(map(self.ref.__getitem__, blocks))
            n = len(refs)
            if refs.count(1) != n:
                # Shared blocks usually form a prefix (counts fall along a chain): find where
                # the sole-held tail starts, and check it.
                if refs[-1] == 1:
                    lo, hi = 0, n - 1  # refs[hi] == 1
                    while lo < hi:
                        mid = (lo + hi) >> 1
                        if refs[mid] == 1:
                            hi = mid
                        else:
                            lo = mid + 1
                    q = hi
                if not 0 < q < nreg or refs[q:].count(1) != n - q:
                    refs.reverse()
                    self.release(blocks, nreg, refs)
                    return None
        if len(blocks) > nreg:
            ref = self.ref
            plain = blocks[:nreg - 1:-1]
            for b in plain:
                ref[b] = 0
            self.plain_free += plain
        npk = len(prompt_keys) if prompt_keys else 0
        run = _Run(blocks, nreg, min(nreg, npk), self)
        run.lo = q
        self.lru[run] = None
        self.runset[run] = None
        self.nruns += 1
        self.lazy += nreg - q
        self.active -= len(blocks) - q
        if q:
            # the shared head is released block by block, after the tail (last block first)
            head = refs[q - 1::-1]  # type: ignore[possibly-undefined]
            self.release(blocks[:q], q, head)
        if run.hlim > q:
            run.key0 = prompt_keys[0]  # type: ignore[index]
            self._index(run)
        return run
