"""The `officescore` command line: a thin Typer layer over the library.

Each command lives in its own module under officescore/cli/ and imports heavy libraries (torch)
inside its function, so `officescore --help` stays fast.
"""

from __future__ import annotations

import json
import os
import sys
from typing import NoReturn

import typer
from rich.text import Text

from officescore import __version__
from officescore.cli.common import err_console
from officescore.cli.settings import command_defaults
from officescore.config import config_path, load_config
from officescore.errors import UserError


def _click_errors() -> tuple[type[Exception], ...]:
    """Usage-error classes: recent Typer vendors Click (TyperException), older Typer uses click."""
    errors: list[type[Exception]] = []
    if hasattr(typer, "TyperException"):
        errors.append(typer.TyperException)
    try:
        import click

        errors.append(click.ClickException)
    except ImportError:
        pass
    return tuple(errors)


_CLICK_ERRORS = _click_errors()


def _no_type_after_flags() -> None:
    """Typer 0.29's rich --help prints every option's value type, flags' included: `--json <bool>`
    reads as an option taking true or false, and flags take no value. Show none for them, as older
    Typer did (it has no `display_type_rich`: nothing to change)."""
    option = getattr(getattr(typer, "core", None), "TyperOption", None)
    shown = getattr(option, "display_type_rich", None)
    if shown is None or getattr(shown, "flags_untyped", False):  # old Typer, or done already
        return

    def display_type_rich(self: typer.core.TyperOption, ctx: object) -> str | None:
        return None if self.is_flag else shown(self, ctx)

    display_type_rich.flags_untyped = True  # type: ignore[attr-defined]
    option.display_type_rich = display_type_rich  # type: ignore[union-attr]


_no_type_after_flags()

app = typer.Typer(
    name="officescore",
    help="Scrape, ingest, train, evaluate and score home-office photos with Mask R-CNN.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"officescore {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    debug: bool = typer.Option(
        False, "--debug", help="Show full tracebacks for unexpected errors (also after a command)."
    ),
) -> None:
    """officescore: from image search to a deployed home-office scorer.

    Defaults for any command can be set in ./officescore.toml ([train], [scrape], ...); flags win.
    """
    ctx.default_map = command_defaults(ctx, load_config())


def register_commands() -> None:
    # Imported here so each command module stays independent of the others; once per process,
    # since main() may be called many times in one process (tests, embedding).
    if app.registered_commands:
        return
    from officescore.cli import commands

    commands.register(app)


def _sentence(exc: UserError) -> str:
    """The error's own sentence. Raised in a DataLoader worker process (a photo of the data set that
    no longer decodes), torch re-raises it with the worker's traceback as its message; the last line
    of that traceback is `module.Class: sentence`."""
    text = str(exc)
    if "\nOriginal Traceback" in text:
        raised = f"{type(exc).__module__}.{type(exc).__qualname__}:"
        _, found, sentence = text.rpartition(f"\n{raised}")
        text = sentence.strip() if found else text.rstrip().rsplit("\n", 1)[-1]
    return text


def _config_value_error(exc: Exception) -> str | None:
    """The sentence for a bad value that came from officescore.toml, or None when the command line
    gave it: Click's own names an option (`Invalid value for '--epochs'`) the user never typed."""
    param, ctx = getattr(exc, "param", None), getattr(exc, "ctx", None)
    if param is None or ctx is None or param.name is None:
        return None
    source = ctx.get_parameter_source(param.name)
    if getattr(source, "name", None) != "DEFAULT_MAP":  # the enum's name: Typer vendors its own Click
        return None
    flags = [flag[2:] for flag in param.opts if flag.startswith("--")]
    value = json.dumps((ctx.default_map or {}).get(param.name), default=str)
    key = flags[0] if flags else param.name
    return f"{config_path()}: {key} = {value} for `{ctx.command_path}`: {getattr(exc, 'message', exc)}"


# Top-level modules of the optional extras (pyproject.toml): a command that needs one names the extra
# to install instead of crashing with ModuleNotFoundError.
_EXTRA_OF_MODULE = {
    **dict.fromkeys(("label_studio_sdk", "httpx", "cv2", "shapely"), "label"),
    "streamlit": "app",
    **dict.fromkeys(("onnx", "onnxruntime"), "export"),
}


def _missing_extra(exc: ModuleNotFoundError) -> str | None:
    """The sentence for a module of an optional extra that is not installed, else None."""
    module = (exc.name or "").split(".")[0]
    extra = _EXTRA_OF_MODULE.get(module)
    if extra is None:
        return None
    install = f"pip install 'officescore[{extra}]'"
    return f"{module} is not installed; this command needs the {extra} extra: {install}"


def _crash(exc: Exception, debug: bool) -> NoReturn:
    """An unexpected failure: one line (the traceback on --debug), exit 1."""
    if debug:
        err_console.print_exception()
    else:
        message = f"unexpected error: {type(exc).__name__}: {exc} (run with --debug for the traceback)"
        err_console.print(Text(message, style="red"), soft_wrap=True)
    sys.exit(1)


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors -> one red line and exit 2; crashes -> exit 1 (traceback on --debug)."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = os.environ.get("OFFICESCORE_DEBUG") == "1"
    if "--debug" in args[: args.index("--") if "--" in args else len(args)]:
        debug = True
        args.remove("--debug")
    try:
        register_commands()
        # With standalone_mode=False Click returns the code of `typer.Exit(n)` instead of raising it.
        code = app(args=args, prog_name="officescore", standalone_mode=False)
    except UserError as exc:
        if debug:
            err_console.print_exception()
        err_console.print(Text(f"error: {_sentence(exc)}", style="red"), soft_wrap=True)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err_console.print("[red]interrupted[/red]")
        sys.exit(130)
    except _CLICK_ERRORS as exc:  # usage errors: Click prints usage + message, exit 2
        from_file = _config_value_error(exc)
        if from_file is None:
            exc.show()
        else:
            err_console.print(Text(f"error: {from_file}", style="red"), soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("[red]interrupted[/red]")
        sys.exit(130)
    except ModuleNotFoundError as exc:
        missing = _missing_extra(exc)
        if missing is None:
            _crash(exc, debug)
        if debug:
            err_console.print_exception()
        err_console.print(Text(f"error: {missing}", style="red"), soft_wrap=True)
        sys.exit(2)
    except Exception as exc:  # noqa: BLE001 - last-resort handler for unexpected failures
        _crash(exc, debug)
    sys.exit(code if isinstance(code, int) else 0)
