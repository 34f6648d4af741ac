"""`replay --trace-format dynamo` on raw Dynamo request traces under the 1.6 rules (the default)
equals ai-dynamo 1.6.1 replaying the same raw files with its own `dynamo` format, whose loader is
AISimulate's (pipeline/raw_lowering.py); under `--dynamo-version 1.4` the exporter's lowering
stays. The oracle's numbers for every case are stored here (ORACLE, round_robin x 1); the slow
test reruns the oracle ($TRACE_PIPE_ORACLE16_PYTHON, default /work/oracle16/bin/python) and
compares every summary key and every per-request row."""

from __future__ import annotations

import gzip
import io
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from dynamo_records import SHARED, req, tool, write_jsonl
from replay_cases import agentic_records

from trace_pipe.cli.replay_cmd import run
from trace_pipe.pipeline import raw_lowering, readers
from trace_pipe.pipeline.errors import TraceError
from trace_pipe.pipeline.replay_input import load_input

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from parity_replay import SKIP16, compare_report  # noqa: E402

DRIVER = SHARED / "tools" / "dynamo16_replay.py"
ROW_TIMES = ("arrival_time_ms", "dispatched_at_ms", "first_admit_ms", "first_token_ms", "last_token_ms",
             "terminal_time_ms")
ROW_COUNTS = ("input_length", "requested_output_length", "output_length", "reused_input_tokens")
SUMMARY = ("duration_ms", "completed_requests", "mean_ttft_ms", "median_ttft_ms", "p99_ttft_ms", "mean_itl_ms",
           "mean_e2e_latency_ms", "prefix_cache_reused_ratio", "total_output_tokens")


# -- generated and hand-built raw traces ---------------------------------------------------------

def g3_records(seed: int, *, claude: bool = False, roots: int = 2, bs: int = 16) -> list[dict]:
    """A generated G3b trace (G3c with `claude`): root sessions whose turns are separated by tool
    calls; some turns spawn 1-3 parallel sub-agents that start while the spawning call still runs
    or just after it (siblings often at the same ms); the parent then waits for them (blocking) or
    carries on beside them (background). Prompts grow on a session prefix; ~10% lack a model."""
    rng = random.Random(seed)
    out: list[dict] = []
    n = 0

    def call(session, parent, t, hashes, model="m"):
        nonlocal n
        n += 1
        dur = rng.randint(200, 3000)
        hashes.extend(rng.randrange(1 << 40) for _ in range(rng.randint(1, 6)))
        rid = f"{session}-{n:03d}"
        r = req(rid, session, parent, t, t + dur, list(hashes), bs=bs, output_tokens=rng.randint(1, 60),
                model=model if rng.random() < 0.9 else None)
        r["request"]["replay"]["input_length"] = bs * (len(hashes) - 1) + rng.randint(1, bs)
        out.append(r)
        return rid, t + dur

    pending = []  # blocking Agent tools whose consumer is the parent's next call
    for k in range(roots):
        root = f"root{k}"
        t = rng.randint(0, 2000)
        hashes = [1000 + k, 2000 + k]
        for turn in range(rng.randint(3, 6)):
            rid, end = call(root, None, t, hashes)
            t = end
            if turn in (1, 3) and rng.random() < 0.9:
                st0 = end - rng.randint(0, 150) if rng.random() < 0.5 else end + rng.randint(0, 40)
                blocking = rng.random() < 0.7
                last_end = st0
                subs = []
                for j in range(rng.randint(1, 3)):
                    sub = f"{root}.t{turn}.a{j}"
                    subs.append(sub)
                    st = st0 + (0 if rng.random() < 0.5 else rng.randint(1, 20))
                    sh = [7, 8] + hashes[:2]
                    for _ in range(rng.randint(1, 3)):
                        _, st = call(sub, root, st, sh, model="small")
                        s = st + rng.randint(0, 20)
                        e = s + rng.randint(5, 400)
                        out.append(tool(sub, f"{sub}-tc{st}", "grep", s, e))
                        st = e + rng.randint(0, 40)
                    last_end = max(last_end, st)
                nxt = (last_end + rng.randint(1, 60)) if blocking else t + rng.randint(10, 300)
                if claude:
                    for sub in subs:
                        link = {"source_request_id": rid, "consumer_request_id": None, "child_session_id": sub,
                                "execution_mode": "blocking" if blocking else "background"}
                        out.append(tool(root, f"{root}-agent-{sub}", "Agent", end, nxt, claude=link))
                        if blocking:
                            pending.append((root, nxt, link))
                t = nxt
            elif rng.random() < 0.7:
                s = t + rng.randint(0, 30)
                e = s + rng.randint(10, 1500)
                out.append(tool(root, f"{root}-tc{turn}", rng.choice(["bash", "read", "edit"]), s, e))
                t = e + rng.randint(0, 80)
            else:
                t += rng.randint(0, 600)
    starts = sorted((r["request"]["request_received_ms"], r["request"]["request_id"], r["agent_context"]["session_id"])
                    for r in out if r["event_type"] == "request_end")
    for session, at, link in pending:
        link["consumer_request_id"] = next((rid for s, rid, ss in starts if ss == session and s >= at), None)
    return out


def spawn_dispatch() -> list[dict]:
    """A child starts 50 ms into its parent's first call: 1.6.1 releases it 50 ms after that call's
    dispatch (the exporter waits for a call that has ended); the parent's call after the child
    joins on it; a tool sits in the parent's gap (its time is part of the sequence delay)."""
    return [req("p1", "root", None, 1000, 1100, [11, 12], bs=4), req("c1", "child", "root", 1050, 1300, [21, 22], bs=4),
            req("p2", "root", None, 1200, 1400, [11, 12, 13], bs=4),
            req("p3", "root", None, 1500, 1600, [11, 12, 13, 14], bs=4), tool("root", "t1", "ls", 1100, 1150)]


def claude_explicit() -> list[dict]:
    """G3c links that differ from the timestamp fallback: child C is spawned by p1 (the fallback
    would take p2, the parent call that started last before it) and joins p4 (the fallback: p3b);
    background child D is spawned by p2 (fallback: p3) and joins nothing; a link without a child
    session and one naming an absent session add no edge."""
    link = _link
    return [req("p1", "P", None, 1000, 1200, [1, 2], bs=4), req("p2", "P", None, 1250, 1400, [1, 2, 3], bs=4),
            req("p3", "P", None, 1500, 1600, [1, 2, 3, 4], bs=4), req("p3b", "P", None, 2420, 2440, [1, 2, 3, 4, 5], bs=4),
            req("p4", "P", None, 2500, 2600, [1, 2, 3, 4, 5, 6], bs=4),
            req("c1", "C", "P", 1300, 1700, [9, 1], bs=4), req("c2", "C", "P", 1750, 2400, [9, 1, 2], bs=4),
            req("d1", "D", "P", 1550, 1650, [8, 1], bs=4),
            tool("P", "agent-c", "Agent", 1200, 2450, **link("p1", "p4", "C", "blocking")),
            tool("P", "agent-d", "Agent", 1400, 1420, **link("p2", None, "D", "background")),
            tool("P", "plain", "Bash", 1410, 1490, **link("p2", "p3", None, "blocking")),
            tool("P", "gone", "Agent", 1410, 1490, **link("p2", None, "nobody", "background"))]


def _link(source, consumer, child, mode):
    return {"claude": {"source_request_id": source, "consumer_request_id": consumer, "child_session_id": child,
                       "execution_mode": mode}}


def claude_join(child_ends: tuple[int, ...], consumer_start: int = 1200, mode: str = "blocking") -> list[dict]:
    """A Claude Agent tool whose consumer p2 starts at `consumer_start`; the child's requests end
    at `child_ends` (the first one with 200 output tokens, so a join on it binds). 1.6.1 joins the
    consumer on the child request that ended last at or before the consumer started, and on none
    when every child request ended after it (the source read joins the last child request, with a
    negative delay)."""
    recs = [req("p1", "P", None, 1000, 1100, [1], bs=4), req("p2", "P", None, consumer_start, consumer_start + 100,
                                                              [1, 2], bs=4)]
    start = 1110
    for k, end in enumerate(child_ends):
        recs.append(req(f"c{k + 1}", "C", "P", start, end, [3] + [4] * k, bs=4, output_tokens=200 if k == 0 else 3))
        start = end + 5
    return recs + [tool("P", "t1", "Agent", 1100, 1155, **_link("p1", "p2", "C", mode))]


def g3a_sessions() -> list[dict]:
    """G3a rows that carry the run's `session_id`: 1.6.1 chains them by that id (the trajectory
    ids are not read), so two trajectories of one run are one sequential session."""
    def g3a(rid, traj, parent, s, e, h, run="run-1"):
        r = req(rid, traj, parent, s, e, h, bs=4, gen="G3a")
        r["agent_context"]["session_id"] = run
        return r
    return [g3a("a1", "ta", None, 1000, 1100, [11, 12]), g3a("a2", "tb", "ta", 1150, 1300, [11, 12, 13]),
            g3a("a3", "ta", None, 1400, 1450, [11, 12, 13]), g3a("b1", "tc", None, 1200, 1250, [5], run="run-2")]


def ties() -> list[dict]:
    """Equal start times everywhere: two roots at the same ms, sibling sub-agents spawned at the
    same ms by the same call (released in request_id order), a model-less request ("unknown")."""
    return [req("r-b", "B", None, 100, 200, [1], bs=4), req("r-a", "A", None, 100, 300, [1], bs=4),
            req("k2", "K2", "A", 150, 250, [2], bs=4), req("k1", "K1", "A", 150, 250, [2], bs=4, model=None),
            req("r-a2", "A", None, 400, 500, [1, 3], bs=4), req("r-b2", "B", None, 260, 270, [1, 4], bs=4)]


def context_free() -> list[dict]:
    return [req("x1", None, None, 1000, 1100, [11, 12], bs=4), req("x2", None, None, 1040, 1300, [11, 12, 13], bs=4),
            req("x3", None, None, 1500, 1510, [6], bs=4)]


def _files(tmp: Path, name: str, records: list[dict], parts: int = 1, gz: bool = False) -> list[str]:
    out = []
    size = -(-len(records) // parts)
    for i in range(parts):
        p = write_jsonl(tmp / f"{name}.{i}.jsonl", records[i * size:(i + 1) * size], envelope=gz)
        if gz:
            z = p.with_suffix(".jsonl.gz")
            z.write_bytes(gzip.compress(p.read_bytes()))
            p.unlink()
            p = z
        out.append(str(p))
    return out


# name -> (records, engine args, arrival speedup, files, gzip)
CASES = {
    "spawn_dispatch": (spawn_dispatch, {"block_size": 4}, 1.0, 1, False),
    "claude_explicit": (claude_explicit, {"block_size": 4}, 1.0, 1, False),
    "claude_join_last_done": (lambda: claude_join((1150, 2250)), {"block_size": 4}, 1.0, 1, False),
    "claude_join_at_start": (lambda: claude_join((1200, 2250)), {"block_size": 4}, 1.0, 1, False),
    "claude_join_none": (lambda: claude_join((2250,)), {"block_size": 4}, 1.0, 1, False),
    "claude_join_background": (lambda: claude_join((1150,), mode="background"), {"block_size": 4}, 1.0, 1, False),
    "g3a_sessions": (g3a_sessions, {"block_size": 4}, 1.0, 1, False),
    "ties": (ties, {"block_size": 4}, 1.0, 1, False),
    "context_free": (context_free, {"block_size": 4}, 1.0, 1, False),
    "g3b_seed0": (lambda: g3_records(0), {"block_size": 64}, 1.0, 1, False),
    "g3b_seed5_bs16": (lambda: g3_records(5), {"block_size": 16}, 1.0, 1, False),
    "g3c_seed5": (lambda: g3_records(5, claude=True), {"block_size": 64}, 1.0, 1, False),
    "g3b_seed11_two_gz_files": (lambda: g3_records(11, roots=3), {"block_size": 64}, 1.0, 2, True),
    "g3b_seed4_speedup2": (lambda: g3_records(4), {"block_size": 64}, 2.0, 1, False),
    "replay_cases_seed3": (lambda: agentic_records(3), {"block_size": 2}, 1.0, 1, False),
}


def case_files(tmp: Path, name: str) -> list[str]:
    make, _eng, _speed, parts, gz = CASES[name]
    return _files(tmp, name, make(), parts, gz)


def ours(tmp: Path, name: str, version: str | None = None) -> tuple[dict, list[dict]]:
    _make, eng, speed, _parts, _gz = CASES[name]
    rj, jl = tmp / f"{name}.ours.json", tmp / f"{name}.ours.jsonl"
    rep, _res = run(case_files(tmp, name), trace_format="dynamo", extra_engine_args=json.dumps(eng),
                    arrival_speedup_ratio=speed, report_json=str(rj), report_jsonl=str(jl), dynamo_version=version,
                    out=io.StringIO(), err=io.StringIO(), progress=False)
    return rep, [json.loads(x) for x in jl.read_text().splitlines()]


def row_numbers(rows: list[dict]) -> dict[str, list]:
    """Per-request numbers by request_id; 1.6.1's plain (context-free) rows carry only a random
    uuid, so a trace with any unnamed row is keyed by position in the numbers' order."""
    nums = [[r[k] for k in ROW_TIMES + ROW_COUNTS] for r in rows]
    if all(r.get("request_id") for r in rows):
        return {r["request_id"]: n for r, n in zip(rows, nums)}
    return {f"#{i}": n for i, n in enumerate(sorted(nums))}


def assert_close(got, want, what: str) -> None:
    assert len(got) == len(want), (what, got, want)
    for k, (x, y) in enumerate(zip(got, want)):
        assert (x is None if y is None else x == pytest.approx(y, rel=1e-9, abs=1e-9)), (what, k, x, y)


# -- stored oracle numbers (ai-dynamo 1.6.1, round_robin x 1, dynamo16_replay.py --trace-format dynamo)

ORACLE: dict = {
    "claude_explicit": {
        "source": {"format": "dynamo.request.trace.v1", "digest": "requests:8;tools:4"},
        "summary": {"duration_ms": 1227.9764379999997, "completed_requests": 8, "mean_ttft_ms": 19.374051874999978, "median_ttft_ms": 16.562160000000006, "p99_ttft_ms": 38.93578699999995, "mean_itl_ms": 6.274581499999993, "mean_e2e_latency_ms": 44.47237787499996, "prefix_cache_reused_ratio": 0.5925925925925926, "total_output_tokens": 40},
        "rows": {
            "c1": [300.0, 300.0, 300.0, 316.622914, 339.61752599999994, 339.61752599999994, 8, 5, 5, 0],
            "c2": [389.61752599999994, 389.61752599999994, 389.61752599999994, 406.17968599999995, 445.835111, 445.835111, 12, 5, 5, 8],
            "d1": [389.617526, 389.617526, 406.17968599999995, 428.55331299999995, 451.585, 451.585, 8, 5, 5, 0],
            "p1": [0.0, 0.0, 0.0, 16.622913999999998, 39.617526000000005, 39.617526000000005, 8, 5, 5, 0],
            "p2": [89.617526, 89.617526, 89.617526, 106.179686, 129.18748200000002, 129.18748200000002, 12, 5, 5, 8],
            "p3": [229.18748200000002, 229.18748200000002, 229.18748200000002, 245.74964200000002, 268.770618, 268.770618, 16, 5, 5, 12],
            "p3b": [1088.770618, 1088.770618, 1088.770618, 1105.332778, 1128.366938, 1128.366938, 20, 5, 5, 16],
            "p4": [1188.366938, 1188.366938, 1188.366938, 1204.9290979999998, 1227.9764379999997, 1227.9764379999997, 24, 5, 5, 20],
        },
    },
    "claude_join_at_start": {
        "source": {"format": "dynamo.request.trace.v1", "digest": "requests:4;tools:1"},
        "summary": {"duration_ms": 1341.9960519999995, "completed_requests": 4, "mean_ttft_ms": 20.889554249999975, "median_ttft_ms": 16.562160000000006, "p99_ttft_ms": 33.87173699999994, "mean_itl_ms": 5.901273296650714, "mean_e2e_latency_ms": 329.23108399999984, "prefix_cache_reused_ratio": 0.3333333333333333, "total_output_tokens": 213},
        "rows": {
            "c1": [110.0, 110.0, 110.0, 126.56216, 1285.8614659999996, 1285.8614659999996, 4, 200, 200, 0],
            "c2": [1290.8614659999996, 1290.8614659999996, 1302.4236259999996, 1324.7332029999995, 1336.2461629999996, 1336.2461629999996, 8, 3, 3, 4],
            "p1": [0.0, 0.0, 0.0, 16.56216, 39.543587, 39.543587, 4, 5, 5, 0],
            "p2": [1285.8614659999996, 1285.8614659999996, 1285.8614659999996, 1302.4236259999996, 1341.9960519999995, 1341.9960519999995, 8, 5, 5, 4],
        },
    },
    "claude_join_background": {
        "source": {"format": "dynamo.request.trace.v1", "digest": "requests:3;tools:1"},
        "summary": {"duration_ms": 1375.4182379999995, "completed_requests": 3, "mean_ttft_ms": 16.562159999999984, "median_ttft_ms": 16.56216, "p99_ttft_ms": 16.562160000000006, "mean_itl_ms": 5.822586207729464, "mean_e2e_latency_ms": 418.32060833333315, "prefix_cache_reused_ratio": 0.25, "total_output_tokens": 210},
        "rows": {
            "c1": [110.0, 110.0, 110.0, 126.56216, 1285.8614659999996, 1285.8614659999996, 4, 200, 200, 0],
            "p1": [0.0, 0.0, 0.0, 16.56216, 39.543587, 39.543587, 4, 5, 5, 0],
            "p2": [1335.8614659999996, 1335.8614659999996, 1335.8614659999996, 1352.4236259999996, 1375.4182379999995, 1375.4182379999995, 8, 5, 5, 4],
        },
    },
    "claude_join_last_done": {
        "source": {"format": "dynamo.request.trace.v1", "digest": "requests:4;tools:1"},
        "summary": {"duration_ms": 1375.4182379999995, "completed_requests": 4, "mean_ttft_ms": 16.562159999999977, "median_ttft_ms": 16.56216, "p99_ttft_ms": 16.562160000000006, "mean_itl_ms": 5.821870827751192, "mean_e2e_latency_ms": 320.7549107499999, "prefix_cache_reused_ratio": 0.3333333333333333, "total_output_tokens": 213},
        "rows": {
            "c1": [110.0, 110.0, 110.0, 126.56216, 1285.8614659999996, 1285.8614659999996, 4, 200, 200, 0],
            "c2": [1290.8614659999996, 1290.8614659999996, 1290.8614659999996, 1307.4236259999996, 1318.9192839999996, 1318.9192839999996, 8, 3, 3, 4],
            "p1": [0.0, 0.0, 0.0, 16.56216, 39.543587, 39.543587, 4, 5, 5, 0],
            "p2": [1335.8614659999996, 1335.8614659999996, 1335.8614659999996, 1352.4236259999996, 1375.4182379999995, 1375.4182379999995, 8, 5, 5, 4],
        },
    },
    "claude_join_none": {
        "source": {"format": "dynamo.request.trace.v1", "digest": "requests:3;tools:1"},
        "summary": {"duration_ms": 1302.4582299999997, "completed_requests": 3, "mean_ttft_ms": 19.895493333333338, "median_ttft_ms": 16.562160000000006, "p99_ttft_ms": 26.562160000000006, "mean_itl_ms": 5.9029309806763255, "mean_e2e_latency_ms": 427.197731, "prefix_cache_reused_ratio": 0.25, "total_output_tokens": 210},
        "rows": {
            "c1": [110.0, 110.0, 110.0, 126.56216, 1302.4582299999997, 1302.4582299999997, 4, 200, 200, 0],
            "p1": [0.0, 0.0, 0.0, 16.56216, 39.543587, 39.543587, 4, 5, 5, 0],
            "p2": [139.543587, 139.543587, 143.796994, 166.105747, 189.134963, 189.134963, 8, 5, 5, 4],
        },
    },
    "context_free": {
        "source": None,
        "summary": {"duration_ms": 539.5435869999999, "completed_requests": 3, "mean_ttft_ms": 16.582411333333315, "median_ttft_ms": 16.56216, "p99_ttft_ms": 16.622913999999998, "mean_itl_ms": 5.748652916666662, "mean_e2e_latency_ms": 39.57702299999996, "prefix_cache_reused_ratio": 0.3333333333333333, "total_output_tokens": 15},
        "rows": {
            "#0": [0.0, None, 0.0, 16.622913999999998, 39.617526000000005, 39.617526000000005, 8, 5, 5, 0],
            "#1": [40.0, None, 40.0, 56.56216, 79.56995599999999, 79.56995599999999, 12, 5, 5, 8],
            "#2": [500.0, None, 500.0, 516.56216, 539.5435869999999, 539.5435869999999, 4, 5, 5, 0],
        },
    },
    "g3a_sessions": {
        "source": {"format": "dynamo.request.trace.v1", "digest": "requests:4;tools:0"},
        "summary": {"duration_ms": 279.113543, "completed_requests": 4, "mean_ttft_ms": 19.16637475, "median_ttft_ms": 16.622913999999998, "p99_ttft_ms": 26.91826499999999, "mean_itl_ms": 6.784611937499999, "mean_e2e_latency_ms": 46.3048225, "prefix_cache_reused_ratio": 0.4444444444444444, "total_output_tokens": 20},
        "rows": {
            "a1": [0.0, 0.0, 0.0, 16.622913999999998, 39.617526000000005, 39.617526000000005, 8, 5, 5, 0],
            "a2": [89.617526, 89.617526, 89.617526, 106.179686, 129.18748200000002, 129.18748200000002, 12, 5, 5, 8],
            "a3": [229.18748200000002, 229.18748200000002, 233.796994, 256.105747, 279.113543, 279.113543, 12, 5, 5, 8],
            "b1": [200.0, 200.0, 200.0, 216.56216, 256.105747, 256.105747, 4, 5, 5, 0],
        },
    },
    "g3b_seed0": {
        "source": {"format": "dynamo.request.trace.v1", "digest": "requests:29;tools:23"},
        "summary": {"duration_ms": 18710.356971, "completed_requests": 29, "mean_ttft_ms": 22.95841444827582, "median_ttft_ms": 18.773099000000002, "p99_ttft_ms": 37.08298500000001, "mean_itl_ms": 6.211216048090512, "mean_e2e_latency_ms": 174.38357810344795, "prefix_cache_reused_ratio": 0.54421768707483, "total_output_tokens": 736},
        "rows": {
            "root0-001": [764.0, 764.0, 764.0, 781.139867, 924.710686, 924.710686, 42, 26, 26, 0],
            "root0-002": [1290.710686, 1290.710686, 1290.710686, 1308.322741, 1603.019798, 1603.019798, 73, 49, 49, 0],
            "root0-003": [2906.0197980000003, 2906.0197980000003, 2911.413376, 2935.3316339999997, 2964.1569759999998, 2964.1569759999998, 173, 6, 6, 64],
            "root0-004": [2965.1569759999998, 2965.1569759999998, 2969.908204, 2993.8515039999997, 3323.621475, 3323.621475, 239, 52, 52, 128],
            "root0-009": [3392.621475, 3392.621475, 3396.571318, 3420.741291, 3675.1125079999997, 3675.1125079999997, 318, 42, 42, 192],
            "root0-010": [6128.469405000001, 6128.469405000001, 6128.469405000001, 6147.227196000001, 6286.221648999999, 6286.221648999999, 404, 22, 22, 256],
            "root0.t3.a0-005": [5703.156976, 5703.156976, 5703.156976, 5721.930075, 5761.4942630000005, 5761.4942630000005, 149, 5, 5, 0],
            "root0.t3.a0-006": [5794.4942630000005, 5794.4942630000005, 5794.4942630000005, 5812.762627, 5841.5262330000005, 5841.5262330000005, 244, 6, 6, 128],
            "root0.t3.a0-007": [6201.5262330000005, 6201.5262330000005, 6204.838081, 6228.501313, 6268.936142999999, 6268.936142999999, 284, 8, 8, 192],
            "root0.t3.a1-008": [5707.156976, 5707.156976, 5721.930075, 5744.239961, 5784.469405000001, 5784.469405000001, 68, 8, 8, 64],
            "root1-011": [0.0, 0.0, 0.0, 18.100323000000003, 288.1926030000001, 288.1926030000001, 105, 48, 48, 0],
            "root1-012": [1386.192603, 1386.192603, 1388.740787, 1413.151278, 1551.305562, 1551.305562, 206, 25, 25, 64],
            "root1-020": [7746.305562, 7746.305562, 7746.305562, 7763.217242, 7935.779567000003, 7935.779567000003, 219, 31, 31, 192],
            "root1-021": [9434.779567000003, 9434.779567000003, 9434.779567000003, 9452.284928000003, 9521.328392000003, 9521.328392000003, 258, 13, 13, 192],
            "root1-028": [18226.328392000003, 18226.328392000003, 18226.328392000003, 18244.184473000005, 18365.109482000003, 18365.109482000003, 345, 22, 22, 256],
            "root1-029": [18675.109482000003, 18675.109482000003, 18675.109482000003, 18693.072392000002, 18710.356971, 18710.356971, 416, 4, 4, 320],
            "root1.t1.a0-013": [2807.192603, 2807.192603, 2818.728444, 2842.343338, 2993.8515039999997, 2993.8515039999997, 111, 21, 21, 64],
            "root1.t1.a0-014": [3223.8515039999997, 3223.8515039999997, 3224.33803, 3248.6576919999998, 3317.86654, 3317.86654, 199, 13, 13, 64],
            "root1.t1.a1-015": [2801.192603, 2801.192603, 2801.192603, 2818.728444, 3224.33803, 3224.33803, 68, 59, 59, 0],
            "root1.t1.a1-016": [3338.33803, 3338.33803, 3338.33803, 3356.33147, 3507.2306009999993, 3507.2306009999993, 162, 24, 24, 64],
            "root1.t1.a2-017": [2816.192603, 2816.192603, 2818.728444, 2842.343338, 2958.3966859999996, 2958.3966859999996, 108, 18, 18, 64],
            "root1.t1.a2-018": [3177.3966859999996, 3177.3966859999996, 3178.126432, 3201.270198, 3271.74344, 3271.74344, 122, 10, 10, 64],
            "root1.t1.a2-019": [3524.74344, 3524.74344, 3530.2597149999997, 3554.0258289999997, 3663.595583, 3663.595583, 163, 20, 20, 64],
            "root1.t3.a0-022": [9665.779567000003, 9665.779567000003, 9670.660836000003, 9693.241131000002, 9785.240179000002, 9785.240179000002, 86, 17, 17, 64],
            "root1.t3.a0-023": [9923.240179000002, 9923.240179000002, 9923.240179000002, 9940.288748000003, 10251.490798, 10251.490798, 100, 49, 49, 64],
            "root1.t3.a0-024": [10490.490798, 10490.490798, 10490.490798, 10509.110850000001, 10831.218536999999, 10831.218536999999, 203, 57, 57, 64],
            "root1.t3.a1-025": [9653.779567000003, 9653.779567000003, 9653.779567000003, 9670.660836000003, 9877.174539000001, 9877.174539000001, 89, 34, 34, 64],
            "root1.t3.a1-026": [10004.174539000001, 10004.174539000001, 10009.234574000002, 10032.683933000002, 10044.190610000001, 10044.190610000001, 143, 3, 3, 64],
            "root1.t3.a1-027": [10150.190610000001, 10150.190610000001, 10153.372937000002, 10176.640490000002, 10424.036128, 10424.036128, 195, 44, 44, 128],
        },
    },
    "g3b_seed11_two_gz_files": {
        "source": {"format": "dynamo.request.trace.v1", "digest": "requests:24;tools:18"},
        "summary": {"duration_ms": 9588.301502999993, "completed_requests": 24, "mean_ttft_ms": 20.83851287499967, "median_ttft_ms": 18.58945300000005, "p99_ttft_ms": 35.15186799999992, "mean_itl_ms": 5.870424333780155, "mean_e2e_latency_ms": 203.31086924999923, "prefix_cache_reused_ratio": 0.5157509157509158, "total_output_tokens": 770},
        "rows": {
            "root0-001": [785.0, 785.0, 785.0, 803.191969, 1039.858519, 1039.858519, 111, 39, 39, 0],
            "root0-002": [2478.858519, 2478.858519, 2484.545203999998, 2508.611569999998, 2623.735248999998, 2623.735248999998, 183, 21, 21, 64],
            "root0-005": [6159.735248999998, 6159.735248999998, 6159.735248999998, 6177.2863309999975, 6453.3539150000015, 6453.3539150000015, 197, 49, 49, 128],
            "root0-006": [6547.3539150000015, 6547.3539150000015, 6547.3539150000015, 6564.554664000001, 6829.214177999999, 6829.214177999999, 238, 47, 47, 192],
            "root0-010": [7122.214177999999, 7122.214177999999, 7122.214177999999, 7140.864833, 7227.228255000001, 7227.228255000001, 333, 16, 16, 192],
            "root0-011": [8521.228255000002, 8521.228255000002, 8521.228255000002, 8538.261611000002, 8727.642211999999, 8727.642211999999, 355, 31, 31, 320],
            "root0.t1.a0-003": [2770.858519, 2770.858519, 2776.3745549999976, 2794.8722299999977, 3105.2730589999974, 3105.2730589999974, 131, 55, 55, 0],
            "root0.t1.a0-004": [3460.2730589999974, 3460.2730589999974, 3460.2730589999974, 3477.3672729999976, 3626.8489819999972, 3626.8489819999972, 167, 27, 27, 128],
            "root0.t3.a0-007": [8634.353915000002, 8634.353915000002, 8636.160289000001, 8658.481658, 8802.320466999998, 8802.320466999998, 68, 26, 26, 64],
            "root0.t3.a0-008": [8895.320466999998, 8895.320466999998, 8895.320466999998, 8912.673479999998, 8935.658717999997, 8935.658717999997, 120, 5, 5, 64],
            "root0.t3.a0-009": [9270.658717999997, 9270.658717999997, 9270.658717999997, 9289.217574999997, 9588.301502999993, 9588.301502999993, 199, 53, 53, 64],
            "root1-012": [0.0, 0.0, 0.0, 17.947646000000002, 46.672885, 46.672885, 95, 6, 6, 0],
            "root1-013": [580.672885, 580.672885, 580.672885, 598.0563609999999, 770.4688209999998, 770.4688209999998, 122, 31, 31, 64],
            "root1-014": [961.4688209999998, 961.4688209999998, 964.0929609999998, 988.0474179999999, 1292.9801059999995, 1292.9801059999995, 176, 51, 51, 64],
            "root1-015": [2725.9801059999995, 2725.9801059999995, 2730.335331999998, 2747.627428999998, 2776.3745549999976, 2776.3745549999976, 180, 6, 6, 128],
            "root1-016": [3114.3745549999976, 3114.3745549999976, 3114.3745549999976, 3133.3161029999974, 3415.3659709999974, 3415.3659709999974, 288, 50, 50, 128],
            "root2-017": [1247.0, 1247.0, 1252.6272689999996, 1275.7165369999996, 1419.3388549999993, 1419.3388549999993, 55, 26, 26, 0],
            "root2-018": [1913.3388549999993, 1913.3388549999993, 1913.3388549999993, 1931.9283079999993, 1972.1591439999995, 1972.1591439999995, 137, 8, 8, 0],
            "root2-019": [2363.1591439999993, 2363.1591439999993, 2363.1591439999993, 2381.015224999999, 2566.233013999998, 2566.233013999998, 217, 30, 30, 128],
            "root2-020": [2690.233013999998, 2690.233013999998, 2690.233013999998, 2707.3272279999983, 2730.335331999998, 2730.335331999998, 231, 5, 5, 192],
            "root2.t3.a0-021": [4722.233013999998, 4722.233013999998, 4734.104353999997, 4757.384881999998, 4918.581463999998, 4918.581463999998, 97, 29, 29, 64],
            "root2.t3.a1-022": [4733.233013999998, 4733.233013999998, 4734.104353999997, 4757.384881999998, 5085.379779999995, 5085.379779999995, 99, 58, 58, 64],
            "root2.t3.a1-023": [5393.379779999995, 5393.379779999995, 5393.379779999995, 5412.045737999994, 5705.395123999998, 5705.395123999998, 206, 52, 52, 64],
            "root2.t3.a2-024": [4716.233013999998, 4716.233013999998, 4716.233013999998, 4734.104353999997, 5027.901749999995, 5027.901749999995, 90, 49, 49, 0],
        },
    },
    "g3b_seed4_speedup2": {
        "source": {"format": "dynamo.request.trace.v1", "digest": "requests:22;tools:17"},
        "summary": {"duration_ms": 8081.940217000002, "completed_requests": 22, "mean_ttft_ms": 22.474751772727213, "median_ttft_ms": 18.4670900000001, "p99_ttft_ms": 41.1959489999997, "mean_itl_ms": 6.15348452768167, "mean_e2e_latency_ms": 184.14357254545476, "prefix_cache_reused_ratio": 0.5365853658536586, "total_output_tokens": 600},
        "rows": {
            "root0-001": [0.0, 0.0, 0.0, 18.268364, 115.95781399999998, 115.95781399999998, 116, 18, 18, 0],
            "root0-002": [178.45781399999998, 178.45781399999998, 178.45781399999998, 196.374935, 506.8480699999999, 506.8480699999999, 157, 55, 55, 64],
            "root0-008": [3322.34807, 3322.34807, 3322.34807, 3339.655395, 3356.903671, 3356.903671, 181, 4, 4, 128],
            "root0-009": [3887.903671, 3887.903671, 3887.903671, 3905.485237, 4187.3105380000015, 4187.3105380000015, 199, 50, 50, 128],
            "root0-011": [5650.8105380000015, 5650.8105380000015, 5650.8105380000015, 5668.1330910000015, 5696.897212000002, 5696.897212000002, 246, 6, 6, 192],
            "root0.t1.a0-003": [774.957814, 774.957814, 776.435785, 803.0431619999999, 930.6595129999998, 930.6595129999998, 146, 20, 20, 64],
            "root0.t1.a0-004": [960.1595129999998, 960.1595129999998, 965.1915979999998, 988.5288719999998, 1011.5942329999998, 1011.5942329999998, 199, 5, 5, 128],
            "root0.t1.a1-005": [774.457814, 774.457814, 776.435785, 803.0431619999999, 1212.9720699999996, 1212.9720699999996, 159, 60, 60, 0],
            "root0.t1.a1-006": [1236.9720699999996, 1236.9720699999996, 1241.7349049999996, 1265.1760709999996, 1317.0543669999997, 1317.0543669999997, 206, 10, 10, 128],
            "root0.t1.a2-007": [774.457814, 774.457814, 776.435785, 803.0431619999999, 814.5706939999999, 814.5706939999999, 108, 3, 3, 64],
            "root0.t3.a0-010": [4593.403671, 4593.403671, 4593.403671, 4610.756684, 4696.955575000001, 4696.955575000001, 120, 16, 16, 64],
            "root1-012": [592.5, 592.5, 592.5, 609.868244, 808.8091159999999, 808.8091159999999, 57, 32, 32, 0],
            "root1-013": [906.3091159999999, 906.3091159999999, 906.6793249999998, 930.6595129999998, 1340.070605, 1340.070605, 113, 60, 60, 0],
            "root1-016": [2322.070605, 2322.070605, 2322.070605, 2340.216747, 2363.212697, 2363.212697, 172, 5, 5, 64],
            "root1-017": [2828.212697, 2828.212697, 2828.212697, 2846.679787, 3059.786684000001, 3059.786684000001, 257, 35, 35, 128],
            "root1-021": [6947.786684000001, 6947.786684000001, 6947.786684000001, 6965.566484000001, 7241.987516000003, 7241.987516000003, 340, 49, 49, 256],
            "root1-022": [7959.987516000003, 7959.987516000003, 7959.987516000003, 7978.210040000003, 8081.940217000002, 8081.940217000002, 433, 19, 19, 320],
            "root1.t1.a0-014": [1073.809116, 1073.809116, 1092.4389509999996, 1115.0050649999996, 1126.5360469999996, 1126.5360469999996, 84, 3, 3, 64],
            "root1.t1.a1-015": [1067.309116, 1067.309116, 1069.1610979999996, 1092.4389509999996, 1432.0033170000002, 1432.0033170000002, 67, 54, 54, 0],
            "root1.t3.a0-018": [3025.712697, 3025.712697, 3030.810523000001, 3054.025106000001, 3249.453136000002, 3249.453136000002, 127, 35, 35, 64],
            "root1.t3.a0-019": [3354.953136000002, 3354.953136000002, 3356.903671, 3375.447231, 3593.992907, 3593.992907, 198, 39, 39, 64],
            "root1.t3.a0-020": [3701.992907, 3701.992907, 3701.992907, 3719.391615, 3840.214976, 3840.214976, 251, 22, 22, 192],
        },
    },
    "g3b_seed5_bs16": {
        "source": {"format": "dynamo.request.trace.v1", "digest": "requests:29;tools:24"},
        "summary": {"duration_ms": 12846.386369999995, "completed_requests": 29, "mean_ttft_ms": 24.226912241379516, "median_ttft_ms": 18.42121700000007, "p99_ttft_ms": 46.959487999999965, "mean_itl_ms": 6.154173989498237, "mean_e2e_latency_ms": 206.0933642758617, "prefix_cache_reused_ratio": 0.6159110350727117, "total_output_tokens": 886},
        "rows": {
            "root0-001": [67.0, 67.0, 70.324072, 94.406296, 303.210945, 303.210945, 119, 37, 37, 0],
            "root0-002": [1124.210945, 1124.210945, 1124.210945, 1142.036511, 1246.129455, 1246.129455, 199, 19, 19, 112],
            "root0-011": [8710.129455, 8710.129455, 8715.458004999999, 8738.445314999999, 8837.742913999997, 8837.742913999997, 236, 18, 18, 192],
            "root0-012": [9675.742913999997, 9675.742913999997, 9675.742913999997, 9692.624182999996, 9825.880403999994, 9825.880403999994, 249, 24, 24, 224],
            "root0-015": [9862.880403999994, 9862.880403999994, 9868.582936, 9891.301867000002, 9961.140475000002, 9961.140475000002, 270, 13, 13, 240],
            "root0.t1.a0-003": [1905.210945, 1905.210945, 1905.210945, 1923.632162, 1998.740424, 1998.740424, 73, 11, 11, 0],
            "root0.t1.a0-004": [2193.740424, 2193.740424, 2193.740424, 2211.596505, 2489.0491309999998, 2489.0491309999998, 153, 46, 46, 64],
            "root0.t1.a1-005": [1906.210945, 1906.210945, 1923.632162, 1946.50592, 2172.264239, 2172.264239, 103, 40, 40, 64],
            "root0.t1.a1-006": [2581.264239, 2581.264239, 2588.6096939999998, 2611.6696079999997, 2806.4691109999994, 2806.4691109999994, 147, 28, 28, 96],
            "root0.t1.a1-007": [3023.4691109999994, 3023.4691109999994, 3023.4691109999994, 3040.8525869999994, 3150.742163999999, 3150.742163999999, 202, 20, 20, 144],
            "root0.t1.a2-008": [1905.210945, 1905.210945, 1905.210945, 1923.632162, 2108.813827, 2108.813827, 117, 30, 30, 64],
            "root0.t1.a2-009": [2442.813827, 2442.813827, 2448.405868, 2471.599972, 2506.378499, 2506.378499, 172, 7, 7, 112],
            "root0.t1.a2-010": [2571.378499, 2571.378499, 2571.378499, 2588.6096939999998, 2818.1224569999995, 2818.1224569999995, 208, 31, 31, 160],
            "root0.t3.a0-013": [12538.742913999997, 12538.742913999997, 12551.248274999996, 12574.734048999997, 12644.325721999996, 12644.325721999996, 144, 13, 13, 64],
            "root0.t3.a1-014": [12533.742913999997, 12533.742913999997, 12533.742913999997, 12551.248274999996, 12846.386369999995, 12846.386369999995, 130, 49, 49, 64],
            "root1-016": [0.0, 0.0, 0.0, 18.421217, 337.867827, 337.867827, 126, 53, 53, 0],
            "root1-017": [888.867827, 888.867827, 888.867827, 906.52562, 952.762798, 952.762798, 188, 9, 9, 112],
            "root1-022": [7159.469110999999, 7159.469110999999, 7159.469110999999, 7177.645802999999, 7485.281714000001, 7485.281714000001, 286, 54, 54, 176],
            "root1-023": [8500.281714, 8500.281714, 8500.281714, 8517.802314, 8802.993388999997, 8802.993388999997, 339, 47, 47, 272],
            "root1.t1.a0-018": [2643.867827, 2643.867827, 2652.4780039999996, 2676.827315, 2969.7803029999995, 2969.7803029999995, 160, 48, 48, 64],
            "root1.t1.a1-019": [2625.867827, 2625.867827, 2629.1119759999997, 2652.4780039999996, 2759.395159, 2759.395159, 101, 16, 16, 32],
            "root1.t1.a1-020": [2812.395159, 2812.395159, 2818.1224569999995, 2841.86347, 2946.651007, 2946.651007, 192, 19, 19, 96],
            "root1.t1.a2-021": [2629.867827, 2629.867827, 2652.4780039999996, 2676.827315, 2806.4691109999994, 2806.4691109999994, 101, 23, 23, 64],
            "root1.t3.a0-024": [9391.281714, 9391.281714, 9394.935010000001, 9417.252620000001, 9642.489911, 9642.489911, 68, 40, 40, 64],
            "root1.t3.a0-025": [9828.489911, 9828.489911, 9828.489911, 9845.538480000001, 10105.989913, 10105.989913, 100, 40, 40, 64],
            "root1.t3.a0-026": [10507.989913, 10507.989913, 10513.231993, 10535.923010999999, 10535.923010999999, 10535.923010999999, 123, 1, 1, 96],
            "root1.t3.a1-027": [9378.281714, 9378.281714, 9378.281714, 9394.935010000001, 9619.442983, 9619.442983, 74, 37, 37, 64],
            "root1.t3.a1-028": [9961.442983, 9961.442983, 9966.904782000001, 9990.09847, 10308.064974999998, 10308.064974999998, 125, 56, 56, 64],
            "root1.t3.a1-029": [10386.064974999998, 10386.064974999998, 10386.064974999998, 10403.463682999998, 10744.116308999997, 10744.116308999997, 171, 57, 57, 112],
        },
    },
    "g3c_seed5": {
        "source": {"format": "dynamo.request.trace.v1", "digest": "requests:29;tools:34"},
        "summary": {"duration_ms": 12841.576441000001, "completed_requests": 29, "mean_ttft_ms": 24.188537965517078, "median_ttft_ms": 18.91091299999971, "p99_ttft_ms": 47.14391699999942, "mean_itl_ms": 6.109358042007017, "mean_e2e_latency_ms": 204.73060148275877, "prefix_cache_reused_ratio": 0.5064157399486741, "total_output_tokens": 886},
        "rows": {
            "root0-001": [67.0, 67.0, 70.14194200000001, 94.20315800000002, 301.384544, 301.384544, 119, 37, 37, 0],
            "root0-002": [1122.384544, 1122.384544, 1122.384544, 1140.943401, 1244.4566939999997, 1244.4566939999997, 199, 19, 19, 64],
            "root0-011": [8708.456694, 8708.456694, 8713.437288999998, 8736.366906999998, 8834.357323999997, 8834.357323999997, 236, 18, 18, 192],
            "root0-012": [9672.357323999997, 9672.357323999997, 9672.357323999997, 9689.725567999996, 9822.054731999997, 9822.054731999997, 249, 24, 24, 192],
            "root0-015": [9859.054731999997, 9859.054731999997, 9862.084418999997, 9885.518116999998, 9954.637894999998, 9954.637894999998, 270, 13, 13, 192],
            "root0.t1.a0-003": [1903.384544, 1903.384544, 1903.384544, 1921.805761, 1996.4535510000003, 1996.4535510000003, 73, 11, 11, 0],
            "root0.t1.a0-004": [2191.4535510000005, 2191.4535510000005, 2191.4535510000005, 2209.3096320000004, 2486.190567, 2486.190567, 153, 46, 46, 64],
            "root0.t1.a1-005": [1904.384544, 1904.384544, 1921.805761, 1944.649864, 2168.9846110000003, 2168.9846110000003, 103, 40, 40, 64],
            "root0.t1.a1-006": [2577.9846110000003, 2577.9846110000003, 2586.1567059999998, 2609.6720159999995, 2802.143999, 2802.143999, 147, 28, 28, 64],
            "root0.t1.a1-007": [3019.143999, 3019.143999, 3019.143999, 3036.771299, 3146.0387550000005, 3146.0387550000005, 202, 20, 20, 128],
            "root0.t1.a2-008": [1903.384544, 1903.384544, 1903.384544, 1921.805761, 2105.7669920000003, 2105.7669920000003, 117, 30, 30, 64],
            "root0.t1.a2-009": [2439.7669920000003, 2439.7669920000003, 2445.017064, 2468.913249, 2503.437916, 2503.437916, 172, 7, 7, 64],
            "root0.t1.a2-010": [2568.437916, 2568.437916, 2568.437916, 2586.1567059999998, 2813.66736, 2813.66736, 208, 31, 31, 128],
            "root0.t3.a0-013": [12535.357323999997, 12535.357323999997, 12547.862684999996, 12571.328221999996, 12640.386211999998, 12640.386211999998, 144, 13, 13, 64],
            "root0.t3.a1-014": [12530.357323999997, 12530.357323999997, 12530.357323999997, 12547.862684999996, 12841.576441000001, 12841.576441000001, 130, 49, 49, 64],
            "root1-016": [0.0, 0.0, 0.0, 18.421217, 335.878778, 335.878778, 126, 53, 53, 0],
            "root1-017": [886.878778, 886.878778, 886.878778, 905.269418, 951.268734, 951.268734, 188, 9, 9, 64],
            "root1-022": [7155.143999, 7155.143999, 7155.143999, 7174.054912, 7479.129258999999, 7479.129258999999, 286, 54, 54, 128],
            "root1-023": [8494.129259, 8494.129259, 8494.129259, 8511.893805, 8794.087193999996, 8794.087193999996, 339, 47, 47, 256],
            "root1.t1.a0-018": [2641.8787780000002, 2641.8787780000002, 2650.745623999999, 2675.0226949999997, 2964.5581050000005, 2964.5581050000005, 160, 48, 48, 64],
            "root1.t1.a1-019": [2623.8787780000002, 2623.8787780000002, 2626.9476359999994, 2650.745623999999, 2755.9352339999996, 2755.9352339999996, 101, 16, 16, 0],
            "root1.t1.a1-020": [2808.9352339999996, 2808.9352339999996, 2813.66736, 2837.868686, 2941.555769, 2941.555769, 192, 19, 19, 64],
            "root1.t1.a2-021": [2627.8787780000002, 2627.8787780000002, 2650.745623999999, 2675.0226949999997, 2802.143999, 2802.143999, 101, 23, 23, 64],
            "root1.t3.a0-024": [9385.129259, 9385.129259, 9388.782555, 9411.088577999999, 9635.292979, 9635.292979, 68, 40, 40, 64],
            "root1.t3.a0-025": [9821.292979, 9821.292979, 9822.054731999997, 9839.103300999997, 10098.639756999999, 10098.639756999999, 100, 40, 40, 64],
            "root1.t3.a0-026": [10500.639756999999, 10500.639756999999, 10505.203899000004, 10528.352496000005, 10528.352496000005, 10528.352496000005, 123, 1, 1, 64],
            "root1.t3.a1-027": [9372.129259, 9372.129259, 9372.129259, 9388.782555, 9612.311243, 9612.311243, 74, 37, 37, 64],
            "root1.t3.a1-028": [9954.311243, 9954.311243, 9954.637894999998, 9977.813148999998, 10294.086071000002, 10294.086071000002, 125, 56, 56, 64],
            "root1.t3.a1-029": [10372.086071000002, 10372.086071000002, 10372.086071000002, 10390.216939000002, 10729.631047, 10729.631047, 171, 57, 57, 64],
        },
    },
    "replay_cases_seed3": {
        "source": {"format": "dynamo.request.trace.v1", "digest": "requests:33;tools:24"},
        "summary": {"duration_ms": 10288.271547, "completed_requests": 33, "mean_ttft_ms": 18.565608151515104, "median_ttft_ms": 16.531789000000117, "p99_ttft_ms": 34.90293699999995, "mean_itl_ms": 6.255125143939348, "mean_e2e_latency_ms": 43.586108727272496, "prefix_cache_reused_ratio": 0.3939393939393939, "total_output_tokens": 165},
        "rows": {
            "r1": [23.0, 23.0, 28.06029, 50.373987, 73.390021, 73.390021, 4, 5, 5, 0],
            "r10": [6966.241175999999, 6966.241175999999, 6966.241175999999, 6982.772964999998, 7005.775816999998, 7005.775816999998, 4, 5, 5, 2],
            "r11": [10248.736906, 10248.736906, 10248.736906, 10265.268695, 10288.271547, 10288.271547, 4, 5, 5, 2],
            "r12": [0.0, 0.0, 0.0, 16.56216, 56.13541, 56.13541, 4, 5, 5, 0],
            "r13": [676.13541, 676.13541, 681.5171929999999, 703.8579699999999, 726.9382599999998, 726.9382599999998, 4, 5, 5, 2],
            "r14": [1078.93826, 1078.93826, 1082.4700489999998, 1104.7500789999997, 1127.7875329999995, 1127.7875329999995, 4, 5, 5, 2],
            "r15": [1300.7875329999995, 1300.7875329999995, 1300.7875329999995, 1317.3193219999994, 1340.3221739999994, 1340.3221739999994, 4, 5, 5, 2],
            "r16": [1421.3221739999994, 1421.3221739999994, 1421.3221739999994, 1437.8539629999993, 1460.8568149999994, 1460.8568149999994, 4, 5, 5, 2],
            "r17": [1065.93826, 1065.93826, 1065.93826, 1082.4700489999998, 1122.0343479999995, 1122.0343479999995, 4, 5, 5, 2],
            "r18": [2748.034347999999, 2748.034347999999, 2748.034347999999, 2764.5661369999993, 2787.5689889999994, 2787.5689889999994, 4, 5, 5, 2],
            "r19": [4005.034347999999, 4005.034347999999, 4005.034347999999, 4021.5661369999993, 4044.5689889999994, 4044.5689889999994, 4, 5, 5, 2],
            "r2": [140.390021, 140.390021, 140.390021, 156.952181, 179.95503300000001, 179.95503300000001, 4, 5, 5, 0],
            "r20": [4065.5689889999994, 4065.5689889999994, 4065.5689889999994, 4082.1007779999995, 4105.103629999999, 4105.103629999999, 4, 5, 5, 2],
            "r21": [4342.103629999999, 4342.103629999999, 4342.103629999999, 4358.635418999998, 4381.638270999998, 4381.638270999998, 4, 5, 5, 2],
            "r22": [8690.568989, 8690.568989, 8690.568989, 8707.100778, 8730.10363, 8730.10363, 4, 5, 5, 2],
            "r23": [9116.10363, 9116.10363, 9116.10363, 9132.635419, 9155.638271, 9155.638271, 4, 5, 5, 2],
            "r24": [1686.0, 1686.0, 1686.0, 1702.531789, 1725.534641, 1725.534641, 4, 5, 5, 2],
            "r25": [3280.534641, 3280.534641, 3280.534641, 3297.0664300000003, 3320.0692820000004, 3320.0692820000004, 4, 5, 5, 2],
            "r26": [3863.0692820000004, 3863.0692820000004, 3874.6010710000005, 3896.8811010000004, 3919.918555, 3919.918555, 4, 5, 5, 2],
            "r27": [4173.918555, 4173.918555, 4173.918555, 4190.450344, 4213.4531959999995, 4213.4531959999995, 4, 5, 5, 2],
            "r28": [4301.4531959999995, 4301.4531959999995, 4301.4531959999995, 4317.984984999999, 4340.987836999999, 4340.987836999999, 4, 5, 5, 2],
            "r29": [3858.0692820000004, 3858.0692820000004, 3858.0692820000004, 3874.6010710000005, 3914.16537, 3914.16537, 4, 5, 5, 2],
            "r3": [668.955033, 668.955033, 681.5171929999999, 703.8579699999999, 726.9382599999998, 726.9382599999998, 4, 5, 5, 0],
            "r30": [3936.16537, 3936.16537, 3936.16537, 3952.6971590000003, 3975.7000110000004, 3975.7000110000004, 4, 5, 5, 2],
            "r31": [6683.165370000001, 6683.165370000001, 6683.165370000001, 6699.697159, 6722.700011, 6722.700011, 4, 5, 5, 2],
            "r32": [6910.700011, 6910.700011, 6910.700011, 6927.2318, 6950.234651999999, 6950.234651999999, 4, 5, 5, 2],
            "r33": [7192.234651999999, 7192.234651999999, 7192.234651999999, 7208.766440999999, 7231.7692929999985, 7231.7692929999985, 4, 5, 5, 2],
            "r4": [1011.9382599999998, 1011.9382599999998, 1011.9382599999998, 1028.5004199999998, 1051.503272, 1051.503272, 4, 5, 5, 0],
            "r5": [1159.503272, 1159.503272, 1159.503272, 1176.0350609999998, 1199.037913, 1199.037913, 4, 5, 5, 2],
            "r6": [664.955033, 664.955033, 664.955033, 681.5171929999999, 721.1718939999998, 721.1718939999998, 4, 5, 5, 0],
            "r7": [858.1718939999998, 858.1718939999998, 858.1718939999998, 874.7340539999998, 897.7369059999999, 897.7369059999999, 4, 5, 5, 0],
            "r8": [6538.171894, 6538.171894, 6538.171894, 6554.703683, 6577.706534999999, 6577.706534999999, 4, 5, 5, 2],
            "r9": [6779.706534999999, 6779.706534999999, 6779.706534999999, 6796.238323999999, 6819.241175999999, 6819.241175999999, 4, 5, 5, 2],
        },
    },
    "spawn_dispatch": {
        "source": {"format": "dynamo.request.trace.v1", "digest": "requests:4;tools:1"},
        "summary": {"duration_ms": 329.200662, "completed_requests": 4, "mean_ttft_ms": 16.592537, "median_ttft_ms": 16.622913999999994, "p99_ttft_ms": 16.622913999999998, "mean_itl_ms": 5.7511247500000025, "mean_e2e_latency_ms": 39.59703600000001, "prefix_cache_reused_ratio": 0.45454545454545453, "total_output_tokens": 20},
        "rows": {
            "c1": [50.0, 50.0, 50.0, 66.622914, 89.617526, 89.617526, 8, 5, 5, 0],
            "p1": [0.0, 0.0, 0.0, 16.622913999999998, 39.617526000000005, 39.617526000000005, 8, 5, 5, 0],
            "p2": [139.617526, 139.617526, 139.617526, 156.179686, 179.18748200000002, 179.18748200000002, 12, 5, 5, 8],
            "p3": [289.617526, 289.617526, 289.617526, 306.179686, 329.200662, 329.200662, 16, 5, 5, 12],
        },
    },
    "ties": {
        "source": {"format": "dynamo.request.trace.v1", "digest": "requests:6;tools:0"},
        "summary": {"duration_ms": 279.18253799999997, "completed_requests": 6, "mean_ttft_ms": 16.602662666666664, "median_ttft_ms": 16.622913999999994, "p99_ttft_ms": 16.622913999999998, "mean_itl_ms": 5.750026333333331, "mean_e2e_latency_ms": 39.60276799999999, "prefix_cache_reused_ratio": 0.25, "total_output_tokens": 30},
        "rows": {
            "k1": [50.0, 50.0, 50.0, 66.622914, 89.62576599999998, 89.62576599999998, 4, 5, 5, 0],
            "k2": [50.0, 50.0, 50.0, 66.622914, 89.62576599999998, 89.62576599999998, 4, 5, 5, 0],
            "r-a": [0.0, 0.0, 0.0, 16.622913999999998, 39.625766, 39.625766, 4, 5, 5, 0],
            "r-a2": [239.625766, 239.625766, 239.625766, 256.187926, 279.18253799999997, 279.18253799999997, 8, 5, 5, 4],
            "r-b": [0.0, 0.0, 0.0, 16.622913999999998, 39.625766, 39.625766, 4, 5, 5, 0],
            "r-b2": [99.625766, 99.625766, 99.625766, 116.187926, 139.182538, 139.182538, 8, 5, 5, 4],
        },
    },
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_replay_equals_stored_oracle(tmp_path, name):
    rep, rows = ours(tmp_path, name)
    want = ORACLE[name]
    for k in SUMMARY:
        assert rep[k] == pytest.approx(want["summary"][k], rel=1e-9), (name, k)
    if want["source"] is not None:
        assert rep["agentic_graph"]["source"] == want["source"], name
    got = row_numbers(rows)
    if any(k.startswith("#") for k in want["rows"]):
        got = row_numbers([{k: r[k] for k in ROW_TIMES + ROW_COUNTS} for r in rows])
    assert sorted(got) == sorted(want["rows"]), name
    for rid, nums in want["rows"].items():
        assert_close(got[rid], nums, f"{name} {rid}")


# -- the lowering itself (exact rows), what 1.6.1 refuses, and what keeps the exporter's rules ------

def lowered(tmp: Path, records: list[dict], raw: str = "aisimulate-1.6"):
    return load_input([str(write_jsonl(tmp / "t.jsonl", records))], "dynamo", raw_dynamo=raw)


def deps(inp) -> dict[str, list[tuple]]:
    return {r.request_id: [(d.request_id, d.trigger, d.delay_ms, d.relation) for d in r.dependencies]
            for r in inp.rows}


def test_spawn_on_dispatch_sequence_at_recorded_gap_join_after_child(tmp_path):
    inp = lowered(tmp_path, spawn_dispatch())
    assert [r.request_id for r in inp.rows] == ["p1", "c1", "p2", "p3"]  # (start, end, request_id)
    assert deps(inp) == {"p1": [], "c1": [("p1", "dispatch", 50.0, "spawn")],
                         "p2": [("p1", "completion", 100.0, "sequence")],  # the tool's 50 ms inside the gap
                         "p3": [("p2", "completion", 100.0, "sequence"), ("c1", "completion", 200.0, "join")]}
    assert [r.not_before_ms for r in inp.rows] == [0.0, 0.0, 0.0, 0.0]
    assert [r.play_id for r in inp.rows] == ["dynamo-play:p1"] * 4
    assert [r.session_id for r in inp.rows] == ["root", "child", "root", "root"]
    assert inp.graph_source == ("dynamo.request.trace.v1", "requests:4;tools:1")
    assert inp.block_size == 4 and inp.sim_format == "dynamo"
    assert [(e.src, e.dst, e.relation) for e in inp.edges] == [
        ("p1", "c1", "spawn"), ("p1", "p2", "sequence"), ("p2", "p3", "sequence"), ("c1", "p3", "join")]
    assert [r.request_id for r in inp.recorded] == [r.request_id for r in inp.rows]


def test_claude_links_name_spawner_and_consumer(tmp_path):
    inp = lowered(tmp_path, claude_explicit())
    assert deps(inp) == {
        "p1": [], "p2": [("p1", "completion", 50.0, "sequence")], "c1": [("p1", "dispatch", 300.0, "spawn")],
        "p3": [("p2", "completion", 100.0, "sequence")], "d1": [("p2", "dispatch", 300.0, "spawn")],
        "c2": [("c1", "completion", 50.0, "sequence")], "p3b": [("p3", "completion", 820.0, "sequence")],
        "p4": [("p3b", "completion", 60.0, "sequence"), ("c2", "completion", 100.0, "join")]}
    assert inp.graph_source == ("dynamo.request.trace.v1", "requests:8;tools:4")


def test_ties_raw_hashes_unknown_model_and_plays(tmp_path):
    recs = ties()
    recs[0]["request"]["replay"]["input_sequence_hashes"] = [2**64 - 1]  # kept exactly, never compacted
    inp = lowered(tmp_path, recs)
    rows = {r.request_id: r for r in inp.rows}
    assert [r.request_id for r in inp.rows] == ["r-b", "r-a", "k1", "k2", "r-b2", "r-a2"]
    assert rows["r-b"].hash_ids == (2**64 - 1,) and rows["r-a2"].hash_ids == (1, 3)
    assert rows["k1"].model == "unknown" and rows["k2"].model == "test-model"
    assert deps(inp)["k1"] == deps(inp)["k2"][:1] == [("r-a", "dispatch", 50.0, "spawn")]
    assert deps(inp)["r-a2"] == [("r-a", "completion", 100.0, "sequence"), ("k1", "completion", 150.0, "join"),
                                 ("k2", "completion", 150.0, "join")]
    assert {r.request_id: r.play_id for r in inp.rows} == {
        "r-b": "dynamo-play:r-b", "r-b2": "dynamo-play:r-b", "r-a": "dynamo-play:r-a", "r-a2": "dynamo-play:r-a",
        "k1": "dynamo-play:r-a", "k2": "dynamo-play:r-a"}


def test_child_before_any_parent_call_is_a_root_and_names_the_play(tmp_path):
    # no parent call started before zc1: no spawn; p1 joins on it; the play is named after its root
    inp = lowered(tmp_path, [req("p1", "P", None, 1000, 1100, [1], bs=4), req("p2", "P", None, 1300, 1400, [1, 2], bs=4),
                             req("zc1", "C", "P", 900, 950, [3], bs=4)])
    assert deps(inp) == {"zc1": [], "p1": [("zc1", "completion", 50.0, "join")],
                         "p2": [("p1", "completion", 200.0, "sequence")]}
    assert [r.not_before_ms for r in inp.rows] == [0.0, 0.0, 0.0]
    assert {r.play_id for r in inp.rows} == {"dynamo-play:zc1"}


def test_roots_not_before_is_their_start_from_the_first(tmp_path):
    inp = lowered(tmp_path, [req("a", "A", None, 1000, 1100, [1], bs=4), req("b", "B", None, 1250, 1300, [2], bs=4),
                             req("a2", "A", None, 1400, 1500, [1, 2], bs=4)])
    assert [(r.request_id, r.not_before_ms) for r in inp.rows] == [("a", 0.0), ("b", 250.0), ("a2", 0.0)]


P = [req("p1", "P", None, 1000, 1100, [1], bs=4), req("p2", "P", None, 1200, 1300, [1, 2], bs=4)]


def _bad_tool(**t):
    return {"schema": "dynamo.request.trace.v1", "event_type": "tool_end", "event_time_unix_ms": 1150,
            "agent_context": {"session_id": "P"}, "tool": {"tool_call_id": "t", "tool_class": "Bash", **t}}


# (records, the line named, 1.6.1's own message for the same file)
REFUSED = {
    "overlap": ([req("a1", "S", None, 1000, 1300, [1], bs=4), req("a2", "S", None, 1100, 1200, [1, 2], bs=4)], 2,
                "trace line 3 has invalid dependency delay -200"),
    "conflicting_parent": (P + [req("c1", "C", "P", 1110, 1150, [3], bs=4), req("c2", "C", "Q", 1160, 1170, [3], bs=4)],
                           4, 'session "C" has conflicting parent_session_id values "P" and "Q"'),
    "unknown_parent": (P + [req("c1", "C", "Z", 1110, 1150, [3], bs=4)], 3,
                       'child session "C" references unknown parent session "Z"'),
    "execution_mode": (P + [req("c1", "C", "P", 1110, 1150, [3], bs=4),
                            tool("P", "t1", "Agent", 1100, 1200, **_link("p1", None, "C", "sync"))], 4,
                       'tool "t1" (Agent) has unsupported execution_mode "sync"'),
    "tool_negative_duration": (P + [_bad_tool(duration_ms=-5.0)], 3, "tool duration must be finite and nonnegative"),
    "tool_backwards": (P + [_bad_tool(started_at_unix_ms=1200, ended_at_unix_ms=1100)], 3,
                       "tool end time precedes start time"),
    "tool_empty_id": (P + [tool("P", "", "Bash", 1100, 1150)], 3, "tool_call_id must be nonempty"),
    "negative_total": ([P[0], req("p2", "P", None, 1200, 1100, [1, 2], bs=4)], 2,
                       "request duration must be finite and nonnegative"),
    "claude_unknown_request": (P + [tool("P", "t1", "Agent", 1100, 1200, **_link("zz", None, None, "blocking"))], 3,
                               'tool "t1" references unknown request_id "zz"'),
    "claude_other_session": (P + [req("x1", "X", None, 1000, 1050, [5], bs=4),
                                  tool("P", "t1", "Agent", 1100, 1200, **_link("x1", None, None, "blocking"))], 4,
                             'tool "t1" request "x1" belongs to session "X", expected "P"'),
    "claude_twice": (P + [req("c1", "C", "P", 1110, 1150, [3], bs=4),
                          tool("P", "t1", "Agent", 1100, 1200, **_link("p1", None, "C", "blocking")),
                          tool("P", "t2", "Agent", 1100, 1200, **_link("p1", None, "C", "blocking"))], 5,
                     'multiple tool events reference child session "C"'),
    "claude_not_parent": (P + [req("x1", "X", None, 1000, 1050, [5], bs=4), req("c1", "C", "P", 1110, 1150, [3], bs=4),
                               tool("X", "t1", "Agent", 1100, 1200, **_link("x1", None, "C", "blocking"))], 5,
                          'tool "t1" source request "x1" is not in parent session "P"'),
    "claude_spawn_before_source": (P + [req("c1", "C", "P", 1110, 1150, [3], bs=4),
                                        tool("P", "t1", "Agent", 1100, 1200, **_link("p2", None, "C", "background"))],
                                   3, "trace line 3 has invalid dependency delay -90"),
    "mixed_context": ([P[0], req("x", None, None, 1050, 1300, [1, 2], bs=4)], 2,
                      "Dynamo request trace cannot mix requests with and without agent_context"),
    "mixed_block_size": ([P[0], req("p2", "P", None, 1200, 1300, [1, 2], bs=8)], 2,
                         "mixed replay trace_block_size values are not supported"),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_as_dynamo_16_refuses_one_line(tmp_path, name):
    records, line, theirs = REFUSED[name]
    with pytest.raises(TraceError) as e:
        lowered(tmp_path, records)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{tmp_path / 't.jsonl'}:{line}: ") and theirs in msg, msg


def test_overlap_message_says_what_to_do(tmp_path):
    with pytest.raises(TraceError) as e:
        lowered(tmp_path, REFUSED["overlap"][0])
    assert str(e.value) == (
        f"{tmp_path / 't.jsonl'}:2: request 'a2' starts 200 ms before its sequence dependency 'a1' ends; ai-dynamo "
        f"1.6 refuses the raw trace (trace line 3 has invalid dependency delay -200): replay it with "
        f"--dynamo-version 1.4, or convert it with `trace-pipe convert --agentic` and replay the v2 file")


def test_version_14_keeps_the_exporter_lowering(tmp_path):
    from trace_pipe.pipeline import agentic_v1

    inp = lowered(tmp_path, spawn_dispatch(), raw="exporter")
    derived = agentic_v1.derive(readers.read_trace([str(tmp_path / "t.jsonl")]), rules="g2")
    assert inp.rows == derived.rows and inp.graph_source is None
    assert all(not r.dependencies and r.play_id is None for r in inp.rows)
    # and the CLI picks it from --dynamo-version
    rep14, rows14 = ours(tmp_path, "spawn_dispatch", version="1.4")
    rep16, rows16 = ours(tmp_path, "spawn_dispatch")
    assert rep16["duration_ms"] == pytest.approx(ORACLE["spawn_dispatch"]["summary"]["duration_ms"], rel=1e-12)
    assert rep14["duration_ms"] != pytest.approx(rep16["duration_ms"], rel=1e-6)


@pytest.mark.parametrize("gen", ["G1", "G2"])
def test_agent_traces_keep_the_exporter_lowering_with_a_note(tmp_path, gen):
    recs = [req("a1", "ta", None, 1000, 1100, [11, 12], bs=4, gen=gen),
            req("a2", "tb", "ta", 1050, 1300, [11, 12, 13], bs=4, gen=gen)]
    inp = lowered(tmp_path, recs)
    assert inp.rows == lowered(tmp_path, recs, raw="exporter").rows and inp.graph_source is None
    assert inp.trace.notes == {"requests lowered with the exporter's rules (as --dynamo-version 1.4): ai-dynamo "
                               "1.6.1 reads only dynamo.request.trace.v1 rows raw, not G1/G2 agent traces": 2}


def test_g3a_without_session_id_keeps_the_exporter_lowering_with_a_note(tmp_path):
    recs = [req("a1", "ta", None, 1000, 1100, [11, 12], bs=4, gen="G3a"),
            req("a2", "tb", "ta", 1050, 1300, [11, 12, 13], bs=4, gen="G3a")]
    inp = lowered(tmp_path, recs)
    assert inp.rows == lowered(tmp_path, recs, raw="exporter").rows
    assert inp.trace.notes == {"requests lowered with the exporter's rules (as --dynamo-version 1.4): ai-dynamo "
                               "1.6.1 does not read G3a rows without agent_context.session_id raw": 2}
    err = io.StringIO()
    run([str(tmp_path / "t.jsonl")], trace_format="dynamo", report_json=str(tmp_path / "r.json"), out=io.StringIO(),
        err=err, progress=False)
    assert "does not read G3a rows without agent_context.session_id raw" in err.getvalue()


def test_weka_and_context_free_need_no_raw_lowering(tmp_path):
    weka = SHARED / "fixtures" / "dynamo" / "weka-two-plays.jsonl"
    if not weka.exists():
        pytest.skip(f"missing {weka}")
    inp = load_input([str(weka)], "dynamo", raw_dynamo="aisimulate-1.6")
    assert not inp.trace.notes.get("requests lowered with the exporter's rules")
    assert inp.rows == load_input([str(weka)], "dynamo").rows
    free = lowered(tmp_path, context_free())
    assert free.sim_format == "mooncake" and free.graph_source is None
    assert [r.timestamp for r in free.rows] == [0.0, 40.0, 500.0]


def test_readable_reasons(tmp_path):
    write_jsonl(tmp_path / "g2.jsonl", [req("a", "t", None, 0, 10, [1], bs=4, gen="G2")])
    assert "G1/G2" in raw_lowering.readable(readers.read_trace([str(tmp_path / "g2.jsonl")]))
    write_jsonl(tmp_path / "g3.jsonl", spawn_dispatch())
    assert raw_lowering.readable(readers.read_trace([str(tmp_path / "g3.jsonl")])) is None


def test_perfetto_draws_the_raw_graph(tmp_path):
    from trace_pipe.proto.check import check_file

    files = case_files(tmp_path, "claude_explicit")
    pf = tmp_path / "r.pftrace"
    run(files, trace_format="dynamo", extra_engine_args='{"block_size": 4}', report_json=str(tmp_path / "r.json"),
        perfetto=str(pf), out=io.StringIO(), err=io.StringIO(), progress=False)
    rep = check_file(pf)
    assert not rep.problems, rep.problems
    # 8 dependency edges, drawn once under Recorded and once under Simulated
    assert sum(len(v) for v in deps(lowered(tmp_path, claude_explicit())).values()) == 8
    assert rep.flows == 16


# ai-dynamo 1.5.1 replays raw traces through the same loader but for a Claude tool's join: it joins
# the child's last request, and refuses the trace when that ends after the consumer starts
ORACLE15 = {"spawn_dispatch": {"duration_ms": 340.70043999999996, "mean_ttft_ms": 22.341601999999995},
            "g3c_seed5": {"duration_ms": 12853.166258000001, "mean_ttft_ms": 28.08267855172423}}
REFUSED15 = {"claude_join_last_done": "trace line 5 has invalid dependency delay -1050",
             "claude_join_at_start": "trace line 4 has invalid dependency delay -1050",
             "claude_join_none": "trace line 4 has invalid dependency delay -1050"}


@pytest.mark.parametrize("name", sorted(ORACLE15))
def test_version_15_raw_loader(tmp_path, name):
    rep, _rows = ours(tmp_path, name, version="1.5")
    for k, v in ORACLE15[name].items():
        assert rep[k] == pytest.approx(v, rel=1e-9), (name, k)


@pytest.mark.parametrize("name", sorted(REFUSED15))
def test_version_15_refuses_a_join_on_a_child_still_running(tmp_path, name):
    with pytest.raises(TraceError, match=REFUSED15[name]):
        ours(tmp_path, name, version="1.5")
    ours(tmp_path, name)  # 1.6.1 replays it


# -- the live oracle -----------------------------------------------------------------------------

def oracle16() -> str:
    from oracle_cases import oracle16_or_skip

    return oracle16_or_skip()


@pytest.mark.slow
@pytest.mark.parity
def test_live_oracle_every_summary_key_and_row(tmp_path):
    """Every case against ai-dynamo 1.6.1 now: every summary key (1e-9 relative; wall-clock keys
    aside) and every per-request row, and the oracle still gives the stored numbers."""
    py = oracle16()
    for name in sorted(CASES):
        d = tmp_path / name
        d.mkdir()
        _make, eng, speed, _parts, _gz = CASES[name]
        files = case_files(d, name)
        subprocess.run([py, str(DRIVER), *files, "--trace-format", "dynamo", "--router-mode", "round_robin",
                        "--num-workers", "1", "--extra-engine-args", json.dumps(eng), "--arrival-speedup-ratio",
                        str(speed), "--report-json", str(d / "t.json"), "--report-jsonl", str(d / "t.jsonl")],
                       check=True, capture_output=True, cwd=d)
        theirs = json.loads((d / "t.json").read_text())
        trows = [json.loads(x) for x in (d / "t.jsonl").read_text().splitlines()]
        rep, rows = ours(d, name)
        assert not compare_report(rep, theirs, skip=SKIP16), (name, compare_report(rep, theirs, skip=SKIP16))
        want = row_numbers(trows)
        got = row_numbers(rows if all(r.get("request_id") for r in trows) else
                          [{k: r[k] for k in ROW_TIMES + ROW_COUNTS} for r in rows])
        assert sorted(got) == sorted(want) == sorted(ORACLE[name]["rows"]), name
        for rid in want:
            assert_close(got[rid], want[rid], f"{name} {rid}")
            assert_close(want[rid], ORACLE[name]["rows"][rid], f"{name} {rid} (stored)")
        assert [r.get("play_id") for r in sorted(rows, key=lambda r: str(r.get("request_id")))] == \
            [r.get("play_id") for r in sorted(trows, key=lambda r: str(r.get("request_id")))], name
        for k in SUMMARY:
            assert theirs[k] == pytest.approx(ORACLE[name]["summary"][k], rel=1e-9), (name, k)


@pytest.mark.slow
@pytest.mark.parity
def test_live_oracle_refuses_what_we_refuse(tmp_path):
    py = oracle16()
    for name in sorted(REFUSED):
        records, _line, theirs = REFUSED[name]
        p = write_jsonl(tmp_path / f"{name}.jsonl", records)
        res = subprocess.run([py, str(DRIVER), str(p), "--trace-format", "dynamo", "--report-json",
                              str(tmp_path / "t.json")], capture_output=True, text=True)
        assert res.returncode != 0 and theirs in res.stderr, (name, res.stderr[-300:])


@pytest.mark.slow
@pytest.mark.parity
def test_live_oracle15_every_summary_key_and_row(tmp_path):
    """The same cases against ai-dynamo 1.5.1 ($TRACE_PIPE_ORACLE15_PYTHON, default
    /work/oracle15/bin/python, driven by bench/dynamo15_replay.py) under --dynamo-version 1.5."""
    py = os.environ.get("TRACE_PIPE_ORACLE15_PYTHON", "/work/oracle15/bin/python")
    driver = Path(__file__).resolve().parents[1] / "bench" / "dynamo15_replay.py"
    if not Path(py).exists() or not driver.exists():
        pytest.skip("ai-dynamo 1.5.1 oracle not installed (TRACE_PIPE_ORACLE15_PYTHON or /work/oracle15)")
    for name in sorted(CASES):
        d = tmp_path / name
        d.mkdir()
        _make, eng, speed, _parts, _gz = CASES[name]
        files = case_files(d, name)
        res = subprocess.run([py, str(driver), *files, "--trace-format", "dynamo", "--router-mode", "round_robin",
                              "--num-workers", "1", "--extra-engine-args", json.dumps(eng), "--arrival-speedup-ratio",
                              str(speed), "--report-json", str(d / "t.json"), "--report-jsonl", str(d / "t.jsonl")],
                             capture_output=True, text=True, cwd=d)
        if name in REFUSED15:
            assert res.returncode != 0 and REFUSED15[name] in res.stderr, (name, res.stderr[-300:])
            continue
        assert res.returncode == 0, (name, res.stderr[-300:])
        theirs = json.loads((d / "t.json").read_text())
        trows = [json.loads(x) for x in (d / "t.jsonl").read_text().splitlines()]
        rep, rows = ours(d, name, version="1.5")
        assert not compare_report(rep, theirs, skip=SKIP16), (name, compare_report(rep, theirs, skip=SKIP16))
        want = row_numbers([{k: r.get(k) for k in ROW_TIMES + ROW_COUNTS} | {"request_id": r.get("request_id")}
                            for r in trows])
        got = row_numbers([{k: r.get(k) for k in ROW_TIMES + ROW_COUNTS} | {"request_id": r.get("request_id")}
                           for r in rows])
        assert sorted(got) == sorted(want), name
        for rid in want:
            assert_close(got[rid], want[rid], f"{name} {rid}")
