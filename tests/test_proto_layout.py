"""The layout model: lanes, ordering, counters, flows in awkward recorded orders, and a second
`Simulated` root beside `Recorded` with the same subtree."""

from __future__ import annotations

import orjson

from trace_pipe.pipeline.request_graph import Edge
from trace_pipe.proto import (ChainItem, Mark, Placement, RequestSpan, Slice, Timeline, write_timelines,
                              write_timelines_json)
from trace_pipe.proto.check import check_file
from trace_pipe.proto.decode import decode_file
from trace_pipe.proto.layout import Layout, correlation_id, in_flight
from trace_pipe.proto.tracks import flow_base, pack_lanes, track_base

T0 = 1_777_312_800_000_000_000


def span(key, start, end, chain="c", group="session: g", stages=(), marks=(), placements=()):
    return RequestSpan(key=key, group=group, chain=chain,
                       slice=Slice("LLM request: m", "dynamo.llm", T0 + start, T0 + end, (("request_id", key),)),
                       stages=stages, marks=marks, placements=placements)


def written(tmp_path, timelines, name="t.pftrace"):
    path = tmp_path / name
    stats = write_timelines(timelines, path)
    rep = check_file(path, expect=Layout(timelines).intended_intervals())
    assert rep.ok, rep.lines()
    return stats, rep, decode_file(str(path))


def test_pack_lanes_reuses_the_lowest_free_lane():
    lanes, n = pack_lanes([(0, 10), (5, 15), (10, 20), (12, 13), (15, 30), (20, 20)])
    assert (lanes, n) == ([0, 1, 0, 2, 1, 0], 3)


def test_in_flight_counts_ends_before_starts():
    assert in_flight([(0, 10), (10, 20), (5, 20)]) == [(0, 1), (5, 2), (20, 0)]
    assert in_flight([(3, 3)]) == [(3, 0)]
    assert in_flight([]) == []


def test_groups_and_chains_follow_first_start_with_explicit_ranks(tmp_path):
    tl = Timeline("Recorded", [span("b1", 50, 60, chain="b", group="session: late"),
                               span("a1", 0, 10, chain="a2", group="session: early"),
                               span("a0", 5, 10, chain="a1", group="session: early")])
    _, _, d = written(tmp_path, [tl])
    root = next(t for t in d.tracks.values() if t.parent == 0)
    assert root.name == "Recorded" and root.child_ordering == 3
    top = sorted((t.rank, t.name) for t in d.tracks.values() if t.parent == root.uuid)
    assert [n for _, n in top] == ["in flight", "session: early", "session: late"]
    early = next(t for t in d.tracks.values() if t.name == "session: early")
    chains = sorted((t.rank, t.name) for t in d.tracks.values() if t.parent == early.uuid)
    assert [n for _, n in chains] == ["a2", "a1"]


def test_concurrent_requests_never_share_a_track(tmp_path):
    reqs = [span(f"r{i}", i * 10, i * 10 + 35) for i in range(6)]  # up to 4 overlap
    _, rep, d = written(tmp_path, [Timeline("Recorded", reqs)])
    lanes = [t for t in d.tracks.values() if t.name == "c"]
    assert len(lanes) == 4 and len({t.rank for t in lanes}) == 1
    for t in lanes:
        mine = sorted((s.ts, s.ts + s.dur) for s in d.slices if s.track == t.uuid)
        assert all(a[1] <= b[0] for a, b in zip(mine, mine[1:]))
    counts = [s.value for s in d.samples]
    assert max(counts) == 4 and counts[-1] == 0


def test_back_to_back_requests_share_a_lane_end_before_begin(tmp_path):
    reqs = [span("a", 0, 10), span("b", 10, 20), span("c", 20, 20), span("d", 20, 30)]
    _, _, d = written(tmp_path, [Timeline("Recorded", reqs, links=[Edge("a", "b", "sequence"),
                                                                  Edge("b", "d", "sequence")])])
    assert len([t for t in d.tracks.values() if t.name == "c"]) == 1
    assert all(s.depth == 0 for s in d.slices)


def test_flow_between_requests_that_start_together(tmp_path):
    # by (start, end, key) "a" comes first, but "a" waits for "z": z must be written first
    reqs = [span("a", 0, 0, chain="x"), span("z", 0, 10, chain="y")]
    stats, rep, d = written(tmp_path, [Timeline("Recorded", reqs, links=[Edge("z", "a", "spawn")])])
    assert rep.flows == 1 and [(s.args["request_id"], t.args["request_id"]) for s, t in d.flows()] == [("z", "a")]


def test_dependent_recorded_before_its_dependency(tmp_path):
    # b and c wait for a, but were recorded starting first: trace processor orients a flow by its
    # slices' start times, so drawn, the arrows would point from b and c back to a. Not drawn,
    # counted by reason, and the reasons travel in the file for `check`'s note.
    reqs = [span("a", 20, 40), span("b", 0, 30), span("c", 0, 10), span("d", 50, 60)]
    links = [Edge("a", "b", "join"), Edge("a", "c", "join"), Edge("a", "nope", "join"), Edge("a", "d", "sequence")]
    stats, rep, d = written(tmp_path, [Timeline("Recorded", reqs, links=links)])
    assert stats.flows == 1 and rep.flows == 1
    (src, dst), = d.flows()
    assert (src.args["request_id"], dst.args["request_id"]) == ("a", "d") and not dst.end_terminating_flow_ids
    assert stats.edges_not_drawn == {
        "the dependent starts before its dependency (recorded times contradict the edge)": 2,
        "edge names a request that is not in the timeline": 1}
    assert rep.notes == ["timeline 'Recorded': 3 of 4 dependency edges have no flow (1 edge names a request that "
                         "is not in the timeline; 2 the dependent starts before its dependency (recorded times "
                         "contradict the edge))"]


def test_flow_terminator_on_an_end_event_is_a_problem(tmp_path):
    from test_proto_check import BASE, E, B, ev, problems

    a, b = ev(10, B, name="a", flows=[7]), ev(20, E, term=[7])
    assert "flow terminator on an END event" in problems(tmp_path, BASE + [a, b])


def test_stages_marks_placements_and_tools(tmp_path):
    r = span("r", 0, 100, stages=(Slice("prefill", "dynamo.llm.stage", T0 + 0, T0 + 30),
                                  Slice("decode", "dynamo.llm.stage", T0 + 30, T0 + 100)),
             marks=(Mark("first token", "dynamo.llm.marker", T0 + 30),),
             placements=(Placement("worker 10", (10, -1), Slice("prefill", "trace_pipe.worker", T0, T0 + 30)),
                         Placement("worker 2", (2, -1), Slice("decode", "trace_pipe.worker", T0 + 30, T0 + 100))))
    tools = [ChainItem("session: g", "c", slice=Slice("Tool: bash", "dynamo.agent.tool", T0 + 100, T0 + 150)),
             ChainItem("session: g", "c", mark=Mark("Tool start: x", "dynamo.agent.tool.marker", T0 + 160))]
    stats, rep, d = written(tmp_path, [Timeline("Recorded", [r], tools)])
    first_token = d.instants[0]
    decode = next(s for s in d.slices if s.name == "decode" and s.category == "dynamo.llm.stage")
    assert first_token.parent.name == "LLM request: m" and first_token.ts == decode.ts  # written before decode
    workers = next(t for t in d.tracks.values() if t.name == "workers")
    order = sorted((t.rank, t.name) for t in d.tracks.values() if t.parent == workers.uuid)
    assert [n for _, n in order] == ["worker 2", "worker 10"]
    assert {d.tracks[s.track].name for s in d.slices if s.category == "dynamo.agent.tool"} == {"c tools"}
    assert (rep.slices, rep.instants) == (6, 2)


def test_simulated_root_beside_recorded(tmp_path):
    rec = Timeline("Recorded", [span("a", 0, 10), span("b", 20, 30), span("x", 5, 8, chain="x")],
                   links=[Edge("a", "b", "sequence")])
    # simulated chain "x" starts first this time; it keeps the recorded rank anyway
    sim = Timeline("Simulated", [span("a", 3, 12), span("b", 15, 25), span("x", 0, 2, chain="x")],
                   links=[Edge("a", "b", "sequence")])
    stats, rep, d = written(tmp_path, [rec, sim])
    assert rep.flows == 2
    roots = {t.uuid: t.name for t in d.tracks.values() if t.parent == 0}
    assert sorted(roots.values()) == ["Recorded", "Simulated"]
    by_root = {}
    for s in d.slices:
        by_root.setdefault(d.track_path(s.track)[0], []).append(s)
    rec_uuids = {s.track for s in by_root["Recorded"]}
    sim_uuids = {s.track for s in by_root["Simulated"]}
    assert all(track_base(0) < u < track_base(1) for u in rec_uuids)
    assert all(track_base(1) < u < track_base(2) for u in sim_uuids)
    fids = sorted(f for s in d.slices for f in s.flow_ids)
    assert flow_base(0) < fids[0] < flow_base(1) < fids[1] < flow_base(2)
    # the same request has the same colour in both timelines
    assert {s.correlation_id for s in d.slices if s.args["request_id"] == "a"} == {correlation_id("a")}
    # the JSON side prefixes processes with the root
    js = tmp_path / "t.json"
    write_timelines_json([rec, sim], js)
    names = {e["args"]["name"] for e in orjson.loads(js.read_bytes())["traceEvents"] if e["name"] == "process_name"}
    assert {"Recorded: session: g", "Simulated: session: g"} <= names


def test_same_named_roots_are_refused():
    import pytest

    with pytest.raises(ValueError, match="must differ"):
        Layout([Timeline("Recorded", []), Timeline("Recorded", [])])


def test_same_chain_label_in_two_groups_gets_two_tracks(tmp_path):
    reqs = [span("a", 0, 10, chain="main", group="play: p1"), span("b", 0, 10, chain="main", group="play: p2")]
    _, _, d = written(tmp_path, [Timeline("Recorded", reqs)])
    paths = sorted(tuple(d.track_path(s.track)) for s in d.slices)
    assert paths == [("Recorded", "play: p1", "main"), ("Recorded", "play: p2", "main")]
