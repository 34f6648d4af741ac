"""dynamo-formats.md §6.2 (A1–A9, V1–V8) and §6.3 (M1–M4, L1–L8, C1, D1) with exact expected rows."""

from __future__ import annotations

import gzip
import io

import orjson
import pytest

from dynamo_records import read_jsonl, req, tool, write_jsonl
from trace_pipe.cli.convert_cmd import run_convert
from trace_pipe.pipeline.errors import TraceError

GENS = ["G2", "G3a", "G3b"]


def convert(tmp_path, records, *, agentic=True, fmt="v1", g3c=False, envelope=False, name="in.jsonl"):
    src = write_jsonl(tmp_path / name, records, envelope=envelope)
    out_path = tmp_path / "out.jsonl"
    out, err = io.StringIO(), io.StringIO()
    run_convert([str(src)], mooncake=str(out_path), agentic_rows=agentic, fmt=fmt, g3c_rules=g3c, out=out, err=err)
    rows = read_jsonl(out_path)
    return rows, out.getvalue()


def by_id(rows):
    return {r["request_id"]: r for r in rows}


def line(d):
    return orjson.dumps(d).decode()


@pytest.mark.parametrize("gen", GENS)
def test_a1_sequential_waits_and_tool_wait(tmp_path, gen):
    rows, out = convert(tmp_path, [
        req("r1", "root", None, 1000, 1100, [11], gen=gen),
        req("r2", "root", None, 1300, 1400, [11, 22], gen=gen),
        tool("root", "call-1", "ls", 1150, 1250, gen=gen),
    ])
    assert [line(r) for r in rows] == [
        '{"request_id":"r1","session_id":"root","input_length":2,"output_length":5,"hash_ids":[0],"timestamp":0.0,"prefix_reset":true}',
        '{"request_id":"r2","session_id":"root","input_length":4,"output_length":5,"hash_ids":[0,1],"timestamp":300.0,"delay":100.0,"wait_for":["r1"],"prefix_reset":false,"tool_wait_ms":100.0,"tool_events":[{"tool_call_id":"call-1","tool_class":"ls","started_at_unix_ms":1150,"ended_at_unix_ms":1250,"duration_ms":100.0,"status":"succeeded"}]}',
    ]
    word = "sessions" if gen == "G3b" else "trajectories"
    assert out.splitlines() == [
        f"Wrote 2 Agentic Mooncake rows to {tmp_path / 'out.jsonl'}", "Trace block size: 2", "",
        f"Tool events: 1 spans across 1 {word}", "  Status:    succeeded=1", "  Class:     ls=1",
        "  Wall-time: 0.10s"]


@pytest.mark.parametrize("gen", GENS)
def test_a2_parallel_tools_union(tmp_path, gen):
    rows, _ = convert(tmp_path, [
        req("r1", "root", None, 1000, 1100, [11], gen=gen),
        req("r2", "root", None, 1400, 1500, [11, 22], gen=gen),
        tool("root", "call-1", "read", 1100, 1300, gen=gen),
        tool("root", "call-2", "read", 1150, 1250, gen=gen),
        tool("root", "call-3", "find", 1200, 1250, gen=gen),
    ])
    r2 = by_id(rows)["r2"]
    assert r2["tool_wait_ms"] == 200.0 and r2["delay"] == 100.0
    assert [t["tool_call_id"] for t in r2["tool_events"]] == ["call-1", "call-2", "call-3"]
    assert {t["tool_class"] for t in r2["tool_events"]} == {"read", "find"}


A3 = [("parent-1", "root", None, 1000, 1100, [11]), ("child-1", "child", "root", 1200, 1300, [33]),
      ("parent-2", "root", None, 1500, 1600, [11, 22])]


@pytest.mark.parametrize("gen", GENS)
def test_a3_subagent_launch_and_join(tmp_path, gen):
    rows, _ = convert(tmp_path, [req(*a, gen=gen) for a in A3])
    assert [line(r) for r in rows] == [
        '{"request_id":"parent-1","session_id":"root","input_length":2,"output_length":5,"hash_ids":[0],"timestamp":0.0,"branches":["child-1"],"prefix_reset":true}',
        '{"request_id":"child-1","session_id":"child","input_length":2,"output_length":5,"hash_ids":[1],"timestamp":200.0,"delay":100.0,"wait_for":["parent-1"],"prefix_reset":true}',
        '{"request_id":"parent-2","session_id":"root","input_length":4,"output_length":5,"hash_ids":[0,2],"timestamp":500.0,"delay":200.0,"wait_for":["parent-1","child-1"],"prefix_reset":false}',
    ]


@pytest.mark.parametrize("gen,word", [("G2", "trajectory"), ("G3a", "trajectory"), ("G3b", "session")])
def test_a4_conflicting_parents(tmp_path, gen, word):
    with pytest.raises(TraceError, match=f"conflicting parent_{word}_id values: root-a and root-b") as e:
        convert(tmp_path, [req("child-1", "child", "root-a", 1000, 1100, [11], gen=gen),
                           req("child-2", "child", "root-b", 1200, 1300, [22], gen=gen)])
    assert "in.jsonl:2" in str(e.value)


@pytest.mark.parametrize("g3c", [False, True])
def test_a5_join_on_last_finishing_child(tmp_path, g3c):
    rows, _ = convert(tmp_path, [
        req("parent-1", "root", None, 1000, 1100, [11]), req("child-slow", "child", "root", 1200, 1900, [33]),
        req("child-fast", "child", "root", 1300, 1400, [44]), req("parent-2", "root", None, 1500, 1600, [11, 22]),
        req("parent-3", "root", None, 2000, 2100, [11, 22, 33])], g3c=g3c)
    r = by_id(rows)
    assert r["child-slow"]["wait_for"] == ["parent-1"]
    assert r["child-fast"]["wait_for"] == ["child-slow"]
    assert r["parent-2"]["wait_for"] == ["parent-1"]
    assert set(r["parent-3"]["wait_for"]) == {"parent-2", "child-slow"}
    assert r["parent-1"]["branches"] == ["child-slow"]


def test_a6_context_free_rejected(tmp_path):
    with pytest.raises(TraceError, match="without agent_context cannot be converted with --agentic"):
        convert(tmp_path, [req("r1", None, None, 1000, 1100, [11], gen="G3b")])
    with pytest.raises(TraceError, match="--agentic requires request traces with agent_context"):
        convert(tmp_path, [req("r1", None, None, 1000, 1100, [11], gen="G3b")], g3c=True)


def claude(source, consumer, child, mode):
    return {"claude": {"source_request_id": source, "consumer_request_id": consumer, "child_session_id": child,
                       "execution_mode": mode}}


A7 = [req("parent-1", "root", None, 1000, 1100, [11]), req("child-1", "child", "root", 1200, 1700, [33]),
      req("parent-2", "root", None, 1300, 1400, [11, 22]), req("parent-3", "root", None, 1850, 1950, [11, 22, 44]),
      tool("root", "agent-call", "Agent", 1100, 1800, **claude("parent-1", "parent-3", "child", "background"))]


def test_a7_explicit_background_agent(tmp_path):
    rows, _ = convert(tmp_path, A7, g3c=True)
    r = by_id(rows)
    assert r["parent-1"]["branches"] == ["child-1"]
    assert r["child-1"]["wait_for"] == ["parent-1"] and r["child-1"]["request_kind"] == "background_agent"
    assert r["parent-2"]["wait_for"] == ["parent-1"] and r["parent-2"]["request_kind"] == "foreground"
    assert set(r["parent-3"]["wait_for"]) == {"parent-2", "child-1"}
    assert (r["parent-3"]["tool_wait_ms"], r["parent-3"]["delay"]) == (100.0, 50.0)
    assert [t["tool_call_id"] for t in r["parent-3"]["tool_events"]] == ["agent-call"]


A8 = [req("parent-1", "root", None, 1000, 1100, [11]), req("child-1", "child", "root", 1200, 1300, [33]),
      req("parent-2", "root", None, 1400, 1500, [11, 22])]


@pytest.mark.parametrize("mode", ["background", "blocking"])
def test_a8_explicit_cycle(tmp_path, mode):
    recs = A8 + [tool("root", "agent-call", "Agent", 1100, 1200, **claude("parent-2", "parent-1", "child", mode))]
    with pytest.raises(TraceError, match="agentic request dependencies contain a cycle"):
        convert(tmp_path, recs, g3c=True)
    with pytest.raises(TraceError, match="agentic request dependencies contain a cycle"):
        convert(tmp_path, recs, fmt="v2")


A9 = [req("parent-1", "root", None, 1000, 1100, [11]), req("parent-2", "root", None, 1300, 1400, [11, 22]),
      tool("root", "agent-call", "Agent", 1100, 1250, **claude("parent-1", "parent-2", "missing-child", "background"))]


def test_a9_missing_child_trace(tmp_path):
    rows, _ = convert(tmp_path, A9, g3c=True)
    r = by_id(rows)
    assert "branches" not in r["parent-1"]
    assert r["parent-2"]["wait_for"] == ["parent-1"]
    assert (r["parent-2"]["tool_wait_ms"], r["parent-2"]["delay"]) == (150.0, 50.0)
    assert len(r["parent-2"]["tool_events"]) == 1


def test_g3c_spawn_by_start(tmp_path):
    # a still-running parent call can spawn under G3c, never under G2-G3b
    recs = [req("p1", "root", None, 1000, 1500, [11]), req("c1", "child", "root", 1200, 1300, [33])]
    assert "wait_for" not in by_id(convert(tmp_path, recs)[0])["c1"]
    assert by_id(convert(tmp_path, recs, g3c=True)[0])["c1"]["wait_for"] == ["p1"]


# -- v2 -------------------------------------------------------------------------------------

def deps(row):
    return [(d["request_id"], d["trigger"], d["relation"], d["delay_ms"]) for d in row.get("dependencies", [])]


def v2(tmp_path, recs):
    rows, _ = convert(tmp_path, recs, fmt="v2")
    header, rows = rows[0], rows[1:]
    assert list(header) == ["schema", "version", "block_size", "hash_id_scope", "source"]
    assert header["schema"] == "dynamo.agentic_mooncake" and header["version"] == 2 and header["block_size"] == 2
    assert all("timestamp" not in r and "wait_for" not in r for r in rows)
    return by_id(rows)


def test_v1_v2_sequence_folds_tool_time(tmp_path):
    r = v2(tmp_path, [req("r1", "root", None, 1000, 1100, [11]), req("r2", "root", None, 1300, 1400, [11, 22]),
                      tool("root", "call-1", "ls", 1150, 1250)])
    assert deps(r["r1"]) == [] and r["r1"]["play_id"] == "root"
    assert deps(r["r2"]) == [("r1", "completion", "sequence", 200.0)]
    assert list(r["r2"]) == ["request_id", "play_id", "session_id", "model", "input_length", "output_length",
                             "hash_ids", "not_before_ms", "dependencies"]


def test_v2_union_folded(tmp_path):
    r = v2(tmp_path, [req("r1", "root", None, 1000, 1100, [11]), req("r2", "root", None, 1400, 1500, [11, 22]),
                      tool("root", "call-1", "read", 1100, 1300)])
    assert deps(r["r2"]) == [("r1", "completion", "sequence", 300.0)]


def test_v3_spawn_and_join(tmp_path):
    r = v2(tmp_path, [req(*a) for a in A3])
    assert deps(r["child-1"]) == [("parent-1", "completion", "spawn", 100.0)]
    assert deps(r["parent-2"]) == [("child-1", "completion", "join", 200.0), ("parent-1", "completion", "sequence", 400.0)]
    assert r["child-1"]["play_id"] == "root"


def test_v4_background_has_no_join(tmp_path):
    r = v2(tmp_path, A7)
    assert ("parent-1", "completion", "spawn", 100.0) in deps(r["child-1"])
    assert all(d[0] != "child-1" for d in deps(r["parent-3"]))


def test_v6_missing_child(tmp_path):
    r = v2(tmp_path, A9)
    assert deps(r["parent-2"]) == [("parent-1", "completion", "sequence", 200.0)]


def test_v7_conflicting_parents(tmp_path):
    with pytest.raises(TraceError, match="conflicting parent_session_id"):
        convert(tmp_path, [req("child-1", "child", "root-a", 1000, 1100, [11]),
                           req("child-2", "child", "root-b", 1200, 1300, [22])], fmt="v2")


def test_v8_join_relation(tmp_path):
    r = v2(tmp_path, [req("parent-1", "root", None, 1000, 1100, [11]), req("child-slow", "child", "root", 1200, 1900, [33]),
                      req("child-fast", "child", "root", 1300, 1400, [44]), req("parent-2", "root", None, 1500, 1600, [11, 22]),
                      req("parent-3", "root", None, 2000, 2100, [11, 22, 33])])
    assert ("child-slow", "completion", "join", 100.0) in deps(r["parent-3"])
    assert all(d[0] != "child-fast" for d in deps(r["parent-2"]))


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

def test_m1_absolute_timestamps(tmp_path):
    rows, _ = convert(tmp_path, [req("req-a", None, None, 1000, 1100, [11, 22]),
                                 req("req-b", None, None, 1500, 1600, [11, 33])], agentic=False)
    assert [line(r) for r in rows] == ['{"input_length":4,"output_length":5,"hash_ids":[0,1],"timestamp":0.0}',
                                       '{"input_length":4,"output_length":5,"hash_ids":[0,2],"timestamp":500.0}']


def test_m2_parallel_starts(tmp_path):
    rows, _ = convert(tmp_path, [req("req-a", "s", None, 1000, 1500, [11]), req("req-b", "s", None, 1000, 1700, [22])],
                      agentic=False)
    assert [r["timestamp"] for r in rows] == [0.0, 0.0]
    assert all("delay" not in r and "session_id" not in r for r in rows)


def test_m3_offsets_and_parallel(tmp_path):
    rows, _ = convert(tmp_path, [req("req-a", None, None, 1000, 1100, [11, 22]), req("req-b", None, None, 1000, 1700, [22]),
                                 req("req-c", None, None, 1500, 1600, [11, 33])], agentic=False)
    assert [r["timestamp"] for r in rows] == [0.0, 0.0, 500.0]
    assert [r["hash_ids"] for r in rows] == [[0, 1], [1], [0, 2]]


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


@pytest.mark.parametrize("gen", ["G3a", "G3b"])
def test_l8_agentic_rows_with_tools(tmp_path, gen):
    r = req("req-1", "root", None, 1000, 1100, [11], gen=gen)
    t = tool("root", "tool-1", "search", 1110, 1200, gen=gen, duration_ms=90,
             **claude("req-1", "req-2", "child", "background"))
    trace = load(tmp_path, [r, t])
    assert [x.chain_id for x in trace.requests] == ["root"]
    (tt,) = trace.tools
    assert (tt.tool_call_id, tt.tool_class, tt.claude.execution_mode) == ("tool-1", "search", "background")


def test_c1_atomic_output(tmp_path):
    bad = req("r2", "root", None, 1200, 1300, [11])
    del bad["request"]["output_tokens"]
    out = tmp_path / "out.jsonl"
    out.write_text("previous content\n")
    with pytest.raises(TraceError):
        convert(tmp_path, [req("r1", "root", None, 1000, 1100, [11]), bad])
    assert out.read_text() == "previous content\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out.jsonl"]


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
    rows = read_jsonl(out)
    assert [(r["timestamp"], r["input_length"]) for r in rows] == [(0.0, 4), (500.0, 4)]
    assert len(read_trace([str(tmp_path / "*.jsonl.gz")]).requests) == 2


def test_mixed_block_sizes(tmp_path):
    with pytest.raises(TraceError, match="mixed replay trace_block_size values are not supported: 2 and 4"):
        convert(tmp_path, [req("r1", "root", None, 1000, 1100, [11]), req("r2", "root", None, 1200, 1300, [11], bs=4)])
