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
    "audit",
    "select",
    "export",
    "serve",
    "prelabel",
    "label",
)


def register(app: typer.Typer) -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(f"officescore.cli.{name}").register(app)
