"""Active-learning curve: mask mAP after training on N photos chosen by `select` vs N chosen at random.

Pool (default, low redundancy): `--unique` synthetic scenes plus `--copies` near-copies
(brightness/contrast-jittered JPEG re-encodes, same labels) of a few of them, 4 per scene.

Pool with `--scraped`, closer to what image search returns: `--unique` scenes, the first `--dup-scenes`
of them with `--dup-min`..`--dup-max` near-copies each (cropped 0-6 % a side, resized 0.8-1.25x,
brightness/contrast changed, JPEG quality 60-95; labels cropped and resized with the pixels, so the
copies are correctly labelled and some escape the 10-bit phash), `--sparse` scenes with at most two
objects (the generator's own scenes, picked from a separate render; ~5 % of its scenes are like that)
and `--empty` off-topic photos with nothing to label (the generator's wall, floor, lighting and noise,
no objects). Still synthetic: the copies are of one generator's scenes, and "off-topic" means an empty
room, not a cat or a kitchen. Each round prints what every arm has labelled (distinct scenes,
near-copies, sparse and empty photos, objects).

All arms start from the same `--start` random photos and the same model trained on them from scratch
for `--start-iters` images. Each round adds `--step` photos (select: uncertainty + k-center + phash,
ranked by the arm's current model, labelled photos excluded; random: `--draws` independent seeded
draws) and fine-tunes the arm's model on all its labelled photos for `--iters` more images (epochs =
iters / N: the same compute whatever N, so the arms differ only in which photos they saw), same
settings and seed. mAP is mask AP@[.5:.95] (pycocotools) on `--test` separate scenes. Writes
bench_select.json and bench_select.png into --out. (Not bench/select.py: Python puts a script's folder
first on the import path, so a bench/select.py would shadow the standard library's `select`.)

    python bench/selection.py --out /tmp/bench_select
    python bench/selection.py --scraped --unique 40 --out /tmp/bench_select_scraped
"""

from __future__ import annotations

import argparse
import io
import json
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from benchkit import (  # this folder: the small synthetic-scene model settings the benches share
    SCENE_MODEL,
    non_negative_int,
    positive_int,
)
from PIL import Image, ImageEnhance

from officescore import masks as masklib
from officescore import sample
from officescore.curate.folds import subset_dataset
from officescore.curate.labels import load_split
from officescore.curate.predictions import predict_images
from officescore.curate.select import select
from officescore.evaluate import evaluate_coco
from officescore.infer import Predictor
from officescore.ingest import ingest_export
from officescore.sample import write_sample
from officescore.train import TrainConfig, train


def make_pool(root: Path, unique: int, copies: int, size: int, seed: int) -> tuple[Path, dict[str, Origin]]:
    """An ingested data set: `unique` scenes + `copies` jittered near-copies of the first few."""
    export = root / "pool_export"
    write_sample(export, n_images=unique, seed=seed, size=size)
    coco = json.loads((export / "annotations.json").read_text())
    origin = {i["file_name"]: Origin(i["file_name"], "unique") for i in coco["images"]}
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
        origin[name] = Origin(src["file_name"], "copy")
        for ann in [a for a in coco["annotations"] if a["image_id"] == src["id"]]:
            coco["annotations"].append({**ann, "id": next_ann, "image_id": next_image})
            next_ann += 1
        next_image += 1
    (export / "annotations.json").write_text(json.dumps(coco))
    # val_fraction 0: every photo is pool; ingest's near-duplicate groups are not needed here
    ingest_export(export / "annotations.json", out=root / "pool", val_fraction=0.0, seed=0)
    return root / "pool", origin


@dataclass(frozen=True)
class Origin:
    """Where a pool photo came from: its scene (the original's file name) and what kind of photo it is."""

    scene: str
    kind: str  # unique | copy | sparse | empty


def _mask_of(ann: dict, size: int) -> np.ndarray:
    seg = ann["segmentation"]
    rle = masklib.from_polygons(seg, size, size) if isinstance(seg, list) else seg
    return masklib.decode(rle).astype(bool)


def near_copy(image: Image.Image, anns: list[dict], rng: random.Random) -> tuple[Image.Image, list[dict]]:
    """What image search returns for one photo: cropped 0-6 % a side, resized 0.8-1.25x, brightness and
    contrast changed, re-encoded as JPEG at quality 60-95; the labels cropped and resized with it."""
    w, h = image.size
    left, top = round(rng.uniform(0, 0.06) * w), round(rng.uniform(0, 0.06) * h)
    right, bottom = w - round(rng.uniform(0, 0.06) * w), h - round(rng.uniform(0, 0.06) * h)
    scale = rng.uniform(0.8, 1.25)
    new = (max(1, round((right - left) * scale)), max(1, round((bottom - top) * scale)))
    out = image.crop((left, top, right, bottom)).resize(new, Image.BILINEAR)
    out = ImageEnhance.Brightness(out).enhance(rng.uniform(0.8, 1.2))
    out = ImageEnhance.Contrast(out).enhance(rng.uniform(0.85, 1.15))
    buffer = io.BytesIO()
    out.save(buffer, "JPEG", quality=rng.randint(60, 95))
    moved = []
    for ann in anns:
        crop = _mask_of(ann, w)[top:bottom, left:right]
        mask = np.asarray(Image.fromarray(crop.astype(np.uint8) * 255).resize(new, Image.NEAREST)) > 127
        if mask.sum() < 16:  # cropped away: a labeller would not label a sliver
            continue
        rle = masklib.encode(mask)
        moved.append(
            {**ann, "segmentation": rle, "bbox": masklib.bbox(rle), "area": float(masklib.area(rle))}
        )
    return Image.open(io.BytesIO(buffer.getvalue())), moved


def empty_room(rng: np.random.Generator, size: int) -> Image.Image:
    """An off-topic photo with nothing to label: the sample generator's wall, floor, lighting and noise with
    no objects (sample's private painters: a bench-only use, the generator has no option for it)."""
    background = sample._background(rng, size, size * rng.uniform(0.35, 0.65))
    return sample._finish(np.asarray(background, dtype=np.float32).copy(), rng, size)


def make_scraped_pool(root: Path, args: argparse.Namespace, seed: int) -> tuple[Path, dict[str, Origin]]:
    """A pool as image search returns it: `unique` scenes, the first `dup_scenes` of them with
    `dup_min`..`dup_max` near-copies each (`near_copy`), `sparse` scenes with at most two objects (the
    generator's own, picked from a separate render) and `empty` rooms with no objects at all."""
    export = root / "pool_export"
    write_sample(export, n_images=args.unique, seed=seed, size=args.size)
    coco = json.loads((export / "annotations.json").read_text())
    origin = {i["file_name"]: Origin(i["file_name"], "unique") for i in coco["images"]}
    next_image = max(i["id"] for i in coco["images"]) + 1
    next_ann = max(a["id"] for a in coco["annotations"]) + 1

    def add(
        name: str, image: Image.Image | None, data: bytes | None, anns: list[dict], where: Origin
    ) -> None:
        nonlocal next_image, next_ann
        if data is None:
            buffer = io.BytesIO()
            image.save(buffer, "JPEG", quality=90)
            data = buffer.getvalue()
        (export / name).write_bytes(data)
        width, height = Image.open(io.BytesIO(data)).size
        coco["images"].append(
            {"id": next_image, "file_name": name, "width": width, "height": height, "license": 1}
        )
        for ann in anns:
            coco["annotations"].append({**ann, "id": next_ann, "image_id": next_image})
            next_ann += 1
        origin[name] = where
        next_image += 1

    rng = random.Random(seed)
    for info in list(coco["images"][: args.dup_scenes]):
        anns = [a for a in coco["annotations"] if a["image_id"] == info["id"]]
        photo = Image.open(export / info["file_name"]).convert("RGB")
        for k in range(rng.randint(args.dup_min, args.dup_max)):
            copy, moved = near_copy(photo, anns, rng)
            stem = Path(info["file_name"]).stem
            add(f"images/copy_{stem}_{k}.jpg", copy, None, moved, Origin(info["file_name"], "copy"))
    if args.sparse:
        extra = root / "sparse_export"
        write_sample(extra, n_images=max(800, 80 * args.sparse), seed=seed + 500, size=args.size)
        source = json.loads((extra / "annotations.json").read_text())
        per_image: dict[int, list[dict]] = {}
        for ann in source["annotations"]:
            per_image.setdefault(ann["image_id"], []).append(ann)
        few = [i for i in source["images"] if len(per_image.get(i["id"], [])) <= 2][: args.sparse]
        if len(few) < args.sparse:
            raise SystemExit(
                f"--sparse {args.sparse}: the render held only {len(few)} scenes with <= 2 objects"
            )
        for k, info in enumerate(few):
            name = f"images/sparse_{k:03d}.jpg"
            data = (extra / info["file_name"]).read_bytes()
            add(name, None, data, per_image.get(info["id"], []), Origin(name, "sparse"))
    for k in range(args.empty):
        name = f"images/empty_{k:03d}.jpg"
        add(
            name,
            empty_room(np.random.default_rng([seed, 900, k]), args.size),
            None,
            [],
            Origin(name, "empty"),
        )
    (export / "annotations.json").write_text(json.dumps(coco))
    ingest_export(export / "annotations.json", out=root / "pool", val_fraction=0.0, seed=0)
    return root / "pool", origin


def describe(labelled: list[int], by_id: dict, origin: dict[str, Origin]) -> dict[str, int]:
    """What a set of labelled photos holds: distinct scenes, near-copies, sparse and empty photos."""
    kinds = [origin[by_id[i].file_name] for i in labelled]
    return {
        "photos": len(labelled),
        "scenes": len({o.scene for o in kinds}),
        "copies": sum(o.kind == "copy" for o in kinds),
        "sparse": sum(o.kind == "sparse" for o in kinds),
        "empty": sum(o.kind == "empty" for o in kinds),
        "objects": sum(len(by_id[i].labels) for i in labelled),
    }


def train_on(
    pool, ids: list[int], root: Path, args: argparse.Namespace, iters: int, init: Path | None
) -> Path:
    """Fine-tune `init` (None: from scratch) on the photos `ids` for about `iters` images."""
    data = root / "data"
    subset_dataset(pool, set(ids), data)
    epochs = max(1, round(iters / len(ids)))
    config = TrainConfig(
        data=data, arch="maskrcnn_resnet18_fpn", weights=str(init) if init else "none", epochs=epochs,
        batch_size=4, lr=0.02, img_size=args.size, warmup_iters=20, workers=0, device="cpu", amp=args.amp,
        project=root / "runs", name="m", seed=0, val_every=epochs, model_kwargs=dict(SCENE_MODEL),
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
    parser.add_argument("--unique", type=positive_int, default=80)
    parser.add_argument("--copies", type=non_negative_int, default=40)
    parser.add_argument("--test", type=positive_int, default=32)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--start", type=positive_int, default=16)
    parser.add_argument("--step", type=positive_int, default=16)
    parser.add_argument("--rounds", type=positive_int, default=2)
    parser.add_argument("--draws", type=positive_int, default=3)
    parser.add_argument(
        "--start-iters", type=positive_int, default=960, help="images the first model trains on"
    )
    parser.add_argument("--iters", type=positive_int, default=480, help="images each round fine-tunes on")
    parser.add_argument(
        "--threads", type=positive_int, default=1, help="torch threads (the figures were one thread)"
    )
    parser.add_argument("--amp", action="store_true", help="Train with bf16 autocast (native-bf16 CPUs).")
    parser.add_argument(
        "--seed", type=int, default=0, help="Another pool, start set and random draws (same test scenes)."
    )
    scraped = parser.add_argument_group("scraped pool (--scraped; then --copies is not used)")
    scraped.add_argument("--scraped", action="store_true", help="a pool as image search returns it")
    scraped.add_argument(
        "--dup-scenes", type=non_negative_int, default=20, help="unique scenes that come with near-copies"
    )
    scraped.add_argument(
        "--dup-min", type=non_negative_int, default=4, help="fewest near-copies of such a scene"
    )
    scraped.add_argument(
        "--dup-max", type=non_negative_int, default=6, help="most near-copies of such a scene"
    )
    scraped.add_argument(
        "--sparse", type=non_negative_int, default=10, help="scenes with at most two objects"
    )
    scraped.add_argument(
        "--empty", type=non_negative_int, default=10, help="off-topic photos with no objects"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    if args.scraped:
        pool_dir, origin = make_scraped_pool(out, args, seed=2000 + args.seed)
    else:
        pool_dir, origin = make_pool(out, args.unique, args.copies, args.size, seed=2000 + args.seed)
    pool = load_split(pool_dir, "train")
    write_sample(out / "test_export", n_images=args.test, seed=3000, size=args.size)
    ingest_export(out / "test_export" / "annotations.json", out=out / "test", val_fraction=0.0, seed=0)
    test = load_split(out / "test", "train")
    by_id = pool.by_id()
    ids = sorted(by_id)
    start = sorted(random.Random(args.seed).sample(ids, args.start))

    print(f"pool: {describe(ids, by_id, origin)}; start: {describe(start, by_id, origin)}", flush=True)
    held: dict[str, list[dict[str, int]]] = {}  # what each arm had labelled after each round

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
                new = random.Random(100_000 * args.seed + 1000 * draw + r).sample(rest, args.step)
            labelled = sorted(labelled + new)
            ckpt = train_on(pool, labelled, out / f"{arm}{draw}_r{r}", args, args.iters, ckpt)
            value = test_map(ckpt, test)
            copies = sum("copy_" in by_id[i].file_name for i in labelled)
            held.setdefault(f"{arm}{draw}", []).append(describe(labelled, by_id, origin))
            print(
                f"{arm} draw {draw} N={len(labelled)}: mask mAP {value:.4f} ({copies} near-copies) "
                f"{held[f'{arm}{draw}'][-1]}",
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
        "pool": describe(ids, by_id, origin),
        "start": describe(start, by_id, origin),
        "labelled": held,
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
    ax.set_title("scraped pool" if args.scraped else "low-redundancy pool", fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "bench_select.png", dpi=120)
    print(f"{'N':>4} {'select':>8} {'random':>14}")
    for n, s, m, sd in zip(sizes, sel, rand.mean(axis=0), rand.std(axis=0), strict=True):
        print(f"{n:>4} {s:8.4f} {m:8.4f} ± {sd:.4f}")
    print(f"wrote {out / 'bench_select.json'} and bench_select.png in {report['seconds']:.0f}s")


if __name__ == "__main__":
    main()
