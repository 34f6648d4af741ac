"""Timing fitted from a recorded run (sim.fit) and the DistServe alignment reader."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import orjson
import pytest

from trace_pipe.pipeline.plain_rows import plain_rows
from trace_pipe.pipeline.request_graph import sort_key
from trace_pipe.pipeline.distserve import BLOCK_SIZE, read_distserve
from trace_pipe.pipeline.errors import TraceError
from trace_pipe.pipeline.readers import read_trace
from trace_pipe.sim.config import EngineArgs
from trace_pipe.sim import fit as fit_mod
from trace_pipe.sim.fit import (FittedTiming, engine_latency_ms, fit_timing, load_timing_file,
                                prefill_end_first_tokens, save_timing_file)
from trace_pipe.sim.replay import ReplayOptions, run_replay

RUNS = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "distserve_alignment" / "opt-13b-sharegpt"
needs_runs = pytest.mark.skipif(not RUNS.is_dir(), reason=f"DistServe alignment fixture not found at {RUNS}")
# the bench's vLLM-0.x engine (bench/bench_fidelity.py explains each value)
ENGINE = EngineArgs(block_size=16, num_gpu_blocks=3500, max_num_seqs=256, max_num_batched_tokens=2048 + 256,
                    enable_chunked_prefill=False, enable_prefix_caching=False)


@pytest.fixture(scope="module")
def fitted() -> FittedTiming:
    return fit_timing(read_trace([str(RUNS / "vllm-100-1.exp")]))


@needs_runs
def test_reader_orders_by_issue_time_and_never_shares_prefixes():
    t = read_distserve(str(RUNS / "vllm-100-1.exp"))
    assert len(t.requests) == 100
    first = t.requests[0]
    # the file's first element: 55-token prompt, 4 tokens out, TTFT 69.56 ms, latency 148.04 ms
    assert (first.request_id, first.input_length, first.output_tokens) == ("vllm-100-1#0", 55, 4)
    assert first.ttft_ms == pytest.approx(69.5630181580782, abs=1e-6)
    assert first.total_time_ms == pytest.approx(148.03585410118103, abs=1e-6)
    assert first.avg_itl_ms == pytest.approx((148.03585410118103 - 69.5630181580782) / 3, abs=1e-6)
    assert [r.start_ms for r in t.requests] == sorted(r.start_ms for r in t.requests)
    hashes = [h for r in t.requests for h in r.hashes]
    assert len(hashes) == len(set(hashes)) == sum(math.ceil(r.input_length / BLOCK_SIZE) for r in t.requests)
    rows, bs = plain_rows(t)
    assert bs == BLOCK_SIZE and rows[0].timestamp == 0.0 and rows[1].timestamp == 1380.0  # workload file: 1.3806 s


def test_reader_errors_are_one_line_and_never_eval(tmp_path):
    evil = tmp_path / "evil.exp"
    evil.write_text("__import__('os').system('touch pwned')\n{\n}\n")
    with pytest.raises(TraceError, match=r"evil\.exp:1: not a DistServe result") as e:
        read_distserve(str(evil))
    assert "\n" not in str(e.value) and not (tmp_path / "pwned").exists()
    bad = tmp_path / "bad.exp"
    bad.write_text("[{'prompt_len': 5, 'output_len': 2, 'issue_time': 1.0, 'first_token_time': 1.1}]\n")
    with pytest.raises(TraceError, match=r"bad\.exp:1: request 0: field `complete_time` is missing"):
        read_trace([str(bad)])
    bad.write_text("[{'prompt_len': 0, 'output_len': 2, 'issue_time': 1.0, 'first_token_time': 1.1, "
                   "'complete_time': 1.2}]\n")
    with pytest.raises(TraceError, match=r"request 0: field `prompt_len` must be an integer >= 1"):
        read_trace([str(bad)])


@needs_runs
def test_fit_on_the_1_rps_vllm_run(fitted):
    p0, p1, p2 = fitted.prefill
    d0, d1, d2 = fitted.decode
    assert p0 == pytest.approx(29.05, abs=0.01) and p1 == pytest.approx(0.10077, abs=1e-5)
    assert p2 == pytest.approx(1.618e-5, abs=1e-8)
    # batch and context are collinear here (r = 0.93): the fit keeps context alone
    assert fitted.fit_error["decode_terms"] == "context" and d1 == 0.0 and not fitted.needs_requests
    assert d0 == pytest.approx(22.59, abs=0.01) and d2 == pytest.approx(0.0011029, abs=1e-7)
    pe, de = fitted.fit_error["prefill"], fitted.fit_error["decode"]
    assert (pe["n"], de["n"], fitted.fit_error["contended_requests_excluded"]) == (85, 100, 15)
    assert pe["r2"] == pytest.approx(0.927, abs=1e-3) and pe["median_ape"] == pytest.approx(0.068, abs=1e-3)
    assert de["r2"] == pytest.approx(0.911, abs=1e-3) and de["median_ape"] == pytest.approx(0.021, abs=1e-3)
    # the model the engine sees: a 1000-token prefill and a decode step over 10k context tokens
    assert fitted.prefill_ms(1000, 1, None) == pytest.approx(29.05 + 100.77 + 16.18, abs=0.05)
    assert fitted.decode_ms(0, 1, 10_000, 10, None) == pytest.approx(22.59 + 11.03, abs=0.02)
    assert fitted.prefill_ms(0, 0, None) == 0.0
    text = "\n".join(fitted.describe())
    assert "prefill ms = 29.05 + 0.10077*T" in text and "decode fit: n=100" in text
    # the explicit two-term fit is available and fits its own data better (it extrapolates worse)
    both = fit_timing(read_trace([str(RUNS / "vllm-100-1.exp")]), decode_terms="batch+context")
    assert both.decode[1] == pytest.approx(0.721, abs=1e-3) and both.needs_requests
    assert both.fit_error["decode"]["median_ape"] < de["median_ape"]


@needs_runs
def test_timing_file_round_trip_and_errors(fitted, tmp_path):
    f = tmp_path / "fit.json"
    save_timing_file(fitted, f)
    back = load_timing_file(f)
    assert back == fitted and back.coefficients == fitted.coefficients
    assert back.fit_error == orjson.loads(orjson.dumps(fitted.fit_error))
    assert back.prefill_ms(777, 2, None) == fitted.prefill_ms(777, 2, None)
    d = orjson.loads(f.read_bytes())
    d["decode"]["per_context_token_ms"] = "fast"
    f.write_bytes(orjson.dumps(d))
    with pytest.raises(TraceError, match=r"fit\.json: field `decode\.per_context_token_ms`: expected a finite number"):
        load_timing_file(f)
    f.write_text("{")
    with pytest.raises(TraceError, match=r"fit\.json: invalid JSON"):
        load_timing_file(f)
    with pytest.raises(TraceError, match=r"missing\.json: cannot read timing file"):
        load_timing_file(tmp_path / "missing.json")


def test_fit_needs_recorded_times(tmp_path):
    m = tmp_path / "t.jsonl"
    m.write_text('{"timestamp": 0, "input_length": 8, "output_length": 3, "hash_ids": [1, 2]}\n')
    with pytest.raises(TraceError, match="needs recorded per-request times"):
        fit_timing(read_trace([str(m)]))


@needs_runs
def test_replay_of_the_1_5_rps_run_with_the_fit(fitted):
    """Measured (bench/bench_fidelity.py): TTFT median APE 9.5%, E2E 2.9% on vllm-150-1.5."""
    trace = read_trace([str(RUNS / "vllm-150-1.5.exp")])
    recorded = sorted(trace.requests, key=sort_key)
    rows, bs = plain_rows(trace)
    res = run_replay(rows, [r.request_id for r in recorded], "mooncake",
                     ReplayOptions(trace_block_size=bs, engine=ENGINE, timing=fitted, record=True))
    firsts = prefill_end_first_tokens(res, fitted)
    ttft = [abs(f - s.ready_ms - r.ttft_ms) / r.ttft_ms for r, s, f in zip(recorded, res.requests, firsts)]
    e2e = [abs(s.last_token_ms - s.ready_ms - r.total_time_ms) / r.total_time_ms
           for r, s in zip(recorded, res.requests)]
    assert all(s.status == "completed" for s in res.requests)
    assert 0.08 < statistics.median(ttft) < 0.105
    assert 0.02 < statistics.median(e2e) < 0.035
    # read at the pass end (the decode step included) the TTFT is much worse: the read-out matters
    raw = [abs(s.first_token_ms - s.ready_ms - r.ttft_ms) / r.ttft_ms for r, s in zip(recorded, res.requests)]
    assert statistics.median(raw) > 0.18


def test_fit_on_a_sequential_dynamo_chain(tmp_path):
    # one agent chain, no two requests overlapping: the recorded batch size is 1 throughout (to
    # rounding), so the decode fit keeps context alone instead of failing on a singular system
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from dynamo_records import req, write_jsonl

    recs, t = [], 1000
    for k in range(60):
        n_in, cached, out = 300 + (k * 97) % 700, (k * 53) % 300, 50 + (k * 31) % 150
        prefill = 20 + 0.05 * (n_in - cached)
        itl = 10 + 0.002 * (n_in + out / 2)
        total = round(prefill + 2 + (out - 1) * itl)
        hashes = list(range(1000 * k, 1000 * k + -(-n_in // 16)))
        r = req(f"q{k}", "main", None, t, t + total, hashes, bs=16, output_tokens=out, input_tokens=n_in,
                cached_tokens=cached, prefill_time_ms=prefill, ttft_ms=prefill + 2, avg_itl_ms=itl)
        r["request"]["replay"]["input_length"] = n_in
        recs.append(r)
        t += total + 500
    fit = fit_timing(read_trace([str(write_jsonl(tmp_path / "seq.jsonl", recs))]))
    assert fit.fit_error["decode_terms"] == "context"
    p0, p1, p2 = fit.prefill
    assert abs(p0 - 20) < 0.5 and abs(p1 - 0.05) < 1e-3 and abs(p2) < 1e-6


@needs_runs
def test_disaggregated_fit_and_engine_latency_on_distserve_c21d11():
    """DistServe's prefill instance never waits for a decode step and its decode instance never
    stalls for a prefill: the disaggregated fit subtracts neither. The engine latency is the
    median of (fitted prefill - gap between first tokens) over the 48 requests that arrived while
    another still waited for its first token."""
    trace = read_trace([str(RUNS / "distserve-c21d11-300-3.exp")])
    agg = fit_timing(trace)
    dis = fit_timing(trace, disaggregated=True)
    assert dis.fit_error["disaggregated"] and not agg.fit_error["disaggregated"]
    assert dis.prefill == pytest.approx((22.00, 0.067664, 4.996e-06), rel=1e-3)
    assert dis.decode == pytest.approx((19.93, 0.0, 0.0009611), rel=1e-3)
    # the aggregated fit takes a decode residual off each TTFT: a smaller intercept
    assert agg.prefill[0] < dis.prefill[0] - 1.0
    assert engine_latency_ms(dis) == 0.0 and "engine_latency_ms" not in dis.fit_error
    split = fit_timing(trace, disaggregated=True, split_latency=True)
    lat = engine_latency_ms(split)
    assert lat == pytest.approx(7.23, abs=0.01)
    assert split.prefill == pytest.approx((dis.prefill[0] - lat, dis.prefill[1], dis.prefill[2]))
    assert split.decode == dis.decode
    # the vLLM run: 15 such pairs, quartiles 1.5 and 6.7 ms: 3.85 ms
    assert engine_latency_ms(fit_timing(read_trace([str(RUNS / "vllm-100-1.exp")]), split_latency=True)) == \
        pytest.approx(3.85, abs=0.01)


def test_engine_latency_needs_pairs_most_of_which_show_it():
    obs = [fit_mod._Obs(0.0, 50.0, 60.0, 100, 100, 2, None, None, "a"),
           fit_mod._Obs(10.0, 90.0, 99.0, 100, 100, 2, None, None, "b")]  # gap 40 ms
    model = fit_mod.FittedTiming((30.0, 0.2, 0.0), (10.0, 0.0, 0.0))  # prefill(100) = 50 ms
    assert fit_mod._engine_latency(obs, model, min_points=1) == 10.0
    assert fit_mod._engine_latency(obs, model, min_points=2) == 0.0  # too few pairs
    slow = [*obs[:1], fit_mod._Obs(10.0, 110.0, 120.0, 100, 100, 2, None, None, "b")]  # gap 60: none
    assert fit_mod._engine_latency(slow, model, min_points=1) == 0.0
    capped = [*obs[:1], fit_mod._Obs(10.0, 55.0, 60.0, 100, 100, 2, None, None, "b")]  # gap 5: 45 > p0
    assert fit_mod._engine_latency(capped, model, min_points=1) == 30.0


@needs_runs
def test_given_decode_slopes_fit_only_the_intercept():
    """`decode_slopes` keeps the decode step's growth as given and fits the intercept alone, as the
    step-weighted mean of the rest; the weighted least-squares intercept is that same mean, so the
    fit's own slopes given back return its own intercept."""
    trace = read_trace([str(RUNS / "distserve-c21d11-300-3.exp")])
    own = fit_timing(trace, disaggregated=True, split_latency=True)
    back = fit_timing(trace, disaggregated=True, split_latency=True, decode_slopes=own.decode[1:])
    assert back.decode == pytest.approx(own.decode, rel=1e-9) and back.prefill == own.prefill
    assert back.fit_error["decode_terms"] == "given slopes"
    # DistServe's kernel profile of a TP1 decode instance (0.0385 ms per request, 6.27e-4 ms per
    # context token) grows more slowly than this run's own slope (9.6e-4): the intercept absorbs
    # the difference at the run's ~19.5 decoding requests of ~900 tokens each (19.93 -> 25.03 ms)
    prof = fit_timing(trace, disaggregated=True, split_latency=True,
                      decode_slopes=(0.03850697740828398, 0.0006269356524350583))
    assert prof.decode == pytest.approx((25.03, 0.0385070, 0.000626936), rel=1e-3)
    assert prof.needs_requests and prof.prefill == own.prefill
