"""What one `label backend --train` job costs on this machine, per candidate default.

A job fine-tunes on every labelled photo not held out and validates each epoch (officescore.train,
as `officescore.label.trainjob` calls it, with the job's settings). Here: `--photos` synthetic
scenes (`--val` of them held out) at 1024 px, one training run per candidate (architecture, image
size, bf16 autocast or float32) for `--epochs` epochs; reported: seconds per epoch (training and
validation), the whole run, and the ratio to the first candidate (the default), all in one process
so the ratios hold whatever the machine's load. Weights are random: the speed of a step does not
depend on them, but the layout does. A job warm-starts from a model that came from COCO, which keeps
its first backbone layers (and, for MobileNetV3 and ResNet18/50 v1, its BatchNorm) frozen: the
"pretrained" candidates train a random model in that layout (a checkpoint recording it).
`--only 0,6` runs a subset of the candidates (their indices in CANDIDATES).

    python bench/label_job.py --out /tmp/bench_label_job
    python bench/label_job.py --out /tmp/bench_label_job --photos 100 --epochs 1
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from benchkit import cpu_name, held_out_fraction, positive_int

from officescore.ingest import ingest_export
from officescore.label.trainer import DEFAULT_ARCH, DEFAULT_IMG_SIZE
from officescore.model import build_model, save_checkpoint
from officescore.sample import write_sample
from officescore.train import TrainConfig, train
from officescore.train.setup import cpu_bf16_helps

CANDIDATES = [  # (arch, img_size, bf16, layout): the default first
    (DEFAULT_ARCH, DEFAULT_IMG_SIZE, True, "random"),
    (DEFAULT_ARCH, DEFAULT_IMG_SIZE, False, "random"),
    (DEFAULT_ARCH, 800, True, "random"),
    ("maskrcnn_resnet18_fpn", DEFAULT_IMG_SIZE, True, "random"),
    ("maskrcnn_resnet50_fpn_v2", DEFAULT_IMG_SIZE, True, "random"),
    ("maskrcnn_resnet50_fpn_v2", 800, True, "random"),
    (DEFAULT_ARCH, DEFAULT_IMG_SIZE, True, "pretrained"),
    ("maskrcnn_resnet50_fpn_v2", DEFAULT_IMG_SIZE, True, "pretrained"),
]


def start_weights(arch: str, layout: str, data: Path, out: Path) -> str:
    """`--weights` for a candidate: none, or a random checkpoint in a pretrained start's layout."""
    if layout == "random":
        return "none"
    path = out / f"start_{arch}_{layout}.pt"
    if not path.is_file():
        classes = [c["name"] for c in json.loads((data / "train.json").read_text())["categories"]]
        model = build_model(arch, classes, weights="none", pretrained_layout=True)
        save_checkpoint(path, model=model.state_dict(), arch=arch, classes=classes, pretrained_layout=True)
    return str(path)


def only_candidates(parser: argparse.ArgumentParser, only: str) -> list[int]:
    """--only's indices, checked before minutes of drawing 1024 px photos; all when not given."""
    if not only:
        return list(range(len(CANDIDATES)))
    try:
        chosen = [int(i) for i in only.split(",")]
    except ValueError:
        parser.error(f"--only: comma-separated indices of CANDIDATES, got {only!r}")
    if any(not 0 <= n < len(CANDIDATES) for n in chosen):
        parser.error(f"--only: indices run from 0 to {len(CANDIDATES) - 1}, got {only}")
    return chosen


def scenes_data(out: Path, photos: int, val: int) -> Path:
    """`photos` synthetic 1024 px scenes as a data set, `val` held out; a re-run with the same
    --photos and --val reuses it (with another --val it would train on the old split)."""
    val_fraction = held_out_fraction(val, photos, "--photos")
    data = out / f"data_{photos}_{val}"
    if not (data / "dataset.json").is_file():
        write_sample(out / "export", n_images=photos, seed=31, size=1024)
        ingest_export(out / "export" / "annotations.json", out=data, val_fraction=val_fraction, seed=0)
    return data


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--photos", type=positive_int, default=40, help="labelled photos in the project")
    parser.add_argument("--val", type=positive_int, default=8, help="of them held out")
    parser.add_argument("--epochs", type=positive_int, default=1)
    parser.add_argument("--batch-size", type=positive_int, default=2, help="the backend's default")
    parser.add_argument("--threads", type=positive_int, default=os.cpu_count() or 1)
    parser.add_argument("--only", default="", help="indices of CANDIDATES to run, e.g. 0,6")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    chosen = only_candidates(parser, args.only)

    data = scenes_data(args.out, args.photos, args.val)
    rows = []
    for n in chosen:
        arch, size, bf16, layout = CANDIDATES[n]
        weights = start_weights(arch, layout, data, args.out)
        config = TrainConfig(
            data=data, arch=arch, weights=weights, epochs=args.epochs, batch_size=args.batch_size,
            img_size=size, amp=bf16, workers=0, device="cpu", val_every=1, log="none",
            project=args.out / "runs", name=f"c{n}", seed=0,
        )  # fmt: skip
        started = time.perf_counter()
        result = train(config)
        seconds = time.perf_counter() - started
        trained = sum(float(r["seconds"]) for r in result.history)
        rows.append(
            {
                "arch": arch,
                "img_size": size,
                "layout": layout,
                "bf16": bf16 and cpu_bf16_helps(),
                "train_s_per_epoch": trained / args.epochs,
                "run_s": seconds,
                "img_per_s": sum(float(r["img_per_s"]) for r in result.history) / args.epochs,
            }
        )
        base = rows[0]["run_s"]
        print(
            f"{arch} {size}px bf16={rows[-1]['bf16']} {layout}: run {seconds:.1f} s ({seconds / base:.2f}x)",
            flush=True,
        )
    report = {
        "photos": args.photos,
        "val": args.val,
        "epochs": args.epochs,
        "threads": args.threads,
        "cpu": cpu_name(),
        "rows": rows,
    }
    (args.out / "label_job.json").write_text(json.dumps(report, indent=1))
    print(table(report))


def table(report: dict) -> str:
    base = report["rows"][0]["run_s"]
    trained = report["photos"] - report["val"]
    lines = [
        f"{trained} train + {report['val']} val photos, {report['epochs']} epoch(s), "
        f"{report['threads']} threads",
        "",
        "| arch | img px | bf16 | layout | train s/epoch | img/s | run s (train + val) | vs first |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['arch']} | {r['img_size']} | {'yes' if r['bf16'] else 'no'} | {r.get('layout', 'random')} "
            f"| {r['train_s_per_epoch']:.1f} | {r['img_per_s']:.2f} | {r['run_s']:.1f} "
            f"| {r['run_s'] / base:.2f}x |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
