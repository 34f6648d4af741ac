"""Hostile input to the readers (issue 22's reader classes): each case is one line naming file,
line and field (or the input), exit 2, nothing written; never a traceback, a memory error, a
segfault, a hang, or a silent exit 0. Every case failed on 7117eee (the commit before the typed
readers) except the three v2 header values it already refused, kept as guards, and the last
section: rules the old hand-written checks had that a schema alone would loosen."""

from __future__ import annotations

import gzip
import io
import subprocess
import sys

import orjson
import pytest

from dynamo_records import req, tool, write_jsonl
from trace_pipe.cli.convert_cmd import run_convert
from trace_pipe.pipeline import limits
from trace_pipe.pipeline.errors import TraceError
from trace_pipe.pipeline.mooncake import read_rows


def cli(*args: str):
    return subprocess.run([sys.executable, "-m", "trace_pipe.cli.main", *args], capture_output=True, text=True,
                          timeout=120)


def refused(tmp_path, src, *flags: str) -> str:
    """The one-line error `convert` gives for `src` (no output written)."""
    out = tmp_path / "o.jsonl"
    kw = {"agentic_rows": "--agentic" in flags, "fmt": "v2" if "v2" in flags else None}
    with pytest.raises(TraceError) as e:
        run_convert([str(src)], mooncake=str(out), out=io.StringIO(), err=io.StringIO(), **kw)
    msg = str(e.value)
    assert "\n" not in msg and not out.exists(), msg
    return msg


def g3b(**request) -> dict:
    r = req("r1", "root", None, 1000, 1100, [11])
    r["request"].update(request)
    return r


# -- wrong answers, silently: now one-line errors ------------------------------------------------

def test_hash_list_elsewhere_in_a_compact_line_is_not_the_prompt(tmp_path):
    # the hash-list shortcut looks for the key's text; it must count only where the schema puts it
    r = req("r1", "root", None, 1000, 1100, [11])
    del r["request"]["replay"]["input_sequence_hashes"]
    r["request"]["notes"] = {"input_sequence_hashes": list(range(1, 600))}  # long: the shortcut's shape
    src = write_jsonl(tmp_path / "in.jsonl", [r])
    assert len(src.read_bytes()) > 2048 and b" " not in src.read_bytes()
    assert refused(tmp_path, src) == (f"{src}:1: field `request.replay.input_sequence_hashes` must be a list of "
                                      f"u64 integers")


@pytest.mark.parametrize("field, value, text", [
    ("model", {"name": "m"}, "field `request.model` must be a string, got {'name': 'm'}"),
    ("model", 7, "field `request.model` must be a string, got 7"),
    ("worker", "w1", "field `request.worker` must be an object, got 'w1'"),
    ("finish_reason_metadata", "stop", "field `request.finish_reason_metadata` must be an object, got 'stop'"),
    ("finish_reason_metadata", {"tool_calls": [1, 2]},
     "field `request.finish_reason_metadata.tool_calls` holds 1, not a tool call object"),
    ("finish_reason_metadata", {"tool_calls": "bash"},
     "field `request.finish_reason_metadata.tool_calls` must be a list of tool calls, got 'bash'"),
])
def test_request_fields_of_the_wrong_type(tmp_path, field, value, text):
    src = write_jsonl(tmp_path / "in.jsonl", [g3b(**{field: value})], envelope=True)
    assert refused(tmp_path, src, "--agentic") == f"{src}:1: {text}"


def test_weka_time_past_the_clock(tmp_path):
    src = tmp_path / "trace_0001.json"
    src.write_bytes(orjson.dumps({"id": "p", "requests": [{"t": 1e300, "in": 10, "out": 2, "hash_ids": [1]}]}))
    assert refused(tmp_path, src) == (f"{src}:1: field `requests[0].t`: 1e+300 is above the limit of "
                                      f"{limits.SECONDS.maximum:,} s (seconds)")


# -- tracebacks and memory errors: now one-line errors ------------------------------------------

@pytest.mark.parametrize("kind", ["jsonl", "jsonl.gz", "json", "dynamo"])
def test_deep_nesting(tmp_path, kind):
    deep = b"[" * 100_000 + b"]" * 100_000
    if kind == "dynamo":  # a Dynamo record (the typed decoder) with a deep unknown field
        line = orjson.dumps(g3b()).replace(b'{"request_id"', b'{"x":' + deep + b',"request_id"')
    else:
        line = b'{"id":"p","requests":[' + deep + b"]}"
    name = f"in.{'jsonl' if kind == 'dynamo' else kind}"
    src = tmp_path / name
    src.write_bytes(gzip.compress(line + b"\n") if kind.endswith(".gz") else line + b"\n")
    r = cli("convert", str(src), "--mooncake", str(tmp_path / "o.jsonl"))
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-500:]
    # (the line's depth: the array's 100,000 levels inside two objects, or an object and a list)
    assert r.stderr.strip() == (f"error: {src}:1: 100,002 is above the limit of {limits.JSON_DEPTH.maximum} levels "
                                f"(JSON nesting depth)")


@pytest.mark.parametrize("row, text", [
    ({"input_length": 10, "output_length": 2, "hash_ids": [1], "output_token_ids": 5},
     "field `output_token_ids` must be a list of non-negative integers"),
    ({"input_length": 1e300, "output_length": 2, "hash_ids": [1]}, "field `input_length` must be an integer, got 1e300"),
    ({"input_length": 10**13, "output_length": 2, "hash_ids": [1]},
     "field `input_length`: 10,000,000,000,000 is above the limit of 67,108,864 tokens (tokens in one request)"),
    ({"input_length": 10, "output_length": 10**30, "hash_ids": [1]},
     "field `output_length`: 1,000,000,000,000,000,000,000,000,000,000 is above the limit of 67,108,864 tokens "
     "(tokens in one request)"),
])
def test_mooncake_values(tmp_path, row, text):
    src = tmp_path / "m.jsonl"
    src.write_bytes(orjson.dumps(row) + b"\n" if row["output_length"] < 2**64 else
                    orjson.dumps({**row, "output_length": 0}).replace(b'"output_length":0',
                                                                      f'"output_length":{row["output_length"]}'.encode())
                    + b"\n")
    assert refused(tmp_path, src) == f"{src}:1: {text}"
    with pytest.raises(TraceError, match="^" + str(src).replace(".", r"\.") + ":1: "):
        read_rows([str(src)])  # replay's reader: the same rule


HEADER = {"schema": "dynamo.agentic_mooncake", "version": 2, "block_size": 64, "hash_id_scope": "local",
          "source": {"format": "x", "digest": "y"}}
V2ROW = {"request_id": "a", "play_id": "p", "session_id": "s", "model": "m", "input_length": 10, "output_length": 2,
         "hash_ids": [1], "not_before_ms": 0.0}


def test_v2_header_is_copied_as_checked(tmp_path):
    src = tmp_path / "v2.jsonl"
    src.write_bytes(orjson.dumps({**HEADER, "extra": [1, 2], "version": 2}) + b"\n" + orjson.dumps(V2ROW) + b"\n")
    out = tmp_path / "o.jsonl"
    run_convert([str(src)], mooncake=str(out), fmt="v2", out=io.StringIO(), err=io.StringIO())
    assert out.read_bytes().split(b"\n")[0] == orjson.dumps(HEADER)


@pytest.mark.parametrize("key, value, text", [
    ("version", [2], "field `version`: missing or not an integer in the agentic Mooncake v2 header"),
    ("block_size", "64", "field `block_size`: missing or not a non-negative integer in the agentic Mooncake v2 header"),
    ("block_size", -64, "field `block_size`: missing or not a non-negative integer in the agentic Mooncake v2 header"),
    ("block_size", 1 << 40, "field `block_size`: 1,099,511,627,776 is above the limit of 1,048,576 tokens "
                            "(tokens per KV block)"),
])
def test_v2_header_values(tmp_path, key, value, text):
    src = tmp_path / "v2.jsonl"
    src.write_bytes(orjson.dumps({**HEADER, key: value}) + b"\n" + orjson.dumps(V2ROW) + b"\n")
    assert refused(tmp_path, src, "v2") == f"{src}:1: {text}"
    r = cli("replay", str(src), "--num-workers", "1")  # replay reads the header by the same rule
    assert r.returncode == 2 and r.stderr.strip() == f"error: {src}:1: {text}"


def test_azure_token_counts(tmp_path):
    src = tmp_path / "code.csv"
    src.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03.9799600,10000000000000,5\n")
    assert refused(tmp_path, src) == (f"{src}:2: field `ContextTokens`: 10,000,000,000,000 is above the limit of "
                                      f"67,108,864 tokens (tokens in one request)")


def test_weka_token_counts(tmp_path):
    src = tmp_path / "trace_0001.json"
    src.write_bytes(orjson.dumps({"id": "p", "requests": [{"t": 1, "in": 10_000_000_000, "out": 2, "hash_ids": [1]}]}))
    assert refused(tmp_path, src) == (f"{src}:1: field `requests[0].in`: 10,000,000,000 is above the limit of "
                                      f"67,108,864 tokens (tokens in one request)")


# -- messages ------------------------------------------------------------------------------------

@pytest.mark.parametrize("prefix, text", [
    (b"\xef\xbb\xbf", "UTF-8 byte order mark (BOM) is not supported"),
    (b'{"x":"\\ud800"}\n', "no low surrogate in string"),
])
@pytest.mark.parametrize("dynamo", [True, False])
def test_bom_and_lone_surrogate_are_named(tmp_path, prefix, text, dynamo):
    line = orjson.dumps(g3b() if dynamo else {"input_length": 1, "output_length": 1, "hash_ids": [1]})
    src = tmp_path / "in.jsonl"
    src.write_bytes(prefix + line + b"\n")
    msg = refused(tmp_path, src)
    assert msg.startswith(f"{src}:1: invalid JSON: {text}") and "64-bit" not in msg, msg


@pytest.mark.parametrize("name, body, text", [
    ("trace_0001.json", "[]", "{src}:1: an empty list: a .json input must hold WEKA kv-cache-tester plays"),
    ("code.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n",
     "{src}: no requests (the Azure trace has a header and no data rows)"),
    ("in.jsonl", "", "error: {src}: no rows (the input is empty)"),
    ("in.jsonl", "\n  \n", "error: {src}: no rows (the input is empty)"),
])
def test_empty_inputs_name_the_input(tmp_path, name, body, text):
    src = tmp_path / name
    src.write_text(body)
    assert refused(tmp_path, src) == text.format(src=src)


# -- rules a schema alone would loosen, kept ------------------------------------------------------

@pytest.mark.parametrize("hashes, text", [
    ([2**64], "holds an integer above 2^64-1, not a u64 integer (0 to 2^64-1)"),
    ([1, True], "holds True, not a u64 integer (0 to 2^64-1)"),
    ([-1], "holds -1, not a u64 integer (0 to 2^64-1)"),
    ([1.5], "holds 1.5, not a u64 integer (0 to 2^64-1)"),
])
@pytest.mark.parametrize("long", [False, True])
def test_hash_values_a_schema_would_loosen(tmp_path, hashes, text, long):
    # a short list and a long one (the shortcut parses only a changed tail; a bad value sends the line to the typed decode)
    pad = list(range(100, 700)) if long else []
    r = req("r1", "root", None, 1000, 1100, pad + hashes)
    src = tmp_path / "in.jsonl"
    src.write_bytes(orjson.dumps(r).replace(b"18446744073709551616", b"18446744073709551616") + b"\n"
                    if 2**64 not in hashes else
                    orjson.dumps(req("r1", "root", None, 1000, 1100, pad + [7])).replace(b"7]", b"18446744073709551616]")
                    + b"\n")
    assert (len(src.read_bytes()) > 2048) == long
    assert refused(tmp_path, src) == f"{src}:1: field `request.replay.input_sequence_hashes` {text}"


def test_nan_and_huge_numbers(tmp_path):
    src = tmp_path / "in.jsonl"
    line = orjson.dumps(g3b())
    src.write_bytes(line.replace(b'"total_time_ms":100', b'"total_time_ms":NaN') + b"\n")
    assert refused(tmp_path, src) == (f"{src}:1: invalid JSON: non-finite number `NaN` (Dynamo never writes NaN or "
                                      f"Infinity)")
    src.write_bytes(line.replace(b'"total_time_ms":100', b'"total_time_ms":1e400') + b"\n")
    assert refused(tmp_path, src) == (f"{src}:1: invalid JSON: a number outside the 64-bit range (an integer above "
                                      f"2^64-1 or a float that overflows)")
    src.write_bytes(orjson.dumps(g3b(output_tokens=1e300)) + b"\n")
    assert refused(tmp_path, src) == f"{src}:1: field `request.output_tokens` must be a non-negative integer, got 1e+300"
    src.write_bytes(orjson.dumps(g3b(output_tokens=10**12)) + b"\n")
    assert refused(tmp_path, src) == (f"{src}:1: field `request.output_tokens`: 1,000,000,000,000 is above the limit "
                                      f"of 67,108,864 tokens (tokens in one request)")


def test_tool_rows_typed(tmp_path):
    t = tool("root", "c1", "ls", 1150, 1250)
    t["tool"]["claude"] = "yes"
    src = write_jsonl(tmp_path / "in.jsonl", [g3b(), t])
    assert refused(tmp_path, src) == f"{src}:2: field `tool.claude` must be an object, got 'yes'"
    t["tool"]["claude"] = None
    t["tool"]["duration_ms"] = "5"
    src = write_jsonl(tmp_path / "in.jsonl", [g3b(), t])
    assert refused(tmp_path, src) == f"{src}:2: field `tool.duration_ms` must be a number, got '5'"


# -- found by the reader fuzzers (tests/test_fuzz_readers.py) -------------------------------------

V2_HEADER = {"schema": "dynamo.agentic_mooncake", "version": 2, "block_size": 4, "hash_id_scope": "local",
             "source": {"format": "x", "digest": "y"}}


def _v2_row(**kw) -> dict:
    return {"request_id": "p/0", "play_id": "p", "session_id": "p", "model": "m", "input_length": 8,
            "output_length": 2, "hash_ids": [0, 1], "not_before_ms": 0.0, **kw}


def test_v2_id_past_64_bits_is_named_not_a_traceback(tmp_path):
    # the error text quoted the value with orjson, which refuses integers past 64 bits
    src = tmp_path / "v2.jsonl"
    src.write_bytes(orjson.dumps(V2_HEADER) + b"\n" + b'{"request_id":-9223372036854775809,"play_id":"p",'
                    b'"session_id":"p","model":"m","input_length":8,"output_length":2,"hash_ids":[0,1],'
                    b'"not_before_ms":0.0}\n')
    with pytest.raises(TraceError) as e:
        read_rows([str(src)])
    assert str(e.value) == f"{src}:2: field `request_id` must be a string, got -9223372036854775809"


def test_headerless_v2_rows_need_a_string_model(tmp_path):
    # replayed as a v2 graph, whose source_models sort as strings (null: a TypeError in the digest)
    src = tmp_path / "rows.jsonl"
    src.write_bytes(orjson.dumps(_v2_row()) + b"\n" + orjson.dumps(_v2_row(request_id="p/1", model=None)) + b"\n")
    r = cli("replay", str(src), "--trace-format", "agentic_mooncake", "--trace-block-size", "4",
            "--extra-engine-args", '{"block_size": 4}')
    assert (r.returncode, r.stderr) == (2, f"error: {src}:2: field `model` must be a string, got null\n")
