"""Label-issue scores from label/prediction overlaps, in the spirit of cleanlab's ObjectLab
(overlooked, swapped, badly located), extended to masks and duplicates.

Each kind scores in [0, 1], higher = more likely an error:
- missing: a prediction no label of any class covers: score x (1 - cover^2) x the class's precision
  (cover: the best of mask IoU, tolerant F (also as bad_mask measures it) and share of the
  prediction inside a label)
- wrong_class: a label a prediction of another class overlaps (IoU >= 0.5), when no prediction of the
  label's class does: other score x (1 - same-class score)
- bad_mask: a same-class prediction found the object (overlap >= 0.1: the box IoU of a mask shifted
  45 % diagonally is 0.18, and a thin mask so shifted hardly touches its object) but the masks disagree
  more than this model usually does for that class: score x (1 - agreement / the class's median) / 0.5,
  agreement = the boundary-tolerant mask F-score of match.tolerant_f (plain IoU would flag every
  small object for the one-pixel slop of any model's masks; the slack is 1 % of the photo, at most
  5 % of the label's shorter side, so a thin object's eroded edge still counts) without the
  prediction's pixels that lie on other labels (an occluder its mask ran over is not this label's fault)
- spurious: a label no prediction of any class supports: (1 - support) x the class's recall
- duplicate: two labels of one object (mask IoU >= 0.6): that IoU, on the later label
- wrong_attribute: a labelled attribute value (officescore.attributes) that the best same-class
  prediction on the object (overlap >= 0.5) predicts otherwise: score x the predicted value's
  probability (the worst attribute of the label; `Issue.attribute` names it, label and prediction)
- convention: a label of the group that breaks its class's declared labelling convention
  (curate/conventions.py `breaches`; set by audit.py, `Issue.convention` says which and how)

The per-class precision, recall and median mask IoU ("calibration") are measured on the audited
split itself: a model that rarely finds mugs makes an unsupported mug label less suspicious than an
unsupported desk. Injected errors are a few percent of labels, so they barely move these figures.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from officescore.attributes import same_value
from officescore.curate.match import ImageMatch

KINDS = ("missing", "wrong_class", "bad_mask", "spurious", "duplicate", "wrong_attribute", "convention")
CONFIDENT = 0.5  # a prediction at or above this counts for the per-class calibration figures
FOUND_OVERLAP = 0.1  # bad_mask: a same-class prediction overlaps the label (45 % diagonal shift: IoU 0.18)
PRIOR_RATE, PRIOR_WEIGHT = 0.9, 5.0  # calibration rates before evidence: most labels and predictions agree
BAD_MASK_SPAN = 0.5  # agreement at half the class's usual (or less) = the prediction's full score
DUPLICATE_IOU = 0.6
SUPPORT_IOU = 0.5
SPURIOUS_IOU = 0.3  # any prediction overlapping this much supports a label (small objects: loose masks)
MISSING_NMS_IOU = 0.5  # several guesses (one per class) at one unlabelled object: one issue


@dataclass
class Issue:
    kind: str
    score: float
    image_id: int
    annotation_id: int | None  # None for missing
    class_name: str | None  # the label's class (None for missing)
    suggested_class: str | None
    bbox: list[float]  # [x, y, w, h] of the label, or of the prediction for missing
    prediction: int | None = None  # index into the COCO results behind the suggestion
    other_annotation: int | None = None  # duplicate: the label it copies
    kinds: dict[str, float] = field(default_factory=dict)  # every kind's score for this label
    # wrong_attribute: {"name": ..., "label": value, "predicted": value}
    attribute: dict[str, Any] | None = None
    # convention: {"convention": "whole", "note": ..., "breach": "leaves out the pot"}
    convention: dict[str, str] | None = None


@dataclass
class Calibration:
    """Per class: how often the model finds a label (recall), how often its confident predictions
    are labelled (precision), and its median mask agreement (tolerant F) with labels it found."""

    recall: dict[str, float]
    precision: dict[str, float]
    mask_iou: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {
            k: {c: round(v, 4) for c, v in getattr(self, k).items()}
            for k in ("recall", "precision", "mask_iou")
        }


def _same(match: ImageMatch) -> np.ndarray:
    return np.array(
        [[p.class_name == lab.class_name for lab in match.labels] for p in match.predictions], dtype=bool
    ).reshape(len(match.predictions), len(match.labels))


def _scores(match: ImageMatch) -> np.ndarray:
    return np.array([p.score for p in match.predictions], dtype=np.float64)


def calibrate(matches: Iterable[ImageMatch], classes: list[str]) -> Calibration:
    found: dict[str, list[bool]] = {c: [] for c in classes}
    labelled: dict[str, list[bool]] = {c: [] for c in classes}
    ious: dict[str, list[float]] = {c: [] for c in classes}
    for m in matches:
        s, same, overlap = _scores(m), _same(m), m.overlap
        confident = s >= CONFIDENT
        for j, lab in enumerate(m.labels):
            if lab.iscrowd:  # an ignore region (often its box as the mask): no object to find
                continue
            hit = confident & same[:, j] & (overlap[:, j] >= SUPPORT_IOU) if len(s) else np.zeros(0, bool)
            found[lab.class_name].append(bool(hit.any()))
            if hit.any():
                ious[lab.class_name].append(float(m.own_agree[hit, j].max()))
        for i, p in enumerate(m.predictions):
            if confident[i]:
                cover = float(np.maximum(overlap[i], m.covered[i]).max()) if m.labels else 0.0
                labelled[p.class_name].append(cover >= SUPPORT_IOU)

    def rate(values: list[bool]) -> float:
        # Shrunk towards PRIOR_RATE by PRIOR_WEIGHT pseudo-observations: a class seen a few times
        # (or whose few labels include the errors) does not swing its scores.
        return (sum(values) + PRIOR_WEIGHT * PRIOR_RATE) / (len(values) + PRIOR_WEIGHT)

    return Calibration(
        recall={c: max(0.05, rate(found[c])) for c in classes},
        precision={c: max(0.05, rate(labelled[c])) for c in classes},
        mask_iou={c: float(np.median(ious[c])) if ious[c] else 0.9 for c in classes},
    )


def _nms(candidates: list[tuple[float, int]], match: ImageMatch) -> list[tuple[float, int]]:
    """Greedy: keep the best-scored candidate, drop the others whose masks overlap it."""
    from pycocotools import mask as mask_utils

    from officescore.curate.match import _rles

    kept: list[tuple[float, int]] = []
    for score, i in sorted(candidates, reverse=True):
        if kept:
            rles = _rles([match.predictions[i]] + [match.predictions[k] for _, k in kept])
            if np.max(mask_utils.iou(rles[:1], rles[1:], [0] * len(kept))) >= MISSING_NMS_IOU:
                continue
        kept.append((score, i))
    return kept


def image_issues(match: ImageMatch, image_id: int, cal: Calibration) -> list[Issue]:
    """One issue per label (its most likely kind) plus one per unlabelled object the model found."""
    s, same = _scores(match), _same(match)
    overlap, preds, labels = match.overlap, match.predictions, match.labels
    issues: list[Issue] = []
    for j, lab in enumerate(labels):
        if lab.iscrowd:  # an ignore region never trains; it only covers what the model finds in it
            continue
        kinds: dict[str, float] = {}
        best_pred: dict[str, int | None] = {}
        attribute: dict[str, Any] | None = None
        suggested: str | None = lab.class_name
        if len(preds):
            # A prediction fitting another label of its own class better is that label's, not evidence here.
            own = np.ones(len(preds), dtype=bool)
            for i in range(len(preds)):
                rivals = [
                    k for k, other in enumerate(labels) if k != j and other.class_name == preds[i].class_name
                ]
                if rivals and overlap[i, rivals].max() > overlap[i, j]:
                    own[i] = False
            hits = overlap[:, j] >= SUPPORT_IOU
            same_score = float(np.max(s[hits & same[:, j] & own], initial=0.0))
            other = hits & ~same[:, j] & own
            if other.any():
                i = int(np.argmax(np.where(other, s, -1.0)))
                kinds["wrong_class"] = float(s[i] * (1.0 - same_score))
                best_pred["wrong_class"], suggested = i, preds[i].class_name
            located = same[:, j] & own & (overlap[:, j] >= FOUND_OVERLAP)
            if located.any():
                i = int(np.argmax(np.where(located, s * overlap[:, j], -1.0)))
                ratio = match.own_agree[i, j] / max(cal.mask_iou[lab.class_name], 1e-6)
                kinds["bad_mask"] = float(s[i] * np.clip((1.0 - ratio) / BAD_MASK_SPAN, 0.0, 1.0))
                best_pred["bad_mask"] = i
            # Boxes count only where the masks touch: a desk's box spans much it does not cover.
            touching = np.where(match.mask_iou[:, j] > 0, overlap[:, j], match.agree[:, j])
            support = float(np.max(s * np.clip(touching / SPURIOUS_IOU, 0.0, 1.0)))
            found = hits & same[:, j] & own
            disagreement = _wrong_attribute(lab, preds, s, found)
            if disagreement is not None:
                kinds["wrong_attribute"], best_pred["wrong_attribute"], attribute = disagreement
        else:
            support = 0.0
        kinds["spurious"] = (1.0 - support) * cal.recall[lab.class_name]
        # an ignore region over an object (a rectangle and a polygon of one desk) is no second label
        earlier = [k for k in range(j) if not labels[k].iscrowd and match.label_iou[j, k] >= DUPLICATE_IOU]
        if earlier:
            k = max(earlier, key=lambda k: match.label_iou[j, k])
            factor = 1.0 if labels[k].class_name == lab.class_name else 0.9
            kinds["duplicate"] = float(match.label_iou[j, k] * factor)
        kind = max(kinds, key=lambda name: kinds[name])
        issues.append(
            Issue(
                kind=kind,
                score=round(float(kinds[kind]), 6),
                image_id=image_id,
                annotation_id=lab.id,
                class_name=lab.class_name,
                suggested_class=None
                if kind in ("spurious", "duplicate")
                else suggested
                if kind == "wrong_class"
                else lab.class_name,
                bbox=[round(v, 2) for v in lab.bbox],
                prediction=best_pred.get(kind),
                other_annotation=labels[k].id if kind == "duplicate" else None,
                kinds={name: round(v, 6) for name, v in kinds.items()},
                attribute=attribute if kind == "wrong_attribute" else None,
            )
        )
    # A prediction that is evidence against a label (its mask or class) is that object, not a new one.
    explained = {issue.prediction for issue in issues if issue.kind in ("bad_mask", "wrong_class")}
    candidates = []
    for i, p in enumerate(preds):
        if i in explained:
            continue
        # Masks only (boxes of nested or adjacent objects overlap a lot); squared: partly touching a
        # neighbour is common for a new object, matching a label well is not.
        cover = (
            float(np.max([match.mask_iou[i], match.agree[i], match.own_agree[i], match.covered[i]]))
            if labels
            else 0.0
        )
        score = p.score * (1.0 - cover**2) * cal.precision[p.class_name]
        if score > 0.0:
            candidates.append((score, i))
    for score, i in _nms(candidates, match):
        issues.append(
            Issue(
                kind="missing",
                score=round(float(score), 6),
                image_id=image_id,
                annotation_id=None,
                class_name=None,
                suggested_class=preds[i].class_name,
                bbox=[round(v, 2) for v in preds[i].bbox],
                prediction=preds[i].index,
                kinds={"missing": round(float(score), 6)},
            )
        )
    for issue in issues:  # local prediction positions -> indices into the COCO results
        if issue.kind != "missing" and issue.prediction is not None:
            issue.prediction = preds[issue.prediction].index
    return issues


def _wrong_attribute(
    label: Any, preds: list[Any], scores: np.ndarray, found: np.ndarray
) -> tuple[float, int, dict[str, Any]] | None:
    """(score, prediction, what) for the label's most confidently contradicted attribute, if any."""
    if not label.attributes or not found.any():
        return None
    i = int(np.argmax(np.where(found, scores, -1.0)))
    worst: tuple[float, int, dict[str, Any]] | None = None
    for name, value in label.attributes.items():
        predicted = preds[i].attributes.get(name)
        if predicted is None or same_value(predicted, value):
            continue
        score = float(scores[i] * preds[i].attribute_scores.get(name, 1.0))
        if worst is None or score > worst[0]:
            worst = (score, i, {"name": name, "label": value, "predicted": predicted})
    return worst


def image_quality(issues: list[Issue]) -> float:
    """1 - the image's worst issue score: 1 = nothing suspicious, 0 = a certain error."""
    return round(1.0 - max((i.score for i in issues), default=0.0), 6)
