"""Prompt hash lists that share the prefixes they repeat.

A chain's next prompt repeats the previous one's sequence hashes up to its first changed block,
so a long agentic trace holds the same prefixes over and over: as flat arrays, 2.9 KB a row of
the benchmark trace and 40% of a million-row convert's memory (every 4 KB page of which costs
about 8 µs of kernel time to fault in on the benchmark VM).

A `SharedHashes` is the first `keep` hashes of a `key` array, shared by the chain's prompts
since the key was made, then a short `tail` of its own. When a tail grows past `MAX_TAIL` the
list becomes the next key. Every operation stays one or two C-level array copies of the short
parts, as cheap as on flat arrays (chunked ropes, tried first, cost more Python than the memory
they saved), at about 1 KB a row.

Plain sequences (tuples, `array('Q')`) are accepted wherever a SharedHashes is, so readers that
gain nothing from sharing keep their flat lists.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence

MAX_TAIL = 128  # hashes a row may hold beyond its key; balances tail bytes against key copies
_EMPTY = array("Q")


class SharedHashes(Sequence):
    """An immutable u64 list: `key[:keep] + tail`."""

    __slots__ = ("key", "keep", "tail")

    def __init__(self, key: array, keep: int, tail: array) -> None:
        self.key = key
        self.keep = keep
        self.tail = tail

    def __len__(self) -> int:
        return self.keep + len(self.tail)

    def __iter__(self):
        return iter(self.array())

    def __getitem__(self, i):
        return self.array()[i]

    def array(self) -> array:
        """The whole list, flat (the key itself when that is all: never mutate it)."""
        key, keep, tail = self.key, self.keep, self.tail
        if not tail:
            return key if keep == len(key) else key[:keep]
        return key[:keep] + tail

    def __eq__(self, other: object) -> bool:
        if isinstance(other, SharedHashes):
            other = other.array()
        if isinstance(other, array):
            return self.array() == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"SharedHashes({list(self)!r})"


def extend(prev: SharedHashes | None, keep: int, new: array) -> SharedHashes:
    """`prev`'s first `keep` hashes, then `new` (which the result may own)."""
    if prev is None or keep == 0:
        return SharedHashes(new, len(new), _EMPTY)
    key, kk, tail = prev.key, prev.keep, prev.tail
    if keep >= kk:
        tail = tail[:keep - kk] + new
        keep = kk
    else:
        tail = new
    if len(tail) > MAX_TAIL:
        key = key[:keep] + tail
        return SharedHashes(key, len(key), _EMPTY)
    return SharedHashes(key, keep, tail)


def diverge(a: Sequence[int], b: Sequence[int]) -> tuple[int, Sequence[int]]:
    """(k, b[k:]) for k the length of the common prefix of two hash lists: over the tails alone
    when both share a key, else by C-level compares of the flat lists."""
    if type(a) is SharedHashes and type(b) is SharedHashes and a.key is b.key:
        ka, kb = a.keep, b.keep
        if ka == kb:
            fa, fb = a.tail, b.tail
        elif ka < kb:
            fa, fb = a.tail, b.key[ka:kb] + b.tail
        else:
            fa, fb = a.key[kb:ka] + a.tail, b.tail
            ka = kb
        m = common_prefix_flat(fa, fb)
        return ka + m, fb[m:]
    fa, fb = flat(a), flat(b)
    k = common_prefix_flat(fa, fb)
    return k, fb[k:]


def flat(h: Sequence[int]) -> Sequence[int]:
    """A SharedHashes as one array; other sequences as they are."""
    return h.array() if type(h) is SharedHashes else h


def common_prefix_flat(a, b) -> int:
    """Common prefix length of two flat sequences, by C-level slice compares (a memcmp for
    array('Q'), ~1 µs for 400 hashes, where comparing them one by one costs ~40 µs)."""
    la, lb = len(a), len(b)
    n = la if la < lb else lb
    # the usual cases first, slicing (copying) only the longer side: a prompt extends the last one
    if a == b if la == lb else (a == b[:la] if la < lb else a[:lb] == b):
        return n
    if n > 1 and a[:n - 1] == b[:n - 1]:  # the usual case: only a trailing partial block differs
        return n - 1
    lo, hi = 0, n - 2
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo
