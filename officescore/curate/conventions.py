"""Labelling conventions: a class whose labels fall into two consistent groups (plants labelled as
leaves only vs leaves + pot; desks with or without legs), found from label-vs-prediction pairs.

A convention split is no mistake on any one photo, so `audit`'s per-label scores miss it. Here every
label is paired with the same-class prediction of its object (out-of-sample, as audit's are), and
each pair gives five numbers: log2 of the area ratio label/prediction, and how far each side of the
label's box lies inside (+) or outside (-) the prediction's box, as a share of the prediction's
height (top, bottom) or width (left, right). Within a class, the height and the width differences
(top + bottom, left + right) are each fitted with two clusters (exact 1-D two-means), and a split is
reported only if it passes the consistency test:
- each group has at least MIN_GROUP labels and MIN_SHARE of the class;
- the groups are far apart for their spread: |median difference| / robust pooled sd >= MIN_SEPARATION
  (robust sd = 1.4826 MAD, floored: a near-perfect model would otherwise divide by ~0);
- the shift is large enough to matter: MIN_SHIFT of the object (sides) or MIN_AREA_SHIFT (log2 area);
- the minority is one consistent shift, not the extreme end of a tail (`consistent`): its own spread
  is at most MAX_SPREAD of its shift, and there is a gap before it (the middle third between the two
  medians holds at most MAX_DIP of what as wide a window at the minority's median holds). A model's
  occasional bad mask gives a tail that thins out steadily; a convention gives a second peak.
The confidence is the share of BOOTSTRAP resamples of the class's pairs in which the same split
(same number, same direction) passes the test again.

A class with a declared convention (officescore.ingest.conventions: `whole`, with all its parts, or
`part`, the main part only) that splits is no longer two equal groups: the group whose labels leave
more of the predicted object out is the `part` group, the other the `whole` group, and the one that
breaks the declaration is named (`declare`); each of its labels scores by how far it lies from the
declared group (`breaches`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from officescore import masks as masklib
from officescore.curate.match import ImageMatch
from officescore.ingest.conventions import WHOLE, Declared

FEATURES = ("area", "top", "bottom", "left", "right")  # area = log2(label area / prediction area)
SIDES = FEATURES[1:]
# What may split a class: the share of the predicted height (top + bottom offsets) or width
# (left + right) the label leaves out (+) or adds (-). Not the area: a mask one pixel larger or
# smaller all round (any model's slop) changes a small object's area by half (measured: a fake model
# that dilates or erodes masks by one pixel gave area "conventions" in 6 of 10 classes). Not single
# sides: a part that sits left on some objects and right on others (a mug's handle) that the model
# always leaves out splits "left" and "right", though every label follows one convention.
SPLIT_ON = ("height", "width")
PAIR_SCORE = 0.5  # predictions at least this sure speak for the model's idea of the object
PAIR_IOU = 0.05  # leaves vs leaves + pot overlap ~0.5 (less with the leaves half hidden); desk top ~0.4
PAIR_INSIDE = 0.5  # ...and one lies mostly inside the other (intersection / smaller area)
PAIR_PIXELS = 8  # predicted boxes at least this tall and wide: on a 6 px mouse one pixel is 17 %, and
# offsets of small objects come in steps that look like groups (measured: false "mouse" splits)
MIN_GROUP = 5
MIN_SHARE = 0.05
MIN_SEPARATION = 4.0
MIN_SHIFT = 0.2  # of the predicted height or width: a part a fifth of the object or more (pot: 30-45 %)
NAMED_SHIFT = 0.1  # sides that differ at least this much are named in the description
MIN_AREA_SHIFT = 0.3  # log2: a 23 % larger or smaller area
MAX_DIP = 0.25
MAX_SPREAD = 0.35
FLOOR = {"area": 0.1, "height": 0.03, "width": 0.03}
CLIP = {"area": 3.0, "top": 1.0, "bottom": 1.0, "left": 1.0, "right": 1.0}
BOOTSTRAP = 50
REPORT_CONFIDENCE = 0.5  # a split that passes in fewer resamples than this is not reported
# Which part a class usually has at that side: "labels stop above the pot". Other classes get the side.
PARTS: dict[str, dict[str, str]] = {"plant": {"bottom": "the pot"}, "desk": {"bottom": "the legs"}}
_SIDE_WORDS = {  # (label inside the prediction, label outside it)
    "top": ("start below the top", "reach above the top"),
    "bottom": ("stop above the bottom", "reach below the bottom"),
    "left": ("start right of the left edge", "reach left of the left edge"),
    "right": ("stop left of the right edge", "reach right of the right edge"),
}


@dataclass
class Pair:
    """One label and the prediction of its object."""

    class_name: str
    image_id: int
    annotation_id: int
    prediction: int  # index into the COCO results
    values: np.ndarray  # FEATURES
    area_ratio: float  # label area / prediction area


@dataclass
class ConventionGroup:
    pairs: list[Pair]
    description: str
    area_ratio: float  # median label / prediction mask area
    sides: dict[str, float]  # median side offsets (+: the label stops inside the prediction)

    @property
    def annotation_ids(self) -> list[int]:
        return [p.annotation_id for p in self.pairs]

    @property
    def image_ids(self) -> list[int]:
        return sorted({p.image_id for p in self.pairs})

    def to_dict(self) -> dict[str, Any]:
        return {
            "annotation_ids": self.annotation_ids,
            "image_ids": self.image_ids,
            "size": len(self.pairs),
            "description": self.description,
            "area_ratio": round(self.area_ratio, 3),
            "sides": {k: round(v, 3) for k, v in self.sides.items()},
        }


@dataclass
class ConventionSplit:
    class_name: str
    confidence: float
    feature: str  # the number that splits the class
    separation: float
    groups: list[ConventionGroup]  # minority first
    declared: Declared | None = None  # the team's convention for the class (`declare`)
    breaks: int | None = None  # with `declared`: the index of the group that breaks it

    @property
    def verdict(self) -> str:
        """In words, e.g. "14 plant labels leave out the pot: the convention is whole" ("" undeclared)."""
        if self.declared is None or self.breaks is None:
            return ""
        n, words = len(self.groups[self.breaks].pairs), self.breach(plural=True)
        return f"{n} {self.class_name} labels {words}: the convention is {self.declared.convention}"

    def breach(self, plural: bool = False) -> str:
        """What the breaking group's labels do: "leave out the pot", "include the legs"."""
        assert self.declared is not None and self.breaks is not None
        bad, kept = self.groups[self.breaks], self.groups[1 - self.breaks]
        sides = ("top", "bottom") if self.feature == "height" else ("left", "right")
        side = max(sides, key=lambda s: abs(bad.sides[s] - kept.sides[s]))
        part = PARTS.get(self.class_name, {}).get(side)
        if self.declared.convention == WHOLE:
            verbs, what = ("leave out", "leaves out"), part or f"part of the object at its {side}"
        else:
            verbs, what = ("include", "includes"), part or f"more than the main part, past its {side}"
        return f"{verbs[0] if plural else verbs[1]} {what}"

    def to_dict(self) -> dict[str, Any]:
        declared = None
        if self.declared is not None and self.breaks is not None:
            declared = {**self.declared.to_dict(), "group": self.breaks + 1, "verdict": self.verdict}
        return {
            "class": self.class_name,
            "confidence": round(self.confidence, 3),
            "feature": self.feature,
            "separation": round(self.separation, 2),
            "groups": [g.to_dict() for g in self.groups],
            "declared": declared,
        }


@dataclass
class ConventionReport:
    splits: list[ConventionSplit]  # classes with two conventions, most confident first
    pairs: dict[str, int] = field(default_factory=dict)  # per class: labels paired with a prediction

    def to_list(self) -> list[dict[str, Any]]:
        return [s.to_dict() for s in self.splits]


# --------------------------------------------------------------------------- pairs


def _box_offsets(label: list[float], pred: list[float], tol: float) -> list[float]:
    """Top, bottom, left, right: how far the label's edge lies inside the prediction's, in pixels less
    the boundary slack `tol` (any model's masks are a pixel or two off), over the prediction's size."""
    lx, ly, lw, lh = label
    px, py, pw, ph = pred
    pw, ph = max(pw, 1.0), max(ph, 1.0)
    raw = [(ly - py, ph), (py + ph - ly - lh, ph), (lx - px, pw), (px + pw - lx - lw, pw)]
    return [float(np.sign(d) * max(abs(d) - tol, 0.0) / size) for d, size in raw]


def pair_labels(match: ImageMatch, image_id: int, tol: float = 1.0) -> list[Pair]:
    """Each label with the same-class prediction (score >= PAIR_SCORE) that overlaps it most, when
    that prediction overlaps no other label of the class more and one mask lies mostly in the other."""
    preds, labels = match.predictions, match.labels
    if not preds or not labels:
        return []
    label_area = np.array([masklib.area(lab.rle) for lab in labels], dtype=np.float64)
    pred_area = np.array([masklib.area(p.rle) for p in preds], dtype=np.float64)
    iou = match.mask_iou
    inter = iou * (pred_area[:, None] + label_area[None, :]) / (1.0 + iou)
    inside = inter / np.maximum(np.minimum(pred_area[:, None], label_area[None, :]), 1.0)
    same = np.array([[p.class_name == lab.class_name for lab in labels] for p in preds], dtype=bool)
    usable = same & (np.array([p.score for p in preds])[:, None] >= PAIR_SCORE) & (iou >= PAIR_IOU)
    usable &= inside >= PAIR_INSIDE
    big = np.array([min(p.bbox[2], p.bbox[3]) >= PAIR_PIXELS for p in preds], dtype=bool)
    usable &= big[:, None]
    candidate = np.where(usable, iou, -1.0)
    out = []
    for j, lab in enumerate(labels):
        if lab.iscrowd or candidate[:, j].max() < 0:
            continue
        i = int(np.argmax(candidate[:, j]))
        if int(np.argmax(candidate[i])) != j:  # the prediction is another label's object
            continue
        ratio = float(label_area[j] / max(pred_area[i], 1.0))
        values = [np.log2(max(ratio, 1e-3)), *_box_offsets(lab.bbox, preds[i].bbox, tol)]
        values = [float(np.clip(v, -CLIP[f], CLIP[f])) for v, f in zip(values, FEATURES, strict=True)]
        out.append(Pair(lab.class_name, image_id, lab.id, preds[i].index, np.array(values), ratio))
    return out


# --------------------------------------------------------------------------- the split and its test


def split_values(values: np.ndarray, feature: str) -> np.ndarray:
    """The number a split is made on (SPLIT_ON) from the pairs' FEATURES rows."""
    if feature == "height":
        return values[:, 1] + values[:, 2]
    if feature == "width":
        return values[:, 3] + values[:, 4]
    return values[:, FEATURES.index(feature)]


def _sd(values: np.ndarray, feature: str) -> float:
    if len(values) == 0:
        return FLOOR[feature]
    return max(1.4826 * float(np.median(np.abs(values - np.median(values)))), FLOOR[feature])


@dataclass
class _Split:
    feature: str
    threshold: float
    minority_high: bool  # the minority lies above the threshold
    separation: float
    passed: bool
    why: str  # the first test it failed ("" when it passed)


def _test(x: np.ndarray, minority: np.ndarray, feature: str) -> tuple[float, str]:
    """(separation, first failed test or "") for the split of `x` into minority / the rest."""
    n, k = len(x), int(minority.sum())
    if k < MIN_GROUP or k < MIN_SHARE * n or n - k < MIN_GROUP:
        return 0.0, "size"
    a, b = x[minority], x[~minority]
    ma, mb = float(np.median(a)), float(np.median(b))
    sa, sb = _sd(a, feature), _sd(b, feature)
    shift = ma - mb
    separation = abs(shift) / float(np.sqrt((sa**2 + sb**2) / 2))
    if separation < MIN_SEPARATION:
        return separation, "separation"
    if abs(shift) < (MIN_AREA_SHIFT if feature == "area" else MIN_SHIFT):
        return separation, "shift"
    if not consistent(x, ma, mb, sa, sb, k):
        return separation, "consistency"
    return separation, ""


def consistent(x: np.ndarray, ma: float, mb: float, sa: float, sb: float, k: int) -> bool:
    """The minority (median ma, sd sa, k labels) is one tight shift away from the majority (mb, sb):
    its spread is small for its shift, and there is a gap before it: the middle third between the two
    medians holds at most MAX_DIP of the labels an equally wide window around the minority's median
    holds (a tail thins out steadily from the majority; a second convention is a second peak)."""
    shift = abs(ma - mb)
    if sa > MAX_SPREAD * shift:
        return False
    width = shift / 3
    middle = (x > min(ma, mb) + width) & (x < max(ma, mb) - width)
    peak = np.abs(x - ma) < width / 2
    return int(middle.sum()) <= MAX_DIP * int(peak.sum())


def two_means(x: np.ndarray) -> float | None:
    """The exact 1-D two-cluster fit (Otsu: the threshold with the largest between-group variance),
    each group at least MIN_GROUP values; None if there is no such threshold."""
    order = np.sort(x)
    n = len(order)
    best, threshold = -1.0, None
    csum = np.cumsum(order)
    for cut in range(MIN_GROUP, n - MIN_GROUP + 1):
        if order[cut - 1] == order[cut]:
            continue
        mean_lo, mean_hi = csum[cut - 1] / cut, (csum[-1] - csum[cut - 1]) / (n - cut)
        between = cut * (n - cut) * (mean_hi - mean_lo) ** 2
        if between > best:
            best, threshold = between, float((order[cut - 1] + order[cut]) / 2)
    return threshold


def _best_split(values: np.ndarray) -> _Split | None:
    """Per SPLIT_ON number: the two-cluster fit, tested; the passing one with the largest separation
    (else the best failing one, for the record)."""
    n = len(values)
    best: _Split | None = None
    for feature in SPLIT_ON:
        x = split_values(values, feature)
        threshold = two_means(x)
        if threshold is None:
            continue
        high = x > threshold
        minority_high = int(high.sum()) <= n // 2
        separation, why = _test(x, high if minority_high else ~high, feature)
        split = _Split(feature, threshold, minority_high, separation, why == "", why)
        if best is None or (split.passed, split.separation) > (best.passed, best.separation):
            best = split
    return best


def _members(values: np.ndarray, split: _Split) -> np.ndarray:
    x = split_values(values, split.feature)
    return x > split.threshold if split.minority_high else x <= split.threshold


def _confidence(values: np.ndarray, split: _Split, seed: int) -> float:
    """Share of bootstrap resamples in which the same split (threshold, direction) passes again."""
    rng = random.Random(seed)
    x = split_values(values, split.feature)
    n, passed = len(values), 0
    for _ in range(BOOTSTRAP):
        sample = x[[rng.randrange(n) for _ in range(n)]]
        minority = sample > split.threshold if split.minority_high else sample <= split.threshold
        if _test(sample, minority, split.feature)[1] == "":
            passed += 1
    return passed / BOOTSTRAP


# --------------------------------------------------------------------------- words


def describe(class_name: str, sides: dict[str, float], area_ratio: float) -> str:
    """One group in words, against the model's prediction of the same objects."""
    parts = []
    for side in sorted(SIDES, key=lambda s: -abs(sides[s])):
        offset = sides[side]
        if abs(offset) < NAMED_SHIFT:
            continue
        part = PARTS.get(class_name, {}).get(side)
        pct = round(100 * abs(offset))
        if offset > 0:
            where = f"stop above {part}" if part and side == "bottom" else _SIDE_WORDS[side][0]
            if part and side != "bottom":
                where = f"leave out {part}"
            parts.append(f"labels {where}: the {side} {pct} % of the predicted object is not labelled")
        else:
            where = f"include {part}" if part else _SIDE_WORDS[side][1]
            parts.append(f"labels {where}: they reach {pct} % of the predicted object's size past its {side}")
    if not parts:
        if abs(np.log2(max(area_ratio, 1e-3))) < MIN_AREA_SHIFT:
            return f"labels match the predicted objects (label/prediction area {area_ratio:.2f})"
        parts.append(
            "labels are " + ("smaller" if area_ratio < 1 else "larger") + " than the predicted objects"
        )
    return "; ".join(parts) + f" (label/prediction area {area_ratio:.2f})"


def _group(class_name: str, pairs: list[Pair]) -> ConventionGroup:
    values = np.stack([p.values for p in pairs])
    sides = {side: float(np.median(values[:, 1 + k])) for k, side in enumerate(SIDES)}
    area_ratio = float(np.median([p.area_ratio for p in pairs]))
    return ConventionGroup(pairs, describe(class_name, sides, area_ratio), area_ratio, sides)


# --------------------------------------------------------------------------- per class


def class_split(class_name: str, pairs: list[Pair], seed: int = 0) -> ConventionSplit | None:
    """The class's two conventions, or None when its labels follow one."""
    if len(pairs) < 2 * MIN_GROUP:
        return None
    values = np.stack([p.values for p in pairs])
    split = _best_split(values)
    if split is None or not split.passed:
        return None
    confidence = _confidence(values, split, seed)
    if confidence < REPORT_CONFIDENCE:
        return None
    members = _members(values, split)
    minority = [p for p, m in zip(pairs, members, strict=True) if m]
    majority = [p for p, m in zip(pairs, members, strict=True) if not m]
    groups = [_group(class_name, minority), _group(class_name, majority)]
    return ConventionSplit(class_name, confidence, split.feature, split.separation, groups)


def find_conventions(
    matches: list[ImageMatch],
    image_ids: list[int],
    classes: list[str],
    tolerances: list[int] | None = None,
    seed: int = 0,
) -> ConventionReport:
    """Per class of `classes`: two labelling conventions, if its label/prediction pairs show them.
    `tolerances`: each photo's boundary slack in pixels (match.tolerance), default 1."""
    by_class: dict[str, list[Pair]] = {c: [] for c in classes}
    tols = tolerances or [1] * len(matches)
    for match, image_id, tol in zip(matches, image_ids, tols, strict=True):
        for pair in pair_labels(match, image_id, tol):
            by_class[pair.class_name].append(pair)
    splits = [s for c in classes if (s := class_split(c, by_class[c], seed)) is not None]
    splits.sort(key=lambda s: (-s.confidence, -s.separation))
    return ConventionReport(splits, {c: len(v) for c, v in by_class.items()})


# --------------------------------------------------------------------------- declared conventions


def _centre(group: ConventionGroup, feature: str) -> float:
    return float(np.median(split_values(np.stack([p.values for p in group.pairs]), feature)))


def breaking_group(split: ConventionSplit, convention: str) -> int:
    """The index of the group that breaks `convention`: for `whole` the group whose labels leave more
    of the predicted object out (the larger split number: + is inside the prediction), for `part`
    the other. Which group the model (or the majority) follows does not matter."""
    part_group = int(np.argmax([_centre(g, split.feature) for g in split.groups]))
    return part_group if convention == WHOLE else 1 - part_group


def declare(report: ConventionReport, declared: dict[str, Declared]) -> None:
    """Mark each split of a class with a declared convention with it and the group that breaks it."""
    for split in report.splits:
        if split.class_name in declared:
            split.declared = declared[split.class_name]
            split.breaks = breaking_group(split, split.declared.convention)


def breaches(split: ConventionSplit) -> list[tuple[Pair, float]]:
    """The breaking group's labels, each with a score in [0, 1): the split's confidence x d / (d +
    MIN_SHIFT), d = how far its split number lies from the declared group's median (half the
    confidence at a fifth of the object); furthest first."""
    if split.breaks is None:
        return []
    bad, kept = split.groups[split.breaks], split.groups[1 - split.breaks]
    x = split_values(np.stack([p.values for p in bad.pairs]), split.feature)
    d = np.abs(x - _centre(kept, split.feature))
    scored = [(p, float(split.confidence * v / (v + MIN_SHIFT))) for p, v in zip(bad.pairs, d, strict=True)]
    return sorted(scored, key=lambda item: -item[1])
