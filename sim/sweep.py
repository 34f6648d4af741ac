"""What-if sweeps: the same trace replayed over a grid of worker counts and router modes, in
parallel processes, summarised as one table (one row per configuration, in grid order).

Each process receives the rows once (pool initializer) and runs whole replays; each result is
placed at its configuration's grid index, and every replay is seeded, so the table does not
depend on the number of processes or on which finishes first. `sweep_ray` runs the same grid
on a Ray cluster.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Callable

from trace_pipe.pipeline.errors import TraceError
from trace_pipe.pipeline.mooncake import Row

from . import report
from .config import EngineArgs, RouterConfig
from .replay import ReplayOptions, run_replay
from .timing import TimingModel
from .versions import VERSIONS, DynamoRules


@dataclass(frozen=True, slots=True)
class SweepPoint:
    num_workers: int
    router_mode: str


@dataclass(frozen=True, slots=True)
class SweepSpec:
    """Everything but the grid axes; shared by all points."""

    sim_format: str
    trace_block_size: int
    engine: EngineArgs
    router: RouterConfig
    timing: TimingModel | None
    seed: int = 0
    arrival_speedup_ratio: float = 1.0
    rules: DynamoRules = VERSIONS["1.4"]


# (CSV column, report key or None for the grid axes / status, terminal header)
COLUMNS = (
    ("num_workers", None, "workers"),
    ("router_mode", None, "router"),
    ("completed_requests", "completed_requests", "done"),
    ("makespan_ms", "duration_ms", "makespan ms"),
    ("ttft_p50_ms", "median_ttft_ms", "TTFT p50"),
    ("ttft_p90_ms", "p90_ttft_ms", "TTFT p90"),
    ("ttft_p99_ms", "p99_ttft_ms", "TTFT p99"),
    ("e2e_p50_ms", "median_e2e_latency_ms", "E2E p50"),
    ("e2e_p90_ms", "p90_e2e_latency_ms", "E2E p90"),
    ("e2e_p99_ms", "p99_e2e_latency_ms", "E2E p99"),
    ("request_throughput_rps", "request_throughput_rps", "req/s"),
    ("output_throughput_tok_s", "output_throughput_tok_s", "out tok/s"),
    ("prefix_cache_reused_ratio", "prefix_cache_reused_ratio", "cache reuse"),
    ("rejected", None, "rejected"),  # prompts larger than a worker's KV cache (as replay reports them)
    ("error", None, "error"),
)


def grid(num_workers: list[int], router_modes: list[str]) -> list[SweepPoint]:
    """Worker counts outer, router modes inner, each in the order given (duplicates removed)."""
    if not num_workers or not router_modes:
        raise TraceError("error: the sweep grid is empty (give --num-workers and --router-mode values)")
    for n in num_workers:
        if n < 1:
            raise TraceError(f"error: --num-workers: {n} is not >= 1")
    return [SweepPoint(n, m) for n in dict.fromkeys(num_workers) for m in dict.fromkeys(router_modes)]


def parse_list(text: str, flag: str, kind: type = str) -> list:
    """`2,4,8` -> [2, 4, 8]; one clear error on a bad element."""
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            out.append(kind(part))
        except ValueError:
            raise TraceError(f"error: {flag}: {part!r} is not a valid {kind.__name__}") from None
    if not out:
        raise TraceError(f"error: {flag}: no values given")
    return out


_ROWS: tuple[list[Row], list[str]] | None = None
_SPEC: SweepSpec | None = None


def _init(rows: list[Row], sources: list[str], spec: SweepSpec) -> None:
    global _ROWS, _SPEC
    _ROWS = (rows, sources)
    _SPEC = spec


def _run_point(p: SweepPoint) -> dict:
    assert _ROWS is not None and _SPEC is not None
    rows, sources = _ROWS
    return guarded(run_point, rows, sources, _SPEC, p)


def guarded(fn: Callable[[list[Row], list[str], SweepSpec, SweepPoint], dict], rows: list[Row], sources: list[str],
            spec: SweepSpec, p: SweepPoint) -> dict:
    """`fn`'s row, or an error row for any exception it raises (a bug, memory running out): one
    configuration failing never costs the grid its other rows, and the failure comes back as
    one line in its row instead of a worker's traceback re-raised in the parent."""
    try:
        return fn(rows, sources, spec, p)
    except Exception as e:
        what = str(e).strip().splitlines()[0] if str(e).strip() else ""
        return {"num_workers": p.num_workers, "router_mode": p.router_mode,
                "error": f"error: internal error (a bug, please report it): {type(e).__name__}"
                         + (f": {what}" if what else "")}


def run_point(rows: list[Row], sources: list[str], spec: SweepSpec, p: SweepPoint) -> dict:
    """One replay, summarised as a table row; a configuration the simulator rejects becomes a row
    with its one-line error (the rest of the grid still runs)."""
    row: dict = {"num_workers": p.num_workers, "router_mode": p.router_mode}
    opts = ReplayOptions(num_workers=p.num_workers, router_mode=p.router_mode,
                         trace_block_size=spec.trace_block_size, engine=spec.engine, router=spec.router,
                         arrival_speedup_ratio=spec.arrival_speedup_ratio, seed=spec.seed, timing=spec.timing,
                         record=False, rules=spec.rules)
    try:
        res = run_replay(rows, sources, spec.sim_format, opts)
    except TraceError as e:
        row["error"] = str(e)
        return row
    rep = report.summary(res)
    for col, key, _ in COLUMNS:
        if key is not None:
            row[col] = rep[key]
    row["rejected"] = sum(1 for r in res.requests if r.status == "rejected")
    row["error"] = ""
    return row


def check_jobs(jobs: int | None) -> None:
    if jobs is not None and jobs < 1:
        raise TraceError(f"error: --jobs must be >= 1, got {jobs}")


def run_sweep(rows: list[Row], sources: list[str], spec: SweepSpec, points: list[SweepPoint],
              jobs: int | None = None, on_done: Callable[[dict], None] | None = None) -> list[dict]:
    """Rows in `points` order. `jobs` processes (default: one per core, at most one per point);
    1 runs in this process. `on_done(row)` as each configuration finishes (a progress bar)."""
    check_jobs(jobs)
    if jobs is None:
        jobs = os.cpu_count() or 1
    jobs = min(jobs, len(points))
    done = on_done or (lambda row: None)
    if jobs == 1:
        out = []
        for p in points:
            out.append(guarded(run_point, rows, sources, spec, p))
            done(out[-1])
        return out
    res: list[dict | None] = [None] * len(points)
    ex = ProcessPoolExecutor(max_workers=jobs, initializer=_init, initargs=(rows, sources, spec))
    try:
        futs = {ex.submit(_run_point, p): i for i, p in enumerate(points)}
        for f in as_completed(futs):
            i = futs[f]
            try:
                res[i] = f.result()
            except BrokenProcessPool as e:  # a worker process was killed (the OOM killer): its points fail
                res[i] = {"num_workers": points[i].num_workers, "router_mode": points[i].router_mode,
                          "error": f"error: the worker process died: {e}"}
            done(res[i])
    except BaseException:
        running = list((getattr(ex, "_processes", None) or {}).values())
        ex.shutdown(wait=False, cancel_futures=True)  # Ctrl-C or a bug: the queued points never start
        # and the running ones stop now: a SIGTERM reaches this process only (Ctrl-C reaches the
        # whole process group), and exit would otherwise wait for them to finish
        for proc in running:
            with contextlib.suppress(OSError, ValueError):
                proc.terminate()
        raise
    ex.shutdown()
    return res  # type: ignore[return-value]


def _fmt(col: str, v: object) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        if col.endswith("_ratio") or col in _THROUGHPUT:
            return f"{v:.6f}"
        return f"{v:.3f}"
    return str(v)


_THROUGHPUT = ("request_throughput_rps", "output_throughput_tok_s")


def _sig3(v: float) -> str:
    """Three significant digits, never in exponent form: a slow trace's 0.0150 req/s is not 0.0."""
    if v == 0 or not math.isfinite(v):
        return f"{v:g}"
    exp = int(f"{v:.2e}".split("e")[1])  # the decade after rounding: 0.00999 is 0.0100
    return f"{v:,.{max(0, 2 - exp)}f}"


def failure_line(results: list[dict]) -> str | None:
    """One line when every configuration failed (the command then exits non-zero), else None."""
    if not results or not all(r.get("error") for r in results):
        return None
    first = results[0]
    return (f"error: all {len(results)} configurations failed; first (workers={first['num_workers']} "
            f"router={first['router_mode']}): {first['error'].removeprefix('error: ')}")


def to_csv(results: list[dict]) -> bytes:
    """One header line, one line per configuration; fixed float precision so identical runs give
    identical bytes."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([c for c, _, _ in COLUMNS])
    for r in results:
        w.writerow([_fmt(c, r.get(c)) for c, _, _ in COLUMNS])
    return buf.getvalue().encode()


def table(results: list[dict]) -> str:
    """The terminal view: the same columns, aligned; errors listed below the table."""
    cols = [(c, h) for c, _, h in COLUMNS if c != "error"]
    body = []
    for r in results:
        cells = []
        for c, _ in cols:
            v = r.get(c)
            if v is None:
                cells.append("-")
            elif c == "prefix_cache_reused_ratio":
                cells.append(f"{v:.3f}")
            elif c in _THROUGHPUT:
                cells.append(_sig3(v))
            elif isinstance(v, float):
                cells.append(f"{v:,.1f}")
            else:
                cells.append(str(v))
        body.append(cells)
    head = [h for _, h in cols]
    w = [max(len(x[i]) for x in (head, *body)) for i in range(len(head))]
    line = "+" + "+".join("-" * (x + 2) for x in w) + "+"

    def fmt(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w[i]) if i < 2 else c.rjust(w[i]) for i, c in enumerate(cells)) + " |"

    out = ["trace-pipe sweep | makespan, latency (ms) and throughput per configuration", line, fmt(head), line,
           *map(fmt, body), line]
    for r in results:
        if r.get("error"):
            out.append(f"workers={r['num_workers']} router={r['router_mode']}: {r['error']}")
    return "\n".join(out)
