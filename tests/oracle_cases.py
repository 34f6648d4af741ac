"""What the slow live-oracle tests share: finding `python -m dynamo.replay` (ai-dynamo 1.4.2) or
the long-lived ai-dynamo 1.6.1 oracle (`oracle16`), or skipping; the loop over stored cases, and
the report comparison."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from fuzz_oracle16 import Oracle, oracle16_python  # noqa: E402
from parity_replay import compare_exact, oracle_command, oracle_python  # noqa: E402


ORACLE16_MISSING = "ai-dynamo 1.6.1 oracle not installed (TRACE_PIPE_ORACLE16_PYTHON or /work/oracle16)"


def oracle16_or_skip() -> str:
    """The 1.6.1 oracle's Python (its driver, ../shared/tools/dynamo16_replay.py, present too);
    skips the calling test when either is missing."""
    if oracle_command("1.6") is None:
        pytest.skip(ORACLE16_MISSING)
    return oracle16_python()


@contextmanager
def oracle16() -> Iterator[Oracle]:
    """The ai-dynamo 1.6.1 oracle, one process for the whole test, closed after it; skips the
    calling test when it is not installed."""
    oracle = Oracle(oracle16_or_skip())
    try:
        yield oracle
    finally:
        oracle.close()


def oracle_or_skip() -> str:
    """The oracle's Python; skips the calling test when it is not installed."""
    py = oracle_python()
    if py is None:
        pytest.skip("ai-dynamo 1.4.2 oracle not installed (TRACE_PIPE_ORACLE_PYTHON or /work/oracle)")
    return py


def each_case(tmp_path: Path, cases: dict) -> Iterator[tuple[str, object, Path, str]]:
    """(name, case, its own directory, the oracle's Python) per case in name order."""
    py = oracle_or_skip()
    for name, case in sorted(cases.items()):
        d = tmp_path / name
        d.mkdir()
        yield name, case, d, py


def assert_report(name: str, ours: dict, theirs: dict, stored: dict) -> None:
    """Our report is the oracle's (every key parity_replay compares), and the oracle still gives
    the stored constants (its means can differ in the last bit between runs: summation order)."""
    assert not compare_exact(ours, theirs, tol=1e-12, abs_tol=1e-12), name
    for k, v in stored.items():
        assert theirs[k] == pytest.approx(v, rel=1e-12, abs=1e-12), (name, k)
