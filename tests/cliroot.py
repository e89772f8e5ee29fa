"""The root command's Click context, every command registered: what `cli.settings` reads; and the
cells of a table a command printed."""

from __future__ import annotations

import typer

from officescore.cli import app, register_commands


def root_context() -> typer.Context:
    register_commands()
    return typer.Context(typer.main.get_command(app))


def table_column(text: str, column: int) -> list[str]:
    """One column of a rich table's rows, each cell's wrapped lines joined (a row starts where its
    first cell has text; a folded cell breaks with no space, so the pieces join without one)."""
    cells: list[str] = []
    for line in text.splitlines():
        if not line.startswith("│"):
            continue
        parts = [part.strip() for part in line.split("│")[1:-1]]
        if parts[0]:
            cells.append(parts[column])
        else:
            cells[-1] += parts[column]
    return cells
