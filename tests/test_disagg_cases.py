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


def _replay(c: Case, tmp: Path) -> tuple[dict, list[dict]]:
    tr = tmp / "t.jsonl"
    tr.write_text("".join(json.dumps(r) + "\n" for r in c.rows))
    jl = tmp / "rows.jsonl"
    rep, _ = run([str(tr)], trace_format=c.fmt, trace_block_size=c.tbs, num_prefill_workers=c.prefill,
                 num_decode_workers=c.decode, prefill_engine_args=json.dumps(c.prefill_args),
                 decode_engine_args=json.dumps(c.decode_args), report_json=str(tmp / "r.json"),
                 report_jsonl=str(jl), out=io.StringIO(), err=io.StringIO(), progress=False)
    return rep, [json.loads(x) for x in jl.read_text().splitlines()]


@pytest.mark.parametrize("name", sorted(CASES))
def test_case(name: str, tmp_path: Path) -> None:
    c = CASES[name]
    rep, rows = _replay(c, tmp_path)
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
    assert _err(tmp_path, num_decode_workers=2, router_mode="kv_router") == (
        "error: disaggregated replay supports --router-mode round_robin only (kv_router: not yet)")
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
