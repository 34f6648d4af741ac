"""BlockPool.lookup walks growing windows of keys up to the first miss: the result must be the
plain longest cached prefix at every length, including hits that end on, just before and just
after a window's edge (16, 16+64, 16+64+256, ...), and with a limit shorter than the keys."""

from __future__ import annotations

import random

from trace_pipe.sim.kvcache import BlockPool


def _plain(cache: dict[int, int], keys: list[int], limit: int) -> list[int]:
    out = []
    for k in keys[:limit]:
        if k not in cache:
            break
        out.append(cache[k])
    return out


def test_lookup_is_the_longest_cached_prefix_across_window_edges():
    rng = random.Random(3)
    edges = [0, 1, 15, 16, 17, 79, 80, 81, 335, 336, 337, 1359, 1360, 1361, 2000]
    for hit in edges:
        for extra in (0, 1, 5, 400):
            keys = [rng.getrandbits(62) for _ in range(hit + extra)]
            pool = BlockPool(4096)
            pool.cache = {k: 7 * i for i, k in enumerate(keys[:hit])}
            # keys after the first miss may be cached too: the prefix stops at the miss
            for i in range(hit + 1, len(keys), 3):
                pool.cache[keys[i]] = 100_000 + i
            for limit in {len(keys), hit, max(hit - 1, 0), hit + 1, 0}:
                got = pool.lookup(keys, limit)
                assert got == _plain(pool.cache, keys, limit), (hit, extra, limit)
                assert len(got) == min(hit, limit, len(keys))
