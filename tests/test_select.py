"""`officescore select`: never a near-duplicate of a labelled photo, --budget respected, the
uncertainty ranking puts a photo the model is unsure about first, one-line errors."""

from __future__ import annotations

import csv
import inspect
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cliroot import table_column
from PIL import Image
from scoremodels import TINY_KWARGS, controlled_model, write_checkpoint

from officescore import DEFAULT_CLASSES
from officescore.cli import common, main
from officescore.curate.features import class_uncertainty, image_signals
from officescore.curate.pool import NEAR_DUP_BITS, hamming, phash
from officescore.curate.select import k_center_greedy, nearest_distance, select
from officescore.ingest import ingest_export
from officescore.sample import render_scene, write_sample


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> object:
    """One torch thread: much faster for tiny models when other processes share the CPUs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("labelled")
    write_sample(root / "export", n_images=4, seed=21, size=96)
    ingest_export(root / "export" / "annotations.json", out=root / "dataset", val_fraction=0.25, seed=0)
    return root / "dataset"


@pytest.fixture(scope="module")
def pool(labelled: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, set[str]]:
    """Four new scenes, plus three copies of labelled photos (re-encoded, resized, byte-identical)."""
    folder = tmp_path_factory.mktemp("pool")
    for i in range(4):
        render_scene(100 + i, size=96).image.save(folder / f"new_{i}.png")
    photos = sorted((labelled / "images").iterdir())
    Image.open(photos[0]).save(folder / "copy_reencoded.jpg", quality=60)
    Image.open(photos[1]).resize((90, 90)).save(folder / "copy_resized.png")
    (folder / "copy_exact.jpg").write_bytes(photos[2].read_bytes())
    return folder, {"copy_reencoded.jpg", "copy_resized.png", "copy_exact.jpg"}


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("model") / "m.pt", favour={"desk": 4.0, "chair": 2.5})


@pytest.mark.parametrize("strategy", ["uncertainty", "random"])
def test_never_a_near_duplicate_of_a_labelled_photo(
    pool: tuple[Path, set[str]], labelled: Path, model: Path, strategy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from officescore.curate import labels

    folder, copies = pool
    read: list[str] = []
    real_read = labels._read

    def counted(path: Path, *rest: Path) -> object:
        read.append(Path(path).name)
        return real_read(path, *rest)

    monkeypatch.setattr(labels, "_read", counted)
    run = select([folder], model, budget=10, labelled=labelled, strategy=strategy, device="cpu")
    assert read.count("dataset.json") == 1, read  # the labelled data set is read once: photos, classes
    chosen = {Path(c.path).name for c in run.chosen}
    assert chosen == {f"new_{i}.png" for i in range(4)}  # all new scenes, none of the copies
    assert {Path(p).name for p in run.excluded_near_duplicates} == copies
    labelled_hashes = [phash(p) for p in sorted((labelled / "images").iterdir())]
    for c in run.chosen:
        assert hamming([phash(c.path)], labelled_hashes).min() > NEAR_DUP_BITS
    assert any("only 4 photos" in note for note in run.notes)


def test_budget_is_respected_and_written(pool: tuple[Path, set[str]], model: Path, tmp_path: Path) -> None:
    folder, _ = pool
    out = tmp_path / "next" / "next.csv"
    run = select([folder], model, budget=2, device="cpu", out=out)
    assert len(run.chosen) == 2 and [c.rank for c in run.chosen] == [1, 2]
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    listed = (out.parent / "images.txt").read_text().splitlines()
    assert len(rows) == 2 and len(listed) == 2
    assert [(out.parent / p).resolve() for p in listed] == [Path(c.path).resolve() for c in run.chosen]
    assert [r["path"] for r in rows] == listed  # relative to the folder that holds them


def test_an_unsure_photo_ranks_above_a_sure_one(tmp_path: Path) -> None:
    from officescore.infer import Predictor
    from officescore.model import save_checkpoint

    sure_img, unsure_img = render_scene(7, size=96).image, render_scene(8, size=96).image
    sure, unsure = tmp_path / "sure.png", tmp_path / "unsure.png"
    sure_img.save(sure)
    unsure_img.save(unsure)
    model = controlled_model(sure_img, unsure_img)
    checkpoint = tmp_path / "controlled.pt"
    save_checkpoint(checkpoint, model=model.state_dict(), arch="maskrcnn_resnet18_fpn",
                    classes=list(DEFAULT_CLASSES), model_kwargs=dict(TINY_KWARGS), epoch=0)  # fmt: skip
    signals = image_signals(Predictor.load(checkpoint, device="cpu"), [sure, unsure])
    assert signals[0].class_uncertainty < 0.05 < 0.1 < signals[1].class_uncertainty, signals
    for order in ([sure, unsure], [unsure, sure]):  # whatever the input order
        run = select(order, checkpoint, budget=1, device="cpu")
        assert Path(run.chosen[0].path) == unsure


def test_class_uncertainty_margin_and_entropy() -> None:
    sure = torch.tensor([[0.0, 9.0, 0.0], [0.0, 8.0, 0.0]] * 8)  # 16 proposals, all surely desks
    tie = torch.tensor([[0.0, 5.0, 5.0]] * 16)  # desk and chair tie on each
    for how in ("margin", "entropy"):
        assert class_uncertainty(tie, how) > class_uncertainty(sure, how) + 0.3


def test_class_uncertainty_reads_classes_left_out_as_background() -> None:
    """Proposals the model cannot tell a chair from a cat on, where only desks are labelled: over the
    model's own classes the most unsure there are; read with chair and cat as background, sure."""
    unsure = torch.tensor([[0.0, -9.0, 5.0, 5.0]] * 16)  # background, desk, chair, cat
    assert class_uncertainty(unsure, "margin") > 0.9
    assert class_uncertainty(unsure, "margin", keep=[1]) < 0.01
    both = torch.tensor([[0.0, 5.0, 5.0, -9.0]] * 16)  # desk and chair tie; the third class is unlikely
    assert class_uncertainty(both, "entropy", keep=[1, 2]) > class_uncertainty(both, "entropy") > 0.5
    mixed = torch.tensor([[2.0, 1.0, 0.5, -1.0], [0.0, 3.0, 2.5, 1.0], [-1.0, 0.2, 0.1, 0.0]])
    for how in ("margin", "entropy"):  # keeping every class leaves background as it was
        assert class_uncertainty(mixed, how, keep=[1, 2, 3]) == pytest.approx(class_uncertainty(mixed, how))


def test_a_model_trained_on_more_classes_selects_for_the_labelled_ones(
    pool: tuple[Path, set[str]], labelled: Path, tmp_path: Path
) -> None:
    """--labelled with a model that knows more classes: its other classes count as background (its
    sure cats are no reason to pick a photo), are never suggested, and a note says so."""
    from officescore.label.formats import config_path_for, read_tasks, result_regions

    folder, _ = pool
    # it sees only cats, some of which might be dogs; one of them before the data set's classes (its
    # columns are found by name, not by position)
    classes = ["cat", *DEFAULT_CLASSES, "dog"]
    cats = write_checkpoint(tmp_path / "cats.pt", favour={"cat": 8.0, "dog": 7.0}, classes=classes)
    tasks_file = tmp_path / "next_tasks.json"
    run = select([folder], cats, 3, labelled=labelled, device="cpu", labelstudio=tasks_file)
    assert len(run.chosen) == 3
    assert [n for n in run.notes if "also knows cat, dog, which the data set does not label" in n]
    assert all(c.detections == 0 and c.class_uncertainty < 0.01 for c in run.chosen)
    assert all(c.mask_uncertainty == 0.0 for c in run.chosen)  # its cats' masks weigh nothing
    tasks = read_tasks(tasks_file)
    assert len(tasks) == 3 and not [r for t in tasks for r in result_regions(t["predictions"][0]["result"])]
    assert 'value="cat"' not in config_path_for(tasks_file).read_text(encoding="utf-8")
    # without --labelled the model's classes are all there are: its cats count and are suggested
    alone = select([folder], cats, 3, device="cpu", labelstudio=tmp_path / "alone.json")
    assert all(c.detections > 0 and c.class_uncertainty > 0.3 for c in alone.chosen)
    regions = [
        r for t in read_tasks(tmp_path / "alone.json") for r in result_regions(t["predictions"][0]["result"])
    ]
    assert regions and {r.class_name for r in regions} == {"cat"}
    assert 'value="cat"' in config_path_for(tmp_path / "alone.json").read_text(encoding="utf-8")


def test_k_center_spreads_the_budget() -> None:
    # Two tight clusters; the one more uncertain point per cluster should be picked, not two of one cluster.
    feats = np.array([[0.0, 0.0], [0.01, 0.0], [0.0, 0.01], [1.0, 1.0], [1.01, 1.0]])
    u = np.array([1.0, 0.9, 0.9, 0.2, 0.1])
    picks = [i for i, _, _ in k_center_greedy(feats, u, 2)]
    assert picks == [0, 3]


def test_k_center_measures_a_large_labelled_set_in_bounded_memory() -> None:
    """Distances to labelled photos were one pool x labelled x feature array (2000 pool photos against
    1600 labelled, 1280-d: 16 GB, after all the inference); now a block of pool photos at a time,
    with the same distances and picks."""
    import tracemalloc

    rng = np.random.default_rng(0)
    feats = rng.standard_normal((400, 256)).astype(np.float32)
    centres = rng.standard_normal((300, 256)).astype(np.float32)
    u = rng.random(400)
    tracemalloc.start()
    picks = k_center_greedy(feats, u, 20, centres)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 8 * 2**20, peak  # the 400 x 300 x 256 differences alone are 117 MB
    direct = np.min(np.linalg.norm(feats[:, None, :] - centres[None], axis=2), axis=1)
    assert np.allclose(nearest_distance(feats, centres), direct, atol=1e-4)
    assert np.allclose(nearest_distance(feats, centres, block=7), direct, atol=1e-4)  # a part block last
    assert (nearest_distance(centres, centres) < 1e-5).all()  # rounding below 0 is 0, not NaN
    assert picks[0][0] == int(np.argmax((0.05 + u) * direct / direct.max()))


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out, captured.err.strip()


def test_cli_json_and_bad_inputs(
    pool: tuple[Path, set[str]],
    labelled: Path,
    model: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder, _ = pool
    out = tmp_path / "sel" / "next.csv"
    args = ["select", str(folder), "--model", str(model), "--budget", "3", "--labelled", str(labelled)]
    tasks_file = tmp_path / "next_tasks.json"
    code, stdout, _ = _cli(
        [*args, "--device", "cpu", "--out", str(out), "--labelstudio", str(tasks_file), "--json"], capsys
    )
    assert code == 0
    doc = json.loads(stdout)
    assert len(doc["chosen"]) == 3 and doc["csv"] == str(out) and out.is_file()
    from officescore.label.formats import read_tasks

    tasks = read_tasks(tasks_file)  # the chosen photos, in rank order, with the model's pre-annotations
    assert [t["data"]["rank"] for t in tasks] == [1, 2, 3]
    assert [t["data"]["image"].split("?d=")[-1] for t in tasks] == [
        Path(c["path"]).name for c in doc["chosen"]
    ]
    assert all(t["predictions"][0]["model_version"] == "select-m" for t in tasks)
    # per-region attribute choices, as prelabel's config has them (this model has no attribute head)
    from officescore.label.formats import config_path_for

    assert "chair__armrests" in config_path_for(tasks_file).read_text(encoding="utf-8")
    assert any(t["predictions"][0]["result"] for t in tasks)  # the model's detections >= 0.5
    # select's own model (loaded at conf 0 for its signals) made them, at the suggestion threshold
    assert all(r["score"] >= 0.5 for t in tasks for r in t["predictions"][0]["result"] if "score" in r)
    assert any("score" in r for t in tasks for r in t["predictions"][0]["result"])
    # The random baseline loads the model only for the pre-annotations.
    random_tasks = tmp_path / "random_tasks.json"
    code, stdout, _ = _cli(
        [
            *args,
            "--strategy",
            "random",
            "--device",
            "cpu",
            "--out",
            str(tmp_path / "random" / "next.csv"),
            "--labelstudio",
            str(random_tasks),
            "--json",
        ],
        capsys,
    )
    assert code == 0 and json.loads(stdout)["strategy"] == "random"
    assert len(read_tasks(random_tasks)) == 3
    assert any(t["predictions"][0]["result"] for t in read_tasks(random_tasks))
    other = write_checkpoint(tmp_path / "other.pt", favour={"desk": 3.0}, classes=["desk", "cat"])
    cases = [
        (["--model", str(model), "--budget", "0"], "--budget 0"),
        (["--budget", "2"], "--model"),
        (  # select has no --folds to advise
            ["--model", str(other), "--budget", "2", "--labelled", str(labelled)],
            f"does not); pass a model trained on it (officescore train --data {labelled})",
        ),
        (
            ["--model", str(model), "--budget", "2", "--labelled", str(tmp_path)],
            "not an officescore data set",
        ),
        (["--model", str(model), "--budget", "2", "--strategy", "best"], "--strategy 'best'"),
        (["--budget", "2", "--strategy", "best"], "--strategy 'best'"),  # not "--model: needed"
    ]
    for args, expected in cases:
        code, _, err = _cli(
            ["select", str(folder), *args, "--device", "cpu", "--out", str(tmp_path / "x.csv")], capsys
        )
        assert code == 2 and len(err.splitlines()) == 1 and expected in err, (args, err)
    assert not (tmp_path / "x.csv").exists()
    code, _, err = _cli(["select", str(tmp_path / "empty"), "--budget", "2", "--strategy", "random"], capsys)
    assert code == 2 and "no such photo, folder or glob" in err


def test_cli_a_pool_of_unreadable_photos_is_an_error_not_an_empty_list(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pool = tmp_path / "pool"
    pool.mkdir()
    (pool / "cut.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut off")
    (pool / "empty.png").write_bytes(b"")
    out = tmp_path / "next.csv"
    out.write_text("rank,path\n1,kept.jpg\n")  # an earlier selection
    args = ["select", str(pool), "--budget", "2", "--strategy", "random", "--out", str(out)]
    code, _, err = _cli(args, capsys)
    last = err.splitlines()[-1]  # after the progress line
    assert code == 2 and last.startswith("error: none of the 2 photo(s) in the pool"), err
    assert out.read_text() == "rank,path\n1,kept.jpg\n"


def test_cli_names_the_unreadable_photos_it_left_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A count of unreadable photos leaves the user hunting for them: the text output names them, as
    written (mutation review B: rich read `[x]` in the folder's name as markup and dropped it)."""
    pool = tmp_path / "pool [x]"
    pool.mkdir()
    render_scene(1, size=64).image.save(pool / "good.png")
    (pool / "cut.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut off")
    args = ["select", str(pool), "--budget", "2", "--strategy", "random", "--out", str(tmp_path / "n.csv")]
    code, out, err = _cli(args, capsys)
    assert code == 0, err
    assert "1 unreadable" in out and f"unreadable, left out: {pool / 'cut.jpg'}" in " ".join(out.split())


def test_a_scrape_folder_that_cannot_be_written_is_a_pool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """data/raw on a read-only mount (or another user's): its manifest is read, not opened to write.
    A photo deleted by hand since the scrape is left out with a note, as label push and prelabel do
    (select listed it as unreadable), and a folder with none left is the same one-line error."""
    from readonly import imitate_read_only
    from scrapefolder import scrape_folder

    raw = (tmp_path / "raw").resolve()
    raw.mkdir()
    photos = [raw / "a.png", None, raw / "c.png", raw / "d.png"]  # the second was never downloaded
    for row_id, photo in enumerate(photos, start=1):
        if photo is not None:
            render_scene(row_id, size=64).image.save(photo)
    scrape_folder(raw, photos)
    (raw / "d.png").unlink()  # weeded out by hand
    before = {p.name: p.read_bytes() for p in raw.iterdir()}
    imitate_read_only(monkeypatch, raw)
    args = ["select", str(raw), "--budget", "5", "--strategy", "random", "--out", str(tmp_path / "next.csv")]
    code, out, err = _cli([*args, "--json"], capsys)
    assert code == 0, err
    run = json.loads(out)
    assert sorted(Path(c["path"]).name for c in run["chosen"]) == ["a.png", "c.png"]
    assert (run["pool"], run["unreadable"]) == (2, [])
    note = "1 photo(s) the scrape kept are no longer on disk (deleted by hand?), left out: d.png"
    assert run["notes"][0] == note
    assert {p.name: p.read_bytes() for p in raw.iterdir()} == before
    (raw / "a.png").unlink(), (raw / "c.png").unlink()
    code, _, err = _cli(args, capsys)
    assert code == 2 and "no photos in this scrape folder (none kept, or deleted since)" in err


def test_an_empty_scrape_folder_among_others_is_skipped_with_a_note(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One scrape folder per query, one query found nothing: the others are the pool, and a note
    names the empty one. Only when every folder is empty is there nothing to choose from."""
    from scrapefolder import scrape_folder

    desks, lamps = tmp_path / "desks", tmp_path / "lamps"
    desks.mkdir(), lamps.mkdir()
    photos = [desks / "a.png", desks / "b.png"]
    for n, photo in enumerate(photos):
        render_scene(n, size=64).image.save(photo)
    scrape_folder(desks, photos)
    scrape_folder(lamps, [None, None])  # found, never downloaded
    args = ["select", str(desks), str(lamps), "--budget", "5", "--strategy", "random"]
    code, out, err = _cli([*args, "--out", str(tmp_path / "next.csv"), "--json"], capsys)
    assert code == 0, err
    run = json.loads(out)
    assert sorted(Path(c["path"]).name for c in run["chosen"]) == ["a.png", "b.png"]
    assert run["notes"][0] == (
        f"skipped 1 scrape folder(s) with no photos (none kept, or deleted since): {lamps}"
    )
    mugs = tmp_path / "mugs"
    mugs.mkdir()
    scrape_folder(mugs, [None])
    code, _, err = _cli(["select", str(lamps), str(mugs), "--budget", "5", "--strategy", "random"], capsys)
    assert code == 2 and len(err.splitlines()) == 1
    assert err.endswith(f"{lamps}, {mugs}: no photos in these scrape folders (none kept, or deleted since)")


def test_cli_defaults_match_the_library() -> None:
    from officescore.cli.select import select as cli_select

    library = inspect.signature(select).parameters
    cli = inspect.signature(cli_select).parameters
    for name in ("strategy", "uncertainty", "device", "seed"):
        assert cli[name].default.default == library[name].default, name


# --------------------------------------------------------------------------- seeding, near-copies (issue 21)


@pytest.fixture(scope="module")
def big_pool(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight distinct new scenes (pairwise >= 24 phash bits apart): more than a budget of 3."""
    folder = tmp_path_factory.mktemp("big_pool")
    for i in range(8):
        render_scene(300 + i, size=64).image.save(folder / f"scene_{i}.png")
    return folder


def _order(run: object) -> list[str]:
    return [Path(c.path).name for c in run.chosen]  # type: ignore[attr-defined]


def test_random_strategy_is_seeded(big_pool: Path) -> None:
    """Same seed, same draw (three times); another seed, another draw. Budget 3 of 8 photos."""
    draws = [_order(select([big_pool], "", budget=3, strategy="random", seed=5)) for _ in range(3)]
    assert len(draws[0]) == 3 and draws[0] == draws[1] == draws[2]
    other = _order(select([big_pool], "", budget=3, strategy="random", seed=6))
    assert len(other) == 3 and other != draws[0]


def test_cli_seed_reaches_the_random_draw(
    big_pool: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    library = {s: _order(select([big_pool], "", budget=3, strategy="random", seed=s)) for s in (0, 1)}
    assert library[0] != library[1]  # else the test could not tell the seeds apart
    args = ["select", str(big_pool), "--budget", "3", "--strategy", "random", "--seed", "1", "--json"]
    code, stdout, err = _cli([*args, "--out", str(tmp_path / "next.csv")], capsys)
    assert code == 0, err
    assert [Path(c["path"]).name for c in json.loads(stdout)["chosen"]] == library[1]


def test_cli_table_names_each_chosen_photo_whole_in_80_columns(
    big_pool: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The photo column wraps a long path instead of cutting it to `/tmp/pytest-…`, which names no photo."""
    monkeypatch.setattr(common.console, "_width", 80)  # a terminal's width, whatever $COLUMNS says
    chosen = [str(c.path) for c in select([big_pool], "", budget=3, strategy="random", seed=1).chosen]
    args = ["select", str(big_pool), "--budget", "3", "--strategy", "random", "--seed", "1"]
    code, stdout, err = _cli([*args, "--out", str(tmp_path / "next.csv")], capsys)
    assert code == 0, err
    assert table_column(stdout, 1) == chosen, stdout


@pytest.fixture(scope="module")
def copies_pool(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, set[str]]:
    """A new scene with two near-copies of it (re-encoded, resized: 0 phash bits apart), and two
    other new scenes (>= 22 bits from everything); none of them labelled."""
    folder = tmp_path_factory.mktemp("copies_pool")
    scene = render_scene(310, size=96).image
    scene.save(folder / "scene.png")
    scene.save(folder / "scene_reencoded.jpg", quality=60)
    scene.resize((80, 80)).save(folder / "scene_resized.png")
    for i in (311, 312):
        render_scene(i, size=96).image.save(folder / f"other_{i}.png")
    return folder, {"scene.png", "scene_reencoded.jpg", "scene_resized.png"}


@pytest.mark.parametrize("strategy", ["uncertainty", "random"])
def test_never_two_near_copies_of_a_new_scene(
    copies_pool: tuple[Path, set[str]], model: Path, strategy: str
) -> None:
    folder, family = copies_pool
    run = select([folder], model, budget=5, strategy=strategy, device="cpu")
    chosen = _order(run)
    assert len(set(chosen) & family) == 1 and {"other_311.png", "other_312.png"} <= set(chosen), chosen
    hashes = [phash(c.path) for c in run.chosen]
    distances = hamming(hashes, hashes)
    assert all(distances[i, j] > NEAR_DUP_BITS for i in range(len(chosen)) for j in range(i)), distances
    short = "only 3 photos left to choose from (budget 5): 2 more are near-copies of photos chosen"
    assert short in run.notes, run.notes  # not a pool of 3: the copies were there, and left out


def test_a_budget_the_pool_just_fills_has_no_shortfall_note(big_pool: Path) -> None:
    exact = select([big_pool], "", budget=8, strategy="random")
    assert len(exact.chosen) == 8 and exact.notes == []
    short = select([big_pool], "", budget=9, strategy="random")
    assert short.notes == ["only 8 photos left to choose from (budget 9)"]


def test_the_library_refuses_a_budget_of_0(big_pool: Path) -> None:
    from officescore.errors import ConfigError

    with pytest.raises(ConfigError, match="--budget 0: must be 1 or more"):
        select([big_pool], "", budget=0, strategy="random")


def test_a_tasks_file_name_in_capitals_is_a_json_name(big_pool: Path, model: Path, tmp_path: Path) -> None:
    run = select(
        [big_pool], model, budget=1, strategy="random", device="cpu", labelstudio=tmp_path / "NEXT.JSON"
    )
    assert run.tasks == tmp_path / "NEXT.JSON" and run.tasks.is_file()


def test_k_center_keeps_the_labelled_photos_as_centres_after_the_first_pick() -> None:
    """Photo 0 sits on a labelled photo: however unsure, it stays last; after photo 1 (far, unsure)
    the next pick is photo 3, far from both, not photo 2 beside photo 1."""
    centres = np.array([[0.0, 0.0]])
    feats = np.array([[0.05, 0.0], [5.0, 0.0], [5.0, 0.1], [-1.0, 0.0]])
    u = np.array([1.0, 0.9, 0.1, 0.5])
    assert [i for i, _, _ in k_center_greedy(feats, u, 3, centres)] == [1, 3, 0]


def test_without_labelled_photos_the_first_pick_is_at_distance_0_not_infinity(
    big_pool: Path, model: Path, tmp_path: Path
) -> None:
    """Nothing labelled: the first pick has no nearest photo. Its distance is written as 0 (a CSV or
    JSON reader chokes on inf), later picks measure from it."""
    run = select([big_pool], model, budget=2, device="cpu", out=tmp_path / "next.csv")
    assert run.chosen[0].distance == 0.0 and 0.0 < run.chosen[1].distance < float("inf")
    json.dumps(run.to_json(), allow_nan=False)  # valid JSON: no Infinity


def test_cli_an_out_below_a_file_is_refused_before_any_work(
    big_pool: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "taken").write_text("a file")
    out = tmp_path / "taken" / "next.csv"
    args = ["select", str(big_pool), "--budget", "1", "--strategy", "random", "--out", str(out)]
    code, _, err = _cli(args, capsys)
    assert code == 2 and err == f"error: --out {out}: {tmp_path / 'taken'} is a file, not a folder", err


def test_a_select_task_of_one_photo_names_that_photo(tmp_path: Path) -> None:
    from labelmodels import edge_model, write_photos

    from officescore.curate.labelstudio import select_tasks
    from officescore.label.formats import read_tasks
    from officescore.label.prelabel import image_reference

    photo = write_photos(tmp_path / "photos", n=1)[0]
    path, _, _ = select_tasks(tmp_path / "next.json", edge_model().predictor, [photo], "edges")
    (task,) = read_tasks(path)
    assert task["data"]["image"] == image_reference(photo.name, None)  # relative to its folder


def test_a_photo_named_twice_is_in_the_pool_once(pool: tuple[Path, set[str]]) -> None:
    from officescore.curate.pool import pool_files

    folder, _ = pool
    again = folder / ".." / folder.name / "new_0.png"  # the same file by another path
    files, _, _ = pool_files([folder, again])
    assert len(files) == len(list(folder.iterdir()))


def test_each_photos_embedding_is_unit_length(pool: tuple[Path, set[str]], model: Path) -> None:
    """k-center compares photos by direction, not by how bright their feature maps are."""
    from officescore.infer import Predictor

    folder, _ = pool
    signals = image_signals(Predictor.load(model, device="cpu"), sorted(folder.iterdir())[:2])
    assert [float(np.linalg.norm(s.feature)) for s in signals] == pytest.approx([1.0, 1.0])


def test_a_pool_of_only_labelled_copies_runs_no_model(
    labelled: Path, model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing is left after the hashing: the empty answer comes without embedding the labelled
    photos (68 s in a docs walk), with the same files and note as before."""
    from officescore.curate import select as select_module

    pool_dir = tmp_path / "pool"
    pool_dir.mkdir()
    for photo in sorted((labelled / "images").iterdir()):
        (pool_dir / photo.name).write_bytes(photo.read_bytes())

    def no_model(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model ran though no photo was left to choose")

    monkeypatch.setattr(select_module, "image_signals", no_model)
    run = select([pool_dir], model, budget=3, labelled=labelled, out=tmp_path / "next.csv", device="cpu")
    assert run.chosen == [] and len(run.excluded_near_duplicates) == run.pool == 4
    assert "only 0 photos left to choose from (budget 3)" in run.notes, run.notes
    assert (tmp_path / "next.csv").read_text().startswith("rank,path,score")
    assert (tmp_path / "images.txt").read_text() == ""
