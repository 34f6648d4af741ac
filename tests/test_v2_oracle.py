"""ai-dynamo 1.6.1 (the live oracle) takes `convert --agentic`'s default output: the Dynamo
fixture, WEKA traces and generated G1-G3c traces (sub-agents, tools, concurrent calls, equal start
times) replay, and 1.6.1 reports for each the `agentic_graph.source` the header states. For the
WEKA traces 1.6.1's own `weka` reader accepts, it reports the same numbers and rows for our v2
file as for the native read (only names and the digests built from them differ).

Skipped without the oracle: TRACE_PIPE_ORACLE16_PYTHON, default /work/oracle16/bin/python (an
ai-dynamo==1.6.1 venv, reference dynamo-1.6.md §1). Every replay of a test runs in one oracle
process (a few seconds in all)."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import orjson
import pytest

from dynamo_records import FIXTURES, req, tool, write_jsonl
from trace_pipe.cli.convert_cmd import run_convert
from trace_pipe.proto import synthetic

ROOT = Path(__file__).resolve().parents[1]
WEKA = FIXTURES / "kv_cache_tester_traces"
TWO_PLAYS = FIXTURES / "dynamo" / "weka-two-plays.jsonl"


def oracle16() -> str | None:
    """The 1.6.1 oracle's Python, or None (the one rule: bench/parity_replay.oracle_python)."""
    from oracle_cases import oracle16_python

    return oracle16_python()


pytestmark = pytest.mark.skipif(oracle16() is None, reason="ai-dynamo==1.6.1 not installed "
                                                           "(TRACE_PIPE_ORACLE16_PYTHON or /work/oracle16)")

# one process for many replays: round robin on one worker (deterministic), each trace at its own
# block size; prints one JSON line per trace, the report or the error's last line
_RUNNER = r"""
import json, sys
from dynamo.replay import run_trace_replay
for path, fmt, bs in json.loads(sys.argv[1]):
    try:
        rep = run_trace_replay([path], trace_format=fmt, router_mode="round_robin", num_workers=1,
                               trace_block_size=bs, extra_engine_args={"engine": {"block_size": bs}},
                               execution_model="mock", capture_per_request=True)
        d = rep.to_dict() if hasattr(rep, "to_dict") else rep
        print(json.dumps({"report": d}))
    except Exception as e:
        print(json.dumps({"error": str(e).splitlines()[-1] if str(e) else repr(e)}))
"""


def replay16(jobs: list[tuple[str, str, int]]) -> list[dict]:
    p = subprocess.run([oracle16(), "-c", _RUNNER, json.dumps(jobs)], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    return [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]


def convert(inputs: list[str], out: Path) -> None:
    run_convert(inputs, mooncake=str(out), agentic_rows=True, out=io.StringIO(), err=io.StringIO())


def g3c_trace(path: Path) -> Path:
    """G3c-era records: Claude tool metadata (a blocking and a background agent), a sub-agent
    spawned while its parent call still runs, concurrent calls in one session, equal start times."""
    def claude(src, consumer, child, mode):
        return {"claude": {"source_request_id": src, "consumer_request_id": consumer, "child_session_id": child,
                           "execution_mode": mode}}
    return write_jsonl(path, [
        req("p1", "root", None, 1000, 1100, [11]), req("p2", "root", None, 1300, 1400, [11, 22]),
        req("p2b", "root", None, 1300, 1450, [11, 23]),  # concurrent with p2, same start
        req("k1", "kid", "root", 1100, 1200, [31]), req("k2", "kid", "root", 1200, 1250, [31, 32]),
        req("b1", "bg", "root", 1350, 2500, [41]),  # starts while p2 runs: a dispatch spawn
        req("w1", "kid2", "root", 1460, 1600, [51]),  # implicit child (no tool names it)
        req("p3", "root", None, 1700, 1800, [11, 22, 33]), req("p4", "root", None, 2600, 2700, [11, 22, 33, 44]),
        tool("root", "t-agent", "Agent", 1100, 1260, **claude("p1", "p2", "kid", "blocking")),
        tool("root", "t-bg", "Agent", 1400, 2550, **claude("p2", "p4", "bg", "background")),
        tool("root", "t-ls", "ls", 1620, 1690),
    ])


def _cases(tmp_path: Path) -> dict[str, tuple[list[str], int]]:
    cases: dict[str, tuple[list[str], int]] = {"dynamo-fixture-weka-two-plays": ([str(TWO_PLAYS)], 4)}
    for name in ("trace_0277", "trace_0291", "trace_0460", "trace_0021"):
        cases[f"weka-{name}"] = ([str(WEKA / f"{name}.json")], 64)
    for gen, rows in synthetic.dynamo_records(("G1", "G2", "G3a", "G3b"), runs=2).items():
        p = tmp_path / f"{gen}.jsonl"
        synthetic.write_jsonl(rows, str(p))
        cases[f"generated-{gen}"] = ([str(p)], synthetic.BLOCK)
    cases["generated-G3c"] = ([str(g3c_trace(tmp_path / "g3c.jsonl"))], 2)
    return cases


@pytest.mark.skipif(not WEKA.is_dir() or not TWO_PLAYS.exists(), reason="shared/fixtures not present")
def test_default_output_replays_on_1_6_1_with_the_header_source(tmp_path):
    cases = _cases(tmp_path)
    jobs, heads = [], {}
    for name, (inputs, bs) in sorted(cases.items()):
        out = tmp_path / f"{name}.v2.jsonl"
        convert(inputs, out)
        lines = out.read_bytes().splitlines()
        heads[name] = (orjson.loads(lines[0]), len(lines) - 1)
        jobs.append((str(out), "agentic_mooncake", bs))
    for name, res in zip(sorted(cases), replay16(jobs)):
        assert "error" not in res, (name, res)
        header, n = heads[name]
        s = res["report"]["summary"]
        assert s["agentic_graph"]["source"] == header["source"], name
        assert s["agentic_graph"]["block_size"] == header["block_size"], name
        assert s["agentic_graph"]["node_count"] == s["num_requests"] == s["completed_requests"] == n, name
        assert [r["request_id"] for r in res["report"]["per_request"]] != [], name


# where the two reads differ by construction: wall clock, and what is built from request / play names
_NAMES = {"agentic_graph", "agentic_lifecycle_digest", "agentic_play_outcomes", "weka_nested_timestamp_basis",
          "wall_time_ms", "processed_tokens_per_s", "processed_output_tokens_per_s"}
_ROW_NAMES = {"request_id", "play_id", "session_id", "agentic"}


@pytest.mark.skipif(not WEKA.is_dir(), reason="shared/fixtures not present")
@pytest.mark.parametrize("name", ["trace_0021", "trace_0460", "trace_0704"])
def test_v2_file_replays_as_1_6_1s_native_weka_read(tmp_path, name):
    """Three of the twelve WEKA traces 1.6.1's `weka` reader accepts (the other seventeen use a
    model their header does not declare, which it refuses); all twelve agree (README)."""
    out = tmp_path / "v2.jsonl"
    convert([str(WEKA / f"{name}.json")], out)
    ours, native = replay16([(str(out), "agentic_mooncake", 64), (str(WEKA / f"{name}.json"), "weka", 64)])
    assert "error" not in ours and "error" not in native, (ours, native)
    so, sn = ours["report"]["summary"], native["report"]["summary"]
    assert {k: v for k, v in so.items() if k not in _NAMES} == {k: v for k, v in sn.items() if k not in _NAMES}
    assert len(so) > 90 and so["completed_requests"] == sn["completed_requests"] > 0
    outcome = [{k: v for k, v in p.items() if k != "play_id"} for p in so["agentic_play_outcomes"]]
    assert outcome == [{k: v for k, v in p.items() if k != "play_id"} for p in sn["agentic_play_outcomes"]]
    g = {k: v for k, v in so["agentic_graph"].items() if k not in ("source", "graph_digest")}
    assert g == {k: v for k, v in sn["agentic_graph"].items() if k not in ("source", "graph_digest")}
    # rows: native ids are `weka:<digest>:request:outer:<i>`, ours `<play>/<i>`: the same calls
    ro, rn = ours["report"]["per_request"], native["report"]["per_request"]
    assert [r["request_id"].rsplit("/", 1)[1] for r in ro] == [r["request_id"].rsplit(":", 1)[1] for r in rn]
    assert [{k: v for k, v in r.items() if k not in _ROW_NAMES} for r in ro] == \
        [{k: v for k, v in r.items() if k not in _ROW_NAMES} for r in rn]
