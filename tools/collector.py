"""The collector: bind a PULL socket, validate tool events as Dynamo does, write enveloped rows.

One thread owns the socket and the sink. It polls with a short timeout so a stop request (signal
handler, another thread, `max_messages`) is noticed within `POLL_MS`; after a stop it drains what
the socket already holds, flushes, closes the file and closes the socket. Every received message
ends up either written or counted under a drop reason: `received == written + sum(dropped)`.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import msgpack
import orjson
import zmq

from trace_pipe.pipeline.errors import TraceError

from .sink import DEFAULT_BUFFER_BYTES, DEFAULT_ROLL_BYTES, SinkWriteError, envelope_prefix, open_sink
from .validation import InvalidToolEvent, normalize
from .wire import DEFAULT_TOPIC, SEQUENCE_BYTES

POLL_MS = 50  # stop latency bound
BATCH = 4096  # messages handled between clock checks
DEFAULT_RCVHWM = 100_000


@dataclass(frozen=True, slots=True)
class CollectorConfig:
    endpoint: str
    output: str | None  # None: stderr only
    topic: str = DEFAULT_TOPIC  # "" accepts any topic
    fmt: str | None = None  # "jsonl" | "jsonl_gz"; None: by the output's suffix
    stderr: bool = False  # also write every row to stderr (Dynamo's `stderr` sink)
    flush_interval_s: float = 1.0
    buffer_bytes: int = DEFAULT_BUFFER_BYTES
    roll_bytes: int = DEFAULT_ROLL_BYTES
    roll_lines: int | None = None
    max_messages: int | None = None  # stop after this many received messages
    drain_timeout_s: float = 2.0  # bound on draining after a stop (publishers may keep sending)
    rcvhwm: int = DEFAULT_RCVHWM


@dataclass(slots=True)
class CollectStats:
    received: int = 0
    written: int = 0
    dropped: Counter = field(default_factory=Counter)  # reason (validation.DROP_REASONS) -> count
    paths: list[str] = field(default_factory=list)
    endpoint: str = ""
    write_error: str | None = None  # the one-line error of a failed write (collecting stopped there)
    lost: int = 0  # received and valid, but not on disk: buffered when the write failed

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())

    def summary(self) -> str:
        """One line for stderr."""
        s = f"received {self.received}, written {self.written}, dropped {self.dropped_total}"
        if self.dropped:
            s += " (" + ", ".join(f"{k} {v}" for k, v in sorted(self.dropped.items())) + ")"
        if self.write_error is not None:
            s += f", not written {self.lost} (the write failed)"
        return s


class Collector:
    """`Collector(cfg).bind()` then `run()` (blocking) in the thread that owns it; `stop()` from
    anywhere (it only sets an event, so it is safe in a signal handler)."""

    def __init__(self, cfg: CollectorConfig, *, context: zmq.Context | None = None) -> None:
        self.cfg = cfg
        self.stats = CollectStats()
        self._stop = threading.Event()
        self._ctx = context or zmq.Context.instance()
        self._sock: zmq.Socket | None = None
        self._context_cache: dict = {}
        self.endpoint = ""

    def bind(self) -> str:
        """Bind the PULL socket; returns the actual endpoint (`tcp://127.0.0.1:*` picks a port)."""
        sock = self._ctx.socket(zmq.PULL)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVHWM, self.cfg.rcvhwm)
        try:
            sock.bind(self.cfg.endpoint)
        except zmq.ZMQError as e:
            sock.close(0)
            raise TraceError(f"error: cannot bind {self.cfg.endpoint}: {zmq.strerror(e.errno)}") from None
        self._sock = sock
        self.endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self.stats.endpoint = self.endpoint
        return self.endpoint

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> CollectStats:
        if self._sock is None:
            self.bind()
        cfg = self.cfg
        sink = open_sink(cfg.output, fmt=cfg.fmt, stderr=cfg.stderr, buffer_bytes=cfg.buffer_bytes,
                         roll_bytes=cfg.roll_bytes, roll_lines=cfg.roll_lines)
        self.stats.paths = sink.paths
        try:
            try:
                self._loop(sink)
                self._drain(sink)
            except (SinkWriteError, OSError) as e:  # stop here, keep what is on disk
                self._failed(e)
            finally:
                try:
                    sink.close()
                except (SinkWriteError, OSError) as e:
                    self._failed(e)
        finally:
            self._sock.close(0)
            self._sock = None
        # every line either on disk whole, or counted here (a file never ends inside a line or member)
        self.stats.lost = sink.lost
        self.stats.written -= sink.lost
        return self.stats

    def _failed(self, e: Exception) -> None:
        if self.stats.write_error is None:
            self.stats.write_error = str(e) if isinstance(e, TraceError) else f"error: {e}"

    # -- hot path ----------------------------------------------------------------------------
    def _handle_batch(self, sink, limit: int) -> int:
        """Receive and handle up to `limit` queued messages without blocking; returns how many."""
        # Frames are received one by one (copy=False exposes `.more` without pyzmq's per-call
        # option lookup in recv_multipart, which costs as much as everything else here) and the
        # payload is decoded straight from ZMQ's buffer.
        recv = self._sock.recv
        NOBLOCK = zmq.NOBLOCK
        Again = zmq.Again
        topic = self.cfg.topic.encode()
        any_topic = not topic
        unpack = msgpack.unpackb
        dumps = orjson.dumps
        lines: list[bytes] = []
        nbytes = 0
        dropped = self.stats.dropped
        cache = self._context_cache
        prefix = envelope_prefix(sink.elapsed_ms())  # one stamp per batch (ms resolution anyway)
        n = 0
        while n < limit:
            try:
                f = recv(NOBLOCK, False)
            except Again:
                break
            n += 1
            # a multipart message is delivered atomically: once its first frame is here, all are
            if not f.more:
                dropped["frame_count"] += 1
                continue
            t = f.bytes
            f = recv(0, False)
            if not f.more:
                dropped["frame_count"] += 1
                continue
            seq_len = len(f)
            f = recv(0, False)
            if f.more:
                while recv(0, False).more:
                    pass
                dropped["frame_count"] += 1
                continue
            if not any_topic and t != topic:
                dropped["topic"] += 1
                continue
            if seq_len != SEQUENCE_BYTES:
                dropped["sequence"] += 1
                continue
            try:
                obj = unpack(f.buffer)
            except Exception:  # ExtraData, FormatError, StackError, ValueError, ...: all "not msgpack"
                dropped["msgpack"] += 1
                continue
            try:
                row = normalize(obj, cache)
            except InvalidToolEvent as e:
                dropped[e.reason] += 1
                continue
            try:
                body = dumps(row)
            except orjson.JSONEncodeError:
                # only the free-form agent_context maps (compaction, kv_hints, agent_headers) are
                # not type-checked field by field; MessagePack bin/bytes keys there are not JSON
                dropped["agent_context"] += 1
                continue
            line = prefix + body + b"}\n"
            lines.append(line)
            nbytes += len(line)
        # counted before the sink takes them: a write failing inside add_many still counts them
        # as received, and as written until the sink reports them lost
        self.stats.received += n
        self.stats.written += len(lines)
        if lines:
            sink.add_many(lines, nbytes)
        return n

    def _loop(self, sink) -> None:
        cfg = self.cfg
        sock = self._sock
        interval = max(0.001, cfg.flush_interval_s)
        next_flush = time.monotonic() + interval
        max_messages = cfg.max_messages
        stop = self._stop
        while not stop.is_set():
            if sock.poll(POLL_MS, zmq.POLLIN):
                limit = BATCH
                if max_messages is not None:
                    limit = min(limit, max_messages - self.stats.received)
                self._handle_batch(sink, limit)
                if max_messages is not None and self.stats.received >= max_messages:
                    break
            now = time.monotonic()
            if now >= next_flush:
                sink.flush()
                next_flush = now + interval

    def _drain(self, sink) -> None:
        """Take what the socket already holds (bounded in time: publishers may still be sending)."""
        if self.cfg.max_messages is not None and self.stats.received >= self.cfg.max_messages:
            return
        deadline = time.monotonic() + max(0.0, self.cfg.drain_timeout_s)
        while time.monotonic() < deadline:
            limit = BATCH
            if self.cfg.max_messages is not None:
                limit = min(limit, self.cfg.max_messages - self.stats.received)
            if limit <= 0 or self._handle_batch(sink, limit) < limit:
                break  # the socket was empty


def collect(cfg: CollectorConfig) -> CollectStats:
    """Bind, run until `max_messages` (no signal handling: see the CLI for that)."""
    c = Collector(cfg)
    c.bind()
    return c.run()
