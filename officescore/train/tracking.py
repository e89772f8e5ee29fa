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

`eval --log` (`log_eval`, called by the CLI after the evaluation, which knows no tracker) adds an
evaluation to the run its model came from: `eval/<data set>/<split>/<metric>` at the checkpoint's
epoch, in the run folder's event files and in the MLflow run its mlflow_run.json names (never
re-marked RUNNING or finished), with metrics.json and the plots as artefacts and tags saying what
was evaluated. A model from no run folder (an export elsewhere, a results file) gets the eval's own
run folder as its run: events there, a new MLflow run named after it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import json
import logging
import os
import re
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from officescore.errors import ConfigError
from officescore.files import hold_lock
from officescore.runs import training_run
from officescore.train.config import CSV_COLUMNS, LOG_CHOICES, METRIC_KEYS

INSTALL_HINT = "pip install 'officescore[track]'"
MLFLOW_EXPERIMENT = "officescore"  # unless MLFLOW_EXPERIMENT_NAME says otherwise
MLFLOW_RUN_FILE = "mlflow_run.json"  # in the run folder: --resume continues the same MLflow run
_BATCH = 500  # MLflow metrics sent per request (its limit is 1000)
_FLUSH_SECONDS = 15.0  # ... or sooner: slow CPU steps still reach the MLflow UI within seconds
_PROBE_SECONDS = 5.0  # a tracking server that does not answer this fast is not used (see _unreachable)
_RUN_NAME_PARTS = 4  # an MLflow run's name: the run folder and the 3 above it (officeA/runs/train/exp1)
# eval --log's TensorBoard event files end so: an earlier evaluation is found without reading training's
EVAL_EVENTS_SUFFIX = ".eval"


@dataclass
class Evaluation:
    """One `eval --log`: its scalars (`eval_values`) at `step`, what it measured (`about`: gt, model,
    split, eval_dir) and its files, named under `eval/<label>/`; `params`: the settings the model
    trained with (`training_params`), for an MLflow run that has none (trained without MLflow)."""

    label: str
    step: int
    values: dict[str, float]
    about: dict[str, str]
    artefacts: list[Path] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)


class Tracker(Protocol):
    """One experiment tracker; `Trackers` calls these at the loop's fixed points."""

    name: str

    def start(self, args: dict[str, Any]) -> None: ...

    def step(self, step: int, values: dict[str, float]) -> None: ...

    def epoch(self, row: dict[str, Any]) -> None: ...

    def end(self, artefacts: Sequence[Path], status: str) -> None: ...

    def describe(self) -> str: ...  # one line for the run's notes: where to look

    # `eval --log`: one evaluation's numbers, what it measured (`about`) and its files, under `label`
    def evaluation(self, ev: Evaluation) -> str | None: ...


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

    def evaluation(self, ev: Evaluation) -> None:
        self._each("evaluation", ev)

    def _each(self, method: str, *args: Any) -> None:
        for tracker in list(self.trackers):
            try:
                said = getattr(tracker, method)(*args)
                if isinstance(said, str):  # a note for the run (an evaluation logged before)
                    self.notes.append(said)
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
    _open_wanted(log, wanted, trackers, uri, "metrics.csv and the PNG curves have every epoch")
    return trackers


def _open_wanted(
    log: str, wanted: list[tuple[str, Callable[[], Any]]], trackers: Trackers, uri: str | None, kept: str
) -> None:
    """Start each wanted tracker into `trackers`; the notes say where each logs, or why none does
    (`kept`: where the numbers are anyway)."""
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
            trackers.notes.extend(getattr(tracker, "notes", []))  # MLflow: a relative store's record
    if log == "auto" and not uri and importlib.util.find_spec("mlflow") is not None:  # no import: ~2 s
        skipped.append("MLflow not used: MLFLOW_TRACKING_URI is not set (--log mlflow: a local store)")
    if not trackers:
        why = "; ".join(skipped)
        trackers.notes.append(
            f"tracking: nothing logged to TensorBoard or MLflow ({why}; {INSTALL_HINT}); {kept}"
        )
    elif skipped:
        trackers.notes.append("tracking: " + "; ".join(skipped))


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


_SQLITE = "sqlite:///"


def absolute_tracking_uri(uri: str) -> str:
    """A SQLite store named relative to the current folder (sqlite:///runs/mlflow/mlflow.db) as a
    whole path (sqlite:////home/me/runs/mlflow/mlflow.db); any other URI as it is."""
    if uri.startswith(_SQLITE) and not Path(uri[len(_SQLITE) :]).is_absolute():
        return _SQLITE + Path(os.path.abspath(uri[len(_SQLITE) :])).as_posix()
    return uri


def mlflow_run_name(run_dir: Path) -> str:
    """An MLflow run's name: the run folder's path from 3 folders up (officeA/runs/train/exp1), so two
    projects' runs/train/exp1 in one experiment tell apart (the whole path: tag officescore.run_dir)."""
    return "/".join(Path(run_dir).resolve().parts[-_RUN_NAME_PARTS:])


def _safe(text: str) -> str:
    """A part of a metric or tag name as MLflow takes it (letters, digits, _ - . space /)."""
    return re.sub(r"[^\w\-. ]", "_", text, flags=re.ASCII) or "_"


def eval_label(gt: Path | str) -> str:
    """What an evaluation measured, the middle of its names: the ground truth's folder and file
    stem, `<data set>/<split>` for a data set's split (data/dataset/test.json: dataset/test)."""
    gt = Path(gt).resolve()
    return f"{_safe(gt.parent.name)}/{_safe(gt.stem)}"


# The metrics document's numbers per type that `eval --log` logs (its `conf` and `match_iou` are settings)
EVAL_METRICS = (
    "map", "ap50", "ap75", "ap_small", "ap_medium", "ap_large", "ar1", "ar10", "ar100",
    "ar_small", "ar_medium", "ar_large", "precision", "recall", "f1", "tp", "fp", "fn",
)  # fmt: skip


def eval_values(metrics: dict[str, Any], label: str) -> dict[str, float]:
    """The metrics document's numbers as scalars `eval/<label>/<type>_<metric>` (bbox_map, segm_ap50,
    segm_precision, ...), `<type>_ap_iou<IoU>` and `<type>_ar_iou<IoU>` for --iou, `<type>_ap/<class>`
    per class and `attributes/<attribute>_accuracy` / `_macro_f1`; a number metrics.json holds as
    null (undefined) is not logged."""
    named: dict[str, Any] = {}
    for kind in ("bbox", "segm"):
        doc = metrics.get(kind) or {}
        named.update({f"{kind}_{key}": doc.get(key) for key in EVAL_METRICS})
        for stat in ("ap", "ar"):  # --iou: AP and recall (AR, up to 100 detections) at each threshold
            at_iou = doc.get(f"{stat}_at_iou") or {}
            named.update({f"{kind}_{stat}_iou{iou}": value for iou, value in at_iou.items()})
        named.update(
            {f"{kind}_ap/{_safe(c)}": row.get("ap") for c, row in (doc.get("per_class") or {}).items()}
        )
    for name, row in (metrics.get("attributes") or {}).items():
        named.update({f"attributes/{_safe(name)}_{key}": row.get(key) for key in ("accuracy", "macro_f1")})
    return {
        f"eval/{label}/{key}": float(value)
        for key, value in named.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    }


def repeat_note(tracker: str, ev: Evaluation, earlier: str, shown: str) -> str:
    """The one line each tracker gives for an evaluation whose names and step were logged before
    (the same checkpoint on the same split again): nothing is replaced; `shown` says what is seen."""
    where = f" (from {earlier})" if earlier else ""
    return f"{tracker}: eval/{ev.label} at step {ev.step} was logged before{where}; {shown}"


def checkpoint_epoch(model: Path | None) -> int:
    """The step an evaluation is logged at: the epochs its checkpoint had trained, the axis of the
    run's val/ curves (best.pt's numbers on its val split sit on them); 0 for an export or no model."""
    if model is None:
        return 0
    try:
        import torch

        # mmap: the weights are not read, only the small fields
        data = torch.load(model, map_location="cpu", weights_only=True, mmap=True)
        return int(data.get("epoch") or 0)
    except Exception:  # a TorchScript export, an old or foreign file: no epoch to place it at
        return 0


def training_params(model: Path | None, run_dir: Path | None) -> dict[str, Any]:
    """The settings `model` trained with (its checkpoint's args) as `train` logs them: data, project
    and resume as whole paths when the model is in its run folder `run_dir` (the checkpoint keeps
    them relative to it, as loop._tracked_args reads them); {} for an export or no model."""
    if model is None:
        return {}
    try:
        import torch

        data = torch.load(model, map_location="cpu", weights_only=True, mmap=True)  # weights not read
        args = dict(data.get("args") or {})
    except Exception:  # a TorchScript export, an old or foreign file: no settings recorded
        return {}
    return whole_paths(args, run_dir) if run_dir is not None else args


def whole_paths(args: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """`args` with data, project and resume as whole paths: args.json keeps them relative to the run
    folder `run_dir`, which read as data = ../../../data/dataset in a tracker."""
    args = dict(args)
    for key in ("data", "project", "resume"):
        if args.get(key) is not None:
            args[key] = os.path.normpath(Path(run_dir).resolve() / str(args[key]))
    return args


def open_eval_trackers(
    log: str,
    run_dir: Path,
    *,
    notes: list[str] | None = None,
    warn: Callable[[str], None] | None = None,
) -> Trackers:
    """The trackers `eval --log` adds to `run_dir` (a training run, or the eval's own folder): its
    event files, and the MLflow run its mlflow_run.json names (auto: used when the run has one or
    MLFLOW_TRACKING_URI is set; mlflow: else a new run at MLFLOW_TRACKING_URI or runs/mlflow)."""
    trackers = Trackers(notes=notes, warn=warn)
    if log == "none":
        return trackers
    check_available(log)
    uri = _saved_tracking_uri(run_dir) or os.environ.get("MLFLOW_TRACKING_URI")
    project = run_dir.parent
    wanted: list[tuple[str, Callable[[], Any]]] = []
    if log in ("auto", "tensorboard"):
        wanted.append(
            ("tensorboard", lambda: TensorBoardTracker(run_dir, project, filename_suffix=EVAL_EVENTS_SUFFIX))
        )
    if log == "mlflow" or (log == "auto" and uri):
        wanted.append(
            ("mlflow", lambda: MLflowTracker(run_dir, uri or local_mlflow_uri(project), adding=True))
        )
    _open_wanted(log, wanted, trackers, uri, "metrics.json has every number")
    return trackers


def _saved_tracking_uri(run_dir: Path) -> str | None:
    """The store a run folder's mlflow_run.json names (its MLflow run is there), or None."""
    try:
        uri = json.loads((run_dir / MLFLOW_RUN_FILE).read_text(encoding="utf-8")).get("tracking_uri")
    except (OSError, ValueError, AttributeError):
        return None
    return uri if isinstance(uri, str) and uri else None


def log_eval(
    log: str,
    metrics: dict[str, Any],
    out_dir: Path,
    model: Path | None,
    artefacts: Sequence[Path],
    warn: Callable[[str], None] | None = None,
) -> list[str]:
    """`eval --log`: add one evaluation (its metrics document, written to `out_dir`) to the training
    run `model` came from, else to `out_dir` as a run of its own. Returns the notes: where it went."""
    notes: list[str] = []
    trained_in = training_run(model) if model is not None else None
    run_dir = trained_in or Path(out_dir)
    trackers = open_eval_trackers(log, run_dir, notes=notes, warn=warn)
    if not trackers:
        return notes
    label = eval_label(metrics["evaluated"]["gt"])
    step = checkpoint_epoch(model)
    about = {key: str(value) for key, value in metrics["evaluated"].items() if value is not None}
    about["eval_dir"] = str(Path(out_dir).resolve())
    files = [Path(p) for p in artefacts if Path(p).is_file()]
    try:
        params = training_params(model, trained_in)
        trackers.evaluation(Evaluation(label, step, eval_values(metrics, label), about, files, params))
    finally:
        trackers.end([], "finished")
    if trackers:  # still on: none failed on the way
        at = f"step {step} (the checkpoint's epoch)" if step else "step 0 (no checkpoint epoch)"
        notes.append(f"eval: logged as eval/{label}/* at {at} in {run_dir}")
    return notes


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

    def __init__(
        self, run_dir: Path, project: Path, purge_step: int | None = None, filename_suffix: str = ""
    ) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.run_dir, self.project = run_dir, project
        # On --resume, purge_step hides what the stopped run logged after its last checkpoint.
        self.writer = SummaryWriter(
            log_dir=str(run_dir), purge_step=purge_step, filename_suffix=filename_suffix
        )
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

    def evaluation(self, ev: Evaluation) -> str | None:
        """The numbers at the step and a text entry saying what they measured; says so when `label`
        was logged at this step before (TensorBoard keeps both events, its plot shows one)."""
        earlier = self._earlier_eval_dirs(ev)
        for tag, value in ev.values.items():
            self.writer.add_scalar(tag, value, ev.step)
        lines = "\n".join(f"- {key}: `{value}`" for key, value in ev.about.items())
        self.writer.add_text(f"eval/{ev.label}", lines, ev.step)  # what these numbers measured
        self.writer.flush()
        if not earlier:
            return None
        # TensorBoard's default loader (--load_fast) keeps the last value written at a step
        shown = "its event files keep both, its plot shows the newer (both: tensorboard --load_fast=false)"
        return repeat_note(self.name, ev, earlier[-1], shown)

    def _earlier_eval_dirs(self, ev: Evaluation) -> list[str]:
        """The eval folders of the evaluations of `ev.label` at `ev.step` in the run's eval event
        files, oldest first."""
        from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

        tag, found = f"eval/{ev.label}/text_summary", []
        for path in self.run_dir.glob(f"*tfevents*{EVAL_EVENTS_SUFFIX}"):
            for event in EventFileLoader(str(path)).Load():
                texts = [v.tensor.string_val[0] for v in event.summary.value if v.tag == tag]
                if texts and event.step == ev.step:
                    written = re.search(r"^- eval_dir: `(.*)`$", texts[0].decode(), flags=re.M)
                    found.append((event.wall_time, written.group(1) if written else ""))
        return [eval_dir for _, eval_dir in sorted(found)]  # by time: file names need not sort so


class MLflowTracker:
    """One MLflow run: params, metrics per step (sent in batches) and per epoch, artefacts at the end."""

    name = "mlflow"

    def __init__(
        self, run_dir: Path, tracking_uri: str, resuming: bool = False, adding: bool = False
    ) -> None:
        """`resuming`: continue the run folder's MLflow run (mlflow_run.json) when it is in this store;
        `adding` (eval): continue it as it is, its status and end time untouched."""
        from mlflow.tracking import MlflowClient

        problem = _unreachable(tracking_uri)
        if problem:
            raise ConnectionError(problem)
        self.run_dir = Path(run_dir)
        # recorded whole in mlflow_run.json: eval and --resume from another folder reach the same store
        self.tracking_uri = tracking_uri = absolute_tracking_uri(tracking_uri)
        self.notes = self._relative_record_notes()
        # SQLite stores log their schema set-up at INFO
        with _quiet_loggers("mlflow", "alembic"), _stdout_to_stderr(), _store_lock(tracking_uri):
            self.client = MlflowClient(tracking_uri=tracking_uri)
            self.experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME") or MLFLOW_EXPERIMENT
            previous = self._previous_run(running=not adding) if resuming or adding else None
            self.run_id = previous or self._new_run()
            self._ends_run = previous is None or not adding  # an evaluation leaves the run's status alone
            self.experiment_id = str(self.client.get_run(self.run_id).info.experiment_id)
        (self.run_dir / MLFLOW_RUN_FILE).write_text(
            json.dumps({"tracking_uri": tracking_uri, "run_id": self.run_id}) + "\n", encoding="utf-8"
        )
        self._pending: list[Any] = []
        self._flushed = time.monotonic()

    def _relative_record_notes(self) -> list[str]:
        """One line when the run folder's mlflow_run.json (written before 2026-12-06) names the SQLite
        store in use relative to the folder training ran in, which nothing records: which one is used."""
        saved = _saved_tracking_uri(self.run_dir)
        if saved is None or saved == self.tracking_uri or absolute_tracking_uri(saved) != self.tracking_uri:
            return []  # none, recorded whole, or another store (not used: a run of its own)
        path = self.tracking_uri[len(_SQLITE) :]
        new = "" if Path(path).exists() else ", a new one"
        return [
            f"mlflow: {self.run_dir / MLFLOW_RUN_FILE} names the store {saved} relative to the folder "
            f"training ran in, which is not recorded; using {path} (from the current folder{new})"
        ]

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
            run_name=mlflow_run_name(self.run_dir),
            tags={"officescore.run_dir": str(self.run_dir.resolve())},
        )
        return str(run.info.run_id)

    def _previous_run(self, running: bool = True) -> str | None:
        """--resume (and eval): the MLflow run this run folder logged to, when it is in the same store."""
        try:
            saved = json.loads((self.run_dir / MLFLOW_RUN_FILE).read_text(encoding="utf-8"))
            if absolute_tracking_uri(str(saved.get("tracking_uri"))) != self.tracking_uri:
                return None
            run_id = str(saved["run_id"])
            self.client.get_run(run_id)  # raises when it is gone
        except Exception:
            return None
        if running:
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
                if self._ends_run:
                    self.client.set_terminated(self.run_id, status=_MLFLOW_STATUS.get(status, "FAILED"))

    def evaluation(self, ev: Evaluation) -> str | None:
        """The numbers at the step, tags `eval/<label>/<key>` for `about`, the files in a folder of
        this evaluation's own; says so when `label` was logged at this step before (MLflow keeps both
        values in the metric history and shows the newer)."""
        earlier = self._earlier_eval_dir(ev)
        self.start(ev.params)  # a run trained without MLflow gets the model's settings; logged ones stay
        with _stdout_to_stderr():
            self._queue(ev.values, ev.step)
            self._flush()
            folder = self._artefact_folder(ev)
            for key, value in {**ev.about, "artifacts": folder}.items():
                self.client.set_tag(self.run_id, f"eval/{ev.label}/{key}", value)
            for path in ev.artefacts:
                self.client.log_artifact(self.run_id, str(path), artifact_path=folder)
        if earlier is None:
            return None
        return repeat_note(self.name, ev, earlier, "its metric history keeps both, the run shows the newer")

    def _artefact_folder(self, ev: Evaluation) -> str:
        """`eval/<label>/<eval folder's name>`, a folder of this evaluation's own: numbered as train
        numbers run folders (eval, eval2, ...) when an earlier evaluation has that name (another
        project's runs/eval/eval, or one since deleted), so a second one never replaces the first's."""
        parent, name = f"eval/{ev.label}", Path(ev.about["eval_dir"]).name
        taken = {Path(a.path).name for a in self.client.list_artifacts(self.run_id, parent)}
        candidates = (name if n == 1 else f"{name}{n}" for n in itertools.count(1))
        return f"{parent}/{next(c for c in candidates if c not in taken)}"

    def _earlier_eval_dir(self, ev: Evaluation) -> str | None:
        """None when `ev.label` has no value at `ev.step` yet; else the eval folder that logged it
        ("" when the newest evaluation of the label was at another step: its tag names that one)."""
        key = next(iter(ev.values), None)
        history = self.client.get_metric_history(self.run_id, key) if key else []
        if not any(m.step == ev.step for m in history):
            return None
        newest = max(history, key=lambda m: m.timestamp)
        tag = self.client.get_run(self.run_id).data.tags.get(f"eval/{ev.label}/eval_dir")
        return (tag or "") if newest.step == ev.step else ""

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
