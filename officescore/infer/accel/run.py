"""One forward pass of a detector on the fast path.

The caller's score threshold is pushed into the model for the call: torchvision would otherwise
compute and paste a full-size mask for every post-NMS detection above its own threshold (0.05, up
to 100 per image) only for the caller to drop most of them. NMS only lets a box suppress
lower-scoring ones, so dropping boxes under the threshold before NMS keeps exactly the detections
at or above it.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

# The threshold is set on the shared model for one call: concurrent calls (Streamlit sessions, the
# label backend's threads) take turns. The CPU's cores are all used by one call anyway.
_LOCK = threading.Lock()
MASK_THRESHOLD = 0.5  # torchvision's masks are per-pixel probabilities


def forward(
    model: Any,
    images: list[torch.Tensor],
    device: torch.device | str,
    precision: str = "fp32",
    conf: float | None = None,
    with_mask_scores: bool = True,
) -> list[dict[str, torch.Tensor]]:
    """Detections (torchvision's dicts) for `images`; with `conf`, only those scoring >= conf
    (and any lower ones the model keeps anyway) get masks. Each dict with masks also gets
    `mask_scores` (`mask_scores()`) unless `with_mask_scores` is False."""
    device = torch.device(device)
    # Scripted torchvision detectors warn on every call that they return (losses, detections).
    quiet = warnings.catch_warnings()
    with _LOCK, _kept_only(model, conf), autocast(precision, device), torch.inference_mode(), quiet:
        warnings.filterwarnings("ignore", message="RCNN always returns")
        outputs = model(images)
    # A scripted torchvision detector returns (losses, detections); an eager one just detections.
    if isinstance(outputs, tuple) and len(outputs) == 2 and isinstance(outputs[1], list):
        outputs = outputs[1]
    outputs = [dict(output) for output in outputs]
    for output in outputs:
        if with_mask_scores and "masks" in output:
            output["mask_scores"] = mask_scores(output["masks"], output.get("boxes"))
    return outputs


def mask_scores(masks: torch.Tensor, boxes: torch.Tensor | None = None) -> torch.Tensor:
    """How sure the mask head is of each mask (N x 1 x H x W probabilities -> N): the mean
    probability of the pixels inside the mask (> 0.5), 0 for an empty mask. SOLOv2's "maskness": the
    class score says what an object is, this says how well its outline was found. With the
    detections' `boxes` (N x 4, xyxy pixels) only the pixels a pasted mask can reach are read."""
    probabilities = masks[:, 0]
    if boxes is None:
        return _mean_inside(probabilities.flatten(1))
    height, width = probabilities.shape[1:]
    scores = torch.zeros(len(boxes), device=masks.device)
    for k, (x0, y0, x1, y1) in enumerate(_pasted_boxes(boxes, width, height)):
        scores[k] = _mean_inside(probabilities[k, y0:y1, x0:x1].reshape(1, -1))[0]
    return scores


def _mean_inside(rows: torch.Tensor) -> torch.Tensor:
    rows = rows.float()
    inside = rows > MASK_THRESHOLD
    return torch.where(inside, rows, 0.0).sum(1) / inside.sum(1).clamp(min=1)


def _pasted_boxes(boxes: torch.Tensor, width: int, height: int) -> list[tuple[int, int, int, int]]:
    """Pixel windows holding every non-zero pixel of torchvision's pasted masks: it pastes each
    28 x 28 mask, padded by one cell, over its box grown by 30/28 (`paste_masks_in_image`)."""
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]) / 2 * (30 / 28)
    low, high = (centre - half).floor() - 1, (centre + half).ceil() + 2
    windows = []
    for (x0, y0), (x1, y1) in zip(low.tolist(), high.tolist(), strict=True):
        windows.append((max(int(x0), 0), max(int(y0), 0), min(int(x1), width), min(int(y1), height)))
    return windows


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """bf16 or fp16 autocast on `device`; fp32: nothing."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision == "fp16":
        return torch.autocast(device.type, dtype=torch.float16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def _kept_only(model: Any, conf: float | None) -> Iterator[None]:
    heads = getattr(model, "roi_heads", None)
    if conf is None or heads is None or isinstance(model, torch.jit.ScriptModule):
        yield
        return
    original = heads.score_thresh
    # torchvision keeps scores > score_thresh; the caller keeps scores >= conf: the float32 just
    # below conf makes the two the same.
    below = float(np.nextafter(np.float32(conf), np.float32(-np.inf)))
    heads.score_thresh = max(float(original), below)
    try:
        yield
    finally:
        heads.score_thresh = original
