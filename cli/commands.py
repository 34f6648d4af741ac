"""Which command modules make up the CLI."""

from __future__ import annotations

import importlib

import typer

# module name -> present once its issue lands; each exposes register(app)
MODULES = ("convert_cmd", "check_cmd", "replay_cmd", "collect_cmd", "sweep_cmd")


def register(app: typer.Typer) -> None:
    for name in MODULES:
        try:
            mod = importlib.import_module(f"trace_pipe.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"trace_pipe.cli.{name}":
                raise
            continue
        mod.register(app)
