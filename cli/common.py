"""What every command shares: one-line errors instead of tracebacks, and progress on a terminal."""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Iterator

import typer

from trace_pipe.pipeline.errors import TraceError


@contextlib.contextmanager
def user_errors(exit_code: int = 2) -> Iterator[None]:
    """Turn TraceError (and unreadable files) into one line on stderr and a non-zero exit."""
    try:
        yield
    except TraceError as e:
        msg = str(e)
        print(msg if msg.startswith("error") else f"error: {msg}", file=sys.stderr)
        raise typer.Exit(exit_code) from None
    except BrokenPipeError:
        raise  # the reader went away (`| head`): not a user error; cli.main exits quietly
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise typer.Exit(exit_code) from None


def progress_enabled() -> bool:
    """A progress bar only when stderr is a terminal; quiet when piped or in CI."""
    return sys.stderr.isatty()


class Progress:
    """A minimal stderr progress line (no dependency): `Progress(total, label).update(n)`."""

    def __init__(self, total: int | None, label: str) -> None:
        self.total = total
        self.label = label
        self.done = 0
        self.enabled = progress_enabled()
        self._last = -1

    def update(self, n: int = 1) -> None:
        self.done += n
        if not self.enabled:
            return
        if self.total:
            pct = int(100 * self.done / self.total)
            if pct != self._last:
                self._last = pct
                bar = "#" * (pct // 4)
                sys.stderr.write(f"\r{self.label} [{bar:<25}] {pct:3d}%")
                sys.stderr.flush()
        elif self.done % 10000 == 0:
            sys.stderr.write(f"\r{self.label} {self.done:,}")
            sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and (self._last >= 0 or self.done >= 10000):
            sys.stderr.write("\n")
            sys.stderr.flush()


def json_object_arg(text: str | None, flag: str) -> dict | None:
    """A JSON-object option value (`--extra-engine-args`, `--router-config`), or a one-line error."""
    if text is None:
        return None
    try:
        v = json.loads(text)
    except json.JSONDecodeError as e:
        raise TraceError(f"error: {flag}: invalid JSON: {e}") from None
    if not isinstance(v, dict):
        raise TraceError(f"error: {flag}: expected a JSON object")
    return v
