"""Every fixture's Mooncake output, read back, has the edges and relations its conversion derived:
the one read-back rule (pipeline/mooncake_edges.py) serves `convert` (Perfetto flows of Mooncake
input) and `replay` (the recorded timeline's links) alike."""

from __future__ import annotations

from pathlib import Path

import pytest

from trace_pipe.pipeline import agentic_v1, readers
from trace_pipe.pipeline.convert import write_mooncake
from trace_pipe.pipeline.mooncake_edges import row_edges
from trace_pipe.pipeline.replay_input import load_input

from dynamo_records import FIXTURES, req, write_jsonl

ROOT = Path(__file__).resolve().parents[1]

# (name, path); the shared fixtures show as skipped, with the reason, where ../shared is missing
_INPUTS = [("main/" + p.name, p) for p in sorted((ROOT / "fixtures").glob("*.json*"))]
_SHARED = [FIXTURES / "dynamo" / "weka-two-plays.jsonl",
           *sorted((FIXTURES / "kv_cache_tester_traces").glob("trace_*.json")),
           *sorted((FIXTURES / "mooncake").glob("*.jsonl"))]
_CASES = [pytest.param(p, id=name) for name, p in _INPUTS]
if (FIXTURES / "kv_cache_tester_traces").is_dir():
    _CASES += [pytest.param(p, id=f"shared/{p.parent.name}/{p.name}") for p in _SHARED]
else:
    _CASES.append(pytest.param(None, id="shared", marks=pytest.mark.skip(reason=f"{FIXTURES} is missing")))

_SHAPES = [("v1", "g2"), ("v1", "g3c"), ("v2", "g2")]


def _triples(edges) -> list[tuple[str, str, str]]:
    return [(e.src, e.dst, e.relation) for e in edges]


@pytest.mark.parametrize("path", _CASES)
def test_readback_edges_equal_derived(path, tmp_path):
    trace = readers.read_trace([str(path)])
    shapes = [("plain", "g2")] if trace.mooncake_rows or all(r.chain_id is None for r in trace.requests) \
        else _SHAPES
    checked = 0
    for fmt, rules in shapes:
        out = tmp_path / f"{fmt}-{rules}.jsonl"
        res = write_mooncake(trace, str(out), agentic_rows=fmt != "plain", fmt="v1" if fmt == "plain" else fmt,
                             rules=rules)
        want = _triples(res.derived.edges) if fmt != "plain" else []
        # convert's reading (the flows of a Mooncake input)
        back = readers.read_trace([str(out)])
        assert _triples(agentic_v1.dependency_edges(back).edges) == want, (fmt, rules)
        # replay's reading
        kind = "mooncake" if fmt == "plain" else "agentic_mooncake"
        assert _triples(load_input([str(out)], kind).edges) == want, (fmt, rules)
        checked += len(want)
    if "trace_0277" in str(path):  # the sub-agent joins are joins, not spawns (issue 24's case)
        assert ("trace_0277/agent_001/3", "trace_0277/4", "join") in want
        assert checked > 100


def test_v1_relation_by_position():
    """A v1 `wait_for` names no relation: the same session's call is a sequence, a session's first
    row waiting on another session a spawn, a later row a join."""
    from trace_pipe.pipeline.mooncake import Row

    rows = [Row(1, 1, (1,), request_id="p1", session_id="p"),
            Row(1, 1, (1,), request_id="c1", session_id="c", wait_for=("p1",)),
            Row(1, 1, (1,), request_id="c2", session_id="c", wait_for=("c1", "c1")),
            Row(1, 1, (1,), request_id="p2", session_id="p", wait_for=("p1", "c2"))]
    assert _triples(row_edges(rows)) == [("p1", "c1", "spawn"), ("c1", "c2", "sequence"),
                                         ("p1", "p2", "sequence"), ("c2", "p2", "join")]
    plain = [Row(1, 1, (1,), session_id="s"), Row(1, 1, (1,), session_id="t"), Row(1, 1, (1,), session_id="s")]
    assert _triples(row_edges(plain)) == [("0", "2", "sequence")]
    assert row_edges(plain, agentic=True) == []


def test_readback_of_generated_nesting(tmp_path):
    """A three-deep chain of sub-agents, each joined by its parent's next call."""
    recs = []
    for k in range(3):
        parent = f"c{k - 1}" if k else None
        recs.append(req(f"a{k}", f"c{k}", parent, 10 * k, 10 * k + 5, [k + 1]))
        recs.append(req(f"b{k}", f"c{k}", parent, 100 - 10 * k, 105 - 10 * k, [k + 1, 7]))
    path = write_jsonl(tmp_path / "t.jsonl", recs)
    trace = readers.read_trace([str(path)])
    res = write_mooncake(trace, str(tmp_path / "v2.jsonl"), agentic_rows=True, fmt="v2")
    got = _triples(res.derived.edges)
    assert sorted(got) == [("a0", "a1", "spawn"), ("a0", "b0", "sequence"), ("a1", "a2", "spawn"),
                           ("a1", "b1", "sequence"), ("a2", "b2", "sequence"), ("b1", "b0", "join"),
                           ("b2", "b1", "join")]
    assert _triples(load_input([str(tmp_path / "v2.jsonl")], "agentic_mooncake").edges) == got
