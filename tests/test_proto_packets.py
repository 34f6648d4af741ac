"""The hand-encoded TracePackets equal what the perfetto package's pb2 classes build, byte for
byte (perfetto.md §3: decode the hand-made bytes and compare with the pb2-built packet)."""

from __future__ import annotations

import pytest
from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb

from trace_pipe.proto.packets import Encoder, _vi, frame, varint
from trace_pipe.proto.spans import INTERNED_ARGS, REPEATED_ARGS


def _Enc(**kw) -> Encoder:
    """The encoder as the writer makes it: interning the timelines' low-cardinality values."""
    return Encoder(interned_keys=INTERNED_ARGS, repeated_keys=REPEATED_ARGS, **kw)


def unframe(b: bytes) -> bytes:
    assert b[0] == 0x0A
    n = shift = 0
    i = 1
    while True:
        n |= (b[i] & 0x7F) << shift
        shift += 7
        i += 1
        if not b[i - 1] & 0x80:
            break
    assert len(b) == i + n
    return b[i:]


def annotate(msg, k, v):
    a = msg.debug_annotations.add() if hasattr(msg, "debug_annotations") else msg.dict_entries.add()
    a.name = k
    fill(a, v)


def fill(a, v):
    if isinstance(v, bool):
        a.bool_value = v
    elif isinstance(v, int):
        if v >= 1 << 63:
            a.uint_value = v
        else:
            a.int_value = v
    elif isinstance(v, float):
        a.double_value = v
    elif isinstance(v, str):
        a.string_value = v
    elif isinstance(v, dict):
        for k, x in v.items():
            e = a.dict_entries.add()
            e.name = k
            fill(e, x)
    else:
        for x in v:
            fill(a.array_values.add(), x)


ARGS = (("request_id", "req-1"), ("n", 7), ("big", 1_777_312_800_000), ("neg", -3), ("u64", (1 << 64) - 5),
        ("ms", 12.5), ("flag", True), ("off", False), ("missing", None),
        ("finish_reason_metadata", {"finish_reason": "stop", "tool_calls": [{"id": "c1", "name": "bash"}]}),
        ("ids", ["a", "b"]), ("worker.decode_worker_id", 2), ("worker.decode_dp_rank", 0))


def expected_args(te):
    """What the encoder writes: None dropped, dotted keys grouped into one nested dict."""
    for k, v in ARGS:
        if v is None or k.startswith("worker."):
            continue
        annotate(te, k, v)
    annotate(te, "worker", {"decode_worker_id": 2, "decode_dp_rank": 0})


def test_inline_names_equal_pb2_bytes():
    enc = _Enc(intern=False)
    ts = 1_777_312_800_123_456_789
    got = enc.begin(ts, 1048577, "LLM request: m", "dynamo.llm", ARGS, corr=99, flows_out=(1 << 48 | 1,),
                    flows_in=(5,))
    p = pb.TracePacket(timestamp=ts, trusted_packet_sequence_id=1)
    te = p.track_event
    # field order as pb2 writes it: annotations, type, track, categories, name, flows, correlation
    expected_args(te)
    te.type = pb.TrackEvent.TYPE_SLICE_BEGIN
    te.track_uuid = 1048577
    te.categories.append("dynamo.llm")
    te.name = "LLM request: m"
    te.flow_ids.append(1 << 48 | 1)
    te.terminating_flow_ids.append(5)
    te.correlation_id = 99
    assert got == frame(p.SerializeToString())
    assert pb.TracePacket.FromString(unframe(got)) == p

    end = enc.end(ts + 10, 1048577, flows_in=(7,))
    p = pb.TracePacket(timestamp=ts + 10, trusted_packet_sequence_id=1)
    p.track_event.type = pb.TrackEvent.TYPE_SLICE_END
    p.track_event.track_uuid = 1048577
    p.track_event.terminating_flow_ids.append(7)
    assert end == frame(p.SerializeToString())

    c = enc.counter(ts, 3, 17)
    p = pb.TracePacket(timestamp=ts, trusted_packet_sequence_id=1)
    p.track_event.type = pb.TrackEvent.TYPE_COUNTER
    p.track_event.track_uuid = 3
    p.track_event.counter_value = 17
    assert c == frame(p.SerializeToString())


def test_interned_packets_equal_pb2_bytes():
    enc = _Enc(intern=True, origin_ns=1000)
    assert pb.TracePacket.FromString(unframe(enc.start())).sequence_flags == 3
    first = enc.begin(5000, 9, "prefill", "dynamo.llm.stage", (("model", "m1"), ("n", 3), ("request_id", "r1")))
    p = pb.TracePacket(timestamp=4000, trusted_packet_sequence_id=1, sequence_flags=2)
    te = p.track_event
    te.category_iids.append(1)
    a = te.debug_annotations.add()
    a.name_iid, a.string_value_iid = 1, 1
    a = te.debug_annotations.add()
    a.name_iid, a.int_value = 2, 3
    a = te.debug_annotations.add()
    a.name_iid, a.string_value = 3, "r1"  # first use of an id: inline
    te.type = pb.TrackEvent.TYPE_SLICE_BEGIN
    te.name_iid = 1
    te.track_uuid = 9
    d = p.interned_data
    d.event_categories.add(iid=1, name="dynamo.llm.stage")
    d.event_names.add(iid=1, name="prefill")
    for i, n in enumerate(("model", "n", "request_id"), 1):
        d.debug_annotation_names.add(iid=i, name=n)
    d.debug_annotation_string_values.add(iid=1, str=b"m1")
    assert first == frame(p.SerializeToString())

    # second use: everything by iid; the id gets its definition now
    second = enc.instant(6000, 9, "prefill", "dynamo.llm.stage", (("model", "m1"), ("request_id", "r1")))
    p = pb.TracePacket.FromString(unframe(second))
    assert p.sequence_flags == 2 and p.timestamp == 5000
    assert p.track_event.name_iid == 1 and list(p.track_event.category_iids) == [1]
    assert [(a.name_iid, a.string_value_iid) for a in p.track_event.debug_annotations] == [(1, 1), (3, 2)]
    assert [(e.iid, e.str) for e in p.interned_data.debug_annotation_string_values] == [(2, b"r1")]
    assert not p.interned_data.event_names  # defined once only
    # a third use is a pure reference
    third = pb.TracePacket.FromString(unframe(enc.instant(7000, 9, "prefill", "dynamo.llm.stage",
                                                          (("request_id", "r1"),))))
    assert not third.HasField("interned_data") and third.track_event.debug_annotations[0].string_value_iid == 2


def test_nested_names_are_interned_and_negative_ints_are_twos_complement():
    enc = _Enc(intern=True)
    b = enc.begin(1, 2, "x", "c", (("finish_reason_metadata", {"finish_reason": "stop"}), ("neg", -1),
                                   ("worker.decode_worker_id", 10)))
    p = pb.TracePacket.FromString(unframe(b))
    anns = p.track_event.debug_annotations
    names = {e.iid: e.name for e in p.interned_data.debug_annotation_names}
    assert names[anns[0].name_iid] == "finish_reason_metadata"
    assert names[anns[0].dict_entries[0].name_iid] == "finish_reason"
    assert anns[1].int_value == -1
    assert names[anns[2].name_iid] == "worker" and anns[2].dict_entries[0].int_value == 10


@pytest.mark.parametrize("n", [0, 1, 127, 128, 16383, 16384, (1 << 28) - 1, 1 << 28, (1 << 42) + 5, (1 << 56) + 3,
                               (1 << 64) - 1])
def test_varint_table_matches_loop(n):
    assert _vi(n) == varint(n)
    a = pb.DebugAnnotation(uint_value=n)
    assert a.SerializeToString() == b"\x18" + varint(n)


def test_timestamps_outside_range_are_refused():
    enc = _Enc(origin_ns=100)
    with pytest.raises(ValueError):
        enc.end(99, 1)
    with pytest.raises(ValueError):
        enc.end((1 << 63) + 100, 1)


def _mixed_args(i: int) -> tuple:
    """One argument list shape with values that hit and miss every encoder cache."""
    return (("model", f"m{i % 2}"), ("request_id", f"r{i // 2}"), ("tool_call_id", f"call-{i}"), ("n", i % 3),
            ("big", 1_777_312_800_000 + i), ("neg", -1 - i), ("a_ms", i * 0.5), ("skip", None), ("flag", i % 2 == 0),
            ("worker.prefill_worker_id", i % 2), ("worker.note", None), ("worker.decode_worker_id", 10),
            ("c_ms", 2.5 * i), ("worker.decode_dp_rank", i % 2), ("finish.ratio", i / 7), ("finish.reason", "stop"),
            ("mixed", True if i % 2 else 1),
            ("finish_reason_metadata", {"finish_reason": "tool_calls", "tool_calls": [{"id": f"c{i}", "name": "bash"}],
                                        "empty": {}}), ("ids", [f"a{i % 2}", "b"]))


def _expected(args) -> list:
    """(name, value) pairs as written: None dropped, each run of a dotted prefix one dict."""
    out: list = []
    run = None
    for k, v in args:
        if v is None:
            continue
        if "." in k:
            prefix, sub = k.split(".", 1)
            if run is None or run[0] != prefix:
                run = (prefix, {})
                out.append(run)
            run[1][sub] = v
            continue
        run = None
        out.append((k, {a: b for a, b in v.items() if b != {}} if isinstance(v, dict) else v))
    return out


def test_cached_encodings_decode_to_the_same_values():
    """The encoder's caches (whole (key, value) pairs, float prefixes, dotted runs, ids interned
    from their second use) give the values a fresh encoding gives, packet after packet."""
    enc = _Enc(intern=True)
    names: dict[int, str] = {}
    strings: dict[int, str] = {}

    def value(a):
        if a.dict_entries:
            return {names[e.name_iid]: value(e) for e in a.dict_entries}
        if a.array_values:
            return [value(e) for e in a.array_values]
        for f in ("bool_value", "int_value", "double_value", "string_value"):
            if a.HasField(f):
                return getattr(a, f)
        return strings[a.string_value_iid]

    for i in range(8):
        args = _mixed_args(i)
        p = pb.TracePacket.FromString(unframe(enc.begin(1000 + i, 7, "LLM request: m", "dynamo.llm", args)))
        names.update((e.iid, e.name) for e in p.interned_data.debug_annotation_names)
        strings.update((e.iid, e.str.decode()) for e in p.interned_data.debug_annotation_string_values)
        got = [(names[a.name_iid], value(a)) for a in p.track_event.debug_annotations]
        assert repr(got) == repr(_expected(args)), i  # repr: True and 1 must differ


def _shaped_args(rnd, shapes) -> tuple:
    """An argument list of one of `shapes`: (key, kind) slots, values drawn per kind so that
    they hit and miss every cache (epoch times in and out of the 6-byte range, ids on first and
    later uses, long and non-ASCII strings, nested dicts and lists, bools in dotted runs)."""
    def value(kind):
        if kind == "small":
            return rnd.randint(0, 20)
        if kind == "int":
            return rnd.choice([0, 16383, 16384, (1 << 35) - 1, 1 << 35, 1_777_312_800_000 + rnd.randint(0, 10 ** 6), 1 << 42,
                               -5, (1 << 63) + 7, (1 << 63) - 1])
        if kind == "float":
            return rnd.choice([0.0, -1.5, 1e300, rnd.random() * 1000])
        if kind == "str":
            return rnd.choice(["stop", "tool_calls", "é-ü", "x" * 140, f"r{rnd.randint(0, 40)}"])
        if kind == "bool":
            return rnd.random() < 0.5
        if kind == "maybe":  # the type changes from one list to the next
            return rnd.choice([None, 3, "three", 3.0, True])
        if kind == "dict":
            return {"finish_reason": rnd.choice(["stop", "length"]), "choice.index": rnd.randint(0, 2),
                    "tool_calls": [{"id": f"c{rnd.randint(0, 99)}", "name": rnd.choice(["bash", "read"]),
                                    "args": {"n": rnd.randint(0, 3)}} for _ in range(rnd.randint(0, 2))],
                    "empty": {}, "none": None}
        if kind == "list":
            return [rnd.choice(["a", "b"]) for _ in range(rnd.randint(0, 2))]
        return None

    return tuple((k, value(kind)) for k, kind in rnd.choice(shapes))


class _Reader:
    """Decodes one sequence's packets, keeping its interned names and strings."""

    def __init__(self) -> None:
        self.names: dict[int, str] = {}
        self.strings: dict[int, str] = {}

    def args(self, framed: bytes) -> list:
        p = pb.TracePacket.FromString(unframe(framed))
        self.names.update((e.iid, e.name) for e in p.interned_data.debug_annotation_names)
        self.strings.update((e.iid, e.str.decode()) for e in p.interned_data.debug_annotation_string_values)
        return [(self.names[a.name_iid], self._value(a)) for a in p.track_event.debug_annotations]

    def _value(self, a):
        if a.dict_entries:
            return {self.names[e.name_iid]: self._value(e) for e in a.dict_entries}
        if a.array_values:
            return [self._value(e) for e in a.array_values]
        for f in ("bool_value", "int_value", "uint_value", "double_value", "string_value"):
            if a.HasField(f):
                return getattr(a, f)
        return self.strings[a.string_value_iid]


@pytest.mark.parametrize("small_caches", [False, True])
def test_warm_caches_decode_to_what_a_fresh_encoder_writes(small_caches):
    """Argument lists of recurring shapes whose values hit and miss every cache (and, with tiny
    caches, values forgotten and defined again under new iids): each packet of one long-lived
    encoder decodes to the values a fresh encoder writes for the same list."""
    import random

    rnd = random.Random(7)
    keys = ["model", "status", "request_id", "x_request_id", "tool_call_id", "event_time_unix_ms", "input_tokens",
            "ttft_ms", "flag", "worker.prefill_worker_id", "worker.decode_dp_rank", "worker.note", "finish.reason",
            "finish.count", "finish_reason_metadata", "ids", "odd", "x.y"]
    kinds = ["str", "str", "str", "str", "str", "int", "small", "float", "bool", "small", "small", "maybe", "str",
             "small", "dict", "list", "maybe", "int"]
    shapes = []
    for _ in range(10):
        idx = sorted(rnd.sample(range(len(keys)), rnd.randint(1, len(keys))))
        shapes.append([(keys[i], kinds[i] if rnd.random() < 0.8 else rnd.choice(kinds)) for i in idx])
    warm, seq = _Enc(value_cache=6 if small_caches else None), _Reader()
    for i in range(3000):
        args = _shaped_args(rnd, shapes)
        got = seq.args(warm.begin(1000 + i, 7, "s", "c", args))
        want = _Reader().args(_Enc().begin(1000 + i, 7, "s", "c", args))
        assert repr(got) == repr(want), (i, args)  # repr: True and 1 must differ
    if not small_caches:  # (tiny caches are cleared again and again)
        assert len(warm._pairs_top) + len(warm._groups) >= 6  # the caches were in use
