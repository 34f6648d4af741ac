"""One entry point that reads every supported input into one Trace.

Per line (JSONL, plain or multi-member gzip): a Dynamo record (enveloped `{"timestamp","event"}`
or bare, any generation), a WEKA play object, or a Mooncake row / v2 header. Whole-file `.json`:
one WEKA play (kv-cache-tester's `trace_NNNN.json`). `.exp`: a DistServe run; `.csv`: an Azure
LLM inference trace. Shards may come in any order: everything is
ordered by time later, never by file.
"""

from __future__ import annotations

import json
import math
from typing import Callable

import msgspec
import orjson

from . import azure, distserve, dynamo_rows, mooncake, schemas, weka
from .errors import TraceError
from .io import expand_inputs, iter_lines
from .model import Generation, Request, Source, ToolEvent, Trace

_PAYLOAD_MARK = b'"event_type":"request_payload"'
_EVENT_TYPE = b'"event_type"'


untyped_decode = msgspec.json.decode


def loads_line(raw: bytes, src: object):
    """An untyped line (WEKA plays, Mooncake rows, other rows), integers exact at any size (the
    schemas bound them, naming the value); a one-line error naming what is wrong."""
    try:
        return untyped_decode(raw)
    except (msgspec.MsgspecError, RecursionError):
        pass
    try:
        return orjson.loads(raw)  # (for its error messages, which name the problem and the column)
    except orjson.JSONDecodeError as e:
        msg = str(e)
        if msg.startswith("depth limit exceeded"):
            raise schemas.depth_error(raw, str(src)) from None
        # orjson rejects NaN/Infinity and numbers beyond 64 bits; say which, as precisely as we can
        bad: list[str] = []

        def constant(name: str):
            bad.append(name)
            return math.nan

        try:
            json.loads(raw, parse_constant=constant)
        except RecursionError:
            raise schemas.depth_error(raw, str(src)) from None
        except ValueError:
            raise TraceError(f"{src}: invalid JSON: {e}") from None
        if bad:
            raise TraceError(f"{src}: invalid JSON: non-finite number `{bad[0]}` (Dynamo never writes NaN or Infinity)") from None
        if "number" in msg or "integer" in msg:
            raise TraceError(f"{src}: invalid JSON: a number outside the 64-bit range (an integer above 2^64-1 "
                             f"or a float that overflows)") from None
        raise TraceError(f"{src}: invalid JSON: {e}") from None  # a byte order mark, a lone surrogate, ...


decode_line = schemas.LINE.decode


def _decode_line(raw: bytes, src: Source) -> schemas.Line | None:
    """A line typed as a Dynamo record (None: not a JSON object); a one-line error naming the field."""
    try:
        return decode_line(raw)
    except msgspec.ValidationError as e:
        if " - at " not in str(e) and str(e).startswith("Expected `object`"):
            return None
        raise schemas.explain(e, raw, str(src)) from None
    except msgspec.DecodeError:
        loads_line(raw, src)  # raises, naming the problem as the untyped readers do
        raise TraceError(f"{src}: invalid JSON") from None
    except RecursionError:
        raise schemas.depth_error(raw, str(src)) from None


decode_text = schemas.TEXT_LINE.decode
text_of = dynamo_rows.HashTexts.text
cut_hashes = dynamo_rows.HashTexts.cut
# lines from this long have their hash list cut out before the decode (`HashTexts.cut`): at ~400
# hashes that is ~2 µs a line cheaper than decoding the list as text; on lines of a few hashes
# the byte searches cost ~1 µs more than they save
CUT_FROM = 2048
decode_context = schemas.CONTEXT.decode
MAX_CONTEXTS = 4096  # a bound on the contexts remembered (a trace's live chains), not a tuning knob


def _text_record(line: schemas.TextLine) -> schemas.TextRecord | None:
    """The record of a line decoded with its repeated parts as text; None for an enveloped line
    that also has them outside its event (rare: read whole, so the outer ones are checked)."""
    if line.event is None:
        return line
    outer = line.request
    if line.agent_context or (outer is not None and outer.replay is not None and outer.replay.input_sequence_hashes):
        return None
    return line.event


def _remember(contexts: dict, key: tuple, rec: Request | ToolEvent) -> None:
    """A chain's context text repeats on each of its rows: the generation and identity read from
    it the first time (`generation_of`, `dynamo_rows._identity`) serve the rows after it, and
    they share one identity tuple. Only contexts that read without an error are remembered."""
    if len(contexts) >= MAX_CONTEXTS:
        contexts.clear()
    contexts[key] = (rec.generation, (rec.chain_id, rec.parent_chain_id, rec.run_id, rec.identity))


def _other_line(d: object, src: Source, trace: Trace, subagents: str, plays: int) -> int:
    """A line without an event type: a WEKA play, a Mooncake row or v2 header, or a row skipped
    (counted). Returns the plays read so far."""
    if not isinstance(d, dict):
        trace.skipped["lines that are not JSON objects"] += 1
        return plays
    ev = d.get("event")
    if isinstance(ev, dict):
        d = ev
    elif "event_type" not in d:
        if weka.is_weka_play(d):
            weka.read_play(d, plays, src, trace, subagents)
            return plays + 1
        if d.get("schema") == mooncake.V2_SCHEMA or "hash_ids" in d or "output_length" in d:
            _mooncake_line(d, src, trace)
            return plays
    _untyped_event(d.get("event_type"), d.get("schema"), src, trace)
    return plays


def _untyped_event(et: object, schema: object, src: Source, trace: Trace) -> None:
    """A Dynamo row of an event type that carries no request or tool: skipped, counted (an
    unknown schema is an error, and the request schema has no other event types)."""
    if et == "request_payload":
        trace.skipped["request_payload rows"] += 1
        return
    if schema == dynamo_rows.REQUEST_SCHEMA:
        raise TraceError(f"{src}: field `event_type`: request trace schema only supports request_end/tool_* events, got {et!r}")
    dynamo_rows.generation_of(schema, None, src)  # unknown schema is an error
    trace.skipped[f"{et if isinstance(et, str) else 'untyped'} rows"] += 1


def read_trace(inputs: list[str], *, subagents: str = "recorded", on_line: Callable[[int], None] | None = None,
               expand: bool = True, replay_rules: bool = True) -> Trace:
    """Read files, directories and glob patterns into one Trace (raises TraceError on bad input).
    `replay_rules` False (a Perfetto-only conversion) reads Dynamo `request_end` rows as Dynamo's
    Perfetto script does: no replay block, output tokens or arrival time required."""
    if subagents not in weka.SUBAGENT_RULES:
        raise TraceError(f"error: unknown sub-agent rule {subagents!r}, expected one of {', '.join(weka.SUBAGENT_RULES)}")
    paths = expand_inputs(inputs, ("*.jsonl", "*.jsonl.gz", "*.json")) if expand else list(inputs)
    trace = Trace(files=paths)
    seen: dict[str, Source] = {}
    plays = 0
    texts = dynamo_rows.HashTexts()
    contexts: dict = {}  # (schema, agent_context text) -> (generation, `_identity` of it): see _remember
    for path in paths:
        if distserve.is_distserve(path):  # DistServe alignment run (Python-literal first line)
            distserve.read_into(path, trace)
            continue
        if azure.is_azure(path):  # Azure LLM inference trace (CSV)
            azure.read_into(path, trace)
            continue
        if path.endswith(".json"):
            src = Source(path, 1)
            with open(path, "rb") as f:
                d = loads_line(f.read(), src)
            items = d if isinstance(d, list) else [d]
            if not items:
                raise TraceError(f"{src}: an empty list: a .json input must hold WEKA kv-cache-tester plays")
            for d in items:
                if not isinstance(d, dict) or not weka.is_weka_play(d):
                    raise TraceError(f"{src}: a .json input must be a WEKA kv-cache-tester trace (an object with `id` and `requests`)")
                weka.read_play(d, plays, src, trace, subagents)
                plays += 1
            continue
        for lineno, raw in iter_lines(path):
            if on_line is not None:
                on_line(1)
            if raw.find(_PAYLOAD_MARK, 0, 256) >= 0:
                trace.skipped["request_payload rows"] += 1
                continue
            src = Source(path, lineno)
            if _EVENT_TYPE not in raw and b"\\" not in raw:  # not a Dynamo record: WEKA, Mooncake, other
                plays = _other_line(loads_line(raw, src), src, trace, subagents, plays)
                continue
            rec = ctx = hit = key = hash_text = None
            cut = cut_hashes(raw) if len(raw) >= CUT_FROM else None
            if cut is not None:
                try:
                    rec = _text_record(decode_text(cut[0]))
                except (msgspec.MsgspecError, RecursionError):
                    pass
                if rec is not None and rec.event_type == "request_end" and text_of(rec) == b"":
                    hash_text = cut[1]  # the emptied list is the one at request.replay
                else:
                    rec = None
            if hash_text is None:
                try:
                    rec = _text_record(decode_text(raw))
                except (msgspec.MsgspecError, RecursionError):
                    pass
            if rec is not None and hash_text is None:
                if rec.event_type == "request_end":
                    hash_text = text_of(rec)
                    if hash_text is None:
                        rec = None
                elif rec.request is not None and rec.request.replay is not None and \
                        rec.request.replay.input_sequence_hashes:
                    rec = None  # another row with a hash list: typed whole, as any other field
            if rec is not None and rec.agent_context:
                text = bytes(rec.agent_context)
                schema = rec.schema
                if schema is None or type(schema) is str:
                    key = (schema, text)
                    hit = contexts.get(key)
                if hit is None:
                    try:
                        ctx = decode_context(text)
                    except (msgspec.MsgspecError, RecursionError):
                        rec = None  # the typed decode below words the error
                    if ctx is None:  # `null`: a tool row's identity may then come from elsewhere
                        key = None
            if rec is None:  # the whole line typed (its text parts decoded), for the errors it words
                hash_text = key = None
                line = _decode_line(raw, src)
                if line is None:
                    trace.skipped["lines that are not JSON objects"] += 1
                    continue
                rec = line.event if line.event is not None else line
                ctx = rec.agent_context
            et = rec.event_type
            if et is None:  # no event type: a WEKA play, a Mooncake row, or an untyped row
                plays = _other_line(loads_line(raw, src), src, trace, subagents, plays)
                continue
            schema = rec.schema
            if hit is not None:
                gen, ident = hit
            else:
                ident = None
                if et == "request_end" or (type(et) is str and et in dynamo_rows.TOOL_TYPES):
                    gen = dynamo_rows.generation_of(schema, ctx, src)
            if et == "request_end":
                try:
                    req = dynamo_rows.parse_request(rec, gen, src, trace.notes, hash_text, texts, replay_rules, raw,
                                                    ctx, ident)
                except dynamo_rows.Reparse:
                    line = _decode_line(raw, src)
                    rec = line.event if line.event is not None else line
                    req = dynamo_rows.parse_request(rec, gen, src, trace.notes, replay_rules=replay_rules, raw=raw,
                                                    ident=ident)
                prev = seen.get(req.request_id)
                if prev is not None:
                    raise TraceError(f"invalid request_end at {src}: field `request.request_id`: duplicate request_id {req.request_id} (first at {prev})")
                seen[req.request_id] = src
                trace.requests.append(req)
                if key is not None and hit is None:
                    _remember(contexts, key, req)
            elif et == "request_payload":
                trace.skipped["request_payload rows"] += 1
            elif type(et) is str and et in dynamo_rows.TOOL_TYPES:
                tool = dynamo_rows.parse_tool(rec, gen, src, ctx if hit is None else rec.agent_context, ident)
                if tool is None:
                    trace.skipped[f"{et} rows without agent_context or tool"] += 1
                else:
                    trace.tools.append(tool)
                    if key is not None and hit is None:
                        _remember(contexts, key, tool)
            else:
                _untyped_event(et, schema, src, trace)
    if not (trace.requests or trace.tools or trace.skipped):
        raise TraceError(f"error: {', '.join(inputs)}: no rows (the input is empty)")
    _check_ids(trace)
    return trace


def _mooncake_line(d: dict, src: Source, trace: Trace) -> None:
    header = trace.mooncake_header
    got = mooncake.read_line(d, str(src), mooncake.Header(**{k: header[k] for k in _HEADER_KEYS}) if header else None,
                             not trace.requests and header is None)
    if type(got) is mooncake.Header:
        trace.mooncake_header = got.to_json()
        return
    row = got
    i = len(trace.mooncake_rows)
    # a row without an id keeps none (writing it back must not add one); its Request, which
    # every other output needs to name, gets the row's position
    rid = row.request_id if row.request_id is not None else f"row-{i}"
    ts = row.not_before_ms if row.not_before_ms is not None else (row.timestamp or 0.0)
    start = dynamo_rows.round_half_away(ts)
    bs = header.get("block_size") if header else None
    trace.mooncake_rows.append(row)
    trace.requests.append(Request(
        request_id=rid, chain_id=row.session_id, parent_chain_id=None, start_ms=start, end_ms=start,
        output_tokens=row.output_length, block_size=bs, input_length=row.input_length,
        hashes=row.hash_ids, model=row.model, generation=Generation.MOONCAKE, source=src))


_HEADER_KEYS = ("version", "block_size", "hash_id_scope", "source")


def _check_ids(trace: Trace) -> None:
    if trace.mooncake_rows and len(trace.mooncake_rows) != len(trace.requests):
        raise TraceError("error: an input mixes Mooncake rows with Dynamo or WEKA records; convert them separately")
    if trace.mooncake_header is not None:
        mooncake.check_v2_graph(trace.mooncake_rows, [r.source for r in trace.requests])
    if trace.mooncake_rows:
        seen: set[str] = set()
        for r in trace.requests:
            if r.request_id in seen:
                raise TraceError(f"{r.source}: field `request_id`: duplicate request_id {r.request_id}")
            seen.add(r.request_id)
    elif any(r.generation is Generation.WEKA for r in trace.requests):
        seen = set()
        for r in trace.requests:
            if r.request_id in seen:
                raise TraceError(f"{r.source}: field `id`: duplicate request_id {r.request_id} (the same play twice?)")
            seen.add(r.request_id)
