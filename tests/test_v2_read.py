"""Reading agentic Mooncake v2 with AISimulate's checks (reference dynamo-1.6.md §3; the loader is
ai-dynamo/aisimulate crates/core/src/replay/loadgen/trace.rs, and each rule below was also run
through 1.6.1's replay, whose message is quoted beside it). Every rule is a one-line error naming
file, line and field, the same through `replay` (`read_rows`) and `convert` (`read_trace`); and
the converter's own output reads back to the same requests and edges."""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import pytest

from dynamo_records import req, write_jsonl
from trace_pipe.cli.convert_cmd import run_convert
from trace_pipe.pipeline import agentic_v2
from trace_pipe.pipeline.errors import TraceError
from trace_pipe.pipeline.mooncake import read_rows
from trace_pipe.pipeline.readers import read_trace

ROOT = Path(__file__).resolve().parents[1]
H = {"schema": "dynamo.agentic_mooncake", "version": 2, "block_size": 4, "hash_id_scope": "local",
     "source": {"format": "dynamo_request_trace", "digest": "d"}}


def row(rid, play="p", sess="s", n_in=4, hashes=(1,), nb=0.0, deps=(), **kw):
    r = {"request_id": rid, "play_id": play, "session_id": sess, "model": "m", "input_length": n_in,
         "output_length": 2, "hash_ids": list(hashes), "not_before_ms": nb}
    r.update(kw)
    if deps:
        r["dependencies"] = [{"request_id": d, "trigger": t, "delay_ms": ms, "relation": rel} for d, t, ms, rel in deps]
    return r


def write(tmp_path, rows, header=H) -> Path:
    p = tmp_path / "t.jsonl"
    p.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in ([header] if header else []) + rows))
    return p


def both_fail(p: Path) -> str:
    """The error of both readers (they must agree), as one line."""
    with pytest.raises(TraceError) as a:
        read_rows([str(p)])
    with pytest.raises(TraceError) as b:
        read_trace([str(p)])
    assert str(a.value) == str(b.value) and "\n" not in str(a.value)
    return str(a.value)


SEQ = ("a", "completion", 0.0, "sequence")
CASES = {
    # 1.6.1: "trace line 2 has input_length 5 at block_size 4 and requires exactly 2 hash_ids, got 1"
    "hash count": ([row("a", n_in=5)], 2, "field `hash_ids`: input_length 5 at block_size 4 requires exactly 2 "
                                          "hash_ids, got 1"),
    "hash count (too many)": ([row("a", hashes=(1, 2))], 2, "field `hash_ids`: input_length 4 at block_size 4 "
                                                            "requires exactly 1 hash_ids, got 2"),
    # 1.6.1: "trace line 2 has empty hash_ids"
    "empty hash_ids": ([row("a", n_in=0, hashes=())], 2, "field `hash_ids`: empty hash_ids"),
    # 1.6.1: "trace line 3 has invalid Sequence dependency with Dispatch trigger" (Join, ReplayBarrier alike)
    "sequence on dispatch": ([row("a"), row("b", deps=[("a", "dispatch", 0.0, "sequence")])], 3,
                             "field `dependencies`: invalid sequence dependency on a with dispatch trigger "
                             "(only spawn may use dispatch)"),
    "join on dispatch": ([row("a"), row("b", deps=[("a", "dispatch", 0.0, "join")])], 3,
                         "field `dependencies`: invalid join dependency on a with dispatch trigger "
                         "(only spawn may use dispatch)"),
    "replay_barrier on dispatch": ([row("a"), row("b", deps=[("a", "dispatch", 0.0, "replay_barrier")])], 3,
                                   "field `dependencies`: invalid replay_barrier dependency on a with dispatch "
                                   "trigger (only spawn may use dispatch)"),
    # 1.6.1: "request b in play q depends on request a in play p"
    "other play": ([row("a"), row("b", play="q", deps=[SEQ])], 3,
                   "field `dependencies`: request b in play q depends on request a in play p"),
    # 1.6.1 finds no root only as a cycle ("cycle detected among 2 agentic requests; blocked request IDs: b, c")
    "no root": ([row("a"), row("b", play="q", deps=[("c", "completion", 0.0, "sequence")]),
                 row("c", play="q", deps=[("b", "completion", 0.0, "sequence")])], 3,
                "field `dependencies`: play q has no root (every request in it waits for another)"),
    "cycle": ([row("r"), row("a", deps=[("r", "completion", 0.0, "sequence"), ("b", "completion", 0.0, "join")]),
               row("b", deps=[SEQ])], 3,
              "field `dependencies`: cycle detected among 2 agentic requests; blocked request IDs: a, b"),
    # 1.6.1: "trace line 2 has invalid not_before_ms -1"
    "negative not_before_ms": ([row("a", nb=-1.0)], 2, "field `not_before_ms` must be >= 0, got -1.0"),
    # 1.6.1: "trace line 2 has invalid recorded_api_time_ms Some(-1.0)"
    "negative recorded_api_time_ms": ([row("a", recorded_api_time_ms=-1.0)], 2,
                                      "field `recorded_api_time_ms` must be >= 0, got -1.0"),
    # 1.6.1: "trace line 3 has invalid dependency delay -1"
    "negative delay": ([row("a"), row("b", deps=[("a", "completion", -1.0, "sequence")])], 3,
                       "field `dependencies.delay_ms` must be >= 0, got -1.0"),
    # 1.6.1: "request b references unknown request_id zz"
    "unknown dependency": ([row("a"), row("b", deps=[("zz", "completion", 0.0, "sequence")])], 3,
                           "field `dependencies`: request b references unknown request_id zz"),
    # 1.6.1: "request a cannot depend on itself"
    "itself": ([row("r"), row("a", deps=[("a", "completion", 0.0, "sequence")])], 3,
               "field `dependencies`: request a cannot depend on itself"),
    # 1.6.1: "failed to parse line 2 ... as an agentic Mooncake v2 request" (a required field)
    "no model": ([{k: v for k, v in row("a").items() if k != "model"}], 2,
                 "missing field `model` (required in agentic Mooncake v2 rows)"),
    "no not_before_ms": ([{k: v for k, v in row("a").items() if k != "not_before_ms"}], 2,
                         "missing field `not_before_ms` (required in agentic Mooncake v2 rows)"),
    "no delay_ms": ([row("a"), {**row("b"), "dependencies": [{"request_id": "a", "trigger": "completion",
                                                               "relation": "sequence"}]}], 3,
                    "field `dependencies`: missing field `delay_ms` in a dependency of b"),
    "unknown relation": ([row("a"), row("b", deps=[("a", "completion", 0.0, "parent")])], 3,
                         "field `dependencies.relation` must be one of sequence, spawn, join, replay_barrier, "
                         "got \"parent\""),
    # 1.6.1: "source_play_ordinal must be set for every play when it is used"
    "ordinal on some plays": ([row("a", source_play_ordinal=0), row("b", play="q")], 3,
                              "field `source_play_ordinal`: source_play_ordinal must be set for every play when it "
                              "is used"),
    # 1.6.1: "source_play_ordinal values must be unique and contiguous from 0; expected 1, found 0"
    "ordinal repeated": ([row("a", source_play_ordinal=0), row("b", play="q", source_play_ordinal=0)], 3,
                         "field `source_play_ordinal`: source_play_ordinal values must be unique and contiguous "
                         "from 0; expected 1, found 0"),
    "duplicate id": ([row("a"), row("a")], 3, "field `request_id`: duplicate request_id a"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_v2_rule_is_a_one_line_error(tmp_path, name):
    rows, line, text = CASES[name]
    msg = both_fail(write(tmp_path, rows))
    assert msg.startswith(f"{tmp_path / 't.jsonl'}:{line}: {text}"), msg


@pytest.mark.parametrize("header, text", [
    (dict(H, version=3), "field `version`: unsupported agentic Mooncake version 3; expected 2"),  # 1.6.1's words
    (dict(H, block_size=0), "field `block_size`: agentic Mooncake block_size must be greater than 0"),  # same
    ({k: v for k, v in H.items() if k != "block_size"},
     "field `block_size`: missing or not a non-negative integer in the agentic Mooncake v2 header"),
    (dict(H, hash_id_scope="global"), "field `hash_id_scope`: must be \"local\", got \"global\""),
    ({k: v for k, v in H.items() if k != "source"},
     "field `source`: the agentic Mooncake v2 header needs a source {\"format\": string, \"digest\": string}"),
])
def test_header_rules(tmp_path, header, text):
    assert both_fail(write(tmp_path, [row("a")], header)) == f"{tmp_path / 't.jsonl'}:1: {text}"


def test_what_aisimulate_accepts_is_read(tmp_path):
    """spawn on dispatch, a second play, the optional fields (kept and written back in
    AISimulate's key order), an integer not_before_ms, an unknown extra key"""
    rows = [row("a", source_play_ordinal=1, recorded_api_time_ms=12.5),
            row("b", deps=[("a", "dispatch", 3.0, "spawn")], source_play_ordinal=1, n_in=5, hashes=(1, 2)),
            row("c", play="q", nb=0, source_play_ordinal=0, extra_key=1)]
    p = write(tmp_path, rows)
    mf = read_rows([str(p)])
    a, b, c = mf.rows
    assert (a.source_play_ordinal, a.recorded_api_time_ms, c.source_play_ordinal) == (1, 12.5, 0)
    assert [(d.request_id, d.trigger, d.delay_ms, d.relation) for d in b.dependencies] == [("a", "dispatch", 3.0, "spawn")]
    assert list(a.to_agentic_v2()) == ["request_id", "play_id", "source_play_ordinal", "session_id", "model",
                                       "input_length", "output_length", "hash_ids", "not_before_ms",
                                       "recorded_api_time_ms"]
    out = tmp_path / "back.jsonl"
    run_convert([str(p)], mooncake=str(out), agentic_rows=True, out=io.StringIO(), err=io.StringIO())
    got = [orjson.loads(x) for x in out.read_bytes().splitlines()]
    assert got[0] == H and got[1] == rows[0] and got[2] == rows[1]
    assert got[3] == {k: v for k, v in rows[2].items() if k != "extra_key"} | {"not_before_ms": 0.0}


def _convert(tmp_path, inputs, name="v2.jsonl") -> Path:
    out = tmp_path / name
    run_convert([str(x) for x in inputs], mooncake=str(out), agentic_rows=True, out=io.StringIO(), err=io.StringIO())
    return out


@pytest.mark.parametrize("which", ["weka", "dynamo"])
def test_round_trip_gives_the_same_requests_and_edges(tmp_path, which):
    if which == "weka":
        inputs = [ROOT / "fixtures" / "trace_0277.json"]
    else:
        claude = {"claude": {"source_request_id": "p1", "consumer_request_id": "p3", "child_session_id": "kid",
                             "execution_mode": "blocking"}}
        from dynamo_records import tool
        inputs = [write_jsonl(tmp_path / "in.jsonl", [
            req("p1", "root", None, 1000, 1100, [11]), req("k1", "kid", "root", 1050, 1300, [33]),
            req("k2", "kid", "root", 1300, 1400, [33, 44]), req("p2", "root", None, 1150, 1200, [11, 22]),
            req("p3", "root", None, 1500, 1600, [11, 22, 55]), req("x1", "bg", "root", 1000, 2000, [66]),
            tool("root", "a", "Agent", 1100, 1450, **claude)])]
    first = agentic_v2.derive_v2(read_trace([str(x) for x in inputs]))
    out = _convert(tmp_path, inputs)
    back = read_trace([str(out)])
    assert [r.request_id for r in back.requests] == [r.request_id for r in first.rows]
    assert [(r.request_id, r.play_id, r.session_id, r.model, r.input_length, r.output_length, r.hash_ids,
             r.not_before_ms, r.dependencies) for r in back.mooncake_rows] == \
        [(r.request_id, r.play_id, r.session_id, r.model, r.input_length, r.output_length, r.hash_ids,
          r.not_before_ms, r.dependencies) for r in first.rows]
    assert [(e.src, e.dst, e.relation) for e in agentic_v2.derive_v2(back).edges] == \
        [(e.src, e.dst, e.relation) for e in first.edges]
    assert read_rows([str(out)]).header.source == orjson.loads(out.read_bytes().split(b"\n")[0])["source"]
    again = _convert(tmp_path, [out], "again.jsonl")
    assert again.read_bytes() == out.read_bytes()
