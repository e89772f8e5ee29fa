"""The photos a labelling command works on: files, folders, globs, or a scrape folder (`data/raw`).

A scrape folder is read through its manifest (`manifest.sqlite`): only the images it kept, each
with its provenance (source page, licence, creator, attribution), so that licence and source
travel into the Label Studio task or COCO file beside the photo.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from officescore.errors import BadImageError
from officescore.files import sha256_file
from officescore.progress import SILENT, Reporter

# Manifest columns copied into a task's data (and a COCO image's entry): what a labeller or a
# licence audit needs to know about the photo, never the provider's internal state.
PROVENANCE_COLUMNS = (
    "url",
    "landing_page",
    "title",
    "license",
    "license_version",
    "license_url",
    "creator",
    "attribution",
    "provider",
)


@dataclass
class ImageSource:
    """One photo on disk, its sha256 and what is known about where it came from."""

    path: Path
    sha256: str
    provenance: dict[str, Any] = field(default_factory=dict)


def _scrape_folder_images(raw_dir: Path) -> tuple[list[tuple[Path, dict[str, Any]]], list[Path]]:
    """The photos a scrape folder kept that are on disk, with their provenance, and those deleted
    by hand since (weeding out bad ones): one read of its manifest."""
    from officescore.scrape.manifest import kept_photos

    present, deleted = kept_photos(raw_dir)
    kept = [
        (path, {k: row[k] for k in PROVENANCE_COLUMNS if row[k] not in (None, "")}) for path, row in present
    ]
    return kept, deleted


def collect_images(inputs: Sequence[str | Path | ImageSource]) -> list[ImageSource]:
    """Every photo the inputs name (`gather_images` without the deleted ones)."""
    return gather_images(inputs).images


@dataclass
class Gathered:
    """What `gather_images` found: the photos, and what the commands note beside them."""

    images: list[ImageSource]
    deleted: list[Path]  # photos a scrape folder kept that are no longer on disk, left out
    empty: list[Path]  # scrape folders with no photo (a query that found nothing), skipped


def gather_images(inputs: Sequence[str | Path | ImageSource]) -> Gathered:
    """Every photo the inputs name, once each (by sha256), in input order; the photos a scrape
    folder among them kept that are no longer on disk; and the scrape folders with no photo at all.

    A missing file or an input that matches nothing is a BadImageError naming it: a labelling
    command that silently skipped a typo would leave the user wondering where the photos went.
    A scrape folder with no photo is the exception (one folder per query, and a query may find
    nothing): it is skipped, as `select` skips it, unless no photo is left at all.
    A scrape folder's photos deleted by hand are left out.
    `ImageSource`s (collected before, e.g. by the CLI before it contacts Label Studio) pass through.
    """
    from officescore.images import expand_inputs
    from officescore.scrape.manifest import MANIFEST_NAME, no_photos_message

    if not inputs:
        raise BadImageError("no images given: pass files, folders, globs or a scrape folder (data/raw)")
    candidates: list[tuple[Path, dict[str, Any]] | ImageSource] = []
    deleted: list[Path] = []
    empty: list[Path] = []
    for item in inputs:
        if isinstance(item, ImageSource):
            candidates.append(item)
            continue
        path = Path(item)
        if path.is_dir() and (path / MANIFEST_NAME).is_file():
            kept, gone = _scrape_folder_images(path)
            empty += [] if kept else [path]
            candidates.extend(kept)
            deleted += gone
            continue
        expanded = [Path(p) for p in expand_inputs([item]) if isinstance(p, (str, Path))]
        if path.is_dir() and not expanded:
            raise BadImageError(f"{path}: no images in this folder (.jpg, .png, .webp, ...)")
        candidates.extend((p, {}) for p in expanded)
    if empty and not candidates:  # every input an empty scrape folder: nothing to skip to
        raise BadImageError(no_photos_message(empty))
    return Gathered(_unique(candidates), deleted, empty)


def _unique(candidates: Iterable[tuple[Path, dict[str, Any]] | ImageSource]) -> list[ImageSource]:
    seen: set[str] = set()
    images = []
    for candidate in candidates:
        if isinstance(candidate, ImageSource):
            source = candidate
        else:
            path, provenance = candidate
            if not path.is_file():
                raise BadImageError(f"{path}: no such image file; check the path or glob")
            source = ImageSource(path, sha256_file(path), provenance)
        if source.sha256 in seen:  # the same photo twice (two names, or a folder and a file in it)
            continue
        seen.add(source.sha256)
        images.append(source)
    return images


def readable_images(
    images: Sequence[ImageSource], reporter: Reporter = SILENT
) -> tuple[list[ImageSource], list[dict[str, str]]]:
    """The photos that decode (as `officescore.images.load_image` decodes them for a model) and
    `{"path", "error"}` for each that does not: a truncated JPEG, random bytes named .jpg or a
    text file matched by a glob would otherwise reach Label Studio as a task it cannot show."""
    from officescore.images import load_image

    good, bad = [], []
    with reporter.stage("checking photos", total=len(images)) as stage:
        for image in images:
            stage.advance(1)
            try:
                load_image(image.path).close()
            except BadImageError as exc:
                bad.append({"path": str(image.path), "error": str(exc)})
                continue
            good.append(image)
    return good, bad
