"""Acceptance: a Dynamo trace plus the collected tool file converts as if Dynamo had written the tools.

A publisher subprocess sends the tool spans over ZMQ to the collector; the reference is the same
tool rows as Dynamo's sink writes them (hand-written here, Dynamo's serde field order). Both go
through the lead's reader and the agentic derivation; the rows' `tool_events` must be identical
and attached where dynamo-formats.md §4.4.4 says.
"""

from __future__ import annotations

import subprocess
import sys
import threading

import orjson
import pytest

try:
    from trace_pipe.pipeline.agentic_v1 import derive
    from trace_pipe.pipeline.readers import read_trace
except ImportError:  # pragma: no cover - only while the lead's reader has not landed
    pytest.skip("reader not yet available", allow_module_level=True)

from trace_pipe.pipeline.io import iter_lines
from trace_pipe.tools import Collector, CollectorConfig

# (tool_call_id, tool_class, start, end, status, output_bytes, error?)
TOOLS = [
    ("call-1", "ls", 1150, 1250, "succeeded", 10, False),  # gap r1 -> r2
    ("call-2", "bash", 1310, 1350, "succeeded", 5, False),  # during r2: attached nowhere
    ("call-3", "read", 1420, 1500, "error", None, True),  # gap r2 -> r3
    ("call-4", "grep", 1450, 1580, "succeeded", 7, False),  # gap r2 -> r3, overlaps call-3
    ("call-5", "ls", 1750, 1800, "succeeded", 1, False),  # after the last request
]
REQUESTS = [("r1", 1000, 100), ("r2", 1300, 100), ("r3", 1600, 100)]  # id, received, total ms

PUBLISH = r"""
import json, sys
from trace_pipe.tools import ToolEventPublisher
endpoint, shape, tools = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
pub = ToolEventPublisher(endpoint, session_type_id="pi_coding_agent", session_id="run-42",
                         trajectory_id="run-42:main", shape=shape, env={})
for call_id, cls, start, end, status, nbytes, error in tools:
    pub.tool_start(call_id, cls, started_at_unix_ms=start)
    pub.tool_end(call_id, cls, started_at_unix_ms=start, ended_at_unix_ms=end, duration_ms=float(end - start),
                 output_bytes=nbytes, error=error, error_type="pi_tool_error" if error else None)
s = pub.close(timeout=10)
assert s.sent == 2 * len(tools), s
"""


def _dynamo_trace(gen: str) -> list[dict]:
    rows = []
    for i, (rid, received, total) in enumerate(REQUESTS):
        request = {"request_id": rid, "model": "m", "input_tokens": 4 * (i + 1), "output_tokens": 5,
                   "request_received_ms": received, "total_time_ms": float(total),
                   "replay": {"trace_block_size": 4, "input_length": 4 * (i + 1),
                              "input_sequence_hashes": list(range(11, 12 + i))}}
        if gen == "G2":
            rows.append({"schema": "dynamo.agent.trace.v1", "event_type": "request_end",
                         "event_time_unix_ms": received + total, "event_source": "dynamo",
                         "agent_context": {"session_type_id": "pi_coding_agent", "session_id": "run-42",
                                           "trajectory_id": "run-42:main"},
                         "request": request})
        else:
            rows.append({"schema": "dynamo.request.trace.v1", "event_type": "request_end",
                         "event_time_unix_ms": received + total, "event_source": "dynamo",
                         "agent_context": {"session_id": "run-42:main"}, "request": request})
    return rows


def _dynamo_tool_rows(gen: str) -> list[dict]:
    """The tool rows Dynamo's sink writes for those spans (struct field order, canonical status)."""
    if gen == "G2":
        head = {"schema": "dynamo.agent.trace.v1"}
        ctx = {"session_type_id": "pi_coding_agent", "session_id": "run-42", "trajectory_id": "run-42:main"}
    else:
        head = {"schema": "dynamo.request.trace.v1"}
        ctx = {"session_id": "run-42:main"}
    out = []
    for call_id, cls, start, end, status, nbytes, error in TOOLS:
        out.append({**head, "event_type": "tool_start", "event_time_unix_ms": start, "event_source": "harness",
                    "agent_context": ctx,
                    "tool": {"tool_call_id": call_id, "tool_class": cls, "started_at_unix_ms": start,
                             "status": "running"}})
        tool = {"tool_call_id": call_id, "tool_class": cls, "started_at_unix_ms": start, "ended_at_unix_ms": end,
                "status": status, "duration_ms": float(end - start)}
        if nbytes is not None:
            tool["output_bytes"] = nbytes
        if error:
            tool["error_type"] = "pi_tool_error"
        out.append({**head, "event_type": "tool_error" if error else "tool_end", "event_time_unix_ms": end,
                    "event_source": "harness", "agent_context": ctx, "tool": tool})
    return out


def _write(path, events: list[dict]) -> str:
    path.write_bytes(b"".join(orjson.dumps({"timestamp": i, "event": e}) + b"\n" for i, e in enumerate(events)))
    return str(path)


def _collect(tmp_path, shape: str) -> list[str]:
    cfg = CollectorConfig(endpoint="tcp://127.0.0.1:*", output=str(tmp_path / "collected" / "tools.jsonl.gz"),
                          max_messages=2 * len(TOOLS))
    c = Collector(cfg)
    endpoint = c.bind()
    t = threading.Thread(target=c.run, daemon=True)
    t.start()
    try:
        subprocess.run([sys.executable, "-c", PUBLISH, endpoint, shape, orjson.dumps(TOOLS).decode()],
                       check=True, timeout=60)
        t.join(30)
    finally:
        c.stop()
        t.join(30)
    assert (c.stats.received, c.stats.written) == (2 * len(TOOLS), 2 * len(TOOLS))
    return c.stats.paths


def _tool_events(paths: list[str]) -> dict[str, list[dict]]:
    rows = derive(read_trace(paths)).rows
    return {r.request_id: [t.to_json() for t in r.tool_events] for r in rows}


@pytest.mark.parametrize(("gen", "shape"), [("G2", "agent"), ("G3b", "request")])
def test_collected_tools_attach_as_if_dynamo_had_written_them(tmp_path, gen, shape):
    trace = _write(tmp_path / "dynamo-trace.jsonl", _dynamo_trace(gen))
    reference = _write(tmp_path / "reference-tools.jsonl", _dynamo_tool_rows(gen))
    collected = _collect(tmp_path, shape)

    # the collected rows are the rows Dynamo writes (timestamps aside), in arrival order
    got = [orjson.loads(raw)["event"] for p in collected for _, raw in iter_lines(p)]
    assert got == _dynamo_tool_rows(gen)

    with_collected = _tool_events([trace, *collected])
    assert with_collected == _tool_events([trace, reference])
    ids = {rid: [t["tool_call_id"] for t in ev] for rid, ev in with_collected.items()}
    assert ids == {"r1": [], "r2": ["call-1"], "r3": ["call-3", "call-4"]}
    assert with_collected["r3"][0] == {
        "tool_call_id": "call-3", "tool_class": "read", "started_at_unix_ms": 1420, "ended_at_unix_ms": 1500,
        "duration_ms": 80.0, "status": "error", "error_type": "pi_tool_error"}

    # and `trace-pipe convert` itself: the trace plus the collector's output directory gives the same
    # agentic Mooncake bytes as the trace plus Dynamo-written tool rows
    outs = []
    for extra, name in ((str(tmp_path / "collected"), "from-collector.jsonl"), (reference, "from-dynamo.jsonl")):
        r = subprocess.run([sys.executable, "-c", "from trace_pipe.cli.main import main; main()", "convert",
                            trace, extra, "--agentic", "--format", "v1", "--mooncake", str(tmp_path / name)],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        outs.append((tmp_path / name).read_bytes())
    assert outs[0] == outs[1]
    assert b'"tool_events":[{"tool_call_id":"call-1"' in outs[0]
