"""The per-chain tool-span index (tool_wait_ms / tool_events, §4.4) against the plain definition."""

from hypothesis import given
from hypothesis import strategies as st

from trace_pipe.pipeline.tool_gaps import ChainTools

_span = st.tuples(st.integers(0, 60), st.integers(-5, 80)).map(lambda p: (p[0], p[0] + p[1]))


@given(st.lists(_span, max_size=30), st.lists(st.tuples(st.integers(-10, 150), st.integers(0, 40)), max_size=8))
def test_overlapping_equals_plain_scan(spans, queries):
    tagged = [(s, e, k) for k, (s, e) in enumerate(spans)]  # (the third item stands for the ToolEvent)
    index = ChainTools(list(tagged))
    for lo, width in queries:
        hi = lo + width
        want = sorted(((s, e, k) for s, e, k in tagged if hi > lo and e > s and s < hi and e > lo),
                      key=lambda t: (t[0], t[1]))
        got = index.overlapping(lo, hi)
        assert [t[:2] for t in got] == [t[:2] for t in want]
        assert sorted(t[2] for t in got) == sorted(t[2] for t in want)


def test_long_pause_does_not_hide_later_spans():
    # one span far longer than the rest (a user pause) must not widen every query, nor be missed
    spans = [(0, 10_000, "pause")] + [(100 * k, 100 * k + 50, k) for k in range(1, 40)]
    index = ChainTools(list(spans))
    assert [t[2] for t in index.overlapping(1_020, 1_210)] == ["pause", 10, 11, 12]
    assert [t[2] for t in index.overlapping(10_001, 20_000)] == []
