"""Builders for Dynamo trace records in any generation (the notation of dynamo-formats.md §6)."""

from __future__ import annotations

from pathlib import Path

import orjson

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
FIXTURES = SHARED / "fixtures"

SCHEMA = {"G1": "dynamo.agent.trace.v1", "G2": "dynamo.agent.trace.v1",
          "G3a": "dynamo.request.trace.v1", "G3b": "dynamo.request.trace.v1"}


def context(gen: str, chain: str | None, parent: str | None = None, *, run: str = "run-1",
            session_type: str = "ms_agent") -> dict | None:
    """`agent_context` naming `chain` (and `parent`) with the field names of `gen`; `run` is the
    whole-run id G1 (`workflow_id`) and G2 (`session_id`) also carry."""
    if chain is None:
        return None
    if gen == "G1":
        ctx = {"workflow_type_id": "wf", "workflow_id": run, "program_id": chain}
        if parent:
            ctx["parent_program_id"] = parent
    elif gen == "G2":
        ctx = {"session_type_id": session_type, "session_id": run, "trajectory_id": chain}
        if parent:
            ctx["parent_trajectory_id"] = parent
    elif gen == "G3a":
        ctx = {"trajectory_id": chain}
        if parent:
            ctx["parent_trajectory_id"] = parent
    else:
        ctx = {"session_id": chain}
        if parent:
            ctx["parent_session_id"] = parent
    return ctx


def req(rid: str, chain: str | None, parent: str | None, start: int, end: int, hashes: list[int], *,
        gen: str = "G3b", bs: int = 2, output_tokens: int | None = 5, model: str | None = "test-model",
        **extra) -> dict:
    """REQ(id, chain, parent, start, end, hashes) of §6."""
    request = {"request_id": rid, "request_received_ms": start, "total_time_ms": end - start,
               "replay": {"trace_block_size": bs, "input_length": bs * len(hashes), "input_sequence_hashes": hashes}}
    if output_tokens is not None:
        request["output_tokens"] = output_tokens
    if model is not None:
        request["model"] = model
    request.update(extra)
    ev = {"schema": SCHEMA[gen], "event_type": "request_end", "event_time_unix_ms": end}
    ctx = context(gen, chain, parent)
    if ctx is not None:
        ev["event_source"] = "dynamo"
        ev["agent_context"] = ctx
    ev["request"] = request
    return ev


def tool(chain: str, call_id: str, cls: str, start: int, end: int, *, gen: str = "G3b", event_type: str = "tool_end",
         **extra) -> dict:
    """TOOL(chain, call_id, class, start, end) of §6."""
    t = {"tool_call_id": call_id, "tool_class": cls, "started_at_unix_ms": start, "ended_at_unix_ms": end,
         "status": "succeeded", "duration_ms": float(end - start)}
    t.update(extra)
    return {"schema": SCHEMA[gen], "event_type": event_type, "event_time_unix_ms": end, "event_source": "harness",
            "agent_context": context(gen, chain), "tool": t}


def write_jsonl(path: Path, records: list[dict], *, envelope: bool = False) -> Path:
    with open(path, "wb") as f:
        for i, r in enumerate(records):
            f.write(orjson.dumps({"timestamp": i, "event": r} if envelope else r) + b"\n")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in Path(path).read_bytes().splitlines() if line.strip()]


def read_lines(path: Path) -> list[bytes]:
    """The output lines exactly as written (for byte comparisons)."""
    return [line for line in Path(path).read_bytes().splitlines() if line.strip()]


def assert_rows(lines: list[bytes], expected: list[dict]) -> None:
    """Whole-row comparison with Dynamo's rows: the same rows in the same order, the same keys in
    the same (Dynamo's) order, equal values with the same JSON spelling (`100.0`, never `100`), so
    each line is byte-equal to the compact JSON of its expected row. (Lists are compared in order:
    §10's hash-map order only affects a row that joins or spawns several child chains.)"""
    rows = [orjson.loads(line) for line in lines]
    assert len(rows) == len(expected), f"{len(rows)} rows, expected {len(expected)}: {rows}"
    for i, (got, want) in enumerate(zip(rows, expected)):
        assert list(got) == list(want), f"row {i}: keys {list(got)} != {list(want)}"
        assert got == want, f"row {i}: {got} != {want}"
        assert lines[i] == orjson.dumps(want), f"row {i}: {lines[i]} != {orjson.dumps(want)}"
