"""`trace-pipe collect` end to end on real loopback sockets, with publisher subprocesses.

Acceptance (issue 6): 4 x 10,000 events exactly once; malformed senders next to a good one counted
by reason; SIGTERM while publishers send leaves every received message in a complete file.
Everything is bounded in count and time; tests stop by themselves.
"""

from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import msgpack
import orjson
import pytest
import zmq

from trace_pipe.pipeline.io import iter_lines
from trace_pipe.tools import Collector, CollectorConfig
from trace_pipe.tools.wire import encode_message

# A harness process using only the public publisher API. argv: endpoint count name shape [pace]
PUBLISHER = r"""
import sys, time
from trace_pipe.tools import ToolEventPublisher
endpoint, n, name, shape = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
pace = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
pub = ToolEventPublisher(endpoint, session_id="run", trajectory_id="run:" + name, shape=shape,
                         session_type_id="tests", env={})
for i in range(n):
    pub.tool_end(f"{name}-{i}", "bash", started_at_unix_ms=1000 + i, ended_at_unix_ms=1010 + i,
                 duration_ms=10.0, output_bytes=i)
    if pace and i % 100 == 99:
        time.sleep(pace)
s = pub.close(timeout=10)
print(s.emitted, s.sent, s.dropped_full, s.dropped_unsent, flush=True)
"""

CLI = [sys.executable, "-c", "from trace_pipe.cli.main import main; main()"]


def _spawn_publisher(endpoint: str, n: int, name: str, shape: str = "agent", pace: float = 0.0,
                     env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", PUBLISHER, endpoint, str(n), name, shape, str(pace)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _publisher_stats(p: subprocess.Popen, timeout: float = 60) -> tuple[int, ...]:
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, err
    return tuple(int(x) for x in out.split())


def _rows(paths: list[str]) -> list[dict]:
    out = []
    for p in paths:
        for _, raw in iter_lines(p):  # raises on a truncated gzip member
            out.append(orjson.loads(raw))
    return out


class _Running:
    """A Collector on its own thread, stopped (and joined) on exit whatever happens."""

    def __init__(self, cfg: CollectorConfig) -> None:
        self.c = Collector(cfg)
        self.endpoint = self.c.bind()
        self.t = threading.Thread(target=self.c.run, daemon=True)

    def __enter__(self) -> "_Running":
        self.t.start()
        return self

    def wait_received(self, n: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.c.stats.received < n and time.monotonic() < deadline:
            time.sleep(0.01)

    def __exit__(self, *exc: object) -> None:
        self.c.stop()
        self.t.join(30)
        assert not self.t.is_alive()


def test_four_publishers_ten_thousand_events_each_arrive_exactly_once(tmp_path):
    n, names = 10_000, ["p0", "p1", "p2", "p3"]
    cfg = CollectorConfig(endpoint="tcp://127.0.0.1:*", output=str(tmp_path / "tools.jsonl.gz"),
                          max_messages=4 * n, flush_interval_s=0.2)
    with _Running(cfg) as run:
        # two publishers send Pi's full record, two the G3b ingress
        procs = [_spawn_publisher(run.endpoint, n, nm, "agent" if i % 2 == 0 else "request")
                 for i, nm in enumerate(names)]
        stats = [_publisher_stats(p) for p in procs]
        run.t.join(60)
    assert stats == [(n, n, 0, 0)] * 4
    s = run.c.stats
    assert (s.received, s.written, dict(s.dropped)) == (4 * n, 4 * n, {})
    assert s.paths == [str(tmp_path / "tools.000000.jsonl.gz")]
    rows = _rows(s.paths)
    ids = Counter(r["event"]["tool"]["tool_call_id"] for r in rows)
    assert len(rows) == 4 * n
    assert set(ids) == {f"{nm}-{i}" for nm in names for i in range(n)}
    assert max(ids.values()) == 1
    by_id = {r["event"]["tool"]["tool_call_id"]: r for r in rows}
    assert by_id["p0-7"]["event"] == {
        "schema": "dynamo.agent.trace.v1", "event_type": "tool_end", "event_time_unix_ms": 1017,
        "event_source": "harness",
        "agent_context": {"session_type_id": "tests", "session_id": "run", "trajectory_id": "run:p0"},
        "tool": {"tool_call_id": "p0-7", "tool_class": "bash", "started_at_unix_ms": 1007,
                 "ended_at_unix_ms": 1017, "status": "succeeded", "duration_ms": 10.0, "output_bytes": 7}}
    assert by_id["p1-7"]["event"]["schema"] == "dynamo.request.trace.v1"
    assert by_id["p1-7"]["event"]["agent_context"] == {"session_id": "run:p1"}
    assert by_id["p1-7"]["event"]["event_source"] == "harness"
    assert all(type(r["timestamp"]) is int and r["timestamp"] >= 0 for r in rows)


def test_malformed_messages_are_counted_by_reason_next_to_a_good_publisher(tmp_path):
    good_n = 2000
    cfg = CollectorConfig(endpoint="tcp://127.0.0.1:*", output=str(tmp_path / "tools.jsonl"))
    good_record = {"schema": "dynamo.request.trace.v1", "event_type": "tool_end", "event_time_unix_ms": 5,
                   "session_id": "s", "tool": {"tool_call_id": "bad", "tool_class": "x", "duration_ms": 1.0}}
    nan_record = {**good_record, "tool": {**good_record["tool"], "duration_ms": math.nan}}
    topic, seq, payload = encode_message("agent-tool-events", 0, good_record)
    bad = {
        "frame_count": [[topic, seq], [topic, seq, payload, b"extra"], [topic]],
        "topic": [[b"other-topic", seq, payload], [b"agent-tool-events-x", seq, payload]],
        "sequence": [[topic, b"\x00\x00\x00\x01", payload], [topic, b"", payload]],
        "not_map": [[topic, seq, msgpack.packb([1, 2, 3])], [topic, seq, msgpack.packb("tool_end")]],
        "msgpack": [[topic, seq, b"\xc1"], [topic, seq, payload + b"\x00"]],
        "duration_ms": [encode_message("agent-tool-events", 1, nan_record)],
    }
    rounds = 20
    with _Running(cfg) as run:
        good = _spawn_publisher(run.endpoint, good_n, "good", "agent", pace=0.001)
        ctx = zmq.Context()
        push = ctx.socket(zmq.PUSH)
        push.connect(run.endpoint)
        try:
            for _ in range(rounds):  # interleaved with the good publisher's stream
                for msgs in bad.values():
                    for m in msgs:
                        push.send_multipart(m)
                time.sleep(0.005)
            assert _publisher_stats(good) == (good_n, good_n, 0, 0)
            expected_bad = rounds * sum(len(v) for v in bad.values())
            run.wait_received(good_n + expected_bad, 30)
        finally:
            push.close(linger=1000)
            ctx.term()
    s = run.c.stats
    assert dict(s.dropped) == {reason: rounds * len(msgs) for reason, msgs in bad.items()}
    assert s.written == good_n and s.received == good_n + expected_bad
    rows = _rows(s.paths)
    assert sorted(r["event"]["tool"]["tool_call_id"] for r in rows) == sorted(f"good-{i}" for i in range(good_n))


def _start_cli(args: list[str], env: dict | None = None) -> tuple[subprocess.Popen, str]:
    p = subprocess.Popen(CLI + ["collect", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=env)
    line = p.stderr.readline()  # the readiness line
    m = re.search(r"listening on (\S+)", line)
    if not m:
        p.kill()
        raise AssertionError(f"collector did not start: {line}{p.stderr.read()}")
    return p, m.group(1)


_SUMMARY = re.compile(r"received (\d+), written (\d+), dropped (\d+)")


def test_sigterm_while_publishers_send_keeps_every_received_message(tmp_path):
    ipc_dir = tempfile.mkdtemp(prefix="tpc")  # short path: ipc endpoints are limited to ~100 chars
    try:
        out = tmp_path / "tools.jsonl.gz"
        p, endpoint = _start_cli(["--endpoint", f"ipc://{ipc_dir}/c.ipc", "-o", str(out),
                                  "--flush-interval-ms", "100", "--roll-bytes", "200000"])
        pubs = [_spawn_publisher(endpoint, 200_000, f"p{i}", pace=0.002) for i in range(2)]
        try:
            deadline = time.monotonic() + 30
            # signal once a few rolls have happened and the publishers are mid-stream
            while len(list(tmp_path.glob("tools.*.jsonl.gz"))) < 3 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert all(x.poll() is None for x in pubs), "publishers finished before the signal"
            p.send_signal(signal.SIGTERM)
            _, err = p.communicate(timeout=30)
        finally:
            for x in pubs:
                x.kill()
                x.communicate(timeout=30)
            if p.poll() is None:
                p.kill()
        assert p.returncode == 0, err
        received, written, dropped = map(int, _SUMMARY.search(err).groups())
        paths = sorted(str(x) for x in tmp_path.glob("tools.*.jsonl.gz"))
        assert len(paths) >= 3 and f"files: {', '.join(paths)}" in err
        rows = _rows(paths)  # every segment is complete gzip (iter_lines raises otherwise)
        assert dropped == 0 and received == written == len(rows) > 0
        ids = Counter(r["event"]["tool"]["tool_call_id"] for r in rows)
        assert max(ids.values()) == 1
        # per publisher, what arrived is a gap-free prefix of what it sent (PUSH/PULL keeps order)
        for name in ("p0", "p1"):
            got = sorted(int(k.split("-")[1]) for k in ids if k.startswith(name + "-"))
            assert got == list(range(len(got)))
    finally:
        for f in Path(ipc_dir).iterdir():
            f.unlink()
        os.rmdir(ipc_dir)


def test_cli_reads_the_dynamo_environment_and_flags_win(tmp_path):
    ipc_dir = tempfile.mkdtemp(prefix="tpc")
    try:
        env = {**os.environ,
               "DYN_REQUEST_TRACE_TOOL_EVENTS_ZMQ_ENDPOINT": f"ipc://{ipc_dir}/env.ipc",
               "DYN_AGENT_TRACE_TOOL_EVENTS_ZMQ_ENDPOINT": f"ipc://{ipc_dir}/g2.ipc",
               "DYN_AGENT_TRACE_TOOL_EVENTS_ZMQ_TOPIC": "g2-topic"}
        p, endpoint = _start_cli(["-o", str(tmp_path / "t.jsonl"), "--max-messages", "30"], env=env)
        assert endpoint == f"ipc://{ipc_dir}/env.ipc"
        pub_env = {**os.environ, "DYN_AGENT_TOOL_EVENTS_ZMQ_TOPIC": "g2-topic"}
        # this harness takes endpoint and topic from its own environment (Pi's variables)
        code = ("import sys; from trace_pipe.tools import ToolEventPublisher\n"
                "pub = ToolEventPublisher(trajectory_id='t')\n"
                "[pub.tool_end(f'c{i}', 'x') for i in range(30)]\n"
                "s = pub.close(timeout=10); assert s.sent == 30, s")
        pub_env["DYN_AGENT_TOOL_EVENTS_ZMQ_ENDPOINT"] = endpoint
        subprocess.run([sys.executable, "-c", code], env=pub_env, check=True, timeout=60)
        _, err = p.communicate(timeout=30)
        assert p.returncode == 0, err
        assert "received 30, written 30, dropped 0" in err
        assert len(list(iter_lines(str(tmp_path / "t.jsonl")))) == 30

        # --topic beats the environment: same publisher topic is now wrong
        p, endpoint = _start_cli(["-o", str(tmp_path / "u.jsonl"), "--max-messages", "5", "--topic", "flag",
                                  "--endpoint", f"ipc://{ipc_dir}/flag.ipc"], env=env)
        assert endpoint == f"ipc://{ipc_dir}/flag.ipc"
        pub_env["DYN_AGENT_TOOL_EVENTS_ZMQ_ENDPOINT"] = endpoint
        subprocess.run([sys.executable, "-c", code.replace("30", "5")], env=pub_env, check=True, timeout=60)
        _, err = p.communicate(timeout=30)
        assert "received 5, written 0, dropped 5 (topic 5)" in err
    finally:
        for f in Path(ipc_dir).iterdir():
            f.unlink()
        os.rmdir(ipc_dir)


def test_cli_bind_failure_is_one_line_and_nonzero(tmp_path):
    ctx = zmq.Context()
    holder = ctx.socket(zmq.PULL)
    holder.bind("tcp://127.0.0.1:*")
    try:
        taken = holder.getsockopt_string(zmq.LAST_ENDPOINT)
        r = subprocess.run(CLI + ["collect", "--endpoint", taken, "-o", str(tmp_path / "t.jsonl")],
                           capture_output=True, text=True, timeout=60)
    finally:
        holder.close(0)
        ctx.term()
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [f"error: cannot bind {taken}: Address already in use"]
    assert not (tmp_path / "t.jsonl").exists()


@pytest.mark.parametrize("name", ["tools.jsonl", "tools.jsonl.gz"])
def test_periodic_flush_puts_events_on_disk_while_running(tmp_path, name):
    from trace_pipe.pipeline.errors import TraceError

    cfg = CollectorConfig(endpoint="tcp://127.0.0.1:*", output=str(tmp_path / name), flush_interval_s=0.1)
    with _Running(cfg) as run:
        ctx = zmq.Context()
        push = ctx.socket(zmq.PUSH)
        push.connect(run.endpoint)
        try:
            for i in range(10):
                push.send_multipart(encode_message("agent-tool-events", i, {
                    "schema": "dynamo.request.trace.v1", "event_type": "tool_end", "event_time_unix_ms": i,
                    "session_id": "s", "tool": {"tool_call_id": f"c{i}", "tool_class": "x"}}))
            deadline = time.monotonic() + 10
            seen = -1
            while time.monotonic() < deadline:
                try:
                    seen = len(_rows(run.c.stats.paths))
                except TraceError:  # a gzip member being written right now
                    seen = -1
                if seen == 10:
                    break
                time.sleep(0.02)
            # far below the 1 MiB buffer: only the flush interval can have written them
            assert seen == 10 and run.t.is_alive()
        finally:
            push.close(0)
            ctx.term()
    assert run.c.stats.written == 10
