"""Tiny Mask R-CNN checkpoints and synthetic photos for the score, infer, export and app tests.

An untrained model is enough for plumbing; its class logits are biased so that chosen classes
come out with high scores (every other class stays near 1/K and below the usual thresholds).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

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
    path: Path,
    favour: Mapping[str, float] | None = None,
    classes: Sequence[str] = DEFAULT_CLASSES,
    cap: int | None = None,
) -> Path:
    """An officescore checkpoint of a tiny model favouring the named classes (default: desk);
    `cap`: its detections per photo (`box_detections_per_img`) instead of TINY_KWARGS' 20."""
    from officescore.model import save_checkpoint

    favour = {"desk": 8.0} if favour is None else favour
    labels = {list(classes).index(name) + 1: bias for name, bias in favour.items()}
    model = tiny_model(classes, labels)
    save_checkpoint(
        path,
        model=model.state_dict(),
        arch=ARCH,
        classes=list(classes),
        model_kwargs={**TINY_KWARGS, **({} if cap is None else {"box_detections_per_img": cap})},
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


def controlled_model(sure: Image.Image, unsure: Image.Image) -> torch.nn.Module:
    """A tiny Mask R-CNN whose classifier we set: on `sure` the most object-like proposals are clearly
    desks; on `unsure` desk and chair tie. Masks are made equally certain everywhere."""
    model = tiny_model(DEFAULT_CLASSES, {})
    feats: list[torch.Tensor] = []
    handle = model.roi_heads.box_head.register_forward_hook(lambda m, a, o: feats.append(o.mean(dim=0)))
    with torch.inference_mode():
        for image in (sure, unsure):
            model([torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255.0])
    handle.remove()
    f_sure, f_unsure = feats
    d = f_sure - f_unsure
    head, k = model.roi_heads.box_predictor.cls_score, 12.0
    with torch.no_grad():
        head.weight.zero_()
        head.bias.fill_(-10.0)
        head.bias[0] = 0.0  # background
        head.weight[1] = k * d / d.dot(d)  # desk: +k on `sure`, +0 on `unsure` (on average)
        head.bias[1] = 5.0 - float(head.weight[1].dot(f_unsure))
        head.bias[2] = 5.0  # chair: ties with desk on `unsure`
        masks = model.roi_heads.mask_predictor.mask_fcn_logits
        masks.weight.zero_()
        masks.bias.fill_(8.0)
    return model.eval()
