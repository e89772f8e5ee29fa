"""Small training set-ups shared by the training tests: a tiny data set, fast model options, a config."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from officescore.ingest import ingest_export
from officescore.sample import write_sample
from officescore.train import TrainConfig

# Small enough to train on 2 CPU cores in seconds: few proposals, few sampled RoIs.
FAST_MODEL = {
    "rpn_pre_nms_top_n_train": 200,
    "rpn_post_nms_top_n_train": 50,
    "rpn_pre_nms_top_n_test": 200,
    "rpn_post_nms_top_n_test": 50,
    "rpn_batch_size_per_image": 64,
    "box_batch_size_per_image": 32,
    "box_detections_per_img": 30,
}

# For models that must learn synthetic scenes well (the learning test, bench/ models): fewer
# proposals and sampled RoIs than torchvision's COCO-sized defaults, more than FAST_MODEL.
SCENE_MODEL = {
    "rpn_pre_nms_top_n_train": 300,
    "rpn_post_nms_top_n_train": 100,
    "rpn_pre_nms_top_n_test": 300,
    "rpn_post_nms_top_n_test": 100,
    "rpn_batch_size_per_image": 64,
    "box_batch_size_per_image": 64,
}


def make_dataset(root: Path, images: int, size: int, seed: int) -> Path:
    """`images` synthetic scenes through ingest (val fraction 0.2) into root/dataset."""
    write_sample(root / "export", n_images=images, seed=seed, size=size)
    ingest_export(root / "export" / "annotations.json", out=root / "dataset", val_fraction=0.2, seed=0)
    return root / "dataset"


def small_config(data: Path, project: Path, **overrides: object) -> TrainConfig:
    """ResNet18-FPN from scratch at 64 px, 2 epochs of batch 2, one process on the CPU."""
    base = TrainConfig(
        data=data,
        arch="maskrcnn_resnet18_fpn",
        weights="none",
        epochs=2,
        batch_size=2,
        lr=0.01,
        img_size=64,
        model_kwargs=dict(FAST_MODEL),
        workers=0,
        device="cpu",
        project=project,
        seed=3,
    )
    return replace(base, **overrides)


def cli_model_options() -> list[str]:
    """FAST_MODEL as `officescore train` flags."""
    return [f"--model-opt={key}={value}" for key, value in FAST_MODEL.items()]
