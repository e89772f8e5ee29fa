"""`audit --folds K`: out-of-sample predictions by cross-fitting K models on the data set itself.

Each fold's model trains on the other K-1 folds (a temporary data-set folder whose train.json holds
just those photos) and predicts only its own held-out fold. Near-duplicate photos (the groups ingest
recorded in dataset.json) stay in one fold, so no model sees a copy of a photo it predicts.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from officescore.curate.labels import LabelledImage, SplitLabels
from officescore.curate.predictions import PREDICT_CONF, predict_images
from officescore.errors import ConfigError
from officescore.progress import SILENT, Reporter


@dataclass
class Fold:
    index: int
    held_out: list[int]  # image ids this fold's model predicts
    trained_on: list[int]  # image ids in the train.json its model trained on
    predicted: list[int]  # image ids it produced predictions for (a subset of held_out)
    losses: list[float]  # the fold model's training loss per epoch


def assign_folds(split: SplitLabels, k: int, seed: int = 0) -> list[list[int]]:
    """Image ids per fold: shuffled near-duplicate groups dealt round-robin (biggest groups first)."""
    if k < 2:
        raise ConfigError(f"--folds {k}: use 2 or more (each model trains on the other folds)")
    group_of: dict[str, int] = {}
    for g, names in enumerate(split.duplicate_groups):
        for name in names:
            group_of[Path(name).name] = g
    groups: dict[Any, list[int]] = {}
    for image in split.images:
        key = group_of.get(Path(image.file_name).name, f"image-{image.id}")
        groups.setdefault(key, []).append(image.id)
    if k > len(groups):  # an empty fold: its model would predict nothing, and another train on none
        copies = (
            f" ({len(groups)} once near-duplicates count as one)" if len(groups) < len(split.images) else ""
        )
        raise ConfigError(f"--folds {k}: more folds than the {len(split.images)} photos of the split{copies}")
    order = sorted(groups.values(), key=lambda ids: ids[0])
    random.Random(seed).shuffle(order)
    order.sort(key=len, reverse=True)  # stable: ties keep the shuffled order
    folds: list[list[int]] = [[] for _ in range(k)]
    for ids in order:
        min(folds, key=len).extend(ids)
    return [sorted(f) for f in folds]


def subset_dataset(split: SplitLabels, train_ids: set[int], root: Path) -> list[int]:
    """A data-set folder with train.json = `train_ids` (val.json: two of them, for train's checks).

    Returns the image ids its train.json actually holds (what the fold's model will see)."""
    source_json: dict[str, dict[str, Any]] = {}
    for name in {image.split for image in split.images}:
        source_json[name] = json.loads((split.dataset / f"{name}.json").read_text(encoding="utf-8"))
    images, annotations, categories = [], [], None
    for coco in source_json.values():
        categories = coco.get("categories", categories)
        images += [info for info in coco["images"] if int(info["id"]) in train_ids]
        annotations += [ann for ann in coco.get("annotations", []) if int(ann["image_id"]) in train_ids]
    base = {"info": {"description": "officescore audit fold"}, "licenses": [], "categories": categories or []}
    train = {**base, "images": images, "annotations": annotations}
    # train() validates at the end; two training photos keep that cheap without showing it the fold.
    val_ids = {int(info["id"]) for info in images[:2]}
    val = {
        **base,
        "images": [i for i in images if int(i["id"]) in val_ids],
        "annotations": [a for a in annotations if int(a["image_id"]) in val_ids],
    }
    root.mkdir(parents=True)
    (root / "train.json").write_text(json.dumps(train), encoding="utf-8")
    (root / "val.json").write_text(json.dumps(val), encoding="utf-8")
    shutil.copy2(split.dataset / "dataset.json", root / "dataset.json")
    os.symlink(os.path.realpath(split.dataset / "images"), root / "images")
    return sorted(int(info["id"]) for info in images)


def cross_predict(
    split: SplitLabels,
    k: int,
    train_config: Any = None,
    device: str = "auto",
    seed: int = 0,
    work_dir: Path | None = None,
    reporter: Reporter = SILENT,
) -> tuple[list[dict[str, Any]], list[Fold]]:
    """COCO results for every image of `split`, each from the fold model that did not train on it."""
    from officescore.errors import WeightsUnavailable
    from officescore.infer import Predictor
    from officescore.train import TrainConfig, train

    config = train_config if train_config is not None else TrainConfig()
    by_id = split.by_id()
    fold_ids = assign_folds(split, k, seed)
    all_ids = set(by_id)
    results: list[dict[str, Any]] = []
    folds: list[Fold] = []
    with tempfile.TemporaryDirectory(prefix="audit-folds-", dir=work_dir) as tmp:
        for index, held in enumerate(fold_ids):
            data = Path(tmp) / f"fold{index}"
            trained_on = subset_dataset(split, all_ids - set(held), data)
            # The promise of --folds, checked rather than trusted:
            if set(trained_on) & set(held):
                raise AssertionError(f"fold {index}: a held-out photo is in its own training set")
            reporter.log(
                f"fold {index + 1}/{k}: training on {len(trained_on)} photos, predicting {len(held)}"
            )
            fold_config = replace(
                config, data=data, project=Path(tmp) / "runs", name=f"fold{index}", resume=None,
                device=device, patience=0, max_train_images=None, seed=config.seed + index,
                log="none",  # throw-away fold models: not runs for TensorBoard or an MLflow server
            )  # fmt: skip
            try:
                trained = train(fold_config, reporter)
            except WeightsUnavailable as exc:  # train's advice names its own flag; audit has --train-args
                raise WeightsUnavailable(exc.reason, 'or set "weights": "none" in --train-args') from exc
            checkpoint = trained.last_checkpoint  # last, not best: best was chosen on photos it trained on
            predictor = Predictor.load(checkpoint, device=device, conf=PREDICT_CONF)
            held_images: list[LabelledImage] = [by_id[i] for i in held]
            predicted = predict_images(predictor, held_images, split.classes, reporter=reporter)
            results += predicted
            ids = sorted({int(p["image_id"]) for p in predicted})
            losses = [float(row["loss"]) for row in trained.history]
            folds.append(Fold(index, list(held), trained_on, ids, losses))
    return results, folds


def load_train_args(path: Path | None) -> Any:
    """TrainConfig from an args.json (as `officescore train` writes), or the defaults."""
    from officescore.train import TrainConfig

    if path is None:
        return TrainConfig()
    if not Path(path).is_file():  # the common slip: a wrong path, not a broken file
        raise ConfigError(f"--train-args {path}: no such file; pass a run's args.json")
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(
            f"--train-args {path}: unreadable ({exc.__class__.__name__}); pass a JSON object"
        ) from exc
    if not isinstance(data, dict):
        raise ConfigError(f"--train-args {path}: not a JSON object of train settings (like args.json)")
    try:
        return TrainConfig.from_json(data)
    except TypeError as exc:
        raise ConfigError(f"--train-args {path}: {exc}") from exc
