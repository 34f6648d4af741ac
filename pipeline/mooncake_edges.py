"""Dependency edges read back from Mooncake rows: what a v1 `wait_for` or a v2 `dependencies`
entry means as an Edge. One rule for `convert` (Perfetto flows of Mooncake input) and `replay`
(the recorded timeline's links); the conversion's own edges (request_graph) read back equal.

A v2 dependency names its relation. A v1 `wait_for` entry does not, and the lowering gives it
one by where it points: the previous call of the same session is its `sequence`; a session's
first row waiting on another session is a `spawn` (a child starts once); any later row waiting on
another session is a `join` (a parent resuming after its child: trace_0277/4 waits for
trace_0277/agent_001/3). A dependency named twice in one row is one edge (the replay's DAG
waits once). Plain rows have no dependencies: consecutive rows of a session are its turns.
"""

from __future__ import annotations

from .model import Trace
from .mooncake import Row
from .request_graph import Derived, Edge


def row_edges(rows: list[Row], *, agentic: bool = False) -> list[Edge]:
    """The rows' edges in row order (a row's in its own order). `agentic`: the rows are agentic
    (a header or the format says so) even if none has a dependency; else rows without any
    dependency are plain, and a session's rows follow each other. A row without a request_id is
    named by its index, as the replay names it."""
    ids = [r.request_id if r.request_id is not None else str(i) for i, r in enumerate(rows)]
    out: list[Edge] = []
    if agentic or any(r.wait_for or r.dependencies for r in rows):
        session = dict(zip(ids, (r.session_id for r in rows)))
        first: dict = {}
        for i, r in enumerate(rows):
            first.setdefault(r.session_id, i)
        for i, r in enumerate(rows):
            dst = ids[i]
            if r.dependencies:
                seen: set[str] = set()
                for d in r.dependencies:
                    if d.request_id not in seen:
                        seen.add(d.request_id)
                        out.append(Edge(d.request_id, dst, d.relation))
                continue
            for d in dict.fromkeys(r.wait_for):
                if d in session and session[d] == r.session_id:
                    rel = "sequence"
                elif first[r.session_id] == i:
                    rel = "spawn"
                else:
                    rel = "join"
                out.append(Edge(d, dst, rel))
        return out
    last: dict[str, str] = {}
    for i, r in enumerate(rows):
        if r.session_id is None:
            continue
        prev = last.get(r.session_id)
        if prev is not None:
            out.append(Edge(prev, ids[i], "sequence"))
        last[r.session_id] = ids[i]
    return out


def from_mooncake(trace: Trace) -> Derived:
    """Mooncake input: rows and their explicit edges as read."""
    rows = list(trace.mooncake_rows)
    header = trace.mooncake_header
    bs = (header or {}).get("block_size")
    return Derived(rows, row_edges(rows, agentic=header is not None), bs, list(trace.requests), header=header)
