"""`trace-pipe check FILE.pftrace [--tp-bin PATH]`: validate a Perfetto trace we wrote."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from trace_pipe.pipeline.errors import TraceError

from .common import user_errors


def run_check(path: str, tp_bin: str | None = None, *, out=None, err=None) -> bool:
    """Print counts and one line per problem (problems to stderr); True when the trace is clean."""
    from trace_pipe.proto.check import check_file
    from trace_pipe.proto.tp_check import tp_bin_problem

    out = out or sys.stdout
    err = err or sys.stderr
    if not Path(path).exists():
        raise FileNotFoundError(f"no such file: {path}")
    if Path(path).is_dir():
        raise TraceError(f"error: {path}: is a directory (check takes one trace file)")
    if tp_bin:  # a usage error, not a problem of the trace
        bad = tp_bin_problem(tp_bin)
        if bad:
            raise TraceError(f"error: --tp-bin / TRACE_PIPE_TP_BIN: {bad}")
    rep = check_file(path, tp_bin=tp_bin or None)
    for line in rep.lines():
        print(line, file=err if line.startswith(("problem:", "FAILED")) else out)
    return rep.ok


def register(app: typer.Typer) -> None:
    @app.command("check")
    def check_command(
        file: Path = typer.Argument(..., help="A .pftrace or .pftrace.gz file."),
        tp_bin: Optional[str] = typer.Option(
            None, "--tp-bin", envvar="TRACE_PIPE_TP_BIN",
            help="A trace_processor_shell binary: also load the trace with it and compare counts and stats."),
    ) -> None:
        """Decode a Perfetto trace and check framing, tracks, nesting, flows, interning and counters."""
        with user_errors():
            ok = run_check(str(file), tp_bin or None)  # an empty value means "not given"
        if not ok:
            raise typer.Exit(1)
