"""Documented outcomes for damaged or odd input (README "Bad input"), through the real CLI."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from dynamo_records import read_jsonl, req, tool, write_jsonl
from trace_pipe.pipeline.readers import read_trace


def cli(*args: str):
    return subprocess.run([sys.executable, "-m", "trace_pipe.cli.main", *args], capture_output=True, text=True, timeout=120)


def test_error_is_one_line_with_file_line_field_and_no_partial_output(tmp_path):
    bad = req("r2", "root", None, 1200, 1300, [11, 22])  # 2 hashes for input_length 4 at bs 2 is fine...
    bad["request"]["replay"]["input_length"] = 6  # ...but not for 6
    src = write_jsonl(tmp_path / "in.jsonl", [req("r1", "root", None, 1000, 1100, [11]), bad])
    out = tmp_path / "out.jsonl"
    p = cli("convert", str(src), "--mooncake", str(out), "--agentic")
    assert p.returncode == 2
    assert p.stderr.strip().count("\n") == 0 and "Traceback" not in p.stderr
    assert f"{src}:2" in p.stderr and "request.replay.input_sequence_hashes" in p.stderr
    assert "requires exactly 3 replay hashes, got 2" in p.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == [src]


def test_truncated_gzip_is_an_error_naming_the_file(tmp_path):
    data = b"".join(orjson.dumps(req(f"r{i}", "root", None, 1000 + i * 100, 1050 + i * 100, [11])) + b"\n" for i in range(50))
    blob = gzip.compress(data[:2000]) + gzip.compress(data[2000:])
    p = tmp_path / "trace.000000.jsonl.gz"
    p.write_bytes(blob[:-30])
    r = cli("convert", str(p), "--mooncake", str(tmp_path / "o.jsonl"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip() == f"error: {p}: truncated gzip stream (the file ends inside a gzip member)"
    assert not (tmp_path / "o.jsonl").exists()
    p.write_bytes(blob)  # both members complete: every row
    assert len(read_trace([str(p)]).requests) == 50


def test_invalid_json_line(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_bytes(orjson.dumps(req("r1", "root", None, 1000, 1100, [11])) + b"\n{\"event_type\": \n")
    r = cli("convert", str(src), "--mooncake", str(tmp_path / "o.jsonl"))
    assert r.returncode == 2 and r.stderr.startswith(f"error: {src}:2: invalid JSON")


def test_nan_literal_is_named(tmp_path):
    src = tmp_path / "in.jsonl"
    line = orjson.dumps(req("r1", "root", None, 1000, 1100, [11])).replace(b'"total_time_ms":100', b'"total_time_ms":NaN')
    src.write_bytes(line + b"\n")
    r = cli("convert", str(src), "--mooncake", str(tmp_path / "o.jsonl"))
    assert r.returncode == 2 and "in.jsonl:1: invalid JSON: non-finite number `NaN`" in r.stderr


def test_negative_durations(tmp_path):
    # total_time_ms < 0 is clamped to 0 (Dynamo's max(total, 0)); a tool that ends before it starts is skipped, counted
    rec = req("r1", "root", None, 1000, 1100, [11])
    rec["request"]["total_time_ms"] = -5.0
    t = tool("root", "call-1", "ls", 1300, 1200)
    t2 = tool("root", "call-2", "ls", 0, 0)
    del t2["tool"]["started_at_unix_ms"]
    t2["tool"].update(ended_at_unix_ms=1050, duration_ms=-20.0)
    trace = read_trace([str(write_jsonl(tmp_path / "n.jsonl", [rec, t, t2]))])
    assert (trace.requests[0].start_ms, trace.requests[0].end_ms) == (1000, 1000)
    out = tmp_path / "o.jsonl"
    r = cli("convert", str(tmp_path / "n.jsonl"), "--mooncake", str(out), "--agentic", "--format", "v1")
    assert r.returncode == 0, r.stderr
    assert "skipped 1 tool spans ending before they start" in r.stderr  # v1 rows attribute tool spans; v2 rows have none


def test_negative_tool_duration_and_fractional_event_time(tmp_path):
    # as Dynamo's converter: a negative duration_ms without a start makes a zero-length span at the
    # end (loaded, counted in the summary with its own duration), and is copied verbatim into
    # tool_events; a fractional event_time_unix_ms (Dynamo's Rust readers take only integers, its
    # Perfetto script any number: §6.1 P3 has one) is rounded half away from zero for Mooncake
    r1 = req("r1", "root", None, 1000, 1100, [11])
    r2 = req("r2", "root", None, 1200, 1300, [11, 12])
    zero = tool("root", "c0", "ls", 0, 0, duration_ms=-20.0)
    del zero["tool"]["started_at_unix_ms"]
    zero["tool"]["ended_at_unix_ms"] = 1150
    inside = tool("root", "c1", "bash", 1120, 1180, duration_ms=-7.0)
    late = tool("root", "c2", "grep", 0, 0)
    del late["tool"]["started_at_unix_ms"], late["tool"]["ended_at_unix_ms"]
    late["tool"]["duration_ms"] = 10.0
    late["event_time_unix_ms"] = 1190.5  # the end: 1191
    src = write_jsonl(tmp_path / "in.jsonl", [r1, r2, zero, inside, late])
    out = tmp_path / "o.jsonl"
    r = cli("convert", str(src), "--mooncake", str(out), "--agentic", "--format", "v1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[2:] == ["", "Tool events: 3 spans across 1 sessions", "  Status:    succeeded=3",
                                         "  Class:     bash=1 grep=1 ls=1", "  Wall-time: -0.02s"]
    row = read_jsonl(out)[1]
    assert row["tool_events"] == [
        {"tool_call_id": "c1", "tool_class": "bash", "started_at_unix_ms": 1120, "ended_at_unix_ms": 1180,
         "duration_ms": -7.0, "status": "succeeded"},
        {"tool_call_id": "c2", "tool_class": "grep", "started_at_unix_ms": 1181, "ended_at_unix_ms": 1191,
         "duration_ms": 10.0, "status": "succeeded"}]
    assert (row["tool_wait_ms"], row["delay"]) == (70.0, 30.0)


def test_tool_summary_counts_the_spans_dynamo_loads(tmp_path):
    # §4.2: a span ending before it starts is not loaded, and a missing duration_ms is end - start;
    # the §4.1 summary is over the loaded entries
    back = tool("root", "c1", "bash", 1300, 1200, duration_ms=-100.0)
    nodur = tool("root", "c2", "ls", 1100, 1250)
    del nodur["tool"]["duration_ms"]
    src = write_jsonl(tmp_path / "in.jsonl", [req("r1", "root", None, 1000, 1100, [11]), back, nodur])
    r = cli("convert", str(src), "--mooncake", str(tmp_path / "o.jsonl"), "--agentic", "--format", "v1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[2:] == ["", "Tool events: 1 spans across 1 sessions", "  Status:    succeeded=1",
                                         "  Class:     ls=1", "  Wall-time: 0.15s"]


def test_mooncake_input_converts_only_to_its_own_shape(tmp_path):
    plain = tmp_path / "plain.jsonl"
    plain.write_bytes(b'{"input_length":4,"output_length":5,"hash_ids":[0,1],"timestamp":0.0}\n')
    out = tmp_path / "o.jsonl"
    r = cli("convert", str(plain), "--mooncake", str(out))
    assert r.returncode == 0 and out.read_bytes() == plain.read_bytes()  # no invented request_id
    assert r.stdout.splitlines() == [f"Wrote 1 Mooncake rows to {out}"]  # no block size to report
    r = cli("convert", str(plain), "--mooncake", str(out), "--agentic")
    assert r.returncode == 2 and r.stderr.strip() == (
        "error: the input is plain Mooncake, which converts only to itself (without --agentic); for agentic v2 "
        "rows convert the Dynamo or WEKA trace it came from")
    src = write_jsonl(tmp_path / "d.jsonl", [req("r1", "root", None, 1000, 1100, [11]),
                                            req("r2", "root", None, 1200, 1300, [11, 22])])
    v1, v2 = tmp_path / "v1.jsonl", tmp_path / "v2.jsonl"
    assert cli("convert", str(src), "--mooncake", str(v1), "--agentic", "--format", "v1").returncode == 0
    assert cli("convert", str(src), "--mooncake", str(v2), "--agentic").returncode == 0
    for args, want in ((["--agentic"], "agentic v2"), ([], "plain")):
        r = cli("convert", str(v1), "--mooncake", str(out), *args)
        assert r.returncode == 2 and r.stderr.strip() == (
            f"error: the input is agentic v1 Mooncake, which converts only to itself (with --agentic --format v1); "
            f"for {want} rows convert the Dynamo or WEKA trace it came from")
    for args, want in ((["--agentic", "--format", "v1"], "agentic v1"), ([], "plain")):
        r = cli("convert", str(v2), "--mooncake", str(out), *args)
        assert r.returncode == 2 and r.stderr.strip() == (
            f"error: the input is agentic v2 Mooncake, which converts only to itself (with --agentic); "
            f"for {want} rows convert the Dynamo or WEKA trace it came from")
    r = cli("convert", str(v1), "--mooncake", str(out), "--agentic", "--format", "v1")
    assert r.returncode == 0 and out.read_bytes() == v1.read_bytes()
    r = cli("convert", str(v2), "--mooncake", str(out), "--agentic")
    assert r.returncode == 0 and out.read_bytes() == v2.read_bytes()


def test_glob_matching_a_directory_reads_it(tmp_path):
    (tmp_path / "shards" / "a").mkdir(parents=True)
    write_jsonl(tmp_path / "shards" / "a" / "t.jsonl", [req("r1", None, None, 1000, 1100, [11])])
    r = cli("convert", str(tmp_path / "shards" / "*"), "--mooncake", str(tmp_path / "o.jsonl"))
    assert r.returncode == 0, r.stderr
    assert len(read_jsonl(tmp_path / "o.jsonl")) == 1


def test_weka_field_types_are_one_line_errors(tmp_path):
    play = {"id": "p", "block_size": 64, "requests": [
        {"t": 0, "type": "n", "in": 10, "out": 2, "hash_ids": [1], "model": "m", "api_time": 1.0, "ttft": "x"}]}
    src = tmp_path / "trace_0001.json"
    src.write_bytes(orjson.dumps(play))
    r = cli("convert", str(src), "--mooncake", str(tmp_path / "o.jsonl"))
    assert r.returncode == 2 and "field `requests[0].ttft` must be a finite number of seconds, got 'x'" in r.stderr


def test_v2_unknown_parent_names_the_record(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [req("r1", "child", "ghost", 1000, 1100, [11], model="m")])
    r = cli("convert", str(src), "--mooncake", str(tmp_path / "o.jsonl"), "--format", "v2")
    assert r.returncode == 2 and r.stderr.strip() == (
        f"error: {src}:1: field `agent_context.parent_session_id`: agent session child references unknown parent "
        f"session ghost")


def test_g3c_rules_require_tool_ids_and_a_single_mode(tmp_path):
    t = tool("root", "c1", "ls", 1150, 1250)
    del t["tool"]["tool_class"]
    src = write_jsonl(tmp_path / "in.jsonl", [req("r1", "root", None, 1000, 1100, [11]), t])
    r = cli("convert", str(src), "--mooncake", str(tmp_path / "o.jsonl"), "--agentic", "--g3c-rules")
    assert r.returncode == 2 and r.stderr.strip() == (
        f"error: {src}:2: field `tool.tool_class`: missing field `tool_class` (required by the G3c rules)")
    # Dynamo 1.6's exporter reads tool rows with its G3c loader: v2 needs the ids too
    r = cli("convert", str(src), "--mooncake", str(tmp_path / "o.jsonl"), "--agentic")
    assert r.returncode == 2 and r.stderr.strip() == (
        f"error: {src}:2: field `tool.tool_class`: missing field `tool_class` (required by the G3c rules)")
    assert cli("convert", str(src), "--mooncake", str(tmp_path / "o.jsonl"), "--agentic",
               "--format", "v1").returncode == 0  # G2-G3b: fine
    mixed = write_jsonl(tmp_path / "m.jsonl", [req("r1", "root", None, 1000, 1100, [11]),
                                               req("r2", None, None, 1200, 1300, [11])])
    r = cli("convert", str(mixed), "--mooncake", str(tmp_path / "o.jsonl"), "--g3c-rules")
    assert r.returncode == 2 and r.stderr.strip() == (
        f"error: {mixed}:2: field `agent_context`: Dynamo request trace cannot mix requests with and without "
        f"agent_context")


def test_u64_hashes_above_2_63_are_exact(tmp_path):
    big = [2**64 - 1, 2**63 + 12345, 14879255164371896291]
    rec = req("r1", None, None, 1000, 1100, big)
    trace = read_trace([str(write_jsonl(tmp_path / "h.jsonl", [rec, req("r2", None, None, 1200, 1300, big[:2] + [7])]))])
    assert list(trace.requests[0].hashes) == big
    out = tmp_path / "o.jsonl"
    assert cli("convert", str(tmp_path / "h.jsonl"), "--mooncake", str(out)).returncode == 0
    assert [r["hash_ids"] for r in read_jsonl(out)] == [[0, 1, 2], [0, 1, 3]]
    over = tmp_path / "over.jsonl"
    over.write_bytes(orjson.dumps(rec).replace(b"18446744073709551615", b"18446744073709551616") + b"\n")
    r = cli("convert", str(over), "--mooncake", str(out))
    assert r.returncode == 2 and "over.jsonl:1: field `request.replay.input_sequence_hashes` holds an integer above 2^64-1, not a u64 integer" in r.stderr


@pytest.mark.parametrize("hashes", [[11, True], [False, True], [True]])
@pytest.mark.parametrize("key", ["input_sequence_hashes", "completion_sequence_hashes"])
def test_booleans_are_not_hashes(tmp_path, hashes, key):
    # JSON true/false would pass as 1/0 into a u64 array; Dynamo's u64 type rejects them. The
    # second row takes the prefix shortcut (its chain's last list is known), the first does not.
    first = req("r1", "root", None, 1000, 1100, [11, 12])
    bad = req("r2", "root", None, 1200, 1300, [11, 12])
    bad["request"]["replay"][key] = hashes
    if key == "input_sequence_hashes":
        bad["request"]["replay"]["input_length"] = 2 * len(hashes)
    for name, recs in (("second", [first, bad]), ("first", [bad])):
        src = write_jsonl(tmp_path / f"{name}.jsonl", recs)
        r = cli("convert", str(src), "--mooncake", str(tmp_path / "o.jsonl"), "--agentic")
        line = len(recs)
        assert r.returncode == 2 and r.stderr.strip() == (
            f"error: {src}:{line}: field `request.replay.{key}` holds {next(h for h in hashes if type(h) is bool)}, "
            f"not a u64 integer (0 to 2^64-1)")
        assert not (tmp_path / "o.jsonl").exists()


def test_missing_input_and_non_objects(tmp_path):
    r = cli("convert", str(tmp_path / "nope.jsonl"), "--mooncake", str(tmp_path / "o.jsonl"))
    assert r.returncode == 2 and r.stderr.strip() == f"error: input path does not exist: {tmp_path / 'nope.jsonl'}"
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"[1,2]\n\n" + orjson.dumps(req("r1", None, None, 1000, 1100, [11])) + b"\n")
    r = cli("convert", str(src), "--mooncake", str(tmp_path / "o.jsonl"))
    assert r.returncode == 0 and "skipped 1 lines that are not JSON objects" in r.stderr


def test_no_requests(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [tool("root", "c", "ls", 1, 2)])
    r = cli("convert", str(src), "--mooncake", str(tmp_path / "o.jsonl"))
    assert r.returncode == 2 and "no request_end records with replay fields found" in r.stderr


def test_empty_input_is_named(tmp_path):
    # an input with no rows at all is named (#21); one whose rows hold nothing to draw says so
    src = tmp_path / "empty.jsonl"
    src.write_bytes(b"")
    r = cli("convert", str(src), "--perfetto", str(tmp_path / "o.pftrace"))
    assert r.returncode == 2 and r.stderr.strip() == f"error: {src}: no rows (the input is empty)"
    assert list(tmp_path.iterdir()) == [src]
    src.write_bytes(b"[1]\n")
    r = cli("convert", str(src), "--perfetto", str(tmp_path / "o.pftrace"))
    assert r.returncode == 2 and r.stderr.strip() == "error: nothing to draw: the input has no LLM requests and no tool rows"
    assert list(tmp_path.iterdir()) == [src]


def test_output_paths_checked_before_any_work(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [req("r1", "root", None, 1000, 1100, [11])])
    same = tmp_path / "x.out"
    r = cli("convert", str(src), "--perfetto", str(same), "--chrome-json", str(same))
    assert r.returncode == 2 and r.stderr.strip() == f"error: --chrome-json {same}: the same file as --perfetto"
    r = cli("convert", str(src), "--mooncake", str(src))
    assert r.returncode == 2 and r.stderr.strip() == f"error: --mooncake {src} is also an input (it would be overwritten)"
    r = cli("convert", str(src), "--perfetto", str(tmp_path))
    assert r.returncode == 2 and r.stderr.strip() == f"error: --perfetto {tmp_path}: is a directory"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]
    r = cli("convert", str(src), "--perfetto", "/dev/null", "--chrome-json", "/dev/null")  # discarding both is fine
    assert r.returncode == 0, r.stderr
    if Path("/proc/self").is_dir():  # a directory nothing can be created in: the error names the output
        r = cli("convert", str(src), "--mooncake", "/proc/x.jsonl")
        assert r.returncode == 2 and r.stderr == "error: /proc/x.jsonl: No such file or directory\n"
    # an output inside an input directory: fine the first time; on the next run it would be read back
    out = tmp_path / "rows.jsonl"
    assert cli("convert", str(tmp_path), "--mooncake", str(out), "--agentic").returncode == 0
    r = cli("convert", str(tmp_path), "--mooncake", str(out), "--agentic")
    assert r.returncode == 2 and r.stderr.strip() == f"error: --mooncake {out} is also an input (it would be overwritten)"
    r = cli("convert", str(tmp_path / "*.jsonl"), "--mooncake", str(out), "--agentic")  # a glob that matches it
    assert r.returncode == 2 and r.stderr.strip() == f"error: --mooncake {out} is also an input (it would be overwritten)"


def test_input_order_and_directory_do_not_change_the_perfetto_bytes(tmp_path, monkeypatch):
    a = write_jsonl(tmp_path / "a.jsonl", [req("r1", "root", None, 1000, 1100, [11])])
    b = write_jsonl(tmp_path / "b.jsonl", [req("r2", "root", None, 1200, 1300, [11, 22])])
    assert cli("convert", str(a), str(b), "--perfetto", str(tmp_path / "1.pftrace")).returncode == 0
    monkeypatch.chdir(tmp_path)
    assert cli("convert", "b.jsonl", "a.jsonl", "--perfetto", "2.pftrace").returncode == 0
    assert (tmp_path / "1.pftrace").read_bytes() == (tmp_path / "2.pftrace").read_bytes()


@pytest.mark.parametrize("gen", ["G1", "G2", "G3a", "G3b"])
def test_every_generation_reads_with_chain_and_parent(tmp_path, gen):
    trace = read_trace([str(write_jsonl(tmp_path / "g.jsonl", [req("c1", "kid", "root", 1200, 1300, [33], gen=gen),
                                                                 tool("kid", "t1", "ls", 1300, 1350, gen=gen)]))])
    (r,) = trace.requests
    scoped = "run-1:" if gen == "G1" else ""  # G1 program ids are per workflow (§4.3)
    assert (r.chain_id, r.parent_chain_id, r.generation.value) == (scoped + "kid", scoped + "root", gen)
    assert trace.tools[0].chain_id == scoped + "kid"


def test_perfetto_of_a_mixed_context_trace_draws_without_flows(tmp_path):
    src = write_jsonl(tmp_path / "mixed.jsonl", [req("r1", None, None, 1000, 1100, [11]),
                                                  req("r2", "root", None, 1200, 1300, [11])])
    out = tmp_path / "m.pftrace"
    r = cli("convert", str(src), "--perfetto", str(out))
    assert r.returncode == 0, r.stderr
    assert "note: no dependency flows:" in r.stderr and "without agent_context" in r.stderr
    assert cli("check", str(out)).returncode == 0


@pytest.mark.parametrize("where, value, text", [
    ("request_id", 5, "invalid request_end at {src}:1: field `request.request_id` must be a non-empty string, got 5"),
    ("request_id", None, "invalid request_end at {src}:1: field `request.request_id` is required"),
    ("session_id", 7, "{src}:1: field `agent_context.session_id` must be a non-empty string, got 7 (G3b record)"),
    ("session_id", None, "{src}:1: field `agent_context.session_id` is required (G3b record)"),
])
def test_wrong_type_and_missing_ids_are_told_apart(tmp_path, where, value, text):
    rec = req("r1", "root", None, 1000, 1100, [11])
    parent = rec["request"] if where == "request_id" else rec["agent_context"]
    parent[where] = value
    if value is None:
        del parent[where]
    src = write_jsonl(tmp_path / "in.jsonl", [rec])
    r = cli("convert", str(src), "--mooncake", str(tmp_path / "o.jsonl"), "--agentic")
    assert r.returncode == 2 and r.stderr.strip() == "error: " + text.format(src=src)
