"""Synthetic scenes: determinism, exact masks, COCO export shape, CLI."""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO

from officescore import DEFAULT_CLASSES
from officescore import masks as masklib
from officescore.cli import main
from officescore.errors import UserError
from officescore.sample import MIN_VISIBLE_AREA, MIN_VISIBLE_FRACTION, render_scene, scene_rng, write_sample

SIZE = 128
N = 20


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sample") / "export"
    write_sample(out, n_images=N, seed=7, size=SIZE)
    return out


@pytest.fixture(scope="module")
def coco(export: Path) -> dict:
    return json.loads((export / "annotations.json").read_text())


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_other_bytes(export: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    write_sample(again, n_images=N, seed=7, size=SIZE)
    first, second = _files(export), _files(again)
    assert sorted(first) == ["annotations.json"] + [f"images/scene_{i:05d}.jpg" for i in range(N)]
    assert first == second
    other = tmp_path / "other"
    write_sample(other, n_images=2, seed=8, size=SIZE)
    assert (other / "images/scene_00000.jpg").read_bytes() != first["images/scene_00000.jpg"]


def test_scene_independent_of_count_and_stale_scenes_removed(export: Path, tmp_path: Path) -> None:
    out = tmp_path / "s"
    write_sample(out, n_images=4, seed=7, size=SIZE)
    write_sample(out, n_images=2, seed=7, size=SIZE)
    assert sorted(p.name for p in (out / "images").iterdir()) == ["scene_00000.jpg", "scene_00001.jpg"]
    assert (out / "images/scene_00001.jpg").read_bytes() == (export / "images/scene_00001.jpg").read_bytes()


def test_a_rerun_stopped_part_way_leaves_no_earlier_labels_beside_new_scenes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sample rendered again with another seed and stopped after its first scene: the earlier
    run's annotations.json would describe other photos than the ones now in images/."""
    import officescore.sample as sample_module

    out = tmp_path / "s"
    write_sample(out, n_images=3, seed=7, size=SIZE)
    rendered = []
    real_render = sample_module.render_scene

    def stopped_after_one(*args: object, **kwargs: object) -> object:
        if rendered:
            raise KeyboardInterrupt
        rendered.append(1)
        return real_render(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(sample_module, "render_scene", stopped_after_one)
    with pytest.raises(KeyboardInterrupt):
        write_sample(out, n_images=3, seed=8, size=SIZE)
    assert not (out / "annotations.json").exists()
    assert len(list((out / "images").iterdir())) == 3  # scene 0 new, 1 and 2 from the first run


def test_a_data_set_or_another_tools_export_is_never_written_over(export: Path, tmp_path: Path) -> None:
    """`sample data/dataset` (the folders swapped) would rewrite the data set's scene_*.jpg photos
    and delete the others; `sample export/` would replace `label pull`'s annotations.json. Both are
    refused and left as they were."""
    from officescore.ingest import ingest_export

    dataset = tmp_path / "dataset"
    ingest_export(export / "annotations.json", out=dataset)
    pulled = tmp_path / "pulled"
    (pulled / "images").mkdir(parents=True)
    (pulled / "annotations.json").write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    tasks = tmp_path / "tasks"  # Label Studio's JSON export (a list of tasks) saved as annotations.json
    tasks.mkdir()
    (tasks / "annotations.json").write_text(json.dumps([{"data": {"image": "a.jpg"}, "annotations": []}]))
    for folder, message in (
        (dataset, "is an officescore data set"),
        (pulled, "not written by `officescore sample`"),
        (tasks, "not written by `officescore sample`"),
    ):
        before = _files(folder)
        with pytest.raises(UserError, match=message):
            write_sample(folder, n_images=2, seed=1, size=SIZE)
        assert _files(folder) == before


def test_coco_document_shape(export: Path, coco: dict) -> None:
    assert {"info", "licenses", "categories", "images", "annotations"} <= set(coco)
    assert [(c["id"], c["name"]) for c in coco["categories"]] == list(enumerate(DEFAULT_CLASSES, start=1))
    assert [im["id"] for im in coco["images"]] == list(range(1, N + 1))
    for im in coco["images"]:
        assert (im["width"], im["height"]) == (SIZE, SIZE)
        assert (export / im["file_name"]).is_file()
    ids = [a["id"] for a in coco["annotations"]]
    assert ids == list(range(1, len(ids) + 1))
    for ann in coco["annotations"]:
        assert ann["iscrowd"] == 0
        assert 1 <= ann["category_id"] <= len(DEFAULT_CLASSES)
        seg = ann["segmentation"]
        if isinstance(seg, dict):
            assert isinstance(seg["counts"], str) and seg["size"] == [SIZE, SIZE]
        else:
            assert seg and all(len(p) >= 6 and len(p) % 2 == 0 for p in seg)
            # inside the photo: ingest reports (and clips) polygons that reach outside it
            assert all(0 <= v <= SIZE for p in seg for v in p), ann["id"]


def test_masks_are_exactly_the_visible_pixels(export: Path) -> None:
    api = COCO(str(export / "annotations.json"))
    kinds: Counter[str] = Counter()
    occluded = 0
    for image_id in sorted(api.imgs):
        scene = render_scene(scene_rng(7, image_id - 1), SIZE)
        anns = api.loadAnns(api.getAnnIds(imgIds=[image_id]))
        assert [api.cats[a["category_id"]]["name"] for a in anns] == [i.category for i in scene.instances]
        stack = np.zeros((SIZE, SIZE), dtype=np.int32)
        for k, (ann, inst) in enumerate(zip(anns, scene.instances, strict=True), start=1):
            decoded = api.annToMask(ann)
            np.testing.assert_array_equal(decoded, inst.mask, err_msg=f"annotation {ann['id']}")
            assert np.array_equal(scene.instance_map == k, inst.mask.astype(bool))
            rle = masklib.encode(decoded)
            assert ann["area"] == masklib.area(rle) > 0
            assert ann["bbox"] == pytest.approx(masklib.bbox(rle))
            assert ann["attributes"]["occluded"] == inst.occluded
            if isinstance(ann["segmentation"], list):
                assert not inst.occluded  # polygons only for whole, unoccluded objects
            kinds["polygon" if isinstance(ann["segmentation"], list) else "rle"] += 1
            occluded += inst.occluded
            stack += inst.mask
        assert stack.max() <= 1, "instances of one image overlap"
    assert kinds["polygon"] > 0 and kinds["rle"] > 0
    assert occluded > 0, "no object is ever hidden by another"


def test_classes_variety_and_clutter(coco: dict) -> None:
    per_class = Counter(a["category_id"] for a in coco["annotations"])
    assert len(per_class) >= 8
    per_image = Counter(a["image_id"] for a in coco["annotations"])
    assert all(2 <= per_image[im["id"]] <= 14 for im in coco["images"])


def test_small_objects_stay_visible_at_192px() -> None:
    sides = []
    for index in range(25):
        for inst in render_scene(scene_rng(0, index), 192).instances:
            if inst.category in ("mouse", "mug") and not inst.occluded:
                ys, xs = np.nonzero(inst.mask)
                sides.append(max(xs.max() - xs.min() + 1, ys.max() - ys.min() + 1))
    assert sides and min(sides) >= 12


def test_render_scene_accepts_seed_and_rejects_tiny_size() -> None:
    a, b = render_scene(3, 96), render_scene(3, 96)
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image)) and a.image.size == (96, 96)
    with pytest.raises(UserError):
        render_scene(3, 32)


def test_speed_measurement(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    start = time.perf_counter()
    result = write_sample(tmp_path / "speed", n_images=6, seed=1, size=512)
    per_image = (time.perf_counter() - start) / 6
    with capsys.disabled():
        print(
            f"\n[sample speed] {per_image * 1000:.0f} ms per 512px scene -> ~{per_image * 200:.1f}s for 200"
        )
    assert result.images == 6 and result.annotations > 0


def test_cli_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["sample", str(tmp_path / "cli"), "-n", "3", "--size", "96", "--seed", "2", "--json"])
    assert exit_info.value.code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["images"] == 3 and summary["size"] == 96
    assert list(summary["per_class"]) == list(DEFAULT_CLASSES)  # every class, found or not
    assert (
        sum(summary["per_class"].values()) == summary["annotations"] == summary["polygons"] + summary["rles"]
    )
    assert len(list((tmp_path / "cli/images").glob("*.jpg"))) == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-n", "0"], "--images"),
        (["--size", "32"], "--size"),
        (["--size", "100000"], "--size 100000 is too large"),  # was killed for memory, folder made
        (["--seed", "-1"], "--seed -1: use 0 or more"),  # was "unexpected error: ValueError"
        ([], "is a file"),
    ],
)
def test_cli_bad_arguments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list, message: str
) -> None:
    target = tmp_path / "out"
    if not args:
        target.write_text("not a folder")
    with pytest.raises(SystemExit) as exit_info:
        main(["sample", str(target), *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not args or not target.exists(), "a bad flag must fail before any folder is created"


def test_hidden_objects_are_left_out_not_labelled_by_a_few_pixels() -> None:
    """An object mostly hidden behind others is taken out of the scene: every label shows at least
    MIN_VISIBLE_FRACTION of its object and MIN_VISIBLE_AREA of the photo."""
    for index in range(N):
        for inst in render_scene(scene_rng(7, index), SIZE).instances:
            assert inst.area >= MIN_VISIBLE_FRACTION * inst.full_area, (index, inst.category)
            assert inst.area >= MIN_VISIBLE_AREA * SIZE * SIZE, (index, inst.category)


def test_an_export_with_mask_conventions_labels_only_the_parts_it_keeps(tmp_path: Path) -> None:
    """Plants as leaves, desks as tops: each annotation decodes to its instance's mask (a polygon of
    the whole plant would bring the pot back), and `occluded` counts only the labelled parts."""
    parts = {"plant": "leaves", "desk": "top"}
    write_sample(tmp_path / "parts", n_images=N, seed=7, size=SIZE, masks=parts)
    api = COCO(str(tmp_path / "parts" / "annotations.json"))
    whole_plants = 0
    for image_id in sorted(api.imgs):
        scene = render_scene(scene_rng(7, image_id - 1), SIZE, parts)
        anns = api.loadAnns(api.getAnnIds(imgIds=[image_id]))
        for ann, inst in zip(anns, scene.instances, strict=True):
            np.testing.assert_array_equal(api.annToMask(ann), inst.mask, err_msg=f"annotation {ann['id']}")
            assert ann["attributes"]["occluded"] == inst.occluded
            whole_plants += inst.category == "plant" and not inst.occluded
    assert whole_plants > 0, "a plant with nothing in front of its leaves is not occluded"


def test_cli_table_counts_what_it_wrote(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["sample", str(tmp_path / "table"), "-n", "3", "--size", "96", "--seed", "2"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    annotations = json.loads((tmp_path / "table" / "annotations.json").read_text())["annotations"]
    per_class = Counter(DEFAULT_CLASSES[a["category_id"] - 1] for a in annotations)
    for name in DEFAULT_CLASSES:  # one row per class, found or not: "│ desk │ 2 │"
        assert re.search(rf"\b{name}\W+{per_class[name]}\W", out), name
    polygons = sum(isinstance(a["segmentation"], list) for a in annotations)
    assert f"masks: {polygons} polygons, {len(annotations) - polygons} RLE" in out
