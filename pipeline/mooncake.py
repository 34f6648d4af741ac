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

from .cycles import blocked
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


# v2 enums in Dynamo's declaration order, which is also their sort order (derived `Ord`)
TRIGGERS = ("dispatch", "completion")
RELATIONS = ("sequence", "spawn", "join", "replay_barrier")
_TRIGGER_RANK = {t: i for i, t in enumerate(TRIGGERS)}
_RELATION_RANK = {r: i for i, r in enumerate(RELATIONS)}


@dataclass(frozen=True, slots=True)
class Dependency:
    """A typed v2 dependency: this row may start `delay_ms` after `request_id` hits `trigger`."""

    request_id: str
    trigger: str  # "dispatch" | "completion"
    delay_ms: float
    relation: str  # "sequence" | "spawn" | "join" | "replay_barrier"

    def sort_key(self) -> tuple:
        """The exporter's order: request_id, then trigger and relation in enum order, then delay."""
        return (self.request_id, _TRIGGER_RANK[self.trigger], _RELATION_RANK[self.relation], self.delay_ms)

    def to_json(self) -> dict:
        return {"request_id": self.request_id, "trigger": self.trigger, "delay_ms": float(self.delay_ms),
                "relation": self.relation}


def exporter_order(deps: list[Dependency]) -> list[Dependency]:
    """A row's dependencies as Dynamo 1.6's exporter writes them: the first of each (request_id,
    trigger, relation) kept, then sorted by `Dependency.sort_key`."""
    first: dict[tuple, Dependency] = {}
    for d in deps:
        first.setdefault((d.request_id, d.trigger, d.relation), d)
    return sorted(first.values(), key=Dependency.sort_key)


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
    source_play_ordinal: int | None = None  # AISimulate's optional play order
    recorded_api_time_ms: float | None = None  # AISimulate's optional recorded service time

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
        """Key order of the typed v2 row (§4.7; AISimulate's two optional fields where its struct
        declares them). Dependencies are written in the order they are held: the lowering sorts
        them as the exporter does, and a v2 file read back keeps its own order."""
        d: dict = {"request_id": self.request_id, "play_id": self.play_id}
        if self.source_play_ordinal is not None:
            d["source_play_ordinal"] = self.source_play_ordinal
        d["session_id"] = self.session_id
        d["model"] = self.model
        d["input_length"] = self.input_length
        d["output_length"] = self.output_length
        if self.output_token_ids is not None:
            d["output_token_ids"] = list(self.output_token_ids)
        d["hash_ids"] = list(self.hash_ids)
        d["not_before_ms"] = float(self.not_before_ms or 0.0)
        if self.recorded_api_time_ms is not None:
            d["recorded_api_time_ms"] = float(self.recorded_api_time_ms)
        self._priority_fields(d, v2=True)
        if self.dependencies:
            d["dependencies"] = [x.to_json() for x in self.dependencies]
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


def header_from_json(d: dict, where: str) -> Header:
    """The v2 header, checked as AISimulate's loader checks it (every field required; `version`
    2, a positive `block_size`, `hash_id_scope` "local", `source` {format, digest})."""
    version = d.get("version")
    if type(version) is not int:
        raise TraceError(f"{where}: field `version`: missing or not an integer in the agentic Mooncake v2 header")
    if version != 2:
        raise TraceError(f"{where}: field `version`: unsupported agentic Mooncake version {version}; expected 2")
    bs = d.get("block_size")
    if type(bs) is not int or bs < 0:
        raise TraceError(f"{where}: field `block_size`: missing or not a non-negative integer in the agentic "
                         f"Mooncake v2 header")
    if bs == 0:
        raise TraceError(f"{where}: field `block_size`: agentic Mooncake block_size must be greater than 0")
    if d.get("hash_id_scope") != "local":
        raise TraceError(f"{where}: field `hash_id_scope`: must be \"local\", got "
                         f"{orjson.dumps(d.get('hash_id_scope')).decode()}")
    src = d.get("source")
    if not isinstance(src, dict) or not isinstance(src.get("format"), str) or not isinstance(src.get("digest"), str):
        raise TraceError(f"{where}: field `source`: the agentic Mooncake v2 header needs a source "
                         f"{{\"format\": string, \"digest\": string}}")
    return Header(version, bs, "local", dict(src))


_V2_REQUIRED = ("request_id", "play_id", "session_id", "model", "input_length", "output_length", "hash_ids",
                "not_before_ms")
_DEP_REQUIRED = ("request_id", "trigger", "delay_ms", "relation")


def check_v2_row(d: dict, row: Row, where: str, block_size: int) -> None:
    """One v2 row as AISimulate's loader takes it (`replay/loadgen/trace.rs`): the fields its
    struct requires, ids and model as strings, one hash id per `block_size` tokens (a partial
    last block counts), and a `completion` trigger on every relation but `spawn`."""
    for key in _V2_REQUIRED:
        if d.get(key) is None:
            raise TraceError(f"{where}: missing field `{key}` (required in agentic Mooncake v2 rows)")
    for key in ("request_id", "play_id", "session_id", "model"):
        if not isinstance(d[key], str):
            raise TraceError(f"{where}: field `{key}` must be a string, got {orjson.dumps(d[key]).decode()}")
    for x in d.get("dependencies") or ():
        for key in _DEP_REQUIRED:
            if x.get(key) is None:
                raise TraceError(f"{where}: field `dependencies`: missing field `{key}` in a dependency of "
                                 f"{row.request_id}")
    n = len(row.hash_ids)
    if n == 0:
        raise TraceError(f"{where}: field `hash_ids`: empty hash_ids")
    want = -(-row.input_length // block_size)
    if n != want:
        raise TraceError(f"{where}: field `hash_ids`: input_length {row.input_length} at block_size {block_size} "
                         f"requires exactly {want} hash_ids, got {n}")
    for dep in row.dependencies:
        if dep.trigger != "completion" and dep.relation != "spawn":
            raise TraceError(f"{where}: field `dependencies`: invalid {dep.relation} dependency on {dep.request_id} "
                             f"with {dep.trigger} trigger (only spawn may use dispatch)")


def check_v2_graph(rows: list[Row], sources: list) -> None:
    """The whole v2 graph as AISimulate validates it: unique ids; every dependency names another
    request of the same play; each play has a root (a request with no dependencies); no cycle;
    `source_play_ordinal` on every play or none, numbering the plays 0, 1, ... ."""
    index: dict[str, int] = {}
    for i, r in enumerate(rows):
        first = index.setdefault(r.request_id, i)
        if first != i:
            raise TraceError(f"{sources[i]}: field `request_id`: duplicate request_id {r.request_id} "
                             f"(first at {sources[first]})")
    plays: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        plays.setdefault(r.play_id, []).append(i)
        for dep in r.dependencies:
            j = index.get(dep.request_id)
            if dep.request_id == r.request_id:
                raise TraceError(f"{sources[i]}: field `dependencies`: request {r.request_id} cannot depend on itself")
            if j is None:
                raise TraceError(f"{sources[i]}: field `dependencies`: request {r.request_id} references unknown "
                                 f"request_id {dep.request_id}")
            if rows[j].play_id != r.play_id:
                raise TraceError(f"{sources[i]}: field `dependencies`: request {r.request_id} in play {r.play_id} "
                                 f"depends on request {dep.request_id} in play {rows[j].play_id}")
    for play, members in plays.items():
        if all(rows[i].dependencies for i in members):
            raise TraceError(f"{sources[members[0]]}: field `dependencies`: play {play} has no root (every request "
                             f"in it waits for another)")
    _check_v2_acyclic(rows, sources, index)
    _check_play_ordinals(rows, sources, plays)


def _check_v2_acyclic(rows: list[Row], sources: list, index: dict[str, int]) -> None:
    indeg = [len({d.request_id for d in r.dependencies}) for r in rows]
    out: list[list[int]] = [[] for _ in rows]
    for i, r in enumerate(rows):
        for dep in dict.fromkeys(d.request_id for d in r.dependencies):
            out[index[dep]].append(i)
    stuck = blocked(indeg, out)
    if stuck:
        ids = sorted(rows[i].request_id for i in stuck)
        raise TraceError(f"{sources[stuck[0]]}: field `dependencies`: cycle detected among {len(ids)} agentic "
                         f"requests; blocked request IDs: {', '.join(ids[:8])}{' ...' if len(ids) > 8 else ''}")


def _check_play_ordinals(rows: list[Row], sources: list, plays: dict[str, list[int]]) -> None:
    if all(r.source_play_ordinal is None for r in rows):
        return
    ordinal: dict[str, int] = {}
    for play, members in plays.items():
        for i in members:
            o = rows[i].source_play_ordinal
            if o is None:
                raise TraceError(f"{sources[i]}: field `source_play_ordinal`: source_play_ordinal must be set for "
                                 f"every play when it is used")
            if ordinal.setdefault(play, o) != o:
                raise TraceError(f"{sources[i]}: field `source_play_ordinal`: play {play} has source_play_ordinal "
                                 f"{ordinal[play]} and {o}")
    for want, (o, play) in enumerate(sorted((o, p) for p, o in ordinal.items())):
        if o != want:
            raise TraceError(f"{sources[plays[play][0]]}: field `source_play_ordinal`: source_play_ordinal values "
                             f"must be unique and contiguous from 0; expected {want}, found {o}")


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
    if not d.keys().isdisjoint(_ALIASES):
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
        if trigger not in TRIGGERS:
            raise TraceError(f"{where}: field `dependencies.trigger` must be dispatch or completion, got {trigger!r}")
        relation = x.get("relation", "sequence")
        if relation not in RELATIONS:
            raise TraceError(f"{where}: field `dependencies.relation` must be one of {', '.join(RELATIONS)}, "
                             f"got {orjson.dumps(relation).decode()}")
        delay = _num(x, "delay_ms", where) or 0.0
        if delay < 0:
            raise TraceError(f"{where}: field `dependencies.delay_ms` must be >= 0, got {delay}")
        deps.append(Dependency(x["request_id"], trigger, float(delay), relation))
    wait_for = d.get("wait_for") or ()
    branches = d.get("branches") or ()
    for key, seq in (("wait_for", wait_for), ("branches", branches)):
        if not isinstance(seq, (list, tuple)) or (seq and not all(isinstance(s, str) for s in seq)):
            raise TraceError(f"{where}: field `{key}` must be a list of request ids")
    for key in ("delay", "tool_wait_ms", "timestamp", "not_before_ms", "recorded_api_time_ms"):
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
        source_play_ordinal=_num(d, "source_play_ordinal", where, integer=True),
        recorded_api_time_ms=_num(d, "recorded_api_time_ms", where),
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
                header = header_from_json(d, where)
                continue
            if header is not None and "timestamp" in d:
                raise TraceError(f"{where}: field `timestamp` is not allowed in agentic Mooncake v2 rows")
            row = row_from_json(d, where, share=share, no_bools=b"true" not in raw and b"false" not in raw)
            if header is not None:
                check_v2_row(d, row, where, header.block_size)
            rows.append(row)
            sources.append(where)
    if header is not None:
        check_v2_graph(rows, sources)
    return MooncakeFile(header, rows, sources)


def iter_row_dicts(rows: list[Row], fmt: str) -> Iterator[dict]:
    conv = {"plain": Row.to_plain, "v1": Row.to_agentic_v1, "v2": Row.to_agentic_v2}[fmt]
    for r in rows:
        yield conv(r)
