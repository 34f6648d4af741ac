"""`trace-pipe sweep`: a grid of replays in parallel processes, one deterministic table."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from trace_pipe.cli import sweep_cmd
from trace_pipe.cli.main import _register, app
from trace_pipe.pipeline.errors import TraceError
from trace_pipe.sim import sweep

from replay_cases import two_group_trace

_register()
WEKA = Path(__file__).resolve().parents[1] / "fixtures" / "trace_0277.json"


def _trace(tmp_path: Path) -> Path:
    return Path(two_group_trace(tmp_path))


def test_grid_and_list_parsing():
    assert sweep.grid([2, 4, 2], ["round_robin", "kv_router"]) == [
        sweep.SweepPoint(2, "round_robin"), sweep.SweepPoint(2, "kv_router"),
        sweep.SweepPoint(4, "round_robin"), sweep.SweepPoint(4, "kv_router")]
    assert sweep.parse_list(" 2, 4,8 ", "--num-workers", int) == [2, 4, 8]
    with pytest.raises(TraceError, match=r"--num-workers: 'two' is not a valid int"):
        sweep.parse_list("2,two", "--num-workers", int)
    with pytest.raises(TraceError, match="not >= 1"):
        sweep.grid([0], ["round_robin"])


def test_sweep_parallel_equals_serial_and_kv_router_reuses_cache(tmp_path):
    t = str(_trace(tmp_path))
    args = dict(num_workers="1,2", router_mode="round_robin,kv_router", trace_block_size=16,
                extra_engine_args='{"block_size": 16}', out=io.StringIO())
    serial = sweep_cmd.run([t], csv_out=str(tmp_path / "a.csv"), jobs=1, **args)
    parallel = sweep_cmd.run([t], csv_out=str(tmp_path / "b.csv"), jobs=2, **args)
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    assert [(r["num_workers"], r["router_mode"]) for r in serial] == [
        (1, "round_robin"), (1, "kv_router"), (2, "round_robin"), (2, "kv_router")]
    assert serial == parallel
    rows = list(csv.DictReader(io.StringIO((tmp_path / "a.csv").read_text())))
    assert list(rows[0]) == [c for c, _, _ in sweep.COLUMNS]
    assert all(r["completed_requests"] == "8" and r["error"] == "" for r in rows)
    reuse = {(r["num_workers"], r["router_mode"]): float(r["prefix_cache_reused_ratio"]) for r in rows}
    # one worker: every request after the first of its group reuses 32 of 64 tokens -> 6*32/512
    assert reuse[("1", "round_robin")] == reuse[("1", "kv_router")] == 0.375
    # two workers: round robin alternates i%2, which here is the group, so it matches the kv router
    assert reuse[("2", "kv_router")] == 0.375
    for r in rows:
        assert float(r["ttft_p50_ms"]) <= float(r["ttft_p90_ms"]) <= float(r["ttft_p99_ms"])
        assert float(r["e2e_p50_ms"]) <= float(r["e2e_p99_ms"])
        assert float(r["makespan_ms"]) > 7.0


def test_sweep_cli_weka_grid_and_bad_router_mode(tmp_path):
    out = tmp_path / "s.csv"
    runner = CliRunner()
    res = runner.invoke(app, ["sweep", str(WEKA), "--trace-format", "weka", "--num-workers", "1,2",
                              "--router-mode", "round_robin,kv_router", "--jobs", "2", "--csv", str(out)])
    assert res.exit_code == 0, res.output
    assert "trace-pipe sweep" in res.output and f"Saved table to: {out}" in res.output
    lines = out.read_text().splitlines()
    assert len(lines) == 5 and lines[0].startswith("num_workers,router_mode,completed_requests,makespan_ms")
    # ai-dynamo 1.6.1's durations for this trace: a second round-robin worker lengthens it (each
    # worker caches only the prompts it served), the KV router keeps the chain on one worker
    mk = {tuple(r.split(",")[:2]): float(r.split(",")[3]) for r in lines[1:]}
    assert mk[("1", "round_robin")] == pytest.approx(1029115.798, abs=1e-3)
    assert mk[("2", "round_robin")] == pytest.approx(1029131.717, abs=1e-3)
    bad = runner.invoke(app, ["sweep", str(WEKA), "--trace-format", "weka", "--router-mode", "fastest",
                              "--csv", str(tmp_path / "x.csv")])
    assert bad.exit_code == 2 and "--router-mode must be among" in bad.output
    assert not (tmp_path / "x.csv").exists()
    # without --csv: the terminal table alone (the issue's own example command)
    res = runner.invoke(app, ["sweep", str(WEKA), "--trace-format", "weka", "--num-workers", "1", "--jobs", "1"])
    assert res.exit_code == 0, res.output
    assert "1 configuration (0 failed)" in res.output and "Saved table" not in res.output


def test_sweep_takes_replays_timing_choices(tmp_path):
    """--timing resolves as in `trace-pipe replay` (one rule): a profile table slows every pass
    here; recorded service times are one configuration's, so a sweep refuses them."""
    t = str(_trace(tmp_path))
    table = tmp_path / "table.json"
    table.write_bytes(orjson.dumps({"prefill_tokens": [0, 1000], "prefill_ms": [100.0, 200.0],
                                    "decode_kv_tokens": [0, 10000], "decode_context": [0, 10000],
                                    "decode_itl_ms": [[50.0, 50.0], [50.0, 50.0]]}))
    args = dict(num_workers="1", router_mode="round_robin", trace_block_size=16, extra_engine_args='{"block_size": 16}',
                jobs=1, out=io.StringIO())
    poly = sweep_cmd.run([t], csv_out=str(tmp_path / "p.csv"), **args)[0]
    slow = sweep_cmd.run([t], csv_out=str(tmp_path / "t.csv"), timing="table", timing_table=str(table), **args)[0]
    assert poly["makespan_ms"] == pytest.approx(61.223121)  # ai-dynamo 1.6.1's duration_ms for this trace
    # passes of >= 100 ms and 50 ms decode steps; as in 1.6.1, a prompt's last pass charges no decode step
    assert slow["makespan_ms"] == pytest.approx(432.3)
    with pytest.raises(TraceError, match="--timing table needs --timing-table FILE"):
        sweep_cmd.run([t], csv_out=str(tmp_path / "x.csv"), timing="table", **args)
    with pytest.raises(TraceError, match="use `trace-pipe replay`"):
        sweep_cmd.run([str(WEKA)], csv_out=str(tmp_path / "x.csv"), trace_format="weka", timing="recorded",
                      **{**args, "trace_block_size": None, "extra_engine_args": None})
    assert not (tmp_path / "x.csv").exists()
