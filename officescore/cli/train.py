"""`officescore train`: fine-tune Mask R-CNN on a data set folder; one process or torchrun DDP."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from officescore.cli.common import console, err_console, print_json, reporter
from officescore.errors import ConfigError

if TYPE_CHECKING:
    from officescore.train import TrainResult

EXAMPLES = """
[bold]Examples[/bold]

  officescore train --data data/dataset
  # COCO-pretrained maskrcnn_resnet50_fpn_v2, 20 epochs

  officescore train --arch maskrcnn_resnet18_fpn --weights none --img-size 192 --epochs 10 \\
    --batch-size 4 --lr 0.02 --workers 0 \\
    --model-opt rpn_post_nms_top_n_train=100,box_batch_size_per_image=64
  # small model from scratch: the 2-minute CPU demo

  officescore train --resume runs/train/train/weights/last.pt
  # continue an interrupted run in its own folder

  torchrun --nproc_per_node 4 -m officescore train --data data/dataset --batch-size 4
  # data-parallel over 4 GPUs; add --nnodes/--rdzv-endpoint for several machines

  officescore train --data data/dataset --log mlflow
  # an MLflow run instead of TensorBoard events: at $MLFLOW_TRACKING_URI, else in
  # runs/mlflow/mlflow.db; both: --log auto with MLFLOW_TRACKING_URI set (docs/tracking.md)

Runs go to runs/train/NAME (train, train2, ...): args.json, metrics.csv, weights/last.pt,
weights/best.pt (best val mask mAP) and losses/map/lr PNG curves. Ctrl-C or SIGTERM saves
last.pt first (SIGTERM exits 143). With tensorboard installed, TensorBoard event files too:
tensorboard --logdir runs/train
"""


def _model_options(items: list[str]) -> dict[str, object]:
    options: dict[str, object] = {}
    for item in (part.strip() for entry in items for part in entry.split(",") if part.strip()):
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--model-opt {item!r}: write KEY=VALUE, e.g. rpn_post_nms_top_n_train=300")
        value: object
        try:
            value = int(raw)
        except ValueError:
            try:
                value = float(raw)
            except ValueError:
                value = raw
        options[key.replace("-", "_")] = value
    return options


# On --resume the run's saved settings rule; these may still change between sessions.
RESUME_MAY_CHANGE = {"data", "device", "workers", "log", "resume", "json_output"}


def _check_resume_flags(ctx: typer.Context) -> None:
    """Refuse settings that --resume would otherwise ignore silently."""
    given = [
        f"--{name.replace('_', '-')}"
        for name in ctx.params
        if name not in RESUME_MAY_CHANGE
        # compared by name: recent Typer vendors Click, so the enum class differs between versions
        and getattr(ctx.get_parameter_source(name), "name", "") in ("COMMANDLINE", "ENVIRONMENT")
    ]
    if given:
        raise ConfigError(
            f"--resume continues a run with its saved settings, so {', '.join(given)} would be ignored; "
            "to train further with new settings start a new run with --weights PATH/TO/last.pt"
        )


def train(
    ctx: typer.Context,
    data: Path = typer.Option(Path("data/dataset"), "--data", help="Data set folder written by ingest."),
    arch: str = typer.Option(
        "maskrcnn_resnet50_fpn_v2",
        "--arch",
        help="maskrcnn_resnet50_fpn_v2 | maskrcnn_resnet50_fpn | maskrcnn_mobilenet_v3_fpn | "
        "maskrcnn_resnet18_fpn",
    ),
    weights: str = typer.Option("coco", "--weights", help="coco | imagenet | none | PATH (.pt checkpoint)."),
    epochs: int = typer.Option(20, "--epochs", help="Training epochs."),
    batch_size: int = typer.Option(2, "--batch-size", help="Images per step per process."),
    lr: float | None = typer.Option(
        None, "--lr", help="Peak learning rate (default: 0.02 for sgd, 1e-3 for adamw, x global batch / 16)."
    ),
    optimizer: str = typer.Option("sgd", "--optimizer", help="sgd (momentum 0.9) | adamw."),
    img_size: int | None = typer.Option(
        None, "--img-size", help="Longest image side fed to the model (default: the model's 800-1333 px)."
    ),
    workers: int = typer.Option(2, "--workers", help="DataLoader worker processes."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | mps."),
    amp: bool = typer.Option(
        False, "--amp", help="Mixed precision (CUDA fp16; bf16 on CPUs with native bf16)."
    ),
    patience: int = typer.Option(0, "--patience", help="Stop after N validations without gain (0: off)."),
    name: str | None = typer.Option(
        None, "--name", help="Run folder name under --project (default: train, then train2, ...)."
    ),
    project: Path = typer.Option(Path("runs/train"), "--project", help="Folder holding run folders."),
    resume: Path | None = typer.Option(
        None,
        "--resume",
        help="A run folder or its weights/last.pt: continue it (its saved settings are used).",
    ),
    seed: int = typer.Option(0, "--seed", help="Random seed (data order, augmentation, init)."),
    val_every: int = typer.Option(1, "--val-every", help="Validate every N epochs (and after the last)."),
    max_train_images: int | None = typer.Option(
        None, "--max-train-images", help="Use only the first N training images (quick experiments)."
    ),
    warmup_iters: int | None = typer.Option(
        None, "--warmup-iters", help="Linear warm-up steps (default: 10% of all steps, at most 500)."
    ),
    model_opt: list[str] = typer.Option(
        [],
        "--model-opt",
        help="Model option KEY=VALUE (repeatable or comma-separated), e.g. rpn_post_nms_top_n_train=300.",
    ),
    log: str = typer.Option(
        "auto",
        "--log",
        help="auto | tensorboard | mlflow | none: experiment tracking besides metrics.csv. auto: "
        "TensorBoard if installed, MLflow if installed and MLFLOW_TRACKING_URI is set; "
        "mlflow without that URI: a local store in runs/mlflow.",
    ),
    attributes: bool = typer.Option(
        True,
        "--attributes/--no-attributes",
        help="Train the attribute head when the data set has labelled attributes (dataset.json).",
    ),
    json_output: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
) -> None:
    """Fine-tune Mask R-CNN; saves last/best checkpoints, metrics.csv and plots per run."""
    from officescore.train import Terminated, TrainConfig
    from officescore.train import train as run_training

    if resume is not None:
        _check_resume_flags(ctx)

    config = TrainConfig(
        data=data,
        arch=arch,
        weights=weights,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        optimizer=optimizer.lower(),
        img_size=img_size,
        workers=workers,
        device=device,
        amp=amp,
        patience=patience,
        name=name,
        project=project,
        resume=resume,
        seed=seed,
        val_every=val_every,
        max_train_images=max_train_images,
        warmup_iters=warmup_iters,
        model_kwargs=_model_options(model_opt) | ({} if attributes else {"attributes": {}}),
        log=log.lower(),
    )
    progress = reporter(json_output)
    try:
        result = run_training(config, reporter=progress)
    except Terminated:
        err_console.print("[red]terminated by SIGTERM[/red]")
        raise typer.Exit(143) from None  # 128 + SIGTERM, as shells report it
    if not _is_rank0():  # under torchrun, rank 0 alone prints
        return
    if json_output:
        print_json(result.to_dict())
        return
    _summary(result)


def _is_rank0() -> bool:
    import os

    return os.environ.get("RANK", "0") == "0"


def _summary(result: TrainResult) -> None:
    from officescore.train import LOSS_KEYS

    history = result.history
    for note in result.notes:  # plain text: a note's `officescore[track]` is no markup tag
        console.print(Text(note, style="dim"))
    table = Table(title=Text(f"training: {result.run_dir}"), title_justify="left")
    for column in ("epoch", "loss", "mask loss", "lr", "img/s", "mask mAP", "mask AP50", "box mAP"):
        table.add_column(column, justify="right")

    def fmt(value: object, spec: str = ".3f") -> str:
        return "-" if value is None else format(value, spec)

    for row in history[-15:]:
        table.add_row(
            str(row["epoch"]),
            fmt(row.get("loss")),
            fmt(row.get(LOSS_KEYS[2])),
            fmt(row.get("lr"), ".2e"),
            fmt(row.get("img_per_s"), ".1f"),
            fmt(row.get("segm_map")),
            fmt(row.get("segm_ap50")),
            fmt(row.get("bbox_map")),
        )
    console.print(table)
    best = result.best_metric
    where = f" (epoch {result.best_epoch})" if best is not None else ""
    early = " · stopped early" if result.stopped_early else ""
    epochs = f"{result.epochs_completed} epoch" + ("" if result.epochs_completed == 1 else "s")
    console.print(f"{epochs} in {result.seconds:.0f}s · best mask mAP {fmt(best)}{where}{early}")
    console.print(f"weights: [bold]{escape(str(result.last_checkpoint))}[/bold]", end="")
    if result.best_checkpoint:
        console.print(f", [bold]{escape(str(result.best_checkpoint))}[/bold]", end="")
    console.print()


def register(app: typer.Typer) -> None:
    app.command("train", epilog=EXAMPLES)(train)
