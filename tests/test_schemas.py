"""The typed schemas (pipeline/schemas.py) and their one translation of msgspec's errors: every
typed Dynamo field has its wording, and a bad value anywhere in a record is one line naming the
field as the README names it, enveloped or bare."""

from __future__ import annotations

import msgspec
import orjson
import pytest

from trace_pipe.pipeline import schemas
from trace_pipe.pipeline.errors import TraceError


def _typed_fields(cls: type, prefix: str = "") -> list[str]:
    """Dotted paths of every typed (not `Any`) field under a struct, nested structs expanded."""
    out = []
    for f in msgspec.structs.fields(cls):
        path = prefix + f.encode_name
        tp = f.type
        args = getattr(tp, "__args__", ()) or (tp,)
        nested = [a for a in args if isinstance(a, type) and issubclass(a, msgspec.Struct)]
        if tp is not object and repr(tp) != "typing.Any":
            out.append(path)
        for n in nested:
            out += _typed_fields(n, path + ".")
    return out


def test_every_typed_dynamo_field_has_its_wording():
    fields = [f for f in _typed_fields(schemas.Record) if f not in ("schema", "event_type", "session_id",
                                                                    "parent_session_id")]
    hashes = {"request.replay.input_sequence_hashes", "request.replay.completion_sequence_hashes"}
    missing = [f for f in fields if f not in schemas._RULES and f not in hashes]
    assert missing == []
    # and the table names no field the schema lacks (a renamed field would leave a dead rule)
    known = set(fields) | {"event", "request.finish_reason_metadata.tool_calls.choice_index",
                           "request.finish_reason_metadata.tool_calls.tool_call_index",
                           "request.finish_reason_metadata.tool_calls.id",
                           "request.finish_reason_metadata.tool_calls.name"}
    assert sorted(set(schemas._RULES) - known) == []


RECORD = {"schema": "dynamo.request.trace.v1", "event_type": "request_end", "event_time_unix_ms": 1100,
          "agent_context": {"session_id": "s"},
          "request": {"request_id": "r1", "model": "m", "output_tokens": 5, "request_received_ms": 1000,
                      "total_time_ms": 100.0, "worker": {"decode_worker_id": 1},
                      "replay": {"trace_block_size": 2, "input_length": 2, "input_sequence_hashes": [11]}}}


@pytest.mark.parametrize("path, value, text", [
    (("request", "output_tokens"), "5", "field `request.output_tokens` must be a non-negative integer, got '5'"),
    (("request", "output_tokens"), -1, "field `request.output_tokens` is outside the u64 range: -1"),
    (("request", "worker", "decode_worker_id"), 2**64,
     "field `request.worker.decode_worker_id` is outside the u64 range: 18446744073709551616"),
    (("request", "total_time_ms"), [1], "field `request.total_time_ms` must be a number, got [1]"),
    (("request", "replay", "trace_block_size"), 0,
     "invalid request_end at {where}: field `request.replay.trace_block_size` must be a positive integer, got 0"),
    (("request", "request_id"), "",
     "invalid request_end at {where}: field `request.request_id` must be a non-empty string, got ''"),
    (("event_time_unix_ms"), "x",
     "invalid request_end at {where}: field `event_time_unix_ms` must be a non-negative number, got 'x'"),
    (("request", "replay", "input_sequence_hashes"), [1, "2"],
     "field `request.replay.input_sequence_hashes` holds '2', not a u64 integer (0 to 2^64-1)"),
])
@pytest.mark.parametrize("envelope", [False, True])
def test_a_bad_value_is_named_by_its_field(path, value, text, envelope):
    rec = orjson.loads(orjson.dumps(RECORD))
    path = path if isinstance(path, tuple) else (path,)
    d = rec
    for k in path[:-1]:
        d = d[k]
    d[path[-1]] = value
    raw = (orjson.dumps({"timestamp": 0, "event": rec}) if envelope else orjson.dumps(rec)) \
        if value != 2**64 else (b'{"timestamp":0,"event":' if envelope else b"") + orjson.dumps(
            {**rec, "request": {**rec["request"], "worker": {"decode_worker_id": 0}}}).replace(
            b'"decode_worker_id":0', b'"decode_worker_id":18446744073709551616') + (b"}" if envelope else b"")
    with pytest.raises(msgspec.ValidationError) as e:
        schemas.LINE.decode(raw)
    err = schemas.explain(e.value, raw, "t.jsonl:3")
    want = text.format(where="t.jsonl:3")
    assert isinstance(err, TraceError)
    assert str(err) == (want if want.startswith("invalid") else f"t.jsonl:3: {want}")


def test_a_valid_record_decodes_typed():
    line = schemas.LINE.decode(orjson.dumps({"timestamp": 7, "event": RECORD}))
    rec = line.event
    assert (rec.request.output_tokens, rec.request.worker.decode_worker_id, rec.request.replay.input_sequence_hashes,
            rec.request.total_time_ms, rec.agent_context) == (5, 1, [11], 100.0, {"session_id": "s"})
    assert schemas.LINE.decode(orjson.dumps(RECORD)).event is None  # bare: the record is the line
