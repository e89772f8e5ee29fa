"""Device selection shared by train, eval and score."""

from __future__ import annotations

import torch

from officescore.errors import ConfigError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` picks CUDA, then Apple MPS, then CPU; an explicit choice must be available."""
    name = name.lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda"):
        return _cuda_device(name)
    if name == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ConfigError("--device mps: Apple MPS is not available here; use --device cpu or auto")
        return torch.device("mps")
    if name == "cpu":
        return torch.device("cpu")
    raise ConfigError(f"--device {name!r}: choose one of {', '.join(DEVICE_CHOICES)}")


def _cuda_device(name: str) -> torch.device:
    """`cuda` or `cuda:N`, checked here: a GPU index that is not there fails at the first tensor."""
    try:  # the name starts with "cuda": a device of that type, or a RuntimeError
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device {name!r}: use cuda or cuda:N (N: a GPU's index)") from None
    if not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: no CUDA GPU is visible here; use --device cpu or auto")
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        raise ConfigError(
            f"--device {name}: there is no GPU {device.index} here ({count} visible, "
            f"cuda:0 to cuda:{count - 1}; CUDA_VISIBLE_DEVICES decides which)"
        )
    return device
