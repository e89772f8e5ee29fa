"""Phone-sized photos: decoded reduced to the model's size, results in the original photo's pixels,
bounded memory, and real decompression bombs still refused."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from scoremodels import write_checkpoint

from officescore import masks as masklib
from officescore.errors import BadImageError
from officescore.images import fit_for_model, load_for_model, load_image
from officescore.infer import Predictor, score_photos
from officescore.infer.drawing import save_width
from officescore.infer.predictor import on_pixels
from officescore.masks import scaled_up
from officescore.sample import render_scene

TWELVE_MP = (4032, 3024)


@pytest.fixture(scope="module")
def big_jpeg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("large") / "phone.jpg"
    render_scene(0, size=256).image.resize(TWELVE_MP, Image.Resampling.BILINEAR).save(path, quality=90)
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("model") / "best.pt", {"desk": 8.0, "chair": 7.5})


def test_a_large_jpeg_is_decoded_at_the_models_size(big_jpeg: Path) -> None:
    decoded = load_for_model(big_jpeg, 800, 1333)
    assert decoded.original_size == TWELVE_MP and decoded.reduced
    assert decoded.image.size == (1067, 800) and decoded.image.mode == "RGB"  # torchvision's 800 px rule
    # Up to twice the model's size a photo is decoded whole: the model resizes it as eager torchvision does.
    whole = load_for_model(big_jpeg, 1600, 2016)
    assert not whole.reduced and whole.image.size == TWELVE_MP
    assert np.array_equal(np.asarray(whole.image), np.asarray(load_image(big_jpeg)))


def test_draft_mode_reads_jpegs_over_the_pixel_limit_but_not_other_formats(
    big_jpeg: Path, tmp_path: Path
) -> None:
    limit = 2_000_000  # stands in for the 89 MP limit: the 12 MP photo is "a 108 MP photo" here
    with pytest.raises(BadImageError, match="decompression bomb"):
        load_image(big_jpeg, max_pixels=limit)
    decoded = load_for_model(big_jpeg, 128, 128, max_pixels=limit)  # decoded at 1/8: 504x378
    assert decoded.original_size == TWELVE_MP and decoded.image.size == (128, 96)
    png = tmp_path / "phone.png"  # 3 MP: over this limit, and PNG has no reduced decoding
    Image.open(big_jpeg).resize((2000, 1500)).save(png, compress_level=1)
    with pytest.raises(BadImageError, match="decompression bomb"):
        load_for_model(png, 128, 128, max_pixels=limit)
    with pytest.raises(BadImageError, match="decompression bomb"):  # even 1/8 would be too many pixels
        load_for_model(big_jpeg, 128, 128, max_pixels=100_000)


def _png_claiming(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def test_a_png_claiming_a_huge_size_is_refused(tmp_path: Path, checkpoint: Path) -> None:
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_claiming(60_000, 60_000))  # 3.6 gigapixels in 100 bytes
    with pytest.raises(BadImageError, match="decompression bomb"):
        load_for_model(bomb, 800, 1333)
    result = Predictor.load(checkpoint, device="cpu").predict(bomb, workers=0)[0]
    assert result.error is not None and "decompression bomb" in result.error


def test_exif_rotation_is_applied_before_reducing(tmp_path: Path) -> None:
    stored = render_scene(1, size=128).image.resize((1200, 900))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90: displayed 900 wide, 1200 high
    path = tmp_path / "rotated.jpg"
    stored.save(path, exif=exif, quality=95)
    decoded = load_for_model(path, 128, 128)
    assert decoded.original_size == (900, 1200) and decoded.image.size == (96, 128)
    expected = load_image(path).resize((96, 128), Image.Resampling.BILINEAR)
    assert np.abs(np.asarray(decoded.image, dtype=int) - np.asarray(expected, dtype=int)).mean() < 3


@pytest.mark.parametrize("size", [(403, 302), (1600, 1200), (100, 75)])
def test_a_scaled_mask_equals_scaling_the_whole_mask(size: tuple[int, int]) -> None:
    """The RLE built from the small mask's runs equals encoding the whole mask resized (nearest)."""
    rng = np.random.default_rng(0)
    mask = np.zeros((75, 100), dtype=np.uint8)
    mask[20:50, 30:70] = rng.random((30, 40)) > 0.4  # ragged: many runs per column
    mask[60:62, 95:100] = 1  # touches the right edge
    mask[:, 5:7] = 1  # full height: a run continues from a column's foot to the next column's head
    width, height = size
    rle, area = scaled_up(mask, width, height)
    rows = np.minimum(((np.arange(height) + 0.5) * 75 / height).astype(int), 74)
    cols = np.minimum(((np.arange(width) + 0.5) * 100 / width).astype(int), 99)
    expected = mask[rows][:, cols]
    assert rle["size"] == [height, width]
    assert np.array_equal(masklib.decode(rle), expected) and area == expected.sum() > 0
    assert rle == masklib.encode(expected)  # the canonical runs, as pycocotools writes them
    empty, none = scaled_up(np.zeros((75, 100), dtype=np.uint8), width, height)
    assert none == 0 and masklib.area(empty) == 0 and empty["size"] == [height, width]


def test_detections_come_back_in_the_original_photos_pixels(checkpoint: Path) -> None:
    predictor = Predictor.load(checkpoint, device="cpu", conf=0.3)
    photo = render_scene(2, size=256).image.resize((1600, 1200), Image.Resampling.BILINEAR)
    small = fit_for_model(photo, 128, 128).image
    assert small.size == (128, 96)
    big, reference = predictor.predict([photo, small], workers=0)
    assert (big.width, big.height) == (1600, 1200) and (reference.width, reference.height) == (128, 96)
    assert len(big.detections) == len(reference.detections) > 0
    for large, base in zip(big.detections, reference.detections, strict=True):
        assert large.class_name == base.class_name and large.score == base.score
        assert np.allclose(large.box, np.array(base.box) * 12.5, atol=1e-3)
        assert large.mask["size"] == [1200, 1600]
        assert abs(large.share - base.share) < 0.01  # the same object, at 156x the pixels
    # score --save-dir draws a reduced photo's detections at its size: masks resized too (a mask of
    # the original size would not be drawn at all, only its box)
    for seen, base in zip(on_pixels(big, 128, 96), reference.detections, strict=True):
        mask, expected = masklib.decode(seen.mask).astype(bool), masklib.decode(base.mask).astype(bool)
        assert mask.shape == (96, 128) and (mask & expected).sum() >= 0.9 * (mask | expected).sum()


def test_annotated_image_of_a_large_photo_is_drawn_at_the_decoded_size(
    big_jpeg: Path, checkpoint: Path, tmp_path: Path
) -> None:
    predictor = Predictor.load(checkpoint, device="cpu", conf=0.3)
    [photo] = score_photos(predictor, [big_jpeg], save_dir=tmp_path / "drawn")
    assert (photo.result.width, photo.result.height) == TWELVE_MP and photo.result.detections
    assert photo.annotated is not None
    plain = np.asarray(load_for_model(big_jpeg, 128, 128).image)
    assert plain.shape == (96, 128, 3)
    # Drawn from the decoded (reduced) pixels, at save_width's size so labels stay readable.
    image = Image.open(photo.annotated)
    assert image.size == (save_width(128), save_width(128) * 96 // 128)
    drawn = np.asarray(image.resize((128, 96), Image.Resampling.BILINEAR))
    # Each mask is painted where it lies on the small image (below the score banner at the top).
    change = np.abs(drawn.astype(int) - plain.astype(int)).sum(axis=2)
    checked = 0
    for det in photo.result.detections:
        full = Image.fromarray(masklib.decode(det.mask) * 255)
        inside = np.asarray(full.resize((128, 96), Image.Resampling.NEAREST)) > 0
        inside[:24] = False
        if inside.sum() > 20:
            assert change[inside].mean() > 20, det
            checked += 1
    assert checked > 0


# Peak RSS (VmHWM) of a fresh process scoring one photo with the tiny checkpoint (128 px, 20
# detections kept), measured 2026-12-01 on this 2-core machine: 576x432 photo 1005-1037 MB (importing
# torch alone is ~700 MB), 12 MP photo 1012 MB. Pasting the 20 masks at 12 MP as float, as before
# reduced decoding, alone adds 20 x 48 MB = 975 MB. Bounds with margin:
PEAK_BOUND_MB = 1600
EXTRA_BOUND_MB = 300


def _peak_mb(checkpoint: Path, photo: Path) -> tuple[float, dict]:
    """Peak RSS of a fresh process scoring `photo`: its VmHWM, which (unlike ru_maxrss) does not
    start from the size of the forking pytest process."""
    code = textwrap.dedent(
        f"""
        import json, pathlib
        from officescore.infer import Predictor
        result = Predictor.load({str(checkpoint)!r}, device="cpu", conf=0.3).predict({str(photo)!r})[0]
        status = pathlib.Path("/proc/self/status").read_text().splitlines()
        peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
        out = {{"error": result.error, "n": len(result.detections), "w": result.width, "kb": peak}}
        print(json.dumps(out))
        """
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return report["kb"] / 1024, report


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="peak memory is read from Linux /proc")
def test_scoring_a_12_mp_photo_stays_within_a_memory_bound(
    big_jpeg: Path, checkpoint: Path, tmp_path: Path
) -> None:
    small = tmp_path / "small.jpg"
    render_scene(0, size=256).image.resize((576, 432)).save(small, quality=90)
    base, base_report = _peak_mb(checkpoint, small)
    peak, report = _peak_mb(checkpoint, big_jpeg)
    assert report["error"] is None and report["w"] == TWELVE_MP[0] and report["n"] > 0
    assert base_report["n"] > 0
    print(f"peak RSS: small photo {base:.0f} MB, 12 MP photo {peak:.0f} MB")
    assert peak < PEAK_BOUND_MB
    assert peak - base < EXTRA_BOUND_MB


def _data_set(folder: Path, photos: dict[str, Image.Image], box: tuple[int, int, int, int]) -> Path:
    """A data set as `ingest` writes it: each photo with one desk, the rectangle `box` (x0, y0, x1,
    y1) in the first photo's pixels, scaled to each photo's size."""
    (folder / "images").mkdir(parents=True)
    images, annotations = [], []
    first_width = next(iter(photos.values())).size[0]
    for n, (name, photo) in enumerate(photos.items(), 1):
        photo.save(folder / "images" / name)
        width, height = photo.size
        scale = width / first_width
        mask = np.zeros((height, width), dtype=np.uint8)
        x0, y0, x1, y1 = (round(v * scale) for v in box)
        mask[y0:y1, x0:x1] = 1
        images.append({"id": n, "file_name": f"images/{name}", "width": width, "height": height})
        rle, area = masklib.encode(mask), float(mask.sum())
        annotations.append(
            {"id": n, "image_id": n, "category_id": 1, "segmentation": rle, "area": area,
             "bbox": [x0, y0, x1 - x0, y1 - y0], "iscrowd": 0}
        )  # fmt: skip
    categories = [{"id": 1, "name": "desk"}, {"id": 2, "name": "chair"}]
    (folder / "val.json").write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories})
    )
    (folder / "dataset.json").write_text(json.dumps({"classes": ["desk", "chair"], "counts": {}}))
    return folder


def test_a_data_set_decodes_a_photo_much_larger_than_the_model_at_its_size_masks_with_it(
    tmp_path: Path,
) -> None:
    """Training and evaluation read a 1600 x 1200 photo for a 200 px model as `score` does: at the
    model's size, its masks resized with it, the photo's own size kept; a photo under twice the
    model's size is read whole, and the data set read plainly is left as it was."""
    from officescore.dataset import OfficeDataset

    scene = render_scene(1, size=256).image
    photos = {"big.jpg": scene.resize((1600, 1200)), "small.png": scene.resize((320, 240))}
    data = _data_set(tmp_path / "data", photos, (400, 300, 800, 600))
    plain = OfficeDataset(data, "val")
    reduced = plain.decoded_for(200, 300)
    image, target = reduced[0]
    assert tuple(image.shape) == (3, 200, 267) and target["orig_size"] == (1600, 1200)
    assert tuple(target["masks"].shape) == (1, 200, 267)
    assert target["boxes"].tolist() == [[67.0, 50.0, 133.0, 100.0]]  # the desk, nearest pixels at 1/6
    expected = np.asarray(load_for_model(data / "images" / "big.jpg", 200, 300).image)
    assert np.array_equal(image.mul(255).round().byte().permute(1, 2, 0).numpy(), expected)
    small_image, small = reduced[1]
    assert "orig_size" not in small and tuple(small_image.shape) == (3, 240, 320)
    full_image, full = plain[0]
    assert "orig_size" not in full and tuple(full_image.shape) == (3, 1200, 1600)
    assert full["boxes"].tolist() == [[400.0, 300.0, 800.0, 600.0]]


def test_evaluation_of_a_large_photo_is_what_the_model_finds_at_its_size_put_back_on_the_photo(
    tmp_path: Path,
) -> None:
    """`predict_coco` (eval, validation while training, the label backend's jobs) on a 1537 x 1150
    photo for a 128 px model: the same detections as on the photo decoded at the model's size (128 x
    96), boxes scaled by each side's ratio and masks scaled up onto the photo, never pasted at 1.8 MP
    each."""
    from scoremodels import tiny_model

    from officescore.dataset import OfficeDataset
    from officescore.evaluate import predict_coco

    photo = render_scene(2, size=256).image.resize((1537, 1150), Image.Resampling.BILINEAR)
    big = _data_set(tmp_path / "big", {"photo.jpg": photo}, (300, 300, 900, 800))
    seen = load_for_model(big / "images" / "photo.jpg", 128, 128).image
    assert seen.size == (128, 96)
    small = _data_set(tmp_path / "small", {"photo.png": seen}, (300, 300, 900, 800))
    model = tiny_model(["desk", "chair"], {1: 8.0}).eval()
    on_photo = predict_coco(model, OfficeDataset(big, "val"), "cpu")
    at_model = predict_coco(model, OfficeDataset(small, "val"), "cpu")
    assert len(on_photo) == len(at_model) > 0
    for large, base in zip(on_photo, at_model, strict=True):
        assert large["category_id"] == base["category_id"] and large["score"] == base["score"]
        assert np.allclose(
            large["bbox"], np.array(base["bbox"]) * np.array([1537 / 128, 1150 / 96] * 2), atol=1e-3
        )
        assert large["segmentation"]["size"] == [1150, 1537]
        assert large["segmentation"] == scaled_up(masklib.decode(base["segmentation"]), 1537, 1150)[0]


def test_training_reads_a_large_photo_at_twice_the_models_size(tmp_path: Path) -> None:
    """A 1024 x 768 training photo for a 64 px model is read at 128 x 96 (and a 192 x 144 one): room
    for the scale jitter's zoom-in (1.4x) to still resize down, at a 64th of the pixels decoded and
    jittered."""
    import shutil

    import torch
    from trainsetup import small_config

    from officescore.distributed import DistContext
    from officescore.progress import SILENT
    from officescore.train.setup import setup

    scene = render_scene(3, size=256).image
    photos = {"big.jpg": scene.resize((1024, 768)), "mid.png": scene.resize((192, 144))}
    data = _data_set(tmp_path / "data", photos, (200, 200, 600, 500))
    shutil.copy(data / "val.json", data / "train.json")
    run = setup(small_config(data, tmp_path / "runs"), torch.device("cpu"), DistContext(), None, SILENT)
    try:
        image, target = run.train_set.raw_item(0)
        assert tuple(image.shape) == (3, 96, 128) and target["orig_size"] == (1024, 768)
        assert tuple(target["masks"].shape) == (1, 96, 128)
        assert tuple(run.train_set.raw_item(1)[0].shape) == (3, 96, 128)  # any photo over 128 px
        assert "orig_size" not in run.val_set.raw_item(0)[1]  # evaluation reduces for the model it runs
    finally:
        if run.lock is not None:
            run.lock.close()


def test_evaluation_decodes_at_the_models_min_and_max_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model resizing to 64 on the short side and at most 128 on the long one: a wide photo is
    decoded for both (128 x 32), not for 64 x 64 (64 x 16, which the model would then enlarge)."""
    from scoremodels import tiny_model

    from officescore.dataset import OfficeDataset
    from officescore.evaluate import predict_coco

    wide = _data_set(tmp_path / "wide", {"wide.jpg": Image.new("RGB", (1600, 400), "grey")}, (0, 0, 800, 200))
    model = tiny_model(["desk", "chair"], {1: 8.0})
    model.transform.min_size, model.transform.max_size = (64,), 128
    asked: list[tuple[int, ...]] = []
    decoded_for = OfficeDataset.decoded_for

    def recorded(self: OfficeDataset, *size: Any, **kwargs: Any) -> OfficeDataset:
        asked.append(size)
        return decoded_for(self, *size, **kwargs)

    monkeypatch.setattr(OfficeDataset, "decoded_for", recorded)
    predict_coco(model, OfficeDataset(wide, "val"), "cpu")
    assert asked == [(64, 128)]
    assert OfficeDataset(wide, "val").decoded_for(64, 128)[0][0].shape[-2:] == (32, 128)


def test_input_size_is_the_size_a_detector_resizes_to_at_inference() -> None:
    """torchvision resizes to the last of several min sizes at inference; a TorchScript export wraps
    the model (its `model`); a model that says nothing gives None, not an error."""
    from types import SimpleNamespace

    from officescore.model import input_size

    transform = SimpleNamespace(min_size=(480, 512, 640), max_size=1000)
    assert input_size(SimpleNamespace(transform=transform)) == (640, 1000)
    assert input_size(SimpleNamespace(model=SimpleNamespace(transform=transform))) == (640, 1000)
    assert input_size(SimpleNamespace()) is None and input_size(object()) is None
