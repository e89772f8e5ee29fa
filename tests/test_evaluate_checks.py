"""officescore.evaluate checked against independent computations: pycocotools' own per-image matching
and precision arrays on crowded photos, hand-worked cases, and the `eval` tables against the document.

Written by a mutation review: each test here catches small realistic bugs (a wrong threshold, a
swapped column, a dropped check) that the rest of the suite let through."""

from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from test_evaluate import BOX_A, BOX_B, CLASSES, det, direct_cocoeval, gt_doc, noisy_set, rect_rle, run_cli

from officescore.errors import ConfigError, DataError
from officescore.evaluate import STAT_NAMES, evaluate_coco


def crowded_set(seed: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """`noisy_set` with 12 more false alarms of one class per photo, scored anywhere: more than 10
    detections of a class per photo, as a real model gives, so that numbers taken at 10 detections
    (COCOeval's cut is per photo and class) differ from those at 100."""
    gt, preds = noisy_set(seed=seed, n_images=6)
    rng = np.random.default_rng(seed + 100)
    for image in gt["images"]:
        cat = image["id"] % 3 + 1
        for _ in range(12):
            w, h = int(rng.integers(6, 50)), int(rng.integers(6, 50))
            box = (int(rng.integers(0, 120 - w)), int(rng.integers(0, 100 - h)), w, h)
            preds.append(det(image["id"], cat, box, float(rng.random())))
    return gt, preds


def write(tmp_path: Path, gt: dict[str, Any], preds: list[dict[str, Any]]) -> tuple[Path, Path]:
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "res.json").write_text(json.dumps(preds))
    return tmp_path / "gt.json", tmp_path / "res.json"


def mean_valid(values: np.ndarray) -> float | None:
    valid = values[values > -1]
    return float(valid.mean()) if valid.size else None


# --- per-class numbers and extra thresholds against COCOeval's arrays ----------------------------


@pytest.mark.parametrize("seed", [0, 1])
def test_per_class_numbers_equal_cocoeval_on_crowded_photos(tmp_path: Path, seed: int) -> None:
    """Per class AP, AP50, AP75 and AP at extra IoUs, and AP/AR at extra IoUs, are COCOeval's
    precision and recall arrays (area all, 100 detections per photo) averaged as summarize does."""
    gt, preds = crowded_set(seed)
    assert (
        max(sum(p["image_id"] == i and p["category_id"] == i % 3 + 1 for p in preds) for i in range(7)) > 10
    )
    gt_file, res_file = write(tmp_path, gt, preds)
    extra = [0.3, 0.6, 0.85]
    doc = evaluate_coco(gt_file, res_file, iou_thresholds=extra)
    for iou_type in ("bbox", "segm"):
        ev = direct_cocoeval(gt_file, res_file, iou_type)
        precision = ev.eval["precision"][:, :, :, 0, 2]  # [T, R, K], area all, 100 detections
        custom = direct_cocoeval(gt_file, res_file, iou_type, extra)
        xp, xr = custom.eval["precision"][:, :, :, 0, 2], custom.eval["recall"][:, :, 0, 2]
        for k, name in enumerate(CLASSES):
            row = doc[iou_type]["per_class"][name]
            assert row["ap"] == pytest.approx(mean_valid(precision[:, :, k]), abs=1e-12), (iou_type, name)
            assert row["ap50"] == pytest.approx(mean_valid(precision[0, :, k]), abs=1e-12)
            assert row["ap75"] == pytest.approx(mean_valid(precision[5, :, k]), abs=1e-12)
            for t, key in enumerate(("0.3", "0.6", "0.85")):
                assert row["ap_at_iou"][key] == pytest.approx(mean_valid(xp[t, :, k]), abs=1e-12)
            curve = doc[iou_type]["pr_curve"]["precision"][name]
            assert curve == pytest.approx(precision[0, :, k].tolist(), abs=1e-12)
        for t, key in enumerate(("0.3", "0.6", "0.85")):
            assert doc[iou_type]["ap_at_iou"][key] == pytest.approx(mean_valid(xp[t]), abs=1e-12)
            assert doc[iou_type]["ar_at_iou"][key] == pytest.approx(mean_valid(xr[t]), abs=1e-12)
    # per-class numbers that differ between thresholds: a test that can tell the thresholds apart
    rows = [row["ap_at_iou"] for m in (doc["bbox"], doc["segm"]) for row in m["per_class"].values()]
    assert any(len(set(row.values())) == 3 for row in rows)


# --- precision, recall, F1 and the confusion matrix against COCOeval's own matching --------------


def cocoeval_counts(gt_file: Path, res_file: Path, iou_type: str, conf: float) -> dict[str, np.ndarray]:
    """Per class TP, FP, FN at IoU 0.5 from COCOeval's per-photo matching (area all, 100 detections):
    a detection matched to a crowd region (dtIgnore) is neither; only detections scored >= conf."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(gt_file))
        ev = COCOeval(coco_gt, coco_gt.loadRes(str(res_file)), iou_type)
        ev.evaluate()
    cat_ids = sorted(coco_gt.cats)
    tp, fp, fn = (np.zeros(len(cat_ids), dtype=int) for _ in range(3))
    for e in ev.evalImgs:
        if e is None or e["aRng"] != ev.params.areaRng[0]:
            continue
        k = cat_ids.index(e["category_id"])
        shown = np.asarray(e["dtScores"]) >= conf
        matched, ignored = e["dtMatches"][0] > 0, e["dtIgnore"][0].astype(bool)
        tp[k] += int((shown & matched & ~ignored).sum())
        fp[k] += int((shown & ~matched & ~ignored).sum())
        fn[k] += int((~np.asarray(e["gtIgnore"], dtype=bool)).sum())
    return {"tp": tp, "fp": fp, "fn": fn - tp}


@pytest.mark.parametrize("seed", [0, 1, 2, 4])
def test_precision_recall_counts_equal_cocoeval_matching(tmp_path: Path, seed: int) -> None:
    gt, preds = crowded_set(seed)
    # Overlapping objects of one class: a detection on both must take the one it overlaps most.
    gt["annotations"] += gt_doc([(1, 1, (10, 10, 40, 40), 0), (1, 1, (20, 10, 40, 40), 0)])["annotations"]
    for i, ann in enumerate(gt["annotations"], start=1):
        ann["id"] = i
    preds += [det(1, 1, (18, 10, 40, 40), 0.97), det(1, 1, (30, 10, 40, 40), 0.96)]
    gt_file, res_file = write(tmp_path, gt, preds)
    for conf in (0.0, 0.25, 0.6):
        doc = evaluate_coco(gt_file, res_file, conf=conf)
        for iou_type in ("bbox", "segm"):
            expected = cocoeval_counts(gt_file, res_file, iou_type, conf)
            for k, name in enumerate(CLASSES):
                row = doc[iou_type]["per_class"][name]
                assert [row["tp"], row["fp"], row["fn"]] == [expected[c][k] for c in ("tp", "fp", "fn")], (
                    iou_type,
                    conf,
                    name,
                )


def test_a_detection_takes_the_object_it_overlaps_most() -> None:
    """Two desks, IoU 0.6 with each other. The first detection overlaps the right one most (0.90,
    the left 0.67): it takes the right one, as COCOeval does; the second (right 0.6, left 0.33)
    then finds nothing free: one found, one false alarm, one missed, as COCOeval's AP50 of 1/2 says."""
    gt = gt_doc([(1, 1, (10, 10, 40, 40), 0), (1, 1, (20, 10, 40, 40), 0)], n_images=1)
    preds = [det(1, 1, (18, 10, 40, 40), 0.9), det(1, 1, (30, 10, 40, 40), 0.8)]
    doc = evaluate_coco(gt, preds)
    for iou_type in ("bbox", "segm"):
        assert (doc[iou_type]["tp"], doc[iou_type]["fp"], doc[iou_type]["fn"]) == (1, 1, 1)
        assert doc[iou_type]["ap50"] == pytest.approx(0.5, abs=0.01)


def test_an_iou_of_exactly_one_half_is_a_match() -> None:
    """COCOeval matches at IoU >= 0.5 (it skips only IoUs below the threshold): a 40x80 detection on a
    40x40 desk inside it, IoU 1600 / 3200 = 0.5 exactly for boxes and masks, is found."""
    gt = gt_doc([(1, 1, BOX_A, 0)], n_images=1)
    doc = evaluate_coco(gt, [det(1, 1, (10, 10, 40, 80))])
    for iou_type in ("bbox", "segm"):
        assert doc[iou_type]["ap50"] == pytest.approx(1.0)  # COCOeval: a match
        assert (doc[iou_type]["tp"], doc[iou_type]["fp"], doc[iou_type]["fn"]) == (1, 0, 0)
    assert doc["confusion_matrix"]["matrix"][0][0] == 1


def test_a_second_class_on_a_found_object_is_a_false_alarm() -> None:
    """A desk found, and a chair detection on the same desk: the desk is taken, so the chair is a
    false alarm (background row), not a desk taken for a chair; each row adds up to its objects."""
    gt = gt_doc([(1, 1, BOX_A, 0)], n_images=1)
    doc = evaluate_coco(gt, [det(1, 1, BOX_A, 0.9), det(1, 2, BOX_A, 0.8)])
    matrix = doc["confusion_matrix"]["matrix"]
    assert matrix[0] == [1, 0, 0, 0] and matrix[3] == [0, 1, 0, 0]
    # the chair scored higher: the same, matching within a class comes before confusions
    doc = evaluate_coco(gt, [det(1, 1, BOX_A, 0.8), det(1, 2, BOX_A, 0.9)])
    assert doc["confusion_matrix"]["matrix"] == [[1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 1, 0, 0]]


# --- thresholds and names ------------------------------------------------------------------------


def test_conf_zero_counts_every_detection_and_iou_one_is_refused() -> None:
    gt = gt_doc([(1, 1, BOX_A, 0)], n_images=1)
    doc = evaluate_coco(gt, [det(1, 1, BOX_A, 0.0), det(1, 2, BOX_B, 0.0)], conf=0.0)
    assert (doc["segm"]["tp"], doc["segm"]["fp"]) == (1, 1) and doc["conf"] == 0.0
    for bad in (1.0, 0.0, -0.5):
        with pytest.raises(ConfigError, match="strictly between 0 and 1"):
            evaluate_coco(gt, [], iou_thresholds=[bad])


def test_iou_keys_keep_every_digit_given() -> None:
    """--iou 0.625 is reported as "0.625", not rounded into a neighbour's name."""
    gt = gt_doc([(1, 1, BOX_A, 0)], n_images=1)
    doc = evaluate_coco(gt, [det(1, 1, (20, 10, 40, 40))], iou_thresholds=[0.625, 0.6, 0.575])
    assert list(doc["bbox"]["ap_at_iou"]) == ["0.575", "0.6", "0.625"]
    assert doc["iou_thresholds"] == [0.575, 0.6, 0.625]
    # IoU 0.6 exactly: found at 0.575 and 0.6, not at 0.625
    assert doc["bbox"]["ap_at_iou"] == {"0.575": pytest.approx(1.0), "0.6": pytest.approx(1.0), "0.625": 0.0}


def test_classes_with_the_same_name_stay_apart() -> None:
    """Merged exports can name two categories alike: each keeps its own row, named by its id."""
    gt = gt_doc([(1, 1, BOX_A, 0), (1, 2, BOX_B, 0)], n_images=1)
    gt["categories"][1]["name"] = "desk"
    doc = evaluate_coco(gt, [det(1, 1, BOX_A), det(1, 1, BOX_B, 0.8)])
    assert doc["classes"] == ["desk", "desk (2)", "mug"]
    assert doc["confusion_matrix"]["classes"] == ["desk", "desk (2)", "mug", "background"]
    rows = doc["segm"]["per_class"]
    # the second desk (category 2) found as category 1: a false alarm of one, a miss of the other
    assert (rows["desk"]["tp"], rows["desk"]["fp"], rows["desk (2)"]["fn"]) == (1, 1, 1)
    assert rows["desk (2)"]["n_gt"] == 1 and rows["desk (2)"]["ap"] == 0.0


# --- inputs --------------------------------------------------------------------------------------


def _gt_with(key: str, value: Any, index: int = 0) -> dict[str, Any]:
    gt = gt_doc([(1, 1, BOX_A, 0), (1, 2, BOX_B, 0)], n_images=1)
    target = gt["images"][0] if key in ("height", "width") else gt["annotations"][index]
    if value is None:
        del target[key]
    else:
        target[key] = value
    return gt


@pytest.mark.parametrize(
    ("gt", "message"),
    [
        # COCOeval marks an unmatched detection with id 0: an object with id 0 is never found
        (_gt_with("id", 0), "unique positive integers"),
        (_gt_with("id", 1, index=1), "unique positive integers"),
        (_gt_with("iscrowd", 2), "iscrowd"),
        (_gt_with("area", None), "has no area"),
        # four numbers are no polygon: pycocotools would read them as a box
        (_gt_with("segmentation", [[10, 10, 50, 50]]), "polygons must be"),
        (_gt_with("segmentation", [[10, 10, 50, 10, 50, 50, 10]]), "polygons must be"),
        (_gt_with("segmentation", {"size": [0, 120], "counts": ""}), "not COCO RLE"),
        (_gt_with("height", 100.5), "height/width"),
        (_gt_with("segmentation", rect_rle(10, 10, 40, 40, 50, 60)), "mask size"),
        ({**gt_doc([], n_images=1), "categories": []}, "has no categories"),
    ],
)
def test_more_malformed_ground_truths_give_data_errors(gt: dict[str, Any], message: str) -> None:
    with pytest.raises(DataError, match=message):
        evaluate_coco(gt, [det(1, 1, BOX_A)])


@pytest.mark.parametrize("score", [float("nan"), float("inf"), True, "0.9", None])
def test_a_score_that_is_no_finite_number_gives_a_data_error(score: Any) -> None:
    """json reads NaN and Infinity; pycocotools would sort by them without a word."""
    gt = gt_doc([(1, 1, BOX_A, 0)], n_images=1)
    with pytest.raises(DataError, match="item 1 has a score that is not a finite number"):
        evaluate_coco(gt, [det(1, 1, BOX_A), {**det(1, 1, BOX_B), "score": score}])


def test_a_folder_given_as_a_file_is_named_as_such(tmp_path: Path) -> None:
    gt = gt_doc([(1, 1, BOX_A, 0)], n_images=1)
    with pytest.raises(DataError, match=r"predictions file .* is a folder; give the JSON file"):
        evaluate_coco(gt, tmp_path)
    with pytest.raises(DataError, match=r"ground truth file .* is a folder; give the JSON file"):
        evaluate_coco(tmp_path, [])


def test_masks_on_some_results_only_give_a_data_error() -> None:
    gt = gt_doc([(1, 1, BOX_A, 0)], n_images=1)
    boxes_only = {k: v for k, v in det(1, 1, BOX_B).items() if k != "segmentation"}
    with pytest.raises(DataError, match="1 of 2 results have no segmentation; give every result a mask"):
        evaluate_coco(gt, [det(1, 1, BOX_A), boxes_only])


def test_error_names_five_ids_and_counts_the_rest() -> None:
    gt = gt_doc([(1, 1, BOX_A, 0)], n_images=1)
    with pytest.raises(DataError, match=r"\(2, 3, 4, 5, 6 and 2 more\)"):
        evaluate_coco(gt, [det(i, 1, BOX_A) for i in range(1, 9)])


def test_a_file_in_a_windows_code_page_gives_a_data_error(tmp_path: Path) -> None:
    """A ground truth saved as Latin-1 (a category named café): not UTF-8, so not JSON, said so."""
    gt = gt_doc([(1, 1, BOX_A, 0)], n_images=1)
    gt["categories"][0]["name"] = "café"
    (tmp_path / "gt.json").write_bytes(json.dumps(gt, ensure_ascii=False).encode("latin-1"))
    with pytest.raises(DataError, match="is not valid JSON"):
        evaluate_coco(tmp_path / "gt.json", [])


def test_ground_truth_with_some_masks_missing_evaluates_boxes_only() -> None:
    """A mask per object or no segm evaluation: COCOeval cannot score masks against a box."""
    gt = gt_doc([(1, 1, BOX_A, 0), (1, 2, BOX_B, 0)], n_images=1)
    del gt["annotations"][1]["segmentation"]
    doc = evaluate_coco(gt, [det(1, 1, BOX_A), det(1, 2, BOX_B)])
    assert doc["segm"] is None and doc["bbox"]["map"] == pytest.approx(1.0)


def test_mask_results_with_some_empty_boxes_are_sized_by_their_masks(tmp_path: Path) -> None:
    """Some tools write "bbox": [] beside some masks only. pycocotools reads such a file by its first
    result: with "bbox": [] first, every result is sized by its mask, and so are ours."""
    gt, preds = noisy_set(seed=4, n_images=6)
    mixed = [{**p, "bbox": []} if i % 3 == 0 else p for i, p in enumerate(preds)]
    direct = direct_cocoeval(*write(tmp_path, gt, mixed), "segm").stats
    ours = evaluate_coco(gt, mixed)["segm"]
    assert [-1.0 if ours[k] is None else ours[k] for k in STAT_NAMES] == pytest.approx(direct, abs=1e-12)
    # a box sizes some detections differently (the first result's keys decide for all in pycocotools)
    assert ours != evaluate_coco(gt, preds)["segm"]


def test_categories_listed_out_of_id_order_keep_their_confusion_rows() -> None:
    """Classes are in id order everywhere (names, rows, columns), whatever the file's order."""
    gt = gt_doc([(1, 1, BOX_A, 0), (1, 2, BOX_B, 0)], n_images=1)
    preds = [det(1, 1, BOX_A), det(1, 3, BOX_B)]  # the chair called a mug
    expected = evaluate_coco(gt, preds)
    gt["categories"].reverse()
    doc = evaluate_coco(gt, preds)
    assert doc["classes"] == CLASSES and doc["confusion_matrix"] == expected["confusion_matrix"]
    assert doc["confusion_matrix"]["matrix"][1] == [0, 0, 1, 0]  # chair row, mug column


def test_the_callers_ground_truth_is_left_as_it_was() -> None:
    """Polygons and a missing iscrowd: pycocotools turns polygons into RLE in place, and the checks
    fill in iscrowd; neither reaches the caller's dict."""
    x, y, w, h = BOX_A
    gt = gt_doc([(1, 1, BOX_A, 0)], n_images=1)
    gt["annotations"][0]["segmentation"] = [[x, y, x + w, y, x + w, y + h, x, y + h]]
    del gt["annotations"][0]["iscrowd"]
    before = copy.deepcopy(gt)
    evaluate_coco(gt, [det(1, 1, BOX_A)])
    assert gt == before


# --- model outputs to COCO results, and the eval command -----------------------------------------


def test_detections_become_coco_results() -> None:
    """A score at the threshold is kept (the model is asked for scores >= it), a mask pixel counts
    above probability 0.5 (torchvision's references), boxes turn from x1y1x2y2 into xywh."""
    import torch

    from officescore.evaluate.metrics import _to_results
    from officescore.masks import area

    masks = torch.zeros(3, 1, 20, 30)
    masks[:, 0, 2:6, 3:8] = 0.6  # 20 pixels in
    masks[:, 0, 10:12, 3:8] = 0.5  # at 0.5: out
    masks[:, 0, 14:16, 3:8] = 0.2
    out = {
        "scores": torch.tensor([0.5, 0.4999, 0.75]),
        "labels": torch.tensor([1, 2, 3]),
        "boxes": torch.tensor([[3.0, 2.0, 8.0, 6.0], [0.0, 0.0, 1.0, 1.0], [1.5, 2.5, 10.0, 20.0]]),
        "masks": masks,
    }
    results = _to_results(out, 7, 0.5, None)
    assert [(r["image_id"], r["category_id"], r["score"]) for r in results] == [(7, 1, 0.5), (7, 3, 0.75)]
    assert results[0]["bbox"] == [3.0, 2.0, 5.0, 4.0] and results[1]["bbox"] == [1.5, 2.5, 8.5, 17.5]
    assert [area(r["segmentation"]) for r in results] == [20, 20]
    assert results[0]["segmentation"]["size"] == [20, 30]
    mapped = _to_results(out, 7, 0.0, [5, None, 4])  # label 2 is a class the data set lacks
    assert [r["category_id"] for r in mapped] == [5, 4]


def test_eval_refuses_a_bad_conf_before_predicting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import officescore.evaluate.run as eval_run

    def no_predicting(*args: object, **kwargs: object) -> None:
        raise AssertionError("eval predicted before checking --conf")

    monkeypatch.setattr(eval_run, "_eval_model", no_predicting)
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(["eval", "--model", "any.pt", "--conf", "1.5"], capsys)
    assert code == 2 and "--conf 1.5" in err and len(err.strip().splitlines()) == 1


def test_eval_without_the_splits_ground_truth_says_to_pass_gt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "res.json").write_text("[]")
    code, _, err = run_cli(["eval", "--predictions", "res.json", "--data", "nowhere"], capsys)
    assert code == 2 and err.strip() == (
        f"error: ground truth {Path('nowhere/val.json')} does not exist; pass --gt FILE (COCO annotations)"
    )
    assert not (tmp_path / "runs").exists()


def test_eval_tables_show_the_documents_numbers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every number in the tables is the document's, in its row and column."""
    gt, preds = crowded_set(1)
    gt_file, res_file = write(tmp_path, gt, preds)
    args = ["eval", "--predictions", str(res_file), "--gt", str(gt_file), "--iou", "0.3", "--iou", "0.85"]
    args += ["--project", str(tmp_path / "runs"), "--conf", "0.2"]
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    doc = json.loads((tmp_path / "runs/eval/metrics.json").read_text())
    text = " ".join(out.replace("│", " ").replace("┃", " ").split())

    def f(v: float | None) -> str:
        return "-" if v is None else f"{v:.3f}"

    assert f"{doc['images']} photos, {doc['predictions']} predictions" in text
    assert doc["segm"]["ar10"] != doc["segm"]["ar100"]  # rows that can tell them apart
    labels = ("mAP @[.50:.95]", "AP50", "AP75", "AP small", "AP medium", "AP large", "AR @1", "AR @10")
    keys = ("map", "ap50", "ap75", "ap_small", "ap_medium", "ap_large", "ar1", "ar10", "ar100")
    for label, key in zip((*labels, "AR @100"), keys, strict=True):
        assert f"{label} {f(doc['bbox'][key])} {f(doc['segm'][key])}" in text, label
    for key in ("0.3", "0.85"):
        assert f"{key} {f(doc['bbox']['ap_at_iou'][key])} {f(doc['segm']['ap_at_iou'][key])}" in text
    assert "per class (mask AP)" in text
    for name in CLASSES:
        row, box = doc["segm"]["per_class"][name], doc["bbox"]["per_class"][name]
        numbers = [row["ap"], row["ap50"], row["ap75"], box["ap"], row["precision"], row["recall"], row["f1"]]
        shown = f"{name} {row['n_gt']} {row['n_pred']} " + " ".join(f(v) for v in numbers)
        assert shown in text, shown
    for iou_type, label in (("bbox", "box"), ("segm", "mask")):
        m = doc[iou_type]
        counts = f"{f(m['precision'])} {f(m['recall'])} {f(m['f1'])} {m['tp']} {m['fp']} {m['fn']}"
        assert f"{label} {counts}" in text
    matrix = doc["confusion_matrix"]["matrix"]
    confusions = 0
    for i, name in enumerate(CLASSES):
        others = sorted(
            ((matrix[i][j], CLASSES[j]) for j in range(3) if j != i and matrix[i][j]), reverse=True
        )
        confusions += len(others)
        taken_for = ", ".join(f"{other} {n}" for n, other in others) or "-"
        assert f"{name} {matrix[i][i]} {matrix[i][3]} {matrix[3][i]} {taken_for}" in text
    assert confusions  # a set where some class is taken for another
    assert "no masks in the results" not in text
    boxes_only = [{k: v for k, v in p.items() if k != "segmentation"} for p in preds]
    res_file.write_text(json.dumps(boxes_only))
    code, out, err = run_cli(args, capsys)
    assert code == 0 and "no masks in the results (or the ground truth): boxes only" in out, err


def test_eval_plots_show_every_class_and_row_shares(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pr_curves.png: a line per class with ground truth (none for mugs), labelled with its AP50;
    confusion_matrix.png: counts, coloured by their share of the ground-truth row."""
    import officescore.evaluate.run as eval_run
    from officescore.evaluate.metrics import format_metric

    figures: list[Any] = []
    monkeypatch.setattr(eval_run, "_png", lambda fig: figures.append(fig) or b"")
    gt, preds = noisy_set(seed=1, n_images=6)
    gt["annotations"] = [a for a in gt["annotations"] if a["category_id"] != 3]  # mugs: no curve
    gt_file, res_file = write(tmp_path, gt, preds)
    run = eval_run.run_eval(predictions=res_file, gt=gt_file, project=tmp_path / "runs", conf=0.2)
    assert run is not None and len(figures) == 2
    pr, confusion = figures
    doc = run.metrics
    assert [ax.get_title().split(":")[0] for ax in pr.axes] == ["bbox", "segm"]
    for ax, iou_type in zip(pr.axes, ("bbox", "segm"), strict=True):
        labels = [text.get_text() for text in ax.get_legend().get_texts()]
        rows = doc[iou_type]["per_class"]
        assert labels == [f"{name} {format_metric(rows[name]['ap50'])}" for name in ("desk", "chair")]
        assert f"AP50 {format_metric(doc[iou_type]['ap50'])}" in ax.get_title()
    matrix = np.array(doc["confusion_matrix"]["matrix"], dtype=float)
    shares = np.asarray(confusion.axes[0].images[0].get_array())
    expected = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    assert shares == pytest.approx(expected)
    shown = sorted(int(t.get_text()) for t in confusion.axes[0].texts)
    assert shown == sorted(int(v) for v in matrix.ravel() if v)


# --- score thresholds for suggestions (label backend; class_f1_confs for bench/replay.py) --------


def test_the_replaced_models_suggestions_include_its_threshold() -> None:
    """The replaced model showed every detection scored at least its threshold: at 0.2, its false
    alarm at 0.2 too, so its precision is 3 of 6 (three copies of a found desk and a false alarm)."""
    from officescore.evaluate.inputs import load_gt
    from officescore.evaluate.match import bagged_best_f1_conf

    gt = load_gt(gt_doc([(k, 1, box, 0) for k in (1, 2, 3) for box in (BOX_A, BOX_B)], n_images=3))
    new = [det(k, 1, box, s) for k in (1, 2, 3) for box, s in ((BOX_A, 0.9), (BOX_B, 0.5))]
    replaced = [det(k, 1, box, s) for k in (1, 2, 3) for box, s in ((BOX_A, 0.9), ((0, 60, 30, 30), 0.2))]
    assert bagged_best_f1_conf(gt, new, replaced=(replaced, 0.2))["floor_precision"] == 0.5
    assert bagged_best_f1_conf(gt, new, replaced=(replaced, 0.21))["floor_precision"] == 1.0


def test_class_thresholds_hide_a_class_that_finds_nothing() -> None:
    """Only a false desk at 0.5 and the desk missed: no threshold helps F1, so the desks' threshold
    is just above 0.5 (showing nothing), not 0.5 (showing the false alarm)."""
    from officescore.evaluate.inputs import load_gt
    from officescore.evaluate.match import ABOVE, class_f1_confs

    gt = load_gt(gt_doc([(1, 1, BOX_A, 0)], n_images=1))
    found = class_f1_confs(gt, [det(1, 1, (0, 60, 30, 30), 0.5)], resamples=20, prior=0)
    assert found is not None and found["classes"]["desk"] == pytest.approx(0.5 + ABOVE, abs=2e-9)
    assert (found["tp"], found["fp"], found["fn"]) == (0, 0, 1)


def test_one_class_of_a_photos_outcomes_keeps_only_that_class() -> None:
    from officescore.evaluate.match import MATCHED, ImageOutcome

    image = ImageOutcome(
        scores=np.array([0.9, 0.8, 0.7]),
        outcome=np.array([MATCHED, 0, MATCHED]),
        classes=np.array([2, 1, 0]),
        objects=np.array([1, 2, 3]),
        image_id=5,
    )
    one = image.of_class(1)
    assert one.scores.tolist() == [0.8] and one.classes.tolist() == [1] and one.outcome.tolist() == [0]
    assert one.objects.tolist() == [0, 2, 0] and one.image_id == 5
