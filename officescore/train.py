"""Training loop for Mask R-CNN: one process, or data-parallel under `torchrun` (DDP).

A run lives in `runs/train/NAME/` (never overwritten: train, train2, ...):
  args.json     the fully resolved configuration (paths relative to the run folder)
  metrics.csv   one row per epoch: loss parts, lr, images/s, val box and mask AP
  weights/      last.pt after every epoch (atomic), best.pt when val mask mAP@[.5:.95] improves
  *.png         losses, mAP and learning-rate curves

Schedule: SGD (momentum 0.9) or AdamW, linear warm-up then cosine decay, stepped per iteration.
The default learning rate is scaled linearly with the global batch (batch size x processes) from
torchvision's detection reference: SGD 0.02 and AdamW 1e-3 at a global batch of 16.

Reproducibility: every epoch reseeds Python, NumPy and torch from (seed, epoch, rank); the data order
is a permutation seeded by (seed, epoch); each training sample's augmentation is seeded by (seed,
epoch, index) alone and leaves the process's RNGs as it found them (`SeededItems`). So the model's
random stream (proposal sampling) never depends on data loading, results do not depend on --workers,
and `--resume` from `last.pt` continues exactly as an uninterrupted run would (bitwise on CPU).
Ctrl-C or SIGTERM (what job schedulers send) saves `last.pt` mid-epoch with the position in the
epoch and the RNG states; resuming skips the batches already seen. Stopped while validating, it saves
the trained epoch (and its row of losses), so resuming only validates it.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import random
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from officescore import __version__
from officescore import distributed as dist_utils
from officescore.config import DEFAULT_DATASET_DIR, DEFAULT_RUNS_DIR
from officescore.devices import resolve_device
from officescore.errors import ConfigError, DataError, ModelError
from officescore.files import atomic_write_bytes, atomic_write_json, sha256_bytes
from officescore.model import ARCHS, DEFAULT_ARCH, build_model, load_checkpoint, save_checkpoint
from officescore.progress import SILENT, Reporter
from officescore.runs import check_run_name, next_run_dir

OPTIMIZERS = ("sgd", "adamw")
BASE_LR = {"sgd": 0.02, "adamw": 1e-3}  # at BASE_BATCH images per step (torchvision reference)
BASE_BATCH = 16
WEIGHT_DECAY = {"sgd": 1e-4, "adamw": 0.05}
LOSS_KEYS = ("loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg")
METRIC_KEYS = ("segm_map", "segm_ap50", "segm_ap75", "bbox_map", "bbox_ap50", "bbox_ap75")
CSV_COLUMNS = ("epoch", "loss", *LOSS_KEYS, "lr", "img_per_s", "seconds", *METRIC_KEYS)


@dataclass
class TrainConfig:
    """Everything a run needs; `args.json` and every checkpoint hold it (see `to_json`)."""

    data: Path = DEFAULT_DATASET_DIR
    arch: str = DEFAULT_ARCH
    weights: str = "coco"
    epochs: int = 20
    batch_size: int = 2  # per process
    lr: float | None = None  # None: BASE_LR[optimizer] * global batch / BASE_BATCH
    optimizer: str = "sgd"
    weight_decay: float | None = None  # None: WEIGHT_DECAY[optimizer]
    momentum: float = 0.9
    warmup_iters: int | None = None  # None: 10% of all iterations, at most 500
    min_lr_ratio: float = 0.05  # cosine ends at lr * this
    clip_grad: float = 10.0  # max gradient norm; 0 disables
    img_size: int | None = None  # longest image side fed to the model; None: model default (800/1333)
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    workers: int = 2
    device: str = "auto"
    amp: bool = False
    patience: int = 0  # validations without improvement before stopping; 0 = never stop early
    val_every: int = 1
    max_train_images: int | None = None
    max_val_images: int | None = None
    name: str | None = None
    project: Path = DEFAULT_RUNS_DIR / "train"
    resume: Path | None = None
    seed: int = 0

    def resolved_model_kwargs(self) -> dict[str, Any]:
        kwargs = dict(self.model_kwargs)
        if self.img_size is not None:  # 0 is not "the default": _check_config refuses it
            kwargs.setdefault("min_size", int(self.img_size))
            kwargs.setdefault("max_size", int(self.img_size))
        return kwargs

    def to_json(self, relative_to: Path | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Path):
                value = _relative(value, relative_to) if relative_to else str(value)
            out[f.name] = value
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any], relative_to: Path | None = None) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for key in ("data", "project", "resume"):
            if values.get(key) is not None:
                path = Path(values[key])
                values[key] = path if path.is_absolute() or relative_to is None else relative_to / path
        return cls(**values)


@dataclass
class TrainResult:
    run_dir: Path
    epochs_completed: int
    best_metric: float | None
    best_epoch: int | None
    last_checkpoint: Path
    best_checkpoint: Path | None
    history: list[dict[str, Any]]
    stopped_early: bool
    seconds: float
    weights_sha256: str
    world_size: int = 1
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("run_dir", "last_checkpoint", "best_checkpoint"):
            out[key] = str(out[key]) if out[key] is not None else None
        return out


# --------------------------------------------------------------------------- small helpers


def _relative(path: Path, start: Path) -> str:
    try:
        return os.path.relpath(Path(path).resolve(), Path(start).resolve())
    except ValueError:  # another drive on Windows
        return str(Path(path).resolve())


def default_lr(optimizer: str, global_batch: int) -> float:
    return BASE_LR[optimizer] * global_batch / BASE_BATCH


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    return (seed * 1_000_003 + epoch * 1_009 + rank) % 2**63


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch RNG states as tensors and plain values (weights_only loadable)."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": [py_version, torch.tensor(py_state, dtype=torch.int64), py_gauss],
        "numpy": [np_name, torch.from_numpy(np_keys.astype(np.int64)), np_pos, np_has_gauss, np_gauss],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, py_state, gauss = state["python"]
    random.setstate((version, tuple(int(x) for x in py_state.tolist()), gauss))
    name, keys, pos, has_gauss, np_gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, np_gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _worker_init(worker_id: int) -> None:
    # torch already seeds each worker from the loader's generator; NumPy and Python follow it.
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


class SeededItems(Dataset):
    """A dataset whose item `i` is drawn with torch, NumPy and Python RNGs seeded by (seed, i).

    Augmentation then depends on neither the worker that loads an item nor on what was loaded
    before it (the reason --workers N used to break exact resume: a resumed epoch restarts each
    worker's random stream). The RNG states are restored afterwards, so with --workers 0 data
    loading does not shift the main process's stream either.
    """

    def __init__(self, dataset: Any, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        saved = torch.get_rng_state(), random.getstate(), np.random.get_state()
        item_seed = (self.seed * 1_000_003 + index) % 2**63
        torch.default_generator.manual_seed(item_seed)  # CPU only: CUDA streams stay untouched
        random.seed(item_seed)
        np.random.seed(item_seed % 2**32)
        try:
            return self.dataset[index]
        finally:
            torch.set_rng_state(saved[0])
            random.setstate(saved[1])
            np.random.set_state(saved[2])


class Terminated(KeyboardInterrupt):
    """SIGTERM during training (a job scheduler's stop): handled like Ctrl-C, last.pt saved first."""


@contextmanager
def _sigterm_as_interrupt() -> Iterator[dict[str, bool]]:
    """While training, SIGTERM raises `Terminated` in the main thread; the old handler comes back after.

    The returned flag stays set once SIGTERM arrived, so a DataLoader error caused by the same signal
    reaching the worker processes first is still treated as an interruption.
    """
    received = {"sigterm": False}
    if threading.current_thread() is not threading.main_thread():
        yield received  # signal handlers can only be set from the main thread
        return

    def handler(signum: int, frame: Any) -> None:
        received["sigterm"] = True
        raise Terminated(f"received signal {signum} (SIGTERM)")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous)


class EpochSampler(Sampler[int]):
    """This rank's indices for one epoch: a permutation seeded by (seed, epoch), strided by rank.

    Padded like DistributedSampler so every rank runs the same number of steps; `start` skips the
    samples a rank already trained on before an interruption.
    """

    def __init__(self, pool: Sequence[int], seed: int, epoch: int, rank: int, world: int, start: int = 0):
        generator = torch.Generator().manual_seed(_epoch_seed(seed, epoch))
        order = [pool[i] for i in torch.randperm(len(pool), generator=generator).tolist()]
        per_rank = math.ceil(len(order) / world)
        order += order[: per_rank * world - len(order)]
        self.indices = order[rank::world][start:]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warm-up from 0.001 to 1 over `warmup` steps, then cosine down to `min_ratio`."""
    if step < warmup:
        alpha = step / max(1, warmup)
        return 0.001 * (1 - alpha) + alpha
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def weights_digest(model: torch.nn.Module) -> str:
    """sha256 over every tensor of the state dict: equal digests = bitwise-equal weights."""
    buffer = io.BytesIO()
    for key, value in sorted(model.state_dict().items()):
        buffer.write(key.encode())
        buffer.write(value.detach().cpu().contiguous().numpy().tobytes())
    return sha256_bytes(buffer.getvalue())


def _cpu_bf16_helps() -> bool:
    # bf16 autocast is only faster on CPUs with native bf16 (AVX512-BF16 / AMX); slower elsewhere.
    probe = getattr(torch.backends.cpu, "get_cpu_capability", lambda: "")()
    return probe in ("AVX512_BF16", "AMX") or bool(
        getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
        or getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
    )


# --------------------------------------------------------------------------- the run


@dataclass
class _State:
    """Where training stands; what last.pt records. Saved as is whenever the run stops."""

    epoch: int = 0  # epochs completed
    step_in_epoch: int = 0  # batches of the unfinished epoch already trained (Ctrl-C resume)
    best_metric: float | None = None
    best_epoch: int | None = None
    bad_validations: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    pending_row: dict[str, Any] | None = None  # an epoch trained but not yet validated
    resume_rng: dict[str, Any] | None = None  # RNG states to continue an interrupted epoch with
    best_unsaved: bool = False  # this epoch improved on the best, best.pt not yet rewritten


@dataclass
class _Run:
    """What `_setup` builds once and every later step of a run reads."""

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


def _check_config(config: TrainConfig) -> None:
    if config.name is not None:
        check_run_name(config.name)
    if config.arch not in ARCHS:
        raise ConfigError(f"--arch {config.arch!r}: choose one of {', '.join(ARCHS)}")
    if config.optimizer not in OPTIMIZERS:
        raise ConfigError(f"--optimizer {config.optimizer!r}: choose sgd or adamw")
    for name in ("epochs", "batch_size", "val_every"):
        if getattr(config, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} {getattr(config, name)}: must be at least 1")
    if config.lr is not None and not config.lr > 0:
        raise ConfigError(f"--lr {config.lr:g}: must be positive")
    if config.img_size is not None and config.img_size < 1:
        raise ConfigError(f"--img-size {config.img_size}: must be a positive number of pixels, e.g. 640")
    for name in ("workers", "patience"):
        if getattr(config, name) < 0:
            raise ConfigError(f"--{name} {getattr(config, name)}: must not be negative")


def _make_optimizer(config: TrainConfig, model: torch.nn.Module, lr: float) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    decay = WEIGHT_DECAY[config.optimizer] if config.weight_decay is None else config.weight_decay
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=config.momentum, weight_decay=decay)
    return torch.optim.AdamW(params, lr=lr, weight_decay=decay)


def train(config: TrainConfig, reporter: Reporter = SILENT) -> TrainResult:
    """Train (or resume) a run; returns where it went and what it reached."""
    config, checkpoint = _resolve_resume(config)
    _check_config(config)
    device = resolve_device(config.device)
    ctx = dist_utils.init(device)
    try:
        with _sigterm_as_interrupt() as received:
            return _run(config, device, ctx, checkpoint, reporter, received)
    finally:
        dist_utils.shutdown()


def _resolve_resume(config: TrainConfig) -> tuple[TrainConfig, dict[str, Any] | None]:
    """With --resume: the run's saved settings (only device and workers from now) and its checkpoint."""
    if config.resume is None:
        return config, None
    resume_path = Path(config.resume)
    checkpoint = load_checkpoint(resume_path)
    saved = dict(checkpoint.get("args") or {})
    run_dir = resume_path.resolve().parent.parent
    resumed = TrainConfig.from_json(
        # absolute: from_json reads relative paths as relative to the run folder
        {**saved, "device": config.device, "workers": config.workers, "resume": str(resume_path.resolve())},
        relative_to=run_dir,
    )
    if not Path(resumed.data).is_dir():  # run folder moved: fall back to the --data given now
        resumed = replace(resumed, data=Path(config.data))
    return resumed, checkpoint


def _run(
    config: TrainConfig,
    device: torch.device,
    ctx: dist_utils.DistContext,
    checkpoint: dict[str, Any] | None,
    reporter: Reporter,
    received: dict[str, bool] | None = None,
) -> TrainResult:
    """Set up, then train epoch by epoch (validate, checkpoint, maybe stop early), then plot."""
    started = time.perf_counter()
    run = _setup(config, device, ctx, checkpoint, reporter)
    state = _restore_state(run, checkpoint)
    stopped_early = False
    with _save_when_stopped(run, state, received):
        while state.epoch < config.epochs and not stopped_early:
            if state.pending_row is None:  # else: trained before a stop while validating
                state.pending_row = train_one_epoch(run, state)
            metrics = _validate_if_due(run, state.epoch)
            stopped_early = _end_epoch(run, state, metrics)
    if run.ctx.is_main:
        from officescore.train_plots import write_plots

        write_plots(run.run_dir, state.history)
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


# --------------------------------------------------------------------------- setup


def _setup(
    config: TrainConfig,
    device: torch.device,
    ctx: dist_utils.DistContext,
    checkpoint: dict[str, Any] | None,
    reporter: Reporter,
) -> _Run:
    """Data, run folder, model, optimiser, schedule and precision; writes args.json."""
    if not ctx.is_main:
        reporter = SILENT  # rank 0 alone reports
    if device.type == "cuda" and ctx.enabled:
        device = torch.device("cuda", ctx.local_rank)
    train_set, val_set = _load_data(config)
    classes = list(train_set.classes)
    notes: list[str] = []
    run_dir = _run_folder(config, ctx, resuming=checkpoint is not None)
    model_kwargs = config.resolved_model_kwargs()
    model = _build_model(config, classes, model_kwargs, checkpoint, notes).to(device)

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
    if ctx.is_main:
        atomic_write_json(run_dir / "args.json", {"officescore_version": __version__, **args})

    net: torch.nn.Module = model
    if ctx.enabled:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    return _Run(
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
    model = build_model(config.arch, classes, weights=weights, **model_kwargs)
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
    use_cpu_bf16 = config.amp and device.type == "cpu" and _cpu_bf16_helps()
    if use_cpu_bf16:
        notes.append("--amp: bf16 autocast on this CPU (native bf16; ~1.3x faster in our measurement)")
    if config.amp and device.type == "cpu" and not use_cpu_bf16:
        notes.append("--amp: this CPU has no native bf16, where autocast is slower; training in float32")
    return use_cuda_amp, use_cpu_bf16


def _restore_state(run: _Run, checkpoint: dict[str, Any] | None) -> _State:
    """A new run starts at zero; a resumed one takes its optimiser, schedule and position from last.pt."""
    state = _State()
    if checkpoint is None:
        return state
    run.optimizer.load_state_dict(checkpoint["optimizer"])
    run.scheduler.load_state_dict(checkpoint["scheduler"])
    if checkpoint.get("scaler"):
        run.scaler.load_state_dict(checkpoint["scaler"])
    state.epoch = int(checkpoint["epoch"])
    state.step_in_epoch = int(checkpoint.get("step_in_epoch", 0))
    state.best_metric = checkpoint.get("best_metric")
    state.best_epoch = checkpoint.get("best_epoch")
    state.bad_validations = int(checkpoint.get("bad_validations", 0))
    state.history = list(checkpoint.get("metrics") or [])
    # Stopped while validating: the trained epoch's row was saved, so resuming only validates it.
    state.pending_row = checkpoint.get("pending_row")
    if state.step_in_epoch and state.pending_row is None:
        state.resume_rng = checkpoint.get("rng")  # stopped mid-epoch: continue its random stream
    return state


# --------------------------------------------------------------------------- checkpoints


def _save_checkpoint(run: _Run, state: _State, path: Path) -> None:
    """Everything needed to continue exactly from `state` (rank 0 writes; atomic)."""
    if not run.ctx.is_main:
        return
    save_checkpoint(
        path,
        model=run.model.state_dict(),
        arch=run.config.arch,
        classes=run.classes,
        model_kwargs=run.model_kwargs,
        epoch=state.epoch,
        step_in_epoch=state.step_in_epoch,
        optimizer=run.optimizer.state_dict(),
        scheduler=run.scheduler.state_dict(),
        scaler=run.scaler.state_dict(),
        metrics=state.history,
        best_metric=state.best_metric,
        best_epoch=state.best_epoch,
        bad_validations=state.bad_validations,
        rng=state.resume_rng or rng_state(),  # not yet applied: a stop right after resuming keeps it
        args=run.args,
        pending_row=state.pending_row,
    )


def _write_checkpoints(run: _Run, state: _State) -> None:
    """After an epoch: last.pt, best.pt when it improved, metrics.csv. Safe to repeat after a stop."""
    _save_checkpoint(run, state, run.last)
    if state.best_unsaved:
        _save_checkpoint(run, state, run.best)
        state.best_unsaved = False
    if run.ctx.is_main:
        write_metrics_csv(run.run_dir / "metrics.csv", state.history)


@contextmanager
def _save_when_stopped(run: _Run, state: _State, received: dict[str, bool] | None) -> Iterator[None]:
    """Ctrl-C or SIGTERM anywhere inside: save last.pt (where the run stands) first, then stop."""
    try:
        yield
    except BaseException as exc:
        # SIGTERM sent to the whole process group may kill a DataLoader worker before the
        # handler here runs: the loader then reports the dead worker instead.
        sigterm = bool(received and received["sigterm"]) or "killed by signal: Terminated" in str(exc)
        if not (isinstance(exc, KeyboardInterrupt) or sigterm):
            raise
        _write_checkpoints(run, state)
        if run.ctx.is_main:
            what = "terminated (SIGTERM)" if sigterm else "interrupted"
            if state.pending_row is not None:
                where = f"at epoch {state.epoch + 1}, while validating"
            elif state.step_in_epoch:
                where = f"at epoch {state.epoch + 1}, batch {state.step_in_epoch}"
            else:
                where = f"after epoch {state.epoch}"
            run.reporter.log(
                f"{what}: saved {run.last} {where}; continue with `officescore train --resume {run.last}`"
            )
        if sigterm and not isinstance(exc, Terminated):
            raise Terminated("received SIGTERM") from exc
        raise


# --------------------------------------------------------------------------- one epoch


def train_one_epoch(run: _Run, state: _State) -> dict[str, Any]:
    """Train epoch `state.epoch` (from `state.step_in_epoch` on); returns its metrics.csv row."""
    epoch = state.epoch
    if state.resume_rng is not None:
        set_rng_state(state.resume_rng)  # mid-epoch resume continues the interrupted random stream
        state.resume_rng = None
    else:
        seed_everything(_epoch_seed(run.config.seed, epoch, run.ctx.rank))
    row = _train_epoch(run, state, _epoch_loader(run, epoch, start=state.step_in_epoch))
    _sync_buffers(run.model, run.ctx)
    return row


def _epoch_loader(run: _Run, epoch: int, start: int) -> DataLoader:
    """This rank's batches of `epoch`, skipping the first `start` (already trained before a stop)."""
    config, ctx = run.config, run.ctx
    sampler = EpochSampler(
        run.pool, config.seed, epoch, ctx.rank, ctx.world_size, start=start * config.batch_size
    )
    return DataLoader(
        SeededItems(run.train_set, _epoch_seed(config.seed, epoch)),
        batch_size=config.batch_size,
        sampler=sampler,
        num_workers=config.workers,
        collate_fn=run.train_set.collate_fn,
        worker_init_fn=_worker_init,
        generator=torch.Generator().manual_seed(_epoch_seed(config.seed, epoch, ctx.rank)),
        pin_memory=run.device.type == "cuda",
    )


def _train_epoch(run: _Run, state: _State, loader: DataLoader) -> dict[str, Any]:
    run.net.train()
    sums = dict.fromkeys(("loss", *LOSS_KEYS), 0.0)
    steps = images = 0
    start = time.perf_counter()
    epoch = state.epoch
    with run.reporter.stage(f"epoch {epoch + 1}/{run.config.epochs}", total=run.steps_per_epoch) as stage:
        if state.step_in_epoch:
            stage.advance(state.step_in_epoch, status="resumed")
        for batch_images, targets in loader:
            parts = _train_step(run, state, batch_images, targets)
            state.step_in_epoch += 1
            steps += 1
            images += len(batch_images) * run.ctx.world_size
            for key in sums:
                sums[key] += parts.get(key, 0.0)
            rate = images / max(1e-9, time.perf_counter() - start)
            status = (
                f"loss {parts['loss']:.3f} mask {parts.get('loss_mask', 0):.3f} "
                f"lr {run.optimizer.param_groups[0]['lr']:.2e} {rate:.1f} img/s"
            )
            stage.advance(1, status=status)
    seconds = time.perf_counter() - start
    row: dict[str, Any] = {"epoch": epoch + 1}
    row.update({k: (v / steps if steps else None) for k, v in sums.items()})
    row.update(lr=run.optimizer.param_groups[0]["lr"], img_per_s=images / max(seconds, 1e-9), seconds=seconds)
    return row


def _train_step(run: _Run, state: _State, batch_images: Any, targets: Any) -> dict[str, float]:
    """Forward (autocast as --amp decided), loss averaged across ranks, backward, clip, step."""
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
    if run.config.clip_grad:
        run.scaler.unscale_(optimizer)
        params = [p for group in optimizer.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(params, run.config.clip_grad)
    run.scaler.step(optimizer)
    run.scaler.update()
    run.scheduler.step()
    return parts


# --------------------------------------------------------------------------- evaluate, end of epoch


def _validate_if_due(run: _Run, epoch: int) -> dict[str, Any] | None:
    """Val AP after every --val-every epochs and after the last; None when not due."""
    config = run.config
    if (epoch + 1) % config.val_every and epoch + 1 != config.epochs:
        return None
    return _validate(run.model, run.val_set, config, run.device, run.ctx, run.reporter, epoch + 1)


def _end_epoch(run: _Run, state: _State, metrics: dict[str, Any] | None) -> bool:
    """Record the epoch, track the best mask mAP, write checkpoints; True when it is time to stop early."""
    config = run.config
    row = state.pending_row
    assert row is not None
    stop = False
    if metrics is not None:
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
    state.history.append(row)
    state.pending_row = None
    _write_checkpoints(run, state)
    if stop:
        run.notes.append(
            f"early stop after epoch {state.epoch}: no mask mAP gain in {config.patience} validations"
        )
    return stop


def _sync_buffers(model: torch.nn.Module, ctx: dist_utils.DistContext) -> None:
    """Average BatchNorm running statistics across ranks so every rank holds the same model."""
    if not ctx.enabled:
        return
    import torch.distributed as dist

    for name, buffer in model.named_buffers():
        if buffer.is_floating_point() and "running" in name:
            dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
            buffer /= ctx.world_size


def _validate(
    model: torch.nn.Module,
    val_set: Any,
    config: TrainConfig,
    device: torch.device,
    ctx: dist_utils.DistContext,
    reporter: Reporter,
    epoch: int,
) -> dict[str, Any]:
    """Mask and box AP on the val split: each rank predicts its shard, rank 0 evaluates."""
    from officescore.evaluate import evaluate_coco, predict_coco

    if len(val_set) == 0:
        return {}
    indices = list(range(len(val_set)))
    if config.max_val_images:
        indices = indices[: config.max_val_images]
    mine = dist_utils.shard(indices, ctx)
    metrics: dict[str, Any] = {}
    with reporter.stage(f"validate epoch {epoch}", total=len(indices)) as stage:
        with torch.inference_mode():
            predictions = predict_coco(
                model, val_set, device, batch_size=config.batch_size, indices=mine, reporter=SILENT
            )
        model.train()
        gathered = dist_utils.gather_objects(ctx, predictions)
        if ctx.is_main:
            gt: Any = val_set.annotation_file
            if config.max_val_images and len(indices) < len(val_set):
                gt = _subset_gt(val_set, indices)
            document = evaluate_coco(gt, [p for part in gathered for p in part])
            for kind in ("segm", "bbox"):
                for stat in ("map", "ap50", "ap75"):
                    metrics[f"{kind}_{stat}"] = (document.get(kind) or {}).get(stat)
            status = f"mask mAP {_fmt(metrics['segm_map'])} AP50 {_fmt(metrics['segm_ap50'])}"
            stage.advance(len(indices), status=status)
    return dist_utils.broadcast_object(ctx, metrics)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _subset_gt(val_set: Any, indices: Sequence[int]) -> dict[str, Any]:
    """The val ground truth restricted to the images validated (so unseen images are not misses)."""
    data = json.loads(Path(val_set.annotation_file).read_text(encoding="utf-8"))
    ids = {int(val_set.image_ids[i]) for i in indices}
    data["images"] = [img for img in data["images"] if img["id"] in ids]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in ids]
    return data


def write_metrics_csv(path: Path, history: Sequence[dict[str, Any]]) -> None:
    """metrics.csv, rewritten whole (atomically) each epoch from the checkpointed history."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(CSV_COLUMNS), extrasaction="ignore")
    writer.writeheader()
    for row in history:
        writer.writerow({k: ("" if row.get(k) is None else _csv_value(row[k])) for k in CSV_COLUMNS})
    atomic_write_bytes(path, buffer.getvalue().encode("utf-8"))


def _csv_value(value: Any) -> Any:
    return f"{value:.6g}" if isinstance(value, float) else value
