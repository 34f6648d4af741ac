"""The `trace-pipe` command: a thin Typer layer; every command calls library functions tests can call."""

from __future__ import annotations

import os
import signal
import sys

import typer
from typer.core import TyperGroup

try:  # Typer 0.26+ carries its own click
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover - older Typer on PyPI's click
    from click import exceptions as click_errors

from .common import one_line


class _OneLineErrors(TyperGroup):
    """A bad command line (an unknown option, a value click cannot convert, a missing argument)
    is one line on stderr and exit 2, as every other bad input is; click would print a usage
    box of several lines. Help (asked for, or shown for no arguments) is unchanged."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            rv = super().main(*args, standalone_mode=False, **kwargs)
        except click_errors.NoArgsIsHelpError as e:
            e.show()
            sys.exit(e.exit_code)
        except click_errors.ClickException as e:
            print(one_line(f"error: {' '.join(e.format_message().split())}"), file=sys.stderr)
            sys.exit(e.exit_code)
        except typer.Abort:
            print("Aborted!", file=sys.stderr)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


app = typer.Typer(
    name="trace-pipe",
    cls=_OneLineErrors,
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


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, as Ctrl-C is: every command already stops on an
    interrupt with its temp files removed and earlier outputs untouched (atomic_output,
    output_group), and a worker pool cancelled; the process then exits 143, as killed by it."""


def _on_sigterm(signum: int, frame: object) -> None:
    if os.getpid() != _MAIN_PID:
        # a forked pool worker inherited this handler: die as the signal means (its parent
        # cancels the pool and reports)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        return
    global _got_sigterm
    _got_sigterm = True
    raise Terminated()


_MAIN_PID = os.getpid()
_got_sigterm = False


def main() -> None:
    global _MAIN_PID
    _MAIN_PID = os.getpid()
    # `collect` installs its own handler (stop receiving, drain, flush) over this one
    signal.signal(signal.SIGTERM, _on_sigterm)
    # the command word is the first argument (the root takes no options but --help)
    _register(sys.argv[1] if len(sys.argv) > 1 else None)
    try:
        app()
    except SystemExit as e:
        if _got_sigterm and e.code not in (0, None):
            raise SystemExit(128 + signal.SIGTERM) from None
        raise
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
