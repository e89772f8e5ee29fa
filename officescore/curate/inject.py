"""Known label errors injected into a clean split: the ground truth for audit's tests and benchmark.

`inject_errors` deletes labels (-> missing), swaps their class (-> wrong_class), shifts or erodes
their mask (-> bad_mask), duplicates them (-> duplicate) or adds a label on background (-> spurious),
each on distinct annotations chosen by a seeded generator, and says exactly what it did.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from officescore import masks as masklib


@dataclass
class Injected:
    kind: str  # the audit kind that should find it
    image_id: int
    annotation_id: int | None  # the changed or added label; None for a deleted one
    bbox: list[float]  # [x, y, w, h] of the object (for missing: the deleted label's)
    how: str = ""  # "shift", "erode", ... for bad_mask


def _erode(mask: np.ndarray, radius: int) -> np.ndarray:
    inverted = torch.from_numpy(1 - mask).float()[None, None]
    grown = torch.nn.functional.max_pool2d(inverted, 2 * radius + 1, stride=1, padding=radius)
    return (1 - grown[0, 0].numpy()).astype(np.uint8)


def _shift(mask: np.ndarray, dx: int, dy: int) -> np.ndarray:
    out = np.zeros_like(mask)
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    ys, xs = ys + dy, xs + dx
    keep = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
    out[ys[keep], xs[keep]] = 1
    return out


def bad_mask(rle: dict[str, Any], rng: random.Random) -> tuple[dict[str, Any], str]:
    """The mask shifted by 30-45 % of its box, or eroded to about half its area."""
    mask = masklib.decode(rle)
    x, y, w, h = masklib.bbox(rle)
    area = int(mask.sum())
    if rng.random() < 0.5:
        radius = max(1, round(0.18 * min(w, h)))
        eroded = _erode(mask, radius)
        if eroded.sum() >= 0.25 * area:
            return masklib.encode(eroded), "erode"
    for _ in range(8):
        fx, fy = rng.choice([(1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, -1), (1, -1), (-1, 1)])
        k = rng.uniform(0.3, 0.45)
        shifted = _shift(mask, round(fx * k * w), round(fy * k * h))
        if shifted.sum() >= 0.5 * area:
            return masklib.encode(shifted), "shift"
    return masklib.encode(_shift(mask, round(0.4 * w), 0)), "shift"


def _background_box(
    image: dict[str, Any], anns: list[dict[str, Any]], rng: random.Random
) -> np.ndarray | None:
    """A rectangle (10-25 % of the photo's side) that no label touches."""
    h, w = int(image["height"]), int(image["width"])
    taken = np.zeros((h, w), dtype=bool)
    for ann in anns:
        taken |= masklib.decode(ann["segmentation"]).astype(bool)
    for _ in range(50):
        bw, bh = int(w * rng.uniform(0.1, 0.25)), int(h * rng.uniform(0.1, 0.25))
        x, y = rng.randrange(0, w - bw), rng.randrange(0, h - bh)
        if not taken[y : y + bh, x : x + bw].any():
            mask = np.zeros((h, w), dtype=np.uint8)
            mask[y : y + bh, x : x + bw] = 1
            return mask
    return None


def inject_errors(
    coco: dict[str, Any],
    seed: int = 0,
    missing: float = 0.05,
    wrong_class: float = 0.05,
    bad_mask_rate: float = 0.05,
    duplicate: float = 0.01,
    spurious: float = 0.0,
    counts: dict[str, int] | None = None,
) -> tuple[dict[str, Any], list[Injected]]:
    """A copy of `coco` (a normalised split JSON) with errors injected, and the list of them.

    Rates are shares of the original annotations; `counts` gives exact numbers per kind instead."""
    rng = random.Random(seed)
    out = copy.deepcopy(coco)
    anns = out["annotations"]
    n = len(anns)
    want = counts or {
        "missing": round(missing * n),
        "wrong_class": round(wrong_class * n),
        "bad_mask": round(bad_mask_rate * n),
        "duplicate": round(duplicate * n),
        "spurious": round(spurious * n),
    }
    picked = sum(want.get(kind, 0) for kind in ("missing", "wrong_class", "bad_mask", "duplicate"))
    if picked > n:  # each error takes a label of its own
        raise ValueError(f"{picked} label errors asked for, but the set has only {n} labels")
    order = list(range(n))
    rng.shuffle(order)
    picks = iter(order)
    categories = [int(c["id"]) for c in out["categories"]]
    images = {int(i["id"]): i for i in out["images"]}
    next_id = max((int(a["id"]) for a in anns), default=0) + 1
    injected: list[Injected] = []
    deleted: set[int] = set()
    added: list[dict[str, Any]] = []

    def new_ann(template: dict[str, Any], rle: dict[str, Any], category: int) -> dict[str, Any]:
        nonlocal next_id
        ann = {**template, "id": next_id, "segmentation": rle, "category_id": category}
        ann["bbox"], ann["area"] = masklib.bbox(rle), float(masklib.area(rle))
        next_id += 1
        added.append(ann)
        return ann

    for kind in ("missing", "wrong_class", "bad_mask", "duplicate"):
        for _ in range(want.get(kind, 0)):
            ann = anns[next(picks)]
            truth = Injected(kind, int(ann["image_id"]), int(ann["id"]), list(ann["bbox"]))
            if kind == "missing":
                deleted.add(int(ann["id"]))
                truth.annotation_id = None
            elif kind == "wrong_class":
                ann["category_id"] = rng.choice([c for c in categories if c != ann["category_id"]])
            elif kind == "bad_mask":
                ann["segmentation"], truth.how = bad_mask(ann["segmentation"], rng)
                ann["bbox"], ann["area"] = (
                    masklib.bbox(ann["segmentation"]),
                    float(masklib.area(ann["segmentation"])),
                )
            else:
                copy_ = new_ann(ann, ann["segmentation"], int(ann["category_id"]))
                truth.annotation_id, truth.how = int(copy_["id"]), f"copy of {ann['id']}"
            injected.append(truth)
    image_ids = sorted(images)
    for _ in range(want.get("spurious", 0)):
        for _attempt in range(20):
            image_id = rng.choice(image_ids)
            mask = _background_box(images[image_id], [a for a in anns if int(a["image_id"]) == image_id], rng)
            if mask is not None:
                template = {"image_id": image_id, "iscrowd": 0}
                ann = new_ann(template, masklib.encode(mask), rng.choice(categories))
                injected.append(Injected("spurious", image_id, int(ann["id"]), list(ann["bbox"])))
                break
    out["annotations"] = [a for a in anns if int(a["id"]) not in deleted] + added
    return out, injected


def _rle_of(ann: dict[str, Any], image: dict[str, Any]) -> dict[str, Any]:
    seg = ann["segmentation"]
    if isinstance(seg, list):
        return masklib.from_polygons(seg, int(image["height"]), int(image["width"]))
    return masklib.normalise(seg)


def inject_convention(
    coco: dict[str, Any], other: dict[str, Any], class_name: str, share: float, seed: int = 0
) -> tuple[dict[str, Any], list[int]]:
    """A copy of `coco` where `share` of `class_name`'s labels take their mask from `other`: the same
    photos labelled with another mask convention (`write_sample(masks=...)`: plants without pots).

    Each label's counterpart is the `other` label of its class on the same photo (by base name) that
    overlaps it most; labels without one (a plant whose leaves are hidden), or whose counterpart is
    the same mask (its pot hidden), are never picked.
    Returns the copy and the ids (of `coco`) of the relabelled annotations, a seeded choice."""
    from pycocotools import mask as mask_utils

    out = copy.deepcopy(coco)
    category = next(int(c["id"]) for c in out["categories"] if c["name"] == class_name)
    other_category = next(int(c["id"]) for c in other["categories"] if c["name"] == class_name)
    images = {int(i["id"]): i for i in out["images"]}
    other_image = {Path(i["file_name"]).name: int(i["id"]) for i in other["images"]}
    other_images = {int(i["id"]): i for i in other["images"]}
    theirs: dict[int, list[dict[str, Any]]] = {}
    for ann in other["annotations"]:
        if int(ann["category_id"]) == other_category:
            theirs.setdefault(int(ann["image_id"]), []).append(ann)
    counterpart: dict[int, dict[str, Any]] = {}
    for ann in out["annotations"]:
        if int(ann["category_id"]) != category:
            continue
        image = images[int(ann["image_id"])]
        candidates = theirs.get(other_image.get(Path(image["file_name"]).name, -1), [])
        if not candidates:
            continue
        mine = _rle_of(ann, image)
        rles = [_rle_of(c, other_images[int(c["image_id"])]) for c in candidates]
        as_bytes = [{"size": r["size"], "counts": r["counts"].encode()} for r in [mine, *rles]]
        # crowd flag: intersection over the candidate's own area; over the smaller of the two areas,
        # one label lies inside the other (a part inside its whole, either way round)
        areas = np.asarray(mask_utils.area(as_bytes), dtype=np.float64)
        inter = np.asarray(mask_utils.iou(as_bytes[1:], as_bytes[:1], [1])).reshape(-1) * areas[1:]
        inside = inter / np.maximum(np.minimum(areas[1:], areas[0]), 1.0)
        best = int(np.argmax(inside))
        # a label the other convention leaves unchanged (the pot hidden anyway) is no relabelling
        if inside[best] >= 0.9 and abs(areas[1 + best] - areas[0]) > 0.05 * areas[0]:
            counterpart[int(ann["id"])] = rles[best]
    rng = random.Random(seed)
    eligible = sorted(counterpart)
    chosen = sorted(rng.sample(eligible, round(share * len(eligible)))) if eligible else []
    picked = set(chosen)
    for ann in out["annotations"]:
        if int(ann["id"]) in picked:
            rle = counterpart[int(ann["id"])]
            ann["segmentation"], ann["bbox"], ann["area"] = rle, masklib.bbox(rle), float(masklib.area(rle))
    return out, chosen


def _dilate(mask: np.ndarray) -> np.ndarray:
    grown = torch.nn.functional.max_pool2d(torch.from_numpy(mask).float()[None, None], 3, stride=1, padding=1)
    return grown[0, 0].numpy().astype(np.uint8)


def fake_predictions(
    coco: dict[str, Any], seed: int = 0, edge_noise: float = 0.0, miss: float = 0.0
) -> list[dict[str, Any]]:
    """COCO results we control, for tests and benchmarks: every label of `coco` found (score 0.7-0.99)
    with its mask one pixel larger on half of them, and with `edge_noise` > 0 each side of the box cut
    back, with probability 1/2, by up to that share of the object's height or width (a worse model);
    `miss` of the objects not found at all. Unlike a mask eroded all round, thin parts (legs, handles)
    survive, as they do for a model that learned them."""
    rng = random.Random(seed)
    images = {int(i["id"]): i for i in coco["images"]}
    out = []
    for ann in coco["annotations"]:
        if ann.get("iscrowd") or rng.random() < miss:
            continue
        image = images[int(ann["image_id"])]
        mask = masklib.decode(_rle_of(ann, image)).copy()
        if rng.random() < 0.5:
            mask = _dilate(mask)
        if edge_noise > 0:
            x, y, w, h = (int(round(v)) for v in masklib.bbox(masklib.encode(mask)))
            for side in ("top", "bottom", "left", "right"):
                if rng.random() < 0.5:
                    continue
                cut = int(round(rng.uniform(0, edge_noise) * (h if side in ("top", "bottom") else w)))
                if side == "top":
                    mask[y : y + cut] = 0
                elif side == "bottom":
                    mask[y + h - cut : y + h] = 0
                elif side == "left":
                    mask[:, x : x + cut] = 0
                else:
                    mask[:, x + w - cut : x + w] = 0
        if not mask.any():
            continue
        rle = masklib.encode(mask)
        out.append(
            {
                "image_id": int(ann["image_id"]),
                "category_id": int(ann["category_id"]),
                "bbox": masklib.bbox(rle),
                "segmentation": rle,
                "score": rng.uniform(0.7, 0.99),
            }
        )
    return out
