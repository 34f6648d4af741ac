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

import orjson

from . import azure, distserve, dynamo_rows, mooncake, weka
from .errors import TraceError
from .io import expand_inputs, iter_lines
from .model import Generation, Request, Source, Trace

_PAYLOAD_MARK = b'"event_type":"request_payload"'


def _loads(raw: bytes, src: Source):
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        # orjson rejects NaN/Infinity and integers beyond 64 bits; say which, as precisely as we can
        bad: list[str] = []

        def constant(name: str):
            bad.append(name)
            return math.nan

        try:
            json.loads(raw, parse_constant=constant)
        except ValueError:
            raise TraceError(f"{src}: invalid JSON: {e}") from None
        if bad:
            raise TraceError(f"{src}: invalid JSON: non-finite number `{bad[0]}` (Dynamo never writes NaN or Infinity)") from None
        raise TraceError(f"{src}: invalid JSON: a number outside the 64-bit range (an integer above 2^64-1 "
                         f"or a float that overflows)") from None


def _is_request_end(d: object) -> bool:
    ev = d.get("event", d) if type(d) is dict else None
    return type(ev) is dict and ev.get("event_type") == "request_end"


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
    header_seen = False
    texts = dynamo_rows.HashTexts()
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
                d = _loads(f.read(), src)
            items = d if isinstance(d, list) else [d]
            for d in items:
                if not isinstance(d, dict) or not weka.is_weka_play(d):
                    raise TraceError(f"{src}: a .json input must be a WEKA kv-cache-tester trace (an object with `id` and `requests`)")
                weka.read_play(d, plays, src, trace, subagents)
                plays += 1
            continue
        loads = orjson.loads
        cut_hashes = texts.cut
        for lineno, raw in iter_lines(path):
            if on_line is not None:
                on_line(1)
            if raw.find(_PAYLOAD_MARK, 0, 256) >= 0:
                trace.skipped["request_payload rows"] += 1
                continue
            src = Source(path, lineno)
            cut = cut_hashes(raw)
            if cut is not None:
                try:
                    d = loads(cut[0])
                except orjson.JSONDecodeError:
                    cut = None
                else:
                    if not _is_request_end(d):  # the list is a request_end's or the line is read whole
                        cut = None
            if cut is None:
                try:
                    d = loads(raw)
                except orjson.JSONDecodeError:
                    d = _loads(raw, src)  # raises, naming the problem
            if not isinstance(d, dict):
                trace.skipped["lines that are not JSON objects"] += 1
                continue
            ev = d.get("event")
            if isinstance(ev, dict):
                d = ev
            elif "event_type" not in d:
                if weka.is_weka_play(d):
                    weka.read_play(d, plays, src, trace, subagents)
                    plays += 1
                    continue
                if d.get("schema") == mooncake.V2_SCHEMA or "hash_ids" in d or "output_length" in d:
                    header_seen |= d.get("schema") == mooncake.V2_SCHEMA
                    _mooncake_line(d, src, trace, header_seen)
                    continue
            et = d.get("event_type")
            if et == "request_payload":
                trace.skipped["request_payload rows"] += 1
                continue
            schema = d.get("schema")
            if et == "request_end":
                gen = dynamo_rows.generation_of(schema, d.get("agent_context"), src)
                try:
                    req = dynamo_rows.parse_request(d, gen, src, trace.notes, cut and cut[1], texts, replay_rules)
                except dynamo_rows.Reparse:
                    d = _loads(raw, src)
                    req = dynamo_rows.parse_request(d.get("event", d), gen, src, trace.notes, replay_rules=replay_rules)
                prev = seen.get(req.request_id)
                if prev is not None:
                    raise TraceError(f"invalid request_end at {src}: field `request.request_id`: duplicate request_id {req.request_id} (first at {prev})")
                seen[req.request_id] = src
                trace.requests.append(req)
            elif type(et) is str and et in dynamo_rows.TOOL_TYPES:
                gen = dynamo_rows.generation_of(schema, d.get("agent_context"), src)
                tool = dynamo_rows.parse_tool(d, gen, src)
                if tool is None:
                    trace.skipped[f"{et} rows without agent_context or tool"] += 1
                else:
                    trace.tools.append(tool)
            elif schema == dynamo_rows.REQUEST_SCHEMA:
                raise TraceError(f"{src}: field `event_type`: request trace schema only supports request_end/tool_* events, got {et!r}")
            else:
                dynamo_rows.generation_of(schema, None, src)  # unknown schema is an error
                trace.skipped[f"{et if isinstance(et, str) else 'untyped'} rows"] += 1
    _check_ids(trace)
    return trace


def _mooncake_line(d: dict, src: Source, trace: Trace, v2: bool) -> None:
    if d.get("schema") == mooncake.V2_SCHEMA:
        if trace.requests or trace.mooncake_header is not None:
            raise TraceError(f"{src}: the agentic Mooncake v2 header must be the first line")
        mooncake.header_from_json(d, str(src))
        trace.mooncake_header = dict(d)
        return
    if v2 and "timestamp" in d:
        raise TraceError(f"{src}: field `timestamp` is not allowed in agentic Mooncake v2 rows")
    row = mooncake.row_from_json(d, str(src))
    if v2:
        mooncake.check_v2_row(d, row, str(src), trace.mooncake_header["block_size"])
    i = len(trace.mooncake_rows)
    # a row without an id keeps none (writing it back must not add one); its Request, which
    # every other output needs to name, gets the row's position
    rid = row.request_id if row.request_id is not None else f"row-{i}"
    ts = row.not_before_ms if row.not_before_ms is not None else (row.timestamp or 0.0)
    start = dynamo_rows.round_half_away(ts)
    bs = (trace.mooncake_header or {}).get("block_size")
    trace.mooncake_rows.append(row)
    trace.requests.append(Request(
        request_id=rid, chain_id=row.session_id, parent_chain_id=None, start_ms=start, end_ms=start,
        output_tokens=row.output_length, block_size=bs, input_length=row.input_length,
        hashes=row.hash_ids, model=row.model, generation=Generation.MOONCAKE, source=src))


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
