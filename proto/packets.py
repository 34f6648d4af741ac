"""TracePacket bytes for TrackEvents, hand-encoded (perfetto.md §3, method D), and the `Trace`
field-1 framing. Descriptors, the clock snapshot and attributes go through the `perfetto`
package's pb2 classes; the hot packets (slice BEGIN/END, instants, counters) are encoded here,
because building a pb2 message per event runs at ~90k packets/s. `tests/test_proto_packets.py`
compares these bytes with pb2-built packets byte for byte (fields in field-number order, as pb2
writes them).

Interning (perfetto.md §1.9), all on one sequence: event names, categories, debug-annotation
names (nested dict keys too: trace processor resolves `name_iid` at every level) and the string
values of low-cardinality keys (model, identity, statuses). Request ids are interned from their
second use on (a request's stages and worker slices repeat them; a lone request pays nothing).
Each new string is defined in the packet that first uses it; the sequence starts with a packet
flagged INCREMENTAL_STATE_CLEARED | NEEDS_INCREMENTAL_STATE (3) and every packet that defines or
uses an iid carries NEEDS_INCREMENTAL_STATE (2). Encoder caches are bounded (FIFO / clear), so
memory does not grow with the trace: a forgotten value is simply defined again under a new iid.
"""

from __future__ import annotations

import struct

from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb

from .tracks import COUNTER, ORDER_UNKNOWN, TrackSpec

SEQ_ID = 1
TS_LIMIT = 1 << 63  # trace processor drops timestamps at or above this
_pack_d = struct.Struct("<d").pack
_pack_q = struct.Struct("<Q").pack

# TrackEvent.Type
BEGIN, END, INSTANT, COUNTER_T = 1, 2, 3, 4

# Debug-annotation string values worth interning: few distinct values, repeated on many slices.
INTERNED_VALUE_KEYS = frozenset((
    "model", "session_id", "session_type_id", "trajectory_id", "parent_trajectory_id", "parent_session_id",
    "workflow_id", "workflow_type_id", "program_id", "parent_program_id", "play_id", "agent_id",
    "event_type", "event_source", "status", "tool_class", "source", "finish.finish_reason",
    "finish.backend_finish_reason", "finish.stop_reason", "finish.tool_call_names",
    "finish.choice_finish_reasons", "error_type", "finish_reason", "backend_finish_reason", "stop_reason",
    "tool_call_names", "choice_finish_reasons", "name"))
# Ids repeated on a request's stages and worker slices (4-6 uses) but used once when a request has
# neither: interned from their second use on, so single-use ids cost nothing extra.
REPEATED_ID_KEYS = frozenset(("request_id", "x_request_id"))
_PLAIN, _INTERN, _REPEATED, _DOTTED = range(4)  # how a top-level annotation key is written
_VALUE_CACHE = 1 << 16  # interned string values remembered; older ones are re-defined if used again


def varint(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


_V = [varint(i) for i in range(1 << 14)]  # small varints (lengths, iids, counts) by table lookup
_C = [bytes(((i & 0x7F) | 0x80, (i >> 7) | 0x80)) for i in range(1 << 14)]  # 14 bits, more to come


def _vi(n: int) -> bytes:
    """varint() by table lookups, 14 bits at a time (timestamps, epoch ms, uuids)."""
    if n < 16384:
        return _V[n]
    if n < 1 << 28:
        return _C[n & 16383] + _V[n >> 14]
    if n < 1 << 42:
        return _C[n & 16383] + _C[(n >> 14) & 16383] + _V[n >> 28]
    if n < 1 << 56:
        return _C[n & 16383] + _C[(n >> 14) & 16383] + _C[(n >> 28) & 16383] + _V[n >> 42]
    return varint(n)


def frame(body: bytes) -> bytes:
    """One `Trace.packet` (field 1, length-delimited) record."""
    n = len(body)
    return b"\x0a" + (_V[n] if n < 16384 else varint(n)) + body


def _ld(tag: bytes, data: bytes) -> bytes:
    n = len(data)
    return tag + (_V[n] if n < 16384 else varint(n)) + data


def _int64(n: int) -> bytes:
    return _vi(n if n >= 0 else n + (1 << 64))  # negative int64: 10-byte two's complement


def descriptor_packet(t: TrackSpec) -> bytes:
    pkt = pb.TracePacket()
    pkt.trusted_packet_sequence_id = SEQ_ID
    d = pkt.track_descriptor
    d.uuid = t.uuid
    if t.parent:
        d.parent_uuid = t.parent
    d.name = t.name
    if t.description:
        d.description = t.description
    if t.kind == COUNTER:
        d.counter.unit = pb.CounterDescriptor.UNIT_COUNT
        if t.unit_name:
            d.counter.unit_name = t.unit_name
    if t.child_ordering != ORDER_UNKNOWN:
        d.child_ordering = t.child_ordering
    d.sibling_order_rank = t.rank
    return frame(pkt.SerializeToString())


def clock_packet(origin_ns: int) -> bytes:
    """Trace time 0 (BOOTTIME, the default TrackEvent clock) is wall-clock `origin_ns`, so the UI
    shows real UTC times while every event timestamp stays a short varint (perfetto.md §1.10)."""
    pkt = pb.TracePacket()
    pkt.trusted_packet_sequence_id = SEQ_ID
    cs = pkt.clock_snapshot
    c = cs.clocks.add()
    c.clock_id = pb.BUILTIN_CLOCK_BOOTTIME
    c.timestamp = 0
    c = cs.clocks.add()
    c.clock_id = pb.BUILTIN_CLOCK_REALTIME
    c.timestamp = origin_ns
    cs.primary_trace_clock = pb.BUILTIN_CLOCK_BOOTTIME
    return frame(pkt.SerializeToString())


def attributes_packet(attrs: list[tuple[str, object]]) -> bytes:
    pkt = pb.TracePacket()
    for k, v in attrs:
        a = pkt.trace_attributes.attribute.add()
        a.key = k
        if isinstance(v, int) and not isinstance(v, bool):
            a.long_value = v
        else:
            a.string_value = str(v)
    return frame(pkt.SerializeToString())


class Encoder:
    """Framed TracePacket bytes for one sequence. Not thread-safe; one per output file."""

    def __init__(self, intern: bool = True, origin_ns: int = 0) -> None:
        self.intern = intern
        self.origin = origin_ns  # subtracted from every timestamp
        self._track: dict[int, bytes] = {}
        self._names: dict[str, bytes] = {}  # name -> encoded reference (iid or inline)
        self._cats: dict[str, bytes] = {}
        self._ann: dict[str, bytes] = {}
        self._vals: dict[str, bytes] = {}
        self._keys: dict[str, tuple] = {}  # annotation key -> (name reference, mode)
        self._pairs: dict[tuple, bytes] = {}  # (tag, key, value) -> encoded annotation
        self._seen: dict[str, None] = {}  # REPEATED_ID_KEYS values used once so far (FIFO-bounded)
        self._n_names = self._n_cats = self._n_ann = self._n_vals = 0
        self._defs: list[bytes] = []  # InternedData entries defined by the packet being built
        self._seq = b"\x50" + varint(SEQ_ID)

    def start(self) -> bytes:
        """The first packet of the sequence: clears incremental state (flags 3)."""
        return frame(b"\x50" + varint(SEQ_ID) + b"\x68\x03")

    # -- interning ---------------------------------------------------------------------------
    def _name(self, s: str) -> bytes:
        ref = self._names.get(s)
        if ref is None:
            if self.intern:
                self._n_names += 1
                iid = self._n_names
                ref = b"\x50" + varint(iid)  # TrackEvent.name_iid = 10
                self._defs.append((2, _ld(b"\x12", b"\x08" + varint(iid) + _ld(b"\x12", s.encode()))))
            else:
                ref = _ld(b"\xba\x01", s.encode())  # TrackEvent.name = 23
            self._names[s] = ref
        return ref

    def _cat(self, s: str) -> bytes:
        ref = self._cats.get(s)
        if ref is None:
            if self.intern:
                self._n_cats += 1
                iid = self._n_cats
                ref = b"\x18" + varint(iid)  # TrackEvent.category_iids = 3
                self._defs.append((1, _ld(b"\x0a", b"\x08" + varint(iid) + _ld(b"\x12", s.encode()))))
            else:
                ref = _ld(b"\xb2\x01", s.encode())  # TrackEvent.categories = 22
            self._cats[s] = ref
        return ref

    def _val_iid(self, s: str) -> bytes:
        ref = self._vals.get(s)
        if ref is None:
            if len(self._vals) >= _VALUE_CACHE:  # bounded memory: forget the oldest (FIFO)
                del self._vals[next(iter(self._vals))]
            self._n_vals += 1
            iid = self._n_vals
            ref = b"\x88\x01" + varint(iid)  # DebugAnnotation.string_value_iid = 17
            self._defs.append((29, _ld(b"\xea\x01", b"\x08" + varint(iid) + _ld(b"\x12", s.encode()))))
            self._vals[s] = ref
        return ref

    # -- debug annotations -------------------------------------------------------------------
    def _value(self, v: object, key: str = "") -> bytes | None:
        """The value fields of a DebugAnnotation (None: nothing to write)."""
        if v is None:
            return None
        if v is True:
            return b"\x10\x01"
        if v is False:
            return b"\x10\x00"
        t = type(v)
        if t is int:
            if 0 <= v < 16384:
                return b"\x20" + _V[v]  # int_value
            if v >= 1 << 63:
                return b"\x18" + varint(v)  # uint_value
            return b"\x20" + _int64(v)
        if t is float:
            return b"\x29" + _pack_d(v)
        if t is str:
            if self.intern:
                if key in INTERNED_VALUE_KEYS:
                    return self._val_iid(v)
                if key in REPEATED_ID_KEYS:
                    return self._repeated(v)
            return _ld(b"\x32", v.encode())
        if isinstance(v, dict):
            if self.intern:
                return self._items(v.items(), b"\x5a", False) or None
            return self._dict(v.items())
        if isinstance(v, (list, tuple)):
            out = []
            for x in v:
                e = self._value(x, key)
                if e is not None:
                    out.append(_ld(b"\x62", e))
            return b"".join(out) or None  # an empty list has no value: leave it out
        if isinstance(v, int):
            return self._value(int(v), key)
        if isinstance(v, float):
            return self._value(float(v), key)
        return _ld(b"\x32", str(v).encode())

    def _entry(self, k: str, v: object) -> bytes | None:
        """One named DebugAnnotation (top level or a dict entry), without its outer tag."""
        e = self._value(v, k)
        if e is None:
            return None
        if self.intern:
            return self._ann_name(k) + e  # name_iid (1) sorts before every value field
        if isinstance(v, (dict, list, tuple)):
            return _ld(b"\x52", k.encode()) + e  # name (10) before dict_entries (11) / array_values (12)
        return e + _ld(b"\x52", k.encode())  # ... and after the scalar values (2-6)

    def _dict(self, items) -> bytes | None:
        out = []
        for k, x in items:
            e = self._entry(str(k), x)
            if e is not None:
                out.append(_ld(b"\x5a", e))
        return b"".join(out) or None

    def _key_info(self, k: str) -> tuple:
        """(name reference, mode) of a top-level annotation key, cached for the sequence."""
        dot = k.find(".")
        if dot > 0:
            info = ((k[:dot], k[dot + 1:]), _DOTTED)
        else:
            mode = _INTERN if k in INTERNED_VALUE_KEYS else _REPEATED if k in REPEATED_ID_KEYS else _PLAIN
            info = (self._ann_name(k), mode)
        self._keys[k] = info
        return info

    def _repeated(self, v: str) -> bytes:
        ref = self._vals.get(v)
        if ref is not None:
            return ref
        seen = self._seen
        if v in seen:
            del seen[v]
            return self._val_iid(v)
        if len(seen) >= _VALUE_CACHE:
            del seen[next(iter(seen))]
        seen[v] = None
        b = v.encode()
        return b"\x32" + _vi(len(b)) + b

    def _args(self, args) -> bytes:
        """Top-level annotations. Dynamo's dotted keys (`worker.decode_worker_id`, `finish.*`)
        become one nested dict per prefix, which trace processor shows as `debug.worker.…` (it
        would turn a dot inside a name into `_`)."""
        if not self.intern:
            return self._args_inline(args)
        return self._items(args, b"\x22", True)

    def _items(self, items, tag: bytes, top: bool) -> bytes:
        """Named annotations (top level: tag 0x22, dict entries: tag 0x5a). The common scalar
        cases are inlined: this loop is most of the writer's time."""
        out: list[bytes] = []
        ap = out.append
        keys = self._keys
        pairs = self._pairs
        group = None
        members: list = []
        for k, v in items:
            if v is None:
                continue
            info = keys.get(k)
            if info is None:
                info = self._key_info(k)
            ref, mode = info
            if mode == _DOTTED:
                if top:
                    if ref[0] != group:
                        if group is not None:
                            self._group(ap, group, members)
                        group, members = ref[0], []
                    members.append((ref[1], v))
                    continue
                ref, mode = self._ann_name(k), _PLAIN  # a dot inside a nested key: written as is
            if group is not None:
                self._group(ap, group, members)
                group = None
            t = type(v)
            if t is float:  # the most common unique value: no cache
                e = ref + b"\x29" + _pack_d(v)
                ap(tag + _V[len(e)] + e)
                continue
            if (t is str and mode == _INTERN) or (t is int and 0 <= v < 16384):
                # repeated (key, value) pairs (model, identity, statuses, worker ids, counts):
                # the whole encoded annotation is cached
                pk = (tag, k, v)
                hit = pairs.get(pk)
                if hit is not None:
                    ap(hit)
                    continue
            else:
                pk = None
            if t is int:
                if 0 <= v < 16384:
                    e = ref + b"\x20" + _V[v]
                elif v >= 1 << 63:
                    e = ref + b"\x18" + _vi(v)
                else:
                    e = ref + b"\x20" + _int64(v)
            elif t is float:
                e = ref + b"\x29" + _pack_d(v)
            elif t is str:
                if mode == _PLAIN:
                    b = v.encode()
                    n = len(b)
                    e = ref + b"\x32" + (_V[n] if n < 16384 else _vi(n)) + b
                elif mode == _INTERN:
                    vr = self._vals.get(v)
                    e = ref + (vr if vr is not None else self._val_iid(v))
                else:
                    e = ref + self._repeated(v)
            elif t is bool:
                e = ref + (b"\x10\x01" if v else b"\x10\x00")
            else:
                x = self._value(v, k)
                if x is None:
                    continue
                e = ref + x
            n = len(e)
            e = tag + (_V[n] if n < 16384 else _vi(n)) + e
            if pk is not None:
                if len(pairs) >= _VALUE_CACHE:
                    pairs.clear()
                pairs[pk] = e
            ap(e)
        if group is not None:
            self._group(ap, group, members)
        return b"".join(out)

    def _group(self, ap, group: str, members: list) -> None:
        inner = self._items(members, b"\x5a", False)
        if inner:
            e = self._ann_name(group) + inner
            n = len(e)
            ap(b"\x22" + (_V[n] if n < 16384 else _vi(n)) + e)

    def _args_inline(self, args) -> bytes:
        """Without interning: names inline (the size / speed comparison in the benchmark)."""
        out = []
        group = None
        members: list = []
        for k, v in args:
            if v is None:
                continue
            dot = k.find(".")
            if dot > 0:
                prefix = k[:dot]
                if prefix != group:
                    if group is not None:
                        self._flush(out, group, members)
                    group, members = prefix, []
                members.append((k[dot + 1:], v))
                continue
            if group is not None:
                self._flush(out, group, members)
                group, members = None, []
            e = self._entry(k, v)
            if e is not None:
                out.append(_ld(b"\x22", e))
        if group is not None:
            self._flush(out, group, members)
        return b"".join(out)

    def _flush(self, out: list, group: str, members: list) -> None:
        e = self._entry(group, dict(members))
        if e is not None:
            out.append(_ld(b"\x22", e))

    def _ann_name(self, s: str) -> bytes:
        ref = self._ann.get(s)
        if ref is None:
            self._n_ann += 1
            iid = self._n_ann
            ref = b"\x08" + varint(iid)  # DebugAnnotation.name_iid = 1
            self._defs.append((3, _ld(b"\x1a", b"\x08" + varint(iid) + _ld(b"\x12", s.encode()))))
            self._ann[s] = ref
        return ref

    # -- packets -----------------------------------------------------------------------------
    def _tr(self, track: int) -> bytes:
        b = self._track.get(track)
        if b is None:
            b = self._track[track] = b"\x58" + varint(track)
        return b

    def _packet(self, ts: int, te: bytes, uses_iids: bool) -> bytes:
        ts -= self.origin
        if not 0 <= ts < TS_LIMIT:
            raise ValueError(f"timestamp {ts + self.origin} ns is before the trace origin or too large")
        n = len(te)
        body = b"\x40" + _vi(ts) + self._seq + b"\x5a" + (_V[n] if n < 16384 else _vi(n)) + te
        if self._defs:
            self._defs.sort(key=lambda d: d[0])  # InternedData fields in number order
            body += _ld(b"\x62", b"".join(d[1] for d in self._defs))
            self._defs.clear()
            uses_iids = True
        if uses_iids:
            body += b"\x68\x02"
        n = len(body)
        return b"\x0a" + (_V[n] if n < 16384 else _vi(n)) + body

    def _head(self, typ: bytes, track: int, name: str, cat: str, args) -> bytes:
        """category, annotations, type, name, track in field-number order."""
        if self.intern:
            c = self._cats.get(cat) or (self._cat(cat) if cat else b"")
            a = self._items(args, b"\x22", True) if args else b""
            nm = self._names.get(name) or self._name(name)
            tr = self._track.get(track) or self._tr(track)
            return c + a + typ + nm + tr
        return self._args(args) + typ + self._tr(track) + (self._cat(cat) if cat else b"") + self._name(name)

    def begin(self, ts: int, track: int, name: str, cat: str, args, corr: int = 0,
              flows_out=(), flows_in=()) -> bytes:
        te = self._head(b"\x48\x01", track, name, cat, args)
        if flows_out:
            te += b"".join(b"\xf9\x02" + _pack_q(f) for f in flows_out)
        if flows_in:
            te += b"".join(b"\x81\x03" + _pack_q(f) for f in flows_in)
        if corr:
            te += b"\xa0\x03" + _vi(corr)
        return self._packet(ts, te, self.intern)

    def end(self, ts: int, track: int, flows_in=()) -> bytes:
        te = b"\x48\x02" + (self._track.get(track) or self._tr(track))
        if flows_in:
            te += b"".join(b"\x81\x03" + _pack_q(f) for f in flows_in)
        return self._packet(ts, te, False)

    def instant(self, ts: int, track: int, name: str, cat: str, args) -> bytes:
        return self._packet(ts, self._head(b"\x48\x03", track, name, cat, args), self.intern)

    def counter(self, ts: int, track: int, value: int) -> bytes:
        return self._packet(ts, b"\x48\x04" + (self._track.get(track) or self._tr(track)) + b"\xf0\x01"
                            + _int64(value), False)
