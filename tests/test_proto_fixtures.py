"""Every fixture converts to a `.pftrace` that `check` passes, with one flow per dependency edge:
the 29 WEKA traces, Dynamo's WEKA example, and a generated Dynamo trace of all four generations
(tools, sub-agents, concurrent requests, inferred tools, workers). Same input, same bytes."""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import pytest

from trace_pipe import proto
from trace_pipe.pipeline import agentic_v1, readers
from trace_pipe.proto import synthetic
from trace_pipe.proto.check import check_file
from trace_pipe.proto.decode import decode_file
from trace_pipe.proto.layout import Layout

from tp_binary import verify

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
WEKA = SHARED / "fixtures" / "kv_cache_tester_traces"
DYNAMO_EXAMPLE = SHARED / "fixtures" / "dynamo" / "weka-two-plays.jsonl"
WEKA_FILES = sorted(WEKA.glob("*.json"))
# one test per trace; without them, one skipped test that says where they were looked for
WEKA_PARAMS = [pytest.param(p, id=p.stem) for p in WEKA_FILES] if len(WEKA_FILES) == 29 else [
    pytest.param(None, id="weka", marks=pytest.mark.skip(reason=f"the 29 WEKA fixtures are not under {WEKA}"))]


def convert_and_check(paths: list[str], out_dir: Path, **kw):
    trace = readers.read_trace(paths)
    edges = agentic_v1.derive(trace).edges
    pf = out_dir / "out.pftrace"
    stats = proto.write_perfetto(trace, edges, pf, **kw)
    tl = proto.recorded_timeline(trace, edges, **kw)
    rep = check_file(pf, expect=Layout([tl]).intended_intervals())
    assert rep.ok, rep.lines()
    assert rep.flows == stats.flows == len(edges), (rep.flows, len(edges), stats.edges_not_drawn)
    assert rep.slices == stats.slices and rep.instants == stats.instants
    verify(pf, edges=edges, stats=stats)  # trace processor: counts, flows per DAG edge, args
    return trace, edges, stats, rep


@pytest.mark.parametrize("path", WEKA_PARAMS)
def test_weka_fixture_converts_and_checks(tmp_path, path):
    trace, edges, stats, rep = convert_and_check([str(path)], tmp_path)
    d = decode_file(str(tmp_path / "out.pftrace"))
    assert sum(s.category == "dynamo.llm" for s in d.slices) == stats.requests == len(trace.requests)
    assert sum(s.category == "dynamo.agent.tool" for s in d.slices) == len(trace.tools)  # no tool_start rows
    js = tmp_path / "out.json"
    jstats = proto.write_chrome_json(trace, edges, js)
    verify(js, edges=edges, stats=jstats)
    doc = orjson.loads(js.read_bytes())
    assert sum(e["ph"] == "s" for e in doc["traceEvents"]) == len(edges) == jstats.flows
    assert sum(e.get("cat") == "dynamo.llm" for e in doc["traceEvents"]) == len(trace.requests)


@pytest.mark.skipif(not DYNAMO_EXAMPLE.exists(), reason=f"missing {DYNAMO_EXAMPLE}")
def test_dynamo_example_converts_and_checks(tmp_path):
    trace, edges, stats, rep = convert_and_check([str(DYNAMO_EXAMPLE)], tmp_path)
    d = decode_file(str(tmp_path / "out.pftrace"))
    groups = {d.track_path(s.track)[1] for s in d.slices if s.category == "dynamo.llm"}
    assert groups == {"play: play-a", "play: play-b"}


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> list[str]:
    out = tmp_path_factory.mktemp("gen")
    paths = []
    for gen, rows in synthetic.dynamo_records(runs=2).items():
        p = out / f"{gen}.jsonl"
        synthetic.write_jsonl(rows, str(p))
        paths.append(str(p))
    return paths


def test_generated_multi_generation_trace(tmp_path, generated):
    trace, edges, stats, rep = convert_and_check(generated, tmp_path)
    assert {r.generation.value for r in trace.requests} == {"G1", "G2", "G3a", "G3b"}
    assert {e.relation for e in edges} == {"sequence", "spawn", "join"}
    d = decode_file(str(tmp_path / "out.pftrace"))
    tools = [s for s in d.slices if s.category == "dynamo.agent.tool"]
    assert any(t.args.get("inferred") for t in tools) and any("inferred" not in t.args for t in tools)
    # concurrent requests of one chain sit on same-named sibling lanes, never on one track
    by_parent_name: dict = {}
    for t in d.tracks.values():
        by_parent_name.setdefault((t.parent, t.name), []).append(t.uuid)
    assert any(len(v) > 1 and d.tracks[v[0]].name.endswith(":main") for v in by_parent_name.values())
    # workers in numeric order: worker 2 before worker 10
    workers = next(t for t in d.tracks.values() if t.name == "workers")
    kids = sorted((t.rank, t.name) for t in d.tracks.values() if t.parent == workers.uuid)
    assert [n for _, n in kids] == ["worker 1 dp 0", "worker 2 dp 0", "worker 2 dp 1", "worker 10 dp 0"]
    assert workers.child_ordering == 3  # EXPLICIT
    # flows join exactly the edges' requests, source on the dependency, target on the dependent
    got = {(a.args["request_id"], b.args["request_id"]) for a, b in d.flows()}
    assert got == {(e.src, e.dst) for e in edges}
    # one colour per request: its worker slices share the request's correlation id
    corr = {s.args["request_id"]: s.correlation_id for s in d.slices if s.category == "dynamo.llm"}
    assert all(s.correlation_id == corr[s.args["request_id"]] for s in d.slices if s.category == "trace_pipe.worker")
    # in-flight counters close at 0 and never go negative
    assert all(s.value >= 0 for s in d.samples)


def test_same_input_same_bytes(tmp_path, generated):
    trace = readers.read_trace(generated)
    edges = agentic_v1.derive(trace).edges
    outs = []
    for k in range(2):
        again = readers.read_trace(generated) if k else trace
        for name in ("a.pftrace", "a.pftrace.gz", "a.json"):
            p = tmp_path / f"{k}-{name}"
            (proto.write_chrome_json if name.endswith(".json") else proto.write_perfetto)(again, edges, p)
            outs.append(p.read_bytes())
    assert outs[:3] == outs[3:]
    assert outs[1][:2] == b"\x1f\x8b" and len(outs[1]) < len(outs[0]) / 3


def test_convert_command_writes_mooncake_and_perfetto_in_one_pass(tmp_path, generated):
    from trace_pipe.cli.convert_cmd import run_convert

    out, err = io.StringIO(), io.StringIO()
    pf, mc, js = tmp_path / "o.pftrace", tmp_path / "o.jsonl", tmp_path / "o.json"
    run_convert(generated, mooncake=str(mc), agentic_rows=True, perfetto=str(pf), chrome_json=str(js), out=out, err=err)
    rows = [orjson.loads(x) for x in mc.read_bytes().splitlines()]
    rep = check_file(pf)
    assert rep.ok, rep.lines()
    assert rep.flows == sum(len(r.get("dependencies", [])) for r in rows) > 0  # v2 rows: one flow per edge
    assert js.exists() and "flows" in out.getvalue()
