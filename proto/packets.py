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
memory does not grow with the trace: a forgotten value is simply defined again under a new iid
(an encoding cached with the old iid stays valid: the sequence's interned data is never cleared).

Speed (issue 3: >= 300k packets/s, i.e. >= 0.31 x perfetto.md's reference loop; see
bench/bench_perfetto.py): debug annotations are most of the work (~57 per Dynamo request with
its stages, worker slices and tools), so repeated (key, value) pairs are cached as whole encoded
annotations, float, epoch-time and inline-string keys as encoded prefixes and runs of dotted keys
as whole dicts. Packets are framed with one join into the output buffer, their lengths computed
rather than measured on copies; a plain END and a counter sample reuse everything but the
timestamp / value.
"""

from __future__ import annotations

import struct

from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb

from trace_pipe.pipeline.limits import TS_LIMIT_NS

from .layout import Block
from .tracks import COUNTER, ORDER_UNKNOWN, TrackSpec

SEQ_ID = 1
_pack_d = struct.Struct("<d").pack
_pack_q = struct.Struct("<Q").pack

# TrackEvent.Type
BEGIN, END, INSTANT, COUNTER_T = 1, 2, 3, 4

_PLAIN, _INTERN, _REPEATED, _DOTTED = range(4)  # how a top-level annotation key is written
# InternedData lists used (field number -> tag): event_categories, event_names,
# debug_annotation_names, debug_annotation_string_values
_INTERNED = {1: b"\x0a", 2: b"\x12", 3: b"\x1a", 29: b"\xea\x01"}
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


def _ts(ts: int, origin: int) -> bytes:
    """A timestamp `ts` ns after `origin` as its varint (the writers inline the common 5-byte case);
    a ValueError where the trace cannot hold it."""
    if not 0 <= ts < TS_LIMIT_NS:
        raise ValueError(f"timestamp {ts + origin} ns is before the trace origin or too large")
    return _vi(ts)


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


# after the frame's length: timestamp tag (1), sequence id field (_SEQ_TE, with the track_event
# tag), the TrackEvent's length varint and body; _FIXED counts the constant bytes
_SEQ_TE = b"\x50" + varint(SEQ_ID) + b"\x5a"
_FIXED = 1 + len(_SEQ_TE)
_I63 = 1 << 63


def _field(d: tuple) -> int:
    return d[0]


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
    """Framed TracePacket bytes for one sequence. Not thread-safe; one per output file.

    The writer streams whole layout events through `block` / `instant_event` / `series`, which
    append to `buf` (it flushes and clears `buf`); `begin` / `end` / `instant` / `counter`
    return one packet's bytes (tests).
    """

    def __init__(self, intern: bool = True, origin_ns: int = 0, *, interned_keys: frozenset[str] = frozenset(),
                 repeated_keys: frozenset[str] = frozenset(), value_cache: int | None = None) -> None:
        """`interned_keys`: annotation keys whose string values are interned (few distinct values,
        repeated on many slices); `repeated_keys`: keys whose values are interned from their second
        use on (ids a request's stages and worker slices repeat). The caller knows its arguments;
        the encoder knows no field names. `value_cache`: interned values remembered (older ones
        are defined again if used again); None: `_VALUE_CACHE`."""
        self.intern = intern
        self._intern_keys = interned_keys
        self._repeat_keys = repeated_keys
        self._cap = _VALUE_CACHE if value_cache is None else value_cache
        self.origin = origin_ns  # subtracted from every timestamp
        self.buf = bytearray()  # encoded packets not yet taken
        self.slices = self.instants = self.samples = 0  # written through block / instant_event / series
        self._track: dict[int, bytes] = {}
        self._ends: dict[bytes, bytes] = {}  # track reference -> END packet after its timestamp
        self._names: dict[str, bytes] = {}  # name -> encoded reference (iid or inline)
        self._cats: dict[str, bytes] = {}
        self._ann: dict[str, bytes] = {}
        self._vals: dict[str, bytes] = {}
        self._keys: dict[str, tuple] = {}  # annotation key -> (name reference, mode)
        # (key, value) -> whole encoded annotation, for small ints and interned strings; one dict
        # per nesting level (tag 0x22 top level, 0x5a dict entry)
        self._pairs_top: dict[tuple, bytes] = {}
        self._pairs_nest: dict[tuple, bytes] = {}
        # key -> tag, length and name reference of an annotation with a double value (all 9 bytes)
        self._floats_top: dict[str, bytes] = {}
        self._floats_nest: dict[str, bytes] = {}
        # key -> name reference and value tag, for int values >= 16384 and inline strings
        self._ints_top: dict[str, bytes] = {}
        self._ints_nest: dict[str, bytes] = {}
        self._strs_top: dict[str, bytes] = {}
        self._strs_nest: dict[str, bytes] = {}
        self._reps_top: dict[str, bytes] = {}  # repeated_keys key -> name reference
        self._containers: dict[str, bytes] = {}  # nested key with a list / dict value -> name reference
        self._containers_top: dict[str, bytes] = {}  # ... top-level key (finish_reason_metadata)
        self._dotted: dict[str, str] = {}  # top-level dotted key -> its prefix
        self._groups: dict[tuple, bytes] = {}  # run of dotted (key, value) items -> encoded dict
        self._seen: dict[str, None] = {}  # repeated_keys values used once so far (FIFO-bounded)
        self._iids = dict.fromkeys(_INTERNED, 0)  # InternedData list -> last iid given
        self._defs: list[tuple[int, bytes]] = []  # InternedData entries defined by the packet being built
        self._flag = b"\x68\x02" if intern else b""  # sequence_flags of packets that may use iids

    def start(self) -> bytes:
        """The first packet of the sequence: clears incremental state (flags 3)."""
        return frame(b"\x50" + varint(SEQ_ID) + b"\x68\x03")

    # -- interning ---------------------------------------------------------------------------
    def _define(self, kind: int, s: str) -> int:
        """A new iid for string `s` in InternedData list `kind`, defined by the packet being
        built. Each list numbers its own iids from 1; `_INTERNED` has each list's field tag."""
        iid = self._iids[kind] = self._iids[kind] + 1
        b = s.encode()
        n = len(b)
        e = b"\x08" + _vi(iid) + b"\x12" + (_V[n] if n < 16384 else varint(n)) + b  # iid, str
        n = len(e)
        self._defs.append((kind, _INTERNED[kind] + (_V[n] if n < 16384 else varint(n)) + e))
        return iid

    def _ref(self, table: dict, s: str, kind: int, iid_tag: bytes, inline_tag: bytes) -> bytes:
        """How an event refers to name / category `s`: its iid (defined on first use) or, without
        interning, the string inline; cached in `table`."""
        if self.intern:
            ref = iid_tag + varint(self._define(kind, s))
        else:
            ref = _ld(inline_tag, s.encode())
        table[s] = ref
        return ref

    def _name(self, s: str) -> bytes:  # TrackEvent.name_iid = 10, or name = 23
        return self._names.get(s) or self._ref(self._names, s, 2, b"\x50", b"\xba\x01")

    def _cat(self, s: str) -> bytes:  # TrackEvent.category_iids = 3, or categories = 22
        return self._cats.get(s) or self._ref(self._cats, s, 1, b"\x18", b"\xb2\x01")

    def _val_iid(self, s: str) -> bytes:
        ref = self._vals.get(s)
        if ref is None:
            if len(self._vals) >= self._cap:  # bounded memory: forget the oldest (FIFO)
                del self._vals[next(iter(self._vals))]
            ref = self._vals[s] = b"\x88\x01" + _vi(self._define(29, s))  # DebugAnnotation.string_value_iid = 17
        return ref

    def _ann_name(self, s: str) -> bytes:
        ref = self._ann.get(s)
        if ref is None:
            ref = self._ann[s] = b"\x08" + varint(self._define(3, s))  # DebugAnnotation.name_iid = 1
        return ref

    def _repeated(self, v: str) -> bytes:
        ref = self._vals.get(v)
        if ref is not None:
            return ref
        seen = self._seen
        if v in seen:
            del seen[v]
            return self._val_iid(v)
        if len(seen) >= self._cap:
            del seen[next(iter(seen))]
        seen[v] = None
        b = v.encode()
        return b"\x32" + _vi(len(b)) + b

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
                if key in self._intern_keys:
                    return self._val_iid(v)
                if key in self._repeat_keys:
                    return self._repeated(v)
            return _ld(b"\x32", v.encode())
        if isinstance(v, dict):
            if self.intern:
                return self._nested(v.items()) or None
            return self._dict(v.items())
        if isinstance(v, (list, tuple)):
            out = []
            for x in v:
                e = (self._nested(x.items()) or None) if type(x) is dict and self.intern else self._value(x, key)
                if e is not None:
                    n = len(e)
                    out.append(b"\x62" + (_V[n] if n < 16384 else _vi(n)) + e)
            return b"".join(out) or None  # an empty list has no value: leave it out
        if isinstance(v, int):
            return self._value(int(v), key)
        if isinstance(v, float):
            return self._value(float(v), key)
        return _ld(b"\x32", str(v).encode())

    def _key_info(self, k: str) -> tuple:
        """(name reference, mode) of an annotation key, cached for the sequence."""
        s = k if type(k) is str else str(k)
        dot = s.find(".")
        if dot > 0:
            info = ((s[:dot], s[dot + 1:]), _DOTTED)
        else:
            mode = _INTERN if s in self._intern_keys else _REPEATED if s in self._repeat_keys else _PLAIN
            info = (self._ann_name(s), mode)
        self._keys[k] = info
        return info

    def _anns(self, items) -> bytes:
        """Top-level annotations with interned names, one (key, value) at a time.

        Dynamo's dotted keys (`worker.decode_worker_id`, `finish.*`) become one nested dict per
        run of keys with the same prefix, which trace processor shows as `debug.worker.…` (it
        would turn a dot inside a name into `_`). A run is written in the slot where it started;
        it ends at the first annotation of another kind (None values are skipped).

        The common cases come first and take one dict lookup each: repeated (key, value) pairs
        (identity, model, statuses, token counts) are cached whole, floats (the commonest unique
        values) by key prefix. Only int and str values reach the pair cache, so ("n", True) never
        returns the entry for ("n", 1).
        """
        fget, pget, iget, sget = self._floats_top.get, self._pairs_top.get, self._ints_top.get, self._strs_top.get
        rget = self._reps_top.get
        pack = _pack_d
        dotted = self._dotted
        out: list[bytes] = []
        ap = out.append
        group = None
        slot = -1
        run: list = []  # the (key, value) items of the current run of dotted keys
        safe = True  # ... all int / str values (hashable, and no True == 1 confusion)
        for kv in items:
            k, v = kv
            t = type(v)
            if t is float:
                p = fget(k)
                if p is not None:
                    ap(p + pack(v))
                    continue
            elif t is int:
                e = pget(kv)
                if e is not None:
                    ap(e)
                    continue
                if 16384 <= v < _I63:  # epoch times: the key's prefix, then the varint
                    p = iget(k)
                    if p is not None:
                        e = p + _vi(v)
                        ap(b"\x22" + _V[len(e)] + e)
                        continue
            elif t is str:
                e = pget(kv)
                if e is not None:
                    ap(e)
                    continue
                p = sget(k)  # keys whose values are written inline (unique ids)
                if p is not None:
                    b = v.encode()
                    n = len(b)
                    if n < 128:
                        ap(b"\x22" + _V[len(p) + n + 1] + p + _V[n] + b)
                        continue
                else:
                    p = rget(k)  # request ids: inline on first use, interned from the second
                    if p is not None:
                        if group is not None:  # may define strings: after the open run, as in the order written
                            out[slot] = self._group(group, run, safe)
                            group = None
                        ap(self._rep_ann(kv, p))
                        continue
            elif t is dict or t is list:
                p = self._containers_top.get(k)
                if p is not None:
                    if group is not None:  # may define strings: after the open run, as in the order written
                        out[slot] = self._group(group, run, safe)
                        group = None
                    x = self._array(v, k) if t is list else self._nested(v.items())
                    if x:
                        e = p + x
                        n = len(e)
                        x = b"\x22" + (_V[n] if n < 16384 else _vi(n)) + e
                    ap(x)
                    continue
            if v is None:
                continue
            g = dotted.get(k)
            if g is None:
                info = self._keys.get(k) or self._key_info(k)
                if info[1] == _DOTTED:
                    g = dotted[k] = info[0][0]
            if g is not None:
                if g != group or len(out) != slot + 1:  # a new run of this prefix
                    if group is not None:
                        out[slot] = self._group(group, run, safe)
                    group, run, safe, slot = g, [], True, len(out)
                    ap(b"")
                run.append(kv)
                if t is not int and t is not str:
                    safe = False
                continue
            if group is not None:
                out[slot] = self._group(group, run, safe)
                group = None
            ap(self._slow(kv, True))
        if group is not None:
            out[slot] = self._group(group, run, safe)
        return b"".join(out)

    def _nested(self, items) -> bytes:
        """Dict entries (tag 0x5a), the same cases as `_anns` without dotted runs (a dot inside
        a nested key is written as is)."""
        fget, pget = self._floats_nest.get, self._pairs_nest.get
        out: list[bytes] = []
        for kv in items:
            k, v = kv
            t = type(v)
            if t is float:
                p = fget(k)
                if p is not None:
                    out.append(p + _pack_d(v))
                    continue
            elif t is int or t is str:
                e = pget(kv)
                if e is not None:
                    out.append(e)
                    continue
                if t is str:
                    p = self._strs_nest.get(k)  # keys whose values are written inline (ids)
                    if p is not None:
                        b = v.encode()
                        n = len(b)
                        if n < 128:
                            out.append(b"\x5a" + _V[len(p) + n + 1] + p + _V[n] + b)
                            continue
            elif t is list or t is dict:  # Dynamo's tool_calls / choices: straight here, not via _slow
                p = self._containers.get(k)
                if p is not None:
                    x = self._array(v, k) if t is list else self._nested(v.items())
                    if x:
                        e = p + x
                        n = len(e)
                        out.append(b"\x5a" + (_V[n] if n < 16384 else _vi(n)) + e)
                    continue
            if v is not None:
                out.append(self._slow(kv, False))
        return b"".join(out)

    def _array(self, v: list | tuple, key: str) -> bytes:
        """A list's array_values (tag 0x62), b"" when empty (no value: the annotation is left out)."""
        out = []
        for x in v:
            e = (self._nested(x.items()) or None) if type(x) is dict else self._value(x, key)
            if e is not None:
                n = len(e)
                out.append(b"\x62" + (_V[n] if n < 16384 else _vi(n)) + e)
        return b"".join(out)

    def _slow(self, kv: tuple, top: bool) -> bytes:
        """One annotation the caches missed (not a top-level dotted key), b"" when it has no
        value: encoded, and the caches filled for the next one like it."""
        k, v = kv
        if top:
            tag, floats, pairs, ints, strs = b"\x22", self._floats_top, self._pairs_top, self._ints_top, self._strs_top
        else:
            tag, floats, pairs, ints, strs = b"\x5a", self._floats_nest, self._pairs_nest, self._ints_nest, self._strs_nest
        ref, mode = self._keys.get(k) or self._key_info(k)
        if mode == _DOTTED:
            ref, mode = self._ann_name(k), _PLAIN  # a dot inside a nested key: written as is
        t = type(v)
        cache = False
        if t is int:
            if 0 <= v < 16384:
                e = ref + b"\x20" + _V[v]
                cache = True
            elif v >= 1 << 63:
                e = ref + b"\x18" + _vi(v)
            else:
                p = ints.get(k)
                if p is None:
                    p = ref + b"\x20"
                    if v > 0:
                        ints[k] = p
                e = p + _int64(v)
        elif t is float:
            p = floats.get(k)
            if p is None:
                p = floats[k] = tag + _V[len(ref) + 9] + ref + b"\x29"
            return p + _pack_d(v)
        elif t is str:
            if mode == _PLAIN:
                b = v.encode()
                n = len(b)
                e = ref + b"\x32" + (_V[n] if n < 16384 else _vi(n)) + b
                strs[k] = ref + b"\x32"
            elif mode == _INTERN:
                e = ref + (self._vals.get(v) or self._val_iid(v))
                cache = True
            else:
                if top:
                    self._reps_top[k] = ref
                return self._rep_ann(kv, ref, tag)
        elif t is bool:
            e = ref + (b"\x10\x01" if v else b"\x10\x00")
        else:
            if t is list or t is dict:
                (self._containers if not top else self._containers_top)[k] = ref
            x = self._nested(v.items()) if t is dict else self._value(v, k)
            if not x:  # None, or an empty dict: no value
                return b""
            e = ref + x
        n = len(e)
        e = tag + (_V[n] if n < 16384 else _vi(n)) + e
        if cache:
            if len(pairs) >= self._cap:
                pairs.clear()
            pairs[kv] = e
        return e

    def _rep_ann(self, kv: tuple, ref: bytes, tag: bytes = b"\x22") -> bytes:
        """An annotation of a repeated_keys key (name reference `ref`): its value inline on
        first use, interned from the second; once interned the whole annotation is cached."""
        r = self._vals.get(kv[1]) or self._repeated(kv[1])
        e = ref + r
        n = len(e)
        e = tag + (_V[n] if n < 16384 else _vi(n)) + e
        if r[0] == 0x88:  # interned by now (the first use is written inline)
            pairs = self._pairs_top if tag == b"\x22" else self._pairs_nest
            if len(pairs) >= self._cap:
                pairs.clear()
            pairs[kv] = e
        return e

    def _group(self, group: str, run, safe: bool) -> bytes:
        """One top-level annotation holding a run of dotted keys as a dict (b"" if all empty).
        Runs of int / str values (worker ids, finish reasons) repeat: cached whole."""
        if safe:
            key = tuple(run)
            hit = self._groups.get(key)
            if hit is not None:
                return hit
        keys = self._keys
        inner = self._nested([(keys[k][0][1], v) for k, v in run])
        if inner:
            e = self._ann_name(group) + inner
            n = len(e)
            e = b"\x22" + (_V[n] if n < 16384 else _vi(n)) + e
        else:
            e = b""
        if safe:
            if len(self._groups) >= self._cap:
                self._groups.clear()
            self._groups[key] = e
        return e

    def _entry(self, k: str, v: object) -> bytes | None:
        """One named DebugAnnotation without interning (a dict entry), without its outer tag."""
        e = self._value(v, k)
        if e is None:
            return None
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

    # -- packets -----------------------------------------------------------------------------
    def _tr(self, track: int) -> bytes:
        b = self._track.get(track)
        if b is None:
            b = self._track[track] = b"\x58" + varint(track)
        return b

    def _head(self, typ: bytes, tr: bytes, name: str, cat: str, args) -> bytes:
        """A TrackEvent's category, annotations, type, name and track, in field-number order
        (as pb2 writes them)."""
        if self.intern:
            c = self._cats.get(cat) or (self._cat(cat) if cat else b"")
            a = self._anns(args) if args else b""
            return c + a + typ + (self._names.get(name) or self._name(name)) + tr
        return self._args_inline(args) + typ + tr + (self._cat(cat) if cat else b"") + self._name(name)

    def _put(self, ts: int, te: bytes, flag: bytes) -> None:
        """Append one framed packet: timestamp, sequence id, the TrackEvent `te`, the interned
        data it defined, sequence flags `flag` (b"" or NEEDS_INCREMENTAL_STATE)."""
        ts -= self.origin
        # _vi inlined for the common 5-byte case (this runs for every packet); `_ts` for the rest
        t = (_C[ts & 16383] + _C[(ts >> 14) & 16383] + _V[ts >> 28]) if 268435456 <= ts < 4398046511104 \
            else _ts(ts, self.origin)
        if self._defs:
            flag = self._defined()
        n = len(te)
        ln = _V[n] if n < 16384 else _vi(n)
        m = len(t) + len(ln) + n + len(flag) + _FIXED
        self.buf += b"".join((b"\x0a", _V[m] if m < 16384 else _vi(m), b"\x40", t, _SEQ_TE, ln, te, flag))

    def _defined(self) -> bytes:
        """The interned_data (12) holding the strings the packet being built defined, and its
        sequence flags (NEEDS_INCREMENTAL_STATE)."""
        defs = self._defs
        defs.sort(key=_field)  # InternedData fields in number order (stable: definition order)
        d = b"".join([x[1] for x in defs])
        defs.clear()
        return b"\x62" + _vi(len(d)) + d + b"\x68\x02"

    def block(self, b) -> None:
        """A layout Block: BEGIN, its children (nested blocks, instants) in order, END."""
        start, end, track, name, cat, args, corr, flows_out, flows_in, children = b
        tr = self._track.get(track) or self._tr(track)
        if self.intern:  # _head inlined
            c = self._cats.get(cat) or (self._cat(cat) if cat else b"")
            a = self._anns(args) if args else b""
            head = b"\x48\x01" + (self._names.get(name) or self._name(name)) + tr
        else:
            c = a = b""
            head = self._head(b"\x48\x01", tr, name, cat, args)
        if flows_out or flows_in or corr:
            head += ((b"".join([b"\xf9\x02" + _pack_q(f) for f in flows_out]) if flows_out else b"")
                     + (b"".join([b"\x81\x03" + _pack_q(f) for f in flows_in]) if flows_in else b"")
                     + (b"\xa0\x03" + (_C[corr & 16383] + _C[corr >> 14 & 16383] + _V[corr >> 28]
                                        if 268435456 <= corr < 4398046511104 else _vi(corr)) if corr else b""))
        # _put inlined (this runs for every slice)
        origin = self.origin
        ts = start - origin
        t = (_C[ts & 16383] + _C[(ts >> 14) & 16383] + _V[ts >> 28]) if 268435456 <= ts < 4398046511104 \
            else _ts(ts, origin)
        flag = self._defined() if self._defs else self._flag
        # the TrackEvent is category, annotations, then the rest: joined once into the packet,
        # not concatenated first (the annotations are most of its bytes)
        n = len(c) + len(a) + len(head)
        ln = _V[n] if n < 16384 else _vi(n)
        m = len(t) + len(ln) + n + len(flag) + _FIXED
        buf = self.buf
        buf += b"".join((b"\x0a", _V[m] if m < 16384 else _vi(m), b"\x40", t, _SEQ_TE, ln, c, a, head, flag))
        self.slices += 1
        for c in children:
            if type(c) is Block:
                self.block(c)
            else:
                self.instant_event(c)
        # a plain END differs from the track's other ENDs only in its timestamp
        tail = self._ends.get(tr)
        if tail is None:
            te = b"\x48\x02" + tr
            tail = self._ends[tr] = _SEQ_TE + _V[len(te)] + te
        ts = end - origin
        t = (_C[ts & 16383] + _C[(ts >> 14) & 16383] + _V[ts >> 28]) if 268435456 <= ts < 4398046511104 \
            else _ts(ts, origin)
        buf += b"".join((b"\x0a", _V[1 + len(t) + len(tail)], b"\x40", t, tail))

    def instant_event(self, i) -> None:
        """A layout Instant."""
        tr = self._track.get(i.track) or self._tr(i.track)
        self._put(i.ts, self._head(b"\x48\x03", tr, i.name, i.cat, i.args), self._flag)
        self.instants += 1

    def series(self, track: int, samples) -> None:
        """A counter track's (ts, value) samples: the packet after the timestamp depends only
        on the value (few distinct ones: requests in flight), so it is cached per value, with
        the framing before the timestamp for a 5-byte timestamp varint (2^28 <= ts < 2^35 ns
        after the origin, the first 9.5 hours) and a 6-byte one."""
        pre = b"\x48\x04" + (self._track.get(track) or self._tr(track)) + b"\xf0\x01"
        tails: dict[int, tuple[bytes, bytes, bytes]] = {}  # value -> (tail, head for 5, head for 6)
        origin = self.origin
        out = []
        ap = out.append
        for ts, v in samples:
            x = tails.get(v)
            if x is None:
                te = pre + (_V[v] if 0 <= v < 16384 else _int64(v))
                tail = _SEQ_TE + _V[len(te)] + te
                x = tails[v] = (tail, b"\x0a" + _V[6 + len(tail)] + b"\x40", b"\x0a" + _V[7 + len(tail)] + b"\x40")
            ts -= origin
            if 268435456 <= ts < 4398046511104:  # _vi inlined, the common case first
                ap((x[1] if ts < 34359738368 else x[2]) + _C[ts & 16383] + _C[(ts >> 14) & 16383] + _V[ts >> 28] + x[0])
                continue
            t = _ts(ts, origin)
            ap(b"\x0a" + _V[1 + len(t) + len(x[0])] + b"\x40" + t + x[0])
        self.buf += b"".join(out)
        self.samples += len(samples)

    def _take(self) -> bytes:
        out = bytes(self.buf)
        self.buf.clear()
        return out

    def begin(self, ts: int, track: int, name: str, cat: str, args, corr: int = 0,
              flows_out=(), flows_in=()) -> bytes:
        te = self._head(b"\x48\x01", self._tr(track), name, cat, args)
        if flows_out:
            te += b"".join(b"\xf9\x02" + _pack_q(f) for f in flows_out)
        if flows_in:
            te += b"".join(b"\x81\x03" + _pack_q(f) for f in flows_in)
        if corr:
            te += b"\xa0\x03" + _vi(corr)
        self._put(ts, te, self._flag)
        return self._take()

    def end(self, ts: int, track: int, flows_in=()) -> bytes:
        te = b"\x48\x02" + self._tr(track)
        if flows_in:
            te += b"".join(b"\x81\x03" + _pack_q(f) for f in flows_in)
        self._put(ts, te, b"")
        return self._take()

    def instant(self, ts: int, track: int, name: str, cat: str, args) -> bytes:
        self._put(ts, self._head(b"\x48\x03", self._tr(track), name, cat, args), self._flag)
        return self._take()

    def counter(self, ts: int, track: int, value: int) -> bytes:
        self._put(ts, b"\x48\x04" + self._tr(track) + b"\xf0\x01" + _int64(value), b"")
        return self._take()
