"""docs/commands.md is generated from the command-line app: it must match what `--help` says now."""

from __future__ import annotations

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
