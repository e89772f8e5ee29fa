"""Run folders (`runs/train/NAME`, `runs/eval/NAME`) shared by train, eval and score."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import IO

from officescore.errors import ConfigError, ModelError
from officescore.files import hold_lock, make_folder

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
# In a run folder: the label backend trained it but did not use it (worse, failed or killed), so no
# "newest run" lookup picks it; naming the folder or its best.pt still loads it.
NOT_USED_FILE = "NOT_USED.txt"
LOCK_FILE = ".train.lock"  # held by the training writing a run folder
ARGS_FILE = "args.json"  # a run's settings, written by `train` (paths relative to the run folder)


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


def lock_run_dir(run_dir: Path) -> IO[str] | None:
    """Hold `run_dir` for one training until the returned handle is closed. Two trainings writing one
    folder (`--resume` while it still runs) would overwrite each other's last.pt and log every step twice.
    """
    try:
        return hold_lock(Path(run_dir) / LOCK_FILE)
    except BlockingIOError:
        raise ConfigError(
            f"{run_dir}: another training is writing to this run folder; wait for it to stop "
            "(Ctrl-C saves last.pt), then resume"
        ) from None
    except OSError:  # a folder we may not write: saving the first checkpoint says so
        return None


def mark_not_used(run_dir: Path, why: str) -> None:
    """Keep `run_dir` out of `newest_best_checkpoint`, saying why in the folder itself."""
    if run_dir.is_dir():
        text = f"The label backend did not use this model: {why}\n"
        (run_dir / NOT_USED_FILE).write_text(text, encoding="utf-8")


def training_run(model: Path | str) -> Path | None:
    """The run folder a model file came from (`<run>/weights/*.pt` beside the run's args.json), or
    None for a model outside a training run."""
    model = Path(model)
    run_dir = model.parent.parent
    return run_dir if model.parent.name == "weights" and (run_dir / ARGS_FILE).is_file() else None


def trained_data_set(model: Path | str) -> Path | None:
    """The data set a run's checkpoint (`<run>/weights/*.pt`) was trained on, as the run's args.json
    records it (relative to the run folder); None for a model outside a run or a run without it."""
    run_dir = training_run(model)
    if run_dir is None:
        return None
    args_file = run_dir / ARGS_FILE
    try:
        data = json.loads(args_file.read_text(encoding="utf-8")).get("data")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        return None
    return Path(os.path.normpath(args_file.parent / data)) if isinstance(data, str) and data else None


def newest_best_checkpoint(train_runs: Path) -> Path | None:
    """The newest `<train_runs>/*/weights/best.pt` by modification time (ties by path), if any;
    runs marked NOT_USED.txt are left out."""
    found = [
        p
        for p in Path(train_runs).glob("*/weights/best.pt")
        if p.is_file() and not (p.parent.parent / NOT_USED_FILE).exists()
    ]
    if not found:
        return None
    return max(found, key=lambda p: (p.stat().st_mtime, str(p)))


def best_checkpoint_in(folder: Path) -> Path | None:
    """What a folder given as --model means: a run folder's weights/best.pt, a weights folder's
    best.pt, else the newest best.pt of the runs inside it (None: none of these)."""
    for candidate in (Path(folder) / "weights" / "best.pt", Path(folder) / "best.pt"):
        if candidate.is_file():
            return candidate
    return newest_best_checkpoint(folder)


def model_file(path: Path | str, option: str = "") -> Path:
    """The model a path names: a file as given (missing or not: the loader says which); a folder:
    `best_checkpoint_in` it. The one place every command turns a folder into its model, torch-free
    so a wrong --model is named before torch loads; `option` ("--model") names the flag in the error."""
    path = Path(path)
    if not path.is_dir():
        return path
    found = best_checkpoint_in(path)
    if found is None:
        named = f"{option} {path}" if option else str(path)
        raise ModelError(
            f"{named}: a folder with no weights/best.pt in it or its runs; pass a model file such as "
            f"{path / 'weights' / 'best.pt'}"
        )
    return found


def existing_model_file(path: Path | str, option: str = "", coco: bool = False, exports: bool = True) -> Path:
    """`model_file`, which must name a file: else `no_model_file`'s error."""
    found = model_file(path, option)
    if not found.is_file():
        raise no_model_file(found, option, coco, exports)
    return found


def no_model_file(path: Path, option: str = "", coco: bool = False, exports: bool = True) -> ModelError:
    """The one message for a model file that is not there, naming the flag (`option`) where known and
    what the command takes instead: `coco` where the zero-shot model works, exports where they load."""
    named = f"{option} {path}" if option else str(path)
    takes = ["a checkpoint (weights/best.pt)", "a run folder"]
    takes += ["a TorchScript export"] if exports else []
    takes += ["`coco`"] if coco else []
    return ModelError(f"{named}: no such model file; pass {', '.join(takes[:-1])} or {takes[-1]}")
