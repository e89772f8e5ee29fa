"""`officescore audit`: injected label errors are found, clean labels are not flagged, --folds never
predicts a photo with a model that trained on it, the --json contract, one-line errors."""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from cliroot import table_column
from PIL import Image
from scoremodels import write_checkpoint
from trainsetup import FAST_MODEL

from officescore import masks as masklib
from officescore.cli import common, main
from officescore.curate.audit import audit_predictions, run_audit, trained_on
from officescore.curate.folds import assign_folds
from officescore.curate.inject import Injected, inject_errors
from officescore.curate.labels import load_split
from officescore.errors import ConfigError
from officescore.ingest import ingest_export
from officescore.sample import write_sample

KINDS = ("missing", "wrong_class", "bad_mask", "spurious", "duplicate")


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Any:
    """One torch thread: much faster for tiny models when other processes share the CPUs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# Measured with `_model_like` predictions (2026-12-01): on the clean labels the highest issue score
# was 0.31-0.48 over seeds 0-5 (always a thin object whose mask the jitter ate); a single injected
# error of any kind scored 0.62-1.0 (seeds 0-2). The threshold sits in that gap.
CLEAN_MAX = 0.55


def _dataset(root: Path, images: int, size: int, seed: int, copies: tuple[int, ...] = ()) -> Path:
    """Sample scenes ingested; `copies`: indices of photos the export also holds a byte-identical
    copy of (under another name, labelled alike), so ingest records them as duplicate groups."""
    write_sample(root / "export", n_images=images, seed=seed, size=size)
    export = root / "export" / "annotations.json"
    if copies:
        coco = json.loads(export.read_text())
        next_image, next_ann = len(coco["images"]) + 1, len(coco["annotations"]) + 1
        for n, index in enumerate(copies):
            info = coco["images"][index]
            name = f"images/copy{n}_{Path(info['file_name']).name}"
            shutil.copyfile(export.parent / info["file_name"], export.parent / name)
            coco["images"].append({**info, "id": next_image, "file_name": name})
            for ann in [a for a in coco["annotations"] if a["image_id"] == info["id"]]:
                coco["annotations"].append({**ann, "id": next_ann, "image_id": next_image})
                next_ann += 1
            next_image += 1
        export.write_text(json.dumps(coco))
    ingest_export(export, out=root / "dataset", val_fraction=0.2, seed=0)
    return root / "dataset"


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _dataset(tmp_path_factory.mktemp("audit"), images=14, size=96, seed=3)


def _jitter(rle: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """A mask one pixel larger or smaller all round, as a decent model's masks are."""
    mask = torch.from_numpy(masklib.decode(rle)).float()[None, None]
    if rng.random() < 0.5:
        out = torch.nn.functional.max_pool2d(mask, 3, stride=1, padding=1)
    else:
        out = 1 - torch.nn.functional.max_pool2d(1 - mask, 3, stride=1, padding=1)
        if out.sum() == 0:
            out = mask
    return masklib.encode(out[0, 0].numpy().astype(np.uint8))


def _model_like(coco: dict[str, Any], seed: int) -> list[dict[str, Any]]:
    """Predictions we control: every clean label found with a score of 0.7-0.99 and a slightly-off
    mask, plus weak (<= 0.3) guesses of other classes on the same objects and on background."""
    rng = random.Random(seed)
    n_classes = len(coco["categories"])
    out = []
    for ann in coco["annotations"]:
        rle = _jitter(ann["segmentation"], rng)
        box = masklib.bbox(rle)
        out.append({"image_id": ann["image_id"], "category_id": ann["category_id"], "bbox": box,
                    "segmentation": rle, "score": rng.uniform(0.7, 0.99)})  # fmt: skip
        if rng.random() < 0.3:
            other = rng.choice([c for c in range(1, n_classes + 1) if c != ann["category_id"]])
            out.append({**out[-1], "category_id": other, "score": rng.uniform(0.05, 0.3)})
    for info in coco["images"]:
        mask = np.zeros((info["height"], info["width"]), dtype=np.uint8)
        x, y = rng.randrange(0, info["width"] - 12), rng.randrange(0, info["height"] - 12)
        mask[y : y + 10, x : x + 10] = 1
        rle = masklib.encode(mask)
        category = rng.randrange(1, n_classes + 1)
        out.append({"image_id": info["id"], "category_id": category, "bbox": masklib.bbox(rle),
                    "segmentation": rle, "score": rng.uniform(0.05, 0.3)})  # fmt: skip
    return out


def _audit_with(dataset: Path, coco: dict[str, Any], predictions: list[dict[str, Any]]):
    (dataset / "train.json").write_text(json.dumps(coco))
    return audit_predictions(load_split(dataset, "train"), predictions)


def _box_iou(a: list[float], b: list[float]) -> float:
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw, ih = max(0.0, min(ax1, bx1) - max(a[0], b[0])), max(0.0, min(ay1, by1) - max(a[1], b[1]))
    inter = iw * ih
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def _is(issue: Any, truth: Injected) -> bool:
    if issue.kind != truth.kind or issue.image_id != truth.image_id:
        return False
    if truth.kind == "missing":
        return _box_iou(issue.bbox, truth.bbox) >= 0.5
    return issue.annotation_id == truth.annotation_id


@pytest.mark.parametrize("kind", KINDS)
def test_each_injected_kind_is_rank_one_when_it_is_the_only_error(clean: Path, kind: str) -> None:
    original = json.loads((clean / "train.json").read_text())
    try:
        for seed in range(3):
            predictions = _model_like(original, seed)
            broken, [truth] = inject_errors(original, seed=seed, counts={kind: 1})
            result = _audit_with(clean, broken, predictions)
            top = result.issues[0]
            assert _is(top, truth), (seed, truth, result.issues[:3])
            assert top.score > CLEAN_MAX, (seed, top)
            # its image is the worst one
            assert result.images[0]["image_id"] == truth.image_id
            if kind == "wrong_class":
                wrong = next(a for a in broken["annotations"] if a["id"] == truth.annotation_id)
                was = next(a for a in original["annotations"] if a["id"] == truth.annotation_id)
                names = [c["name"] for c in original["categories"]]
                assert top.class_name == names[wrong["category_id"] - 1]
                assert top.suggested_class == names[was["category_id"] - 1]
    finally:
        (clean / "train.json").write_text(json.dumps(original))


def test_clean_labels_raise_no_issue_above_the_measured_threshold(clean: Path) -> None:
    original = json.loads((clean / "train.json").read_text())
    worst = max(
        _audit_with(clean, original, _model_like(original, seed)).issues[0].score for seed in range(6)
    )
    print(f"clean data set: highest issue score {worst:.3f} (threshold {CLEAN_MAX})")
    assert worst < CLEAN_MAX


def test_several_injected_errors_fill_the_top_of_the_ranking(clean: Path) -> None:
    original = json.loads((clean / "train.json").read_text())
    counts = {"missing": 2, "wrong_class": 2, "bad_mask": 2, "duplicate": 1, "spurious": 1}
    try:
        broken, truths = inject_errors(original, seed=7, counts=counts)
        result = _audit_with(clean, broken, _model_like(original, 7))
        top = result.issues[: len(truths)]
        found = [t for t in truths if any(_is(i, t) for i in top)]
        assert len(found) >= len(truths) - 1, (truths, top)  # measured: 7 or 8 of 8 (seeds 7-9)
    finally:
        (clean / "train.json").write_text(json.dumps(original))


def _largest_part_filled(mask: np.ndarray) -> np.ndarray:
    """What a Label Studio polygon can hold of a mask: its largest part (8-connected), holes filled."""
    import cv2

    _, parts, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    part = parts == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    _, background = cv2.connectedComponents((~part).astype(np.uint8), connectivity=4)
    border = np.unique(np.concatenate([background[0], background[-1], background[:, 0], background[:, -1]]))
    return part | ((background > 0) & ~np.isin(background, border))


class _Recording:
    """Just enough of Label Studio's client for `push_tasks_file`: a new project, uploads, imports."""

    def __init__(self) -> None:
        self.created: list[str] = []
        self.uploaded: list[bytes] = []
        self.imported: list[dict[str, Any]] = []

    def find_project(self, title: str) -> None:
        return None

    def create_project(self, title: str, schema: Any) -> Any:
        from officescore.label.client import Project

        self.created.append(title)
        return Project(1, title, schema)

    def upload_file(self, project_id: int, name: str, data: bytes) -> str:
        self.uploaded.append(data)
        return f"/data/upload/{project_id}/{name}"

    def import_tasks(self, project_id: int, tasks: list[dict[str, Any]]) -> None:
        self.imported += tasks


def test_audit_and_select_tasks_files_push_from_any_folder(clean: Path, tmp_path: Path) -> None:
    """`label push --review` finds each photo of an audit or select tasks file through `data.path`
    (relative to the file), wherever the file was written, and uploads that photo."""
    from labelmodels import edge_model

    from officescore.attributes import AttributeSchema
    from officescore.curate.labelstudio import audit_tasks, select_tasks
    from officescore.label.client import Project
    from officescore.label.formats import LabelSchema, config_path_for
    from officescore.label.push import push_tasks_file

    split = load_split(clean, "train")
    photos = [image.path for image in split.images[:2]]
    issues = [
        {"rank": n, "kind": "spurious", "score": 0.9, "image_id": image.id, "file_name": image.file_name,
         "annotation_id": image.labels[0].id, "class": image.labels[0].class_name, "suggested_class": None,
         "bbox": image.labels[0].bbox}
        for n, image in enumerate(split.images[:2], start=1)
    ]  # fmt: skip
    for folder in ("review", "next"):  # beside neither the photos nor each other
        (tmp_path / folder).mkdir()
    predictor = edge_model(split.classes).predictor
    written = [
        audit_tasks(tmp_path / "review" / "review.json", split, [], issues, "audit-test")[0],
        select_tasks(tmp_path / "next" / "next.json", predictor, photos, "edges")[0],
    ]
    for tasks_file in written:
        client = _Recording()
        push_tasks_file(client, "offices-review", tasks_file)  # type: ignore[arg-type]
        assert sorted(client.uploaded) == sorted(p.read_bytes() for p in photos), tasks_file
        assert all(t["data"]["image"].startswith("/data/upload/1/") for t in client.imported)
    # The last task's photo gone: refused before a project is made or the first photo uploaded.
    tasks = json.loads(written[1].read_text())
    tasks[-1]["data"]["path"] = "gone.jpg"
    written[1].write_text(json.dumps(tasks))
    client = _Recording()
    with pytest.raises(ConfigError, match="'gone.jpg' not found beside the file"):
        push_tasks_file(client, "offices-review", written[1])  # type: ignore[arg-type]
    assert (client.created, client.uploaded, client.imported) == ([], [], [])
    # ... unless the project already holds that photo (its sha256): the task is skipped, as before.
    tasks[-1]["data"]["sha256"] = "f" * 64
    written[1].write_text(json.dumps(tasks))
    client = _Recording()
    schema = LabelSchema.from_config(config_path_for(written[1]).read_text(encoding="utf-8"))
    client.find_project = lambda title: Project(1, title, schema)  # type: ignore[method-assign]
    client.export_tasks = lambda project_id: [{"data": {"sha256": "f" * 64}}]  # type: ignore[attr-defined]
    pushed = push_tasks_file(client, "offices-review", written[1])  # type: ignore[arg-type]
    assert (pushed.added, pushed.already_there, len(client.uploaded)) == (len(tasks) - 1, 1, len(tasks) - 1)
    # A model with its own attribute head: select's tasks ask its questions, as prelabel's do.
    finish = {"kind": "choice", "values": ["wood", "white"], "default": "wood"}
    predictor.attributes = AttributeSchema.from_dict({split.classes[0]: {"finish": finish}})
    mine = select_tasks(tmp_path / "next" / "mine.json", predictor, photos[:1], "edges")[0]
    assert f"{split.classes[0]}__finish" in config_path_for(mine).read_text(encoding="utf-8")


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum()) / float((a | b).sum())


def test_review_tasks_suggest_only_confident_detections_and_keep_each_labels_own_mask(
    clean: Path, tmp_path: Path
) -> None:
    """`audit --labelstudio`'s tasks: the suggestion holds the model's detections >= 0.5 only (the
    predictions audit works from go down to 0.05), and each label of the photo comes back as its own
    region with its own mask (IoU >= 0.9 with what a polygon can hold of it)."""
    from officescore.curate.labelstudio import SUGGEST_CONF, audit_tasks
    from officescore.label.formats import read_tasks, result_regions

    split = load_split(clean, "train")
    coco = json.loads((clean / "train.json").read_text())
    predictions = _model_like(coco, seed=0)  # labels found at 0.7-0.99, weak guesses at 0.05-0.3
    reviewed, skipped = split.images[:-1], split.images[-1]
    issues = [
        {"rank": n, "kind": "bad_mask", "score": 0.9, "image_id": image.id, "file_name": image.file_name,
         "annotation_id": image.labels[0].id, "class": image.labels[0].class_name, "suggested_class": None,
         "bbox": image.labels[0].bbox}
        for n, image in enumerate(reviewed, start=1)
    ] + [{"rank": len(reviewed) + 1, "kind": "spurious", "score": 0.3, "image_id": skipped.id,
          "file_name": skipped.file_name, "annotation_id": None, "class": "desk", "suggested_class": None,
          "bbox": [0, 0, 1, 1]}]  # fmt: skip
    path, _, count = audit_tasks(tmp_path / "review.json", split, predictions, issues, "audit-test")
    tasks = read_tasks(path)
    assert count == len(tasks) == len(reviewed)
    assert {t["data"]["image_id"] for t in tasks} == {image.id for image in reviewed}
    ids = {image.id for image in reviewed}
    assert any(p["score"] < SUGGEST_CONF for p in predictions if p["image_id"] in ids)  # some to leave out
    by_id = split.by_id()
    for task in tasks:
        image = by_id[task["data"]["image_id"]]
        suggested = result_regions(task["predictions"][0]["result"])
        confident = [p for p in predictions if p["image_id"] == image.id and p["score"] >= SUGGEST_CONF]
        assert suggested and all(r.score is not None and r.score >= SUGGEST_CONF for r in suggested)
        assert len(suggested) == len(confident)
        labelled = result_regions(task["annotations"][0]["result"])
        assert [r.class_name for r in labelled] == [label.class_name for label in image.labels]
        for region, label in zip(labelled, image.labels, strict=True):
            got = masklib.decode(region.mask).astype(bool)
            own = _largest_part_filled(masklib.decode(label.rle).astype(bool))
            assert _iou(got, own) >= 0.9, (image.id, label.id)


def test_review_tasks_keep_ignore_regions_apart_from_the_objects(clean: Path, tmp_path: Path) -> None:
    """An ignore region (iscrowd 1: a crowd, or an object ingest kept as its box) is no mask region of
    the review annotation: `label pull` reads those back as objects. It is a rectangle of the ignore
    tag, which pull reads back as an ignore region, and listed in the task data (id, class, box)."""
    from officescore.curate.labelstudio import audit_tasks
    from officescore.label.formats import read_tasks, result_ignore_regions, result_regions

    split = load_split(clean, "train")
    image = next(image for image in split.images if len(image.labels) >= 2)
    crowd = image.labels[-1]
    crowd.iscrowd = 1
    first = image.labels[0]
    issue = {"rank": 1, "kind": "bad_mask", "score": 0.9, "image_id": image.id, "file_name": image.file_name,
             "annotation_id": first.id, "class": first.class_name, "suggested_class": None,
             "bbox": first.bbox}  # fmt: skip
    path, config, count = audit_tasks(tmp_path / "review.json", split, [], [issue], "audit-test")
    (task,) = read_tasks(path)
    labelled = result_regions(task["annotations"][0]["result"])
    assert [r.class_name for r in labelled] == [label.class_name for label in image.labels[:-1]]
    assert task["data"]["ignore_regions"] == [
        {"annotation_id": crowd.id, "class": crowd.class_name, "bbox": [float(v) for v in crowd.bbox]}
    ]
    # drawn as a rectangle of the config's ignore tag, which `label pull` reads as an ignore region
    assert '<RectangleLabels name="ignore"' in config.read_text()
    (box,) = result_ignore_regions(task["annotations"][0]["result"])
    assert box.class_name == crowd.class_name and box.extra == {"iscrowd": 1}
    assert masklib.bbox(box.mask) == pytest.approx(crowd.bbox, abs=1)
    crowd.iscrowd = 0  # a photo without ignore regions lists none, and its config has no ignore tag
    again, config, _ = audit_tasks(tmp_path / "again.json", split, [], [issue], "audit-test")
    (task,) = read_tasks(again)
    assert "ignore_regions" not in task["data"] and "RectangleLabels" not in config.read_text()
    assert len(result_regions(task["annotations"][0]["result"])) == len(image.labels)


def test_review_tasks_carry_each_labels_attributes_and_the_models(clean: Path, tmp_path: Path) -> None:
    """A wrong_attribute issue is fixed in the review task: the config has the data set's per-region
    choices, each label's labelled values are set on its region, and the model's on its suggestion;
    `label pull` reads them back (result_regions), so a review loses no attribute."""
    from officescore.attributes import value_name
    from officescore.curate.labelstudio import audit_tasks
    from officescore.label.formats import config_path_for, read_tasks, result_regions

    split = load_split(clean, "train")
    image = next(im for im in split.images if any(lab.attributes for lab in im.labels))
    first = image.labels[0]
    issue = {"rank": 1, "kind": "wrong_attribute", "score": 0.9, "image_id": image.id,
             "file_name": image.file_name, "annotation_id": first.id, "class": first.class_name,
             "suggested_class": None, "bbox": first.bbox}  # fmt: skip
    labelled = next(lab for lab in image.labels if lab.attributes)
    (name, value), *_ = labelled.attributes.items()
    attribute = split.attributes.get(labelled.class_name, name)
    assert attribute is not None
    other = next(v for v in attribute.values if v != value)  # the model says otherwise
    x, y, w, h = labelled.bbox
    prediction = {"image_id": image.id, "category_id": split.classes.index(labelled.class_name) + 1,
                  "bbox": [x, y, w, h], "segmentation": labelled.rle, "score": 0.9,
                  "attributes": {name: other}}  # fmt: skip
    path, _, _ = audit_tasks(tmp_path / "review.json", split, [prediction], [issue], "audit-test")
    (task,) = read_tasks(path)
    config = config_path_for(path).read_text(encoding="utf-8")
    assert f"{labelled.class_name}__{name}" in config
    regions = result_regions(task["annotations"][0]["result"])
    assert [r.attributes for r in regions] == [
        {k: value_name(v) for k, v in lab.attributes.items()} for lab in image.labels
    ]
    (suggested,) = result_regions(task["predictions"][0]["result"])
    assert suggested.attributes == {name: value_name(other)}


# --------------------------------------------------------------------------- --folds: really trained


def test_folds_keep_each_group_of_near_duplicates_in_one_fold(tmp_path: Path) -> None:
    """Photo 0 twice copied, photos 1 and 2 once: three duplicate groups that ingest records; for
    every k and seed each group lands in one fold, and the folds split the photos between them."""
    data = _dataset(tmp_path, images=10, size=64, seed=5, copies=(0, 0, 1, 2))
    split = load_split(data, "all")
    assert sorted(len(g) for g in split.duplicate_groups) == [2, 2, 3]
    id_of = {image.file_name: image.id for image in split.images}
    for k in (2, 3, 4):
        for seed in range(4):
            folds = assign_folds(split, k, seed)
            assert sorted(i for fold in folds for i in fold) == sorted(id_of.values()) and all(folds)
            fold_of = {i: n for n, fold in enumerate(folds) for i in fold}
            for group in split.duplicate_groups:
                assert len({fold_of[id_of[name]] for name in group}) == 1, (k, seed, group, folds)


@pytest.mark.slow
def test_folds_train_for_real_and_never_predict_a_photo_their_model_saw(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import officescore.train
    from officescore.infer import Predictor

    data = _dataset(tmp_path, images=8, size=64, seed=11, copies=(0, 1, 2))  # three pairs of copies
    assert len(load_split(data, "all").duplicate_groups) == 3
    args = tmp_path / "args.json"
    args.write_text(json.dumps({
        "arch": "maskrcnn_resnet18_fpn", "weights": "none", "epochs": 3, "batch_size": 2, "lr": 0.01,
        "img_size": 64, "workers": 0, "model_kwargs": FAST_MODEL, "seed": 3, "log": "mlflow",
    }))  # fmt: skip
    # Independent of what cross_predict reports: what each training read, what each model predicted.
    trained_on: dict[str, set[str]] = {}
    predicted: list[tuple[str, set[str]]] = []
    logged_to: list[str] = []
    real_train, real_predict = officescore.train.train, Predictor.predict

    def spy_train(config: Any, reporter: Any = None) -> Any:
        coco = json.loads((Path(config.data) / "train.json").read_text())
        logged_to.append(config.log)
        result = real_train(config) if reporter is None else real_train(config, reporter)
        trained_on[str(result.last_checkpoint)] = {Path(i["file_name"]).name for i in coco["images"]}
        return result

    def spy_predict(self: Predictor, inputs: Any, *a: Any, **k: Any) -> Any:
        predicted.append((self.source, {Path(p).name for p in inputs}))
        return real_predict(self, inputs, *a, **k)

    monkeypatch.setattr(officescore.train, "train", spy_train)
    monkeypatch.setattr(Predictor, "predict", spy_predict)
    run = run_audit(data, folds=2, split="all", train_args=args, device="cpu", out=tmp_path / "audit")

    everyone = {Path(i.file_name).name for i in load_split(data, "all").images}
    content = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (data / "images").iterdir()}
    assert len(predicted) == 2 and len(trained_on) == 2
    assert logged_to == ["none", "none"]  # fold models are not tracked, whatever args.json says
    for source, photos in predicted:
        assert photos and not photos & trained_on[source], (source, photos)  # never a photo it trained on
        seen = {content[name] for name in trained_on[source]}
        assert not {content[name] for name in photos} & seen, (source, photos)  # nor a copy of one
        assert trained_on[source] == everyone - photos  # and trained on all the others
    assert set().union(*(p for _, p in predicted)) == everyone
    ids = {i.id for i in load_split(data, "all").images}
    held = [set(f["held_out"]) for f in run.folds]
    assert held[0].isdisjoint(held[1]) and held[0] | held[1] == ids
    for fold in run.folds:
        assert set(fold["predicted"]) <= set(fold["held_out"]) and not set(fold["trained_on"]) & set(
            fold["held_out"]
        )
        assert len(fold["losses"]) == 3 and fold["losses"][-1] < fold["losses"][0], fold[
            "losses"
        ]  # it learned
    saved = json.loads((run.out_dir / "predictions.json").read_text())
    assert saved and {p["image_id"] for p in saved} <= ids
    assert run.model == "folds:2" and json.loads((run.out_dir / "issues.json").read_text())["folds"]


# --------------------------------------------------------------------------- CLI: --json contract, errors


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out, captured.err.strip()


def _others(notes: list[str], *also: str) -> list[str]:
    """The notes but the weak-model one (these tests' toy models find few labels) and `also`'s."""
    return [n for n in notes if not any(s in n for s in ("say more about the model", *also))]


def test_cli_json_has_the_documented_shape(
    clean: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = write_checkpoint(tmp_path / "m.pt", favour={"desk": 3.0, "chair": 2.5})
    review = tmp_path / "review.json"
    args = ["audit", str(clean), "--model", str(model), "--device", "cpu", "--out", str(tmp_path / "run")]
    code, out, _ = _cli([*args, "--labelstudio", str(review), "--json"], capsys)
    assert code == 0
    doc = json.loads(out)
    assert set(doc) == {
        "dataset", "model", "split", "issues", "images", "conventions", "out", "labelstudio", "notes"
    }  # fmt: skip
    assert _others(doc["notes"], "a polygon cannot hold") == []  # that one: its own test
    assert doc["out"] == str(tmp_path / "run") and doc["labelstudio"] == str(review)  # nothing else says so
    assert doc["split"] == "train" and isinstance(doc["conventions"], list)
    coco = json.loads((clean / "train.json").read_text())
    image_ids, ann_ids = {i["id"] for i in coco["images"]}, {a["id"] for a in coco["annotations"]}
    names = [c["name"] for c in coco["categories"]]
    keys = {
        "rank",
        "kind",
        "score",
        "image_id",
        "file_name",
        "annotation_id",
        "class",
        "suggested_class",
        "bbox",
    }
    assert doc["issues"]
    for n, issue in enumerate(doc["issues"], start=1):
        assert set(issue) == keys and issue["rank"] == n and issue["image_id"] in image_ids
        assert (issue["annotation_id"] is None) == (issue["kind"] == "missing")
        assert issue["annotation_id"] is None or issue["annotation_id"] in ann_ids
        assert 0.0 <= issue["score"] <= 1.0 and len(issue["bbox"]) == 4
    scores = [i["score"] for i in doc["issues"]]
    assert scores == sorted(scores, reverse=True)
    qualities = [i["quality"] for i in doc["images"]]
    assert qualities == sorted(qualities) and {i["image_id"] for i in doc["images"]} == image_ids
    run = tmp_path / "run"
    assert {"issues.json", "predictions.json", "images.csv", "contact_sheet_01.png"} <= {
        p.name for p in run.iterdir()
    }
    rows = (run / "images.csv").read_text().splitlines()
    assert rows[0] == "image_id,file_name,quality" and len(rows) == len(image_ids) + 1
    # --labelstudio: one review task per photo with an issue >= 0.5: its labels and the suggestions
    from officescore.label.formats import read_tasks, result_regions

    flagged = {i["image_id"] for i in doc["issues"] if i["score"] >= 0.5}
    tasks = read_tasks(review)
    assert flagged and {t["data"]["image_id"] for t in tasks} == flagged
    for task in tasks:
        labels = [a for a in coco["annotations"] if a["image_id"] == task["data"]["image_id"]]
        regions = result_regions(task["annotations"][0]["result"])
        assert sorted(r.class_name for r in regions) == sorted(names[a["category_id"] - 1] for a in labels)
        assert "predictions" in task and task["data"]["issues"]
    assert (tmp_path / "review.label_config.xml").is_file()


def test_cli_table_shows_the_top_issues_and_the_lowest_quality_photos_of_runs_audit(
    clean: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --out the run folder is runs/audit/audit; issues.json holds the issues at or above
    --min-score, the table their first SHOWN, each photo named whole in 80 columns, and the line below
    it the five lowest-quality photos."""
    import csv
    import re

    from officescore.cli.audit import SHOWN

    model = write_checkpoint(tmp_path / "m.pt", favour={"desk": 3.0, "chair": 2.5})
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(common.console, "_width", 80)  # a terminal's width, whatever $COLUMNS says
    args = ["audit", str(clean), "--model", str(model), "--device", "cpu", "--min-score", "0.3"]
    code, out, _ = _cli(args, capsys)
    assert code == 0
    run = tmp_path / "runs" / "audit" / "audit"
    issues = json.loads((run / "issues.json").read_text())["issues"]
    assert len(issues) > SHOWN and min(issue["score"] for issue in issues) >= 0.3
    assert re.findall(r"^│\s*(\d+) │", out, re.MULTILINE) == [str(n) for n in range(1, SHOWN + 1)]
    shown = table_column(out.split("lowest quality photos")[0], 3)
    assert shown == [Path(issue["file_name"]).name for issue in issues[:SHOWN]], out
    with (run / "images.csv").open() as rows:
        lowest = [Path(row["file_name"]).name for row in list(csv.DictReader(rows))[:5]]
    said = " ".join(out.split()).split("lowest quality photos: ")[1].split(" wrote ")[0]
    assert re.findall(r"(\S+) \d\.\d\d", said) == lowest
    assert "review tasks" not in out  # no --labelstudio, no tasks file to name


def test_an_audit_into_an_earlier_audits_folder_leaves_none_of_its_sheets(
    clean: Path, tmp_path: Path
) -> None:
    """`--out` reused: sheets the earlier run wrote and this one does not (it had more issues, or a
    convention that is gone) are removed; other files in the folder are not touched."""
    from officescore.curate.audit import run_audit

    model = write_checkpoint(tmp_path / "m.pt", favour={"desk": 3.0, "chair": 2.5})
    out = tmp_path / "run"
    out.mkdir()
    stale = [out / "contact_sheet_09.png", out / "conventions_plant_1.png"]
    for path in stale:
        Image.new("RGB", (4, 4)).save(path)
    (out / "notes.txt").write_text("mine")
    run = run_audit(clean, model=model, device="cpu", out=out)
    assert run.sheets and all(path.is_file() for path in run.sheets)
    assert not any(path.exists() for path in stale)
    assert (out / "notes.txt").read_text() == "mine"


def test_sheet_issues_draws_that_many_and_a_json_name_in_capitals_is_a_json_name(
    clean: Path, tmp_path: Path
) -> None:
    from officescore.curate.audit import run_audit
    from officescore.curate.sheets import PER_SHEET

    model = write_checkpoint(tmp_path / "m.pt", favour={"desk": 3.0, "chair": 2.5})
    review = tmp_path / "Review.JSON"
    run = run_audit(
        clean, model=model, device="cpu", out=tmp_path / "run", sheet_issues=PER_SHEET + 1, labelstudio=review
    )
    assert len(run.issues) > PER_SHEET + 1
    assert [path.name for path in run.sheets] == ["contact_sheet_01.png", "contact_sheet_02.png"]
    with Image.open(run.sheets[0]) as first, Image.open(run.sheets[1]) as second:
        assert second.height * 4 == first.height  # the 13th issue alone: one row of four
    assert run.tasks == review and review.is_file()


def test_a_review_file_with_no_tasks_says_so(
    clean: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No photo flagged: the tasks file is empty, and the run says so (a note and a count) rather than
    naming it as if it held something to review."""
    model = write_checkpoint(tmp_path / "m.pt", favour={"desk": 3.0, "chair": 2.5})
    review = tmp_path / "review.json"
    monkeypatch.setattr(common.console, "_width", 200)
    args = ["audit", str(clean), "--model", str(model), "--device", "cpu", "--out", str(tmp_path / "run")]
    code, out, err = _cli([*args, "--min-score", "1.0", "--labelstudio", str(review)], capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "run" / "issues.json").read_text())["issues"] == []
    assert json.loads(review.read_text()) == []
    assert "holds no review tasks" in out and f"0 review task(s) for Label Studio: {review}" in out, out


def test_cli_mask_brush_reaches_the_review_tasks_and_the_run_counts_them(
    clean: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Mutation review B: `audit --mask brush` through the CLI writes brush regions (no polygon note),
    the run says how many tasks it wrote, and a model that finds few labels gets its note there."""
    model = write_checkpoint(tmp_path / "m.pt", favour={"desk": 3.0, "chair": 2.5})
    review = tmp_path / "review.json"
    monkeypatch.setattr(common.console, "_width", 200)
    args = ["audit", str(clean), "--model", str(model), "--device", "cpu", "--out", str(tmp_path / "run")]
    code, out, err = _cli([*args, "--labelstudio", str(review), "--mask", "brush"], capsys)
    assert code == 0, err
    tasks = json.loads(review.read_text())
    said = " ".join(out.split())
    assert tasks and f"{len(tasks)} review task(s) for Label Studio: {review}" in said, out
    kinds = {region["type"] for task in tasks for region in task["annotations"][0]["result"]}
    assert "brushlabels" in kinds and "polygonlabels" not in kinds
    assert "polygon cannot hold" not in said
    assert f"{model} finds under 50% of the labels of" in said  # the test model finds few


def test_review_tasks_say_which_labels_a_polygon_cuts_and_brush_keeps_them_whole(
    clean: Path, tmp_path: Path
) -> None:
    """A desk and its drawer unit, a lamp's head and stand: one label, several parts. A polygon holds
    only the largest, so a polygon review pulled back loses the rest: the run names those labels, and
    `--mask brush` writes every label's mask exactly (no note then)."""
    from officescore.curate.labelstudio import labels_a_polygon_cuts
    from officescore.label.formats import read_tasks, result_regions

    model = write_checkpoint(tmp_path / "m.pt", favour={"desk": 3.0, "chair": 2.5})
    review = tmp_path / "review.json"
    run = run_audit(clean, model=model, device="cpu", out=tmp_path / "run", labelstudio=review)
    split = load_split(clean, "train")
    reviewed = {int(t["data"]["image_id"]) for t in read_tasks(review)}
    cut = labels_a_polygon_cuts(split, reviewed)
    lost = []  # what the polygon tasks, pulled back, would lose: over 2 % of a label's pixels
    for task in read_tasks(review):
        labels = [lab for lab in split.by_id()[task["data"]["image_id"]].labels if not lab.iscrowd]
        for region, label in zip(result_regions(task["annotations"][0]["result"]), labels, strict=True):
            own, kept = (masklib.decode(m).astype(bool) for m in (label.rle, region.mask))
            lost += [label.id] if (own & ~kept).sum() > 0.02 * own.sum() else []
    assert cut and sorted(cut) == sorted(lost)
    (note,) = [n for n in run.notes if "polygon cannot hold" in n]
    assert note.startswith(f"{len(cut)} label(s)") and f"ids {cut[0]}" in note and "--mask brush" in note
    brush = run_audit(
        clean, model=model, device="cpu", out=tmp_path / "run2", labelstudio=review, mask="brush"
    )
    assert not [n for n in brush.notes if "polygon" in n]
    for task in read_tasks(review):
        labels = [lab for lab in split.by_id()[task["data"]["image_id"]].labels if not lab.iscrowd]
        regions = result_regions(task["annotations"][0]["result"])
        for region, label in zip(regions, labels, strict=True):
            assert np.array_equal(masklib.decode(region.mask), masklib.decode(label.rle)), label.id
    with pytest.raises(ConfigError, match="--mask 'outline'"):
        run_audit(clean, model=model, device="cpu", out=tmp_path / "x", labelstudio=review, mask="outline")


def test_a_model_that_finds_few_labels_of_a_class_gets_a_note_naming_it() -> None:
    """An undertrained model (mAP 0.01) ranked 3414 issues on 363 labels with no word that it, not
    the labels, was the problem; a model finding most labels of every class gets no such note."""
    from officescore.curate.audit import weak_model_note
    from officescore.curate.scoring import Calibration

    def cal(recall: dict[str, float]) -> Calibration:
        return Calibration(recall, dict.fromkeys(recall, 0.9), dict.fromkeys(recall, 0.9))

    assert weak_model_note(cal({"desk": 0.9, "chair": 0.5}), "m.pt") == []
    (note,) = weak_model_note(cal({"desk": 0.9, "chair": 0.2, "lamp": 0.49}), "m.pt")
    assert note.startswith("m.pt finds under 50% of the labels of chair, lamp (score 0.5 or more)")
    (note,) = weak_model_note(cal({"desk": 0.1, "chair": 0.2}), "folds:2")
    assert "of every class" in note and "say more about the model than the labels" in note


def test_a_model_trained_on_more_classes_audits_the_data_sets_own(
    clean: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A model that knows the data set's classes and more (trained on COCO-mapped classes, a subset
    labelled): its other classes are background to the data set, left out with a note."""
    classes = load_split(clean, "all").classes
    model = write_checkpoint(
        tmp_path / "more.pt", favour={"desk": 3.0, "cat": 3.0}, classes=[*classes[:2], "cat", *classes[2:]]
    )
    out = tmp_path / "run"
    code, stdout, err = _cli(
        ["audit", str(clean), "--model", str(model), "--device", "cpu", "--out", str(out), "--json"], capsys
    )
    assert code == 0, err
    doc = json.loads(stdout)
    note = f"{model} also knows cat, which the data set does not label"
    assert len(_others(doc["notes"])) == 1 and _others(doc["notes"])[0].startswith(note)
    predictions = json.loads((out / "predictions.json").read_text())
    names = [classes[p["category_id"] - 1] for p in predictions]  # the data set's ids
    assert "desk" in names and {p["category_id"] for p in predictions} <= set(range(1, len(classes) + 1))
    assert json.loads((out / "issues.json").read_text())["notes"] == doc["notes"]
    for shown in ([], ["--conventions"]):  # the issue table, or the convention report alone
        code, stdout, _ = _cli(
            ["audit", str(clean), "--model", str(model), "--device", "cpu", "--out", str(out), *shown], capsys
        )
        assert code == 0 and "also knows cat" in stdout


def test_a_run_trained_on_the_data_set_gets_a_note_where_it_learnt_the_photos(
    clean: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run whose args.json names this data set (relative to the run folder, as train writes it)
    learnt its train photos: a note says so for --split train and all, none for val or another set."""
    run = tmp_path / "runs" / "train" / "train"
    model = write_checkpoint(run / "weights" / "best.pt", favour={"desk": 3.0})
    (run / "args.json").write_text(json.dumps({"data": os.path.relpath(clean, run)}))
    note = f"{run} trained on {clean}'s train photos and calls its own training labels fine"

    def notes(dataset: Path, model: Path, split: str) -> list[str]:
        args = ["audit", str(dataset), "--model", str(model), "--device", "cpu", "--split", split]
        code, out, err = _cli([*args, "--out", str(tmp_path / "audit"), "--json"], capsys)
        assert code == 0, err
        return _others(json.loads(out)["notes"])

    for split in ("train", "all"):
        said = notes(clean, run, split)  # the run folder, as `--model runs/train/train`
        assert len(said) == 1 and said[0].startswith(note), said
    assert notes(clean, model, "train")[0].startswith(f"{model} trained on {clean}'s train photos")
    assert notes(clean, run, "val") == []
    other = tmp_path / "other"
    shutil.copytree(clean, other)
    assert notes(other, run, "train") == []
    assert not trained_on("coco", clean)  # the zero-shot model, which has no file to look beside
    (tmp_path / "coco").mkdir()
    monkeypatch.chdir(tmp_path)
    assert not trained_on("coco", clean)  # nor beside a folder of that name (no best.pt in it)


def test_cli_bad_inputs_are_one_line_errors(
    clean: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = write_checkpoint(tmp_path / "m.pt")
    other = write_checkpoint(tmp_path / "other.pt", favour={"desk": 3.0}, classes=["desk", "cat"])
    out = tmp_path / "never"
    cases = [
        (["audit", str(tmp_path), "--model", str(model)], "not an officescore data set"),
        (["audit", str(clean), "--model", str(other)], "has cat which the data set does not"),
        (["audit", str(clean), "--model", str(model), "--folds", "2"], "not both"),
        (["audit", str(clean)], "--model M"),
        (["audit", str(clean), "--folds", "1"], "--folds 1"),
        (["audit", str(clean), "--model", str(model), "--split", "test"], "--split 'test'"),
        (["audit", str(clean), "--model", str(model), "--min-score", "1.5"], "--min-score 1.5"),
        (["audit", str(clean), "--folds", "2", "--train-args", str(tmp_path / "no.json")], "no such file"),
        (["audit", str(clean), "--model", str(model), "--min-score", "-0.1"], "--min-score -0.1"),
        (["audit", str(clean), "--model", str(model), "--mask", "rectangle"], "--mask 'rectangle'"),
    ]
    for args, expected in cases:
        code, _, err = _cli([*args, "--device", "cpu", "--out", str(out)], capsys)
        assert code == 2 and len(err.splitlines()) == 1 and expected in err, (args, err)
    code, _, err = _cli(
        ["audit", str(clean), "--model", str(other), "--device", "cpu", "--out", str(out)], capsys
    )
    assert "lacks chair" in err  # says which classes differ
    assert not out.exists()  # nothing half-written


def test_folds_offline_say_how_to_train_without_pretrained_weights(
    clean: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`audit --folds` (COCO weights by default) offline: the advice names audit's own way to train
    from scratch, --train-args, not train's --weights, which audit does not have."""
    import urllib.error

    def offline(url: str, *args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("network unreachable (test)")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no cached weights
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    code, _, err = _cli(
        ["audit", str(clean), "--folds", "2", "--device", "cpu", "--out", str(tmp_path / "a")], capsys
    )
    assert code == 2 and err.count("error:") == 1, err
    assert '"weights": "none" in --train-args' in err and "--weights none" not in err, err


def test_folds_with_a_damaged_weights_file_say_so(
    clean: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A weights file placed by hand (as the offline advice says) that is cut short: its own advice,
    delete it and download again, not a crash while audit rewords the offline advice."""
    from torchvision.models.detection import MaskRCNN_ResNet50_FPN_V2_Weights

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    name = Path(MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1.url).name
    cached = tmp_path / "torch" / "hub" / "checkpoints" / name
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"PK\x03\x04 cut short")
    code, _, err = _cli(
        ["audit", str(clean), "--folds", "2", "--device", "cpu", "--out", str(tmp_path / "a")], capsys
    )
    assert code == 2 and err.count("error:") == 1, err
    assert "is unreadable" in err and "delete it and download" in err, err


def test_cli_a_photo_that_no_longer_decodes_is_named_once(
    clean: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = tmp_path / "dataset"
    shutil.copytree(clean, dataset)
    photo = sorted((dataset / "images").iterdir())[0]
    photo.unlink()  # a hard link to the clean set's photo: replace it, never write through it
    photo.write_bytes(b"")
    model = write_checkpoint(tmp_path / "m.pt")
    args = ["audit", str(dataset), "--model", str(model), "--split", "all", "--device", "cpu"]
    code, _, err = _cli([*args, "--out", str(tmp_path / "never")], capsys)
    last = err.splitlines()[-1]  # after the progress line
    assert code == 2 and last.startswith("error:") and "Traceback" not in err, err
    assert last.count(photo.name) == 1 and "empty file" in last and "re-run `officescore ingest`" in last


def test_cli_defaults_match_the_library() -> None:
    from officescore.cli.audit import audit as cli_audit

    library = inspect.signature(run_audit).parameters
    cli = inspect.signature(cli_audit).parameters
    for name in ("split", "name", "min_score", "device", "batch_size"):
        assert cli[name].default.default == library[name].default, name
