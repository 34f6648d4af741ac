"""`trace-pipe convert`: read once, write Mooncake and/or Perfetto."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from trace_pipe.pipeline import agentic_v1, convert, readers
from trace_pipe.pipeline.errors import TraceError
from trace_pipe.pipeline.gcpause import gc_paused
from trace_pipe.pipeline.model import Generation
from trace_pipe.pipeline.io import check_outputs, output_group

from .common import Progress, user_errors


def run_convert(inputs: list[str], *, mooncake: str | None = None, agentic_rows: bool = False, fmt: str | None = None,
                g3c_rules: bool = False, weka_subagents: str = "recorded", perfetto: str | None = None,
                chrome_json: str | None = None, stages: bool = True, markers: bool = False,
                out=sys.stdout, err=sys.stderr) -> None:
    """The whole command as a function (tests call it); raises TraceError on bad input."""
    if not (mooncake or perfetto or chrome_json):
        raise TraceError("error: nothing to write: give --mooncake, --perfetto and/or --chrome-json")
    check_outputs([("--mooncake", mooncake), ("--perfetto", perfetto), ("--chrome-json", chrome_json)], inputs)
    if (not stages or markers) and not (perfetto or chrome_json):
        print("note: --no-stages / --include-markers have no effect without --perfetto or --chrome-json", file=err)
    lines: list[str] = []  # said once every output is in place: a failed run wrote nothing
    with gc_paused(), output_group():
        _convert(inputs, mooncake, agentic_rows, fmt, "g3c" if g3c_rules else "g2", weka_subagents, perfetto,
                 chrome_json, lines, err, draw={"stages": stages, "markers": markers})
    for line in lines:
        print(line, file=out)


def _convert(inputs, mooncake, agentic_rows, fmt, rules, weka_subagents, perfetto, chrome_json, lines, err, draw=None) -> None:
    bar = Progress(None, "reading")
    # without Mooncake output, rows need only what Dynamo's Perfetto script needs (§5)
    trace = readers.read_trace(inputs, subagents=weka_subagents, on_line=bar.update if bar.enabled else None,
                               replay_rules=bool(mooncake))
    bar.close()
    if weka_subagents != "recorded" and not any(r.generation is Generation.WEKA for r in trace.requests):
        print(f"note: --weka-subagents {weka_subagents} has no effect: the input has no WEKA plays", file=err)
    derived = None
    if mooncake:
        bar = Progress(len(trace.requests), "writing")
        res = convert.write_mooncake(trace, mooncake, agentic_rows=agentic_rows, fmt=fmt, rules=rules,
                                     edges=bool(perfetto or chrome_json), on_row=bar.update if bar.enabled else None)
        bar.close()
        derived = res.derived if res.agentic else None
        lines.extend(res.lines)
        if rules == "g3c" and convert.resolve_format(agentic_rows, fmt) == (True, "v2"):
            print("note: --g3c-rules has no effect on v2 rows: they always follow Dynamo 1.6's exporter "
                  "(G3c's graph rules, no tool fields)", file=err)
    if perfetto or chrome_json:
        if not trace.requests and not trace.tools:
            raise TraceError("error: nothing to draw: the input has no LLM requests and no tool rows")
        if derived is None:
            derived = _edges_if_agentic(trace, rules, err)
        from trace_pipe import proto

        edges = derived.edges if derived is not None else []
        if perfetto:
            stats = proto.write_perfetto(trace, edges, perfetto, **(draw or {}))
            lines.append(f"Wrote {stats.summary()} to {perfetto}")
        if chrome_json:
            stats = proto.write_chrome_json(trace, edges, chrome_json, **(draw or {}))
            lines.append(f"Wrote {stats.summary()} to {chrome_json}")
    for line in convert.report_lines(trace, derived):
        print(line, file=err)


def _edges_if_agentic(trace, rules: str, err):
    """Flows need the agentic edges; a context-free trace simply has none, and a trace the agentic
    lowering rejects (mixed context, conflicting parents, ...) is still drawn, without flows."""
    if not trace.requests or all(r.chain_id is None for r in trace.requests):
        return None
    try:
        return agentic_v1.dependency_edges(trace, rules=rules)
    except TraceError as e:
        print(f"note: no dependency flows: {e}", file=err)
        return None


def register(app: typer.Typer) -> None:
    @app.command("convert")
    def convert_command(
        inputs: list[str] = typer.Argument(..., help="Trace files, directories (*.jsonl, *.jsonl.gz, *.json) or glob patterns; any order."),
        mooncake: Optional[Path] = typer.Option(None, "--mooncake", help="Write (agentic) Mooncake JSONL here."),
        agentic_rows: bool = typer.Option(False, "--agentic", help="Agentic Mooncake rows: v2 (a header line, typed dependencies) as Dynamo 1.6's exporter writes them, unless --format v1."),
        fmt: Optional[str] = typer.Option(None, "--format", help="Agentic format: v2 (default; Dynamo 1.5+ replays it, 1.6 only it) or v1 (wait_for rows, for Dynamo 1.4.x/1.5.x). v2 implies --agentic."),
        g3c_rules: bool = typer.Option(False, "--g3c-rules", help="Dynamo G3c (2026-06-25+) rules for plain and v1 rows: spawn by start, Claude tool metadata, request_kind, cycle check. Default: G2-G3b rules. v2 rows always follow Dynamo 1.6's exporter."),
        weka_subagents: str = typer.Option("recorded", "--weka-subagents", help="WEKA sub-agent joins: 'recorded' (from recorded times, as Dynamo infers them) or 'wait' (the parent's next call waits for the sub-agent, as kv-cache-tester replays)."),
        perfetto: Optional[Path] = typer.Option(None, "--perfetto", help="Write a Perfetto protobuf trace (.pftrace or .pftrace.gz)."),
        chrome_json: Optional[Path] = typer.Option(None, "--chrome-json", help="Write the same layout as Chrome trace JSON."),
        no_stages: bool = typer.Option(False, "--no-stages", help="Perfetto / Chrome JSON: only whole LLM request slices, no prefill wait / prefill / decode stages (as Dynamo's convert_to_perfetto.py)."),
        include_markers: bool = typer.Option(False, "--include-markers", help="Perfetto / Chrome JSON: also draw first-token instants (off by default, as Dynamo's convert_to_perfetto.py)."),
    ) -> None:
        """Convert Dynamo request traces, WEKA agent traces or Mooncake rows to (agentic) Mooncake and Perfetto."""
        with user_errors():
            run_convert(inputs, mooncake=str(mooncake) if mooncake else None, agentic_rows=agentic_rows, fmt=fmt,
                        g3c_rules=g3c_rules, weka_subagents=weka_subagents,
                        perfetto=str(perfetto) if perfetto else None,
                        chrome_json=str(chrome_json) if chrome_json else None,
                        stages=not no_stages, markers=include_markers)
