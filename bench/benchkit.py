"""What several bench scripts share: the small-model settings for synthetic scenes, the CPU's name."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
# Mask R-CNN options for models trained on officescore.sample scenes (few objects per photo), shared
# with the tests' learning test.
from trainsetup import SCENE_MODEL  # noqa: E402 - tests/, put on sys.path above


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo; elsewhere what Python's platform module knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def positive_int(text: str) -> int:
    """argparse type of a count that must be 1 or more (steps, photos, rounds, epochs, threads): 0
    measures nothing, and a rate or mean over it divided by zero after the whole run."""
    return _at_least(text, 1)


def non_negative_int(text: str) -> int:
    """argparse type of a count where 0 means none (extra photos, copies)."""
    return _at_least(text, 0)


def _at_least(text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a whole number, got {text!r}") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"must be {least} or more, got {value}")
    return value


def held_out_fraction(held: int, scenes: int, option: str) -> float:
    """The val fraction that holds `held` of `scenes` out; a one-line exit when too few are given
    (ingest would otherwise name a --val-fraction the caller never typed)."""
    if scenes <= held:
        raise SystemExit(f"{option} must be more than {held} (the {held} held out for val mAP), got {scenes}")
    return held / scenes


def train_scene_model(
    out: Path,
    scenes: int,
    size: int,
    epochs: int,
    without: Sequence[str] = (),
    val_every: int = 4,
    option: str = "--train-scenes",
) -> Path:
    """ResNet18-FPN from scratch on `scenes` synthetic scenes (seed 1000; 16 held out for its val
    mAP) at `size` px, bf16 autocast where the CPU has it (400 scenes, 30 epochs: ~32 min on 2 quiet
    cores). `without`: classes whose labels are removed first, so the model learns them as
    background (as COCO's detector learned lamps and bookshelves). Returns last.pt."""
    from officescore.ingest import ingest_export
    from officescore.sample import write_sample
    from officescore.train import TrainConfig, train

    val_fraction = held_out_fraction(16, scenes, option)  # before minutes of drawing scenes
    data = out / f"train_data_{scenes}_{size}"
    if not (data / "dataset.json").is_file():
        write_sample(out / "train_export", n_images=scenes, seed=1000, size=size)
        ingest_export(
            out / "train_export" / "annotations.json",
            out=data,
            val_fraction=val_fraction,
            seed=0,
        )
    name = "model"
    if without:
        name = "model-without-" + "-".join(sorted(without))
        data = _without_classes(data, out / f"{data.name}-{name}", set(without))
    config = TrainConfig(
        data=data, arch="maskrcnn_resnet18_fpn", weights="none", epochs=epochs, batch_size=4,
        lr=0.02, img_size=size, warmup_iters=50, workers=0, device="cpu", amp=True,
        project=out / "runs", name=name, seed=0, val_every=val_every, model_kwargs=dict(SCENE_MODEL),
    )  # fmt: skip
    return train(config).last_checkpoint


def _without_classes(data: Path, out: Path, classes: set[str]) -> Path:
    """A copy of data set `data` (photos linked) with the labels of `classes` removed."""
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "images").exists():
        os.symlink((data / "images").resolve(), out / "images")
    (out / "dataset.json").write_text((data / "dataset.json").read_text())
    for split in ("train", "val"):
        coco = json.loads((data / f"{split}.json").read_text())
        dropped = {c["id"] for c in coco["categories"] if c["name"] in classes}
        coco["annotations"] = [a for a in coco["annotations"] if a["category_id"] not in dropped]
        (out / f"{split}.json").write_text(json.dumps(coco))
    return out
