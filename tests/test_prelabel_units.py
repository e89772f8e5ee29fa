"""prelabel's COCO file without a model: a stand-in's detections as the file CVAT, Roboflow and
ingest read (ids, categories, boxes of what is written). With a model: test_prelabel.py."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from labelmodels import EdgePredictor, edge_model, write_photos

from officescore import masks as masklib
from officescore.attributes import AttributeSchema
from officescore.errors import BadImageError, ConfigError
from officescore.infer import Detection, ImageResult
from officescore.label.predict import LoadedPredictor
from officescore.label.prelabel import check_options, coco_file, prelabel
from officescore.label.sources import ImageSource


def test_coco_ids_start_at_1_and_a_polygons_box_is_the_polygons(tmp_path: Path) -> None:
    """A desk in two parts: its polygon is the larger part's outline (as in Label Studio), so its box
    and area are that part's, not the whole mask's; images and categories count from 1 (COCO's
    convention; 0 is background to many tools); each detection keeps its score."""
    mask = np.zeros((96, 128), np.uint8)
    mask[10:50, 10:60] = 1  # the larger part: 50 x 40
    mask[80:90, 100:120] = 1  # a small part the polygon leaves out
    desk = Detection("chair", 0.8765, [10.0, 10.0, 120.0, 90.0], masklib.encode(mask), 0.2)
    good = [(ImageSource(tmp_path / "a.jpg", "0" * 64), "a.jpg", ImageResult("a.jpg", 128, 96, [desk]))]
    coco = coco_file(good, edge_model(("desk", "chair")), "polygon")
    assert [c["id"] for c in coco["categories"]] == [1, 2]
    assert [im["id"] for im in coco["images"]] == [1]
    (label,) = coco["annotations"]
    assert (label["id"], label["image_id"], label["category_id"], label["score"]) == (1, 1, 2, 0.8765)
    assert label["bbox"] == pytest.approx([10, 10, 50, 40], abs=0.5)
    assert label["area"] == pytest.approx(50 * 40, rel=0.02)


def test_out_may_be_named_in_capitals(tmp_path: Path) -> None:
    check_options("coco", "polygon", tmp_path / "PRELABEL.JSON")
    with pytest.raises(ConfigError, match="give a .json file name"):
        check_options("coco", "polygon", tmp_path / "prelabel.txt")


class StandingDesks(EdgePredictor):
    """A model with its own attribute head (desks: standing or not) that finds standing desks."""

    def __init__(self) -> None:
        super().__init__(("desk",))
        self.attributes = AttributeSchema.from_dict(
            {"desk": {"standing": {"kind": "yesno", "default": False}}}
        )

    def predict(self, paths: Sequence[Path], **kwargs: object) -> list[ImageResult]:
        results = super().predict(paths, **kwargs)
        for detection in (d for r in results for d in r.detections):
            detection.attributes = {"standing": True}
        return results


def test_labelstudio_tasks_ask_the_models_own_attributes_and_count_regions_not_choices(
    tmp_path: Path,
) -> None:
    """The config asks what the model's attribute head predicts (not the packaged schema's classes),
    the prediction carries its values, and the count said is of regions, not of their choices."""
    photos = write_photos(tmp_path / "photos", n=1)
    loaded = LoadedPredictor(StandingDesks(), "standing", "standing-00000000")
    result = prelabel(photos, loaded, tmp_path / "tasks.json", fmt="labelstudio")
    (task,) = json.loads((tmp_path / "tasks.json").read_text())
    kinds = [r["type"] for r in task["predictions"][0]["result"]]
    assert kinds.count("choices") == kinds.count("polygonlabels") == result.detections > 0
    assert 'name="desk__standing"' in result.config.read_text()


class ReadsNothing(EdgePredictor):
    def predict(self, paths: Sequence[Path], **kwargs: object) -> list[ImageResult]:
        return [ImageResult(str(p), error=f"{Path(p).name}: unreadable") for p in paths]


def test_no_photo_read_names_the_first_and_counts_the_rest(tmp_path: Path) -> None:
    photos = write_photos(tmp_path / "photos", n=3)
    loaded = LoadedPredictor(ReadsNothing(), "none", "none-00000000")
    with pytest.raises(BadImageError, match=r"none of the 3 photo\(s\).*scene_0.jpg: unreadable; and 2 more"):
        prelabel(photos, loaded, tmp_path / "out.json")
    assert not (tmp_path / "out.json").exists()
