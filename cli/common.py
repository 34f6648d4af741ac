"""What every command shares: one-line errors instead of tracebacks, and progress on a terminal."""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Iterator

import typer

from trace_pipe.pipeline.errors import TraceError
from trace_pipe.pipeline.limits import JSON_DEPTH, json_depth


@contextlib.contextmanager
def user_errors(exit_code: int = 2) -> Iterator[None]:
    """Turn TraceError (bad input, said in one line) and what the system refuses (a file that
    cannot be read or written: OSError) into one line on stderr and a non-zero exit. Any other
    exception, a ValueError included, is a bug and surfaces as one, with its traceback: input
    is checked where it is read and raised as TraceError, so nothing else is the user's fault."""
    try:
        yield
    except TraceError as e:
        msg = str(e)
        print(one_line(msg if msg.startswith("error") else f"error: {msg}"), file=sys.stderr)
        raise typer.Exit(exit_code) from None
    except BrokenPipeError:
        raise  # the reader went away (`| head`): not a user error; cli.main exits quietly
    except OSError as e:
        print(one_line(f"error: {_os_error(e)}"), file=sys.stderr)
        raise typer.Exit(exit_code) from None


def one_line(msg: str) -> str:
    """`msg` as one printable line: control, format and separator characters and lone
    surrogates that an error quotes from the input (a key, a file name) are shown escaped
    (`\\n`, `\\x1e`, `\\ud800`), so the error stays one line and can always be printed."""
    if msg.isprintable():
        return msg
    return "".join(c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode("ascii")
                   for c in msg)


def _os_error(e: OSError) -> str:
    """`path: what the system said` (as the write errors of pipeline.io name their output)."""
    if e.strerror and e.filename is not None:
        return f"{e.filename}: {e.strerror}"
    return e.strerror or str(e)


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
    """A JSON-object option value (`--extra-engine-args`, `--router-config`), or a one-line error.
    Nesting is bounded by `limits.JSON_DEPTH` before parsing: the stdlib parser recurses per
    level, and these objects are two levels deep."""
    if text is None:
        return None
    depth = json_depth(text)
    if depth > JSON_DEPTH.maximum:
        raise TraceError(f"error: {flag}: JSON nested {depth:,} levels deep, above the limit of "
                         f"{JSON_DEPTH.maximum} ({JSON_DEPTH.what})")
    try:
        v = json.loads(text)
    except json.JSONDecodeError as e:
        raise TraceError(f"error: {flag}: invalid JSON: {e}") from None
    if not isinstance(v, dict):
        raise TraceError(f"error: {flag}: expected a JSON object")
    return v

