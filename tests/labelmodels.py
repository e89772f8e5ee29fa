"""Checkpoints for the label tests: tiny Mask R-CNNs whose suggestions are solid regions.

tests/scoremodels.py biases the classifier of an untrained model so chosen classes come out with
high scores; its masks are untrained noise (dozens of specks per detection), which no labeller
would accept and no polygon can follow. Here the mask head is also set to say "object" at every
pixel of the box, so each detection's mask is a solid region: what an accepted suggestion looks
like, and what a polygon round trip can be checked on. The regions are octagons (straight and
diagonal edges), not boxes, so a polygon that lost half a pixel at its border would show.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from scoremodels import ARCH, TINY_KWARGS, tiny_model
from trainsetup import make_dataset, small_config

from officescore import DEFAULT_CLASSES
from officescore.attributes import AttributeSchema
from officescore.cli import main
from officescore.infer.detection import Detection, ImageResult
from officescore.label.formats import LabelSchema
from officescore.label.predict import LoadedPredictor

KWARGS = {**TINY_KWARGS, "box_detections_per_img": 6}  # a few suggestions per photo, not twenty


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Autouse in each module that imports it: the tiny models here run fastest on one thread,
    above all when other jobs share the CPUs."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """The CLI in-process: (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err


def _octagon_masks(model: torch.nn.Module) -> None:
    """Make the mask head ignore the photo and draw an octagon filling the box: a constant map,
    blurred three times with zero padding (so the border and most of all the corners darken),
    then thresholded."""
    heads, predictor = model.roi_heads.mask_head, model.roi_heads.mask_predictor
    with torch.no_grad():
        for i, block in enumerate(heads):
            conv = block[0]
            conv.weight.zero_()
            conv.bias.zero_()
            if i == 0:
                conv.bias[0] = 1.0
            else:
                conv.weight[0, 0] = 1.0 / 9.0
        predictor.conv5_mask.weight.zero_()
        predictor.conv5_mask.bias.zero_()
        predictor.conv5_mask.weight[0, 0] = 1.0
        predictor.mask_fcn_logits.weight.zero_()
        predictor.mask_fcn_logits.weight[:, 0] = 40.0
        predictor.mask_fcn_logits.bias.fill_(-40.0 * 0.8)


def barely_trained(root: Path, **overrides: object) -> Path:
    """A tiny model really trained on synthetic scenes: ResNet18-FPN from scratch, 32 scenes at
    128 px, 4 epochs of batch 4 (under a minute on one core). Its masks are what a barely trained
    model draws (ragged, some in pieces), unlike the solid octagons of `solid_checkpoint`."""
    from officescore.train import train

    data = make_dataset(root, images=32, size=128, seed=1)
    settings: dict[str, object] = dict(
        epochs=4, batch_size=4, lr=0.02, img_size=128, warmup_iters=10, val_every=4, seed=0
    )
    return train(small_config(data, root / "runs", **{**settings, **overrides})).last_checkpoint


def solid_checkpoint(
    path: Path,
    favour: Mapping[str, float] | None = None,
    classes: Sequence[str] = DEFAULT_CLASSES,
    seed: int = 0,
) -> Path:
    from officescore.model import save_checkpoint

    favour = {"desk": 8.0} if favour is None else favour
    labels = {list(classes).index(name) + 1: bias for name, bias in favour.items()}
    model = tiny_model(classes, labels, seed=seed)
    for name, value in KWARGS.items():  # fewer detections per photo than scoremodels keeps
        if name == "box_detections_per_img":
            model.roi_heads.detections_per_img = value
    _octagon_masks(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(
        path, model=model.state_dict(), arch=ARCH, classes=list(classes), model_kwargs=dict(KWARGS), epoch=0
    )
    return path


def write_photos(folder: Path, n: int = 3, width: int = 128, height: int = 96) -> list[Path]:
    """`n` synthetic office scenes cropped to width x height: not square, so that a swapped width
    and height anywhere (percent coordinates, image sizes, RLE shapes) shows."""
    from officescore.sample import render_scene

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"scene_{i}.jpg"
        render_scene(i, size=max(width, height)).image.crop((0, 0, width, height)).save(path, quality=92)
        paths.append(path)
    return paths


def edge_masks(width: int, height: int) -> dict[str, np.ndarray]:
    """Masks that touch each edge of a width x height photo with a tip (where the half-pixel,
    mitre-joined outline reaches furthest past the pixels), a slanted side, a corner, one corner
    pixel and the whole photo: what a barely trained model's ragged masks do at photo edges."""
    yy, xx = np.mgrid[0:height, 0:width]
    r = min(20, width // 4, height // 4)

    def diamond(cx: int, cy: int) -> np.ndarray:
        return (np.abs(xx - cx) + np.abs(yy - cy) <= r).astype(np.uint8)

    return {
        "left tip": diamond(r, height // 2),
        "right tip": diamond(width - 1 - r, height // 2),
        "top tip": diamond(width // 2, r),
        "bottom tip": diamond(width // 2, height - 1 - r),
        "corner": ((xx - width) ** 2 + (yy - height) ** 2 <= (1.5 * r) ** 2).astype(np.uint8),
        "left side": ((xx < 12) & (np.abs(yy - height // 2) < 3 + xx)).astype(np.uint8),
        "corner pixel": ((xx == 0) & (yy == 0)).astype(np.uint8),
        "whole photo": np.ones((height, width), np.uint8),
    }


class EdgePredictor:
    """Stands in for `officescore.infer.Predictor` (classes, predict) with `edge_masks` as its
    detections on every photo, so the files written from them can be checked at the photo edges."""

    def __init__(self, classes: Sequence[str] = ("desk", "chair", "monitor")) -> None:
        self.classes = list(classes)
        self.attributes = AttributeSchema()  # as Predictor: no attribute head

    def predict(self, paths: Sequence[Path], **_: object) -> list[ImageResult]:
        from officescore import masks as masklib

        results = []
        for path in paths:
            with Image.open(path) as photo:
                width, height = photo.size
            detections = [
                Detection(
                    self.classes[n % len(self.classes)], 0.9 - 0.05 * n, [0, 0, 1, 1], masklib.encode(m), 0.1
                )
                for n, m in enumerate(edge_masks(width, height).values())
                if m.any()
            ]
            results.append(ImageResult(str(path), width, height, detections))
        return results


def edge_model(classes: Sequence[str] = ("desk", "chair", "monitor")) -> LoadedPredictor:
    return LoadedPredictor(EdgePredictor(classes), "edges", "edges-00000000")


def polygon_region(points: list[list[float]], label: str, width: int, height: int) -> dict[str, Any]:
    """A polygon region as Label Studio's editor saves it (points in percent of a width x height image)."""
    return {
        "id": f"{label}{len(points)}",
        "type": "polygonlabels",
        "from_name": "label",
        "to_name": "image",
        "original_width": width,
        "original_height": height,
        "image_rotation": 0,
        "value": {"points": points, "closed": True, "polygonlabels": [label]},
    }


def two_squares() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A red and a blue square side by side on grey (a little noise), 128 x 96 px: one
    box holds both."""
    rng = np.random.default_rng(0)
    rgb = np.full((96, 128, 3), 200.0)
    rgb[30:70, 20:60] = (200, 40, 40)
    rgb[30:70, 60:100] = (40, 40, 200)
    rgb = np.clip(rgb + rng.normal(0, 4, rgb.shape), 0, 255).astype(np.uint8)
    left, right = np.zeros((96, 128), bool), np.zeros((96, 128), bool)
    left[30:70, 20:60] = True
    right[30:70, 60:100] = True
    return rgb, left, right


class ServedPhotos:
    """What the backend gives the click service: a model (`current`) and task photos (`photo`)."""

    def __init__(self, loaded: Any, photos: dict[str, Path]) -> None:
        self.loaded, self.photos = loaded, photos

    def current(self) -> Any:
        return self.loaded

    def photo(self, task: dict[str, Any], schema: LabelSchema, folder: Path, n: int) -> Path:
        return self.photos[task["data"][schema.value]]
