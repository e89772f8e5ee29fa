"""Conventions every command shares: help, version, config defaults, error exits."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from officescore import __version__
from officescore.cli import main
from officescore.cli.commands import COMMAND_MODULES

COMMANDS = [
    *("scrape", "sample", "ingest", "stats", "train", "eval", "score", "export", "serve"),
    *("audit", "select", "prelabel", "label"),
]


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["--version"], capsys)
    assert code == 0 and out.strip() == f"officescore {__version__}"


def test_every_command_is_registered_with_examples(capsys: pytest.CaptureFixture[str]) -> None:
    assert len(COMMAND_MODULES) == len(COMMANDS)
    code, out, _ = run(["--help"], capsys)
    assert code == 0
    for command in COMMANDS:
        assert f" {command} " in out, command
        code, out_command, _ = run([command, "--help"], capsys)
        assert code == 0
        assert "Examples" in out_command and f"officescore {command}" in out_command, command


def test_commands_that_print_results_take_json(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ["scrape", "sample", "ingest", "stats", "train", "eval", "score", "export"]:
        _, out, _ = run([command, "--help"], capsys)
        assert "--json" in out, command


def test_unknown_command_and_option_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["frobnicate"], capsys)
    assert code == 2 and "No such command" in err
    code, _, err = run(["sample", "--no-such-flag"], capsys)
    assert code == 2 and "No such option" in err


def test_user_error_is_one_red_line_and_debug_is_accepted_anywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = str(tmp_path / "missing")
    code, _, err = run(["stats", missing], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith(f"error: {missing}")
    assert "Traceback" not in err
    # --debug before or after the command (or OFFICESCORE_DEBUG=1): the same red line and exit 2,
    # with the traceback of where the error was raised in front of it
    for args in (["--debug", "stats", missing], ["stats", missing, "--debug"]):
        code, _, err = run(args, capsys)
        assert code == 2 and "Traceback" in err and "No such option" not in err, err
        assert err.strip().splitlines()[-1].startswith(f"error: {missing}"), err
    monkeypatch.setenv("OFFICESCORE_DEBUG", "1")
    code, _, err = run(["stats", missing], capsys)
    assert code == 2 and "Traceback" in err


def test_a_missing_extra_is_named_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A fresh `pip install -e .` has no label-studio-sdk (nor httpx): `label push` says which extra
    to install instead of an unexpected ModuleNotFoundError; other missing modules stay crashes."""
    photo = tmp_path / "office.png"
    Image.new("RGB", (32, 32)).save(photo)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "not-used")
    monkeypatch.setitem(sys.modules, "httpx", None)  # `import httpx` raises ModuleNotFoundError
    code, _, err = run(["label", "push", str(photo), "--project", "offices"], capsys)
    assert code == 2 and err.strip().splitlines() == [
        "error: httpx is not installed; this command needs the label extra: pip install 'officescore[label]'"
    ]

    code, _, err = run(["--debug", "label", "push", str(photo), "--project", "offices"], capsys)
    assert code == 2 and "Traceback" in err and "needs the label extra" in err  # --debug: also the traceback

    def lost(*args: object, **kwargs: object) -> None:
        raise ModuleNotFoundError("No module named 'yaml'", name="yaml")

    monkeypatch.setattr("officescore.sample.write_sample", lost)
    code, _, err = run(["sample", str(tmp_path / "s")], capsys)
    assert code == 1 and err.startswith("unexpected error: ModuleNotFoundError")


def test_each_extra_named_for_a_missing_module_is_one_pyproject_offers() -> None:
    """Mutation review B: advice to install an extra that does not exist fails in pip, not here."""
    import tomllib

    from officescore.cli import _EXTRA_OF_MODULE

    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    extras = tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"]
    assert set(_EXTRA_OF_MODULE.values()) <= set(extras)


def test_unexpected_error_exits_1_with_a_traceback_only_on_debug(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("officescore.sample.write_sample", crash)
    code, out, err = run(["sample", str(tmp_path / "s")], capsys)
    assert code == 1 and out == "" and "Traceback" not in err
    assert err.strip() == "unexpected error: RuntimeError: disk on fire (run with --debug for the traceback)"
    code, _, err = run(["sample", str(tmp_path / "s"), "--debug"], capsys)
    assert code == 1 and "Traceback" in err and "disk on fire" in err and "in crash" in err, err


def test_config_file_sets_defaults_and_flags_win(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "officescore.toml").write_text("[sample]\nimages = 2\nsize = 64\n")
    code, out, _ = run(["sample", "from-config", "--json"], capsys)
    assert code == 0
    assert json.loads(out)["images"] == 2 and json.loads(out)["size"] == 64
    assert len(list((tmp_path / "from-config" / "images").glob("*.jpg"))) == 2
    code, out, _ = run(["sample", "from-flag", "--images", "3", "--json"], capsys)
    assert code == 0
    assert json.loads(out)["images"] == 3 and json.loads(out)["size"] == 64  # the flag wins, the rest stays
    assert len(list((tmp_path / "from-flag" / "images").glob("*.jpg"))) == 3


def test_broken_config_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "officescore.toml").write_text("[sample\n")
    code, _, err = run(["sample", "x"], capsys)
    assert code == 2 and "officescore.toml" in err and len(err.strip().splitlines()) == 1


def test_python_dash_m_entry_point() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "officescore", "--version"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and __version__ in result.stdout


def test_a_long_status_line_stays_one_line_off_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    """Piped into a log or grep, a plain status line is not hard-wrapped at 80 columns mid-sentence."""
    from officescore.cli.common import console, err_console

    line = "wrote " + "/a/long/path" * 20 + " in 1.0s"
    console.print(line)
    err_console.print(line)
    out, err = capsys.readouterr()
    assert out.splitlines() == [line] and err.splitlines() == [line]
