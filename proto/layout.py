"""Timelines -> track tree + an ordered stream of events, shared by the protobuf and JSON writers.

Tree per timeline (one root each; perfetto.md §1.3, §2):

    <root name>                      child_ordering EXPLICIT
      in flight            rank 0    counter: requests in flight in total
      <group> ...          rank 1..  one per play / root session, in order of first start
        <chain>            3i        request slices (same-named lanes when requests overlap)
        <chain> stages     3i+1      only with separate stage tracks
        <chain> tools      3i+2      tool slices / instants (lanes too)
      workers              last      one group per worker, numeric order (worker 2 < worker 10)
        [prefill workers / decode workers]   a disaggregated run's pools, each a group of its workers
        worker N [dp R]
          in flight        rank 0    counter
          requests         rank 1    what ran there (lanes)

Write order (what keeps trace processor from misnesting anything, perfetto.md §1.4, §1.6):
requests are written as whole blocks (BEGIN, stages, marks, END) in (start, end, key) order, with
a dependency written before its dependent when both start at the same instant; each lane is
packed in that same order, so on any track an END is written before a BEGIN at the same time.
A flow's source sits on the dependency's BEGIN and its terminator on the dependent's BEGIN (a
disaggregated request's KV handoff: from its prefill worker slice to its decode worker slice); when
recorded times put the dependent's start first (`--weka-subagents wait` joins, a stopped replay),
the edge is not drawn (trace processor would point the arrow backwards) and is counted by reason.
Then tool items, worker slices and counter samples, each track in time order.
"""

from __future__ import annotations

import hashlib
import itertools
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from .spans import ChainItem, RequestSpan, Timeline
from .tracks import COUNTER, ORDER_EXPLICIT, TrackSpec, TrackTree, flow_base, pack_lanes

COUNTER_UNIT = "requests"
# track names `trace-pipe check` reads back (proto/layout_check.py)
IN_FLIGHT, WORKERS, STAGES = "in flight", "workers", " stages"


class Block(NamedTuple):
    """A slice with its nested children, written BEGIN, children, END.

    Layout events are named tuples: the layout builds ~7 per request, `_new(Block, (...))` (no
    Python-level __init__) builds one in 3/4 of a slotted class's time, and the encoder unpacks
    one in a single step."""

    start: int
    end: int
    track: int
    name: str
    cat: str
    args: tuple
    corr: int = 0
    flows_out: tuple = ()
    flows_in: tuple = ()
    children: tuple = ()


class Instant(NamedTuple):
    ts: int
    track: int
    name: str
    cat: str
    args: tuple


class Sample(NamedTuple):
    ts: int
    track: int
    value: int


class Series(NamedTuple):
    """A counter track's samples, (ts, value) in time order (`Layout.stream`)."""

    track: int
    samples: list[tuple[int, int]]


_new = tuple.__new__  # _new(Block, (all ten fields)): a layout event without NamedTuple.__new__'s Python call


def correlation_id(key: str) -> int:
    """Stable per request key, so a request has the same colour in every timeline."""
    # 32 bits: only colour depends on it, and it costs 5 bytes per slice instead of 9
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=4).digest(), "little") or 1


@dataclass(slots=True)
class LayoutStats:
    timelines: int = 0
    requests: int = 0
    tool_items: int = 0
    links: int = 0
    flows: int = 0
    links_skipped: Counter = field(default_factory=Counter)  # reason -> edges not drawn
    flows_per_timeline: dict = field(default_factory=dict)  # root name -> flows drawn
    links_per_timeline: dict = field(default_factory=dict)  # root name -> edges given
    skipped_per_timeline: dict = field(default_factory=dict)  # root name -> {reason: edges not drawn}
    requests_per_timeline: dict = field(default_factory=dict)  # root name -> request slices
    not_drawn_per_timeline: dict = field(default_factory=dict)  # root name -> requests declared missing


class _Plan:
    """One timeline's tracks, write order and flow endpoints."""

    __slots__ = ("tl", "order", "req_track", "stage_track", "flow_out", "flow_in", "tools",
                 "tool_track", "placements", "counters", "corr",
                 "worker_series", "worker_counters", "placement_flows")

    def __init__(self, tl: Timeline) -> None:
        self.tl = tl
        self.placement_flows: tuple[dict, dict] = ({}, {})


class Layout:
    """`lane_units`: the unit a writer rounds times to (the Chrome JSON writer's ns -> µs, which
    also widens every slice to at least one unit); lanes are packed on those rounded intervals,
    so slices that meet in ns but overlap once rounded never share a lane."""

    def __init__(self, timelines: Sequence[Timeline], *, lane_units: Callable[[int], int] | None = None) -> None:
        self._units = lane_units
        names = [t.name for t in timelines]
        if len(set(names)) != len(names):
            raise ValueError(f"timeline root names must differ (same-named roots merge in the UI): {names}")
        self.tracks: list[TrackSpec] = []
        self.stats = LayoutStats(timelines=len(timelines))
        self.flow_relation: dict[int, str] = {}  # flow id -> "sequence" | "spawn" | "join"
        self._order: tuple[dict, dict] = ({}, {})  # first timeline's group / chain positions
        self._sizes: dict[str, int] = {}  # first timeline's chains per group
        self._plans = [self._plan(i, tl) for i, tl in enumerate(timelines)]
        # t = 0 of the protobuf file: the earliest thing drawn in any timeline (so timestamps are
        # small varints; a clock snapshot maps them back to wall-clock time)
        self.origin_ns = min((_first_ns(tl) for tl in timelines if tl.requests or tl.tools), default=0)

    # -- planning ------------------------------------------------------------------------------
    def _lane_iv(self, iv: list[tuple[int, int]]) -> list[tuple[int, int]]:
        q = self._units
        if q is None:
            return iv
        out = []
        for s, e in iv:
            qs = q(s)
            out.append((qs, max(qs + 1, q(e))))
        return out

    def _plan(self, ti: int, tl: Timeline) -> _Plan:
        p = _Plan(tl)
        reqs = tl.requests
        n = len(reqs)
        st = self.stats
        st.requests += n
        st.requests_per_timeline[tl.name] = n
        st.not_drawn_per_timeline[tl.name] = tl.not_drawn
        st.tool_items += len(tl.tools)
        pos_of_key: dict[str, int] = {r.key: i for i, r in enumerate(reqs)}
        if len(pos_of_key) != n:  # name the first repeated key
            seen: set[str] = set()
            for r in reqs:
                if r.key in seen:
                    raise ValueError(f"duplicate request key {r.key!r} in timeline {tl.name}")
                seen.add(r.key)
        link_pos = [(pos_of_key.get(e.src), pos_of_key.get(e.dst)) for e in tl.links]  # request indices
        order = _write_order(reqs, link_pos)
        p.order = order
        p.corr = [correlation_id(r.key) for r in reqs]  # the request's slices and its worker slices
        rank_of = [0] * n  # request index -> write position
        for k, i in enumerate(order):
            rank_of[i] = k

        # lanes per chain, packed in write order
        req_lane = [0] * n
        req_lanes: dict[tuple[str, str], int] = {}  # (group, chain) -> lanes
        by_chain: dict[tuple[str, str], list[int]] = defaultdict(list)  # in write order, so in start order
        req_iv = [(r.slice.start_ns, r.slice.end_ns) for r in reqs]
        for i in order:
            r = reqs[i]
            by_chain[(r.group, r.chain)].append(i)
        for chain, idx in by_chain.items():
            lanes, k = pack_lanes(self._lane_iv([req_iv[i] for i in idx]))
            for i, lane in zip(idx, lanes):
                req_lane[i] = lane
            req_lanes[chain] = k
        tool_iv = [(it.slice.start_ns, it.slice.end_ns) if it.slice is not None else (it.mark.ts_ns, it.mark.ts_ns)
                   for it in tl.tools]  # ChainItem.start_ns / end_ns without the property calls
        tools = [x[2] for x in sorted([(s, e, j) for j, (s, e) in enumerate(tool_iv)])]
        p.tools = tools
        tool_lane = [0] * len(tl.tools)
        tool_lanes: dict[tuple[str, str], int] = {}
        tools_by_chain: dict[tuple[str, str], list[int]] = defaultdict(list)
        for j in tools:
            tools_by_chain[(tl.tools[j].group, tl.tools[j].chain)].append(j)
        for chain, idx in tools_by_chain.items():
            lanes, k = pack_lanes(self._lane_iv([tool_iv[j] for j in idx]))
            for j, lane in zip(idx, lanes):
                tool_lane[j] = lane
            tool_lanes[chain] = k

        # groups and chains in order of first start (a group's first start is its chains' first)
        # (both lists per chain are in start order: their first item starts first)
        chain_first = {key: req_iv[idx[0]][0] for key, idx in by_chain.items()}
        for key, idx in tools_by_chain.items():
            t = tool_iv[idx[0]][0]
            old = chain_first.get(key)
            if old is None or t < old:
                chain_first[key] = t
        first: dict[str, int] = {}
        for (g, _), t in chain_first.items():
            old = first.get(g)
            if old is None or t < old:
                first[g] = t
        # a later timeline (Simulated) keeps the first one's order for the names they share, so
        # the same group / chain sits at the same rank under both roots
        g_rank, c_rank = self._order
        big = float("inf")
        chains_of: dict[str, list[str]] = defaultdict(list)
        for (g, c), t in sorted(chain_first.items(), key=lambda kv: (c_rank.get(kv[0], big), kv[1], kv[0][1])):
            chains_of[g].append(c)

        tree = TrackTree(ti)
        root = tree.add(0, tl.name, child_ordering=ORDER_EXPLICIT, description=tl.description)
        counters: list[tuple[int, list[tuple[int, int]]]] = []
        if n:
            total = tree.add(root, IN_FLIGHT, kind=COUNTER, rank=0, unit_name=COUNTER_UNIT,
                             description="LLM requests in flight (all chains)")
            counters.append((total, req_iv))
        chain_req_tracks: dict[tuple[str, str], list[int]] = {}
        chain_stage_tracks: dict[tuple[str, str], list[int]] = {}
        chain_tool_tracks: dict[tuple[str, str], list[int]] = {}
        groups = sorted(first, key=lambda g: (g_rank.get(g, big), first[g], g))
        if ti == 0:
            self._order = g_rank, c_rank = ({g: i for i, g in enumerate(groups)},
                                            {(g, c): i for g in groups for i, c in enumerate(chains_of[g])})
            self._sizes = {g: len(chains_of[g]) for g in groups}
        # ranks: the first timeline's for the names it has (so a later timeline missing some, a
        # replay that stopped early, still lines up), new names after them and after `workers`
        n_first = len(g_rank)
        new_group_rank = itertools.count(n_first + 2)  # groups and chains come sorted known-first
        for g in groups:
            gu = tree.add(root, g, rank=g_rank[g] + 1 if g in g_rank else next(new_group_rank),
                          child_ordering=ORDER_EXPLICIT)
            new_chain_pos = itertools.count(self._sizes.get(g, 0))
            for c in chains_of[g]:
                key = (g, c)
                ci = c_rank[key] if key in c_rank else next(new_chain_pos)
                if key in req_lanes:
                    chain_req_tracks[key] = tree.lanes(gu, c, req_lanes[key], 3 * ci)
                    if tl.separate_stages:
                        chain_stage_tracks[key] = tree.lanes(gu, f"{c}{STAGES}", req_lanes[key], 3 * ci + 1)
                if key in tool_lanes:
                    chain_tool_tracks[key] = tree.lanes(gu, f"{c} tools", tool_lanes[key], 3 * ci + 2)
        p.req_track = [chain_req_tracks[(r.group, r.chain)][req_lane[i]] for i, r in enumerate(reqs)]
        p.stage_track = ([chain_stage_tracks[(r.group, r.chain)][req_lane[i]] for i, r in enumerate(reqs)]
                         if tl.separate_stages else None)
        p.tool_track = [chain_tool_tracks[(it.group, it.chain)][tool_lane[j]] for j, it in enumerate(tl.tools)]

        # workers
        # (start, end, write position, worker order, n, ...): n numbers the placements, so a plain
        # tuple sort (no key function: half the time) is the stable sort on the first four and
        # never compares the rest
        number = itertools.count().__next__
        placed = [(pl.slice.start_ns, pl.slice.end_ns, rank_of[i], pl.order, number(), pl.worker, pl.slice, i, pl)
                  for i, r in enumerate(reqs) for pl in r.placements]
        placed.sort()
        workers: dict[str, tuple] = {}
        pool_of: dict[str, str] = {}
        for x in placed:
            workers.setdefault(x[5], x[3])
            pool_of.setdefault(x[5], x[8].pool)
        extra = {}
        for wt in tl.workers:
            workers.setdefault(wt.worker, wt.order)
            pool_of.setdefault(wt.worker, wt.pool)
            extra[wt.worker] = wt
        p.worker_series = []
        p.worker_counters = []
        p.placements = []
        if workers:
            wg = tree.add(root, WORKERS, rank=n_first + 1, child_ordering=ORDER_EXPLICIT,
                          description="What ran on each prefill / decode worker (dp rank)")
            by_worker: dict[str, list] = defaultdict(list)
            for x in placed:
                by_worker[x[5]].append(x)
            ordered = sorted(workers, key=lambda w: (workers[w], w))
            parent: dict[str, int] = {}
            for w in ordered:  # a disaggregated run's pools, in their workers' order
                q = pool_of.get(w, "")
                if q and q not in parent:
                    parent[q] = tree.add(wg, q, rank=len(parent), child_ordering=ORDER_EXPLICIT,
                                         description=f"The {q}")
            for wi, w in enumerate(ordered):
                wu = tree.add(parent.get(pool_of.get(w, ""), wg), w, rank=wi, child_ordering=ORDER_EXPLICIT)
                xs = by_worker.get(w, ())
                if xs:
                    cu = tree.add(wu, IN_FLIGHT, kind=COUNTER, rank=0, unit_name=COUNTER_UNIT,
                                  description=f"LLM requests in flight on {w}")
                    iv = [(x[0], x[1]) for x in xs]
                    counters.append((cu, iv))
                    lanes, k = pack_lanes(self._lane_iv(iv))
                    lane_tracks = tree.lanes(wu, "requests", k, 1)
                    m = len(p.placements)  # numbers them: ties in the final sort keep this order
                    p.placements += [(x[0], x[1], x[2], m + j, lane_tracks[lane], x[6], x[7], x[8])
                                     for j, (x, lane) in enumerate(zip(xs, lanes))]
                wt = extra.get(w)
                if wt is not None:
                    if wt.passes:
                        pu = tree.add(wu, "engine passes", rank=2,
                                      description=f"Engine passes on {w} (batch size, prefill tokens, decode requests)")
                        p.worker_series.append((pu, wt.passes))
                    for ci, c in enumerate(wt.counters):
                        cu = tree.add(wu, c.name, kind=COUNTER, rank=3 + ci, unit_name=c.unit, description=c.description)
                        p.worker_counters.append((cu, c.samples))
            p.placements.sort()  # by (start, end, write position), ties in the order they were added
        p.counters = counters
        handoffs = self._placement_flows(p, ti, len(tl.links))

        # flows: one id per edge
        flow_out: dict[int, list[int]] = defaultdict(list)
        flow_in: dict[int, list[int]] = defaultdict(list)
        base = flow_base(ti)
        skipped: Counter = Counter()
        drawn = 0
        st.links += len(tl.links)
        for k, (e, (s, d)) in enumerate(zip(tl.links, link_pos)):
            if s is None or d is None:
                skipped["edge names a request that is not in the timeline"] += 1
                continue
            if s == d:
                skipped["edge from a request to itself"] += 1
                continue
            if rank_of[s] > rank_of[d]:
                # the trace processor orients a flow by its slices' start times: drawn, this
                # arrow would point from the dependent back to its dependency
                skipped["the dependent starts before its dependency (recorded times contradict the edge)"] += 1
                continue
            fid = base + k + 1
            flow_out[s].append(fid)
            flow_in[d].append(fid)
            drawn += 1
            self.flow_relation[fid] = e.relation
        # a KV handoff flow counts as an edge drawn (what `check` finds is what was declared)
        st.flows += drawn + handoffs
        st.links += handoffs
        st.links_skipped.update(skipped)
        st.flows_per_timeline[tl.name] = drawn + handoffs
        st.links_per_timeline[tl.name] = len(tl.links) + handoffs
        st.skipped_per_timeline[tl.name] = dict(skipped)
        p.flow_out, p.flow_in = flow_out, flow_in
        self.tracks.extend(tree.specs)
        return p

    def intended_intervals(self, relative: bool = True) -> dict[int, list[tuple[int, int]]]:
        """Track uuid -> the (begin, end) slices meant for it (for `check_file(expect=...)`:
        the per-track LIFO replay must give exactly these). `relative`: minus the origin, as
        timestamps are stored in the protobuf file."""
        off = self.origin_ns if relative else 0
        out: dict[int, list[tuple[int, int]]] = defaultdict(list)
        stack = [e for e in self.events() if type(e) is Block]
        while stack:
            b = stack.pop()
            out[b.track].append((b.start - off, b.end - off))
            stack.extend(c for c in b.children if type(c) is Block)
        return dict(out)

    def _placement_flows(self, p: "_Plan", ti: int, n_links: int) -> int:
        """Flows between placements of one request (`Placement.flow_out` -> `flow_in` of the same
        name): ids after the timeline's edge flows, kept in `p.placement_flows` by placement
        position; how many are drawn (the source must start before the terminator)."""
        ends: dict[tuple[int, str], list] = {}
        for k, x in enumerate(p.placements):
            pl = x[7]
            if pl.flow_out:
                ends.setdefault((x[6], pl.flow_out), [None, None])[0] = k
            if pl.flow_in:
                ends.setdefault((x[6], pl.flow_in), [None, None])[1] = k
        out: dict[int, list[int]] = defaultdict(list)
        inn: dict[int, list[int]] = defaultdict(list)
        fid = flow_base(ti) + n_links
        drawn = 0
        for (_i, name), (a, b) in ends.items():
            if a is None or b is None or p.placements[a][0] >= p.placements[b][0]:
                continue
            fid += 1
            out[a].append(fid)
            inn[b].append(fid)
            self.flow_relation[fid] = name
            drawn += 1
        p.placement_flows = (out, inn)
        return drawn

    # -- the event stream ----------------------------------------------------------------------
    def events(self) -> Iterator[Block | Instant | Sample]:
        for ev in self.stream():
            if type(ev) is Series:
                track = ev.track
                for ts, v in ev.samples:
                    yield _new(Sample, (ts, track, v))
            else:
                yield ev

    def stream(self) -> Iterator[Block | Instant | Series]:
        """`events()` with each counter track's samples as one `Series` (the protobuf writer
        encodes a series in one loop)."""
        for p in self._plans:
            corr = p.corr
            yield from _request_blocks(p)
            yield from _tool_events(p)
            fo, fi = p.placement_flows
            for k, (start, end, _, _, track, sl, i, _pl) in enumerate(p.placements):
                yield _new(Block, (start, end, track, sl.name, sl.category, sl.args, corr[i],
                                   tuple(fo[k]) if k in fo else (), tuple(fi[k]) if k in fi else (), ()))
            for track, intervals in p.counters:
                yield _new(Series, (track, in_flight(intervals)))
            for track, slices in p.worker_series:
                for sl in slices:
                    yield _new(Block, (sl.start_ns, sl.end_ns, track, sl.name, sl.category, sl.args, 0, (), (), ()))
            for track, samples in p.worker_counters:
                yield _new(Series, (track, samples if type(samples) is list else list(samples)))


def _first_ns(tl: Timeline) -> int:
    starts = [r.slice.start_ns for r in tl.requests] + [it.start_ns for it in tl.tools]
    return min(starts)


def _write_order(reqs: Sequence[RequestSpan], link_pos: list[tuple[int | None, int | None]]) -> list[int]:
    """(start, end, key) order, except that among requests starting at the same instant a
    dependency comes before its dependent (a flow's source must be read before its terminator).
    `link_pos`: each edge's (dependency, dependent) request indices (None: not in the timeline)."""
    keyed = [(r.slice.start_ns, r.slice.end_ns, r.key, i) for i, r in enumerate(reqs)]  # keys are unique
    start = [x[0] for x in keyed]
    keyed.sort()
    order = [x[3] for x in keyed]
    same: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for s, d in link_pos:
        if s is not None and d is not None and s != d and start[s] == start[d]:
            same[start[s]].append((s, d))
    if not same:
        return order
    out: list[int] = []
    k = 0
    while k < len(order):
        t = reqs[order[k]].slice.start_ns
        j = k
        while j < len(order) and reqs[order[j]].slice.start_ns == t:
            j += 1
        run = order[k:j]
        out.extend(_topo(run, same[t]) if t in same else run)
        k = j
    return out


def _topo(run: list[int], edges: list[tuple[int, int]]) -> list[int]:
    """Kahn's algorithm keeping `run` order among ready items; a cycle keeps the rest as is."""
    import heapq

    prio = {i: k for k, i in enumerate(run)}
    indeg = dict.fromkeys(run, 0)
    succ: dict[int, list[int]] = defaultdict(list)
    for s, d in set(edges):
        succ[s].append(d)
        indeg[d] += 1
    ready = [prio[i] for i in run if indeg[i] == 0]
    heapq.heapify(ready)
    out: list[int] = []
    while ready:
        i = run[heapq.heappop(ready)]
        out.append(i)
        for d in succ[i]:
            indeg[d] -= 1
            if indeg[d] == 0:
                heapq.heappush(ready, prio[d])
    if len(out) < len(run):
        done = set(out)
        out.extend(i for i in run if i not in done)
    return out


def _request_blocks(p: _Plan) -> Iterator[Block]:
    reqs = p.tl.requests
    req_track, stage_track, corr = p.req_track, p.stage_track, p.corr
    flow_out, flow_in = p.flow_out, p.flow_in
    for i in p.order:
        r = reqs[i]
        track = req_track[i]
        ctrack = stage_track[i] if stage_track is not None else track
        stages, marks = r.stages, r.marks
        if not marks and len(stages) < 2:
            children = tuple([_new(Block, (x.start_ns, x.end_ns, ctrack, x.name, x.category, x.args, 0, (), (), ()))
                              for x in stages])
        else:
            children = _children(stages, marks, ctrack)
        sl = r.slice
        yield _new(Block, (sl.start_ns, sl.end_ns, track, sl.name, sl.category, sl.args, corr[i],
                           tuple(flow_out[i]) if i in flow_out else (), tuple(flow_in[i]) if i in flow_in else (),
                           children))


def _children(stages, marks, ctrack: int) -> tuple:
    """A request's stages and marks by time; a mark before a stage starting with it, stages
    (and marks) with equal times in their given order."""
    # the common case, one mark and stages already in order: the mark goes before the first
    # stage that does not start before it (what sorting by (time, kind, index) gives)
    if len(marks) == 1 and all(a.start_ns <= b.start_ns for a, b in zip(stages, stages[1:])):
        m = marks[0]
        at = m.ts_ns
        k = 0
        for x in stages:
            if x.start_ns >= at:
                break
            k += 1
        out = [_new(Block, (x.start_ns, x.end_ns, ctrack, x.name, x.category, x.args, 0, (), (), ())) for x in stages]
        out.insert(k, _new(Instant, (at, ctrack, m.name, m.category, m.args)))
        return tuple(out)
    # (time, kind, index) never ties
    items = [(s.start_ns, 1, n, s) for n, s in enumerate(stages)]
    items += [(m.ts_ns, 0, n, m) for n, m in enumerate(marks)]
    items.sort()
    return tuple([_new(Block, (x.start_ns, x.end_ns, ctrack, x.name, x.category, x.args, 0, (), (), ())) if k
                  else _new(Instant, (x.ts_ns, ctrack, x.name, x.category, x.args)) for _, k, _, x in items])


def _tool_events(p: _Plan) -> Iterator[Block | Instant]:
    items: Sequence[ChainItem] = p.tl.tools
    tool_track = p.tool_track
    for j in p.tools:
        it = items[j]
        s = it.slice
        if s is not None:
            yield _new(Block, (s.start_ns, s.end_ns, tool_track[j], s.name, s.category, s.args, 0, (), (), ()))
        else:
            m = it.mark
            yield _new(Instant, (m.ts_ns, tool_track[j], m.name, m.category, m.args))


def in_flight(intervals: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Counter samples (ts, value) of how many intervals are open: one sample per instant where
    the value changes (ends before starts at the same instant, so back-to-back work does not
    spike), ending at 0. An all-zero series still gets one sample."""
    # one int per change, 2t + 1 for a start and 2t for an end: sorts ends first at equal t
    keys = [s * 2 + 1 for s, _ in intervals]
    keys += [e * 2 for _, e in intervals]
    keys.sort()
    out: list[tuple[int, int]] = []
    v = last = 0
    t = None
    for k in keys:
        kt = k >> 1
        if kt != t:
            if v != last:
                out.append((t, v))
                last = v
            t = kt
        v += 1 if k & 1 else -1
    if v != last:
        out.append((t, v))
    if not out and intervals:
        out.append((min(s for s, _ in intervals), 0))
    return out
