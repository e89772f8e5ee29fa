"""How much labellers changed the backend's suggestions, per model version, and the learning curve.

For every task whose final label was saved after a prediction was shown (the prediction Label
Studio stored before the annotation was created; an accepted prediction is named by the
annotation's `parent_prediction`), the predicted objects are matched one to one with the final
labels: a pair counts when both have the same class and mask IoU >= 0.5, best IoU first. Then

    kept    predicted objects matched to a final label (the labeller kept or corrected them)
    added   final labels matched to no prediction (drawn by hand)
    iou     mask IoU of each kept pair (how much a kept suggestion was redrawn)

Per model version: kept share = kept / predicted objects, added, mean mask IoU of kept objects.
Every predicted object not kept is put down to one cause (also per predicted class), so labellers
and whoever trains see what the model gets wrong:

    reclassed   a final label of another class covers it (IoU >= 0.5): the class was changed
    redrawn     a final label of its class that no kept object took overlaps it (IoU >= 0.1): the
                outline was redrawn too far to count as kept
    deleted     anything else: nothing there, or a second suggestion of an object already kept
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from officescore import masks as masklib
from officescore.errors import DataError
from officescore.label.formats import Region, result_regions
from officescore.label.pull import latest_annotation, studio_time

KEEP_IOU = 0.5
REDRAWN_IOU = 0.1  # below this a same-class label is a different object, not a redrawn outline
CAUSES = ("redrawn", "reclassed", "deleted")  # why a suggestion was not kept (module docstring)
PATH_KEYS = ("run", "checkpoint")  # the files of a version, in state.json relative to its folder


@dataclass
class TaskFeedback:
    task: int
    model_version: str
    predicted: int
    labelled: int
    kept: int
    added: int
    kept_ious: list[float] = field(default_factory=list)
    not_kept: dict[str, dict[str, int]] = field(default_factory=dict)  # class -> cause -> count


@dataclass
class VersionFeedback:
    model_version: str
    suggested: int = 0  # tasks holding one of its predictions, labelled or not
    tasks: int = 0  # tasks labelled after one of its predictions was shown
    predicted: int = 0
    labelled: int = 0
    kept: int = 0
    added: int = 0
    iou_sum: float = 0.0
    not_kept_by_class: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(self, task: TaskFeedback) -> None:
        """Count one more task of this version."""
        self.tasks += 1
        self.predicted += task.predicted
        self.labelled += task.labelled
        self.kept += task.kept
        self.added += task.added
        self.iou_sum += sum(task.kept_ious)
        for name, causes in task.not_kept.items():
            into = self.not_kept_by_class.setdefault(name, {})
            for cause, count in causes.items():
                into[cause] = into.get(cause, 0) + count

    @property
    def kept_share(self) -> float | None:
        return self.kept / self.predicted if self.predicted else None

    @property
    def mean_kept_iou(self) -> float | None:
        return self.iou_sum / self.kept if self.kept else None

    @property
    def from_suggestions(self) -> float | None:
        """Of the final labels, the share that came from a kept suggestion: the work the model saved."""
        return self.kept / self.labelled if self.labelled else None

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "iou_sum"}
        out["kept_share"] = _round(self.kept_share)
        out["mean_kept_iou"] = _round(self.mean_kept_iou)
        out["from_suggestions"] = _round(self.from_suggestions)
        out.update(cause_totals(self.not_kept_by_class))
        return out


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


@dataclass(frozen=True)
class Comparison:
    """One task's predicted objects against its final labels (see the module docstring)."""

    added: int
    kept_ious: list[float]
    not_kept: dict[str, dict[str, int]]  # predicted class -> cause -> count

    @property
    def kept(self) -> int:
        return len(self.kept_ious)

    @property
    def redrawn(self) -> int:
        return cause_totals(self.not_kept)["redrawn"]

    @property
    def reclassed(self) -> int:
        return cause_totals(self.not_kept)["reclassed"]

    @property
    def deleted(self) -> int:
        return cause_totals(self.not_kept)["deleted"]


def cause_totals(by_class: Mapping[str, Mapping[str, int]]) -> dict[str, int]:
    """Suggestions not kept per cause, over all classes of `by_class` (class -> cause -> count)."""
    return {cause: sum(causes.get(cause, 0) for causes in by_class.values()) for cause in CAUSES}


def compare_regions(predicted: Sequence[Region], final: Sequence[Region]) -> Comparison:
    """Kept pairs one to one (same class, IoU >= KEEP_IOU, best pairs first), the final labels
    added by hand, and why each predicted object that was not kept was not."""
    ious = masklib.iou([p.mask for p in predicted], [f.mask for f in final])
    same = np.array([[p.class_name == f.class_name for f in final] for p in predicted], dtype=bool)
    same = same.reshape(ious.shape)  # also (0, n) and (n, 0)
    pairs = [(ious[i, j], i, j) for i, j in zip(*np.nonzero(same & (ious >= KEEP_IOU)), strict=True)]
    used_p: set[int] = set()
    used_f: set[int] = set()
    kept_ious = []
    for iou, i, j in sorted(pairs, key=lambda t: (-t[0], t[1], t[2])):
        if i in used_p or j in used_f:
            continue
        used_p.add(i)
        used_f.add(j)
        kept_ious.append(float(iou))
    free = np.array([j not in used_f for j in range(len(final))], dtype=bool)
    causes: list[tuple[str, str]] = []  # (predicted class, cause) of each suggestion not kept
    for i in sorted(set(range(len(predicted))) - used_p):
        if (ious[i][~same[i]] >= KEEP_IOU).any():
            cause = "reclassed"
        elif (ious[i][same[i] & free] >= REDRAWN_IOU).any():
            cause = "redrawn"
        else:
            cause = "deleted"
        causes.append((predicted[i].class_name, cause))
    return Comparison(len(final) - len(used_f), kept_ious, _by_class(causes))


def _by_class(causes: Iterable[tuple[str, str]]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for name, cause in causes:
        out.setdefault(name, {})
        out[name][cause] = out[name].get(cause, 0) + 1
    return out


def match_regions(predicted: Sequence[Region], final: Sequence[Region]) -> tuple[int, int, list[float]]:
    """(kept, added, IoUs of kept pairs) of `compare_regions`."""
    found = compare_regions(predicted, final)
    return found.kept, found.added, found.kept_ious


def shown_prediction(task: Mapping[str, Any], annotation: Mapping[str, Any]) -> dict[str, Any] | None:
    """The prediction the labeller saw: the annotation's parent prediction, else the newest one
    Label Studio stored before the annotation was created; None when none was shown first."""
    predictions = [p for p in task.get("predictions") or [] if isinstance(p, dict)]
    parent = annotation.get("parent_prediction")
    for prediction in predictions:
        if parent is not None and prediction.get("id") == parent:
            return prediction
    created = studio_time(annotation.get("created_at"))
    if created is None:
        return None
    before = [p for p in predictions if (studio_time(p.get("created_at")) or created) < created]
    if not before:
        return None
    return max(before, key=lambda p: (studio_time(p.get("created_at")), p.get("id") or 0))


def task_feedback(task: Mapping[str, Any]) -> TaskFeedback | None:
    """The labeller's changes to the prediction shown on this task; None if not labelled after one."""
    chosen = latest_annotation(dict(task))
    if chosen is None:
        return None
    shown = shown_prediction(task, chosen)
    if shown is None:
        return None
    try:
        predicted = result_regions(shown.get("result") or [])
        final = result_regions(chosen.get("result") or [])
    except DataError:
        return None  # a region Label Studio cannot size: not counted rather than guessed
    found = compare_regions(predicted, final)
    version = str(shown.get("model_version") or "")
    return TaskFeedback(
        int(task.get("id") or 0),
        version,
        len(predicted),
        len(final),
        found.kept,
        found.added,
        found.kept_ious,
        found.not_kept,
    )


def by_version(tasks: Iterable[Mapping[str, Any]]) -> dict[str, VersionFeedback]:
    """Every labelled-after-a-prediction task, summed per model version; every version with a
    prediction in the project has an entry (what Label Studio lists as its model versions)."""
    out: dict[str, VersionFeedback] = {}
    for task in tasks:
        # Each version once per task, in the order Label Studio lists its predictions; a set's order
        # changed from run to run (string hashes are salted per process).
        for version in dict.fromkeys(
            str(p.get("model_version") or "") for p in task.get("predictions") or []
        ):
            out.setdefault(version, VersionFeedback(version)).suggested += 1
        found = task_feedback(task)
        if found is None:
            continue
        out.setdefault(found.model_version, VersionFeedback(found.model_version)).add(found)
    return out


def metrics_document(
    versions: Sequence[Mapping[str, Any]], feedback: Mapping[str, VersionFeedback], extra: Mapping[str, Any]
) -> dict[str, Any]:
    """`GET /metrics` and `label status --json`: one row per model version, oldest first.

    `versions`: the trainer's records (model_version, trained_photos, val_photos, segm_map, bbox_map,
    train_seconds, accepted, ...); versions that only appear in Label Studio's predictions (a model
    the backend started with) get a row with the feedback alone.
    """
    rows = []
    seen = set()
    for record in versions:
        version = str(record.get("model_version") or "")
        seen.add(version)
        row = dict(record)
        row.update((feedback.get(version) or VersionFeedback(version)).to_dict())
        rows.append(row)
    unknown = [
        {"model_version": version, **summary.to_dict()}
        for version, summary in feedback.items()
        if version not in seen
    ]  # in the order the tasks first showed them: before the trainer's, oldest first
    return {**extra, "versions": unknown + rows}


def learning_curve_png(rows: Sequence[Mapping[str, Any]]) -> bytes:
    """Val mask mAP, kept share and the share of labels from suggestions against labelled photos
    trained on, one point per model version."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    points = [r for r in rows if r.get("trained_photos") is not None and r.get("accepted", True)]
    xs = [int(r["trained_photos"]) for r in points]
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
    lines = (
        ("segm_map", "val mask mAP", "o-"),
        ("kept_share", "kept share (suggestions kept)", "s--"),
        ("from_suggestions", "labels from suggestions", "^:"),
    )
    for key, label, style in lines:
        pairs = [(x, r.get(key)) for x, r in zip(xs, points, strict=True) if r.get(key) is not None]
        if pairs:
            ax.plot([p[0] for p in pairs], [p[1] for p in pairs], style, label=label)
    ax.set_xlabel("labelled photos trained on")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # photos: no 1.975
    ax.set_ylim(0, 1)
    ax.set_title("learning curve (one point per model version)")
    ax.grid(alpha=0.3)
    if points:
        ax.legend(loc="lower right", fontsize="small")
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def write_learning_curve(path: Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    from officescore.files import atomic_write_bytes

    atomic_write_bytes(path, learning_curve_png(rows))
    return path


# ---------------------------------------------------------------------- the documents


def tasks_with_predictions(client: Any, project_id: int) -> list[dict[str, Any]]:
    """The project's tasks (JSON export) with each task's predictions as objects: the export itself
    lists only their ids."""
    tasks = client.export_tasks(project_id)
    predictions: dict[int, list[dict[str, Any]]] = {}
    found = client.call("list predictions", lambda: list(client.sdk.predictions.list(project=project_id)))
    for prediction in found:
        item = (
            prediction.model_dump(warnings=False) if hasattr(prediction, "model_dump") else dict(prediction)
        )
        for key in ("created_at", "updated_at"):
            if isinstance(item.get(key), datetime):
                item[key] = item[key].isoformat()
        predictions.setdefault(int(item.get("task") or 0), []).append(item)
    for task in tasks:
        task["predictions"] = predictions.get(int(task.get("id") or 0), [])
    return tasks


def _document(
    client: Any,
    project_id: int,
    versions: Sequence[Mapping[str, Any]],
    extra: Mapping[str, Any],
    folder: Path,
) -> dict[str, Any]:
    tasks = tasks_with_predictions(client, project_id)
    labelled = sum(1 for t in tasks if latest_annotation(t) is not None)
    return metrics_document(
        _paths_from_here(versions, folder),
        by_version(tasks),
        {**extra, "labelled_tasks": labelled, "tasks": len(tasks)},
    )


def _paths_from_here(versions: Sequence[Mapping[str, Any]], folder: Path) -> list[dict[str, Any]]:
    """Versions whose `run` and `checkpoint` name their files from here: state.json keeps them
    relative to the backend's folder (so it can move), where "../runs/train/label-job0001" named
    nothing from the folder the command ran in."""
    return [
        {**v, **{k: os.path.normpath(Path(folder) / v[k]) for k in PATH_KEYS if isinstance(v.get(k), str)}}
        for v in versions
    ]


def live_metrics(trainer: Any, client: Any) -> dict[str, Any]:
    """`GET /metrics` of a running backend (`trainer`: its `label.trainer.Trainer`); also redraws
    learning_curve.png in the backend's folder."""
    from officescore.label.trainer import CURVE_FILE

    if client is None:
        raise DataError(
            "GET /metrics reads the project from Label Studio: start the backend with --url and a key"
        )
    project = client.project(trainer.settings.project)
    document = _document(client, project.id, trainer.versions(), trainer.summary(), trainer.folder)
    write_learning_curve(trainer.folder / CURVE_FILE, document["versions"])
    return document


def project_status(client: Any, title: str, folder: Path) -> dict[str, Any]:
    """`label status`: the backend folder's state.json (if any) joined with the project's labels."""
    from officescore.label.trainer import STATE_FILE, read_state

    project = client.project(title)
    state_path = Path(folder) / STATE_FILE
    versions: list[dict[str, Any]] = []
    extra: dict[str, Any] = {"project": title, "backend_dir": str(folder)}
    if state_path.is_file():
        state = read_state(state_path)
        if state.get("project") == title:
            versions = list(state.get("versions") or [])
            current = state.get("current") or {}
            extra.update(
                model_version=current.get("model_version"),
                pending_labels=state.get("pending"),
                jobs=state.get("jobs"),
                running_job=(state.get("running") or {}).get("job"),
                failures=state.get("failures") or [],
                left_out=state.get("left_out") or {},
            )
    return _document(client, project.id, versions, extra, Path(folder))
