"""Agentic Mooncake v1 rows (dynamo-formats.md §4.4, §4.6 with rules="g3c"), as Dynamo's
`request_trace_to_mooncake --agentic` writes them, in two serializers that give the same bytes:
`derive` (Row records) and `derive_lazy` + `write_v1` (streamed, for large traces). All time
arithmetic is integer ms as in Dynamo; rows come out in (start, end, request_id) order.
"""

from __future__ import annotations

from typing import Iterator

import orjson

from . import completion, hash_ids
from .errors import TraceError
from .ids_text import FRAGMENT, ids_text
from .model import Trace
from .mooncake import Row
from .mooncake_edges import from_mooncake
from .request_graph import Derived, Graph, build, check_block_size, check_rules, graph_edges, require_output
from .tool_gaps import gap_tools, tool_index, tool_json, tool_span


def derive(trace: Trace, *, rules: str = "g2") -> Derived:
    """Agentic Mooncake v1 rows and the dependency edges (§4.4, §4.6 with rules="g3c")."""
    check_rules(rules)
    if trace.mooncake_rows:
        return from_mooncake(trace)
    rows: list[Row] = []
    add = rows.append
    derived, fields = _derive_v1(trace, rules, True, False)
    for (r, chain, ids, ts, delay, kind, deps, branches, reset, tool_wait, spans, out_ids) in fields:
        add(Row(
            request_id=r.request_id, session_id=chain, input_length=r.input_length or 0,
            output_length=require_output(r), hash_ids=ids, timestamp=ts, delay=delay, request_kind=kind,
            output_token_ids=tuple(out_ids) if out_ids is not None else None,
            wait_for=tuple(deps), branches=tuple(branches), prefix_reset=reset,
            tool_wait_ms=float(tool_wait) if tool_wait else None, tool_events=tuple(tool_span(s) for s in spans)))
    derived.rows = rows
    return derived


def dependency_edges(trace: Trace, *, rules: str = "g2") -> Derived:
    """The dependency edges alone, in `derive`'s order (Perfetto flows): the graph rules without
    what only Mooncake rows need (one block size, output lengths, hash ids)."""
    check_rules(rules)
    if trace.mooncake_rows:
        return from_mooncake(trace)
    g = build(trace, rules)
    return Derived([], graph_edges(g), None, g.order, notes=g.notes)


def derive_lazy(trace: Trace, *, rules: str = "g2", edges: bool = True,
                text_ids: bool = FRAGMENT is not None) -> tuple[Derived, Iterator[tuple]]:
    """`derive` for streaming (`write_v1`): every error it can raise is raised here, before any
    row exists; the rows come as a lazy iterator of their fields (see `_v1_fields`), so no Row,
    ToolSpan or id list outlives its line and memory stays with the requests. The Derived's
    `rows` stays empty; its `edges` are set at once (none when `edges` is False: only Perfetto
    flows need them), its `attached_tools` once the iterator is exhausted. `text_ids`: hash ids as
    JSON text (`ids_text`, embedded by orjson's Fragment) rather than lists: the same bytes, faster."""
    check_rules(rules)
    if trace.mooncake_rows:
        raise TraceError("error: Mooncake input: use derive")
    return _derive_v1(trace, rules, edges, text_ids)


def write_v1(fields: Iterator[tuple], write) -> None:
    """Each row of `derive_lazy` to `write` as its JSON line: the bytes `Row.to_agentic_v1` gives."""
    dumps = orjson.dumps
    fragment = FRAGMENT
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
            d["tool_events"] = [tool_json(s) for s in spans]
        add(dumps(d, option=nl))
        if len(batch) >= 256:  # one write per batch: fewer buffer flushes than a write per row
            write(b"".join(batch))
            batch.clear()
    if batch:
        write(b"".join(batch))


def _derive_v1(trace: Trace, rules: str, want_edges: bool, text_ids: bool) -> tuple[Derived, Iterator[tuple]]:
    """The v1 lowering (every error it can raise is raised here, before any row is produced) and
    a lazy iterator of its rows' fields (see `_v1_fields`); the Derived's `rows` stays empty, its
    `attached_tools` is complete once the iterator is exhausted."""
    g = build(trace, rules)
    bs = check_block_size(g.order)
    tools, n_tools = tool_index(trace)
    for r in g.order:  # the first row without an output length is the error `derive` always gave
        if r.output_tokens is None:
            require_output(r)
    derived = Derived([], graph_edges(g) if want_edges else [], bs, g.order, tool_spans=n_tools, notes=g.notes)
    given = completion.token_ids(g.order, bs) if rules == "g3c" else None  # checks them, before any row
    return derived, _v1_fields(g, rules, tools, derived, text_ids, given)


def _v1_fields(g: Graph, rules: str, tools: dict, derived: Derived, text_ids: bool,
               given: list | None = None) -> Iterator[tuple]:
    """Per row, in output order: (request, chain, hash ids, timestamp, delay, request_kind,
    wait_for, branches, prefix_reset, tool_wait, tool spans, output_token_ids or None). The
    distinct tool spans attached go to `derived.attached_tools`. The hash ids are a list, or with `text_ids` their JSON array (see
    `ids_text`); `given`: both id lists per row, from completion hashes (`completion.token_ids`)."""
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
            if g3c or ct is not None:
                spans, tool_wait = gap_tools(g, i, r, chain, dep_end, ct, g3c)
                if spans:
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
            ids = ids_text(last.get(chain), k, tail)
            last[chain] = (ids, k + len(tail))
        yield (r, chain, ids, float(start - t0), delay, g.kind[i], deps, g.branches[i], i in first, tool_wait, spans,
               out_ids)
    derived.attached_tools = len(attached)

