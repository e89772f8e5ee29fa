"""Which reduced precisions the hardware runs natively, and what `--precision` resolves to.

bf16 autocast pays only where the CPU has bf16 instructions (AVX512-BF16 or AMX): elsewhere oneDNN
emulates it and it is slower than fp32, so `auto` never picks it there. fp16 autocast is for CUDA.
int8 (an int8 backbone, officescore.infer.accel.int8) is for x86 CPUs with AVX2 and is only ever asked
for: it needs calibration photos, and `auto` gives a photo the same result whatever else is scored.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from officescore.errors import ConfigError

PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})  # /proc/cpuinfo names (lscpu prints the same)
INT8_ENGINE = "x86"  # PyTorch's x86 quantised backend: fbgemm and oneDNN kernels, picked per layer
FAST_PROPOSALS = 300  # RPN proposals per image outside exact fp32 (torchvision's default: 1000)


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none, e.g. macOS)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def native_bf16_cpu() -> bool:
    """True when the CPU computes bf16 in hardware (AVX512-BF16 or AMX-BF16)."""
    return bool(NATIVE_BF16_FLAGS & cpu_flags())


def int8_supported() -> bool:
    """True where PyTorch's x86 int8 kernels run: x86 CPUs with AVX2 (from /proc/cpuinfo; where
    there is none, e.g. macOS, from the kernels PyTorch picked)."""
    if INT8_ENGINE not in torch.backends.quantized.supported_engines:
        return False
    flags = cpu_flags()
    if flags:
        return "avx2" in flags
    return torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")


def resolve_precision(requested: str, device: torch.device | str, kind: str = "checkpoint") -> str:
    """`auto` -> the fastest precision this device runs natively; an explicit one must be native here.

    `kind` "torchscript": an export runs as it was exported (fp32); reduced precision needs the
    checkpoint it came from.
    """
    name = str(requested).lower()
    device = torch.device(device)
    if name not in PRECISIONS:
        raise ConfigError(f"--precision {requested!r}: choose one of {', '.join(PRECISIONS)}")
    if kind == "torchscript":
        if name in ("auto", "fp32"):
            return "fp32"
        raise ConfigError(
            f"--precision {name}: a TorchScript export runs in fp32; pass the checkpoint it came from"
        )
    if name == "auto":
        if device.type == "cuda":
            return "fp16"
        if device.type == "cpu" and native_bf16_cpu():
            return "bf16"
        return "fp32"
    if name == "bf16":
        if device.type == "cpu" and not native_bf16_cpu():
            raise ConfigError(
                "--precision bf16: this CPU has no native bf16 (AVX512-BF16 or AMX), where it is slower "
                "than fp32; use --precision auto or fp32"
            )
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ConfigError("--precision bf16: this GPU has no bf16; use --precision fp16 or auto")
        if device.type not in ("cpu", "cuda"):
            raise ConfigError(f"--precision bf16: not available on {device.type}; use --precision fp32")
    if name == "fp16" and device.type != "cuda":
        raise ConfigError(
            f"--precision fp16: fp16 autocast is for CUDA GPUs, not {device.type}; use --precision auto"
        )
    if name == "int8":
        if device.type != "cpu":
            raise ConfigError(f"--precision int8: the int8 backbone is for CPUs, not {device.type}; use auto")
        if not int8_supported():
            raise ConfigError(
                "--precision int8: PyTorch's int8 kernels need an x86 CPU with AVX2, which this one "
                "is not (it lacks AVX2); use --precision auto"
            )
    return name


def proposals_for(requested: str) -> int | None:
    """RPN proposals per image for a requested precision: the model's own for exact `fp32`, else
    `FAST_PROPOSALS` (their mAP cost is measured in bench/score.py)."""
    return None if str(requested).lower() == "fp32" else FAST_PROPOSALS
