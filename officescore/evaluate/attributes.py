"""Attribute accuracy: how often detections get the attributes of the objects they found right.

Per image, detections at or above the score threshold are taken by descending score; each takes the
unmatched, non-crowd ground-truth object of its class with the highest box IoU >= 0.5 (the matching
of `officescore.evaluate.match`). For every such pair whose object has a labelled value of an
attribute (not listed under `unlabelled` by ingest) and whose detection predicted one, the pair
counts towards that attribute's accuracy, macro F1 (mean over the attribute's values of each value's
F1; a value neither labelled nor predicted is left out) and confusion matrix (rows: labelled value,
columns: predicted value). Detections without a match, and objects nobody found, do not count here:
the box and mask metrics already count them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pycocotools.coco import COCO

from officescore.attributes import AttributeSchema, value_name
from officescore.evaluate.match import MATCH_IOU, _ious


def _pairs(
    coco_gt: COCO, dets: list[dict[str, Any]], conf: float
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(ground-truth annotation, detection) pairs matched at box IoU >= 0.5 within a class."""
    by_image: dict[Any, list[dict[str, Any]]] = {}
    for d in dets:
        if d["score"] >= conf:
            by_image.setdefault(d["image_id"], []).append(d)
    pairs = []
    for image_id, image_dets in by_image.items():
        anns = coco_gt.imgToAnns.get(image_id, [])
        if not anns:
            continue
        image_dets = sorted(image_dets, key=lambda d: -d["score"])
        ious = _ious(coco_gt, anns, image_dets, "bbox")
        taken = np.array([bool(a.get("iscrowd", 0)) for a in anns])  # crowd regions never match here
        classes = np.array([a["category_id"] for a in anns])
        for i, det in enumerate(image_dets):
            free = (ious[i] >= MATCH_IOU) & (classes == det["category_id"]) & ~taken
            if free.any():
                j = int(np.where(free, ious[i], -1.0).argmax())
                taken[j] = True
                pairs.append((anns[j], det))
    return pairs


def attribute_metrics(
    coco_gt: COCO, dets: list[dict[str, Any]], schema: AttributeSchema, conf: float = 0.05
) -> dict[str, Any]:
    """{"<class>.<attribute>": {"n", "accuracy", "macro_f1", "values", "confusion"}} for `schema`."""
    names = {cid: cat["name"] for cid, cat in coco_gt.cats.items()}
    found: dict[str, list[tuple[int, int]]] = {f"{a.class_name}.{a.name}": [] for a in schema.attributes}
    for ann, det in _pairs(coco_gt, dets, conf):
        class_name = names[ann["category_id"]]
        labelled = ann.get("attributes") or {}
        unlabelled = set(ann.get("unlabelled") or ())
        predicted = det.get("attributes") or {}
        for attribute in schema.for_class(class_name):
            name = attribute.name
            if name not in labelled or name in unlabelled or name not in predicted:
                continue
            try:
                truth = attribute.index(attribute.parse(labelled[name]))
                guess = attribute.index(attribute.parse(predicted[name]))
            except ValueError:
                continue  # a value outside the schema cannot be scored
            found[f"{class_name}.{name}"].append((truth, guess))
    out: dict[str, Any] = {}
    for attribute in schema.attributes:
        key = f"{attribute.class_name}.{attribute.name}"
        size = len(attribute.values)
        confusion = np.zeros((size, size), dtype=np.int64)
        for truth, guess in found[key]:
            confusion[truth, guess] += 1
        n = int(confusion.sum())
        f1s = []
        for v in range(size):
            tp = confusion[v, v]
            labelled_v, predicted_v = confusion[v].sum(), confusion[:, v].sum()
            if labelled_v + predicted_v:
                f1s.append(2 * tp / (labelled_v + predicted_v))
        out[key] = {
            "n": n,
            "accuracy": float(np.trace(confusion) / n) if n else None,
            "macro_f1": float(np.mean(f1s)) if f1s else None,
            "values": [value_name(v) for v in attribute.values],
            "confusion": confusion.tolist(),
            "iou": MATCH_IOU,
        }
    return out
