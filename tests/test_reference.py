"""docs/commands.md is generated from the command-line app: it must match what `--help` says now."""

from __future__ import annotations

import re
import shlex

from officescore.cli.commands import COMMAND_MODULES
from officescore.cli.reference import REFERENCE, command_reference, markdown_epilog


def test_the_command_reference_is_current() -> None:
    written = REFERENCE.read_text(encoding="utf-8")
    assert written == command_reference(), "docs/commands.md is stale: run `make docs` and commit it"


def test_every_command_and_label_subcommand_has_a_section() -> None:
    text = REFERENCE.read_text(encoding="utf-8")
    names = ["eval" if m == "evaluate" else m for m in COMMAND_MODULES if m != "label"]
    for name in names + ["label push", "label pull", "label backend"]:
        assert f"`officescore {name}`" in text, name


def test_epilog_examples_become_a_console_block() -> None:
    epilog = "\n[bold]Examples[/bold]\n  officescore a\n\n  officescore b\n\nThen more text.\n"
    assert markdown_epilog(epilog) == (
        "**Examples**\n\n```console\nofficescore a\nofficescore b\n```\n\nThen more text."
    )


def _example_lines(markdown: str) -> list[str]:
    """Every line of the reference's console blocks, continuation lines (`\\`) joined."""
    lines: list[str] = []
    for block in re.findall(r"```console\n(.*?)```", markdown, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip() and not line.startswith("$ officescore"):  # the usage line: a pattern
                lines.append(line)
    return lines


def test_every_example_runs_in_a_shell_as_written() -> None:
    """A reader pastes an example line into a shell: comments start with #, no bare ( ) | or &,
    and what follows `officescore` parses as that command's arguments (nothing left over)."""
    import typer

    from officescore.cli import app, register_commands

    register_commands()
    root = typer.main.get_command(app)
    lines = _example_lines(command_reference())
    assert len(lines) > 40
    for line in lines:
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        tokens = list(lexer)
        assert not [t for t in tokens if set(t) <= set("();<|&")], line
        if "officescore" not in tokens:
            continue
        args = tokens[tokens.index("officescore") + 1 :]
        args = args[: args.index(">")] if ">" in args else args
        command, parent = root, None
        try:
            while True:  # down the groups (officescore, label) to the command, parsing each level
                ctx = command.make_context("officescore", list(args), parent=parent)
                if not hasattr(command, "resolve_command"):
                    break
                rest = [*getattr(ctx, "_protected_args", getattr(ctx, "protected_args", [])), *ctx.args]
                _, command, args = command.resolve_command(ctx, rest)
                parent = ctx
        except Exception as exc:  # Click's usage errors; Typer may vendor its own Click, so by behaviour
            if not hasattr(exc, "format_message"):
                raise
            raise AssertionError(f"{line}\n{exc.format_message()}") from exc
