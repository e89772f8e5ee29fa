"""The data-set health report: numbers, `stats --json` schema, PNG, terminal rendering, errors."""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from exports import draw_scene, make_export, write_export
from PIL import Image
from rich.console import Console

from officescore.cli import main
from officescore.errors import DataError
from officescore.ingest import ingest_export
from officescore.ingest.health import health_report, save_health_plot, size_bucket


def _square(x: int, y: int, side: int) -> list[list[int]]:
    return [[x, y, x + side, y, x + side, y + side, x, y + side]]


# image name -> [(class id, x, y, side, iscrowd)]
LAYOUT: dict[str, list[tuple[int, int, int, int, int]]] = {
    "a.png": [(1, 0, 0, 20, 0), (2, 40, 40, 40, 0)],  # desk small, chair medium
    "b.png": [(1, 10, 10, 100, 0)],  # desk large
    "c.png": [],  # no annotations
    "d.png": [
        (2, 0, 0, 40, 0),
        (3, 60, 60, 20, 0),
        (3, 90, 90, 20, 0),
        (2, 50, 0, 30, 1),
    ],  # + a crowd region
}


def _export(root: Path) -> Path:
    images, annotations = [], []
    for index, (name, objects) in enumerate(LAYOUT.items()):
        draw_scene(root / "images" / name, 128, 128, [(x, y, s, s) for _, x, y, s, _ in objects], seed=index)
        images.append({"id": index + 1, "file_name": name, "width": 128, "height": 128})
        for category, x, y, side, crowd in objects:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": index + 1,
                    "category_id": category,
                    "segmentation": _square(x, y, side),
                    "bbox": [x, y, side, side],
                    "iscrowd": crowd,
                }
            )
    shutil.copy(root / "images" / "a.png", root / "images" / "a_copy.png")  # an exact duplicate
    images.append({"id": 9, "file_name": "a_copy.png", "width": 128, "height": 128})
    annotations.append({**annotations[0], "id": 99, "image_id": 9})
    annotations.append({**annotations[0], "id": 100, "segmentation": [[1, 2, 3]], "bbox": None})  # dropped
    categories = [{"id": i + 1, "name": n} for i, n in enumerate(("desk", "chair", "mug"))]
    return write_export(root, {"images": images, "annotations": annotations, "categories": categories})


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    ingest_export(_export(tmp_path), out=tmp_path / "dataset", val_fraction=0.0)
    return tmp_path / "dataset"


def test_size_buckets_follow_coco() -> None:
    assert [size_bucket(a) for a in (0, 1023, 1024, 9216, 9217)] == [
        "small",
        "small",
        "medium",
        "medium",
        "large",
    ]


def test_report_numbers(dataset: Path) -> None:
    report = health_report(dataset)
    train, val = report.splits["train"], report.splits["val"]
    assert report.classes == ["desk", "chair", "mug"]
    assert (train.images, train.instances, train.crowd) == (5, 7, 1)
    assert train.images_without_annotations == 1
    assert train.instances_per_image == {"min": 0, "mean": 1.4, "max": 3}
    assert train.images_per_class == {"desk": 3, "chair": 2, "mug": 1}
    assert train.instances_per_class == {"desk": 3, "chair": 2, "mug": 2}
    assert (val.images, val.instances, val.instances_per_image) == (0, 0, {"min": 0, "mean": 0.0, "max": 0})
    # side 20 -> ~400 px (small), 40 -> ~1600 (medium), 100 -> ~10000 (large); crowd not counted
    assert report.sizes == {
        "desk": {"small": 2, "medium": 0, "large": 1},
        "chair": {"small": 0, "medium": 2, "large": 0},
        "mug": {"small": 2, "medium": 0, "large": 0},
    }
    assert report.duplicate_groups == [["images/a.png", "images/a_copy.png"]]
    # a_copy.png is a.png byte for byte with one of its objects: the labels disagree
    assert report.problems_by_kind == {"polygon_odd": 1, "image_duplicate_labels_differ": 1}
    assert report.problem_count == 2
    assert report.dropped == {"images": 0, "annotations": 1}


def test_report_sums_over_a_split(tmp_path: Path) -> None:
    ingest_export(_export(tmp_path), out=tmp_path / "dataset", val_fraction=0.4, seed=1)
    report = health_report(tmp_path / "dataset")
    assert sum(s.images for s in report.splits.values()) == 5
    assert sum(s.instances for s in report.splits.values()) == 7
    assert report.splits["val"].images >= 1


def test_stats_json_schema_and_png(dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["stats", str(dataset), "--json"])
    assert exit_info.value.code == 0
    payload: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert set(payload) == {
        "dataset",
        "classes",
        "splits",
        "sizes",
        "duplicate_groups",
        "problems",
        "dropped",
        "attributes",
        "classes_without_objects",
        "plot",
    }
    assert payload["classes_without_objects"] == []
    assert set(payload["splits"]) == {"train", "val"}
    for stats in payload["splits"].values():
        assert set(stats) == {
            "images",
            "instances",
            "crowd",
            "images_without_annotations",
            "instances_per_image",
            "images_per_class",
            "instances_per_class",
        }
        assert set(stats["instances_per_image"]) == {"min", "mean", "max"}
        assert set(stats["images_per_class"]) == set(payload["classes"])
    assert all(set(v) == {"small", "medium", "large"} for v in payload["sizes"].values())
    assert payload["problems"] == {
        "total": 2,
        "by_kind": {"polygon_odd": 1, "image_duplicate_labels_differ": 1},
    }

    png = Path(payload["plot"])
    assert png == dataset / "health.png"
    with pytest.raises(SystemExit):
        main(["stats", str(dataset)])
    assert "".join(capsys.readouterr().out.split()).endswith(f"plot:{png}")  # said where it is
    with Image.open(png) as image:
        assert image.format == "PNG" and image.size == (1200, 450)
        image.verify()
    with Image.open(png) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
        assert colours is not None and len(colours) > 20  # bars, histogram and text were drawn


def test_stats_of_a_data_set_that_cannot_be_written(
    dataset: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read-only data set (a mount, another user's; imitated, as the tests may run as root) still
    gets its report; health.png is left out with one warning on stderr, --json stays pure."""
    from officescore.ingest import health

    def refuse(path: Path, write: Any) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(health, "atomic_write", refuse)
    for args in ([], ["--json"]):
        with pytest.raises(SystemExit) as exit_info:
            main(["stats", str(dataset), *args])
        captured = capsys.readouterr()
        assert exit_info.value.code == 0, captured.err
        assert "health.png not written (Permission denied); --no-plot leaves it out" in captured.err
        assert len(captured.err.strip().splitlines()) == 1
    assert json.loads(captured.out)["plot"] is None


def test_save_health_plot_with_no_instances(tmp_path: Path) -> None:
    export = write_export(tmp_path, make_export(tmp_path, n_images=3))
    ingest_export(export, out=tmp_path / "dataset", classes=["desk", "chair", "mug"])
    report = health_report(tmp_path / "dataset")
    for name in report.areas:
        report.areas[name] = []  # an empty histogram must still draw
    path = save_health_plot(report, tmp_path / "plot.png")
    with Image.open(path) as image:
        image.verify()


def test_a_class_nobody_labelled_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ingest --classes` may name a class of the export that has no objects: the data set keeps it
    (as asked), and its report says no split has one, once, in ingest's summary and in stats."""
    coco = make_export(tmp_path, n_images=4)
    coco["categories"].append({"id": 9, "name": "sofa"})
    export = write_export(tmp_path, coco)
    said = "no objects of sofa in any split: a model trained on this data set learns them as never there"
    out = tmp_path / "dataset"
    for args in (
        ["ingest", str(export), "--out", str(out), "--classes", "desk,chair,mug,sofa"],
        ["stats", str(out)],
    ):
        with pytest.raises(SystemExit) as exit_info:
            main([*args, "--no-plot"])
        printed = capsys.readouterr().out
        assert exit_info.value.code == 0 and printed.count(said) == 1, printed
    assert health_report(out).classes_without_objects == ["sofa"]
    with pytest.raises(SystemExit):
        main(["stats", str(out), "--json", "--no-plot"])
    assert json.loads(capsys.readouterr().out)["classes_without_objects"] == ["sofa"]
    from officescore.cli import stats as stats_cli

    buffer = io.StringIO()  # its 0 objects are red in train (nothing to learn) as in val
    monkeypatch.setattr(stats_cli, "console", Console(file=buffer, force_terminal=True, width=160))
    stats_cli.render_health(health_report(out))
    (row,) = [line for line in buffer.getvalue().splitlines() if "sofa" in line and "│" in line]
    assert row.count("\x1b[31m0") == 2, row


def test_a_class_labelled_only_in_val_is_not_said_to_have_no_objects(tmp_path: Path) -> None:
    """A rare class whose few objects all went to val: train has none of it, the data set has some."""
    out = tmp_path / "dataset"
    ingest_export(write_export(tmp_path, make_export(tmp_path, n_images=4)), out=out)
    train, val = (json.loads((out / f"{split}.json").read_text()) for split in ("train", "val"))
    names = {c["id"]: c["name"] for c in val["categories"]}
    rare = names[next(a["category_id"] for a in val["annotations"] if not a.get("iscrowd"))]
    train["annotations"] = [a for a in train["annotations"] if names[a["category_id"]] != rare]
    (out / "train.json").write_text(json.dumps(train))
    report = health_report(out)
    assert report.splits["train"].instances_per_class[rare] == 0
    assert report.classes_without_objects == []


def test_stats_rich_tables(dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["stats", str(dataset), "--no-plot"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for text in ("desk", "chair", "mug", "Splits", "duplicate groups: 1", "polygon_odd", "images/a_copy.png"):
        assert text in out
    assert "0 / 1.40 / 3" in out  # train's objects per photo: min / mean / max
    assert "no objects of" not in out  # every class has some
    assert not (dataset / "health.png").exists()


def _break(folder: Path, how: str) -> None:
    if how == "a_file":  # a JSON file where the data-set folder belongs
        folder.write_text("{}")
        return
    if how == "export_file":  # the export itself where the data-set folder belongs
        folder.write_text('{"images": [], "annotations": [], "categories": []}')
        return
    folder.mkdir(exist_ok=True)
    if how == "export_folder":  # `sample`'s or `label pull`'s folder: an export, not a data set
        (folder / "annotations.json").write_text('{"images": [], "annotations": [], "categories": []}')
    elif how == "run_folder":  # a training run's folder: its JSON is no export to ingest
        (folder / "args.json").write_text('{"data": "../../data/dataset", "epochs": 3}')
    elif how == "dataset_json_garbage":
        (folder / "dataset.json").write_text("{oops")
    elif how == "wrong_format":
        (folder / "dataset.json").write_text('{"format": "something-else"}')
    elif how == "train_missing":
        (folder / "train.json").unlink()
    elif how == "train_not_coco":
        (folder / "train.json").write_text('{"images": 3}')


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("missing", "no such data-set folder"),
        ("empty_folder", "dataset.json: missing"),
        ("a_file", "a file, not a data-set folder"),
        ("export_file", "a file, not a data-set folder; it is a labelling export: make a data set of it"),
        (
            "export_folder",
            "it holds an export (annotations.json): make a data set of it with `officescore ingest",
        ),
        ("run_folder", "dataset.json: missing"),
        ("dataset_json_garbage", "unreadable or not JSON"),
        ("wrong_format", "not an officescore data set"),
        ("train_missing", "train.json: missing"),
        ("train_not_coco", "train.json: not normalised COCO"),
    ],
)
def test_stats_on_bad_folder_exits_2(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], how: str, message: str
) -> None:
    folder = dataset if how.startswith("train") else tmp_path / "broken"
    if how != "missing":
        _break(folder, how)
    with pytest.raises(SystemExit) as exit_info:
        main(["stats", str(folder)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and "\n" not in err
    with pytest.raises(DataError):
        health_report(folder)


def test_problem_list_truncated_on_a_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from officescore.cli import stats as stats_cli

    problems = [
        {"image": f"img_{i}.jpg", "annotation": str(i), "kind": "k", "what": "wrong", "action": "dropped"}
        for i in range(45)
    ]
    buffer = io.StringIO()
    monkeypatch.setattr(stats_cli, "console", Console(file=buffer, force_terminal=True, width=120))
    stats_cli.render_problem_list(problems, tmp_path)
    text = re.sub(r"\x1b\[[0-9;]*m", "", buffer.getvalue())
    assert "img_29.jpg" in text and "img_30.jpg" not in text
    assert f"15 more in {tmp_path / 'dataset.json'}" in text

    buffer = io.StringIO()
    monkeypatch.setattr(stats_cli, "console", Console(file=buffer, force_terminal=False, width=120))
    stats_cli.render_problem_list(problems, tmp_path)
    assert "img_44.jpg" in buffer.getvalue() and "more in" not in buffer.getvalue()


def _table_rows(text: str) -> list[list[str]]:
    """The cells of each body row of the rich tables printed (box-drawn, no colour)."""
    return [[cell.strip() for cell in line.split("│")[1:-1]] for line in text.splitlines() if "│ " in line]


def test_stats_tables_put_each_number_in_its_column(monkeypatch: pytest.MonkeyPatch) -> None:
    """A report made by hand, every number different: each lands under its own heading."""
    from officescore.cli import stats as stats_cli
    from officescore.ingest.health import HealthReport, SplitStats

    def split(images: int, instances: int, crowd: int, empty: int) -> SplitStats:
        per_image = {"min": 0, "mean": instances / images, "max": 5}
        return SplitStats(
            images, instances, crowd, empty, per_image, {"chair": images - 1}, {"chair": instances}
        )

    report = HealthReport(
        dataset=Path("ds"),
        classes=["chair"],
        splits={"train": split(9, 21, 3, 2), "val": split(4, 6, 1, 0)},
        sizes={"chair": {"small": 11, "medium": 12, "large": 13}},
        areas={},
        duplicate_groups=[[f"images/{i}.jpg", f"images/{i}b.jpg"] for i in range(11)],
        problems_by_kind={},
        dropped={"images": 1, "annotations": 8},
        attributes={"chair": {"armrests": {"train": {"yes": 2, "unlabelled": 0}, "val": {"no": 1}}}},
    )
    buffer = io.StringIO()
    monkeypatch.setattr(stats_cli, "console", Console(file=buffer, force_terminal=False, width=160))
    stats_cli.render_health(report)
    text = buffer.getvalue()
    rows = _table_rows(text)
    assert ["chair", "8", "21", "3", "6", "11", "12", "13"] in rows  # per split images, objects; sizes
    assert ["train", "9", "21", "3", "2", "0 / 2.33 / 5"] in rows  # images, objects, crowd, empty
    assert ["chair", "armrests", "yes 2, unlabelled 0", "no 1"] in rows
    assert "images/9.jpg" in text and "images/10.jpg" not in text and "... 1 more" in text
    assert "duplicate groups: 11" in text and "dropped at ingest: 1 image(s), 8 annotation(s)" in text
    assert "problems: none" in text
    buffer.seek(0)
    buffer.truncate()
    problem = {"image": "a.jpg", "annotation": "", "kind": "k", "what": "no mask", "action": "ignore region"}
    stats_cli.render_problem_list([problem], Path("ds"))
    assert _table_rows(buffer.getvalue()) == [["a.jpg", "-", "no mask", "ignore region"]]
