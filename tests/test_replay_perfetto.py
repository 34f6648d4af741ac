"""`trace-pipe replay --perfetto`: one .pftrace with `Recorded` and `Simulated` roots. Decoded
back: both roots with the same request ids and colours, a flow per dependency edge in each,
per-worker engine passes and counters under Simulated, recorded values and differences on every
simulated request, and `trace-pipe check` passes."""

from __future__ import annotations

from collections import defaultdict

import pytest
from dynamo_records import FIXTURES, write_jsonl
from replay_cases import agentic_records
from typer.testing import CliRunner

from trace_pipe.cli.main import _register, app
from trace_pipe.cli.replay_cmd import run
from trace_pipe.proto.check import check_file
from trace_pipe.pipeline.replay_input import load_input
from trace_pipe.proto.decode import decode_file
from tp_binary import verify

_register()

COUNTERS = {"running", "waiting", "KV blocks in use", "KV blocks cached", "prefix-hit tokens"}


def root_of(d, uuid):
    while d.tracks[uuid].parent:
        uuid = d.tracks[uuid].parent
    return d.tracks[uuid].name


def requests_by_root(d):
    out = defaultdict(dict)
    for s in d.slices:
        if s.category == "dynamo.llm":
            out[root_of(d, s.track)][s.args["request_id"]] = s
    return out


@pytest.fixture(scope="module")
def replayed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pf")
    trace = write_jsonl(tmp / "t.jsonl", agentic_records(7))
    out = tmp / "replay.pftrace"
    runner = CliRunner()
    res = runner.invoke(app, ["replay", str(trace), "--trace-format", "dynamo", "--num-workers", "2",
                              "--extra-engine-args", '{"block_size": 2}', "--perfetto", str(out),
                              "--report-json", str(tmp / "r.json")])
    assert res.exit_code == 0, res.output
    chk = runner.invoke(app, ["check", str(out)])
    assert chk.exit_code == 0, chk.output
    return trace, out, decode_file(str(out))


def test_both_roots_same_requests_colours_and_flows(replayed):
    trace, out, d = replayed
    roots = sorted(t.name for t in d.tracks.values() if not t.parent)
    assert roots == ["Recorded", "Simulated"]
    by_root = requests_by_root(d)
    ids = {f"r{i}" for i in range(1, 1 + sum(1 for r in agentic_records(7) if "request" in r))}
    assert set(by_root["Recorded"]) == set(by_root["Simulated"]) == ids
    for rid in ids:
        assert by_root["Recorded"][rid].correlation_id == by_root["Simulated"][rid].correlation_id != 0
    # same play / chain tracks at the same ranks under both roots
    def shape(root):
        return sorted((tuple(d.track_path(t.uuid)[1:]), t.rank) for t in d.tracks.values()
                      if d.track_path(t.uuid)[0] == root and "workers" not in d.track_path(t.uuid))
    assert shape("Recorded") == shape("Simulated")
    # one flow per dependency edge in each timeline, never across
    flows = defaultdict(int)
    for src, dst in d.flows():
        assert root_of(d, src.track) == root_of(d, dst.track)
        flows[root_of(d, src.track)] += 1
    assert flows["Recorded"] == flows["Simulated"] == d.attributes["trace_pipe.Simulated.edges"] > 10
    assert check_file(str(out)).ok


def test_simulated_requests_stages_and_annotations(replayed):
    _, _, d = replayed
    sim = requests_by_root(d)["Simulated"]
    rec = requests_by_root(d)["Recorded"]
    kids = defaultdict(list)
    for s in d.slices + d.instants:
        if s.parent is not None and s.parent.category == "dynamo.llm":
            kids[id(s.parent)].append(s.name)
    t0 = min(r.ts for r in rec.values())
    for rid, s in sim.items():
        names = kids[id(s)]
        assert "prefill" in names and "decode" in names and "first token" in names, (rid, names)
        r = rec[rid]
        # dotted names are nested args (debug.recorded.start_ms in SQL)
        assert s.args["recorded"]["start_ms"] == (r.ts - t0) / 1e6
        assert s.args["recorded"]["e2e_ms"] == r.dur / 1e6
        assert s.args["diff"]["e2e_ms"] == pytest.approx(s.dur / 1e6 - r.dur / 1e6, abs=1e-6)
        assert s.args["diff"]["start_ms"] == pytest.approx((s.ts - r.ts) / 1e6, abs=1e-6)
        assert s.args["diff"]["ttft_ms"] == pytest.approx(s.args["ttft_ms"] - s.args["recorded"]["ttft_ms"])


def test_simulated_workers_have_passes_and_counters(replayed):
    _, _, d = replayed
    workers = {t.uuid: t.name for t in d.tracks.values()
               if d.track_path(t.uuid)[:2] == ["Simulated", "workers"] and len(d.track_path(t.uuid)) == 3}
    assert sorted(workers.values()) == ["worker 0", "worker 1"]
    for wu, wname in workers.items():
        children = {t.name: t for t in d.tracks.values() if t.parent == wu}
        assert COUNTERS <= {n for n, t in children.items() if t.counter}
        passes = [s for s in d.slices if s.track == children["engine passes"].uuid]
        assert passes and all({"batch_size", "prefill_tokens", "decode_requests", "pass_ms"} <= set(s.args)
                              for s in passes)
        assert sum(s.args["prefill_tokens"] for s in passes) > 0
        running = [e.value for e in d.samples if e.track == children["running"].uuid]
        assert max(running) >= 1 and running[-1] == 0
        kv = [e.value for e in d.samples if e.track == children["KV blocks in use"].uuid]
        assert max(kv) > 0 and kv[-1] == 0


def test_recorded_timing_draws_simulated_on_top_of_recorded(tmp_path):
    trace = write_jsonl(tmp_path / "t.jsonl", agentic_records(3))
    out = tmp_path / "r.pftrace.gz"
    _, res = run([str(trace)], trace_format="dynamo", timing="recorded", num_workers=4, perfetto=str(out),
                 report_json=str(tmp_path / "r.json"), progress=False)
    d = decode_file(str(out))
    by_root = requests_by_root(d)
    assert by_root["Recorded"] and set(by_root["Recorded"]) == set(by_root["Simulated"])
    for rid, r in by_root["Recorded"].items():
        s = by_root["Simulated"][rid]
        assert (s.ts, s.dur) == (r.ts, r.dur), rid
        assert s.args["diff"]["start_ms"] == 0 and s.args["diff"]["e2e_ms"] == 0
    # tool calls move with their requests: here they stay exactly where they were recorded
    tools = defaultdict(list)
    for s in d.slices:
        if s.category == "dynamo.agent.tool":
            tools[root_of(d, s.track)].append((s.name, s.ts, s.dur))
    assert tools["Recorded"] and sorted(tools["Recorded"]) == sorted(tools["Simulated"])
    assert check_file(str(out)).ok


def test_mooncake_input_draws_simulated_only(tmp_path):
    t = tmp_path / "t.jsonl"
    t.write_text('{"session_id": "s", "timestamp": 0, "input_length": 8, "output_length": 3, "hash_ids": [1, 2]}\n'
                 '{"session_id": "s", "delay": 5, "input_length": 8, "output_length": 2, "hash_ids": [1, 3]}\n')
    out = tmp_path / "m.pftrace"
    run([str(t)], trace_block_size=4, extra_engine_args='{"block_size": 4}', perfetto=str(out),
        report_json=str(tmp_path / "r.json"), progress=False)
    d = decode_file(str(out))
    assert sorted(t.name for t in d.tracks.values() if not t.parent) == ["Simulated"]
    assert len(d.flows()) == 1 and check_file(str(out)).ok


WEKA = FIXTURES / "kv_cache_tester_traces" / "trace_0277.json"


@pytest.mark.skipif(not WEKA.exists(), reason=f"WEKA fixture not found at {WEKA}")
def test_weka_replay_pftrace_checks(tmp_path):
    out = tmp_path / "w.pftrace"
    run([str(WEKA)], trace_format="weka", num_workers=2, perfetto=str(out), report_json=str(tmp_path / "r.json"),
        progress=False)
    rep = check_file(str(out))
    assert rep.ok, rep.problems
    by_root = requests_by_root(decode_file(str(out)))
    assert len(by_root["Recorded"]) == len(by_root["Simulated"]) == 53
    # trace processor: both roots' flows join the requests of the DAG's edges
    verify(out, edges=load_input([str(WEKA)], "weka", None).edges)


@pytest.mark.parametrize("decode_timing", ["physical", "logical"])
def test_one_slice_per_engine_pass(tmp_path, decode_timing):
    """Two requests decoding side by side for hundreds of steps: the worker's `engine passes` track has
    one slice per pass, back to back, and the pass lengths add up to the engine's own clock (under
    logical decode timing every pass is longer than the one before: the context grows). With
    --merge-decode-passes each run of identical passes is one `decode passes` slice instead."""
    t = tmp_path / "t.jsonl"
    t.write_text('{"timestamp": 0, "input_length": 64, "output_length": 300, "hash_ids": [1, 2, 3, 4]}\n'
                 '{"timestamp": 0, "input_length": 64, "output_length": 200, "hash_ids": [5, 6, 7, 8]}\n')
    engine = '{"block_size": 16}'
    slices = {}
    for merge in (False, True):
        out = tmp_path / f"m{merge}.pftrace"
        _, res = run([str(t)], trace_block_size=16, extra_engine_args=engine, decode_timing=decode_timing,
                     perfetto=str(out), merge_decode_passes=merge, report_json=str(tmp_path / "r.json"),
                     progress=False)
        assert check_file(str(out)).ok
        slices[merge] = [s for s in decode_file(str(out)).slices if s.category == "trace_pipe.engine"]
    n = res.timeline.pass_count()
    assert n >= 300
    each = slices[False]
    assert len(each) == n and {s.name for s in each} == {"pass"}
    assert all(a.ts + a.dur == b.ts for a, b in zip(each, each[1:]))  # back to back, no gap, no overlap
    ends = [p.end_ms for p in res.timeline.passes()]
    assert [s.ts + s.dur for s in each] == [round(e * 1e6) for e in ends]
    decode = [s.dur for s in each if s.args["prefill_tokens"] == 0 and s.args["batch_size"] == 2]
    if decode_timing == "logical":
        assert decode[-1] > decode[0]  # 2 x 500 context tokens against 2 x 65
    merged = slices[True]
    runs = [s for s in merged if s.name == "decode passes"]
    assert all(s.args["prefill_tokens"] == 0 and s.args["passes"] > 1 for s in runs)
    assert sum(s.args.get("passes", 1) for s in merged) == n
    if decode_timing == "physical":
        assert len(merged) < n / 5  # runs break only where a KV block fills
    else:
        assert merged == each  # no two decode passes alike: nothing to merge
    for s in runs:
        assert s.dur == pytest.approx(s.args["passes"] * s.args["pass_ms"] * 1e6, abs=1)
    assert merged[0].ts == each[0].ts and merged[-1].ts + merged[-1].dur == each[-1].ts + each[-1].dur


def test_check_compares_request_ids_across_roots(replayed):
    trace, out, d = replayed
    rep = check_file(str(out))
    n = len(requests_by_root(d)["Recorded"])
    assert rep.ok and rep.roots["Recorded"] == rep.roots["Simulated"] and len(rep.roots["Recorded"]) == n
    assert f"roots: Recorded {n} requests, Simulated {n} requests; the same request ids" in rep.lines()


def test_stopped_replay_and_tools_without_requests_still_check(tmp_path):
    """A replay that stops early draws only what it released (and declares the rest); a chain made of
    tool rows alone keeps them at their recorded times. `check` passes on both and reports the roots."""
    from dynamo_records import tool

    recs = agentic_records(7) + [tool("orphan", "o1", "bash", 500, 900)]
    trace = write_jsonl(tmp_path / "t.jsonl", recs)
    for stop in (None, 5.0):
        out = tmp_path / f"s{stop}.pftrace"
        run([str(trace)], trace_format="dynamo", num_workers=2, perfetto=str(out), max_sim_time_seconds=stop,
            report_json=str(tmp_path / "r.json"), progress=False)
        rep = check_file(str(out))
        assert rep.ok, rep.problems
        rec, sim = rep.roots["Recorded"], rep.roots["Simulated"]
        attrs = decode_file(str(out)).attributes
        if stop is None:
            assert rec == sim and "trace_pipe.Simulated.requests_not_drawn" not in attrs
        else:
            assert sim < rec and attrs["trace_pipe.Simulated.requests_not_drawn"] == len(rec - sim) > 0
        paths = {tuple(decode_file(str(out)).track_path(t)) for t in decode_file(str(out)).tracks}
        assert ("Simulated", "session: orphan", "orphan tools") in paths


@pytest.mark.parametrize("base", [0, 1_777_000_000_000])
def test_tool_called_mid_request_moves_with_that_request(tmp_path, base):
    # the tool starts while request a is still running (recorded 0-3000 ms, simulated ~30 ms): it
    # keeps its offset from a's start. It used to take b's offset (seconds earlier), which put it
    # before the time origin: an error when the trace starts at 0.
    from dynamo_records import req, tool

    recs = [req("a", "S", None, base, base + 3000, [1, 2], ttft_ms=50.0, output_tokens=2),
            tool("S", "tc1", "bash", base + 500, base + 3500),
            req("b", "S", None, base + 3600, base + 4600, [1, 2, 3], ttft_ms=40.0, output_tokens=2)]
    trace = write_jsonl(tmp_path / "t.jsonl", recs)
    out = tmp_path / "t.pftrace"
    run([str(trace)], trace_format="dynamo", perfetto=str(out), report_json=str(tmp_path / "r.json"), progress=False)
    assert check_file(str(out)).ok
    d = decode_file(str(out))
    sim = requests_by_root(d)["Simulated"]
    (t,) = [s for s in d.slices if s.name == "Tool: bash" and root_of(d, s.track) == "Simulated"]
    assert t.ts - sim["a"].ts == 500 * 1_000_000 and t.dur == 3000 * 1_000_000


def test_merge_decode_passes_without_perfetto_says_so(tmp_path):
    import io

    t = tmp_path / "t.jsonl"
    t.write_text('{"timestamp": 0, "input_length": 64, "output_length": 3, "hash_ids": [1, 2, 3, 4]}\n')
    err = io.StringIO()
    run([str(t)], trace_block_size=16, merge_decode_passes=True, report_json=str(tmp_path / "r.json"),
        out=io.StringIO(), err=err, progress=False)
    assert "note: --merge-decode-passes has no effect without --perfetto" in err.getvalue()
