"""Predictor's records from a detector whose outputs are set by hand: which detections are kept, and
each one's class, mask, mask score, share and box in the photo's pixels (no training, no weights)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from officescore import masks as masklib
from officescore.errors import ConfigError
from officescore.infer import Predictor, model_source, score_photos
from officescore.infer.predictor import _annotated_names

NAMES = [None, "desk", "chair", None]  # label 3 has no office meaning (COCO's "person")


class _Resize:
    """What `Predictor.model_input_size` reads off a torchvision detector's transform."""

    def __init__(self, min_size: int, max_size: int) -> None:
        self.min_size, self.max_size = (min_size,), max_size


class FixedDetector(torch.nn.Module):
    """Returns `found` (label, score, box, mask probability inside the box) for every photo, with
    masks as torchvision pastes them (N x 1 x H x W probabilities); records the tensors it was given."""

    def __init__(self, found: list[tuple[int, float, list[int], float]], masks: bool = True) -> None:
        super().__init__()
        self.found, self.masks, self.seen = found, masks, []
        self.transform: _Resize | None = None

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        self.seen += images
        outputs = []
        for image in images:
            height, width = image.shape[1:]
            output = {
                "labels": torch.tensor([label for label, *_ in self.found]),
                "scores": torch.tensor([score for _, score, *_ in self.found]),
                "boxes": torch.tensor([box for _, _, box, _ in self.found], dtype=torch.float32).reshape(
                    -1, 4
                ),
            }
            if self.masks:
                probabilities = torch.zeros(len(self.found), 1, height, width)
                for k, (_, _, (x0, y0, x1, y1), inside) in enumerate(self.found):
                    probabilities[k, 0, y0:y1, x0:x1] = inside
                output["masks"] = probabilities
            outputs.append(output)
        return outputs


def _photo(width: int = 160, height: int = 96) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def _predict(detector: FixedDetector, photo: Image.Image | Path, conf: float = 0.5) -> list:
    predictor = Predictor(detector, NAMES, torch.device("cpu"), conf=conf)
    return predictor.predict(photo, workers=0)[0].detections


def test_a_score_equal_to_the_threshold_is_kept_and_its_own_mask_comes_with_it() -> None:
    """Kept: scores >= conf with an office class. The detections left out (a non-office label first,
    a score just below) must not shift which mask and mask score each kept one gets."""
    detector = FixedDetector(
        [
            (3, 0.95, [0, 0, 40, 30], 0.99),  # a person: not an office object
            (1, 0.5, [20, 10, 100, 60], 0.8),  # a desk exactly at the threshold
            (2, 0.49, [110, 40, 150, 90], 0.7),  # a chair just below it
            (2, 0.9, [120, 50, 140, 80], 0.6),
        ]
    )
    found = _predict(detector, _photo())
    assert [(d.class_name, d.score) for d in found] == [("desk", 0.5), ("chair", pytest.approx(0.9))]
    desk, chair = found
    expected = np.zeros((96, 160), np.uint8)
    expected[10:60, 20:100] = 1
    assert np.array_equal(masklib.decode(desk.mask), expected)
    assert desk.mask_score == pytest.approx(0.8) and chair.mask_score == pytest.approx(0.6)
    assert desk.box == [20.0, 10.0, 100.0, 60.0]
    # the share of a photo that is not square: 80 x 50 pixels of 160 x 96
    assert desk.share == pytest.approx(80 * 50 / (160 * 96))


def test_a_detector_without_masks_gives_its_boxes_as_masks() -> None:
    detector = FixedDetector([(1, 0.9, [10, 20, 50, 40], 1.0)], masks=False)
    (desk,) = _predict(detector, _photo())
    expected = np.zeros((96, 160), np.uint8)
    expected[20:40, 10:50] = 1
    assert np.array_equal(masklib.decode(desk.mask), expected) and desk.mask_score is None
    assert desk.share == pytest.approx(40 * 20 / (160 * 96))


def test_the_detector_sees_the_photos_pixels_in_0_to_1(tmp_path: Path) -> None:
    photo = _photo()
    path = tmp_path / "office.png"
    photo.save(path)
    detector = FixedDetector([])
    for given in (photo, path):
        _predict(detector, given)
        seen = detector.seen.pop()
        assert seen.dtype == torch.float32 and tuple(seen.shape) == (3, 96, 160)
        expected = torch.from_numpy(np.array(photo)).permute(2, 0, 1).float() / 255
        assert torch.allclose(seen, expected)


def test_a_large_photo_is_reduced_to_the_models_size_not_its_maximum(tmp_path: Path) -> None:
    """torchvision sizes the short side to min_size, the long side at most max_size: a 400 x 100
    photo for (32, 64) is fed at 64 x 16 (0.16), not at 32 x 8."""
    photo = _photo(400, 100)
    path = tmp_path / "wide.png"
    photo.save(path)
    detector = FixedDetector([(1, 0.9, [8, 4, 40, 12], 1.0)])
    detector.transform = _Resize(32, 64)
    for given in (photo, path):
        (desk,) = _predict(detector, given)
        assert tuple(detector.seen.pop().shape) == (3, 16, 64)
        assert desk.box == pytest.approx([50.0, 25.0, 250.0, 75.0])  # in the photo's own pixels
        assert desk.mask["size"] == [100, 400]


def test_a_threshold_of_0_keeps_everything_and_one_outside_0_to_1_is_refused() -> None:
    assert Predictor(FixedDetector([]), NAMES, torch.device("cpu"), conf=0.0).conf == 0.0
    for conf in (-0.1, 1.01):
        with pytest.raises(ConfigError, match="between 0 and 1"):
            Predictor(FixedDetector([]), NAMES, torch.device("cpu"), conf=conf)
        with pytest.raises(ConfigError, match="between 0 and 1"):  # nor for one call
            Predictor(FixedDetector([]), NAMES, torch.device("cpu")).predict(_photo(), conf=conf)


def test_a_batch_of_no_photos_is_refused_in_a_sentence() -> None:
    """`prelabel --batch-size 0` reaches `predict` unchecked: a ConfigError, not DataLoader's ValueError."""
    predictor = Predictor(FixedDetector([]), NAMES, torch.device("cpu"))
    with pytest.raises(ConfigError, match="--batch-size 0: must be 1 or more"):
        predictor.predict(_photo(), batch_size=0)


def test_annotated_names_of_three_photos_of_one_name_are_all_different(tmp_path: Path) -> None:
    items = [tmp_path / folder / "office.jpg" for folder in ("a", "b", "c")]
    names = _annotated_names(items, tmp_path / "out")
    assert names == {0: "office.jpg", 1: "office_2.jpg", 2: "office_3.jpg"}


def test_coco_is_named_in_any_case(monkeypatch: pytest.MonkeyPatch) -> None:
    from officescore.infer import predictor as predictor_module

    assert model_source("COCO") == "COCO"
    monkeypatch.setattr(predictor_module, "_coco_model", lambda: FixedDetector([]))
    assert Predictor.load("COCO", device="cpu", precision="fp32").kind == "coco"


def test_photos_in_memory_are_numbered_in_input_order() -> None:
    predictor = Predictor(FixedDetector([(1, 0.9, [10, 20, 50, 40], 1.0)]), NAMES, torch.device("cpu"))
    scored = score_photos(predictor, [_photo(), _photo(), _photo()], batch_size=2)
    assert [p.result.source for p in scored] == ["<image 1>", "<image 2>", "<image 3>"]
    assert all(p.score is not None and p.result.detections for p in scored)
