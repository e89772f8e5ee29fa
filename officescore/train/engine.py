"""One epoch of training: the epoch's loader, the steps (autocast, loss averaged across ranks,
clip, step) and the BatchNorm statistics synced across ranks."""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from torch.utils.data import DataLoader

from officescore import distributed as dist_utils
from officescore.errors import ModelError
from officescore.train.checkpoints import State, raise_if_stopped, signals_held
from officescore.train.config import LOSS_KEYS, OPTIONAL_LOSS_KEYS
from officescore.train.seeding import (
    EpochSampler,
    SeededItems,
    epoch_seed,
    rng_state,
    seed_everything,
    set_rng_state,
    worker_init,
)
from officescore.train.setup import Run
from officescore.train.tracking import step_values


def train_one_epoch(
    run: Run, state: State, deadline: float | None = None, received: dict[str, bool] | None = None
) -> dict[str, Any]:
    """Train epoch `state.epoch` (from `state.step_in_epoch` on); returns its metrics.csv row.

    `deadline` (a `time.perf_counter()` value): a single-process run ends the epoch at the first
    step past it (at least one step runs), so a time budget holds even when one epoch is longer.
    `received`: the stop-signal flags of `checkpoints.stop_signals_as_interrupts`, checked per step."""
    epoch = state.epoch
    if state.resume_rng is not None:
        set_rng_state(state.resume_rng)  # mid-epoch resume continues the interrupted random stream
    else:
        seed_everything(epoch_seed(run.config.seed, epoch, run.ctx.rank))
    state.step_buffers = _buffers(run.model)  # what a stop inside the first step saves
    row = _train_epoch(run, state, _epoch_loader(run, epoch, start=state.step_in_epoch), deadline, received)
    state.resume_rng = state.step_buffers = None  # the epoch is whole: the next one is seeded afresh
    _sync_buffers(run.model, run.ctx)
    return row


def _epoch_loader(run: Run, epoch: int, start: int) -> DataLoader:
    """This rank's batches of `epoch`, skipping the first `start` (already trained before a stop)."""
    config, ctx = run.config, run.ctx
    sampler = EpochSampler(
        run.pool, config.seed, epoch, ctx.rank, ctx.world_size, start=start * config.batch_size
    )
    return DataLoader(
        SeededItems(run.train_set, epoch_seed(config.seed, epoch)),
        batch_size=config.batch_size,
        sampler=sampler,
        num_workers=config.workers,
        collate_fn=run.train_set.collate_fn,
        worker_init_fn=worker_init,
        generator=torch.Generator().manual_seed(epoch_seed(config.seed, epoch, ctx.rank)),
        pin_memory=run.device.type == "cuda",
    )


def _train_epoch(
    run: Run, state: State, loader: DataLoader, deadline: float | None, received: dict[str, bool] | None
) -> dict[str, Any]:
    run.net.train()
    # Resumed mid-epoch: the sums of the steps before the stop, so the row covers the whole epoch.
    carried = (state.epoch_sums if state.step_in_epoch else None) or {}
    sums = dict.fromkeys(("loss", *LOSS_KEYS), 0.0) | carried.get("sums", {})
    optional: dict[str, float] = dict(carried.get("optional", {}))  # OPTIONAL_LOSS_KEYS the model reports
    steps, images = int(carried.get("steps", 0)), int(carried.get("images", 0))
    earlier = float(carried.get("seconds", 0.0))  # what the epoch took before the stop
    start = time.perf_counter()
    epoch = state.epoch
    with run.reporter.stage(f"epoch {epoch + 1}/{run.config.epochs}", total=run.steps_per_epoch) as stage:
        if state.step_in_epoch:
            stage.advance(state.step_in_epoch, status="resumed")
        step_started = start
        for batch_images, targets in loader:
            lr = run.optimizer.param_groups[0]["lr"]  # what this step uses (the scheduler steps after)
            parts = _forward_backward(run, state, batch_images, targets)
            # The step moves weights, momentum and schedule: a Ctrl-C before it is counted would save
            # them moved with the step uncounted, and the resumed run would take it twice.
            with signals_held(received):
                _optimizer_step(run)
                steps += 1
                images += len(batch_images) * run.ctx.world_size
                now = time.perf_counter()
                for key in sums:
                    sums[key] += parts.get(key, 0.0)
                for key in OPTIONAL_LOSS_KEYS:
                    if key in parts:
                        optional[key] = optional.get(key, 0.0) + parts[key]
                state.step_in_epoch += 1  # and what a stop saves from here on: where, and the sums so far
                # ... and the RNG states and buffers the next step starts from: a Ctrl-C lands mid-step,
                # after its forward drew samples (RPN, RoIs) and updated BatchNorm's running statistics
                state.resume_rng = rng_state()
                state.step_buffers = _buffers(run.model)
                state.epoch_sums = {
                    "sums": dict(sums),
                    "optional": dict(optional),
                    "steps": steps,
                    "images": images,
                    "seconds": earlier + now - start,
                }
            if run.trackers:  # per step, loading included: a stalled loader shows as a dip
                rate_now = len(batch_images) * run.ctx.world_size / max(now - step_started, 1e-9)
                step = epoch * run.steps_per_epoch + state.step_in_epoch
                run.trackers.step(step, step_values(parts, lr, rate_now))
            step_started = now
            rate = images / max(1e-9, earlier + time.perf_counter() - start)
            status = (  # the epoch's mean so far: the finished line reads as the epoch's row in the table
                f"loss {sums['loss'] / steps:.3f} mask {sums['loss_mask'] / steps:.3f} "
                f"lr {run.optimizer.param_groups[0]['lr']:.2e} {rate:.1f} img/s"
            )
            stage.advance(1, status=status)
            raise_if_stopped(received)  # a Ctrl-C or SIGTERM whose raise Python dropped
            # Ranks of a distributed run must take the same steps, so only a single process stops here.
            if deadline is not None and run.ctx.world_size == 1 and now > deadline:
                run.notes.append(
                    f"time budget spent during epoch {epoch + 1}, after {state.step_in_epoch} "
                    f"of {run.steps_per_epoch} steps"
                )
                break
    seconds = earlier + time.perf_counter() - start
    row: dict[str, Any] = {"epoch": epoch + 1}
    row.update({k: (v / steps if steps else None) for k, v in (sums | optional).items()})
    row.update(lr=run.optimizer.param_groups[0]["lr"], img_per_s=images / max(seconds, 1e-9), seconds=seconds)
    return row


def _forward_backward(run: Run, state: State, batch_images: Any, targets: Any) -> dict[str, float]:
    """Forward (autocast as --amp decided), loss averaged across ranks, backward."""
    device, optimizer = run.device, run.optimizer
    batch_images = [img.to(device, non_blocking=True) for img in batch_images]
    targets = [{k: (v.to(device) if torch.is_tensor(v) else v) for k, v in t.items()} for t in targets]
    autocast = (
        torch.autocast("cuda", dtype=torch.float16)
        if run.use_cuda_amp
        else torch.autocast("cpu", dtype=torch.bfloat16, enabled=run.use_cpu_bf16)
    )
    with autocast:
        loss_dict = run.net(batch_images, targets)
    loss = sum(loss_dict.values())
    parts = {k: float(v.detach()) for k, v in loss_dict.items()}
    parts["loss"] = float(loss.detach())
    parts = dist_utils.all_reduce_mean(run.ctx, parts)
    if not math.isfinite(parts["loss"]):
        epoch = state.epoch
        step = epoch * run.steps_per_epoch + state.step_in_epoch + 1
        peak = optimizer.param_groups[0].get("initial_lr", optimizer.param_groups[0]["lr"])
        raise ModelError(  # a tenth of the peak: during warm-up the current lr is far smaller
            f"loss became {parts['loss']} at epoch {epoch + 1}, batch {state.step_in_epoch + 1} "
            f"(step {step}); lower the learning rate (e.g. --lr {peak / 10:.2g}) or check the labels"
        )
    optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    return parts


def _optimizer_step(run: Run) -> None:
    """Clip, then step the optimiser, the loss scaler and the schedule."""
    optimizer = run.optimizer
    if run.config.clip_grad:
        run.scaler.unscale_(optimizer)
        params = [p for group in optimizer.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(params, run.config.clip_grad)
    run.scaler.step(optimizer)
    run.scaler.update()
    run.scheduler.step()


def _buffers(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Copies of the model's buffers (BatchNorm's running statistics, which a forward updates)."""
    return {name: buffer.detach().clone() for name, buffer in model.named_buffers()}


def _sync_buffers(model: torch.nn.Module, ctx: dist_utils.DistContext) -> None:
    """Average BatchNorm running statistics across ranks so every rank holds the same model."""
    if not ctx.enabled:
        return
    import torch.distributed as dist

    for name, buffer in model.named_buffers():
        if buffer.is_floating_point() and "running" in name:
            dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
            buffer /= ctx.world_size
