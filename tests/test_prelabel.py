"""`officescore prelabel`: COCO for CVAT / Roboflow / ingest, Label Studio tasks; inputs; bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from labelmodels import edge_model, one_torch_thread, run, solid_checkpoint, write_photos  # noqa: F401 (fixture)
from scrapefolder import scrape_folder

from officescore import masks as masklib
from officescore.files import sha256_file
from officescore.label.formats import LabelSchema, result_regions

CLASSES = ("desk", "chair", "monitor")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("prelabel")
    model = solid_checkpoint(
        base / "runs" / "train" / "first" / "weights" / "best.pt", {"desk": 8.0}, CLASSES
    )
    write_photos(base / "photos", n=3)
    return {"base": base, "model": model, "photos": base / "photos"}


def _predictions(model: Path, photos: list[Path]) -> list:
    from officescore.infer import Predictor

    return Predictor.load(model, device="cpu", conf=0.3).predict(photos)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum()) / float((a | b).sum())


@pytest.mark.parametrize("mask", ["polygon", "brush"])
def test_coco_output_is_read_by_pycocotools_and_ingest(
    setup: dict[str, Path], mask: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pycocotools.coco import COCO

    from officescore.ingest import ingest_export

    out = tmp_path / "pre.json"
    args = ["prelabel", str(setup["photos"]), "--model", str(setup["model"]), "--out", str(out)]
    code, stdout, _ = run([*args, "--mask", mask, "--device", "cpu", "--json"], capsys)
    assert code == 0
    summary = json.loads(stdout)
    assert summary["format"] == "coco" and summary["images"] == 3 and summary["config"] is None
    assert summary["model_version"].startswith("first-best-")

    coco = COCO(str(out))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(CLASSES)
    photos = sorted(setup["photos"].glob("*.jpg"))
    expected = _predictions(setup["model"], photos)
    assert len(coco.getAnnIds()) == summary["detections"] == sum(len(r.detections) for r in expected) > 0
    by_name = {img["file_name"]: img for img in coco.loadImgs(coco.getImgIds())}
    assert set(by_name) == {p.name for p in photos}  # relative to the photos' folder
    for photo, result in zip(photos, expected, strict=True):
        image = by_name[photo.name]
        assert image["sha256"] == sha256_file(photo)
        assert (image["width"], image["height"]) == (result.width, result.height) == (128, 96)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=image["id"]))
        assert [a["score"] for a in anns] == [round(d.score, 4) for d in result.detections]
        for ann, det in zip(anns, result.detections, strict=True):
            assert coco.loadCats(ann["category_id"])[0]["name"] == det.class_name
            got, want = coco.annToMask(ann).astype(bool), masklib.decode(det.mask).astype(bool)
            assert iou(got, want) >= (1.0 if mask == "brush" else 0.9)
            assert isinstance(ann["segmentation"], list if mask == "polygon" else dict)
            assert ann["area"] == int(got.sum())

    result = ingest_export(out, images_dir=setup["photos"], out=tmp_path / "dataset", val_fraction=0.34)
    counts = result.counts
    assert counts["train"]["images"] + counts["val"]["images"] == 3
    assert counts["train"]["annotations"] + counts["val"]["annotations"] == summary["detections"]
    assert result.classes == ["desk"]  # ingest keeps the classes that were labelled


@pytest.mark.parametrize("mask", ["polygon", "brush"])
def test_masks_at_the_photo_edges_are_ingested_without_problems(
    setup: dict[str, Path], mask: str, tmp_path: Path
) -> None:
    """Masks touching every edge (tips, sides, corners, the whole photo) written as COCO and read
    back by ingest: no point past the edge, so no `outside_image` problem (68 of them before, from
    8 photos of a 3-epoch model)."""
    from officescore.ingest import ingest_export
    from officescore.label.prelabel import prelabel

    out = tmp_path / "pre.json"
    written = prelabel([setup["photos"]], edge_model(CLASSES), out, mask=mask)
    assert written.images == 3 and written.detections == 3 * 8
    coco = json.loads(out.read_text())
    sizes = {img["id"]: (img["width"], img["height"]) for img in coco["images"]}
    for ann in coco["annotations"]:
        width, height = sizes[ann["image_id"]]
        if mask == "polygon":
            (ring,) = ann["segmentation"]
            assert all(
                0 <= x <= width and 0 <= y <= height for x, y in zip(ring[::2], ring[1::2], strict=True)
            )
        else:
            assert ann["segmentation"]["size"] == [height, width]
    result = ingest_export(out, images_dir=setup["photos"], out=tmp_path / "dataset", val_fraction=0.34)
    assert [p for p in result.problems if p.kind == "outside_image"] == []
    counts = result.counts
    assert counts["train"]["annotations"] + counts["val"]["annotations"] == len(coco["annotations"]) == 24


@pytest.mark.parametrize("fmt", ["coco", "labelstudio"])
def test_the_count_said_is_the_count_written(setup: dict[str, Path], tmp_path: Path, fmt: str) -> None:
    """A detection whose mask has no pixel at the photo's size (a weak one's can) gets no region, and
    the summary ("wrote X: N detection(s)") counts the regions written, not the detections."""
    from officescore.infer.detection import Detection
    from officescore.label.prelabel import prelabel

    loaded = edge_model(CLASSES)
    predict = loaded.predictor.predict

    def with_an_empty_mask(paths: list[Path], **kwargs: object) -> list:
        results = predict(paths, **kwargs)
        for r in results:
            empty = masklib.encode(np.zeros((r.height, r.width), np.uint8))
            r.detections.append(Detection("desk", 0.35, [0, 0, 1, 1], empty, 0.0))
        return results

    loaded.predictor.predict = with_an_empty_mask  # type: ignore[method-assign]
    out = tmp_path / "pre.json"
    written = prelabel([setup["photos"]], loaded, out, fmt=fmt)
    data = json.loads(out.read_text())
    if fmt == "coco":
        regions = len(data["annotations"])
    else:
        regions = sum(1 for t in data for r in t["predictions"][0]["result"] if r["type"] == "polygonlabels")
    assert written.detections == regions == 3 * 8


def test_labelstudio_output_tasks_and_config(
    setup: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ls" / "tasks.json"
    args = ["prelabel", str(setup["photos"] / "*.jpg"), "--model", str(setup["base"] / "runs" / "train")]
    code, stdout, _ = run([*args, "--format", "labelstudio", "--out", str(out), "--device", "cpu"], capsys)
    assert code == 0 and "tasks.label_config.xml" in stdout
    schema = LabelSchema.from_config((tmp_path / "ls" / "tasks.label_config.xml").read_text())
    assert schema.classes == CLASSES and schema.mask == "polygon"
    tasks = json.loads(out.read_text())
    photos = sorted(setup["photos"].glob("*.jpg"))
    assert [t["data"]["image"] for t in tasks] == [f"/data/local-files/?d={p.name}" for p in photos]
    for task, photo, result in zip(tasks, photos, _predictions(setup["model"], photos), strict=True):
        assert not Path(task["data"]["path"]).is_absolute()  # relative to the tasks file
        assert (out.parent / task["data"]["path"]).resolve() == photo.resolve()
        assert task["data"]["sha256"] == sha256_file(photo)
        (pred,) = task["predictions"]
        assert pred["model_version"] == json.loads(json.dumps(pred))["model_version"].strip()
        assert (
            pred["model_version"].startswith("first-best-")
            and len(pred["model_version"]) == len("first-best-") + 8
        )
        regions = result_regions(pred["result"])
        assert [r.class_name for r in regions] == [d.class_name for d in result.detections]
        for region, det in zip(regions, result.detections, strict=True):
            assert iou(masklib.decode(region.mask).astype(bool), masklib.decode(det.mask).astype(bool)) >= 0.9

    # A URL prefix and brush masks
    code, _, _ = run(
        [*args, "--format", "labelstudio", "--out", str(out), "--device", "cpu", "--mask", "brush"]
        + ["--url-prefix", "http://files.local/photos/", "--image-root", str(setup["base"])],
        capsys,
    )
    assert code == 0
    tasks = json.loads(out.read_text())
    assert tasks[0]["data"]["image"] == "http://files.local/photos/photos/scene_0.jpg"
    assert {r["type"] for t in tasks for r in t["predictions"][0]["result"]} == {"brushlabels"}
    assert "<BrushLabels" in (tmp_path / "ls" / "tasks.label_config.xml").read_text()


def test_scrape_folder_brings_licence_and_source(
    setup: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from officescore.scrape.providers import SearchResult

    raw = tmp_path / "raw"
    photos = write_photos(raw / "images", n=2)
    found = [
        SearchResult(
            url=f"https://img.example/{n}.jpg",
            landing_page=f"https://example/{n}",
            license="by",
            creator=f"Ann {n}",
        )
        for n in range(3)
    ]
    scrape_folder(raw, [*photos, None], found)  # the third result was never downloaded: not an image
    out = tmp_path / "tasks.json"
    code, text, _ = run(
        ["prelabel", str(raw), "--model", str(setup["model"]), "--format", "labelstudio", "--out", str(out)],
        capsys,
    )
    assert code == 0 and "note:" not in text  # every photo the scrape kept is there: no deleted-photos note
    data = [t["data"] for t in json.loads(out.read_text())]
    assert [(d["creator"], d["license"], d["landing_page"]) for d in data] == [
        ("Ann 0", "by", "https://example/0"),
        ("Ann 1", "by", "https://example/1"),
    ]
    assert [d["image"] for d in data] == [f"/data/local-files/?d={p.name}" for p in photos]


def test_photos_deleted_from_a_read_only_scrape_folder_are_left_out_with_a_note(
    setup: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Weeding bad photos out of data/raw/images by hand made prelabel and label push refuse the
    whole folder ("no such image file"); and a scrape folder that cannot be written (a mount,
    another user's) was opened to write. Deleted photos are left out and named in a note."""
    from readonly import imitate_read_only

    raw = (tmp_path / "raw").resolve()
    photos = write_photos(raw / "images", n=3)
    scrape_folder(raw, photos)
    photos[1].unlink()
    imitate_read_only(monkeypatch, raw)
    before = sorted((p.name, p.read_bytes()) for p in raw.rglob("*") if p.is_file())
    out = tmp_path / "tasks.json"
    base = [
        "prelabel",
        str(raw),
        "--model",
        str(setup["model"]),
        "--format",
        "labelstudio",
        "--out",
        str(out),
    ]
    code, text, _ = run(base, capsys)
    assert code == 0
    note = "note: 1 photo(s) the scrape kept are no longer on disk (deleted by hand?), left out:"
    assert f"{note} {photos[1].name}" in " ".join(text.split())
    assert [t["data"]["image"].rsplit("=", 1)[1] for t in json.loads(out.read_text())] == [
        photos[0].name,
        photos[2].name,
    ]
    code, text, _ = run([*base, "--json"], capsys)
    assert code == 0 and json.loads(text)["deleted"] == [str(photos[1])]
    assert sorted((p.name, p.read_bytes()) for p in raw.rglob("*") if p.is_file()) == before
    photos[0].unlink(), photos[2].unlink()
    code, _, err = run(base, capsys)
    assert code == 2 and "no photos in this scrape folder (none kept, or deleted since)" in err


def test_an_empty_scrape_folder_among_others_is_skipped_with_a_note(
    setup: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One scrape folder per query, and one query found nothing: prelabel refused all of them. The
    empty folder is skipped with a note (as `select` skips it); only all empty is an error."""
    desks, lamps, mugs = tmp_path / "desks", tmp_path / "lamps", tmp_path / "mugs"
    photos = write_photos(desks / "images", n=2)
    scrape_folder(desks, photos)
    lamps.mkdir(), mugs.mkdir()
    scrape_folder(lamps, [None, None])  # found, never downloaded
    scrape_folder(mugs, [None])
    out = tmp_path / "tasks.json"
    base = ["prelabel", "--model", str(setup["model"]), "--format", "labelstudio", "--out", str(out)]
    code, text, err = run([*base, str(desks), str(lamps)], capsys)
    assert code == 0, err
    note = f"note: skipped 1 scrape folder(s) with no photos (none kept, or deleted since): {lamps}"
    assert note in " ".join(text.split())
    assert len(json.loads(out.read_text())) == 2
    code, text, _ = run([*base, str(desks), str(lamps), "--json"], capsys)
    assert code == 0 and json.loads(text)["skipped_folders"] == [str(lamps)]
    out.unlink()
    code, _, err = run([*base, str(lamps), str(mugs)], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and not out.exists()
    assert f"{lamps}, {mugs}: no photos in these scrape folders (none kept, or deleted since)" in err


def test_bad_inputs_are_one_line_errors(
    setup: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, photos = str(setup["model"]), str(setup["photos"])
    cases = [
        (
            ["--format", "xml", "--out", str(tmp_path / "a.json")],
            "--format xml: use one of coco, labelstudio",
        ),
        (["--out", str(tmp_path / "a.txt")], "give a .json file name"),
        (["--out", str(tmp_path), "--mask", "polygon"], "give a .json file name"),
        (
            ["--mask", "ellipse", "--out", str(tmp_path / "a.json")],
            "--mask ellipse: use one of polygon, brush",
        ),
        (["--conf", "1.5", "--out", str(tmp_path / "a.json")], "--conf 1.5: must be between 0 and 1"),
    ]
    for extra, message in cases:
        code, _, err = run(["prelabel", photos, "--model", model, *extra], capsys)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, (extra, err)
    code, _, err = run(
        ["prelabel", str(tmp_path / "nope.jpg"), "--model", model, "--out", str(tmp_path / "a.json")], capsys
    )
    assert code == 2 and "nope.jpg: no such image file" in err
    (tmp_path / "empty").mkdir()
    code, _, err = run(
        ["prelabel", str(tmp_path / "empty"), "--model", model, "--out", str(tmp_path / "a.json")], capsys
    )
    assert code == 2 and "no images in this folder" in err
    code, _, err = run(
        ["prelabel", photos, "--model", str(tmp_path / "empty"), "--out", str(tmp_path / "a.json")], capsys
    )
    said = f"--model {tmp_path / 'empty'}: a folder with no weights/best.pt in it or its runs; pass a model"
    assert code == 2 and said in err, err
    code, _, err = run(
        ["prelabel", photos, "--model", str(tmp_path / "x.pt"), "--out", str(tmp_path / "a.json")], capsys
    )
    assert code == 2 and "--model " in err and "x.pt: no such model file" in err
    (tmp_path / "notimage.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "partial.json"
    code, _, err = run(
        ["prelabel", photos, str(tmp_path / "notimage.jpg"), "--model", model, "--out", str(out)], capsys
    )
    assert code == 2 and "1 photo(s) could not be read" in err
    assert len(json.loads(out.read_text())["images"]) == 3  # the good photos are still written
    assert not list(tmp_path.glob("a.*"))  # nothing written for the refused runs


@pytest.mark.parametrize("fmt", ["coco", "labelstudio"])
def test_no_readable_photo_keeps_the_previous_output(
    setup: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    out = tmp_path / "prelabel.json"
    args = ["prelabel", "--model", str(setup["model"]), "--out", str(out), "--format", fmt]
    assert run([*args, str(setup["photos"])], capsys)[0] == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    (tmp_path / "cut.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut off")
    (tmp_path / "empty.png").write_bytes(b"")
    code, _, err = run([*args, str(tmp_path / "cut.jpg"), str(tmp_path / "empty.png")], capsys)
    errors = [line for line in err.splitlines() if line.startswith("error:")]  # after the progress line
    assert code == 2 and len(errors) == 1, err
    assert "none of the 2 photo(s) could be read" in err and "cut.jpg" in err and "not written" in err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name in before} == before


def test_a_model_trained_by_the_backend_prelabels_as_the_backend_suggests(
    setup: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A labeller who prelabels a batch with a `label backend --train` model and then labels with the
    backend saw two rules: prelabel kept every detection with class score >= 0.3, the backend those
    with class x mask score² at the model's own threshold. Without --conf, prelabel now uses the
    threshold the job left in the run folder (scores written are suggestion scores); --conf is the
    class score, as in the backend."""
    from officescore.label.predict import SUGGEST_FILE, model_version, suggestion_score

    model = solid_checkpoint(
        tmp_path / "runs" / "label-job0001" / "weights" / "best.pt", {"desk": 8.0}, CLASSES
    )
    photos = sorted(setup["photos"].iterdir())
    detections = [d for r in _predictions(model, photos) for d in r.detections]
    suggested = sorted(suggestion_score(d.score, d.mask_score) for d in detections)
    own = suggested[len(suggested) // 2]  # half of them below it, every class score far above it
    assert min(d.score for d in detections) > 0.9 > own
    record = {"model_version": model_version(model), "conf": own, "by_mask": True}
    (model.parent.parent / SUGGEST_FILE).write_text(json.dumps(record))
    out = tmp_path / "prelabel.json"
    args = ["prelabel", str(setup["photos"]), "--model", str(model), "--mask", "brush", "--out", str(out)]
    code, said, err = run([*args, "--device", "cpu"], capsys)
    assert code == 0, err
    assert f"(suggests class x mask score² >= {own:.2f})" in " ".join(said.split())
    scores = sorted(a["score"] for a in json.loads(out.read_text())["annotations"])
    assert scores == pytest.approx([s for s in suggested if s >= own], abs=1e-4)
    code, said, err = run([*args, "--device", "cpu", "--conf", "0.3", "--json"], capsys)
    assert code == 0, err
    assert json.loads(said)["threshold"] == {"conf": 0.3, "by_mask": False}
    assert len(json.loads(out.read_text())["annotations"]) == len(detections)
    record["model_version"] = "label-job0001-best-00000000"  # written for weights replaced since
    (model.parent.parent / SUGGEST_FILE).write_text(json.dumps(record))
    code, said, err = run([*args, "--device", "cpu", "--json"], capsys)
    assert code == 0, err
    assert json.loads(said)["threshold"] == {"conf": 0.3, "by_mask": False}


def test_cli_defaults_match_the_library() -> None:
    import inspect

    from officescore.cli import label as label_cli
    from officescore.cli import prelabel as prelabel_cli
    from officescore.label import backend, client, prelabel

    def defaults(function: object) -> dict[str, object]:
        return {
            n: getattr(p.default, "default", p.default)
            for n, p in inspect.signature(function).parameters.items()
        }

    pre = defaults(prelabel_cli.prelabel)
    # conf None: the model's own threshold (a `label backend --train` job's), else DEFAULT_CONF
    assert pre["conf"] is None and pre["fmt"] == prelabel.COCO and pre["mask"] == prelabel.POLYGON
    assert defaults(prelabel.prelabel)["conf"] is None
    push, pull, serve = defaults(label_cli.push), defaults(label_cli.pull), defaults(label_cli.backend)
    assert push["url"] == pull["url"] == serve["url"] == client.DEFAULT_URL
    assert push["conf"] is None and push["mask"] == prelabel.POLYGON
    assert serve["conf"] is None  # each trained model's own threshold, else DEFAULT_CONF (test_label_cli)
    assert serve["port"] == backend.DEFAULT_PORT and serve["host"] == backend.DEFAULT_HOST


def test_prelabel_with_no_model_writes_no_suggestions_and_says_so(
    setup: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--model none` (no model yet: an empty file to label by hand) wrote its file and then ended
    in "unexpected error: AttributeError" while reporting the threshold a model-less run has not."""
    out = tmp_path / "empty.json"
    args = ["prelabel", str(setup["photos"]), "--model", "none", "--out", str(out)]
    code, said, err = run([*args, "--json"], capsys)
    assert code == 0, err
    assert json.loads(said)["threshold"] is None
    assert json.loads(out.read_text())["annotations"] == []
    code, said, err = run(args, capsys)
    assert code == 0 and "suggests nothing" in said, err


def test_a_threshold_of_0_suggests_every_detection(
    setup: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "all.json"
    args = ["prelabel", str(setup["photos"]), "--model", str(setup["model"]), "--out", str(out)]
    code, said, err = run([*args, "--device", "cpu", "--conf", "0", "--json"], capsys)
    assert code == 0, err
    assert json.loads(said)["threshold"] == {"conf": 0.0, "by_mask": False} and out.is_file()
