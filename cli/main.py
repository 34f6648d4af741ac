"""The `trace-pipe` command: a thin Typer layer; every command calls library functions tests can call."""

from __future__ import annotations

import os
import sys

import typer

app = typer.Typer(
    name="trace-pipe",
    help="Dynamo agent traces to (agentic) Mooncake and Perfetto; DAG replay through mock workers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Dynamo agent traces to (agentic) Mooncake and Perfetto; DAG replay through mock workers."""


def _register(only: str | None = None) -> None:
    # Each command module owns its options and registers itself; main only lists them.
    from . import commands

    commands.register(app, only)


def main() -> None:
    # the command word is the first argument (the root takes no options but --help)
    _register(sys.argv[1] if len(sys.argv) > 1 else None)
    try:
        app()
    finally:
        _flush_stdout()


def _flush_stdout() -> None:
    """`trace-pipe ... | head -1`: the reader left. Typer turns a broken pipe met while a command
    runs into exit 1; output still buffered meets it here, at the last flush. Either way: no
    traceback, no error line, exit 1 (stdout pointed at devnull so the interpreter's own final
    flush cannot fail again)."""
    try:
        sys.__stdout__.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.__stdout__.fileno())
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
