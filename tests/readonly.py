"""A scrape folder as on a read-only mount or in another user's data/raw, imitated (the tests may
run as root, who may write anywhere)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest


def imitate_read_only(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """`folder` cannot be written, and SQLite cannot open a WAL database in it, not even to read."""
    folder = folder.resolve()
    real_access, real_connect = os.access, sqlite3.connect

    def access(path: object, mode: int, **kwargs: object) -> bool:
        return not (mode & os.W_OK and Path(str(path)).resolve() == folder) and real_access(path, mode)  # type: ignore[arg-type]

    def connect(target: object, *args: object, **kwargs: object) -> sqlite3.Connection:
        if Path(str(target)).resolve().parent == folder:
            raise sqlite3.OperationalError("unable to open database file")
        return real_connect(target, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "access", access)
    monkeypatch.setattr(sqlite3, "connect", connect)
