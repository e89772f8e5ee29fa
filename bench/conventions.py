"""Labelling conventions: does `audit` find a convention split, and what does the choice cost?

1. Detection (`--parts fake`, no training): `--scenes` synthetic scenes (seed 5000) labelled whole;
   a share (0, 10, 20, 40 %) of the plant (or desk) labels relabelled with the other convention
   (plants without pots, desks without legs: `sample --plant-mask leaves --desk-mask top`, same
   photos) by officescore.curate.inject.inject_convention. Predictions: the clean whole labels with
   controlled noise (inject.fake_predictions: masks a pixel larger on half the objects, each box side
   cut back with probability 1/2 by up to `noise` of the object's size): model quality = noise.
   Recall = share of the relabelled labels in the reported minority group of that class; false
   reports = splits reported for a class nobody relabelled (every class at share 0).
2. Cost (`--parts train`): the same small recipe (maskrcnn_resnet18_fpn, weights none, `--size` px)
   trained on `--train-scenes` scenes (seed 1000) labelled whole, leaves-only and mixed 50/50 (plants),
   each evaluated on `--val-scenes` scenes (seed 2000) labelled whole and leaves-only: plant and
   overall mask/box mAP. The whole and mixed models then audit the detection scenes (real
   predictions instead of the fake ones).

    python bench/conventions.py --out /tmp/bench_conventions [--parts fake,train]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch
from benchkit import SCENE_MODEL, held_out_fraction, positive_int

from officescore.curate.audit import audit_predictions
from officescore.curate.inject import fake_predictions, inject_convention
from officescore.curate.labels import load_split
from officescore.ingest import ingest_export
from officescore.sample import write_sample

CLASSES = {"plant": "leaves", "desk": "top"}  # class -> the other convention
SHARES = (0.0, 0.1, 0.2, 0.4)
NOISES = (0.0, 0.1, 0.2, 0.3)


def render(out: Path, scenes: int, seed: int, size: int) -> tuple[Path, Path]:
    """The same scenes labelled whole and with the other conventions (plants as leaves, desks as tops)."""
    if not (out / "whole" / "annotations.json").exists():
        write_sample(out / "whole", n_images=scenes, seed=seed, size=size)
    if not (out / "parts" / "annotations.json").exists():
        write_sample(out / "parts", n_images=scenes, seed=seed, size=size, masks=dict(CLASSES))
    return out / "whole" / "annotations.json", out / "parts" / "annotations.json"


def ingest(export: Path, out: Path, val_fraction: float) -> Path:
    if not (out / "dataset.json").exists():
        ingest_export(export, out=out, val_fraction=val_fraction, seed=0)
    return out


class Audited:
    """One data set whose train.json is swapped for a relabelled copy while it is audited."""

    def __init__(self, dataset: Path, parts: dict[str, Any]) -> None:
        self.dataset, self.parts = dataset, parts
        self.clean = json.loads((dataset / "train.json").read_text())

    def run(
        self, name: str | None, share: float, seed: int, predictions: list[dict[str, Any]]
    ) -> dict[str, Any]:
        labels, changed = (
            (self.clean, [])
            if name is None or share == 0
            else inject_convention(self.clean, self.parts, name, share, seed=seed)
        )
        path = self.dataset / "train.json"
        path.write_text(json.dumps(labels))
        try:
            result = audit_predictions(load_split(self.dataset, "train"), predictions)
        finally:
            path.write_text(json.dumps(self.clean))
        splits = result.conventions.splits
        mine = [s for s in splits if s.class_name == name]
        found = set(mine[0].groups[0].annotation_ids) & set(changed) if mine else set()
        return {
            "changed": len(changed),
            "recall": len(found) / len(changed) if changed else None,
            "reported": bool(mine),
            "extra": len(mine[0].groups[0].pairs) - len(found) if mine else 0,
            "false_reports": [s.class_name for s in splits if s.class_name != name],
            "confidence": mine[0].confidence if mine else None,
            "description": mine[0].groups[0].description if mine else None,
        }


def detection(audited: Audited, predict: Any, draws: int, label: str) -> list[dict[str, Any]]:
    """Rows of (model, class, share, draw) -> recall and false reports; `predict(draw)` -> results."""
    rows = []
    for draw in range(draws):
        predictions = predict(draw)
        for name in CLASSES:
            for share in SHARES:
                if share == 0 and name != "plant":
                    continue  # the clean set once per draw
                row = audited.run(None if share == 0 else name, share, draw, predictions)
                rows.append(
                    {"model": label, "class": name if share else "-", "share": share, "draw": draw, **row}
                )
                print(json.dumps(rows[-1]), flush=True)
    return rows


def summarise(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| model | class | minority share | recall (mean, min) | reported | false reports (per audit) |",
             "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    keys = sorted({(r["model"], r["class"], r["share"]) for r in rows}, key=lambda k: (k[0], k[1], k[2]))
    for model, name, share in keys:
        group = [r for r in rows if (r["model"], r["class"], r["share"]) == (model, name, share)]
        recalls = [r["recall"] for r in group if r["recall"] is not None]
        rec = f"{sum(recalls) / len(recalls):.2f}, {min(recalls):.2f}" if recalls else "-"
        reported = f"{sum(r['reported'] for r in group)}/{len(group)}" if share else "-"
        false = sum(len(r["false_reports"]) for r in group) / len(group)
        lines.append(f"| {model} | {name} | {share:.0%} | {rec} | {reported} | {false:.2f} |")
    return lines


# --------------------------------------------------------------------------- training and cost


def train_one(data: Path, out: Path, name: str, size: int, epochs: int) -> Path:
    """The recipe: ResNet18-FPN from scratch, fed at `size` px, batch 4, lr 0.02, `epochs` epochs."""
    from officescore.train import TrainConfig, train

    done = out / "runs" / name / "weights" / "last.pt"
    if done.exists():
        return done
    config = TrainConfig(
        data=data, arch="maskrcnn_resnet18_fpn", weights="none", epochs=epochs, batch_size=4, lr=0.02,
        img_size=size, warmup_iters=50, workers=0, device="cpu", project=out / "runs", name=name, seed=0,
        val_every=epochs, model_kwargs=dict(SCENE_MODEL),
    )  # fmt: skip
    return train(config).last_checkpoint


def predict(checkpoint: Path, dataset: Path) -> list[dict[str, Any]]:
    from officescore.curate.predictions import predict_images
    from officescore.infer import Predictor

    split = load_split(dataset, "train")
    return predict_images(Predictor.load(checkpoint, device="cpu", conf=0.05), split.images, split.classes)


def scores(gt: Path, results: list[dict[str, Any]]) -> dict[str, float]:
    from officescore.evaluate import evaluate_coco

    m = evaluate_coco(gt, results)
    return {
        "plant_mask": m["segm"]["per_class"]["plant"]["ap"],
        "plant_box": m["bbox"]["per_class"]["plant"]["ap"],
        "mask": m["segm"]["map"],
        "box": m["bbox"]["map"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--parts", default="fake,train")
    parser.add_argument("--scenes", type=positive_int, default=200)
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--draws", type=positive_int, default=3)
    parser.add_argument("--train-scenes", type=positive_int, default=200)
    parser.add_argument("--val-scenes", type=positive_int, default=60)
    parser.add_argument("--epochs", type=positive_int, default=8)
    parser.add_argument("--model-size", type=int, default=None, help="px fed to the model (default --size)")
    parser.add_argument("--threads", type=positive_int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    whole, parts = render(out / "audit", args.scenes, 5000, args.size)
    audited = Audited(ingest(whole, out / "audit" / "data", 0.0), json.loads(parts.read_text()))
    rows: list[dict[str, Any]] = []
    report: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}}
    if "fake" in args.parts:
        for noise in NOISES:
            rows += detection(audited, lambda d, n=noise: fake_predictions(audited.clean, d, edge_noise=n),
                              args.draws, f"fake noise {noise}")  # fmt: skip
        print(f"fake part done at {time.perf_counter() - started:.0f}s", flush=True)
    if "train" in args.parts:
        train_val = held_out_fraction(20, args.train_scenes, "--train-scenes")
        t_whole, t_parts = render(out / "train", args.train_scenes, 1000, args.size)
        mixed, changed = inject_convention(
            json.loads(t_whole.read_text()), json.loads(t_parts.read_text()), "plant", 0.5, seed=0
        )
        (t_whole.parent / "mixed.json").write_text(json.dumps(mixed))
        v_whole, v_parts = render(out / "val", args.val_scenes, 2000, args.size)
        # plants only: the desks of the leaves sets are relabelled too, so use a plants-only "leaves" set
        t_leaves, _ = inject_convention(
            json.loads(t_whole.read_text()), json.loads(t_parts.read_text()), "plant", 1.0
        )
        (t_whole.parent / "leaves.json").write_text(json.dumps(t_leaves))
        v_leaves, _ = inject_convention(
            json.loads(v_whole.read_text()), json.loads(v_parts.read_text()), "plant", 1.0
        )
        (v_whole.parent / "leaves.json").write_text(json.dumps(v_leaves))
        vals = {
            "whole": ingest(v_whole, out / "val" / "whole_data", 0.0),
            "leaves": ingest(v_whole.parent / "leaves.json", out / "val" / "leaves_data", 0.0),
        }
        cost: dict[str, Any] = {}
        models: dict[str, Path] = {}
        for name, export in (("whole", t_whole), ("leaves", t_whole.parent / "leaves.json"),
                             ("mixed", t_whole.parent / "mixed.json")):  # fmt: skip
            data = ingest(export, out / "train" / f"{name}_data", train_val)
            t0 = time.perf_counter()
            models[name] = train_one(data, out, name, args.model_size or args.size, args.epochs)
            results = predict(models[name], vals["whole"])  # same photos in both val sets
            cost[name] = {val: scores(vals[val] / "train.json", results) for val in vals}
            cost[name]["seconds"] = round(time.perf_counter() - t0, 1)
            print(name, json.dumps(cost[name]), flush=True)
        report["cost"] = cost
        for name in ("whole", "mixed"):
            results = predict(models[name], audited.dataset)
            report.setdefault("audit_model_quality", {})[name] = scores(
                audited.dataset / "train.json", results
            )
            rows += detection(audited, lambda d, r=results: r, args.draws, f"trained on {name}")
    report["rows"] = rows
    report["seconds"] = round(time.perf_counter() - started, 1)
    (out / "conventions.json").write_text(json.dumps(report, indent=1))
    print("\n".join(summarise(rows)))
    if "cost" in report:
        print(
            "| trained on | val whole: plant mask / box | val leaves: plant mask / box "
            "| overall mask (whole, leaves) |"
        )
        print("| --- | --- | --- | --- |")
        for name, c in report["cost"].items():
            w, lv = c["whole"], c["leaves"]
            print(f"| {name} | {w['plant_mask']:.3f} / {w['plant_box']:.3f} | {lv['plant_mask']:.3f} / "
                  f"{lv['plant_box']:.3f} | {w['mask']:.3f}, {lv['mask']:.3f} |")  # fmt: skip
        print("audit model quality (clean whole labels):", json.dumps(report["audit_model_quality"]))
    print(f"total {report['seconds']:.0f}s")


if __name__ == "__main__":
    main()
