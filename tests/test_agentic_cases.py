"""dynamo-formats.md §6.2 (A1–A9, V1–V8) and §6.3 (M1–M4, L1–L8, C1, D1) with exact expected rows."""

from __future__ import annotations

import gzip
import io

import blake3
import orjson
import pytest

from dynamo_records import assert_rows, read_lines, req, tool, write_jsonl
from trace_pipe.cli.convert_cmd import run_convert
from trace_pipe.pipeline.errors import TraceError

# Generations of the A cases. §6.2 restates Dynamo's G2, G3a, G3b and G3c unit tests; "G3c" here is
# G3b records converted with --g3c-rules (its rows add `request_kind`, §4.6). Dynamo's G1 converter
# wrote plain rows only (§0), so no A case names G1: trace-pipe converts G1 agentically with the
# G2-G3b algorithm, and the one difference §4.3 gives for G1 rows is the chain id
# (`workflow_id:program_id` unless program_id is / starts with `workflow_id:`).
RUN = "run-1"  # the workflow_id / G2 session_id dynamo_records.context writes
GENS = ["G1", "G2", "G3a", "G3b", "G3c"]


def run(tmp_path, records, *, agentic=True, fmt="v1", g3c=False, envelope=False, name="in.jsonl"):
    """(output lines as written, stdout)."""
    src = write_jsonl(tmp_path / name, records, envelope=envelope)
    out_path = tmp_path / "out.jsonl"
    out, err = io.StringIO(), io.StringIO()
    run_convert([str(src)], mooncake=str(out_path), agentic_rows=agentic, fmt=fmt, g3c_rules=g3c, out=out, err=err)
    return read_lines(out_path), out.getvalue()


def convert(tmp_path, records, **kw):
    lines, out = run(tmp_path, records, **kw)
    return [orjson.loads(x) for x in lines], out


def by_id(rows):
    return {r["request_id"]: r for r in rows}


def case(gen, reqs, tools=()):
    """REQ/TOOL tuples of §6 as records of `gen`; and whether G3c rules apply."""
    rgen = "G3b" if gen == "G3c" else gen
    return [req(*a, gen=rgen) for a in reqs] + [tool(*t, gen=rgen) for t in tools], gen == "G3c"


def rows_in(gen, rows, kinds):
    """§6.2's rows (as G2-G3b write them) as `gen` writes them: G1 chain ids scoped by the workflow
    (§4.3); G3c rows carry `request_kind` (`kinds[chain]`) between `delay` and `wait_for` (§4.4)."""
    out = []
    for r in rows:
        items = list(r.items())
        if gen == "G1":
            items[1] = ("session_id", f"{RUN}:{r['session_id']}")
        if gen == "G3c":
            at = next(i for i, (k, _) in enumerate(items) if k in ("wait_for", "branches", "prefix_reset"))
            items.insert(at, ("request_kind", kinds[r["session_id"]]))
        out.append(dict(items))
    return out


ROOT_ONLY = {"root": "foreground"}
ROOT_AND_CHILD = {"root": "foreground", "child": "agent"}  # §4.6: a chain with a parent is "agent"

A1 = [("r1", "root", None, 1000, 1100, [11]), ("r2", "root", None, 1300, 1400, [11, 22])]
A1_TOOLS = [("root", "call-1", "ls", 1150, 1250)]
# §4.4.6, copied verbatim
A1_ROWS = [orjson.loads(x) for x in (
    '{"request_id":"r1","session_id":"root","input_length":2,"output_length":5,"hash_ids":[0],"timestamp":0.0,"prefix_reset":true}',
    '{"request_id":"r2","session_id":"root","input_length":4,"output_length":5,"hash_ids":[0,1],"timestamp":300.0,"delay":100.0,"wait_for":["r1"],"prefix_reset":false,"tool_wait_ms":100.0,"tool_events":[{"tool_call_id":"call-1","tool_class":"ls","started_at_unix_ms":1150,"ended_at_unix_ms":1250,"duration_ms":100.0,"status":"succeeded"}]}',
)]


@pytest.mark.parametrize("gen", GENS)
def test_a1_sequential_waits_and_tool_wait(tmp_path, gen):
    recs, g3c = case(gen, A1, A1_TOOLS)
    lines, out = run(tmp_path, recs, g3c=g3c)
    assert_rows(lines, rows_in(gen, A1_ROWS, ROOT_ONLY))
    head = [f"Wrote 2 Agentic Mooncake rows to {tmp_path / 'out.jsonl'}", "Trace block size: 2"]
    if gen == "G3c":  # (Dynamo's G3c binary dropped the tool summary: not asserted either way)
        assert out.splitlines()[:2] == head
        return
    word = "sessions" if gen == "G3b" else "trajectories"
    assert out.splitlines() == [*head, "", f"Tool events: 1 spans across 1 {word}", "  Status:    succeeded=1",
                                "  Class:     ls=1", "  Wall-time: 0.10s"]


A2 = [("r1", "root", None, 1000, 1100, [11]), ("r2", "root", None, 1400, 1500, [11, 22])]
A2_TOOLS = [("root", "call-1", "read", 1100, 1300), ("root", "call-2", "read", 1150, 1250),
            ("root", "call-3", "find", 1200, 1250)]
# §6.2 A2: tool_wait_ms 200.0 (union of [1100,1300], [1150,1250], [1200,1250]; naive sum 350), the
# three spans unclipped in (start, end) order, delay = gap 300 - 200
A2_ROWS = [
    {"request_id": "r1", "session_id": "root", "input_length": 2, "output_length": 5, "hash_ids": [0],
     "timestamp": 0.0, "prefix_reset": True},
    {"request_id": "r2", "session_id": "root", "input_length": 4, "output_length": 5, "hash_ids": [0, 1],
     "timestamp": 400.0, "delay": 100.0, "wait_for": ["r1"], "prefix_reset": False, "tool_wait_ms": 200.0,
     "tool_events": [
         {"tool_call_id": "call-1", "tool_class": "read", "started_at_unix_ms": 1100, "ended_at_unix_ms": 1300,
          "duration_ms": 200.0, "status": "succeeded"},
         {"tool_call_id": "call-2", "tool_class": "read", "started_at_unix_ms": 1150, "ended_at_unix_ms": 1250,
          "duration_ms": 100.0, "status": "succeeded"},
         {"tool_call_id": "call-3", "tool_class": "find", "started_at_unix_ms": 1200, "ended_at_unix_ms": 1250,
          "duration_ms": 50.0, "status": "succeeded"}]},
]


@pytest.mark.parametrize("gen", GENS)
def test_a2_parallel_tools_union(tmp_path, gen):
    recs, g3c = case(gen, A2, A2_TOOLS)
    assert_rows(run(tmp_path, recs, g3c=g3c)[0], rows_in(gen, A2_ROWS, ROOT_ONLY))


A3 = [("parent-1", "root", None, 1000, 1100, [11]), ("child-1", "child", "root", 1200, 1300, [33]),
      ("parent-2", "root", None, 1500, 1600, [11, 22])]
# §4.4.6, copied verbatim
A3_ROWS = [orjson.loads(x) for x in (
    '{"request_id":"parent-1","session_id":"root","input_length":2,"output_length":5,"hash_ids":[0],"timestamp":0.0,"branches":["child-1"],"prefix_reset":true}',
    '{"request_id":"child-1","session_id":"child","input_length":2,"output_length":5,"hash_ids":[1],"timestamp":200.0,"delay":100.0,"wait_for":["parent-1"],"prefix_reset":true}',
    '{"request_id":"parent-2","session_id":"root","input_length":4,"output_length":5,"hash_ids":[0,2],"timestamp":500.0,"delay":200.0,"wait_for":["parent-1","child-1"],"prefix_reset":false}',
)]


@pytest.mark.parametrize("gen", GENS)
def test_a3_subagent_launch_and_join(tmp_path, gen):
    recs, g3c = case(gen, A3)
    assert_rows(run(tmp_path, recs, g3c=g3c)[0], rows_in(gen, A3_ROWS, ROOT_AND_CHILD))


@pytest.mark.parametrize("gen,err", [
    ("G2", "trajectory child has conflicting parent_trajectory_id values: root-a and root-b"),
    ("G3a", "trajectory child has conflicting parent_trajectory_id values: root-a and root-b"),
    ("G3b", "session child has conflicting parent_session_id values: root-a and root-b"),
    ("G3c", "session child has conflicting parent_session_id values: root-a and root-b"),
    # no Dynamo text for G1 (§6.2 has none): the message names G1's own field (the record has no
    # parent_trajectory_id), the parents as recorded or as scoped chain ids (§4.3)
    pytest.param("G1", r"field `agent_context\.parent_program_id`: .*conflicting parent_program_id values: "
                       r"(run-1:)?root-a and (run-1:)?root-b"),
])
def test_a4_conflicting_parents(tmp_path, gen, err):
    recs, g3c = case(gen, [("child-1", "child", "root-a", 1000, 1100, [11]), ("child-2", "child", "root-b", 1200, 1300, [22])])
    with pytest.raises(TraceError, match=err) as e:
        convert(tmp_path, recs, g3c=g3c)
    assert "in.jsonl:2" in str(e.value)


A5 = [("parent-1", "root", None, 1000, 1100, [11]), ("child-slow", "child", "root", 1200, 1900, [33]),
      ("child-fast", "child", "root", 1300, 1400, [44]), ("parent-2", "root", None, 1500, 1600, [11, 22]),
      ("parent-3", "root", None, 2000, 2100, [11, 22, 33])]
# §6.2 A5's derived full result; delays per §4.4.4 (child-fast starts before its predecessor ends:
# gap 0, delay 0.0); one child chain joins parent-3, so its wait_for order is fixed (§4.4.3)
A5_ROWS = [
    {"request_id": "parent-1", "session_id": "root", "input_length": 2, "output_length": 5, "hash_ids": [0],
     "timestamp": 0.0, "branches": ["child-slow"], "prefix_reset": True},
    {"request_id": "child-slow", "session_id": "child", "input_length": 2, "output_length": 5, "hash_ids": [1],
     "timestamp": 200.0, "delay": 100.0, "wait_for": ["parent-1"], "prefix_reset": True},
    {"request_id": "child-fast", "session_id": "child", "input_length": 2, "output_length": 5, "hash_ids": [2],
     "timestamp": 300.0, "delay": 0.0, "wait_for": ["child-slow"], "prefix_reset": False},
    {"request_id": "parent-2", "session_id": "root", "input_length": 4, "output_length": 5, "hash_ids": [0, 3],
     "timestamp": 500.0, "delay": 400.0, "wait_for": ["parent-1"], "prefix_reset": False},
    {"request_id": "parent-3", "session_id": "root", "input_length": 6, "output_length": 5, "hash_ids": [0, 3, 1],
     "timestamp": 1000.0, "delay": 100.0, "wait_for": ["parent-2", "child-slow"], "prefix_reset": False},
]


@pytest.mark.parametrize("gen", GENS)
def test_a5_join_on_last_finishing_child(tmp_path, gen):
    recs, g3c = case(gen, A5)
    assert_rows(run(tmp_path, recs, g3c=g3c)[0], rows_in(gen, A5_ROWS, ROOT_AND_CHILD))


def test_a6_context_free_rejected(tmp_path):
    for gen in ("G3a", "G3b"):
        with pytest.raises(TraceError, match="without agent_context cannot be converted with --agentic"):
            convert(tmp_path, [req("r1", None, None, 1000, 1100, [11], gen=gen)])
    with pytest.raises(TraceError, match="--agentic requires request traces with agent_context"):
        convert(tmp_path, [req("r1", None, None, 1000, 1100, [11], gen="G3b")], g3c=True)
    # G2 accepts it: a singleton chain named by the request id (§4.1, §4.4)
    lines, _ = run(tmp_path, [req("r1", None, None, 1000, 1100, [11], gen="G2")])
    assert_rows(lines, [{"request_id": "r1", "session_id": "r1", "input_length": 2, "output_length": 5,
                         "hash_ids": [0], "timestamp": 0.0, "prefix_reset": True}])


def test_g1_chain_identity_is_scoped_by_workflow(tmp_path):
    """§4.3's G1 session_id: program_id when it equals workflow_id or starts with `workflow_id:`,
    else `workflow_id:program_id` -- so equal program ids of two workflows are two chains."""
    def g1(rid, workflow, program, parent, start, end, hashes):
        r = req(rid, program, parent, start, end, hashes, gen="G1")
        r["agent_context"]["workflow_id"] = workflow
        return r

    lines, _ = run(tmp_path, [g1("x1", "run-1", "run-1", None, 1000, 1100, [11]),
                              g1("x2", "run-1", "run-1:sub", "run-1", 1200, 1300, [33]),
                              g1("y1", "run-2", "root", None, 1050, 1150, [11]),
                              g1("z1", "run-3", "root", None, 1400, 1500, [22])])
    assert_rows(lines, [
        {"request_id": "x1", "session_id": "run-1", "input_length": 2, "output_length": 5, "hash_ids": [0],
         "timestamp": 0.0, "branches": ["x2"], "prefix_reset": True},
        {"request_id": "y1", "session_id": "run-2:root", "input_length": 2, "output_length": 5, "hash_ids": [0],
         "timestamp": 50.0, "prefix_reset": True},
        {"request_id": "x2", "session_id": "run-1:sub", "input_length": 2, "output_length": 5, "hash_ids": [1],
         "timestamp": 200.0, "delay": 100.0, "wait_for": ["x1"], "prefix_reset": True},
        {"request_id": "z1", "session_id": "run-3:root", "input_length": 2, "output_length": 5, "hash_ids": [2],
         "timestamp": 400.0, "prefix_reset": True},  # not a successor of y1: another workflow
    ])


def claude(source, consumer, child, mode):
    return {"claude": {"source_request_id": source, "consumer_request_id": consumer, "child_session_id": child,
                       "execution_mode": mode}}


A7 = [req("parent-1", "root", None, 1000, 1100, [11]), req("child-1", "child", "root", 1200, 1700, [33]),
      req("parent-2", "root", None, 1300, 1400, [11, 22]), req("parent-3", "root", None, 1850, 1950, [11, 22, 44]),
      tool("root", "agent-call", "Agent", 1100, 1800, **claude("parent-1", "parent-3", "child", "background"))]
# §6.2 A7; parent-2's gap (200) has no attributed tool: the Agent tool names a consumer (parent-3),
# and G3c attaches such a tool only to its consumer (§4.6)
A7_ROWS = [
    {"request_id": "parent-1", "session_id": "root", "input_length": 2, "output_length": 5, "hash_ids": [0],
     "timestamp": 0.0, "request_kind": "foreground", "branches": ["child-1"], "prefix_reset": True},
    {"request_id": "child-1", "session_id": "child", "input_length": 2, "output_length": 5, "hash_ids": [1],
     "timestamp": 200.0, "delay": 100.0, "request_kind": "background_agent", "wait_for": ["parent-1"],
     "prefix_reset": True},
    {"request_id": "parent-2", "session_id": "root", "input_length": 4, "output_length": 5, "hash_ids": [0, 2],
     "timestamp": 300.0, "delay": 200.0, "request_kind": "foreground", "wait_for": ["parent-1"],
     "prefix_reset": False},
    {"request_id": "parent-3", "session_id": "root", "input_length": 6, "output_length": 5, "hash_ids": [0, 2, 3],
     "timestamp": 850.0, "delay": 50.0, "request_kind": "foreground", "wait_for": ["parent-2", "child-1"],
     "prefix_reset": False, "tool_wait_ms": 100.0,
     "tool_events": [{"tool_call_id": "agent-call", "tool_class": "Agent", "started_at_unix_ms": 1100,
                      "ended_at_unix_ms": 1800, "duration_ms": 700.0, "status": "succeeded"}]},
]


def test_a7_explicit_background_agent(tmp_path):
    assert_rows(run(tmp_path, A7, g3c=True)[0], A7_ROWS)


A8 = [req("parent-1", "root", None, 1000, 1100, [11]), req("child-1", "child", "root", 1200, 1300, [33]),
      req("parent-2", "root", None, 1400, 1500, [11, 22])]


@pytest.mark.parametrize("mode", ["background", "blocking"])
def test_a8_explicit_cycle(tmp_path, mode):
    recs = A8 + [tool("root", "agent-call", "Agent", 1100, 1200, **claude("parent-2", "parent-1", "child", mode))]
    with pytest.raises(TraceError, match=r"agentic request dependencies contain a cycle \(involving .*; first at "
                                          r".*in\.jsonl:\d+\)"):
        convert(tmp_path, recs, g3c=True)
    if mode == "blocking":
        with pytest.raises(TraceError, match="agentic request dependencies contain a cycle"):
            convert(tmp_path, recs, fmt="v2")
        return
    # Dynamo 1.6's exporter never joins a background agent, so v2 has no cycle: the child waits
    # for its (later) source call's dispatch, clamped to no delay
    assert_rows(v2_lines(tmp_path, recs), [
        v2_row("parent-1", "root", [0], 0.0),
        v2_row("child-1", "child", [1], 200.0, ("parent-2", "dispatch", 0.0, "spawn")),
        v2_row("parent-2", "root", [0, 2], 400.0, ("parent-1", "completion", 300.0, "sequence")),
    ])


A9 = [req("parent-1", "root", None, 1000, 1100, [11]), req("parent-2", "root", None, 1300, 1400, [11, 22]),
      tool("root", "agent-call", "Agent", 1100, 1250, **claude("parent-1", "parent-2", "missing-child", "background"))]
# §6.2 A9: the named child chain is absent, so the Agent tool is an ordinary tool of parent-2's gap
A9_ROWS = [
    {"request_id": "parent-1", "session_id": "root", "input_length": 2, "output_length": 5, "hash_ids": [0],
     "timestamp": 0.0, "request_kind": "foreground", "prefix_reset": True},
    {"request_id": "parent-2", "session_id": "root", "input_length": 4, "output_length": 5, "hash_ids": [0, 1],
     "timestamp": 300.0, "delay": 50.0, "request_kind": "foreground", "wait_for": ["parent-1"],
     "prefix_reset": False, "tool_wait_ms": 150.0,
     "tool_events": [{"tool_call_id": "agent-call", "tool_class": "Agent", "started_at_unix_ms": 1100,
                      "ended_at_unix_ms": 1250, "duration_ms": 150.0, "status": "succeeded"}]},
]


def test_a9_missing_child_trace(tmp_path):
    assert_rows(run(tmp_path, A9, g3c=True)[0], A9_ROWS)


def test_g3c_spawn_by_start(tmp_path):
    # a still-running parent call can spawn under G3c, never under G2-G3b
    recs = [req("p1", "root", None, 1000, 1500, [11]), req("c1", "child", "root", 1200, 1300, [33])]
    assert "wait_for" not in by_id(convert(tmp_path, recs)[0])["c1"]
    assert by_id(convert(tmp_path, recs, g3c=True)[0])["c1"]["wait_for"] == ["p1"]


# -- v2 -------------------------------------------------------------------------------------

def deps(row):
    return [(d["request_id"], d["trigger"], d["relation"], d["delay_ms"]) for d in row.get("dependencies", [])]


def v2_lines(tmp_path, recs):
    """The row lines of a v2 output, after checking its header line whole (§4.7): the digest is
    BLAKE3 of the JSON array of the rows as written."""
    lines, _ = run(tmp_path, recs, fmt="v2")
    digest = blake3.blake3(b"[" + b",".join(lines[1:]) + b"]").hexdigest()
    assert_rows(lines[:1], [{"schema": "dynamo.agentic_mooncake", "version": 2, "block_size": 2,
                             "hash_id_scope": "local",
                             "source": {"format": "dynamo_request_trace", "digest": digest}}])
    return lines[1:]


def v2(tmp_path, recs):
    return by_id(orjson.loads(x) for x in v2_lines(tmp_path, recs))


def v2_row(rid, chain, hash_ids, not_before, *deps_, play="root"):
    """A v2 row (§4.7 key order); deps_ = (request_id, trigger, delay_ms, relation) in Dynamo's
    (request_id, trigger, relation, delay_ms) order."""
    row = {"request_id": rid, "play_id": play, "session_id": chain, "model": "test-model",
           "input_length": 2 * len(hash_ids), "output_length": 5, "hash_ids": hash_ids, "not_before_ms": not_before}
    if deps_:
        row["dependencies"] = [{"request_id": d, "trigger": t, "delay_ms": ms, "relation": rel}
                               for d, t, ms, rel in deps_]
    return row


def test_v1_sequence_folds_tool_time(tmp_path):
    recs, _ = case("G3b", A1, A1_TOOLS)
    assert_rows(v2_lines(tmp_path, recs), [
        v2_row("r1", "root", [0], 0.0),
        v2_row("r2", "root", [0, 1], 300.0, ("r1", "completion", 200.0, "sequence")),  # tool time in the delay
    ])
    # v2 is written by Dynamo's G3c converter, which prints no tool summary (§4.1)
    _, out = run(tmp_path, recs, fmt="v2")
    assert out.splitlines() == [f"Wrote 2 Agentic Mooncake rows to {tmp_path / 'out.jsonl'}", "Trace block size: 2"]


def test_v2_union_folded(tmp_path):
    recs, _ = case("G3b", A2, A2_TOOLS)  # A2's three tools: no tool_wait_ms, the whole gap is the delay
    assert_rows(v2_lines(tmp_path, recs), [
        v2_row("r1", "root", [0], 0.0),
        v2_row("r2", "root", [0, 1], 400.0, ("r1", "completion", 300.0, "sequence")),
    ])


def test_v3_spawn_and_join(tmp_path):
    recs, _ = case("G3b", A3)
    assert_rows(v2_lines(tmp_path, recs), [
        v2_row("parent-1", "root", [0], 0.0),
        v2_row("child-1", "child", [1], 200.0, ("parent-1", "completion", 100.0, "spawn")),
        v2_row("parent-2", "root", [0, 2], 500.0, ("child-1", "completion", 200.0, "join"),
               ("parent-1", "completion", 400.0, "sequence")),
    ])


def test_v4_background_has_no_join(tmp_path):
    assert_rows(v2_lines(tmp_path, A7), [
        v2_row("parent-1", "root", [0], 0.0),
        v2_row("child-1", "child", [1], 200.0, ("parent-1", "completion", 100.0, "spawn")),
        v2_row("parent-2", "root", [0, 2], 300.0, ("parent-1", "completion", 200.0, "sequence")),
        v2_row("parent-3", "root", [0, 2, 3], 850.0, ("parent-2", "completion", 450.0, "sequence")),  # no join
    ])


def test_v6_missing_child(tmp_path):
    assert_rows(v2_lines(tmp_path, A9), [
        v2_row("parent-1", "root", [0], 0.0),
        v2_row("parent-2", "root", [0, 1], 300.0, ("parent-1", "completion", 200.0, "sequence")),
    ])


def test_v7_conflicting_parents(tmp_path):
    with pytest.raises(TraceError) as e:
        convert(tmp_path, [req("child-1", "child", "root-a", 1000, 1100, [11]),
                           req("child-2", "child", "root-b", 1200, 1300, [22])], fmt="v2")
    assert str(e.value) == (f"{tmp_path / 'in.jsonl'}:2: field `agent_context.parent_session_id`: session child has "
                            f"conflicting parent_session_id values: root-a and root-b (first at {tmp_path / 'in.jsonl'}:1)")


@pytest.mark.parametrize("links, loop", [({"a": "a"}, "a -> a"), ({"a": "b", "b": "a"}, "a -> b -> a")])
def test_v2_parent_cycle_names_the_record(tmp_path, links, loop):
    recs = [req(f"{c}-1", c, p, 1000 + 100 * k, 1050 + 100 * k, [k]) for k, (c, p) in enumerate(sorted(links.items()))]
    with pytest.raises(TraceError) as e:
        convert(tmp_path, recs, fmt="v2")
    assert str(e.value) == (f"{tmp_path / 'in.jsonl'}:1: field `agent_context.parent_session_id`: agent session "
                            f"parent cycle includes a: {loop}")


def test_v8_join_relation(tmp_path):
    recs, _ = case("G3b", A5)
    assert_rows(v2_lines(tmp_path, recs), [
        v2_row("parent-1", "root", [0], 0.0),
        v2_row("child-slow", "child", [1], 200.0, ("parent-1", "completion", 100.0, "spawn")),
        v2_row("child-fast", "child", [2], 300.0, ("child-slow", "completion", 0.0, "sequence")),
        v2_row("parent-2", "root", [0, 3], 500.0, ("parent-1", "completion", 400.0, "sequence")),
        v2_row("parent-3", "root", [0, 3, 1], 1000.0, ("child-slow", "completion", 100.0, "join"),
               ("parent-2", "completion", 400.0, "sequence")),
    ])


def test_v2_dispatch_trigger_and_private_partial_block(tmp_path):
    recs = [req("p1", "root", None, 1000, 1500, [11]), req("c1", "child", "root", 1200, 1300, [33, 44])]
    recs[1]["request"]["replay"]["input_length"] = 3  # ends mid-block: a private id for the tail
    r = v2(tmp_path, recs)
    assert deps(r["c1"]) == [("p1", "dispatch", "spawn", 200.0)]
    assert r["c1"]["hash_ids"][0] == 1 and r["c1"]["hash_ids"][1] > 2**32  # private, not a compact id
    again = v2(tmp_path, recs)
    assert again == r  # deterministic


def test_v2_requires_model(tmp_path):
    with pytest.raises(TraceError, match="request r1 is missing model"):
        convert(tmp_path, [req("r1", "root", None, 1000, 1100, [11], model=None)], fmt="v2")


# -- plain rows and loader ----------------------------------------------------------------------

def plain(input_length, hash_ids, timestamp, output_length=5):
    """A plain Mooncake row (§4.3 key order; no request_id, session_id or delay)."""
    return {"input_length": input_length, "output_length": output_length, "hash_ids": hash_ids, "timestamp": timestamp}


def test_m1_absolute_timestamps(tmp_path):
    lines, _ = run(tmp_path, [req("req-a", None, None, 1000, 1100, [11, 22]),
                              req("req-b", None, None, 1500, 1600, [11, 33])], agentic=False)
    # §6.3 M1, copied verbatim
    assert_rows(lines, [orjson.loads('{"input_length":4,"output_length":5,"hash_ids":[0,1],"timestamp":0.0}'),
                        orjson.loads('{"input_length":4,"output_length":5,"hash_ids":[0,2],"timestamp":500.0}')])


@pytest.mark.parametrize("chain", [None, "s"])  # same-chain calls stay parallel in plain rows (§4.3)
def test_m2_parallel_starts(tmp_path, chain):
    lines, _ = run(tmp_path, [req("req-a", chain, None, 1000, 1500, [11]), req("req-b", chain, None, 1000, 1700, [22])],
                   agentic=False)
    assert_rows(lines, [plain(2, [0], 0.0), plain(2, [1], 0.0)])


def test_m3_offsets_and_parallel(tmp_path):
    lines, _ = run(tmp_path, [req("req-a", None, None, 1000, 1100, [11, 22]), req("req-b", None, None, 1000, 1700, [22]),
                              req("req-c", None, None, 1500, 1600, [11, 33])], agentic=False)
    assert_rows(lines, [plain(4, [0, 1], 0.0), plain(2, [1], 0.0), plain(4, [0, 2], 500.0)])


def test_m4_request_times_without_total(tmp_path):
    from trace_pipe.pipeline.readers import read_trace
    rec = req("r", None, None, 1000, 1250, [11])
    del rec["request"]["total_time_ms"]
    trace = read_trace([str(write_jsonl(tmp_path / "m4.jsonl", [rec]))])
    assert (trace.requests[0].start_ms, trace.requests[0].end_ms) == (1000, 1250)


L1 = {"schema": "dynamo.request.trace.v1", "event_type": "request_end", "event_time_unix_ms": 1100,
      "request": {"request_id": "req-1", "request_received_ms": 1000, "output_tokens": 4,
                  "replay": {"trace_block_size": 2, "input_length": 3, "input_sequence_hashes": [11, 22]}}}


def load(tmp_path, records, envelope=False, gz=False):
    from trace_pipe.pipeline.readers import read_trace
    p = write_jsonl(tmp_path / "t.jsonl", records, envelope=envelope)
    if gz:
        data = p.read_bytes()
        p = tmp_path / "t.jsonl.gz"
        p.write_bytes(gzip.compress(data[: len(data) // 2]) + gzip.compress(data[len(data) // 2:]))
    return read_trace([str(p)])


def test_l1_l2_context_free_and_wrapped(tmp_path):
    for env in (False, True):
        t = load(tmp_path, [L1], envelope=env)
        (r,) = t.requests
        assert (r.request_id, r.chain_id, r.start_ms, r.end_ms, list(r.hashes)) == ("req-1", None, 1000, 1100, [11, 22])
        # and its plain row: a trailing partial block has its own id (§4.3)
        lines, _ = run(tmp_path, [L1], agentic=False, envelope=env)
        assert_rows(lines, [plain(3, [0, 1], 0.0, output_length=4)])


def test_l3_payload_rows_skipped(tmp_path):
    payload = {"schema": "dynamo.request.trace.v1", "event_type": "request_payload", "event_time_unix_ms": 1,
               "payload": {"request_id": "req-1", "request": {"messages": ["x" * 100000]}, "payload_complete": True}}
    t = load(tmp_path, [payload, {"timestamp": 3, "event": payload}, L1])
    assert [r.request_id for r in t.requests] == ["req-1"]
    assert t.skipped["request_payload rows"] == 2


def test_l4_unknown_schema(tmp_path):
    with pytest.raises(TraceError, match=r"t.jsonl:1: field `schema`: failed to parse .*unknown variant `dynamo.request.trace.v2`"):
        load(tmp_path, [dict(L1, schema="dynamo.request.trace.v2")])


def test_l5_missing_arrival(tmp_path):
    bad = orjson.loads(orjson.dumps(L1))
    del bad["request"]["request_received_ms"]
    with pytest.raises(TraceError, match="t.jsonl:1: field `request.request_received_ms`: request trace is missing request_received_ms"):
        load(tmp_path, [bad])
    del bad["request"]["output_tokens"]
    bad["request"]["request_received_ms"] = 1000
    with pytest.raises(TraceError, match="missing output_tokens"):
        load(tmp_path, [bad])


def test_l6_duplicate_id(tmp_path):
    row = orjson.loads(orjson.dumps(L1))
    row["request"]["replay"].update(input_length=2, input_sequence_hashes=[11])
    with pytest.raises(TraceError, match=r"t.jsonl:2: .*duplicate request_id req-1 \(first at .*t.jsonl:1\)"):
        load(tmp_path, [row, row])


def test_l7_extra_hashes(tmp_path):
    row = orjson.loads(orjson.dumps(L1))
    row["request"]["replay"].update(input_length=2, input_sequence_hashes=[11, 22])
    with pytest.raises(TraceError, match="requires exactly 1 replay hashes, got 2"):
        load(tmp_path, [row])
    # G2 checks capacity only
    g2 = req("r", "root", None, 1000, 1100, [11, 22], gen="G2")
    g2["request"]["replay"]["input_length"] = 2
    assert len(load(tmp_path, [g2]).requests) == 1
    g2["request"]["replay"]["input_length"] = 5
    with pytest.raises(TraceError, match="input_length 5 exceeds replay hash capacity 4"):
        load(tmp_path, [g2])


@pytest.mark.parametrize("gen,ctx", [
    ("G3a", {"session_type_id": "ms_agent", "session_id": "run-1", "trajectory_id": "root"}),
    ("G3c", {"session_id": "root"}),
])
def test_l8_agentic_rows_with_tools(tmp_path, gen, ctx):
    link = claude("req-1", "req-2", "child", "background") if gen == "G3c" else {}
    t = {"schema": "dynamo.request.trace.v1", "event_type": "tool_end", "event_time_unix_ms": 1200,
         "agent_context": ctx, "tool": {"tool_call_id": "tool-1", "tool_class": "search", "started_at_unix_ms": 1110,
                                        "ended_at_unix_ms": 1200, "status": "succeeded", "duration_ms": 90, **link}}
    trace = load(tmp_path, [dict(L1, agent_context=ctx), t])
    (r,) = trace.requests
    assert (r.request_id, r.chain_id, r.start_ms, r.end_ms) == ("req-1", "root", 1000, 1100)
    (tt,) = trace.tools
    assert (tt.event_type, tt.chain_id, tt.tool_call_id, tt.tool_class, tt.started_at_ms, tt.ended_at_ms,
            tt.duration_ms, tt.status) == ("tool_end", "root", "tool-1", "search", 1110, 1200, 90, "succeeded")
    if gen == "G3c":
        assert (tt.claude.source_request_id, tt.claude.consumer_request_id, tt.claude.child_session_id,
                tt.claude.execution_mode) == ("req-1", "req-2", "child", "background")
    else:
        assert tt.claude is None
    # agentic-compatible: the row (the tool ends after the only request, so no row takes it)
    lines, out = run(tmp_path, [dict(L1, agent_context=ctx), t])
    assert_rows(lines, [{"request_id": "req-1", "session_id": "root", "input_length": 3, "output_length": 4,
                         "hash_ids": [0, 1], "timestamp": 0.0, "prefix_reset": True}])
    assert out.splitlines()[3:5] == [f"Tool events: 1 spans across 1 {'sessions' if gen == 'G3c' else 'trajectories'}",
                                     "  Status:    succeeded=1"]


def test_c1_atomic_output(tmp_path):
    bad = req("r2", "root", None, 1200, 1300, [11])
    del bad["request"]["output_tokens"]
    out = tmp_path / "out.jsonl"
    out.write_text("previous content\n")
    with pytest.raises(TraceError):
        convert(tmp_path, [req("r1", "root", None, 1000, 1100, [11]), bad])
    assert out.read_text() == "previous content\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out.jsonl"]


def test_c1_outputs_land_together(tmp_path):
    # the Mooncake rows are fine, the Perfetto trace is not (a time it cannot draw): neither file
    # appears, an older Mooncake file stays, and no "Wrote" line claims otherwise
    bad = req("r2", "root", None, 1200, 1300, [11])
    bad["request"]["total_time_ms"] = 1e300
    inp = tmp_path / "in.jsonl"
    write_jsonl(inp, [req("r1", "root", None, 1000, 1100, [11]), bad])
    (tmp_path / "rows.jsonl").write_text("previous content\n")
    out = io.StringIO()
    with pytest.raises(TraceError, match="Perfetto"):
        run_convert([str(inp)], mooncake=str(tmp_path / "rows.jsonl"), agentic_rows=True,
                    perfetto=str(tmp_path / "t.pftrace"), out=out, err=io.StringIO())
    assert (tmp_path / "rows.jsonl").read_text() == "previous content\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "rows.jsonl"]
    assert out.getvalue() == ""
    run_convert([str(inp)], mooncake=str(tmp_path / "rows.jsonl"), agentic_rows=True,
                out=out, err=io.StringIO())  # the rows alone convert
    assert out.getvalue().startswith("Wrote 2 Agentic Mooncake rows to ")


def test_c1_outputs_to_pipes_and_devices_are_written_in_place(tmp_path):
    import os
    import stat
    import threading

    from trace_pipe.pipeline.io import atomic_output

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(open(fifo, "rb").read()))
    reader.start()
    with atomic_output(fifo) as f:
        f.write(b"row\n")
    reader.join(5)
    assert got == [b"row\n"] and stat.S_ISFIFO(os.stat(fifo).st_mode)  # not renamed over
    with atomic_output("/dev/null") as f:
        f.write(b"x")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    with pytest.raises(IsADirectoryError, match="is a directory"):
        with atomic_output(tmp_path):
            pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo"]


def test_d1_multi_shard_any_order(tmp_path):
    from trace_pipe.pipeline.readers import read_trace
    for name, rec in (("trace.0001.jsonl.gz", req("req-b", None, None, 1500, 1600, [11, 33], output_tokens=4)),
                      ("trace.0002.jsonl.gz", req("req-a", None, None, 1000, 1100, [11, 22], output_tokens=4))):
        (tmp_path / name).write_bytes(gzip.compress(orjson.dumps(rec) + b"\n"))
    out = tmp_path / "o.jsonl"
    run_convert([str(tmp_path)], mooncake=str(out), out=io.StringIO(), err=io.StringIO())
    assert_rows(read_lines(out), [plain(4, [0, 1], 0.0, output_length=4), plain(4, [0, 2], 500.0, output_length=4)])
    assert len(read_trace([str(tmp_path / "*.jsonl.gz")]).requests) == 2


def test_mixed_block_sizes(tmp_path):
    with pytest.raises(TraceError, match="mixed replay trace_block_size values are not supported: 2 and 4"):
        convert(tmp_path, [req("r1", "root", None, 1000, 1100, [11]), req("r2", "root", None, 1200, 1300, [11], bs=4)])
