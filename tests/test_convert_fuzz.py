"""Wrong types and absurd values anywhere in Dynamo rows end as one TraceError (a one-line message
naming file, line and field), never a traceback, in every output mode. Seeded, so it is the same
run every time; the cases that once crashed are pinned below."""

from __future__ import annotations

import copy
import io
import json
import random

import pytest

from dynamo_records import req, tool
from trace_pipe.cli.convert_cmd import run_convert
from trace_pipe.pipeline.errors import TraceError

VALUES = [None, -1, 0, 1.5, "x", [], {}, True, 2**64, -2**63, [1, "a"], {"a": 1}, 1e300, ""]
MODES = [dict(agentic_rows=True), dict(agentic_rows=True, fmt="v1"), dict(agentic_rows=False), dict(fmt="v2"),
         dict(agentic_rows=True, fmt="v1", g3c_rules=True), dict(perfetto=True)]


def records(gen: str) -> list[dict]:
    return [req("r1", "root", None, 1000, 1100, [11], gen=gen), req("r2", "child", "root", 1300, 1400, [11, 22], gen=gen),
            tool("root", "c1", "ls", 1150, 1250, gen=gen), tool("child", "c2", "ls", 1100, 1350, gen=gen,
                                                              event_type="tool_error")]


def paths(d: dict, pre=()):
    for k, v in d.items():
        yield pre + (k,)
        if isinstance(v, dict):
            yield from paths(v, pre + (k,))


def convert_all_modes(tmp_path, recs) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in recs))  # json: 2^64 is a valid JSON number
    for mode in MODES:
        out = tmp_path / ("o.pftrace" if "perfetto" in mode else "o.jsonl")
        kw = {k: v for k, v in mode.items() if k != "perfetto"}
        try:
            if "perfetto" in mode:
                run_convert([str(src)], perfetto=str(out), out=io.StringIO(), err=io.StringIO())
            else:
                run_convert([str(src)], mooncake=str(out), out=io.StringIO(), err=io.StringIO(), **kw)
        except TraceError as e:
            msg = str(e)
            assert "\n" not in msg and (str(src) in msg or msg.startswith("error:")), msg
            assert not out.exists()  # a failed run leaves no output
        if out.exists():
            out.unlink()


def test_random_type_damage_is_one_line(tmp_path):
    rng = random.Random(11)
    for _ in range(120):
        recs = records(rng.choice(["G1", "G2", "G3a", "G3b"]))
        rec = rng.choice(recs)
        path = rng.choice(list(paths(rec)))
        d = rec
        for k in path[:-1]:
            d = d[k]
        if rng.random() < 0.3:
            del d[path[-1]]
        else:
            d[path[-1]] = copy.deepcopy(rng.choice(VALUES))
        convert_all_modes(tmp_path, recs)


@pytest.mark.parametrize("where,value,message", [
    (("agent_context",), True, "field `agent_context` must be an object, got True"),
    (("event_type",), ["x"], None),
    (("tool", "tool_class"), 5, "field `tool.tool_class` must be a string, got 5"),
    (("tool", "tool_call_id"), ["c1"], "field `tool.tool_call_id` must be a string, got ['c1']"),
    (("tool", "claude"), {"source_request_id": ["r1"]}, "field `tool.claude.source_request_id` must be a string"),
    (("request", "output_tokens"), 1e300, "field `request.output_tokens` must be a non-negative integer, got 1e+300"),
    (("request", "total_time_ms"), 1e300, "outside what Perfetto can draw"),
])
def test_once_crashing_cases(tmp_path, where, value, message):
    recs = records("G3b")
    rec = recs[2] if where[0] in ("tool", "event_type") else recs[0]
    d = rec
    for k in where[:-1]:
        d = d[k]
    d[where[-1]] = value
    convert_all_modes(tmp_path, recs)
    if message:
        src = tmp_path / "in.jsonl"
        with pytest.raises(TraceError, match=None) as e:
            run_convert([str(src)], mooncake=str(tmp_path / "o.jsonl"), perfetto=str(tmp_path / "o.pftrace"),
                        agentic_rows=True, out=io.StringIO(), err=io.StringIO())
        assert message in str(e.value) and f"{src}:" in str(e.value)
