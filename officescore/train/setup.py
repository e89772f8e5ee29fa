"""Everything a run builds once: data, run folder, model, optimiser + schedule, precision; `args.json`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import torch

from officescore import __version__
from officescore import distributed as dist_utils
from officescore.errors import DataError, ModelError
from officescore.files import atomic_write_json
from officescore.model import build_model, input_size, started_pretrained
from officescore.progress import SILENT, Reporter
from officescore.runs import ARGS_FILE, lock_run_dir, next_run_dir
from officescore.train.config import WEIGHT_DECAY, TrainConfig, default_lr
from officescore.train.seeding import seed_everything
from officescore.train.tracking import Trackers

# Training photos larger than this many times the model's input are decoded at that size: the
# scale jitter's zoom-in (up to 1.4x) still resizes down, so the model sees what it saw before.
TRAIN_HEADROOM = 2


def cpu_bf16_helps() -> bool:
    # bf16 autocast is only faster on CPUs with native bf16 (AVX512-BF16 / AMX); slower elsewhere.
    probe = getattr(torch.backends.cpu, "get_cpu_capability", lambda: "")()
    return probe in ("AVX512_BF16", "AMX") or bool(
        getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
        or getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
    )


@dataclass
class Run:
    """What `setup` builds once and every later step of a run reads."""

    config: TrainConfig
    device: torch.device
    ctx: dist_utils.DistContext
    reporter: Reporter
    run_dir: Path
    classes: list[str]
    model_kwargs: dict[str, Any]
    model: torch.nn.Module  # the plain model: checkpoints, validation
    net: torch.nn.Module  # what trains: the model, or DDP around it
    train_set: Any
    val_set: Any
    pool: list[int]  # indices of the training images used
    steps_per_epoch: int
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    use_cuda_amp: bool
    use_cpu_bf16: bool
    args: dict[str, Any]  # the resolved configuration (args.json, and `args` in every checkpoint)
    notes: list[str]
    trackers: Trackers = field(default_factory=Trackers)  # TensorBoard / MLflow; the loop opens them
    lock: IO[str] | None = None  # the run folder's lock (rank 0); the loop closes it at the end

    @property
    def last(self) -> Path:
        return self.run_dir / "weights" / "last.pt"

    @property
    def best(self) -> Path:
        return self.run_dir / "weights" / "best.pt"


def _load_data(config: TrainConfig) -> tuple[Any, Any]:
    from officescore.dataset import OfficeDataset, build_transforms

    data = Path(config.data)  # OfficeDataset explains a missing or broken folder itself
    train_set = OfficeDataset(data, "train", build_transforms(train=True))
    val_set = OfficeDataset(data, "val", build_transforms(train=False))
    if len(train_set) == 0:
        raise DataError(f"--data {data}: the train split has no images")
    return train_set, val_set


def _make_optimizer(config: TrainConfig, model: torch.nn.Module, lr: float) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    decay = WEIGHT_DECAY[config.optimizer] if config.weight_decay is None else config.weight_decay
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=config.momentum, weight_decay=decay)
    return torch.optim.AdamW(params, lr=lr, weight_decay=decay)


def setup(
    config: TrainConfig,
    device: torch.device,
    ctx: dist_utils.DistContext,
    checkpoint: dict[str, Any] | None,
    reporter: Reporter,
) -> Run:
    """Data, run folder, model, optimiser, schedule and precision; writes args.json."""
    if not ctx.is_main:
        reporter = SILENT  # rank 0 alone reports
    if device.type == "cuda" and ctx.enabled:
        device = torch.device("cuda", ctx.local_rank)
    train_set, val_set = _load_data(config)
    classes = list(train_set.classes)
    notes: list[str] = []
    if len(val_set) == 0:  # training goes on, but nothing can pick a best.pt: say where the model is
        notes.append(
            f"--data {config.data}: the val split has no images, so nothing is validated and no "
            "best.pt is written; the model is weights/last.pt"
        )
    model_kwargs = config.resolved_model_kwargs()
    if train_set.labelled_attributes:  # the attribute head; model_kwargs {"attributes": {}} turns it off
        model_kwargs.setdefault("attributes", train_set.attributes.to_dict())
    if model_kwargs.get("attributes"):  # else nothing said whether `export` will refuse the model
        names = [f"{c}.{a}" for c, table in model_kwargs["attributes"].items() for a in table]
        notes.append(
            f"attribute head: {', '.join(names)}, from {train_set.labelled_attributes} labelled value(s) "
            "(--no-attributes: none)"
        )
    model = _build_model(config, classes, model_kwargs, checkpoint, notes).to(device)
    size = input_size(model)
    if size is not None:  # a phone photo jittered at 12 MP only to be resized: at twice the model's size
        train_set = train_set.decoded_for(
            TRAIN_HEADROOM * size[0], TRAIN_HEADROOM * size[1], reduce_above=1.0
        )
    # only now: --weights that cannot be loaded must not leave an empty run folder behind
    run_dir = _run_folder(config, ctx, resuming=checkpoint is not None)

    pool = list(range(len(train_set)))[: config.max_train_images or None]
    steps_per_epoch = math.ceil(math.ceil(len(pool) / ctx.world_size) / config.batch_size)
    optimizer, scheduler, lr, warmup = _optimizer_and_schedule(config, model, ctx, steps_per_epoch)
    use_cuda_amp, use_cpu_bf16 = _precision(config, device, notes)
    scaler = torch.amp.GradScaler("cuda", enabled=use_cuda_amp)

    args = config.to_json(relative_to=run_dir)
    args.update(
        lr=lr, weight_decay=optimizer.param_groups[0]["weight_decay"], warmup_iters=warmup, resume=None
    )
    args.update(model_kwargs=model_kwargs, classes=classes, world_size=ctx.world_size, device=config.device)
    lock = lock_run_dir(run_dir) if ctx.is_main else None  # before args.json: a second resume changes nothing
    try:
        if ctx.is_main:
            atomic_write_json(run_dir / ARGS_FILE, {"officescore_version": __version__, **args})
        net: torch.nn.Module = model
        if ctx.enabled:
            net = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None
            )
    except BaseException:
        if lock is not None:  # the loop that would release it never starts
            lock.close()
        raise
    return Run(
        config=config,
        device=device,
        ctx=ctx,
        reporter=reporter,
        run_dir=run_dir,
        classes=classes,
        model_kwargs=model_kwargs,
        model=model,
        net=net,
        train_set=train_set,
        val_set=val_set,
        pool=pool,
        steps_per_epoch=steps_per_epoch,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=scaler,
        use_cuda_amp=use_cuda_amp,
        use_cpu_bf16=use_cpu_bf16,
        args=args,
        notes=notes,
        lock=lock,
    )


def _optimizer_and_schedule(
    config: TrainConfig, model: torch.nn.Module, ctx: dist_utils.DistContext, steps_per_epoch: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR, float, int]:
    """SGD or AdamW at the peak lr (default: scaled with the global batch), warm-up then cosine."""
    global_batch = config.batch_size * ctx.world_size
    lr = config.lr if config.lr is not None else default_lr(config.optimizer, global_batch)
    total_steps = steps_per_epoch * config.epochs
    warmup = config.warmup_iters if config.warmup_iters is not None else min(500, total_steps // 10)
    optimizer = _make_optimizer(config, model, lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, warmup, total_steps, config.min_lr_ratio)
    )
    return optimizer, scheduler, lr, warmup


def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warm-up from 0.001 to 1 over `warmup` steps, then cosine down to `min_ratio`."""
    if step < warmup:
        alpha = step / max(1, warmup)
        return 0.001 * (1 - alpha) + alpha
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def _run_folder(config: TrainConfig, ctx: dist_utils.DistContext, resuming: bool) -> Path:
    """A resumed run continues in its folder; a new one gets the next free name. Rank 0 picks it."""
    if resuming:
        run_dir = Path(config.resume).resolve().parent.parent  # type: ignore[arg-type]
    else:
        run_dir = next_run_dir(config.project, config.name or "train") if ctx.is_main else Path()
    run_dir = Path(dist_utils.broadcast_object(ctx, str(run_dir)))
    if ctx.is_main:
        (run_dir / "weights").mkdir(parents=True, exist_ok=True)
    return run_dir


def _build_model(
    config: TrainConfig,
    classes: list[str],
    model_kwargs: dict[str, Any],
    checkpoint: dict[str, Any] | None,
    notes: list[str],
) -> torch.nn.Module:
    """The model with its initial weights (--weights), or the resumed checkpoint's weights."""
    seed_everything(config.seed)  # same seed on every rank: initial weights agree before DDP's broadcast
    weights = "none" if checkpoint is not None else config.weights
    # A resumed run keeps the layout its start gave it: a pretrained one freezes BatchNorm and the
    # first layers, and its optimizer state holds only the trainable parameters.
    pretrained = checkpoint is not None and started_pretrained(checkpoint)
    model = build_model(config.arch, classes, weights=weights, pretrained_layout=pretrained, **model_kwargs)
    if checkpoint is None:
        notes.append(f"weights: {model.weights_note}")  # type: ignore[attr-defined]
        return model
    if list(checkpoint["classes"]) != classes:
        raise ModelError(
            f"{config.resume}: trained on classes {checkpoint['classes']}, but {config.data} has {classes}"
        )
    model.load_state_dict(checkpoint["model"])
    notes.append(f"resumed from {config.resume} after epoch {checkpoint['epoch']}")
    return model


def _precision(config: TrainConfig, device: torch.device, notes: list[str]) -> tuple[bool, bool]:
    """--amp: (CUDA fp16 autocast, CPU bf16 autocast); bf16 only where the CPU has it natively."""
    use_cuda_amp = config.amp and device.type == "cuda"
    use_cpu_bf16 = config.amp and device.type == "cpu" and cpu_bf16_helps()
    if use_cpu_bf16:
        notes.append("--amp: bf16 autocast on this CPU (native bf16; ~1.3x faster in our measurement)")
    if config.amp and device.type == "cpu" and not use_cpu_bf16:
        notes.append("--amp: this CPU has no native bf16, where autocast is slower; training in float32")
    return use_cuda_amp, use_cpu_bf16
