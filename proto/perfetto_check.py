"""A Perfetto protobuf trace checked as trace processor will read it (perfetto.md §4.4), because
trace processor loads many broken traces silently (§4.3). Nothing here knows trace-pipe's layout:
`proto/layout_check.py` adds those checks through the hooks of `TraceChecker`.

Checks, in the order of §4.4:
1. framing: every top-level field is `Trace.packet` (0x0A) with a length that fits; no trailing
   bytes; not empty; every packet decodes;
2. TrackEvents: non-zero trusted_packet_sequence_id, a timestamp below 2^63, a type;
3. descriptors: non-zero uuid, never re-described differently, parents described, no cycles,
   depth < 100, thread/process tracks with pid (tid) and no parent, described before first use,
   named, same-named siblings only where merging is meant (lanes), distinct root names;
4. events on described tracks of the right kind; counters carry a value;
5. per-track LIFO replay in (ts, file order): ENDs close an open slice and carry no name,
   nothing left open, depth <= 512, and (optionally) the writer's intended intervals;
6. flows: one source (BEGIN / INSTANT) and one later terminator per id, never both on one event,
   never joining two root trees;
7. interning: iids >= 1, defined before use and never redefined, sequence flags;
8. counters: finite values, units set.
"""

from __future__ import annotations

import gzip
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from google.protobuf.message import DecodeError
from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb

from trace_pipe.pipeline.limits import TS_LIMIT_NS

MAX_LISTED = 200  # problem lines printed; the rest are counted
MAX_DEPTH = 512
SEQ_CLEARED = 1
SEQ_NEEDS = 2
BEGIN, END, INSTANT, COUNTER = 1, 2, 3, 4

@dataclass(slots=True)
class CheckReport:
    path: str
    packets: int = 0
    tracks: int = 0
    counter_tracks: int = 0
    slices: int = 0
    instants: int = 0
    flows: int = 0
    counter_samples: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    hidden: int = 0  # problems beyond MAX_LISTED
    tp: dict | None = None  # trace processor cross-check results, when run
    roots: dict = field(default_factory=dict)  # timeline root name -> request ids drawn under it

    @property
    def ok(self) -> bool:
        return not self.problems

    def problem(self, msg: str) -> None:
        if len(self.problems) < MAX_LISTED:
            self.problems.append(msg)
        else:
            self.hidden += 1

    def counts(self) -> str:
        return (f"{self.path}: {self.packets} packets, {self.tracks} tracks ({self.counter_tracks} counter), "
                f"{self.slices} slices, {self.instants} instants, {self.flows} flows, "
                f"{self.counter_samples} counter samples")

    def lines(self) -> list[str]:
        out = [self.counts()]
        if len(self.roots) > 1:
            first, *rest = self.roots
            ids = self.roots[first]
            same = all(self.roots[r] == ids for r in rest)
            out.append("roots: " + ", ".join(f"{r} {len(self.roots[r])} requests" for r in self.roots)
                       + ("; the same request ids" if same else ""))
        if self.tp is not None:
            out.append("trace processor: " + ", ".join(f"{k} {v}" for k, v in self.tp.items()))
        out += [f"note: {n}" for n in self.notes]
        out += [f"problem: {p}" for p in self.problems]
        if self.hidden:
            out.append(f"problem: ... and {self.hidden} more")
        out.append("OK" if self.ok else f"FAILED: {len(self.problems) + self.hidden} problem(s)")
        return out


# -- framing -----------------------------------------------------------------------------------

def open_pftrace(path: str):
    with open(path, "rb") as f:
        magic = f.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


def iter_packets(path: str, report: CheckReport, chunk: int = 1 << 22):
    """Yield (index, packet bytes) from the field-1 framing, streaming; framing problems go to
    `report` (and stop the walk: nothing after a broken frame can be trusted)."""
    with open_pftrace(path) as f:
        buf = b""
        pos = 0  # offset of buf[0] in the stream
        idx = 0
        eof = False
        stalled = True  # the last pass could not complete a packet: read more
        while True:
            if not eof and (stalled or len(buf) < chunk):
                more = f.read(chunk)
                if more:
                    buf += more
                else:
                    eof = True
            if not buf:
                if idx == 0:
                    report.problem("empty file: a trace needs at least one packet")
                return
            i = 0
            n = len(buf)
            while i < n:
                if buf[i] != 0x0A:
                    hint = ""
                    if pos + i == 0 and buf[i:i + 1] in (b"{", b"["):
                        hint = " (this looks like JSON: check reads Perfetto protobuf traces)"
                    report.problem(f"byte {pos + i}: top-level field tag 0x{buf[i]:02x} is not Trace.packet (0x0a){hint}")
                    return
                # varint length
                j = i + 1
                length = shift = 0
                while j < n and buf[j] & 0x80:
                    length |= (buf[j] & 0x7F) << shift
                    shift += 7
                    j += 1
                if j >= n:
                    if eof:
                        report.problem(f"byte {pos + i}: file ends inside a packet length")
                        return
                    break
                length |= buf[j] << shift
                j += 1
                if j + length > n:
                    if eof:
                        report.problem(f"byte {pos + i}: packet of {length} bytes runs past the end of the file "
                                       f"({n - j} bytes left)")
                        return
                    break
                yield idx, buf[j:j + length]
                idx += 1
                i = j + length
            stalled = i == 0
            buf = buf[i:]
            pos += i
            if eof and (not buf or stalled):
                return


def _uses_iids(e) -> bool:
    return e.HasField("name_iid") or len(e.category_iids) > 0 or any(
        a.HasField("name_iid") or a.HasField("string_value_iid") for a in e.debug_annotations)


# -- the checker -------------------------------------------------------------------------------

@dataclass(slots=True)
class Track:
    uuid: int
    parent: int
    name: str
    kind: str  # "slice" | "counter" | "thread" | "process"
    index: int  # packet index of the descriptor
    rank: int
    merge: int
    has_unit: bool


class Seq:
    __slots__ = ("valid", "names", "cats", "ann", "vals")

    def __init__(self) -> None:
        self.valid = False
        self.names: dict[int, str] = {}
        self.cats: dict[int, str] = {}
        self.ann: dict[int, str] = {}
        self.vals: dict[int, bytes] = {}


class TraceChecker:
    """Feed it each packet (`packet`), then call `finish`. Subclasses add a layout's own checks
    through the hooks (`on_request`, `on_counter_track`, `on_slice_tree`, `on_finish`); `ID_ARG`
    names the debug annotation that identifies a slice (None: none does)."""

    ID_ARG: str | None = None

    def __init__(self, rep: CheckReport) -> None:
        self.rep = rep
        self.tracks: dict[int, Track] = {}
        self.first_use: dict[int, int] = {}  # uuid -> packet index of first event
        # per track: [(ts, idx, type, name, cat, has_request_id, value)]
        self.events: dict[int, list] = defaultdict(list)
        self.flow_src: dict[int, list[tuple[int, int, int]]] = defaultdict(list)  # id -> [(ts, idx, track)]
        self.flow_dst: dict[int, list[tuple[int, int, int]]] = defaultdict(list)
        self.seqs: dict[int, Seq] = defaultdict(Seq)
        self.attrs: dict[str, object] = {}

    # -- per packet ----------------------------------------------------------------------------
    def packet(self, idx: int, body: bytes) -> None:
        rep = self.rep
        rep.packets += 1
        try:
            p = pb.TracePacket.FromString(body)
        except DecodeError as e:
            rep.problem(f"packet {idx}: does not decode as a TracePacket ({e})")
            return
        if p.HasField("trace_attributes"):
            for a in p.trace_attributes.attribute:
                key = self._text(idx, a.key, "trace attribute key")
                self.attrs[key] = (a.long_value if a.HasField("long_value")
                                   else self._text(idx, a.string_value, "trace attribute value"))
        seq_id = p.trusted_packet_sequence_id
        flags = p.sequence_flags
        seq = self.seqs[seq_id] if seq_id else None
        if seq is not None and flags & SEQ_CLEARED:
            seq.valid = True
            seq.names.clear(), seq.cats.clear(), seq.ann.clear(), seq.vals.clear()
        if flags & SEQ_NEEDS and (seq is None or not seq.valid) and not p.HasField("interned_data") and not (
                p.HasField("track_event") and _uses_iids(p.track_event)):  # those get a sharper message below
            rep.problem(f"packet {idx}: SEQ_NEEDS_INCREMENTAL_STATE on sequence {seq_id} before any packet with "
                        f"SEQ_INCREMENTAL_STATE_CLEARED (trace processor drops the packet)")
        if p.HasField("interned_data"):
            self._interned(idx, p, seq, flags)
        if p.HasField("track_descriptor"):
            self._descriptor(idx, p.track_descriptor)
        if p.HasField("track_event"):
            self._event(idx, p, seq, flags)

    def _text(self, idx: int, s, what: str) -> str:
        """A string field as text: the protos are proto2, so a string that is not valid UTF-8
        decodes as bytes; report it and go on with its repr."""
        if type(s) is str:
            return s
        self.rep.problem(f"packet {idx}: {what} {s!r} is not valid UTF-8")
        return repr(s)

    def _interned(self, idx: int, p, seq: Seq | None, flags: int) -> None:
        rep = self.rep
        if seq is None:
            rep.problem(f"packet {idx}: interned data without a trusted_packet_sequence_id")
            return
        if not flags & SEQ_NEEDS:
            rep.problem(f"packet {idx}: defines interned data without SEQ_NEEDS_INCREMENTAL_STATE "
                        f"(trace processor rejects it: names lost)")
        if not seq.valid:
            rep.problem(f"packet {idx}: interned data on sequence {p.trusted_packet_sequence_id} before any packet "
                        f"with SEQ_INCREMENTAL_STATE_CLEARED (trace processor drops it)")
        d = p.interned_data
        for kind, entries, table, attr in (("event name", d.event_names, seq.names, "name"),
                                           ("category", d.event_categories, seq.cats, "name"),
                                           ("annotation name", d.debug_annotation_names, seq.ann, "name"),
                                           ("annotation string", d.debug_annotation_string_values, seq.vals, "str")):
            for e in entries:
                s = getattr(e, attr)
                if attr == "name":
                    s = self._text(idx, s, f"interned {kind}")
                if e.iid < 1:
                    rep.problem(f"packet {idx}: interned {kind} {s!r} has iid 0 (iids start at 1)")
                    continue
                old = table.get(e.iid)
                if old is not None and old != s:
                    rep.problem(f"packet {idx}: interned {kind} iid {e.iid} redefined from {old!r} to {s!r}")
                table[e.iid] = s

    def _descriptor(self, idx: int, d) -> None:
        rep = self.rep
        if not d.uuid:
            if d.HasField("parent_uuid") or d.HasField("name") or d.HasField("counter"):
                rep.problem(f"packet {idx}: track descriptor with uuid 0 (only ordering fields are allowed there)")
            return
        if d.HasField("thread"):
            kind = "thread"
            if not (d.thread.HasField("pid") and d.thread.HasField("tid")):
                rep.problem(f"packet {idx}: thread track {d.uuid} without pid and tid (dropped)")
        elif d.HasField("process"):
            kind = "process"
            if not d.process.HasField("pid"):
                rep.problem(f"packet {idx}: process track {d.uuid} without pid (dropped)")
        elif d.HasField("counter"):
            kind = "counter"
        else:
            kind = "slice"
        if kind in ("thread", "process") and d.parent_uuid:
            rep.problem(f"packet {idx}: {kind} track {d.uuid} has a parent_uuid (trace processor ignores it)")
        name = self._text(idx, d.name or d.static_name or d.atrace_name, "track name")
        has_unit = kind != "counter" or bool(d.counter.unit or d.counter.unit_name)
        t = Track(d.uuid, d.parent_uuid, name, kind, idx, d.sibling_order_rank, d.sibling_merge_behavior, has_unit)
        old = self.tracks.get(d.uuid)
        if old is not None:
            what = [w for w, a, b in (("parent", old.parent, t.parent), ("kind", old.kind, t.kind),
                                      ("name", old.name, t.name)) if a != b]
            if what:
                rep.problem(f"packet {idx}: track {d.uuid} described again with another {'/'.join(what)} "
                            f"(ignored by trace processor: track_descriptor_conflicting_reservation)")
            return
        if d.uuid in self.first_use:
            rep.problem(f"packet {idx}: track {d.uuid} ({name!r}) described after its first event "
                        f"(packet {self.first_use[d.uuid]})")
        self.tracks[d.uuid] = t

    def _event(self, idx: int, p, seq: Seq | None, flags: int) -> None:
        rep = self.rep
        e = p.track_event
        if not p.trusted_packet_sequence_id:
            rep.problem(f"packet {idx}: TrackEvent without trusted_packet_sequence_id (dropped)")
        if not p.HasField("timestamp"):
            rep.problem(f"packet {idx}: TrackEvent without a timestamp")
        ts = p.timestamp
        if ts >= TS_LIMIT_NS:
            rep.problem(f"packet {idx}: timestamp {ts} is at or above 2^63 (dropped)")
        typ = e.type
        if typ not in (BEGIN, END, INSTANT, COUNTER):
            rep.problem(f"packet {idx}: TrackEvent type {typ} is not BEGIN/END/INSTANT/COUNTER")
            return
        if not e.HasField("track_uuid"):
            rep.problem(f"packet {idx}: TrackEvent without track_uuid")
            return
        track = e.track_uuid
        if track not in self.first_use:
            self.first_use[track] = idx
        # names, resolving iids
        if _uses_iids(e):
            if seq is None or not seq.valid:
                rep.problem(f"packet {idx}: uses interned ids on a sequence that was never "
                            f"SEQ_INCREMENTAL_STATE_CLEARED (trace processor drops the packet)")
            elif not flags & SEQ_NEEDS:
                rep.problem(f"packet {idx}: uses interned ids without SEQ_NEEDS_INCREMENTAL_STATE")
        names = seq.names if seq is not None else {}
        if e.HasField("name_iid"):
            if e.name_iid == 0:
                rep.problem(f"packet {idx}: name_iid 0 (the slice has no name)")
                name = ""
            else:
                name = names.get(e.name_iid, "")
                if not name:
                    rep.problem(f"packet {idx}: name_iid {e.name_iid} is not defined before use on its sequence")
        else:
            name = self._text(idx, e.name, "event name")
        cat = ",".join([self._text(idx, c, "category") for c in e.categories])
        if e.category_iids:
            cats = seq.cats if seq is not None else {}
            got = []
            for i in e.category_iids:
                s = cats.get(i)
                if s is None:
                    rep.problem(f"packet {idx}: category iid {i} is not defined before use on its sequence")
                else:
                    got.append(s)
            cat = ",".join(([cat] if cat else []) + got)
        has_rid = False
        rid = None
        for a in e.debug_annotations:
            if a.HasField("name_iid"):
                an = seq.ann.get(a.name_iid) if seq is not None else None
                if an is None or a.name_iid == 0:
                    rep.problem(f"packet {idx}: annotation name iid {a.name_iid} is not defined before use")
                    continue
            else:
                an = self._text(idx, a.name, "annotation name")
            if a.HasField("string_value_iid") and (seq is None or a.string_value_iid not in seq.vals):
                rep.problem(f"packet {idx}: annotation string iid {a.string_value_iid} is not defined before use")
            if an == self.ID_ARG:
                has_rid = True
                if a.HasField("string_value_iid"):
                    v = seq.vals.get(a.string_value_iid) if seq is not None else None
                    rid = v.decode("utf-8", "replace") if isinstance(v, bytes) else v
                else:
                    rid = a.string_value
        value = None
        if typ == COUNTER:
            self.rep.counter_samples += 1
            if e.HasField("counter_value"):
                value = e.counter_value
            elif e.HasField("double_counter_value"):
                value = e.double_counter_value
                if not math.isfinite(value):
                    rep.problem(f"packet {idx}: counter value {value} is not finite")
            else:
                rep.problem(f"packet {idx}: COUNTER event without a value (dropped)")
        elif typ == END:
            if name or cat:
                rep.problem(f"packet {idx}: END on track {track} carries a name/category {name or cat!r} "
                            f"(trace processor then looks for a matching slice: misplaced_end_event)")
        elif not name:
            if not e.HasField("name_iid"):
                rep.problem(f"packet {idx}: {'BEGIN' if typ == BEGIN else 'INSTANT'} without a name")
        fids = list(e.flow_ids)
        tids = list(e.terminating_flow_ids)
        if fids or tids:
            both = set(fids) & set(tids)
            if both:
                rep.problem(f"packet {idx}: flow id(s) {sorted(both)} both start and terminate on one event")
            if fids and typ not in (BEGIN, INSTANT):
                rep.problem(f"packet {idx}: flow source on {'an END' if typ == END else 'a COUNTER'} event "
                            f"(put it on the BEGIN: a terminator at the same time may be read first)")
            if tids and typ not in (BEGIN, INSTANT):
                rep.problem(f"packet {idx}: flow terminator on {'an END' if typ == END else 'a COUNTER'} event "
                            f"(flows sit on BEGIN or INSTANT events: trace processor orients them by start time)")
            for f in fids:
                self.flow_src[f].append((ts, idx, track))
            for f in tids:
                self.flow_dst[f].append((ts, idx, track))
        self.events[track].append((ts, idx, typ, name, cat, has_rid, value))
        if typ == BEGIN and rid is not None:
            self.on_request(track, cat, rid)

    # -- whole-trace checks --------------------------------------------------------------------
    def finish(self, expect) -> None:
        rep = self.rep
        tracks = self.tracks
        rep.tracks = len(tracks)
        rep.counter_tracks = sum(t.kind == "counter" for t in tracks.values())
        # descriptors: parents, cycles, depth, names, siblings
        children: dict[int, list[Track]] = defaultdict(list)
        for t in tracks.values():
            if t.parent and t.parent not in tracks:
                rep.problem(f"track {t.uuid} ({t.name!r}): parent_uuid {t.parent} is never described "
                            f"(its events are dropped: track_hierarchy_missing_uuid)")
            children[t.parent].append(t)
            if not t.name and t.kind in ("slice", "counter"):
                rep.problem(f"track {t.uuid}: no name")
            if not t.has_unit:
                rep.problem(f"counter track {t.uuid} ({t.name!r}): no unit or unit_name")
        self.root_of: dict[int, int] = {}
        for t in tracks.values():
            seen = {t.uuid}
            a = t
            depth = 0
            while a.parent and a.parent in tracks:
                a = tracks[a.parent]
                depth += 1
                if a.uuid in seen:
                    rep.problem(f"track {t.uuid} ({t.name!r}): parent links form a cycle")
                    break
                seen.add(a.uuid)
                if depth >= 100:
                    rep.problem(f"track {t.uuid} ({t.name!r}): parent chain is 100 or more deep")
                    break
            self.root_of[t.uuid] = a.uuid
        for parent, sibs in children.items():
            by_name: dict[str, list[Track]] = defaultdict(list)
            for t in sibs:
                by_name[t.name].append(t)
            for name, same in by_name.items():
                if len(same) < 2:
                    continue
                if parent == 0:
                    rep.problem(f"{len(same)} root tracks are named {name!r} (same-named roots merge in the UI)")
                    continue
                merge = [t for t in same if t.merge != pb.TrackDescriptor.SIBLING_MERGE_BEHAVIOR_NONE]
                if len(merge) < 2:
                    continue
                if any(children.get(t.uuid) for t in merge):
                    rep.problem(f"{len(merge)} sibling groups under track {parent} are named {name!r}: "
                                f"the UI merges them into one")
                if len({t.kind for t in merge}) > 1:
                    rep.problem(f"same-named siblings {name!r} under track {parent} mix counter and slice tracks")
        # events on known tracks of the right kind, then replay
        for track, evs in self.events.items():
            t = tracks.get(track)
            if t is None:
                rep.problem(f"{len(evs)} event(s) on track uuid {track}, which is never described "
                            f"(trace processor silently makes a root track named after an event)")
                continue
            evs.sort(key=lambda e: (e[0], e[1]))
            if t.kind == "counter":
                bad = [e for e in evs if e[2] != COUNTER]
                if bad:
                    rep.problem(f"track {track} ({t.name!r}) is a counter track but has {len(bad)} slice/instant "
                                f"event(s)")
                self.on_counter_track(t, [e[6] for e in evs if e[2] == COUNTER and e[6] is not None])
                continue
            bad = sum(e[2] == COUNTER for e in evs)
            if bad:
                rep.problem(f"track {track} ({t.name!r}): {bad} COUNTER event(s) on a slice track "
                            f"(dropped: track_event_counter_invalid_track_uuid)")
            self._replay(t, evs, expect)
        if expect:
            for uuid in expect:
                if uuid not in self.events and expect[uuid]:
                    rep.problem(f"track {uuid}: expected {len(expect[uuid])} slice(s), found none")
        self._flows()
        self.on_finish()

    def _replay(self, t: Track, evs: list, expect) -> None:
        rep = self.rep
        stack: list[list] = []  # [start, name, cat, has_rid, children]
        got: list[tuple[int, int]] = []
        top_level: list = []
        for ts, idx, typ, name, cat, has_rid, _ in evs:
            if typ == BEGIN:
                node = [ts, name, cat, has_rid, [], None]
                if len(stack) >= MAX_DEPTH:
                    rep.problem(f"track {t.uuid} ({t.name!r}): slices nest deeper than {MAX_DEPTH} at ts {ts} "
                                f"(deeper ones dropped: slice_max_depth_exceeded)")
                (stack[-1][4] if stack else top_level).append(node)
                stack.append(node)
                rep.slices += 1
            elif typ == END:
                if not stack:
                    rep.problem(f"track {t.uuid} ({t.name!r}): END at ts {ts} (packet {idx}) with no open slice")
                    continue
                node = stack.pop()
                node[5] = ts
                got.append((node[0], ts))
            elif typ == INSTANT:
                rep.instants += 1
                node = [ts, name, cat, has_rid, [], ts]
                (stack[-1][4] if stack else top_level).append(node)
        if stack:
            rep.problem(f"track {t.uuid} ({t.name!r}): {len(stack)} slice(s) never end (first {stack[0][1]!r} at "
                        f"ts {stack[0][0]}; shown as 'Did not end')")
        if expect is not None and t.uuid in expect:
            want = sorted(expect[t.uuid])
            if sorted(got) != want:
                missing = sorted(set(want) - set(got))[:3]
                extra = sorted(set(got) - set(want))[:3]
                rep.problem(f"track {t.uuid} ({t.name!r}): replayed slices differ from the intended ones "
                            f"(missing {missing}, unexpected {extra})")
        self.on_slice_tree(t, top_level)

    def _flows(self) -> None:
        rep = self.rep
        ids = set(self.flow_src) | set(self.flow_dst)
        good = 0
        self.flows_per_root: Counter = Counter()
        for f in sorted(ids):
            src = self.flow_src.get(f, [])
            dst = self.flow_dst.get(f, [])
            if len(src) != 1:
                rep.problem(f"flow id {f}: {len(src)} sources (want exactly one; a reused id draws extra arrows)"
                            if src else f"flow id {f}: terminator without a source (ignored)")
                continue
            if len(dst) != 1:
                rep.problem(f"flow id {f}: {len(dst)} terminators (want exactly one)" if dst
                            else f"flow id {f}: source without a terminator (no arrow)")
                continue
            if (src[0][0], src[0][1]) >= (dst[0][0], dst[0][1]):
                rep.problem(f"flow id {f}: terminator (ts {dst[0][0]}, packet {dst[0][1]}) is read before its source "
                            f"(ts {src[0][0]}, packet {src[0][1]}): no arrow")
                continue
            if src[0][2] in self.tracks and dst[0][2] in self.tracks and \
                    self.root_of.get(src[0][2]) != self.root_of.get(dst[0][2]):
                rep.problem(f"flow id {f}: joins two timelines")
            good += 1
            root = self.tracks.get(self.root_of.get(src[0][2], 0))
            self.flows_per_root[root.name if root else ""] += 1
        rep.flows = good

    # -- hooks: a layout's own checks ------------------------------------------------------------
    def on_request(self, track: int, cat: str, rid) -> None:
        """A BEGIN carrying an `ID_ARG` annotation, as it is read."""

    def on_counter_track(self, t: Track, values: list) -> None:
        """A counter track's values in time order."""

    def on_slice_tree(self, t: Track, top: list) -> None:
        """A slice track's slices as nested [start, name, cat, has_id, children, end] lists."""

    def on_finish(self) -> None:
        """After every generic check (`root_of` and `flows_per_root` are set)."""
