"""The track tree: custom named tracks (perfetto.md §1.3) with deterministic uuids, explicit
ordering, and lanes for work that overlaps.

Lanes: overlapping slices must never share a track (an END closes the most recent BEGIN, so a
partial overlap silently misnests). Concurrent items get same-named sibling tracks; the UI merges
same-named siblings into one visual track and packs their slices itself.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass

# TrackDescriptor.ChildTracksOrdering
ORDER_UNKNOWN = 0
ORDER_EXPLICIT = 3

SLICE = "slice"
COUNTER = "counter"

# Track uuids of timeline k live in [(k + 1) << 20, (k + 2) << 20) (3-byte varints on every event),
# flow ids in [(k + 1) << 48, (k + 2) << 48) (fixed64 anyway; below 2^53 so JSON keeps them exact):
# two timelines never collide.
_TRACK_SHIFT = 20
_FLOW_SHIFT = 48
MAX_TIMELINES = 30


def track_base(timeline_index: int) -> int:
    return (timeline_index + 1) << _TRACK_SHIFT


def flow_base(timeline_index: int) -> int:
    return (timeline_index + 1) << _FLOW_SHIFT


@dataclass(frozen=True, slots=True)
class TrackSpec:
    uuid: int
    parent: int  # 0: a root
    name: str
    kind: str = SLICE  # SLICE | COUNTER
    rank: int = 0  # sibling_order_rank under an EXPLICIT parent
    child_ordering: int = ORDER_UNKNOWN
    description: str = ""
    unit_name: str = ""  # counters
    lane: int = 0  # which lane of a same-named set (0 for single tracks)


class TrackTree:
    """Allocates tracks in creation order (so the same input gives the same uuids)."""

    def __init__(self, timeline_index: int) -> None:
        if not 0 <= timeline_index < MAX_TIMELINES:
            raise ValueError(f"at most {MAX_TIMELINES} timelines per trace")
        self._next = track_base(timeline_index)
        self._limit = track_base(timeline_index + 1) - 1
        self.specs: list[TrackSpec] = []

    def add(self, parent: int, name: str, *, kind: str = SLICE, rank: int = 0, child_ordering: int = ORDER_UNKNOWN,
            description: str = "", unit_name: str = "", lane: int = 0) -> int:
        self._next += 1
        if self._next > self._limit:
            raise ValueError(f"more than {(1 << _TRACK_SHIFT) - 2} tracks in one timeline")
        self.specs.append(TrackSpec(self._next, parent, name, kind, rank, child_ordering, description, unit_name, lane))
        return self._next

    def lanes(self, parent: int, name: str, count: int, rank: int) -> list[int]:
        """`count` same-named sibling tracks (at least one) sharing one rank."""
        return [self.add(parent, name, rank=rank, lane=i) for i in range(max(1, count))]


def pack_lanes(intervals: Iterable[tuple[int, int]]) -> tuple[list[int], int]:
    """Greedy interval partitioning in the given order (which must be the order the items are
    written in): an item reuses the lowest lane whose last item ended at or before its start.
    Returns (lane per item, number of lanes)."""
    iv = intervals if isinstance(intervals, list) else list(intervals)
    last = None
    for start, end in iv:  # the common case, one item after another: one lane, no heap
        if last is not None and start < last:
            break
        last = end
    else:
        return [0] * len(iv), 1 if iv else 0
    busy: list[tuple[int, int]] = []  # (end, lane)
    free: list[int] = []
    lanes: list[int] = []
    ap = lanes.append
    push, pop, replace = heapq.heappush, heapq.heappop, heapq.heapreplace
    n = 0
    for start, end in iv:
        if busy and busy[0][0] <= start:
            # the item that ended first frees its lane; when no other lane is free and no other
            # item has ended, that lane is the lowest free one: reuse it in one heap operation
            if not free and (len(busy) < 2 or busy[1][0] > start) and (len(busy) < 3 or busy[2][0] > start):
                ap(replace(busy, (end, busy[0][1]))[1])
                continue
            while busy and busy[0][0] <= start:
                push(free, pop(busy)[1])
        if free:
            lane = pop(free)
        else:
            lane = n
            n += 1
        push(busy, (end, lane))
        ap(lane)
    return lanes, n
