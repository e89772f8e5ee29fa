"""Overlaps between one image's labels and predictions: mask IoU, box IoU, and label-label IoU.

All come from pycocotools (`mask.iou`), as eval's matching does (officescore/evaluate_match.py):
with `iscrowd` set, pycocotools divides by the first argument's area instead, which gives how much
of a prediction lies inside a label ("covered").
"""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass
class ImageMatch:
    labels: list[Label]
    predictions: list[Prediction]
    mask_iou: np.ndarray  # [P, L]
    box_iou: np.ndarray  # [P, L]
    covered: np.ndarray  # [P, L] share of the prediction's mask inside the label's mask
    label_iou: np.ndarray  # [L, L] mask IoU between labels (diagonal 0)

    @property
    def overlap(self) -> np.ndarray:
        """[P, L] the better of mask and box IoU: a shifted mask still overlaps by its box."""
        return np.maximum(self.mask_iou, self.box_iou)


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


def match_image(labels: list[Label], predictions: list[Prediction]) -> ImageMatch:
    pred_rles, label_rles = _rles(predictions), _rles(labels)
    pred_boxes, label_boxes = [p.bbox for p in predictions], [lab.bbox for lab in labels]
    label_iou = _iou(label_rles, label_rles)
    np.fill_diagonal(label_iou, 0.0)
    return ImageMatch(
        labels=labels,
        predictions=predictions,
        mask_iou=_iou(pred_rles, label_rles),
        box_iou=_iou(pred_boxes, label_boxes),
        covered=_iou(pred_rles, label_rles, crowd=True),
        label_iou=label_iou,
    )


def predictions_by_image(results: list[dict[str, Any]], classes: list[str]) -> dict[int, list[Prediction]]:
    """COCO results grouped per image id, best score first."""
    out: dict[int, list[Prediction]] = {}
    for i, r in enumerate(results):
        out.setdefault(int(r["image_id"]), []).append(
            Prediction(
                i, classes[int(r["category_id"]) - 1], float(r["score"]), r["segmentation"], list(r["bbox"])
            )
        )
    for preds in out.values():
        preds.sort(key=lambda p: -p.score)
    return out
