"""Percentiles, by one rule: the recorded value at sorted index floor((n - 1) p + 0.5).

That is Dynamo's rank rule (nearest rank, ties rounded up: 1.4.2's report, observed notes §7),
which the summary report must keep to stay equal to the oracle; `--compare-json`, the timing
fit's error summary and the fidelity bench use it too, so a "median" means the same everywhere.
On an even count it is the upper of the two middle values (n = 4: index 2), never their mean
and never the lower one. (`report_aisim` keeps its own evaluation of the same rule,
(n - 1) * pct / 100 as Rust's f64 computes it, since 1.5/1.6's reports are pinned to that.)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence


def rank(n: int, p: float) -> int:
    """Index of the `p` percentile (0 <= p <= 1) in a sorted sequence of `n` >= 1 values."""
    return int(math.floor((n - 1) * p + 0.5))


def percentile(sorted_vals: Sequence[float], p: float) -> float:
    """The `p` percentile of values already sorted ascending (non-empty)."""
    return sorted_vals[rank(len(sorted_vals), p)]


def percentiles(vals: Iterable[float], ps: Iterable[float]) -> list[float | None]:
    """Each `p` percentile of `vals` (sorted once); None for each when there are no values."""
    s = sorted(vals)
    return [percentile(s, p) if s else None for p in ps]
