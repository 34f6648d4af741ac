"""What a replay reads: Mooncake rows for the simulator, plus (when the input carries recorded
times) the recorded request behind each row and the dependency edges, for the comparison and the
`Recorded` timeline.

Formats (`--trace-format`):
- `mooncake` / `agentic_mooncake`: rows as written; nothing recorded beyond arrival times;
- `dynamo` / `weka`: every Dynamo generation and WEKA plays through `readers.read_trace`, then
  agentic v1 rows (`agentic_v1.derive`, G2 rules; WEKA sub-agents by the default "recorded" rule);
  a trace whose requests have no chain at all (context-free Dynamo rows) becomes independent
  timed arrivals (plain rows) instead. With `raw_dynamo="aisimulate-1.6"` (or "-1.5"), raw
  `dynamo.request.trace.v1` agentic traces are lowered as that Dynamo's own raw loader lowers them
  (pipeline/raw_lowering.py: v2 rows); what that loader does not read (G1/G2 agent traces, G3a
  rows without a session id) keeps the exporter's lowering, with a note;
- `distserve`: DistServe `.exp` runs (context-free requests: independent timed arrivals);
- `azure`: Azure LLM inference CSV traces (independent arrivals with prompt and output lengths,
  nothing recorded about their serving: no comparison, as for Mooncake rows).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from .errors import TraceError
from .model import Generation, Request, Trace
from .mooncake import Row
from .mooncake_edges import row_edges
from .request_graph import Edge

FORMATS = ("mooncake", "agentic_mooncake", "dynamo", "weka", "distserve", "azure")


@dataclass(frozen=True, slots=True)
class ReplayInput:
    rows: list[Row]
    sources: list[str]  # "path:line" (or "path: request id") per row
    sim_format: str  # how the simulator reads the rows: mooncake | agentic_mooncake | dynamo
    block_size: int  # tokens per hash id
    trace: Trace | None  # the records read (None for Mooncake rows)
    recorded: list[Request] | None  # the recorded request behind each row (None: no recorded times)
    edges: list[Edge] = field(default_factory=list)
    derived: object | None = None  # the request_graph.Derived behind the rows (its notes are reported)
    #: (format, digest) of the agentic graph's provenance, as Dynamo 1.6's report names it (the v2
    #: header's `source`, or the raw loader's); None when the rows carry none
    graph_source: tuple[str, str] | None = None

    def request_ids(self) -> list[str]:
        """The ids the simulator gives the rows (row index when a plain row has none)."""
        return [r.request_id if r.request_id is not None else str(i) for i, r in enumerate(self.rows)]


# inputs that are never Mooncake JSONL, by extension: the format to ask for instead
_OTHER = ((".csv", "azure", "an Azure LLM inference trace"), (".exp", "distserve", "a DistServe run"))


# how `--trace-format dynamo` lowers raw agentic request traces: the exporter's rules (Dynamo
# 1.4, `request_trace_to_mooncake`) or AISimulate's raw loader as Dynamo 1.5 or 1.6 ships it
RAW_DYNAMO = ("exporter", "aisimulate-1.5", "aisimulate-1.6")


def load_input(paths: list[str], fmt: str, trace_block_size: int | None = None,
               raw_dynamo: str = "exporter") -> ReplayInput:
    if fmt in ("mooncake", "agentic_mooncake"):
        for path in paths:
            for ext, other, what in _OTHER:
                if path.endswith(ext):
                    raise TraceError(f"error: {path}: {what}, not Mooncake rows: use --trace-format {other}")
        from .mooncake import read_rows

        mf = read_rows(paths)
        if not mf.rows:  # as the other formats (and Dynamo, which refuses an empty trace)
            raise TraceError("error: no LLM requests found in the input")
        tbs = trace_block_size
        if mf.header is not None and mf.header.block_size:
            if tbs is not None and tbs != mf.header.block_size:
                raise TraceError(f"error: --trace-block-size {tbs} differs from the trace header's block_size "
                                 f"{mf.header.block_size}")
            tbs = mf.header.block_size
        src = mf.header.source if mf.header is not None else None
        return ReplayInput(mf.rows, mf.sources, fmt, tbs or 512, None, None,
                           row_edges(mf.rows, agentic=fmt == "agentic_mooncake"),
                           graph_source=(src["format"], src["digest"]) if src else None)
    if fmt in ("dynamo", "weka", "distserve", "azure"):
        from . import agentic_v1, agentic_v2, readers
        from .plain_rows import plain_rows
        from .request_graph import sort_key

        trace = readers.read_trace(paths)
        if not trace.requests:
            raise TraceError("error: no LLM requests found in the input")
        if trace.mooncake_rows:
            raise TraceError(f"error: the input holds Mooncake rows; use --trace-format agentic_mooncake or mooncake, "
                             f"not {fmt}")
        src = paths[0] if len(paths) == 1 else "trace"
        if raw_dynamo not in RAW_DYNAMO:
            raise ValueError(f"raw_dynamo must be one of {RAW_DYNAMO}, got {raw_dynamo!r}")
        if fmt == "dynamo" and raw_dynamo != "exporter":
            lowered = _raw_lowered(trace, src, trace_block_size, raw_dynamo)
            if lowered is not None:
                return lowered
        graph_source = None
        if all(r.chain_id is None for r in trace.requests):
            rows, bs = plain_rows(trace)
            order = sorted(trace.requests, key=sort_key)  # plain_rows' order
            rows = [replace(row, request_id=r.request_id) for row, r in zip(rows, order)]
            sim_format, edges, derived = "mooncake", [], None
        elif fmt == "weka" and raw_dynamo != "exporter":
            # Dynamo 1.5/1.6 read a WEKA play as the exporter's v2 graph (their native reader
            # gives the v2 file's numbers on every trace it accepts; it refuses sub-agents whose
            # model the file does not declare, so the v2 file is what they replay)
            derived = agentic_v2.derive_v2(trace)
            rows, bs, order = derived.rows, derived.block_size, derived.order
            sim_format = "agentic_mooncake"
            edges = derived.edges
            graph_source = (derived.header["source"]["format"], derived.header["source"]["digest"])
        else:
            derived = agentic_v1.derive(trace, rules="g2")
            rows, bs, order = derived.rows, derived.block_size, derived.order
            sim_format = "dynamo"
            edges = derived.edges
        if trace_block_size is not None and bs is not None and trace_block_size != bs:
            raise TraceError(f"error: --trace-block-size {trace_block_size} differs from the trace's block size {bs}")
        tbs = bs or trace_block_size or 512
        # an Azure trace records arrivals only: nothing to compare a simulated run with
        recorded = None if fmt == "azure" else list(order)
        return ReplayInput(rows, [f"{src}: request {r.request_id}" for r in rows], sim_format, tbs, trace,
                           recorded, edges, derived, graph_source)
    raise TraceError(f"error: --trace-format must be one of {', '.join(FORMATS)}, got {fmt!r}")


def _raw_lowered(trace: Trace, src: str, trace_block_size: int | None, loader: str) -> ReplayInput | None:
    """A raw agentic request trace as Dynamo 1.5/1.6 replays it, or None when the exporter's
    lowering applies instead: context-free rows (read as plain timed arrivals, as the exporter
    does) and what Dynamo does not read raw (noted on stderr)."""
    from . import raw_lowering

    why = raw_lowering.readable(trace)
    if why is not None:
        dynamo = [r for r in trace.requests if r.generation in (Generation.G1, Generation.G2, Generation.G3A)]
        if dynamo:
            trace.notes[f"requests lowered with the exporter's rules (as --dynamo-version 1.4): {why}"] += len(dynamo)
        return None
    free = [r for r in trace.requests if r.chain_id is None]
    if len(free) == len(trace.requests):
        return None
    if free:
        raise TraceError(f"{free[0].source}: field `agent_context`: Dynamo request trace cannot mix requests with "
                         f"and without agent_context")
    g = raw_lowering.lower(trace, loader)
    if trace_block_size is not None and trace_block_size != g.block_size:
        raise TraceError(f"error: --trace-block-size {trace_block_size} differs from the trace's block size "
                         f"{g.block_size}")
    return ReplayInput(g.rows, [f"{src}: request {r.request_id}" for r in g.rows], "dynamo", g.block_size, trace,
                       list(g.order), row_edges(g.rows), None, g.source)
