"""officescore ingest: round trip, broken exports, tool styles, path escapes, split guarantees."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from exports import CLASSES, make_export, write_export

from officescore import masks
from officescore.ingest import ingest_export


def _load(folder: Path, split: str) -> dict[str, Any]:
    return json.loads((folder / f"{split}.json").read_text())


def test_clean_round_trip(tmp_path: Path) -> None:
    coco = make_export(tmp_path, n_images=10)
    export = write_export(tmp_path, coco)
    out = tmp_path / "dataset"
    result = ingest_export(export, out=out, seed=3)

    assert result.problems == []
    assert result.classes == list(CLASSES)
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["format"] == "officescore-dataset" and meta["version"] == 1
    assert meta["classes"] == list(CLASSES)
    assert (out / meta["source"]["export"]).resolve() == export.resolve()
    assert meta["category_map"] == {"1": 1, "2": 2, "3": 3}
    assert meta["seed"] == 3 and meta["val_fraction"] == 0.2

    train, val = _load(out, "train"), _load(out, "val")
    assert len(train["images"]) + len(val["images"]) == 10
    assert len(val["images"]) == 2
    assert [c["id"] for c in train["categories"]] == [1, 2, 3]
    ann_ids = [a["id"] for a in train["annotations"] + val["annotations"]]
    assert sorted(ann_ids) == list(range(1, len(coco["annotations"]) + 1))
    image_ids = [im["id"] for im in train["images"] + val["images"]]
    assert sorted(image_ids) == list(range(1, 11))

    originals = {im["file_name"]: im for im in coco["images"]}
    by_source = {(a["image_id"], a["category_id"]): a for a in coco["annotations"]}
    for split in (train, val):
        id_to_source = {im["id"]: originals[im["original_file_name"]] for im in split["images"]}
        for image in split["images"]:
            assert image["file_name"].startswith("images/")
            assert (out / image["file_name"]).is_file()
        for ann in split["annotations"]:
            assert isinstance(ann["segmentation"]["counts"], str)
            assert ann["area"] == masks.area(ann["segmentation"])
            assert ann["bbox"] == masks.bbox(ann["segmentation"])
            assert ann["iscrowd"] == 0
            source = by_source[(id_to_source[ann["image_id"]]["id"], ann["category_id"])]
            src_image = id_to_source[ann["image_id"]]
            seg = source["segmentation"]
            expected = (
                masks.from_polygons(seg, src_image["height"], src_image["width"])
                if isinstance(seg, list)
                else seg
            )
            assert np.array_equal(masks.decode(ann["segmentation"]), masks.decode(expected))
