"""Forwards and time of `score` over a folder of mixed photo sizes: batched in input order against
batched by padded size (what `Predictor.predict` does since session 45).

`Predictor` runs one forward per padded size in a batch, so a photo's detections never depend on
the photos beside it. A folder whose sizes alternate (square, 4:3, 3:4, ...) then needed about a
forward per photo in input order; batched by padded size it needs ceil(photos / batch size) per
size. Synthetic office scenes at three shapes, interleaved, are scored by a seeded Mask R-CNN
(random weights, fp32 on the CPU by default); both orders run in one process, alternating over the
rounds, and the detections of both must agree. Time: the median `predict` call.

    .venv/bin/python bench/score_batching.py                          # 12 photos, batch 4
    .venv/bin/python bench/score_batching.py --photos 24 --batch-size 8 --device cuda
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchkit import cpu_name, positive_int  # noqa: E402 - bench/, first on sys.path when run as a script

SHAPES = ((1.0, 1.0), (4 / 3, 1.0), (1.0, 4 / 3))  # (width, height) over the model's size


def input_order(items: Any, batch_size: int, model_size: Any) -> list[list[int]]:
    """Batches as they were before: consecutive photos, whatever their size."""
    return [list(range(i, min(i + batch_size, len(items)))) for i in range(0, len(items), batch_size)]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--arch", default="maskrcnn_mobilenet_v3_fpn")
    parser.add_argument("--img-size", type=positive_int, default=512)
    parser.add_argument("--photos", type=positive_int, default=12)
    parser.add_argument("--batch-size", type=positive_int, default=4)
    parser.add_argument("--rounds", type=positive_int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    import torch

    from officescore import DEFAULT_CLASSES
    from officescore.infer import Predictor
    from officescore.infer import predictor as module
    from officescore.model import build_model
    from officescore.sample import render_scene

    torch.manual_seed(0)
    model = build_model(args.arch, DEFAULT_CLASSES, weights="none", min_size=args.img_size, max_size=1333)
    predictor = Predictor(
        model.eval().to(args.device), [None, *DEFAULT_CLASSES], torch.device(args.device), 0.05
    )
    forwards: list[int] = []
    model.register_forward_pre_hook(lambda m, inputs: forwards.append(len(inputs[0])))
    grouped = module._batches
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for i in range(args.photos):
            sx, sy = SHAPES[i % len(SHAPES)]
            path = Path(folder) / f"scene_{i}.jpg"
            scene = render_scene(i, size=args.img_size).image
            scene.resize((round(args.img_size * sx), round(args.img_size * sy))).save(path, quality=92)
            paths.append(path)
        predictor.predict(paths[:1], workers=0)  # warm-up
        seconds: dict[str, list[float]] = {"input order": [], "by padded size": []}
        counts, found = {}, {}
        for _ in range(args.rounds):
            for name, batches in (("input order", input_order), ("by padded size", grouped)):
                module._batches = batches
                forwards.clear()
                start = time.perf_counter()
                results = predictor.predict(paths, batch_size=args.batch_size, workers=0)
                seconds[name].append(time.perf_counter() - start)
                counts[name] = len(forwards)
                found[name] = [[(d.class_name, round(d.score, 3)) for d in r.detections] for r in results]
        module._batches = grouped
    assert found["input order"] == found["by padded size"], "the two orders found different objects"
    print(f"{args.arch} at {args.img_size} px, {args.photos} photos of {len(SHAPES)} shapes, batch size")
    print(f"{args.batch_size}, {args.device} ({cpu_name()}), median of {args.rounds}")
    print("| batching | forwards | s per folder |")
    print("| --- | ---: | ---: |")
    for name, times in seconds.items():
        print(f"| {name} | {counts[name]} | {statistics.median(times):.2f} |")


if __name__ == "__main__":
    main()
