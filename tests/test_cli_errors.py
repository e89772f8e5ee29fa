"""Hostile inputs for every command: one-line error, exit code 2, no traceback, nothing lost.

Each case runs the CLI in-process. "Unreadable" files are imitated without chmod (tests run as
root, who reads anything): a symlink loop, and a path that runs through a regular file.
Nothing here trains or evaluates a model; the one checkpoint is a tiny untrained network.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from officescore.cli import app, main

REPO = Path(__file__).resolve().parent.parent
GARBAGE = bytes(range(256)) * 8 + b"\x00\xff" * 100


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A sample export, its data set, a tiny checkpoint, and a collection of bad files."""
    from scoremodels import write_checkpoint

    root = tmp_path_factory.mktemp("hostile") / "dir with spaces ü"
    root.mkdir()
    w: dict[str, Path] = {"root": root}
    for args in (
        ["sample", str(root / "sample"), "--images", "4", "--size", "64"],
        ["ingest", str(root / "sample" / "annotations.json"), "--out", str(root / "dataset"), "--no-plot"],
    ):
        with pytest.raises(SystemExit) as done:
            main(args)
        assert done.value.code in (0, None), args
    w["export"] = root / "sample" / "annotations.json"
    w["dataset"] = root / "dataset"
    w["photo"] = sorted((root / "sample" / "images").iterdir())[0]
    w["model"] = write_checkpoint(root / "tiny model.pt")
    w["missing"] = root / "no such thing ä.json"
    w["folder"] = root / "a folder.pt"
    w["folder"].mkdir()
    w["empty"] = root / "empty.json"
    w["empty"].write_bytes(b"")
    w["garbage"] = root / "garbage.json"
    w["garbage"].write_bytes(GARBAGE)
    for suffix in ("pt", "jpg", "toml", "sqlite"):
        w[f"garbage_{suffix}"] = root / f"garbage.{suffix}"
        w[f"garbage_{suffix}"].write_bytes(GARBAGE)
    w["list_json"] = root / "list.json"
    w["list_json"].write_text("[1, 2, 3]")
    w["afile"] = root / "precious.txt"
    w["afile"].write_text("keep me")
    w["loop"] = root / "loop.json"
    os.symlink(w["loop"], w["loop"])  # reading it fails with ELOOP: an unreadable file, even for root
    w["through_file"] = w["afile"] / "child.json"  # ENOTDIR
    w["empty_dir"] = root / "empty dir"
    w["empty_dir"].mkdir()
    w["bad_dataset"] = root / "bad dataset"
    w["bad_dataset"].mkdir()
    (w["bad_dataset"] / "dataset.json").write_bytes(GARBAGE)
    w["bad_raw"] = root / "bad raw"
    w["bad_raw"].mkdir()
    (w["bad_raw"] / "manifest.sqlite").write_bytes(GARBAGE)
    return w


def _snapshot(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every regular file under root: (size, mtime_ns, inode); any write or replacement changes it."""
    found = {}
    for p in root.rglob("*"):
        if p.is_file() and not p.is_symlink():
            st = p.stat()
            found[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns, st.st_ino)
    return found


@pytest.fixture()
def clean_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith(("OFFICESCORE_", "GCS_", "OPENVERSE_")):
            monkeypatch.delenv(name)

    # serve must never replace the test process with streamlit.
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("serve accepted the input and would have started streamlit")

    monkeypatch.setattr(os, "execve", refuse)
    monkeypatch.setattr(subprocess, "call", refuse)
    yield tmp_path


def case(*args: str, names: str | None = None) -> object:
    """One hostile command line; `names` is what its message must contain to name the bad input.

    By default the input is the last argument: a file or folder placeholder must appear as that path,
    any other value as the option it was given to (or, for a positional, the value itself).
    """
    return pytest.param(list(args), names, id=" ".join(args))


def _expected_name(args: list[str], names: str | None, world: dict[str, Path]) -> str:
    if names is not None:
        return names.format(**{k: str(v) for k, v in world.items()})
    last = args[-1]
    if last.startswith("{"):
        return last.format(**{k: str(v) for k, v in world.items()})
    flag = args[-2] if len(args) > 2 and args[-2].startswith("-") else None
    return flag or last


CASES = [
    # ---- scrape ----------------------------------------------------------------------------
    case("scrape", "--queries", "{missing}"),
    case("scrape", "--queries", "{folder}"),
    case("scrape", "--queries", "{empty}"),
    case("scrape", "--queries", "{garbage}"),
    case("scrape", "--queries", "{loop}"),
    case("scrape", "--queries", "{through_file}"),
    case("scrape", "-q", "x", "--provider", "openverse", "--per-query", "-1"),
    case("scrape", "-q", "x", "--provider", "openverse", "--daily-quota", "-1"),
    case("scrape", "-q", "x", "--provider", "openverse", "--workers", "0"),
    case("scrape", "-q", "x", "--provider", "openverse", "--timeout", "0"),
    case("scrape", "-q", "x", "--provider", "openverse", "--retries", "-1"),
    case("scrape", "-q", "x", "--provider", "openverse", "--max-bytes", "0"),
    case("scrape", "-q", "x", "--provider", "openverse", "--near-dup-threshold", "65"),
    case("scrape", "-q", "x", "--provider", "yahoo"),
    case("scrape", "-q", "x", "--provider", "openverse", "--rights", "anything"),
    case("scrape", "-q", "x", "--provider", "openverse", "--out", "{afile}"),
    case("scrape", "-q", "x", "--provider", "openverse", "--out", "{through_file}"),
    case("scrape", "--status", "--out", "{bad_raw}"),
    case("scrape", "--export", "{afile}", "--out", "{bad_raw}", names="{afile}"),
    case("scrape", "--export", "x", "--out", "{empty_dir}"),
    case("scrape", "--per-query", "many"),
    # ---- sample ----------------------------------------------------------------------------
    case("sample", "{afile}", "--images", "2", names="{afile}"),
    case("sample", "{root}/out", "--images", "0"),
    case("sample", "{root}/out", "--images", "-3"),
    case("sample", "{root}/out", "--size", "0"),
    case("sample", "{root}/out", "--size", "-64"),
    case("sample", "{through_file}", "--images", "1", names="{through_file}"),
    # ---- ingest ----------------------------------------------------------------------------
    case("ingest", "{missing}"),
    case("ingest", "{folder}"),
    case("ingest", "{empty}"),
    case("ingest", "{garbage}"),
    case("ingest", "{list_json}"),
    case("ingest", "{loop}"),
    case("ingest", "{through_file}", names="{afile}"),  # the part of the path that is a file
    case("ingest", "{export}", "--images", "{missing}"),
    case("ingest", "{export}", "--images", "{afile}"),
    case("ingest", "{export}", "--val-fraction", "1.5"),
    case("ingest", "{export}", "--val-fraction", "-0.2"),
    case("ingest", "{export}", "--out", "{afile}"),
    case("ingest", "{export}", "--classes", "unicorn,dragon", names="unicorn, dragon"),
    case("ingest", "{export}", "--classes", ",", names="class(es) (none given)"),
    # ---- stats -----------------------------------------------------------------------------
    case("stats", "{missing}"),
    case("stats", "{afile}"),
    case("stats", "{empty_dir}"),
    case("stats", "{bad_dataset}"),
    # ---- train (every case must fail before a model is built; --weights none: an offline
    # download error must not stand in for the check a case is about) ------------------------
    case("train", "--weights", "none", "--data", "{missing}"),
    case("train", "--weights", "none", "--data", "{afile}"),
    case("train", "--weights", "none", "--data", "{empty_dir}"),
    case("train", "--weights", "none", "--data", "{bad_dataset}"),
    case("train", "--data", "{dataset}", "--weights", "none", "--epochs", "0"),
    case("train", "--data", "{dataset}", "--weights", "none", "--epochs", "-1"),
    case("train", "--data", "{dataset}", "--weights", "none", "--batch-size", "0"),
    case("train", "--data", "{dataset}", "--weights", "none", "--lr", "-0.1"),
    case("train", "--data", "{dataset}", "--weights", "none", "--img-size", "0"),
    case("train", "--data", "{dataset}", "--weights", "none", "--img-size", "10"),
    case("train", "--data", "{dataset}", "--weights", "none", "--workers", "-1"),
    case("train", "--data", "{dataset}", "--weights", "none", "--max-train-images", "-3"),
    case("train", "--data", "{dataset}", "--weights", "none", "--warmup-iters", "-5"),
    case("train", "--data", "{dataset}", "--weights", "none", "--optimizer", "adagrad"),
    case("train", "--data", "{dataset}", "--weights", "none", "--arch", "yolo"),
    case("train", "--data", "{dataset}", "--weights", "none", "--device", "tpu"),
    case("train", "--data", "{dataset}", "--weights", "{missing}"),
    case("train", "--data", "{dataset}", "--weights", "{garbage_pt}"),
    case("train", "--data", "{dataset}", "--weights", "{folder}"),
    case("train", "--data", "{dataset}", "--resume", "{missing}"),
    case("train", "--data", "{dataset}", "--resume", "{garbage_pt}"),
    case("train", "--data", "{dataset}", "--weights", "none", "--model-opt", "nonsense"),
    case("train", "--data", "{dataset}", "--weights", "none", "--val-every", "0"),
    case("train", "--data", "{dataset}", "--weights", "none", "--project", "{afile}"),
    case("train", "--data", "{dataset}", "--weights", "none", "--log", "wandb"),
    # ---- eval ------------------------------------------------------------------------------
    case("eval", "--model", "{missing}", "--data", "{dataset}", names="{missing}"),
    case("eval", "--model", "{garbage_pt}", "--data", "{dataset}", names="{garbage_pt}"),
    case("eval", "--model", "{folder}", "--data", "{dataset}", names="{folder}"),
    case("eval", "--model", "{model}", "--data", "{missing}"),
    case("eval", "--model", "{model}", "--data", "{bad_dataset}"),
    case("eval", "--model", "{model}", "--data", "{dataset}", "--split", "test", names="'test'"),
    case("eval", "--model", "{model}", "--data", "{dataset}", "--conf", "2"),
    case("eval", "--model", "{model}", "--data", "{dataset}", "--batch-size", "0"),
    case("eval", "--model", "{model}", "--data", "{dataset}", "--iou", "1.5"),
    case("eval", "--model", "{model}", "--data", "{dataset}", "--device", "tpu"),
    case("eval", "--predictions", "{garbage}", "--gt", "{dataset}/val.json", names="{garbage}"),
    case("eval", "--predictions", "{list_json}", "--gt", "{missing}"),
    case("eval", "--predictions", "{empty}", "--gt", "{dataset}/val.json", names="{empty}"),
    case("eval", "--predictions", "{loop}", "--gt", "{dataset}/val.json", names="{loop}"),
    case("eval", "--data", "{dataset}", names="--model"),  # no --model and no runs/ here
    # ---- score -----------------------------------------------------------------------------
    case("score", "{missing}", "--model", "{model}", names="{missing}"),
    case("score", "{folder}", "--model", "{model}", names="{folder}"),
    case("score", "{empty}", "--model", "{model}", names="{empty}"),
    case("score", "{garbage_jpg}", "--model", "{model}", names="{garbage_jpg}"),
    case("score", "{loop}", "--model", "{model}", names="{loop}"),
    case("score", "{photo}", "--model", "{missing}"),
    case("score", "{photo}", "--model", "{garbage_pt}"),
    case("score", "{photo}", "--model", "{folder}"),
    case("score", "{photo}", "--model", "{model}", "--conf", "-0.1"),
    case("score", "{photo}", "--model", "{model}", "--batch-size", "0"),
    case("score", "{photo}", "--model", "{model}", "--img-size", "-5"),
    case("score", "{photo}", "--model", "{model}", "--device", "tpu"),
    case("score", "{photo}", "--model", "{model}", "--rubric", "{missing}"),
    case("score", "{photo}", "--model", "{model}", "--rubric", "{garbage_toml}"),
    case("score", "{photo}", "--model", "{model}", "--csv", "{folder}"),
    case("score", "{photo}", "--model", "{model}", "--save-dir", "{afile}"),
    # ---- export ----------------------------------------------------------------------------
    case("export", "--model", "{missing}"),
    case("export", "--model", "{garbage_pt}"),
    case("export", "--model", "{folder}"),
    case("export", "--model", "{model}", "--format", "tflite"),
    case("export", "--model", "{model}", "--format", "onnx", "--input-size", "big"),
    case("export", "--model", "{model}", "--format", "onnx", "--opset", "5"),
    case("export", "--model", "{model}", "--out", "{folder}"),
    case("export", "--model", "{model}", "--sample", "{garbage_jpg}"),
    # ---- serve (must refuse before streamlit starts) ---------------------------------------
    case("serve", "--model", "{missing}"),
    case("serve", "--model", "{folder}"),
    case("serve", "--model", "{model}", "--conf", "2"),
    case("serve", "--model", "{model}", "--rubric", "{garbage_toml}"),
    case("serve", "--model", "{model}", "--port", "many"),
    case("serve", "--model", "{garbage_pt}"),
    case("serve", "--model", "{model}", "--port", "-1"),
    case("serve", "--model", "{model}", "--port", "70000"),
    case("serve", "--model", "{model}", "--device", "tpu"),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("args", "names"), CASES)
def test_hostile_input_is_a_one_line_error(
    args: list[str],
    names: str | None,
    world: dict[str, Path],
    clean_cwd: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = [arg.format(**{k: str(v) for k, v in world.items()}) for arg in args]
    before = _snapshot(world["root"])
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    out, err = capsys.readouterr()
    code = exit_info.value.code
    assert "Traceback" not in out + err
    assert code == 2, f"exit {code}; stderr: {err.strip()[-300:]}"
    lines = err.strip().splitlines()
    if "Usage:" in err:  # Click's usage error: usage line plus a boxed message
        assert "Error" in err, err
    else:  # one red line at the end (after per-stage progress lines; score lists each bad photo)
        assert lines and lines[-1].startswith("error:"), err
        errors = [line for line in lines if line.startswith("error:")]
        assert len(errors) == 1 or argv[0] == "score", err
    # the message names what was wrong (Click may wrap a long usage message: compare unwrapped)
    expected = _expected_name(args, names, world)
    flat = " ".join(err.replace("│", " ").split())
    assert " ".join(expected.split()) in flat, f"{expected!r} not named in: {err.strip()[-400:]}"
    assert _snapshot(world["root"]) == before, "a refused command changed files it was given"
    assert not [p for p in clean_cwd.rglob("*") if p.is_file()], "a refused command left files behind"


@pytest.mark.timeout(120)
@pytest.mark.timeout(60)
def test_serve_on_a_port_in_use_is_a_one_line_error(
    world: dict[str, Path], clean_cwd: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Streamlit itself would claim "serving ..." and then log "Port N is not available".
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit) as info:
            main(["serve", "--model", str(world["model"]), "--port", str(port)])
    out, err = capsys.readouterr()
    assert info.value.code == 2
    assert "Traceback" not in out + err and "serving" not in out + err
    assert err.strip().count("\n") == 0 and f"--port {port}: cannot listen on 127.0.0.1:{port}" in err


def test_serve_may_restart_at_once_on_the_port_it_just_left() -> None:
    """A server stopped a moment ago leaves its port in TIME_WAIT: Streamlit binds it again (as
    Tornado sets SO_REUSEADDR), so the up-front check must not call it a port in use."""
    import socket

    from officescore.cli.serve import _check_address

    with socket.socket() as server:  # the stopped Streamlit: Tornado listens with SO_REUSEADDR
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = server.accept()
        accepted.close()  # the server side closes first: its end waits in TIME_WAIT
        client.recv(1)
        client.close()
    _check_address("127.0.0.1", port)  # no ConfigError


def test_serve_on_a_host_that_is_no_address_says_host_not_port() -> None:
    """A --host that does not resolve is the host's fault: the message names --host, not the port."""
    from officescore.cli.serve import _check_address
    from officescore.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^--host no-such-host\.invalid: not an address of this machine"):
        _check_address("no-such-host.invalid", 8501)


@pytest.mark.timeout(60)
def test_serve_coco_without_its_weights_offline_is_a_one_line_error(
    tmp_path: Path, clean_cwd: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # It used to start, and fail on the page once a photo was uploaded.
    import urllib.error

    import torch

    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("no network")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # an empty hub cache
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(SystemExit) as info:
        main(["serve", "--model", "coco"])
    out, err = capsys.readouterr()
    assert info.value.code == 2 and "Traceback" not in out + err
    assert "cannot download pretrained weights" in err and "The zero-shot `coco` model needs" in err
    assert "--weights none" not in err  # train's advice: serve has no such flag
    assert len(err.strip().splitlines()) == 1


def test_a_photo_that_no_longer_decodes_stops_training_with_one_line(
    world: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Read in a DataLoader worker (train's default --workers 2), the bad photo's error came back with
    the worker's traceback in its message."""
    dataset = tmp_path / "dataset"
    shutil.copytree(world["dataset"], dataset)
    photos = sorted((dataset / "images").iterdir())
    for photo in photos:
        photo.unlink()  # hard links to the sample: replace, never write through them
        photo.write_bytes(b"\xff\xd8\xff\xe0 cut off")
    argv = ["train", "--data", str(dataset), "--weights", "none", "--arch", "maskrcnn_resnet18_fpn"]
    argv += ["--img-size", "64", "--epochs", "1", "--workers", "1", "--log", "none", "--device", "cpu"]
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--project", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err, err
    errors = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {dataset / 'images'}"), err


@pytest.mark.parametrize(
    "message", ["photo.jpg: empty file (0 bytes)", "first line\nsecond: with a colon", "a: b: c"]
)
def test_a_worker_error_is_shown_as_its_own_message(message: str) -> None:
    """torch's re-raise of a worker's error (its traceback as the message) is shown as the error's
    own message, whole: more than one line, or colons in it, included."""
    from torch._utils import ExceptionWrapper

    from officescore.cli import _sentence
    from officescore.errors import BadImageError

    try:
        raise BadImageError(message)
    except BadImageError:
        wrapped = ExceptionWrapper(where="in DataLoader worker process 0")
    with pytest.raises(BadImageError) as raised:
        wrapped.reraise()
    assert "Original Traceback" in str(raised.value)
    assert _sentence(raised.value) == message
    assert _sentence(BadImageError(message)) == message  # raised in this process: as it is


def test_the_fixture_inputs_are_what_the_cases_claim(world: dict[str, Path]) -> None:
    """Guards the cases above: the 'good' inputs are good, so each case fails for its own reason."""
    with pytest.raises(OSError):
        world["loop"].read_bytes()
    with pytest.raises(NotADirectoryError):
        world["through_file"].read_bytes()
    assert json.loads((world["dataset"] / "dataset.json").read_text())["format"] == "officescore-dataset"
    assert world["photo"].suffix in (".png", ".jpg") and world["model"].stat().st_size > 1000


def test_an_export_folder_given_as_the_data_set_is_told_how_to_ingest_it(
    world: dict[str, Path], clean_cwd: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`sample`'s folder where a data set belongs: the advice is an ingest into another folder, and
    it works (`--out` the export's own folder, the general hint, is refused: it holds the photos)."""
    export, model = world["export"], str(world["model"])
    advice = f"`officescore ingest {export} --out data/dataset` and pass data/dataset"
    for command in (["train", "--weights", "none", "--data"], ["eval", "--model", model, "--data"]):
        with pytest.raises(SystemExit) as exit_info:
            main([*command, str(export.parent)])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and err.strip().endswith(advice), err
    with pytest.raises(SystemExit) as exit_info:
        main(["audit", str(export.parent), "--model", model])
    assert exit_info.value.code == 2 and capsys.readouterr().err.strip().endswith(advice)
    with pytest.raises(SystemExit) as exit_info:
        main(["ingest", str(export), "--out", "data/dataset", "--no-plot"])
    assert exit_info.value.code in (0, None) and (clean_cwd / "data" / "dataset" / "dataset.json").is_file()


def test_commands_are_registered_once(capsys: pytest.CaptureFixture[str]) -> None:
    for _ in range(2):
        with pytest.raises(SystemExit):
            main(["--version"])
    capsys.readouterr()
    names = [command.name for command in app.registered_commands]
    assert len(names) == len(set(names)), f"{len(names)} registrations of {len(set(names))} commands"


@pytest.mark.parametrize(
    "args",
    [
        ["export", "--model", "{folder}"],
        ["serve", "--model", "{folder}"],
        ["score", "{photo}", "--model", "{folder}"],
        ["train", "--data", "{dataset}", "--weights", "{folder}"],
        ["train", "--resume", "{folder}"],
    ],
    ids=lambda args: " ".join(args[:1] + args[-2:-1]),
)
def test_a_folder_given_as_the_model_is_called_a_folder(
    args: list[str], world: dict[str, Path], clean_cwd: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A folder with no model in it: the message says it is a folder and which file to pass, not
    that nothing is there (a run folder's own best.pt is taken: see the test below)."""
    with pytest.raises(SystemExit) as exit_info:
        main([arg.format(**{k: str(v) for k, v in world.items()}) for arg in args])
    err = " ".join(capsys.readouterr().err.split())
    assert exit_info.value.code == 2
    best = world["folder"] / "weights" / "best.pt"
    if "--resume" in args:
        assert f"--resume {world['folder']}: a folder with no weights/last.pt; pass a run folder" in err
        return
    said = "a folder;" if args[0] == "train" else "a folder with no weights/best.pt in it or its runs;"
    flag = "--weights" if args[0] == "train" else "--model"  # the one message names the flag given
    assert f"{flag} {world['folder']}: {said} pass a model file such as {best}" in err


@pytest.mark.parametrize(
    ("args", "takes"),
    [
        (["score", "{photo}", "--model", "{gone}"], ", a TorchScript export or `coco`"),
        (["serve", "--model", "{gone}"], ", a TorchScript export or `coco`"),
        (
            ["prelabel", "{photo}", "--model", "{gone}", "--out", "{root}/tasks.json"],
            ", a TorchScript export or `coco`",
        ),
        (["eval", "--model", "{gone}", "--data", "{dataset}"], " or a TorchScript export"),
        (["export", "--model", "{gone}"], " or a run folder"),
    ],
    ids=lambda value: value[0] if isinstance(value, list) else "",
)
def test_a_model_file_that_is_not_there_has_one_message(
    args: list[str], takes: str, world: dict[str, Path], clean_cwd: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Score, serve, eval, prelabel and label each said it their own way ("no such checkpoint", "no
    such file", score without naming --model); now one message names the flag and what the command
    takes instead."""
    gone = world["root"] / "gone.pt"
    with pytest.raises(SystemExit) as exit_info:
        main([arg.format(gone=gone, **{k: str(v) for k, v in world.items()}) for arg in args])
    err = " ".join(capsys.readouterr().err.split())
    assert exit_info.value.code == 2 and "Traceback" not in err
    first = (
        "a checkpoint (weights/best.pt)"
        if args[0] == "export"
        else "a checkpoint (weights/best.pt), a run folder"
    )
    assert f"--model {gone}: no such model file; pass {first}{takes}" in err, err
    assert not (world["root"] / "tasks.json").exists()


def test_score_and_export_take_a_run_folder_as_eval_does(
    world: dict[str, Path], clean_cwd: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`eval --model runs/train/x` took the run's best.pt; score, export and serve refused the
    folder. Now a run folder is its weights/best.pt everywhere a model is read."""
    run_dir = clean_cwd / "runs" / "train" / "office"
    (run_dir / "weights").mkdir(parents=True)
    shutil.copy(world["model"], run_dir / "weights" / "best.pt")
    scores = []
    for model in (world["model"], run_dir, run_dir.parent):
        with pytest.raises(SystemExit) as exit_info:
            main(["score", str(world["photo"]), "--model", str(model), "--json"])
        out = capsys.readouterr().out
        assert exit_info.value.code in (0, None), out
        found = json.loads(out)
        scores.append(found["photos"][0]["score"])
        assert found["model"] == str(
            world["model"] if model == world["model"] else run_dir / "weights" / "best.pt"
        )
    assert scores[0] == scores[1] == scores[2]
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--model", str(run_dir)])
    assert exit_info.value.code in (0, None), capsys.readouterr().err
    assert (run_dir / "weights" / "best.torchscript.pt").stat().st_size > 1000  # beside the best.pt


def test_resuming_a_checkpoint_outside_a_run_folder_writes_nothing(
    world: dict[str, Path], clean_cwd: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The run folder of `--resume` is the checkpoint's grandparent: for a copy kept elsewhere that is
    any folder (here the one holding the data set), which must not get a run written into it."""
    before = _snapshot(world["root"])
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--data", str(world["dataset"]), "--resume", str(world["model"]), "--workers", "0"])
    err = " ".join(capsys.readouterr().err.split())
    assert exit_info.value.code == 2
    assert f"--resume {world['model']}: not in a run's weights/ folder" in err
    assert f"--weights {world['model']}" in err
    assert _snapshot(world["root"]) == before and not (world["root"].parent / "weights").exists()


@pytest.mark.parametrize("command", ["score", "eval", "export", "serve"])
def test_weights_that_do_not_fit_their_architecture_are_named(
    command: str, world: dict[str, Path], clean_cwd: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A checkpoint whose weights are another architecture's than the one it records: one line that
    names the file and the first tensor that does not fit (torch's own first line says neither), and
    serve refuses it before the page starts rather than showing the error in the browser."""
    data = torch.load(world["model"], weights_only=True)
    misfit = clean_cwd / "misfit.pt"
    torch.save({**data, "arch": "maskrcnn_mobilenet_v3_fpn"}, misfit)
    args = {
        "score": ["score", str(world["photo"]), "--model", str(misfit)],
        "eval": ["eval", "--model", str(misfit), "--data", str(world["dataset"])],
        "export": ["export", "--model", str(misfit), "--out", str(clean_cwd / "out.torchscript.pt")],
        "serve": ["serve", "--model", str(misfit)],
    }[command]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(err.strip().splitlines()) == 1, err
    flat = " ".join(err.split())
    assert f"{misfit}: its weights do not fit its architecture maskrcnn_mobilenet_v3_fpn (" in flat
    assert "backbone." in flat and "Error(s) in loading" not in flat
    assert sorted(p.name for p in clean_cwd.iterdir()) == ["misfit.pt"]


@pytest.mark.parametrize("extra", [["{sample}/images"], ["{model}", "more photos"]])
def test_eval_given_arguments_says_it_takes_options_and_where_photos_go(
    world: dict[str, Path], clean_cwd: Path, capsys: pytest.CaptureFixture[str], extra: list[str]
) -> None:
    """`eval photos/` (or a bare model path): one line saying what eval takes and that `score` scores
    photos, not Click's "Got unexpected extra argument"; nothing written."""
    given = [arg.format(sample=world["export"].parent, model=world["model"]) for arg in extra]
    with pytest.raises(SystemExit) as info:
        main(["eval", "--data", str(world["dataset"]), *given])
    err = " ".join(capsys.readouterr().err.split())
    assert info.value.code == 2 and err.startswith("error: eval takes options only, not "), err
    assert all(part in err for part in ("--model", "--data", "--predictions", "officescore score")), err
    assert "Usage:" not in err and not list(clean_cwd.rglob("*"))


@pytest.mark.parametrize(
    "extra, expected",
    [
        (
            ["--conventions", "plant=whole"],
            "error: plant=whole: to declare a convention write --convention plant=whole",
        ),
        (["more"], "error: audit takes one data set folder, not also more"),
    ],
)
def test_audit_given_more_arguments_says_what_was_meant(
    world: dict[str, Path],
    clean_cwd: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    expected: str,
) -> None:
    """`--conventions plant=whole` (the report flag, one letter from --convention) was Click's "Got
    unexpected extra argument (plant=whole)"; now the option it meant, before any model loads."""
    with pytest.raises(SystemExit) as info:
        main(["audit", str(world["dataset"]), *extra])
    err = " ".join(capsys.readouterr().err.split())
    assert info.value.code == 2 and err.startswith(expected), err
    assert "Usage:" not in err and not list(clean_cwd.rglob("*"))


def test_eval_with_a_file_as_its_project_fails_before_predicting(
    world: dict[str, Path],
    clean_cwd: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A file where the runs folder goes was found only after the whole split had been predicted."""
    import officescore.evaluate.run as eval_run

    def no_predicting(*args: object, **kwargs: object) -> None:
        raise AssertionError("eval predicted before checking where it writes")

    monkeypatch.setattr(eval_run, "_eval_model", no_predicting)
    blocker = clean_cwd / "runs"
    blocker.write_text("not a folder")
    argv = ["eval", "--model", str(world["model"]), "--data", str(world["dataset"]), "--project", "runs/eval"]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.strip().splitlines() == [
        "error: --project runs/eval: runs is a file; give a folder"
    ]
    assert blocker.read_text() == "not a folder"


@pytest.mark.parametrize(
    ("argv", "toml", "expected"),
    [
        (
            ["train", "--data", "{dataset}"],
            "[train]\nepoch = 1\n",
            "[train] epoch is no setting of `officescore train` (did you mean epochs?)",
        ),
        (
            ["eval", "--model", "{model}"],
            "[eval]\nious = 0.3\n",
            "[eval] ious is no setting of `officescore eval` (did you mean iou?)",
        ),
        (
            ["score", "{photo}", "--model", "{model}"],
            "[score]\njsn = true\n",
            "[score] jsn is no setting of `officescore score` (did you mean json?)",
        ),
        (
            ["export", "--model", "{model}"],
            "[export]\nout-put = 'x.pt'\n",
            "[export] out-put is no setting of `officescore export` (did you mean out?)",
        ),
        (
            ["serve", "--model", "{model}"],
            "[serve]\nprot = 8000\n",
            "[serve] prot is no setting of `officescore serve` (did you mean port?)",
        ),
        # option names that differ from their parameter's name were read as nothing
        (
            ["export", "--model", "{model}"],
            "[export]\nformat = 'tflite'\n",
            "--format tflite: choose torchscript or onnx",
        ),
        # a misspelt table, and the commands whose tables were not checked at all
        (
            ["train", "--data", "{dataset}"],
            "[trian]\nepochs = 1\n",
            "[trian] is no command of officescore (did you mean train?)",
        ),
        (
            ["stats", "--data", "{dataset}"],
            "[scrape]\nper-querry = 5\n",
            "[scrape] per-querry is no setting of `officescore scrape` (did you mean per-query?)",
        ),
        # the image-search keys are no options, but a misspelt one is still offered its name
        (
            ["stats", "--data", "{dataset}"],
            "[scrape]\nunsplash-key = 'k'\n",
            "[scrape] unsplash-key is no setting of `officescore scrape` (did you mean unsplash-access-key?)",
        ),
        # a provider's quota table is checked whichever command runs, as every table is
        (
            ["stats", "--data", "{dataset}"],
            "[scrape.gogle]\ndaily-quota = 90\n",
            "[scrape.gogle] is no provider (did you mean google?)",
        ),
        (
            ["stats", "--data", "{dataset}"],
            "[label]\napikey = 'k'\n",
            "[label] apikey is no setting of any `officescore label` command (did you mean api-key?)",
        ),
        (
            ["stats", "--data", "{dataset}"],
            "[label]\nprojet = 'offices'\n",
            "[label] projet is no setting of any `officescore label` command (did you mean project?)",
        ),
        (
            ["stats", "--data", "{dataset}"],
            "[label.psh]\nconf = 0.5\n",
            "[label.psh] is no command of `officescore label` (did you mean push?)",
        ),
        (
            ["stats", "--data", "{dataset}"],
            "[label.pull]\nconf = 0.5\n",
            "[label.pull] conf is no setting of `officescore label pull`",
        ),
    ],
    ids=[
        "train",
        "eval",
        "score",
        "export",
        "serve",
        "export-format",
        "table",
        "scrape",
        "scrape-secret",
        "scrape-provider",
        "label-secret",
        "label",
        "label-table",
        "label-pull",
    ],
)
def test_settings_that_set_nothing_are_refused(
    argv: list[str],
    toml: str,
    expected: str,
    world: dict[str, Path],
    clean_cwd: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Click ignores officescore.toml keys that are no parameter's name: a typo left the default in
    place without a word (`epoch = 1` trained the default 20 epochs)."""
    (clean_cwd / "officescore.toml").write_text(toml)
    with pytest.raises(SystemExit) as exit_info:
        main([arg.format(**{k: str(v) for k, v in world.items()}) for arg in argv])
    err = " ".join(capsys.readouterr().err.split())
    assert exit_info.value.code == 2 and expected in err, err
    assert sorted(p.name for p in clean_cwd.iterdir()) == ["officescore.toml"]


def test_score_reads_its_csv_setting(
    world: dict[str, Path], clean_cwd: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (clean_cwd / "officescore.toml").write_text("[score]\ncsv = 'scores.csv'\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["score", str(world["photo"]), "--model", str(world["model"])])
    assert exit_info.value.code in (0, None), capsys.readouterr().err
    assert (clean_cwd / "scores.csv").read_text().startswith("path,score,label,objects")


STOPPED = "stopped (Ctrl-C); nothing written"


@pytest.mark.usefixtures("ctrl_c_default")
@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["ingest", "{export}", "--out", "{out}"], f"{STOPPED}; --out is as it was"),
        (["eval", "-m", "{model}", "--data", "{dataset}", "--device", "cpu", "--project", "{out}"], STOPPED),
        (
            ["audit", "{dataset}", "-m", "{model}", "--device", "cpu", "--out", "{out}"],
            f"{STOPPED}, or part of its run folder if it was writing one",
        ),
        (["select", "{photo}", "-m", "{model}", "-n", "1", "--device", "cpu", "--out", "{out}"], STOPPED),
        (["prelabel", "{photo}", "-m", "{model}", "--device", "cpu", "--out", "{out}"], STOPPED),
        (["export", "-m", "{model}", "--out", "{out}"], f"{STOPPED}; --out is as it was"),
    ],
)
def test_ctrl_c_while_working_says_it_stopped_and_what_was_written(
    world: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    said: str,
) -> None:
    """A real SIGINT as the command's first progress stage starts: one line saying it stopped and
    what was written (Typer turned it into a silent exit 130), exit 130, no output left behind."""
    import signal

    from officescore.cli import common

    stage = common.CliReporter.stage

    def ctrl_c_as_work_starts(self: common.CliReporter, description: str, total: int | None = None) -> object:
        os.kill(os.getpid(), signal.SIGINT)  # Python's handler raises at the next bytecode, here
        return stage(self, description, total)

    monkeypatch.setattr(common.CliReporter, "stage", ctrl_c_as_work_starts)
    out = tmp_path / "out.json"
    names = {key: str(value) for key, value in world.items()} | {"out": str(out)}
    with pytest.raises(SystemExit) as info:
        main([arg.format(**names) for arg in argv])
    assert info.value.code == 130
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if line.strip()][-1] == said
    assert not out.exists() and "Traceback" not in err


# Runs officescore with one function replaced by a stand-in that says it is working, then waits:
# Ctrl-C then lands while the command works, as it would in a slow read or connection.
WORKING_FOREVER = """
import sys, time
from importlib import import_module
module, _, name = sys.argv[1].partition(":")
owner, _, attribute = name.rpartition(".")
target = import_module(module)
for part in filter(None, owner.split(".")):
    target = getattr(target, part)
def working(*args, **kwargs):
    print("working", flush=True)
    time.sleep(120)
setattr(target, attribute, staticmethod(working) if isinstance(target, type) else working)
from officescore.cli import main
main(sys.argv[2:])
"""


def _ctrl_c_once_working(
    argv: list[str], working: Callable[[subprocess.Popen[str]], bool], cwd: Path
) -> tuple[int, str]:
    """`python -c <argv>` in a child, SIGINT once `working(child)` says it works: (exit code, stderr)."""
    import signal
    import sys
    import time

    process = subprocess.Popen(
        [sys.executable, "-c", *argv],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO), "LABEL_STUDIO_API_KEY": "key"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # a shell without job control starts background jobs with SIGINT ignored: give the child a
        # terminal's default
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 60
        while not working(process):
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    return process.returncode, err


def _last_line(err: str) -> str:
    lines = [" ".join(line.split()) for line in err.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def test_ctrl_c_while_sample_renders_says_what_is_not_written(tmp_path: Path) -> None:
    """Ctrl-C once the first scenes are on disk: one line saying annotations.json is not written and
    images/ holds part of the scenes (was a silent exit 130), exit 130."""
    out = tmp_path / "sample"
    images = out / "images"
    run = "from officescore.cli import main; import sys; main(sys.argv[1:])"
    argv = [run, "sample", str(out), "-n", "100000", "--size", "64"]
    code, err = _ctrl_c_once_working(argv, lambda _: images.is_dir() and any(images.glob("*.jpg")), tmp_path)
    assert code == 130, err
    assert _last_line(err) == (
        f"stopped (Ctrl-C); {out / 'annotations.json'} not written, {images} holds part of the "
        "scenes: run the same command again"
    )
    assert not (out / "annotations.json").exists() and "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "working", "said"),
    [
        (
            ["stats", "{dataset}"],
            "officescore.ingest.health:health_report",
            f"stopped (Ctrl-C); {{dataset}}{os.sep}health.png is as it was, or rewritten whole",
        ),
        (["stats", "{dataset}", "--no-plot"], "officescore.ingest.health:health_report", STOPPED),
        (
            ["label", "status", "--project", "offices", "--url", "http://127.0.0.1:9"],
            "officescore.label.client:LabelStudio.connect",
            STOPPED,
        ),
    ],
)
def test_ctrl_c_in_stats_and_label_status_says_it_stopped(
    world: dict[str, Path], tmp_path: Path, argv: list[str], working: str, said: str
) -> None:
    """A real SIGINT while the command works (reading the data set, reaching Label Studio): one line
    saying it stopped and what was written (was a silent exit 130), exit 130, health.png untouched."""
    png = world["dataset"] / "health.png"
    before = png.read_bytes() if png.exists() else None
    args = [arg.format(dataset=world["dataset"]) for arg in argv]

    def says_working(child: subprocess.Popen[str]) -> bool:
        assert child.stdout is not None
        return child.stdout.readline().strip() == "working"

    code, err = _ctrl_c_once_working([WORKING_FOREVER, working, *args], says_working, tmp_path)
    assert code == 130, err
    assert _last_line(err) == " ".join(said.format(dataset=world["dataset"]).split()), err
    assert "Traceback" not in err and (png.read_bytes() if png.exists() else None) == before
