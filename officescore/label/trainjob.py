"""One training job of `label backend --train`, run as a child process at a lower CPU priority.

    python -m officescore.label.trainjob JOB_FOLDER      (JOB_FOLDER/job.json says what to do)

Steps: pull the project's labels through Label Studio's API (`label.pull`), ingest them
(`ingest_export`: the same checks as `officescore ingest`, the project's classes; labels of other
classes are listed and skipped), split on the backend's fixed held-out set, fine-tune warm-started
from the current model into an ordinary run folder (`officescore.train`), then evaluate the new and
the current model on the same val photos, and find the threshold at which the new model's
suggestions, scored as the backend shows them (class score x mask score², `label.predict.
suggestion_score`), have the best mask F1 there, averaged over bootstrap resamples of those photos (a
threshold found on a few photos jumps with one of them), among the thresholds at which they are no
less precise than the current model's suggestions as labellers see them: `suggest`, what `label
backend` shows by default. The last thing it does is write JOB_FOLDER/result.json (atomically):
the backend reads nothing else, so a job killed at any point leaves no result and its run folder is
never loaded.
The API key comes in the environment (LABEL_STUDIO_API_KEY), never in a file.

A labelled task whose photo is not a readable image fails the job (the current model keeps
answering) with every such task named in `unreadable`; the backend hands them to later jobs as
`left_out`, which pull without them, so one broken upload does not stop the project's training.
When no photo at all could be read, the fault is the server's, not the photos': nothing is left out.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from officescore.errors import DataError
from officescore.files import atomic_write_json

# Below this many labelled val objects the best-F1 threshold is a guess: the backend's default stays.
MIN_VAL_OBJECTS = 10
# Unreadable photos a failed job's one line names (the rest counted).
NAMED_IN_A_LINE = 3
JOB_FILE = "job.json"
RESULT_FILE = "result.json"
LOG_FILE = "log.txt"
# Written once the labels are pulled: what the pull held, for a backend restarted while the job runs.
PULLED_FILE = "pulled.json"


class UnreadablePhotos(DataError):
    """Labelled tasks whose photos are not images (task -> why): this job fails on them."""

    def __init__(self, unreadable: dict[int, str]) -> None:
        self.tasks = dict(unreadable)
        them = "it" if len(unreadable) == 1 else "them"
        named = list(unreadable.values())[:NAMED_IN_A_LINE]
        more = len(unreadable) - len(named)  # a line, not a page: `label status` lists them all
        super().__init__(
            "; ".join(named)
            + (f"; and {more} more task(s)" if more else "")
            + f"; the next job leaves {them} out until labelled again"
        )


def val_draw(task: int) -> bytes:
    """A task's fixed draw for the held-out set: the same in every job and restart."""
    return hashlib.sha256(f"officescore-val-{task}".encode()).digest()


def held_out(task: int, fraction: float) -> bool:
    """Whether a new photo's draw puts it in the held-out set."""
    return int.from_bytes(val_draw(task)[:8], "big") / 2**64 < fraction


def assign_splits(
    tasks: Sequence[int],
    groups: Sequence[Sequence[int]],
    val_before: set[int],
    train_before: set[int],
    fraction: float,
) -> dict[int, str]:
    """'train' or 'val' per task. Held-out photos stay held out and trained photos stay in train;
    a near-duplicate group follows its earlier members (else its first member's draw), so a photo is
    never validated on a copy of itself; the held-out set gets its first photo once there are two;
    with every photo held out, the newest one's group trains."""
    group_of = {t: i for i, members in enumerate(groups) for t in members}
    members: dict[Any, list[int]] = {}
    for t in tasks:
        members.setdefault(group_of.get(t, ("single", t)), []).append(t)
    out: dict[int, str] = {}
    for group in members.values():
        if any(t in val_before for t in group):
            split = "val"
        elif any(t in train_before for t in group):
            split = "train"
        else:
            split = "val" if held_out(min(group), fraction) else "train"
        for t in group:
            out[t] = split
    if len(tasks) >= 2 and fraction > 0 and "val" not in out.values():
        new = [t for t in tasks if t not in train_before]  # never hold out a photo already trained on
        if new:
            first = min(new, key=val_draw)
            for group in members.values():
                if first in group and not any(t in train_before for t in group):
                    for t in group:
                        out[t] = "val"
    if "train" not in out.values() and tasks:  # nothing to train on: the newest photo trains,
        newest = max(tasks)  # with its near-duplicates (never validate on a copy of a trained photo)
        for t in next(group for group in members.values() if newest in group):
            out[t] = "train"
    return out


def _split_dataset(dataset: Path, export: dict[str, Any], job: dict[str, Any]) -> dict[str, Any]:
    """Rewrite the ingested data set's train/val on the backend's held-out set; returns the split."""
    task_of = {img["file_name"]: int(img["label_studio_task"]) for img in export["images"]}
    data = json.loads((dataset / "train.json").read_text(encoding="utf-8"))
    meta = json.loads((dataset / "dataset.json").read_text(encoding="utf-8"))
    image_task = {img["id"]: task_of[img["original_file_name"]] for img in data["images"]}
    out_name_task = {img["file_name"]: image_task[img["id"]] for img in data["images"]}
    groups = [
        [out_name_task[name] for name in names if name in out_name_task]
        for names in (meta.get("duplicates") or {}).get("groups") or []
    ]
    tasks = sorted(image_task.values())
    splits = assign_splits(
        tasks, groups, set(job["val_tasks"]), set(job["train_tasks"]), float(job["val_fraction"])
    )
    counts = {}
    for split in ("train", "val"):
        images = [img for img in data["images"] if splits[image_task[img["id"]]] == split]
        ids = {img["id"] for img in images}
        anns = [a for a in data["annotations"] if a["image_id"] in ids]
        atomic_write_json(dataset / f"{split}.json", {**data, "images": images, "annotations": anns})
        counts[split] = {
            "images": len(images),
            "annotations": len(anns),
            "crowd": sum(a["iscrowd"] for a in anns),
        }
    meta["counts"].update(counts)
    meta["val_fraction"] = float(job["val_fraction"])
    meta["split"] = "label backend: fixed held-out set of Label Studio tasks"
    atomic_write_json(dataset / "dataset.json", meta)
    return {
        "train_tasks": sorted(t for t, s in splits.items() if s == "train"),
        "val_tasks": sorted(t for t, s in splits.items() if s == "val"),
    }


def _unknown_labels(export: dict[str, Any], classes: Sequence[str]) -> dict[str, int]:
    """Labels whose class the project's labelling config does not have: {class: objects}."""
    names = {c["id"]: c["name"] for c in export["categories"]}
    found: dict[str, int] = {}
    for ann in export["annotations"]:
        name = names.get(ann["category_id"])
        if name not in classes:
            found[str(name)] = found.get(str(name), 0) + 1
    return found


def val_scores(
    checkpoint: Path,
    dataset: Path,
    device: str,
    replaced: tuple[list[dict[str, Any]], float] | None = None,
    by_mask: bool = True,
) -> dict[str, Any]:
    """A checkpoint on the data set's val split: `segm_map`, `bbox_map`, its mask detections
    (`masks`, at their class scores, each with its `mask_score`) and `suggest`: the threshold with
    the best mask F1, averaged over bootstrap resamples of the val photos, on the suggestion score
    (`as_suggested`; `by_mask=False`: on the class score, and without the "by_mask" mark), and no
    less precise there than `replaced` (the current model's detections as they were shown, and their
    threshold) where given (`evaluate.match.bagged_best_f1_conf`); None below MIN_VAL_OBJECTS
    labelled objects. All None without val photos."""
    from officescore.dataset import OfficeDataset, build_transforms
    from officescore.devices import resolve_device
    from officescore.evaluate import category_map, evaluate_model
    from officescore.evaluate.inputs import load_gt
    from officescore.evaluate.match import bagged_best_f1_conf
    from officescore.model import model_from_checkpoint

    val_set = OfficeDataset(dataset, "val", build_transforms(train=False))
    if len(val_set) == 0:
        return {"segm_map": None, "bbox_map": None, "masks": None, "suggest": None}
    torch_device = resolve_device(device)
    model, classes = model_from_checkpoint(checkpoint, torch_device)
    ids = category_map(classes, val_set.classes)
    found = evaluate_model(model, val_set, torch_device, category_ids=ids, mask_scores=True)
    assert found is not None
    metrics, predictions = found
    masks = [p for p in predictions if "segmentation" in p]
    gt = load_gt(val_set.annotation_file)
    ranked = as_suggested(masks) if by_mask else masks
    suggest = bagged_best_f1_conf(gt, ranked, replaced=replaced) if masks else None
    if suggest is not None and suggest["tp"] + suggest["fn"] < MIN_VAL_OBJECTS:
        suggest = None
    if suggest is not None and by_mask:
        suggest["by_mask"] = True  # the backend shows suggestions by this score only at this mark
    return {
        "segm_map": (metrics.get("segm") or {}).get("map"),
        "bbox_map": (metrics.get("bbox") or {}).get("map"),
        "masks": masks,
        "suggest": suggest,
    }


def as_suggested(masks: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """COCO mask results scored as the backend shows them: `label.predict.suggestion_score`."""
    from officescore.label.predict import suggestion_score

    return [{**p, "score": suggestion_score(p["score"], p.get("mask_score"))} for p in masks]


def compare_on_val(
    new: Path,
    current: Path | None,
    current_conf: float | None,
    dataset: Path,
    device: str,
    by_mask: bool = True,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """`val_scores` of the new and the current model (empty without one) on the same val photos. The
    new model's threshold is no less precise there than the current model's suggestions as they are
    shown, so a new version is never sloppier than the one labellers saw before: at `current_conf` on
    the suggestion score (its own threshold), or with None at the backend's default on the class
    score (a model without a threshold of its own). `by_mask=False`: class scores throughout."""
    from officescore.label.prelabel import DEFAULT_CONF

    old = val_scores(current, dataset, device, by_mask=by_mask) if current is not None else {}
    replaced = None
    if old.get("masks"):
        if current_conf is None:
            replaced = (old["masks"], DEFAULT_CONF)
        else:
            replaced = (as_suggested(old["masks"]) if by_mask else old["masks"], float(current_conf))
    return val_scores(new, dataset, device, replaced, by_mask), old


def run_job(folder: Path) -> dict[str, Any]:
    """Everything one job does (see the module docstring); returns what goes into result.json."""
    from officescore.ingest import ingest_export
    from officescore.label.client import LabelStudio, api_key
    from officescore.label.predict import SUGGEST_FILE, model_version
    from officescore.label.pull import pull_project
    from officescore.train import TrainConfig, train

    job = json.loads((folder / JOB_FILE).read_text(encoding="utf-8"))
    started = time.monotonic()
    client = LabelStudio.connect(job["url"], api_key())
    project = client.project(job["project"])
    classes = list(project.schema.classes)
    pulled_at = time.time()  # labels that reached the backend before this are in the pull
    local_root, cache = _path(job.get("local_root")), _path(job.get("photo_cache"))
    left_out = [int(task) for task in job.get("left_out") or ()]
    pulled = pull_project(
        client,
        job["project"],
        folder / "export",
        local_root,
        cache=cache,
        leave_out=left_out,
        skip_unreadable=True,
    )
    if pulled.unreadable and not pulled.images:  # every photo: a server or address fault, not the photos'
        first = next(iter(pulled.unreadable.values()))
        raise DataError(
            f"none of the {len(pulled.unreadable)} labelled photo(s) is a readable image "
            f"(the first, {first}): is Label Studio serving its photos?"
        )
    if pulled.unreadable:
        raise UnreadablePhotos(pulled.unreadable)
    # The newest label pulled, by Label Studio's clock: labels made later (its clock too) are not
    # in the pull, however far the backend's clock is from the server's.
    seen = {"pulled_at": pulled_at, "labels_until": pulled.labels_until}
    atomic_write_json(folder / PULLED_FILE, seen)
    export = json.loads(pulled.export.read_text(encoding="utf-8"))
    unknown = _unknown_labels(export, classes)
    dataset = folder / "dataset"
    ingested = ingest_export(pulled.export, out=dataset, val_fraction=0.0, classes=classes)
    split = _split_dataset(dataset, export, job)
    current = _path(job.get("current"))
    weights = str(current) if current is not None else str(job["weights"])
    config = TrainConfig(
        data=dataset,
        arch=job["arch"],
        weights=weights,
        epochs=int(job["epochs"]),
        batch_size=int(job["batch_size"]),
        lr=job.get("lr"),
        img_size=job.get("img_size"),
        model_kwargs=dict(job.get("model_kwargs") or {}),
        workers=0,
        device=job["device"],
        amp=bool(job.get("amp")),
        val_every=1,
        max_minutes=job.get("minutes"),
        name=run_name(int(job["job"])),
        project=Path(job["runs"]),
        seed=int(job.get("seed") or 0),
    )
    trained = train(config)
    best = trained.best_checkpoint or trained.last_checkpoint  # no val photos: the last epoch
    new, old = compare_on_val(best, current, job.get("current_conf"), dataset, job["device"])
    version = model_version(best)
    if new["suggest"] is not None:  # beside the weights: `prelabel` and `label push` suggest as the backend
        atomic_write_json(Path(trained.run_dir) / SUGGEST_FILE, {"model_version": version, **new["suggest"]})
    return {
        "ok": True,
        "run_dir": str(trained.run_dir),
        "checkpoint": str(best),
        "model_version": version,
        "segm_map": new["segm_map"],
        "bbox_map": new["bbox_map"],
        "suggest": new["suggest"],
        "current_segm_map": old.get("segm_map"),
        "current_bbox_map": old.get("bbox_map"),
        "trained_photos": len(split["train_tasks"]),
        "val_photos": len(split["val_tasks"]),
        **split,
        "labelled_photos": pulled.images,
        **seen,
        "epochs": trained.epochs_completed,
        "train_seconds": round(trained.seconds, 2),
        "job_seconds": round(time.monotonic() - started, 2),
        "skipped_unknown_classes": unknown,
        "problems": len(ingested.problems),
        "notes": trained.notes,
    }


def run_name(job: int) -> str:
    """The run folder's name for job `job` (a clash with an older folder adds digits: label-job00012)."""
    return f"label-job{job:04d}"


def _path(value: Any) -> Path | None:
    return Path(value) if value else None


def _failure(exc: Exception, folder: Path, job: dict[str, Any]) -> str:
    """A failed job's one line. A full disk names where the job writes: a write's ENOSPC often
    carries no file name ("[Errno 28] No space left on device" alone)."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        where = exc.filename or f"{folder} or {job.get('runs')}"
        return (
            f"the disk is full writing to {where} ({exc.strerror}); free space; the next label or "
            "Start Training tries again"
        )
    return f"{type(exc).__name__}: {exc}"


def main(argv: Sequence[str] | None = None) -> int:
    from officescore.errors import UserError
    from officescore.label.client import LabelStudioError

    args = list(sys.argv[1:] if argv is None else argv)
    folder = Path(args[0])
    job = json.loads((folder / JOB_FILE).read_text(encoding="utf-8"))
    if job.get("nice"):
        os.nice(int(job["nice"]))  # below the backend, so /predict keeps answering while this trains
    if job.get("threads"):
        import torch

        torch.set_num_threads(int(job["threads"]))
    try:
        result = run_job(folder)
    except UserError as exc:
        unreachable = isinstance(exc, LabelStudioError) and "not reachable" in str(exc)
        result = {"ok": False, "error": str(exc), "retry": unreachable}
        if isinstance(exc, UnreadablePhotos):
            result["unreadable"] = {str(task): why for task, why in exc.tasks.items()}
    except Exception as exc:  # noqa: BLE001 - any failure is the job's, the backend keeps its model
        traceback.print_exc()
        result = {"ok": False, "error": _failure(exc, folder, job), "retry": False}
    atomic_write_json(folder / RESULT_FILE, result)
    print(json.dumps({k: v for k, v in result.items() if k not in ("train_tasks", "val_tasks")}))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
