"""Predictor, Detection records, drawing, the COCO mapping and `officescore score` end to end."""

from __future__ import annotations

import csv
import json
import math
import os
import struct
import time
import urllib.error
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from scoremodels import tiny_model, write_checkpoint, write_scenes

from officescore import masks as masklib
from officescore.cli import main
from officescore.errors import ConfigError, ModelError
from officescore.infer import (
    ImageResult,
    Predictor,
    coco_categories,
    coco_label_names,
    default_model_source,
    expand_inputs,
    load_coco_mapping,
    score_photos,
)
from officescore.infer.drawing import draw
from officescore.infer.score import Rubric, score_office


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("infer")
    scenes = write_scenes(root / "photos", n=2)
    bad = root / "bad"
    bad.mkdir()
    (bad / "notes.jpg").write_text("this is not a photo")
    (bad / "empty.png").write_bytes(b"")
    jpeg = scenes[0].read_bytes()
    (bad / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (bad / "bomb.png").write_bytes(_bomb_png(20_000, 20_000))
    return {
        "root": root,
        "scenes": scenes[0].parent,
        "bad": bad,
        "checkpoint": write_checkpoint(root / "desk.pt", {"desk": 8.0, "chair": 7.0}),
    }


def _bomb_png(width: int, height: int) -> bytes:
    """A 1x1 PNG whose header claims width x height: the decompression-bomb check must refuse it."""
    import io

    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr : ihdr + 17])) & 0xFFFFFFFF
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", crc)
    return bytes(data)


@pytest.fixture(scope="module")
def predictor(files: dict[str, Path]) -> Predictor:
    # fp32: the batch test below compares to 1e-3, and `auto` is bf16 on CPUs with native bf16
    return Predictor.load(files["checkpoint"], device="cpu", conf=0.5, precision="fp32")


@pytest.fixture(scope="module")
def mixed_results(predictor: Predictor, files: dict[str, Path]) -> list:
    """One run over a folder of good photos, bad files, a missing path and a glob."""
    inputs = [
        files["scenes"],
        files["bad"] / "notes.jpg",
        files["bad"] / "empty.png",
        files["bad"] / "truncated.jpg",
        files["bad"] / "bomb.png",
        files["root"] / "missing.jpg",
        str(files["scenes"] / "scene_1.*"),
    ]
    return predictor.predict(inputs, batch_size=2)


def test_detections_of_a_checkpoint(mixed_results: list) -> None:
    good = [r for r in mixed_results if r.ok]
    assert [Path(r.source).name for r in good] == ["scene_0.jpg", "scene_1.jpg", "scene_1.jpg"]
    first = good[0]
    assert (first.width, first.height) == (128, 128)
    assert first.detections, "the desk-biased model must find desks"
    for det in first.detections:
        assert det.class_name == "desk" and det.score >= 0.5
        x0, y0, x1, y1 = det.box
        assert 0 <= x0 < x1 <= 128 and 0 <= y0 < y1 <= 128
        assert isinstance(det.mask["counts"], str) and det.mask["size"] == [128, 128]
        assert det.share == pytest.approx(masklib.area(det.mask) / (128 * 128))
        as_dict = det.to_dict()
        assert as_dict["class"] == "desk" and len(as_dict["box"]) == 4
    # Identical input, the same detections (the glob matched scene_1 again; it ran in another
    # batch, so float rounding may differ in the last bits).
    assert [d.class_name for d in good[1].detections] == [d.class_name for d in good[2].detections]
    assert np.allclose([d.box for d in good[1].detections], [d.box for d in good[2].detections], atol=1e-3)


def test_bad_inputs_are_reported_per_file(mixed_results: list) -> None:
    errors = {Path(r.source).name: r.error for r in mixed_results if not r.ok}
    assert set(errors) == {"notes.jpg", "empty.png", "truncated.jpg", "bomb.png", "missing.jpg"}
    assert "not an image" in errors["notes.jpg"]
    assert "empty file" in errors["empty.png"]
    assert "truncated" in errors["truncated.jpg"]
    assert "decompression bomb" in errors["bomb.png"]
    assert "no such file" in errors["missing.jpg"]
    assert all(not r.detections for r in mixed_results if not r.ok)


def test_conf_threshold_and_in_memory_images(predictor: Predictor, files: dict[str, Path]) -> None:
    image = Image.open(files["scenes"] / "scene_0.jpg")
    low = predictor.predict(image, conf=0.0, workers=0)[0]
    assert low.source == "<image 1>"
    high = low.above(0.5)
    assert 0 < len(high.detections) <= len(low.detections)
    assert {d.class_name for d in low.detections} == {"desk", "chair"}  # chairs score about 0.27
    assert {d.class_name for d in high.detections} == {"desk"}
    with pytest.raises(ConfigError):
        Predictor(predictor.model, predictor.label_names, predictor.device, conf=1.5)


def test_a_photo_finds_the_same_objects_beside_a_photo_of_another_shape(
    predictor: Predictor, files: dict[str, Path], tmp_path: Path
) -> None:
    """torchvision pads a batch to its largest photo: a landscape photo batched with a portrait one
    was seen padded to a square, and its detections, count and score were not those it had alone
    (the page scores each upload alone; `score photos/` batched them)."""
    scene = Image.open(files["scenes"] / "scene_0.jpg")
    scene.resize((128, 96)).save(tmp_path / "landscape.jpg", quality=95)
    scene.resize((96, 128)).save(tmp_path / "portrait.jpg", quality=95)
    Image.open(files["scenes"] / "scene_1.jpg").resize((128, 96)).save(tmp_path / "wide.jpg", quality=95)
    photos = [tmp_path / "landscape.jpg", tmp_path / "portrait.jpg", tmp_path / "wide.jpg"]

    def found(result: ImageResult) -> list[tuple[str, float, list[float]]]:
        return [(d.class_name, round(d.score, 4), [round(v, 2) for v in d.box]) for d in result.detections]

    alone = [found(predictor.predict([photo], conf=0.2, workers=0)[0]) for photo in photos]
    together = predictor.predict(photos, batch_size=3, conf=0.2, workers=0)
    assert all(alone) and [found(result) for result in together] == alone


def test_exif_orientation_is_honoured(predictor: Predictor, tmp_path: Path) -> None:
    image = Image.new("RGB", (160, 96), (200, 180, 150))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees when displayed
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif)
    result = predictor.predict(path)[0]
    assert (result.width, result.height) == (96, 160)
    for det in result.detections:
        assert det.mask["size"] == [160, 96]


def test_expand_inputs(files: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    for name in ("a.jpg", "sub/b.PNG", "c.txt"):
        (tmp_path / name).write_bytes(b"x")
    found = expand_inputs([tmp_path, str(tmp_path / "*.txt"), str(tmp_path / "*.gif")])
    assert found == [tmp_path / "a.jpg", tmp_path / "sub" / "b.PNG", tmp_path / "c.txt", tmp_path / "*.gif"]


def test_folders_bring_every_photo_format(
    predictor: Predictor, files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder's GIFs (scrape keeps them), AVIFs and phones' HEICs are photos too: read (HEIC with
    officescore[heic], which the tests install), or reported as unreadable, never left out in silence.
    Without pillow-heif a HEIC's error says how to read it."""
    from officescore import images

    photo = Image.open(files["scenes"] / "scene_0.jpg")
    photo.save(tmp_path / "a.gif")
    (tmp_path / "b.avif").write_bytes(b"")
    photo.save(tmp_path / "c.HEIC")
    (tmp_path / "d.heif").write_bytes(b"\x00\x00\x00\x18ftypheic")  # a header, no photo
    (tmp_path / "notes.txt").write_text("not a photo")
    found = expand_inputs([tmp_path])
    assert found == [tmp_path / "a.gif", tmp_path / "b.avif", tmp_path / "c.HEIC", tmp_path / "d.heif"]
    gif, avif, heic, broken = predictor.predict(found, workers=0)
    assert gif.ok and (gif.width, gif.height) == photo.size
    assert heic.ok and (heic.width, heic.height) == photo.size
    decoded = np.asarray(images.load_image(found[2]), dtype=float)  # lossy, but the same picture
    assert np.abs(decoded - np.asarray(photo.convert("RGB"), dtype=float)).mean() < 8
    assert "empty file" in str(avif.error) and str(broken.error).endswith("not an image Pillow can read")
    monkeypatch.setattr(images, "HEIF_READABLE", False)  # as without officescore[heic]
    assert "pip install 'officescore[heic]'" in str(predictor.predict([found[3]], workers=0)[0].error)


def test_img_size_changes_the_model_resize(files: dict[str, Path]) -> None:
    predictor = Predictor.load(files["checkpoint"], device="cpu", img_size=96)
    assert predictor.model.transform.min_size == (96,)
    assert predictor.model.transform.max_size == 96
    with pytest.raises(ConfigError, match="too small"):
        predictor.set_img_size(8)


def test_draw_masks_boxes_and_banner(predictor: Predictor, files: dict[str, Path]) -> None:
    image = Image.open(files["scenes"] / "scene_0.jpg").convert("RGB")
    result = predictor.predict(image, workers=0)[0]
    office = score_office(result.detections, Rubric.load())
    out = draw(image, result.detections, office)
    assert out.size == image.size and out.mode == "RGB"
    before, after = np.asarray(image, dtype=int), np.asarray(out, dtype=int)
    mask = masklib.decode(result.detections[0].mask).astype(bool)
    mask[:20] = False  # below the banner
    assert np.abs(after - before)[mask].mean() > 5  # translucent colour over the mask
    assert after[:10].mean() < before[:10].mean()  # the dark score banner along the top
    assert np.array_equal(np.asarray(draw(image, [], None)), before)


def test_score_photos_saves_annotated_images(
    predictor: Predictor, files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The drawing uses the pixels the model saw: the photos are replaced and removed on disk while the
    model runs, and the annotated images still show the originals. It colours by the model's class
    list, so no two of its classes share a colour (drawing.class_colours)."""
    import shutil

    from officescore.infer import predictor as predictor_module

    lists = []
    monkeypatch.setattr(
        predictor_module, "draw", lambda *a, **kw: lists.append(kw.get("classes")) or draw(*a, **kw)
    )

    photos_dir = tmp_path / "photos"
    shutil.copytree(files["scenes"], photos_dir)
    originals = {p.name: Image.open(p).convert("RGB") for p in sorted(photos_dir.iterdir())}

    def change_photos(module: object, inputs: object) -> None:
        if (photos_dir / "scene_1.jpg").exists():  # once: after both photos were decoded
            Image.new("RGB", (128, 128), (0, 0, 255)).save(photos_dir / "scene_0.jpg")
            (photos_dir / "scene_1.jpg").unlink()

    handle = predictor.model.register_forward_pre_hook(change_photos)
    try:
        photos = score_photos(predictor, [photos_dir, files["bad"] / "empty.png"], save_dir=tmp_path / "out")
    finally:
        handle.remove()
    assert not (photos_dir / "scene_1.jpg").exists(), "the model never ran"
    assert lists == [predictor.classes, predictor.classes]
    assert [p.score is not None for p in photos] == [True, True, False]
    assert photos[0].score.total == score_office(photos[0].result.detections).total
    assert [p.annotated.name for p in photos[:2]] == ["scene_0.jpg", "scene_1.jpg"]
    for photo in photos[:2]:
        # drawn on the pixels the model saw (not decoded again), small photos drawn larger (drawing.py)
        expected = draw(originals[photo.annotated.name], photo.result.detections, photo.score, width=640)
        expected.save(tmp_path / "expected.jpg", quality=90)
        assert Image.open(photo.annotated).size == (640, 640)
        assert np.array_equal(
            np.asarray(Image.open(photo.annotated)), np.asarray(Image.open(tmp_path / "expected.jpg"))
        )
    assert photos[2].to_dict()["score"] is None and photos[2].to_dict()["error"]


def test_save_dir_keeps_the_earlier_annotated_image_when_a_write_fails(
    predictor: Predictor, files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "scene_0.jpg").write_bytes(b"the earlier annotated image")

    def torn_save(image: Image.Image, target: object, *args: object, **kwargs: object) -> None:
        # Half a JPEG, then the disk fills up (or Ctrl-C arrives).
        if isinstance(target, (str, Path)):
            Path(target).write_bytes(b"\xff\xd8 half")
        else:
            target.write(b"\xff\xd8 half")  # type: ignore[attr-defined]
        raise OSError("No space left on device")

    monkeypatch.setattr(Image.Image, "save", torn_save)
    with pytest.raises(OSError, match="No space left"):
        score_photos(predictor, [files["scenes"] / "scene_0.jpg"], save_dir=out)
    assert (out / "scene_0.jpg").read_bytes() == b"the earlier annotated image"


def test_save_dir_in_the_photos_folder_never_overwrites_a_photo(
    predictor: Predictor, files: dict[str, Path], tmp_path: Path
) -> None:
    import shutil

    photos_dir = tmp_path / "photos"
    shutil.copytree(files["scenes"], photos_dir)
    before = {p.name: p.read_bytes() for p in photos_dir.iterdir()}
    photos = score_photos(predictor, [photos_dir], save_dir=photos_dir)
    assert {p.name: p.read_bytes() for p in photos_dir.iterdir() if p.name in before} == before
    assert sorted(p.annotated.name for p in photos) == ["scene_0_2.jpg", "scene_1_2.jpg"]


# --------------------------------------------------------------------------- the COCO model


def test_coco_mapping_covers_the_office_classes() -> None:
    categories = coco_categories()
    names = coco_label_names()
    assert len(categories) == len(names) == 91
    by_coco = {categories[i]: names[i] for i in range(91)}
    assert by_coco["dining table"] == "desk"
    assert by_coco["tv"] == "monitor"
    assert by_coco["potted plant"] == "plant"
    assert by_coco["book"] == "books"
    assert by_coco["cup"] == "mug"
    assert by_coco["chair"] == "chair" and by_coco["mouse"] == "mouse"
    assert by_coco["person"] is None and by_coco["__background__"] is None
    mapped = set(load_coco_mapping().values())
    assert mapped <= set(Rubric.load().classes), "every mapped class must count in the default rubric"


def test_coco_labels_become_office_classes(files: dict[str, Path]) -> None:
    categories = coco_categories()
    chair, person = categories.index("chair"), categories.index("person")
    # A 91-label model (COCO's count) preferring "chair", with "person" a clear second.
    model = tiny_model([f"c{i}" for i in range(1, 91)], {chair: 8.0, person: 7.0})
    predictor = Predictor.from_coco_model(model, torch.device("cpu"), conf=0.0)
    assert predictor.kind == "coco"
    image = Image.open(files["scenes"] / "scene_0.jpg")
    with torch.inference_mode():
        raw = model([torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1).float() / 255])[0]
    assert person in raw["labels"].tolist(), "the raw model also outputs 'person'"
    result = predictor.predict(image, workers=0)[0]
    assert result.detections
    assert {d.class_name for d in result.detections} == {"chair"}  # person is not an office object


def test_coco_offline_error_advises_model(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(ModelError) as info:
        Predictor.load("coco", device="cpu")
    message = str(info.value)
    assert "maskrcnn_resnet50_fpn_v2_coco" in message and "--model" in message
    assert str(tmp_path / "hub" / "checkpoints") in message


def test_default_model_is_newest_best_pt(tmp_path: Path) -> None:
    assert default_model_source(tmp_path / "runs") == "coco"
    paths = []
    for name in ("old", "new"):
        path = tmp_path / "runs" / "train" / name / "weights" / "best.pt"
        path.parent.mkdir(parents=True)
        path.write_bytes(b"x")
        paths.append(path)
    now = time.time()
    os.utime(paths[0], (now - 100, now - 100))
    assert default_model_source(tmp_path / "runs") == str(paths[1])


# --------------------------------------------------------------------------- the CLI


def test_cli_scores_good_photos_and_exits_2_for_bad_ones(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    good = files["scenes"] / "scene_0.jpg"
    args = ["score", str(good), str(files["bad"] / "notes.jpg"), str(files["root"] / "nope.jpg")]
    with pytest.raises(SystemExit) as info:
        main([*args, "--model", str(files["checkpoint"]), "--json", "--device", "cpu"])
    assert info.value.code == 2
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert doc["failed"] == 2 and doc["kind"] == "checkpoint" and doc["conf"] == 0.5
    first, second, third = doc["photos"]
    assert first["error"] is None and first["detections"]
    assert first["score"]["total"] == score_office(first["detections"]).total > 0
    assert second["score"] is None and "not an image" in second["error"]
    assert "no such file" in third["error"]
    lines = [line for line in err.splitlines() if line.strip()]
    assert sum("notes.jpg: not an image" in line for line in lines) == 1
    assert lines[-1].startswith("error: 2 of 3 photos could not be read")
    assert "Traceback" not in err


def test_cli_scores_a_photo_too_small_to_mean_anything_but_says_so_once(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 1x1 photo was scored like any other (12 objects, 25/100 from an untrained model, no word):
    it is still scored, with one warning naming its size, in the JSON and on stderr."""
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (1, 1), (200, 100, 50)).save(tiny)
    scene = files["scenes"] / "scene_0.jpg"
    with pytest.raises(SystemExit) as info:
        main(["score", str(tiny), str(scene), "--model", str(files["checkpoint"]), "--json"])
    assert info.value.code == 0
    out, err = capsys.readouterr()
    photos = json.loads(out)["photos"]
    assert [(p["warning"], p["score"] is not None) for p in photos] == [
        ("too small: 1x1 px", True),
        (None, True),
    ]
    warned = [line for line in err.splitlines() if line.startswith("warning:")]
    assert warned == [f"warning: {tiny}: too small: 1x1 px; its score says little"]


def test_cli_says_when_the_models_cap_per_photo_may_have_cut_its_objects(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """torchvision keeps at most `box_detections_per_img` detections per photo: a photo that filled
    it with objects above --conf may have lost more, and nothing said so. The cap read is the
    checkpoint's own (5 here), not torchvision's default 100; a photo under it gets no note."""
    capped = write_checkpoint(tmp_path / "five.pt", {"desk": 8.0}, cap=5)
    scene = files["scenes"] / "scene_0.jpg"
    for model, cap in ((capped, 5), (files["checkpoint"], None)):  # the same photo finds 13 under 20
        with pytest.raises(SystemExit) as info:
            main(["score", str(scene), "--model", str(model), "--conf", "0.5", "--json"])
        assert info.value.code == 0
        out, err = capsys.readouterr()
        (photo,) = json.loads(out)["photos"]
        assert photo["detection_cap"] == cap
        notes = [line for line in err.splitlines() if line.startswith("note:")]
        if cap is None:
            assert len(photo["detections"]) < 20 and notes == []
        else:
            assert len(photo["detections"]) == 5 and len(notes) == 1
            assert notes[0].startswith(f"note: {scene}: 5 objects found, the most this model keeps per photo")


def test_cli_cap_note_names_the_conf_score_ran_with(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The note weighs the cap against the --conf given (0.7 here), not the default 0.5."""
    capped = write_checkpoint(tmp_path / "five.pt", {"desk": 8.0}, cap=5)
    with pytest.raises(SystemExit):
        main(
            ["score", str(files["scenes"] / "scene_0.jpg"), "--model", str(capped), "--conf", "0.7", "--json"]
        )
    (note,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note:")]
    assert "threshold 0.7): objects above the threshold may be missing" in note


def test_the_cap_is_noted_only_when_its_lowest_kept_score_reaches_the_threshold() -> None:
    """A model that kept its cap of detections, some under the threshold in use (a TorchScript
    export keeps scores over its own 0.05; the page's slider moves up), cut nothing above it."""
    from officescore.infer.predictor import _note_cap

    def noted(scores: list[float], cap: int | None, conf: float) -> int | None:
        result = ImageResult("office.jpg", 4, 4)
        _note_cap(result, torch.tensor(scores), cap, conf)
        return result.cap

    assert noted([0.9, 0.6, 0.5], 3, 0.5) == 3
    assert noted([0.9, 0.6, 0.49], 3, 0.5) is None  # one under the threshold: the cap cut nothing above it
    assert noted([0.9, 0.6], 3, 0.5) is None  # under the cap
    assert noted([0.9, 0.6, 0.5], None, 0.5) is None  # a model that does not say its cap
    found = ImageResult("office.jpg", 4, 4, cap=3, cap_lowest=0.6)
    assert found.capped(0.6) == 3 and found.above(0.6).capped(0.6) == 3
    assert found.capped(0.65) is None and found.above(0.65).cap_note(0.65) is None
    assert "objects above the threshold may be missing" in (found.cap_note(0.5) or "")


def test_the_cap_note_names_the_lowest_score_kept_and_lapses_above_it() -> None:
    """The lowest score the model kept at its cap is what the note names and what a higher
    threshold (the page's slider) is weighed against: above it, the cap cut nothing shown."""
    from officescore.infer.predictor import _note_cap

    result = ImageResult("office.jpg", 4, 4)
    _note_cap(result, torch.tensor([0.9, 0.6, 0.55]), 3, 0.5)
    assert result.cap_lowest == pytest.approx(0.55)
    assert result.capped(0.55) == 3 and result.capped(0.6) is None
    assert "(lowest score 0.55, threshold 0.5)" in (result.cap_note(0.5) or "")


class _Wrapped(torch.nn.Module):
    """A detector as a TorchScript export holds one (`.model`, with its cap of 2 per photo), keeping
    its own low threshold: it returns these scores whatever --conf is."""

    def __init__(self, scores: list[float]) -> None:
        super().__init__()
        self.scores = scores
        self.model = SimpleNamespace(roi_heads=SimpleNamespace(detections_per_img=2))

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        n = len(self.scores)
        boxes, labels = torch.tensor([[0.0, 0.0, 8.0, 8.0]] * n), torch.ones(n, dtype=torch.int64)
        return [{"boxes": boxes, "labels": labels, "scores": torch.tensor(self.scores)} for _ in images]


def test_an_export_at_its_cap_is_noted_only_when_all_it_kept_reach_conf() -> None:
    """An export's cap is read from the model it wraps; it keeps scores under --conf, so a photo at
    its cap with one under --conf lost nothing above it: no cap in the JSON, no note."""
    photo = Image.new("RGB", (64, 64))
    for scores, cap in (([0.9, 0.6], 2), ([0.9, 0.3], None)):
        predictor = Predictor(_Wrapped(scores), [None, "desk"], torch.device("cpu"), conf=0.5)
        assert predictor.detection_cap() == 2
        result = predictor.predict(photo, workers=0)[0]
        assert result.cap == cap and len(result.detections) == (2 if cap else 1)


def test_too_small_is_a_shorter_side_under_32_px_of_a_photo_that_was_read() -> None:
    assert ImageResult("a.jpg", 31, 4000).too_small == "too small: 31x4000 px"
    assert ImageResult("a.jpg", 32, 32).too_small is None
    assert ImageResult("a.jpg", 1, 1, error="not an image").too_small is None


@pytest.mark.parametrize("as_json", [False, True])
def test_cli_stopped_by_ctrl_c_writes_the_photos_scored_so_far(
    files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    as_json: bool,
) -> None:
    """Ctrl-C in the second batch of a folder of two: the first photo's CSV row (and JSON, marked
    partial) and drawing are written, one line says how far it got, exit 130 as after any Ctrl-C."""
    run_batch, batches = Predictor._run_batch, []

    def ctrl_c_in_the_second(self: Predictor, *args: object, **kwargs: object):  # noqa: ANN202
        batches.append(1)
        if len(batches) == 2:
            raise KeyboardInterrupt
        yield from run_batch(self, *args, **kwargs)

    monkeypatch.setattr(Predictor, "_run_batch", ctrl_c_in_the_second)
    csv_file, drawn = tmp_path / "scores.csv", tmp_path / "drawn"
    argv = ["score", str(files["scenes"]), "--model", str(files["checkpoint"]), "--batch-size", "1"]
    argv += ["--csv", str(csv_file), "--save-dir", str(drawn), "--device", "cpu"]
    with pytest.raises(SystemExit) as info:
        main([*argv, "--json"] if as_json else argv)
    assert info.value.code == 130
    out, err = capsys.readouterr()
    first = str(files["scenes"] / "scene_0.jpg")
    assert [row["path"] for row in csv.DictReader(csv_file.open())] == [first]
    assert [p.name for p in drawn.iterdir()] == ["scene_0.jpg"]
    if as_json:
        doc = json.loads(out)
        assert doc["partial"] is True and [p["path"] for p in doc["photos"]] == [first]
    else:
        assert "mean score 25.0 over 1 photos" in out  # the table of the photo scored
    last = [line for line in err.splitlines() if line.strip()][-1]
    assert last == f"stopped (Ctrl-C) after 1 of 2 photos; wrote {csv_file} and drawings in {drawn} (partial)"


def test_cli_stopped_by_ctrl_c_before_any_photo_was_scored_writes_nothing(
    files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ctrl-C in the first batch: an earlier --csv is left as it was (not emptied to a header), no
    table is shown, and the line says nothing was written."""

    def ctrl_c_at_once(self: Predictor, *args: object, **kwargs: object):  # noqa: ANN202
        raise KeyboardInterrupt
        yield

    monkeypatch.setattr(Predictor, "_run_batch", ctrl_c_at_once)
    csv_file = tmp_path / "scores.csv"
    csv_file.write_text("an earlier run's scores\n")
    argv = ["score", str(files["scenes"]), "--model", str(files["checkpoint"]), "--csv", str(csv_file)]
    with pytest.raises(SystemExit) as info:
        main([*argv, "--device", "cpu"])
    assert info.value.code == 130
    out, err = capsys.readouterr()
    assert csv_file.read_text() == "an earlier run's scores\n"
    assert [line for line in out.splitlines() if line.strip()] == [
        line for line in out.splitlines() if line.startswith("model: ")
    ]  # the model it loaded, and no table
    assert [line for line in err.splitlines() if line.strip()][-1] == (
        "stopped (Ctrl-C) after 0 of 2 photos; nothing written"
    )


def test_cli_one_photo_tables_csv_and_save_dir(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photo = files["scenes"] / "scene_1.jpg"
    csv_file = tmp_path / "scores.csv"
    with pytest.raises(SystemExit) as info:
        main(
            [
                "score",
                str(photo),
                "--model",
                str(files["checkpoint"]),
                "--save-dir",
                str(tmp_path / "annotated"),
                "--csv",
                str(csv_file),
                "--batch-size",
                "1",
            ]
        )
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "Breakdown" in out and "desk" in out and "Office score: 25/100" in out
    assert "add a chair" in out
    assert (tmp_path / "annotated" / "scene_1.jpg").is_file()
    header, row = csv_file.read_text().splitlines()
    # every rubric class in rubric order, found or not, so CSVs of different runs share one header
    assert header.split(",")[4 : 4 + len(Rubric.load().classes)] == list(Rubric.load().classes)
    assert row.startswith(f"{photo},25.0,sparsely equipped,")


def test_cli_run_twice_with_save_dir_inside_the_photo_folder_scores_the_photos_not_the_drawings(
    files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The second run scored the first run's annotated copies as photos (4 photos, not 2)."""
    import shutil

    photos = tmp_path / "photos"
    shutil.copytree(files["scenes"], photos)
    argv = ["score", str(photos), "--model", str(files["checkpoint"]), "--save-dir", str(photos / "drawn")]
    for _ in range(2):
        with pytest.raises(SystemExit) as info:
            main([*argv, "--json"])
        assert info.value.code == 0
        scored = [Path(p["path"]).name for p in json.loads(capsys.readouterr().out)["photos"]]
        assert scored == ["scene_0.jpg", "scene_1.jpg"]
    assert sorted(p.name for p in (photos / "drawn").iterdir()) == ["scene_0.jpg", "scene_1.jpg"]
    drawn = ["score", str(photos / "drawn"), "--model", str(files["checkpoint"]), "--json"]
    with pytest.raises(SystemExit) as info:  # the folder given as --save-dir itself: all of it is scored
        main([*drawn, "--save-dir", str(photos / "drawn")])
    assert info.value.code == 0
    assert len(json.loads(capsys.readouterr().out)["photos"]) == 2
    monkeypatch.chdir(photos)  # a drawing named on the command line is scored, also as a relative path
    with pytest.raises(SystemExit) as info:
        main(
            [
                "score",
                "drawn/scene_0.jpg",
                "--model",
                str(files["checkpoint"]),
                "--save-dir",
                "drawn",
                "--json",
            ]
        )
    assert info.value.code == 0
    assert [Path(p["path"]).name for p in json.loads(capsys.readouterr().out)["photos"]] == ["scene_0.jpg"]
    with pytest.raises(SystemExit) as info:  # and a relative --save-dir is still where the drawings are
        main(["score", ".", "--model", str(files["checkpoint"]), "--save-dir", "drawn", "--json"])
    assert info.value.code == 0
    assert len(json.loads(capsys.readouterr().out)["photos"]) == 2
    with pytest.raises(SystemExit) as info:  # only drawings: said so, not "no photos found in"
        main(
            [
                "score",
                str(photos / "drawn" / "*.jpg"),
                "--model",
                str(files["checkpoint"]),
                "--save-dir",
                str(photos / "drawn"),
            ]
        )
    assert info.value.code == 2
    assert "no photos found outside --save-dir" in capsys.readouterr().err


def test_cli_many_photos_summary_progress_and_csv(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A folder plus bad files: progress line, summary table, mean, CSV rows; failed rows stay blank."""
    csv_file = tmp_path / "many.csv"
    bad = [str(files["bad"] / "empty.png"), str(files["bad"] / "bomb.png")]
    with pytest.raises(SystemExit) as info:
        main(
            ["score", str(files["scenes"]), *bad, "--model", str(files["checkpoint"]), "--csv", str(csv_file)]
        )
    assert info.value.code == 2
    out, err = capsys.readouterr()
    assert "4 photos" in out and out.count("failed") == 2 and "mean score 25.0 over 2 photos" in out
    assert "detecting: 4/4" in err  # one line per stage when not on a terminal
    assert "error: 2 of 4 photos could not be read" in err
    rows = list(csv.DictReader(csv_file.open()))
    assert [Path(r["path"]).name for r in rows] == ["scene_0.jpg", "scene_1.jpg", "empty.png", "bomb.png"]
    assert rows[0]["score"] == "25.0" and int(rows[0]["objects"]) == int(rows[0]["desk"]) > 0
    failed = rows[2]
    assert "empty" in failed["error"] and failed["objects"] == "" and failed["desk"] == ""


def test_cli_prints_paths_with_brackets_as_they_are(
    files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Rich read `[old]` in `shots [old]` as markup and dropped it: `annotated images in drawn `,
    `wrote shots /s.csv`, and the photo column and a photo's table title lost it too."""
    import shutil

    monkeypatch.chdir(tmp_path)
    shutil.copytree(files["scenes"], "shots [old]")
    model = ["--model", str(files["checkpoint"]), "--save-dir", "drawn [v2]"]
    with pytest.raises(SystemExit) as info:
        main(["score", "shots [old]", *model, "--csv", "shots [old]/s.csv"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "annotated images in drawn [v2]" in out and "wrote shots [old]/s.csv" in out
    assert "shots [old]/scene_0.jpg" in out
    with pytest.raises(SystemExit) as info:
        main(["score", "shots [old]/scene_1.jpg", *model])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "shots [old]/scene_1.jpg (" in out and "annotated image: drawn [v2]/scene_1.jpg" in out


def test_cli_empty_folder_is_one_line_before_loading_a_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").mkdir()
    for save_dir in ([], ["--save-dir", str(tmp_path / "drawn")]):  # not "no photos found outside --save-dir"
        with pytest.raises(SystemExit) as info:  # the model file is missing too: the photos are named first
            main(["score", str(tmp_path / "empty"), "--model", str(tmp_path / "missing.pt"), *save_dir])
        assert info.value.code == 2
        out, err = capsys.readouterr()
        assert out == "" and err.strip().startswith(f"error: no photos found in {tmp_path / 'empty'}")
        assert len(err.strip().splitlines()) == 1


def test_cli_only_mistyped_photos_are_one_line_before_loading_a_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Not one of the photos exists: that is said before the model loads (the default model would be
    downloaded first), naming the first three."""
    typed = [str(tmp_path / f"ofice_{i}.jpg") for i in range(4)]
    with pytest.raises(SystemExit) as info:
        main(["score", *typed, "--model", str(tmp_path / "missing.pt")])
    assert info.value.code == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1
    assert (
        err.strip()
        == f"error: no such photo: {', '.join(typed[:3])} and 1 more; pass image files, folders or globs"
    )


def test_cli_default_model_is_the_newest_best_pt(
    files: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    best = tmp_path / "runs" / "train" / "exp" / "weights" / "best.pt"
    best.parent.mkdir(parents=True)
    best.write_bytes(files["checkpoint"].read_bytes())
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        main(["score", str(files["scenes"] / "scene_0.jpg"), "--json"])
    assert info.value.code == 0
    doc = json.loads(capsys.readouterr().out)
    assert Path(doc["model"]) == Path("runs/train/exp/weights/best.pt") and doc["kind"] == "checkpoint"
    assert doc["photos"][0]["score"]["total"] == 25.0


def test_cli_warns_when_the_model_cannot_detect_an_essential(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # No monitor or laptop class: the default rubric's "a screen" is never met, every score <= 35.
    blind = write_checkpoint(tmp_path / "desk_chair.pt", {"desk": 8.0}, classes=["desk", "chair"])
    photo = str(files["scenes"] / "scene_0.jpg")
    with pytest.raises(SystemExit) as info:
        main(["score", photo, "--model", str(blind), "--json"])
    assert info.value.code == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["photos"][0]["score"]["total"] <= 35
    assert "warning: the model cannot detect a screen, essential in rubric default: every score" in err
    assert err.count("warning") == 1  # the essential's warning says more: not the total's as well
    with pytest.raises(SystemExit):  # a model with every essential class: no warning
        main(["score", photo, "--model", str(files["checkpoint"]), "--json"])
    assert "warning" not in capsys.readouterr().err
    uncapped = tmp_path / "uncapped.toml"  # a rubric whose essentials cap nothing: nothing to warn of
    uncapped.write_text(
        "missing_essential_cap = 100\n[classes.desk]\npoints = 10\n[classes.monitor]\npoints = 10\n"
        "[[essentials]]\nany_of = ['monitor']\n"
    )
    with pytest.raises(SystemExit):
        main(["score", photo, "--model", str(blind), "--rubric", str(uncapped), "--json"])
    assert "essential" not in capsys.readouterr().err  # (its monitor's 10 points are out of reach)


def test_cli_warns_when_a_rubric_class_the_model_cannot_detect_keeps_every_score_under_100(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A misspelt class (`monitr`) earned nothing in silence, and suggested "add a monitr: +50"."""
    typo = tmp_path / "typo.toml"
    typo.write_text("[classes.desk]\npoints = 50\n[classes.monitr]\npoints = 50\n")
    photo = str(files["scenes"] / "scene_0.jpg")
    with pytest.raises(SystemExit) as info:
        main(["score", photo, "--model", str(files["checkpoint"]), "--rubric", str(typo), "--json"])
    assert info.value.code == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["photos"][0]["score"]["total"] <= 50
    assert "warning: the model cannot detect monitr, in rubric typo: no photo can score more than 50" in err


def test_cli_json_and_csv_of_a_photo_whose_name_is_not_utf8(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A Latin-1 name from an old archive: Python sees a lone surrogate that UTF-8 cannot encode.
    name = os.fsdecode(b"caf\xe9.jpg")
    (tmp_path / name).write_bytes((files["scenes"] / "scene_0.jpg").read_bytes())
    csv_file = tmp_path / "scores.csv"
    argv = ["score", str(tmp_path), "--model", str(files["checkpoint"]), "--json", "--csv", str(csv_file)]
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["photos"][0]["path"] == str(tmp_path / name)  # read back to the very name
    row = csv_file.read_bytes().decode("utf-8").splitlines()[1]
    assert row.startswith(str(tmp_path / "caf\\udce9.jpg") + ",")


def test_cli_breakdown_marks_essential_and_bonus_classes_as_the_page_does(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(["score", str(files["scenes"] / "scene_1.jpg"), "--model", str(files["checkpoint"])])
    out = capsys.readouterr().out
    assert "desk (essential)" in out and "lamp (bonus)" in out


def test_cli_says_how_the_points_make_the_score(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 10 of 20 full marks is 50/100, and the missing monitor caps it at 20: the points column (10)
    # does not add up to the score (20) unless the page says why.
    rubric = tmp_path / "small.toml"
    rubric.write_text(
        "missing_essential_cap = 20\n[classes.desk]\npoints = 10\n[classes.monitor]\npoints = 10\n"
        "[[essentials]]\nany_of = ['monitor']\n"
    )
    photo = str(files["scenes"] / "scene_1.jpg")
    with pytest.raises(SystemExit):
        main(["score", photo, "--model", str(files["checkpoint"]), "--rubric", str(rubric)])
    out = capsys.readouterr().out
    assert "Office score: 20/100" in out
    assert "10 points of 20 full marks = 50/100, capped at 20 while an essential is missing" in out
    with pytest.raises(SystemExit):  # the default rubric's points are the score: nothing to explain
        main(["score", photo, "--model", str(files["checkpoint"])])
    out = capsys.readouterr().out
    assert "Office score: 25/100" in out and "full marks" not in out
    # Under the cap the essential took nothing off: the points are scaled, not "capped".
    rubric.write_text(rubric.read_text().replace("missing_essential_cap = 20", "missing_essential_cap = 60"))
    with pytest.raises(SystemExit):
        main(["score", photo, "--model", str(files["checkpoint"]), "--rubric", str(rubric)])
    out = capsys.readouterr().out
    assert "Office score: 50/100" in out and "10 points of 20 full marks = 50/100" in out
    assert "capped" not in out


def test_cli_csv_naming_a_photo_is_refused(
    files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    photo = tmp_path / "office.jpg"
    photo.write_bytes((files["scenes"] / "scene_0.jpg").read_bytes())
    monkeypatch.chdir(tmp_path)  # the photo named as written from inside its folder
    with pytest.raises(SystemExit) as info:
        main(["score", str(tmp_path), "--model", str(files["checkpoint"]), "--csv", "office.jpg"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "--csv office.jpg: is one of the photos being scored" in err and len(err.splitlines()) == 1
    assert photo.read_bytes() == (files["scenes"] / "scene_0.jpg").read_bytes()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--conf", "2"], "--conf 2.0: must be between 0 and 1"),
        (["--model", "missing.pt"], "--model missing.pt: no such model file"),
        (["--rubric", "missing.toml"], "--rubric missing.toml: no such file"),
        (["--device", "tpu"], "choose one of"),
    ],
)
def test_cli_bad_options_one_line(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str], args: list[str], fragment: str
) -> None:
    argv = ["score", str(files["scenes"] / "scene_0.jpg"), *args]
    if "--model" not in args:
        argv += ["--model", str(files["checkpoint"])]
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and len(err.splitlines()) == 1


def test_csv_columns_of_classes_named_like_its_own_columns_are_told_apart(tmp_path: Path) -> None:
    """A model whose classes include "score" or "label" wrote two "score" columns; a reader (a
    spreadsheet's lookup, csv.DictReader) took one of them."""
    import csv

    from officescore.infer import Detection, ImageResult
    from officescore.infer.predictor import PhotoScore, write_csv

    mask = masklib.encode(np.ones((4, 4), np.uint8))
    names = ("score", "label", "desk", "desk")
    found = [Detection(name, 0.9, [0.0, 0.0, 4.0, 4.0], mask, 1.0) for name in names]
    photo = PhotoScore(ImageResult("office.jpg", 4, 4, found), score_office(found))
    write_csv(tmp_path / "scores.csv", [photo])
    with (tmp_path / "scores.csv").open(newline="") as handle:
        (row,) = list(csv.DictReader(handle))
    assert row["score"] == str(photo.score.total) and row["label"] == photo.score.label
    assert row["score (count)"] == "1" and row["label (count)"] == "1" and row["desk"] == "2"
    assert row["objects"] == "4" and row["chair"] == "0"  # every object counted, absent classes 0


def test_a_result_above_a_threshold_keeps_scores_equal_to_it_and_its_error() -> None:
    from officescore.infer import Detection, ImageResult

    def found(score: float) -> Detection:
        return Detection("chair", score, [0.0, 0.0, 1.0, 1.0], {"size": [2, 2], "counts": "04"}, 0.25)

    result = ImageResult("office.jpg", 2, 2, [found(0.49), found(0.5), found(0.51)])
    assert [d.score for d in result.above(0.5).detections] == [0.5, 0.51]
    broken = ImageResult("notes.jpg", error="not an image").above(0.5)
    assert broken.error == "not an image" and not broken.ok


def test_a_detection_reads_its_attributes_by_name() -> None:
    from officescore.infer import Detection

    chair = Detection(
        "chair",
        0.912,
        [0.0, 0.0, 1.0, 1.0],
        {},
        0.1,
        attributes={"armrests": True, "wheels": False, "colour": "black"},
    )
    assert chair.label() == "chair 0.91 armrests no wheels black"
    assert chair.to_dict()["mask_score"] is None  # boxes only: no mask to be sure of


def test_the_points_note_says_clipped_or_capped_and_stays_away_when_they_add_up() -> None:
    """score's line under the breakdown: nothing when the points are the score (full marks 100, half
    points included), "clipped to 100" past 100 with nothing missing, "capped" only when an
    essential is missing."""
    from types import SimpleNamespace

    from officescore.infer.score import how_points_make_the_total

    def office(earned: float, total: float, missing: list[str]) -> SimpleNamespace:
        rows = [SimpleNamespace(earned=earned, possible=100.0, bonus=False)]
        return SimpleNamespace(breakdown=rows, attributes=[], total=total, missing_essentials=missing)

    assert how_points_make_the_total(office(37.5, 37.5, [])) == ""
    assert how_points_make_the_total(office(120.0, 100.0, [])).endswith(", clipped to 100")
    assert how_points_make_the_total(office(80.0, 35.0, ["a screen"])).endswith(
        ", capped at 35 while an essential is missing"
    )


def test_the_points_note_counts_attribute_points_and_leaves_bonus_classes_out_of_full_marks() -> None:
    """The note's sums: attribute rules' points count, a bonus class's possible points are not full
    marks, points that round to the score add up, and a rubric of 200 full marks is only scaled (and
    capped only where the cap took points)."""
    from types import SimpleNamespace

    from officescore.infer.score import how_points_make_the_total

    def office(
        rows: list[tuple[float, float, bool]], rules: list[float], total: float, missing: tuple[str, ...] = ()
    ) -> SimpleNamespace:
        breakdown = [SimpleNamespace(earned=e, possible=p, bonus=b) for e, p, b in rows]
        attributes = [SimpleNamespace(earned=e) for e in rules]
        return SimpleNamespace(
            breakdown=breakdown, attributes=attributes, total=total, missing_essentials=missing
        )

    # 90 + a 10-point bonus class + 5 attribute points, of 100: 105, clipped
    assert how_points_make_the_total(office([(90, 100, False), (10, 10, True)], [5], 100.0)) == (
        "105 points of 100 full marks = 105/100, clipped to 100"
    )
    assert how_points_make_the_total(office([(37.46, 100, False)], [], 37.5)) == ""  # adds up, rounded
    assert (
        how_points_make_the_total(office([(90, 200, False)], [], 45.0))
        == "90 points of 200 full marks = 45/100"
    )
    # under the cap, a missing essential takes nothing: no word of a cap
    assert how_points_make_the_total(office([(40, 200, False)], [], 20.0, ("a screen",))) == (
        "40 points of 200 full marks = 20/100"
    )


def test_photos_share_a_forward_only_when_torchvision_pads_them_alike() -> None:
    """`_same_padding` groups by the size each photo is padded to alone: its resized sides (rounded
    down, as torchvision's resize does) each rounded up to 32. A photo put in the group of one
    padded larger is seen padded, and finds other objects than alone."""
    from officescore.infer.predictor import _same_padding

    def photos(*sizes: tuple[int, int]) -> list[torch.Tensor]:
        return [torch.zeros(3, height, width) for height, width in sizes]

    # at (96, 1000): widths 96, 100 and 200 pad to 96, 128 and 224; 90x90 grows to 96x96
    assert _same_padding(photos((96, 96), (96, 100), (96, 200), (90, 90)), (96, 1000)) == [[0, 3], [1], [2]]
    # at (75, 1000) a 100 px high photo is scaled by 0.75: 129 px wide is 96.75 -> 96, 130 is 97.5 -> 97
    assert _same_padding(photos((100, 129), (100, 128), (100, 130)), (75, 1000)) == [[0, 1], [2]]
    # the long side's limit: 100x400 at (100, 200) is scaled by 0.5 to 50x200 -> padded 64x224
    assert _same_padding(photos((100, 400), (64, 224), (100, 100)), (100, 200)) == [[0, 1], [2]]
    assert _same_padding(photos((10, 20), (10, 20), (20, 10)), None) == [[0, 1], [2]]  # no model size
    # without one, by both sides: one height and other widths pad apart
    assert _same_padding(photos((10, 20), (10, 30)), None) == [[0], [1]]
    # 100 and 120 px wide both pad to 128: one forward, not one per 16 px
    assert _same_padding(photos((96, 100), (96, 120)), (96, 1000)) == [[0, 1]]


def test_batches_by_padded_size_hold_each_photo_once_and_never_more_than_batch_size() -> None:
    """--batch-size bounds each forward (GPU memory); a photo is in one batch only; 120 and 128 px
    wide pad alike (4 cells of 32) and share a batch; an empty image waits for its decode's error."""
    from officescore.infer.predictor import _batches

    sizes = [(128, 128), (128, 96), (120, 128), (128, 128), (96, 128), (0, 0)]  # (width, height)
    photos = [Image.new("RGB", size) for size in sizes]
    assert _batches(photos, 2, (128, 128)) == [[0, 2], [3], [1], [4], [5]]


def test_a_folder_of_mixed_sizes_shares_forwards_by_padded_size_and_keeps_its_order(
    predictor: Predictor, tmp_path: Path
) -> None:
    """One forward per padded size in each batch kept a photo's score apart from its neighbours',
    but a folder in input order (square, 4:3, 3:4, square, ...) split almost every batch into
    several forwards: 7 for 7 photos here. Batched by padded size (read from the file headers),
    each size needs ceil(photos / batch size) forwards (2 + 1 + 1); results stay in input order and
    equal each photo scored alone."""
    from officescore.sample import render_scene

    sizes = [(128, 128), (128, 96), (96, 128)]  # (width, height): padded 4x4, 3x4 and 4x3 cells of 32
    paths = []
    for i in range(7):
        path = tmp_path / f"p{i}.jpg"
        render_scene(i, size=128).image.resize(sizes[i % 3]).save(path)
        paths.append(path)
    forwards: list[int] = []
    hook = predictor.model.register_forward_pre_hook(lambda model, args: forwards.append(len(args[0])))
    try:
        together = predictor.predict(paths, batch_size=2, workers=0)
        assert sum(math.ceil(n / 2) for n in (3, 2, 2)) == len(forwards) == 4
        alone = [predictor.predict(path, batch_size=1, workers=0)[0] for path in paths]
    finally:
        hook.remove()
    assert [r.source for r in together] == [str(p) for p in paths]
    for got, want in zip(together, alone, strict=True):
        assert [d.class_name for d in got.detections] == [d.class_name for d in want.detections]
        assert np.allclose([d.box for d in got.detections], [d.box for d in want.detections], atol=1e-3)
        assert (got.width, got.height) == (want.width, want.height)
