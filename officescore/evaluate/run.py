"""An evaluation run (`officescore eval`): choose the model, evaluate, write runs/eval/NAME/.

metrics.json          the metrics document (officescore.evaluate)
predictions.json      the COCO results that were evaluated (masks as RLE)
pr_curves.png         per-class precision/recall at IoU 0.5, boxes and masks
confusion_matrix.png  classes + background at IoU 0.5, counts, coloured by share of each row
"""

from __future__ import annotations

import io
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from officescore.config import DEFAULT_DATASET_DIR, DEFAULT_RUNS_DIR
from officescore.errors import ConfigError, DataError, ModelError
from officescore.files import atomic_write_bytes, atomic_write_json, check_output_dir
from officescore.progress import SILENT, Reporter
from officescore.runs import (
    check_run_name,
    existing_model_file,
    newest_best_checkpoint,
    next_run_dir,
    trained_data_set,
)

METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "predictions.json"
PR_CURVES_FILE = "pr_curves.png"
CONFUSION_FILE = "confusion_matrix.png"


def latest_best_checkpoint(train_runs: Path = Path("runs/train")) -> Path:
    """The newest runs/train/*/weights/best.pt, or a ModelError saying how to get one."""
    found = newest_best_checkpoint(train_runs)
    if found is None:
        raise ModelError(
            f"no trained model found ({train_runs}/*/weights/best.pt); run `officescore train` "
            "or pass --model PATH (a checkpoint or a TorchScript export)"
        )
    return found


def _figure(width: float, height: float) -> Any:
    # A Figure with its own Agg canvas: no pyplot global state, safe in any thread or server.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def plot_pr_curves(metrics: dict[str, Any], classes: Sequence[str]) -> bytes:
    """PNG: one panel per evaluated type (bbox, segm), one precision/recall line per class."""
    from officescore.evaluate.metrics import format_metric

    types = [t for t in ("bbox", "segm") if metrics.get(t)]
    fig = _figure(6.0 * len(types), 5.0)
    for n, iou_type in enumerate(types, start=1):
        ax = fig.add_subplot(1, len(types), n)
        curve = metrics[iou_type]["pr_curve"]
        for name in classes:
            points = curve["precision"].get(name) or []
            if not points or all(p is None for p in points):
                continue  # no ground truth for this class: no curve
            precision = [math.nan if p is None else p for p in points]
            ap50 = metrics[iou_type]["per_class"][name]["ap50"]
            ax.plot(curve["recall"], precision, linewidth=1.5, label=f"{name} {format_metric(ap50)}")
        ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision")
        ax.set_title(f"{iou_type}: AP50 {format_metric(metrics[iou_type]['ap50'])} (IoU {curve['iou']})")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="lower left", fontsize="small", title="class AP50")
    fig.tight_layout()
    return _png(fig)


def plot_confusion_matrix(confusion: dict[str, Any]) -> bytes:
    """PNG: counts in each cell, coloured by share of the row (background row: of all false alarms)."""
    import numpy as np

    labels = confusion["classes"]
    counts = np.asarray(confusion["matrix"], dtype=float)
    rows = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    size = max(4.0, 0.55 * len(labels) + 2.0)
    fig = _figure(size + 1.0, size)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of row")
    for (i, j), value in np.ndenumerate(counts):
        if value:
            colour = "white" if share[i, j] > 0.6 else "black"
            ax.text(j, i, f"{int(value)}", ha="center", va="center", color=colour, fontsize=8)
    ax.set_xticks(range(len(labels)), labels=labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels=labels)
    ax.set(xlabel="prediction", ylabel="ground truth")
    ax.set_title(
        f"{confusion['iou_type']} confusion at IoU {confusion['iou']}, score >= {confusion['conf']:g}"
    )
    fig.tight_layout()
    return _png(fig)


def save_eval_outputs(
    metrics: dict[str, Any],
    predictions: list[dict[str, Any]],
    out_dir: Path,
    classes: Sequence[str] | None = None,
) -> dict[str, Path]:
    """Write metrics.json, predictions.json, pr_curves.png, confusion_matrix.png into `out_dir`."""
    out_dir = Path(out_dir)
    names = [c for c in (classes or metrics["classes"]) if c in metrics["classes"]] or metrics["classes"]
    paths = {
        "metrics": out_dir / METRICS_FILE,
        "predictions": out_dir / PREDICTIONS_FILE,
        "pr_curves": out_dir / PR_CURVES_FILE,
        "confusion_matrix": out_dir / CONFUSION_FILE,
    }
    atomic_write_json(paths["metrics"], metrics)
    atomic_write_json(paths["predictions"], predictions, indent=None)
    atomic_write_bytes(paths["pr_curves"], plot_pr_curves(metrics, names))
    atomic_write_bytes(paths["confusion_matrix"], plot_confusion_matrix(metrics["confusion_matrix"]))
    return paths


@dataclass
class EvalRun:
    """One `officescore eval`: the metrics document and where it was written."""

    metrics: dict[str, Any]
    out_dir: Path
    gt: Path
    model: Path | None  # None when a results file was evaluated
    predictions: int
    seconds: float
    warnings: list[str] = field(default_factory=list)


def _no_photos(gt: Path, split: str | None) -> DataError:
    other = f"; pass --split with another split ({split} is empty)" if split else ""
    return DataError(f"{gt}: no photos in it, nothing to evaluate{other}")


def _eval_results_file(
    predictions: Path,
    gt: Path,
    split: str | None,
    iou_thresholds: Sequence[float],
    conf: float,
    reporter: Reporter,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    from officescore.evaluate.inputs import read_json
    from officescore.evaluate.metrics import evaluate_coco

    if not gt.is_file():
        raise DataError(f"ground truth {gt} does not exist; pass --gt FILE (COCO annotations)")
    results = read_json(predictions, "predictions")
    metrics = evaluate_coco(gt, results, iou_thresholds, conf, reporter)
    if not metrics["images"]:  # found after the (instant) evaluation: the file is read once
        raise _no_photos(gt, split)
    return metrics, results


def run_eval(
    model: Path | None = None,
    data: Path | None = None,
    split: str = "val",
    predictions: Path | None = None,
    gt: Path | None = None,
    iou_thresholds: Sequence[float] = (),
    conf: float = 0.05,
    batch_size: int = 2,
    workers: int = 0,
    device: str = "auto",
    precision: str = "fp32",
    name: str = "eval",
    project: Path = DEFAULT_RUNS_DIR / "eval",
    train_runs: Path = DEFAULT_RUNS_DIR / "train",
    reporter: Reporter = SILENT,
) -> EvalRun | None:
    """Evaluate a model over a data-set split, or a COCO results file, and write runs/eval/NAME.

    `data` defaults to the data set the model was trained on (its run's args.json), when that is
    still there, else data/dataset. With `predictions`, no model runs: the file is evaluated against
    `gt` (default: the split's annotation file). Under torchrun each rank predicts its shard; rank 0
    evaluates, writes and returns the run, the other ranks return None.
    """
    from officescore.evaluate.metrics import check_iou_thresholds

    start = time.perf_counter()
    check_iou_thresholds(iou_thresholds)  # every user error before any slow work
    if not 0.0 <= conf <= 1.0:
        raise ConfigError(f"--conf {conf}: must be between 0 and 1")
    if batch_size < 1 or workers < 0:
        raise ConfigError("--batch-size must be at least 1 and --workers at least 0")
    check_run_name(name)
    check_output_dir(Path(project), "--project")  # a file in the way fails now, not after predicting
    if gt is not None and predictions is None:
        raise ConfigError("--gt needs --predictions (a COCO results file to evaluate against it)")
    warnings: list[str] = []
    model_path: Path | None = None
    if predictions is not None:
        if int(os.environ.get("RANK", "0")) != 0:
            return None  # a results file needs no distribution: rank 0 does it all
        split_name = None if gt is not None else split  # a file given with --gt is no split
        gt = gt or Path(data or DEFAULT_DATASET_DIR) / f"{split}.json"
        metrics, results = _eval_results_file(
            Path(predictions), Path(gt), split_name, iou_thresholds, conf, reporter
        )
        classes = metrics["classes"]
    else:
        options = {
            "iou_thresholds": iou_thresholds,
            "conf": conf,
            "batch_size": batch_size,
            "precision": precision,
        }
        metrics_results = _eval_model(
            model, data, split, device, workers, train_runs, options, warnings, reporter
        )
        if metrics_results is None:
            return None
        metrics, results, model_path, gt, classes = metrics_results
        split_name = split
    # What was measured travels with the numbers: metrics.json and --json name the model and split.
    metrics["evaluated"] = {
        "model": None if model_path is None else str(model_path),
        "predictions": None if predictions is None else str(predictions),
        "gt": str(gt),
        "split": split_name,
    }
    if not any(row["n_gt"] for row in metrics["bbox"]["per_class"].values()):
        warnings.append(f"{gt}: no labelled objects in it, so mAP and recall are undefined (n/a)")
    out_dir = next_run_dir(Path(project), name)
    save_eval_outputs(metrics, results, out_dir, classes)
    return EvalRun(
        metrics=metrics,
        out_dir=out_dir,
        gt=Path(gt),
        model=model_path,
        predictions=len(results),
        seconds=time.perf_counter() - start,
        warnings=warnings,
    )


def _model_data_set(model: Path) -> Path:
    """The data set `model` was trained on where its run records one that is still there (a model
    is measured on its own val split, wherever it was ingested), else data/dataset."""
    trained = trained_data_set(model)
    return trained if trained is not None and (trained / "dataset.json").is_file() else DEFAULT_DATASET_DIR


def _eval_model(
    model: Path | None,
    data: Path | None,
    split: str,
    device_name: str,
    workers: int,
    train_runs: Path,
    options: dict[str, Any],
    warnings: list[str],
    reporter: Reporter,
) -> tuple[dict[str, Any], list[dict[str, Any]], Path, Path, list[str]] | None:
    model_path = Path(model) if model is not None else latest_best_checkpoint(Path(train_runs))
    model_path = existing_model_file(model_path, option="--model")  # a run folder, or a folder of runs
    data = data if data is not None else _model_data_set(model_path)
    from officescore import distributed  # torch: imported once the cheap checks passed
    from officescore.dataset import OfficeDataset
    from officescore.devices import resolve_device
    from officescore.evaluate.metrics import category_map, evaluate_model
    from officescore.infer.accel import resolve_precision
    from officescore.model import load_any

    dataset = OfficeDataset(data, split)
    if not len(dataset):
        raise _no_photos(dataset.annotation_file, split)
    device = resolve_device(device_name)
    resolve_precision(options["precision"], device)  # one this machine lacks: before any work
    ctx = distributed.init(device)
    try:
        loaded = load_any(model_path, device)
        category_ids = category_map(loaded.classes, dataset.classes)
        if category_ids is not None:
            warnings.append(
                f"model classes ({', '.join(loaded.classes)}) differ from the data set's "
                f"({', '.join(dataset.classes)}); matched by name"
            )
        out = evaluate_model(
            loaded.model,
            dataset,
            device,
            workers=workers,
            ctx=ctx,
            category_ids=category_ids,
            reporter=reporter if ctx.is_main else SILENT,
            **options,
        )
    finally:
        distributed.shutdown()
    if out is None:
        return None
    metrics, results = out
    return metrics, results, model_path, dataset.annotation_file, list(dataset.classes)
