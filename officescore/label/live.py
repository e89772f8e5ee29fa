"""`label backend --train` put together: the trainer for a project, and what follows each job
(the learning curve redrawn; with --repredict, every unlabelled task predicted again)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from officescore.errors import ConfigError, UserError
from officescore.label.trainer import Trainer, TrainSettings

REPREDICT_BATCH = 8
REPREDICT_RETRIES = 5  # Label Studio down after a job: tries of --repredict, retry_seconds apart
LOAD_TIMEOUT = 600.0  # seconds a switched model may take to load before --repredict gives up


def start_trainer(
    client: Any,
    key: str | None,
    project: str | None,
    url: str,
    runs: str | Path,
    folder: Path,
    local_root: Path | None,
    device: str,
    log: Callable[[str], None] = lambda message: None,
    **settings: Any,
) -> Trainer:
    """The trainer of project `project`, writing runs into `runs` and its state into `folder`."""
    if not project:
        raise ConfigError("--train needs --connect PROJECT: the project whose labels it trains on")
    if client is None or not key:
        raise ConfigError("--train reads labels from Label Studio: set LABEL_STUDIO_API_KEY")
    runs = Path(runs)
    if runs.is_file() or runs.suffix in (".pt", ".pth", ".ts") or str(runs).lower() == "coco":
        raise ConfigError(
            f"--model {runs}: with --train give a runs folder (e.g. runs/train): the jobs write their runs "
            "there and the newest best.pt in it is the first model"
        )
    found = client.project(project)
    trainer = Trainer(
        TrainSettings(
            url=client.url,
            project=project,
            folder=Path(folder),
            runs=runs,
            local_root=local_root,
            device=device,
            **settings,
        ),
        key,
        found.id,
        log,
    )
    count_labels_made_unheard(trainer, client, found.id)
    return trainer


def count_labels_made_unheard(trainer: Trainer, client: Any, project_id: int) -> None:
    """Labels made before the backend started, or while it was down, never came as webhooks: count
    those newer than what the models saw (`Trainer.count_missed`), so that --train-every applies to
    them too. Label Studio failing here only leaves them uncounted (the next job pulls them anyway).
    Their times are Label Studio's clock, and so is what the jobs' pulls held (`labels_until`)."""
    from officescore.label.pull import label_times

    try:
        tasks = client.export_tasks(project_id)
    except UserError as exc:
        trainer.log(f"labels made while the backend was not running are not counted: {exc}")
        return
    added = trainer.count_missed(label_times(tasks))
    if added:
        pending, every = trainer.state["pending"], trainer.settings.every
        trainer.log(  # worded as each webhook's line: "3 of 4 for the next job" read oddly as "15 of 4"
            f"{added} label(s) made while the backend was not running counted: {pending} label(s) since "
            f"the last model, a job every {every}"
        )


def after_jobs(trainer: Trainer, backend: Any, repredict: bool, retries: int = REPREDICT_RETRIES) -> None:
    """After each job: redraw learning_curve.png; with `repredict`, give every unlabelled task that
    lacks a prediction of the answering model one (after a switch, once the new model has loaded).
    Label Studio down or too slow, or the new model not loaded (its load failed: the backend tries
    it again a minute later): tried again every `retry_seconds`, `retries` times, until the next job
    ends (which starts over)."""
    # A repredict (or its waiting retry) of an earlier job stops once a newer job has ended: the
    # newer job's repredict covers the same tasks with the newer model.
    jobs_ended = [0]
    one_at_a_time = threading.Lock()  # a retry and the next job's repredict never predict a task twice

    def problem(version: str | None) -> str | None:
        """Why the tasks cannot be predicted now (None: they were)."""
        if version:
            backend.current()  # starts the load, or tries a failed one again once it is due
            backend.wait_for_load(LOAD_TIMEOUT)  # else the old model would predict them again
            if backend.model_version != version:
                return f"{version} is not loaded"
        try:
            with one_at_a_time:
                count = repredict_unlabelled(backend)
        except UserError as exc:
            return str(exc)
        if count:
            backend.log(
                f"{backend.model_version}: predicted {count} unlabelled task(s) that lacked its prediction"
            )
        return None

    def attempt(left: int, version: str | None, job: int) -> None:
        if job != jobs_ended[0]:  # a retry that waited while a newer job ended
            return
        why = problem(version)
        if why is None or job != jobs_ended[0]:  # done, or a newer model replaced `version` meanwhile
            return
        if left <= 0 or trainer.closed:
            backend.log(f"after the job: {why}; unlabelled tasks keep their predictions")
            return
        wait = trainer.settings.retry_seconds
        backend.log(f"after the job: {why}; predicting unlabelled tasks again in {wait:g}s")
        timer = threading.Timer(wait, lambda: None if trainer.closed else attempt(left - 1, version, job))
        timer.daemon = True
        timer.start()

    def done(version: str | None) -> None:
        from officescore.label.feedback import live_metrics

        jobs_ended[0] += 1
        backend.current()  # a new model starts loading now (beside the old one), not on the next request
        try:
            live_metrics(trainer, backend.client)
        except UserError as exc:  # the curve waits for the next job; the tasks need not
            backend.log(f"after the job: {exc}")
        if repredict:
            attempt(retries, version, jobs_ended[0])

    trainer.on_job_end = done


def repredict_unlabelled(backend: Any) -> int:
    """Predictions of the current model for every task nobody labelled that lacks one of its version;
    how many it added (a task whose photo cannot be read is left out, and logged)."""
    from officescore.label.feedback import tasks_with_predictions
    from officescore.label.pull import latest_annotation

    if backend.current() is None:  # no model yet (the first job failed): nothing to predict with
        return 0
    client = backend.client
    project = client.project(backend.trainer.settings.project)
    version = backend.model_version
    todo = [
        t
        for t in tasks_with_predictions(client, project.id)
        if latest_annotation(t) is None
        and not any(p.get("model_version") == version for p in t.get("predictions") or [])
    ]
    config = project.schema.config_xml()
    predicted = 0
    for start in range(0, len(todo), REPREDICT_BATCH):
        chunk = todo[start : start + REPREDICT_BATCH]
        try:
            made_for = list(zip(chunk, backend.predict(chunk, config), strict=True))
        except UserError:  # one photo gone (a deleted local file): the others still get theirs
            made_for = _predict_each(backend, chunk, config)
        for task, made in made_for:
            client.call(
                "add a prediction",
                lambda t=task, m=made: client.sdk.predictions.create(
                    task=int(t["id"]), result=m["result"], score=m["score"], model_version=m["model_version"]
                ),
            )
        predicted += len(made_for)
    return predicted


def _predict_each(backend: Any, tasks: list[dict[str, Any]], config: str) -> list[tuple[dict[str, Any], Any]]:
    """(task, prediction) for each task that can be predicted alone; a task that cannot keeps its
    predictions (logged). None of several: the first task's error, as the cause is likely no task's
    own (Label Studio down), and the caller's retry is then worth making; a task alone that fails
    (the one deleted photo left after the others got theirs) is its own fault, not retried 5 times."""
    made_for, errors = [], []
    for task in tasks:
        try:
            made_for += list(zip([task], backend.predict([task], config), strict=True))
        except UserError as exc:
            errors.append(exc)
            named = f"task {task.get('id')}: "
            why = str(exc) if str(exc).startswith(named) else named + str(exc)  # photo() names it
            backend.log(f"{why}; it keeps its predictions")
    if errors and not made_for and len(tasks) > 1:
        raise errors[0]
    return made_for
