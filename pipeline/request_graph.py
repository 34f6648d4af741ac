"""The request dependency graph both agentic Mooncake lowerings start from (dynamo-formats.md §4.4,
§4.6): requests in output order, their chains, and each request's `wait_for` with its relation
(sequence / spawn / join), under G2–G3b rules ("g2", spawn by end) or G3c rules ("g3c", spawn by
start, Claude causality from `tool.claude`).
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass, field
from operator import attrgetter

from .cycles import blocked
from .errors import TraceError
from .model import Generation, Request, ToolEvent, Trace
from .mooncake import Row

RULES = ("g2", "g3c")
_SCAN = 8  # a list this short is scanned; a longer one gets a set (Graph.wait_sets / branch_sets)


def check_rules(rules: str) -> None:
    if rules not in RULES:
        raise TraceError(f"error: unknown rules {rules!r}, expected one of {', '.join(RULES)}")


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


# a request's output order: (start_ms, end_ms, request_id); attrgetter makes the tuple in C (a
# Python key function cost a third of the graph build's sort on the short-row bench)
sort_key = attrgetter("start_ms", "end_ms", "request_id")


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


def chain_word(requests: list[Request]) -> str:
    """What the trace's generation calls a chain ("session", "trajectory", "program")."""
    for r in requests:
        if r.chain_id is not None or r.generation is not Generation.G3_FREE:
            return r.generation.chain_word
    return "trajectory"


def require_output(r: Request) -> int:
    if r.output_tokens is None:
        raise TraceError(f"{r.source}: field `request.output_tokens`: request {r.request_id} is missing output length")
    return r.output_tokens


def requests_of(trace: Trace) -> list[Request]:
    if not trace.requests:
        raise TraceError("error: no request_end records with replay fields found")
    return list(trace.requests)


@dataclass(slots=True)
class Graph:
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
    # membership of long `wait_for` / `branches` lists (a parent joining or spawning thousands of
    # sub-agents), made once a list passes _SCAN: a scan of each would be quadratic
    wait_sets: dict[int, set[str]] = field(default_factory=dict)
    branch_sets: dict[int, set[str]] = field(default_factory=dict)
    previous: list[int] = field(default_factory=list)  # per request: its chain's call before it, or -1
    # an edge to a request not before its dependent in output order (`_add`): only then can there
    # be a cycle (the sequence edges point back by construction)
    forward: bool = False


def chain_of(r: Request) -> str:
    return r.chain_id if r.chain_id is not None else r.request_id


def build(trace: Trace, rules: str, background_joins: bool = True) -> Graph:
    """`background_joins` False: a background Claude agent's consumer does not wait for it (the
    v2 exporter's rule; the G3c v1 converter joins both modes)."""
    reqs = requests_of(trace)
    if rules == "g3c":  # G3c's loader requires both on terminal tool rows (§4.2)
        for t in trace.tools:
            if t.terminal and (t.tool_call_id is None or t.tool_class is None):
                k = "tool_call_id" if t.tool_call_id is None else "tool_class"
                raise TraceError(f"{t.source}: field `tool.{k}`: missing field `{k}` (required by the G3c rules)")
    word = chain_word(reqs)
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
        c = chain_of(r)
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
    g = Graph(reqs, index, dict(chains), parent, [[] for _ in range(n)], [[] for _ in range(n)],
               [[] for _ in range(n)], [None] * n, defaultdict(list), {})
    wait_for, relations = g.wait_for, g.relations
    g.previous = previous = [-1] * n
    for c, idx in chains.items():
        for a, b in zip(idx, idx[1:]):  # the first edge of each row: no duplicate to check (`_add`)
            wait_for[b].append(reqs[a].request_id)
            relations[b].append("sequence")
            previous[b] = a

    claude_children = _claude_edges(trace, g, word, background_joins) if rules == "g3c" else {}
    missing_parent = no_spawn = 0
    times: dict[str, tuple] = {}  # parent chain -> its calls' starts, and (end, position) sorted
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
        pt = times.get(p)
        if pt is None:
            pt = times[p] = ([reqs[j].start_ms for j in pidx], sorted((reqs[j].end_ms, k) for k, j in enumerate(pidx)))
        starts, ends = pt
        # the spawning call: G3c the latest to start by the child's start, else the latest to end
        # by then; on ties the later in output order (parent calls are in output order, so by start)
        if rules == "g3c":
            k = bisect.bisect_right(starts, first.start_ms) - 1
        else:
            k = bisect.bisect_right(ends, (first.start_ms, len(pidx))) - 1
            k = ends[k][1] if k >= 0 else -1
        spawn = pidx[k] if k >= 0 else None
        link = trace.links.get(c)
        if spawn is not None and spawn != idx[0]:
            _spawn(g, spawn, idx[0])
        elif spawn is None and (link is None or link.spawn_request_id is None):
            no_spawn += 1  # (a reader's explicit spawn, below, links it)
        if link is not None and link.join_request_id is not None:
            join = index.get(link.join_request_id)
        else:  # the parent's first call to start once the child's last has ended
            k = bisect.bisect_left(starts, last.end_ms)
            join = pidx[k] if k < len(pidx) else None
        if join is not None and chain_of(reqs[join]) != c:
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


def _add(g: Graph, i: int, dep: str, relation: str) -> None:
    if _put(g.wait_for[i], dep, g.wait_sets, i):
        g.relations[i].append(relation)
        if g.index[dep] >= i:
            g.forward = True


def _put(items: list[str], x: str, sets: dict[int, set[str]], i: int) -> bool:
    """Append `x` to `items` (list `i` of its kind) unless it is there; True if appended."""
    if len(items) < _SCAN:
        if x in items:
            return False
    else:
        seen = sets.get(i)
        if seen is None:
            seen = sets[i] = set(items)
        if x in seen:
            return False
        seen.add(x)
    items.append(x)
    return True


def _spawn(g: Graph, parent_i: int, child_i: int) -> None:
    _add(g, child_i, g.order[parent_i].request_id, "spawn")
    _put(g.branches[parent_i], g.order[child_i].request_id, g.branch_sets, parent_i)


def _explicit_spawns(trace: Trace, g: Graph) -> None:
    """A reader's explicit spawn replaces the one inferred from times (WEKA `wait` rule). The
    inferred spawns all go first, then the explicit ones are added in link order: the lists come
    out as removing and adding chain by chain gives them, without a list scan per child."""
    explicit = []
    dropped: dict[int, set[str]] = defaultdict(set)  # parent row -> children whose spawn is replaced
    for c, link in trace.links.items():
        idx = g.chains.get(c)
        if not idx or link.spawn_request_id is None or link.spawn_request_id not in g.index:
            continue
        first = idx[0]
        for k in range(len(g.wait_for[first]) - 1, -1, -1):
            if g.relations[first][k] == "spawn":
                dep = g.wait_for[first][k]
                del g.wait_for[first][k], g.relations[first][k]
                g.wait_sets.get(first, set()).discard(dep)
                dropped[g.index[dep]].add(g.order[first].request_id)
        explicit.append((g.index[link.spawn_request_id], first))
    for old, children in dropped.items():
        g.branches[old] = [b for b in g.branches[old] if b not in children]
        g.branch_sets.pop(old, None)
    for parent_i, first in explicit:
        _spawn(g, parent_i, first)


def _claude_edges(trace: Trace, g: Graph, word: str, background_joins: bool = True) -> dict[str, str]:
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
            if chain_of(g.order[g.index[rid]]) != t.chain_id:
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
            if rid is not None and chain_of(g.order[g.index[rid]]) != parent:
                raise TraceError(f"{t.source}: field `tool.claude.{key}_request_id`: tool {name} {key} request {rid} "
                                 f"is not in parent {word} {parent}")
        idx = g.chains[child]
        if cl.source_request_id is not None:
            _spawn(g, g.index[cl.source_request_id], idx[0])
        if join:
            last = max((g.order[i] for i in idx), key=lambda r: (r.end_ms, r.start_ms, r.request_id))
            _add(g, g.index[cl.consumer_request_id], last.request_id, "join")
    return children


def _check_acyclic(g: Graph) -> None:
    if not g.forward:
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


def graph_edges(g: Graph) -> list[Edge]:
    """Every dependency edge of the graph, in output order (a row's in its `wait_for` order)."""
    return [Edge(d, r.request_id, rel) for r, deps, rels in zip(g.order, g.wait_for, g.relations)
            for d, rel in zip(deps, rels)]

