"""`label backend --train` against a real Label Studio (labelstudio_server.py): its webhooks count
labels, N labels start exactly one job, labels during a job start the next one (never a parallel
one), START_TRAINING from Label Studio's API starts one; a new model answers only after its job
succeeded and is not worse on the same val photos; broken, killed, unreachable and interrupted jobs
leave the old model answering; and `label status` numbers recomputed by hand.

Each job is tiny: ResNet18-FPN Mask R-CNN at 64 px, one epoch, a few photos, one torch thread."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from labelmodels import one_torch_thread, run  # noqa: F401 (fixture)
from labelstudio_server import LabelStudioServer, _free_port
from PIL import Image
from trainsetup import FAST_MODEL, small_config

from officescore import DEFAULT_CLASSES
from officescore.label import backend as ml
from officescore.label.client import LabelStudio
from officescore.label.feedback import project_status
from officescore.label.formats import LabelSchema, annotation
from officescore.label.prelabel import DEFAULT_CONF
from officescore.label.trainer import CURVE_FILE, PHOTO_CACHE, STATE_FILE, Trainer, TrainSettings
from officescore.runs import NOT_USED_FILE, newest_best_checkpoint

SIZE = 64
EVERY = 3


@pytest.fixture
def key(labelstudio: LabelStudioServer, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", labelstudio.api_key)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the job's child process inherits it
    return labelstudio.api_key


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """10 synthetic scenes at 64 px with their exact labels (COCO)."""
    from officescore.sample import write_sample

    base = tmp_path_factory.mktemp("scenes")
    write_sample(base / "scenes", n_images=10, seed=7, size=SIZE)
    coco = json.loads((base / "scenes" / "annotations.json").read_text())
    return {"folder": base / "scenes", "images": base / "scenes" / "images", "coco": coco, "base": base}


@pytest.fixture(scope="module")
def good_model(scenes: dict[str, Any]) -> Path:
    """A tiny model trained (15 epochs, ~40 s on one core) on the very scenes the switch test labels,
    so its val mask mAP on them is clearly above zero."""
    from officescore.ingest import ingest_export
    from officescore.train import train

    root = scenes["base"] / "good"
    ingest_export(scenes["folder"] / "annotations.json", out=root / "dataset", val_fraction=0.2, seed=0)
    config = small_config(
        root / "dataset", root / "runs", epochs=15, batch_size=4, lr=0.02, warmup_iters=5, val_every=100
    )
    return train(config).last_checkpoint


def settings(folder: Path, url: str, project: str, **overrides: Any) -> TrainSettings:
    values: dict[str, Any] = dict(
        url=url,
        project=project,
        folder=folder / "backend",
        runs=folder / "runs" / "train",
        every=EVERY,
        epochs=1,
        minutes=None,
        weights="none",
        arch="maskrcnn_resnet18_fpn",
        img_size=SIZE,
        batch_size=2,
        lr=0.01,
        model_kwargs=dict(FAST_MODEL),
        device="cpu",
        amp=False,
        val_fraction=0.3,
        threads=1,
        retry_seconds=1.0,
    )
    values.update(overrides)
    return TrainSettings(**values)


def push_scenes(
    client: LabelStudio, tmp: Path, title: str, scenes: dict[str, Any], n: int
) -> tuple[int, dict[str, int]]:
    """The first n scenes pushed as a new project: (project id, task id by photo name)."""
    from officescore.label.push import push_images

    photos = tmp / "photos"
    photos.mkdir(exist_ok=True)
    for image in scenes["coco"]["images"][:n]:
        (photos / Path(image["file_name"]).name).write_bytes(
            (scenes["folder"] / image["file_name"]).read_bytes()
        )
    project = push_images(client, title, [photos], classes=list(DEFAULT_CLASSES)).project_id
    return project, {t["data"]["name"]: t["id"] for t in client.export_tasks(project)}


def true_labels(scenes: dict[str, Any], name: str, schema: LabelSchema) -> list[dict[str, Any]]:
    """The result of an annotation holding the scene's exact labels."""
    image = next(i for i in scenes["coco"]["images"] if Path(i["file_name"]).name == name)
    names = {c["id"]: c["name"] for c in scenes["coco"]["categories"]}
    labels = [
        {"category": names[a["category_id"]], "segmentation": a["segmentation"]}
        for a in scenes["coco"]["annotations"]
        if a["image_id"] == image["id"]
    ]
    return annotation(labels, image["width"], image["height"], schema)["result"]


class Live:
    """A backend with a trainer, served on 127.0.0.1 and connected to a project."""

    def __init__(
        self, server: LabelStudioServer, tmp: Path, title: str, scenes: dict[str, Any], n: int, **kw: Any
    ):
        self.client = LabelStudio.connect(server.url, server.api_key)
        self.project_id, self.tasks = push_scenes(self.client, tmp, title, scenes, n)
        self.schema = LabelSchema(tuple(DEFAULT_CLASSES))
        self.names = sorted(self.tasks)
        self.scenes = scenes
        self.messages: list[str] = []
        self.repredict = bool(kw.pop("repredict", False))
        # None: each model's own threshold, as `label backend --train` without --conf
        self.conf: float | None = kw.pop("conf", DEFAULT_CONF)
        self.settings = settings(tmp, server.url, title, **kw)
        self.server_info = server
        self.start()
        self.ml_id = self.client.connect_backend(self.project_id, ml.url_of(self.server))

    def start(self, port: int = 0) -> None:
        """What `label backend --train --repredict` puts together (officescore.label.live)."""
        from officescore.label.live import after_jobs

        self.trainer = Trainer(
            self.settings, self.server_info.api_key, self.project_id, log=self.messages.append
        )
        self.backend = ml.Backend(
            self.settings.runs,
            self.client,
            device="cpu",
            conf=self.conf,
            trainer=self.trainer,
            log=self.messages.append,
        )
        after_jobs(self.trainer, self.backend, repredict=self.repredict)
        self.server = ml.make_server(self.backend, "127.0.0.1", port)
        ml.start(self.server)

    def stop(self, stop_job: bool = True) -> None:
        self.trainer.close(stop_job=stop_job)
        self.server.shutdown()
        self.server.server_close()

    def restart(self, stop_job: bool = True) -> None:
        """The backend stops (with or without its job) and starts again on the same folder and port."""
        port = self.server.server_address[1]
        self.stop(stop_job)
        self.start(port)

    def label(self, name: str, extra: list[dict[str, Any]] = ()) -> None:  # type: ignore[assignment]
        """A labeller submits the scene's true labels (Label Studio then sends ANNOTATION_CREATED)."""
        result = true_labels(self.scenes, name, self.schema)
        self.client.sdk.annotations.create(id=self.tasks[name], result=[*result, *extra], lead_time=1.0)

    @property
    def state(self) -> dict[str, Any]:
        return json.loads((self.settings.folder / STATE_FILE).read_text())

    def job_pid(self) -> int:
        return int(self.state["running"]["pid"])


def wait_for(check: Callable[[], bool], timeout: float = 240.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def live_factory(labelstudio: LabelStudioServer, key: str, tmp_path: Path) -> Iterator[Callable[..., Live]]:
    made: list[Live] = []

    def make(title: str, scenes: dict[str, Any], n: int, **kw: Any) -> Live:
        made.append(Live(labelstudio, tmp_path, title, scenes, n, **kw))
        return made[-1]

    yield make
    for live in made:
        print(f"backend log of {live.settings.project!r}:", *live.messages, sep="\n  ")  # shown on failure
        live.stop()


@pytest.mark.slow
def test_labels_start_one_job_at_a_time_and_start_training_starts_one(
    live_factory: Callable[..., Live], scenes: dict[str, Any]
) -> None:
    live = live_factory("live training", scenes, n=8)
    trainer = live.trainer
    # No model yet: the backend answers, with no suggestions.
    assert live.backend.model_version == ml.NO_MODEL_VERSION
    opened = live.client.task(live.tasks[live.names[7]])
    assert opened["predictions"] == []  # and Label Studio stored none, so it asks again later

    live.label(live.names[0])
    live.label(live.names[1])
    wait_for(lambda: live.state["pending"] == 2, 30, "two webhooks")  # they came from Label Studio
    assert live.state["jobs"] == 0 and not trainer.running
    live.label(live.names[2])  # the N-th label: one job
    wait_for(lambda: trainer.running, 30, "the first job")
    assert live.state["jobs"] == 1
    pulled = live.settings.folder / "jobs" / "job-0001" / "export" / "annotations.json"
    wait_for(pulled.is_file, 120, "the first job's pull")  # later labels are the next job's
    for name in live.names[3:6]:  # labels during the job: counted, no second job beside it
        live.label(name)
    wait_for(lambda: live.state["pending"] == 6, 30, "three more webhooks")
    assert live.state["running"]["job"] == 1 and live.state["jobs"] == 1
    assert live.backend.model_version == ml.NO_MODEL_VERSION  # nothing answers before the job succeeded

    # The first job ends, and the labels that came during it start the second, after it.
    wait_for(lambda: len(live.state["versions"]) == 2 and not trainer.running, what="two jobs")
    state = live.state
    assert state["failures"] == [] and state["jobs"] == 2 and state["pending"] == 0
    first, second = state["versions"]
    assert first["trained_photos"] + first["val_photos"] == 3
    assert second["trained_photos"] + second["val_photos"] == 6
    assert first["accepted"] is True and first["previous_version"] is None  # the first model
    assert second["started"] >= first["finished"]  # one after the other, never side by side
    assert set(state["val_tasks"]).isdisjoint(state["train_tasks"])
    run_dir = live.settings.folder / first["run"]
    assert (run_dir / "metrics.csv").is_file() and (run_dir / "args.json").is_file()
    # Both jobs pulled every labelled photo; each was downloaded once, and stored once.
    cached = {p.stat().st_ino for p in (live.settings.folder / PHOTO_CACHE).iterdir()}
    pulled = list((live.settings.folder / "jobs").glob("job-*/export/images/*"))
    assert len(cached) == 6 and len(pulled) == 3 + 6 and {p.stat().st_ino for p in pulled} == cached
    # The switch followed the rule on the same val photos; the answering model is the one it chose.
    assert second["accepted"] is (second["segm_map"] >= second["previous_segm_map"])
    answering = second if second["accepted"] else first
    assert answering["model_version"] == state["current"]["model_version"]
    # A new model loads beside the old one, which answers until then; then the new one answers.
    wait_for(lambda: live.backend.model_version == answering["model_version"], 120, "the new model to load")
    opened = live.client.task(live.tasks[live.names[7]])  # Label Studio asks again: the new version
    assert answering["model_version"] in {p["model_version"] for p in opened["predictions"]}

    # From here on as `--repredict`: after each job every task nobody labelled gets a prediction of
    # the answering model (once it has loaded), without being opened.
    from officescore.label.feedback import tasks_with_predictions
    from officescore.label.live import after_jobs, repredict_unlabelled

    after_jobs(live.trainer, live.backend, repredict=True)

    def missing(version: str) -> list[int]:
        tasks = tasks_with_predictions(live.client, live.project_id)
        assert len(tasks) == 8  # every task, or "none missing" would mean nothing
        return [
            t["id"]
            for t in tasks
            if not t["annotations"] and version not in {p["model_version"] for p in t["predictions"]}
        ]

    assert live.tasks[live.names[6]] in missing(answering["model_version"])  # never opened

    # Label Studio's Start Training button (its API): one job, though no new label came.
    live.client.call("train", lambda: live.client.sdk.ml.train(id=live.ml_id))
    wait_for(lambda: live.state["jobs"] == 3 and not trainer.running, what="the START_TRAINING job")
    third = live.state["versions"][2]
    assert third["trained_photos"] + third["val_photos"] == 6
    assert live.state["val_tasks"] == state["val_tasks"]  # the held-out set stays fixed

    current = live.state["current"]["model_version"]

    def said_so() -> bool:  # logged once its last prediction is stored: wait for both, not the tasks alone
        return any(
            f"{current}: predicted " in m and "unlabelled task(s) that lacked its prediction" in m
            for m in live.messages
        )

    wait_for(said_so, 300, "the after-job hook to predict the unlabelled tasks")
    assert missing(current) == []
    assert live.backend.model_version == current  # predicted by the answering model, not the one before
    assert repredict_unlabelled(live.backend) == 0  # each task once per version
    assert (live.settings.folder / CURVE_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # redrawn by the hook

    metrics = requests.get(f"{ml.url_of(live.server)}/metrics", timeout=60).json()
    assert [v["model_version"] for v in metrics["versions"]][-3:] == [
        v["model_version"] for v in live.state["versions"]
    ]
    assert metrics["pending_labels"] == 0 and metrics["labelled_tasks"] == 6
    assert all(live.server_info.api_key not in m for m in live.messages)


def test_label_studio_stores_each_suggestion_at_its_score_and_the_models_own_threshold(
    live_factory: Callable[..., Live], scenes: dict[str, Any], good_model: Path, tmp_path: Path
) -> None:
    """What a labeller sees, read back from Label Studio: once the current model has a threshold of
    its own (found on class x mask score²), the predictions Label Studio stores for the tasks it opens
    hold exactly the detections whose suggestion score reaches it, each at that score."""
    from officescore.label.predict import model_version

    best = tmp_path / "runs" / "train" / "good" / "weights" / "best.pt"
    best.parent.mkdir(parents=True)
    best.write_bytes(good_model.read_bytes())
    live = live_factory("suggestion scores", scenes, n=4, conf=None)
    assert live.backend.threshold() == (DEFAULT_CONF, False)  # found at start: no threshold of its own
    predictor = live.backend.current().predictor
    scored = {
        name: [
            d.score * d.mask_score**2
            for d in predictor.predict([scenes["images"] / name], conf=0.0)[0].detections  # all it finds
        ]
        for name in live.names
    }
    own = float(np.median([score for scores in scored.values() for score in scores]))  # some shown, some not
    port = live.server.server_address[1]
    live.stop()  # the trainer saves its state as it stops: change it after
    state = live.state
    state["current"]["suggest"] = {"conf": own, "by_mask": True}  # as a job would have found it
    (live.settings.folder / STATE_FILE).write_text(json.dumps(state))
    live.start(port)
    assert live.backend.threshold() == (own, True)
    shown = hidden = 0
    for name in live.names:
        opened = live.client.task(live.tasks[name])  # Label Studio asks the backend and stores the answer
        (stored,) = [p for p in opened["predictions"] if p["model_version"] == model_version(best)]
        got = sorted(r["score"] for r in stored["result"] if r["type"] == "polygonlabels")
        want = sorted(round(score, 4) for score in scored[name] if score >= own)
        assert got == pytest.approx(want, abs=2e-4), name
        shown, hidden = shown + len(want), hidden + len(scored[name]) - len(want)
    assert shown and hidden


def test_a_worse_model_never_answers(
    live_factory: Callable[..., Live], scenes: dict[str, Any], good_model: Path, tmp_path: Path
) -> None:
    """The job fine-tunes the good model at a learning rate that wrecks it: it is evaluated on the
    same val photos as the good one, found worse, and the good one keeps answering."""
    from officescore.label.predict import model_version

    best = tmp_path / "runs" / "train" / "good" / "weights" / "best.pt"
    best.parent.mkdir(parents=True)
    best.write_bytes(good_model.read_bytes())
    live = live_factory("worse model", scenes, n=10, every=10, lr=0.5, val_fraction=0.5)
    good = model_version(best)
    assert live.backend.model_version == good  # found in the runs folder at start
    for name in live.names[:-1]:
        live.label(name)
    # A label of a class the project does not have (the labelling config changed since): skipped, listed.
    sofa = {**_square(0, 0, 20, 20, "sofa"), "original_width": SIZE, "original_height": SIZE}
    live.label(live.names[-1], extra=[sofa])
    wait_for(lambda: live.state["jobs"] == 1 and not live.trainer.running, what="the job")
    (record,) = [v for v in live.state["versions"] if v.get("job") == 1]
    assert record["previous_version"] == good and record["val_photos"] >= 2
    assert record["previous_segm_map"] > 0.0  # the good model finds the objects it was trained on
    assert record["segm_map"] < record["previous_segm_map"]
    assert record["accepted"] is False
    assert live.backend.model_version == good and live.state["current"]["model_version"] == good
    assert any("is worse" in m and good in m for m in live.messages)
    # Its run folder says so, and `score`/`eval --model runs/train` keep taking the good model.
    rejected = live.settings.folder / record["run"]
    assert "is worse" in (rejected / NOT_USED_FILE).read_text()
    assert (rejected / "weights" / "best.pt").is_file()
    assert newest_best_checkpoint(best.parents[2]) == best
    assert live.state["pending"] == 0  # its labels were trained on: not again
    assert record["skipped_unknown_classes"] == {"sofa": 1}
    assert any(
        "labels of classes the project does not have were skipped: sofa x1" in m for m in live.messages
    )


@pytest.mark.slow
def test_broken_killed_and_interrupted_jobs_leave_the_old_model_answering(
    live_factory: Callable[..., Live], scenes: dict[str, Any]
) -> None:
    live = live_factory("broken jobs", scenes, n=4)
    for name in live.names[:3]:
        live.label(name)
    wait_for(lambda: live.state["jobs"] == 1 and not live.trainer.running, what="the first job")
    first = live.state["current"]["model_version"]
    assert live.backend.model_version == first

    # A killed child: the old model answers, the run it was writing is never loaded, labels stay counted.
    live.label(live.names[3])
    live.client.call("train", lambda: live.client.sdk.ml.train(id=live.ml_id))
    wait_for(lambda: live.trainer.running, 30, "job 2")
    wait_for(lambda: len(list(live.settings.runs.glob("label*"))) == 2, 120, "job 2's run folder")
    os.kill(live.job_pid(), signal.SIGKILL)
    wait_for(lambda: not live.trainer.running, 30, "the killed job to be noticed")
    state = live.state
    assert "killed (SIGKILL)" in state["failures"][-1]["error"] and state["failures"][-1]["job"] == 2
    assert live.backend.model_version == first and state["pending"] == 1
    assert any("failed" in m and first in m for m in live.messages)
    killed_run = live.settings.runs / "label-job0002"
    assert "training job 2 failed: " in (killed_run / NOT_USED_FILE).read_text()
    newest = newest_best_checkpoint(live.settings.runs)
    assert newest is not None and newest.resolve() == live.trainer.current_checkpoint()

    # An unreadable photo in the project: the job fails, the old model answers.
    broken_url = live.client.upload_file(live.project_id, "broken.jpg", b"\xff\xd8\xff\xe0 not a jpeg at all")
    (broken,) = live.client.import_tasks(
        live.project_id, [{"data": {"image": broken_url, "name": "broken.jpg"}}]
    )
    result = annotation(
        [{"category": "desk", "segmentation": [[1, 1, 30, 1, 30, 30, 1, 30]]}], SIZE, SIZE, live.schema
    )["result"]
    live.client.sdk.annotations.create(id=broken, result=result)
    live.label(live.names[0])  # a second label of a photo: 3 counted, so due, job 3 starts
    wait_for(lambda: len(live.state["failures"]) == 2, what="job 3 to fail")
    assert live.state["failures"][-1]["job"] == 3
    assert (
        f"task {broken}: broken.jpg from Label Studio is not a readable image"
        in live.state["failures"][-1]["error"]
    )
    assert any(m.startswith(f"training job 3 failed, {first} keeps answering") for m in live.messages)

    # The labels are still due: job 4 starts at once, leaving the photo out, and trains every other one.
    wait_for(lambda: live.state["jobs"] == 4 and not live.trainer.running, what="job 4")
    fourth = live.state["versions"][-1]
    assert fourth["job"] == 4 and fourth["trained_photos"] + fourth["val_photos"] == 4
    assert live.state["pending"] == 0 and list(live.state["left_out"]) == [str(broken)]
    status = project_status(live.client, live.settings.project, live.settings.folder)
    assert list(status["left_out"]) == [str(broken)] and "broken.jpg" in status["left_out"][str(broken)]

    # Restarted between jobs: the same model and counters, nothing trained again.
    before = live.state
    live.restart()
    assert live.backend.model_version == live.state["current"]["model_version"]
    live.trainer.poke()
    assert not live.trainer.running and live.state["jobs"] == before["jobs"]
    assert live.state["versions"] == before["versions"]

    # Restarted while a job runs (the child outlives the backend): the new backend waits for it and
    # adopts its result once; the job is not started again.
    live.client.call("train", lambda: live.client.sdk.ml.train(id=live.ml_id))
    wait_for(lambda: live.trainer.running, 30, "job 5")
    live.restart(stop_job=False)
    assert live.trainer.running  # the new backend knows the job is still running
    wait_for(lambda: not live.trainer.running, what="job 5 to be adopted")
    assert live.state["jobs"] == 5 and [v["job"] for v in live.state["versions"]].count(5) == 1


@pytest.mark.slow
def test_label_studio_unreachable_is_retried_later(
    labelstudio: LabelStudioServer, key: str, tmp_path: Path
) -> None:
    messages: list[str] = []
    closed = f"http://127.0.0.1:{_free_port()}"
    trainer = Trainer(settings(tmp_path, closed, "gone away"), key, None, log=messages.append)
    try:
        trainer.notify("START_TRAINING", {"project": {"id": 1}})
        wait_for(lambda: len(trainer.state["failures"]) >= 2, 120, "the retry")  # tried again by itself
    finally:
        trainer.close()
    assert all("not reachable" in f["error"] for f in trainer.state["failures"][:2])
    assert any("trying again in 1s" in m for m in messages) and trainer.state["current"] is None
    assert key not in (tmp_path / "backend" / STATE_FILE).read_text()
    assert all(key not in p.read_text() for p in (tmp_path / "backend" / "jobs").glob("*/*.json"))


def _square(x0: int, y0: int, x1: int, y1: int, label: str, score: float | None = None) -> dict[str, Any]:
    """A polygon region on a 100 x 100 photo (percent = pixels)."""
    result = {
        "from_name": "label",
        "to_name": "image",
        "type": "polygonlabels",
        "original_width": 100,
        "original_height": 100,
        "value": {"points": [[x0, y0], [x1, y0], [x1, y1], [x0, y1]], "polygonlabels": [label]},
    }
    if score is not None:
        result["score"] = score
    return result


def four_photo_project(client: LabelStudio, title: str) -> tuple[Any, list[int]]:
    """A new project of four plain 100 x 100 photos: (project, task ids)."""
    project = client.create_project(title, LabelSchema(tuple(DEFAULT_CLASSES)))
    urls = []
    for n in range(4):
        buffer = io.BytesIO()
        Image.new("RGB", (100, 100), (40 * n, 90, 90)).save(buffer, format="JPEG")
        urls.append(client.upload_file(project.id, f"p{n}.jpg", buffer.getvalue()))
    return project, client.import_tasks(project.id, [{"data": {"image": u}} for u in urls])


def test_label_status_numbers_recomputed_by_hand(
    labelstudio: LabelStudioServer, key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    client = LabelStudio.connect(labelstudio.url, labelstudio.api_key)
    project, (a, b, c, _) = four_photo_project(client, "status by hand")
    # Nothing suggested yet (no predictions, no backend folder): one line, read from the real project.
    nowhere = tmp_path / "no-backend"
    args = ["label", "status", "--url", labelstudio.url, "--project", "status by hand"]
    code, out, err = run([*args, "--backend-dir", str(nowhere)], capsys)
    assert code == 0, err
    assert out.splitlines() == [
        f"status by hand: 0 of 4 task(s) labelled; no model has suggested labels here yet (none in "
        f"{nowhere}, no predictions in the project): start `officescore label backend --train`, or push "
        "with --model"
    ]
    sdk = client.sdk

    # Task a: desk kept as it was (IoU 1), chair moved 5 px (IoU 750/1050), monitor deleted, lamp added.
    shown = sdk.predictions.create(
        task=a,
        model_version="hand-v1",
        result=[
            _square(10, 10, 50, 50, "desk", 0.9),
            _square(60, 60, 90, 90, "chair", 0.8),
            _square(10, 60, 30, 90, "monitor", 0.7),
        ],
    )
    # Suggested, not labelled yet: listed (it said "no predictions in the project").
    code, out, err = run([*args, "--backend-dir", str(nowhere)], capsys)
    assert code == 0, err
    rows = [
        [cell.strip() for cell in line.split("│")][1:-1] for line in out.splitlines() if "│ hand-v1" in line
    ]
    assert "no model has suggested" not in out and rows[1][:2] == ["hand-v1", "0/1"], out
    time.sleep(0.05)
    sdk.annotations.create(
        id=a,
        result=[
            _square(10, 10, 50, 50, "desk"),
            _square(65, 60, 95, 90, "chair"),
            _square(60, 10, 90, 40, "lamp"),
        ],
        request_options={"additional_body_parameters": {"parent_prediction": shown.id}},
    )
    # Task b: the desk redrawn elsewhere (IoU 400/2800 < 0.5): not kept; it and a chair added.
    sdk.predictions.create(task=b, model_version="hand-v1", result=[_square(0, 0, 40, 40, "desk", 0.9)])
    time.sleep(0.05)
    sdk.annotations.create(id=b, result=[_square(20, 20, 60, 60, "desk"), _square(70, 70, 90, 90, "chair")])
    # Task c: labelled before any prediction was made: not counted. Task d: not labelled.
    sdk.annotations.create(id=c, result=[_square(20, 20, 60, 60, "desk")])
    time.sleep(0.05)
    sdk.predictions.create(task=c, model_version="hand-v2", result=[_square(20, 20, 60, 60, "desk", 0.9)])

    # The backend's own record of hand-v1 (as a job writes it): trained on 8 photos, its threshold.
    backend = tmp_path / "backend"
    backend.mkdir()
    suggest = {"conf": 0.4237, "by_mask": True}
    record = {"model_version": "hand-v1", "trained_photos": 8, "segm_map": 0.5, "suggest": suggest}
    state = {"project": "status by hand", "versions": [record], "current": record, "pending": 0}
    (backend / STATE_FILE).write_text(json.dumps(state))
    args += ["--backend-dir", str(backend)]
    code, out, err = run([*args, "--json"], capsys)
    assert code == 0, err
    document = json.loads(out)
    assert (document["tasks"], document["labelled_tasks"]) == (4, 3)
    # hand-v2 is listed (Label Studio lists it too) but was never shown before a label.
    unshown, row = document["versions"]
    assert (unshown["model_version"], unshown["suggested"], unshown["tasks"]) == ("hand-v2", 1, 0)
    assert row["model_version"] == "hand-v1" and row["suggest"] == suggest
    assert (row["suggested"], row["tasks"], row["predicted"], row["kept"], row["added"], row["labelled"]) == (
        2,
        2,
        4,
        2,
        3,
        5,
    )
    assert row["kept_share"] == 0.5  # of 4 suggestions
    assert row["from_suggestions"] == 0.4  # of 5 final labels
    assert row["mean_kept_iou"] == pytest.approx((1.0 + 750 / 1050) / 2, abs=1e-4)
    # Not kept: the monitor deleted (nothing there), b's desk redrawn (IoU 400/2800 >= 0.1).
    assert (row["redrawn"], row["reclassed"], row["deleted"]) == (1, 0, 1)
    assert row["not_kept_by_class"] == {"monitor": {"deleted": 1}, "desk": {"redrawn": 1}}
    code, out, err = run(args, capsys)
    assert code == 0, err
    rows = [line for line in out.splitlines() if "│ hand-v1" in line]  # one in each table
    trained, changed, unkept = ([cell.strip() for cell in line.split("│")][1:-1] for line in rows)
    assert trained == ["hand-v1", "8", "0.500", "-", "0.42", "-"], out  # photos, mAPs, its conf, train s
    # (the caption wraps to a narrow table's width)
    assert "conf: its own threshold, on class x mask score² (-: 0.30 on the class score)" in " ".join(
        out.split()
    )
    assert changed == ["hand-v1", "2/2", "50%", "3", "0.86", "40%"], out  # labelled, kept, added, IoU, ...
    # Not kept: redrawn, reclassed, deleted, and the classes with the most (equal counts by name).
    assert unkept == ["hand-v1", "2", "1", "0", "1", "desk 1, monitor 1"], out


def test_the_cli_serves_and_trains_and_refuses_what_cannot_work(
    labelstudio: LabelStudioServer, key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import subprocess
    import sys

    client = LabelStudio.connect(labelstudio.url, labelstudio.api_key)
    client.create_project("cli training", LabelSchema(tuple(DEFAULT_CLASSES)))
    base = ["label", "backend", "--model", str(tmp_path / "runs"), "--url", labelstudio.url, "--train"]
    code, _, err = run(base, capsys)
    assert code == 2 and err.startswith("error: --train needs --connect PROJECT"), err
    code, _, err = run([*base[:3], str(tmp_path / "x.pt"), *base[4:], "--connect", "cli training"], capsys)
    assert code == 2 and "--model " in err and "with --train give a runs folder" in err, err
    code, _, err = run([*base, "--connect", "cli training", "--train-every", "0"], capsys)
    assert code == 2 and "--train-every 0: must be at least 1" in err, err

    port = _free_port()
    command = [sys.executable, "-m", "officescore", *base, "--connect", "cli training", "--port", str(port)]
    command += ["--backend-dir", str(tmp_path / "backend"), "--device", "cpu"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ.copy())
    try:
        url = f"http://127.0.0.1:{port}"

        def up() -> bool:
            try:
                return requests.get(f"{url}/health", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_for(up, 120, "the backend")
        assert requests.get(f"{url}/health", timeout=10).json()["model_version"] == ml.NO_MODEL_VERSION
        metrics = requests.get(f"{url}/metrics", timeout=60).json()
        assert metrics["versions"] == [] and metrics["pending_labels"] == 0 and metrics["train_every"] == 10
        assert (tmp_path / "backend" / CURVE_FILE).is_file() and (tmp_path / "backend" / STATE_FILE).is_file()
        # Label Studio hands /setup its own access token: never logged, never stored.
        setup = {"project": "1.0", "hostname": labelstudio.url, "access_token": "ls-token-do-not-keep"}
        assert requests.post(f"{url}/setup", json=setup, timeout=10).status_code == 200
    finally:
        process.send_signal(signal.SIGINT)
        out_bytes, err_bytes = process.communicate(timeout=60)
    assert process.returncode == 0 and out_bytes.decode().rstrip().endswith("stopped"), out_bytes.decode()
    banner = " ".join(out_bytes.decode().split())  # the banner says training is on, and where it goes
    assert "training: a job every 10 new label(s) (0 waiting), 10 epoch(s) or 10 min" in banner, banner
    assert labelstudio.api_key not in err_bytes.decode(errors="replace")
    assert "POST /setup" in err_bytes.decode() and "ls-token-do-not-keep" not in err_bytes.decode()
    for path in (tmp_path / "backend").rglob("*"):
        if path.is_file():
            assert b"ls-token-do-not-keep" not in path.read_bytes() and key.encode() not in path.read_bytes()


def test_repredict_with_no_model_yet_predicts_nothing() -> None:
    """--repredict after a first job that failed: no model answers yet, so nothing is predicted (and
    Label Studio is not asked for the tasks)."""
    from officescore.label.live import repredict_unlabelled

    class NoModelYet:
        client = None  # any call on it would fail

        def current(self) -> None:
            return None

    assert repredict_unlabelled(NoModelYet()) == 0


def as_suggested(predictions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """COCO results scored as the backend's suggestions: class score x mask score², by hand."""
    return [
        {**p, "score": p["score"] * p["mask_score"] ** 2} if "segmentation" in p else p for p in predictions
    ]


def test_each_model_suggests_at_its_own_best_f1_threshold(
    scenes: dict[str, Any], good_model: Path, tmp_path: Path
) -> None:
    """The job finds the threshold with the best mask F1 on its val photos (averaged over bootstrap
    resamples) on the suggestion score, class score x mask score²; the trainer keeps it with the
    version, and the backend (no --conf) suggests at it, by that score. --conf given: that, on the
    class score, always."""
    from officescore.dataset import OfficeDataset, build_transforms
    from officescore.evaluate import category_map, evaluate_coco, evaluate_model
    from officescore.evaluate.inputs import load_gt
    from officescore.evaluate.match import bagged_best_f1_conf, best_f1_conf
    from officescore.label.predict import model_version
    from officescore.label.trainjob import MIN_VAL_OBJECTS, RESULT_FILE, val_scores
    from officescore.model import model_from_checkpoint

    dataset = scenes["base"] / "good" / "dataset"  # good_model's own data set: 2 val photos
    scores = val_scores(good_model, dataset, "cpu")
    suggest = scores["suggest"]
    assert suggest is not None and suggest["tp"] > 0 and 0.0 < suggest["conf"] <= 1.0
    # The same F1 as eval's at that threshold, and none of the usual fixed thresholds does better.
    val_set = OfficeDataset(dataset, "val", build_transforms(train=False))
    model, classes = model_from_checkpoint(good_model, "cpu")
    ids = category_map(classes, val_set.classes)
    _, found = evaluate_model(model, val_set, "cpu", category_ids=ids, mask_scores=True)
    predictions = as_suggested(found)

    def f1_at(conf: float) -> float:
        return evaluate_coco(val_set.annotation_file, predictions, conf=conf)["segm"]["f1"] or 0.0

    assert f1_at(suggest["conf"]) == pytest.approx(suggest["f1"])
    # The best-F1 threshold averaged over resamples of the val photos, not the one sample's.
    masks = [p for p in predictions if "segmentation" in p]
    assert suggest == {**bagged_best_f1_conf(load_gt(val_set.annotation_file), masks), "by_mask": True}
    by_class = val_scores(good_model, dataset, "cpu", by_mask=False)["suggest"]  # class score alone
    raw = [p for p in found if "segmentation" in p]
    assert by_class == bagged_best_f1_conf(load_gt(val_set.annotation_file), raw) and by_class != suggest
    # All ten photos as val: there the average over resamples is not the one sample's best.
    wide = tmp_path / "wide"
    shutil.copytree(dataset, wide)
    val, train = (json.loads((wide / f"{split}.json").read_text()) for split in ("val", "train"))
    val["images"] += train["images"]
    val["annotations"] += train["annotations"]
    (wide / "val.json").write_text(json.dumps(val))
    wide_val = OfficeDataset(wide, "val", build_transforms(train=False))
    _, wide_predictions = evaluate_model(model, wide_val, "cpu", category_ids=ids, mask_scores=True)
    wide_masks = [p for p in as_suggested(wide_predictions) if "segmentation" in p]
    wide_suggest = val_scores(good_model, wide, "cpu")["suggest"]
    assert wide_suggest == {
        **bagged_best_f1_conf(load_gt(wide_val.annotation_file), wide_masks),
        "by_mask": True,
    }
    assert wide_suggest["conf"] != best_f1_conf(load_gt(wide_val.annotation_file), wide_masks)["conf"]
    # One val photo (fewer than MIN_VAL_OBJECTS objects): no threshold of its own, the default stays.
    few = tmp_path / "few"
    shutil.copytree(dataset, few)
    val = json.loads((few / "val.json").read_text())
    val["images"] = val["images"][:1]
    val["annotations"] = [a for a in val["annotations"] if a["image_id"] == val["images"][0]["id"]]
    assert 0 < len(val["annotations"]) < MIN_VAL_OBJECTS <= suggest["tp"] + suggest["fn"]
    (few / "val.json").write_text(json.dumps(val))
    assert val_scores(good_model, few, "cpu")["suggest"] is None
    # Exactly MIN_VAL_OBJECTS labelled objects (the ten photos, their other labels left out): enough.
    enough = tmp_path / "enough"
    shutil.copytree(wide, enough)
    val = json.loads((enough / "val.json").read_text())
    val["annotations"] = [a for a in val["annotations"] if not a["iscrowd"]][:MIN_VAL_OBJECTS]
    assert len(val["annotations"]) == MIN_VAL_OBJECTS
    (enough / "val.json").write_text(json.dumps(val))
    at_least = val_scores(good_model, enough, "cpu")["suggest"]
    assert at_least is not None and at_least["tp"] + at_least["fn"] == MIN_VAL_OBJECTS

    # A job that ended while the backend was down: adopted at start, with its threshold.
    own = dict(suggest, conf=0.42)  # a value no default has
    live = settings(tmp_path, "http://127.0.0.1:9", "own threshold")
    job = live.folder / "jobs" / "job-0001"
    job.mkdir(parents=True)
    result = {
        "ok": True,
        "run_dir": str(good_model.parents[1]),
        "checkpoint": str(good_model),
        "model_version": model_version(good_model),
        "segm_map": scores["segm_map"],
        "suggest": own,
        "trained_photos": 8,
        "val_photos": 2,
        "train_tasks": [1],
        "val_tasks": [2],
        "pulled_at": time.time(),
    }
    (job / RESULT_FILE).write_text(json.dumps(result))
    running = {"job": 1, "folder": "jobs/job-0001", "pid": 0, "pending_at_start": 3, "started": time.time()}
    (live.folder / STATE_FILE).write_text(
        json.dumps({"project": "own threshold", "jobs": 1, "running": running})
    )
    trainer = Trainer(live, "not-a-key")
    try:
        assert trainer.current_conf() == 0.42 and trainer.versions()[-1]["suggest"] == own
        backend = ml.Backend(live.runs, device="cpu", conf=None, trainer=trainer)
        loaded = backend.current()
        assert (loaded.predictor.conf, loaded.by_mask) == (0.42, True)
        assert backend.suggests() == "suggests class x mask score² >= 0.42"
        given = ml.Backend(live.runs, device="cpu", conf=0.3, trainer=trainer).current()
        assert (given.predictor.conf, given.by_mask) == (0.3, False)
        static = ml.Backend(good_model, device="cpu", conf=None).current()
        assert (static.predictor.conf, static.by_mask) == (DEFAULT_CONF, False)
        # bench/assist.py's static backend: the first model at its own threshold, as the trainer showed it.
        assert ml.Backend(good_model, device="cpu", conf=0.3, by_mask=True).current().by_mask
        # Shown: the detections whose class x mask score² reaches the model's own threshold (here
        # the median of those scores, so some are shown and some not), at that score.
        photos = sorted((dataset / "images").iterdir())
        every = loaded.predictor.predict(photos, conf=0.05, workers=0)
        own_conf = float(np.median([d.score * d.mask_score**2 for r in every for d in r.detections]))
        trainer.state["current"]["suggest"] = dict(suggest, conf=own_conf, by_mask=True)
        backend = ml.Backend(live.runs, local_root=dataset, device="cpu", conf=None, trainer=trainer)
        tasks = [
            {"id": n, "data": {"image": f"/data/local-files/?d=images/{p.name}"}}
            for n, p in enumerate(photos)
        ]
        answers = backend.predict(tasks, None)
        dropped = 0
        for answer, result in zip(answers, every, strict=True):
            scored = [d.score * d.mask_score**2 for d in result.detections]
            dropped += sum(score < own_conf for score in scored)
            want = sorted(round(score, 4) for score in scored if score >= own_conf)
            assert sorted(r["score"] for r in answer["result"] if r["type"] == "polygonlabels") == want
        assert dropped and sum(len(a["result"]) for a in answers)  # some shown, some not
        # A threshold found on the class score (a job from before suggestions were scored by their
        # masks) is not applied to the suggestion score: the default, on the class score.
        trainer.state["current"]["suggest"] = dict(suggest, conf=0.42, by_mask=None)
        assert trainer.current_conf() is None and backend.threshold() == (DEFAULT_CONF, False)
    finally:
        trainer.close()


def test_a_new_model_is_no_less_precise_than_the_one_labellers_saw(
    scenes: dict[str, Any], good_model: Path, tmp_path: Path
) -> None:
    """`compare_on_val` evaluates the new and the current model on the same val photos and hands the
    current one's detections, at the threshold its suggestions are shown at, to the new model's
    threshold pick as a floor (`bagged_best_f1_conf(replaced=...)`, worked by hand in
    test_evaluate.py). The good model stands for both."""
    from officescore.dataset import OfficeDataset, build_transforms
    from officescore.evaluate.inputs import load_gt
    from officescore.evaluate.match import bagged_best_f1_conf, match_counts
    from officescore.label.trainjob import compare_on_val

    wide = tmp_path / "wide"  # all ten photos as val: enough objects for a threshold of its own
    shutil.copytree(scenes["base"] / "good" / "dataset", wide)
    val, train = (json.loads((wide / f"{split}.json").read_text()) for split in ("val", "train"))
    val["images"] += train["images"]
    val["annotations"] += train["annotations"]
    (wide / "val.json").write_text(json.dumps(val))
    gt = load_gt(OfficeDataset(wide, "val", build_transforms(train=False)).annotation_file)

    first, none = compare_on_val(good_model, None, None, wide, "cpu")  # the first model: no floor
    assert none == {} and "floor_precision" not in first["suggest"]
    masks = first["masks"]  # at their class scores
    suggested = as_suggested(masks)  # as the backend shows them at a model's own threshold
    assert first["suggest"] == {**bagged_best_f1_conf(gt, suggested), "by_mask": True}
    shown_at = sorted({m["score"] for m in suggested})[-3]  # the current model shown at its 3rd best

    def precision(found: list[dict[str, Any]], conf: float) -> float:
        counts = match_counts(gt, found, "segm", conf, {cid: k for k, cid in enumerate(sorted(gt.cats))})
        return counts.tp.sum() / (counts.tp.sum() + counts.fp.sum())

    new, old = compare_on_val(good_model, good_model, shown_at, wide, "cpu")
    assert old["masks"] == masks and new["suggest"] == {
        **bagged_best_f1_conf(gt, suggested, replaced=(suggested, shown_at)),
        "by_mask": True,
    }
    assert new["suggest"]["floor_precision"] == pytest.approx(precision(suggested, shown_at))
    # No threshold of its own: the current model is shown at the backend's default, by class score.
    default, _ = compare_on_val(good_model, good_model, None, wide, "cpu")
    assert default["suggest"]["floor_precision"] == pytest.approx(precision(masks, DEFAULT_CONF))
    # so the two say which was used
    assert precision(suggested, shown_at) != pytest.approx(precision(masks, DEFAULT_CONF))
    # and at the default the class score shows other suggestions than the suggestion score would
    shown = [sum(m["score"] >= DEFAULT_CONF for m in found) for found in (masks, suggested)]
    assert shown[0] != shown[1]


def test_the_job_takes_the_floor_at_the_threshold_labellers_see(
    labelstudio: LabelStudioServer,
    key: str,
    scenes: dict[str, Any],
    good_model: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`run_job`, in this process on a real project: it hands `compare_on_val` the current model and
    the threshold its suggestions are shown at, as the trainer wrote them into job.json (the live
    tests' val photos hold too few objects for a threshold, so their jobs cannot show this)."""
    from officescore.label import trainjob

    client = LabelStudio.connect(labelstudio.url, key)
    _, tasks = push_scenes(client, tmp_path, "floor at the shown threshold", scenes, 4)
    for name, task in tasks.items():
        client.sdk.annotations.create(
            id=task, result=true_labels(scenes, name, LabelSchema(tuple(DEFAULT_CLASSES)))
        )

    live = settings(tmp_path, labelstudio.url, "floor at the shown threshold")
    folder = tmp_path / "job"
    folder.mkdir()
    job = {
        "job": 2, "url": live.url, "project": live.project, "local_root": None,
        "photo_cache": str(tmp_path / "cache"), "runs": str(live.runs), "current": str(good_model),
        "current_conf": 0.42, "weights": "none", "arch": live.arch, "img_size": live.img_size,
        "epochs": 1, "minutes": None, "batch_size": 2, "lr": live.lr, "model_kwargs": live.model_kwargs,
        "device": "cpu", "amp": False, "val_fraction": 0.5, "val_tasks": [], "train_tasks": [], "seed": 0,
    }  # fmt: skip
    (folder / trainjob.JOB_FILE).write_text(json.dumps(job))
    calls: list[tuple[Any, ...]] = []
    real = trainjob.compare_on_val

    def spy(new: Path, current: Path | None, current_conf: float | None, dataset: Path, device: str) -> Any:
        calls.append((current, current_conf))
        return real(new, current, current_conf, dataset, device)

    monkeypatch.setattr(trainjob, "compare_on_val", spy)
    result = trainjob.run_job(folder)
    assert result["ok"] and result["val_photos"] >= 1 and result["current_segm_map"] is not None
    assert calls == [(good_model, 0.42)]


@pytest.mark.parametrize("proc", ["/proc", "/nonexistent-proc"])
def test_a_running_job_is_recognised_by_its_command_line(
    tmp_path: Path, proc: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a restart the backend waits for a job still running: its pid must still run the job on
    that folder (read from /proc, or from `ps` where there is no /proc, as on macOS)."""
    import subprocess
    import sys

    from officescore.label import trainer as trainer_module

    monkeypatch.setattr(trainer_module, "PROC", Path(proc))
    folder = tmp_path / "jobs" / "job-0001"
    pretend = [sys.executable, "-c", "import time; time.sleep(60)", "-m", "officescore.label.trainjob"]
    child = subprocess.Popen([*pretend, str(folder)])
    other = subprocess.Popen([*pretend, str(tmp_path)])
    viewer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", str(folder)])
    try:
        # Linux fills in a new program's argv a moment after Popen returns
        for process in (child, other, viewer):
            deadline = time.monotonic() + 30
            while "time.sleep" not in (trainer_module._command_line(process.pid) or ""):
                assert time.monotonic() < deadline, "the child never showed its command line"
                time.sleep(0.01)
        assert trainer_module._alive(child.pid, folder)
        assert not trainer_module._alive(other.pid, folder)  # a job on another folder (or a reused pid)
        assert not trainer_module._alive(viewer.pid, folder)  # a program that only names the folder
        assert not trainer_module._alive(0, folder)
    finally:
        for process in (child, other, viewer):
            process.kill()
            process.wait()
    assert not trainer_module._alive(child.pid, folder)  # gone


def test_labels_made_before_the_backend_started_count_toward_train_every(
    labelstudio: LabelStudioServer, key: str, tmp_path: Path
) -> None:
    """Two labels (and a skip) made before `label backend --train` starts reached no webhook: read
    from the real project at start, they are counted (2 of --train-every 3, nothing due yet); a restart
    counts them again only once, and a label the running backend did not hear is added."""
    from officescore.label.live import start_trainer

    client = LabelStudio.connect(labelstudio.url, labelstudio.api_key)
    project, (a, b, c, d) = four_photo_project(client, "labelled before the backend")
    client.sdk.annotations.create(id=a, result=[_square(10, 10, 50, 50, "desk")])
    client.sdk.annotations.create(id=b, result=[_square(20, 20, 60, 60, "chair")])
    client.sdk.annotations.create(id=c, result=[], was_cancelled=True)  # a skip is no label

    logged: list[str] = []

    def start() -> Trainer:
        return start_trainer(
            client,
            key,
            project.title,
            labelstudio.url,
            tmp_path / "runs",
            tmp_path / "backend",
            None,
            "cpu",
            log=logged.append,
            every=EVERY,
        )

    trainer = start()
    try:
        assert trainer.state["pending"] == 2 and not trainer.running
        assert logged == [
            "2 label(s) made while the backend was not running counted: 2 label(s) since the last model, "
            "a job every 3"
        ]
    finally:
        trainer.close()
    time.sleep(0.05)
    client.sdk.annotations.create(id=d, result=[_square(10, 10, 30, 30, "lamp")])
    trainer = start()
    try:
        state = json.loads((tmp_path / "backend" / STATE_FILE).read_text())
        assert state["pending"] == 3 and len(state["events"]) == 3, state
        assert logged[-1].startswith("1 label(s) made while"), logged
    finally:
        trainer.close()
