"""Training loop for Mask R-CNN: one process, or data-parallel under `torchrun` (DDP).

A run lives in `runs/train/NAME/` (never overwritten: train, train2, ...):
  args.json     the fully resolved configuration (paths relative to the run folder)
  metrics.csv   one row per epoch: loss parts, lr, images/s, val box and mask AP
  weights/      last.pt after every epoch (atomic), best.pt when val mask mAP@[.5:.95] improves
  *.png         losses, mAP and learning-rate curves
  events.out.tfevents.*, mlflow_run.json   with --log (see `tracking`): TensorBoard / MLflow

Schedule: SGD (momentum 0.9) or AdamW, linear warm-up then cosine decay, stepped per iteration.
The default learning rate is scaled linearly with the global batch (batch size x processes) from
torchvision's detection reference: SGD 0.02 and AdamW 1e-3 at a global batch of 16.

Reproducibility: every epoch reseeds Python, NumPy and torch from (seed, epoch, rank); the data order
is a permutation seeded by (seed, epoch); each training sample's augmentation is seeded by (seed,
epoch, index) alone and leaves the process's RNGs as it found them (`SeededItems`). So the model's
random stream (proposal sampling) never depends on data loading, results do not depend on --workers,
and `--resume` from `last.pt` continues exactly as an uninterrupted run would (bitwise on CPU).
Ctrl-C or SIGTERM (what job schedulers send) saves `last.pt` mid-epoch with the position in the
epoch and the RNG states; resuming skips the batches already seen. One landing in the optimiser's
step is held until the step is counted (`checkpoints.signals_held`). Stopped while validating, it saves
the trained epoch (and its row of losses), so resuming only validates it.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from officescore import distributed as dist_utils
from officescore.devices import resolve_device
from officescore.errors import ConfigError
from officescore.model import load_checkpoint
from officescore.progress import SILENT, Reporter
from officescore.runs import ARGS_FILE
from officescore.train.checkpoints import (
    State,
    raise_if_stopped,
    restore_state,
    save_when_stopped,
    stop_signals_as_interrupts,
    write_checkpoints,
)
from officescore.train.config import TrainConfig, TrainResult, check_config
from officescore.train.engine import train_one_epoch
from officescore.train.seeding import weights_digest
from officescore.train.setup import Run, setup
from officescore.train.tracking import check_available, open_trackers, whole_paths
from officescore.train.validate import validate_if_due


def train(config: TrainConfig, reporter: Reporter = SILENT) -> TrainResult:
    """Train (or resume) a run; returns where it went and what it reached."""
    config, checkpoint = _resolve_resume(config)
    check_config(config)
    check_available(config.log)  # `--log mlflow` without mlflow: say so before loading anything
    device = resolve_device(config.device)
    ctx = dist_utils.init(device)
    try:
        with stop_signals_as_interrupts() as received:
            return _run(config, device, ctx, checkpoint, reporter, received)
    finally:
        dist_utils.shutdown()


def _resolve_resume(config: TrainConfig) -> tuple[TrainConfig, dict[str, Any] | None]:
    """With --resume: the run's saved settings (only device and workers from now) and its checkpoint."""
    if config.resume is None:
        return config, None
    resume_path = Path(config.resume)
    if resume_path.is_dir():  # a run folder: resumed from where it stopped, not from its best epoch
        if not (resume_path / "weights" / "last.pt").is_file():
            raise ConfigError(
                f"--resume {resume_path}: a folder with no weights/last.pt; pass a run folder "
                "(runs/train/NAME) or its weights/last.pt"
            )
        resume_path = resume_path / "weights" / "last.pt"
    checkpoint = load_checkpoint(resume_path)
    saved = dict(checkpoint.get("args") or {})
    for subset in ("max_train_images", "max_val_images"):  # 0 meant every image before it was refused
        if saved.get(subset) == 0:
            saved[subset] = None
    if resume_path.resolve().parent.name != "weights":
        # The run folder is the checkpoint's grandparent: for a copy elsewhere that is any folder,
        # which would get args.json, metrics.csv, plots and weights/ written into it.
        raise ConfigError(
            f"--resume {resume_path}: not in a run's weights/ folder (runs/train/NAME/weights/last.pt), "
            f"so there is no run to continue; train a new run from it with --weights {resume_path}"
        )
    run_dir = resume_path.resolve().parent.parent
    _refuse_an_earlier_checkpoint(resume_path, run_dir, int(checkpoint["epoch"]))
    resumed = TrainConfig.from_json(
        # absolute: from_json reads relative paths as relative to the run folder
        {
            **saved,
            "device": config.device,
            "workers": config.workers,
            "log": config.log,  # where to log is not a training setting: a resumed run may change it
            "resume": str(resume_path.resolve()),
        },
        relative_to=run_dir,
    )
    if not Path(resumed.data).is_dir():  # run folder moved: fall back to the --data given now
        resumed = replace(resumed, data=Path(config.data))
    return resumed, checkpoint


def _refuse_an_earlier_checkpoint(resume_path: Path, run_dir: Path, epoch: int) -> None:
    """best.pt (or a copy of an older last.pt) would rewind the run: retrain the epochs after it and
    overwrite last.pt, metrics.csv and the logs of the run that went further."""
    try:
        lines = (run_dir / "metrics.csv").read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return  # no readable metrics.csv: nothing says the run went further
    reached = sum(1 for line in lines[1:] if line.strip())
    if reached > epoch:
        raise ConfigError(
            f"--resume {resume_path}: saved after epoch {epoch}, but this run reached epoch {reached} "
            f"(metrics.csv); resume {run_dir / 'weights' / 'last.pt'}, or train a new run from this "
            f"checkpoint with --weights {resume_path}"
        )


def _run(
    config: TrainConfig,
    device: torch.device,
    ctx: dist_utils.DistContext,
    checkpoint: dict[str, Any] | None,
    reporter: Reporter,
    received: dict[str, bool] | None = None,
) -> TrainResult:
    """Set up, then train epoch by epoch (validate, checkpoint, maybe stop early), then plot.

    The trackers (TensorBoard, MLflow) hear of the run at its start, after every step (in
    `train_one_epoch`), after every epoch and at its end; rank 0 alone has any."""
    started = time.perf_counter()
    run = setup(config, device, ctx, checkpoint, reporter)
    try:
        return _train(run, checkpoint, received, started)
    finally:
        if run.lock is not None:
            run.lock.close()  # the run folder is free for a --resume


def _train(
    run: Run, checkpoint: dict[str, Any] | None, received: dict[str, bool] | None, started: float
) -> TrainResult:
    config = run.config
    state = restore_state(run, checkpoint)
    try:
        run.trackers = open_trackers(
            config.log,
            run.run_dir,
            config.project,
            is_main=run.ctx.is_main,
            resuming=checkpoint is not None,
            steps_done=state.epoch * run.steps_per_epoch + state.step_in_epoch,
            notes=run.notes,
            warn=run.reporter.log,
        )
    except ConfigError:  # --log's tracker could not start (e.g. a store that is not a database)
        if checkpoint is None and run.ctx.is_main:  # a new run folder that never trained: not a run
            shutil.rmtree(run.run_dir, ignore_errors=True)
        raise
    # An early-stopped run stays stopped: resuming it must not train (and log) one more epoch.
    stopped_early = bool(config.patience) and state.bad_validations >= config.patience
    if stopped_early:
        run.notes.append(f"the run stopped early after epoch {state.epoch} (--patience): nothing to resume")
    elif checkpoint is not None and state.epoch >= config.epochs:  # else the summary reads as if it trained
        run.notes.append(
            f"the run had finished its {config.epochs} epoch(s): nothing to resume (to train on, start a "
            f"new run from it: --weights {run.last} --epochs N)"
        )
    status = "failed"
    artefacts: list[Path] = []  # for MLflow, once the run finished
    try:
        run.trackers.start(_tracked_args(run))
        with save_when_stopped(run, state, received):
            deadline = started + config.max_minutes * 60 if config.max_minutes else None
            while state.epoch < config.epochs and not stopped_early and not _out_of_time(run, state, started):
                if state.pending_row is None:  # else: trained before a stop while validating
                    state.pending_row = train_one_epoch(run, state, deadline, received)
                metrics = validate_if_due(run, state.epoch)
                stopped_early = _end_epoch(run, state, metrics)
                run.trackers.epoch(state.history[-1])
                raise_if_stopped(received)  # one dropped while validating: stop now, not a step later
        if run.ctx.is_main:
            from officescore.train.plots import write_plots

            plots = write_plots(run.run_dir, state.history)
            artefacts = [run.best, *plots, run.run_dir / "metrics.csv", run.run_dir / ARGS_FILE]
        status = "finished"
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM (Terminated): last.pt is saved by now
        status = "interrupted"
        raise
    finally:
        run.trackers.end(artefacts, status)
    dist_utils.barrier(run.ctx)
    return TrainResult(
        run_dir=run.run_dir,
        epochs_completed=state.epoch,
        best_metric=state.best_metric,
        best_epoch=state.best_epoch,
        last_checkpoint=run.last,
        best_checkpoint=run.best if run.best.exists() else None,
        history=state.history,
        stopped_early=stopped_early,
        seconds=time.perf_counter() - started,
        weights_sha256=weights_digest(run.model),
        world_size=run.ctx.world_size,
        notes=run.notes,
    )


def _end_epoch(run: Run, state: State, metrics: dict[str, Any] | None) -> bool:
    """Record the epoch, track the best mask mAP, write checkpoints; True when it is time to stop early."""
    config = run.config
    row = state.pending_row
    assert row is not None
    stop = False
    if metrics:  # {}: an empty val split validated nothing, so patience has nothing to count
        row.update(metrics)
        improved = metrics.get("segm_map") is not None and (
            state.best_metric is None or metrics["segm_map"] > state.best_metric
        )
        if improved:
            state.best_metric, state.best_epoch, state.bad_validations = (
                metrics["segm_map"],
                state.epoch + 1,
                0,
            )
        else:
            state.bad_validations += 1
        state.best_unsaved = improved
        stop = bool(config.patience) and state.bad_validations >= config.patience
    state.epoch += 1
    state.step_in_epoch = 0
    state.epoch_sums = None  # the row holds them now
    state.history.append(row)
    state.pending_row = None
    write_checkpoints(run, state)
    if stop:
        run.notes.append(
            f"early stop after epoch {state.epoch}: no mask mAP gain in {config.patience} validations"
        )
    return stop


def _tracked_args(run: Run) -> dict[str, Any]:
    """args.json as TensorBoard and MLflow show it: paths whole (args.json keeps them relative to the
    run folder, which read as data = ../../../data/dataset there) and the device that trains."""
    args = whole_paths(run.args, run.run_dir)
    if args.get("device") == "auto":
        args["device"] = f"auto ({run.device})"
    return args


def _out_of_time(run: Run, state: State, started: float) -> bool:
    """`max_minutes` spent: no new epoch starts (the running one ended at its first step past it)."""
    budget = run.config.max_minutes
    if budget is None or state.epoch == 0 or time.perf_counter() - started < budget * 60:
        return False
    run.notes.append(f"time budget of {budget:g} min spent after epoch {state.epoch}")
    return True
