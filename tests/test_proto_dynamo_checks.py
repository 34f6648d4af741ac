"""Dynamo's `validate_convert_to_perfetto.py` checks P1–P11 (dynamo-formats.md §6.1), restated on
our protobuf output (decoded with the perfetto protos: names, categories, ns timestamps,
durations, debug-annotation args, track names) and on the `--chrome-json` output (µs, as Dynamo).

Deliberate differences from Dynamo's converter, each asserted below:
* every generation infers tool slices from `finish_reason_metadata.tool_calls` (Dynamo: G3 only),
  so P1 on G2/G3a also has the synthetic inferred tool of the last request (as G3b does);
* P10: sessions with no common root get one group each under the one `Recorded` root (Dynamo G3:
  one process for everything); in JSON each group is a process;
* stage args drop JSON `null`s; `worker.*` / `finish.*` args are nested dicts in protobuf (trace
  processor turns a dot inside an arg name into `_`, a nested dict gives `debug.worker.…`).
"""

from __future__ import annotations

import orjson
import pytest

from dynamo_records import SCHEMA, context
from trace_pipe import proto
from trace_pipe.pipeline import agentic_v1, readers
from trace_pipe.proto.check import check_file
from trace_pipe.proto.decode import decode_file

ALL = ("G1", "G2", "G3a", "G3b")
MS = 1_000_000  # ns per ms


def ctx(gen: str, chain: str | None, parent: str | None = None) -> dict | None:
    # the identities Dynamo's own validate_convert_to_perfetto.py uses
    run = "workflow-1" if gen == "G1" else "session-1"
    return context(gen, chain, parent, run=run, session_type="research")


def request_end(gen: str, chain: str | None, event_time, request: dict, parent: str | None = None) -> dict:
    # as §6.1 states the inputs: no replay block, no output tokens unless the case has them (the
    # Perfetto script needs neither, and `convert --perfetto` alone reads rows as it does)
    request = {"model": "test-model", **request}
    ev = {"schema": SCHEMA[gen], "event_type": "request_end", "event_time_unix_ms": event_time}
    c = ctx(gen, chain, parent)
    if c is not None:
        ev["event_source"] = "dynamo"
        ev["agent_context"] = c
    ev["request"] = request
    return ev


def tool_row(gen: str, chain: str, event_type: str, event_time, tool: dict) -> dict:
    return {"schema": SCHEMA[gen], "event_type": event_type, "event_time_unix_ms": event_time,
            "event_source": "harness", "agent_context": ctx(gen, chain), "tool": tool}


def req(gen, chain, rid, start, total, parent=None, **extra) -> dict:
    return request_end(gen, chain, start + total, {"request_id": rid, "request_received_ms": start,
                                                   "total_time_ms": total, **extra}, parent)


class Out:
    """Both outputs of one conversion, decoded."""

    def __init__(self, tmp_path, records, *, stages=True, markers=True, envelope=False):
        src = tmp_path / "trace.jsonl"
        with open(src, "wb") as f:
            for i, r in enumerate(records):
                f.write(orjson.dumps({"timestamp": i, "event": r} if envelope else r) + b"\n")
        trace = readers.read_trace([str(src)], replay_rules=False)
        edges = agentic_v1.dependency_edges(trace).edges if any(r.chain_id for r in trace.requests) else []
        pf, js = tmp_path / "out.pftrace", tmp_path / "out.json"
        self.stats = proto.write_perfetto(trace, edges, pf, stages=stages, markers=markers)
        proto.write_chrome_json(trace, edges, js, stages=stages, markers=markers)
        rep = check_file(pf)
        assert rep.ok, rep.lines()
        self.pf = decode_file(str(pf))
        self.json = orjson.loads(js.read_bytes())
        self.events = self.json["traceEvents"]

    # protobuf
    def cat(self, c: str):
        return [s for s in self.pf.slices if s.category == c]

    def instants(self, c: str):
        return [s for s in self.pf.instants if s.category == c]

    def track_name(self, e) -> str:
        return self.pf.tracks[e.track].name

    def converted(self) -> int:
        """Dynamo's count: request slices + tool slices + tool instants."""
        return (len(self.cat("dynamo.llm")) + len(self.cat("dynamo.agent.tool"))
                + len(self.instants("dynamo.agent.tool.marker")))

    # JSON
    def jcat(self, c: str):
        return [e for e in self.events if e.get("cat") == c]

    def threads(self) -> dict:
        return {(e["pid"], e["tid"]): e["args"]["name"] for e in self.events if e["name"] == "thread_name"}

    def jthread(self, e) -> str:
        return self.threads()[(e["pid"], e["tid"])]


P1_REQUEST = {"request_id": "req-1", "x_request_id": "caller-1", "model": "test-model", "input_tokens": 100,
              "output_tokens": 10, "cached_tokens": 80, "request_received_ms": 1000, "prefill_wait_time_ms": 5,
              "prefill_time_ms": 7, "ttft_ms": 12, "total_time_ms": 50, "avg_itl_ms": 4.2, "kv_hit_rate": 0.8,
              "queue_depth": 2, "worker": {"prefill_worker_id": 1, "prefill_dp_rank": 0, "decode_worker_id": 2,
                                           "decode_dp_rank": 0}}
P1_FINISH = {"finish_reason": "tool_calls", "backend_finish_reason": "stop", "stop_reason": "END",
             "tool_calls": [{"choice_index": 0, "tool_call_index": 0, "id": "call-1", "name": "web_search"}],
             "choices": [{"choice_index": 0, "finish_reason": "tool_calls", "backend_finish_reason": "stop",
                          "stop_reason": "END"}]}


@pytest.mark.parametrize("gen", ALL)
def test_p1_request_stages_and_metadata(tmp_path, gen):
    request = dict(P1_REQUEST)
    if gen != "G1":
        request["finish_reason_metadata"] = P1_FINISH
    o = Out(tmp_path, [request_end(gen, "session-1:researcher", 2000, request)], envelope=True)
    (r,) = o.cat("dynamo.llm")
    assert (r.name, r.ts, r.dur) == ("LLM request: test-model", 1000 * MS, 50 * MS)
    assert r.args["x_request_id"] == "caller-1" and r.args["request_id"] == "req-1"
    assert r.args["worker"]["decode_worker_id"] == 2 and r.args["worker"]["prefill_worker_id"] == 1
    assert r.args["input_tokens"] == 100 and r.args["kv_hit_rate"] == 0.8 and r.args["avg_itl_ms"] == 4.2
    assert o.track_name(r) == "session-1:researcher"
    assert r.correlation_id != 0
    if gen != "G1":
        assert r.args["finish"] == {"finish_reason": "tool_calls", "backend_finish_reason": "stop",
                                    "stop_reason": "END", "tool_call_count": 1, "tool_call_names": "web_search",
                                    "choice_count": 1, "choice_finish_reasons": "0:tool_calls"}
        assert r.args["finish_reason_metadata"] == P1_FINISH
    stages = o.cat("dynamo.llm.stage")
    assert {s.track for s in stages} == {r.track} and all(s.parent is r for s in stages)
    assert [(s.name, s.ts, s.dur) for s in stages] == [
        ("prefill wait", 1000 * MS, 5 * MS), ("prefill", 1005 * MS, 7 * MS), ("decode", 1012 * MS, 38 * MS)]
    (m,) = o.instants("dynamo.llm.marker")
    assert (m.name, m.ts, m.parent) == ("first token", 1012 * MS, r)
    # G1 has no finish metadata; every later generation infers the last request's tool call
    assert o.converted() == (1 if gen == "G1" else 2)
    # the workers group shows what ran where
    worker = {o.pf.track_path(s.track)[-2]: s for s in o.cat("trace_pipe.worker")}
    assert worker["worker 1 dp 0"].name == "prefill" and worker["worker 1 dp 0"].ts == 1005 * MS
    assert worker["worker 2 dp 0"].name == "decode" and worker["worker 2 dp 0"].dur == 38 * MS

    # Chrome JSON: Dynamo's values in µs
    assert any(e["ph"] == "M" for e in o.events)
    (jr,) = o.jcat("dynamo.llm")
    assert (jr["name"], jr["ph"], jr["ts"], jr["dur"]) == ("LLM request: test-model", "X", 1_000_000, 50_000)
    assert jr["args"]["x_request_id"] == "caller-1" and jr["args"]["worker.decode_worker_id"] == 2
    if gen != "G1":
        assert jr["args"]["finish.tool_call_names"] == "web_search"
        assert jr["args"]["finish.choice_finish_reasons"] == "0:tool_calls"
    js = o.jcat("dynamo.llm.stage")
    assert {(e["pid"], e["tid"]) for e in js} == {(jr["pid"], jr["tid"])}
    assert sorted((e["name"], e["ts"], e["dur"]) for e in js) == sorted(
        [("prefill wait", 1_000_000, 5_000), ("prefill", 1_005_000, 7_000), ("decode", 1_012_000, 38_000)])
    (jm,) = o.jcat("dynamo.llm.marker")
    assert (jm["name"], jm["ph"], jm["ts"]) == ("first token", "i", 1_012_000)


@pytest.mark.parametrize("gen", ("G1", "G2", "G3a"))
def test_p2_stages_on_separate_tracks(tmp_path, gen):
    rec = req(gen, "session-1:researcher", "req-1", 1000, 50, prefill_wait_time_ms=5, prefill_time_ms=7, ttft_ms=12)
    o = Out(tmp_path, [rec], stages="separate", markers=False)
    (r,) = o.cat("dynamo.llm")
    stages = o.cat("dynamo.llm.stage")
    assert len(stages) == 3 and all(s.track != r.track and s.depth == 0 for s in stages)
    assert {o.track_name(s) for s in stages} == {"session-1:researcher stages"}
    assert o.pf.tracks[stages[0].track].parent == o.pf.tracks[r.track].parent
    (jr,) = o.jcat("dynamo.llm")
    assert {(e["pid"], e["tid"]) for e in o.jcat("dynamo.llm.stage")} != {(jr["pid"], jr["tid"])}
    assert sorted(n for (pid, _), n in o.threads().items() if pid == jr["pid"]) == [
        "session-1:researcher", "session-1:researcher stages"]


@pytest.mark.parametrize("gen", ALL)
def test_p3_stage_rounding_is_clamped(tmp_path, gen):
    rec = request_end(gen, "session-1:researcher", 49743.776002, {
        "request_id": "req-1", "request_received_ms": 0, "prefill_wait_time_ms": 230.700717,
        "prefill_time_ms": 2144.397696, "ttft_ms": 2375.098413, "total_time_ms": 49743.776002})
    o = Out(tmp_path, [rec])
    stages = sorted(o.cat("dynamo.llm.stage"), key=lambda s: s.ts)
    assert [s.name for s in stages] == ["prefill wait", "prefill", "decode"]
    for a, b in zip(stages, stages[1:]):
        assert a.ts + a.dur <= b.ts
    assert stages[1].ts + stages[1].dur == stages[2].ts
    (r,) = o.cat("dynamo.llm")
    assert stages[-1].ts + stages[-1].dur == r.ts + r.dur == 49_743_776_002
    js = sorted(o.jcat("dynamo.llm.stage"), key=lambda e: e["ts"])
    assert [(e["name"], e["ts"], e["dur"]) for e in js] == [
        ("prefill wait", 0, 230_701), ("prefill", 230_701, 2_144_397), ("decode", 2_375_098, 47_368_678)]


@pytest.mark.parametrize("gen", ALL)
def test_p4_overlapping_requests_get_lanes(tmp_path, gen):
    label = "session-1:searcher"
    recs = [req(gen, label, "req-1", 1000, 100, ttft_ms=10), req(gen, label, "req-2", 1050, 100, ttft_ms=10)]
    o = Out(tmp_path, recs, stages=False, markers=False)
    assert o.converted() == 2 and not o.pf.instants
    a, b = o.cat("dynamo.llm")
    assert a.track != b.track and a.depth == b.depth == 0
    ta, tb = o.pf.tracks[a.track], o.pf.tracks[b.track]
    assert ta.name == tb.name == label and ta.parent == tb.parent and ta.rank == tb.rank  # merged by the UI
    ja, jb = o.jcat("dynamo.llm")
    assert (ja["pid"], ja["tid"]) != (jb["pid"], jb["tid"])
    assert sorted([o.jthread(ja), o.jthread(jb)]) == [f"{label} [lane 1]", f"{label} [lane 2]"]


def test_p4_json_lanes_are_packed_on_whole_microseconds(tmp_path):
    # a 0 ms request and the next one in the same µs meet in ns (one protobuf track) but both are
    # at least 1 µs long in JSON: Dynamo packs its lanes on those widened slices, so must we
    recs = [req("G3b", "s", "a", 1000, 0), req("G3b", "s", "b", 1000, 10)]
    o = Out(tmp_path, recs, stages=False, markers=False)
    a, b = o.cat("dynamo.llm")
    assert a.track == b.track and (a.dur, b.dur) == (0, 10_000_000)
    ja, jb = o.jcat("dynamo.llm")
    assert (ja["ts"], ja["dur"], jb["ts"], jb["dur"]) == (1_000_000, 1, 1_000_000, 10_000)
    assert (ja["pid"], ja["tid"]) != (jb["pid"], jb["tid"])


@pytest.mark.parametrize("gen", ["G1", "G2"])
def test_request_without_received_time(tmp_path, gen):
    # §5.4 copies request_received_ms only if present: it is not invented from the derived start.
    # The slice ends at the event time and lasts total_time_ms (the start the Mooncake rows use;
    # Dynamo's script would start it at the event time, after the request had finished).
    rec = request_end(gen, "c", 2000, {"request_id": "r", "total_time_ms": 50})
    o = Out(tmp_path, [rec], stages=False, markers=False)
    (s,) = o.cat("dynamo.llm")
    assert "request_received_ms" not in s.args and s.args["event_time_unix_ms"] == 2000
    assert s.dur == 50_000_000
    (j,) = o.jcat("dynamo.llm")
    assert "request_received_ms" not in j["args"] and j["dur"] == 50_000


def test_json_keeps_nulls_inside_nested_args(tmp_path):
    fin = {"finish_reason": "stop", "choices": [None, {"choice_index": 1, "finish_reason": "stop"}],
           "stop_reason": None}
    o = Out(tmp_path, [req("G3b", "s", "a", 1000, 10, finish_reason_metadata=fin)], stages=False, markers=False)
    (j,) = o.jcat("dynamo.llm")
    assert j["args"]["finish_reason_metadata"] == fin  # as Dynamo's script copies it


@pytest.mark.parametrize("gen", ALL)
def test_p5_tool_duration_slices(tmp_path, gen):
    tool = {"tool_call_id": "call-1", "tool_class": "web_search", "status": "succeeded", "duration_ms": 250,
            "output_bytes": 2048}
    if gen != "G1":
        tool.update(started_at_unix_ms=1000, ended_at_unix_ms=1250)
    o = Out(tmp_path, [tool_row(gen, "session-1:researcher", "tool_end", 1250 if gen == "G1" else 1300, tool)])
    (t,) = o.cat("dynamo.agent.tool")
    assert o.converted() == 1
    assert (t.name, t.ts, t.dur) == ("Tool: web_search", 1000 * MS, 250 * MS)
    assert t.args["tool_call_id"] == "call-1" and t.args["output_bytes"] == 2048
    if gen != "G1":
        assert t.args["started_at_unix_ms"] == 1000 and t.args["ended_at_unix_ms"] == 1250
    assert o.track_name(t) == "session-1:researcher tools"
    (jt,) = o.jcat("dynamo.agent.tool")
    assert (jt["ts"], jt["dur"], jt["args"]["output_bytes"]) == (1_000_000, 250_000, 2048)
    assert list(o.threads().values()) == ["session-1:researcher tools"]


@pytest.mark.parametrize("gen", ALL)
def test_p6_tool_start_and_end_pair(tmp_path, gen):
    label = "session-1:researcher"
    rows = [tool_row(gen, label, "tool_start", 1000, {"tool_call_id": "call-1", "tool_class": "web_search",
                                                      "status": "running"}),
            tool_row(gen, label, "tool_end", 1250, {"tool_call_id": "call-1", "tool_class": "web_search",
                                                    "status": "succeeded"})]
    o = Out(tmp_path, rows)
    assert o.converted() == 1 and not o.instants("dynamo.agent.tool.marker")
    (t,) = o.cat("dynamo.agent.tool")
    assert (t.ts, t.dur) == (1000 * MS, 250 * MS)
    assert not o.jcat("dynamo.agent.tool.marker")
    (jt,) = o.jcat("dynamo.agent.tool")
    assert (jt["ts"], jt["dur"]) == (1_000_000, 250_000)


@pytest.mark.parametrize("gen", ALL)
def test_p7_zero_duration_tool_is_synthetic(tmp_path, gen):
    label = "session-1:researcher"
    rows = [tool_row(gen, label, "tool_start", 1000, {"tool_call_id": "call-1", "tool_class": "file_system",
                                                      "status": "running"}),
            tool_row(gen, label, "tool_end", 1000, {"tool_call_id": "call-1", "tool_class": "file_system",
                                                    "status": "succeeded", "duration_ms": 0.0})]
    o = Out(tmp_path, rows)
    assert o.converted() == 1 and not o.instants("dynamo.agent.tool.marker")
    (t,) = o.cat("dynamo.agent.tool")
    assert (t.name, t.ts, t.dur) == ("Tool: file_system", 1000 * MS, 1 * MS)
    assert t.args["duration_ms"] == 0.0 and t.args["synthetic_duration"] is True and t.args["visual_duration_ms"] == 1.0
    (jt,) = o.jcat("dynamo.agent.tool")
    assert (jt["ts"], jt["dur"], jt["args"]["synthetic_duration"]) == (1_000_000, 1_000, True)


@pytest.mark.parametrize("gen", ("G3a", "G3b"))
def test_p8_enriched_request_trace(tmp_path, gen):
    label = "session-1:researcher"
    rows = [req(gen, label, "req-1", 1000, 50, output_tokens=4),
            tool_row(gen, label, "tool_end", 1100, {"tool_call_id": "call-1", "tool_class": "shell",
                                                    "started_at_unix_ms": 1060, "ended_at_unix_ms": 1100,
                                                    "status": "succeeded"})]
    o = Out(tmp_path, rows)
    assert o.converted() == 2
    assert {"dynamo.llm", "dynamo.agent.tool"} <= {s.category for s in o.pf.slices}
    assert {"dynamo.llm", "dynamo.agent.tool"} <= {e.get("cat") for e in o.events}


def test_p9_context_free_rows(tmp_path):
    o = Out(tmp_path, [req("G3b", None, "req-plain", 1000, 50)])
    (r,) = o.cat("dynamo.llm")
    assert o.converted() == 1
    assert r.name == "LLM request: test-model" and r.args["request_id"] == "req-plain"
    assert o.track_name(r) == "request-only"
    assert list(o.threads().values()) == ["request-only"]


def test_p10_all_sessions_under_one_root(tmp_path):
    o = Out(tmp_path, [req("G3b", "session-1", "a", 1000, 50), req("G3b", "session-2", "b", 1000, 50)])
    reqs = o.cat("dynamo.llm")
    assert o.converted() == 2
    assert {o.pf.track_path(r.track)[0] for r in reqs} == {"Recorded"}
    assert {o.pf.track_path(r.track)[1] for r in reqs} == {"session: session-1", "session: session-2"}
    assert sorted(o.jthread(e) for e in o.jcat("dynamo.llm")) == ["session-1", "session-2"]


def p11a_rows(gen: str) -> list[dict]:
    call = {"choice_index": 0, "tool_call_index": 0, "id": "call-1", "name": "exec_command"}
    return [req(gen, "codex-session", "req-tool-call", 1000, 50, parent="parent-session",
                finish_reason_metadata={"finish_reason": "tool_calls", "tool_calls": [call]}),
            req(gen, "codex-session", "req-after-tool", 1200, 40, parent="parent-session")]


@pytest.mark.parametrize("gen", ("G3a", "G3b"))
def test_p11a_inferred_tool_between_requests(tmp_path, gen):
    o = Out(tmp_path, p11a_rows(gen), stages=False)
    assert o.converted() == 3
    (t,) = o.cat("dynamo.agent.tool")
    assert (t.name, t.ts, t.dur) == ("Tool: exec_command", 1050 * MS, 150 * MS)
    a = t.args
    assert a["event_type"] == "inferred_tool_call" and a["inferred"] is True and a["host_execution"] is False
    assert a["source_request_id"] == "req-tool-call" and a["next_request_id"] == "req-after-tool"
    assert a["tool_call_id"] == "call-1"
    parent_key = "parent_trajectory_id" if gen == "G3a" else "parent_session_id"
    assert a[parent_key] == "parent-session"
    names = {o.pf.tracks[s.track].name for s in o.pf.slices}
    assert names == {"codex-session", "codex-session tools"}
    assert sorted(o.threads().values()) == ["codex-session", "codex-session tools"]
    (jt,) = o.jcat("dynamo.agent.tool")
    assert (jt["ts"], jt["dur"], jt["args"]["next_request_id"]) == (1_050_000, 150_000, "req-after-tool")


def test_p11b_overlapping_next_request(tmp_path):
    call = {"choice_index": 0, "tool_call_index": 0, "id": "call-1", "name": "exec_command"}
    rows = [req("G3b", "codex-session", "req-tool-call", 1000, 100,
                finish_reason_metadata={"finish_reason": "tool_calls", "tool_calls": [call]}),
            req("G3b", "codex-session", "req-overlap", 1050, 40),
            req("G3b", "codex-session", "req-later", 1200, 40)]
    o = Out(tmp_path, rows, stages=False)
    assert o.converted() == 4
    (t,) = o.cat("dynamo.agent.tool")
    assert (t.ts, t.dur) == (1100 * MS, 1 * MS)
    a = t.args
    assert a["duration_unknown"] is True and a["synthetic_duration"] is True and a["visual_duration_ms"] == 1.0
    assert a["overlapping_request_id"] == "req-overlap"
    assert not {"next_request_id", "ended_at_unix_ms", "duration_ms"} & set(a)


def test_p11c_terminal_tool_call(tmp_path):
    call = {"choice_index": 0, "tool_call_index": 0, "id": "call-1", "name": "exec_command"}
    o = Out(tmp_path, [req("G3b", "codex-session", "req-terminal-tool-call", 1000, 100,
                           finish_reason_metadata={"finish_reason": "tool_calls", "tool_calls": [call]})])
    assert o.converted() == 2
    (t,) = o.cat("dynamo.agent.tool")
    assert (t.ts, t.dur) == (1100 * MS, 1 * MS)
    assert t.args["duration_unknown"] is True and t.args["synthetic_duration"] is True
    assert not {"next_request_id", "overlapping_request_id"} & set(t.args)


@pytest.mark.parametrize("gen", ("G3a", "G3b"))
def test_p11d_real_tool_wins(tmp_path, gen):
    rows = p11a_rows(gen) + [tool_row(gen, "codex-session", "tool_end", 1175, {
        "tool_call_id": "call-1", "tool_class": "exec_command", "started_at_unix_ms": 1060,
        "ended_at_unix_ms": 1175})]
    o = Out(tmp_path, rows, stages=False)
    assert o.converted() == 3
    (t,) = o.cat("dynamo.agent.tool")
    assert "inferred" not in t.args and (t.ts, t.dur) == (1060 * MS, 115 * MS)
    (jt,) = o.jcat("dynamo.agent.tool")
    assert "inferred" not in jt["args"] and (jt["ts"], jt["dur"]) == (1_060_000, 115_000)


def test_cli_perfetto_alone_needs_no_replay_fields(tmp_path):
    # Dynamo's Perfetto script draws rows without a replay block, output tokens or (G3) arrival
    # time; so does `convert --perfetto` alone. Mooncake output still needs them (§4.2).
    import io

    from trace_pipe.cli.convert_cmd import run_convert
    from trace_pipe.pipeline.errors import TraceError

    rows = [request_end("G3b", "s", 2000, {"request_id": "r1", "total_time_ms": 50.0}),  # no arrival: 1950
            request_end("G3b", "s", 2100, {"request_id": "r2", "request_received_ms": 2060, "total_time_ms": 40.0})]
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    pf = tmp_path / "t.pftrace"
    run_convert([str(src)], perfetto=str(pf), out=io.StringIO(), err=io.StringIO())
    assert check_file(pf).ok
    got = sorted((s.ts, s.dur) for s in decode_file(str(pf)).slices if s.category == "dynamo.llm")
    assert got == [(1950 * MS, 50 * MS), (2060 * MS, 40 * MS)]
    assert len(decode_file(str(pf)).flows()) == 1  # the sequence edge r1 -> r2
    with pytest.raises(TraceError, match=r"in.jsonl:1: field `request.replay`: request payload is missing replay metrics"):
        run_convert([str(src)], perfetto=str(pf), mooncake=str(tmp_path / "m.jsonl"), out=io.StringIO(), err=io.StringIO())


def test_g2_sessions_sharing_a_trajectory_id_keep_their_groups(tmp_path):
    # Dynamo's script keys G2 lanes by (session_id, trajectory_id); Pi's provider sends one constant
    # trajectory id, so two sessions must not share a group (session B used to land under A)
    rows = []
    for k, run in enumerate(("A", "B")):
        ev = request_end("G2", None, 2000 + 100 * k, {"request_id": f"r-{run}", "request_received_ms": 1950 + 100 * k,
                                                      "total_time_ms": 50.0})
        ev["agent_context"] = context("G2", "main", None, run=run, session_type="research")
        rows.append(ev)
    o = Out(tmp_path, rows)
    where = {s.args["request_id"]: tuple(o.pf.track_path(s.track)) for s in o.cat("dynamo.llm")}
    assert where == {"r-A": ("Recorded", "session: A", "main"), "r-B": ("Recorded", "session: B", "main")}
