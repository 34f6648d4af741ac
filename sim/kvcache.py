"""A worker's KV block pool: content-addressed full blocks, prefix reuse, LRU eviction.

Matches ai-dynamo 1.4.2's native vLLM pool (dynamo-replay-1.4.2-observed.md §0.4):
- a block is active while its reference count is > 0; a cached block keeps its hash at refcount 0;
- free blocks sit in one queue; a request releases its blocks last-first onto the tail;
- allocation takes a free block that never had a hash (or lost it) if one exists, otherwise it
  evicts the oldest cached free block (the queue head) and drops its hash;
- duplicate copies of a hash are all cached; a lookup returns the oldest copy still cached.

Block identities are plain ints (see `sim.workload` for how they are derived), so the pool never
sees tokens. All operations are O(1) per block.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from itertools import repeat, takewhile

_drain = deque(maxlen=0).extend  # run an iterator of side effects at C speed


class BlockPool:
    __slots__ = ("num_blocks", "ref", "bhash", "plain_free", "lru", "cache", "dups", "active")

    def __init__(self, num_blocks: int) -> None:
        self.num_blocks = num_blocks
        self.ref = [0] * num_blocks
        self.bhash: list[int | None] = [None] * num_blocks
        # Free blocks without a hash: which one is taken never matters, so a stack.
        self.plain_free = list(range(num_blocks - 1, -1, -1))
        # Free blocks with a hash, oldest first (the eviction order).
        self.lru: OrderedDict[int, None] = OrderedDict()
        self.cache: dict[int, int] = {}  # hash -> oldest cached copy (block id)
        self.dups: dict[int, list[int]] = {}  # hash -> younger copies, oldest first
        self.active = 0

    # -- queries ---------------------------------------------------------------------------
    @property
    def free(self) -> int:
        return self.num_blocks - self.active

    @property
    def cached_free(self) -> int:
        return len(self.lru)

    def __contains__(self, h: int) -> bool:
        return h in self.cache

    # -- mutation --------------------------------------------------------------------------
    def lookup(self, keys: list[int], limit: int) -> list[int]:
        """Block ids of the longest cached prefix of `keys[:limit]` (oldest copy of each)."""
        n = len(list(takewhile(self.cache.__contains__, keys[:limit])))
        return list(map(self.cache.__getitem__, keys[:n]))

    def touch_many(self, blocks: list[int]) -> None:
        """Take a reference on each cached block (a prefix hit)."""
        ref = self.ref
        refs = list(map(ref.__getitem__, blocks))
        if 0 in refs:
            zero = [b for b, x in zip(blocks, refs) if not x]
            _drain(map(self.lru.__delitem__, zero))
            self.active += len(zero)
        _drain(map(ref.__setitem__, blocks, [x + 1 for x in refs]))

    def touch(self, h: int) -> int:
        """Take a reference on the cached block for hash `h` (it must be cached); return its id."""
        b = self.cache[h]
        if self.ref[b] == 0:
            del self.lru[b]
            self.active += 1
        self.ref[b] += 1
        return b

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
            # Evict the oldest cached free blocks. Bulk C-level maps: this is the hottest path.
            pop = self.lru.popitem
            ev = [pop(False)[0] for _ in range(n - k)]
            bhash = self.bhash
            hs = list(map(bhash.__getitem__, ev))
            if self.dups:
                for b, h in zip(ev, hs):
                    self._drop_hash(b, h)
            else:
                _drain(map(self.cache.__delitem__, hs))
            # bhash of an evicted block is left stale: only blocks a request registered
            # (its first `nreg`) are ever released onto the LRU, and registering overwrites it.
            out += ev
        _drain(map(self.ref.__setitem__, out, repeat(1)))
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
        if cache.keys().isdisjoint(keys):
            cache.update(zip(keys, blocks))
            _drain(map(self.bhash.__setitem__, blocks, keys))
        else:
            for b, h in zip(blocks, keys):
                self.register(b, h)

    def register(self, b: int, h: int) -> None:
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
        left = [x - 1 for x in map(ref.__getitem__, rev)]
        _drain(map(ref.__setitem__, rev, left))
        if 0 not in left:
            return
        nplain = len(blocks) - nreg
        if nplain:
            plain = [b for b, r in zip(rev[:nplain], left[:nplain]) if not r]
            self.plain_free.extend(plain)
            hashed = [b for b, r in zip(rev[nplain:], left[nplain:]) if not r]
            self.active -= len(plain)
        else:
            hashed = [b for b, r in zip(rev, left) if not r]
        self.lru.update(zip(hashed, repeat(None)))
        self.active -= len(hashed)
