"""`trace-pipe convert` as functions: lower a Trace to Mooncake rows, write them atomically, and
say what Dynamo's converter says (plus what was skipped, which Dynamo does not)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

from . import agentic_v1, agentic_v2
from .plain_rows import plain_rows
from .request_graph import Derived
from .dynamo_rows import tool_interval, tool_status
from .errors import TraceError
from .io import atomic_output
from .model import Generation, Trace
from .mooncake import dumps

FORMATS = ("v1", "v2")
T = TypeVar("T")


@dataclass(slots=True)
class MooncakeResult:
    path: str
    rows: int
    agentic: bool
    block_size: int | None
    derived: Derived | None = None
    lines: list[str] = field(default_factory=list)  # stdout summary, Dynamo's wording


def resolve_format(agentic_rows: bool, fmt: str | None) -> tuple[bool, str]:
    """(agentic rows?, format): agentic rows are v2 unless `--format v1` asks for Dynamo 1.4/1.5's
    wait_for rows (what Dynamo 1.6's exporter writes, and all its replay reads); `--format v2`
    alone implies agentic rows; plain rows have no format (`v1` stands for them)."""
    if fmt is not None and fmt not in FORMATS:
        raise TraceError(f"error: unknown --format {fmt!r}, expected v1 or v2")
    if fmt == "v2":
        return True, "v2"
    if fmt is None:
        return agentic_rows, "v2" if agentic_rows else "v1"
    return agentic_rows, fmt


def lower(trace: Trace, *, agentic_rows: bool, fmt: str | None = None, rules: str = "g2") -> Derived:
    """The rows (and edges) to write; pure."""
    agentic_rows, fmt = resolve_format(agentic_rows, fmt)
    if fmt == "v2":
        return agentic_v2.derive_v2(trace)
    if agentic_rows:
        return agentic_v1.derive(trace, rules=rules)
    rows, bs = plain_rows(trace, rules=rules)
    return Derived(rows, [], bs, [])


_FLAGS = {"plain": "without --agentic", "agentic v1": "with --agentic --format v1", "agentic v2": "with --agentic"}


def _same_shape(trace: Trace, want: str) -> None:
    """Mooncake input is written back in its own shape only: its rows lack what another shape
    needs (plain rows have no edges, v2 rows no timestamps, v1 rows no play ids or models), so any
    other output would be quietly wrong."""
    if trace.mooncake_header is not None:
        kind = "agentic v2"
    elif any(r.prefix_reset is not None or r.wait_for or r.branches for r in trace.mooncake_rows):
        kind = "agentic v1"
    else:
        kind = "plain"
    if kind != want:
        raise TraceError(f"error: the input is {kind} Mooncake, which converts only to itself ({_FLAGS[kind]}); "
                         f"for {want} rows convert the Dynamo or WEKA trace it came from")


def write_mooncake(trace: Trace, out: str, *, agentic_rows: bool, fmt: str | None = None, rules: str = "g2",
                   edges: bool = True, on_row: Callable[[int], None] | None = None) -> MooncakeResult:
    """Write (agentic) Mooncake JSONL to `out` atomically; returns the summary Dynamo prints.
    `fmt` None: agentic rows are v2 (`resolve_format`). Agentic rows are streamed
    (`agentic_v1.write_v1` / `agentic_v2.write_v2`): the result's `derived.rows` is then empty; `edges` False
    leaves `derived.edges` empty too (only Perfetto flows need them). `on_row(1)` is called as
    each row is written (a progress bar). v2 follows the 1.6 exporter whatever `rules` says."""
    agentic_rows, fmt = resolve_format(agentic_rows, fmt)
    if trace.mooncake_rows:
        _same_shape(trace, "agentic v2" if fmt == "v2" else "agentic v1" if agentic_rows else "plain")
    if agentic_rows and not trace.mooncake_rows:
        # every error is raised before the file opens
        if fmt == "v2":
            derived, fields = agentic_v2.derive_v2_lazy(trace, edges=edges)
            write_rows = partial(agentic_v2.write_v2, derived)
        else:
            derived, fields = agentic_v1.derive_lazy(trace, rules=rules, edges=edges)
            write_rows = agentic_v1.write_v1
        with atomic_output(out) as f:
            write_rows(_counted(fields, on_row), f.write)
        n = len(derived.order)
    else:
        derived = lower(trace, agentic_rows=agentic_rows, fmt=fmt, rules=rules)
        to_json = {("v1", False): "to_plain", ("v1", True): "to_agentic_v1", ("v2", True): "to_agentic_v2"}[(fmt, agentic_rows)]
        with atomic_output(out) as f:
            if fmt == "v2" and derived.header is not None:
                f.write(dumps(derived.header))
            write = f.write
            for row in _counted(derived.rows, on_row):
                write(dumps(getattr(row, to_json)()))
        n = len(derived.rows)
    kind = "Agentic Mooncake" if agentic_rows else "Mooncake"
    res = MooncakeResult(out, n, agentic_rows, derived.block_size, derived)
    res.lines.append(f"Wrote {n} {kind} rows to {out}")
    if derived.block_size is not None:  # plain Mooncake input does not say
        res.lines.append(f"Trace block size: {derived.block_size}")
    if rules != "g3c" and fmt != "v2":  # Dynamo's G3c converter and 1.6's exporter print none (§4.1)
        res.lines.extend(tool_summary(trace))
    return res


def _counted(items: Iterable[T], on_item: Callable[[int], None] | None) -> Iterable[T]:
    """`items`, calling `on_item(1)` as each is taken; `items` itself without a callback."""
    if on_item is None:
        return items

    def each() -> Iterator[T]:
        for x in items:
            on_item(1)
            yield x
    return each()


def _counts(c: Counter) -> str:
    if not c:
        return "(none)"
    return " ".join(f"{k}={v}" for k, v in sorted(c.items(), key=lambda kv: (-kv[1], kv[0])))


def tool_summary(trace: Trace) -> list[str]:
    """Dynamo's G2–G3b tool block (§4.1), when terminal tool rows were loaded."""
    # over the tool entries Dynamo loads (§4.2): a span that ends before it starts is skipped, and
    # a missing duration_ms is end - start
    spans = [(t, iv) for t in trace.tools if t.terminal and (iv := tool_interval(t)) is not None]
    if not spans:
        return []
    terminal = [t for t, _ in spans]
    word = "sessions" if any(t.generation is Generation.G3B for t in terminal) else "trajectories"
    chains = {t.chain_id for t in terminal}
    status = Counter(tool_status(t) if t.status != "" else t.event_type for t in terminal)
    classes = Counter(t.tool_class or "(unlabeled)" for t in terminal)
    wall = sum(t.duration_ms if t.duration_ms is not None else e - s for t, (s, e) in spans) / 1000.0
    return ["", f"Tool events: {len(terminal)} spans across {len(chains)} {word}",
            f"  Status:    {_counts(status)}", f"  Class:     {_counts(classes)}", f"  Wall-time: {wall:.2f}s"]


def report_lines(trace: Trace, derived: Derived | None = None) -> list[str]:
    """What was skipped or adjusted (stderr): nothing is dropped silently."""
    out = []
    for reason, n in sorted(trace.skipped.items()):
        if n:
            out.append(f"skipped {n} {reason}")
    notes = Counter(trace.notes)
    if derived is not None:
        notes.update(derived.notes)
        unattached = derived.tool_spans - derived.attached_tools
        if derived.tool_spans and unattached:
            out.append(f"note: {unattached} of {derived.tool_spans} tool spans overlap no dependency gap (not in any row's tool_events)")
    for reason, n in sorted(notes.items()):
        if n:
            out.append(f"note: {n} {reason}")
    return out
