"""The trainer's bookkeeping without Label Studio or torch: the switch rule, the labels counted
toward --train-every and what a finished job leaves counted, the fixed held-out set, and which
prediction a labeller saw and what they kept of it. Every expected number is worked out by hand."""

from __future__ import annotations

import errno
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from officescore import masks as masklib
from officescore.errors import ConfigError, DataError
from officescore.label import trainer as trainer_module
from officescore.label.client import LabelStudioError
from officescore.label.feedback import (
    TaskFeedback,
    VersionFeedback,
    compare_regions,
    match_regions,
    shown_prediction,
)
from officescore.label.formats import Region
from officescore.label.trainer import STATE_FILE, Trainer, TrainSettings, not_worse
from officescore.label.trainjob import RESULT_FILE, assign_splits, held_out, val_draw
from officescore.runs import NOT_USED_FILE


def test_not_worse_takes_a_tie_and_refuses_a_missing_score() -> None:
    """The switch: a new model equal to the current one on the same val photos takes over; one
    without a val score never replaces one with a score; without a current score any new one does."""
    assert not_worse(0.25, 0.25)
    assert not_worse(0.3, 0.25) and not not_worse(0.2, 0.25)
    assert not not_worse(None, 0.25)
    assert not_worse(None, None) and not_worse(0.0, None)


class FakeJob:
    """A child process that runs until `end` (or terminate), so no job ever trains."""

    started: list[FakeJob] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.pid = 999_999
        self.args, self.kwargs = args, kwargs  # what Popen was given
        self.signals: list[str] = []  # what the trainer sent it
        self.returncode: int | None = None
        self._done = threading.Event()
        FakeJob.started.append(self)

    def wait(self, timeout: float | None = None) -> int:
        self._done.wait(timeout)
        return self.returncode if self.returncode is not None else 0

    def poll(self) -> int | None:
        return self.returncode if self._done.is_set() else None

    def terminate(self) -> None:
        self.signals.append("SIGTERM")
        self.end(-15)

    def kill(self) -> None:
        self.signals.append("SIGKILL")
        self.end(-9)

    def end(self, code: int) -> None:
        self.returncode = code
        self._done.set()


@pytest.fixture
def fake_jobs(monkeypatch: pytest.MonkeyPatch) -> list[FakeJob]:
    FakeJob.started = []
    monkeypatch.setattr(trainer_module.subprocess, "Popen", FakeJob)
    return FakeJob.started


def _settings(tmp_path: Path, every: int = 3) -> TrainSettings:
    return TrainSettings(
        url="http://127.0.0.1:9",
        project="units",
        folder=tmp_path / "backend",
        runs=tmp_path / "runs",
        every=every,
    )


def _result(tmp_path: Path, job: int, pulled_at: float, **values: Any) -> dict[str, Any]:
    """What a successful job writes into result.json (its run folder made, so a rejection can mark it)."""
    run_dir = tmp_path / "runs" / f"label-job{job:04d}"
    (run_dir / "weights").mkdir(parents=True, exist_ok=True)
    return {
        "ok": True,
        "run_dir": str(run_dir),
        "checkpoint": str(run_dir / "weights" / "best.pt"),
        "model_version": f"v{job}",
        "segm_map": 0.5,
        "current_segm_map": None,
        "suggest": None,
        "trained_photos": 2,
        "val_photos": 1,
        "train_tasks": [1, 2],
        "val_tasks": [3],
        "pulled_at": pulled_at,
        **values,
    }


def _end_job(trainer: Trainer, job: FakeJob, result: dict[str, Any]) -> None:
    """The running job writes its result and exits 0; returns once the trainer has recorded it."""
    folder = trainer.folder / trainer.state["running"]["folder"]
    (folder / RESULT_FILE).write_text(json.dumps(result))
    number = trainer.state["running"]["job"]
    job.end(0)
    deadline = time.monotonic() + 10
    while not any(v.get("job") == number for v in trainer.versions()):
        assert time.monotonic() < deadline, "the trainer never recorded the job"
        time.sleep(0.01)


def test_a_skipped_task_is_no_label_and_starts_no_job(tmp_path: Path, fake_jobs: list[FakeJob]) -> None:
    """Walked live: Label Studio's Skip sends ANNOTATION_CREATED of an annotation with was_cancelled;
    it counted as a label, so skips alone started a job on labels that were not there."""
    trainer = Trainer(_settings(tmp_path), "not-a-key", project_id=7)
    try:
        skip = {"project": {"id": 7}, "annotation": {"id": 6, "was_cancelled": True, "result": []}}
        label = {"project": {"id": 7}, "annotation": {"id": 7, "was_cancelled": False}}
        assert trainer.notify("ANNOTATION_CREATED", skip)["status"] == "ignored"
        assert trainer.notify("ANNOTATION_CREATED", label)["pending"] == 1
        for _ in range(3):
            trainer.notify("ANNOTATION_CREATED", skip)
        assert trainer.state["pending"] == 1 and not fake_jobs
    finally:
        trainer.close()


def test_the_banner_line_says_when_jobs_start_their_budget_and_where_they_go(
    tmp_path: Path, fake_jobs: list[FakeJob]
) -> None:
    """Walked live: with --train the banner did not say training was on until the first job."""
    settings = replace(_settings(tmp_path, every=4), epochs=2, minutes=1.5)
    trainer = Trainer(settings, "not-a-key", project_id=7)
    try:
        trainer.notify("ANNOTATION_CREATED", {"project": {"id": 7}})
        assert trainer.describe() == (
            "training: a job every 4 new label(s) (1 waiting), 2 epoch(s) or 1.5 min, whichever ends "
            f"first; runs in {tmp_path / 'runs'}, its state in {tmp_path / 'backend'}"
        )
    finally:
        trainer.close()
    unlimited = Trainer(replace(settings, minutes=None), "not-a-key", project_id=7)
    try:
        assert ", 2 epoch(s); runs in" in unlimited.describe()
    finally:
        unlimited.close()


def test_every_nth_label_starts_one_job_and_later_labels_stay_counted(
    tmp_path: Path, fake_jobs: list[FakeJob]
) -> None:
    """--train-every 3: labels 1 and 2 are counted, the 3rd starts a job; 3 labels during it are
    counted but start none beside it. The job pulled after the first 4 labels, so when it ends the
    2 that came after its pull stay counted (fewer than 3: no next job yet), and a 3rd starts it."""
    trainer = Trainer(_settings(tmp_path), "not-a-key", project_id=7)
    try:
        assert trainer.notify("ANNOTATION_CREATED", {"project": {"id": 7}})["status"] == "counted"
        assert trainer.notify("ANNOTATION_UPDATED", {"project": {"id": 8}})["status"] == "ignored"
        assert trainer.notify("ANNOTATION_DELETED", {"project": 7})["pending"] == 2 and not fake_jobs
        assert trainer.notify("ANNOTATION_CREATED", {"project": {"id": 7}})["status"] == "training"
        assert len(fake_jobs) == 1 and trainer.state["running"]["pending_at_start"] == 3
        answer = trainer.notify("ANNOTATION_CREATED", {"project": {"id": 7}})
        assert answer["status"] == "queued" and answer["pending"] == 4 and answer["job"] == 1
        pulled_at = time.time()
        time.sleep(0.01)
        for _ in range(2):
            trainer.notify("ANNOTATION_CREATED", {"project": {"id": 7}})
        assert len(fake_jobs) == 1 and trainer.state["pending"] == 6

        _end_job(trainer, fake_jobs[0], _result(tmp_path, 1, pulled_at))
        state = json.loads((trainer.folder / STATE_FILE).read_text())
        assert state["pending"] == 2 and len(state["events"]) == 2 and state["running"] is None
        assert state["current"]["model_version"] == "v1" and len(fake_jobs) == 1
        assert trainer.notify("ANNOTATION_CREATED", {"project": "7.1712345"})["status"] == "training"
        assert len(fake_jobs) == 2 and trainer.state["jobs"] == 2
    finally:
        trainer.close()


def test_a_finished_job_grows_the_held_out_set_and_switches_on_a_tie_only(
    tmp_path: Path, fake_jobs: list[FakeJob]
) -> None:
    """Job 2 scores the same val mask mAP as the current model: it takes over. Job 3 scores less: v2
    keeps answering, its run is marked not used, and its labels still count as trained. The held-out
    and trained tasks are the union of every job's, and a new job is handed them, with the threshold
    the current model's suggestions are shown at."""
    messages: list[str] = []
    trainer = Trainer(_settings(tmp_path, every=1), "not-a-key", log=messages.append)
    try:
        trainer.notify("START_TRAINING", {})
        _end_job(trainer, fake_jobs[0], _result(tmp_path, 1, time.time(), segm_map=0.4))
        assert trainer.state["current"]["model_version"] == "v1"
        # No "model no model -> v1 (... vs - ...)": nothing to compare the first model with.
        assert messages[-1] == "job 1: first model v1 (val mask mAP 0.4000 on 1 photo(s))", messages

        trainer.notify("ANNOTATION_CREATED", {})
        # v1 has no threshold of its own: the next job is told so (None: the backend's default).
        assert (
            json.loads((trainer.folder / "jobs" / "job-0002" / "job.json").read_text())["current_conf"]
            is None
        )
        own = {"conf": 0.37, "by_mask": True}  # found on the suggestion score, as jobs find it
        tie = _result(tmp_path, 2, time.time(), segm_map=0.4, current_segm_map=0.4, suggest=own)
        _end_job(trainer, fake_jobs[1], {**tie, "train_tasks": [1, 2, 4], "val_tasks": [5]})
        assert trainer.state["current"]["model_version"] == "v2" and trainer.versions()[-1]["accepted"]
        assert messages[-1] == "job 2: model v1 -> v2 (val mask mAP 0.4000 vs 0.4000 on the same 1 photo(s))"
        assert trainer.state["val_tasks"] == [3, 5] and trainer.state["train_tasks"] == [1, 2, 4]

        trainer.notify("ANNOTATION_CREATED", {})
        job = json.loads((trainer.folder / "jobs" / "job-0003" / "job.json").read_text())
        assert job["val_tasks"] == [3, 5] and job["train_tasks"] == [1, 2, 4]
        assert job["current"] == str((tmp_path / "runs" / "label-job0002" / "weights" / "best.pt").resolve())
        assert job["current_conf"] == 0.37  # what v2's suggestions are shown at: the floor of job 3's
        worse = _result(tmp_path, 3, time.time(), segm_map=0.39, current_segm_map=0.4)
        _end_job(trainer, fake_jobs[2], {**worse, "train_tasks": [6], "val_tasks": []})
        assert trainer.state["current"]["model_version"] == "v2" and not trainer.versions()[-1]["accepted"]
        assert trainer.state["pending"] == 0 and trainer.state["train_tasks"] == [1, 2, 4, 6]
        assert (tmp_path / "runs" / "label-job0003" / NOT_USED_FILE).is_file()
        assert not (tmp_path / "runs" / "label-job0002" / NOT_USED_FILE).exists()
    finally:
        trainer.close()


def test_a_model_found_at_start_keeps_the_threshold_its_job_found(tmp_path: Path) -> None:
    """A new --backend-dir on a runs folder whose newest model a `--train` job made (another backend
    folder, or one deleted): it suggests at that job's threshold, as `prelabel` and a backend without
    --train use it, not at 0.3 on the class score."""
    from officescore.label.predict import SUGGEST_FILE, model_version

    best = tmp_path / "runs" / "label-job0004" / "weights" / "best.pt"
    best.parent.mkdir(parents=True)
    best.write_bytes(b"weights")
    record = {"model_version": model_version(best), "conf": 0.41, "by_mask": True}
    (best.parent.parent / SUGGEST_FILE).write_text(json.dumps(record))
    trainer = Trainer(_settings(tmp_path), "not-a-key")
    try:
        assert trainer.current_checkpoint() == best.resolve() and trainer.current_conf() == 0.41
        assert trainer.versions()[0]["suggest"] == {"conf": 0.41, "by_mask": True}  # `label status` conf
        assert trainer.versions()[0]["accepted"]  # not listed "(worse, unused)" by `label status`
    finally:
        trainer.close()


def test_a_threshold_given_wins_over_the_jobs_own_even_at_0_and_a_damaged_one_is_none(tmp_path: Path) -> None:
    """`--conf 0` (every detection) on a model a job made is a threshold given on the class score, not
    "none given"; a suggest.json that cannot be read is no threshold of its own (0.3 then), not a
    traceback."""
    from officescore.label.predict import SUGGEST_FILE, model_version, own_threshold, suggestion_threshold

    best = tmp_path / "label-job0001" / "weights" / "best.pt"
    best.parent.mkdir(parents=True)
    best.write_bytes(b"weights")
    version = model_version(best)
    (best.parent.parent / SUGGEST_FILE).write_text(
        json.dumps({"model_version": version, "conf": 0.41, "by_mask": True})
    )
    assert suggestion_threshold(best, version, None) == (0.41, True)
    assert suggestion_threshold(best, version, 0.0) == (0.0, False)
    (best.parent.parent / SUGGEST_FILE).write_text('{"model_version": "')
    assert own_threshold(best, version) is None


def test_labels_no_webhook_brought_count_once_and_only_after_what_the_models_saw(
    tmp_path: Path, fake_jobs: list[FakeJob]
) -> None:
    """`count_missed` (labels made while no backend listened): with no model every label counts; a
    label a webhook already counted is not counted twice; after a job only labels made after the
    newest one it pulled count, and a job pulling later covers them; with only a model found at
    start, labels made after it was written."""
    now = time.time()
    trainer = Trainer(_settings(tmp_path, every=10), "not-a-key", project_id=7)
    try:
        assert trainer.count_missed([now - 30, now - 20]) == 2 and trainer.state["pending"] == 2
        trainer.notify("ANNOTATION_CREATED", {"project": 7})  # heard: 3 counted
        assert trainer.count_missed([now - 30, now - 20, now]) == 0 and trainer.state["pending"] == 3
        trainer.notify("START_TRAINING", {"project": 7})
        _end_job(trainer, fake_jobs[0], _result(tmp_path, 1, time.time(), labels_until=now))
        assert trainer.state["pending"] == 0  # all three were in its pull
        assert trainer.count_missed([now - 30, now - 20, now, now + 5, now + 6]) == 2
        assert trainer.state["pending"] == 2 and not trainer.running
        trainer.notify("START_TRAINING", {"project": 7})
        _end_job(trainer, fake_jobs[1], _result(tmp_path, 2, time.time(), labels_until=now + 6))
        assert trainer.state["pending"] == 0  # the job after the count pulled them
    finally:
        trainer.close()

    found = tmp_path / "found"
    best = found / "runs" / "run1" / "weights" / "best.pt"
    best.parent.mkdir(parents=True)
    best.write_bytes(b"weights")
    os.utime(best, (now - 15, now - 15))
    trainer = Trainer(_settings(found), "not-a-key")
    try:
        assert trainer.count_missed([now - 30, now - 20, now - 10]) == 1
    finally:
        trainer.close()


@pytest.mark.parametrize("server_ahead", [-600.0, 600.0])
def test_labels_no_webhook_brought_are_told_apart_by_label_studios_clock(
    tmp_path: Path, fake_jobs: list[FakeJob], server_ahead: float
) -> None:
    """Label Studio on another machine, its clock 10 minutes behind or ahead of the backend's: which
    labels the last job pulled is decided on the server's clock (the newest label it pulled), never by
    comparing a label's `updated_at` with the backend's `pulled_at`. Behind: labels made after the
    pull were not counted; ahead: labels in the pull were counted again. A state written before jobs
    recorded `labels_until` (only `pulled_at`) is still read; a job running when the backend started
    has pulled either all labels (nothing recorded yet) or those up to its `pulled.json`."""
    from officescore.label.trainjob import PULLED_FILE

    pulled_at = time.time()  # the backend's clock
    server = pulled_at + server_ahead  # the same moment on Label Studio's clock
    in_pull, after = [server - 60, server - 1], [server + 30, server + 40]
    trainer = Trainer(_settings(tmp_path, every=10), "not-a-key", project_id=7)
    try:
        trainer.notify("START_TRAINING", {"project": 7})
        _end_job(trainer, fake_jobs[0], _result(tmp_path, 1, pulled_at, labels_until=server - 1))
        assert trainer.count_missed(in_pull + after) == 2 and trainer.state["pending"] == 2
        # counted on the backend's clock: a job that pulls after the count covers them, either way
        trainer.notify("START_TRAINING", {"project": 7})
        _end_job(trainer, fake_jobs[1], _result(tmp_path, 2, time.time(), labels_until=server + 40))
        assert trainer.state["pending"] == 0
    finally:
        trainer.close()

    older = tmp_path / "older"  # a backend folder from before: versions know only when they pulled
    trainer = Trainer(_settings(older, every=10), "not-a-key", project_id=7)
    try:
        trainer.notify("START_TRAINING", {"project": 7})
        _end_job(trainer, fake_jobs[2], _result(older, 1, pulled_at))
        assert trainer.count_missed([pulled_at - 5, pulled_at + 5]) == 1
        trainer.notify("START_TRAINING", {"project": 7})  # a job running when the backend restarts
        folder = trainer.folder / trainer.state["running"]["folder"]
        assert trainer.count_missed(in_pull + after) == 0  # it has not pulled yet: it pulls them all
        (folder / PULLED_FILE).write_text(json.dumps({"pulled_at": pulled_at, "labels_until": server - 1}))
        assert trainer.count_missed(in_pull + after) == 1  # after its pull: 2, one counted already
    finally:
        trainer.close()


def test_labels_no_webhook_brought_are_those_after_the_newest_jobs_pull(
    tmp_path: Path, fake_jobs: list[FakeJob]
) -> None:
    """`count_missed` after two jobs: a label made between their pulls was in the second job's pull,
    so only the one after it counts (the newest job decides, not the first)."""
    now = time.time()
    trainer = Trainer(_settings(tmp_path, every=10), "not-a-key", project_id=7)
    try:
        trainer.notify("START_TRAINING", {"project": 7})
        _end_job(trainer, fake_jobs[0], _result(tmp_path, 1, now - 50, labels_until=now - 50))
        trainer.notify("START_TRAINING", {"project": 7})
        _end_job(trainer, fake_jobs[1], _result(tmp_path, 2, now - 25, labels_until=now - 25))
        assert trainer.count_missed([now - 40, now - 10]) == 1 and trainer.state["pending"] == 1
    finally:
        trainer.close()


class ExportOnly:
    """`count_labels_made_unheard`'s one call: Label Studio's task export (or its failure)."""

    def __init__(self, tasks: list[dict[str, Any]] | Exception) -> None:
        self.tasks = tasks

    def export_tasks(self, project_id: int) -> list[dict[str, Any]]:
        if isinstance(self.tasks, Exception):
            raise self.tasks
        return self.tasks


def test_a_label_changed_while_the_backend_was_down_counts_and_an_unreadable_project_is_logged(
    tmp_path: Path,
) -> None:
    """At start: a task labelled before the model was written but corrected after it (updated_at)
    counts, one untouched since does not; Label Studio failing the export is a log line, not a
    backend that does not start."""
    from officescore.label.live import count_labels_made_unheard

    best = tmp_path / "runs" / "run1" / "weights" / "best.pt"
    best.parent.mkdir(parents=True)
    best.write_bytes(b"weights")
    written = time.time() - 3600
    os.utime(best, (written, written))
    before, after = "2020-01-01T10:00:00Z", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(written + 60))
    tasks = [
        {"id": 1, "annotations": [{"id": 1, "created_at": before, "updated_at": after, "result": []}]},
        {"id": 2, "annotations": [{"id": 2, "created_at": before, "updated_at": before, "result": []}]},
    ]
    logged: list[str] = []
    trainer = Trainer(_settings(tmp_path), "not-a-key", project_id=7, log=logged.append)
    try:
        down = LabelStudioError("Label Studio at http://127.0.0.1:9 is not reachable (export tasks)")
        count_labels_made_unheard(trainer, ExportOnly(down), 7)
        assert trainer.state["pending"] == 0 and logged == [
            f"labels made while the backend was not running are not counted: {down}"
        ]
        count_labels_made_unheard(trainer, ExportOnly(tasks), 7)
        assert trainer.state["pending"] == 1, logged
    finally:
        trainer.close()


def test_start_trainer_refuses_what_cannot_train_before_asking_label_studio(tmp_path: Path) -> None:
    """`label backend --train` without a project, without a key, or with a model file (or COCO) as
    --model: a one-line error before Label Studio is asked for anything."""
    from officescore.label.live import start_trainer

    client = SimpleNamespace(url="http://127.0.0.1:9")  # no project(): Label Studio is never asked
    runs = tmp_path / "runs"
    for who, key, project, model, why in (
        (client, "key", "", runs, "--train needs --connect PROJECT"),
        (client, "", "units", runs, "set LABEL_STUDIO_API_KEY"),
        (None, "key", "units", runs, "set LABEL_STUDIO_API_KEY"),
        (client, "key", "units", tmp_path / "best.pth", "with --train give a runs folder"),
        (client, "key", "units", "COCO", "with --train give a runs folder"),
    ):
        with pytest.raises(ConfigError, match=why):
            start_trainer(who, key, project, client.url, model, tmp_path / "backend", None, "cpu")


def test_start_trainer_counts_the_labels_made_while_no_backend_listened(
    tmp_path: Path, fake_jobs: list[FakeJob]
) -> None:
    """Labels made before the backend started count towards --train-every, and the log says how far
    they got; a restart with nothing new says nothing."""
    from officescore.label.live import start_trainer

    label = {"id": 1, "created_at": "2026-01-01T10:00:00Z", "result": []}
    client = SimpleNamespace(
        url="http://127.0.0.1:9",
        project=lambda title: SimpleNamespace(id=7),
        export_tasks=lambda project_id: [{"id": 1, "annotations": [label]}],
    )
    logged: list[str] = []
    for _ in range(2):
        trainer = start_trainer(
            client,
            "key",
            "units",
            client.url,
            tmp_path / "runs",
            tmp_path / "backend",
            None,
            "cpu",
            log=logged.append,
            every=3,
        )
        try:
            assert trainer.state["pending"] == 1 and not fake_jobs
        finally:
            trainer.close()
    assert logged == [
        "1 label(s) made while the backend was not running counted: 1 label(s) since the last model, "
        "a job every 3"
    ]


def test_held_out_photos_stay_held_out_and_the_set_grows() -> None:
    """Splits at a fifth held out, worked out from `held_out`'s fixed draw of each task:
    earlier held-out and trained photos keep their side whatever their draw, new photos take
    their own draw, and a near-duplicate group follows the side its earlier member is on."""
    draw = {t: held_out(t, 0.2) for t in range(1, 40)}
    drawn_val = [t for t, v in draw.items() if v]
    drawn_train = [t for t, v in draw.items() if not v]
    assert drawn_val and drawn_train
    v, t = drawn_val[0], drawn_train[0]
    # Swapped against their draws: the old val photo drawn for train stays val, and the reverse.
    tasks = sorted({v, t, drawn_train[1], drawn_val[1]})
    split = assign_splits(tasks, [], val_before={drawn_train[1]}, train_before={drawn_val[1]}, fraction=0.2)
    assert split == {v: "val", t: "train", drawn_train[1]: "val", drawn_val[1]: "train"}
    # A new photo in a group with a held-out one goes to val, though its own draw says train.
    split = assign_splits(
        sorted({t, drawn_train[2], drawn_val[1]}),
        [[drawn_val[1], t]],
        val_before={drawn_val[1]},
        train_before={drawn_train[2]},
        fraction=0.2,
    )
    assert split == {t: "val", drawn_val[1]: "val", drawn_train[2]: "train"}
    # New groups take their first (lowest) member's draw, whatever the others drew.
    val_first = next((v, w) for v in drawn_val for w in drawn_train if v < w)
    others = [(w, v) for v in drawn_val for w in drawn_train if w < v]
    train_first = next(pair for pair in others if not set(pair) & set(val_first))
    split = assign_splits(sorted({*val_first, *train_first}), [val_first, train_first], set(), set(), 0.2)
    assert split == {**dict.fromkeys(val_first, "val"), **dict.fromkeys(train_first, "train")}


def test_the_first_held_out_photo_comes_with_the_second_photo_and_is_never_a_trained_one() -> None:
    """Photos drawn for train only: one photo trains; with two, the new one of them whose hash comes
    first is held out (never one already trained on), so val mAP can be compared from then on."""
    train_only = [t for t in range(1, 60) if not held_out(t, 0.2)][:3]
    a, b, c = train_only
    assert assign_splits([a], [], set(), set(), 0.2) == {a: "train"}

    def first(*tasks: int) -> int:
        return min(tasks, key=val_draw)

    pair = assign_splits([a, b], [], set(), set(), 0.2)
    assert pair == {first(a, b): "val", ({a, b} - {first(a, b)}).pop(): "train"}
    trained = first(a, b, c)  # already trained on: the held-out photo is the other new one's pick
    others = [x for x in (a, b, c) if x != trained]
    split = assign_splits(sorted((a, b, c)), [], set(), {trained}, 0.2)
    assert split[trained] == "train" and split[first(*others)] == "val"
    assert list(split.values()).count("val") == 1
    assert assign_splits([a, b], [], set(), set(), 0.0) == {a: "train", b: "train"}  # none held out
    # Every photo held out before: the newest trains, so the job has something to train on.
    assert assign_splits([a, b], [], {a, b}, set(), 0.2) == {min(a, b): "val", max(a, b): "train"}


def test_a_group_follows_any_held_out_member_and_never_moves_a_trained_photo_to_val() -> None:
    """A new near-duplicate of a photo held out before is held out too, whatever the draw of the
    group's lowest member; the first held-out photo is the new one whose draw comes first (not the
    lowest task number), never picked from a group holding a photo already trained on (the group
    would carry that photo into val)."""
    train_only = [t for t in range(1, 80) if not held_out(t, 0.2)]
    low, high, other = train_only[:3]  # all drawn for train
    split = assign_splits([low, high, other], [[low, high]], {high}, set(), 0.2)
    assert split == {low: "val", high: "val", other: "train"}
    # The first held-out photo is the one whose draw comes first, not the lowest task number.
    a, b = next((a, b) for a in train_only for b in train_only if a < b and val_draw(b) < val_draw(a))
    assert assign_splits([a, b], [], set(), set(), 0.2) == {a: "train", b: "val"}
    trained, *new = train_only[3:7]
    duplicate = min(new, key=val_draw)  # the new photo the first held-out pick falls on
    split = assign_splits(sorted([trained, *new]), [[trained, duplicate]], set(), {trained}, 0.2)
    assert split[trained] == split[duplicate] == "train"


def test_with_every_photo_held_out_the_newest_trains_with_its_near_duplicates() -> None:
    """Nothing left to train on (every photo held out before): the newest photo trains, and its
    near-duplicates with it, so no held-out photo is a copy of one trained on."""
    a, b, c = 3, 5, 8
    assert assign_splits([a, b], [], {a, b}, set(), 0.2) == {a: "val", b: "train"}
    split = assign_splits([a, b, c], [[b, c]], {a, b, c}, set(), 0.2)
    assert split == {a: "val", b: "train", c: "train"}
    # Held out one by one before the near-duplicate group was known: the group moves together.
    assert assign_splits([b, c], [[b, c]], {b, c}, set(), 0.2) == {b: "train", c: "train"}


def _region(name: str, x0: int, y0: int, x1: int, y1: int) -> Region:
    mask = np.zeros((40, 40), dtype=np.uint8)
    mask[y0:y1, x0:x1] = 1
    return Region(name, masklib.encode(mask))


def test_kept_added_and_iou_counted_by_hand() -> None:
    """A desk redrawn to twice its size (IoU 100/200 = 0.5 exactly: kept), a chair moved (IoU
    50/150 < 0.5: not kept, the final one added), a predicted lamp labelled a mug (other class: not
    kept), a monitor drawn by hand (added). Two predictions on one desk: only the better is kept."""
    predicted = [
        _region("desk", 0, 0, 10, 10),
        _region("chair", 20, 20, 30, 30),
        _region("lamp", 0, 20, 10, 30),
    ]
    final = [
        _region("desk", 0, 0, 20, 10),
        _region("chair", 25, 20, 35, 30),
        _region("mug", 0, 20, 10, 30),
        _region("monitor", 30, 0, 40, 10),
    ]
    kept, added, ious = match_regions(predicted, final)
    assert (kept, added) == (1, 3) and ious == pytest.approx([0.5])
    # Why the other two were not kept: the chair's outline redrawn, the lamp's class changed.
    found = compare_regions(predicted, final)
    assert (found.redrawn, found.reclassed, found.deleted) == (1, 1, 0)
    assert found.not_kept == {"chair": {"redrawn": 1}, "lamp": {"reclassed": 1}}  # by predicted class
    twice = [_region("desk", 0, 0, 20, 10), _region("desk", 0, 0, 10, 10)]
    kept, added, ious = match_regions(twice, [_region("desk", 0, 0, 20, 10)])
    assert (kept, added) == (1, 0) and ious == pytest.approx([1.0])
    # The second desk overlaps only the desk the first one kept: a duplicate, deleted, not redrawn.
    found = compare_regions(twice, [_region("desk", 0, 0, 20, 10)])
    assert (found.redrawn, found.reclassed, found.deleted) == (0, 0, 1)
    # A chair touching the final one by 10 of 190 pixels (IoU < 0.1) is another object: deleted.
    touching = compare_regions([_region("chair", 0, 0, 10, 10)], [_region("chair", 9, 0, 19, 10)])
    assert (touching.kept, touching.redrawn, touching.deleted) == (0, 0, 1)
    assert match_regions([], final)[:2] == (0, 4) and match_regions(predicted, [])[:2] == (0, 0)
    assert compare_regions(predicted, []).deleted == 3


def test_a_version_sums_its_tasks_causes_per_class() -> None:
    """Two tasks of one version: every count adds up, per class and cause too."""
    first = TaskFeedback(1, "v1", 3, 2, 1, 1, [0.8], {"desk": {"redrawn": 1}, "mug": {"deleted": 1}})
    second = TaskFeedback(2, "v1", 2, 2, 0, 2, [], {"desk": {"redrawn": 1, "reclassed": 1}})
    summary = VersionFeedback("v1")
    summary.add(first)
    summary.add(second)
    row = summary.to_dict()
    assert (row["tasks"], row["predicted"], row["kept"], row["added"], row["labelled"]) == (2, 5, 1, 3, 4)
    assert (row["redrawn"], row["reclassed"], row["deleted"]) == (2, 1, 1)
    assert row["not_kept_by_class"] == {"desk": {"redrawn": 2, "reclassed": 1}, "mug": {"deleted": 1}}
    assert row["kept_share"] == 0.2 and row["mean_kept_iou"] == 0.8
    assert row["from_suggestions"] == 0.25  # 1 kept of 4 final labels: the labeller drew 3 by hand


def test_one_suggestion_covering_two_labels_is_kept_once() -> None:
    """Kept pairs are one to one on both sides: a 10x10 desk suggested where the labeller drew the
    desk (IoU 1) and its top half as a second desk (IoU 50/100 = 0.5) is kept once, with the better
    pair, and the half is drawn by hand. Kept twice, the kept share would pass 100%."""
    found = compare_regions(
        [_region("desk", 0, 0, 10, 10)], [_region("desk", 0, 0, 10, 10), _region("desk", 0, 0, 10, 5)]
    )
    assert (found.kept, found.added, found.kept_ious) == (1, 1, [1.0])


def test_a_suggestion_only_touched_by_a_label_of_another_class_was_deleted_not_reclassed() -> None:
    """Reclassed needs a label of another class covering the suggestion (IoU >= 0.5), as kept does:
    a lamp beside a mug (IoU 50/150) was a lamp where there is none, deleted, and the mug drawn by hand."""
    found = compare_regions([_region("lamp", 0, 0, 10, 10)], [_region("mug", 5, 0, 15, 10)])
    assert (found.kept, found.added, found.reclassed, found.redrawn, found.deleted) == (0, 1, 0, 0, 1)


def test_a_task_holding_two_predictions_of_one_version_is_one_suggested_task() -> None:
    """`label status`'s tasks column (labelled / holding one of its suggestions): a task Label
    Studio holds two predictions of one version for (predictions retrieved twice) is one task."""
    from officescore.label.feedback import by_version

    twice = {"id": 1, "predictions": [{"model_version": "v1", "result": []}] * 2, "annotations": []}
    other = {"id": 2, "predictions": [{"model_version": "v1", "result": []}], "annotations": []}
    assert by_version([twice, other])["v1"].suggested == 2


def test_metrics_join_the_trainers_versions_with_the_feedback_oldest_first() -> None:
    """/metrics: one row per version, the trainer's numbers beside its feedback; a version only Label
    Studio's predictions know (a model used before this backend) comes first, with feedback alone,
    and a version nobody has labelled after yet gets empty feedback."""
    from officescore.label.feedback import metrics_document

    earlier, trained = VersionFeedback("prelabel"), VersionFeedback("v1")
    earlier.add(TaskFeedback(1, "prelabel", 2, 2, 1, 1, [0.9], {"desk": {"deleted": 1}}))
    trained.add(TaskFeedback(2, "v1", 4, 2, 2, 0, [0.8, 0.6], {"mug": {"redrawn": 2}}))
    records = [{"model_version": "v1", "trained_photos": 8}, {"model_version": "v2", "trained_photos": 12}]
    document = metrics_document(records, {"v1": trained, "prelabel": earlier}, {"pending_labels": 1})
    rows = document["versions"]
    assert document["pending_labels"] == 1 and [r["model_version"] for r in rows] == ["prelabel", "v1", "v2"]
    assert "trained_photos" not in rows[0] and rows[0]["kept_share"] == 0.5 and rows[0]["deleted"] == 1
    assert (rows[1]["trained_photos"], rows[1]["kept_share"], rows[1]["from_suggestions"]) == (8, 0.5, 1.0)
    assert rows[1]["mean_kept_iou"] == pytest.approx(0.7) and rows[1]["redrawn"] == 2
    assert (rows[2]["trained_photos"], rows[2]["tasks"], rows[2]["kept_share"]) == (12, 0, None)


def test_versions_only_label_studio_knows_are_listed_in_the_order_the_tasks_show_them() -> None:
    """`label status` and /metrics without the backend's records of them (another backend folder,
    prelabel runs): the versions come oldest first, in the order the tasks' predictions list them,
    the same in every run. A set of the version names gave an order that changed with each process's
    string hashing; with eight versions on one task, no order but this one is likely by chance."""
    from officescore.label.feedback import by_version, metrics_document

    names = [f"prelabel-{n}" for n in range(8)]
    first = {
        "id": 1,
        "predictions": [{"model_version": v, "result": []} for v in names[:6]],
        "annotations": [],
    }
    later = {
        "id": 2,
        "predictions": [{"model_version": v, "result": []} for v in names[4:]],
        "annotations": [],
    }
    feedback = by_version([first, later])
    assert list(feedback) == names and [feedback[v].suggested for v in names] == [1, 1, 1, 1, 2, 2, 1, 1]
    document = metrics_document([{"model_version": "v1", "trained_photos": 8}], feedback, {})
    assert [row["model_version"] for row in document["versions"]] == [*names, "v1"]


def test_suggestions_are_scored_by_class_and_mask_score_squared() -> None:
    """Worked by hand: 0.9 x 0.5² = 0.225 falls below 0.3, 0.6 x 0.95² = 0.5415 stays at that score,
    and a box-only detection (no mask score) keeps its class score."""
    from officescore.infer.detection import Detection, ImageResult
    from officescore.label.predict import as_suggestions, suggestion_score

    assert suggestion_score(0.8, 0.5) == pytest.approx(0.2) and suggestion_score(0.8, None) == 0.8
    found = ImageResult(
        "a.png",
        4,
        4,
        [
            Detection("desk", 0.9, [0, 0, 2, 2], {}, 0.25, mask_score=0.5),
            Detection("chair", 0.6, [0, 0, 2, 2], {}, 0.25, mask_score=0.95),
            Detection("lamp", 0.4, [0, 0, 2, 2], {}, 0.25),
        ],
    )
    shown = as_suggestions(found, 0.3)
    assert [(d.class_name, round(d.score, 4)) for d in shown.detections] == [("chair", 0.5415), ("lamp", 0.4)]
    assert (shown.source, shown.width, shown.height) == ("a.png", 4, 4)
    assert [d.score for d in found.detections] == [0.9, 0.6, 0.4]  # the model's own result is left as it was


def test_status_says_which_score_a_threshold_is_on() -> None:
    """`label status`'s conf column: a threshold found on the suggestion score shows as it is, one from
    before mask scores says it is on the class score, none shows a dash."""
    from officescore.cli.label import _threshold

    assert _threshold({"conf": 0.4237, "by_mask": True}) == "0.42"
    assert _threshold({"conf": 0.4237}) == "0.42 (class)"
    assert _threshold({"conf": None}) == _threshold({}) == "-"


def test_the_prediction_shown_is_the_parent_or_the_newest_made_before_the_label() -> None:
    """The annotation's parent prediction wins; else the newest one created strictly before the
    annotation (one made at the same moment or after, or with no time, was not seen)."""
    annotation = {"created_at": "2026-01-01T10:00:00Z"}
    older = {"id": 1, "created_at": "2026-01-01T09:00:00Z"}
    newer = {"id": 2, "created_at": "2026-01-01T09:30:00+00:00"}
    same = {"id": 3, "created_at": "2026-01-01T10:00:00Z"}
    after = {"id": 4, "created_at": "2026-01-01T11:00:00Z"}
    undated = {"id": 5}
    task = {"predictions": [after, older, newer, same, undated]}
    assert shown_prediction(task, annotation) == newer
    assert shown_prediction(task, {**annotation, "parent_prediction": 1}) == older
    assert shown_prediction(task, {**annotation, "parent_prediction": 4}) == after
    assert shown_prediction({"predictions": [same, after, undated]}, annotation) is None
    assert shown_prediction(task, {}) is None  # an annotation without a time: nothing attributable


def test_notify_counts_only_label_events_of_its_project(tmp_path: Path, fake_jobs: list[FakeJob]) -> None:
    """Other events are ignored; a START_TRAINING of Label Studio's /train ("<id>.<timestamp>") of
    this project starts a job at once, whatever is counted."""
    trainer = Trainer(_settings(tmp_path, every=10), "not-a-key", project_id=12)
    try:
        assert trainer.notify("PROJECT_UPDATED", {"project": {"id": 12}})["status"] == "ignored"
        assert trainer.notify("START_TRAINING", {"project": "2.1712345"})["status"] == "ignored"
        assert trainer.state["pending"] == 0 and not fake_jobs
        assert trainer.notify("START_TRAINING", {"project": "12.1712345"})["status"] == "training"
        assert trainer.state["running"]["forced"] and not trainer.state["forced"]
    finally:
        trainer.close()


def test_a_webhook_whose_project_is_unreadable_is_refused_not_counted(
    tmp_path: Path, fake_jobs: list[FakeJob]
) -> None:
    """A project field that is there but no id (a list, "abc", true) was read as "no project" and
    counted towards this project's next job; it is a bad request (the backend answers 400)."""
    trainer = Trainer(_settings(tmp_path, every=10), "not-a-key", project_id=12)
    try:
        for project in ([12], {"id": "abc"}, True, "nan"):
            with pytest.raises(DataError, match="is not a Label Studio project id"):
                trainer.notify("ANNOTATION_CREATED", {"project": project})
        assert trainer.state["pending"] == 0
        assert trainer.notify("ANNOTATION_CREATED", {})["status"] == "counted"  # none given: ours
    finally:
        trainer.close()


def test_a_second_backend_on_the_folder_is_refused_until_the_first_stops(
    tmp_path: Path, fake_jobs: list[FakeJob]
) -> None:
    """Two `label backend --train` on one --backend-dir would both start jobs and write one state
    file: the second is one line naming the folder, and may start once the first has stopped. It
    does not send the user to another --backend-dir (walked live, session 43: one given as the line
    said connected a second trainer to the project, and each label trained two jobs side by side)."""
    first = Trainer(_settings(tmp_path), "not-a-key", project_id=12)
    try:
        with pytest.raises(ConfigError, match="another `label backend --train` uses this folder") as refused:
            Trainer(_settings(tmp_path), "not-a-key", project_id=12)
        assert "stop it first" in str(refused.value) and "or give another" not in str(refused.value)
    finally:
        first.close()
    Trainer(_settings(tmp_path), "not-a-key", project_id=12).close()


def _two_labels_and_a_job_that_fails(trainer: Trainer, jobs: list[FakeJob]) -> None:
    """--train-every 2: two labels start a job, which fails on a broken photo (not an outage)."""
    trainer.notify("ANNOTATION_CREATED", {})
    trainer.notify("ANNOTATION_CREATED", {})
    folder = trainer.folder / trainer.state["running"]["folder"]
    (folder / RESULT_FILE).write_text(json.dumps({"ok": False, "error": "broken photo", "retry": False}))
    jobs[0].end(1)


def test_the_log_says_what_each_webhook_did_to_the_count(tmp_path: Path, fake_jobs: list[FakeJob]) -> None:
    """Walked live (session 43): the log showed `POST /webhook HTTP/1.1 201` per label and nothing
    else until a job started, so an admin could not tell labels were counted, nor what a Start
    Training during a job did. Each webhook that starts no job says so in one line."""
    logged: list[str] = []
    trainer = Trainer(_settings(tmp_path, every=2), "not-a-key", log=logged.append)
    try:
        trainer.notify("ANNOTATION_CREATED", {"task": {"id": 7}, "project": {"id": 1}})
        assert logged[-1] == "task 7 labelled: 1 label(s) since the last model, a job every 2"
        trainer.notify("ANNOTATION_CREATED", {"task": {"id": 8}})
        assert logged[-1].startswith("training job 1 started (2 new label(s)")
        trainer.notify("ANNOTATION_DELETED", {"task": {"id": 7}})
        trainer.notify("ANNOTATIONS_DELETED", {"annotations": [{"id": 3}]})
        trainer.notify("START_TRAINING", {})
        assert logged[-3:] == [
            "task 7 label deleted: 3 label(s) since the last model, a job every 2; job 1 is training, "
            "the next starts after it",
            "labels deleted: 4 label(s) since the last model, a job every 2; job 1 is training, the next "
            "starts after it",
            "Start Training: a job asked for; job 1 is training, the next starts after it",
        ]
        trainer.notify("ANNOTATION_UPDATED", {"task": {"id": 8}})
        assert logged[-1].startswith("task 8 label changed: 5 label(s) since the last model")
        trainer.notify("ANNOTATION_CREATED", {"task": 9})  # not Label Studio's shape: counted, no task named
        assert logged[-1].startswith("labelled: 6 label(s) since the last model")
    finally:
        trainer.close()


def test_a_failed_job_waits_for_the_next_trigger_with_its_labels_still_counted(
    tmp_path: Path, fake_jobs: list[FakeJob]
) -> None:
    """--train-every 2: a job fails (not a Label Studio outage). Its 2 labels stay counted, so a job
    is still due, but none starts until the next webhook: then one starts at once."""
    logged: list[str] = []
    trainer = Trainer(_settings(tmp_path, every=2), "not-a-key", log=logged.append)
    try:
        _two_labels_and_a_job_that_fails(trainer, fake_jobs)
        deadline = time.monotonic() + 10
        while not trainer.state["failures"]:
            assert time.monotonic() < deadline, "the trainer never recorded the failure"
            time.sleep(0.01)
        time.sleep(0.2)
        # walked live (session 43): "failed, no model keeps answering" read as if something answered
        assert any(m.startswith("training job 1 failed, no model yet: ") for m in logged)
        assert trainer.state["pending"] == 2 and len(fake_jobs) == 1 and not trainer.running
        trainer.poke()
        assert len(fake_jobs) == 1  # no loop of failing jobs
        assert trainer.notify("ANNOTATION_UPDATED", {})["status"] == "training"
        assert len(fake_jobs) == 2 and trainer.state["running"]["pending_at_start"] == 3
    finally:
        trainer.close()


def test_a_job_failed_on_unreadable_photos_is_followed_by_one_that_leaves_them_out(
    tmp_path: Path, fake_jobs: list[FakeJob]
) -> None:
    """--train-every 2: job 1 fails on task 6's photo (not an image). The current model keeps
    answering (none yet), and the labels are still due, so job 2 starts at once, told to leave task 6
    out: one broken upload does not stop training for good. Status names it until task 6 is labelled
    again; then the next job tries its photo again."""
    logged: list[str] = []
    trainer = Trainer(_settings(tmp_path, every=2), "not-a-key", log=logged.append)
    why = "task 6: desk.jpg from Label Studio is not a readable image (UnidentifiedImageError)"
    try:
        trainer.notify("ANNOTATION_CREATED", {"task": {"id": 5}})
        trainer.notify("ANNOTATION_CREATED", {"task": {"id": 6}})
        assert _job_file(trainer)["left_out"] == []
        failed = {"ok": False, "error": why, "retry": False, "unreadable": {"6": why}}
        (trainer.folder / trainer.state["running"]["folder"] / RESULT_FILE).write_text(json.dumps(failed))
        fake_jobs[0].end(1)
        _wait_until(lambda: len(fake_jobs) == 2, "started the next job")
        assert _job_file(trainer)["left_out"] == [6] and trainer.state["running"]["pending_at_start"] == 2
        assert trainer.summary()["left_out"] == {"6": why} and trainer.state["current"] is None
        assert "task(s) 6 left out of the next jobs until labelled again" in logged
        trainer.notify("ANNOTATION_UPDATED", {"task": {"id": 5}})
        assert trainer.summary()["left_out"] == {"6": why}  # another task's label changes nothing
        trainer.notify("ANNOTATION_UPDATED", {"task": {"id": 6}})
        assert trainer.summary()["left_out"] == {} and "task 6 labelled again" in logged[-2]
        _end_job(trainer, fake_jobs[1], _result(tmp_path, 2, time.time() - 1))
        _wait_until(lambda: len(fake_jobs) == 3, "started the job for the labels that came during job 2")
        assert _job_file(trainer)["left_out"] == []
    finally:
        trainer.close()


def test_a_start_training_job_failed_on_unreadable_photos_is_followed_at_once_without_them(
    tmp_path: Path, fake_jobs: list[FakeJob]
) -> None:
    """Start Training with fewer labels than --train-every: job 1 fails on the photos of tasks 6 and
    10. The press still asks for a model, so job 2 starts at once, told to leave both out, not after
    more labels; the log names them in task order."""
    logged: list[str] = []
    trainer = Trainer(_settings(tmp_path, every=5), "not-a-key", log=logged.append)
    why = {str(n): f"task {n}: desk.jpg from Label Studio is not a readable image (OSError)" for n in (10, 6)}
    try:
        trainer.notify("ANNOTATION_CREATED", {"task": {"id": 6}})
        assert fake_jobs == []  # one label of five: no job yet
        trainer.notify("START_TRAINING", {})
        failed = {"ok": False, "error": "; ".join(why.values()), "retry": False, "unreadable": why}
        (trainer.folder / trainer.state["running"]["folder"] / RESULT_FILE).write_text(json.dumps(failed))
        fake_jobs[0].end(1)
        _wait_until(lambda: len(fake_jobs) == 2, "started the job Start Training still asks for")
        assert _job_file(trainer)["left_out"] == [6, 10] and trainer.state["running"]["forced"]
        assert "task(s) 6, 10 left out of the next jobs until labelled again" in logged
    finally:
        trainer.close()


def _job_file(trainer: Trainer) -> dict[str, Any]:
    """The running job's job.json: what the child is told to do."""
    return json.loads((trainer.folder / trainer.state["running"]["folder"] / "job.json").read_text())


def _wait_until(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"the trainer never {what}"
        time.sleep(0.01)


def test_labels_that_came_during_a_job_start_the_next_one_when_it_ends(
    tmp_path: Path, fake_jobs: list[FakeJob]
) -> None:
    """--train-every 3: 3 labels arrive after the running job's pull began. They are not its
    labels, so when it ends they are due and the next job starts at once, without another webhook
    (a labeller who stopped labelling would otherwise never see them trained on)."""
    trainer = Trainer(_settings(tmp_path), "not-a-key")
    try:
        for _ in range(3):
            trainer.notify("ANNOTATION_CREATED", {})
        pulled_at = time.time()
        time.sleep(0.01)
        for _ in range(3):
            assert trainer.notify("ANNOTATION_CREATED", {})["status"] == "queued"
        assert len(fake_jobs) == 1
        _end_job(trainer, fake_jobs[0], _result(tmp_path, 1, pulled_at))
        _wait_until(lambda: len(fake_jobs) == 2, "started the next job")
        assert trainer.state["running"]["job"] == 2 and trainer.state["running"]["pending_at_start"] == 3
    finally:
        trainer.close()


def test_start_training_still_asked_for_after_label_studio_was_unreachable(
    tmp_path: Path, fake_jobs: list[FakeJob]
) -> None:
    """Start Training with no new labels; the job finds Label Studio down (result "retry"). After
    retry_seconds the job is tried again by itself: the request is not lost with the failed job."""
    settings = _settings(tmp_path, every=10)
    settings.retry_seconds = 0.05
    trainer = Trainer(settings, "not-a-key")
    try:
        assert trainer.notify("START_TRAINING", {})["status"] == "training"
        folder = trainer.folder / trainer.state["running"]["folder"]
        down = {"ok": False, "error": "Label Studio is not reachable", "retry": True}
        (folder / RESULT_FILE).write_text(json.dumps(down))
        fake_jobs[0].end(1)
        _wait_until(lambda: len(fake_jobs) == 2, "tried the job again")
        assert trainer.state["pending"] == 0 and trainer.state["running"]["forced"]
        assert len(trainer.state["failures"]) == 1
    finally:
        trainer.close()


def test_start_training_after_a_failed_job_starts_one_at_once(
    tmp_path: Path, fake_jobs: list[FakeJob]
) -> None:
    """A failed job waits for the next trigger; Label Studio's Start Training button is one, as a
    new label is (the labeller fixed the broken photo and asks for a job)."""
    trainer = Trainer(_settings(tmp_path, every=2), "not-a-key")
    try:
        _two_labels_and_a_job_that_fails(trainer, fake_jobs)
        _wait_until(lambda: bool(trainer.state["failures"]) and not trainer.running, "recorded the failure")
        assert trainer.notify("START_TRAINING", {})["status"] == "training" and len(fake_jobs) == 2
    finally:
        trainer.close()


def test_a_killed_job_marks_its_run_folder_not_used(tmp_path: Path, fake_jobs: list[FakeJob]) -> None:
    """A job killed while it trained may leave a best.pt: its run folder gets NOT_USED.txt, so
    `--model runs/train` never picks it up; an older job's run folder is left alone, and its labels
    stay counted."""
    trainer = Trainer(_settings(tmp_path, every=1), "not-a-key")
    try:
        trainer.notify("ANNOTATION_CREATED", {})
        _end_job(trainer, fake_jobs[0], _result(tmp_path, 1, time.time()))
        trainer.notify("ANNOTATION_CREATED", {})
        half = tmp_path / "runs" / "label-job0002" / "weights"
        half.mkdir(parents=True)
        (half / "best.pt").write_bytes(b"half written")
        fake_jobs[1].end(-9)
        _wait_until(lambda: len(trainer.state["failures"]) == 1, "recorded the killed job")
        assert "killed (SIGKILL)" in trainer.state["failures"][0]["error"]
        assert "training job 2 failed" in (half.parent / NOT_USED_FILE).read_text()
        assert not (tmp_path / "runs" / "label-job0001" / NOT_USED_FILE).exists()
        assert trainer.state["current"]["model_version"] == "v1" and trainer.state["pending"] == 1
    finally:
        trainer.close()


def test_a_restart_after_a_job_died_records_it_and_trains_the_labels_left_counted(
    tmp_path: Path, fake_jobs: list[FakeJob]
) -> None:
    """The backend and its job died together (no result.json, no process): the restarted backend
    records the job as failed, and its labels, still counted and due, start a job at the start
    (`poke`) rather than waiting for the next label."""
    settings = _settings(tmp_path, every=2)
    folder = settings.folder / "jobs" / "job-0001"
    folder.mkdir(parents=True)
    running = {"job": 1, "folder": "jobs/job-0001", "pid": 0, "pending_at_start": 2, "started": time.time()}
    state = {"project": "units", "jobs": 1, "events": [1.0, 2.0], "pending": 2, "running": running}
    (settings.folder / STATE_FILE).write_text(json.dumps(state))
    trainer = Trainer(settings, "not-a-key")
    try:
        assert not trainer.running and trainer.state["pending"] == 2
        assert "the backend stopped while the job ran" in trainer.state["failures"][0]["error"]
        trainer.poke()
        assert len(fake_jobs) == 1 and trainer.state["running"]["job"] == 2
    finally:
        trainer.close()


def test_a_threshold_found_on_the_class_score_is_not_handed_on_as_the_suggestion_scores(
    tmp_path: Path, fake_jobs: list[FakeJob]
) -> None:
    """A model whose threshold a job found before suggestions were scored by their masks (`suggest`
    without "by_mask"): it is shown at the default on the class score, so that is what the next job
    is told (None), not its old threshold as if it were on class x mask score²."""
    settings = _settings(tmp_path, every=1)
    settings.folder.mkdir()
    current = {"model_version": "v1", "checkpoint": "v1.pt", "suggest": {"conf": 0.42}}
    state = {"project": "units", "current": current, "versions": [current]}
    (settings.folder / STATE_FILE).write_text(json.dumps(state))
    trainer = Trainer(settings, "not-a-key")
    try:
        assert trainer.current_conf() is None
        trainer.notify("ANNOTATION_CREATED", {})
        job = json.loads((trainer.folder / "jobs" / "job-0001" / "job.json").read_text())
        assert job["current_conf"] is None and job["current"] == str((settings.folder / "v1.pt").resolve())
        trainer.state["current"]["suggest"]["by_mask"] = True
        assert trainer.current_conf() == 0.42
    finally:
        trainer.close()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"every": 0}, "--train-every 0: must be at least 1"),
        ({"epochs": 0}, "--train-epochs 0: must be at least 1"),
        ({"minutes": 0.0}, "--train-minutes 0: must be positive"),
        ({"minutes": -1.0}, "--train-minutes -1: must be positive"),
        ({"img_size": 32}, "--train-img-size 32: must be at least 64 pixels"),
    ],
)
def test_settings_that_cannot_train_are_one_line_before_the_folder_is_made(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    """A job that could never train (no labels due ever, no epoch, no time) is refused at start, and
    the least that can train (1 label, 1 epoch, no time limit) is not."""
    settings = replace(_settings(tmp_path), **change)
    with pytest.raises(ConfigError, match=f"^{message}$"):
        Trainer(settings, "not-a-key")
    assert not settings.folder.exists()
    replace(_settings(tmp_path), every=1, epochs=1, minutes=None, img_size=64).check()


@pytest.mark.parametrize(
    ("which", "error", "message"),
    [
        ("runs", PermissionError(1, "Operation not permitted"), "--model .*runs"),
        ("folder", PermissionError(1, "Operation not permitted"), "backend folder .*backend"),
        # a read-only mount refuses with EROFS, an OSError that is no PermissionError
        ("runs", OSError(errno.EROFS, "Read-only file system"), "--model .*runs"),
    ],
)
def test_a_runs_folder_that_cannot_be_written_is_one_line_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, which: str, error: OSError, message: str
) -> None:
    """Walked live (session 43, the runs folder made immutable): the backend started and its first
    job failed after its pull with `PermissionError: [Errno 1] Operation not permitted:
    .../label-job0001`, as every job would. It is one line at start, and nothing is left locked. The
    tests may run as root, who writes anywhere: the folder's refusal is imitated. The backend folder
    likewise (mutation review B: unchecked, it was a traceback at the lock file)."""
    settings = _settings(tmp_path)
    real = trainer_module.tempfile.TemporaryFile

    def refused(*args: Any, dir: Path | None = None, **kwargs: Any) -> Any:  # noqa: A002 - tempfile's name
        if dir is not None and Path(dir) == getattr(settings, which):
            raise error
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(trainer_module.tempfile, "TemporaryFile", refused)
    with pytest.raises(ConfigError, match=rf"^{message}: cannot write in this folder \({error.strerror}\)$"):
        Trainer(settings, "not-a-key")
    monkeypatch.undo()
    Trainer(settings, "not-a-key").close()


def test_a_folder_of_another_project_is_refused(tmp_path: Path) -> None:
    """One --backend-dir holds one project's counters and models: another project's is one line."""
    settings = _settings(tmp_path)
    settings.folder.mkdir()
    (settings.folder / STATE_FILE).write_text(json.dumps({"project": "offices"}))
    with pytest.raises(ConfigError, match="holds the backend of project 'offices', not 'units'") as refused:
        Trainer(settings, "not-a-key")
    # The refusal let go of the folder, even while its error is kept (its traceback holds the half-made
    # Trainer): the right project's backend starts in the same process.
    assert refused.tb is not None
    (settings.folder / STATE_FILE).write_text(json.dumps({"project": "units"}))
    Trainer(settings, "not-a-key").close()


def test_status_names_a_versions_files_from_where_it_runs(tmp_path: Path) -> None:
    """state.json keeps a version's run and checkpoint relative to the backend's folder; `label
    status --json` gave them as it keeps them ("../runs/train/label-job0001", nothing from here)."""
    from officescore.label.feedback import project_status

    record = {"model_version": "v1", "run": "../runs/train/label-job0001"}
    record["checkpoint"] = record["run"] + "/weights/best.pt"
    (tmp_path / "backend").mkdir()
    (tmp_path / "backend" / STATE_FILE).write_text(json.dumps({"project": "units", "versions": [record]}))
    (row,) = project_status(FakeStudio([], []), "units", tmp_path / "backend")["versions"]
    run = tmp_path / "runs" / "train" / "label-job0001"
    assert (row["run"], row["checkpoint"]) == (str(run), str(run / "weights" / "best.pt"))


@pytest.mark.parametrize("text", ['{"project": "units", "pend', "[]", "\xff"])
def test_a_state_file_damaged_by_hand_is_one_line(tmp_path: Path, text: str) -> None:
    """state.json is written whole (temp file, rename); one cut or edited by hand into something else
    is refused in one line naming it, not a traceback."""
    settings = _settings(tmp_path)
    settings.folder.mkdir()
    (settings.folder / STATE_FILE).write_bytes(text.encode("latin-1"))
    with pytest.raises(ConfigError, match=r"state\.json: not a backend state file \(a JSON object\)"):
        Trainer(settings, "not-a-key")


def test_a_job_is_handed_the_settings_given_and_the_key_in_its_environment_only(
    tmp_path: Path, fake_jobs: list[FakeJob]
) -> None:
    """Every `--train-*` setting reaches job.json as given (none the default); the API key reaches
    the child in its environment, never a file."""
    given: dict[str, Any] = {
        "weights": "imagenet",
        "arch": "maskrcnn_resnet50_fpn",
        "img_size": 640,
        "epochs": 4,
        "minutes": 2.5,
        "batch_size": 3,
        "lr": 0.005,
        "model_kwargs": {"trainable_layers": 2},
        "device": "cuda",
        "amp": False,
        "val_fraction": 0.3,
        "nice": 5,
        "threads": 2,
        "seed": 7,
    }
    settings = replace(_settings(tmp_path, every=1), local_root=tmp_path / "photos", **given)
    trainer = Trainer(settings, "secret-key")
    try:
        trainer.notify("ANNOTATION_CREATED", {})
        job = json.loads((trainer.folder / "jobs" / "job-0001" / "job.json").read_text())
        assert {name: job[name] for name in given} == given
        assert job["local_root"] == str((tmp_path / "photos").resolve())
        assert fake_jobs[0].kwargs["env"]["LABEL_STUDIO_API_KEY"] == "secret-key"
        assert not [p for p in trainer.folder.rglob("*") if p.is_file() and b"secret-key" in p.read_bytes()]
    finally:
        trainer.close()


def test_a_bulk_delete_counts_and_a_blank_project_is_this_ones(
    tmp_path: Path, fake_jobs: list[FakeJob]
) -> None:
    """Label Studio's bulk delete (ANNOTATIONS_DELETED) changes the labels as one delete does; a
    webhook with an empty project field names no other project."""
    trainer = Trainer(_settings(tmp_path, every=10), "not-a-key", project_id=12)
    try:
        assert trainer.notify("ANNOTATIONS_DELETED", {"project": {"id": 12}})["status"] == "counted"
        assert trainer.notify("ANNOTATION_CREATED", {"project": ""})["pending"] == 2
    finally:
        trainer.close()


def test_state_json_holds_every_change_at_once(tmp_path: Path, fake_jobs: list[FakeJob]) -> None:
    """`label status` reads state.json while the backend runs, and a restart after a crash starts from
    it: the model found at start, a counted label, labels counted at start and a rejected job are
    each in it as soon as the trainer knows them."""
    best = tmp_path / "runs" / "run1" / "weights" / "best.pt"
    best.parent.mkdir(parents=True)
    best.write_bytes(b"weights")
    os.utime(best, (time.time() - 3600, time.time() - 3600))

    def saved() -> dict[str, Any]:
        return json.loads((tmp_path / "backend" / STATE_FILE).read_text())

    trainer = Trainer(_settings(tmp_path, every=10), "not-a-key")
    try:
        assert saved()["current"]["checkpoint"] == os.path.relpath(best.resolve(), trainer.folder.resolve())
        trainer.notify("ANNOTATION_CREATED", {})
        assert saved()["pending"] == 1
        assert trainer.count_missed([time.time() - 60] * 3) == 2 and saved()["pending"] == 3
        trainer.notify("START_TRAINING", {})
        worse = _result(tmp_path, 1, time.time(), segm_map=0.1, current_segm_map=0.5)
        _end_job(trainer, fake_jobs[0], worse)
        state = saved()
        assert state["running"] is None and state["pending"] == 0 and not state["versions"][-1]["accepted"]
    finally:
        trainer.close()


def test_each_job_end_hands_on_the_model_that_took_over_if_any(
    tmp_path: Path, fake_jobs: list[FakeJob]
) -> None:
    """`on_job_end` (the learning curve, --repredict) hears the new version after a switch, and None
    after a worse or failed job."""
    ended: list[str | None] = []
    trainer = Trainer(_settings(tmp_path, every=1), "not-a-key", on_job_end=ended.append)
    try:
        trainer.notify("ANNOTATION_CREATED", {})
        _end_job(trainer, fake_jobs[0], _result(tmp_path, 1, time.time(), segm_map=0.4))
        _wait_until(lambda: len(ended) == 1, "told the job's end")
        trainer.notify("ANNOTATION_CREATED", {})
        _end_job(trainer, fake_jobs[1], _result(tmp_path, 2, time.time(), segm_map=0.3, current_segm_map=0.4))
        _wait_until(lambda: len(ended) == 2, "told the job's end")
        trainer.notify("ANNOTATION_CREATED", {})
        fake_jobs[2].end(1)
        _wait_until(lambda: len(ended) == 3, "told the job's end")
        assert ended == ["v1", None, None]
    finally:
        trainer.close()


def _left_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **state: Any
) -> tuple[TrainSettings, list[bool], float]:
    """A backend folder whose state.json says job 1 (pid 4242, "alive" while alive[0]) still runs."""
    alive = [True]
    monkeypatch.setattr(trainer_module, "_alive", lambda pid, folder: alive[0])
    settings = _settings(tmp_path, every=2)
    (settings.folder / "jobs" / "job-0001").mkdir(parents=True)
    started = time.time()
    running = {"job": 1, "folder": "jobs/job-0001", "pid": 4242, "pending_at_start": 2, "started": started}
    written = {"project": "units", "jobs": 1, "running": running, **state}
    (settings.folder / STATE_FILE).write_text(json.dumps(written))
    return settings, alive, started


def test_a_job_still_running_at_a_restart_is_waited_for_then_adopted(
    tmp_path: Path, fake_jobs: list[FakeJob], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The backend restarts while its job still trains: it waits for the process (however long it
    takes), adopts the model the job then leaves, tells `on_job_end`, and starts the job the labels
    counted meanwhile are due for."""
    now = time.time()
    settings, alive, started = _left_running(tmp_path, monkeypatch, events=[now - 2, now - 1], pending=2)
    ended: list[str | None] = []
    trainer = Trainer(settings, "not-a-key", on_job_end=ended.append)
    try:
        trainer.notify("ANNOTATION_CREATED", {})
        trainer.notify("ANNOTATION_CREATED", {})
        time.sleep(1.5)  # the orphan is looked at once a second
        assert trainer.running and not trainer.state["failures"] and not fake_jobs
        result = _result(tmp_path, 1, started)  # it pulled before the restart
        (settings.folder / "jobs" / "job-0001" / RESULT_FILE).write_text(json.dumps(result))
        alive[0] = False
        _wait_until(lambda: ended == ["v1"], "adopted the job")
        assert trainer.state["current"]["model_version"] == "v1" and len(fake_jobs) == 1
        assert trainer.state["running"]["pending_at_start"] == 2
    finally:
        trainer.close()


def test_a_closed_backend_leaves_its_orphan_job_to_the_next_start(
    tmp_path: Path, fake_jobs: list[FakeJob], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backend stopped while it waited for a job an earlier start left running does not record the
    job when it ends: the folder is the next backend's then, and that one adopts it."""
    settings, alive, started = _left_running(tmp_path, monkeypatch)
    running = json.loads((settings.folder / STATE_FILE).read_text())["running"]
    ended: list[str | None] = []
    trainer = Trainer(settings, "not-a-key", on_job_end=ended.append)
    trainer.close()
    alive[0] = False
    time.sleep(1.5)  # the orphan is looked at once a second
    assert ended == [] and trainer.state["running"] is not None
    assert json.loads((settings.folder / STATE_FILE).read_text())["running"] == running
    (settings.folder / "jobs" / "job-0001" / RESULT_FILE).write_text(
        json.dumps(_result(tmp_path, 1, started))
    )
    adopting = Trainer(settings, "not-a-key")
    try:
        assert adopting.state["current"]["model_version"] == "v1" and adopting.state["running"] is None
    finally:
        adopting.close()


def test_run_folders_a_failed_job_did_not_make_are_left_alone(
    tmp_path: Path, fake_jobs: list[FakeJob]
) -> None:
    """A killed job 1 marks its run folder (and one with digits after a clash), not a label-job0001 an
    earlier backend folder left in the runs folder (maybe the model in use), nor a folder named
    label-job0001-keep."""
    runs = tmp_path / "runs"
    old = runs / "label-job0001"
    old.mkdir(parents=True)
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    trainer = Trainer(_settings(tmp_path, every=1), "not-a-key")
    try:
        trainer.notify("ANNOTATION_CREATED", {})
        for name in ("label-job00012", "label-job0001-keep"):
            (runs / name).mkdir()
        fake_jobs[0].end(-9)
        _wait_until(lambda: bool(trainer.state["failures"]), "recorded the killed job")
        assert (runs / "label-job00012" / NOT_USED_FILE).is_file()
        assert (
            not (old / NOT_USED_FILE).exists() and not (runs / "label-job0001-keep" / NOT_USED_FILE).exists()
        )
    finally:
        trainer.close()


@pytest.mark.parametrize("relative", [False, True])
def test_a_failed_job_leaves_the_run_of_another_backend_sharing_the_runs_folder_alone(
    tmp_path: Path, fake_jobs: list[FakeJob], monkeypatch: pytest.MonkeyPatch, relative: bool
) -> None:
    """Walked live (session 43): a second `label backend --train` with its own --backend-dir (as the
    lock's message advises) and the same --model runs/train. Both number their jobs from 1; when this
    one's job 1 is killed, the other's label-job0001, made meanwhile, is not marked NOT_USED (a model
    in use, then skipped by `score --model runs/train`); this job's own run (label-job00012 after the
    clash) is. Also with a relative --model (the default `runs/train`; mutation review B)."""
    runs = tmp_path / "runs"
    settings = _settings(tmp_path, every=1)
    if relative:
        monkeypatch.chdir(tmp_path)
        settings = replace(settings, runs=Path("runs"))
    trainer = Trainer(settings, "not-a-key")
    try:
        trainer.notify("ANNOTATION_CREATED", {})
        other = tmp_path / "other-backend" / "jobs" / "job-0001" / "dataset"
        for run, data in (
            ("label-job0001", other),
            ("label-job00012", trainer.folder / "jobs/job-0001/dataset"),
        ):
            (runs / run / "weights").mkdir(parents=True)
            (runs / run / "args.json").write_text(json.dumps({"data": os.path.relpath(data, runs / run)}))
        fake_jobs[0].end(-9)
        _wait_until(lambda: bool(trainer.state["failures"]), "recorded the killed job")
        assert (runs / "label-job00012" / NOT_USED_FILE).is_file()
        assert not (runs / "label-job0001" / NOT_USED_FILE).exists()
    finally:
        trainer.close()


def test_stopping_terminates_the_job_and_leaves_it_to_the_next_start(
    tmp_path: Path, fake_jobs: list[FakeJob]
) -> None:
    """Stopping the backend sends its job SIGTERM (it saves last.pt) and writes nothing after the
    folder is let go: the next start records the job and keeps its labels counted. The log says so
    (walked live, session 43: it ended on "training job 1 started")."""
    logged: list[str] = []
    trainer = Trainer(_settings(tmp_path, every=1), "not-a-key", log=logged.append)
    trainer.notify("ANNOTATION_CREATED", {})
    trainer.close()
    assert fake_jobs[0].signals == ["SIGTERM"]
    assert logged[-1].startswith("stopping training job 1: its labels (or Start Training) stay counted")
    time.sleep(0.3)  # the job's waiting thread has seen it end
    state = json.loads((tmp_path / "backend" / STATE_FILE).read_text())
    assert state["running"]["job"] == 1 and not state["failures"]
    trainer = Trainer(_settings(tmp_path, every=10), "not-a-key")
    try:
        assert "the backend stopped while the job ran" in trainer.state["failures"][0]["error"]
        assert trainer.state["pending"] == 1 and not trainer.running
    finally:
        trainer.close()


def test_a_start_training_job_the_backend_stopped_runs_again_at_the_next_start(
    tmp_path: Path, fake_jobs: list[FakeJob]
) -> None:
    """Walked live (session 43): Start Training, then the backend stopped (Ctrl-C) mid-job. The job
    never finished, so the request still stands: the next start runs it, with no new label; a job
    killed while the backend watched (its own choice, or the OOM killer) is not started again."""
    trainer = Trainer(_settings(tmp_path, every=10), "not-a-key")
    trainer.notify("START_TRAINING", {})
    trainer.close()
    trainer = Trainer(_settings(tmp_path, every=10), "not-a-key")
    try:
        assert trainer.state["failures"] and trainer.state["pending"] == 0
        trainer.poke()
        assert len(fake_jobs) == 2 and trainer.state["running"]["forced"]
        fake_jobs[1].end(-9)
        _wait_until(lambda: len(trainer.state["failures"]) == 2, "recorded the killed job")
        trainer.poke()
        assert len(fake_jobs) == 2 and not trainer.state["forced"]
    finally:
        trainer.close()


def test_only_a_start_training_still_asked_for_is_restored_after_a_stop(
    tmp_path: Path, fake_jobs: list[FakeJob]
) -> None:
    """Mutation review B: a job the labels started, stopped with the backend, is no Start Training at
    the next start; a Start Training clicked while it ran still is; a Start Training job that wrote its
    own failure before the stop is over (its failure says why, a rerun would fail the same way)."""
    trainer = Trainer(_settings(tmp_path, every=1), "not-a-key")
    trainer.notify("ANNOTATION_CREATED", {})
    trainer.close()
    trainer = Trainer(_settings(tmp_path, every=1), "not-a-key")
    try:
        assert not trainer.state["forced"]
        trainer.poke()
        trainer.notify("START_TRAINING", {})  # during job 2: it runs after it
    finally:
        trainer.close()
    trainer = Trainer(_settings(tmp_path, every=100), "not-a-key")
    try:
        assert trainer.state["forced"] and len(trainer.state["failures"]) == 2
        trainer.poke()
        assert trainer.state["running"]["forced"]
        folder = trainer.folder / trainer.state["running"]["folder"]
        (folder / RESULT_FILE).write_text(json.dumps({"ok": False, "error": "no labelled photos"}))
    finally:
        trainer.close()
    trainer = Trainer(_settings(tmp_path, every=100), "not-a-key")
    try:
        assert trainer.state["failures"][-1]["error"] == "no labelled photos"
        assert not trainer.state["forced"]
    finally:
        trainer.close()


@pytest.mark.parametrize(("code", "result"), [(0, None), (1, None), (1, '{"ok": tr'), (1, "[]")])
def test_a_job_that_exits_without_a_result_is_reported_with_its_last_log_line(
    tmp_path: Path, fake_jobs: list[FakeJob], code: int, result: str | None
) -> None:
    """No result.json (or one that is no JSON object): the failure names the exit code and the log's
    last line (the error), however it exited."""
    trainer = Trainer(_settings(tmp_path, every=1), "not-a-key")
    try:
        trainer.notify("ANNOTATION_CREATED", {})
        folder = trainer.folder / "jobs" / "job-0001"
        (folder / "log.txt").write_text(
            "Traceback (most recent call last):\n  ...\nMemoryError: out of memory\n\n"
        )
        if result is not None:
            (folder / RESULT_FILE).write_text(result)
        fake_jobs[0].end(code)
        _wait_until(lambda: bool(trainer.state["failures"]), "recorded the failure")
        error = trainer.state["failures"][0]["error"]
        assert error == f"the job exited with {code} without a result: MemoryError: out of memory"
    finally:
        trainer.close()


def test_a_job_folder_left_from_before_is_not_read_as_the_new_jobs(
    tmp_path: Path, fake_jobs: list[FakeJob]
) -> None:
    """state.json removed (a reset) but jobs/ kept: job 1's folder still holds an old result.json.
    The new job 1 is judged by what it writes, not by the old result."""
    folder = tmp_path / "backend" / "jobs" / "job-0001"
    folder.mkdir(parents=True)
    (folder / RESULT_FILE).write_text(json.dumps(_result(tmp_path, 1, time.time())))
    trainer = Trainer(_settings(tmp_path, every=1), "not-a-key")
    try:
        trainer.notify("ANNOTATION_CREATED", {})
        fake_jobs[0].end(1)
        _wait_until(lambda: bool(trainer.state["failures"]), "recorded the failure")
        assert trainer.state["current"] is None and not trainer.versions()
    finally:
        trainer.close()


def test_labels_counted_while_a_job_runs_after_its_pull_stay_counted_when_it_ends(
    tmp_path: Path, fake_jobs: list[FakeJob]
) -> None:
    """A label no webhook brought, made after the running job's pull, is counted at start; when the
    job ends it stays counted (it was not in the pull), whatever clock Label Studio keeps."""
    from officescore.label.trainjob import PULLED_FILE

    server = time.time() - 600  # Label Studio's clock, 10 minutes behind
    trainer = Trainer(_settings(tmp_path, every=10), "not-a-key")
    try:
        trainer.notify("START_TRAINING", {})
        pulled_at = time.time()
        folder = trainer.folder / trainer.state["running"]["folder"]
        (folder / PULLED_FILE).write_text(json.dumps({"pulled_at": pulled_at, "labels_until": server}))
        time.sleep(0.01)
        assert trainer.count_missed([server - 5, server + 5]) == 1
        _end_job(trainer, fake_jobs[0], _result(tmp_path, 1, pulled_at, labels_until=server))
        assert trainer.state["pending"] == 1
    finally:
        trainer.close()


def test_a_version_recorded_before_jobs_kept_label_times_covers_labels_until_its_pull(tmp_path: Path) -> None:
    """An old state.json (versions with `started` and `pulled_at` only): a label made between the
    job's start and its pull was in the pull, so only the one after it counts at start."""
    settings = _settings(tmp_path, every=10)
    settings.folder.mkdir()
    now = time.time()
    version = {
        "job": 1,
        "model_version": "v1",
        "checkpoint": "v1.pt",
        "started": now - 100,
        "pulled_at": now - 50,
    }
    state = {"project": "units", "jobs": 1, "current": version, "versions": [version]}
    (settings.folder / STATE_FILE).write_text(json.dumps(state))
    trainer = Trainer(settings, "not-a-key")
    try:
        assert trainer.count_missed([now - 70, now - 20]) == 1
    finally:
        trainer.close()


def test_labels_during_a_wait_for_label_studio_start_no_job_before_the_retry(
    tmp_path: Path, fake_jobs: list[FakeJob]
) -> None:
    """A job found Label Studio unreachable: labels arriving meanwhile are counted but start no job
    before retry_seconds (a job per label would each fail the same way)."""
    settings = replace(_settings(tmp_path, every=1), retry_seconds=60.0)
    logged: list[str] = []
    trainer = Trainer(settings, "not-a-key", log=logged.append)
    try:
        trainer.notify("ANNOTATION_CREATED", {})
        folder = trainer.folder / trainer.state["running"]["folder"]
        down = {"ok": False, "error": "Label Studio is not reachable", "retry": True}
        (folder / RESULT_FILE).write_text(json.dumps(down))
        fake_jobs[0].end(1)
        _wait_until(lambda: bool(trainer.state["failures"]) and not trainer.running, "recorded the failure")
        assert trainer.notify("ANNOTATION_CREATED", {})["status"] == "counted" and len(fake_jobs) == 1
        said = "labelled: 2 label(s) since the last model, a job every 1; waiting for Label Studio"
        assert logged[-1] == said
    finally:
        trainer.close()


def test_a_version_record_keeps_the_jobs_numbers_and_says_which_labels_were_skipped(
    tmp_path: Path, fake_jobs: list[FakeJob]
) -> None:
    """What `label status` shows of a job: its mask and box mAP, the model it was compared with and
    that model's score, and the labels of classes the project lacks (also a log line)."""
    messages: list[str] = []
    trainer = Trainer(_settings(tmp_path, every=1), "not-a-key", log=messages.append)
    try:
        trainer.notify("ANNOTATION_CREATED", {})
        _end_job(trainer, fake_jobs[0], _result(tmp_path, 1, time.time(), bbox_map=0.6))
        trainer.notify("ANNOTATION_CREATED", {})
        skipped = {"sofa": 2, "plant": 1}
        second = _result(
            tmp_path,
            2,
            time.time(),
            segm_map=0.45,
            bbox_map=0.55,
            current_segm_map=0.5,
            skipped_unknown_classes=skipped,
        )
        _end_job(trainer, fake_jobs[1], second)
        record = trainer.versions()[-1]
        numbers = ("segm_map", "bbox_map", "previous_version", "previous_segm_map", "skipped_unknown_classes")
        assert [record[name] for name in numbers] == [0.45, 0.55, "v1", 0.5, skipped]
        assert (
            "job 2: labels of classes the project does not have were skipped: sofa x2, plant x1" in messages
        )
        summary = trainer.summary()  # GET /metrics
        assert (summary["model_version"], summary["jobs"], summary["running_job"]) == ("v1", 2, None)
        assert (summary["pending_labels"], summary["val_photos"]) == (0, 1)
        folder = json.loads(json.dumps(summary))["settings"]["folder"]  # sent as JSON
        assert folder == str(tmp_path / "backend")
    finally:
        trainer.close()


def test_a_job_of_a_relative_backend_dir_is_recognised_after_a_restart(
    tmp_path: Path, fake_jobs: list[FakeJob], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default --backend-dir is relative (runs/label-backend). The job must run with a command
    line the restarted backend recognises: else a job still training is recorded as failed, its run
    folder marked not used, and a second job starts beside it."""
    monkeypatch.chdir(tmp_path)
    settings = replace(_settings(tmp_path, every=1), folder=Path("runs/label-backend"))
    shown: dict[int, str] = {}  # what /proc or ps shows of each process
    monkeypatch.setattr(trainer_module, "_command_line", shown.get)
    first = Trainer(settings, "not-a-key")
    first.notify("ANNOTATION_CREATED", {})
    shown[fake_jobs[0].pid] = " ".join(fake_jobs[0].args[0])
    first.close(stop_job=False)  # the backend dies; its job trains on
    second = Trainer(settings, "not-a-key")
    try:
        assert second.running and not second.state["failures"]
        shown.clear()  # the job is gone
        _wait_until(lambda: not second.running, "saw the job end")
        assert len(fake_jobs) == 1
    finally:
        second.close()
        fake_jobs[0].end(0)


class ManualTimer:
    """threading.Timer's part `live.after_jobs` uses; it runs only when the test says so."""

    def __init__(self, interval: float, function: Callable[[], None]) -> None:
        self.interval, self.function, self.daemon = interval, function, False

    def start(self) -> None:
        pass


class AfterJobs:
    """`live.after_jobs` around a backend and trainer that only record: Label Studio answers the
    repredicts in `answers` (an exception: it is down), and `live_metrics` fails when told to."""

    def __init__(
        self,
        monkeypatch: pytest.MonkeyPatch,
        answers: list[Any],
        retry_seconds: float,
        by_hand: bool = False,
        repredict: bool = True,
    ) -> None:
        from types import SimpleNamespace

        from officescore.label import feedback, live

        self.messages: list[str] = []
        # by_hand: a retry comes due when the test says (`retries_due`), not after retry_seconds of
        # real time, which a busy machine may spend before the test's next step
        self.waiting: list[ManualTimer] = []
        timers = SimpleNamespace(Timer=self._timer, Lock=threading.Lock) if by_hand else threading
        monkeypatch.setattr(live, "threading", timers)
        self.calls = 0
        self.predicted_by: list[str] = []  # the answering model at each repredict
        self.metrics_fail = False
        self.loads_asked = 0  # calls of `current`: each starts the load of a switched-to model
        self.model_version = "v2"
        self.client = None
        self.trainer = SimpleNamespace(
            project_id=1, settings=SimpleNamespace(retry_seconds=retry_seconds), closed=False, on_job_end=None
        )

        def repredict_unlabelled(backend: Any) -> int:
            answer = answers[min(self.calls, len(answers) - 1)]
            self.calls += 1
            self.predicted_by.append(self.model_version)
            if isinstance(answer, Exception):
                raise answer
            return answer

        def metrics(trainer: Any, client: Any) -> dict[str, Any]:
            if self.metrics_fail:
                raise LabelStudioError("Label Studio at http://127.0.0.1:1 did not answer (export tasks)")
            return {}

        monkeypatch.setattr(live, "repredict_unlabelled", repredict_unlabelled)
        monkeypatch.setattr(feedback, "live_metrics", metrics)
        live.after_jobs(self.trainer, self, repredict=repredict, retries=2)  # type: ignore[arg-type]

    def log(self, message: str) -> None:
        self.messages.append(message)

    def _timer(self, interval: float, function: Callable[[], None]) -> ManualTimer:
        timer = ManualTimer(interval, function)
        self.waiting.append(timer)
        return timer

    def retries_due(self) -> None:
        """retry_seconds have passed: the waiting retries run, in the order they were set."""
        due, self.waiting = self.waiting, []
        for timer in due:
            timer.function()

    def current(self) -> None:
        self.loads_asked += 1

    def wait_for_load(self, timeout: float) -> None:
        pass

    def job_ends(self, version: str | None = "v2") -> None:
        self.trainer.on_job_end(version)

    def until(self, check: Callable[[], bool], timeout: float = 20.0) -> None:
        """Wait for the retries (timers, late on a busy machine) to get somewhere."""
        deadline = time.monotonic() + timeout
        while not check():
            assert time.monotonic() < deadline, self.messages
            time.sleep(0.02)


DOWN = LabelStudioError("Label Studio at http://127.0.0.1:1 is not reachable (add a prediction)")


def test_repredict_tries_again_while_label_studio_is_down(monkeypatch: pytest.MonkeyPatch) -> None:
    """Label Studio down after a job: --repredict waits retry_seconds and tries again (the tasks are
    not left with the old model's predictions), and the metrics failing does not stop it."""
    after = AfterJobs(monkeypatch, [DOWN, DOWN, 3], retry_seconds=0.05)
    after.metrics_fail = True
    after.job_ends()
    after.until(lambda: "unlabelled task(s) that lacked its prediction" in after.messages[-1])
    assert after.calls == 3
    assert sum("predicting unlabelled tasks again in 0.05s" in m for m in after.messages) == 2
    assert after.messages[-1] == "v2: predicted 3 unlabelled task(s) that lacked its prediction"
    assert "did not answer (export tasks)" in after.messages[0]


def test_without_repredict_a_job_end_starts_the_new_models_load_and_predicts_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The switched-to model starts loading when its job ends, not when the next labeller opens a
    task; without --repredict no task is predicted again. A repredict with nothing to do says nothing."""
    after = AfterJobs(monkeypatch, [3], retry_seconds=0.05, repredict=False)
    after.job_ends("v2")
    assert after.loads_asked == 1 and after.calls == 0 and after.messages == []
    idle = AfterJobs(monkeypatch, [0], retry_seconds=0.05)
    idle.job_ends("v2")
    assert idle.calls == 1 and idle.messages == []
    one = AfterJobs(monkeypatch, [1], retry_seconds=0.05)
    one.job_ends("v2")
    assert one.messages == ["v2: predicted 1 unlabelled task(s) that lacked its prediction"]


def test_repredict_gives_up_after_its_retries_and_the_next_job_starts_over(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    after = AfterJobs(monkeypatch, [DOWN], retry_seconds=0.05)
    after.job_ends()
    after.until(lambda: after.messages[-1].endswith("keep their predictions"))
    time.sleep(0.2)  # no fourth try comes
    assert after.calls == 3  # the first try and retries=2
    assert after.messages[-1].endswith(
        "is not reachable (add a prediction); unlabelled tasks keep their predictions"
    )
    # A job that ends while a retry waits cancels it: its own repredict does the work, once. (The
    # retries come due by hand: with real ones 0.4 s apart, a next job ending later than that on a
    # busy machine let the retry predict first, and three calls were made.)
    slow = AfterJobs(monkeypatch, [DOWN, 4], retry_seconds=0.4, by_hand=True)
    slow.job_ends()
    assert [timer.interval for timer in slow.waiting] == [0.4]
    slow.job_ends()  # the next job, before the retry is due
    slow.retries_due()
    assert (
        slow.calls == 2
        and slow.messages[-1] == "v2: predicted 4 unlabelled task(s) that lacked its prediction"
    )
    assert not slow.waiting
    # A backend that is stopping does not try again.
    closing = AfterJobs(monkeypatch, [DOWN, 5], retry_seconds=0.05, by_hand=True)
    closing.trainer.closed = True
    closing.job_ends()
    assert closing.calls == 1 and not closing.waiting
    # Nor does one that stops while a retry waits.
    stopped = AfterJobs(monkeypatch, [DOWN, 6], retry_seconds=0.2, by_hand=True)
    stopped.job_ends()
    stopped.trainer.closed = True
    stopped.retries_due()
    assert stopped.calls == 1 and not stopped.waiting


def test_repredict_waits_for_the_new_model_and_tries_again_when_it_did_not_load(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After a switch the unlabelled tasks are predicted by the new model once it has loaded, not by
    the old one still answering. A new model that failed to load (the backend tries it again a
    minute later) is waited for again retry_seconds apart, as Label Studio down is; the old model
    never predicts them in its place, and after the retries the log says they keep their predictions."""
    after = AfterJobs(monkeypatch, [2], retry_seconds=0.05)
    after.model_version = "v1"
    loads = {"v3": 0}  # how many times each version's load fails before it takes over
    loading: list[str] = []

    def current() -> None:  # the backend starts loading the trainer's newest model beside the old one
        wanted = max(loads)
        if after.model_version != wanted and not loading:
            loading.append(wanted)

    def wait_for_load(timeout: float) -> None:  # the load started, if any, ends: failed or loaded
        if loading:
            version = loading.pop()
            if loads[version] > 0:
                loads[version] -= 1
            else:
                after.model_version = version

    after.current = current  # type: ignore[method-assign]
    after.wait_for_load = wait_for_load  # type: ignore[method-assign]
    after.job_ends("v3")
    assert (
        after.predicted_by == ["v3"]
        and after.messages[-1] == "v3: predicted 2 unlabelled task(s) that lacked its prediction"
    )
    loads["v4"] = 1
    after.job_ends("v4")  # v4's first load fails; the retry finds it loaded
    after.until(lambda: after.predicted_by == ["v3", "v4"])
    assert "after the job: v4 is not loaded; predicting unlabelled tasks again in 0.05s" in after.messages
    loads["v5"] = 99
    after.job_ends("v5")  # v5 never loads: v4 answers, and does not predict in its place
    after.until(lambda: after.messages[-1].endswith("keep their predictions"))
    assert after.predicted_by == ["v3", "v4"]
    assert after.messages[-1] == "after the job: v5 is not loaded; unlabelled tasks keep their predictions"
    after.job_ends(None)  # a worse job: the answering model predicts what lacks its prediction
    assert after.predicted_by == ["v3", "v4", "v4"]


def test_a_repredict_still_waiting_for_its_model_stops_when_a_newer_job_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """v2's repredict waits for v2 to load; meanwhile the next job ends and v3 loads and predicts
    the tasks. v2's repredict then finds v3 answering: it stops quietly (it neither says v2 is not
    loaded nor tries again), since v3's repredict covered the tasks."""
    after = AfterJobs(monkeypatch, [2, 3], retry_seconds=0.05)
    after.model_version = "v1"
    first_wait, release = threading.Event(), threading.Event()

    def wait_for_load(timeout: float) -> None:
        if not first_wait.is_set():  # v2's load: still going when v3's job ends
            first_wait.set()
            release.wait(10)

    after.wait_for_load = wait_for_load  # type: ignore[method-assign]
    waiting = threading.Thread(target=after.job_ends, args=("v2",))
    waiting.start()
    assert first_wait.wait(10)
    after.model_version = "v3"
    after.job_ends("v3")
    assert after.predicted_by == ["v3"]
    release.set()
    waiting.join(10)
    time.sleep(0.3)  # a retry would have come by now
    assert after.predicted_by == ["v3"] and after.calls == 1
    assert after.messages == ["v3: predicted 2 unlabelled task(s) that lacked its prediction"]


def test_a_new_model_that_fails_to_load_is_tried_again_later(monkeypatch: pytest.MonkeyPatch) -> None:
    """--train: the switched-to model fails to load (say memory ran short): the old one keeps
    answering, and after RELOAD_RETRY_SECONDS the next request loads it again, not never. The
    backend's clock is the test's: how long a busy machine takes between two requests cannot start
    the second try early (with a real 0.3 s wait, a request 0.3 s late did, and v2 answered)."""
    from types import SimpleNamespace

    from officescore.label import backend as ml
    from officescore.label.predict import LoadedPredictor, NoModel

    checkpoint = ["runs/v1/best.pt"]
    failures = [1]  # the next load of v2 fails this many times
    tries: list[str] = []

    def load(self: Any, source: str, threshold: Any) -> LoadedPredictor:
        tries.append(Path(source).parent.name)
        if "v2" in str(source) and failures[0] > 0:
            failures[0] -= 1
            raise MemoryError("out of memory")
        return LoadedPredictor(NoModel(), source, Path(source).parent.name)

    monkeypatch.setattr(ml.Backend, "_load", load)
    clock = [1000.0]
    monkeypatch.setattr(ml, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    trainer = SimpleNamespace(current_checkpoint=lambda: checkpoint[0], current_conf=lambda: None)
    messages: list[str] = []
    backend = ml.Backend("runs", trainer=trainer, log=messages.append)  # type: ignore[arg-type]
    assert backend.model_version == "v1"
    checkpoint[0] = "runs/v2/best.pt"  # the trainer switched
    assert backend.model_version == "v1"  # the old one answers while the new one loads
    backend.wait_for_load(10)
    assert backend.model_version == "v1" and "cannot load the new model runs/v2/best.pt" in messages[-1]
    assert f"trying again in {ml.RELOAD_RETRY_SECONDS:g}s" in messages[-1]
    clock[0] += ml.RELOAD_RETRY_SECONDS - 1
    assert backend.model_version == "v1"  # too soon: no second try yet
    backend.wait_for_load(10)
    assert backend.model_version == "v1" and tries == ["v1", "v2"]
    clock[0] += 2
    assert backend.model_version == "v1"  # this request starts the second try...
    backend.wait_for_load(10)
    assert backend.model_version == "v2" and messages[-1] == "model v1 -> v2 (suggests scores >= 0.30)"
    assert tries == ["v1", "v2", "v2"]


def test_a_new_model_loads_once_and_one_that_failed_does_not_hold_up_the_next(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """--train: requests coming while a switched-to model loads beside the old one start no second
    load of it; a model that failed to load waits a minute for its retry, but a newer job's model
    that comes meanwhile loads at once."""
    from officescore.label import backend as ml
    from officescore.label.predict import LoadedPredictor, NoModel

    tries: list[str] = []
    slow = threading.Event()

    def load(self: Any, source: str, threshold: Any) -> LoadedPredictor:
        name = Path(source).parent.name
        tries.append(name)
        if name == "v2":
            raise MemoryError("out of memory")
        if name == "v3":
            assert slow.wait(10)
        return LoadedPredictor(NoModel(), source, name)

    monkeypatch.setattr(ml.Backend, "_load", load)
    monkeypatch.setattr(ml, "time", SimpleNamespace(monotonic=lambda: 1000.0))  # the clock stands
    checkpoint = ["runs/v1/best.pt"]
    trainer = SimpleNamespace(current_checkpoint=lambda: checkpoint[0], current_conf=lambda: None)
    backend = ml.Backend("runs", trainer=trainer)  # type: ignore[arg-type]
    checkpoint[0] = "runs/v2/best.pt"
    assert backend.model_version == "v1"
    backend.wait_for_load(10)
    checkpoint[0] = "runs/v3/best.pt"  # the next job's model, well within the minute
    assert [backend.model_version for _ in range(3)] == ["v1"] * 3
    slow.set()
    backend.wait_for_load(10)
    assert backend.model_version == "v3" and tries == ["v1", "v2", "v3"]


class FakeStudio:
    """A Label Studio client holding `tasks` (as the JSON export lists them, predictions by id only)
    and their `predictions`; records the predictions the backend adds."""

    def __init__(self, tasks: list[dict[str, Any]], predictions: list[dict[str, Any]]) -> None:
        from types import SimpleNamespace

        self.tasks = tasks
        self.added: list[dict[str, Any]] = []
        self.sdk = SimpleNamespace(
            predictions=SimpleNamespace(
                list=lambda project: [dict(p) for p in predictions],
                create=lambda **made: self.added.append(made),
            )
        )

    def project(self, title: str) -> Any:
        from types import SimpleNamespace

        return SimpleNamespace(id=4, schema=SimpleNamespace(config_xml=lambda: "<View/>"))

    def export_tasks(self, project_id: int) -> list[dict[str, Any]]:
        return [dict(t) for t in self.tasks]

    def call(self, what: str, fn: Callable[[], Any]) -> Any:
        return fn()


def _answering_v2(client: FakeStudio, predict: Callable[..., Any], log: Any = print) -> Any:
    """The parts of a backend `repredict_unlabelled` uses, with model v2 answering."""
    from types import SimpleNamespace

    return SimpleNamespace(
        client=client,
        model_version="v2",
        current=lambda: "v2 loaded",
        predict=predict,
        log=log,
        trainer=SimpleNamespace(settings=SimpleNamespace(project="units")),
    )


def test_repredict_predicts_every_unlabelled_task_without_the_answering_models_prediction() -> None:
    """20 tasks: one labelled, one skipped (a skip is no label), one already predicted by v2 (the
    answering model), the rest predicted by v1 or not at all. Each of the 18 without a v2 prediction
    gets one, in batches of REPREDICT_BATCH, whatever the batch size leaves over; the labelled one
    and the one v2 predicted are left alone."""

    from officescore.label.live import REPREDICT_BATCH, repredict_unlabelled

    done = {"id": 90, "created_at": "2026-01-01T10:00:00Z", "result": []}
    tasks: list[dict[str, Any]] = [{"id": n, "annotations": []} for n in range(1, 21)]
    tasks[0]["annotations"] = [done]
    tasks[1]["annotations"] = [{**done, "id": 91, "was_cancelled": True}]
    predictions = [{"id": 100 + n, "task": n, "model_version": "v1", "result": []} for n in range(1, 8)]
    predictions.append({"id": 200, "task": 3, "model_version": "v2", "result": []})
    client = FakeStudio(tasks, predictions)
    batches: list[list[int]] = []

    def predict(chunk: list[dict[str, Any]], config: str) -> list[dict[str, Any]]:
        batches.append([t["id"] for t in chunk])
        return [{"result": [{"task": t["id"]}], "score": 0.5, "model_version": "v2"} for t in chunk]

    backend = _answering_v2(client, predict)
    assert repredict_unlabelled(backend) == 18
    want = [2, *range(4, 21)]
    assert sorted(made["task"] for made in client.added) == want
    assert all(made["result"] == [{"task": made["task"]}] for made in client.added)
    assert {made["model_version"] for made in client.added} == {"v2"}
    assert [len(b) for b in batches] == [REPREDICT_BATCH, REPREDICT_BATCH, 18 - 2 * REPREDICT_BATCH]


def test_repredict_stores_the_score_and_version_that_made_each_prediction() -> None:
    """A new model took over between the backend's version read and its predictions: each stored
    prediction names the model that made it (its own repredict then skips it), with its score."""
    from officescore.label.live import repredict_unlabelled

    client = FakeStudio([{"id": n, "annotations": []} for n in (1, 2)], [])

    def predict(chunk: list[dict[str, Any]], config: str) -> list[dict[str, Any]]:
        return [{"result": [], "score": 0.25 * t["id"], "model_version": "v3"} for t in chunk]

    backend = _answering_v2(client, predict)
    assert repredict_unlabelled(backend) == 2
    assert [(m["task"], m["score"], m["model_version"]) for m in client.added] == [
        (1, 0.25, "v3"),
        (2, 0.5, "v3"),
    ]


def test_repredict_leaves_out_a_task_whose_photo_is_gone_and_predicts_the_others() -> None:
    """A deleted local file failed its whole batch, at every retry: the rest of the project never got
    the new model's predictions. Where no task of a batch can be predicted (Label Studio down), the
    error still reaches the caller, which tries again later."""

    from officescore.label.live import repredict_unlabelled

    client = FakeStudio([{"id": n, "annotations": []} for n in range(1, 8)], [])
    logged: list[str] = []
    broken = {5: "task 5: no data.image to predict on", 6: "Label Studio answered 404 for /data/x.jpg"}

    def predict(chunk: list[dict[str, Any]], config: str) -> list[dict[str, Any]]:
        for task in chunk:
            if task["id"] in broken:
                raise DataError(broken[task["id"]])
        return [{"result": [], "score": 0.5, "model_version": "v2"} for _ in chunk]

    backend = _answering_v2(client, predict, logged.append)
    assert repredict_unlabelled(backend) == 5
    assert sorted(made["task"] for made in client.added) == [1, 2, 3, 4, 7]
    assert logged == [
        "task 5: no data.image to predict on; it keeps its predictions",
        "task 6: Label Studio answered 404 for /data/x.jpg; it keeps its predictions",
    ]
    broken.update({n: "Label Studio is not answering" for n in range(1, 8)})
    client.added.clear()
    with pytest.raises(DataError, match="^Label Studio is not answering$"):
        repredict_unlabelled(backend)
    assert client.added == []


def test_repredict_of_the_one_task_whose_photo_is_gone_is_not_retried() -> None:
    """Walked live: after a retry had given every other task the model's prediction, the one task
    whose local file was deleted was all that was left, its error was taken for Label Studio's, and
    the backend tried again every minute, five times, logging the same two lines each time."""
    from officescore.label.live import repredict_unlabelled

    client = FakeStudio([{"id": 12, "annotations": []}], [])
    logged: list[str] = []

    def predict(chunk: list[dict[str, Any]], config: str) -> list[dict[str, Any]]:
        raise DataError("Label Studio answered 404 for /data/local-files/?d=photos/gone.jpg")

    assert repredict_unlabelled(_answering_v2(client, predict, logged.append)) == 0
    assert logged == [
        "task 12: Label Studio answered 404 for /data/local-files/?d=photos/gone.jpg; "
        "it keeps its predictions"
    ]


def test_status_counts_labelled_tasks_without_skipped_ones(tmp_path: Path) -> None:
    """`label status` and /metrics: a task the labeller skipped has no label, so it is not labelled."""
    from officescore.label.feedback import project_status

    tasks: list[dict[str, Any]] = [
        {"id": 1, "annotations": [{"id": 5, "created_at": "2026-01-01T10:00:00Z", "result": []}]},
        {"id": 2, "annotations": [{"id": 6, "created_at": "2026-01-01T10:00:00Z", "was_cancelled": True}]},
        {"id": 3, "annotations": []},
    ]
    document = project_status(FakeStudio(tasks, []), "units", tmp_path)
    assert (document["tasks"], document["labelled_tasks"], document["versions"]) == (3, 1, [])


def test_status_reads_the_backend_state_of_its_own_project_only(tmp_path: Path) -> None:
    """`label status --backend-dir`: the folder's state.json gives the model answering, the labels
    waiting for the next job, the jobs, the running one, the failures and the tasks left out, and its
    versions' rows; a folder whose backend serves another project adds nothing of it to this
    project's status."""
    from officescore.label.feedback import project_status

    record = {"model_version": "v3", "trained_photos": 8, "accepted": True}
    state = {
        "project": "units",
        "versions": [record],
        "current": {"model_version": "v3"},
        "pending": 2,
        "jobs": 3,
        "running": {"job": 4},
        "failures": [{"job": 1, "error": "out of memory"}],
        "left_out": {"6": "task 6: desk.jpg from Label Studio is not a readable image (OSError)"},
    }
    (tmp_path / STATE_FILE).write_text(json.dumps(state))
    document = project_status(FakeStudio([], []), "units", tmp_path)
    assert (document["model_version"], document["pending_labels"], document["jobs"]) == ("v3", 2, 3)
    assert document["running_job"] == 4 and document["failures"] == state["failures"]
    assert document["left_out"] == state["left_out"]  # `label status` names them after a later model
    assert [(r["model_version"], r["trained_photos"]) for r in document["versions"]] == [("v3", 8)]
    other = project_status(FakeStudio([], []), "other offices", tmp_path)
    assert other["versions"] == [] and "pending_labels" not in other and "model_version" not in other


@pytest.mark.parametrize("text", ['{"project": "units", "pend', "[]", "\xff"])
def test_status_of_a_state_file_damaged_by_hand_is_one_line(tmp_path: Path, text: str) -> None:
    from officescore.label.feedback import project_status

    (tmp_path / STATE_FILE).write_bytes(text.encode("latin-1"))
    with pytest.raises(ConfigError, match=r"state\.json: not a backend state file \(a JSON object\)"):
        project_status(FakeStudio([], []), "units", tmp_path)


def _drawn_axes(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The axes each later `plt.subplots` call makes, to read a drawn figure back."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    drawn: list[Any] = []
    real_subplots = plt.subplots

    def subplots(*args: Any, **kwargs: Any) -> Any:
        drawn.append(real_subplots(*args, **kwargs)[1])
        return drawn[-1].figure, drawn[-1]

    monkeypatch.setattr(plt, "subplots", subplots)
    return drawn


def test_the_learning_curve_plots_each_accepted_versions_numbers_at_its_photos(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """learning_curve.png read back from its axes: one point per accepted version at the photos it
    trained on, for each number it has; a rejected version (never answered) and a version the
    backend did not train (no photo count) are not points."""
    from officescore.label.feedback import learning_curve_png

    drawn = _drawn_axes(monkeypatch)
    rows = [
        {"model_version": "prelabel", "kept_share": 0.9, "from_suggestions": 0.8},
        {"trained_photos": 4, "accepted": True, "segm_map": 0.2, "kept_share": 0.5, "from_suggestions": 0.25},
        {"trained_photos": 8, "accepted": False, "segm_map": 0.1, "kept_share": 0.3, "from_suggestions": 0.2},
        {
            "trained_photos": 12,
            "accepted": True,
            "segm_map": 0.4,
            "kept_share": None,
            "from_suggestions": None,
        },
    ]
    assert learning_curve_png(rows)[:8] == b"\x89PNG\r\n\x1a\n"
    lines = {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in drawn[0].lines}
    assert lines == {
        "val mask mAP": ([4, 12], [0.2, 0.4]),
        "kept share (suggestions kept)": ([4], [0.5]),
        "labels from suggestions": ([4], [0.25]),
    }


def test_the_learning_curve_counts_photos_in_whole_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    """One version on 2 photos: the x axis read 1.900, 1.925 ... 2.100 labelled photos."""
    from officescore.label.feedback import learning_curve_png

    drawn = _drawn_axes(monkeypatch)
    learning_curve_png([{"trained_photos": 2, "accepted": True, "segm_map": 0.0}])
    ticks = list(drawn[0].get_xticks())
    assert ticks and all(float(t).is_integer() for t in ticks), ticks


def _brush(name: str, x0: int, y0: int, x1: int, y1: int) -> dict[str, Any]:
    """A Label Studio brush result on a 40x40 photo (as the backend answers brush projects)."""
    from officescore.label.regions import mask_to_brush

    mask = np.zeros((40, 40), dtype=np.uint8)
    mask[y0:y1, x0:x1] = 1
    value = {"format": "rle", "rle": mask_to_brush(mask), "brushlabels": [name]}
    return {"type": "brushlabels", "original_width": 40, "original_height": 40, "value": value}


def _polygon(name: str, x0: int, y0: int, x1: int, y1: int) -> dict[str, Any]:
    """A polygon result on a 40x40 photo, written by `formats.annotation` as `label push` writes one."""
    from officescore.label.formats import LabelSchema, annotation

    box = [x0, y0, x1, y0, x1, y1, x0, y1]
    schema = LabelSchema(("desk", "chair", "mug", "monitor"))
    return annotation([{"category": name, "segmentation": [box]}], 40, 40, schema)["result"][0]


def test_a_brush_suggestion_corrected_with_polygons_and_brushes_is_counted_by_hand() -> None:
    """A brush project's task as Label Studio returns it: the prediction shown (brush masks), and the
    labeller's annotation made of brush strokes and polygons. Kept: the desk, brushed over exactly
    (IoU 1). Not kept: the chair, outlined again 5 px to the right (IoU 50/150: redrawn); the lamp,
    relabelled a mug (reclassed); a plant where there is none (deleted). Added: the chair's new outline,
    the mug and a monitor. A skipped annotation and a prediction made after the label do not count."""
    from officescore.label.feedback import task_feedback

    shown = [
        _brush("desk", 0, 0, 20, 10),
        _brush("chair", 20, 20, 30, 30),
        _brush("lamp", 0, 20, 10, 30),
        _brush("plant", 32, 32, 38, 38),
    ]
    labels = [
        _brush("desk", 0, 0, 20, 10),
        _polygon("chair", 25, 20, 35, 30),
        _brush("mug", 0, 20, 10, 30),
        _polygon("monitor", 30, 0, 40, 10),
    ]
    task = {
        "id": 7,
        "predictions": [
            {"id": 1, "model_version": "v3", "created_at": "2026-12-04T10:00:00Z", "result": shown},
            {"id": 2, "model_version": "v4", "created_at": "2026-12-04T10:09:00Z", "result": []},
        ],
        "annotations": [
            {"id": 5, "created_at": "2026-12-04T10:05:00Z", "result": labels},
            {"id": 6, "created_at": "2026-12-04T10:08:00Z", "result": [], "was_cancelled": True},
        ],
    }
    found = task_feedback(task)
    assert found is not None and (found.task, found.model_version) == (7, "v3")
    assert (found.predicted, found.labelled, found.kept, found.added) == (4, 4, 1, 3)
    assert found.kept_ious == [1.0]
    assert found.not_kept == {"chair": {"redrawn": 1}, "lamp": {"reclassed": 1}, "plant": {"deleted": 1}}
    # Labelled before anything was shown: nothing to count.
    task["predictions"] = task["predictions"][1:]
    assert task_feedback(task) is None


def test_a_suggestion_overlapping_its_redrawn_label_by_exactly_a_tenth_was_redrawn() -> None:
    """REDRAWN_IOU is inclusive, as KEEP_IOU is: a chair redrawn ten times its size around it (IoU
    100/1000 = 0.1 exactly) was redrawn, not deleted."""
    found = compare_regions([_region("chair", 0, 0, 10, 10)], [_region("chair", 0, 0, 40, 25)])
    assert (found.kept, found.added, found.redrawn, found.deleted) == (0, 1, 1, 0)


def test_feedback_counts_the_labellers_newest_annotation() -> None:
    """A task labelled twice after the suggestion was shown (the labeller came back and fixed it):
    the newest annotation is the final label, whatever order Label Studio lists them in."""
    from officescore.label.feedback import task_feedback

    shown = [_polygon("desk", 0, 0, 20, 10), _polygon("chair", 20, 20, 30, 30)]
    first = {"id": 5, "created_at": "2026-12-04T10:05:00Z", "result": [_polygon("desk", 0, 0, 20, 10)]}
    fixed = {"id": 6, "created_at": "2026-12-04T10:07:00Z", "result": shown}
    for listed in ([first, fixed], [fixed, first]):
        shown_at = {"id": 1, "model_version": "v3", "created_at": "2026-12-04T10:00:00Z", "result": shown}
        found = task_feedback({"id": 7, "predictions": [shown_at], "annotations": listed})
        assert found is not None
        assert (found.predicted, found.labelled, found.kept, found.added) == (2, 2, 2, 0)


def test_a_task_whose_region_cannot_be_sized_is_left_out_of_the_feedback_not_fatal() -> None:
    """A suggestion Label Studio stored without its photo's size cannot be compared: that task is
    not counted (its version still lists it as suggested), and the other tasks' numbers stand."""
    from officescore.label.feedback import by_version

    def task(number: int, shown: list[dict[str, Any]]) -> dict[str, Any]:
        prediction = {
            "id": number,
            "model_version": "v1",
            "created_at": "2026-12-04T10:00:00Z",
            "result": shown,
        }
        label = {
            "id": 10 + number,
            "created_at": "2026-12-04T10:05:00Z",
            "result": [_polygon("desk", 0, 0, 20, 10)],
        }
        return {"id": number, "predictions": [prediction], "annotations": [label]}

    unsized = _polygon("desk", 0, 0, 20, 10)
    del unsized["original_width"]
    found = by_version([task(1, [_polygon("desk", 0, 0, 20, 10)]), task(2, [unsized])])["v1"]
    assert (found.suggested, found.tasks, found.predicted, found.kept, found.added) == (2, 1, 1, 1, 0)


def test_an_empty_export_body_is_asked_for_again_and_never_read_as_no_tasks() -> None:
    """Label Studio exports a project without tasks as "[]"; an empty body is a cut-off download.
    Read as "no tasks" it made --repredict find nothing to predict and `label status` count nothing."""
    from types import SimpleNamespace

    from officescore.label.client import EXPORT_TRIES, LabelStudio

    bodies: list[list[bytes]] = []

    def download_sync(project_id: int, **options: Any) -> list[bytes]:
        return bodies.pop(0)

    client = LabelStudio.__new__(LabelStudio)
    client.url, client.timeout = "http://127.0.0.1:1", 1.0
    client.sdk = SimpleNamespace(
        projects=SimpleNamespace(exports=SimpleNamespace(download_sync=download_sync))
    )
    bodies[:] = [[], [b'[{"id": 3', b', "annotations": []}]']]
    assert client.export_tasks(1) == [{"id": 3, "annotations": []}]  # the second try
    bodies[:] = [[b"[]"]]
    assert client.export_tasks(1) == []  # a project without tasks
    bodies[:] = [[b""]] * EXPORT_TRIES
    with pytest.raises(LabelStudioError, match="sent an empty export of project 1 3 times"):
        client.export_tasks(1)
    assert bodies == []


def test_a_job_on_a_full_disk_says_so_and_where_it_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write's ENOSPC often has no file name ("[Errno 28] No space left on device" alone, walk S):
    the job's result names the job folder and the runs folder, and what to do; other failures keep
    their type and message."""
    import errno

    from officescore.label import trainjob

    folder = tmp_path / "job0003"
    folder.mkdir()
    (folder / trainjob.JOB_FILE).write_text(json.dumps({"runs": "runs/train"}))

    def full(_: Path) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(trainjob, "run_job", full)
    assert trainjob.main([str(folder)]) == 1
    result = json.loads((folder / RESULT_FILE).read_text())
    assert result["error"] == (
        f"the disk is full writing to {folder} or runs/train (No space left on device); free space; "
        "the next label or Start Training tries again"
    )

    def broken(_: Path) -> None:
        raise ValueError("a bad value")

    monkeypatch.setattr(trainjob, "run_job", broken)
    assert trainjob.main([str(folder)]) == 1
    assert json.loads((folder / RESULT_FILE).read_text())["error"] == "ValueError: a bad value"
