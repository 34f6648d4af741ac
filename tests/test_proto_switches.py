"""`convert --no-stages` / `--include-markers`: the switches of Dynamo's current
`benchmarks/request_trace/convert_to_perfetto.py`, with its meaning and defaults, on both writers.

Dynamo's script: stage slices (`prefill wait` / `prefill` / `decode`, `dynamo.llm.stage`) are on
unless `--no-stages`; `first token` instants (`dynamo.llm.marker`) are off unless
`--include-markers`; tool rows never depend on either (an unclosed `tool_start` is always a
`Tool start:` instant, `dynamo.agent.tool.marker`); `--separate-stage-tracks` is gone (exit 2).
Every output passes `trace-pipe check`, and loads in trace processor with the same counts.
"""

from __future__ import annotations

import subprocess
from collections import Counter

import orjson
import pytest
import typer
from typer.testing import CliRunner

from dynamo_records import req, tool, write_jsonl
from tp_binary import TP_BIN, needs_tp
from trace_pipe.cli import convert_cmd
from trace_pipe.cli.convert_cmd import run_convert
from trace_pipe.proto import synthetic
from trace_pipe.proto.check import check_file
from trace_pipe.proto.decode import decode_file

COMBOS = {  # CLI switches -> (stages, markers)
    (): (True, False),
    ("--no-stages",): (False, False),
    ("--include-markers",): (True, True),
    ("--no-stages", "--include-markers"): (False, True),
}
STAGE, MARKER, REQUEST = "dynamo.llm.stage", "dynamo.llm.marker", "dynamo.llm"
TOOL, TOOL_MARKER = "dynamo.agent.tool", "dynamo.agent.tool.marker"

app = typer.Typer()
app.callback()(lambda: None)  # a group, so the command keeps its name
convert_cmd.register(app)


def small_trace() -> list[dict]:
    """Three requests of one chain whose stage / first-token counts follow from §5.5 by hand, a
    closed tool call and a `tool_start` nothing closes."""
    return [
        # wait, prefill and decode (ttft 12 < total 50): 3 stages, a first token at +12 ms
        req("r1", "s", None, 1000, 1050, [1], prefill_wait_time_ms=5, prefill_time_ms=7, ttft_ms=12),
        # no queue wait: prefill and decode, a first token
        req("r2", "s", None, 1100, 1120, [1, 2], prefill_wait_time_ms=0, prefill_time_ms=4, ttft_ms=6),
        # no ttft: only the wait (no decode, no first token)
        req("r3", "s", None, 1200, 1230, [1, 2, 3], prefill_wait_time_ms=3),
        tool("s", "call-1", "bash", 1060, 1090),
        tool("s", "call-2", "web_search", 1240, 1240, event_type="tool_start", status="running"),
    ]


SMALL_EXPECTED = {STAGE: 6, MARKER: 2, REQUEST: 3, TOOL: 1, TOOL_MARKER: 1}


def convert(tmp_path, src: list[str], switches: tuple[str, ...]):
    out = tmp_path / ("-".join(s.strip("-") for s in switches) or "default")
    out.mkdir()
    pf, js = out / "o.pftrace", out / "o.json"
    res = CliRunner().invoke(app, ["convert", *src, "--perfetto", str(pf), "--chrome-json", str(js), *switches])
    assert res.exit_code == 0, res.output
    return pf, js


def categories(pf, js) -> tuple[Counter, Counter]:
    d = decode_file(str(pf))
    proto = Counter(s.category for s in d.slices) + Counter(i.category for i in d.instants)
    doc = orjson.loads(js.read_bytes())
    json_ = Counter(e["cat"] for e in doc["traceEvents"] if e["ph"] in ("X", "i"))
    return proto, json_


def expected(base: dict, stages: bool, markers: bool) -> dict:
    want = dict(base)
    if not stages:
        del want[STAGE]
    if not markers:
        del want[MARKER]
    return want


@pytest.mark.parametrize("switches", list(COMBOS), ids=lambda s: " ".join(s) or "default")
def test_switches_on_a_hand_counted_trace(tmp_path, switches):
    src = write_jsonl(tmp_path / "t.jsonl", small_trace())
    pf, js = convert(tmp_path, [str(src)], switches)
    stages, markers = COMBOS[switches]
    proto, json_ = categories(pf, js)
    want = expected(SMALL_EXPECTED, stages, markers)
    assert {k: v for k, v in proto.items() if k != "trace_pipe.worker"} == want
    assert json_ == proto  # same drawing in both writers
    rep = check_file(pf)
    assert rep.ok, rep.lines()
    d = decode_file(str(pf))
    names = Counter(s.name for s in d.slices if s.category == STAGE)
    assert names == (Counter({"prefill wait": 2, "prefill": 2, "decode": 2}) if stages else Counter())
    # the first tokens sit at received + ttft, inside their requests (ns from the trace start)
    firsts = sorted(i.ts for i in d.instants if i.category == MARKER)
    t0 = min(s.ts for s in d.slices if s.category == REQUEST)
    assert [t - t0 for t in firsts] == ([12_000_000, 106_000_000] if markers else [])
    (start,) = [i for i in d.instants if i.category == TOOL_MARKER]
    assert start.name == "Tool start: web_search"


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """All four generations: sub-agents, concurrent requests, tools, inferred tools, workers."""
    tmp = tmp_path_factory.mktemp("gen")
    paths, rows = [], []
    for gen, recs in synthetic.dynamo_records().items():
        p = tmp / f"{gen}.jsonl"
        synthetic.write_jsonl(recs, str(p))
        paths.append(str(p))
        rows += recs
    return tmp, paths, rows


def test_switches_on_a_generated_trace(tmp_path, generated):
    _, paths, rows = generated
    reqs = [r["request"] for r in rows if r["event_type"] == "request_end"]
    with_ttft = sum(r.get("ttft_ms") is not None for r in reqs)
    assert len(reqs) == 52 and with_ttft == 52
    seen = {}
    for switches, (stages, markers) in COMBOS.items():
        pf, js = convert(tmp_path, paths, switches)
        proto, json_ = categories(pf, js)
        assert json_ == proto
        assert proto[REQUEST] == 52 and proto[TOOL] == 44 and proto[TOOL_MARKER] == 0
        assert proto[MARKER] == (with_ttft if markers else 0)
        assert (proto[STAGE] > 0) == stages
        rep = check_file(pf)
        assert rep.ok, rep.lines()
        seen[switches] = proto
    # the switches are independent: stages do not depend on markers and the other way round
    assert seen[()][STAGE] == seen[("--include-markers",)][STAGE] == 156
    assert seen[("--include-markers",)][MARKER] == seen[("--no-stages", "--include-markers")][MARKER] == 52
    # everything else (requests, tools, worker placements) is the same drawing in every combination
    rest = [{k: v for k, v in c.items() if k not in (STAGE, MARKER)} for c in seen.values()]
    assert all(r == rest[0] for r in rest)


def test_default_is_dynamos_and_run_convert_matches_the_cli(tmp_path):
    src = write_jsonl(tmp_path / "t.jsonl", small_trace())
    pf, _ = convert(tmp_path, [str(src)], ())
    lib = tmp_path / "lib.pftrace"
    run_convert([str(src)], perfetto=str(lib), out=open("/dev/null", "w"), err=open("/dev/null", "w"))
    assert lib.read_bytes() == pf.read_bytes()  # same input, same options: same bytes


def test_separate_stage_tracks_is_gone_as_in_dynamo(tmp_path):
    src = write_jsonl(tmp_path / "t.jsonl", small_trace())
    res = CliRunner().invoke(app, ["convert", str(src), "--perfetto", str(tmp_path / "o.pftrace"),
                                   "--separate-stage-tracks"])
    assert res.exit_code == 2 and "No such option: --separate-stage-tracks" in res.output
    assert not (tmp_path / "o.pftrace").exists()


@needs_tp
@pytest.mark.parametrize("switches", list(COMBOS), ids=lambda s: " ".join(s) or "default")
def test_trace_processor_sees_the_same_counts(tmp_path, generated, switches):
    _, paths, _ = generated
    src = write_jsonl(tmp_path / "t.jsonl", small_trace())
    pf, _ = convert(tmp_path, [*paths, str(src)], switches)
    rep = check_file(pf, tp_bin=TP_BIN)
    assert rep.ok, rep.lines()
    assert rep.tp["slices"] == rep.slices + rep.instants
    res = subprocess.run([TP_BIN, "query", str(pf), "select category, count(*) from slice group by category"],
                         capture_output=True, text=True, check=True)
    rows = [line.replace('"', "").split(",") for line in res.stdout.splitlines()[1:] if line]
    tp = {cat: int(n) for cat, n in rows}
    proto, _ = categories(pf, pf.with_suffix(".json"))
    assert tp == dict(proto)


def test_switches_without_a_drawing_say_they_do_nothing(tmp_path):
    import io

    src = write_jsonl(tmp_path / "t.jsonl", small_trace())
    err = io.StringIO()
    run_convert([str(src)], mooncake=str(tmp_path / "m.jsonl"), stages=False, out=io.StringIO(), err=err)
    assert "note: --no-stages / --include-markers have no effect without --perfetto or --chrome-json\n" in err.getvalue()
    err = io.StringIO()
    run_convert([str(src)], mooncake=str(tmp_path / "n.jsonl"), out=io.StringIO(), err=err)
    assert "--no-stages" not in err.getvalue()
