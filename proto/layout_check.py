"""trace-pipe's own layout checked in a Perfetto trace (the semantic checks of `trace-pipe check`,
perfetto.md §4.4 item 9), on top of the generic ones of `TraceChecker`: requests at the top of
their track carrying `request_id`, stages inside their request in order (prefill wait <= prefill
<= first token <= decode), tool / worker slices at the top, in-flight counters closing at 0, flows
and requests per timeline equal to what the writer declared (trace attributes), a second timeline
with the same track names and ranks as the first. Categories and track names come from the
layout's own vocabulary (proto/spans.py, proto/layout.py).
"""

from __future__ import annotations

from collections import defaultdict

from .layout import IN_FLIGHT, STAGES, WORKERS
from .perfetto_check import CheckReport, Track, TraceChecker
from .spans import CAT_MARKER, CAT_REQUEST, CAT_STAGE, CAT_TOOL, CAT_WORKER, STAGE_ORDER


class LayoutChecker(TraceChecker):
    ID_ARG = "request_id"

    def __init__(self, rep: CheckReport) -> None:
        super().__init__(rep)
        self.request_ids: list[tuple[int, object]] = []  # (track, request_id) of each request slice

    def on_request(self, track: int, cat: str, rid) -> None:
        if cat == CAT_REQUEST:
            self.request_ids.append((track, rid))

    def on_counter_track(self, t: Track, values: list) -> None:
        if t.name == IN_FLIGHT and values and values[-1] != 0:
            self.rep.problem(f"counter {t.uuid} ({t.name!r}) does not close at 0 (last value {values[-1]})")

    def on_slice_tree(self, t: Track, top: list) -> None:
        """Requests at the top of their track carrying `request_id`, their stages and marks inside
        them in order (or on a separate stages track), tool and worker slices at the top."""
        rep = self.rep
        separate = t.name.endswith(STAGES)
        where = f"track {t.uuid} ({t.name!r})"

        def walk(nodes: list, parent) -> None:
            for n in nodes:
                start, name, cat, has_rid, kids, end = n
                if cat == CAT_REQUEST:
                    if parent is not None:
                        rep.problem(f"{where}: request slice {name!r} at ts {start} is nested inside {parent[1]!r} "
                                    f"(overlapping slices on one track, or an END written after a BEGIN at the same ts)")
                    if not has_rid:
                        rep.problem(f"{where}: request slice {name!r} at ts {start} has no request_id arg")
                    _stage_order(kids, n)
                elif cat in (CAT_STAGE, CAT_MARKER):
                    if parent is None and not separate:
                        rep.problem(f"{where}: {name!r} at ts {start} is not inside its request slice")
                    elif parent is not None and parent[2] != CAT_REQUEST:
                        rep.problem(f"{where}: {name!r} at ts {start} is nested inside {parent[1]!r}, not a request")
                elif cat in (CAT_TOOL, CAT_WORKER) and parent is not None:
                    rep.problem(f"{where}: {name!r} at ts {start} is nested inside {parent[1]!r} "
                                f"(overlapping slices on one track)")
                walk(kids, n)

        def _stage_order(kids: list, req: list) -> None:
            last_rank, last_end = -1, req[0]
            for k in kids:
                r = STAGE_ORDER.get(k[1])
                if r is None:
                    continue
                end = k[5] if k[5] is not None else k[0]
                if r < last_rank or k[0] < last_end:
                    rep.problem(f"{where}: stages of request at ts {req[0]} out of order or overlapping "
                                f"({k[1]!r} at ts {k[0]})")
                    return
                last_rank, last_end = r, end
                if req[5] is not None and end > req[5]:
                    rep.problem(f"{where}: stage {k[1]!r} of request at ts {req[0]} ends after the request")
                    return

        walk(top, None)

    def on_finish(self) -> None:
        """What the writer declared (trace attributes) against what is in the file: flows and
        request slices per timeline, and a second timeline with the first's track names and ranks."""
        rep = self.rep
        roots = {t.name: t for t in self.tracks.values() if not t.parent}
        declared = []
        for key, v in sorted(self.attrs.items()):
            if key.startswith("trace_pipe.") and key.endswith(".flows"):
                name = key[len("trace_pipe."):-len(".flows")]
                declared.append(name)
                if name not in roots:
                    rep.problem(f"the writer declared timeline {name!r} but no root track has that name")
                got = self.flows_per_root.get(name, 0)
                if got != v:
                    rep.problem(f"timeline {name!r}: {got} flows drawn, the writer declared {v}")
                edges = self.attrs.get(f"trace_pipe.{name}.edges")
                if isinstance(edges, int) and edges != v:
                    why = self.attrs.get(f"trace_pipe.{name}.edges_not_drawn") or "reason not recorded"
                    rep.notes.append(f"timeline {name!r}: {edges - v} of {edges} dependency edges have no flow ({why})")
        ids: dict[str, list] = defaultdict(list)
        names_of = {t.uuid: t.name for t in roots.values()}
        for track, rid in self.request_ids:
            ids[names_of.get(self.root_of.get(track), "")].append(rid)
        for name in declared:
            n = self.attrs.get(f"trace_pipe.{name}.requests")
            if isinstance(n, int) and len(ids.get(name, ())) != n:
                rep.problem(f"timeline {name!r}: {len(ids.get(name, ()))} request slices with a request_id, "
                            f"the writer declared {n}")
        rep.roots = {name: frozenset(ids.get(name, ())) for name in declared if name in roots}
        if len(declared) >= 2:
            shapes = {name: self._shape(roots[name].uuid) for name in declared if name in roots}
            names = list(shapes)
            first = names[0] if names else None
            for other in names[1:]:
                # a replay that stopped early declares the requests it never released: then its
                # tree and its request ids are a part of the first timeline's, not all of them
                missing = self.attrs.get(f"trace_pipe.{other}.requests_not_drawn", 0)
                a, b = rep.roots[first], rep.roots[other]
                if b - a:
                    rep.problem(f"timeline {other!r} has request ids that {first!r} lacks "
                                f"(e.g. {sorted(map(str, b - a))[:3]})")
                elif len(a - b) != (missing if isinstance(missing, int) else 0):
                    rep.problem(f"timeline {other!r} lacks {len(a - b)} of {first!r}'s request ids "
                                f"(e.g. {sorted(map(str, a - b))[:3]}), the writer declared {missing or 0} not drawn")
                ok = shapes[other] <= shapes[first] if missing else shapes[other] == shapes[first]
                if not ok:
                    diff = sorted(shapes[other] ^ shapes[first])[:3]
                    rep.problem(f"timeline {other!r} does not have the same track names and ranks as "
                                f"{first!r} (e.g. {diff})")

    def _shape(self, root: int) -> frozenset:
        """(path of names, rank) of every group / chain track under a root, lanes and workers aside."""
        out = set()
        for t in self.tracks.values():
            if self.root_of.get(t.uuid) != root or t.uuid == root:
                continue
            path = []
            a = t
            while a.uuid != root:
                path.append(a.name)
                a = self.tracks[a.parent]
            path.reverse()
            if path[0] == WORKERS:
                continue
            out.add((tuple(path), t.rank))
        return frozenset(out)

