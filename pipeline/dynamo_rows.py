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

from . import shared_hashes
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
U64_MAX = (1 << 64) - 1

# field -> (chain field, parent field, run field) per generation
_IDENTITY = {
    Generation.G1: ("program_id", "parent_program_id", "workflow_id"),
    Generation.G2: ("trajectory_id", "parent_trajectory_id", "session_id"),
    Generation.G3A: ("trajectory_id", "parent_trajectory_id", "session_id"),
    Generation.G3B: ("session_id", "parent_session_id", None),
}
_G3B_FIELDS = _IDENTITY[Generation.G3B]
_METRICS_F = ("prefill_wait_time_ms", "prefill_time_ms", "ttft_ms", "total_time_ms", "avg_itl_ms",
              "kv_hit_rate", "kv_transfer_estimated_latency_ms")


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


def _u64(v: object, src: Source, field: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        if isinstance(v, float) and v.is_integer() and 0 <= v <= U64_MAX:
            return int(v)
        raise TraceError(f"{src}: field `{field}` must be a non-negative integer, got {v!r}")
    if v < 0 or v > U64_MAX:
        raise TraceError(f"{src}: field `{field}` is outside the u64 range: {v}")
    return v


def _opt_u64(d: dict, key: str, src: Source, prefix: str = "request.") -> int | None:
    v = d.get(key)
    if v is None or (type(v) is int and 0 <= v <= U64_MAX):
        return v
    return _u64(v, src, prefix + key)


_WORKER_KEYS = ("prefill_worker_id", "prefill_dp_rank", "decode_worker_id", "decode_dp_rank")
_workers: dict[tuple, Worker] = {}


def _worker(w: object, src: Source) -> Worker | None:
    """Placement records repeat across a trace: one shared Worker per distinct placement."""
    if not isinstance(w, dict):
        return None
    key = (w.get("prefill_worker_id"), w.get("prefill_dp_rank"), w.get("decode_worker_id"), w.get("decode_dp_rank"))
    a, b, c, d = key
    # the cache holds checked keys only; exact ints (never bools, which equal 0/1) can hit it unchecked
    if type(a) is int and type(b) is int and type(c) is int and type(d) is int:
        found = _workers.get(key)
        if found is not None:
            return found
    key = tuple(_opt_u64(w, k, src, "request.worker.") for k in _WORKER_KEYS)
    found = _workers.get(key)
    if found is None:
        found = _workers[key] = Worker(*key)
    return found


def _opt_float(d: dict, key: str, src: Source, notes: Counter) -> float | None:
    v = d.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TraceError(f"{src}: field `request.{key}` must be a number, got {v!r}")
    if not math.isfinite(v):
        # Dynamo's producer drops non-finite metrics before writing; do the same, and count it.
        notes[f"non-finite request.{key} dropped"] += 1
        return None
    return float(v)


def _hashes(v: object, src: Source, field: str):
    if not isinstance(v, list):
        raise TraceError(f"{src}: field `{field}` must be a list of u64 integers")
    try:
        # array('Q') keeps u64 exactly in 8 bytes each and rejects negatives, > 2^64-1 and floats,
        # but takes true/false as 1/0: look for those only where a 0 or 1 came out
        arr = array("Q", v)
        if (0 in arr or 1 in arr) and bool in set(map(type, v)):
            raise TypeError
        return arr
    except (TypeError, OverflowError):
        # JSON integers beyond u64 arrive as floats from orjson: say so rather than print a rounded float
        bad = next(h for h in v if isinstance(h, bool) or not isinstance(h, int) or not 0 <= h <= U64_MAX)
        what = "an integer above 2^64-1" if type(bad) is float and bad >= 2.0 ** 64 and bad.is_integer() else repr(bad)
        raise TraceError(f"{src}: field `{field}` holds {what}, not a u64 integer (0 to 2^64-1)") from None


_HASH_KEY = b'"input_sequence_hashes"'


class Reparse(Exception):
    """A line read with `HashTexts.cut` must be read again whole: its hash text was not plain."""


class HashTexts:
    """Keeps `input_sequence_hashes` out of the JSON parser. The list is most of a request_end
    line, and consecutive prompts of a chain repeat its prefix: parsing it costs 60% of the
    line's parse and converting it to u64 as much again, for values the chain's last list
    already holds. So `cut` lifts the list's text out of the line before parsing, and `ids`
    converts only the tail that differs from the chain's last list.

    The text is trusted only where it cannot be anything but the list of numbers of this key:
    no backslash in the line (a key could be spelled with a `\\u` escape, a quote escaped), the
    key exactly once, right after `{` or `,` and followed by `[` (compact JSON), and no quote or
    `[` before the first `]` (no strings, no nested lists). Every byte of it is then either in a
    prefix equal to text already parsed or in a tail parsed here; anything else raises `Reparse`,
    and the line takes the full parse, which also makes every error message."""

    __slots__ = ("last",)
    MAX_CHAINS = 1024  # a bound on the texts kept (one per chain), not a tuning knob

    def __init__(self) -> None:
        self.last: dict = {}  # chain -> (text between "[" and "]", its SharedHashes)

    @staticmethod
    def cut(raw: bytes) -> tuple[bytes, bytes] | None:
        """(the line with an empty list for the key, the list's text), or None: parse it whole."""
        i = raw.find(_HASH_KEY)
        if i <= 0 or raw[i - 1] not in b"{," or not raw.startswith(b":[", i + len(_HASH_KEY)) or b"\\" in raw:
            return None
        start = i + len(_HASH_KEY) + 2
        end = raw.find(b"]", start)
        # (single-byte finds are memchr; the key is searched for again only after the list)
        if end < 0 or raw.find(b'"', start, end) >= 0 or raw.find(b"[", start, end) >= 0 or raw.find(_HASH_KEY, end) >= 0:
            return None
        text = raw[start:end]
        return raw[:start] + raw[end:], text

    def ids(self, text: bytes, chain: object) -> shared_hashes.SharedHashes:
        """The hashes of a `cut` text, sharing the chain's last list (`shared_hashes`); raises
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


def parse_request(ev: dict, gen: Generation, src: Source, notes: Counter, hash_text: bytes | None = None,
                  texts: HashTexts | None = None, replay_rules: bool = True) -> Request:
    """A `request_end` record to a Request, with Dynamo's loader checks and time rules (§4.2).
    Hashes are kept as array('Q'): 8 bytes each, exact u64, and compared by memcmp later. With
    `hash_text` (from `HashTexts.cut`; `ev` then holds an empty list) `texts` (one per read)
    parses only what differs from the chain's last list, or raises Reparse. The checks run in a
    fixed order: the first problem is the one reported. `replay_rules` False reads the record as
    Dynamo's Perfetto script does (§5): no replay block, output tokens or arrival time required,
    and the hash list not held to the input length (a present one is still type-checked)."""
    strict = replay_rules and (gen is Generation.G3B or gen is Generation.G3A or gen is Generation.G3_FREE)
    ctx = ev.get("agent_context")
    chain, parent, run, identity = _identity(gen, ctx, src) if gen is not Generation.G3_FREE else (None, None, None, ())
    req = ev.get("request")
    if not isinstance(req, dict):
        raise TraceError(f"invalid request_end at {src}: field `request`: request_end record is missing request payload")
    g = req.get
    rid = g("request_id")
    if not isinstance(rid, str) or not rid:
        what = "is required" if rid is None else f"must be a non-empty string, got {rid!r}"
        raise TraceError(f"invalid request_end at {src}: field `request.request_id` {what}")
    replay = g("replay")
    if not isinstance(replay, dict):
        if replay_rules or replay is not None:
            raise TraceError(f"invalid request_end at {src}: field `request.replay`: request payload is missing replay metrics")
        replay = {}
    bs = replay.get("trace_block_size")
    if (type(bs) is not int or bs <= 0) and (replay_rules or bs is not None):  # bools have their own type
        raise TraceError(f"invalid request_end at {src}: field `request.replay.trace_block_size` must be a positive integer, got {bs!r}")
    input_length = replay.get("input_length")
    if (type(input_length) is not int or input_length < 0 or input_length > U64_MAX) and (replay_rules or input_length is not None):
        input_length = _u64(input_length, src, "request.replay.input_length")
    if hash_text is not None:  # the line was parsed without the list (`HashTexts.cut`)
        hashes = texts.ids(hash_text, chain)
    elif replay_rules or "input_sequence_hashes" in replay:
        hashes = _hashes(replay.get("input_sequence_hashes"), src, "request.replay.input_sequence_hashes")
    else:
        hashes = _NO_HASHES
    n = len(hashes)
    if strict:
        need = -(-input_length // bs)
        if n != need:
            raise TraceError(
                f"invalid request_end at {src}: field `request.replay.input_sequence_hashes`: input_length "
                f"{input_length} with trace_block_size {bs} requires exactly {need} replay hashes, got {n}")
    elif replay_rules and n * bs < input_length:
        raise TraceError(
            f"invalid request_end at {src}: field `request.replay.input_sequence_hashes`: input_length "
            f"{input_length} exceeds replay hash capacity {n * bs}")
    completion = replay.get("completion_sequence_hashes")
    if completion is not None:
        completion = _hashes(completion, src, "request.replay.completion_sequence_hashes")

    received = g("request_received_ms")
    if received is not None and (type(received) is not int or received < 0):
        received = _u64(received, src, "request.request_received_ms")
    output_tokens = g("output_tokens")
    if output_tokens is not None and (type(output_tokens) is not int or output_tokens < 0):
        output_tokens = _u64(output_tokens, src, "request.output_tokens")
    if strict and received is None:
        raise TraceError(f"invalid request_end at {src}: field `request.request_received_ms`: request trace is missing request_received_ms")
    if strict and output_tokens is None:
        raise TraceError(f"invalid request_end at {src}: field `request.output_tokens`: request trace is missing output_tokens")

    et = ev.get("event_time_unix_ms")
    if type(et) is not int or et < 0:
        if et is None and received is not None:
            et = None
        elif isinstance(et, bool) or not isinstance(et, (int, float)) or not math.isfinite(et) or et < 0:
            raise TraceError(f"invalid request_end at {src}: field `event_time_unix_ms` must be a non-negative number, got {et!r}")
    metrics = []
    for k in _METRICS_F:
        v = g(k)
        if v is not None:
            tv = type(v)
            if tv is float:
                if v - v != 0.0:  # NaN or +-Inf: Dynamo's producer drops these; count it
                    notes[f"non-finite request.{k} dropped"] += 1
                    v = None
            elif tv is int:
                v = float(v)
            else:
                v = _opt_float(req, k, src, notes)
        metrics.append(v)
    prefill_wait, prefill, ttft, total, itl, kv_hit, kv_transfer = metrics
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

    worker = g("worker")
    if worker is not None:
        worker = _worker(worker, src)
    finish = g("finish_reason_metadata")
    tool_calls: tuple = ()
    if isinstance(finish, dict):
        calls = finish.get("tool_calls")
        if isinstance(calls, list):
            tool_calls = tuple(
                ToolCallRef(c.get("choice_index"), c.get("tool_call_index"), c.get("id"), c.get("name"))
                for c in calls if isinstance(c, dict))
    else:
        finish = None
    model = g("model")
    input_tokens = g("input_tokens")
    if input_tokens is not None and (type(input_tokens) is not int or input_tokens < 0 or input_tokens > U64_MAX):
        input_tokens = _u64(input_tokens, src, "request.input_tokens")
    cached = g("cached_tokens")
    if cached is not None and (type(cached) is not int or cached < 0 or cached > U64_MAX):
        cached = _u64(cached, src, "request.cached_tokens")
    depth = g("queue_depth")
    if depth is not None and (type(depth) is not int or depth < 0 or depth > U64_MAX):
        depth = _u64(depth, src, "request.queue_depth")
    # positional: keyword matching of Request's 30 fields cost 2.2 µs a row (see _check_order);
    # the model string interned as parse_tool's strings are
    return Request(
        rid, chain, parent, start, end, output_tokens, bs, input_length, hashes, completion,
        sys.intern(model) if type(model) is str else None, g("x_request_id"), input_tokens, cached,
        prefill_wait, prefill, ttft, total, itl, kv_hit, kv_transfer, depth,
        worker, finish, tool_calls, et, run, identity, gen, src, received is not None)


def parse_tool(ev: dict, gen: Generation, src: Source) -> ToolEvent | None:
    """A tool row to a ToolEvent; None (caller counts it) when it has no identity or no `tool`."""
    tool = ev.get("tool")
    ctx = ev.get("agent_context")
    if ctx is None and isinstance(ev.get("session_id"), str):
        # G3b/G3c ingress shape (flattened identity), as Dynamo's relay would have normalised it
        ctx = {"session_id": ev["session_id"]}
        if isinstance(ev.get("parent_session_id"), str):
            ctx["parent_session_id"] = ev["parent_session_id"]
        gen = Generation.G3B
    if not isinstance(tool, dict) or not isinstance(ctx, dict):
        return None
    if gen is Generation.G3_FREE:
        gen = generation_of(ev.get("schema"), ctx, src)
    chain, parent, run, identity = _identity(gen, ctx, src)
    et = ev.get("event_time_unix_ms")
    tet = type(et)
    if tet is not int and not (tet is float and et - et == 0.0):  # else: the full check
        if isinstance(et, bool) or not isinstance(et, (int, float)) or not math.isfinite(et):
            raise TraceError(f"{src}: field `event_time_unix_ms` must be a finite number, got {et!r}")
    g = tool.get
    dur = g("duration_ms")
    if dur is not None:
        if type(dur) is float and dur - dur == 0.0:
            pass
        elif isinstance(dur, bool) or not isinstance(dur, (int, float)):
            raise TraceError(f"{src}: field `tool.duration_ms` must be a number, got {dur!r}")
        elif not math.isfinite(dur):
            raise TraceError(f"{src}: field `tool.duration_ms`: tool duration_ms must be finite")
        else:
            dur = float(dur)
    claude = g("claude")
    if isinstance(claude, dict):
        c = claude.get
        claude = ClaudeLink(*(_opt_str(c(k), src, f"tool.claude.{k}") for k in _CLAUDE_KEYS))
    else:
        claude = None
    # u64 fields in the order they are reported (`_opt_u64`, inlined for exact ints in range)
    started = g("started_at_unix_ms")
    if started is not None and (type(started) is not int or started < 0 or started > U64_MAX):
        started = _u64(started, src, "tool.started_at_unix_ms")
    ended = g("ended_at_unix_ms")
    if ended is not None and (type(ended) is not int or ended < 0 or ended > U64_MAX):
        ended = _u64(ended, src, "tool.ended_at_unix_ms")
    out_tokens = g("output_tokens")
    if out_tokens is not None and (type(out_tokens) is not int or out_tokens < 0 or out_tokens > U64_MAX):
        out_tokens = _u64(out_tokens, src, "tool.output_tokens")
    out_bytes = g("output_bytes")
    if out_bytes is not None and (type(out_bytes) is not int or out_bytes < 0 or out_bytes > U64_MAX):
        out_bytes = _u64(out_bytes, src, "tool.output_bytes")
    strs = (g("tool_call_id"), g("tool_class"), g("status"), g("tool_name_hash"), g("error_type"), ev.get("event_source"))
    if not set(map(type, strs)) <= _STR_OR_NONE:  # one C-level test; the slow path names the field
        for k, v in zip(_TOOL_STR_KEYS, strs):
            _opt_str(v, src, k)
    call_id, tool_class, status, name_hash, error_type, source = strs
    # one string object per distinct value, not per row (~220 bytes a tool row less; `sys.intern`
    # keeps no string alive); the chain's string stays per row, held by `identity` too
    intern = sys.intern
    return ToolEvent(  # positional, as Request above
        intern(ev["event_type"]), chain, parent, call_id, intern(tool_class) if tool_class else tool_class, et, started, ended, dur,
        intern(status) if status else status, out_tokens, out_bytes, name_hash, error_type, claude,
        intern(source) if source else source, run, identity, gen, src)


_CLAUDE_KEYS = ("source_request_id", "consumer_request_id", "child_session_id", "execution_mode")
_TOOL_STR_KEYS = ("tool.tool_call_id", "tool.tool_class", "tool.status", "tool.tool_name_hash", "tool.error_type",
                  "event_source")
_STR_OR_NONE = frozenset((str, type(None)))


def _opt_str(v: object, src: Source, field: str) -> str | None:
    if v is None or type(v) is str:
        return v
    raise TraceError(f"{src}: field `{field}` must be a string, got {v!r}")


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
