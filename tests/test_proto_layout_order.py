"""The layout's shortcuts give what their plain definitions give: lane packing (the lowest free
lane, with a one-heap-operation path when exactly one lane frees), a request's children in
(time, kind, index) order (a one-mark path without sorting), placements and groups in first-start
order."""

from __future__ import annotations

import random

import pytest

from trace_pipe.proto import Mark, Placement, RequestSpan, Slice, Timeline
from trace_pipe.proto.layout import Block, Instant, Layout
from trace_pipe.proto.tracks import pack_lanes


def lowest_free_lane(intervals):
    """The definition: each item takes the lowest lane whose items all ended at or before its start."""
    last_end: list[int] = []
    out = []
    for start, end in intervals:
        lane = next((k for k, e in enumerate(last_end) if e <= start), len(last_end))
        if lane == len(last_end):
            last_end.append(end)
        else:
            last_end[lane] = end
        out.append(lane)
    return out, len(last_end)


@pytest.mark.parametrize("seed", range(4))
def test_pack_lanes_is_the_lowest_free_lane(seed):
    rnd = random.Random(seed)
    for _ in range(300):
        t, iv = 0, []
        for _ in range(rnd.randint(0, 80)):
            t += rnd.choice([0, 0, 1, 2, 5])
            iv.append((t, t + rnd.choice([0, 1, 2, 3, 10, 40])))
        assert pack_lanes(iv) == lowest_free_lane(iv), iv


def _stage(name, s, e):
    return Slice(name, "dynamo.llm.stage", s, e, (("n", name),))


@pytest.mark.parametrize("mark_at", [0, 5, 10, 15, 30, 40, 99])
def test_children_by_time_a_mark_before_a_stage_starting_with_it(mark_at):
    stages = (_stage("wait", 0, 10), _stage("prefill", 10, 30), _stage("decode", 30, 100))
    r = RequestSpan("r", "g", "c", Slice("LLM request: m", "dynamo.llm", 0, 100), stages=stages,
                    marks=(Mark("first token", "dynamo.llm.marker", mark_at),))
    (req,) = [e for e in Layout([Timeline("Recorded", [r])]).stream() if type(e) is Block]
    got = [(c.name, c.start if type(c) is Block else c.ts) for c in req.children]
    items = sorted([(s.start_ns, 1, n, s.name) for n, s in enumerate(stages)] + [(mark_at, 0, 0, "first token")])
    assert got == [(name, t) for t, _, _, name in items]
    assert [type(c) for c in req.children].count(Instant) == 1


def test_children_of_unordered_stages_and_several_marks_are_sorted():
    stages = (_stage("b", 20, 30), _stage("a", 0, 10), _stage("c", 20, 25))
    marks = (Mark("m2", "x", 20), Mark("m1", "x", 20), Mark("m0", "x", 5))
    r = RequestSpan("r", "g", "c", Slice("LLM request: m", "dynamo.llm", 0, 100), stages=stages, marks=marks)
    (req,) = [e for e in Layout([Timeline("Recorded", [r])]).stream() if type(e) is Block]
    assert [c.name for c in req.children] == ["a", "m0", "m2", "m1", "b", "c"]


def test_placements_in_start_order_ties_by_write_order_then_worker():
    def req(key, start, workers):
        return RequestSpan(key, "g", "c", Slice("LLM request: m", "dynamo.llm", start, start + 10),
                           placements=tuple(Placement(f"worker {w}", (w, -1), Slice(f"on {w}", "trace_pipe.worker",
                                                                                        start, start + 10))
                                            for w in workers))
    # b and a start together (a is written first: key order); each ran on two workers
    tl = Timeline("Recorded", [req("b", 0, (3, 1)), req("a", 0, (2, 1)), req("c", -5, (1,))])
    events = [e for e in Layout([tl]).stream() if type(e) is Block and e.cat == "trace_pipe.worker"]
    assert [(e.start, e.name, e.corr) for e in events] == [
        (-5, "on 1", events[0].corr), (0, "on 1", events[1].corr), (0, "on 2", events[2].corr),
        (0, "on 1", events[3].corr), (0, "on 3", events[4].corr)]
    # within a request, worker order (1 before 2 / 3); across requests, write order (a before b)
    assert events[1].corr == events[2].corr != events[3].corr == events[4].corr
