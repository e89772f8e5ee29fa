"""Contact sheets (audit's issues, --conventions' groups) drawn from a hand-made photo: where the
masks and outlines land, the panel size, the crop, the caption. Pure drawing: no model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from officescore import masks as masklib
from officescore.curate import sheets
from officescore.curate.labels import Label, LabelledImage, SplitLabels
from officescore.curate.scoring import Issue

WIDTH, HEIGHT, GREY = 120, 60, (128, 128, 128)  # a wide photo: x and y cannot be swapped unseen


def _rle(y0: int, y1: int, x0: int, x1: int) -> dict:
    mask = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    mask[y0:y1, x0:x1] = 1
    return masklib.encode(mask)


def _split(tmp_path: Path, labels: list[Label]) -> SplitLabels:
    path = tmp_path / "photo.png"
    Image.new("RGB", (WIDTH, HEIGHT), GREY).save(path)
    image = LabelledImage(1, "images/photo.png", path, WIDTH, HEIGHT, "train", labels)
    return SplitLabels(tmp_path, "train", ["desk", "chair"], [image], [])


def _tinted(pixel: np.ndarray) -> bool:
    return bool(np.abs(pixel.astype(int) - GREY).max() > 20)


def test_a_box_outline_covers_the_box_and_not_its_transpose() -> None:
    rle = sheets._box_rle([10.0, 5.0, 20.0, 8.0], HEIGHT, WIDTH)
    assert masklib.bbox(rle) == [10.0, 5.0, 20.0, 8.0]
    # a box reaching past the photo's left and top edges is cut there
    assert masklib.bbox(sheets._box_rle([-5.0, -3.0, 10.0, 6.0], HEIGHT, WIDTH)) == [0.0, 0.0, 5.0, 3.0]


def test_a_panel_fits_the_longer_side_and_tints_the_mask_of_a_wide_photo() -> None:
    photo = Image.new("RGB", (WIDTH, HEIGHT), GREY)
    panel = np.asarray(sheets._panel(photo, [("desk", _rle(10, 50, 10, 50), False)], ["desk"]))
    assert panel.shape == (sheets.PANEL * HEIGHT // WIDTH, sheets.PANEL, 3)
    scale = sheets.PANEL / WIDTH
    assert _tinted(panel[round(30 * scale), round(30 * scale)])  # inside the mask
    assert not _tinted(panel[round(30 * scale), round(90 * scale)])  # beside it


def test_the_suspect_prediction_is_outlined_in_white_even_below_the_threshold(tmp_path: Path) -> None:
    rle = _rle(10, 50, 10, 50)
    split = _split(tmp_path, [Label(7, "desk", rle, masklib.bbox(rle))])
    results = [
        {"image_id": 1, "category_id": 1, "segmentation": rle, "score": 0.3, "bbox": masklib.bbox(rle)}
    ]
    issue = Issue("bad_mask", 0.3, 1, 7, "desk", "desk", masklib.bbox(rle), prediction=0)
    tile = np.asarray(sheets._tile(issue, {"rank": 1}, split, results, conf=0.5))
    white = (tile == 255).all(axis=2)
    assert white[: sheets.PANEL, : sheets.PANEL].sum() > 100  # the suspect label, left
    assert white[: sheets.PANEL, sheets.PANEL :].sum() > 100  # the suspect prediction, right


def test_a_caption_names_a_suggested_class_only_when_it_differs() -> None:
    box = [0.0, 0.0, 1.0, 1.0]
    same = Issue("bad_mask", 0.5, 1, 7, "desk", "desk", box)
    other = Issue("wrong_class", 0.5, 1, 7, "desk", "chair", box)
    assert sheets.caption(same, 2, "images/a.jpg") == "#2 bad_mask 0.50 desk (a.jpg)"
    assert sheets.caption(other, 2, "images/a.jpg") == "#2 wrong_class 0.50 desk -> chair (a.jpg)"


@pytest.mark.parametrize(
    ("boxes", "expected"),
    [
        ([[10, 10, 20, 20]], (3, 3, 38, 38)),  # 25 % + 2 px margin, one pixel more at the far edges
        ([[0, 0, 10, 10], [100, 40, 20, 20]], (0, 0, WIDTH, HEIGHT)),  # never past the photo
    ],
)
def test_a_convention_crop_holds_both_boxes_with_a_margin(boxes: list, expected: tuple) -> None:
    assert sheets._crop_box(boxes, HEIGHT, WIDTH) == expected


def test_a_convention_tile_tints_the_label_where_it_lies_in_the_crop(tmp_path: Path) -> None:
    rle = _rle(20, 30, 10, 110)  # a wide, flat desk
    split = _split(tmp_path, [Label(7, "desk", rle, masklib.bbox(rle))])
    results = [
        {"image_id": 1, "category_id": 1, "segmentation": rle, "score": 0.9, "bbox": masklib.bbox(rle)}
    ]
    out = sheets.write_convention_sheet(tmp_path / "sheet.png", split, results, [(1, 7, 0)], "desk")
    left = np.asarray(Image.open(out).convert("RGB"))[sheets.CAPTION :, : sheets.PANEL]
    # the crop is x 0-120, y 15-35 of the photo, grown 224/120: the desk lies at y 5-15 of the crop
    scale = sheets.PANEL / WIDTH
    assert _tinted(left[round(10 * scale), round(60 * scale)])
    assert not _tinted(left[round(2 * scale), round(60 * scale)])  # above the desk
    assert not _tinted(left[round(10 * scale), round(3 * scale)])  # left of it
