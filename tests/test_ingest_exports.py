"""`ingest` of exports in exactly the shapes real tools write them (fixtures built here, not copied):

- Label Studio 1.23 COCO (`GET /api/projects/ID/export?exportType=COCO`): file names
  `../<data-dir>/media/upload/<project>/<8 hex>-scene_00000.jpg`, every id from 0, rectangles
  with an empty segmentation, `info.contributor` "Label Studio".
- CVAT "COCO 1.0" `instances_default.json`: brush masks as uncompressed RLE with iscrowd 1,
  rectangles with an empty segmentation, `attributes` (occluded, ...) on every annotation.
- VGG Image Annotator's COCO export: `segmentation` one flat coordinate list, `image_id` a string
  while image ids are integers, `area` the box's area.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pytest
from exports import draw_scene, make_export, write_export
from labelmodels import polygon_region, write_photos
from PIL import Image
from test_label_pull import StandIn

from officescore import masks
from officescore.cli import main
from officescore.errors import DataError
from officescore.images import load_image
from officescore.ingest import ingest_export
from officescore.ingest import run as ingest
from officescore.ingest.checks import IGNORE_REGION
from officescore.label.formats import LabelSchema
from officescore.label.pull import pull_project

W, H = 96, 64
PREFIXES = ["3f9a1c2e", "b07d44e1", "0c5e9b7a", "e2a61f03", "9d4c7b10", "51f0e8c6"]


def _boxes(i: int) -> list[tuple[int, int, int, int]]:
    """Two solid rectangles per photo (x, y, w, h), distinct per index."""
    return [(4 + 3 * i, 6 + i, 30, 20), (50 - 2 * i, 30, 24 + i, 18)]


def _read(out: Path) -> list[dict[str, Any]]:
    return [
        a
        for split in ("train", "val")
        for a in json.loads((out / f"{split}.json").read_text())["annotations"]
    ]


def _kinds(result: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for problem in result.problems:
        counts[problem.kind] = counts.get(problem.kind, 0) + 1
    return counts


def _record_opens(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    opened: list[Path] = []
    real = ingest.load_image_as_stored
    monkeypatch.setattr(ingest, "load_image_as_stored", lambda path: opened.append(Path(path)) or real(path))
    return opened


# ---------------------------------------------------------------- Label Studio 1.23


def _label_studio(root: Path, names: list[str] | None = None) -> Path:
    """Label Studio's data dir with six uploads, the original photos beside it, and its COCO export.

    Each photo has a polygon (chair) and a rectangle (desk, empty segmentation) as Label Studio
    writes them; the export sits in Label Studio's export folder, so its file names start `../`.
    """
    upload = root / "lsdata" / "media" / "upload" / "1"
    names = names or [f"{prefix}-scene_{i:05d}.jpg" for i, prefix in enumerate(PREFIXES)]
    images, annotations = [], []
    for i, name in enumerate(names):
        original = name.split("-", 1)[1]
        draw_scene(root / "photos" / original, W, H, _boxes(i), seed=i)
        (upload / name).parent.mkdir(parents=True, exist_ok=True)
        (upload / name).write_bytes((root / "photos" / original).read_bytes())
        images.append({"width": W, "height": H, "id": i, "file_name": f"../lsdata/media/upload/1/{name}"})
        (x, y, w, h), (bx, by, bw, bh) = _boxes(i)
        polygon = [x, y, x + w, y, x + w, y + h, x, y + h]
        annotations.append(
            {
                "id": len(annotations),
                "image_id": i,
                "category_id": 0,
                "segmentation": [[float(v) for v in polygon]],
                "bbox": [float(x), float(y), float(w), float(h)],
                "ignore": 0,
                "iscrowd": 0,
                "area": float(w * h),
            }
        )
        annotations.append(
            {
                "id": len(annotations),
                "image_id": i,
                "category_id": 1,
                "segmentation": [],
                "bbox": [float(bx), float(by), float(bw), float(bh)],
                "ignore": 0,
                "iscrowd": 0,
                "area": float(bw * bh),
            }
        )
    export = {
        "images": images,
        "categories": [{"id": 0, "name": "chair"}, {"id": 1, "name": "desk"}],
        "annotations": annotations,
        "info": {
            "year": 2026,
            "version": "1.0",
            "description": "",
            "contributor": "Label Studio",
            "url": "",
            "date_created": "2026-12-01 12:00:00.000000",
        },
    }
    path = root / "lsdata" / "export" / "result.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(export, indent=2))
    return path


@pytest.mark.parametrize("folder", ["lsdata/media/upload/1", "lsdata/media/upload"])
def test_label_studio_export_with_its_upload_folder(
    tmp_path: Path, folder: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    export = _label_studio(tmp_path)
    opened = _record_opens(monkeypatch)
    result = ingest_export(export, images_dir=tmp_path / folder, out=tmp_path / "dataset")
    assert result.counts["images"] == 6 and result.classes == ["chair"]
    assert _kinds(result) == {
        "image_found_by_name": 6,
        "segmentation_missing": 6,  # the desk rectangles: ignore regions, as documented
    }
    found = [p for p in result.problems if p.kind == "image_found_by_name"]
    prefix = "" if folder.endswith("/1") else "1/"
    assert [p.action for p in found] == [
        f"used {prefix}{p}-scene_{i:05d}.jpg" for i, p in enumerate(PREFIXES)
    ]
    assert all("outside the image folder (never opened)" in p.what for p in found)
    assert all(p.action == IGNORE_REGION for p in result.problems if p.kind == "segmentation_missing")
    # Only chair has objects to learn from; desk, with ignore regions only, is left out (documented).
    assert [(a["category_id"], a["iscrowd"]) for a in _read(tmp_path / "dataset")] == [(1, 0)] * 6
    assert len(opened) == 6 and all(tmp_path / folder in p.parents for p in opened)
    assert result.unlisted == []  # each upload found by its name is listed


def test_label_studio_export_with_the_original_photos(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    export = _label_studio(tmp_path)
    opened = _record_opens(monkeypatch)
    result = ingest_export(export, images_dir=tmp_path / "photos", out=tmp_path / "dataset")
    assert result.counts["images"] == 6
    found = [p for p in result.problems if p.kind == "image_found_without_upload_prefix"]
    assert [p.action for p in found] == [f"used scene_{i:05d}.jpg" for i in range(6)]
    assert all("without Label Studio's upload prefix" in p.what for p in found)
    assert "image_path_escape" not in _kinds(result)
    # The path as written resolves to a real file (in lsdata/): it is never the one read.
    assert len(opened) == 6 and all(p.parent == (tmp_path / "photos").resolve() for p in opened)
    masks_by_image = {a["image_id"]: a for a in _read(tmp_path / "dataset") if not a["iscrowd"]}
    assert all(masks.area(a["segmentation"]) == 30 * 20 for a in masks_by_image.values())


def test_a_class_with_ignore_regions_only_is_not_said_to_be_left_out_by_classes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Label Studio's rectangles (desk) are ignore regions; with no desk mask the class is left out,
    and the summary says why, not that `--classes` (never given) did it."""
    export = _label_studio(tmp_path)
    args = ["ingest", str(export), "--images", str(tmp_path / "photos"), "--out", str(tmp_path / "ds")]
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--no-plot"])
    out = capsys.readouterr().out
    assert exit_info.value.code in (0, None)
    assert "--classes" not in out
    assert (
        "left out: 6 ignore region(s) of classes with no object that has a mask (nothing to learn from): desk"
        in out
    )
    assert "not classes of the data set" not in out  # desk is said once, with its reason
    with pytest.raises(SystemExit):
        main([*args, "--no-plot", "--classes", "chair"])
    assert "left out by --classes: 6 annotation(s) of other classes (desk)" in capsys.readouterr().out


def test_label_studio_json_export_is_refused_with_the_way_to_read_it(tmp_path: Path) -> None:
    """JSON is the first format Label Studio's export dialog offers; its tasks are no COCO file."""
    export = tmp_path / "project-1-at-2026-12-04-22-10.json"
    region = {"id": "p1", "from_name": "label", "to_name": "image", "type": "polygonlabels",
              "original_width": 80, "original_height": 60,
              "value": {"points": [[10, 10], [50, 10], [50, 50]], "polygonlabels": ["desk"]}}  # fmt: skip
    tasks = [{"id": 1, "data": {"image": "/data/upload/1/ab8b4bf0-office_1.jpg"},
              "annotations": [{"id": 1, "result": [region]}], "predictions": []}]  # fmt: skip
    export.write_text(json.dumps(tasks))
    with pytest.raises(DataError, match=r"a Label Studio JSON export \(tasks\), not COCO; .*label pull"):
        ingest_export(export, images_dir=tmp_path, out=tmp_path / "dataset")
    # prelabel's Label Studio tasks: predictions only, no annotations yet
    export.write_text(json.dumps([{"data": tasks[0]["data"], "predictions": [{"result": [region]}]}]))
    with pytest.raises(DataError, match=r"a Label Studio JSON export \(tasks\), not COCO"):
        ingest_export(export, images_dir=tmp_path, out=tmp_path / "dataset")


def test_label_studio_export_without_images_is_refused_with_advice(tmp_path: Path) -> None:
    export = _label_studio(tmp_path)
    with pytest.raises(DataError, match=r"image_path_escape x6\); pass --images DIR"):
        ingest_export(export, out=tmp_path / "dataset")


# file_name as a real Label Studio 1.23 export wrote it (seen in one) -> the original photo it names
LABEL_STUDIO_NAMES = {
    # uploads are stored under Django's safe name: spaces as "_", other signs dropped
    "../lsdata/media/upload/1/ab8b4bf0-office_1.jpg": "office 1.jpg",
    "../lsdata/media/upload/1/5e0c1d2a-desk_2.jpg": "desk (2).jpg",
    # a photo its export could not copy: "<8 hex of an md5>__" and the name (URL-encoded when fetched)
    "images/ab3b1fc0__remote.jpg": "remote.jpg",
    "images/cf106d39__local%204.jpg": "local 4.jpg",
    "images/0d1e2f3a__9c8b7a6d-chair_5.jpg": "chair 5.jpg",
    # the task's own URL (COCO with images, when the download failed; hand-made converters)
    "https://example.com/pics/remote%206.jpg?w=800&sig=abc": "remote 6.jpg",
    "/data/local-files/?d=sub%20dir/local%207.jpg": "local 7.jpg",
    "http://localhost:8080/storage-data/uploaded/?filepath=upload/1/7f6e5d4c-lamp_8.jpg": "lamp 8.jpg",
}


def test_label_studio_names_find_the_original_photos(tmp_path: Path) -> None:
    images, annotations = [], []
    for i, (file_name, original) in enumerate(LABEL_STUDIO_NAMES.items()):
        draw_scene(tmp_path / "photos" / original, W, H, _boxes(i), seed=i)
        images.append({"id": i + 1, "file_name": file_name, "width": W, "height": H})
        (x, y, w, h) = _boxes(i)[0]
        polygon = [float(v) for v in (x, y, x + w, y, x + w, y + h, x, y + h)]
        annotations.append(
            {"id": i + 1, "image_id": i + 1, "category_id": 1, "segmentation": [polygon], "iscrowd": 0,
             "bbox": [float(x), float(y), float(w), float(h)], "area": float(w * h)}
        )  # fmt: skip
    export = tmp_path / "export" / "result.json"
    export.parent.mkdir()
    coco = {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "chair"}]}
    export.write_text(json.dumps(coco))
    result = ingest_export(export, images_dir=tmp_path / "photos", out=tmp_path / "dataset")
    used = {p.image: p.action for p in result.problems if p.kind.startswith("image_found")}
    assert used == {name: f"used {original}" for name, original in LABEL_STUDIO_NAMES.items()}
    assert result.counts["images"] == len(LABEL_STUDIO_NAMES)
    written = sorted(p.name for p in (tmp_path / "dataset" / "images").iterdir())
    assert all(name.endswith(".jpg") and "?" not in name for name in written), written


def test_local_files_urls_tell_photos_of_one_name_apart_by_their_folders(tmp_path: Path) -> None:
    """Label Studio's local files name the path under the document root: two cameras' IMG_0001.jpg
    in folders of their own are two photos, each found where its URL says, not an ambiguous name."""
    images, annotations = [], []
    for i, name in enumerate(("day 1/IMG_0001.jpg", "day2/IMG_0001.jpg")):
        draw_scene(tmp_path / "photos" / name, W, H, _boxes(i), seed=i)
        images.append(
            {"id": i + 1, "file_name": f"/data/local-files/?d={quote(name)}", "width": W, "height": H}
        )
        (x, y, w, h) = _boxes(i)[0]
        polygon = [float(v) for v in (x, y, x + w, y, x + w, y + h, x, y + h)]
        annotations.append({"id": i + 1, "image_id": i + 1, "category_id": 1, "segmentation": [polygon]})
    export = tmp_path / "result.json"
    coco = {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "chair"}]}
    export.write_text(json.dumps(coco))
    result = ingest_export(export, images_dir=tmp_path / "photos", out=tmp_path / "dataset")
    assert result.counts["images"] == 2 and not [p for p in result.problems if p.kind.startswith("image")]


def test_label_studio_export_cache_names_find_the_uploads(tmp_path: Path) -> None:
    """An export names a photo it did not copy `images/<md5>__<upload name>`: with --images Label
    Studio's upload folder, that is the upload itself, found under its stored name."""
    export = _label_studio(tmp_path)
    coco = json.loads(export.read_text())
    for n, image in enumerate(coco["images"]):
        image["file_name"] = f"images/{n:08x}__{image['file_name'].rsplit('/', 1)[-1]}"
    export.write_text(json.dumps(coco))
    result = ingest_export(export, images_dir=tmp_path / "lsdata/media/upload/1", out=tmp_path / "dataset")
    assert result.counts["images"] == 6
    found = [p.action for p in result.problems if p.kind == "image_found_without_upload_prefix"]
    assert found == [f"used {prefix}-scene_{i:05d}.jpg" for i, prefix in enumerate(PREFIXES)]


def _turned_photo(path: Path, shown: list[tuple[int, int, int, int]]) -> tuple[int, int]:
    """A photo stored 96 x 64 whose EXIF orientation (6) shows it 64 x 96, with solid rectangles at
    `shown` (x, y, w, h in the shown frame); returns the stored (width, height)."""
    pixels = np.full((96, 64, 3), (40, 40, 160), np.uint8)
    for x, y, w, h in shown:
        pixels[y : y + h, x : x + w] = (0, 220, 0)
    exif = Image.Exif()
    exif[0x0112] = 6  # turn 90 degrees clockwise to show
    stored = Image.fromarray(pixels).transpose(Image.Transpose.ROTATE_90)
    path.parent.mkdir(parents=True, exist_ok=True)
    stored.save(path, exif=exif.tobytes())
    return stored.size


def test_label_studio_export_of_a_photo_turned_by_exif_lands_on_its_objects(tmp_path: Path) -> None:
    """Label Studio shows the photo turned (the browser reports 64 x 96), but its COCO converter
    writes the stored size and multiplies the polygon's percent points by it; its rectangle's by
    the reported size. Both must land on their objects in the turned photo."""
    polygon_box, rectangle_box = (8, 50, 22, 40), (36, 6, 24, 24)
    stored_w, stored_h = _turned_photo(tmp_path / "photos" / "turned.png", [polygon_box, rectangle_box])
    shown_w, shown_h = stored_h, stored_w
    x, y, w, h = polygon_box
    percent = [(px / shown_w, py / shown_h) for px, py in ((x, y), (x + w, y), (x + w, y + h), (x, y + h))]
    polygon = [c for px, py in percent for c in (px * stored_w, py * stored_h)]  # the converter's sum
    export = tmp_path / "export" / "result.json"
    export.parent.mkdir()
    coco = {
        "images": [{"width": stored_w, "height": stored_h, "id": 0, "file_name": "images/turned.png"}],
        "categories": [{"id": 0, "name": "chair"}],
        "annotations": [
            {"id": 0, "image_id": 0, "category_id": 0, "segmentation": [polygon], "iscrowd": 0,
             "bbox": [min(polygon[::2]), min(polygon[1::2]), w * stored_w / shown_w, h * stored_h / shown_h]},
            {"id": 1, "image_id": 0, "category_id": 0, "segmentation": [], "iscrowd": 0,
             "bbox": [float(v) for v in rectangle_box]},
        ],
        "info": {"contributor": "Label Studio"},
    }  # fmt: skip
    export.write_text(json.dumps(coco))
    result = ingest_export(export, images_dir=tmp_path / "photos", out=tmp_path / "dataset")
    (size,) = [p for p in result.problems if p.kind == "image_size"]
    assert "as stored, before its EXIF orientation" in size.what
    assert size.action == "polygons scaled to the turned photo: 64x96"
    shown = np.array(load_image(tmp_path / "dataset" / "images" / "turned.png"))
    on_object = (shown[..., 1] > 200).astype(np.uint8)
    found = {a["iscrowd"]: masks.decode(a["segmentation"]) for a in _read(tmp_path / "dataset")}
    for crowd, (x, y, w, h) in ((0, polygon_box), (1, rectangle_box)):
        expected = np.zeros_like(on_object)
        expected[y : y + h, x : x + w] = 1
        assert (found[crowd] == expected).all() and (found[crowd] <= on_object).all()


def test_label_studios_own_converter_on_a_photo_turned_by_exif_lands_on_its_objects(tmp_path: Path) -> None:
    """The real thing: label-studio-sdk's COCO converter (what Label Studio's "COCO" export runs) on a
    task whose regions were drawn on the turned photo (sizes as the browser reported them)."""
    from label_studio_sdk.converter import Converter

    polygon_box, rectangle_box = (8, 50, 22, 40), (36, 6, 24, 24)
    photo = tmp_path / "photos" / "turned.png"
    stored_w, stored_h = _turned_photo(photo, [polygon_box, rectangle_box])
    shown_w, shown_h = stored_h, stored_w

    def region(kind: str, value: dict[str, Any]) -> dict[str, Any]:
        name = "label" if kind == "polygonlabels" else "box"
        sizes = {"original_width": shown_w, "original_height": shown_h}
        return {"id": name, "type": kind, "from_name": name, "to_name": "image", **sizes, "value": value}

    x, y, w, h = polygon_box
    corners = ((x, y), (x + w, y), (x + w, y + h), (x, y + h))
    points = [[100 * px / shown_w, 100 * py / shown_h] for px, py in corners]
    rx, ry, rw, rh = rectangle_box
    box = {
        "x": 100 * rx / shown_w,
        "y": 100 * ry / shown_h,
        "width": 100 * rw / shown_w,
        "height": 100 * rh / shown_h,
    }
    result = [
        region("polygonlabels", {"points": points, "polygonlabels": ["chair"]}),
        region("rectanglelabels", {**box, "rotation": 0, "rectanglelabels": ["chair"]}),
    ]
    tasks = tmp_path / "tasks.json"
    tasks.write_text(
        json.dumps([{"id": 1, "data": {"image": str(photo)}, "annotations": [{"id": 1, "result": result}]}])
    )
    config = (
        '<View><Image name="image" value="$image"/><PolygonLabels name="label" toName="image">'
        '<Label value="chair"/></PolygonLabels><RectangleLabels name="box" toName="image">'
        '<Label value="chair"/></RectangleLabels></View>'
    )
    Converter(config=config, project_dir=str(tmp_path)).convert_to_coco(
        str(tasks), str(tmp_path / "export"), is_dir=False
    )

    result_file = tmp_path / "export" / "result.json"
    written = json.loads(result_file.read_text())
    assert (written["images"][0]["width"], written["images"][0]["height"]) == (
        stored_w,
        stored_h,
    )  # as stored
    ingest_export(result_file, images_dir=tmp_path / "photos", out=tmp_path / "dataset")
    shown = np.array(load_image(tmp_path / "dataset" / "images" / "turned.png"))
    on_object = (shown[..., 1] > 200).astype(np.uint8)
    found = [masks.decode(a["segmentation"]) for a in _read(tmp_path / "dataset")]
    assert len(found) == 2
    for mask in found:  # the polygon and the rectangle, each on one of the two objects
        assert mask.sum() >= 0.9 * min(w * h, rw * rh) and (mask & on_object).sum() >= 0.9 * mask.sum()


def test_a_photo_exif_turns_is_read_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its size as stored (is that the size the export states?) comes from the read that decodes
    its pixels, not from opening the file a second time."""
    stored_w, stored_h = _turned_photo(tmp_path / "photos" / "turned.png", [(8, 50, 22, 40)])
    coco = {
        "images": [{"width": stored_w, "height": stored_h, "id": 0, "file_name": "images/turned.png"}],
        "categories": [{"id": 0, "name": "chair"}],
        "annotations": [{"id": 0, "image_id": 0, "category_id": 0, "iscrowd": 0,
                         "segmentation": [[8.0, 50.0, 30.0, 50.0, 30.0, 90.0, 8.0, 90.0]],
                         "bbox": [8.0, 50.0, 22.0, 40.0]}],
    }  # fmt: skip
    opened: list[str] = []
    real_open = Image.open

    def counting_open(fp: Any, *args: Any, **kwargs: Any) -> Image.Image:
        opened.append(Path(fp).name if isinstance(fp, (str, Path)) else repr(fp))
        return real_open(fp, *args, **kwargs)

    monkeypatch.setattr(Image, "open", counting_open)
    export = write_export(tmp_path, coco, name="export/result.json")
    result = ingest_export(export, images_dir=tmp_path / "photos", out=tmp_path / "dataset")
    (size,) = [p for p in result.problems if p.kind == "image_size"]
    assert "as stored, before its EXIF orientation" in size.what, size.what
    assert opened.count("turned.png") == 1, opened


def test_an_export_whose_info_is_not_an_object_is_ingested(tmp_path: Path) -> None:
    """COCO's `info` is an object, but hand-made exports write a string there: not Label Studio's."""
    coco = make_export(tmp_path, n_images=3)
    coco["info"] = "exported by our labelling script"
    result = ingest_export(write_export(tmp_path, coco), out=tmp_path / "dataset")
    assert result.counts["train"]["images"] + result.counts["val"]["images"] == 3


def test_a_swapped_size_on_a_photo_no_exif_turns_is_a_wrong_size_not_a_turn(tmp_path: Path) -> None:
    """Label Studio's export stating height x width for a photo stored upright (no EXIF orientation):
    a size that does not match, taken from the file; its polygon is not scaled as a turned photo's."""
    photos = tmp_path / "photos"
    draw_scene(photos / "plain.png", W, H, [(8, 8, 32, 32)], seed=3)
    polygon = [8.0, 8.0, 40.0, 8.0, 40.0, 40.0, 8.0, 40.0]
    coco = {
        "images": [{"width": H, "height": W, "id": 0, "file_name": "images/plain.png"}],
        "categories": [{"id": 0, "name": "chair"}],
        "annotations": [{"id": 0, "image_id": 0, "category_id": 0, "segmentation": [polygon],
                         "iscrowd": 0, "bbox": [8.0, 8.0, 32.0, 32.0]}],
        "info": {"contributor": "Label Studio"},
    }  # fmt: skip
    export = write_export(tmp_path, coco, name="export/result.json")
    result = ingest_export(export, images_dir=photos, out=tmp_path / "dataset")
    (size,) = [p for p in result.problems if p.kind == "image_size"]
    assert "does not match the file" in size.what and size.action == f"taken from the file: {W}x{H}"
    (label,) = _read(tmp_path / "dataset")
    expected = np.zeros((H, W), np.uint8)
    expected[8:40, 8:40] = 1
    assert (masks.decode(label["segmentation"]) == expected).all()


def test_label_pull_export_of_a_photo_turned_by_exif_lands_on_its_objects(tmp_path: Path) -> None:
    """`label pull` sizes the photo as shown (the frame Label Studio's percent points are in)."""
    box = (8, 50, 22, 40)
    _turned_photo(tmp_path / "root" / "photos" / "turned.png", [box])
    x, y, w, h = box
    points = [[px / 64 * 100, py / 96 * 100] for px, py in ((x, y), (x + w, y), (x + w, y + h), (x, y + h))]
    task = {
        "id": 1,
        "data": {"image": "/data/local-files/?d=photos/turned.png"},
        "annotations": [{"id": 1, "result": [polygon_region(points, "chair", 64, 96)]}],
    }
    client = StandIn([task], LabelSchema(("chair",)).config_xml())
    pulled = pull_project(client, "offices", tmp_path / "pull", local_root=tmp_path / "root")  # type: ignore[arg-type]
    result = ingest_export(pulled.export, out=tmp_path / "dataset", strict=True)  # nothing to mend
    assert result.problems == []
    (label,) = _read(tmp_path / "dataset")
    expected = np.zeros((96, 64), np.uint8)
    expected[y : y + h, x : x + w] = 1
    assert (masks.decode(label["segmentation"]) == expected).all()


def test_label_pull_ingest_keeps_label_studios_names_whatever_ingest_renamed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--rename (here from the config file's [ingest]) is ingest's: `label pull --ingest` keeps the
    project's labels, which the backend's suggestions are named by, and says the renames are gone."""
    from officescore.cli import label as label_cli

    photos = write_photos(tmp_path / "root" / "photos", n=4)
    square = [[10, 10], [40, 10], [40, 40], [10, 40]]
    tasks = [
        {
            "id": k + 1,
            "data": {"image": f"/data/local-files/?d=photos/{photo.name}"},
            "annotations": [{"id": k + 1, "result": [polygon_region(square, "chair", 128, 96)]}],
        }
        for k, photo in enumerate(photos)
    ]
    monkeypatch.setattr(
        label_cli, "_client", lambda url: StandIn(tasks, LabelSchema(("chair",)).config_xml())
    )
    config = tmp_path / "officescore.toml"
    config.write_text('[ingest]\nrename = "chair=seat"\n')
    monkeypatch.setenv("OFFICESCORE_CONFIG", str(config))
    pull = ["label", "pull", "--project", "offices", "--out", str(tmp_path / "pull")]
    pull += ["--local-root", str(tmp_path / "root")]
    dataset = tmp_path / "dataset"
    for argv in (
        pull,
        ["ingest", str(tmp_path / "pull" / "annotations.json"), "--out", str(dataset), "--no-plot"],
        [*pull, "--ingest", str(dataset)],
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        said = " ".join(capsys.readouterr().out.split())
        assert exit_info.value.code in (0, None), said
        meta = json.loads((dataset / "dataset.json").read_text()) if dataset.exists() else {}
        if argv[0] == "ingest":
            assert meta["classes"] == ["seat"] and meta["renames"] == {"chair": "seat"}
    assert meta["classes"] == ["chair"] and meta["renames"] == {}
    assert "the data set that was there renamed chair -> seat (ingest --rename); this ingest did not" in said


def test_ambiguous_names_are_dropped_not_guessed(tmp_path: Path) -> None:
    # The same photo uploaded twice (two prefixes, one original name), and one original name that
    # is in two sub-folders of the photos folder: neither can be told apart by name.
    names = [
        "3f9a1c2e-scene_00000.jpg",
        "b07d44e1-scene_00001.jpg",
        "0c5e9b7a-scene_00001.jpg",
        "e2a61f03-scene_00003.jpg",
        "9d4c7b10-scene_00004.jpg",
    ]
    export = _label_studio(tmp_path, names)
    photos = tmp_path / "photos"
    for sub in ("a", "b"):
        (photos / sub).mkdir()
        (photos / sub / "scene_00004.jpg").write_bytes((photos / "scene_00004.jpg").read_bytes())
    (photos / "scene_00004.jpg").unlink()
    result = ingest_export(export, images_dir=photos, out=tmp_path / "dataset")
    ambiguous = {p.image.rsplit("/", 1)[-1]: p for p in result.problems if p.kind == "image_ambiguous"}
    assert sorted(ambiguous) == [
        "0c5e9b7a-scene_00001.jpg",
        "9d4c7b10-scene_00004.jpg",
        "b07d44e1-scene_00001.jpg",
    ]
    assert (
        "several photos of the export are named scene_00001.jpg" in ambiguous["b07d44e1-scene_00001.jpg"].what
    )
    assert (
        "2 files in the image folder are named scene_00004.jpg" in ambiguous["9d4c7b10-scene_00004.jpg"].what
    )
    assert all(p.action.startswith("dropped, with its ") for p in ambiguous.values())  # their labels too
    assert result.counts["images"] == 2 and _kinds(result)["image_found_without_upload_prefix"] == 2
    # In the upload folder the same export is unambiguous: every upload has its own name.
    upload = tmp_path / "lsdata/media/upload"
    again = ingest_export(export, images_dir=upload / "1", out=tmp_path / "ds2")
    assert again.counts["images"] == 5 and "image_ambiguous" not in _kinds(again)
    # Another project's file of the same name: the folder the name ends with (upload/1) tells them apart,
    (upload / "2").mkdir()
    (upload / "2" / names[3]).write_bytes((upload / "1" / names[3]).read_bytes())
    third = ingest_export(export, images_dir=upload, out=tmp_path / "ds3")
    assert third.counts["images"] == 5 and "image_ambiguous" not in _kinds(third)
    # ... unless a copy sits under a folder of that name too: then nothing does.
    (upload / "2" / "1").mkdir()
    (upload / "2" / "1" / names[3]).write_bytes((upload / "1" / names[3]).read_bytes())
    fourth = ingest_export(export, images_dir=upload, out=tmp_path / "ds4")
    (clash,) = [p for p in fourth.problems if p.kind == "image_ambiguous"]
    assert (
        clash.image.endswith(names[3]) and f"3 files in the image folder are named {names[3]}" in clash.what
    )
    assert fourth.counts["images"] == 4


# ---------------------------------------------------------------- CVAT COCO 1.0


def _uncompressed(mask: np.ndarray) -> dict[str, Any]:
    """COCO's uncompressed RLE as CVAT writes it: column-major run lengths, starting with zeros."""
    flat = mask.T.reshape(-1).astype(np.int8)
    changes = np.flatnonzero(np.diff(np.concatenate(([0], flat, [1 - flat[-1]]))))
    return {
        "counts": np.diff(np.concatenate(([0], changes))).tolist(),
        "size": [int(mask.shape[0]), int(mask.shape[1])],
    }


def _ellipse(x: int, y: int, w: int, h: int) -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    return ((((xx + 0.5 - x - w / 2) / (w / 2)) ** 2 + ((yy + 0.5 - y - h / 2) / (h / 2)) ** 2) <= 1).astype(
        np.uint8
    )


def _cvat(root: Path, rectangles: bool = True, attributes: bool = True) -> Path:
    images, annotations = [], []
    for i in range(5):
        name = f"frame_{i:06d}.jpg"
        draw_scene(root / "images" / name, W, H, _boxes(i), seed=10 + i)
        images.append(
            {
                "id": i + 1,
                "width": W,
                "height": H,
                "file_name": name,
                "license": 0,
                "flickr_url": "",
                "coco_url": "",
                "date_captured": 0,
            }
        )
        (x, y, w, h), (bx, by, bw, bh) = _boxes(i)
        mask = _ellipse(x, y, w, h)
        ys, xs = np.nonzero(mask)
        brush = {
            "id": len(annotations) + 1,
            "image_id": i + 1,
            "category_id": 1,
            "segmentation": _uncompressed(mask),
            "area": float(mask.sum()),
            "bbox": [
                float(xs.min()),
                float(ys.min()),
                float(xs.max() - xs.min() + 1),
                float(ys.max() - ys.min() + 1),
            ],
            "iscrowd": 1,
            "attributes": {"occluded": False},
        }
        annotations.append(brush)
        if rectangles:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i + 1,
                    "category_id": 1,
                    "segmentation": [],
                    "area": float(bw * bh),
                    "bbox": [float(bx), float(by), float(bw), float(bh)],
                    "iscrowd": 0,
                    "attributes": {"occluded": False, "rotation": 0.0},
                }
            )
    if not attributes:
        for ann in annotations:
            del ann["attributes"]
    export = {
        "licenses": [{"name": "", "id": 0, "url": ""}],
        "info": {
            "contributor": "",
            "date_created": "",
            "description": "",
            "url": "",
            "version": "",
            "year": "",
        },
        "categories": [
            {"id": 1, "name": "chair", "supercategory": ""},
            {"id": 2, "name": "desk", "supercategory": ""},
        ],
        "images": images,
        "annotations": annotations,
    }
    path = root / "annotations" / "instances_default.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(export))
    return path


def test_cvat_zip_unpacked_without_images_is_refused_naming_its_images_folder(tmp_path: Path) -> None:
    """CVAT's zip holds annotations/instances_default.json beside images/: the export's own folder
    has no photos, so the error says to pass --images and names the folder beside it."""
    export = write_export(tmp_path, make_export(tmp_path, n_images=3), "annotations/instances_default.json")
    with pytest.raises(DataError, match=r"\(image_missing x3\); pass --images DIR.*, perhaps .*images$"):
        ingest_export(export, out=tmp_path / "dataset")
    (tmp_path / "elsewhere").mkdir()  # the folder given with --images: not told to pass one beside
    with pytest.raises(DataError, match=r"holds the photos \(looked up there by name\)$"):
        ingest_export(export, images_dir=tmp_path / "elsewhere", out=tmp_path / "dataset")
    result = ingest_export(export, images_dir=tmp_path / "images", out=tmp_path / "dataset")
    assert result.counts["images"] == 3


def test_cvat_brush_masks_are_instances(tmp_path: Path) -> None:
    export = _cvat(tmp_path)
    result = ingest_export(export, images_dir=tmp_path / "images", out=tmp_path / "dataset")
    assert result.classes == ["chair"] and result.counts["images"] == 5
    assert _kinds(result) == {"cvat_brush_masks": 1, "segmentation_missing": 5}
    (note,) = [p for p in result.problems if p.kind == "cvat_brush_masks"]
    assert "written by CVAT" in note.what and "5 brush mask(s)" in note.what
    assert note.action.startswith("read as instances")
    got = _read(tmp_path / "dataset")
    instances = [a for a in got if not a["iscrowd"]]
    assert len(instances) == 5 and {a["category_id"] for a in instances} == {1}
    # The masks are CVAT's pixels exactly, not boxes: areas of the drawn ellipses.
    areas = sorted(a["area"] for a in instances)
    assert areas == sorted(int(_ellipse(*_boxes(i)[0]).sum()) for i in range(5))
    assert sum(a["iscrowd"] for a in got) == 5  # the rectangles stay ignore regions


def test_a_label_studio_and_a_cvat_export_make_one_data_set_each_with_its_own_photos(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Real tools' layouts need a photo folder each (Label Studio's upload folder, CVAT's images/ beside
    annotations/): `--images` once per export, in their order. Each export keeps its own tool's rules
    (Label Studio's photos found by name in its upload folder, CVAT's brush masks read as instances)."""
    studio = _label_studio(tmp_path / "ls")
    cvat = _cvat(tmp_path / "cvat")
    upload = tmp_path / "ls" / "lsdata" / "media" / "upload" / "1"
    out = tmp_path / "dataset"
    args = [
        "ingest",
        str(studio),
        str(cvat),
        "--images",
        str(upload),
        "--images",
        str(tmp_path / "cvat" / "images"),
    ]
    with pytest.raises(SystemExit) as info:
        main([*args, "--out", str(out), "--no-plot", "--json"])
    assert info.value.code in (0, None)
    result = json.loads(capsys.readouterr().out)["ingest"]
    assert result["classes"] == ["chair"] and result["counts"]["images"] == 11
    assert result["exports"] == [str(studio), str(cvat)]
    kinds = {(p["image"].split(": ")[0], p["kind"]) for p in result["problems"]}
    assert (str(cvat), "cvat_brush_masks") in kinds and (str(studio), "image_found_by_name") in kinds
    instances = [a for a in _read(out) if not a["iscrowd"]]
    assert len(instances) == 11  # six Label Studio polygons, five CVAT brush masks
    meta = json.loads((out / "dataset.json").read_text())
    assert [s["images"] for s in meta["source"]["exports"]] == [
        "../ls/lsdata/media/upload/1",
        "../cvat/images",
    ]
    with pytest.raises(SystemExit) as info:  # two folders for three exports: which is whose?
        main([*args, str(_cvat(tmp_path / "cvat2")), "--out", str(out), "--no-plot"])
    assert info.value.code == 2
    assert "--images given 2 times for 3 exports: give one folder for all" in " ".join(
        capsys.readouterr().err.split()
    )


def test_cvat_export_of_masks_only_has_something_to_train(tmp_path: Path) -> None:
    export = _cvat(tmp_path, rectangles=False)
    result = ingest_export(export, images_dir=tmp_path / "images", out=tmp_path / "dataset")
    assert result.counts["annotations"] == 5 and result.counts["train"]["crowd"] == 0
    # --crowd ignore keeps today's reading: crowd regions only, so nothing to learn from.
    with pytest.raises(DataError, match="no annotation with a usable mask left"):
        ingest_export(export, images_dir=tmp_path / "images", out=tmp_path / "ds2", crowd="ignore")


def test_true_crowd_regions_of_other_exports_stay_crowd(tmp_path: Path) -> None:
    export = _cvat(tmp_path, attributes=False)  # the same masks, but not written by CVAT
    result = ingest_export(
        export, images_dir=tmp_path / "images", out=tmp_path / "dataset", classes=["chair"]
    )
    assert "cvat_brush_masks" not in _kinds(result)
    assert {a["iscrowd"] for a in _read(tmp_path / "dataset")} == {1}
    forced = ingest_export(export, images_dir=tmp_path / "images", out=tmp_path / "ds2", crowd="instances")
    assert forced.classes == ["chair"] and "cvat_brush_masks" not in _kinds(forced)
    got = _read(tmp_path / "ds2")
    assert sorted((a["category_id"], a["iscrowd"]) for a in got) == [(1, 0)] * 5 + [(1, 1)] * 5


def test_crowd_option_on_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    export = _cvat(tmp_path)
    args = ["ingest", str(export), "--images", str(tmp_path / "images"), "--no-plot", "--json"]
    with pytest.raises(SystemExit) as info:
        main([*args, "--out", str(tmp_path / "dataset"), "--crowd", "ignore", "--classes", "chair"])
    assert info.value.code == 0
    data = json.loads(capsys.readouterr().out)["ingest"]
    assert data["counts"]["train"]["crowd"] + data["counts"]["val"]["crowd"] == 10  # masks and boxes
    with pytest.raises(SystemExit) as info:
        main([*args, "--out", str(tmp_path / "ds2"), "--crowd", "some"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "--crowd some: use one of auto, instances, ignore" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "ds2").exists()


# ---------------------------------------------------------------- VGG Image Annotator


def _via(root: Path) -> Path:
    images, annotations = [], []
    for i in range(4):
        name = f"office_{i}.jpg"
        draw_scene(root / "via" / name, W, H, _boxes(i), seed=20 + i)
        image_id = 6 + i
        images.append(
            {
                "id": image_id,
                "width": W,
                "height": H,
                "file_name": name,
                "license": 1,
                "flickr_url": name,
                "coco_url": name,
                "date_captured": "",
            }
        )
        x, y, w, h = _boxes(i)[0]
        triangle = [x, y, x + w, y, x, y + h]  # half its box
        annotations.append(
            {
                "segmentation": triangle,
                "area": w * h,
                "bbox": [x, y, w, h],
                "iscrowd": 0,
                "id": len(annotations) + 1,
                "image_id": str(image_id),
                "category_id": 1,
            }
        )
    export = {
        "info": {
            "year": 2026,
            "version": "1",
            "description": "VIA project exported to COCO format using VGG Image Annotator",
            "contributor": "",
            "url": "",
            "date_created": "Tue Dec 01 2026",
        },
        "images": images,
        "annotations": annotations,
        "licenses": [{"id": 1, "name": "Unknown", "url": ""}],
        "categories": [{"supercategory": "type", "id": 1, "name": "desk"}],
    }
    path = root / "via" / "via_export_coco.json"
    path.write_text(json.dumps(export))
    return path


def test_via_polygons_ids_and_areas_are_repaired(tmp_path: Path) -> None:
    result = ingest_export(_via(tmp_path), out=tmp_path / "dataset")
    assert result.counts["images"] == 4 and result.counts["annotations"] == 4 and result.classes == ["desk"]
    assert _kinds(result) == {"segmentation_flat": 4, "image_id_type": 4, "area_is_box": 4}
    by_kind = {p.kind: p for p in reversed(result.problems)}  # the first of each kind
    assert by_kind["segmentation_flat"].action == "read as one polygon"
    assert by_kind["image_id_type"].what == "image_id '6' is not written as the image's id 6"
    assert by_kind["image_id_type"].action == "matched to image id 6"
    assert by_kind["area_is_box"].action == "taken from the mask"
    for ann in _read(tmp_path / "dataset"):
        assert ann["iscrowd"] == 0 and ann["area"] == masks.area(ann["segmentation"])
        x, y, w, h = ann["bbox"]
        assert 0.4 < ann["area"] / (w * h) < 0.65  # a triangle, not the box


def test_polygons_written_as_points_by_a_hand_made_converter_are_read(tmp_path: Path) -> None:
    """`[[x, y], [x, y], ...]` (one polygon) and `[[[x, y], ...], ...]` (polygons) are the same masks
    as flat coordinates: read as them and listed, not every mask turned into an ignore region."""
    coco = json.loads(_via(tmp_path).read_text())
    for n, ann in enumerate(coco["annotations"]):
        ann["image_id"] = int(ann["image_id"])
        points = [list(p) for p in zip(ann["segmentation"][0::2], ann["segmentation"][1::2], strict=True)]
        ann["segmentation"] = points if n % 2 else [points]
        ann["area"] = 0.0
    export = tmp_path / "via" / "points.json"
    export.write_text(json.dumps(coco))
    result = ingest_export(export, out=tmp_path / "dataset")
    assert result.counts["annotations"] == 4 and _kinds(result) == {"segmentation_points": 4}
    for ann in _read(tmp_path / "dataset"):
        x, y, w, h = ann["bbox"]
        assert ann["iscrowd"] == 0 and 0.4 < ann["area"] / (w * h) < 0.65  # the triangle


def test_cli_defaults_match_the_library() -> None:
    import inspect

    from officescore.cli.ingest import ingest as command

    cli = {name: p.default.default for name, p in inspect.signature(command).parameters.items()}
    library = {name: p.default for name, p in inspect.signature(ingest_export).parameters.items()}
    for name in ("out", "val_fraction", "seed", "strict", "crowd"):
        assert cli[name] == library[name], name
    assert library["crowd"] == "auto"


def test_two_exports_joined_by_hand_lose_the_photos_whose_ids_clash_not_their_labels(tmp_path: Path) -> None:
    """Two tools' JSON pasted into one file: both start their image ids at 1, so image 1's
    annotations are two photos' labels; put on the first photo they would be wrong labels."""
    coco = make_export(tmp_path, n_images=4)
    other = make_export(tmp_path / "other", n_images=2, seed=5)
    for image in other["images"]:
        (tmp_path / "other" / "images" / image["file_name"]).rename(
            tmp_path / "images" / f"other_{image['file_name']}"
        )
        image["file_name"] = f"other_{image['file_name']}"
    coco["images"] += other["images"]  # ids 1 and 2 again
    coco["annotations"] += [{**a, "id": 100 + a["id"]} for a in other["annotations"]]
    result = ingest_export(write_export(tmp_path, coco), out=tmp_path / "dataset")

    clashes = [p for p in result.problems if p.kind == "image_duplicate_id"]
    assert [p.image for p in clashes] == ["scene_000.png", "scene_001.png"]
    assert "used by 2 different files (scene_000.png, other_scene_000.png)" in clashes[0].what
    assert result.counts["images"] == 2 and result.counts["annotations"] == 4
    assert result.counts["dropped"] == {"images": 4, "annotations": 8}
    splits = [json.loads((tmp_path / "dataset" / f"{s}.json").read_text()) for s in ("train", "val")]
    kept = {image["original_file_name"] for split in splits for image in split["images"]}
    assert kept == {"scene_002.png", "scene_003.png"}


def test_roboflow_augmented_copies_stay_on_one_side_of_the_split(tmp_path: Path) -> None:
    """Roboflow exports each training photo several times, flipped or cropped (named
    `<photo>_jpg.rf.<md5>.jpg`), which no perceptual hash finds; ingest splits train/ and valid/ anew,
    and a flipped copy in val of a photo trained on inflated val mAP."""
    coco = make_export(tmp_path / "train", n_images=8)
    folder = tmp_path / "train" / "images"
    flipped_annotations = []
    for image in list(coco["images"]):
        stem = image["file_name"].replace(".png", "_png")
        first = f"{stem}.rf.{image['id']:032x}.png"
        (folder / image["file_name"]).rename(folder / first)
        flipped = f"{stem}.rf.{image['id'] + 100:032x}.png"
        Image.open(folder / first).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(folder / flipped)
        image["file_name"] = first
        coco["images"].append({**image, "id": image["id"] + 100, "file_name": flipped})
        for ann in [a for a in coco["annotations"] if a["image_id"] == image["id"]]:
            seg, size = ann["segmentation"], (image["height"], image["width"])
            rle = masks.from_polygons(seg, *size) if isinstance(seg, list) else masks.normalise(seg)
            mirrored = masks.encode(np.ascontiguousarray(masks.decode(rle)[:, ::-1]))
            flipped_annotations.append(
                {**ann, "id": ann["id"] + 100, "image_id": image["id"] + 100, "segmentation": mirrored}
            )
    coco["annotations"] += flipped_annotations
    result = ingest_export(write_export(tmp_path / "train", coco), out=tmp_path / "dataset", val_fraction=0.5)

    assert result.counts["duplicate_groups"] == 8
    sides: dict[str, set[str]] = {}
    for split in ("train", "val"):
        for image in json.loads((tmp_path / "dataset" / f"{split}.json").read_text())["images"]:
            sides.setdefault(image["original_file_name"].split(".rf.")[0], set()).add(split)
    assert len(sides) == 8 and all(len(side) == 1 for side in sides.values()), sides


def test_absolute_paths_of_another_machine_find_photos_of_one_name_by_their_folders(tmp_path: Path) -> None:
    """A public set's or V7's export names photos by absolute paths of the machine it was made on;
    two `0001.png` in two folders were both dropped as ambiguous, though the folders tell them apart."""
    coco = make_export(tmp_path, n_images=4)
    photos = tmp_path / "photos"
    where = {1: "kitchen/0001.png", 2: "study/0001.png", 3: "x/0002.png", 4: "y/0002.png"}
    written = {**where, 3: "w/0002.png", 4: "z/0002.png"}  # folders not here: 0002.png stays ambiguous
    for image in coco["images"]:
        (photos / where[image["id"]]).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "images" / image["file_name"]).rename(photos / where[image["id"]])
        image["file_name"] = f"/mnt/share/{written[image['id']]}"
    result = ingest_export(write_export(tmp_path, coco), images_dir=photos, out=tmp_path / "dataset")

    found = {p.image: p.action for p in result.problems if p.kind == "image_found_by_name"}
    assert found == {
        "/mnt/share/kitchen/0001.png": "used kitchen/0001.png",
        "/mnt/share/study/0001.png": "used study/0001.png",
    }
    assert [p.image for p in result.problems if p.kind == "image_ambiguous"] == [
        "/mnt/share/w/0002.png",
        "/mnt/share/z/0002.png",
    ]
    splits = [json.loads((tmp_path / "dataset" / f"{s}.json").read_text()) for s in ("train", "val")]
    kept = {im["original_file_name"]: im["sha256"] for split in splits for im in split["images"]}
    assert kept == {f"/mnt/share/{where[n]}": ingest.sha256_file(photos / where[n]) for n in (1, 2)}


def test_a_name_in_another_case_finds_its_photo_when_only_one_matches(tmp_path: Path) -> None:
    """An export made on Windows says `SCENE_000.PNG` where the file is `scene_000.png`: the same
    file there, "file not found" on Linux."""
    coco = make_export(tmp_path, n_images=4)
    coco["images"][0]["file_name"] = "SCENE_000.PNG"
    coco["images"][1]["file_name"] = "Scene_001.png"
    for sub, name in (("a", "SCENE_002.png"), ("b", "Scene_002.png")):  # two such files: not a guess
        (tmp_path / "images" / sub).mkdir()
        shutil.copy(tmp_path / "images" / "scene_002.png", tmp_path / "images" / sub / name)
    (tmp_path / "images" / "scene_002.png").unlink()
    coco["images"][2]["file_name"] = "scene_002.png"
    result = ingest_export(write_export(tmp_path, coco), out=tmp_path / "dataset")

    found = {p.image: (p.what, p.action) for p in result.problems if p.kind == "image_found_by_name"}
    how = "file_name is not in the image folder; found by its base name in another case"
    if (tmp_path / "images" / "SCENE_000.PNG").exists():  # a macOS or Windows folder: found as written
        assert found == {}
    else:
        assert found == {
            "SCENE_000.PNG": (how, "used scene_000.png"),
            "Scene_001.png": (how, "used scene_001.png"),
        }
    (clash,) = [p for p in result.problems if p.kind == "image_ambiguous"]
    assert (
        clash.image == "scene_002.png"
        and "2 files in the image folder are named scene_002.png in some case" in clash.what
    )
    assert result.counts["images"] == 3
