"""Scoring phone-sized photos: time and peak memory of 12 MP and 108 MP JPEGs against 1 MP.

The same synthetic office scene is saved as a JPEG at about 1 MP (1155x866), 12 MP (4032x3024) and
108 MP (12000x9000) and scored by the same small Mask R-CNN (`maskrcnn_resnet18_fpn`, random
weights with the desk logit biased so about one detection passes `--conf 0.5`). Each case runs in its own
subprocess, so its peak RSS (VmHWM of the child's own address space: ru_maxrss would start from
the parent's size at fork) is its own; cases are
interleaved over the rounds to cancel noise from other work on the machine. Time is the
`Predictor.predict` call on the file (decode + model + mask encoding), after one warm-up call.

    .venv/bin/python bench/large_photos.py                     # demo model size (192 px)
    .venv/bin/python bench/large_photos.py --img-size 800 --rounds 3
    PYTHONPATH=/path/to/older/checkout .venv/bin/python bench/large_photos.py   # another version
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchkit import positive_int  # bench/: first on sys.path when run as a script

CASES = {"1 MP": (1155, 866), "12 MP": (4032, 3024), "108 MP": (12000, 9000)}


def peak_rss_mb() -> float:
    """This process's peak resident memory since exec (Linux VmHWM; ru_maxrss elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(photo: Path, checkpoint: Path, img_size: int, conf: float) -> None:
    """One case: load the model, warm up, time one `predict` on the photo; JSON on stdout."""
    from PIL import Image

    from officescore.infer import Predictor

    predictor = Predictor.load(checkpoint, device="cpu", conf=conf, img_size=img_size)
    predictor.predict(Image.new("RGB", (img_size, img_size), "grey"), workers=0)  # warm-up
    start = time.perf_counter()
    result = predictor.predict(photo, workers=0)[0]
    seconds = time.perf_counter() - start
    out = {"seconds": seconds, "error": result.error, "detections": len(result.detections)}
    out["size"] = [result.width, result.height]
    out["peak_mb"] = peak_rss_mb()
    print(json.dumps(out))


def make_inputs(folder: Path, img_size: int) -> tuple[Path, dict[str, Path]]:
    import torch
    from PIL import Image

    from officescore import DEFAULT_CLASSES
    from officescore.model import build_model, save_checkpoint
    from officescore.sample import render_scene

    torch.manual_seed(0)
    kwargs = {"min_size": img_size, "max_size": img_size}
    model = build_model("maskrcnn_resnet18_fpn", list(DEFAULT_CLASSES), weights="none", **kwargs)
    with torch.no_grad():  # about one desk above --conf 0.5, as the trained demo model finds
        model.roi_heads.box_predictor.cls_score.weight.mul_(3.0)
        model.roi_heads.box_predictor.cls_score.bias.zero_()
        model.roi_heads.box_predictor.cls_score.bias[1] = 2.0
    checkpoint = folder / "model.pt"
    save_checkpoint(
        checkpoint,
        model=model.state_dict(),
        arch="maskrcnn_resnet18_fpn",
        classes=list(DEFAULT_CLASSES),
        model_kwargs=kwargs,
        epoch=0,
    )
    scene = render_scene(0, size=512).image
    photos = {}
    for name, size in CASES.items():
        photos[name] = folder / f"{name.replace(' ', '')}.jpg"
        scene.resize(size, Image.Resampling.BILINEAR).save(photos[name], quality=90)
    return checkpoint, photos


def run_case(photo: Path, checkpoint: Path, img_size: int, conf: float) -> dict:
    command = [sys.executable, __file__, "--child", str(photo), "--checkpoint", str(checkpoint)]
    command += ["--img-size", str(img_size), "--conf", str(conf)]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "2"})
    if done.returncode != 0:
        raise SystemExit(f"{photo.name}: the child failed (exit {done.returncode}): {done.stderr[-2000:]}")
    data = json.loads(done.stdout.strip().splitlines()[-1])
    return data


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--img-size", type=int, default=192, help="model input size (the demo's 192)")
    parser.add_argument("--conf", type=float, default=0.5)
    parser.add_argument("--rounds", type=positive_int, default=3)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.checkpoint, args.img_size, args.conf)
        return
    with tempfile.TemporaryDirectory() as folder:
        checkpoint, photos = make_inputs(Path(folder), args.img_size)
        runs: dict[str, list[dict]] = {name: [] for name in CASES}
        for _ in range(args.rounds):
            for name, photo in photos.items():
                runs[name].append(run_case(photo, checkpoint, args.img_size, args.conf))
    base_s = statistics.median(r["seconds"] for r in runs["1 MP"])
    base_mb = statistics.median(r["peak_mb"] for r in runs["1 MP"])
    print(f"maskrcnn_resnet18_fpn at {args.img_size} px, --conf {args.conf}, median of {args.rounds} rounds")
    print(
        f"{'photo':<8} {'size':>11} {'kept':>5} {'s/photo':>8} {'x 1 MP':>7} {'peak MB':>8} {'+ MB':>7} error"
    )
    for name, results in runs.items():
        seconds = statistics.median(r["seconds"] for r in results)
        peak = statistics.median(r["peak_mb"] for r in results)
        first = results[0]
        size = "x".join(map(str, CASES[name]))
        print(
            f"{name:<8} {size:>11} {first['detections']:>5} {seconds:>8.2f} {seconds / base_s:>7.2f} "
            f"{peak:>8.0f} {peak - base_mb:>+7.0f} {first['error'] or ''}"
        )


if __name__ == "__main__":
    main()
