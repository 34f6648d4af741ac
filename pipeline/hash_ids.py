"""Compact hash ids: Dynamo's converter numbers the distinct sequence hashes 0, 1, 2, ... in order
of first appearance, walking the rows in output order (`hash_ids`, dynamo-formats.md §4.3).

A dict from hash to id is the plain way, and at a million rows it is the slowest and largest
part of a convert: ~18M distinct hashes make a 2 GB dict, each insert a cache miss (14 s), and
every page of it a fault (this benchmark VM charges ~8 µs for each). The numbering needs only
to know which hashes repeat, and a sort tells that: one C-level sort of every hash, then an
argsort of the repeated ones only (few: in Dynamo's sequence hashes a block repeats only with
its whole prefix, as in shared system prompts). 2.7 s for 18M hashes, 2M of them repeats.

Rows are handled as a chain's prompts come: a prompt repeats the chain's previous one up to its
first changed block, so only the rest (the "tail") is numbered; the shared prefix reuses the
previous row's ids (`IdPlan.keep`).
"""

from __future__ import annotations

from array import array
from collections.abc import Hashable, Iterable, Sequence

import numpy as np

from .shared_hashes import diverge, flat


class IdPlan:
    """The ids of every row: row i's first `keep[i]` ids are those of row `prev[i]` (the chain's
    previous row, -1 for none), then `tail(i)`."""

    __slots__ = ("keep", "prev", "bounds", "ids")

    def __init__(self, keep: list[int], prev: list[int], bounds: array, ids: np.ndarray) -> None:
        self.keep = keep
        self.prev = prev
        self.bounds = bounds
        self.ids = ids

    def __len__(self) -> int:
        return len(self.keep)

    def tail(self, i: int) -> np.ndarray:
        return self.ids[self.bounds[i]:self.bounds[i + 1]]

    def lists(self) -> list[list[int]]:
        """Every row's whole id list."""
        out: list[list[int]] = []
        for i, (k, p) in enumerate(zip(self.keep, self.prev)):
            ids = out[p][:k] if k else []
            ids += self.tail(i).tolist()
            out.append(ids)
        return out


def plan(rows: Iterable[tuple[Hashable, Sequence[int]]]) -> IdPlan:
    """Ids of (chain, hashes) rows in output order; hashes are u64 (the readers check them)."""
    keep: list[int] = []
    prev: list[int] = []
    bounds = array("q", [0])
    values = array("Q")
    last: dict = {}
    for i, (chain, hashes) in enumerate(rows):
        before = last.get(chain)
        if before is None:
            k, rest = 0, flat(hashes)
            prev.append(-1)
        else:
            k, rest = diverge(before[1], hashes)
            prev.append(before[0])
        last[chain] = (i, hashes)
        keep.append(k)
        values.extend(rest if type(rest) is array else array("Q", rest))
        bounds.append(len(values))
    return IdPlan(keep, prev, bounds, first_appearance(values))


def first_appearance(values: array | np.ndarray) -> np.ndarray:
    """The id of the value at each position (int64), the values numbered 0, 1, 2, ... in order of
    first appearance: what `defaultdict(itertools.count().__next__)` gives, looked up in order."""
    a = np.frombuffer(values, dtype=np.uint64) if isinstance(values, array) else values
    n = len(a)
    if n < 2:
        return np.arange(n, dtype=np.int64)
    # One sort of (top bits of the value, position) keys finds every repeated value's positions,
    # and (rarely) a few more whose top bits collide; only those are then sorted by value, which
    # an argsort of all would cost 10x as much. The values are mixed first (a bijection of u64),
    # so the top bits tell values apart however the trace's hashes are spread.
    b = (n - 1).bit_length()
    key = a * _MIX
    key >>= b
    key <<= b
    key |= np.arange(n, dtype=np.uint64)
    key.sort()
    top = key >> b
    same = top[1:] == top[:-1]
    if not same.any():
        return np.arange(n, dtype=np.int64)
    near = np.zeros(n, dtype=bool)
    near[1:] = same
    near[:-1] |= same
    pos = np.sort((key[near] & np.uint64((1 << b) - 1)).astype(np.int64))
    del key, top, same, near
    sub = a[pos]
    order = np.argsort(sub, kind="stable")
    grouped = pos[order]  # positions of each value together, each group in position order
    sv = sub[order]
    starts = np.concatenate(([True], sv[1:] != sv[:-1]))
    first = grouped[starts]
    fresh = np.ones(n, dtype=bool)
    fresh[pos] = False
    fresh[first] = True
    ids = np.cumsum(fresh, dtype=np.int64)
    ids -= 1
    ids[grouped] = ids[first][np.cumsum(starts) - 1]
    return ids


_MIX = np.uint64(0x9E3779B97F4A7C15)  # odd: multiplying by it permutes the u64 values
