"""Validation and repair of one COCO export's pieces: categories, image entries, annotations.

Each check returns clean values plus `Problem` records saying what was wrong and what was done.
Nothing here touches the output folder; `officescore.ingest` orchestrates and writes.

Decisions worth knowing (see docs/ARCHITECTURE.md, "ingest"):
- An annotation with a box but no usable segmentation (missing, empty, malformed, wrong size) becomes an
  ignore region (iscrowd 1, its box as the mask): never a training target, since a box-shaped mask would
  teach the mask head wrong shapes, but evaluation does not count a detection of that object as a
  false alarm. Without a usable box as well, it is dropped.
- A polygon with fewer than 3 points, an odd number of coordinates or non-finite numbers is dropped;
  the annotation survives if another polygon is left.
- Polygons reaching outside the image are clipped to it (Sutherland-Hodgman, then rasterised).
- An RLE whose size disagrees with the image, or whose counts do not add up to it, is dropped:
  its pixels cannot be placed reliably (and pycocotools would write past the buffer).
- Annotation ids are renumbered from 1 anyway; a missing or repeated id is reported. Id 0 is not:
  Label Studio and Roboflow number from 0, and the renumbering keeps it out of COCOeval (which reads
  id 0 as "unmatched").
"""

from __future__ import annotations

import math
import os
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from officescore import masks
from officescore.errors import ConfigError
from officescore.masks import Rle, rle_counts


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the export and what ingest did about it."""

    image: str  # the export's file_name ("" when no image is involved)
    annotation: str  # the export's annotation id ("" when not about one annotation)
    kind: str  # short stable code, counted in the health report
    what: str  # what is wrong, for a person
    action: str  # what was done: dropped, clipped, renumbered, taken from the file, refused...

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def id_key(value: Any) -> str | None:
    """Ids may be ints or strings depending on the tool; compare them as text. None if unusable."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def id_sort_key(key: str) -> tuple[int, int | str]:
    """Numeric ids in numeric order, then text ids."""
    try:
        return (0, int(key))
    except ValueError:
        return (1, key)


# ---------------------------------------------------------------- categories


@dataclass
class Categories:
    names: dict[str, str]  # export category id -> class name
    order: list[str]  # class names in order of their first (lowest) export id
    renamed: dict[str, str] = field(default_factory=dict)  # the export's name -> its --rename
    written: dict[str, str] = field(default_factory=dict)  # export category id -> the export's name


def class_key(name: str) -> str:
    """A class name as compared: case, spaces and underscores ignored ("Potted_Plant" is "potted plant")."""
    return " ".join(name.replace("_", " ").split()).casefold()


def _one_spelling(name: str, key: str, spellings: dict[str, str], problems: list[Problem]) -> str:
    """`name` as the first spelling seen of its class (`spellings`, by `class_key`, shared by the
    exports of one ingest): CVAT's "Monitor" and Roboflow's "monitor" are one class. Others reported."""
    spelling = spellings.setdefault(class_key(name), name)
    if spelling != name:
        what = f"category {name!r} (id {key}) is {spelling!r} written with other case, spaces or underscores"
        problems.append(Problem("", "", "category_spelling", what, f"read as {spelling!r}"))
    return spelling


def parse_renames(texts: Iterable[str]) -> dict[str, str]:
    """`--rename OLD=NEW` each -> {OLD: NEW}; an OLD given twice (as `class_key` compares names) with
    two NEWs is refused."""
    out: dict[str, str] = {}
    for text in texts:
        old, equals, new = (part.strip() for part in text.partition("="))
        if not equals or not old or not new:
            raise ConfigError(
                f"--rename {text!r}: write OLD=NEW, a category of the export and the class it becomes "
                "(e.g. 'potted plant=plant')"
            )
        same = next((given for given in out if class_key(given) == class_key(old)), old)
        if out.get(same, new) != new:
            raise ConfigError(f"--rename {text!r}: {same!r} is already renamed to {out[same]!r}")
        out[same] = new
    return out


def check_categories(
    raw: list[Any], spellings: dict[str, str] | None = None, renames: Mapping[str, str] | None = None
) -> tuple[Categories, list[Problem]]:
    """The export's categories by id. `spellings`: the class names seen so far (see `_one_spelling`);
    `renames`: --rename's {OLD: NEW}, applied to the export's names before they are matched."""
    spellings = {} if spellings is None else spellings
    new_names = {class_key(old): new for old, new in (renames or {}).items()}
    problems: list[Problem] = []
    names: dict[str, str] = {}
    written: dict[str, str] = {}
    renamed: dict[str, str] = {}
    for entry in raw:
        key = id_key(entry.get("id")) if isinstance(entry, dict) else None
        name = entry.get("name") if isinstance(entry, dict) else None
        if key is None or not isinstance(name, str) or not name.strip():
            problems.append(
                Problem(
                    "", "", "category_invalid", f"category {entry!r:.80} has no usable id or name", "dropped"
                )
            )
            continue
        if key in written:
            problems.append(
                Problem(
                    "", "", "category_duplicate_id", f"category id {key} appears twice", "later one dropped"
                )
            )
            continue
        written[key] = name.strip()
    # renamed onto a category the export has, a name takes its spelling: asked for, not a problem
    own = {class_key(name): name for name in written.values() if class_key(name) not in new_names}
    for key, name in written.items():
        if class_key(name) in new_names:
            renamed[name] = new_names[class_key(name)]
            name = own.get(class_key(renamed[name]), renamed[name])
        names[key] = _one_spelling(name, key, spellings, problems)
    order: list[str] = []
    first_id: dict[str, str] = {}
    for key in sorted(names, key=id_sort_key):
        name = names[key]
        if name in first_id and {written[key], written[first_id[name]]} & renamed.keys():
            continue  # merged as --rename asked: said by `ingest`, not a problem
        if name in first_id:
            problems.append(
                Problem(
                    "",
                    "",
                    "category_duplicate_name",
                    f"category name {name!r} is used by ids {first_id[name]} and {key}",
                    "merged into one class",
                )
            )
            continue
        first_id[name] = key
        order.append(name)
    return Categories(names, order, renamed, written), problems


# ---------------------------------------------------------------- image paths


def safe_image_path(images_dir: Path, file_name: str) -> Path | None:
    """The file inside `images_dir` that `file_name` names, or None if it would escape the folder.

    Refuses absolute paths, drive letters, `..` parts and symlinks that resolve outside. Only
    path strings and link targets are inspected: the file itself is never opened here.
    """
    name = file_name.replace("\\", "/")
    if not name or name.startswith("/") or (len(name) > 1 and name[1] == ":") or "\0" in name:
        return None
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if not parts or any(part == ".." for part in parts):
        return None
    root = Path(os.path.realpath(images_dir))
    try:
        real = Path(os.path.realpath(root.joinpath(*parts)))
    except (OSError, ValueError):
        return None
    if real != root and root not in real.parents:
        return None
    return real


def path_exists(path: Path) -> bool:
    """Path.exists that treats "name too long" and similar errors as "not there"."""
    try:
        return path.exists()
    except OSError:
        return False


def resized_copy(stated: tuple[int, int], width: int, height: int) -> bool:
    """The photo is the stated frame resized (same shape within a pixel of rounding, another size):
    COCO coordinates are pixels of the stated width x height, so labels scale to the photo."""
    sw, sh = stated
    return (sw, sh) != (width, height) and abs(sw * height - sh * width) <= max(sw, sh, width, height)


def drawn_scale(width: int, height: int, drawn: tuple[int, int] | None) -> tuple[float, float]:
    """(x, y) factors from the frame the export drew the labels in to the photo's width x height."""
    return (width / drawn[0], height / drawn[1]) if drawn else (1.0, 1.0)


def size_from_entry(entry: dict[str, Any]) -> tuple[int, int] | None:
    """(width, height) as the export states it, or None when missing or not positive numbers."""
    width, height = entry.get("width"), entry.get("height")
    ok = all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < 1e9 for v in (width, height))
    return (int(width), int(height)) if ok else None


# ---------------------------------------------------------------- segmentation


def _clip_polygon(points: list[tuple[float, float]], width: int, height: int) -> list[tuple[float, float]]:
    """Sutherland-Hodgman clipping of a polygon to [0, width] x [0, height]."""

    def clip(pts: list[tuple[float, float]], inside: Any, cross: Any) -> list[tuple[float, float]]:
        out: list[tuple[float, float]] = []
        for i, cur in enumerate(pts):
            prev = pts[i - 1]
            if inside(cur):
                if not inside(prev):
                    out.append(cross(prev, cur))
                out.append(cur)
            elif inside(prev):
                out.append(cross(prev, cur))
        return out

    def at_x(x: float) -> Any:
        return lambda p, q: (x, p[1] + (q[1] - p[1]) * (x - p[0]) / (q[0] - p[0]))

    def at_y(y: float) -> Any:
        return lambda p, q: (p[0] + (q[0] - p[0]) * (y - p[1]) / (q[1] - p[1]), y)

    for inside, cross in (
        (lambda p: p[0] >= 0, at_x(0.0)),
        (lambda p: p[0] <= width, at_x(float(width))),
        (lambda p: p[1] >= 0, at_y(0.0)),
        (lambda p: p[1] <= height, at_y(float(height))),
    ):
        if not points:
            break
        points = clip(points, inside, cross)
    return points


def _polygons_to_rle(
    polygons: list[Any], width: int, height: int, note: Any, scale: tuple[float, float] = (1.0, 1.0)
) -> tuple[Rle | None, bool]:
    """Valid, clipped polygons -> RLE. `note(kind, what)` records each dropped polygon; `scale`:
    (x, y) factors from the frame the export drew them in to the photo's."""
    kept: list[list[float]] = []
    clipped = False
    for index, polygon in enumerate(polygons):
        label = f"polygon {index + 1}"
        if not isinstance(polygon, list) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in polygon
        ):
            note("polygon_invalid", f"{label} is not a list of numbers")
            continue
        if not all(math.isfinite(v) for v in polygon):
            note("polygon_invalid", f"{label} has NaN or infinite coordinates")
            continue
        if len(polygon) % 2:
            note("polygon_odd", f"{label} has an odd number of coordinates ({len(polygon)})")
            continue
        if len(polygon) < 6:
            note("polygon_too_short", f"{label} has {len(polygon) // 2} points (needs at least 3)")
            continue
        if max(width, height) > 8 and all(0 <= v <= 1 for v in polygon):
            # YOLO-style converters write fractions of the image; COCO wants pixels. Not guessed at.
            note("polygon_normalised", f"{label} has coordinates in [0, 1] only: fractions, not pixels")
            continue
        points = [(x * scale[0], y * scale[1]) for x, y in zip(polygon[0::2], polygon[1::2], strict=True)]
        if any(not (0 <= x <= width and 0 <= y <= height) for x, y in points):
            clipped = True
            points = _clip_polygon(points, width, height)
            if len(points) < 3:
                continue  # entirely outside; the empty-mask check reports it
        kept.append([float(c) for point in points for c in point])
    if not kept:
        return None, clipped
    return masks.from_polygons(kept, height, width), clipped


def _check_rle(rle: dict[str, Any], width: int, height: int) -> tuple[Rle | None, str, str]:
    """(normalised RLE, problem kind, what) -- the RLE is None when unusable."""
    size = rle.get("size")
    counts = rle.get("counts")
    if (
        not isinstance(size, list)
        or len(size) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in size)
    ):
        return None, "rle_invalid", f"RLE size {size!r:.40} is not [height, width]"
    if size != [height, width]:
        return None, "rle_size", f"RLE size {size[0]}x{size[1]} (h x w) disagrees with image {height}x{width}"
    if isinstance(counts, bytes):
        counts = counts.decode("ascii", errors="replace")
    if isinstance(counts, str):
        values = rle_counts(counts)
    elif isinstance(counts, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in counts):
        values = counts if all(0 <= v < 1 << 40 for v in counts) else None
    else:
        return None, "rle_invalid", "RLE counts are neither a string nor a list of integers"
    runs = np.asarray(values if values is not None else [-1], dtype=np.int64)
    if (runs < 0).any() or int(runs.sum()) != width * height:
        return None, "rle_invalid", "RLE counts are malformed or do not cover the image exactly"
    return masks.normalise({"size": size, "counts": counts}), "", ""


@dataclass
class CleanAnnotation:
    source_id: str
    image_key: str
    class_name: str
    rle: Rle
    iscrowd: int
    attributes: dict[str, Any] = field(default_factory=dict)  # every declared attribute of the class
    unlabelled: list[str] = field(default_factory=list)  # those at the schema's default, not labelled


@dataclass
class ImageRecord:
    """One kept image: where it is, its real size, its hashes and its clean annotations."""

    key: str  # export image id, as text
    file_name: str  # as the export wrote it
    path: Path
    width: int
    height: int
    sha256: str
    phash: int
    annotations: list[CleanAnnotation] = field(default_factory=list)
    out_name: str = ""  # file name under the data set's images/
    drawn: tuple[int, int] | None = None  # the export's width x height when the photo is a resized copy
    # the frame Label Studio's COCO converter scaled polygons by when it is not `drawn` (the stored
    # size of a photo its EXIF orientation turns; its boxes are in the turned photo's pixels)
    polygons_drawn: tuple[int, int] | None = None
    stored: tuple[int, int] | None = None  # (width, height) as stored, before EXIF orientation


def check_segmentation(
    ann: dict[str, Any], width: int, height: int, problem: Any, drawn: tuple[int, int] | None = None
) -> Rle | None:
    """The annotation's mask as normalised RLE, or None (dropped). `problem(kind, what, action)`.

    `drawn`: (width, height) of the frame the export drew the labels in, when the photo is a resized
    copy of it: polygons are scaled to the photo, masks resized (nearest).
    """
    drawn_w, drawn_h = drawn or (width, height)
    seg = ann.get("segmentation")
    if seg is None or seg == [] or seg == {} or seg == "":
        bbox = ann.get("bbox")
        if isinstance(bbox, list) and len(bbox) == 4:
            problem("segmentation_missing", "box only, no segmentation (Mask R-CNN needs a mask)", "dropped")
        else:
            problem("segmentation_empty", "empty segmentation", "dropped")
        return None
    if isinstance(seg, dict):
        rle, kind, what = _check_rle(seg, drawn_w, drawn_h)
        if rle is None:
            problem(kind, what, "dropped")
        return masks.resize(rle, width, height) if rle is not None else None
    if isinstance(seg, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in seg):
        # VGG Image Annotator writes one polygon as a flat list of coordinates, not a list of them
        problem("segmentation_flat", "segmentation is one flat list of coordinates", "read as one polygon")
        seg = [seg]
    # hand-made converters: polygons as [[x, y], ...] points instead of flat coordinates
    if isinstance(seg, list) and seg and all(_is_point(v) for v in seg):
        problem("segmentation_points", "segmentation is one list of [x, y] points", "read as one polygon")
        seg = [_flattened(seg)]
    elif isinstance(seg, list) and any(_flattened(p) is not p for p in seg):
        problem("segmentation_points", "polygons are lists of [x, y] points", "read as coordinates")
        seg = [_flattened(p) for p in seg]
    if isinstance(seg, list):
        dropped: list[tuple[str, str]] = []
        scale = drawn_scale(width, height, drawn)
        rle, clipped = _polygons_to_rle(seg, width, height, lambda k, w: dropped.append((k, w)), scale)
        for kind, what in dropped:
            problem(kind, what, "polygon dropped" if rle is not None else "dropped")
        if rle is None:
            if not dropped:
                problem("outside_image", "polygons lie entirely outside the image", "dropped")
            return None
        if clipped:
            problem("outside_image", "polygon reaches outside the image", "clipped to the image")
        return rle
    problem("segmentation_invalid", f"segmentation of type {type(seg).__name__}", "dropped")
    return None


def _is_point(value: Any) -> bool:
    """[x, y] (or (x, y)): two numbers."""
    return (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    )


def _flattened(polygon: Any) -> Any:
    """[[x, y], ...] -> [x, y, ...]; anything else as it is (checked with the other polygons)."""
    if isinstance(polygon, list) and polygon and all(_is_point(v) for v in polygon):
        return [c for point in polygon for c in point]
    return polygon


def check_area(ann: dict[str, Any], rle: Rle, problem: Any) -> None:
    """Areas are recomputed from the mask; VIA's habit of writing the box's area is reported.

    Only that case: `area` is the box's w x h, the box fits the mask, yet the mask covers much
    less (or more) of it. A stale area on a stale box (a mask replaced, copied or rescaled) is not
    told apart from other edits, so it is left to the box and mask checks.
    """
    stated, bbox = ann.get("area"), ann.get("bbox")
    numbers = [stated, *bbox] if isinstance(bbox, list) and len(bbox) == 4 else []
    if not numbers or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in numbers
    ):
        return
    if not math.isclose(bbox[2] * bbox[3], stated, rel_tol=1e-3):
        return
    if max(abs(a - b) for a, b in zip(bbox, masks.bbox(rle), strict=True)) > 2:
        return
    actual = masks.area(rle)
    # Polygon (shoelace) areas and rasterised pixel counts differ along the outline: allow that.
    if abs(stated - actual) <= 0.1 * actual + 2 * math.sqrt(actual) + 4:
        return
    what = f"area {stated:g} is the box's area, not the mask's ({actual} pixels)"
    problem("area_is_box", what, "taken from the mask")


CROWD_MODES = ("auto", "instances", "ignore")


def written_by_cvat(annotations: list[Any]) -> bool:
    """CVAT ("COCO 1.0") gives every annotation `attributes` with `occluded`; no other tool does."""
    found = [a for a in annotations if isinstance(a, dict)]
    return bool(found) and all(
        isinstance(a.get("attributes"), dict) and "occluded" in a["attributes"] for a in found
    )


def crowd_as_instance(ann: dict[str, Any], mode: str, cvat: bool) -> bool:
    """Whether an iscrowd 1 annotation with a usable mask is read as an instance (see --crowd).

    CVAT marks every brush mask iscrowd 1 (uncompressed RLE): in its exports those are objects
    drawn one by one, not crowd regions. Other tools' crowd regions stay crowd unless asked.
    """
    if mode == "instances":
        return True
    if mode == "ignore":
        return False
    return cvat and isinstance(ann.get("segmentation"), dict)


IGNORE_REGION = "kept as an ignore region (its box, iscrowd 1): not a training target"


def box_region(
    ann: dict[str, Any], width: int, height: int, drawn: tuple[int, int] | None = None
) -> Rle | None:
    """The annotation's box, clipped to the image and widened to whole pixels, as a mask.

    Used when the mask is missing or unusable but the box is fine: the object is there, so as an
    ignore region it keeps evaluation from calling a correct detection of it a false alarm.
    None when there is no usable box. `drawn`: as for check_segmentation, the frame the export
    drew the box in (scaled to the photo).
    """
    bbox = ann.get("bbox")
    if not (
        isinstance(bbox, list)
        and len(bbox) == 4
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in bbox)
        and bbox[2] > 0
        and bbox[3] > 0
    ):
        return None
    sx, sy = drawn_scale(width, height, drawn)
    x, y, w, h = (float(v) * f for v, f in zip(bbox, (sx, sy, sx, sy), strict=True))
    x0, y0 = max(0, math.floor(x)), max(0, math.floor(y))
    # clipped before rounding: x + w may overflow to infinity, which has no integer
    x1, y1 = math.ceil(min(x + w, width)), math.ceil(min(y + h, height))
    if x1 <= x0 or y1 <= y0:
        return None
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[y0:y1, x0:x1] = 1
    return masks.encode(mask)


def check_box(ann: dict[str, Any], problem: Any) -> None:
    """Boxes are recomputed from the mask; a missing or zero-area box is still worth reporting."""
    bbox = ann.get("bbox")
    ok = (
        isinstance(bbox, list)
        and len(bbox) == 4
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in bbox)
    )
    if not ok:
        problem("bbox_invalid", f"box {bbox!r:.60} is missing or not 4 numbers", "recomputed from the mask")
    elif bbox[2] <= 0 or bbox[3] <= 0:
        problem("bbox_no_area", f"box {bbox} has no area", "recomputed from the mask")


def check_crowd(ann: dict[str, Any], problem: Any) -> int:
    value = ann.get("iscrowd", 0)
    if value in (0, 1) and not isinstance(value, float):
        return int(value)
    # read by meaning: the text "0" or "0.0" (a converter's CSV column) is not crowd, though non-empty
    flag = _crowd_text(value) if isinstance(value, str) else bool(value)
    problem(
        "iscrowd_invalid", f"iscrowd is {value!r:.20} (expected 0 or 1)", "set to 1" if flag else "set to 0"
    )
    return int(flag)


def _crowd_text(value: str) -> bool:
    text = value.strip().lower()
    try:
        return float(text) != 0
    except ValueError:
        return text not in ("", "false", "no")


def annotation_id_problem(raw_id: Any, seen: set[Hashable]) -> tuple[str, str] | None:
    """(kind, what) when the id is missing or repeated; all ids are renumbered anyway (so id 0, where
    Label Studio and Roboflow start, is fine)."""
    key = id_key(raw_id)
    if key is None:
        return "annotation_id_missing", f"annotation id {raw_id!r:.30} is missing or not a number/string"
    if key in seen:
        return "annotation_duplicate_id", f"annotation id {key} is used more than once"
    seen.add(key)
    return None
