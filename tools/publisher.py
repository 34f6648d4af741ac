"""`ToolEventPublisher`: a harness-side tool-event relay in the manner of Pi's (dynamo-formats.md §3.3).

The caller builds and MessagePack-encodes the record (so a bad record fails where it was made) and
appends it to a bounded in-process queue; it never waits on the network. A daemon sender thread
owns the PUSH socket (connect, `linger` 0, send high-water mark) and sends the three frames with a
monotonic sequence number. When the queue is full the event is dropped (`overflow="drop_new"`,
Pi's behaviour) or the oldest queued one is (`"drop_oldest"`); either way it is counted.

`close(timeout)` is the one bounded wait: it lets the sender empty the queue and ZMQ put the
frames on the wire for at most `timeout` seconds, then counts what is left as `dropped_unsent`.

Record shapes (`shape=`):
* `"agent"` (default, what Pi sends): the full G2 record, `schema:"dynamo.agent.trace.v1"`,
  `event_source:"harness"`, `agent_context:{session_type_id, session_id, trajectory_id,
  parent_trajectory_id?}`. Accepted by G1-G3a Dynamo and by `trace-pipe collect`.
* `"request"`: the G3b/G3c ingress, `schema:"dynamo.request.trace.v1"`, `session_id` (= the
  trajectory id, the chain) and `parent_session_id?` at top level. What current Dynamo expects;
  also accepted by `trace-pipe collect`.
"""

from __future__ import annotations

import atexit
import collections
import functools
import inspect
import os
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import zmq

from . import env as envmod
from .validation import AGENT_SCHEMA, REQUEST_SCHEMA
from .wire import encode_payload

Shape = Literal["agent", "request"]
Overflow = Literal["drop_new", "drop_oldest"]

_IDLE_WAIT_S = 0.05  # sender sleep when the queue is empty (bounds wake-up latency if a wake is missed)
_SEND_POLL_MS = 50  # sender re-checks for close while the socket is at its high-water mark


def unix_ms() -> int:
    return time.time_ns() // 1_000_000


def output_size(value: object) -> int | None:
    """`output_bytes` for a tool result: UTF-8 length of text, length of bytes, else unknown."""
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogatepass"))
    if isinstance(value, (bytes, bytearray, memoryview)):
        return len(value)
    return None


def tool_class_of(name: str | None) -> str:
    """Pi's tool family: the name up to the first `---` or `/`, or "unknown"."""
    name = (name or "").strip()
    if not name:
        return "unknown"
    return name.split("---", 1)[0].split("/", 1)[0] or "unknown"


@dataclass(frozen=True, slots=True)
class PublisherStats:
    emitted: int  # accepted into the queue
    sent: int  # handed to ZMQ
    dropped_full: int  # rejected (drop_new) or evicted (drop_oldest) because the queue was full
    dropped_unsent: int  # still queued when close() gave up
    disabled: int  # events offered with no endpoint configured, or after close()
    queued: int  # in the queue right now


class ToolCall:
    """Handle of one timed tool call (`with publisher.span(...) as call:`); set the result size
    with `call.set_output(text)` or `call.output_bytes = n`, or override `call.status`."""

    __slots__ = ("tool_call_id", "tool_class", "started_at_unix_ms", "_t0", "output_bytes",
                 "output_tokens", "status", "error_type", "identity")

    def __init__(self, tool_call_id: str, tool_class: str, identity: dict) -> None:
        self.tool_call_id = tool_call_id
        self.tool_class = tool_class
        self.identity = identity
        self.started_at_unix_ms = unix_ms()
        self._t0 = time.perf_counter_ns()
        self.output_bytes: int | None = None
        self.output_tokens: int | None = None
        self.status: str | None = None  # None: from the outcome
        self.error_type: str | None = None

    def set_output(self, value: object) -> None:
        self.output_bytes = output_size(value)

    def elapsed_ms(self) -> float:
        # monotonic difference rounded to 0.001 ms, as Pi does
        return max(0.0, round((time.perf_counter_ns() - self._t0) / 1e6, 3))


class ToolEventPublisher:
    """Send tool events to a collector (`trace-pipe collect` or Dynamo). Arguments win over the
    harness environment (`DYN_AGENT_TOOL_EVENTS_ZMQ_ENDPOINT`, `..._TOPIC`, `DYN_AGENT_SESSION_ID`,
    `DYN_AGENT_TRAJECTORY_ID`, `DYN_AGENT_PARENT_TRAJECTORY_ID`, `DYN_AGENT_SESSION_TYPE_ID`,
    `DYN_AGENT_TOOL_EVENTS_QUEUE_CAPACITY`). With no endpoint anywhere the publisher is a no-op."""

    def __init__(self, endpoint: str | None = None, *, topic: str | None = None,
                 session_id: str | None = None, trajectory_id: str | None = None,
                 parent_trajectory_id: str | None = None, session_type_id: str | None = None,
                 shape: Shape = "agent", capacity: int | None = None, overflow: Overflow = "drop_new",
                 sndhwm: int = envmod.DEFAULT_QUEUE_CAPACITY, context: zmq.Context | None = None,
                 env: Mapping[str, str] = os.environ) -> None:
        if shape not in ("agent", "request"):
            raise ValueError(f"shape must be 'agent' or 'request', got {shape!r}")
        if overflow not in ("drop_new", "drop_oldest"):
            raise ValueError(f"overflow must be 'drop_new' or 'drop_oldest', got {overflow!r}")
        self.endpoint = endpoint or envmod.publisher_endpoint(env)
        self.topic = topic if topic is not None else envmod.publisher_topic(env)
        self.shape: Shape = shape
        self.capacity = capacity if capacity and capacity > 0 else envmod.queue_capacity(env)
        self.overflow: Overflow = overflow
        # identity as Pi resolves it: trajectory <- env or the harness session; session <- env or trajectory
        traj = (trajectory_id or envmod.first_env(env, ("DYN_AGENT_TRAJECTORY_ID",))
                or session_id or envmod.first_env(env, ("DYN_AGENT_SESSION_ID",))
                or f"py-{uuid.uuid4().hex[:16]}")
        self.trajectory_id = traj
        self.session_id = session_id or envmod.first_env(env, ("DYN_AGENT_SESSION_ID",)) or traj
        self.parent_trajectory_id = (parent_trajectory_id
                                     or envmod.first_env(env, ("DYN_AGENT_PARENT_TRAJECTORY_ID",)))
        self.session_type_id = (session_type_id or envmod.first_env(env, ("DYN_AGENT_SESSION_TYPE_ID",))
                                or envmod.DEFAULT_SESSION_TYPE_ID)
        self._default_identity = self._identity(traj, self.parent_trajectory_id)

        self._queue: collections.deque[bytes] = collections.deque()
        # Counters: `_sent` has one writer (the sender thread); the rest change on rare paths
        # under the lock. `emitted` is derived, so the hot path takes no lock.
        self._lock = threading.Lock()
        self._evicted = 0  # drop_oldest evictions (were emitted, then dropped)
        self._dropped_full = 0
        self._dropped_unsent = 0
        self._disabled = 0
        self._sent = 0
        self._closing = False
        self._abort = False
        self._closed = False
        self._idle = False
        self._wake = threading.Event()
        self._drained = threading.Event()
        self._sock: zmq.Socket | None = None
        self._thread: threading.Thread | None = None
        # A private context by default: zmq_close() only *schedules* lingering, the frames still
        # queued in ZMQ go out before zmq_ctx_term() returns, so close() terms it to honour its budget.
        self._own_ctx = context is None
        self._ctx: zmq.Context | None = None
        if self.endpoint:
            ctx = zmq.Context() if context is None else context
            self._ctx = ctx
            sock = ctx.socket(zmq.PUSH)
            sock.setsockopt(zmq.LINGER, 0)  # an abandoned publisher never holds up exit
            sock.setsockopt(zmq.SNDHWM, max(1, sndhwm))
            sock.connect(self.endpoint)
            self._sock = sock
            self._topic_frame = self.topic.encode()
            self._thread = threading.Thread(target=self._run, name="tool-event-publisher", daemon=True)
            self._thread.start()
            _LIVE.add(self)

    # -- records -----------------------------------------------------------------------------
    def _identity(self, trajectory_id: str, parent: str | None) -> dict:
        if self.shape == "request":
            d = {"session_id": trajectory_id}
            if parent:
                d["parent_session_id"] = parent
            return d
        d = {"session_type_id": self.session_type_id, "session_id": self.session_id,
             "trajectory_id": trajectory_id}
        if parent:
            d["parent_trajectory_id"] = parent
        return d

    def identity(self, trajectory_id: str | None = None, parent_trajectory_id: str | None = None) -> dict:
        """Identity fields for a record; overrides serve subagents sharing one publisher."""
        if trajectory_id is None and parent_trajectory_id is None:
            return self._default_identity
        return self._identity(trajectory_id or self.trajectory_id,
                              parent_trajectory_id if parent_trajectory_id is not None
                              else self.parent_trajectory_id)

    def _record(self, event_type: str, event_time: int, tool: dict, identity: dict) -> dict:
        if self.shape == "request":
            return {"schema": REQUEST_SCHEMA, "event_type": event_type, "event_time_unix_ms": event_time,
                    **identity, "tool": tool}
        return {"schema": AGENT_SCHEMA, "event_type": event_type, "event_time_unix_ms": event_time,
                "event_source": "harness", "agent_context": identity, "tool": tool}

    def tool_start(self, tool_call_id: str, tool_class: str, *, started_at_unix_ms: int | None = None,
                   identity: dict | None = None) -> bool:
        """Live-status row (`status:"running"`); terminal rows do not depend on it."""
        t = unix_ms() if started_at_unix_ms is None else started_at_unix_ms
        tool = {"tool_call_id": tool_call_id, "tool_class": tool_class, "started_at_unix_ms": t,
                "status": "running"}
        return self.publish(self._record("tool_start", t, tool, identity or self._default_identity))

    def tool_end(self, tool_call_id: str, tool_class: str, *, started_at_unix_ms: int | None = None,
                 ended_at_unix_ms: int | None = None, duration_ms: float | None = None,
                 status: str | None = None, output_bytes: int | None = None,
                 output_tokens: int | None = None, error_type: str | None = None,
                 error: bool = False, identity: dict | None = None) -> bool:
        """Self-contained terminal row (`tool_end`, or `tool_error` when `error`): a missing start
        means `started_at = ended_at`, duration 0, as Pi does."""
        end = unix_ms() if ended_at_unix_ms is None else ended_at_unix_ms
        start = end if started_at_unix_ms is None else started_at_unix_ms
        if duration_ms is None:
            duration_ms = float(max(0, end - start)) if started_at_unix_ms is not None else 0.0
        tool: dict[str, Any] = {"tool_call_id": tool_call_id, "tool_class": tool_class,
                                "started_at_unix_ms": start, "ended_at_unix_ms": end,
                                "duration_ms": duration_ms,
                                "status": status or ("error" if error else "succeeded")}
        if error_type is not None:
            tool["error_type"] = error_type
        if output_bytes is not None:
            tool["output_bytes"] = output_bytes
        if output_tokens is not None:
            tool["output_tokens"] = output_tokens
        return self.publish(self._record("tool_error" if error else "tool_end", end, tool,
                                         identity or self._default_identity))

    def tool_error(self, tool_call_id: str, tool_class: str, **kw: Any) -> bool:
        return self.tool_end(tool_call_id, tool_class, error=True, **kw)

    def span(self, tool_class: str, tool_call_id: str | None = None, *, emit_start: bool = True,
             trajectory_id: str | None = None, parent_trajectory_id: str | None = None) -> "_Span":
        """Time a tool call: `with pub.span("bash", call_id) as call: ...`. An exception gives a
        `tool_error` (`cancelled` for cancellation / KeyboardInterrupt) and propagates."""
        return _Span(self, tool_class, tool_call_id, emit_start,
                     self.identity(trajectory_id, parent_trajectory_id))

    def traced(self, tool_class: str | None = None, *, emit_start: bool = True) -> Callable:
        """Decorator: every call of the function (sync or async) is one tool span; a str/bytes
        return value sets `output_bytes`."""
        def deco(fn: Callable) -> Callable:
            cls = tool_class or fn.__name__
            if inspect.iscoroutinefunction(fn):
                @functools.wraps(fn)
                async def awrapper(*a: Any, **k: Any) -> Any:
                    with self.span(cls, emit_start=emit_start) as call:
                        result = await fn(*a, **k)
                        call.set_output(result)
                        return result
                return awrapper

            @functools.wraps(fn)
            def wrapper(*a: Any, **k: Any) -> Any:
                with self.span(cls, emit_start=emit_start) as call:
                    result = fn(*a, **k)
                    call.set_output(result)
                    return result
            return wrapper
        return deco

    # -- queue -------------------------------------------------------------------------------
    def publish(self, record: Mapping[str, Any]) -> bool:
        """Queue one record (any shape of §3.3) without blocking; False if it was not queued
        (no endpoint, closed, or queue full under drop_new). Unencodable values raise TypeError."""
        if self._sock is None or self._closing:
            with self._lock:
                self._disabled += 1
            return False
        payload = encode_payload(record)  # may raise TypeError: reported where the record was made
        q = self._queue
        if len(q) >= self.capacity:
            if self.overflow == "drop_new":
                with self._lock:
                    self._dropped_full += 1
                return False
            try:
                q.popleft()
                with self._lock:
                    self._dropped_full += 1
                    self._evicted += 1
            except IndexError:  # the sender emptied it meanwhile
                pass
        q.append(payload)
        if self._idle:
            self._wake.set()
        return True

    @property
    def stats(self) -> PublisherStats:
        """Exact once closed; while sending, an event in flight may be missed for a moment."""
        with self._lock:
            queued = len(self._queue)
            sent = self._sent
            emitted = sent + queued + self._dropped_unsent + self._evicted
            return PublisherStats(emitted, sent, self._dropped_full, self._dropped_unsent,
                                  self._disabled, queued)

    # -- sender thread -----------------------------------------------------------------------
    def _run(self) -> None:
        q = self._queue
        sock = self._sock
        # three plain sends with int flags: send_multipart's per-frame flag arithmetic on enums
        # costs three times the sends themselves. Once the first frame is accepted ZMQ accepts the
        # rest of the message (the high-water mark is checked per message), so it stays atomic.
        send = sock.send
        MORE = int(zmq.SNDMORE) | int(zmq.NOBLOCK)
        LAST = int(zmq.NOBLOCK)
        topic = self._topic_frame
        seq = 0
        while True:
            try:
                payload = q.popleft()
            except IndexError:
                if self._closing:
                    break
                self._idle = True
                if not q:
                    self._wake.wait(_IDLE_WAIT_S)
                self._wake.clear()
                self._idle = False
                continue
            seq_frame = seq.to_bytes(8, "big")
            while True:
                try:
                    send(topic, MORE)
                    send(seq_frame, MORE)
                    send(payload, LAST)
                    break
                except zmq.Again:
                    # at the high-water mark (collector slow or absent): wait here, never in the caller
                    if self._abort:
                        q.appendleft(payload)
                        self._drained.set()
                        return
                    sock.poll(_SEND_POLL_MS, zmq.POLLOUT)
                except zmq.ZMQError:
                    if self._abort or self._closing:
                        q.appendleft(payload)
                        self._drained.set()
                        return
                    raise
            seq += 1
            self._sent += 1
        self._drained.set()

    def flush(self, timeout: float = 1.0) -> bool:
        """Wait (bounded) until the queue is empty; True if it emptied."""
        deadline = time.monotonic() + timeout
        while self._queue and time.monotonic() < deadline:
            self._wake.set()
            time.sleep(0.001)
        return not self._queue

    def close(self, timeout: float = 1.0) -> PublisherStats:
        """Send what is queued for at most `timeout` s, then close; idempotent."""
        if self._closed:
            return self.stats
        self._closed = True
        _LIVE.discard(self)
        if self._sock is None:
            return self.stats
        deadline = time.monotonic() + max(0.0, timeout)
        self._closing = True
        self._wake.set()
        if not self._drained.wait(max(0.0, deadline - time.monotonic())):
            self._abort = True
            self._drained.wait(1.0)  # the sender notices within one poll interval
        self._thread.join(1.0)
        with self._lock:
            self._dropped_unsent += len(self._queue)
            self._queue.clear()
        # linger for the rest of the budget so frames ZMQ still holds reach the collector; with
        # a shared context the caller's ctx.term() is where that wait happens
        linger_ms = int(max(0.0, deadline - time.monotonic()) * 1000)
        self._sock.close(linger=linger_ms)
        self._sock = None
        if self._own_ctx:
            self._ctx.term()
        return self.stats

    def __enter__(self) -> "ToolEventPublisher":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Span:
    __slots__ = ("_pub", "_class", "_id", "_start", "_identity", "call")

    def __init__(self, pub: ToolEventPublisher, tool_class: str, tool_call_id: str | None,
                 emit_start: bool, identity: dict) -> None:
        self._pub = pub
        self._class = tool_class
        self._id = tool_call_id or f"call-{uuid.uuid4().hex}"
        self._start = emit_start
        self._identity = identity
        self.call: ToolCall | None = None

    def __enter__(self) -> ToolCall:
        call = ToolCall(self._id, self._class, self._identity)
        self.call = call
        if self._start:
            self._pub.tool_start(call.tool_call_id, call.tool_class,
                                 started_at_unix_ms=call.started_at_unix_ms, identity=self._identity)
        return call

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        call = self.call
        duration = call.elapsed_ms()
        end = unix_ms()
        failed = exc_type is not None
        status = call.status
        if status is None and failed:
            cancelled = issubclass(exc_type, KeyboardInterrupt) or exc_type.__name__ == "CancelledError"
            status = "cancelled" if cancelled else "error"
        error_type = call.error_type or (exc_type.__name__ if failed else None)
        self._pub.tool_end(call.tool_call_id, call.tool_class, started_at_unix_ms=call.started_at_unix_ms,
                           ended_at_unix_ms=end, duration_ms=duration, status=status,
                           output_bytes=call.output_bytes, output_tokens=call.output_tokens,
                           error_type=error_type, error=failed, identity=self._identity)


# Publishers still open at interpreter exit get a short, bounded flush.
_LIVE: "weakref.WeakSet[ToolEventPublisher]" = weakref.WeakSet()


@atexit.register
def _close_live() -> None:
    for pub in list(_LIVE):
        pub.close(timeout=0.5)
