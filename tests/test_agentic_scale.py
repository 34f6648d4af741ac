"""The dependency-graph derivations take linear time (issue 22): one parent with 150,000 child
sessions, and sessions nested 5,000 deep, each derived in seconds (a list scan per child made them
quadratic: 50k children took 21 s, 150k over 120 s; 2,000-deep nesting 17 s, 5,000 over 120 s).
The traces are built in memory, so the time measured is the derivations', not the reader's."""

from __future__ import annotations

import time

import pytest

from trace_pipe.pipeline import agentic_v2, raw_lowering, request_graph
from trace_pipe.pipeline.model import Request, Source, Trace

# generous against this machine's ~3 s, far below the quadratic code's minutes
BUDGET_S = 30.0


def _req(rid: str, chain: str, parent: str | None, start: int, end: int, hashes: tuple) -> Request:
    identity = (("session_id", chain),) + ((("parent_session_id", parent),) if parent else ())
    return Request(rid, chain, parent, start, end, 5, 2, 2 * len(hashes), hashes, model="m", identity=identity,
                   source=Source("t.jsonl", start))


def fan_out(n: int) -> Trace:
    """One parent call, `n` child sessions of one call each, then the parent call that joins them."""
    reqs = [_req("p0", "root", None, 0, 5, (1,))]
    reqs += [_req(f"k{i:06d}", f"kid{i:06d}", "root", 10 + i, 15 + i, (2,)) for i in range(n)]
    reqs.append(_req("p1", "root", None, n + 20, n + 25, (1, 3)))
    return Trace(requests=reqs)


def nested(depth: int) -> Trace:
    """Session k's first call spawns session k+1; its second call joins it."""
    reqs = []
    for k in range(depth):
        parent = f"c{k - 1}" if k else None
        reqs.append(_req(f"a{k}", f"c{k}", parent, 10 * k, 10 * k + 5, (k + 1,)))
        reqs.append(_req(f"b{k}", f"c{k}", parent, 20 * depth - 10 * k, 20 * depth - 10 * k + 5, (k + 1, 7)))
    return Trace(requests=reqs)


def _timed(f, *args):
    t = time.perf_counter()
    out = f(*args)
    took = time.perf_counter() - t
    assert took < BUDGET_S, f"{f.__qualname__} took {took:.1f} s"
    return out


@pytest.fixture(scope="module")
def fan():
    return fan_out(150_000)


def test_150k_child_sessions_g2(fan):
    n = 150_000
    g = _timed(request_graph.build, fan, "g2")
    last = len(g.order) - 1
    assert g.order[last].request_id == "p1"
    assert g.wait_for[last][0] == "p0" and len(g.wait_for[last]) == n + 1
    assert g.relations[last].count("join") == n
    assert len(g.branches[0]) == n and g.branches[0][-1] == f"k{n - 1:06d}"


def test_150k_child_sessions_v2(fan):
    n = 150_000
    v = _timed(agentic_v2._build_v2, fan)  # the G3c graph, typed
    deps = v.deps[-1]
    assert len(deps) == n + 1 and deps[0].request_id == "k000000" and deps[0].relation == "join"
    assert sum(d.relation == "sequence" for d in deps) == 1
    assert {d.trigger for ds in v.deps[1:-1] for d in ds} == {"completion"}  # p0 ended before each child
    assert set(v.plays.values()) == {"root"}


def test_150k_child_sessions_raw_lowering(fan):
    raw = _timed(raw_lowering.lower, fan)
    assert len(raw.rows[-1].dependencies) == 150_001 and len({r.play_id for r in raw.rows}) == 1


def test_5000_deep_nesting():
    depth = 5000
    trace = nested(depth)
    v = _timed(agentic_v2._build_v2, trace)
    assert set(v.plays.values()) == {"c0"} and len(v.plays) == depth
    g = v.g
    b0 = g.index["b0"]
    assert sorted(zip(g.wait_for[b0], g.relations[b0])) == [("a0", "sequence"), ("b1", "join")]
    assert g.branches[g.index[f"a{depth - 2}"]] == [f"a{depth - 1}"]
    raw = _timed(raw_lowering.lower, trace)
    assert len({r.play_id for r in raw.rows}) == 1
