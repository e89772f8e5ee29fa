"""The label loop against a real Label Studio (started once per session on 127.0.0.1, see
labelstudio_server.py): push with predictions, accept them as a labeller would, pull, ingest; the
ML backend as Label Studio itself calls it; prelabel files through Label Studio's import API;
and every error a user can cause."""

from __future__ import annotations

import json
import os
import shutil
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from labelmodels import (  # noqa: F401 (fixture)
    barely_trained,
    edge_model,
    one_torch_thread,
    polygon_region,
    run,
    solid_checkpoint,
    write_photos,
)
from labelstudio_server import EMAIL, PASSWORD, LabelStudioServer, logged_in_session

from officescore import DEFAULT_CLASSES
from officescore import masks as masklib
from officescore.label.client import LabelStudio, LabelStudioError
from officescore.label.formats import LabelSchema, result_regions

CLASSES = ("desk", "chair", "monitor")


@pytest.fixture
def key(labelstudio: LabelStudioServer, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", labelstudio.api_key)
    return labelstudio.api_key


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("label")
    return {
        "desk": solid_checkpoint(
            base / "runs" / "train" / "desk" / "weights" / "best.pt", {"desk": 8.0}, CLASSES
        ),
        "chair": solid_checkpoint(base / "chair.pt", {"chair": 8.0}, CLASSES, seed=1),
        "photos": write_photos(base / "photos", n=3)[0].parent,
        "base": base,
    }


# The round trip pushes a trained model's suggestions, which score low after a few epochs.
ROUND_TRIP_CONF = 0.1


@pytest.fixture(scope="module")
def trained(files: dict[str, Path]) -> Path:
    """The tiny, barely trained model (labelmodels.barely_trained), ~45 s on one busy core."""
    return barely_trained(files["base"] / "trained")


def one_ring(mask: np.ndarray) -> np.ndarray:
    """What a Label Studio polygon can hold of a mask: its largest part (8-connected), holes filled."""
    import cv2

    _, parts, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    part = parts == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    _, background = cv2.connectedComponents((~part).astype(np.uint8), connectivity=4)
    border = np.unique(np.concatenate([background[0], background[-1], background[:, 0], background[:, -1]]))
    return part | ((background > 0) & ~np.isin(background, border))


def client_for(server: LabelStudioServer) -> LabelStudio:
    return LabelStudio.connect(server.url, server.api_key)


def test_a_legacy_token_is_accepted_as_the_api_key(labelstudio: LabelStudioServer) -> None:
    """An admin turns legacy tokens on for the organisation (Label Studio 1.23 has them off by
    default), reads their legacy token, and the client works with it as with a personal token."""
    url = labelstudio.url
    session = logged_in_session(url, EMAIL, PASSWORD)
    headers = {"X-CSRFToken": session.cookies["csrftoken"], "Referer": f"{url}/"}

    def set_legacy(enabled: bool) -> None:
        response = session.post(
            f"{url}/api/jwt/settings",
            json={**before, "legacy_api_tokens_enabled": enabled},
            headers=headers,
            timeout=30,
        )
        assert response.status_code in (200, 201), f"{response.status_code} {response.text[:200]}"
        assert response.json()["legacy_api_tokens_enabled"] is enabled

    settings = session.get(f"{url}/api/jwt/settings", timeout=30)
    settings.raise_for_status()
    before = settings.json()
    token = session.get(f"{url}/api/current-user/token", timeout=30)
    token.raise_for_status()
    legacy = str(token.json()["token"])
    assert legacy and legacy != labelstudio.api_key and "." not in legacy  # not a JWT
    try:
        set_legacy(True)
        client = LabelStudio.connect(url, legacy)
        project = client.create_project("legacy token", LabelSchema(CLASSES))
        found = client.find_project("legacy token")
        assert found is not None and found.id == project.id
        set_legacy(False)  # the server now refuses it: it really was the legacy token at work
        with pytest.raises(LabelStudioError, match="refused the API key"):
            LabelStudio.connect(url, legacy)
    finally:
        set_legacy(bool(before["legacy_api_tokens_enabled"]))


def accept(client: LabelStudio, task_id: int) -> list[dict[str, Any]]:
    """What a labeller's "accept" does: the prediction's regions saved as the task's annotation."""
    (prediction,) = client.sdk.predictions.list(task=task_id)
    client.sdk.annotations.create(
        id=task_id,
        result=prediction.result,
        lead_time=2.5,
        request_options={"additional_body_parameters": {"parent_prediction": prediction.id}},
    )
    return list(prediction.result or [])


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum()) / float((a | b).sum())


def _predicted(model: Path, photos: list[Path], conf: float) -> tuple[list[str], dict[str, Any]]:
    from officescore.infer import Predictor

    predictor = Predictor.load(model, device="cpu", conf=conf)
    results = predictor.predict(photos)
    return predictor.classes, {p.name: r for p, r in zip(photos, results, strict=True)}


@pytest.mark.parametrize("mask", ["polygon", "brush"])
def test_push_accept_pull_ingest_round_trip(
    labelstudio: LabelStudioServer,
    key: str,
    files: dict[str, Path],
    trained: Path,
    mask: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    title = f"round trip {mask}"
    push = ["label", "push", str(files["photos"]), "--url", labelstudio.url, "--project", title]
    push += [
        "--model",
        str(trained),
        "--conf",
        str(ROUND_TRIP_CONF),
        "--mask",
        mask,
        "--device",
        "cpu",
        "--json",
    ]
    code, out, err = run(push, capsys)
    assert code == 0, err
    first = json.loads(out)
    assert (first["created"], first["added"], first["predictions"], first["already_there"]) == (True, 3, 3, 0)
    code, out, _ = run(push, capsys)  # again: nothing doubled
    second = json.loads(out)
    assert (second["created"], second["added"], second["already_there"]) == (False, 0, 3)

    client = client_for(labelstudio)
    tasks = sorted(client.export_tasks(first["project_id"]), key=lambda t: t["id"])
    assert len(tasks) == 3 and all(t["total_predictions"] == 1 for t in tasks)
    assert {t["data"]["name"] for t in tasks} == {"scene_0.jpg", "scene_1.jpg", "scene_2.jpg"}
    accepted = {
        tasks[0]["data"]["name"]: accept(client, tasks[0]["id"]),
        tasks[1]["data"]["name"]: accept(client, tasks[1]["id"]),
    }
    client.sdk.annotations.create(id=tasks[2]["id"], result=[], was_cancelled=True)  # the labeller skipped it
    assert all(accepted.values())  # the trained model suggested something on both accepted photos

    export = tmp_path / "export"
    code, out, err = run(
        ["label", "pull", "--url", labelstudio.url, "--project", title, "--out", str(export)]
        + ["--ingest", str(tmp_path / "dataset"), "--json"],
        capsys,
    )
    assert code == 0, err
    pulled = json.loads(out)
    n_regions = sum(len(result_regions(v)) for v in accepted.values())  # per-region choices are not regions
    assert (pulled["pull"]["images"], pulled["pull"]["annotations"], pulled["pull"]["unlabelled"]) == (
        2,
        n_regions,
        1,
    )
    ingested = pulled["ingest"]["counts"]
    assert ingested["train"]["images"] + ingested["val"]["images"] == 2
    assert [p for p in pulled["ingest"]["problems"] if p["kind"] == "outside_image"] == []
    assert ingested["train"]["annotations"] + ingested["val"]["annotations"] == n_regions

    model_classes, expected = _predicted(trained, [files["photos"] / n for n in accepted], ROUND_TRIP_CONF)
    coco = json.loads((export / "annotations.json").read_text())
    assert [c["name"] for c in coco["categories"]] == model_classes
    names = {img["id"]: Path(img["file_name"]).name for img in coco["images"]}
    assert set(names.values()) == set(accepted)
    for img in coco["images"]:  # the photos come back byte for byte
        assert (export / img["file_name"]).read_bytes() == (files["photos"] / names[img["id"]]).read_bytes()
    for img in coco["images"]:
        name = names[img["id"]]
        anns = [a for a in coco["annotations"] if a["image_id"] == img["id"]]
        regions = result_regions(accepted[name])
        detections = expected[name].detections
        assert len(anns) == len(regions) == len(detections)
        for ann, region, det in zip(anns, regions, detections, strict=True):
            assert coco["categories"][ann["category_id"] - 1]["name"] == region.class_name == det.class_name
            h, w = img["height"], img["width"]
            seg = ann["segmentation"]
            got = masklib.decode(masklib.from_polygons(seg, h, w) if isinstance(seg, list) else seg).astype(
                bool
            )
            assert iou(got, masklib.decode(region.mask).astype(bool)) >= 0.99  # what was accepted
            want = masklib.decode(det.mask).astype(bool)  # what the model said
            if mask == "brush":  # brush strokes hold any mask exactly
                assert iou(got, want) == 1.0
            else:  # a polygon holds one part without holes
                assert iou(got, one_ring(want)) >= 0.9

    # Pulling again replaces the folder: the same export, no leftovers beside it.
    code, _, _ = run(
        ["label", "pull", "--url", labelstudio.url, "--project", title, "--out", str(export)], capsys
    )
    assert code == 0 and json.loads((export / "annotations.json").read_text()) == coco
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset", "export"]


def test_push_stores_the_model_version_it_prints_and_never_the_key(
    labelstudio: LabelStudioServer, key: str, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """`label push --model --json`: every prediction Label Studio stored carries the model_version
    push printed (the name `label backend` and later pushes compare against), and the output holds
    no API key."""
    push = ["label", "push", str(files["photos"]), "--url", labelstudio.url, "--project", "model version"]
    code, out, err = run([*push, "--model", str(files["desk"]), "--device", "cpu", "--json"], capsys)
    assert code == 0, err
    assert key not in out and key not in err
    pushed = json.loads(out)
    version = pushed["model_version"]
    assert version.startswith("desk-best-") and pushed["predictions"] == 3
    stored = client_for(labelstudio).sdk.predictions.list(project=pushed["project_id"])  # one request
    assert len({p.task for p in stored}) == len(stored) == 3  # one per task
    assert {p.model_version for p in stored} == {version}


def _pixels(points: list[list[float]], width: int, height: int) -> list[float]:
    return [v for x, y in points for v in (x * width / 100.0, y * height / 100.0)]


def test_pull_takes_the_newest_annotation_rescales_per_axis_and_writes_no_key(
    labelstudio: LabelStudioServer,
    key: str,
    files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Three photos (128x96): the first annotated twice (a desk, then a chair instead), the second
    annotated at a stored size scaled 2x across and 3x down (Label Studio keeps the size the
    labeller's browser saw), the third not at all. Pull keeps the newer annotation, rescales each
    axis by its own factor, and writes the API key into no file and no output."""
    from officescore.label.push import push_images

    client = client_for(labelstudio)
    pushed = push_images(client, "pull checks", [files["photos"]], classes=list(CLASSES))
    tasks = sorted(client.export_tasks(pushed.project_id), key=lambda t: t["id"])
    assert [t["data"]["name"] for t in tasks] == ["scene_0.jpg", "scene_1.jpg", "scene_2.jpg"]
    width, height = 128, 96
    older, newer = [[10, 10], [40, 10], [40, 40], [10, 40]], [[50, 20], [90, 30], [60, 80]]
    client.sdk.annotations.create(id=tasks[0]["id"], result=[polygon_region(older, "desk", width, height)])
    client.sdk.annotations.create(id=tasks[0]["id"], result=[polygon_region(newer, "chair", width, height)])
    scaled = [[20, 10], [70, 25], [45, 90], [15, 60]]
    client.sdk.annotations.create(
        id=tasks[1]["id"], result=[polygon_region(scaled, "desk", 2 * width, 3 * height)]
    )

    export, dataset = tmp_path / "export", tmp_path / "dataset"
    pull = ["label", "pull", "--url", labelstudio.url, "--project", "pull checks", "--out", str(export)]
    code, out, err = run([*pull, "--ingest", str(dataset), "--json"], capsys)
    assert code == 0, err
    assert key not in out and key not in err
    assert json.loads(out)["pull"]["unlabelled"] == 1
    coco = json.loads((export / "annotations.json").read_text())
    by_name = {Path(im["file_name"]).name: im for im in coco["images"]}
    assert sorted(by_name) == ["scene_0.jpg", "scene_1.jpg"]
    assert all((im["width"], im["height"]) == (width, height) for im in coco["images"])
    names = {c["id"]: c["name"] for c in coco["categories"]}

    def pulled(photo: str) -> list[dict[str, Any]]:
        return [a for a in coco["annotations"] if a["image_id"] == by_name[photo]["id"]]

    (first,) = pulled("scene_0.jpg")  # the newer annotation's chair, not the older one's desk
    assert names[first["category_id"]] == "chair"
    assert first["segmentation"][0] == pytest.approx(_pixels(newer, width, height), abs=0.01)
    (second,) = pulled("scene_1.jpg")  # x scaled by 128/256, y by 96/288
    assert names[second["category_id"]] == "desk"
    assert second["segmentation"][0] == pytest.approx(_pixels(scaled, width, height), abs=0.02)

    for folder in (export, dataset):  # every file pull and ingest wrote, photos included
        written = [p for p in folder.rglob("*") if p.is_file()]
        assert written and not [p for p in written if key.encode() in p.read_bytes()]

    # the newest label pulled, by Label Studio's clock (`label backend --train` compares labels with it)
    from officescore.label.pull import pull_project

    newest = max(a["updated_at"] for t in client.export_tasks(pushed.project_id) for a in t["annotations"])
    when = pull_project(client, "pull checks", tmp_path / "again").labels_until
    assert when == datetime.fromisoformat(newest.replace("Z", "+00:00")).timestamp()


def test_pull_with_a_photo_cache_downloads_each_photo_once(
    labelstudio: LabelStudioServer, files: dict[str, Path], tmp_path: Path
) -> None:
    """What each `label backend --train` job does: pull the whole project again. With the backend's
    cache a photo is downloaded once, and every pull's copy is a link to the one cached file."""
    from officescore.label.pull import pull_project
    from officescore.label.push import push_images

    client = client_for(labelstudio)
    pushed = push_images(client, "pull cache", [files["photos"]], classes=list(CLASSES))
    tasks = sorted(client.export_tasks(pushed.project_id), key=lambda t: t["id"])
    square = [[10, 10], [40, 10], [40, 40], [10, 40]]
    downloads: list[str] = []
    download = client.download
    client.download = lambda ref, task_id=None: (downloads.append(ref), download(ref, task_id))[1]  # type: ignore[method-assign]
    cache = tmp_path / "photos"
    client.sdk.annotations.create(id=tasks[0]["id"], result=[polygon_region(square, "desk", 128, 96)])
    first = pull_project(client, "pull cache", tmp_path / "job-1", cache=cache)
    client.sdk.annotations.create(id=tasks[1]["id"], result=[polygon_region(square, "chair", 128, 96)])
    second = pull_project(client, "pull cache", tmp_path / "job-2", cache=cache)
    assert (first.images, second.images) == (1, 2)
    assert len(downloads) == len(set(downloads)) == 2  # the first photo was not fetched again
    cached = {p.stat().st_ino: p.read_bytes() for p in cache.iterdir()}
    pulled = [p for job in ("job-1", "job-2") for p in (tmp_path / job / "images").iterdir()]
    assert len(cached) == 2 and len(pulled) == 3
    assert all(cached.get(p.stat().st_ino) == p.read_bytes() for p in pulled)  # links, not copies
    by_name = {p.name: p.read_bytes() for p in files["photos"].iterdir()}
    assert all(by_name[p.name] == p.read_bytes() for p in pulled)  # the photos as pushed
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]  # no partial downloads left


def test_prelabel_files_are_accepted_by_label_studios_import(
    labelstudio: LabelStudioServer, key: str, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    # Photos inside the server's LOCAL_FILES_DOCUMENT_ROOT, tasks written with local-files references.
    shared = labelstudio.local_root / "batch1"
    shutil.copytree(files["photos"], shared)
    tasks_file = files["base"] / "prelabel" / "tasks.json"
    code, _, err = run(
        [
            "prelabel",
            str(shared),
            "--model",
            str(files["desk"]),
            "--format",
            "labelstudio",
            "--out",
            str(tasks_file),
        ]
        + ["--image-root", str(labelstudio.local_root), "--device", "cpu"],
        capsys,
    )
    assert code == 0, err
    tasks = json.loads(tasks_file.read_text())
    config = tasks_file.with_name("tasks.label_config.xml").read_text()

    # Straight into Label Studio's import API, as a user importing the file would.
    client = client_for(labelstudio)
    project = client.sdk.projects.create(title="prelabel import", label_config=config)
    client.add_local_storage(int(project.id), shared)
    response = client.sdk.projects.import_tasks(project.id, request=tasks, return_task_ids=True)
    assert response.task_count == 3 and response.prediction_count == 3
    stored = sorted(client.export_tasks(int(project.id)), key=lambda t: t["id"])
    assert [t["data"]["image"] for t in stored] == [
        f"/data/local-files/?d=batch1/scene_{i}.jpg" for i in range(3)
    ]
    served = client.download(stored[0]["data"]["image"])  # Label Studio serves the photo from disk
    assert served == (shared / "scene_0.jpg").read_bytes()
    predictions = client.sdk.predictions.list(task=stored[0]["id"])
    assert predictions[0].model_version == tasks[0]["predictions"][0]["model_version"]
    assert len(predictions[0].result) == len(tasks[0]["predictions"][0]["result"]) > 0

    # `label push --review` takes the same file (upload: no local-files storage needed), once.
    review = [
        "label",
        "push",
        "--review",
        str(tasks_file),
        "--url",
        labelstudio.url,
        "--project",
        "prelabel review",
    ]
    code, out, err = run([*review, "--json"], capsys)
    assert code == 0, err
    pushed = json.loads(out)
    assert (pushed["added"], pushed["predictions"]) == (3, 3)
    code, out, _ = run([*review, "--json"], capsys)
    assert (json.loads(out)["added"], json.loads(out)["already_there"]) == (0, 3)
    reviewed = client.export_tasks(pushed["project_id"])
    assert all(t["data"]["image"].startswith("/data/upload/") and "path" not in t["data"] for t in reviewed)

    # `label push --local-root`: no upload, Label Studio serves the photos from its document root.
    local = ["label", "push", str(shared), "--url", labelstudio.url, "--project", "local files"]
    code, out, err = run([*local, "--local-root", str(labelstudio.local_root), "--json"], capsys)
    assert code == 0, err
    assert client.project("local files").schema.classes == DEFAULT_CLASSES  # no model, no --classes
    stored = sorted(client.export_tasks(json.loads(out)["project_id"]), key=lambda t: t["id"])
    assert [t["data"]["image"] for t in stored] == [
        f"/data/local-files/?d=batch1/scene_{i}.jpg" for i in range(3)
    ]
    assert client.download(stored[2]["data"]["image"]) == (shared / "scene_2.jpg").read_bytes()
    code, _, err = run(
        [*local[:-1], "local files 2", "--local-root", str(shared), "--classes", "desk"], capsys
    )
    assert code == 2 and "serves no photos from its document root itself" in err


def test_push_checks_every_photo_before_uploading(
    labelstudio: LabelStudioServer,
    key: str,
    files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Without --model too: a truncated JPEG, random bytes named .jpg and a text file (through a
    glob) are listed and left out, the photos are pushed, and the exit code says something was
    skipped. Label Studio would otherwise show "There was an issue loading URL" with Submit active."""
    bad = tmp_path / "bad"
    bad.mkdir()
    good = files["photos"] / "scene_0.jpg"
    shutil.copy(good, bad / "good.jpg")
    (bad / "truncated.jpg").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    (bad / "random.jpg").write_bytes(np.random.default_rng(0).bytes(500))
    (bad / "notes.txt").write_text("not a photo\n")
    push = ["label", "push", "--url", labelstudio.url, "--project", "checked photos"]

    code, out, err = run([*push, str(bad)], capsys)  # the folder: .txt is not even a candidate
    assert code == 2, err
    assert out.startswith("pushed 1 photo(s) to created project 'checked photos'")
    assert len(out.splitlines()) == 1  # one line, however long, for logs and pipes
    assert "truncated.jpg: truncated or corrupt image" in err and "random.jpg: not an image" in err
    assert "2 photo(s) could not be read (listed above); the others were pushed" in err
    code, out, err = run([*push, str(bad / "*"), "--json"], capsys)  # the glob: notes.txt too
    assert code == 2
    again = json.loads(out)
    assert (again["added"], again["already_there"]) == (0, 1)
    assert sorted(Path(f["path"]).name for f in again["failed"]) == [
        "notes.txt",
        "random.jpg",
        "truncated.jpg",
    ]
    tasks = client_for(labelstudio).export_tasks(again["project_id"])
    assert [t["data"]["name"] for t in tasks] == ["good.jpg"]


def test_push_leaves_out_photos_deleted_from_a_scrape_folder(
    labelstudio: LabelStudioServer,
    key: str,
    files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A photo weeded out of data/raw/images by hand made push refuse the whole folder."""
    from scrapefolder import scrape_folder

    raw = tmp_path / "raw"
    shutil.copytree(files["photos"], raw / "images", ignore=shutil.ignore_patterns("scene_2.jpg"))
    scrape_folder(raw, sorted((raw / "images").iterdir()))
    (raw / "images" / "scene_1.jpg").unlink()
    push = ["label", "push", "--url", labelstudio.url, "--project", "weeded", str(raw)]
    code, out, err = run(push, capsys)
    assert code == 0, err
    text = " ".join(out.split())
    assert (
        "note: 1 photo(s) the scrape kept are no longer on disk (deleted by hand?), left out: scene_1.jpg"
        in text
    )
    assert "pushed 1 photo(s) to created project 'weeded'" in text
    code, out, _ = run([*push, "--json"], capsys)
    assert code == 0 and json.loads(out)["deleted"] == [str(raw / "images" / "scene_1.jpg")]


def test_push_skips_an_empty_scrape_folder_among_others_with_a_note(
    labelstudio: LabelStudioServer,
    key: str,
    files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """One scrape folder per query, one query found nothing: push refused every folder. The empty
    one is skipped with a note; when all are empty nothing reaches Label Studio (no project made)."""
    from scrapefolder import scrape_folder

    desks, lamps = tmp_path / "desks", tmp_path / "lamps"
    shutil.copytree(files["photos"], desks / "images", ignore=shutil.ignore_patterns("scene_2.jpg"))
    scrape_folder(desks, sorted((desks / "images").iterdir()))
    lamps.mkdir()
    scrape_folder(lamps, [None])  # found, never downloaded
    push = ["label", "push", "--url", labelstudio.url, "--project", "one query empty", str(desks), str(lamps)]
    code, out, err = run(push, capsys)
    assert code == 0, err
    text = " ".join(out.split())
    assert f"note: skipped 1 scrape folder(s) with no photos (none kept, or deleted since): {lamps}" in text
    assert "pushed 2 photo(s) to created project 'one query empty'" in text
    code, out, _ = run([*push, "--json"], capsys)
    assert code == 0 and json.loads(out)["skipped_folders"] == [str(lamps)]
    code, _, err = run([*push[:4], "--project", "all empty", str(lamps)], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.strip().endswith(f"{lamps}: no photos in this scrape folder (none kept, or deleted since)")
    assert client_for(labelstudio).find_project("all empty") is None


class Requests:
    """Every request label-studio-sdk sends (method and path) and every read of a scrape manifest."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import httpx

        from officescore.scrape import manifest

        self.sent: list[tuple[str, str]] = []
        self.manifest_reads = 0
        send, kept_photos = httpx.Client.send, manifest.kept_photos

        def counted_send(client: httpx.Client, request: httpx.Request, **kwargs: Any) -> httpx.Response:
            self.sent.append((request.method, request.url.path.rstrip("/")))
            return send(client, request, **kwargs)

        def counted_kept(folder: Path) -> Any:
            self.manifest_reads += 1
            return kept_photos(folder)

        monkeypatch.setattr(httpx.Client, "send", counted_send)
        monkeypatch.setattr(manifest, "kept_photos", counted_kept)

    def count(self, method: str, path: str) -> int:
        return self.sent.count((method, path))

    def clear(self) -> None:
        self.sent.clear()
        self.manifest_reads = 0


def test_push_pull_and_prelabel_ask_once_for_what_they_need(
    labelstudio: LabelStudioServer,
    key: str,
    files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Push looked the project up twice (a tasks file, or --interactive on a project made earlier),
    pull read the labelling config a second time after the project list had sent it, and push and
    prelabel read a scrape folder's manifest twice (its photos, then the ones deleted by hand)."""
    from scrapefolder import scrape_folder

    from officescore.label.formats import write_tasks

    raw = tmp_path / "raw"
    shutil.copytree(files["photos"], raw / "images")
    scrape_folder(raw, sorted((raw / "images").iterdir()))
    requests = Requests(monkeypatch)
    push = ["label", "push", "--url", labelstudio.url, "--project", "asked once"]
    code, _, err = run([*push, str(raw)], capsys)
    assert code == 0, err
    assert (requests.manifest_reads, requests.count("GET", "/api/projects")) == (1, 1)
    requests.clear()
    code, _, err = run([*push, str(raw), "--interactive"], capsys)  # an existing project gets the tools
    assert code == 0, err
    assert (requests.count("GET", "/api/projects"), requests.manifest_reads) == (1, 1)
    review = tmp_path / "review" / "tasks.json"
    review.parent.mkdir()
    shutil.copy(files["photos"] / "scene_0.jpg", review.parent / "new.jpg")
    write_tasks(review, [{"data": {"image": "new.jpg", "path": "new.jpg"}}], LabelSchema(CLASSES))
    requests.clear()
    code, _, err = run([*push, "--review", str(review)], capsys)
    assert code == 0, err
    assert requests.count("GET", "/api/projects") == 1
    requests.clear()
    pull = ["label", "pull", "--url", labelstudio.url, "--project", "asked once"]
    code, _, err = run([*pull, "--out", str(tmp_path / "pull")], capsys)
    assert code == 0, err
    assert requests.count("GET", "/api/projects") == 1
    read_one = [
        path for method, path in requests.sent if method == "GET" and path.startswith("/api/projects/")
    ]
    read_one = [path for path in read_one if path.count("/") == 3]
    assert read_one == [], "the project list had sent the labelling config already"
    requests.clear()
    prelabel = ["prelabel", str(raw), "--model", str(files["desk"]), "--device", "cpu"]
    code, _, err = run([*prelabel, "--out", str(tmp_path / "prelabel.json")], capsys)
    assert code == 0, err
    assert requests.manifest_reads == 1


def test_declared_conventions_reach_the_projects_labelling_instructions(
    labelstudio: LabelStudioServer,
    key: str,
    files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`label push --convention` writes the declarations into the instructions Label Studio shows
    labellers (shown before labelling), beside what was there; a later push changes or drops one."""
    title = "conventions"
    push = ["label", "push", "--url", labelstudio.url, "--project", title]
    code, out, err = run(
        [
            *push,
            str(files["photos"] / "scene_0.jpg"),
            "--classes",
            "desk,chair,plant",
            "--convention",
            "desk=part",
        ],
        capsys,
    )
    assert code == 0, err
    assert "labelling instructions hold the conventions desk=part" in " ".join(out.split())
    client = client_for(labelstudio)
    project = client.project(title)

    def instructions() -> tuple[str, bool]:
        found = client.sdk.projects.get(id=project.id)
        return str(found.expert_instruction or ""), bool(found.show_instruction)

    text, shown = instructions()
    assert "<b>desk</b>: part (the main part only)" in text and shown
    other = "<p>Outline every object you can see.</p>"
    client.set_project(project.id, expert_instruction=other + "\n" + text)
    # photos left out: the instructions alone, for a project made earlier
    code, _, err = run([*push, "--convention", "plant=whole: include the pot & the soil"], capsys)
    assert code == 0, err
    text, _ = instructions()
    assert text.startswith(other) and text.count(other) == 1
    assert "<b>desk</b>: part (the main part only)" in text
    assert "<b>plant</b>: whole (the object with all its parts): include the pot &amp; the soil" in text
    code, _, err = run([*push, "--convention", "desk=none", "--json"], capsys)
    assert code == 0, err
    text, _ = instructions()
    assert "desk" not in text and "include the pot &amp; the soil" in text and text.startswith(other)
    code, _, err = run([*push, "--convention", "mug=whole"], capsys)
    assert code == 2 and "no class 'mug'; the classes are desk, chair, plant" in err
    assert instructions()[0] == text
    # a tasks file pushed for review (audit --labelstudio) declares them in its project too
    from officescore.label.formats import write_tasks

    review = tmp_path / "review" / "tasks.json"
    review.parent.mkdir()
    shutil.copy(files["photos"] / "scene_0.jpg", review.parent / "new.jpg")
    write_tasks(review, [{"data": {"image": "new.jpg", "path": "new.jpg"}}], LabelSchema(CLASSES))
    review_push = ["label", "push", "--url", labelstudio.url, "--project", f"{title} review"]
    code, _, err = run([*review_push, "--review", str(review), "--convention", "desk=part"], capsys)
    assert code == 0, err
    found = client.sdk.projects.get(id=client.project(f"{title} review").id)
    assert "<b>desk</b>: part (the main part only)" in str(found.expert_instruction or "")


def test_suggestions_at_the_photo_edges_survive_label_studio_and_ingest(
    labelstudio: LabelStudioServer,
    key: str,
    files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """prelabel --format labelstudio with masks touching every edge -> push --review -> accepted
    -> pull --ingest: Label Studio finds every prediction valid and ingest finds nothing outside."""
    from officescore.label.prelabel import prelabel

    tasks_file = tmp_path / "tasks.json"
    prelabel([files["photos"]], edge_model(CLASSES), tasks_file, fmt="labelstudio")
    log_before = labelstudio.log.read_text(errors="replace").count("Prediction validation failed")
    title = "edge suggestions"
    code, out, err = run(
        [
            "label",
            "push",
            "--review",
            str(tasks_file),
            "--url",
            labelstudio.url,
            "--project",
            title,
            "--json",
        ],
        capsys,
    )
    assert code == 0, err
    pushed = json.loads(out)
    assert (pushed["added"], pushed["predictions"]) == (3, 3)
    client = client_for(labelstudio)
    tasks = client.export_tasks(pushed["project_id"])
    accepted = sum(len(accept(client, t["id"])) for t in tasks)
    assert accepted == 3 * 8
    time.sleep(1)  # Label Studio's log is written by another process
    log = labelstudio.log.read_text(errors="replace")
    assert log.count("Prediction validation failed") == log_before

    export = tmp_path / "export"
    code, out, err = run(
        ["label", "pull", "--url", labelstudio.url, "--project", title, "--out", str(export)]
        + ["--ingest", str(tmp_path / "dataset"), "--json"],
        capsys,
    )
    assert code == 0, err
    pulled = json.loads(out)
    assert pulled["pull"]["annotations"] == accepted
    assert [p for p in pulled["ingest"]["problems"] if p["kind"] == "outside_image"] == []


@pytest.mark.parametrize("made_before", [False, True])
def test_ignore_regions_survive_a_review_in_label_studio(
    labelstudio: LabelStudioServer,
    key: str,
    files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    made_before: bool,
) -> None:
    """audit --labelstudio -> push --review -> pull --ingest: an ignore region (a chair kept as its
    box) came back missing, so the chair counted as background the model must not find. It is a
    rectangle of the review config's ignore tag, and pull writes rectangles as ignore regions.
    `made_before`: the project was made before officescore had the ignore tag; its rectangles were
    imported into a config without the tag, where Label Studio neither shows them nor keeps them
    when the labeller saves: the tag is added to its config, with a note."""
    from officescore.curate.labels import load_split
    from officescore.curate.labelstudio import audit_tasks
    from officescore.ingest import ingest_export

    photos = tmp_path / "photos"
    shutil.copytree(files["photos"], photos)
    names = sorted(p.name for p in photos.iterdir())
    desk = [10.0, 40.0, 60.0, 40.0, 60.0, 90.0, 10.0, 90.0]
    coco = {
        "images": [{"id": i, "file_name": n, "width": 128, "height": 96} for i, n in enumerate(names, 1)],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "segmentation": [desk],
                "bbox": [10, 40, 50, 50],
                "iscrowd": 0,
            },
            {
                "id": 2,
                "image_id": 1,
                "category_id": 2,
                "bbox": [70.0, 20.0, 30.0, 44.0],
                "iscrowd": 0,
            },  # a box only
            {
                "id": 3,
                "image_id": 2,
                "category_id": 2,
                "segmentation": [desk],
                "bbox": [10, 40, 50, 50],
                "iscrowd": 0,
            },  # a chair with a mask: the class stays in the data set
        ],
        "categories": [{"id": 1, "name": "desk"}, {"id": 2, "name": "chair"}],
    }
    (photos / "annotations.json").write_text(json.dumps(coco))
    ingest_export(photos / "annotations.json", out=tmp_path / "before", val_fraction=0.0)
    split = load_split(tmp_path / "before", "train")
    image = next(im for im in split.images if len(im.labels) == 2)
    assert sorted(lab.iscrowd for lab in image.labels) == [0, 1]  # the chair is an ignore region
    issue = {"rank": 1, "kind": "bad_mask", "score": 0.9, "image_id": image.id, "file_name": image.file_name,
             "annotation_id": image.labels[0].id, "class": "desk", "suggested_class": None,
             "bbox": [10, 40, 50, 50]}  # fmt: skip
    other = next(im for im in split.images if im.labels and im.labels[0].class_name == "chair")
    second = {
        **issue,
        "image_id": other.id,
        "file_name": other.file_name,
        "annotation_id": other.labels[0].id,
    }
    review, config, _ = audit_tasks(tmp_path / "review.json", split, [], [issue, second], "audit-test")
    assert '<RectangleLabels name="ignore"' in config.read_text()
    title = f"reviewed with ignore regions {made_before}"
    if made_before:
        old = client_for(labelstudio).create_project(title, LabelSchema(("desk", "chair")))
        assert "RectangleLabels" not in old.config
    code, out, err = run(
        ["label", "push", "--review", str(review), "--url", labelstudio.url, "--project", title], capsys
    )
    assert code == 0, err
    # the project shows the rectangles: its config has the ignore tag their results point at
    pushed = LabelStudio.connect(labelstudio.url, labelstudio.api_key).project(title)
    assert '<RectangleLabels name="ignore"' in pushed.config and pushed.schema.ignore_boxes
    added = f"note: project '{title}': added the 'ignore' rectangles to its labelling config"
    assert (added in " ".join(out.split())) == made_before
    # what to check, in words above the photo: Label Studio took the header and each task's text
    assert ('<Header value="$review"' in pushed.config) == (not made_before)
    stored = LabelStudio.connect(labelstudio.url, labelstudio.api_key).export_tasks(pushed.id)
    check = "Check: 1) the desk at bottom left: its outline and the model's differ; check the outline"
    assert [t["data"]["review"] for t in stored] == [check, check]
    export = tmp_path / "export"
    code, out, err = run(
        ["label", "pull", "--url", labelstudio.url, "--project", title, "--out", str(export)]
        + ["--ingest", str(tmp_path / "after")],
        capsys,
    )
    assert code == 0, err
    assert "1 rectangle(s) written as ignore regions" in " ".join(out.split())
    again = next(im for im in load_split(tmp_path / "after", "train").images if len(im.labels) == 2)
    chair = next(lab for lab in again.labels if lab.class_name == "chair")
    assert chair.iscrowd == 1 and [round(v) for v in chair.bbox] == [70, 20, 30, 44]
    assert [lab.class_name for lab in again.labels if not lab.iscrowd] == ["desk"]


def test_plain_photos_go_into_a_review_project(
    labelstudio: LabelStudioServer, key: str, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """A project `label push --review` made shows each task's `review` text in a Header above the
    photo. A later plain push of photos (no such key) is imported: Label Studio requires only the
    data keys of named tags, and the nameless Header shows an empty line for them."""
    title = "review then photos"
    made = client_for(labelstudio).create_project(title, LabelSchema(("desk", "chair"), header="review"))
    assert made.schema.header == "review"
    args = ["label", "push", str(files["photos"]), "--url", labelstudio.url, "--project", title, "--json"]
    code, out, err = run(args, capsys)
    assert code == 0 and json.loads(out)["added"] == 3, err
    stored = client_for(labelstudio).export_tasks(made.id)
    assert len(stored) == 3 and not any("review" in t["data"] for t in stored)
    assert client_for(labelstudio).project(title).schema.header == "review"


def test_label_studio_asks_the_ml_backend_and_gets_the_newer_checkpoint(
    labelstudio: LabelStudioServer, key: str, files: dict[str, Path], tmp_path: Path
) -> None:
    import requests

    from officescore.label import backend as ml
    from officescore.label.push import push_images

    runs = tmp_path / "runs" / "train"
    best = runs / "exp" / "weights" / "best.pt"
    best.parent.mkdir(parents=True)
    shutil.copy(files["desk"], best)
    client = client_for(labelstudio)
    pushed = push_images(client, "backend project", [files["photos"]], classes=list(CLASSES))
    assert pushed.added == 3 and pushed.predictions == 0

    served = ml.Backend(runs, client, device="cpu")
    server = ml.make_server(served, "127.0.0.1", 0)
    ml.start(server)
    try:
        first_version = served.model_version
        health = requests.get(f"{ml.url_of(server)}/health", timeout=10).json()
        assert health == {"status": "UP", "model_class": "officescore", "model_version": first_version}
        client.connect_backend(pushed.project_id, ml.url_of(server))  # through Label Studio's API

        task_ids = sorted(t["id"] for t in client.export_tasks(pushed.project_id))
        opened = client.task(task_ids[0])  # a labeller opens the task: Label Studio asks the backend
        (prediction,) = opened["predictions"]
        assert prediction["model_version"] == first_version and first_version.startswith("exp-best-")
        regions = result_regions(prediction["result"])
        assert regions and {r.class_name for r in regions} == {"desk"}

        shutil.copy(files["chair"], best)  # training wrote a better best.pt
        later = time.time() + 5
        os.utime(best, (later, later))
        opened = client.task(task_ids[1])
        (prediction,) = opened["predictions"]
        assert prediction["model_version"] != first_version and prediction["model_version"].startswith(
            "exp-best-"
        )
        assert {r.class_name for r in result_regions(prediction["result"])} == {"chair"}
        assert (
            requests.get(f"{ml.url_of(server)}/health", timeout=10).json()["model_version"]
            == prediction["model_version"]
        )

        hook = requests.post(
            f"{ml.url_of(server)}/webhook", json={"action": "ANNOTATION_CREATED"}, timeout=10
        )
        assert hook.status_code == 201 and hook.json()["event"] == "ANNOTATION_CREATED"
        bad = requests.post(f"{ml.url_of(server)}/predict", data=b"[1, 2]", timeout=10)
        assert bad.status_code == 400 and "JSON object" in bad.json()["error"]

        # Label Studio also asks a connected backend for the tasks without a prediction when it
        # lists a project's tasks (the project page a labeller lands on after an import): a photo
        # pushed now, without --model, shows the suggestion before anyone opens it.
        (extra,) = write_photos(tmp_path / "more", n=4)[3:]
        added = push_images(client, "backend project", [extra])
        assert (added.added, added.predictions) == (1, 0)
        (task,) = [t for t in client.export_tasks(pushed.project_id) if t["data"]["name"] == extra.name]
        assert task["total_predictions"] == 0  # the export itself asks nobody
        listed = list(client.sdk.tasks.list(project=pushed.project_id))  # GET /api/tasks, as the page does
        assert len(listed) == 4
        (task,) = [t for t in client.export_tasks(pushed.project_id) if t["data"]["name"] == extra.name]
        assert task["total_predictions"] == 1
    finally:
        server.shutdown()
        server.server_close()


def test_labellers_get_the_connected_backends_suggestions_after_a_push_with_a_model(
    labelstudio: LabelStudioServer,
    key: str,
    files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """GUIDE's loop: push with --model, then `label backend --connect`. The push made the pushed
    model's version the project's "model version" (Label Studio picks the first version imported), so
    Label All Tasks kept showing that model's suggestions and never asked the backend: its newer
    models (`--train`, a newer best.pt) reached no labeller. Connecting selects the backend."""
    from officescore.label import backend as ml
    from officescore.label.predict import model_version

    push = ["label", "push", str(files["photos"]), "--url", labelstudio.url, "--project", "pushed, then live"]
    code, out, err = run([*push, "--model", str(files["desk"]), "--device", "cpu", "--json"], capsys)
    assert code == 0, err
    project_id = json.loads(out)["project_id"]
    client = client_for(labelstudio)
    served = ml.Backend(files["chair"], client, device="cpu")
    server = ml.make_server(served, "127.0.0.1", 0)
    ml.start(server)
    try:
        client.connect_backend(project_id, ml.url_of(server))
        assert client.sdk.projects.get(id=project_id).model_version == "officescore"  # the backend's title
        # What a labeller's Label All Tasks opens: the next task, with the suggestion it is shown.
        shown = client._request("open the next task", f"api/projects/{project_id}/next").json()
        assert [p["model_version"] for p in shown["predictions"]] == [model_version(files["chair"])]
    finally:
        server.shutdown()
        server.server_close()


def test_errors_a_user_can_cause(
    labelstudio: LabelStudioServer,
    key: str,
    files: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from labelstudio_server import _free_port, executable

    photos, url = str(files["photos"]), labelstudio.url

    def error(args: list[str]) -> str:
        code, _, err = run(args, capsys)
        assert code == 2 and err.startswith("error:") and len(err.strip().splitlines()) == 1, err
        assert labelstudio.api_key not in err  # the key is never shown
        return err

    closed = f"http://127.0.0.1:{_free_port()}"
    assert "Label Studio is not reachable at " + closed in error(
        ["label", "push", photos, "--url", closed, "--project", "abc"]
    )
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "0123456789abcdef")
    refused = error(["label", "pull", "--url", url, "--project", "abc", "--out", "x"])
    assert "refused the API key" in refused and "0123456789abcdef" not in refused  # nor the refused key
    monkeypatch.delenv("LABEL_STUDIO_API_KEY")
    monkeypatch.setenv("OFFICESCORE_CONFIG", os.devnull)
    assert "no Label Studio API key: set LABEL_STUDIO_API_KEY" in error(
        ["label", "push", photos, "--project", "abc"]
    )
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", labelstudio.api_key)

    assert "a Label Studio project title has 3 to 50 characters" in error(
        ["label", "push", photos, "--project", "ab"]
    )
    assert "has no project 'never made'" in error(
        ["label", "pull", "--url", url, "--project", "never made", "--out", "x"]
    )
    assert "--url localhost:8080: give Label Studio's address with http://" in error(
        ["label", "pull", "--url", "localhost:8080", "--project", "abc", "--out", "x"]
    )
    assert "nothing to push" in error(["label", "push", "--url", url, "--project", "abc"])
    missing = str(files["base"] / "missing.pt")
    assert "missing.pt: no such model file" in error(["label", "backend", "--model", missing, "--url", url])
    # The project is checked before the backend announces itself.
    code, out, err = run(
        ["label", "backend", "--model", str(files["desk"]), "--url", url, "--connect", "never made"], capsys
    )
    assert code == 2 and "has no project 'never made'" in err and "ML backend for" not in out + err
    # A project labelling other classes than the model predicts: refused before anything is imported.
    other = solid_checkpoint(files["base"] / "other.pt", {"lamp": 8.0}, ("desk", "lamp"))
    client = client_for(labelstudio)
    client.create_project("two classes", LabelSchema(("desk", "chair")))
    err = error(
        [
            "label",
            "push",
            photos,
            "--url",
            url,
            "--project",
            "two classes",
            "--model",
            str(other),
            "--device",
            "cpu",
        ]
    )
    assert "project 'two classes' labels desk, chair but the model predicts lamp too" in err
    project = client.project("two classes")
    assert client.export_tasks(project.id) == []
    # --mask brush on a polygon project: refused, not dropped (without --mask its kind is used).
    err = error(["label", "push", photos, "--url", url, "--project", "two classes", "--mask", "brush"])
    assert "project 'two classes' labels with polygon regions, not brush" in err
    assert client.export_tasks(project.id) == []
    err = error(["label", "push", photos, "--url", url, "--project", "two classes", "--classes", "desk,lamp"])
    assert "project 'two classes' labels desk, chair but --classes names lamp too; use a new --project" in err
    # Plain photos, no --model, --classes or --mask: into the project as it is (its classes, polygons).
    code, out, err = run(
        ["label", "push", photos, "--url", url, "--project", "two classes", "--json"], capsys
    )
    assert code == 0 and json.loads(out)["added"] == 3, err

    # Label Studio's own validation errors come back as one sentence.
    with pytest.raises(LabelStudioError, match=r"refused to create the project: label_config: .+") as refused:
        client.call(
            "create the project",
            lambda: client.sdk.projects.create(title="bad config", label_config="<View>"),
        )
    assert "\n" not in str(refused.value)

    # The tests' own setup error: one line naming the make target.
    monkeypatch.setenv("OFFICESCORE_LABEL_STUDIO", str(files["base"] / "no-label-studio"))
    with pytest.raises(pytest.fail.Exception, match="run `make labelstudio`"):
        executable()
