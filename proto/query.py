"""SQL over a trace-pipe trace through Perfetto's trace processor (`trace-pipe query`).

The trace is loaded by the `perfetto` package's `TraceProcessor`, with the binary the user names
(`--tp-bin` / `TRACE_PIPE_TP_BIN`); without one the package does what it always does, download
its pinned `trace_processor_shell`, and when that cannot work (offline) the user gets one line
saying so. Presets are Perfetto SQL files in `queries/` (package data) that share one requests
block (`_requests.sql`, spliced in at their `-- @requests` line); `--show-sql` prints the whole
statement, which runs pasted into ui.perfetto.dev's Query (SQL) page.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import zlib
from dataclasses import dataclass
from importlib import resources

from trace_pipe.pipeline.errors import TraceError

# import-time stats of trace processor that mean it could not read the trace as a whole
_BROKEN_SEVERITIES = ("error", "data_loss")


_SPLICE = "-- @requests"  # a preset's line that stands for the shared requests block


def presets() -> dict[str, str]:
    """Preset name -> its first comment line (what it computes), in name order (`_*.sql` files
    are blocks the presets splice in, not presets)."""
    out = {}
    for f in sorted(resources.files(__package__).joinpath("queries").iterdir(), key=lambda p: p.name):
        if f.name.endswith(".sql") and not f.name.startswith("_"):
            first = f.read_text(encoding="utf-8").splitlines()[0]
            out[f.name[:-4]] = first.split(":", 1)[1].strip() if ":" in first else first
    return out


def preset_sql(name: str) -> str:
    known = presets()
    if name not in known:
        raise TraceError(f"error: --preset {name}: no such preset (one of {', '.join(known)})")
    queries = resources.files(__package__).joinpath("queries")
    text = queries.joinpath(f"{name}.sql").read_text(encoding="utf-8")
    # one copy of the requests block; the statement `--show-sql` prints is complete, for pasting
    lines = [queries.joinpath("_requests.sql").read_text(encoding="utf-8") if ln.startswith(_SPLICE) else ln + "\n"
             for ln in text.splitlines()]
    return "".join(lines)


@dataclass(frozen=True, slots=True)
class QueryResult:
    columns: tuple[str, ...]
    rows: tuple[tuple, ...]


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text or type(e).__name__


def _query_error(e: BaseException) -> str:
    """trace processor's multi-line error (a traceback, the statement, a caret, the reason) as
    'reason (line L col C)'."""
    lines = [x.strip() for x in str(e).splitlines() if x.strip()]
    where = next((m.group(1) for x in lines if (m := re.search(r"(line \d+ col \d+)", x))), None)
    return f"{lines[-1]} ({where})" if lines and where else _one_line(e)


@contextlib.contextmanager
def _quiet_fds():
    """The package prints progress and runs curl on the process's own stdout / stderr; keep both
    (and what the binary prints while it starts) out of ours, and hand back what they said."""
    saved = []
    captured = tempfile.TemporaryFile()
    try:
        for fd in (1, 2):
            saved.append(os.dup(fd))
            os.dup2(captured.fileno(), fd)
        said: list[str] = []
        try:
            yield said
        finally:
            for fd, old in zip((1, 2), saved):
                os.dup2(old, fd)
            captured.seek(0)
            said.extend(line for line in captured.read().decode("utf-8", "replace").splitlines() if line.strip())
    finally:
        for old in saved:
            os.close(old)
        captured.close()


def _framing_problem(trace: str) -> str | None:
    """Trace processor loads a cut or empty protobuf trace without a word (what it could parse, or
    nothing); our own framing walk (no decoding: fast) says where it breaks. JSON traces are left
    to trace processor."""
    from .perfetto_check import CheckReport, iter_packets, open_pftrace

    try:
        with open_pftrace(trace) as f:
            head = f.read(1)
        if head not in (b"\x0a", b""):
            return None
        rep = CheckReport(trace)
        for _ in iter_packets(trace, rep):
            if rep.problems:
                break
    except (OSError, EOFError, zlib.error) as e:
        return f"cannot read: {_one_line(e)}"
    return rep.problems[0] if rep.problems else None


def run_query(trace: str, sql: str, tp_bin: str | None = None) -> QueryResult:
    """Load `trace` and run `sql` (its last statement's rows). Errors are one-line TraceErrors:
    no binary (and none to download), a trace trace processor cannot read, a bad query."""
    with open_trace(trace, tp_bin) as session:
        return session.query(sql)


class Session:
    """A loaded trace: `query(sql)` as many times as wanted (one trace processor start)."""

    def __init__(self, tp) -> None:
        self._tp = tp

    def query(self, sql: str) -> QueryResult:
        try:
            res = self._tp.query(sql)
        except Exception as e:
            raise TraceError(f"error: query failed: {_query_error(e)}") from None
        cols = tuple(res.column_names)
        return QueryResult(cols, tuple(tuple(getattr(r, c) for c in cols) for r in res))


@contextlib.contextmanager
def open_trace(trace: str, tp_bin: str | None = None):
    """Load `trace` in trace processor (see run_query) and yield a Session."""
    from perfetto.trace_processor import TraceProcessor, TraceProcessorConfig

    if not os.path.exists(trace):
        raise TraceError(f"error: {trace}: no such file")
    if os.path.isdir(trace):
        raise TraceError(f"error: {trace}: is a directory (query takes one trace file)")
    broken = _framing_problem(trace)
    if broken:
        raise TraceError(f"error: {trace}: not a whole Perfetto trace: {broken}")
    if tp_bin:
        from .tp_check import tp_bin_problem

        bad = tp_bin_problem(tp_bin)
        if bad:
            raise TraceError(f"error: --tp-bin / TRACE_PIPE_TP_BIN: {bad}")
    config = TraceProcessorConfig(bin_path=tp_bin or None)
    tp = None
    with _quiet_fds() as said:
        try:
            tp = TraceProcessor(trace=trace, config=config)
        except Exception as e:  # the package raises its own types, and CalledProcessError for curl
            start_error = e
        else:
            start_error = None
    if start_error is not None:
        if not tp_bin:
            why = next((s for s in reversed(said) if "curl" in s or "rror" in s), _one_line(start_error))
            raise TraceError(f"error: no trace processor binary: give --tp-bin (or TRACE_PIPE_TP_BIN), or let the "
                             f"perfetto package download one, which failed: {' '.join(why.split())}") from None
        raise TraceError(f"error: trace processor could not load {trace}: {_one_line(start_error)}") from None
    try:
        session = Session(tp)
        broken = [f"{r[0]} = {r[1]}" for r in session.query(
            "SELECT name, value FROM stats WHERE value > 0 AND severity IN "
            f"({', '.join(repr(s) for s in _BROKEN_SEVERITIES)}) ORDER BY name").rows]
        if broken:
            raise TraceError(f"error: {trace}: trace processor could not read it as a trace "
                             f"({', '.join(broken[:3])})")
        yield session
    finally:
        tp.close()
