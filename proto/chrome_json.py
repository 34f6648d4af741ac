"""The same layout as Chrome Trace Event JSON, for JSON tools (and Dynamo's own format, §5.2).

The track tree is two levels deep here: each child of a root (a play / root-session group, the
`workers` group) is a process, each leaf track a thread (lanes named `"{label} [lane k]"` when
a track needed more than one, as Dynamo does). Slices are complete `X` events with integer µs
(`ts` and end rounded half-to-even like Python's `round`, then `dur = end - ts`, at least 1),
instants are `i` events, counters `C` events, flows v1 `s` / `f` (`bp: e`) pairs.
Events are streamed in layout order (no global sort), so memory stays flat.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from collections.abc import Sequence

import orjson

from trace_pipe.pipeline.io import atomic_output, size_written

from .layout import Block, Instant, Layout, Sample
from .spans import Timeline
from .tracks import COUNTER
from .writer import WriteStats, _Sink, open_output

FLOW_CAT = "trace_pipe.flow"


def us(ns: int) -> int:
    """ns -> µs rounded half to even (Python's `round`, as Dynamo rounds ms * 1000)."""
    q, r = divmod(ns, 1000)
    if r > 500 or (r == 500 and q & 1):
        q += 1
    return q


def _jsonable(v: object) -> object:
    """Nested values as Dynamo's script copies them: nulls inside dicts and lists stay (only the
    top-level args drop None), so list indices keep their meaning."""
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


def _args(args) -> dict:
    return {k: _jsonable(v) for k, v in args if v is not None}


class _Threads:
    """track uuid -> (pid, tid, thread name); counter uuid -> (pid, counter name)."""

    def __init__(self, layout: Layout, prefix_roots: bool) -> None:
        specs = {t.uuid: t for t in layout.tracks}
        children: dict[int, list] = defaultdict(list)
        for t in layout.tracks:
            children[t.parent].append(t)
        lanes = Counter((t.parent, t.name) for t in layout.tracks if not children[t.uuid])
        self.meta: list[dict] = []
        self.where: dict[int, tuple[int, int, str]] = {}
        pid = tid = 0
        for root in children[0]:
            pid_of: dict[int, int] = {}
            procs = [root] + [c for c in children[root.uuid] if children[c.uuid]]
            for proc in procs:
                pid += 1
                pid_of[proc.uuid] = pid
                name = proc.name if proc is root or not prefix_roots else f"{root.name}: {proc.name}"
                self.meta.append({"name": "process_name", "ph": "M", "pid": pid, "args": {"name": name}})
                self.meta.append({"name": "process_sort_index", "ph": "M", "pid": pid, "args": {"sort_index": pid}})
            # leaves in tree order: depth first, creation order
            stack = list(reversed(children[root.uuid]))
            while stack:
                t = stack.pop()
                if children[t.uuid]:
                    stack.extend(reversed(children[t.uuid]))
                    continue
                # the process: the ancestor directly under the root (or the root itself)
                path = [t]
                a = t
                while a.parent != root.uuid and a.parent in specs:
                    a = specs[a.parent]
                    path.append(a)
                proc_pid = pid_of.get(a.uuid, pid_of[root.uuid])
                inner = [x.name for x in reversed(path) if x.uuid not in pid_of]
                label = " ".join(inner)
                if t.kind == COUNTER:
                    self.where[t.uuid] = (proc_pid, 0, label)
                    continue
                if lanes[(t.parent, t.name)] > 1:
                    label = f"{label} [lane {t.lane + 1}]"
                tid += 1
                self.where[t.uuid] = (proc_pid, tid, label)
                self.meta.append({"name": "thread_name", "ph": "M", "pid": proc_pid, "tid": tid, "args": {"name": label}})
                self.meta.append({"name": "thread_sort_index", "ph": "M", "pid": proc_pid, "tid": tid,
                                  "args": {"sort_index": tid}})


def write_timelines_json(timelines: Sequence[Timeline], out_path: str | os.PathLike, *, gz: bool | None = None) -> WriteStats:
    """Write the timelines as one Chrome JSON document `{"displayTimeUnit":"ms","traceEvents":[...]}`."""
    layout = Layout(timelines, lane_units=us)  # JSON slices are whole µs, at least one
    threads = _Threads(layout, prefix_roots=len(timelines) > 1)
    where = threads.where
    rel = layout.flow_relation
    dumps = orjson.dumps
    n_events = slices = instants = samples = 0
    with atomic_output(out_path, gz=False) as raw:
        z = open_output(raw, str(out_path), gz)
        sink = _Sink(z if z is not None else raw)
        w = sink.write
        w(b'{"displayTimeUnit":"ms","traceEvents":[')
        first = True

        def put(ev: dict) -> None:
            nonlocal first, n_events
            w(dumps(ev) if first else b"," + dumps(ev))
            first = False
            n_events += 1

        for m in threads.meta:
            put(m)

        def block(b: Block) -> None:
            nonlocal slices
            pid, tid, _ = where[b.track]
            ts = us(b.start)
            put({"name": b.name, "cat": b.cat, "ph": "X", "pid": pid, "tid": tid, "ts": ts,
                 "dur": max(1, us(b.end) - ts), "args": _args(b.args)})
            slices += 1
            for f in b.flows_out:
                put({"name": rel.get(f, "dependency"), "cat": FLOW_CAT, "ph": "s", "id": f, "pid": pid, "tid": tid, "ts": ts})
            for f in b.flows_in:
                put({"name": rel.get(f, "dependency"), "cat": FLOW_CAT, "ph": "f", "bp": "e", "id": f, "pid": pid,
                     "tid": tid, "ts": ts})
            for c in b.children:
                if type(c) is Block:
                    block(c)
                else:
                    inst(c)

        def inst(i: Instant) -> None:
            nonlocal instants
            pid, tid, _ = where[i.track]
            put({"name": i.name, "cat": i.cat, "ph": "i", "s": "t", "pid": pid, "tid": tid, "ts": us(i.ts),
                 "args": _args(i.args)})
            instants += 1

        for ev in layout.events():
            if type(ev) is Block:
                block(ev)
            elif type(ev) is Sample:
                pid, _, name = where[ev.track]
                put({"name": name, "ph": "C", "pid": pid, "ts": us(ev.ts), "args": {"requests": ev.value}})
                samples += 1
            else:
                inst(ev)
        w(b"]}\n")
        sink.flush()
        if z is not None:
            z.close()
        size = size_written(raw)
    st = layout.stats
    return WriteStats(path=str(out_path), format="chrome-json", bytes=size, raw_bytes=sink.raw,
                      packets=n_events, tracks=len(layout.tracks), slices=slices, instants=instants,
                      counter_samples=samples, flows=st.flows, edges=st.links, requests=st.requests,
                      tool_items=st.tool_items, edges_not_drawn=dict(st.links_skipped))
