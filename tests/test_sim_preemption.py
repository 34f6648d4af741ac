"""FIFO recompute preemption, replayed as ai-dynamo 1.4.2 does (pinned by experiment).

1.4.2 walks the running list by index and takes a FIFO victim from its front. Two consequences,
both found by random traces against the oracle and minimised:
- `self_victim`: when the request needing a block is itself the front (its own victim), the walk
  goes on with the request that slides into its index; that one still decodes this pass.
- `victim_ahead`: a victim ahead of the request being scheduled (already scheduled this pass: its
  token is undone) shifts the list left, so the request right after the current one is skipped for
  this pass: it computes and emits nothing, and its next token gap spans two passes.

The constants are `python -m dynamo.replay` 1.4.2 output (offline, round_robin, 1 worker);
`test_live_oracle` (slow) reruns both cases on the oracle when its venv exists.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NamedTuple

import pytest

from trace_pipe.pipeline.mooncake import row_from_json
from trace_pipe.sim import report
from trace_pipe.sim.config import EngineArgs
from trace_pipe.sim.replay import ReplayOptions, run_replay

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import oracle_cases  # noqa: E402
from parity_replay import request_rows, run_oracle  # noqa: E402


class Case(NamedTuple):
    rows: list[dict]
    engine: dict
    tbs: int
    report: dict  # oracle report values
    requests: list[tuple]  # oracle JSONL rows (arrival, input, requested out, out, first admit, first token,
    # last token, terminal, reused), sorted


CASES = {
    'self_victim': Case(
        [{"timestamp": 0, "input_length": 9, "output_length": 11, "hash_ids": [100, 101, 102]},
         {"timestamp": 0, "input_length": 20, "output_length": 16, "hash_ids": [105, 106, 107, 108, 109]},
         {"timestamp": 0, "input_length": 11, "output_length": 6, "hash_ids": [113, 114, 115]}],
        {"block_size": 2, "num_gpu_blocks": 25, "preemption_mode": "fifo", "max_num_batched_tokens": 8,
         "max_num_seqs": 2}, 4,
        {'num_requests': 3, 'completed_requests': 3, 'duration_ms': 688.390198, 'mean_ttft_ms': 233.582625,
         'max_ttft_ms': 501.86296600000003, 'mean_e2e_latency_ms': 583.1078203333333, 'mean_itl_ms': 34.95251953333334,
         'min_itl_ms': 20.38742400000001, 'max_itl_ms': 51.67100800000003, 'std_itl_ms': 6.325632327027757,
         'mean_ttst_ms': 35.41413233333333, 'mean_tpot_ms': 34.07620987777778, 'prefix_cache_reused_ratio': 0.85},
        [(0.0, 9, 11, 11, 0.0, 55.093523999999995, 403.826649, 403.826649, 0),
         (0.0, 11, 6, 6, 403.826649, 501.86296600000003, 657.106614, 657.106614, 0),
         (0.0, 20, 16, 16, 16.622913999999998, 143.791385, 688.390198, 688.390198, 34)]),
    'victim_ahead': Case(
        [{"timestamp": 0, "input_length": 7, "output_length": 5, "hash_ids": [3, 1, 100, 101]},
         {"timestamp": 0, "input_length": 13, "output_length": 3, "hash_ids": [3, 1, 102, 103, 104, 105, 106]},
         {"timestamp": 0, "input_length": 9, "output_length": 2, "hash_ids": [107, 108, 109, 110, 111]}],
        {"block_size": 2, "num_gpu_blocks": 16, "preemption_mode": "fifo", "max_num_batched_tokens": 8,
         "max_num_seqs": 3}, 2,
        {'num_requests': 3, 'completed_requests': 3, 'duration_ms': 242.50303900000003,
         'mean_ttft_ms': 114.92077700000003, 'max_ttft_ms': 179.16663300000002,
         'mean_e2e_latency_ms': 232.2678046666667, 'mean_itl_ms': 50.2915832857143, 'min_itl_ms': 32.63070300000001,
         'max_itl_ms': 63.33640600000001, 'std_itl_ms': 10.055252554713306, 'mean_ttst_ms': 52.184144333333336,
         'mean_tpot_ms': 52.08160883333335, 'prefix_cache_reused_ratio': 0.4827586206896552},
        [(0.0, 7, 5, 5, 0.0, 36.727367, 242.50303900000003, 242.50303900000003, 10),
         (0.0, 9, 2, 2, 79.645092, 179.16663300000002, 242.50303900000003, 242.50303900000003, 0),
         (0.0, 13, 3, 3, 0.0, 128.868331, 211.79733600000003, 211.79733600000003, 4)]),
}


def _replay(case: Case, record: bool = False):
    rows = [row_from_json(dict(d), f"t.jsonl:{i + 1}") for i, d in enumerate(case.rows)]
    return run_replay(rows, [f"t.jsonl:{i + 1}" for i in range(len(rows))], "mooncake",
                      ReplayOptions(trace_block_size=case.tbs, engine=EngineArgs.from_json(case.engine), record=record))


_rows = request_rows


@pytest.mark.parametrize("record", [False, True])
@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_oracle(name, record):
    case = CASES[name]
    res = _replay(case, record)
    rep = report.summary(res)
    for k, v in case.report.items():
        assert rep[k] == pytest.approx(v, rel=1e-12, abs=1e-12), k
    assert _rows(report.jsonl_rows(res)) == case.requests


def test_self_victim_lets_the_next_request_decode():
    # the 20-token request (front of the running list, all blocks in use) preempts itself at
    # 636.72; the 11-token request behind it still emits its last token in that pass
    res = _replay(CASES["self_victim"], record=True)
    a, b, c = res.requests
    assert (b.admissions, c.admissions) == (2, 1)
    assert c.last_token_ms == 657.106614
    # its recompute hits its own 17 cached blocks (34 tokens): 1 token, no prefill participant
    assert b.cached_tokens == 34 and b.last_token_ms == 688.390198
    assert [(p.start_ms, p.decode_requests) for p in res.timeline.passes()][-2:] == \
        [(636.71919, 1), (657.106614, 1)]


def test_victim_ahead_skips_the_next_request_for_one_pass():
    res = _replay(CASES["victim_ahead"])
    gaps = sorted(g for g, n in res.itl_gaps for _ in range(n))
    # 7 gaps, all with a token: the skipped request's gap spans two passes (63.336406), and no
    # empty (0-token) pass length is reported as an ITL
    assert len(gaps) == 7 and min(gaps) == 32.63070300000001 and gaps.count(63.33640600000001) == 2
    assert all(n > 0 for _g, n in res.itl_gaps)


# -- live oracle ------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parity
def test_live_oracle(tmp_path):
    """Both cases against `python -m dynamo.replay` now: the full report and every JSONL row."""
    for name, case, d, py in oracle_cases.each_case(tmp_path, CASES):
        theirs, jl = run_oracle(py, case.rows, d, tbs=case.tbs, engine=case.engine)
        res = _replay(case)
        oracle_cases.assert_report(name, report.summary(res), theirs, case.report)
        assert _rows(jl) == case.requests == _rows(report.jsonl_rows(res)), name
