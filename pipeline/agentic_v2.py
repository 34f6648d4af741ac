"""Agentic Mooncake v2 (dynamo-formats.md §4.7), as Dynamo 1.6's exporter writes it
(`request_trace_to_mooncake --agentic`, lowering in lib/data-gen request_trace/agentic.rs): G3c's
graph (spawn by start, Claude causality) with typed edges, a background agent never joined, play =
the root of the parent chain, not_before_ms on every row, the partial last block (and any block
without a recorded hash) a private id, no tool fields; a header line with the rows' digest.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from typing import Iterator

import blake3
import orjson

from . import hash_ids
from .errors import TraceError
from .ids_text import FRAGMENT, ids_text
from .model import Trace
from .mooncake import Dependency, Row, exporter_order
from .mooncake_edges import from_mooncake
from .request_graph import (Derived, Edge, Graph, build, chain_of, chain_word, check_block_size,
                            require_output)

_PRIVATE = b"dynamo-request-trace-private-block\0"


def private_block_id(request_id: str, block_index: int, input_length: int) -> int:
    """The per-request id a v2 row gives a block it cannot share: the trailing partial block, or a
    full block with no recorded hash (BLAKE3 of a labelled tuple, its first 8 bytes little-endian)."""
    digest = blake3.blake3(_PRIVATE + f"{request_id}\0{block_index}\0{input_length}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def v2_ids(compact: list[int], request_id: str, input_length: int, bs: int) -> list[int]:
    """A row's v2 hash ids from its compact ids: one per full block (private where the hashes run
    out), then a private id for a partial last block."""
    full = input_length // bs
    ids = compact[:full]
    for j in range(len(ids), full):
        ids.append(private_block_id(request_id, j, input_length))
    if input_length % bs:
        ids.append(private_block_id(request_id, full, input_length))
    return ids


def _play_of(chain: str, parent: dict[str, str], chains: dict, word: str, src: object = None,
             known: dict[str, str] | None = None) -> str:
    """The root of `chain`'s parent chain. `known`: chain -> root for chains already walked, where
    a walk stops, and which it extends (so sessions nested thousands deep cost one walk, not one
    each); a walk that reaches a known chain has a valid path, so errors name the same path."""
    seen = [chain]
    on_path = {chain}
    c = chain
    # `src`: a record of `chain`, whose parent link starts the walk
    where = f"{src}: field `agent_context.parent_{word}_id`: " if src is not None else "error: "
    while c in parent:
        if known is not None and c in known:
            c = known[c]
            break
        p = parent[c]
        if p not in chains:
            raise TraceError(f"{where}agent {word} {c} references unknown parent {word} {p}")
        if p in on_path:
            raise TraceError(f"{where}agent {word} parent cycle includes {p}: {' -> '.join(seen + [p])}")
        seen.append(p)
        on_path.add(p)
        c = p
    if known is not None:
        for x in seen:
            known[x] = c
    return c


@dataclass(slots=True)
class _V2Graph:
    g: Graph
    deps: list[list[Dependency]]  # per row in output order: deduplicated, in the exporter's order
    plays: dict[str, str]  # chain -> play id


def _build_v2(trace: Trace) -> _V2Graph:
    """The exporter's edges, typed: `sequence` and `join` wait for the dependency's completion;
    `spawn` waits for the parent call's dispatch when the child started before that call ended,
    else for its completion; each delay is the recorded gap from that trigger (never negative).
    Edges are deduplicated on (request_id, trigger, relation) and sorted."""
    g = build(trace, "g3c", background_joins=False)
    order, index = g.order, g.index
    deps: list[list[Dependency]] = []
    for r, wait_for, relations in zip(order, g.wait_for, g.relations):
        mine = []
        for d, rel in zip(wait_for, relations):
            q = order[index[d]]
            if rel == "spawn" and r.start_ms < q.end_ms:
                mine.append(Dependency(d, "dispatch", float(max(0, r.start_ms - q.start_ms)), rel))
            else:
                mine.append(Dependency(d, "completion", float(max(0, r.start_ms - q.end_ms)), rel))
        deps.append(exporter_order(mine) if len(mine) > 1 else mine)
    word = chain_word(order)
    plays: dict[str, str] = {}
    known: dict[str, str] = {}
    for i in (idx[0] for idx in g.chains.values()):
        c = chain_of(order[i])
        plays[c] = _play_of(c, g.parent, g.chains, word, order[i].source, known)
    return _V2Graph(g, deps, plays)


def _v2_edges(v: _V2Graph) -> list[Edge]:
    return [Edge(d.request_id, r.request_id, d.relation) for r, ds in zip(v.g.order, v.deps) for d in ds]


def derive_v2_lazy(trace: Trace, *, edges: bool = True,
                   text_ids: bool = FRAGMENT is not None) -> tuple[Derived, Iterator[tuple]]:
    """The v2 lowering for streaming (`write_v2`): every error it can raise is raised here,
    before any row exists (the exporter's order: the graph, then per row a missing output
    length, then a missing model); the rows come as a lazy iterator of their fields (see
    `_v2_fields`). The Derived's `header` is set by `write_v2`."""
    if trace.mooncake_rows:
        raise TraceError("error: Mooncake input: use derive_v2")
    return _derive_v2(trace, edges, text_ids)


def _derive_v2(trace: Trace, edges: bool, text_ids: bool) -> tuple[Derived, Iterator[tuple]]:
    v = _build_v2(trace)
    bs = check_block_size(v.g.order)
    for r in v.g.order:
        require_output(r)
        if r.model is None:
            raise TraceError(f"{r.source}: field `request.model`: request {r.request_id} is missing model")
    notes = dict(v.g.notes)
    spans = sum(1 for t in trace.tools if t.terminal)
    if spans:  # said, not dropped silently: v1 rows would carry them as tool_events
        notes["terminal tool spans not written (v2 rows have no tool fields; tool time stays in the delays)"] = spans
    derived = Derived([], _v2_edges(v) if edges else [], bs, v.g.order, notes=notes)
    return derived, _v2_fields(v, bs, text_ids)


def _v2_fields(v: _V2Graph, bs: int | None, text_ids: bool) -> Iterator[tuple]:
    """Per row, in output order: (request, play, chain, hash ids, not_before_ms, dependencies).
    The hash ids are a list, or with `text_ids` their JSON array: the chain's previous row's text
    up to the ids the two share, then the rest (`ids_text`), as the v1 writer does. A row's
    compact ids beyond its full blocks (its partial block's) are not in its text, so they are
    kept aside (`hidden`) for the next row of the chain, which may share them."""
    order = v.g.order
    t0 = order[0].start_ms
    plan = hash_ids.plan((chain_of(r), r.hashes) for r in order)
    lists = None if text_ids else plan.lists()
    last: dict = {}  # chain -> (text, its id count, compact ids shown in it, compact ids hidden)
    for i, r in enumerate(order):
        chain = chain_of(r)
        n_in = r.input_length or 0
        if lists is not None:
            ids = v2_ids(lists[i], r.request_id, n_in, bs) if bs else lists[i]
        else:
            ids, last[chain] = _v2_ids_text(last.get(chain), plan.keep[i], plan.tail(i), r.request_id, n_in, bs)
        yield (r, v.plays[chain], chain, ids, float(r.start_ms - t0), v.deps[i])


def _v2_ids_text(prev: tuple | None, k: int, tail, request_id: str, input_length: int,
                 bs: int | None) -> tuple[bytes, tuple]:
    """A row's v2 hash ids as JSON text, and what the chain's next row needs of it (see
    `_v2_fields`): the row's compact ids are `prev`'s first `k` then `tail`; `prev` is (text, its
    id count, compact ids shown in it, compact ids hidden after them)."""
    n = k + len(tail)
    full = input_length // bs if bs else n
    shown = min(n, full)
    if prev is not None and (k <= shown or shown >= prev[2]):
        # the row's shown compact ids: a prefix of prev's text, then prev's hidden ids (a partial
        # block both rows share), then its own; what it hides: prev's hidden ids past its own
        # full blocks, then its own
        _, _, pshown, phidden = prev
        keep = min(k, pshown, shown)
        upto = min(k, shown)
        # (a list: the new ids are a few per row, and small numpy arrays cost ~1 µs per operation)
        own = tail.tolist()
        new = phidden[:upto - pshown] if keep < upto else []  # here keep == pshown
        if shown > k:
            new += own[:shown - k]
        hidden = (phidden[shown - pshown:k - pshown] if shown < k else []) + own[max(0, shown - k):]
        new += [private_block_id(request_id, j, input_length) for j in range(shown, full)]
        if bs and input_length % bs:
            new.append(private_block_id(request_id, full, input_length))
        text = ids_text(prev[:2], keep, new)
    else:  # a chain's first row, or (rare) a shorter row sharing ids past its full blocks that prev's text shows
        before = [] if prev is None or not k else (orjson.loads(prev[0])[:prev[2]] + prev[3])[:k]
        compact = before + tail.tolist()
        ids = v2_ids(compact, request_id, input_length, bs) if bs else compact
        hidden = compact[shown:]
        text = orjson.dumps(ids)
    count = (full + (1 if input_length % bs else 0)) if bs else n
    return text, (text, count, shown, hidden)


def v2_row_json(fields: tuple) -> dict:
    """One row of `_v2_fields` as its JSON object: the keys and values `Row.to_agentic_v2` gives
    the Row `derive_v2` builds (a test checks the two against each other)."""
    r, play, chain, ids, not_before, deps = fields
    d = {"request_id": r.request_id, "play_id": play, "session_id": chain, "model": r.model,
         "input_length": r.input_length or 0, "output_length": r.output_tokens,
         "hash_ids": FRAGMENT(ids) if type(ids) is bytes else ids, "not_before_ms": not_before}
    if deps:
        d["dependencies"] = [x.to_json() for x in deps]
    return d


def v2_header(block_size: int | None, digest: str) -> dict:
    """The v2 header line as the exporter writes it."""
    return {"schema": "dynamo.agentic_mooncake", "version": 2, "block_size": block_size, "hash_id_scope": "local",
            "source": {"format": "dynamo_request_trace", "digest": digest}}


def write_v2(derived: Derived, fields: Iterator[tuple], write) -> None:
    """The header, then each row of `derive_v2_lazy`. The header's digest is BLAKE3 of the rows
    as one compact JSON array (`[row,row,...]`, the exporter's `serde_json::to_vec(&rows)`),
    so the rows go to a spool file first and are copied after the header: memory stays with the
    requests, as for v1."""
    dumps = orjson.dumps
    h = blake3.blake3(b"[")
    first = True
    with tempfile.TemporaryFile() as spool:
        batch: list[bytes] = []
        for f in fields:
            batch.append(dumps(v2_row_json(f)))
            if len(batch) >= 256:
                first = _spool(batch, first, h, spool)
        if batch:
            _spool(batch, first, h, spool)
        h.update(b"]")
        derived.header = v2_header(derived.block_size, h.hexdigest())
        write(dumps(derived.header, option=orjson.OPT_APPEND_NEWLINE))
        spool.seek(0)
        while chunk := spool.read(1 << 20):
            write(chunk)


def _spool(batch: list[bytes], first: bool, h, spool) -> bool:
    if not first:
        h.update(b",")
    h.update(b",".join(batch))
    spool.write(b"\n".join(batch))
    spool.write(b"\n")
    batch.clear()
    return False


def derive_v2(trace: Trace) -> Derived:
    """Agentic Mooncake v2 (§4.7) as Rows with the header: `derive_v2_lazy` + `write_v2`'s
    bytes without the streaming."""
    if trace.mooncake_rows:
        return from_mooncake(trace)
    derived, fields = _derive_v2(trace, True, False)
    rows = []
    for r, play, chain, ids, not_before, deps in fields:
        rows.append(Row(request_id=r.request_id, play_id=play, session_id=chain, model=r.model,
                        input_length=r.input_length or 0, output_length=r.output_tokens, hash_ids=tuple(ids),
                        not_before_ms=not_before, dependencies=tuple(deps)))
    body = b"[" + b",".join(orjson.dumps(row.to_agentic_v2()) for row in rows) + b"]"
    derived.rows = rows
    derived.header = v2_header(derived.block_size, blake3.blake3(body).hexdigest())
    return derived

