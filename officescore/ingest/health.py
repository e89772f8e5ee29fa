"""The data-set health report: balance, sizes, empties, duplicates and problems of an ingested data set.

`health_report` reads only the data-set folder (dataset.json, train.json, val.json), so it can run on
any data set at any time. Rendering as rich tables lives in the CLI; `save_health_plot` draws the PNG.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from officescore.attributes import value_name
from officescore.errors import DataError
from officescore.files import atomic_write, ingest_advice
from officescore.ingest.write import DATASET_FORMAT, readable_as_umask_allows

SPLITS = ("train", "val")
# COCO's size buckets, on mask area in pixels.
SMALL_MAX = 32**2
LARGE_MIN = 96**2


@dataclass
class SplitStats:
    images: int
    instances: int
    crowd: int
    images_without_annotations: int
    instances_per_image: dict[str, float]  # min, mean, max (crowd regions not counted)
    images_per_class: dict[str, int]
    instances_per_class: dict[str, int]


@dataclass
class HealthReport:
    dataset: Path
    classes: list[str]
    splits: dict[str, SplitStats]
    sizes: dict[str, dict[str, int]]  # class -> {"small", "medium", "large"} over all splits
    areas: dict[str, list[float]]  # class -> instance mask areas (for the plot; not in to_dict)
    duplicate_groups: list[list[str]]
    problems_by_kind: dict[str, int]
    problems: list[dict[str, str]] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)
    # class -> attribute -> split -> {value: n, "unlabelled": n}, for the classes with attributes
    attributes: dict[str, dict[str, dict[str, dict[str, int]]]] = field(default_factory=dict)

    @property
    def problem_count(self) -> int:
        return sum(self.problems_by_kind.values())

    @property
    def classes_without_objects(self) -> list[str]:
        """Classes no split has an object of (`ingest --classes` named one nobody labelled): a model
        trained on the data set learns them as never there, and no split can measure them."""
        return [
            name
            for name in self.classes
            if not any(stats.instances_per_class.get(name) for stats in self.splits.values())
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": str(self.dataset),
            "classes": self.classes,
            "splits": {name: asdict(stats) for name, stats in self.splits.items()},
            "sizes": self.sizes,
            "duplicate_groups": self.duplicate_groups,
            "problems": {"total": self.problem_count, "by_kind": self.problems_by_kind},
            "dropped": self.dropped,
            "attributes": self.attributes,
            "classes_without_objects": self.classes_without_objects,
        }


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise DataError(
            f"{path}: missing; is this an officescore data set? (run `officescore ingest`)"
        ) from exc
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable or not JSON ({exc}); re-run `officescore ingest`") from exc


def load_dataset_meta(dataset_dir: Path) -> dict[str, Any]:
    """dataset.json of an officescore data set, or a DataError saying what is wrong."""
    dataset_dir = Path(dataset_dir)
    if dataset_dir.is_file():  # train.json, or the export itself: "no such folder" would puzzle
        advice = ingest_advice(dataset_dir) or "pass the folder `officescore ingest` wrote"
        raise DataError(f"{dataset_dir}: a file, not a data-set folder; {advice}")
    if not dataset_dir.is_dir():
        raise DataError(f"{dataset_dir}: no such data-set folder; create one with `officescore ingest`")
    advice = None if (dataset_dir / "dataset.json").is_file() else ingest_advice(dataset_dir)
    if advice:
        raise DataError(f"{dataset_dir}: not an officescore data set (no dataset.json); {advice}")
    meta = _read_json(dataset_dir / "dataset.json")
    if not isinstance(meta, dict) or meta.get("format") != DATASET_FORMAT:
        raise DataError(f"{dataset_dir / 'dataset.json'}: not an officescore data set (wrong 'format')")
    if not isinstance(meta.get("classes"), list):
        raise DataError(f"{dataset_dir / 'dataset.json'}: has no 'classes' list; re-run `officescore ingest`")
    return meta


def size_bucket(area: float) -> str:
    if area < SMALL_MAX:
        return "small"
    return "large" if area > LARGE_MIN else "medium"


def _split_stats(coco: dict[str, Any], names: dict[int, str], classes: list[str]) -> SplitStats:
    per_image: dict[int, int] = {image["id"]: 0 for image in coco["images"]}
    class_images: dict[str, set[int]] = {name: set() for name in classes}
    class_instances = dict.fromkeys(classes, 0)
    crowd = 0
    for ann in coco["annotations"]:
        if ann.get("iscrowd"):
            crowd += 1
            continue
        name = names[ann["category_id"]]
        per_image[ann["image_id"]] = per_image.get(ann["image_id"], 0) + 1
        class_images[name].add(ann["image_id"])
        class_instances[name] += 1
    counts = list(per_image.values())
    return SplitStats(
        images=len(coco["images"]),
        instances=sum(counts),
        crowd=crowd,
        images_without_annotations=sum(1 for c in counts if c == 0),
        instances_per_image={
            "min": min(counts, default=0),
            "mean": round(sum(counts) / len(counts), 3) if counts else 0.0,
            "max": max(counts, default=0),
        },
        images_per_class={name: len(ids) for name, ids in class_images.items()},
        instances_per_class=class_instances,
    )


def _attribute_counts(
    coco: dict[str, Any], names: dict[int, str], split: str, out: dict[str, Any], schema: dict[str, Any]
) -> None:
    """Adds this split's value counts (unlabelled ones apart) to out[class][attribute][split]."""
    for class_name, declared in schema.items():
        for name, spec in declared.items():
            values = (
                ["yes", "no"] if spec.get("kind") == "yesno" else [str(v) for v in spec.get("values", [])]
            )
            out.setdefault(class_name, {}).setdefault(name, {})[split] = dict.fromkeys(
                [*values, "unlabelled"], 0
            )
    for ann in coco["annotations"]:
        if ann.get("iscrowd"):
            continue
        per_attribute = out.get(names[ann["category_id"]], {})
        unlabelled = set(ann.get("unlabelled", ()))
        for name, value in (ann.get("attributes") or {}).items():
            if name not in per_attribute:
                continue
            key = "unlabelled" if name in unlabelled else value_name(value)
            counts = per_attribute[name][split]
            counts[key] = counts.get(key, 0) + 1


def health_report(dataset_dir: Path) -> HealthReport:
    """Compute the report from a data-set folder written by `officescore ingest`."""
    dataset_dir = Path(dataset_dir)
    meta = load_dataset_meta(dataset_dir)
    classes = [str(c) for c in meta["classes"]]
    splits: dict[str, SplitStats] = {}
    sizes = {name: {"small": 0, "medium": 0, "large": 0} for name in classes}
    areas: dict[str, list[float]] = {name: [] for name in classes}
    attributes: dict[str, Any] = {}
    schema = meta.get("attributes") or {}
    for split in SPLITS:
        coco = _read_json(dataset_dir / f"{split}.json")
        try:
            names = {c["id"]: c["name"] for c in coco["categories"]}
            if sorted(names.values()) != sorted(classes):
                raise DataError(
                    f"{dataset_dir / f'{split}.json'}: categories do not match dataset.json classes"
                )
            splits[split] = _split_stats(coco, names, classes)
            _attribute_counts(coco, names, split, attributes, schema)
            for ann in coco["annotations"]:
                if not ann.get("iscrowd"):
                    name = names[ann["category_id"]]
                    sizes[name][size_bucket(ann["area"])] += 1
                    areas[name].append(float(ann["area"]))
        except (KeyError, TypeError, AttributeError) as exc:
            raise DataError(
                f"{dataset_dir / f'{split}.json'}: not normalised COCO ({exc!r}); re-run ingest"
            ) from exc
    problems = meta.get("problems", {})
    counts = meta.get("counts", {})
    return HealthReport(
        dataset=dataset_dir,
        classes=classes,
        splits=splits,
        sizes=sizes,
        areas=areas,
        duplicate_groups=meta.get("duplicates", {}).get("groups", []),
        problems_by_kind=dict(problems.get("by_kind", {})),
        problems=list(problems.get("items", [])),
        dropped=dict(counts.get("dropped", {})),
        attributes=attributes,
    )


def _attribute_panel(axis: Any, report: HealthReport) -> None:
    """Horizontal bars: one row per class.attribute value (and unlabelled), summed over splits."""
    rows: list[tuple[str, int]] = []
    for class_name, per_attribute in report.attributes.items():
        for name, per_split in per_attribute.items():
            totals: dict[str, int] = {}
            for counts in per_split.values():
                for value, n in counts.items():
                    totals[value] = totals.get(value, 0) + n
            rows += [(f"{class_name}.{name}={value}", n) for value, n in totals.items()]
    labels = [label for label, _ in rows]
    axis.barh(
        range(len(rows)),
        [n for _, n in rows],
        color=["tab:gray" if "unlabelled" in t else "tab:blue" for t in labels],
    )
    axis.set_yticks(range(len(rows)), labels, fontsize=7)
    axis.invert_yaxis()
    axis.set_xlabel("objects (train + val)")
    axis.set_title("Attribute values")


def save_health_plot(report: HealthReport, path: Path) -> Path:
    """PNG with instances per class per split (bars) and the object-size histogram (sqrt of area);
    with attributes, a third panel: labelled values per class attribute (stacked over splits)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    panels = 3 if report.attributes else 2
    figure, axes = plt.subplots(1, panels, figsize=(12, 4.5))
    balance, size = axes[0], axes[1]
    x = np.arange(len(report.classes))
    width = 0.8 / len(SPLITS)
    for i, split in enumerate(SPLITS):
        values = [report.splits[split].instances_per_class[c] for c in report.classes]
        balance.bar(x + (i - (len(SPLITS) - 1) / 2) * width, values, width, label=split)
    balance.set_xticks(x, report.classes, rotation=45, ha="right")
    balance.set_ylabel("instances")
    balance.set_title("Class balance per split")
    balance.legend()

    sides = [np.sqrt(a) for name in report.classes for a in report.areas[name]]
    if sides:
        bins = np.geomspace(max(1.0, min(sides)), max(sides) + 1, 30)
        size.hist(sides, bins=bins, color="tab:gray")
        size.set_xscale("log")
    for edge in (32, 96):
        size.axvline(edge, color="tab:red", linestyle="--", linewidth=1)
    size.set_xlabel("sqrt(mask area) in pixels (COCO small < 32, large > 96)")
    size.set_ylabel("instances")
    size.set_title("Object sizes")
    if report.attributes:
        _attribute_panel(axes[2], report)
    figure.tight_layout()
    path = Path(path)
    try:
        atomic_write(path, lambda handle: figure.savefig(handle, format="png", dpi=100))
        readable_as_umask_allows(path, 0o666)
    finally:
        plt.close(figure)
    return path
