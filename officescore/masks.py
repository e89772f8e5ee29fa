"""Mask encodings (COCO compressed RLE with string counts) on top of pycocotools.mask."""

from __future__ import annotations

from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

Rle = dict[str, Any]  # {"size": [h, w], "counts": str}


def encode(mask: np.ndarray) -> Rle:
    """Binary HxW mask -> compressed RLE with `counts` as str (JSON-ready)."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode()}


def _to_pycoco(rle: Rle) -> dict[str, Any]:
    counts = rle["counts"]
    if isinstance(counts, list):  # uncompressed RLE
        h, w = rle["size"]
        return mask_utils.frPyObjects(rle, h, w)
    if isinstance(counts, str):
        counts = counts.encode()
    return {"size": list(rle["size"]), "counts": counts}


def decode(rle: Rle) -> np.ndarray:
    """Compressed or uncompressed RLE -> uint8 HxW mask."""
    return mask_utils.decode(_to_pycoco(rle)).astype(np.uint8)


def from_polygons(polygons: list[list[float]], height: int, width: int) -> Rle:
    """COCO polygons (lists of x, y) -> one merged compressed RLE."""
    rles = mask_utils.frPyObjects(polygons, height, width)
    merged = mask_utils.merge(rles)
    return {"size": [height, width], "counts": merged["counts"].decode()}


def area(rle: Rle) -> int:
    return int(mask_utils.area(_to_pycoco(rle)))


def bbox(rle: Rle) -> list[float]:
    """Tight [x, y, w, h] box of the mask (COCO convention)."""
    return [float(v) for v in mask_utils.toBbox(_to_pycoco(rle))]


def normalise(rle: Rle) -> Rle:
    """Any RLE form -> compressed RLE with str counts."""
    pyco = _to_pycoco(rle)
    counts = pyco["counts"]
    return {
        "size": [int(pyco["size"][0]), int(pyco["size"][1])],
        "counts": counts.decode() if isinstance(counts, bytes) else counts,
    }
