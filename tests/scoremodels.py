"""Tiny Mask R-CNN checkpoints and synthetic photos for the score, infer, export and app tests.

An untrained model is enough for plumbing; its class logits are biased so that chosen classes
come out with high scores (every other class stays near 1/K and below the usual thresholds).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from officescore import DEFAULT_CLASSES

ARCH = "maskrcnn_resnet18_fpn"
TINY_KWARGS = {
    "min_size": 128,
    "max_size": 128,
    "rpn_pre_nms_top_n_test": 100,
    "rpn_post_nms_top_n_test": 30,
    "box_detections_per_img": 20,
}


def tiny_model(classes: Sequence[str], favour: Mapping[int, float], seed: int = 0) -> torch.nn.Module:
    """A small random Mask R-CNN whose classifier prefers the labels in `favour` (label -> logit bias)."""
    from officescore.model import build_model

    torch.manual_seed(seed)
    model = build_model(ARCH, list(classes), weights="none", **TINY_KWARGS)
    cls_score = model.roi_heads.box_predictor.cls_score
    with torch.no_grad():
        cls_score.weight.mul_(0.2)  # keep a little per-proposal variation
        cls_score.bias.zero_()
        for label, bias in favour.items():
            cls_score.bias[label] = bias
    return model.eval()


def write_checkpoint(
    path: Path, favour: Mapping[str, float] | None = None, classes: Sequence[str] = DEFAULT_CLASSES
) -> Path:
    """An officescore checkpoint of a tiny model favouring the named classes (default: desk)."""
    from officescore.model import save_checkpoint

    favour = {"desk": 8.0} if favour is None else favour
    labels = {list(classes).index(name) + 1: bias for name, bias in favour.items()}
    model = tiny_model(classes, labels)
    save_checkpoint(
        path,
        model=model.state_dict(),
        arch=ARCH,
        classes=list(classes),
        model_kwargs=dict(TINY_KWARGS),
        epoch=0,
    )
    return path


def write_scenes(folder: Path, n: int = 3, size: int = 128, suffix: str = ".jpg") -> list[Path]:
    """`n` synthetic office scenes saved as files (deterministic by index)."""
    from officescore.sample import render_scene

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"scene_{i}{suffix}"
        render_scene(i, size=size).image.save(path)
        paths.append(path)
    return paths
