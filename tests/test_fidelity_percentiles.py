"""One percentile rule (sim/percentiles.py: sorted index floor((n - 1) p + 0.5), Dynamo's) used by
the report, `--compare-json`, the timing fit's error summary and the fidelity bench."""

from __future__ import annotations

import pytest

from trace_pipe.sim import compare, fit, report
from trace_pipe.sim.percentiles import percentile, percentiles, rank


def test_rank_rule_on_odd_and_even_counts():
    assert [rank(5, p) for p in (0.0, 0.5, 0.9, 0.99, 1.0)] == [0, 2, 4, 4, 4]
    # even count: the upper middle value (index 2 of 4), not (n - 1) // 2 = 1, not the mean
    assert rank(4, 0.5) == 2 and percentile([10.0, 20.0, 30.0, 40.0], 0.5) == 30.0
    assert rank(10, 0.9) == 8 and rank(100, 0.99) == 98 and rank(101, 0.99) == 99 and rank(1, 0.99) == 0
    assert percentiles([3.0, 1.0, 2.0, 4.0], (0.5, 0.9, 0.99)) == [3.0, 4.0, 4.0]
    assert percentiles([], (0.5, 0.9)) == [None, None]


def test_every_caller_uses_the_one_rule():
    vals = [4.0, 1.0, 3.0, 2.0]  # even: the old fit median took 2.0
    assert report._exact_stats("x", vals)["median_x_ms"] == 3.0
    assert compare._stat(vals) == {"median": 3.0, "p90": 4.0, "max": 4.0}
    e = fit._errors([1.1, 2.4, 3.9, 5.6], [1.0, 2.0, 3.0, 4.0])  # APEs 10%, 20%, 30%, 40%
    assert e["median_ape"] == pytest.approx(0.3) and e["p90_ape"] == pytest.approx(0.4)
