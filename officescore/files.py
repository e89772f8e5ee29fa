"""Small file helpers: atomic writes, hashing, JSON, advisory locks."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, BinaryIO

from officescore.errors import ConfigError


def _read_umask() -> int:
    mask = os.umask(0)  # the only portable way to read it is to set it and put it back; done once,
    os.umask(mask)  # at import, because the process-wide umask is not thread-safe to touch
    return mask


_UMASK = _read_umask()


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write through a temp file in the same folder, fsync, then rename: readers never see half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual permissions
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda handle: handle.write(data))


def atomic_write_json(path: Path, obj: Any, indent: int | None = 2) -> None:
    text = json.dumps(obj, indent=indent, ensure_ascii=False, allow_nan=False)
    atomic_write_bytes(path, (text + "\n").encode("utf-8"))


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def hold_lock(path: Path, wait: bool = False) -> IO[str]:
    """The open lock file `path`, exclusively locked until it is closed. Held by another process:
    BlockingIOError (or, with `wait`, the wait for it). Where the platform or the file system has no
    locks (Windows, some network shares) the file is returned unlocked: the work goes on unguarded.
    Opening the file may raise OSError (a folder we may not write): the caller says what that means."""
    handle = open(path, "a")  # noqa: SIM115 - the caller holds it
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory lock
        return handle
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        handle.close()
        raise
    except OSError:  # ENOLCK, EOPNOTSUPP: no locks here
        pass
    return handle


def relative_to_file(path: Path, file: Path) -> str:
    """`path` relative to the folder of `file`, with / (paths written in a file are relative to it)."""
    return Path(os.path.relpath(Path(path).resolve(), Path(file).resolve().parent)).as_posix()


def _first_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_output_file(path: Path, option: str) -> None:
    """Fail before any work if `path` cannot become a file (a folder there, or a file above it)."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{option} {path}: is a folder; give a file name")
    above = _first_existing(path.parent)
    if not above.is_dir():
        raise ConfigError(f"{option} {path}: {above} is a file, not a folder")


def check_output_dir(path: Path, option: str) -> None:
    """Fail before any work if `path` cannot become a folder (a file there or above it)."""
    path = Path(path)
    existing = _first_existing(path)
    if not existing.is_dir():
        raise ConfigError(f"{option} {path}: {existing} is a file; give a folder")


def make_folder(path: Path, what: str) -> Path:
    """mkdir -p with a one-line ConfigError when a file stands in the way or it cannot be created."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ConfigError(f"{what} {path}: a file stands in the way of this folder") from None
    except OSError as exc:
        raise ConfigError(f"{what} {path}: cannot create the folder ({exc.strerror})") from None
    return path


def ingest_advice(folder: Path) -> str | None:
    """What to run when `folder` is a labelling export (sample's or label pull's annotations.json,
    a tool's COCO file) given where a data set belongs: ingest it elsewhere, as ingest refuses an
    --out holding the export's own photos. None for a folder with no such JSON file."""
    data_set_files = ("train.json", "val.json", "dataset.json")
    names = sorted(p for p in folder.glob("*.json") if p.name not in data_set_files)
    exports = [p for p in names if _looks_like_coco(p)]  # not a run's args.json or metrics.json
    if not exports:
        return None
    return (
        f"it holds an export ({exports[0].name}): make a data set of it with "
        f"`officescore ingest {exports[0]} --out data/dataset` and pass data/dataset"
    )


def _looks_like_coco(path: Path) -> bool:
    """Whether a JSON file has an "images" key near its start, as COCO exports do (the tools write
    it before the long annotations list): read no further, an export can be hundreds of MB."""
    try:
        with path.open("rb") as file:
            return b'"images"' in file.read(1 << 20)
    except OSError:
        return False
