"""Masks <-> the two region kinds Label Studio edits: polygons (percent of the image) and brush RLE.

Polygons are traced on pixel edges, not pixel centres: OpenCV's contour runs through the centres of
the border pixels, so it is grown by half a pixel (shapely, square corners) and a traced and
re-rasterised mask keeps its border pixels; the grown outline is cut to the photo, so no point lies
past its edge (0 <= x <= width, 0 <= y <= height; 0-100 % in Label Studio). The outline is then
simplified (Douglas-Peucker, `simplify` pixels) so a labeller gets a few dozen draggable points
instead of a staircase. Label Studio polygons have no holes and one ring each: the largest part's
outer ring is kept (use brush masks to keep every part and hole exactly).

Brush masks use Label Studio's own RLE through label-studio-sdk's converter (`mask2rle`,
`decode_rle`); nothing here re-implements it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from officescore import masks as masklib
from officescore.masks import Rle

DEFAULT_SIMPLIFY = 1.0  # pixels; tolerance of the polygon simplification

Point = list[float]  # [x, y] in percent of the image width / height


def mask_outline(mask: np.ndarray, simplify: float = DEFAULT_SIMPLIFY) -> list[tuple[float, float]]:
    """The outer ring (pixel-edge coordinates, no repeated end point) of the largest part of a
    binary HxW mask, simplified by `simplify` pixels; [] for an empty mask."""
    import cv2
    import shapely
    from shapely.geometry import LineString, Point, Polygon, box

    binary = np.ascontiguousarray(np.asarray(mask) > 0, dtype=np.uint8)
    contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return []
    # The largest part by its pixel count, not its centre-line area (a 1-pixel line has area 0).
    largest = max(contours, key=lambda c: (cv2.contourArea(c), len(c)))
    centres = largest.reshape(-1, 2).astype(np.float64) + 0.5
    if len(centres) >= 3:
        shape = shapely.make_valid(Polygon(centres))
    else:  # a one-pixel dot or a straight one-pixel line
        shape = LineString(centres) if len(centres) == 2 else Point(centres[0])
    # Pixel centres -> pixel edges: grow by half a pixel, square corners (mitre) like the pixels.
    shape = shape.buffer(0.5, cap_style="square", join_style="mitre", mitre_limit=2.0)
    # A mitred tip on the photo's last column reaches up to 0.21 px past its edge (x = 192.207 on a
    # 192 px photo): Label Studio flags such a prediction invalid and ingest reports it outside the
    # image, so the outline is cut to the photo.
    height, width = binary.shape
    shape = shape.intersection(box(0.0, 0.0, float(width), float(height)))
    ring = Polygon(_largest_polygon(shape).exterior)
    if simplify > 0:
        simpler = ring.simplify(simplify, preserve_topology=True)
        # Tiny objects: a 1-pixel tolerance can cut a corner off; keep the exact ring then.
        if isinstance(simpler, Polygon) and ring.symmetric_difference(simpler).area <= 0.05 * ring.area:
            ring = simpler
    return [(float(x), float(y)) for x, y in list(ring.exterior.coords)[:-1]]


def _largest_polygon(shape: Any) -> Any:
    from shapely.geometry import Polygon

    if isinstance(shape, Polygon):
        return shape
    return max((g for g in shape.geoms if isinstance(g, Polygon)), key=lambda g: g.area)


def mask_to_points(
    mask: np.ndarray, width: int, height: int, simplify: float = DEFAULT_SIMPLIFY
) -> list[Point]:
    """Polygon points in percent of the image (Label Studio's `polygonlabels` value)."""
    return [
        [round(x * 100.0 / width, 4), round(y * 100.0 / height, 4)] for x, y in mask_outline(mask, simplify)
    ]


def points_to_rle(points: Sequence[Sequence[float]], width: int, height: int) -> Rle:
    """Percent polygon points back to a COCO RLE of the image's size."""
    flat = [v for x, y in points for v in (x * width / 100.0, y * height / 100.0)]
    return masklib.from_polygons([flat], height, width)


def points_to_pixels(points: Sequence[Sequence[float]], width: int, height: int) -> list[float]:
    """Percent polygon points to a flat COCO polygon [x0, y0, x1, y1, ...] in pixels."""
    return [round(v, 2) for x, y in points for v in (x * width / 100.0, y * height / 100.0)]


def mask_to_brush(mask: np.ndarray) -> list[int]:
    """A binary HxW mask as Label Studio brush RLE (RGBA bytes, alpha 255 where set)."""
    from label_studio_sdk.converter.brush import mask2rle

    return [int(v) for v in mask2rle((np.asarray(mask) > 0).astype(np.uint8) * 255)]


def brush_to_mask(rle: Sequence[int], width: int, height: int) -> np.ndarray:
    """Label Studio brush RLE back to a binary uint8 HxW mask (its alpha channel)."""
    from label_studio_sdk.converter.brush import decode_rle

    rgba = decode_rle(list(rle))
    if rgba.size != width * height * 4:
        raise ValueError(f"brush RLE holds {rgba.size} values, not {width}x{height}x4")
    return (rgba.reshape(height, width, 4)[:, :, 3] > 127).astype(np.uint8)
