"""officescore.infer.drawing: the picture `score --save-dir` writes and the web page shows.

Synthetic detections on a plain photo, so every pixel's expected colour is known exactly.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from officescore import masks
from officescore.infer import Detection
from officescore.infer.drawing import (
    FILL_ALPHA,
    MIN_SAVE_WIDTH,
    class_colour,
    class_colour_hex,
    draw,
    save_width,
    text_colour,
)
from officescore.infer.score import score_office

W, H = 192, 144


def _photo(width: int = W, height: int = H) -> Image.Image:
    """A smooth gradient (resizing it changes pixels predictably, unlike noise)."""
    x = np.linspace(60, 200, width)[None, :].repeat(height, 0)
    y = np.linspace(80, 160, height)[:, None].repeat(width, 1)
    return Image.fromarray(np.stack([x, y, (x + y) / 2], axis=2).astype(np.uint8))


def _rect_mask(x0: int, y0: int, x1: int, y1: int, width: int = W, height: int = H) -> np.ndarray:
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[y0:y1, x0:x1] = 1
    return mask


def _det(name: str, score: float, mask: np.ndarray, box: list[float] | None = None) -> Detection:
    ys, xs = np.nonzero(mask)
    box = box or [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]
    return Detection(name, score, box, masks.encode(mask), float(mask.mean()))


def _blend(photo: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    alpha = FILL_ALPHA / 255
    return photo * (1 - alpha) + np.array(colour) * alpha


@pytest.fixture(scope="module")
def scene() -> dict:
    desk = _det("desk", 0.91, _rect_mask(30, 40, 150, 120))
    yy, xx = np.mgrid[0:H, 0:W]
    mug = _det("mug", 0.55, (((xx - 100) / 14) ** 2 + ((yy - 85) / 12) ** 2 <= 1).astype(np.uint8))
    # A mask for another photo size: its box is drawn instead.
    chair = Detection(
        "chair", 0.42, [160.0, 60.0, 188.0, 130.0], masks.encode(np.ones((10, 10), np.uint8)), 0.1
    )
    return {"desk": desk, "mug": mug, "chair": chair, "all": [mug, chair, desk]}


def test_small_photo_is_drawn_large_with_filled_outlined_masks(scene: dict) -> None:
    photo = _photo()
    out = draw(photo, scene["all"], None, width=1280)
    scale = 1280 / W
    assert out.size == (1280, 960) and out.mode == "RGB"
    got = np.asarray(out, dtype=float)
    base = np.asarray(photo.resize(out.size, Image.Resampling.BICUBIC), dtype=float)

    def at(x: float, y: float) -> tuple[int, int]:
        return round(y * scale), round(x * scale)

    desk, mug, chair = (class_colour(n) for n in ("desk", "mug", "chair"))
    # Fill: the photo under a translucent class colour, inside the mask.
    for x, y in [(50, 90), (140, 110), (70, 60)]:
        assert np.abs(got[at(x, y)] - _blend(base[at(x, y)], desk)).max() <= 2
    # The mug, smaller, is drawn over the desk in its own colour.
    assert np.abs(got[at(100, 85)] - _blend(base[at(100, 85)], mug)).max() <= 2
    # Outline: solid class colour along the mask's inner edge.
    for x, y in [(30.1, 90), (149.9, 90), (90, 119.9)]:
        assert tuple(got[at(x, y)].astype(int)) == desk
    # Outside every mask, box and label the photo is untouched.
    for x, y in [(10, 10), (20, 135), (100, 135)]:
        assert np.array_equal(got[at(x, y)], base[at(x, y)])
    # No box around a mask that was drawn; the chair (mask unusable) gets its box outline only.
    corner = at(scene["mug"].box[0] + 0.2, scene["mug"].box[1] + 0.2)  # its box corner, off the ellipse
    assert np.abs(got[corner] - _blend(base[corner], desk)).max() <= 2
    assert tuple(got[at(160.2, 100)].astype(int)) == chair
    assert np.array_equal(got[at(174, 100)], base[at(174, 100)])


def test_labels_are_readable_chips_in_the_class_colour(scene: dict) -> None:
    out = np.asarray(draw(_photo(), [scene["desk"]], None, width=1280))
    scale = 1280 / W
    x0, y0 = round(30 * scale), round(40 * scale)
    chip = out[:y0, x0 : x0 + 120]  # the label sits just above the box's top-left corner
    is_colour = (chip == class_colour("desk")).all(axis=2)
    rows = np.flatnonzero(is_colour.any(axis=1))
    assert rows.size and rows[-1] == y0 - 1 and rows[-1] - rows[0] + 1 >= 24  # tall enough to read
    ink = (chip == text_colour(class_colour("desk"))).all(axis=2)
    assert ink[rows[0] : rows[-1] + 1].sum() > 150  # the text itself, in a contrasting colour


def test_score_banner_on_top_and_labels_below_it(scene: dict) -> None:
    office = score_office([scene["desk"]])
    top = _det("mug", 0.8, _rect_mask(10, 0, 60, 30))
    out = np.asarray(draw(_photo(), [top], office, width=1280), dtype=int)
    dark = (out.max(axis=2) < 60).mean(axis=1) > 0.5  # (white text on it)
    banner = int(np.argmin(dark))  # rows of the dark banner from the top
    assert banner >= 30
    colour_rows = np.flatnonzero((out == class_colour("mug")).all(axis=2).any(axis=1))
    assert colour_rows.min() >= banner  # the mug's label is not hidden under the banner


def test_large_photo_is_drawn_smaller_and_own_size_by_default(scene: dict) -> None:
    big = _photo(W * 10, H * 10)
    desk = _det("desk", 0.9, _rect_mask(300, 400, 1500, 1200, W * 10, H * 10))
    out = draw(big, [desk], None, width=1280)
    assert out.size == (1280, 960)
    base = np.asarray(big.resize(out.size, Image.Resampling.LANCZOS), dtype=float)
    got = np.asarray(out, dtype=float)
    assert np.abs(got[600, 600] - _blend(base[600, 600], class_colour("desk"))).max() <= 2
    photo = _photo()
    assert draw(photo, scene["all"]).size == photo.size
    assert np.array_equal(np.asarray(draw(photo, [])), np.asarray(photo))


def test_colours_and_widths() -> None:
    # Literals: the same colour in every process and release (a colour from Python's per-process
    # hash() would pass a comparison of two calls in one process). Follow the palette if it changes.
    assert class_colour("desk") == (0, 114, 178) and class_colour("chair") == (230, 159, 0)
    assert class_colour_hex("desk") == "#0072b2"
    assert text_colour((250, 240, 40)) == (0, 0, 0) and text_colour((20, 30, 200)) == (255, 255, 255)
    assert save_width(192) == MIN_SAVE_WIDTH and save_width(4000) == 4000


def _lab(rgb: tuple[int, int, int]) -> tuple[float, float, float]:
    """sRGB (D65) -> CIELAB."""
    c = np.asarray(rgb, dtype=float) / 255.0
    c = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]) @ c
    f = [
        v ** (1 / 3) if v > (6 / 29) ** 3 else v / (3 * (6 / 29) ** 2) + 4 / 29
        for v in xyz / np.array([0.95047, 1.0, 1.08883])
    ]
    return 116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])


def _delta_e2000(c1: tuple[int, int, int], c2: tuple[int, int, int]) -> float:
    """CIEDE2000 colour difference of two sRGB colours; about 2 is just noticeable."""
    return _delta_e2000_lab(_lab(c1), _lab(c2))


def _delta_e2000_lab(lab1: tuple[float, float, float], lab2: tuple[float, float, float]) -> float:
    """CIEDE2000 (Sharma, Wu & Dalal 2005) of two CIELAB colours."""
    import math

    (l1, a1, b1), (l2, a2, b2) = lab1, lab2
    c_bar = (math.hypot(a1, b1) + math.hypot(a2, b2)) / 2
    g = 0.5 * (1 - math.sqrt(c_bar**7 / (c_bar**7 + 25**7)))
    a1, a2 = (1 + g) * a1, (1 + g) * a2
    c1p, c2p = math.hypot(a1, b1), math.hypot(a2, b2)
    h1, h2 = math.degrees(math.atan2(b1, a1)) % 360, math.degrees(math.atan2(b2, a2)) % 360
    dh = 0.0 if c1p * c2p == 0 else (h2 - h1 + 180) % 360 - 180
    d_h = 2 * math.sqrt(c1p * c2p) * math.sin(math.radians(dh / 2))
    l_bar, cp_bar = (l1 + l2) / 2, (c1p + c2p) / 2
    if c1p * c2p == 0:
        h_bar = h1 + h2
    elif abs(h1 - h2) <= 180:
        h_bar = (h1 + h2) / 2
    else:
        h_bar = (h1 + h2 + 360) / 2 if h1 + h2 < 360 else (h1 + h2 - 360) / 2
    t = (
        1
        - 0.17 * math.cos(math.radians(h_bar - 30))
        + 0.24 * math.cos(math.radians(2 * h_bar))
        + 0.32 * math.cos(math.radians(3 * h_bar + 6))
        - 0.20 * math.cos(math.radians(4 * h_bar - 63))
    )
    s_l = 1 + 0.015 * (l_bar - 50) ** 2 / math.sqrt(20 + (l_bar - 50) ** 2)
    s_c, s_h = 1 + 0.045 * cp_bar, 1 + 0.015 * cp_bar * t
    r_t = (
        -math.sin(math.radians(60 * math.exp(-(((h_bar - 275) / 25) ** 2))))
        * 2
        * math.sqrt(cp_bar**7 / (cp_bar**7 + 25**7))
    )
    dl, dc, dhh = (l2 - l1) / s_l, (c2p - c1p) / s_c, d_h / s_h
    return math.sqrt(dl**2 + dc**2 + dhh**2 + r_t * dc * dhh)


def test_delta_e2000_matches_published_pairs() -> None:
    # Sharma, Wu & Dalal's test data: pairs 1, 7 and 17.
    assert abs(_delta_e2000_lab((50.0, 2.6772, -79.7751), (50.0, 0.0, -82.7485)) - 2.0425) < 1e-4
    assert abs(_delta_e2000_lab((50.0, 0.0, 0.0), (50.0, -1.0, 2.0)) - 2.3669) < 1e-4
    assert abs(_delta_e2000_lab((50.0, 2.5, 0.0), (73.0, 25.0, -18.0)) - 27.1492) < 1e-4


def test_office_classes_have_distinct_colours() -> None:
    from itertools import combinations

    from officescore import DEFAULT_CLASSES

    colours = {name: class_colour(name) for name in DEFAULT_CLASSES}
    closest = min((_delta_e2000(colours[a], colours[b]), a, b) for a, b in combinations(DEFAULT_CLASSES, 2))
    assert closest[0] >= 20, closest  # the hashed colours had plant/bookshelf at 2.5, monitor/keyboard 10.6


def test_other_classes_get_spaced_hues() -> None:
    import colorsys

    hues = set()
    for name in ("sofa", "whiteboard", "printer", "phone", "headphones", "cable", "window", "rug"):
        r, g, b = class_colour(name)
        hue, saturation, _ = colorsys.rgb_to_hsv(r / 255, g / 255, b / 255)
        assert saturation > 0.7
        steps = hue * 12 - 0.5
        assert abs(steps - round(steps)) < 0.02, (name, hue)  # one of 12 hues 30 degrees apart
        hues.add(round(steps) % 12)
    assert len(hues) >= 4


def test_class_colours_are_the_same_everywhere_and_in_every_process() -> None:
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from officescore import DEFAULT_CLASSES
    from officescore.curate import sheets
    from officescore.label.formats import LabelSchema, class_hex

    names = [*DEFAULT_CLASSES, "sofa", "whiteboard"]
    repo = str(Path(__file__).resolve().parent.parent)
    script = "import json, sys; from officescore.infer.drawing import class_colour; "
    script += "print(json.dumps([class_colour(n) for n in sys.argv[1:]]))"
    for seed in ("1", "2"):  # str hashes differ between these interpreters; the colours must not
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": repo}
        out = subprocess.run(
            [sys.executable, "-c", script, *names], env=env, capture_output=True, text=True, check=True
        ).stdout
        assert [tuple(c) for c in json.loads(out)] == [class_colour(n) for n in names]
    config = LabelSchema(tuple(names)).config_xml()
    for name in names:
        assert class_hex(name) == class_colour_hex(name)
        assert f'value="{name}" background="{class_hex(name)}"' in config
        assert sheets._colour(name) == class_colour(name)


def test_two_classes_of_one_list_never_share_a_colour() -> None:
    """ "office chair" and "café table" hash to the same slot: one project showed both in #f2c230,
    so labellers could not tell them apart. Within a class list (the model's, the project's) the
    later name takes the next free slot, in every place the colours are shown."""
    from officescore.app import objects_table
    from officescore.label.formats import LabelSchema

    classes = ("office chair", "café table", "desk")
    assert class_colour("office chair") == class_colour("café table")  # alone: the hashed slot
    second, first = (class_colour(n, classes) for n in classes[:2])
    assert first == class_colour("café table") and second != first  # the first in sorted order keeps its own
    assert [class_colour(n, classes[::-1]) for n in classes] == [
        second,
        first,
        class_colour("desk"),
    ]  # any order
    assert class_colour("desk", classes) == class_colour("desk")  # office classes keep theirs
    many = [f"class {n}" for n in range(24)]  # as many names as slots: every one its own colour
    assert len({class_colour(n, many) for n in many}) == 24
    # The picture, the web page's table and the Label Studio config agree.
    chair, table = (
        _det("office chair", 0.9, _rect_mask(10, 10, 60, 60)),
        _det("café table", 0.8, _rect_mask(100, 10, 180, 100)),
    )
    got = np.asarray(draw(_photo(), [chair, table], None, classes=classes), dtype=float)
    base = np.asarray(_photo(), dtype=float)
    assert np.abs(got[30, 30] - _blend(base[30, 30], second)).max() <= 2  # the office chair
    assert np.abs(got[50, 140] - _blend(base[50, 140], first)).max() <= 2  # the café table
    unusable = masks.encode(np.ones((10, 10), np.uint8))  # a mask for another size: its box is drawn
    boxed = Detection("office chair", 0.7, [120.0, 100.0, 170.0, 140.0], unusable, 0.1)
    got = np.asarray(draw(_photo(), [boxed], None, classes=classes))
    assert tuple(got[120, 120].astype(int)) == second  # the box and its label chip: the mask's colour
    styles = objects_table([chair, table], classes).to_html()
    assert f"background-color: {class_colour_hex('office chair', classes)}" in styles
    config = LabelSchema(classes).config_xml()
    assert f'value="office chair" background="{class_colour_hex("office chair", classes)}"' in config
    assert f'value="café table" background="{class_colour_hex("café table")}"' in config
    from officescore.curate import sheets  # audit's contact sheets colour a data set's classes

    assert sheets._colour("office chair", classes) == second


def _chip_rows_and_columns(out: np.ndarray, above: int, name: str = "desk") -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of `out[:above]` (above a box) in the class colour: its label chip."""
    chip = (out[:above] == class_colour(name)).all(axis=2)
    return np.flatnonzero(chip.any(axis=1)), np.flatnonzero(chip.any(axis=0))


def test_a_label_sits_above_its_box_when_it_fits_and_never_leaves_the_picture() -> None:
    unusable = masks.encode(np.ones((10, 10), np.uint8))  # boxes only: nothing else in the class colour
    reference = np.asarray(draw(_photo(), [Detection("desk", 0.9, [60.0, 60.0, 70.0, 100.0], unusable, 0.1)]))
    rows, columns = _chip_rows_and_columns(reference, 60)
    height, width = len(rows), len(columns)
    assert rows[-1] == 59 and columns[0] == 60  # above the box's top-left corner
    # Exactly room for it above the box: above, not over the object.
    fits = np.asarray(draw(_photo(), [Detection("desk", 0.9, [60.0, height, 70.0, 100.0], unusable, 0.1)]))
    assert list(_chip_rows_and_columns(fits, height)[0]) == list(range(height))
    # A box at the right edge: the chip moves left and stays whole.
    edge = np.asarray(draw(_photo(), [Detection("desk", 0.9, [180.0, 60.0, 190.0, 100.0], unusable, 0.1)]))
    columns = _chip_rows_and_columns(edge, 60)[1]
    assert columns[-1] == W - 1 and abs(len(columns) - width) <= 1


def test_a_box_that_misses_its_mask_still_gets_the_mask_outlined_and_a_label() -> None:
    """A detection whose box lies below the picture (a record from elsewhere): its mask is outlined
    whole instead of around the box, and its label stays inside the picture, at the bottom."""
    desk = _det("desk", 0.9, _rect_mask(30, 40, 150, 120), box=[30.0, 300.0, 150.0, 400.0])
    out = np.asarray(draw(_photo(), [desk], None))
    assert tuple(out[80, 30]) == class_colour("desk") and tuple(out[80, 149]) == class_colour("desk")
    assert (out[H - 1] == class_colour("desk")).all(axis=1).sum() > 20  # the chip's last row


def test_the_banner_holds_its_whole_text_at_every_width() -> None:
    """White text on the dark banner: never cut off at the right edge, never spilling below it."""
    office = score_office([])
    for width in range(120, 700, 9):
        photo = Image.new("RGB", (width, width // 2), (128, 128, 128))
        out = np.asarray(draw(photo, [], office), dtype=int)
        banner = int(np.argmax(out[:, 2, 0] > 80))  # the first row below the dark fill, left of the text
        bright = np.argwhere((out > 200).all(axis=2))  # the text
        assert banner > 0 and len(bright) > 0, width
        assert bright[:, 0].max() < banner and bright[:, 1].max() < width - 8, width
