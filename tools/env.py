"""Environment variables of both ends, as Dynamo and the Pi provider read them.

Collector (Dynamo side): the G3 `DYN_REQUEST_TRACE_*` name first, then the G2 `DYN_AGENT_TRACE_*`
name. Harness (publisher side): Pi's list, first set wins. Blank values count as unset (Pi trims).
Explicit arguments / CLI flags always win over the environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from .wire import DEFAULT_ENDPOINT, DEFAULT_TOPIC

COLLECTOR_ENDPOINT_VARS = ("DYN_REQUEST_TRACE_TOOL_EVENTS_ZMQ_ENDPOINT",
                           "DYN_AGENT_TRACE_TOOL_EVENTS_ZMQ_ENDPOINT")
COLLECTOR_TOPIC_VARS = ("DYN_REQUEST_TRACE_TOOL_EVENTS_ZMQ_TOPIC",
                        "DYN_AGENT_TRACE_TOOL_EVENTS_ZMQ_TOPIC")
# sink knobs: <prefix><suffix>, G3 prefix first
_SINK_PREFIXES = ("DYN_REQUEST_TRACE", "DYN_AGENT_TRACE")

PUBLISHER_ENDPOINT_VARS = ("DYN_AGENT_TOOL_EVENTS_ZMQ_ENDPOINT", "DYN_AGENT_TRACE_TOOL_ZMQ_ENDPOINT",
                           "DYN_AGENT_TRACE_TOOL_EVENTS_ZMQ_ENDPOINT")
PUBLISHER_TOPIC_VARS = ("DYN_AGENT_TOOL_EVENTS_ZMQ_TOPIC", "DYN_AGENT_TRACE_TOOL_ZMQ_TOPIC",
                        "DYN_AGENT_TRACE_TOOL_EVENTS_ZMQ_TOPIC")
QUEUE_CAPACITY_VAR = "DYN_AGENT_TOOL_EVENTS_QUEUE_CAPACITY"
DEFAULT_QUEUE_CAPACITY = 100_000  # Pi's default
DEFAULT_SESSION_TYPE_ID = "python_agent"


def first_env(env: Mapping[str, str], names: tuple[str, ...]) -> str | None:
    for name in names:
        v = (env.get(name) or "").strip()
        if v:
            return v
    return None


def collector_endpoint(flag: str | None, env: Mapping[str, str] = os.environ) -> str:
    return flag or first_env(env, COLLECTOR_ENDPOINT_VARS) or DEFAULT_ENDPOINT


def collector_topic(flag: str | None, env: Mapping[str, str] = os.environ) -> str:
    """`--topic ''` (explicitly empty) accepts any topic, like G2 Dynamo with no topic set."""
    if flag is not None:
        return flag
    return first_env(env, COLLECTOR_TOPIC_VARS) or DEFAULT_TOPIC


def sink_int(suffix: str, flag: int | None, default: int | None,
             env: Mapping[str, str] = os.environ) -> int | None:
    """A sink knob (`_JSONL_BUFFER_BYTES`, `_JSONL_FLUSH_INTERVAL_MS`, `_JSONL_GZ_ROLL_BYTES`,
    `_JSONL_GZ_ROLL_LINES`): flag, else G3/G2 variable, else default. Bad numbers are an error."""
    if flag is not None:
        return flag
    for prefix in _SINK_PREFIXES:
        name = prefix + suffix
        v = (env.get(name) or "").strip()
        if v:
            try:
                n = int(v)
            except ValueError:
                raise ValueError(f"environment variable {name}={v!r} is not an integer") from None
            if n <= 0:
                raise ValueError(f"environment variable {name}={v!r} must be positive")
            return n
    return default


def publisher_endpoint(env: Mapping[str, str] = os.environ) -> str | None:
    return first_env(env, PUBLISHER_ENDPOINT_VARS)


def publisher_topic(env: Mapping[str, str] = os.environ) -> str:
    return first_env(env, PUBLISHER_TOPIC_VARS) or DEFAULT_TOPIC


def queue_capacity(env: Mapping[str, str] = os.environ) -> int:
    v = first_env(env, (QUEUE_CAPACITY_VAR,))
    try:
        n = int(v) if v else 0
    except ValueError:
        n = 0
    return n if n > 0 else DEFAULT_QUEUE_CAPACITY  # Pi: non-positive or junk -> default
