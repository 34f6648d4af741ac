"""What Dynamo 1.6 reports about agentic plays, rebuilt from a replay's request records: each
play's outcome, the trajectory (play) end-to-end latencies, and the lifecycle transcript whose
length and BLAKE3 digest the summary carries (AISimulate's agentic `WorkloadDriver`,
`crates/core/src/replay/loadgen/driver.rs` in ai-dynamo/aisimulate).

The transcript has one event per request dispatch, causal terminal (with its status) and
quiescence, one `skipped` per request a failed play never dispatches, and one `play_quiescent`
per settled play, numbered in the order the driver records them. At one instant the driver
first takes the terminals of requests dispatched earlier (by graph ordinal; a play's first
failure skips its undispatched requests right after its terminal), then their quiescence (a play
settles with its last one), then the dispatches (by ordinal), then the terminals and quiescence
of requests dispatched at that instant (a rejection). The digest is BLAKE3 over a domain tag and
the transcript as JSON lines in serde_json's text. Checked equal to 1.6.1's on plays with spawn,
join, several roots, a rejection and WEKA trace 0277.
"""

from __future__ import annotations

from dataclasses import dataclass

import blake3

from .canonical_json import dumps
from .result import AgenticGraph, RequestRecord

_SCHEMA = "aisimulate.agentic.lifecycle.v1"
_DOMAIN = b"aisimulate-agentic-lifecycle-v1\0"
_TERMINAL = ("completed", "rejected")


@dataclass(frozen=True, slots=True)
class PlayOutcome:
    play_id: str
    status: str  # completed | failed | incomplete
    causal_terminal_ms: float | None  # its first failure, else its last terminal
    settled_at_ms: float | None  # when its last dispatched request went quiescent
    failure_request_id: str | None
    failure_status: str | None
    trajectory_ms: float | None  # completed plays: last terminal - first root dispatch

    def to_json(self) -> dict:
        d: dict = {"play_id": self.play_id, "status": self.status}
        for k in ("causal_terminal_ms", "settled_at_ms", "failure_request_id", "failure_status"):
            v = getattr(self, k)
            if v is not None:
                d[k] = v
        return d


@dataclass(frozen=True, slots=True)
class Lifecycle:
    outcomes: tuple[PlayOutcome, ...]  # in the graph's play order
    event_count: int
    digest: str


def lifecycle(graph: AgenticGraph, recs: tuple[RequestRecord, ...]) -> Lifecycle:
    nodes = graph.nodes
    play_of = {p: k for k, p in enumerate(graph.plays)}
    members: list[list[int]] = [[] for _ in graph.plays]
    for i in sorted(range(len(recs)), key=lambda i: nodes[i].ordinal):
        members[play_of[nodes[i].play_id]].append(i)

    def terminal(r: RequestRecord) -> bool:
        return r.status in _TERMINAL and r.end_ms is not None

    by_time: dict[float, tuple[list[int], list[int], list[int]]] = {}  # early terminals, dispatches, late
    for i, r in enumerate(recs):
        if r.ready_ms is None:
            continue
        by_time.setdefault(r.ready_ms, ([], [], []))[1].append(i)
        if terminal(r):
            by_time.setdefault(r.end_ms, ([], [], []))[2 if r.end_ms == r.ready_ms else 0].append(i)

    n = len(graph.plays)
    in_flight = [0] * n
    pending = [0] * n
    completed = [0] * n
    failed = [False] * n
    finished = [False] * n
    settled: list[float | None] = [None] * n
    failure: list[tuple[float, int, int] | None] = [None] * n  # (time, ordinal, row)
    last_end: list[float | None] = [None] * n
    first_root: list[float | None] = [None] * n
    dispatched = [False] * len(recs)
    skipped = [False] * len(recs)
    events: list[tuple] = []  # (time, play, request id or None, event, status or None)

    def finish_terminals(t: float, rows: list[int]) -> None:
        rows.sort(key=lambda i: nodes[i].ordinal)
        for i in rows:
            p = play_of[nodes[i].play_id]
            r = recs[i]
            events.append((t, p, r.request_id, "causal_terminal", r.status))
            pending[p] -= 1
            last_end[p] = t if last_end[p] is None else max(last_end[p], t)
            if r.status == "completed":
                completed[p] += 1
            else:
                if failure[p] is None or (t, nodes[i].ordinal) < failure[p][:2]:
                    failure[p] = (t, nodes[i].ordinal, i)
                if not failed[p]:
                    failed[p] = True
                    for j in members[p]:
                        if not dispatched[j] and not skipped[j]:
                            skipped[j] = True
                            events.append((t, p, recs[j].request_id, "skipped", None))
            if (failed[p] or completed[p] == len(members[p])) and pending[p] == 0:
                finished[p] = True
        for i in rows:
            p = play_of[nodes[i].play_id]
            events.append((t, p, recs[i].request_id, "quiescent", None))
            in_flight[p] -= 1
            if settled[p] is None and finished[p] and in_flight[p] == 0:
                settled[p] = t
                events.append((t, p, None, "play_quiescent", None))

    for t in sorted(by_time):
        early, disp, late = by_time[t]
        finish_terminals(t, early)
        disp.sort(key=lambda i: nodes[i].ordinal)
        for i in disp:
            if skipped[i]:
                continue
            p = play_of[nodes[i].play_id]
            dispatched[i] = True
            in_flight[p] += 1
            pending[p] += 1
            events.append((t, p, recs[i].request_id, "dispatch", None))
        finish_terminals(t, late)

    roots = {i for rs in graph.roots for i in rs}
    for i in roots:
        r = recs[i]
        if dispatched[i]:
            p = play_of[nodes[i].play_id]
            first_root[p] = r.ready_ms if first_root[p] is None else min(first_root[p], r.ready_ms)

    outcomes = []
    for p, pid in enumerate(graph.plays):
        f = failure[p]
        status = "incomplete" if settled[p] is None else "failed" if failed[p] else "completed"
        done = not failed[p] and completed[p] == len(members[p])
        traj = (last_end[p] - first_root[p]) if done and first_root[p] is not None else None
        outcomes.append(PlayOutcome(pid, status, f[0] if f else last_end[p], settled[p],
                                    recs[f[2]].request_id if f else None, recs[f[2]].status if f else None, traj))

    h = blake3.blake3(_DOMAIN)
    for k, (t, p, rid, ev, st) in enumerate(events):
        e: dict = {"schema": _SCHEMA, "ordinal": k, "at_ms": float(t), "play_id": graph.plays[p]}
        if rid is not None:
            e["request_id"] = rid
        e["event"] = ev
        if st is not None:
            e["status"] = st
        h.update(dumps(e).encode() + b"\n")
    return Lifecycle(tuple(outcomes), len(events), h.hexdigest())
