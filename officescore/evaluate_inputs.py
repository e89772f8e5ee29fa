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

from pycocotools.coco import COCO

from officescore.errors import DataError
from officescore.masks import bbox as rle_bbox
from officescore.masks import from_polygons, normalise

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
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise DataError(f"{what} file {path} does not exist") from None
    except IsADirectoryError:
        raise DataError(f"{what} file {path} is a folder; give the JSON file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{what} file {path} is not valid JSON ({exc})") from None


# --- loading and validating ground truth and results ---------------------------------------------


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_gt(data: Any, source: str) -> None:
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DataError(f"{source}: expected a COCO object with images, annotations and categories")
    categories = data.get("categories")
    if not isinstance(categories, list) or not categories:
        raise DataError(f"{source}: has no categories; a COCO ground truth lists its classes")
    data.setdefault("annotations", [])
    image_ids = {img.get("id") for img in data["images"] if isinstance(img, dict)}
    cat_ids = {cat.get("id") for cat in categories if isinstance(cat, dict) and "name" in cat}
    if len(cat_ids) != len(categories):
        raise DataError(f"{source}: every category needs a unique id and a name")
    ann_ids: set[int] = set()
    for ann in data["annotations"]:
        if not isinstance(ann, dict) or not all(k in ann for k in ("id", "image_id", "category_id")):
            raise DataError(f"{source}: every annotation needs id, image_id and category_id")
        if ann["image_id"] not in image_ids or ann["category_id"] not in cat_ids:
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
        if not isinstance(ann["id"], int) or ann["id"] <= 0 or ann["id"] in ann_ids:
            raise DataError(f"{source}: annotation ids must be unique positive integers (id {ann['id']})")
        ann_ids.add(ann["id"])
        ann.setdefault("iscrowd", 0)


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


def _segmentation(pred: dict[str, Any], image: dict[str, Any], where: str) -> dict[str, Any]:
    segm = pred["segmentation"]
    height, width = image.get("height"), image.get("width")
    try:
        if isinstance(segm, list):  # polygons
            if height is None or width is None:
                raise DataError(f"{where}: polygon masks need the image's height and width in the GT")
            return from_polygons(segm, int(height), int(width))
        rle = normalise(segm)
    except (TypeError, KeyError, ValueError) as exc:
        raise DataError(f"{where}: segmentation is not COCO RLE or polygons ({exc})") from None
    if height is not None and width is not None and rle["size"] != [int(height), int(width)]:
        raise DataError(
            f"{where}: mask size {rle['size']} differs from image {pred['image_id']} "
            f"({int(height)}x{int(width)}); masks must be in original image coordinates"
        )
    return rle


def _check_results(data: Any, coco_gt: COCO, source: str) -> Results:
    shape = "a JSON list of COCO results {image_id, category_id, score, bbox and/or segmentation}"
    if not isinstance(data, list):
        raise DataError(f"{source}: expected {shape}, got {type(data).__name__}")
    for i, pred in enumerate(data):
        if not isinstance(pred, dict) or not all(k in pred for k in ("image_id", "category_id", "score")):
            raise DataError(f"{source}: item {i} is not a COCO result; expected {shape}")
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
    for i, pred in enumerate(data):
        base = {k: pred[k] for k in ("image_id", "category_id", "score")}
        image = coco_gt.imgs[pred["image_id"]]
        rle = _segmentation(pred, image, f"{source}: item {i}") if with_masks else None
        if pred.get("bbox", []) != []:  # some tools write "bbox": [] beside a mask
            bb = pred["bbox"]
            if not (isinstance(bb, list) and len(bb) == 4 and all(is_number(v) for v in bb)):
                raise DataError(f"{source}: item {i} has a bbox that is not [x, y, w, h] numbers")
        else:
            bb = rle_bbox(rle)  # what pycocotools' loadRes derives from the mask
        boxes.append({**base, "bbox": bb})
        if masks is not None and rle is not None:
            masks.append({**base, "segmentation": rle})
    return Results(boxes=boxes, masks=masks)


def load_predictions(predictions: Path | str | list[dict[str, Any]], coco_gt: COCO) -> Results:
    if isinstance(predictions, str | Path):
        return _check_results(read_json(Path(predictions), "predictions"), coco_gt, f"{predictions}")
    return _check_results(predictions, coco_gt, "predictions")
