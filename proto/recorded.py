"""The recorded run (a normalized `Trace`) as a `Timeline`, with Dynamo's names and rules.

Names, categories and args follow `convert_to_perfetto.py` (dynamo-formats.md §5.4–§5.7) so users
recognise them: `LLM request: {model}` (`dynamo.llm`), stages `prefill wait` / `prefill` /
`decode` (`dynamo.llm.stage`, clamp rule §5.5), `first token` (`dynamo.llm.marker`), tool slices
(`dynamo.agent.tool`) paired as §5.6 and inferred from `finish_reason_metadata.tool_calls` as
§5.7. Times are kept in ns from the recorded ms values (no µs rounding here; Chrome JSON rounds).
"""

from __future__ import annotations

import os

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from operator import attrgetter

from trace_pipe.pipeline.errors import TraceError
from trace_pipe.pipeline.gcpause import gc_paused
from trace_pipe.pipeline.limits import TS_LIMIT_NS
from trace_pipe.pipeline.model import Generation, Request, ToolEvent, Trace

from .spans import (CAT_MARKER, CAT_REQUEST, CAT_STAGE, CAT_TOOL, CAT_TOOL_MARKER, CAT_WORKER, Args, ChainItem,
                    Mark, Placement, RequestSpan, Slice, Timeline)

NS_PER_MS = 1_000_000
REQUEST_ONLY = "request-only"  # Dynamo's chain label for rows without agent_context

# The identity fields Dynamo's converter copies per generation (§5.4), in its order.
_ID_FIELDS = {
    Generation.G1: ("workflow_type_id", "workflow_id", "program_id", "parent_program_id"),
    Generation.G2: ("session_type_id", "session_id", "trajectory_id", "parent_trajectory_id"),
    Generation.G3A: ("trajectory_id", "parent_trajectory_id"),
    Generation.G3B: ("session_id", "parent_session_id"),
    Generation.G3_FREE: (),
}
_REQ_FIELDS = ("request_id", "x_request_id", "model", "input_tokens", "output_tokens", "cached_tokens")
_REQ_METRICS = ("prefill_wait_time_ms", "prefill_time_ms", "ttft_ms", "total_time_ms", "avg_itl_ms",
                "kv_hit_rate", "kv_transfer_estimated_latency_ms", "queue_depth")
_WORKER_FIELDS = ("prefill_worker_id", "prefill_dp_rank", "decode_worker_id", "decode_dp_rank")
_TOOL_FIELDS = (("tool_call_id", "tool_call_id"), ("tool_class", "tool_class"),
                ("started_at_ms", "started_at_unix_ms"), ("ended_at_ms", "ended_at_unix_ms"),
                ("status", "status"), ("duration_ms", "duration_ms"), ("output_tokens", "output_tokens"),
                ("output_bytes", "output_bytes"), ("tool_name_hash", "tool_name_hash"),
                ("error_type", "error_type"))
_SYNTHETIC = (("synthetic_duration", True), ("visual_duration_ms", 1.0))
# one C call per record instead of a getattr per field (this runs for every request / tool row)
_get_req = attrgetter(*_REQ_FIELDS)
_get_metrics = attrgetter(*_REQ_METRICS)
_get_worker = attrgetter(*_WORKER_FIELDS)
_WORKER_KEYS = tuple(f"worker.{k}" for k in _WORKER_FIELDS)
_get_tool = attrgetter(*(attr for attr, _ in _TOOL_FIELDS))
_TOOL_KEYS = tuple(key for _, key in _TOOL_FIELDS)


def ns(ms: float) -> int:
    """Recorded milliseconds (int or float) to integer nanoseconds."""
    return int(ms) * NS_PER_MS if isinstance(ms, int) else int(round(ms * NS_PER_MS))




def _undrawable(src, what: str, s: int, e: int) -> None:
    raise TraceError(f"{src}: the {what}'s times ({s / NS_PER_MS:.17g} to {e / NS_PER_MS:.17g} ms since the unix "
                     f"epoch) are outside what Perfetto can draw (0 to 2^63 ns, year 2262)")


def recorded_timeline(trace: Trace, edges: Iterable = (), *, stages: bool | str = True, markers: bool = True,
                      name: str = "Recorded") -> Timeline:
    """`edges`: objects with `src`, `dst`, `relation` (pipeline.request_graph.Edge) between request ids.
    `stages`: True (nested in the request), "separate" (a sibling `<chain> stages` track) or False;
    the `prefill wait` / `prefill` / `decode` slices (`dynamo.llm.stage`), which Dynamo's
    `--no-stages` leaves out. `markers`: the `first token` instants (`dynamo.llm.marker`), which
    Dynamo's `--include-markers` adds. Neither touches tool rows: an unclosed `tool_start` is a
    `Tool start:` instant (`dynamo.agent.tool.marker`) either way, as in Dynamo's script, nor the
    prefill / decode placements on worker tracks (trace-pipe's own, `trace_pipe.worker`).
    The default keeps the first tokens: `replay --perfetto` draws them under both roots (the
    `Simulated` requests always have theirs); `convert` passes Dynamo's default (off).

    Runs with the cyclic GC paused (`convert` pauses it anyway; `replay` and library callers
    may not): it builds ~10 objects per request and no cycles, and each collection would re-scan
    the whole trace; with the GC running this took 2.7x as long."""
    with gc_paused():
        links = tuple(edges)
        groups = _Groups(trace)
        show_stages = bool(stages)
        requests = [_request_span(r, groups, show_stages, markers) for r in trace.requests]
        for r, rs in zip(trace.requests, requests):
            if rs.slice.start_ns < 0 or rs.slice.end_ns >= TS_LIMIT_NS:
                _undrawable(r.source, "request", rs.slice.start_ns, rs.slice.end_ns)
        tools = _tool_items(trace, groups)
    # file names, sorted: the same files given in another order or from another directory give
    # the same bytes
    names = sorted(os.path.basename(f) for f in trace.files)
    files = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    desc = f"Recorded run: {len(requests)} LLM requests, {len(trace.tools)} tool rows"
    if files:
        desc += f", read from {files}"
    return Timeline(name=name, requests=requests, tools=tools, links=links, description=desc,
                    separate_stages=stages == "separate")


# -- groups ------------------------------------------------------------------------------------

class _Groups:
    """Chain -> group label: the play (WEKA), the whole run (G1 workflow / G2 session) or the
    root of the chain's parent tree (G3: the root session / trajectory)."""

    def __init__(self, trace: Trace) -> None:
        self.plays = trace.plays
        self.parent: dict[str, str] = {}
        self.first: dict[str, Request | ToolEvent] = {}
        for rec in (*trace.requests, *trace.tools):
            c = rec.chain_id
            if c is None:
                continue
            self.first.setdefault(c, rec)
            if rec.parent_chain_id and c not in self.parent and rec.parent_chain_id != c:
                self.parent[c] = rec.parent_chain_id
        self._memo: dict[str | None, str] = {}

    def of(self, chain: str | None) -> str:
        g = self._memo.get(chain)
        if g is None:
            g = self._memo[chain] = self._compute(chain)
        return g

    def of_record(self, rec: Request | ToolEvent) -> str:
        """A record's group: the run it names itself (G1 workflow, G2/G3a session) where that can
        differ from its chain's first record, since one trajectory id can recur across sessions
        (Pi's provider sends a constant `pi-session`; Dynamo's script keys G2 lanes by both)."""
        run = rec.run_id
        if run and rec.chain_id is not None and rec.chain_id not in self.plays:
            return f"{'workflow' if rec.generation is Generation.G1 else 'session'}: {run}"
        return self.of(rec.chain_id)

    def _compute(self, chain: str | None) -> str:
        if chain is None:
            return REQUEST_ONLY
        play = self.plays.get(chain)
        if play is not None:
            return f"play: {play}"
        rec = self.first.get(chain)
        gen = rec.generation if rec is not None else Generation.G3B
        if rec is not None and rec.run_id:
            return f"{'workflow' if gen is Generation.G1 else 'session'}: {rec.run_id}"
        root, seen = chain, {chain}
        while root in self.parent and self.parent[root] not in seen:
            root = self.parent[root]
            seen.add(root)
            nxt = self.first.get(root)
            if nxt is not None and nxt.run_id:  # an ancestor knows the run
                return f"{'workflow' if nxt.generation is Generation.G1 else 'session'}: {nxt.run_id}"
        return f"{gen.chain_word}: {root}"


def _chain_label(chain: str | None) -> str:
    return REQUEST_ONLY if chain is None else chain


def _track_label(rec: Request | ToolEvent) -> str:
    """The chain's track name: a G1 chain id is scoped by its workflow (§4.3), but its track sits
    in the workflow's group already, so it shows the program id as recorded (as Dynamo's script)."""
    if rec.generation is Generation.G1 and rec.chain_id is not None:
        for k, v in rec.identity:
            if k == "program_id" and isinstance(v, str) and v:
                return v
    return _chain_label(rec.chain_id)


def _identity_args(identity: tuple, gen: Generation) -> list:
    fields = _ID_FIELDS.get(gen)
    if fields is None:  # WEKA, Mooncake, simulated: whatever the reader recorded, in order
        return [(k, v) for k, v in identity if v is not None]
    d = dict(identity)
    return [(k, d[k]) for k in fields if d.get(k) is not None]


# -- requests ----------------------------------------------------------------------------------

def request_name(r: Request) -> str:
    return f"LLM request: {r.model or 'unknown-model'}"


def request_duration_ns(r: Request) -> int:
    """§5.4: total_time_ms if >= 0, else event time - start if >= 0, else 0.001 ms."""
    if r.total_time_ms is not None and r.total_time_ms >= 0:
        return ns(r.total_time_ms)
    if r.event_time_ms is not None and r.event_time_ms - r.start_ms >= 0:
        return ns(r.event_time_ms - r.start_ms)
    if r.end_ms >= r.start_ms and r.event_time_ms is None:
        return (r.end_ms - r.start_ms) * NS_PER_MS
    return ns(0.001)


def request_args(r: Request) -> Args:
    a = _identity_args(r.identity, r.generation)
    if r.event_time_ms is not None:
        a.append(("event_time_unix_ms", r.event_time_ms))
    a += [kv for kv in zip(_REQ_FIELDS, _get_req(r)) if kv[1] is not None]
    if r.received_recorded:
        a.append(("request_received_ms", r.start_ms))
    a += [kv for kv in zip(_REQ_METRICS, _get_metrics(r)) if kv[1] is not None]
    if r.worker is not None:
        a += [kv for kv in zip(_WORKER_KEYS, _get_worker(r.worker)) if kv[1] is not None]
    fin = r.finish
    if isinstance(fin, dict):
        a.append(("finish_reason_metadata", fin))
        for k in ("finish_reason", "backend_finish_reason", "stop_reason"):
            if fin.get(k) is not None:
                a.append((f"finish.{k}", fin[k]))
        calls = fin.get("tool_calls")
        if isinstance(calls, list):
            a.append(("finish.tool_call_count", len(calls)))
            names = [c.get("name") for c in calls if isinstance(c, dict) and c.get("name")]
            if names:
                a.append(("finish.tool_call_names", ", ".join(map(str, names))))
        choices = fin.get("choices")
        if isinstance(choices, list):
            a.append(("finish.choice_count", len(choices)))
            reasons = [f"{c.get('choice_index')}:{c.get('finish_reason')}" for c in choices if isinstance(c, dict)]
            a.append(("finish.choice_finish_reasons", ", ".join(reasons)))
    return tuple(a)


@dataclass(slots=True)
class StagePlan:
    """Stage boundaries of one request in ns offsets from its start (§5.5 clamp rule). One per
    request, so not frozen (see spans.py); treat as immutable."""

    wait: tuple[int, int] | None
    prefill: tuple[int, int] | None
    decode: tuple[int, int] | None
    first_token: int | None  # offset of the first token, clamped into the request
    boundary: int | None  # first-token offset used for the clamp (None: ttft unknown)


def plan_stages(dur: int, wait_ms: float | None, prefill_ms: float | None, ttft_ms: float | None) -> StagePlan:
    """Dynamo's clamp: stages never overlap and never leave the request, whatever the rounding."""
    ttft = None if ttft_ms is None else ns(ttft_ms)
    boundary = min(max(0, ttft), dur) if ttft is not None else dur
    cursor = 0
    w = p = d = None
    if wait_ms is not None and (wv := ns(wait_ms)) > 0 and cursor < boundary:
        step = min(wv, boundary - cursor)
        w = (cursor, cursor + step)
        cursor += step
    if prefill_ms is not None and (pv := ns(prefill_ms)) > 0 and cursor < boundary:
        step = min(pv, boundary - cursor)
        p = (cursor, cursor + step)
        cursor += step
    if ttft is not None and dur > boundary:
        d = (boundary, dur)
    return StagePlan(w, p, d, boundary if ttft is not None else None, boundary if ttft is not None else None)


def _worker_label(wid: int, rank: int | None) -> tuple[str, tuple]:
    if rank is None:
        return f"worker {wid}", (wid, -1)
    return f"worker {wid} dp {rank}", (wid, rank)


def _request_span(r: Request, groups: _Groups, show_stages: bool, markers: bool) -> RequestSpan:
    t0 = r.start_ms * NS_PER_MS
    dur = request_duration_ns(r)
    name = request_name(r)
    req_slice = Slice(name, CAT_REQUEST, t0, t0 + dur, request_args(r))
    plan = plan_stages(dur, r.prefill_wait_time_ms, r.prefill_time_ms, r.ttft_ms)
    base = (("request_id", r.request_id), ("x_request_id", r.x_request_id), ("model", r.model))
    stages: list[Slice] = []
    if show_stages:
        if plan.wait:
            stages.append(Slice("prefill wait", CAT_STAGE, t0 + plan.wait[0], t0 + plan.wait[1],
                                base + (("prefill_wait_time_ms", r.prefill_wait_time_ms),)))
        if plan.prefill:
            stages.append(Slice("prefill", CAT_STAGE, t0 + plan.prefill[0], t0 + plan.prefill[1],
                                base + (("prefill_time_ms", r.prefill_time_ms),)))
        if plan.decode:
            stages.append(Slice("decode", CAT_STAGE, t0 + plan.decode[0], t0 + plan.decode[1],
                                base + (("output_tokens", r.output_tokens), ("avg_itl_ms", r.avg_itl_ms))))
    marks: tuple[Mark, ...] = ()
    if markers and plan.first_token is not None:
        marks = (Mark("first token", CAT_MARKER, t0 + plan.first_token, (("ttft_ms", r.ttft_ms),)),)
    return RequestSpan(key=r.request_id, group=groups.of_record(r), chain=_track_label(r),
                       slice=req_slice, stages=tuple(stages), marks=marks, placements=_placements(r, t0, dur, plan, name))


def _placements(r: Request, t0: int, dur: int, plan: StagePlan, name: str) -> tuple[Placement, ...]:
    """Which worker ran which part: prefill (after the queue wait, up to the first token) on the
    prefill worker, decode on the decode worker; the whole request when stages are unknown."""
    w = r.worker
    if w is None or (w.prefill_worker_id is None and w.decode_worker_id is None):
        return ()
    pre = (w.prefill_worker_id, w.prefill_dp_rank) if w.prefill_worker_id is not None else (w.decode_worker_id, w.decode_dp_rank)
    dec = (w.decode_worker_id, w.decode_dp_rank) if w.decode_worker_id is not None else pre
    args = (("request_id", r.request_id), ("model", r.model))
    out = []
    if plan.boundary is None:
        label, order = _worker_label(*dec)
        out.append(Placement(label, order, Slice(name, CAT_WORKER, t0, t0 + dur, args)))
        return tuple(out)
    pstart = plan.wait[1] if plan.wait else 0
    if plan.boundary > pstart:
        label, order = _worker_label(*pre)
        out.append(Placement(label, order, Slice("prefill", CAT_WORKER, t0 + pstart, t0 + plan.boundary, args)))
    if plan.decode:
        label, order = _worker_label(*dec)
        out.append(Placement(label, order, Slice("decode", CAT_WORKER, t0 + plan.decode[0], t0 + plan.decode[1], args)))
    return tuple(out)


# -- tools -------------------------------------------------------------------------------------

def _tool_args(t: ToolEvent, extra: tuple = ()) -> Args:
    a = _identity_args(t.identity, t.generation)
    a += [("event_type", t.event_type), ("event_source", t.event_source), ("event_time_unix_ms", t.event_time_ms)]
    a += zip(_TOOL_KEYS, _get_tool(t))
    return tuple([kv for kv in a if kv[1] is not None]) + extra


def _tool_span(t: ToolEvent, start: ToolEvent | None) -> tuple[int, int, bool]:
    """(start ns, end ns, synthetic) of a terminal tool row, §5.6 precedence."""
    ev = t.event_time_ms
    dur = t.duration_ms
    if t.generation is Generation.G1:  # G1-late: duration, else the matched start, else synthetic
        if dur is not None and dur > 0:
            return ns(ev - dur), ns(ev), False
        if start is not None and start.event_time_ms < ev:
            return ns(start.event_time_ms), ns(ev), False
    else:
        s, e = t.started_at_ms, t.ended_at_ms
        if s is not None and e is not None and e > s:
            return ns(s), ns(e), False
        if s is not None and dur is not None and dur > 0:
            return ns(s), ns(s + dur), False
        if dur is not None and dur > 0:
            end = e if e is not None else ev
            return ns(max(0.0, end - dur)), ns(end), False
        if start is not None and start.event_time_ms < ev:
            return ns(start.event_time_ms), ns(ev), False
    at = ns(start.event_time_ms if start is not None else ev)
    return at, at + NS_PER_MS, True


def _tool_items(trace: Trace, groups: _Groups) -> list[ChainItem]:
    items: list[ChainItem] = []
    stacks: dict[tuple[str, str], list[ToolEvent]] = defaultdict(list)
    real_ids: set[tuple[str, str, str]] = set()
    for t in sorted(trace.tools, key=attrgetter("event_time_ms")):  # stable: file order on ties
        chain = (groups.of_record(t), _chain_label(t.chain_id))
        key = (*chain, t.tool_call_id or "unknown-tool-call")
        if t.event_type == "tool_start":
            stacks[key].append(t)
            continue
        if t.tool_call_id:
            real_ids.add((*chain, t.tool_call_id))
        start = stacks[key].pop() if stacks[key] else None
        s, e, synthetic = _tool_span(t, start)
        if s < 0 or e >= TS_LIMIT_NS:
            _undrawable(t.source, "tool span", s, e)
        cls = t.tool_class or "unknown-tool"
        name = f"Tool error: {cls}" if t.event_type == "tool_error" else f"Tool: {cls}"
        items.append(ChainItem(chain[0], _track_label(t),
                               slice=Slice(name, CAT_TOOL, s, e, _tool_args(t, _SYNTHETIC if synthetic else ()))))
    for key in sorted(stacks):
        for t in stacks[key]:  # a tool_start no terminal row closed
            items.append(ChainItem(groups.of_record(t), _track_label(t), mark=Mark(
                f"Tool start: {t.tool_class or 'unknown-tool'}", CAT_TOOL_MARKER, ns(t.event_time_ms), _tool_args(t))))
    items.extend(_inferred_tools(trace, groups, real_ids))
    return items


def _inferred_tools(trace: Trace, groups: _Groups, real_ids: set[tuple[str, str, str]]) -> list[ChainItem]:
    """§5.7: a tool call the model emitted but no harness row recorded runs from the request's end
    to the next request of its chain (a synthetic 1 ms slice when there is no later start)."""
    by_chain: dict[tuple[str, str], list[Request]] = defaultdict(list)
    for r in trace.requests:
        by_chain[(groups.of_record(r), _chain_label(r.chain_id))].append(r)
    out: list[ChainItem] = []
    for chain, reqs in by_chain.items():
        reqs.sort(key=lambda r: (r.start_ms, r.end_ms, r.request_id))
        for i, r in enumerate(reqs):
            if not r.tool_calls:
                continue
            start = r.start_ms * NS_PER_MS + request_duration_ns(r)
            nxt = reqs[i + 1] if i + 1 < len(reqs) else None
            for call in r.tool_calls:
                if call.id is not None and (*chain, call.id) in real_ids:
                    continue
                a = _identity_args(r.identity, r.generation) + [
                    ("event_type", "inferred_tool_call"), ("event_source", "dynamo"),
                    ("source", "request.finish_reason_metadata.tool_calls"), ("inferred", True),
                    ("host_execution", False), ("source_request_id", r.request_id),
                    ("tool_call_id", call.id), ("tool_call_index", call.tool_call_index),
                    ("choice_index", call.choice_index), ("tool_class", call.name),
                    ("started_at_unix_ms", start / NS_PER_MS)]
                nts = nxt.start_ms * NS_PER_MS if nxt is not None else None
                if nts is not None and nts > start:
                    end = nts
                    a += [("next_request_id", nxt.request_id), ("ended_at_unix_ms", nts / NS_PER_MS),
                          ("duration_ms", (nts - start) / NS_PER_MS)]
                else:
                    end = start + NS_PER_MS
                    a += [("duration_unknown", True), *_SYNTHETIC]
                    if nxt is not None:
                        a.append(("overlapping_request_id", nxt.request_id))
                name = f"Tool: {call.name or 'unknown-tool'}"
                out.append(ChainItem(chain[0], _track_label(r),
                                     slice=Slice(name, CAT_TOOL, start, end, tuple((k, v) for k, v in a if v is not None))))
    return out
