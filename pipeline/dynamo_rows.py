"""Dynamo trace records of every generation (G1, G2, G3a, G3b, G3c) to model records.

Detection is per record (dynamo-formats.md §10): the `schema` string, then the `agent_context`
keys. Loader rules and error texts follow Dynamo's Rust loaders (§4.2): the request-trace schema
(G3) is strict (exact hash count, required arrival and output tokens), the agent-trace schema
(G1/G2) is lenient (hash capacity only).
"""

from __future__ import annotations

import math
import sys
from array import array
from collections import Counter
from dataclasses import fields

import orjson

from . import schemas, shared_hashes
from .errors import TraceError
from .model import ClaudeLink, Generation, Request, Source, ToolCallRef, ToolEvent, Worker

def _check_order(cls: type, names: str) -> None:
    """The parsers build Request and ToolEvent positionally (keyword matching of ~30 fields costs
    more than the rest of a record); fail at import, not with shuffled fields, if the model changes."""
    if tuple(f.name for f in fields(cls)) != tuple(names.split()):
        raise ImportError(f"{cls.__name__} fields changed: update the positional calls in dynamo_rows.py")


_check_order(Request, """request_id chain_id parent_chain_id start_ms end_ms output_tokens block_size input_length
    hashes completion_hashes model x_request_id input_tokens cached_tokens prefill_wait_time_ms prefill_time_ms
    ttft_ms total_time_ms avg_itl_ms kv_hit_rate kv_transfer_estimated_latency_ms queue_depth worker finish
    tool_calls event_time_ms run_id identity generation source received_recorded""")
_check_order(ToolEvent, """event_type chain_id parent_chain_id tool_call_id tool_class event_time_ms started_at_ms
    ended_at_ms duration_ms status output_tokens output_bytes tool_name_hash error_type claude event_source run_id
    identity generation source""")

AGENT_SCHEMA = "dynamo.agent.trace.v1"
REQUEST_SCHEMA = "dynamo.request.trace.v1"
TOOL_TYPES = frozenset(("tool_start", "tool_end", "tool_error"))
U64_MAX = schemas.U64_MAX

# field -> (chain field, parent field, run field) per generation
_IDENTITY = {
    Generation.G1: ("program_id", "parent_program_id", "workflow_id"),
    Generation.G2: ("trajectory_id", "parent_trajectory_id", "session_id"),
    Generation.G3A: ("trajectory_id", "parent_trajectory_id", "session_id"),
    Generation.G3B: ("session_id", "parent_session_id", None),
}
_G3B_FIELDS = _IDENTITY[Generation.G3B]


def round_half_away(x: float) -> int:
    """Rust's `f64::round` (half away from zero), as Dynamo's converters round ms."""
    return int(math.floor(x + 0.5)) if x >= 0 else -int(math.floor(-x + 0.5))


def generation_of(schema: object, ctx: dict | None, src: Source) -> Generation:
    if ctx is not None and not isinstance(ctx, dict):
        raise TraceError(f"{src}: field `agent_context` must be an object, got {ctx!r}")
    if schema is None or schema == AGENT_SCHEMA:
        if ctx is None:
            return Generation.G3_FREE if schema is None else Generation.G2
        if "workflow_id" in ctx or "program_id" in ctx:
            return Generation.G1
        if "trajectory_id" in ctx:
            return Generation.G2
        return Generation.G3B if schema is None else Generation.G2
    if schema == REQUEST_SCHEMA:
        if ctx is None:
            return Generation.G3_FREE
        if "trajectory_id" in ctx:
            return Generation.G3A
        return Generation.G3B
    raise TraceError(
        f"{src}: field `schema`: failed to parse request trace record: unknown variant "
        f"`{schema}`, expected `{AGENT_SCHEMA}` or `{REQUEST_SCHEMA}`")


def _identity(gen: Generation, ctx: dict | None, src: Source):
    """(chain, parent, run, identity pairs) of a record."""
    if ctx is None:
        return None, None, None, ()
    if not isinstance(ctx, dict):
        raise TraceError(f"{src}: field `agent_context` must be an object")
    # (Enum members hash in Python: spare the lookup for the common generation)
    chain_f, parent_f, run_f = _G3B_FIELDS if gen is Generation.G3B else _IDENTITY[gen]
    chain = ctx.get(chain_f)
    if not isinstance(chain, str) or not chain:
        what = "is required" if chain is None else f"must be a non-empty string, got {chain!r}"
        raise TraceError(f"{src}: field `agent_context.{chain_f}` {what} ({gen.value} record)")
    parent = ctx.get(parent_f)
    if parent is not None and not isinstance(parent, str):
        raise TraceError(f"{src}: field `agent_context.{parent_f}` must be a string")
    run = ctx.get(run_f) if run_f else None
    if gen is Generation.G1 and isinstance(run, str) and run:
        # program ids are per workflow (Dynamo's G1 converter, §4.3): scope them unless they are already
        chain = _in_workflow(run, chain)
        if parent:
            parent = _in_workflow(run, parent)
    return chain, (parent or None), run, tuple(ctx.items())


def _in_workflow(workflow: str, program: str) -> str:
    return program if program == workflow or program.startswith(workflow + ":") else f"{workflow}:{program}"


_workers: dict[tuple, Worker] = {}


def _worker(w: schemas.Worker) -> Worker:
    """Placement records repeat across a trace: one shared Worker per distinct placement."""
    key = (w.prefill_worker_id, w.prefill_dp_rank, w.decode_worker_id, w.decode_dp_rank)
    found = _workers.get(key)
    if found is None:
        found = _workers[key] = Worker(*key)
    return found


_HASH_KEY = b'"input_sequence_hashes"'


class Reparse(Exception):
    """A line read as a `schemas.TextRecord` must be read again whole: its hash text was not plain."""


class HashTexts:
    """Keeps `input_sequence_hashes` out of the JSON parser. The list is most of a request_end
    line, and consecutive prompts of a chain repeat its prefix: parsing it costs 60% of the
    line's parse and converting it to u64 as much again, for values the chain's last list
    already holds. So the reader decodes the list as its text (`schemas.TextRecord`: msgspec
    hands over exactly the value's bytes, wherever and however the key is spelled), `text`
    takes it when it can only be a flat list of numbers, and `ids` converts only the tail that
    differs from the chain's last list.

    The text is trusted only where it cannot be anything but a list of numbers: it starts with
    `[`, and holds no quote and no other `[` (no strings, no nested lists). Every byte of it is
    then either in a prefix equal to text already parsed or in a tail parsed here; anything else
    raises `Reparse`, and the line takes the full parse, which also makes every error message."""

    __slots__ = ("last",)
    MAX_CHAINS = 1024  # a bound on the texts kept (one per chain), not a tuning knob

    def __init__(self) -> None:
        self.last: dict = {}  # chain -> (text between "[" and "]", its SharedHashes)

    @staticmethod
    def cut(raw: bytes) -> tuple[bytes, bytes] | None:
        """(the line with an empty list for the key, the list's text between its brackets), or
        None: decode the line as it is. For long lines: msgspec's pass over a list of ~400
        hashes as `Raw` costs ~2 µs more than these byte searches and the copy of the line.
        The text is cut only where it cannot be anything but the list of numbers of this key:
        no backslash in the line (a key could be spelled with a `\\u` escape, a quote escaped),
        the key exactly once, right after `{` or `,` and followed by `[` (compact JSON), and no
        quote or `[` before the first `]`; the reader then takes it only if the decoded line
        holds the emptied list at `request.replay` (`text` gives b"")."""
        i = raw.find(_HASH_KEY)
        if i <= 0 or raw[i - 1] not in b"{," or not raw.startswith(b":[", i + len(_HASH_KEY)) or b"\\" in raw:
            return None
        start = i + len(_HASH_KEY) + 2
        end = raw.find(b"]", start)
        # (single-byte finds are memchr; the key is searched for again only after the list)
        if end < 0 or raw.find(b'"', start, end) >= 0 or raw.find(b"[", start, end) >= 0 or raw.find(_HASH_KEY, end) >= 0:
            return None
        return raw[:start] + raw[end:], raw[start:end]

    @staticmethod
    def text(rec: schemas.TextRecord) -> bytes | None:
        """The text between the brackets of a request_end's hash list, or None: read the line
        whole (no list there, `null`, or a list with strings or lists in it)."""
        req = rec.request
        replay = req.replay if req is not None else None
        if replay is None:
            return None
        raw = replay.input_sequence_hashes
        if not raw:
            return None
        text = bytes(raw)
        if text[0] != 91 or text.find(b'"') >= 0 or text.find(b"[", 1) >= 0:  # 91: "["
            return None
        return text[1:-1]

    def ids(self, text: bytes, chain: object) -> shared_hashes.SharedHashes:
        """The hashes of a `text`, sharing the chain's last list (`shared_hashes`); raises
        Reparse where the full parse must judge."""
        prev = self.last.get(chain)
        hs = None
        if prev is not None:
            ptext, phs = prev
            n = len(ptext)
            if text.startswith(ptext) and (len(text) == n or text[n] == 44):  # then "]" or ","
                k, c = len(phs), n + 1
            else:
                c = ptext.rfind(b",") + 1  # all but the last element (a partial block changes)
                k = len(phs) - 1 if c > 1 and text.startswith(memoryview(ptext)[:c]) else 0
            if k > 0:
                if c > len(text):
                    hs = phs  # the same list: share it (rows never mutate their hashes)
                else:
                    if _has_bool(text, c):
                        raise Reparse
                    try:
                        tail = orjson.loads(b"[" + text[c:] + b"]")
                        if not tail:  # "[1,]": a comma with nothing after it
                            raise Reparse
                        hs = shared_hashes.extend(phs, k, array("Q", tail))  # converts and checks the tail
                    except (orjson.JSONDecodeError, TypeError, OverflowError):
                        raise Reparse from None
        if hs is None:
            if _has_bool(text, 0):
                raise Reparse
            try:
                hs = shared_hashes.extend(None, 0, array("Q", orjson.loads(b"[" + text + b"]")))
            except (orjson.JSONDecodeError, TypeError, OverflowError):
                raise Reparse from None
        last = self.last
        if len(last) >= self.MAX_CHAINS and chain not in last:
            last.clear()
        last[chain] = (text, hs)
        return hs


def _has_bool(text: bytes, start: int) -> bool:
    """A `true` or `false` in a hash list's text from `start` (array('Q') would take it as 1 or 0)."""
    return text.find(b"t", start) >= 0 or text.find(b"f", start) >= 0


_NO_HASHES = array("Q")
_NO_REPLAY = schemas.Replay()


def _request_end_error(src: Source, text: str) -> TraceError:
    return TraceError(f"invalid request_end at {src}: {text}")


_RECORDED = object()  # the record's own `agent_context` (a dict or None)
_NO_IDENTITY = (None, None, None, ())


def parse_request(ev: schemas.Record, gen: Generation, src: Source, notes: Counter, hash_text: bytes | None = None,
                  texts: HashTexts | None = None, replay_rules: bool = True, raw: bytes = b"",
                  ctx: object = _RECORDED, ident: tuple | None = None) -> Request:
    """A typed `request_end` record (`schemas.Record`: every field's type and range already
    checked) to a Request, with Dynamo's loader rules and time rules (§4.2) that a schema cannot
    say. Hashes are kept as array('Q'): 8 bytes each, exact u64, and compared by memcmp later.
    With `hash_text` (from `HashTexts.text`; the record then holds the list as text) `texts` (one
    per read) parses only what differs from the chain's last list, or raises Reparse. The checks
    run in a fixed order: the first problem is the one reported. `replay_rules` False reads the
    record as Dynamo's Perfetto script does (§5): no replay block, output tokens or arrival time
    required, and the hash list not held to the input length (a present one is still typed).
    `raw` is the line, for errors about values inside kept-whole objects. `ctx`: the agent
    context as a dict (when the record holds its text); `ident`: what `_identity` gave for the
    same context and generation before (a reader's cache: it is then not looked at again)."""
    strict = replay_rules and (gen is Generation.G3B or gen is Generation.G3A or gen is Generation.G3_FREE)
    if ident is None:
        ident = _identity(gen, ev.agent_context if ctx is _RECORDED else ctx, src) \
            if gen is not Generation.G3_FREE else _NO_IDENTITY
    chain, parent, run, identity = ident
    req = ev.request
    if req is None:
        raise _request_end_error(src, "field `request`: request_end record is missing request payload")
    rid = req.request_id
    if rid is None:
        raise _request_end_error(src, "field `request.request_id` is required")
    replay = req.replay
    if replay is None:
        if replay_rules:
            raise _request_end_error(src, "field `request.replay`: request payload is missing replay metrics")
        replay = _NO_REPLAY
    bs = replay.trace_block_size
    if bs is None and replay_rules:
        raise _request_end_error(src, "field `request.replay.trace_block_size` must be a positive integer, got None")
    input_length = replay.input_length
    if input_length is None and replay_rules:
        raise TraceError(f"{src}: field `request.replay.input_length` must be a non-negative integer, got None")
    if hash_text is not None:  # the line was parsed without the list (`HashTexts.text`)
        hashes = texts.ids(hash_text, chain)
    elif replay.input_sequence_hashes is not None:
        hashes = schemas.u64_array(replay.input_sequence_hashes, src, "request.replay.input_sequence_hashes")
    elif replay_rules:
        raise TraceError(f"{src}: field `request.replay.input_sequence_hashes` must be a list of u64 integers")
    else:
        hashes = _NO_HASHES
    n = len(hashes)
    if strict:
        need = -(-input_length // bs)
        if n != need:
            raise _request_end_error(
                src, f"field `request.replay.input_sequence_hashes`: input_length {input_length} with "
                     f"trace_block_size {bs} requires exactly {need} replay hashes, got {n}")
    elif replay_rules and n * bs < input_length:
        raise _request_end_error(
            src, f"field `request.replay.input_sequence_hashes`: input_length {input_length} exceeds replay hash "
                 f"capacity {n * bs}")
    completion = replay.completion_sequence_hashes
    if completion is not None:
        completion = schemas.u64_array(completion, src, "request.replay.completion_sequence_hashes")

    received = req.request_received_ms
    output_tokens = req.output_tokens
    if strict and received is None:
        raise _request_end_error(src, "field `request.request_received_ms`: request trace is missing request_received_ms")
    if strict and output_tokens is None:
        raise _request_end_error(src, "field `request.output_tokens`: request trace is missing output_tokens")

    et = ev.event_time_unix_ms
    if (et is None and received is None) or (et is not None and et < 0):
        raise _request_end_error(src, f"field `event_time_unix_ms` must be a non-negative number, got {et!r}")
    ttft, total = req.ttft_ms, req.total_time_ms
    if ttft is not None and (ttft < 0.0 or (total is not None and ttft > total >= 0.0)):
        # kept as recorded (Perfetto clamps the stages; replay compares no TTFT to it): counted
        notes["request.ttft_ms negative or beyond total_time_ms (kept as recorded, not compared)"] += 1
    et_ms = (et if type(et) is int else round_half_away(et)) if et is not None else None
    if total is not None:
        total_i = round_half_away(total) if total > 0.0 else 0
    elif et_ms is not None:
        total_i = max(0, et_ms - (received if received is not None else et_ms))
    else:
        total_i = 0
    if received is not None:
        start, end = received, received + total_i
    else:
        end = et_ms
        start = max(0, end - total_i)

    worker = req.worker
    if worker is not None:
        worker = _worker(worker)
    finish = req.finish_reason_metadata or None
    tool_calls: tuple = ()
    if finish:
        finish = schemas.finish(finish, raw, src)
        calls = finish.get("tool_calls") if finish is not None else None
        if calls:  # (typed by schemas.Finish: a list of objects with typed keys)
            tool_calls = tuple([ToolCallRef(c.get("choice_index"), c.get("tool_call_index"), c.get("id"), c.get("name"))
                                for c in calls])
    model = req.model
    # positional: keyword matching of Request's 30 fields cost 2.2 µs a row (see _check_order);
    # the model string interned as parse_tool's strings are
    return Request(
        rid, chain, parent, start, end, output_tokens, bs, input_length, hashes, completion,
        sys.intern(model) if model is not None else None, req.x_request_id, req.input_tokens, req.cached_tokens,
        req.prefill_wait_time_ms, req.prefill_time_ms, ttft, total, req.avg_itl_ms, req.kv_hit_rate,
        req.kv_transfer_estimated_latency_ms, req.queue_depth,
        worker, finish, tool_calls, et, run, identity, gen, src, received is not None)


def parse_tool(ev: schemas.Record, gen: Generation, src: Source, ctx: object = _RECORDED,
               ident: tuple | None = None) -> ToolEvent | None:
    """A typed tool row to a ToolEvent; None (caller counts it) when it has no identity or no `tool`.
    `ctx` and `ident` as for `parse_request`."""
    tool = ev.tool
    if ctx is _RECORDED:
        ctx = ev.agent_context
    if ctx is None and isinstance(ev.session_id, str):
        # G3b/G3c ingress shape (flattened identity), as Dynamo's relay would have normalised it
        ctx = {"session_id": ev.session_id}
        if isinstance(ev.parent_session_id, str):
            ctx["parent_session_id"] = ev.parent_session_id
        gen = Generation.G3B
    if tool is None or ctx is None:
        return None
    if gen is Generation.G3_FREE:
        gen = generation_of(ev.schema, ctx, src)
    chain, parent, run, identity = ident if ident is not None else _identity(gen, ctx, src)
    et = ev.event_time_unix_ms
    if et is None:
        raise TraceError(f"{src}: field `event_time_unix_ms` must be a finite number, got None")
    claude = tool.claude
    if claude is not None:
        claude = ClaudeLink(claude.source_request_id, claude.consumer_request_id, claude.child_session_id,
                            claude.execution_mode)
    tool_class, status, source = tool.tool_class, tool.status, ev.event_source
    # one string object per distinct value, not per row (~220 bytes a tool row less; `sys.intern`
    # keeps no string alive); the chain's string stays per row, held by `identity` too
    intern = sys.intern
    return ToolEvent(  # positional, as Request above
        intern(ev.event_type), chain, parent, tool.tool_call_id, intern(tool_class) if tool_class else tool_class, et,
        tool.started_at_unix_ms, tool.ended_at_unix_ms, tool.duration_ms,
        intern(status) if status else status, tool.output_tokens, tool.output_bytes, tool.tool_name_hash,
        tool.error_type, claude, intern(source) if source else source, run, identity, gen, src)


def tool_interval(t: ToolEvent) -> tuple[int, int] | None:
    """Integer [start, end] of a terminal tool span as Dynamo's converter derives it (§4.2), or
    None when the span runs backwards (Dynamo skips those)."""
    end = t.ended_at_ms if t.ended_at_ms is not None else round_half_away(t.event_time_ms)
    if t.started_at_ms is not None:
        start = t.started_at_ms
    elif t.duration_ms is not None:
        start = end - round_half_away(max(t.duration_ms, 0.0))
    else:
        start = end
    if end < start:
        return None
    return start, end


def tool_status(t: ToolEvent) -> str:
    if t.status is not None:
        return str(t.status)
    return "error" if t.event_type == "tool_error" else "succeeded"
