"""Mooncake rows (plain, agentic v1, agentic v2): the record, its exact serialization, and a reader.

Serialization follows Dynamo's serde structs field for field (dynamo-formats.md §4.3, §4.4, §4.7):
compact JSON, declared key order, absent values omitted, floats for `timestamp`/`delay`/
`tool_wait_ms`/`not_before_ms`/`delay_ms`, integers elsewhere.
"""

from __future__ import annotations

import json
from array import array
from dataclasses import dataclass
from typing import Iterator

import orjson

from . import schemas
from .cycles import blocked
from .limits import BLOCK_SIZE
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

@dataclass(frozen=True, slots=True)
class Header:
    """The v2 header line."""

    version: int
    block_size: int | None
    hash_id_scope: str | None
    source: dict | None

    def to_json(self) -> dict:
        """The header as the exporter writes it (only the fields checked: nothing else is copied)."""
        return {"schema": V2_SCHEMA, "version": self.version, "block_size": self.block_size,
                "hash_id_scope": self.hash_id_scope, "source": self.source}


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
    BLOCK_SIZE.check(bs, f"{where}: field `block_size`")
    if d.get("hash_id_scope") != "local":
        raise TraceError(f"{where}: field `hash_id_scope`: must be \"local\", got "
                         f"{_json_text(d.get('hash_id_scope'))}")
    src = d.get("source")
    if not isinstance(src, dict) or not isinstance(src.get("format"), str) or not isinstance(src.get("digest"), str):
        raise TraceError(f"{where}: field `source`: the agentic Mooncake v2 header needs a source "
                         f"{{\"format\": string, \"digest\": string}}")
    return Header(version, bs, "local", dict(src))


def _json_text(v: object) -> str:
    """A value as JSON for an error message; an integer past 64 bits (which orjson refuses) too."""
    try:
        return orjson.dumps(v).decode()
    except TypeError:
        return json.dumps(v)


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
            raise TraceError(f"{where}: field `{key}` must be a string, got {_json_text(d[key])}")
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


def row_from_json(d: dict, where: str, intern: dict | None = None, share: dict | None = None,
                  no_bools: bool = False) -> Row:
    """Parse one plain / agentic v1 / v2 row (typed by `schemas.MooncakeRow`: types, ranges and
    Dynamo's upstream aliases), or raise a one-line TraceError. `intern` (one dict per file set)
    makes equal hash ids share one int object: agentic rows repeat the same ~1,500 ids turn after
    turn, and separate ints cost 32 bytes each (4x the rows' memory). `share` (one dict per file
    set, instead of `intern`) gets the same sharing cheaper: it keeps each session's last
    `hash_ids` (as a tuple and an array('Q')), and a row's tuple reuses the int objects of the
    common prefix (a memcmp) instead of looking every id up. (`no_bools` is accepted for
    callers of the untyped reader; the schema refuses booleans anyway.)"""
    m = schemas.mooncake_row(d, where)
    hash_ids = m.hash_ids
    try:
        arr = array("Q", hash_ids)  # exact u64 values (the schema took any non-negative int)
    except OverflowError:
        raise TraceError(f"{where}: field `hash_ids` must be a list of non-negative integers") from None
    if share is not None and hash_ids:
        sid = m.session_id
        skey = None if sid is None else str(sid)
        prev = share.get(skey)
        if prev is not None:
            # memcmp over contiguous values, not a compare per int object (scattered in memory)
            parr, ptup = prev
            k = common_prefix_flat(parr, arr)
            t = ptup if k == len(arr) == len(ptup) else ptup[:k] + tuple(hash_ids[k:])
        else:
            t = tuple(hash_ids)
        share[skey] = (arr, t)
        hash_ids = t
    elif intern is not None:
        hash_ids = tuple(map(intern.setdefault, hash_ids, hash_ids))
    else:
        hash_ids = tuple(hash_ids)
    output_length = m.output_length if m.output_length is not None else m.output_tokens
    if output_length is None:
        raise TraceError(f"{where}: missing field `output_length`")
    input_length = m.input_length if m.input_length is not None else m.input_tokens
    rid, sid = m.request_id, m.session_id
    return Row(
        input_length=input_length or 0,
        output_length=output_length,
        hash_ids=hash_ids,
        request_id=None if rid is None else str(rid),
        session_id=None if sid is None else str(sid),
        output_token_ids=tuple(m.output_token_ids) if m.output_token_ids is not None else None,
        timestamp=m.timestamp if m.timestamp is not None else m.created_time,
        delay=m.delay if m.delay is not None else m.delay_ms,
        request_kind=m.request_kind,
        wait_for=tuple(m.wait_for), branches=tuple(m.branches),
        prefix_reset=m.prefix_reset,
        tool_wait_ms=m.tool_wait_ms,
        tool_events=tuple(ToolSpan(t.tool_call_id, t.tool_class, int(t.started_at_unix_ms or 0),
                                   int(t.ended_at_unix_ms or 0), t.duration_ms or 0.0, t.status, t.output_bytes,
                                   t.output_tokens, t.error_type) for t in m.tool_events),
        priority=m.priority, strict_priority=m.strict_priority,
        policy_class=m.policy_class, routing_constraints=m.routing_constraints,
        play_id=m.play_id, model=m.model,
        not_before_ms=m.not_before_ms,
        dependencies=tuple(Dependency(x.request_id, x.trigger, x.delay_ms, x.relation) for x in m.dependencies),
        source_play_ordinal=m.source_play_ordinal,
        recorded_api_time_ms=m.recorded_api_time_ms,
    )


@dataclass(slots=True)
class MooncakeFile:
    header: Header | None
    rows: list[Row]
    sources: list[str]  # "path:line" per row, for error messages downstream


def read_line(d: dict, where: str, header: Header | None, first: bool, share: dict | None = None,
              no_bools: bool = False) -> Header | Row:
    """One parsed line of a Mooncake file, by the rules of the file it is in: the v2 header (only
    as the `first` line), or a row, held to the v2 row rules under a header. The one place for
    them: `read_rows` (replay) and `readers.read_trace` (convert) both read lines here."""
    if d.get("schema") == V2_SCHEMA:
        if not first:
            raise TraceError(f"{where}: the agentic Mooncake v2 header must be the first line")
        return header_from_json(d, where)
    if header is not None and "timestamp" in d:
        raise TraceError(f"{where}: field `timestamp` is not allowed in agentic Mooncake v2 rows")
    row = row_from_json(d, where, share=share, no_bools=no_bools)
    if header is not None:
        check_v2_row(d, row, where, header.block_size)
    elif row.play_id is not None and not isinstance(row.model, str):
        # A v2-shaped row without its header is still replayed as a v2 graph, whose
        # source_models are strings (1.6.1 needs the header and the string both).
        raise TraceError(f"{where}: field `model` must be a string, got {_json_text(d.get('model'))}")
    return row


def read_rows(paths: list[str]) -> MooncakeFile:
    """Read plain, agentic v1 or v2 Mooncake JSONL (`.jsonl` or `.jsonl.gz`) from one or more files."""
    from .readers import loads_line  # (readers imports this module)

    header: Header | None = None
    rows: list[Row] = []
    sources: list[str] = []
    share: dict[str | None, tuple[int, ...]] = {}
    for path in paths:
        for lineno, raw in iter_lines(path):
            where = f"{path}:{lineno}"
            d = loads_line(raw, where)
            if not isinstance(d, dict):
                raise TraceError(f"{where}: a Mooncake row must be a JSON object")
            got = read_line(d, where, header, header is None and not rows, share)
            if type(got) is Header:
                header = got
                continue
            rows.append(got)
            sources.append(where)
    if header is not None:
        check_v2_graph(rows, sources)
    return MooncakeFile(header, rows, sources)


def iter_row_dicts(rows: list[Row], fmt: str) -> Iterator[dict]:
    conv = {"plain": Row.to_plain, "v1": Row.to_agentic_v1, "v2": Row.to_agentic_v2}[fmt]
    for r in rows:
        yield conv(r)
