"""The root command's Click context, every command registered: what `cli.settings` reads."""

from __future__ import annotations

import typer

from officescore.cli import app, register_commands


def root_context() -> typer.Context:
    register_commands()
    return typer.Context(typer.main.get_command(app))
