"""The contract every fuzzer of issue 22 checks, and how each fuzzer runs twice.

Contract: a command given hostile input either succeeds (exit 0, every output written) or refuses
it (exit 2, exactly one line on stderr starting `error`, nothing written); never a traceback,
never a hang (each run is cut at `HANG_S`). Commands run in-process (Typer's CliRunner), so an
example costs milliseconds.

Each fuzzer is one hypothesis test body; `fuzz_twice` makes it a bounded test of the default run
(`QUICK` examples, derandomized, so it is the same run every time) and a long one under `pytest -m fuzz`
(`LONG` examples, random; `TRACE_PIPE_FUZZ_EXAMPLES` overrides). No example database is kept: a
failure prints its minimal input."""

from __future__ import annotations

import os
import signal
import tempfile
import traceback
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from typer.testing import CliRunner

from trace_pipe.cli.main import _register, app

_register()

QUICK = 25
LONG = int(os.environ.get("TRACE_PIPE_FUZZ_EXAMPLES", "2000"))
HANG_S = 30


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang(f"no answer in {HANG_S} s")


def check(args: list[str], out: Path, outputs: list[str], verdicts: tuple[int, ...] = ()) -> int:
    """Run `trace-pipe *args` writing into the empty directory `out`; assert the contract for
    the `outputs` (names in `out`) it promises on success. `verdicts`: other exit codes that are
    an answer, not a refusal (`check` exits 1 when it found problems). Returns the exit code."""
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(HANG_S)
    try:
        res = CliRunner().invoke(app, args)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        tb = "".join(traceback.format_exception(res.exception))
        raise AssertionError(f"traceback (exit {res.exit_code}) for {args!r:.2000}:\n{tb}")
    if res.exit_code in verdicts:
        return res.exit_code
    if res.exit_code == 0:
        missing = [o for o in outputs if not (out / o).exists()]
        assert not missing, f"exit 0 without {missing}: {res.output[-2000:]}"
    else:
        assert res.exit_code == 2, f"exit {res.exit_code}: {res.stderr[-2000:]}"
        lines = res.stderr.split("\n")
        assert len(lines) == 2 and lines[1] == "" and lines[0].startswith("error") and lines[0].isprintable(), \
            f"not one printable error line: {res.stderr[-2000:]!r}"
        left = os.listdir(out)
        assert left == [], f"refused but wrote {left}: {lines[0]}"
    return res.exit_code


def scratch() -> tempfile.TemporaryDirectory:
    """A fresh directory per example (pytest's tmp_path is one per test, not per example)."""
    return tempfile.TemporaryDirectory(prefix="tp-fuzz-")


def fuzz_twice(body, **strategies):
    """(bounded test, long test): `body` given `strategies` (hypothesis keyword strategies)."""
    # no "explain" phase: its line tracing of a replay on a failing example exhausted memory
    common = dict(deadline=None, database=None, print_blob=True,
                  phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                         HealthCheck.filter_too_much])
    quick = settings(max_examples=QUICK, derandomize=True, **common)(given(**strategies)(body))
    long = pytest.mark.fuzz(settings(max_examples=LONG, **common)(given(**strategies)(body)))
    return quick, long
