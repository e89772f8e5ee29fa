"""Run folders (`runs/train/NAME`, `runs/eval/NAME`) shared by train, eval and score."""

from __future__ import annotations

import re
from pathlib import Path

from officescore.errors import ConfigError
from officescore.files import make_folder

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def check_run_name(name: str) -> None:
    if not _NAME.match(name):
        raise ConfigError(f"run name {name!r}: use letters, digits, '.', '_' or '-' (e.g. --name val-epoch5)")


def next_run_dir(parent: Path, name: str) -> Path:
    """Create and return parent/name, or name2, name3, ...: an earlier run is never overwritten."""
    check_run_name(name)
    parent = make_folder(parent, "runs folder")
    for n in range(1, 100_000):
        candidate = parent / (name if n == 1 else f"{name}{n}")
        try:
            candidate.mkdir()  # atomic: two processes never get the same folder
        except FileExistsError:
            continue
        return candidate
    raise ConfigError(f"{parent}: too many runs named {name!r}; choose another --name")


def newest_best_checkpoint(train_runs: Path) -> Path | None:
    """The newest `<train_runs>/*/weights/best.pt` by modification time (ties by path), if any."""
    found = [p for p in Path(train_runs).glob("*/weights/best.pt") if p.is_file()]
    if not found:
        return None
    return max(found, key=lambda p: (p.stat().st_mtime, str(p)))
