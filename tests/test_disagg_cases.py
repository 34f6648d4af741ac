"""Disaggregated replay (`--num-prefill-workers` / `--num-decode-workers`, sim/disagg.py), pinned
against ai-dynamo 1.6.1's offline disaggregated replay.

Each case isolates one rule measured on the oracle:
- `queued_handoff`: a request's prefill runs on the prefill pool as a one-token copy; its first
  token comes from its first decode pass on the decode worker (context = the prompt); a handoff
  arriving while the decode worker is in a pass is reserved and joins at that pass's end; the
  prefill worker holds the prompt's blocks until then (source_released).
- `transfer_full_prompt`, `transfer_destination_missing`: the prefill pool's
  kv_transfer_bytes_per_token x tokens / kv_transfer_bandwidth (GB/s) delays the decode admission
  (tokens: the prompt, or the whole blocks the decode worker does not hold).
- `two_by_two_ties`: round robin per pool; pass ends at one instant are delivered prefill pool
  first, then by worker index (not by start order); the source's blocks are released at once
  when its prefill worker is idle, else when its pass ends.
- `decode_kv_shared`: a decode worker reserves a handoff only when the prompt's blocks fit, blocks
  it already holds with the same hashes being shared.
- `zero_output`: a request asking for no token has a 0-token prefill copy (a fully cached prompt
  computes nothing) and ends on its decode worker when the pass it joins ends, at once when that
  worker has nothing else to run (it is not in the pass's u).
- `agentic_chain`: agentic v2 dependencies release on the decode completion (dispatch edges on the
  prefill dispatch); the lifecycle digest is 1.6.1's.

`CASES14` pins the same handoff under `--dynamo-version 1.4` to ai-dynamo 1.4.2 (see there).

The constants are ai-dynamo 1.6.1 output (bench/dynamo16_disagg_replay.py: `run_trace_replay` with
`prefill_engine_args` / `decode_engine_args`); `test_live_oracle` (slow) reruns every case there and
compares every summary key (1e-9) and every per-request row, and WEKA trace 0277 with 2 + 2 workers.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

from trace_pipe.cli.replay_cmd import run
from trace_pipe.pipeline.errors import TraceError

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from parity_replay import (DISAGG_ROW_KEYS, ROW_KEYS, SKIP16, compare_report, compare_rows,  # noqa: E402
                           oracle_command)

ROW = ("arrival_time_ms", "first_admit_ms", "first_token_ms", "last_token_ms", "terminal_time_ms", "input_length",
       "output_length", "reused_input_tokens", "prefill_worker_idx", "decode_worker_idx", "source_held_ms",
       "destination_reserved_ms", "destination_activated_ms", "decode_admit_ms", "source_released_ms")


class Case(NamedTuple):
    rows: list[dict]
    fmt: str
    tbs: int
    prefill: int
    decode: int
    prefill_args: dict
    decode_args: dict
    report: dict  # oracle summary values
    requests: list[tuple]  # oracle per-request rows (ROW), sorted


CASES = {
    'queued_handoff': Case(
        rows=[{'timestamp': 0, 'input_length': 128, 'output_length': 4, 'hash_ids': [1, 2]}, {'timestamp': 5, 'input_length': 192, 'output_length': 3, 'hash_ids': [1, 2, 3]}],
        fmt='mooncake', tbs=64, prefill=1, decode=1,
        prefill_args={'block_size': 64},
        decode_args={'block_size': 64},
        report={'num_requests': 2, 'completed_requests': 2, 'duration_ms': 58.68829900000001, 'committed_prefill_tokens': 192, 'prefix_cache_reused_ratio': 0.4, 'prefill_worker_seconds': 0.058688299, 'decode_worker_seconds': 0.058688299, 'prefill_gpus_per_worker': 1, 'gpu_hours': 3.260461055555556e-05, 'mean_ttft_ms': 33.19337900000001, 'mean_ttst_ms': 5.748292000000001, 'mean_tpot_ms': 5.748330833333334, 'mean_itl_ms': 5.748003800000001, 'max_itl_ms': 5.749991999999999, 'mean_e2e_latency_ms': 47.5633885},
        requests=[(0.0, 0.0, 24.198391, 41.438478, 41.438478, 128, 4, 0, 0, 0, 18.451798, 18.451798, 18.451798, 18.451798, 18.451798), (5.0, 18.451798, 47.18836700000001, 58.68829900000001, 58.68829900000001, 192, 3, 128, 0, 0, 35.926683, 41.438478, 41.438478, 41.438478, 41.438478)]),
    'transfer_full_prompt': Case(
        rows=[{'timestamp': 0, 'input_length': 128, 'output_length': 2, 'hash_ids': [1, 2]}, {'timestamp': 200, 'input_length': 192, 'output_length': 2, 'hash_ids': [1, 2, 3]}, {'timestamp': 400, 'input_length': 1000, 'output_length': 2, 'hash_ids': [5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]}],
        fmt='mooncake', tbs=64, prefill=1, decode=1,
        prefill_args={'block_size': 64, 'kv_transfer_bandwidth': 1.0, 'kv_transfer_bytes_per_token': 1000},
        decode_args={'block_size': 64},
        report={'num_requests': 3, 'completed_requests': 3, 'duration_ms': 444.68888000000004, 'committed_prefill_tokens': 1192, 'prefix_cache_reused_ratio': 0.09696969696969697, 'prefill_worker_seconds': 0.44468888, 'decode_worker_seconds': 0.44468888, 'prefill_gpus_per_worker': 1, 'gpu_hours': 0.0002470493777777778, 'mean_ttft_ms': 28.880169666666678, 'mean_ttst_ms': 5.762706666666673, 'mean_tpot_ms': 5.762706666666673, 'mean_itl_ms': 5.762706666666673, 'max_itl_ms': 5.791536000000008, 'mean_e2e_latency_ms': 34.642876333333355},
        requests=[(0.0, 0.0, 24.326391, 30.073035, 30.073035, 128, 2, 0, 0, 0, 18.451798, 18.451798, 18.579798, 18.579798, 18.579798), (200.0, 200.0, 223.416774, 229.166714, 229.166714, 192, 2, 128, 0, 0, 217.474885, 217.474885, 217.666885, 217.666885, 217.666885), (400.0, 400.0, 438.89734400000003, 444.68888000000004, 444.68888000000004, 1000, 2, 0, 0, 0, 432.105859, 432.105859, 433.105859, 433.105859, 433.105859)]),
    'transfer_destination_missing': Case(
        rows=[{'timestamp': 0, 'input_length': 128, 'output_length': 2, 'hash_ids': [1, 2]}, {'timestamp': 200, 'input_length': 192, 'output_length': 2, 'hash_ids': [1, 2, 3]}, {'timestamp': 400, 'input_length': 1000, 'output_length': 2, 'hash_ids': [5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]}],
        fmt='mooncake', tbs=64, prefill=1, decode=1,
        prefill_args={'block_size': 64, 'kv_transfer_bandwidth': 2.5, 'kv_transfer_bytes_per_token': 3000, 'kv_transfer_timing_mode': 'destination_missing'},
        decode_args={'block_size': 64},
        report={'num_requests': 3, 'completed_requests': 3, 'duration_ms': 444.91768, 'committed_prefill_tokens': 1192, 'prefix_cache_reused_ratio': 0.09696969696969697, 'prefill_worker_seconds': 0.44491768000000004, 'decode_worker_seconds': 0.44491768000000004, 'prefill_gpus_per_worker': 1, 'gpu_hours': 0.0002471764888888889, 'mean_ttft_ms': 28.926569666666666, 'mean_ttst_ms': 5.762706666666673, 'mean_tpot_ms': 5.762706666666673, 'mean_itl_ms': 5.762706666666673, 'max_itl_ms': 5.791536000000008, 'mean_e2e_latency_ms': 34.68927633333334},
        requests=[(0.0, 0.0, 24.351991, 30.098635, 30.098635, 128, 2, 0, 0, 0, 18.451798, 18.451798, 18.605398, 18.605398, 18.605398), (200.0, 200.0, 223.301574, 229.051514, 229.051514, 192, 2, 128, 0, 0, 217.474885, 217.474885, 217.551685, 217.551685, 217.551685), (400.0, 400.0, 439.126144, 444.91768, 444.91768, 1000, 2, 0, 0, 0, 432.105859, 432.105859, 433.334659, 433.334659, 433.334659)]),
    'two_by_two_ties': Case(
        rows=[{'timestamp': 0, 'input_length': 40, 'output_length': 3, 'hash_ids': [1, 2, 3, 10, 20, 30, 40, 50, 60, 70]}, {'timestamp': 0, 'input_length': 40, 'output_length': 4, 'hash_ids': [1, 2, 4, 11, 21, 31, 41, 51, 61, 71]}, {'timestamp': 0, 'input_length': 40, 'output_length': 5, 'hash_ids': [1, 2, 5, 12, 22, 32, 42, 52, 62, 72]}, {'timestamp': 0, 'input_length': 40, 'output_length': 6, 'hash_ids': [1, 2, 3, 13, 23, 33, 43, 53, 63, 73]}, {'timestamp': 0, 'input_length': 40, 'output_length': 3, 'hash_ids': [1, 2, 4, 14, 24, 34, 44, 54, 64, 74]}, {'timestamp': 0, 'input_length': 40, 'output_length': 4, 'hash_ids': [1, 2, 5, 15, 25, 35, 45, 55, 65, 75]}, {'timestamp': 0, 'input_length': 40, 'output_length': 5, 'hash_ids': [1, 2, 3, 16, 26, 36, 46, 56, 66, 76]}, {'timestamp': 0, 'input_length': 40, 'output_length': 6, 'hash_ids': [1, 2, 4, 17, 27, 37, 47, 57, 67, 77]}, {'timestamp': 30, 'input_length': 24, 'output_length': 2, 'hash_ids': [1, 2, 3, 90, 91, 92]}],
        fmt='mooncake', tbs=4, prefill=2, decode=2,
        prefill_args={'block_size': 4, 'max_num_batched_tokens': 64},
        decode_args={'block_size': 4},
        report={'num_requests': 9, 'completed_requests': 9, 'duration_ms': 87.22780800000001, 'committed_prefill_tokens': 276, 'prefix_cache_reused_ratio': 0.19767441860465115, 'prefill_worker_seconds': 0.174455616, 'decode_worker_seconds': 0.174455616, 'prefill_gpus_per_worker': 1, 'gpu_hours': 9.691978666666667e-05, 'mean_ttft_ms': 40.577783333333336, 'mean_ttst_ms': 5.813382222222224, 'mean_tpot_ms': 5.812640611111113, 'mean_itl_ms': 5.810195689655172, 'max_itl_ms': 5.866773000000002, 'mean_e2e_latency_ms': 59.299525},
        requests=[(0.0, 0.0, 23.24784, 34.796222, 34.796222, 40, 3, 0, 0, 0, 17.474885, 17.474885, 17.474885, 17.474885, 17.474885), (0.0, 0.0, 23.24784, 40.571648, 40.571648, 40, 4, 0, 1, 1, 17.474885, 17.474885, 17.474885, 17.474885, 17.474885), (0.0, 0.0, 40.740425, 64.087404, 64.087404, 40, 5, 8, 0, 0, 34.934533, 34.934533, 34.934533, 34.934533, 34.934533), (0.0, 0.0, 40.740425, 69.89905800000001, 69.89905800000001, 40, 6, 8, 1, 0, 34.934533, 34.934533, 34.934533, 34.934533, 34.934533), (0.0, 17.474885, 46.37754, 58.027178000000006, 58.027178000000006, 40, 3, 8, 0, 1, 34.934533, 40.571648, 40.571648, 40.571648, 51.678996), (0.0, 17.474885, 46.37754, 63.83636200000001, 63.83636200000001, 40, 4, 8, 1, 1, 34.934533, 40.571648, 40.571648, 40.571648, 51.496693), (0.0, 17.474885, 58.027178000000006, 81.16264100000001, 81.16264100000001, 40, 5, 12, 0, 1, 51.678996, 52.185078000000004, 52.185078000000004, 52.185078000000004, 52.185078000000004), (0.0, 17.474885, 58.220631000000004, 87.22780800000001, 87.22780800000001, 40, 6, 12, 1, 0, 51.496693, 52.357147000000005, 52.357147000000005, 52.357147000000005, 52.357147000000005), (30.0, 34.934533, 58.220631000000004, 64.087404, 64.087404, 24, 2, 12, 0, 0, 51.678996, 52.357147000000005, 52.357147000000005, 52.357147000000005, 52.357147000000005)]),
    'decode_kv_shared': Case(
        rows=[{'timestamp': 0, 'input_length': 12, 'output_length': 6, 'hash_ids': [1, 2, 3]}, {'timestamp': 1, 'input_length': 12, 'output_length': 6, 'hash_ids': [1, 2, 4]}, {'timestamp': 2, 'input_length': 12, 'output_length': 6, 'hash_ids': [1, 2, 5]}],
        fmt='mooncake', tbs=4, prefill=1, decode=1,
        prefill_args={'block_size': 4},
        decode_args={'block_size': 4, 'num_gpu_blocks': 9},
        report={'num_requests': 3, 'completed_requests': 3, 'duration_ms': 241.40701499999994, 'committed_prefill_tokens': 20, 'prefix_cache_reused_ratio': 0.4444444444444444, 'prefill_worker_seconds': 0.24140701499999992, 'decode_worker_seconds': 0.24140701499999992, 'prefill_gpus_per_worker': 1, 'gpu_hours': 0.0001341150083333333, 'mean_ttft_ms': 59.24034833333332, 'mean_ttst_ms': 34.00999999999999, 'mean_tpot_ms': 33.98066666666666, 'mean_itl_ms': 33.98066666666666, 'max_itl_ms': 34.00999999999999, 'mean_e2e_latency_ms': 229.1436816666666},
        requests=[(0.0, 0.0, 37.567015, 207.61701499999995, 207.61701499999995, 12, 6, 0, 0, 0, 16.683681999999997, 16.683681999999997, 16.683681999999997, 16.683681999999997, 16.683681999999997), (1.0, 16.683681999999997, 71.57701499999999, 241.40701499999994, 241.40701499999994, 12, 6, 8, 0, 0, 33.306596, 37.567015, 37.567015, 37.567015, 37.567015), (2.0, 16.683681999999997, 71.57701499999999, 241.40701499999994, 241.40701499999994, 12, 6, 8, 0, 0, 33.306596, 37.567015, 37.567015, 37.567015, 37.567015)]),
    'zero_output': Case(
        rows=[{'timestamp': 0, 'input_length': 8, 'output_length': 2, 'hash_ids': [1, 2]}, {'timestamp': 0, 'input_length': 8, 'output_length': 0, 'hash_ids': [3, 4]}, {'timestamp': 0, 'input_length': 8, 'output_length': 0, 'hash_ids': [5, 6]}, {'timestamp': 50, 'input_length': 8, 'output_length': 0, 'hash_ids': [5, 6]}],
        fmt='mooncake', tbs=4, prefill=1, decode=2,
        prefill_args={'block_size': 4},
        decode_args={'block_size': 4},
        report={'num_requests': 4, 'completed_requests': 4, 'duration_ms': 50.0, 'committed_prefill_tokens': 24, 'prefix_cache_reused_ratio': 0.25, 'prefill_worker_seconds': 0.05, 'decode_worker_seconds': 0.1, 'prefill_gpus_per_worker': 1, 'gpu_hours': 4.166666666666667e-05, 'mean_ttft_ms': 22.612658, 'mean_ttst_ms': 5.747417000000002, 'mean_tpot_ms': 5.747417000000002, 'mean_itl_ms': 5.747417000000002, 'max_itl_ms': 5.747417000000002, 'mean_e2e_latency_ms': 28.360075000000002},
        requests=[(0.0, 0.0, 22.612658, 28.360075000000002, 28.360075000000002, 8, 2, 0, 0, 0, 16.866065, 16.866065, 16.866065, 16.866065, 16.866065), (0.0, 0.0, None, None, 16.866065, 8, 0, 0, 0, 1, 16.866065, 16.866065, 16.866065, 16.866065, 16.866065), (0.0, 0.0, None, None, 22.612658, 8, 0, 0, 0, 0, 16.866065, 16.866065, 16.866065, 16.866065, 16.866065), (50.0, 50.0, None, None, 50.0, 8, 0, 8, 0, 1, 50.0, 50.0, 50.0, 50.0, 50.0)]),
    'agentic_chain': Case(
        rows=[{'schema': 'dynamo.agentic_mooncake', 'version': 2, 'block_size': 4, 'hash_id_scope': 'local', 'source': {'format': 'fuzz', 'digest': '0'}}, {'request_id': 'r1', 'play_id': 'p', 'session_id': 's', 'model': 'm', 'input_length': 8, 'output_length': 3, 'hash_ids': [1, 2], 'not_before_ms': 0.0}, {'request_id': 'r2', 'play_id': 'p', 'session_id': 's', 'model': 'm', 'input_length': 16, 'output_length': 2, 'hash_ids': [1, 2, 3, 4], 'not_before_ms': 0.0, 'dependencies': [{'request_id': 'r1', 'trigger': 'completion', 'delay_ms': 5.0, 'relation': 'sequence'}]}, {'request_id': 'r3', 'play_id': 'p', 'session_id': 'a', 'model': 'm', 'input_length': 8, 'output_length': 4, 'hash_ids': [1, 7], 'not_before_ms': 0.0, 'dependencies': [{'request_id': 'r1', 'trigger': 'dispatch', 'delay_ms': 1.0, 'relation': 'spawn'}]}],
        fmt='agentic_mooncake', tbs=4, prefill=1, decode=2,
        prefill_args={'block_size': 4},
        decode_args={'block_size': 4},
        report={'num_requests': 3, 'completed_requests': 3, 'duration_ms': 66.995272, 'committed_prefill_tokens': 20, 'prefix_cache_reused_ratio': 0.375, 'prefill_worker_seconds': 0.06699527200000001, 'decode_worker_seconds': 0.13399054400000002, 'prefill_gpus_per_worker': 1, 'gpu_hours': 5.582939333333334e-05, 'mean_ttft_ms': 27.559091000000006, 'mean_ttst_ms': 5.7496139999999984, 'mean_tpot_ms': 5.750025999999999, 'mean_itl_ms': 5.749064833333333, 'max_itl_ms': 5.754007999999999, 'mean_e2e_latency_ms': 39.057220666666666, 'agentic_lifecycle_digest': 'dac0a4ead85adc40432190b2f094ab8237bfc9ab11245e1ce5da3a8fc99de306', 'agentic_lifecycle_event_count': 10},
        requests=[(0.0, 0.0, 22.369507, 33.865165, 33.865165, 8, 3, 0, 0, 0, 16.622913999999998, 16.622913999999998, 16.622913999999998, 16.622913999999998, 16.622913999999998), (1.0, 16.622913999999998, 38.931667000000004, 56.176390000000005, 56.176390000000005, 8, 4, 4, 0, 1, 33.185074, 33.185074, 33.185074, 33.185074, 33.185074), (38.865165, 38.865165, 61.241264, 66.995272, 66.995272, 16, 2, 8, 0, 0, 55.488079, 55.488079, 55.488079, 55.488079, 55.488079)]),
}


#: ai-dynamo 1.4.2 (`--dynamo-version 1.4`, its `python -m dynamo.replay` with `--prefill-engine-args`
#: / `--decode-engine-args`, Mooncake rows only): its prefill copy decodes the whole output there for
#: free (one budget token per pass), decode workers reserve at their pass start and are driven before
#: the prefill workers within an instant; transfer timing as 1.6.1's full_prompt
CASES14 = {
    'queued_handoff_14': Case(
        rows=[{'timestamp': 0, 'input_length': 128, 'output_length': 4, 'hash_ids': [1, 2]}, {'timestamp': 5, 'input_length': 192, 'output_length': 3, 'hash_ids': [1, 2, 3]}],
        fmt='mooncake', tbs=64, prefill=1, decode=1,
        prefill_args={'block_size': 64},
        decode_args={'block_size': 64},
        report={'num_requests': 2, 'completed_requests': 2, 'duration_ms': 58.95919399999999, 'prefix_cache_reused_ratio': 0.4, 'prefill_worker_seconds': 0.058959193999999986, 'decode_worker_seconds': 0.058959193999999986, 'prefill_gpus_per_worker': 1, 'gpu_hours': 3.275510777777777e-05, 'mean_ttft_ms': 39.18316299999999, 'mean_ttst_ms': 5.7630709999999965, 'mean_tpot_ms': 5.760873999999998, 'mean_itl_ms': 5.760434599999998, 'max_itl_ms': 5.7630709999999965, 'mean_e2e_latency_ms': 53.584249499999984},
        requests=[(0.0, 0.0, 41.68316299999999, 58.95919399999999, 58.95919399999999, 128, 4, 0, 0, 0, 35.926683, 35.926683, 35.926683, 35.926683, 35.926683), (5.0, 18.451798, 41.68316299999999, 53.209304999999986, 53.209304999999986, 192, 3, 128, 0, 0, 35.926683, 35.926683, 35.926683, 35.926683, 35.926683)]),
    'transfer_14': Case(
        rows=[{'timestamp': 0, 'input_length': 128, 'output_length': 2, 'hash_ids': [1, 2]}, {'timestamp': 200, 'input_length': 192, 'output_length': 2, 'hash_ids': [1, 2, 3]}, {'timestamp': 400, 'input_length': 1000, 'output_length': 2, 'hash_ids': [5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]}],
        fmt='mooncake', tbs=64, prefill=1, decode=1,
        prefill_args={'block_size': 64, 'kv_transfer_bandwidth': 1.0, 'kv_bytes_per_token': 1000},
        decode_args={'block_size': 64},
        report={'num_requests': 3, 'completed_requests': 3, 'duration_ms': 444.69129899999996, 'prefix_cache_reused_ratio': 0.09696969696969697, 'prefill_worker_seconds': 0.444691299, 'decode_worker_seconds': 0.444691299, 'prefill_gpus_per_worker': 1, 'gpu_hours': 0.00024705072166666665, 'mean_ttft_ms': 28.88058133333333, 'mean_ttst_ms': 5.765264666666659, 'mean_tpot_ms': 5.765264666666659, 'mean_itl_ms': 5.765264666666659, 'max_itl_ms': 5.792719999999974, 'mean_e2e_latency_ms': 34.645845999999985},
        requests=[(0.0, 0.0, 24.326391, 30.07628, 30.07628, 128, 2, 0, 0, 0, 18.451798, 18.451798, 18.579798, 18.579798, 18.579798), (200.0, 200.0, 223.416774, 229.169959, 229.169959, 192, 2, 128, 0, 0, 217.474885, 217.474885, 217.666885, 217.666885, 217.666885), (400.0, 400.0, 438.898579, 444.69129899999996, 444.69129899999996, 1000, 2, 0, 0, 0, 432.105859, 432.105859, 433.105859, 433.105859, 433.105859)]),
    'conversation_24_rows_2x2_14': Case(
        rows=[{'timestamp': 0, 'input_length': 6758, 'output_length': 500, 'hash_ids': [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]}, {'timestamp': 0, 'input_length': 7322, 'output_length': 490, 'hash_ids': [0, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27]}, {'timestamp': 0, 'input_length': 7236, 'output_length': 794, 'hash_ids': [0, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41]}, {'timestamp': 0, 'input_length': 2290, 'output_length': 316, 'hash_ids': [0, 42, 43, 44, 45]}, {'timestamp': 0, 'input_length': 6760, 'output_length': 3, 'hash_ids': [0, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58]}, {'timestamp': 0, 'input_length': 4834, 'output_length': 173, 'hash_ids': [0, 59, 60, 61, 62, 63, 64, 65, 66, 67]}, {'timestamp': 0, 'input_length': 23141, 'output_length': 453, 'hash_ids': [0, 68, 69, 70, 71, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 83, 84, 85, 86, 87, 88, 89, 90, 91, 92, 93, 94, 95, 96, 97, 98, 99, 100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111, 112]}, {'timestamp': 0, 'input_length': 26888, 'output_length': 458, 'hash_ids': [0, 113, 114, 115, 116, 117, 118, 119, 120, 121, 122, 123, 124, 125, 126, 127, 128, 129, 130, 131, 132, 133, 134, 135, 136, 137, 138, 139, 140, 141, 142, 143, 144, 145, 146, 147, 148, 149, 150, 151, 152, 153, 154, 155, 156, 157, 158, 159, 160, 161, 162, 163, 164]}, {'timestamp': 0, 'input_length': 10498, 'output_length': 402, 'hash_ids': [0, 165, 166, 167, 168, 169, 170, 171, 172, 173, 174, 175, 176, 177, 178, 179, 180, 181, 182, 183, 184]}, {'timestamp': 0, 'input_length': 17450, 'output_length': 610, 'hash_ids': [0, 185, 186, 187, 188, 189, 190, 191, 192, 193, 194, 195, 196, 197, 198, 199, 200, 201, 202, 203, 204, 205, 206, 207, 208, 209, 210, 211, 212, 213, 214, 215, 216, 217, 218]}, {'timestamp': 3000, 'input_length': 13544, 'output_length': 71, 'hash_ids': [0, 219, 220, 221, 222, 223, 224, 225, 226, 227, 228, 229, 230, 231, 232, 233, 234, 235, 236, 237, 238, 239, 240, 241, 242, 243, 244]}, {'timestamp': 3000, 'input_length': 87169, 'output_length': 402, 'hash_ids': [0, 245, 246, 247, 248, 249, 250, 251, 252, 253, 254, 255, 256, 257, 258, 259, 260, 261, 262, 263, 264, 265, 266, 267, 268, 269, 270, 271, 272, 273, 274, 275, 276, 277, 278, 279, 280, 281, 282, 283, 284, 285, 286, 287, 288, 289, 290, 291, 292, 293, 294, 295, 296, 297, 298, 299, 300, 301, 302, 303, 304, 305, 306, 307, 308, 309, 310, 311, 312, 313, 314, 315, 316, 317, 318, 319, 320, 321, 322, 323, 324, 325, 326, 327, 328, 329, 330, 331, 332, 333, 334, 335, 336, 337, 338, 339, 340, 341, 342, 343, 344, 345, 346, 347, 348, 349, 350, 351, 352, 353, 354, 355, 356, 357, 358, 359, 360, 361, 362, 363, 364, 365, 366, 367, 368, 369, 370, 371, 372, 373, 374, 375, 376, 377, 378, 379, 380, 381, 382, 383, 384, 385, 386, 387, 388, 389, 390, 391, 392, 393, 394, 395, 396, 397, 398, 399, 400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 411, 412, 413, 414]}, {'timestamp': 3000, 'input_length': 6324, 'output_length': 548, 'hash_ids': [0, 415, 416, 417, 418, 419, 420, 421, 422, 423, 424, 425, 426]}, {'timestamp': 3000, 'input_length': 2012, 'output_length': 354, 'hash_ids': [0, 427, 428, 429]}, {'timestamp': 3000, 'input_length': 7324, 'output_length': 14, 'hash_ids': [0, 430, 431, 432, 433, 434, 435, 436, 437, 438, 439, 440, 441, 442, 443]}, {'timestamp': 3000, 'input_length': 9418, 'output_length': 145, 'hash_ids': [0, 444, 445, 446, 447, 448, 449, 450, 451, 452, 453, 454, 455, 456, 457, 458, 459, 460, 461]}, {'timestamp': 3000, 'input_length': 915, 'output_length': 355, 'hash_ids': [0, 462]}, {'timestamp': 3000, 'input_length': 12846, 'output_length': 466, 'hash_ids': [0, 463, 464, 465, 466, 467, 468, 469, 470, 471, 472, 473, 474, 475, 476, 477, 478, 479, 480, 481, 482, 483, 484, 485, 486, 487]}, {'timestamp': 3000, 'input_length': 20506, 'output_length': 929, 'hash_ids': [0, 488, 489, 490, 491, 492, 493, 494, 495, 496, 497, 498, 499, 500, 501, 502, 503, 504, 505, 506, 507, 508, 509, 510, 511, 512, 513, 514, 515, 516, 517, 518, 519, 520, 521, 522, 523, 524, 525, 526, 527]}, {'timestamp': 3000, 'input_length': 16609, 'output_length': 349, 'hash_ids': [0, 528, 529, 530, 531, 532, 533, 534, 535, 536, 537, 538, 539, 540, 541, 542, 543, 544, 545, 546, 547, 548, 549, 550, 551, 552, 553, 554, 555, 556, 557, 558, 559]}, {'timestamp': 3000, 'input_length': 26353, 'output_length': 370, 'hash_ids': [0, 560, 561, 562, 563, 564, 565, 566, 567, 568, 569, 570, 571, 572, 573, 574, 575, 576, 577, 578, 579, 580, 581, 582, 583, 584, 585, 586, 587, 588, 589, 590, 591, 592, 593, 594, 595, 596, 597, 598, 599, 600, 601, 602, 603, 604, 605, 606, 607, 608, 609, 610]}, {'timestamp': 3000, 'input_length': 6059, 'output_length': 475, 'hash_ids': [0, 611, 612, 613, 614, 615, 616, 617, 618, 619, 620, 621]}, {'timestamp': 3000, 'input_length': 5954, 'output_length': 420, 'hash_ids': [0, 622, 623, 624, 625, 626, 627, 628, 629, 630, 631, 632]}, {'timestamp': 3000, 'input_length': 11339, 'output_length': 848, 'hash_ids': [0, 633, 634, 635, 636, 637, 638, 639, 640, 641, 642, 643, 644, 645, 646, 647, 648, 649, 650, 651, 652, 653, 654]}],
        fmt='mooncake', tbs=512, prefill=2, decode=2,
        prefill_args={'block_size': 512},
        decode_args={'block_size': 512},
        report={'num_requests': 24, 'completed_requests': 24, 'duration_ms': 10994.710765999997, 'prefix_cache_reused_ratio': 0.03317341532444507, 'prefill_worker_seconds': 21.989421532000055, 'decode_worker_seconds': 21.989421532000055, 'prefill_gpus_per_worker': 1, 'gpu_hours': 0.012216345295555585, 'mean_ttft_ms': 1790.1224291250367, 'mean_ttst_ms': 6.124831291666699, 'mean_tpot_ms': 6.130609266505453, 'mean_itl_ms': 6.130644157544675, 'max_itl_ms': 6.528889000000163, 'mean_e2e_latency_ms': 4324.377457750062},
        requests=[(0.0, 0.0, 1089.8827850000002, 4144.102344000054, 4144.102344000054, 6758, 500, 0, 0, 1, 1084.0275250000002, 1084.0275250000002, 1084.0275250000002, 1084.0275250000002, 1084.0275250000002), (0.0, 0.0, 1089.9649700000002, 5812.127949000067, 5812.127949000067, 7236, 794, 512, 0, 0, 1084.0275250000002, 1084.0275250000002, 1084.0275250000002, 1084.0275250000002, 1084.0275250000002), (0.0, 0.0, 1179.0857440000007, 3068.144794000033, 3068.144794000033, 2290, 316, 512, 1, 0, 1170.6816900000001, 1173.0892000000006, 1173.0892000000006, 1173.0892000000006, 1173.0892000000006), (0.0, 0.0, 1179.0857440000007, 4102.330964000028, 4102.330964000028, 7322, 490, 0, 1, 0, 1170.6816900000001, 1173.0892000000006, 1173.0892000000006, 1173.0892000000006, 1173.0892000000006), (0.0, 169.136918, 1178.023351000001, 2238.7346230000117, 2238.7346230000117, 4834, 173, 512, 1, 1, 1170.6816900000001, 1171.8564250000009, 1171.8564250000009, 1171.8564250000009, 1171.8564250000009), (0.0, 169.136918, 1178.023351000001, 3984.6325040000506, 3984.6325040000506, 26888, 458, 512, 1, 1, 1170.6816900000001, 1171.8564250000009, 1171.8564250000009, 1171.8564250000009, 1171.8564250000009), (0.0, 169.136918, 851.2499240000001, 862.822188, 862.822188, 6760, 3, 512, 0, 0, 845.4637920000001, 845.4637920000001, 845.4637920000001, 845.4637920000001, 845.4637920000001), (0.0, 338.22967600000004, 1089.9649700000002, 3798.5417640000355, 3798.5417640000355, 23141, 453, 512, 0, 0, 1084.0275250000002, 1084.0275250000002, 1084.0275250000002, 1084.0275250000002, 1084.0275250000002), (0.0, 676.3710340000001, 1178.023351000001, 4890.145799000044, 4890.145799000044, 17450, 610, 512, 1, 1, 1170.6816900000001, 1171.8564250000009, 1171.8564250000009, 1171.8564250000009, 1171.8564250000009), (0.0, 845.4637920000001, 1089.8827850000002, 3553.0868640000435, 3553.0868640000435, 10498, 402, 512, 0, 1, 1084.0275250000002, 1084.0275250000002, 1084.0275250000002, 1084.0275250000002, 1084.0275250000002), (3000.0, 3000.0, 4607.2198090000475, 5035.007615000048, 5035.007615000048, 13544, 71, 512, 0, 1, 4598.851781000001, 4601.069244000048, 4601.069244000048, 4601.069244000048, 4601.069244000048), (3000.0, 3000.0, 5942.991715000067, 8550.768760000177, 8550.768760000177, 87169, 402, 512, 1, 0, 5934.096079000003, 5936.469327000067, 5936.469327000067, 5936.469327000067, 5936.469327000067), (3000.0, 3169.136918, 4607.2198090000475, 7937.516801000012, 7937.516801000012, 6324, 548, 512, 0, 1, 4598.851781000001, 4601.069244000048, 4601.069244000048, 4601.069244000048, 4601.069244000048), (3000.0, 3338.2738360000003, 4606.51455300006, 4684.64025000006, 4684.64025000006, 7324, 14, 512, 0, 0, 4598.851781000001, 4600.50488400006, 4600.50488400006, 4600.50488400006, 4600.50488400006), (3000.0, 3507.366594, 4606.51455300006, 10334.76851600025, 10334.76851600025, 20506, 929, 512, 0, 0, 4598.851781000001, 4600.50488400006, 4600.50488400006, 4600.50488400006, 4600.50488400006), (3000.0, 3507.366594, 4606.51455300006, 6791.353999000106, 6791.353999000106, 915, 355, 512, 0, 0, 4598.851781000001, 4600.50488400006, 4600.50488400006, 4600.50488400006, 4600.50488400006), (3000.0, 3845.507953, 4607.2198090000475, 6861.252690000033, 6861.252690000033, 26353, 370, 512, 0, 1, 4598.851781000001, 4601.069244000048, 4601.069244000048, 4601.069244000048, 4601.069244000048), (3000.0, 4352.609600000001, 4606.51455300006, 7215.309219000127, 7215.309219000127, 5954, 420, 512, 0, 0, 4598.851781000001, 4600.50488400006, 4600.50488400006, 4600.50488400006, 4600.50488400006), (3000.0, 4691.3691800000015, 5942.991715000067, 8239.977070000168, 8239.977070000168, 2012, 354, 512, 1, 0, 5934.096079000003, 5936.469327000067, 5936.469327000067, 5936.469327000067, 5936.469327000067), (3000.0, 4691.3691800000015, 5945.764635000072, 6848.820734000033, 6848.820734000033, 9418, 145, 512, 1, 1, 5934.096079000003, 5939.4963830000725, 5939.4963830000725, 5939.4963830000725, 5939.4963830000725), (3000.0, 4860.528180000001, 5945.764635000072, 8771.82946399994, 8771.82946399994, 12846, 466, 512, 1, 1, 5934.096079000003, 5939.4963830000725, 5939.4963830000725, 5939.4963830000725, 5939.4963830000725), (3000.0, 5198.691617000001, 5945.764635000072, 8081.6701130000065, 8081.6701130000065, 16609, 349, 512, 1, 1, 5934.096079000003, 5939.4963830000725, 5939.4963830000725, 5939.4963830000725, 5939.4963830000725), (3000.0, 5536.788819000002, 5942.991715000067, 8982.763196000169, 8982.763196000169, 6059, 475, 512, 1, 0, 5934.096079000003, 5936.469327000067, 5936.469327000067, 5936.469327000067, 5936.469327000067), (3000.0, 5536.788819000002, 5945.764635000072, 10994.710765999997, 10994.710765999997, 11339, 848, 512, 1, 1, 5934.096079000003, 5939.4963830000725, 5939.4963830000725, 5939.4963830000725, 5939.4963830000725)]),
}


def _replay(c: Case, tmp: Path, version: str | None = None) -> tuple[dict, list[dict]]:
    tr = tmp / "t.jsonl"
    tr.write_text("".join(json.dumps(r) + "\n" for r in c.rows))
    jl = tmp / "rows.jsonl"
    rep, _ = run([str(tr)], trace_format=c.fmt, trace_block_size=c.tbs, num_prefill_workers=c.prefill,
                 num_decode_workers=c.decode, prefill_engine_args=json.dumps(c.prefill_args),
                 decode_engine_args=json.dumps(c.decode_args), report_json=str(tmp / "r.json"),
                 report_jsonl=str(jl), out=io.StringIO(), err=io.StringIO(), progress=False, dynamo_version=version)
    return rep, [json.loads(x) for x in jl.read_text().splitlines()]


@pytest.mark.parametrize("version,name", [("1.6", n) for n in sorted(CASES)] + [("1.4", n) for n in sorted(CASES14)])
def test_case(version: str, name: str, tmp_path: Path) -> None:
    c = (CASES if version == "1.6" else CASES14)[name]
    rep, rows = _replay(c, tmp_path, version)
    for k, v in c.report.items():
        if isinstance(v, float):
            assert rep[k] == pytest.approx(v, rel=1e-12, abs=0), k
        else:
            assert rep[k] == v, k
    assert sorted((tuple(r[k] for k in ROW) for r in rows), key=repr) == [tuple(x) for x in c.requests]


def test_rows_carry_both_pools(tmp_path: Path) -> None:
    rep, rows = _replay(CASES["queued_handoff"], tmp_path)
    r = rows[1]
    assert [h["pool"] for h in r["routing_history"]] == ["prefill", "decode"]
    assert [(a["pool"], a["at_ms"], a["reused_input_tokens"], a["admission_ordinal"]) for a in r["admission_history"]] == [
        ("prefill", 18.451798, 128, 0), ("decode", 41.438478, 0, 1)]
    assert r["admission_count"] == 2 and r["readmission_count"] == 0
    assert (r["decode_reused_input_tokens"], r["prefill_route_overlap_tokens"], r["decode_route_overlap_tokens"]) == (0, 0, 0)
    assert rep["prefill_gpus_per_worker"] == 1 and rep["decode_gpus_per_worker"] == 1


def _err(tmp_path: Path, **kw) -> str:
    tr = tmp_path / "t.jsonl"
    tr.write_text(json.dumps({"timestamp": 0, "input_length": 8, "output_length": 2, "hash_ids": [1, 2]}) + "\n")
    with pytest.raises(TraceError) as e:
        run([str(tr)], trace_block_size=4, report_json=str(tmp_path / "r.json"), out=io.StringIO(),
            err=io.StringIO(), progress=False, **kw)
    assert not (tmp_path / "r.json").exists()
    return str(e.value)


def test_bad_layouts(tmp_path: Path) -> None:
    # Dynamo's own words where it has them
    assert _err(tmp_path, prefill_engine_args='{"block_size": 4}', decode_engine_args='{"block_size": 8}') == (
        "error: offline disaggregated replay requires matching prefill/decode block_size, got 4 and 8")
    assert _err(tmp_path, prefill_engine_args='{"block_size": 4, "worker_type": "decode"}') == (
        "error: offline disaggregated replay requires prefill_engine_args.worker_type=prefill, got Decode")
    assert _err(tmp_path, num_decode_workers=1, extra_engine_args='{"block_size": 4}',
                decode_engine_args='{"block_size": 4}') == (
        "error: --extra-engine-args cannot be combined with --prefill-engine-args/--decode-engine-args")
    assert _err(tmp_path, num_decode_workers=0) == "error: --num-decode-workers must be >= 1"
    assert _err(tmp_path, num_decode_workers=2, num_workers=2).startswith("error: --num-workers is for aggregated")
    assert _err(tmp_path, num_decode_workers=2, num_workers=2, router_mode="kv_router").startswith(
        "error: --num-workers is for aggregated")
    # kv_router is 1.6.1's (tests/test_disagg_router16.py); elsewhere the words are unchanged
    for kw in ({"router_mode": "kv_router", "dynamo_version": "1.4"}, {"router_mode": "kv_router", "dynamo_version": "1.5"},
               {"router_mode": "random"}, {"router_mode": "least_loaded"}):
        assert _err(tmp_path, num_decode_workers=2, **kw) == (
            "error: disaggregated replay supports --router-mode round_robin only (kv_router: not yet)"), kw
    assert _err(tmp_path, extra_engine_args='{"block_size": 4, "worker_type": "prefill"}').startswith(
        "error: --extra-engine-args: `worker_type` prefill needs disaggregated replay")


@pytest.mark.slow
def test_live_oracle(tmp_path: Path) -> None:
    """Every case, and WEKA 0277 with 2 + 2 workers, on the 1.6.1 oracle: every summary key (1e-9)
    and every per-request row."""
    cmd = oracle_command("1.6", disagg=True)
    if cmd is None:
        pytest.skip("ai-dynamo 1.6.1 oracle not installed (TRACE_PIPE_ORACLE16_PYTHON or /work/oracle16)")
    weka = ROOT.parent / "shared" / "fixtures" / "kv_cache_tester_traces" / "trace_0277.json"
    inputs = [(name, c) for name, c in sorted(CASES.items())]
    if weka.exists():
        v2 = tmp_path / "w.v2.jsonl"
        subprocess.run([str(ROOT / ".venv" / "bin" / "trace-pipe"), "convert", str(weka), "--mooncake", str(v2),
                        "--agentic"], check=True, capture_output=True)
        rows = [json.loads(x) for x in v2.read_text().splitlines()]
        inputs.append(("weka 0277 2P+2D", Case(rows, "agentic_mooncake", 64, 2, 2, {"block_size": 64},
                                               {"block_size": 64}, {}, [])))
    for name, c in inputs:
        d = tmp_path / name.replace(" ", "_")
        d.mkdir()
        ours, rows = _replay(c, d)
        subprocess.run(cmd + [str(d / "t.jsonl"), "--trace-format", c.fmt, "--trace-block-size", str(c.tbs),
                              "--num-prefill-workers", str(c.prefill), "--num-decode-workers", str(c.decode),
                              "--prefill-engine-args", json.dumps(c.prefill_args), "--decode-engine-args",
                              json.dumps(c.decode_args), "--report-json", str(d / "o.json"), "--report-jsonl",
                              str(d / "o.jsonl")], check=True, capture_output=True, cwd=d)
        theirs = json.loads((d / "o.json").read_text())
        assert compare_report(ours, theirs, skip=SKIP16 - {"agentic_lifecycle_digest"}) == [], name
        trows = [json.loads(x) for x in (d / "o.jsonl").read_text().splitlines()]
        eq, bad = compare_rows(rows, trows, keys=ROW_KEYS + DISAGG_ROW_KEYS)
        assert not bad and eq == len(trows), (name, bad[:3])


@pytest.mark.slow
def test_live_oracle_14(tmp_path: Path) -> None:
    """The 1.4.2 cases, and the first 300 rows of the Mooncake conversation trace with 1 + 1 and 2 +
    2 workers, on the 1.4.2 oracle: every summary key (1e-9) and every per-request row."""
    cmd = oracle_command("1.4")
    if cmd is None:
        pytest.skip("ai-dynamo 1.4.2 oracle not installed (TRACE_PIPE_ORACLE_PYTHON or /work/oracle)")
    inputs = sorted(CASES14.items())
    conv = ROOT.parent / "shared" / "fixtures" / "mooncake" / "conversation_trace.jsonl"
    if conv.exists():
        rows = [json.loads(x) for x in conv.read_text().splitlines()[:300]]
        for p, d in ((1, 1), (2, 2)):
            inputs.append((f"conversation 300 {p}P+{d}D", Case(rows, "mooncake", 512, p, d, {"block_size": 512},
                                                               {"block_size": 512}, {}, [])))
    for name, c in inputs:
        d = tmp_path / name.replace(" ", "_").replace("+", "")
        d.mkdir()
        ours, rows = _replay(c, d, "1.4")
        subprocess.run(cmd + [str(d / "t.jsonl"), "--trace-format", "mooncake", "--trace-block-size", str(c.tbs),
                              "--num-prefill-workers", str(c.prefill), "--num-decode-workers", str(c.decode),
                              "--prefill-engine-args", json.dumps({**c.prefill_args, "worker_type": "prefill"}),
                              "--decode-engine-args", json.dumps({**c.decode_args, "worker_type": "decode"}),
                              "--report-json", str(d / "o.json"), "--report-jsonl", str(d / "o.jsonl")],
                       check=True, capture_output=True, cwd=d)
        assert compare_report(ours, json.loads((d / "o.json").read_text())) == [], name
        trows = [json.loads(x) for x in (d / "o.jsonl").read_text().splitlines()]
        eq, bad = compare_rows(rows, trows, keys=ROW_KEYS + DISAGG_ROW_KEYS)
        assert not bad and eq == len(trows), (name, bad[:3])
