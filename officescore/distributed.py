"""torch.distributed glue: one code path for a single process and for `torchrun`.

Under torchrun (WORLD_SIZE > 1) the process group is started with NCCL on CUDA and Gloo on CPU.
Rank 0 alone prints and writes; results are gathered with `gather_objects`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(device: torch.device) -> DistContext:
    """Join the process group torchrun describes in the environment; no-op for one process."""
    if not launched_by_torchrun():
        return DistContext()
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend)
    return DistContext(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
    )


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def gather_objects(ctx: DistContext, obj: T) -> list[T]:
    """Every rank's `obj`, in rank order, on every rank (just `[obj]` without distribution)."""
    if not ctx.enabled:
        return [obj]
    gathered: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_object(ctx: DistContext, obj: T) -> T:
    """Rank 0's `obj` on every rank (e.g. the run folder rank 0 chose)."""
    if not ctx.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def shard(items: Sequence[T], ctx: DistContext) -> list[T]:
    """This rank's share of `items` (strided, so shards differ by at most one)."""
    return list(items[ctx.rank :: ctx.world_size])


def all_reduce_mean(ctx: DistContext, values: dict[str, float]) -> dict[str, float]:
    """Average scalar metrics across ranks (loss parts for the progress bar and metrics.csv)."""
    if not ctx.enabled or not values:
        return values
    keys = sorted(values)
    tensor = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    tensor /= ctx.world_size
    return {k: float(v) for k, v in zip(keys, tensor.tolist(), strict=True)}
