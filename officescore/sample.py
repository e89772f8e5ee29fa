"""Procedural synthetic home-office scenes with exact instance masks, written as a COCO export.

Every object is a set of polygon "parts" rasterised by pycocotools itself, and pixels are painted
through exactly those rasters, back to front, while a per-pixel instance-id map records who owns
each pixel. So the visible mask of an instance is known exactly, and an unoccluded instance's
polygons decode (with pycocotools) to exactly its mask. Colour-only "details" (keys, screens,
books) are painted inside an object's own body and never change ownership.

The scenes are meant to be learnable by a small Mask R-CNN on a CPU: objects are large relative
to the image, each class has a characteristic shape and colour range, clutter is moderate and
noise/blur are mild.
"""

from __future__ import annotations

import colorsys
import io
import json
import math
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from pycocotools import mask as mask_utils

from officescore import DEFAULT_CLASSES, __version__
from officescore import masks as masklib
from officescore.errors import UserError
from officescore.files import atomic_write_bytes, make_folder
from officescore.images import MAX_PIXELS
from officescore.progress import SILENT, Reporter

RGB = tuple[float, float, float]
Poly = list[float]  # flat [x0, y0, x1, y1, ...] as in COCO

JPEG_QUALITY = 92
CONTRIBUTOR = "officescore sample"  # annotations.json's info: how a rerun knows its own folder
MIN_SIZE = 64
MAX_SIZE = math.isqrt(MAX_PIXELS)  # the largest square photo officescore reads (9459 px)
# An object that ends up mostly hidden is removed from the scene before painting: an annotation
# of a few stray pixels teaches a detector nothing and a human labeller would skip it too.
MIN_VISIBLE_FRACTION = 0.35
MIN_VISIBLE_AREA = 0.0008  # of the image area
POLYGON_PROBABILITY = 0.65  # share of eligible (unoccluded, inside) instances exported as polygons
_SCENE_NAME = re.compile(r"^scene_\d{5,}\.jpg$")
# Mask conventions (`sample --plant-mask leaves`, `--desk-mask top`): which parts of an object its
# label covers. The first one of each class is the default; the others leave out parts by role (the
# parts are still painted, so the photos are the same bytes whatever the convention).
MASK_CONVENTIONS: dict[str, dict[str, frozenset[str]]] = {
    "plant": {"whole": frozenset(), "leaves": frozenset({"pot"})},
    "desk": {"whole": frozenset(), "top": frozenset({"base"})},
}


# --------------------------------------------------------------------------------------------
# Public data types


@dataclass
class SceneInstance:
    """One annotated object: its class, exact visible mask and, when exact, its polygons."""

    category: str
    mask: np.ndarray  # uint8 HxW, 1 where this instance is the visible surface
    polygons: list[Poly] | None  # set only when pycocotools decodes them to exactly `mask`
    full_area: int  # pixels the object would cover with nothing in front of it
    attributes: dict[str, Any] = field(default_factory=dict)  # what the drawing shows (attributes.toml)

    @property
    def area(self) -> int:
        return int(self.mask.sum())

    @property
    def occluded(self) -> bool:
        return self.area < self.full_area


@dataclass
class Scene:
    image: Image.Image  # RGB, size x size
    instances: list[SceneInstance]
    instance_map: np.ndarray  # int32 HxW: 0 background, i + 1 for instances[i]


@dataclass
class SampleResult:
    out: Path
    annotation_file: Path
    images_dir: Path
    images: int
    annotations: int
    per_class: dict[str, int]  # instances per class, all DEFAULT_CLASSES listed
    polygons: int
    rles: int
    size: int
    seed: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "annotation_file": str(self.annotation_file),
            "images_dir": str(self.images_dir),
            "images": self.images,
            "annotations": self.annotations,
            "per_class": dict(self.per_class),
            "polygons": self.polygons,
            "rles": self.rles,
            "size": self.size,
            "seed": self.seed,
            "seconds": round(self.seconds, 3),
        }


# --------------------------------------------------------------------------------------------
# Geometry: every shape is a polygon with coordinates rounded to 0.01 px, so the JSON holds the
# exact numbers that were rasterised.


def _r(v: float) -> float:
    return round(float(v), 2)


def _poly(points: list[tuple[float, float]]) -> Poly:
    return [_r(c) for point in points for c in point]


def rect(x0: float, y0: float, x1: float, y1: float) -> Poly:
    return _poly([(x0, y0), (x1, y0), (x1, y1), (x0, y1)])


def ellipse(
    cx: float, cy: float, rx: float, ry: float, rot: float = 0.0, a0: float = 0.0, a1: float = 2 * math.pi
) -> Poly:
    n = int(max(10, min(40, (rx + ry) / 2)))
    closed = abs(a1 - a0 - 2 * math.pi) < 1e-9
    steps = [a0 + (a1 - a0) * i / (n if closed else n - 1) for i in range(n)]
    cr, sr = math.cos(rot), math.sin(rot)
    pts = []
    for a in steps:
        x, y = rx * math.cos(a), ry * math.sin(a)
        pts.append((cx + x * cr - y * sr, cy + x * sr + y * cr))
    return _poly(pts)


def thick_line(x0: float, y0: float, x1: float, y1: float, width: float) -> Poly:
    length = math.hypot(x1 - x0, y1 - y0) or 1.0
    nx, ny = -(y1 - y0) / length * width / 2, (x1 - x0) / length * width / 2
    return _poly([(x0 + nx, y0 + ny), (x1 + nx, y1 + ny), (x1 - nx, y1 - ny), (x0 - nx, y0 - ny)])


def rounded_rect(x0: float, y0: float, x1: float, y1: float, radius: float) -> Poly:
    radius = min(radius, (x1 - x0) / 2, (y1 - y0) / 2)
    pts: list[tuple[float, float]] = []
    corners = ((x1 - radius, y0 + radius, -90), (x1 - radius, y1 - radius, 0))
    corners += ((x0 + radius, y1 - radius, 90), (x0 + radius, y0 + radius, 180))
    for cx, cy, start in corners:
        for k in range(5):
            a = math.radians(start + 90 * k / 4)
            pts.append((cx + radius * math.cos(a), cy + radius * math.sin(a)))
    return _poly(pts)


def _handle(cx: float, cy: float, rx: float, ry: float, thick: float, side: int) -> Poly:
    """A C-shaped band (outer half-ellipse, then the inner one back): a mug handle with its hole."""
    angles = np.linspace(-math.pi / 2, math.pi / 2, 12)
    outer = [(cx + side * rx * math.cos(a), cy + ry * math.sin(a)) for a in angles]
    inner = [(cx + side * (rx - thick) * math.cos(a), cy + (ry - thick) * math.sin(a)) for a in angles[::-1]]
    return _poly(outer + inner)


def _bounds(poly: Poly) -> tuple[float, float, float, float]:
    xs, ys = poly[0::2], poly[1::2]
    return min(xs), min(ys), max(xs), max(ys)


# --------------------------------------------------------------------------------------------
# Colours


def _hsv(h: float, s: float, v: float) -> RGB:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))
    return (r * 255.0, g * 255.0, b * 255.0)


def _scale(c: RGB, k: float) -> RGB:
    return (min(c[0] * k, 255.0), min(c[1] * k, 255.0), min(c[2] * k, 255.0))


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    # layouts near the image edge can invert a range; sorting keeps the draw well defined
    return float(rng.uniform(min(lo, hi), max(lo, hi)))


def _wood(rng: np.random.Generator) -> RGB:
    return _hsv(_u(rng, 0.055, 0.1), _u(rng, 0.4, 0.7), _u(rng, 0.45, 0.8))


def _dark(rng: np.random.Generator) -> RGB:
    return _hsv(_u(rng, 0, 1), _u(rng, 0.0, 0.15), _u(rng, 0.08, 0.25))


# --------------------------------------------------------------------------------------------
# Objects: parts (owning pixels) and details (colour only, inside the object's body)


@dataclass
class _Part:
    poly: Poly
    color: RGB
    shade: float = 0.08  # top-to-bottom brightness falloff inside the part
    role: str = ""  # what a mask convention may leave out ("pot", "base"); "" = always labelled


@dataclass
class _Detail:
    kind: str  # "poly" or "ellipse" (ellipse xy = bounding box)
    xy: list[float]
    color: RGB


@dataclass
class _Object:
    label: str
    parts: list[_Part] = field(default_factory=list)
    details: list[_Detail] = field(default_factory=list)
    attributes: dict[str, Any] = field(default_factory=dict)

    def part(self, poly: Poly, color: RGB, shade: float = 0.08, role: str = "") -> None:
        self.parts.append(_Part(poly, color, shade, role))

    def detail(self, poly: Poly, color: RGB) -> None:
        self.details.append(_Detail("poly", poly, color))

    def detail_ellipse(self, x0: float, y0: float, x1: float, y1: float, color: RGB) -> None:
        self.details.append(_Detail("ellipse", [x0, y0, x1, y1], color))


@dataclass
class _Desk:
    """Where things can stand on the desk top (a trapezoid seen from the front)."""

    x0: float
    x1: float
    back_y: float
    front_y: float
    inset: float  # how much narrower the back edge is on each side
    floor_y: float

    def x_range(self, y: float, margin: float) -> tuple[float, float]:
        t = (y - self.back_y) / max(self.front_y - self.back_y, 1e-6)
        inset = self.inset * (1 - t)
        return self.x0 + inset + margin, self.x1 - inset - margin


def _desk(rng: np.random.Generator, s: float) -> tuple[_Object, _Desk]:
    width = s * _u(rng, 0.58, 0.85)
    x0 = _u(rng, -0.04 * s, s - width + 0.04 * s)
    x1 = x0 + width
    floor_y = s * _u(rng, 0.8, 0.95)
    height = s * _u(rng, 0.3, 0.38)
    front_y = floor_y - height
    depth = s * _u(rng, 0.08, 0.12)
    back_y = front_y - depth
    inset = depth * _u(rng, 0.3, 0.5)
    thick = s * _u(rng, 0.022, 0.035)
    leg_w = s * _u(rng, 0.025, 0.04)
    wood = _wood(rng)
    metal_legs = rng.random() < 0.5
    legs = _dark(rng) if metal_legs else _scale(wood, 0.75)
    back_floor = floor_y - depth * 1.1
    obj = _Object("desk")
    for bx in (x0 + inset + leg_w * 0.5, x1 - inset - leg_w * 1.5):
        obj.part(rect(bx, front_y, bx + leg_w, back_floor), _scale(legs, 0.7), role="base")
    obj.part(_poly([(x0 + inset, back_y), (x1 - inset, back_y), (x1, front_y), (x0, front_y)]), wood, 0.05)
    obj.part(rect(x0, front_y, x1, front_y + thick), _scale(wood, 0.78), 0.0)
    if rng.random() < 0.45:  # drawer unit under one side
        dw = width * _u(rng, 0.22, 0.3)
        dx = x0 + leg_w if rng.random() < 0.5 else x1 - leg_w - dw
        dh = height * _u(rng, 0.35, 0.8)
        obj.part(rect(dx, front_y + thick, dx + dw, front_y + thick + dh), _scale(wood, 0.9), role="base")
        for k in range(1, 3):
            hy = front_y + thick + dh * (k - 0.5) / 2
            obj.detail(rect(dx + dw * 0.4, hy - s * 0.004, dx + dw * 0.6, hy + s * 0.004), _dark(rng))
    for fx in (x0 + leg_w * 0.3, x1 - leg_w * 1.3):
        obj.part(rect(fx, front_y + thick, fx + leg_w, floor_y), legs, 0.05, role="base")
    return obj, _Desk(x0, x1, back_y, front_y, inset, floor_y)


def _monitor(rng: np.random.Generator, s: float, cx: float, foot_y: float) -> _Object:
    w = s * _u(rng, 0.26, 0.38)
    h = w * _u(rng, 0.55, 0.65)
    lift = s * _u(rng, 0.04, 0.08)
    bottom = foot_y - lift
    bezel = _dark(rng)
    obj = _Object("monitor")
    base_w = w * _u(rng, 0.3, 0.42)
    obj.part(ellipse(cx, foot_y - s * 0.008, base_w / 2, s * 0.014), _scale(bezel, 1.2), 0.0)
    neck_w = w * _u(rng, 0.06, 0.1)
    obj.part(rect(cx - neck_w / 2, bottom - h * 0.2, cx + neck_w / 2, foot_y - s * 0.01), _scale(bezel, 1.3))
    obj.part(rect(cx - w / 2, bottom - h, cx + w / 2, bottom), bezel, 0.03)
    b = s * _u(rng, 0.008, 0.014)
    sx0, sy0, sx1, sy1 = cx - w / 2 + b, bottom - h + b, cx + w / 2 - b, bottom - b * 1.6
    screen = _hsv(_u(rng, 0.53, 0.65), _u(rng, 0.45, 0.85), _u(rng, 0.55, 0.9))
    obj.detail(rect(sx0, sy0, sx1, sy1), screen)
    for _ in range(int(rng.integers(0, 3))):  # application windows
        ww, wh = (sx1 - sx0) * _u(rng, 0.25, 0.55), (sy1 - sy0) * _u(rng, 0.25, 0.6)
        wx, wy = _u(rng, sx0, sx1 - ww), _u(rng, sy0, sy1 - wh)
        obj.detail(rect(wx, wy, wx + ww, wy + wh), _hsv(0, 0, _u(rng, 0.85, 0.98)))
        obj.detail(rect(wx, wy, wx + ww, wy + wh * 0.12), _hsv(_u(rng, 0, 1), 0.3, 0.6))
    return obj


def _laptop(rng: np.random.Generator, s: float, cx: float, foot_y: float) -> _Object:
    w = s * _u(rng, 0.2, 0.28)
    deck = s * _u(rng, 0.035, 0.05)
    lid_h = w * _u(rng, 0.55, 0.65)
    silver = rng.random() < 0.65
    body = _hsv(
        _u(rng, 0.55, 0.65), _u(rng, 0.0, 0.06), _u(rng, 0.65, 0.85) if silver else _u(rng, 0.3, 0.42)
    )
    back_y = foot_y - deck
    obj = _Object("laptop")
    lid_top = back_y - lid_h
    obj.part(
        _poly(
            [
                (cx - w * 0.47, lid_top),
                (cx + w * 0.47, lid_top),
                (cx + w * 0.45, back_y),
                (cx - w * 0.45, back_y),
            ]
        ),
        _scale(body, 0.9),
        0.03,
    )
    obj.part(
        _poly([(cx - w * 0.45, back_y), (cx + w * 0.45, back_y), (cx + w / 2, foot_y), (cx - w / 2, foot_y)]),
        body,
        0.0,
    )
    obj.part(rect(cx - w / 2, foot_y, cx + w / 2, foot_y + s * 0.008), _scale(body, 0.7), 0.0)
    b = w * 0.04
    obj.detail(rect(cx - w * 0.47 + b, lid_top + b, cx + w * 0.47 - b, back_y - b), (15.0, 15.0, 18.0))
    content = _hsv(_u(rng, 0, 1), _u(rng, 0.1, 0.5), _u(rng, 0.75, 0.95))
    obj.detail(rect(cx - w * 0.47 + 2 * b, lid_top + 2 * b, cx + w * 0.47 - 2 * b, back_y - 2 * b), content)
    ky = back_y + deck * 0.2
    obj.detail(
        _poly(
            [
                (cx - w * 0.38, ky),
                (cx + w * 0.38, ky),
                (cx + w * 0.4, foot_y - deck * 0.35),
                (cx - w * 0.4, foot_y - deck * 0.35),
            ]
        ),
        _scale(body, 0.55),
    )
    return obj


def _keyboard(rng: np.random.Generator, s: float, cx: float, front_y: float) -> _Object:
    w = s * _u(rng, 0.22, 0.3)
    depth = s * _u(rng, 0.035, 0.05)
    light = rng.random() < 0.25
    body = _hsv(0, 0, _u(rng, 0.78, 0.92)) if light else _dark(rng)
    keys = _hsv(0, 0, _u(rng, 0.55, 0.68)) if light else _scale(body, 2.2)
    back_y = front_y - depth
    slant = depth * 0.3
    obj = _Object("keyboard")
    obj.part(
        _poly(
            [
                (cx - w / 2 + slant, back_y),
                (cx + w / 2 - slant, back_y),
                (cx + w / 2, front_y),
                (cx - w / 2, front_y),
            ]
        ),
        body,
        0.0,
    )
    obj.part(rect(cx - w / 2, front_y, cx + w / 2, front_y + s * 0.008), _scale(body, 0.7), 0.0)
    rows, cols = 4, int(rng.integers(12, 16))
    for r in range(rows):
        y0 = back_y + depth * (0.12 + 0.8 * r / rows)
        y1 = back_y + depth * (0.12 + 0.8 * (r + 0.7) / rows)
        t = (y0 - back_y) / depth
        half = w / 2 - slant * (1 - t) - w * 0.04
        for c in range(cols):
            kx0 = cx - half + 2 * half * c / cols
            obj.detail(rect(kx0, y0, kx0 + 2 * half / cols * 0.75, y1), keys)
    return obj


def _mouse(rng: np.random.Generator, s: float, cx: float, cy: float) -> _Object:
    w = s * _u(rng, 0.07, 0.09)
    h = w * _u(rng, 0.62, 0.75)
    choice = rng.random()
    body = _dark(rng) if choice < 0.5 else _hsv(0, 0, _u(rng, 0.5, 0.92))
    obj = _Object("mouse")
    obj.part(ellipse(cx, cy, w / 2, h / 2, rot=_u(rng, -0.25, 0.25)), body, 0.2)
    obj.detail(
        rect(cx - w * 0.03, cy - h * 0.45, cx + w * 0.03, cy - h * 0.05),
        _scale(body, 0.55) if choice >= 0.5 else (110.0, 110.0, 115.0),
    )
    return obj


def _mug(rng: np.random.Generator, s: float, cx: float, foot_y: float) -> _Object:
    w = s * _u(rng, 0.062, 0.08)
    h = w * _u(rng, 1.1, 1.3)
    if rng.random() < 0.25:
        color = _hsv(0, 0, _u(rng, 0.88, 0.97))
    else:
        color = _hsv(
            rng.choice([0.0, 0.08, 0.14, 0.6, 0.95, 0.5]) + _u(rng, -0.02, 0.02),
            _u(rng, 0.55, 0.9),
            _u(rng, 0.7, 0.95),
        )
    top = foot_y - h
    rim = w * 0.16
    obj = _Object("mug")
    side = 1 if rng.random() < 0.5 else -1
    hx = cx + side * w / 2
    obj.part(_handle(hx, top + h * 0.48, w * 0.34, h * 0.28, w * 0.1, side), _scale(color, 0.85), 0.1)
    body = [(cx - w / 2, top)] + [(cx - w / 2, foot_y - rim)]
    body += [(cx + w / 2 * math.cos(a), foot_y - rim + rim * math.sin(a)) for a in np.linspace(math.pi, 0, 9)]
    body += [(cx + w / 2, top)]
    obj.part(_poly(body), color, 0.12)
    obj.part(ellipse(cx, top, w / 2, rim), _scale(color, 1.1), 0.0)
    obj.detail_ellipse(
        cx - w * 0.42, top - rim * 0.75, cx + w * 0.42, top + rim * 0.75, _hsv(0.07, 0.7, 0.25)
    )
    return obj


def _plant(rng: np.random.Generator, s: float, cx: float, foot_y: float, big: bool) -> _Object:
    pot_w = s * (_u(rng, 0.11, 0.16) if big else _u(rng, 0.07, 0.1))
    pot_h = pot_w * _u(rng, 0.8, 1.1)
    kind = rng.random()
    if kind < 0.55:
        pot = _hsv(_u(rng, 0.03, 0.07), _u(rng, 0.55, 0.75), _u(rng, 0.55, 0.8))
    elif kind < 0.8:
        pot = _hsv(0, 0, _u(rng, 0.85, 0.95))
    else:
        pot = _hsv(_u(rng, 0, 1), _u(rng, 0.1, 0.3), _u(rng, 0.35, 0.55))
    top = foot_y - pot_h
    obj = _Object("plant", attributes={"size": "large" if big else "small"})
    leaf_h = pot_h * _u(rng, 1.3, 2.0)
    green_h = _u(rng, 0.24, 0.4)
    n = int(rng.integers(5, 10))
    for k in range(n):
        a = -math.pi / 2 + _u(rng, -1.1, 1.1) * (0.4 + 0.6 * k / n)
        length = leaf_h * _u(rng, 0.6, 1.0)
        lx, ly = cx + math.cos(a) * length * 0.5, top + math.sin(a) * length * 0.5
        leaf = _hsv(green_h + _u(rng, -0.03, 0.03), _u(rng, 0.5, 0.85), _u(rng, 0.35, 0.7))
        obj.part(ellipse(lx, ly, length / 2, length * _u(rng, 0.12, 0.22), rot=a), leaf, 0.15)
    obj.part(
        _poly(
            [
                (cx - pot_w / 2, top),
                (cx + pot_w / 2, top),
                (cx + pot_w * 0.38, foot_y),
                (cx - pot_w * 0.38, foot_y),
            ]
        ),
        pot,
        0.12,
        role="pot",
    )
    obj.part(
        rect(cx - pot_w * 0.55, top - pot_h * 0.05, cx + pot_w * 0.55, top + pot_h * 0.12),
        _scale(pot, 1.08),
        0.0,
        role="pot",
    )
    return obj


def _lamp(rng: np.random.Generator, s: float, cx: float, foot_y: float, tall: bool) -> _Object:
    height = s * (_u(rng, 0.4, 0.55) if tall else _u(rng, 0.2, 0.3))
    side = 1 if rng.random() < 0.5 else -1
    palette = rng.random()
    if palette < 0.3:
        color = _dark(rng)
    elif palette < 0.5:
        color = _hsv(0, 0, _u(rng, 0.85, 0.95))
    else:
        color = _hsv(
            rng.choice([0.0, 0.12, 0.15, 0.5, 0.58]) + _u(rng, -0.02, 0.02),
            _u(rng, 0.6, 0.9),
            _u(rng, 0.6, 0.9),
        )
    obj = _Object("lamp", attributes={"kind": "floor" if tall else "desk"})
    base_w = s * _u(rng, 0.07, 0.1)
    arm_w = s * _u(rng, 0.012, 0.018)
    elbow = (cx - side * height * _u(rng, 0.1, 0.25), foot_y - height * _u(rng, 0.5, 0.65))
    head = (cx + side * height * _u(rng, 0.15, 0.3), foot_y - height)
    obj.part(thick_line(cx, foot_y - s * 0.01, elbow[0], elbow[1], arm_w), _scale(color, 0.8))
    obj.part(thick_line(elbow[0], elbow[1], head[0], head[1], arm_w), _scale(color, 0.8))
    obj.part(ellipse(elbow[0], elbow[1], arm_w * 0.9, arm_w * 0.9), _scale(color, 0.6), 0.0)
    obj.part(
        _poly(
            [
                (cx - base_w / 2, foot_y),
                (cx - base_w * 0.35, foot_y - s * 0.022),
                (cx + base_w * 0.35, foot_y - s * 0.022),
                (cx + base_w / 2, foot_y),
            ]
        ),
        color,
        0.1,
    )
    shade_w = s * _u(rng, 0.09, 0.13)
    shade_h = shade_w * _u(rng, 0.55, 0.8)
    hx, hy = head
    obj.part(
        _poly(
            [
                (hx - shade_w * 0.18, hy - shade_h * 0.2),
                (hx + shade_w * 0.18, hy - shade_h * 0.2),
                (hx + shade_w / 2, hy + shade_h * 0.8),
                (hx - shade_w / 2, hy + shade_h * 0.8),
            ]
        ),
        color,
        0.18,
    )
    obj.detail_ellipse(
        hx - shade_w * 0.4, hy + shade_h * 0.62, hx + shade_w * 0.4, hy + shade_h * 0.8, (255.0, 244.0, 190.0)
    )
    return obj


def _bookshelf(rng: np.random.Generator, s: float, x0: float, floor_y: float) -> _Object:
    w = s * _u(rng, 0.2, 0.3)
    h = s * _u(rng, 0.45, 0.7)
    top = floor_y - h
    frame_kind = rng.random()
    frame = (
        _wood(rng)
        if frame_kind < 0.6
        else _hsv(0, 0, _u(rng, 0.88, 0.96) if frame_kind < 0.8 else _u(rng, 0.12, 0.22))
    )
    obj = _Object("bookshelf")
    obj.part(rect(x0, top, x0 + w, floor_y), frame, 0.05)
    side = w * 0.07
    shelves = int(rng.integers(3, 6))
    inner_h = (h - side) / shelves
    back = _scale(frame, 0.55)
    for k in range(shelves):
        sy0, sy1 = top + side + k * inner_h, top + (k + 1) * inner_h
        obj.detail(rect(x0 + side, sy0, x0 + w - side, sy1), back)
        bx = x0 + side + _u(rng, 0, w * 0.08)
        while True:
            bw = w * _u(rng, 0.045, 0.09)
            if bx + bw > x0 + w - side - w * 0.05 or rng.random() < 0.06:
                break
            bh = (sy1 - sy0) * _u(rng, 0.6, 0.92)
            book = _hsv(_u(rng, 0, 1), _u(rng, 0.35, 0.8), _u(rng, 0.35, 0.85))
            obj.detail(rect(bx, sy1 - bh, bx + bw, sy1), book)
            bx += bw + w * _u(rng, 0.0, 0.02)
    return obj


def _chair(rng: np.random.Generator, s: float, cx: float, seat_y: float, floor_y: float) -> _Object:
    back_w = s * _u(rng, 0.17, 0.24)
    back_h = s * _u(rng, 0.17, 0.24)
    if rng.random() < 0.6:
        fabric = _hsv(_u(rng, 0, 1), _u(rng, 0.0, 0.2), _u(rng, 0.1, 0.28))
    else:
        fabric = _hsv(
            rng.choice([0.0, 0.6, 0.65, 0.35]) + _u(rng, -0.02, 0.02), _u(rng, 0.5, 0.8), _u(rng, 0.3, 0.5)
        )
    base = _dark(rng) if rng.random() < 0.7 else _hsv(0, 0, _u(rng, 0.6, 0.75))
    obj = _Object("chair")
    hub_y = floor_y - s * 0.04
    leg_w = s * _u(rng, 0.014, 0.02)
    spread = back_w * _u(rng, 0.5, 0.65)
    feet = [(-1.0, 0.3), (-0.55, 1.0), (0.55, 1.0), (1.0, 0.3), (0.0, -0.4)]
    for fx, fy in sorted(feet, key=lambda f: f[1]):
        px, py = cx + fx * spread, floor_y - s * 0.04 + fy * s * 0.03
        obj.part(thick_line(cx, hub_y, px, py, leg_w), base, 0.0)
        obj.part(ellipse(px, py + s * 0.01, s * 0.013, s * 0.011), (20.0, 20.0, 22.0), 0.0)
    obj.part(rect(cx - s * 0.012, seat_y, cx + s * 0.012, hub_y), _scale(base, 1.15), 0.0)
    seat_w = back_w * _u(rng, 1.05, 1.25)
    obj.part(ellipse(cx, seat_y, seat_w / 2, s * _u(rng, 0.025, 0.04)), _scale(fabric, 0.8), 0.1)
    obj.attributes["armrests"] = bool(rng.random() < 0.5)
    if obj.attributes["armrests"]:
        for sx in (-1, 1):
            ax = cx + sx * seat_w * 0.48
            obj.part(rect(ax - s * 0.008, seat_y - back_h * 0.35, ax + s * 0.008, seat_y), base, 0.0)
            obj.part(
                rect(ax - s * 0.02, seat_y - back_h * 0.4, ax + s * 0.02, seat_y - back_h * 0.33), base, 0.0
            )
    obj.part(rect(cx - s * 0.01, seat_y - back_h * 0.3, cx + s * 0.01, seat_y), _scale(base, 1.1), 0.0)
    back_bottom = seat_y - back_h * 0.2
    obj.part(
        rounded_rect(
            cx - back_w / 2, back_bottom - back_h, cx + back_w / 2, back_bottom, back_w * _u(rng, 0.1, 0.3)
        ),
        fabric,
        0.15,
    )
    return obj


# --------------------------------------------------------------------------------------------
# Background: wall, floor, window, picture (never annotated)


def _background(rng: np.random.Generator, s: int, horizon: float) -> Image.Image:
    image = Image.new("RGB", (s, s))
    draw = ImageDraw.Draw(image)
    wall = _hsv(_u(rng, 0, 1), _u(rng, 0.03, 0.25), _u(rng, 0.7, 0.95))
    draw.rectangle([0, 0, s, horizon], fill=tuple(int(c) for c in wall))
    floor_kind = rng.random()
    if floor_kind < 0.3:  # wooden planks, lighter or greyer than desks
        floor = _hsv(_u(rng, 0.06, 0.11), _u(rng, 0.2, 0.45), _u(rng, 0.55, 0.85))
    elif floor_kind < 0.7:  # carpet
        floor = _hsv(_u(rng, 0, 1), _u(rng, 0.0, 0.3), _u(rng, 0.35, 0.7))
    else:  # tiles / concrete
        floor = _hsv(0, 0, _u(rng, 0.5, 0.85))
    draw.rectangle([0, horizon, s, s], fill=tuple(int(c) for c in floor))
    if floor_kind < 0.3:
        plank = _scale(floor, 0.85)
        y = horizon
        step = s * 0.035
        while y < s:
            draw.line([0, y, s, y], fill=tuple(int(c) for c in plank), width=max(1, s // 256))
            step *= 1.18  # planks widen towards the camera
            y += step
    draw.rectangle([0, horizon - s * 0.015, s, horizon], fill=tuple(int(c) for c in _scale(wall, 0.85)))
    if rng.random() < 0.55:  # window
        ww, wh = s * _u(rng, 0.22, 0.38), s * _u(rng, 0.2, 0.32)
        wx, wy = _u(rng, 0, s - ww), _u(rng, s * 0.03, max(s * 0.04, horizon - wh - s * 0.1))
        frame = tuple(int(c) for c in _hsv(0, 0, _u(rng, 0.85, 0.98)))
        draw.rectangle([wx, wy, wx + ww, wy + wh], fill=frame)
        sky_top = _hsv(_u(rng, 0.55, 0.6), _u(rng, 0.3, 0.6), _u(rng, 0.85, 1.0))
        b = s * 0.012
        inner = (wx + b, wy + b, wx + ww - b, wy + wh - b)
        for k in range(8):  # sky gradient in bands
            y0 = inner[1] + (inner[3] - inner[1]) * k / 8
            y1 = inner[1] + (inner[3] - inner[1]) * (k + 1) / 8
            draw.rectangle(
                [inner[0], y0, inner[2], y1], fill=tuple(int(c) for c in _scale(sky_top, 1 + 0.03 * k))
            )
        mx, my = (wx + ww / 2), (wy + wh / 2)
        draw.rectangle([mx - b / 2, wy, mx + b / 2, wy + wh], fill=frame)
        draw.rectangle([wx, my - b / 2, wx + ww, my + b / 2], fill=frame)
    if rng.random() < 0.4:  # a framed picture
        pw, ph = s * _u(rng, 0.08, 0.16), s * _u(rng, 0.08, 0.14)
        px, py = _u(rng, 0, s - pw), _u(rng, s * 0.05, max(s * 0.06, horizon - ph - s * 0.2))
        draw.rectangle([px, py, px + pw, py + ph], fill=tuple(int(c) for c in _dark(rng)))
        art = _hsv(_u(rng, 0, 1), _u(rng, 0.2, 0.6), _u(rng, 0.4, 0.9))
        if pw >= 6 and ph >= 6:  # at small sizes the frame is all there is (PIL refuses x1 < x0)
            draw.rectangle([px + 3, py + 3, px + pw - 3, py + ph - 3], fill=tuple(int(c) for c in art))
    if rng.random() < 0.3:  # rug
        rw = s * _u(rng, 0.4, 0.7)
        rx, ry = _u(rng, 0, s - rw), _u(rng, horizon + s * 0.1, s * 0.95)
        rug = _hsv(_u(rng, 0, 1), _u(rng, 0.2, 0.5), _u(rng, 0.3, 0.6))
        draw.ellipse([rx, ry - s * 0.06, rx + rw, ry + s * 0.06], fill=tuple(int(c) for c in rug))
    return image


# --------------------------------------------------------------------------------------------
# Layout: which objects, where, in back-to-front order


def _layout(rng: np.random.Generator, s: int) -> tuple[float, list[_Object]]:
    """The wall/floor line and every object, in back-to-front paint order."""
    objects: list[_Object] = []
    desk_obj, desk = _desk(rng, s) if rng.random() < 0.9 else (None, None)
    if desk is not None:
        horizon = desk.floor_y - (desk.front_y - desk.back_y) * 1.1 - s * _u(rng, 0.01, 0.04)
    else:
        horizon = s * _u(rng, 0.45, 0.6)
    floor_back = horizon + s * 0.02
    if rng.random() < 0.5:  # bookshelf against the wall, often half behind the desk
        objects.append(_bookshelf(rng, s, _bookshelf_x(rng, s, desk), floor_back))
    floor_plant_first = rng.random() < 0.25
    if floor_plant_first:  # against the wall, so anything in front may hide part of it
        x = _u(rng, 0.08 * s, 0.92 * s)
        objects.append(_plant(rng, s, x, floor_back + s * _u(rng, 0.0, 0.03), big=True))
    if desk_obj is None or desk is None:
        return horizon, objects + _room_without_desk(rng, s, floor_back, floor_plant_first)
    objects.append(desk_obj)
    objects += _on_desk(rng, s, desk)
    if not floor_plant_first and rng.random() < 0.2:
        side_x = desk.x0 - s * 0.08 if rng.random() < 0.5 else desk.x1 + s * 0.08
        objects.append(_plant(rng, s, side_x, desk.floor_y + s * _u(rng, 0.0, 0.05), big=True))
    if rng.random() < 0.65:  # the chair stands in front of the desk and hides some of it
        cx = _u(rng, desk.x0 + 0.1 * s, desk.x1 - 0.1 * s)
        seat_y = desk.front_y + s * _u(rng, 0.08, 0.14)
        objects.append(_chair(rng, s, cx, seat_y, desk.floor_y + s * _u(rng, 0.04, 0.1)))
    return horizon, objects


def _bookshelf_x(rng: np.random.Generator, s: int, desk: _Desk | None) -> float:
    if desk is None:
        return _u(rng, -0.05 * s, s - 0.25 * s)
    if rng.random() < 0.5:
        return _u(rng, -0.05 * s, desk.x0 + 0.05 * s)
    return _u(rng, desk.x1 - 0.15 * s, s - 0.15 * s)


def _room_without_desk(
    rng: np.random.Generator, s: int, floor_back: float, floor_plant_first: bool
) -> list[_Object]:
    objects: list[_Object] = []
    if rng.random() < 0.6:
        x = _u(rng, 0.15 * s, 0.85 * s)
        objects.append(_lamp(rng, s, x, floor_back + s * _u(rng, 0.05, 0.15), tall=True))
    if rng.random() < 0.8:
        x = _u(rng, 0.25 * s, 0.75 * s)
        objects.append(_chair(rng, s, x, s * _u(rng, 0.55, 0.7), s * _u(rng, 0.85, 0.97)))
    if not floor_plant_first or rng.random() < 0.3:
        objects.append(_plant(rng, s, _u(rng, 0.08 * s, 0.92 * s), s * _u(rng, 0.8, 0.97), big=True))
    return objects


def _on_desk(rng: np.random.Generator, s: int, desk: _Desk) -> list[_Object]:
    """Screens, laptop, lamp, plant, keyboard, mouse and mug on the desk top, back to front."""
    depth = desk.front_y - desk.back_y
    on_desk: list[_Object] = []
    left, right = desk.x_range(desk.back_y, s * 0.05)
    # slots along the desk so things sit side by side instead of piling into one spot
    slots = list(np.linspace(left, right, 5))
    order = rng.permutation(len(slots)).tolist()

    def take_slot() -> float:
        idx = order.pop() if order else int(rng.integers(0, len(slots)))
        return float(slots[idx]) + _u(rng, -0.03 * s, 0.03 * s)

    has_monitor = rng.random() < 0.8
    if has_monitor:
        mx = (left + right) / 2 + _u(rng, -0.12, 0.12) * (right - left)
        if 2 in order:  # the middle slot is the screen's
            order.remove(2)
        on_desk.append(_monitor(rng, s, mx, desk.back_y + depth * _u(rng, 0.15, 0.4)))
        if rng.random() < 0.15:  # a second screen, further back
            offset = s * 0.34 * (1 if mx < s / 2 else -1)
            on_desk.insert(0, _monitor(rng, s, mx + offset, desk.back_y + depth * _u(rng, 0.1, 0.3)))
    if rng.random() < (0.3 if has_monitor else 0.75):
        on_desk.append(_laptop(rng, s, take_slot(), desk.back_y + depth * _u(rng, 0.55, 0.9)))
    if rng.random() < 0.45:
        on_desk.insert(0, _lamp(rng, s, take_slot(), desk.back_y + depth * _u(rng, 0.2, 0.5), tall=False))
    if rng.random() < 0.4:
        on_desk.insert(0, _plant(rng, s, take_slot(), desk.back_y + depth * _u(rng, 0.2, 0.6), big=False))
    kx = None
    if rng.random() < 0.75:
        kx = (left + right) / 2 + _u(rng, -0.12, 0.12) * (right - left)
        on_desk.append(_keyboard(rng, s, kx, desk.front_y - depth * _u(rng, 0.05, 0.2)))
    if rng.random() < (0.7 if kx is not None else 0.3):
        base = kx if kx is not None else take_slot()
        mouse_x = min(base + s * _u(rng, 0.17, 0.21), desk.x1 - s * 0.06)
        on_desk.append(_mouse(rng, s, mouse_x, desk.front_y - depth * _u(rng, 0.3, 0.5)))
    if rng.random() < 0.55:
        on_desk.append(_mug(rng, s, take_slot(), desk.back_y + depth * _u(rng, 0.5, 0.95)))
    return on_desk


# --------------------------------------------------------------------------------------------
# Rendering


def _rasterise(obj: _Object, s: int) -> list[np.ndarray]:
    """pycocotools' own rasters of the parts: these are the pixels painted, nothing else."""
    rles = mask_utils.frPyObjects([p.poly for p in obj.parts], s, s)
    stack = mask_utils.decode(rles)
    return [stack[:, :, k].astype(bool) for k in range(stack.shape[2])]


def _crop(poly: Poly, s: int) -> tuple[slice, slice] | None:
    x0, y0, x1, y1 = _bounds(poly)
    xa, ya = max(int(math.floor(x0)) - 1, 0), max(int(math.floor(y0)) - 1, 0)
    xb, yb = min(int(math.ceil(x1)) + 2, s), min(int(math.ceil(y1)) + 2, s)
    if xa >= xb or ya >= yb:
        return None
    return slice(ya, yb), slice(xa, xb)


def _paint(canvas: np.ndarray, obj: _Object, rasters: list[np.ndarray], body: np.ndarray, s: int) -> None:
    for part, raster in zip(obj.parts, rasters, strict=True):
        window = _crop(part.poly, s)
        if window is None:
            continue
        sub = raster[window]
        if not sub.any():
            continue
        rows = sub.shape[0]
        ramp = 1.0 + part.shade * np.linspace(1.0, -1.0, rows, dtype=np.float32)[:, None, None]
        color = np.asarray(part.color, dtype=np.float32)[None, None, :] * ramp
        target = canvas[window]
        target[sub] = np.broadcast_to(color, (*sub.shape, 3))[sub]
    if not obj.details:
        return
    # details: colour only, drawn in their own order, clipped to the object's own body
    ys, xs = np.nonzero(body)
    if len(ys) == 0:
        return
    y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    layer = Image.new("L", (x1 - x0, y1 - y0), 0)
    draw = ImageDraw.Draw(layer)
    colors: list[RGB] = []
    for detail in obj.details:
        if len(colors) >= 255:
            break
        colors.append(detail.color)
        index = len(colors)
        shifted = [v - (x0 if k % 2 == 0 else y0) for k, v in enumerate(detail.xy)]
        if detail.kind == "ellipse":
            if shifted[2] > shifted[0] and shifted[3] > shifted[1]:
                draw.ellipse(shifted, fill=index)
        else:
            draw.polygon(shifted, fill=index)
    ids = np.asarray(layer)
    inside = body[y0:y1, x0:x1]
    target = canvas[y0:y1, x0:x1]
    for index, color in enumerate(colors, start=1):
        sel = (ids == index) & inside
        target[sel] = color


def _finish(canvas: np.ndarray, rng: np.random.Generator, s: int) -> Image.Image:
    """Lighting gradient, colour cast, sensor noise, slight blur."""
    brightness = _u(rng, 0.82, 1.12)
    gx, gy = _u(rng, -0.25, 0.25), _u(rng, -0.15, 0.15)
    axis = np.linspace(-0.5, 0.5, s, dtype=np.float32)
    light = brightness * (1.0 + gx * axis[None, :] + gy * axis[:, None])
    cast = np.array([_u(rng, 0.94, 1.06) for _ in range(3)], dtype=np.float32)
    canvas *= light[:, :, None]
    canvas *= cast[None, None, :]
    sigma = _u(rng, 1.0, 5.0)
    canvas += rng.standard_normal(canvas.shape, dtype=np.float32) * sigma
    image = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8), "RGB")
    radius = _u(rng, 0.0, 0.9) * s / 512
    if radius > 0.25:
        image = image.filter(ImageFilter.GaussianBlur(radius))
    return image


def _as_rng(rng_or_seed: np.random.Generator | int) -> np.random.Generator:
    if isinstance(rng_or_seed, np.random.Generator):
        return rng_or_seed
    return np.random.default_rng(int(rng_or_seed))


def check_mask_conventions(masks: dict[str, str] | None) -> dict[str, frozenset[str]]:
    """`{"plant": "leaves"}` -> the part roles each class's labels leave out; UserError if unknown."""
    out: dict[str, frozenset[str]] = {}
    for name, convention in (masks or {}).items():
        options = MASK_CONVENTIONS.get(name)
        if options is None or convention not in options:
            known = ", ".join(f"{c}: {'|'.join(o)}" for c, o in MASK_CONVENTIONS.items())
            raise UserError(f"mask convention {name}={convention!r} is unknown; known: {known}")
        if options[convention]:
            out[name] = options[convention]
    return out


def _left_out(obj: _Object, rasters: list[np.ndarray], roles: frozenset[str]) -> np.ndarray | None:
    """Pixels of `obj` whose topmost own part has a role the label leaves out (None: nothing)."""
    if not roles or not any(part.role in roles for part in obj.parts):
        return None
    out = np.zeros_like(rasters[0]) if rasters else None
    for part, raster in zip(obj.parts, rasters, strict=True):  # later parts paint over earlier ones
        out[raster] = part.role in roles
    return out


def render_scene(
    rng_or_seed: np.random.Generator | int, size: int = 512, masks: dict[str, str] | None = None
) -> Scene:
    """One scene in memory: RGB image, per-instance class and exact visible mask.

    `masks` picks a mask convention per class (MASK_CONVENTIONS, e.g. {"plant": "leaves"}): the
    photo is the same, the labels leave out those parts (an object with nothing left is not labelled).
    """
    if size < MIN_SIZE:
        raise UserError(f"--size {size} is too small: scenes need at least {MIN_SIZE} px")
    leave_out = check_mask_conventions(masks)
    rng = _as_rng(rng_or_seed)
    s = int(size)
    horizon, objects = _layout(rng, s)
    background = _background(rng, s, horizon)
    rasters = [_rasterise(obj, s) for obj in objects]

    def ownership(keep: list[int]) -> np.ndarray:
        owner = np.zeros((s, s), dtype=np.int32)
        for k in keep:
            for raster in rasters[k]:
                owner[raster] = k + 1
        return owner

    bodies = [np.logical_or.reduce(r) if r else np.zeros((s, s), bool) for r in rasters]
    keep = list(range(len(objects)))
    owner = ownership(keep)
    visible = np.bincount(owner.ravel(), minlength=len(objects) + 1)
    min_area = MIN_VISIBLE_AREA * s * s
    dropped = [k for k in keep if visible[k + 1] < max(min_area, MIN_VISIBLE_FRACTION * int(bodies[k].sum()))]
    if dropped:
        keep = [k for k in keep if k not in dropped]
        owner = ownership(keep)

    canvas = np.asarray(background, dtype=np.float32).copy()
    for k in keep:
        _paint(canvas, objects[k], rasters[k], bodies[k], s)
    image = _finish(canvas, rng, s)

    instances: list[SceneInstance] = []
    instance_map = np.zeros((s, s), dtype=np.int32)
    for k in keep:
        mask = owner == k + 1
        body = bodies[k]
        left_out = _left_out(objects[k], rasters[k], leave_out.get(objects[k].label, frozenset()))
        if left_out is not None:
            mask, body = mask & ~left_out, body & ~left_out
        if not mask.any():
            continue
        polygons = None
        body_area = int(body.sum())
        if left_out is None and int(mask.sum()) == body_area and _inside(objects[k], s):
            polygons = [p.poly for p, r in zip(objects[k].parts, rasters[k], strict=True) if r.any()]
        instances.append(
            SceneInstance(
                objects[k].label, mask.astype(np.uint8), polygons, body_area, dict(objects[k].attributes)
            )
        )
        instance_map[mask] = len(instances)
    return Scene(image=image, instances=instances, instance_map=instance_map)


def _inside(obj: _Object, s: int) -> bool:
    """Polygons are only exported when no vertex leaves the image (tools clip those anyway)."""
    for part in obj.parts:
        x0, y0, x1, y1 = _bounds(part.poly)
        if x0 < 0 or y0 < 0 or x1 > s or y1 > s:
            return False
    return True


# --------------------------------------------------------------------------------------------
# Export


def scene_rng(seed: int, index: int) -> np.random.Generator:
    """The random stream of scene `index` in `write_sample(seed=seed)`: same scene, whatever n_images."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(index)]))


def _annotation(
    scene_inst: SceneInstance, ann_id: int, image_id: int, category_id: int, use_polygon: bool
) -> dict[str, Any]:
    rle = masklib.encode(scene_inst.mask)
    segmentation: Any = scene_inst.polygons if use_polygon and scene_inst.polygons else rle
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category_id,
        "segmentation": segmentation,
        "bbox": [round(v, 2) for v in masklib.bbox(rle)],
        "area": float(masklib.area(rle)),
        "iscrowd": 0,
        # As CVAT's COCO 1.0 export writes them: `occluded` on every object, then its class's attributes.
        "attributes": {"occluded": scene_inst.occluded, **scene_inst.attributes},
    }


def _check_not_someone_elses(out: Path) -> None:
    """Refuse a folder whose files a sample would replace or delete: an ingested data set (its
    images/scene_*.jpg would be rewritten or removed) or a folder with another annotations.json (a
    labelling tool's export, `label pull`'s) that this command did not write."""
    if (out / "dataset.json").is_file():
        raise UserError(
            f"{out} is an officescore data set (dataset.json); give another folder for the sample"
        )
    existing = out / "annotations.json"
    if not existing.is_file():
        return
    try:
        info = json.loads(existing.read_bytes()).get("info", {})
    except (OSError, ValueError, AttributeError):
        info = {}
    if not isinstance(info, dict) or info.get("contributor") != CONTRIBUTOR:
        raise UserError(
            f"{existing}: not written by `officescore sample` (a labelling tool's export?); "
            "give another folder for the sample"
        )


def write_sample(
    out: Path,
    n_images: int = 200,
    seed: int = 0,
    size: int = 512,
    reporter: Reporter = SILENT,
    masks: dict[str, str] | None = None,
) -> SampleResult:
    """Render `n_images` scenes into `out/images/` and write `out/annotations.json` (COCO).

    `masks`: mask conventions per class (see render_scene); the photos do not depend on them."""
    check_mask_conventions(masks)
    if n_images < 1:
        raise UserError(f"--images {n_images}: need at least 1 image")
    if size < MIN_SIZE:
        raise UserError(f"--size {size} is too small: scenes need at least {MIN_SIZE} px")
    if size * size > MAX_PIXELS:  # ingest and training would refuse such photos; rendering runs out of memory
        raise UserError(
            f"--size {size} is too large: a photo may have at most {MAX_PIXELS} pixels ({MAX_SIZE} px)"
        )
    if seed < 0:
        raise UserError(f"--seed {seed}: use 0 or more")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} is a file; give a folder to write the sample into")
    _check_not_someone_elses(out)
    images_dir = out / "images"
    make_folder(images_dir, "sample folder")  # an unwritable or blocked path: one line, before anything goes
    # An earlier sample's labels go before its photos are rewritten: a run stopped part way must not
    # leave them beside new scenes (ingest would read them as the new photos' labels).
    (out / "annotations.json").unlink(missing_ok=True)
    start = time.perf_counter()
    category_ids = {name: k for k, name in enumerate(DEFAULT_CLASSES, start=1)}
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    per_class: Counter[str] = Counter()
    names: set[str] = set()
    with reporter.stage("rendering scenes", total=n_images) as stage:
        for index in range(n_images):
            rng = scene_rng(seed, index)
            scene = render_scene(rng, size, masks)
            name = f"scene_{index:05d}.jpg"
            names.add(name)
            buffer = io.BytesIO()
            scene.image.save(buffer, "JPEG", quality=JPEG_QUALITY)
            atomic_write_bytes(images_dir / name, buffer.getvalue())
            image_id = index + 1
            images.append(
                {"id": image_id, "file_name": f"images/{name}", "width": size, "height": size, "license": 1}
            )
            for inst in scene.instances:
                use_polygon = inst.polygons is not None and rng.random() < POLYGON_PROBABILITY
                ann = _annotation(
                    inst, len(annotations) + 1, image_id, category_ids[inst.category], use_polygon
                )
                annotations.append(ann)
                per_class[inst.category] += 1
            stage.advance(1, status=f"{len(annotations)} objects")
    for stale in images_dir.iterdir():  # scenes left from an earlier, larger run
        if _SCENE_NAME.match(stale.name) and stale.name not in names:
            stale.unlink()
    document = {
        "info": {
            "description": "officescore synthetic home-office scenes",
            "version": __version__,
            "contributor": CONTRIBUTOR,
            "url": "",
            "seed": seed,
            **({"mask_conventions": dict(masks)} if check_mask_conventions(masks) else {}),
        },
        "licenses": [
            {"id": 1, "name": "CC0 1.0", "url": "https://creativecommons.org/publicdomain/zero/1.0/"}
        ],
        "categories": [
            {"id": cid, "name": name, "supercategory": "office"} for name, cid in category_ids.items()
        ],
        "images": images,
        "annotations": annotations,
    }
    annotation_file = out / "annotations.json"
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), allow_nan=False)
    atomic_write_bytes(annotation_file, (text + "\n").encode("utf-8"))
    polygons = sum(1 for a in annotations if isinstance(a["segmentation"], list))
    return SampleResult(
        out=out,
        annotation_file=annotation_file,
        images_dir=images_dir,
        images=n_images,
        annotations=len(annotations),
        per_class={name: per_class.get(name, 0) for name in DEFAULT_CLASSES},
        polygons=polygons,
        rles=len(annotations) - polygons,
        size=size,
        seed=seed,
        seconds=time.perf_counter() - start,
    )
