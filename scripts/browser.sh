#!/usr/bin/env bash
# Provide the Chromium that the web-page tests (tests/test_app.py) drive, when none is found:
# Debian's chromium through apt-get when running as root, else Playwright's own build.
# Never fails the build: without a browser the web-page tests fail with one line saying what to
# install (tests/browsers.py), so a missing browser is reported where the tests are read.
# Usage: bash scripts/browser.sh [PYTHON]   (PYTHON: the venv's python, with playwright installed)
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${1:-python3}"

found() { "$PY" tests/browsers.py; }

if found >/dev/null 2>&1; then
  echo "browser: $(found)"
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "browser: no Chromium found; installing Debian's chromium with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  if apt-get update -qq && apt-get install -y -qq chromium >/dev/null && found >/dev/null 2>&1; then
    echo "browser: $(found)"
    exit 0
  fi
  echo "browser: apt-get could not install chromium" >&2
fi
echo "browser: no Chromium found; trying Playwright's own (python -m playwright install chromium)"
if "$PY" -m playwright install chromium && found >/dev/null 2>&1; then
  echo "browser: $(found)"
  exit 0
fi
hint="$(found 2>/dev/null | tail -n 1)"
echo "browser: WARNING: ${hint:-no Chromium for the web-page tests: apt-get install chromium, or python -m playwright install chromium}" >&2
exit 0
