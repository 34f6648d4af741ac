"""Throughput of tool events: publisher processes -> `trace-pipe collect` -> file.

Prints events/s for the full path (ToolEventPublisher in N subprocesses -> Collector in this
process -> .jsonl / .jsonl.gz) and, as the baseline measured in the same process, raw pyzmq
PUSH -> PULL of the very same pre-encoded frames (no record building, validation or file), both
the idiomatic way (send_multipart / recv_multipart) and the lean way the publisher and collector
use (frame by frame with int flags). The ratio to the lean one is the share of bare ZMQ
throughput the pipeline keeps. The clock starts when every sender is connected and released and
stops when the collector has written and closed its file. CPU time per event (collector thread,
publisher processes) is printed too, and the load average: on a shared box it moves every rate.

    .venv/bin/python bench/bench_collect.py [--events 200000] [--publishers 1] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time

import zmq

from trace_pipe.tools import Collector, CollectorConfig
from trace_pipe.tools.wire import encode_message

# A realistic terminal row, as Pi sends it (G2 record).
RECORD = {
    "schema": "dynamo.agent.trace.v1", "event_type": "tool_end", "event_time_unix_ms": 1777312801500,
    "event_source": "harness",
    "agent_context": {"session_type_id": "bench", "session_id": "bench-run", "trajectory_id": "bench-run:a"},
    "tool": {"tool_call_id": "call-000000000", "tool_class": "bash", "started_at_unix_ms": 1777312801080,
             "ended_at_unix_ms": 1777312801500, "duration_ms": 420.5, "status": "succeeded",
             "output_bytes": 1234},
}

_PUBLISHER = """
import sys, time
from trace_pipe.tools import ToolEventPublisher
endpoint, n, pid = sys.argv[1], int(sys.argv[2]), sys.argv[3]
pub = ToolEventPublisher(endpoint, session_type_id="bench", session_id="bench-run",
                         trajectory_id="bench-run:" + pid, capacity=n + 1)
sys.stdout.write("ready\\n"); sys.stdout.flush()
sys.stdin.readline()
end = pub.tool_end
for i in range(n):
    end(f"call-{i:09d}", "bash", started_at_unix_ms=1777312801080, ended_at_unix_ms=1777312801500,
        duration_ms=420.5, output_bytes=1234)
s = pub.close(timeout=60)
assert s.sent == n, s
"""

# argv: endpoint n payload_hex lean(0/1). lean: the publisher's transport (three plain sends with
# int flags); idiomatic: send_multipart.
_RAW = """
import sys, zmq
endpoint, n, payload_hex, lean = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"
payload = bytes.fromhex(payload_hex)
ctx = zmq.Context()
s = ctx.socket(zmq.PUSH)
s.setsockopt(zmq.SNDHWM, 100000)
s.connect(endpoint)
sys.stdout.write("ready\\n"); sys.stdout.flush()
sys.stdin.readline()
topic = b"agent-tool-events"
if lean:
    send = s.send
    MORE, LAST = int(zmq.SNDMORE), 0
    for i in range(n):
        send(topic, MORE); send(i.to_bytes(8, "big"), MORE); send(payload, LAST)
else:
    send = s.send_multipart
    for i in range(n):
        send((topic, i.to_bytes(8, "big"), payload))
s.close(linger=60000)
ctx.term()
"""


def _start(code: str, args: list[str]) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", code, *args], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    return p


def _release(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()


def _finish(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.stdin.close()
        if p.wait(120) != 0:
            raise SystemExit(f"sender exited with {p.returncode}")


def bench_raw(events: int, publishers: int, lean: bool) -> float:
    """Baseline: bare PUSH -> PULL of the same frames; the receiver only counts. lean: the
    collector's own transport code (frame by frame, `.more` checks); else recv_multipart."""
    ctx = zmq.Context.instance()
    pull = ctx.socket(zmq.PULL)
    pull.setsockopt(zmq.RCVHWM, 100_000)
    pull.bind("tcp://127.0.0.1:*")
    ep = pull.getsockopt_string(zmq.LAST_ENDPOINT)
    payload = encode_message("agent-tool-events", 0, RECORD)[2]
    per = events // publishers
    procs = [_start(_RAW, [ep, str(per), payload.hex(), "1" if lean else "0"]) for _ in range(publishers)]
    t0 = time.perf_counter()
    _release(procs)
    total = per * publishers
    if lean:
        recv = pull.recv
        for _ in range(total):
            f = recv(0, False)
            while f.more:
                f = recv(0, False)
            f.buffer
    else:
        recv = pull.recv_multipart
        for _ in range(total):
            recv()
    dt = time.perf_counter() - t0
    _finish(procs)
    pull.close(0)
    return total / dt


def bench_pipeline(events: int, publishers: int, output_name: str) -> tuple[float, int, float, float, float]:
    """(events/s, bytes on disk, CPU us/event of: the collector thread, this process (collector
    thread + ZMQ I/O thread + gzip writer), the publisher processes)."""
    per = events // publishers
    total = per * publishers
    with tempfile.TemporaryDirectory() as d:
        c = Collector(CollectorConfig(endpoint="tcp://127.0.0.1:*", output=os.path.join(d, output_name),
                                      max_messages=total))
        ep = c.bind()
        procs = [_start(_PUBLISHER, [ep, str(per), str(i)]) for i in range(publishers)]
        cpu = []

        def run() -> None:
            t = time.thread_time()
            c.run()
            cpu.append(time.thread_time() - t)

        th = threading.Thread(target=run)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        self_before = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        th.start()
        _release(procs)
        th.join(120)
        dt = time.perf_counter() - t0
        if th.is_alive():
            c.stop()
            th.join(10)
        _finish(procs)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        self_after = resource.getrusage(resource.RUSAGE_SELF)
        s = c.stats
        if s.written != total or s.received != total:
            raise SystemExit(f"lost events: {s.summary()}")
        size = sum(os.path.getsize(p) for p in s.paths)
    pub_cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    own_cpu = self_after.ru_utime + self_after.ru_stime - self_before.ru_utime - self_before.ru_stime
    # publisher CPU includes interpreter start-up (~0.1 s per process): small against 200k events
    return total / dt, size, cpu[0] / total * 1e6, own_cpu / total * 1e6, pub_cpu / total * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--publishers", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3, help="best of N runs of each")
    a = ap.parse_args()
    print(f"{a.events} events, {a.publishers} publisher process(es), best of {a.repeat}, "
          f"{os.cpu_count()} cpus")
    idiom = max(bench_raw(a.events, a.publishers, False) for _ in range(a.repeat))
    raw = max(bench_raw(a.events, a.publishers, True) for _ in range(a.repeat))
    print(f"  baseline: raw pyzmq send_multipart -> recv_multipart    : {idiom:>9,.0f} events/s")
    print(f"  baseline: raw pyzmq, lean frame-by-frame (the ceiling) : {raw:>9,.0f} events/s")
    for name in ("tools.jsonl", "tools.jsonl.gz"):
        runs = [bench_pipeline(a.events, a.publishers, name) for _ in range(a.repeat)]
        rate, size, ccpu, proc, pcpu = max(runs)
        print(f"  ToolEventPublisher -> collect -> {name:<15}     : {rate:>9,.0f} events/s "
              f"({rate / raw:.2f}x lean baseline, {size / a.events:.0f} B/event on disk)")
        print(f"      CPU per event: collector thread {ccpu:.1f} us, collector process {proc:.1f} us, "
              f"publisher processes {pcpu:.1f} us -> CPU-bound ceiling on {os.cpu_count()} idle cores "
              f"~{min(1e6 / ccpu, os.cpu_count() * 1e6 / (proc + pcpu)):,.0f} events/s")
    print(f"  load average while measuring: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
