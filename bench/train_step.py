"""Training-step speed and peak memory on this machine, as ratios against a baseline.

Two comparisons, each run in the same process family on the same synthetic batch:
  1. bf16 autocast vs float32 for a small Mask R-CNN step on the CPU (`--amp` on CPU uses bf16
     only where the CPU has native bf16; this shows whether it helps here).
  2. peak memory of one training step of the default `maskrcnn_resnet50_fpn_v2` at batch 2 and its
     default 800 px size vs the small `maskrcnn_resnet18_fpn` baseline, and the headroom against the
     24 GiB the project promises is ample (each measured in a fresh subprocess: ru_maxrss is a peak).

    .venv/bin/python bench/train_step.py
    .venv/bin/python bench/train_step.py --steps 5 --skip-memory
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from contextlib import nullcontext

import numpy as np
import torch
from benchkit import positive_int  # bench/: first on sys.path when run as a script

from officescore.model import build_model
from officescore.sample import render_scene

FAST = {
    "rpn_pre_nms_top_n_train": 300,
    "rpn_post_nms_top_n_train": 100,
    "box_batch_size_per_image": 64,
    "rpn_batch_size_per_image": 64,
}


def batch(size: int, n: int, classes: list[str]) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """n synthetic scenes as Mask R-CNN inputs (boxes on pixel edges, masks exact)."""
    images, targets = [], []
    for seed in range(n):
        scene = render_scene(seed, size)
        images.append(torch.from_numpy(np.asarray(scene.image)).permute(2, 0, 1).float() / 255)
        masks = torch.stack([torch.from_numpy(inst.mask) for inst in scene.instances])
        boxes = torch.stack(
            [
                torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)
                for ys, xs in (torch.nonzero(m, as_tuple=True) for m in masks)
            ]
        )
        labels = torch.tensor([classes.index(inst.category) + 1 for inst in scene.instances])
        targets.append({"boxes": boxes, "labels": labels, "masks": masks})
    return images, targets


def step_seconds(arch: str, size: int, n: int, steps: int, bf16: bool, **kwargs: int) -> float:
    from officescore import DEFAULT_CLASSES

    classes = list(DEFAULT_CLASSES)
    torch.manual_seed(0)
    model = build_model(arch, classes, weights="none", **kwargs)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    images, targets = batch(size, n, classes)
    timings = []
    for _ in range(steps + 1):  # the first step warms up allocators and kernels
        start = time.perf_counter()
        context = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext()
        with context:
            loss = sum(model(images, targets).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        timings.append(time.perf_counter() - start)
    return sum(timings[1:]) / steps


def peak_memory_child(arch: str, size: int) -> None:
    """Runs in a subprocess: one full training step, then print the peak RSS in bytes."""
    step_seconds(arch, size, n=2, steps=1, bf16=False, min_size=size, max_size=size)
    print(json.dumps({"peak_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))


def peak_memory(arch: str, size: int) -> int:
    command = [sys.executable, __file__, "--child", arch, str(size)]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return int(json.loads(result.stdout.strip().splitlines()[-1])["peak_bytes"])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=positive_int, default=3)
    parser.add_argument("--size", type=int, default=192, help="image size for the bf16 comparison")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--child", nargs=2, metavar=("ARCH", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        peak_memory_child(args.child[0], int(args.child[1]))
        return

    arch = "maskrcnn_resnet18_fpn"
    kwargs = {"min_size": args.size, "max_size": args.size, **FAST}
    fp32 = step_seconds(arch, args.size, 4, args.steps, bf16=False, **kwargs)
    bf16 = step_seconds(arch, args.size, 4, args.steps, bf16=True, **kwargs)
    print(
        f"{'training step (resnet18-FPN, batch 4, ' + str(args.size) + ' px)':<52} {'s/step':>8} {'ratio':>7}"
    )
    print(f"{'float32 (baseline)':<52} {fp32:>8.3f} {1.0:>7.2f}")
    print(f"{'bf16 autocast':<52} {bf16:>8.3f} {fp32 / bf16:>6.2f}x")
    if args.skip_memory:
        return
    base = peak_memory("maskrcnn_resnet18_fpn", 800)
    default = peak_memory("maskrcnn_resnet50_fpn_v2", 800)
    gib = 1024**3
    print()
    print(f"{'peak memory, one training step, batch 2, 800 px':<52} {'GiB':>8} {'ratio':>7}")
    print(f"{'maskrcnn_resnet18_fpn (baseline)':<52} {base / gib:>8.2f} {1.0:>7.2f}")
    print(f"{'maskrcnn_resnet50_fpn_v2 (default)':<52} {default / gib:>8.2f} {default / base:>6.2f}x")
    print(f"{'share of the 24 GiB machine used by the default':<52} {default / (24 * gib):>8.0%}")


if __name__ == "__main__":
    main()
