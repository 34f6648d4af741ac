"""Tool-event validation and normalisation: what Dynamo would write for a decoded payload."""

from __future__ import annotations

import copy
import math

import orjson
import pytest

from trace_pipe.tools.validation import DROP_REASONS, InvalidToolEvent, normalize

G2 = {
    "schema": "dynamo.agent.trace.v1", "event_type": "tool_end", "event_time_unix_ms": 1777312801500,
    "event_source": "harness",
    "agent_context": {"session_type_id": "deep_research", "session_id": "research-run-42",
                      "trajectory_id": "research-run-42:researcher"},
    "tool": {"tool_call_id": "call-abc", "tool_class": "web_search", "status": "succeeded",
             "started_at_unix_ms": 1777312801080, "ended_at_unix_ms": 1777312801500, "duration_ms": 420.5},
}
INGRESS = {
    "schema": "dynamo.request.trace.v1", "event_type": "tool_error", "event_time_unix_ms": 1777312801500,
    "session_id": "research-run-42:researcher", "parent_session_id": "research-run-42",
    "tool": {"tool_call_id": "call-abc", "tool_class": "bash", "status": "failed", "duration_ms": 7,
             "error_type": "pi_tool_error"},
}


def test_full_record_comes_out_in_serde_field_order():
    # the spec's G2 example (tool keys in another order) serialized in struct order, as Dynamo writes
    line = orjson.dumps(normalize(G2))
    assert line == (
        b'{"schema":"dynamo.agent.trace.v1","event_type":"tool_end","event_time_unix_ms":1777312801500,'
        b'"event_source":"harness","agent_context":{"session_type_id":"deep_research",'
        b'"session_id":"research-run-42","trajectory_id":"research-run-42:researcher"},'
        b'"tool":{"tool_call_id":"call-abc","tool_class":"web_search","started_at_unix_ms":1777312801080,'
        b'"ended_at_unix_ms":1777312801500,"status":"succeeded","duration_ms":420.5}}')


def test_ingress_shape_becomes_a_harness_row_with_agent_context():
    row = normalize(INGRESS)
    assert row == {
        "schema": "dynamo.request.trace.v1", "event_type": "tool_error", "event_time_unix_ms": 1777312801500,
        "event_source": "harness",
        "agent_context": {"session_id": "research-run-42:researcher", "parent_session_id": "research-run-42"},
        "tool": {"tool_call_id": "call-abc", "tool_class": "bash", "status": "error", "duration_ms": 7.0,
                 "error_type": "pi_tool_error"},
    }
    # an integral duration stays an f64 on the way out ("7.0", as serde_json writes it)
    assert b'"duration_ms":7.0' in orjson.dumps(row)


def test_ingress_without_parent_has_only_session_id():
    p = copy.deepcopy(INGRESS)
    del p["parent_session_id"]
    assert normalize(p)["agent_context"] == {"session_id": "research-run-42:researcher"}


@pytest.mark.parametrize(("given", "canonical"), [
    ("running", "running"), ("succeeded", "succeeded"), ("ok", "succeeded"), ("success", "succeeded"),
    ("error", "error"), ("failed", "error"), ("cancelled", "cancelled"), ("timeout", "cancelled"),
    ("canceled", "cancelled"),
])
def test_status_aliases_are_normalised(given, canonical):
    p = copy.deepcopy(G2)
    p["tool"]["status"] = given
    assert normalize(p)["tool"]["status"] == canonical


def test_unknown_keys_and_nil_optionals_vanish_like_serde():
    p = copy.deepcopy(G2)
    p["extra"] = 1
    p["request"] = None
    p["agent_context"]["note"] = "x"
    p["agent_context"]["parent_trajectory_id"] = None
    p["tool"]["arguments"] = {"cmd": "ls"}
    p["tool"]["output_bytes"] = None
    row = normalize(p)
    assert "extra" not in row and "request" not in row
    assert list(row["agent_context"]) == ["session_type_id", "session_id", "trajectory_id"]
    assert list(row["tool"]) == ["tool_call_id", "tool_class", "started_at_unix_ms", "ended_at_unix_ms",
                                 "status", "duration_ms"]


def test_g1_ms_agent_source_is_written_as_harness():
    p = copy.deepcopy(G2)
    p["event_source"] = "ms_agent"
    p["agent_context"] = {"workflow_type_id": "ms", "workflow_id": "w", "program_id": "w:p"}
    row = normalize(p)
    assert row["event_source"] == "harness"
    assert row["agent_context"] == {"workflow_type_id": "ms", "workflow_id": "w", "program_id": "w:p"}


def test_optional_tool_fields_keep_their_values_and_order():
    p = copy.deepcopy(G2)
    p["tool"] = {"error_type": "e", "tool_name_hash": "h", "output_bytes": 3, "output_tokens": 2,
                 "claude": {"execution_mode": "blocking", "source_request_id": "r1"},
                 "tool_class": "c", "tool_call_id": "i"}
    assert list(normalize(p)["tool"].items()) == [
        ("tool_call_id", "i"), ("tool_class", "c"), ("output_tokens", 2), ("output_bytes", 3),
        ("tool_name_hash", "h"), ("error_type", "e"),
        ("claude", {"source_request_id": "r1", "execution_mode": "blocking"})]


def _mut(base: dict, path: tuple, value: object) -> dict:
    p = copy.deepcopy(base)
    d = p
    for k in path[:-1]:
        d = d[k]
    if value is _DEL:
        del d[path[-1]]
    else:
        d[path[-1]] = value
    return p


_DEL = object()

BAD = [
    ("schema", ("schema",), "dynamo.other.v2"),
    ("schema", ("schema",), _DEL),
    ("event_type", ("event_type",), "request_end"),
    ("event_type", ("event_type",), ["tool_end"]),
    ("event_time", ("event_time_unix_ms",), 1.5),
    ("event_time", ("event_time_unix_ms",), -1),
    ("event_time", ("event_time_unix_ms",), True),
    ("event_source", ("event_source",), "dynamo"),
    ("event_source", ("event_source",), _DEL),
    ("agent_context", ("agent_context",), "ctx"),
    ("agent_context", ("agent_context",), {"session_type_id": "x"}),
    ("agent_context", ("agent_context", "trajectory_final"), "yes"),
    ("request", ("request",), {"request_id": "r"}),
    ("payload", ("payload",), {}),
    ("tool", ("tool",), _DEL),
    ("tool", ("tool",), [1]),
    ("tool_field", ("tool", "tool_call_id"), _DEL),
    ("tool_field", ("tool", "tool_class"), 7),
    ("tool_field", ("tool", "status"), "Succeeded"),
    ("tool_field", ("tool", "output_bytes"), -3),
    ("tool_field", ("tool", "started_at_unix_ms"), 1.0),
    ("duration_ms", ("tool", "duration_ms"), math.nan),
    ("duration_ms", ("tool", "duration_ms"), math.inf),
    ("duration_ms", ("tool", "duration_ms"), "5"),
]


@pytest.mark.parametrize(("reason", "path", "value"), BAD)
def test_invalid_full_records_are_dropped_with_their_reason(reason, path, value):
    assert reason in DROP_REASONS
    with pytest.raises(InvalidToolEvent) as e:
        normalize(_mut(G2, path, value))
    assert e.value.reason == reason


@pytest.mark.parametrize(("reason", "path", "value"), [
    ("agent_context", ("session_id",), _DEL),
    ("agent_context", ("session_id",), ""),
    ("agent_context", ("parent_session_id",), 5),
    ("agent_context", ("schema",), "dynamo.agent.trace.v1"),  # the ingress type is G3-only
    ("duration_ms", ("tool", "duration_ms"), math.nan),
])
def test_invalid_ingress_payloads_are_dropped_with_their_reason(reason, path, value):
    with pytest.raises(InvalidToolEvent) as e:
        normalize(_mut(INGRESS, path, value))
    assert e.value.reason == reason


@pytest.mark.parametrize("payload", [[1, 2], "text", 5, None])
def test_non_map_payloads(payload):
    with pytest.raises(InvalidToolEvent) as e:
        normalize(payload)
    assert e.value.reason == "not_map"
