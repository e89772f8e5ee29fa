"""Replays finished bench/assist.py runs: under other suggestion-threshold rules (`assist.py
--replay`), and every model version on the same new photos (`assist.py --same-photos`).

For each window of tasks, the model that answered it is evaluated again on its job's val photos
(`evaluate.match.f1_curve`), each rule picks a threshold from that curve (the bagged and per-class
rules from the photos' outcomes: `bagged_best_f1_conf`, `class_f1_confs`), and the window's photos
are predicted once and scored at every rule's threshold against the scene's labels, as `label
status` counts them (`label.feedback.match_regions`). Plain model calls at full precision, where the
backend ran its fast path: counts can differ from the live run's by an object or two.

A window's kept share also moves with its photos (some scenes are harder): `same_photos` takes that
out by scoring the model that answered after each job on one set of new scenes, rendered as the
run's were (size, mask conventions, unlabelled classes) from another seed, at the threshold the
backend's job finds for it (RATCHET, found again here on its job's val photos). Suggestions are
ranked by their class score, or (`by_mask`) by the backend's suggestion score, class score x mask
score² (`label.predict.suggestion_score`), with every threshold found on that score. Its first row
is the static backend (the first model).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

# Rules over the val F1 curve (highest threshold first). Below the job's MIN_VAL_OBJECTS val objects
# every rule keeps the backend's DEFAULT_CONF, as the job does.
RULES: dict[str, Callable[[Any], int]] = {
    "best F1": lambda curve: curve.best,
    "highest within 1 SE": lambda curve: int(_within_error(curve)[0]),
    "middle within 1 SE": lambda curve: _middle(_within_error(curve)),
    "lowest within 1 SE": lambda curve: int(_within_error(curve)[-1]),
}
BAGGED = "bagged best F1"  # evaluate.match.bagged_best_f1_conf: needs the photos, not the curve
# evaluate.match.class_f1_confs: a threshold per class, with the prior (objects) pulling to BAGGED
PER_CLASS = {"per class, prior 10": 10.0, "per class, prior 0": 0.0}
# Each new version's suggestions no less precise than those of the model it replaces, on the same val
# photos: the bagged best F1 among the thresholds that keep the replaced model's precision. The
# backend's since 2026-12-03 (runs made before it suggested at BAGGED).
RATCHET = "bagged, no less precise than the replaced"
RULE_NAMES = [*RULES, BAGGED, *PER_CLASS, RATCHET]
Threshold = float | dict[str, float]  # one for all classes, or one per class name


def _middle(indices: np.ndarray) -> int:
    return int(indices[len(indices) // 2])  # of an even count, the lower threshold of the two


def _within_error(curve: Any) -> np.ndarray:
    """Thresholds whose F1 is within one standard error, sqrt(F1 (1 - F1) / objects), of the best."""
    best = float(curve.f1.max())
    return np.flatnonzero(curve.f1 >= best - math.sqrt(best * (1 - best) / curve.objects) - 1e-12)


def replay(runs: list[Path]) -> tuple[dict[str, dict[str, int]], list[dict[str, dict[str, int]]]]:
    """Suggested, kept and drawn objects per rule, summed over every window of every run, and per
    window with a model (the first, the second, ...: the same tasks in every run) over the runs."""
    totals = _no_totals()
    by_window: list[dict[str, dict[str, int]]] = []
    for out in runs:
        for k, window in enumerate(_windows(out)):
            if k == len(by_window):
                by_window.append(_no_totals())
            predictions, labels = zip(*window["photos"], strict=True)
            for rule, conf in window["thresholds"].items():
                counts = _total(list(predictions), list(labels), conf)
                _add(totals[rule], counts)
                _add(by_window[k][rule], counts)
    return totals, by_window


def window_table(by_window: list[dict[str, dict[str, int]]], rules: list[str]) -> str:
    """Kept share and the share of labels from suggestions per window (pooled over runs), per rule."""
    head = " | ".join(
        f"{rule}: suggested | kept share | deleted | drawn by hand | from suggestions" for rule in rules
    )
    lines = [f"| window | {head} |", "|---|" + "---|" * 5 * len(rules)]
    for k, window in enumerate(by_window):
        cells = [str(k + 1)]
        for rule in rules:
            t = window[rule]
            share = f"{t['kept'] / t['suggested']:.2f}" if t["suggested"] else "-"
            work = f"{t['kept'] / (t['kept'] + t['drawn']):.2f}" if t["kept"] + t["drawn"] else "-"
            cells += [str(t["suggested"]), share, str(t["suggested"] - t["kept"]), str(t["drawn"]), work]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _no_totals() -> dict[str, dict[str, int]]:
    return {rule: {"suggested": 0, "kept": 0, "drawn": 0} for rule in RULE_NAMES}


def _add(totals: dict[str, int], counts: tuple[int, int, int]) -> None:
    for key, count in zip(("suggested", "kept", "drawn"), counts, strict=True):
        totals[key] += count


def _windows(out: Path) -> list[dict[str, Any]]:
    import torch

    from officescore.model import model_from_checkpoint

    results = json.loads((out / "assist.json").read_text())
    base = sorted(out.glob("assist-*"))[0]
    unlabelled = {name for name in (results["args"].get("unlabelled") or "").split(",") if name}
    coco = json.loads((base / "scenes" / "annotations.json").read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    images = sorted(coco["images"], key=lambda image: Path(image["file_name"]).name)
    every = int(results["args"]["every"])
    ratchet = _ratchet_confs(base, results["retraining"]["versions"])
    windows = []
    for n, window in enumerate(results["retraining"]["windows"]):
        if not window["versions"]:
            continue  # no model yet
        job = window["versions"][0].split("-best-")[0]  # label-job0003
        checkpoint = base / "runs" / "train" / job / "weights" / "best.pt"
        model, classes = model_from_checkpoint(checkpoint, torch.device("cpu"))
        dataset = _job_dataset(base, window["versions"][0])
        photos = [
            (_predict(model, classes, base / "scenes" / "images" / Path(image["file_name"]).name),
             _labels(coco, image, names, unlabelled))
            for image in images[n * every : (n + 1) * every]
        ]  # fmt: skip
        thresholds = _thresholds(model, classes, dataset, _or_default(ratchet[window["versions"][0]]))
        windows.append({"thresholds": thresholds, "photos": photos})
    return windows


def _job_dataset(base: Path, version: str) -> Path:
    """The data set the job behind a model version (label-job0003-best-...) trained on."""
    job = version.split("-best-")[0].replace("label-job", "job-")
    return base / "backend" / "jobs" / job / "dataset"


SAME_PHOTOS_SEED = 1000  # added to the run's --seed: scenes none of its models saw


def same_photos(out: Path, count: int, by_mask: bool = False) -> list[dict[str, Any]]:
    """Per job of the run: the model answering after it, on the same `count` new scenes."""
    import torch

    from officescore.model import model_from_checkpoint
    from officescore.sample import write_sample

    results = json.loads((out / "assist.json").read_text())
    args = results["args"]
    base = sorted(out.glob("assist-*"))[0]
    scenes = out / f"same-photos-{count}"
    if not (scenes / "annotations.json").exists():
        masks = dict(item.split("=", 1) for item in (args.get("masks") or "").split(",") if item)
        seed = int(args["seed"]) + SAME_PHOTOS_SEED
        write_sample(scenes, n_images=count, seed=seed, size=int(args["size"]), masks=masks)
    coco = json.loads((scenes / "annotations.json").read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    unlabelled = {name for name in (args.get("unlabelled") or "").split(",") if name}
    labels = [_labels(coco, image, names, unlabelled) for image in coco["images"]]
    rows: list[dict[str, Any]] = []
    answering: dict[str, Any] | None = None
    predicted: dict[str, list[list[tuple[float, Any]]]] = {}
    thresholds: dict[str, dict[str, Threshold]] = {}  # per version, what each rule picks on its val photos
    ratchet = _ratchet_confs(base, results["retraining"]["versions"], by_mask)
    for version in results["retraining"]["versions"]:
        if version.get("accepted"):
            answering = version
        if answering is None:
            continue
        name = answering["model_version"]
        if name not in predicted:
            checkpoint = (base / "backend" / answering["checkpoint"]).resolve()
            model, classes = model_from_checkpoint(checkpoint, torch.device("cpu"))  # in eval mode
            photos = [scenes / "images" / Path(image["file_name"]).name for image in coco["images"]]
            # A version without a threshold of its own is shown by class score at the default.
            ranked = by_mask and ratchet[name] is not None
            predicted[name] = [_predict(model, classes, photo, ranked) for photo in photos]
            own = _or_default(ratchet[name])
            thresholds[name] = _thresholds(model, classes, _job_dataset(base, name), own, ranked)
        conf = _or_default(ratchet[name])
        suggested, kept, drawn = _total(predicted[name], labels, conf)
        rows.append(
            {"job": version["job"], "version": name, "trained_photos": answering["trained_photos"],
             "conf": conf, "suggested": suggested, "kept": kept, "drawn": drawn,
             "not_kept": _not_kept(predicted[name], labels, conf),
             "rules": {rule: _total(predicted[name], labels, at) for rule, at in thresholds[name].items()}}
        )  # fmt: skip
    if rows:  # every version again at the threshold where it keeps as many as the static one
        target = rows[0]["kept"]
        for row in rows:
            row["at_static_kept"] = _at_kept(predicted[row["version"]], labels, target)
    return rows


def _total(
    predictions: list[list[tuple[float, Any]]], labels: list[Any], conf: Threshold
) -> tuple[int, int, int]:
    counts = [_outcome(found, truth, conf) for found, truth in zip(predictions, labels, strict=True)]
    return sum(c[0] for c in counts), sum(c[1] for c in counts), sum(c[2] for c in counts)


def _not_kept(predictions: list[list[tuple[float, Any]]], labels: list[Any], conf: float) -> list[int]:
    """Suggestions not kept at `conf`, by cause as `label status` gives them: redrawn, reclassed,
    deleted (`label.feedback.compare_regions`)."""
    from officescore.label.feedback import compare_regions

    causes = [0, 0, 0]
    for found, truth in zip(predictions, labels, strict=True):
        compared = compare_regions([region for score, region in found if score >= conf], truth)
        for k, count in enumerate((compared.redrawn, compared.reclassed, compared.deleted)):
            causes[k] += count
    return causes


def _at_kept(predictions: list[list[tuple[float, Any]]], labels: list[Any], target: int) -> tuple[int, int]:
    """(suggested, kept) at the highest threshold that keeps at least `target` objects."""
    scores = sorted({score for found in predictions for score, _ in found}, reverse=True)
    suggested = kept = 0
    for conf in scores:
        suggested, kept, _ = _total(predictions, labels, conf)
        if kept >= target:
            break
    return suggested, kept


def same_photos_table(runs: list[list[dict[str, Any]]], rule: str | None = None) -> str:
    """Rows of several runs summed job by job (the static backend is the first row), at the threshold
    the backend used or at `rule`'s."""
    if rule is not None:  # each row's counts at that rule's threshold
        keys = ("suggested", "kept", "drawn")
        runs = [
            [{**row, **dict(zip(keys, row["rules"][rule], strict=True))} for row in rows] for rows in runs
        ]
    causes = rule is None  # why suggestions were not kept: at the backend's threshold only
    lines = [
        "| after job | suggested | kept share | deleted | drawn by hand | from suggestions | per run "
        "| kept share at the static's kept count |"
        + (" not kept: redrawn / reclassed / deleted |" if causes else ""),
        "|---|---|---|---|---|---|---|---|" + ("---|" if causes else ""),
    ]
    for k in range(max(len(rows) for rows in runs)):
        at = [rows[k] for rows in runs if k < len(rows)]
        suggested, kept, drawn = (sum(r[key] for r in at) for key in ("suggested", "kept", "drawn"))
        per_run = " / ".join(f"{r['kept'] / r['suggested']:.2f}" if r["suggested"] else "-" for r in at)
        share = f"{kept / suggested:.3f}" if suggested else "-"
        work = f"{kept / (kept + drawn):.3f}" if kept + drawn else "-"
        job = f"{at[0]['job']} (static)" if k == 0 else str(at[0]["job"])
        equal = [sum(r["at_static_kept"][n] for r in at) for n in (0, 1)]
        equal_share = f"{equal[1] / equal[0]:.3f}" if equal[0] else "-"
        cells = [job, suggested, share, suggested - kept, drawn, work, per_run, equal_share]
        if causes:
            cells.append(" / ".join(str(sum(r["not_kept"][n] for r in at)) for n in range(3)))
        lines.append("| " + " | ".join(str(cell) for cell in cells) + " |")
    return "\n".join(lines)


def same_photos_rules(runs: list[list[dict[str, Any]]]) -> dict[str, dict[str, int]]:
    """`same_photos` rows summed per threshold rule, every job of every run (as `replay` sums)."""
    totals = _no_totals()
    for rows in runs:
        for row in rows:
            for rule, counts in row["rules"].items():
                _add(totals[rule], counts)
    return totals


def _thresholds(
    model: Any, classes: list[str], dataset: Path, ratchet: float, by_mask: bool = False
) -> dict[str, Threshold]:
    import torch

    from officescore.dataset import OfficeDataset, build_transforms
    from officescore.evaluate import category_map, evaluate_model
    from officescore.evaluate.inputs import load_gt
    from officescore.evaluate.match import bagged_best_f1_conf, class_f1_confs, f1_curve
    from officescore.label.prelabel import DEFAULT_CONF
    from officescore.label.trainjob import MIN_VAL_OBJECTS, as_suggested

    val = OfficeDataset(dataset, "val", build_transforms(train=False))
    ids = category_map(classes, val.classes)
    found = evaluate_model(model, val, torch.device("cpu"), category_ids=ids, mask_scores=True)
    masks = [p for p in found[1] if "segmentation" in p] if found else []
    if by_mask:  # as the job scores them (`label.trainjob.val_scores`)
        masks = as_suggested(masks)
    gt = load_gt(val.annotation_file)
    curve = f1_curve(gt, masks) if masks else None
    if curve is None or curve.objects < MIN_VAL_OBJECTS:
        return {rule: DEFAULT_CONF for rule in RULE_NAMES}
    bagged = bagged_best_f1_conf(gt, masks)
    assert bagged is not None  # the curve exists
    rules: dict[str, Threshold] = {rule: float(curve.conf[pick(curve)]) for rule, pick in RULES.items()}
    rules[BAGGED] = bagged["conf"]
    for rule, prior in PER_CLASS.items():
        per_class = class_f1_confs(gt, masks, prior=prior)
        assert per_class is not None  # as bagged
        rules[rule] = per_class["classes"]
    rules[RATCHET] = ratchet
    return rules


def _ratchet_confs(
    base: Path, versions: list[dict[str, Any]], by_mask: bool = False
) -> dict[str, float | None]:
    """The RATCHET threshold of every accepted version, in the order they answered, as the job finds
    it (`trainjob.compare_on_val`): on its job's val photos, against the version it replaced at that
    one's RATCHET threshold. None: too few val objects for one (the backend's default then)."""
    from officescore.label.trainjob import compare_on_val

    confs: dict[str, float | None] = {}
    replaced: tuple[Path, float | None] | None = None
    for version in versions:
        if not version.get("accepted"):
            continue
        name = version["model_version"]
        checkpoint = (base / "backend" / version["checkpoint"]).resolve()
        current, current_conf = replaced if replaced else (None, None)
        new, _ = compare_on_val(checkpoint, current, current_conf, _job_dataset(base, name), "cpu", by_mask)
        confs[name] = new["suggest"]["conf"] if new["suggest"] else None
        replaced = (checkpoint, confs[name])
    return confs


def _or_default(conf: float | None) -> float:
    from officescore.label.prelabel import DEFAULT_CONF

    return DEFAULT_CONF if conf is None else conf


def _predict(model: Any, classes: list[str], photo: Path, by_mask: bool = False) -> list[tuple[float, Any]]:
    """(score, Region) of every detection, masks as RLE for `label.feedback.match_regions`; the score
    is the class score, or with `by_mask` the backend's suggestion score."""
    import torch
    import torchvision.transforms.functional as F
    from PIL import Image

    from officescore import masks
    from officescore.infer.accel.run import mask_scores
    from officescore.label.formats import Region
    from officescore.label.predict import suggestion_score

    with torch.no_grad():
        found = model([F.to_tensor(Image.open(photo).convert("RGB"))])[0]
    quality = mask_scores(found["masks"]).tolist()
    return [
        (
            suggestion_score(float(found["scores"][k]), quality[k] if by_mask else None),
            Region(classes[int(label) - 1], masks.encode((found["masks"][k, 0] > 0.5).numpy())),
        )
        for k, label in enumerate(found["labels"])
    ]


def _labels(
    coco: dict[str, Any], image: dict[str, Any], names: dict[int, str], unlabelled: set[str]
) -> list[Any]:
    from officescore import masks
    from officescore.label.formats import Region

    def rle(segmentation: Any) -> Any:
        if isinstance(segmentation, list):  # polygons
            return masks.from_polygons(segmentation, image["height"], image["width"])
        return segmentation

    return [
        Region(names[a["category_id"]], rle(a["segmentation"]))
        for a in coco["annotations"]
        if a["image_id"] == image["id"] and names[a["category_id"]] not in unlabelled
    ]


def _outcome(
    predictions: list[tuple[float, Any]], labels: list[Any], conf: Threshold
) -> tuple[int, int, int]:
    """(suggested, kept, drawn by hand) on one photo at `conf`, counted as `label status` counts them."""
    from officescore.label.feedback import match_regions

    def needs(name: str) -> float:
        return conf[name] if isinstance(conf, dict) else conf

    shown = [region for score, region in predictions if score >= needs(region.class_name)]
    kept, added, _ = match_regions(shown, labels)
    return len(shown), kept, added


def replay_table(totals: dict[str, dict[str, int]]) -> str:
    lines = ["| rule | suggested | kept share | deleted | drawn by hand |", "|---|---|---|---|---|"]
    for rule, t in totals.items():
        share = t["kept"] / t["suggested"] if t["suggested"] else None
        shown = "-" if share is None else f"{share:.3f}"
        lines.append(f"| {rule} | {t['suggested']} | {shown} | {t['suggested'] - t['kept']} | {t['drawn']} |")
    return "\n".join(lines)
