"""Read a `.pftrace` we wrote back into plain records (tracks, slices with args, instants,
counter samples, flows), resolving interning and replaying BEGIN/END per track the way trace
processor does. For tests and for comparing timelines; `check` is the validator."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb

from .perfetto_check import CheckReport, iter_packets


@dataclass(slots=True)
class Track:
    uuid: int
    parent: int
    name: str
    counter: bool
    rank: int
    child_ordering: int
    description: str


@dataclass(slots=True)
class Event:
    """A slice (dur >= 0), an instant (dur None) or a counter sample (value set)."""

    track: int
    ts: int
    name: str = ""
    category: str = ""
    dur: int | None = None
    args: dict = field(default_factory=dict)
    depth: int = 0
    correlation_id: int = 0
    flow_ids: tuple = ()
    terminating_flow_ids: tuple = ()
    end_terminating_flow_ids: tuple = ()
    value: float | None = None
    parent: "Event | None" = None


@dataclass(slots=True)
class Decoded:
    tracks: dict[int, Track]
    slices: list[Event]
    instants: list[Event]
    samples: list[Event]
    attributes: dict

    def track_path(self, uuid: int) -> list[str]:
        out = []
        while uuid:
            t = self.tracks[uuid]
            out.append(t.name)
            uuid = t.parent
        return out[::-1]

    def flows(self) -> list[tuple[Event, Event]]:
        """(source slice, target slice) per flow id."""
        src: dict[int, Event] = {}
        dst: dict[int, Event] = {}
        for e in self.slices + self.instants:
            for f in e.flow_ids:
                src[f] = e
            for f in e.terminating_flow_ids + e.end_terminating_flow_ids:
                dst[f] = e
        return [(src[f], dst[f]) for f in sorted(src) if f in dst]


def _value(a, ann: dict, vals: dict) -> object:
    which = a.WhichOneof("value")
    if len(a.dict_entries):
        return {(ann[e.name_iid] if e.HasField("name_iid") else e.name): _value(e, ann, vals) for e in a.dict_entries}
    if len(a.array_values):
        return [_value(x, ann, vals) for x in a.array_values]
    if which is None:
        return None
    if which == "string_value_iid":
        return vals[a.string_value_iid]
    return getattr(a, which)


def decode_file(path: str) -> Decoded:
    rep = CheckReport(path)
    tracks: dict[int, Track] = {}
    attrs: dict = {}
    names: dict[int, str] = {}
    cats: dict[int, str] = {}
    ann: dict[int, str] = {}
    vals: dict[int, str] = {}
    per_track: dict[int, list] = defaultdict(list)
    origin = 0  # REALTIME of trace time 0, from the clock snapshot: timestamps come back absolute
    for idx, body in iter_packets(path, rep):
        p = pb.TracePacket.FromString(body)
        if p.HasField("clock_snapshot"):
            clocks = {c.clock_id: c.timestamp for c in p.clock_snapshot.clocks}
            if pb.BUILTIN_CLOCK_REALTIME in clocks:
                origin = clocks[pb.BUILTIN_CLOCK_REALTIME] - clocks.get(pb.BUILTIN_CLOCK_BOOTTIME, 0)
        if p.sequence_flags & 1:
            names.clear(), cats.clear(), ann.clear(), vals.clear()
        if p.HasField("trace_attributes"):
            for a in p.trace_attributes.attribute:
                attrs[a.key] = a.long_value if a.HasField("long_value") else a.string_value
        if p.HasField("interned_data"):
            d = p.interned_data
            names.update((e.iid, e.name) for e in d.event_names)
            cats.update((e.iid, e.name) for e in d.event_categories)
            ann.update((e.iid, e.name) for e in d.debug_annotation_names)
            vals.update((e.iid, e.str.decode()) for e in d.debug_annotation_string_values)
        if p.HasField("track_descriptor"):
            d = p.track_descriptor
            tracks.setdefault(d.uuid, Track(d.uuid, d.parent_uuid, d.name, d.HasField("counter"),
                                            d.sibling_order_rank, d.child_ordering, d.description))
        if p.HasField("track_event"):
            e = p.track_event
            args = {}
            for a in e.debug_annotations:
                k = ann[a.name_iid] if a.HasField("name_iid") else a.name
                args[k] = _value(a, ann, vals)
            ev = Event(track=e.track_uuid, ts=p.timestamp + origin,
                       name=names[e.name_iid] if e.HasField("name_iid") else e.name,
                       category=",".join(list(e.categories) + [cats[i] for i in e.category_iids]),
                       args=args, correlation_id=e.correlation_id, flow_ids=tuple(e.flow_ids),
                       terminating_flow_ids=tuple(e.terminating_flow_ids))
            if e.type == pb.TrackEvent.TYPE_COUNTER:
                ev.value = e.counter_value if e.HasField("counter_value") else e.double_counter_value
            per_track[e.track_uuid].append((p.timestamp + origin, idx, e.type, ev))
    if rep.problems:
        raise ValueError("; ".join(rep.problems))
    slices: list[Event] = []
    instants: list[Event] = []
    samples: list[Event] = []
    for track, evs in per_track.items():
        evs.sort(key=lambda x: (x[0], x[1]))
        stack: list[Event] = []
        for ts, _, typ, ev in evs:
            if typ == pb.TrackEvent.TYPE_SLICE_BEGIN:
                ev.depth = len(stack)
                ev.parent = stack[-1] if stack else None
                stack.append(ev)
                slices.append(ev)
            elif typ == pb.TrackEvent.TYPE_SLICE_END:
                s = stack.pop()
                s.dur = ts - s.ts
                s.end_terminating_flow_ids = ev.terminating_flow_ids
                s.args.update(ev.args)
            elif typ == pb.TrackEvent.TYPE_INSTANT:
                ev.depth = len(stack)
                ev.parent = stack[-1] if stack else None
                instants.append(ev)
            else:
                samples.append(ev)
    key = lambda e: (e.ts, e.track, e.depth)  # noqa: E731
    return Decoded(tracks, sorted(slices, key=key), sorted(instants, key=key), sorted(samples, key=key), attrs)
