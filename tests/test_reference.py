"""docs/commands.md is generated from the command-line app: it must match what `--help` says now; and
every `officescore` command the README and guides show must still parse."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from officescore.cli.commands import COMMAND_MODULES
from officescore.cli.reference import REFERENCE, command_reference, markdown_epilog

ROOT = Path(__file__).resolve().parent.parent


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
    lines = _example_lines(command_reference())
    assert len(lines) > 40
    for line in lines:
        _assert_parses(line)


DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _doc_command_lines(markdown: str) -> tuple[list[str], list[str]]:
    """The `officescore` lines of a page's shell blocks (```sh, ```console, ```bash or plain; `\\`
    joined), and its inline code that starts with `officescore ` (often a command's name alone)."""
    lines, prose, fence = [], [], None  # fence: the open block's language ("" plain), None outside
    for line in markdown.replace("\\\n", " ").splitlines():
        marker = line.strip()
        if marker.startswith("```"):
            fence = marker[3:] if fence is None else None
        elif fence is None:
            prose.append(line)
        elif fence in ("", "sh", "console", "bash"):
            line = line.strip().removeprefix("$ ")
            if "officescore " in line and not line.startswith("#"):
                lines.append(line)
    return lines, re.findall(r"`(officescore [^`]+)`", "\n".join(prose))


def test_every_officescore_line_in_the_readme_and_guides_parses() -> None:
    """README, GUIDE and the other pages show commands a reader copies: each must still parse (a
    renamed or removed flag there is a promise broken). In prose, `officescore ingest` may name the
    command without its arguments; its flags must still exist. The benchmarks page records past runs."""
    checked = 0
    for page in DOCS:
        if page.name in ("BENCHMARKS.md", "commands.md"):  # history; the reference is checked above
            continue
        blocks, inline = _doc_command_lines(page.read_text(encoding="utf-8"))
        for line, whole in [*((b, True) for b in blocks), *((i, False) for i in inline)]:
            try:
                _assert_parses(line)
            except AssertionError as exc:
                if whole or "Missing " not in str(exc):
                    raise AssertionError(f"{page.relative_to(ROOT)}: {exc}") from None
            checked += 1
    assert checked > 90


def _assert_parses(line: str) -> None:
    import typer

    from officescore.cli import app, register_commands

    register_commands()
    root = typer.main.get_command(app)
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    tokens = list(lexer)
    assert not [t for t in tokens if set(t) <= set("();<|&")], line
    if "officescore" not in tokens:
        return
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
    assert not ctx.args, f"{line}\nleft over: {ctx.args}"  # eval takes them, to refuse them itself


def _command_paths(command: object, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """The root, every command and every subcommand, as the words after `officescore`."""
    subcommands = getattr(command, "commands", {})
    return [path, *(p for name, sub in subcommands.items() for p in _command_paths(sub, (*path, name)))]


def test_no_help_shows_a_type_after_a_flag(capsys: pytest.CaptureFixture[str]) -> None:
    """Typer 0.29's rich help printed `--json <bool>`, as if the flag took true or false; flags take
    no value (options that do keep theirs: `<path>`)."""
    import typer

    from officescore.cli import app, main, register_commands

    register_commands()
    paths = _command_paths(typer.main.get_command(app))
    assert ("label", "status") in paths and ("stats",) in paths
    typed = 0
    for path in paths:
        with pytest.raises(SystemExit):
            main([*path, "--help"])
        out = capsys.readouterr().out
        assert "--help" in out and "<bool>" not in out, (path, out)
        typed += "<path>" in out
    assert typed > 10  # options that take a value still show its type


def test_every_model_option_says_it_takes_a_run_folder() -> None:
    """Every command turns a `--model` run folder into its best.pt (runs.model_file); `select` and
    `audit` said "Checkpoint (.pt from train)" and "Checkpoint or TorchScript export" alone."""
    import typer

    from officescore.cli import app, register_commands

    register_commands()
    root = typer.main.get_command(app)
    helps = {}
    for path in _command_paths(root):
        command = root
        for name in path:
            command = command.commands[name]  # type: ignore[attr-defined]
        for param in command.params:
            if "--model" in getattr(param, "opts", ()):
                helps[" ".join(path)] = " ".join(param.help.split())
    assert {"score", "eval", "audit", "select", "export", "serve", "prelabel", "label push"} <= set(helps)
    assert [name for name, text in helps.items() if "run folder" not in text] == [], helps


def test_the_reference_script_takes_no_option_for_a_file_name(tmp_path: Path) -> None:
    """`python -m officescore.cli.reference --help` wrote the reference into a file named --help."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "officescore.cli.reference", "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1 and done.stderr.startswith(
        "usage: python -m officescore.cli.reference [FILE]"
    )
    assert not list(tmp_path.iterdir())


def _prose(markdown: str) -> str:
    """A page without its fenced blocks: what is rendered as text, links and inline code."""
    return re.sub(r"^\s*```.*?^\s*```", "", markdown, flags=re.S | re.M)


def _anchors(markdown: str) -> set[str]:
    """The #fragments GitHub gives a page's headings: lower case, punctuation other than hyphens
    dropped, spaces to hyphens; a heading met again gets -1, -2, ..."""
    anchors: set[str] = set()
    for heading in re.findall(r"^#{1,6} (.+)$", _prose(markdown), flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchor, n = slug, 0
        while anchor in anchors:
            n += 1
            anchor = f"{slug}-{n}"
        anchors.add(anchor)
    return anchors


def test_every_link_in_the_readme_and_docs_leads_somewhere() -> None:
    """A relative link names a file that exists and, after `#`, a heading of that page: a renamed
    heading or a moved page breaks the links to it silently on GitHub."""
    checked = 0
    for page in [*DOCS, ROOT / "CHANGELOG.md"]:
        text = page.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)\s]+)\)", _prose(text)):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            path, _, fragment = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            where = f"{page.relative_to(ROOT)}: ({target})"
            assert dest.exists(), f"{where}: no such file"
            if fragment and dest.suffix == ".md":
                assert fragment in _anchors(dest.read_text(encoding="utf-8")), f"{where}: no such heading"
            checked += 1
    assert checked > 40


# Options of other programs that the pages name alone in inline code.
OTHER_PROGRAMS_OPTIONS = {"--maxschedchunk": "pytest-xdist, in `make test`"}


def _command_options() -> dict[str, set[str]]:
    """Every command path (`label push`; "" the root) and the options it takes."""
    import typer

    from officescore.cli import app, register_commands

    register_commands()
    root = typer.main.get_command(app)
    options = {}
    for path in _command_paths(root):
        command = root
        for name in path:
            command = command.commands[name]  # type: ignore[attr-defined]
        names = {"--help"}
        for param in command.params:
            names.update(getattr(param, "opts", ()), getattr(param, "secondary_opts", ()))
        options[" ".join(path)] = names
    return options


def _bench_options(script: Path) -> set[str]:
    return set(re.findall(r"\"(--[a-z][a-z0-9-]*)\"", script.read_text(encoding="utf-8")))


def test_every_option_named_in_the_readme_and_docs_exists() -> None:
    """Prose names commands and options in inline code (`label backend --train`, `--train-every`,
    `bench/assist.py --replay`): a command must exist, an option after a command must be one of
    its options, and an option alone one of some command's (a renamed flag left in the prose)."""
    options = _command_options()
    everywhere = set().union(*options.values(), OTHER_PROGRAMS_OPTIONS)
    for script in (ROOT / "bench").glob("*.py"):
        everywhere |= _bench_options(script)
    checked = 0
    for page in DOCS:
        if page.name in ("BENCHMARKS.md", "commands.md"):  # history; the reference is generated
            continue
        for span in re.findall(r"`([^`]+)`", _prose(page.read_text(encoding="utf-8"))):
            words = span.split()
            words = words[1:] if words[:1] == ["officescore"] else words
            named = [o.split("=")[0] for o in words if re.fullmatch(r"--[a-z][a-z0-9-]*(=.*)?", o)]
            where = f"{page.relative_to(ROOT)}: `{span}`"
            if words[:1] == ["label"] and words[1:2] and re.fullmatch(r"[a-z]+", words[1]):
                assert f"label {words[1]}" in options, f"{where}: no such command"
            if not named:
                continue
            if words[0].startswith("--"):
                allowed = everywhere
            elif words[0].startswith("bench/"):
                allowed = _bench_options(ROOT / words[0]) | {"--help"}
            elif words[0] in options:
                command = " ".join(words[:2]) if " ".join(words[:2]) in options else words[0]
                allowed = options[command]
            else:  # another program's options (tensorboard, pip, torchrun)
                continue
            assert [o for o in named if o not in allowed] == [], where
            checked += 1
    assert checked > 100


def test_every_shell_block_in_the_readme_and_docs_is_valid_shell() -> None:
    """A reader pastes a ```sh, ```bash or ```console block into a shell: bash must parse it (a note
    in parentheses after a command, not behind #, is a syntax error)."""
    import subprocess

    checked = 0
    for page in DOCS:
        text = page.read_text(encoding="utf-8")
        for block in re.findall(r"^```(?:sh|bash|console)\n(.*?)^```", text, flags=re.S | re.M):
            done = subprocess.run(["bash", "-n"], input=block, capture_output=True, text=True)
            assert done.returncode == 0, f"{page.relative_to(ROOT)}:\n{block}\n{done.stderr}"
            checked += 1
    assert checked > 50


def _architecture_rows() -> dict[str, str]:
    """ARCHITECTURE.md's module table: `officescore/<path>` (a module or a package/) -> its row."""
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    rows: dict[str, str] = {}
    for path, row in re.findall(r"^\| `officescore/([^`]+)` \|(.*)$", text, flags=re.M):
        rows[path] = rows.get(path, "") + row
    return rows


def test_the_architecture_table_names_every_module_and_only_modules_that_exist() -> None:
    """Each module has a row, or is named in its package's row (or a parent package's: the label
    row names interactive/'s); each `name.py` a package's row names is a file of that package.
    Command modules of cli/ go by the rule the cli row states: one module per command."""
    rows = _architecture_rows()
    package_root = ROOT / "officescore"
    for module in sorted(package_root.rglob("*.py")):
        relative = module.relative_to(package_root)
        if module.name in ("__init__.py", "__main__.py") or relative.as_posix() in rows:
            continue
        if relative.parent.as_posix() == "cli" and module.stem in COMMAND_MODULES:
            continue
        packages = [p.as_posix() + "/" for p in relative.parents if p.as_posix() != "."]
        text = " ".join(rows.get(p, "") for p in packages)
        assert re.search(rf"\b{module.stem}\b", text), f"{relative}: in no row of docs/ARCHITECTURE.md"
    for path, row in rows.items():
        assert (package_root / path).exists(), f"docs/ARCHITECTURE.md: officescore/{path} does not exist"
        if path.endswith("/"):
            for name in re.findall(r"`([a-z_]+\.py)`", row):
                assert list((package_root / path).rglob(name)), f"officescore/{path}{name} does not exist"
