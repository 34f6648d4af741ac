"""Mooncake lowering of a Trace, exactly as Dynamo's `request_trace_to_mooncake` writes it.

* `plain_rows`: one timed row per request (§4.3).
* `derive`: agentic v1 rows (§4.4) under G2–G3b rules (default) or G3c rules (§4.6), plus the
  dependency edges (sequence / spawn / join) that Perfetto draws as flows.
* `derive_v2`: the typed v2 graph with its header (§4.7).

All time arithmetic is integer ms as in Dynamo; rows come out in (start, end, request_id) order.
"""

from __future__ import annotations

import bisect
import itertools
import operator
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterator

import blake3
import numpy as np
import orjson

from . import completion, hash_ids
from .cycles import blocked
from .dynamo_rows import tool_interval, tool_status
from .errors import TraceError
from .model import Generation, Request, ToolEvent, Trace
from .mooncake import Dependency, Row, ToolSpan, exporter_order, tool_event_json

RULES = ("g2", "g3c")
_START_END = operator.itemgetter(0, 1)
# embeds already-serialized JSON (the streamed rows' hash ids); recent orjson only, else id lists
_FRAGMENT = getattr(orjson, "Fragment", None)
_NUMPY = orjson.OPT_SERIALIZE_NUMPY


@dataclass(frozen=True, slots=True)
class Edge:
    """`dst` waits for `src` (one `wait_for` entry / v2 dependency)."""

    src: str
    dst: str
    relation: str  # "sequence" | "spawn" | "join"


@dataclass(slots=True)
class Derived:
    rows: list[Row]
    edges: list[Edge]
    block_size: int | None
    order: list[Request]  # requests in output order
    header: dict | None = None  # v2 only
    tool_spans: int = 0  # terminal tool spans loaded
    attached_tools: int = 0  # distinct spans attached to some row
    notes: dict = field(default_factory=dict)


# -- shared pieces ---------------------------------------------------------------------------

def sort_key(r: Request) -> tuple:
    return (r.start_ms, r.end_ms, r.request_id)


def check_block_size(requests: list[Request]) -> int | None:
    """Every request must share one `trace_block_size` (Dynamo's rule); returns it."""
    bs = None
    first = None
    for r in requests:
        if r.block_size is None:
            continue
        if bs is None:
            bs, first = r.block_size, r
        elif r.block_size != bs:
            raise TraceError(
                f"{r.source}: field `request.replay.trace_block_size`: mixed replay trace_block_size values "
                f"are not supported: {bs} and {r.block_size} (first at {first.source})")
    return bs


def _word(requests: list[Request]) -> str:
    for r in requests:
        if r.chain_id is not None or r.generation is not Generation.G3_FREE:
            return r.generation.chain_word
    return "trajectory"


def _require_output(r: Request) -> int:
    if r.output_tokens is None:
        raise TraceError(f"{r.source}: field `request.output_tokens`: request {r.request_id} is missing output length")
    return r.output_tokens


# -- plain rows ------------------------------------------------------------------------------

def plain_rows(trace: Trace, *, rules: str = "g2") -> tuple[list[Row], int | None]:
    """Plain Mooncake rows (§4.3): independent timed arrivals, no session, no delay."""
    if trace.mooncake_rows:
        return list(trace.mooncake_rows), trace.block_size
    reqs = _requests(trace)
    if rules == "g3c" and any(r.chain_id is not None for r in reqs):
        free = [r for r in reqs if r.chain_id is None]
        if free:  # G3c detects the mode from the rows: a mix is neither
            raise TraceError(f"{free[0].source}: field `agent_context`: Dynamo request trace cannot mix requests "
                             f"with and without agent_context")
        raise TraceError("error: agentic request traces require --agentic")
    bs = check_block_size(reqs)
    reqs.sort(key=sort_key)
    t0 = reqs[0].start_ms
    given = completion.token_ids(reqs, bs) if rules == "g3c" else None
    if given is not None:
        return [Row(input_length=r.input_length or 0, output_length=_require_output(r), hash_ids=ids,
                    output_token_ids=tuple(out) if out is not None else None, timestamp=float(r.start_ms - t0))
                for r, (ids, out) in zip(reqs, given)], bs
    ids = hash_ids.plan((r.chain_id, r.hashes) for r in reqs).lists()
    rows = [Row(input_length=r.input_length or 0, output_length=_require_output(r), hash_ids=h,
                timestamp=float(r.start_ms - t0)) for r, h in zip(reqs, ids)]
    return rows, bs


def _requests(trace: Trace) -> list[Request]:
    if not trace.requests:
        raise TraceError("error: no request_end records with replay fields found")
    return list(trace.requests)


# -- agentic v1 ------------------------------------------------------------------------------

@dataclass(slots=True)
class _Graph:
    """The dependency structure both v1 and v2 lower from."""

    order: list[Request]
    index: dict[str, int]
    chains: dict[str, list[int]]  # chain -> request indices in output order
    parent: dict[str, str]  # chain -> parent chain
    wait_for: list[list[str]]
    relations: list[list[str]]
    branches: list[list[str]]
    kind: list[str | None]
    consumer_tools: dict[str, list[ToolEvent]]  # request id -> Claude tools it consumes
    notes: dict


def _chain(r: Request) -> str:
    return r.chain_id if r.chain_id is not None else r.request_id


def _build(trace: Trace, rules: str, background_joins: bool = True) -> _Graph:
    """`background_joins` False: a background Claude agent's consumer does not wait for it (the
    v2 exporter's rule; the G3c v1 converter joins both modes)."""
    reqs = _requests(trace)
    if rules == "g3c":  # G3c's loader requires both on terminal tool rows (§4.2)
        for t in trace.tools:
            if t.terminal and (t.tool_call_id is None or t.tool_class is None):
                k = "tool_call_id" if t.tool_call_id is None else "tool_class"
                raise TraceError(f"{t.source}: field `tool.{k}`: missing field `{k}` (required by the G3c rules)")
    word = _word(reqs)
    free = [r for r in reqs if r.chain_id is None]
    if free:
        strict = rules == "g3c" or any(r.generation is not Generation.G2 and r.generation is not Generation.G1 for r in free)
        if rules == "g3c" and len(free) != len(reqs):
            raise TraceError(f"{free[0].source}: field `agent_context`: Dynamo request trace cannot mix requests with and without agent_context")
        if rules == "g3c":
            raise TraceError("error: --agentic requires request traces with agent_context")
        if strict:
            raise TraceError(f"{free[0].source}: field `agent_context`: trace records without agent_context cannot be converted with --agentic")
    reqs.sort(key=sort_key)
    index = {r.request_id: i for i, r in enumerate(reqs)}
    if len(index) != len(reqs):
        seen: set[str] = set()
        for r in reqs:
            if r.request_id in seen:
                raise TraceError(f"{r.source}: field `request.request_id`: duplicate request_id {r.request_id}")
            seen.add(r.request_id)
    chains: dict[str, list[int]] = defaultdict(list)
    parent: dict[str, str] = {}
    parent_src: dict[str, Request] = {}
    for i, r in enumerate(reqs):
        c = _chain(r)
        chains[c].append(i)
        p = r.parent_chain_id
        if p is not None:
            if c in parent and parent[c] != p:
                raise TraceError(
                    f"{r.source}: field `agent_context.parent_{word}_id`: {word} {c} has conflicting parent_{word}_id "
                    f"values: {parent[c]} and {p} (first at {parent_src[c].source})")
            parent[c] = p
            parent_src[c] = r
    n = len(reqs)
    g = _Graph(reqs, index, dict(chains), parent, [[] for _ in range(n)], [[] for _ in range(n)],
               [[] for _ in range(n)], [None] * n, defaultdict(list), {})
    wait_for, relations = g.wait_for, g.relations
    for c, idx in chains.items():
        for a, b in zip(idx, idx[1:]):  # the first edge of each row: no duplicate to check (`_add`)
            wait_for[b].append(reqs[a].request_id)
            relations[b].append("sequence")

    claude_children = _claude_edges(trace, g, word, background_joins) if rules == "g3c" else {}
    missing_parent = no_spawn = 0
    for c, idx in g.chains.items():
        p = parent.get(c)
        if p is None:
            continue
        pidx = g.chains.get(p)
        if not pidx:
            missing_parent += 1
            continue
        if c in claude_children:
            continue
        first = reqs[idx[0]]
        last = max((reqs[i] for i in idx), key=lambda r: (r.end_ms, r.start_ms, r.request_id))
        spawn = None
        for j in pidx:  # output order, so ">=" keeps the later one on ties
            q = reqs[j]
            if rules == "g3c":
                if q.start_ms <= first.start_ms and (spawn is None or q.start_ms >= reqs[spawn].start_ms):
                    spawn = j
            elif q.end_ms <= first.start_ms and (spawn is None or q.end_ms >= reqs[spawn].end_ms):
                spawn = j
        link = trace.links.get(c)
        if spawn is not None and spawn != idx[0]:
            _spawn(g, spawn, idx[0])
        elif spawn is None and (link is None or link.spawn_request_id is None):
            no_spawn += 1  # (a reader's explicit spawn, below, links it)
        if link is not None and link.join_request_id is not None:
            join = index.get(link.join_request_id)
        else:
            join = None
            for j in pidx:
                q = reqs[j]
                if q.start_ms >= last.end_ms and (join is None or q.start_ms < reqs[join].start_ms):
                    join = j
        if join is not None and join not in idx:
            _add(g, join, last.request_id, "join")
    if missing_parent:
        g.notes["chains whose parent chain has no requests in the trace (no spawn/join edges)"] = missing_parent
    if no_spawn:
        when = "started" if rules == "g3c" else "ended"  # the spawn rules above
        g.notes[f"child chains that start before any parent request {when} (no spawn edge)"] = no_spawn
    if trace.links:
        _explicit_spawns(trace, g)
    if rules == "g3c":
        for c, idx in g.chains.items():
            kind = claude_children.get(c) or ("agent" if c in parent else "foreground")
            for i in idx:
                g.kind[i] = kind
    _check_acyclic(g)
    return g


def _add(g: _Graph, i: int, dep: str, relation: str) -> None:
    if dep not in g.wait_for[i]:
        g.wait_for[i].append(dep)
        g.relations[i].append(relation)


def _spawn(g: _Graph, parent_i: int, child_i: int) -> None:
    _add(g, child_i, g.order[parent_i].request_id, "spawn")
    child = g.order[child_i].request_id
    if child not in g.branches[parent_i]:
        g.branches[parent_i].append(child)


def _explicit_spawns(trace: Trace, g: _Graph) -> None:
    """A reader's explicit spawn replaces the one inferred from times (WEKA `wait` rule)."""
    for c, link in trace.links.items():
        idx = g.chains.get(c)
        if not idx or link.spawn_request_id is None or link.spawn_request_id not in g.index:
            continue
        first = idx[0]
        for k in range(len(g.wait_for[first]) - 1, -1, -1):
            if g.relations[first][k] == "spawn":
                old = g.index[g.wait_for[first][k]]
                del g.wait_for[first][k], g.relations[first][k]
                g.branches[old].remove(g.order[first].request_id)
        _spawn(g, g.index[link.spawn_request_id], first)


def _claude_edges(trace: Trace, g: _Graph, word: str, background_joins: bool = True) -> dict[str, str]:
    """G3c explicit causality from `tool.claude` (§4.6); returns child chain -> request_kind. As
    in Dynamo, a tool names a child only when that child's parent chain is in the trace (a child
    without a parent is a root of its own), and its source and consumer must be calls of that
    parent chain."""
    children: dict[str, str] = {}
    named: dict[str, ToolEvent] = {}
    for t in trace.tools:
        if t.claude is None or not t.terminal:
            continue
        cl = t.claude
        name = t.tool_call_id or ""
        if cl.execution_mode not in ("blocking", "background"):
            raise TraceError(f"{t.source}: field `tool.claude.execution_mode`: tool {name} has unsupported execution_mode {cl.execution_mode!r} (expected blocking or background)")
        for rid in (cl.source_request_id, cl.consumer_request_id):
            if rid is None:
                continue
            if rid not in g.index:
                raise TraceError(f"{t.source}: field `tool.claude`: tool {name} references unknown request_id {rid}")
            if _chain(g.order[g.index[rid]]) != t.chain_id:
                raise TraceError(f"{t.source}: field `tool.claude`: tool {name} request_id {rid} belongs to a different {word}")
        if cl.consumer_request_id is not None:
            g.consumer_tools[cl.consumer_request_id].append(t)
        child = cl.child_session_id
        if child is None or child not in g.chains:
            continue  # an external tool: attributed like any other
        if child in named:
            raise TraceError(f"{t.source}: field `tool.claude.child_session_id`: multiple tool events reference child {word} {child}")
        named[child] = t
        background = cl.execution_mode == "background"
        if background:  # its request_kind, whether or not its parent is known
            children[child] = "background_agent"
        parent = g.parent.get(child)
        if parent is None or parent not in g.chains:
            continue  # Dynamo reads the named child only through its parent link
        children[child] = "background_agent" if background else "agent"
        join = cl.consumer_request_id is not None and (background_joins or not background)
        for key, rid in (("source", cl.source_request_id), ("consumer", cl.consumer_request_id if join else None)):
            if rid is not None and _chain(g.order[g.index[rid]]) != parent:
                raise TraceError(f"{t.source}: field `tool.claude.{key}_request_id`: tool {name} {key} request {rid} "
                                 f"is not in parent {word} {parent}")
        idx = g.chains[child]
        if cl.source_request_id is not None:
            _spawn(g, g.index[cl.source_request_id], idx[0])
        if join:
            last = max((g.order[i] for i in idx), key=lambda r: (r.end_ms, r.start_ms, r.request_id))
            _add(g, g.index[cl.consumer_request_id], last.request_id, "join")
    return children


def _check_acyclic(g: _Graph) -> None:
    index = g.index
    if all(index[d] < i for i, deps in enumerate(g.wait_for) for d in deps):
        return  # every edge points back in output order, as time order gives them: no cycle possible
    n = len(g.order)
    indeg = [len(w) for w in g.wait_for]
    out: list[list[int]] = [[] for _ in range(n)]
    for i, deps in enumerate(g.wait_for):
        for d in deps:
            out[g.index[d]].append(i)
    left_i = blocked(indeg, out)
    if left_i:
        stuck = [g.order[i] for i in left_i]
        left = [r.request_id for r in stuck]
        raise TraceError(f"error: agentic request dependencies contain a cycle (involving {', '.join(left[:6])}"
                         f"{' …' if len(left) > 6 else ''}; first at {stuck[0].source})")


class _ChainTools:
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


def _tool_index(trace: Trace) -> tuple[dict[str, _ChainTools], int]:
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
    return {c: _ChainTools(s) for c, s in by_chain.items()}, n


def _union(intervals: list[tuple[int, int]]) -> int:
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


def _tool_span(s: tuple[int, int, ToolEvent]) -> ToolSpan:
    return ToolSpan(*_tool_fields(s))


def derive(trace: Trace, *, rules: str = "g2") -> Derived:
    """Agentic Mooncake v1 rows and the dependency edges (§4.4, §4.6 with rules="g3c")."""
    if rules not in RULES:
        raise TraceError(f"error: unknown rules {rules!r}, expected one of {', '.join(RULES)}")
    if trace.mooncake_rows:
        return _from_mooncake(trace)
    rows: list[Row] = []
    add = rows.append
    derived, fields = _derive_v1(trace, rules, True, False)
    for (r, chain, ids, ts, delay, kind, deps, branches, reset, tool_wait, spans, out_ids) in fields:
        add(Row(
            request_id=r.request_id, session_id=chain, input_length=r.input_length or 0,
            output_length=_require_output(r), hash_ids=ids, timestamp=ts, delay=delay, request_kind=kind,
            output_token_ids=tuple(out_ids) if out_ids is not None else None,
            wait_for=tuple(deps), branches=tuple(branches), prefix_reset=reset,
            tool_wait_ms=float(tool_wait) if tool_wait else None, tool_events=tuple(_tool_span(s) for s in spans)))
    derived.rows = rows
    return derived


def dependency_edges(trace: Trace, *, rules: str = "g2") -> Derived:
    """The dependency edges alone, in `derive`'s order (Perfetto flows): the graph rules without
    what only Mooncake rows need (one block size, output lengths, hash ids)."""
    if rules not in RULES:
        raise TraceError(f"error: unknown rules {rules!r}, expected one of {', '.join(RULES)}")
    if trace.mooncake_rows:
        return _from_mooncake(trace)
    g = _build(trace, rules)
    return Derived([], _edges(g), None, g.order, notes=g.notes)


def _edges(g: _Graph) -> list[Edge]:
    """Every dependency edge of the graph, in output order (a row's in its `wait_for` order)."""
    return [Edge(d, r.request_id, rel) for r, deps, rels in zip(g.order, g.wait_for, g.relations)
            for d, rel in zip(deps, rels)]


def derive_lazy(trace: Trace, *, rules: str = "g2", edges: bool = True) -> tuple[Derived, Iterator[tuple]]:
    """`derive` for streaming (`write_v1`): every error it can raise is raised here, before any
    row exists; the rows come as a lazy iterator of their fields (see `_v1_fields`), so no Row,
    ToolSpan or id list outlives its line and memory stays with the requests. The Derived's
    `rows` stays empty; its `edges` are set at once (none when `edges` is False: only Perfetto
    flows need them), its `attached_tools` once the iterator is exhausted."""
    if rules not in RULES:
        raise TraceError(f"error: unknown rules {rules!r}, expected one of {', '.join(RULES)}")
    if trace.mooncake_rows:
        raise TraceError("error: Mooncake input: use derive")
    return _derive_v1(trace, rules, edges, _FRAGMENT is not None)


def write_v1(fields: Iterator[tuple], write) -> None:
    """Each row of `derive_lazy` to `write` as its JSON line: the bytes `Row.to_agentic_v1` gives."""
    dumps = orjson.dumps
    fragment = _FRAGMENT
    nl = orjson.OPT_APPEND_NEWLINE
    batch: list[bytes] = []
    add = batch.append
    for (r, chain, ids, ts, delay, kind, deps, branches, reset, tool_wait, spans, out_ids) in fields:
        # Key order and omissions of `Row.to_agentic_v1` for the fields `derive` sets (a test
        # checks the two against each other); lists serialize as the tuples the Row would hold.
        d = {"request_id": r.request_id, "session_id": chain, "input_length": r.input_length or 0,
             "output_length": r.output_tokens}
        if out_ids is not None:
            d["output_token_ids"] = out_ids
        d["hash_ids"] = fragment(ids) if type(ids) is bytes else ids
        d["timestamp"] = ts
        if delay is not None:
            d["delay"] = delay
        if kind is not None:
            d["request_kind"] = kind
        if deps:
            d["wait_for"] = deps
        if branches:
            d["branches"] = branches
        d["prefix_reset"] = reset
        if tool_wait:
            d["tool_wait_ms"] = float(tool_wait)
        if spans:
            d["tool_events"] = [_tool_json(s) for s in spans]
        add(dumps(d, option=nl))
        if len(batch) >= 256:  # one write per batch: fewer buffer flushes than a write per row
            write(b"".join(batch))
            batch.clear()
    if batch:
        write(b"".join(batch))


def _ids_text(prev: tuple | None, k: int, tail) -> bytes:
    """A row's hash ids as their JSON array, from the chain's last row's text (`prev`: its text and
    id count), the number of leading ids the two share (`k`) and the row's own tail (an int64
    array, `hash_ids.IdPlan.tail`): the shared prefix is a byte slice, so neither it nor its ~350
    int objects are touched (copying and serializing them was a third of the writing)."""
    if prev is None or k == 0:
        return orjson.dumps(tail, option=_NUMPY)
    ptext, lp = prev
    if k == lp and not len(tail):
        return ptext
    if k == lp:
        cut = len(ptext) - 1  # "[a,b,c"
    elif k == lp - 1:
        cut = ptext.rfind(b",")  # the usual other case: only the last (partial) block differs
    else:
        ptext = orjson.dumps(orjson.loads(ptext)[:k])
        cut = len(ptext) - 1
    # one copy of the ~3 KB prefix (slicing and `+` copied it three times)
    if not len(tail):
        return b"".join((memoryview(ptext)[:cut], b"]"))
    return b"".join((memoryview(ptext)[:cut], b",", memoryview(orjson.dumps(tail, option=_NUMPY))[1:]))


def _tool_json(s: tuple[int, int, ToolEvent]) -> dict:
    """`_tool_span(s).to_json()` without the intermediate record."""
    return tool_event_json(*_tool_fields(s))


def _derive_v1(trace: Trace, rules: str, want_edges: bool, text_ids: bool) -> tuple[Derived, Iterator[tuple]]:
    """The v1 lowering (every error it can raise is raised here, before any row is produced) and
    a lazy iterator of its rows' fields (see `_v1_fields`); the Derived's `rows` stays empty, its
    `attached_tools` is complete once the iterator is exhausted."""
    g = _build(trace, rules)
    bs = check_block_size(g.order)
    tools, n_tools = _tool_index(trace)
    for r in g.order:  # the first row without an output length is the error `derive` always gave
        if r.output_tokens is None:
            _require_output(r)
    derived = Derived([], _edges(g) if want_edges else [], bs, g.order, tool_spans=n_tools, notes=g.notes)
    given = completion.token_ids(g.order, bs) if rules == "g3c" else None  # checks them, before any row
    return derived, _v1_fields(g, rules, tools, derived, text_ids, given)


def _v1_fields(g: _Graph, rules: str, tools: dict, derived: Derived, text_ids: bool,
               given: list | None = None) -> Iterator[tuple]:
    """Per row, in output order: (request, chain, hash ids, timestamp, delay, request_kind,
    wait_for, branches, prefix_reset, tool_wait, tool spans, output_token_ids or None). The
    distinct tool spans attached go to `derived.attached_tools`. The hash ids are a list, or with `text_ids` their JSON array (see
    `_ids_text`); `given`: both id lists per row, from completion hashes (`completion.token_ids`)."""
    order = g.order
    index = g.index
    ends = [r.end_ms for r in order]
    t0 = order[0].start_ms
    first = {idx[0] for idx in g.chains.values()}
    plan = lists = None
    if given is None:
        plan = hash_ids.plan((r.chain_id if r.chain_id is not None else r.request_id, r.hashes) for r in order)
        if not text_ids:
            lists = plan.lists()
    last: dict = {}
    attached: set[int] = set()
    g3c = rules == "g3c"
    for i, r in enumerate(order):
        deps = g.wait_for[i]
        delay = None
        tool_wait = 0
        spans: list = ()  # type: ignore[assignment]
        cid = r.chain_id
        chain = cid if cid is not None else r.request_id
        start = r.start_ms
        if deps:
            if len(deps) == 1:
                dep_end = ends[index[deps[0]]]
            else:
                dep_end = max([ends[index[d]] for d in deps])
            gap = start - dep_end if start > dep_end else 0
            ct = tools.get(chain)
            if g3c:
                spans = _g3c_spans(g, i, r, chain, dep_end, ct)
            elif ct is not None:
                spans = ct.overlapping(dep_end, start)
            if spans:
                union = _union([(s if s > dep_end else dep_end, e if e < start else start) for s, e, _ in spans
                                if min(e, start) > max(s, dep_end)])
                tool_wait = union if union < gap else gap
                attached.update([id(s[2]) for s in spans])
            delay = float(gap - tool_wait)
        out_ids = None
        if given is not None:
            ids, out_ids = given[i]
        elif lists is not None:
            ids = lists[i]
        else:
            k = plan.keep[i]
            tail = plan.tail(i)
            ids = _ids_text(last.get(chain), k, tail)
            last[chain] = (ids, k + len(tail))
        yield (r, chain, ids, float(start - t0), delay, g.kind[i], deps, g.branches[i], i in first, tool_wait, spans,
               out_ids)
    derived.attached_tools = len(attached)


def _g3c_spans(g: _Graph, i: int, r: Request, chain: str, dep_end: int, ct: _ChainTools | None) -> list:
    pos = g.chains[chain].index(i)
    window_start = g.order[g.chains[chain][pos - 1]].start_ms if pos > 0 else dep_end
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


def _from_mooncake(trace: Trace) -> Derived:
    """Mooncake input: rows and their explicit edges as read."""
    rows = list(trace.mooncake_rows)
    session_first: dict[str, str] = {}
    by_id = {}
    for row in rows:
        by_id[row.request_id] = row
        if row.session_id is not None:
            session_first.setdefault(row.session_id, row.request_id)
    edges = []
    for row in rows:
        deps = row.wait_for or tuple(d.request_id for d in row.dependencies)
        rels = tuple(d.relation for d in row.dependencies) if not row.wait_for else ()
        for k, d in enumerate(deps):
            if rels:
                rel = rels[k]
            elif d in by_id and by_id[d].session_id == row.session_id:
                rel = "sequence"
            elif session_first.get(row.session_id) == row.request_id:
                rel = "spawn"
            else:
                rel = "join"
            edges.append(Edge(d, row.request_id, rel))
    bs = (trace.mooncake_header or {}).get("block_size")
    return Derived(rows, edges, bs, list(trace.requests), header=trace.mooncake_header)


# -- agentic v2 ------------------------------------------------------------------------------
# Dynamo 1.6's exporter (`request_trace_to_mooncake --agentic`, lowering in lib/data-gen
# request_trace/agentic.rs): G3c's graph (spawn by start, Claude causality) with typed edges, a
# background agent never joined, play = the root of the parent chain, not_before_ms on every row,
# the partial last block (and any block without a recorded hash) a private id, no tool fields.

_PRIVATE = b"dynamo-request-trace-private-block\0"


def private_block_id(request_id: str, block_index: int, input_length: int) -> int:
    """The per-request id a v2 row gives a block it cannot share: the trailing partial block, or a
    full block with no recorded hash (BLAKE3 of a labelled tuple, its first 8 bytes little-endian)."""
    digest = blake3.blake3(_PRIVATE + f"{request_id}\0{block_index}\0{input_length}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def v2_ids(compact: list[int], request_id: str, input_length: int, bs: int) -> list[int]:
    """A row's v2 hash ids from its compact ids: one per full block (private where the hashes run
    out), then a private id for a partial last block."""
    full = input_length // bs
    ids = compact[:full]
    for j in range(len(ids), full):
        ids.append(private_block_id(request_id, j, input_length))
    if input_length % bs:
        ids.append(private_block_id(request_id, full, input_length))
    return ids


def _play_of(chain: str, parent: dict[str, str], chains: dict, word: str, src: object = None) -> str:
    seen = [chain]
    c = chain
    # `src`: a record of `chain`, whose parent link starts the walk
    where = f"{src}: field `agent_context.parent_{word}_id`: " if src is not None else "error: "
    while c in parent:
        p = parent[c]
        if p not in chains:
            raise TraceError(f"{where}agent {word} {c} references unknown parent {word} {p}")
        if p in seen:
            raise TraceError(f"{where}agent {word} parent cycle includes {p}: {' -> '.join(seen + [p])}")
        seen.append(p)
        c = p
    return c


@dataclass(slots=True)
class _V2Graph:
    g: _Graph
    deps: list[list[Dependency]]  # per row in output order: deduplicated, in the exporter's order
    plays: dict[str, str]  # chain -> play id


def _build_v2(trace: Trace) -> _V2Graph:
    """The exporter's edges, typed: `sequence` and `join` wait for the dependency's completion;
    `spawn` waits for the parent call's dispatch when the child started before that call ended,
    else for its completion; each delay is the recorded gap from that trigger (never negative).
    Edges are deduplicated on (request_id, trigger, relation) and sorted."""
    g = _build(trace, "g3c", background_joins=False)
    order, index = g.order, g.index
    deps: list[list[Dependency]] = []
    for r, wait_for, relations in zip(order, g.wait_for, g.relations):
        mine = []
        for d, rel in zip(wait_for, relations):
            q = order[index[d]]
            if rel == "spawn" and r.start_ms < q.end_ms:
                mine.append(Dependency(d, "dispatch", float(max(0, r.start_ms - q.start_ms)), rel))
            else:
                mine.append(Dependency(d, "completion", float(max(0, r.start_ms - q.end_ms)), rel))
        deps.append(exporter_order(mine) if len(mine) > 1 else mine)
    word = _word(order)
    plays: dict[str, str] = {}
    for i in (idx[0] for idx in g.chains.values()):
        c = _chain(order[i])
        plays[c] = _play_of(c, g.parent, g.chains, word, order[i].source)
    return _V2Graph(g, deps, plays)


def _v2_edges(v: _V2Graph) -> list[Edge]:
    return [Edge(d.request_id, r.request_id, d.relation) for r, ds in zip(v.g.order, v.deps) for d in ds]


def derive_v2_lazy(trace: Trace, *, edges: bool = True) -> tuple[Derived, Iterator[tuple]]:
    """The v2 lowering for streaming (`write_v2`): every error it can raise is raised here,
    before any row exists (the exporter's order: the graph, then per row a missing output
    length, then a missing model); the rows come as a lazy iterator of their fields (see
    `_v2_fields`). The Derived's `header` is set by `write_v2`."""
    if trace.mooncake_rows:
        raise TraceError("error: Mooncake input: use derive_v2")
    return _derive_v2(trace, edges, _FRAGMENT is not None)


def _derive_v2(trace: Trace, edges: bool, text_ids: bool) -> tuple[Derived, Iterator[tuple]]:
    v = _build_v2(trace)
    bs = check_block_size(v.g.order)
    for r in v.g.order:
        _require_output(r)
        if r.model is None:
            raise TraceError(f"{r.source}: field `request.model`: request {r.request_id} is missing model")
    notes = dict(v.g.notes)
    spans = sum(1 for t in trace.tools if t.terminal)
    if spans:  # said, not dropped silently: v1 rows would carry them as tool_events
        notes["terminal tool spans not written (v2 rows have no tool fields; tool time stays in the delays)"] = spans
    derived = Derived([], _v2_edges(v) if edges else [], bs, v.g.order, notes=notes)
    return derived, _v2_fields(v, bs, text_ids)


def _v2_fields(v: _V2Graph, bs: int | None, text_ids: bool) -> Iterator[tuple]:
    """Per row, in output order: (request, play, chain, hash ids, not_before_ms, dependencies).
    The hash ids are a list, or with `text_ids` their JSON array: the chain's previous row's text
    up to the ids the two share, then the rest (`_ids_text`), as the v1 writer does. A row's
    compact ids beyond its full blocks (its partial block's) are not in its text, so they are
    kept aside (`hidden`) for the next row of the chain, which may share them."""
    order = v.g.order
    t0 = order[0].start_ms
    plan = hash_ids.plan((_chain(r), r.hashes) for r in order)
    lists = None if text_ids else plan.lists()
    last: dict = {}  # chain -> (text, its id count, compact ids shown in it, compact ids hidden)
    for i, r in enumerate(order):
        chain = _chain(r)
        n_in = r.input_length or 0
        if lists is not None:
            ids = v2_ids(lists[i], r.request_id, n_in, bs) if bs else lists[i]
        else:
            ids, last[chain] = _v2_ids_text(last.get(chain), plan.keep[i], plan.tail(i), r.request_id, n_in, bs)
        yield (r, v.plays[chain], chain, ids, float(r.start_ms - t0), v.deps[i])


def _v2_ids_text(prev: tuple | None, k: int, tail, request_id: str, input_length: int,
                 bs: int | None) -> tuple[bytes, tuple]:
    """A row's v2 hash ids as JSON text, and what the chain's next row needs of it (see
    `_v2_fields`): the row's compact ids are `prev`'s first `k` then `tail`; `prev` is (text, its
    id count, compact ids shown in it, compact ids hidden after them)."""
    n = k + len(tail)
    full = input_length // bs if bs else n
    shown = min(n, full)
    if prev is not None and (k <= shown or shown >= prev[2]):
        # the row's shown compact ids: a prefix of prev's text, then prev's hidden ids (a partial
        # block both rows share), then its own; what it hides: prev's hidden ids past its own
        # full blocks, then its own
        _, _, pshown, phidden = prev
        keep = min(k, pshown, shown)
        upto = min(k, shown)
        parts = []
        if keep < upto:  # here keep == pshown
            parts.append(np.array(phidden[:upto - pshown], dtype=np.uint64))
        if shown > k:
            parts.append(tail[:shown - k])
        hidden = (phidden[shown - pshown:k - pshown] if shown < k else []) + tail[max(0, shown - k):].tolist()
        privates = [private_block_id(request_id, j, input_length) for j in range(shown, full)]
        if bs and input_length % bs:
            privates.append(private_block_id(request_id, full, input_length))
        if privates:
            parts.append(np.array(privates, dtype=np.uint64))
        if len(parts) == 1:
            new = parts[0]
        elif parts:
            new = np.concatenate([x.astype(np.uint64, copy=False) for x in parts])
        else:
            new = tail[:0]
        text = _ids_text(prev[:2], keep, new)
    else:  # a chain's first row, or (rare) a shorter row sharing ids past its full blocks that prev's text shows
        before = [] if prev is None or not k else (orjson.loads(prev[0])[:prev[2]] + prev[3])[:k]
        compact = before + tail.tolist()
        ids = v2_ids(compact, request_id, input_length, bs) if bs else compact
        hidden = compact[shown:]
        text = orjson.dumps(ids)
    count = (full + (1 if input_length % bs else 0)) if bs else n
    return text, (text, count, shown, hidden)


def v2_row_json(fields: tuple) -> dict:
    """One row of `_v2_fields` as its JSON object: the keys and values `Row.to_agentic_v2` gives
    the Row `derive_v2` builds (a test checks the two against each other)."""
    r, play, chain, ids, not_before, deps = fields
    d = {"request_id": r.request_id, "play_id": play, "session_id": chain, "model": r.model,
         "input_length": r.input_length or 0, "output_length": r.output_tokens,
         "hash_ids": _FRAGMENT(ids) if type(ids) is bytes else ids, "not_before_ms": not_before}
    if deps:
        d["dependencies"] = [x.to_json() for x in deps]
    return d


def v2_header(block_size: int | None, digest: str) -> dict:
    """The v2 header line as the exporter writes it."""
    return {"schema": "dynamo.agentic_mooncake", "version": 2, "block_size": block_size, "hash_id_scope": "local",
            "source": {"format": "dynamo_request_trace", "digest": digest}}


def write_v2(derived: Derived, fields: Iterator[tuple], write) -> None:
    """The header, then each row of `derive_v2_lazy`. The header's digest is BLAKE3 of the rows
    as one compact JSON array (`[row,row,...]`, the exporter's `serde_json::to_vec(&rows)`),
    so the rows go to a spool file first and are copied after the header: memory stays with the
    requests, as for v1."""
    dumps = orjson.dumps
    h = blake3.blake3(b"[")
    first = True
    with tempfile.TemporaryFile() as spool:
        batch: list[bytes] = []
        for f in fields:
            batch.append(dumps(v2_row_json(f)))
            if len(batch) >= 256:
                first = _spool(batch, first, h, spool)
        if batch:
            _spool(batch, first, h, spool)
        h.update(b"]")
        derived.header = v2_header(derived.block_size, h.hexdigest())
        write(dumps(derived.header, option=orjson.OPT_APPEND_NEWLINE))
        spool.seek(0)
        while chunk := spool.read(1 << 20):
            write(chunk)


def _spool(batch: list[bytes], first: bool, h, spool) -> bool:
    if not first:
        h.update(b",")
    h.update(b",".join(batch))
    spool.write(b"\n".join(batch))
    spool.write(b"\n")
    batch.clear()
    return False


def derive_v2(trace: Trace) -> Derived:
    """Agentic Mooncake v2 (§4.7) as Rows with the header: `derive_v2_lazy` + `write_v2`'s
    bytes without the streaming."""
    if trace.mooncake_rows:
        return _from_mooncake(trace)
    derived, fields = _derive_v2(trace, True, False)
    rows = []
    for r, play, chain, ids, not_before, deps in fields:
        rows.append(Row(request_id=r.request_id, play_id=play, session_id=chain, model=r.model,
                        input_length=r.input_length or 0, output_length=r.output_tokens, hash_ids=tuple(ids),
                        not_before_ms=not_before, dependencies=tuple(deps)))
    body = b"[" + b",".join(orjson.dumps(row.to_agentic_v2()) for row in rows) + b"]"
    derived.rows = rows
    derived.header = v2_header(derived.block_size, blake3.blake3(body).hexdigest())
    return derived

