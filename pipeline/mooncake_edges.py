"""Dependency edges read back from Mooncake rows: what a v1 `wait_for` or a v2 `dependencies`
entry means as an Edge."""

from __future__ import annotations

from .model import Trace
from .request_graph import Derived, Edge


def from_mooncake(trace: Trace) -> Derived:
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

