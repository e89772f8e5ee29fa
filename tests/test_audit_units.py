"""audit's small pieces on hand-computed cases: the issue rows --min-score lists, the errors
`inject_errors` plants (the ground truth of audit's tests and benchmark), match's helpers, the
--folds assignment and fold settings, a split as audit reads it, its predictions and review tasks."""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from PIL import Image

from officescore import masks as masklib
from officescore.curate.audit import AuditResult, issue_rows
from officescore.curate.conventions import ConventionReport
from officescore.curate.folds import assign_folds, cross_predict
from officescore.curate.inject import _shift, bad_mask, fake_predictions, inject_convention, inject_errors
from officescore.curate.labels import Label, LabelledImage, SplitLabels, load_split
from officescore.curate.match import (
    Prediction,
    match_image,
    object_tolerance,
    predictions_by_image,
    tolerance,
    tolerant_f,
)
from officescore.curate.predictions import PREDICT_CONF, predict_images
from officescore.curate.scoring import Calibration, Issue
from officescore.errors import ConfigError, DataError
from officescore.infer import Detection, ImageResult

# ---- issue rows --------------------------------------------------------------------------------


def _issue(score: float, image_id: int) -> Issue:
    return Issue("spurious", score, image_id, image_id * 10, "desk", None, [0.0, 0.0, 4.0, 4.0])


def test_min_score_lists_the_issues_scoring_at_least_it() -> None:
    images = [LabelledImage(k, f"img{k}.jpg", Path(f"img{k}.jpg"), 8, 8, "train") for k in (1, 2, 3)]
    split = SplitLabels(Path("set"), "train", ["desk"], images, [])
    issues = [_issue(0.9, 1), _issue(0.5, 2), _issue(0.3, 3)]  # ranked, highest first
    result = AuditResult(issues, [], Calibration({}, {}, {}), ConventionReport([]))
    rows = issue_rows(result, split, min_score=0.5)
    assert [(r["rank"], r["score"], r["file_name"]) for r in rows] == [
        (1, 0.9, "img1.jpg"),
        (2, 0.5, "img2.jpg"),
    ]
    assert len(issue_rows(result, split)) == 3  # the default 0.0 lists every issue


# ---- inject_errors -----------------------------------------------------------------------------


def _square_set(n: int = 10) -> dict[str, Any]:
    """One 80 x 40 photo with `n` 6 x 6 squares in a row, classes 1, 2, 3 in turn."""
    anns = []
    for k in range(n):
        mask = np.zeros((40, 80), dtype=np.uint8)
        mask[10:16, 2 + 8 * k : 8 + 8 * k] = 1
        rle = masklib.encode(mask)
        bbox, area = masklib.bbox(rle), float(masklib.area(rle))
        anns.append(
            {
                "id": 100 + k,
                "image_id": 1,
                "category_id": 1 + k % 3,
                "segmentation": rle,
                "bbox": bbox,
                "area": area,
                "iscrowd": 0,
            }
        )
    categories = [{"id": c, "name": f"class{c}"} for c in (1, 2, 3)]
    return {
        "images": [{"id": 1, "file_name": "a.jpg", "height": 40, "width": 80}],
        "annotations": anns,
        "categories": categories,
    }


def test_injected_rates_are_rounded_shares_of_the_labels_and_each_kind_is_what_it_says() -> None:
    coco = _square_set(10)
    before = {a["id"]: a for a in coco["annotations"]}
    out, injected = inject_errors(
        coco, seed=3, missing=0.19, wrong_class=0.3, bad_mask_rate=0.1, duplicate=0.1
    )
    # 10 labels: 1.9 -> 2 missing, 3 wrong_class, 1 bad_mask, 1 duplicate
    assert Counter(i.kind for i in injected) == {
        "missing": 2,
        "wrong_class": 3,
        "bad_mask": 1,
        "duplicate": 1,
    }
    after = {a["id"]: a for a in out["annotations"]}
    assert len(after) == len(out["annotations"]) == 10 - 2 + 1  # ids stay unique
    assert coco["annotations"] == list(before.values())  # the input is not changed
    for truth in injected:
        if truth.kind == "missing":
            assert truth.annotation_id is None
            gone = [k for k, a in before.items() if a["bbox"] == truth.bbox]
            assert len(gone) == 1 and gone[0] not in after
        elif truth.kind == "wrong_class":
            k = truth.annotation_id
            assert after[k]["category_id"] != before[k]["category_id"]
        elif truth.kind == "duplicate":
            assert truth.annotation_id not in before
            copied = int(truth.how.removeprefix("copy of "))
            assert after[truth.annotation_id]["segmentation"] == before[copied]["segmentation"]
        else:
            assert after[truth.annotation_id]["segmentation"] != before[truth.annotation_id]["segmentation"]


def test_more_errors_than_labels_is_a_clear_error() -> None:
    coco = _square_set(3)
    with pytest.raises(ValueError, match="4 label errors asked for, but the set has only 3 labels"):
        inject_errors(coco, counts={"missing": 2, "bad_mask": 2})
    _, injected = inject_errors(coco, counts={"missing": 2, "bad_mask": 1, "spurious": 2})
    assert len([i for i in injected if i.kind != "spurious"]) == 3  # one label each is enough


def test_exact_counts_replace_the_rates() -> None:
    _, injected = inject_errors(_square_set(10), seed=1, counts={"wrong_class": 1})
    assert [i.kind for i in injected] == ["wrong_class"]


def test_a_wrong_class_is_always_another_class() -> None:
    coco = _square_set(10)
    before = {a["id"]: a["category_id"] for a in coco["annotations"]}
    for seed in range(5):  # 25 draws among 3 classes: a draw that may keep the class would show
        out, injected = inject_errors(coco, seed=seed, counts={"wrong_class": 5})
        after = {a["id"]: a["category_id"] for a in out["annotations"]}
        assert all(after[i.annotation_id] != before[i.annotation_id] for i in injected)


# ---- match helpers -----------------------------------------------------------------------------


def _mask(rows: slice, cols: slice, size: tuple[int, int] = (40, 40)) -> np.ndarray:
    mask = np.zeros(size, dtype=np.uint8)
    mask[rows, cols] = 1
    return mask


def _label(k: int, mask: np.ndarray, name: str = "desk") -> Label:
    rle = masklib.encode(mask)
    return Label(k, name, rle, list(masklib.bbox(rle)))


def _prediction(k: int, mask: np.ndarray, name: str = "desk", score: float = 0.9) -> Prediction:
    rle = masklib.encode(mask)
    return Prediction(k, name, score, rle, list(masklib.bbox(rle)))


def test_tolerances_by_hand() -> None:
    assert tolerance(480, 640) == 6  # 1 % of the longer side (6.4)
    assert tolerance(30, 40) == 1  # at least one pixel
    assert object_tolerance(6, [0, 0, 200, 40]) == 2  # 5 % of the shorter box side
    assert object_tolerance(6, [0, 0, 400, 300]) == 6  # never more than the photo's
    assert object_tolerance(6, [0, 0, 10, 4]) == 1


def test_tolerant_f_by_hand() -> None:
    square = _mask(slice(10, 20), slice(10, 20))
    rle = masklib.encode(square)
    assert tolerant_f(rle, rle, 1) == 1.0
    for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):  # one pixel off either way: within tolerance
        assert tolerant_f(rle, masklib.encode(np.roll(square, (dy, dx), axis=(0, 1))), 1) == 1.0
    # Three pixels right with tolerance 1: 8 of 10 columns agree each way, F = 0.8.
    assert tolerant_f(rle, masklib.encode(np.roll(square, 3, axis=1)), 1) == pytest.approx(0.8)


def test_predictions_by_image_best_first_and_classes_from_one() -> None:
    rle = masklib.encode(_mask(slice(0, 4), slice(0, 4)))
    results = [
        {"image_id": 5, "category_id": 2, "score": 0.4, "segmentation": rle, "bbox": [0, 0, 4, 4]},
        {"image_id": 5, "category_id": 1, "score": 0.8, "segmentation": rle, "bbox": [0, 0, 4, 4]},
        {"image_id": 6, "category_id": 2, "score": 0.5, "segmentation": rle, "bbox": [0, 0, 4, 4]},
    ]
    by_image = predictions_by_image(results, ["desk", "chair"])
    assert [(p.index, p.class_name, p.score) for p in by_image[5]] == [(1, "desk", 0.8), (0, "chair", 0.4)]
    assert [p.index for p in by_image[6]] == [2]


def test_match_image_overlaps_by_hand() -> None:
    a = _label(1, _mask(slice(0, 20), slice(0, 20)))
    b = _label(2, _mask(slice(0, 20), slice(10, 30)))  # half on a: IoU 200 / 600
    inside = _prediction(0, _mask(slice(5, 15), slice(2, 12)))  # 10 x 10, wholly inside a
    m = match_image([a, b], [inside])
    assert m.label_iou == pytest.approx(np.array([[0.0, 1 / 3], [1 / 3, 0.0]]))
    assert m.mask_iou[0].tolist() == pytest.approx([100 / 400, 20 / 480])
    assert m.covered[0].tolist() == pytest.approx([1.0, 0.2])  # share of the prediction inside each
    # The same mask, same class: its own agreement is whole (its pixels are its own label's).
    same = match_image([a], [_prediction(0, _mask(slice(0, 20), slice(0, 20)))])
    assert same.own_agree[0, 0] == 1.0
    other = match_image([a], [_prediction(0, _mask(slice(0, 20), slice(0, 20)), name="chair")])
    assert (other.agree[0, 0], other.own_agree[0, 0]) == (1.0, 0.0)  # own_agree: same-class pairs only


def test_a_near_miss_whose_box_overlaps_still_gets_a_tolerant_agreement() -> None:
    # An L (left column, bottom two rows) and a block in its crook one pixel above the bottom:
    # no mask overlap, box IoU 80 / 400, and tolerance 1 lets row 17 (10 px) meet row 18 (12 px).
    ell = _mask(slice(0, 20), slice(0, 2)) | _mask(slice(18, 20), slice(0, 20))
    m = match_image([_label(1, ell)], [_prediction(0, _mask(slice(10, 18), slice(4, 14)))])
    assert (m.mask_iou[0, 0], m.box_iou[0, 0]) == (0.0, pytest.approx(0.2))
    p, r = 10 / 80, 12 / 76
    assert m.agree[0, 0] == pytest.approx(2 * p * r / (p + r))
    # A 2 x 2 prediction inside a 40 x 40 label: IoU 4 / 1600 by mask and box, still an agreement
    # (all of it inside: precision 1; the 4 x 4 pixels around it: recall 16 / 1600).
    tiny = match_image(
        [_label(1, _mask(slice(0, 40), slice(0, 40)))], [_prediction(0, _mask(slice(9, 11), slice(9, 11)))]
    )
    assert tiny.agree[0, 0] == pytest.approx(2 * 0.01 / 1.01)


def _plants(heights: list[int], image_id: int, category: int, first_id: int) -> list[dict[str, Any]]:
    """Plants side by side on an 80 x 40 photo, 10 px wide, `heights[k]` tall from row 10."""
    anns = []
    for k, height in enumerate(heights):
        rle = masklib.encode(_mask(slice(10, 10 + height), slice(2 + 16 * k, 12 + 16 * k), (40, 80)))
        anns.append(
            {
                "id": first_id + k,
                "image_id": image_id,
                "category_id": category,
                "segmentation": rle,
                "bbox": masklib.bbox(rle),
                "area": float(masklib.area(rle)),
                "iscrowd": 0,
            }
        )
    return anns


def test_inject_convention_relabels_a_rounded_share_of_the_labels_the_other_convention_changes() -> None:
    # Plants 0-2 lose their pot (10 -> 6 rows) in the other convention; plant 3 has none to lose.
    coco = {
        "images": [{"id": 1, "file_name": "images/a.jpg", "height": 40, "width": 80}],
        "categories": [{"id": 1, "name": "plant"}],
        "annotations": _plants([10, 10, 10, 10], 1, 1, 100),
    }
    other = {
        "images": [{"id": 9, "file_name": "elsewhere/a.jpg", "height": 40, "width": 80}],
        "categories": [{"id": 5, "name": "plant"}],
        "annotations": _plants([6, 6, 6, 10], 9, 5, 500),
    }
    _, half = inject_convention(coco, other, "plant", share=0.5, seed=0)
    assert len(half) == 2 and set(half) <= {100, 101, 102}  # 0.5 of 3 eligible: 1.5 -> 2
    out, chosen = inject_convention(coco, other, "plant", share=1.0, seed=0)
    assert chosen == [100, 101, 102]
    relabelled = {a["id"]: a for a in out["annotations"]}
    assert [relabelled[k]["area"] for k in (100, 101, 102, 103)] == [60.0, 60.0, 60.0, 100.0]
    assert relabelled[101]["bbox"] == [18.0, 10.0, 10.0, 6.0]


def test_shift_drops_what_leaves_the_photo() -> None:
    square = _mask(slice(0, 4), slice(6, 10), (8, 10))  # touching the top and right edges
    moved = _shift(square, 2, -1)
    assert moved.sum() == 2 * 3 and moved[0:3, 8:10].all()


def test_a_shifted_bad_mask_keeps_at_least_half_the_object() -> None:
    # In the photo's corner, a diagonal shift out of it keeps (1 - 0.3..0.45)^2 < half: never used.
    corner = masklib.encode(_mask(slice(0, 20), slice(0, 20)))
    for seed in range(100):
        rle, how = bad_mask(corner, random.Random(seed))
        assert masklib.area(rle) >= (0.5 if how == "shift" else 0.25) * 400, (seed, how)


def test_an_eroded_bad_mask_loses_0_18_of_the_shorter_side_all_round() -> None:
    # 20 x 20: radius round(0.18 x 20) = 4, so 12 x 12 = 144 px are left (36 %, above the 25 % floor).
    square = masklib.encode(_mask(slice(20, 40), slice(20, 40), (60, 60)))
    hows = set()
    for seed in range(10):
        rle, how = bad_mask(square, random.Random(seed))
        hows.add(how)
        if how == "erode":
            assert masklib.bbox(rle) == [24.0, 24.0, 12.0, 12.0] and masklib.area(rle) == 144
    assert hows == {"erode", "shift"}


def test_a_spurious_label_is_put_where_no_label_is() -> None:
    coco = _square_set(10)
    taken = sum(masklib.decode(a["segmentation"]) for a in coco["annotations"]).astype(bool)
    for seed in range(5):
        out, injected = inject_errors(coco, seed=seed, counts={"spurious": 3})
        added = {a["id"]: a for a in out["annotations"]}
        assert [i.kind for i in injected] == ["spurious"] * 3
        for truth in injected:
            mask = masklib.decode(added[truth.annotation_id]["segmentation"]).astype(bool)
            assert mask.any() and not (mask & taken).any(), seed


def test_fake_predictions_skip_crowd_regions() -> None:
    coco = _square_set(4)
    coco["annotations"][1]["iscrowd"] = 1
    found = fake_predictions(coco, seed=0)
    assert len(found) == 3  # every label found, but the crowd region (columns 10-15) is no object
    assert not any(masklib.decode(p["segmentation"])[12, 13] for p in found)


def test_fake_predictions_edge_noise_near_zero_cuts_nothing() -> None:
    # A cut of round(~0 x side) = 0 rows: each 6 x 6 square is found whole (8 x 8 when grown).
    found = fake_predictions(_square_set(10), seed=0, edge_noise=1e-9)
    assert len(found) == 10
    assert {tuple(masklib.bbox(p["segmentation"])[2:]) for p in found} <= {(6.0, 6.0), (8.0, 8.0)}


# ---- folds: which photos each fold model predicts --------------------------------------------


def _photos(n: int, groups: Sequence[Sequence[str]] = ()) -> SplitLabels:
    """`n` photos p1..pn (ids 1..n) with no labels; `groups`: near-duplicate file names."""
    images = [LabelledImage(i, f"images/p{i}.jpg", Path(f"p{i}.jpg"), 8, 6, "train") for i in range(1, n + 1)]
    return SplitLabels(Path("."), "train", ["desk"], images, [list(g) for g in groups])


def test_as_many_folds_as_photos_is_leave_one_out() -> None:
    assert sorted(assign_folds(_photos(4), 4)) == [[1], [2], [3], [4]]


def test_folds_deal_the_biggest_group_first_so_their_sizes_stay_even() -> None:
    """Three copies of one photo and three single photos in two folds: 3 + 3, never 2 + 4 (the
    copies dealt last, onto the fold the single photos left bigger)."""
    split = _photos(6, groups=[["images/p1.jpg", "images/p2.jpg", "images/p3.jpg"]])
    for seed in range(6):
        folds = assign_folds(split, 2, seed)
        assert sorted(map(len, folds)) == [3, 3] and [1, 2, 3] in folds, (seed, folds)


def test_more_folds_than_groups_of_near_duplicates_is_refused() -> None:
    """Three copies of one photo and one other photo are two groups: two folds, not three (one
    would be empty: its model trained on every photo and predicted none)."""
    split = _photos(4, groups=[["images/p1.jpg", "images/p2.jpg", "images/p3.jpg"]])
    assert sorted(assign_folds(split, 2)) == [[1, 2, 3], [4]]
    said = r"--folds 3: more folds than the 4 photos of the split \(2 once near-duplicates count as one\)"
    with pytest.raises(ConfigError, match=said):
        assign_folds(split, 3)


def test_the_seed_chooses_the_folds() -> None:
    split = _photos(12)
    assert assign_folds(split, 3, seed=1) == assign_folds(split, 3, seed=1)
    assert len({str(assign_folds(split, 3, seed)) for seed in range(4)}) > 1


def _tiny_dataset(
    root: Path, splits: dict[str, list[dict[str, Any]]], classes: Sequence[str] = ("desk",)
) -> Path:
    """A data-set folder as ingest writes it: `splits` maps a split to its images (COCO image
    records, each with its `annotations`), on blank 8x6 photos."""
    (root / "images").mkdir(parents=True)
    categories = [{"id": k, "name": name} for k, name in enumerate(classes, start=1)]
    for name, images in splits.items():
        coco: dict[str, Any] = {"images": [], "annotations": [], "categories": categories}
        for info in images:
            record = {"width": 8, "height": 6, **info}
            coco["annotations"] += record.pop("annotations", [])
            coco["images"].append(record)
            Image.new("RGB", (record["width"], record["height"])).save(root / record["file_name"])
        (root / f"{name}.json").write_text(json.dumps(coco), encoding="utf-8")
    (root / "dataset.json").write_text(json.dumps({"classes": list(classes)}), encoding="utf-8")
    return root


def _photo(image_id: int, **annotation: Any) -> dict[str, Any]:
    """A photo record; `annotation`: one label on it (a 4x2 box at 2, 1 by default)."""
    ann = {"id": image_id, "image_id": image_id, "category_id": 1, "iscrowd": 0, **annotation}
    ann.setdefault("segmentation", [[2, 1, 6, 1, 6, 3, 2, 3]])
    return {"id": image_id, "file_name": f"images/p{image_id}.png", "annotations": [ann]}


class _FoldPredictor:
    """Predictor.load's stand-in: remembers what it loaded; finds nothing."""

    loaded: list[Path] = []

    def __init__(self, checkpoint: Path) -> None:
        self.classes, self.source = ["desk"], str(checkpoint)

    @classmethod
    def load(cls, checkpoint: Path, **_: Any) -> _FoldPredictor:
        cls.loaded.append(Path(checkpoint))
        return cls(checkpoint)

    def predict(self, paths: Sequence[Path], **_: Any) -> list[ImageResult]:
        return [ImageResult(str(p), 8, 6) for p in paths]


def test_each_fold_model_trains_with_its_own_seed_to_the_last_epoch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The --train-args settings each fold model trains with: its own seed (seed + fold), no early
    stop (its validation photos are training photos), no resume, no photo cap, no tracker; and it
    predicts with its last checkpoint, not the best one (chosen on photos it trained on)."""
    import officescore.infer
    import officescore.train

    data = _tiny_dataset(tmp_path / "data", {"train": [_photo(i) for i in range(1, 7)]})
    seen: list[Any] = []

    def fake_train(config: Any, reporter: Any = None) -> Any:
        seen.append(config)
        run = tmp_path / "runs" / config.name
        return SimpleNamespace(
            last_checkpoint=run / "last.pt", best_checkpoint=run / "best.pt", history=[{"loss": 1.0}]
        )

    monkeypatch.setattr(officescore.train, "train", fake_train)
    monkeypatch.setattr(officescore.infer, "Predictor", _FoldPredictor)
    _FoldPredictor.loaded = []
    settings = officescore.train.TrainConfig(
        seed=7, patience=3, max_train_images=2, resume=tmp_path / "old.pt", log="tensorboard"
    )
    _, folds = cross_predict(load_split(data, "train"), 3, settings, device="cpu")
    assert [c.seed for c in seen] == [7, 8, 9]
    assert {(c.patience, c.max_train_images, c.resume, c.log) for c in seen} == {(0, None, None, "none")}
    assert _FoldPredictor.loaded == [tmp_path / "runs" / f"fold{n}" / "last.pt" for n in range(3)]
    assert sorted(i for f in folds for i in f.held_out) == list(range(1, 7))


# ---- a split as audit reads it -----------------------------------------------------------------


def test_all_is_both_splits_each_photo_named_by_its_own(tmp_path: Path) -> None:
    data = _tiny_dataset(tmp_path / "data", {"train": [_photo(1), _photo(2)], "val": [_photo(3)]})
    split = load_split(data, "all")
    assert [(image.id, image.split) for image in split.images] == [(1, "train"), (2, "train"), (3, "val")]


def test_labels_are_read_at_the_photos_own_width_and_height(tmp_path: Path) -> None:
    """Photos 8 wide and 6 high: the polygon's mask is 6 x 8 and lies where it was drawn."""
    data = _tiny_dataset(tmp_path / "data", {"train": [_photo(1)]})
    (image,) = load_split(data, "train").images
    assert (image.width, image.height) == (8, 6)
    (label,) = image.labels
    assert label.rle["size"] == [6, 8] and label.bbox == [2.0, 1.0, 4.0, 2.0]


def test_an_ignore_region_stays_an_ignore_region(tmp_path: Path) -> None:
    data = _tiny_dataset(tmp_path / "data", {"train": [_photo(1, iscrowd=1), _photo(2)]})
    assert [lab.iscrowd for image in load_split(data, "train").images for lab in image.labels] == [1, 0]


def test_a_data_set_with_no_classes_is_refused(tmp_path: Path) -> None:
    data = _tiny_dataset(tmp_path / "data", {"train": [_photo(1)]})
    (data / "dataset.json").write_text(json.dumps({"classes": []}), encoding="utf-8")
    with pytest.raises(DataError, match='no list of class names under "classes"'):
        load_split(data, "train")


# ---- audit --labelstudio: which photos go up for review, in what order ------------------------


def _issue_on(image: LabelledImage, score: float, rank: int = 1) -> dict[str, Any]:
    label = image.labels[0]
    return {"rank": rank, "kind": "bad_mask", "score": score, "image_id": image.id,
            "file_name": image.file_name, "annotation_id": label.id, "class": label.class_name,
            "suggested_class": None, "bbox": label.bbox}  # fmt: skip


def test_review_tasks_hold_the_photos_scoring_at_least_the_review_score_worst_first(tmp_path: Path) -> None:
    from officescore.curate.labelstudio import REVIEW_SCORE, audit_tasks
    from officescore.label.formats import read_tasks

    split = load_split(_tiny_dataset(tmp_path / "data", {"train": [_photo(i) for i in (1, 2, 3)]}), "train")
    one, two, three = split.images
    issues = [_issue_on(one, REVIEW_SCORE), _issue_on(two, 0.9), _issue_on(three, REVIEW_SCORE - 0.01)]
    path, _, count = audit_tasks(tmp_path / "review.json", split, [], issues, "audit-test")
    assert count == 2 and [t["data"]["image_id"] for t in read_tasks(path)] == [two.id, one.id]


def test_review_tasks_say_above_the_photo_what_to_check_and_where(tmp_path: Path) -> None:
    """Label Studio's regions carry no annotation ids, so each task's `review` text names every issue
    by kind, class and place (a 3 x 3 grid of the photo), worst first, then its convention groups;
    the config shows it in a Header above the photo."""
    from officescore.curate.labelstudio import audit_tasks, review_text
    from officescore.label.formats import LabelSchema, read_tasks

    def issue(kind: str, bbox: list[float], name: str | None, other: str | None = None) -> dict[str, Any]:
        return {"kind": kind, "bbox": bbox, "class": name, "suggested_class": other}

    arm = {"name": "armrests", "label": True, "predicted": False}
    issues = [
        issue("missing", [0, 0, 10, 10], None, "chair"),
        issue("wrong_class", [45, 0, 10, 10], "desk", "chair"),
        issue("bad_mask", [90, 0, 10, 10], "desk"),
        issue("spurious", [0, 40, 10, 10], "mug"),
        issue("duplicate", [45, 40, 10, 10], "mug"),
        {**issue("wrong_attribute", [90, 90, 10, 10], "chair"), "attribute": arm},
    ]
    convention = {"class": "plant", "group": 1, "description": "labels stop above the pot"}
    assert review_text(issues, [convention], 100, 100) == (
        "Check: 1) a chair at top left has no label; draw it (the model's suggestion shows it); "
        "2) the desk at top centre looks like a chair; check its class; "
        "3) the desk at top right: its outline and the model's differ; check the outline; "
        "4) the mug at middle left: the model sees no object there; delete it if there is none; "
        "5) the mug in the middle is labelled twice; delete one; "
        "6) the chair at bottom right: armrests is yes, the model says no; check it; "
        "7) plant: its outline follows convention 1 of 2 (labels stop above the pot); keep the one "
        "the team chose"
    )
    # a wide photo (300 x 90): thirds of each side, by the box's centre, to the edges
    wide = [issue("spurious", [80, 50, 40, 20], "mug"), issue("spurious", [290, 80, 10, 20], "mug")]
    assert review_text(wide, [], 300, 90) == (
        "Check: 1) the mug at bottom centre: the model sees no object there; delete it if there is none; "
        "2) the mug at bottom right: the model sees no object there; delete it if there is none"
    )
    split = load_split(_tiny_dataset(tmp_path / "data", {"train": [_photo(1)]}), "train")
    (image,) = split.images
    path, config, _ = audit_tasks(tmp_path / "review.json", split, [], [_issue_on(image, 0.9)], "t")
    (task,) = read_tasks(path)
    # the 4x2 box at (2, 1) on the 8x6 photo: centred at (4, 2), the middle third both ways
    assert task["data"]["review"] == (
        f"Check: 1) the {image.labels[0].class_name} in the middle: its outline and the model's "
        "differ; check the outline"
    )
    view = config.read_text(encoding="utf-8")
    assert view.index('<Header value="$review"') < view.index("<Image ")
    assert LabelSchema.from_config(view).header == "review"  # kept when push makes the project


def test_a_detection_at_the_suggestion_threshold_is_suggested(tmp_path: Path) -> None:
    from officescore.curate.labelstudio import SUGGEST_CONF, audit_tasks
    from officescore.label.formats import read_tasks, result_regions

    split = load_split(_tiny_dataset(tmp_path / "data", {"train": [_photo(1)]}), "train")
    (image,) = split.images
    label = image.labels[0]
    found = {"image_id": image.id, "category_id": 1, "bbox": label.bbox, "segmentation": label.rle}
    predictions = [{**found, "score": SUGGEST_CONF}, {**found, "score": SUGGEST_CONF - 0.01}]
    path, _, _ = audit_tasks(tmp_path / "review.json", split, predictions, [_issue_on(image, 0.9)], "t")
    (task,) = read_tasks(path)
    assert [r.score for r in result_regions(task["predictions"][0]["result"])] == [SUGGEST_CONF]


# ---- predictions over a split ------------------------------------------------------------------


class _OneDeskOneCat:
    """Predictor's stand-in: on every photo (`size` wide x high) a desk at 1,1-5,3 (its attribute
    head says white) and a cat, a class the data set does not label; remembers what it was asked."""

    def __init__(self, size: tuple[int, int] = (8, 6)) -> None:
        self.classes, self.source, self.size, self.asked = ["cat", "desk"], "fake", size, []

    def predict(self, paths: Sequence[Path], **settings: Any) -> list[ImageResult]:
        self.asked.append(settings)
        mask = np.zeros(self.size[::-1], np.uint8)
        mask[1:3, 1:5] = 1
        dets = [
            Detection(
                name,
                0.8,
                [1.0, 1.0, 5.0, 3.0],
                masklib.encode(mask),
                0.1,
                {"finish": "white"},
                {"finish": 0.7},
            )
            for name in ("cat", "desk")
        ]
        return [ImageResult(str(p), *self.size, dets) for p in paths]


def test_predictions_are_coco_results_of_the_data_sets_classes(tmp_path: Path) -> None:
    split = load_split(_tiny_dataset(tmp_path / "data", {"train": [_photo(1)]}), "train")
    predictor = _OneDeskOneCat()
    (desk,) = predict_images(predictor, split.images, split.classes)
    assert (desk["image_id"], desk["category_id"], desk["bbox"]) == (1, 1, [1.0, 1.0, 4.0, 2.0])
    assert [a["conf"] for a in predictor.asked] == [PREDICT_CONF]  # the weak guesses too
    # the attribute head's answer: what a wrong_attribute issue is found from
    assert (desk["attributes"], desk["attribute_scores"]) == ({"finish": "white"}, {"finish": 0.7})


def test_a_photo_not_the_size_the_data_set_says_is_named(tmp_path: Path) -> None:
    split = load_split(_tiny_dataset(tmp_path / "data", {"train": [_photo(1)]}), "train")
    with pytest.raises(
        DataError, match=r"p1.png: is 6x8 but the data set says 8x6; re-run `officescore ingest`"
    ):
        predict_images(_OneDeskOneCat(size=(6, 8)), split.images, split.classes)


def test_the_polygon_note_names_eight_labels_and_says_there_are_more(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mutation review B: past eight ids the note ends with "..." (the count says how many)."""
    from officescore.curate import audit, labelstudio

    tasks = tmp_path / "review.json"
    tasks.write_text(json.dumps([{"data": {"image": "a.png", "image_id": 1}}]))
    for cut, ids in ((list(range(1, 9)), "ids 1, 2, 3, 4, 5, 6, 7, 8)"), (list(range(1, 11)), "8, ...)")):
        monkeypatch.setattr(labelstudio, "labels_a_polygon_cuts", lambda split, reviewed, cut=cut: cut)
        (note,) = audit._polygon_note(SplitLabels(tmp_path, "train", [], [], []), tasks)
        assert note.startswith(f"{len(cut)} label(s) on the review photos") and ids in note, note
