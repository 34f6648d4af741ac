"""`trace-pipe replay` end to end through the CLI layer."""

from __future__ import annotations

import json

import orjson
from typer.testing import CliRunner

from trace_pipe.cli.main import _register, app

_register()


def test_replay_cli_writes_reports_and_table(tmp_path):
    trace = tmp_path / "t.jsonl"
    trace.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in [
        {"timestamp": 0, "input_length": 8, "output_length": 3, "hash_ids": [1, 2]},
        {"timestamp": 0.5, "input_length": 8, "output_length": 2, "hash_ids": [1, 3]}]))
    # durations as ai-dynamo 1.6.1 (the default) and 1.4.2 report them for this trace
    for version, duration in ((None, 44.688147), ("1.4", 50.441332)):
        rep, jl = tmp_path / f"r{version}.json", tmp_path / f"r{version}.jsonl"
        pin = ["--dynamo-version", version] if version else []
        res = CliRunner().invoke(app, ["replay", str(trace), "--trace-block-size", "4", "--extra-engine-args",
                                       '{"block_size":4}', "--report-json", str(rep), "--report-jsonl", str(jl), *pin])
        assert res.exit_code == 0, res.output
        assert "Time to First Token (ms)" in res.output and f"Saved full report to: {rep}" in res.output
        d = json.loads(rep.read_text())
        assert d["duration_ms"] == duration and d["prefix_cache_reused_ratio"] == 0.25
        rows = [json.loads(x) for x in jl.read_text().splitlines()]
        assert [r["reused_input_tokens"] for r in rows] == [0, 4]


def test_replay_cli_bad_engine_key_is_one_line(tmp_path):
    trace = tmp_path / "t.jsonl"
    trace.write_text('{"timestamp": 0, "input_length": 8, "output_length": 3, "hash_ids": [1, 2]}\n')
    res = CliRunner().invoke(app, ["replay", str(trace), "--extra-engine-args", '{"bogus": 1}',
                                   "--report-json", str(tmp_path / "r.json")])
    assert res.exit_code == 2
    assert "unknown field `bogus`" in res.output and not (tmp_path / "r.json").exists()
