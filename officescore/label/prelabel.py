"""`officescore prelabel`: a model's detections as pre-annotations in an open file format.

- `coco`: a COCO instance-segmentation file (images, the model's categories, one annotation per
  detection with polygon (default) or RLE (`mask="brush"`) segmentation, bbox, area and `score`)
  that CVAT ("COCO 1.0"), Roboflow and Hasty import as pre-annotations and `officescore ingest`
  reads as labels.
- `labelstudio`: a Label Studio tasks file (one prediction per photo, `model_version` naming the
  weights) and its labelling config beside it (`<name>.label_config.xml`).

Image references: COCO `file_name` and the Label Studio task's `data.path` are relative to
`image_root` (default: the folder all photos share); `data.image` is `url_prefix` + that path, or
Label Studio's local-files form `/data/local-files/?d=<path>` without a prefix (serve with
LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=<image_root>).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from officescore import __version__
from officescore import masks as masklib
from officescore.attributes import load_schema
from officescore.errors import BadImageError, ConfigError
from officescore.files import atomic_write_json, check_output_file, relative_to_file
from officescore.label.formats import BRUSH, MASK_KINDS, POLYGON, LabelSchema, make_task, write_tasks
from officescore.label.predict import DEFAULT_CONF, LoadedPredictor, detect
from officescore.label.regions import DEFAULT_SIMPLIFY, mask_outline
from officescore.label.sources import ImageSource, collect_images
from officescore.progress import SILENT, Reporter

COCO = "coco"
LABELSTUDIO = "labelstudio"
FORMATS = (COCO, LABELSTUDIO)
LOCAL_FILES_PREFIX = "/data/local-files/?d="


@dataclass
class PrelabelResult:
    out: Path
    format: str
    model_version: str
    images: int
    detections: int
    config: Path | None = None
    failed: list[dict[str, str]] = field(default_factory=list)  # photos that could not be read

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "format": self.format,
            "config": str(self.config) if self.config else None,
            "model_version": self.model_version,
            "images": self.images,
            "detections": self.detections,
            "failed": self.failed,
        }


def image_root_for(images: Sequence[ImageSource]) -> Path:
    """The deepest folder that holds every photo."""
    return Path(os.path.commonpath([str(img.path.resolve().parent) for img in images]))


def relative_name(path: Path, root: Path, option: str = "--image-root") -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        raise ConfigError(
            f"{option} {root}: {path} is not inside it; choose a folder that holds every photo"
        ) from None


def image_reference(name: str, url_prefix: str | None) -> str:
    """data.image for a photo `name` (relative to the image root)."""
    if url_prefix:
        return url_prefix.rstrip("/") + "/" + quote(name)
    return LOCAL_FILES_PREFIX + quote(name, safe="/")


def check_options(fmt: str, mask: str, out: Path) -> None:
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt}: use one of {', '.join(FORMATS)}")
    if mask not in MASK_KINDS:
        raise ConfigError(f"--mask {mask}: use one of {', '.join(MASK_KINDS)}")
    if Path(out).suffix.lower() != ".json":
        raise ConfigError(f"--out {out}: give a .json file name (e.g. prelabel.json)")
    check_output_file(Path(out), "--out")


def prelabel(
    inputs: Sequence[str | Path],
    loaded: LoadedPredictor,
    out: Path,
    fmt: str = COCO,
    conf: float | None = None,
    mask: str = POLYGON,
    image_root: Path | None = None,
    url_prefix: str | None = None,
    batch_size: int = 2,
    simplify: float = DEFAULT_SIMPLIFY,
    reporter: Reporter = SILENT,
) -> PrelabelResult:
    """Run the model over the photos and write its detections as `fmt` to `out`."""
    out = Path(out)
    check_options(fmt, mask, out)
    images = collect_images(inputs)
    root = Path(image_root) if image_root is not None else image_root_for(images)
    names = [relative_name(img.path, root) for img in images]
    results = detect(loaded, [img.path for img in images], conf, batch_size, reporter)
    failed = [
        {"path": str(img.path), "error": str(r.error)}
        for img, r in zip(images, results, strict=True)
        if not r.ok
    ]
    good = [(img, name, r) for img, name, r in zip(images, names, results, strict=True) if r.ok]
    if failed and not good:  # an empty file must not replace what --out holds
        more = f"; and {len(failed) - 1} more" if len(failed) > 1 else ""
        first = failed[0]["error"]
        raise BadImageError(
            f"none of the {len(failed)} photo(s) could be read ({first}{more}); {out} not written"
        )
    if fmt == COCO:
        coco = coco_file(good, loaded, mask, simplify)
        atomic_write_json(out, coco, indent=1)
        # those written: a detection whose mask has no pixel at the photo's size has no region
        return PrelabelResult(out, fmt, loaded.version, len(good), len(coco["annotations"]), None, failed)
    # Per-region choices for the model's attributes (else the default schema's, for labellers to set).
    attributes = loaded.predictor.attributes or load_schema()
    schema = LabelSchema(tuple(loaded.classes), mask, attributes=attributes)
    tasks = []
    with reporter.stage("writing tasks", total=len(good)) as stage:
        for img, name, result in good:
            data = {"sha256": img.sha256, "path": relative_to_file(img.path, out), **img.provenance}
            tasks.append(
                make_task(
                    image_reference(name, url_prefix),
                    result.width,
                    result.height,
                    schema,
                    detections=result.detections,
                    model_version=loaded.version,
                    data=data,
                    simplify=simplify,
                )
            )
            stage.advance(1)
    _, config = write_tasks(out, tasks, schema)
    regions = [r for t in tasks for r in t["predictions"][0]["result"] if r["type"] == schema.result_type]
    return PrelabelResult(out, fmt, loaded.version, len(good), len(regions), config, failed)


def coco_file(
    good: Sequence[tuple[ImageSource, str, Any]],
    loaded: LoadedPredictor,
    mask: str = POLYGON,
    simplify: float = DEFAULT_SIMPLIFY,
) -> dict[str, Any]:
    """COCO with the model's categories (ids 1..K in its label order) and one annotation per detection:
    a polygon (the largest part's outline, as in Label Studio) with mask="polygon", RLE with "brush"."""
    categories = [
        {"id": i, "name": name, "supercategory": "office"} for i, name in enumerate(loaded.classes, 1)
    ]
    ids = {c["name"]: c["id"] for c in categories}
    coco_images, annotations = [], []
    for image_id, (img, name, result) in enumerate(good, 1):
        entry = {"id": image_id, "file_name": name, "width": result.width, "height": result.height}
        entry.update({"sha256": img.sha256, **img.provenance})
        coco_images.append(entry)
        for det in result.detections:
            segmentation: Any = det.mask
            drawn = det.mask  # the region as written, for its box and area
            if mask == POLYGON:
                ring = mask_outline(masklib.decode(det.mask), simplify)
                if len(ring) < 3:
                    continue
                segmentation = [[round(v, 2) for point in ring for v in point]]
                drawn = masklib.from_polygons(segmentation, result.height, result.width)
            area = masklib.area(drawn)
            if area == 0:
                continue
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": ids[det.class_name],
                    "segmentation": segmentation,
                    "bbox": [round(v, 2) for v in masklib.bbox(drawn)],
                    "area": area,
                    "iscrowd": 0,
                    "score": round(det.score, 4),
                }
            )
            if det.attributes:  # the attribute head's values, as CVAT writes them (ingest reads them)
                annotations[-1]["attributes"] = dict(det.attributes)
    info = {
        "description": f"pre-annotations by {loaded.version}",
        "version": __version__,
        "date_created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "model_version": loaded.version,
    }
    return {"info": info, "images": coco_images, "annotations": annotations, "categories": categories}


__all__ = ["BRUSH", "COCO", "DEFAULT_CONF", "FORMATS", "LABELSTUDIO", "POLYGON", "PrelabelResult", "prelabel"]
