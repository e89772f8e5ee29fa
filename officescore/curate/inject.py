"""Known label errors injected into a clean split: the ground truth for audit's tests and benchmark.

`inject_errors` deletes labels (-> missing), swaps their class (-> wrong_class), shifts or erodes
their mask (-> bad_mask), duplicates them (-> duplicate) or adds a label on background (-> spurious),
each on distinct annotations chosen by a seeded generator, and says exactly what it did.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass
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
