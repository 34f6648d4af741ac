"""Azure LLM inference traces (CSV: TIMESTAMP,ContextTokens,GeneratedTokens): read into
context-free requests with unshared synthesized hash ids, converted to plain Mooncake rows,
replayed with `--trace-format azure`; and a replay of context-free rows lays them out as the
recorded side does: one `request-only` group with packed lanes, not a track pair per request."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from trace_pipe.cli.main import _register, app
from trace_pipe.pipeline.errors import TraceError
from trace_pipe.pipeline.readers import read_trace
from trace_pipe.proto.decode import decode_file

_register()
AZURE = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "azure_llm_2023"

CSV = """TIMESTAMP,ContextTokens,GeneratedTokens
2023-11-16 18:17:03.9799600,4808,10
2023-11-16 18:17:04.0319600,3180,8
2023-11-16 18:17:04.0781490,110,27
2023-11-16 18:17:04.0781495,0,1
"""


def _csv(tmp_path: Path, text: str = CSV, name: str = "code.csv") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_rows_become_context_free_requests(tmp_path):
    trace = read_trace([str(_csv(tmp_path))])
    rs = trace.requests
    assert [r.request_id for r in rs] == ["code#0", "code#1", "code#2", "code#3"]
    # 2023-11-16 18:17:03.97996 UTC; ms rounded half away from zero (.0781490 -> 78, .0781495 -> 78)
    assert [r.start_ms for r in rs] == [1700158623980, 1700158624032, 1700158624078, 1700158624078]
    assert all(r.end_ms == r.start_ms and r.chain_id is None for r in rs)
    assert [(r.input_length, r.output_tokens) for r in rs] == [(4808, 10), (3180, 8), (110, 27), (0, 1)]
    # one fresh id per 512 prompt tokens: no two requests share a block
    assert [list(r.hashes) for r in rs] == [list(range(0, 10)), list(range(10, 17)), [17], []]
    assert trace.notes["Azure requests with synthesized unshared hash ids"] == 4


def test_convert_writes_plain_mooncake_rows(tmp_path):
    out = tmp_path / "o.jsonl"
    res = CliRunner().invoke(app, ["convert", str(_csv(tmp_path)), "--mooncake", str(out)])
    assert res.exit_code == 0, res.output
    rows = [orjson.loads(x) for x in out.read_bytes().splitlines()]
    assert rows[:3] == [
        {"input_length": 4808, "output_length": 10, "hash_ids": list(range(10)), "timestamp": 0.0},
        {"input_length": 3180, "output_length": 8, "hash_ids": list(range(10, 17)), "timestamp": 52.0},
        {"input_length": 110, "output_length": 27, "hash_ids": [17], "timestamp": 98.0}]


@pytest.mark.parametrize(("text", "error"), [
    ("time,in,out\n", "code.csv:1: not an Azure LLM inference trace: expected the header "
                      "TIMESTAMP,ContextTokens,GeneratedTokens, got 'time,in,out'"),
    (CSV + "2023-11-16 18:17:05,12,x\n", "code.csv:6: field `GeneratedTokens` must be an integer >= 1, got 'x'"),
    (CSV + "2023-11-16 18:17:05,12,0\n", "code.csv:6: field `GeneratedTokens` must be an integer >= 1, got '0'"),
    (CSV + "yesterday,12,3\n", "code.csv:6: field `TIMESTAMP` must be a datetime like 2023-11-16 18:17:03.9799600, "
                               "got 'yesterday'"),
    (CSV + "2023-11-16 18:17:05,12\n", "code.csv:6: expected 3 fields (TIMESTAMP,ContextTokens,GeneratedTokens), got 2"),
])
def test_bad_rows_name_line_and_field(tmp_path, text, error):
    p = _csv(tmp_path, text)
    with pytest.raises(TraceError) as e:
        read_trace([str(p)])
    assert str(e.value) == f"{p.parent}/{error}"
    out = tmp_path / "o.jsonl"
    res = CliRunner().invoke(app, ["convert", str(p), "--mooncake", str(out)])
    assert res.exit_code == 2 and not out.exists()


def test_replay_lays_context_free_rows_out_in_one_group(tmp_path):
    """Sixteen arrivals 0.2 s apart on one worker: one `request-only` group whose lanes hold them,
    where a group per request used to give a track pair per request."""
    lines = ["TIMESTAMP,ContextTokens,GeneratedTokens"]
    lines += [f"2023-11-16 18:17:{3 + i // 5:02d}.{2 * (i % 5)},{600 + 10 * i},300" for i in range(16)]
    out = tmp_path / "r.pftrace"
    res = CliRunner().invoke(app, ["replay", str(_csv(tmp_path, "\n".join(lines) + "\n")), "--trace-format", "azure",
                                   "--perfetto", str(out), "--report-json", str(tmp_path / "r.json")])
    assert res.exit_code == 0, res.output
    d = decode_file(str(out))
    reqs = [s for s in d.slices if s.category == "dynamo.llm"]
    assert sorted(s.args["request_id"] for s in reqs) == sorted(f"code#{i}" for i in range(16))
    tracks = {s.track for s in reqs}
    groups = set()
    for t in tracks:
        while d.tracks[t].parent and d.tracks[d.tracks[t].parent].parent:  # up to the child of the root
            t = d.tracks[t].parent
        groups.add(d.tracks[t].name)
    assert groups == {"request-only"}
    # as many lanes as the most requests in flight at once (first-fit packing of intervals)
    events = sorted([(s.ts, 1) for s in reqs] + [(s.ts + s.dur, -1) for s in reqs])
    depth = most = 0
    for _, step in events:
        depth += step
        most = max(most, depth)
    assert 1 < len(tracks) == most < 16
    assert CliRunner().invoke(app, ["check", str(out)]).exit_code == 0


def test_replay_of_an_azure_trace_has_nothing_to_compare(tmp_path):
    res = CliRunner().invoke(app, ["replay", str(_csv(tmp_path)), "--trace-format", "azure", "--timing", "fit",
                                   "--report-json", str(tmp_path / "r.json")])
    assert res.exit_code == 2 and "--timing fit needs recorded times" in res.output


@pytest.mark.skipif(not AZURE.is_dir(), reason="shared Azure fixture not present")
def test_the_public_azure_code_trace(tmp_path):
    trace = read_trace([str(AZURE / "AzureLLMInferenceTrace_code.csv")])
    rs = trace.requests
    assert len(rs) == 8819  # SOURCE.md: 8,819 rows over 3,436 s
    assert rs[-1].start_ms - rs[0].start_ms == 3435948
    assert sum(r.input_length for r in rs) / len(rs) == pytest.approx(2048, abs=1)


def test_a_csv_replayed_as_mooncake_names_the_format_to_use(tmp_path):
    p = _csv(tmp_path)
    res = CliRunner().invoke(app, ["replay", str(p), "--report-json", str(tmp_path / "r.json")])
    assert res.exit_code == 2
    assert f"error: {p}: an Azure LLM inference trace, not Mooncake rows: use --trace-format azure" in res.output
    assert not (tmp_path / "r.json").exists()
