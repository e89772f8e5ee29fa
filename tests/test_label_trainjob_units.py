"""One training job (`label.trainjob`) without Label Studio or torch: Label Studio, the pull, the
ingest and the training faked, so what the job hands the trainer (the labels it covers, the model it
starts from, the photos it trained and validated on, whether to try again) is checked in seconds."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from officescore.errors import DataError
from officescore.label import trainjob
from officescore.label.client import LabelStudioError

TASKS = {"a.jpg": 11, "b.jpg": 12, "c.jpg": 13, "d.jpg": 14}
LABELS_UNTIL = 1_700_000_000.5  # the newest label pulled, by Label Studio's clock (not the job's)


def _job(tmp_path: Path, current: Path | None) -> Path:
    folder = tmp_path / "job"
    folder.mkdir()
    job = {
        "job": 2, "url": "http://127.0.0.1:9", "project": "units", "local_root": None,
        "photo_cache": str(tmp_path / "cache"), "runs": str(tmp_path / "runs"),
        "current": str(current) if current else None, "current_conf": 0.42, "weights": "coco",
        "arch": "maskrcnn_mobilenet_v3_fpn", "img_size": 64, "epochs": 1, "minutes": 5,
        "batch_size": 2, "lr": None, "model_kwargs": {}, "device": "cpu", "amp": False,
        "val_fraction": 0.2, "val_tasks": [12], "train_tasks": [11, 13, 14], "nice": 0, "seed": 0,
    }  # fmt: skip
    (folder / trainjob.JOB_FILE).write_text(json.dumps(job))
    return folder


class FakeRun:
    """Label Studio, `pull_project`, `ingest_export`, `train` and `compare_on_val` as a job sees them:
    four labelled photos, each the only photo of its task."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        from officescore import ingest, train
        from officescore.label import client, pull

        self.tmp_path = tmp_path
        self.pull_began: float | None = None
        self.configs: list[Any] = []
        self.compared: list[tuple[Any, ...]] = []
        self.left_out: list[int] | None = None  # what the job told the pull to leave out
        self.unreadable: dict[int, str] = {}  # what the pull finds unreadable
        project = SimpleNamespace(id=4, schema=SimpleNamespace(classes=("desk", "chair")))
        monkeypatch.setattr(client, "api_key", lambda: "not-a-key")
        monkeypatch.setattr(
            client.LabelStudio,
            "connect",
            classmethod(lambda cls, url, key: SimpleNamespace(project=lambda t: project)),
        )
        monkeypatch.setattr(pull, "pull_project", self.pull)
        monkeypatch.setattr(ingest, "ingest_export", self.ingest)
        monkeypatch.setattr(train, "train", self.train)
        monkeypatch.setattr(trainjob, "compare_on_val", self.compare)

    def pull(
        self,
        client: Any,
        title: str,
        out: Path,
        local_root: Any,
        cache: Any,
        leave_out: Any,
        skip_unreadable: bool,
    ) -> Any:
        assert skip_unreadable  # a job names every unreadable photo, not the first
        self.left_out = list(leave_out)
        self.pull_began = time.time()
        time.sleep(0.02)  # a pull takes a while; labels may reach the backend meanwhile
        out.mkdir(parents=True, exist_ok=True)  # a pull replaces an earlier one
        images = [{"file_name": name, "label_studio_task": task} for name, task in TASKS.items()]
        export = {
            "images": images,
            "annotations": [{"category_id": 1}, {"category_id": 3}],
            "categories": [{"id": 1, "name": "desk"}, {"id": 3, "name": "sofa"}],
        }
        (out / "annotations.json").write_text(json.dumps(export))
        return SimpleNamespace(
            export=out / "annotations.json",
            images=len(images),
            labels_until=LABELS_UNTIL,
            unreadable=self.unreadable,
        )

    def ingest(self, export: Path, out: Path, val_fraction: float, classes: list[str]) -> Any:
        out.mkdir(parents=True)
        images = [
            {"id": n, "file_name": f"img{n}.jpg", "original_file_name": name} for n, name in enumerate(TASKS)
        ]
        # b.jpg's object is a crowd region
        annotations = [{"id": n, "image_id": n, "iscrowd": int(n == 1)} for n in range(len(TASKS))]
        (out / "train.json").write_text(json.dumps({"images": images, "annotations": annotations}))
        (out / "dataset.json").write_text(json.dumps({"counts": {}}))
        return SimpleNamespace(problems=[])

    def train(self, config: Any) -> Any:
        self.configs.append(config)
        run_dir = self.tmp_path / "runs" / config.name
        (run_dir / "weights").mkdir(parents=True)
        best = run_dir / "weights" / "best.pt"
        best.write_bytes(b"new weights")
        return SimpleNamespace(
            run_dir=run_dir,
            best_checkpoint=best,
            last_checkpoint=best,
            epochs_completed=1,
            seconds=1.0,
            notes=[],
        )

    def compare(self, new: Path, current: Path | None, conf: float | None, dataset: Path, device: str) -> Any:
        self.compared.append((new, current, conf))
        return {"segm_map": 0.5, "bbox_map": 0.4, "suggest": None}, {"segm_map": 0.3, "bbox_map": 0.2}


def test_a_job_fine_tunes_the_current_model_and_covers_the_labels_before_its_pull(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The job starts from the current model (not from COCO again), reports the photos it trained and
    validated on (the backend's fixed held-out set: 3 and 1), and the moment it began to pull: a
    label that reaches the backend during the pull may be missing from it, so it must stay counted.
    It trains within --minutes, and its data set's counts are those of the split it trained on."""
    fake = FakeRun(monkeypatch, tmp_path)
    current = tmp_path / "runs" / "label-job0001" / "weights" / "best.pt"
    result = trainjob.run_job(_job(tmp_path, current))
    assert [config.weights for config in fake.configs] == [str(current)]
    assert fake.pull_began is not None and result["pulled_at"] <= fake.pull_began
    # and the newest label it pulled, by Label Studio's clock (written as soon as the pull ended, for
    # a backend restarted while the job runs)
    assert result["labels_until"] == LABELS_UNTIL
    pulled = json.loads((tmp_path / "job" / trainjob.PULLED_FILE).read_text())
    assert pulled == {"pulled_at": result["pulled_at"], "labels_until": LABELS_UNTIL}
    assert (result["trained_photos"], result["val_photos"]) == (3, 1)
    assert (result["train_tasks"], result["val_tasks"]) == ([11, 13, 14], [12])
    assert (result["segm_map"], result["current_segm_map"]) == (0.5, 0.3)
    assert fake.compared == [(Path(result["checkpoint"]), current, 0.42)]
    assert result["skipped_unknown_classes"] == {"sofa": 1}
    assert result["labelled_photos"] == 4 and [c.max_minutes for c in fake.configs] == [5]  # --minutes
    # The data set it trained on says so: the split's counts (b.jpg's crowd region held out with it).
    meta = json.loads((tmp_path / "job" / "dataset" / "dataset.json").read_text())
    assert meta["counts"] == {
        "train": {"images": 3, "annotations": 3, "crowd": 0},
        "val": {"images": 1, "annotations": 1, "crowd": 1},
    }
    assert meta["val_fraction"] == 0.2


def test_a_job_leaves_its_threshold_beside_the_weights(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`prelabel` and `label push` suggest as the backend does only if the run folder says at which
    threshold: the job's `suggest`, for the very weights it found it for."""
    from officescore.label.predict import SUGGEST_FILE, own_threshold

    FakeRun(monkeypatch, tmp_path)
    suggest = {"conf": 0.37, "by_mask": True, "f1": 0.8}
    monkeypatch.setattr(
        trainjob, "compare_on_val", lambda *args: ({"segm_map": 0.5, "bbox_map": 0.4, "suggest": suggest}, {})
    )
    result = trainjob.run_job(_job(tmp_path, None))
    run_dir = Path(result["run_dir"])
    assert json.loads((run_dir / SUGGEST_FILE).read_text()) == {
        "model_version": result["model_version"],
        **suggest,
    }
    assert own_threshold(result["checkpoint"], result["model_version"]) == 0.37
    assert own_threshold(result["checkpoint"], "another-best-00000000") is None  # best.pt replaced since


def test_the_first_job_starts_from_the_weights_given(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No model yet: --weights (coco by default) is where the first job starts."""
    fake = FakeRun(monkeypatch, tmp_path)
    trainjob.run_job(_job(tmp_path, None))
    assert [config.weights for config in fake.configs] == ["coco"]


@pytest.mark.parametrize("validated", [True, False])
def test_a_job_hands_on_the_best_epoch_and_the_last_only_without_val_photos(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, validated: bool
) -> None:
    """The checkpoint the backend loads, compares and names is best.pt (the best val epoch), not
    the last epoch's; a run without val photos has no best.pt and hands on last.pt."""
    from officescore import train

    fake = FakeRun(monkeypatch, tmp_path)

    def train_with_last(config: Any) -> Any:
        trained = fake.train(config)
        last = trained.run_dir / "weights" / "last.pt"
        last.write_bytes(b"last epoch")
        best = trained.best_checkpoint if validated else None
        return SimpleNamespace(**{**vars(trained), "last_checkpoint": last, "best_checkpoint": best})

    monkeypatch.setattr(train, "train", train_with_last)
    result = trainjob.run_job(_job(tmp_path, None))
    assert Path(result["checkpoint"]).name == ("best.pt" if validated else "last.pt")
    assert fake.compared == [(Path(result["checkpoint"]), None, 0.42)]


@pytest.mark.parametrize(
    ("error", "retry"),
    [
        (LabelStudioError("Label Studio at http://127.0.0.1:9 is not reachable (export tasks)"), True),
        (LabelStudioError("Label Studio refused the request (export tasks): 403"), False),
        (DataError("task 12: broken.jpg from Label Studio is not a readable image"), False),
        (RuntimeError("out of memory"), False),
    ],
)
def test_only_an_unreachable_label_studio_makes_a_failed_job_try_again(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, error: Exception, retry: bool
) -> None:
    """Label Studio down is tried again after a minute; any other failure (a broken photo, a refused
    key, a crash) would fail again the same way, so the job waits for the next label instead of
    looping. The result names the error either way."""

    def fails(folder: Path) -> dict[str, Any]:
        raise error

    monkeypatch.setattr(trainjob, "run_job", fails)
    folder = _job(tmp_path, None)
    assert trainjob.main([str(folder)]) == 1
    result = json.loads((folder / trainjob.RESULT_FILE).read_text())
    assert result["ok"] is False and result["retry"] is retry and str(error) in result["error"]


def test_a_job_leaves_out_what_the_backend_says_and_fails_naming_every_unreadable_photo(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The backend hands the job the tasks to leave out (unreadable before); the job fails on photos
    newly found unreadable, before training, naming each, so the backend can leave them out next."""
    fake = FakeRun(monkeypatch, tmp_path)
    folder = _job(tmp_path, None)
    job = json.loads((folder / trainjob.JOB_FILE).read_text())
    (folder / trainjob.JOB_FILE).write_text(json.dumps({**job, "left_out": [13]}))
    fake.unreadable = {
        12: "task 12: b.jpg is not a readable image",
        14: "task 14: d.jpg is not a readable image",
    }
    assert trainjob.main([str(folder)]) == 1
    result = json.loads((folder / trainjob.RESULT_FILE).read_text())
    assert fake.left_out == [13] and fake.configs == []  # nothing trained
    assert result["ok"] is False and result["retry"] is False
    assert result["unreadable"] == {"12": fake.unreadable[12], "14": fake.unreadable[14]}
    assert result["error"] == (
        "task 12: b.jpg is not a readable image; task 14: d.jpg is not a readable image; the next job "
        "leaves them out until labelled again"
    )
    fake.unreadable = {}
    (folder / trainjob.RESULT_FILE).unlink()
    assert trainjob.main([str(folder)]) == 0
    assert json.loads((folder / trainjob.RESULT_FILE).read_text())["ok"] is True


def test_many_unreadable_photos_are_one_line_naming_the_first_three() -> None:
    """Fifty broken uploads: the failure line (log, status, /metrics) names three and counts the rest;
    every one of them is still handed on to be left out."""
    unreadable = {task: f"task {task}: p{task}.jpg is not a readable image" for task in range(1, 51)}
    error = trainjob.UnreadablePhotos(unreadable)
    assert str(error) == (
        "task 1: p1.jpg is not a readable image; task 2: p2.jpg is not a readable image; task 3: p3.jpg "
        "is not a readable image; and 47 more task(s); the next job leaves them out until labelled again"
    )
    assert error.tasks == unreadable


def test_a_job_that_could_read_no_photo_at_all_leaves_none_out(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Every labelled photo unreadable (a proxy answering with a page, a storage serving nothing) is
    the server's fault: leaving them all out would stop training until each was labelled again."""
    fake = FakeRun(monkeypatch, tmp_path)
    fake.unreadable = {n: f"task {n}: {name} is not a readable image" for name, n in TASKS.items()}
    folder = _job(tmp_path, None)
    real_pull = fake.pull

    def nothing_readable(*args: Any, **kwargs: Any) -> Any:
        return SimpleNamespace(**{**vars(real_pull(*args, **kwargs)), "images": 0})

    from officescore.label import pull

    monkeypatch.setattr(pull, "pull_project", nothing_readable)
    assert trainjob.main([str(folder)]) == 1
    result = json.loads((folder / trainjob.RESULT_FILE).read_text())
    assert "unreadable" not in result and result["retry"] is False
    assert result["error"] == (
        "none of the 4 labelled photo(s) is a readable image (the first, task 11: a.jpg is not a readable "
        "image): is Label Studio serving its photos?"
    )


@pytest.mark.parametrize(
    ("current_conf", "by_mask", "floor"),
    [
        (None, True, ([0.8], "default")),  # the default threshold is on the class score: scores as they are
        (0.42, True, ([0.2], 0.42)),  # its own threshold is on the suggestion score: 0.8 x 0.5² = 0.2
        (0.42, False, ([0.8], 0.42)),  # class scores throughout
    ],
)
def test_the_new_model_is_held_to_the_current_ones_suggestions_on_the_score_they_were_shown_by(
    monkeypatch: pytest.MonkeyPatch, current_conf: float | None, by_mask: bool, floor: tuple[list[float], Any]
) -> None:
    """`compare_on_val` hands the new model's threshold search the current model's val detections
    scored as labellers saw them, with the threshold they were shown at."""
    from officescore.label.prelabel import DEFAULT_CONF

    asked: list[tuple[Path, Any]] = []

    def val_scores(
        checkpoint: Path, dataset: Path, device: str, replaced: Any = None, by_mask: bool = True
    ) -> Any:
        asked.append((checkpoint, replaced))
        return {"masks": [{"score": 0.8, "mask_score": 0.5, "segmentation": {}}]}

    monkeypatch.setattr(trainjob, "val_scores", val_scores)
    trainjob.compare_on_val(Path("new.pt"), Path("current.pt"), current_conf, Path("data"), "cpu", by_mask)
    (_, first), (checkpoint, (masks, conf)) = asked
    assert first is None and checkpoint == Path("new.pt")
    expected_scores, expected_conf = floor
    assert [round(m["score"], 6) for m in masks] == expected_scores
    assert conf == (DEFAULT_CONF if expected_conf == "default" else expected_conf)


@pytest.mark.parametrize(("tp", "fn", "fp", "kept"), [(6, 4, 0, True), (6, 3, 5, False)])
def test_a_threshold_needs_ten_labelled_val_objects(
    monkeypatch: pytest.MonkeyPatch, tp: int, fn: int, fp: int, kept: bool
) -> None:
    """`val_scores` with the model, the data set and the matching stood in for (no torch): a
    threshold found on 6 + 4 labelled objects (matched + missed) is the model's own; on 6 + 3 it is
    a guess, however many false detections there were, and the backend's default stays."""
    import sys

    found = {"conf": 0.4, "f1": 0.7, "tp": tp, "fn": fn, "fp": fp}

    class ValSet:
        classes = ("desk",)
        annotation_file = Path("val.json")

        def __init__(self, *args: Any) -> None:
            pass

        def __len__(self) -> int:
            return 2

    detections = [{"score": 0.9, "mask_score": 1.0, "segmentation": {}}, {"score": 0.5, "bbox": [0, 0, 1, 1]}]
    stand_ins = {
        "officescore.dataset": SimpleNamespace(OfficeDataset=ValSet, build_transforms=lambda train: None),
        "officescore.devices": SimpleNamespace(resolve_device=lambda device: device),
        "officescore.model": SimpleNamespace(model_from_checkpoint=lambda path, device: (None, ("desk",))),
        "officescore.evaluate": SimpleNamespace(
            category_map=lambda a, b: {},
            evaluate_model=lambda *args, **kwargs: ({"segm": {"map": 0.5}, "bbox": {"map": 0.4}}, detections),
        ),
        "officescore.evaluate.inputs": SimpleNamespace(load_gt=lambda path: None),
        "officescore.evaluate.match": SimpleNamespace(
            bagged_best_f1_conf=lambda gt, ranked, replaced: dict(found)
        ),
    }
    for name, module in stand_ins.items():
        monkeypatch.setitem(sys.modules, name, module)
    scores = trainjob.val_scores(Path("best.pt"), Path("data"), "cpu")
    assert (scores["segm_map"], scores["bbox_map"], scores["masks"]) == (0.5, 0.4, detections[:1])
    assert scores["suggest"] == ({**found, "by_mask": True} if kept else None)


def test_one_unreadable_photo_is_named_as_it() -> None:
    """The failed job's line (shown in the backend's log and `label status`) says "it" of one photo."""
    why = "task 12: b.jpg is not a readable image"
    one = trainjob.UnreadablePhotos({12: why})
    assert str(one) == f"{why}; the next job leaves it out until labelled again" and one.tasks == {12: why}


def test_a_job_with_nothing_labelled_is_not_told_its_photos_are_unreadable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A pull with no labelled photo and none unreadable (Start Training on a new project) is not
    "none of the 0 photo(s) is readable": the job goes on, and ingest says what is wrong."""
    fake = FakeRun(monkeypatch, tmp_path)
    real_pull = fake.pull

    def nothing_labelled(*args: Any, **kwargs: Any) -> Any:
        return SimpleNamespace(**{**vars(real_pull(*args, **kwargs)), "images": 0})

    from officescore.label import pull

    monkeypatch.setattr(pull, "pull_project", nothing_labelled)
    trainjob.run_job(_job(tmp_path, None))
    assert len(fake.configs) == 1  # past the pull: the fake ingest gave it photos to train
