"""The weight-free answer: OpenCV's GrabCut, initialised from a box (or a box grown around a click),
with the clicks as certain foreground / background seeds.

GrabCut runs on a crop around the box, reduced to at most WORK_SIDE px: its cost grows with the
pixels, and a labeller waits for it. The mask is scaled back to the photo and only its parts under
a positive click are kept (GrabCut leaves specks of similar colour around the object).

With `prior` (a model's mask probabilities), the model's mask replaces the box as the first guess:
this is how clicks that disagree with the model's mask correct it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from officescore.label.interactive.prompt import Click

WORK_SIDE = 320  # px: the longer side GrabCut works at
ITERATIONS = 4
MARGIN = 0.12  # the crop reaches this share of the box's size beyond it (GrabCut's background model)
SEED_RADIUS = 0.012  # a click marks a disc of this share of the crop's longer side (at least 2 px)
GROW = 0.35  # a click-only box: the flooded region's box grown by this share on each side
MIN_SIDE = 0.2  # ... and at least this share of the photo's shorter side
MAX_FLOOD = 0.12  # a flood over this share of the photo has run into the background
FLOOD_STEPS = (3, 6, 10, 16, 24)
FLOOD_SIDE = 400  # px: the longer side a click's region is flooded at
FLOOD_STEP = 6  # colour steps (0-255, per channel) a flood crosses between neighbouring pixels


def grabcut(
    rgb: np.ndarray,
    box: Sequence[float] | None,
    clicks: Sequence[Click] = (),
    prior: np.ndarray | None = None,
    free: np.ndarray | None = None,
    near_clicks: np.ndarray | None = None,
) -> np.ndarray:
    """A binary uint8 HxW mask of the object in box `(x0, y0, x1, y1)` (pixels; None: grown around the
    first positive click), refined by `clicks`; `prior` (HxW float 0-1) starts it instead of the box.
    With `free` (HxW bool) and a prior, only pixels where it is True may differ from the prior (a
    local correction), and the prior's parts away from the clicks are kept; the clicks' regions of
    similar colour then seed only inside `near_clicks` (HxW bool)."""
    import cv2

    height, width = rgb.shape[:2]
    positives = [c for c in clicks if c.positive]
    if box is None:
        if not positives:
            raise ValueError("grabcut needs a box or a positive click")
        box = grow_box(rgb, positives[0])
    x0, y0, x1, y1 = _with_clicks(box, clicks)
    mx, my = (x1 - x0) * MARGIN + 4, (y1 - y0) * MARGIN + 4
    cx0, cy0 = max(int(x0 - mx), 0), max(int(y0 - my), 0)
    cx1, cy1 = min(int(np.ceil(x1 + mx)), width), min(int(np.ceil(y1 + my)), height)
    crop = np.ascontiguousarray(rgb[cy0:cy1, cx0:cx1, ::-1])  # OpenCV wants BGR
    scale = min(1.0, WORK_SIDE / max(crop.shape[:2]))
    size = (max(int(round(crop.shape[1] * scale)), 1), max(int(round(crop.shape[0] * scale)), 1))
    small = cv2.resize(crop, size, interpolation=cv2.INTER_AREA) if scale < 1.0 else crop
    sx, sy = size[0] / crop.shape[1], size[1] / crop.shape[0]

    seeds = np.full(small.shape[:2], cv2.GC_BGD, dtype=np.uint8)
    fixed = np.zeros(seeds.shape, dtype=bool)  # pixels that keep the prior's answer
    bx0, by0 = int((x0 - cx0) * sx), int((y0 - cy0) * sy)
    bx1, by1 = int(np.ceil((x1 - cx0) * sx)), int(np.ceil((y1 - cy0) * sy))
    if prior is None:
        seeds[by0:by1, bx0:bx1] = cv2.GC_PR_FGD
    else:  # the model's mask: only likely, and the box (the model's guess too) is no hard limit
        guess = cv2.resize(prior[cy0:cy1, cx0:cx1].astype(np.float32), size, interpolation=cv2.INTER_LINEAR)
        seeds[:] = np.where(guess > 0.5, cv2.GC_PR_FGD, cv2.GC_PR_BGD)
        seeds[[0, -1], :] = cv2.GC_BGD
        seeds[:, [0, -1]] = cv2.GC_BGD
        if free is not None:  # a local correction: everywhere else the prior is certain
            fixed = (
                cv2.resize((~free[cy0:cy1, cx0:cx1]).astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
                > 0
            )
            seeds[fixed] = np.where(guess[fixed] > 0.5, cv2.GC_FGD, cv2.GC_BGD)
    if not (seeds == cv2.GC_BGD).any():  # the box fills the photo: its border is still likely background
        seeds[[0, -1], :] = np.where(seeds[[0, -1], :] == cv2.GC_PR_FGD, cv2.GC_PR_BGD, seeds[[0, -1], :])
        seeds[:, [0, -1]] = np.where(seeds[:, [0, -1]] == cv2.GC_PR_FGD, cv2.GC_PR_BGD, seeds[:, [0, -1]])
    box_area = max((bx1 - bx0) * (by1 - by0), 1)
    # A click's region of similar colour is a seed too; in a local correction only near the clicks (it
    # may run along the object's whole edge, which is free to change there too).
    for click in clicks if free is None or near_clicks is not None else ():
        region = flood(rgb, click)
        if free is not None and near_clicks is not None:
            region = region * near_clicks
        region = region[cy0:cy1, cx0:cx1]
        region = cv2.resize(region, size, interpolation=cv2.INTER_NEAREST) if scale < 1.0 else region
        if not click.positive:  # "not this": the click's whole region of similar colour is background
            seeds[region > 0] = cv2.GC_BGD
        elif region.sum() < 0.5 * box_area:  # "this too", unless the flood ran far beyond the object
            seeds[region > 0] = cv2.GC_FGD
    radius = max(2, int(round(SEED_RADIUS * max(size))))
    for click in clicks:
        centre = (int((click.x - cx0) * sx), int((click.y - cy0) * sy))
        cv2.circle(seeds, centre, radius, int(cv2.GC_FGD if click.positive else cv2.GC_BGD), -1)
    if (np.isin(seeds, (cv2.GC_FGD, cv2.GC_PR_FGD))).any() and (
        np.isin(seeds, (cv2.GC_BGD, cv2.GC_PR_BGD))
    ).any():
        background, foreground = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        cv2.setRNGSeed(0)  # GrabCut's k-means starts from OpenCV's global RNG: the same click, the same mask
        cv2.grabCut(small, seeds, None, background, foreground, ITERATIONS, cv2.GC_INIT_WITH_MASK)
    found = np.isin(seeds, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.float32)
    if scale < 1.0:  # back to the crop's size, smoothly: a nearest-pixel resize would leave steps
        found = cv2.resize(found, (crop.shape[1], crop.shape[0]), interpolation=cv2.INTER_LINEAR)
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[cy0:cy1, cx0:cx1] = found > 0.5
    if free is not None and prior is not None:  # the prior's parts away from the clicks stay (occlusion)
        return mask
    return keep_clicked_parts(mask, positives)


def keep_clicked_parts(mask: np.ndarray, positives: Sequence[Click]) -> np.ndarray:
    """The parts (8-connected) of `mask` under a positive click; the largest part when no click is."""
    import cv2

    count, parts = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    if count <= 2:
        return mask
    height, width = mask.shape
    hit = {int(parts[min(int(c.y), height - 1), min(int(c.x), width - 1)]) for c in positives} - {0}
    if not hit:
        hit = {1 + int(np.argmax(np.bincount(parts.ravel())[1:]))}
    return np.isin(parts, sorted(hit)).astype(np.uint8)


def flood(rgb: np.ndarray, click: Click, step: int = FLOOD_STEP) -> np.ndarray:
    """The region of similar colour around `click` (flooded on a blurred copy reduced to at most
    FLOOD_SIDE px; neighbours within `step` of each other): a superpixel grown from the click, as a
    binary uint8 mask at the photo's size."""
    import cv2

    height, width = rgb.shape[:2]
    scale = min(1.0, FLOOD_SIDE / max(height, width))
    region = _flood_small(_blurred(rgb, scale), (int(click.x * scale), int(click.y * scale)), step)
    if scale < 1.0:
        region = cv2.resize(region, (width, height), interpolation=cv2.INTER_NEAREST)
    return region


def _blurred(rgb: np.ndarray, scale: float) -> np.ndarray:
    import cv2

    height, width = rgb.shape[:2]
    size = (max(int(width * scale), 1), max(int(height * scale), 1))
    small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA) if scale < 1.0 else rgb.copy()
    return cv2.GaussianBlur(small, (5, 5), 0)


def _flood_small(small: np.ndarray, seed: tuple[int, int], step: int) -> np.ndarray:
    import cv2

    height, width = small.shape[:2]
    filled = np.zeros((height + 2, width + 2), dtype=np.uint8)
    seed = (min(max(seed[0], 0), width - 1), min(max(seed[1], 0), height - 1))
    steps = (step,) * 3
    cv2.floodFill(small.copy(), filled, seed, (0, 0, 0), steps, steps, 4 | cv2.FLOODFILL_MASK_ONLY | (1 << 8))
    return filled[1:-1, 1:-1]


def grow_box(rgb: np.ndarray, click: Click) -> tuple[float, float, float, float]:
    """A box around the object under `click`: the largest region flooded from the click (at growing
    colour steps) that stays under MAX_FLOOD of the photo, its box grown by GROW on each side and at
    least MIN_SIDE of the photo's shorter side (a click on texture floods only a few pixels)."""
    height, width = rgb.shape[:2]
    scale = min(1.0, FLOOD_SIDE / max(height, width))
    small = _blurred(rgb, scale)
    seed = (int(click.x * scale), int(click.y * scale))
    best = None
    for step in FLOOD_STEPS:
        region = _flood_small(small, seed, step)
        if region.sum() > MAX_FLOOD * region.size:
            break
        best = region
    x0, y0, x1, y1 = click.x, click.y, click.x, click.y
    if best is not None:
        ys, xs = np.nonzero(best)
        x0, x1, y0, y1 = xs.min() / scale, (xs.max() + 1) / scale, ys.min() / scale, (ys.max() + 1) / scale
    least = MIN_SIDE * min(width, height)
    gx = max((x1 - x0) * GROW, (least - (x1 - x0)) / 2, 0)
    gy = max((y1 - y0) * GROW, (least - (y1 - y0)) / 2, 0)
    return max(x0 - gx, 0.0), max(y0 - gy, 0.0), min(x1 + gx, float(width)), min(y1 + gy, float(height))


def _with_clicks(box: Sequence[float], clicks: Sequence[Click]) -> tuple[float, float, float, float]:
    """The box grown to hold every positive click (a click outside it says the object is larger)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    for click in clicks:
        if click.positive:
            x0, y0, x1, y1 = (
                min(x0, click.x - 2),
                min(y0, click.y - 2),
                max(x1, click.x + 2),
                max(y1, click.y + 2),
            )
    return x0, y0, x1, y1
