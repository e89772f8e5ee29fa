"""Reading and checking what `evaluate_coco` is given: a COCO ground truth and COCO results.

Everything a user can get wrong (missing file, not JSON, wrong shape, image or category ids the
ground truth does not have, masks of the wrong size) raises a DataError that says what and where.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools.coco import COCO

from officescore.errors import DataError
from officescore.masks import bbox as rle_bbox
from officescore.masks import from_polygons, normalise, rle_counts

_SHOW_IDS = 5  # how many offending ids an error message names


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """pycocotools prints progress to stdout; keep stdout clean (it may be --json output)."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def _few(ids: Sequence[Any]) -> str:
    shown = ", ".join(str(i) for i in sorted(ids)[:_SHOW_IDS])
    return shown + (f" and {len(ids) - _SHOW_IDS} more" if len(ids) > _SHOW_IDS else "")


def read_json(path: Path, what: str) -> Any:
    try:
        # bytes: json reads UTF-8 with or without a BOM, and the UTF-16 Windows tools write
        return json.loads(Path(path).read_bytes())
    except FileNotFoundError:
        raise DataError(f"{what} file {path} does not exist") from None
    except IsADirectoryError:
        raise DataError(f"{what} file {path} is a folder; give the JSON file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{what} file {path} is not valid JSON ({exc})") from None
    except OSError as exc:  # symlink loops, a path through a file, permissions...
        raise DataError(f"{what} file {path} cannot be read ({exc.strerror})") from None


# --- loading and validating ground truth and results ---------------------------------------------


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def is_id(value: Any) -> bool:
    """COCO image, category and annotation ids are integers (pycocotools sorts and indexes them)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _positive_size(image: dict[str, Any]) -> tuple[int, int] | None:
    """(height, width) of a ground-truth image, None when not given; DataError when nonsense."""
    height, width = image.get("height"), image.get("width")
    if height is None and width is None:
        return None
    if not all(is_number(v) and v > 0 and float(v).is_integer() for v in (height, width)):
        raise DataError(f"image {image.get('id')} has height/width {height!r:.20}/{width!r:.20}")
    return int(height), int(width)


def check_mask(segm: Any, size: tuple[int, int] | None, where: str) -> dict[str, Any]:
    """COCO polygons or RLE -> compressed RLE, or a DataError; never hands pycocotools garbage."""
    if isinstance(segm, list):  # polygons
        if size is None:
            raise DataError(f"{where}: polygon masks need the image's height and width in the GT")
        if not segm or not all(
            isinstance(poly, list) and len(poly) >= 6 and len(poly) % 2 == 0 and all(map(is_number, poly))
            for poly in segm
        ):
            raise DataError(f"{where}: polygons must be lists of at least 3 x, y number pairs")
        return from_polygons(segm, *size)
    rle_size = segm.get("size") if isinstance(segm, dict) else None
    counts = segm.get("counts") if isinstance(segm, dict) else None
    if not (isinstance(rle_size, list) and len(rle_size) == 2 and all(is_id(v) and v > 0 for v in rle_size)):
        raise DataError(f"{where}: segmentation is not COCO RLE {{size: [h, w], counts}} or polygons")
    if isinstance(counts, bytes):  # pycocotools' own in-memory form
        counts = counts.decode("ascii", errors="replace")
    if isinstance(counts, str):
        runs = rle_counts(counts)
    elif isinstance(counts, list) and all(is_id(v) and 0 <= v < 1 << 40 for v in counts):
        runs = np.asarray(counts, dtype=np.int64)
    else:
        runs = None
    if runs is None or (runs < 0).any():
        raise DataError(f"{where}: RLE counts are not a COCO counts string or list of integers")
    if int(runs.sum()) != rle_size[0] * rle_size[1]:
        raise DataError(f"{where}: RLE counts do not add up to its size {rle_size[0]}x{rle_size[1]}")
    if size is not None and tuple(rle_size) != size:
        raise DataError(
            f"{where}: mask size {rle_size} differs from its image ({size[0]}x{size[1]}); "
            "masks must be in original image coordinates"
        )
    return normalise({"size": rle_size, "counts": counts})


def _check_gt(data: Any, source: str) -> None:
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DataError(f"{source}: expected a COCO object with images, annotations and categories")
    categories = data.get("categories")
    if not isinstance(categories, list) or not categories:
        raise DataError(f"{source}: has no categories; a COCO ground truth lists its classes")
    annotations = data.setdefault("annotations", [])
    if not isinstance(annotations, list):
        raise DataError(f"{source}: 'annotations' is not a list")
    if not all(isinstance(img, dict) and is_id(img.get("id")) for img in data["images"]):
        raise DataError(f"{source}: every image needs an integer id")
    try:
        sizes = {img["id"]: _positive_size(img) for img in data["images"]}
    except DataError as exc:
        raise DataError(f"{source}: {exc}") from None
    if len(sizes) != len(data["images"]):
        raise DataError(f"{source}: image ids must be unique")
    cat_ids = {cat.get("id") for cat in categories if isinstance(cat, dict) and is_id(cat.get("id"))}
    if len(cat_ids) != len(categories) or not all("name" in cat for cat in categories):
        raise DataError(f"{source}: every category needs a unique integer id and a name")
    ann_ids: set[int] = set()
    for ann in annotations:
        if not isinstance(ann, dict) or not all(is_id(ann.get(k)) for k in ("id", "image_id", "category_id")):
            raise DataError(f"{source}: every annotation needs integer id, image_id and category_id")
        if ann["image_id"] not in sizes or ann["category_id"] not in cat_ids:
            raise DataError(
                f"{source}: annotation {ann['id']} refers to an unknown image or category "
                f"(image_id {ann['image_id']}, category_id {ann['category_id']})"
            )
        bb = ann.get("bbox")
        if not (isinstance(bb, list) and len(bb) == 4 and all(is_number(v) for v in bb)):
            raise DataError(f"{source}: annotation {ann['id']} has no valid bbox [x, y, w, h]")
        if not is_number(ann.get("area")):
            raise DataError(f"{source}: annotation {ann['id']} has no area")
        # COCOeval marks unmatched detections with id 0, so ids must be positive and unique.
        if ann["id"] <= 0 or ann["id"] in ann_ids:
            raise DataError(f"{source}: annotation ids must be unique positive integers (id {ann['id']})")
        ann_ids.add(ann["id"])
        if ann.setdefault("iscrowd", 0) not in (0, 1) or isinstance(ann["iscrowd"], float):
            raise DataError(f"{source}: annotation {ann['id']} has iscrowd {ann['iscrowd']!r:.20} (0 or 1)")
        if "segmentation" in ann:
            check_mask(ann["segmentation"], sizes[ann["image_id"]], f"{source}: annotation {ann['id']}")


def load_gt(gt: Path | str | Mapping[str, Any]) -> COCO:
    """A pycocotools COCO object from a file or a dict (the dict is copied, never modified)."""
    if isinstance(gt, Mapping):
        data, source = copy.deepcopy(dict(gt)), "ground truth"
    else:
        data, source = read_json(Path(gt), "ground truth"), f"ground truth {gt}"
    _check_gt(data, source)
    coco = COCO()
    coco.dataset = data
    with quiet():
        coco.createIndex()
    return coco


@dataclass
class Results:
    """Validated detections, split the way each COCOeval run wants them."""

    boxes: list[dict[str, Any]]  # image_id, category_id, score, bbox
    masks: list[dict[str, Any]] | None  # image_id, category_id, score, segmentation; None: no masks


def _check_results(data: Any, coco_gt: COCO, source: str) -> Results:
    shape = "a JSON list of COCO results {image_id, category_id, score, bbox and/or segmentation}"
    if not isinstance(data, list):
        raise DataError(f"{source}: expected {shape}, got {type(data).__name__}")
    for i, pred in enumerate(data):
        if not isinstance(pred, dict) or not all(k in pred for k in ("image_id", "category_id", "score")):
            raise DataError(f"{source}: item {i} is not a COCO result; expected {shape}")
        if not (is_id(pred["image_id"]) and is_id(pred["category_id"])):
            raise DataError(f"{source}: item {i} needs integer image_id and category_id")
        if not is_number(pred["score"]):
            raise DataError(f"{source}: item {i} has a score that is not a finite number")
        if pred.get("bbox", []) == [] and "segmentation" not in pred:
            raise DataError(f"{source}: item {i} has neither bbox nor segmentation")
    foreign = {p["image_id"] for p in data} - set(coco_gt.imgs)
    if foreign:
        raise DataError(
            f"{source}: predictions for {len(foreign)} image id(s) not in the ground truth "
            f"({_few(list(foreign))}); evaluate against the annotation file the predictions were made on"
        )
    foreign = {p["category_id"] for p in data} - set(coco_gt.cats)
    if foreign:
        raise DataError(
            f"{source}: category id(s) {_few(list(foreign))} are not in the ground truth "
            f"(its ids: {_few(list(coco_gt.cats))})"
        )
    with_masks = sum("segmentation" in p for p in data)
    if 0 < with_masks < len(data):
        raise DataError(
            f"{source}: {len(data) - with_masks} of {len(data)} results have no segmentation; "
            "give every result a mask, or none"
        )
    gt_masks = all("segmentation" in a for a in coco_gt.dataset["annotations"])
    boxes: list[dict[str, Any]] = []
    masks: list[dict[str, Any]] | None = [] if gt_masks and with_masks == len(data) else None
    every_box = all(pred.get("bbox", []) != [] for pred in data)
    for i, pred in enumerate(data):
        base = {k: pred[k] for k in ("image_id", "category_id", "score")}
        image = coco_gt.imgs[pred["image_id"]]
        where = f"{source}: item {i}"
        rle = check_mask(pred["segmentation"], _positive_size(image), where) if with_masks else None
        if pred.get("bbox", []) != []:  # some tools write "bbox": [] beside a mask
            bb = pred["bbox"]
            if not (isinstance(bb, list) and len(bb) == 4 and all(is_number(v) for v in bb)):
                raise DataError(f"{source}: item {i} has a bbox that is not [x, y, w, h] numbers")
        else:
            bb = rle_bbox(rle)  # what pycocotools' loadRes derives from the mask
        extra = {"attributes": pred["attributes"]} if isinstance(pred.get("attributes"), dict) else {}
        boxes.append({**base, "bbox": bb, **extra})  # attributes: scored by evaluate.attributes
        if masks is not None and rle is not None:
            # Keep the box beside the mask when the file had one: pycocotools' loadRes then sizes the
            # object by its box, as calling COCOeval directly on this file does.
            # (All or none: loadRes reads the first result's keys for the whole file.)
            masks.append({**base, "segmentation": rle, **({"bbox": bb} if every_box else {})})
    return Results(boxes=boxes, masks=masks)


def load_predictions(predictions: Path | str | list[dict[str, Any]], coco_gt: COCO) -> Results:
    if isinstance(predictions, str | Path):
        return _check_results(read_json(Path(predictions), "predictions"), coco_gt, f"{predictions}")
    return _check_results(predictions, coco_gt, "predictions")
