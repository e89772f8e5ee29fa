"""Active-learning curve: mask mAP after training on N photos chosen by `select` vs N chosen at random.

Pool: `--unique` synthetic scenes plus `--copies` near-copies (brightness/contrast-jittered JPEG
re-encodes, same labels) of a few of them, 4 per scene, as a scraped pool has several shots of one desk.
All arms start from the same `--start` random photos and the same model trained on them from scratch
for `--start-iters` images. Each round adds `--step` photos (select: uncertainty + k-center + phash,
ranked by the arm's current model, labelled photos excluded; random: `--draws` independent seeded
draws) and fine-tunes the arm's model on all its labelled photos for `--iters` more images (epochs =
iters / N: the same compute whatever N, so the arms differ only in which photos they saw), same
settings and seed. mAP is mask AP@[.5:.95] (pycocotools) on `--test` separate scenes. Writes
bench_select.json and bench_select.png into --out. (Not bench/select.py: Python puts a script's folder
first on the import path, so a bench/select.py would shadow the standard library's `select`.)

    python bench/selection.py --out /tmp/bench_select
"""

from __future__ import annotations

import argparse
import io
import json
import random
import time
from pathlib import Path

import numpy as np
import torch
from audit import MODEL  # bench/audit.py (this folder): the same small synthetic-scene model settings
from PIL import Image, ImageEnhance

from officescore.curate.folds import subset_dataset
from officescore.curate.labels import load_split
from officescore.curate.predictions import predict_images
from officescore.curate.select import select
from officescore.evaluate import evaluate_coco
from officescore.infer import Predictor
from officescore.ingest import ingest_export
from officescore.sample import write_sample
from officescore.train import TrainConfig, train


def make_pool(root: Path, unique: int, copies: int, size: int, seed: int) -> Path:
    """An ingested data set: `unique` scenes + `copies` jittered near-copies of the first few."""
    export = root / "pool_export"
    write_sample(export, n_images=unique, seed=seed, size=size)
    coco = json.loads((export / "annotations.json").read_text())
    rng = random.Random(seed)
    originals = coco["images"][: max(1, copies // 4)]  # 4 near-copies of each
    next_image = max(i["id"] for i in coco["images"]) + 1
    next_ann = max(a["id"] for a in coco["annotations"]) + 1
    for n in range(copies):
        src = originals[n % len(originals)]
        image = Image.open(export / src["file_name"]).convert("RGB")
        image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.85, 1.15))
        image = ImageEnhance.Contrast(image).enhance(rng.uniform(0.9, 1.1))
        name = f"images/copy_{n:03d}.jpg"
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=rng.randint(70, 95))
        (export / name).write_bytes(buffer.getvalue())
        coco["images"].append({**src, "id": next_image, "file_name": name})
        for ann in [a for a in coco["annotations"] if a["image_id"] == src["id"]]:
            coco["annotations"].append({**ann, "id": next_ann, "image_id": next_image})
            next_ann += 1
        next_image += 1
    (export / "annotations.json").write_text(json.dumps(coco))
    # val_fraction 0: every photo is pool; ingest's near-duplicate groups are not needed here
    ingest_export(export / "annotations.json", out=root / "pool", val_fraction=0.0, seed=0)
    return root / "pool"


def train_on(
    pool, ids: list[int], root: Path, args: argparse.Namespace, iters: int, init: Path | None
) -> Path:
    """Fine-tune `init` (None: from scratch) on the photos `ids` for about `iters` images."""
    data = root / "data"
    subset_dataset(pool, set(ids), data)
    epochs = max(1, round(iters / len(ids)))
    config = TrainConfig(
        data=data, arch="maskrcnn_resnet18_fpn", weights=str(init) if init else "none", epochs=epochs,
        batch_size=4, lr=0.02, img_size=args.size, warmup_iters=20, workers=0, device="cpu",
        project=root / "runs", name="m", seed=0, val_every=epochs, model_kwargs=dict(MODEL),
    )  # fmt: skip
    return train(config).last_checkpoint


def test_map(checkpoint: Path, test) -> float:
    predictor = Predictor.load(checkpoint, device="cpu", conf=0.05)
    results = predict_images(predictor, test.images, test.classes)
    metrics = evaluate_coco(test.dataset / "train.json", results)
    return float(metrics["segm"]["map"] or 0.0) if metrics.get("segm") else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench_select"))
    parser.add_argument("--unique", type=int, default=80)
    parser.add_argument("--copies", type=int, default=40)
    parser.add_argument("--test", type=int, default=32)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--start", type=int, default=16)
    parser.add_argument("--step", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--draws", type=int, default=3)
    parser.add_argument("--start-iters", type=int, default=960, help="images the first model trains on")
    parser.add_argument("--iters", type=int, default=480, help="images each round fine-tunes on")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the figures were one thread)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    pool = load_split(make_pool(out, args.unique, args.copies, args.size, seed=2000), "train")
    write_sample(out / "test_export", n_images=args.test, seed=3000, size=args.size)
    ingest_export(out / "test_export" / "annotations.json", out=out / "test", val_fraction=0.0, seed=0)
    test = load_split(out / "test", "train")
    by_id = pool.by_id()
    ids = sorted(by_id)
    start = sorted(random.Random(0).sample(ids, args.start))

    def run_arm(arm: str, draw: int, first_ckpt: Path) -> list[tuple[int, float]]:
        labelled, ckpt, curve = list(start), first_ckpt, []
        for r in range(1, args.rounds + 1):
            rest = [i for i in ids if i not in set(labelled)]
            if arm == "select":
                lab_root = out / f"{arm}{draw}_r{r}_labelled"
                subset_dataset(pool, set(labelled), lab_root)
                run = select([by_id[i].path for i in rest], ckpt, args.step, labelled=lab_root, device="cpu")
                chosen = {Path(c.path).resolve() for c in run.chosen}
                new = [i for i in rest if by_id[i].path.resolve() in chosen]
            else:
                new = random.Random(1000 * draw + r).sample(rest, args.step)
            labelled = sorted(labelled + new)
            ckpt = train_on(pool, labelled, out / f"{arm}{draw}_r{r}", args, args.iters, ckpt)
            value = test_map(ckpt, test)
            copies = sum("copy_" in by_id[i].file_name for i in labelled)
            print(
                f"{arm} draw {draw} N={len(labelled)}: mask mAP {value:.4f} ({copies} near-copies)",
                flush=True,
            )
            curve.append((len(labelled), value))
        return curve

    first = train_on(pool, start, out / "start", args, args.start_iters, None)
    first_map = test_map(first, test)
    print(f"start N={len(start)}: mask mAP {first_map:.4f}", flush=True)
    curves = {"select": [run_arm("select", 0, first)]}
    curves["random"] = [run_arm("random", d, first) for d in range(args.draws)]
    sizes = [len(start)] + [n for n, _ in curves["select"][0]]
    sel = [first_map] + [v for _, v in curves["select"][0]]
    rand = np.array([[first_map] + [v for _, v in c] for c in curves["random"]])
    report = {
        "settings": vars(args) | {"out": str(args.out)},
        "N": sizes,
        "select_map": sel,
        "random_map_mean": rand.mean(axis=0).tolist(),
        "random_map_std": rand.std(axis=0).tolist(),
        "random_map_draws": rand.tolist(),
        "select_minus_random": (np.array(sel) - rand.mean(axis=0)).tolist(),
        "seconds": time.perf_counter() - started,
    }
    (out / "bench_select.json").write_text(json.dumps(report, indent=2))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(sizes, sel, "o-", label="select (uncertainty + k-center)")
    ax.errorbar(sizes, rand.mean(axis=0), yerr=rand.std(axis=0), fmt="s--", capsize=3,
                label=f"random (mean ± sd of {args.draws})")  # fmt: skip
    ax.set_xlabel("labelled photos")
    ax.set_ylabel("test mask mAP")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "bench_select.png", dpi=120)
    print(f"{'N':>4} {'select':>8} {'random':>14}")
    for n, s, m, sd in zip(sizes, sel, rand.mean(axis=0), rand.std(axis=0), strict=True):
        print(f"{n:>4} {s:8.4f} {m:8.4f} ± {sd:.4f}")
    print(f"wrote {out / 'bench_select.json'} and bench_select.png in {report['seconds']:.0f}s")


if __name__ == "__main__":
    main()
