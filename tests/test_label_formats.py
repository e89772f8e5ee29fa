"""Label Studio formats without a server: labelling config, regions, tasks, reading results back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from labelmodels import edge_masks, polygon_region

from officescore import DEFAULT_CLASSES
from officescore import masks as masklib
from officescore.errors import DataError
from officescore.infer import Detection
from officescore.label import formats, regions
from officescore.label.client import Project
from officescore.label.formats import LabelSchema
from officescore.sample import render_scene


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum()) / float((a | b).sum())


def test_config_lists_the_classes_and_reads_back() -> None:
    for kind, tag in (("polygon", "<PolygonLabels"), ("brush", "<BrushLabels")):
        schema = LabelSchema(DEFAULT_CLASSES, kind)
        xml = schema.config_xml()
        assert tag in xml and 'value="$image"' in xml
        assert [line.split('"')[1] for line in xml.splitlines() if "<Label " in line] == list(DEFAULT_CLASSES)
        assert LabelSchema.from_config(xml) == schema
    reviewed = LabelSchema(("desk",), header="review")  # a review's "what to check" above the photo
    assert LabelSchema.from_config(reviewed.config_xml()) == reviewed
    # A config written by hand, with other tag names: the names results must use come from it. Its
    # Header is fixed words, as in Label Studio's templates, not a task key every task must hold.
    custom = LabelSchema.from_config(
        '<View><Header value="Outline the desks"/><Image name="photo" value="$img"/>'
        '<PolygonLabels name="objects" toName="photo"><Label value="desk"/><Label value="lamp"/>'
        "</PolygonLabels></View>"
    )
    assert (custom.from_name, custom.to_name, custom.value, custom.classes, custom.header) == (
        "objects",
        "photo",
        "img",
        ("desk", "lamp"),
        None,
    )


def test_unusable_configs_say_why() -> None:
    with pytest.raises(DataError, match="no PolygonLabels or BrushLabels"):
        LabelSchema.from_config(
            '<View><Image name="image" value="$image"/><Choices name="c" toName="image"/></View>'
        )
    with pytest.raises(DataError, match="not valid XML"):
        LabelSchema.from_config("<View><Image")
    with pytest.raises(DataError, match="mask kind 'ellipse'"):
        LabelSchema(("desk",), "ellipse")
    with pytest.raises(DataError, match="no classes"):
        LabelSchema((), "polygon")


def test_polygon_outline_is_on_pixel_edges() -> None:
    square = np.zeros((20, 30), np.uint8)
    square[5:15, 10:20] = 1  # pixels 10..19 x 5..14: edges at 10 and 20, 5 and 15
    assert sorted(regions.mask_outline(square)) == [(10.0, 5.0), (10.0, 15.0), (20.0, 5.0), (20.0, 15.0)]
    dot = np.zeros((5, 5), np.uint8)
    dot[2, 3] = 1
    assert sorted(regions.mask_outline(dot)) == [(3.0, 2.0), (3.0, 3.0), (4.0, 2.0), (4.0, 3.0)]
    assert regions.mask_outline(np.zeros((4, 4), np.uint8)) == []


def _round_trip(mask: np.ndarray) -> np.ndarray:
    height, width = mask.shape
    return masklib.decode(regions.points_to_rle(regions.mask_to_points(mask, width, height), width, height))


def test_tiny_shapes_keep_every_pixel_through_a_polygon() -> None:
    """Three pixels in an L (a contour of three corners) and a one-pixel-wide L of 4 + 4: simplifying
    either by a pixel would cut a corner off, so the exact outline is kept."""
    corner = np.zeros((6, 6), np.uint8)
    corner[2, 2] = corner[2, 3] = corner[3, 2] = 1
    thin = np.zeros((12, 12), np.uint8)
    thin[2:6, 2] = 1
    thin[5, 2:6] = 1
    for mask in (corner, thin):
        assert np.array_equal(_round_trip(mask), mask)


@pytest.mark.parametrize("line_first", [True, False])
def test_a_line_outweighs_a_dot_though_neither_has_an_area(line_first: bool) -> None:
    """Two parts of no centre-line area, a 6-pixel line and one pixel: the polygon is the line's,
    whichever part OpenCV lists first."""
    mask = np.zeros((10, 10), np.uint8)
    line_row, dot_row = (6, 1) if line_first else (1, 6)
    mask[line_row, 2:8] = 1
    mask[dot_row, 1 if line_first else 6] = 1
    line = np.zeros_like(mask)
    line[line_row, 2:8] = 1
    assert np.array_equal(_round_trip(mask), line)


def _one_part(mask: np.ndarray) -> bool:
    """One piece without holes: what a Label Studio polygon can hold."""
    import cv2

    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    return len(contours) == 1


def test_polygons_follow_real_shapes() -> None:
    """Every one-piece object of 20 synthetic scenes: outline -> percent points -> mask, IoU >= 0.9."""
    ious, points = [], []
    for seed in range(20):
        scene = render_scene(seed, size=256)
        for inst in scene.instances:
            if not _one_part(inst.mask):
                continue
            pts = regions.mask_to_points(inst.mask, 256, 256)
            assert all(0.0 <= v <= 100.0 for p in pts for v in p)
            back = masklib.decode(regions.points_to_rle(pts, 256, 256))
            ious.append(iou(back, inst.mask.astype(bool)))
            points.append(len(pts))
    assert len(ious) > 50
    assert min(ious) >= 0.9, sorted(ious)[:5]
    assert float(np.mean(ious)) >= 0.98
    assert max(points) < 120  # simplified: a labeller drags a few dozen points, not a staircase


def test_brush_masks_round_trip_exactly_through_label_studios_rle() -> None:
    scene = render_scene(3, size=96)
    for inst in scene.instances:
        rle = regions.mask_to_brush(inst.mask)
        assert all(isinstance(v, int) and 0 <= v < 256 for v in rle)
        assert np.array_equal(regions.brush_to_mask(rle, 96, 96), inst.mask)
    with pytest.raises(ValueError, match="not 10x10x4"):
        regions.brush_to_mask(regions.mask_to_brush(scene.instances[0].mask), 10, 10)


W, H = 96, 128  # not square: a width/height mix-up anywhere shows


def _detections() -> tuple[list[Detection], list]:
    """One-piece objects of several scenes that lie in the left 96 columns, as if on one 96x128 photo."""
    insts = []
    for seed in range(8):
        for inst in render_scene(seed, size=H).instances:
            if inst.polygons is not None and _one_part(inst.mask) and not inst.mask[:, W:].any():
                inst.mask = np.ascontiguousarray(inst.mask[:, :W])
                insts.append(inst)
    dets = [
        Detection(i.category, 0.5 + 0.05 * n, [0, 0, 1, 1], masklib.encode(i.mask), 0.1)
        for n, i in enumerate(insts)
    ]
    return dets, insts


@pytest.mark.parametrize("kind", ["polygon", "brush"])
def test_task_with_prediction_and_annotation_reads_back(kind: str) -> None:
    dets, insts = _detections()
    schema = LabelSchema(DEFAULT_CLASSES, kind)
    labels = [{"category": i.category, "segmentation": i.polygons} for i in insts]  # COCO polygons
    task = formats.make_task(
        "/data/local-files/?d=a.jpg",
        W,
        H,
        schema,
        detections=dets,
        model_version="best-12345678",
        annotations=labels,
        data={"sha256": "ab" * 32, "license": "cc0"},
    )
    assert task["data"] == {"image": "/data/local-files/?d=a.jpg", "sha256": "ab" * 32, "license": "cc0"}
    pred = task["predictions"][0]
    assert pred["model_version"] == "best-12345678"
    assert pred["score"] == pytest.approx(np.mean([d.score for d in dets]), abs=1e-4)
    results = pred["result"]
    assert len(results) == len(dets)
    assert {r["type"] for r in results} == {f"{kind}labels"}
    assert all(r["from_name"] == "label" and r["to_name"] == "image" for r in results)
    assert len(results) >= 8
    assert all((r["original_width"], r["original_height"]) == (W, H) for r in results)
    assert len({r["id"] for r in results + task["annotations"][0]["result"]}) == 2 * len(dets)
    # Label Studio's own validator (label-studio-sdk's LabelInterface) accepts them for this config.
    from label_studio_sdk.label_interface import LabelInterface

    interface = LabelInterface(schema.config_xml())
    assert interface.validate_prediction(pred, return_errors=True) == []
    assert interface.validate_annotation(task["annotations"][0]) is True
    assert (
        task["annotations"][0]["ground_truth"] is False
    )  # a label to check, not Label Studio's starred truth
    broken = {
        **pred,
        "result": [{**pred["result"][0], "value": {**pred["result"][0]["value"], f"{kind}labels": ["sofa"]}}],
    }
    assert interface.validate_prediction(broken, return_errors=True)  # the validator does look
    # Deterministic: the same inputs give the same task, ids included.
    again = formats.make_task(
        "/data/local-files/?d=a.jpg", W, H, schema, detections=dets, model_version="best-12345678"
    )
    assert json.dumps(again["predictions"]) == json.dumps(task["predictions"])

    for group in (pred["result"], task["annotations"][0]["result"]):
        back = formats.result_regions(group)
        assert [r.class_name for r in back] == [i.category for i in insts]
        for region, inst in zip(back, insts, strict=True):
            got = masklib.decode(region.mask).astype(bool)
            assert iou(got, inst.mask.astype(bool)) >= (0.999 if kind == "brush" else 0.9)
            assert (region.polygon is None) == (kind == "brush")
            if region.polygon is not None:  # the pixel COCO polygon pull writes: the mask's shape
                drawn = masklib.decode(masklib.from_polygons([region.polygon], H, W)).astype(bool)
                assert iou(drawn, got) >= 0.99
    assert [r.score for r in formats.result_regions(pred["result"])] == [round(d.score, 4) for d in dets]


def test_result_regions_skip_other_kinds_and_name_broken_regions() -> None:
    other = [
        {"type": "rectanglelabels", "value": {"rectanglelabels": ["desk"]}},
        {"type": "choices", "value": {}},
    ]
    assert formats.result_regions(other) == []
    no_size = [
        {
            "id": "r1",
            "type": "polygonlabels",
            "value": {"points": [[0, 0], [1, 0], [1, 1]], "polygonlabels": ["desk"]},
        }
    ]
    with pytest.raises(DataError, match="region r1: no original_width"):
        formats.result_regions(no_size)
    bad_brush = [
        {
            "id": "b7",
            "type": "brushlabels",
            "original_width": 10,
            "original_height": 10,
            "value": {"rle": regions.mask_to_brush(np.ones((4, 4), np.uint8)), "brushlabels": ["desk"]},
        }
    ]
    with pytest.raises(DataError, match="region b7: unreadable brushlabels"):
        formats.result_regions(bad_brush)


def test_a_region_size_given_as_text_or_a_float_is_read() -> None:
    """`original_width: "128.0"` (an annotation imported from a script) crashed pull with int()'s
    "invalid literal" ValueError, a traceback instead of the region."""
    points = {"points": [[10, 10], [50, 10], [50, 50]], "polygonlabels": ["desk"]}
    region = {
        "id": "p1",
        "type": "polygonlabels",
        "original_width": 128,
        "original_height": 96,
        "value": points,
    }
    (expected,) = formats.result_regions([region])
    for width, height in (("128.0", "96"), (128.0, 96.0), (127.99999, "96.00001")):  # a script's float sums
        (got,) = formats.result_regions([{**region, "original_width": width, "original_height": height}])
        assert (got.width, got.height, got.mask) == (expected.width, expected.height, expected.mask)
    for bad in ("wide", "Infinity", float("nan")):  # JSON's Infinity: int() of it overflowed
        with pytest.raises(DataError, match="region p1: no original_width"):
            formats.result_regions([{**region, "original_width": bad}])


def test_ignore_regions_round_trip_on_a_photo_that_is_not_square() -> None:
    """Review tasks draw ignore regions as rectangles in percent of the photo's width and of its
    height, and label pull reads them back: on a 200 x 100 photo each side scales by its own. A
    rectangle that covers no pixel (drawn 0 wide) is no ignore region."""
    schema = LabelSchema(("desk",), ignore_boxes=True)
    bbox = [20.0, 10.0, 60.0, 50.0]
    drawn = formats.annotation(
        [], 200, 100, schema, "a.jpg", ignore_regions=[{"category": "desk", "bbox": bbox}]
    )
    (region,) = formats.result_ignore_regions(drawn["result"])
    assert (region.class_name, region.width, region.height, region.extra) == (
        "desk",
        200,
        100,
        {"iscrowd": 1},
    )
    assert masklib.bbox(region.mask) == pytest.approx(bbox, abs=1)
    flat = [{**r, "value": {**r["value"], "width": 0}} for r in drawn["result"]]
    assert formats.result_ignore_regions(flat) == []


def test_mask_of_another_size_is_refused() -> None:
    with pytest.raises(DataError, match="a desk mask is 10x10, not 20x20"):
        formats.mask_result(
            masklib.encode(np.ones((10, 10), np.uint8)), "desk", 20, 20, LabelSchema(("desk",))
        )


def test_tasks_file_and_config_written_together(tmp_path: Path) -> None:
    schema = LabelSchema(("desk", "chair"))
    tasks = [formats.make_task("https://example.org/a.jpg", 10, 10, schema)]
    path, config = formats.write_tasks(tmp_path / "tasks.json", tasks, schema)
    assert config == tmp_path / "tasks.label_config.xml"
    assert LabelSchema.from_config(config.read_text()) == schema
    assert formats.read_tasks(path) == tasks
    (tmp_path / "bad.json").write_text('{"images": []}')
    with pytest.raises(DataError, match="not a Label Studio tasks file"):
        formats.read_tasks(tmp_path / "bad.json")
    with pytest.raises(DataError, match="no such tasks file"):
        formats.read_tasks(tmp_path / "missing.json")
    (tmp_path / "broken.json").write_text("[{")
    with pytest.raises(DataError, match="not a JSON tasks file"):
        formats.read_tasks(tmp_path / "broken.json")


@pytest.mark.parametrize("kind", ["polygon", "brush"])
def test_suggestions_on_every_edge_stay_inside_the_photo(kind: str) -> None:
    """Label Studio calls a point past 100 % invalid, and ingest reports it outside the image."""
    from label_studio_sdk.label_interface import LabelInterface

    width, height = 192, 144
    masks = edge_masks(width, height)
    for name, mask in masks.items():
        outline = regions.mask_outline(mask)
        assert all(0 <= x <= width and 0 <= y <= height for x, y in outline), (name, outline)
        back = masklib.decode(
            regions.points_to_rle(regions.mask_to_points(mask, width, height), width, height)
        )
        assert iou(back.astype(bool), mask.astype(bool)) >= 0.85, name  # cut to the photo, nothing lost
    schema = LabelSchema(DEFAULT_CLASSES, kind)
    dets = [Detection("desk", 0.9, [0, 0, 1, 1], masklib.encode(m), 0.1) for m in masks.values()]
    pred = formats.prediction(dets, width, height, schema, "edge-1")
    assert len(pred["result"]) == len(masks)
    for result in pred["result"]:
        if kind == "polygon":
            assert all(0.0 <= v <= 100.0 for point in result["value"]["points"] for v in point)
        else:  # Label Studio's RLE of exactly the photo's size
            assert regions.brush_to_mask(result["value"]["rle"], width, height).shape == (height, width)
    assert LabelInterface(schema.config_xml()).validate_prediction(pred, return_errors=True) == []


def test_an_older_projects_config_gets_the_ignore_tag_once_with_the_tasks_labels_too() -> None:
    """`label push` of review tasks into a project made before ignore regions: the tag is added
    labelling the project's classes and those the tasks' rectangles use; a config that has it stays."""
    from xml.etree import ElementTree

    old = LabelSchema(("desk", "chair")).config_xml()
    added = formats.with_ignore_tag(old, ["lamp", "desk"])
    assert LabelSchema.from_config(added).ignore_boxes
    tags = [
        t
        for t in ElementTree.fromstring(added).iter("RectangleLabels")
        if t.get("name") == formats.IGNORE_TAG
    ]
    assert [[label.get("value") for label in tag.iter("Label")] for tag in tags] == [
        ["desk", "chair", "lamp"]
    ]
    assert formats.with_ignore_tag(added, ["sofa"]) == added


def test_only_rectangles_of_the_ignore_tag_ask_push_to_add_the_tag() -> None:
    """Review tasks with polygons only leave an older project's config alone (None); an ignore
    rectangle asks for the tag, with its label."""
    from officescore.label.push import _tag_labels

    polygon = polygon_region([[10, 10], [50, 10], [50, 50]], "chair", 128, 96)
    rectangle = {
        "type": "rectanglelabels",
        "from_name": formats.IGNORE_TAG,
        "to_name": "image",
        "value": {"x": 1, "y": 1, "width": 5, "height": 5, "rectanglelabels": ["lamp"]},
    }
    assert _tag_labels([{"predictions": [{"result": [polygon]}]}], formats.IGNORE_TAG) is None
    tasks = [{"predictions": [{"result": [polygon]}], "annotations": [{"result": [rectangle]}]}]
    assert _tag_labels(tasks, formats.IGNORE_TAG) == ["lamp"]


def test_a_hand_made_yes_no_choice_is_yes_no_in_either_order() -> None:
    """A project whose owner typed the choices yes, then no, has a yes/no attribute, not a choice
    of two words whose default is "yes"."""
    for order in (("yes", "no"), ("no", "yes")):
        choices = "".join(f'<Choice value="{v}"/>' for v in order)
        (armrests,) = LabelSchema.from_config(
            '<View><Image name="image" value="$image"/><PolygonLabels name="label" toName="image">'
            '<Label value="chair"/></PolygonLabels><Choices name="chair__armrests" toName="image" '
            f'perRegion="true">{choices}</Choices></View>'
        ).attributes.for_class("chair")
        assert (armrests.kind, armrests.default) == ("yesno", False)


def test_a_photo_with_no_detections_gets_an_empty_prediction() -> None:
    """Label Studio shows the model looked at the photo (and which version) though it found nothing."""
    task = formats.make_task("a.jpg", 10, 10, LabelSchema(("desk",)), detections=[], model_version="v1")
    assert task["predictions"] == [{"model_version": "v1", "score": 0.0, "result": []}]


def test_a_tasks_file_of_one_task_is_read_as_a_list_of_one(tmp_path: Path) -> None:
    """Label Studio imports a file holding one task object; so does push --review."""
    task = formats.make_task("https://example.org/a.jpg", 10, 10, LabelSchema(("desk",)))
    (tmp_path / "one.json").write_text(json.dumps(task))
    assert formats.read_tasks(tmp_path / "one.json") == [task]


def test_click_to_mask_tools_added_later_bring_a_brush_tag_only_where_the_project_has_none() -> None:
    """The backend answers a click with a brush mask: a polygon project gets a BrushLabels tag for it,
    a brush project answers into its own."""
    for kind, answer_tags in (("polygon", 1), ("brush", 0)):
        xml = formats.with_smart_tools(LabelSchema(("desk",), kind).config_xml())
        brush_tags = xml.count("<BrushLabels ")
        assert brush_tags == answer_tags + (kind == "brush"), kind
        assert LabelSchema.from_config(xml).interactive


HAND_MADE_SMART_BOX = """<View>
  <Image name="image" value="$image"/>
  <PolygonLabels name="label" toName="image"><Label value="desk"/></PolygonLabels>
  <RectangleLabels name="sbox" toName="image" smartOnly="true"><Label value="desk"/></RectangleLabels>
</View>"""


def test_a_hand_made_smart_box_without_a_click_tool_is_named_and_gets_one() -> None:
    """A hand-made config with a smart box but no KeyPointLabels: Label Studio sends the backend no
    clicks. It counted as having the tools, so `label push --interactive` added nothing and said it
    had them, and `label backend` said nothing. The missing tool is named and --interactive adds
    it alone (and the brush tag the answers go into); the user's box stays the only box."""
    from officescore.cli.label import missing_tools_line

    assert formats.missing_smart_tools(HAND_MADE_SMART_BOX) == ['click tool (KeyPointLabels smart="true")']
    said = missing_tools_line(
        Project(1, "hand", LabelSchema.from_config(HAND_MADE_SMART_BOX), HAND_MADE_SMART_BOX)
    )
    assert said == (
        "project 'hand' has a smart tool but no click tool (KeyPointLabels smart=\"true\"): "
        "`officescore label push --project 'hand' --interactive` adds it"
    )
    added = formats.with_smart_tools(HAND_MADE_SMART_BOX)
    assert formats.missing_smart_tools(added) == [] and formats.with_smart_tools(added) == added
    assert added.count("<KeyPointLabels ") == 1 and added.count("<RectangleLabels ") == 1
    assert added.count("<BrushLabels ") == 1 and '<RectangleLabels name="sbox"' in added
    plain = LabelSchema(("desk",)).config_xml()
    assert len(formats.missing_smart_tools(plain)) == 2
    assert "has no click-to-mask tools yet" in str(
        missing_tools_line(Project(1, "p", LabelSchema(("desk",)), plain))
    )
    tooled = LabelSchema(("desk",), interactive=True)
    assert missing_tools_line(Project(1, "p", tooled, tooled.config_xml())) is None


@pytest.mark.parametrize("turned", [90, 180, 270])
def test_a_region_saved_with_the_photo_turned_in_the_editor_reads_as_unturned(turned: int) -> None:
    """`image_rotation` is the angle the labeller turned the view to (rotateControl, in hand-made
    configs): Label Studio's editor turns only the view, and keeps every region's percentages and
    original_width/height in the photo as stored (Image.rotate() changes no region). So pull reads
    them as if unturned, as Label Studio's own converter does; turning them would misplace them."""
    polygon = polygon_region([[10, 20], [60, 20], [60, 90], [10, 90]], "desk", 128, 96)
    where = {"x": 5.0, "y": 10.0, "width": 20.0, "height": 30.0, "rotation": 0, "rectanglelabels": ["desk"]}
    box = {**polygon, "id": "b", "type": "rectanglelabels", "from_name": "ignore", "value": where}
    plain = formats.result_regions([polygon]) + formats.result_ignore_regions([box])
    seen = [{**r, "image_rotation": turned} for r in (polygon, box)]
    again = formats.result_regions(seen[:1]) + formats.result_ignore_regions(seen[1:])
    assert [(r.class_name, r.width, r.height, r.mask) for r in again] == [
        (r.class_name, r.width, r.height, r.mask) for r in plain
    ]
    assert masklib.bbox(plain[0].mask) == pytest.approx([13, 19, 64, 68], abs=1)


@pytest.mark.parametrize("attribute", ["smart", "smartOnly"])
def test_a_smart_tool_is_known_by_either_attribute_in_any_case(attribute: str) -> None:
    """Hand-made configs write smartOnly as well as smart, "True" as well as "true": each is a tool a
    labeller points with ("false" is none)."""
    xml = HAND_MADE_SMART_BOX.replace('smartOnly="true"', f'{attribute}="True"')
    assert formats.missing_smart_tools(xml) == ['click tool (KeyPointLabels smart="true")']
    off = HAND_MADE_SMART_BOX.replace('smartOnly="true"', f'{attribute}="false"')
    assert len(formats.missing_smart_tools(off)) == 2


def test_the_smart_box_tool_is_no_ignore_tag() -> None:
    """A click-to-mask project has a RectangleLabels tag of its own (the smart box a labeller points
    with): it is not the ignore tag, so a review's ignore rectangles still get their tag added
    (Label Studio drops a result whose tag its config lacks when the task is saved)."""
    xml = LabelSchema(("desk",), interactive=True).config_xml()
    assert not LabelSchema.from_config(xml).ignore_boxes
    assert LabelSchema.from_config(formats.with_ignore_tag(xml)).ignore_boxes


def test_a_region_without_a_pixel_is_no_region() -> None:
    """A brush region whose strokes were all erased (Label Studio keeps it, empty) and a polygon
    clicked along a line hold no object: no region of area 0 for pull to write."""
    erased = {
        "id": "b1",
        "type": "brushlabels",
        "original_width": 8,
        "original_height": 6,
        "value": {
            "format": "rle",
            "rle": regions.mask_to_brush(np.zeros((6, 8), np.uint8)),
            "brushlabels": ["desk"],
        },
    }
    line = polygon_region([[10, 10], [20, 20], [30, 30]], "chair", 128, 96)
    assert formats.result_regions([erased, line]) == []


def test_hand_made_choices_that_are_no_region_question_leave_the_others_alone() -> None:
    """A per-region choice of one value (nothing to choose) and a task-level yes/no named like an
    attribute are no attribute questions: left out, while the project's real question is kept
    (a one-value choice made the whole schema invalid, so every attribute was dropped)."""
    yes_no = '<Choice value="no"/><Choice value="yes"/></Choices>'
    config = (
        '<View><Image name="image" value="$image"/><PolygonLabels name="label" toName="image">'
        '<Label value="chair"/></PolygonLabels>'
        f'<Choices name="chair__armrests" toName="image" perRegion="true">{yes_no}'
        '<Choices name="chair__colour" toName="image" perRegion="true"><Choice value="red"/></Choices>'
        f'<Choices name="chair__wheels" toName="image">{yes_no}</View>'
    )
    found = LabelSchema.from_config(config).attributes.attributes
    assert [(a.class_name, a.name) for a in found] == [("chair", "armrests")]
