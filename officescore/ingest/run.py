"""Turn a labelling tool's COCO export into a clean, split officescore data set.

`ingest_export` reads the export, checks and repairs every image and annotation (see
`officescore.ingest.checks` for the rules), groups exact and near-duplicate images, splits the groups
into train/val by seed and writes the data-set folder described in docs/ARCHITECTURE.md.
Nothing is written until everything has been checked; an existing data set is replaced by writing a
new folder beside it and swapping, so a failed ingest loses nothing.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from officescore import __version__, masks
from officescore.attributes import AttributeSchema, load_schema, value_name
from officescore.config import DEFAULT_DATASET_DIR
from officescore.errors import BadImageError, DataError
from officescore.files import sha256_file
from officescore.images import load_image_as_stored
from officescore.ingest.attributes import read_attributes
from officescore.ingest.checks import (
    CROWD_MODES,
    IGNORE_REGION,
    Categories,
    CleanAnnotation,
    ImageRecord,
    Problem,
    annotation_id_problem,
    box_region,
    check_area,
    check_box,
    check_categories,
    check_crowd,
    check_segmentation,
    class_key,
    crowd_as_instance,
    id_key,
    id_sort_key,
    path_exists,
    resized_copy,
    size_from_entry,
    written_by_cvat,
)
from officescore.ingest.conventions import (
    Declared,
    as_json,
    check_convention_classes,
    merged,
    read_conventions,
)
from officescore.ingest.locate import (
    AS_WRITTEN,
    BY_PATH_END,
    IN_OTHER_CASE,
    WITHOUT_UPLOAD_PREFIX,
    ImageFinder,
    Located,
)
from officescore.ingest.split import augmented_from, duplicate_groups, split_groups
from officescore.ingest.write import (
    DATASET_FORMAT,
    DATASET_VERSION,
    check_out,
    earlier_split,
    read_dataset_meta,
    unique_names,
    write_dataset,
)
from officescore.progress import SILENT, Reporter

# Perceptual-hash (64-bit imagehash.phash) Hamming distance at or below which two images are near
# duplicates. Measured on 200 sample scenes (384 px): copies resized 0.5-1.5x or re-encoded as JPEG
# q30-90 / WebP are within 2 of the original, +20% brightness within 6; distinct scenes are at least
# 10 apart (0.1st percentile 14, median 30, over 19,900 pairs). 6 sits in that gap; a 2% crop
# (up to 12) is not reliably caught. tests/test_ingest.py re-checks the gap on fresh scenes.
PHASH_THRESHOLD = 6


@dataclass
class IngestResult:
    out: Path
    classes: list[str]
    counts: dict[str, Any]
    problems: list[Problem]
    category_map: dict[str, int]
    duplicate_groups: list[list[str]] = field(default_factory=list)
    excluded_classes: list[str] = field(default_factory=list)  # classes whose annotations were left out
    # the exports as dataset.json records them (relative to the data set), read back from `out`
    exports: list[str] = field(default_factory=list)
    conventions: dict[str, Declared] = field(default_factory=dict)  # declared, as dataset.json records
    dropped_categories: list[str] = field(default_factory=list)  # the exports' names not in `classes`
    renamed: dict[str, str] = field(default_factory=dict)  # --rename: the exports' name -> the class
    unlisted: list[str] = field(default_factory=list)  # photos in the image folders no export lists
    merged: dict[str, list[str]] = field(default_factory=dict)  # class -> the exports' names --rename joined
    with_photos: int = 0  # annotations dropped with their photos (each said in its photo's problem)

    @property
    def export(self) -> str:
        """The (first) export."""
        return self.exports[0] if self.exports else ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "exports": self.exports,
            "classes": self.classes,
            "counts": self.counts,
            "category_map": self.category_map,
            "duplicate_groups": self.duplicate_groups,
            "problems": [p.to_dict() for p in self.problems],
            "excluded_classes": self.excluded_classes,
            "conventions": as_json(self.conventions),
            "dropped_categories": self.dropped_categories,
            "renamed": self.renamed,
            "unlisted": self.unlisted,
            "merged": self.merged,
            "annotations_on_dropped_images": self.with_photos,
        }


# ---------------------------------------------------------------- reading


def read_export(export: Path) -> dict[str, Any]:
    """The export as a dict with images/annotations/categories lists, or a DataError."""
    export = Path(export)
    if export.is_dir():
        raise DataError(
            f"{export}: is a folder; give the path of the COCO export (.json) inside it{_json_inside(export)}"
        )
    if not export.is_file():
        raise DataError(f"{export}: no such file; give the path of the COCO export (.json)")
    if zipfile.is_zipfile(export):  # what Label Studio, CVAT and Roboflow download
        raise DataError(
            f"{export}: a zip archive; unzip it and give the path of the COCO export (.json) inside it"
            f"{_json_in_zip(export)}"
        )
    try:
        # bytes: json reads UTF-8 with or without a BOM, and the UTF-16 Windows tools write
        data = json.loads(export.read_bytes())
    except UnicodeDecodeError as exc:
        raise DataError(f"{export}: not a text file, so not a COCO export ({exc.reason})") from exc
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{export}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from exc
    except RecursionError as exc:
        raise DataError(f"{export}: JSON nested too deeply to be a COCO export") from exc
    if _label_studio_tasks(data):  # Label Studio's default export format is JSON, not COCO
        raise DataError(
            f"{export}: a Label Studio JSON export (tasks), not COCO; export the project as COCO, or "
            "let `officescore label pull --project NAME --out DIR --ingest DATASET` read it"
        )
    if not isinstance(data, dict):
        raise DataError(f"{export}: not a COCO export (top level is a {type(data).__name__}, not an object)")
    missing = [key for key in ("images", "annotations", "categories") if not isinstance(data.get(key), list)]
    if missing:
        raise DataError(
            f"{export}: not a COCO instance-segmentation export (no {', '.join(missing)} list); "
            "export as 'COCO' / 'COCO 1.0' from the labelling tool"
        )
    if not data["images"]:
        raise DataError(f"{export}: the export lists no images")
    return data


def written_by_label_studio(data: dict[str, Any]) -> bool:
    """Label Studio's COCO export (its converter signs `info.contributor`)."""
    info = data.get("info")
    return isinstance(info, dict) and info.get("contributor") == "Label Studio"


def _label_studio_tasks(data: Any) -> bool:
    """Label Studio's JSON export: a list of tasks, each with `data` and its annotations."""
    return (
        isinstance(data, list)
        and bool(data)
        and isinstance(data[0], dict)
        and isinstance(data[0].get("data"), dict)
        and ("annotations" in data[0] or "predictions" in data[0])
    )


def _named_jsons(names: list[str], shown: int = 3) -> str:
    """`: a.json, b.json` (the first few), or "" when there are none."""
    if not names:
        return ""
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ": " + ", ".join(sorted(names)[:shown]) + more


def _json_inside(folder: Path) -> str:
    """The JSON files in `folder` and one level below (where tools put theirs), named."""
    found = [p for pattern in ("*.json", "*/*.json") for p in folder.glob(pattern) if p.is_file()]
    return _named_jsons([str(p) for p in found])


def _json_in_zip(archive: Path) -> str:
    try:
        with zipfile.ZipFile(archive) as opened:
            names = [n for n in opened.namelist() if n.lower().endswith(".json")]
    except (OSError, zipfile.BadZipFile):
        return ""
    return _named_jsons(names)


def _location_problem(file_name: str, found: Located, finder: ImageFinder, labels: int = 0) -> Problem | None:
    """What to tell about how the photo was found (or why not); None when found as written.
    `labels`: how many annotations go with the photo when it is not found."""
    where = "is not in the image folder"
    if found.escaped:
        where = "points outside the image folder (never opened)"
    if found.ambiguous:
        what = f"file_name {where}; {found.ambiguous}"
        return Problem(file_name, "", "image_ambiguous", what, dropped_with("dropped", labels))
    if found.path is None:
        what = "file_name points outside the image folder"
        refused = dropped_with("refused, never read", labels)
        hint = f"{refused}; pass --images DIR, the folder that holds the photos"
        return Problem(file_name, "", "image_path_escape", what, hint)
    if found.rule in ("", AS_WRITTEN):
        return None
    if found.rule == WITHOUT_UPLOAD_PREFIX:
        kind = "image_found_without_upload_prefix"
        how = "found by its name without Label Studio's upload prefix"
    elif found.rule == BY_PATH_END:
        kind, how = "image_found_by_name", "found by its base name and the folders above it"
    elif found.rule == IN_OTHER_CASE:
        kind, how = "image_found_by_name", "found by its base name in another case"
    else:
        kind, how = "image_found_by_name", "found by its base name"
    return Problem(file_name, "", kind, f"file_name {where}; {how}", f"used {finder.relative(found.path)}")


def dropped_with(action: str, labels: int) -> str:
    """A dropped photo's action with how many annotations went with it, so no label is lost unsaid."""
    return f"{action}, with its {labels} annotation(s)" if labels else action


def _scan_images(
    entries: list[Any],
    finder: ImageFinder,
    problems: list[Problem],
    reporter: Reporter,
    label_studio: bool = False,
    labels: Mapping[str, int] | None = None,
) -> dict[str, ImageRecord]:
    """Check every image entry; load each kept file once (size, sha256, perceptual hash).

    `label_studio`: the export is Label Studio's COCO export (see `_size_problem`); `labels`: how
    many annotations name each image id, said of a photo dropped with them."""
    import imagehash

    # popped when said: an id listed twice loses its labels once (None: said as annotation_unknown_image)
    unsaid = {key: n for key, n in (labels or {}).items() if key is not None}
    images: dict[str, ImageRecord] = {}
    by_path: dict[Path, str] = {}
    shared = _ids_of_several_files(entries)
    reported: set[str] = set()  # ids of `shared` already reported
    with reporter.stage("Checking images", total=len(entries)) as stage:
        for entry in entries:
            stage.advance(1)
            file_name = entry.get("file_name") if isinstance(entry, dict) else None
            key = id_key(entry.get("id")) if isinstance(entry, dict) else None
            if not isinstance(file_name, str) or not file_name.strip() or key is None:
                what = f"image entry {entry!r:.60} has no usable id or file_name"
                action = dropped_with("dropped", unsaid.pop(key, 0))
                problems.append(Problem(str(file_name or ""), "", "image_invalid", what, action))
                continue
            if key in shared:  # its annotations could be on any of the photos: none is kept
                if key not in reported:
                    names = shared[key]
                    what = (
                        f"image id {key} is used by {len(names)} different files ({', '.join(names)}), so "
                        "which annotations are on which photo cannot be told"
                    )
                    action = dropped_with("all dropped", unsaid.pop(key, 0))
                    problems.append(Problem(file_name, "", "image_duplicate_id", what, action))
                    reported.add(key)
                continue
            if key in images:
                what = f"image id {key} is listed more than once"
                problems.append(Problem(file_name, "", "image_duplicate_id", what, "later one dropped"))
                continue
            found = finder.locate(file_name)
            note = _location_problem(file_name, found, finder, unsaid.get(key, 0))
            if found.path is None:
                unsaid.pop(key, 0)
                problems.append(note)  # type: ignore[arg-type] - always set when nothing was found
                continue
            path = found.path
            if path in by_path:
                what = f"same file as image id {by_path[path]}"
                action = dropped_with("later one dropped", unsaid.pop(key, 0))
                problems.append(Problem(file_name, "", "image_duplicate_file", what, action))
                continue
            if not path_exists(path) or not path.is_file():
                what = "is a folder, not an image file" if path_exists(path) else "file not found"
                action = dropped_with("dropped", unsaid.pop(key, 0))
                problems.append(Problem(file_name, "", "image_missing", what, action))
                continue
            try:
                pixels, stored = load_image_as_stored(path)
                phash = int(str(imagehash.phash(pixels)), 16)
                width, height = pixels.size
                pixels.close()
                digest = sha256_file(path)
            except (BadImageError, OSError) as exc:
                what = str(exc).replace(str(path), "").lstrip(": ") or "cannot read the file"
                action = dropped_with("dropped", unsaid.pop(key, 0))
                problems.append(Problem(file_name, "", "image_unreadable", what, action))
                continue
            record = ImageRecord(key, file_name, path, width, height, digest, phash, stored=stored)
            size_note = _size_problem(record, size_from_entry(entry), label_studio)
            problems += [p for p in (size_note, note) if p is not None]
            by_path[path] = key
            images[key] = record
    return images


def _ids_of_several_files(entries: list[Any]) -> dict[str, list[str]]:
    """Image ids that entries naming different files share (two exports' JSON joined by hand):
    id -> those file names. An entry listed twice under one id and name is one photo."""
    names: dict[str, list[str]] = {}
    for entry in entries:
        if isinstance(entry, dict) and (key := id_key(entry.get("id"))) is not None:
            file_name = entry.get("file_name")
            if isinstance(file_name, str) and file_name.strip() and file_name not in names.get(key, []):
                names.setdefault(key, []).append(file_name)
    return {key: found for key, found in names.items() if len(found) > 1}


def _size_problem(image: ImageRecord, stated: tuple[int, int] | None, label_studio: bool) -> Problem | None:
    """What the export's width x height says about the frame its labels are in; sets `image.drawn`
    or `image.polygons_drawn` where they must be scaled to the photo. None when it is the photo's."""
    width, height = image.width, image.height
    kept = f"taken from the file: {width}x{height}"

    def problem(what: str, action: str) -> Problem:
        return Problem(image.file_name, "", "image_size", what, action)

    if stated is None:
        return problem("width/height missing or not positive numbers", kept)
    if stated == (width, height):
        return None
    said = f"width x height {stated[0]}x{stated[1]}"
    if resized_copy(stated, width, height):  # labelled at full size, a resized copy here
        image.drawn = stated
        scaled = f"labels scaled to the file: {width}x{height}"
        return problem(f"{said} is not the file's: a resized copy", scaled)
    if stated != (height, width) or image.stored != stated:
        return problem(f"{said} does not match the file", kept)
    turned = f"{said} is the photo as stored, before its EXIF orientation turns it to {width}x{height}"
    if not label_studio:
        return problem(turned, f"{kept}; labels read as drawn on the turned photo")
    # Label Studio shows the photo turned, but its COCO converter multiplies the polygons' percent
    # coordinates by the stored size (and its boxes' by the turned size the browser reported)
    image.polygons_drawn = stated
    what = f"{turned} (Label Studio's COCO export scales polygons by the stored size)"
    return problem(what, f"polygons scaled to the turned photo: {width}x{height}")


def _check_annotations(
    entries: list[Any],
    images: dict[str, ImageRecord],
    image_ids: dict[str, Any],
    categories: Categories,
    problems: list[Problem],
    crowd: str = "auto",
    schema: AttributeSchema | None = None,
) -> int:
    """Attach clean annotations to their images; returns how many were on images that were dropped.

    `image_ids`: every listed image's id as text -> the id as the export wrote it.
    """
    seen_ids: set[Any] = set()
    on_dropped_images = 0
    cvat = written_by_cvat(entries)
    cvat_masks = 0
    for ann in entries:
        if not isinstance(ann, dict):
            problems.append(
                Problem("", "", "annotation_invalid", f"annotation {ann!r:.60} is not an object", "dropped")
            )
            continue
        raw_id = ann.get("id")
        ann_label = str(raw_id) if raw_id is not None else ""
        image_key = id_key(ann.get("image_id"))
        image = images.get(image_key) if image_key is not None else None
        file_name = image.file_name if image else ""

        def problem(kind: str, what: str, action: str, _file: str = file_name, _ann: str = ann_label) -> None:
            problems.append(Problem(_file, _ann, kind, what, action))

        id_issue = annotation_id_problem(raw_id, seen_ids)
        if image is None:
            if image_key in image_ids:
                on_dropped_images += 1  # reported with its image
            else:
                problem(
                    "annotation_unknown_image",
                    f"image_id {ann.get('image_id')!r:.30} is not in images",
                    "dropped",
                )
            continue
        category_key = id_key(ann.get("category_id"))
        if category_key not in categories.names:
            what = f"category_id {ann.get('category_id')!r:.30} is not in categories"
            problem("annotation_unknown_category", what, "dropped")
            continue
        if id_issue:
            problem(id_issue[0], id_issue[1], "renumbered")
        listed_id = image_ids.get(image.key)
        if isinstance(ann.get("image_id"), str) != isinstance(listed_id, str):  # VIA: "6" for image 6
            what = f"image_id {ann.get('image_id')!r:.30} is not written as the image's id {listed_id!r:.30}"
            problem("image_id_type", what, f"matched to image id {listed_id!r:.30}")
        notes: list[tuple[str, str, str]] = []
        rle = check_segmentation(
            ann,
            image.width,
            image.height,
            lambda *note, _n=notes: _n.append(note),
            image.drawn or image.polygons_drawn,
        )
        if rle is not None and masks.area(rle) == 0:
            notes.append(("empty_mask", "mask covers no pixels inside the image", "dropped"))
            rle = None
        if rle is None:  # unusable mask: its box, if any, becomes an ignore region
            rle = box_region(ann, image.width, image.height, image.drawn)
            for kind, what, action in notes:
                problem(kind, what, IGNORE_REGION if rle is not None and action == "dropped" else action)
            if rle is None:
                continue
            iscrowd = 1
        else:
            for note in notes:
                problem(*note)
            check_box(ann, problem)
            check_area(ann, rle, problem)
            iscrowd = check_crowd(ann, problem)
            if iscrowd and crowd_as_instance(ann, crowd, cvat):
                iscrowd = 0
                cvat_masks += crowd == "auto"
        class_name = categories.names[category_key]
        values, unlabelled = read_attributes(ann, class_name, schema or AttributeSchema(), problem)
        image.annotations.append(
            CleanAnnotation(ann_label, image.key, class_name, rle, iscrowd, values, unlabelled)
        )
    if cvat_masks:
        what = (
            f"written by CVAT (every annotation has attributes.occluded): its {cvat_masks} brush mask(s) "
            "are marked iscrowd 1 but are objects, not crowd regions"
        )
        action = "read as instances; --crowd ignore keeps them as ignore regions"
        problems.append(Problem("", "", "cvat_brush_masks", what, action))
    return on_dropped_images


def _requested_classes(known: list[str], classes: Sequence[str]) -> list[str]:
    """`--classes` checked against the export's categories (before any slow work)."""
    wanted = [c.strip() for c in classes if c.strip()]
    unknown = [c for c in wanted if c not in known]
    if unknown or not wanted:
        raise DataError(
            f"unknown class(es) {', '.join(unknown) or '(none given)'}; the export has: {', '.join(known)}"
        )
    return list(dict.fromkeys(wanted))


def _choose_classes(images: dict[str, ImageRecord], class_order: list[str]) -> list[str]:
    """Classes in export-id order that have at least one real (non-crowd) instance."""
    # A class with only ignore regions has nothing to learn from.
    used = {a.class_name for image in images.values() for a in image.annotations if not a.iscrowd}
    return [name for name in class_order if name in used]


# ---------------------------------------------------------------- the stage


def _counts(splits: dict[str, list[ImageRecord]], dropped_images: int, dropped_anns: int) -> dict[str, Any]:
    counts: dict[str, Any] = {}
    for split, members in splits.items():
        anns = [a for image in members for a in image.annotations]
        counts[split] = {
            "images": len(members),
            "annotations": len(anns),
            "crowd": sum(a.iscrowd for a in anns),
        }
        counts[split]["attributes"] = attribute_counts(anns)
    counts["images"] = sum(counts[s]["images"] for s in splits)
    counts["annotations"] = sum(counts[s]["annotations"] for s in splits)
    counts["dropped"] = {"images": dropped_images, "annotations": dropped_anns}
    return counts


def attribute_counts(anns: list[CleanAnnotation]) -> dict[str, dict[str, dict[str, int]]]:
    """{class: {attribute: {value: n, ..., "unlabelled": n}}} over real (non-crowd) objects."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    for ann in anns:
        if ann.iscrowd:
            continue
        for name, value in ann.attributes.items():
            key = "unlabelled" if name in ann.unlabelled else value_name(value)
            per_value = out.setdefault(ann.class_name, {}).setdefault(name, {})
            per_value[key] = per_value.get(key, 0) + 1
    return out


def strict_message(problems: list[Problem], shown: int = 3) -> str:
    first = "; ".join(
        f"{p.image or '-'} #{p.annotation or '-'}: {p.what} ({p.action})" for p in problems[:shown]
    )
    more = f"; and {len(problems) - shown} more" if len(problems) > shown else ""
    return f"{len(problems)} problem(s) in the export with --strict: {first}{more}; fix them or drop --strict"


@dataclass
class _Checked:
    """One export after its checks: its kept images (annotations attached) and what it said."""

    export: Path
    images_dir: Path
    sha256: str
    categories: Categories
    images: dict[str, ImageRecord]
    listed_images: int
    listed_annotations: int
    on_dropped: int
    finder: ImageFinder


def _export_list(export: Path | str | Sequence[Path | str]) -> list[Path]:
    exports = [Path(export)] if isinstance(export, (str, os.PathLike)) else [Path(e) for e in export]
    if not exports:
        raise DataError("no export given; pass the COCO export (.json) to ingest")
    seen: set[str] = set()
    for path in exports:
        real = os.path.realpath(path)
        if real in seen:
            raise DataError(f"{path}: given twice; pass each export once")
        seen.add(real)
    return exports


def _image_folders(exports: list[Path], images_dir: Path | Sequence[Path] | None) -> list[Path]:
    """Each export's image folder: its own folder by default; one `images_dir` for all, or one per
    export in their order (a CVAT export's images/ beside its annotations/, a Label Studio upload folder)."""
    if images_dir is None:
        given: list[Path] = []
    elif isinstance(images_dir, (str, os.PathLike)):
        given = [Path(images_dir)]
    else:
        given = [Path(folder) for folder in images_dir]
    if not given:
        return [export.parent for export in exports]
    if len(given) == 1:
        return given * len(exports)
    if len(given) != len(exports):
        raise DataError(
            f"--images given {len(given)} times for {len(exports)} exports: give one folder for all of "
            "them, or one per export in the same order"
        )
    return given


def _check_export(
    export: Path,
    data: dict[str, Any],
    categories: Categories,
    images_dir: Path,
    out: Path,
    problems: list[Problem],
    crowd: str,
    schema: AttributeSchema,
    reporter: Reporter,
) -> _Checked:
    """One export's photos found and checked, its clean annotations attached to them."""
    names = [e.get("file_name") for e in data["images"] if isinstance(e, dict)]
    finder = ImageFinder(images_dir, [n for n in names if isinstance(n, str)], skip=[out])
    labels = Counter(id_key(a.get("image_id")) for a in data["annotations"] if isinstance(a, dict))
    images = _scan_images(data["images"], finder, problems, reporter, written_by_label_studio(data), labels)
    listed_ids: dict[str, Any] = {}
    for entry in data["images"]:
        if isinstance(entry, dict) and (key := id_key(entry.get("id"))) is not None:
            listed_ids.setdefault(key, entry.get("id"))
    on_dropped = _check_annotations(
        data["annotations"], images, listed_ids, categories, problems, crowd, schema
    )
    return _Checked(
        export,
        images_dir,
        sha256_file(export),
        categories,
        images,
        len(data["images"]),
        len(data["annotations"]),
        on_dropped,
        finder,
    )


def _none_usable(checked: _Checked, problems: list[Problem]) -> DataError:
    kinds = ", ".join(f"{kind} x{n}" for kind, n in Counter(p.kind for p in problems).most_common(3))
    hint = ""
    if any(p.kind in ("image_path_escape", "image_missing") for p in problems):
        hint = "; pass --images DIR, the folder that holds the photos (looked up there by name)"
        beside = checked.export.parent.parent / "images"  # CVAT's zip: annotations/*.json beside images/
        if checked.images_dir == checked.export.parent and beside.is_dir():
            hint += f", perhaps {beside}"
    return DataError(
        f"{checked.export}: none of its {checked.listed_images} images could be used ({kinds}){hint}"
    )


def _nothing_to_train(
    exports: list[Path], checked: list[_Checked], images: dict[str, ImageRecord], problems: list[Problem]
) -> DataError:
    """No object with a mask is left: what became of the annotations, so the advice fits the export
    (an empty export, category ids not in its categories, boxes alone, crowd regions)."""
    where = ", ".join(map(str, exports))
    listed = sum(c.listed_annotations for c in checked)
    if not listed:
        return DataError(
            f"{where}: lists no annotations, so nothing to train; export it once photos are labelled"
        )
    regions = sum(a.iscrowd for image in images.values() for a in image.annotations)
    boxes = len({(p.image, p.annotation) for p in problems if p.action == IGNORE_REGION})
    kinds = Counter(p.kind for p in problems if p.annotation and p.action == "dropped")
    found = [f"{kind} x{n}" for kind, n in kinds.most_common(3)]
    if on_dropped := sum(c.on_dropped for c in checked):
        found.append(f"{on_dropped} on photos that were dropped")
    if boxes:
        found.append(f"{boxes} box(es) without a mask, kept as ignore regions")
    if regions > boxes:
        found.append(
            f"{regions - boxes} crowd region(s) (iscrowd 1; --crowd instances reads them as objects)"
        )
    advice = (
        " (Mask R-CNN needs segmentation masks, not boxes alone; export polygons or masks)" if boxes else ""
    )
    return DataError(
        f"{where}: no annotation with a usable mask left after the checks (of {listed}: "
        f"{'; '.join(found)}), so nothing to train{advice}"
    )


def _category_map(checked: list[_Checked], chosen: list[str]) -> dict[str, int]:
    """Export category id -> class index (from 1) of the kept classes; `n:id` (the export's position
    from 1) with several exports, so that two exports' id 1 stay apart."""
    out = {}
    for n, c in enumerate(checked, 1):
        for key, name in sorted(c.categories.names.items(), key=lambda kv: id_sort_key(kv[0])):
            if name in chosen:
                out[key if len(checked) == 1 else f"{n}:{key}"] = chosen.index(name) + 1
    return out


def ingest_export(
    export: Path | Sequence[Path],
    images_dir: Path | Sequence[Path] | None = None,
    out: Path = DEFAULT_DATASET_DIR,
    val_fraction: float = 0.2,
    seed: int = 0,
    strict: bool = False,
    classes: Sequence[str] | None = None,
    crowd: str = "auto",
    reporter: Reporter = SILENT,
    attributes: AttributeSchema | None = None,
    last_wins: bool = False,
    conventions: Mapping[str, Declared | None] | None = None,
    renames: Mapping[str, str] | None = None,
) -> IngestResult:
    """Check, repair, split and write a COCO export as an officescore data set in `out`.

    `export`: one export, or several (Roboflow's train/valid/test, one per CVAT task or Label Studio
    project) ingested into one data set: classes matched by name, photos split anew together, each
    export's photos looked up beside it, or in `images_dir`: one folder for all, or one per export.
    `crowd`: what an iscrowd 1 annotation with a mask is: "auto" (an instance in CVAT's exports,
    whose brush masks all carry iscrowd 1; a crowd region elsewhere), "instances" or "ignore"
    (always an ignore region). Box-only annotations are ignore regions whatever it says.
    `attributes`: the per-class attribute schema (default: the package's data/attributes.toml);
    `dataset.json` records it, restricted to the classes kept.
    `last_wins`: a photo in several exports (byte for byte) keeps only the labels of the last export
    holding it, so a review project's export given last corrects the photos it reviewed.
    `conventions`: declared labelling conventions (None drops one), over those of the data set
    already in `out`, which carry over; dataset.json records them for the classes kept.
    `renames`: {OLD: NEW} (`--rename`): the exports' category OLD (compared as class names are) is
    class NEW, before classes are matched; two onto one NEW make one class. Each must name a category
    of the exports. dataset.json records them; they never carry over (`label pull --ingest` keeps
    Label Studio's names).
    """
    exports, out = _export_list(export), Path(out)
    if last_wins and len(exports) < 2:
        raise DataError("--last-wins needs two or more exports: the labels, then the corrections last")
    if crowd not in CROWD_MODES:
        raise DataError(f"--crowd {crowd}: use one of {', '.join(CROWD_MODES)}")
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"--val-fraction must be at least 0 and below 1, got {val_fraction}")
    folders = _image_folders(exports, images_dir)
    for folder in dict.fromkeys(folders):
        if not folder.is_dir():
            raise DataError(f"{folder}: image folder not found; pass --images DIR")
    datas = [read_export(path) for path in exports]  # all readable, and --out safe, before slow work
    for folder in dict.fromkeys(folders):
        check_out(out, folder)
    # one spelling per class across the exports: that of --classes, else the first export's
    spellings = {class_key(name): name.strip() for name in classes or () if name.strip()}
    _check_renames(renames or {}, datas)
    categories = [check_categories(data["categories"], spellings, renames) for data in datas]  # (c, problems)
    # the exports' classes, matched by name, in order of first appearance
    class_order = list(dict.fromkeys(name for c, _ in categories for name in c.order))
    wanted = _requested_classes(class_order, classes) if classes is not None else None
    # a misspelt class is refused before the slow work
    check_convention_classes(conventions or {}, wanted if wanted is not None else class_order)

    schema = attributes if attributes is not None else load_schema()
    problems: list[Problem] = []
    checked: list[_Checked] = []
    images: dict[str, ImageRecord] = {}
    for n, (path, data, (cats, own), folder) in enumerate(
        zip(exports, datas, categories, folders, strict=True), 1
    ):
        one = _check_export(path, data, cats, folder, out, own, crowd, schema, reporter)  # adds to own
        if not one.images and not (strict and own):
            raise _none_usable(one, own)
        if len(exports) > 1:  # which export each problem and photo is from
            own = [replace(p, image=f"{path}: {p.image}" if p.image else str(path)) for p in own]
            for key, record in one.images.items():
                record.key = f"{n}:{key}"
                images[record.key] = record
        else:
            images = one.images
        problems += own
        checked.append(one)
    if strict and problems:
        raise DataError(strict_message(problems))
    on_dropped = sum(c.on_dropped for c in checked)
    replaced = _keep_last_copies(images) if last_wins else []

    chosen = wanted if wanted is not None else _choose_classes(images, class_order)
    if not chosen:
        raise _nothing_to_train(exports, checked, images, problems)
    excluded = 0
    excluded_classes: set[str] = set()
    for image in images.values():
        excluded_classes.update(a.class_name for a in image.annotations if a.class_name not in chosen)
        before = len(image.annotations)
        image.annotations = [a for a in image.annotations if a.class_name in chosen]
        excluded += before - len(image.annotations)

    kept = sorted(images.values(), key=lambda im: (im.file_name, id_sort_key(im.key)))
    disagreeing = _copies_labelled_differently(kept, exports)
    if strict and disagreeing:
        raise DataError(strict_message(disagreeing))
    problems += disagreeing
    unique_names(kept)
    sources = [augmented_from(im.file_name) for im in kept]  # Roboflow's copies of one photo
    groups = duplicate_groups([im.sha256 for im in kept], [im.phash for im in kept], PHASH_THRESHOLD, sources)
    image_classes = [{a.class_name for a in im.annotations if not a.iscrowd} for im in kept]
    earlier = earlier_split(out, seed, val_fraction)
    previous = [earlier.get(im.sha256) for im in kept]
    assignment = split_groups(groups, image_classes, val_fraction, seed, previous)
    splits = {s: [im for im, a in zip(kept, assignment, strict=True) if a == s] for s in ("train", "val")}

    dropped_images = sum(c.listed_images for c in checked) - len(kept) - len(replaced)
    listed_anns = sum(c.listed_annotations for c in checked)
    replaced_anns = sum(len(im.annotations) for im in replaced)
    dropped_anns = listed_anns - sum(len(im.annotations) for im in kept) - excluded - replaced_anns
    counts = _counts(splits, dropped_images, dropped_anns)
    counts["excluded_by_classes"] = excluded
    counts["replaced"] = {"images": len(replaced), "annotations": replaced_anns}  # by --last-wins
    category_map = _category_map(checked, chosen)
    dropped_categories = [name for name in class_order if name not in chosen]
    dup_groups = _group_names(groups, kept)
    counts["duplicate_groups"] = len(dup_groups)
    counts["split_kept"] = sum(split is not None for split in previous)  # placed by an earlier ingest
    unlisted = _unlisted_photos(checked)
    counts["unlisted"] = len(unlisted)
    sources = [
        {"export": _relative(c.export, out), "images": _relative(c.images_dir, out), "sha256": c.sha256}
        for c in checked
    ]
    declared = merged(read_conventions(read_dataset_meta(out)), conventions or {}, chosen)  # carried over
    renamed = {old: new for c, _ in categories for old, new in c.renamed.items()}
    meta = {
        "format": DATASET_FORMAT,
        "version": DATASET_VERSION,
        "classes": chosen,
        "source": {**sources[0], "exports": sources} if len(sources) > 1 else sources[0],
        "seed": seed,
        "val_fraction": val_fraction,
        "counts": counts,
        "problems": {
            "total": len(problems),
            "annotations_on_dropped_images": on_dropped,
            "by_kind": dict(Counter(p.kind for p in problems).most_common()),
            "items": [p.to_dict() for p in problems],
        },
        "category_map": category_map,
        "attributes": schema.restricted(chosen).to_dict(),
        "conventions": as_json(declared),
        "dropped_categories": dropped_categories,
        "renames": renamed,
        "duplicates": {"phash_threshold": PHASH_THRESHOLD, "groups": dup_groups},
        "officescore_version": __version__,
    }
    write_dataset(out, splits, chosen, meta, reporter)
    left_out = [name for name in class_order if name in excluded_classes]
    recorded = [os.path.normpath(out / source["export"]) for source in sources]
    return IngestResult(
        out,
        chosen,
        counts,
        problems,
        category_map,
        dup_groups,
        left_out,
        recorded,
        conventions=declared,
        dropped_categories=dropped_categories,
        renamed=renamed,
        unlisted=unlisted,
        merged=_merged_by_rename([c for c, _ in categories], chosen),
        with_photos=on_dropped,
    )


def _unlisted_photos(checked: list[_Checked]) -> list[str]:
    """Photos in an image folder that no export using it lists (`<folder>/<name>`): a labelled photo
    the export lost, or one never labelled, which only the user can tell."""
    folders: dict[Path, list[ImageFinder]] = {}
    for c in checked:  # exports sharing one --images share its photos
        folders.setdefault(c.images_dir, []).append(c.finder)
    unlisted = []
    for folder, finders in folders.items():
        listed = set().union(*(finder.found for finder in finders))
        for photo in finders[0].photos():
            if photo not in listed and not _in_data_set(photo):
                unlisted.append(str(folder / finders[0].relative(photo)))
    return unlisted


def _in_data_set(photo: Path) -> bool:
    """A file of an officescore data set: `images/<name>` (a copy of a listed photo), `health.png`."""
    holder = photo.parent.parent if photo.parent.name == "images" else photo.parent
    return (holder / "dataset.json").is_file()


def _check_renames(renames: Mapping[str, str], datas: list[dict[str, Any]]) -> None:
    """A --rename whose OLD no export has is a typo: refused, naming the categories there are."""
    names = [
        entry["name"].strip()
        for data in datas
        for entry in data["categories"]
        if isinstance(entry, dict) and isinstance(entry.get("name"), str) and entry["name"].strip()
    ]
    known = {class_key(name) for name in names}
    unknown = [f"{old}={new}" for old, new in renames.items() if class_key(old) not in known]
    if unknown:
        where = "the export has" if len(datas) == 1 else "the exports have"
        raise DataError(
            f"--rename {', '.join(unknown)}: no such category; {where}: {', '.join(dict.fromkeys(names))}"
        )


def _merged_by_rename(categories: list[Categories], chosen: list[str]) -> dict[str, list[str]]:
    """Class -> the exports' categories (as written) --rename made it of, where that is more than one:
    two OLDs onto one NEW, or an OLD onto a category the export has. Classes kept only."""
    sources: dict[str, dict[str, str]] = {}  # class -> {class_key: the exports' name}
    for c in categories:
        for key, name in c.names.items():
            sources.setdefault(name, {}).setdefault(class_key(c.written[key]), c.written[key])
    joined = {name: found for name, found in sources.items() if len(found) > 1 and name in chosen}
    return {name: list(found.values()) for name, found in joined.items()}


def _keep_last_copies(images: dict[str, ImageRecord]) -> list[ImageRecord]:
    """--last-wins: of a photo in several exports (keys "<n>:<id>"), the copies of earlier exports
    are taken out of `images` (and returned); copies within one export are left to the usual checks."""
    last: dict[str, int] = {}
    for key, image in images.items():
        last[image.sha256] = max(last.get(image.sha256, 0), _export_number(key))
    earlier = [key for key, image in images.items() if _export_number(key) < last[image.sha256]]
    return [images.pop(key) for key in earlier]


def _export_number(key: str) -> int:
    return int(key.split(":", 1)[0])


def _copies_labelled_differently(kept: list[ImageRecord], exports: list[Path]) -> list[Problem]:
    """Byte-identical photos (from two exports, say) whose objects differ in class or number. Both
    copies stay, each with its own labels (one duplicate group, so on one side of the split): which
    labels are right is the labeller's call, so the disagreement is a problem to fix, not a guess."""
    first: dict[str, ImageRecord] = {}
    problems = []
    for image in kept:
        other = first.setdefault(image.sha256, image)
        if other is not image and _objects(other) != _objects(image):
            what = (
                f"the same photo as {_in_export(other, exports)}, labelled {_objects(other)} there "
                f"and {_objects(image)} here"
            )
            problems.append(
                Problem(_in_export(image, exports), "", "image_duplicate_labels_differ", what, "both kept")
            )
    return problems


def _objects(image: ImageRecord) -> str:
    """ "chair x1, desk x2": the photo's labelled objects by class (crowd regions as such)."""
    names = Counter(a.class_name + (" (crowd)" if a.iscrowd else "") for a in image.annotations)
    return ", ".join(f"{name} x{n}" for name, n in sorted(names.items())) or "nothing"


def _in_export(image: ImageRecord, exports: list[Path]) -> str:
    """The photo's file_name, after its export when there are several (keys are then "<n>:<id>")."""
    if len(exports) == 1:
        return image.file_name
    return f"{exports[_export_number(image.key) - 1]}: {image.file_name}"


def _group_names(groups: list[int], images: list[ImageRecord]) -> list[list[str]]:
    members: dict[int, list[str]] = {}
    for group, image in zip(groups, images, strict=True):
        members.setdefault(group, []).append(f"images/{image.out_name}")
    return [names for names in members.values() if len(names) > 1]


def _relative(path: Path, out: Path) -> str:
    """`path` relative to the data-set folder (where dataset.json lives), with forward slashes."""
    return Path(os.path.relpath(os.path.abspath(path), os.path.abspath(out))).as_posix()
