"""Raw Dynamo request traces lowered to agentic v2 rows as ai-dynamo 1.6.1's replay lowers them.

Dynamo 1.6 replays raw request traces (`--trace-format dynamo`) through AISimulate's own loader
(`crates/core/src/replay/loadgen/dynamo.rs` in ai-dynamo/aisimulate), not through the exporter's
lowering that `convert --agentic` follows (pipeline/agentic_v2.py). The two disagree, so this is its
own module. The rules, read in that source and checked against 1.6.1 (tests/test_raw_dynamo16.py):

- requests in (start, end, request_id) order; a session is `agent_context.session_id` as
  recorded (for G3a rows that is the run-wide id, not the trajectory), its parent
  `parent_session_id`;
- sequence: each request of a session waits for the *completion* of the one before it, for
  `start - previous end` ms (tool time is not separated out: it is part of that gap);
- a child session's first request is spawned by the parent request that *dispatched* last at or
  before the child's start, `child start - parent start` ms after that dispatch; the parent
  request that starts first at or after the child's last end joins on it (completion,
  `start - child end`); a Claude tool naming the child session (`tool.claude`) names the
  spawning request and the consumer instead; 1.5.1 (and the source we read) join the consumer on
  the child's last request, refusing the trace when that ends after the consumer starts, 1.6.1
  on the child request that ended last at or before the consumer started (none: no join);
- a request keeps only the first edge per (request, trigger); roots get `not_before_ms` = start
  minus the trace's first start, dependents 0; plays are the graph's connected components,
  named `dynamo-play:` + the root that starts first; a missing model is "unknown"; hash ids
  stay as recorded;
- the graph's source is `dynamo.request.trace.v1` with digest `requests:N;tools:M`;
- a negative delay (two calls of one session overlapping, or a consumer starting before its
  child ends) is refused, as 1.6.1 refuses it.

ai-dynamo 1.5.1 replays raw traces through the same loader (`lower(..., "aisimulate-1.5")`).
Dynamo reads only `dynamo.request.trace.v1` rows raw and needs `agent_context.session_id`
on every agentic row: `readable` says when a trace is something else (G1/G2 agent traces, G3a
rows without a session id), and the caller keeps the exporter's lowering for it.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, replace

from .request_graph import check_block_size, sort_key
from .dynamo_rows import round_half_away
from .components import play_roots
from .errors import TraceError
from .model import Generation, Request, ToolEvent, Trace
from .mooncake import Dependency, Row
from .shared_hashes import flat

FORMAT = "dynamo.request.trace.v1"
PLAY_PREFIX = "dynamo-play"
_REQUEST_SCHEMA_GENS = (Generation.G3B, Generation.G3A, Generation.G3_FREE)
_EXECUTION_MODES = ("blocking", "background")


@dataclass(frozen=True, slots=True)
class RawGraph:
    rows: list[Row]
    order: list[Request]  # the request behind each row
    block_size: int
    source: tuple[str, str]  # (format, digest) as 1.6.1's report names it


def _dbg(s: object) -> str:
    """A string as Rust's `{:?}` writes it in the loader's messages."""
    return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"') + '"'


def readable(trace: Trace) -> str | None:
    """None when 1.6.1's raw loader reads these requests; else why not (the caller then keeps the
    exporter's lowering and says so)."""
    gens = {r.generation for r in trace.requests}
    if not gens <= set(_REQUEST_SCHEMA_GENS):
        return "ai-dynamo 1.6.1 reads only dynamo.request.trace.v1 rows raw, not G1/G2 agent traces"
    if Generation.G3A in gens and (
            any(not isinstance(dict(r.identity).get("session_id"), str) for r in trace.requests
                if r.generation is Generation.G3A)
            or any(not isinstance(dict(t.identity).get("session_id"), str) for t in trace.tools if t.terminal)):
        return "ai-dynamo 1.6.1 does not read G3a rows without agent_context.session_id raw"
    return None


def _check_tool(t: ToolEvent) -> None:
    """The checks 1.6.1's loader makes on every terminal tool row, in its order and words."""
    def bad(msg: str) -> TraceError:
        return TraceError(f"{t.source}: {msg}")
    if not dict(t.identity).get("session_id", "").strip():
        raise bad("field `agent_context.session_id`: tool session_id must be nonempty")
    if not (t.tool_call_id or "").strip():
        raise bad("field `tool.tool_call_id`: tool_call_id must be nonempty")
    if not (t.tool_class or "").strip():
        raise bad("field `tool.tool_class`: tool_class must be nonempty")
    if t.duration_ms is not None and t.duration_ms < 0:
        raise bad("field `tool.duration_ms`: tool duration must be finite and nonnegative")
    end = t.ended_at_ms if t.ended_at_ms is not None else t.event_time_ms
    if t.started_at_ms is not None:
        start = t.started_at_ms
    elif t.duration_ms is not None:
        start = end - round_half_away(t.duration_ms)
    else:
        start = end
    if end < start:
        raise bad("field `tool.ended_at_unix_ms`: tool end time precedes start time")


def _check_rows(trace: Trace, tools: list[ToolEvent]) -> None:
    """What 1.6.1's loader refuses row by row, reported for the first such row in input order (it
    reads the files line by line) that trace-pipe's reader accepted."""
    order = {path: k for k, path in enumerate(trace.files)}
    rows: list = [*trace.requests, *tools]
    rows.sort(key=lambda x: (order.get(x.source.path, 0), x.source.line) if x.source is not None else (0, 0))
    for x in rows:
        if isinstance(x, ToolEvent):
            _check_tool(x)
        elif x.total_time_ms is not None and x.total_time_ms < 0:
            raise TraceError(f"{x.source}: field `request.total_time_ms`: request duration must be finite and "
                             f"nonnegative")


# The loader as each Dynamo release ships it; they differ only in a Claude tool's join (above)
LOADERS = ("aisimulate-1.5", "aisimulate-1.6")


def lower(trace: Trace, loader: str = "aisimulate-1.6") -> RawGraph:
    """The v2 rows Dynamo replays for a raw agentic request trace (every request has a session;
    `readable(trace)` is None), by `loader` (one of LOADERS). Raises TraceError where that
    Dynamo refuses the trace."""
    if loader not in LOADERS:
        raise ValueError(f"loader must be one of {LOADERS}, got {loader!r}")
    tools = [t for t in trace.tools if t.terminal]
    _check_rows(trace, tools)
    reqs = sorted(trace.requests, key=sort_key)
    bs = check_block_size(reqs)
    index = {r.request_id: i for i, r in enumerate(reqs)}
    session: list[str] = []
    members: dict[str, list[int]] = {}
    parent_of: dict[str, str] = {}
    for i, r in enumerate(reqs):
        ctx = dict(r.identity)
        s = ctx.get("session_id")
        if not s.strip():
            raise TraceError(f"{r.source}: field `agent_context.session_id`: session_id must be nonempty")
        session.append(s)
        members.setdefault(s, []).append(i)  # already in (start, end, request_id) order
        p = ctx.get("parent_session_id")
        if p is not None:
            seen = parent_of.setdefault(s, p)
            if seen != p:
                raise TraceError(f"{r.source}: field `agent_context.parent_session_id`: session {_dbg(s)} has "
                                 f"conflicting parent_session_id values {_dbg(seen)} and {_dbg(p)}")

    deps: list[list[Dependency]] = [[] for _ in reqs]
    pushed: dict[int, set[tuple[str, str]]] = {}  # a row's (request, trigger) pairs, once it has many

    def push(src: int, dst: int, trigger: str, relation: str) -> None:
        # one edge per (request, trigger): the first pushed wins (a set for a row joining
        # thousands of sub-agents, where scanning its list each time would be quadratic)
        rid = reqs[src].request_id
        mine = deps[dst]
        if len(mine) < 8:
            if any(d.request_id == rid and d.trigger == trigger for d in mine):
                return
        else:
            seen = pushed.get(dst)
            if seen is None:
                seen = pushed[dst] = {(d.request_id, d.trigger) for d in mine}
            if (rid, trigger) in seen:
                return
            seen.add((rid, trigger))
        at = reqs[src].start_ms if trigger == "dispatch" else reqs[src].end_ms
        deps[dst].append(Dependency(rid, trigger, float(reqs[dst].start_ms - at), relation))

    for idx in members.values():
        for a, b in zip(idx, idx[1:]):
            push(a, b, "completion", "sequence")

    explicit: dict[str, ToolEvent] = {}
    for t in tools:
        c = t.claude
        if c is None:
            continue
        if c.execution_mode not in _EXECUTION_MODES:
            raise TraceError(f"{t.source}: field `tool.claude.execution_mode`: tool {_dbg(t.tool_call_id)} "
                             f"({t.tool_class}) has unsupported execution_mode "
                             f"{_dbg(c.execution_mode) if c.execution_mode is not None else 'None'}")
        if c.source_request_id is None:
            raise TraceError(f"{t.source}: field `tool.claude.source_request_id` is required")
        tool_session = dict(t.identity)["session_id"]
        for rid in (c.source_request_id, c.consumer_request_id):
            if rid is None:
                continue
            i = index.get(rid)
            if i is None:
                raise TraceError(f"{t.source}: field `tool.claude`: tool {_dbg(t.tool_call_id)} references unknown "
                                 f"request_id {_dbg(rid)}")
            if session[i] != tool_session:
                raise TraceError(f"{t.source}: field `tool.claude`: tool {_dbg(t.tool_call_id)} request {_dbg(rid)} "
                                 f"belongs to session {_dbg(session[i])}, expected {_dbg(tool_session)}")
        child = c.child_session_id
        if child is None or child not in members:
            continue
        if child in explicit:
            raise TraceError(f"{t.source}: field `tool.claude.child_session_id`: multiple tool events reference "
                             f"child session {_dbg(child)}")
        explicit[child] = t

    starts: dict[str, list[int]] = {}  # parent session -> its requests' starts, ascending (trace order)
    for child in sorted(parent_of):
        parent = parent_of[child]
        kids = members[child]
        parents = members.get(parent)
        if parents is None:
            r = reqs[kids[0]]
            raise TraceError(f"{r.source}: field `agent_context.parent_session_id`: child session {_dbg(child)} "
                             f"references unknown parent session {_dbg(parent)}")
        first = kids[0]
        _by_end = lambda i: (reqs[i].end_ms, reqs[i].start_ms, reqs[i].request_id)  # noqa: E731
        last = max(kids, key=_by_end)
        t = explicit.get(child)
        if t is not None:
            c = t.claude
            for rid, what in ((c.source_request_id, "source"), (c.consumer_request_id, "consumer")):
                if rid is not None and session[index[rid]] != parent:
                    raise TraceError(f"{t.source}: field `tool.claude`: tool {_dbg(t.tool_call_id)} {what} request "
                                     f"{_dbg(rid)} is not in parent session {_dbg(parent)}")
            push(index[c.source_request_id], first, "dispatch", "spawn")
            if c.consumer_request_id is not None:
                consumer = index[c.consumer_request_id]
                if loader == "aisimulate-1.5":
                    push(last, consumer, "completion", "join")
                else:
                    # 1.6.1 joins on the child request that ended last at or before the consumer
                    # started, none if none did (measured: tests/test_raw_dynamo16.py claude_join_*)
                    done = [i for i in kids if reqs[i].end_ms <= reqs[consumer].start_ms]
                    if done:
                        push(max(done, key=_by_end), consumer, "completion", "join")
            continue
        start = reqs[first].start_ms
        # the latest-starting parent request at or before the child (on equal starts the last in
        # trace order), and the first parent request starting at or after the child's last end
        ps = starts.get(parent)
        if ps is None:
            ps = starts[parent] = [reqs[i].start_ms for i in parents]
        k = bisect.bisect_right(ps, start)
        if k:
            push(parents[k - 1], first, "dispatch", "spawn")
        k = bisect.bisect_left(ps, reqs[last].end_ms)
        if k < len(parents):
            push(last, parents[k], "completion", "join")

    for i, ds in enumerate(deps):
        for d in ds:
            if d.delay_ms < 0:
                r = reqs[i]
                raise TraceError(
                    f"{r.source}: request {r.request_id!r} starts {-d.delay_ms:g} ms before its {d.relation} "
                    f"dependency {d.request_id!r} {'ends' if d.trigger == 'completion' else 'starts'}; ai-dynamo "
                    f"{loader.split('-')[1]} refuses the raw trace (trace line {i + 2} has invalid dependency delay "
                    f"{d.delay_ms:g}): "
                    f"replay it with --dynamo-version 1.4, or convert it with `trace-pipe convert --agentic` and "
                    f"replay the v2 file")

    t0 = reqs[0].start_ms
    rows = [Row(input_length=r.input_length or 0, output_length=_output(r), hash_ids=tuple(flat(r.hashes)),
                request_id=r.request_id, session_id=session[i], model=r.model if r.model is not None else "unknown",
                not_before_ms=0.0 if deps[i] else float(r.start_ms - t0), dependencies=tuple(deps[i]))
            for i, r in enumerate(reqs)]
    rows = _with_plays(rows)
    return RawGraph(rows, reqs, bs, (FORMAT, f"requests:{len(rows)};tools:{len(tools)}"))


def _output(r: Request) -> int:
    if r.output_tokens is None:
        raise TraceError(f"{r.source}: field `request.output_tokens`: missing output_tokens")
    return r.output_tokens


def _with_plays(rows: list[Row]) -> list[Row]:
    """Each connected component of the dependency graph is a play, named after its root that
    starts first (ties: the smaller request id)."""
    index = {r.request_id: i for i, r in enumerate(rows)}
    label = play_roots([[index[d.request_id] for d in r.dependencies] for r in rows],
                       [not r.dependencies for r in rows], [(r.not_before_ms, r.request_id) for r in rows])
    return [replace(r, play_id=f"{PLAY_PREFIX}:{rows[label[i]].request_id}") for i, r in enumerate(rows)]
