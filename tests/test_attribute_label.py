"""Attributes in the label loop (issue 24): Label Studio per-region choices in the config, the
predictions and annotations, read back by pull; CVAT-style attributes in prelabel's COCO; and a
real Label Studio round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from officescore import masks as masklib
from officescore.attributes import load_schema
from officescore.infer.detection import Detection
from officescore.label.formats import LabelSchema, make_task, result_regions

CLASSES = ("desk", "chair", "lamp", "plant")


def _square(x: int, y: int, side: int = 30, size: int = 100) -> dict:
    mask = np.zeros((size, size), dtype=np.uint8)
    mask[y : y + side, x : x + side] = 1
    return masklib.encode(mask)


def test_config_has_per_region_choices_and_reads_back() -> None:
    schema = LabelSchema(CLASSES, attributes=load_schema())
    xml = schema.config_xml()
    assert 'name="chair__armrests"' in xml and 'perRegion="true"' in xml and 'whenLabelValue="chair"' in xml
    back = LabelSchema.from_config(xml)
    assert back.attributes == load_schema()  # kinds, values, defaults (the first value) and hints
    assert not LabelSchema.from_config(LabelSchema(CLASSES).config_xml()).attributes  # none asked, none there
    only_desk = LabelSchema(("desk",), attributes=load_schema())
    assert "Choices" not in only_desk.config_xml()  # attributes of classes the project lacks are left out


def _shown(xml: str, choices: str, region_tag: str, label: str) -> bool:
    """Whether Label Studio shows per-region Choices `choices` for a selected region of `label` drawn
    with the labels tag `region_tag` (its VisibilityMixin: "region-selected" is false when
    whenTagName is set and is not the region's tag, else the label must be one of whenLabelValue)."""
    from xml.etree import ElementTree

    (element,) = [e for e in ElementTree.fromstring(xml).iter("Choices") if e.get("name") == choices]
    tag = element.get("whenTagName")
    return (not tag or tag == region_tag) and label in element.get("whenLabelValue", "").split(",")


@pytest.mark.parametrize("mask", ["polygon", "brush"])
def test_a_clicked_region_shows_its_attribute_choices(mask: str) -> None:
    """With click to mask, a clicked chair is a brush region of the answer tag "mask"; the armrests
    question named whenTagName="label" (the polygon tool), so Label Studio never showed it there."""
    from officescore.label.formats import with_smart_tools

    plain = LabelSchema(CLASSES, mask, attributes=load_schema()).config_xml()
    assert _shown(plain, "chair__armrests", "label", "chair")
    # A config edited in the UI: a BrushLabels tag of the owner's, where the answers then go.
    edited = plain.replace(
        "</View>", '<BrushLabels name="paint" toName="image"><Label value="chair"/></BrushLabels></View>'
    )
    interactive = LabelSchema(CLASSES, mask, attributes=load_schema(), interactive=True).config_xml()
    for xml in (interactive, with_smart_tools(plain), with_smart_tools(edited)):
        for tag in ("label", "mask", "paint"):
            assert _shown(xml, "chair__armrests", tag, "chair") and not _shown(
                xml, "chair__armrests", tag, "desk"
            )
        assert LabelSchema.from_config(xml).attributes == load_schema()
        assert with_smart_tools(xml) == xml  # nothing left to add
    # Tools added by an earlier version (whenTagName kept): `label push --interactive` fixes them.
    old = with_smart_tools(plain).replace(
        'visibleWhen="region-selected"', 'visibleWhen="region-selected" whenTagName="label"'
    )
    assert not _shown(old, "chair__armrests", "mask", "chair") and _shown(
        with_smart_tools(old), "chair__armrests", "mask", "chair"
    )


@pytest.mark.parametrize("mask", ["polygon", "brush"])
def test_predictions_and_annotations_carry_attribute_choices(mask: str) -> None:
    schema = LabelSchema(CLASSES, mask, attributes=load_schema())
    detections = [
        Detection("chair", 0.9, [0, 0, 30, 30], _square(0, 0), 0.09, {"armrests": True}, {"armrests": 0.8}),
        Detection("lamp", 0.8, [40, 40, 70, 70], _square(40, 40), 0.09, {"kind": "floor"}, {"kind": 0.7}),
        Detection("desk", 0.7, [60, 0, 90, 30], _square(60, 0), 0.09),
    ]
    labels = [
        {"category": "chair", "segmentation": _square(0, 0), "attributes": {"armrests": False}},
        {"category": "plant", "segmentation": _square(40, 40), "attributes": {"size": "large", "wheels": 1}},
        {"category": "desk", "segmentation": _square(60, 0)},
    ]
    task = make_task("a.jpg", 100, 100, schema, detections=detections, model_version="m", annotations=labels)
    predicted = task["predictions"][0]
    choices = [r for r in predicted["result"] if r["type"] == "choices"]
    assert [(c["from_name"], c["value"]["choices"], c["score"]) for c in choices] == [
        ("chair__armrests", ["yes"], 0.8),
        ("lamp__kind", ["floor"], 0.7),
    ]
    assert predicted["score"] == pytest.approx(0.8)  # the regions' mean, choices not counted
    regions = result_regions(predicted["result"])
    assert [(r.class_name, r.attributes) for r in regions] == [
        ("chair", {"armrests": "yes"}),
        ("lamp", {"kind": "floor"}),
        ("desk", {}),
    ]
    labelled = result_regions(task["annotations"][0]["result"])
    assert [(r.class_name, r.attributes) for r in labelled] == [
        ("chair", {"armrests": "no"}),
        ("plant", {"size": "large"}),  # an attribute the schema lacks has no place in the config
        ("desk", {}),
    ]


def test_a_relabelled_region_keeps_only_its_own_class_answers() -> None:
    """A region drawn as a chair (armrests answered, material leather), then relabelled desk (material
    wood): the chair's answers stay in the result under its id. They answered nothing about a desk;
    read by attribute name alone, the chair's material overwrote the desk's. Now ingest lists them."""
    points = [[10, 10], [50, 10], [50, 50], [10, 50]]
    base = {"original_width": 100, "original_height": 100, "id": "r1", "to_name": "image"}

    def choice(name: str, value: str) -> dict:
        return {**base, "from_name": name, "type": "choices", "value": {"points": points, "choices": [value]}}

    results = [
        {
            **base,
            "from_name": "label",
            "type": "polygonlabels",
            "value": {"points": points, "polygonlabels": ["desk"]},
        },
        choice("desk__material", "wood"),
        choice("chair__material", "leather"),
        choice("chair__armrests", "yes"),
        choice("occluded", "yes"),  # a per-region question of no attribute (a project made by hand): skipped
        {**base, "from_name": "desk__legs", "type": "choices", "value": {"choices": []}},  # none picked
    ]
    (region,) = result_regions(results)
    assert (region.class_name, region.attributes) == (
        "desk",
        {"material": "wood", "chair__material": "leather", "chair__armrests": "yes"},
    )
    from officescore.attributes import AttributeSchema
    from officescore.ingest.attributes import read_attributes

    desk = AttributeSchema.from_dict(
        {"desk": {"material": {"kind": "choice", "values": ["wood", "glass"], "default": "wood"}}}
    )
    problems: list[tuple[str, str, str]] = []
    values, _ = read_attributes(
        {"attributes": region.attributes}, "desk", desk, lambda *p: problems.append(p)
    )
    assert values == {"material": "wood"}  # the chair's answers listed, not taken for the desk's
    assert [(kind, what.split(" is ")[0]) for kind, what, _ in problems] == [
        ("attribute_unknown", "attribute 'chair__material'"),
        ("attribute_unknown", "attribute 'chair__armrests'"),
    ]


def test_pull_writes_region_attributes_that_ingest_reads() -> None:
    from officescore.label.pull import _coco_annotations

    schema = LabelSchema(CLASSES, attributes=load_schema())
    labels = [{"category": "chair", "segmentation": _square(0, 0), "attributes": {"armrests": True}}]
    task = make_task("a.jpg", 100, 100, schema, annotations=labels)
    regions = result_regions(task["annotations"][0]["result"])
    (ann,) = _coco_annotations(regions, {"id": 1, "width": 100, "height": 100}, {"chair": 2}, 0)
    assert ann["attributes"] == {"armrests": "yes"}

    from officescore.ingest.attributes import read_attributes

    problems: list[tuple[str, str, str]] = []
    values, unlabelled = read_attributes(ann, "chair", load_schema(), lambda *p: problems.append(p))
    assert (values, unlabelled, problems) == ({"armrests": True}, [], [])


def test_prelabel_coco_writes_cvat_style_attributes() -> None:
    from types import SimpleNamespace

    from officescore.label.prelabel import coco_file

    result = SimpleNamespace(
        width=100,
        height=100,
        detections=[
            Detection("chair", 0.9, [0, 0, 30, 30], _square(0, 0), 0.09, {"armrests": True}),
            Detection("desk", 0.8, [40, 40, 70, 70], _square(40, 40), 0.09),
        ],
    )
    image = SimpleNamespace(sha256="0" * 64, provenance={})
    loaded = SimpleNamespace(classes=list(CLASSES), version="m")
    doc = coco_file([(image, "a.jpg", result)], loaded, "brush")  # type: ignore[list-item]
    assert [a.get("attributes") for a in doc["annotations"]] == [{"armrests": True}, None]


def test_label_studio_round_trip_keeps_every_attribute(labelstudio, tmp_path: Path) -> None:  # noqa: ANN001
    """Sample scenes' attributes as per-region choices in a real Label Studio project, back through
    `label pull` and `ingest`: every value arrives."""
    from officescore import DEFAULT_CLASSES
    from officescore.ingest import ingest_export
    from officescore.label.client import LabelStudio
    from officescore.label.pull import pull_project
    from officescore.sample import write_sample

    write_sample(tmp_path / "sample", n_images=6, seed=7, size=128)
    truth = json.loads((tmp_path / "sample" / "annotations.json").read_text())
    names = {c["id"]: c["name"] for c in truth["categories"]}
    client = LabelStudio.connect(labelstudio.url, labelstudio.api_key)
    wanted = LabelSchema(DEFAULT_CLASSES, "brush", attributes=load_schema())  # brush: every mask kept
    project = client.create_project("attributes round trip", wanted)
    assert project.schema.attributes == load_schema()  # Label Studio took the choices and gives them back
    expected: dict[str, list[tuple[str, dict]]] = {}
    tasks = []
    for image in truth["images"]:
        path = tmp_path / "sample" / image["file_name"]
        ref = client.upload_file(project.id, path.name, path.read_bytes())
        anns = [a for a in truth["annotations"] if a["image_id"] == image["id"]]
        labels = [
            {
                "category": names[a["category_id"]],
                "segmentation": a["segmentation"],
                "attributes": {k: v for k, v in a["attributes"].items() if k != "occluded"},
            }
            for a in anns
        ]
        expected[path.name] = [(lab["category"], lab["attributes"]) for lab in labels]
        tasks.append(make_task(ref, 128, 128, project.schema, annotations=labels, data={"name": path.name}))
    client.import_tasks(project.id, tasks)

    out = tmp_path / "pulled"
    pull_project(client, "attributes round trip", out)
    pulled = json.loads((out / "annotations.json").read_text())
    pulled_names = {c["id"]: c["name"] for c in pulled["categories"]}
    schema = load_schema()
    labelled = 0
    for image in pulled["images"]:
        anns = [a for a in pulled["annotations"] if a["image_id"] == image["id"]]
        got = []
        for a in anns:
            class_name = pulled_names[a["category_id"]]
            values = {
                k: schema.get(class_name, k).parse(v)  # type: ignore[union-attr]
                for k, v in (a.get("attributes") or {}).items()
            }
            got.append((class_name, values))
            labelled += len(values)
        assert got == expected[Path(image["file_name"]).name.split("-", 1)[-1]]
    assert labelled == sum(len(v) for e in expected.values() for _, v in e) >= 3

    ingest_export(out / "annotations.json", out=tmp_path / "dataset")
    written = [
        a
        for split in ("train", "val")
        for a in json.loads((tmp_path / "dataset" / f"{split}.json").read_text())["annotations"]
        if "attributes" in a
    ]
    assert sum(len(a["attributes"]) - len(a["unlabelled"]) for a in written) == labelled


def test_push_writes_predicted_attributes_and_pull_reads_them_back(labelstudio, tmp_path: Path) -> None:  # noqa: ANN001
    """`label push` with a model whose head is sure every chair has armrests: the project's config has
    the choices, each chair prediction a "yes"; accepted as is, `label pull` writes armrests yes."""
    from scoremodels import write_scenes
    from test_attribute_model import _attribute_checkpoint

    from officescore.label.client import LabelStudio
    from officescore.label.predict import load_predictor
    from officescore.label.pull import pull_project
    from officescore.label.push import push_images

    client = LabelStudio.connect(labelstudio.url, labelstudio.api_key)
    photos = write_scenes(tmp_path / "photos", n=2)
    model = _attribute_checkpoint(tmp_path / "arms.pt", armrests=True)
    loaded = load_predictor(str(model), "cpu", 0.5, None, "fp32", [])
    pushed = push_images(client, "attribute push", [str(p) for p in photos], loaded, conf=0.5)
    project = client.project("attribute push")
    assert project.schema.attributes == load_schema()  # the model's schema became the config's choices
    tasks = client.export_tasks(pushed.project_id)
    assert len(tasks) == 2
    chairs = 0
    for task in tasks:
        (prediction,) = client.sdk.predictions.list(task=task["id"])
        result = list(prediction.result or [])
        regions = result_regions(result)
        assert regions and all(r.attributes == {"armrests": "yes"} for r in regions)
        chairs += len(regions)
        client.sdk.annotations.create(id=task["id"], result=result)  # the labeller accepts it
    pulled = pull_project(client, "attribute push", tmp_path / "pulled")
    assert pulled.attributes == load_schema()  # what `label pull --ingest` checks the values with
    coco = json.loads((tmp_path / "pulled" / "annotations.json").read_text())
    assert len(coco["annotations"]) == chairs
    assert all(a["attributes"] == {"armrests": "yes"} for a in coco["annotations"])


def test_push_interactive_fixes_the_choices_of_tools_an_earlier_version_added(
    labelstudio, tmp_path: Path
) -> None:  # noqa: ANN001
    """A project whose click tools an earlier version added (its attribute choices shown for the
    polygon tool only): `label push --interactive` again makes them show for clicked regions."""
    from scoremodels import write_scenes

    from officescore.label.client import LabelStudio
    from officescore.label.formats import with_smart_tools
    from officescore.label.push import push_images

    client = LabelStudio.connect(labelstudio.url, labelstudio.api_key)
    plain = LabelSchema(CLASSES, "polygon", attributes=load_schema())
    project = client.create_project("earlier tools", plain)
    old = with_smart_tools(plain.config_xml()).replace(
        'visibleWhen="region-selected"', 'visibleWhen="region-selected" whenTagName="label"'
    )
    client.set_project(project.id, label_config=old)
    assert not _shown(client.project("earlier tools").config, "chair__armrests", "mask", "chair")
    photos = write_scenes(tmp_path / "photos", n=1)
    push_images(client, "earlier tools", [str(p) for p in photos], classes=CLASSES, interactive=True)
    assert _shown(client.project("earlier tools").config, "chair__armrests", "mask", "chair")


def test_review_tasks_pushed_into_a_project_with_other_tag_names_keep_choices_and_ignore_boxes() -> None:
    """label push --review into an existing project whose mask tag is named otherwise: its regions
    move to that tag, but attribute choices and ignore rectangles keep their own tags (all of them had
    been re-pointed at the mask tag, where Label Studio cannot show them)."""
    from officescore.label.formats import IGNORE_TAG
    from officescore.label.push import _renamed

    written = LabelSchema(("chair",), from_name="label", to_name="image", ignore_boxes=True)
    project = LabelSchema(("chair",), from_name="outline", to_name="photo", ignore_boxes=True)
    results = [
        {"from_name": "label", "to_name": "image", "type": "polygonlabels"},
        {"from_name": "chair__armrests", "to_name": "image", "type": "choices"},
        {"from_name": IGNORE_TAG, "to_name": "image", "type": "rectanglelabels"},
    ]
    task = _renamed({"data": {}, "annotations": [{"result": results}]}, written, project)
    moved = [(r["from_name"], r["to_name"]) for r in task["annotations"][0]["result"]]
    assert moved == [("outline", "photo"), ("chair__armrests", "photo"), (IGNORE_TAG, "photo")]


class _Project:
    """`push_tasks_file`'s calls of an existing project whose tags are named otherwise."""

    def __init__(self, schema: LabelSchema) -> None:
        self.schema = schema
        self.imported: list[dict] = []

    def find_project(self, title: str) -> object:
        from officescore.label.client import Project

        return Project(3, title, self.schema, self.schema.config_xml())

    def export_tasks(self, project_id: int) -> list[dict]:
        return []

    def import_tasks(self, project_id: int, tasks: list[dict]) -> None:
        self.imported += tasks


def test_a_tasks_file_pushed_into_a_project_with_other_tag_names_lands_on_its_tags(tmp_path: Path) -> None:
    """label push --review of a file written with tags label/image into a project whose tags are
    outline/photo: the imported polygon points at outline and photo, as the project shows them."""
    from officescore.label.formats import config_path_for
    from officescore.label.push import push_tasks_file

    written = LabelSchema(("chair",))
    tasks_file = tmp_path / "review.json"
    region = {"from_name": "label", "to_name": "image", "type": "polygonlabels",
              "value": {"points": [[10, 10], [40, 10], [40, 40]], "polygonlabels": ["chair"]}}  # fmt: skip
    task = {"data": {"image": "https://photos.example/office.jpg"}, "annotations": [{"result": [region]}]}
    tasks_file.write_text(json.dumps([task]))
    config_path_for(tasks_file).write_text(written.config_xml())
    client = _Project(LabelSchema(("chair",), from_name="outline", to_name="photo"))
    push_tasks_file(client, "offices", tasks_file)  # type: ignore[arg-type]
    result = client.imported[0]["annotations"][0]["result"][0]
    assert (result["from_name"], result["to_name"]) == ("outline", "photo")
