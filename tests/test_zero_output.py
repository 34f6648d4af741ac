"""Requests with 0 output tokens, replayed as ai-dynamo 1.4.2 does (pinned by experiment).

1.4.2 schedules a 0-output request like any other: it is admitted (holding its blocks and a
running slot), takes its prompt's prefix-cache hit (all of it: with no token to sample, the last
full block is not recomputed), and is a prefill participant while it computes prompt tokens. In
the pass where its prompt completes it finishes at the pass end with no token: it is not
decode-ready and its blocks (hashed, so later requests hit them) are released before the decode
step, so they are not in that pass's u. A fully cached one computes nothing, so a pass holding
only it lasts 0 ms. Once a pass's token budget is spent, admission still examines one more head
(rejections aside), so one fully cached 0-output request is admitted at budget 0 and a second
is not. It counts in completed_requests, total_input_tokens, the prefix-cache ratios
and duration_ms, never in TTFT/e2e/ITL; its DAG dependents are released at its terminal time plus
their delay; the kv_router drops its pending prefill at completion. With an SLA, it fails a TTFT
or ITL one and meets an e2e one when terminal - arrival is within it.

The constants below are `python -m dynamo.replay` 1.4.2 output (round_robin unless stated, bs =
tbs = 4 unless stated, offline); `test_live_oracle` (slow) reruns every case on the oracle when
its venv exists and compares the full report and every JSONL row.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

from trace_pipe.pipeline.mooncake import row_from_json
from trace_pipe.proto.decode import decode_file
from trace_pipe.sim import report
from trace_pipe.sim.config import EngineArgs
from trace_pipe.sim.recorded import Service, run_recorded
from trace_pipe.sim.replay import ReplayOptions, run_replay
from trace_pipe.sim.timing import PolynomialTiming, quantize_ms

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
WEKA_TWO_PLAYS = SHARED / "fixtures" / "dynamo" / "weka-two-plays.jsonl"
sys.path.insert(0, str(ROOT / "bench"))

import oracle_cases  # noqa: E402
from parity_replay import request_rows, run_oracle  # noqa: E402


class Case(NamedTuple):
    rows: list[dict]
    opts: dict  # engine (extra engine args over block_size 4), workers, mode, fmt, tbs (default 4)
    report: dict  # oracle report values
    requests: list[tuple]  # oracle JSONL rows (arrival, input, requested out, out, first admit,
    # first token, last token, terminal, reused), sorted; empty for agentic (1.4.2 writes none)


CASES = {
    'lone': Case(
        [{"timestamp": 0, "input_length": 8, "output_length": 0, "hash_ids": [1, 2]}],
        {},
        {'num_requests': 1, 'completed_requests': 1, 'total_input_tokens': 8, 'total_output_tokens': 0, 'processed_tokens': 8, 'duration_ms': 16.622913999999998, 'request_throughput_rps': 60.15792417623047, 'input_throughput_tok_s': 481.2633934098438, 'output_throughput_tok_s': 0.0, 'prefix_cache_reused_ratio': 0.0, 'first_admission_prefix_cache_reused_ratio': 0.0, 'mean_ttft_ms': 0.0, 'max_ttft_ms': 0.0, 'mean_e2e_latency_ms': 0.0, 'max_e2e_latency_ms': 0.0, 'mean_itl_ms': 0.0, 'median_itl_ms': 0.0, 'mean_ttst_ms': 0.0, 'mean_tpot_ms': 0.0},
        [(0.0, 8, 0, 0, 0.0, None, None, 16.622913999999998, 0)]),
    'same_pass': Case(
        [{"timestamp": 0, "input_length": 8, "output_length": 3, "hash_ids": [1, 2]},
          {"timestamp": 0, "input_length": 8, "output_length": 0, "hash_ids": [3, 4]},
          {"timestamp": 0, "input_length": 8, "output_length": 2, "hash_ids": [5, 6]}],
        {},
        {'num_requests': 3, 'completed_requests': 3, 'total_input_tokens': 24, 'total_output_tokens': 5, 'processed_tokens': 29, 'duration_ms': 34.128915000000006, 'request_throughput_rps': 87.90200333060689, 'input_throughput_tok_s': 703.2160266448551, 'output_throughput_tok_s': 146.5033388843448, 'prefix_cache_reused_ratio': 0.0, 'first_admission_prefix_cache_reused_ratio': 0.0, 'mean_ttft_ms': 22.61925, 'max_ttft_ms': 22.61925, 'mean_e2e_latency_ms': 31.253970500000005, 'max_e2e_latency_ms': 34.128915000000006, 'mean_itl_ms': 5.756480333333336, 'median_itl_ms': 5.760360638893143, 'mean_ttst_ms': 5.759776000000002, 'mean_tpot_ms': 5.7573042500000025},
        [(0.0, 8, 0, 0, 0.0, None, None, 22.61925, 0),
         (0.0, 8, 2, 2, 0.0, 22.61925, 28.379026000000003, 28.379026000000003, 0),
         (0.0, 8, 3, 3, 0.0, 22.61925, 34.128915000000006, 34.128915000000006, 0)]),
    'between': Case(
        [{"timestamp": 0, "input_length": 8, "output_length": 5, "hash_ids": [1, 2]},
          {"timestamp": 1, "input_length": 8, "output_length": 0, "hash_ids": [3, 4]},
          {"timestamp": 2, "input_length": 8, "output_length": 2, "hash_ids": [5, 6]}],
        {},
        {'num_requests': 3, 'completed_requests': 3, 'total_input_tokens': 24, 'total_output_tokens': 7, 'processed_tokens': 31, 'duration_ms': 62.130004, 'request_throughput_rps': 48.285849136594294, 'input_throughput_tok_s': 386.28679309275435, 'output_throughput_tok_s': 112.66698131872002, 'prefix_cache_reused_ratio': 0.0, 'first_admission_prefix_cache_reused_ratio': 0.0, 'mean_ttft_ms': 32.619978499999995, 'max_ttft_ms': 42.87044999999999, 'mean_e2e_latency_ms': 55.380114999999996, 'max_e2e_latency_ms': 62.130004, 'mean_itl_ms': 9.104054600000001, 'median_itl_ms': 5.760360638893143, 'mean_ttst_ms': 14.130359499999997, 'mean_tpot_ms': 7.849950125000001},
        [(0.0, 8, 5, 5, 0.0, 22.369507, 62.130004, 62.130004, 0),
         (1.0, 8, 0, 0, 22.369507, None, None, 44.87044999999999, 0),
         (2.0, 8, 2, 2, 22.369507, 44.87044999999999, 50.63022599999999, 50.63022599999999, 0)]),
    'cache_after': Case(
        [{"timestamp": 0, "input_length": 8, "output_length": 0, "hash_ids": [1, 2]},
          {"timestamp": 100, "input_length": 8, "output_length": 2, "hash_ids": [1, 2]},
          {"timestamp": 200, "input_length": 12, "output_length": 2, "hash_ids": [1, 2, 3]}],
        {},
        {'num_requests': 3, 'completed_requests': 3, 'total_input_tokens': 28, 'total_output_tokens': 4, 'processed_tokens': 32, 'duration_ms': 228.065234, 'request_throughput_rps': 13.15413115529919, 'input_throughput_tok_s': 122.77189078279243, 'output_throughput_tok_s': 17.53884154039892, 'prefix_cache_reused_ratio': 0.42857142857142855, 'first_admission_prefix_cache_reused_ratio': 0.42857142857142855, 'mean_ttft_ms': 22.310401000000006, 'max_ttft_ms': 22.312049000000002, 'mean_e2e_latency_ms': 28.061938000000012, 'max_e2e_latency_ms': 28.065234000000004, 'mean_itl_ms': 5.751537000000006, 'median_itl_ms': 5.748851426827424, 'mean_ttst_ms': 5.751537000000006, 'mean_tpot_ms': 5.751537000000006},
        [(0.0, 8, 0, 0, 0.0, None, None, 16.622913999999998, 0),
         (100.0, 8, 2, 2, 100.0, 122.30875300000001, 128.05864200000002, 128.05864200000002, 4),
         (200.0, 12, 2, 2, 200.0, 222.312049, 228.065234, 228.065234, 8)]),
    'zero_hits': Case(
        [{"timestamp": 0, "input_length": 8, "output_length": 1, "hash_ids": [1, 2]},
          {"timestamp": 100, "input_length": 12, "output_length": 0, "hash_ids": [1, 2, 3]},
          {"timestamp": 200, "input_length": 8, "output_length": 0, "hash_ids": [1, 2]}],
        {},
        {'num_requests': 3, 'completed_requests': 3, 'total_input_tokens': 28, 'total_output_tokens': 1, 'processed_tokens': 29, 'duration_ms': 200.0, 'request_throughput_rps': 15.0, 'input_throughput_tok_s': 140.0, 'output_throughput_tok_s': 5.0, 'prefix_cache_reused_ratio': 0.5714285714285714, 'first_admission_prefix_cache_reused_ratio': 0.5714285714285714, 'mean_ttft_ms': 22.369507, 'max_ttft_ms': 22.369507, 'mean_e2e_latency_ms': 22.369507, 'max_e2e_latency_ms': 22.369507, 'mean_itl_ms': 0.0, 'median_itl_ms': 0.0, 'mean_ttst_ms': 0.0, 'mean_tpot_ms': 0.0},
        [(0.0, 8, 1, 1, 0.0, 22.369507, 22.369507, 22.369507, 0),
         (100.0, 12, 0, 0, 100.0, None, None, 116.56216, 8),
         (200.0, 8, 0, 0, 200.0, None, None, 200.0, 8)]),
    'same_prefix_pass': Case(
        [{"timestamp": 0, "input_length": 8, "output_length": 0, "hash_ids": [1, 2]},
          {"timestamp": 0, "input_length": 12, "output_length": 2, "hash_ids": [1, 2, 3]}],
        {},
        {'num_requests': 2, 'completed_requests': 2, 'total_input_tokens': 20, 'total_output_tokens': 2, 'processed_tokens': 22, 'duration_ms': 28.186755999999995, 'request_throughput_rps': 70.95530964968087, 'input_throughput_tok_s': 709.5530964968087, 'output_throughput_tok_s': 70.95530964968087, 'prefix_cache_reused_ratio': 0.4, 'first_admission_prefix_cache_reused_ratio': 0.4, 'mean_ttft_ms': 22.433570999999997, 'max_ttft_ms': 22.433570999999997, 'mean_e2e_latency_ms': 28.186755999999995, 'max_e2e_latency_ms': 28.186755999999995, 'mean_itl_ms': 5.753184999999998, 'median_itl_ms': 5.753184999999998, 'mean_ttst_ms': 5.753184999999998, 'mean_tpot_ms': 5.753184999999998},
        [(0.0, 8, 0, 0, 0.0, None, None, 22.433570999999997, 0),
         (0.0, 12, 2, 2, 0.0, 22.433570999999997, 28.186755999999995, 28.186755999999995, 8)]),
    'same_prefix_pass2': Case(
        [{"timestamp": 0, "input_length": 8, "output_length": 2, "hash_ids": [1, 2]},
          {"timestamp": 0, "input_length": 12, "output_length": 0, "hash_ids": [1, 2, 3]}],
        {},
        {'num_requests': 2, 'completed_requests': 2, 'total_input_tokens': 20, 'total_output_tokens': 2, 'processed_tokens': 22, 'duration_ms': 28.180163999999998, 'request_throughput_rps': 70.9719077575276, 'input_throughput_tok_s': 709.7190775752761, 'output_throughput_tok_s': 70.9719077575276, 'prefix_cache_reused_ratio': 0.4, 'first_admission_prefix_cache_reused_ratio': 0.4, 'mean_ttft_ms': 22.430274999999998, 'max_ttft_ms': 22.430274999999998, 'mean_e2e_latency_ms': 28.180163999999998, 'max_e2e_latency_ms': 28.180163999999998, 'mean_itl_ms': 5.749889, 'median_itl_ms': 5.749889, 'mean_ttst_ms': 5.749889, 'mean_tpot_ms': 5.749889},
        [(0.0, 8, 2, 2, 0.0, 22.430274999999998, 28.180163999999998, 28.180163999999998, 0),
         (0.0, 12, 0, 0, 0.0, None, None, 22.430274999999998, 8)]),
    'holds_blocks': Case(
        [{"timestamp": 0, "input_length": 8, "output_length": 0, "hash_ids": [1, 2]},
          {"timestamp": 0, "input_length": 12, "output_length": 1, "hash_ids": [3, 4, 5]}],
        {'engine': {'num_gpu_blocks': 4}},
        {'num_requests': 2, 'completed_requests': 2, 'total_input_tokens': 20, 'total_output_tokens': 1, 'processed_tokens': 21, 'duration_ms': 65.075346, 'request_throughput_rps': 30.733605319593693, 'input_throughput_tok_s': 307.3360531959369, 'output_throughput_tok_s': 15.366802659796846, 'prefix_cache_reused_ratio': 0.0, 'first_admission_prefix_cache_reused_ratio': 0.0, 'mean_ttft_ms': 65.075346, 'max_ttft_ms': 65.075346, 'mean_e2e_latency_ms': 65.075346, 'max_e2e_latency_ms': 65.075346, 'mean_itl_ms': 0.0, 'median_itl_ms': 0.0, 'mean_ttst_ms': 0.0, 'mean_tpot_ms': 0.0},
        [(0.0, 8, 0, 0, 0.0, None, None, 16.622913999999998, 0),
         (0.0, 12, 1, 1, 16.622913999999998, 65.075346, 65.075346, 65.075346, 0)]),
    'holds_seq': Case(
        [{"timestamp": 0, "input_length": 8, "output_length": 0, "hash_ids": [1, 2]},
          {"timestamp": 0, "input_length": 8, "output_length": 2, "hash_ids": [3, 4]}],
        {'engine': {'max_num_seqs': 1}},
        {'num_requests': 2, 'completed_requests': 2, 'total_input_tokens': 16, 'total_output_tokens': 2, 'processed_tokens': 18, 'duration_ms': 44.742309999999996, 'request_throughput_rps': 44.700418909975824, 'input_throughput_tok_s': 357.6033512798066, 'output_throughput_tok_s': 44.700418909975824, 'prefix_cache_reused_ratio': 0.0, 'first_admission_prefix_cache_reused_ratio': 0.0, 'mean_ttft_ms': 38.99242099999999, 'max_ttft_ms': 38.99242099999999, 'mean_e2e_latency_ms': 44.742309999999996, 'max_e2e_latency_ms': 44.742309999999996, 'mean_itl_ms': 5.749889000000003, 'median_itl_ms': 5.749889000000003, 'mean_ttst_ms': 5.749889000000003, 'mean_tpot_ms': 5.749889000000003},
        [(0.0, 8, 0, 0, 0.0, None, None, 16.622913999999998, 0),
         (0.0, 8, 2, 2, 16.622913999999998, 38.99242099999999, 44.742309999999996, 44.742309999999996, 0)]),
    'chunked': Case(
        [{"timestamp": 0, "input_length": 20, "output_length": 0, "hash_ids": [1, 2, 3, 4, 5]}],
        {'engine': {'max_num_batched_tokens': 8}},
        {'num_requests': 1, 'completed_requests': 1, 'total_input_tokens': 20, 'total_output_tokens': 0, 'processed_tokens': 20, 'duration_ms': 49.807987999999995, 'request_throughput_rps': 20.07710088590609, 'input_throughput_tok_s': 401.5420177181219, 'output_throughput_tok_s': 0.0, 'prefix_cache_reused_ratio': 0.0, 'first_admission_prefix_cache_reused_ratio': 0.0, 'mean_ttft_ms': 0.0, 'max_ttft_ms': 0.0, 'mean_e2e_latency_ms': 0.0, 'max_e2e_latency_ms': 0.0, 'mean_itl_ms': 0.0, 'median_itl_ms': 0.0, 'mean_ttst_ms': 0.0, 'mean_tpot_ms': 0.0},
        [(0.0, 20, 0, 0, 0.0, None, None, 49.807987999999995, 0)]),
    'chunked_with_decode': Case(
        [{"timestamp": 0, "input_length": 4, "output_length": 8, "hash_ids": [9]},
          {"timestamp": 1, "input_length": 20, "output_length": 0, "hash_ids": [1, 2, 3, 4, 5]}],
        {'engine': {'max_num_batched_tokens': 8}},
        {'num_requests': 2, 'completed_requests': 2, 'total_input_tokens': 24, 'total_output_tokens': 8, 'processed_tokens': 32, 'duration_ms': 112.36925600000001, 'request_throughput_rps': 17.798462597278387, 'input_throughput_tok_s': 213.58155116734065, 'output_throughput_tok_s': 71.19385038911355, 'prefix_cache_reused_ratio': 0.0, 'first_admission_prefix_cache_reused_ratio': 0.0, 'mean_ttft_ms': 22.305456, 'max_ttft_ms': 22.305456, 'mean_e2e_latency_ms': 112.36925600000001, 'max_e2e_latency_ms': 112.36925600000001, 'mean_itl_ms': 12.866257142857146, 'median_itl_ms': 5.748851426827424, 'mean_ttst_ms': 22.360909999999997, 'mean_tpot_ms': 12.866257142857146},
        [(0.0, 4, 8, 8, 0.0, 22.305456, 112.36925600000001, 112.36925600000001, 0),
         (1.0, 20, 0, 0, 22.305456, None, None, 89.37299600000001, 0)]),
    'chunking_off': Case(
        [{"timestamp": 0, "input_length": 6, "output_length": 4, "hash_ids": [1, 2]},
          {"timestamp": 1, "input_length": 8, "output_length": 0, "hash_ids": [3, 4]}],
        {'engine': {'max_num_batched_tokens': 8, 'enable_chunked_prefill': False}},
        {'num_requests': 2, 'completed_requests': 2, 'total_input_tokens': 14, 'total_output_tokens': 4, 'processed_tokens': 18, 'duration_ms': 56.20511800000001, 'request_throughput_rps': 35.58394806679348, 'input_throughput_tok_s': 249.08763646755438, 'output_throughput_tok_s': 71.16789613358696, 'prefix_cache_reused_ratio': 0.0, 'first_admission_prefix_cache_reused_ratio': 0.0, 'mean_ttft_ms': 22.339129000000003, 'max_ttft_ms': 22.339129000000003, 'mean_e2e_latency_ms': 39.58220400000001, 'max_e2e_latency_ms': 39.58220400000001, 'mean_itl_ms': 5.747691666666669, 'median_itl_ms': 5.748851426827424, 'mean_ttst_ms': 5.746593000000001, 'mean_tpot_ms': 5.747691666666669},
        [(0.0, 6, 4, 4, 0.0, 22.339129000000003, 39.58220400000001, 39.58220400000001, 0),
         (1.0, 8, 0, 0, 39.58220400000001, None, None, 56.20511800000001, 0)]),
    'full_hit_with_decode': Case(
        [{"timestamp": 0, "input_length": 8, "output_length": 1, "hash_ids": [1, 2]},
          {"timestamp": 100, "input_length": 4, "output_length": 5, "hash_ids": [7]},
          {"timestamp": 101, "input_length": 8, "output_length": 0, "hash_ids": [1, 2]}],
        {},
        {'num_requests': 3, 'completed_requests': 3, 'total_input_tokens': 20, 'total_output_tokens': 6, 'processed_tokens': 26, 'duration_ms': 145.29182799999998, 'request_throughput_rps': 20.648098666636642, 'input_throughput_tok_s': 137.65399111091094, 'output_throughput_tok_s': 41.296197333273284, 'prefix_cache_reused_ratio': 0.4, 'first_admission_prefix_cache_reused_ratio': 0.4, 'mean_ttft_ms': 22.337481500000003, 'max_ttft_ms': 22.369507, 'mean_e2e_latency_ms': 33.83066749999999, 'max_e2e_latency_ms': 45.29182799999998, 'mean_itl_ms': 5.746592999999994, 'median_itl_ms': 5.748851426827424, 'mean_ttst_ms': 5.746593000000004, 'mean_tpot_ms': 5.746592999999994},
        [(0.0, 8, 1, 1, 0.0, 22.369507, 22.369507, 22.369507, 0),
         (100.0, 4, 5, 5, 100.0, 122.305456, 145.29182799999998, 145.29182799999998, 0),
         (101.0, 8, 0, 0, 122.305456, None, None, 128.052049, 8)]),
    'preempted_chunk': Case(
        [{"timestamp": 0, "input_length": 4, "output_length": 10, "hash_ids": [1]},
          {"timestamp": 1, "input_length": 16, "output_length": 0, "hash_ids": [3, 4, 5, 6]}],
        {'engine': {'num_gpu_blocks': 5, 'max_num_batched_tokens': 8}},
        {'num_requests': 2, 'completed_requests': 2, 'total_input_tokens': 20, 'total_output_tokens': 10, 'processed_tokens': 30, 'duration_ms': 306.215588, 'request_throughput_rps': 6.531346144272707, 'input_throughput_tok_s': 65.31346144272707, 'output_throughput_tok_s': 32.65673072136354, 'prefix_cache_reused_ratio': 0.0, 'first_admission_prefix_cache_reused_ratio': 0.0, 'mean_ttft_ms': 32.07456, 'max_ttft_ms': 32.07456, 'mean_e2e_latency_ms': 272.96976000000006, 'max_e2e_latency_ms': 272.96976000000006, 'mean_itl_ms': 26.766133333333343, 'median_itl_ms': 28.875706064708037, 'mean_ttst_ms': 23.2256, 'mean_tpot_ms': 26.766133333333343},
        [(0.0, 4, 10, 10, 0.0, 32.07456, 272.96976000000006, 272.96976000000006, 0),
         (1.0, 16, 0, 0, 272.96976000000006, None, None, 306.215588, 0)]),
    'rr2': Case(
        [{"timestamp": 0, "input_length": 8, "output_length": 3, "hash_ids": [1, 2]},
          {"timestamp": 0, "input_length": 8, "output_length": 0, "hash_ids": [1, 2]},
          {"timestamp": 1, "input_length": 8, "output_length": 0, "hash_ids": [1, 2]},
          {"timestamp": 2, "input_length": 12, "output_length": 2, "hash_ids": [1, 2, 3]}],
        {'workers': 2},
        {'num_requests': 4, 'completed_requests': 4, 'total_input_tokens': 36, 'total_output_tokens': 5, 'processed_tokens': 41, 'duration_ms': 44.688148000000005, 'request_throughput_rps': 89.50919156461798, 'input_throughput_tok_s': 805.5827240815618, 'output_throughput_tok_s': 111.88648945577246, 'prefix_cache_reused_ratio': 0.4444444444444444, 'first_admission_prefix_cache_reused_ratio': 0.4444444444444444, 'mean_ttft_ms': 29.652235, 'max_ttft_ms': 36.934963, 'mean_e2e_latency_ms': 38.2787165, 'max_e2e_latency_ms': 42.688148000000005, 'mean_itl_ms': 5.750987666666667, 'median_itl_ms': 5.748851426827424, 'mean_ttst_ms': 5.751537000000001, 'mean_tpot_ms': 5.751537000000001},
        [(0.0, 8, 0, 0, 0.0, None, None, 16.622913999999998, 0),
         (0.0, 8, 3, 3, 0.0, 22.369507, 33.869285, 33.869285, 0),
         (1.0, 8, 0, 0, 22.369507, None, None, 28.119396, 8),
         (2.0, 12, 2, 2, 16.622913999999998, 38.934963, 44.688148000000005, 44.688148000000005, 8)]),
    'budget0_behind_chunk': Case(
        [{"timestamp": 0, "input_length": 8, "output_length": 1, "hash_ids": [1, 2]},
          {"timestamp": 100, "input_length": 20, "output_length": 2, "hash_ids": [7, 8, 9, 10, 11]},
          {"timestamp": 100.5, "input_length": 8, "output_length": 0, "hash_ids": [1, 2]}],
        {'engine': {'max_num_batched_tokens': 8}},
        {'num_requests': 3, 'completed_requests': 3, 'total_input_tokens': 36, 'total_output_tokens': 3, 'processed_tokens': 39, 'duration_ms': 161.324244, 'request_throughput_rps': 18.596089004452423, 'input_throughput_tok_s': 223.15306805342908, 'output_throughput_tok_s': 18.596089004452423, 'prefix_cache_reused_ratio': 0.2222222222222222, 'first_admission_prefix_cache_reused_ratio': 0.2222222222222222, 'mean_ttft_ms': 38.9669875, 'max_ttft_ms': 55.564468000000005, 'mean_e2e_latency_ms': 41.846875499999996, 'max_e2e_latency_ms': 61.32424399999999, 'mean_itl_ms': 5.759775999999988, 'median_itl_ms': 5.759775999999988, 'mean_ttst_ms': 5.759775999999988, 'mean_tpot_ms': 5.759775999999988},
        [(0.0, 8, 1, 1, 0.0, 22.369507, 22.369507, 22.369507, 0),
         (100.0, 20, 2, 2, 100.0, 155.564468, 161.324244, 161.324244, 0),
         (100.5, 8, 0, 0, 116.622914, None, None, 133.245828, 8)]),
    'budget0_behind_head': Case(
        [{"timestamp": 0, "input_length": 8, "output_length": 1, "hash_ids": [1, 2]},
          {"timestamp": 100, "input_length": 20, "output_length": 2, "hash_ids": [7, 8, 9, 10, 11]},
          {"timestamp": 100.5, "input_length": 8, "output_length": 2, "hash_ids": [21, 22]},
          {"timestamp": 100.6, "input_length": 8, "output_length": 0, "hash_ids": [1, 2]}],
        {'engine': {'max_num_batched_tokens': 8}},
        {'num_requests': 4, 'completed_requests': 4, 'total_input_tokens': 44, 'total_output_tokens': 5, 'processed_tokens': 49, 'duration_ms': 183.706933, 'request_throughput_rps': 21.773810790254718, 'input_throughput_tok_s': 239.51191869280188, 'output_throughput_tok_s': 27.217263487818396, 'prefix_cache_reused_ratio': 0.18181818181818182, 'first_admission_prefix_cache_reused_ratio': 0.18181818181818182, 'mean_ttft_ms': 51.81835633333333, 'max_ttft_ms': 77.457044, 'mean_e2e_latency_ms': 61.177828, 'max_e2e_latency_ms': 83.20693299999999, 'mean_itl_ms': 14.039207500000003, 'median_itl_ms': 22.309230910719446, 'mean_ttst_ms': 14.039207500000003, 'mean_tpot_ms': 14.039207500000003},
        [(0.0, 8, 1, 1, 0.0, 22.369507, 22.369507, 22.369507, 0),
         (100.0, 20, 2, 2, 100.0, 155.62851799999999, 177.957044, 177.957044, 0),
         (100.5, 8, 2, 2, 133.245828, 177.957044, 183.706933, 183.706933, 0),
         (100.6, 8, 0, 0, 133.245828, None, None, 155.62851799999999, 8)]),
    'reject_zero_at_budget0': Case(
        [{"timestamp": 0, "input_length": 20, "output_length": 2, "hash_ids": [1, 2, 3, 4, 5]},
          {"timestamp": 0.5, "input_length": 40, "output_length": 0, "hash_ids": [10, 11, 12, 13, 14, 15, 16, 17, 18, 19]}],
        {'engine': {'num_gpu_blocks': 8, 'max_num_batched_tokens': 8}},
        {'num_requests': 2, 'completed_requests': 1, 'total_input_tokens': 20, 'total_output_tokens': 2, 'processed_tokens': 22, 'duration_ms': 111.018301, 'request_throughput_rps': 9.007523903649004, 'input_throughput_tok_s': 180.15047807298006, 'output_throughput_tok_s': 18.015047807298007, 'prefix_cache_reused_ratio': 0.0, 'first_admission_prefix_cache_reused_ratio': 0.0, 'mean_ttft_ms': 79.249551, 'max_ttft_ms': 79.249551, 'mean_e2e_latency_ms': 111.018301, 'max_e2e_latency_ms': 111.018301, 'mean_itl_ms': 31.768749999999997, 'median_itl_ms': 31.768749999999997, 'mean_ttst_ms': 31.768749999999997, 'mean_tpot_ms': 31.768749999999997},
        [(0.0, 20, 2, 2, 0.0, 79.249551, 111.018301, 111.018301, 0),
         (0.5, 40, 0, 0, None, None, None, 33.245827999999996, 0)]),
    'random_two_workers': Case(
        [{"timestamp": 0, "input_length": 9, "output_length": 0, "hash_ids": [20, 21, 22]},
          {"timestamp": 0, "input_length": 27, "output_length": 3, "hash_ids": [1, 2, 3, 4, 5, 6, 7]},
          {"timestamp": 0, "input_length": 30, "output_length": 0, "hash_ids": [1, 2, 3, 11, 12, 13, 14, 15]},
          {"timestamp": 0, "input_length": 26, "output_length": 3, "hash_ids": [50, 51, 52, 53, 54, 55, 56]},
          {"timestamp": 0, "input_length": 19, "output_length": 0, "hash_ids": [1, 2, 3, 4, 5]},
          {"timestamp": 0, "input_length": 38, "output_length": 5, "hash_ids": [1, 2, 3, 11, 12, 13, 14, 15, 16, 17]},
          {"timestamp": 0, "input_length": 10, "output_length": 0, "hash_ids": [1, 2, 3]},
          {"timestamp": 0, "input_length": 16, "output_length": 0, "hash_ids": [1, 2, 3, 11]},
          {"timestamp": 0, "input_length": 27, "output_length": 2, "hash_ids": [1, 2, 3, 4, 5, 6, 7]},
          {"timestamp": 0, "input_length": 33, "output_length": 3, "hash_ids": [110, 111, 112, 113, 114, 115, 116, 117, 118]},
          {"timestamp": 0, "input_length": 7, "output_length": 3, "hash_ids": [1, 2]},
          {"timestamp": 0, "input_length": 30, "output_length": 0, "hash_ids": [130, 131, 132, 133, 134, 135, 136, 137]}],
        {'engine': {'num_gpu_blocks': 19, 'max_num_batched_tokens': 22}, 'workers': 2},
        {'num_requests': 12, 'completed_requests': 12, 'total_input_tokens': 272, 'total_output_tokens': 19, 'processed_tokens': 291, 'duration_ms': 449.315882, 'request_throughput_rps': 26.707268718357923, 'input_throughput_tok_s': 605.3647576161129, 'output_throughput_tok_s': 42.28650880406671, 'prefix_cache_reused_ratio': 0.36764705882352944, 'first_admission_prefix_cache_reused_ratio': 0.25, 'mean_ttft_ms': 143.27307599999997, 'max_ttft_ms': 293.50764799999996, 'mean_e2e_latency_ms': 227.40487216666665, 'max_e2e_latency_ms': 432.64739299999997, 'mean_itl_ms': 38.83005976923077, 'median_itl_ms': 32.36251015932787, 'mean_ttst_ms': 35.52270416666666, 'mean_tpot_ms': 38.16207179166666},
        [(0.0, 7, 3, 3, 33.671318, 74.33350999999999, 111.87741599999998, 111.87741599999998, 4),
         (0.0, 9, 0, 0, 0.0, None, None, 16.835659, 0),
         (0.0, 10, 0, 0, 33.671318, None, None, 74.33350999999999, 8),
         (0.0, 16, 0, 0, 143.791722, None, None, 193.580989, 16),
         (0.0, 19, 0, 0, 16.835659, None, None, 74.33350999999999, 12),
         (0.0, 26, 3, 3, 16.835659, 111.455185, 193.580989, 193.580989, 0),
         (0.0, 27, 2, 2, 33.671318, 74.33350999999999, 98.25123899999998, 98.25123899999998, 16),
         (0.0, 27, 3, 3, 0.0, 63.255418, 143.791722, 143.791722, 0),
         (0.0, 30, 0, 0, 0.0, None, None, 33.671318, 0),
         (0.0, 30, 0, 0, 384.28047399999997, None, None, 449.315882, 0),
         (0.0, 33, 3, 3, 193.580989, 293.50764799999996, 432.64739299999997, 432.64739299999997, 32),
         (0.0, 38, 5, 5, 143.791722, 242.75318499999997, 384.28047399999997, 384.28047399999997, 12)]),
    'rejection_then_zero_at_budget0': Case(
        [{"timestamp": 0, "input_length": 4, "output_length": 1, "hash_ids": [60]},
          {"timestamp": 50, "input_length": 20, "output_length": 2, "hash_ids": [1, 2, 3, 4, 5]},
          {"timestamp": 50.5, "input_length": 40, "output_length": 2, "hash_ids": [10, 11, 12, 13, 14, 15, 16, 17, 18, 19]},
          {"timestamp": 50.7, "input_length": 4, "output_length": 0, "hash_ids": [60]}],
        {'engine': {'num_gpu_blocks': 8, 'max_num_batched_tokens': 8}},
        {'num_requests': 4, 'completed_requests': 3, 'total_input_tokens': 28, 'total_output_tokens': 3, 'processed_tokens': 31, 'duration_ms': 161.018301, 'request_throughput_rps': 18.63142252382852, 'input_throughput_tok_s': 173.89327688906616, 'output_throughput_tok_s': 18.63142252382852, 'prefix_cache_reused_ratio': 0.14285714285714285, 'first_admission_prefix_cache_reused_ratio': 0.14285714285714285, 'mean_ttft_ms': 53.950387, 'max_ttft_ms': 79.249551, 'mean_e2e_latency_ms': 69.83476200000001, 'max_e2e_latency_ms': 111.01830100000001, 'mean_itl_ms': 31.76875000000001, 'median_itl_ms': 31.76875000000001, 'mean_ttst_ms': 31.76875000000001, 'mean_tpot_ms': 31.76875000000001},
        [(0.0, 4, 1, 1, 0.0, 28.651223, 28.651223, 28.651223, 0),
         (50.0, 20, 2, 2, 50.0, 129.249551, 161.018301, 161.018301, 0),
         (50.5, 40, 2, 0, None, None, None, 83.24582799999999, 0),
         (50.7, 4, 0, 0, 66.622914, None, None, 83.24582799999999, 4)]),
    'zero_at_budget0_decode_only': Case(
        [{"timestamp": 0, "input_length": 2, "output_length": 10, "hash_ids": [1]},
          {"timestamp": 0.1, "input_length": 1, "output_length": 10, "hash_ids": [5]},
          {"timestamp": 30, "input_length": 2, "output_length": 0, "hash_ids": [1]}],
        {'engine': {'block_size': 2, 'max_num_batched_tokens': 2}, 'tbs': 2},
        {'num_requests': 3, 'completed_requests': 3, 'total_input_tokens': 5, 'total_output_tokens': 20, 'processed_tokens': 25, 'duration_ms': 96.402621, 'request_throughput_rps': 31.119485848833925, 'input_throughput_tok_s': 51.86580974805654, 'output_throughput_tok_s': 207.46323899222617, 'prefix_cache_reused_ratio': 0.4, 'first_admission_prefix_cache_reused_ratio': 0.4, 'mean_ttft_ms': 33.358331500000006, 'max_ttft_ms': 44.44157800000001, 'mean_e2e_latency_ms': 93.474381, 'max_e2e_latency_ms': 96.302621, 'mean_itl_ms': 6.679561055555555, 'median_itl_ms': 5.760360638893143, 'mean_ttst_ms': 14.008191000000005, 'mean_tpot_ms': 6.6795610555555545},
        [(0.0, 2, 10, 10, 0.0, 22.275085, 90.646141, 90.646141, 0),
         (0.1, 1, 10, 10, 22.275085, 44.54157800000001, 96.402621, 96.402621, 0),
         (30.0, 2, 0, 0, 44.54157800000001, None, None, 50.29146700000001, 2)]),
    'one_zero_past_budget0': Case(
        [{"timestamp": 0, "input_length": 8, "output_length": 1, "hash_ids": [1, 2]},
          {"timestamp": 100, "input_length": 20, "output_length": 2, "hash_ids": [7, 8, 9, 10, 11]},
          {"timestamp": 100.5, "input_length": 8, "output_length": 0, "hash_ids": [1, 2]},
          {"timestamp": 100.6, "input_length": 4, "output_length": 0, "hash_ids": [1]},
          {"timestamp": 100.7, "input_length": 8, "output_length": 0, "hash_ids": [1, 2]}],
        {'engine': {'max_num_batched_tokens': 8}},
        {'num_requests': 5, 'completed_requests': 5, 'total_input_tokens': 48, 'total_output_tokens': 3, 'processed_tokens': 51, 'duration_ms': 161.324244, 'request_throughput_rps': 30.993481674087374, 'input_throughput_tok_s': 297.5374240712388, 'output_throughput_tok_s': 18.596089004452423, 'prefix_cache_reused_ratio': 0.4166666666666667, 'first_admission_prefix_cache_reused_ratio': 0.4166666666666667, 'mean_ttft_ms': 38.9669875, 'max_ttft_ms': 55.564468000000005, 'mean_e2e_latency_ms': 41.846875499999996, 'max_e2e_latency_ms': 61.32424399999999, 'mean_itl_ms': 5.759775999999988, 'median_itl_ms': 5.759775999999988, 'mean_ttst_ms': 5.759775999999988, 'mean_tpot_ms': 5.759775999999988},
        [(0.0, 8, 1, 1, 0.0, 22.369507, 22.369507, 22.369507, 0),
         (100.0, 20, 2, 2, 100.0, 155.564468, 161.324244, 161.324244, 0),
         (100.5, 8, 0, 0, 116.622914, None, None, 133.245828, 8),
         (100.6, 4, 0, 0, 133.245828, None, None, 155.564468, 4),
         (100.7, 8, 0, 0, 133.245828, None, None, 155.564468, 8)]),
    'random_zero_heavy': Case(
        [{"timestamp": 0, "input_length": 3, "output_length": 1, "hash_ids": [1]},
          {"timestamp": 143.4, "input_length": 20, "output_length": 0, "hash_ids": [30, 31, 32]},
          {"timestamp": 100.89, "input_length": 10, "output_length": 3, "hash_ids": [1, 2]},
          {"timestamp": 0, "input_length": 19, "output_length": 3, "hash_ids": [1, 2, 3]},
          {"timestamp": 0, "input_length": 23, "output_length": 3, "hash_ids": [1, 2, 3]},
          {"timestamp": 117.39, "input_length": 20, "output_length": 5, "hash_ids": [1, 2, 3]},
          {"timestamp": 0, "input_length": 37, "output_length": 0, "hash_ids": [1, 2, 3, 4, 5]},
          {"timestamp": 0, "input_length": 12, "output_length": 0, "hash_ids": [1, 2]},
          {"timestamp": 0, "input_length": 14, "output_length": 0, "hash_ids": [1, 2]},
          {"timestamp": 19.51, "input_length": 5, "output_length": 0, "hash_ids": [1]},
          {"timestamp": 0, "input_length": 2, "output_length": 3, "hash_ids": [1]}],
        {'engine': {'block_size': 2, 'max_num_batched_tokens': 39}, 'tbs': 8},
        {'num_requests': 11, 'completed_requests': 11, 'total_input_tokens': 165, 'total_output_tokens': 18, 'processed_tokens': 183, 'duration_ms': 185.41303499999998, 'request_throughput_rps': 59.32700470600679, 'input_throughput_tok_s': 889.9050705901018, 'output_throughput_tok_s': 97.08055315528384, 'prefix_cache_reused_ratio': 0.593939393939394, 'first_admission_prefix_cache_reused_ratio': 0.593939393939394, 'mean_ttft_ms': 27.399239500000004, 'max_ttft_ms': 45.251721, 'mean_e2e_latency_ms': 52.836523666666665, 'max_e2e_latency_ms': 68.02303499999998, 'mean_itl_ms': 12.718642083333334, 'median_itl_ms': 5.79502670849248, 'mean_ttst_ms': 19.0723306, 'mean_tpot_ms': 13.26619885},
        [(0.0, 2, 3, 3, 22.918615000000003, 45.251721, 56.79432700000001, 56.79432700000001, 0),
         (0.0, 3, 1, 1, 0.0, 22.918615000000003, 22.918615000000003, 22.918615000000003, 0),
         (0.0, 12, 0, 0, 0.0, None, None, 22.918615000000003, 12),
         (0.0, 14, 0, 0, 22.918615000000003, None, None, 45.251721, 14),
         (0.0, 19, 3, 3, 0.0, 22.918615000000003, 51.047734000000005, 51.047734000000005, 2),
         (0.0, 23, 3, 3, 0.0, 22.918615000000003, 51.047734000000005, 51.047734000000005, 18),
         (0.0, 37, 0, 0, 0.0, None, None, 45.251721, 22),
         (19.51, 5, 0, 0, 22.918615000000003, None, None, 45.251721, 4),
         (100.89, 10, 3, 3, 100.89, 123.178269, 168.077697, 168.077697, 8),
         (117.39, 20, 5, 5, 123.178269, 145.489602, 185.41303499999998, 185.41303499999998, 18),
         (143.4, 20, 0, 0, 145.489602, None, None, 168.077697, 0)]),
    'kv_tie_after_zero': Case(
        [{"timestamp": 0, "input_length": 64, "output_length": 0, "hash_ids": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]},
          {"timestamp": 100, "input_length": 16, "output_length": 1, "hash_ids": [90, 91, 92, 93]}],
        {'workers': 2, 'mode': 'kv_router'},
        {'num_requests': 2, 'completed_requests': 2, 'total_input_tokens': 80, 'total_output_tokens': 1, 'processed_tokens': 81, 'duration_ms': 122.497648, 'request_throughput_rps': 16.32684408765138, 'input_throughput_tok_s': 653.0737635060552, 'output_throughput_tok_s': 8.16342204382569, 'prefix_cache_reused_ratio': 0.0, 'first_admission_prefix_cache_reused_ratio': 0.0, 'mean_ttft_ms': 22.497647999999998, 'max_ttft_ms': 22.497647999999998, 'mean_e2e_latency_ms': 22.497647999999998, 'max_e2e_latency_ms': 22.497647999999998, 'mean_itl_ms': 0.0, 'median_itl_ms': 0.0, 'mean_ttst_ms': 0.0, 'mean_tpot_ms': 0.0},
        [(0.0, 64, 0, 0, 0.0, None, None, 17.474885, 0),
         (100.0, 16, 1, 1, 100.0, 122.497648, 122.497648, 122.497648, 0)]),
    'kv_follows_zero_blocks': Case(
        [{"timestamp": 0, "input_length": 32, "output_length": 0, "hash_ids": [1, 2, 3, 4, 5, 6, 7, 8]},
          {"timestamp": 100, "input_length": 36, "output_length": 1, "hash_ids": [1, 2, 3, 4, 5, 6, 7, 8, 90]}],
        {'workers': 2, 'mode': 'kv_router'},
        {'num_requests': 2, 'completed_requests': 2, 'total_input_tokens': 68, 'total_output_tokens': 1, 'processed_tokens': 69, 'duration_ms': 122.331821, 'request_throughput_rps': 16.348975954506553, 'input_throughput_tok_s': 555.8651824532228, 'output_throughput_tok_s': 8.174487977253277, 'prefix_cache_reused_ratio': 0.47058823529411764, 'first_admission_prefix_cache_reused_ratio': 0.47058823529411764, 'mean_ttft_ms': 22.331821000000005, 'max_ttft_ms': 22.331821000000005, 'mean_e2e_latency_ms': 22.331821000000005, 'max_e2e_latency_ms': 22.331821000000005, 'mean_itl_ms': 0.0, 'median_itl_ms': 0.0, 'mean_ttst_ms': 0.0, 'mean_tpot_ms': 0.0},
        [(0.0, 32, 0, 0, 0.0, None, None, 16.987721, 0),
         (100.0, 36, 1, 1, 100.0, 122.331821, 122.331821, 122.331821, 32)]),
    'kv_zero_in_flight': Case(
        [{"timestamp": 0, "input_length": 400, "output_length": 0, "hash_ids": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 83, 84, 85, 86, 87, 88, 89, 90, 91, 92, 93, 94, 95, 96, 97, 98, 99, 100]},
          {"timestamp": 5, "input_length": 16, "output_length": 3, "hash_ids": [90, 91, 92, 93]},
          {"timestamp": 6, "input_length": 16, "output_length": 0, "hash_ids": [1, 2, 3, 4]}],
        {'workers': 2, 'mode': 'kv_router'},
        {'num_requests': 3, 'completed_requests': 3, 'total_input_tokens': 432, 'total_output_tokens': 3, 'processed_tokens': 435, 'duration_ms': 55.75507099999999, 'request_throughput_rps': 53.806764948788256, 'input_throughput_tok_s': 7748.174152625509, 'output_throughput_tok_s': 53.806764948788256, 'prefix_cache_reused_ratio': 0.0, 'first_admission_prefix_cache_reused_ratio': 0.0, 'mean_ttft_ms': 22.497647999999998, 'max_ttft_ms': 22.497647999999998, 'mean_e2e_latency_ms': 50.75507099999999, 'max_e2e_latency_ms': 50.75507099999999, 'mean_itl_ms': 14.128711499999994, 'median_itl_ms': 22.48842062089808, 'mean_ttst_ms': 22.500942999999992, 'mean_tpot_ms': 14.128711499999994},
        [(0.0, 400, 0, 0, 0.0, None, None, 22.642156, 0),
         (5.0, 16, 3, 3, 5.0, 27.497647999999998, 55.75507099999999, 55.75507099999999, 0),
         (6.0, 16, 0, 0, 27.497647999999998, None, None, 49.99859099999999, 0)]),
    'agentic_zero_dependency': Case(
        [{"request_id": "a", "timestamp": 0, "input_length": 8, "output_length": 0, "hash_ids": [1, 2]},
          {"request_id": "b", "timestamp": 100, "input_length": 4, "output_length": 1, "hash_ids": [3], "wait_for": ["a"], "delay": 5, "tool_wait_ms": 3}],
        {'fmt': 'agentic_mooncake'},
        {'num_requests': 2, 'completed_requests': 2, 'total_input_tokens': 12, 'total_output_tokens': 1, 'processed_tokens': 13, 'duration_ms': 46.92837, 'request_throughput_rps': 42.61814335337025, 'input_throughput_tok_s': 255.7088601202215, 'output_throughput_tok_s': 21.309071676685125, 'prefix_cache_reused_ratio': 0.0, 'first_admission_prefix_cache_reused_ratio': 0.0, 'mean_ttft_ms': 22.305456000000003, 'max_ttft_ms': 22.305456000000003, 'mean_e2e_latency_ms': 22.305456000000003, 'max_e2e_latency_ms': 22.305456000000003, 'mean_itl_ms': 0.0, 'median_itl_ms': 0.0, 'mean_ttst_ms': 0.0, 'mean_tpot_ms': 0.0},
        []),
    'agentic_zero_join_chain': Case(
        [{"request_id": "a", "timestamp": 0, "input_length": 8, "output_length": 0, "hash_ids": [1, 2]},
          {"request_id": "c", "timestamp": 0, "input_length": 16, "output_length": 3, "hash_ids": [11, 12, 13, 14]},
          {"request_id": "j", "timestamp": 0, "input_length": 4, "output_length": 0, "hash_ids": [21], "wait_for": ["a", "c"], "delay": 2},
          {"request_id": "k", "timestamp": 0, "input_length": 4, "output_length": 2, "hash_ids": [22], "wait_for": ["j"], "delay": 1}],
        {'fmt': 'agentic_mooncake'},
        {'num_requests': 4, 'completed_requests': 4, 'total_input_tokens': 32, 'total_output_tokens': 5, 'processed_tokens': 37, 'duration_ms': 81.746419, 'request_throughput_rps': 48.931807031204634, 'input_throughput_tok_s': 391.4544562496371, 'output_throughput_tok_s': 61.16475878900579, 'prefix_cache_reused_ratio': 0.0, 'first_admission_prefix_cache_reused_ratio': 0.0, 'mean_ttft_ms': 22.462353, 'max_ttft_ms': 22.61925, 'mean_e2e_latency_ms': 31.092129500000002, 'max_e2e_latency_ms': 34.13221, 'mean_itl_ms': 5.753184333333334, 'median_itl_ms': 5.760360638893143, 'mean_ttst_ms': 5.751536500000002, 'mean_tpot_ms': 5.751536500000002},
        []),
    'agentic_zero_full_hit_dependency': Case(
        [{"request_id": "a", "timestamp": 0, "input_length": 8, "output_length": 1, "hash_ids": [1, 2]},
          {"request_id": "z", "timestamp": 100, "input_length": 8, "output_length": 0, "hash_ids": [1, 2], "wait_for": ["a"], "delay": 5, "tool_wait_ms": 3},
          {"request_id": "k", "timestamp": 0, "input_length": 4, "output_length": 2, "hash_ids": [22], "wait_for": ["z"], "delay": 1}],
        {'fmt': 'agentic_mooncake'},
        {'num_requests': 3, 'completed_requests': 3, 'total_input_tokens': 20, 'total_output_tokens': 3, 'processed_tokens': 23, 'duration_ms': 59.421555999999995, 'request_throughput_rps': 50.48672909204869, 'input_throughput_tok_s': 336.57819394699123, 'output_throughput_tok_s': 50.48672909204869, 'prefix_cache_reused_ratio': 0.4, 'first_admission_prefix_cache_reused_ratio': 0.4, 'mean_ttft_ms': 22.3374815, 'max_ttft_ms': 22.369507, 'mean_e2e_latency_ms': 25.210777999999998, 'max_e2e_latency_ms': 28.052048999999997, 'mean_itl_ms': 5.746592999999997, 'median_itl_ms': 5.746592999999997, 'mean_ttst_ms': 5.746592999999997, 'mean_tpot_ms': 5.746592999999997},
        []),
}


def _options(opts: dict) -> ReplayOptions:
    return ReplayOptions(num_workers=opts.get("workers", 1), router_mode=opts.get("mode", "round_robin"),
                         trace_block_size=opts.get("tbs", 4),
                         engine=EngineArgs.from_json({"block_size": 4, **opts.get("engine", {})}))


def _replay(case: Case):
    rows = [row_from_json(dict(d), f"t.jsonl:{i + 1}") for i, d in enumerate(case.rows)]
    return run_replay(rows, [f"t.jsonl:{i + 1}" for i in range(len(rows))], case.opts.get("fmt", "mooncake"),
                      _options(case.opts))


_rows = request_rows


@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_oracle(name):
    case = CASES[name]
    res = _replay(case)
    rep = report.summary(res)
    for k, v in case.report.items():
        assert rep[k] == pytest.approx(v, rel=1e-12, abs=1e-12), k
    if case.opts.get("fmt", "mooncake") == "mooncake":
        assert _rows(report.jsonl_rows(res)) == case.requests
    zero = [r for r in res.requests if r.requested_output_length == 0]
    assert zero and all(r.status in ("completed", "rejected") and r.output_tokens == 0 and r.first_token_ms is None
                        and r.last_token_ms is None for r in zero)


def test_lone_zero_output_costs_its_prefill_only():
    res = _replay(CASES["lone"])
    (r,) = res.requests
    assert r.end_ms == quantize_ms(PolynomialTiming().prefill_ms(8, 1, None), 1.0)  # P(8), no decode step
    assert [(p.batch_size, p.prefill_tokens, p.decode_requests) for p in res.timeline.passes()] == [(1, 8, 0)]
    assert [(c.start_ms, c.end_ms, c.tokens) for c in r.prefill_chunks] == [(0.0, r.end_ms, 8)]


def test_fully_cached_zero_output_pass_lasts_zero_ms():
    res = _replay(CASES["zero_hits"])
    last = res.requests[2]
    assert last.cached_tokens == 8 and last.end_ms == last.ready_ms == 200.0


def test_one_itl_value_is_reported_exactly():
    # 1.4.2 reports a lone ITL gap (and its per-user rate) as itself, not as its sketch bucket
    rep = report.summary(_replay(CASES["holds_seq"]))
    assert rep["median_itl_ms"] == rep["p99_itl_ms"] == rep["mean_itl_ms"] == 5.749889000000003
    assert rep["median_output_token_throughput_per_user"] == 1000.0 / 5.749889000000003


def test_goodput_with_zero_output_observed():
    # oracle on `same_pass` (terminal of the 0-output request 22.61925, others' e2e 28.38 and 34.13)
    res = _replay(CASES["same_pass"])
    dur_s = CASES["same_pass"].report["duration_ms"] / 1000.0
    for sla, good in (({"sla_ttft_ms": 100.0}, 2), ({"sla_itl_ms": 1000.0}, 2), ({"sla_e2e_ms": 1000.0}, 3),
                      ({"sla_e2e_ms": 22.7}, 1), ({"sla_e2e_ms": 22.6}, 0), ({"sla_e2e_ms": 28.5}, 2),
                      ({"sla_ttft_ms": 100.0, "sla_e2e_ms": 100.0}, 2)):
        rep = report.summary(res, **sla)
        assert rep["goodput_completed_requests"] == good, sla
        assert rep["goodput_request_throughput_rps"] == pytest.approx(good / dur_s, rel=1e-12)


def test_vllm_v0_prefills_zero_output_and_emits_nothing():
    rows = [{"timestamp": 0, "input_length": 8, "output_length": 0, "hash_ids": [1, 2]},
            {"timestamp": 0, "input_length": 8, "output_length": 2, "hash_ids": [3, 4]}]
    res = _replay(Case(rows, {"engine": {"scheduler": "vllm_v0", "enable_chunked_prefill": False,
                                         "enable_prefix_caching": False}}, {}, []))
    z, a = res.requests
    p16 = quantize_ms(PolynomialTiming().prefill_ms(16, 2, None), 1.0)
    assert (z.status, z.output_tokens, z.first_token_ms, z.end_ms) == ("completed", 0, None, p16)
    assert a.first_token_ms == p16 and a.output_tokens == 2
    rep = report.summary(res)
    assert (rep["completed_requests"], rep["total_input_tokens"], rep["total_output_tokens"]) == (2, 16, 2)
    assert rep["max_ttft_ms"] == p16


def test_recorded_timing_zero_output_releases_dependent_at_its_end():
    rows = [{"request_id": "a", "timestamp": 0, "input_length": 8, "output_length": 0, "hash_ids": [1, 2]},
            {"request_id": "b", "timestamp": 50, "input_length": 4, "output_length": 3, "hash_ids": [3],
             "wait_for": ["a"], "delay": 5}]
    rs = [row_from_json(dict(d), f"t:{i + 1}") for i, d in enumerate(rows)]
    res = run_recorded(rs, ["t:1", "t:2"], "agentic_mooncake", _options({}), [Service(12.0, 4.0), Service(30.0, 10.0)])
    a, b = res.requests
    assert (a.status, a.output_tokens, a.first_token_ms, a.last_token_ms, a.end_ms) == ("completed", 0, None, None, 12.0)
    assert [(c.start_ms, c.end_ms, c.tokens) for c in a.prefill_chunks] == [(0.0, 12.0, 8)]
    assert (b.ready_ms, b.first_token_ms, b.end_ms) == (17.0, 27.0, 47.0)
    rep = report.summary(res)
    assert (rep["completed_requests"], rep["total_input_tokens"], rep["max_ttft_ms"], rep["duration_ms"]) == \
        (2, 12, 10.0, 47.0)
    # the 0-output request never decodes: the timeline's decode count stays 0 while it runs alone
    assert [(p.start_ms, p.end_ms, p.batch_size, p.decode_requests) for p in res.timeline.passes()][0] == (0.0, 12.0, 1, 0)


# weka-two-plays (Dynamo's own fixture; play-b's only request has `out: 0`), converted with
# `trace-pipe convert --agentic --mooncake` and replayed with tbs 4: ai-dynamo 1.4.2's report.
WEKA_TWO_PLAYS_ORACLE = {
    "num_requests": 3, "completed_requests": 3, "total_input_tokens": 12, "total_output_tokens": 3,
    "duration_ms": 44.674963000000005, "mean_ttft_ms": 31.0205865, "min_ttft_ms": 22.36621,
    "max_ttft_ms": 39.674963000000005, "mean_e2e_latency_ms": 42.174963000000005, "mean_itl_ms": 22.308753000000006,
    "median_itl_ms": 22.308753000000006, "std_ttft_ms": 8.654376500000003, "output_throughput_tok_s": 67.15170642670705,
    "input_throughput_tok_s": 268.6068257068282, "prefix_cache_reused_ratio": 0.0,
}


@pytest.fixture(scope="module")
def weka_two_plays(tmp_path_factory):
    if not WEKA_TWO_PLAYS.exists():
        pytest.skip(f"fixture missing: {WEKA_TWO_PLAYS}")
    tmp = tmp_path_factory.mktemp("w2")
    out = tmp / "w2.jsonl"
    trace_pipe = [sys.executable, "-m", "trace_pipe.cli.main"]  # this interpreter's, wherever its venv is
    subprocess.run([*trace_pipe, "convert", str(WEKA_TWO_PLAYS), "--agentic", "--format", "v1", "--mooncake", str(out)],
                   check=True, capture_output=True)
    return trace_pipe, tmp, out


def test_weka_two_plays_replays_like_the_oracle(weka_two_plays):
    trace_pipe, tmp, trace = weka_two_plays
    rj, pf = tmp / "r.json", tmp / "w2.pftrace"
    res = subprocess.run([*trace_pipe, "replay", str(trace), "--trace-format", "agentic_mooncake", "--trace-block-size", "4",
                          "--dynamo-version", "1.4", "--report-json", str(rj), "--perfetto", str(pf)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    rep = json.loads(rj.read_text())
    for k, v in WEKA_TWO_PLAYS_ORACLE.items():
        assert rep[k] == pytest.approx(v, rel=1e-12), k
    chk = subprocess.run([*trace_pipe, "check", str(pf)], capture_output=True, text=True)
    assert chk.returncode == 0, chk.stdout + chk.stderr
    d = decode_file(str(pf))
    z = [s for s in d.slices if s.args.get("request_id") == "play-b/0"]
    assert {s.name for s in z} == {"LLM request", "prefill"}  # no first token, no decode
    (req,) = [s for s in z if s.name == "LLM request"]
    assert req.args["output_tokens"] == 0 and req.args["status"] == "completed" and "ttft_ms" not in req.args
    # the other requests have their `first token` instant; the 0-output one has none
    marks = {(m.name, m.track) for m in d.instants}
    assert ("first token", req.track) not in marks
    assert sum(1 for m in d.instants if m.name == "first token") == 2


# -- live oracle ------------------------------------------------------------------------

def _oracle(py: str, case: Case, tmp: Path) -> tuple[dict, list[dict]]:
    o = case.opts
    return run_oracle(py, case.rows, tmp, fmt=o.get("fmt", "mooncake"), mode=o.get("mode", "round_robin"),
                      workers=o.get("workers", 1), tbs=o.get("tbs", 4), engine={"block_size": 4, **o.get("engine", {})})


@pytest.mark.slow
@pytest.mark.parity
def test_live_oracle(tmp_path):
    """Every case against `python -m dynamo.replay` now: the full report and every JSONL row, and
    the stored constants are still what the oracle says."""
    for name, case, d, py in oracle_cases.each_case(tmp_path, CASES):
        theirs, jl = _oracle(py, case, d)
        ours_res = _replay(case)
        oracle_cases.assert_report(name, report.summary(ours_res), theirs, case.report)
        assert _rows(jl) == case.requests, name
        if jl:
            assert _rows(report.jsonl_rows(ours_res)) == _rows(jl), name
