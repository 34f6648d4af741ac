import sys
from pathlib import Path

# test helpers (dynamo_records) import as top-level modules
sys.path.insert(0, str(Path(__file__).resolve().parent))


# -- Perfetto's trace processor loads every trace the tests write (issue 23; tests/tp_binary.py) --
import os  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def _tp_sweep_session(tmp_path_factory):
    from tp_binary import SWEEP, TP_BIN

    base = tmp_path_factory.getbasetemp()
    state = {"base": base, "dirs": set(), "unchecked": set()}
    yield state
    if TP_BIN is not None:  # whatever a later test wrote into an earlier directory
        for d in sorted(set(os.listdir(base)) - state["unchecked"]):
            SWEEP.scan(os.path.join(base, d))


@pytest.fixture(autouse=True)
def _tp_sweep(request, _tp_sweep_session):
    """After each test, every trace-pipe trace (.pftrace, Chrome JSON, by content) in the temporary
    directories created since the last test is loaded in trace processor and checked
    (tp_binary.verify_loaded); a test that corrupts a written trace on purpose is marked
    `tp_unchecked`."""
    yield
    from tp_binary import SWEEP, TP_BIN

    state = _tp_sweep_session
    new = sorted(set(os.listdir(state["base"])) - state["dirs"])
    state["dirs"].update(new)  # first, so a failure here is not blamed on the next test
    if TP_BIN is None or request.node.get_closest_marker("tp_unchecked"):
        state["unchecked"].update(new)
        return
    for d in new:
        SWEEP.scan(os.path.join(state["base"], d))


def pytest_configure(config):
    try:  # TRACE_PIPE_TP_REQUIRED=1 (CI) without a binary: stop before running anything
        import tp_binary  # noqa: F401
    except RuntimeError as e:
        raise pytest.UsageError(str(e)) from None
    config.addinivalue_line("markers", "tp_unchecked: writes broken trace-pipe traces on purpose (the "
                                       "trace processor sweep of conftest.py leaves this test's files alone)")


def pytest_terminal_summary(terminalreporter):
    from tp_binary import SWEEP, TP_BIN

    if TP_BIN is None:
        terminalreporter.write_line("trace processor: no binary, written traces not loaded "
                                    "(TRACE_PIPE_TP_BIN, or ../shared/tools/trace_processor_shell)")
    else:
        terminalreporter.write_line(f"trace processor: {SWEEP.loaded} traces written by the tests loaded and checked "
                                    f"({SWEEP.seconds:.1f} s)")
