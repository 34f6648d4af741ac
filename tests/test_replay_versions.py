"""Every Dynamo version's rules run through the whole replay command: `--perfetto` (checked),
`--compare-json`, `--timing fit` and `recorded`, and `sweep`; the versions differ where their rules
say they do (first-token pass timing, release order) and nowhere else."""

from __future__ import annotations

import io
import json

import pytest
from dynamo_records import FIXTURES

from trace_pipe.cli import sweep_cmd
from trace_pipe.cli.replay_cmd import run
from trace_pipe.pipeline.errors import TraceError
from trace_pipe.proto.check import check_file

WEKA = FIXTURES / "kv_cache_tester_traces" / "trace_0277.json"
DISTSERVE = FIXTURES / "distserve_alignment" / "opt-13b-sharegpt" / "vllm-100-1.exp"

pytestmark = pytest.mark.skipif(not WEKA.exists(), reason=f"fixture missing: {WEKA}")


@pytest.mark.parametrize("version", ["1.4", "1.5", "1.6"])
def test_perfetto_compare_and_timings_under_every_version(tmp_path, version):
    pf, cj = tmp_path / "r.pftrace", tmp_path / "c.json"
    rep, res = run([str(WEKA)], trace_format="weka", num_workers=2, report_json=str(tmp_path / "r.json"),
                   perfetto=str(pf), compare_json=str(cj), dynamo_version=version, out=io.StringIO(),
                   err=io.StringIO(), progress=False)
    assert rep["completed_requests"] == 53
    chk = check_file(str(pf))
    assert chk.problems == [] and chk.flows > 0
    cmp = json.loads(cj.read_text())
    assert len(cmp["requests"]) == 53 and cmp["summary"]["requests"] == 53
    rep_r, _ = run([str(WEKA)], trace_format="weka", timing="recorded", report_json=str(tmp_path / "rec.json"),
                   dynamo_version=version, out=io.StringIO(), err=io.StringIO(), progress=False)
    assert rep_r["completed_requests"] == 53
    if DISTSERVE.exists():  # WEKA records no first-token times to fit on
        rep_f, _ = run([str(DISTSERVE)], trace_format="distserve", timing="fit", report_json=str(tmp_path / "f.json"),
                       extra_engine_args='{"block_size": 16, "enable_prefix_caching": false}', dynamo_version=version,
                       out=io.StringIO(), err=io.StringIO(), progress=False)
        assert rep_f["completed_requests"] == rep_f["num_requests"] > 0


def test_versions_differ_where_their_rules_do(tmp_path):
    """One 8-token prompt: 1.4.2 and 1.5.1 charge a decode step in its prompt pass, 1.6.1 does not
    (dynamo-1.6.md §4: TTFT = P(8) = 16.622914 ms, as 1.6.1 reports it)."""
    t = tmp_path / "t.jsonl"
    t.write_text('{"timestamp": 0, "input_length": 8, "output_length": 2, "hash_ids": [1, 2]}\n')
    ttft = {}
    for v in ("1.4", "1.5", "1.6"):
        rep, _ = run([str(t)], trace_block_size=4, extra_engine_args='{"block_size": 4}', dynamo_version=v,
                     report_json=str(tmp_path / f"{v}.json"), out=io.StringIO(), err=io.StringIO(), progress=False)
        ttft[v] = rep["mean_ttft_ms"]
    assert ttft["1.6"] == 16.622913999999998
    assert ttft["1.4"] > ttft["1.6"] and ttft["1.5"] > ttft["1.6"]


def test_sweep_takes_the_version(tmp_path):
    t = tmp_path / "t.jsonl"
    t.write_text('{"timestamp": 0, "input_length": 8, "output_length": 2, "hash_ids": [1, 2]}\n')
    common = dict(trace_block_size=4, extra_engine_args='{"block_size": 4}', jobs=1, out=io.StringIO())
    a = sweep_cmd.run([str(t)], dynamo_version="1.6", **common)[0]
    b = sweep_cmd.run([str(t)], dynamo_version="1.4", **common)[0]
    assert a["ttft_p50_ms"] == 16.622913999999998 and b["ttft_p50_ms"] > a["ttft_p50_ms"]


@pytest.mark.parametrize("args, message", [
    (dict(dynamo_version="2.0"), "error: --dynamo-version must be one of 1.4, 1.5, 1.6, got '2.0'"),
    (dict(dynamo_version="1.6", decode_timing="physical"),
     "error: --decode-timing physical contradicts --dynamo-version 1.6 (whose decode timing is logical); drop "
     "--decode-timing"),
])
def test_version_errors(tmp_path, args, message):
    t = tmp_path / "t.jsonl"
    t.write_text('{"timestamp": 0, "input_length": 8, "output_length": 2, "hash_ids": [1, 2]}\n')
    with pytest.raises(TraceError) as e:
        run([str(t)], report_json=str(tmp_path / "r.json"), out=io.StringIO(), err=io.StringIO(), progress=False,
            **args)
    assert str(e.value) == message
    assert not (tmp_path / "r.json").exists()


def test_weka_play_replays_as_1_6_1_reads_it(tmp_path):
    """`--trace-format weka` under 1.6 is the play's v2 graph: ai-dynamo 1.6.1's own `weka` reader
    gives these numbers for trace 0021 (2 workers round robin, arrival speedup 2)."""
    t = FIXTURES / "kv_cache_tester_traces" / "trace_0021.json"
    rep, _ = run([str(t)], trace_format="weka", num_workers=2, arrival_speedup_ratio=2.0,
                 report_json=str(tmp_path / "r.json"), out=io.StringIO(), err=io.StringIO(), progress=False)
    assert rep["duration_ms"] == pytest.approx(256424.361772, rel=1e-12)
    assert rep["mean_ttft_ms"] == pytest.approx(109.96590107142983, rel=1e-9)
    assert rep["completed_requests"] == 14
