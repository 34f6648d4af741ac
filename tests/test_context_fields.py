"""Dynamo 1.6's `agent_context` gained `agent_headers` (client metadata headers, a map) and
`input_trigger` (`user_message` | `tool_result` | `other`) (dynamo-1.6.md §8). Every reader and
the collector accept them; nothing derived from a trace changes because of them."""

from __future__ import annotations

import copy

import orjson
import pytest
import typer
from typer.testing import CliRunner

from dynamo_records import req, tool, write_jsonl
from trace_pipe.cli import convert_cmd, replay_cmd
from trace_pipe.proto.check import check_file
from trace_pipe.tools.validation import normalize

HEADERS = {"x-agent-name": "pi", "x-agent-run": "run-7"}

app = typer.Typer()
app.callback()(lambda: None)
convert_cmd.register(app)
replay_cmd.register(app)


def records(with_fields: bool) -> list[dict]:
    recs = [req("r1", "s", None, 1000, 1050, [1], ttft_ms=12),
            req("c1", "k", "s", 1060, 1090, [5], ttft_ms=5),
            req("r2", "s", None, 1100, 1150, [1, 2], ttft_ms=10),
            tool("s", "call-1", "bash", 1052, 1095)]
    if with_fields:
        for r, trig in zip(recs, ("user_message", "other", "tool_result", "tool_result")):
            r["agent_context"]["agent_headers"] = dict(HEADERS)
            r["agent_context"]["input_trigger"] = trig
    return recs


@pytest.mark.parametrize("args", [
    ["--agentic", "--format", "v1", "--mooncake", "out"],
    ["--agentic", "--format", "v2", "--mooncake", "out"],
    ["--mooncake", "out"],
    ["--perfetto", "out"],
    ["--chrome-json", "out", "--include-markers"],
], ids=["v1", "v2", "plain", "perfetto", "chrome-json"])
def test_convert_reads_them_and_writes_the_same_bytes(tmp_path, args):
    outs = []
    for with_fields in (False, True):
        d = tmp_path / str(with_fields)
        d.mkdir()
        src = write_jsonl(d / "trace.jsonl", records(with_fields), envelope=with_fields)
        out = d / "out"
        res = CliRunner().invoke(app, ["convert", str(src), *[str(out) if a == "out" else a for a in args]])
        assert res.exit_code == 0, res.output
        outs.append(out.read_bytes())
    assert outs[0] == outs[1] and len(outs[0]) > 100
    if "--perfetto" in args:
        assert check_file(tmp_path / "True" / "out").ok


def test_replay_reads_them(tmp_path):
    reports = []
    for with_fields in (False, True):
        src = write_jsonl(tmp_path / f"t{with_fields}.jsonl", records(with_fields))
        rj = tmp_path / f"r{with_fields}.json"
        res = CliRunner().invoke(app, ["replay", str(src), "--trace-format", "dynamo", "--trace-block-size", "2",
                                       "--extra-engine-args", '{"block_size":2}', "--report-json", str(rj)])
        assert res.exit_code == 0, res.output
        rep = orjson.loads(rj.read_bytes())
        # wall-clock keys measure this machine, not the trace
        reports.append({k: v for k, v in rep.items() if k != "wall_time_ms" and not k.startswith("processed_")})
    assert reports[0] == reports[1] and reports[0]["completed_requests"] == 3 and len(reports[0]) > 50


@pytest.mark.parametrize("trigger", ["user_message", "tool_result", "other"])
def test_collector_keeps_them_in_dynamos_field_order(trigger):
    row = tool("s", "call-1", "bash", 1052, 1095)
    row["agent_context"] = {"input_trigger": trigger, "agent_headers": HEADERS, "parent_session_id": "p",
                            "session_id": "s"}
    out = normalize(copy.deepcopy(row))
    assert list(out["agent_context"].items()) == [("session_id", "s"), ("parent_session_id", "p"),
                                                  ("input_trigger", trigger), ("agent_headers", HEADERS)]
