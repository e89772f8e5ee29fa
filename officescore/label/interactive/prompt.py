"""What a labeller pointed at: Label Studio's interactive context as clicks and a box in pixels.

Label Studio 1.23 sends each smart-tool action as `params.context.result`, a list of regions:

    {"type": "keypointlabels", "value": {"x": 41.2, "y": 60.0, "width": 0.6, "keypointlabels": ["chair"]},
     "is_positive": true, "original_width": 800, "original_height": 600, ...}
    {"type": "rectanglelabels", "value": {"x": 10, "y": 20, "width": 30, "height": 40,
     "rectanglelabels": ["desk"]}, "original_width": 800, "original_height": 600, ...}

x, y, width and height are percent of the image. A keypoint without `is_positive` is positive (the
first click of a smart keypoint tool); `is_positive: false` is an "exclude" click (Alt + click).
The class is the one the labeller chose on the last region. Anything else in the list (regions of
other tools) is ignored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from officescore.errors import DataError
from officescore.images import MAX_PIXELS
from officescore.label.formats import pixels, turned_corners

KEYPOINT = "keypointlabels"
RECTANGLE = "rectanglelabels"


@dataclass(frozen=True)
class Click:
    x: float  # pixels of the original photo
    y: float
    positive: bool = True


@dataclass
class Prompt:
    """One interactive request: the chosen class, clicks and at most one box, in photo pixels."""

    class_name: str
    width: int  # the photo's size as Label Studio shows it (original_width / original_height)
    height: int
    clicks: list[Click] = field(default_factory=list)
    box: tuple[float, float, float, float] | None = None  # x0, y0, x1, y1

    @property
    def positives(self) -> list[Click]:
        return [c for c in self.clicks if c.positive]

    @property
    def negatives(self) -> list[Click]:
        return [c for c in self.clicks if not c.positive]


def parse_context(context: Mapping[str, Any] | None) -> Prompt:
    """`params.context` of an interactive request as a Prompt, or a DataError saying what is wrong."""
    results = (context or {}).get("result") if isinstance(context, Mapping) else None
    if not isinstance(results, Sequence) or isinstance(results, (str, bytes)):
        raise DataError("the interactive request has no context.result list (a click or a box)")
    regions = [
        r
        for r in results
        if isinstance(r, Mapping) and str(r.get("type", "")).lower() in (KEYPOINT, RECTANGLE)
    ]
    if not regions:
        raise DataError("the interactive request holds no smart keypoint or rectangle; click or draw a box")
    width, height = _size(regions)
    class_name = ""
    clicks: list[Click] = []
    box = None
    for region in regions:
        kind = str(region["type"]).lower()
        value = region.get("value")
        if not isinstance(value, Mapping):
            raise DataError(f"the {kind} region {region.get('id')} has no value")
        labels = value.get(kind) or []
        if isinstance(labels, str):  # a hand-made request: one name, not a list of one
            labels = [labels]
        if not isinstance(labels, Sequence):
            raise DataError(f"the {kind} region's {kind} must be a list of class names")
        if labels:
            class_name = str(labels[-1])
        x, y = _number(value, "x", kind), _number(value, "y", kind)
        if kind == KEYPOINT:
            _inside(x, y, kind)
            clicks.append(
                Click(x * width / 100.0, y * height / 100.0, region.get("is_positive", True) is not False)
            )
        else:
            w, h = _number(value, "width", kind), _number(value, "height", kind)
            if value.get("rotation"):  # a turned box: its upright bounds, not its unturned self
                x, y, w, h = _upright(x, y, w, h, _number(value, "rotation", kind), width, height)
            x0, y0, x1, y1 = max(x, 0.0), max(y, 0.0), min(x + w, 100.0), min(y + h, 100.0)
            if x1 <= x0 or y1 <= y0:
                raise DataError(
                    f"the box ({x:.1f}, {y:.1f}, {w:.1f} x {h:.1f} %) lies outside the image or is empty; "
                    "draw it on the object"
                )
            box = (x0 * width / 100.0, y0 * height / 100.0, x1 * width / 100.0, y1 * height / 100.0)
    if not class_name:
        raise DataError("the click or box carries no label; choose a class before clicking")
    if box is None and not any(c.positive for c in clicks):  # exclude clicks alone mark no object
        raise DataError("an exclude (Alt) click alone marks no object; click on the object first")
    return Prompt(class_name, width, height, clicks, box)


def _upright(
    x: float, y: float, w: float, h: float, degrees: float, width: int, height: int
) -> tuple[float, float, float, float]:
    """The upright bounds (percent) of a box Label Studio turned `degrees` clockwise about its
    top-left corner; in pixels, since a percent of the width and of the height differ."""
    corners = turned_corners(x * width / 100, y * height / 100, w * width / 100, h * height / 100, degrees)
    xs, ys = [cx for cx, _ in corners], [cy for _, cy in corners]
    left, top = min(xs) * 100.0 / width, min(ys) * 100.0 / height
    return left, top, max(xs) * 100.0 / width - left, max(ys) * 100.0 / height - top


def _size(regions: Sequence[Mapping[str, Any]]) -> tuple[int, int]:
    for region in regions:
        width, height = pixels(region.get("original_width")), pixels(region.get("original_height"))
        if width * height > MAX_PIXELS:  # the mask is made at this size: a made-up one must not OOM
            raise DataError(f"the click's photo size {width}x{height} is larger than any photo read here")
        if width > 0 and height > 0:
            return width, height
    raise DataError("the click or box has no original_width / original_height (the photo's size)")


def _number(value: Mapping[str, Any], key: str, kind: str) -> float:
    try:
        number = float(value[key])
    except (KeyError, TypeError, ValueError):
        raise DataError(f"the {kind} region has no number {key!r} in its value") from None
    if number != number or abs(number) == float("inf"):
        raise DataError(f"the {kind} region's {key} is not a finite number")
    return number


def _inside(x: float, y: float, kind: str) -> None:
    if not (0.0 <= x <= 100.0 and 0.0 <= y <= 100.0):
        raise DataError(f"the click at ({x:.1f} %, {y:.1f} %) is outside the image; click on the object")
