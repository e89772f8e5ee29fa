"""Overlaps between one image's labels and predictions: mask IoU, box IoU, and label-label IoU.

All come from pycocotools (`mask.iou`), as eval's matching does (officescore/evaluate/match.py):
with `iscrowd` set, pycocotools divides by the first argument's area instead, which gives how much
of a prediction lies inside a label ("covered").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from officescore import masks as masklib
from officescore.curate.labels import Label

MATCH_IOU = 0.5  # evaluate_match.MATCH_IOU: the usual "found" overlap


@dataclass
class Prediction:
    index: int  # position in the COCO results list
    class_name: str
    score: float
    rle: dict[str, Any]
    bbox: list[float]  # [x, y, w, h]
    attributes: dict[str, Any] = field(default_factory=dict)  # the attribute head's values
    attribute_scores: dict[str, float] = field(default_factory=dict)  # and their probabilities


@dataclass
class ImageMatch:
    labels: list[Label]
    predictions: list[Prediction]
    mask_iou: np.ndarray  # [P, L]
    box_iou: np.ndarray  # [P, L]
    covered: np.ndarray  # [P, L] share of the prediction's mask inside the label's mask
    label_iou: np.ndarray  # [L, L] mask IoU between labels (diagonal 0)
    agree: np.ndarray  # [P, L] tolerant mask F-score (tolerant_f) where the two overlap at all, else 0
    own_agree: np.ndarray  # [P, L] same-class pairs: agree without the prediction's pixels on other labels

    @property
    def overlap(self) -> np.ndarray:
        """[P, L] the best of mask IoU, box IoU and tolerant agreement: a shifted mask still overlaps
        by its box, a small object's one-pixel-off mask by its tolerant F."""
        return np.maximum(np.maximum(self.mask_iou, self.box_iou), self.agree)


def _rles(items: list[Any]) -> list[dict[str, Any]]:
    out = []
    for item in items:
        rle = masklib.normalise(item.rle)
        out.append({"size": rle["size"], "counts": rle["counts"].encode()})
    return out


def _iou(a: list[Any], b: list[Any], crowd: bool = False) -> np.ndarray:
    if not a or not b:
        return np.zeros((len(a), len(b)))
    return np.asarray(mask_utils.iou(a, b, [int(crowd)] * len(b)), dtype=np.float64).reshape(len(a), len(b))


def match_image(labels: list[Label], predictions: list[Prediction], tol: int = 1) -> ImageMatch:
    pred_rles, label_rles = _rles(predictions), _rles(labels)
    pred_boxes, label_boxes = [p.bbox for p in predictions], [lab.bbox for lab in labels]
    label_iou = _iou(label_rles, label_rles)
    np.fill_diagonal(label_iou, 0.0)
    mask_iou, box_iou = _iou(pred_rles, label_rles), _iou(pred_boxes, label_boxes)
    agree = np.zeros_like(mask_iou)
    decoded: dict[tuple[str, int], np.ndarray] = {}

    def mask(kind: str, k: int) -> np.ndarray:
        if (kind, k) not in decoded:
            decoded[(kind, k)] = masklib.decode((predictions if kind == "p" else labels)[k].rle)
        return decoded[(kind, k)]

    own_agree = np.zeros_like(mask_iou)
    pairs = list(zip(*np.nonzero((mask_iou > 0) | (box_iou > 0.05)), strict=True))
    if pairs:
        free = sum(mask("l", k).astype(np.int32) for k in range(len(labels))) == 0
    for i, j in pairs:
        pred, label = mask("p", int(i)), mask("l", int(j))
        slack = object_tolerance(tol, labels[j].bbox)
        agree[i, j] = _tolerant_f(pred, label, slack)
        if predictions[i].class_name == labels[j].class_name:
            # A prediction's pixels on another label are that label's object (an occluder the model's
            # mask ran over, as masks do at occlusion boundaries), not evidence against this label's mask.
            own_agree[i, j] = _tolerant_f(pred.astype(bool) & (free | label.astype(bool)), label, slack)
    return ImageMatch(
        labels=labels,
        predictions=predictions,
        mask_iou=mask_iou,
        box_iou=box_iou,
        covered=_iou(pred_rles, label_rles, crowd=True),
        label_iou=label_iou,
        agree=agree,
        own_agree=own_agree,
    )


def predictions_by_image(results: list[dict[str, Any]], classes: list[str]) -> dict[int, list[Prediction]]:
    """COCO results grouped per image id, best score first."""
    out: dict[int, list[Prediction]] = {}
    for i, r in enumerate(results):
        out.setdefault(int(r["image_id"]), []).append(
            Prediction(
                i,
                classes[int(r["category_id"]) - 1],
                float(r["score"]),
                r["segmentation"],
                list(r["bbox"]),
                dict(r.get("attributes") or {}),
                dict(r.get("attribute_scores") or {}),
            )
        )
    for preds in out.values():
        preds.sort(key=lambda p: -p.score)
    return out


def tolerance(height: int, width: int) -> int:
    """Boundary slack for mask agreement: 1 % of the photo's longer side, at least one pixel."""
    return max(1, round(0.01 * max(height, width)))


OBJECT_TOLERANCE = 0.05  # of the label's shorter box side


def object_tolerance(tol: int, bbox: list[float]) -> int:
    """The photo's slack, capped at 5 % of the label's shorter side (at least one pixel): a 2 px
    slack on a 9 px-tall keyboard hides an erosion of its whole edge. Measured with bench/audit.py,
    10 injection draws on each of four checkpoints: +0.007 to +0.019 overall recall, bad_mask up to
    +0.07 (and +0.012 overall on a fifth model over 3 draws)."""
    return max(1, min(tol, round(OBJECT_TOLERANCE * min(bbox[2], bbox[3]))))


def tolerant_f(a: dict[str, Any], b: dict[str, Any], tol: int) -> float:
    """F-score of two masks where a pixel within `tol` of the other mask counts as agreeing.

    Plain IoU punishes small objects for a one-pixel boundary difference that any model makes; this
    measure is ~1 for such masks whatever their size and drops for shifted or eroded ones."""
    return _tolerant_f(masklib.decode(a), masklib.decode(b), tol)


def _grow(mask: np.ndarray, tol: int) -> np.ndarray:
    """Binary dilation by a (2 tol + 1)-pixel square, separably (rows, then columns), in numpy."""
    h, w = mask.shape
    padded = np.pad(mask, tol)
    rows = np.zeros((h + 2 * tol, w), dtype=bool)
    for dx in range(2 * tol + 1):
        rows |= padded[:, dx : dx + w]
    out = np.zeros((h, w), dtype=bool)
    for dy in range(2 * tol + 1):
        out |= rows[dy : dy + h]
    return out


def _tolerant_f(ma: np.ndarray, mb: np.ndarray, tol: int) -> float:
    both = ma | mb
    if not both.any():
        return 1.0
    ys, xs = np.nonzero(both)
    y0, y1 = max(0, ys.min() - tol), ys.max() + tol + 1
    x0, x1 = max(0, xs.min() - tol), xs.max() + tol + 1
    ca, cb = ma[y0:y1, x0:x1].astype(bool), mb[y0:y1, x0:x1].astype(bool)
    na, nb = int(ca.sum()), int(cb.sum())
    if na == 0 or nb == 0:
        return 0.0
    precision = float((ca & _grow(cb, tol)).sum()) / na
    recall = float((cb & _grow(ca, tol)).sum()) / nb
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
