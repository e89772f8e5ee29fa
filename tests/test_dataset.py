"""OfficeDataset and transforms over a data-set folder built here in the normalised format."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.nn.functional import max_pool2d

from officescore import DEFAULT_CLASSES
from officescore import masks as masklib
from officescore.dataset import (
    OfficeDataset,
    RandomZoom,
    boxes_from_masks,
    build_transforms,
    collate_fn,
    finalise,
)
from officescore.errors import DataError
from officescore.sample import write_sample

K = len(DEFAULT_CLASSES)


def _write_dataset(folder: Path, images: list[dict], annotations: list[dict], classes: list[str]) -> None:
    """The normalised format ingest writes: RLE str counts, ids from 1, area/iscrowd always set."""
    for ann in annotations:
        ann.setdefault("iscrowd", 0)
        ann["area"] = float(masklib.area(ann["segmentation"]))
        ann["bbox"] = masklib.bbox(ann["segmentation"])
    categories = [{"id": i, "name": n} for i, n in enumerate(classes, start=1)]
    ids = [im["id"] for im in images]
    for split, keep in (("train", ids), ("val", ids[:2])):
        doc = {
            "images": [im for im in images if im["id"] in keep],
            "annotations": [a for a in annotations if a["image_id"] in keep],
            "categories": categories,
        }
        (folder / f"{split}.json").write_text(json.dumps(doc))
    meta = {"format": "officescore-dataset", "version": 1, "classes": classes}
    (folder / "dataset.json").write_text(json.dumps(meta))


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Sample scenes (polygons converted to RLE), plus an empty image and a crowd region."""
    root = tmp_path_factory.mktemp("ds")
    write_sample(root / "export", n_images=4, seed=3, size=96)
    coco = json.loads((root / "export/annotations.json").read_text())
    folder = root / "dataset"
    (folder / "images").mkdir(parents=True)
    for im in coco["images"]:
        shutil.copy(root / "export" / im["file_name"], folder / im["file_name"])
    annotations = coco["annotations"]
    for ann in annotations:
        if isinstance(ann["segmentation"], list):
            ann["segmentation"] = masklib.from_polygons(ann["segmentation"], 96, 96)
    crowd = np.zeros((96, 96), np.uint8)
    crowd[:10, :30] = 1
    annotations.append({"id": len(annotations) + 1, "image_id": 1, "category_id": 7, "iscrowd": 1})
    annotations[-1]["segmentation"] = masklib.encode(crowd)
    Image.new("RGB", (80, 60), (200, 190, 180)).save(folder / "images/empty.jpg")
    images = coco["images"] + [{"id": 5, "file_name": "images/empty.jpg", "width": 80, "height": 60}]
    _write_dataset(folder, images, annotations, list(DEFAULT_CLASSES))
    return folder


@pytest.fixture(scope="module")
def blocks_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Lossless 64x48 images that are white exactly where an object is: alignment is checkable."""
    folder = tmp_path_factory.mktemp("blocks")
    (folder / "images").mkdir()
    rng = np.random.default_rng(0)
    images, annotations = [], []
    for image_id in (1, 2, 3):
        pixels = np.zeros((48, 64, 3), np.uint8)
        for _ in range(3):
            x, y = int(rng.integers(0, 44)), int(rng.integers(0, 30))
            mask = np.zeros((48, 64), np.uint8)
            mask[y : y + int(rng.integers(8, 18)), x : x + int(rng.integers(8, 20))] = 1
            mask &= ~pixels[:, :, 0].astype(bool)  # visible part only, as a labeller would draw
            pixels[mask.astype(bool)] = 255
            annotations.append(
                {"id": len(annotations) + 1, "image_id": image_id, "category_id": 1 + len(annotations) % 2}
            )
            annotations[-1]["segmentation"] = masklib.encode(mask)
        Image.fromarray(pixels).save(folder / f"images/b{image_id}.png")
        images.append({"id": image_id, "file_name": f"images/b{image_id}.png", "width": 64, "height": 48})
    _write_dataset(folder, images, annotations, ["a", "b"])
    return folder


def test_items_have_the_contracted_shapes_and_types(dataset_dir: Path) -> None:
    ds = OfficeDataset(dataset_dir, "train")
    assert ds.classes == list(DEFAULT_CLASSES) and ds.annotation_file == dataset_dir / "train.json"
    assert ds.image_ids == [1, 2, 3, 4, 5] and len(ds) == 5
    coco = json.loads((dataset_dir / "train.json").read_text())
    for index, image_id in enumerate(ds.image_ids[:4]):
        image, target = ds[index]
        assert image.dtype == torch.float32 and image.shape == (3, 96, 96)
        assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
        n = len(target["labels"])
        assert n > 0 and target["image_id"] == image_id
        assert target["boxes"].dtype == torch.float32 and target["boxes"].shape == (n, 4)
        assert (
            target["labels"].dtype == torch.int64
            and 1 <= target["labels"].min() <= target["labels"].max() <= K
        )
        assert target["masks"].dtype == torch.uint8 and target["masks"].shape == (n, 96, 96)
        assert target["area"].dtype == torch.float32 and target["iscrowd"].dtype == torch.int64
        assert type(image) is torch.Tensor and type(target["boxes"]) is torch.Tensor
        anns = [a for a in coco["annotations"] if a["image_id"] == image_id and not a["iscrowd"]]
        expected = np.stack([masklib.decode(a["segmentation"]) for a in anns])
        np.testing.assert_array_equal(target["masks"].numpy(), expected)
        # pixel-edge boxes: exactly COCO's [x, y, x + w, y + h] of the same masks
        coco_boxes = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)])
        torch.testing.assert_close(target["boxes"], coco_boxes.float())
        torch.testing.assert_close(target["area"], torch.tensor([a["area"] for a in anns]).float())


def test_image_without_objects(dataset_dir: Path) -> None:
    image, target = OfficeDataset(dataset_dir, "train", transforms=build_transforms(train=True))[4]
    assert image.shape == (3, 60, 80)
    assert target["boxes"].shape == (0, 4) and target["masks"].shape == (0, 60, 80)
    assert target["labels"].shape == (0,) and target["area"].shape == (0,)


def test_crowd_left_out_unless_asked(dataset_dir: Path) -> None:
    _, plain = OfficeDataset(dataset_dir, "train")[0]
    _, with_crowd = OfficeDataset(dataset_dir, "train", include_crowd=True)[0]
    assert plain["iscrowd"].sum() == 0
    assert len(with_crowd["labels"]) == len(plain["labels"]) + 1
    assert with_crowd["iscrowd"].tolist()[-1] == 1 and with_crowd["boxes"][-1].tolist() == [0, 0, 30, 10]


def test_flip_moves_image_masks_and_boxes_together(blocks_dir: Path) -> None:
    raw = OfficeDataset(blocks_dir, "train")
    flipped = OfficeDataset(blocks_dir, "train", build_transforms(True, hflip=1.0, zoom_p=0, color_jitter=0))
    for index in range(len(raw)):
        image, target = raw[index]
        f_image, f_target = flipped[index]
        torch.testing.assert_close(f_image, image.flip(-1))
        assert torch.equal(f_target["masks"], target["masks"].flip(-1))
        assert torch.equal(f_target["boxes"], boxes_from_masks(f_target["masks"]))
        width = image.shape[-1]
        mirrored = torch.stack([width - target["boxes"][:, 2], target["boxes"][:, 1]], 1)
        mirrored = torch.cat([mirrored, width - target["boxes"][:, :1], target["boxes"][:, 3:]], 1)
        assert torch.equal(f_target["boxes"], mirrored)


def test_training_transforms_keep_pixels_and_labels_aligned(blocks_dir: Path) -> None:
    ds = OfficeDataset(blocks_dir, "train", build_transforms(True, zoom_p=1.0, color_jitter=0))
    torch.manual_seed(0)
    changed = 0
    for _ in range(4):
        for index in range(len(ds)):
            image, target = ds[index]
            assert image.shape == (3, 48, 64)  # the canvas keeps its size
            masks = target["masks"]
            assert masks.shape[0] == len(target["labels"]) == len(target["boxes"]) == len(target["area"])
            assert bool((masks.flatten(1).sum(1) > 0).all()), "empty masks must be dropped"
            assert torch.equal(target["boxes"], boxes_from_masks(masks))
            torch.testing.assert_close(target["area"], masks.flatten(1).sum(1).float())
            # resampling may only disagree on the one-pixel band along an object's edge
            union = masks.amax(0).float()[None] if len(masks) else torch.zeros((1, 48, 64))
            band = max_pool2d(union, 3, 1, 1) - (-max_pool2d(-union, 3, 1, 1))
            off = (union[0].bool() != (image[0] > 0.5)) & (band[0] == 0)
            assert int(off.sum()) == 0, "image and masks drifted apart"
            changed += int(target["area"].sum().item() != raw_area(blocks_dir, index))
    assert changed > 0, "scale jitter never changed anything"


def raw_area(folder: Path, index: int) -> float:
    return float(OfficeDataset(folder, "train")[index][1]["area"].sum())


def test_zoom_out_can_drop_nothing_and_zoom_in_can_drop_instances(blocks_dir: Path) -> None:
    """Zoom out (0.5x, padded) keeps every object, each a quarter of its area; zoom in (3x, cropped)
    keeps only what the crop shows, so some objects vanish and are dropped with their labels."""
    ds = OfficeDataset(blocks_dir, "train")
    torch.manual_seed(1)
    dropped = 0
    for index in range(len(ds)):
        image, target = ds.raw_item(index)
        _, plain = finalise(image, target)
        for _ in range(4):
            small, small_target = RandomZoom(scale_range=(0.5, 0.5), p=1.0)(image, target)
            assert small.shape == image.shape and small_target["masks"].shape == target["masks"].shape
            _, out = finalise(small, small_target)
            assert out["labels"].tolist() == plain["labels"].tolist()
            ratio = out["area"] / plain["area"]
            assert bool(((ratio > 0.15) & (ratio < 0.4)).all()), ratio  # ~0.25, resampled edges

            big, big_target = RandomZoom(scale_range=(3.0, 3.0), p=1.0)(image, target)
            assert big.shape == image.shape and big_target["masks"].shape == target["masks"].shape
            _, out = finalise(big, big_target)
            assert len(out["labels"]) <= len(plain["labels"])
            assert bool((out["area"] > 0).all()) and torch.equal(out["boxes"], boxes_from_masks(out["masks"]))
            # labels of the objects kept, in order: a sub-sequence of the original labels
            kept = iter(plain["labels"].tolist())
            assert all(label in kept for label in out["labels"].tolist())
            dropped += len(plain["labels"]) - len(out["labels"])
    assert dropped > 0, "a 3x zoom never cropped an object away"
    with pytest.raises(ValueError):
        RandomZoom(scale_range=(0.0, 1.0))


def test_eval_transforms_and_collate(dataset_dir: Path) -> None:
    ds = OfficeDataset(dataset_dir, "val", transforms=build_transforms(train=False))
    plain = OfficeDataset(dataset_dir, "val")
    assert len(ds) == 2
    loader = torch.utils.data.DataLoader(ds, batch_size=2, collate_fn=ds.collate_fn)
    images, targets = next(iter(loader))
    assert isinstance(images, tuple) and len(images) == len(targets) == 2
    torch.testing.assert_close(images[0], plain[0][0])
    assert collate_fn([(1, "a"), (2, "b")]) == ((1, 2), ("a", "b"))


def test_missing_or_broken_dataset_is_a_data_error(tmp_path: Path, dataset_dir: Path) -> None:
    with pytest.raises(DataError, match="officescore ingest"):
        OfficeDataset(tmp_path / "nowhere", "train")
    with pytest.raises(DataError, match="dataset.json"):
        OfficeDataset(tmp_path, "train")
    with pytest.raises(DataError, match=r"no split 'test' in this data set \(it has train, val\)$"):
        OfficeDataset(dataset_dir, "test")  # the data set is there: no advice to ingest it again
    broken = tmp_path / "broken"
    shutil.copytree(dataset_dir, broken)
    (broken / "val.json").write_text("{not json")
    with pytest.raises(DataError, match="unreadable"):
        OfficeDataset(broken, "val")
    (broken / "dataset.json").write_text(json.dumps({"classes": ["desk", "chair"]}))
    with pytest.raises(DataError, match="do not match"):
        OfficeDataset(broken, "train")
    # hand-edited split files: a clear error, not a KeyError/ValueError from deep inside
    (broken / "dataset.json").write_text((dataset_dir / "dataset.json").read_text())
    train = json.loads((dataset_dir / "train.json").read_text())
    image = train["images"][0]
    for damaged in (
        {**image, "id": "x"},
        {**image, "id": None},
        {k: v for k, v in image.items() if k != "id"},
    ):
        (broken / "train.json").write_text(json.dumps({**train, "images": [damaged]}))
        with pytest.raises(DataError, match="not normalised COCO"):
            OfficeDataset(broken, "train")


def test_an_export_file_or_a_photo_folder_given_as_the_data_set_gets_advice_that_works(
    tmp_path: Path, dataset_dir: Path
) -> None:
    """A newcomer's `train --data export/annotations.json` or `eval --data photos/` was told to
    `ingest EXPORT.json --out` that very path: a file, or a folder ingest refuses (it holds photos)."""
    export = tmp_path / "export" / "annotations.json"
    export.parent.mkdir()
    export.write_text('{"images": [], "annotations": [], "categories": []}')
    advice = f"it is a labelling export: make a data set of it with `officescore ingest {export} --out data/"
    with pytest.raises(DataError, match=re.escape(f"{export}: a file, not a data-set folder; {advice}")):
        OfficeDataset(export, "train")
    tasks = tmp_path / "tasks.json"  # Label Studio's JSON: no COCO export, still no `--out tasks.json`
    tasks.write_text('[{"data": {"image": "office.jpg"}}]')
    with pytest.raises(
        DataError, match="a file, not a data-set folder; pass the folder `officescore ingest` wrote$"
    ):
        OfficeDataset(tasks, "train")
    photos = tmp_path / "photos"
    shutil.copytree(dataset_dir / "images", photos / "office")
    with pytest.raises(DataError, match=r"it holds photos but no labels: .* --out data/dataset` and pass"):
        OfficeDataset(photos, "val")
    camera = tmp_path / "camera"  # a camera's IMG_0001.JPG: a photo too (mutation review B)
    camera.mkdir()
    shutil.copyfile(next((dataset_dir / "images").iterdir()), camera / "IMG_0001.JPG")
    with pytest.raises(DataError, match="it holds photos but no labels"):
        OfficeDataset(camera, "val")
    lost = tmp_path / "lost"  # a data set that lost its dataset.json: no talk of labels missing
    shutil.copytree(dataset_dir, lost)
    (lost / "dataset.json").unlink()
    hint = f"run `officescore ingest EXPORT.json --out {lost}` first"
    with pytest.raises(DataError, match=re.escape(hint)):
        OfficeDataset(lost, "train")


def test_sample_through_ingest_keeps_exact_masks(tmp_path: Path) -> None:
    """sample -> ingest -> OfficeDataset: every mask is still exactly the rendered visible pixels."""
    from officescore.ingest import ingest_export
    from officescore.sample import render_scene, scene_rng

    write_sample(tmp_path / "export", n_images=5, seed=4, size=80)
    ingest_export(tmp_path / "export/annotations.json", out=tmp_path / "dataset", strict=True)
    seen = 0
    for split in ("train", "val"):
        ds = OfficeDataset(tmp_path / "dataset", split)
        files = {im["id"]: im["file_name"] for im in json.loads(ds.annotation_file.read_text())["images"]}
        for index in range(len(ds)):
            _, target = ds[index]
            scene_index = int(Path(files[target["image_id"]]).stem.split("_")[1])
            scene = render_scene(scene_rng(4, scene_index), 80)
            expected = sorted((inst.mask.tobytes(), inst.category) for inst in scene.instances)
            got = zip(target["masks"], target["labels"], strict=True)
            assert sorted((m.numpy().tobytes(), ds.classes[label - 1]) for m, label in got) == expected
            seen += 1
    assert seen == 5


def test_boxes_from_masks_use_pixel_edges() -> None:
    masks = torch.zeros((3, 5, 7), dtype=torch.uint8)
    masks[0, 1:3, 2:6] = 1
    masks[2, 4, 6] = 1  # a single pixel in the corner still gets a box of positive size
    expected = torch.tensor([[2, 1, 6, 3], [0, 0, 0, 0], [6, 4, 7, 5]], dtype=torch.float32)
    assert torch.equal(boxes_from_masks(masks), expected)
    assert boxes_from_masks(torch.zeros((0, 5, 7), dtype=torch.uint8)).shape == (0, 4)


def test_finalise_keeps_one_pixel_objects_and_drops_vanished_ones_with_their_attributes() -> None:
    """A one-pixel object is an object; an empty mask takes its label and attribute row with it."""
    masks = torch.zeros((3, 4, 5), dtype=torch.uint8)
    masks[0, 2, 3] = 1  # one pixel
    masks[2, 0:2, 0:2] = 1  # four pixels; masks[1] vanished (e.g. cropped away by a zoom)
    target = {
        "masks": masks,
        "labels": torch.tensor([1, 2, 1]),
        "iscrowd": torch.tensor([0, 0, 1]),
        "attributes": torch.tensor([[0], [1], [-1]]),
        "image_id": 7,
    }
    image, out = finalise(torch.zeros((3, 4, 5), dtype=torch.uint8), target)
    assert image.dtype == torch.float32
    assert out["labels"].tolist() == [1, 1] and out["iscrowd"].tolist() == [0, 1]
    assert out["attributes"].tolist() == [[0], [-1]]
    assert out["area"].tolist() == [1.0, 4.0]
    assert out["boxes"].tolist() == [[3, 2, 4, 3], [0, 0, 2, 2]]


def _tiny_dataset(folder: Path, annotations: list[dict], file_name: str = "images/a.png") -> Path:
    """One 6x4 photo, classes chair and desk, chairs with a yes/no `armrests` attribute."""
    (folder / "images").mkdir(parents=True)
    Image.new("RGB", (6, 4)).save(folder / "images/a.png")
    mask = np.zeros((4, 6), np.uint8)
    mask[1:3, 2:5] = 1
    for i, ann in enumerate(annotations, start=1):
        ann.update(id=i, image_id=1, segmentation=masklib.encode(mask))
    images = [{"id": 1, "file_name": file_name, "width": 6, "height": 4}]
    _write_dataset(folder, images, annotations, ["chair", "desk"])
    meta = json.loads((folder / "dataset.json").read_text())
    meta["attributes"] = {"chair": {"armrests": {"kind": "yesno", "default": False}}}
    (folder / "dataset.json").write_text(json.dumps(meta))
    return folder


def test_background_category_and_unsafe_file_names_are_data_errors(tmp_path: Path) -> None:
    for n, category in enumerate((0, 3)):  # 0 is the model's background, 3 is past the two classes
        folder = _tiny_dataset(tmp_path / f"c{n}", [{"category_id": category}])
        with pytest.raises(DataError, match="bad image or category id"):
            OfficeDataset(folder, "train")
    for n, name in enumerate(("../a.png", "images/../../a.png", "/tmp/a.png")):
        folder = _tiny_dataset(tmp_path / f"f{n}", [{"category_id": 1}], file_name=name)
        with pytest.raises(DataError, match="unsafe file_name"):
            OfficeDataset(folder, "train")


def test_attribute_rows_and_the_labelled_count_leave_out_crowds(tmp_path: Path) -> None:
    anns = [
        {"category_id": 1, "attributes": {"armrests": "yes"}},
        {"category_id": 1, "attributes": {"armrests": False}, "iscrowd": 1},  # never trained on
        {"category_id": 2, "attributes": {"armrests": True}},  # not a desk's attribute
        {"category_id": 1, "attributes": {"armrests": "no"}, "unlabelled": ["armrests"]},
    ]
    dataset = OfficeDataset(_tiny_dataset(tmp_path, anns), "train", include_crowd=True)
    assert dataset.labelled_attributes == 1
    _, target = dataset[0]
    assert target["labels"].tolist() == [1, 1, 2, 1]
    assert target["attributes"].tolist() == [[1], [0], [-1], [-1]]
