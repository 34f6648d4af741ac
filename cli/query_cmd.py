"""`trace-pipe query TRACE [SQL | --preset NAME] [--csv OUT | --json]`: SQL over a trace through
Perfetto's trace processor (proto/query.py); presets are the SQL files in proto/queries/."""

from __future__ import annotations

import csv
import io
import math
import sys
from typing import Optional

import orjson
import typer

from trace_pipe.pipeline.errors import TraceError
from trace_pipe.pipeline.io import atomic_output

from .common import user_errors


def _cell(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.3f}" if math.isfinite(v) else str(v)
    if isinstance(v, bytes):
        return f"<{len(v)} bytes>"
    return str(v)


def table(columns, rows) -> str:
    """Aligned, numbers to the right; floats to 3 decimals (µs, for ms columns)."""
    body = [[_cell(v) for v in r] for r in rows]
    head = list(columns)
    w = [max(len(x[i]) for x in (head, *body)) for i in range(len(head))]
    num = [all(isinstance(r[i], (int, float)) or r[i] is None for r in rows) and rows for i in range(len(head))]
    line = "+" + "+".join("-" * (x + 2) for x in w) + "+"

    def fmt(cells: list[str]) -> str:
        return "| " + " | ".join(c.rjust(w[i]) if num[i] else c.ljust(w[i]) for i, c in enumerate(cells)) + " |"

    return "\n".join([line, fmt(head), line, *map(fmt, body), line, f"{len(rows)} row{'s' if len(rows) != 1 else ''}"])


def _csv_bytes(columns, rows) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    w.writerows(["" if v is None else v for v in r] for r in rows)
    return buf.getvalue().encode()


def run(trace: str | None, sql: str | None = None, *, preset: str | None = None, csv_out: str | None = None,
        as_json: bool = False, tp_bin: str | None = None, list_presets: bool = False, show_sql: bool = False,
        out=None) -> None:
    """The whole command as a function (tests call it); raises TraceError on bad input."""
    from trace_pipe.proto import query

    out = out or sys.stdout
    if list_presets:
        for name, what in query.presets().items():
            print(f"{name:<10} {what}", file=out)
        return
    if sql is not None and preset is not None:
        raise TraceError("error: give SQL or --preset, not both")
    if csv_out is not None and as_json:
        raise TraceError("error: --csv and --json: choose one output")
    if show_sql:
        if preset is None:
            raise TraceError("error: --show-sql needs --preset NAME")
        out.write(query.preset_sql(preset))
        return
    if trace is None:
        raise TraceError("error: missing TRACE (a .pftrace file)")
    if sql is None and preset is None:
        raise TraceError("error: give SQL or --preset NAME (trace-pipe query --list-presets)")
    text = query.preset_sql(preset) if preset is not None else sql
    if not text.strip():
        raise TraceError("error: empty SQL")
    res = query.run_query(trace, text, tp_bin or None)
    if as_json:
        out.write(orjson.dumps([dict(zip(res.columns, r)) for r in res.rows],
                               option=orjson.OPT_INDENT_2).decode() + "\n")
    elif csv_out is not None:
        with atomic_output(csv_out) as f:
            f.write(_csv_bytes(res.columns, res.rows))
        print(f"Wrote {len(res.rows)} rows to {csv_out}", file=out)
    else:
        print(table(res.columns, res.rows), file=out)


def register(app: typer.Typer) -> None:
    @app.command("query", short_help="SQL over a trace through Perfetto's trace processor (presets: TTFT/E2E, "
                                      "makespans, tool vs LLM time, recorded vs simulated, worker utilisation).")
    def query_command(
        trace: Optional[str] = typer.Argument(None, help="A .pftrace[.gz] written by trace-pipe (any Perfetto trace "
                                                          "for your own SQL)."),
        sql: Optional[str] = typer.Argument(None, help="Perfetto SQL (the last statement's rows are printed)."),
        preset: Optional[str] = typer.Option(None, "--preset", help="A preset query by name (--list-presets)."),
        csv_out: Optional[str] = typer.Option(None, "--csv", help="Write the rows here as CSV (atomically)."),
        as_json: bool = typer.Option(False, "--json", help="Print the rows as a JSON array of objects."),
        tp_bin: Optional[str] = typer.Option(
            None, "--tp-bin", envvar="TRACE_PIPE_TP_BIN",
            help="A trace_processor_shell binary (default: the one the perfetto package downloads)."),
        list_presets: bool = typer.Option(False, "--list-presets", help="List the presets and exit."),
        show_sql: bool = typer.Option(False, "--show-sql", help="Print the --preset's SQL (to paste into "
                                                                "ui.perfetto.dev's Query page) and exit."),
    ) -> None:
        """Run Perfetto SQL over a trace: a terminal table, --csv OUT or --json."""
        with user_errors():
            run(trace, sql, preset=preset, csv_out=csv_out, as_json=as_json, tp_bin=tp_bin or None,
                list_presets=list_presets, show_sql=show_sql)
