"""Attribute accuracy on val and the mAP cost of the attribute head, on the demo recipe.

Runs `scripts/demo.sh`'s recipe (sample at 192 px, seed 0, ingest, ResNet18-FPN from scratch,
batch 4, lr 0.02, fast RPN options) twice per epoch budget: with the attribute head (the data set
has labelled chair.armrests, lamp.kind, plant.size) and with `--no-attributes`. Then `eval` on val
(box IoU 0.5 matching for attributes) and one table: per attribute n / accuracy / macro F1, and
box / mask mAP of both runs.

    python bench/attributes.py --out /tmp/bench_attr --images 60 --epochs 10 [--epochs 30 ...]
        [--heldout 100] [--on-only 30]

`--heldout N` also evaluates every model on N fresh scenes (seed 1, 95 % of them in val): the demo's
val split holds only 12 photos. `--on-only E` trains E epochs with the head only (no mAP pair).
A run folder that already has weights/last.pt is reused, not retrained.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from benchkit import non_negative_int, positive_int  # bench/: first on sys.path when run as a script

RECIPE = [
    "--arch", "maskrcnn_resnet18_fpn", "--weights", "none", "--img-size", "192", "--batch-size", "4",
    "--lr", "0.02", "--workers", "0", "--warmup-iters", "20",
    "--model-opt", "rpn_pre_nms_top_n_train=300,rpn_post_nms_top_n_train=100",
    "--model-opt", "rpn_pre_nms_top_n_test=300,rpn_post_nms_top_n_test=100",
    "--model-opt", "box_batch_size_per_image=64,rpn_batch_size_per_image=64",
]  # fmt: skip


def cli(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "officescore", *args], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"officescore {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--images", type=positive_int, default=60)
    parser.add_argument("--epochs", type=positive_int, action="append")
    parser.add_argument("--on-only", type=positive_int, action="append", default=[])
    parser.add_argument("--heldout", type=non_negative_int, default=0)
    args = parser.parse_args()
    out = args.out
    if not (out / "dataset" / "dataset.json").is_file():
        cli("sample", str(out / "sample"), "--images", str(args.images), "--size", "192", "--seed", "0")
        cli("ingest", str(out / "sample" / "annotations.json"), "--out", str(out / "dataset"), "--no-plot")
    sets = {"val": out / "dataset"}
    if args.heldout:
        sets["heldout"] = out / "heldout"
        if not (out / "heldout" / "dataset.json").is_file():
            sample = out / "heldout_sample"
            cli("sample", str(sample), "--images", str(args.heldout), "--size", "192", "--seed", "1")
            ingest = ["--out", str(out / "heldout"), "--val-fraction", "0.95", "--no-plot"]
            cli("ingest", str(sample / "annotations.json"), *ingest)
    plan = [(e, h) for e in args.epochs or [10] for h in ("--attributes", "--no-attributes")]
    plan += [(e, "--attributes") for e in args.on_only]
    rows = []
    for epochs, head in plan:
        name = f"e{epochs}{head.replace('--', '_')}"
        weights = out / "runs" / name / "weights" / "last.pt"
        start = time.perf_counter()
        if not weights.is_file():
            run = ["--epochs", str(epochs), "--name", name, "--project", str(out / "runs"), *RECIPE, head]
            cli("train", "--data", str(out / "dataset"), *run)
        seconds = time.perf_counter() - start
        for where, data in sets.items():
            where_to = ["--project", str(out / "eval"), "--name", f"{name}_{where}", "--json"]
            metrics = json.loads(cli("eval", "--model", str(weights), "--data", str(data), *where_to))
            rows.append((epochs, head, seconds, where, metrics))
    print("| epochs | head | train s | eval on | box mAP | mask mAP | attribute: n / accuracy / macro F1 |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for epochs, head, seconds, where, m in rows:
        attrs = "; ".join(
            f"{k} {v['n']} / {v['accuracy'] if v['accuracy'] is None else round(v['accuracy'], 3)}"
            f" / {v['macro_f1'] if v['macro_f1'] is None else round(v['macro_f1'], 3)}"
            for k, v in (m.get("attributes") or {}).items()
        )
        print(
            f"| {epochs} | {'on' if head == '--attributes' else 'off'} | {seconds:.0f} | {where} | "
            f"{m['bbox']['map']:.3f} | {m['segm']['map']:.3f} | {attrs or '-'} |"
        )


if __name__ == "__main__":
    main()
