"""officescore.evaluate and `officescore eval`: known answers, and equality with pycocotools."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from officescore.errors import ConfigError, DataError
from officescore.evaluate import STAT_NAMES, evaluate_coco
from officescore.evaluate.metrics import format_metric
from officescore.masks import area, encode

CLASSES = ["desk", "chair", "mug"]
H, W = 100, 120


def rect_rle(
    x: int, y: int, w: int, h: int, height: int = H, width: int = W, ellipse: bool = False
) -> dict[str, Any]:
    """A filled rectangle, or the ellipse inscribed in it (so box and mask IoU differ)."""
    mask = np.zeros((height, width), dtype=np.uint8)
    if ellipse:
        yy, xx = np.mgrid[0:height, 0:width]
        inside = ((xx + 0.5 - x - w / 2) / (w / 2)) ** 2 + ((yy + 0.5 - y - h / 2) / (h / 2)) ** 2 <= 1
        mask[inside] = 1
    else:
        mask[y : y + h, x : x + w] = 1
    return encode(mask)


Ann = tuple[int, int, tuple[int, int, int, int], int]  # image_id, category_id, (x, y, w, h), iscrowd


def gt_doc(anns: list[Ann], n_images: int = 2, ellipses: frozenset[int] = frozenset()) -> dict[str, Any]:
    """COCO ground truth of rectangles (ellipses for the annotation indexes in `ellipses`)."""
    annotations = []
    for i, (image_id, cat, (x, y, w, h), crowd) in enumerate(anns, start=1):
        rle = rect_rle(x, y, w, h, ellipse=i - 1 in ellipses)
        annotations.append(
            {
                "id": i,
                "image_id": image_id,
                "category_id": cat,
                "bbox": [float(x), float(y), float(w), float(h)],
                "area": float(area(rle)),
                "segmentation": rle,
                "iscrowd": crowd,
            }
        )
    return {
        "images": [
            {"id": i, "file_name": f"images/{i}.png", "height": H, "width": W} for i in range(1, n_images + 1)
        ],
        "categories": [{"id": i, "name": n} for i, n in enumerate(CLASSES, start=1)],
        "annotations": annotations,
    }


def det(
    image_id: int, cat: int, box: tuple[int, int, int, int], score: float = 0.9, ellipse: bool = False
) -> dict[str, Any]:
    x, y, w, h = box
    return {
        "image_id": image_id,
        "category_id": cat,
        "bbox": [float(x), float(y), float(w), float(h)],
        "score": score,
        "segmentation": rect_rle(x, y, w, h, ellipse=ellipse),
    }


BOX_A = (10, 10, 40, 40)  # 1600 px: a "medium" object
BOX_B = (60, 50, 40, 40)


def test_perfect_predictions_score_one() -> None:
    gt = gt_doc([(1, 1, BOX_A, 0), (1, 2, BOX_B, 0), (2, 3, BOX_A, 0)])
    preds = [det(1, 1, BOX_A), det(1, 2, BOX_B), det(2, 3, BOX_A)]
    doc = evaluate_coco(gt, preds, iou_thresholds=[0.3, 0.95])
    for iou_type in ("bbox", "segm"):
        m = doc[iou_type]
        for key in ("map", "ap50", "ap75", "ap_medium", "ar1", "ar10", "ar100", "ar_medium"):
            assert m[key] == pytest.approx(1.0), (iou_type, key)
        # no small or large objects: pycocotools' -1, reported as None
        assert m["ap_small"] is None and m["ap_large"] is None and m["ar_small"] is None
        assert m["ap_at_iou"] == {"0.3": pytest.approx(1.0), "0.95": pytest.approx(1.0)}
        assert m["precision"] == m["recall"] == m["f1"] == 1.0
        assert all(row["ap"] == pytest.approx(1.0) for row in m["per_class"].values())
    assert doc["confusion_matrix"]["matrix"] == [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    assert doc["images"] == 2 and doc["predictions"] == 3


def test_shifted_box_known_iou() -> None:
    # 40x40 box shifted 10 px: IoU = 30*40 / (50*40) = 0.6 for boxes and masks alike.
    gt = gt_doc([(1, 1, BOX_A, 0)], n_images=1)
    preds = [det(1, 1, (20, 10, 40, 40))]
    doc = evaluate_coco(gt, preds, iou_thresholds=[0.55, 0.65, 0.5, 0.75])
    for iou_type in ("bbox", "segm"):
        m = doc[iou_type]
        assert m["ap50"] == pytest.approx(1.0) and m["ap75"] == 0.0
        assert m["ap_at_iou"]["0.55"] == pytest.approx(1.0)
        assert m["ap_at_iou"]["0.65"] == 0.0
        # a custom threshold equal to a standard one gives the standard number
        assert m["ap_at_iou"]["0.5"] == m["ap50"] and m["ap_at_iou"]["0.75"] == m["ap75"]
        assert m["per_class"]["desk"]["ap_at_iou"]["0.55"] == pytest.approx(1.0)
        assert m["tp"] == 1 and m["fp"] == 0 and m["fn"] == 0  # P/R/F1 match at IoU 0.5
    assert list(doc["bbox"]["ap_at_iou"]) == ["0.5", "0.55", "0.65", "0.75"]


def test_wrong_class_scores_zero_and_shows_in_confusion_matrix() -> None:
    gt = gt_doc([(1, 1, BOX_A, 0), (1, 2, BOX_B, 0)], n_images=1)
    preds = [det(1, 3, BOX_A), det(1, 2, BOX_B)]  # the desk is called a mug
    doc = evaluate_coco(gt, preds)
    per_class = doc["segm"]["per_class"]
    assert per_class["desk"]["ap"] == 0.0 and per_class["desk"]["n_gt"] == 1
    assert per_class["chair"]["ap"] == pytest.approx(1.0)
    assert per_class["mug"]["ap"] is None  # no mug in the ground truth: undefined, not 0
    assert per_class["mug"]["n_pred"] == 1 and per_class["mug"]["fp"] == 1
    assert per_class["desk"]["fn"] == 1 and per_class["desk"]["recall"] == 0.0
    matrix = doc["confusion_matrix"]["matrix"]
    assert doc["confusion_matrix"]["classes"] == [*CLASSES, "background"]
    assert matrix[0][2] == 1  # ground-truth desk predicted as mug: a confusion, not a miss + false alarm
    assert matrix[1][1] == 1
    assert matrix[0][3] == 0 and matrix[3][2] == 0


# --- equality with pycocotools on a noisy synthetic set -------------------------------------------


def noisy_set(seed: int = 0, n_images: int = 12) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    rng = np.random.default_rng(seed)
    anns: list[Ann] = []
    ellipses: set[int] = set()
    preds: list[dict[str, Any]] = []
    for image_id in range(1, n_images + 1):
        if image_id == n_images:
            preds.append(det(image_id, 1, (5, 5, 20, 20), 0.7))  # an image with no ground truth
            continue
        for _ in range(int(rng.integers(1, 6))):
            # small (< 32^2), medium and large (> 96^2) objects
            w, h = int(rng.integers(4, W - 2)), int(rng.integers(4, H - 2))
            x, y = int(rng.integers(0, W - w)), int(rng.integers(0, H - h))
            cat = int(rng.integers(1, 4))
            crowd = int(rng.random() < 0.06)
            ellipse = bool(rng.random() < 0.5)
            if ellipse:
                ellipses.add(len(anns))
            anns.append((image_id, cat, (x, y, w, h), crowd))
            if rng.random() < 0.85:  # detected, with jitter and sometimes the wrong class
                dx, dy, dw, dh = (int(v) for v in rng.integers(-3, 4, size=4))
                bw, bh = max(w + dw, 2), max(h + dh, 2)
                bx, by = min(max(x + dx, 0), W - bw), min(max(y + dy, 0), H - bh)
                dcat = cat if rng.random() < 0.85 else int(rng.integers(1, 4))
                shape = ellipse if rng.random() < 0.8 else not ellipse
                preds.append(det(image_id, dcat, (bx, by, bw, bh), float(rng.random()), shape))
        for _ in range(int(rng.integers(0, 3))):  # false alarms
            w, h = int(rng.integers(5, 40)), int(rng.integers(5, 40))
            box = (int(rng.integers(0, W - w)), int(rng.integers(0, H - h)), w, h)
            preds.append(det(image_id, int(rng.integers(1, 4)), box, float(rng.random()) * 0.5))
    return gt_doc(anns, n_images=n_images, ellipses=frozenset(ellipses)), preds


def direct_cocoeval(
    gt_file: Path, res_file: Path, iou_type: str, thrs: list[float] | None = None
) -> COCOeval:
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(gt_file))
        coco_dt = coco_gt.loadRes(str(res_file))
        ev = COCOeval(coco_gt, coco_dt, iou_type)
        if thrs is not None:
            ev.params.iouThrs = np.array(thrs)
        ev.evaluate()
        ev.accumulate()
        if thrs is None:
            ev.summarize()
    return ev


def as_coco(value: float | None) -> float:
    return -1.0 if value is None else value


def test_equal_to_pycocotools_on_noisy_set(tmp_path: Path) -> None:
    gt, preds = noisy_set()
    gt_file, res_file, segm_file = tmp_path / "gt.json", tmp_path / "res.json", tmp_path / "segm.json"
    gt_file.write_text(json.dumps(gt))
    res_file.write_text(json.dumps(preds))
    # COCO's segm results format: masks without boxes, so mask area decides small/medium/large.
    segm_file.write_text(json.dumps([{k: v for k, v in p.items() if k != "bbox"} for p in preds]))
    doc = evaluate_coco(gt_file, res_file, iou_thresholds=[0.3, 0.5, 0.85])
    # Results with a box beside the mask: pycocotools sizes them by the box, and so must we.
    mask_only = evaluate_coco(gt_file, segm_file)["segm"]
    direct = direct_cocoeval(gt_file, segm_file, "segm").stats
    assert np.allclose([as_coco(mask_only[name]) for name in STAT_NAMES], direct, rtol=0, atol=1e-12)
    before = copy.deepcopy(preds)
    for iou_type, file in (("bbox", res_file), ("segm", res_file)):
        ev = direct_cocoeval(gt_file, file, iou_type)
        ours = [as_coco(doc[iou_type][name]) for name in STAT_NAMES]
        assert len(ours) == 12
        assert np.allclose(ours, ev.stats, rtol=0, atol=1e-12), iou_type
        assert 0.1 < doc[iou_type]["map"] < 0.95  # a non-trivial case
        custom = direct_cocoeval(gt_file, file, iou_type, [0.3, 0.5, 0.85])
        precision = custom.eval["precision"][:, :, :, 0, 2]
        for t, key in enumerate(("0.3", "0.5", "0.85")):
            expected = precision[t][precision[t] > -1].mean()
            assert doc[iou_type]["ap_at_iou"][key] == pytest.approx(expected, abs=1e-12)
        # the mean of per-class APs over classes with ground truth is the mAP
        per_class = doc[iou_type]["per_class"]
        aps = [row["ap"] for row in per_class.values() if row["n_gt"] > 0]
        assert len(aps) == 3 and np.mean(aps) == pytest.approx(doc[iou_type]["map"], abs=1e-12)
    # the same results evaluated from a list and from a file agree
    assert evaluate_coco(gt, preds, iou_thresholds=[0.3, 0.5, 0.85]) == doc
    assert preds == before  # the caller's results are not modified


def test_counts_are_consistent_on_noisy_set() -> None:
    gt, preds = noisy_set(seed=1)
    doc = evaluate_coco(gt, preds, conf=0.2)
    matrix = np.array(doc["confusion_matrix"]["matrix"])
    assert doc["confusion_matrix"]["iou_type"] == "segm"
    for k, name in enumerate(CLASSES):
        row = doc["segm"]["per_class"][name]
        n_gt = sum(1 for a in gt["annotations"] if a["category_id"] == k + 1 and not a["iscrowd"])
        assert row["n_gt"] == n_gt == matrix[k].sum() == row["tp"] + row["fn"]
        assert row["n_pred"] == sum(1 for p in preds if p["category_id"] == k + 1)
        assert matrix[k, k] == row["tp"]
        # columns: every detection above conf that is not on a crowd region of its class
        assert matrix[:, k].sum() == row["tp"] + row["fp"]
        assert matrix[:, k].sum() <= sum(1 for p in preds if p["category_id"] == k + 1 and p["score"] >= 0.2)
    totals = doc["segm"]
    assert totals["tp"] == sum(r["tp"] for r in totals["per_class"].values())
    assert totals["precision"] == pytest.approx(totals["tp"] / (totals["tp"] + totals["fp"]))
    assert totals["f1"] == pytest.approx(
        2 * totals["precision"] * totals["recall"] / (totals["precision"] + totals["recall"])
    )


def test_best_f1_conf_by_hand_with_a_tie_kept_together() -> None:
    """A desk and a chair (image 1), a desk (image 2). Sweeping down the scores, (tp, fp) and F1 =
    2tp / (tp + fp + 3): 0.9 (1,0) 0.50 | 0.8 (1,1) 0.40 | 0.6 (2,1) 0.67 | 0.5 (2,2) 0.57 | 0.3
    (3,3) 0.67 | 0.2 (3,4) 0.60. Both detections at 0.3 come together (a threshold keeps both), so
    0.3 is not 0.75; of the two best F1s the higher threshold wins."""
    from officescore.evaluate.inputs import load_gt
    from officescore.evaluate.match import best_f1_conf, f1_curve

    gt = gt_doc([(1, 1, BOX_A, 0), (1, 2, BOX_B, 0), (2, 1, BOX_B, 0)])
    preds = [
        det(1, 1, BOX_A, 0.9),
        det(1, 1, (0, 60, 30, 30), 0.8),  # on nothing
        det(2, 1, BOX_B, 0.6),
        det(1, 1, BOX_B, 0.5),  # the chair called a desk
        det(1, 2, BOX_B, 0.3),
        det(2, 3, BOX_B, 0.3),  # the desk called a mug, tied with the chair
        det(1, 1, (12, 10, 40, 40), 0.2),  # a second desk on the first: already taken
    ]
    best = best_f1_conf(load_gt(gt), preds)
    assert best is not None and best["conf"] == 0.6
    assert (best["tp"], best["fp"], best["fn"]) == (2, 1, 1) and best["f1"] == pytest.approx(2 / 3)
    assert best_f1_conf(load_gt(gt), preds[:-2])["conf"] == 0.3  # without the tie: (3, 2), F1 0.75
    curve = f1_curve(load_gt(gt), preds)  # every threshold's outcome, the tie one threshold
    assert curve is not None and curve.objects == 3
    assert curve.conf.tolist() == [0.9, 0.8, 0.6, 0.5, 0.3, 0.2]
    assert curve.tp.tolist() == [1, 1, 2, 2, 3, 3] and curve.fp.tolist() == [0, 1, 1, 2, 3, 4]
    assert best_f1_conf(load_gt(gt), []) is None
    assert best_f1_conf(load_gt(gt_doc([], n_images=2)), preds) is None  # nothing to find


def test_best_f1_conf_agrees_with_the_metrics_at_every_threshold() -> None:
    from officescore.evaluate.inputs import load_gt
    from officescore.evaluate.match import best_f1_conf

    gt, preds = noisy_set(seed=3)
    best = best_f1_conf(load_gt(gt), preds)
    assert best is not None
    assert evaluate_coco(gt, preds, conf=best["conf"])["segm"]["f1"] == pytest.approx(best["f1"])
    others = [evaluate_coco(gt, preds, conf=c)["segm"]["f1"] or 0.0 for c in {p["score"] for p in preds}]
    assert max(others) == pytest.approx(best["f1"])


def test_bagged_best_f1_conf_by_hand() -> None:
    """Image 1: a desk found at 0.9. Image 2: a desk found at 0.2, a false alarm at 0.5. On both the
    best F1 is at 0.2 (2/3 at 0.9, 0.4 at 0.5, 0.8 at 0.2). A resample of image 1 twice (a quarter
    of them) picks 0.9; any resample holding image 2 picks 0.2 (alone: F1 0 at 0.5, 2/3 at 0.2). The
    mean is 0.375; all photos at that threshold are counted at 0.5, the lowest threshold keeping
    what 0.375 keeps: one of two suggestions kept, one of two desks found."""
    from officescore.evaluate.inputs import load_gt
    from officescore.evaluate.match import bagged_best_f1_conf, best_f1_conf

    gt = gt_doc([(1, 1, BOX_A, 0), (2, 1, BOX_B, 0)])
    preds = [det(1, 1, BOX_A, 0.9), det(2, 1, BOX_B, 0.2), det(2, 1, (0, 60, 30, 30), 0.5)]
    assert best_f1_conf(load_gt(gt), preds)["conf"] == 0.2
    bagged = bagged_best_f1_conf(load_gt(gt), preds, resamples=4000)
    assert bagged is not None and bagged["conf"] == pytest.approx(0.375, abs=0.02)
    assert (bagged["tp"], bagged["fp"], bagged["fn"]) == (1, 1, 1) and bagged["precision"] == 0.5
    assert bagged_best_f1_conf(load_gt(gt), preds, resamples=4000) == bagged  # a fixed seed
    # The same photo many times: every resample's F1 curve is the whole one scaled, so the same pick.
    gt_same = gt_doc([(k, 1, BOX_B, 0) for k in (1, 2, 3)], n_images=3)
    same = [d for k in (1, 2, 3) for d in (det(k, 1, BOX_B, 0.2), det(k, 1, (0, 60, 30, 30), 0.5))]
    assert bagged_best_f1_conf(load_gt(gt_same), same)["conf"] == best_f1_conf(load_gt(gt_same), same)["conf"]
    # A resample of photos where nothing is found (image 2 twice: a missed desk, a false alarm at
    # 0.8) has F1 0 at every threshold and picks nothing; the others all pick 0.3.
    missed = [det(1, 1, BOX_A, 0.3), det(2, 1, (0, 60, 30, 30), 0.8)]
    assert bagged_best_f1_conf(load_gt(gt), missed)["conf"] == pytest.approx(0.3)
    assert bagged_best_f1_conf(load_gt(gt), []) is None


def test_bagged_best_f1_conf_of_equal_picks_is_the_pick() -> None:
    """Three copies of a photo whose best F1 is at its top score, 0.9: every resample picks 0.9, and
    a float mean of 200 of them lies a hair above 0.9, above every score (an IndexError once)."""
    from officescore.evaluate.inputs import load_gt
    from officescore.evaluate.match import bagged_best_f1_conf

    gt = gt_doc([(k, 1, BOX_A, 0) for k in (1, 2, 3)], n_images=3)
    preds = [d for k in (1, 2, 3) for d in (det(k, 1, BOX_A, 0.9), det(k, 1, (0, 60, 30, 30), 0.5))]
    bagged = bagged_best_f1_conf(load_gt(gt), preds)
    assert bagged is not None and bagged["conf"] == 0.9 and (bagged["tp"], bagged["fp"]) == (3, 0)


def test_bagged_best_f1_conf_no_less_precise_than_the_replaced_model() -> None:
    """Three copies of a photo with two desks. The new model finds them at 0.9 and 0.5 and makes a
    false alarm at 0.7: best F1 at 0.5 (0.8; precision 2/3), 0.9 is exact (precision 1, F1 2/3), 0.7
    is worst (precision 1/2). A replaced model as precise as 1 makes it suggest at 0.9; one at 0.6
    of 2/3 allows 0.5 again (0.7 never: precision 1/2); one suggesting nothing sets no floor. Where no
    threshold reaches the floor, the most precise (with the best F1 among equals) is taken."""
    from officescore.evaluate.inputs import load_gt
    from officescore.evaluate.match import bagged_best_f1_conf

    NOTHING = (0, 60, 30, 30)  # noqa: N806 - a box on no desk

    def copies(*found: tuple[tuple[int, int, int, int], float]) -> list[dict]:
        return [det(k, 1, box, score) for k in (1, 2, 3) for box, score in found]

    gt = load_gt(gt_doc([(k, 1, box, 0) for k in (1, 2, 3) for box in (BOX_A, BOX_B)], n_images=3))
    new = copies((BOX_A, 0.9), (BOX_B, 0.5), (NOTHING, 0.7))
    assert bagged_best_f1_conf(gt, new)["conf"] == 0.5
    exact = copies((BOX_A, 0.9), (NOTHING, 0.2))  # precision 1 at 0.5, 1/2 at 0.1
    assert bagged_best_f1_conf(gt, new, replaced=(exact, 0.5))["conf"] == 0.9
    found = bagged_best_f1_conf(gt, new, replaced=(exact, 0.1))
    assert found["conf"] == 0.5 and found["floor_precision"] == 0.5
    two_of_three = copies((BOX_A, 0.9), (BOX_B, 0.8), (NOTHING, 0.6))
    assert bagged_best_f1_conf(gt, new, replaced=(two_of_three, 0.5))["conf"] == 0.5
    assert bagged_best_f1_conf(gt, new, replaced=(exact, 0.95))["floor_precision"] is None
    assert bagged_best_f1_conf(gt, new, replaced=(exact, 0.95))["conf"] == 0.5
    sloppy = copies((NOTHING, 0.95), (BOX_A, 0.9), (BOX_B, 0.5), (NOTHING, 0.7))  # never precise
    at_most_half = bagged_best_f1_conf(gt, sloppy, replaced=(exact, 0.5))  # 1/2 at 0.9 and 0.5
    assert at_most_half["conf"] == 0.5 and at_most_half["precision"] == 0.5


def test_the_f1_curve_is_the_f1_of_its_counts() -> None:
    """The F1 the best threshold is picked by is the F1 reported at each threshold: 2 TP / (TP + FP +
    objects), the same as 2 TP / (2 TP + FP + FN)."""
    from officescore.evaluate.inputs import load_gt
    from officescore.evaluate.match import f1_curve

    for seed in (0, 3):
        gt, preds = noisy_set(seed=seed)
        curve = f1_curve(load_gt(gt), preds)
        assert curve is not None and len(curve.conf) > 10
        assert curve.f1.tolist() == pytest.approx([curve.at(k)["f1"] for k in range(len(curve.conf))])


def test_a_photo_the_replaced_model_suggested_nothing_on_sets_no_floor() -> None:
    """Photo 1 has two desks; photos 2 and 3 none. The replaced model found one desk on photo 1 and
    made a false alarm there (precision 1/2) and suggested nothing on photos 2 and 3. The new model
    finds the desks at 0.9 and 0.6 with a false alarm at 0.7 (best F1 at 0.6, precision 2/3) and
    makes a false alarm at 0.1 on photos 2 and 3. Those add nothing to the replaced model's counts,
    so no resample's floor rises above 1/2 (counted as found, two of them would lift it to 3/4 and
    shut out 0.6), and every pick is 0.6."""
    from officescore.evaluate.inputs import load_gt
    from officescore.evaluate.match import bagged_best_f1_conf

    nothing = (0, 60, 30, 30)  # a box on no desk
    gt = load_gt(gt_doc([(1, 1, BOX_A, 0), (1, 1, BOX_B, 0)], n_images=3))
    new = [det(1, 1, BOX_A, 0.9), det(1, 1, nothing, 0.7), det(1, 1, BOX_B, 0.6)]
    new += [det(k, 1, nothing, 0.1) for k in (2, 3)]
    old = [det(1, 1, BOX_A, 0.9), det(1, 1, nothing, 0.8)]
    found = bagged_best_f1_conf(gt, new, replaced=(old, 0.5))
    assert found is not None and found["conf"] == 0.6 and found["floor_precision"] == 0.5


def test_class_f1_confs_by_hand() -> None:
    """Three copies of one photo (so every resample is the photo scaled: each pick is the whole
    sample's): a desk found at 0.9 and a false desk at 0.6; a chair found at 0.3 and a false chair at
    0.2; a mug missed and a false mug at 0.5. One threshold for all does best at 0.3 (F1 4/7, the
    false desk and mug shown); a threshold per class, 0.9 for desks, 0.3 for chairs and just above
    0.5 for mugs (none of them helps), shows no false alarm (F1 0.8). A prior of 10 objects pulls
    each towards the shared 0.3: the desk's to (3 x 0.9 + 10 x 0.3) / 13."""
    from officescore.evaluate.inputs import load_gt
    from officescore.evaluate.match import ABOVE, bagged_best_f1_conf, class_f1_confs

    boxes = ((1, BOX_A), (2, BOX_B), (3, (70, 5, 20, 20)))
    gt = gt_doc([(k, cat, box, 0) for k in (1, 2, 3) for cat, box in boxes], n_images=3)
    preds = [
        d
        for k in (1, 2, 3)
        for d in (
            det(k, 1, BOX_A, 0.9),
            det(k, 1, (0, 60, 30, 30), 0.6),  # on nothing
            det(k, 2, BOX_B, 0.3),
            det(k, 2, (0, 60, 30, 30), 0.2),  # on nothing
            det(k, 3, (0, 60, 30, 30), 0.5),  # on nothing
        )
    ]
    assert bagged_best_f1_conf(load_gt(gt), preds)["conf"] == pytest.approx(0.3)
    alone = class_f1_confs(load_gt(gt), preds, prior=0)
    assert alone is not None and alone["conf"] == pytest.approx(0.3)
    assert alone["classes"] == pytest.approx({"desk": 0.9, "chair": 0.3, "mug": 0.5 + ABOVE}, abs=2e-9)
    assert alone["classes"]["mug"] > 0.5
    assert (alone["tp"], alone["fp"], alone["fn"]) == (6, 0, 3) and alone["f1"] == pytest.approx(0.8)
    pulled = class_f1_confs(load_gt(gt), preds, prior=10)
    assert pulled["classes"]["desk"] == pytest.approx((3 * 0.9 + 10 * 0.3) / 13)
    assert pulled["classes"]["chair"] == pytest.approx(0.3)
    assert pulled["classes"]["mug"] == pytest.approx((3 * 0.5 + 10 * 0.3) / 13, abs=1e-6)
    assert (pulled["tp"], pulled["fp"]) == (6, 6)  # the false desks at 0.6 pass 0.44, the mugs 0.35
    assert class_f1_confs(load_gt(gt), []) is None


def test_joint_class_picks_give_the_best_f1_of_every_combination() -> None:
    """Dinkelbach's method against trying every combination of per-class thresholds."""
    import itertools

    from officescore.evaluate.match import F1Curve, _joint_picks

    rng = np.random.default_rng(0)
    for _ in range(200):
        curves: list[F1Curve | None] = []
        objects = 0
        for _ in range(3):
            n = int(rng.integers(0, 5))
            if n == 0:  # a class with objects and no detections
                curves.append(None)
                objects += int(rng.integers(0, 3))
                continue
            found = rng.random(n) < rng.random()
            tp, fp = np.cumsum(found), np.cumsum(~found)
            objects += int(tp[-1]) + int(rng.integers(0, 3))
            curves.append(F1Curve(conf=np.sort(rng.random(n))[::-1], tp=tp, fp=fp, objects=0))

        def f1(
            picks: tuple[int | None, ...], curves: list[F1Curve | None] = curves, objects: int = objects
        ) -> float:
            chosen = [
                (c.tp[k], c.fp[k])
                for c, k in zip(curves, picks, strict=True)
                if c is not None and k is not None
            ]
            tp, fp = sum(int(t) for t, _ in chosen), sum(int(f) for _, f in chosen)
            return 2 * tp / (tp + fp + objects) if tp + fp + objects else 0.0

        every = itertools.product(*[[None] if c is None else [None, *range(len(c.tp))] for c in curves])
        assert f1(tuple(_joint_picks(curves, objects))) == pytest.approx(max(f1(p) for p in every))


def test_crowd_regions_are_ignored() -> None:
    crowd_box = (5, 5, 60, 60)
    gt = gt_doc([(1, 1, BOX_B, 0), (1, 1, crowd_box, 1)], n_images=1)
    base = [det(1, 1, BOX_B, 0.9)]
    on_crowd = base + [det(1, 1, (10, 10, 30, 30), 0.95), det(1, 1, (20, 20, 20, 20), 0.8)]
    plain, with_crowd_dets = evaluate_coco(gt, base), evaluate_coco(gt, on_crowd)
    for iou_type in ("bbox", "segm"):
        assert with_crowd_dets[iou_type]["map"] == plain[iou_type]["map"] == pytest.approx(1.0)
        assert with_crowd_dets[iou_type]["fp"] == 0 and with_crowd_dets[iou_type]["precision"] == 1.0
        assert with_crowd_dets[iou_type]["per_class"]["desk"]["n_gt"] == 1  # crowd is not an object
    assert with_crowd_dets["confusion_matrix"]["matrix"][3][0] == 0  # not a false alarm either
    # the same detection on a crowd region of another class is a false alarm
    other = evaluate_coco(gt, base + [det(1, 2, (10, 10, 30, 30), 0.95)])
    assert other["segm"]["per_class"]["chair"]["fp"] == 1
    assert other["confusion_matrix"]["matrix"][3][1] == 1


def test_empty_predictions_and_images_without_ground_truth() -> None:
    gt = gt_doc([(1, 1, BOX_A, 0)], n_images=3)
    doc = evaluate_coco(gt, [])
    for iou_type in ("bbox", "segm"):
        m = doc[iou_type]
        assert m["map"] == 0.0 and m["ap50"] == 0.0 and m["ar100"] == 0.0
        assert m["precision"] is None and m["recall"] == 0.0 and m["f1"] == 0.0
        assert m["per_class"]["chair"]["ap"] is None and m["per_class"]["desk"]["ap"] == 0.0
    # as the PR-curve legend and the progress line show them: a measured 0, and undefined (no chair)
    assert (format_metric(m["per_class"]["desk"]["ap"]), format_metric(m["per_class"]["chair"]["ap"])) == (
        "0.000",
        "n/a",
    )
    assert doc["confusion_matrix"]["matrix"][0][3] == 1  # the desk was missed
    assert doc["predictions"] == 0
    # detections on an image without ground truth are false alarms
    doc = evaluate_coco(gt, [det(1, 1, BOX_A, 0.9), det(3, 1, BOX_B, 0.95)])
    assert doc["segm"]["fp"] == 1 and doc["segm"]["ap50"] == pytest.approx(0.5, abs=0.01)
    # no ground truth at all: undefined everywhere, no crash
    empty = evaluate_coco(gt_doc([], n_images=2), [det(1, 1, BOX_A)])
    assert empty["segm"]["map"] is None and empty["segm"]["precision"] == 0.0
    assert json.dumps(empty, allow_nan=False)


def test_boxes_only_results_skip_segm(tmp_path: Path) -> None:
    gt = gt_doc([(1, 1, BOX_A, 0)], n_images=1)
    preds = [{k: v for k, v in det(1, 1, BOX_A).items() if k != "segmentation"}]
    doc = evaluate_coco(gt, preds)
    assert doc["bbox"]["map"] == pytest.approx(1.0) and doc["segm"] is None
    assert doc["confusion_matrix"]["iou_type"] == "bbox"
    # masks without boxes: boxes come from the masks (as pycocotools' loadRes does)
    masks_only = [{k: v for k, v in det(1, 1, BOX_A).items() if k != "bbox"}]
    doc = evaluate_coco(gt, masks_only)
    assert doc["bbox"]["map"] == pytest.approx(1.0) and doc["segm"]["map"] == pytest.approx(1.0)


def test_polygons_in_ground_truth_and_results() -> None:
    x, y, w, h = BOX_A
    square = [[x, y, x + w, y, x + w, y + h, x, y + h]]
    gt = gt_doc([(1, 1, BOX_A, 0), (1, 2, BOX_B, 0)], n_images=1)
    gt["annotations"][0]["segmentation"] = square  # labelling tools export polygons
    pred = {"image_id": 1, "category_id": 1, "score": 0.9, "segmentation": square, "bbox": []}
    doc = evaluate_coco(gt, [pred, det(1, 2, BOX_B)])
    assert doc["segm"]["map"] == pytest.approx(1.0) and doc["bbox"]["map"] == pytest.approx(1.0)
    assert doc["segm"]["tp"] == 2


def test_bad_inputs_raise_data_errors(tmp_path: Path) -> None:
    gt = gt_doc([(1, 1, BOX_A, 0)], n_images=1)
    with pytest.raises(DataError, match=r"image id\(s\) not in the ground truth \(7, 9\)"):
        evaluate_coco(gt, [det(7, 1, BOX_A), det(9, 1, BOX_A), det(1, 1, BOX_A)])
    with pytest.raises(DataError, match=r"category id\(s\) 42"):
        evaluate_coco(gt, [det(1, 42, BOX_A)])
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        evaluate_coco(gt, bad)
    bad.write_text(json.dumps({"annotations": []}))
    with pytest.raises(DataError, match="expected a JSON list"):
        evaluate_coco(gt, bad)
    with pytest.raises(DataError, match="item 0"):
        evaluate_coco(gt, [{"image_id": 1, "bbox": [0, 0, 1, 1]}])
    with pytest.raises(DataError, match="does not exist"):
        evaluate_coco(tmp_path / "missing.json", [])
    with pytest.raises(DataError, match="mask size"):
        evaluate_coco(gt, [{**det(1, 1, BOX_A), "segmentation": rect_rle(0, 0, 5, 5, 50, 50)}])
    with pytest.raises(ConfigError, match="strictly between 0 and 1"):
        evaluate_coco(gt, [], iou_thresholds=[0.0])
    with pytest.raises(ConfigError):
        evaluate_coco(gt, [], iou_thresholds=[1.5])


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16"])
def test_files_saved_by_windows_tools_are_read(tmp_path: Path, encoding: str) -> None:
    """Notepad and PowerShell save JSON with a UTF-8 byte-order mark, or as UTF-16."""
    gt, preds = gt_doc([(1, 1, BOX_A, 0), (2, 2, BOX_B, 0)]), [det(1, 1, BOX_A), det(2, 1, BOX_B)]
    expected = evaluate_coco(gt, preds)
    (tmp_path / "gt.json").write_text(json.dumps(gt), encoding=encoding)
    (tmp_path / "preds.json").write_text(json.dumps(preds), encoding=encoding)
    assert evaluate_coco(tmp_path / "gt.json", tmp_path / "preds.json") == expected


def _broken(target: str, key: str, value: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    gt, preds = gt_doc([(1, 1, BOX_A, 0), (1, 2, BOX_B, 1)], n_images=1), [det(1, 1, BOX_A)]
    item = {"image": gt["images"][0], "ann": gt["annotations"][1], "cat": gt["categories"][0]}.get(target)
    (item if item is not None else preds[0])[key] = value
    return gt, preds


@pytest.mark.parametrize(
    ("target", "key", "value", "message"),
    [
        ("image", "id", [1], "integer id"),
        ("image", "height", "x", "height/width"),
        ("image", "width", float("nan"), "height/width"),
        ("cat", "id", {"a": 1}, "unique integer id"),
        ("ann", "image_id", [1], "integer id, image_id"),
        ("ann", "iscrowd", [1], "iscrowd"),
        ("ann", "segmentation", None, "not COCO RLE"),
        ("ann", "segmentation", {"size": [H, W], "counts": "zzzz0"}, "RLE counts"),
        ("ann", "segmentation", {"size": [H, W], "counts": [5, 5]}, "do not add up"),
        ("ann", "segmentation", [[]], "polygons must be"),
        ("pred", "image_id", [1], "integer image_id"),
        ("pred", "segmentation", {"size": "ab", "counts": 5}, "not COCO RLE"),
        ("pred", "segmentation", [[1, 2, float("nan"), 4, 5, 6]], "polygons must be"),
        ("pred", "segmentation", {"size": [H, W], "counts": ["x"]}, "RLE counts"),
    ],
)
def test_malformed_ground_truth_or_results_give_data_errors(
    target: str, key: str, value: Any, message: str
) -> None:
    """Other tools' files reach pycocotools only once checked: a DataError, never a crash inside it."""
    gt, preds = _broken(target, key, value)
    with pytest.raises(DataError, match=message):
        evaluate_coco(gt, preds)


def test_random_damage_to_eval_inputs_never_crashes() -> None:
    import random

    weird: list[Any] = [None, 0, -1, float("nan"), "x", [], {}, [1], [[1]], True, 2**70, 1.5, {"a": 1}]
    rng = random.Random(0)
    base_gt, base_preds = noisy_set(seed=1, n_images=3)
    for _ in range(150):
        gt, preds = copy.deepcopy(base_gt), copy.deepcopy(base_preds)
        section = rng.choice([gt["images"], gt["annotations"], gt["categories"], preds])
        item = rng.choice(section)
        item[rng.choice([*item, "segmentation"])] = copy.deepcopy(rng.choice(weird))
        with contextlib.suppress(DataError):  # anything else fails the test
            evaluate_coco(gt, preds)


def test_metrics_document_schema() -> None:
    gt, preds = noisy_set(seed=2, n_images=4)
    doc = evaluate_coco(gt, preds, iou_thresholds=[0.3])
    assert {"bbox", "segm", "confusion_matrix", "images", "predictions"} <= set(doc)
    for iou_type in ("bbox", "segm"):
        m = doc[iou_type]
        assert set(STAT_NAMES) | {"ap_at_iou", "per_class", "precision", "recall", "f1"} <= set(m)
        assert set(m["per_class"]) == set(CLASSES)
        for row in m["per_class"].values():
            assert {"ap", "ap50", "ap75", "n_gt", "n_pred"} <= set(row)
        assert set(m["pr_curve"]["precision"]) == set(CLASSES) and len(m["pr_curve"]["recall"]) == 101
    cm = doc["confusion_matrix"]
    assert cm["iou"] == 0.5 and len(cm["matrix"]) == len(cm["classes"]) == 4
    text = json.dumps(doc, allow_nan=False)  # no NaN or inf anywhere
    assert json.loads(text) == doc
    # the caller's ground truth is not modified (pycocotools converts masks in place)
    assert gt == noisy_set(seed=2, n_images=4)[0]


# --- the CLI on results files ---------------------------------------------------------------------


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from officescore.cli import main

    with pytest.raises(SystemExit) as exc:
        main(args)
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


def assert_png(path: Path) -> None:
    from PIL import Image

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        image.verify()
        assert image.size[0] > 200 and image.size[1] > 200


@pytest.fixture
def results_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, list[dict[str, Any]]]:
    monkeypatch.chdir(tmp_path)
    gt, preds = noisy_set(seed=3, n_images=5)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "results.json").write_text(json.dumps(preds))
    return tmp_path / "gt.json", tmp_path / "results.json", preds


def test_cli_evaluates_a_results_file(results_files: Any, capsys: pytest.CaptureFixture[str]) -> None:
    gt, results, preds = results_files
    args = ["eval", "--predictions", str(results), "--gt", str(gt), "--iou", "0.3"]
    code, out, _ = run_cli([*args, "--json"], capsys)
    assert code == 0
    doc = json.loads(out)
    # the document names what it measured; the rest is evaluate_coco's document
    assert doc.pop("evaluated") == {"model": None, "predictions": str(results), "gt": str(gt), "split": None}
    assert doc == evaluate_coco(gt, results, iou_thresholds=[0.3])
    run = Path("runs/eval/eval")
    assert json.loads((run / "metrics.json").read_text()) == {**doc, "evaluated": ANY}
    assert json.loads((run / "predictions.json").read_text()) == preds
    assert_png(run / "pr_curves.png")
    assert_png(run / "confusion_matrix.png")
    # a second run never overwrites the first; tables on stdout without --json
    code, out, _ = run_cli(args, capsys)
    assert code == 0 and Path("runs/eval/eval2/metrics.json").is_file()
    assert "mAP @[.50:.95]" in out and "per class" in out and "desk" in out and "runs/eval/eval2" in out
    assert f"{doc['segm']['map']:.3f}" in out
    # nothing cut off: tables fit 80 columns; plain status lines are never hard-wrapped off a terminal
    table_lines = [line for line in out.splitlines() if line[:1] in "┏┃┡│└"]
    assert table_lines and "…" not in out and max(len(line) for line in table_lines) <= 80
    # the confusion matrix read per class: found, missed objects, false alarms
    matrix, names = doc["confusion_matrix"]["matrix"], doc["confusion_matrix"]["classes"]
    bg = len(names) - 1
    assert "false alarms" in out and "confusion_matrix.png" in out
    for i, name in enumerate(names[:-1]):
        row = f"{name} {matrix[i][i]} {matrix[i][bg]} {matrix[bg][i]}"
        assert row in " ".join(out.replace("│", " ").split()), row
    # per class: the mask numbers, with the box AP beside them (made to differ here: on this set
    # boxes and masks score alike)
    from types import SimpleNamespace

    from officescore.cli.evaluate import _show

    shown = copy.deepcopy(doc)
    for name in shown["classes"]:
        shown["bbox"]["per_class"][name].update(ap=0.123, n_gt=99)
    _show(SimpleNamespace(metrics=shown, warnings=[], model=None, gt=gt, out_dir=run, seconds=1.0))
    flat = " ".join(capsys.readouterr().out.replace("│", " ").split())
    for name in shown["classes"]:
        m = shown["segm"]["per_class"][name]
        numbers = [m["n_gt"], m["n_pred"], *(f"{m[k]:.3f}" for k in ("ap", "ap50", "ap75")), "0.123"]
        row = " ".join(str(n) for n in [name, *numbers])
        assert row in flat, row


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--iou", "0"], "strictly between 0 and 1"),
        (["--iou", "1.5"], "strictly between 0 and 1"),
        (["--conf", "2"], "--conf"),
        (["--name", "../x"], "run name"),
        (["--gt", "missing.json"], "does not exist"),
    ],
)
def test_cli_errors_exit_2_with_one_line(
    results_files: Any, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    gt, results, _ = results_files
    base = ["eval", "--predictions", str(results), "--gt", str(gt)]
    if args[0] == "--gt":
        base = ["eval", "--predictions", str(results)]
    code, out, err = run_cli(base + args, capsys)
    assert code == 2 and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not Path("runs/eval").exists() or not any(Path("runs/eval").iterdir())  # nothing written


def test_cli_errors_without_model_or_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(["eval"], capsys)
    assert code == 2 and "no trained model found" in err
    code, _, err = run_cli(["eval", "--model", "nope.pt"], capsys)
    assert code == 2 and "nope.pt" in err
    (tmp_path / "bad.json").write_text("[{]")
    (tmp_path / "gt.json").write_text(json.dumps(gt_doc([(1, 1, BOX_A, 0)], n_images=1)))
    code, _, err = run_cli(["eval", "--predictions", "bad.json", "--gt", "gt.json"], capsys)
    assert code == 2 and "not valid JSON" in err
    code, _, err = run_cli(["eval", "--gt", "gt.json"], capsys)
    assert code == 2 and "--gt needs --predictions" in err


# --- a tiny untrained model over a tiny data set -------------------------------------------------

TINY = {
    "min_size": 64,
    "max_size": 96,
    "rpn_pre_nms_top_n_test": 30,
    "rpn_post_nms_top_n_test": 10,
    "box_detections_per_img": 5,
    "box_score_thresh": 0.0,
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A data set folder as `ingest` writes it (4 val images) and an untrained checkpoint."""
    import torch
    from PIL import Image

    from officescore.model import build_model, save_checkpoint

    root = tmp_path_factory.mktemp("tiny")
    data = root / "dataset"
    (data / "images").mkdir(parents=True)
    anns: list[Ann] = [
        (1, 1, BOX_A, 0),
        (2, 2, BOX_B, 0),
        (3, 3, BOX_A, 0),
        (3, 1, BOX_B, 1),
        (4, 2, BOX_A, 0),
    ]
    gt = gt_doc(anns, n_images=4)
    rng = np.random.default_rng(0)
    for image in gt["images"]:
        pixels = rng.integers(0, 255, size=(H, W, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(data / image["file_name"])
    (data / "val.json").write_text(json.dumps(gt))
    (data / "dataset.json").write_text(
        json.dumps({"format": "officescore-dataset", "version": 1, "classes": CLASSES})
    )
    torch.manual_seed(0)
    model = build_model("maskrcnn_resnet18_fpn", CLASSES, weights="none", **TINY).eval()
    checkpoint = root / "best.pt"
    save_checkpoint(
        checkpoint, model=model.state_dict(), arch="maskrcnn_resnet18_fpn", classes=CLASSES, model_kwargs=TINY
    )
    return {"data": data, "gt": gt, "model": model, "checkpoint": checkpoint}


def assert_same_results(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> None:
    assert [(r["image_id"], r["category_id"]) for r in a] == [(r["image_id"], r["category_id"]) for r in b]
    assert [r["score"] for r in a] == pytest.approx([r["score"] for r in b], abs=1e-4)
    assert np.allclose([r["bbox"] for r in a], [r["bbox"] for r in b], atol=1e-2)


def test_predict_coco_returns_coco_results(tiny: dict[str, Any]) -> None:
    from officescore.dataset import OfficeDataset
    from officescore.evaluate import predict_coco

    dataset = OfficeDataset(tiny["data"], "val")
    results = predict_coco(tiny["model"], dataset, "cpu", batch_size=3)
    assert len(results) == 4 * TINY["box_detections_per_img"]  # score threshold 0: every detection
    for r in results:
        assert set(r) == {"image_id", "category_id", "bbox", "score", "segmentation"}
        assert r["image_id"] in {1, 2, 3, 4} and r["category_id"] in {1, 2, 3}
        x, y, w, h = r["bbox"]
        assert w >= 0 and h >= 0 and x >= 0 and y >= 0 and x + w <= W + 1e-3 and y + h <= H + 1e-3
        assert 0.0 <= r["score"] <= 1.0
        assert r["segmentation"]["size"] == [H, W] and isinstance(r["segmentation"]["counts"], str)
    json.dumps(results, allow_nan=False)
    # Asked for (the label backend's jobs), each mask result has its mask score: the mean mask
    # probability inside the mask, so above 0.5 for a mask with pixels and 0 for an empty one.
    scored = predict_coco(tiny["model"], dataset, "cpu", batch_size=3, mask_scores=True)
    assert [{k: v for k, v in r.items() if k != "mask_score"} for r in scored] == results
    for r in scored:
        empty = area(r["segmentation"]) == 0
        assert r["mask_score"] == 0.0 if empty else 0.5 < r["mask_score"] <= 1.0
    assert any(r["mask_score"] > 0 for r in scored)
    doc = evaluate_coco(dataset.annotation_file, results)  # what the model wrote is evaluable
    assert doc["predictions"] == len(results) and doc["segm"]["map"] is not None
    # a shard gives exactly that image's results; a class map renames and drops labels
    shard = predict_coco(tiny["model"], dataset, "cpu", batch_size=1, indices=[1])
    assert_same_results(shard, [r for r in results if r["image_id"] == 2])  # batching moves floats a bit
    mapped = predict_coco(tiny["model"], dataset, "cpu", indices=[1], category_ids=[7, None, 9])
    assert [m["category_id"] for m in mapped] == [
        {1: 7, 3: 9}[r["category_id"]] for r in shard if r["category_id"] != 2
    ]
    high = predict_coco(tiny["model"], dataset, "cpu", indices=[1], score_threshold=0.5)
    assert high == [r for r in shard if r["score"] >= 0.5]


def test_cli_evaluates_the_newest_checkpoint(
    tiny: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    weights = tmp_path / "runs/train/train/weights"
    weights.mkdir(parents=True)
    (weights / "best.pt").write_bytes(tiny["checkpoint"].read_bytes())
    code, out, _ = run_cli(
        ["eval", "--data", str(tiny["data"]), "--iou", "0.3", "--device", "cpu", "--json"], capsys
    )
    assert code == 0
    doc = json.loads(out)
    run = tmp_path / "runs/eval/eval"
    predictions = json.loads((run / "predictions.json").read_text())
    assert doc["predictions"] == len(predictions) == 20
    assert doc.pop("evaluated") == {
        "model": str(Path("runs/train/train/weights/best.pt")),
        "predictions": None,
        "gt": str(tiny["data"] / "val.json"),
        "split": "val",
    }
    assert doc == evaluate_coco(tiny["data"] / "val.json", predictions, iou_thresholds=[0.3])
    assert_png(run / "pr_curves.png")
    assert_png(run / "confusion_matrix.png")
    code, _, err = run_cli(["eval", "--data", str(tiny["data"]), "--split", "test"], capsys)
    assert code == 2 and "no split 'test'" in err


def test_cli_refuses_an_empty_split_and_warns_without_labels(
    tiny: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A split with no photos measured nothing: it printed a table of dashes and exited 0. One with
    photos but no labelled objects is evaluated (false alarms count) and says why mAP is n/a."""
    data = tmp_path / "dataset"
    shutil.copytree(tiny["data"], data)
    gt = {**tiny["gt"], "images": [], "annotations": []}
    (data / "empty.json").write_text(json.dumps(gt))
    (data / "unlabelled.json").write_text(json.dumps({**tiny["gt"], "annotations": []}))
    common = ["--model", str(tiny["checkpoint"]), "--data", str(data), "--device", "cpu"]
    project = ["--project", str(tmp_path / "evals")]
    code, _, err = run_cli(["eval", *common, *project, "--split", "empty"], capsys)
    assert code == 2 and "empty.json: no photos in it, nothing to evaluate" in err
    assert "--split" in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "evals").exists()
    (tmp_path / "r.json").write_text("[]")
    results = ["--predictions", str(tmp_path / "r.json")]
    code, _, err = run_cli(["eval", *results, "--gt", str(data / "empty.json"), *project], capsys)
    assert code == 2 and "no photos in it" in err and not (tmp_path / "evals").exists()
    assert "--split" not in err  # a --gt file is no split: no advice to pick another
    code, out, err = run_cli(["eval", *common, *project, "--split", "unlabelled"], capsys)
    assert code == 0, err
    assert "no labelled objects in it, so mAP and recall are undefined" in " ".join(out.split())
    doc = json.loads((tmp_path / "evals/eval/metrics.json").read_text())
    assert doc["segm"]["map"] is None and doc["segm"]["fp"] > 0 and doc["evaluated"]["split"] == "unlabelled"
    # a split where some classes have no object (desks only) is measured: no such warning
    one_class = [a for a in tiny["gt"]["annotations"] if a["category_id"] == 1]
    (data / "desks.json").write_text(json.dumps({**tiny["gt"], "annotations": one_class}))
    code, out, err = run_cli(["eval", *common, *project, "--split", "desks"], capsys)
    assert code == 0 and "no labelled objects" not in out + err, out + err


def test_cli_evaluates_a_run_folder_like_its_best_checkpoint(
    tiny: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--model RUN_FOLDER (as label and prelabel take it) is its weights/best.pt (its weights folder
    too); a folder of runs, the newest; it was refused as "no such model file" although it is there."""
    monkeypatch.chdir(tmp_path)
    weights = tmp_path / "runs/train/train/weights"
    weights.mkdir(parents=True)
    (weights / "best.pt").write_bytes(tiny["checkpoint"].read_bytes())
    common = ["--data", str(tiny["data"]), "--device", "cpu", "--json"]
    docs = []
    for model in (
        "runs/train/train/weights/best.pt",
        "runs/train/train/weights",
        "runs/train/train",
        "runs/train",
    ):
        code, out, err = run_cli(["eval", "--model", model, *common], capsys)
        assert code == 0, err
        docs.append(json.loads(out))
    assert docs[0] == docs[1] == docs[2] == docs[3]
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(["eval", "--model", "empty", *common], capsys)
    said = "--model empty: a folder with no weights/best.pt in it or its runs; pass a model file such as"
    assert code == 2 and said in err, err


def test_torchrun_ranks_infer_shards_and_rank0_writes(tiny: dict[str, Any], tmp_path: Path) -> None:
    """Two Gloo processes on CPU: each infers half the images, rank 0 gathers, evaluates, writes once."""
    from officescore.dataset import OfficeDataset
    from officescore.evaluate import predict_coco

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd += ["-m", "officescore", "eval", "--model", str(tiny["checkpoint"]), "--data", str(tiny["data"])]
    cmd += ["--device", "cpu", "--batch-size", "1", "--name", "dist", "--json"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path)}  # torchrun's log folders
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)  # one document: only rank 0 prints
    assert sorted(p.name for p in (tmp_path / "runs/eval").iterdir()) == ["dist"]
    predictions = json.loads((tmp_path / "runs/eval/dist/predictions.json").read_text())
    single = predict_coco(tiny["model"], OfficeDataset(tiny["data"], "val"), "cpu", batch_size=1)
    assert_same_results(predictions, sorted(single, key=lambda r: (r["image_id"], -r["score"])))
    assert doc.pop("evaluated") == {
        "model": str(tiny["checkpoint"]),
        "predictions": None,
        "gt": str(tiny["data"] / "val.json"),
        "split": "val",
    }
    assert doc == evaluate_coco(tiny["data"] / "val.json", predictions)


def test_eval_without_data_measures_the_model_on_the_data_set_it_trained_on(
    tiny: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """`train --data mydata` then `eval`: the run's args.json names mydata; data/dataset is absent."""
    import shutil

    run = tmp_path / "runs" / "train" / "mine"
    (run / "weights").mkdir(parents=True)
    shutil.copy(tiny["checkpoint"], run / "weights" / "best.pt")
    args = run / "args.json"
    args.write_text(json.dumps({"data": os.path.relpath(tiny["data"], run), "epochs": 1}))
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(["eval", "--device", "cpu"], capsys)
    assert code == 0, err
    assert f"on {os.path.relpath(tiny['data'] / 'val.json')}: 4 photos" in " ".join(out.split())
    args.write_text(json.dumps({"data": "../../../gone", "epochs": 1}))  # moved away: the default
    code, _, err = run_cli(["eval", "--device", "cpu"], capsys)
    assert code == 2 and err.startswith("error: data/dataset: no data set folder there")


def test_category_map_matches_model_classes_to_the_data_set_by_name() -> None:
    from officescore.evaluate import category_map

    assert category_map(CLASSES, CLASSES) is None  # label == category id
    assert category_map(["mug", "desk"], CLASSES) == [3, 1]
    assert category_map(["desk", "lamp"], CLASSES) == [1, None]  # lamps are dropped
    assert category_map(["chair", "desk", "mug"], CLASSES) == [2, 1, 3]  # the same classes, reordered
    with pytest.raises(DataError, match="nothing in common"):
        category_map(["lamp"], CLASSES)


def test_eval_runs_a_torchscript_export_like_its_checkpoint(tiny: dict[str, Any], tmp_path: Path) -> None:
    """The issue's second model source: an exported TorchScript file gives the checkpoint's numbers."""
    from officescore.evaluate.run import run_eval
    from officescore.export import export_model

    scripted = export_model(tiny["checkpoint"], "torchscript", out=tmp_path / "best.torchscript.pt").path
    common = {"data": tiny["data"], "device": "cpu", "project": tmp_path / "runs", "iou_thresholds": [0.3]}
    from_checkpoint = run_eval(model=tiny["checkpoint"], name="ckpt", **common)
    from_script = run_eval(model=scripted, name="ts", **common)
    assert from_checkpoint is not None and from_script is not None
    assert from_script.model == scripted and from_script.predictions == from_checkpoint.predictions
    for iou_type in ("bbox", "segm"):
        for key in ("map", "ap50", "ar100", "precision", "recall"):
            a, b = from_script.metrics[iou_type][key], from_checkpoint.metrics[iou_type][key]
            assert a == pytest.approx(b, abs=1e-3), (iou_type, key)
    assert (tmp_path / "runs" / "ts" / "predictions.json").is_file()
