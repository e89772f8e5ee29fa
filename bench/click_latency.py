"""Where a click's seconds go on a large photo, part by part: as it was done before and as now.

The parts of a click's answer that grow with the photo's pixels, each timed the way it was done
before and the way it is done now, in one process.

- candidates: a click's up to 6 candidate masks compared at the click. Before: each pasted at the
  photo's size (`heads._pasted`) and read there; now: read at the click (`heads._at_clicks`) and
  only the winner pasted. The two give the same mask (asserted).
- distance: how far a correcting click lies from the mask's edge. Before: the whole photo's distance
  transform; now: a window round the click (`clicker._to_edge`). The same distance (asserted).
- brush RLE of the answer (Label Studio's SDK codec): as it is, for scale.
- the SDK codec's import, in a fresh interpreter: paid by the first brush answer before the backend
  imported it at start.

CPU seconds (time.process_time), median of `--repeats`, one thread each (so that other work on the
machine hardly moves them).

    python bench/click_latency.py [--width 4000 --height 3000 --repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from benchkit import cpu_name

from officescore.label.interactive.clicker import _to_edge
from officescore.label.interactive.heads import CANDIDATES, _agreement, _at_clicks, _pasted
from officescore.label.interactive.prompt import Click
from officescore.label.regions import mask_to_brush


def seconds(work: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeats):
        start = time.process_time()
        result = work()
        times.append(time.process_time() - start)
    return statistics.median(times), result


def candidates(width: int, height: int) -> tuple[torch.Tensor, torch.Tensor, list[Click]]:
    """Nested boxes round the photo's centre (what a click's proposals look like), random masks."""
    generator = torch.Generator().manual_seed(0)
    probs = torch.rand((CANDIDATES, 1, 28, 28), generator=generator)
    cx, cy = width / 2, height / 2
    sides = [0.25 + 0.08 * i for i in range(CANDIDATES)]
    boxes = torch.tensor([[cx - s * width, cy - s * height, cx + s * width, cy + s * height] for s in sides])
    return probs, boxes, [Click(cx + 0.5, cy + 0.5)]


def pasted_all(probs: torch.Tensor, boxes: torch.Tensor, clicks: list[Click], width: int, height: int) -> Any:
    masks = _pasted(probs, boxes, width, height)
    values = np.array([[m[int(c.y), int(c.x)] for c in clicks] for m in masks])
    best = max(range(len(masks)), key=lambda i: _agreement(values[i], clicks))
    return masks[best]


def read_at_clicks(
    probs: torch.Tensor, boxes: torch.Tensor, clicks: list[Click], width: int, height: int
) -> Any:
    values = _at_clicks(probs, boxes, clicks, width, height)
    best = max(range(len(values)), key=lambda i: _agreement(values[i], clicks))
    return _pasted(probs[best : best + 1], boxes[best : best + 1], width, height)[0]


def codec_import() -> float:
    code = (
        "import time; t = time.process_time(); import label_studio_sdk.converter.brush; "
        "print(time.process_time() - t)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=4000)
    parser.add_argument("--height", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    if min(args.width, args.height, args.repeats) < 1:
        parser.error("--width, --height and --repeats must be at least 1")
    torch.set_num_threads(1)
    import cv2

    cv2.setNumThreads(1)
    width, height, repeats = args.width, args.height, args.repeats

    probs, boxes, clicks = candidates(width, height)
    before, old = seconds(lambda: pasted_all(probs, boxes, clicks, width, height), repeats)
    after, new = seconds(lambda: read_at_clicks(probs, boxes, clicks, width, height), repeats)
    assert np.array_equal(old, new), "the two ways chose different masks"
    rows = [("candidates (6) compared at a click", before, after)]

    mask = np.zeros((height, width), np.uint8)
    cv2.ellipse(mask, (width // 2, height // 2), (width // 4, height // 4), 0, 0, 360, 1, -1)
    x, y = width // 2 + width // 8, height // 2  # inside, an eighth of the photo from the edge
    enough = 0.25 * width / 2 / 3.0  # CORRECTION_REACH of the object's side / REACH_PER_DISTANCE
    before, whole = seconds(lambda: cv2.distanceTransform(mask, cv2.DIST_L2, 3)[y, x], repeats)
    after, window = seconds(lambda: _to_edge(mask, x, y, enough), repeats)
    assert min(float(whole), enough) <= window + 1e-4 and (whole > enough or abs(whole - window) < 1e-4)
    rows.append(("a correcting click's distance to the edge", before, after))

    brush, _ = seconds(lambda: mask_to_brush(mask), repeats)
    imported = statistics.median(codec_import() for _ in range(3))

    print(
        f"{width}x{height} px, {cpu_name()}, torch {torch.__version__}, 1 thread, "
        f"CPU s (median of {repeats})\n"
    )
    print("| part of a click's answer | before (s) | now (s) | ratio |")
    print("|---|---|---|---|")
    for name, old_s, new_s in rows:
        print(f"| {name} | {old_s:.3f} | {new_s:.4f} | {old_s / max(new_s, 1e-6):.0f}x |")
    print(f"| brush RLE of the answer (SDK) | {brush:.3f} | {brush:.3f} | 1x |")
    print(f"| SDK brush codec import (first brush answer) | {imported:.2f} | 0 (at backend start) | - |")


if __name__ == "__main__":
    main()
