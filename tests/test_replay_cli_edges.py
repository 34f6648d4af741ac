"""`trace-pipe replay` / `sweep` at their edges: reader notes, what the comparison counts, plays,
failed and slow sweeps, unwritable outputs, closed pipes, empty input and option checks."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from dynamo_records import req, write_jsonl
from typer.testing import CliRunner

from trace_pipe.cli import convert_cmd, sweep_cmd
from trace_pipe.cli.main import _register, app
from trace_pipe.cli.replay_cmd import run
from trace_pipe.pipeline.errors import TraceError
from trace_pipe.sim import sweep

_register()
WEKA = Path(__file__).resolve().parents[1] / "fixtures" / "trace_0277.json"


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def chains(tmp_path: Path, a_ttft: float | None = 100.0) -> Path:
    # chains A, B (b -> b2 after a 500 ms gap), C, D, as in test_replay_compare
    a = req("a", "A", None, 0, 1000, [1], ttft_ms=a_ttft) if a_ttft is not None else req("a", "A", None, 0, 1000, [1])
    return write_jsonl(tmp_path / "t.jsonl", [
        a, req("b", "B", None, 0, 1000, [2], ttft_ms=200.0),
        req("b2", "B", None, 1500, 2000, [3], ttft_ms=50.0), req("c", "C", None, 1200, 1800, [4], ttft_ms=60.0),
        req("d", "D", None, 2400, 2800, [5], ttft_ms=100.0)])


def rows_file(path: Path, rows: list[dict]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return path


def exp_file(path: Path, times: list[tuple[float, float, float]]) -> Path:
    items = [{"prompt_len": 20, "output_len": 3, "issue_time": a, "first_token_time": b, "complete_time": c}
             for a, b, c in times]
    path.write_text(repr(items) + "\n{'summary': 1}\n")
    return path


# 1. reader notes ---------------------------------------------------------------------------

@pytest.mark.parametrize("version, fmt", [("1.6", "v2"), ("1.4", "v1")])
def test_replay_prints_the_reader_notes_convert_prints(tmp_path, version, fmt):
    """A WEKA play replays as the agentic rows its version's converter writes (v2 for 1.5/1.6, v1
    for 1.4), with that conversion's notes."""
    conv_err = io.StringIO()
    convert_cmd.run_convert([str(WEKA)], mooncake=str(tmp_path / "m.jsonl"), agentic_rows=True, fmt=fmt,
                            out=io.StringIO(), err=conv_err)
    notes = [ln for ln in conv_err.getvalue().splitlines() if ln.startswith(("note:", "skipped"))]
    assert "note: 53 weka calls with a partial last block (private hash label added)" in notes
    err = io.StringIO()
    run([str(WEKA)], trace_format="weka", timing="recorded", num_workers=64, report_json=str(tmp_path / "r.json"),
        dynamo_version=version, out=io.StringIO(), err=err, progress=False)
    assert err.getvalue().splitlines() == notes
    res = invoke("sweep", str(WEKA), "--trace-format", "weka", "--jobs", "1", "--csv", str(tmp_path / "s.csv"),
                 "--dynamo-version", version)
    assert res.exit_code == 0 and res.stderr.splitlines() == notes


# 2, 9. what the comparison table counts ---------------------------------------------------------

def test_compare_table_counts_compared_values_and_says_when_nothing_finished(tmp_path):
    p = chains(tmp_path, a_ttft=None)  # a has no recorded first token: its TTFT is not compared
    out = io.StringIO()
    run([str(p)], trace_format="dynamo", timing="recorded", extra_engine_args='{"max_num_seqs": 1}',
        max_sim_time_seconds=2.1, report_json=str(tmp_path / "r.json"), compare_json=str(tmp_path / "c.json"),
        out=out, progress=False)
    s = json.loads((tmp_path / "c.json").read_text())["summary"]
    # one slot, by 2.1 s: a (0-1000) and b (1000-2000) finished, c released at 1200 and running;
    # b2 (released 500 ms after b) and d (2400) not released
    assert (s["requests"], s["start_compared"], s["finished"], s["ttft_compared"], s["e2e_compared"]) == (5, 3, 2, 1, 2)
    rows = {ln.split("|")[1].strip(): ln.split("|")[-2].strip() for ln in out.getvalue().splitlines()
            if ln.startswith("| ") and "error" in ln}
    assert rows == {"Start abs error (ms)": "3", "TTFT abs % error": "1", "E2E abs % error": "2"}
    assert "Error onset (> 100 ms): request b, start +0.00 ms, end +1,000.00 ms off" in out.getvalue()

    out = io.StringIO()
    run([str(p)], trace_format="dynamo", timing="recorded", max_sim_time_seconds=0.0,
        report_json=str(tmp_path / "r.json"), compare_json=str(tmp_path / "c.json"), out=out, progress=False)
    s = json.loads((tmp_path / "c.json").read_text())["summary"]
    assert s["finished"] == 0 and s["e2e_compared"] == 0
    text = out.getvalue()
    assert "Error onset: n/a (no request finished in the simulation: no end compared;" in text
    assert "every start and end within" not in text


# 3. plays -----------------------------------------------------------------------------------

def test_compare_plays_include_single_request_plays_not_context_free_rows(tmp_path):
    run([str(chains(tmp_path))], trace_format="dynamo", timing="recorded", num_workers=8,
        report_json=str(tmp_path / "r.json"), compare_json=str(tmp_path / "c.json"), out=io.StringIO(),
        progress=False)
    plays = json.loads((tmp_path / "c.json").read_text())["plays"]
    # named as Dynamo 1.6.1's raw loader names plays: after their root request
    assert sorted(plays) == [f"dynamo-play:{r}" for r in "abcd"]
    assert [plays[f"dynamo-play:{r}"]["requests"] for r in "abcd"] == [1, 2, 1, 1]
    c = plays["dynamo-play:c"]
    assert c["start_abs_err_ms"]["max"] == 0.0 and c["makespan_err_pct"] == 0.0
    exp = exp_file(tmp_path / "run.exp", [(1.0, 1.1, 1.5), (2.0, 2.1, 2.5)])
    run([str(exp)], trace_format="distserve", timing="recorded", report_json=str(tmp_path / "r.json"),
        compare_json=str(tmp_path / "c2.json"), out=io.StringIO(), progress=False)
    d = json.loads((tmp_path / "c2.json").read_text())
    assert d["plays"] == {} and d["summary"]["requests"] == 2


# 4. sweep: all failed, rejected requests, small throughputs -----------------------------------

def test_sweep_exits_1_when_every_configuration_fails(tmp_path):
    t = rows_file(tmp_path / "t.jsonl", [{"timestamp": 0, "input_length": 64, "output_length": 4,
                                          "hash_ids": [1, 2, 3, 4]}])
    csv_out = tmp_path / "s.csv"
    res = invoke("sweep", str(t), "--num-workers", "1,2", "--jobs", "1", "--trace-block-size", "16",
                 "--extra-engine-args", '{"block_size": 16, "num_gpu_blocks": 4}', "--csv", str(csv_out))
    assert res.exit_code == 1
    assert res.stderr.splitlines() == [
        "error: all 2 configurations failed; first (workers=1 router=round_robin): t.jsonl:1: request '0' needs "
        "67 tokens of KV but a worker holds 64 (num_gpu_blocks x block_size); Dynamo's replay would reach a dead "
        "end".replace("t.jsonl", str(t))]
    rows = list(csv.DictReader(io.StringIO(csv_out.read_text())))  # the errors are still written
    assert len(rows) == 2 and all("needs 67 tokens of KV" in r["error"] for r in rows)
    assert sweep.failure_line([{"num_workers": 1, "router_mode": "random", "error": ""}]) is None


def test_sweep_reports_rejected_requests_and_small_throughputs(tmp_path):
    # 2 of 3 prompts fit 4 blocks of 16; the third (5 blocks) is rejected; arrivals 100 s apart
    t = rows_file(tmp_path / "t.jsonl", [
        {"timestamp": 0, "input_length": 64, "output_length": 1, "hash_ids": [1, 2, 3, 4]},
        {"timestamp": 100_000, "input_length": 80, "output_length": 1, "hash_ids": [5, 6, 7, 8, 9]},
        {"timestamp": 200_000, "input_length": 64, "output_length": 1, "hash_ids": [1, 2, 3, 4]}])
    engine = '{"block_size": 16, "num_gpu_blocks": 4}'
    rep = invoke("replay", str(t), "--trace-block-size", "16", "--extra-engine-args", engine,
                 "--report-json", str(tmp_path / "r.json"))
    assert rep.exit_code == 0 and "Rejected (prompt larger than a worker's KV cache): 1 requests" in rep.stdout
    out = io.StringIO()
    [row] = sweep_cmd.run([str(t)], csv_out=str(tmp_path / "s.csv"), trace_block_size=16, extra_engine_args=engine,
                          jobs=1, out=out)
    assert row["rejected"] == 1 and row["completed_requests"] == 2
    assert 0.009 < row["request_throughput_rps"] < 0.011  # 2 requests over ~200 s
    [csv_row] = csv.DictReader(io.StringIO((tmp_path / "s.csv").read_text()))
    assert csv_row["rejected"] == "1" and float(csv_row["request_throughput_rps"]) == pytest.approx(
        row["request_throughput_rps"], abs=1e-6)
    head, body = [ln for ln in out.getvalue().splitlines() if ln.startswith("| ")]
    cells = dict(zip([c.strip() for c in head.split("|")[1:-1]], [c.strip() for c in body.split("|")[1:-1]]))
    assert cells["rejected"] == "1" and cells["req/s"] == sweep._sig3(row["request_throughput_rps"])
    assert cells["req/s"].startswith("0.0") and len(cells["req/s"]) == 6  # 0.0100, not 0.0
    assert [sweep._sig3(v) for v in (0.015, 28.93, 1234.6, 0.0)] == ["0.0150", "28.9", "1,235", "0"]


# 5. outputs checked before the replay; out-of-range times ----------------------------------------

@pytest.mark.parametrize("flag", ["--perfetto", "--compare-json", "--per-request-jsonl", "--report-jsonl"])
def test_replay_refuses_a_directory_output_before_running(tmp_path, flag, monkeypatch):
    p = chains(tmp_path)
    (tmp_path / "adir").mkdir()
    monkeypatch.chdir(tmp_path)  # restored after the test
    res = invoke("replay", str(p), "--trace-format", "dynamo", "--report-json", "r.json", flag, "adir")
    named = "--per-request-jsonl" if flag == "--report-jsonl" else flag  # the option's current name
    assert res.exit_code == 2 and res.stderr == f"error: {named} adir: is a directory\n"
    assert res.stdout == "" and not (tmp_path / "r.json").exists() and os.listdir(tmp_path / "adir") == []


def test_outputs_below_a_file_or_twice_the_same_are_refused(tmp_path):
    p = chains(tmp_path)
    (tmp_path / "f").write_text("x")
    with pytest.raises(TraceError, match=r"^error: --perfetto .*/f/x.pftrace: .*/f is not a directory$"):
        run([str(p)], trace_format="dynamo", report_json=str(tmp_path / "r.json"),
            perfetto=str(tmp_path / "f" / "x.pftrace"), progress=False)
    with pytest.raises(TraceError, match="--compare-json .*c.json: the same file as --per-request-jsonl"):
        run([str(p)], trace_format="dynamo", report_json=str(tmp_path / "r.json"),
            report_jsonl=str(tmp_path / "c.json"), compare_json=str(tmp_path / "c.json"), progress=False)
    assert not (tmp_path / "r.json").exists()
    # --report-json DIR keeps Dynamo's meaning: a timestamped report inside it
    (tmp_path / "reports").mkdir()
    run([str(p)], trace_format="dynamo", timing="recorded", report_json=str(tmp_path / "reports"),
        out=io.StringIO(), progress=False)
    assert [f.suffix for f in (tmp_path / "reports").iterdir()] == [".json"]
    res = invoke("sweep", str(p), "--trace-format", "dynamo", "--csv", str(tmp_path / "reports"))
    assert res.exit_code == 2 and res.stderr == f"error: --csv {tmp_path / 'reports'}: is a directory\n"


def test_distserve_time_beyond_64_bit_nanoseconds_is_one_line(tmp_path):
    exp = exp_file(tmp_path / "big.exp", [(1.0, 1.1, 1.5), (1e300, 1e300, 1e300)])
    res = invoke("replay", str(exp), "--trace-format", "distserve", "--report-json", str(tmp_path / "r.json"),
                 "--perfetto", str(tmp_path / "x.pftrace"))
    assert res.exit_code == 2
    assert res.stderr == (f"error: {exp}:1: request 1: field `issue_time` is out of range: 1e+300 s is beyond "
                          f"2^63 ns\n")
    assert not (tmp_path / "x.pftrace").exists()


# 6. a closed pipe --------------------------------------------------------------------------

def test_closed_stdout_exits_1_quietly(tmp_path):
    t = rows_file(tmp_path / "t.jsonl", [{"timestamp": 0, "input_length": 8, "output_length": 3, "hash_ids": [1, 2]}])
    r, w = os.pipe()
    os.close(r)  # the reader is gone before anything is written, as after `| head -1`
    try:
        res = subprocess.run([sys.executable, "-m", "trace_pipe.cli.main", "replay", str(t), "--report-json",
                              str(tmp_path / "r.json")], stdout=w, stderr=subprocess.PIPE, timeout=60)
    finally:
        os.close(w)
    assert (res.returncode, res.stderr.decode()) == (1, "")


# 7. empty input ----------------------------------------------------------------------------

def test_empty_mooncake_file_is_an_error(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    res = invoke("replay", str(empty), "--report-json", str(tmp_path / "r.json"))
    assert res.exit_code == 2 and res.stderr == "error: no LLM requests found in the input\n"
    assert not (tmp_path / "r.json").exists()
    res = invoke("sweep", str(empty), "--csv", str(tmp_path / "s.csv"))
    assert res.exit_code == 2 and res.stderr == "error: no LLM requests found in the input\n"


# 8. option checks --------------------------------------------------------------------------

@pytest.mark.parametrize("args,msg", [
    (["--max-sim-time-seconds", "-1"], "error: --max-sim-time-seconds must be a finite number >= 0, got -1"),
    (["--max-sim-time-seconds", "nan"], "error: --max-sim-time-seconds must be a finite number >= 0, got nan"),
    (["--onset-ms", "nan"], "error: --onset-ms must be a finite number >= 0, got nan"),
    (["--onset-ms", "-5"], "error: --onset-ms must be a finite number >= 0, got -5"),
    (["--timing", "fit", "--timing-table", "t.json"],
     "error: --timing-table goes with --timing table, not --timing fit: add --timing table (or drop --timing)"),
    (["--decode-timing", "fast"], "error: --decode-timing must be physical or logical, got 'fast'"),
])
def test_bad_options_are_one_line(tmp_path, args, msg):
    res = invoke("replay", str(chains(tmp_path)), "--trace-format", "dynamo", "--report-json",
                 str(tmp_path / "r.json"), *args)
    assert res.exit_code == 2 and res.stderr == msg + "\n"
    assert not (tmp_path / "r.json").exists()


def test_timing_table_alone_implies_table_and_decode_timing_note(tmp_path):
    t = rows_file(tmp_path / "t.jsonl", [{"timestamp": 0, "input_length": 8, "output_length": 3, "hash_ids": [1, 2]}])
    table = tmp_path / "table.json"
    table.write_bytes(orjson.dumps({"prefill_tokens": [0, 1000], "prefill_ms": [100.0, 200.0],
                                    "decode_kv_tokens": [0, 10000], "decode_context": [0, 10000],
                                    "decode_itl_ms": [[50.0, 50.0], [50.0, 50.0]]}))
    common = ["replay", str(t), "--trace-block-size", "4", "--extra-engine-args", '{"block_size": 4}']
    durations = []
    for extra in ([], ["--timing", "table"]):
        res = invoke(*common, "--timing-table", str(table), "--report-json", str(tmp_path / "r.json"), *extra)
        assert res.exit_code == 0 and res.stderr == ""
        durations.append(json.loads((tmp_path / "r.json").read_text())["duration_ms"])
    assert durations[0] == durations[1] > 200.0  # the profile (>= 100 ms prefill), not the polynomial
    res = invoke(*common, "--timing-table", str(table), "--decode-timing", "logical", "--report-json",
                 str(tmp_path / "r.json"))
    assert res.exit_code == 0
    assert res.stderr == "note: --decode-timing logical is ignored with --timing table: it applies to the dynamo timing only\n"
    res = invoke(*common, "--decode-timing", "logical", "--report-json", str(tmp_path / "r.json"))
    assert res.exit_code == 0 and res.stderr == ""
    res = invoke(*common, "--max-sim-time-seconds", "0", "--report-json", str(tmp_path / "r.json"))
    assert res.exit_code == 0 and "Stopped at the simulated-time limit (0 s): 1 requests not completed" in res.stdout


def test_impossible_recorded_ttft_is_counted_and_not_compared(tmp_path):
    from trace_pipe.cli.replay_cmd import run

    recs = [req("a", "s", None, 1000, 1100, [1], ttft_ms=-5.0), req("b", "s", None, 1200, 1300, [1, 2], ttft_ms=500.0),
            req("c", "s", None, 1400, 1500, [1, 2], ttft_ms=20.0)]
    src = write_jsonl(tmp_path / "t.jsonl", recs)
    err = io.StringIO()
    run([str(src)], trace_format="dynamo", compare_json=str(tmp_path / "c.json"),
        report_json=str(tmp_path / "r.json"), out=io.StringIO(), err=err, progress=False)
    assert "note: 2 request.ttft_ms negative or beyond total_time_ms (kept as recorded, not compared)" in err.getvalue()
    cmp = json.loads((tmp_path / "c.json").read_text())
    assert [r["recorded"]["ttft_ms"] for r in cmp["requests"]] == [None, None, 20.0]
    assert cmp["summary"]["ttft_compared"] == 1
