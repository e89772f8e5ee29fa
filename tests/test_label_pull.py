"""`label pull` without Label Studio: a stand-in client hands `pull_project` an export as Label
Studio's JSON export lists it, and the photos come from --local-root. Which annotation of a task
counts, and regions stored at another photo size. Against the real server: test_label_studio.py."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from labelmodels import polygon_region, run, write_photos

from officescore import masks as masklib
from officescore.errors import BadImageError
from officescore.label.client import Project
from officescore.label.formats import LabelSchema, annotation
from officescore.label.pull import labels_until, pull_project

CLASSES = ("desk", "chair", "monitor")
WIDTH, HEIGHT = 128, 96  # write_photos' size


class StandIn:
    """The calls `pull_project` makes of `officescore.label.client.LabelStudio`."""

    url = "http://127.0.0.1:1"

    def __init__(self, tasks: list[dict[str, Any]], config: str | None = None) -> None:
        self.tasks = tasks
        self.config = config or LabelSchema(CLASSES).config_xml()

    def project(self, title: str) -> Project:
        return Project(1, title, LabelSchema.from_config(self.config), self.config)

    def export_tasks(self, project_id: int) -> list[dict[str, Any]]:
        return json.loads(json.dumps(self.tasks))

    def download(self, url: str, task_id: int | None = None) -> bytes:
        raise AssertionError(f"{url} is a local file: nothing is downloaded")


def test_pull_keeps_the_last_saved_annotation_and_rescales_what_it_can(tmp_path: Path) -> None:
    """Task 1: an annotation created first but updated last (a chair) beats one created later (a
    desk), and a skip made after both is no annotation. Task 2: stored at 2x the width and 3x the
    height the photo has: its polygon is rescaled per axis and so is its brush mask (resized pixel by
    pixel). Task 3: nobody labelled it."""
    photos = write_photos(tmp_path / "root" / "photos", n=3)
    refs = [f"/data/local-files/?d=photos/{p.name}" for p in photos]
    square = [[10, 10], [40, 10], [40, 40], [10, 40]]
    triangle = [[50, 20], [90, 30], [60, 80]]
    big = np.zeros((3 * HEIGHT, 2 * WIDTH), np.uint8)
    big[30:60, 20:80] = 1  # rows 10-20 and columns 10-40 of the photo
    brush = annotation(
        [{"category": "monitor", "segmentation": masklib.encode(big)}],
        2 * WIDTH,
        3 * HEIGHT,
        LabelSchema(CLASSES, "brush"),
    )["result"]
    tasks = [
        {
            "id": 1,
            "data": {"image": refs[0]},
            "annotations": [
                {
                    "id": 11,
                    "created_at": "2026-12-04T10:00:00Z",
                    "updated_at": "2026-12-04T10:30:00Z",
                    "result": [polygon_region(triangle, "chair", WIDTH, HEIGHT)],
                },
                {
                    "id": 12,
                    "created_at": "2026-12-04T10:10:00Z",
                    "updated_at": "2026-12-04T10:10:00Z",
                    "result": [polygon_region(square, "desk", WIDTH, HEIGHT)],
                },
                {"id": 13, "created_at": "2026-12-04T11:00:00Z", "result": [], "was_cancelled": True},
            ],
        },
        {
            "id": 2,
            "data": {"image": refs[1]},
            "annotations": [
                {
                    "id": 21,
                    "created_at": "2026-12-04T10:00:00Z",
                    "result": [polygon_region(square, "desk", 2 * WIDTH, 3 * HEIGHT), *brush],
                },
                {"id": 22, "created_at": "2026-12-04T09:00:00Z", "result": [], "was_cancelled": True},
            ],
        },
        {"id": 3, "data": {"image": refs[2]}, "annotations": []},
    ]
    pulled = pull_project(StandIn(tasks), "offices", tmp_path / "pull", local_root=tmp_path / "root")  # type: ignore[arg-type]
    assert (pulled.images, pulled.annotations, pulled.unlabelled) == (2, 3, 1)
    # Task 1 was labelled twice (skips are no labels): said, since the older desk is left out.
    assert pulled.several == 1 and pulled.to_dict()["several"] == 1
    coco = json.loads(pulled.export.read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    assert [(im["id"], im["width"], im["height"]) for im in coco["images"]] == [
        (1, WIDTH, HEIGHT),
        (2, WIDTH, HEIGHT),
    ]
    first, second, third = coco["annotations"]
    assert (first["image_id"], names[first["category_id"]]) == (1, "chair")
    assert first["segmentation"][0] == pytest.approx(pixels(triangle), abs=0.01)
    assert (second["image_id"], names[second["category_id"]]) == (2, "desk")
    assert second["segmentation"][0] == pytest.approx(pixels(square), abs=0.01)
    assert (third["image_id"], names[third["category_id"]]) == (2, "monitor")
    expected = np.zeros((HEIGHT, WIDTH), bool)
    expected[10:20, 10:40] = True
    assert (masklib.decode(third["segmentation"]).astype(bool) == expected).all()
    assert third["bbox"] == [10, 10, 30, 10] and third["area"] == 300


def test_a_photo_in_two_labelled_tasks_is_pulled_once_with_the_newest_labels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """One photo imported twice (tasks 1 and 5, as a hand import next to a push makes it): both were
    labelled. The export held the photo twice with contradicting labels (a desk in one copy, a chair
    in the other), so the model learnt each as background of the other. It is written once, with the
    labels of the task annotated last, and the note names both tasks."""
    from officescore.cli import label as label_cli

    photos = write_photos(tmp_path / "root" / "photos", n=2)
    same, other = (f"/data/local-files/?d=photos/{p.name}" for p in photos)
    square = [[10, 10], [40, 10], [40, 40], [10, 40]]

    def task(task_id: int, ref: str, label: str, updated: str) -> dict[str, Any]:
        region = polygon_region(square, label, WIDTH, HEIGHT)
        annotations = [{"id": task_id, "updated_at": updated, "result": [region]}]
        return {"id": task_id, "data": {"image": ref}, "annotations": annotations}

    tasks = [
        task(1, same, "desk", "2026-12-04T10:00:00Z"),
        task(2, other, "monitor", "2026-12-04T09:00:00Z"),
        task(5, same, "chair", "2026-12-04T11:00:00Z"),
    ]
    monkeypatch.setattr(label_cli, "_client", lambda url: StandIn(tasks))
    argv = ["label", "pull", "--project", "offices", "--out", str(tmp_path / "pull")]
    code, out, err = run([*argv, "--local-root", str(tmp_path / "root")], capsys)
    said = " ".join(out.split())
    assert code == 0, err
    assert "is in tasks 1, 5; the labels of task 5 counted" in said and "task(s) 1 not" in said
    coco = json.loads((tmp_path / "pull" / "annotations.json").read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    assert [(im["id"], im["file_name"]) for im in coco["images"]] == [
        (2, f"images/{photos[1].name}"),
        (5, f"images/5-{photos[0].name}"),
    ]
    assert sorted(p.name for p in (tmp_path / "pull" / "images").iterdir()) == [
        f"5-{photos[0].name}",
        photos[1].name,
    ]
    assert [(a["image_id"], names[a["category_id"]]) for a in coco["annotations"]] == [
        (2, "monitor"),
        (5, "chair"),
    ]
    # Annotated last wins whichever task id is older: task 1 relabelled after task 5.
    tasks[0]["annotations"][0]["updated_at"] = "2026-12-04T12:00:00Z"
    pulled = pull_project(StandIn(tasks), "offices", tmp_path / "pull", local_root=tmp_path / "root")  # type: ignore[arg-type]
    assert pulled.to_dict()["duplicates"] == [
        {"photo": f"images/{photos[0].name}", "tasks": [1, 5], "counted": 1}
    ]
    assert (pulled.images, pulled.annotations) == (2, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pull", "root"]  # the earlier pull is gone


def test_a_photo_uploaded_twice_under_two_names_is_one_photo(tmp_path: Path) -> None:
    """Pushed twice, a photo is two uploads with two addresses (Label Studio prefixes each upload's
    name): the same bytes are the same photo, written once with the labels annotated last."""
    import shutil

    photo = write_photos(tmp_path / "root" / "photos", n=1)[0]
    shutil.copy(photo, photo.with_name(f"0a1b2c3d-{photo.name}"))
    square = [[10, 10], [40, 10], [40, 40], [10, 40]]
    tasks = [
        {
            "id": task_id,
            "data": {"image": f"/data/local-files/?d=photos/{name}"},
            "annotations": [
                {
                    "id": task_id,
                    "updated_at": updated,
                    "result": [polygon_region(square, label, WIDTH, HEIGHT)],
                }
            ],
        }
        for task_id, name, label, updated in [
            (1, photo.name, "desk", "2026-12-04T10:00:00Z"),
            (2, f"0a1b2c3d-{photo.name}", "chair", "2026-12-04T11:00:00Z"),
        ]
    ]
    pulled = pull_project(StandIn(tasks), "offices", tmp_path / "pull", local_root=tmp_path / "root")  # type: ignore[arg-type]
    assert (pulled.images, pulled.annotations) == (1, 1)
    assert [(d["tasks"], d["counted"]) for d in pulled.duplicates] == [([1, 2], 2)]
    assert len(list((tmp_path / "pull" / "images").iterdir())) == 1


def pixels(points: list[list[float]]) -> list[float]:
    """Percent points as flat pixel coordinates of the photo."""
    return [v for x, y in points for v in (x * WIDTH / 100.0, y * HEIGHT / 100.0)]


def test_pull_writes_rectangles_as_ignore_regions_and_says_what_it_left_out(tmp_path: Path) -> None:
    """A box tool the project owner added in the UI (or a review task's ignore tag): its rectangles
    were left out without a word. They are ignore regions (iscrowd 1, the rectangle turned as drawn:
    Label Studio turns it about its top-left corner); an ellipse is left out and said. The smart
    tools' keypoints and boxes (click to mask) are pointers, not labels: neither."""
    photos = write_photos(tmp_path / "root" / "photos", n=1)
    config = (
        LabelSchema(CLASSES, interactive=True)
        .config_xml()
        .replace(
            "</View>",
            '<RectangleLabels name="boxes" toName="image"><Label value="desk"/></RectangleLabels>'
            '<EllipseLabels name="rounds" toName="image"><Label value="desk"/></EllipseLabels></View>',
        )
    )

    def region(kind: str, tag: str, label: str, **value: float) -> dict[str, Any]:
        where = {"x": 10.0, "y": 10.0, "width": 25.0, "height": 50.0, **value, kind: [label]}
        return {"id": f"{tag}{label}", "type": kind, "from_name": tag, "to_name": "image", "value": where,
                "original_width": WIDTH, "original_height": HEIGHT}  # fmt: skip

    result = [
        polygon_region([[10, 10], [40, 10], [40, 40]], "chair", WIDTH, HEIGHT),
        region("rectanglelabels", "boxes", "desk"),
        region("rectanglelabels", "boxes", "monitor", x=50.0, rotation=90.0),
        region("ellipselabels", "rounds", "desk"),
        region("rectanglelabels", "box", "desk"),  # the smart box a labeller drew to get a mask
        {**region("keypointlabels", "click", "desk"), "is_positive": True},
    ]
    tasks = [
        {
            "id": 1,
            "data": {"image": f"/data/local-files/?d=photos/{photos[0].name}"},
            "annotations": [{"id": 1, "result": result}],
        }
    ]
    pulled = pull_project(StandIn(tasks, config), "offices", tmp_path / "pull", local_root=tmp_path / "root")  # type: ignore[arg-type]
    assert (pulled.annotations, pulled.ignore_regions) == (3, 2)
    assert pulled.skipped == {"rounds (ellipselabels)": 1}
    assert (
        pulled.to_dict()["skipped"] == {"rounds (ellipselabels)": 1}
        and pulled.to_dict()["ignore_regions"] == 2
    )
    coco = json.loads(pulled.export.read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    boxes = {names[a["category_id"]]: a for a in coco["annotations"] if a["iscrowd"] == 1}
    # 25 % x 50 % of 128 x 96 from (12.8, 9.6): 32 x 48 pixels
    assert boxes["desk"]["bbox"] == pytest.approx([13, 10, 32, 48], abs=1)
    # turned 90 degrees clockwise about (64, 9.6): 48 wide to the left of x = 64, 32 down
    assert boxes["monitor"]["bbox"] == pytest.approx([16, 10, 48, 32], abs=1)
    assert [a["iscrowd"] for a in coco["annotations"] if names[a["category_id"]] == "chair"] == [0]
    # a hand-made smart box (smartOnly="true"): a pointer too, not an ignore region
    only = config.replace(
        'name="box" toName="image" smart="true"', 'name="box" toName="image" smartOnly="true"'
    )
    assert 'smartOnly="true"' in only
    again = pull_project(StandIn(tasks, only), "offices", tmp_path / "again", local_root=tmp_path / "root")  # type: ignore[arg-type]
    assert (again.annotations, again.ignore_regions) == (3, 2)


def test_pull_ingest_grows_a_data_set_with_its_own_split_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`label pull --ingest` after each labelling session is the loop that keeps photos in their
    split, but it has no --seed or --val-fraction: a data set first ingested with others was
    re-split with the defaults, and the summary said nothing of kept photos (only `ingest` did)."""
    from officescore.cli import label as label_cli
    from officescore.cli import main

    photos = write_photos(tmp_path / "root" / "photos", n=6)
    square = [[10, 10], [40, 10], [40, 40], [10, 40]]

    def task(k: int, labelled: bool) -> dict[str, Any]:
        result = [polygon_region(square, CLASSES[k % 2], WIDTH, HEIGHT)] if labelled else []
        annotations = [{"id": k, "result": result}] if labelled else []
        return {
            "id": k + 1,
            "data": {"image": f"/data/local-files/?d=photos/{photos[k].name}"},
            "annotations": annotations,
        }

    def pull(labelled: int, *extra: str) -> str:
        tasks = [task(k, k < labelled) for k in range(6)]
        monkeypatch.setattr(label_cli, "_client", lambda url: StandIn(tasks))
        argv = ["label", "pull", "--project", "offices", "--out", str(tmp_path / "pull")]
        with pytest.raises(SystemExit) as exit_info:
            main([*argv, "--local-root", str(tmp_path / "root"), *extra])
        said = " ".join(capsys.readouterr().out.split())
        assert exit_info.value.code == 0, said
        return said

    dataset = tmp_path / "dataset"
    pull(4)
    first = ["ingest", str(tmp_path / "pull" / "annotations.json"), "--out", str(dataset), "--no-plot"]
    with pytest.raises(SystemExit):
        main([*first, "--seed", "3", "--val-fraction", "0.5"])
    before = _splits(dataset)
    assert list(before.values()).count("val") == 2
    said = pull(6, "--ingest", str(dataset))  # a second session labelled two more photos
    after = _splits(dataset)
    assert {name: after[name] for name in before} == before
    meta = json.loads((dataset / "dataset.json").read_text())
    assert (meta["seed"], meta["val_fraction"], list(after.values()).count("val")) == (3, 0.5, 3)
    assert "kept 4 photo(s) in the split the earlier ingest gave them" in said
    assert "replaced" not in said


def _splits(dataset: Path) -> dict[str, str]:
    """Original file name -> split of every photo in the data set."""
    return {
        image["original_file_name"]: split
        for split in ("train", "val")
        for image in json.loads((dataset / f"{split}.json").read_text())["images"]
    }


def test_labels_until_is_the_newest_label_by_its_last_change_on_label_studios_clock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A label's time is its updated_at (a correction), else created_at; a time with no zone is UTC,
    as Label Studio writes it, whatever the puller's zone; a skip or an unreadable time is no label."""
    monkeypatch.setenv("TZ", "America/New_York")  # a puller far from UTC
    time.tzset()
    try:
        tasks = [
            {
                "annotations": [
                    {"id": 1, "created_at": "2026-01-01T09:00:00Z", "updated_at": "2026-01-01T12:00:00Z"}
                ]
            },
            {"annotations": [{"id": 2, "created_at": "2026-01-01T11:00:00"}]},
            {"annotations": [{"id": 3, "created_at": "2026-01-01T13:00:00Z", "was_cancelled": True}]},
            {"annotations": [{"id": 4, "created_at": "not a time"}]},
            {"annotations": []},
        ]
        utc = timezone.utc
        assert labels_until(tasks) == datetime(2026, 1, 1, 12, tzinfo=utc).timestamp()
        assert labels_until(tasks[1:]) == datetime(2026, 1, 1, 11, tzinfo=utc).timestamp()
        assert labels_until(tasks[2:]) is None
    finally:
        monkeypatch.undo()  # the zone this process had
        time.tzset()


SQUARE = [[10, 10], [40, 10], [40, 40], [10, 40]]


def labelled(task_id: int, ref: str, *results: dict[str, Any], **data: str) -> dict[str, Any]:
    """A task (photo `ref`, extra `data`) with one annotation holding `results`."""
    annotations = [{"id": task_id, "result": list(results)}]
    return {"id": task_id, "data": {"image": ref, **data}, "annotations": annotations}


class Serving(StandIn):
    """A stand-in that serves each task's photo, as Label Studio does what --local-root lacks."""

    def __init__(self, tasks: list[dict[str, Any]], served: dict[int, bytes]) -> None:
        super().__init__(tasks)
        self.served, self.asked = served, []

    def download(self, url: str, task_id: int | None = None) -> bytes:
        self.asked.append(task_id)
        return self.served[task_id]


def test_pull_names_photos_after_the_task_and_reads_only_inside_the_local_root(tmp_path: Path) -> None:
    """A task's `name` names its file (a .jpg suffix added when it has none); a local-files address
    outside --local-root (`..`) or missing below it is downloaded from Label Studio, not read from
    disk (nor a FileNotFoundError)."""
    (photo,) = write_photos(tmp_path / "root" / "photos", n=1)
    _, outside, served_2, served_3 = write_photos(tmp_path / "elsewhere", n=4)  # scenes 1-3: other bytes
    desk = polygon_region(SQUARE, "desk", WIDTH, HEIGHT)
    tasks = [
        labelled(1, f"/data/local-files/?d=photos/{photo.name}", desk, name="desk corner"),
        labelled(2, f"/data/local-files/?d=../elsewhere/{outside.name}", desk),
        labelled(3, "/data/local-files/?d=photos/gone.jpg", desk),
    ]
    client = Serving(tasks, {2: served_2.read_bytes(), 3: served_3.read_bytes()})
    pull_project(client, "offices", tmp_path / "pull", local_root=tmp_path / "root")  # type: ignore[arg-type]
    assert client.asked == [2, 3]
    images = tmp_path / "pull" / "images"
    assert {p.name: p.read_bytes() for p in images.iterdir()} == {
        "desk_corner.jpg": photo.read_bytes(),
        outside.name: served_2.read_bytes(),
        "gone.jpg": served_3.read_bytes(),
    }


@pytest.mark.parametrize("names", [("Desk.jpg", "desk.jpg"), ("desk.jpg", "Desk.jpg")])
def test_two_photos_whose_names_differ_only_in_case_are_two_files(
    tmp_path: Path, names: tuple[str, str]
) -> None:
    """Desk.jpg and desk.jpg are one file on macOS and Windows: the second is named after its task,
    whichever of the two comes first."""
    photos = write_photos(tmp_path / "root" / "photos", n=2)
    desk = polygon_region(SQUARE, "desk", WIDTH, HEIGHT)
    tasks = [
        labelled(task_id, f"/data/local-files/?d=photos/{p.name}", desk, name=name)
        for task_id, p, name in zip((4, 8), photos, names, strict=True)
    ]
    pulled = pull_project(StandIn(tasks), "offices", tmp_path / "pull", local_root=tmp_path / "root")  # type: ignore[arg-type]
    coco = json.loads(pulled.export.read_text())
    assert [im["file_name"] for im in coco["images"]] == [f"images/{names[0]}", f"images/8-{names[1]}"]


def test_pull_keeps_each_photos_task_and_licence_and_numbers_labels_across_photos(tmp_path: Path) -> None:
    """`label backend --train` finds a photo's task through `label_studio_task`; the licence and its
    source travel with the photo; annotation ids are unique over the whole export (ingest's rule)."""
    photos = write_photos(tmp_path / "root" / "photos", n=2)
    regions = [
        polygon_region(SQUARE, "desk", WIDTH, HEIGHT),
        polygon_region(SQUARE[:3], "chair", WIDTH, HEIGHT),
    ]
    licence = {
        "license": "CC BY 4.0",
        "license_url": "https://creativecommons.org/licenses/by/4.0/",
        "creator": "A. Person",
        "landing_page": "https://example.org/p",
    }
    tasks = [
        labelled(task_id, f"/data/local-files/?d=photos/{p.name}", *regions, **licence)
        for task_id, p in zip((7, 9), photos, strict=True)
    ]
    pulled = pull_project(StandIn(tasks), "offices", tmp_path / "pull", local_root=tmp_path / "root")  # type: ignore[arg-type]
    coco = json.loads(pulled.export.read_text())
    assert [(im["id"], im["label_studio_task"]) for im in coco["images"]] == [(7, 7), (9, 9)]
    assert all(im.items() >= licence.items() for im in coco["images"])
    assert [(a["id"], a["image_id"]) for a in coco["annotations"]] == [(1, 7), (2, 7), (3, 9), (4, 9)]


def test_a_photo_turned_by_its_exif_is_pulled_at_the_size_labellers_saw(tmp_path: Path) -> None:
    """A phone photo stored 128 x 96 with EXIF orientation 6 is shown, and labelled, 96 x 128: its
    entry has that size and its labels are not rescaled to the stored one."""
    from PIL import Image

    (photo,) = write_photos(tmp_path / "root" / "photos", n=1)
    with Image.open(photo) as image:
        exif = image.getexif()
        exif[0x0112] = 6  # turned 90 degrees clockwise when shown
        image.load()
    image.save(photo, exif=exif, quality=92)
    desk = polygon_region(SQUARE, "desk", HEIGHT, WIDTH)  # drawn on the 96 px wide photo shown
    tasks = [labelled(1, f"/data/local-files/?d=photos/{photo.name}", desk)]
    pulled = pull_project(StandIn(tasks), "offices", tmp_path / "pull", local_root=tmp_path / "root")  # type: ignore[arg-type]
    coco = json.loads(pulled.export.read_text())
    assert [(im["width"], im["height"]) for im in coco["images"]] == [(HEIGHT, WIDTH)]
    (label,) = coco["annotations"]
    shown = [v for x, y in SQUARE for v in (x * HEIGHT / 100.0, y * WIDTH / 100.0)]
    assert label["segmentation"][0] == pytest.approx(shown, abs=0.01)


def test_pull_into_an_empty_folder_and_the_later_of_two_annotations_saved_at_once(tmp_path: Path) -> None:
    """An empty --out made beforehand is a place to pull into, not "a folder with other files"; two
    annotations with the same time (saved in one second): the later one (higher id) counts."""
    (photo,) = write_photos(tmp_path / "root" / "photos", n=1)
    at = "2026-12-04T10:00:00Z"
    task = {
        "id": 1,
        "data": {"image": f"/data/local-files/?d=photos/{photo.name}"},
        "annotations": [
            {"id": 11, "updated_at": at, "result": [polygon_region(SQUARE, "desk", WIDTH, HEIGHT)]},
            {"id": 12, "updated_at": at, "result": [polygon_region(SQUARE, "chair", WIDTH, HEIGHT)]},
        ],
    }
    (tmp_path / "pull").mkdir()
    pulled = pull_project(StandIn([task]), "offices", tmp_path / "pull", local_root=tmp_path / "root")  # type: ignore[arg-type]
    coco = json.loads(pulled.export.read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    assert [names[a["category_id"]] for a in coco["annotations"]] == ["chair"]


@pytest.mark.usefixtures("ctrl_c_default")
@pytest.mark.parametrize("stage", ["pulling", "Checking images"])
def test_ctrl_c_says_what_the_pull_wrote(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], stage: str
) -> None:
    """A real SIGINT while pulling, or while --ingest checks the pulled photos: one line says what was
    written (Typer's exit 130 said nothing), and what was not is as it was."""
    import os
    import signal

    from officescore.cli import common
    from officescore.cli import label as label_cli

    photos = write_photos(tmp_path / "root" / "photos", n=2)
    square = [[10, 10], [40, 10], [40, 40], [10, 40]]
    tasks = [
        {
            "id": k + 1,
            "data": {"image": f"/data/local-files/?d=photos/{photo.name}"},
            "annotations": [{"id": k + 1, "result": [polygon_region(square, "desk", WIDTH, HEIGHT)]}],
        }
        for k, photo in enumerate(photos)
    ]
    monkeypatch.setattr(label_cli, "_client", lambda url: StandIn(tasks))
    started = common.CliReporter.stage

    def ctrl_c_at_the_stage(self: common.CliReporter, description: str, total: int | None = None) -> Any:
        if description.startswith(stage):
            os.kill(os.getpid(), signal.SIGINT)  # Python's handler raises at the next bytecode, here
        return started(self, description, total)

    monkeypatch.setattr(common.CliReporter, "stage", ctrl_c_at_the_stage)
    pulled, dataset = tmp_path / "pull", tmp_path / "dataset"
    argv = ["label", "pull", "--project", "offices", "--out", str(pulled), "--ingest", str(dataset)]
    code, _, err = run([*argv, "--local-root", str(tmp_path / "root")], capsys)
    assert code == 130 and not dataset.exists()
    said = [line for line in err.splitlines() if line.strip()][-1]
    if stage == "pulling":
        assert said == "stopped (Ctrl-C); nothing written; --out is as it was" and not pulled.exists()
    else:
        export = pulled / "annotations.json"
        assert said == f"stopped (Ctrl-C); wrote {export}; the --ingest data set is as it was"
        assert export.is_file()


@pytest.mark.parametrize(
    "older, newer",
    [
        ("2026-12-06T10:00:00Z", "2026-12-06T10:00:00.500000Z"),  # a whole second sorted after its half
        ("2026-12-06T11:00:00+01:00", "2026-12-06T10:30:00Z"),  # 10:00 UTC, written with an offset
        ("", "2026-12-06T09:00:00Z"),  # no time: older than any
    ],
)
def test_the_latest_annotation_is_the_newest_by_time_not_by_text(older: str, newer: str) -> None:
    """Two annotations of one task: the later one wins whatever the text of its time; the older one
    has the higher id, so only the time can pick the right one."""
    from officescore.label.pull import latest_annotation

    task = {"annotations": [{"id": 2, "updated_at": newer}, {"id": 9, "updated_at": older}]}
    assert latest_annotation(task)["id"] == 2
    same = {"annotations": [{"id": 2, "updated_at": newer}, {"id": 9, "updated_at": newer}]}
    assert latest_annotation(same)["id"] == 9  # the same time: the later id


def test_a_photo_without_a_name_is_named_after_the_file_its_address_names(tmp_path: Path) -> None:
    """A task made in Label Studio's own page has no `name`: its photo is named as the labeller's
    file was, without the 8 hex digits Label Studio puts before each upload, and a full local-files
    URL (`http://host/data/local-files/?d=...`) by the file it names, not "local-files"."""
    photos = write_photos(tmp_path / "elsewhere", n=2)
    desk = polygon_region(SQUARE, "desk", WIDTH, HEIGHT)
    tasks = [
        labelled(3, "/data/upload/4/0a1b2c3d-desk%20corner.jpg", desk),
        labelled(4, "http://127.0.0.1:8080/data/local-files/?d=photos%2Fwindow%20seat.jpg", desk),
    ]
    client = Serving(tasks, {3: photos[0].read_bytes(), 4: photos[1].read_bytes()})
    pulled = pull_project(client, "offices", tmp_path / "pull")  # type: ignore[arg-type]
    coco = json.loads(pulled.export.read_text())
    assert [im["file_name"] for im in coco["images"]] == ["images/desk_corner.jpg", "images/window_seat.jpg"]


def test_a_label_the_config_lost_is_a_class_of_its_own_after_the_configs(tmp_path: Path) -> None:
    """A class taken out of the labelling config after labelling (its labels stay in the tasks) is
    kept under its own name, with the next category id (COCO ids 1..K, as ingest numbers them)."""
    (photo,) = write_photos(tmp_path / "root" / "photos", n=1)
    lamp, chair = (
        polygon_region(SQUARE[:n], label, WIDTH, HEIGHT) for n, label in ((4, "lamp"), (3, "chair"))
    )
    tasks = [labelled(1, f"/data/local-files/?d=photos/{photo.name}", lamp, chair)]
    pulled = pull_project(StandIn(tasks), "offices", tmp_path / "pull", local_root=tmp_path / "root")  # type: ignore[arg-type]
    coco = json.loads(pulled.export.read_text())
    assert [(c["id"], c["name"]) for c in coco["categories"]] == [
        (1, "desk"),
        (2, "chair"),
        (3, "monitor"),
        (4, "lamp"),
    ]
    assert [a["category_id"] for a in coco["annotations"]] == [4, 2] and pulled.classes[-1] == "lamp"


def test_a_region_stored_at_another_height_only_is_rescaled(tmp_path: Path) -> None:
    """Label Studio stored the photo 2x as high as it is now (cropped or resized since), its width
    the same: the polygon is still rescaled to the photo, not written at the old height."""
    (photo,) = write_photos(tmp_path / "root" / "photos", n=1)
    desk = polygon_region(SQUARE, "desk", WIDTH, 2 * HEIGHT)
    tasks = [labelled(1, f"/data/local-files/?d=photos/{photo.name}", desk)]
    pulled = pull_project(StandIn(tasks), "offices", tmp_path / "pull", local_root=tmp_path / "root")  # type: ignore[arg-type]
    (label,) = json.loads(pulled.export.read_text())["annotations"]
    assert label["segmentation"][0] == pytest.approx(pixels(SQUARE), abs=0.01)


def test_a_photo_in_the_cache_is_not_downloaded_again(tmp_path: Path) -> None:
    """The backend's jobs pull the same project again and again: each photo is downloaded once, then
    linked from the cache (test_label_studio.py checks it against the real server, slowly)."""
    (photo,) = write_photos(tmp_path / "elsewhere", n=1)
    desk = polygon_region(SQUARE, "desk", WIDTH, HEIGHT)
    client = Serving([labelled(3, "/data/upload/4/0a1b2c3d-desk.jpg", desk)], {3: photo.read_bytes()})
    for out in ("first", "second"):
        pull_project(client, "offices", tmp_path / out, cache=tmp_path / "cache")  # type: ignore[arg-type]
        assert (tmp_path / out / "images" / "desk.jpg").read_bytes() == photo.read_bytes()
    assert client.asked == [3]


def test_a_photo_named_as_another_is_renamed_is_kept_apart_from_it(tmp_path: Path) -> None:
    """Task 1's photo is named 3-desk.jpg; tasks 2 and 3 both desk.jpg, so task 3's becomes
    3-desk.jpg too: it overwrote task 1's photo, whose labels then lay on task 3's photo."""
    photos = write_photos(tmp_path / "root" / "photos", n=3)
    desk = polygon_region(SQUARE, "desk", WIDTH, HEIGHT)
    tasks = [
        labelled(task_id, f"/data/local-files/?d=photos/{p.name}", desk, name=name)
        for task_id, p, name in zip((1, 2, 3), photos, ("3-desk.jpg", "desk.jpg", "desk.jpg"), strict=True)
    ]
    pulled = pull_project(StandIn(tasks), "offices", tmp_path / "pull", local_root=tmp_path / "root")  # type: ignore[arg-type]
    names = [im["file_name"] for im in json.loads(pulled.export.read_text())["images"]]
    assert len(set(names)) == 3
    for name, photo in zip(names, photos, strict=True):
        assert (tmp_path / "pull" / name).read_bytes() == photo.read_bytes()


def test_an_out_that_is_a_file_or_holds_other_files_is_refused_and_left_alone(tmp_path: Path) -> None:
    """--out is replaced by the pull: a file there, or a folder of other files, is the user's and
    is refused in a sentence, unchanged (a file was swapped for the pull's folder)."""
    from officescore.errors import ConfigError

    (photo,) = write_photos(tmp_path / "root" / "photos", n=1)
    tasks = [
        labelled(
            1, f"/data/local-files/?d=photos/{photo.name}", polygon_region(SQUARE, "desk", WIDTH, HEIGHT)
        )
    ]
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "notes.txt").write_text("mine")
    for out, said in (
        ("notes.txt", "is a file; give a folder"),
        ("folder", "a folder with other files in it"),
    ):
        with pytest.raises(ConfigError, match=said):
            pull_project(StandIn(tasks), "offices", tmp_path / out, local_root=tmp_path / "root")  # type: ignore[arg-type]
    assert (tmp_path / "notes.txt").read_text() == (tmp_path / "folder" / "notes.txt").read_text() == "mine"


def test_a_job_pull_leaves_out_unreadable_photos_and_tasks_it_is_told_to(tmp_path: Path) -> None:
    """The label backend's jobs: task 2's photo is not an image, task 3 is on the leave-out list.
    Both are left out, task 2 named with why, nothing of either is written, and task 3's label counts
    as seen (the backend must not count it as a label made since); a plain pull (`label
    pull`) stops at task 2 with the same one line, leaving no folder behind."""
    photos = write_photos(tmp_path / "root" / "photos", n=3)
    desk = polygon_region(SQUARE, "desk", WIDTH, HEIGHT)
    tasks = [labelled(t, f"/data/local-files/?d=photos/{p.name}", desk) for t, p in enumerate(photos, 1)]
    photos[1].write_bytes(b"\xff\xd8\xff\xe0 not a jpeg at all")
    tasks[2]["annotations"][0]["updated_at"] = "2026-12-06T10:00:00Z"  # the newest label: seen, if left out
    client = StandIn(tasks)
    pulled = pull_project(  # type: ignore[arg-type]
        client, "offices", tmp_path / "job", local_root=tmp_path / "root", leave_out=[3], skip_unreadable=True
    )
    assert list(pulled.unreadable) == [2] and pulled.unreadable[2].startswith(
        f"task 2: {photos[1].name} from Label Studio is not a readable image"
    )
    assert pulled.images == 1 and pulled.annotations == 1
    assert pulled.labels_until == datetime(2026, 12, 6, 10, tzinfo=timezone.utc).timestamp()
    coco = json.loads(pulled.export.read_text())
    assert [im["label_studio_task"] for im in coco["images"]] == [1]
    assert [p.name for p in (tmp_path / "job" / "images").iterdir()] == [photos[0].name]
    with pytest.raises(BadImageError, match="^task 2: .* not a readable image"):
        pull_project(client, "offices", tmp_path / "pull", local_root=tmp_path / "root")  # type: ignore[arg-type]
    assert not (tmp_path / "pull").exists()


def test_a_photo_that_was_not_an_image_is_downloaded_again_once_served(tmp_path: Path) -> None:
    """A job's pull finds task 3's download is not an image (a proxy's error page, a photo being
    replaced): it is left out, and not kept in the cache, so the next job, once Label Studio serves
    the photo, reads the photo rather than the page it cached."""
    (photo,) = write_photos(tmp_path / "elsewhere", n=1)
    desk = polygon_region(SQUARE, "desk", WIDTH, HEIGHT)
    client = Serving([labelled(3, "/data/upload/4/0a1b2c3d-desk.jpg", desk)], {3: b"<html>502</html>"})
    cache = tmp_path / "cache"
    first = pull_project(client, "offices", tmp_path / "first", cache=cache, skip_unreadable=True)  # type: ignore[arg-type]
    assert list(first.unreadable) == [3] and first.images == 0
    client.served[3] = photo.read_bytes()
    second = pull_project(client, "offices", tmp_path / "second", cache=cache, skip_unreadable=True)  # type: ignore[arg-type]
    assert second.unreadable == {} and second.images == 1 and client.asked == [3, 3]
