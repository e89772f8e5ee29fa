"""Click to mask by hand, piece by piece and fast: what the labeller's request says (prompt), the
region the clicker may change (clicker.editable and _exclude), the heads' box and click arithmetic,
the feature cache, what the backend's click service sends back, and the mask <-> region outlines.
The whole path on a trained model is in test_label_interactive.py."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from labelmodels import ServedPhotos, one_torch_thread, solid_checkpoint, two_squares  # noqa: F401 (fixture)

from officescore.errors import DataError
from officescore.label.formats import LabelSchema
from officescore.label.interactive import Clicker, FeatureCache, parse_context
from officescore.label.interactive.clicker import Reply, editable
from officescore.label.interactive.prompt import Click
from officescore.label.interactive.service import ClickService, wants
from officescore.label.predict import load_predictor
from officescore.label.regions import brush_to_mask

CLASSES = ("desk", "chair", "monitor")


def keypoint(x: float, y: float, name: str, width: int, height: int, positive: bool = True) -> dict[str, Any]:
    """A smart keypoint as Label Studio 1.23 sends it (x, y in pixels here, percent in the request)."""
    return {
        "type": "keypointlabels",
        "value": {"x": x * 100 / width, "y": y * 100 / height, "width": 0.6, "keypointlabels": [name]},
        "is_positive": positive,
        "original_width": width,
        "original_height": height,
    }


def rectangle(box: Sequence[float], name: str, width: int, height: int) -> dict[str, Any]:
    x0, y0, x1, y1 = box
    value = {
        "x": x0 * 100 / width,
        "y": y0 * 100 / height,
        "width": (x1 - x0) * 100 / width,
        "height": (y1 - y0) * 100 / height,
        "rectanglelabels": [name],
    }
    return {"type": "rectanglelabels", "value": value, "original_width": width, "original_height": height}


def iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    return float((a & b).sum()) / float((a | b).sum())


# ---------------------------------------------------------------------------- what a labeller sent


def test_clicks_on_the_photos_edges_are_on_it_and_an_empty_box_is_refused() -> None:
    """A click at 0 % or 100 % is on the photo; a box of no width or no height marks nothing."""
    prompt = parse_context({"result": [keypoint(0, 0, "desk", 128, 96), keypoint(128, 96, "desk", 128, 96)]})
    assert prompt.clicks == [Click(0, 0), Click(128, 96)]
    for flat in ((40, 30, 40, 60), (40, 30, 80, 30)):
        with pytest.raises(DataError, match="outside the image or is empty"):
            parse_context({"result": [rectangle(flat, "desk", 128, 96)]})


def test_a_box_or_click_that_is_not_a_finite_number_is_refused() -> None:
    """A hand-made request with "nan" in a box: min(nan, 100) is nan, which passed every comparison."""
    for key in ("x", "y", "width", "height"):
        box = rectangle((10, 10, 50, 50), "desk", 128, 96)
        box["value"][key] = "nan"
        with pytest.raises(DataError, match=f"rectanglelabels region's {key} is not a finite number"):
            parse_context({"result": [box]})
    click = keypoint(10, 10, "desk", 128, 96)
    click["value"]["x"] = float("inf")
    with pytest.raises(DataError, match="x is not a finite number"):
        parse_context({"result": [click]})


def test_a_photo_with_no_height_is_refused_whatever_its_width() -> None:
    for height in (0, "0", None):
        with pytest.raises(DataError, match="no original_width / original_height"):
            parse_context({"result": [{**keypoint(10, 10, "desk", 128, 96), "original_height": height}]})


# ---------------------------------------------------------------------------- the clicker


def test_a_misspelt_polish_is_refused() -> None:
    with pytest.raises(ValueError, match="polish 'edge': one of edges, always, never"):
        Clicker(None, polish="edge")


def test_a_model_whose_heads_cannot_run_alone_leaves_clicks_to_grabcut_and_says_so() -> None:
    """A TorchScript export (not an eager Mask R-CNN): GrabCut answers, and the answer's version is
    "grabcut", not the model's (it did not draw the mask)."""
    script = SimpleNamespace(
        predictor=SimpleNamespace(model=object(), label_names=[None, "desk"]),
        version="run-best-1234",
        classes=["desk"],
    )
    clicker = Clicker(script)
    assert clicker.heads is None and clicker.version == "grabcut"
    assert (
        clicker.describe()
        == "clicks and boxes answered by GrabCut (run-best-1234 cannot run its heads alone)"
    )
    rgb, left, _ = two_squares()
    reply = clicker.segment(rgb, [rectangle((15, 25, 65, 75), "desk", 128, 96)])
    assert reply.method == "grabcut" and reply.note is None and iou(reply.mask, left) > 0.9


def test_a_photo_turned_by_its_exif_orientation_is_clicked_as_shown(tmp_path: Path) -> None:
    """Label Studio shows a photo turned as its EXIF orientation says, and the box is drawn on that:
    the photo read must be turned the same way (stored on its side, orientation 6)."""
    from PIL import Image

    rgb, left, _ = two_squares()
    stored = Image.fromarray(rgb).transpose(Image.Transpose.ROTATE_90)  # 96 wide, 128 high on disk
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned 90 degrees clockwise: 128 x 96 again
    stored.save(tmp_path / "turned.png", exif=exif)
    reply = Clicker(None).segment(tmp_path / "turned.png", [rectangle((15, 25, 65, 75), "desk", 128, 96)])
    assert reply.mask.shape == (96, 128) and iou(reply.mask, left) > 0.9


def test_clicks_and_boxes_are_scaled_to_the_photo_read_on_each_axis() -> None:
    """Label Studio says the photo is 256 x 96; the file read is 128 x 96: x halves, y stays."""
    rgb, left, _ = two_squares()
    wide = np.repeat(left, 2, axis=1)  # the red square at Label Studio's size
    boxed = Clicker(None).segment(rgb, [rectangle((30, 25, 130, 75), "desk", 256, 96)])
    assert boxed.mask.shape == (96, 256) and iou(boxed.mask, wide) > 0.9
    clicked = Clicker(None).segment(rgb, [keypoint(80, 50, "desk", 256, 96)])
    assert clicked.mask[50, 80] == 1 and iou(clicked.mask, wide) > 0.8


def test_the_edge_band_is_on_both_sides_of_the_edge_and_scales_with_the_longer_side() -> None:
    """A 300 x 100 px object: the band reaches round(0.02 x 300) = 6 px each side of its edge (the
    7 x 7 px squares of a 13 px kernel), so columns 44..55 of its left edge at x = 50; no click, no
    region around one."""
    mask = np.zeros((200, 400), np.uint8)
    mask[50:150, 50:350] = 1
    free, near = editable(mask, (50, 50, 350, 150), [])
    assert not near.any()
    row = free[100]
    assert not row[43] and row[44:56].all() and not row[56]
    assert not free[100, 200]  # the middle of the object stays the model's


# ---------------------------------------------------------------------------- the heads' arithmetic


def test_a_box_holds_points_on_its_edges_and_only_points_inside_all_four() -> None:
    import torch

    from officescore.label.interactive.heads import _holding

    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 20.0, 20.0]])
    corner = torch.tensor([[10.0, 10.0]])
    assert _holding(boxes, corner).tolist() == [True, True]  # the far corner is on the box
    below = torch.tensor([[3.0, 15.0]])  # left of the second box, below the first
    assert _holding(boxes, below).tolist() == [False, False]
    right = torch.tensor([[15.0, 3.0]])  # right of the first box, above the second
    assert _holding(boxes, right).tolist() == [False, False]
    both = torch.tensor([[6.0, 6.0], [12.0, 12.0]])  # every point must be inside
    assert _holding(boxes, both).tolist() == [False, True]


@pytest.mark.parametrize("width, height", [(61, 47), (4000, 3000)])
def test_a_click_reads_each_mask_where_the_pasted_mask_has_it(width: int, height: int) -> None:
    """`_at_clicks` reads every candidate at the clicks without pasting it at the photo's size: the
    values equal the pasted masks' at the click's pixel (row int(y), column int(x), the last one on
    the far edge) to float rounding, for boxes inside the photo and across its edges, the whole photo
    and a dot (candidates hold a click, so none lies wholly outside: torchvision's paste cannot take
    those), on a small photo and a 12 MP one (masks resized 100x)."""
    import torch

    from officescore.label.interactive.heads import _at_clicks, _pasted

    generator = torch.Generator().manual_seed(0)
    probs = torch.rand((6, 1, 28, 28), generator=generator)
    unit = torch.tensor(
        [
            [0.17, 0.12, 0.66, 0.66],
            [-0.13, -0.07, 0.33, 0.38],  # across the top-left corner
            [0.74, 0.64, 1.23, 1.28],  # across the bottom-right corner
            [0.0, 0.0, 1.0, 1.0],  # the whole photo
            [0.33, 0.43, 0.3341, 0.4341],  # a dot
            [0.064, 0.853, 0.964, 0.998],  # a thin strip along the bottom edge
        ]
    )
    boxes = unit * torch.tensor([width, height, width, height])
    columns, rows = np.linspace(0, width - 1, 23).astype(int), np.linspace(0, height - 1, 19).astype(int)
    clicks = [Click(x + 0.5, y + 0.5) for x in columns for y in rows]
    clicks += [
        Click(width, height),
        Click(0, 0),
        Click(width, 0, positive=False),
        Click(*boxes[4, :2].tolist()),
    ]
    pasted = _pasted(probs, boxes, width, height)
    expected = np.array(
        [[mask[min(int(c.y), height - 1), min(int(c.x), width - 1)] for c in clicks] for mask in pasted]
    )
    values = _at_clicks(probs, boxes, clicks, width, height)
    assert (expected > 0).sum() > 300 and (expected == 0).sum() > 300  # inside and outside boxes both met
    np.testing.assert_allclose(values, expected, rtol=0, atol=2e-6)
    assert ((values > 0) == (expected > 0)).all()


def test_a_click_agrees_with_a_mask_by_its_probability_there() -> None:
    from officescore.label.interactive.heads import _agreement

    clicks = [Click(4.5, 1.5), Click(0.5, 0.5, positive=False), Click(0.5, 3.5), Click(6, 4, positive=False)]
    values = np.array([0.9, 0.2, 0.5, 0.6], np.float32)  # 0.5 is not inside
    assert _agreement(values, clicks) == 2  # the first two agree, the last two do not


def test_a_clicks_distance_to_the_edge_is_the_whole_photos_read_in_a_window() -> None:
    """`_to_edge` transforms only a window round the click: up to `enough` it gives what the whole
    photo's distance transform gives there, beyond it at least `enough` (the reach is capped there)."""
    import cv2

    from officescore.label.interactive.clicker import _to_edge

    rng = np.random.default_rng(1)
    near = far = 0
    for _ in range(40):
        height, width = (int(v) for v in rng.integers(20, 200, 2))
        mask = np.zeros((height, width), np.uint8)
        for _ in range(int(rng.integers(1, 5))):
            centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
            axes = (int(rng.integers(2, 60)), int(rng.integers(2, 60)))
            cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
        for side in (mask, 1 - mask):
            whole = cv2.distanceTransform(side, cv2.DIST_L2, 3)
            ys, xs = np.nonzero(side)
            for k in rng.integers(0, len(xs), 10) if len(xs) else ():
                x, y, enough = int(xs[k]), int(ys[k]), float(rng.uniform(1, 40))
                found = _to_edge(side, x, y, enough)
                if whole[y, x] <= enough:
                    assert found == pytest.approx(float(whole[y, x]), rel=1e-6, abs=1e-5)
                    near += 1
                else:
                    assert found >= enough
                    far += 1
    assert near > 200 and far > 50  # both sides of `enough` were met


def test_a_clicks_distance_to_a_straight_edge_is_exact_as_far_as_enough() -> None:
    """k px right of an edge (x = 9 the last 0), a pixel is k + 1 straight 3x3 steps of 0.955 away:
    `_to_edge` gives that exactly up to `enough`, also far from the edge (a window as small as
    0.955 x enough held no 0 there beyond about 22 px), and at least `enough` beyond it."""
    from officescore.label.interactive.clicker import _to_edge

    region = np.ones((120, 200), np.uint8)
    region[:, :10] = 0
    for k in (0, 5, 20, 41, 60):
        exact = (k + 1) * 0.955
        for enough in (exact, 40.0):
            found = _to_edge(region, 10 + k, 60, enough)
            if exact <= enough:
                assert found == pytest.approx(exact, rel=1e-5), (k, enough)
            else:
                assert found >= enough, (k, enough)


def test_a_box_grown_for_missed_clicks_holds_them_with_a_margin() -> None:
    """A 20 x 10 px box: the margin is 0.05 x 20 + 2 = 3 px round each missed click."""
    from officescore.label.interactive.heads import _grown

    assert _grown([10, 10, 30, 20], [Click(50, 5)]) == pytest.approx([10, 2, 53, 20])
    assert _grown([10, 10, 30, 20], [Click(0, 40), Click(20, 15)]) == pytest.approx([-3, 10, 30, 43])


def test_the_feature_cache_forgets_the_photo_used_longest_ago() -> None:
    cache = FeatureCache(size=2)
    a, b, c = (("task", name) for name in "abc")
    cache.put(a, "features of a")  # type: ignore[arg-type]
    cache.put(b, "features of b")  # type: ignore[arg-type]
    assert cache.get(a) == "features of a"  # a is now the one used last
    cache.put(c, "features of c")  # type: ignore[arg-type]
    assert cache.get(b) is None and cache.get(a) == "features of a" and cache.get(c) == "features of c"
    cache.clear()
    assert cache.get(a) is None


# ---------------------------------------------------------------------------- the click service


def body_for(results: list[dict[str, Any]], ref: str = "a.png", tasks: int = 1) -> dict[str, Any]:
    return {
        "tasks": [{"id": 7 + n, "data": {"image": ref}} for n in range(tasks)],
        "label_config": LabelSchema(CLASSES, "polygon", interactive=True).config_xml(),
        "params": {"context": {"result": results}},
    }


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    from PIL import Image

    Image.fromarray(two_squares()[0]).save(tmp_path / "a.png")
    return tmp_path / "a.png"


def test_an_empty_context_is_no_interactive_request() -> None:
    """Suggestions are asked with no context or an empty one; only a click or box is interactive."""
    assert wants({"params": {"context": {"result": [keypoint(1, 1, "desk", 128, 96)]}}})
    for params in ({"context": {"result": []}}, {"context": {}}, {"context": None}, {}, None):
        assert not wants({"tasks": [], "params": params})


def test_an_interactive_request_about_two_tasks_is_refused(photo: Path) -> None:
    box = rectangle((15, 25, 65, 75), "desk", 128, 96)
    (answer,) = ClickService().answer(body_for([box], tasks=2), ServedPhotos(None, {"a.png": photo}))[
        "results"
    ]
    assert answer["result"] == [] and answer["error"] == "an interactive request carries exactly one task"


def test_a_task_photo_that_cannot_be_read_is_one_clear_error(photo: Path) -> None:
    box = rectangle((15, 25, 65, 75), "desk", 128, 96)
    backend = ServedPhotos(None, {"a.png": photo.parent / "gone.png"})
    (answer,) = ClickService().answer(body_for([box]), backend)["results"]
    assert answer["result"] == [] and answer["error"].startswith("task 7: cannot read its photo")


def test_an_empty_mask_is_no_region_and_says_what_to_do(photo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A mask left empty (resized to a tiny size Label Studio gave, say) is no region: the labeller
    reads why, not a silent nothing."""

    def empty(self: Clicker, *args: Any, **kwargs: Any) -> Reply:
        return Reply(np.zeros((96, 128), np.uint8), "desk", "grabcut")

    monkeypatch.setattr(Clicker, "segment", empty)
    box = rectangle((15, 25, 65, 75), "desk", 128, 96)
    (answer,) = ClickService().answer(body_for([box]), ServedPhotos(None, {"a.png": photo}))["results"]
    assert (
        answer["result"] == [] and answer["error"] == "the grabcut found no desk there; click on the object"
    )


def test_the_models_answer_carries_its_score_and_grabcuts_none(photo: Path, tmp_path: Path) -> None:
    """The solid model is sure of a desk in any box: the answer's score is its probability of the
    class (Label Studio shows it), GrabCut's is 0."""
    loaded = load_predictor(solid_checkpoint(tmp_path / "solid.pt", {"desk": 8.0}, CLASSES), "cpu", 0.3)
    box = rectangle((15, 25, 65, 75), "desk", 128, 96)
    reply = Clicker(loaded).segment(two_squares()[0], [box])
    assert reply.method == "model" and reply.score is not None and 0.9 < reply.score <= 1.0
    assert reply.score == round(reply.score, 4)
    (answer,) = ClickService().answer(body_for([box]), ServedPhotos(loaded, {"a.png": photo}))["results"]
    assert answer["score"] == reply.score and answer["model_version"] == loaded.version
    (answer,) = ClickService().answer(body_for([box]), ServedPhotos(None, {"a.png": photo}))["results"]
    assert answer["score"] == 0.0 and answer["model_version"] == "grabcut"
    assert iou(brush_to_mask(answer["result"][0]["value"]["rle"], 128, 96), two_squares()[1]) > 0.9


# ---------------------------------------------------------------------------- which clicks correct the model


@pytest.fixture(scope="module")
def ring(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A model whose mask is the rim of any box (the solid model's octagon turned inside out): a click
    in the middle of a box is outside its mask."""
    import torch

    path = solid_checkpoint(tmp_path_factory.mktemp("ring") / "ring.pt", {"desk": 8.0}, CLASSES)
    loaded = load_predictor(path, "cpu", 0.3)
    with torch.no_grad():
        logits = loaded.predictor.model.roi_heads.mask_predictor.mask_fcn_logits
        logits.weight.neg_()
        logits.bias.neg_()
    return loaded


BOX = rectangle((15, 25, 65, 75), "desk", 128, 96)  # around the red square
CENTRE = keypoint(40.5, 50.5, "desk", 128, 96)


def test_the_model_draws_a_rim_in_a_box(ring: Any) -> None:
    rim = Clicker(ring, polish="never").segment(two_squares()[0], [BOX])
    assert rim.method == "model" and rim.mask[27, 40] == 1 and rim.mask[50, 40] == 0


def test_a_first_click_the_models_mask_misses_redraws_the_region_around_it(ring: Any) -> None:
    """The click at the box's centre is 20 px inside the rim: GrabCut may redraw 3 x 20 px round it,
    capped at a quarter of the box (12.5 px), and fills that square of red, not only the click's
    own seed disc (13 px)."""
    reply = Clicker(ring).segment(two_squares()[0], [BOX, CENTRE])
    assert reply.method == "model" and reply.mask[38:63, 28:53].sum() > 0.95 * 25 * 25


def test_a_later_click_redraws_around_it_even_where_the_model_agrees(ring: Any) -> None:
    """The second click is on the rim (the model's mask holds it): the region round it (6 px, the
    least a click reaches) is still GrabCut's to redraw, and the click says it is the object."""
    second = keypoint(17.5, 50.5, "desk", 128, 96)
    reply = Clicker(ring).segment(two_squares()[0], [BOX, CENTRE, second])
    assert reply.mask[44:57, 11:24].all()


def test_polish_never_still_obeys_a_click_the_models_mask_misses(ring: Any) -> None:
    reply = Clicker(ring, polish="never").segment(two_squares()[0], [BOX, CENTRE])
    assert reply.method == "model" and reply.mask[50, 40] == 1


@pytest.mark.parametrize("with_model", [False, True])
def test_an_exclude_click_stays_out_when_a_later_click_lands_beside_it(
    with_model: bool, tmp_path: Path
) -> None:
    """GrabCut marks each click's seed disc in turn, so a "this too" click 2 px from an Alt-click
    paints over it; what is left of the mask near the Alt-click is then cut away after GrabCut."""
    loaded = load_predictor(solid_checkpoint(tmp_path / "solid.pt", {"desk": 8.0}, CLASSES), "cpu", 0.3)
    clicks = [
        keypoint(30.5, 50.5, "desk", 128, 96),
        keypoint(40.5, 50.5, "desk", 128, 96, positive=False),
        keypoint(42.5, 50.5, "desk", 128, 96),
    ]
    reply = Clicker(loaded if with_model else None).segment(two_squares()[0], [BOX, *clicks])
    assert reply.method == ("model" if with_model else "grabcut")
    assert reply.mask[50, 40] == 0 and reply.mask[50, 42] == 1


# ---------------------------------------------------------------------------- where a click may change it


def test_a_correcting_click_reaches_whole_pixels_round_it() -> None:
    """A box under 24 px: a click reaches MIN_REACH = 6 px, so round (20.5, 20.5) the pixels whose
    centres lie within 6 px on each axis, 14..26 both ways (13 x 13)."""
    _, near = editable(np.zeros((40, 40), np.uint8), (0, 0, 10, 10), [Click(20.5, 20.5)])
    ys, xs = np.nonzero(near)
    assert near.sum() == 13 * 13 and (xs.min(), xs.max(), ys.min(), ys.max()) == (14, 26, 14, 26)


def test_a_clicks_reach_is_measured_at_the_click_on_a_wide_photo() -> None:
    """A 200 x 40 px photo, the object its right half: a click 5.5 px inside it reaches about 3 x 5.5
    px, not as far as the left of the photo (x = 50)."""
    wide = np.zeros((40, 200), np.uint8)
    wide[:, 100:] = 1
    _, near = editable(wide, (0, 0, 1000, 1000), [Click(105.5, 20.5)])
    ys, xs = np.nonzero(near)
    assert 85 <= xs.min() <= 92 and 119 <= xs.max() <= 126 and not near[20, 50]


def _square() -> np.ndarray:
    mask = np.zeros((120, 120), dtype=np.uint8)
    mask[10:110, 10:110] = 1
    return mask


def test_a_box_centre_stands_in_only_when_no_click_adds() -> None:
    """A box, a positive click at the left (20, 60) and an Alt-click at (100, 60): the positive click
    alone decides which pixels are nearer to the Alt-click, so all it reaches goes (x 75..109, y
    35..84), not only those nearer to it than to the box's centre (60, 60) too."""
    from officescore.label.interactive.clicker import _exclude
    from officescore.label.interactive.prompt import Prompt

    prompt = Prompt("desk", 120, 120, [Click(20, 60), Click(100, 60, positive=False)], (10, 10, 110, 110))
    out = _exclude(_square(), prompt)
    assert int(_square().sum() - out.sum()) == 35 * 50 and out[60, 76] == 0


def test_a_pixel_as_near_to_both_clicks_stays() -> None:
    """Positive click at (60, 60), Alt-click at (100, 60): x = 80 is 20 px from each and stays."""
    from officescore.label.interactive.clicker import _exclude
    from officescore.label.interactive.prompt import Prompt

    out = _exclude(_square(), Prompt("desk", 120, 120, [Click(60, 60), Click(100, 60, positive=False)]))
    assert out[60, 80] == 1 and out[60, 81] == 0


def test_the_clicked_part_of_a_small_object_stays_inside_an_alt_clicks_reach() -> None:
    """An 8 x 8 px object, clicked at its left and Alt-clicked at its right: the Alt-click reaches
    all of it, but the part nearer to the positive click (x 50..53) is the object, not a scrap."""
    from officescore.label.interactive.clicker import _exclude
    from officescore.label.interactive.prompt import Prompt

    tiny = np.zeros((120, 120), np.uint8)
    tiny[50:58, 50:58] = 1
    out = _exclude(tiny, Prompt("desk", 120, 120, [Click(50.5, 54), Click(56, 54, positive=False)]))
    kept = np.zeros_like(tiny)
    kept[50:58, 50:54] = 1
    assert (out == kept).all()


# ---------------------------------------------------------------------------- the model's candidates


def _solid(path: Path, dx: float | None = None) -> Any:
    """The solid model (a filled octagon in any box, sure of a desk); with `dx`, its box head moves
    every desk box right by dx / 10 of the box's width."""
    import torch

    loaded = load_predictor(solid_checkpoint(path, {"desk": 8.0}, CLASSES), "cpu", 0.3)
    if dx is not None:
        with torch.no_grad():  # desk is label 1: its deltas are rows 4-7 (weights 10, 10, 5, 5)
            deltas = loaded.predictor.model.roi_heads.box_predictor.bbox_pred
            deltas.weight[4:8].zero_()
            deltas.bias[4:8] = torch.tensor([dx, 0.0, 0.0, 0.0])
    return loaded


def test_the_box_head_tightens_a_box_only_when_asked(tmp_path: Path) -> None:
    """A box head moving a 50 px box 5 px right (IoU 0.82 with the drawn one, above REFINE_OVERLAP):
    with refine the mask follows it, without refine it stays in the drawn box."""
    loaded = _solid(tmp_path / "shift.pt", dx=1.0)
    rgb = two_squares()[0]
    refined = Clicker(loaded, refine=True, polish="never").segment(rgb, [BOX]).mask
    drawn = Clicker(loaded, refine=False, polish="never").segment(rgb, [BOX]).mask
    assert np.nonzero(refined)[1].min() == np.nonzero(drawn)[1].min() + 5
    assert np.array_equal(np.roll(drawn, 5, axis=1), refined)


def test_a_box_with_a_click_keeps_the_drawn_box_when_the_head_moves_it_away(tmp_path: Path) -> None:
    """The drawn box and the box head's one are both candidates: a head moving the box onto the blue
    square loses to the drawn box, whose mask holds the click."""
    loaded = _solid(tmp_path / "moving.pt", dx=10.0)
    rgb, left, _ = two_squares()
    reply = Clicker(loaded).segment(rgb, [BOX, CENTRE])
    assert reply.method == "model" and iou(reply.mask, left) > 0.9


def test_an_exclude_click_away_from_the_object_does_not_stop_the_model(tmp_path: Path) -> None:
    """Proposals must hold the "this" clicks, not the "not this" ones (polish "never": every click
    picks the model's mask)."""
    loaded = _solid(tmp_path / "solid.pt")
    away = keypoint(120.5, 90.5, "desk", 128, 96, positive=False)
    reply = Clicker(loaded, polish="never").segment(two_squares()[0], [CENTRE, away])
    assert reply.method == "model" and reply.note is None and reply.mask[50, 40] == 1


def test_a_click_outside_the_box_grows_it_unless_that_agrees_with_no_more_clicks(tmp_path: Path) -> None:
    """A box x 15..65 and a click at x = 75.5 beyond it: the box is grown to hold it, 0.05 x 50 + 2 =
    4.5 px past it (x1 = 80). With an Alt-click at x = 68 (outside the drawn box's mask, inside the
    grown one's) both agree with one click: the drawn box stays."""
    import torch

    loaded = _solid(tmp_path / "solid.pt")
    with torch.no_grad():  # a fuller octagon (at half the blurred box, not 0.8): its edge 1-3 px inside
        loaded.predictor.model.roi_heads.mask_predictor.mask_fcn_logits.bias.fill_(-40.0 * 0.5)
    clicker = Clicker(loaded)
    rgb = two_squares()[0]
    features = clicker.heads.features(("v", "t", "photo"), rgb)
    label = loaded.predictor.label_names.index("desk")
    box = (15, 25, 65, 75)
    grown = clicker.heads.click(features, [Click(75.5, 50.5)], label, 128, 96, box)
    assert grown.box[2] == pytest.approx(80, abs=0.01) and grown.mask[50, 75] == 1
    tie = clicker.heads.click(
        features, [Click(75.5, 50.5), Click(68, 50, positive=False)], label, 128, 96, box
    )
    assert tie.box[2] <= 65.5 and tie.mask[50, 68] == 0
    # an Alt-click beyond the missed click is no click to grow for: the box grows to the missed click
    # alone (grown to hold the Alt-click as well, its mask held both and the drawn box stayed)
    beyond = clicker.heads.click(
        features, [Click(75.5, 50.5), Click(100.5, 50.5, positive=False)], label, 128, 96, box
    )
    assert beyond.box[2] == pytest.approx(80, abs=0.01) and beyond.mask[50, 75] == 1
    assert beyond.mask[50, 100] == 0


def test_the_candidate_agreeing_with_more_clicks_wins_over_a_likelier_one(tmp_path: Path) -> None:
    """A click on the red square and an Alt-click 8 px below it: the likeliest proposal's mask holds
    both, a slightly less likely one's only the first; agreeing with both clicks comes first."""
    loaded = _solid(tmp_path / "solid.pt")
    clicker = Clicker(loaded)
    rgb = two_squares()[0]
    features = clicker.heads.features(("v", "t", "photo"), rgb)
    label = loaded.predictor.label_names.index("desk")
    answer = clicker.heads.click(
        features, [Click(40.5, 50.5), Click(40.5, 58.5, positive=False)], label, 128, 96
    )
    assert answer is not None and answer.mask[50, 40] == 1 and answer.mask[58, 40] == 0


def test_an_alt_click_made_before_the_first_click_on_the_object_picks_nothing(tmp_path: Path) -> None:
    """An Alt-click first ("click on the object first", the answer says), then a click on the red
    square: the model's mask is picked by the click on the object. The Alt-click picked it, found
    no "this" click to hold, and the heads' IndexError left Label Studio without an answer."""
    loaded = _solid(tmp_path / "solid.pt")
    rgb, left, _ = two_squares()
    alt_first = [keypoint(80.5, 50.5, "desk", 128, 96, positive=False), CENTRE]
    reply = Clicker(loaded).segment(rgb, alt_first)
    assert reply.method == "model" and reply.note is None
    assert reply.mask[50, 40] == 1 and reply.mask[50, 80] == 0


def test_a_models_mask_grabcut_empties_is_answered_unpolished(
    photo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A thin mask (a barely trained model's bookshelf, 69 px in a 22 x 87 px box) lies all inside
    GrabCut's edge band, and GrabCut could take it all away: the labeller who drew a box got nothing
    and "the model found no bookshelf there; click on the object". The model's mask answers instead."""
    import officescore.label.interactive.clicker as clicker_module

    loaded = load_predictor(solid_checkpoint(tmp_path / "solid.pt", {"desk": 8.0}, CLASSES), "cpu", 0.3)
    unpolished = Clicker(loaded, polish="never").segment(two_squares()[0], [BOX])
    monkeypatch.setattr(
        clicker_module, "grabcut", lambda rgb, *args, **kwargs: np.zeros(rgb.shape[:2], np.uint8)
    )
    reply = Clicker(loaded).segment(two_squares()[0], [BOX])
    assert reply.method == "model" and unpolished.mask.any()
    assert np.array_equal(reply.mask, unpolished.mask)
