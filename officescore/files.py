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

# Folders bring every photo format: GIF (scrape keeps them), AVIF (Pillow reads it), HEIC/HEIF (phones;
# read with officescore[heic], else each is reported as unreadable instead of skipped in silence).
IMAGE_SUFFIXES = (
    ".jpg",
    ".jpeg",
    ".png",
    ".webp",
    ".bmp",
    ".tif",
    ".tiff",
    ".gif",
    ".avif",
    ".heic",
    ".heif",
)


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


def ingest_advice(path: Path) -> str | None:
    """What to run when `path`, given where a data set belongs, is a labelling export (the COCO file
    itself, or a folder holding one: sample's or label pull's annotations.json, a tool's COCO file):
    ingest it elsewhere, as ingest refuses an --out holding the export's own photos. A folder of
    photos and no export needs labels first. None for anything else."""
    if path.is_file():
        return f"it is a labelling export: {_ingest_this(path)}" if _looks_like_coco(path) else None
    data_set_files = ("train.json", "val.json", "dataset.json")
    names = sorted(path.glob("*.json"))
    # not a run's args.json or metrics.json
    exports = [p for p in names if p.name not in data_set_files and _looks_like_coco(p)]
    if exports:
        return f"it holds an export ({exports[0].name}): {_ingest_this(exports[0])}"
    if not names and _holds_photos(path):  # no JSON at all: not a data set that lost dataset.json
        return (
            "it holds photos but no labels: label them (`officescore label push`, or another tool), "
            "then `officescore ingest EXPORT.json --out data/dataset` and pass data/dataset"
        )
    return None


def _ingest_this(export: Path) -> str:
    return (
        f"make a data set of it with `officescore ingest {export} --out data/dataset` and pass data/dataset"
    )


def _holds_photos(folder: Path) -> bool:
    """Whether a photo lies anywhere under `folder` (stops at the first)."""
    try:
        return any(p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() for p in folder.rglob("*"))
    except OSError:
        return False


def _looks_like_coco(path: Path) -> bool:
    """Whether a JSON file has an "images" key near its start, as COCO exports do (the tools write
    it before the long annotations list): read no further, an export can be hundreds of MB."""
    try:
        with path.open("rb") as file:
            return b'"images"' in file.read(1 << 20)
    except OSError:
        return False
