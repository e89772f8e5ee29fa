"""Experiment trackers for a training run: TensorBoard event files and MLflow runs.

The loop calls one `Trackers` list at four fixed points and knows no tracker by name:
  start(args)          once, with the resolved settings (args.json) as hyper-parameters
  step(step, values)   after every optimiser step: losses, lr and images/s of that step
  epoch(row)           after every epoch: its metrics.csv row (losses, lr, images/s, val mAPs)
  end(artefacts, status)
                       once: "finished" with best.pt, plots, metrics.csv and args.json as
                       artefacts; "interrupted" (Ctrl-C, SIGTERM) or "failed" with none
Only rank 0 builds trackers (under DDP the others get an empty list). A tracker that raises is
switched off with a warning: a dead MLflow server must not stop a day of training.

`--log` picks them (`LOG_CHOICES`): `auto` uses TensorBoard when `tensorboard` is installed and MLflow
when `mlflow` is installed and MLFLOW_TRACKING_URI is set; `tensorboard` / `mlflow` require theirs
(`--log mlflow` without MLFLOW_TRACKING_URI: a local store in runs/mlflow, beside the run folders);
`none` logs nothing. metrics.csv and the PNGs are written either way.

Names: `train/<loss part>`, `train/lr`, `train/img_per_s` at the optimiser step (1-based, counted
over the whole run); `epoch/<loss part>`, `epoch/lr`, `epoch/img_per_s`, `epoch/seconds` and
`val/<metric>` at the epoch (1-based, the CSV's `epoch` column).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from officescore.errors import ConfigError
from officescore.files import hold_lock
from officescore.train.config import CSV_COLUMNS, LOG_CHOICES, METRIC_KEYS

INSTALL_HINT = "pip install 'officescore[track]'"
MLFLOW_EXPERIMENT = "officescore"  # unless MLFLOW_EXPERIMENT_NAME says otherwise
MLFLOW_RUN_FILE = "mlflow_run.json"  # in the run folder: --resume continues the same MLflow run
_BATCH = 500  # MLflow metrics sent per request (its limit is 1000)
_FLUSH_SECONDS = 15.0  # ... or sooner: slow CPU steps still reach the MLflow UI within seconds
_PROBE_SECONDS = 5.0  # a tracking server that does not answer this fast is not used (see _unreachable)


class Tracker(Protocol):
    """One experiment tracker; `Trackers` calls these at the loop's fixed points."""

    name: str

    def start(self, args: dict[str, Any]) -> None: ...

    def step(self, step: int, values: dict[str, float]) -> None: ...

    def epoch(self, row: dict[str, Any]) -> None: ...

    def end(self, artefacts: Sequence[Path], status: str) -> None: ...

    def describe(self) -> str: ...  # one line for the run's notes: where to look


_MLFLOW_STATUS = {"finished": "FINISHED", "interrupted": "KILLED", "failed": "FAILED"}


class Trackers:
    """The list the loop calls; each call goes to every tracker still on."""

    def __init__(
        self,
        trackers: Iterable[Tracker] = (),
        notes: list[str] | None = None,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.trackers = list(trackers)
        self.notes = notes if notes is not None else []  # the run's notes: what is logged where
        self._warn = warn

    def __bool__(self) -> bool:
        return bool(self.trackers)

    def start(self, args: dict[str, Any]) -> None:
        self._each("start", args)

    def step(self, step: int, values: dict[str, float]) -> None:
        self._each("step", step, values)

    def epoch(self, row: dict[str, Any]) -> None:
        self._each("epoch", row)

    def end(self, artefacts: Sequence[Path], status: str) -> None:
        self._each("end", [Path(p) for p in artefacts if Path(p).is_file()], status)

    def _each(self, method: str, *args: Any) -> None:
        for tracker in list(self.trackers):
            try:
                getattr(tracker, method)(*args)
            except Exception as exc:  # a tracker's failure must not stop training
                self.trackers.remove(tracker)
                note = f"{tracker.name}: stopped logging after an error in {method}(): {exc}"
                self.notes.append(note)
                if self._warn:
                    self._warn(note)
                if method != "end":
                    with contextlib.suppress(Exception):  # close what can be closed
                        tracker.end([], "failed")


def check_available(log: str) -> None:
    """`--log tensorboard|mlflow` with its package missing, or `--log mlflow` with a tracking server
    that does not answer: one clear error before any training."""
    if log not in LOG_CHOICES:
        raise ConfigError(f"--log {log!r}: choose one of {', '.join(LOG_CHOICES)}")
    if log in ("tensorboard", "mlflow"):
        problem = _missing(log)
        if problem:
            raise ConfigError(
                f"--log {log}: {problem}; install it ({INSTALL_HINT} or pip install {log}) "
                "or choose --log auto or --log none"
            )
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if log == "mlflow" and uri:
        problem = _unreachable(uri)
        if problem:
            raise ConfigError(f"--log mlflow: MLFLOW_TRACKING_URI {problem}; start it, or unset the variable")


def _unreachable(uri: str) -> str | None:
    """Why an http(s) tracking server cannot be used, or None. Asked once, quickly: MLflow's own client
    retries a dead server for minutes (~4 here) before giving up, and the run would wait that long."""
    if not uri.startswith(("http://", "https://")):
        return None
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=_PROBE_SECONDS):
            return None
    except urllib.error.HTTPError:
        return None  # it answered (a proxy may want a login for /health): MLflow's client takes over
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"{uri} does not answer ({reason})"


def _missing(package: str) -> str | None:
    """Why `package` cannot be used (not installed, or broken), or None when it imports."""
    try:
        if package == "tensorboard":
            import tensorboard  # noqa: F401  # torch.utils.tensorboard needs the real package
            from torch.utils.tensorboard import SummaryWriter  # noqa: F401
        else:
            import mlflow  # noqa: F401
    except ImportError:
        return f"{package} is not installed"
    except Exception as exc:  # installed but broken (e.g. a protobuf clash): say so, do not crash
        return f"{package} is installed but fails to import ({type(exc).__name__}: {exc})"
    return None


def open_trackers(
    log: str,
    run_dir: Path,
    project: Path,
    *,
    is_main: bool,
    resuming: bool,
    steps_done: int,
    notes: list[str] | None = None,
    warn: Callable[[str], None] | None = None,
) -> Trackers:
    """The trackers `--log` asks for; adds to `notes` what is logged where (or that nothing is)."""
    trackers = Trackers(notes=notes, warn=warn)
    if not is_main or log == "none":
        return trackers  # rank 0 alone logs under DDP
    check_available(log)
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    purge = steps_done + 1 if resuming else None  # TensorBoard hides what a stopped run logged later
    wanted: list[tuple[str, Callable[[], Any]]] = []
    if log in ("auto", "tensorboard"):
        wanted.append(("tensorboard", lambda: TensorBoardTracker(run_dir, project, purge_step=purge)))
    if log == "mlflow" or (log == "auto" and uri):
        # the local store's folder is made inside: one that cannot be made is a tracker that cannot start
        wanted.append(
            ("mlflow", lambda: MLflowTracker(run_dir, uri or local_mlflow_uri(project), resuming=resuming))
        )
    skipped: list[str] = []
    for package, make in wanted:
        try:
            tracker = _open(log, package, skipped, make)
        except ConfigError:
            trackers.end([], "failed")  # close the ones already open
            raise
        if tracker is not None:
            trackers.trackers.append(tracker)
            trackers.notes.append(tracker.describe())
    if log == "auto" and not uri and importlib.util.find_spec("mlflow") is not None:  # no import: ~2 s
        skipped.append("MLflow not used: MLFLOW_TRACKING_URI is not set (--log mlflow: a local store)")
    if not trackers:
        trackers.notes.append(
            f"tracking: nothing logged to TensorBoard or MLflow ({'; '.join(skipped)}; {INSTALL_HINT}); "
            "metrics.csv and the PNG curves have every epoch"
        )
    elif skipped:
        trackers.notes.append("tracking: " + "; ".join(skipped))
    return trackers


def _open(log: str, package: str, skipped: list[str], make: Callable[[], Any]) -> Any:
    """A tracker, or None (the reason added to `skipped`). Asked for by name, a failure is an error."""
    problem = _missing(package)
    if problem is None:
        try:
            return make()
        except Exception as exc:  # e.g. an MLflow server that does not answer
            first = str(exc).strip().splitlines()[:1] or [""]  # SQL errors bring the whole statement
            problem = f"{package} could not start ({type(exc).__name__}: {first[0]})"
            if log == package:
                raise ConfigError(f"--log {log}: {problem}; fix it or choose --log auto or none") from exc
    skipped.append(problem)
    return None


def local_mlflow_uri(project: Path) -> str:
    """`--log mlflow` without a server: a SQLite store in runs/mlflow (beside the --project folder).

    MLflow 3 refuses new plain-file stores (./mlruns), so the local store is SQLite plus a folder of
    artefacts; `mlflow ui --backend-store-uri <this>` opens it.
    """
    folder = Path(project).resolve().parent / "mlflow"
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(folder / 'mlflow.db').as_posix()}"


def flat_params(args: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """args.json as flat hyper-parameters: nested dicts dotted, lists as JSON, None as 'None'."""
    flat: dict[str, Any] = {}
    for key, value in args.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flat_params(value, prefix=f"{name}."))
        elif isinstance(value, (list, tuple)):
            flat[name] = json.dumps(list(value))
        elif value is None or isinstance(value, Path):
            flat[name] = str(value)
        else:
            flat[name] = value
    return flat


def step_values(parts: dict[str, float], lr: float, img_per_s: float) -> dict[str, float]:
    """What one optimiser step logs, named as TensorBoard and MLflow show it."""
    values = {f"train/{key}": float(value) for key, value in parts.items()}
    values.update({"train/lr": float(lr), "train/img_per_s": float(img_per_s)})
    return values


def epoch_values(row: dict[str, Any]) -> dict[str, float]:
    """A metrics.csv row as scalars: `val/<metric>` for the mAPs, `epoch/<column>` for the rest."""
    values: dict[str, float] = {}
    for key in CSV_COLUMNS:
        value = row.get(key)
        if key == "epoch" or not isinstance(value, (int, float)):
            continue  # not validated this epoch: None, so nothing is logged
        values[f"val/{key}" if key in METRIC_KEYS else f"epoch/{key}"] = float(value)
    return values


class TensorBoardTracker:
    """Event files in the run folder, so `tensorboard --logdir runs/train` lists every run."""

    name = "tensorboard"

    def __init__(self, run_dir: Path, project: Path, purge_step: int | None = None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.run_dir, self.project = run_dir, project
        # On --resume, purge_step hides what the stopped run logged after its last checkpoint.
        self.writer = SummaryWriter(log_dir=str(run_dir), purge_step=purge_step)
        self.resuming = purge_step is not None

    def describe(self) -> str:
        return f"tensorboard: event files in {self.run_dir} (view: tensorboard --logdir {self.project})"

    def start(self, args: dict[str, Any]) -> None:
        from torch.utils.tensorboard.summary import hparams

        params = flat_params(args)
        if not self.resuming:  # a resume trains on the run's own settings: written once, at its start
            self.writer.add_text("args", "```\n" + json.dumps(args, indent=2, default=str) + "\n```")
        # The HParams dashboard: written into this run's own folder (add_hparams would make a
        # sub-run); its metrics are the val/ scalars logged each epoch.
        experiment, start_info, self._end_info = hparams(params, {f"val/{k}": 0.0 for k in METRIC_KEYS})
        for summary in (experiment, start_info):
            self.writer.file_writer.add_summary(summary)  # type: ignore[union-attr]
        self.writer.flush()

    def step(self, step: int, values: dict[str, float]) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)

    def epoch(self, row: dict[str, Any]) -> None:
        for tag, value in epoch_values(row).items():
            self.writer.add_scalar(tag, value, int(row["epoch"]))
        self.writer.flush()  # an epoch's numbers show up in a running TensorBoard at once

    def end(self, artefacts: Sequence[Path], status: str) -> None:
        if status == "finished" and getattr(self, "_end_info", None) is not None:
            self.writer.file_writer.add_summary(self._end_info)  # type: ignore[union-attr]
        self.writer.close()


class MLflowTracker:
    """One MLflow run: params, metrics per step (sent in batches) and per epoch, artefacts at the end."""

    name = "mlflow"

    def __init__(self, run_dir: Path, tracking_uri: str, resuming: bool = False) -> None:
        from mlflow.tracking import MlflowClient

        problem = _unreachable(tracking_uri)
        if problem:
            raise ConnectionError(problem)
        self.run_dir = Path(run_dir)
        self.tracking_uri = tracking_uri
        # SQLite stores log their schema set-up at INFO
        with _quiet_loggers("mlflow", "alembic"), _stdout_to_stderr(), _store_lock(tracking_uri):
            self.client = MlflowClient(tracking_uri=tracking_uri)
            self.experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME") or MLFLOW_EXPERIMENT
            self.run_id = (self._previous_run() if resuming else None) or self._new_run()
            self.experiment_id = str(self.client.get_run(self.run_id).info.experiment_id)
        (self.run_dir / MLFLOW_RUN_FILE).write_text(
            json.dumps({"tracking_uri": tracking_uri, "run_id": self.run_id}) + "\n", encoding="utf-8"
        )
        self._pending: list[Any] = []
        self._flushed = time.monotonic()

    def describe(self) -> str:
        where = f"mlflow: run {self.run_id} in experiment {self.experiment!r} at {self.tracking_uri}"
        if self.tracking_uri.startswith(("http://", "https://")):
            page = f"{self.tracking_uri.rstrip('/')}/#/experiments/{self.experiment_id}/runs/{self.run_id}"
            return f"{where} (view: {page})"
        return f"{where} (view: mlflow ui --backend-store-uri {self.tracking_uri})"

    def _experiment_id(self) -> str:
        found = self.client.get_experiment_by_name(self.experiment)
        if found is not None:
            return str(found.experiment_id)
        location = None
        if self.tracking_uri.startswith("sqlite:///"):  # local store: artefacts beside the database
            # resolved: MLFLOW_TRACKING_URI may name the database relative to here (sqlite:///runs/...)
            location = (Path(self.tracking_uri[len("sqlite:///") :]).resolve().parent / "artifacts").as_uri()
        return str(self.client.create_experiment(self.experiment, artifact_location=location))

    def _new_run(self) -> str:
        run = self.client.create_run(
            self._experiment_id(),
            run_name=self.run_dir.name,
            tags={"officescore.run_dir": str(self.run_dir.resolve())},
        )
        return str(run.info.run_id)

    def _previous_run(self) -> str | None:
        """--resume: the MLflow run this run folder logged to, when it is in the same store."""
        try:
            saved = json.loads((self.run_dir / MLFLOW_RUN_FILE).read_text(encoding="utf-8"))
            if saved.get("tracking_uri") != self.tracking_uri:
                return None
            run_id = str(saved["run_id"])
            self.client.get_run(run_id)  # raises when it is gone
        except Exception:
            return None
        self.client.update_run(run_id, status="RUNNING")
        return run_id

    def start(self, args: dict[str, Any]) -> None:
        from mlflow.entities import Param

        # MLflow refuses to change a logged param: a resumed run adds only new ones (e.g. --device).
        logged = self.client.get_run(self.run_id).data.params
        params = [
            Param(key, str(value)[:6000]) for key, value in flat_params(args).items() if key not in logged
        ]
        with _stdout_to_stderr():
            for i in range(0, len(params), 100):  # MLflow's limit per request
                self.client.log_batch(self.run_id, params=params[i : i + 100])

    def step(self, step: int, values: dict[str, float]) -> None:
        self._queue(values, step)
        if len(self._pending) >= _BATCH or time.monotonic() - self._flushed > _FLUSH_SECONDS:
            self._flush()

    def epoch(self, row: dict[str, Any]) -> None:
        self._queue(epoch_values(row), int(row["epoch"]))
        self._flush()

    def end(self, artefacts: Sequence[Path], status: str) -> None:
        with _stdout_to_stderr():  # MLflow 3 prints "View run ... at: URL" on stdout for servers
            try:
                self._flush()
                for path in artefacts:
                    folder = "weights" if path.suffix == ".pt" else None
                    self.client.log_artifact(self.run_id, str(path), artifact_path=folder)
            finally:
                self.client.set_terminated(self.run_id, status=_MLFLOW_STATUS.get(status, "FAILED"))

    def _queue(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._pending.extend(Metric(key, value, now, step) for key, value in values.items())

    def _flush(self) -> None:
        self._flushed = time.monotonic()
        with _stdout_to_stderr():
            while self._pending:
                batch, self._pending = self._pending[:_BATCH], self._pending[_BATCH:]
                self.client.log_batch(self.run_id, metrics=batch)


@contextlib.contextmanager
def _store_lock(tracking_uri: str) -> Iterator[None]:
    """One process at a time sets up a local SQLite store: MLflow creates its tables (and the
    experiment) unguarded, so two trainings started together broke the second with SQL errors."""
    handle = None
    if tracking_uri.startswith("sqlite:///"):
        lock = Path(tracking_uri[len("sqlite:///") :] + ".lock")
        with contextlib.suppress(OSError):  # e.g. a read-only folder: MLflow itself says what is wrong
            # MLflow makes a missing folder itself: made here first, so the lock guards a new store too
            lock.parent.mkdir(parents=True, exist_ok=True)
            handle = hold_lock(lock, wait=True)
    try:
        yield
    finally:
        if handle is not None:
            handle.close()


def _stdout_to_stderr() -> contextlib.AbstractContextManager[Any]:
    """stdout belongs to the command (`train --json` prints JSON there): MLflow's prints go to stderr."""
    return contextlib.redirect_stdout(sys.stderr)


@contextlib.contextmanager
def _quiet_loggers(*names: str) -> Iterator[None]:
    """Raise the named loggers to WARNING for a moment (MLflow's SQLite set-up chatter)."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
