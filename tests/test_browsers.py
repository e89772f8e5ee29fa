"""Which Chromium the web-page tests use, and that without one they fail (never skip)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import browsers
import pytest
from browsers import ENV_CHROMIUM, INSTALL_HINT, find_chromium

SCRIPT = Path(__file__).with_name("browsers.py")


def _fake_binary(folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return path


def test_explicit_binary_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    binary = _fake_binary(tmp_path / "opt", "my-chrome")
    monkeypatch.setenv("PATH", str(_fake_binary(tmp_path / "bin", "chromium").parent))
    monkeypatch.setenv(ENV_CHROMIUM, str(binary))
    assert find_chromium() == str(binary)
    monkeypatch.setenv(ENV_CHROMIUM, str(tmp_path / "nowhere"))
    assert find_chromium() is None  # a wrong explicit path is not silently replaced


def test_debian_chromium_on_path_then_playwrights_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV_CHROMIUM, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.setattr(browsers, "_playwright_chromium", lambda: "/cache/ms-playwright/chrome")
    assert find_chromium() == "/cache/ms-playwright/chrome"
    debian = _fake_binary(tmp_path / "bin", "chromium")
    assert find_chromium() == str(debian)


def test_without_a_browser_the_finder_says_what_to_install(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != ENV_CHROMIUM}
    env["PATH"] = str(tmp_path)  # no chromium here
    env["PLAYWRIGHT_BROWSERS_PATH"] = str(tmp_path / "empty")  # nor a Playwright build
    done = subprocess.run([sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stdout.strip() == INSTALL_HINT
    assert "apt-get install chromium" in INSTALL_HINT and "playwright install chromium" in INSTALL_HINT


def test_web_page_tests_fail_without_a_browser() -> None:
    from test_app import _new_page

    with pytest.raises(BaseException) as info:  # BaseException: a skip must be caught too
        _new_page(None)
    assert info.type is pytest.fail.Exception and str(info.value) == INSTALL_HINT
