"""Fuzzers for every input reader (issue 22): a small valid input of each format (Mooncake rows,
agentic Mooncake v1 and v2, Dynamo request-trace rows, a WEKA play, an Azure CSV, a DistServe
.exp), damaged by hypothesis (a value anywhere replaced by one of another type, a huge, tiny,
negative or non-finite number, a deep nest, a lone surrogate; a key dropped or added; a BOM,
compact or spaced JSON, ASCII-escaped or raw UTF-8, a cut last line), read by `replay` and, where
it reads the format, `convert`. Each checks fuzz_contract's contract: exit 0 with its outputs, or
exit 2 with one line and nothing written; `check` of damaged Perfetto traces gives a verdict."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from dynamo_records import req, tool
from fuzz_contract import check, fuzz_twice, scratch
from hypothesis import strategies as st

# -- seeds: one small valid input per format ---------------------------------------------------

MOONCAKE = [{"timestamp": 0, "input_length": 40, "output_length": 4, "hash_ids": [1, 2, 3]},
            {"timestamp": 5.5, "input_length": 48, "output_length": 2, "hash_ids": [1, 2, 4]},
            {"timestamp": 9, "input_length": 16, "output_length": 1, "hash_ids": [7]}]
AGENTIC_V1 = [
    {"request_id": "a/0", "session_id": "a", "input_length": 8, "output_length": 2, "hash_ids": [0, 1],
     "timestamp": 0.0, "prefix_reset": True},
    {"request_id": "a/1", "session_id": "a", "input_length": 12, "output_length": 1, "hash_ids": [0, 1, 2],
     "timestamp": 20.0, "wait_for": ["a/0"]},
    {"request_id": "a/w/0", "session_id": "a/w", "input_length": 4, "output_length": 1, "hash_ids": [3],
     "timestamp": 5.0, "prefix_reset": True}]
AGENTIC_V2 = [
    {"schema": "dynamo.agentic_mooncake", "version": 2, "block_size": 4, "hash_id_scope": "local",
     "source": {"format": "dynamo_request_trace", "digest": "ee17" * 16}},
    {"request_id": "p/0", "play_id": "p", "session_id": "p", "model": "m", "input_length": 8, "output_length": 2,
     "hash_ids": [0, 1], "not_before_ms": 0.0},
    {"request_id": "p/w/0", "play_id": "p", "session_id": "p/w", "model": "m", "input_length": 4, "output_length": 1,
     "hash_ids": [2], "not_before_ms": 5.0,
     "dependencies": [{"request_id": "p/0", "trigger": "dispatch", "delay_ms": 5.0, "relation": "spawn"}]},
    {"request_id": "p/1", "play_id": "p", "session_id": "p", "model": "m", "input_length": 12, "output_length": 1,
     "hash_ids": [0, 1, 3], "not_before_ms": 0.0,
     "dependencies": [{"request_id": "p/0", "trigger": "completion", "delay_ms": 10.0, "relation": "sequence"}]}]
DYNAMO = [req("r1", "root", None, 1000, 1100, [11], ttft_ms=20.0),
          req("r2", "child", "root", 1300, 1400, [11, 22], ttft_ms=30.0),
          tool("root", "c1", "ls", 1150, 1250), tool("child", "c2", "ls", 1100, 1350, event_type="tool_error")]
WEKA = {"id": "play-a", "models": ["model"], "block_size": 4, "hash_id_scope": "local", "requests": [
    {"t": 0.0, "type": "s", "model": "model", "in": 8, "out": 2, "hash_ids": [10, 11], "api_time": 0.01},
    {"t": 0.005, "type": "subagent", "agent_id": "worker", "subagent_type": "Explore", "duration_ms": 10,
     "status": "completed", "models": ["model"],
     "requests": [{"t": 0.005, "type": "s", "model": "model", "in": 4, "out": 1, "hash_ids": [12],
                   "api_time": 0.002}]},
    {"t": 0.03, "type": "n", "model": "model", "in": 12, "out": 1, "hash_ids": [10, 11, 13], "api_time": 0.01}]}
AZURE = [["TIMESTAMP", "ContextTokens", "GeneratedTokens"],
         ["2023-11-16 18:15:46.6805900", "374", "44"],
         ["2023-11-16 18:15:50.9951690", "396", "109"],
         ["2023-11-16 18:15:51.0000000", "20", "1"]]
DISTSERVE = [{"prompt_len": 55, "output_len": 4, "issue_time": 9647325.881975517, "first_token_time": 9647325.964939952,
              "complete_time": 9647326.065574564, "ttft_ms": 82.96443521976471, "tpot_ms": 33.544870714346565,
              "latency_ms": 183.5990473628044},
             {"prompt_len": 131, "output_len": 9, "issue_time": 9647329.140823696, "first_token_time": 9647329.280635543,
              "complete_time": 9647329.520041827, "ttft_ms": 139.8118469, "tpot_ms": 29.9, "latency_ms": 379.2}]

# -- damage ---------------------------------------------------------------------------------

HOSTILE = st.one_of(
    st.none(), st.booleans(), st.text(max_size=6),
    st.sampled_from(["", "0", "64", "false", "\ud800", "\ufeff", "NaN", "x" * 300, "-1", "1e300"]),
    st.integers(-3, 300), st.integers(-2**70, 2**70),
    st.sampled_from([0, -1, 1, 2**26, 2**26 + 1, 2**31, 2**53 + 1, 2**63, 2**64, 10**13, 10**18, 10**30]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 0.5, 1e-300, 1e10, 1e15, 1e300, -1e300]),
    st.lists(st.integers(-2, 2**64), max_size=3), st.builds(dict), st.builds(list), st.builds(lambda: {"a": 1}),
    st.integers(1, 200).map(lambda n: json.loads("[" * n + "]" * n)))


def _paths(obj) -> list[tuple]:
    """Every path into `obj` (iterative: damage may nest hundreds of levels deep)."""
    out, todo = [], [((), obj)]
    while todo:
        pre, v = todo.pop()
        out.append(pre)
        if isinstance(v, dict):
            todo += [(pre + (k,), x) for k, x in v.items()]
        elif isinstance(v, list):
            todo += [(pre + (i,), x) for i, x in enumerate(v)]
    return out


def _damage(doc, edits) -> object:
    """`doc` with each (where, action, value, key) applied: where picks one of its paths."""
    doc = copy.deepcopy(doc)
    for where, action, value, key in edits:
        value = copy.deepcopy(value)  # hypothesis may hand the same object twice: no cycles, no sharing
        paths = [p for p in _paths(doc) if p]
        if not paths:
            break
        path = paths[where % len(paths)]
        parent = doc
        for k in path[:-1]:
            parent = parent[k]
        if action == "replace":
            parent[path[-1]] = value
        elif action == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[key] = value
        else:
            parent.insert(where % (len(parent) + 1), value)
    return doc


EDITS = st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(["replace", "replace", "delete", "add"]), HOSTILE,
                           st.one_of(st.sampled_from(["request_id", "timestamp", "hash_ids", "version", "t", "in",
                                                      "requests", "dependencies", "wait_for", "model", "request"]),
                                     st.text(max_size=4))),
                 min_size=1, max_size=3)
# how the damaged document is written: compact or spaced JSON, ASCII escapes or raw UTF-8, a BOM,
# the last line cut at some byte
LAYOUT = st.tuples(st.booleans(), st.booleans(), st.booleans(), st.one_of(st.none(), st.integers(0, 400)))


def _encode(text: str, layout) -> bytes:
    _, ascii_only, bom, cut = layout
    data = text.encode("utf-8", "surrogatepass") if not ascii_only else text.encode("ascii", "backslashreplace")
    if bom:
        data = b"\xef\xbb\xbf" + data
    if cut is not None and b"\n" in data.rstrip(b"\n"):
        head, _, last = data.rstrip(b"\n").rpartition(b"\n")
        data = head + b"\n" + last[:cut]
    return data


def _dumps(obj, layout) -> str:
    compact, ascii_only, _, _ = layout
    return json.dumps(obj, ensure_ascii=ascii_only, separators=(",", ":") if compact else None)


def _jsonl(rows, layout) -> bytes:
    return _encode("".join(_dumps(r, layout) + "\n" for r in rows), layout)


def _run(name: str, data: bytes, commands: list[tuple[list[str], list[str]]], verdicts: tuple[int, ...] = ()) -> None:
    for args, outputs in commands:
        with scratch() as tmp:
            d = Path(tmp)
            src = d / name
            src.write_bytes(data)
            out = d / "out"
            out.mkdir()
            check([a.replace("{in}", str(src)).replace("{out}", str(out)) for a in args], out, outputs, verdicts)


def _replay(fmt: str, *extra: str) -> tuple[list[str], list[str]]:
    return (["replay", "{in}", "--trace-format", fmt, "--report-json", "{out}/r.json", *extra], ["r.json"])


CONVERT = (["convert", "{in}", "--mooncake", "{out}/m.jsonl"], ["m.jsonl"])
CONVERT_PERFETTO = (["convert", "{in}", "--perfetto", "{out}/p.pftrace"], ["p.pftrace"])

# -- one fuzzer per reader --------------------------------------------------------------------


def _mooncake(edits, layout) -> None:
    _run("t.jsonl", _jsonl(_damage(MOONCAKE, edits), layout), [_replay("mooncake", "--trace-block-size", "16")])


def _agentic_v1(edits, layout) -> None:
    _run("t.jsonl", _jsonl(_damage(AGENTIC_V1, edits), layout),
         [_replay("agentic_mooncake", "--trace-block-size", "4", "--dynamo-version", "1.4")])


def _agentic_v2(edits, layout) -> None:
    _run("t.jsonl", _jsonl(_damage(AGENTIC_V2, edits), layout), [_replay("agentic_mooncake")])


def _dynamo(edits, layout) -> None:
    _run("d.jsonl", _jsonl(_damage(DYNAMO, edits), layout), [CONVERT, CONVERT_PERFETTO, _replay("dynamo")])


def _weka(edits, layout) -> None:
    _run("w.json", _encode(_dumps(_damage(WEKA, edits), layout), layout), [_replay("weka"), CONVERT])


def _azure(edits, layout) -> None:
    rows = _damage(AZURE, edits)
    text = "".join(",".join(str(c) if not isinstance(c, list) else json.dumps(c) for c in
                            (r if isinstance(r, list) else [r])) + "\n" for r in rows)
    _run("a.csv", _encode(text, layout), [_replay("azure")])


def _distserve(edits, layout) -> None:
    items = _damage(DISTSERVE, edits)
    _run("d.exp", _encode(repr(items) + "\n{'summary': 1}\n", layout), [_replay("distserve", "--trace-block-size", "16")])


test_mooncake, test_mooncake_long = fuzz_twice(_mooncake, edits=EDITS, layout=LAYOUT)
test_agentic_v1, test_agentic_v1_long = fuzz_twice(_agentic_v1, edits=EDITS, layout=LAYOUT)
test_agentic_v2, test_agentic_v2_long = fuzz_twice(_agentic_v2, edits=EDITS, layout=LAYOUT)
test_dynamo, test_dynamo_long = fuzz_twice(_dynamo, edits=EDITS, layout=LAYOUT)
test_weka, test_weka_long = fuzz_twice(_weka, edits=EDITS, layout=LAYOUT)
test_azure, test_azure_long = fuzz_twice(_azure, edits=EDITS, layout=LAYOUT)
test_distserve, test_distserve_long = fuzz_twice(_distserve, edits=EDITS, layout=LAYOUT)


# -- `check` reads Perfetto traces: any bytes get a verdict (0 clean, 1 problems) or one line --

_PFTRACE: list[bytes] = []


def _valid_pftrace() -> bytes:
    if not _PFTRACE:
        with scratch() as tmp:
            d = Path(tmp)
            (d / "d.jsonl").write_bytes(_jsonl(DYNAMO, (True, True, False, None)))
            (d / "out").mkdir()
            check(["convert", str(d / "d.jsonl"), "--perfetto", str(d / "out" / "p.pftrace")], d / "out", ["p.pftrace"])
            _PFTRACE.append((d / "out" / "p.pftrace").read_bytes())
    return _PFTRACE[0]


def _pftrace(flips, cut, junk) -> None:
    data = bytearray(_valid_pftrace())
    for at, byte in flips:
        data[at % len(data)] = byte
    data = bytes(data[:cut]) + junk if cut is not None else bytes(data) + junk
    _run("p.pftrace", data, [(["check", "{in}"], [])], verdicts=(1,))


test_pftrace, test_pftrace_long = fuzz_twice(
    _pftrace, flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=4),
    cut=st.one_of(st.none(), st.integers(0, 3000)), junk=st.binary(max_size=40))
