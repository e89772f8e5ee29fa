"""images.py on small hand-made photos: every EXIF orientation, the pixel limit and the
reduce-above rule at their edges, and what a folder or a pattern expands to."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from officescore.errors import BadImageError
from officescore.images import expand_inputs, fit_for_model, image_size, load_for_model, load_image


def _oriented(path: Path, orientation: int, size: tuple[int, int] = (40, 20)) -> Path:
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.new("RGB", size, "red").save(path, exif=exif)
    return path


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_orientation_that_turns_the_photo_swaps_its_sides(tmp_path: Path, orientation: int) -> None:
    # 5 and 7 are the mirrored turns (transpose, transverse): a quarter turn like 6 and 8.
    path = _oriented(tmp_path / "photo.jpg", orientation)
    shown = (20, 40) if orientation >= 5 else (40, 20)
    assert image_size(path) == shown
    assert load_image(path).size == shown
    decoded = load_for_model(path, 800, 1333)
    assert decoded.original_size == shown and decoded.image.size == shown


def test_the_pixel_limit_itself_is_allowed(tmp_path: Path) -> None:
    path = tmp_path / "photo.png"
    Image.new("RGB", (20, 10), "blue").save(path)
    assert load_image(path, max_pixels=200).size == (20, 10)
    with pytest.raises(BadImageError, match="decompression bomb"):
        load_image(path, max_pixels=199)


def test_a_photo_exactly_twice_the_models_size_is_decoded_whole(tmp_path: Path) -> None:
    # 1600 x 1200 for (600, 1333): scale 0.5, so 0.5 x REDUCE_ABOVE (2) = 1: not "more than" twice.
    path = tmp_path / "photo.png"
    Image.new("RGB", (1600, 1200), "green").save(path)
    decoded = load_for_model(path, 600, 1333)
    assert not decoded.reduced and decoded.image.size == (1600, 1200)
    with Image.open(path) as opened:
        assert fit_for_model(opened, 600, 1333).image.size == (1600, 1200)
    # One pixel more on the short side: more than twice, so decoded at the model's size.
    with Image.open(path) as opened:
        bigger = fit_for_model(opened.resize((1600, 1202)), 600, 1333)
    assert bigger.image.size == (799, 600) and bigger.original_size == (1600, 1202)


def test_folders_take_every_photo_suffix_in_any_case_and_a_pattern_without_matches_stays(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "shots"
    (folder / "sub").mkdir(parents=True)
    for name in ("a.JPG", "b.jpeg", "sub/c.Png", "notes.txt"):
        (folder / name).write_bytes(b"x")
    assert expand_inputs([folder]) == [folder / "a.JPG", folder / "b.jpeg", folder / "sub" / "c.Png"]
    missing = str(tmp_path / "none*.jpg")
    assert expand_inputs([missing]) == [Path(missing)]  # reported as missing, not dropped in silence


def test_a_turned_jpeg_is_decoded_as_small_as_an_unturned_one(tmp_path: Path) -> None:
    # Stored 4000 x 1000, shown 1000 x 4000. For (100, 200) the scale is 0.05: the decoder is asked
    # for 200 x 50 in stored pixels and gives 1/8 (500 x 125 = 62,500 px). Asking in displayed
    # pixels (50 x 200) would take 1/4 (1000 x 250 = 250,000 px), over this limit.
    path = _oriented(tmp_path / "turned.jpg", 6, size=(4000, 1000))
    decoded = load_for_model(path, 100, 200, max_pixels=100_000)
    assert decoded.original_size == (1000, 4000) and decoded.image.size == (50, 200)


def test_a_folder_given_as_a_photo_is_named_as_one(tmp_path: Path) -> None:
    with pytest.raises(BadImageError, match="is a folder, not an image"):
        load_image(tmp_path)
    with pytest.raises(BadImageError, match="is a folder, not an image"):
        load_for_model(tmp_path, 800, 1333)
