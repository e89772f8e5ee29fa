"""Attribute accuracy on val and the mAP cost of the attribute head, on the demo recipe.

Runs `scripts/demo.sh`'s recipe (sample at 192 px, seed 0, ingest, ResNet18-FPN from scratch,
batch 4, lr 0.02, fast RPN options) twice per epoch budget: with the attribute head (the data set
has labelled chair.armrests, lamp.kind, plant.size) and with `--no-attributes`. Then `eval` on val
(box IoU 0.5 matching for attributes) and one table: per attribute n / accuracy / macro F1, and
box / mask mAP of both runs.

    python bench/attributes.py --out /tmp/bench_attr --images 60 --epochs 10 [--epochs 30 ...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

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
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--epochs", type=int, action="append")
    args = parser.parse_args()
    out = args.out
    cli("sample", str(out / "sample"), "--images", str(args.images), "--size", "192", "--seed", "0")
    cli("ingest", str(out / "sample" / "annotations.json"), "--out", str(out / "dataset"), "--no-plot")
    rows = []
    for epochs in args.epochs or [10]:
        for head in ("--attributes", "--no-attributes"):
            name = f"e{epochs}{head.replace('--', '_')}"
            start = time.perf_counter()
            cli("train", "--data", str(out / "dataset"), "--epochs", str(epochs), "--name", name,
                "--project", str(out / "runs"), *RECIPE, head)  # fmt: skip
            seconds = time.perf_counter() - start
            metrics = json.loads(
                cli(
                    "eval",
                    "--model",
                    str(out / "runs" / name / "weights" / "last.pt"),
                    "--data",
                    str(out / "dataset"),
                    "--project",
                    str(out / "eval"),
                    "--name",
                    name,
                    "--json",
                )  # fmt: skip
            )
            rows.append((epochs, head, seconds, metrics))
    print("| epochs | head | train s | box mAP | mask mAP | attribute: n / accuracy / macro F1 |")
    print("| --- | --- | --- | --- | --- | --- |")
    for epochs, head, seconds, m in rows:
        attrs = "; ".join(
            f"{k} {v['n']} / {v['accuracy'] if v['accuracy'] is None else round(v['accuracy'], 3)}"
            f" / {v['macro_f1'] if v['macro_f1'] is None else round(v['macro_f1'], 3)}"
            for k, v in (m.get("attributes") or {}).items()
        )
        print(
            f"| {epochs} | {'on' if head == '--attributes' else 'off'} | {seconds:.0f} | "
            f"{m['bbox']['map']:.3f} | {m['segm']['map']:.3f} | {attrs or '-'} |"
        )


if __name__ == "__main__":
    main()
