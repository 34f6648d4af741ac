"""`trace-pipe check` catches every mistake of perfetto.md §4.3's table (one deliberately broken
trace per row), framing damage and our own semantic rules; clean traces pass."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb
from typer.testing import CliRunner

import typer

from trace_pipe.cli import check_cmd
from trace_pipe.pipeline.request_graph import Edge
from trace_pipe.proto import RequestSpan, Slice, Timeline, write_timelines
from trace_pipe.proto.check import check_file
from trace_pipe.proto.packets import frame

B, E, I, C = (pb.TrackEvent.TYPE_SLICE_BEGIN, pb.TrackEvent.TYPE_SLICE_END, pb.TrackEvent.TYPE_INSTANT,
              pb.TrackEvent.TYPE_COUNTER)


def desc(uuid, name, parent=0, counter=False, thread=None):
    p = pb.TracePacket()
    d = p.track_descriptor
    d.uuid = uuid
    d.name = name
    if parent:
        d.parent_uuid = parent
    if counter:
        d.counter.unit = pb.CounterDescriptor.UNIT_COUNT
    if thread:
        d.thread.pid, d.thread.tid = thread
    return p


def ev(ts, typ, track=2, name=None, cat=None, seq=1, flows=(), term=(), rid=None, value=None, **pkt):
    p = pb.TracePacket(timestamp=ts, **pkt)
    if seq:
        p.trusted_packet_sequence_id = seq
    te = p.track_event
    te.type = typ
    te.track_uuid = track
    if name is not None:
        te.name = name
    if cat:
        te.categories.append(cat)
    if rid:
        a = te.debug_annotations.add()
        a.name, a.string_value = "request_id", rid
    te.flow_ids.extend(flows)
    te.terminating_flow_ids.extend(term)
    if value is not None:
        te.counter_value = value
    return p


FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "trace_0277.json"  # shipped
BASE = [desc(1, "Recorded"), desc(2, "chain", parent=1), desc(3, "in flight", parent=1, counter=True)]


def write(tmp_path, packets, name="t.pftrace") -> str:
    path = tmp_path / name
    path.write_bytes(b"".join(p if isinstance(p, bytes) else frame(p.SerializeToString()) for p in packets))
    return str(path)


def problems(tmp_path, packets, **kw) -> str:
    rep = check_file(write(tmp_path, packets), **kw)
    assert not rep.ok
    return "\n".join(rep.problems)


def test_clean_hand_built_trace_passes(tmp_path):
    rep = check_file(write(tmp_path, BASE + [
        ev(10, B, name="LLM request: m", cat="dynamo.llm", rid="a", flows=[7]), ev(15, I, name="first token",
                                                                                   cat="dynamo.llm.marker"),
        ev(20, E), ev(20, B, name="LLM request: m", cat="dynamo.llm", rid="b", term=[7]), ev(30, E),
        ev(10, C, track=3, value=1), ev(30, C, track=3, value=0)]))
    assert rep.ok, rep.lines()
    assert (rep.tracks, rep.slices, rep.instants, rep.flows, rep.counter_samples) == (3, 2, 1, 1, 2)


# -- one broken trace per row of perfetto.md §4.3 --------------------------------------------------

def test_event_without_sequence_id(tmp_path):
    assert "without trusted_packet_sequence_id" in problems(tmp_path, BASE + [ev(1, I, name="x", seq=0)])


def test_event_on_undescribed_track(tmp_path):
    assert "never described" in problems(tmp_path, BASE + [ev(1, I, track=99, name="x")])


def test_parent_never_described(tmp_path):
    assert "parent_uuid 42 is never described" in problems(tmp_path, BASE + [desc(5, "orphan", parent=42)])


@pytest.mark.parametrize("again", [desc(2, "chain", parent=3), desc(2, "chain", parent=1, counter=True)])
def test_uuid_redescribed_with_another_parent_or_kind(tmp_path, again):
    assert "described again with another" in problems(tmp_path, BASE + [again])


def test_thread_track_with_parent(tmp_path):
    assert "has a parent_uuid" in problems(tmp_path, BASE + [desc(5, "t", parent=1, thread=(1, 2))])


def test_partially_overlapping_slices_on_one_track(tmp_path):
    # intended A=[10,30], B=[20,40] on one track: replay gives [10,40] with [20,30] inside
    pk = BASE + [ev(10, B, name="LLM request: m", cat="dynamo.llm", rid="a"),
                 ev(20, B, name="LLM request: m", cat="dynamo.llm", rid="b"), ev(30, E), ev(40, E)]
    assert "nested inside" in problems(tmp_path, pk)
    assert "differ from the intended" in problems(tmp_path, pk, expect={2: [(10, 30), (20, 40)]})


def test_end_with_a_name(tmp_path):
    pk = BASE + [ev(10, B, name="x"), ev(20, E, name="x")]
    assert "carries a name" in problems(tmp_path, pk)


def test_unmatched_end(tmp_path):
    assert "with no open slice" in problems(tmp_path, BASE + [ev(10, E)])


def test_begin_never_ended(tmp_path):
    assert "never end" in problems(tmp_path, BASE + [ev(10, B, name="x")])


def test_begin_written_before_end_at_same_ts(tmp_path):
    # A=[10,20], B=[20,30]: B's BEGIN@20 is written before A's END@20, so B nests in A
    pk = BASE + [ev(10, B, name="LLM request: m", cat="dynamo.llm", rid="a"),
                 ev(20, B, name="LLM request: m", cat="dynamo.llm", rid="b"), ev(20, E), ev(30, E)]
    assert "nested inside" in problems(tmp_path, pk)
    assert "differ from the intended" in problems(tmp_path, pk, expect={2: [(10, 20), (20, 30)]})


def test_nesting_too_deep(tmp_path):
    pk = BASE + [ev(i, B, name="x") for i in range(514)] + [ev(1000 + i, E) for i in range(514)]
    assert "deeper than 512" in problems(tmp_path, pk)


def test_counter_without_value(tmp_path):
    assert "without a value" in problems(tmp_path, BASE + [ev(1, C, track=3)])


def test_counter_sample_on_slice_track(tmp_path):
    assert "COUNTER event(s) on a slice track" in problems(tmp_path, BASE + [ev(1, C, track=2, value=1)])


def test_slice_on_counter_track(tmp_path):
    assert "is a counter track" in problems(tmp_path, BASE + [ev(1, I, track=3, name="x")])


def test_timestamp_at_or_above_2_63(tmp_path):
    assert "2^63" in problems(tmp_path, BASE + [ev(1 << 63, I, name="x")])


def test_flow_source_read_after_its_terminator(tmp_path):
    # source on A's END at 20; B's BEGIN@20 (terminator) is written first
    pk = BASE + [desc(4, "other", parent=1), ev(10, B, name="a"), ev(20, B, track=4, name="b", term=[5]),
                 ev(20, E, flows=[5]), ev(30, E, track=4)]
    got = problems(tmp_path, pk)
    assert "flow source on an END event" in got and "read before its source" in got
    # a source at a later time than its terminator
    pk = BASE + [desc(4, "other", parent=1), ev(10, B, name="a", term=[6]), ev(20, E),
                 ev(30, B, track=4, name="b", flows=[6]), ev(40, E, track=4)]
    assert "read before its source" in problems(tmp_path, pk)


def test_flow_id_used_once_or_reused(tmp_path):
    assert "source without a terminator" in problems(tmp_path, BASE + [ev(10, I, name="a", flows=[9])])
    pk = BASE + [ev(10, I, name="a", flows=[9]), ev(11, I, name="b", flows=[9]), ev(12, I, name="c", term=[9])]
    assert "2 sources" in problems(tmp_path, pk)
    # reused across two timelines
    pk = [desc(1, "Recorded"), desc(2, "chain", 1), desc(10, "Simulated"), desc(11, "chain", 10),
          ev(10, I, name="a", flows=[9]), ev(11, I, name="b", term=[9]),
          ev(10, I, track=11, name="a", flows=[9]), ev(11, I, track=11, name="b", term=[9])]
    assert "2 sources" in problems(tmp_path, pk)


def test_interned_iid_zero(tmp_path):
    p = ev(10, I, sequence_flags=3)
    p.track_event.name_iid = 0
    assert "name_iid 0" in problems(tmp_path, BASE + [p])


def test_interning_without_sequence_flags(tmp_path):
    p = ev(10, I)
    p.track_event.name_iid = 1
    p.interned_data.event_names.add(iid=1, name="x")
    got = problems(tmp_path, BASE + [p])
    assert "without SEQ_NEEDS_INCREMENTAL_STATE" in got


def test_needs_incremental_state_but_never_cleared(tmp_path):
    p = ev(10, I, sequence_flags=2)
    p.track_event.name_iid = 1
    p.interned_data.event_names.add(iid=1, name="x")
    assert "SEQ_INCREMENTAL_STATE_CLEARED" in problems(tmp_path, BASE + [p])


def test_needs_incremental_state_without_iids_but_never_cleared(tmp_path):
    # trace processor drops any packet flagged NEEDS on a never-cleared sequence, iids or not
    p = ev(10, I, name="x", sequence_flags=2)
    assert "SEQ_NEEDS_INCREMENTAL_STATE on sequence 1 before any packet with SEQ_INCREMENTAL_STATE_CLEARED" in problems(
        tmp_path, BASE + [p])
    q = ev(10, I, name="x", sequence_flags=3)
    assert check_file(write(tmp_path, BASE + [q])).ok


def test_interned_name_used_before_definition_or_redefined(tmp_path):
    p = ev(10, I, sequence_flags=3)
    p.track_event.name_iid = 4
    assert "not defined before use" in problems(tmp_path, BASE + [p])
    a = ev(10, I, sequence_flags=3)
    a.track_event.name_iid = 1
    a.interned_data.event_names.add(iid=1, name="x")
    b = ev(11, I, sequence_flags=2)
    b.track_event.name_iid = 1
    b.interned_data.event_names.add(iid=1, name="y")
    assert "redefined" in problems(tmp_path, BASE + [a, b])


# -- framing, descriptors, our own rules -----------------------------------------------------------

def test_strings_that_are_not_utf8_are_problems_not_crashes(tmp_path):
    # proto2 string fields decode invalid UTF-8 as bytes: a track name and an event name here
    bad = frame(b"\xe2\x03\x05\x08\x05\x12\x01\xff") + frame(b"\x40\x01\x50\x01\x5a\x08\x48\x03\x58\x05\xba\x01\x01\xff")
    out = problems(tmp_path, [bad])
    assert "packet 0: track name b'\\xff' is not valid UTF-8" in out
    assert "packet 1: event name b'\\xff' is not valid UTF-8" in out


def test_random_damage_never_raises(tmp_path):
    import random

    from trace_pipe.pipeline import agentic_v1, readers
    from trace_pipe.proto import recorded_timeline

    trace = readers.read_trace([str(FIXTURE)])
    path = tmp_path / "good.pftrace"
    write_timelines([recorded_timeline(trace, agentic_v1.derive(trace).edges)], str(path))
    data = path.read_bytes()
    assert check_file(str(path)).ok
    rng = random.Random(7)
    bad = tmp_path / "bad.pftrace"
    found = 0
    for _ in range(150):
        b = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        bad.write_bytes(bytes(b))
        found += not check_file(str(bad)).ok  # a report, whatever the bytes (never an exception)
    assert found > 100  # most random damage is caught

def test_framing_damage(tmp_path):
    good = frame(BASE[0].SerializeToString())
    assert "empty file" in problems(tmp_path, [b""])
    assert "is not Trace.packet" in problems(tmp_path, [good, b"\x12\x00"])
    assert "runs past the end" in problems(tmp_path, [good, good[:-2]])
    assert "ends inside a packet length" in problems(tmp_path, [good, b"\x0a\x80"])
    assert "looks like JSON" in problems(tmp_path, [b'{"traceEvents":[]}'])
    gz = tmp_path / "cut.pftrace.gz"
    write_timelines([_timeline("Recorded")], gz)
    gz.write_bytes(gz.read_bytes()[:-12])
    assert "cannot read" in "\n".join(check_file(gz).problems)


def test_descriptor_after_first_use_and_same_named_roots(tmp_path):
    assert "described after its first event" in problems(
        tmp_path, [desc(1, "Recorded"), ev(1, I, name="x"), desc(2, "chain", 1)])
    assert "root tracks are named" in problems(tmp_path, BASE + [desc(9, "Recorded")])
    assert "the UI merges them" in problems(
        tmp_path, BASE + [desc(5, "g", 1), desc(6, "g", 1), desc(7, "x", 5), desc(8, "x", 6)])


def _counter(ts, v):
    p = ev(ts, C, track=3)
    p.track_event.double_counter_value = v
    return p


@pytest.mark.parametrize("v", [math.nan, math.inf, -math.inf])
def test_counter_value_must_be_finite(tmp_path, v):
    assert f"counter value {v} is not finite" in problems(tmp_path, BASE + [_counter(1, v), ev(5, C, track=3, value=0)])


def test_event_without_timestamp_or_type(tmp_path):
    p = ev(1, I, name="x")
    p.ClearField("timestamp")
    assert "TrackEvent without a timestamp" in problems(tmp_path, BASE + [p])
    p = ev(1, I, name="x")
    p.track_event.type = pb.TrackEvent.TYPE_UNSPECIFIED
    assert "TrackEvent type 0 is not BEGIN/END/INSTANT/COUNTER" in problems(tmp_path, BASE + [p])


def test_descriptor_rules_of_4_4(tmp_path):
    """uuid 0 with a parent, a track without a name, a parent cycle, a chain 100 deep."""
    assert "descriptor with uuid 0" in problems(tmp_path, BASE + [desc(0, "zero", parent=1)])
    assert "track 6: no name" in problems(tmp_path, BASE + [desc(6, "", parent=1)])
    cyc = problems(tmp_path, [desc(1, "Recorded", parent=5), desc(5, "x", parent=1)])
    assert "track 1 ('Recorded'): parent links form a cycle" in cyc and "track 5 ('x')" in cyc
    deep = [desc(1, "R")] + [desc(i + 2, f"t{i}", parent=i + 1) for i in range(101)]
    assert "track 101 ('t99'): parent chain is 100 or more deep" in problems(tmp_path, deep)
    ok = [desc(1, "R")] + [desc(i + 2, f"t{i}", parent=i + 1) for i in range(98)]
    assert check_file(write(tmp_path, ok)).ok


def test_flow_id_rules_of_4_4(tmp_path):
    both = problems(tmp_path, BASE + [ev(10, B, name="a", flows=[7], term=[7]), ev(20, E)])
    assert "flow id(s) [7] both start and terminate on one event" in both
    on_end = problems(tmp_path, BASE + [ev(10, B, name="a"), ev(20, E, flows=[7]), ev(30, I, name="b", term=[7])])
    assert "flow source on an END event" in on_end


def test_counter_must_close_at_zero_and_have_a_unit(tmp_path):
    assert "does not close at 0" in problems(tmp_path, BASE + [ev(1, C, track=3, value=2)])
    p = desc(4, "in flight", parent=1)
    p.track_descriptor.counter.SetInParent()
    assert "no unit" in problems(tmp_path, BASE + [p])


def test_stage_outside_its_request_and_request_without_id(tmp_path):
    pk = BASE + [ev(10, B, name="prefill", cat="dynamo.llm.stage"), ev(20, E)]
    assert "not inside its request" in problems(tmp_path, pk)
    pk = BASE + [ev(10, B, name="LLM request: m", cat="dynamo.llm"), ev(20, E)]
    assert "no request_id" in problems(tmp_path, pk)
    pk = BASE + [ev(10, B, name="LLM request: m", cat="dynamo.llm", rid="a"),
                 ev(10, B, name="decode", cat="dynamo.llm.stage"), ev(12, E),
                 ev(12, B, name="prefill", cat="dynamo.llm.stage"), ev(14, E), ev(20, E)]
    assert "out of order" in problems(tmp_path, pk)


def _timeline(name: str, starts=(0, 100)) -> Timeline:
    reqs = [RequestSpan(key=f"r{i}", group="session: s", chain="s",
                        slice=Slice("LLM request: m", "dynamo.llm", t, t + 50, (("request_id", f"r{i}"),)))
            for i, t in enumerate(starts)]
    return Timeline(name, reqs, links=[Edge("r0", "r1", "sequence")])


@pytest.mark.tp_unchecked  # inconsistent with its own declarations on purpose
def test_declared_flow_count_must_match(tmp_path):
    path = tmp_path / "two.pftrace"
    write_timelines([_timeline("Recorded")], path)
    assert check_file(path).ok
    # drop the flow terminator: the file now has fewer flows than the writer declared
    data = path.read_bytes()
    packets = []
    i = 0
    while i < len(data):
        n = shift = 0
        j = i + 1
        while True:
            n |= (data[j] & 0x7F) << shift
            shift += 7
            j += 1
            if not data[j - 1] & 0x80:
                break
        p = pb.TracePacket.FromString(data[j:j + n])
        if p.HasField("track_event"):
            del p.track_event.terminating_flow_ids[:]
        packets.append(p)
        i = j + n
    got = problems(tmp_path, packets)
    assert "source without a terminator" in got and "0 flows drawn, the writer declared 1" in got


def test_gzipped_trace_and_cli(tmp_path):
    path = tmp_path / "t.pftrace.gz"
    write_timelines([_timeline("Recorded"), _timeline("Simulated", starts=(5, 105))], path)
    with open(path, "rb") as f:
        assert f.read(2) == b"\x1f\x8b"
    rep = check_file(path)
    assert rep.ok and rep.flows == 2 and rep.slices == 4
    app = typer.Typer()
    app.callback()(lambda: None)
    check_cmd.register(app)
    res = CliRunner().invoke(app, ["check", str(path)])
    assert res.exit_code == 0 and "4 slices" in res.output and "2 flows" in res.output and "OK" in res.output
    bad = write(tmp_path, BASE + [ev(10, E)], "bad.pftrace")
    res = CliRunner().invoke(app, ["check", bad])
    assert res.exit_code == 1 and "with no open slice" in res.output
    res = CliRunner().invoke(app, ["check", str(tmp_path / "missing.pftrace")])
    assert res.exit_code == 2 and "no such file" in res.output
    res = CliRunner().invoke(app, ["check", str(tmp_path)])
    assert res.exit_code == 2 and f"{tmp_path}: is a directory" in res.output
    # a binary that cannot be one is a usage error (exit 2), not a problem of the trace (exit 1)
    res = CliRunner().invoke(app, ["check", str(path), "--tp-bin", str(tmp_path / "no-tp")])
    assert res.exit_code == 2 and f"trace processor binary not found: {tmp_path / 'no-tp'}" in res.output
    res = CliRunner().invoke(app, ["check", str(path), "--tp-bin", str(path)])
    assert res.exit_code == 2 and "is not an executable file" in res.output
    res = CliRunner().invoke(app, ["check", str(path)], env={"TRACE_PIPE_TP_BIN": ""})  # empty: not given
    assert res.exit_code == 0 and "OK" in res.output


@pytest.mark.tp_unchecked  # inconsistent with its own declarations on purpose
def test_second_timeline_must_match_the_first(tmp_path):
    path = tmp_path / "t.pftrace"
    other = _timeline("Simulated")
    other = Timeline("Simulated", [RequestSpan(key=r.key, group="session: s", chain="different", slice=r.slice)
                                   for r in other.requests], links=other.links)
    write_timelines([_timeline("Recorded"), other], path)
    rep = check_file(path)
    assert any("same track names and ranks" in p for p in rep.problems), rep.lines()
