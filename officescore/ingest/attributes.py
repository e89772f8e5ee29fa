"""Reading an annotation's attributes the way labelling tools write them, checked against the schema.

Forms read (one annotation at a time):
- CVAT "COCO 1.0": `"attributes": {"occluded": false, "armrests": true}`; CVAT's own keys
  (`occluded`, `rotation`, `track_id`, `keyframe`) are not attributes of the class and are skipped.
- Label Studio through `label pull`, Roboflow and most other tools: the same `attributes` dict.
- A list of `{"name": ..., "value": ...}` pairs (Hasty / V7 style).
An attribute the schema does not declare for the class, or a value it does not allow, is a listed
problem and dropped (never fatal); a declared attribute without a usable value gets the schema's
default and is marked unlabelled, so the model never trains on it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from officescore.attributes import TOOL_KEYS, AttributeSchema, Value, value_name

ProblemSink = Callable[[str, str, str], None]  # (kind, what, action)


def raw_attributes(ann: dict[str, Any]) -> dict[str, Any]:
    """The tool's attributes as a dict (empty when it wrote none), CVAT's own keys left out."""
    raw = ann.get("attributes")
    if isinstance(raw, list):  # [{"name": ..., "value": ...}]
        pairs = {}
        for item in raw:
            if isinstance(item, dict) and isinstance(item.get("name", item.get("key")), str):
                pairs[item.get("name", item.get("key"))] = item.get("value")
        raw = pairs
    if not isinstance(raw, dict):
        return {}
    return {str(k): v for k, v in raw.items() if k not in TOOL_KEYS}


def read_attributes(
    ann: dict[str, Any], class_name: str, schema: AttributeSchema, problem: ProblemSink
) -> tuple[dict[str, Value], list[str]]:
    """(value per declared attribute of the class, names of those left unlabelled = at default)."""
    declared = {a.name: a for a in schema.for_class(class_name)}
    values: dict[str, Value] = {}
    for name, raw in raw_attributes(ann).items():
        attribute = declared.get(name)
        if attribute is None:
            known = ", ".join(declared) or "none"
            what = f"attribute {name!r:.30} is not declared for {class_name} (declared: {known})"
            problem("attribute_unknown", what, "dropped")
            continue
        if raw is None or raw == "":
            continue  # the tool's way of saying "not set"
        try:
            values[name] = attribute.parse(raw)
        except ValueError as exc:
            default = value_name(attribute.default)
            problem(
                "attribute_value", f"{class_name}.{name}: {exc}", f"dropped; unlabelled (default {default})"
            )
    unlabelled = [name for name in declared if name not in values]
    for name in unlabelled:
        values[name] = declared[name].default
    return {name: values[name] for name in declared}, unlabelled
