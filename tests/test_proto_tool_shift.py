"""A recorded tool call drawn in the simulated timeline keeps its place in the wait it belongs to:
the wait of the call that consumed it (the rule the Mooncake rows' tool time follows,
pipeline/tool_gaps.waiting_call), moved by the offset of the dependency whose end opened that
wait. A parent's tool after its sub-agent joined moves with the sub-agent's end, not with the
parent's own previous call."""

from __future__ import annotations

import subprocess
import sys

from trace_pipe.pipeline.tool_gaps import waiting_call
from trace_pipe.proto.decode import decode_file

from dynamo_records import req, tool, write_jsonl

MS = 1_000_000


def test_waiting_call():
    starts, waits = [0, 100, 200], [None, 50, 190]
    assert waiting_call(60, starts, waits) == 1  # in call 1's wait (50 .. 100)
    assert waiting_call(40, starts, waits) == -1  # call 1's wait had not begun
    assert waiting_call(150, starts, waits) == -1  # call 2's wait begins at 190
    assert waiting_call(195, starts, waits) == 2
    assert waiting_call(250, starts, waits) == -1  # after the last call


def test_parent_tool_after_a_join_moves_with_the_sub_agent(tmp_path):
    # p0 spawns c (a long answer: its simulated end moves far from the recorded one), p1 joins it;
    # the parent's tool runs in p1's wait, which c's end opened
    recs = [req("p0", "P", None, 1000, 1010, [1, 2], output_tokens=2),
            req("c0", "C", "P", 1020, 1060, [3, 4], output_tokens=400),
            req("p1", "P", None, 1100, 1110, [1, 2, 5], output_tokens=2),
            tool("P", "t1", "bash", 1070, 1090)]
    trace = write_jsonl(tmp_path / "t.jsonl", recs)
    pf = tmp_path / "r.pftrace"
    res = subprocess.run([sys.executable, "-m", "trace_pipe.cli.main", "replay", str(trace), "--trace-format", "dynamo",
                          "--perfetto", str(pf)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    d = decode_file(str(pf))
    end: dict = {}
    tools: dict = {}
    for s in d.slices:
        root = d.track_path(s.track)[0]
        if s.category == "dynamo.llm":
            end[(root, s.args["request_id"])] = s.ts + s.dur
        elif s.category == "dynamo.agent.tool":
            tools[root] = s.ts
    rec_c, sim_c = end[("Recorded", "c0")], end[("Simulated", "c0")]
    rec_p, sim_p = end[("Recorded", "p0")], end[("Simulated", "p0")]
    assert tools["Recorded"] - rec_c == 10 * MS
    assert tools["Simulated"] - sim_c == 10 * MS  # the same 10 ms after the sub-agent's end
    assert sim_c - rec_c != sim_p - rec_p  # (the parent's previous call moved by another offset)
