"""`trace-pipe collect` takes its file sink from Dynamo's current sink variables when flags are
absent (dynamo-1.6.md §8; Dynamo's lib/llm/src/request_trace/config.rs): flags win, then today's
`DYN_REQUEST_TRACE_*` names, then the names Dynamo still reads as deprecated aliases, then G2's.
Sinks trace-pipe cannot be (nats, otel, s3) are a one-line error. ZMQ binds 127.0.0.1 only."""

from __future__ import annotations

import gzip
import os
import re
import subprocess
import sys

import orjson
import pytest

from trace_pipe.tools import env as E
from trace_pipe.tools.env import SinkChoice, sink_choice, sink_int

CLI = [sys.executable, "-c", "from trace_pipe.cli.main import main; main()"]


# -- where and in which format --------------------------------------------------------------------

@pytest.mark.parametrize("given, want", [
    # today's name, then Dynamo's deprecated alias, then the audit alias, then G2's
    ({"DYN_REQUEST_TRACE_FILE_PATH": "/new", "DYN_REQUEST_TRACE_OUTPUT_PATH": "/alias",
      "DYN_AUDIT_OUTPUT_PATH": "/audit", "DYN_AGENT_TRACE_OUTPUT_PATH": "/g2"}, "/new"),
    ({"DYN_REQUEST_TRACE_OUTPUT_PATH": "/alias", "DYN_AUDIT_OUTPUT_PATH": "/audit",
      "DYN_AGENT_TRACE_OUTPUT_PATH": "/g2"}, "/alias"),
    ({"DYN_AUDIT_OUTPUT_PATH": "/audit", "DYN_AGENT_TRACE_OUTPUT_PATH": "/g2"}, "/audit"),
    ({"DYN_AGENT_TRACE_OUTPUT_PATH": "/g2"}, "/g2"),
    ({"DYN_REQUEST_TRACE_FILE_PATH": "  ", "DYN_AGENT_TRACE_OUTPUT_PATH": " /g2 "}, "/g2"),  # blank = unset, trimmed
])
def test_path_precedence(given, want):
    assert sink_choice(None, None, given) == SinkChoice(want, "jsonl_gz")


def test_the_output_flag_wins_over_every_variable():
    env = {"DYN_REQUEST_TRACE_FILE_PATH": "/new", "DYN_REQUEST_TRACE_FILE_FORMAT": "jsonl_gz",
           "DYN_REQUEST_TRACE_SINKS": "nats,stderr"}  # not consulted: --output chose the file sink
    assert sink_choice("t.jsonl", None, env) == SinkChoice("t.jsonl", "jsonl")
    assert sink_choice("t.jsonl.gz", None, env) == SinkChoice("t.jsonl.gz", "jsonl_gz")
    # a name without a format suffix takes the format from the variables, then Dynamo's default
    assert sink_choice("t", None, {"DYN_REQUEST_TRACE_FILE_FORMAT": "jsonl"}) == SinkChoice("t", "jsonl")
    assert sink_choice("t", None, {}) == SinkChoice("t", "jsonl_gz")
    # and --format wins over the suffix
    assert sink_choice("t.jsonl", "jsonl_gz", {}) == SinkChoice("t.jsonl", "jsonl_gz")


@pytest.mark.parametrize("given, want", [
    ({"DYN_REQUEST_TRACE_FILE_FORMAT": "jsonl"}, "jsonl"),
    ({"DYN_REQUEST_TRACE_FILE_FORMAT": " JSONL.GZ "}, "jsonl_gz"),  # Dynamo's spellings, case-insensitive
    ({"DYN_REQUEST_TRACE_SINKS": "jsonl"}, "jsonl"),  # legacy sink names carry the format
    ({"DYN_REQUEST_TRACE_SINKS": "jsonl,jsonl_gz"}, "jsonl_gz"),  # as Dynamo: jsonl_gz wins
    ({"DYN_AUDIT_SINKS": "jsonl"}, "jsonl"),
    ({"DYN_AGENT_TRACE_SINKS": "jsonl"}, "jsonl"),  # G2
    ({"DYN_REQUEST_TRACE_SINKS": "file", "DYN_AGENT_TRACE_SINKS": "jsonl"}, "jsonl_gz"),  # new list wins
    ({"DYN_REQUEST_TRACE_FILE_FORMAT": "jsonl_gz", "DYN_REQUEST_TRACE_SINKS": "jsonl"}, "jsonl_gz"),
    ({}, "jsonl_gz"),  # Dynamo's default
])
def test_format_precedence(given, want):
    assert sink_choice(None, None, {"DYN_REQUEST_TRACE_FILE_PATH": "/x", **given}).fmt == want


def test_dynamos_own_policy_cases():
    # config.rs `legacy_jsonl_sink_maps_to_file_sink`: file + stderr, jsonl, the alias path
    assert sink_choice(None, None, {"DYN_REQUEST_TRACE_SINKS": "jsonl,stderr",
                                    "DYN_REQUEST_TRACE_OUTPUT_PATH": "/tmp/legacy-request-trace"}) == \
        SinkChoice("/tmp/legacy-request-trace", "jsonl", stderr=True)
    # `request_trace_sinks_win_over_legacy_audit_sinks`: stderr only, no file
    assert sink_choice(None, None, {"DYN_REQUEST_TRACE_SINKS": "stderr",
                                    "DYN_AUDIT_SINKS": "nats,otel,jsonl_gz"}) == SinkChoice(None, None, stderr=True)
    # telemetry `parse_sink_names`: trimmed, lower-cased; a list of nothing reads as stderr
    assert sink_choice(None, None, {"DYN_REQUEST_TRACE_SINKS": " FILE , STDERR ",
                                    "DYN_REQUEST_TRACE_FILE_PATH": "/x"}) == SinkChoice("/x", "jsonl_gz", True)
    assert sink_choice(None, None, {"DYN_REQUEST_TRACE_SINKS": " , "}) == SinkChoice(None, None, stderr=True)


@pytest.mark.parametrize("given, message", [
    ({"DYN_REQUEST_TRACE_SINKS": "file,nats"}, "environment variable DYN_REQUEST_TRACE_SINKS selects the 'nats' sink, "
     "which trace-pipe collect cannot be (it writes files and stderr only): give --output or drop 'nats'"),
    ({"DYN_REQUEST_TRACE_SINKS": "otel"}, "selects the 'otel' sink"),
    ({"DYN_REQUEST_TRACE_SINKS": "s3"}, "selects the 's3' sink"),
    ({"DYN_AUDIT_SINKS": "nats"}, "environment variable DYN_AUDIT_SINKS selects the 'nats' sink"),
    ({"DYN_REQUEST_TRACE_SINKS": "file,kafka"}, "environment variable DYN_REQUEST_TRACE_SINKS: unknown sink 'kafka' "
     "(Dynamo's are file, stderr, nats, otel, s3, jsonl, jsonl_gz)"),
    ({"DYN_REQUEST_TRACE_FILE_PATH": "/x", "DYN_REQUEST_TRACE_FILE_FORMAT": "parquet"},
     "environment variable DYN_REQUEST_TRACE_FILE_FORMAT='parquet': want jsonl or jsonl_gz"),
    ({"DYN_REQUEST_TRACE_FILE_PATH": "/x.jsonl.gz", "DYN_REQUEST_TRACE_FILE_FORMAT": "jsonl"},
     "DYN_REQUEST_TRACE_FILE_FORMAT=jsonl writes one plain JSONL file, but environment variable "
     "DYN_REQUEST_TRACE_FILE_PATH names a gzip file: /x.jsonl.gz"),
    ({"DYN_REQUEST_TRACE_SINKS": "file"}, "no output file: give --output or set DYN_REQUEST_TRACE_FILE_PATH"),
    ({}, "no output file: give --output or set DYN_REQUEST_TRACE_FILE_PATH"),
])
def test_sink_errors(given, message):
    with pytest.raises(ValueError) as e:
        sink_choice(None, None, given)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_format_flag_errors():
    with pytest.raises(ValueError, match=r"^--format 'csv': want jsonl or jsonl_gz$"):
        sink_choice("t", "csv", {})
    with pytest.raises(ValueError, match="--format jsonl writes one plain JSONL file, but --output names a gzip file"):
        sink_choice("t.jsonl.gz", "jsonl", {})


# -- roll, buffer and flush settings --------------------------------------------------------------

@pytest.mark.parametrize("names", [E.ROLL_BYTES_VARS, E.ROLL_LINES_VARS, E.BUFFER_VARS, E.FLUSH_VARS])
def test_numeric_settings_precedence(names):
    new, alias, audit, g2 = names
    assert names[0].startswith("DYN_REQUEST_TRACE_FILE_") and g2.startswith("DYN_AGENT_TRACE_JSONL")
    everything = {new: "1", alias: "2", audit: "3", g2: "4"}
    assert sink_int(names, 9, 0, everything) == 9  # the flag
    assert sink_int(names, None, 0, everything) == 1
    assert sink_int(names, None, 0, {alias: "2", audit: "3", g2: "4"}) == 2
    assert sink_int(names, None, 0, {audit: "3", g2: "4"}) == 3
    assert sink_int(names, None, 0, {g2: "4"}) == 4
    assert sink_int(names, None, 7, {}) == 7
    with pytest.raises(ValueError, match=rf"^environment variable {new}='0' must be positive$"):
        sink_int(names, None, 0, {new: "0"})


# -- the command ----------------------------------------------------------------------------------

PUBLISH = ("import sys; from trace_pipe.tools import ToolEventPublisher\n"
           "pub = ToolEventPublisher(sys.argv[1], session_id='s', shape='request', env={})\n"
           "[pub.tool_end(f'c{i}', 'bash', started_at_unix_ms=1000 + i, ended_at_unix_ms=1010 + i) for i in range(5)]\n"
           "s = pub.close(timeout=10); assert s.sent == 5, s")


def _clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DYN_REQUEST_TRACE", "DYN_AGENT_TRACE", "DYN_AUDIT"))}
    return {**env, **extra}


def test_collect_writes_where_dynamos_variables_say(tmp_path):
    env = _clean_env(DYN_REQUEST_TRACE_SINKS="file,stderr", DYN_REQUEST_TRACE_FILE_PATH=str(tmp_path / "req-trace"),
                     DYN_REQUEST_TRACE_FILE_FORMAT="jsonl_gz", DYN_REQUEST_TRACE_FILE_ROLL_LINES="2",
                     DYN_AGENT_TRACE_JSONL_GZ_ROLL_LINES="100")  # the older name loses
    p = subprocess.Popen(CLI + ["collect", "--endpoint", "tcp://127.0.0.1:*", "--max-messages", "5"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        ready = p.stderr.readline().decode()
        m = re.search(r"listening on (\S+) \(topic 'agent-tool-events'\) -> (.*)$", ready)
        assert m, ready
        assert m.group(2) == f"{tmp_path / 'req-trace'} (jsonl_gz) and stderr"
        subprocess.run([sys.executable, "-c", PUBLISH, m.group(1)], check=True, timeout=60, env=_clean_env())
        _, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err
    segs = sorted(tmp_path.glob("req-trace.*.jsonl.gz"))
    assert [s.name for s in segs] == [f"req-trace.00000{i}.jsonl.gz" for i in range(3)]  # rolled every 2 lines
    rows = [orjson.loads(line) for s in segs for line in gzip.open(s).read().splitlines()]
    assert [len(gzip.open(s).read().splitlines()) for s in segs] == [2, 2, 1]
    # Dynamo's stderr sink: the bare records, one a line, beside the file's envelopes
    echoed = [orjson.loads(line) for line in err.splitlines() if line.startswith(b'{"schema"')]
    assert echoed == [r["event"] for r in rows] and len(echoed) == 5
    assert [r["tool"]["tool_call_id"] for r in echoed] == [f"c{i}" for i in range(5)]
    assert echoed[0]["agent_context"] == {"session_id": "s"}


def test_collect_flags_win_over_the_variables(tmp_path):
    env = _clean_env(DYN_REQUEST_TRACE_SINKS="nats", DYN_REQUEST_TRACE_FILE_PATH=str(tmp_path / "env"),
                     DYN_REQUEST_TRACE_FILE_FORMAT="jsonl_gz")
    p = subprocess.Popen(CLI + ["collect", "--endpoint", "tcp://127.0.0.1:*", "--max-messages", "5",
                                "-o", str(tmp_path / "flag.jsonl")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=env)
    try:
        ready = p.stderr.readline().decode()
        m = re.search(r"listening on (\S+)", ready)
        assert m, ready
        subprocess.run([sys.executable, "-c", PUBLISH, m.group(1)], check=True, timeout=60, env=_clean_env())
        _, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err
    assert len((tmp_path / "flag.jsonl").read_bytes().splitlines()) == 5
    assert not list(tmp_path.glob("env*"))


@pytest.mark.parametrize("sinks", ["nats", "file,otel", "s3"])
def test_collect_refuses_a_remote_sink_in_one_line(tmp_path, sinks):
    env = _clean_env(DYN_REQUEST_TRACE_SINKS=sinks, DYN_REQUEST_TRACE_FILE_PATH=str(tmp_path / "t"))
    r = subprocess.run(CLI + ["collect", "--endpoint", "tcp://127.0.0.1:*"], capture_output=True, text=True,
                       timeout=60, env=env)
    bad = [s for s in sinks.split(",") if s != "file"][0]
    assert r.returncode == 2
    assert r.stderr.splitlines() == [
        f"error: environment variable DYN_REQUEST_TRACE_SINKS selects the {bad!r} sink, which trace-pipe collect "
        f"cannot be (it writes files and stderr only): give --output or drop {bad!r}"]
    assert not list(tmp_path.iterdir())


def test_a_literal_jsonl_path_without_suffix_is_written_and_read_back(tmp_path):
    # DYN_REQUEST_TRACE_FILE_FORMAT=jsonl: FILE_PATH is the file itself, whatever its name
    from trace_pipe.cli.convert_cmd import run_convert

    env = _clean_env(DYN_REQUEST_TRACE_FILE_PATH=str(tmp_path / "request-trace"), DYN_REQUEST_TRACE_FILE_FORMAT="jsonl")
    p = subprocess.Popen(CLI + ["collect", "--endpoint", "tcp://127.0.0.1:*", "--max-messages", "5"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        m = re.search(r"listening on (\S+)", p.stderr.readline().decode())
        assert m
        subprocess.run([sys.executable, "-c", PUBLISH, m.group(1)], check=True, timeout=60, env=_clean_env())
        _, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err
    assert [x.name for x in tmp_path.iterdir()] == ["request-trace"]
    out = tmp_path / "t.json"
    lines: list[str] = []

    class Sink:
        def write(self, s):
            lines.append(s)

    run_convert([str(tmp_path / "request-trace")], chrome_json=str(out), out=Sink(), err=Sink())
    doc = orjson.loads(out.read_bytes())
    assert sum(e.get("cat") == "dynamo.agent.tool" for e in doc["traceEvents"]) == 5
