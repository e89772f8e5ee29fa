"""The command modules, in the order `--help` lists them. Each has `register(app)`."""

from __future__ import annotations

import importlib

import typer

COMMAND_MODULES = (
    "scrape",
    "sample",
    "ingest",
    "stats",
    "train",
    "evaluate",
    "score",
    "export",
    "serve",
)


def register(app: typer.Typer) -> None:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"officescore.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"officescore.cli.{name}":
                continue  # command not built yet; tests/test_cli.py checks all are present
            raise
        module.register(app)
