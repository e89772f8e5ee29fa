"""`audit --labelstudio` and `select --labelstudio`: Label Studio tasks for review or labelling,
in the one task format officescore has (officescore.label.formats, as prelabel writes it).

audit: each flagged photo (an issue scoring at least REVIEW_SCORE, or a label breaking a declared
labelling convention) becomes a task whose annotation is the current labels and whose prediction is
the model's suggestion (its detections at >= 0.5), with the photo's issues in task data; ignore
regions (iscrowd 1) are drawn as rectangles of the config's ignore tag (and listed in the task data),
which `label pull` reads back as ignore regions.
select: each chosen photo becomes a task with the model's detections as pre-annotations. Photos are
referenced as Label Studio local files relative to the folder that holds them all (serve it with
LOCAL_FILES_DOCUMENT_ROOT, as for prelabel), and by `data.path`, relative to the tasks file, which
`label push --review` uploads.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from officescore import masks as masklib
from officescore.attributes import value_name
from officescore.curate.labels import SplitLabels
from officescore.files import relative_to_file

REVIEW_SCORE = 0.5  # issues at or above this put their photo up for review
REVIEW_KEY = "review"  # task data shown above the photo: what to check, in words
SUGGEST_CONF = 0.5  # the model's detections shown as the suggestion


def _detections(results: list[dict[str, Any]], classes: list[str], width: int, height: int) -> list[Any]:
    from officescore.infer import Detection

    out = []
    for r in results:
        x, y, w, h = r["bbox"]
        share = masklib.area(r["segmentation"]) / float(width * height)
        name = classes[int(r["category_id"]) - 1]
        box = [x, y, x + w, y + h]
        rle = masklib.normalise(r["segmentation"])
        attributes = dict(r.get("attributes") or {})  # the attribute head's values, when it has one
        out.append(Detection(name, float(r["score"]), box, rle, share, attributes=attributes))
    return out


def _objects_and_ignore_regions(labels: Sequence[Any]) -> tuple[list[Any], list[dict[str, Any]]]:
    """The objects of the review annotation, and the ignore regions (iscrowd 1) apart from them.

    Label Studio regions have no crowd flag: an ignore region drawn as a polygon would come back
    from `label pull` as an object. They are rectangles of the ignore tag instead (pull reads those
    as ignore regions) and are listed in the task data: annotation id, class and box.
    """
    objects = [lab for lab in labels if not lab.iscrowd]
    ignored = [
        {"annotation_id": lab.id, "class": lab.class_name, "bbox": [float(v) for v in lab.bbox]}
        for lab in labels
        if lab.iscrowd
    ]
    return objects, ignored


def _root(paths: Sequence[Path]) -> Path:
    return Path(os.path.commonpath([str(Path(p).resolve().parent) for p in paths]))


def audit_tasks(
    out: Path,
    split: SplitLabels,
    results: list[dict[str, Any]],
    issues: list[dict[str, Any]],
    model_version: str,
    review_score: float = REVIEW_SCORE,
    conventions: Sequence[dict[str, Any]] = (),
    mask: str = "polygon",
) -> tuple[Path, Path, int]:
    """Write the review tasks; returns (tasks file, labelling config, number of tasks).

    `conventions` (ConventionSplit.to_dict()): every photo of a convention group becomes a task too,
    with the group's class, number (1 = the minority), description and its labels on that photo in
    the task data (`conventions`), so a team can pick one convention and relabel the other group."""
    from officescore.label.formats import LabelSchema, make_task, write_tasks
    from officescore.label.prelabel import image_reference, relative_name

    flagged: dict[int, list[dict[str, Any]]] = {}
    for issue in issues:  # a label breaking a declared convention is wrong by the team's own rule
        if issue["score"] >= review_score or issue["kind"] == "convention":
            flagged.setdefault(issue["image_id"], []).append(issue)
    grouped: dict[int, list[dict[str, Any]]] = {}
    by_id = split.by_id()
    for convention in conventions:
        for n, group in enumerate(convention["groups"], start=1):
            ids = set(group["annotation_ids"])
            for image_id in group["image_ids"]:
                image_labels = [lab.id for lab in by_id[image_id].labels if lab.id in ids]
                grouped.setdefault(image_id, []).append(
                    {"class": convention["class"], "group": n, "description": group["description"],
                     "annotation_ids": image_labels}
                )  # fmt: skip
    images = [image for image in split.images if image.id in flagged or image.id in grouped]
    # the data set's attributes as per-region choices: labelled values shown, fixable, pulled back
    ignore_boxes = any(lab.iscrowd for image in images for lab in image.labels)
    schema = LabelSchema(
        tuple(split.classes), mask, attributes=split.attributes, ignore_boxes=ignore_boxes, header=REVIEW_KEY
    )
    by_image: dict[int, list[dict[str, Any]]] = {}
    for r in results:
        if r["score"] >= SUGGEST_CONF:
            by_image.setdefault(int(r["image_id"]), []).append(r)
    tasks = []
    root = _root([image.path for image in images]) if images else Path(".")

    # flagged photos by their worst issue, then convention photos (minority groups first)
    def order(image: Any) -> tuple[float, int]:
        worst = max((x["score"] for x in flagged.get(image.id, [])), default=0.0)
        return (-worst, min((g["group"] for g in grouped.get(image.id, [])), default=0))

    for image in sorted(images, key=order):
        keys = ("rank", "kind", "score", "annotation_id", "class", "suggested_class", "bbox")
        task_issues = [{k: x[k] for k in keys} for x in flagged.get(image.id, [])]
        data: dict[str, Any] = {"image_id": image.id, "file_name": image.file_name, "issues": task_issues}
        data["path"] = relative_to_file(image.path, out)  # what `label push --review` uploads
        if image.id in grouped:
            data["conventions"] = grouped[image.id]
        data[REVIEW_KEY] = review_text(
            flagged.get(image.id, []), grouped.get(image.id, []), image.width, image.height
        )
        objects, ignored = _objects_and_ignore_regions(image.labels)
        if ignored:
            data["ignore_regions"] = ignored
        tasks.append(
            make_task(
                image_reference(relative_name(image.path, root), None),
                image.width,
                image.height,
                schema,
                detections=_detections(by_image.get(image.id, []), split.classes, image.width, image.height),
                model_version=model_version,
                annotations=[
                    {"category": lab.class_name, "segmentation": lab.rle, "attributes": lab.attributes}
                    for lab in objects
                ],
                data=data,
                ignore_regions=[{"category": x["class"], "bbox": x["bbox"]} for x in ignored],
            )
        )
    tasks_file, config = write_tasks(Path(out), tasks, schema)
    return tasks_file, config, len(tasks)


def review_text(
    issues: Sequence[dict[str, Any]], conventions: Sequence[dict[str, Any]], width: int, height: int
) -> str:
    """What the reviewer should check on this photo, in words, worst first: Label Studio's regions
    carry no annotation ids, so each object is named by its class and where it is in the photo."""
    said = [_issue_words(issue, width, height) for issue in issues]
    said += [
        f"{c['class']}: its outline follows convention {c['group']} of 2 ({c['description']}); "
        "keep the one the team chose"
        for c in conventions
    ]
    return "Check: " + "; ".join(f"{n}) {text}" for n, text in enumerate(said, start=1))


def _issue_words(issue: dict[str, Any], width: int, height: int) -> str:
    where, name, other = _place(issue["bbox"], width, height), issue["class"], issue["suggested_class"]
    kind = issue["kind"]
    if kind == "missing":
        return f"a {other} {where} has no label; draw it (the model's suggestion shows it)"
    if kind == "wrong_class":
        return f"the {name} {where} looks like a {other}; check its class"
    if kind == "bad_mask":
        return f"the {name} {where}: its outline and the model's differ; check the outline"
    if kind == "spurious":
        return f"the {name} {where}: the model sees no object there; delete it if there is none"
    if kind == "duplicate":
        return f"the {name} {where} is labelled twice; delete one"
    if kind == "convention" and issue.get("convention"):
        rule = issue["convention"]
        note = f" ({rule['note']})" if rule.get("note") else ""
        return (
            f"the {name} {where} {rule['breach']}: the team's convention is {name}={rule['convention']}"
            f"{note}; redraw its outline"
        )
    if kind == "wrong_attribute" and issue.get("attribute"):
        attribute = issue["attribute"]
        return (
            f"the {name} {where}: {attribute['name']} is {value_name(attribute['label'])}, the model says "
            f"{value_name(attribute['predicted'])}; check it"
        )
    return f"the {name or other} {where}: {kind}"


def _place(bbox: Sequence[float], width: int, height: int) -> str:
    """Where a COCO box's centre is, in a 3 x 3 grid of the photo ("at top left", "in the middle")."""
    x, y, w, h = bbox
    column = min(int(3 * (x + w / 2) / max(width, 1)), 2)
    row = min(int(3 * (y + h / 2) / max(height, 1)), 2)
    if (row, column) == (1, 1):
        return "in the middle"
    rows, columns = ("top", "middle", "bottom"), ("left", "centre", "right")
    return f"at {rows[row]} {columns[column]}"


POLYGON_LOSS = 0.02  # a label losing more than this share of its pixels to a polygon is cut


def labels_a_polygon_cuts(split: SplitLabels, image_ids: set[int]) -> list[int]:
    """Ids of the labels on these photos that a Label Studio polygon cannot hold (several parts or
    holes: it keeps the largest part's outer ring), so a review pulled back would replace them."""
    from officescore.label.regions import mask_to_points, points_to_rle

    cut = []
    for image in split.images:
        if image.id not in image_ids:
            continue
        for lab in image.labels:
            if lab.iscrowd:
                continue
            mask = masklib.decode(lab.rle).astype(bool)
            points = mask_to_points(mask, image.width, image.height)
            kept = masklib.decode(points_to_rle(points, image.width, image.height)).astype(bool)
            if (mask & ~kept).sum() > POLYGON_LOSS * max(int(mask.sum()), 1):
                cut.append(lab.id)
    return cut


def select_tasks(
    out: Path, predictor: Any, paths: Sequence[Path], model_version: str, classes: Sequence[str] | None = None
) -> tuple[Path, Path, int]:
    """Tasks for the chosen photos with the model's detections (>= 0.5) as pre-annotations.
    `classes`: the labelled data set's, when the model knows more (only those are suggested)."""
    from officescore.attributes import load_schema
    from officescore.label.formats import LabelSchema, make_task, write_tasks
    from officescore.label.prelabel import image_reference, relative_name

    # per-region choices as prelabel writes them: the model's attributes, else the default schema's
    attributes = getattr(predictor, "attributes", None) or load_schema()
    names = tuple(classes) if classes is not None else tuple(predictor.classes)
    schema = LabelSchema(names, "polygon", attributes=attributes)
    results = predictor.predict(list(paths), batch_size=1, conf=SUGGEST_CONF) if paths else []
    root = _root(paths) if paths else Path(".")
    tasks = [
        make_task(
            image_reference(relative_name(Path(path), root), None),
            result.width,
            result.height,
            schema,
            detections=[d for d in result.detections if d.class_name in names],
            model_version=model_version,
            data={"rank": rank, "path": relative_to_file(Path(path), out)},
        )
        for rank, (path, result) in enumerate(zip(paths, results, strict=True), start=1)
        if result.ok
    ]
    tasks_file, config = write_tasks(Path(out), tasks, schema)
    return tasks_file, config, len(tasks)
