"""ToolEventPublisher on real loopback sockets: frames, record shapes, spans, queue bounds, env."""

from __future__ import annotations

import asyncio
import time

import msgpack
import pytest
import zmq

from trace_pipe.tools import ToolEventPublisher
from trace_pipe.tools import env as envmod
from trace_pipe.tools.publisher import output_size, tool_class_of

NO_ENV: dict[str, str] = {}


@pytest.fixture
def pull():
    ctx = zmq.Context()
    s = ctx.socket(zmq.PULL)
    s.setsockopt(zmq.LINGER, 0)
    s.bind("tcp://127.0.0.1:*")
    yield s
    s.close(0)
    ctx.term()


def _recv(sock: zmq.Socket, n: int, timeout: float = 10.0) -> list[list[bytes]]:
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n:
        left = deadline - time.monotonic()
        assert left > 0, f"received only {len(out)} of {n} messages"
        if sock.poll(int(left * 1000) + 1):
            out.append(sock.recv_multipart())
    return out


def _endpoint(sock: zmq.Socket) -> str:
    return sock.getsockopt_string(zmq.LAST_ENDPOINT)


def test_three_frames_topic_sequence_and_pi_record(pull):
    pub = ToolEventPublisher(_endpoint(pull), session_id="run-1", trajectory_id="run-1:main",
                             parent_trajectory_id="run-0", session_type_id="tests", env=NO_ENV)
    assert pub.tool_start("call-1", "bash", started_at_unix_ms=1000)
    assert pub.tool_end("call-1", "bash", started_at_unix_ms=1000, ended_at_unix_ms=1420,
                        duration_ms=420.5, output_bytes=12)
    assert pub.tool_error("call-2", "read", started_at_unix_ms=2000, ended_at_unix_ms=2001,
                          duration_ms=1.0, error_type="pi_tool_error")
    stats = pub.close()
    assert (stats.emitted, stats.sent, stats.dropped_full, stats.dropped_unsent) == (3, 3, 0, 0)
    msgs = _recv(pull, 3)
    assert [len(m) for m in msgs] == [3, 3, 3]
    assert {m[0] for m in msgs} == {b"agent-tool-events"}
    assert [m[1] for m in msgs] == [i.to_bytes(8, "big") for i in range(3)]
    recs = [msgpack.unpackb(m[2]) for m in msgs]
    ctx = {"session_type_id": "tests", "session_id": "run-1", "trajectory_id": "run-1:main",
           "parent_trajectory_id": "run-0"}
    assert recs[0] == {"schema": "dynamo.agent.trace.v1", "event_type": "tool_start", "event_time_unix_ms": 1000,
                       "event_source": "harness", "agent_context": ctx,
                       "tool": {"tool_call_id": "call-1", "tool_class": "bash", "started_at_unix_ms": 1000,
                                "status": "running"}}
    assert recs[1]["event_type"] == "tool_end" and recs[1]["event_time_unix_ms"] == 1420
    assert recs[1]["tool"] == {"tool_call_id": "call-1", "tool_class": "bash", "started_at_unix_ms": 1000,
                               "ended_at_unix_ms": 1420, "duration_ms": 420.5, "status": "succeeded",
                               "output_bytes": 12}
    assert recs[2]["event_type"] == "tool_error"
    assert recs[2]["tool"]["status"] == "error" and recs[2]["tool"]["error_type"] == "pi_tool_error"


def test_request_shape_is_the_g3b_ingress(pull):
    pub = ToolEventPublisher(_endpoint(pull), topic="t", trajectory_id="child", parent_trajectory_id="root",
                             shape="request", env=NO_ENV)
    pub.tool_end("c", "ls", started_at_unix_ms=5, ended_at_unix_ms=9)
    pub.close()
    (m,) = _recv(pull, 1)
    assert m[0] == b"t"
    assert msgpack.unpackb(m[2]) == {
        "schema": "dynamo.request.trace.v1", "event_type": "tool_end", "event_time_unix_ms": 9,
        "session_id": "child", "parent_session_id": "root",
        "tool": {"tool_call_id": "c", "tool_class": "ls", "started_at_unix_ms": 5, "ended_at_unix_ms": 9,
                 "duration_ms": 4.0, "status": "succeeded"}}


def test_terminal_row_without_a_start_is_self_contained_like_pi(pull):
    pub = ToolEventPublisher(_endpoint(pull), trajectory_id="t", env=NO_ENV)
    pub.tool_end("c", "ls", ended_at_unix_ms=50)
    pub.close()
    tool = msgpack.unpackb(_recv(pull, 1)[0][2])["tool"]
    assert (tool["started_at_unix_ms"], tool["ended_at_unix_ms"], tool["duration_ms"]) == (50, 50, 0.0)


def test_span_times_a_call_and_reports_output_bytes(pull):
    pub = ToolEventPublisher(_endpoint(pull), trajectory_id="t", env=NO_ENV)
    before = time.time_ns() // 1_000_000
    with pub.span("bash", "call-9") as call:
        time.sleep(0.02)
        call.set_output("héllo")
    after = time.time_ns() // 1_000_000
    pub.close()
    start, end = (msgpack.unpackb(m[2]) for m in _recv(pull, 2))
    assert start["event_type"] == "tool_start" and start["tool"]["status"] == "running"
    assert end["event_type"] == "tool_end"
    t = end["tool"]
    assert t["tool_call_id"] == "call-9" and t["status"] == "succeeded" and t["output_bytes"] == 6
    assert before <= t["started_at_unix_ms"] <= t["ended_at_unix_ms"] <= after
    assert 20.0 <= t["duration_ms"] < 2000.0
    assert t["duration_ms"] == round(t["duration_ms"], 3)


def test_span_error_and_cancellation_propagate_and_are_reported(pull):
    pub = ToolEventPublisher(_endpoint(pull), trajectory_id="t", env=NO_ENV)
    with pytest.raises(ValueError):
        with pub.span("read", "e1", emit_start=False):
            raise ValueError("boom")
    with pytest.raises(KeyboardInterrupt):
        with pub.span("read", "e2", emit_start=False):
            raise KeyboardInterrupt
    pub.close()
    a, b = (msgpack.unpackb(m[2]) for m in _recv(pull, 2))
    assert (a["event_type"], a["tool"]["status"], a["tool"]["error_type"]) == ("tool_error", "error", "ValueError")
    assert (b["event_type"], b["tool"]["status"]) == ("tool_error", "cancelled")


def test_traced_decorator_sync_and_async(pull):
    pub = ToolEventPublisher(_endpoint(pull), trajectory_id="t", env=NO_ENV)

    @pub.traced(emit_start=False)
    def grep(pattern: str) -> str:
        return pattern * 3

    @pub.traced("fetch", emit_start=False)
    async def fetch() -> bytes:
        await asyncio.sleep(0)
        return b"12345"

    assert grep("ab") == "ababab"
    assert asyncio.run(fetch()) == b"12345"
    pub.close()
    a, b = (msgpack.unpackb(m[2])["tool"] for m in _recv(pull, 2))
    assert (a["tool_class"], a["output_bytes"]) == ("grep", 6)
    assert (b["tool_class"], b["output_bytes"]) == ("fetch", 5)


def test_per_call_identity_for_subagents(pull):
    pub = ToolEventPublisher(_endpoint(pull), session_id="run", trajectory_id="run:main", env=NO_ENV)
    with pub.span("task", "s1", emit_start=False, trajectory_id="run:sub", parent_trajectory_id="run:main"):
        pass
    pub.close()
    ctx = msgpack.unpackb(_recv(pull, 1)[0][2])["agent_context"]
    assert ctx == {"session_type_id": "python_agent", "session_id": "run", "trajectory_id": "run:sub",
                   "parent_trajectory_id": "run:main"}


def test_no_endpoint_means_a_no_op_publisher():
    pub = ToolEventPublisher(env=NO_ENV)
    assert pub.endpoint is None
    assert pub.tool_end("c", "x") is False
    with pub.span("x"):
        pass
    s = pub.close()
    assert (s.emitted, s.sent, s.disabled) == (0, 0, 3)


def _stalled_publisher(overflow: str, endpoint: str) -> ToolEventPublisher:
    # nobody bound yet: ZMQ holds `sndhwm` messages for the pending connection, the sender thread
    # waits at the mark, the queue fills up and overflows
    return ToolEventPublisher(endpoint, trajectory_id="t", capacity=10, sndhwm=5, overflow=overflow,
                              env=NO_ENV)


@pytest.mark.parametrize("overflow", ["drop_new", "drop_oldest"])
def test_full_queue_drops_and_counts_without_blocking(overflow, free_tcp_endpoint):
    pub = _stalled_publisher(overflow, free_tcp_endpoint)
    accepted = [pub.tool_end(f"c{i}", "x", started_at_unix_ms=1, ended_at_unix_ms=2) for i in range(100)]
    time.sleep(0.2)  # let the sender reach the high-water mark
    s = pub.stats
    assert s.dropped_full > 0
    if overflow == "drop_new":
        assert accepted.count(False) == s.dropped_full
    else:
        assert all(accepted)
    # now a collector appears: what was queued goes out, the last events survive drop_oldest
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.bind(free_tcp_endpoint)
    try:
        assert pub.flush(5.0)
        s = pub.close(timeout=5.0)
        assert s.dropped_unsent == 0
        assert s.emitted + (s.dropped_full if overflow == "drop_new" else 0) == 100
        got = [msgpack.unpackb(m[2])["tool"]["tool_call_id"] for m in _recv(pull, s.sent)]
        assert len(got) == s.sent == 100 - s.dropped_full
        assert pull.poll(200) == 0  # nothing beyond what was counted as sent
        assert [int(x[1:]) for x in got] == sorted(int(x[1:]) for x in got)  # in order
        if overflow == "drop_oldest":
            assert got[-10:] == [f"c{i}" for i in range(90, 100)]
        else:
            assert "c99" not in got and got[0] == "c0"
    finally:
        pull.close(0)
        ctx.term()


def test_close_is_bounded_when_nobody_listens(free_tcp_endpoint):
    pub = _stalled_publisher("drop_new", free_tcp_endpoint)
    for i in range(30):
        pub.tool_end(f"c{i}", "x")
    t0 = time.monotonic()
    s = pub.close(timeout=0.3)
    assert time.monotonic() - t0 < 3.0
    # accounted for: handed to ZMQ (then discarded with the socket), unsent, or dropped when full
    assert s.sent + s.dropped_unsent == s.emitted and s.emitted + s.dropped_full == 30
    assert s.dropped_unsent > 0
    assert pub.tool_end("late", "x") is False


@pytest.fixture
def free_tcp_endpoint():
    # a port the kernel just handed out and nobody listens on (bind and release)
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"tcp://127.0.0.1:{port}"


def test_harness_environment_like_pi():
    env = {"DYN_AGENT_TRACE_TOOL_ZMQ_ENDPOINT": "tcp://127.0.0.1:1", "DYN_AGENT_TOOL_EVENTS_ZMQ_ENDPOINT": "  ",
           "DYN_AGENT_TRACE_TOOL_EVENTS_ZMQ_TOPIC": "topic-3", "DYN_AGENT_SESSION_ID": "sess",
           "DYN_AGENT_PARENT_TRAJECTORY_ID": "parent", "DYN_AGENT_SESSION_TYPE_ID": "kind",
           "DYN_AGENT_TOOL_EVENTS_QUEUE_CAPACITY": "77"}
    pub = ToolEventPublisher(env=env)
    try:
        assert pub.endpoint == "tcp://127.0.0.1:1"  # blank first variable is unset; second wins
        assert pub.topic == "topic-3"
        assert pub.capacity == 77
        # no trajectory variable: the session id is the trajectory (Pi: session falls back likewise)
        assert pub.identity() == {"session_type_id": "kind", "session_id": "sess", "trajectory_id": "sess",
                                  "parent_trajectory_id": "parent"}
    finally:
        pub.close(timeout=0)
    pub = ToolEventPublisher(env={**env, "DYN_AGENT_TRAJECTORY_ID": "traj"}, trajectory_id="arg",
                             topic="flag", capacity=5)
    try:
        assert (pub.trajectory_id, pub.session_id, pub.topic, pub.capacity) == ("arg", "sess", "flag", 5)
    finally:
        pub.close(timeout=0)


def test_environment_defaults():
    assert envmod.publisher_topic({}) == "agent-tool-events"
    assert envmod.queue_capacity({"DYN_AGENT_TOOL_EVENTS_QUEUE_CAPACITY": "junk"}) == 100_000
    assert envmod.queue_capacity({"DYN_AGENT_TOOL_EVENTS_QUEUE_CAPACITY": "-4"}) == 100_000
    assert envmod.collector_endpoint(None, {}) == "tcp://127.0.0.1:20390"
    assert envmod.collector_endpoint(None, {"DYN_AGENT_TRACE_TOOL_EVENTS_ZMQ_ENDPOINT": "ipc:///a",
                                            "DYN_REQUEST_TRACE_TOOL_EVENTS_ZMQ_ENDPOINT": "ipc:///b"}) == "ipc:///b"
    assert envmod.collector_endpoint("ipc:///flag", {"DYN_REQUEST_TRACE_TOOL_EVENTS_ZMQ_ENDPOINT": "x"}) == "ipc:///flag"
    assert envmod.collector_topic(None, {"DYN_AGENT_TRACE_TOOL_EVENTS_ZMQ_TOPIC": "g2"}) == "g2"
    assert envmod.collector_topic("", {"DYN_AGENT_TRACE_TOOL_EVENTS_ZMQ_TOPIC": "g2"}) == ""
    assert envmod.sink_int(envmod.ROLL_LINES_VARS, None, None, {"DYN_AGENT_TRACE_JSONL_GZ_ROLL_LINES": "9"}) == 9
    with pytest.raises(ValueError, match="DYN_REQUEST_TRACE_JSONL_BUFFER_BYTES"):
        envmod.sink_int(envmod.BUFFER_VARS, None, 1, {"DYN_REQUEST_TRACE_JSONL_BUFFER_BYTES": "1MB"})


def test_helpers_match_pi():
    assert tool_class_of("mcp---server/tool") == "mcp"
    assert tool_class_of("fs/read") == "fs"
    assert tool_class_of("  ") == "unknown"
    assert output_size("é") == 2 and output_size(b"abc") == 3 and output_size(None) is None


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="shape"):
        ToolEventPublisher(shape="g9", env=NO_ENV)
    with pytest.raises(ValueError, match="overflow"):
        ToolEventPublisher(overflow="block", env=NO_ENV)
