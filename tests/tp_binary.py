"""Where the tests find Perfetto's `trace_processor_shell` (no package registry ships it).

`TRACE_PIPE_TP_BIN` (the variable `trace-pipe check --tp-bin` reads) when set; set but empty
turns the cross-checks off. Unset: the binary shipped beside the repository,
`../shared/tools/trace_processor_shell`. Tests that need it skip when neither is an executable.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHIPPED = Path(__file__).resolve().parents[1].parent / "shared" / "tools" / "trace_processor_shell"


def tp_bin() -> str | None:
    given = os.environ.get("TRACE_PIPE_TP_BIN")
    path = Path(given) if given else (None if given == "" else SHIPPED)
    if path is None or not path.is_file() or not os.access(path, os.X_OK):
        return None
    return str(path)


TP_BIN = tp_bin()
needs_tp = pytest.mark.skipif(TP_BIN is None, reason="no trace_processor_shell: set TRACE_PIPE_TP_BIN or put one at "
                                                      f"{SHIPPED}")
