"""Disaggregated replay with `--router-mode kv_router`, pinned against ai-dynamo 1.6.1.

1.6.1 routes both pools by its KV router, configured per pool (its offline disaggregated replay
derives the two configurations from the one `--router-config`):
- prefill pool: active blocks not tracked, so the cost is the prefill term alone,
  `scale * max(0, (pending prefill + ISL)/bs - credit * overlap)` (+ the active-request weight),
  the overlap seen as of the last pass end (as aggregated 1.6.1);
- decode pool: no overlap credit, no prefill load, no KV reuse assumed, so the cost is the
  worker's active full prompt blocks (every handed-off, unfinished request's, none shared) plus
  the request's own. It routes at the handoff (the prefill copy's end).
The oracle's logged costs (2 + 2 workers, block 64): prompts of 10, 5 and 2 blocks at 0, 1, 2 ms
cost 10, 5, 7 on the prefill pool (pending 640 + 320 / 64 = 15 on the other worker) and 5, 10, 7
on the decode pool (5 + 2 on the worker holding the 5-block request); a 100-token prompt is one
decode block. Per-request rows report the prefill placement's overlap
(`prefill_route_overlap_tokens`, routing_history[0]) and zeros for the decode one.

The case has one cheapest worker at every decision but the first of each pool (Dynamo breaks ties
at random, unseeded), so a request's workers are stored as "the first request's prefill / decode
worker or not". It differs from round robin: the last request goes to the prefill worker holding
its prefix (round robin would put it on the other one). `test_live_oracle` (slow) reruns it on the
oracle several times, and `test_live_one_worker_per_pool` (slow) compares 300 conversation rows
with one worker per pool (no ties) exactly; bench/parity_replay.py checks whole traces with
several workers against the oracle's spread.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from trace_pipe.cli.replay_cmd import run

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from parity_replay import oracle_command  # noqa: E402

ROWS = [{"timestamp": 0, "input_length": 640, "output_length": 50, "hash_ids": list(range(1, 11))},
        {"timestamp": 1, "input_length": 128, "output_length": 50, "hash_ids": [20, 21]},
        {"timestamp": 2, "input_length": 64, "output_length": 40, "hash_ids": [30]},
        {"timestamp": 100, "input_length": 704, "output_length": 20, "hash_ids": list(range(1, 12))}]
FLAGS = ["--trace-format", "mooncake", "--router-mode", "kv_router", "--num-prefill-workers", "2",
         "--num-decode-workers", "2", "--trace-block-size", "64", "--extra-engine-args", '{"block_size": 64}']

# ai-dynamo 1.6.1, every run alike: (arrival, on the first request's prefill worker, on its decode
# worker, TTFT, E2E, reused tokens, prefill route overlap tokens, (selected, best) overlap blocks
# per pool)
ORACLE = [
    (0.0, True, True, 32.164218000000005, 315.10209599999996, 0, 0, [(0, 0), (0, 0)]),
    (1.0, False, False, 24.198391, 306.751146, 0, 0, [(0, 0), (0, 0)]),
    (2.0, False, False, 46.188573000000005, 271.257221, 0, 0, [(0, 0), (0, 0)]),
    (100.0, True, False, 28.736959999999982, 138.73409999999998, 640, 640, [(10, 10), (0, 0)]),
]


def _shape(rows: list[dict]) -> list[tuple]:
    p0, d0 = rows[0]["prefill_worker_idx"], rows[0]["decode_worker_idx"]
    return [(r["arrival_time_ms"], r["prefill_worker_idx"] == p0, r["decode_worker_idx"] == d0, r["ttft_ms"],
             r["e2e_latency_ms"], r["reused_input_tokens"], r["prefill_route_overlap_tokens"],
             [(h["selected_overlap_blocks"], h["best_available_overlap_blocks"]) for h in r["routing_history"]])
            for r in rows]


def _ours(tmp: Path, seed: int = 0, **kw) -> list[dict]:
    tr = tmp / "t.jsonl"
    tr.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    jl = tmp / f"rows{seed}.jsonl"
    run([str(tr)], router_mode="kv_router", trace_block_size=64, num_prefill_workers=2, num_decode_workers=2,
        extra_engine_args='{"block_size": 64}', report_json=str(tmp / "r.json"), report_jsonl=str(jl),
        out=io.StringIO(), err=io.StringIO(), progress=False, seed=seed, **kw)
    return sorted((json.loads(x) for x in jl.read_text().splitlines()), key=lambda r: r["arrival_time_ms"])


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_case(seed: int, tmp_path: Path) -> None:
    # every seed: the ties only name the workers
    rows = _ours(tmp_path, seed)
    assert [x[:3] for x in _shape(rows)] == [x[:3] for x in ORACLE]
    for got, want in zip(_shape(rows), ORACLE):
        assert got[3] == pytest.approx(want[3], rel=1e-12) and got[4] == pytest.approx(want[4], rel=1e-12)
        assert got[5:] == want[5:]
    assert [r["decode_route_overlap_tokens"] for r in rows] == [0, 0, 0, 0]


def test_round_robin_differs(tmp_path: Path) -> None:
    # the last request's prefix is on the first request's prefill worker; round robin sends it away
    tr = tmp_path / "t.jsonl"
    tr.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    jl = tmp_path / "rr.jsonl"
    run([str(tr)], trace_block_size=64, num_prefill_workers=2, num_decode_workers=2,
        extra_engine_args='{"block_size": 64}', report_json=str(tmp_path / "r.json"), report_jsonl=str(jl),
        out=io.StringIO(), err=io.StringIO(), progress=False)
    rr = sorted((json.loads(x) for x in jl.read_text().splitlines()), key=lambda r: r["arrival_time_ms"])
    assert [r["prefill_worker_idx"] for r in rr] == [0, 1, 0, 1]
    assert rr[3]["reused_input_tokens"] == 0 and rr[3]["routing_history"][0]["selected_overlap_blocks"] is None


@pytest.mark.slow
def test_live_oracle(tmp_path: Path) -> None:
    """The case on the 1.6.1 oracle, three runs (its ties are random): the same shape each time."""
    cmd = oracle_command("1.6", disagg=True)
    if cmd is None:
        pytest.skip("ai-dynamo 1.6.1 oracle not installed (TRACE_PIPE_ORACLE16_PYTHON or /work/oracle16)")
    tr = tmp_path / "t.jsonl"
    tr.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    for i in range(3):
        subprocess.run(cmd + [str(tr), *FLAGS, "--report-json", str(tmp_path / "o.json"), "--report-jsonl",
                              str(tmp_path / "o.jsonl")], check=True, capture_output=True, cwd=tmp_path)
        rows = sorted((json.loads(x) for x in (tmp_path / "o.jsonl").read_text().splitlines()),
                      key=lambda r: r["arrival_time_ms"])
        got = _shape(rows)
        assert [x[:3] + x[5:] for x in got] == [x[:3] + x[5:] for x in ORACLE], i
        for g, w in zip(got, ORACLE):
            assert g[3:5] == pytest.approx(w[3:5], rel=1e-9), i


@pytest.mark.slow
def test_live_one_worker_per_pool(tmp_path: Path) -> None:
    """With one worker per pool nothing is left to chance: the first 300 rows of the Mooncake
    conversation trace (trace block 512, engine block 64) give 1.6.1's summary (1e-9) and its
    every per-request row, routing history and route overlaps included (uuids aside)."""
    cmd = oracle_command("1.6", disagg=True)
    conv = ROOT.parent / "shared" / "fixtures" / "mooncake" / "conversation_trace.jsonl"
    if cmd is None or not conv.exists():
        pytest.skip("ai-dynamo 1.6.1 oracle or the conversation trace not found")
    from parity_replay import compare_report
    tr = tmp_path / "c.jsonl"
    tr.write_text("".join(conv.read_text().splitlines(keepends=True)[:300]))
    flags = [str(tr), "--trace-format", "mooncake", "--router-mode", "kv_router", "--num-prefill-workers", "1",
             "--num-decode-workers", "1", "--trace-block-size", "512", "--extra-engine-args", '{"block_size": 64}']
    subprocess.run(cmd + flags + ["--report-json", str(tmp_path / "t.json"), "--report-jsonl", str(tmp_path / "t.jsonl")],
                   check=True, capture_output=True, cwd=tmp_path)
    rep, _ = run([str(tr)], router_mode="kv_router", trace_block_size=512, num_prefill_workers=1,
                 num_decode_workers=1, extra_engine_args='{"block_size": 64}', report_json=str(tmp_path / "o.json"),
                 report_jsonl=str(tmp_path / "o.jsonl"), out=io.StringIO(), err=io.StringIO(), progress=False)
    assert compare_report(rep, json.loads((tmp_path / "t.json").read_text())) == []

    def rows(name: str) -> list[str]:
        return sorted(json.dumps({k: v for k, v in json.loads(x).items() if k != "uuid"}, sort_keys=True)
                      for x in (tmp_path / name).read_text().splitlines())
    ours, theirs = rows("o.jsonl"), rows("t.jsonl")
    assert sum(1 for x in ours if '"prefill_route_overlap_tokens": 0' not in x) > 200  # overlaps do occur
    assert ours == theirs
