"""What Dynamo 1.6 reports about agentic plays, rebuilt from a replay's request records: each
play's outcome, the trajectory (play) end-to-end latencies, and the lifecycle transcript whose
length and BLAKE3 digest the summary carries (AISimulate's agentic `WorkloadDriver`,
`crates/core/src/replay/loadgen/driver.rs` in ai-dynamo/aisimulate).

The transcript has one event per request dispatch, causal terminal (with its status) and
quiescence, one `skipped` per request a failed play never dispatches, and one `play_quiescent`
per settled play, numbered in the order the driver records them. The driver sees two kinds of
step, in the simulation's own order:
- a dispatch, when the request is released (at its ready time; the driver pops ready requests
  by (ready time, graph ordinal), and one released by another's dispatch at the same instant
  comes right after it, whatever its ordinal);
- a feedback batch: the terminals the runtime delivers at one instant before it next releases
  or starts a pass (every worker's pass ending then, in one batch). The driver sorts a batch by
  graph ordinal and records all its causal terminals (a play's first failure skips its
  undispatched requests right after its terminal), then all its quiescence (a play settles with
  its last one).
Measured against 1.6.1: the order of dispatches at one instant is their release order, not
their ordinals; terminals of passes ending at the same instant on different workers form one
batch, not one per pass; within a batch all terminals come before any quiescence.

The replay records that order (`SimulatedRequest.release_seq` / `terminal_seq`, one counter that
also ticks at every pass start). Records without it (built from another tool's times, or by
`--timing recorded`) are ordered by rule: at one instant, the terminals of requests dispatched
earlier, then the dispatches by ordinal, then the terminals of requests dispatched then.
The digest is BLAKE3 over a domain tag and the transcript as JSON lines in serde_json's text.
"""

from __future__ import annotations

from dataclasses import dataclass

import blake3

from trace_pipe.pipeline.timeline import SimulatedRequest

from .canonical_json import dumps
from .result import AgenticGraph

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


# A step is (time, row) for a dispatch or (time, rows) for a feedback batch.
Step = tuple[float, "int | list[int]"]


def _terminal(r: SimulatedRequest) -> bool:
    return r.status in _TERMINAL and r.end_ms is not None


def _recorded_steps(recs: tuple[SimulatedRequest, ...]) -> list[Step] | None:
    """The replay's own order, or None when the records do not carry it."""
    marks: list[tuple[int, bool, int]] = []  # (seq, is terminal, row)
    for i, r in enumerate(recs):
        if r.ready_ms is not None:
            if r.release_seq is None:
                return None
            marks.append((r.release_seq, False, i))
        if _terminal(r):
            if r.terminal_seq is None:
                return None
            marks.append((r.terminal_seq, True, i))
    marks.sort()
    steps: list[Step] = []
    prev = None  # seq of the last terminal, while a batch is open
    for seq, term, i in marks:
        if not term:
            steps.append((recs[i].ready_ms, i))
            prev = None
            continue
        t = recs[i].end_ms
        # a batch: terminal deliveries with nothing (release, pass start) between them, at one instant
        if prev is not None and seq == prev + 1 and steps[-1][0] == t:
            steps[-1][1].append(i)
        else:
            steps.append((t, [i]))
        prev = seq
    return steps


def _rule_steps(graph: AgenticGraph, recs: tuple[SimulatedRequest, ...]) -> list[Step]:
    """Without the replay's order: per instant, earlier dispatches' terminals, the dispatches by
    ordinal, then the terminals of requests dispatched at that instant (a rejection)."""
    nodes = graph.nodes
    by_time: dict[float, tuple[list[int], list[int], list[int]]] = {}
    for i, r in enumerate(recs):
        if r.ready_ms is None:
            continue
        by_time.setdefault(r.ready_ms, ([], [], []))[1].append(i)
        if _terminal(r):
            by_time.setdefault(r.end_ms, ([], [], []))[2 if r.end_ms == r.ready_ms else 0].append(i)
    steps: list[Step] = []
    for t in sorted(by_time):
        early, disp, late = by_time[t]
        if early:
            steps.append((t, early))
        steps.extend((t, i) for i in sorted(disp, key=lambda i: nodes[i].ordinal))
        if late:
            steps.append((t, late))
    return steps


class _Driver:
    """The WorkloadDriver's play bookkeeping, recording the transcript as it goes."""

    def __init__(self, graph: AgenticGraph, recs: tuple[SimulatedRequest, ...]) -> None:
        self.graph, self.recs = graph, recs
        self.play_of = {p: k for k, p in enumerate(graph.plays)}
        n = len(graph.plays)
        self.members: list[list[int]] = [[] for _ in range(n)]
        for i in sorted(range(len(recs)), key=lambda i: graph.nodes[i].ordinal):
            self.members[self.play_of[graph.nodes[i].play_id]].append(i)
        self.pending = [0] * n  # dispatched, not yet terminal
        self.in_flight = [0] * n  # dispatched, not yet quiescent
        self.completed = [0] * n
        self.failed = [False] * n
        self.finished = [False] * n  # the client is done with it (all terminal, or failed)
        self.settled: list[float | None] = [None] * n
        self.failure: list[tuple[float, int, int] | None] = [None] * n  # (time, ordinal, row)
        self.last_end: list[float | None] = [None] * n
        self.dispatched = [False] * len(recs)
        self.skipped = [False] * len(recs)
        self.events: list[tuple] = []  # (time, play, request id or None, event, status or None)

    def _play(self, i: int) -> int:
        return self.play_of[self.graph.nodes[i].play_id]

    def dispatch(self, t: float, i: int) -> None:
        if self.skipped[i]:
            return
        p = self._play(i)
        self.dispatched[i] = True
        self.in_flight[p] += 1
        self.pending[p] += 1
        self.events.append((t, p, self.recs[i].request_id, "dispatch", None))

    def feedback(self, t: float, rows: list[int]) -> None:
        nodes = self.graph.nodes
        rows = sorted(rows, key=lambda i: nodes[i].ordinal)
        for i in rows:
            self._causal_terminal(t, i)
        for i in rows:
            p = self._play(i)
            self.events.append((t, p, self.recs[i].request_id, "quiescent", None))
            self.in_flight[p] -= 1
            if self.settled[p] is None and self.finished[p] and self.in_flight[p] == 0:
                self.settled[p] = t
                self.events.append((t, p, None, "play_quiescent", None))

    def _causal_terminal(self, t: float, i: int) -> None:
        p = self._play(i)
        r = self.recs[i]
        self.events.append((t, p, r.request_id, "causal_terminal", r.status))
        self.pending[p] -= 1
        last = self.last_end[p]
        self.last_end[p] = t if last is None else max(last, t)
        if r.status == "completed":
            self.completed[p] += 1
        else:
            ordinal = self.graph.nodes[i].ordinal
            f = self.failure[p]
            if f is None or (t, ordinal) < f[:2]:
                self.failure[p] = (t, ordinal, i)
            if not self.failed[p]:
                self.failed[p] = True
                for j in self.members[p]:
                    if not self.dispatched[j] and not self.skipped[j]:
                        self.skipped[j] = True
                        self.events.append((t, p, self.recs[j].request_id, "skipped", None))
        if (self.failed[p] or self.completed[p] == len(self.members[p])) and self.pending[p] == 0:
            self.finished[p] = True

    def outcomes(self) -> tuple[PlayOutcome, ...]:
        first_root: list[float | None] = [None] * len(self.graph.plays)
        for i in (i for rs in self.graph.roots for i in rs):
            if self.dispatched[i]:
                p = self._play(i)
                t = self.recs[i].ready_ms
                first_root[p] = t if first_root[p] is None else min(first_root[p], t)
        out = []
        for p, pid in enumerate(self.graph.plays):
            f = self.failure[p]
            status = "incomplete" if self.settled[p] is None else "failed" if self.failed[p] else "completed"
            done = not self.failed[p] and self.completed[p] == len(self.members[p])
            traj = (self.last_end[p] - first_root[p]) if done and first_root[p] is not None else None
            frec = self.recs[f[2]] if f else None
            out.append(PlayOutcome(pid, status, f[0] if f else self.last_end[p], self.settled[p],
                                   frec.request_id if frec else None, frec.status if frec else None, traj))
        return tuple(out)

    def digest(self) -> str:
        h = blake3.blake3(_DOMAIN)
        plays = self.graph.plays
        for k, (t, p, rid, ev, st) in enumerate(self.events):
            e: dict = {"schema": _SCHEMA, "ordinal": k, "at_ms": float(t), "play_id": plays[p]}
            if rid is not None:
                e["request_id"] = rid
            e["event"] = ev
            if st is not None:
                e["status"] = st
            h.update(dumps(e).encode() + b"\n")
        return h.hexdigest()


def lifecycle(graph: AgenticGraph, recs: tuple[SimulatedRequest, ...]) -> Lifecycle:
    steps = _recorded_steps(recs)
    if steps is None:
        steps = _rule_steps(graph, recs)
    d = _Driver(graph, recs)
    for t, x in steps:
        if isinstance(x, list):
            d.feedback(t, x)
        else:
            d.dispatch(t, x)
    return Lifecycle(d.outcomes(), len(d.events), d.digest())
