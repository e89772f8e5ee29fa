"""Training and validating on phone-sized photos: seconds and peak memory against small photos.

The same `officescore sample` scenes (rendered at 512 px) are written twice as data sets: as they
are, and upscaled to `--photo-size` (default 3024 x 3024, 9 MP, a phone photo's pixels) with their
masks. One epoch of `maskrcnn_mobilenet_v3_fpn` from random weights at `--img-size`, then validation,
runs on each in its own subprocess (peak RSS = the child's VmHWM), and once more on the large photos
read whole, as before `OfficeDataset.decoded_for` (the "before" row, `decoded_for` switched off in
that child). Validation time is the `predict_coco` calls (the model's masks pasted onto the photos).

    .venv/bin/python bench/large_training.py
    .venv/bin/python bench/large_training.py --photos 16 --img-size 512
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchkit import cpu_name, positive_int  # bench/: first on sys.path when run as a script

REPO = Path(__file__).resolve().parent.parent


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(data: Path, runs: Path, img_size: int, whole: bool) -> None:
    """One case: train one epoch and validate; JSON on stdout."""
    import officescore.evaluate as evaluate
    from officescore.dataset import OfficeDataset
    from officescore.train import TrainConfig, train

    if whole:  # the photos read at their own size, as before decoded_for
        OfficeDataset.decoded_for = lambda self, *args, **kwargs: self  # type: ignore[method-assign]
    predicting = [0.0]
    predict = evaluate.predict_coco

    def timed(*args: object, **kwargs: object) -> object:
        start = time.perf_counter()
        try:
            return predict(*args, **kwargs)
        finally:
            predicting[0] += time.perf_counter() - start

    evaluate.predict_coco = timed  # type: ignore[assignment]
    config = TrainConfig(
        data=data,
        arch="maskrcnn_mobilenet_v3_fpn",
        weights="none",
        epochs=1,
        batch_size=2,
        img_size=img_size,
        workers=0,
        device="cpu",
        project=runs,
        name="bench",
        log="none",
    )
    start = time.perf_counter()
    result = train(config)
    total = time.perf_counter() - start
    print(
        json.dumps(
            {"train_s": result.seconds, "val_s": predicting[0], "total_s": total, "peak_mb": peak_rss_mb()}
        )
    )


def make_data_sets(folder: Path, photos: int, photo_size: int) -> dict[str, Path]:
    """The scenes as rendered and upscaled, each ingested into a data set."""
    from PIL import Image

    from officescore import masks as masklib

    python = [sys.executable, "-m", "officescore"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    sample = folder / "sample"
    render = [*python, "sample", str(sample), "-n", str(photos), "--size", "512"]
    subprocess.run(render, check=True, env=env, capture_output=True)
    export = json.loads((sample / "annotations.json").read_text())
    large = folder / "large"
    (large / "images").mkdir(parents=True)
    for image in export["images"]:
        with Image.open(sample / image["file_name"]) as photo:
            photo.resize((photo_size, photo_size), Image.Resampling.BILINEAR).save(
                large / image["file_name"], quality=90
            )
        image["width"] = image["height"] = photo_size
    for ann in export["annotations"]:
        segmentation = ann["segmentation"]
        if isinstance(segmentation, list):  # polygons, in the rendered scene's pixels
            segmentation = masklib.from_polygons(segmentation, 512, 512)
        ann["segmentation"] = masklib.resize(segmentation, photo_size, photo_size)
        ann["area"] = float(masklib.area(ann["segmentation"]))
        ann["bbox"] = [v * photo_size / 512 for v in ann["bbox"]]
    (large / "annotations.json").write_text(json.dumps(export))
    sets = {}
    for name, source in (("512 px", sample), (f"{photo_size} px", large)):
        sets[name] = folder / f"data-{source.name}"
        ingest = [*python, "ingest", str(source / "annotations.json"), "--out", str(sets[name])]
        subprocess.run(ingest, check=True, env=env, capture_output=True)
    return sets


def run_case(data: Path, runs: Path, img_size: int, whole: bool) -> dict[str, float]:
    command = [
        sys.executable,
        __file__,
        "--child",
        str(data),
        "--runs",
        str(runs),
        "--img-size",
        str(img_size),
    ]
    if whole:
        command.append("--whole")
    env = {**os.environ, "OMP_NUM_THREADS": "2", "PYTHONPATH": str(REPO)}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{data.name}: the child failed (exit {done.returncode}): {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--photos", type=positive_int, default=8, help="scenes (a fifth held out for val)")
    parser.add_argument("--photo-size", type=positive_int, default=3024, help="the large photos' side, px")
    parser.add_argument("--img-size", type=positive_int, default=256, help="the model's input size")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--runs", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--whole", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.runs, args.img_size, args.whole)
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sets = make_data_sets(folder, args.photos, args.photo_size)
        small, large = sets.values()
        cases = {
            "512 px photos": run_case(small, folder / "runs", args.img_size, whole=False),
            f"{args.photo_size} px photos": run_case(large, folder / "runs", args.img_size, whole=False),
            f"{args.photo_size} px photos, read whole (before)": run_case(
                large, folder / "runs", args.img_size, whole=True
            ),
        }
    base = cases["512 px photos"]
    print(f"maskrcnn_mobilenet_v3_fpn at {args.img_size} px, {args.photos} scenes, one epoch; {cpu_name()}")
    print(f"{'photos':<36} {'train s':>8} {'val s':>7} {'total s':>8} {'x 512 px':>9} {'peak MB':>8}")
    for name, case in cases.items():
        print(
            f"{name:<36} {case['train_s']:>8.1f} {case['val_s']:>7.1f} {case['total_s']:>8.1f} "
            f"{case['total_s'] / base['total_s']:>9.2f} {case['peak_mb']:>8.0f}"
        )


if __name__ == "__main__":
    main()
