"""The agentic graph as Dynamo 1.5+ replays it (AISimulate's `ValidatedAgenticGraph`, read from
`crates/core/src/replay/loadgen/trace.rs` and `types.rs` in ai-dynamo/aisimulate): nodes in
request_id order (a node's index is its uuid's number less one), plays in play_id order (or
`source_play_ordinal` order when every play has one), and the graph digest 1.6.1 reports.

The digest is BLAKE3 of serde_json's compact text of `{"block_size": B, "nodes": [...]}`, each
node with AISimulate's fields in its order and its dependencies sorted, after start
normalisation (the earliest `not_before_ms` becomes 0) and the arrival speedup (which divides
`not_before_ms` and every delay). Checked equal to 1.6.1's on v2 traces with spawn, join and
multi-root plays, shifted starts and speedup 2.

Headerless v1 rows are lifted as AISimulate lifts them (`load_agentic_mooncake`): `wait_for`
becomes completion edges (`join` when there are several), the edge delay is `delay +
tool_wait_ms`, roots keep `timestamp` as `not_before_ms` and dependents get 0, the model is
"unknown", a missing session is "agentic-session", and plays are the dependency components,
named "legacy-play:" + their earliest root.
"""

from __future__ import annotations

import gzip

import blake3
import orjson

from trace_pipe.pipeline.components import play_roots
from trace_pipe.pipeline.mooncake import Row

from .canonical_json import dumps
from .result import AgenticGraph, GraphNode

_TRIGGER = {"dispatch": 0, "completion": 1}
_RELATION = {"sequence": 0, "spawn": 1, "join": 2, "replay_barrier": 3}


def build(rows: list[Row], sources: list[str], *, block_size: int, speedup: float = 1.0,
          source: tuple[str, str] | None = None) -> AgenticGraph:
    """The graph of agentic rows: v2 rows as they are, headerless v1 rows lifted. `source` is
    the trace's (format, digest) provenance; None reads it from the v2 header of the first
    source's file (Row objects do not carry the header), or names a lifted v1 file as
    AISimulate does (`legacy_agentic_mooncake`, "path:rows")."""
    v2 = any(r.play_id is not None for r in rows)
    nodes = [_v2_node(r) for r in rows] if v2 else _lift(rows)
    if source is None:
        path = sources[0].rsplit(":", 1)[0] if sources else ""
        source = _header_source(path) if v2 else ("legacy_agentic_mooncake", f"{path}:{len(rows)}")
    t0 = min(n["not_before_ms"] for n in nodes)
    for n in nodes:
        n["not_before_ms"] = (n["not_before_ms"] - t0) / speedup
        for d in n["dependencies"]:
            d["delay_ms"] = d["delay_ms"] / speedup
        n["dependencies"].sort(key=lambda d: (d["request_id"], _TRIGGER[d["trigger"]], _RELATION[d["relation"]],
                                              d["delay_ms"]))
    order = sorted(range(len(nodes)), key=lambda i: nodes[i]["request_id"])
    rank = {nodes[i]["request_id"]: k for k, i in enumerate(order)}
    # the text of {"block_size": B, "nodes": [...]} fed to the hash node by node (the whole
    # text of a large trace is as big as the trace)
    hasher = blake3.blake3(b'{"block_size":' + dumps(block_size).encode() + b',"nodes":[')
    for k, i in enumerate(order):
        hasher.update(b"," + dumps(nodes[i]).encode() if k else dumps(nodes[i]).encode())
    hasher.update(b"]}")
    digest = hasher.hexdigest()

    members: dict[str, list[int]] = {}
    for i in order:
        members.setdefault(nodes[i]["play_id"], []).append(i)
    ordinals = {p: nodes[m[0]].get("source_play_ordinal") for p, m in members.items()}
    if all(o is not None for o in ordinals.values()):
        plays = sorted(members, key=lambda p: ordinals[p])
    else:
        plays = sorted(members)
    roots = {p: [i for i in members[p] if not nodes[i]["dependencies"]] for p in plays}
    out = []
    for n in nodes:
        rs = roots[n["play_id"]]
        spawns = [d["request_id"] for d in n["dependencies"] if d["relation"] == "spawn"]
        out.append(GraphNode(
            ordinal=rank[n["request_id"]], play_id=n["play_id"], session_id=n["session_id"],
            root_id=nodes[rs[0]]["request_id"] if len(rs) == 1 else None,
            parent_id=min(spawns, key=rank.__getitem__) if spawns else None,
            dependencies=tuple((d["request_id"], d["trigger"]) for d in n["dependencies"])))
    return AgenticGraph(source=source, graph_digest=digest, block_size=block_size,
                        source_models=tuple(sorted({n["model"] for n in nodes})), plays=tuple(plays),
                        roots=tuple(tuple(roots[p]) for p in plays), nodes=tuple(out))


def _node(r: Row, play_id: str, session_id: str, model: str, not_before: float, deps: list[dict],
          ordinal: int | None, recorded: float | None) -> dict:
    """AISimulate's `AgenticNode` fields in its serialization order."""
    n: dict = {"request_id": r.request_id, "play_id": play_id}
    if ordinal is not None:
        n["source_play_ordinal"] = ordinal
    n["session_id"] = session_id
    n["model"] = model
    n["input_length"] = r.input_length
    n["max_output_tokens"] = r.output_length
    ids = r.output_token_ids
    n["output_token_ids"] = None if ids is None else list(ids)
    # the key output replay is matched by, set only when output tokens are given
    n["replay_key"] = None if ids is None else r.request_id.strip()
    n["hash_ids"] = r.hash_ids  # a tuple, written as a list
    n["not_before_ms"] = float(not_before)
    if recorded is not None:
        n["recorded_api_time_ms"] = float(recorded)
    n["priority"] = r.priority or 0
    n["strict_priority"] = r.strict_priority or 0
    n["policy_class"] = r.policy_class
    n["dependencies"] = deps
    return n


def _v2_node(r: Row) -> dict:
    deps = [{"request_id": d.request_id, "trigger": d.trigger, "delay_ms": float(d.delay_ms), "relation": d.relation}
            for d in r.dependencies]
    return _node(r, r.play_id, r.session_id, r.model, r.not_before_ms or 0.0, deps, r.source_play_ordinal,
                 r.recorded_api_time_ms)


def _lift(rows: list[Row]) -> list[dict]:
    index = {r.request_id: i for i, r in enumerate(rows)}
    stamp = [0.0 if r.wait_for else float(r.timestamp or 0.0) for r in rows]
    deps = [[index[w] for w in r.wait_for if w in index] for r in rows]
    label = play_roots(deps, [not r.wait_for for r in rows], [(stamp[i], r.request_id) for i, r in enumerate(rows)])
    out = []
    for i, r in enumerate(rows):
        relation = "join" if len(r.wait_for) > 1 else "sequence"
        delay = float(r.dependency_delay_ms)
        deps = [{"request_id": w, "trigger": "completion", "delay_ms": delay, "relation": relation} for w in r.wait_for]
        play = "legacy-play:" + rows[label[i]].request_id
        out.append(_node(r, play, r.session_id or "agentic-session", "unknown", stamp[i], deps, None, None))
    return out


def _header_source(path: str) -> tuple[str, str] | None:
    """(format, digest) from a v2 file's header line; None when it has none."""
    try:
        with open(path, "rb") as f:
            gz = f.read(2) == b"\x1f\x8b"
        with (gzip.open(path, "rb") if gz else open(path, "rb")) as f:
            line = b""
            while not line.strip():
                line = f.readline()
                if not line:
                    return None
        src = orjson.loads(line).get("source")
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(src, dict) or "format" not in src or "digest" not in src:
        return None
    return str(src["format"]), str(src["digest"])

