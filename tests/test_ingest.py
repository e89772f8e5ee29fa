"""officescore ingest: round trip, broken exports, tool styles, path escapes, split guarantees."""

from __future__ import annotations

import copy
import io
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import unicodedata
import zipfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from exports import (
    CLASSES,
    cvat_style,
    draw_scene,
    hasty_style,
    label_studio_style,
    make_export,
    roboflow_style,
    write_export,
)
from PIL import Image

from officescore import masks
from officescore.cli import main
from officescore.errors import DataError, UserError
from officescore.ingest import PHASH_THRESHOLD, ingest_export
from officescore.ingest import run as ingest
from officescore.ingest import write as ingest_write
from officescore.ingest.checks import ImageRecord, _check_rle
from officescore.ingest.conventions import Declared
from officescore.masks import rle_counts

Coco = dict[str, Any]


def _load(folder: Path, split: str) -> Coco:
    return json.loads((folder / f"{split}.json").read_text())


def _all_annotations(folder: Path) -> list[dict[str, Any]]:
    return _load(folder, "train")["annotations"] + _load(folder, "val")["annotations"]


def _all_images(folder: Path) -> list[dict[str, Any]]:
    return _load(folder, "train")["images"] + _load(folder, "val")["images"]


def _expected_mask(ann: dict[str, Any], image: dict[str, Any]) -> np.ndarray:
    seg = ann["segmentation"]
    if isinstance(seg, list):
        return masks.decode(masks.from_polygons(seg, image["height"], image["width"]))
    return masks.decode(seg)


def _masks_by_source(folder: Path) -> dict[tuple[str, str], np.ndarray]:
    """(original file name, class name) -> decoded mask, over both splits of a data set."""
    result = {}
    for split in ("train", "val"):
        coco = _load(folder, split)
        names = {c["id"]: c["name"] for c in coco["categories"]}
        files = {im["id"]: im["original_file_name"] for im in coco["images"]}
        for ann in coco["annotations"]:
            result[(files[ann["image_id"]], names[ann["category_id"]])] = masks.decode(ann["segmentation"])
    return result


def _assert_normalised(folder: Path) -> None:
    """The ARCHITECTURE.md contract for train.json / val.json."""
    meta = json.loads((folder / "dataset.json").read_text())
    ann_ids, image_ids = [], []
    for split in ("train", "val"):
        coco = _load(folder, split)
        assert [c["name"] for c in coco["categories"]] == meta["classes"]
        assert [c["id"] for c in coco["categories"]] == list(range(1, len(meta["classes"]) + 1))
        sizes = {}
        for image in coco["images"]:
            assert image["file_name"].startswith("images/") and (folder / image["file_name"]).is_file()
            assert Image.open(folder / image["file_name"]).size == (image["width"], image["height"])
            sizes[image["id"]] = [image["height"], image["width"]]
            image_ids.append(image["id"])
        for ann in coco["annotations"]:
            rle = ann["segmentation"]
            assert isinstance(rle["counts"], str) and rle["size"] == sizes[ann["image_id"]]
            assert ann["area"] == masks.area(rle) > 0
            assert ann["bbox"] == masks.bbox(rle)
            assert ann["iscrowd"] in (0, 1)
            ann_ids.append(ann["id"])
    assert sorted(ann_ids) == list(range(1, len(ann_ids) + 1))
    assert sorted(image_ids) == list(range(1, len(image_ids) + 1))


# ---------------------------------------------------------------- round trips


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
    assert not Path(meta["source"]["export"]).is_absolute()
    assert (out / meta["source"]["export"]).resolve() == export.resolve()
    assert meta["source"]["sha256"] == ingest.sha256_file(export)
    assert meta["category_map"] == {"1": 1, "2": 2, "3": 3}
    assert meta["seed"] == 3 and meta["val_fraction"] == 0.2
    assert meta["counts"]["train"]["images"] == 8 and meta["counts"]["val"]["images"] == 2
    assert meta["problems"]["total"] == 0
    _assert_normalised(out)

    images = {im["file_name"]: im for im in coco["images"]}
    classes = {i + 1: name for i, name in enumerate(CLASSES)}
    got = _masks_by_source(out)
    assert len(got) == len(coco["annotations"])
    for ann in coco["annotations"]:
        image = next(im for im in coco["images"] if im["id"] == ann["image_id"])
        key = (image["file_name"], classes[ann["category_id"]])
        assert np.array_equal(got[key], _expected_mask(ann, images[image["file_name"]]))

    # images are hard links of the originals (same inode), not copies
    first = _all_images(out)[0]
    source = tmp_path / "images" / first["original_file_name"]
    assert os.stat(out / first["file_name"]).st_ino == os.stat(source).st_ino


def test_sample_export_round_trip(tmp_path: Path) -> None:
    from officescore.sample import write_sample

    write_sample(tmp_path / "sample", n_images=8, seed=0, size=128)
    export = tmp_path / "sample" / "annotations.json"
    coco = json.loads(export.read_text())
    result = ingest_export(export, out=tmp_path / "dataset")

    assert result.problems == []
    used = {
        c["name"] for c in coco["categories"] if any(a["category_id"] == c["id"] for a in coco["annotations"])
    }
    assert set(result.classes) == used
    assert result.counts["annotations"] == len(coco["annotations"])
    _assert_normalised(tmp_path / "dataset")
    names = {c["id"]: c["name"] for c in coco["categories"]}
    images = {im["id"]: im for im in coco["images"]}
    got = _all_annotations(tmp_path / "dataset")
    total_area = sum(a["area"] for a in got)
    assert total_area == sum(
        masks.area(masks.encode(_expected_mask(a, images[a["image_id"]]))) for a in coco["annotations"]
    )
    per_class_got: dict[str, int] = {}
    for split in ("train", "val"):
        coco_out = _load(tmp_path / "dataset", split)
        out_names = {c["id"]: c["name"] for c in coco_out["categories"]}
        for a in coco_out["annotations"]:
            per_class_got[out_names[a["category_id"]]] = per_class_got.get(out_names[a["category_id"]], 0) + 1
    per_class_in: dict[str, int] = {}
    for a in coco["annotations"]:
        per_class_in[names[a["category_id"]]] = per_class_in.get(names[a["category_id"]], 0) + 1
    assert per_class_got == per_class_in


# ---------------------------------------------------------------- broken exports, one per problem

Mutation = Callable[[Path, Coco], None]


def _image(coco: Coco, index: int = 0) -> dict[str, Any]:
    return coco["images"][index]


def _ann_of(coco: Coco, image_index: int = 0) -> dict[str, Any]:
    return next(a for a in coco["annotations"] if a["image_id"] == coco["images"][image_index]["id"])


def _polygon_ann(coco: Coco) -> dict[str, Any]:
    return next(a for a in coco["annotations"] if isinstance(a["segmentation"], list))


def _set(target: Callable[[Coco], dict[str, Any]], **fields: Any) -> Mutation:
    return lambda root, coco: target(coco).update(fields)


def _replace_file(data: bytes) -> Mutation:
    def mutate(root: Path, coco: Coco) -> None:
        (root / "images" / _image(coco)["file_name"]).write_bytes(data)

    return mutate


def _truncate(root: Path, coco: Coco) -> None:
    path = root / "images" / _image(coco)["file_name"]
    buffer = io.BytesIO()
    Image.open(path).convert("RGB").save(buffer, "JPEG", quality=90)
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])


def _add_polygon(ann_fn: Callable[[Coco], dict[str, Any]], polygon: list[float]) -> Mutation:
    return lambda root, coco: ann_fn(coco)["segmentation"].append(polygon)


def _append(key: str, entry: Any) -> Mutation:
    return lambda root, coco: coco[key].append(entry)


def _fields(**fields: Any) -> Callable[[Coco], dict[str, Any]]:
    return lambda coco: {**_ann_of(coco), "id": 900, **fields}


def _duplicate_annotation_id(root: Path, coco: Coco) -> None:
    coco["annotations"][1]["id"] = coco["annotations"][0]["id"]


IGNORED = "ignore region"  # the box of an annotation with an unusable mask, kept for evaluation only

# (id, mutation, problem kind or None, action contains, images kept, annotations kept, extra check)
BROKEN: list[tuple[str, Mutation, str | None, str, int, int]] = [
    (
        "image_missing",
        lambda r, c: (r / "images" / _image(c)["file_name"]).unlink(),
        "image_missing",
        "dropped",
        5,
        10,
    ),
    ("not_an_image", _replace_file(b"this is not a picture"), "image_unreadable", "dropped", 5, 10),
    ("empty_file", _replace_file(b""), "image_unreadable", "dropped", 5, 10),
    ("truncated", _truncate, "image_unreadable", "dropped", 5, 10),
    (
        "is_a_folder",
        lambda r, c: (r / "images" / "sub").mkdir() or _image(c).update(file_name="sub"),
        "image_missing",
        "dropped",
        5,
        10,
    ),
    ("size_missing", _set(_image, width=None, height=None), "image_size", "taken from the file", 6, 12),
    ("size_wrong", _set(_image, width=640, height=480), "image_size", "taken from the file", 6, 12),
    ("size_infinite", _set(_image, width=float("inf")), "image_size", "taken from the file", 6, 12),
    ("file_name_too_long", _set(_image, file_name="a" * 400 + ".png"), "image_missing", "dropped", 5, 10),
    ("image_no_file_name", _set(_image, file_name=None), "image_invalid", "dropped", 5, 10),
    ("image_empty_file_name", _set(_image, file_name=""), "image_invalid", "dropped", 5, 10),
    (  # whether image 1's annotations are on scene_000.png or on x.png cannot be told
        "image_duplicate_id",
        _append("images", {"id": 1, "file_name": "x.png"}),
        "image_duplicate_id",
        "all dropped, with its 2 annotation(s)",
        5,
        10,
    ),
    (  # the same entry twice: one photo
        "image_listed_twice",
        lambda r, c: c["images"].append(dict(_image(c))),
        "image_duplicate_id",
        "later one dropped",
        6,
        12,
    ),
    (  # its two labels go with it: said, as the problem list says what became of each label
        "image_duplicate_file",
        _set(lambda c: _image(c, 1), file_name="scene_000.png"),
        "image_duplicate_file",
        "later one dropped, with its 2 annotation(s)",
        5,
        10,
    ),
    ("ann_not_object", _append("annotations", [1, 2, 3]), "annotation_invalid", "dropped", 6, 12),
    (
        "ann_unknown_image",
        lambda r, c: c["annotations"].append(_fields(image_id=99)(c)),
        "annotation_unknown_image",
        "dropped",
        6,
        12,
    ),
    (
        "ann_unknown_category",
        lambda r, c: c["annotations"].append(_fields(category_id=42)(c)),
        "annotation_unknown_category",
        "dropped",
        6,
        12,
    ),
    ("ann_duplicate_id", _duplicate_annotation_id, "annotation_duplicate_id", "renumbered", 6, 12),
    ("ann_id_zero", _set(lambda c: c["annotations"][0], id=0), None, "", 6, 12),  # renumbered, as all
    (
        "ann_id_missing",
        lambda r, c: c["annotations"][0].pop("id"),
        "annotation_id_missing",
        "renumbered",
        6,
        12,
    ),
    (
        "polygon_two_points",
        _set(_polygon_ann, segmentation=[[1, 1, 20, 20]]),
        "polygon_too_short",
        IGNORED,
        6,
        12,
    ),
    ("polygon_odd", _set(_polygon_ann, segmentation=[[1, 1, 20, 1, 20]]), "polygon_odd", IGNORED, 6, 12),
    (  # a YOLO-style converter's fractions of the image, not pixels
        "polygon_normalised",
        _set(_polygon_ann, segmentation=[[0.1, 0.1, 0.5, 0.1, 0.5, 0.5]]),
        "polygon_normalised",
        IGNORED,
        6,
        12,
    ),
    (
        "polygon_not_numbers",
        _set(_polygon_ann, segmentation=[["a", 1, 2, 3, 4, 5]]),
        "polygon_invalid",
        IGNORED,
        6,
        12,
    ),
    (
        "polygon_nan",
        _set(_polygon_ann, segmentation=[[float("nan"), 1, 20, 1, 20, 20]]),
        "polygon_invalid",
        IGNORED,
        6,
        12,
    ),
    (
        "one_bad_polygon_of_two",
        _add_polygon(_polygon_ann, [1, 2, 3]),
        "polygon_odd",
        "polygon dropped",
        6,
        12,
    ),
    (
        "segmentation_empty",
        _set(_polygon_ann, segmentation=[], bbox=None),
        "segmentation_empty",
        "dropped",
        6,
        11,
    ),
    ("box_only", _set(_polygon_ann, segmentation=[]), "segmentation_missing", IGNORED, 6, 12),
    ("box_only_empty_object", _set(_polygon_ann, segmentation={}), "segmentation_missing", IGNORED, 6, 12),
    (  # a box between two pixel columns covers no pixel: not widened into one
        "box_only_without_width",
        _set(_polygon_ann, segmentation=[], bbox=[5.5, 5, 0, 3]),
        "segmentation_missing",
        "dropped",
        6,
        11,
    ),
    (
        "box_only_without_area",
        _set(_polygon_ann, segmentation=[], bbox=[5, 5, 0, 3]),
        "segmentation_missing",
        "dropped",
        6,
        11,
    ),
    (
        "box_only_overflowing",  # x + w overflows to infinity: the box is outside the image
        _set(_polygon_ann, segmentation=[], bbox=[1e308, 5, 1e308, 3]),
        "segmentation_missing",
        "dropped",
        6,
        11,
    ),
    (
        "bad_mask_and_no_box",
        _set(_polygon_ann, segmentation=7, bbox="x"),
        "segmentation_invalid",
        "dropped",
        6,
        11,
    ),
    ("segmentation_wrong_type", _set(_polygon_ann, segmentation=7), "segmentation_invalid", IGNORED, 6, 12),
    (
        "rle_size_mismatch",
        _set(
            _polygon_ann, segmentation={"size": [10, 10], "counts": masks.encode(np.ones((10, 10)))["counts"]}
        ),
        "rle_size",
        IGNORED,
        6,
        12,
    ),
    (
        "rle_counts_garbage",
        # would make pycocotools write far past its buffer if decoded unchecked
        _set(_polygon_ann, segmentation={"size": [64, 96], "counts": "zzzzzzzz0000"}),
        "rle_invalid",
        IGNORED,
        6,
        12,
    ),
    (
        "rle_counts_overflow",
        _set(
            _polygon_ann,
            segmentation={"size": [64, 96], "counts": masks.encode(np.ones((200, 200)))["counts"]},
        ),
        "rle_invalid",
        IGNORED,
        6,
        12,
    ),
    (
        "rle_counts_list_short",
        _set(_polygon_ann, segmentation={"size": [64, 96], "counts": [10, 20]}),
        "rle_invalid",
        IGNORED,
        6,
        12,
    ),
    ("box_no_area", _set(_polygon_ann, bbox=[5, 5, 0, 0]), "bbox_no_area", "recomputed from the mask", 6, 12),
    (
        "box_no_width",
        _set(_polygon_ann, bbox=[5, 5, 0, 3]),
        "bbox_no_area",
        "recomputed from the mask",
        6,
        12,
    ),
    (
        "box_missing",
        lambda r, c: _polygon_ann(c).pop("bbox"),
        "bbox_invalid",
        "recomputed from the mask",
        6,
        12,
    ),
    (
        "polygon_partly_outside",
        _set(_polygon_ann, segmentation=[[-50, -50, 30, -50, 30, 30, -50, 30]]),
        "outside_image",
        "clipped",
        6,
        12,
    ),
    (
        "polygon_huge_coordinates",
        _set(_polygon_ann, segmentation=[[-1e12, -1e12, 1e12, -1e12, 1e12, 1e12, -1e12, 1e12]]),
        "outside_image",
        "clipped",
        6,
        12,
    ),
    (
        "polygon_entirely_outside",
        _set(_polygon_ann, segmentation=[[200, 200, 300, 200, 300, 300]]),
        "outside_image",
        IGNORED,
        6,
        12,
    ),
    (
        "mask_empty",
        _set(_polygon_ann, segmentation=masks.encode(np.zeros((64, 96)))),
        "empty_mask",
        IGNORED,
        6,
        12,
    ),
    ("iscrowd_invalid", _set(_polygon_ann, iscrowd="yes"), "iscrowd_invalid", "set to 1", 6, 12),
    ("iscrowd_text_zero", _set(_polygon_ann, iscrowd="0"), "iscrowd_invalid", "set to 0", 6, 12),
    ("iscrowd_text_zero_point", _set(_polygon_ann, iscrowd="0.0"), "iscrowd_invalid", "set to 0", 6, 12),
    ("iscrowd_text_false", _set(_polygon_ann, iscrowd="False"), "iscrowd_invalid", "set to 0", 6, 12),
    ("iscrowd_text_no", _set(_polygon_ann, iscrowd="no"), "iscrowd_invalid", "set to 0", 6, 12),
    ("iscrowd_float", _set(_polygon_ann, iscrowd=1.0), "iscrowd_invalid", "set to 1", 6, 12),
    ("category_no_name", _append("categories", {"id": 7}), "category_invalid", "dropped", 6, 12),
    (
        "category_duplicate_id",
        _append("categories", {"id": 1, "name": "sofa"}),
        "category_duplicate_id",
        "dropped",
        6,
        12,
    ),
    (
        "category_duplicate_name",
        _append("categories", {"id": 9, "name": "desk"}),
        "category_duplicate_name",
        "merged",
        6,
        12,
    ),
    # not problems: normal COCO variations
    ("iscrowd_kept", _set(_polygon_ann, iscrowd=1), None, "", 6, 12),
    # pixels at the photo's corner and edge (0 and 1) among others: not a normalised polygon
    (
        "polygon_at_the_corner",
        _set(_polygon_ann, segmentation=[[0, 0, 20, 1, 20, 20, 1, 20]]),
        None,
        "",
        6,
        12,
    ),
    (
        "rle_uncompressed",
        lambda r, c: _polygon_ann(c).update(
            segmentation={"size": [64, 96], "counts": [96 * 10, 96 * 20, 96 * 34]}
        ),
        None,
        "",
        6,
        12,
    ),
    ("unused_category", _append("categories", {"id": 4, "name": "lamp"}), None, "", 6, 12),
    ("string_ids", lambda r, c: [a.update(id=f"a-{a['id']}") for a in c["annotations"]], None, "", 6, 12),
    ("float_ids", lambda r, c: [im.update(id=float(im["id"])) for im in c["images"]], None, "", 6, 12),
]


@pytest.mark.parametrize(
    ("mutate", "kind", "action", "n_images", "n_annotations"),
    [pytest.param(*case[1:], id=case[0]) for case in BROKEN],
)
def test_broken_export(
    tmp_path: Path, mutate: Mutation, kind: str | None, action: str, n_images: int, n_annotations: int
) -> None:
    coco = make_export(tmp_path, n_images=6)
    assert len(coco["annotations"]) == 12
    mutate(tmp_path, coco)
    export = write_export(tmp_path, coco)
    result = ingest_export(export, out=tmp_path / "dataset")

    kinds = [p.kind for p in result.problems]
    if kind is None:
        assert kinds == []
    else:
        assert kinds == [kind], result.problems
        assert action in result.problems[0].action
        assert result.problems[0].what
    assert result.counts["images"] == n_images
    assert result.counts["annotations"] == n_annotations
    if action == IGNORED:
        assert result.counts["train"]["crowd"] + result.counts["val"]["crowd"] == 1
    if kind == "iscrowd_invalid":  # the flag reported ("set to N") is the flag written
        assert result.counts["train"]["crowd"] + result.counts["val"]["crowd"] == int(action[-1])
    _assert_normalised(tmp_path / "dataset")
    meta = json.loads((tmp_path / "dataset" / "dataset.json").read_text())
    assert meta["problems"]["total"] == len(kinds)
    assert meta["problems"]["items"] == [p.to_dict() for p in result.problems]


def test_an_entry_naming_a_file_already_listed_says_how_many_labels_went_with_it(tmp_path: Path) -> None:
    coco = make_export(tmp_path, n_images=3)
    coco["images"][1]["file_name"] = coco["images"][0]["file_name"]  # image 2's labels go with it
    coco["images"].append({"id": 9, "file_name": "scene_000.png", "width": 96, "height": 64})  # none
    result = ingest_export(write_export(tmp_path, coco), out=tmp_path / "dataset")
    said = [(p.image, p.what, p.action) for p in result.problems]
    assert said == [
        ("scene_000.png", "same file as image id 1", "later one dropped, with its 2 annotation(s)"),
        ("scene_000.png", "same file as image id 1", "later one dropped"),
    ]
    assert result.counts["dropped"] == {"images": 2, "annotations": 2}


def _drop_every_way(root: Path, coco: Coco) -> list[tuple[str, int | None]]:
    """Each photo-level drop once, on an export of 9 photos; (kind, index of the entry whose id's
    labels go with it, None when already said) in the order the problems come."""
    folder, entries = root / "images", coco["images"]
    (folder / entries[0]["file_name"]).unlink()
    (folder / entries[1]["file_name"]).write_bytes(b"not a picture")
    entries[2]["file_name"] = "../outside.png"
    for sub in ("a", "b"):  # two photos named twin.png: which one is meant cannot be told
        (folder / sub).mkdir()
        shutil.copy(folder / entries[8]["file_name"], folder / sub / "twin.png")
    entries[3]["file_name"] = "twin.png"
    entries[4]["file_name"] = None  # its id is usable, so its labels are known to go with it
    entries[6]["file_name"] = entries[5]["file_name"]
    entries.append({**entries[7], "file_name": "other.png"})  # id 8 names two files
    entries.append(dict(entries[0]))  # the missing photo listed twice: its labels go once
    return [
        ("image_missing", 0),
        ("image_unreadable", 1),
        ("image_path_escape", 2),
        ("image_ambiguous", 3),
        ("image_invalid", 4),
        ("image_duplicate_file", 6),
        ("image_duplicate_id", 7),
        ("image_missing", None),
    ]


def test_every_photo_dropped_says_how_many_labels_went_with_it(tmp_path: Path) -> None:
    """A photo dropped for any reason drops its id's annotations: each problem says how many (an id
    listed twice once), and they add up to the labels dropped with photos."""
    coco = make_export(tmp_path, n_images=9)
    dropped = _drop_every_way(tmp_path, coco)
    result = ingest_export(write_export(tmp_path, coco), out=tmp_path / "dataset")

    on_id = Counter(a["image_id"] for a in coco["annotations"])
    labels = [0 if index is None else on_id[coco["images"][index]["id"]] for _, index in dropped]
    said = [(p.kind, re.findall(r"with its (\d+) annotation", p.action)) for p in result.problems]
    assert said == [(kind, [str(n)] if n else []) for (kind, _), n in zip(dropped, labels, strict=True)]
    assert all(labels[:-1]) and result.with_photos == sum(labels)
    assert result.counts["dropped"]["annotations"] == result.with_photos  # no label dropped alone
    assert result.to_dict()["annotations_on_dropped_images"] == result.with_photos


def test_the_summary_line_says_how_many_labels_went_with_dropped_photos(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    coco = make_export(tmp_path, n_images=4)
    coco["images"][1]["file_name"] = "gone.png"
    lost = sum(a["image_id"] == coco["images"][1]["id"] for a in coco["annotations"])
    with pytest.raises(SystemExit):
        main(["ingest", str(write_export(tmp_path, coco)), "--out", str(tmp_path / "dataset"), "--no-plot"])
    said = " ".join(capsys.readouterr().out.split())
    assert f"1 problem(s) fixed or dropped, {lost} label(s) dropped with their photos" in said


def test_box_only_annotation_becomes_an_ignore_region(tmp_path: Path) -> None:
    """Box-only objects are not training targets, but evaluation must not punish detecting them."""
    from officescore.dataset import OfficeDataset
    from officescore.evaluate import evaluate_coco

    coco = make_export(tmp_path, n_images=6)
    ann = _ann_of(coco)
    ann.update(segmentation=[], bbox=[80.5, 30.2, 40, 10])  # reaches past the right edge (96 px)
    result = ingest_export(write_export(tmp_path, coco), out=tmp_path / "dataset", val_fraction=0.5)
    assert [p.kind for p in result.problems] == ["segmentation_missing"]
    (crowd,) = [a for a in _all_annotations(tmp_path / "dataset") if a["iscrowd"]]
    assert crowd["bbox"] == [80.0, 30.0, 16.0, 11.0]  # whole pixels covering the box, clipped

    split = next(
        s
        for s in ("train", "val")
        if any(a["iscrowd"] for a in _load(tmp_path / "dataset", s)["annotations"])
    )
    gt = _load(tmp_path / "dataset", split)
    data = OfficeDataset(tmp_path / "dataset", split)
    index = data.image_ids.index(crowd["image_id"])
    assert len(data[index][1]["labels"]) == sum(
        1 for a in gt["annotations"] if a["image_id"] == crowd["image_id"] and not a["iscrowd"]
    )
    # a correct detection of the box-only object is ignored, not a false alarm
    perfect = [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9}
        for a in gt["annotations"]
    ]
    doc = evaluate_coco(gt, perfect)
    assert doc["bbox"]["fp"] == 0 and doc["bbox"]["map"] == pytest.approx(1.0)


def test_box_only_export_is_refused_with_advice(tmp_path: Path) -> None:
    coco = make_export(tmp_path, n_images=3)
    for ann in coco["annotations"]:
        ann["segmentation"] = []
    with pytest.raises(DataError, match="needs segmentation masks"):
        ingest_export(write_export(tmp_path, coco), out=tmp_path / "dataset")


def _all_crowd(root: Path, coco: Coco) -> None:
    for ann in coco["annotations"]:
        image = next(im for im in coco["images"] if im["id"] == ann["image_id"])
        ann["segmentation"], ann["iscrowd"] = masks.encode(_expected_mask(ann, image)), 1


@pytest.mark.parametrize(
    ("mutate", "said", "unsaid"),
    [
        pytest.param(lambda r, c: c.update(annotations=[]), ": lists no annotations", "", id="none"),
        pytest.param(  # a category list exported apart from its labels
            lambda r, c: c.update(categories=[{"id": 7, "name": "desk"}]),
            "(of 4: annotation_unknown_category x4), so nothing to train",
            "boxes alone",
            id="unknown_categories",
        ),
        pytest.param(
            _all_crowd,
            "(of 4: 4 crowd region(s) (iscrowd 1; --crowd instances reads them as objects))",
            "boxes alone",
            id="crowd_only",
        ),
    ],
)
def test_nothing_to_train_says_what_became_of_the_annotations(
    tmp_path: Path, mutate: Mutation, said: str, unsaid: str
) -> None:
    """The error named boxes alone whatever the cause; an empty export or category ids its categories
    do not list made the user re-export masks they already had."""
    coco = make_export(tmp_path, n_images=2)
    mutate(tmp_path, coco)
    with pytest.raises(DataError) as info:
        ingest_export(write_export(tmp_path, coco), out=tmp_path / "dataset")
    assert said in str(info.value) and (not unsaid or unsaid not in str(info.value))


WEIRD_VALUES: list[Any] = [
    None,
    0,
    -1,
    float("inf"),
    "x",
    "",
    [],
    {},
    [1],
    [[1]],
    True,
    "../x",
    "\x00",
    2**70,
    1.5,
]


def test_random_damage_never_crashes(tmp_path: Path) -> None:
    """Seeded fuzzing: any damage ends in a clean data set or a UserError, never another exception."""
    rng = random.Random(0)
    base = make_export(tmp_path, n_images=3)
    for _ in range(60):
        coco = copy.deepcopy(base)
        for _ in range(rng.randint(1, 3)):
            section = coco[rng.choice(["images", "annotations", "categories"])]
            index = rng.randrange(len(section))
            if not isinstance(section[index], dict) or rng.random() < 0.1:
                section[index] = rng.choice(WEIRD_VALUES)
            else:
                section[index][rng.choice([*section[index], "segmentation", "size"])] = rng.choice(
                    WEIRD_VALUES
                )
        try:
            ingest_export(write_export(tmp_path, coco), out=tmp_path / "dataset")
        except UserError:
            continue
        _assert_normalised(tmp_path / "dataset")


def test_rle_counts_decoder_matches_pycocotools() -> None:
    """The vectorised counts parser that guards pycocotools (which trusts counts blindly)."""
    rng = np.random.default_rng(0)
    for _ in range(200):
        h, w = rng.integers(1, 40, size=2)
        mask = (rng.random((h, w)) < rng.random()).astype(np.uint8)
        runs = rle_counts(masks.encode(mask)["counts"])
        assert runs is not None and runs.sum() == h * w
        flat = np.repeat(np.arange(len(runs)) % 2, runs).astype(np.uint8)
        assert np.array_equal(flat.reshape(w, h).T, mask)  # column-major runs, starting with zeros
    text = random.Random(0)
    accepted = 0
    for _ in range(5000):
        counts = "".join(chr(text.randint(46, 113)) for _ in range(text.randint(1, 6)))
        rle, kind, _what = _check_rle({"size": [3, 3], "counts": counts}, 3, 3)
        if rle is None:
            assert kind == "rle_invalid"
            continue
        accepted += 1
        assert masks.decode(rle).sum() == rle_counts(counts)[1::2].sum()
    assert accepted > 10


def test_strict_refuses_each_problem(tmp_path: Path) -> None:
    coco = make_export(tmp_path, n_images=6)
    _set(_image, width=None)(tmp_path, coco)
    _set(_polygon_ann, segmentation=[[1, 1, 20, 1, 20]])(tmp_path, coco)
    export = write_export(tmp_path, coco)
    with pytest.raises(DataError, match=r"^2 problem\(s\).*--strict.*width/height.*odd number"):
        ingest_export(export, out=tmp_path / "dataset", strict=True)
    assert not (tmp_path / "dataset").exists()
    clean = write_export(tmp_path, make_export(tmp_path, n_images=6), name="clean.json")
    assert (
        ingest_export(clean, images_dir=tmp_path / "images", out=tmp_path / "ok", strict=True).problems == []
    )


def test_strict_refuses_a_single_problem(tmp_path: Path) -> None:
    coco = make_export(tmp_path, n_images=3)
    _set(_image, width=None)(tmp_path, coco)
    with pytest.raises(DataError, match=r"^1 problem\(s\) in the export with --strict"):
        ingest_export(write_export(tmp_path, coco), out=tmp_path / "dataset", strict=True)


def test_a_flat_polygon_too_short_is_read_then_kept_as_an_ignore_region(tmp_path: Path) -> None:
    """Each problem says what was done about it: the flat list was read as a polygon, and that
    polygon's shortness turned the annotation into an ignore region."""
    coco = make_export(tmp_path, n_images=6)
    _set(_polygon_ann, segmentation=[1, 1, 20, 20])(tmp_path, coco)
    result = ingest_export(write_export(tmp_path, coco), out=tmp_path / "dataset")
    assert [p.kind for p in result.problems] == ["segmentation_flat", "polygon_too_short"]
    assert result.problems[0].action == "read as one polygon"
    assert IGNORED in result.problems[1].action


def test_size_taken_from_exif_orientation(tmp_path: Path) -> None:
    coco = make_export(tmp_path, n_images=3)
    rotated = tmp_path / "images" / "rotated.jpg"
    draw_scene(rotated, 96, 64, [], seed=7)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees: displayed 64 wide, 96 high
    Image.open(rotated).save(rotated, exif=exif.tobytes())
    coco["images"].append({"id": 50, "file_name": "rotated.jpg", "width": 96, "height": 64})
    coco["annotations"].append(
        {
            "id": 50,
            "image_id": 50,
            "category_id": 1,
            "segmentation": [[2, 2, 40, 2, 40, 80, 2, 80]],
            "bbox": [2, 2, 38, 78],
        }
    )
    result = ingest_export(write_export(tmp_path, coco), out=tmp_path / "dataset")
    problems = [p for p in result.problems if p.image == "rotated.jpg"]
    assert [p.kind for p in problems] == ["image_size"]
    assert "64x96" in problems[0].action
    image = next(im for im in _all_images(tmp_path / "dataset") if im["original_file_name"] == "rotated.jpg")
    assert (image["width"], image["height"]) == (64, 96)
    ann = next(a for a in _all_annotations(tmp_path / "dataset") if a["image_id"] == image["id"])
    assert ann["bbox"] == [2.0, 2.0, 38.0, 78.0]  # polygon fits the displayed (rotated) frame unclipped


@pytest.mark.parametrize(
    ("argv_tail", "content", "message"),
    [
        pytest.param([], "{not json", "not valid JSON", id="not_json"),
        pytest.param([], "[1, 2]", "not a COCO export", id="json_list"),
        pytest.param([], '{"images": []}', "no annotations, categories", id="not_coco"),
        pytest.param(
            [], '{"images": [], "annotations": [], "categories": []}', "lists no images", id="no_images"
        ),
        pytest.param(
            [],
            '{"images": [{"id": 1, "file_name": "gone.png"}], "annotations": [], "categories": []}',
            "none of its 1 images",
            id="no_usable_images",
        ),
        pytest.param(["--val-fraction", "1.5"], None, "--val-fraction", id="bad_val_fraction"),
        pytest.param(["--val-fraction", "1"], None, "--val-fraction", id="val_fraction_one"),
        pytest.param(
            ["--classes", "desk,sofa"],
            None,
            "unknown class(es) sofa; the export has: desk, chair, mug",
            id="unknown_class",
        ),
        pytest.param(["--images", "nowhere"], None, "image folder not found", id="no_image_folder"),
    ],
)
def test_fatal_exports_exit_2_with_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv_tail: list[str],
    content: str | None,
    message: str,
) -> None:
    export = write_export(tmp_path, make_export(tmp_path, n_images=3))
    if content is not None:
        export.write_text(content)
    with pytest.raises(SystemExit) as exit_info:
        main(["ingest", str(export), "--out", str(tmp_path / "dataset"), *argv_tail])
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("error:") and message in lines[-1]
    assert all(re.match(r"^[A-Z][a-z ]+: \d+/\d+ in ", line) for line in lines[:-1])  # progress lines only
    assert not (tmp_path / "dataset").exists()


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16"])
def test_exports_saved_by_windows_tools_are_read(tmp_path: Path, encoding: str) -> None:
    """Notepad and PowerShell save JSON with a UTF-8 byte-order mark, or as UTF-16."""
    coco = make_export(tmp_path, n_images=3)
    export = write_export(tmp_path, coco)
    export.write_text(json.dumps(coco), encoding=encoding)
    result = ingest_export(export, out=tmp_path / "dataset")
    assert result.counts["images"] == 3 and result.problems == []


def test_cheap_mistakes_fail_before_any_image_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export = write_export(tmp_path, make_export(tmp_path, n_images=3))
    archive = tmp_path / "project-1-at-2026-12-04.zip"  # as Label Studio, CVAT and Roboflow download it
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.write(export, "result.json")
        zipped.write(tmp_path / "images" / "scene_000.png", "images/scene_000.png")
    for argv, message in (
        ([str(export), "--classes", "sofa"], "unknown class(es) sofa"),
        ([str(tmp_path)], f"is a folder; give the path of the COCO export (.json) inside it: {export}"),
        (
            [str(archive)],
            "a zip archive; unzip it and give the path of the COCO export (.json) inside it: result.json",
        ),
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(["ingest", *argv, "--out", str(tmp_path / "dataset")])
        err = capsys.readouterr().err.strip()
        assert exit_info.value.code == 2 and message in err
        assert len(err.splitlines()) == 1  # no "Checking images" progress: failed at once


def test_ingesting_another_export_over_a_data_set_says_it_replaced_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Roboflow's train/ and valid/ exports ingested one after the other into one --out: the second
    replaces the first (ingest never adds), and the summary says so; the same export again does not,
    even split with another --seed (no photo kept its split, yet none is gone), nor do both together."""
    train = write_export(tmp_path / "train", make_export(tmp_path / "train", n_images=4))
    valid = write_export(tmp_path / "valid", make_export(tmp_path / "valid", n_images=2, seed=1))
    out = tmp_path / "dataset"
    said = ""
    for exports, seed, replaced in (
        ([train], "0", False),
        ([train], "5", False),  # the same export split anew
        ([train, valid], "5", False),  # adds valid
        ([valid], "5", True),
    ):
        with pytest.raises(SystemExit):
            main(["ingest", *map(str, exports), "--out", str(out), "--no-plot", "--seed", seed])
        said = " ".join(capsys.readouterr().out.split())
        assert ("replaced the data set that was there" in said) == replaced, said
    assert f"6 image(s) from {train}, {valid}" in said
    assert "to add an export to a data set, ingest it together with the earlier ones" in said


def test_another_export_at_the_same_path_says_which_photos_are_gone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`label pull --out export/ --ingest data` of another project: the same export path, none of
    the data set's photos; the same path was taken for a newer export of the same project and ingest
    replaced the data set without a word. The same export again, or grown, says nothing of the kind."""
    root = tmp_path / "export"
    export = write_export(root, make_export(root, n_images=4))
    out = tmp_path / "dataset"
    said = []
    for seed in (0, 0, 1):  # first, the same again, another project's photos at the same path
        if seed == 1:
            write_export(root, make_export(root, n_images=3, seed=1, width=80))
        with pytest.raises(SystemExit):
            main(["ingest", str(export), "--out", str(out), "--no-plot"])
        said.append(" ".join(capsys.readouterr().out.split()))
    assert not any("are not in" in line or "replaced" in line for line in said[:2]), said
    assert f"note: 4 of the 4 photo(s) of the data set that was there are not in {export}" in said[2]
    assert not any("--attributes" in line for line in said)  # the package's schema: no note of its classes


def test_a_newer_export_at_the_same_path_without_some_photos_counts_those(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Tasks deleted in Label Studio, then `label pull` into the same folder: the note counts the
    photos gone, not every photo the data set had."""
    root = tmp_path / "export"
    export = write_export(root, make_export(root, n_images=4))
    out = tmp_path / "dataset"
    for n_images in (4, 3):  # the same first 3 photos, the 4th deleted
        write_export(root, make_export(root, n_images=n_images))
        with pytest.raises(SystemExit):
            main(["ingest", str(export), "--out", str(out), "--no-plot"])
    said = " ".join(capsys.readouterr().out.split())
    assert f"note: 1 of the 4 photo(s) of the data set that was there are not in {export}" in said, said


def _class_counts(coco: dict[str, Any]) -> dict[str, int]:
    names = {c["id"]: c["name"] for c in coco["categories"]}
    counts: dict[str, int] = {}
    for ann in coco["annotations"]:
        counts[names[ann["category_id"]]] = counts.get(names[ann["category_id"]], 0) + 1
    return counts


def test_several_exports_make_one_data_set_with_classes_matched_by_name(tmp_path: Path) -> None:
    """Roboflow-style train/ and valid/ exports, ingested together: ids from 1 and the same file names
    in both, the classes listed in another order and one only in valid/. Every photo is in, every
    object under its own class (by name, not id), and a photo in both exports is one duplicate group."""
    train = make_export(tmp_path / "train", n_images=4, classes=("desk", "chair", "mug"))
    valid = make_export(tmp_path / "valid", n_images=3, classes=("mug", "lamp", "desk", "chair"), seed=1)
    # valid/ also holds train/'s first photo, its labels written with valid/'s ids
    shutil.copy(tmp_path / "train/images/scene_000.png", tmp_path / "valid/images/copy.png")
    valid["images"].append({"id": 10, "file_name": "copy.png", "width": 96, "height": 64})
    by_name = {c["name"]: c["id"] for c in valid["categories"]}
    train_names = {c["id"]: c["name"] for c in train["categories"]}
    for ann in [a for a in train["annotations"] if a["image_id"] == 1]:
        valid["annotations"].append(
            {
                **ann,
                "id": 100 + ann["id"],
                "image_id": 10,
                "category_id": by_name[train_names[ann["category_id"]]],
            }
        )
    exports = [write_export(tmp_path / "train", train), write_export(tmp_path / "valid", valid)]
    out = tmp_path / "dataset"
    result = ingest_export(exports, out=out, val_fraction=0.4, seed=3)

    assert result.classes == ["desk", "chair", "mug", "lamp"]  # first appearance, in export order
    written = [json.loads((out / f"{split}.json").read_text()) for split in ("train", "val")]
    images = [im for data in written for im in data["images"]]
    assert len(images) == 8 and len({im["file_name"] for im in images}) == 8
    expected: dict[str, int] = {}
    for coco in (train, valid):
        for name, n in _class_counts(coco).items():
            expected[name] = expected.get(name, 0) + n
    got: dict[str, int] = {}
    for data in written:
        for name, n in _class_counts(data).items():
            got[name] = got.get(name, 0) + n
    assert got == expected
    meta = json.loads((out / "dataset.json").read_text())
    assert [s["export"] for s in meta["source"]["exports"]] == [
        "../train/images/annotations.json",
        "../valid/images/annotations.json",
    ]
    assert meta["category_map"] == {"1:1": 1, "1:2": 2, "1:3": 3, "2:1": 3, "2:2": 4, "2:3": 1, "2:4": 2}
    assert result.exports == [os.path.normpath(p) for p in exports]
    (group,) = meta["duplicates"]["groups"]
    splits = {
        im["file_name"]: split
        for split, data in zip(("train", "val"), written, strict=True)
        for im in data["images"]
    }
    assert len(group) == 2 and len({splits[name] for name in group}) == 1, (group, splits)


def test_a_photo_in_two_exports_labelled_differently_is_a_problem_and_both_copies_stay(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """train/ and valid/ hold the same three photos byte for byte, labelled alike but for the first
    photo's first object, another class in valid/: that photo is a problem naming both copies (the
    summary said "problems: none"), the two labelled alike are not, and every copy stays (as before).
    --strict refuses it."""
    classes = ("desk", "chair", "mug")
    train = make_export(tmp_path / "train", n_images=3, classes=classes)
    valid = make_export(tmp_path / "valid", n_images=3, classes=classes)
    first = valid["annotations"][0]
    assert first["image_id"] == 1
    first["category_id"] = first["category_id"] % len(classes) + 1
    exports = [str(write_export(tmp_path / "train", train)), str(write_export(tmp_path / "valid", valid))]
    argv = ["ingest", *exports, "--out", str(tmp_path / "dataset")]
    with pytest.raises(SystemExit) as info:
        main([*argv, "--json"])
    assert info.value.code == 0
    result = json.loads(capsys.readouterr().out)["ingest"]
    (problem,) = result["problems"]
    assert problem["kind"] == "image_duplicate_labels_differ" and problem["action"] == "both kept"
    assert {problem["image"], problem["what"].split(",")[0]} == {
        f"{exports[1]}: scene_000.png",
        f"the same photo as {exports[0]}: scene_000.png",
    }
    assert result["counts"]["train"]["images"] + result["counts"]["val"]["images"] == 6
    assert len(result["duplicate_groups"]) == 3
    with pytest.raises(SystemExit) as info:
        main([*argv, "--strict"])
    assert info.value.code == 2 and "the same photo as" in capsys.readouterr().err


def test_several_exports_name_the_export_of_each_problem_and_refuse_a_repeat(tmp_path: Path) -> None:
    train = write_export(tmp_path / "train", make_export(tmp_path / "train", n_images=3))
    coco = make_export(tmp_path / "valid", n_images=2, classes=("lamp",), seed=1)
    coco["annotations"][0]["category_id"] = 99
    valid = write_export(tmp_path / "valid", coco)
    out = tmp_path / "dataset"
    result = ingest_export([train, valid], out=out, classes=["lamp", "mug"])  # lamp is only in valid/
    assert result.classes == ["lamp", "mug"]
    (problem,) = result.problems
    assert problem.kind == "annotation_unknown_category" and problem.image == f"{valid}: scene_000.png"
    with pytest.raises(DataError, match="given twice; pass each export once"):
        ingest_export(
            [train, valid, tmp_path / "train" / "images" / ".." / "images" / "annotations.json"], out=out
        )
    (tmp_path / "elsewhere").mkdir()
    moved = write_export(tmp_path / "elsewhere", coco, "annotations.json")  # its photos are not beside it
    with pytest.raises(DataError, match=f"^{re.escape(str(moved))}: none of its 2 images could be used"):
        ingest_export([train, moved], out=out)
    assert json.loads((out / "dataset.json").read_text())["classes"] == ["lamp", "mug"]  # nothing lost


def test_the_same_export_again_is_not_said_to_replace_with_a_relative_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The export by its absolute path, --out relative: dataset.json records it relative to the data
    set, and the same export split anew with another --seed is still the same export."""
    export = write_export(tmp_path / "train", make_export(tmp_path / "train", n_images=4))
    monkeypatch.chdir(tmp_path)
    for seed in ("0", "5"):
        with pytest.raises(SystemExit):
            main(["ingest", str(export), "--out", "dataset", "--no-plot", "--seed", seed])
        said = capsys.readouterr().out
        assert "wrote dataset" in said and "replaced the data set" not in said, said


def test_a_resized_copy_may_be_a_whole_pixel_off_its_exact_size() -> None:
    """4000 x 3004 resized to 1000 wide is 751 high exactly; resizers that keep both sides even
    write 750 or 752. That is still a resized copy (its labels scaled); two pixels off, another shape."""
    from officescore.ingest.checks import resized_copy

    assert resized_copy((4000, 3004), 1000, 750) and resized_copy((3004, 4000), 752, 1000)
    assert not resized_copy((4000, 3004), 1000, 749)


@pytest.mark.parametrize("size", [(48, 32), (50, 33)])  # half; a width whose height was rounded
def test_photos_resized_after_labelling_get_their_labels_scaled(
    tmp_path: Path, size: tuple[int, int]
) -> None:
    """Labelled at 96x64, ingested from smaller copies (to save space): COCO coordinates are pixels
    of the stated size, so polygons, RLE masks and boxes are scaled to the copy, not clipped to its
    corner. A resize to a set width rounds the height (96x64 -> 50x33): a copy all the same."""
    coco = make_export(tmp_path, n_images=3)
    box_only = coco["annotations"][0]  # a box tool's label: kept as an ignore region, scaled too
    box_only["bbox"], box_only["segmentation"] = masks.bbox(_rle(box_only, 64, 96)), []
    export = write_export(tmp_path, coco)
    for path in (tmp_path / "images").glob("*.png"):
        with Image.open(path) as photo:
            photo.resize(size, Image.LANCZOS).save(path)
    result = ingest_export(export, out=tmp_path / "dataset")
    sizes = [p for p in result.problems if p.kind == "image_size"]
    assert len(sizes) == 3 and all(
        p.action == f"labels scaled to the file: {size[0]}x{size[1]}" for p in sizes
    )
    assert {p.kind for p in result.problems} == {"image_size", "segmentation_missing"}  # none clipped
    got = sorted(
        a["bbox"]
        for split in ("train", "val")
        for a in json.loads((tmp_path / "dataset" / f"{split}.json").read_text())["annotations"]
    )
    sx, sy = size[0] / 96, size[1] / 64
    expected = [
        [x * sx, y * sy, w * sx, h * sy]
        for x, y, w, h in (masks.bbox(_rle(a, 64, 96)) for a in coco["annotations"][1:])
    ]
    x, y, w, h = box_only["bbox"]  # the ignore region: the scaled box widened to whole pixels
    x0, y0, x1, y1 = math.floor(x * sx), math.floor(y * sy), math.ceil((x + w) * sx), math.ceil((y + h) * sy)
    expected = sorted([*expected, [x0, y0, x1 - x0, y1 - y0]])
    assert len(got) == len(expected)
    assert np.abs(np.array(got) - np.array(expected)).max() <= 1, (got, expected)  # within a pixel


def _rle(ann: Coco, height: int, width: int) -> dict[str, Any]:
    seg = ann["segmentation"]
    return masks.from_polygons(seg, height, width) if isinstance(seg, list) else masks.normalise(seg)


def test_missing_export_via_subprocess(tmp_path: Path) -> None:
    """The installed entry point: one red line on stderr, exit 2, no traceback."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "officescore",
            "ingest",
            str(tmp_path / "nope.json"),
            "--out",
            str(tmp_path / "d"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "nope.json: no such file" in proc.stderr
    assert "Traceback" not in proc.stderr


# ---------------------------------------------------------------- path escapes


@pytest.mark.timeout(20)
def test_path_escape_refused_and_never_opened(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    coco = make_export(tmp_path / "export", n_images=4)
    secret_dir = tmp_path / "secret"
    secret_dir.mkdir()
    fifo = secret_dir / "pipe.png"
    os.mkfifo(fifo)  # opening it for reading would block forever: proof that nothing opens it
    (tmp_path / "export" / "images" / "link.png").symlink_to(fifo)
    escapes = [
        "../../secret/pipe.png",
        str(fifo),
        "link.png",
        "sub/../../../secret/pipe.png",
        "C:\\secret\\pipe.png",
    ]
    for index, name in enumerate(escapes):
        coco["images"].append({"id": 100 + index, "file_name": name, "width": 96, "height": 64})
        coco["annotations"].append(
            {
                "id": 100 + index,
                "image_id": 100 + index,
                "category_id": 1,
                "segmentation": [[1, 1, 9, 1, 9, 9]],
            }
        )
    opened: list[Path] = []
    real_load = ingest.load_image_as_stored
    record = lambda path: opened.append(Path(path)) or real_load(path)  # noqa: E731
    monkeypatch.setattr(ingest, "load_image_as_stored", record)
    result = ingest_export(write_export(tmp_path / "export", coco), out=tmp_path / "dataset")

    refused = [p for p in result.problems if p.kind == "image_path_escape"]
    assert [p.image for p in refused] == escapes
    assert all("refused" in p.action for p in refused)
    assert len(result.problems) == len(escapes)  # their annotations go with them, unlisted
    assert result.counts["images"] == 4
    assert all(secret_dir not in path.parents for path in opened) and len(opened) == 4
    assert not any("pipe" in im["file_name"] for im in _all_images(tmp_path / "dataset"))


def test_symlink_inside_folder_is_fine(tmp_path: Path) -> None:
    coco = make_export(tmp_path, n_images=4)
    (tmp_path / "images" / "alias.png").symlink_to(tmp_path / "images" / "scene_000.png")
    _image(coco)["file_name"] = "alias.png"
    result = ingest_export(write_export(tmp_path, coco), out=tmp_path / "dataset")
    assert result.problems == [] and result.counts["images"] == 4


# ---------------------------------------------------------------- tool styles


def _assert_same_masks(clean_out: Path, out: Path, rename: Callable[[str], str] = lambda n: n) -> None:
    clean = {(rename(f), c): m for (f, c), m in _masks_by_source(clean_out).items()}
    styled = _masks_by_source(out)
    assert clean.keys() == styled.keys()
    assert all(np.array_equal(clean[k], styled[k]) for k in clean)


@pytest.fixture
def clean_reference(tmp_path: Path) -> tuple[Path, Coco]:
    coco = make_export(tmp_path, n_images=6)
    ingest_export(write_export(tmp_path, coco), out=tmp_path / "clean")
    return tmp_path, coco


def test_hasty_style(clean_reference: tuple[Path, Coco]) -> None:
    root, coco = clean_reference
    result = ingest_export(write_export(root, hasty_style(coco), "images/hasty.json"), out=root / "hasty")
    assert result.problems == [] and result.classes == list(CLASSES)
    _assert_same_masks(root / "clean", root / "hasty")
    _assert_normalised(root / "hasty")


def test_cvat_style_subfolders_flattened_uniquely(clean_reference: tuple[Path, Coco]) -> None:
    root, coco = clean_reference
    styled = cvat_style(root, coco)
    result = ingest_export(write_export(root, styled, "images/cvat.json"), out=root / "cvat")
    assert result.problems == [] and result.classes == list(CLASSES)
    names = [im["file_name"] for im in _all_images(root / "cvat")]
    assert len(set(n.lower() for n in names)) == 6
    assert all("/" not in n.removeprefix("images/") for n in names)
    assert "images/frame_000.png" in names and "images/frames_frame_000.png" in names  # collision resolved
    renamed = {
        im["file_name"]: sty["file_name"] for im, sty in zip(coco["images"], styled["images"], strict=True)
    }
    _assert_same_masks(root / "clean", root / "cvat", renamed.__getitem__)


def test_label_studio_style(clean_reference: tuple[Path, Coco]) -> None:
    root, coco = clean_reference
    export = write_export(root, label_studio_style(root, coco), "result.json")  # beside images/
    result = ingest_export(export, out=root / "ls")
    assert result.classes == list(CLASSES)
    assert [p.kind for p in result.problems] == ["image_size"] * 6  # its null sizes; ids from 0 are fine
    assert result.category_map == {"0": 1, "1": 2, "2": 3}
    _assert_same_masks(root / "clean", root / "ls", lambda n: f"images/{n}")
    _assert_normalised(root / "ls")


def test_label_studio_and_roboflow_exports_pass_strict(
    clean_reference: tuple[Path, Coco], capsys: pytest.CaptureFixture[str]
) -> None:
    """Both number every id from 0, which ingest renumbers anyway: nothing for --strict to refuse."""
    root, coco = clean_reference
    studio = label_studio_style(root, coco)
    for image, sized in zip(studio["images"], coco["images"], strict=True):  # sizes as the browser gave
        image.update(width=sized["width"], height=sized["height"])
    exports = [
        write_export(root, studio, "result.json"),
        write_export(root, roboflow_style(coco), "images/_annotations.coco.json"),
    ]
    for export in exports:
        with pytest.raises(SystemExit) as exit_info:
            main(["ingest", str(export), "--out", str(root / "strict"), "--strict", "--no-plot"])
        assert exit_info.value.code in (0, None), capsys.readouterr().err
        assert "problems: none" in capsys.readouterr().out


def test_roboflow_style_dummy_parent_dropped(clean_reference: tuple[Path, Coco]) -> None:
    root, coco = clean_reference
    export = write_export(root, roboflow_style(coco), "images/_annotations.coco.json")
    result = ingest_export(export, out=root / "rf", strict=True)  # its ids from 0 are no problem
    assert result.problems == [] and result.classes == list(CLASSES)
    assert "0" not in result.category_map
    meta = json.loads((root / "rf" / "dataset.json").read_text())
    assert meta["dropped_categories"] == ["office-objects"]
    _assert_same_masks(root / "clean", root / "rf")


def test_images_folder_option_and_label_studio_prefix(tmp_path: Path) -> None:
    """--images pointing at the image folder itself still finds Label Studio's images/x names."""
    coco = label_studio_style(tmp_path, make_export(tmp_path, n_images=4))
    export = write_export(tmp_path, coco, "exports/result.json")
    result = ingest_export(export, images_dir=tmp_path / "images", out=tmp_path / "dataset")
    assert result.counts["images"] == 4
    meta = json.loads((tmp_path / "dataset" / "dataset.json").read_text())
    assert meta["source"] == {
        "export": "../exports/result.json",
        "images": "../images",
        "sha256": ingest.sha256_file(export),
    }


def test_photos_the_export_does_not_list_are_counted_and_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A photo in --images the export leaves out may be labels lost in the export (a task left out,
    another project): said in one line. Not photos, hidden folders and data sets are not counted."""
    coco = make_export(tmp_path, n_images=6)
    (tmp_path / "images" / "notes.txt").write_text("not a photo")
    hidden = tmp_path / "images" / ".thumbs" / "scene_000.png"
    hidden.parent.mkdir()
    shutil.copy(tmp_path / "images" / "scene_000.png", hidden)
    listed = {**coco, "images": coco["images"][:4]}  # scene_004 and scene_005 are left out
    export = write_export(tmp_path, listed, "result.json")
    images = tmp_path / "images"
    first = ingest_export(export, images_dir=images, out=images / "dataset")  # --out inside the folder
    assert first.unlisted == [str(images / "scene_004.png"), str(images / "scene_005.png")]
    assert first.counts["unlisted"] == 2 and first.problems != []  # the dropped photos' annotations
    assert all(p.kind == "annotation_unknown_image" for p in first.problems)  # not a problem itself
    shutil.copy(images / "scene_000.png", images / "dataset" / "health.png")  # as --plot writes it
    with pytest.raises(SystemExit) as info:  # an earlier data set in the folder is not counted either
        main(["ingest", str(export), "--images", str(images), "--out", str(tmp_path / "ds"), "--no-plot"])
    out = " ".join(capsys.readouterr().out.split())
    assert info.value.code == 0
    assert (
        "note: 2 photo(s) in the image folder are not in the export, so not in the data set (unlabelled, "
        f"or labels lost in the export?): {images / 'scene_004.png'}, {images / 'scene_005.png'}"
    ) in out
    rest = {**coco, "images": coco["images"][4:]}  # a second export sharing --images lists the others
    both = [export, write_export(tmp_path, rest, "rest.json")]
    assert ingest_export(both, images_dir=images, out=tmp_path / "ds").unlisted == []


def test_the_unlisted_photos_line_names_three_and_counts_the_rest(capsys: pytest.CaptureFixture[str]) -> None:
    """Three photos are all named (no "and 0 more"); of four, three are named and one counted."""
    from officescore.cli.ingest import _say_unlisted

    _say_unlisted(["a.jpg", "b.jpg", "c.jpg"])
    assert " ".join(capsys.readouterr().out.split()).endswith("export?): a.jpg, b.jpg, c.jpg")
    _say_unlisted(["a.jpg", "b.jpg", "c.jpg", "d.jpg"])
    assert " ".join(capsys.readouterr().out.split()).endswith("export?): a.jpg, b.jpg, c.jpg and 1 more")


def test_a_data_set_written_before_rename_is_still_the_earlier_one(tmp_path: Path) -> None:
    """A dataset.json from before --rename (no "renames") is still read as the data set in --out
    (its split settings and photos kept), with no renames."""
    from officescore.cli.ingest import earlier_data_set

    ingest_export(write_export(tmp_path, make_export(tmp_path, n_images=3)), out=tmp_path / "ds", seed=3)
    path = tmp_path / "ds" / "dataset.json"
    meta = json.loads(path.read_text())
    del meta["renames"]
    path.write_text(json.dumps(meta))
    before = earlier_data_set(tmp_path / "ds")
    assert before is not None and (before["renames"], before["seed"], before["images"]) == ({}, 3, 3)


def test_accented_names_match_in_either_unicode_form(tmp_path: Path) -> None:
    """macOS and zip tools may store "é" as e + a combining accent (NFD) where the export writes one
    character (NFC): the same name, found as written (in a sub-folder too) and by base name."""
    coco = make_export(tmp_path, n_images=4)
    images = tmp_path / "images"
    (images / unicodedata.normalize("NFD", "café")).mkdir()
    written = ["café 0.png", "café/photo 1.png", "../elsewhere/Bürostuhl 2.png", "../elsewhere/Büro 3.png"]
    forms = ["NFC", "NFC", "NFC", "NFD"]  # the export's; the files on disk have the other form
    for image, name, form in zip(coco["images"], written, forms, strict=True):
        on_disk = name.replace("../elsewhere/", "")
        (images / image["file_name"]).rename(images / unicodedata.normalize(_other(form), on_disk))
        image["file_name"] = unicodedata.normalize(form, name)
    result = ingest_export(write_export(tmp_path, coco), out=tmp_path / "dataset")
    assert result.counts["images"] == 4, result.problems
    assert [unicodedata.normalize("NFC", p.image) for p in result.problems] == written[2:]
    assert {p.kind for p in result.problems} == {"image_found_by_name"}


def _other(form: str) -> str:
    return "NFD" if form == "NFC" else "NFC"


def test_out_inside_the_image_folder_twice_never_finds_its_own_copies(tmp_path: Path) -> None:
    """`--out` inside `--images`, with names found by base name (Label Studio's images/x): the second
    run must not also find the first run's copies in OUT/images (hard links, same names) and call
    every photo ambiguous."""
    coco = label_studio_style(tmp_path, make_export(tmp_path, n_images=4))
    export = write_export(tmp_path, coco, "exports/result.json")
    images, out = tmp_path / "images", tmp_path / "images" / "dataset"
    for run in (1, 2):
        result = ingest_export(export, images_dir=images, out=out)
        assert result.counts["images"] == 4, (run, result.problems)
        kinds = {p.kind for p in result.problems}
        assert "image_ambiguous" not in kinds and "image_found_by_name" in kinds, (run, kinds)
        found = {p.image for p in result.problems if p.kind == "image_found_by_name"}
        assert found == {im["file_name"] for im in coco["images"]}
    assert sorted(p.name for p in (out / "images").iterdir()) == sorted(
        Path(im["file_name"]).name for im in coco["images"]
    )  # the data set holds the photos once, not copies of its own copies


# ---------------------------------------------------------------- classes


def test_a_class_spelt_otherwise_in_another_export_is_the_same_class(tmp_path: Path) -> None:
    """CVAT's label typed "Chair", Roboflow's "chair": matched by name, they were two classes, each
    with half the chairs (and a model that learns to tell a chair from a chair)."""
    cvat = make_export(tmp_path / "cvat", n_images=4, classes=("desk", "Chair", "mug"))
    roboflow = make_export(tmp_path / "rf", n_images=4, classes=("potted_plant", " chair", "MUG"), seed=1)
    roboflow["categories"].append({"id": 4, "name": "Potted Plant"})  # the same export, spelt twice
    roboflow["annotations"][0]["category_id"] = 4
    exports = [write_export(tmp_path / "cvat", cvat), write_export(tmp_path / "rf", roboflow)]
    result = ingest_export(exports, out=tmp_path / "dataset")

    assert result.classes == ["desk", "Chair", "mug", "potted_plant"]
    assert result.category_map == {"1:1": 1, "1:2": 2, "1:3": 3, "2:1": 4, "2:2": 2, "2:3": 3, "2:4": 4}
    spelt = [p for p in result.problems if p.kind == "category_spelling"]
    assert [p.action for p in spelt] == ["read as 'Chair'", "read as 'mug'", "read as 'potted_plant'"]
    assert spelt[0].what == (
        "category 'chair' (id 2) is 'Chair' written with other case, spaces or underscores"
    )
    assert all(p.image == str(exports[1]) for p in spelt)
    assert result.counts["annotations"] == len(cvat["annotations"]) + len(roboflow["annotations"])


def test_classes_spell_the_classes_they_name(tmp_path: Path) -> None:
    """`--classes mug,desk` on an export that says "Mug" and "DESK" keeps them, spelt as asked (the
    way to take officescore's spelling, which the packaged rubric scores)."""
    coco = make_export(tmp_path, n_images=6, classes=("DESK", "chair", "Mug"))
    result = ingest_export(write_export(tmp_path, coco), out=tmp_path / "dataset", classes=["mug", "desk"])
    assert result.classes == ["mug", "desk"] and result.category_map == {"1": 2, "3": 1}
    assert [p.action for p in result.problems] == ["read as 'desk'", "read as 'mug'"]


def test_cli_says_a_class_is_officescores_spelt_otherwise(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # book: COCO's, but of no officescore class; laptop: COCO's and officescore's, spelt alike
    coco = make_export(tmp_path, n_images=6, classes=("Chair", "potted plant", "Mug ", "book", "laptop"))
    with pytest.raises(SystemExit) as info:
        main(["ingest", str(write_export(tmp_path, coco)), "--out", str(tmp_path / "ds"), "--no-plot"])
    assert info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert (
        "note: class(es) Chair, Mug: officescore's chair, mug spelt otherwise, and the packaged rubric "
        "scores only its own spelling; to take it, ingest again with "
        "--classes 'chair,potted plant,mug,book,laptop'"
    ) in out
    assert (  # a COCO subset's names (data/coco_to_office.toml), which --classes cannot respell
        "note: class(es) potted plant: COCO's names for officescore's plant, the names the packaged rubric "
        "scores; to train them as those, ingest again with --rename 'potted plant=plant'"
    ) in out
    args = ["ingest", str(write_export(tmp_path, coco)), "--out", str(tmp_path / "ds"), "--no-plot"]
    with pytest.raises(SystemExit) as info:  # the advice taken
        main([*args, "--rename", "potted plant=plant"])
    out = " ".join(capsys.readouterr().out.split())
    assert info.value.code == 0 and "COCO's names" not in out
    assert "renamed by --rename: potted plant -> plant" in out


def test_rename_gives_a_category_another_name_before_classes_are_matched(tmp_path: Path) -> None:
    """COCO's names as officescore's, OLD compared as class names are (case, spaces, underscores);
    --classes and --convention then use the new names, and dataset.json records what became what."""
    coco = make_export(tmp_path, n_images=6, classes=("desk", "Potted_Plant", "tv"))
    result = ingest_export(
        write_export(tmp_path, coco),
        out=tmp_path / "dataset",
        renames={"potted plant": "plant", "TV": "monitor"},
        classes=["monitor", "plant"],
        conventions={"plant": Declared("whole")},
        strict=True,  # a rename asked for is no problem
    )
    assert result.classes == ["monitor", "plant"] and result.category_map == {"2": 2, "3": 1}
    assert result.renamed == {"Potted_Plant": "plant", "tv": "monitor"} and result.merged == {}
    meta = json.loads((tmp_path / "dataset" / "dataset.json").read_text())
    assert meta["renames"] == {"Potted_Plant": "plant", "tv": "monitor"}
    assert meta["conventions"] == {"plant": {"convention": "whole", "note": ""}}
    assert [c["name"] for c in _load(tmp_path / "dataset", "train")["categories"]] == ["monitor", "plant"]


def test_two_renamed_onto_one_name_make_one_class_and_it_is_said(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    coco = make_export(tmp_path, n_images=6)  # desk, chair, mug
    export = write_export(tmp_path, coco)
    result = ingest_export(export, out=tmp_path / "ds", renames={"chair": "seat", "mug": "seat"}, strict=True)
    assert result.classes == ["desk", "seat"] and result.merged == {"seat": ["chair", "mug"]}
    assert result.counts["annotations"] == len(coco["annotations"])  # nothing lost in the merge
    onto = ingest_export(export, out=tmp_path / "ds", renames={"mug": "Chair"}, strict=True)
    assert onto.classes == ["desk", "chair"] and onto.merged == {"chair": ["chair", "mug"]}
    args = ["ingest", str(export), "--out", str(tmp_path / "ds"), "--no-plot"]
    with pytest.raises(SystemExit) as info:
        main([*args, "--rename", "chair=seat", "--rename", "MUG=seat"])
    out = " ".join(capsys.readouterr().out.split())
    assert info.value.code == 0
    assert "renamed by --rename: chair -> seat, mug -> seat" in out
    assert "merged by --rename into one class seat: chair, mug" in out
    with pytest.raises(SystemExit) as info:  # a later ingest without them: the classes change back
        main(args)
    out = " ".join(capsys.readouterr().out.split())
    assert (
        "note: the data set that was there renamed chair -> seat, mug -> seat (ingest --rename); this "
        "ingest did not, so those classes take the export's names"
    ) in out


def test_a_photo_listed_twice_says_the_one_annotation_dropped_with_it(tmp_path: Path) -> None:
    """A second image entry of the same file is dropped with its labels: one label is said too."""
    coco = make_export(tmp_path, n_images=3)
    coco["images"][1]["file_name"] = coco["images"][0]["file_name"]
    second = coco["images"][1]["id"]
    on_second = [a for a in coco["annotations"] if a["image_id"] == second]
    assert on_second
    coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] != second] + on_second[:1]
    result = ingest_export(write_export(tmp_path, coco), out=tmp_path / "ds")
    (dup,) = [p for p in result.problems if p.kind == "image_duplicate_file"]
    assert dup.action == "later one dropped, with its 1 annotation(s)"


def test_merged_names_only_what_rename_joined_into_a_class_kept(tmp_path: Path) -> None:
    """Two exports spelling one class two ways is no --rename merge; a merge into a class --classes
    leaves out is not said; an unknown OLD names the categories of all the exports."""
    coco = make_export(tmp_path, n_images=4)  # desk, chair, mug
    first = write_export(tmp_path, {**coco, "images": coco["images"][:2]}, "first.json")
    respelt = [{**c, "name": c["name"].title()} for c in coco["categories"]]
    second = write_export(
        tmp_path, {**coco, "images": coco["images"][2:], "categories": respelt}, "second.json"
    )
    both, images = [first, second], tmp_path / "images"
    assert ingest_export(both, images_dir=images, out=tmp_path / "ds").merged == {}
    with pytest.raises(
        DataError, match=r"no such category; the exports have: desk, chair, mug, Desk, Chair, Mug$"
    ):
        ingest_export(both, images_dir=images, out=tmp_path / "ds", renames={"sofa": "seat"})
    left_out = ingest_export(
        first,
        images_dir=images,
        out=tmp_path / "ds",
        renames={"chair": "seat", "mug": "seat"},
        classes=["desk"],
    )
    assert left_out.classes == ["desk"] and left_out.merged == {}


def test_a_rename_given_again_onto_another_name_is_said_to_change_the_class(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """chair=seat, then chair=stool: the class seat is gone, said as for a rename not given again."""
    export = write_export(tmp_path, make_export(tmp_path, n_images=3))
    ingest_export(export, out=tmp_path / "ds", renames={"chair": "seat"})
    with pytest.raises(SystemExit) as info:
        main(["ingest", str(export), "--out", str(tmp_path / "ds"), "--no-plot", "--rename", "chair=stool"])
    out = " ".join(capsys.readouterr().out.split())
    assert (
        info.value.code == 0 and "the data set that was there renamed chair -> seat (ingest --rename)" in out
    )


def test_a_rename_of_no_category_is_one_line_naming_the_categories(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    export = write_export(tmp_path, make_export(tmp_path, n_images=3))
    with pytest.raises(
        DataError, match=r"^--rename sofa=chair: no such category; the export has: desk, chair, mug$"
    ):
        ingest_export(export, out=tmp_path / "ds", renames={"desk": "table", "sofa": "chair"})
    assert not (tmp_path / "ds").exists()
    for bad, said in [
        (["sofa"], "--rename 'sofa': write OLD=NEW"),
        (["desk="], "--rename 'desk=': write OLD=NEW"),
        (["desk=table", "Desk=bench"], "--rename 'Desk=bench': 'desk' is already renamed to 'table'"),
    ]:
        with pytest.raises(SystemExit) as info:
            main(["ingest", str(export), "--out", str(tmp_path / "ds"), *[f"--rename={r}" for r in bad]])
        err = capsys.readouterr().err
        assert info.value.code == 2 and said in err and "Traceback" not in err
    config = tmp_path / "officescore.toml"  # the config file's [ingest] table sets it as the flag does
    config.write_text('[ingest]\nrename = ["mug=cup"]\n')
    monkeypatch.setenv("OFFICESCORE_CONFIG", str(config))
    with pytest.raises(SystemExit) as info:
        main(["ingest", str(export), "--out", str(tmp_path / "ds"), "--no-plot"])
    assert info.value.code == 0 and "renamed by --rename: mug -> cup" in capsys.readouterr().out


def test_classes_keeps_only_those_in_given_order(tmp_path: Path) -> None:
    coco = make_export(tmp_path, n_images=6)
    result = ingest_export(write_export(tmp_path, coco), out=tmp_path / "dataset", classes=["mug", "desk"])
    assert result.classes == ["mug", "desk"]
    assert result.category_map == {"1": 2, "3": 1}
    chairs = sum(a["category_id"] == 2 for a in coco["annotations"])
    assert result.counts["excluded_by_classes"] == chairs
    assert result.counts["dropped"] == {"images": 0, "annotations": 0}  # left out is not dropped
    assert result.counts["annotations"] == len(coco["annotations"]) - chairs
    assert result.problems == []
    _assert_normalised(tmp_path / "dataset")


def test_cli_says_what_classes_left_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    coco = make_export(tmp_path, n_images=6)
    export = write_export(tmp_path, coco)
    with pytest.raises(SystemExit) as info:
        main(["ingest", str(export), "--out", str(tmp_path / "ds"), "--classes", "mug,desk", "--no-plot"])
    assert info.value.code == 0
    chairs = sum(a["category_id"] == 2 for a in coco["annotations"])
    out = capsys.readouterr().out
    assert f"left out by --classes: {chairs} annotation(s)" in out
    assert not (tmp_path / "ds" / "health.png").exists()  # --no-plot
    assert "the split the earlier ingest gave them" not in out  # a first ingest keeps none
    with pytest.raises(SystemExit) as info:  # --json names them too
        main(["ingest", str(export), "--out", str(tmp_path / "ds"), "--classes", "mug,desk", "--json"])
    assert json.loads(capsys.readouterr().out)["ingest"]["excluded_classes"] == ["chair"]


def test_cli_names_categories_that_are_not_classes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A category with no object (Roboflow's parent, a label nobody drew) was in dataset.json only:
    the data set had a class fewer than the export, and the model never finds it."""
    coco = make_export(tmp_path, n_images=6)
    coco["categories"] = [{"id": 0, "name": "office-objects"}, *coco["categories"], {"id": 9, "name": "lamp"}]
    export = write_export(tmp_path, coco)
    with pytest.raises(SystemExit):
        main(["ingest", str(export), "--out", str(tmp_path / "ds"), "--no-plot"])
    out = " ".join(capsys.readouterr().out.split())
    assert (
        "categories with no object left after the checks, not classes of the data set: office-objects, lamp"
        in out
    )
    with pytest.raises(SystemExit):  # --classes chose them: nothing to say
        main(["ingest", str(export), "--out", str(tmp_path / "ds"), "--no-plot", "--classes", "desk"])
    assert "not classes of the data set" not in capsys.readouterr().out


# ---------------------------------------------------------------- split


def _split_of(folder: Path) -> dict[str, str]:
    return {
        im["original_file_name"]: split for split in ("train", "val") for im in _load(folder, split)["images"]
    }


def test_duplicates_never_leak_across_splits(tmp_path: Path) -> None:
    coco = make_export(tmp_path, n_images=12)
    folder = tmp_path / "images"
    base = Image.open(folder / "scene_000.png")
    shutil.copy(folder / "scene_000.png", folder / "exact_copy.png")
    base.resize((144, 96)).save(folder / "resized_copy.png")
    base.convert("RGB").save(folder / "reencoded_copy.jpg", quality=40)
    anns = [a for a in coco["annotations"] if a["image_id"] == 1]
    for index, (name, scale) in enumerate(
        (("exact_copy.png", 1), ("resized_copy.png", 1.5), ("reencoded_copy.jpg", 1))
    ):
        image_id = 100 + index
        coco["images"].append(
            {"id": image_id, "file_name": name, "width": int(96 * scale), "height": int(64 * scale)}
        )
        for ann in anns:
            seg = ann["segmentation"]
            if isinstance(seg, dict):
                seg = (
                    masks.encode(np.kron(masks.decode(seg), np.ones((3, 3), np.uint8))[::2, ::2])
                    if scale != 1
                    else seg
                )
            else:
                seg = [[v * scale for v in poly] for poly in seg]
            coco["annotations"].append(
                {**ann, "id": 1000 + len(coco["annotations"]), "image_id": image_id, "segmentation": seg}
            )
    export = write_export(tmp_path, coco)
    group = {"scene_000.png", "exact_copy.png", "resized_copy.png", "reencoded_copy.jpg"}
    splits_seen = set()
    for seed in range(8):
        result = ingest_export(export, out=tmp_path / "dataset", seed=seed, val_fraction=0.5)
        assert result.problems == []
        split = _split_of(tmp_path / "dataset")
        assert len({split[name] for name in group}) == 1, (seed, split)
        splits_seen.add(split["scene_000.png"])
        assert [set(n.removeprefix("images/") for n in g) for g in result.duplicate_groups] == [group]
    assert splits_seen == {"train", "val"}  # the group does move, always as one


def test_phash_threshold_separates_copies_from_scenes(tmp_path: Path) -> None:
    """Re-measure the documented gap on fresh sample scenes: copies <= threshold < distinct scenes."""
    import imagehash

    from officescore.ingest.split import hamming_pairs
    from officescore.sample import write_sample

    write_sample(tmp_path, n_images=24, seed=5, size=192)
    paths = sorted((tmp_path / "images").iterdir())

    def phash(image: Image.Image) -> int:
        return int(str(imagehash.phash(image)), 16)

    hashes = [phash(Image.open(p).convert("RGB")) for p in paths]
    assert hamming_pairs(hashes, PHASH_THRESHOLD) == []  # no two distinct scenes grouped
    for path, original in zip(paths[:6], hashes[:6], strict=True):
        image = Image.open(path).convert("RGB")
        buffer = io.BytesIO()
        image.resize((96, 96)).save(buffer, "JPEG", quality=40)
        variants = [image.resize((288, 288)), Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")]
        assert all(bin(phash(v) ^ original).count("1") <= PHASH_THRESHOLD for v in variants)


def _with_rare_class(root: Path, n_images: int) -> Coco:
    """make_export plus a class ('lamp') on exactly two images."""
    coco = make_export(root, n_images=n_images)
    coco["categories"].append({"id": 4, "name": "lamp"})
    for image_id in (3, 7):
        coco["annotations"].append(
            {
                "id": 500 + image_id,
                "image_id": image_id,
                "category_id": 4,
                "segmentation": [[60, 40, 90, 40, 90, 60]],
            }
        )
    return coco


def test_every_class_in_val_and_train(tmp_path: Path) -> None:
    export = write_export(tmp_path, _with_rare_class(tmp_path, 20))
    for seed in range(5):
        ingest_export(export, out=tmp_path / "dataset", seed=seed, val_fraction=0.1)
        for split in ("train", "val"):
            coco = _load(tmp_path / "dataset", split)
            present = {
                c["name"]
                for c in coco["categories"]
                if any(a["category_id"] == c["id"] for a in coco["annotations"])
            }
            assert present == {*CLASSES, "lamp"}, (seed, split)
        assert len(_load(tmp_path / "dataset", "val")["images"]) <= 4


def test_the_split_does_not_depend_on_the_order_the_export_lists_its_photos(tmp_path: Path) -> None:
    coco = make_export(tmp_path, n_images=10)
    forward = write_export(tmp_path, coco, name="images/forward.json")
    coco["images"].reverse()
    backward = write_export(tmp_path, coco, name="images/backward.json")
    ingest_export(forward, out=tmp_path / "d1")
    ingest_export(backward, out=tmp_path / "d2")
    assert _split_of(tmp_path / "d1") == _split_of(tmp_path / "d2")


def test_val_gets_a_real_object_of_each_class_not_only_an_ignore_region(tmp_path: Path) -> None:
    """Desks are crowd regions on all but two photos: covering the class in val takes one of those
    two, as a crowd region is nothing to measure a desk detector on."""
    coco = make_export(tmp_path, n_images=12)
    desks = [a for a in coco["annotations"] if a["category_id"] == 1]
    real = {desks[0]["image_id"], desks[-1]["image_id"]}
    for ann in desks:
        ann["iscrowd"] = int(ann["image_id"] not in real)
    export = write_export(tmp_path, coco)
    for seed in range(8):
        ingest_export(export, out=tmp_path / "dataset", seed=seed, val_fraction=0.1)
        for split in ("train", "val"):
            anns = _load(tmp_path / "dataset", split)["annotations"]
            assert any(a["category_id"] == 1 and not a["iscrowd"] for a in anns), (seed, split)


def test_split_is_deterministic_by_seed(tmp_path: Path) -> None:
    export = write_export(tmp_path, make_export(tmp_path, n_images=20))
    outputs = {}
    for run, seed in enumerate((1, 1, 2)):
        out = tmp_path / f"d{run}"
        ingest_export(export, out=out, seed=seed)
        outputs[run] = ((out / "train.json").read_bytes(), (out / "val.json").read_bytes(), _split_of(out))
    assert outputs[0][:2] == outputs[1][:2]
    assert outputs[0][2] != outputs[2][2]
    assert sum(s == "val" for s in outputs[0][2].values()) == 4


def test_a_growing_export_keeps_every_earlier_photo_in_its_split(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`label pull --ingest` after every labelling session re-split the whole data set: photos moved
    between train and val, so mAP of two rounds measured other photos and a model had trained on
    photos its next val held. With the same seed and val fraction each photo keeps its split."""
    full = make_export(tmp_path, n_images=30)
    first_images = full["images"][:20]
    ids = {im["id"] for im in first_images}
    first = {
        **full,
        "images": first_images,
        "annotations": [a for a in full["annotations"] if a["image_id"] in ids],
    }
    out = tmp_path / "dataset"
    ingest_export(write_export(tmp_path, first, "images/round1.json"), out=out)
    before = _split_of(out)
    assert len(before) == 20 and list(before.values()).count("val") == 4
    _forget_sha256(out)  # a data set from before sha256 was recorded: hashed from its photos
    grown = write_export(tmp_path, full, "images/round2.json")
    with pytest.raises(SystemExit):
        main(["ingest", str(grown), "--out", str(out), "--no-plot"])
    said = " ".join(capsys.readouterr().out.split())
    after = _split_of(out)
    assert {name: after[name] for name in before} == before  # not one earlier photo moved
    assert list(after.values()).count("val") == 6  # new photos fill val to its share of 30
    assert "kept 20 photo(s) in the split the earlier ingest gave them" in said
    assert "comparable; the 10 new photo(s) were split around them" in said
    assert "replaced" not in said  # another file name, but every earlier photo is still there
    assert json.loads((out / "dataset.json").read_text())["counts"]["split_kept"] == 20
    with pytest.raises(SystemExit):  # the same export again: no new photo to speak of
        main(["ingest", str(grown), "--out", str(out), "--no-plot"])
    said = " ".join(capsys.readouterr().out.split())
    assert "kept 30 photo(s)" in said and "new photo" not in said
    fresh = ingest_export(grown, out=out, seed=7)  # other settings: a new split
    assert fresh.counts["split_kept"] == 0 and _split_of(out) != after
    assert ingest_export(grown, out=out, seed=7, val_fraction=0.3).counts["split_kept"] == 0


def test_an_older_data_set_missing_a_photo_keeps_the_splits_of_the_others(tmp_path: Path) -> None:
    """A data set written before sha256 was recorded is hashed from its photos: one deleted by hand
    is left out, not every earlier split forgotten."""
    out = tmp_path / "dataset"
    ingest_export(write_export(tmp_path, make_export(tmp_path, n_images=6)), out=out, seed=3)
    _forget_sha256(out)
    (out / _load(out, "train")["images"][0]["file_name"]).unlink()
    kept = ingest_write.earlier_split(out, 3, 0.2)
    assert len(kept) == 5 and list(kept.values()).count("val") == len(_load(out, "val")["images"])


def test_read_dataset_meta_is_none_unless_an_officescore_data_set_is_there(tmp_path: Path) -> None:
    """The one reader behind check_out, earlier_split and the CLI's notes: no folder, no file, a
    damaged file and another tool's dataset.json are all "no earlier data set"."""
    out = tmp_path / "dataset"
    assert ingest_write.read_dataset_meta(out) is None
    out.mkdir()
    assert ingest_write.read_dataset_meta(out) is None
    for text in ("{not json", "[1, 2]", json.dumps({"format": "another-tool", "classes": ["desk"]})):
        (out / "dataset.json").write_text(text)
        assert ingest_write.read_dataset_meta(out) is None, text
    export = write_export(tmp_path, make_export(tmp_path, n_images=4))
    with pytest.raises(DataError, match="not empty and is not an officescore data set"):
        ingest_export(export, out=out)
    (out / "dataset.json").unlink()
    ingest_export(export, out=out, seed=5)
    meta = ingest_write.read_dataset_meta(out)
    assert meta is not None and meta["format"] == ingest_write.DATASET_FORMAT and meta["seed"] == 5


def _forget_sha256(folder: Path) -> None:
    """The data set as ingest wrote it before it recorded each photo's sha256."""
    for split in ("train", "val"):
        doc = _load(folder, split)
        for image in doc["images"]:
            del image["sha256"]
        (folder / f"{split}.json").write_text(json.dumps(doc))


def test_split_groups_keeps_earlier_splits_and_never_leaks() -> None:
    from officescore.ingest.split import split_groups

    classes = [{"desk"}, {"desk"}, {"chair"}, {"chair"}, {"desk"}, {"chair"}]
    groups = [0, 0, 2, 3, 4, 5]  # images 0 and 1 are duplicates: one was in train, a new one joins
    previous = ["train", None, "val", None, None, "train"]
    got = split_groups(groups, classes, 0.3, seed=0, previous=previous)
    assert got[2] == "val" and got[5] == "train" and got[0] == got[1] == "train"
    assert split_groups(groups, classes, 0.3, seed=0, previous=["val", "train", *previous[2:]])[:2] == [
        "val",
        "val",
    ]  # a group with any val photo stays in val: no duplicate in train
    assert split_groups(groups, classes, 0.3, seed=0) == split_groups(groups, classes, 0.3, 0, [None] * 6)
    # val already holds its share and a desk: no new desk photo is forced into it
    desks = [{"desk"}] * 4
    assert split_groups([0, 1, 2, 3], desks, 0.25, seed=0, previous=["val", "train", None, None]) == [
        "val",
        "train",
        "train",
        "train",
    ]


def test_split_groups_never_moves_an_earlier_photo_whatever_the_seed() -> None:
    """Earlier photos keep their split however a group or class falls: a duplicate group whose
    earlier photo sorts after the new one, a group of an earlier train photo and a new copy of it,
    and a class that val lacks and only new photos can bring there."""
    from officescore.ingest.split import split_groups

    desks = [{"desk"}] * 5
    for seed in range(10):
        # a new copy sorted first joins its earlier val photo in val; an earlier train photo's new
        # copy stays in train with it, although val has room for two more
        got = split_groups([0, 0, 1, 2, 3], desks, 0.5, seed, [None, "val", "train", "train", None])
        assert got[:2] == ["val", "val"], seed
        got = split_groups([0, 0, 1, 2, 3], desks, 0.6, seed, ["train", None, "train", "train", None])
        assert got[:2] == ["train", "train"] and got[4] == "val", seed
        # a lamp in an earlier train photo and a new one: the new one goes to val for it
        classes = [{"desk", "lamp"}, {"desk", "lamp"}, {"desk"}, {"desk"}, {"desk"}, {"desk"}]
        got = split_groups(
            [0, 1, 2, 3, 4, 5], classes, 0.3, seed, ["train", None, "val", "train", "train", None]
        )
        assert got[:3] == ["train", "val", "val"], seed


def test_label_pull_ingest_keeps_a_data_set_without_val_without_val() -> None:
    """`label pull --ingest` grows a data set ingested with --val-fraction 0 (train on every photo)
    with 0 too: taken as unrecorded, the default 0.2 would move its photos into val."""
    from officescore.cli.ingest import split_settings

    assert split_settings({"seed": 3, "val_fraction": 0.0}) == {"seed": 3, "val_fraction": 0.0}
    assert split_settings({"seed": 3, "val_fraction": 1.0}) == {}  # not a fraction ingest writes


def test_no_val_when_fraction_zero(tmp_path: Path) -> None:
    export = write_export(tmp_path, make_export(tmp_path, n_images=5))
    result = ingest_export(export, out=tmp_path / "dataset", val_fraction=0.0)
    assert result.counts["val"]["images"] == 0 and result.counts["train"]["images"] == 5
    assert _load(tmp_path / "dataset", "val")["images"] == []


# ---------------------------------------------------------------- output folder


def test_data_set_is_readable_as_the_umask_allows(tmp_path: Path) -> None:
    """Temp folders and atomic writes are private (0700/0600); a data set is meant to be shared."""
    from officescore.ingest.health import health_report, save_health_plot

    export = write_export(tmp_path, make_export(tmp_path, n_images=3))
    old = os.umask(0o022)
    try:
        ingest_export(export, out=tmp_path / "dataset")
        save_health_plot(health_report(tmp_path / "dataset"), tmp_path / "dataset" / "health.png")
    finally:
        os.umask(old)
    modes = {
        p.name: p.stat().st_mode & 0o777 for p in [tmp_path / "dataset", *(tmp_path / "dataset").iterdir()]
    }
    assert modes == {
        "dataset": 0o755,
        "images": 0o755,
        "train.json": 0o644,
        "val.json": 0o644,
        "dataset.json": 0o644,
        "health.png": 0o644,
    }


def test_out_folder_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    export = write_export(tmp_path, make_export(tmp_path, n_images=5))
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="not empty and is not an officescore data set"):
        ingest_export(export, out=other)
    assert (other / "notes.txt").read_text() == "mine"
    with pytest.raises(DataError, match="replace the image folder"):
        ingest_export(export, out=tmp_path / "images")

    out = tmp_path / "dataset"
    ingest_export(export, out=out, seed=0)
    (out / "health.png").write_bytes(b"old plot")
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}

    def fail(src: Path, dst: Path) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(ingest_write, "_link_or_copy", fail)
    with pytest.raises(OSError, match="disk full"):
        ingest_export(export, out=out, seed=1)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "dataset",
        "images",
        "other",
    ]  # no temp folders left

    monkeypatch.undo()
    with pytest.raises(DataError, match="replace the image folder"):  # photos inside the data set
        ingest_export(export, images_dir=out / "images", out=out)
    ingest_export(export, out=out, seed=1)  # an existing data set is replaced
    assert not (out / "health.png").exists()
    assert json.loads((out / "dataset.json").read_text())["seed"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset", "images", "other"]


def test_unique_names_are_safe_short_and_distinct() -> None:
    files = ["a/x.jpg", "b/x.jpg", "c/b/x.jpg", "X.JPG", "büro foto.jpg", "..hidden.png", "z" * 300 + ".png"]
    records = [ImageRecord(str(i), name, Path(name), 1, 1, "", 0) for i, name in enumerate(files)]
    ingest_write.unique_names(records)
    names = [r.out_name for r in records]
    assert names[:6] == ["x.jpg", "b_x.jpg", "c_b_x.jpg", "X-2.JPG", "büro_foto.jpg", "hidden.png"]
    assert names[6].endswith(".png") and len(names[6].encode()) <= ingest_write.MAX_NAME
    assert len({n.lower() for n in names}) == len(names)


def test_hard_link_falls_back_to_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    export = write_export(tmp_path, make_export(tmp_path, n_images=3))

    def no_links(src: Any, dst: Any) -> None:
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_links)
    ingest_export(export, out=tmp_path / "dataset")
    image = _all_images(tmp_path / "dataset")[0]
    copied, source = (
        tmp_path / "dataset" / image["file_name"],
        tmp_path / "images" / image["original_file_name"],
    )
    assert copied.read_bytes() == source.read_bytes()
    assert os.stat(copied).st_ino != os.stat(source).st_ino


# ---------------------------------------------------------------- CLI


def test_cli_ingest_json_and_progress(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    coco = make_export(tmp_path, n_images=6)
    _set(_polygon_ann, segmentation=[[1, 1, 20, 1, 20]])(tmp_path, coco)
    export = write_export(tmp_path, coco)
    with pytest.raises(SystemExit) as exit_info:
        main(["ingest", str(export), "--out", str(tmp_path / "dataset"), "--json", "--seed", "2"])
    assert exit_info.value.code == 0
    captured = capsys.readouterr()
    payload = json.loads(captured.out)
    assert payload["ingest"]["classes"] == list(CLASSES)
    assert payload["ingest"]["problems"][0]["kind"] == "polygon_odd"
    assert payload["health"]["problems"] == {"total": 1, "by_kind": {"polygon_odd": 1}}
    assert Path(payload["plot"]).is_file()

    with pytest.raises(SystemExit) as exit_info:
        main(["ingest", str(export), "--out", str(tmp_path / "dataset")])
    assert exit_info.value.code == 0
    captured = capsys.readouterr()
    assert "Checking images: 6/6" in captured.err  # one line per stage off a terminal
    assert "scene_" in captured.out and "polygon_odd" in captured.out
    assert "wrote" in captured.out and "1 problem(s)" in captured.out


def test_last_wins_takes_a_reviewed_photos_labels_from_the_review_export_and_keeps_splits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The review loop: a data set of 6 photos, then 2 of them fixed in a review project (one object
    reclassed on the first, the second's first object deleted) and its export ingested after the
    original with --last-wins: still 6 photos, the 2 reviewed with the review's labels only, no
    duplicate problem, the replaced labels counted, every photo in the split it had. Without the
    option both copies stay (the problem above); with one export it is refused in one line."""
    classes = ("desk", "chair", "mug")
    original = make_export(tmp_path / "labels", n_images=6, classes=classes)
    review = make_export(tmp_path / "review", n_images=2, classes=classes)  # the same first 2 photos
    review["annotations"][0]["category_id"] = review["annotations"][0]["category_id"] % 3 + 1
    review["annotations"] = [a for a in review["annotations"] if a["id"] != 3]  # photo 2's first
    labels = str(write_export(tmp_path / "labels", original))
    fixes = str(write_export(tmp_path / "review", review))
    out = tmp_path / "dataset"
    with pytest.raises(SystemExit) as info:
        main(["ingest", labels, "--out", str(out), "--json"])
    assert info.value.code == 0
    capsys.readouterr()
    before = _split_of_names(out)

    with pytest.raises(SystemExit) as info:
        main(["ingest", labels, fixes, "--out", str(out), "--last-wins", "--json"])
    assert info.value.code == 0
    result = json.loads(capsys.readouterr().out)["ingest"]
    assert result["problems"] == []
    on_reviewed = sum(a["image_id"] <= 2 for a in original["annotations"])
    assert result["counts"]["replaced"] == {"images": 2, "annotations": on_reviewed}
    assert result["counts"]["dropped"] == {"images": 0, "annotations": 0}
    total = len(original["annotations"]) - on_reviewed + len(review["annotations"])
    assert result["counts"]["annotations"] == total
    assert _split_of_names(out) == before  # the same 6 names, each in its split
    found: dict[str, list[str]] = {}
    for split in ("train", "val"):
        data = json.loads((out / f"{split}.json").read_text())
        names = {im["id"]: im["file_name"] for im in data["images"]}
        kinds = {c["id"]: c["name"] for c in data["categories"]}
        for ann in data["annotations"]:
            found.setdefault(Path(names[ann["image_id"]]).name, []).append(kinds[ann["category_id"]])
    assert sorted(found["scene_000.png"]) == ["desk", "mug"]  # was desk and chair
    assert found["scene_001.png"] == ["chair"]  # its mug deleted in review
    assert sorted(found["scene_002.png"]) == ["desk", "mug"]  # not reviewed: as labelled

    with pytest.raises(SystemExit) as info:
        main(["ingest", labels, fixes, "--out", str(out), "--last-wins"])
    assert info.value.code == 0
    assert "--last-wins: 2 photo(s) take their labels from a later export" in capsys.readouterr().out
    # the labels alone again (`label pull --ingest` of the labelling project after the review): the
    # two photos lose their corrections, which a note says, with the ingest that keeps them
    with pytest.raises(SystemExit) as info:
        main(["ingest", labels, "--out", str(out)])
    assert info.value.code == 0
    said = " ".join(capsys.readouterr().out.split())
    assert f"took the labels of 2 photo(s) from {os.path.normpath(fixes)} (--last-wins)" in said
    assert f"ingest {os.path.normpath(labels)} {os.path.normpath(fixes)} --last-wins to keep them" in said
    with pytest.raises(SystemExit) as info:
        main(["ingest", labels, "--out", str(out), "--last-wins"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "--last-wins needs two or more exports" in err
    assert "Traceback" not in err


def test_last_wins_says_so_for_a_single_reviewed_photo(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    labels = str(write_export(tmp_path / "labels", make_export(tmp_path / "labels", n_images=3)))
    fixes = str(write_export(tmp_path / "review", make_export(tmp_path / "review", n_images=1)))
    with pytest.raises(SystemExit) as info:
        main(["ingest", labels, fixes, "--out", str(tmp_path / "dataset"), "--last-wins"])
    assert info.value.code == 0
    assert "--last-wins: 1 photo(s) take their labels from a later export" in capsys.readouterr().out


def _split_of_names(out: Path) -> dict[str, str]:
    return {
        im["file_name"]: split
        for split in ("train", "val")
        for im in json.loads((out / f"{split}.json").read_text())["images"]
    }
