"""`trace-pipe check`: a `.pftrace` decoded with the `perfetto` protos and checked as trace
processor will read it (proto/perfetto_check.py), then against trace-pipe's own layout
(proto/layout_check.py), and with a `trace_processor_shell` binary loaded through trace processor
and compared (proto/tp_check.py)."""

from __future__ import annotations

import os
import zlib

from .layout_check import LayoutChecker
from .perfetto_check import CheckReport, iter_packets
from .tp_check import cross_check


def check_file(path: str | os.PathLike, tp_bin: str | None = None, *,
               expect: dict[int, list[tuple[int, int]]] | None = None) -> CheckReport:
    """Check a `.pftrace` (plain or gzipped). `expect`: the writer's intended (begin, end)
    intervals per track uuid, compared with the LIFO replay. `tp_bin`: also load the trace
    through trace processor and compare."""
    path = str(path)
    rep = CheckReport(path)
    c = LayoutChecker(rep)
    try:
        for idx, body in iter_packets(path, rep):
            c.packet(idx, body)
    except (OSError, EOFError, zlib.error) as e:  # includes truncated / corrupt gzip
        rep.problem(f"cannot read: {e}")
        return rep
    c.finish(expect)
    if tp_bin:
        cross_check(path, tp_bin, rep, c)
    return rep
