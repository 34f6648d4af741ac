"""`trace-pipe query`: every preset on two replays (the shipped WEKA session with sub-agents and
tools; a generated Dynamo trace of G1-G3b with recorded TTFTs and workers), its numbers checked
against the same numbers from replay's own outputs (`--compare-json`, `--per-request-jsonl`,
`--report-json`) or the recorded trace, to 1 µs; and the one-line errors (exit 2, nothing written)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
from typer.testing import CliRunner

import typer

from trace_pipe.cli import query_cmd
from trace_pipe.cli.replay_cmd import run as replay
from trace_pipe.pipeline.errors import TraceError
from trace_pipe.pipeline.replay_input import load_input
from trace_pipe.proto import query, recorded_timeline, synthetic

from tp_binary import TP_BIN, needs_tp

ROOT = Path(__file__).resolve().parents[1]
WEKA = ROOT / "fixtures" / "trace_0277.json"
US = 1e-3  # 1 µs in ms
PRESETS = ("plays", "replay", "requests", "sessions", "tools", "workers")
app = typer.Typer()
app.callback()(lambda: None)  # a group, so the command keeps its name
query_cmd.register(app)


def close(a, b) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and abs(a - b) <= US)


def union_ms(intervals, scale: float = 1.0) -> float:
    """Total length of the union of (start, end) intervals, times `scale` (integer ns in, so
    epoch-sized times keep their precision: `scale` 1e-6 gives ms)."""
    total, end = 0.0, None
    for s, e in sorted(intervals):
        if end is None or s > end:
            total += e - s
            end = e
        elif e > end:
            total += e - end
            end = e
    return total * scale


_REPLAYS: dict = {}


def replay_of(name: str, tmp_path_factory) -> dict:
    """One replay per input with every output, and every preset's rows (one trace processor
    load), made once per session."""
    if name in _REPLAYS:
        return _REPLAYS[name]
    tmp = tmp_path_factory.mktemp(f"query-{name}")
    if name == "weka":
        paths, fmt = [str(WEKA)], "weka"
    else:
        for gen, rows in synthetic.dynamo_records().items():
            synthetic.write_jsonl(rows, str(tmp / f"{gen}.jsonl"))
        paths, fmt = [str(tmp / f"{g}.jsonl") for g in synthetic.dynamo_records()], "dynamo"
    out = {k: str(tmp / n) for k, n in (("pf", "r.pftrace"), ("cmp", "c.json"), ("rows", "r.jsonl"), ("rep", "r.json"))}
    replay(paths, trace_format=fmt, num_workers=2, perfetto=out["pf"], compare_json=out["cmp"],
           report_jsonl=out["rows"], report_json=out["rep"], out=io.StringIO(), err=io.StringIO(), progress=False)
    got = {}
    if TP_BIN is not None:
        with query.open_trace(out["pf"], TP_BIN) as session:
            for preset in PRESETS:
                res = session.query(query.preset_sql(preset))
                got[preset] = [dict(zip(res.columns, r)) for r in res.rows]
    inp = load_input(paths, fmt, None)
    _REPLAYS[name] = {"name": name, "files": out, "presets": got,
                      "cmp": json.loads(Path(out["cmp"]).read_text()),
                      "rows": [json.loads(x) for x in Path(out["rows"]).read_text().splitlines()],
                      "report": json.loads(Path(out["rep"]).read_text()),
                      "timeline": recorded_timeline(inp.trace, inp.edges)}
    return _REPLAYS[name]


@pytest.fixture(params=["weka", "dynamo"])
def replayed(request, tmp_path_factory):
    return replay_of(request.param, tmp_path_factory)


def by(rows, *keys):
    out = {}
    for r in rows:
        k = tuple(r[x] for x in keys)
        assert k not in out, k
        out[k] = r
    return out


@needs_tp
def test_requests_preset_equals_the_compare_json(replayed):
    rows = by(replayed["presets"]["requests"], "root", "request_id")
    items = replayed["cmp"]["requests"]
    assert len(rows) == 2 * len(items) > 0
    ttfts = 0
    for it in items:
        for root, side in (("Recorded", "recorded"), ("Simulated", "simulated")):
            r = rows[(root, it["request_id"])]
            for k in ("start_ms", "ttft_ms", "e2e_ms"):
                assert close(r[k], it[side][k]), (root, it["request_id"], k, r[k], it[side][k])
            ttfts += r["ttft_ms"] is not None
    # the generated trace has recorded TTFTs (WEKA has none): both sides are compared
    assert ttfts == (2 * len(items) if replayed["name"] == "dynamo" else len(items))


@needs_tp
def test_replay_preset_equals_the_compare_json(replayed):
    rows = by(replayed["presets"]["replay"], "request_id")
    assert len(rows) == len(replayed["cmp"]["requests"])
    for it in replayed["cmp"]["requests"]:
        r = rows[(it["request_id"],)]
        for k in ("start_ms", "ttft_ms", "e2e_ms"):
            rec, sim = it["recorded"][k], it["simulated"][k]
            assert close(r[f"recorded_{k}"], rec) and close(r[f"simulated_{k}"], sim), (it["request_id"], k)
            assert close(r[f"diff_{k}"], None if rec is None or sim is None else sim - rec)


@needs_tp
def test_sessions_and_plays_presets_equal_the_compare_json_and_report(replayed):
    """Per session (the rows' conversation id) and per play: first start, last end, makespan, from
    the compare JSON's times; the simulated play makespan also from the report's plays (WEKA)."""
    conv = {r["request_id"]: r["agentic"]["conversation_id"] for r in replayed["rows"]}
    spans = defaultdict(list)
    for it in replayed["cmp"]["requests"]:
        for root, side in (("Recorded", "recorded"), ("Simulated", "simulated")):
            t = it[side]
            spans[(root, conv[it["request_id"]])].append((t["start_ms"], t["start_ms"] + t["e2e_ms"]))
    sessions = by(replayed["presets"]["sessions"], "root", "session")
    assert set(sessions) == set(spans)
    play_of = {}
    for key, iv in spans.items():
        r = sessions[key]
        assert r["requests"] == len(iv)
        lo, hi = min(s for s, _ in iv), max(e for _, e in iv)
        assert close(r["start_ms"], lo) and close(r["end_ms"], hi) and close(r["makespan_ms"], hi - lo), (key, r)
        play_of[key] = (key[0], r["play"])
    plays = by(replayed["presets"]["plays"], "root", "play")
    per_play = defaultdict(list)
    for key, iv in spans.items():
        per_play[play_of[key]] += iv
    assert set(plays) == set(per_play)
    for key, iv in per_play.items():
        lo, hi = min(s for s, _ in iv), max(e for _, e in iv)
        assert close(plays[key]["makespan_ms"], hi - lo) and plays[key]["requests"] == len(iv)
    if replayed["name"] == "weka":
        (play,) = replayed["report"]["trace_pipe"]["plays"]
        assert close(plays[("Simulated", f"play: {play['play']}")]["makespan_ms"], play["makespan_ms"])


@needs_tp
def test_tools_preset_equals_the_recorded_tool_and_request_time(replayed):
    """Recorded: the union of each chain's request slices and of its tool slices, from the recorded
    timeline the writer drew; Simulated: the union of the simulated requests (compare JSON), the
    same tool calls moved with them."""
    tl = replayed["timeline"]
    llm, tools = defaultdict(list), defaultdict(list)
    for r in tl.requests:
        llm[(r.group, r.chain)].append((r.slice.start_ns, r.slice.end_ns))
    for it in tl.tools:
        if it.slice is not None and it.slice.category == "dynamo.agent.tool":
            tools[(it.group, it.chain)].append((it.slice.start_ns, it.slice.end_ns))
    rows = by(replayed["presets"]["tools"], "root", "play", "session")
    assert sum(len(v) for v in tools.values()) > 0
    for key in set(llm) | set(tools):
        r = rows[("Recorded", *key)]
        assert r["requests"] == len(llm[key]) and r["tool_calls"] == len(tools[key]), (key, r)
        assert close(r["llm_ms"], union_ms(llm[key], 1e-6)) and close(r["tool_ms"], union_ms(tools[key], 1e-6)), (key, r)
        total = r["llm_ms"] + r["tool_ms"]
        assert close(r["tool_share_pct"], 100 * r["tool_ms"] / total if total else None)
        sim = rows[("Simulated", *key)]
        assert sim["tool_calls"] == r["tool_calls"] and sim["requests"] == r["requests"]
    sim_llm = defaultdict(list)
    chain = {r.key: (r.group, r.chain) for r in tl.requests}
    for it in replayed["cmp"]["requests"]:
        t = it["simulated"]
        sim_llm[chain[it["request_id"]]].append((t["start_ms"], t["start_ms"] + t["e2e_ms"]))
    for key, iv in sim_llm.items():
        assert close(rows[("Simulated", *key)]["llm_ms"], union_ms(iv)), key


@needs_tp
def test_workers_preset_equals_the_per_request_rows(replayed):
    """Simulated worker N: its requests and the union of [first admission, terminal] of the rows
    it served, over the run's span (first release to last end); recorded workers: the union of
    the recorded placements the writer drew."""
    rows = by(replayed["presets"]["workers"], "root", "worker")
    served = defaultdict(list)
    for r in replayed["rows"]:
        served[f"worker {r['decode_worker_idx']}"].append((r["first_admit_ms"], r["terminal_time_ms"]))
    sim = {w: r for (root, w), r in rows.items() if root == "Simulated"}
    assert set(sim) == set(served) == {"worker 0", "worker 1"}
    span = max(r["terminal_time_ms"] for r in replayed["rows"]) - min(r["arrival_time_ms"] for r in replayed["rows"])
    assert close(span, replayed["report"]["duration_ms"])
    for w, iv in served.items():
        r = sim[w]
        assert r["requests"] == len(iv) and close(r["busy_ms"], union_ms(iv)) and close(r["span_ms"], span), (w, r)
        assert close(r["utilisation_pct"], 100 * r["busy_ms"] / span)
        assert 0 < r["pass_ms"] <= r["busy_ms"] + US  # the engine computes only while something is placed
    placed = defaultdict(list)
    ids = defaultdict(set)
    for req in replayed["timeline"].requests:
        for p in req.placements:
            placed[p.worker].append((p.slice.start_ns, p.slice.end_ns))
            ids[p.worker].add(req.key)
    rec = {w: r for (root, w), r in rows.items() if root == "Recorded"}
    assert set(rec) == set(placed) and (replayed["name"] == "weka") == (not placed)
    for w, iv in placed.items():
        assert rec[w]["requests"] == len(ids[w]) and close(rec[w]["busy_ms"], union_ms(iv, 1e-6)) and rec[w]["pass_ms"] is None


def test_presets_splice_one_requests_block():
    """The requests block is written once (queries/_requests.sql): every preset's statement holds
    it, and the files themselves do not repeat it."""
    from importlib import resources

    block = resources.files(query.__name__.rsplit(".", 1)[0]).joinpath("queries", "_requests.sql").read_text()
    assert set(query.presets()) == set(PRESETS)
    for name in PRESETS:
        assert block in query.preset_sql(name), name
        raw = resources.files(query.__name__.rsplit(".", 1)[0]).joinpath("queries", f"{name}.sql").read_text()
        assert "req_e2e AS (" not in raw and raw.count("-- @requests") == 1, name


def cli(*args, env=None, cwd=None) -> subprocess.CompletedProcess:
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "trace_pipe.cli.main", "query", *args], capture_output=True,
                          text=True, env=e, cwd=cwd, timeout=120)


@needs_tp
def test_outputs_table_csv_json(tmp_path_factory, tmp_path):
    weka = replay_of("weka", tmp_path_factory)
    pf = weka["files"]["pf"]
    res = CliRunner().invoke(app, ["query", pf, "--preset", "plays", "--tp-bin", TP_BIN])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[1].split("|")[1].strip() == "root" and "Simulated" in lines[4] and lines[-1] == "2 rows"
    out = tmp_path / "p.csv"
    res = CliRunner().invoke(app, ["query", pf, "SELECT name, count(*) AS n FROM track WHERE parent_id IS NULL "
                                   "GROUP BY name ORDER BY name", "--csv", str(out)], env={"TRACE_PIPE_TP_BIN": TP_BIN})
    assert res.exit_code == 0 and out.read_text() == "name,n\nRecorded,1\nSimulated,1\n" and list(tmp_path.iterdir()) == [out]
    res = CliRunner().invoke(app, ["query", pf, "--preset", "plays", "--json", "--tp-bin", TP_BIN])
    assert json.loads(res.output) == weka["presets"]["plays"]
    res = CliRunner().invoke(app, ["query", "--preset", "workers", "--show-sql"])
    assert res.exit_code == 0 and res.output == query.preset_sql("workers")
    res = CliRunner().invoke(app, ["query", "--list-presets"])
    assert [x.split()[0] for x in res.output.splitlines()] == sorted(PRESETS)



@needs_tp
@pytest.mark.tp_unchecked  # cuts a written trace on purpose
def test_errors_are_one_line_exit_2_and_write_nothing(tmp_path_factory, tmp_path):
    pf = replay_of("weka", tmp_path_factory)["files"]["pf"]
    out = tmp_path / "o.csv"
    env = {"TRACE_PIPE_TP_BIN": TP_BIN}

    def fails(args, want, env=env):
        """The whole command in its own process: exit 2, one line on stderr, nothing on stdout or disk."""
        r = cli(*args, "--csv", str(out), env=env)
        assert r.returncode == 2 and r.stdout == "" and r.stderr.count("\n") == 1, (r.stdout, r.stderr)
        assert r.stderr.startswith(want), r.stderr
        assert not out.exists()

    def refused(args, want, **kw):
        """The same check through query_cmd.run (no process start): the TraceError's one line."""
        with pytest.raises(TraceError) as e:
            query_cmd.run(*args, csv_out=str(out), tp_bin=kw.pop("tp_bin", TP_BIN), out=io.StringIO(), **kw)
        assert str(e.value).startswith(want) and "\n" not in str(e.value), str(e.value)
        assert not out.exists()

    fails([pf, "SELECT nope FROM slice"], "error: query failed: no such column: nope (line 1 col 8)")
    with query.open_trace(pf, TP_BIN) as session:  # more bad queries, one load
        for sql, want in (("SELEC 1", "error: query failed: syntax error near 'SELEC' (line 1 col 1)"),
                          ("SELECT * FROM no_such_table", "error: query failed: no such table: no_such_table")):
            with pytest.raises(TraceError) as e:
                session.query(sql)
            assert str(e.value).startswith(want) and "\n" not in str(e.value), str(e.value)
    # no binary at all: the perfetto package tries to download its own, which cannot work here (a
    # proxy that refuses, so the test does not depend on the network)
    home = tmp_path / "home"
    fails([pf, "SELECT 1"], "error: no trace processor binary: give --tp-bin (or TRACE_PIPE_TP_BIN), or let the "
          "perfetto package download one, which failed: curl: ",
          env={"TRACE_PIPE_TP_BIN": "", "HOME": str(home), "XDG_DATA_HOME": str(home),
               "https_proxy": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"})
    data = Path(pf).read_bytes()
    cut = tmp_path / "cut.pftrace"
    cut.write_bytes(data[: len(data) // 2])
    fails([str(cut), "--preset", "requests"], f"error: {cut}: not a whole Perfetto trace: byte ")
    refused((str(tmp_path / "empty.pftrace"), "SELECT 1"), f"error: {tmp_path / 'empty.pftrace'}: no such file")
    (tmp_path / "empty.pftrace").write_bytes(b"")
    refused((str(tmp_path / "empty.pftrace"), "SELECT 1"),
            f"error: {tmp_path / 'empty.pftrace'}: not a whole Perfetto trace: empty file")
    junk = tmp_path / "junk.pftrace"
    junk.write_bytes(b"\x00\x01not a trace" * 100)
    refused((str(junk), "SELECT 1"), f"error: trace processor could not load {junk}: ")
    refused((pf, None), "error: --preset nope: no such preset (one of plays, replay, requests", preset="nope")
    refused((pf, "SELECT 1"), f"error: --tp-bin / TRACE_PIPE_TP_BIN: trace processor binary not found: {home / 'tp'}",
            tp_bin=str(home / "tp"))
    refused((pf, "SELECT 1"), "error: give SQL or --preset, not both", preset="plays")
    refused((pf, "SELECT 1"), "error: --csv and --json: choose one output", as_json=True)
    refused((pf, None), "error: give SQL or --preset NAME")
