"""Paths with `[...]` in them (`photos [x]/`, `data [x]/`) are printed as written by every command.

Rich reads `[x]` in a printed string as a style tag: it dropped that part of the path (`wrote data /`),
and a `[/x]` raised a MarkupError. Each case runs one command in-process on folders named so."""

from __future__ import annotations

from pathlib import Path

import pytest
from cliroot import table_column
from labelmodels import one_torch_thread, run  # noqa: F401  (autouse: one torch thread)
from scoremodels import write_checkpoint, write_scenes
from scrapefolder import scrape_folder

from officescore.cli.common import CliReporter
from officescore.ingest import ingest_export
from officescore.sample import write_sample

MODEL = "model [x]/best.pt"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny export, data set, model, photo folder and scrape folder, each under a name with `[x]`."""
    root = tmp_path_factory.mktemp("markup")
    write_sample(root / "export [x]", n_images=6, seed=1, size=96)
    ingest_export(root / "export [x]" / "annotations.json", out=root / "data [x]", val_fraction=0.34, seed=0)
    write_checkpoint(root / MODEL)
    write_scenes(root / "photos [x]", n=2, size=96)
    raw = root / "raw [x]"
    (raw / "images").mkdir(parents=True)
    (raw / "images" / "a.jpg").write_bytes((root / "photos [x]" / "scene_0.jpg").read_bytes())
    scrape_folder(raw, [raw / "images" / "a.jpg"])
    return root


@pytest.fixture
def in_root(root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Relative paths: short enough that a table's title never wraps them."""
    monkeypatch.chdir(root)
    return root


CPU = ["--device", "cpu"]
CASES = {  # command line -> what its output (stdout and stderr) must hold as written
    "sample": (
        ["sample", "sample [x]", "-n", "1", "--size", "64"],
        ["wrote sample [x]/annotations.json and sample [x]/images/"],
    ),
    "ingest": (
        ["ingest", "export [x]/annotations.json", "--out", "ingested [x]", "--no-plot"],
        ["wrote ingested [x]: ", "Data set ingested [x]"],
    ),
    "stats": (["stats", "data [x]"], ["Data set data [x]", "plot: data [x]/health.png"]),
    "eval": (
        ["eval", "--model", MODEL, "--data", "data [x]", "--project", "eval [x]", *CPU],
        [f"model {MODEL} on data [x]/val.json", "wrote eval [x]/eval in"],
    ),
    "audit": (
        ["audit", "data [x]", "--model", MODEL, "--out", "audit [x]", *CPU],
        ["data [x] (train): ", "wrote audit [x] ("],
    ),
    "select": (
        ["select", "photos [x]", "--model", MODEL, "--budget", "2", "--out", "select [x]/s.csv", *CPU],
        ["wrote select [x]/s.csv and select [x]/"],
    ),
    "prelabel": (
        ["prelabel", "photos [x]", "--model", MODEL, "--out", "tasks [x].json", *CPU],
        ["wrote tasks [x].json"],
    ),
    "scrape --status": (["scrape", "--out", "raw [x]", "--status"], ["scrape progress in raw [x]"]),
    "scrape --export": (["scrape", "--out", "raw [x]", "--export", "credits [x]"], ["credits [x]/"]),
}


@pytest.mark.parametrize("command", CASES)
def test_paths_with_brackets_are_printed_as_written(
    command: str, in_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args, expected = CASES[command]
    code, out, err = run(args, capsys)
    assert code == 0, err
    for text in expected:
        assert text in out + err, f"{text!r} not in:\n{out}{err}"
    if command == "select":  # the photo column, a table's cells: each wraps at its space
        assert sorted(table_column(out, 1)) == ["photos[x]/scene_0.jpg", "photos[x]/scene_1.jpg"]


def test_progress_notes_are_printed_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    """A library's note (a checkpoint saved on Ctrl-C, a fold's run folder) goes through the CLI's
    reporter: its path keeps `[x]`, and a `[/x]` in it is no closing tag for rich to refuse."""
    CliReporter().log("saved runs [x]/weights/last.pt")
    with CliReporter().stage("checking") as stage:
        stage.log("photos [/x]/a.jpg")
    err = capsys.readouterr().err
    assert "saved runs [x]/weights/last.pt" in err and "photos [/x]/a.jpg" in err


def test_label_status_prints_the_project_title_and_folder_as_written(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A project titled `offices [test]` was `offices : 3 of 12 task(s) labelled`, and its backend
    folder `backend [x]` lost `[x]`, in the one line and in the table's title."""
    from officescore.cli import label as label_cli
    from officescore.label import feedback

    document: dict[str, object] = {"tasks": 12, "labelled_tasks": 3, "versions": []}
    monkeypatch.setattr(label_cli, "_client", lambda url: None)
    monkeypatch.setattr(feedback, "project_status", lambda client, title, folder: document)
    args = ["label", "status", "--project", "offices [test]", "--backend-dir", "backend [x]"]
    code, out, _ = run(args, capsys)
    assert code == 0 and out.startswith("offices [test]: 3 of 12 task(s) labelled; ") and "backend [x]" in out
    document["versions"] = [{"model_version": "job [x]", "trained_photos": 3}]
    code, out, _ = run(args, capsys)
    assert code == 0 and "offices [test]: 3 of 12 task(s) labelled" in out
    assert table_column(out, 0)[:1] == ["job [x]"]
