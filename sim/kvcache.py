"""A worker's KV block pool: content-addressed full blocks, prefix reuse, LRU eviction.

Matches ai-dynamo 1.4.2's native vLLM pool (dynamo-replay-1.4.2-observed.md §0.4):
- a block is active while its reference count is > 0; a cached block keeps its hash at refcount 0;
- free blocks sit in one queue; a request releases its blocks last-first onto the tail;
- allocation takes a free block that never had a hash (or lost it) if one exists, otherwise it
  evicts the oldest cached free block (the queue head) and drops its hash;
- duplicate copies of a hash are all cached; a lookup returns the oldest copy still cached.

Block identities are plain ints (see `sim.workload` for how they are derived), so the pool never
sees tokens. All operations are O(1) per block. Agentic prompts are ~1,500 blocks long and every
request touches and releases all of them, so the per-block loops are written the way CPython 3.11
runs them fastest (measured): plain `for` loops for index writes, C-level `map` for reads, and a
plain insertion-ordered dict as the free queue (an OrderedDict node costs ~3x more per insert and
delete; a lazily-checked append-only list was slower still).
"""

from __future__ import annotations

from itertools import islice, repeat


class BlockPool:
    __slots__ = ("num_blocks", "ref", "bhash", "plain_free", "lru", "cache", "dups", "active", "gen",
                 "head_dead")

    def __init__(self, num_blocks: int) -> None:
        self.num_blocks = num_blocks
        self.ref = [0] * num_blocks
        self.bhash: list[int | None] = [None] * num_blocks
        # Free blocks without a hash: which one is taken never matters, so a stack.
        self.plain_free = list(range(num_blocks - 1, -1, -1))
        # Free blocks with a hash, oldest first (the eviction order): dict order is insertion
        # order and a re-inserted key goes to the end, exactly a queue with removal.
        self.lru: dict[int, None] = {}
        self.cache: dict[int, int] = {}  # hash -> oldest cached copy (block id)
        self.dups: dict[int, list[int]] = {}  # hash -> younger copies, oldest first
        self.active = 0
        self.gen = 0  # bumped whenever a hash is cached or dropped (lookups may change)
        # Deleted dict slots stay in place until the dict resizes, and iterating from the front
        # walks over them: evictions leave theirs at the head, so rebuild after that many.
        self.head_dead = 0

    # -- queries ---------------------------------------------------------------------------
    @property
    def free(self) -> int:
        return self.num_blocks - self.active

    @property
    def ncached(self) -> int:
        """Free blocks that still carry a hash."""
        return len(self.lru)

    cached_free = ncached

    def __contains__(self, h: int) -> bool:
        return h in self.cache

    @staticmethod
    def active_count(refs: list[int]) -> int:
        """How many of these reference counts (read from `ref`) belong to active blocks."""
        return len(refs) - refs.count(0)

    # -- mutation --------------------------------------------------------------------------
    def lookup(self, keys: list[int], limit: int) -> list[int]:
        """Block ids of the longest cached prefix of `keys[:limit]` (oldest copy of each)."""
        cache = self.cache
        if limit < len(keys):
            keys = keys[:limit]
        if not keys or keys[0] not in cache:
            return []
        # One C-level pass that may run past the first miss (usually a short new tail) beats
        # takewhile + a second pass over a long hit.
        got = list(map(cache.get, keys))
        if None in got:
            del got[got.index(None):]
        return got

    def touch_many(self, blocks: list[int], refs: list[int] | None = None) -> None:
        """Take a reference on each cached block (a prefix hit). `refs`: their current counts."""
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
        if k:
            out = pf[len(pf) - k:]
            del pf[len(pf) - k:]
        else:
            out = []
        if k < n:
            # Evict the oldest cached free blocks.
            self.gen += 1
            lru = self.lru
            if self.head_dead > 4096:
                lru = self.lru = dict(lru)  # same order, without the dead slots
                self.head_dead = 0
            ev = list(islice(lru, n - k))
            self.head_dead += len(ev)
            bhash = self.bhash
            if self.dups:
                for b in ev:
                    del lru[b]
                    self._drop_hash(b, bhash[b])
            else:
                cache = self.cache
                for b in ev:
                    del lru[b]
                    del cache[bhash[b]]
            # bhash of an evicted block is left stale: only blocks a request registered
            # (its first `nreg`) are ever released onto the LRU, and registering overwrites it.
            out += ev
        ref = self.ref
        for b in out:
            ref[b] = 1
        self.active += n
        return out

    def _drop_hash(self, b: int, h: int) -> None:
        d = self.dups.get(h)
        if self.cache[h] == b:
            if d:
                self.cache[h] = d.pop(0)
                if not d:
                    del self.dups[h]
            else:
                del self.cache[h]
        else:
            d.remove(b)
            if not d:
                del self.dups[h]

    def register_many(self, blocks: list[int], keys: list[int]) -> None:
        """Give just-filled blocks their hashes; they become matchable at once. A hash that is
        already cached gets a duplicate copy (both stay matchable)."""
        cache = self.cache
        self.gen += 1
        if cache.keys().isdisjoint(keys):
            cache.update(zip(keys, blocks))
            bhash = self.bhash
            for b, h in zip(blocks, keys):
                bhash[b] = h
        else:
            for b, h in zip(blocks, keys):
                self.register(b, h)

    def register(self, b: int, h: int) -> None:
        self.gen += 1
        self.bhash[b] = h
        if h in self.cache:
            self.dups.setdefault(h, []).append(b)
        else:
            self.cache[h] = b

    def release(self, blocks: list[int], nreg: int) -> None:
        """Drop one reference on each block, last block first (leaves are evicted first). The
        first `nreg` blocks carry hashes (they go to the LRU), the rest are plain."""
        ref = self.ref
        rev = blocks[::-1]
        nplain = len(blocks) - nreg
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
