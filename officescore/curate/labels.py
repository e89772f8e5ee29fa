"""A data-set split as audit needs it: images with their labels (class, mask RLE, box), by id."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from officescore import masks as masklib
from officescore.attributes import AttributeSchema
from officescore.errors import DataError, ModelError
from officescore.files import ingest_advice

SPLITS = ("train", "val", "all")


@dataclass
class Label:
    id: int
    class_name: str
    rle: dict[str, Any]  # COCO compressed RLE, str counts
    bbox: list[float]  # [x, y, w, h]
    iscrowd: int = 0
    attributes: dict[str, Any] = field(default_factory=dict)  # labelled values only (not the defaults)


@dataclass
class LabelledImage:
    id: int
    file_name: str  # relative to the data set folder, as in the split JSON
    path: Path
    width: int
    height: int
    split: str
    labels: list[Label] = field(default_factory=list)


@dataclass
class SplitLabels:
    dataset: Path
    split: str
    classes: list[str]
    images: list[LabelledImage]
    duplicate_groups: list[list[str]]  # file names ingest found to be near-duplicates
    attributes: AttributeSchema = field(default_factory=AttributeSchema)  # dataset.json's schema

    def by_id(self) -> dict[int, LabelledImage]:
        return {image.id: image for image in self.images}


def _hint(dataset: Path) -> str:
    return f"pass a folder made by `officescore ingest EXPORT.json --out {dataset}`"


def _read(path: Path, dataset: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: unreadable ({exc.__class__.__name__}); {_hint(dataset)}") from exc


def load_split(dataset: Path | str, split: str = "train") -> SplitLabels:
    """The images and labels of `split` (train, val, or all = both) of an ingested data set."""
    dataset = Path(dataset)
    if split not in SPLITS:
        raise DataError(f"--split {split!r}: use one of {', '.join(SPLITS)}")
    meta_path = dataset / "dataset.json"
    if not dataset.is_dir() or not meta_path.is_file():
        advice = ingest_advice(dataset) or _hint(dataset)
        raise DataError(f"{dataset}: not an officescore data set (no dataset.json); {advice}")
    meta = _read(meta_path, dataset)
    classes = meta.get("classes") if isinstance(meta, dict) else None
    if not isinstance(classes, list) or not classes:
        raise DataError(f'{meta_path}: no list of class names under "classes"; {_hint(dataset)}')
    images: list[LabelledImage] = []
    for name in ("train", "val") if split == "all" else (split,):
        path = dataset / f"{name}.json"
        if not path.is_file():
            raise DataError(f"{path}: missing; {_hint(dataset)}")
        images += _images(_read(path, dataset), dataset, name, classes, path)
    groups = meta.get("duplicates", {}).get("groups", []) if isinstance(meta.get("duplicates"), dict) else []
    schema = AttributeSchema.from_dict(meta.get("attributes"), str(meta_path))
    return SplitLabels(dataset, split, list(classes), images, [list(map(str, g)) for g in groups], schema)


def _images(coco: Any, dataset: Path, split: str, classes: list[str], where: Path) -> list[LabelledImage]:
    try:
        names = {int(c["id"]): str(c["name"]) for c in coco.get("categories", [])}
        if not names:
            names = dict(enumerate(classes, start=1))
        out = {
            int(info["id"]): LabelledImage(
                id=int(info["id"]),
                file_name=str(info["file_name"]),
                path=dataset / str(info["file_name"]),
                width=int(info["width"]),
                height=int(info["height"]),
                split=split,
            )
            for info in coco["images"]
        }
        for ann in coco.get("annotations", []):
            image = out[int(ann["image_id"])]
            seg = ann["segmentation"]
            rle = (
                masklib.from_polygons(seg, image.height, image.width)
                if isinstance(seg, list)
                else masklib.normalise(seg)
            )
            image.labels.append(
                Label(
                    int(ann["id"]),
                    names[int(ann["category_id"])],
                    rle,
                    masklib.bbox(rle),
                    int(ann.get("iscrowd", 0)),
                    {
                        k: v
                        for k, v in (ann.get("attributes") or {}).items()
                        if k not in set(ann.get("unlabelled") or ())
                    },
                )
            )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DataError(f"{where}: not normalised COCO ({exc!r}); {_hint(dataset)}") from exc
    return sorted(out.values(), key=lambda image: image.id)


AUDIT_ADVICE = "pass a model trained on these classes, or use --folds K to train one"


def check_classes(
    model_classes: list[str], data_classes: list[str], model: str, advice: str = AUDIT_ADVICE
) -> list[str]:
    """Classes are compared by name: the model must know every class of the data set. Returns the
    model's other classes (one trained on more, the data set labels a subset), which callers leave
    out: the data set's labellers drew none of them, so to it they are background.
    `advice`: what the command's user can do about it (audit's by default)."""
    extra = [c for c in model_classes if c not in data_classes]
    missing = [c for c in data_classes if c not in model_classes]
    if missing:
        also = f"; it also has {', '.join(extra)} which the data set does not" if extra else ""
        raise ModelError(
            f"{model}: its classes differ from the data set's (the model lacks {', '.join(missing)}"
            f"{also}); {advice}"
        )
    return extra


def extra_classes_note(model: str, extra: list[str]) -> str:
    """The note for a model that knows classes the data set does not label."""
    return (
        f"{model} also knows {', '.join(extra)}, which the data set does not label: "
        "its predictions of them are left out (read as background)"
    )
