"""`label pull`: a Label Studio project's annotations as a COCO export with the photos beside it.

Label Studio's own COCO export drops brush masks and names photos by its upload folder; so the
project's JSON export is read instead (through the API), polygons are kept as drawn (pixels) and
brush masks decoded with label-studio-sdk's converter into COCO RLE. The folder written,

    OUT/annotations.json    COCO: images (file_name images/NAME), categories, annotations
    OUT/images/NAME         the photos, as Label Studio serves them

is what `officescore ingest OUT/annotations.json` reads unchanged. A rectangle of a plain
RectangleLabels tag (an ignore region of a review task, or a box tool the owner added) is written as
an ignore region (iscrowd 1, the rectangle's mask). Per task the newest annotation
that was not cancelled (skipped) counts; tasks nobody annotated are left out. A photo in several
labelled tasks (pushed twice, or imported by hand) is written once, with the labels of the task
annotated last (the same rule), and `duplicates` names the tasks. The folder is built beside OUT and
swapped into place, so a failed pull leaves an earlier one as it was.

A photo that is not a readable image stops the pull with a line naming its task; with
`skip_unreadable` (the label backend's jobs) it is left out instead and named in `unreadable`, and
tasks in `leave_out` are not pulled at all.

With a `cache` folder (`label backend --train` gives each job the backend's), a photo downloaded
once is kept there under a hash of its Label Studio address and hard-linked into OUT: the jobs
of a long labelling session download each photo once and store one copy of it.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import tempfile
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from PIL import Image

from officescore import __version__
from officescore import masks as masklib
from officescore.attributes import AttributeSchema
from officescore.errors import BadImageError, ConfigError
from officescore.files import atomic_write_json, make_folder
from officescore.label.client import LabelStudio
from officescore.label.formats import (
    MASK_RESULT_TYPES,
    Region,
    is_smart_tool,
    result_ignore_regions,
    result_regions,
)
from officescore.label.prelabel import LOCAL_FILES_PREFIX
from officescore.masks import Rle
from officescore.progress import SILENT, Reporter

EXPORT_NAME = "annotations.json"
IMAGES_DIR = "images"
_UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-")  # Label Studio prefixes uploads with 8 hex digits


@dataclass
class PullResult:
    out: Path
    export: Path
    images: int
    annotations: int
    unlabelled: int  # tasks without a (non-cancelled) annotation, left out
    classes: list[str]
    # The project's per-region attribute choices (empty: none); `label pull --ingest` checks with it.
    attributes: AttributeSchema = field(default_factory=AttributeSchema)
    # Labelled regions that are neither masks nor rectangles (ellipses, keypoints), by tag: left out.
    skipped: dict[str, int] = field(default_factory=dict)
    # Tasks labelled more than once (several labellers, or a second annotation): the newest counted.
    several: int = 0
    ignore_regions: int = 0  # rectangles, written as ignore regions (iscrowd 1); in `annotations`
    # Photos in several labelled tasks: {"photo", "tasks", "counted"} (the task whose labels count).
    duplicates: list[dict[str, Any]] = field(default_factory=list)
    # When the newest label in the pull was made, on Label Studio's clock (`label_time`; None: no
    # label): a label changed later is not in it, whatever the puller's own clock says.
    labels_until: float | None = None
    # Labelled tasks whose photo is not a readable image, left out (`skip_unreadable`): task -> why.
    unreadable: dict[int, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "export": str(self.export),
            "images": self.images,
            "annotations": self.annotations,
            "unlabelled": self.unlabelled,
            "classes": self.classes,
            "skipped": self.skipped,
            "several": self.several,
            "ignore_regions": self.ignore_regions,
            "duplicates": self.duplicates,
        }


def latest_annotation(task: dict[str, Any]) -> dict[str, Any] | None:
    """The newest annotation of a task that was not cancelled (a labeller's "skip"), if any."""
    kept = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
    if not kept:
        return None
    return max(kept, key=_newest)


def studio_time(stamp: Any) -> datetime | None:
    """A time Label Studio wrote (ISO 8601, UTC: a time without a zone is UTC); None when unreadable."""
    try:
        when = datetime.fromisoformat(str(stamp or "").replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def label_time(annotation: dict[str, Any]) -> float | None:
    """An annotation's last change as seconds since the epoch, by Label Studio's clock; None when it
    has no readable time."""
    when = studio_time(annotation.get("updated_at") or annotation.get("created_at"))
    return when.timestamp() if when else None


def label_times(tasks: Sequence[dict[str, Any]]) -> list[float]:
    """When each labelled task's label (`latest_annotation`) last changed (`label_time`), if readable."""
    times = [label_time(a) for t in tasks if (a := latest_annotation(t)) is not None]
    return [t for t in times if t is not None]


def labels_until(tasks: Sequence[dict[str, Any]]) -> float | None:
    """When the newest of the tasks' labels was made."""
    return max(label_times(tasks), default=None)


def _image_name(task: dict[str, Any], ref: str) -> str:
    name = task["data"].get("name")
    if not name:
        parsed = urlparse(ref)
        if ref.startswith(LOCAL_FILES_PREFIX) or "d" in parse_qs(parsed.query):
            name = Path(unquote(parse_qs(parsed.query).get("d", ["image"])[0])).name
        else:
            name = _UPLOAD_PREFIX.sub("", Path(unquote(parsed.path)).name)
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("._") or "image"
    return name if Path(name).suffix else f"{name}.jpg"


def _read_image(client: LabelStudio, ref: str, task_id: int, local_root: Path | None) -> bytes:
    if _is_local(ref, local_root):
        rel = unquote(ref[len(LOCAL_FILES_PREFIX) :])
        path = (Path(local_root) / rel).resolve()
        if Path(local_root).resolve() in path.parents and path.is_file():
            return path.read_bytes()
    return client.download(ref, task_id)


def _is_local(ref: str, local_root: Path | None) -> bool:
    return local_root is not None and ref.startswith(LOCAL_FILES_PREFIX)


def _through_cache(client: LabelStudio, ref: str, task_id: int, cached: Path, target: Path) -> bytes:
    """The photo at `ref`, downloaded only when the cache lacks it (`cached`: its place there);
    `target` is a hard link to the cached copy (a copy where links do not work)."""
    if cached.is_file():
        data = cached.read_bytes()
    else:
        make_folder(cached.parent, "photo cache")
        data = client.download(ref, task_id)
        partial = cached.with_name(f".{cached.name}.{os.getpid()}")  # whole files only, under their name
        partial.write_bytes(data)
        os.replace(partial, cached)
    try:
        os.link(cached, target)
    except OSError:
        shutil.copyfile(cached, target)
    return data


def _cached(cache: Path, ref: str) -> Path:
    """Where the cache keeps the photo at `ref`."""
    return cache / (hashlib.sha256(ref.encode()).hexdigest()[:24] + Path(urlparse(ref).path).suffix.lower())


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: is a file; give a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / EXPORT_NAME).is_file():
        raise ConfigError(
            f"--out {out}: a folder with other files in it; give a new or an earlier pull's folder"
        )


@dataclass
class _Pulled:
    """One labelled task as pulled: its counted annotation and its photo's entry in the export."""

    task: dict[str, Any]
    chosen: dict[str, Any]
    entry: dict[str, Any]


def pull_project(
    client: LabelStudio,
    title: str,
    out: Path,
    local_root: Path | None = None,
    reporter: Reporter = SILENT,
    cache: Path | None = None,
    leave_out: Collection[int] = (),
    skip_unreadable: bool = False,
) -> PullResult:
    """Write project `title`'s annotations and photos to `out` (see the module docstring)."""
    out = Path(out)
    _check_out(out)
    project = client.project(title)
    prompts = smart_tags(project.config)
    all_tasks = client.export_tasks(project.id)
    left = set(leave_out)
    tasks = [t for t in all_tasks if int(t.get("id") or 0) not in left]
    make_folder(out.parent if str(out.parent) else Path("."), "--out")
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (tmp / IMAGES_DIR).mkdir()
        unreadable: dict[int, str] | None = {} if skip_unreadable else None
        pulled, unlabelled, duplicates = _pull_tasks(
            client, tasks, project.schema.value, tmp, local_root, cache, reporter, unreadable
        )
        result = PullResult(out, out / EXPORT_NAME, len(pulled), 0, unlabelled, list(project.schema.classes))
        result.attributes, result.duplicates = project.schema.attributes, duplicates
        result.unreadable = unreadable or {}
        # Labels of tasks left out count as seen: the trainer's count of labels made since must not
        # keep counting them.
        result.labels_until = labels_until(all_tasks)
        coco = _coco(pulled, prompts, result)
        coco["info"] = {
            "description": f"Label Studio project {title!r} ({client.url})",
            "version": __version__,
        }
        atomic_write_json(tmp / EXPORT_NAME, coco, indent=1)
        _swap(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return result


def _pull_tasks(
    client: LabelStudio,
    tasks: Sequence[dict[str, Any]],
    key: str,
    folder: Path,
    local_root: Path | None,
    cache: Path | None,
    reporter: Reporter,
    unreadable: dict[int, str] | None = None,
) -> tuple[list[_Pulled], int, list[dict[str, Any]]]:
    """The labelled tasks, one per photo, with their photos written to `folder`; the unlabelled
    count; and each photo found in several labelled tasks (pushed twice, or imported by hand): its
    newest annotation counts, as within one task, and the others' photos are not kept. With
    `unreadable`, a task whose photo is not an image is recorded there and left out, not an error."""
    kept: dict[str, _Pulled] = {}  # photo sha256 -> the task whose labels count
    tasks_of: dict[str, list[int]] = {}
    used: set[str] = set()
    unlabelled = 0
    with reporter.stage("pulling", total=len(tasks)) as stage:
        for task in sorted(tasks, key=lambda t: int(t.get("id") or 0)):
            stage.advance(1)
            chosen = latest_annotation(task)
            if chosen is None:
                unlabelled += 1
                continue
            try:
                entry, digest = _write_image(client, task, key, folder, used, local_root, cache)
            except BadImageError as exc:
                if unreadable is None:
                    raise
                unreadable[int(task["id"])] = str(exc)
                continue
            tasks_of.setdefault(digest, []).append(int(task["id"]))
            new, earlier = _Pulled(task, chosen, entry), kept.get(digest)
            if earlier is not None and _newest(earlier.chosen) >= _newest(chosen):
                new, earlier = earlier, new
            if earlier is not None:
                (folder / earlier.entry["file_name"]).unlink()
            kept[digest] = new
    duplicates = [
        {"photo": kept[digest].entry["file_name"], "tasks": ids, "counted": int(kept[digest].task["id"])}
        for digest, ids in tasks_of.items()
        if len(ids) > 1
    ]
    return sorted(kept.values(), key=lambda p: int(p.task["id"])), unlabelled, duplicates


def _newest(annotation: dict[str, Any]) -> tuple[float, int]:
    """What makes an annotation newer than another (`latest_annotation`): its time, then its id. As
    times, not text: "10:00:00Z" sorted after "10:00:00.5Z", and offsets other than Z by their digits."""
    when = label_time(annotation)
    return (when if when is not None else float("-inf")), annotation.get("id") or 0


def _coco(pulled: Sequence[_Pulled], prompts: set[str], result: PullResult) -> dict[str, Any]:
    """The COCO export of the pulled tasks; `result`'s counts and classes are filled in on the way."""
    category_ids = {name: i for i, name in enumerate(result.classes, 1)}
    annotations: list[dict[str, Any]] = []
    for item in pulled:
        task = item.task
        result.several += sum(not a.get("was_cancelled") for a in task.get("annotations") or []) > 1
        results = item.chosen.get("result") or []
        regions = result_regions(results)
        boxes = result_ignore_regions(results, prompts)
        result.ignore_regions += len(boxes)
        regions += boxes
        for tag in not_masks(results, prompts):
            result.skipped[tag] = result.skipped.get(tag, 0) + 1
        for region in regions:  # a label the config lost since: keep it, as a new category
            if region.class_name not in category_ids:
                result.classes.append(region.class_name)
                category_ids[region.class_name] = len(result.classes)
        annotations.extend(_coco_annotations(regions, item.entry, category_ids, len(annotations)))
    result.annotations = len(annotations)
    return {
        "images": [item.entry for item in pulled],
        "annotations": annotations,
        "categories": [{"id": i, "name": n, "supercategory": "office"} for n, i in category_ids.items()],
    }


def smart_tags(config: str) -> set[str]:
    """The names of the config's smart tools (click to mask): their keypoints and boxes are what a
    labeller pointed with, not labels."""
    from xml.etree import ElementTree

    try:
        root = ElementTree.fromstring(config)
    except ElementTree.ParseError:
        return set()
    return {e.get("name", "") for e in root.iter() if is_smart_tool(e) and e.tag != "Label"}


def not_masks(results: Sequence[dict[str, Any]], prompts: set[str]) -> list[str]:
    """`tag (type)` of each labelled region an annotation holds that pull cannot use: no polygon,
    brush mask or rectangle (an ellipse, a keypoint of a tool that is not smart)."""
    found = []
    for result in results:
        kind = str(result.get("type", "")).lower()
        labelled = kind.endswith("labels") and (result.get("value") or {}).get(kind)
        usable = kind in MASK_RESULT_TYPES or kind == "rectanglelabels"
        if labelled and not usable and result.get("from_name") not in prompts:
            found.append(f"{result.get('from_name')} ({kind})")
    return found


def _write_image(
    client: LabelStudio,
    task: dict[str, Any],
    key: str,
    folder: Path,
    used: set[str],
    local_root: Path | None,
    cache: Path | None = None,
) -> tuple[dict[str, Any], str]:
    """The task's photo written to `folder`, its export entry and the photo's sha256."""
    ref = str(task["data"].get(key) or "")
    if not ref:
        raise ConfigError(f"task {task.get('id')} has no data.{key}; is this the right project?")
    name = _image_name(task, ref)
    # Two photos with one name (in any case: Desk.jpg and desk.jpg are one file on macOS and
    # Windows): the task id keeps them apart, again if another photo already has that name.
    while name.casefold() in used:
        name = f"{task['id']}-{name}"
    used.add(name.casefold())
    target = folder / IMAGES_DIR / name
    cached = _cached(Path(cache), ref) if cache is not None and not _is_local(ref, local_root) else None
    if cached is not None:
        data = _through_cache(client, ref, int(task["id"]), cached, target)
    else:
        data = _read_image(client, ref, int(task["id"]), local_root)
        target.write_bytes(data)
    try:
        with Image.open(io.BytesIO(data)) as image:
            from PIL import ImageOps

            width, height = ImageOps.exif_transpose(image).size  # the orientation labellers saw
    except (OSError, Image.DecompressionBombError) as exc:
        target.unlink(missing_ok=True)  # the export holds photos only
        if cached is not None:  # an error page, a photo being replaced: the next pull downloads it again
            cached.unlink(missing_ok=True)
        raise BadImageError(
            f"task {task.get('id')}: {name} from Label Studio is not a readable image "
            f"({type(exc).__name__}); replace or delete the task"
        ) from None
    entry: dict[str, Any] = {
        "id": int(task["id"]),
        "file_name": f"{IMAGES_DIR}/{name}",
        "width": width,
        "height": height,
    }
    for field_name in ("sha256", "license", "license_url", "creator", "attribution", "landing_page"):
        if task["data"].get(field_name):
            entry[field_name] = task["data"][field_name]
    entry["label_studio_task"] = int(task["id"])
    return entry, hashlib.sha256(data).hexdigest()


def _coco_annotations(
    regions: Sequence[Region], image: dict[str, Any], category_ids: dict[str, int], start: int
) -> list[dict[str, Any]]:
    found = []
    for region in regions:
        rle = region.mask
        if (region.width, region.height) != (image["width"], image["height"]):
            # Label Studio stored another size for the photo (resized since): rescale per axis.
            rle = _rescaled(region, image["width"], image["height"])
        segmentation: Any = [region.polygon] if region.polygon is not None else rle
        found.append(
            {
                "id": start + len(found) + 1,
                "image_id": image["id"],
                "category_id": category_ids[region.class_name],
                "segmentation": segmentation,
                "bbox": [round(v, 2) for v in masklib.bbox(rle)],
                "area": masklib.area(rle),
                "iscrowd": int(region.extra.get("iscrowd", 0)),
            }
        )
        if region.attributes:  # per-region choices, as CVAT writes attributes (ingest reads both)
            found[-1]["attributes"] = dict(region.attributes)
    return found


def _rescaled(region: Region, width: int, height: int) -> Rle:
    """The region's mask at the photo's size: a polygon scaled per axis (kept as a polygon), a brush
    mask resized pixel by pixel (nearest, so it stays a mask of 0s and 1s)."""
    if region.polygon is not None:
        sx, sy = width / region.width, height / region.height
        region.polygon = [v * (sx if i % 2 == 0 else sy) for i, v in enumerate(region.polygon)]
        return masklib.from_polygons([region.polygon], height, width)
    return masklib.resize(region.mask, width, height)


def _swap(tmp: Path, out: Path) -> None:
    """Put the new folder where `out` was; the old one is removed only once the new one is in place."""
    if not out.exists():
        os.replace(tmp, out)
        return
    old = out.with_name(f".{out.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)
