"""Speed of officescore's fast inference path (officescore.infer.accel) against eager torchvision.

    python bench/score.py                                 # v2 at 800 px and MobileNetV3 at 512 px
    python bench/score.py --models v2 --photos 2          # shorter
    python bench/score.py --checkpoint runs/train/x/weights/best.pt --data data/dataset
                                                          # + mAP per precision and a validation pass

Speed: synthetic office scenes (officescore.sample) at 800x800 and one 1067x800, decoded once.
Models are built with a fixed seed (weights="none"), BatchNorm statistics set to seeded
non-trivial values (so folding them changes the weights), and the desk logit biased so that 5-20
detections per photo score >= --conf (the bias is searched on the first photo and printed); for
MobileNetV3, whose seeded box features hardly differ between proposals, the desk logit first gets a
spread across proposals (spread_desk_logit), else it would be 0 or 100 detections.
Baseline: the same model, eager torchvision fp32 with its defaults (box threshold 0.05, up to 100
detections, 1000 proposals), then the caller keeps scores >= --conf. Candidates: `fp32` (exact:
BatchNorm folded, channels_last, threshold pushed into the model) and `auto` (what
`--precision auto` picks here, with 300 proposals); `bf16` too where the CPU has it natively, and
`int8` where it runs (x86 with AVX2: the int8 backbone, calibrated on 16 other scenes).
Baseline and candidates run interleaved, photo by photo, in one process; the time is the median.

Agreement with the baseline on the kept detections: `fp32` must give the same labels, boxes within
0.01 px and mask IoU >= 0.99; other precisions change which detections pass, so their cost is
mAP: with --checkpoint/--data, COCO mask and box mAP on that split for each precision (eval's
conventions: the model's low threshold, up to 100 detections), and the time of one validation pass
as train runs it, before (the raw model) and after (officescore.evaluate.predict_coco).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torchvision.transforms.functional import pil_to_tensor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchkit import positive_int  # noqa: E402 - bench/, first on sys.path when run as a script

from officescore import DEFAULT_CLASSES  # noqa: E402
from officescore.infer.accel import forward, native_bf16_cpu, prepare_model, proposals_for, resolve_precision  # noqa: E402
from officescore.infer.accel.capability import int8_supported  # noqa: E402
from officescore.infer.accel.int8 import CALIBRATION_PHOTOS, spread  # noqa: E402
from officescore.infer.accel.winograd import nnpack_pays  # noqa: E402
from officescore.model import build_model  # noqa: E402
from officescore.sample import render_scene  # noqa: E402

MODELS = {  # name -> (arch, size, spread the desk logit first)
    "v2": ("maskrcnn_resnet50_fpn_v2", 800, False),
    "mobilenet": ("maskrcnn_mobilenet_v3_fpn", 512, True),
}


def photos(n: int, size: int, first: int = 0) -> list[torch.Tensor]:
    """n-1 square scenes and, last, one 4:3 scene (1067x800 for size 800)."""
    out = [
        pil_to_tensor(render_scene(first + i, size=size).image).float() / 255 for i in range(max(1, n - 1))
    ]
    if n > 1:
        wide = render_scene(first + n, size=size).image.resize((round(size * 4 / 3), size))
        out.append(pil_to_tensor(wide).float() / 255)
    return out


def seeded_model(arch: str, size: int) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(
        arch, list(DEFAULT_CLASSES), weights="none", min_size=size, max_size=round(size * 4 / 3)
    )
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(torch.rand(n, generator=gen) * 0.2 - 0.1)
                module.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                module.weight.copy_(torch.rand(n, generator=gen) + 0.5)
    return model.eval()


def spread_desk_logit(model: torch.nn.Module, image: torch.Tensor, std: float = 2.0) -> None:
    """Point the desk logit along the main direction the box features vary in on `image`, with
    `std` across its proposals: a seeded MobileNetV3's box features barely differ between
    proposals, so any bias lifts all or none of them over the threshold (100 tied detections)."""
    seen: dict[str, torch.Tensor] = {}
    predictor = model.roi_heads.box_predictor
    hook = predictor.register_forward_hook(lambda m, i, o: seen.__setitem__("x", i[0].flatten(1)))
    with torch.no_grad():
        model([image])
    hook.remove()
    x = seen["x"]
    centred = x - x.mean(0)
    direction = torch.linalg.svd(centred, full_matrices=False).Vh[0]
    weight = direction * (std / float((centred @ direction).std()))
    with torch.no_grad():
        predictor.cls_score.weight[1] = weight
        predictor.cls_score.bias[1] = -float(x.mean(0) @ weight)


def calibrate(model: torch.nn.Module, image: torch.Tensor, conf: float) -> float:
    """A desk-logit bias leaving 5-20 detections >= conf on `image` (bisection, a few passes)."""
    probe = prepare_model(copy.deepcopy(model), "cpu", "fp32")
    bias = probe.roi_heads.box_predictor.cls_score.bias
    start = float(bias[1])
    low, high = 0.0, 8.0
    for _ in range(6):
        mid = (low + high) / 2
        with torch.no_grad():
            bias[1] = start + mid
        kept = int((forward(probe, [image], "cpu", "fp32", conf)[0]["scores"] >= conf).sum())
        print(f"  calibrating: desk bias +{mid:.2f} -> {kept} detections >= {conf}", flush=True)
        if 5 <= kept <= 20:
            return mid
        low, high = (mid, high) if kept < 5 else (low, mid)
    return mid


def kept(output: dict[str, torch.Tensor], conf: float) -> dict[str, torch.Tensor]:
    keep = output["scores"] >= conf
    return {k: v[keep] for k, v in output.items()}


def agreement(base: dict[str, torch.Tensor], got: dict[str, torch.Tensor]) -> dict[str, Any]:
    same = len(base["labels"]) == len(got["labels"]) and torch.equal(base["labels"], got["labels"])
    if not same or not len(base["labels"]):
        return {"n": len(base["labels"]), "n_got": len(got["labels"]), "same_labels": same}
    box = float((base["boxes"] - got["boxes"].float()).abs().max())
    a, b = base["masks"][:, 0] > 0.5, got["masks"][:, 0] > 0.5
    inter = (a & b).flatten(1).sum(1).float()
    union = (a | b).flatten(1).sum(1).float()
    iou = torch.where(union > 0, inter / union.clamp(min=1), 1.0)  # two empty masks are the same mask
    return {
        "n": len(base["labels"]),
        "same_labels": True,
        "box_px": box,
        "mask_iou": float(iou.min()),
    }


def timed(fn: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def speed(name: str, conf: float, n_photos: int, rounds: int) -> None:
    arch, size, spread = MODELS[name]
    images = photos(n_photos, size)
    model = seeded_model(arch, size)
    if spread:
        spread_desk_logit(model, images[0])
    bias = calibrate(model, images[0], conf)
    with torch.no_grad():
        model.roi_heads.box_predictor.cls_score.bias[1] += bias
    # label -> (requested precision, NNPACK on/off/None = as prepare_model decides here)
    paths: dict[str, tuple[str, bool | None]] = {"fp32, oneDNN only": ("fp32", False), "fp32": ("fp32", None)}
    paths["auto"] = ("auto", None)
    if native_bf16_cpu():
        paths["bf16"] = ("bf16", None)
    if int8_supported():
        paths["int8"] = ("int8", None)
    calibration = photos(CALIBRATION_PHOTOS, size, first=100)  # other scenes than the timed ones
    candidates = {
        label: prepare_model(
            copy.deepcopy(model),
            "cpu",
            resolve_precision(p, "cpu"),
            proposals_for(p),
            winograd=w,
            calibration=calibration if p == "int8" else (),
        )  # fmt: skip
        for label, (p, w) in paths.items()
    }
    shapes = ", ".join(f"{t.shape[2]}x{t.shape[1]}" for t in images)
    print(
        f"\n{arch} at {size} px, {len(images)} photos ({shapes}),"
        f" desk bias +{bias:.2f}, conf {conf}; auto here = {resolve_precision('auto', 'cpu')}"
        f" with {proposals_for('auto')} proposals; NNPACK Winograd in fp32 here: {nnpack_pays()}",
        flush=True,
    )
    times: dict[str, list[float]] = {"eager": [], **{label: [] for label in paths}}
    agree: dict[str, list[dict[str, Any]]] = {label: [] for label in paths}
    for image in images:
        for _ in range(rounds):
            with torch.inference_mode():
                t, out = timed(lambda: model([image])[0])  # noqa: B023
            base = kept(out, conf)
            times["eager"].append(t)
            for p, fast in candidates.items():
                resolved = resolve_precision(paths[p][0], "cpu")
                t, got = timed(lambda: forward(fast, [image], "cpu", resolved, conf)[0])  # noqa: B023
                times[p].append(t)
                agree[p].append(agreement(base, kept(got, conf)))
            print("  " + "  ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()), flush=True)
    eager = statistics.median(times["eager"])
    print(f"| {arch} | eager torchvision fp32 | {eager:.2f} | 1.00 | baseline |")
    for p in paths:
        t = statistics.median(times[p])
        print(f"| {arch} | {p} | {t:.2f} | {eager / t:.2f} | {summary(agree[p])} |")


def summary(rows: list[dict[str, Any]]) -> str:
    counts = ", ".join(str(r.get("n_got", r["n"])) + "/" + str(r["n"]) for r in rows)
    if not all(r["same_labels"] for r in rows):
        return f"detections (got/baseline) {counts}: differ"
    box = max(r.get("box_px", 0.0) for r in rows)
    iou = min(r.get("mask_iou", 1.0) for r in rows)
    return f"same labels ({counts}), boxes within {box:.4f} px, mask IoU >= {iou:.4f}"


def accuracy(checkpoint: Path, data: Path) -> None:
    """mAP per precision on a trained model, and one validation pass before/after."""
    from officescore.dataset import OfficeDataset, build_transforms, collate_fn
    from officescore.evaluate import evaluate_coco, predict_coco
    from officescore.model import load_any

    model = load_any(checkpoint, "cpu").model
    val = OfficeDataset(data, "val", build_transforms(train=False))
    train = OfficeDataset(data, "train", build_transforms(train=False))
    calibration = [train[i][0] for i in spread(range(len(train)))]  # int8: photos it is not scored on
    auto = resolve_precision("auto", "cpu")
    print(f"\nmAP on {data} val ({len(val)} images), model {checkpoint}; auto here = {auto}")
    print("| path | proposals | mask mAP | box mAP | seconds |")
    base_map = None
    for label, precision, proposals, winograd in (
        ("fp32, oneDNN only (eager's numbers)", "fp32", None, False),
        ("fp32 (NNPACK Winograd where it pays)", "fp32", None, None),
        ("fp32 + 300 proposals (auto without native bf16)", "fp32", 300, None),
        ("bf16 + 300 proposals (auto with native bf16: AVX512-BF16/AMX)", "bf16", 300, None),
        *([("int8 backbone + 300 proposals", "int8", 300, None)] if int8_supported() else []),
    ):
        fast = prepare_model(
            model, "cpu", precision, proposals, copy_model=True, winograd=winograd, calibration=calibration
        )
        start = time.perf_counter()
        results = [
            r
            for images, targets in torch.utils.data.DataLoader(val, batch_size=2, collate_fn=collate_fn)
            for det, target in zip(forward(fast, list(images), "cpu", precision), targets, strict=True)
            for r in _results(det, int(target["image_id"]))
        ]
        seconds = time.perf_counter() - start
        doc = evaluate_coco(val.annotation_file, results)
        segm, bbox = doc["segm"]["map"], doc["bbox"]["map"]
        base_map = segm if base_map is None else base_map
        n = fast.rpn._post_nms_top_n["testing"]
        print(
            f"| {label} | {n} | {segm:.4f} ({100 * (segm - base_map):+.2f} pt) | {bbox:.4f} | {seconds:.1f} |"
        )
    # fp32 agreement with eager torchvision on the trained model's kept detections.
    fast = prepare_model(model, "cpu", "fp32", copy_model=True)
    rows = []
    for index in range(min(10, len(val))):
        image = val[index][0]
        with torch.inference_mode():
            base = kept(model.eval()([image])[0], 0.5)
        rows.append(agreement(base, kept(forward(fast, [image], "cpu", "fp32", 0.5)[0], 0.5)))
    print(f"\nfp32 vs eager on the trained model, {len(rows)} val images at conf 0.5: {summary(rows)}")
    # One validation pass as train runs it: before (the raw model, as predict_coco did) and after.
    before, after = [], []
    for _ in range(2):
        with torch.inference_mode():
            model.eval()
            t, _ = timed(
                lambda: [
                    model(list(images))
                    for images, _ in torch.utils.data.DataLoader(val, batch_size=2, collate_fn=collate_fn)
                ]
            )
        before.append(t)
        t, _ = timed(lambda: predict_coco(model, val, "cpu", batch_size=2))
        after.append(t)
    b, a = min(before), min(after)
    print(f"\nvalidation pass ({len(val)} images): before {b:.1f} s, after {a:.1f} s, x{b / a:.2f}")


def _results(det: dict[str, torch.Tensor], image_id: int) -> list[dict[str, Any]]:
    from officescore.evaluate.metrics import _to_results

    return _to_results(det, image_id, 0.0, None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="v2,mobilenet", help="comma-separated: v2, mobilenet")
    parser.add_argument("--photos", type=positive_int, default=3)
    parser.add_argument("--rounds", type=positive_int, default=1, help="passes per photo and path")
    parser.add_argument("--conf", type=float, default=0.5)
    parser.add_argument("--threads", type=positive_int, default=2)
    parser.add_argument("--checkpoint", type=Path, help="a trained model, for mAP per precision")
    parser.add_argument("--data", type=Path, help="its data set folder (val split)")
    parser.add_argument("--skip-speed", action="store_true")
    args = parser.parse_args()
    names = [name.strip() for name in args.models.split(",")]
    if unknown := [name for name in names if name not in MODELS]:
        parser.error(f"--models: {', '.join(unknown)} is not one of {', '.join(MODELS)}")
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}, native bf16: {native_bf16_cpu()}")  # fmt: skip
    if not args.skip_speed:
        print("| model | path | s/photo | speed-up | agreement with eager on kept detections |")
        for name in names:
            speed(name, args.conf, args.photos, args.rounds)
    if args.checkpoint is not None:
        accuracy(args.checkpoint, args.data or args.checkpoint.parent)


if __name__ == "__main__":
    main()
