"""Click to mask: mean mask IoU after 1, 2, 3 clicks and from a box, the project's model vs GrabCut.

Scenes: `--scenes` synthetic scenes (officescore.sample, seed 7000) the model never saw, with exact
masks. The model: `--model`, or a ResNet18-FPN trained here from scratch on `--train-scenes` other
scenes (seed 1000) for `--epochs` epochs (a few CPU minutes). No model: GrabCut.

Per object (objects of at least `--min-area` pixels): one positive click at the interior point farthest
from the object's edge, then up to 3 corrective clicks, each where a labeller would put it: at the
interior point of the largest error region (positive on a missed part, negative on a false one).
Boxes: the true box, and the true box with each edge moved by up to 10 % of the box's size (seeded).
Seconds per click: the first click on a photo (backbone + RPN + heads, or GrabCut) and the later ones,
on the scenes and on `--latency-size` px photos (the model fed at that size too).

    python bench/click.py --out /tmp/bench_click [--model runs/train/x/weights/last.pt]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from officescore.ingest import ingest_export
from officescore.sample import write_sample
from officescore.train import TrainConfig, train

MODEL = {
    "rpn_pre_nms_top_n_train": 300,
    "rpn_post_nms_top_n_train": 100,
    "rpn_pre_nms_top_n_test": 300,
    "rpn_post_nms_top_n_test": 100,
    "rpn_batch_size_per_image": 64,
    "box_batch_size_per_image": 64,
}


def train_model(out: Path, scenes: int, size: int, epochs: int) -> Path:
    """ResNet18-FPN from scratch on `scenes` scenes (16 held out for its val mAP, checked at the end)
    at `size` px."""
    data = out / f"train_data_{scenes}_{size}"
    if not (data / "dataset.json").is_file():
        write_sample(out / "train_export", n_images=scenes, seed=1000, size=size)
        ingest_export(out / "train_export" / "annotations.json", out=data, val_fraction=16 / scenes, seed=0)
    config = TrainConfig(
        data=data, arch="maskrcnn_resnet18_fpn", weights="none", epochs=epochs, batch_size=4,
        lr=0.02, img_size=size, warmup_iters=30, workers=0, device="cpu",
        project=out / "runs", name="model", seed=0, val_every=epochs, model_kwargs=dict(MODEL),
    )  # fmt: skip
    return train(config).last_checkpoint
