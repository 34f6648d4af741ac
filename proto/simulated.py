"""A simulated run (`pipeline.timeline.SimulatedRun`) as a `Timeline`, drawn beside `Recorded`.

Same subtree as the recorded timeline (perfetto.md §2): each request sits under the group and
chain its recorded twin has (so the `Simulated` root has the same play / session / chain tracks
at the same ranks), is keyed by its request id (same correlation id, so the same colour, and the
same flows), and keeps the recorded request's slice name. Without a recorded timeline (Mooncake
input) the group is the simulator's play and the chain the row's session.

Per request: the request slice [release, end] with `queued` [release, admission], one `prefill`
per chunk computed before the first token, a `first token` instant and `decode` [first token,
end]; its args carry the simulated values and, when given, the recorded values and the
differences (`annotations`). Per worker (`worker N`): what ran there (prefill / decode, as
Recorded), one slice per engine pass on `engine passes`, and counters for running and waiting
requests, KV blocks in use and cached, and prefix-hit tokens.

A disaggregated run's workers sit in two groups, `prefill workers` and `decode workers`: a
request's `prefill` slice on its prefill worker (admission to the end of its prompt, when the
worker holds its KV) and its `decode` slice on its decode worker (joining the decode set to the
end), joined by a `kv transfer` flow; on the request's own track, a `kv transfer` stage covers the
time from the prompt's end to the decode admission (the handoff wait and the transfer), and the
first token comes at the end of its first decode pass.

Tool rows of the recorded timeline are redrawn at the same offset from the end of the request
they follow (the last request of their chain that ended before the tool started; before a
chain's first request, from that request's start), so a tool call moves with the simulated
request whose answer called it.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Mapping

from trace_pipe.pipeline.timeline import SimulatedRequest, SimulatedRun
from trace_pipe.pipeline.tool_gaps import waiting_call

from .recorded import NS_PER_MS, REQUEST_ONLY
from .spans import CAT_MARKER, CAT_REQUEST, CAT_STAGE, CAT_WORKER, Args, ChainItem, CounterSeries, Mark, Placement, RequestSpan, Slice, Timeline, WorkerTrack

CAT_PASS = "trace_pipe.engine"
COUNTERS = (("running", "requests", "requests running (scheduled in the pass)"),
            ("waiting", "requests", "requests waiting for admission"),
            ("KV blocks in use", "blocks", "KV blocks held by running requests"),
            ("KV blocks cached", "blocks", "free KV blocks still holding a reusable prefix"),
            ("prefix-hit tokens", "tokens", "prompt tokens credited from the prefix cache by admissions in the pass"))


def simulated_timeline(run: SimulatedRun, *, origin_ns: int = 0, recorded: Timeline | None = None,
                       annotations: Mapping[str, Args] | None = None, name: str = "Simulated",
                       description: str = "", merge_passes: bool = False) -> Timeline:
    """`origin_ns`: the absolute time of simulated 0 (the first recorded start, in ns).
    `annotations`: extra args per request id (recorded values, differences).
    `merge_passes`: a run of identical decode passes as one `decode passes` slice, not a slice each."""
    def ns(ms: float) -> int:
        return origin_ns + int(round(ms * NS_PER_MS))

    place = {}
    names = {}
    if recorded is not None:
        for rs in recorded.requests:
            place[rs.key] = (rs.group, rs.chain)
            names[rs.key] = rs.slice.name
    ann = annotations or {}
    last = max((t for r in run.requests for t in (r.end_ms, r.first_token_ms, r.first_admit_ms, r.ready_ms)
                if t is not None), default=0.0)
    spans: list[RequestSpan] = []
    not_drawn = 0
    decode_base = run.decode_base
    for r in run.requests:
        if r.ready_ms is None:
            not_drawn += 1  # never released (the run stopped first)
            continue
        where = place.get(r.request_id)
        if where is not None:
            group, chain = where
        elif r.session_id is None and r.play == r.request_id:
            # a lone context-free row (Mooncake, Azure): one shared group, its requests packed into
            # lanes, as the recorded side lays them out; a group each would be a track pair per request
            group = chain = REQUEST_ONLY
        else:
            group, chain = f"play: {r.play}", r.session_id or REQUEST_ONLY
        spans.append(_span(r, group, chain, names.get(r.request_id, "LLM request"), ns, last,
                           ann.get(r.request_id, ()), lambda w: worker_label(run, w), decode_base))
    links = tuple(run.edges)
    tools = _shift_tools(recorded, spans, origin_ns) if recorded is not None else []
    workers = _workers(run, ns, merge_passes)
    if run.pools:
        npre = run.pools.count("prefill")
        on = f"{npre} prefill + {run.num_workers - npre} decode workers"
    else:
        on = f"{run.num_workers} worker{'s' if run.num_workers != 1 else ''}"
    desc = description or (f"Simulated run: {len(spans)} LLM requests on {on}"
                           + (f"; {run.description}" if run.description else ""))
    return Timeline(name=name, requests=spans, tools=tools, links=links, description=desc, workers=workers,
                    not_drawn=not_drawn)


def worker_label(run: SimulatedRun, w: int) -> tuple[str, tuple, str]:
    """(display name, sort key, pool group) of worker `w`: "worker N", or in a disaggregated
    run "prefill worker N" / "decode worker N" (numbered within the pool) in its pool's group."""
    if not run.pools:
        return f"worker {w}", (w, -1), ""
    pool = run.pools[w]
    k = w - run.pools.index(pool)
    return f"{pool} worker {k}", (pool != "prefill", k), f"{pool} workers"


def _span(r: SimulatedRequest, group: str, chain: str, name: str, ns, last: float, extra: Args, label,
          decode_base: int) -> RequestSpan:
    """`label`: a run-wide worker id's `worker_label`; `decode_base`: the run-wide id of decode worker 0."""
    start = ns(r.ready_ms)
    end = ns(r.end_ms if r.end_ms is not None else last)
    rid = r.request_id
    h = r.handoff
    disagg = h is not None
    worker = None if r.worker is None else decode_base + r.worker
    who = ((("prefill_worker", label(h.prefill_worker)[0]), ("decode_worker", None if worker is None else
                                                            label(worker)[0]))
           if disagg else (("worker", worker),))
    a = [("request_id", rid), *who, ("status", r.status), ("input_tokens", r.input_length),
         ("output_tokens", r.output_tokens), ("cached_tokens", r.cached_tokens), ("admissions", r.admissions),
         ("sim.start_ms", r.ready_ms), ("sim.admit_ms", r.first_admit_ms),
         ("sim.first_token_ms", r.first_token_ms), ("sim.end_ms", r.end_ms)]
    if r.first_token_ms is not None:
        a.append(("ttft_ms", r.first_token_ms - r.ready_ms))
    if r.end_ms is not None:
        a.append(("total_time_ms", r.end_ms - r.ready_ms))
    args = tuple(kv for kv in a if kv[1] is not None) + tuple(extra)
    base = (("request_id", rid),)
    stages: list[Slice] = []
    admit = ns(r.first_admit_ms) if r.first_admit_ms is not None else None
    first = ns(r.first_token_ms) if r.first_token_ms is not None else None
    if admit is not None and admit > start:
        stages.append(Slice("queued", CAT_STAGE, start, min(admit, end), base))
    cursor = admit if admit is not None else start
    for k, chunk in enumerate(r.prefill_chunks):
        s, e = max(ns(chunk.start_ms), cursor), ns(chunk.end_ms)
        if first is not None and e > first:
            break  # recompute after a preemption: inside decode, not drawn as a stage
        e = min(e, end)
        if e > s:
            stages.append(Slice("prefill", CAT_STAGE, s, e, base + (("chunk", k), ("tokens", chunk.tokens))))
            cursor = e
    held = ns(h.source_held_ms) if disagg and h.source_held_ms is not None else None
    joined = ns(h.decode_admit_ms) if disagg and h.decode_admit_ms is not None else None
    if held is not None:
        to = min(joined if joined is not None else end, end)
        if to > max(held, cursor):
            stages.append(Slice("kv transfer", CAT_STAGE, max(held, cursor), to, base))
    marks: tuple[Mark, ...] = ()
    if first is not None and start <= first <= end:
        marks = (Mark("first token", CAT_MARKER, first, (("ttft_ms", r.first_token_ms - r.ready_ms),)),)
        if end > first:
            stages.append(Slice("decode", CAT_STAGE, first, end, base + (("output_tokens", r.output_tokens),)))
    placements: tuple[Placement, ...] = ()
    if disagg and admit is not None:
        wargs = (("request_id", rid),)
        pl = []
        pname, porder, ppool = label(h.prefill_worker)
        pend = held if held is not None else end
        if pend > admit:
            pl.append(Placement(pname, porder, Slice("prefill", CAT_WORKER, admit, pend, wargs), ppool,
                                flow_out="kv transfer"))
        if worker is not None and joined is not None and end > joined:
            dname, dorder, dpool = label(worker)
            pl.append(Placement(dname, dorder, Slice("decode", CAT_WORKER, joined, end, wargs), dpool,
                                flow_in="kv transfer"))
        placements = tuple(pl)
    elif worker is not None and admit is not None:
        wname, order, _pool = label(worker)
        wargs = (("request_id", rid),)
        pl = []
        pf = first if first is not None else end
        if pf > admit:
            pl.append(Placement(wname, order, Slice("prefill", CAT_WORKER, admit, pf, wargs)))
        if first is not None and end > first:
            pl.append(Placement(wname, order, Slice("decode", CAT_WORKER, first, end, wargs)))
        placements = tuple(pl)
    return RequestSpan(key=rid, group=group, chain=chain, slice=Slice(name, CAT_REQUEST, start, end, args),
                       stages=tuple(stages), marks=marks, placements=placements)


def _shift_tools(recorded: Timeline, spans: list[RequestSpan], origin_ns: int) -> list[ChainItem]:
    """Recorded tool calls moved with the requests they belong to: in the wait of the call that
    consumed them (`tool_gaps.waiting_call`, the rule the Mooncake rows' tool time follows), by the
    offset of the dependency whose end opened that wait, so they keep their place in the simulated
    wait (a parent's tool after a joined sub-agent moves with the sub-agent's end); else after the
    latest request of their chain that had ended when they started (same offset from its end),
    else with the request running when they started (a call made mid-stream: same offset from its
    start), else with the chain's first request; never before the time origin."""
    sim = {s.key: s.slice for s in spans}
    recorded_chains = {(rs.group, rs.chain) for rs in recorded.requests}
    rec_end = {rs.key: rs.slice.end_ns for rs in recorded.requests}
    opener: dict[str, str] = {}  # a request -> its dependency that ended last (recorded)
    for link in recorded.links:
        o = opener.get(link.dst)
        if link.src in rec_end and (o is None or rec_end[link.src] > rec_end[o]):
            opener[link.dst] = link.src
    by_chain: dict[tuple[str, str], list[tuple[int, int, int, int, str]]] = defaultdict(list)
    for rs in recorded.requests:
        s = sim.get(rs.key)
        if s is None:
            continue
        by_chain[(rs.group, rs.chain)].append((rs.slice.start_ns, rs.slice.end_ns,
                                               s.start_ns - rs.slice.start_ns, s.end_ns - rs.slice.end_ns, rs.key))
    starts: dict[tuple[str, str], list[int]] = {}
    ends: dict[tuple[str, str], list[tuple[int, int]]] = {}
    waits: dict[tuple[str, str], list] = {}
    for key, xs in by_chain.items():
        xs.sort()
        starts[key] = [x[0] for x in xs]
        ends[key] = sorted((x[1], x[3]) for x in xs)
        waits[key] = [rec_end[opener[x[4]]] if x[4] in opener else None for x in xs]
    out = []
    for it in recorded.tools:
        key = (it.group, it.chain)
        xs = by_chain.get(key)
        t0 = it.slice.start_ns if it.slice is not None else it.mark.ts_ns
        if not xs:
            if key not in recorded_chains:
                d = 0  # a chain of tools alone (no request of its own): they keep their recorded times
            else:
                continue  # its requests were never released (the run stopped first)
        elif (k := waiting_call(t0, starts[key], waits[key])) >= 0 and opener[xs[k][4]] in sim:
            o = opener[xs[k][4]]
            d = sim[o].end_ns - rec_end[o]  # the dependency whose end opened the wait
        elif (j := bisect.bisect_right(ends[key], (t0, float("inf"))) - 1) >= 0:
            d = ends[key][j][1]  # the request whose answer called it
        else:
            i = bisect.bisect_right(starts[key], t0) - 1
            d = xs[max(i, 0)][2]  # the request running then, or the chain's first
        d = max(d, origin_ns - t0)
        if it.slice is not None:
            s = it.slice
            out.append(ChainItem(it.group, it.chain, slice=Slice(s.name, s.category, s.start_ns + d, s.end_ns + d, s.args)))
        else:
            m = it.mark
            out.append(ChainItem(it.group, it.chain, mark=Mark(m.name, m.category, m.ts_ns + d, m.args)))
    return out


def _workers(run: SimulatedRun, ns, merge_passes: bool) -> list[WorkerTrack]:
    passes: dict[int, list[Slice]] = defaultdict(list)
    for p in run.passes:
        n = p.repeat
        out = passes[p.worker]
        if n > 1 and not merge_passes:
            args = (("batch_size", p.batch_size), ("prefill_tokens", p.prefill_tokens),
                    ("decode_requests", p.decode_requests), ("pass_ms", p.pass_ms))
            t = p.start_ms
            for _ in range(n):
                nt = t + p.pass_ms  # the engine's clock, addition by addition
                out.append(Slice("pass", CAT_PASS, ns(t), ns(nt), args))
                t = nt
            continue
        args = (("batch_size", p.batch_size), ("prefill_tokens", p.prefill_tokens),
                ("decode_requests", p.decode_requests), ("pass_ms", (p.end_ms - p.start_ms) / n))
        name = "pass"
        if n > 1:
            # merged on request: one slice for the run, its passes and their mean length as args
            # (a slice per pass makes a long replay's trace several times slower to write than to simulate)
            name, args = "decode passes", args + (("passes", n),)
        out.append(Slice(name, CAT_PASS, ns(p.start_ms), ns(p.end_ms), args))
    series: dict[int, list[list[tuple[int, int]]]] = {}
    for s in run.samples:
        cols = series.get(s.worker)
        if cols is None:
            cols = series[s.worker] = [[] for _ in COUNTERS]
        t = ns(s.time_ms)
        for col, v in zip(cols, (s.running, s.waiting, s.kv_blocks_active, s.kv_blocks_cached, s.prefix_hit_tokens)):
            if col and col[-1][0] == t:
                col[-1] = (t, v)  # a zero-length pass: the later state wins
            elif not col or col[-1][1] != v:
                col.append((t, v))
    out = []
    for w in sorted(set(passes) | set(series)):
        cols = series.get(w, [[] for _ in COUNTERS])
        name, order, pool = worker_label(run, w)
        out.append(WorkerTrack(name, order, passes.get(w, ()),
                               tuple(CounterSeries(n, u, tuple(c), d) for (n, u, d), c in zip(COUNTERS, cols) if c),
                               pool))
    return out
