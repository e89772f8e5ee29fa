"""Ingest's rules one function at a time, where the round trips of test_ingest.py do not reach them:
category order, path guards, clipping, areas, crowd, the split, and finding photos by name."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from officescore import masks
from officescore.ingest import run as ingest
from officescore.ingest.checks import (
    box_region,
    check_area,
    check_categories,
    check_segmentation,
    crowd_as_instance,
    parse_renames,
    safe_image_path,
    written_by_cvat,
)
from officescore.ingest.locate import ImageFinder, meant_path
from officescore.ingest.split import augmented_from, duplicate_groups, hamming_pairs, split_groups


def test_classes_follow_the_numeric_order_of_their_ids_with_names_trimmed() -> None:
    categories, problems = check_categories(
        [{"id": 10, "name": "mug"}, {"id": "2", "name": " chair "}, {"id": 1, "name": "desk"}]
    )
    assert categories.order == ["desk", "chair", "mug"]  # ids 1, 2, 10; as text "10" sorts before "2"
    assert categories.names == {"10": "mug", "2": "chair", "1": "desk"}
    assert problems == []


def test_classes_asked_for_are_read_without_the_spaces_around_them() -> None:
    categories, _ = check_categories([{"id": 1, "name": "desk"}, {"id": 2, "name": "mug"}])
    assert ingest._requested_classes(categories.order, ["mug", " desk ", ""]) == [
        "mug",
        "desk",
    ]  # `--classes "mug, desk"`


def test_a_name_with_a_dot_dot_part_is_refused_even_when_it_lands_inside(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "x.png").write_bytes(b"")
    assert safe_image_path(tmp_path, "x.png") == Path(os.path.realpath(tmp_path / "x.png"))
    assert safe_image_path(tmp_path, "sub/../x.png") is None


def test_a_polygon_over_the_bottom_of_a_portrait_photo_keeps_its_pixels_down_to_the_edge() -> None:
    width, height = 64, 96  # taller than wide: the bottom edge is at y = 96, not 64
    triangle = [10, 20, 40, 150, 60, 30]  # its tip below the photo
    kinds: list[str] = []
    rle = check_segmentation({"segmentation": [triangle]}, width, height, lambda kind, *_: kinds.append(kind))
    assert rle is not None and kinds == ["outside_image"]
    got = masks.decode(rle)
    whole = masks.decode(masks.from_polygons([triangle], 200, width))[:height]  # drawn uncut, then cut
    assert got[height - 1].any()
    assert np.abs(got.astype(int) - whole).sum() <= 8  # rasterised edges may differ by a pixel or so


def test_a_rectangle_drawn_between_pixels_is_not_said_to_have_its_box_area() -> None:
    """A tool's area of a rectangle is w x h exactly; its raster counts whole pixels (441 for 408)."""
    polygon = [10.4, 10.4, 30.6, 10.4, 30.6, 30.6, 10.4, 30.6]
    ann = {"segmentation": [polygon], "bbox": [10.4, 10.4, 20.2, 20.2], "area": 20.2 * 20.2}
    said: list[str] = []
    check_area(ann, masks.from_polygons([polygon], 64, 96), lambda kind, *_: said.append(kind))
    assert said == []


def test_a_small_rectangle_drawn_between_pixels_is_not_said_to_have_its_box_area() -> None:
    """The outline allowance matters most for small objects: 3.4 x 3.4 (11.56) rasterises to 16 pixels."""
    polygon = [10.4, 10.4, 13.8, 10.4, 13.8, 13.8, 10.4, 13.8]
    rle = masks.from_polygons([polygon], 64, 96)
    assert masks.area(rle) == 16
    said: list[str] = []
    check_area({"bbox": [10.4, 10.4, 3.4, 3.4], "area": 3.4 * 3.4}, rle, lambda kind, *_: said.append(kind))
    assert said == []


def test_uncompressed_counts_too_large_for_any_photo_are_dropped_not_a_crash() -> None:
    said: list[str] = []
    seg = {"size": [2, 2], "counts": [1 << 70, 4]}  # a damaged file: no int64 holds the first run
    assert check_segmentation({"segmentation": seg}, 2, 2, lambda kind, *_: said.append(kind)) is None
    assert said == ["rle_invalid"]


def test_a_box_reaching_over_the_top_left_corner_is_kept_up_to_the_edges() -> None:
    """An ignore region from a box that starts left of and above the photo covers the part inside it."""
    region = box_region({"bbox": [-5, -3, 20, 20]}, 40, 30)
    assert region is not None and masks.bbox(region) == [0.0, 0.0, 15.0, 17.0] and masks.area(region) == 255


def test_on_a_photo_of_a_few_pixels_coordinates_up_to_1_are_pixels_not_fractions() -> None:
    said: list[str] = []
    rle = check_segmentation(
        {"segmentation": [[0, 0, 1, 0, 1, 1, 0, 1]]}, 8, 8, lambda kind, *_: said.append(kind)
    )
    assert rle is not None and masks.area(rle) == 1 and said == []  # the top-left pixel


def test_cvat_is_told_by_every_annotation_and_only_its_masks_become_instances() -> None:
    by_cvat = {"attributes": {"occluded": False}}
    assert written_by_cvat([by_cvat, by_cvat])
    assert not written_by_cvat([by_cvat, {"attributes": {"armrests": True}}])
    mask = {"segmentation": {"size": [2, 2], "counts": [1, 3]}}
    assert crowd_as_instance(mask, "auto", cvat=True) and not crowd_as_instance(mask, "auto", cvat=False)
    # a polygon CVAT marks iscrowd 1 was marked so by hand: a crowd region
    assert not crowd_as_instance({"segmentation": [[0, 0, 9, 0, 9, 9]]}, "auto", cvat=True)


def test_only_label_studios_signature_marks_its_export() -> None:
    assert ingest.written_by_label_studio({"info": {"contributor": "Label Studio"}})
    assert not ingest.written_by_label_studio({"info": {"contributor": "COCO Consortium"}})


def test_near_duplicates_include_the_threshold_distance() -> None:
    assert hamming_pairs([0, 0b111111, 0b1111111], 6) == [(0, 1), (1, 2)]  # 6 bits apart: duplicates


def test_near_duplicates_are_found_across_chunks() -> None:
    """Hashes compared a few rows at a time find the same pairs as all at once (a data set of more
    than 512 photos is compared in chunks)."""
    hashes = [int(h) for h in np.random.default_rng(0).integers(0, 1 << 12, size=9)]
    assert hamming_pairs(hashes, 4, chunk=2) == hamming_pairs(hashes, 4) != []


def test_a_duplicate_group_is_numbered_by_its_first_photo() -> None:
    # 0 and 2 are byte-identical, 1 and 3 look the same (1 bit apart), 4 stands alone (8 bits off)
    phashes = [0, 0xFF00, 0, 0xFF01, 0xFF]
    assert duplicate_groups(["a", "b", "a", "c", "d"], phashes, 2) == [0, 1, 0, 1, 4]


def test_roboflow_copies_of_one_photo_are_one_group() -> None:
    md5 = "0123456789abcdef0123456789abcdef"
    names = [
        f"IMG 1_jpg.rf.{md5}.jpg",
        f"train/IMG 1_jpg.rf.{md5[::-1]}.jpg",
        "IMG 1_jpg.rf.12.jpg",
        "IMG 1.jpg",
    ]
    sources = [augmented_from(name) for name in names]
    assert sources == ["IMG 1_jpg", "IMG 1_jpg", None, None]
    phashes = [0, 0xFFFF << 40, 0xFF << 8, 0xFF << 20]  # a flipped copy's hash is far from its photo's
    assert duplicate_groups(["a", "b", "c", "d"], phashes, 2, sources) == [0, 0, 2, 3]


def test_two_photos_give_val_one() -> None:
    assert split_groups([0, 1], [set(), set()], 0.2, seed=0).count("val") == 1  # round(0.4) is 0
    assert split_groups([0], [set()], 0.5, seed=0) == ["train"]  # one photo: nothing to validate on


def test_a_class_keeps_its_only_photo_in_train_whatever_the_seed() -> None:
    classes = [{"sofa"}, {"desk"}, {"desk"}, {"desk"}]
    for seed in range(20):
        assert split_groups([0, 1, 2, 3], classes, 0.5, seed)[0] == "train", seed


def test_val_covers_the_classes_with_as_few_photos_as_it_can() -> None:
    classes = [{"desk"}, {"chair"}, {"desk", "chair"}, {"desk"}, {"chair"}, {"desk", "chair"}]
    for seed in range(10):
        got = split_groups(range(6), classes, 0.1, seed)
        assert [c for c, split in zip(classes, got, strict=True) if split == "val"] == [{"desk", "chair"}], (
            seed
        )


def test_finding_by_name_skips_hidden_folders_and_counts_a_linked_file_once(tmp_path: Path) -> None:
    photo = tmp_path / "photos" / "scene.png"
    photo.parent.mkdir()
    photo.write_bytes(b"photo")
    (tmp_path / ".thumbnails").mkdir()  # a viewer's cache
    (tmp_path / ".thumbnails" / "scene.png").write_bytes(b"thumbnail")
    (tmp_path / "linked").mkdir()
    (tmp_path / "linked" / "scene.png").symlink_to(photo)
    found = ImageFinder(tmp_path, ["upload/scene.png"]).locate("upload/scene.png")
    assert found.path == Path(os.path.realpath(photo)) and not found.ambiguous


def test_a_plain_name_with_a_query_sign_in_it_is_a_name() -> None:
    assert meant_path("scan?d=1.jpg") == "scan?d=1.jpg"
    assert meant_path("/data/local-files/?d=photos/scan%201.jpg") == "photos/scan 1.jpg"


def test_copies_of_a_photo_disagree_on_a_crowd_region_not_on_the_order_of_their_objects() -> None:
    """Two byte-identical copies: the same objects listed in another order agree; a desk labelled as
    a crowd region in one copy and as an object in the other does not."""
    from officescore.ingest.checks import CleanAnnotation, ImageRecord

    def photo(export: int, *objects: tuple[str, int]) -> ImageRecord:
        key = f"{export}:1"
        anns = [
            CleanAnnotation(f"{export}{i}", key, name, {}, crowd) for i, (name, crowd) in enumerate(objects)
        ]
        return ImageRecord(key, "a.png", Path("a.png"), 8, 8, "same bytes", 0, anns)

    exports = [Path("labels.json"), Path("review.json")]
    first = photo(1, ("desk", 0), ("chair", 0))
    assert ingest._copies_labelled_differently([first, photo(2, ("chair", 0), ("desk", 0))], exports) == []
    (problem,) = ingest._copies_labelled_differently([first, photo(2, ("desk", 1), ("chair", 0))], exports)
    assert problem.kind == "image_duplicate_labels_differ"
    assert "labelled chair x1, desk x1 there and chair x1, desk (crowd) x1 here" in problem.what


def test_a_windows_path_or_a_decomposed_folder_name_finds_its_photo_of_a_shared_name(tmp_path: Path) -> None:
    """Of two `0001.png`, the folders the export's path ends with pick one: also in a Windows path
    (backslashes) and in a folder macOS stored decomposed ("café" as "cafe" + accent)."""
    from officescore.ingest.locate import BY_PATH_END

    for folder in ("kitchen", "study", "cafe\u0301", "bar"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "0001.png").write_bytes(folder.encode())
    names = ["C:\\share\\kitchen\\0001.png", "/mnt/share/caf\u00e9/0001.png"]
    finder = ImageFinder(tmp_path, names)
    found = [finder.locate(name) for name in names]
    assert [(finder.relative(f.path), f.rule) for f in found if f.path] == [
        ("kitchen/0001.png", BY_PATH_END),
        ("cafe\u0301/0001.png", BY_PATH_END),
    ]
    said = ingest._location_problem(names[0], found[0], finder)  # as ingest reports it
    assert said.what.endswith("found by its base name and the folders above it")
    assert said.action == "used kitchen/0001.png"


def test_a_decomposed_name_in_another_case_finds_its_photo(tmp_path: Path) -> None:
    """A macOS export's `CAFE` + accent + `.PNG` (decomposed, upper case) is the folder's `café.png`."""
    from officescore.ingest.locate import IN_OTHER_CASE

    (tmp_path / "caf\u00e9.png").write_bytes(b"photo")
    found = ImageFinder(tmp_path, ["CAFE\u0301.PNG"]).locate("CAFE\u0301.PNG")
    assert (found.path, found.rule) == (Path(os.path.realpath(tmp_path / "caf\u00e9.png")), IN_OTHER_CASE)


def test_class_names_compare_without_case_spaces_or_underscores() -> None:
    """CVAT's "Potted_Plant", a hand-typed "potted  plant " and Roboflow's "potted plant" are one class."""
    from officescore.ingest import class_key

    spellings = ["Potted_Plant", "potted  plant ", " POTTED__PLANT", "potted plant"]
    assert {class_key(name) for name in spellings} == {"potted plant"}
    assert class_key("pottedplant") != class_key("potted plant")  # a word boundary is kept


def test_nothing_to_train_counts_what_became_of_each_annotation_once() -> None:
    """The three commonest reasons a label was dropped, those on dropped photos, and each box kept as
    an ignore region once however many notes it had; renumbered ids and the boxes are no reasons."""
    from types import SimpleNamespace

    from officescore.ingest.checks import IGNORE_REGION, Problem

    dropped = [("unknown", 3), ("tiny", 2), ("outside", 1), ("odd", 1)]
    problems = [Problem("a.png", f"{kind}{i}", kind, "", "dropped") for kind, n in dropped for i in range(n)]
    problems += [
        Problem("a.png", "", "image_invalid", "", "dropped"),  # the photo's own: counted apart
        Problem("a.png", "7", "id_duplicate", "", "renumbered"),
        Problem("a.png", "9", "id_duplicate", "", "renumbered"),
        Problem("a.png", "8", "polygon_invalid", "", IGNORE_REGION),  # one box, two notes
        Problem("a.png", "8", "empty_mask", "", IGNORE_REGION),
    ]
    box = SimpleNamespace(iscrowd=1)
    checked = [SimpleNamespace(listed_annotations=12, on_dropped=2)]
    error = ingest._nothing_to_train(
        [Path("x.json")], checked, {"a": SimpleNamespace(annotations=[box])}, problems
    )
    assert str(error) == (
        "x.json: no annotation with a usable mask left after the checks (of 12: unknown x3; tiny x2; "
        "outside x1; 2 on photos that were dropped; 1 box(es) without a mask, kept as ignore regions), "
        "so nothing to train (Mask R-CNN needs segmentation masks, not boxes alone; export polygons or masks)"
    )


def test_a_roboflow_name_in_a_windows_path_is_made_from_the_same_photo() -> None:
    md5 = "0123456789abcdef0123456789abcdef"
    assert (
        augmented_from(f"train\\IMG 1_jpg.rf.{md5}.jpg")
        == augmented_from(f"IMG 1_jpg.rf.{md5}.jpg")
        == "IMG 1_jpg"
    )


def test_a_rename_onto_a_category_with_a_lower_id_or_a_swap_is_no_problem() -> None:
    """--rename mug=chair where chair has the higher id merges as asked (no duplicate-name
    problem, which --strict would refuse); a swap takes the names as the user wrote them."""
    raw = [{"id": 1, "name": "mug"}, {"id": 2, "name": "chair"}]
    categories, problems = check_categories(raw, renames={"mug": "chair"})
    assert categories.names == {"1": "chair", "2": "chair"} and problems == []
    swapped = [{"id": 1, "name": "Chair"}, {"id": 2, "name": "seat"}]
    categories, problems = check_categories(swapped, renames={"Chair": "seat", "seat": "chair"})
    assert categories.names == {"1": "seat", "2": "chair"} and problems == []
    assert parse_renames(["size=large=big"]) == {"size": "large=big"}  # OLD ends at the first "="


def test_photos_of_the_image_folder_are_found_by_suffix_in_any_case(tmp_path: Path) -> None:
    """`photos` (what ingest says the export does not list): a camera's IMG_1.JPG is a photo too."""
    for name in ("IMG_1.JPG", "scene.png", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in ImageFinder(tmp_path, []).photos()] == ["IMG_1.JPG", "scene.png"]
