"""COCO evaluation of instance segmentation: pycocotools' numbers, plus what a person needs to act.

`evaluate_coco(gt, predictions)` returns the metrics document (docs/ARCHITECTURE.md):

- the 12 standard COCOeval stats for `bbox` and `segm`, exactly as `COCOeval.summarize()` computes
  them (map, ap50, ap75, ap_small/medium/large, ar1/ar10/ar100, ar_small/medium/large);
- AP (and AR) at any extra IoU thresholds, from a second COCOeval run whose `iouThrs` are just those
  thresholds, so the standard numbers never change;
- per-class AP / AP50 / AP75 from COCOeval's `precision` array, with ground-truth and prediction counts;
- precision, recall and F1 at a score threshold (`conf`), by greedy matching at IoU 0.5 per image and
  class, ignoring detections that fall on crowd regions (as COCOeval does);
- a confusion matrix at IoU 0.5 (rows: ground truth, columns: prediction, plus "background").

Undefined values (pycocotools' -1: no ground truth for that class or area range; precision with no
detections) are `None`, i.e. `null` in JSON. Results files follow COCO's format: detections with
`bbox` evaluate boxes; with `segmentation` (RLE, or polygons) they also evaluate masks. For `segm`
the detection's area is its mask area (as in detectron2), not its box area.

`predict_coco(model, dataset, device)` runs a torchvision-style detector over a data set and returns
such COCO results. Plots and files: `officescore.evaluate_plots`.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from officescore.errors import ConfigError, DataError
from officescore.masks import bbox as rle_bbox
from officescore.masks import from_polygons, normalise
from officescore.progress import SILENT, Reporter

if TYPE_CHECKING:
    import torch

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
MATCH_IOU = 0.5
BACKGROUND = "background"
_SHOW_IDS = 5  # how many offending ids an error message names


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """pycocotools prints progress to stdout; keep stdout clean (it may be --json output)."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def _few(ids: Sequence[Any]) -> str:
    shown = ", ".join(str(i) for i in sorted(ids)[:_SHOW_IDS])
    return shown + (f" and {len(ids) - _SHOW_IDS} more" if len(ids) > _SHOW_IDS else "")


def _read_json(path: Path, what: str) -> Any:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise DataError(f"{what} file {path} does not exist") from None
    except IsADirectoryError:
        raise DataError(f"{what} file {path} is a folder; give the JSON file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{what} file {path} is not valid JSON ({exc})") from None


def check_iou_thresholds(iou_thresholds: Sequence[float]) -> list[float]:
    """Sorted unique thresholds, each strictly between 0 and 1 (ConfigError otherwise)."""
    out: set[float] = set()
    for value in iou_thresholds:
        t = float(value)
        if not (0.0 < t < 1.0):
            raise ConfigError(f"IoU threshold {value} must be strictly between 0 and 1 (e.g. --iou 0.3)")
        out.add(t)
    return sorted(out)


def iou_key(t: float) -> str:
    """How a threshold is named in the metrics document: 0.3 -> "0.3", 0.55 -> "0.55"."""
    return f"{float(t):.10g}"


# --- loading and validating ground truth and results ---------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_gt(data: Any, source: str) -> None:
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DataError(f"{source}: expected a COCO object with images, annotations and categories")
    categories = data.get("categories")
    if not isinstance(categories, list) or not categories:
        raise DataError(f"{source}: has no categories; a COCO ground truth lists its classes")
    data.setdefault("annotations", [])
    image_ids = {img.get("id") for img in data["images"] if isinstance(img, dict)}
    cat_ids = {cat.get("id") for cat in categories if isinstance(cat, dict) and "name" in cat}
    if len(cat_ids) != len(categories):
        raise DataError(f"{source}: every category needs a unique id and a name")
    ann_ids: set[int] = set()
    for ann in data["annotations"]:
        if not isinstance(ann, dict) or not all(k in ann for k in ("id", "image_id", "category_id")):
            raise DataError(f"{source}: every annotation needs id, image_id and category_id")
        if ann["image_id"] not in image_ids or ann["category_id"] not in cat_ids:
            raise DataError(
                f"{source}: annotation {ann['id']} refers to an unknown image or category "
                f"(image_id {ann['image_id']}, category_id {ann['category_id']})"
            )
        bb = ann.get("bbox")
        if not (isinstance(bb, list) and len(bb) == 4 and all(_is_number(v) for v in bb)):
            raise DataError(f"{source}: annotation {ann['id']} has no valid bbox [x, y, w, h]")
        if not _is_number(ann.get("area")):
            raise DataError(f"{source}: annotation {ann['id']} has no area")
        # COCOeval marks unmatched detections with id 0, so ids must be positive and unique.
        if not isinstance(ann["id"], int) or ann["id"] <= 0 or ann["id"] in ann_ids:
            raise DataError(f"{source}: annotation ids must be unique positive integers (id {ann['id']})")
        ann_ids.add(ann["id"])
        ann.setdefault("iscrowd", 0)


def load_gt(gt: Path | str | Mapping[str, Any]) -> COCO:
    """A pycocotools COCO object from a file or a dict (the dict is copied, never modified)."""
    if isinstance(gt, Mapping):
        data, source = copy.deepcopy(dict(gt)), "ground truth"
    else:
        data, source = _read_json(Path(gt), "ground truth"), f"ground truth {gt}"
    _check_gt(data, source)
    coco = COCO()
    coco.dataset = data
    with _quiet():
        coco.createIndex()
    return coco


@dataclass
class _Results:
    """Validated detections, split the way each COCOeval run wants them."""

    boxes: list[dict[str, Any]]  # image_id, category_id, score, bbox
    masks: list[dict[str, Any]] | None  # image_id, category_id, score, segmentation; None: no masks


def _segmentation(pred: dict[str, Any], image: dict[str, Any], where: str) -> dict[str, Any]:
    segm = pred["segmentation"]
    height, width = image.get("height"), image.get("width")
    try:
        if isinstance(segm, list):  # polygons
            if height is None or width is None:
                raise DataError(f"{where}: polygon masks need the image's height and width in the GT")
            return from_polygons(segm, int(height), int(width))
        rle = normalise(segm)
    except (TypeError, KeyError, ValueError) as exc:
        raise DataError(f"{where}: segmentation is not COCO RLE or polygons ({exc})") from None
    if height is not None and width is not None and rle["size"] != [int(height), int(width)]:
        raise DataError(
            f"{where}: mask size {rle['size']} differs from image {pred['image_id']} "
            f"({int(height)}x{int(width)}); masks must be in original image coordinates"
        )
    return rle


def _check_results(data: Any, coco_gt: COCO, source: str) -> _Results:
    shape = "a JSON list of COCO results {image_id, category_id, score, bbox and/or segmentation}"
    if not isinstance(data, list):
        raise DataError(f"{source}: expected {shape}, got {type(data).__name__}")
    for i, pred in enumerate(data):
        if not isinstance(pred, dict) or not all(k in pred for k in ("image_id", "category_id", "score")):
            raise DataError(f"{source}: item {i} is not a COCO result; expected {shape}")
        if not _is_number(pred["score"]):
            raise DataError(f"{source}: item {i} has a score that is not a finite number")
        if "bbox" not in pred and "segmentation" not in pred:
            raise DataError(f"{source}: item {i} has neither bbox nor segmentation")
    foreign = {p["image_id"] for p in data} - set(coco_gt.imgs)
    if foreign:
        raise DataError(
            f"{source}: predictions for {len(foreign)} image id(s) not in the ground truth "
            f"({_few(list(foreign))}); evaluate against the annotation file the predictions were made on"
        )
    foreign = {p["category_id"] for p in data} - set(coco_gt.cats)
    if foreign:
        raise DataError(
            f"{source}: category id(s) {_few(list(foreign))} are not in the ground truth "
            f"(its ids: {_few(list(coco_gt.cats))})"
        )
    with_masks = sum("segmentation" in p for p in data)
    if 0 < with_masks < len(data):
        raise DataError(
            f"{source}: {len(data) - with_masks} of {len(data)} results have no segmentation; "
            "give every result a mask, or none"
        )
    gt_masks = all("segmentation" in a for a in coco_gt.dataset["annotations"])
    boxes: list[dict[str, Any]] = []
    masks: list[dict[str, Any]] | None = [] if gt_masks and with_masks == len(data) else None
    for i, pred in enumerate(data):
        base = {k: pred[k] for k in ("image_id", "category_id", "score")}
        image = coco_gt.imgs[pred["image_id"]]
        rle = _segmentation(pred, image, f"{source}: item {i}") if with_masks else None
        if "bbox" in pred:
            bb = pred["bbox"]
            if not (isinstance(bb, list) and len(bb) == 4 and all(_is_number(v) for v in bb)):
                raise DataError(f"{source}: item {i} has a bbox that is not [x, y, w, h] numbers")
        else:
            bb = rle_bbox(rle)  # what pycocotools' loadRes derives from the mask
        boxes.append({**base, "bbox": bb})
        if masks is not None and rle is not None:
            masks.append({**base, "segmentation": rle})
    return _Results(boxes=boxes, masks=masks)


def load_predictions(predictions: Path | str | list[dict[str, Any]], coco_gt: COCO) -> _Results:
    if isinstance(predictions, str | Path):
        return _check_results(_read_json(Path(predictions), "predictions"), coco_gt, f"{predictions}")
    return _check_results(predictions, coco_gt, "predictions")


# --- COCOeval runs -------------------------------------------------------------------------------


def _load_res(coco_gt: COCO, dets: list[dict[str, Any]]) -> COCO:
    """coco_gt.loadRes on copies (it edits its input); an empty result set, which loadRes rejects."""
    if dets:
        with _quiet():
            return coco_gt.loadRes([dict(d) for d in dets])
    res = COCO()
    res.dataset = {
        "images": list(coco_gt.dataset["images"]),
        "categories": copy.deepcopy(coco_gt.dataset["categories"]),
        "annotations": [],
    }
    with _quiet():
        res.createIndex()
    return res


def _run(coco_gt: COCO, coco_dt: COCO, iou_type: str, iou_thrs: Sequence[float] | None = None) -> COCOeval:
    ev = COCOeval(coco_gt, coco_dt, iou_type)
    if iou_thrs is not None:
        ev.params.iouThrs = np.asarray(iou_thrs, dtype=np.float64)
    with _quiet():
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


# --- precision / recall / F1 and the confusion matrix at IoU 0.5 ---------------------------------


@dataclass
class _Counts:
    tp: np.ndarray  # [K] detections matched to a ground-truth object of their class
    fp: np.ndarray  # [K] detections matching nothing of their class (crowd matches excluded)
    fn: np.ndarray  # [K] ground-truth objects no detection of their class matched
    matrix: np.ndarray  # [K+1, K+1] rows ground truth, columns prediction, index K = background


def _ious(coco_gt: COCO, anns: list[dict[str, Any]], dets: list[dict[str, Any]], iou_type: str) -> np.ndarray:
    if not anns or not dets:
        return np.zeros((len(dets), len(anns)))
    crowd = [int(a.get("iscrowd", 0)) for a in anns]
    if iou_type == "bbox":
        d_geo, g_geo = [d["bbox"] for d in dets], [a["bbox"] for a in anns]
    else:
        d_geo = [d["segmentation"] for d in dets]
        g_geo = [coco_gt.annToRLE(a) for a in anns]
    # For crowd regions pycocotools divides by the detection's area: a detection inside one matches.
    return np.asarray(mask_utils.iou(d_geo, g_geo, crowd), dtype=np.float64).reshape(len(dets), len(anns))


def _match_image(
    ious: np.ndarray, gcls: np.ndarray, crowd: np.ndarray, dcls: np.ndarray, counts: _Counts
) -> None:
    """Greedy matching by descending score, like COCOeval at one threshold, then class confusions."""
    bg = counts.matrix.shape[0] - 1
    taken = np.zeros(len(gcls), dtype=bool)
    unmatched: list[int] = []
    for i, c in enumerate(dcls):
        hits = ious[i] >= MATCH_IOU
        free = hits & (gcls == c) & ~crowd & ~taken
        if free.any():
            taken[int(np.where(free, ious[i], -1.0).argmax())] = True
            counts.tp[c] += 1
            counts.matrix[c, c] += 1
        elif not (hits & (gcls == c) & crowd).any():  # on a crowd region of its class: ignored
            counts.fp[c] += 1
            unmatched.append(i)
    np.add.at(counts.fn, gcls[~crowd & ~taken], 1)
    # False positives that overlap an object of another class are confusions, not false alarms.
    for i in unmatched:
        free = (ious[i] >= MATCH_IOU) & ~crowd & ~taken
        if free.any():
            j = int(np.where(free, ious[i], -1.0).argmax())
            taken[j] = True
            counts.matrix[gcls[j], dcls[i]] += 1
        else:
            counts.matrix[bg, dcls[i]] += 1
    np.add.at(counts.matrix, (gcls[~crowd & ~taken], bg), 1)


def _match(
    coco_gt: COCO, dets: list[dict[str, Any]], iou_type: str, conf: float, cat_index: dict[int, int]
) -> _Counts:
    k = len(cat_index)
    counts = _Counts(
        tp=np.zeros(k, dtype=np.int64),
        fp=np.zeros(k, dtype=np.int64),
        fn=np.zeros(k, dtype=np.int64),
        matrix=np.zeros((k + 1, k + 1), dtype=np.int64),
    )
    by_image: dict[Any, list[dict[str, Any]]] = {}
    for d in dets:
        if d["score"] >= conf:
            by_image.setdefault(d["image_id"], []).append(d)
    for img_id in coco_gt.imgs:
        anns = coco_gt.imgToAnns.get(img_id, [])
        image_dets = sorted(by_image.get(img_id, []), key=lambda d: -d["score"])  # stable, as COCOeval
        if not anns and not image_dets:
            continue
        _match_image(
            _ious(coco_gt, anns, image_dets, iou_type),
            np.array([cat_index[a["category_id"]] for a in anns], dtype=np.int64),
            np.array([bool(a.get("iscrowd", 0)) for a in anns], dtype=bool),
            np.array([cat_index[d["category_id"]] for d in image_dets], dtype=np.int64),
            counts,
        )
    return counts


def _prf(tp: int, fp: int, fn: int) -> dict[str, Any]:
    """Precision, recall, F1 (None where 0/0) with the counts behind them."""
    tp, fp, fn = int(tp), int(fp), int(fn)
    return {
        "precision": tp / (tp + fp) if tp + fp else None,
        "recall": tp / (tp + fn) if tp + fn else None,
        "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None,
        "tp": tp,
        "fp": fp,
        "fn": fn,
    }


# --- the metrics document ------------------------------------------------------------------------


def evaluate_coco(
    gt: Path | str | Mapping[str, Any],
    predictions: Path | str | list[dict[str, Any]],
    iou_thresholds: Sequence[float] = (),
    conf: float = 0.05,
    reporter: Reporter = SILENT,
) -> dict[str, Any]:
    """The metrics document for COCO results against a COCO ground truth (see the module docstring).

    `gt`: annotation file or dict; `predictions`: results file or list of result dicts.
    `iou_thresholds`: extra thresholds in (0, 1) for `ap_at_iou`; `conf`: score threshold for
    precision/recall/F1 and the confusion matrix. Raises DataError for unusable inputs.
    """
    thresholds = check_iou_thresholds(iou_thresholds)
    if not (_is_number(conf) and 0.0 <= conf <= 1.0):
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
    matrix_counts: _Counts | None = None
    matrix_type = "bbox"
    with reporter.stage("evaluate", total=len(IOU_TYPES)) as stage:
        for iou_type, dets in (("bbox", results.boxes), ("segm", results.masks)):
            if dets is None:  # no masks in the results (or the ground truth): boxes only
                doc[iou_type] = None
                stage.advance(1, status=f"{iou_type}: no masks")
                continue
            metrics = _iou_type_metrics(coco_gt, dets, iou_type, thresholds, names)
            counts = _match(coco_gt, dets, iou_type, conf, cat_index)
            for cid, k in cat_index.items():
                row = metrics["per_class"][names[cid]]
                row.update(n_gt=int(n_gt[k]), n_pred=int(n_pred[k]))
                row.update(_prf(counts.tp[k], counts.fp[k], counts.fn[k]))
            metrics.update(_prf(counts.tp.sum(), counts.fp.sum(), counts.fn.sum()))
            metrics.update(conf=float(conf), match_iou=MATCH_IOU)
            doc[iou_type] = metrics
            matrix_counts, matrix_type = counts, iou_type  # segm wins when present
            stage.advance(1, status=f"{iou_type} mAP {metrics['map'] or 0:.3f}")
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
    doc.update(
        images=len(coco_gt.imgs),
        predictions=len(results.boxes),
        classes=list(names.values()),
        iou_thresholds=thresholds,
        conf=float(conf),
    )
    return doc


# --- inference to COCO results -------------------------------------------------------------------


def _collate(batch: list[Any]) -> tuple[Any, ...]:
    return tuple(zip(*batch, strict=True))


def _detections(outputs: Any) -> list[dict[str, Any]]:
    # A scripted torchvision detector returns (losses, detections); an eager one just detections.
    if isinstance(outputs, tuple) and len(outputs) == 2 and isinstance(outputs[1], list):
        return outputs[1]
    return list(outputs)


def _to_results(
    det: dict[str, Any], image_id: int, score_threshold: float, category_ids: Sequence[int] | None
) -> list[dict[str, Any]]:
    scores = det["scores"].float().cpu().numpy()
    keep = np.flatnonzero(scores >= score_threshold)
    labels = det["labels"].cpu().numpy()[keep]
    boxes = det["boxes"].float().cpu().numpy()[keep]
    rles: list[dict[str, Any]] | None = None
    if "masks" in det:
        binary = (det["masks"][keep.tolist(), 0] > 0.5).cpu().numpy().astype(np.uint8)  # N x H x W
        encoded = mask_utils.encode(np.asfortranarray(binary.transpose(1, 2, 0))) if len(keep) else []
        rles = [{"size": [int(s) for s in r["size"]], "counts": r["counts"].decode()} for r in encoded]
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
) -> list[dict[str, Any]]:
    """COCO results for `dataset[i]` (all items, or `indices`: a distributed rank's shard).

    `model`: torchvision-style detector (list of 3xHxW tensors -> list of dicts with boxes xyxy,
    labels 1..K, scores, masks Nx1xHxW). category_id is the label, or `category_ids[label - 1]`
    when given (None there drops that label). Masks are thresholded at 0.5 and stored as RLE.
    """
    import torch
    from torch.utils.data import DataLoader, Subset

    device = torch.device(device)
    chosen = list(range(len(dataset))) if indices is None else [int(i) for i in indices]
    loader = DataLoader(
        Subset(dataset, chosen),
        batch_size=max(1, int(batch_size)),
        shuffle=False,
        num_workers=int(workers),
        collate_fn=getattr(dataset, "collate_fn", None) or _collate,
    )
    if hasattr(model, "eval"):
        model.eval()
    results: list[dict[str, Any]] = []
    with reporter.stage("predict", total=len(chosen)) as stage, torch.inference_mode():
        for images, targets in loader:
            outputs = _detections(model([img.to(device) for img in images]))
            for det, target in zip(outputs, targets, strict=True):
                image_id = int(target["image_id"])
                results.extend(_to_results(det, image_id, score_threshold, category_ids))
            stage.advance(len(images), status=f"{len(results)} detections")
    return results
