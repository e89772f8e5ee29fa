"""The attribute head (issue 24): masked loss, dataset targets, learning, checkpoints, Predictor,
labels and the rubric."""

from __future__ import annotations

import csv
import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from scoremodels import ARCH, TINY_KWARGS, tiny_model, write_checkpoint, write_scenes

from officescore.attribute_head import (
    AttributePredictor,
    _decode,
    attribute_loss,
    classify_boxes,
    has_attribute_head,
)
from officescore.attributes import load_schema
from officescore.dataset import OfficeDataset, boxes_from_masks, build_transforms
from officescore.infer.detection import Detection
from officescore.infer.score import Rubric, score_office
from officescore.model import build_model, load_any, save_checkpoint
from officescore.sample import render_scene, write_sample

CLASSES = ["desk", "chair", "monitor", "laptop", "keyboard", "mouse", "plant", "lamp", "bookshelf", "mug"]


def test_loss_reads_only_labelled_values_of_the_attributes_class() -> None:
    predictor = AttributePredictor(4, labels=[2], sizes=[2])  # chair (label 2): armrests no/yes
    # Three chairs: the model is sure all have armrests. One is labelled yes; two are unlabelled
    # (ingest's default "no", -1 here); a desk row with a value must not count either.
    logits = [torch.tensor([[-6.0, 6.0], [-6.0, 6.0], [-6.0, 6.0], [6.0, -6.0]], requires_grad=True)]
    labels = torch.tensor([2, 2, 2, 1])
    targets = torch.tensor([[1], [-1], [-1], [1]])
    loss = attribute_loss(logits, labels, targets, predictor)
    assert loss.item() < 1e-3  # trained on the unlabelled defaults it would be about 8
    loss.backward()
    assert logits[0].grad is not None
    assert torch.count_nonzero(logits[0].grad[1:]) == 0  # nothing flows from unlabelled or other classes
    nothing = attribute_loss(logits, labels, torch.full((4, 1), -1), predictor)
    assert nothing.item() == 0.0 and nothing.requires_grad
    # A chair labelled "no" (value 0) is learnt like "yes"; the mean is over the labelled pairs only.
    unsure = [torch.zeros((4, 2))]
    no = attribute_loss(unsure, labels, torch.tensor([[0], [-1], [-1], [1]]), predictor)
    assert no.item() == pytest.approx(math.log(2))


def test_decode_gives_values_and_probabilities_of_the_attributes_class_only() -> None:
    """Two images (2 and 1 detections), one attribute of label 2: off its class -1 and probability 0."""
    logits = [torch.tensor([[0.0, math.log(3.0)], [5.0, 0.0], [math.log(4.0), 0.0]])]
    labels = [torch.tensor([2, 1]), torch.tensor([2])]
    (values_a, scores_a), (values_b, scores_b) = _decode(logits, labels, [2])
    assert values_a.tolist() == [[1], [-1]] and values_b.tolist() == [[0]]
    assert scores_a.flatten().tolist() == pytest.approx([0.75, 0.0]) and scores_b.item() == pytest.approx(0.8)


def _dataset(root: Path, images: int, size: int, seed: int, edit=None) -> Path:
    from officescore.ingest import ingest_export

    write_sample(root / "export", n_images=images, seed=seed, size=size)
    if edit is not None:
        path = root / "export" / "annotations.json"
        doc = json.loads(path.read_text())
        edit(doc)
        path.write_text(json.dumps(doc))
    ingest_export(root / "export" / "annotations.json", out=root / "dataset", val_fraction=0.2, seed=0)
    return root / "dataset"


def test_dataset_targets_mark_unlabelled_values(tmp_path: Path) -> None:
    def forget_chairs(doc: dict) -> None:  # every chair's armrests unlabelled
        for ann in doc["annotations"]:
            if ann["category_id"] == CLASSES.index("chair") + 1:
                del ann["attributes"]["armrests"]

    data = _dataset(tmp_path, 10, 64, 4, forget_chairs)
    dataset = OfficeDataset(data, "train")
    order = [(a.class_name, a.name) for a in dataset.attributes.attributes]
    assert order == [("chair", "armrests"), ("lamp", "kind"), ("plant", "size")]
    seen = {name: set() for name in order}
    for i in range(len(dataset)):
        _, target = dataset[i]
        assert target["attributes"].shape == (len(target["labels"]), 3)
        for row, label in zip(target["attributes"].tolist(), target["labels"].tolist(), strict=True):
            for k, (class_name, _) in enumerate(order):
                if CLASSES[label - 1] != class_name:
                    assert row[k] == -1
                else:
                    seen[order[k]].add(row[k])
    assert seen[("chair", "armrests")] == {-1}  # unlabelled: never a training target
    assert seen[("lamp", "kind")] <= {0, 1} and seen[("plant", "size")] <= {0, 1}
    assert dataset.labelled_attributes > 0


def _held_out(
    size: int, seed: int, each: int = 4
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, list]]:
    """Fresh scenes (not in the training export) until every lamp kind and plant size shows up
    `each` times: image, boxes, labels, attribute truth per object."""
    scenes, seen = [], {}
    for index in range(400):
        scene = render_scene(np.random.default_rng([seed, index]), size)
        if not scene.instances:
            continue
        for inst in scene.instances:
            for value in inst.attributes.values():
                seen[value] = seen.get(value, 0) + 1
        masks = torch.from_numpy(np.stack([inst.mask for inst in scene.instances]))
        image = torch.from_numpy(np.array(scene.image)).permute(2, 0, 1).float() / 255
        labels = torch.tensor([CLASSES.index(inst.category) + 1 for inst in scene.instances])
        scenes.append((image, boxes_from_masks(masks), labels, [inst.attributes for inst in scene.instances]))
        if all(seen.get(v, 0) >= each for v in ("desk", "floor", "small", "large")):
            return scenes
    raise AssertionError(f"the sample scenes do not show every lamp kind and plant size: {seen}")


def _plant_size_balanced_accuracy(train: OfficeDataset, held_out: list, seed: int) -> float:
    """A tiny model trained from scratch for 40 steps (seed `seed`): its head's balanced accuracy
    on plant size over `held_out`."""
    torch.manual_seed(seed)
    random.seed(seed)
    options = {**TINY_KWARGS, "min_size": 64, "max_size": 64, "box_batch_size_per_image": 32}
    model = build_model(ARCH, train.classes, weights="none", attributes=train.attributes.to_dict(), **options)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9, weight_decay=1e-4)
    model.train()
    for _ in range(40):
        images, targets = zip(*(train[random.randrange(len(train))] for _ in range(2)), strict=True)
        losses = model(list(images), list(targets))
        optimiser.zero_grad()
        sum(losses.values()).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimiser.step()
    model.eval()
    schema = train.attributes.attributes
    hits: dict[tuple[str, object], list[bool]] = {}
    for image, boxes, labels, truth in held_out:
        ((values, _),) = classify_boxes(model, [image], [boxes], [labels])
        for row, label, known in zip(values.tolist(), labels.tolist(), truth, strict=True):
            for k, attribute in enumerate(schema):
                if attribute.class_name == CLASSES[label - 1] and attribute.name in ("kind", "size"):
                    value = known[attribute.name]
                    hits.setdefault((attribute.name, value), []).append(attribute.values[row[k]] == value)
    assert set(hits) == {("kind", "desk"), ("kind", "floor"), ("size", "small"), ("size", "large")}
    recall = {value: float(np.mean(v)) for (_, value), v in hits.items()}
    # Plant size: both values are common in the scenes. Floor lamps stand only in rooms without a
    # desk, a few per 40 scenes, too few to learn in 40 steps; their recall is not asserted.
    return (recall["small"] + recall["large"]) / 2


@pytest.mark.slow
def test_tiny_model_learns_plant_size(tmp_path: Path) -> None:
    """Trained with everything else for a few dozen steps, the head tells large from small plants
    on scenes it never saw, well above chance (balanced accuracy 0.5). One such model's accuracy
    depends on its seed and on the CPU's arithmetic (seeds 0-5 on one CPU: 0.62-0.89, mean 0.76;
    an untrained head: 0.5), so three models' mean is asserted."""
    train = OfficeDataset(
        _dataset(tmp_path, 40, 64, 11), "train", build_transforms(True, zoom_p=0, color_jitter=0)
    )
    held_out = _held_out(64, 99)
    accuracies = [_plant_size_balanced_accuracy(train, held_out, seed) for seed in range(3)]
    assert np.mean(accuracies) >= 0.65, accuracies


# ---------------------------------------------------------------- checkpoints, Predictor, rubric


def _attribute_checkpoint(path: Path, armrests: bool) -> Path:
    """A tiny model that finds chairs and is sure of their armrests (yes or no)."""
    schema = load_schema().to_dict()
    torch.manual_seed(0)
    model = build_model(ARCH, CLASSES, weights="none", attributes=schema, **TINY_KWARGS)
    plain = tiny_model(CLASSES, {CLASSES.index("chair") + 1: 8.0})
    model.load_state_dict(plain.state_dict(), strict=False)
    classifier = model.roi_heads.attribute_predictor.classifiers[0]  # chair.armrests
    with torch.no_grad():
        classifier.weight.zero_()
        classifier.bias.copy_(torch.tensor([0.0, 9.0] if armrests else [9.0, 0.0]))
    kwargs = {**TINY_KWARGS, "attributes": schema}
    save_checkpoint(path, model=model.state_dict(), arch=ARCH, classes=CLASSES, model_kwargs=kwargs, epoch=0)
    return path


def test_serve_warns_of_attribute_rules_the_model_cannot_meet_as_score_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rubric rule on a misspelt attribute earns nothing on the page: `score` warned, `serve` did not."""
    import os
    import socket

    from officescore.cli import main

    model = _attribute_checkpoint(tmp_path / "arms.pt", armrests=True)
    rubric = tmp_path / "rubric.toml"
    rubric.write_text(
        '[classes.chair]\npoints = 10\n[[attributes]]\nclass = "chair"\nattribute = "armrest"\n'
        "value = true\npoints = 1\n"
    )

    def execve(*args: object) -> None:  # where streamlit would replace the process
        raise SystemExit(0)

    monkeypatch.setattr(os, "execve", execve)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    with pytest.raises(SystemExit) as info:
        main(["serve", "--model", str(model), "--rubric", str(rubric), "--port", port, "--device", "cpu"])
    assert info.value.code == 0
    assert " ".join(capsys.readouterr().err.split()).startswith(
        "warning: rubric rule chair.armrest=yes: the model has no attribute 'armrest' for chair (it has: "
        "armrests); it earns nothing"
    )


def test_checkpoint_carries_the_head_and_the_schema(tmp_path: Path) -> None:
    path = _attribute_checkpoint(tmp_path / "a.pt", armrests=True)
    loaded = load_any(path)
    assert has_attribute_head(loaded.model)
    assert [(a.class_name, a.name) for a in loaded.attributes.attributes] == [
        ("chair", "armrests"),
        ("lamp", "kind"),
        ("plant", "size"),
    ]
    data = torch.load(path, weights_only=True)
    assert any(k.startswith("roi_heads.attribute_predictor.") for k in data["model"])
    # A checkpoint without the head is plain torchvision, as before.
    old = load_any(write_checkpoint(tmp_path / "old.pt"))
    assert not has_attribute_head(old.model) and not old.attributes


def test_predictor_fills_attributes_and_the_rubric_pays_for_armrests(tmp_path: Path) -> None:
    from officescore.infer import Predictor, score_photos

    photos = write_scenes(tmp_path / "photos", n=2)
    with_arms = Predictor.load(_attribute_checkpoint(tmp_path / "arms.pt", True), "cpu", conf=0.5)
    without = Predictor.load(_attribute_checkpoint(tmp_path / "plain.pt", False), "cpu", conf=0.5)
    old = Predictor.load(write_checkpoint(tmp_path / "old.pt", {"chair": 8.0}), "cpu", conf=0.5)
    scored = {
        name: score_photos(p, photos, save_dir=tmp_path / name)
        for name, p in (("arms", with_arms), ("plain", without), ("old", old))
    }
    for name, expected in (("arms", {"armrests": True}), ("plain", {"armrests": False}), ("old", {})):
        chairs = [d for photo in scored[name] for d in photo.result.detections]
        assert chairs and all(d.class_name == "chair" for d in chairs)
        assert all(d.attributes == expected for d in chairs), name
        assert all(photo.annotated and photo.annotated.is_file() for photo in scored[name])
    first = scored["arms"][0].result.detections[0]
    assert first.label() == f"chair {first.score:.2f} armrests"
    assert first.to_dict()["attributes"] == {"armrests": True}
    assert 0.99 < first.attribute_scores["armrests"] <= 1.0
    for arms, plain, old_photo in zip(scored["arms"], scored["plain"], scored["old"], strict=True):
        assert arms.score is not None and plain.score is not None and old_photo.score is not None
        assert [r.count for r in arms.score.attributes] == [len(arms.result.detections)]
        assert plain.score.total == old_photo.score.total  # no armrests: as without a head
        # The default rubric's chair-with-armrests rule: 3 bonus points on 100 full marks.
        assert arms.score.total == pytest.approx(min(plain.score.total + 3.0, 100.0))


def test_rubric_attribute_rules(tmp_path: Path) -> None:
    rubric = Rubric.from_dict(
        {
            "classes": {"chair": {"points": 50}, "lamp": {"points": 50}},
            "attributes": [
                {"class": "chair", "attribute": "armrests", "value": True, "points": 10, "cap": 2},
                {"class": "lamp", "attribute": "kind", "value": "floor", "points": 5},
            ],
        }
    )

    def chair(armrests: bool | None) -> Detection:
        attributes = {} if armrests is None else {"armrests": armrests}
        return Detection("chair", 0.9, [0, 0, 1, 1], {}, 0.1, attributes)

    assert score_office([chair(None)], rubric).total == 50.0
    assert score_office([chair(False)], rubric).total == 50.0
    assert score_office([chair(True)], rubric).total == 60.0
    assert score_office([chair(True)] * 3, rubric).total == 70.0  # capped at 2 chairs
    floor_lamp = Detection("lamp", 0.9, [0, 0, 1, 1], {}, 0.1, {"kind": "floor"})
    assert score_office([chair(True), floor_lamp], rubric).total == 100.0  # 115 clipped
    assert score_office({"chair": 1}, rubric).total == 50.0  # counts alone carry no attributes
    assert Rubric.load().attributes[0].key == "chair.armrests=yes"
    from officescore.errors import ConfigError

    with pytest.raises(ConfigError, match="value"):
        Rubric.from_dict(
            {"classes": {"chair": {"points": 1}}, "attributes": [{"class": "chair", "attribute": "a"}]}
        )


def test_export_refuses_a_model_with_attributes(tmp_path: Path) -> None:
    from officescore.errors import ModelError
    from officescore.export import export_model

    with pytest.raises(ModelError, match="attribute head"):
        export_model(_attribute_checkpoint(tmp_path / "a.pt", True), "torchscript", out=tmp_path / "a.ts")


# ---------------------------------------------------------------- evaluation


def _square(x: int, y: int, side: int = 20) -> dict:
    return {"bbox": [x, y, side, side], "area": side * side, "iscrowd": 0}


def test_eval_scores_attributes_of_matched_labelled_objects() -> None:
    from officescore.evaluate.metrics import evaluate_coco

    schema = load_schema()
    chair, lamp = CLASSES.index("chair") + 1, CLASSES.index("lamp") + 1
    gt_objects = [  # (category, x, attributes, unlabelled)
        (chair, 0, {"armrests": True}, []),
        (chair, 30, {"armrests": True}, []),
        (chair, 60, {"armrests": False}, []),
        (chair, 90, {"armrests": False}, ["armrests"]),  # unlabelled: never scored
        (chair, 120, {"armrests": True}, []),  # nobody finds it: not scored here
        (lamp, 150, {"kind": "floor"}, []),
    ]
    annotations = [
        {"id": k + 1, "image_id": 1, "category_id": c, **_square(x, 0), "attributes": a, "unlabelled": u}
        for k, (c, x, a, u) in enumerate(gt_objects)
    ]
    gt = {
        "images": [{"id": 1, "width": 200, "height": 40, "file_name": "a.jpg"}],
        "annotations": annotations,
        "categories": [{"id": i + 1, "name": n} for i, n in enumerate(CLASSES)],
    }
    predicted = [  # (category, x, attributes)
        (chair, 0, {"armrests": True}),  # right
        (chair, 30, {"armrests": False}),  # wrong
        (chair, 60, {"armrests": False}),  # right
        (chair, 90, {"armrests": True}),  # unlabelled object
        (chair, 175, {"armrests": True}),  # matches nothing
        (lamp, 150, {"kind": "desk"}),  # wrong
    ]
    dets = [
        {"image_id": 1, "category_id": c, "bbox": [x, 0, 20, 20], "score": 0.9, "attributes": a}
        for c, x, a in predicted
    ]
    doc = evaluate_coco(gt, dets, attributes=schema)
    armrests = doc["attributes"]["chair.armrests"]
    assert armrests["n"] == 3 and armrests["values"] == ["no", "yes"]
    assert armrests["confusion"] == [[1, 0], [1, 1]]  # rows labelled no/yes, columns predicted
    assert armrests["accuracy"] == pytest.approx(2 / 3)
    assert armrests["macro_f1"] == pytest.approx((2 / 3 + 2 / 3) / 2)  # no: 2*1/(1+2), yes: 2*1/(2+1)
    lamp_kind = doc["attributes"]["lamp.kind"]
    assert lamp_kind["n"] == 1 and lamp_kind["accuracy"] == 0.0 and lamp_kind["confusion"] == [[0, 0], [1, 0]]
    assert doc["attributes"]["plant.size"]["n"] == 0 and doc["attributes"]["plant.size"]["accuracy"] is None
    plain = evaluate_coco(gt, [{k: v for k, v in d.items() if k != "attributes"} for d in dets])
    assert "attributes" not in plain  # results without attributes: the document as before
    # a desk has no attributes, so the model's results for it carry none: the others still count
    desk = {"image_id": 1, "category_id": CLASSES.index("desk") + 1, "bbox": [175, 20, 20, 20], "score": 0.9}
    assert evaluate_coco(gt, [*dets, desk], attributes=schema)["attributes"] == doc["attributes"]


def test_attributes_are_scored_on_the_matching_of_the_box_metrics() -> None:
    """Each detection, by descending score and from the threshold itself up, takes the free object of
    its class that it overlaps most; a crowd region is no object. Three chairs are found and all
    their armrests are right: a lamp on the first chair takes nothing of it, a chair on the crowd
    region is not scored, a lower-scored chair listed first on the second loses it to the right one,
    and the chair at the threshold sits on two chairs and takes the one it overlaps more (0.82 over
    0.67)."""
    from officescore.evaluate.metrics import evaluate_coco

    chair, lamp = CLASSES.index("chair") + 1, CLASSES.index("lamp") + 1
    gt_objects = [(0, True, 0), (40, True, 1), (80, False, 0), (120, True, 0), (126, False, 0)]
    gt = {
        "images": [{"id": 1, "width": 200, "height": 40, "file_name": "a.jpg"}],
        "annotations": [
            {"id": k + 1, "image_id": 1, "category_id": chair, **_square(x, 0), "iscrowd": crowd,
             "attributes": {"armrests": armrests}}
            for k, (x, armrests, crowd) in enumerate(gt_objects)
        ],
        "categories": [{"id": i + 1, "name": n} for i, n in enumerate(CLASSES)],
    }  # fmt: skip
    predicted = [(lamp, 0, 0.95, {"kind": "floor"}), (chair, 0, 0.9, {"armrests": True})]
    predicted += [(chair, 40, 0.9, {"armrests": False}), (chair, 80, 0.6, {"armrests": True})]
    predicted += [(chair, 80, 0.9, {"armrests": False}), (chair, 124, 0.5, {"armrests": False})]
    dets = [
        {"image_id": 1, "category_id": c, "bbox": [x, 0, 20, 20], "score": s, "attributes": a}
        for c, x, s, a in predicted
    ]
    armrests = evaluate_coco(gt, dets, conf=0.5, attributes=load_schema())["attributes"]["chair.armrests"]
    assert (armrests["n"], armrests["accuracy"], armrests["confusion"]) == (3, 1.0, [[2, 0], [0, 1]])


def test_coco_results_carry_the_heads_values() -> None:
    from officescore.evaluate.metrics import _to_results

    schema = load_schema()
    det = {
        "scores": torch.tensor([0.9, 0.8, 0.1]),
        "labels": torch.tensor([2, 8, 2]),
        "boxes": torch.tensor([[0.0, 0, 10, 10], [5, 5, 20, 20], [1, 1, 2, 2]]),
        "attributes": torch.tensor([[1, -1, -1], [-1, 1, -1], [0, -1, -1]]),
        "attribute_scores": torch.tensor([[0.9, 0, 0], [0, 0.7, 0], [0.6, 0, 0]]),
    }
    results = _to_results(det, 7, 0.5, None, schema)
    assert [r.get("attributes") for r in results] == [{"armrests": True}, {"kind": "floor"}]
    unsure = _to_results(det, 7, 0.05, None, schema)  # the third: a chair predicted without armrests
    assert [r.get("attributes") for r in unsure] == [
        {"armrests": True},
        {"kind": "floor"},
        {"armrests": False},
    ]
    assert all("attributes" not in r for r in _to_results(det, 7, 0.5, None, None))


# ---------------------------------------------------------------- training


@pytest.mark.slow
def test_training_saves_the_head_with_the_schema_and_can_leave_it_off(tmp_path: Path) -> None:
    from trainsetup import make_dataset, small_config

    from officescore.dataset import OfficeDataset
    from officescore.model import load_checkpoint
    from officescore.train import train

    data = make_dataset(tmp_path, images=6, size=64, seed=2)
    config = small_config(data, tmp_path / "runs", epochs=1, max_val_images=1)
    result = train(config)
    checkpoint = load_checkpoint(result.last_checkpoint)
    meta = json.loads((data / "dataset.json").read_text())
    assert checkpoint["model_kwargs"]["attributes"] == meta["attributes"]
    assert any(k.startswith("roi_heads.attribute_predictor.") for k in checkpoint["model"])
    assert load_any(result.last_checkpoint).attributes.to_dict() == meta["attributes"]
    (row,) = csv.DictReader((result.run_dir / "metrics.csv").open())
    assert float(row["loss_attributes"]) > 0  # the head's loss has its own column
    (said,) = [note for note in result.notes if note.startswith("attribute head: ")]
    labelled = OfficeDataset(data, "train").labelled_attributes  # (object, attribute) pairs, not classes
    assert said.startswith(f"attribute head: chair.armrests, lamp.kind, plant.size, from {labelled} labelled")

    off = small_config(data, tmp_path / "runs", epochs=1, max_val_images=1, name="off")
    off.model_kwargs["attributes"] = {}  # what `train --no-attributes` passes
    trained = train(off)
    assert not any(note.startswith("attribute head") for note in trained.notes)
    plain = load_checkpoint(trained.last_checkpoint)
    assert not any(k.startswith("roi_heads.attribute_predictor.") for k in plain["model"])
    (row,) = csv.DictReader((tmp_path / "runs" / "off" / "metrics.csv").open())
    assert row["loss_attributes"] == ""  # no head, no loss: empty, not 0


def test_eval_table_shows_attributes(capsys: pytest.CaptureFixture[str]) -> None:
    from officescore.cli.evaluate import _show_attributes

    row = {
        "n": 3,
        "accuracy": 2 / 3,
        "macro_f1": 2 / 3,
        "values": ["no", "yes"],
        "confusion": [[1, 0], [1, 1]],
    }
    _show_attributes({"chair.armrests": row})
    out = capsys.readouterr().out
    assert "chair.armrests" in out and "0.667" in out and "yes: no=1 yes=1" in out


def test_score_cli_shows_attributes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from officescore.cli import main

    photo = write_scenes(tmp_path / "photos", n=1)[0]
    model = _attribute_checkpoint(tmp_path / "arms.pt", armrests=True)
    args = ["score", str(photo), "--model", str(model), "--device", "cpu", "--precision", "fp32"]
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--json"])
    assert exit_info.value.code == 0
    payload = json.loads(capsys.readouterr().out)
    (photo_json,) = payload["photos"]
    detections = photo_json["detections"]
    assert detections and all(d["attributes"] == {"armrests": True} for d in detections)
    assert any(
        r["rule"] == "chair.armrests=yes" and r["earned"] == 3 for r in photo_json["score"]["attributes"]
    )
    assert "warning" not in capsys.readouterr().err  # the default rubric's rules fit the model
    with pytest.raises(SystemExit):
        main(args)
    out = capsys.readouterr().out
    assert "armrests" in out and "chair.armrests=yes (bonus)" in out

    # A hand-written rubric: "Yes" in text pays as true does; a misspelt attribute and a value the
    # model never gives are each one warning up front (they would silently earn nothing).
    rubric = tmp_path / "rubric.toml"
    rubric.write_text(
        '[classes.chair]\npoints = 10\n[[attributes]]\nclass = "chair"\nattribute = "armrests"\n'
        'value = "Yes"\npoints = 4\n[[attributes]]\nclass = "chair"\nattribute = "armrest"\n'
        'value = true\npoints = 1\n[[attributes]]\nclass = "lamp"\nattribute = "kind"\n'
        'value = "wall"\npoints = 1\n'
    )
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--rubric", str(rubric), "--json"])
    assert exit_info.value.code == 0
    captured = capsys.readouterr()
    (scored,) = json.loads(captured.out)["photos"]
    assert [(r["rule"], r["earned"]) for r in scored["score"]["attributes"]] == [
        ("chair.armrests=Yes", 4.0),
        ("chair.armrest=yes", 0.0),
        ("lamp.kind=wall", 0.0),
    ]
    warnings = [" ".join(line.split()) for line in captured.err.split("warning: ")[1:]]
    assert warnings == [
        "rubric rule chair.armrest=yes: the model has no attribute 'armrest' for chair (it has: "
        "armrests); it earns nothing",
        "rubric rule lamp.kind=wall: lamp.kind: 'wall' is not one of desk, floor; it earns nothing",
    ]


def _blind(attributes: dict | None) -> torch.nn.Module:
    """A tiny model (with an attribute head when `attributes`) for which background always wins."""
    torch.manual_seed(0)
    model = build_model(ARCH, CLASSES, weights="none", attributes=attributes, **TINY_KWARGS)
    scores = model.roi_heads.box_predictor.cls_score
    with torch.no_grad():
        scores.weight.zero_()
        scores.bias.fill_(-9.0)
        scores.bias[0] = 9.0
    return model.eval()


def test_eval_of_an_attribute_model_that_finds_nothing_lists_every_attribute_at_n_0(tmp_path: Path) -> None:
    """docs/attributes.md: one entry per attribute in metrics.json, even when nothing was detected;
    a model without the head still gets no "attributes"."""
    from officescore.evaluate.metrics import evaluate_model

    dataset = OfficeDataset(_dataset(tmp_path, images=5, size=64, seed=3), "val")
    metrics, predictions = evaluate_model(_blind(load_schema().to_dict()), dataset, "cpu")
    assert predictions == []
    assert sorted(metrics["attributes"]) == ["chair.armrests", "lamp.kind", "plant.size"]
    assert all(row["n"] == 0 and row["accuracy"] is None for row in metrics["attributes"].values())
    plain, _ = evaluate_model(_blind(None), dataset, "cpu")
    assert "attributes" not in plain
