"""`officescore eval`: COCO mAP for boxes and masks, per class, at any IoU; or any COCO results file."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from officescore.cli.common import console, err_console, print_json, reporter, said_when_stopped
from officescore.config import DEFAULT_DATASET_DIR, DEFAULT_RUNS_DIR

if TYPE_CHECKING:
    from officescore.evaluate.run import EvalRun

EXAMPLES = """
[bold]Examples[/bold]

  officescore eval                                 # newest runs/train/*/weights/best.pt on its data set's val

  officescore eval --model runs/train/train/weights/best.pt --iou 0.3 --iou 0.5 --iou 0.75

  officescore eval --model weights/best.torchscript.pt --split train --conf 0.25   # train split: overfitting?

  officescore eval --predictions results.json --gt val.json     # any COCO results file, no model

  officescore eval --json > metrics.json

  torchrun --nproc_per_node 4 -m officescore eval --device cuda  # each GPU infers a shard

  officescore eval --model runs/train/exp1 --log mlflow   # into exp1's MLflow run

Writes runs/eval/NAME (eval, eval2, ...): metrics.json, predictions.json, pr_curves.png,
confusion_matrix.png. The standard numbers are pycocotools' COCOeval numbers. With --log, the
numbers also go to the training run the model came from: its TensorBoard events and its MLflow
run, as eval/<data set>/<split>/... (docs/tracking.md).
Eval takes options only: photos are scored by `officescore score PHOTOS`.
"""

_SUMMARY = (
    ("mAP @[.50:.95]", "map"),
    ("AP50", "ap50"),
    ("AP75", "ap75"),
    ("AP small", "ap_small"),
    ("AP medium", "ap_medium"),
    ("AP large", "ap_large"),
    ("AR @1", "ar1"),
    ("AR @10", "ar10"),
    ("AR @100", "ar100"),
)


def _f(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}"


def evaluate(
    ctx: typer.Context,
    model: Path = typer.Option(
        None,
        "--model",
        "-m",
        help="Checkpoint, TorchScript export, or run folder (its weights/best.pt; a folder of runs: the "
        "newest). Default: newest runs/train/*/weights/best.pt.",
    ),
    data: Path = typer.Option(
        None,
        "--data",
        help="Data set folder (from `officescore ingest`). Default: the one the model was trained on "
        f"(its run's args.json), else {DEFAULT_DATASET_DIR}.",
    ),
    split: str = typer.Option("val", "--split", help="Which split of the data set to evaluate on."),
    iou: list[float] = typer.Option(
        None, "--iou", help="Also report AP at this IoU threshold, 0 < IoU < 1 (repeatable)."
    ),
    conf: float = typer.Option(
        0.05, "--conf", help="Score threshold for precision, recall, F1 and the confusion matrix."
    ),
    batch_size: int = typer.Option(2, "--batch-size", "-b", help="Images per inference batch."),
    workers: int = typer.Option(0, "--workers", help="Data-loading worker processes."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or mps."),
    precision: str = typer.Option(
        "fp32",
        "--precision",
        help="fp32 (exact, default: eval measures the model), auto, bf16, fp16 or int8 (calibrated on "
        "16 of the evaluated photos' pixels, never their labels).",
    ),
    name: str = typer.Option("eval", "--name", help="Run folder name under --project (never overwritten)."),
    project: Path = typer.Option(DEFAULT_RUNS_DIR / "eval", "--project", help="Parent folder of eval runs."),
    predictions: Path = typer.Option(
        None, "--predictions", help="Evaluate this COCO results JSON instead of running a model."
    ),
    gt: Path = typer.Option(None, "--gt", help="Ground truth for --predictions (default: DATA/SPLIT.json)."),
    json_output: bool = typer.Option(False, "--json", help="Print the metrics document as JSON."),
    log: str = typer.Option(
        "auto",
        "--log",
        help="auto | tensorboard | mlflow | none: also log the results to the model's training run "
        "(its event files, the MLflow run its mlflow_run.json names), else to this eval's run folder. "
        "auto: TensorBoard if installed, MLflow if installed and the run has an MLflow run or "
        "MLFLOW_TRACKING_URI is set.",
    ),
) -> None:
    """Evaluate a model (or a COCO results file): COCO mAP for boxes and masks, per class, any IoU."""
    _refuse_arguments(ctx.args)
    from officescore.evaluate.run import run_eval

    log = log.lower()
    if log != "none":  # the tracking module imports torch: not for a results file logged nowhere
        from officescore.train.tracking import check_available

        check_available(log)  # a missing package or a dead server: one line before any slow work
    run = run_eval(
        model=model,
        data=data,
        split=split,
        predictions=predictions,
        gt=gt,
        iou_thresholds=iou or (),
        conf=conf,
        batch_size=batch_size,
        workers=workers,
        device=device,
        precision=precision,
        name=name,
        project=project,
        train_runs=DEFAULT_RUNS_DIR / "train",
        reporter=reporter(json_output),
    )
    if run is None:  # a torchrun rank other than 0: rank 0 reports
        return
    if json_output:
        print_json(run.metrics)
    else:
        _show(run)
    if log != "none":
        _log(log, run, json_output)


def _log(log: str, run: EvalRun, json_output: bool) -> None:
    """`--log`: the results into the trackers, after they are shown (a tracker is no reason to lose
    them); what went where printed as notes, on stderr with --json."""
    from officescore.errors import ConfigError
    from officescore.evaluate.run import CONFUSION_FILE, METRICS_FILE, PR_CURVES_FILE
    from officescore.train.tracking import log_eval

    out = err_console if json_output else console
    artefacts = [run.out_dir / name for name in (METRICS_FILE, PR_CURVES_FILE, CONFUSION_FILE)]

    def warn(note: str) -> None:  # a tracker that failed on the way: switched off, the eval stands
        out.print(Text(f"warning: {note}", style="yellow"))

    try:
        notes = log_eval(log, run.metrics, run.out_dir, run.model, artefacts, warn=warn)
    except ConfigError as exc:  # --log mlflow whose store cannot start: the evaluation itself is kept
        raise ConfigError(f"{exc} (the evaluation is in {run.out_dir})") from exc
    for note in notes:  # plain text: a note's `officescore[track]` is no markup tag
        out.print(Text(note, style="dim"))


def _types(metrics: dict[str, Any]) -> list[str]:
    return [t for t in ("bbox", "segm") if metrics.get(t)]


def _show(run: EvalRun) -> None:
    m = run.metrics
    types = _types(m)
    for warning in run.warnings:
        console.print(f"[yellow]warning:[/yellow] {escape(warning)}")
    source = f"model {run.model}" if run.model else "a results file"
    photos = f"{m['images']} photo{'s' if m['images'] != 1 else ''}"
    console.print(Text(f"{source} on {run.gt}: {photos}, {m['predictions']} predictions"))
    summary = Table()
    summary.add_column("metric")
    for t in types:
        summary.add_column("box" if t == "bbox" else "mask", justify="right")
    for label, key in _SUMMARY:
        summary.add_row(label, *(_f(m[t][key]) for t in types))
    console.print(summary)

    if m["iou_thresholds"]:
        at_iou = Table(title="AP at IoU", title_justify="left")
        at_iou.add_column("IoU", justify="right")
        for t in types:
            at_iou.add_column(f"{'box' if t == 'bbox' else 'mask'} AP", justify="right")
        for key in m[types[0]]["ap_at_iou"]:
            at_iou.add_row(key, *(_f(m[t]["ap_at_iou"][key]) for t in types))
        console.print(at_iou)

    main = types[-1]  # masks when present
    per_class = Table(
        title=f"per class ({'mask' if main == 'segm' else 'box'} AP)", title_justify="left", pad_edge=False
    )  # pad_edge: ten columns in 80 characters
    per_class.add_column("class", no_wrap=True)  # names whole; the numbers are short anyway
    for col in ("GT", "pred", "AP", "AP50", "AP75", "box AP", "P", "R", "F1"):
        per_class.add_column(col, justify="right")
    for cls in m["classes"]:
        row, box = m[main]["per_class"][cls], m["bbox"]["per_class"][cls]
        per_class.add_row(
            Text(cls),
            str(row["n_gt"]),
            str(row["n_pred"]),
            _f(row["ap"]),
            _f(row["ap50"]),
            _f(row["ap75"]),
            _f(box["ap"]),
            _f(row["precision"]),
            _f(row["recall"]),
            _f(row["f1"]),
        )
    console.print(per_class)

    prf = Table(title=f"score >= {m['conf']:g}, IoU 0.5", title_justify="left")
    for col in ("", "precision", "recall", "F1", "TP", "FP", "FN"):
        prf.add_column(col, justify="left" if not col else "right")
    for t in types:
        v = m[t]
        prf.add_row(
            "box" if t == "bbox" else "mask",
            _f(v["precision"]),
            _f(v["recall"]),
            _f(v["f1"]),
            str(v["tp"]),
            str(v["fp"]),
            str(v["fn"]),
        )
    console.print(prf)
    _show_confusion(m["confusion_matrix"])
    if m.get("attributes"):
        _show_attributes(m["attributes"])
    if m["segm"] is None:
        console.print("[yellow]no masks in the results (or the ground truth): boxes only[/yellow]")
    console.print(f"wrote [bold]{escape(str(run.out_dir))}[/bold] in {run.seconds:.1f}s")


def _show_confusion(confusion: dict[str, Any]) -> None:
    """The confusion matrix read per class: found, taken for another class, missed, false alarms."""
    names, matrix = confusion["classes"][:-1], confusion["matrix"]
    bg = len(names)
    kind = "mask" if confusion["iou_type"] == "segm" else "box"
    table = Table(
        title=f"confusion ({kind}, IoU {confusion['iou']}, score >= {confusion['conf']:g})",
        title_justify="left",
        caption="the whole matrix: confusion_matrix.png",
        caption_justify="left",
    )
    table.add_column("class", no_wrap=True)
    for col in ("found", "missed", "false alarms"):
        table.add_column(col, justify="right")
    table.add_column("taken for")
    for i, name in enumerate(names):
        others = sorted(
            ((matrix[i][j], names[j]) for j in range(bg) if j != i and matrix[i][j]), reverse=True
        )
        taken_for = ", ".join(f"{other} {n}" for n, other in others[:3]) + (" ..." if len(others) > 3 else "")
        table.add_row(
            Text(name), str(matrix[i][i]), str(matrix[i][bg]), str(matrix[bg][i]), Text(taken_for or "-")
        )
    console.print(table)


def _show_attributes(attributes: dict[str, Any]) -> None:
    """Per attribute: accuracy and macro F1 over matched, labelled objects, and the confusion."""
    table = Table(title="attributes (detections matched to a labelled object, box IoU >= 0.5)")
    for column in ("attribute", "n", "accuracy", "macro F1", "confusion (rows labelled, columns predicted)"):
        table.add_column(column, justify="left" if column in ("attribute", "confusion") else "right")
    for name, row in attributes.items():
        values = row["values"]
        confusion = "; ".join(
            f"{value}: " + " ".join(f"{v}={n}" for v, n in zip(values, counts, strict=True))
            for value, counts in zip(values, row["confusion"], strict=True)
        )
        table.add_row(Text(name), str(row["n"]), _f(row["accuracy"]), _f(row["macro_f1"]), Text(confusion))
    console.print(table)


def _refuse_arguments(args: list[str]) -> None:
    """eval takes options only; a photo folder or a model given bare (`eval photos/`, `eval best.pt`)
    was Click's "Got unexpected extra argument", which says neither what eval takes nor where photos go."""
    if args:
        import shlex

        from officescore.errors import UserError

        given = shlex.join(args)
        raise UserError(
            f"eval takes options only, not {given}: the model with --model, the data set with --data (or a "
            f"results file with --predictions); photos are scored by `officescore score PHOTOS`"
        )


def register(app: typer.Typer) -> None:
    # extra arguments reach the command (ctx.args), which refuses them with what eval takes
    settings = {"allow_extra_args": True}
    app.command("eval", epilog=EXAMPLES, context_settings=settings)(said_when_stopped()(evaluate))
