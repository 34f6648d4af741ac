"""Typed schemas of the input rows, decoded by msgspec (types, ranges and shapes checked in C on
the way in), and the one translation of msgspec's errors into the house's one-line messages.

What a schema cannot say stays with the reader that needs it, once: which identity field a
generation uses, the hash count a block size implies, duplicates, cycles, required-ness that
depends on the output (`replay_rules`) or on the event type.

msgspec names a bad value by its path (`Expected int, got str - at $.request.output_tokens`);
`explain` turns that into the field's own wording (`field `request.output_tokens` must be a
non-negative integer, got 'x'`), reading the value from an untyped decode of the same line, so
every message names file, line, field and value as before the schemas.
"""

from __future__ import annotations

import re
from array import array
from typing import Annotated, Any, Callable, Literal

import msgspec
from msgspec import Meta, Struct

from . import limits
from .errors import TraceError

U64_MAX = (1 << 64) - 1
I64_MAX = (1 << 63) - 1
# msgspec bounds integers within int64 only: a counter, time or id is at most 2^63-1 (Perfetto's
# and numpy's int64 take it; no real trace comes near), and a hash list's u64 values get their
# upper bound where they become an array('Q') (`u64_array`).
U64 = Annotated[int, Meta(ge=0, le=I64_MAX)]
Hash = Annotated[int, Meta(ge=0)]
Tokens = Annotated[int, Meta(ge=0, le=limits.TOKENS.maximum)]
BlockSize = Annotated[int, Meta(gt=0, le=limits.BLOCK_SIZE.maximum)]
NonEmptyStr = Annotated[str, Meta(min_length=1)]
Number = int | float  # JSON numbers; msgspec refuses NaN/Infinity literals and floats that overflow


# -- Dynamo records (dynamo-formats.md §2-§4.2), every generation, enveloped or bare ----------

class Replay(Struct, gc=False):
    trace_block_size: BlockSize | None = None
    input_length: Tokens | None = None
    input_sequence_hashes: list[Hash] | None = None
    completion_sequence_hashes: list[Hash] | None = None


class Worker(Struct, gc=False):
    prefill_worker_id: U64 | None = None
    prefill_dp_rank: U64 | None = None
    decode_worker_id: U64 | None = None
    decode_dp_rank: U64 | None = None


class ToolCall(Struct, gc=False):
    """A `finish_reason_metadata.tool_calls` entry (Dynamo never records the arguments)."""
    choice_index: U64 | None = None
    tool_call_index: U64 | None = None
    id: str | None = None
    name: str | None = None


class RequestPayload(Struct, gc=False):
    request_id: NonEmptyStr | None = None
    model: str | None = None
    x_request_id: str | None = None
    input_tokens: U64 | None = None
    output_tokens: Tokens | None = None
    cached_tokens: U64 | None = None
    request_received_ms: U64 | None = None
    queue_depth: U64 | None = None
    prefill_wait_time_ms: float | None = None
    prefill_time_ms: float | None = None
    ttft_ms: float | None = None
    total_time_ms: float | None = None
    avg_itl_ms: float | None = None
    kv_hit_rate: float | None = None
    kv_transfer_estimated_latency_ms: float | None = None
    worker: Worker | None = None
    # kept whole (Perfetto shows every key): decoded twice by `finish`, as a dict and typed
    finish_reason_metadata: msgspec.Raw = msgspec.Raw()  # (Raw takes no union with None: empty)
    replay: Replay | None = None


class Claude(Struct, gc=False):
    source_request_id: str | None = None
    consumer_request_id: str | None = None
    child_session_id: str | None = None
    execution_mode: str | None = None


class Tool(Struct, gc=False):
    tool_call_id: str | None = None
    tool_class: str | None = None
    status: str | None = None
    tool_name_hash: str | None = None
    error_type: str | None = None
    duration_ms: float | None = None
    started_at_unix_ms: U64 | None = None
    ended_at_unix_ms: U64 | None = None
    output_tokens: U64 | None = None
    output_bytes: U64 | None = None
    claude: Claude | None = None


class Record(Struct, gc=False):
    """A Dynamo record of any generation and event type. `schema` and `event_type` stay untyped:
    the reader names an unknown schema in Dynamo's words and skips other event types, counted.
    `agent_context` stays a dict: its keys are the record's identity, kept as recorded, and which
    of them must be a string depends on the generation."""
    schema: Any = None
    event_type: Any = None
    event_time_unix_ms: Number | None = None
    event_source: str | None = None
    agent_context: dict[str, Any] | None = None
    request: RequestPayload | None = None
    tool: Tool | None = None
    # the G3b/G3c ingress shape of a tool row: identity flattened to the top level
    session_id: Any = None
    parent_session_id: Any = None


class Line(Record, gc=False):
    """A JSONL line holding a Dynamo record: bare, or in the sink's `{"timestamp", "event"}`."""
    timestamp: Any = None
    event: Record | None = None


class Finish(Struct, gc=False):
    """The typed part of `finish_reason_metadata` (the rest is shown as recorded)."""
    tool_calls: list[ToolCall] | None = None


class ReplayText(Replay, gc=False):
    input_sequence_hashes: msgspec.Raw = msgspec.Raw()


class RequestText(RequestPayload, gc=False):
    replay: ReplayText | None = None


class TextRecord(Record, gc=False):
    """A Record whose repeated parts stay text, for the reader's fast path (`readers`): a trace
    repeats each chain's `agent_context` on every row, and a chain's prompt hashes repeat the
    previous prompt's up to its first changed block, so the reader decodes and checks each
    distinct context once and parses only a hash list's new tail (`dynamo_rows.HashTexts`). A
    line whose text parts are not what the fast path takes is read again with `Line`, which
    checks them and words the error."""
    agent_context: msgspec.Raw = msgspec.Raw()
    request: RequestText | None = None


class TextLine(TextRecord, gc=False):
    timestamp: Any = None
    event: TextRecord | None = None


LINE = msgspec.json.Decoder(Line)
TEXT_LINE = msgspec.json.Decoder(TextLine)
CONTEXT = msgspec.json.Decoder(dict[str, Any] | None)
_FINISH = msgspec.json.Decoder(Finish).decode
_ANY = msgspec.json.Decoder().decode


# -- error translation -------------------------------------------------------------------------

_AT = re.compile(r"^(.*?)(?: - at `(\$[^`]*)`)?$", re.S)
_STEP = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]|\[\.\.\.\]")


def path_of(err: msgspec.ValidationError) -> tuple[str, list]:
    """(what msgspec says, the path as keys and indexes) of a validation error."""
    m = _AT.match(str(err))
    what, path = m.group(1), m.group(2) or "$"
    steps: list = []
    for key, index in _STEP.findall(path[1:]):
        steps.append(key if key else int(index) if index else None)
    return what, steps


def value_at(doc: object, steps: list) -> tuple[bool, object]:
    """(found, value) at `steps` in an untyped document."""
    for s in steps:
        if isinstance(s, str) and isinstance(doc, dict) and s in doc:
            doc = doc[s]
        elif isinstance(s, int) and isinstance(doc, list) and s < len(doc):
            doc = doc[s]
        else:
            return False, None
    return True, doc


def untyped(raw: bytes) -> object:
    """The line decoded without a schema, integers exact (only on an error path)."""
    try:
        return msgspec.json.decode(raw)
    except (RecursionError, msgspec.MsgspecError):
        return None


def u64_message(field: str, v: object) -> str:
    if type(v) is int:
        return f"field `{field}` is outside the u64 range: {v}" if v < 0 or v > U64_MAX else \
            f"field `{field}` is above 2^63-1: {v}"
    return f"field `{field}` must be a non-negative integer, got {v!r}"


def hashes_message(field: str, v: object, item: object) -> str:
    if not isinstance(v, list):
        return f"field `{field}` must be a list of u64 integers"
    what = "an integer above 2^64-1" if type(item) is int and item > U64_MAX else repr(item)
    return f"field `{field}` holds {what}, not a u64 integer (0 to 2^64-1)"


_REQ_END = "invalid request_end at "

# field (dotted, list indexes dropped) -> (prefix kind, message for the bad value); the request
# wording is Dynamo's loader's where it has one (§4.2), the reader's own elsewhere
_RULES: dict[str, tuple[bool, Callable[[str, object], str]]] = {}


def _rule(fields: str, in_request_end: bool, message: Callable[[str, object], str]) -> None:
    for f in fields.split():
        _RULES[f] = (in_request_end, message)


_rule("request", True, lambda f, v: "field `request`: request_end record is missing request payload")
_rule("request.request_id", True,
      lambda f, v: f"field `{f}` must be a non-empty string, got {v!r}")
_rule("request.replay", True, lambda f, v: "field `request.replay`: request payload is missing replay metrics")
_rule("request.replay.trace_block_size", True, lambda f, v: f"field `{f}` must be a positive integer, got {v!r}")
_rule("request.replay.input_length request.request_received_ms request.output_tokens request.input_tokens "
      "request.cached_tokens request.queue_depth request.worker.prefill_worker_id request.worker.prefill_dp_rank "
      "request.worker.decode_worker_id request.worker.decode_dp_rank tool.started_at_unix_ms tool.ended_at_unix_ms "
      "tool.output_tokens tool.output_bytes request.finish_reason_metadata.tool_calls.choice_index "
      "request.finish_reason_metadata.tool_calls.tool_call_index", False, u64_message)
_rule("request.prefill_wait_time_ms request.prefill_time_ms request.ttft_ms request.total_time_ms "
      "request.avg_itl_ms request.kv_hit_rate request.kv_transfer_estimated_latency_ms tool.duration_ms", False,
      lambda f, v: f"field `{f}` must be a number, got {v!r}")
_rule("request.model request.x_request_id tool.tool_call_id tool.tool_class tool.status tool.tool_name_hash "
      "tool.error_type event_source tool.claude.source_request_id tool.claude.consumer_request_id "
      "tool.claude.child_session_id tool.claude.execution_mode request.finish_reason_metadata.tool_calls.id "
      "request.finish_reason_metadata.tool_calls.name", False,
      lambda f, v: f"field `{f}` must be a string, got {v!r}")
_rule("agent_context request.worker request.finish_reason_metadata tool tool.claude event", False,
      lambda f, v: f"field `{f}` must be an object, got {v!r}")
_rule("event_time_unix_ms", True, lambda f, v: f"field `{f}` must be a non-negative number, got {v!r}")


def u64_array(values: list[int], where: object, field: str) -> array:
    """A typed hash list as an array('Q'): 8 bytes each, exact u64; a value above 2^64-1 (which
    the schema's int cannot bound) is a one-line error. `where`: the file and line (its str)."""
    try:
        return array("Q", values)
    except OverflowError:
        big = next(v for v in values if v > U64_MAX)
        raise TraceError(f"{where}: {hashes_message(field, values, big)}") from None


# fields whose upper bound is a machine-protecting limit: the limit table words the error
_LIMITS = {"request.replay.trace_block_size": limits.BLOCK_SIZE, "request.replay.input_length": limits.TOKENS,
           "request.output_tokens": limits.TOKENS}


def explain(err: msgspec.ValidationError, raw: bytes, where: str, *, prefix: tuple[str, ...] = ()) -> TraceError:
    """The one-line error for a Dynamo record msgspec refused: field named as the README's table
    names it, value shown as recorded. `prefix`: the path of the part of the line `err` is about
    (a re-validated sub-value)."""
    what, steps = path_of(err)
    if what.startswith("Number out of range"):
        return TraceError(f"{where}: invalid JSON: a number outside the 64-bit range (an integer above 2^64-1 or "
                          f"a float that overflows)")
    doc = untyped(raw)
    if isinstance(doc, dict) and isinstance(doc.get("event"), dict):  # the sink's envelope
        doc = doc["event"]
        if steps[:1] == ["event"]:
            steps = steps[1:]
    event_type = doc.get("event_type") if isinstance(doc, dict) else None
    steps = [*prefix, *steps]
    if not steps:
        return TraceError(f"{where}: {what}")
    names = [s for s in steps if isinstance(s, str)]
    field = ".".join(names)
    found, value = value_at(doc, steps)
    if field in ("request.replay.input_sequence_hashes", "request.replay.completion_sequence_hashes"):
        _, whole = value_at(doc, [s for s in steps if isinstance(s, str)])
        return TraceError(f"{where}: {hashes_message(field, whole, value)}")
    if field == "request.finish_reason_metadata.tool_calls":
        _, whole = value_at(doc, names)
        if not isinstance(whole, list):
            return TraceError(f"{where}: field `{field}` must be a list of tool calls, got {whole!r}")
        return TraceError(f"{where}: field `{field}` holds {value!r}, not a tool call object")
    limit = _LIMITS.get(field)
    if limit is not None and "<=" in what and type(value) is int:
        try:
            limit.check(value, f"{where}: field `{field}`")
        except TraceError as e:
            return e
    rule = _RULES.get(field)
    if rule is None:  # a field the table does not word (cannot happen for the schemas above)
        return TraceError(f"{where}: field `{field}`: {what[0].lower()}{what[1:]}")
    in_request_end, message = rule
    head = _REQ_END if in_request_end and event_type == "request_end" else ""
    if field == "event_time_unix_ms" and event_type != "request_end":
        return TraceError(f"{where}: field `event_time_unix_ms` must be a finite number, got {value!r}")
    if field == "request.request_id" and value == "":
        return TraceError(f"{head}{where}: field `request.request_id` must be a non-empty string, got ''")
    return TraceError(f"{head}{where}: {message(field, value)}")


_NULL = b"null"


def finish(text: msgspec.Raw, raw: bytes, where: object) -> dict | None:
    """`finish_reason_metadata` as recorded (a dict; None when absent or null), its `tool_calls`
    checked against `Finish` (two decodes of its few bytes cost a quarter of one conversion of
    the dict; the caller reads the checked dict, whose strings the Request then shares)."""
    if not text or (len(text) == 4 and bytes(text) == _NULL):
        return None
    try:
        _FINISH(text)
    except msgspec.ValidationError as e:
        raise explain(e, raw, str(where), prefix=("request", "finish_reason_metadata")) from None
    return _ANY(text)


def depth_error(raw: bytes, where: str) -> TraceError:
    """A line nested past what the parsers take (they refuse it or would recurse past Python's
    stack), worded by the limit table with the line's depth."""
    depth = limits.json_depth(raw)
    try:
        limits.JSON_DEPTH.check(max(depth, limits.JSON_DEPTH.maximum + 1), where)
    except TraceError as e:
        return e
    return TraceError(f"{where}: nested too deep")  # (not reached: the depth is past the limit)


# -- Mooncake rows: plain, agentic v1 and v2 (dynamo-formats.md §4.3, §4.4, §4.7) --------------

NonNegative = Annotated[float, Meta(ge=0)]


class MooncakeToolSpan(Struct, gc=False):
    tool_call_id: str = ""
    tool_class: str = ""
    started_at_unix_ms: float | None = None
    ended_at_unix_ms: float | None = None
    duration_ms: float | None = None
    status: str = ""
    output_bytes: U64 | None = None
    output_tokens: U64 | None = None
    error_type: str | None = None


class MooncakeDependency(Struct, gc=False):
    """A v2 `dependencies[]` entry; which keys a v2 file must spell out is `check_v2_row`'s."""
    request_id: str
    trigger: Literal["dispatch", "completion"] = "completion"
    delay_ms: NonNegative = 0.0
    relation: Literal["sequence", "spawn", "join", "replay_barrier"] = "sequence"


class MooncakeRow(Struct, gc=False):
    """A plain, agentic v1 or v2 Mooncake row, with Dynamo's upstream aliases (`input_tokens`,
    `output_tokens`, `created_time`, `delay_ms`: the canonical key wins when both are present).
    Ids and `model` stay untyped here: plain rows take any id, v2 requires strings
    (`check_v2_row`, in AISimulate's words)."""
    input_length: Tokens | None = None
    input_tokens: Tokens | None = None
    output_length: Tokens | None = None
    output_tokens: Tokens | None = None
    hash_ids: list[Hash] = []
    request_id: Any = None
    session_id: Any = None
    output_token_ids: list[Hash] | None = None
    timestamp: NonNegative | None = None
    created_time: NonNegative | None = None
    delay: NonNegative | None = None
    delay_ms: NonNegative | None = None
    request_kind: str | None = None
    wait_for: list[str] = []
    branches: list[str] = []
    prefix_reset: bool | None = None
    tool_wait_ms: NonNegative | None = None
    tool_events: list[MooncakeToolSpan] = []
    priority: int | None = None
    strict_priority: int | None = None
    policy_class: str | None = None
    routing_constraints: Any = None
    play_id: Any = None
    model: Any = None
    not_before_ms: NonNegative | None = None
    dependencies: list[MooncakeDependency] = []
    source_play_ordinal: U64 | None = None
    recorded_api_time_ms: NonNegative | None = None


def mooncake_row(d: dict, where: str) -> MooncakeRow:
    """A Mooncake row (an untyped line, already parsed) typed; a one-line error naming the field."""
    try:
        return msgspec.convert(d, MooncakeRow)
    except msgspec.ValidationError as e:
        raise _mooncake_error(e, d, where) from None


def _json(v: object) -> str:
    try:
        return msgspec.json.encode(v).decode()
    except (TypeError, ValueError, OverflowError):
        return repr(v)


def _mooncake_error(err: msgspec.ValidationError, d: dict, where: str) -> TraceError:
    what, steps = path_of(err)
    names = [s for s in steps if isinstance(s, str)]
    field = ".".join(names)
    found, v = value_at(d, steps)
    if what.startswith("Object missing required field `request_id`") or (field == "dependencies.request_id"):
        return TraceError(f"{where}: field `dependencies` entries need a string `request_id`")
    if field in ("hash_ids", "output_token_ids"):
        return TraceError(f"{where}: field `{field}` must be a list of non-negative integers")
    if field in ("wait_for", "branches"):
        return TraceError(f"{where}: field `{field}` must be a list of request ids")
    if names == ["tool_events"] or names == ["dependencies"]:
        return TraceError(f"{where}: field `{field}` entries must be objects" if steps[-1:] != [field] or
                          isinstance(v, list) else f"{where}: field `{field}` must be a list, got {_json(v)}")
    if field == "dependencies.relation":
        return TraceError(f"{where}: field `dependencies.relation` must be one of sequence, spawn, join, "
                          f"replay_barrier, got {_json(v)}")
    if field == "dependencies.trigger":
        return TraceError(f"{where}: field `dependencies.trigger` must be dispatch or completion, got {v!r}")
    if what.startswith("Expected `int` <= ") and field in ("input_length", "input_tokens", "output_length",
                                                            "output_tokens"):
        try:
            limits.TOKENS.check(v, f"{where}: field `{field}`")
        except TraceError as e:
            return e
    if ">= 0" in what and isinstance(v, (int, float)) and not isinstance(v, bool):
        return TraceError(f"{where}: field `{field}` must be >= 0, got {v}")
    if what.startswith("Number out of range"):
        return TraceError(f"{where}: field `{field}` must be finite")
    kind = "an integer" if "`int" in what else "a number" if "`float" in what else \
        "a string" if "`str" in what else "a boolean" if "`bool" in what else None
    if kind is not None and found:
        return TraceError(f"{where}: field `{field}` must be {kind}, got {_json(v)}")
    return TraceError(f"{where}: field `{field}`: {what[0].lower()}{what[1:]}")


# -- WEKA kv-cache-tester plays (one object per play; README "WEKA traces") --------------------

Seconds = Annotated[float, Meta(ge=0, le=limits.SECONDS.maximum)]
WekaBlock = Annotated[int, Meta(ge=0, lt=1 << 39)]  # labels above are the reader's private tail blocks


class WekaEntry(Struct, gc=False, rename={"n_in": "in"}):
    """A call (`type` anything but "subagent") or a sub-agent marker (with its own `requests`)."""
    type: str | None = None
    t: Seconds | None = None
    api_time: Seconds | None = None
    ttft: Annotated[float, Meta(ge=-limits.SECONDS.maximum, le=limits.SECONDS.maximum)] | None = None  # (as recorded)
    think_time: Seconds | None = None
    n_in: Tokens = 0
    out: Tokens = 0
    hash_ids: list[WekaBlock] | None = None
    model: str | None = None
    input_types: list[str] | None = None
    agent_id: str | None = None
    duration_ms: float | None = None
    status: str | None = None
    requests: list[WekaEntry] | None = None


class WekaPlay(Struct, gc=False):
    id: str
    requests: list[WekaEntry]
    block_size: Annotated[int, Meta(gt=0, le=limits.BLOCK_SIZE.maximum)] = 64


def weka_play(d: dict, where: str) -> WekaPlay:
    """A WEKA play (already parsed) typed; a one-line error naming the field as `requests[3].t`."""
    try:
        return msgspec.convert(d, WekaPlay)
    except msgspec.ValidationError as e:
        raise _weka_error(e, d, where) from None


def _weka_field(steps: list) -> str:
    out = ""
    for s in steps:
        out += f"[{s}]" if isinstance(s, int) else (f".{s}" if out else s)
    return out


def _weka_error(err: msgspec.ValidationError, d: dict, where: str) -> TraceError:
    what, steps = path_of(err)
    last = steps[-1] if steps else None
    if isinstance(last, int) and len(steps) >= 2 and steps[-2] == "hash_ids":
        steps = steps[:-1]
        last = "hash_ids"
    found, v = value_at(d, steps)
    field = _weka_field(steps)
    if what.startswith("Object missing required field"):
        key = what.rsplit("`", 2)[1]
        field, v = _weka_field([*steps, key]), None
        last = key
    if last == "id":
        return TraceError(f"{where}: field `id`: a WEKA play needs a string id")
    if last == "block_size":
        if type(v) is int and v > 0:
            try:
                limits.BLOCK_SIZE.check(v, f"{where}: field `block_size`")
            except TraceError as e:
                return e
        return TraceError(f"{where}: field `block_size` must be a positive integer, got {v!r}")
    if last in ("t", "api_time", "think_time") and isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0:
        try:
            limits.SECONDS.check(v, f"{where}: field `{field}`")
        except TraceError as e:
            return e
    if last in ("t", "api_time", "think_time"):
        return TraceError(f"{where}: field `{field}` must be a non-negative number of seconds, got {v!r}")
    if last == "ttft":
        return TraceError(f"{where}: field `{field}` must be a finite number of seconds, got {v!r}")
    if last in ("in", "out"):
        if type(v) is int and v > 0:
            try:
                limits.TOKENS.check(v, f"{where}: field `{field}`")
            except TraceError as e:
                return e
        return TraceError(f"{where}: field `{field}` must be a non-negative integer, got {v!r}")
    if last == "hash_ids":
        return TraceError(f"{where}: field `{field}` must be a list of non-negative integers below 2^39")
    if last == "agent_id":
        return TraceError(f"{where}: field `{field}`: a sub-agent marker needs a string agent_id")
    if last == "requests" or isinstance(last, int):
        return TraceError(f"{where}: field `{field}` must be {'a list' if last == 'requests' else 'an object'}, "
                          f"got {v!r}")
    return TraceError(f"{where}: field `{field}` must be {_expected(what)}, got {v!r}")


def _expected(what: str) -> str:
    return "a string" if "`str" in what else "a number" if "`float" in what else "a list" if "`array" in what \
        else what[0].lower() + what[1:]
