"""The unlabelled pool for `select` (a folder, files, globs, or data/raw through its manifest) and the
perceptual hashes that keep near-duplicates of labelled photos out of it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from officescore.errors import BadImageError, DataError
from officescore.images import load_image
from officescore.scrape.dedup import DEFAULT_NEAR_DUP_THRESHOLD

NEAR_DUP_BITS = DEFAULT_NEAR_DUP_THRESHOLD  # scrape's: re-encoded, resized and lightly cropped copies


def pool_files(items: Sequence[str | Path]) -> tuple[list[Path], list[Path], list[Path]]:
    """Image files of the pool; a scrape folder (with manifest.sqlite) gives its kept downloads.
    Also the photos such a folder kept that were deleted by hand since: left out, as `label push`
    and `prelabel` leave them out; and the scrape folders with no photo (a query that found nothing),
    skipped unless the whole pool is empty."""
    from officescore.images import expand_inputs
    from officescore.scrape.manifest import MANIFEST_NAME, kept_photos, no_photos_message

    files: list[Path] = []
    deleted: list[Path] = []
    empty: list[Path] = []
    for item in items:
        folder = Path(item)
        if folder.is_dir() and (folder / MANIFEST_NAME).is_file():
            present, gone = kept_photos(folder)
            empty += [] if present else [folder]
            files += [path for path, _ in present]
            deleted += gone
        else:
            found = [Path(p) for p in expand_inputs([item]) if isinstance(p, Path) and p.is_file()]
            if not found and not folder.is_dir():
                raise DataError(f"{item}: no such photo, folder or glob; pass a folder of photos or data/raw")
            files += found
    seen: set[Path] = set()
    unique = []
    for path in files:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(path)
    if not unique and empty:  # every scrape folder empty: nothing to skip to
        raise DataError(no_photos_message(empty))
    if not unique:
        raise DataError(f"{', '.join(map(str, items))}: no photos there; pass a folder of photos or data/raw")
    return unique, deleted, empty


def phash(path: Path) -> int | None:
    """64-bit perceptual hash (imagehash.phash, as ingest and scrape use), None if unreadable."""
    import imagehash

    try:
        with load_image(Path(path)) as image:
            return int(str(imagehash.phash(image)), 16)
    except BadImageError:
        return None


def hamming(a: Sequence[int], b: Sequence[int]) -> np.ndarray:
    """[len(a), len(b)] bit distances between 64-bit hashes."""
    left = np.array([h & 0xFFFFFFFFFFFFFFFF for h in a], dtype=np.uint64).reshape(-1, 1)
    right = np.array([h & 0xFFFFFFFFFFFFFFFF for h in b], dtype=np.uint64).reshape(1, -1)
    return np.bitwise_count(left ^ right).astype(np.int64)
