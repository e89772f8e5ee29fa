"""The trainer of `label backend --train`: counts labels, runs one training job at a time, switches models.

Label Studio's webhooks (ANNOTATION_CREATED / _UPDATED / _DELETED, START_TRAINING) only count and
enqueue (`notify`): a job starts when `every` labels arrived since the last model, or at once on
START_TRAINING. A job is a child process (`officescore.label.trainjob`) at a lower CPU priority;
labels that arrive while it runs are counted and start the next job when it ends, never a second
one beside it (`_lock` guards `running`; a file lock keeps a second backend off the same folder).

The switch: a finished job's model answers only if its val mask mAP is not below the current
model's on the same val photos (the job evaluates both); a failed, killed or worse job leaves the
current model answering, and the log says why. Everything the trainer knows lives in
`FOLDER/state.json` (written atomically after every change): the label counter, the current model,
every version with its numbers, the held-out and trained tasks, and the running job, so a restarted
backend finds its model and counters again, adopts a job that finished while it was down, and never
trains the same labels twice; labels made while it was down are counted at start (`count_missed`).
The API key reaches the child in its environment only.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from officescore.config import MIN_IMG_SIZE
from officescore.errors import ConfigError, DataError
from officescore.files import atomic_write_json, hold_lock, make_folder
from officescore.label.trainjob import JOB_FILE, LOG_FILE, PULLED_FILE, RESULT_FILE, run_name
from officescore.runs import mark_not_used, trained_data_set

STATE_FILE = "state.json"
PROC = Path("/proc")  # where Linux shows processes (`_alive`)
PHOTO_CACHE = "photos"  # the photos the jobs pulled, one copy each (label.pull `cache`)
CURVE_FILE = "learning_curve.png"
LABEL_EVENTS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATION_DELETED", "ANNOTATIONS_DELETED")
TRAIN_EVENTS = ("START_TRAINING",)
LABEL_WORDS = {  # the log's words for each label event
    "ANNOTATION_CREATED": "labelled",
    "ANNOTATION_UPDATED": "label changed",
    "ANNOTATION_DELETED": "label deleted",
    "ANNOTATIONS_DELETED": "labels deleted",
}
DEFAULT_EVERY = 10
# The default job: MobileNetV3-FPN Mask R-CNN (COCO detector weights, only the mask head starts
# fresh) at 512 px, 10 epochs or 10 minutes of training, whichever ends first. bench/label_job.py
# (docs/BENCHMARKS.md): 0.84 photos/s on 2 cores with bf16 (float32 1.26x slower, 800 px 1.2x,
# ResNet50-FPN v2 1.95x and 3.55x at 800 px), so 10 labelled photos take ~2 min, and from ~50 the
# time budget decides. 3 epochs were 12 optimiser steps for the first 10 labels: too few for the
# fresh class layers to learn anything.
DEFAULT_ARCH = "maskrcnn_mobilenet_v3_fpn"
DEFAULT_IMG_SIZE = 512
DEFAULT_EPOCHS = 10
DEFAULT_MINUTES = 10.0
NICE = 10


@dataclass
class TrainSettings:
    """What `label backend --train` was started with (the job's settings come from here)."""

    url: str
    project: str
    folder: Path  # the backend's folder: state.json, learning_curve.png, jobs/
    runs: Path  # where each job's run folder goes (runs/train)
    every: int = DEFAULT_EVERY
    epochs: int = DEFAULT_EPOCHS
    minutes: float | None = DEFAULT_MINUTES
    weights: str = "coco"  # the first model's start (later ones: the current model)
    arch: str = DEFAULT_ARCH
    img_size: int | None = DEFAULT_IMG_SIZE
    batch_size: int = 2
    lr: float | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    amp: bool = True  # bf16 autocast where the CPU has it natively, float32 elsewhere
    val_fraction: float = 0.2
    local_root: Path | None = None
    nice: int = NICE
    threads: int | None = None  # torch threads in the job (None: torch's default)
    retry_seconds: float = 60.0  # Label Studio unreachable: try again after this
    seed: int = 0

    def check(self) -> None:
        if self.every < 1:
            raise ConfigError(f"--train-every {self.every}: must be at least 1")
        if self.epochs < 1:
            raise ConfigError(f"--train-epochs {self.epochs}: must be at least 1")
        if self.minutes is not None and not self.minutes > 0:
            raise ConfigError(f"--train-minutes {self.minutes:g}: must be positive")
        if self.img_size is not None and self.img_size < MIN_IMG_SIZE:  # else every job fails
            raise ConfigError(f"--train-img-size {self.img_size}: must be at least {MIN_IMG_SIZE} pixels")


def _empty_state(project: str) -> dict[str, Any]:
    return {
        "format": "officescore-label-backend",
        "version": 1,
        "project": project,
        "pending": 0,  # labels created / changed / deleted since the labels the last job trained on
        "events": [],  # when each of those arrived: a job covers the ones before its pull began
        "forced": False,  # START_TRAINING arrived: train at once
        "jobs": 0,
        "current": None,  # {"model_version", "checkpoint", "suggest"}: the model that answers
        "versions": [],  # one record per finished job (and the model found at start)
        "failures": [],
        "left_out": {},  # labelled tasks whose photo was not readable (task id -> why): jobs skip them
        "val_tasks": [],  # the fixed, growing held-out set (Label Studio task ids)
        "train_tasks": [],
        "running": None,  # {"job", "folder", "pid", "pending_at_start", "started"}
    }


class Trainer:
    """Counts Label Studio's label events and runs training jobs one at a time (see the module doc)."""

    def __init__(
        self,
        settings: TrainSettings,
        api_key: str,
        project_id: int | None = None,
        log: Callable[[str], None] = lambda message: None,
        on_job_end: Callable[[str | None], None] = lambda version: None,
    ) -> None:
        settings.check()
        self.settings = settings
        self.folder = _writable(Path(settings.folder), "backend folder")
        _writable(Path(settings.runs), "--model")  # the jobs' run folders go there
        self.project_id = project_id
        self.log = log
        # called (outside the lock) after each job: the new model_version if it took over, else None
        self.on_job_end = on_job_end
        self._api_key = api_key  # for the child's environment only; never written or logged
        self._lock = threading.RLock()
        self._process: subprocess.Popen[bytes] | None = None
        self._retry: threading.Timer | None = None
        self._closed = False
        self._held = False  # after a failed job: wait for the next webhook (or the retry), no loop
        self._folder_lock = self._lock_folder()
        try:
            self.state = self._load()
            self._recover()
        except BaseException:
            self._folder_lock.close()  # a refused folder is free for the next try in this process
            raise
        self._held = False  # a restart is a fresh try: labels left counted may start a job (poke)

    # ------------------------------------------------------------------ state

    def _lock_folder(self) -> Any:
        try:
            return hold_lock(self.folder / ".lock")
        except BlockingIOError:
            raise ConfigError(
                f"{self.folder}: another `label backend --train` uses this folder; stop it first (a second "
                "one with another --backend-dir would train the same project's labels again beside it)"
            ) from None

    def _load(self) -> dict[str, Any]:
        path = self.folder / STATE_FILE
        if not path.is_file():
            return _empty_state(self.settings.project)
        state = read_state(path)
        if state.get("project") != self.settings.project:
            raise ConfigError(
                f"{self.folder}: holds the backend of project {state.get('project')!r}, not "
                f"{self.settings.project!r}; give another --backend-dir"
            )
        return {**_empty_state(self.settings.project), **state}

    def _save(self) -> None:
        atomic_write_json(self.folder / STATE_FILE, self.state)

    def _rel(self, path: Path | str) -> str:
        return os.path.relpath(Path(path).resolve(), self.folder.resolve())

    def _abs(self, rel: str) -> Path:
        return (self.folder / rel).resolve()

    def _recover(self) -> None:
        """After a restart: adopt a job that finished while the backend was down, wait for one still
        running, or record one that died (its labels stay counted); else take the newest model found."""
        running = self.state.get("running")
        if running:
            folder = self._abs(running["folder"])
            if (folder / RESULT_FILE).is_file():
                self._finish(running, None)
            elif _alive(int(running.get("pid") or 0), folder):
                self.log(f"job {running['job']} is still running (pid {running['pid']}); waiting for it")
                threading.Thread(target=self._wait_for_orphan, args=(running,), daemon=True).start()
            else:
                self._finish(running, None)
        if self.state["current"] is None and not self.state["versions"]:
            from officescore.runs import newest_best_checkpoint

            found = newest_best_checkpoint(Path(self.settings.runs))
            if found is not None:
                from officescore.label.predict import model_version, own_threshold

                version = model_version(found)
                self.state["current"] = {"model_version": version, "checkpoint": self._rel(found)}
                record = {
                    "model_version": version,
                    "checkpoint": self._rel(found),
                    "accepted": True,
                    "found": True,
                }
                own = own_threshold(found, version)  # a job of another backend folder made it
                if own is not None:
                    self.state["current"]["suggest"] = record["suggest"] = {"conf": own, "by_mask": True}
                self.state["versions"].append(record)
        self._save()

    # ------------------------------------------------------------------ what the backend asks

    def current_checkpoint(self) -> Path | None:
        with self._lock:
            current = self.state["current"]
            return self._abs(current["checkpoint"]) if current else None

    def current_conf(self) -> float | None:
        """The current model's own threshold on the suggestion score (best mask F1 on its job's val
        photos, no less precise there than the model it replaced); None for a model found in the runs
        folder, trained without enough val objects, or whose threshold is on the class score (jobs
        before suggestions were scored by their masks: `suggest` without "by_mask")."""
        with self._lock:
            suggest = (self.state["current"] or {}).get("suggest")
            return float(suggest["conf"]) if suggest and suggest.get("by_mask") else None

    @property
    def running(self) -> bool:
        with self._lock:
            return self.state["running"] is not None

    @property
    def closed(self) -> bool:
        """True once `close` was called: the backend is stopping, nothing new should start."""
        with self._lock:
            return self._closed

    def notify(self, event: str, data: dict[str, Any]) -> dict[str, Any]:
        """A webhook: count label events of this project, force a job on START_TRAINING, maybe start."""
        project_id = _project_id(data.get("project"))
        with self._lock:
            if self.project_id is not None and project_id not in (None, self.project_id):
                return {"status": "ignored", "reason": f"project {project_id} is not this backend's"}
            if event in LABEL_EVENTS and _skipped(data):
                return {"status": "ignored", "reason": "a skipped task is not labelled"}
            if event in LABEL_EVENTS:
                self.state["events"].append(time.time())
                self.state["pending"] = len(self.state["events"])
                self._take_back(_task_id(data))
            elif event in TRAIN_EVENTS:
                self.state["forced"] = True
            else:
                return {"status": "ignored", "reason": f"{event} is not a label or training event"}
            self._held = False  # a new trigger after a failed job: try again
            self._save()
            started = self._maybe_start()
            if not started:  # else "training job N started" says it; the access log names no label
                self.log(self._counted(event, data))
            return {
                "status": "training" if started else ("queued" if self.state["running"] else "counted"),
                "pending": self.state["pending"],
                "train_every": self.settings.every,
                "job": (self.state["running"] or {}).get("job"),
            }

    def _take_back(self, task: int | None) -> None:
        """A task left out for its unreadable photo was labelled again (its photo fixed, perhaps):
        the next job tries it again, and leaves it out again if it still fails (lock held)."""
        if task is not None and self.state["left_out"].pop(str(task), None) is not None:
            self.log(f"task {task} labelled again: the next job tries its photo again")

    def _counted(self, event: str, data: dict[str, Any]) -> str:
        """A webhook that started no job, in words: what came and where the next job stands (lock held)."""
        task_id = _task_id(data)
        words = "Start Training" if event in TRAIN_EVENTS else LABEL_WORDS[event]
        what = f"task {task_id} {words}" if task_id is not None and event in LABEL_EVENTS else words
        running = self.state["running"]
        where = (  # `pending` holds a running job's own labels until it ends: "since the last model"
            f"{self.state['pending']} label(s) since the last model, a job every {self.settings.every}"
            if event in LABEL_EVENTS
            else "a job asked for"
        )
        if running is not None:
            return f"{what}: {where}; job {running['job']} is training, the next starts after it"
        return f"{what}: {where}" + (
            "; waiting for Label Studio" if self._retry and self._retry.is_alive() else ""
        )

    def count_missed(self, labelled_at: Sequence[float]) -> int:
        """Labels made while no backend listened (before its first start, or while it was down):
        `labelled_at` holds when each labelled task was last labelled (Label Studio's `updated_at`,
        its clock). Those after the labels the trainer's models saw count as pending where the
        webhooks counted fewer; returns how many were added."""
        with self._lock:
            since = self._labels_seen_until()
            missed = sum(t > since for t in labelled_at)
            added = missed - len(self.state["events"])
            if added <= 0:
                return 0
            # Counted now, on the backend's clock as the webhooks are: the next job's pull covers them
            # (its `pulled_at` is later), and one that pulled already (running) did not hold them.
            now = time.time()
            self.state["events"] = sorted(self.state["events"] + [now] * added)
            self.state["pending"] = len(self.state["events"])
            self._save()
            return added

    def _labels_seen_until(self) -> float:
        """When the newest label the models saw was made, by Label Studio's clock (labels are compared
        with it, never with the backend's clock, which may be minutes off the server's): the newest
        label of the last job's pull (a running job's once it pulled; before that it will pull every
        label made so far). A version recorded before jobs said so (only `pulled_at`) is read as
        before: when its pull began; the model found at start: when it was written; 0: no model."""
        running = self.state["running"]
        if running:
            pulled = _read_result(self._abs(running["folder"]) / PULLED_FILE)
            if pulled is None:
                return math.inf
            return float(pulled.get("labels_until") or 0.0)
        jobs = [v for v in self.state["versions"] if "job" in v]  # not the model found at start
        if jobs:
            last = max(jobs, key=lambda v: int(v["job"]))
            if last.get("labels_until") is not None:
                return float(last["labels_until"])
            return float(last.get("pulled_at") or last.get("started") or 0)
        checkpoint = self.current_checkpoint()
        return checkpoint.stat().st_mtime if checkpoint is not None and checkpoint.is_file() else 0.0

    def poke(self) -> None:
        """Start a job if one is due (after a retry wait, or at start when labels were left counted)."""
        with self._lock:
            self._maybe_start()

    def _retry_now(self) -> None:
        with self._lock:
            self._retry = None
            self._held = False
            self._maybe_start()

    def wait_idle(self, timeout: float) -> bool:
        """For tests and shutdown: True once no job runs."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                return True
            time.sleep(0.1)
        return not self.running

    def close(self, stop_job: bool = True) -> None:
        """Stop the retry timer, and the running job (its labels stay counted for the next start)."""
        with self._lock:
            self._closed = True
            if self._retry is not None:
                self._retry.cancel()
            process = self._process
            job = (self.state["running"] or {}).get("job")
        if stop_job and process is not None and process.poll() is None:
            # else the log ends on "training job N started" and an admin cannot tell what became of it
            self.log(
                f"stopping training job {job}: its labels (or Start Training) stay counted for the next start"
            )
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        self._folder_lock.close()

    # ------------------------------------------------------------------ jobs

    def _due(self) -> bool:
        return bool(self.state["forced"]) or self.state["pending"] >= self.settings.every

    def _maybe_start(self) -> bool:
        """Start a job if one is due and none runs (call with the lock held)."""
        if self._closed or self._held or self.state["running"] is not None or not self._due():
            return False
        if self._retry is not None and self._retry.is_alive():
            return False  # waiting for Label Studio to come back
        number = int(self.state["jobs"]) + 1
        folder = make_folder(self.folder / "jobs" / f"job-{number:04d}", "job folder")
        for name in (RESULT_FILE, LOG_FILE, PULLED_FILE):
            (folder / name).unlink(missing_ok=True)
        current = self.current_checkpoint()
        settings = self.settings
        job = {
            "job": number,
            "url": settings.url,
            "project": settings.project,
            "local_root": str(Path(settings.local_root).resolve()) if settings.local_root else None,
            "photo_cache": str((self.folder / PHOTO_CACHE).resolve()),  # each photo downloaded once
            "runs": str(Path(settings.runs).resolve()),
            "current": str(current) if current else None,
            "current_conf": self.current_conf(),  # None: the backend's default
            "weights": settings.weights,
            "arch": settings.arch,
            "img_size": settings.img_size,
            "epochs": settings.epochs,
            "minutes": settings.minutes,
            "batch_size": settings.batch_size,
            "lr": settings.lr,
            "model_kwargs": settings.model_kwargs,
            "device": settings.device,
            "amp": settings.amp,
            "val_fraction": settings.val_fraction,
            "val_tasks": self.state["val_tasks"],
            "train_tasks": self.state["train_tasks"],
            "left_out": sorted(int(task) for task in self.state["left_out"]),
            "nice": settings.nice,
            "threads": settings.threads,
            "seed": settings.seed,
        }
        atomic_write_json(folder / JOB_FILE, job)
        env = {**os.environ, "LABEL_STUDIO_API_KEY": self._api_key}
        with (folder / LOG_FILE).open("wb") as log:
            process = subprocess.Popen(
                # resolved, as `_alive` looks for it after a restart (a relative --backend-dir never matched)
                [sys.executable, "-m", "officescore.label.trainjob", str(folder.resolve())],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=Path.cwd(),
            )
        self._process = process
        running = {
            "job": number,
            "folder": self._rel(folder),
            "pid": process.pid,
            "pending_at_start": self.state["pending"],
            "forced": self.state["forced"],
            "started": time.time(),
        }
        self.state.update(jobs=number, forced=False, running=running)
        self._save()
        why = "START_TRAINING" if running["forced"] else f"{running['pending_at_start']} new label(s)"
        self.log(f"training job {number} started ({why}; pid {process.pid})")
        threading.Thread(target=self._wait, args=(process, running), daemon=True).start()
        return True

    def _wait(self, process: subprocess.Popen[bytes], running: dict[str, Any]) -> None:
        code = process.wait()
        switched = None
        with self._lock:
            if self._closed:
                return  # the next start adopts or records it
            self._process = None
            switched = self._finish(running, code)
            self._maybe_start()  # labels that came during the job
        self.on_job_end(switched)

    def _wait_for_orphan(self, running: dict[str, Any]) -> None:
        folder = self._abs(running["folder"])
        while _alive(int(running["pid"]), folder):
            time.sleep(1.0)
        with self._lock:
            if self._closed:
                return  # the folder may belong to the next backend now: it adopts the job
            switched = self._finish(running, None)
            self._maybe_start()
        self.on_job_end(switched)

    def _finish(self, running: dict[str, Any], code: int | None) -> str | None:
        """Record a job that ended; returns the new model_version when it took over (lock held)."""
        folder = self._abs(running["folder"])
        self.state["running"] = None
        result = _read_result(folder / RESULT_FILE)
        if result is None or not result.get("ok"):
            why = _failure(result, code, folder)
            self.state["failures"].append({"job": running["job"], "error": why, "finished": time.time()})
            for run_dir in self._job_runs(running):  # a killed job may have left a best.pt
                mark_not_used(run_dir, f"training job {running['job']} failed: {why}")
            self._held = True
            unreadable = (result or {}).get("unreadable") or {}
            if unreadable:  # left out from now on, the next job can succeed: labels due start it
                self.state["left_out"].update(unreadable)
                self.state["forced"] = self.state["forced"] or bool(running.get("forced"))
                self._held = False
            if result is None and code is None:  # the backend stopped it: a Start Training still asked for
                self.state["forced"] = self.state["forced"] or bool(running.get("forced"))
            self._save()
            answering = f"{self._current_name()} keeps answering" if self.state["current"] else "no model yet"
            self.log(f"training job {running['job']} failed, {answering}: {why}")
            if unreadable:
                tasks = ", ".join(sorted(unreadable, key=int))
                self.log(f"task(s) {tasks} left out of the next jobs until labelled again")
            if result is not None and result.get("retry") and not self._closed:
                self.state["forced"] = self.state["forced"] or bool(running.get("forced"))  # still asked for
                self._save()
                self._retry = threading.Timer(self.settings.retry_seconds, self._retry_now)
                self._retry.daemon = True
                self._retry.start()
                self.log(f"trying again in {self.settings.retry_seconds:g}s")
            return None
        # The job trained on every label that arrived before its pull began: those are done, whatever
        # the switch; labels that came later are still counted.
        pulled_at = float(result.get("pulled_at") or running["started"])
        self.state["events"] = [t for t in self.state["events"] if t > pulled_at]
        self.state["pending"] = len(self.state["events"])
        self.state["val_tasks"] = sorted(set(self.state["val_tasks"]) | set(result["val_tasks"]))
        self.state["train_tasks"] = sorted(set(self.state["train_tasks"]) | set(result["train_tasks"]))
        current = self.state["current"]
        accepted = current is None or not_worse(result.get("segm_map"), result.get("current_segm_map"))
        record = {
            "model_version": result["model_version"],
            "job": running["job"],
            "run": self._rel(result["run_dir"]),
            "checkpoint": self._rel(result["checkpoint"]),
            "trained_photos": result["trained_photos"],
            "val_photos": result["val_photos"],
            "segm_map": result.get("segm_map"),
            "bbox_map": result.get("bbox_map"),
            "suggest": result.get("suggest"),
            "previous_version": current["model_version"] if current else None,
            "previous_segm_map": result.get("current_segm_map"),
            "train_seconds": result.get("train_seconds"),
            "job_seconds": result.get("job_seconds"),
            "epochs": result.get("epochs"),
            "skipped_unknown_classes": result.get("skipped_unknown_classes") or {},
            "accepted": accepted,
            "started": running.get("started"),
            "pulled_at": pulled_at,  # the backend's clock: the webhooks it counted before are done
            "labels_until": result.get("labels_until"),  # Label Studio's clock: the newest label pulled
            "finished": time.time(),
        }
        self.state["versions"].append(record)
        unknown = record["skipped_unknown_classes"]
        if unknown:
            listed = ", ".join(f"{name} x{n}" for name, n in unknown.items())
            self.log(
                f"job {running['job']}: labels of classes the project does not have were skipped: {listed}"
            )
        compared = (
            f"val mask mAP {_fmt(record['segm_map'])} vs {_fmt(record['previous_segm_map'])} "
            f"on the same {record['val_photos']} photo(s)"
            if current is not None
            else f"val mask mAP {_fmt(record['segm_map'])} on {record['val_photos']} photo(s)"
        )
        if accepted:
            self.state["current"] = {
                "model_version": record["model_version"],
                "checkpoint": record["checkpoint"],
                "suggest": record["suggest"],
            }
            self._save()
            if current is None:
                self.log(f"job {running['job']}: first model {record['model_version']} ({compared})")
            else:
                self.log(
                    f"job {running['job']}: model {current['model_version']} -> {record['model_version']} "
                    f"({compared})"
                )
            return str(record["model_version"])
        self._save()
        mark_not_used(Path(result["run_dir"]), f"{record['model_version']} is worse: {compared}")
        self.log(
            f"job {running['job']}: {record['model_version']} is worse, "
            f"{self._current_name()} keeps answering ({compared})"
        )
        return None

    def _job_runs(self, running: dict[str, Any]) -> list[Path]:
        """Run folders job `running` created (its name, plus digits after a clash, made after it started),
        less those whose args.json says they trained on another data set: the job of the same number
        of another backend folder writing into the same runs folder."""
        name = run_name(int(running["job"]))
        started = float(running.get("started") or 0) - 1
        dataset = self._abs(running["folder"]) / "dataset"
        found = []
        for run in Path(self.settings.runs).glob(f"{name}*"):
            suffix = run.name[len(name) :]
            if run.is_dir() and (suffix == "" or suffix.isdigit()) and run.stat().st_mtime >= started:
                data = trained_data_set(run / "weights" / "best.pt")  # None: no args.json written yet
                if data is None or data.resolve() == dataset:
                    found.append(run)
        return found

    def _current_name(self) -> str:
        current = self.state["current"]
        return str(current["model_version"]) if current else "no model"

    # ------------------------------------------------------------------ feedback

    def versions(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(v) for v in self.state["versions"]]

    def describe(self) -> str:
        """One line for the backend's banner: when jobs start, their budget, and where they go."""
        settings = self.settings
        budget = f"{settings.epochs} epoch(s)" + (
            f" or {settings.minutes:g} min, whichever ends first" if settings.minutes is not None else ""
        )
        with self._lock:
            waiting = self.state["pending"]
        return (
            f"training: a job every {settings.every} new label(s) ({waiting} waiting), {budget}; "
            f"runs in {settings.runs}, its state in {settings.folder}"
        )

    def summary(self) -> dict[str, Any]:
        with self._lock:
            running = self.state["running"]
            return {
                "project": self.settings.project,
                "model_version": self._current_name() if self.state["current"] else None,
                "pending_labels": self.state["pending"],
                "train_every": self.settings.every,
                "running_job": running["job"] if running else None,
                "jobs": self.state["jobs"],
                "failures": list(self.state["failures"]),
                "left_out": dict(self.state["left_out"]),
                "val_photos": len(self.state["val_tasks"]),
                "settings": {
                    k: str(v) if isinstance(v, Path) else v for k, v in asdict(self.settings).items()
                },
            }


def _writable(folder: Path, what: str) -> Path:
    """`folder`, made if missing, once a file could be written there: a read-only one is a line at
    start, not a PermissionError in every job after its pull (nor a traceback at the lock file)."""
    folder = make_folder(folder, what)
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise ConfigError(f"{what} {folder}: cannot write in this folder ({exc.strerror})") from None
    return folder


def not_worse(new: float | None, current: float | None) -> bool:
    """The switch rule: the new model's val mask mAP is not below the current one's (same photos)."""
    if current is None:
        return True
    if new is None:
        return False
    return new >= current


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def read_state(path: Path) -> dict[str, Any]:
    """A backend folder's state.json; written whole by `_save`, so one that is not a JSON object was
    cut or edited by hand: a ConfigError naming it."""
    state = _read_result(path)
    if state is None:
        raise ConfigError(
            f"{path}: not a backend state file (a JSON object); restore it, or give another --backend-dir"
        )
    return state


def _read_result(path: Path) -> dict[str, Any] | None:
    """A JSON object written by a job (or the trainer); None when it is missing, cut or not an object."""
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return result if isinstance(result, dict) else None


def _failure(result: dict[str, Any] | None, code: int | None, folder: Path) -> str:
    if result is not None:
        return str(result.get("error") or "the job reported a failure")
    if code is None:
        return "the backend stopped while the job ran; its labels stay counted"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"the job was killed ({name}); its labels stay counted"
    tail = ""
    try:
        lines = (folder / LOG_FILE).read_text(errors="replace").strip().splitlines()
        tail = f": {lines[-1][:300]}" if lines else ""
    except OSError:
        pass
    return f"the job exited with {code} without a result{tail}"


def _alive(pid: int, folder: Path) -> bool:
    """Whether `pid` is still this job's process (a reused pid running something else is not)."""
    if pid <= 0:
        return False
    cmdline = _command_line(pid)
    return cmdline is not None and "officescore.label.trainjob" in cmdline and str(folder) in cmdline


def _command_line(pid: int) -> str | None:
    """The command line of process `pid`, None if there is none: /proc on Linux, else POSIX `ps`."""
    if (PROC / "self" / "cmdline").is_file():
        try:
            return (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            return None
    try:  # macOS and the BSDs have no /proc
        command = ["ps", "-ww", "-p", str(pid), "-o", "command="]  # -ww: never cut to $COLUMNS
        done = subprocess.run(command, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    found = done.stdout.strip()
    return found if done.returncode == 0 and found else None


def _task_id(data: dict[str, Any]) -> int | None:
    """The task a label webhook is about, if it names one (Label Studio sends the task as an object)."""
    task = data.get("task")
    task_id = task.get("id") if isinstance(task, dict) else None
    try:
        return int(task_id) if task_id is not None else None
    except (TypeError, ValueError):
        return None


def _skipped(data: dict[str, Any]) -> bool:
    """A webhook about a skip (Label Studio's Skip button: an annotation with was_cancelled): no
    label to train on, so it starts no job (`label status` does not count it labelled either)."""
    annotation = data.get("annotation")
    return isinstance(annotation, dict) and annotation.get("was_cancelled") is True


def _project_id(project: Any) -> int | None:
    """The project of a webhook: {"id": ..} (webhooks), or "<id>.<timestamp>" (Label Studio's /train)."""
    if isinstance(project, dict):
        project = project.get("id")
    if project in (None, ""):
        return None
    try:
        return int(str(project).split(".")[0])
    except ValueError:  # not "no project" (counted as ours): a label of some project, or none (400)
        raise DataError(f"the webhook's project {project!r} is not a Label Studio project id") from None
