"""The Chromium the web-page tests drive: Debian's `chromium` on PATH, else Playwright's own build.

`make browser` (a prerequisite of `make test`, see scripts/browser.sh) installs one when this finds
none; run as a script this prints the browser it found, or what to install, and exits 1 without one.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

ENV_CHROMIUM = "OFFICESCORE_CHROMIUM"  # an explicit browser binary wins over the search
DEBIAN_NAMES = ("chromium", "chromium-browser")
INSTALL_HINT = (
    "no Chromium for the web-page tests: run `make browser` (as root it runs apt-get install chromium; "
    "otherwise python -m playwright install chromium), or set OFFICESCORE_CHROMIUM to a Chromium binary"
)


def find_chromium() -> str | None:
    """Path of a Chromium binary Playwright can launch, or None when there is none."""
    explicit = os.environ.get(ENV_CHROMIUM)
    if explicit:
        return explicit if Path(explicit).is_file() else None
    for name in DEBIAN_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return _playwright_chromium()


def _playwright_chromium() -> str | None:
    """The build `python -m playwright install chromium` puts in its cache, if it is there."""
    try:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as playwright:
            path = playwright.chromium.executable_path
    except Exception:  # playwright missing or its driver broken: no browser from it
        return None
    return path if path and Path(path).is_file() else None


if __name__ == "__main__":
    found = find_chromium()
    print(found or INSTALL_HINT)
    sys.exit(0 if found else 1)
