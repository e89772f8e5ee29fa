"""Drawing detections on a photo: the one picture both `score --save-dir` and the web page show.

Each object's mask is filled with a translucent colour of its class and outlined in that colour,
with a `class 0.87` label on a chip of the same colour; a banner on top gives the office score.
The photo is drawn at the width it will be seen at (small photos scaled up, large ones down), so
lines and labels are sized for the picture a person looks at, not for the photo's pixels.
"""

from __future__ import annotations

import colorsys
import functools
import zlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageFont

from officescore import masks as masklib
from officescore.images import to_rgb

if TYPE_CHECKING:  # infer imports this module; only type names come back from it
    from officescore.infer.detection import Detection
    from officescore.infer.score import OfficeScore

FILL_ALPHA = 110  # of 255: the photo stays visible through the mask
PAGE_WIDTH = 1280  # the web page draws at this width; the browser fits it to the column
MIN_SAVE_WIDTH = 640  # score --save-dir: smaller photos are drawn at this width, larger ones as they are


# The ten office classes get a fixed qualitative palette: Okabe & Ito's eight colours (chosen to
# stay apart for colour-blind eyes too) plus Paul Tol's wine and a mid grey. Every pair is at least
# 21 CIEDE2000 units apart; things that sit together (monitor, keyboard, mouse, laptop) get
# colours of different hue. A hash of the name picked colours before and made three oranges and
# three greens of the ten.
PALETTE: dict[str, tuple[int, int, int]] = {
    "desk": (0x00, 0x72, 0xB2),  # blue
    "chair": (0xE6, 0x9F, 0x00),  # orange
    "monitor": (0xD5, 0x5E, 0x00),  # vermillion
    "laptop": (0x88, 0x22, 0x55),  # wine
    "keyboard": (0x56, 0xB4, 0xE9),  # sky blue
    "mouse": (0xCC, 0x79, 0xA7),  # reddish purple
    "plant": (0x00, 0x9E, 0x73),  # bluish green
    "lamp": (0xF0, 0xE4, 0x42),  # yellow
    "bookshelf": (0x99, 0x99, 0x99),  # grey
    "mug": (0x00, 0x00, 0x00),  # black
}
SPACED_HUES = 12  # other class names: one of 12 hues 30 degrees apart, at two brightnesses


def _slot(name: str) -> int:
    return zlib.crc32(name.encode("utf-8")) % (2 * SPACED_HUES)


def _slot_colour(slot: int) -> tuple[int, int, int]:
    hue = ((slot % SPACED_HUES) + 0.5) / SPACED_HUES  # half a step off red, orange, ... exactly
    r, g, b = colorsys.hsv_to_rgb(hue, 0.8, 0.95 if slot < SPACED_HUES else 0.65)
    return round(r * 255), round(g * 255), round(b * 255)


@functools.lru_cache(maxsize=64)
def class_colours(classes: tuple[str, ...]) -> dict[str, tuple[int, int, int]]:
    """Distinct colours for one class list (a model's, a project's): the office classes keep their
    fixed colours; any other name its hashed slot, or, when a name before it in sorted order holds
    that slot, the next free one (two hashed names share a slot about as often as birthdays do).
    Sorted, so the model's and the project's lists agree whatever order each has."""
    colours, taken = {}, set()
    for name in sorted(classes):
        if name in colours:
            continue
        if name in PALETTE:
            colours[name] = PALETTE[name]
            continue
        slot = _slot(name)
        free = [s % (2 * SPACED_HUES) for s in range(slot, slot + 2 * SPACED_HUES)]
        slot = next((s for s in free if s not in taken), slot)  # more than 24 names: shared again
        taken.add(slot)
        colours[name] = _slot_colour(slot)
    return colours


def class_colour(name: str, classes: Sequence[str] = ()) -> tuple[int, int, int]:
    """The colour of a class wherever officescore shows it: `score --save-dir` pictures, the web
    page, contact sheets and Label Studio labelling configs. The ten office classes have fixed,
    distinct colours; any other name one of 24 spaced hues picked by a stable hash of the name
    (crc32, the same in every process), kept apart from the other names of `classes` (the model's
    or the project's list) where it is one of them."""
    if name in PALETTE:
        return PALETTE[name]
    if name in classes:
        return class_colours(tuple(sorted(set(classes))))[name]
    return _slot_colour(_slot(name))


def class_colour_hex(name: str, classes: Sequence[str] = ()) -> str:
    return "#{:02x}{:02x}{:02x}".format(*class_colour(name, classes))


def text_colour(background: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black or white, whichever reads better on `background` (relative luminance)."""
    r, g, b = background
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 140 else (255, 255, 255)


def save_width(photo_width: int) -> int:
    """The width `score --save-dir` draws a photo at: small photos larger, so labels can be read."""
    return max(int(photo_width), MIN_SAVE_WIDTH)


def font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one fixed-size bitmap font
        return ImageFont.load_default()


def draw(
    image: Image.Image,
    detections: Sequence[Detection],
    score: OfficeScore | None = None,
    width: int | None = None,
    classes: Sequence[str] = (),
) -> Image.Image:
    """The photo at `width` pixels wide (default: its own) with filled, outlined masks, labels and
    (with `score`) the score banner. Boxes are drawn only for detections without a usable mask.
    `classes`: the model's class list, so no two of its classes share a colour."""
    rgb = to_rgb(image)
    out_w = int(width or rgb.width)
    out_h = max(1, round(rgb.height * out_w / rgb.width))
    scale = out_w / rgb.width
    if (out_w, out_h) != rgb.size:
        resample = Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.BICUBIC
        rgb = rgb.resize((out_w, out_h), resample)
    base = rgb.convert("RGBA")
    line = max(2, round(out_w / 400))
    # Large objects first, so a mug on a desk is drawn over the desk and its label stays on top.
    order = sorted(detections, key=lambda d: -d.share)
    overlay = Image.new("RGBA", base.size, (0, 0, 0, 0))
    drawn_masks = set()
    for index, det in enumerate(order):
        mask = _scaled_mask(det, image.size, base.size)
        if mask is None:
            continue  # a mask for another image size: its box is drawn instead
        colour = class_colour(det.class_name, classes)
        overlay.paste((*colour, FILL_ALPHA), (0, 0), mask)
        overlay.paste((*colour, 255), (0, 0), _outline(mask, det, scale, line))
        drawn_masks.add(index)
    out = Image.alpha_composite(base, overlay)
    pen = ImageDraw.Draw(out)
    banner_height = 0
    if score is not None:
        banner, banner_font = _fit_banner(pen, score, out_w, max(12, out_w // 30))
        _, top, _, bottom = pen.textbbox((0, 0), banner, font=banner_font)
        banner_height = bottom - top + 12
        pen.rectangle([0, 0, out_w, banner_height], fill=(20, 20, 20, 200))
        pen.text((8, 4 - top), banner, fill=(255, 255, 255, 255), font=banner_font)
    label_font = font(max(12, out_w // 45))
    below_banner = banner_height + 1 if score is not None else 0  # the banner's last row is drawn too
    for index, det in enumerate(order):
        colour = class_colour(det.class_name, classes)
        x0, y0, x1, y1 = (v * scale for v in det.box)
        if index not in drawn_masks:
            pen.rectangle([x0, y0, x1, y1], outline=(*colour, 255), width=line)
        text = det.label()  # "chair 0.91 armrests"
        _label(pen, text, (x0, y0), colour, label_font, out.size, below_banner)
    return out.convert("RGB")


def _scaled_mask(det: Detection, photo: tuple[int, int], size: tuple[int, int]) -> Image.Image | None:
    """The detection's mask as an L image of the drawing's size, or None if it is for another photo."""
    mask = masklib.decode(det.mask)
    if mask.shape != (photo[1], photo[0]):
        return None
    layer = Image.fromarray((mask > 0).astype(np.uint8) * 255, mode="L")
    return layer if layer.size == size else layer.resize(size, Image.Resampling.NEAREST)


def _outline(mask: Image.Image, det: Detection, scale: float, line: int) -> Image.Image:
    """The mask's inner edge, `line` pixels thick (mask minus its erosion), computed around the box only."""
    pad = line + 2
    x0, y0, x1, y1 = det.box
    left, top = max(0, int(x0 * scale) - pad), max(0, int(y0 * scale) - pad)
    right, bottom = min(mask.width, int(x1 * scale) + pad + 1), min(mask.height, int(y1 * scale) + pad + 1)
    if right <= left or bottom <= top:  # a box that disagrees with its mask: outline the whole mask
        left, top, right, bottom = 0, 0, mask.width, mask.height
    region = mask.crop((left, top, right, bottom))
    eroded = region.filter(ImageFilter.MinFilter(2 * line + 1))
    edge = Image.new("L", mask.size, 0)
    edge.paste(ImageChops.subtract(region, eroded), (left, top))
    return edge


def _label(
    pen: ImageDraw.ImageDraw,
    text: str,
    corner: tuple[float, float],
    colour: tuple[int, int, int],
    label_font: Any,
    size: tuple[int, int],
    top_margin: int = 0,
) -> None:
    """`text` on a chip of `colour` above the box's top-left corner (inside it at the top edge),
    kept inside the picture and below the banner (`top_margin`)."""
    left, top, right, bottom = pen.textbbox((0, 0), text, font=label_font)
    chip_w, chip_h = right - left + 8, bottom - top + 6
    x = min(max(0.0, corner[0]), max(0.0, size[0] - chip_w))
    above = corner[1] - chip_h
    y = above if above >= top_margin else max(float(top_margin), corner[1])
    y = min(y, max(0.0, size[1] - chip_h))
    pen.rectangle([x, y, x + chip_w, y + chip_h], fill=(*colour, 235))
    pen.text((x + 4 - left, y + 3 - top), text, fill=(*text_colour(colour), 255), font=label_font)


def _fit_banner(pen: ImageDraw.ImageDraw, score: OfficeScore, width: int, start: int) -> tuple[str, Any]:
    """The longest banner text, at the largest font size from `start` down to 8, that fits `width`."""
    texts = (f"Office score: {score.total:g}/100 - {score.label}", f"Office score: {score.total:g}/100")
    for text in texts:
        for size in range(start, 7, -1):
            candidate = font(size)
            left, _, right, _ = pen.textbbox((0, 0), text, font=candidate)
            if right - left <= width - 16:
                return text, candidate
    return f"{score.total:g}/100", font(8)
