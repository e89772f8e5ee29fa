"""Labelling conventions (`audit --conventions`): a share of plants (or desks) labelled without their
pots (legs) is found as a group named by its side and part; a clean set reports nothing; the run
folder holds conventions.json and one contact sheet per group with the group's photos; the review
tasks carry each group's description. Predictions are the ground truth with controlled noise
(officescore.curate.inject.fake_predictions), so nothing here trains."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from scoremodels import write_checkpoint

from officescore.cli import main
from officescore.curate import conventions as conv
from officescore.curate.audit import audit_predictions
from officescore.curate.inject import fake_predictions, inject_convention
from officescore.curate.labels import load_split
from officescore.curate.sheets import COLUMNS, PANEL, _crop_box
from officescore.errors import ConfigError
from officescore.ingest import ingest_export
from officescore.ingest.conventions import Declared, merged, parse_conventions, with_conventions
from officescore.sample import write_sample

SCENES, SIZE = 90, 160  # ~40 plants and ~70 desks in train


def _audit_args(dataset: Path, model: Path, out: Path) -> list[str]:
    """`officescore audit` of the data set with the model on the CPU into `out`."""
    return ["audit", str(dataset), "--model", str(model), "--device", "cpu", "--out", str(out)]


@pytest.fixture(scope="module")
def sets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The same scenes labelled whole (ingested) and with plants as leaves and desks as tops."""
    root = tmp_path_factory.mktemp("conventions")
    write_sample(root / "whole", n_images=SCENES, seed=3, size=SIZE)
    write_sample(root / "parts", n_images=SCENES, seed=3, size=SIZE, masks={"plant": "leaves", "desk": "top"})
    ingest_export(root / "whole" / "annotations.json", out=root / "dataset", val_fraction=0.1, seed=0)
    dataset = root / "dataset"
    return {
        "dataset": dataset,
        "train": json.loads((dataset / "train.json").read_text()),
        "parts": json.loads((root / "parts" / "annotations.json").read_text()),
    }


def _audit(
    dataset: Path,
    labels: dict[str, Any],
    predictions: list[dict[str, Any]],
    declared: dict[str, Declared] | None = None,
) -> Any:
    original = (dataset / "train.json").read_text()
    (dataset / "train.json").write_text(json.dumps(labels))
    try:
        return audit_predictions(load_split(dataset, "train"), predictions, declared)
    finally:
        (dataset / "train.json").write_text(original)


@pytest.mark.parametrize(("name", "part"), [("plant", "the pot"), ("desk", "the legs")])
def test_an_injected_split_is_found_and_named_by_its_side_and_part(
    sets: dict[str, Any], name: str, part: str
) -> None:
    for seed in range(2):
        mixed, changed = inject_convention(sets["train"], sets["parts"], name, 0.3, seed=seed)
        assert len(changed) >= 8
        # the model learned the whole objects (a little noise on every side)
        report = _audit(
            sets["dataset"], mixed, fake_predictions(sets["train"], seed, edge_noise=0.1)
        ).conventions
        assert [s.class_name for s in report.splits] == [name], report.to_list()
        split = report.splits[0]
        minority, majority = split.groups
        found = set(minority.annotation_ids) & set(changed)
        assert len(found) >= 0.9 * len(changed), (len(found), len(changed))
        assert len(set(minority.annotation_ids) - set(changed)) <= 1  # hardly any whole label in it
        assert f"stop above {part}" in minority.description and "bottom" in minority.description
        assert minority.sides["bottom"] > 0.25 and minority.area_ratio < 0.8
        assert majority.area_ratio > 0.9 and "match" in majority.description
        assert split.feature == "height" and split.confidence >= 0.5
        assert set(minority.image_ids) == {
            a["image_id"] for a in mixed["annotations"] if a["id"] in set(minority.annotation_ids)
        }


def test_a_clean_set_reports_no_convention(sets: dict[str, Any]) -> None:
    for seed in range(3):
        for noise in (0.0, 0.1, 0.2):
            report = _audit(
                sets["dataset"], sets["train"], fake_predictions(sets["train"], seed, edge_noise=noise)
            ).conventions
            assert report.splits == [], (seed, noise, report.to_list())
            assert report.pairs["desk"] >= 40 and report.pairs["plant"] >= 20


def _pairs(heights: list[float]) -> list[conv.Pair]:
    return [
        conv.Pair("plant", k, k, k, np.array([0.0, 0.0, h, 0.0, 0.0]), 1.0 - h) for k, h in enumerate(heights)
    ]


def test_a_tail_is_no_convention_but_a_second_peak_is() -> None:
    rng = np.random.default_rng(0)
    spike = list(np.zeros(40))
    # a model's bad masks: a tail thinning out steadily from the majority
    tail = list(np.abs(rng.normal(0, 0.25, 12)) + 0.05)
    assert conv.class_split("plant", _pairs(spike + tail)) is None
    # the tail's extreme end alone is tight, but there is no gap before it
    ramp = list(np.linspace(0.05, 0.4, 12)) + [0.41, 0.42, 0.43, 0.44, 0.45]
    assert conv.class_split("plant", _pairs(spike + ramp)) is None
    # a second peak, 10 labels 30-40 % short at the bottom
    peak = list(rng.uniform(0.3, 0.4, 10))
    split = conv.class_split("plant", _pairs(spike + peak))
    assert split is not None and len(split.groups[0].pairs) == 10
    assert "stop above the pot" in split.groups[0].description
    # too few for a group
    assert conv.class_split("plant", _pairs(spike + peak[:4])) is None


def test_the_split_rules_at_their_limits() -> None:
    # a group of exactly MIN_GROUP at the top end is a group
    assert conv.two_means(np.array([0.0] * 40 + [0.3] * conv.MIN_GROUP)) == pytest.approx(0.15)
    # six labels spread from 30 to 60 % pass the test once, but in under half the resamples: unreported
    spread = _pairs(list(np.zeros(40)) + list(np.linspace(0.3, 0.6, 6)))
    split = conv._best_split(np.stack([p.values for p in spread]))
    assert split is not None and split.passed
    assert conv.class_split("plant", spread) is None
    # top and bottom are shares of the prediction's height, left and right of its width
    assert conv._box_offsets([10, 10, 40, 30], [10, 10, 40, 60], 0.0) == [0.0, 0.5, 0.0, 0.0]
    assert conv._box_offsets([10, 10, 20, 60], [10, 10, 40, 60], 0.0) == [0.0, 0.0, 0.0, 0.5]
    # labels reaching past a plant's predicted bottom include its pot
    longer = conv.describe("plant", {"top": 0.0, "bottom": -0.3, "left": 0.0, "right": 0.0}, 1.4)
    assert longer.startswith("labels include the pot: they reach 30 %")


def _square(y0: int, y1: int, x0: int, x1: int, k: int, kind: str = "label") -> Any:
    from officescore import masks as masklib
    from officescore.curate.labels import Label
    from officescore.curate.match import Prediction

    mask = np.zeros((100, 120), dtype=np.uint8)
    mask[y0:y1, x0:x1] = 1
    rle = masklib.encode(mask)
    bbox = list(masklib.bbox(rle))
    return Label(k, "plant", rle, bbox) if kind == "label" else Prediction(k, "plant", 0.9, rle, bbox)


def test_a_label_pairs_only_with_the_prediction_of_its_own_object() -> None:
    """Offsets are measured against the prediction of the label's own object: not one that only
    overlaps it (neither mask mostly inside the other), nor one that is a neighbour's."""
    from officescore.curate.match import match_image

    plant = _square(20, 60, 20, 60, 1)
    beside = _square(40, 80, 40, 80, 0, "prediction")  # a quarter of each lies in the other
    assert conv.pair_labels(match_image([plant], [beside], tol=1), 1) == []
    small = _square(20, 40, 60, 70, 2)  # a small plant just right of the first one
    both = _square(20, 60, 20, 70, 0, "prediction")  # the first plant's, running over the small one
    pairs = conv.pair_labels(match_image([plant, small], [both], tol=1), 1)
    assert [p.annotation_id for p in pairs] == [1]


def _box_iou(a: list[float], b: list[float]) -> float:
    iw = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return iw * ih / (a[2] * a[3] + b[2] * b[3] - iw * ih)


def _sheet_tiles(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)


def test_run_folder_sheets_tasks_and_json(
    sets: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = sets["dataset"]
    mixed, changed = inject_convention(sets["train"], sets["parts"], "plant", 0.3, seed=0)
    predictions = fake_predictions(sets["train"], 0, edge_noise=0.1)
    monkeypatch.setattr("officescore.curate.predictions.predict_images", lambda *a, **k: predictions)
    original = (dataset / "train.json").read_text()
    (dataset / "train.json").write_text(json.dumps(mixed))
    try:
        model = write_checkpoint(tmp_path / "m.pt")
        review = tmp_path / "review.json"
        args = _audit_args(dataset, model, tmp_path / "run")
        with pytest.raises(SystemExit) as exit_info:
            main([*args, "--labelstudio", str(review), "--json"])
        assert int(exit_info.value.code or 0) == 0
        doc = json.loads(capsys.readouterr().out)
        split = load_split(dataset, "train")
    finally:
        (dataset / "train.json").write_text(original)
    # --json and conventions.json: the issue's contract, minority first
    assert doc["conventions"] == json.loads((tmp_path / "run" / "conventions.json").read_text())
    [plant] = doc["conventions"]
    assert plant["class"] == "plant" and 0.5 <= plant["confidence"] <= 1.0
    minority, majority = plant["groups"]
    for group in plant["groups"]:
        assert {"annotation_ids", "image_ids", "size", "description", "area_ratio"} <= set(group)
        assert group["size"] == len(group["annotation_ids"])
    assert minority["size"] < majority["size"] and minority["area_ratio"] < majority["area_ratio"]
    assert len(set(minority["annotation_ids"]) & set(changed)) >= 0.9 * len(changed)
    # one contact sheet per group, holding the group's photos: each tile's left half is the crop
    # around its label from that photo (closer to it than the same crop of any other photo)
    images = split.by_id()
    plant_id = split.classes.index("plant") + 1
    for n, group in enumerate(plant["groups"], start=1):
        sheet = _sheet_tiles(tmp_path / "run" / f"conventions_plant_{n}.png")
        tiles = min(group["size"], 12)
        assert sheet.shape[0] == 18 + ((tiles + COLUMNS - 1) // COLUMNS) * (PANEL + 18)
        for k in range(min(tiles, 3)):
            ann_id = group["annotation_ids"][k]
            label = next(lab for im in images.values() for lab in im.labels if lab.id == ann_id)
            owner = next(im for im in images.values() if any(lab.id == ann_id for lab in im.labels))
            assert owner.id in group["image_ids"]
            x0, y0 = (k % COLUMNS) * 2 * PANEL, 18 + (k // COLUMNS) * (PANEL + 18)
            tile = sheet[y0 : y0 + PANEL, x0 : x0 + PANEL]

            # the sheet crops around the label and the prediction paired with it
            mine = [p for p in predictions if p["image_id"] == owner.id and p["category_id"] == plant_id]
            pred = max(mine, key=lambda p: _box_iou(p["bbox"], label.bbox))
            boxes = [label.bbox, pred["bbox"]]

            def distance(photo_path: Path, tile: np.ndarray = tile, boxes: list[Any] = boxes) -> float:
                photo = Image.open(photo_path).convert("RGB")
                crop = photo.crop(_crop_box(boxes, photo.height, photo.width))
                scale = PANEL / max(crop.size)
                crop = crop.resize((max(1, round(crop.width * scale)), max(1, round(crop.height * scale))))
                part = tile[: crop.height, : crop.width]
                return float(np.abs(np.asarray(crop, dtype=np.float32) - part).mean())

            own = distance(owner.path)
            others = [distance(im.path) for im in list(images.values())[:15] if im.id != owner.id]
            assert own < min(others), (own, min(others))
    # the review tasks: every photo of each group, with the group's description in the task data
    tasks = json.loads(review.read_text())
    with_groups = {
        t["data"]["image_id"]: t["data"]["conventions"] for t in tasks if "conventions" in t["data"]
    }
    for n, group in enumerate(plant["groups"], start=1):
        for image_id in group["image_ids"]:
            entries = [e for e in with_groups[image_id] if e["group"] == n]
            assert entries and entries[0]["description"] == group["description"]
            assert set(entries[0]["annotation_ids"]) <= set(group["annotation_ids"])
    assert (
        sum(len(e["annotation_ids"]) for v in with_groups.values() for e in v if e["group"] == 1)
        == minority["size"]
    )


def test_sample_mask_conventions_change_labels_not_photos(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from officescore.sample import render_scene, scene_rng

    seen = {"plant": 0, "desk": 0}
    for index in range(12):
        whole = render_scene(scene_rng(4, index), 128)
        parts = render_scene(scene_rng(4, index), 128, {"plant": "leaves", "desk": "top"})
        assert np.array_equal(np.asarray(whole.image), np.asarray(parts.image))
        for inst in parts.instances:
            if inst.category not in seen:
                continue
            [full] = [
                w for w in whole.instances if w.category == inst.category and (w.mask & inst.mask).any()
            ][:1]
            assert not (inst.mask & ~full.mask).any()  # a part of the whole object
            if inst.area < full.area:  # what is left out lies at the bottom
                seen[inst.category] += 1
                left_out = np.nonzero(full.mask & ~inst.mask)[0]
                assert np.median(left_out) > np.median(np.nonzero(inst.mask)[0])
    assert seen["plant"] >= 2 and seen["desk"] >= 5, seen
    # the CLI switch, default unchanged, unknown conventions refused in one line
    with pytest.raises(SystemExit) as exit_info:
        main(["sample", str(tmp_path / "s"), "-n", "2", "--size", "96", "--plant-mask", "leaves", "--json"])
    assert exit_info.value.code in (0, None)
    doc = json.loads((tmp_path / "s" / "annotations.json").read_text())
    assert doc["info"]["mask_conventions"] == {"plant": "leaves", "desk": "whole"}
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["sample", str(tmp_path / "t"), "-n", "2", "--size", "96", "--plant-mask", "pot"])
    assert exit_info.value.code == 2 and "plant='pot'" in capsys.readouterr().err


def test_cli_report_names_the_split_and_the_consistent_classes(
    sets: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = sets["dataset"]
    mixed, _ = inject_convention(sets["train"], sets["parts"], "desk", 0.3, seed=1)
    predictions = fake_predictions(sets["train"], 1, edge_noise=0.1)
    monkeypatch.setattr("officescore.curate.predictions.predict_images", lambda *a, **k: predictions)
    # A wide console: rich reads $COLUMNS when the console is made, which an earlier test may have done.
    from officescore.cli import common

    monkeypatch.setattr(common.console, "_width", 250)
    original = (dataset / "train.json").read_text()
    (dataset / "train.json").write_text(json.dumps(mixed))
    try:
        model = write_checkpoint(tmp_path / "m.pt")
        base = ["audit", str(dataset), "--model", str(model), "--device", "cpu"]
        outputs = []
        for n, extra in enumerate(([], ["--conventions"])):
            with pytest.raises(SystemExit) as exit_info:
                main([*base, "--out", str(tmp_path / f"run{n}"), *extra])
            assert int(exit_info.value.code or 0) == 0
            outputs.append(capsys.readouterr().out)
    finally:
        (dataset / "train.json").write_text(original)
    default, only = outputs
    for out in outputs:
        assert "labelling conventions: classes labelled two ways" in out and "stop above the legs" in out
        assert "minority" in out
        assert "conventions_desk_1.png" in out
    assert "issues" in default and "issues" not in only  # --conventions: that report alone
    assert "plant: one convention" in only and "desk: one convention" not in only


def test_classes_whose_names_clean_alike_get_sheets_of_their_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from officescore.curate import sheets
    from officescore.curate.audit import write_convention_sheets

    monkeypatch.setattr(sheets, "write_convention_sheet", lambda path, *rest: path)
    groups = [conv.ConventionGroup([], "", 1.0, {}), conv.ConventionGroup([], "", 1.0, {})]
    names = ["desk lamp", "desk_lamp", "desk/lamp", "plant"]
    report = conv.ConventionReport([conv.ConventionSplit(n, 0.9, "area", 1.0, groups) for n in names])
    written = [p.name for p in write_convention_sheets(tmp_path, None, [], report)]  # type: ignore[arg-type]
    assert written == [
        "conventions_desk_lamp_1.png",
        "conventions_desk_lamp_2.png",
        "conventions_desk_lamp-2_1.png",
        "conventions_desk_lamp-2_2.png",
        "conventions_desk_lamp-3_1.png",
        "conventions_desk_lamp-3_2.png",
        "conventions_plant_1.png",
        "conventions_plant_2.png",
    ]


def test_offsets_leave_out_the_boundary_slack() -> None:
    """One pixel of slack (tol) off every side: a label a pixel off is on the edge, two pixels off
    is one pixel in (the model's own slop is no convention)."""
    assert conv._box_offsets([12, 11, 36, 58], [10, 10, 40, 60], 1.0) == [0.0, 0.0, 1 / 40, 1 / 40]
    assert conv._box_offsets([9, 10, 41, 60], [10, 10, 40, 60], 1.0) == [0.0, 0.0, 0.0, 0.0]


def test_small_predictions_and_ignore_regions_are_never_paired() -> None:
    from officescore.curate.labels import Label
    from officescore.curate.match import match_image

    def pairs(size: int, crowd: int = 0) -> list[int]:
        label, pred = _square(20, 20 + size, 20, 20 + size, 1), _square(20, 20 + size, 20, 20 + size, 0, "x")
        label = Label(label.id, label.class_name, label.rle, label.bbox, crowd)
        return [p.annotation_id for p in conv.pair_labels(match_image([label], [pred], tol=1), 1)]

    assert pairs(conv.PAIR_PIXELS) == [1]
    assert pairs(conv.PAIR_PIXELS - 1) == []  # a pixel is a large share of a small object's side
    assert pairs(30, crowd=1) == []  # an ignore region has no convention


@pytest.mark.parametrize(
    ("ratio", "words"),
    [
        (1.1, "labels match the predicted objects (label/prediction area 1.10)"),
        (1.5, "labels are larger than the predicted objects (label/prediction area 1.50)"),
        (0.6, "labels are smaller than the predicted objects (label/prediction area 0.60)"),
    ],
)
def test_a_group_differing_only_in_area_says_larger_or_smaller(ratio: float, words: str) -> None:
    sides = dict.fromkeys(conv.SIDES, 0.05)  # under NAMED_SHIFT: no side is named
    assert conv.describe("desk", sides, ratio) == words


def test_a_fifth_of_the_object_is_a_convention_a_tenth_is_not() -> None:
    spike = list(np.zeros(40))
    fifth = conv.class_split("plant", _pairs(spike + list(np.linspace(0.24, 0.27, 10))))
    assert fifth is not None and len(fifth.groups[0].pairs) == 10
    assert conv.class_split("plant", _pairs(spike + list(np.linspace(0.14, 0.17, 10)))) is None


def test_a_group_must_be_a_share_of_a_large_class_too() -> None:
    """Six labels are a group of 60 but not of 206: each group needs MIN_SHARE of the class."""
    peak = list(np.linspace(0.3, 0.4, 6))
    assert conv.class_split("plant", _pairs(list(np.zeros(60)) + peak)) is not None
    assert conv.class_split("plant", _pairs(list(np.zeros(200)) + peak)) is None


def test_a_passing_split_wins_over_a_failing_one_that_is_further_apart() -> None:
    """Height: ten labels 28-48 % short (passes, separation ~6.2). Width: ten others 19 % narrow,
    tighter (separation ~6.3) but under MIN_SHIFT: it fails, so the height split is reported."""
    pairs = _pairs(list(np.zeros(40)) + list(np.linspace(0.28, 0.48, 10)) + [0.0] * 10)
    for pair in pairs[-10:]:
        pair.values[4] = 0.19  # right: narrower than the prediction
    values = np.stack([p.values for p in pairs])
    width = conv._test(conv.split_values(values, "width"), conv.split_values(values, "width") > 0.1, "width")
    height = conv._test(
        conv.split_values(values, "height"), conv.split_values(values, "height") > 0.1, "height"
    )
    assert width[1] == "shift" and height[1] == "" and width[0] > height[0]
    split = conv.class_split("plant", pairs)
    assert split is not None and split.feature == "height" and len(split.groups[0].pairs) == 10


def test_classes_are_reported_most_confident_first(monkeypatch: pytest.MonkeyPatch) -> None:
    found = {
        "desk": conv.ConventionSplit("desk", 0.6, "height", 9.0, []),
        "mug": conv.ConventionSplit("mug", 0.9, "width", 5.0, []),
        "plant": conv.ConventionSplit("plant", 0.9, "height", 7.0, []),
    }
    monkeypatch.setattr(conv, "class_split", lambda name, pairs, seed=0: found.get(name))
    report = conv.find_conventions([], [], ["chair", "desk", "mug", "plant"])
    assert [s.class_name for s in report.splits] == ["plant", "mug", "desk"]  # ties: further apart first
    assert report.pairs == {"chair": 0, "desk": 0, "mug": 0, "plant": 0}


def test_two_means_never_cuts_between_equal_values() -> None:
    """A cut inside a run of equal values would put them all on one side of its threshold, leaving a
    group smaller than the fit allowed: here 4 values above 0.1 (under MIN_GROUP)."""
    x = np.array([0.0] * 8 + [0.1] * 10 + [0.2] * 2 + [0.3] * 2)
    threshold = conv.two_means(x)
    assert threshold == pytest.approx(0.05)
    assert min((x > threshold).sum(), (x <= threshold).sum()) >= conv.MIN_GROUP


# --------------------------------------------------------------------------- declared conventions


def _declared_split(heights: list[float], convention: str) -> conv.ConventionSplit:
    report = conv.ConventionReport([s for s in [conv.class_split("plant", _pairs(heights))] if s])
    assert len(report.splits) == 1
    conv.declare(report, {"plant": Declared(convention)})
    return report.splits[0]


@pytest.mark.parametrize(
    ("convention", "words"), [("whole", "leave out the pot"), ("part", "include the pot")]
)
def test_the_declared_convention_names_the_group_that_breaks_it(convention: str, words: str) -> None:
    """`whole` is broken by the group leaving more of the object out, `part` by the other, whichever
    group the model (or the majority) follows."""
    rng = np.random.default_rng(0)
    short = list(rng.uniform(0.3, 0.4, 10))  # 10 labels leave out 30-40 % at the bottom (the pot)
    for heights, short_group in ((list(np.zeros(40)) + short, 0), (list(np.full(40, 0.35)) + [0.0] * 10, 1)):
        split = _declared_split(heights, convention)
        breaks = short_group if convention == "whole" else 1 - short_group
        assert split.breaks == breaks
        n = len(split.groups[breaks].pairs)
        assert split.verdict == f"{n} plant labels {words}: the convention is {convention}"
        declared = {"convention": convention, "note": "", "group": breaks + 1, "verdict": split.verdict}
        assert split.to_dict()["declared"] == declared
        # each breaking label, furthest from the declared group first, scored under the confidence
        scored = conv.breaches(split)
        assert sorted(p.annotation_id for p, _ in scored) == sorted(split.groups[breaks].annotation_ids)
        centre = float(np.median([p.values[2] for p in split.groups[1 - breaks].pairs]))
        distance = [abs(p.values[2] - centre) for p, _ in scored]
        assert distance == sorted(distance, reverse=True)
        assert all(0 < s < split.confidence for _, s in scored)
    # undeclared: two equal groups, as before
    undeclared = conv.class_split("plant", _pairs(list(np.zeros(40)) + short))
    assert undeclared is not None
    report = conv.ConventionReport([undeclared])
    conv.declare(report, {"desk": Declared("whole")})
    assert report.splits[0].breaks is None and report.splits[0].to_dict()["declared"] is None
    assert conv.breaches(report.splits[0]) == []


def test_a_breaking_label_is_a_convention_issue_unless_another_kind_outscores_it() -> None:
    """The label's bad mask is what breaking the convention looks like (it gives way); a duplicate is
    another error (it stays)."""
    from officescore.curate.audit import _convention_issues
    from officescore.curate.scoring import Issue

    split = _declared_split(list(np.zeros(40)) + list(np.linspace(0.3, 0.4, 10)), "whole")
    report = conv.ConventionReport([split])
    assert split.breaks is not None
    breaking = split.groups[split.breaks].annotation_ids
    issues = [
        Issue("bad_mask", 0.95, k, k, "plant", "plant", [0, 0, 9, 9], kinds={"bad_mask": 0.95})
        for k in range(50)
    ]
    issues[breaking[0]] = Issue(
        "duplicate", 0.99, 0, breaking[0], "plant", None, [0, 0, 9, 9], kinds={"duplicate": 0.99}
    )
    _convention_issues(issues, report)
    kinds = {i.annotation_id: i.kind for i in issues}
    assert kinds[breaking[0]] == "duplicate" and "convention" in issues[breaking[0]].kinds
    assert {k for k, kind in kinds.items() if kind == "convention"} == set(breaking[1:])
    assert all(kinds[k] == "bad_mask" for k in range(50) if k not in breaking)
    issue = next(i for i in issues if i.kind == "convention")
    assert issue.convention == {"convention": "whole", "note": "", "breach": "leaves out the pot"}
    assert issue.score == issue.kinds["convention"] < 0.95  # its own score, not the bad mask's
    # drawn with the prediction of its own object (here label k's is prediction k), not none
    assert all(i.prediction == i.annotation_id for i in issues if i.kind == "convention")


def test_declarations_are_parsed_checked_merged_and_written_for_labellers() -> None:
    given = parse_conventions(["plant=whole: include the pot", "Desk = PART", "mug=none"])
    assert given == {"plant": Declared("whole", "include the pot"), "Desk": Declared("part"), "mug": None}
    values = "whole (the object with all its parts), part (the main part only) or none"
    for bad, said in (("plant", "write CLASS=whole"), ("plant=round", values), ("=whole", "write CLASS")):
        with pytest.raises(ConfigError, match=re.escape(said)):
            parse_conventions([bad])
    # over the earlier ones: changed, dropped (None), kept; classes no longer labelled left out
    earlier = {"plant": Declared("part"), "desk": Declared("whole"), "lamp": Declared("whole")}
    assert merged(earlier, {"plant": Declared("whole"), "desk": None}, ["desk", "plant", "chair"]) == {
        "plant": Declared("whole")
    }
    # the labelling instructions: other text kept, an earlier push's block read back and replaced
    other = "<p>Outline every object you can see.</p>"
    text, declared = with_conventions(
        other, {"plant": Declared("whole", "include the pot")}, ["plant", "desk"]
    )
    assert text.startswith(other + "\n") and text.count("officescore-conventions") == 1
    assert "<b>plant</b>: whole (the object with all its parts): include the pot" in text
    text, declared = with_conventions(text, {"desk": Declared("part")}, ["plant", "desk"])
    assert declared == {"plant": Declared("whole", "include the pot"), "desk": Declared("part")}
    assert text.startswith(other) and text.count("officescore-conventions") == 1
    assert "<b>desk</b>: part (the main part only)" in text
    text, declared = with_conventions(text, {"desk": None, "plant": None}, ["plant", "desk"])
    assert (text, declared) == (other, {})


def test_a_note_with_quotes_and_markup_survives_pushes_as_written() -> None:
    """A note is escaped into the instructions' HTML and read back unescaped, so a later push (which
    reads the earlier declarations back) keeps it word for word rather than escaping it again."""
    note = 'don\'t include the "pot" & <saucer>'
    text, _ = with_conventions("", {"plant": Declared("whole", note)}, ["plant", "desk"])
    assert "<saucer>" not in text  # escaped: Label Studio shows it as text
    for _ in range(2):
        text, declared = with_conventions(text, {"desk": Declared("part")}, ["plant", "desk"])
        assert declared["plant"] == Declared("whole", note)


def test_convention_sheet_titles_say_which_group_breaks_the_declaration(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from officescore.curate import sheets
    from officescore.curate.audit import write_convention_sheets

    split = _declared_split(list(np.zeros(40)) + list(np.linspace(0.3, 0.4, 10)), "whole")
    titles: list[str] = []
    monkeypatch.setattr(sheets, "write_convention_sheet", lambda path, *a: titles.append(a[-1]) or path)
    write_convention_sheets(tmp_path, None, [], conv.ConventionReport([split]))  # type: ignore[arg-type]
    verbs = [t.split(" plant=")[0] for t in titles]
    assert verbs == ["breaks" if n == split.breaks else "follows" for n in range(2)]
    assert all(t.split(": ", 1)[1].startswith("plant group ") for t in titles)


def test_a_declared_convention_makes_the_group_that_breaks_it_convention_issues(
    sets: dict[str, Any],
) -> None:
    mixed, changed = inject_convention(sets["train"], sets["parts"], "plant", 0.3, seed=0)
    predictions = fake_predictions(sets["train"], 0, edge_noise=0.1)
    plant_id = next(c["id"] for c in sets["train"]["categories"] if c["name"] == "plant")
    plants = {a["id"] for a in mixed["annotations"] if a["category_id"] == plant_id}
    # (whole, the other side: test_audit_reads_the_data_sets_declaration_...)
    for convention, breaking in (("part", plants - set(changed)),):
        result = _audit(sets["dataset"], mixed, predictions, {"plant": Declared(convention)})
        issues = [i for i in result.issues if i.kind == "convention"]
        flagged = {i.annotation_id for i in issues}
        assert len(flagged & breaking) >= 0.9 * len(breaking) and len(flagged - breaking) <= 1, convention
        [split] = result.conventions.splits
        assert split.verdict.startswith(f"{len(split.groups[split.breaks].pairs)} plant labels ")
        assert split.verdict.endswith(f": the convention is {convention}")
        # each photo's quality is its worst issue's, convention issues counted
        for row in result.images:
            worst = max((i.score for i in result.issues if i.image_id == row["image_id"]), default=0.0)
            assert row["quality"] == pytest.approx(1.0 - worst)
    # a declared class that does not split: nothing new (labels alone cannot show that all follow it)
    clean = _audit(sets["dataset"], sets["train"], predictions, {"plant": Declared("whole")})
    assert clean.conventions.splits == [] and all(i.kind != "convention" for i in clean.issues)


def test_ingest_records_declarations_and_a_later_ingest_keeps_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`ingest --convention` writes dataset.json's conventions; an ingest into the same folder without
    them (as `label pull --ingest` does) keeps them, one that gives a class again changes it."""
    write_sample(tmp_path / "s", n_images=4, seed=0, size=96)
    export, out = tmp_path / "s" / "annotations.json", tmp_path / "dataset"

    def ingest(*flags: str) -> tuple[int, str]:
        with pytest.raises(SystemExit) as exit_info:
            main(["ingest", str(export), "--out", str(out), "--no-plot", *flags])
        captured = capsys.readouterr()
        return int(exit_info.value.code or 0), captured.out + captured.err

    def recorded() -> dict[str, Any]:
        return json.loads((out / "dataset.json").read_text())["conventions"]

    code, said = ingest("--convention", "plant=whole: include the pot", "--convention", "desk=part")
    assert code == 0, said
    assert recorded() == {
        "plant": {"convention": "whole", "note": "include the pot"},
        "desk": {"convention": "part", "note": ""},
    }
    text = " ".join(said.split())
    assert "labelling conventions: " in text and "desk=part (the main part only)" in text
    assert "plant=whole (the object with all its parts): include the pot" in text
    ingest_export(export, out=out)  # a re-ingest that declares nothing
    assert set(recorded()) == {"plant", "desk"}
    assert ingest("--convention", "desk=none", "--convention", "plant=part")[0] == 0
    assert recorded() == {"plant": {"convention": "part", "note": ""}}
    code, said = ingest("--convention", "plnat=whole")
    assert code == 2 and "no class 'plnat'; the classes are" in said and "plant" in said
    assert len(said.strip().splitlines()) == 1 and recorded() == {"plant": {"convention": "part", "note": ""}}


def test_audit_reads_the_data_sets_declaration_and_lists_the_breaking_labels_everywhere(
    sets: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """plant=whole recorded in dataset.json (desk=part given for the run, desks do not split): the
    plant labels without their pots are `convention` issues in --json, issues.json and the review
    tasks (every one, whatever its score), named in words; the class is no longer two groups there."""
    dataset = sets["dataset"]
    mixed, changed = inject_convention(sets["train"], sets["parts"], "plant", 0.3, seed=0)
    predictions = fake_predictions(sets["train"], 0, edge_noise=0.1)
    monkeypatch.setattr("officescore.curate.predictions.predict_images", lambda *a, **k: predictions)
    originals = {name: (dataset / name).read_text() for name in ("train.json", "dataset.json")}
    meta = json.loads(originals["dataset.json"])
    meta["conventions"] = {"plant": {"convention": "whole", "note": "include the pot"}}
    (dataset / "dataset.json").write_text(json.dumps(meta))
    (dataset / "train.json").write_text(json.dumps(mixed))
    review = tmp_path / "review.json"
    try:
        model = write_checkpoint(tmp_path / "m.pt")
        args = _audit_args(dataset, model, tmp_path / "run")
        with pytest.raises(SystemExit) as exit_info:
            main([*args, "--convention", "desk=part", "--labelstudio", str(review), "--json"])
        assert int(exit_info.value.code or 0) == 0
        doc = json.loads(capsys.readouterr().out)
    finally:
        for name, text in originals.items():
            (dataset / name).write_text(text)
    [plant] = doc["conventions"]
    declared = plant["declared"]
    assert declared["convention"] == "whole" and declared["note"] == "include the pot"
    breaking = plant["groups"][declared["group"] - 1]
    assert (
        declared["verdict"] == f"{breaking['size']} plant labels leave out the pot: the convention is whole"
    )
    rows = [row for row in doc["issues"] if row["kind"] == "convention"]
    assert {row["annotation_id"] for row in rows} == set(breaking["annotation_ids"])
    assert len(set(breaking["annotation_ids"]) & set(changed)) >= 0.9 * len(changed)
    assert all(
        row["convention"]
        == {"convention": "whole", "note": "include the pot", "breach": "leaves out the pot"}
        for row in rows
    )
    assert [row["score"] for row in rows] == sorted((row["score"] for row in rows), reverse=True)
    stored = json.loads((tmp_path / "run" / "issues.json").read_text())["issues"]
    assert [r["annotation_id"] for r in stored if r["kind"] == "convention"] == [
        r["annotation_id"] for r in rows
    ]
    # review tasks: each breaking label's photo, told what to redraw; no "pick a convention" groups
    tasks = {t["data"]["image_id"]: t["data"] for t in json.loads(review.read_text())}
    for row in rows:
        data = tasks[row["image_id"]]
        assert row["annotation_id"] in [issue["annotation_id"] for issue in data["issues"]]
        assert "leaves out the pot: the team's convention is plant=whole (include the pot)" in data["review"]
        assert "conventions" not in data
    from officescore.cli.audit import suggested

    assert suggested(rows[0]) == "plant=whole"


def test_a_label_breaking_a_declared_convention_is_reviewed_whatever_its_score(
    sets: dict[str, Any], tmp_path: Path
) -> None:
    """Other issues need REVIEW_SCORE to put their photo up for review; breaking the team's own rule
    needs no score (a label just past the split scores low, yet is as wrong)."""
    from officescore.curate.labelstudio import REVIEW_SCORE, audit_tasks

    split = load_split(sets["dataset"], "train")
    first, second = split.images[:2]
    rule = {"convention": "whole", "note": "", "breach": "leaves out the pot"}
    rows = [
        {"rank": 1, "kind": "convention", "score": REVIEW_SCORE / 4, "image_id": first.id,
         "annotation_id": first.labels[0].id, "class": "plant", "suggested_class": "plant",
         "bbox": first.labels[0].bbox, "convention": rule},
        {"rank": 2, "kind": "bad_mask", "score": REVIEW_SCORE / 2, "image_id": second.id,
         "annotation_id": second.labels[0].id, "class": "desk", "suggested_class": "desk",
         "bbox": second.labels[0].bbox},
    ]  # fmt: skip
    tasks_file, _, count = audit_tasks(tmp_path / "review.json", split, [], rows, "audit-test")
    [task] = json.loads(tasks_file.read_text())
    assert count == 1 and task["data"]["image_id"] == first.id
    assert (
        "leaves out the pot: the team's convention is plant=whole; redraw its outline"
        in task["data"]["review"]
    )


def test_audit_declarations_are_the_data_sets_with_the_runs_over_them(
    sets: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from officescore.curate.audit import declared_conventions

    dataset = tmp_path / "dataset"
    dataset.mkdir()
    recorded = {"plant": {"convention": "part", "note": "leaves only"}, "desk": {"convention": "whole"}}
    (dataset / "dataset.json").write_text(
        json.dumps({"format": "officescore-dataset", "conventions": recorded})
    )
    classes = ["desk", "plant", "chair"]
    assert declared_conventions(dataset, {}, classes) == {
        "desk": Declared("whole"), "plant": Declared("part", "leaves only")
    }  # fmt: skip
    run = {"plant": Declared("whole"), "desk": None, "chair": Declared("part")}
    assert declared_conventions(dataset, run, classes) == {
        "plant": Declared("whole"),
        "chair": Declared("part"),
    }
    # the CLI refuses a class the data set does not label in one line, before any model is loaded
    (tmp_path / "none.pt").write_bytes(b"")
    with pytest.raises(SystemExit) as exit_info:
        main(["audit", str(sets["dataset"]), "-m", str(tmp_path / "none.pt"), "--convention", "plnat=whole"])
    err = " ".join(capsys.readouterr().err.split())
    assert exit_info.value.code == 2 and "--convention plnat=...: no class 'plnat'; the classes are" in err


def test_the_report_gives_a_declared_class_its_verdict_and_only_undeclared_ones_two_groups(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from types import SimpleNamespace

    from officescore.cli import common
    from officescore.cli.audit import _show_conventions

    monkeypatch.setattr(common.console, "_width", 250)
    heights = list(np.zeros(40)) + list(np.linspace(0.3, 0.4, 10))
    declared = _declared_split(heights, "whole")
    undeclared = conv.class_split("desk", _pairs(heights))
    assert undeclared is not None
    run = SimpleNamespace(
        conventions=[declared.to_dict(), undeclared.to_dict()],
        convention_sheets=[Path("conventions_desk_1.png")],
        convention_pairs={"plant": 50, "desk": 50},
    )
    _show_conventions(run, every_class=False)  # type: ignore[arg-type]
    out = capsys.readouterr().out
    assert f"{declared.verdict} (convention issues)" in out
    before, table = out.split("labelling conventions: classes labelled two ways")
    assert "desk" in table and "plant" not in table and "desk" not in before


def test_ingest_refuses_a_declaration_for_a_class_its_classes_option_leaves_out(tmp_path: Path) -> None:
    """With --classes, a class of the export left out is no class of the data set: declaring it is
    refused rather than dropped without a word."""
    write_sample(tmp_path / "s", n_images=2, seed=0, size=64)
    export, out = tmp_path / "s" / "annotations.json", tmp_path / "dataset"
    with pytest.raises(ConfigError, match="no class 'plant'; the classes are desk, chair"):
        ingest_export(export, out=out, classes=["desk", "chair"], conventions={"plant": Declared("whole")})
    assert not out.exists()
