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


def iou(a: list[Rle], b: list[Rle]) -> np.ndarray:
    """Mask IoU of every RLE in `a` with every one in `b` ([len(a), len(b)]), computed on the RLEs
    without decoding them; 0 where the two masks differ in size."""
    if not a or not b:
        return np.zeros((len(a), len(b)))
    found = mask_utils.iou([_to_pycoco(r) for r in a], [_to_pycoco(r) for r in b], [0] * len(b))
    return np.maximum(np.asarray(found, dtype=np.float64).reshape(len(a), len(b)), 0.0)  # -1: sizes differ


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


def resize(rle: Rle, width: int, height: int) -> Rle:
    """The mask at width x height (nearest, so it stays 0s and 1s); as it is when already that size."""
    if list(rle["size"]) == [height, width]:
        return rle
    from PIL import Image

    mask = Image.fromarray(decode(rle) * 255).resize((width, height), Image.Resampling.NEAREST)
    return encode((np.asarray(mask) > 127).astype(np.uint8))


def normalise(rle: Rle) -> Rle:
    """Any RLE form -> compressed RLE with str counts."""
    pyco = _to_pycoco(rle)
    counts = pyco["counts"]
    return {
        "size": [int(pyco["size"][0]), int(pyco["size"][1])],
        "counts": counts.decode() if isinstance(counts, bytes) else counts,
    }


def rle_counts(counts: str) -> np.ndarray | None:
    """COCO's compressed counts string -> int64 run lengths (vectorised rleFrString), None if malformed.

    Each run is a little-endian varint of 5-bit groups in characters 48..111 (0x20 = more follows,
    0x10 in the last group = negative); from the fourth run on, runs are deltas to the run two back.
    """
    if not counts.isascii():
        return None
    chars = np.frombuffer(counts.encode("ascii"), dtype=np.uint8).astype(np.int64) - 48
    if chars.size == 0:
        return np.zeros(0, dtype=np.int64)
    if chars.min() < 0 or chars.max() >= 64 or chars[-1] & 0x20:
        return None
    last = (chars & 0x20) == 0  # the final character of each run
    ends = np.flatnonzero(last)
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts + 1
    if lengths.max() > 8:  # over 40 bits: no image is that large
        return None
    position = np.arange(chars.size) - np.repeat(starts, lengths)
    values = np.add.reduceat((chars & 0x1F) << (5 * position), starts)
    negative = (chars[ends] & 0x10) != 0
    values[negative] -= np.left_shift(1, 5 * lengths[negative])
    for first in (3, 4):  # delta chains: odd runs from index 1, even runs from index 2
        chain = values[first - 2 :: 2]
        values[first - 2 :: 2] = np.cumsum(chain)
    return values


def scaled_up(mask: np.ndarray, width: int, height: int) -> tuple[Rle, int]:
    """COCO RLE (and pixel area) of the binary `mask` scaled to `width` x `height` (nearest pixel).

    Built from the small mask's runs, never as a full-size array: each small column's runs, their
    row ends scaled, repeat for every output column that samples it. A 108 MP photo's mask costs
    its runs, not its pixels.
    """
    in_height, in_width = mask.shape
    sx, sy = width / in_width, height / in_height
    # Output pixel X samples small pixel floor((X + 0.5) / sx), as a nearest-pixel resize does, so
    # small row r starts at output row ceil(r * sy - 0.5).
    source = np.minimum(((np.arange(width) + 0.5) / sx).astype(np.int64), in_width - 1)
    first = np.searchsorted(source, np.arange(in_width + 1))  # output columns of small column c
    row_at = np.clip(np.ceil(np.arange(in_height + 1) * sy - 0.5), 0, height).astype(np.int64)
    row_at[-1] = height
    columns = np.zeros((in_width, in_height + 2), dtype=np.int8)  # COCO runs go down columns
    columns[:, 1:-1] = mask.T
    steps = np.diff(columns, axis=1)  # +1 where a run of ones starts, -1 one past its end
    starts, ends = [], []
    for c in np.flatnonzero(steps.any(axis=1)):
        offsets = np.arange(first[c], first[c + 1], dtype=np.int64)[:, None] * height
        starts.append((offsets + row_at[np.flatnonzero(steps[c] > 0)]).ravel())
        ends.append((offsets + row_at[np.flatnonzero(steps[c] < 0)]).ravel())
    if not starts:
        return normalise({"size": [height, width], "counts": [height * width]}), 0
    start, end = np.concatenate(starts), np.concatenate(ends)
    joined = start[1:] == end[:-1]  # a run ending at a column's foot continues at the next's head
    start = np.concatenate([start[:1], start[1:][~joined]])
    end = np.concatenate([end[:-1][~joined], end[-1:]])
    edges = np.concatenate([[0], np.stack([start, end], axis=1).ravel(), [width * height]])
    rle = normalise({"size": [height, width], "counts": np.diff(edges).tolist()})
    return rle, int((end - start).sum())
