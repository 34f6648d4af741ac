"""Replay engine, DAG release and report against the numbers of dynamo-replay.md §7/§10 and the
1.4.2 observations (dynamo-replay-1.4.2-observed.md)."""

from __future__ import annotations

import json
import math

import pytest

from trace_pipe.pipeline.errors import TraceError
from trace_pipe.pipeline.mooncake import Row, row_from_json
from trace_pipe.sim import dag as dagmod
from trace_pipe.sim import report
from trace_pipe.sim.config import EngineArgs
from trace_pipe.sim.replay import ReplayOptions, run_replay
from trace_pipe.sim.timing import PolynomialTiming, quantize_ms


def rows_of(dicts: list[dict]) -> tuple[list[Row], list[str]]:
    rows = [row_from_json(dict(d), f"t.jsonl:{i + 1}") for i, d in enumerate(dicts)]
    return rows, [f"t.jsonl:{i + 1}" for i in range(len(rows))]


def replay(dicts, fmt="mooncake", tbs=4, workers=1, router="round_robin", **engine):
    rows, src = rows_of(dicts)
    eng = EngineArgs.from_json({"block_size": 4, **engine})
    return run_replay(rows, src, fmt, ReplayOptions(num_workers=workers, router_mode=router, trace_block_size=tbs,
                                                    engine=eng))


def by_id(res):
    return {r.request_id: r for r in res.requests}


# -- timing -------------------------------------------------------------------------------

def test_polynomial_and_quantisation_match_observed_single_requests():
    # observed §1a: TTFT = P(L) + D(ceil(L/16)/16384), bs 16
    t = PolynomialTiming()
    for L, ttft in ((1, 22.259900), (100, 23.787045), (5000, 109.706006)):
        p = quantize_ms(t.prefill_ms(L, 1, None), 1.0)
        d = quantize_ms(t.decode_ms(-(-L // 16), 16384, 0, 1, None), 1.0)
        assert round(p + d, 6) == ttft
    # P(5000) = 102.9435925 rounds up to 102943593 ns
    assert quantize_ms(t.prefill_ms(5000, 1, None), 1.0) == pytest.approx(102.943593, abs=1e-12)


def test_mean_based_prefill_and_chunking_observed():
    # §1b: two prompts in one pass use T = 2*(21//2) = 20
    res = replay([{"timestamp": 0, "input_length": 8, "output_length": 2, "hash_ids": [1, 2]},
                  {"timestamp": 0, "input_length": 13, "output_length": 2, "hash_ids": [3, 4, 5, 6]}])
    assert [round(r.first_token_ms - r.ready_ms, 6) for r in res.requests] == [22.565033, 22.565033]
    # §1d: chunked prefill, mnbt 8 -> P(8)+P(8)+P(4)+D(5/G), then D(6/G)
    res = replay([{"timestamp": 0, "input_length": 20, "output_length": 2, "hash_ids": [1, 2, 3, 4, 5]}],
                 max_num_batched_tokens=8)
    r = res.requests[0]
    assert round(r.first_token_ms, 6) == 55.564468
    assert round(r.last_token_ms - r.first_token_ms, 6) == 5.759776


def test_rejection_does_not_wait_for_token_budget_observed():
    # 1.4.2 rejects a head too large for the pool in a pass whose token budget a chunk already
    # spent (oracle: terminal 33.245828 = P(8) + P(8), the end of the second chunk pass)
    res = replay([{"timestamp": 0, "input_length": 20, "output_length": 2, "hash_ids": [1, 2, 3, 4, 5]},
                  {"timestamp": 0.5, "input_length": 40, "output_length": 2, "hash_ids": list(range(10, 20))}],
                 num_gpu_blocks=8, max_num_batched_tokens=8)
    a, r = res.requests
    assert (r.status, r.end_ms) == ("rejected", 33.245827999999996)
    assert (a.first_token_ms, a.end_ms) == (79.249551, 111.018301)
    assert report.summary(res)["duration_ms"] == 111.018301
    # a second such head right behind is rejected in the same pass (a rejection does not end admission)
    res = replay([{"timestamp": 0, "input_length": 20, "output_length": 2, "hash_ids": [1, 2, 3, 4, 5]},
                  {"timestamp": 0.5, "input_length": 40, "output_length": 2, "hash_ids": list(range(10, 20))},
                  {"timestamp": 0.6, "input_length": 44, "output_length": 2, "hash_ids": list(range(30, 41))}],
                 num_gpu_blocks=8, max_num_batched_tokens=8)
    assert [(r.status, r.end_ms) for r in res.requests] == [("completed", 111.018301), ("rejected", 33.245827999999996),
                                                             ("rejected", 33.245827999999996)]


def test_chunking_off_prompt_over_budget_runs_when_cached_observed():
    # chunked prefill off, mnbt 30: a 40-token prompt with 24 tokens cached computes 16 and runs
    # (oracle: TTFT 22.517418, reused 24); with nothing cached it is a dead end, as in 1.4.2
    rows = [{"timestamp": 0, "input_length": 24, "output_length": 1, "hash_ids": [1, 2, 3, 4, 5, 6]},
            {"timestamp": 100, "input_length": 40, "output_length": 2, "hash_ids": list(range(1, 11))}]
    res = replay(rows, max_num_batched_tokens=30, enable_chunked_prefill=False)
    b = res.requests[1]
    assert (b.cached_tokens, b.first_token_ms, b.end_ms) == (24, 122.51741799999999, 128.293668)
    rows[1]["hash_ids"] = list(range(21, 31))
    with pytest.raises(TraceError, match="chunked prefill disabled.*dead end with 1 in-flight"):
        replay(rows, max_num_batched_tokens=30, enable_chunked_prefill=False)


def test_lifo_preemption_observed():
    # §5: G 6; the second request is preempted and re-admitted with reused 4
    res = replay([{"timestamp": 0, "input_length": 8, "output_length": 10, "hash_ids": [1, 2]},
                  {"timestamp": 0.5, "input_length": 8, "output_length": 10, "hash_ids": [3, 4]}],
                 num_gpu_blocks=6)
    a, b = res.requests
    assert round(a.first_token_ms, 6) == 37.506247 and round(a.last_token_ms, 6) == 343.132495
    assert round(b.first_token_ms, 6) == 87.002494 and round(b.last_token_ms, 6) == 540.104656
    assert b.cached_tokens == 4 and b.first_cached_tokens == 0 and b.admissions == 2
    rep = report.summary(res)
    assert rep["prefix_cache_reused_ratio"] == 0.25 and rep["first_admission_prefix_cache_reused_ratio"] == 0.0


def test_eviction_prefers_never_hashed_blocks_observed():
    # §4: the last row keeps reused 8 because a never-hashed free block is taken first
    res = replay([{"timestamp": 0, "input_length": 8, "output_length": 1, "hash_ids": [1, 2]},
                  {"timestamp": 100, "input_length": 2, "output_length": 1, "hash_ids": [9]},
                  {"timestamp": 200, "input_length": 8, "output_length": 1, "hash_ids": [5, 6]},
                  {"timestamp": 300, "input_length": 12, "output_length": 1, "hash_ids": [1, 2, 7]}],
                 num_gpu_blocks=4)
    last = res.requests[-1]
    assert last.cached_tokens == 8 and round(last.first_token_ms, 6) == 348.330910


def test_parity_fixture_two_8_token_requests():
    # dynamo-replay.md §7, scenario aggregated_kv_one_worker (G 32, speedup 1000, decode speedup 1000)
    res = replay([{"timestamp": 0, "input_length": 8, "output_length": 3, "hash_ids": [1, 2]},
                  {"timestamp": 0.5, "input_length": 8, "output_length": 2, "hash_ids": [1, 3]}],
                 num_gpu_blocks=32, speedup_ratio=1000, decode_speedup_ratio=1000)
    r1, r2 = res.requests
    assert round(r1.first_token_ms - r1.ready_ms, 6) == 0.016632
    assert round(r1.last_token_ms - r1.ready_ms, 6) == 0.016654
    assert r1.cached_tokens == 0
    assert round(r2.first_token_ms - r2.ready_ms, 6) == 0.016571 and r2.cached_tokens == 4
    rep = report.summary(res)
    assert rep["prefix_cache_reused_ratio"] == 0.25
    assert round(rep["duration_ms"], 6) == 0.516582
    assert (rep["completed_requests"], rep["total_input_tokens"], rep["total_output_tokens"],
            rep["processed_tokens"]) == (2, 16, 5, 21)
    assert round(rep["request_throughput_rps"], 1) == 3871.6


def test_report_matches_oracle_small_trace():
    # Output of `python -m dynamo.replay` 1.4.2 on these two rows (bs = tbs = 4, round_robin, 1 worker).
    res = replay([{"timestamp": 0, "input_length": 8, "output_length": 3, "hash_ids": [1, 2]},
                  {"timestamp": 0.5, "input_length": 8, "output_length": 2, "hash_ids": [1, 3]}])
    rep = report.summary(res)
    oracle = {"duration_ms": 50.441332, "max_itl_ms": 22.315345, "mean_ttft_ms": 33.2771795,
              "mean_itl_ms": 11.27610166666667, "median_itl_ms": 5.760360638893143,
              "p75_itl_ms": 22.309230910719446, "min_itl_ms": 5.756480000000003,
              "median_output_token_throughput_per_user": 173.64295686596415,
              "mean_tpot_ms": 9.896196250000003, "std_ttft_ms": 10.9076725, "std_itl_ms": 7.805923820168386,
              "decode_worker_seconds": 0.050441332000000005, "gpu_hours": 1.4011481111111113e-05}
    for k, v in oracle.items():
        assert rep[k] == pytest.approx(v, rel=1e-12), k


def test_percentile_rank_is_half_up():
    vals = [float(x) for x in range(6)]
    st = report._exact_stats("x", vals)
    assert st["median_x_ms"] == 3.0 and st["p90_x_ms"] == 5.0
    st = report._exact_stats("x", [float(x) for x in range(10)])
    assert st["p90_x_ms"] == 8.0


# -- DAG release (§10 items 1, 2, 3, 6, 11) -------------------------------------------------

def _dag(dicts, fmt="agentic_mooncake"):
    rows, src = rows_of(dicts)
    return dagmod.build_dag(rows, src, fmt)


def test_item1_release_after_dependency_completion_plus_delay():
    d = _dag([{"request_id": "r1", "timestamp": 0, "input_length": 1, "output_length": 1, "hash_ids": [1]},
              {"request_id": "r2", "timestamp": 100, "input_length": 1, "output_length": 1, "hash_ids": [2],
               "wait_for": ["r1"], "delay": 5}])
    heap = d.initial()
    assert [(t, i) for t, _o, _n, i in heap] == [(0.0, 0)]
    heap.clear()
    d.fire(0, 10.0, dagmod.COMPLETION, heap)
    assert [(t, i) for t, _o, _n, i in heap] == [(15.0, 1)]


def test_item1_full_replay_observed_agentic_numbers():
    a = {"request_id": "a", "timestamp": 0, "input_length": 8, "output_length": 2, "hash_ids": [1, 2]}
    b = {"request_id": "b", "timestamp": 100, "input_length": 4, "output_length": 1, "hash_ids": [3],
         "wait_for": ["a"], "delay": 5, "tool_wait_ms": 3}
    res = replay([a, b], fmt="agentic_mooncake")
    ra, rb = res.requests
    assert round(ra.last_token_ms, 6) == 28.119396
    assert rb.ready_ms == ra.last_token_ms + 8
    assert round(rb.first_token_ms - rb.ready_ms, 6) == 22.305456
    assert round(report.summary(res)["duration_ms"], 6) == 58.424852


def test_item2_failed_dependency_still_releases():
    parent = {"request_id": "p", "timestamp": 0, "input_length": 17, "output_length": 1,
              "hash_ids": [1, 2, 3, 4, 5]}
    child = {"request_id": "c", "input_length": 4, "output_length": 1, "hash_ids": [9], "wait_for": ["p"], "delay": 5}
    res = replay([parent, child], fmt="agentic_mooncake", num_gpu_blocks=4)
    p, c = res.requests
    assert p.status == "rejected" and p.end_ms == 0.0
    assert c.ready_ms == 5.0 and c.status == "completed"
    rep = report.summary(res)
    assert (rep["num_requests"], rep["completed_requests"]) == (2, 1)
    assert round(rep["duration_ms"], 6) == 39.195910


def test_item3_slowest_dependency_and_join():
    d = _dag([{"request_id": "a", "timestamp": 0, "input_length": 1, "output_length": 1, "hash_ids": [1]},
              {"request_id": "b", "timestamp": 0, "input_length": 1, "output_length": 1, "hash_ids": [2]},
              {"request_id": "j", "timestamp": 1, "input_length": 1, "output_length": 1, "hash_ids": [3],
               "wait_for": ["a", "b"], "delay": 2}])
    heap = d.initial()
    assert sorted(i for *_x, i in heap) == [0, 1]
    heap.clear()
    d.fire(0, 10.0, dagmod.COMPLETION, heap)
    assert heap == []
    d.fire(1, 30.0, dagmod.COMPLETION, heap)
    assert [(t, i) for t, _o, _n, i in heap] == [(32.0, 2)]
    # the same join through the simulator (observed §8: rows a, c, j)
    a = {"request_id": "a", "timestamp": 0, "input_length": 8, "output_length": 2, "hash_ids": [1, 2]}
    c = {"request_id": "c", "timestamp": 0, "input_length": 16, "output_length": 3, "hash_ids": [11, 12, 13, 14]}
    j = {"request_id": "j", "input_length": 4, "output_length": 1, "hash_ids": [21], "wait_for": ["a", "c"], "delay": 2}
    res = replay([a, c, j], fmt="agentic_mooncake")
    r = by_id(res)
    assert round(r["c"].last_token_ms, 6) == 34.148687
    assert r["j"].ready_ms == r["c"].last_token_ms + 2
    rep = report.summary(res)
    assert round(rep["duration_ms"], 6) == 58.454143
    play = [p for p in res.plays if "j" in p.request_ids][0]
    assert play.critical_path == ("c", "j") and play.critical_waits_ms == (0.0, 2.0)


def test_item6_legacy_agentic_child_waits_delay_plus_tool():
    root = {"request_id": "root", "timestamp": 0, "input_length": 4, "output_length": 2, "hash_ids": [1]}
    child = {"request_id": "child", "input_length": 4, "output_length": 1, "hash_ids": [1], "wait_for": ["root"],
             "delay": 2, "tool_wait_ms": 3}
    res = replay([root, child], fmt="agentic_mooncake")
    r = by_id(res)
    assert [x.status for x in res.requests] == ["completed", "completed"]
    assert r["child"].ready_ms == r["root"].last_token_ms + 5


def test_item11_plain_mooncake_sessions():
    rows = [{"session_id": "a", "timestamp": 1000, "input_length": 8, "output_length": 2, "hash_ids": [1, 2]},
            {"session_id": "a", "timestamp": 1001, "delay": 50, "input_length": 8, "output_length": 2, "hash_ids": [1, 3]},
            {"session_id": "b", "timestamp": 1010, "input_length": 8, "output_length": 2, "hash_ids": [5, 6]},
            {"session_id": "b", "timestamp": 1060, "input_length": 8, "output_length": 2, "hash_ids": [5, 7]}]
    res = replay(rows)
    a1, a2, b1, b2 = res.requests
    assert a2.ready_ms == a1.end_ms + 50
    assert b1.ready_ms == 10.0
    assert b2.ready_ms == b1.end_ms + 50


@pytest.mark.parametrize("dicts,needle", [
    ([{"request_id": "a", "input_length": 1, "output_length": 1, "hash_ids": [1], "wait_for": ["zz"]}],
     "t.jsonl:1: field `wait_for`: unknown request id 'zz'"),
    ([{"request_id": "a", "input_length": 1, "output_length": 1, "hash_ids": [1], "wait_for": ["a"]}],
     "t.jsonl:1: field `wait_for`: request 'a' waits for itself"),
    ([{"request_id": "a", "input_length": 1, "output_length": 1, "hash_ids": [1], "wait_for": ["b"]},
      {"request_id": "b", "input_length": 1, "output_length": 1, "hash_ids": [1], "wait_for": ["a"]}],
     "cycle detected: a -> b -> a"),
    ([{"request_id": "a", "input_length": 1, "output_length": 1, "hash_ids": [1]},
      {"request_id": "a", "input_length": 1, "output_length": 1, "hash_ids": [1]}],
     "t.jsonl:2: field `request_id`: duplicate request id 'a'"),
    ([{"request_id": "a", "input_length": 9, "output_length": 1, "hash_ids": [1, 2]}],
     "t.jsonl:1: field `input_length`: 9 tokens but only 8 tokens can be synthesized"),
])
def test_validation_errors_are_one_line(dicts, needle):
    with pytest.raises(TraceError) as e:
        replay(dicts, fmt="agentic_mooncake")
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_non_finite_delay_rejected():
    rows = [Row(input_length=1, output_length=1, hash_ids=(1,), request_id="a"),
            Row(input_length=1, output_length=1, hash_ids=(1,), request_id="b", wait_for=("a",), delay=math.inf)]
    with pytest.raises(TraceError, match=r"src:2: field `delay` must be a finite number >= 0"):
        dagmod.build_dag(rows, ["src:1", "src:2"], "agentic_mooncake")


def test_kv_router_prefers_cached_worker_and_is_seeded():
    # R1 lands somewhere; R2 shares its 8-block prefix and must follow it (overlap 8 vs 0).
    rows = [{"timestamp": 0, "input_length": 32, "output_length": 1, "hash_ids": list(range(1, 9))},
            {"timestamp": 100, "input_length": 36, "output_length": 1, "hash_ids": list(range(1, 9)) + [90]}]
    res = replay(rows, workers=2, router="kv_router")
    assert res.requests[0].worker == res.requests[1].worker
    again = replay(rows, workers=2, router="kv_router")
    assert [r.worker for r in again.requests] == [r.worker for r in res.requests]


def test_round_robin_alternates_and_jsonl_keys():
    rows = [{"timestamp": t, "input_length": 8, "output_length": 2, "hash_ids": [t + 1, t + 2]} for t in range(4)]
    res = replay(rows, workers=2)
    assert [r.worker for r in res.requests] == [0, 1, 0, 1]
    out = list(report.jsonl_rows(res))
    assert [o["request_id"] for o in out] == ["0", "1", "2", "3"]
    # ai-dynamo 1.4.2's keys in its order (its --report-jsonl on this shape of run), ours around them
    dynamo = ["session_id", "turn_index", "uuid", "arrival_time_ms", "first_admit_ms", "terminal_time_ms",
              "first_token_ms", "last_token_ms", "ttft_ms", "ttst_ms", "e2e_latency_ms", "itl_ms", "input_length",
              "requested_output_length", "output_length", "reused_input_tokens", "prefill_worker_idx",
              "decode_worker_idx", "prefill_admit_ms", "source_held_ms", "destination_reserved_ms",
              "destination_activated_ms", "decode_admit_ms", "source_released_ms", "decode_reused_input_tokens",
              "prefill_route_overlap_tokens", "decode_route_overlap_tokens", "terminal_status"]
    assert list(out[1]) == ["request_id", *dynamo, "play"]
    line = json.dumps(out[1])
    assert '"arrival_time_ms": 1.0, "first_admit_ms": 1.0' in line and '"prefill_admit_ms": null' in line
    json.dumps(report.summary(res))
    passes = list(res.timeline.passes())
    assert len(passes) == res.timeline.pass_count() and passes[0].start_ms == 0.0
