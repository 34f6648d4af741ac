"""`--output-dir DIR`: the prediction directory `aisimulate predict` writes (`prediction.json`, the
whole report; `requests.jsonl` with `--capture-per-request`), in AISimulate's encodings, refusing
a non-empty directory without `--overwrite` and, with it, replacing only these files."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Iterable

from trace_pipe.pipeline.errors import TraceError
from trace_pipe.pipeline.io import atomic_output

REPORT = "prediction.json"
REQUESTS = "requests.jsonl"


def check(directory: str, overwrite: bool) -> None:
    """Before any work, so nothing runs for an output it cannot write."""
    root = Path(directory)
    if root.exists() and not root.is_dir():
        raise TraceError(f"error: --output-dir {directory}: exists and is not a directory")
    if root.is_dir() and not overwrite and any(root.iterdir()):
        raise TraceError(f"error: --output-dir {directory}: not empty; pass --overwrite to replace {REPORT} and "
                         f"{REQUESTS} there")


def write(directory: str, full_report: dict, rows: Iterable[dict] | None) -> Path:
    """Inside the caller's `output_group`: the report (indented, keys sorted) and, when `rows`
    are given, one compact sorted-key JSON object per request, as AISimulate writes them."""
    root = Path(directory)
    with atomic_output(root / REPORT) as f:
        f.write(json.dumps(full_report, indent=2, sort_keys=True).encode() + b"\n")
    if rows is not None:
        with atomic_output(root / REQUESTS) as f:
            for row in rows:
                f.write(json.dumps(row, sort_keys=True, separators=(",", ":")).encode() + b"\n")
    return root / REPORT


def drop_stale_requests(directory: str) -> None:
    """After an --overwrite run without per-request capture: an earlier run's requests.jsonl would
    sit beside a report it does not belong to (AISimulate removes its known outputs too)."""
    with contextlib.suppress(FileNotFoundError):
        (Path(directory) / REQUESTS).unlink()
