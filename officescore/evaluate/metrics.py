"""COCO evaluation of instance segmentation: pycocotools' numbers, plus what a person needs to act.

`evaluate_coco(gt, predictions)` returns the metrics document (docs/ARCHITECTURE.md):

- the 12 standard COCOeval stats for `bbox` and `segm`, exactly as `COCOeval.summarize()` computes
  them (map, ap50, ap75, ap_small/medium/large, ar1/ar10/ar100, ar_small/medium/large);
- AP (and AR) at any extra IoU thresholds, from a second COCOeval run whose `iouThrs` are just those
  thresholds, so the standard numbers never change;
- per-class AP / AP50 / AP75 from COCOeval's `precision` array, with ground-truth and prediction counts;
- precision, recall and F1 at a score threshold (`conf`), by greedy matching at IoU 0.5 per image and
  class, ignoring detections that fall on crowd regions (as COCOeval does);
- a confusion matrix at IoU 0.5 (rows: ground truth, columns: prediction, plus "background");
- when the results carry `attributes` or `attributes=` gives a schema (else dataset.json beside
  the ground truth's): per attribute accuracy, macro F1 and confusion over detections matched to a
  labelled object (`officescore.evaluate.attributes`), under "attributes"; every attribute of the
  schema is there, `n` 0 when nothing was matched (`evaluate_model` passes a schema only for a model
  with an attribute head).

Undefined values (pycocotools' -1: no ground truth for that class or area range; precision with no
detections) are `None`, i.e. `null` in JSON. Results files follow COCO's format: detections with
`bbox` evaluate boxes; with `segmentation` (RLE, or polygons) they also evaluate masks. Every number
is what COCOeval gives on the same file, including its size rule: a detection that carries a `bbox`
is sized by its box area (pycocotools' loadRes), a mask-only detection by its mask area.

`predict_coco(model, dataset, device)` runs a torchvision-style detector over a data set and returns
such COCO results. Run folders, plots and files: `officescore.evaluate.run`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from officescore import masks as masklib
from officescore.attributes import AttributeSchema
from officescore.errors import ConfigError, DataError
from officescore.evaluate.inputs import is_number, load_gt, load_predictions, quiet
from officescore.evaluate.match import MATCH_IOU, Counts, match_counts, prf
from officescore.progress import SILENT, Reporter

if TYPE_CHECKING:
    import torch

    from officescore.distributed import DistContext

IOU_TYPES = ("bbox", "segm")
STAT_NAMES = (
    "map",
    "ap50",
    "ap75",
    "ap_small",
    "ap_medium",
    "ap_large",
    "ar1",
    "ar10",
    "ar100",
    "ar_small",
    "ar_medium",
    "ar_large",
)
BACKGROUND = "background"


def check_iou_thresholds(iou_thresholds: Sequence[float]) -> list[float]:
    """Sorted unique thresholds, each strictly between 0 and 1 (ConfigError otherwise)."""
    out: set[float] = set()
    for value in iou_thresholds:
        t = float(value)
        if not (0.0 < t < 1.0):
            raise ConfigError(f"IoU threshold {value} must be strictly between 0 and 1 (e.g. --iou 0.3)")
        out.add(t)
    return sorted(out)


def format_metric(value: float | None) -> str:
    """A metric as shown to a person: 3 decimals, "n/a" where it is undefined (no ground truth)."""
    return "n/a" if value is None else f"{value:.3f}"


def iou_key(t: float) -> str:
    """How a threshold is named in the metrics document: 0.3 -> "0.3", 0.55 -> "0.55"."""
    return f"{float(t):.10g}"


# --- COCOeval runs -------------------------------------------------------------------------------


def _load_res(coco_gt: COCO, dets: list[dict[str, Any]]) -> COCO:
    """coco_gt.loadRes on copies (it edits its input); an empty result set, which loadRes rejects."""
    if dets:
        with quiet():
            return coco_gt.loadRes([dict(d) for d in dets])
    res = COCO()
    res.dataset = {
        "images": list(coco_gt.dataset["images"]),
        "categories": copy.deepcopy(coco_gt.dataset["categories"]),
        "annotations": [],
    }
    with quiet():
        res.createIndex()
    return res


def _run(coco_gt: COCO, coco_dt: COCO, iou_type: str, iou_thrs: Sequence[float] | None = None) -> COCOeval:
    ev = COCOeval(coco_gt, coco_dt, iou_type)
    if iou_thrs is not None:
        ev.params.iouThrs = np.asarray(iou_thrs, dtype=np.float64)
    with quiet():
        ev.evaluate()
        ev.accumulate()
        if iou_thrs is None:
            ev.summarize()
    return ev


def _value(v: float) -> float | None:
    """pycocotools' -1 (undefined) -> None; everything else a plain float."""
    v = float(v)
    return None if v == -1.0 or not math.isfinite(v) else v


def _mean_valid(values: np.ndarray) -> float | None:
    """Mean over entries > -1, as COCOeval.summarize does; None when there are none."""
    valid = values[values > -1]
    return float(np.mean(valid)) if valid.size else None


def _slices(ev: COCOeval) -> tuple[np.ndarray, np.ndarray]:
    """precision [T, R, K] and recall [T, K] for area 'all' and 100 detections (as summarize)."""
    p = ev.params
    a = p.areaRngLbl.index("all")
    m = p.maxDets.index(100) if 100 in p.maxDets else len(p.maxDets) - 1
    return ev.eval["precision"][:, :, :, a, m], ev.eval["recall"][:, :, a, m]


def _class_names(coco_gt: COCO) -> dict[int, str]:
    names: dict[int, str] = {}
    for cid in sorted(coco_gt.cats):
        name = str(coco_gt.cats[cid]["name"])
        names[cid] = name if name not in names.values() else f"{name} ({cid})"
    return names


def _iou_type_metrics(
    coco_gt: COCO,
    dets: list[dict[str, Any]],
    iou_type: str,
    extra_thrs: list[float],
    names: dict[int, str],
) -> dict[str, Any]:
    coco_dt = _load_res(coco_gt, dets)
    ev = _run(coco_gt, coco_dt, iou_type)
    out: dict[str, Any] = {name: _value(v) for name, v in zip(STAT_NAMES, ev.stats, strict=True)}
    precision, _ = _slices(ev)
    thrs = ev.params.iouThrs
    t50, t75 = np.where(thrs == 0.5)[0], np.where(thrs == 0.75)[0]
    cat_ids = list(ev.params.catIds)
    per_class: dict[str, dict[str, Any]] = {}
    curves: dict[str, list[float | None]] = {}
    for k, cid in enumerate(cat_ids):
        pk = precision[:, :, k]
        per_class[names[cid]] = {
            "ap": _mean_valid(pk),
            "ap50": _mean_valid(pk[t50]),
            "ap75": _mean_valid(pk[t75]),
            "ap_at_iou": {},
        }
        curves[names[cid]] = [_value(v) for v in pk[t50[0]]] if t50.size else []
    out["ap_at_iou"], out["ar_at_iou"] = {}, {}
    if extra_thrs:
        extra = _run(coco_gt, coco_dt, iou_type, extra_thrs)  # standard numbers stay untouched
        xp, xr = _slices(extra)
        for i, t in enumerate(extra_thrs):
            out["ap_at_iou"][iou_key(t)] = _mean_valid(xp[i])
            out["ar_at_iou"][iou_key(t)] = _mean_valid(xr[i])
            for k, cid in enumerate(cat_ids):
                per_class[names[cid]]["ap_at_iou"][iou_key(t)] = _mean_valid(xp[i, :, k])
    out["per_class"] = per_class
    out["pr_curve"] = {"iou": 0.5, "recall": [float(r) for r in ev.params.recThrs], "precision": curves}
    return out


# --- the metrics document ------------------------------------------------------------------------


def evaluate_coco(
    gt: Path | str | Mapping[str, Any],
    predictions: Path | str | list[dict[str, Any]],
    iou_thresholds: Sequence[float] = (),
    conf: float = 0.05,
    reporter: Reporter = SILENT,
    attributes: AttributeSchema | None = None,
) -> dict[str, Any]:
    """The metrics document for COCO results against a COCO ground truth (see the module docstring).

    `gt`: annotation file or dict; `predictions`: results file or list of result dicts.
    `iou_thresholds`: extra thresholds in (0, 1) for `ap_at_iou`; `conf`: score threshold for
    precision/recall/F1 and the confusion matrix. Raises DataError for unusable inputs.
    """
    thresholds = check_iou_thresholds(iou_thresholds)
    if not (is_number(conf) and 0.0 <= conf <= 1.0):
        raise ConfigError(f"confidence threshold {conf} must be between 0 and 1 (e.g. --conf 0.05)")
    coco_gt = load_gt(gt)
    results = load_predictions(predictions, coco_gt)
    names = _class_names(coco_gt)
    cat_index = {cid: k for k, cid in enumerate(sorted(coco_gt.cats))}
    n_gt = np.zeros(len(cat_index), dtype=np.int64)
    for ann in coco_gt.dataset["annotations"]:
        if not ann.get("iscrowd", 0):  # crowd regions are ignore regions, not objects
            n_gt[cat_index[ann["category_id"]]] += 1
    n_pred = np.zeros(len(cat_index), dtype=np.int64)
    for det in results.boxes:
        n_pred[cat_index[det["category_id"]]] += 1

    doc: dict[str, Any] = {}
    matrix_counts: Counts | None = None
    matrix_type = "bbox"
    with reporter.stage("evaluate", total=len(IOU_TYPES)) as stage:
        for iou_type, dets in (("bbox", results.boxes), ("segm", results.masks)):
            if dets is None:  # no masks in the results (or the ground truth): boxes only
                doc[iou_type] = None
                stage.advance(1, status=f"{iou_type}: no masks")
                continue
            metrics = _iou_type_metrics(coco_gt, dets, iou_type, thresholds, names)
            counts = match_counts(coco_gt, dets, iou_type, conf, cat_index)
            for cid, k in cat_index.items():
                row = metrics["per_class"][names[cid]]
                row.update(n_gt=int(n_gt[k]), n_pred=int(n_pred[k]))
                row.update(prf(counts.tp[k], counts.fp[k], counts.fn[k]))
            metrics.update(prf(counts.tp.sum(), counts.fp.sum(), counts.fn.sum()))
            metrics.update(conf=float(conf), match_iou=MATCH_IOU)
            doc[iou_type] = metrics
            matrix_counts, matrix_type = counts, iou_type  # segm wins when present
            stage.advance(1, status=f"{iou_type} mAP {format_metric(metrics['map'])}")
    assert matrix_counts is not None  # bbox always runs
    doc["confusion_matrix"] = {
        "classes": [*names.values(), BACKGROUND],
        "matrix": matrix_counts.matrix.tolist(),
        "iou": MATCH_IOU,
        "iou_type": matrix_type,
        "conf": float(conf),
        "rows": "ground truth",
        "columns": "prediction",
    }
    if attributes or any("attributes" in det for det in results.boxes):  # n 0 when nothing was found
        from officescore.evaluate.attributes import attribute_metrics

        schema = attributes if attributes is not None else _schema_beside(gt)
        doc["attributes"] = attribute_metrics(coco_gt, results.boxes, schema, conf)
    doc.update(
        images=len(coco_gt.imgs),
        predictions=len(results.boxes),
        classes=list(names.values()),
        iou_thresholds=thresholds,
        conf=float(conf),
    )
    return doc


def _schema_beside(gt: Path | str | Mapping[str, Any]) -> AttributeSchema:
    """The attribute schema of an ingested split: dataset.json in the same folder (else none)."""
    import json

    if isinstance(gt, Mapping):
        return AttributeSchema()
    meta = Path(gt).parent / "dataset.json"
    try:
        data = json.loads(meta.read_text(encoding="utf-8"))
        classes = list(data["classes"])
        return AttributeSchema.from_dict(data.get("attributes"), str(meta)).restricted(classes)
    except (OSError, ValueError, KeyError, TypeError, ConfigError):
        return AttributeSchema()


# --- inference to COCO results -------------------------------------------------------------------


def _on_photo(results: list[dict[str, Any]], seen: tuple[int, int], photo: tuple[int, int]) -> None:
    """Results on a photo the model saw at `seen` (width, height), scaled onto the photo's own size:
    boxes by the two ratios, masks scaled up from their runs (a 12 MP mask is never a 12 MP array)."""
    sx, sy = photo[0] / seen[0], photo[1] / seen[1]
    for result in results:
        x, y, w, h = result["bbox"]
        result["bbox"] = [x * sx, y * sy, w * sx, h * sy]
        if "segmentation" in result:
            binary = masklib.decode(result["segmentation"])
            result["segmentation"] = masklib.scaled_up(binary, *photo)[0]


def _to_results(
    det: dict[str, Any],
    image_id: int,
    score_threshold: float,
    category_ids: Sequence[int] | None,
    attributes: AttributeSchema | None = None,
    with_mask_scores: bool = False,
) -> list[dict[str, Any]]:
    scores = det["scores"].float().cpu().numpy()
    keep = np.flatnonzero(scores >= score_threshold)
    labels = det["labels"].cpu().numpy()[keep]
    boxes = det["boxes"].float().cpu().numpy()[keep]
    rles: list[dict[str, Any]] | None = None
    mask_scores = None
    if with_mask_scores and "mask_scores" in det:
        mask_scores = det["mask_scores"].float().cpu().numpy()[keep]
    if "masks" in det:
        binary = (det["masks"][keep.tolist(), 0] > 0.5).cpu().numpy().astype(np.uint8)  # N x H x W
        encoded = mask_utils.encode(np.asfortranarray(binary.transpose(1, 2, 0))) if len(keep) else []
        rles = [{"size": [int(s) for s in r["size"]], "counts": r["counts"].decode()} for r in encoded]
    named: list[dict[str, Any]] = [{} for _ in keep]
    if attributes and "attributes" in det:  # the attribute head's values, by name
        from officescore.attribute_head import named_attributes

        values = det["attributes"][keep.tolist()].cpu().tolist()
        probabilities = det["attribute_scores"][keep.tolist()].float().cpu().tolist()
        named = [named_attributes(v, p, attributes)[0] for v, p in zip(values, probabilities, strict=True)]
    results = []
    for n, i in enumerate(keep):
        label = int(labels[n])
        if category_ids is not None:
            if not 1 <= label <= len(category_ids) or category_ids[label - 1] is None:
                continue  # a class the ground truth does not have
            category = int(category_ids[label - 1])
        else:
            category = label
        x1, y1, x2, y2 = (float(v) for v in boxes[n])
        item = {
            "image_id": image_id,
            "category_id": category,
            "bbox": [x1, y1, x2 - x1, y2 - y1],
            "score": float(scores[i]),
        }
        if rles is not None:
            item["segmentation"] = rles[n]
        if mask_scores is not None:
            item["mask_score"] = float(mask_scores[n])
        if named[n]:
            item["attributes"] = named[n]
        results.append(item)
    return results


def predict_coco(
    model: Any,
    dataset: Any,
    device: torch.device | str,
    batch_size: int = 2,
    workers: int = 0,
    score_threshold: float = 0.0,
    indices: Sequence[int] | None = None,
    reporter: Reporter = SILENT,
    category_ids: Sequence[int | None] | None = None,
    precision: str = "fp32",
    mask_scores: bool = False,
) -> list[dict[str, Any]]:
    """COCO results for `dataset[i]` (all items, or `indices`: a distributed rank's shard).

    `model`: torchvision-style detector (list of 3xHxW tensors -> list of dicts with boxes xyxy,
    labels 1..K, scores, masks Nx1xHxW). category_id is the label, or `category_ids[label - 1]`
    when given (None there drops that label). Masks are thresholded at 0.5 and stored as RLE; with
    `mask_scores` each mask result also has its `mask_score` (`officescore.infer.accel.run`).

    It runs on officescore.infer.accel's fast path with COCO's conventions: the model's own low score
    threshold and detection cap (`score_threshold`, when higher, is pushed into the model), and by
    default exact fp32, on a prepared copy, so a model being trained is left as it was. Photos much
    larger than the model's input are decoded reduced, as `score` decodes them (`OfficeDataset.
    decoded_for`), and their detections put back on the photo: boxes scaled, masks scaled up as RLE.
    """
    import torch
    from torch.utils.data import DataLoader, Subset

    from officescore.dataset import collate_fn
    from officescore.infer.accel import forward, prepare_model, proposals_for, resolve_precision
    from officescore.infer.accel.int8 import spread
    from officescore.model import input_size

    device = torch.device(device)
    size = input_size(model)
    if size is not None and hasattr(dataset, "decoded_for"):
        dataset = dataset.decoded_for(*size)
    kind = "torchscript" if isinstance(model, torch.jit.ScriptModule) else "checkpoint"
    proposals = proposals_for(precision)
    precision = resolve_precision(precision, device, kind)
    chosen = list(range(len(dataset))) if indices is None else [int(i) for i in indices]
    loader = DataLoader(
        Subset(dataset, chosen),
        batch_size=max(1, int(batch_size)),
        shuffle=False,
        num_workers=int(workers),
        collate_fn=getattr(dataset, "collate_fn", None) or collate_fn,
    )
    if hasattr(model, "eval"):
        model.eval()
    # int8 calibrates on photos of the set itself (their pixels, never their labels), the same ones
    # on every rank, so all ranks run the same model.
    photos = [dataset[i][0].to(device) for i in spread(range(len(dataset)))] if precision == "int8" else []
    from officescore.attribute_head import model_attributes

    fast = prepare_model(model, device, precision, proposals, copy_model=True, calibration=photos)
    attributes = model_attributes(model)
    conf = score_threshold if score_threshold > 0 else None
    results: list[dict[str, Any]] = []
    with reporter.stage("predict", total=len(chosen)) as stage:
        for images, targets in loader:
            outputs = forward(fast, [img.to(device) for img in images], device, precision, conf, mask_scores)
            for det, target, image in zip(outputs, targets, images, strict=True):
                image_id = int(target["image_id"])
                found = _to_results(det, image_id, score_threshold, category_ids, attributes, mask_scores)
                if "orig_size" in target:  # the photo was decoded reduced: back onto the photo
                    _on_photo(found, (int(image.shape[-1]), int(image.shape[-2])), target["orig_size"])
                results.extend(found)
            stage.advance(len(images), status=f"{len(results)} detections")
    return results


def category_map(model_classes: Sequence[str], data_classes: Sequence[str]) -> list[int | None] | None:
    """category_ids for predict_coco: model label -> data-set category id (1..K in class order).

    None when the class lists are equal (label == category id). Labels of classes the data set lacks
    map to None (dropped); no class in common at all is a DataError.
    """
    model_classes, data_classes = list(model_classes), list(data_classes)
    if model_classes == data_classes:
        return None
    ids = [data_classes.index(c) + 1 if c in data_classes else None for c in model_classes]
    if not any(ids):
        raise DataError(
            f"the model's classes ({', '.join(model_classes)}) and the data set's "
            f"({', '.join(data_classes)}) have nothing in common; evaluate on a data set of those classes"
        )
    return ids


def evaluate_model(
    model: Any,
    dataset: Any,
    device: torch.device | str,
    iou_thresholds: Sequence[float] = (),
    conf: float = 0.05,
    batch_size: int = 2,
    workers: int = 0,
    ctx: DistContext | None = None,
    category_ids: Sequence[int | None] | None = None,
    reporter: Reporter = SILENT,
    precision: str = "fp32",
    mask_scores: bool = False,
) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """Predict over `dataset` and evaluate against its `annotation_file` (`mask_scores`: as
    `predict_coco`).

    Under torch.distributed (`ctx` from `officescore.distributed.init`) each rank predicts its shard
    and rank 0 gathers and evaluates: rank 0 gets (metrics, predictions), the other ranks None.
    """
    from officescore.attribute_head import model_attributes
    from officescore.distributed import DistContext, gather_objects, shard

    check_iou_thresholds(iou_thresholds)  # fail before a long inference, not after
    ctx = ctx or DistContext()
    indices = shard(range(len(dataset)), ctx)
    mine = predict_coco(
        model,
        dataset,
        device,
        batch_size=batch_size,
        workers=workers,
        indices=indices,
        reporter=reporter,
        category_ids=category_ids,
        precision=precision,
        mask_scores=mask_scores,
    )
    parts = gather_objects(ctx, mine)
    if not ctx.is_main:
        return None
    # One order whatever the number of ranks; COCOeval's numbers do not depend on it.
    predictions = sorted((p for part in parts for p in part), key=lambda p: (p["image_id"], -p["score"]))
    # the data set's schema (else the head's) only for a model with an attribute head: a key per
    # attribute even when it detected nothing; a model without one gets no "attributes", as before
    head = model_attributes(model)
    schema = (getattr(dataset, "attributes", None) or head) if head else None
    metrics = evaluate_coco(dataset.annotation_file, predictions, iou_thresholds, conf, reporter, schema)
    return metrics, predictions
