"""Click to mask: mean mask IoU after 1, 2, 3 clicks and from a box, the project's model vs GrabCut.

Scenes: `--scenes` synthetic scenes (officescore.sample, seed 7000) the model never saw, with exact
masks. The model: `--model`, or a ResNet18-FPN trained here from scratch on `--train-scenes` other
scenes (seed 1000) for `--epochs` epochs (about half an hour on 2 cores). No model: GrabCut.

Per object (objects of at least `--min-area` pixels): one positive click at the interior point farthest
from the object's edge, then up to 3 corrective clicks, each where a labeller would put it: at the
interior point of the largest error region (positive on a missed part, negative on a false one).
Boxes: the true box, and the true box with each edge moved by up to 10 % of the box's size (seeded).
Seconds per click: the first click on a photo (backbone + RPN + heads, or GrabCut) and the later ones,
on the scenes and on `--latency-size` px photos (the model fed at that size too).

    python bench/click_to_mask.py --out /tmp/bench_click [--model runs/train/x/weights/last.pt]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from benchkit import cpu_name, non_negative_int, positive_int, train_scene_model

# --------------------------------------------------------------------------- one object, one method


def interior(mask: np.ndarray) -> tuple[float, float]:
    """The mask's point farthest from its edge (pixel centre)."""
    import cv2

    distance = cv2.distanceTransform(np.pad(mask.astype(np.uint8), 1), cv2.DIST_L2, 5)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(distance)), distance.shape)
    return x + 0.5, y + 0.5


def corrective_click(predicted: np.ndarray, truth: np.ndarray) -> tuple[float, float, bool] | None:
    """Where a labeller clicks next: inside the largest error region (missed: positive, extra: negative)."""
    import cv2

    error = (predicted.astype(bool) ^ truth.astype(bool)).astype(np.uint8)
    count, parts, stats, _ = cv2.connectedComponentsWithStats(error, connectivity=4)
    if count <= 1:
        return None
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    x, y = interior(parts == largest)
    return x, y, bool(truth[int(y), int(x)])


def keypoint(x: float, y: float, name: str, size: tuple[int, int], positive: bool = True) -> dict[str, Any]:
    width, height = size
    value = {"x": x * 100 / width, "y": y * 100 / height, "width": 0.5, "keypointlabels": [name]}
    return {"type": "keypointlabels", "value": value, "is_positive": positive,
            "original_width": width, "original_height": height}  # fmt: skip


def rectangle(box: list[float], name: str, size: tuple[int, int]) -> dict[str, Any]:
    width, height = size
    x0, y0, x1, y1 = box
    value = {"x": x0 * 100 / width, "y": y0 * 100 / height, "width": (x1 - x0) * 100 / width,
             "height": (y1 - y0) * 100 / height, "rectanglelabels": [name]}  # fmt: skip
    return {"type": "rectanglelabels", "value": value, "original_width": width, "original_height": height}


def iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    union = float((a | b).sum())
    return float((a & b).sum()) / union if union else 1.0


def true_box(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


def jittered(
    box: list[float], rng: np.random.Generator, size: tuple[int, int], share: float = 0.1
) -> list[float]:
    """Each edge moved by up to `share` of the box's width / height."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    dx0, dx1 = rng.uniform(-share, share, 2) * w
    dy0, dy1 = rng.uniform(-share, share, 2) * h
    return [
        max(x0 + dx0, 0.0),
        max(y0 + dy0, 0.0),
        min(x1 + dx1, float(size[0])),
        min(y1 + dy1, float(size[1])),
    ]


def clicks_on(
    clicker: Any, rgb: np.ndarray, truth: np.ndarray, name: str, task: str, n: int
) -> tuple[list, list]:
    """IoU after 1..n clicks (the first at the interior, then corrective) and each click's seconds."""
    size = (rgb.shape[1], rgb.shape[0])
    x, y = interior(truth)
    results = [keypoint(x, y, name, size)]
    ious, seconds, methods = [], [], []
    for _ in range(n):
        start = time.perf_counter()
        reply = clicker.segment(rgb, results, task=task)
        seconds.append(time.perf_counter() - start)
        ious.append(iou(reply.mask, truth))
        methods.append(reply.method)
        nxt = corrective_click(reply.mask, truth)
        if nxt is None:  # nothing left to correct: the IoU stays
            ious += [ious[-1]] * (n - len(ious))
            break
        results.append(keypoint(nxt[0], nxt[1], name, size, nxt[2]))
    return ious, seconds, methods


# --------------------------------------------------------------------------- the bench


def scenes(first: int, count: int, size: int, least: int) -> list[tuple[int, np.ndarray, list[Any]]]:
    from officescore.sample import render_scene

    out = []
    for seed in range(first, first + count):
        scene = render_scene(seed, size=size)
        out.append((seed, np.asarray(scene.image), [i for i in scene.instances if i.area >= least]))
    return out


def measure(name: str, clicker: Any, photos: list, n_clicks: int, rng_seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(rng_seed)
    after = [[] for _ in range(n_clicks)]
    box_true, box_jitter, first, later, fallback = [], [], [], [], 0
    objects = 0
    for seed, rgb, instances in photos:
        size = (rgb.shape[1], rgb.shape[0])
        for k, inst in enumerate(instances):
            objects += 1
            task = f"{seed}-{k}"  # a task per object: its first click pays for the features
            ious, seconds, methods = clicks_on(clicker, rgb, inst.mask, inst.category, task, n_clicks)
            fallback += methods[0] != "model"
            for i, v in enumerate(ious):
                after[i].append(v)
            first.append(seconds[0])
            later += seconds[1:]
            box = true_box(inst.mask)
            box_true.append(
                iou(clicker.segment(rgb, [rectangle(box, inst.category, size)], task=task).mask, inst.mask)
            )
            moved = jittered(box, rng, size)
            box_jitter.append(
                iou(clicker.segment(rgb, [rectangle(moved, inst.category, size)], task=task).mask, inst.mask)
            )
    row = {"method": name, "objects": objects}
    row.update({f"iou_{i + 1}_clicks": round(float(np.mean(v)), 3) for i, v in enumerate(after)})
    row.update(
        iou_true_box=round(float(np.mean(box_true)), 3),
        iou_jittered_box=round(float(np.mean(box_jitter)), 3),
        first_click_s=round(float(np.mean(first)), 3),
        later_click_s=round(float(np.mean(later)), 3) if later else None,
        first_click_by_grabcut=fallback,
    )
    return row


def latency(clicker: Any, photos: list, clicks: int = 3) -> dict[str, Any]:
    """Seconds for the first click on a photo and for the clicks after it (same task)."""
    first, later = [], []
    for seed, rgb, instances in photos:
        size = (rgb.shape[1], rgb.shape[0])
        task = f"latency-{seed}"
        for k, inst in enumerate(instances[:clicks]):
            x, y = interior(inst.mask)
            start = time.perf_counter()
            clicker.segment(rgb, [keypoint(x, y, inst.category, size)], task=task)
            (first if k == 0 else later).append(time.perf_counter() - start)
    return {
        "first_click_s": round(float(np.mean(first)), 3),
        "later_click_s": round(float(np.mean(later)), 3),
    }


def machine() -> str:
    return f"{cpu_name()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model", type=Path, help="a checkpoint (default: train one here)")
    parser.add_argument("--train-scenes", type=positive_int, default=400)
    parser.add_argument("--epochs", type=positive_int, default=30)
    parser.add_argument("--size", type=int, default=256, help="scene size (px)")
    parser.add_argument("--scenes", type=positive_int, default=10)
    parser.add_argument("--min-area", type=non_negative_int, default=400)
    parser.add_argument("--clicks", type=positive_int, default=4, help="1 + corrective clicks")
    parser.add_argument("--latency-size", type=int, default=800)
    parser.add_argument("--latency-photos", type=positive_int, default=3)
    parser.add_argument("--threads", type=positive_int, default=2)
    parser.add_argument(
        "--latency-arch",
        action="append",
        default=[],
        help="also time an untrained model of this arch (e.g. the default maskrcnn_resnet50_fpn_v2) at its "
        "own input size, fp32 and --precision auto (speed does not depend on the weights)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)

    from officescore.label.interactive import Clicker
    from officescore.label.predict import load_predictor

    checkpoint = args.model or train_scene_model(args.out, args.train_scenes, args.size, args.epochs)
    loaded = load_predictor(checkpoint, "cpu", 0.3, None, "fp32")
    photos = scenes(7000, args.scenes, args.size, args.min_area)
    rows = [
        measure("model heads only", Clicker(loaded, polish="never"), photos, args.clicks),
        measure("model + GrabCut always", Clicker(loaded, polish="always"), photos, args.clicks),
        measure("model, GrabCut on its edge and corrections (default)", Clicker(loaded), photos, args.clicks),
        measure("same, box not refined", Clicker(loaded, refine=False), photos, args.clicks),
        measure("GrabCut (no model)", Clicker(None), photos, args.clicks),
    ]
    big = scenes(
        7100, args.latency_photos, args.latency_size, args.min_area * (args.latency_size // args.size) ** 2
    )
    speed = {
        "GrabCut": latency(Clicker(None), big),
        f"model (fed at {loaded.predictor.model_input_size()})": latency(Clicker(loaded), big),
    }
    loaded.predictor.set_img_size(args.latency_size)
    speed[f"model fed at {args.latency_size} px"] = latency(Clicker(loaded), big)
    for arch in args.latency_arch:
        from officescore import DEFAULT_CLASSES
        from officescore.model import build_model, save_checkpoint

        path = args.out / f"untrained-{arch}.pt"
        model = build_model(arch, list(DEFAULT_CLASSES), weights="none")
        save_checkpoint(
            path, model=model.state_dict(), arch=arch, classes=list(DEFAULT_CLASSES), model_kwargs={}, epoch=0
        )
        for precision in ("fp32", "auto"):
            untrained = load_predictor(path, "cpu", 0.3, None, precision)
            fed = untrained.predictor.model_input_size()
            label = f"untrained {arch}, {untrained.predictor.precision}, fed at {fed}"
            speed[label] = latency(Clicker(untrained), big)
        path.unlink()
    report = {
        "command": " ".join(sys.argv),
        "machine": machine(),
        "threads": args.threads,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "checkpoint": str(checkpoint),
        "rows": rows,
        "latency": {"photo_px": args.latency_size, **speed},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "click.json").write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
