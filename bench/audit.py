"""Recall of injected label errors: `audit` vs cleanlab's ObjectLab on the same predictions.

Audited set: `--scenes` synthetic scenes (seed 5000) with errors injected by officescore.curate.inject:
5 % of instances deleted (-> missing), 5 % class-swapped (-> wrong_class), 5 % mask shifted or eroded
(-> bad_mask), 1 % duplicated (-> duplicate). The model never saw these scenes: it is `--model`, or one
trained here on `--train-scenes` other scenes (seed 1000). One set of predictions (Predictor, score
>= 0.05) feeds both methods; cleanlab gets the boxes (it has no masks).

Recall at k (k = number injected), annotation level: per kind, the top k_kind issues of that kind
(cleanlab: missing = overlooked scores of predicted boxes, wrong_class = swap, bad_mask = badloc,
duplicate = min(swap, badloc) of label boxes); overall, the top k of one ranking over everything
(cleanlab: all label boxes by min(swap, badloc) and predicted boxes by overlooked, lowest first).
A deleted label counts as found when a flagged box has IoU >= 0.5 with it; any other error when its
annotation (either one of a duplicate pair) is flagged. Image level: k = photos with an injected error,
ranked by audit's image quality vs cleanlab's get_label_quality_scores; find_label_issues' flagged set
is reported too.

    python bench/audit.py --out /tmp/bench_audit [--model runs/train/x/weights/last.pt]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from benchkit import SCENE_MODEL, held_out_fraction, positive_int

from officescore.curate.audit import audit_predictions
from officescore.curate.inject import Injected, inject_errors
from officescore.curate.labels import SplitLabels, load_split
from officescore.curate.predictions import predict_images
from officescore.evaluate import evaluate_coco
from officescore.infer import Predictor
from officescore.ingest import ingest_export
from officescore.sample import write_sample
from officescore.train import TrainConfig, train

KINDS = ("missing", "wrong_class", "bad_mask", "duplicate")


def train_model(
    out: Path, scenes: int, size: int, epochs: int, model_size: int | None = None, amp: bool = False
) -> Path:
    """ResNet18-FPN from scratch on `scenes` other scenes (40 of them held out for its own val mAP),
    fed at `model_size` px (default `size`: a larger one upsamples, so small objects reach the
    FPN's smallest 32 px anchors)."""
    val_fraction = held_out_fraction(40, scenes, "--train-scenes")  # before drawing the scenes
    write_sample(out / "train_export", n_images=scenes, seed=1000, size=size)
    ingest_export(
        out / "train_export" / "annotations.json",
        out=out / "train_data",
        val_fraction=val_fraction,
        seed=0,
    )
    config = TrainConfig(
        data=out / "train_data", arch="maskrcnn_resnet18_fpn", weights="none", epochs=epochs, batch_size=4,
        lr=0.02, img_size=model_size or size, warmup_iters=50, amp=amp, workers=0, device="cpu",
        project=out / "runs", name="model", seed=0, val_every=max(1, epochs // 3),
        model_kwargs=dict(SCENE_MODEL),
    )  # fmt: skip
    return train(config).last_checkpoint


def box_iou(a: list[float], b: list[float]) -> float:
    """[x, y, w, h] boxes."""
    iw = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


# --------------------------------------------------------------------------- flagged items, one shape
# An item is (image_id, annotation_id or None, bbox xywh, kind): what a method points a reviewer at.


def hits(
    items: list[tuple[int, int | None, list[float], str]], truth: Injected, other: dict[int, int]
) -> bool:
    for image_id, ann, box, _ in items:
        if image_id != truth.image_id:
            continue
        if truth.kind == "missing":
            if ann is None and box_iou(box, truth.bbox) >= 0.5:
                return True
        elif ann is not None and (ann == truth.annotation_id or other.get(truth.annotation_id) == ann):
            return True
    return False


def recall(items: list[Any], truths: list[Injected], other: dict[int, int]) -> float | None:
    return sum(hits(items, t, other) for t in truths) / len(truths) if truths else None


def audit_rankings(split: SplitLabels, results: list[dict[str, Any]]) -> tuple[dict[str, list], list, list]:
    result = audit_predictions(split, results)
    item = [(i.image_id, i.annotation_id, i.bbox, i.kind) for i in result.issues]
    per_kind = {k: [x for x in item if x[3] == k] for k in KINDS}
    return per_kind, item, [row["image_id"] for row in result.images]


def cleanlab_inputs(split: SplitLabels, results: list[dict[str, Any]]) -> tuple[list, list, list, list]:
    """cleanlab's object-detection format (xyxy boxes, class index 0..K-1), plus what each box is."""
    k = len(split.classes)
    labels, predictions, label_ids, pred_boxes = [], [], [], []
    by_image: dict[int, list[dict[str, Any]]] = {}
    for r in results:
        by_image.setdefault(int(r["image_id"]), []).append(r)
    for image in split.images:
        boxes = [[x, y, x + w, y + h] for x, y, w, h in (lab.bbox for lab in image.labels)]
        labels.append(
            {
                "bboxes": np.array(boxes, dtype=np.float32).reshape(-1, 4),
                "labels": np.array([split.classes.index(lab.class_name) for lab in image.labels], dtype=int),
            }
        )
        label_ids.append([lab.id for lab in image.labels])
        per_class: list[list[list[float]]] = [[] for _ in range(k)]
        flat: list[list[float]] = []
        for r in by_image.get(image.id, []):
            x, y, w, h = r["bbox"]
            per_class[int(r["category_id"]) - 1].append([x, y, x + w, y + h, float(r["score"])])
        for c in range(k):  # cleanlab's per-box scores follow this order: by class, then as given
            flat += [[b[0], b[1], b[2] - b[0], b[3] - b[1]] for b in per_class[c]]
        predictions.append(
            np.array([np.array(p, dtype=np.float32).reshape(-1, 5) for p in per_class], dtype=object)
        )
        pred_boxes.append(flat)
    return labels, predictions, label_ids, pred_boxes


def require_cleanlab() -> None:
    """Exit with how to install cleanlab when it is missing (checked first: training takes minutes)."""
    try:
        import cleanlab.object_detection.filter  # noqa: F401
    except ImportError as exc:
        # Not a dependency: cleanlab needs termcolor>=2.4 while google-images-search 1.4.7 pins
        # termcolor~=1.1, so pip cannot resolve both in one environment.
        raise SystemExit(
            "bench/audit.py compares with cleanlab: pip install cleanlab (pip reports the termcolor pin of "
            "google-images-search; the scrape code runs with termcolor 2+)"
        ) from exc


def cleanlab_rankings(
    split: SplitLabels, results: list[dict[str, Any]]
) -> tuple[dict[str, list], list, list, set]:
    from cleanlab.object_detection.filter import find_label_issues
    from cleanlab.object_detection.rank import (
        compute_badloc_box_scores,
        compute_overlooked_box_scores,
        compute_swap_box_scores,
        get_label_quality_scores,
    )

    labels, predictions, label_ids, pred_boxes = cleanlab_inputs(split, results)
    over = compute_overlooked_box_scores(labels=labels, predictions=predictions)
    badloc = compute_badloc_box_scores(labels=labels, predictions=predictions)
    swap = compute_swap_box_scores(labels=labels, predictions=predictions)

    def clean(v: Any) -> float:
        return 1.0 if v is None or not np.isfinite(v) else float(v)

    scored: dict[str, list[tuple[float, tuple]]] = {k: [] for k in (*KINDS, "all")}
    for n, image in enumerate(split.images):
        for j, ann in enumerate(label_ids[n]):
            box = list(image.labels[j].bbox)
            b, s = clean(badloc[n][j]), clean(swap[n][j])
            scored["bad_mask"].append((b, (image.id, ann, box, "bad_mask")))
            scored["wrong_class"].append((s, (image.id, ann, box, "wrong_class")))
            scored["duplicate"].append((min(b, s), (image.id, ann, box, "duplicate")))
            scored["all"].append((min(b, s), (image.id, ann, box, "label")))
        for j, box in enumerate(pred_boxes[n]):
            o = clean(over[n][j])
            scored["missing"].append((o, (image.id, None, box, "missing")))
            scored["all"].append((o, (image.id, None, box, "missing")))
    ranked = {k: [item for _, item in sorted(v, key=lambda t: t[0])] for k, v in scored.items()}
    quality = get_label_quality_scores(labels, predictions, verbose=False)
    images = [split.images[i].id for i in np.argsort(quality, kind="stable")]
    flagged = {split.images[i].id for i, bad in enumerate(find_label_issues(labels, predictions)) if bad}
    return {k: ranked[k] for k in KINDS}, ranked["all"], images, flagged


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench_audit"))
    parser.add_argument(
        "--model", type=Path, default=None, help="Trained on other scenes; default: train one."
    )
    parser.add_argument("--scenes", type=positive_int, default=60)
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--train-scenes", type=positive_int, default=240)
    parser.add_argument("--epochs", type=positive_int, default=16)
    parser.add_argument(
        "--model-size", type=int, default=None, help="Px the trained model is fed (default: --size)."
    )
    parser.add_argument("--amp", action="store_true", help="Train with bf16 autocast (native-bf16 CPUs).")
    parser.add_argument(
        "--threads", type=positive_int, default=1, help="torch threads (the figures were one thread)"
    )
    parser.add_argument(
        "--seeds", type=positive_int, default=3, help="Injection draws on the same scenes and predictions."
    )
    args = parser.parse_args()
    require_cleanlab()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    model = args.model or train_model(
        out, args.train_scenes, args.size, args.epochs, args.model_size, args.amp
    )
    write_sample(out / "audit_export", n_images=args.scenes, seed=5000, size=args.size)
    ingest_export(out / "audit_export" / "annotations.json", out=out / "audit_data", val_fraction=0.0, seed=0)
    data = out / "audit_data"
    clean = json.loads((data / "train.json").read_text())
    split = load_split(data, "train")
    results = predict_images(Predictor.load(model, device="cpu", conf=0.05), split.images, split.classes)
    metrics = evaluate_coco(data / "train.json", results)  # how good the model is, on the clean labels
    quality = {f"{t}_map": metrics[t]["map"] for t in ("segm", "bbox")}
    mask_map, box_map = quality["segm_map"], quality["bbox_map"]
    print(f"model on the clean audited scenes: mask mAP {mask_map:.3f}, box mAP {box_map:.3f}")
    report: dict[str, Any] = {
        "settings": {**vars(args), "out": str(out), "model": str(model)},
        "model_quality": quality,
        "draws": [],
    }
    try:
        for seed in range(args.seeds):
            broken, truths = inject_errors(clean, seed=seed)
            (data / "train.json").write_text(json.dumps(broken))
            split = load_split(data, "train")
            other = {t.annotation_id: int(t.how.split()[-1]) for t in truths if t.kind == "duplicate"}
            draw: dict[str, Any] = {
                "seed": seed,
                "injected": {k: sum(t.kind == k for t in truths) for k in KINDS},
            }
            error_images = {t.image_id for t in truths}
            for method, rank in (("audit", audit_rankings), ("cleanlab", cleanlab_rankings)):
                ranked = rank(split, results)
                per_kind, overall, images = ranked[0], ranked[1], ranked[2]
                row = {
                    kind: recall(
                        per_kind[kind][: draw["injected"][kind]], [t for t in truths if t.kind == kind], other
                    )
                    for kind in KINDS
                }
                row["overall"] = recall(overall[: len(truths)], truths, other)
                row["image_level"] = len(set(images[: len(error_images)]) & error_images) / len(error_images)
                if method == "cleanlab":
                    flagged = ranked[3]
                    row["find_label_issues"] = {
                        "flagged": len(flagged),
                        "recall": len(flagged & error_images) / len(error_images),
                        "precision": len(flagged & error_images) / len(flagged) if flagged else None,
                    }
                draw[method] = row
            report["draws"].append(draw)
            print(json.dumps(draw), flush=True)
    finally:
        (data / "train.json").write_text(json.dumps(clean))
    keys = (*KINDS, "overall", "image_level")
    report["mean"] = {
        m: {k: float(np.mean([d[m][k] for d in report["draws"] if d[m][k] is not None])) for k in keys}
        for m in ("audit", "cleanlab")
    }
    report["seconds"] = time.perf_counter() - started
    (out / "bench_audit.json").write_text(json.dumps(report, indent=2))
    print(
        f"\nrecall at k (k = injected), mean of {args.seeds} injection draws, "
        f"{args.scenes} scenes at {args.size} px; model mask mAP {mask_map:.3f}, box mAP {box_map:.3f}"
    )
    print(f"{'':>12} " + " ".join(f"{k:>12}" for k in keys))
    for m in ("audit", "cleanlab"):
        print(f"{m:>12} " + " ".join(f"{report['mean'][m][k]:12.3f}" for k in keys))
    print(f"wrote {out / 'bench_audit.json'} in {report['seconds']:.0f}s")


if __name__ == "__main__":
    main()
