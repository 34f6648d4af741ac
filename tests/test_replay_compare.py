"""`trace-pipe replay --compare-json`: recorded vs simulated per request, summaries, error onset,
worked out by hand on a small case (one worker with one slot, `--timing recorded`)."""

from __future__ import annotations

import json

import pytest
from dynamo_records import req, write_jsonl
from typer.testing import CliRunner

from trace_pipe.cli.main import _register, app
from trace_pipe.cli.replay_cmd import run

_register()


def small_trace(tmp_path):
    # chains A, B (b -> b2 after a 500 ms gap), C, D; durations 1000, 1000, 500, 600, 400 ms
    return write_jsonl(tmp_path / "t.jsonl", [
        req("a", "A", None, 0, 1000, [1], ttft_ms=100.0), req("b", "B", None, 0, 1000, [2], ttft_ms=200.0),
        req("b2", "B", None, 1500, 2000, [3], ttft_ms=50.0), req("c", "C", None, 1200, 1800, [4], ttft_ms=60.0),
        req("d", "D", None, 2400, 2800, [5], ttft_ms=100.0)])


def test_compare_json_exact_values(tmp_path, capsys):
    p = small_trace(tmp_path)
    out = tmp_path / "cmp.json"
    run([str(p)], trace_format="dynamo", timing="recorded", extra_engine_args='{"max_num_seqs": 1}',
        report_json=str(tmp_path / "r.json"), compare_json=str(out), progress=False)
    d = json.loads(out.read_text())
    # one slot: a 0-1000, b 1000-2000, c 2000-2600, d 2600-3000, b2 (released 2000 + 500) 3000-3500
    sim = {r["request_id"]: r["simulated"] for r in d["requests"]}
    assert [r["request_id"] for r in d["requests"]] == ["a", "b", "c", "b2", "d"]  # recorded start order
    assert sim == {"a": {"start_ms": 0.0, "ttft_ms": 100.0, "e2e_ms": 1000.0},
                   "b": {"start_ms": 0.0, "ttft_ms": 1200.0, "e2e_ms": 2000.0},
                   "c": {"start_ms": 1200.0, "ttft_ms": 860.0, "e2e_ms": 1400.0},
                   "b2": {"start_ms": 2500.0, "ttft_ms": 550.0, "e2e_ms": 1000.0},
                   "d": {"start_ms": 2400.0, "ttft_ms": 300.0, "e2e_ms": 600.0}}
    assert d["requests"][3]["recorded"] == {"start_ms": 1500.0, "ttft_ms": 50.0, "e2e_ms": 500.0}
    s = d["summary"]
    assert s["start_abs_err_ms"] == {"median": 0.0, "p90": 1000.0, "max": 1000.0}
    assert s["ttft_ape"] == {"median": 500.0, "p90": pytest.approx(4000 / 3), "max": pytest.approx(4000 / 3)}
    assert s["e2e_ape"] == {"median": 100.0, "p90": pytest.approx(400 / 3), "max": pytest.approx(400 / 3)}
    assert s["makespan_err_pct"] == 25.0  # 3500 ms simulated against 2800 recorded
    # every chain's play, a lone request's included, named as Dynamo 1.6.1's raw loader names them
    assert list(d["plays"]) == ["dynamo-play:a", "dynamo-play:b", "dynamo-play:c", "dynamo-play:d"]
    a, b = d["plays"]["dynamo-play:a"], d["plays"]["dynamo-play:b"]
    assert a["requests"] == 1 and a["e2e_ape"]["max"] == 0.0
    assert b["start_abs_err_ms"] == {"median": 1000.0, "p90": 1000.0, "max": 1000.0}
    assert b["makespan_err_pct"] == 75.0
    # b ends 1000 ms late (it waited for a's slot); at its release it is the only one waiting
    on = d["error_onset"]
    assert (on["request_id"], on["queue_depth"], on["start_err_ms"], on["end_err_ms"]) == ("b", 1, 0.0, 1000.0)
    # distribution level (signed): each side's own percentiles over the same requests
    assert list(d) == ["requests", "summary", "plays", "error_onset", "distribution"]
    dist = d["distribution"]
    # TTFT recorded 50 60 100 100 200, simulated 100 300 550 860 1200: p50 index 2, p90 and p99 index 4
    assert dist["ttft_ms"] == {"compared": 5, "p50": {"recorded": 100.0, "simulated": 550.0, "error_pct": 450.0},
                               "p90": {"recorded": 200.0, "simulated": 1200.0, "error_pct": 500.0},
                               "p99": {"recorded": 200.0, "simulated": 1200.0, "error_pct": 500.0}}
    # E2E recorded 400 500 600 1000 1000, simulated 600 1000 1000 1400 2000
    assert dist["e2e_ms"]["p50"] == {"recorded": 600.0, "simulated": 1000.0, "error_pct": pytest.approx(200 / 3)}
    assert dist["e2e_ms"]["p90"] == {"recorded": 1000.0, "simulated": 2000.0, "error_pct": 100.0}
    # recorded service: each request's decode (e2e - ttft over 4 gaps) is its own, so TPOT agrees
    assert dist["tpot_ms"]["compared"] == 5
    assert dist["tpot_ms"]["p50"] == {"recorded": 135.0, "simulated": 135.0, "error_pct": 0.0}
    assert dist["tpot_ms"]["p99"] == {"recorded": 225.0, "simulated": 225.0, "error_pct": 0.0}
    # 5 requests (25 tokens) over 2.8 s recorded, 3.5 s simulated
    tp = dist["throughput"]
    assert tp["recorded_requests_per_s"] == pytest.approx(5 / 2.8) and tp["simulated_requests_per_s"] == pytest.approx(5 / 3.5)
    assert tp["requests_error_pct"] == pytest.approx(-20.0) and tp["output_tokens_error_pct"] == pytest.approx(-20.0)
    assert tp["recorded_output_tokens_per_s"] == pytest.approx(25 / 2.8)
    printed = capsys.readouterr().out
    assert ("Simulated vs recorded percentiles (signed error): TTFT p50 +450.00% p90 +500.00% p99 +500.00%; "
            "TPOT p50 +0.00% p90 +0.00% p99 +0.00%; E2E p50 +66.67% p90 +100.00% p99 +100.00%") in printed
    assert "Throughput: 1.43 req/s simulated, 1.79 recorded (-20.00%)" in printed
    assert "Start abs error (ms)" in printed and "Makespan error: 25.00%" in printed
    assert "Error onset (> 100 ms): request b, start +0.00 ms, end +1,000.00 ms off; simulated queue depth 1" in printed
    # above 1000 ms: c ends 800 ms late, b2 starts 1000 and ends 1500 ms late, with d and itself waiting
    run([str(p)], trace_format="dynamo", timing="recorded", extra_engine_args='{"max_num_seqs": 1}', onset_ms=1000.0,
        report_json=str(tmp_path / "r.json"), compare_json=str(out), progress=False)
    on = json.loads(out.read_text())["error_onset"]
    assert (on["request_id"], on["queue_depth"], on["start_err_ms"], on["end_err_ms"]) == ("b2", 2, 1000.0, 1500.0)


def test_compare_onset_threshold_and_cli(tmp_path):
    p = small_trace(tmp_path)
    out = tmp_path / "cmp.json"
    res = CliRunner().invoke(app, ["replay", str(p), "--trace-format", "dynamo", "--timing", "recorded",
                                   "--num-workers", "8", "--onset-ms", "0", "--compare-json", str(out),
                                   "--report-json", str(tmp_path / "r.json")])
    assert res.exit_code == 0, res.output
    d = json.loads(out.read_text())
    assert d["summary"]["start_abs_err_ms"]["max"] == 0.0 and d["summary"]["makespan_err_pct"] == 0.0
    assert d["error_onset"]["request_id"] is None and d["error_onset"]["threshold_ms"] == 0.0


def test_compare_needs_recorded_times(tmp_path):
    t = tmp_path / "t.jsonl"
    t.write_text('{"timestamp": 0, "input_length": 8, "output_length": 3, "hash_ids": [1, 2]}\n')
    for extra in (["--compare-json", str(tmp_path / "c.json")], ["--timing", "recorded"]):
        res = CliRunner().invoke(app, ["replay", str(t), "--report-json", str(tmp_path / "r.json"), *extra])
        assert res.exit_code == 2
        assert "needs recorded times" in res.output and not (tmp_path / "c.json").exists()


def test_recorded_e2e_is_the_unrounded_total_time(tmp_path):
    """Dynamo rows carry whole-ms start and end but a fractional `total_time_ms`: the comparison and
    `--timing recorded` use the recorded 4.6 ms, not the rounded 5 ms (an 8.7% error on its own)."""
    p = write_jsonl(tmp_path / "t.jsonl", [req("a", "A", None, 0, 5, [1], ttft_ms=2.25, total_time_ms=4.6),
                                          req("b", "A", None, 10, 20, [2], ttft_ms=3.0)])
    out = tmp_path / "cmp.json"
    run([str(p)], trace_format="dynamo", timing="recorded", report_json=str(tmp_path / "r.json"),
        compare_json=str(out), progress=False)
    d = json.loads(out.read_text())
    rec = {r["request_id"]: r["recorded"] for r in d["requests"]}
    sim = {r["request_id"]: r["simulated"] for r in d["requests"]}
    assert rec["a"] == {"start_ms": 0.0, "ttft_ms": 2.25, "e2e_ms": 4.6}
    assert sim["a"] == {"start_ms": 0.0, "ttft_ms": 2.25, "e2e_ms": 4.6}
    assert rec["b"]["e2e_ms"] == 10.0 and sim["b"]["e2e_ms"] == pytest.approx(10.0)  # no total_time_ms: end - start
    assert d["summary"]["e2e_ape"]["max"] < 1e-9
