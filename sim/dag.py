"""The request DAG (a NetworkX DiGraph) and the release rule that turns it into ready times.

Edges come from one of three sources (dynamo-replay.md §2.1-§2.6):
- agentic v1 `wait_for`: completion edges; a dependent is ready at max(dependency completion) +
  `delay + tool_wait_ms`; its own timestamp is ignored; roots start at their normalised timestamp;
- agentic v2 typed `dependencies`: per-edge trigger (`dispatch` | `completion`) and `delay_ms`;
- plain Mooncake sessions: turn n+1 waits for turn n's completion plus its `delay` (else the
  timestamp gap, else 0).
Times are normalised to the earliest timestamp and divided by the arrival speedup. Failed or
rejected requests release their dependents like completed ones.

What differs between Dynamo versions comes from `DynamoRules` (sim/versions.py): 1.5.1 and 1.6.1
read `not_before_ms` as a floor for every node (`ready = max(not_before, trigger + delay)`), lift
headerless v1 rows to v2 as AISimulate does (roots `not_before_ms = timestamp`, dependents 0, so
a trace with any `wait_for` row keeps its roots' absolute times), and release agentic requests that
are ready at the same instant in request_id order; 1.4.2 uses file order and ignores the floor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from heapq import heappush

from trace_pipe.pipeline.cycles import blocked
from trace_pipe.pipeline.errors import TraceError
from trace_pipe.pipeline.mooncake import Row

from .versions import VERSIONS, DynamoRules

COMPLETION = 0
DISPATCH = 1


@dataclass(frozen=True, slots=True)
class Release:
    """Why a request became ready when it did: the binding dependency (None for a root)."""

    parent: int | None
    trigger: str | None
    wait_ms: float


class RequestDag:
    """Nodes are row indices; edge attrs `trigger` ("completion" | "dispatch") and `delay_ms`.

    The replay itself walks plain per-node lists; `graph` (the NetworkX DiGraph) is built on first
    use, because importing NetworkX costs ~22 MiB and ~0.25 s, more than a replay's DAG work."""

    def __init__(self, n: int, mode: str) -> None:
        self.n = n
        self._graph = None
        self.edges: list[tuple[int, int, int, float]] = []  # (parent, child, trigger, delay) in order
        self.mode = mode  # "independent" | "sessions" | "agentic" | "v2"
        self.root_time: list[float | None] = [None] * n
        self.order: list[tuple[int, int]] = [(i, 0) for i in range(n)]
        self.children: list[list[tuple[int, int, float]] | None] = [None] * n
        self.waits = [0] * n
        self.ready_after = [-math.inf] * n
        self.binding: list[Release | None] = [None] * n
        # per-node release floor (`not_before_ms` under 1.5+ rules); None: roots only
        self.floor: list[float] | None = None

    @property
    def graph(self):
        """The DAG as a NetworkX DiGraph (built once, on first access)."""
        if self._graph is None:
            import networkx as nx

            g = nx.DiGraph()
            g.add_nodes_from(range(self.n))
            for p, c, trig, delay in self.edges:
                g.add_edge(p, c, trigger="dispatch" if trig == DISPATCH else "completion", delay_ms=delay)
            self._graph = g
        return self._graph

    def has_edges(self) -> bool:
        return bool(self.edges)

    def isolated(self, i: int) -> bool:
        """No edge in or out of `i` (NetworkX degree 0)."""
        return not self.children[i] and not self.waits[i]

    def add_edge(self, parent: int, child: int, trigger: int, delay: float) -> None:
        self.edges.append((parent, child, trigger, delay))
        self._graph = None
        lst = self.children[parent]
        if lst is None:
            lst = self.children[parent] = []
        lst.append((child, trigger, delay))
        self.waits[child] += 1

    def initial(self) -> list[tuple[float, int, int, int]]:
        """Heap entries (ready time, order, turn, index) of the roots."""
        heap: list = []
        for i, t in enumerate(self.root_time):
            if self.waits[i] == 0:
                t = t or 0.0
                self.binding[i] = Release(None, None, 0.0)
                heappush(heap, (t, *self.order[i], i))
        return heap

    def fire(self, idx: int, t: float, trigger: int, heap: list) -> None:
        """`idx` reached `trigger` at `t`: release dependents whose last wait this was."""
        kids = self.children[idx]
        if not kids:
            return
        for child, trig, delay in kids:
            if trig != trigger:
                continue
            ra = t + delay
            if ra > self.ready_after[child]:
                self.ready_after[child] = ra
                self.binding[child] = Release(idx, "dispatch" if trig == DISPATCH else "completion", delay)
            w = self.waits[child] - 1
            self.waits[child] = w
            if w == 0:
                t_ready = self.ready_after[child]
                if self.floor is not None and self.floor[child] > t_ready:
                    t_ready = self.floor[child]
                    self.binding[child] = Release(None, None, 0.0)  # held by its not_before_ms
                heappush(heap, (t_ready, *self.order[child], child))


def _check_delay(v: float | None, where: str, field: str) -> float:
    if v is None:
        return 0.0
    if not math.isfinite(v) or v < 0:
        raise TraceError(f"{where}: field `{field}` must be a finite number >= 0, got {v}")
    return float(v)


def build_dag(rows: list[Row], sources: list[str], fmt: str, speedup: float = 1.0,
              rules: DynamoRules = VERSIONS["1.4"]) -> RequestDag:
    """Validate the rows' dependencies and build the DAG with normalised root times."""
    if not (math.isfinite(speedup) and speedup > 0):
        raise TraceError(f"error: --arrival-speedup-ratio must be a finite number > 0, got {speedup}")
    n = len(rows)
    v2 = any(r.dependencies or r.not_before_ms is not None or r.play_id is not None for r in rows)
    agentic = fmt in ("agentic_mooncake", "dynamo", "weka") or any(r.wait_for for r in rows)
    mode = "v2" if v2 else "agentic" if agentic else "sessions"
    dag = RequestDag(n, mode)

    ids: dict[str, int] = {}
    if mode in ("v2", "agentic"):
        for i, r in enumerate(rows):
            if not r.request_id:
                raise TraceError(f"{sources[i]}: field `request_id`: required for {fmt} rows")
            if r.request_id in ids:
                raise TraceError(f"{sources[i]}: field `request_id`: duplicate request id {r.request_id!r} "
                                 f"(first at {sources[ids[r.request_id]]})")
            ids[r.request_id] = i

    lift = mode == "agentic" and rules.agentic_v1 == "lift"
    if mode == "v2":
        stamp = lambda r: r.not_before_ms  # noqa: E731
    elif lift:
        stamp = lambda r: 0.0 if r.wait_for else r.timestamp  # noqa: E731
    else:
        stamp = lambda r: r.timestamp  # noqa: E731
    t0 = min((stamp(r) for r in rows if stamp(r) is not None), default=0.0)
    for i, r in enumerate(rows):
        ts = stamp(r)
        if ts is not None:
            _check_delay(ts, sources[i], "not_before_ms" if mode == "v2" else "timestamp")
        dag.root_time[i] = 0.0 if ts is None else (ts - t0) / speedup if speedup != 1.0 else ts - t0
    if rules.not_before_floor and (mode == "v2" or lift):
        dag.floor = dag.root_time
    if rules.tie_order == "request_id" and mode in ("v2", "agentic"):
        for rank, i in enumerate(sorted(range(n), key=lambda i: rows[i].request_id)):
            dag.order[i] = (rank, 0)

    if mode == "agentic":
        for i, r in enumerate(rows):
            if not r.wait_for:
                continue
            delay = _check_delay(r.delay, sources[i], "delay") + _check_delay(r.tool_wait_ms, sources[i], "tool_wait_ms")
            if speedup != 1.0:
                delay /= speedup
            seen = set()
            for dep in r.wait_for:
                if dep == r.request_id:
                    raise TraceError(f"{sources[i]}: field `wait_for`: request {dep!r} waits for itself")
                p = ids.get(dep)
                if p is None:
                    raise TraceError(f"{sources[i]}: field `wait_for`: unknown request id {dep!r}")
                if p in seen:
                    continue
                seen.add(p)
                dag.add_edge(p, i, COMPLETION, delay)
    elif mode == "v2":
        for i, r in enumerate(rows):
            seen = set()
            for dep in r.dependencies:
                if dep.request_id == r.request_id:
                    raise TraceError(f"{sources[i]}: field `dependencies`: request {dep.request_id!r} waits for itself")
                p = ids.get(dep.request_id)
                if p is None:
                    raise TraceError(f"{sources[i]}: field `dependencies`: unknown request id {dep.request_id!r}")
                delay = _check_delay(dep.delay_ms, sources[i], "dependencies.delay_ms")
                if speedup != 1.0:
                    delay /= speedup
                key = (p, dep.trigger)
                if key in seen:
                    continue
                seen.add(key)
                dag.add_edge(p, i, DISPATCH if dep.trigger == "dispatch" else COMPLETION, delay)
            if r.play_id is None:
                pass
    else:
        sessions: dict[str, list[int]] = {}
        for i, r in enumerate(rows):
            if r.session_id is not None:
                sessions.setdefault(r.session_id, []).append(i)
            elif r.delay is not None:
                _check_delay(r.delay, sources[i], "delay")
        for sid, members in sessions.items():
            first = members[0]
            if rows[first].delay is not None:
                raise TraceError(f"{sources[first]}: field `delay`: not allowed on the first turn of session {sid!r}")
            for turn, (a, b) in enumerate(zip(members, members[1:]), 1):
                rb = rows[b]
                if rb.delay is not None:
                    delay = _check_delay(rb.delay, sources[b], "delay")
                elif rb.timestamp is not None and rows[a].timestamp is not None:
                    delay = max(0.0, rb.timestamp - rows[a].timestamp)
                else:
                    delay = 0.0
                if speedup != 1.0:
                    delay /= speedup
                dag.add_edge(a, b, COMPLETION, delay)
                dag.order[b] = (first, turn)
            dag.order[first] = (first, 0)

    if dag.edges and _has_cycle(dag):
        import networkx as nx

        # NetworkX names the cycle, so the message stays the one it always gave.
        cyc = nx.find_cycle(dag.graph)
        if cyc:
            names = [rows[u].request_id or str(u) for u, _v in cyc] + [rows[cyc[0][0]].request_id or str(cyc[0][0])]
            raise TraceError(f"{sources[cyc[0][0]]}: field `wait_for`: cycle detected: {' -> '.join(names)}")
    return dag


def _has_cycle(dag: RequestDag) -> bool:
    return bool(blocked(dag.waits[:], [[c for c, _t, _d in kids or ()] for kids in dag.children]))


def plays(dag: RequestDag, rows: list[Row]) -> list[list[int]]:
    """Groups of requests that form one play: the v2 `play_id`, else a weakly connected component
    of the DAG (requests without edges are plays of one), in order of their first row."""
    if dag.mode == "v2" and any(r.play_id for r in rows):
        groups: dict[str, list[int]] = {}
        for i, r in enumerate(rows):
            groups.setdefault(r.play_id or f"#{i}", []).append(i)
        return list(groups.values())
    # weakly connected components by union-find (same sets as NetworkX's)
    parent = list(range(dag.n))

    def find(x: int) -> int:
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    for p, c, _t, _d in dag.edges:
        a, b = find(p), find(c)
        if a != b:
            if a < b:
                parent[b] = a
            else:
                parent[a] = b
    groups: dict[int, list[int]] = {}
    for i in range(dag.n):
        groups.setdefault(find(i), []).append(i)
    return list(groups.values())  # members ascending, groups by first member (the root is the smallest)


def critical_path(dag: RequestDag, members: list[int], terminal: list[float]) -> list[int]:
    """The chain of binding dependencies ending at the play's last-finishing request."""
    best = max(members, key=lambda i: (terminal[i], -i))
    chain = [best]
    seen = {best}
    while True:
        b = dag.binding[chain[-1]]
        if b is None or b.parent is None or b.parent in seen:
            break
        chain.append(b.parent)
        seen.add(b.parent)
    chain.reverse()
    return chain
