"""`[label]` in officescore.toml: shared by label push / pull / backend; its api-key never a flag."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from cliroot import root_context

from officescore.cli import main
from officescore.cli.settings import command_defaults
from officescore.errors import ConfigError


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err


def test_label_table_is_shared_by_the_subcommands_and_keeps_the_key_out() -> None:
    config = {
        "label": {"url": "http://ls:8080", "api-key": "secret", "project": "offices", "push": {"conf": 0.5}}
    }
    defaults = command_defaults(root_context(), config)["label"]
    assert defaults["push"] == {"url": "http://ls:8080", "project": "offices", "conf": 0.5}
    assert defaults["pull"] == {"url": "http://ls:8080", "project": "offices"}
    assert defaults["backend"] == {"url": "http://ls:8080"}  # it has --connect, no --project
    assert "secret" not in repr(defaults)


def test_config_url_project_and_key_are_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    monkeypatch.delenv("OFFICESCORE_CONFIG", raising=False)
    code, _, err = run(["label", "pull", "--out", "export"], capsys)
    assert code == 2 and "Missing option '--project'" in err
    (tmp_path / "officescore.toml").write_text(
        f'[label]\nurl = "http://127.0.0.1:{port}"\nproject = "offices"\napi-key = "from-the-config"\n'
    )
    code, _, err = run(["label", "pull", "--out", "export"], capsys)
    # The key was found (no "no API key" error), the URL came from the file, the key is not shown.
    assert code == 2 and f"Label Studio is not reachable at http://127.0.0.1:{port}" in err
    assert "from-the-config" not in err
    (tmp_path / "officescore.toml").write_text('[label]\nproject = "offices"\n')
    code, _, err = run(["label", "pull", "--out", "export"], capsys)
    assert code == 2 and "no Label Studio API key: set LABEL_STUDIO_API_KEY" in err


def test_makefile_installs_the_label_studio_the_extra_names() -> None:
    import re
    import sys

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib

    repo = Path(__file__).resolve().parent.parent
    extras = tomllib.loads((repo / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    (spec,) = extras["labelstudio-server"]
    makefile = re.search(r"^LABEL_STUDIO := (.+)$", (repo / "Makefile").read_text(), re.M)
    assert makefile is not None and makefile.group(1).strip() == spec


def test_a_subcommands_table_wins_over_the_shared_one() -> None:
    """[label.push] project = ... for one subcommand beside [label] project = ... for all of them:
    push takes its own, the others the shared one."""
    config = {"label": {"project": "offices", "push": {"project": "review"}}}
    defaults = command_defaults(root_context(), config)["label"]
    assert defaults["push"]["project"] == "review" and defaults["pull"]["project"] == "offices"


def test_the_api_key_in_a_subcommands_table_is_refused_naming_where_it_goes() -> None:
    """[label.push] api-key would be skipped as a secret yet never read: "no API key" would follow."""
    assert "api_key" not in command_defaults(root_context(), {"label": {"api-key": "k"}})["label"]["push"]
    with pytest.raises(
        ConfigError, match=r"^\[label.push\] api-key: a secret is read only under \[label\]; move it there$"
    ):
        command_defaults(root_context(), {"label": {"push": {"api-key": "k"}}})
