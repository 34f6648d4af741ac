"""The report as ai-dynamo 1.6.1 (and 1.5.1) writes it (sim/report_aisim.py, sim/agentic_graph.py,
sim/agentic_lifecycle.py), checked against reports the oracles wrote (tests/data/report16/).

The derivation tests take the oracle's own per-request rows as the simulated times, so they test
the report alone (not the engine): from those times the summary, the rows, the graph digest and
the lifecycle digest must come out as the oracle wrote them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from trace_pipe.pipeline.mooncake import read_rows
from trace_pipe.pipeline.timeline import SimulatedRequest
from trace_pipe.sim import agentic_graph, report
from trace_pipe.sim.config import EngineArgs
from trace_pipe.sim.replay import ReplayOptions, run_replay
from trace_pipe.sim.canonical_json import dumps, float_text
from trace_pipe.sim.report_aisim import uuid_text
from trace_pipe.sim.result import SimResult, Timeline
from trace_pipe.sim.versions import VERSIONS

DATA = Path(__file__).parent / "data" / "report16"
R14, R15, R16 = VERSIONS["1.4"], VERSIONS["1.5"], VERSIONS["1.6"]
WALL = ("wall_time_ms", "processed_tokens_per_s", "processed_output_tokens_per_s")
# streamed (Welford, in request order) in Dynamo, from (gap, count) totals here; worker seconds
# are a running sum of clock steps there; a std sums over the values in the order Rust's
# select_nth_unstable left them (the percentiles are picked first, in place): last bits only
ROUNDED = ("mean_itl_ms", "std_itl_ms", "mean_output_token_throughput_per_user",
           "std_output_token_throughput_per_user", "decode_worker_seconds", "gpu_hours")


def _oracle(name: str) -> dict:
    return json.loads((DATA / f"{name}.oracle.json").read_text())


def _result(trace: str, oracle: dict, *, speedup: float = 1.0, unfinished: dict | None = None,
            stopped_at: float | None = None) -> SimResult:
    """A SimResult whose requests have exactly the times the oracle's rows record (requests
    without a row, cut by a time limit, get the dispatch times in `unfinished`)."""
    mf = read_rows([str(DATA / trace)])
    graph = agentic_graph.build(mf.rows, mf.sources, block_size=mf.header.block_size, speedup=speedup)
    rows = {r["request_id"]: r for r in oracle["per_request"]}
    recs = []
    gaps: dict[float, int] = {}
    for row, src in zip(mf.rows, mf.sources):
        o = rows.get(row.request_id)
        if o is None:
            t = (unfinished or {}).get(row.request_id)
            recs.append(SimulatedRequest(row.request_id, row.session_id, row.play_id, src, None if t is None else 0,
                                         t, t, None, None, None, None, None, row.input_length, row.output_length, 0,
                                         0, 0, 0, (), "not_started" if t is None else "incomplete"))
            continue
        n = o["output_length"]
        second = o["first_token_ms"] + o["ttst_ms"] if o["ttst_ms"] is not None else None
        if o["terminal_status"] == "completed" and n >= 2:
            assert n <= 3  # the gaps of 2 or 3 tokens follow from ttst and the mean ITL
            for g in ([o["ttst_ms"]] + ([o["itl_ms"] * 2 - o["ttst_ms"]] if n == 3 else [])):
                gaps[g] = gaps.get(g, 0) + 1
        adm = tuple((a["at_ms"], a["reused_input_tokens"]) for a in o["admission_history"])
        recs.append(SimulatedRequest(
            request_id=row.request_id, session_id=row.session_id, play=row.play_id, source=src,
            worker=o["decode_worker_idx"], ready_ms=o["arrival_time_ms"], dispatch_ms=o["dispatched_at_ms"],
            first_admit_ms=o["first_admit_ms"], first_token_ms=o["first_token_ms"], second_token_ms=second,
            last_token_ms=o["last_token_ms"], end_ms=o["terminal_time_ms"], input_length=o["input_length"],
            requested_output_length=o["requested_output_length"], output_tokens=n,
            cached_tokens=o["reused_input_tokens"], first_cached_tokens=adm[0][1] if adm else 0,
            admissions=len(adm), prefill_chunks=(), status=o["terminal_status"], admission_history=adm))
    return SimResult(tuple(recs), Timeline(((),)), (), tuple(sorted(gaps.items())), 1, 0.0, stopped_at, graph)


def _assert_summary(ours: dict, theirs: dict) -> None:
    assert [k for k in ours if k != "trace_pipe"] == list(theirs)
    for k, v in theirs.items():
        if k in WALL:
            continue
        if k in ROUNDED or k.startswith("std_"):
            assert ours[k] == pytest.approx(v, rel=1e-13, abs=1e-13), k
        else:
            assert ours[k] == v, k


CASES = {  # name: (trace, speedup, unfinished requests' dispatch times, time limit)
    "two": ("two.jsonl", 1.0, None, None),
    "ag1": ("ag1.jsonl", 1.0, None, None),
    "ag2": ("ag2.jsonl", 2.0, None, None),
    "ag1cut": ("ag1.jsonl", 1.0, {"c": 44.813816, "b": 46.813816}, 50.0),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_summary_and_rows_from_the_oracles_times(name):
    trace, speedup, unfinished, stop = CASES[name]
    o = _oracle(name)
    res = _result(trace, o, speedup=speedup, unfinished=unfinished, stopped_at=stop)
    rep = report.summary(res, rules=R16)
    _assert_summary(rep, o["summary"])
    assert list(report.jsonl_rows(res, rules=R16)) == o["per_request"]
    full = report.full_report(res, rep, rules=R16)
    assert list(full) == ["summary", "per_request", "coverage", "planner"]
    assert full["coverage"] == o["coverage"] and full["planner"] is None


def test_agentic_keys_on_two_plays():
    """The agentic summary objects of Dynamo's two-play trace, as 1.6.1 wrote them."""
    o = _oracle("two")
    rep = report.summary(_result("two.jsonl", o), rules=R16)
    assert rep["agentic_graph"] == {
        "source": {"format": "dynamo_request_trace",
                   "digest": "ee1748a36d56c12fc242c06b7782bad2d14f606a5d28e0ddd384154f318393a5"},
        "graph_digest": "0bc19282eefde4b5688b300e3c1fba18ca6dc7107b6ecbc5b8d5801b4248a9ac",
        "block_size": 4, "node_count": 3, "play_count": 2, "source_models": ["model"]}
    assert rep["agentic_lifecycle_event_count"] == 11  # 3 events per request, 1 per play
    assert rep["agentic_lifecycle_digest"] == "91bd755316fc55d45b5af3aca7d504d0115abfd3de76326263c7c0ac29a2ddf7"
    assert rep["agentic_play_outcomes"] == [
        {"play_id": "play-a", "status": "completed", "causal_terminal_ms": 38.929194, "settled_at_ms": 38.929194},
        {"play_id": "play-b", "status": "completed", "causal_terminal_ms": 16.622913999999998,
         "settled_at_ms": 16.622913999999998}]
    assert rep["agentic_model_projection"] == {"policy": "project_to_configured_target", "source_models": ["model"],
                                               "target_model": "mock"}
    # trajectories: play-a 0 -> 38.929194, play-b 0 -> 16.622914 (its 0-output request)
    assert (rep["total_trajectories"], rep["completed_trajectories"], rep["incomplete_trajectories"]) == (2, 2, 0)
    assert rep["mean_trajectory_e2e_latency_ms"] == 27.776054000000002
    assert rep["std_trajectory_e2e_latency_ms"] == 11.153140000000002
    assert rep["min_trajectory_e2e_latency_ms"] == 16.622913999999998
    assert rep["max_trajectory_e2e_latency_ms"] == rep["median_trajectory_e2e_latency_ms"] == 38.929194
    assert rep["p50_trajectory_e2e_latency_ms"] == 38.929194
    assert (rep["num_ttft_samples"], rep["num_tpot_samples"], rep["num_e2e_latency_samples"]) == (2, 1, 2)
    assert rep["committed_prefill_tokens"] == 12 and rep["kv_eviction_policy"] == "lru"


def test_failed_and_cut_plays():
    """A rejection fails its play (first failure named); a time limit leaves plays incomplete,
    with their last terminal but no settlement."""
    rep = report.summary(_result("ag2.jsonl", _oracle("ag2"), speedup=2.0), rules=R16)
    assert rep["agentic_play_outcomes"][1] == {
        "play_id": "p2", "status": "failed", "causal_terminal_ms": 80.512835, "settled_at_ms": 80.512835,
        "failure_request_id": "c", "failure_status": "rejected"}
    assert (rep["completed_trajectories"], rep["incomplete_trajectories"]) == (1, 1)
    assert rep["agentic_graph"]["graph_digest"] == "f62e0dac0c99c7586f919ac8060573190d89e3a5cc2b6720c3a26a214f04a0a9"
    cut = report.summary(_result("ag1.jsonl", _oracle("ag1cut"), unfinished={"c": 44.813816, "b": 46.813816},
                                 stopped_at=50.0), rules=R16)
    assert [o["status"] for o in cut["agentic_play_outcomes"]] == ["incomplete", "incomplete"]
    assert "settled_at_ms" not in cut["agentic_play_outcomes"][0]
    assert cut["agentic_lifecycle_event_count"] == 11  # 3 finished requests x 3 + 2 dispatches
    assert cut["decode_worker_seconds"] == pytest.approx(0.046813816, rel=1e-13)  # the clock's last step, not the cut


def test_row_keys_order_and_uuids():
    rows = list(report.jsonl_rows(_result("ag1.jsonl", _oracle("ag1")), rules=R16))
    assert list(rows[0]) == [
        "request_id", "play_id", "session_id", "turn_index", "agentic", "uuid", "arrival_time_ms", "dispatched_at_ms",
        "first_admit_ms", "terminal_time_ms", "first_token_ms", "last_token_ms", "ttft_ms", "ttst_ms",
        "e2e_latency_ms", "itl_ms", "input_length", "requested_output_length", "output_length",
        "reused_input_tokens", "prefill_worker_idx", "decode_worker_idx", "prefill_admit_ms", "source_held_ms",
        "destination_reserved_ms", "destination_activated_ms", "decode_admit_ms", "source_released_ms",
        "decode_reused_input_tokens", "prefill_route_overlap_tokens", "decode_route_overlap_tokens",
        "routing_history", "admission_history", "admission_count", "readmission_count", "pressure_record_ordinals",
        "terminal_status"]
    # rows in request_id order, uuids numbering request ids in that order (not file order z, a, m, b, c)
    assert [(r["request_id"], r["uuid"][-1]) for r in rows] == [("a", "1"), ("b", "2"), ("c", "3"), ("m", "4"),
                                                                 ("z", "5")]
    # root_id only in a single-root play; parent_id from a spawn edge
    assert rows[1]["agentic"] == {"request_id": "b", "play_id": "p1", "conversation_id": "s1", "root_id": "z"}
    assert rows[2]["agentic"] == {"request_id": "c", "play_id": "p2", "conversation_id": "s4", "parent_id": "a"}
    assert uuid_text(1) == "00000000-0000-0000-0000-000000000001"
    assert uuid_text(2**64 + 255) == "00000000-0000-0001-0000-0000000000ff"


def test_report15_shape():
    """1.5.1: no 1.6 keys, agentic_graph without source_models, rows without `agentic` and with
    turn_index 0."""
    o = _oracle("two15")
    res = _result("two.jsonl", o)
    rep = report.summary(res, rules=R15)
    _assert_summary(rep, o["summary"])
    assert "source_models" not in rep["agentic_graph"] and "kv_eviction_policy" not in rep
    assert list(report.jsonl_rows(res, rules=R15)) == o["per_request"]


def test_mooncake_key_order_with_sla():
    keys = json.loads((DATA / "mooncake_sla_keys.json").read_text())
    recs = (SimulatedRequest("0", None, "0", "t.jsonl:1", 0, 0.0, 0.0, 0.0, 10.0, 12.0, 14.0, 14.0, 8, 3, 3, 0, 0, 1,
                             (), "completed"),)
    res = SimResult(recs, Timeline(((),)), (), ((2.0, 2),), 1, 1.0, None)
    for v, rules in (("1.6", R16), ("1.5", R15)):
        rep = report.summary(res, rules=rules, sla_ttft_ms=5000.0, sla_itl_ms=50.0)
        assert list(rep) == keys[v], v
    row = next(iter(report.jsonl_rows(res, rules=R16)))
    # a plain row: no authored id, no session labels when every session has one request,
    # uuid numbering rows in trace order (Dynamo's are random)
    assert list(row)[:4] == ["session_id", "turn_index", "uuid", "arrival_time_ms"]
    assert (row["session_id"], row["turn_index"], row["dispatched_at_ms"]) == (None, None, None)
    assert row["uuid"] == "00000000-0000-0000-0000-000000000001"


def test_mooncake_sessions_labelled_when_a_session_has_turns():
    def rec(i, sid, t):
        return SimulatedRequest(str(i), sid, str(i), f"t.jsonl:{i + 1}", 0, t, t, t, t + 1, t + 2, t + 2, t + 2, 8,
                                2, 2, 0, 0, 1, (), "completed")
    res = SimResult((rec(0, "A", 0.0), rec(1, None, 1.0), rec(2, "A", 5.0)), Timeline(((),)), (), (), 1, 1.0, None)
    rows = list(report.jsonl_rows(res, rules=R16))
    assert [(r["session_id"], r["turn_index"]) for r in rows] == [("A", 0), ("request_2", 0), ("A", 1)]


def test_itl_statistics_as_1_6_1():
    """400 gaps: DDSketch percentiles (bucket value exp(k ln g) * 2/(1+g)) at round((n-1)p), exact
    min and max, streamed mean and std."""
    d = json.loads((DATA / "itl_400.json").read_text())
    pairs: dict[float, int] = {}
    for g in d["gaps"]:
        pairs[g] = pairs.get(g, 0) + 1
    recs = (SimulatedRequest("0", None, "0", "t.jsonl:1", 0, 0.0, 0.0, 0.0, 1.0, 2.0, 3.0, 3.0, 8, 3, 3, 0, 0, 1, (),
                             "completed"),)
    res = SimResult(recs, Timeline(((),)), (), tuple(sorted(pairs.items())), 1, 1.0, None)
    rep = report.summary(res, rules=R16)
    for k, v in d["summary"].items():
        if k.startswith(("mean", "std")):
            assert rep[k] == pytest.approx(v, rel=1e-13), k
        else:
            assert rep[k] == v, k


def test_serde_json_text():
    assert [float_text(x) for x in (0.0, 5.0, 1e16, 1.5e16, 1e15, 1e-7, 0.00001, 0.0001, 38.929194,
                                    16.622913999999998, 123456.5, -2.5, 1e300)] == [
        "0.0", "5.0", "1e16", "1.5e16", "1000000000000000.0", "1e-7", "0.00001", "0.0001", "38.929194",
        "16.622913999999998", "123456.5", "-2.5", "1e300"]
    assert dumps({"a": [1, 2.0, None, True], "é": "x\"\n"}) == '{"a":[1,2.0,null,true],"é":"x\\"\\n"}'


def test_report14_unchanged_by_default():
    """No rules (and 1.4 rules) keep 1.4.2's flat summary: none of the later keys."""
    res = _result("two.jsonl", _oracle("two"))
    for rules in (None, R14):
        rep = report.summary(res, rules=rules)
        assert "num_ttft_samples" not in rep and "agentic_graph" not in rep and len(rep) >= 71
        assert next(iter(report.jsonl_rows(res, rules=rules)))["uuid"] == "play-a/0"


# -- live oracle ---------------------------------------------------------------------------------

def _oracle16() -> str:
    from oracle_cases import oracle16_or_skip

    return oracle16_or_skip()


@pytest.mark.slow
@pytest.mark.parametrize("trace,block", [("two.jsonl", 4), ("ag1.jsonl", 4)])
def test_live_oracle16_report(tmp_path, trace, block):
    """The oracle run now on the stored traces: its report shape, rows and agentic digests are
    what trace-pipe derives from the oracle's times, and (where trace-pipe's engine times agree)
    trace-pipe's own replay gives the same rows."""
    py = _oracle16()
    tool = Path("/work/shared/tools/dynamo16_replay.py")
    if not tool.exists():
        pytest.skip("shared/tools/dynamo16_replay.py not found")
    out = tmp_path / "R"
    subprocess.run([py, str(tool), str(DATA / trace), "--trace-format", "agentic_mooncake", "--router-mode",
                    "round_robin", "--num-workers", "1", "--trace-block-size", str(block), "--extra-engine-args",
                    json.dumps({"block_size": block}), "--report-json", f"{out}.json", "--report-full-json",
                    f"{out}.full.json", "--report-jsonl", f"{out}.jsonl"], check=True, capture_output=True)
    o = json.loads(Path(f"{out}.full.json").read_text())
    jl = [json.loads(x) for x in Path(f"{out}.jsonl").read_text().splitlines()]
    assert jl == o["per_request"]
    res = _result(trace, o)
    rep = report.summary(res, rules=R16)
    _assert_summary(rep, o["summary"])
    assert list(report.jsonl_rows(res, rules=R16)) == o["per_request"]
    mf = read_rows([str(DATA / trace)])
    ours = run_replay(mf.rows, mf.sources, "agentic_mooncake",
                      ReplayOptions(trace_block_size=block, engine=EngineArgs.from_json({"block_size": block}),
                                    rules=R16))
    _assert_summary(report.summary(ours, rules=R16), o["summary"])
    assert list(report.jsonl_rows(ours, rules=R16)) == o["per_request"]
