"""Which command modules make up the CLI."""

from __future__ import annotations

import importlib

import typer

# command -> its module (each exposes register(app))
COMMANDS = {"convert": "convert_cmd", "check": "check_cmd", "replay": "replay_cmd", "collect": "collect_cmd",
            "sweep": "sweep_cmd", "query": "query_cmd"}
MODULES = tuple(COMMANDS.values())


def register(app: typer.Typer, only: str | None = None) -> None:
    """Register every command, or only `only`: a run of one command then imports just what that
    command needs (a replay of Mooncake rows never loads the converter, nor numpy)."""
    for name in (COMMANDS[only],) if only in COMMANDS else MODULES:
        try:
            mod = importlib.import_module(f"trace_pipe.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"trace_pipe.cli.{name}":
                raise
            continue
        mod.register(app)
