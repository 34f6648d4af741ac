"""Tool time in the gaps between requests (dynamo-formats.md §4.4): which terminal tool spans of a
chain fall in a row's wait for its dependencies, and how much of that wait they cover
(`tool_wait_ms`); the rest is the row's `delay`.
"""

from __future__ import annotations

import bisect
import itertools
import operator
from collections import defaultdict

from .dynamo_rows import tool_interval, tool_status
from .model import Request, ToolEvent, Trace
from .mooncake import ToolSpan, tool_event_json
from .request_graph import Graph

_START_END = operator.itemgetter(0, 1)


class ChainTools:
    """Terminal tool spans of one chain, sorted by (start, end), for overlap queries. `reach[i]`
    is the latest end among the first i+1 spans, so a bisect on it skips every span that ends
    before the query. A span still running past the starts of the next LONG spans (a user pause
    of hours, a background tool) would keep the reach high over all of them: those few are kept
    aside and checked on every query, so a query costs about what it returns."""

    __slots__ = ("spans", "starts", "reach", "long", "by_end", "ends")
    LONG = 4

    def __init__(self, spans: list[tuple[int, int, ToolEvent]]) -> None:
        spans.sort(key=_START_END)
        k = self.LONG
        starts = [s[0] for s in spans]
        long_idx = {i for i in range(len(spans) - k) if spans[i][1] > starts[i + k]}
        self.long = [spans[i] for i in sorted(long_idx)]
        short = [s for i, s in enumerate(spans) if i not in long_idx] if long_idx else spans
        self.spans = short
        self.starts = [s[0] for s in short]
        self.reach = list(itertools.accumulate((s[1] for s in short), max))
        self.by_end = spans  # sorted by end on the first `ending_in` (G3c rules only)
        self.ends: list[int] | None = None

    def overlapping(self, lo: int, hi: int) -> list[tuple[int, int, ToolEvent]]:
        """Spans with positive overlap with [lo, hi], in (start, end) order."""
        if hi <= lo:
            return []
        a = bisect.bisect_right(self.reach, lo)
        b = bisect.bisect_left(self.starts, hi, a)
        # positive overlap: start < hi (the bisect, for the short ones), end > lo, end > start
        found = [s for s in self.spans[a:b] if s[1] > lo and s[1] > s[0]] if a < b else []
        if self.long:
            found += [s for s in self.long if s[0] < hi and s[1] > lo and s[1] > s[0]]
        if len(found) > 1:
            found.sort(key=_START_END)
        return found

    def ending_in(self, lo: int, hi: int) -> list[tuple[int, int, ToolEvent]]:
        """Spans whose end lies in (lo, hi], in (start, end) order."""
        if self.ends is None:
            self.by_end = sorted(self.by_end, key=lambda s: (s[1], s[0]))
            self.ends = [s[1] for s in self.by_end]
        a = bisect.bisect_right(self.ends, lo)
        b = bisect.bisect_right(self.ends, hi)
        return sorted(self.by_end[a:b], key=lambda s: (s[0], s[1]))


def tool_index(trace: Trace) -> tuple[dict[str, ChainTools], int]:
    by_chain: dict[str, list] = defaultdict(list)
    n = 0
    for t in trace.tools:
        if not t.terminal:
            continue
        iv = tool_interval(t)
        if iv is None:
            trace.skipped["tool spans ending before they start"] += 1
            continue
        by_chain[t.chain_id].append((iv[0], iv[1], t))
        n += 1
    return {c: ChainTools(s) for c, s in by_chain.items()}, n


def covered_ms(intervals: list[tuple[int, int]]) -> int:
    """The length of the union of `intervals`."""
    total = 0
    cur_s = cur_e = None
    for s, e in sorted(intervals):
        if cur_e is None or s > cur_e:
            if cur_e is not None:
                total += cur_e - cur_s
            cur_s, cur_e = s, e
        elif e > cur_e:
            cur_e = e
    if cur_e is not None:
        total += cur_e - cur_s
    return total


def _tool_fields(s: tuple[int, int, ToolEvent]) -> tuple:
    """ToolSpan's fields, in order, for a tool event clipped to (start, end)."""
    start, end, t = s
    return (t.tool_call_id or "", t.tool_class or "", start if start > 0 else 0, end if end > 0 else 0,
            float(t.duration_ms if t.duration_ms is not None else end - start), tool_status(t),
            t.output_bytes, t.output_tokens, t.error_type)


def tool_span(s: tuple[int, int, ToolEvent]) -> ToolSpan:
    return ToolSpan(*_tool_fields(s))


def tool_json(s: tuple[int, int, ToolEvent]) -> dict:
    """`tool_span(s).to_json()` without the intermediate record."""
    return tool_event_json(*_tool_fields(s))


def g3c_spans(g: Graph, i: int, r: Request, chain: str, dep_end: int, ct: ChainTools | None) -> list:
    prev = g.previous[i]
    window_start = g.order[prev].start_ms if prev >= 0 else dep_end
    picked: list = []
    seen: set[int] = set()
    for t in g.consumer_tools.get(r.request_id, ()):
        iv = tool_interval(t)
        if iv is not None:
            picked.append((iv[0], iv[1], t))
            seen.add(id(t))
    if ct is not None:
        for s in ct.ending_in(window_start, r.start_ms):
            t = s[2]
            cl = t.claude
            if id(t) in seen or (cl is not None and (cl.consumer_request_id is not None or cl.execution_mode == "background")):
                continue
            picked.append(s)
    picked.sort(key=lambda s: (s[0], s[1]))
    return picked


def waiting_call(t: int, starts: list[int], waits_from: list) -> int:
    """Which call of a chain a tool running at `t` belongs to: the call whose wait holds `t`, the
    same wait `gap_tools` attributes tool time in (from its dependencies' last end to its start).
    `starts`: the chain's calls' starts, ascending; `waits_from[k]`: the last end among call k's
    dependencies (None: it has none). The index of the first call starting after `t` when its
    wait had begun by `t`, else -1 (a tool before the chain's first call, after its last, or while
    a call runs)."""
    k = bisect.bisect_right(starts, t)
    if k < len(starts) and waits_from[k] is not None and waits_from[k] <= t:
        return k
    return -1


def gap_tools(g: Graph, i: int, r: Request, chain: str, dep_end: int, ct: ChainTools | None,
              g3c: bool) -> tuple[list, int]:
    """The tool spans a row's wait from `dep_end` (its dependencies' last end) to its start takes
    (G2: any of the chain's spans overlapping the wait; G3c: `g3c_spans`), and the ms of the wait
    they cover (`tool_wait_ms`, never more than the wait)."""
    start = r.start_ms
    if g3c:
        spans = g3c_spans(g, i, r, chain, dep_end, ct)
    else:
        spans = ct.overlapping(dep_end, start)
    if not spans:
        return spans, 0
    gap = start - dep_end if start > dep_end else 0
    covered = covered_ms([(s if s > dep_end else dep_end, e if e < start else start) for s, e, _ in spans
                          if min(e, start) > max(s, dep_end)])
    return spans, covered if covered < gap else gap
