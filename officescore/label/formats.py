"""Label Studio's file formats for instance segmentation: the labelling config and the tasks JSON.

A stable API for everything in officescore that writes or reads Label Studio tasks (prelabel,
label push / pull / backend, audit --labelstudio, select --labelstudio):

    schema = LabelSchema(classes=("desk", "chair"), mask="polygon")   # or mask="brush"
    schema.config_xml()                          # the project's labelling config
    LabelSchema.from_config(xml)                 # a project's config back to a schema (classes, kind)

    task = make_task(
        "/data/local-files/?d=photos/a.jpg",     # data.image: a URL or Label Studio path
        width, height, schema,
        detections=[...],                        # officescore.infer.Detection -> one prediction
        model_version="best-1a2b3c4d",
        annotations=[{"category": "desk", "segmentation": rle_or_polygons}, ...],  # -> one annotation
        data={"sha256": "...", "license": "..."},  # extra task data (kept beside data.image)
    )
    write_tasks(Path("tasks.json"), [task, ...], schema)  # + tasks.label_config.xml beside it

    regions = result_regions(annotation["result"])   # back: [Region(class_name, mask RLE, score)]

Attributes (officescore.attributes): `LabelSchema(..., attributes=schema)` adds one per-region
`Choices` per class attribute to the config (perRegion="true", shown for regions of its class;
name `<class>__<attribute>`); detections' and labels' `attributes` become `choices` results with
their region's id, and `result_regions` reads them back into `Region.attributes` (value names:
yes/no for a yes/no attribute).

Lower-level pieces, for callers that assemble tasks themselves: `mask_result` (one region from a
mask), `prediction` (a prediction from detections), `annotation` (an annotation from labels).

Coordinates in results are percent of the image (Label Studio's convention); masks given and
returned are COCO RLE (`officescore.masks`) in pixels of the photo as stored (EXIF-oriented).
Region ids are deterministic (a hash of the image reference, the kind and the index), so writing
the same tasks twice gives the same file.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from officescore import masks as masklib
from officescore.attributes import Attribute, AttributeSchema, value_name
from officescore.errors import DataError
from officescore.files import atomic_write_bytes
from officescore.label.regions import (
    DEFAULT_SIMPLIFY,
    brush_to_mask,
    mask_to_brush,
    mask_to_points,
    points_to_pixels,
    points_to_rle,
)
from officescore.masks import Rle

POLYGON = "polygon"
BRUSH = "brush"
MASK_KINDS = (POLYGON, BRUSH)
_CONTROL_TAGS = {POLYGON: "PolygonLabels", BRUSH: "BrushLabels"}
_RESULT_TYPES = {POLYGON: "polygonlabels", BRUSH: "brushlabels"}
MASK_RESULT_TYPES = tuple(_RESULT_TYPES.values())  # the region types `result_regions` reads as masks
CONFIG_SUFFIX = ".label_config.xml"
ATTRIBUTE_SEPARATOR = "__"  # per-region Choices are named <class>__<attribute>


def pixels(value: Any) -> int:
    """A photo side in pixels as a result may hold it (800, 800.0, "800", "800.0"); 0 when it is none."""
    try:
        number = float(value or 0)
    except (TypeError, ValueError):
        return 0
    return int(round(number)) if math.isfinite(number) and number > 0 else 0


def photo_size(result: Mapping[str, Any]) -> tuple[int, int]:
    """(width, height) of the photo a region was drawn on, or a DataError naming the region."""
    width, height = pixels(result.get("original_width")), pixels(result.get("original_height"))
    if width <= 0 or height <= 0:
        raise DataError(f"region {result.get('id')}: no original_width/original_height; re-save it")
    return width, height


def choices_name(attribute: Attribute) -> str:
    return f"{attribute.class_name}{ATTRIBUTE_SEPARATOR}{attribute.name}"


# Click to mask (officescore.label.interactive): Label Studio's smart tools send a click or a box to
# the ML backend, which answers with a brush mask in the ANSWER_TAG (or the project's own BrushLabels).
SMART_CLICK_TAG, SMART_BOX_TAG, ANSWER_TAG = "click", "box", "mask"
# A rectangle from a plain (not smart) RectangleLabels tag is an ignore region (COCO iscrowd 1: an
# object neither learnt from nor counted as missed), as ingest reads a box without a mask; review
# tasks draw the data set's ignore regions in this tag, so they come back as ignore regions.
IGNORE_TAG = "ignore"


@dataclass(frozen=True)
class LabelSchema:
    """What a project labels: its classes, the region kind, and the tag names results refer to."""

    classes: tuple[str, ...]
    mask: str = POLYGON  # "polygon" (PolygonLabels) or "brush" (BrushLabels)
    from_name: str = "label"  # the control tag's name
    to_name: str = "image"  # the Image tag's name
    value: str = "image"  # the task data key holding the image reference
    attributes: AttributeSchema = AttributeSchema()  # per-region choices of the classes' attributes
    interactive: bool = False  # smart keypoint and rectangle tools (click to mask) in the config
    ignore_boxes: bool = False  # a RectangleLabels tag (IGNORE_TAG) for ignore regions
    # a task data key shown in a Header above the photo (a review's "what to check"). The Header has
    # no name: Label Studio requires only the keys of named tags, so a task without the key (plain
    # photos pushed into a review project) is imported and shows an empty header
    header: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(self.classes))
        object.__setattr__(self, "attributes", self.attributes.restricted(self.classes))
        if self.mask not in MASK_KINDS:
            raise DataError(f"mask kind {self.mask!r}: use one of {', '.join(MASK_KINDS)}")
        if not self.classes:
            raise DataError("no classes for the labelling config: pass --classes or a model that has them")

    @property
    def result_type(self) -> str:
        return _RESULT_TYPES[self.mask]

    def config_xml(self) -> str:
        """The labelling config: one Image tag and one PolygonLabels / BrushLabels with the classes."""
        view = ElementTree.Element("View")
        if self.header is not None:
            ElementTree.SubElement(view, "Header", value=f"${self.header}", size="5")
        ElementTree.SubElement(
            view, "Image", name=self.to_name, value=f"${self.value}", zoom="true", zoomControl="true"
        )
        attrs = {"name": self.from_name, "toName": self.to_name}
        if self.mask == POLYGON:
            attrs.update(strokeWidth="2", pointSize="small", opacity="0.4")
        control = ElementTree.SubElement(view, _CONTROL_TAGS[self.mask], attrs)
        for name in self.classes:
            ElementTree.SubElement(control, "Label", value=name, background=class_hex(name, self.classes))
        for attribute in self.attributes.attributes:  # shown for a selected region of its class
            choices = ElementTree.SubElement(
                view,
                "Choices",
                name=choices_name(attribute),
                toName=self.to_name,
                perRegion="true",
                choice="single",
                visibleWhen="region-selected",
                whenTagName=self.from_name,
                whenLabelValue=attribute.class_name,
            )
            hint = f"{attribute.class_name}: {attribute.description or attribute.name}"
            ElementTree.SubElement(choices, "Header", value=hint)
            for value in attribute.value_names():
                ElementTree.SubElement(choices, "Choice", value=value)
        if self.ignore_boxes:
            _add_ignore_tag(view, self.classes, self.to_name)
        if self.interactive:
            _add_smart_tools(view, self.classes, self.to_name, brush=self.mask != BRUSH)
        ElementTree.indent(view)
        return ElementTree.tostring(view, encoding="unicode") + "\n"

    @classmethod
    def from_config(cls, xml: str) -> LabelSchema:
        """A project's labelling config back to a schema (its first PolygonLabels / BrushLabels)."""
        try:
            root = ElementTree.fromstring(xml)
        except ElementTree.ParseError as exc:
            raise DataError(f"the project's labelling config is not valid XML ({exc})") from exc
        for element in root.iter():
            kind = next((k for k, tag in _CONTROL_TAGS.items() if tag == element.tag), None)
            if kind is None:
                continue
            to_name = element.get("toName", "image")
            image = next((e for e in root.iter("Image") if e.get("name") == to_name), None)
            value = (image.get("value", "$image") if image is not None else "$image").lstrip("$")
            labels = tuple(e.get("value", "") for e in element.iter("Label") if e.get("value"))
            attributes = _config_attributes(root, labels)
            ignore = any(e.get("name") == IGNORE_TAG for e in root.iter("RectangleLabels"))
            name = element.get("name", "label")
            shown = [e.get("value", "") for e in root.findall("Header") if e.get("value", "").startswith("$")]
            header = shown[0][1:] if shown else None
            return cls(labels, kind, name, to_name, value, attributes, _has_smart_tools(root), ignore, header)
        raise DataError(
            "the project's labelling config has no PolygonLabels or BrushLabels tag; "
            "use a project made by `officescore label push` or add one"
        )


def _config_attributes(root: ElementTree.Element, classes: tuple[str, ...]) -> AttributeSchema:
    """Per-region Choices named <class>__<attribute> back to a schema (yes/no when the choices are
    exactly no/yes; the first choice stands for the default, which only ingest uses)."""
    found: dict[str, dict[str, Any]] = {}
    for element in root.iter("Choices"):
        name = element.get("name", "")
        class_name, sep, attribute = name.partition(ATTRIBUTE_SEPARATOR)
        if element.get("perRegion") != "true" or not sep or class_name not in classes or not attribute:
            continue
        values = [e.get("value", "") for e in element.iter("Choice") if e.get("value")]
        if sorted(values) == ["no", "yes"]:
            spec: dict[str, Any] = {"kind": "yesno", "default": False}
        elif len(values) >= 2:
            spec = {"kind": "choice", "values": values, "default": values[0]}
        else:
            continue
        header = next((e.get("value", "") for e in element.iter("Header")), "")
        description = header.removeprefix(f"{class_name}: ")
        if description and description != attribute and description != header:
            spec["description"] = description  # the labellers' hint config_xml wrote
        found.setdefault(class_name, {})[attribute] = spec
    try:
        return AttributeSchema.from_dict(found, "the project's labelling config")
    except Exception:  # noqa: BLE001 - a hand-made config with odd choices: no attributes, not an error
        return AttributeSchema()


# The click-to-mask tools: control tag, the name officescore gives it, what it sends, in words.
_SMART_TOOLS = {
    "KeyPointLabels": (SMART_CLICK_TAG, 'click tool (KeyPointLabels smart="true")'),
    "RectangleLabels": (SMART_BOX_TAG, 'box tool (RectangleLabels smart="true")'),
}


def is_smart_tool(element: ElementTree.Element) -> bool:
    """A tag of Label Studio's smart tools (`smart` or `smartOnly`): what a labeller points with."""
    return "true" in (element.get("smart", "").lower(), element.get("smartOnly", "").lower())


def _has_smart_tools(root: ElementTree.Element) -> bool:
    return any(is_smart_tool(e) for tag in _SMART_TOOLS for e in root.iter(tag))


def _lacking_smart_tools(root: ElementTree.Element) -> list[str]:
    return [tag for tag in _SMART_TOOLS if not any(is_smart_tool(e) for e in root.iter(tag))]


def missing_smart_tools(xml: str) -> list[str]:
    """The click-to-mask tools a labelling config lacks, in words (a hand-made config may have a
    smart box but no click tool: Label Studio then sends no clicks); empty when it has both."""
    return [_SMART_TOOLS[tag][1] for tag in _lacking_smart_tools(ElementTree.fromstring(xml))]


def _attributes_for_any_tag(view: ElementTree.Element) -> None:
    """Per-region attribute choices shown for a selected region of their class from any labels tag:
    Label Studio shows them only for regions of the tag `whenTagName` names (the polygon tool), so
    a clicked chair, a region of the BrushLabels tag the answer goes into, never showed its armrests
    question."""
    for element in _attribute_choices(view):
        element.attrib.pop("whenTagName", None)


def _attribute_choices(view: ElementTree.Element) -> list[ElementTree.Element]:
    return [
        e
        for e in view.iter("Choices")
        if e.get("perRegion") == "true" and ATTRIBUTE_SEPARATOR in e.get("name", "")
    ]


def _add_smart_tools(
    view: ElementTree.Element,
    classes: Sequence[str],
    to_name: str,
    brush: bool,
    tools: Sequence[str] = tuple(_SMART_TOOLS),
) -> None:
    """The smart `tools` (default: a keypoint and a rectangle tool) with every class (in its colour),
    and, when the project has no BrushLabels of its own (`brush`), a BrushLabels tag for the answers."""
    tags = [(tag, _SMART_TOOLS[tag][0], True) for tag in tools]
    if brush:
        tags.append(("BrushLabels", ANSWER_TAG, False))
    _attributes_for_any_tag(view)  # clicked regions land in a BrushLabels tag, not the polygon tool
    taken = {e.get("name") for e in view.iter() if e.get("name")}
    for tag, name, smart in tags:
        while name in taken:  # a user's config may use the name already
            name = f"{name}_"
        taken.add(name)
        attrs = {"name": name, "toName": to_name}
        if smart:
            attrs["smart"] = "true"
        control = ElementTree.SubElement(view, tag, attrs)
        for label in classes:
            extra = {"smart": "true"} if smart else {}
            ElementTree.SubElement(
                control, "Label", value=label, background=class_hex(label, classes), **extra
            )


def with_smart_tools(xml: str) -> str:
    """A project's labelling config with the click-to-mask tools it lacks added (unchanged if it has
    them: a hand-made one with a smart box gets the click tool); everything else is kept as it is."""
    schema = LabelSchema.from_config(xml)
    root = ElementTree.fromstring(xml)
    lacking = _lacking_smart_tools(root)
    if lacking:
        has_brush = next(iter(root.iter("BrushLabels")), None) is not None
        _add_smart_tools(root, schema.classes, schema.to_name, brush=not has_brush, tools=lacking)
    elif any(e.get("whenTagName") for e in _attribute_choices(root)):
        _attributes_for_any_tag(root)  # tools added by an earlier version: only its attribute choices
    else:
        return xml
    ElementTree.indent(root)
    return ElementTree.tostring(root, encoding="unicode") + "\n"


def with_ignore_tag(xml: str, labels: Sequence[str] = ()) -> str:
    """A project's labelling config with the RectangleLabels tag of ignore regions (IGNORE_TAG) added,
    labelling its classes and `labels` (unchanged if it has the tag); everything else is kept."""
    schema = LabelSchema.from_config(xml)
    if schema.ignore_boxes:
        return xml
    root = ElementTree.fromstring(xml)
    classes = list(schema.classes) + [name for name in labels if name not in schema.classes]
    _add_ignore_tag(root, classes, schema.to_name)
    ElementTree.indent(root)
    return ElementTree.tostring(root, encoding="unicode") + "\n"


def _add_ignore_tag(view: ElementTree.Element, classes: Sequence[str], to_name: str) -> None:
    """A header and the RectangleLabels tag (IGNORE_TAG) that ignore regions are drawn in."""
    ElementTree.SubElement(
        view, "Header", value="Ignore regions: a box where an object is neither learnt from nor missed"
    )
    boxes = ElementTree.SubElement(
        view, "RectangleLabels", name=IGNORE_TAG, toName=to_name, opacity="0.1", strokeWidth="2"
    )
    for name in classes:
        ElementTree.SubElement(boxes, "Label", value=name, background=class_hex(name, classes))


def class_hex(name: str, classes: Sequence[str] = ()) -> str:
    """The class's colour as #rrggbb (the same colour officescore draws it in, kept apart from the
    other names of `classes`, the project's list)."""
    from officescore.infer.drawing import class_colour_hex

    return class_colour_hex(name, classes)


def _region_id(image_ref: str, kind: str, index: int) -> str:
    return hashlib.sha1(f"{image_ref}\0{kind}\0{index}".encode()).hexdigest()[:10]


# ------------------------------------------------------------------------ building results


def mask_result(
    mask: Rle,
    class_name: str,
    width: int,
    height: int,
    schema: LabelSchema,
    score: float | None = None,
    region_id: str = "",
    simplify: float = DEFAULT_SIMPLIFY,
) -> dict[str, Any] | None:
    """One Label Studio result (region) for a COCO RLE mask; None for an empty mask."""
    binary = masklib.decode(mask)
    if binary.shape != (height, width):
        raise DataError(f"a {class_name} mask is {binary.shape[1]}x{binary.shape[0]}, not {width}x{height}")
    if not binary.any():
        return None
    if schema.mask == POLYGON:
        points = mask_to_points(binary, width, height, simplify)
        if len(points) < 3:
            return None
        value: dict[str, Any] = {"points": points, "closed": True, "polygonlabels": [class_name]}
    else:
        value = {"format": "rle", "rle": mask_to_brush(binary), "brushlabels": [class_name]}
    result: dict[str, Any] = {
        "id": region_id or hashlib.sha1(json.dumps(mask, sort_keys=True).encode()).hexdigest()[:10],
        "type": schema.result_type,
        "from_name": schema.from_name,
        "to_name": schema.to_name,
        "original_width": int(width),
        "original_height": int(height),
        "image_rotation": 0,
        "value": value,
    }
    if score is not None:
        result["score"] = round(float(score), 4)
    return result


def prediction(
    detections: Sequence[Any],
    width: int,
    height: int,
    schema: LabelSchema,
    model_version: str,
    image_ref: str = "",
    simplify: float = DEFAULT_SIMPLIFY,
) -> dict[str, Any]:
    """A Label Studio prediction from `officescore.infer.Detection`s (class_name, score, mask).

    Its `score` is the mean detection score (Label Studio sorts and samples tasks by it); a photo
    with no detections still gets an (empty) prediction, so Label Studio shows the model looked.
    """
    results = []
    for n, det in enumerate(detections):
        rid = _region_id(image_ref, "p", n)
        result = mask_result(det.mask, det.class_name, width, height, schema, det.score, rid, simplify)
        if result is not None:
            results.append(result)
            scores_of = getattr(det, "attribute_scores", {}) or {}
            results += attribute_results(result, getattr(det, "attributes", {}) or {}, schema, scores_of)
    scores = [r["score"] for r in results if r["type"] == schema.result_type]
    return {
        "model_version": model_version,
        "score": round(sum(scores) / len(scores), 4) if scores else 0.0,
        "result": results,
    }


def box_result(
    bbox: Sequence[float], class_name: str, width: int, height: int, schema: LabelSchema, region_id: str
) -> dict[str, Any]:
    """An ignore region's box ([x, y, w, h] in pixels) as a rectangle of the IGNORE_TAG tag."""
    x, y, w, h = (float(v) for v in bbox)
    value = {
        "x": 100 * x / width,
        "y": 100 * y / height,
        "width": 100 * w / width,
        "height": 100 * h / height,
        "rotation": 0,
        "rectanglelabels": [class_name],
    }
    return {
        "id": region_id,
        "type": "rectanglelabels",
        "from_name": IGNORE_TAG,
        "to_name": schema.to_name,
        "original_width": int(width),
        "original_height": int(height),
        "image_rotation": 0,
        "value": value,
    }


def annotation(
    labels: Sequence[Mapping[str, Any]],
    width: int,
    height: int,
    schema: LabelSchema,
    image_ref: str = "",
    simplify: float = DEFAULT_SIMPLIFY,
    ignore_regions: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """A Label Studio annotation from labels `{"category": name, "segmentation": RLE or COCO polygons}`
    (COCO annotations with the category id already turned into its name), and ignore regions
    `{"category", "bbox"}` as rectangles (the schema needs `ignore_boxes`)."""
    results = []
    for n, label in enumerate(labels):
        rle = _segmentation_rle(label["segmentation"], width, height)
        result = mask_result(rle, str(label["category"]), width, height, schema, None, "", simplify)
        if result is not None:
            result["id"] = _region_id(image_ref, "a", n)
            results.append(result)
            results += attribute_results(result, label.get("attributes") or {}, schema)
    if ignore_regions and not schema.ignore_boxes:
        raise ValueError("annotation: ignore regions need a schema with ignore_boxes")
    for n, region in enumerate(ignore_regions):
        rid = _region_id(image_ref, "i", n)
        results.append(box_result(region["bbox"], str(region["category"]), width, height, schema, rid))
    return {"result": results, "ground_truth": False}


def attribute_results(
    region: dict[str, Any],
    attributes: Mapping[str, Any],
    schema: LabelSchema,
    scores: Mapping[str, float] | None = None,
) -> list[dict[str, Any]]:
    """Per-region `choices` results (same id as `region`) for the values the schema declares for
    the region's class; others are left out (the config has no place for them)."""
    class_name = region["value"][schema.result_type][0]
    out = []
    for attribute in schema.attributes.for_class(class_name):
        if attribute.name not in attributes:
            continue
        try:
            value = attribute.parse(attributes[attribute.name])
        except ValueError:
            continue
        result: dict[str, Any] = {
            "id": region["id"],
            "type": "choices",
            "from_name": choices_name(attribute),
            "to_name": schema.to_name,
            "original_width": region["original_width"],
            "original_height": region["original_height"],
            "image_rotation": 0,
            "value": {"choices": [value_name(value)]},
        }
        if scores and attribute.name in scores:
            result["score"] = round(float(scores[attribute.name]), 4)
        out.append(result)
    return out


def _segmentation_rle(segmentation: Any, width: int, height: int) -> Rle:
    if isinstance(segmentation, list):  # COCO polygons
        return masklib.from_polygons([list(map(float, p)) for p in segmentation], height, width)
    return masklib.normalise(segmentation)


def make_task(
    image_ref: str,
    width: int,
    height: int,
    schema: LabelSchema,
    *,
    detections: Sequence[Any] | None = None,
    model_version: str = "",
    annotations: Sequence[Mapping[str, Any]] | None = None,
    data: Mapping[str, Any] | None = None,
    simplify: float = DEFAULT_SIMPLIFY,
    ignore_regions: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """A Label Studio task: `data` (the image reference under schema.value, plus `data`),
    `predictions` (one, from `detections`, when given) and `annotations` (one, from `annotations`,
    when given), ready for Label Studio's import API or a tasks file."""
    task: dict[str, Any] = {"data": {schema.value: image_ref, **dict(data or {})}}
    if detections is not None:
        if not model_version:
            raise ValueError("make_task: detections need a model_version")
        task["predictions"] = [
            prediction(detections, width, height, schema, model_version, image_ref, simplify)
        ]
    if annotations is not None:
        task["annotations"] = [
            annotation(annotations, width, height, schema, image_ref, simplify, ignore_regions)
        ]
    return task


def config_path_for(tasks_path: Path) -> Path:
    """Where the labelling config is written beside a tasks file: tasks.json -> tasks.label_config.xml."""
    tasks_path = Path(tasks_path)
    return tasks_path.with_name(tasks_path.stem + CONFIG_SUFFIX)


def write_tasks(path: Path, tasks: Sequence[Mapping[str, Any]], schema: LabelSchema) -> tuple[Path, Path]:
    """Write a tasks file (a JSON list, Label Studio's import format) and its labelling config beside it."""
    path = Path(path)
    config = config_path_for(path)
    atomic_write_bytes(config, schema.config_xml().encode("utf-8"))
    atomic_write_bytes(path, (json.dumps(list(tasks), indent=1) + "\n").encode("utf-8"))
    return path, config


def read_tasks(path: Path) -> list[dict[str, Any]]:
    """A Label Studio tasks file (a list of tasks, or one task) as a list, or a DataError."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise DataError(f"{path}: no such tasks file; check the path") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a JSON tasks file ({exc})") from exc
    tasks = [data] if isinstance(data, dict) else data
    if not isinstance(tasks, list) or not all(
        isinstance(t, dict) and isinstance(t.get("data"), dict) for t in tasks
    ):
        raise DataError(f"{path}: not a Label Studio tasks file (a list of objects with a 'data' field)")
    return tasks


# ------------------------------------------------------------------------ reading results back


@dataclass
class Region:
    """One labelled object read back from Label Studio: class, COCO RLE mask, score (predictions)."""

    class_name: str
    mask: Rle
    score: float | None = None
    width: int = 0
    height: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    polygon: list[float] | None = None  # polygon regions: flat [x0, y0, ...] in pixels, as drawn
    attributes: dict[str, str] = field(default_factory=dict)  # per-region choices: name -> value name


def turned_corners(x: float, y: float, w: float, h: float, degrees: float) -> list[tuple[float, float]]:
    """The corners (in drawing order) of a w x h box at (x, y), in pixels, that Label Studio turned
    `degrees` clockwise about its top-left corner."""
    turn = math.radians(degrees)
    cos, sin = math.cos(turn), math.sin(turn)
    return [(x + dx * cos - dy * sin, y + dx * sin + dy * cos) for dx, dy in ((0, 0), (w, 0), (w, h), (0, h))]


def result_ignore_regions(
    results: Sequence[Mapping[str, Any]], prompts: set[str] = frozenset()
) -> list[Region]:
    """Rectangles of plain RectangleLabels tags (not the smart tools named in `prompts`) as ignore
    regions: the rectangle's mask (turned as drawn; Label Studio turns it about its top-left corner)."""
    regions = []
    for result in results:
        value = result.get("value") or {}
        labels = value.get("rectanglelabels") or []
        if str(result.get("type", "")).lower() != "rectanglelabels" or not labels:
            continue
        if result.get("from_name") in prompts:
            continue
        width, height = photo_size(result)
        try:
            x, y, w, h = (float(value[k]) for k in ("x", "y", "width", "height"))
            turn = float(value.get("rotation") or 0)
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"region {result.get('id')}: unreadable rectanglelabels ({exc})") from exc
        corners = turned_corners(x * width / 100, y * height / 100, w * width / 100, h * height / 100, turn)
        rle = masklib.from_polygons([[v for point in corners for v in point]], height, width)
        if masklib.area(rle) == 0:
            continue
        regions.append(Region(str(labels[0]), rle, None, width, height, extra={"iscrowd": 1}))
    return regions


def result_regions(results: Sequence[Mapping[str, Any]]) -> list[Region]:
    """Polygon and brush results (of an annotation or a prediction) as masks, in their order.

    Per-region choices named <class>__<attribute> (attributes) go into their region's `attributes`
    (an answer left from a class the region had before under its full name, never over its own);
    results of other kinds (rectangles, other choices, relations) are skipped; a result without its
    image size or with an unreadable region raises a DataError naming the region.
    """
    chosen: dict[str, dict[str, str]] = {}  # region id -> choices name -> value name
    for result in results:
        if str(result.get("type", "")).lower() != "choices":
            continue
        picked = (result.get("value") or {}).get("choices") or []
        if ATTRIBUTE_SEPARATOR in str(result.get("from_name", "")) and picked and result.get("id"):
            chosen.setdefault(str(result["id"]), {})[str(result["from_name"])] = str(picked[0])
    regions = []
    for result in results:
        kind = str(result.get("type", "")).lower()
        if kind not in _RESULT_TYPES.values():
            continue
        value = result.get("value") or {}
        labels = value.get(kind) or []
        if not labels:
            continue
        width, height = photo_size(result)
        polygon = None
        try:
            if kind == "polygonlabels":
                if len(value.get("points") or []) < 3:
                    continue
                rle = points_to_rle(value["points"], width, height)
                polygon = points_to_pixels(value["points"], width, height)
            else:
                rle = masklib.encode(brush_to_mask(value["rle"], width, height))
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"region {result.get('id')}: unreadable {kind} ({exc})") from exc
        if masklib.area(rle) == 0:
            continue
        attributes = _region_attributes(chosen.get(str(result.get("id")), {}), str(labels[0]))
        regions.append(
            Region(
                str(labels[0]),
                rle,
                result.get("score"),
                width,
                height,
                polygon=polygon,
                attributes=attributes,
            )
        )
    return regions


def _region_attributes(choices: Mapping[str, str], class_name: str) -> dict[str, str]:
    """The answers to the region's own class's questions (<class>__<attribute>) by attribute name.
    One left from another class, before the region was relabelled, is no answer about this object:
    it keeps its full name, so it overwrites none of them and ingest lists it as unknown."""
    prefix = f"{class_name}{ATTRIBUTE_SEPARATOR}"
    return {
        name[len(prefix) :] if name.startswith(prefix) and name != prefix else name: value
        for name, value in choices.items()
    }
