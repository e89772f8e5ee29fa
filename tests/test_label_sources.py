"""The photos a labelling command works on (`officescore.label.sources`), without a model or a
server: each photo once, and only photos that decode."""

from __future__ import annotations

from pathlib import Path

from labelmodels import write_photos

from officescore.label.sources import collect_images, readable_images


def test_a_photo_named_twice_is_one_photo(tmp_path: Path) -> None:
    """A folder and a file in it, or one photo under two names: one task, not two (the first name
    met, in input order; a folder's photos in name order)."""
    first, second = write_photos(tmp_path / "photos", n=2)
    (tmp_path / "photos" / "copy.jpg").write_bytes(first.read_bytes())
    found = collect_images([tmp_path / "photos", first])
    assert [p.path.name for p in found] == ["copy.jpg", second.name]


def test_a_photo_that_does_not_decode_is_listed_and_left_out(tmp_path: Path) -> None:
    (good,) = write_photos(tmp_path / "photos", n=1)
    (tmp_path / "photos" / "notes.jpg").write_text("a text file with a photo's name")
    readable, failed = readable_images(collect_images([tmp_path / "photos"]))
    assert [p.path for p in readable] == [good]
    assert [Path(f["path"]).name for f in failed] == ["notes.jpg"]
