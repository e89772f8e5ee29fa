"""Validation during training: box and mask AP on the val split through `officescore.evaluate`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from officescore import distributed as dist_utils
from officescore.progress import SILENT, Reporter
from officescore.train.config import TrainConfig
from officescore.train.setup import Run


def validate_if_due(run: Run, epoch: int) -> dict[str, Any] | None:
    """Val AP after every --val-every epochs and after the last; None when not due."""
    config = run.config
    if (epoch + 1) % config.val_every and epoch + 1 != config.epochs:
        return None
    return _validate(run.model, run.val_set, config, run.device, run.ctx, run.reporter, epoch + 1)


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
