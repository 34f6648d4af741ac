"""Mooncake rows (plain, agentic v1, agentic v2): the record, its exact serialization, and a reader.

Serialization follows Dynamo's serde structs field for field (dynamo-formats.md §4.3, §4.4, §4.7):
compact JSON, declared key order, absent values omitted, floats for `timestamp`/`delay`/
`tool_wait_ms`/`not_before_ms`/`delay_ms`, integers elsewhere.
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass
from typing import Iterator

import orjson

from .shared_hashes import common_prefix_flat
from .errors import TraceError
from .io import iter_lines

V2_SCHEMA = "dynamo.agentic_mooncake"


@dataclass(slots=True)
class ToolSpan:
    """A `tool_events[]` element of an agentic v1 row. Treat as immutable (not `frozen`: see Row)."""

    tool_call_id: str
    tool_class: str
    started_at_unix_ms: int
    ended_at_unix_ms: int
    duration_ms: float
    status: str
    output_bytes: int | None = None
    output_tokens: int | None = None
    error_type: str | None = None

    def to_json(self) -> dict:
        return tool_event_json(self.tool_call_id, self.tool_class, self.started_at_unix_ms, self.ended_at_unix_ms,
                               self.duration_ms, self.status, self.output_bytes, self.output_tokens, self.error_type)


def tool_event_json(tool_call_id: str, tool_class: str, started_at_unix_ms: int, ended_at_unix_ms: int,
                    duration_ms: float, status: str, output_bytes: int | None = None,
                    output_tokens: int | None = None, error_type: str | None = None) -> dict:
    """A `tool_events[]` element in Dynamo's key order (ToolSpan's fields, in order)."""
    d = {
        "tool_call_id": tool_call_id,
        "tool_class": tool_class,
        "started_at_unix_ms": started_at_unix_ms,
        "ended_at_unix_ms": ended_at_unix_ms,
        "duration_ms": float(duration_ms),
        "status": status,
    }
    if output_bytes is not None:
        d["output_bytes"] = output_bytes
    if output_tokens is not None:
        d["output_tokens"] = output_tokens
    if error_type is not None:
        d["error_type"] = error_type
    return d


@dataclass(frozen=True, slots=True)
class Dependency:
    """A typed v2 dependency: this row may start `delay_ms` after `request_id` hits `trigger`."""

    request_id: str
    trigger: str  # "dispatch" | "completion"
    delay_ms: float
    relation: str  # "sequence" | "spawn" | "join" | "replay_barrier"

    def sort_key(self) -> tuple:
        return (self.request_id, self.trigger, self.relation, self.delay_ms)


@dataclass(slots=True)
class Row:
    """One Mooncake row of any of the three shapes; unset fields are None / empty. Treat as
    immutable: not `frozen`, because a frozen dataclass sets each of its ~22 fields through
    `object.__setattr__`, a few microseconds per row on the million-row conversion path."""

    input_length: int
    output_length: int
    hash_ids: tuple[int, ...]
    request_id: str | None = None
    session_id: str | None = None
    output_token_ids: tuple[int, ...] | None = None
    timestamp: float | None = None  # v1/plain arrival, ms from the first start
    delay: float | None = None
    request_kind: str | None = None
    wait_for: tuple[str, ...] = ()
    branches: tuple[str, ...] = ()
    prefix_reset: bool | None = None
    tool_wait_ms: float | None = None
    tool_events: tuple[ToolSpan, ...] = ()
    priority: int | None = None
    strict_priority: int | None = None
    policy_class: str | None = None
    routing_constraints: object = None
    # v2 only
    play_id: str | None = None
    model: str | None = None
    not_before_ms: float | None = None
    dependencies: tuple[Dependency, ...] = ()

    @property
    def dependency_delay_ms(self) -> float:
        """What replay waits after all `wait_for` complete (`delay + tool_wait_ms`)."""
        return (self.delay or 0.0) + (self.tool_wait_ms or 0.0)

    # -- serialization ---------------------------------------------------------------------
    def to_plain(self) -> dict:
        """Key order of Dynamo's `MooncakeRow` (§4.3)."""
        d: dict = {}
        if self.request_id is not None:
            d["request_id"] = self.request_id
        if self.session_id is not None:
            d["session_id"] = self.session_id
        d["input_length"] = self.input_length
        d["output_length"] = self.output_length
        if self.output_token_ids is not None:
            d["output_token_ids"] = list(self.output_token_ids)
        d["hash_ids"] = list(self.hash_ids)
        if self.timestamp is not None:
            d["timestamp"] = float(self.timestamp)
        if self.delay is not None:
            d["delay"] = float(self.delay)
        self._priority_fields(d)
        return d

    def to_agentic_v1(self) -> dict:
        """Key order of Dynamo's `AgenticMooncakeRow` (§4.4)."""
        d: dict = {"request_id": self.request_id, "session_id": self.session_id,
                   "input_length": self.input_length, "output_length": self.output_length}
        if self.output_token_ids is not None:
            d["output_token_ids"] = list(self.output_token_ids)
        d["hash_ids"] = list(self.hash_ids)
        d["timestamp"] = float(self.timestamp or 0.0)
        if self.delay is not None:
            d["delay"] = float(self.delay)
        if self.request_kind is not None:
            d["request_kind"] = self.request_kind
        self._priority_fields(d)
        if self.wait_for:
            d["wait_for"] = list(self.wait_for)
        if self.branches:
            d["branches"] = list(self.branches)
        if self.prefix_reset is not None:
            d["prefix_reset"] = self.prefix_reset
        if self.tool_wait_ms is not None and self.tool_wait_ms > 0:
            d["tool_wait_ms"] = float(self.tool_wait_ms)
        if self.tool_events:
            d["tool_events"] = [t.to_json() for t in self.tool_events]
        return d

    def to_agentic_v2(self) -> dict:
        """Key order of Dynamo's typed v2 row (§4.7)."""
        d: dict = {"request_id": self.request_id, "play_id": self.play_id,
                   "session_id": self.session_id, "model": self.model,
                   "input_length": self.input_length, "output_length": self.output_length}
        if self.output_token_ids is not None:
            d["output_token_ids"] = list(self.output_token_ids)
        d["hash_ids"] = list(self.hash_ids)
        d["not_before_ms"] = float(self.not_before_ms or 0.0)
        self._priority_fields(d, v2=True)
        if self.dependencies:
            d["dependencies"] = [
                {"request_id": x.request_id, "trigger": x.trigger, "delay_ms": float(x.delay_ms),
                 "relation": x.relation}
                for x in sorted(self.dependencies, key=Dependency.sort_key)
            ]
        return d

    def _priority_fields(self, d: dict, v2: bool = False) -> None:
        if self.priority is not None:
            d["priority"] = self.priority
        if self.strict_priority is not None:
            d["strict_priority"] = self.strict_priority
        if self.policy_class is not None:
            d["policy_class"] = self.policy_class
        if self.routing_constraints is not None and not v2:
            d["routing_constraints"] = self.routing_constraints


def dumps(d: dict) -> bytes:
    """Compact JSON line as serde_json writes it (floats keep their `.0`)."""
    return orjson.dumps(d) + b"\n"


# -- reading -------------------------------------------------------------------------------

_ALIASES = {"input_tokens": "input_length", "output_tokens": "output_length",
            "created_time": "timestamp", "delay_ms": "delay"}


@dataclass(frozen=True, slots=True)
class Header:
    """The v2 header line."""

    version: int
    block_size: int | None
    hash_id_scope: str | None
    source: dict | None


def _num(d: dict, key: str, where: str, *, required: bool = False, integer: bool = False):
    v = d.get(key)
    if v is None:
        if required:
            raise TraceError(f"{where}: missing field `{key}`")
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TraceError(f"{where}: field `{key}` must be a number, got {orjson.dumps(v).decode()}")
    if isinstance(v, float) and not math.isfinite(v):
        raise TraceError(f"{where}: field `{key}` must be finite")
    if integer:
        if isinstance(v, float):
            if v != int(v):
                raise TraceError(f"{where}: field `{key}` must be an integer, got {v}")
            v = int(v)
        if v < 0:
            raise TraceError(f"{where}: field `{key}` must be >= 0, got {v}")
    return v


def row_from_json(d: dict, where: str, intern: dict | None = None, share: dict | None = None,
                  no_bools: bool = False) -> Row:
    """Parse one plain / agentic v1 / v2 row, accepting Dynamo's upstream aliases. `intern`
    (one dict per file set) makes equal hash ids share one int object: agentic rows repeat the
    same ~1,500 ids turn after turn, and separate ints cost 32 bytes each (4x the rows' memory).
    `share` (one dict per file set, instead of `intern`) gets the same sharing cheaper: it keeps
    each session's last `hash_ids` (as a tuple and an array('Q')), and a row's tuple reuses the
    int objects of the common prefix (a memcmp) instead of looking every id up. `no_bools`: the
    caller knows the row holds no JSON true/false, so ids that fit an array('Q') are exact
    non-negative ints without a per-id type check."""
    for alias, canon in _ALIASES.items():
        if alias in d and canon not in d:
            d[canon] = d[alias]
    hash_ids = d.get("hash_ids", [])
    # C-level checks (a generator costs ~5x more per id): exact ints (bools have their own type), >= 0
    arr = None
    if share is not None and no_bools and isinstance(hash_ids, list) and hash_ids:
        # array('Q') takes only ints (bools are ints too: hence `no_bools`) in [0, 2**64)
        try:
            arr = array("Q", hash_ids)
        except (TypeError, OverflowError):
            arr = None
    if share is not None and isinstance(hash_ids, list) and hash_ids and (
            arr is not None or set(map(type, hash_ids)) <= {int}):
        sid = d.get("session_id")
        skey = None if sid is None else str(sid)
        if arr is None:
            try:
                arr = array("Q", hash_ids)  # exact u64 values, or an error for a negative/huge id
            except OverflowError:
                arr = None  # checked (and kept) below, unshared
        prev = share.get(skey)
        if arr is not None and prev is not None:
            # memcmp over contiguous values, not a compare per int object (scattered in memory)
            parr, ptup = prev
            k = common_prefix_flat(parr, arr)
            t = ptup if k == len(arr) == len(ptup) else ptup[:k] + tuple(hash_ids[k:])
        elif arr is not None:
            t = tuple(hash_ids)
        else:
            if min(hash_ids) < 0:
                raise TraceError(f"{where}: field `hash_ids` must be a list of non-negative integers")
            t = tuple(hash_ids)
        if arr is not None:
            share[skey] = (arr, t)
        hash_ids = t
    elif not isinstance(hash_ids, list) or (hash_ids and (not set(map(type, hash_ids)) <= {int} or min(hash_ids) < 0)):
        raise TraceError(f"{where}: field `hash_ids` must be a list of non-negative integers")
    elif intern is not None:
        hash_ids = map(intern.setdefault, hash_ids, hash_ids)
    tool_events = []
    for t in d.get("tool_events") or ():
        if not isinstance(t, dict):
            raise TraceError(f"{where}: field `tool_events` entries must be objects")
        tool_events.append(ToolSpan(
            tool_call_id=str(t.get("tool_call_id", "")), tool_class=str(t.get("tool_class", "")),
            started_at_unix_ms=int(_num(t, "started_at_unix_ms", where) or 0),
            ended_at_unix_ms=int(_num(t, "ended_at_unix_ms", where) or 0),
            duration_ms=float(_num(t, "duration_ms", where) or 0.0), status=str(t.get("status", "")),
            output_bytes=t.get("output_bytes"), output_tokens=t.get("output_tokens"),
            error_type=t.get("error_type")))
    deps = []
    for x in d.get("dependencies") or ():
        if not isinstance(x, dict) or not isinstance(x.get("request_id"), str):
            raise TraceError(f"{where}: field `dependencies` entries need a string `request_id`")
        trigger = x.get("trigger", "completion")
        if trigger not in ("dispatch", "completion"):
            raise TraceError(f"{where}: field `dependencies.trigger` must be dispatch or completion, got {trigger!r}")
        delay = _num(x, "delay_ms", where) or 0.0
        if delay < 0:
            raise TraceError(f"{where}: field `dependencies.delay_ms` must be >= 0, got {delay}")
        deps.append(Dependency(x["request_id"], trigger, float(delay), str(x.get("relation", "sequence"))))
    wait_for = d.get("wait_for") or ()
    branches = d.get("branches") or ()
    for key, seq in (("wait_for", wait_for), ("branches", branches)):
        if not isinstance(seq, (list, tuple)) or not all(isinstance(s, str) for s in seq):
            raise TraceError(f"{where}: field `{key}` must be a list of request ids")
    for key in ("delay", "tool_wait_ms", "timestamp", "not_before_ms"):
        v = _num(d, key, where)
        if v is not None and v < 0:
            raise TraceError(f"{where}: field `{key}` must be >= 0, got {v}")
    rid = d.get("request_id")
    sid = d.get("session_id")
    return Row(
        input_length=int(_num(d, "input_length", where, integer=True) or 0),
        output_length=int(_num(d, "output_length", where, required=True, integer=True)),
        hash_ids=hash_ids if type(hash_ids) is tuple else tuple(hash_ids),
        request_id=None if rid is None else str(rid),
        session_id=None if sid is None else str(sid),
        output_token_ids=tuple(d["output_token_ids"]) if d.get("output_token_ids") is not None else None,
        timestamp=_num(d, "timestamp", where),
        delay=_num(d, "delay", where),
        request_kind=d.get("request_kind"),
        wait_for=tuple(wait_for), branches=tuple(branches),
        prefix_reset=d.get("prefix_reset"),
        tool_wait_ms=_num(d, "tool_wait_ms", where),
        tool_events=tuple(tool_events),
        priority=d.get("priority"), strict_priority=d.get("strict_priority"),
        policy_class=d.get("policy_class"), routing_constraints=d.get("routing_constraints"),
        play_id=d.get("play_id"), model=d.get("model"),
        not_before_ms=_num(d, "not_before_ms", where),
        dependencies=tuple(deps),
    )


@dataclass(slots=True)
class MooncakeFile:
    header: Header | None
    rows: list[Row]
    sources: list[str]  # "path:line" per row, for error messages downstream


def read_rows(paths: list[str]) -> MooncakeFile:
    """Read plain, agentic v1 or v2 Mooncake JSONL (`.jsonl` or `.jsonl.gz`) from one or more files."""
    header: Header | None = None
    rows: list[Row] = []
    sources: list[str] = []
    share: dict[str | None, tuple[int, ...]] = {}
    for path in paths:
        for lineno, raw in iter_lines(path):
            where = f"{path}:{lineno}"
            try:
                d = orjson.loads(raw)
            except orjson.JSONDecodeError as e:
                raise TraceError(f"{where}: invalid JSON: {e}") from None
            if not isinstance(d, dict):
                raise TraceError(f"{where}: a Mooncake row must be a JSON object")
            if d.get("schema") == V2_SCHEMA:
                if header is not None or rows:
                    raise TraceError(f"{where}: the agentic Mooncake v2 header must be the first line")
                header = Header(int(d.get("version", 0)), d.get("block_size"), d.get("hash_id_scope"), d.get("source"))
                if header.version != 2:
                    raise TraceError(f"{where}: field `version`: unsupported agentic Mooncake version {header.version}")
                continue
            if header is not None and "timestamp" in d:
                raise TraceError(f"{where}: field `timestamp` is not allowed in agentic Mooncake v2 rows")
            rows.append(row_from_json(d, where, share=share, no_bools=b"true" not in raw and b"false" not in raw))
            sources.append(where)
    return MooncakeFile(header, rows, sources)


def iter_row_dicts(rows: list[Row], fmt: str) -> Iterator[dict]:
    conv = {"plain": Row.to_plain, "v1": Row.to_agentic_v1, "v2": Row.to_agentic_v2}[fmt]
    for r in rows:
        yield conv(r)
