"""Settings of a training run: `TrainConfig` (args.json), `TrainResult`, defaults and checks."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from officescore.config import DEFAULT_DATASET_DIR, DEFAULT_RUNS_DIR, MIN_IMG_SIZE
from officescore.errors import ConfigError
from officescore.model import ARCHS, DEFAULT_ARCH
from officescore.runs import check_run_name

OPTIMIZERS = ("sgd", "adamw")
BASE_LR = {"sgd": 0.02, "adamw": 1e-3}  # at BASE_BATCH images per step (torchvision reference)
BASE_BATCH = 16
WEIGHT_DECAY = {"sgd": 1e-4, "adamw": 0.05}
LOSS_KEYS = ("loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg")
METRIC_KEYS = ("segm_map", "segm_ap50", "segm_ap75", "bbox_map", "bbox_ap50", "bbox_ap75")
# Losses only some models have (the attribute head): empty in metrics.csv for the others.
OPTIONAL_LOSS_KEYS = ("loss_attributes",)
CSV_COLUMNS = ("epoch", "loss", *LOSS_KEYS, *OPTIONAL_LOSS_KEYS, "lr", "img_per_s", "seconds", *METRIC_KEYS)
LOG_CHOICES = ("auto", "tensorboard", "mlflow", "none")  # experiment trackers (train/tracking.py)


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
    log: str = "auto"  # auto | tensorboard | mlflow | none: where scalars go besides metrics.csv
    # Time budget (label backend --train): training stops at the first step past it.
    max_minutes: float | None = None

    def resolved_model_kwargs(self) -> dict[str, Any]:
        kwargs = dict(self.model_kwargs)
        if self.img_size is not None:  # 0 is not "the default": check_config refuses it
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
                if not path.is_absolute() and relative_to is not None:  # said as runs/train, not x/../..
                    path = Path(os.path.normpath(relative_to / path))
                values[key] = path
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


def _relative(path: Path, start: Path) -> str:
    try:
        return os.path.relpath(Path(path).resolve(), Path(start).resolve())
    except ValueError:  # another drive on Windows
        return str(Path(path).resolve())


def default_lr(optimizer: str, global_batch: int) -> float:
    return BASE_LR[optimizer] * global_batch / BASE_BATCH


def check_config(config: TrainConfig) -> None:
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
    # At 32 px or less the deepest feature map (1/32 of the image) is 1x1, where training's BatchNorm
    # fails on a batch of one (an odd last batch) with an error that names no option.
    if config.img_size is not None and config.img_size < MIN_IMG_SIZE:
        raise ConfigError(f"--img-size {config.img_size}: must be at least {MIN_IMG_SIZE} pixels, e.g. 640")
    if config.log not in LOG_CHOICES:
        raise ConfigError(f"--log {config.log!r}: choose one of {', '.join(LOG_CHOICES)}")
    if config.max_minutes is not None and not config.max_minutes > 0:
        raise ConfigError(f"--train-minutes {config.max_minutes:g}: must be positive")
    for name in ("workers", "patience", "warmup_iters"):
        if (getattr(config, name) or 0) < 0:
            raise ConfigError(f"--{name.replace('_', '-')} {getattr(config, name)}: must not be negative")
    # A slice would take 0 as "every image" and -3 as "all but the last 3": neither is what was meant.
    for flag, count in (
        ("--max-train-images", config.max_train_images),
        ("max_val_images", config.max_val_images),
    ):
        if count is not None and count < 1:
            raise ConfigError(f"{flag} {count}: must be at least 1 (leave it out for every image)")
    for name in ("weight_decay", "clip_grad"):  # settings of the Python API and args.json, no flags
        if (getattr(config, name) or 0) < 0:
            raise ConfigError(f"{name} {getattr(config, name)}: must not be negative")
    if not 0 <= config.momentum < 1:
        raise ConfigError(f"momentum {config.momentum}: must be from 0 to below 1")
    if not 0 <= config.min_lr_ratio <= 1:
        raise ConfigError(f"min_lr_ratio {config.min_lr_ratio}: must be from 0 to 1")
