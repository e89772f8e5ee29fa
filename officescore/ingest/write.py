"""Writing an ingested data set: safe unique file names, hard links, COCO splits, atomic swap, and
reading back the one that was there before (`read_dataset_meta`, `earlier_split`).

The new data set is written into a temporary folder beside `out` and swapped in with renames, so a
failed ingest leaves any previous data set untouched.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from officescore import masks
from officescore.errors import DataError
from officescore.files import atomic_write_json, sha256_file
from officescore.ingest.checks import ImageRecord
from officescore.ingest.locate import meant_path
from officescore.progress import Reporter

DATASET_FORMAT = "officescore-dataset"
DATASET_VERSION = 1
MAX_NAME = 120  # bytes in an output file name: room for "-N" suffixes under the usual 255-byte limit


def unique_names(images: list[ImageRecord]) -> None:
    """Flatten sub-folders into safe, unique file names (case-insensitively unique)."""
    taken: set[str] = set()
    for image in images:
        name = meant_path(image.file_name)  # a URL's path, without its host and query
        parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
        candidates = ["_".join(parts[-n:]) for n in range(1, len(parts) + 1)] or ["image"]
        for candidate in candidates:
            name = _safe_name(candidate)
            if name.lower() not in taken:
                break
        stem, suffix = os.path.splitext(name)
        number = 2
        while name.lower() in taken:
            name = f"{stem}-{number}{suffix}"
            number += 1
        taken.add(name.lower())
        image.out_name = name


def _safe_name(name: str, limit: int = MAX_NAME) -> str:
    """Letters, digits, `.`, `_`, `-` only; no leading dot; at most `limit` UTF-8 bytes."""
    name = re.sub(r"[^\w.\-]", "_", name).lstrip(".") or "image"
    stem, suffix = os.path.splitext(name)
    if len(suffix.encode()) > 16:
        stem, suffix = name, ""
    room = limit - len(suffix.encode())
    return stem.encode()[:room].decode("utf-8", errors="ignore") + suffix


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def read_dataset_meta(out: Path) -> dict[str, Any] | None:
    """dataset.json of the officescore data set in `out`: None when there is none, it is unreadable,
    or it is not ours. The one reader for "is there an earlier data set here, and what was it"."""
    try:
        meta = json.loads((Path(out) / "dataset.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("format") == DATASET_FORMAT else None


def earlier_split(out: Path, seed: int, val_fraction: float) -> dict[str, str]:
    """sha256 -> "train" / "val" of the photos in the data set at `out`, when it was split with the
    same seed and val fraction (else {}: other settings ask for a new split)."""
    meta = read_dataset_meta(out)
    if meta is None or (meta.get("seed"), meta.get("val_fraction")) != (seed, val_fraction):
        return {}
    try:
        found: dict[str, str] = {}
        for split in ("train", "val"):
            for entry in json.loads((out / f"{split}.json").read_text(encoding="utf-8"))["images"]:
                photo = out / entry["file_name"]
                # data sets written before sha256 was recorded: hashed here (a deleted photo: skipped)
                digest = entry.get("sha256") or (sha256_file(photo) if photo.is_file() else None)
                if digest:
                    found[digest] = split
        return found
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}  # its splits are unreadable: a new split


def check_out(out: Path, images_dir: Path) -> None:
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a folder; choose another --out")
    real_out, real_images = Path(os.path.realpath(out)), Path(os.path.realpath(images_dir))
    if real_out == real_images or real_out in real_images.parents:
        raise DataError(f"{out}: --out would replace the image folder {images_dir}; choose another --out")
    if out.is_dir() and any(out.iterdir()) and read_dataset_meta(out) is None:
        raise DataError(
            f"{out}: folder is not empty and is not an officescore data set; "
            "choose an empty or new --out folder"
        )


def _swap_into_place(tmp: Path, out: Path) -> None:
    """Replace `out` by `tmp` with two renames; the old data set is restored if the second fails."""
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    if not out.exists():
        os.replace(tmp, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    old.rmdir()
    os.replace(out, old)
    try:
        os.replace(tmp, out)
    except BaseException:
        os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _coco_split(
    images: list[ImageRecord], classes: list[str], image_ids: dict[str, int], ann_ids: dict[int, int]
) -> dict[str, Any]:
    labels = {name: i + 1 for i, name in enumerate(classes)}
    coco_images, coco_anns = [], []
    for image in images:
        coco_images.append(
            {
                "id": image_ids[image.key],
                "file_name": f"images/{image.out_name}",
                "width": image.width,
                "height": image.height,
                "original_file_name": image.file_name,
                "sha256": image.sha256,  # a later ingest keeps this photo in its split
            }
        )
        for ann in image.annotations:
            coco_anns.append(
                {
                    "id": ann_ids[id(ann)],
                    "image_id": image_ids[image.key],
                    "category_id": labels[ann.class_name],
                    "segmentation": ann.rle,
                    "area": float(masks.area(ann.rle)),
                    "bbox": masks.bbox(ann.rle),
                    "iscrowd": ann.iscrowd,
                }
            )
            if ann.attributes:  # values at the schema default that nobody labelled are listed
                coco_anns[-1]["attributes"] = dict(ann.attributes)
                coco_anns[-1]["unlabelled"] = list(ann.unlabelled)
    return {
        "info": {"description": "officescore data set", "version": str(DATASET_VERSION)},
        "licenses": [],
        "images": coco_images,
        "annotations": coco_anns,
        "categories": [
            {"id": i + 1, "name": name, "supercategory": "office"} for i, name in enumerate(classes)
        ],
    }


def readable_as_umask_allows(path: Path, mode: int) -> None:
    """chmod to what a plain mkdir/open would have given under the current umask."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, mode & ~umask)


def write_dataset(
    out: Path,
    splits: dict[str, list[ImageRecord]],
    classes: list[str],
    meta: dict[str, Any],
    reporter: Reporter,
) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.new-", dir=out.parent))
    try:
        readable_as_umask_allows(tmp, 0o777)  # mkdtemp makes 0700: others sharing the machine could not read
        (tmp / "images").mkdir()
        ordered = [image for split in ("train", "val") for image in splits[split]]
        image_ids = {image.key: i + 1 for i, image in enumerate(ordered)}
        all_anns = [ann for image in ordered for ann in image.annotations]
        ann_ids = {id(ann): i + 1 for i, ann in enumerate(all_anns)}
        with reporter.stage("Writing data set", total=len(ordered)) as stage:
            for image in ordered:
                _link_or_copy(image.path, tmp / "images" / image.out_name)
                stage.advance(1)
        for split, members in splits.items():
            atomic_write_json(
                tmp / f"{split}.json", _coco_split(members, classes, image_ids, ann_ids), indent=None
            )
        atomic_write_json(tmp / "dataset.json", meta)
        for name in ("train.json", "val.json", "dataset.json"):
            readable_as_umask_allows(tmp / name, 0o666)  # atomic writes go through 0600 temp files
        _swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
