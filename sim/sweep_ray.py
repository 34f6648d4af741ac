"""What-if sweeps on a Ray cluster: the same grid as `sweep.run_sweep`, each configuration a Ray
task, so a capacity study is bounded by a cluster's cores instead of one machine's.

The parsed trace goes into the object store once (`ray.put`); each worker process fetches it once
and keeps it for the configurations it runs after, as the local pool's initializer does. Every
replay is seeded and rows are placed by grid index, so the table and the CSV are byte-identical to
a local run whatever the order tasks finish in. Ray is an optional extra, imported only here.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Callable

from trace_pipe.pipeline.errors import TraceError
from trace_pipe.pipeline.mooncake import Row

from .sweep import SweepPoint, SweepSpec, check_jobs, guarded, run_point

INSTALL_HINT = "error: --ray needs Ray, an optional extra: pip install 'trace-pipe[ray]'"

# A task whose worker process dies (OOM killer, a lost node) is re-run this many times; Ray
# does not retry a Python exception, which is a bug or a TraceError row, never a fault.
MAX_RETRIES = 3

PointFn = Callable[[list[Row], list[str], SweepSpec, SweepPoint], dict]


def require():
    """The `ray` module, or the one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise TraceError(INSTALL_HINT) from None
    return ray


_DATA: tuple[str, tuple] | None = None  # (object id, (rows, sources, spec)) in a worker process


def _task(box: list, point: SweepPoint, fn: PointFn) -> dict:
    # The reference comes boxed in a list: Ray would otherwise resolve (and unpickle) the whole
    # trace for every task; this way a worker unpickles it once.
    global _DATA
    import ray

    ref = box[0]
    if _DATA is None or _DATA[0] != ref.hex():
        _DATA = None  # drop the previous sweep's trace before fetching this one
        _DATA = (ref.hex(), ray.get(ref))
    rows, sources, spec = _DATA[1]
    return guarded(fn, rows, sources, spec, point)


def _died_row(p: SweepPoint, e: Exception, retries: int) -> dict:
    why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return {"num_workers": p.num_workers, "router_mode": p.router_mode,
            "error": f"error: Ray gave up on this configuration after {retries} retries: {why}"}


def _probe(address: str | None) -> None:
    """Ray keeps retrying a head that does not answer, minutes on end; a HOST:PORT nothing
    listens on is a one-line error at once. Only the address given is contacted."""
    if not address or address in ("auto", "local"):
        address = os.environ.get("RAY_ADDRESS") or None  # what Ray itself falls back to
    if not address or address in ("auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not port.isdigit():
        return  # Ray's own error says what it expects
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=10).close()
    except OSError as e:
        raise TraceError(f"error: --ray: no Ray head answers at {address}: {e.strerror or e}") from None


def _cancel(ray, refs: list) -> None:
    """Stop these tasks, running or queued. Ray 2.60 sometimes starts a task whose worker lease
    was being granted as the task was cancelled (seen here about one time in three when
    cancelling right after submission); a cancel repeated a moment later kills those too."""
    for pause in (0.0, 0.2, 0.3):
        time.sleep(pause)
        for ref in refs:
            ray.cancel(ref, force=True)


def connect(address: str | None) -> bool:
    """`ray.init` with Ray's own address rules (None: RAY_ADDRESS, else the cluster `ray start`
    began on this machine, else a new local Ray for this sweep). True when this call connected
    (the caller then disconnects); an existing connection is used as it is."""
    ray = require()
    if ray.is_initialized():
        return False
    # Ray reports usage statistics to its developers unless told not to; a sweep sends nothing
    # anywhere but the cluster it was pointed at (export RAY_USAGE_STATS_ENABLED=1 to opt in).
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    _probe(address)
    try:
        ray.init(address=address or None, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.WARNING)
    except (ConnectionError, ValueError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TraceError(f"error: --ray: cannot connect to {address or 'Ray'}: {first}") from None
    return True


def run_sweep_ray(rows: list[Row], sources: list[str], spec: SweepSpec, points: list[SweepPoint],
                  jobs: int | None = None, on_done: Callable[[dict], None] | None = None,
                  max_retries: int = MAX_RETRIES, point_fn: PointFn = run_point) -> list[dict]:
    """Rows in `points` order, on the Ray cluster this process is connected to (`connect`).
    `jobs`: at most this many configurations in flight (default: all, Ray schedules them on free
    CPUs). `on_done(row)` as each configuration finishes. On any exception, Ctrl-C included, the
    outstanding tasks are cancelled before it propagates."""
    ray = require()
    check_jobs(jobs)
    box = [ray.put((rows, sources, spec))]
    task = ray.remote(_task).options(num_cpus=1, max_retries=max_retries, retry_exceptions=False)
    out: list[dict | None] = [None] * len(points)
    pending: dict = {}  # ObjectRef -> grid index
    todo = iter(enumerate(points))
    limit = jobs or len(points)

    def submit() -> None:
        for i, p in todo:
            pending[task.remote(box, p, point_fn)] = i
            if len(pending) >= limit:
                return

    try:
        submit()
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                i = pending.pop(ref)
                try:
                    row = ray.get(ref)
                except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                        ray.exceptions.OutOfMemoryError) as e:
                    row = _died_row(points[i], e, max_retries)
                out[i] = row
                if on_done is not None:
                    on_done(row)
            submit()
    except BaseException:
        _cancel(ray, list(pending))
        raise
    return out  # type: ignore[return-value]
