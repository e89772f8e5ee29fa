"""Precision, recall, F1 and the class confusion matrix at IoU 0.5, by greedy matching.

Per image, detections at or above the score threshold are taken by descending score (as COCOeval
does); each takes the unmatched ground-truth object of its class with the highest IoU >= 0.5. A
detection that instead falls on a crowd region of its class is ignored, as COCOeval ignores it.
For the confusion matrix the remaining detections may then match an object of another class (a
confusion); what is left over are false alarms (background row) and missed objects (background
column).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

MATCH_IOU = 0.5


@dataclass
class Counts:
    tp: np.ndarray  # [K] detections matched to a ground-truth object of their class
    fp: np.ndarray  # [K] detections matching nothing of their class (crowd matches excluded)
    fn: np.ndarray  # [K] ground-truth objects no detection of their class matched
    matrix: np.ndarray  # [K+1, K+1] rows ground truth, columns prediction, index K = background


def _ious(coco_gt: COCO, anns: list[dict[str, Any]], dets: list[dict[str, Any]], iou_type: str) -> np.ndarray:
    if not anns or not dets:
        return np.zeros((len(dets), len(anns)))
    crowd = [int(a.get("iscrowd", 0)) for a in anns]
    if iou_type == "bbox":
        d_geo, g_geo = [d["bbox"] for d in dets], [a["bbox"] for a in anns]
    else:
        d_geo = [d["segmentation"] for d in dets]
        g_geo = [coco_gt.annToRLE(a) for a in anns]
    # For crowd regions pycocotools divides by the detection's area: a detection inside one matches.
    return np.asarray(mask_utils.iou(d_geo, g_geo, crowd), dtype=np.float64).reshape(len(dets), len(anns))


MATCHED, FALSE_ALARM, IGNORED = 1, 0, -1


def _greedy(
    ious: np.ndarray, gcls: np.ndarray, crowd: np.ndarray, dcls: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy matching by descending score, like COCOeval: per detection MATCHED, FALSE_ALARM or
    IGNORED (on a crowd region of its class), and which ground-truth objects were taken.

    A detection's outcome depends only on the detections scored above it, so one matching of all
    detections gives the outcome at every score threshold."""
    taken = np.zeros(len(gcls), dtype=bool)
    outcome = np.full(len(dcls), FALSE_ALARM, dtype=np.int64)
    for i, c in enumerate(dcls):
        hits = ious[i] >= MATCH_IOU
        free = hits & (gcls == c) & ~crowd & ~taken
        if free.any():
            taken[int(np.where(free, ious[i], -1.0).argmax())] = True
            outcome[i] = MATCHED
        elif (hits & (gcls == c) & crowd).any():
            outcome[i] = IGNORED
    return outcome, taken


def _match_image(
    ious: np.ndarray, gcls: np.ndarray, crowd: np.ndarray, dcls: np.ndarray, counts: Counts
) -> None:
    """Greedy matching at one threshold (`_greedy`), then class confusions."""
    bg = counts.matrix.shape[0] - 1
    outcome, taken = _greedy(ious, gcls, crowd, dcls)
    np.add.at(counts.tp, dcls[outcome == MATCHED], 1)
    np.add.at(counts.matrix, (dcls[outcome == MATCHED], dcls[outcome == MATCHED]), 1)
    np.add.at(counts.fp, dcls[outcome == FALSE_ALARM], 1)
    unmatched = np.flatnonzero(outcome == FALSE_ALARM).tolist()
    np.add.at(counts.fn, gcls[~crowd & ~taken], 1)
    # False positives that overlap an object of another class are confusions, not false alarms.
    for i in unmatched:
        free = (ious[i] >= MATCH_IOU) & ~crowd & ~taken
        if free.any():
            j = int(np.where(free, ious[i], -1.0).argmax())
            taken[j] = True
            counts.matrix[gcls[j], dcls[i]] += 1
        else:
            counts.matrix[bg, dcls[i]] += 1
    np.add.at(counts.matrix, (gcls[~crowd & ~taken], bg), 1)


def _per_image(
    coco_gt: COCO, dets: list[dict[str, Any]], iou_type: str, cat_index: dict[int, int], conf: float = 0.0
) -> Iterator[tuple[Any, list[dict[str, Any]], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]]:
    """Per image with labels or detections (scored at least `conf`): its id, its detections by
    descending score, and what `_greedy` takes (IoUs, label classes, crowd flags, detection classes)."""
    by_image: dict[Any, list[dict[str, Any]]] = {}
    for d in dets:
        if d["score"] >= conf:
            by_image.setdefault(d["image_id"], []).append(d)
    for img_id in coco_gt.imgs:
        anns = coco_gt.imgToAnns.get(img_id, [])
        image_dets = sorted(by_image.get(img_id, []), key=lambda d: -d["score"])  # stable, as COCOeval
        if not anns and not image_dets:
            continue
        yield (
            img_id,
            image_dets,
            (
                _ious(coco_gt, anns, image_dets, iou_type),
                np.array([cat_index[a["category_id"]] for a in anns], dtype=np.int64),
                np.array([bool(a.get("iscrowd", 0)) for a in anns], dtype=bool),
                np.array([cat_index[d["category_id"]] for d in image_dets], dtype=np.int64),
            ),
        )


def match_counts(
    coco_gt: COCO, dets: list[dict[str, Any]], iou_type: str, conf: float, cat_index: dict[int, int]
) -> Counts:
    k = len(cat_index)
    counts = Counts(
        tp=np.zeros(k, dtype=np.int64),
        fp=np.zeros(k, dtype=np.int64),
        fn=np.zeros(k, dtype=np.int64),
        matrix=np.zeros((k + 1, k + 1), dtype=np.int64),
    )
    for _, _, arrays in _per_image(coco_gt, dets, iou_type, cat_index, conf):
        _match_image(*arrays, counts)
    return counts


def prf(tp: int, fp: int, fn: int) -> dict[str, Any]:
    """Precision, recall, F1 (None where 0/0) with the counts behind them."""
    tp, fp, fn = int(tp), int(fp), int(fn)
    return {
        "precision": tp / (tp + fp) if tp + fp else None,
        "recall": tp / (tp + fn) if tp + fn else None,
        "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None,
        "tp": tp,
        "fp": fp,
        "fn": fn,
    }


@dataclass(frozen=True)
class F1Curve:
    """Matches at IoU 0.5 at every score threshold that changes them, highest threshold first."""

    conf: np.ndarray  # [T] thresholds: a detection counts when its score is at least this
    tp: np.ndarray  # [T] detections matched to an object of their class
    fp: np.ndarray  # [T] false alarms (crowd matches excluded)
    objects: int  # ground-truth objects (crowd regions excluded)

    @property
    def f1(self) -> np.ndarray:
        return 2 * self.tp / (self.tp + self.fp + self.objects)

    @property
    def best(self) -> int:
        """The threshold index with the best F1 (argmax: the highest threshold on a tie)."""
        return int(np.argmax(self.f1))

    def at(self, k: int) -> dict[str, Any]:
        """Threshold k with its precision, recall, F1 and counts."""
        return {"conf": float(self.conf[k]), **prf(self.tp[k], self.fp[k], self.objects - self.tp[k])}


@dataclass(frozen=True)
class ImageOutcome:
    """One image's detections by descending score, what `_greedy` made of each, and its objects."""

    scores: np.ndarray  # [D]
    outcome: np.ndarray  # [D] MATCHED, FALSE_ALARM or IGNORED
    classes: np.ndarray  # [D] class index of each detection
    objects: np.ndarray  # [K] ground-truth objects per class index (crowd regions excluded)
    image_id: Any = None

    def of_class(self, k: int) -> ImageOutcome:
        """Only class k: matching never crosses classes, so its outcomes stay as they are."""
        mine = self.classes == k
        objects = np.zeros_like(self.objects)
        objects[k] = self.objects[k]
        return ImageOutcome(self.scores[mine], self.outcome[mine], self.classes[mine], objects, self.image_id)

    def shown(self, conf: float) -> tuple[int, int]:
        """(matched, false alarms) among the detections scored at least `conf`."""
        outcome = self.outcome[self.scores >= conf]
        return int((outcome == MATCHED).sum()), int((outcome == FALSE_ALARM).sum())


def _image_outcomes(coco_gt: COCO, dets: list[dict[str, Any]], iou_type: str) -> list[ImageOutcome]:
    """Per image with labels or detections, its `ImageOutcome` (class indices: sorted category ids)."""
    cat_index = {cid: k for k, cid in enumerate(sorted(coco_gt.cats))}
    images = []
    for image_id, image_dets, arrays in _per_image(coco_gt, dets, iou_type, cat_index):
        _, gcls, crowd, dcls = arrays
        scores = np.array([float(d["score"]) for d in image_dets], dtype=np.float64)
        objects = np.bincount(gcls[~crowd], minlength=len(cat_index))
        images.append(ImageOutcome(scores, _greedy(*arrays)[0], dcls, objects, image_id))
    return images


def _ranked(images: list[ImageOutcome]) -> F1Curve | None:
    """The F1 curve of these images' outcomes (an image may come more than once); None without
    detections. Unlike `_curve` it may hold no objects (every detection a false alarm)."""
    scores = np.concatenate([np.zeros(0)] + [image.scores for image in images])
    if not len(scores):
        return None
    order = np.argsort(-scores, kind="stable")
    ranked = scores[order]
    outcome = np.concatenate([np.zeros(0, dtype=np.int64)] + [image.outcome for image in images])[order]
    tp = np.cumsum(outcome == MATCHED)
    fp = np.cumsum(outcome == FALSE_ALARM)
    # A threshold keeps every detection scored at or above it: cut only after the last of equal scores.
    cuts = np.flatnonzero(np.append(ranked[1:] < ranked[:-1], True))
    objects = int(sum(int(image.objects.sum()) for image in images))
    return F1Curve(conf=ranked[cuts], tp=tp[cuts], fp=fp[cuts], objects=objects)


def _curve(images: list[ImageOutcome]) -> F1Curve | None:
    """`_ranked`, None also without ground-truth objects."""
    curve = _ranked(images)
    return curve if curve is not None and curve.objects else None


def f1_curve(coco_gt: COCO, dets: list[dict[str, Any]], iou_type: str = "segm") -> F1Curve | None:
    """Every threshold's outcome from one greedy matching; None without ground-truth objects or
    detections."""
    return _curve(_image_outcomes(coco_gt, dets, iou_type))


def best_f1_conf(coco_gt: COCO, dets: list[dict[str, Any]], iou_type: str = "segm") -> dict[str, Any] | None:
    """The score threshold with the best F1 at IoU 0.5 (the highest such threshold on a tie), with
    its precision, recall and counts; None without ground-truth objects or detections.

    Precision is the share of suggestions a labeller keeps, recall the share of the objects they
    need that a suggestion gives: F1 weighs both, where a fixed threshold favours one."""
    curve = f1_curve(coco_gt, dets, iou_type)
    return None if curve is None else curve.at(curve.best)


def bagged_best_f1_conf(
    coco_gt: COCO,
    dets: list[dict[str, Any]],
    iou_type: str = "segm",
    resamples: int = 200,
    seed: int = 0,
    replaced: tuple[list[dict[str, Any]], float] | None = None,
) -> dict[str, Any] | None:
    """`best_f1_conf` made steadier: the mean of the best-F1 thresholds of `resamples` bootstrap
    resamples of the images (a fixed seed, so the same input gives the same threshold), with the
    precision, recall and counts on all images at that threshold; None where `best_f1_conf` is.

    On a few val photos the best-F1 threshold of the one sample jumps with a photo or two; the
    mean over resamples moves less (bench/replay.py measures both).

    `replaced`, the detections of the model these would replace on the same images and the threshold
    it suggests at: on each resample only thresholds whose precision is at least that model's count
    (where none is, the most precise ones), so a new model's suggestions are no sloppier than those
    labellers saw before (`label backend --train`). `floor_precision` is that model's precision on
    all images."""
    images = _image_outcomes(coco_gt, dets, iou_type)
    if replaced is None:
        return _bagged_best(images, resamples, seed)
    before = {image.image_id: image for image in _image_outcomes(coco_gt, replaced[0], iou_type)}
    # Per image of `images`, what the replaced model showed there (matched, false alarms), once.
    shown = np.array(
        [before[i.image_id].shown(replaced[1]) if i.image_id in before else (0, 0) for i in images]
    )
    found = _bagged_best(images, resamples, seed, shown.reshape(len(images), 2))
    if found is not None:
        found["floor_precision"] = _precision(
            *np.sum([b.shown(replaced[1]) for b in before.values()] or [(0, 0)], axis=0)
        )
    return found


def _precision(tp: int, fp: int) -> float | None:
    return float(tp / (tp + fp)) if tp + fp else None


def _bagged_best(
    images: list[ImageOutcome], resamples: int, seed: int, floor_shown: np.ndarray | None = None
) -> dict[str, Any] | None:
    curve = _curve(images)
    if curve is None:
        return None
    rng = np.random.default_rng(seed)
    picks = []
    for _ in range(resamples):
        drawn = rng.integers(len(images), size=len(images))
        resample = _curve([images[i] for i in drawn])
        if resample is not None and resample.f1.max() > 0:  # nothing found: no threshold to pick
            f1 = resample.f1
            if floor_shown is not None:
                f1 = _at_least_as_precise(resample, _precision(*floor_shown[drawn].sum(axis=0)))
            picks.append(float(resample.conf[int(np.argmax(f1))]))
    # Clipped: a float mean of equal picks (0.9 + 0.9 + ...) can end a hair above all of them.
    conf = float(np.clip(np.mean(picks), min(picks), max(picks))) if picks else float(curve.conf[curve.best])
    # The lowest curve threshold at or above `conf` keeps what `conf` keeps on these images.
    return {**curve.at(int(np.flatnonzero(curve.conf >= conf)[-1])), "conf": conf}


def _at_least_as_precise(curve: F1Curve, floor: float | None) -> np.ndarray:
    """The curve's F1 where its precision is at least `floor` (None: no floor), -1 elsewhere; where no
    threshold is that precise, F1 only at the most precise thresholds."""
    if floor is None:  # the replaced model suggested nothing here
        return curve.f1
    precision = curve.tp / (curve.tp + curve.fp)
    floor = min(floor, float(precision.max()))
    return np.where(precision >= floor - 1e-12, curve.f1, -1.0)


ABOVE = 1e-6  # a class's threshold this far above its best score suggests nothing of it


def _joint_picks(curves: list[F1Curve | None], objects: int) -> list[int | None]:
    """Per class, the index on its curve (None: suggest nothing of it) that together give the best F1
    over all classes. F1 = 2 TP / (TP + FP + objects) is a ratio of sums over classes, so Dinkelbach's
    method finds its maximum: at the best F1 so far, f, each class independently maximises
    (2 - f) TP - f FP; the F1 of those picks is the next f, until it stops rising."""
    f = 0.0
    while True:
        picks: list[int | None] = []
        tp = fp = 0
        for curve in curves:
            k = None
            if curve is not None:
                gain = (2 - f) * curve.tp - f * curve.fp
                k = int(np.argmax(gain))  # the highest threshold on a tie
                if gain[k] <= 0:  # nothing of this class adds to F1
                    k = None
            picks.append(k)
            if curve is not None and k is not None:
                tp, fp = tp + int(curve.tp[k]), fp + int(curve.fp[k])
        found = 2 * tp / (tp + fp + objects) if tp + fp + objects else 0.0
        if found <= f + 1e-12:
            return picks
        f = found


def _class_confs(images: list[ImageOutcome], n_classes: int) -> np.ndarray:
    """`_joint_picks` as thresholds per class index: NaN for a class without detections here (nothing
    to learn about it); just above its best score for one whose detections cost more F1 than they
    bring (the least change that hides them all)."""
    curves = [_ranked([image.of_class(k) for image in images]) for k in range(n_classes)]
    picks = _joint_picks(curves, int(sum(int(image.objects.sum()) for image in images)))
    return np.array(
        [np.nan if curve is None else float(curve.conf[0]) + ABOVE if k is None else float(curve.conf[k])
         for curve, k in zip(curves, picks, strict=True)]
    )  # fmt: skip


def class_f1_confs(
    coco_gt: COCO,
    dets: list[dict[str, Any]],
    iou_type: str = "segm",
    resamples: int = 200,
    seed: int = 0,
    prior: float = 10.0,
) -> dict[str, Any] | None:
    """A score threshold per class, chosen together for the best F1 over all classes: a model scores
    some classes lower than others (one it learned from a few labels, say), and one threshold for all
    then hides those or lets the others' mistakes through.

    Each class's threshold is the mean over `resamples` bootstrap resamples of the images (as
    `bagged_best_f1_conf`), pulled towards the one shared bagged threshold as if that were `prior`
    objects more: (n c_class + prior c_shared) / (n + prior) with n the class's objects, so a class
    with few labelled objects keeps nearly the shared threshold. Returned: `conf` (the shared one),
    `classes` ({class name: threshold}), and the precision, recall and counts on all images at the
    class thresholds; None where `best_f1_conf` is. bench/replay.py measures it: not better for
    labellers than the shared threshold, which `label backend --train` keeps (docs/BENCHMARKS.md)."""
    images = _image_outcomes(coco_gt, dets, iou_type)
    shared = _bagged_best(images, resamples, seed)
    if shared is None:
        return None
    cat_ids = sorted(coco_gt.cats)
    rng = np.random.default_rng(seed)
    picks = np.array(
        [_class_confs([images[i] for i in rng.integers(len(images), size=len(images))], len(cat_ids))
         for _ in range(resamples)]
    )  # fmt: skip
    objects = np.sum([image.objects for image in images], axis=0)
    seen = ~np.isnan(picks).all(axis=0)  # classes with detections in some resample
    own = np.where(seen, np.nanmean(np.where(seen, picks, 0.0), axis=0), shared["conf"])
    counted = np.where(seen, objects, 0)  # a class never detected keeps the shared threshold
    weight = counted / np.maximum(counted + prior, 1e-12)
    # Down to 9 decimals: a mean of equal picks (0.3 + 0.3 + ...) must not end a hair above the score
    # it picked. Distinct float32 scores lie further apart, so no lower score gets in.
    confs = np.floor((weight * own + (1 - weight) * shared["conf"]) * 1e9) / 1e9
    tp = fp = 0
    for image in images:
        shown = image.scores >= confs[image.classes]
        tp += int((shown & (image.outcome == MATCHED)).sum())
        fp += int((shown & (image.outcome == FALSE_ALARM)).sum())
    names = {cid: coco_gt.cats[cid]["name"] for cid in cat_ids}
    return {
        "conf": shared["conf"],
        "classes": {names[cid]: float(c) for cid, c in zip(cat_ids, confs, strict=True)},
        **prf(tp, fp, int(objects.sum()) - tp),
    }
