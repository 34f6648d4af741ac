"""Validate a decoded tool-event payload as Dynamo does and rebuild it as the row Dynamo writes.

Dynamo decodes the MessagePack map into a Rust struct (unknown keys vanish, absent/nil optionals
are omitted, status aliases collapse to the canonical variant), validates it (dynamo-formats.md
§3.1: schema v1, `event_source` harness, a tool event type, `tool` present, no `request`, G3 also
`agent_context` present, finite `duration_ms`, no `payload`) and serializes the struct with serde,
i.e. in declared field order. `normalize` does the same in one pass and returns a dict whose
insertion order *is* that field order, so `orjson.dumps` of it is the line Dynamo writes.

Both payload shapes of §3.3 are accepted: the full G1-G3a record (with `agent_context`) and the
flattened G3b/G3c ingress (`session_id` / `parent_session_id` at top level), which Dynamo turns
into `event_source:"harness"` + `agent_context:{session_id, parent_session_id?}` before writing.
"""

from __future__ import annotations

AGENT_SCHEMA = "dynamo.agent.trace.v1"  # G1/G2
REQUEST_SCHEMA = "dynamo.request.trace.v1"  # G3
TOOL_EVENT_TYPES = frozenset(("tool_start", "tool_end", "tool_error"))

# Rust `AgentToolStatus` serde renames and aliases (case-sensitive, like serde).
STATUS_ALIASES: dict[str, str] = {
    "running": "running",
    "succeeded": "succeeded", "ok": "succeeded", "success": "succeeded",
    "error": "error", "failed": "error",
    "cancelled": "cancelled", "timeout": "cancelled", "canceled": "cancelled",
}

# Why a message was dropped; keys are stable (tests and the summary use them).
DROP_REASONS: dict[str, str] = {
    "frame_count": "not exactly 3 frames",
    "topic": "topic frame does not match",
    "sequence": "sequence frame is not 8 bytes",
    "msgpack": "payload is not valid MessagePack",
    "not_map": "payload is not a map",
    "schema": "schema is not dynamo.agent.trace.v1 / dynamo.request.trace.v1",
    "event_type": "event_type is not tool_start/tool_end/tool_error",
    "event_time": "event_time_unix_ms is not an unsigned integer",
    "event_source": "event_source is not harness",
    "agent_context": "agent_context (or ingress session_id) missing or invalid",
    "request": "tool event carries request metrics",
    "payload": "tool event carries a payload",
    "tool": "tool object missing",
    "tool_field": "tool field missing or of the wrong type (tool_call_id, tool_class, status, ...)",
    "duration_ms": "tool.duration_ms is not a finite number",
}

_U64_MAX = (1 << 64) - 1

# Declared field order of the identity structs across generations (G1 workflow, G2 trajectory,
# G3b session; early G3a rows carried the G2 set). Each generation's own keys keep their order.
_CONTEXT_STR = ("workflow_type_id", "workflow_id", "program_id", "parent_program_id",
                "session_type_id", "session_id", "trajectory_id", "parent_trajectory_id")
_CONTEXT_ORDER = (*_CONTEXT_STR, "trajectory_final", "parent_session_id", "session_final",
                  "compaction", "kv_hints", "input_trigger", "agent_headers")
_CONTEXT_BOOL = frozenset(("trajectory_final", "session_final"))
_CONTEXT_MAP = frozenset(("compaction", "kv_hints", "agent_headers"))
_CONTEXT_TEXT = frozenset((*_CONTEXT_STR, "parent_session_id", "input_trigger"))
_CHAIN_KEYS = ("session_id", "trajectory_id", "program_id")  # one must be a non-empty string
_CLAUDE_KEYS = ("source_request_id", "consumer_request_id", "child_session_id", "execution_mode")


class InvalidToolEvent(Exception):
    """A payload Dynamo would drop; `reason` is a key of DROP_REASONS."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def normalize(p: object, context_cache: dict | None = None) -> dict:
    """The row Dynamo would write for payload `p`, or InvalidToolEvent(reason).

    `context_cache` (the collector's): identical agent_contexts repeat for every event of a
    publisher, so their validated form is shared between rows (callers must not mutate rows)."""
    if type(p) is not dict:
        raise InvalidToolEvent("not_map")
    schema = p.get("schema")
    if schema != REQUEST_SCHEMA and schema != AGENT_SCHEMA:
        raise InvalidToolEvent("schema")
    event_type = p.get("event_type")
    if type(event_type) is not str or event_type not in TOOL_EVENT_TYPES:
        raise InvalidToolEvent("event_type")
    t = p.get("event_time_unix_ms")
    if type(t) is not int or t < 0 or t > _U64_MAX:
        raise InvalidToolEvent("event_time")
    if p.get("request") is not None:
        raise InvalidToolEvent("request")
    if p.get("payload") is not None:
        raise InvalidToolEvent("payload")
    ctx = p.get("agent_context")
    if ctx is None:
        context = _ingress_context(p, schema)
    else:
        source = p.get("event_source")
        # "ms_agent" is the G1 serde alias of Harness; serde writes it back as "harness"
        if source != "harness" and source != "ms_agent":
            raise InvalidToolEvent("event_source")
        if context_cache is None:
            context = _context(ctx)
        else:
            context = _cached_context(ctx, context_cache)
    return {
        "schema": schema,
        "event_type": event_type,
        "event_time_unix_ms": t,
        "event_source": "harness",
        "agent_context": context,
        "tool": _tool(p.get("tool")),
    }


def _ingress_context(p: dict, schema: str) -> dict:
    # G3b/G3c RequestTraceToolEventIngress: flattened identity, request schema only
    sid = p.get("session_id")
    if schema != REQUEST_SCHEMA or type(sid) is not str or not sid:
        raise InvalidToolEvent("agent_context")
    parent = p.get("parent_session_id")
    if parent is None:
        return {"session_id": sid}
    if type(parent) is not str:
        raise InvalidToolEvent("agent_context")
    return {"session_id": sid, "parent_session_id": parent}


_CACHE_MAX = 4096


def _cached_context(ctx: object, cache: dict) -> dict:
    if type(ctx) is not dict:
        raise InvalidToolEvent("agent_context")
    try:
        key = tuple(ctx.items())  # order-sensitive, exact values: a hit is the same context
        hit = cache.get(key)
    except TypeError:  # a nested map value (compaction, kv_hints): not cacheable
        return _context(ctx)
    if hit is None:
        hit = _context(ctx)
        # only all-text contexts are cached: `==` would let 1 or 1.0 hit a cached True
        if not _CONTEXT_BOOL.intersection(hit):
            if len(cache) >= _CACHE_MAX:
                cache.clear()
            cache[key] = hit
    return hit


def _context(ctx: object) -> dict:
    if type(ctx) is not dict:
        raise InvalidToolEvent("agent_context")
    if not any(type(v := ctx.get(k)) is str and v for k in _CHAIN_KEYS):
        raise InvalidToolEvent("agent_context")
    out = {}
    for key in _CONTEXT_ORDER:
        v = ctx.get(key)
        if v is None:
            continue
        if key in _CONTEXT_TEXT:
            ok = type(v) is str
        elif key in _CONTEXT_BOOL:
            ok = type(v) is bool
        else:  # _CONTEXT_MAP
            ok = type(v) is dict
        if not ok:
            raise InvalidToolEvent("agent_context")
        out[key] = v
    return out


def _tool(tool: object) -> dict:
    if type(tool) is not dict:
        raise InvalidToolEvent("tool")
    g = tool.get
    call_id = g("tool_call_id")
    tool_class = g("tool_class")
    if type(call_id) is not str or type(tool_class) is not str:
        raise InvalidToolEvent("tool_field")
    out: dict = {"tool_call_id": call_id, "tool_class": tool_class}
    # checks inlined (this runs once per event on the collector's hot path)
    v = g("started_at_unix_ms")
    if v is not None:
        if type(v) is not int or v < 0 or v > _U64_MAX:
            raise InvalidToolEvent("tool_field")
        out["started_at_unix_ms"] = v
    v = g("ended_at_unix_ms")
    if v is not None:
        if type(v) is not int or v < 0 or v > _U64_MAX:
            raise InvalidToolEvent("tool_field")
        out["ended_at_unix_ms"] = v
    v = g("status")
    if v is not None:
        status = STATUS_ALIASES.get(v) if type(v) is str else None
        if status is None:
            raise InvalidToolEvent("tool_field")
        out["status"] = status
    v = g("duration_ms")
    if v is not None:
        tv = type(v)
        if tv is float:
            if v - v != 0.0:  # NaN or +-inf
                raise InvalidToolEvent("duration_ms")
            out["duration_ms"] = v
        elif tv is int:
            out["duration_ms"] = float(v)  # serde writes an f64: 420 -> 420.0
        else:
            raise InvalidToolEvent("duration_ms")
    if len(tool) > len(out):  # rarer optional fields present (or unknown keys, which vanish)
        for key in ("output_tokens", "output_bytes"):
            if (v := g(key)) is not None:
                out[key] = _u64(v)
        for key in ("tool_name_hash", "error_type"):
            if (v := g(key)) is not None:
                if type(v) is not str:
                    raise InvalidToolEvent("tool_field")
                out[key] = v
        if (v := g("claude")) is not None:
            out["claude"] = _claude(v)
    return out


def _u64(v: object) -> int:
    if type(v) is not int or v < 0 or v > _U64_MAX:
        raise InvalidToolEvent("tool_field")
    return v


def _claude(v: object) -> dict:
    if type(v) is not dict:
        raise InvalidToolEvent("tool_field")
    out = {}
    for key in _CLAUDE_KEYS:
        x = v.get(key)
        if x is None:
            continue
        if type(x) is not str:
            raise InvalidToolEvent("tool_field")
        out[key] = x
    return out
