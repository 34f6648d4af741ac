"""The `trace-pipe` command: a thin Typer layer; every command calls library functions tests can call."""

from __future__ import annotations

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


def _register() -> None:
    # Each command module owns its options and registers itself; main only lists them.
    from . import commands

    commands.register(app)


def main() -> None:
    _register()
    app()


if __name__ == "__main__":
    main()
