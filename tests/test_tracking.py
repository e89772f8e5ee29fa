"""Experiment tracking (`train --log`): TensorBoard event files and MLflow runs, read back with each
tool's own reader and compared with metrics.csv; training without either; the errors.

Runs are ResNet18-FPN at 64 px on 4 training images (2 steps per epoch), like tests/test_train.py.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from trainsetup import FAST_MODEL, cli_model_options, make_dataset, small_config

from officescore.cli import main
from officescore.progress import Reporter, Stage
from officescore.train import LOSS_KEYS, METRIC_KEYS, TrainConfig, lr_factor, train
from officescore.train.tracking import Trackers

STEPS_PER_EPOCH = 2  # max_train_images 4, batch 2


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("tracking"), images=10, size=64, seed=5)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A runs/ folder the MLflow tests share, so its SQLite store (runs/mlflow: seconds to create,
    MLflow migrates a fresh schema) is made once; each test uses its own experiment or --project."""
    return tmp_path_factory.mktemp("shared") / "runs"


def _store_uri(runs: Path) -> str:
    return f"sqlite:///{(runs / 'mlflow' / 'mlflow.db').as_posix()}"


@pytest.fixture(autouse=True)
def no_tracking_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests choose MLflow's store themselves; the environment running them must not."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    monkeypatch.delenv("OFFICESCORE_CONFIG", raising=False)


def _csv_rows(run_dir: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((run_dir / "metrics.csv").open()))


def _events(run_dir: Path) -> Any:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(run_dir))
    accumulator.Reload()
    return accumulator


def _scalars(accumulator: Any, tag: str) -> list[tuple[int, float]]:
    return [(event.step, event.value) for event in accumulator.Scalars(tag)]


def _hide(monkeypatch: pytest.MonkeyPatch, *packages: str) -> None:
    """Make `import <package>` fail as if it were not installed (None in sys.modules does that)."""
    for name in packages:
        monkeypatch.setitem(sys.modules, name, None)


def test_tensorboard_events_match_metrics_csv(data: Path, tmp_path: Path) -> None:
    """--log auto with tensorboard installed and no MLFLOW_TRACKING_URI: event files in the run folder
    holding every step (losses whose epoch means are metrics.csv's, the scheduled lr), every epoch's
    CSV row, and the resolved args as hyper-parameters."""
    result = train(small_config(data, tmp_path / "runs", max_train_images=4, log="auto"))
    run_dir = result.run_dir
    assert list(run_dir.glob("events.out.tfevents.*")) and not (run_dir / "mlflow_run.json").exists()
    assert f"tensorboard: event files in {run_dir}" in " ".join(result.notes)
    assert "MLFLOW_TRACKING_URI is not set" in " ".join(result.notes)  # why MLflow is not used
    rows = _csv_rows(run_dir)
    args = json.loads((run_dir / "args.json").read_text())
    events = _events(run_dir)

    steps = 2 * STEPS_PER_EPOCH
    for key in ("loss", *LOSS_KEYS):
        logged = _scalars(events, f"train/{key}")
        assert [step for step, _ in logged] == list(range(1, steps + 1))
        for row in rows:  # the CSV holds each epoch's mean over its steps (6 significant digits)
            epoch = int(row["epoch"])
            values = [v for s, v in logged if (s - 1) // STEPS_PER_EPOCH == epoch - 1]
            assert sum(values) / len(values) == pytest.approx(float(row[key]), rel=2e-5), (key, epoch)
    for step, lr in _scalars(events, "train/lr"):  # the lr each step used: warm-up, then cosine
        factor = lr_factor(step - 1, args["warmup_iters"], steps, args["min_lr_ratio"])
        assert lr == pytest.approx(args["lr"] * factor, rel=1e-6), step
    assert all(rate > 0 for _, rate in _scalars(events, "train/img_per_s"))

    for column in ("loss", *LOSS_KEYS, "lr", "img_per_s", "seconds", *METRIC_KEYS):
        tag = f"val/{column}" if column in METRIC_KEYS else f"epoch/{column}"
        expected = [(int(row["epoch"]), float(row[column])) for row in rows]
        logged = _scalars(events, tag)
        assert [s for s, _ in logged] == [s for s, _ in expected], tag
        assert [v for _, v in logged] == pytest.approx([v for _, v in expected], rel=2e-5, abs=1e-7), tag

    from tensorboard.plugins.hparams import metadata

    content = events.PluginTagToContent(metadata.PLUGIN_NAME)
    start = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
    assert start.hparams["lr"].number_value == pytest.approx(args["lr"])
    assert start.hparams["warmup_iters"].number_value == args["warmup_iters"]
    assert start.hparams["arch"].string_value == "maskrcnn_resnet18_fpn"
    assert start.hparams["model_kwargs.min_size"].number_value == 64
    assert metadata.SESSION_END_INFO_TAG in content  # the run finished


def test_mlflow_local_store_holds_params_metrics_and_artefacts(
    data: Path,
    runs: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`train --log mlflow` without MLFLOW_TRACKING_URI: a local store in runs/mlflow, read back with
    MLflow's client: one finished run, args as params, per-step and per-epoch metrics equal to
    metrics.csv, and best.pt, the plots, metrics.csv and args.json as artefacts. The JSON on stdout
    stays pure although MLflow prints its run link there (as it does for a tracking server)."""
    from mlflow.tracking import MlflowClient
    from mlflow.tracking._tracking_service.client import TrackingServiceClient

    def print_link(self: Any, run_id: str) -> None:  # what MLflow 3 does in set_terminated for servers
        sys.stdout.write(f"View run at: http://server/#/runs/{run_id}\n")

    monkeypatch.setattr(TrackingServiceClient, "_log_url", print_link)

    project = runs / "train"
    args = ["train", "--data", str(data), "--arch", "maskrcnn_resnet18_fpn", "--weights", "none"]
    args += ["--epochs", "2", "--batch-size", "2", "--lr", "0.01", "--img-size", "64", "--workers", "0"]
    args += ["--device", "cpu", "--seed", "3", "--max-train-images", "4", "--project", str(project)]
    args += ["--log", "mlflow", "--json", *cli_model_options()]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert "View run at: http://server/#/runs/" in captured.err  # moved, not lost
    run_dir = Path(result["run_dir"])
    uri = _store_uri(runs)  # beside the --project folder
    assert any(note.startswith("mlflow: run ") and uri in note for note in result["notes"])
    assert not list(run_dir.glob("events.out.tfevents.*"))  # --log mlflow: MLflow alone

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("officescore")
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id])
    # named by its folder's path from 3 folders up: another project's runs/train/train differs
    assert run.info.status == "FINISHED" and run.info.run_name == f"{runs.parent.name}/runs/train/train"
    assert json.loads((run_dir / "mlflow_run.json").read_text())["run_id"] == run.info.run_id

    saved_args = json.loads((run_dir / "args.json").read_text())
    params = run.data.params
    assert params["lr"] == "0.01" and params["optimizer"] == "sgd" and params["log"] == "mlflow"
    assert params["warmup_iters"] == str(saved_args["warmup_iters"])
    assert params["model_kwargs.min_size"] == "64" and json.loads(params["classes"]) == saved_args["classes"]
    # whole paths, where args.json keeps them relative to the run folder (data = ../../../data)
    assert (params["data"], params["project"]) == (str(data.resolve()), str(project.resolve()))
    assert saved_args["data"] != params["data"] and params["device"] == "cpu"

    rows = _csv_rows(run_dir)
    for column in ("loss", "loss_mask", "lr", *METRIC_KEYS):
        tag = f"val/{column}" if column in METRIC_KEYS else f"epoch/{column}"
        history = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, tag))
        expected = [(int(row["epoch"]), float(row[column])) for row in rows]
        assert [s for s, _ in history] == [s for s, _ in expected], tag
        assert [v for _, v in history] == pytest.approx([v for _, v in expected], rel=2e-5, abs=1e-7), tag
    losses = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, "train/loss"))
    assert [s for s, _ in losses] == [1, 2, 3, 4]
    assert (losses[2][1] + losses[3][1]) / 2 == pytest.approx(float(rows[1]["loss"]), rel=2e-5)

    listed = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert listed == {"weights", "losses.png", "map.png", "lr.png", "metrics.csv", "args.json"}
    assert [a.path for a in client.list_artifacts(run.info.run_id, "weights")] == ["weights/best.pt"]
    copy = Path(client.download_artifacts(run.info.run_id, "weights/best.pt", str(tmp_path / "down")))
    digest = [hashlib.sha256(p.read_bytes()).hexdigest() for p in (copy, run_dir / "weights" / "best.pt")]
    assert digest[0] == digest[1]


def test_without_tensorboard_or_mlflow_training_works_and_says_so(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Neither package importable (even with MLFLOW_TRACKING_URI set): the run trains, writes its CSV
    and PNGs, and its notes (printed by the CLI) say that nothing went to TensorBoard or MLflow."""
    _hide(monkeypatch, "tensorboard", "torch.utils.tensorboard", "mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{(tmp_path / 'never.db').as_posix()}")
    project = tmp_path / "runs"
    args = ["train", "--data", str(data), "--arch", "maskrcnn_resnet18_fpn", "--weights", "none"]
    args += ["--epochs", "1", "--img-size", "64", "--workers", "0", "--device", "cpu"]
    args += ["--max-train-images", "2", "--project", str(project), "--json", *cli_model_options()]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 0
    result = json.loads(capsys.readouterr().out)
    run_dir = Path(result["run_dir"])
    assert result["epochs_completed"] == 1 and len(_csv_rows(run_dir)) == 1
    assert all((run_dir / name).is_file() for name in ("losses.png", "map.png", "lr.png"))
    (note,) = [n for n in result["notes"] if n.startswith("tracking:")]
    assert "nothing logged to TensorBoard or MLflow" in note
    assert "tensorboard is not installed" in note and "mlflow is not installed" in note
    assert "pip install 'officescore[track]'" in note
    assert not list(run_dir.glob("events.out.tfevents.*")) and not (tmp_path / "never.db").exists()


@pytest.mark.parametrize("log", ["mlflow", "tensorboard"])
def test_log_a_missing_tracker_is_one_line_error_before_training(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], log: str
) -> None:
    _hide(monkeypatch, "mlflow" if log == "mlflow" else "tensorboard")
    project = tmp_path / "runs"
    with pytest.raises(SystemExit) as exit_info:
        main(
            ["train", "--data", str(data), "--arch", "maskrcnn_resnet18_fpn", "--weights", "none"]
            + ["--device", "cpu", "--workers", "0", "--project", str(project), "--log", log]
        )
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert f"--log {log}: {log} is not installed" in lines[0] and "pip install" in lines[0]
    assert not project.exists()  # refused before a run folder or a model was made


def _dead_server() -> str:
    """An http URI on 127.0.0.1 where nothing listens (connection refused at once)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_a_tracking_server_that_does_not_answer(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """MLFLOW_TRACKING_URI names a dead server: `--log mlflow` refuses in one line before training;
    `auto` trains at once with TensorBoard and says why MLflow is not used (MLflow's own client would
    retry for minutes first)."""
    uri = _dead_server()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    project = tmp_path / "runs"
    base = _one_epoch(data, project)
    with pytest.raises(SystemExit) as exit_info:
        main([*base, "--log", "mlflow"])
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and f"--log mlflow: MLFLOW_TRACKING_URI {uri} does not answer" in lines[0]
    assert not project.exists()

    with pytest.raises(SystemExit) as exit_info:
        main([*base, "--log", "auto", "--json"])
    assert exit_info.value.code == 0
    result = json.loads(capsys.readouterr().out)
    (note,) = [n for n in result["notes"] if n.startswith("tracking:")]
    assert f"mlflow could not start (ConnectionError: {uri} does not answer" in note
    assert any(n.startswith("tensorboard: event files") for n in result["notes"])
    assert not (Path(result["run_dir"]) / "mlflow_run.json").exists()


def _one_epoch(data: Path, project: Path) -> list[str]:
    """`train` for one epoch of a small untrained model on two photos, into `project`."""
    base = ["train", "--data", str(data), "--arch", "maskrcnn_resnet18_fpn", "--weights", "none"]
    base += ["--epochs", "1", "--img-size", "64", "--workers", "0", "--device", "cpu"]
    return [*base, "--max-train-images", "2", "--project", str(project), *cli_model_options()]


def test_a_tracking_store_that_fails_at_start_leaves_no_run_folder(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A store that answers but cannot be used (here a file that is not a database) is found only
    when the run starts: `--log mlflow` refuses in one line, and the new run folder (args.json,
    TensorBoard's events) is not left behind as an empty run."""
    store = tmp_path / "store.db"
    store.write_text("not a database")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}")
    project = tmp_path / "runs"
    project.mkdir()
    (project / "train").mkdir()  # an earlier run: never touched
    base = _one_epoch(data, project)
    with pytest.raises(SystemExit) as exit_info:
        main([*base, "--log", "mlflow"])
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "--log mlflow: mlflow could not start" in lines[0], lines
    assert sorted(p.name for p in project.iterdir()) == ["train"] and not any((project / "train").iterdir())
    assert store.read_text() == "not a database"
    # Resuming a run that trained: the failing tracker removes nothing of it (its weights stay).
    with pytest.raises(SystemExit) as exit_info:
        main([*base, "--log", "none"])
    last = project / "train2" / "weights" / "last.pt"
    assert exit_info.value.code == 0 and last.is_file()
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--resume", str(last), "--device", "cpu", "--log", "mlflow"])
    assert exit_info.value.code == 2 and "mlflow could not start" in capsys.readouterr().err
    assert last.is_file()


_OPEN_WHEN_TOLD = """
import sys, time
from pathlib import Path
import mlflow.tracking  # imported before the start signal, so both processes reach the store together
from officescore.train.tracking import MLflowTracker
root, run = Path(sys.argv[1]), Path(sys.argv[1]) / sys.argv[2]
run.mkdir()
while not (root / "go").exists():
    time.sleep(0.01)
MLflowTracker(run, sys.argv[3]).end([], "finished")
"""


def test_the_store_lock_is_skipped_where_the_file_system_has_no_locks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """flock refused (ENOLCK on some network shares): MLflow is set up unguarded, as before the
    lock, not stopped; so is a store whose lock file cannot be made. The lock is asked for without
    LOCK_NB: one another process holds is waited for (two processes: see below)."""
    import errno
    import fcntl

    from officescore.train.tracking import _store_lock

    asked = []

    def no_locks(fd: int, operation: int) -> None:
        asked.append(operation)
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    entered = []
    with _store_lock(f"sqlite:///{tmp_path / 'mlflow.db'}"):
        entered.append(True)
    # The lock was asked for, to be waited for: LOCK_NB would turn another's lock into "unguarded".
    assert entered == [True] and asked == [fcntl.LOCK_EX]
    # A store whose lock file cannot be made (a file where its folder would be): MLflow says what is wrong.
    (tmp_path / "taken").write_text("")
    with _store_lock(f"sqlite:///{tmp_path / 'taken' / 'mlflow.db'}"):
        entered.append(True)
    assert entered == [True, True] and asked == [fcntl.LOCK_EX]


def test_the_store_lock_guards_a_store_whose_folder_is_not_made_yet(tmp_path: Path) -> None:
    """MLFLOW_TRACKING_URI=sqlite:///new/folder/mlflow.db: MLflow makes the folder itself, so the
    lock must make it first; skipped, two trainings starting together raced to create the tables and
    one lost MLflow (\"duplicate column name\")."""
    import fcntl

    from officescore.train.tracking import _store_lock

    lock = tmp_path / "new" / "folder" / "mlflow.db.lock"
    with (
        _store_lock(f"sqlite:///{lock.parent / 'mlflow.db'}"),
        lock.open() as other,
        pytest.raises(BlockingIOError),  # held: another process would wait here
    ):
        fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_two_trainings_starting_together_share_a_new_local_store(tmp_path: Path) -> None:
    """Two `train --log mlflow` runs starting at once on a fresh runs/mlflow: MLflow creates the SQLite
    tables unguarded, and the second process failed with SQL errors ("table ... already exists")."""
    import subprocess
    import time

    (tmp_path / "mlflow").mkdir()
    uri = _store_uri(tmp_path)
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _OPEN_WHEN_TOLD, str(tmp_path), name, uri],
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not all((tmp_path / name).is_dir() for name in ("a", "b")):
        time.sleep(0.05)  # both have imported MLflow
    (tmp_path / "go").touch()
    errors = [process.communicate(timeout=120)[1] for process in processes]
    assert [process.returncode for process in processes] == [0, 0], errors
    from mlflow.tracking import MlflowClient

    ids = {json.loads((tmp_path / name / "mlflow_run.json").read_text())["run_id"] for name in "ab"}
    client = MlflowClient(tracking_uri=uri)
    assert {client.get_run(run_id).info.status for run_id in ids} == {"FINISHED"} and len(ids) == 2


def test_a_store_folder_that_cannot_be_made_is_a_one_line_error(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--log mlflow` where runs/mlflow cannot be a folder (a file there; a folder the user may not
    write): one line, as for any store that cannot start, and no empty run folder left behind; it was
    an 'unexpected error: FileExistsError' that left runs/train/train with args.json."""
    (tmp_path / "mlflow").write_text("")
    project = tmp_path / "train"
    with pytest.raises(SystemExit) as exit_info:
        main([*_one_epoch(data, project), "--log", "mlflow"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(lines) == 1, lines
    assert "--log mlflow: mlflow could not start" in lines[0] and str(tmp_path / "mlflow") in lines[0]
    assert not project.exists() or not any(project.iterdir())


def test_a_relative_sqlite_tracking_uri_is_used(runs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MLFLOW_TRACKING_URI=sqlite:///runs/mlflow/mlflow.db (relative, as the docs' `mlflow ui` line
    writes it): MLflow starts and keeps the artefacts beside the database. The artefact folder was
    made a file URI from the relative path, which raised, and `auto` dropped MLflow."""
    from officescore.train import tracking

    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "relative")
    monkeypatch.chdir(runs.parent)
    tracking.local_mlflow_uri(runs / "train")  # the shared store, made once
    run_dir = runs / "relative" / "train"
    run_dir.mkdir(parents=True)
    (run_dir / "args.json").write_text("{}")
    tracker = tracking.MLflowTracker(run_dir, f"sqlite:///{runs.name}/mlflow/mlflow.db")
    tracker.end([run_dir / "args.json"], "finished")
    experiment = tracker.client.get_experiment(tracker.experiment_id)
    assert experiment.artifact_location == (runs / "mlflow" / "artifacts").resolve().as_uri()
    assert [a.path for a in tracker.client.list_artifacts(tracker.run_id)] == ["args.json"]


def test_a_relative_sqlite_store_is_recorded_whole_so_eval_and_resume_find_it_from_any_folder(
    runs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run logged to sqlite:///runs/mlflow/mlflow.db records the store as a whole path: eval from
    another folder adds to the same MLflow run, and --resume from another folder whose relative URI
    names the same store continues it (the record was the relative text: a fresh store, a new run)."""
    from officescore.train import tracking

    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "relative-record")
    monkeypatch.chdir(runs.parent)
    tracking.local_mlflow_uri(runs / "train")  # the shared store, made once
    store = f"sqlite:///{(runs / 'mlflow' / 'mlflow.db').resolve().as_posix()}"
    run_dir = runs / "relative-record" / "exp1"
    (run_dir / "weights").mkdir(parents=True)
    (run_dir / "args.json").write_text("{}")
    trained = tracking.MLflowTracker(run_dir, f"sqlite:///{runs.name}/mlflow/mlflow.db")
    trained.end([], "finished")
    assert json.loads((run_dir / "mlflow_run.json").read_text()) == {
        "tracking_uri": store,
        "run_id": trained.run_id,
    }

    monkeypatch.chdir(tmp_path)  # elsewhere: eval, and a resume naming the store relative to here
    notes = tracking.log_eval(
        "auto", _eval_doc(tmp_path / "val.json"), tmp_path, run_dir / "weights" / "best.pt", []
    )
    assert any(note.startswith(f"mlflow: run {trained.run_id} in experiment") for note in notes)
    relative_here = f"sqlite:///{os.path.relpath(runs / 'mlflow' / 'mlflow.db')}"
    resumed = tracking.MLflowTracker(run_dir, relative_here, resuming=True)
    resumed.end([], "finished")
    assert (resumed.run_id, resumed.tracking_uri) == (trained.run_id, store)
    assert list(tmp_path.iterdir()) == [] and resumed.notes == []  # no store made here, nothing to say


def test_a_relative_store_recorded_before_is_read_from_here_and_said_in_one_line(
    runs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An mlflow_run.json written before stores were recorded whole names sqlite:///runs/...: the
    folder training ran in is not recorded, so eval reads it from the current folder and says which
    store that is in one line (a new one, from a folder without it); the record is then whole."""
    from officescore.train import tracking

    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "relative-old")
    monkeypatch.chdir(runs.parent)
    tracking.local_mlflow_uri(runs / "train")
    run_dir = runs / "relative-old" / "exp1"
    (run_dir / "weights").mkdir(parents=True)
    (run_dir / "args.json").write_text("{}")
    trained = tracking.MLflowTracker(run_dir, _store_uri(runs))
    trained.end([], "finished")
    old = {"tracking_uri": f"sqlite:///{runs.name}/mlflow/mlflow.db", "run_id": trained.run_id}
    doc, model = _eval_doc(tmp_path / "val.json"), run_dir / "weights" / "best.pt"
    record = run_dir / "mlflow_run.json"
    said = f"mlflow: {record} names the store {old['tracking_uri']} relative to the folder training ran in, "
    for here, store, run_id in ((runs.parent, runs, trained.run_id), (tmp_path, tmp_path / runs.name, None)):
        monkeypatch.chdir(here)
        record.write_text(json.dumps(old))
        notes = tracking.log_eval("auto", doc, tmp_path, model, [])
        new = "" if run_id else ", a new one"
        using = (
            f"which is not recorded; using {store / 'mlflow' / 'mlflow.db'} (from the current folder{new})"
        )
        assert [note for note in notes if "names the store" in note] == [said + using]
        now = json.loads(record.read_text())
        assert now["tracking_uri"] == f"sqlite:///{(store / 'mlflow' / 'mlflow.db').as_posix()}"
        assert (now["run_id"] == trained.run_id) == (run_id is not None)


def test_a_tracker_that_cannot_start_is_a_one_line_error() -> None:
    from officescore.errors import ConfigError
    from officescore.train.tracking import _open

    def make() -> None:
        raise RuntimeError("(sqlite3.OperationalError) table x already exists\n[SQL: CREATE TABLE x (\n)]")

    with pytest.raises(ConfigError) as info:
        _open("mlflow", "mlflow", [], make)
    assert len(str(info.value).splitlines()) == 1 and "table x already exists" in str(info.value)


def test_log_setting_from_officescore_toml_and_defaults_match_the_library(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`[train] log = ...` reaches the run (a bad value is refused by name); the CLI's defaults for
    train are TrainConfig's."""
    import inspect

    from officescore.cli.train import train as command

    parameters = inspect.signature(command).parameters
    cli = {name: p.default.default for name, p in parameters.items() if name != "ctx"}
    library = TrainConfig().to_json()
    shared = {name for name in cli if name in library}
    assert {"log", "epochs", "arch", "lr", "project", "data"} <= shared
    assert {name: cli[name] for name in shared} == {name: getattr(TrainConfig(), name) for name in shared}

    (tmp_path / "officescore.toml").write_text('[train]\nlog = "wandb"\n')
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--data", str(data), "--device", "cpu"])
    assert exit_info.value.code == 2
    assert "--log 'wandb': choose one of auto, tensorboard, mlflow, none" in capsys.readouterr().err


class _Crash(Reporter):
    """Raises RuntimeError after the first batch of epoch 2: a crash that saves nothing (like kill -9)."""

    @staticmethod
    def _stage(description: str) -> Stage:
        class _Batch(Stage):
            def advance(self, n: int = 1, status: str = "") -> None:
                if description.startswith("epoch 2/"):
                    raise RuntimeError("crash")

        return _Batch()

    def stage(self, description: str, total: int | None = None) -> Any:
        from contextlib import nullcontext

        return nullcontext(self._stage(description))


@pytest.mark.slow
def test_resume_continues_the_same_tensorboard_and_mlflow_run(
    data: Path, runs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--log auto with MLFLOW_TRACKING_URI set logs to both. A crash in epoch 2 after step 3 leaves
    last.pt at epoch 1; resuming continues the same MLflow run (now FINISHED) and TensorBoard hides the
    crashed run's step 3, so each step shows once."""
    from mlflow.tracking import MlflowClient

    uri = _store_uri(runs)  # as a server would be: not beside this test's run folders
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "offices-a")
    config = small_config(data, tmp_path / "runs", max_train_images=4, log="auto")
    with pytest.raises(RuntimeError, match="crash"):
        train(config, reporter=_Crash())
    run_dir = tmp_path / "runs" / "train"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("offices-a")
    assert experiment is not None
    (crashed,) = client.search_runs([experiment.experiment_id])
    assert crashed.info.status == "FAILED"
    first = {m.step: m.value for m in client.get_metric_history(crashed.info.run_id, "train/loss")}
    assert sorted(first) == [1, 2, 3]

    resumed = train(TrainConfig(resume=run_dir / "weights" / "last.pt", device="cpu", workers=0))
    assert resumed.epochs_completed == 2
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_id == crashed.info.run_id and run.info.status == "FINISHED"
    history = client.get_metric_history(run.info.run_id, "train/loss")
    assert sorted({m.step for m in history}) == [1, 2, 3, 4]
    assert all(m.value == first[m.step] for m in history if m.step in first)  # exact resume
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val/segm_map")] == [1, 2]

    events = _events(run_dir)
    assert [step for step, _ in _scalars(events, "train/loss")] == [1, 2, 3, 4]
    assert [step for step, _ in _scalars(events, "val/segm_map")] == [1, 2]
    # The run's settings once: a resume (same settings, from its checkpoint) wrote them a second time.
    (text,) = events.Tensors("args/text_summary")
    assert text.step == 0 and '"arch": "maskrcnn_resnet18_fpn"' in text.tensor_proto.string_val[0].decode()
    rows = _csv_rows(run_dir)
    assert [v for _, v in _scalars(events, "epoch/loss")] == pytest.approx([float(r["loss"]) for r in rows])


class _Recorder:
    name = "recorder"

    def __init__(self, fail_on: str = "") -> None:
        self.fail_on = fail_on
        self.calls: list[tuple[str, Any]] = []

    def _record(self, method: str, *args: Any) -> None:
        self.calls.append((method, args))
        if method == self.fail_on:
            raise ConnectionError("server went away")

    def start(self, args: dict[str, Any]) -> None:
        self._record("start", args)

    def step(self, step: int, values: dict[str, float]) -> None:
        self._record("step", step)

    def epoch(self, row: dict[str, Any]) -> None:
        self._record("epoch", row["epoch"])

    def end(self, artefacts: Any, status: str) -> None:
        self.artefacts = [Path(p).name for p in artefacts]
        self._record("end", status)

    def describe(self) -> str:
        return "recorder"


def test_a_failing_tracker_is_switched_off_and_the_others_go_on(tmp_path: Path) -> None:
    notes: list[str] = []
    warned: list[str] = []
    good, bad = _Recorder(), _Recorder(fail_on="step")
    trackers = Trackers([bad, good], notes=notes, warn=warned.append)
    trackers.start({"lr": 0.01})
    trackers.step(1, {"train/loss": 1.0})
    trackers.step(2, {"train/loss": 0.9})
    trackers.epoch({"epoch": 1})
    (tmp_path / "best.pt").write_bytes(b"x")
    trackers.end([tmp_path / "best.pt", tmp_path / "missing.png"], "finished")
    assert [c[0] for c in good.calls] == ["start", "step", "step", "epoch", "end"]
    assert good.artefacts == ["best.pt"]  # a plot never written is not handed on as an artefact
    assert bad.calls == [("start", ({"lr": 0.01},)), ("step", (1,)), ("end", ("failed",))]
    assert notes == warned == ["recorder: stopped logging after an error in step(): server went away"]


def test_mlflow_sends_step_metrics_in_batches_and_after_a_while(
    runs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Per-step metrics wait in memory (one request per batch, not per step) but never for long: once
    _FLUSH_SECONDS have passed, the next step sends them, so a slow run still shows up live."""
    from mlflow.tracking import MlflowClient

    from officescore.train import tracking

    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "batching")
    run_dir = runs / "batching" / "train"
    run_dir.mkdir(parents=True)
    tracker = tracking.MLflowTracker(run_dir, tracking.local_mlflow_uri(run_dir.parent))
    client = MlflowClient(tracking_uri=tracker.tracking_uri)
    tracker.start({"lr": 0.01})
    tracker.step(1, {"train/loss": 2.0})
    assert client.get_metric_history(tracker.run_id, "train/loss") == []  # batched, not sent yet
    monkeypatch.setattr(tracking, "_FLUSH_SECONDS", 0.0)
    tracker.step(2, {"train/loss": 1.5})
    sent = client.get_metric_history(tracker.run_id, "train/loss")
    assert sorted((m.step, m.value) for m in sent) == [(1, 2.0), (2, 1.5)]
    tracker.end([], "interrupted")
    assert client.get_run(tracker.run_id).info.status == "KILLED"


def test_the_loop_calls_the_trackers_at_its_fixed_points(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The contract any tracker (and the label backend's retraining) relies on: start with args.json,
    each step in order, each epoch's row, end with the artefacts; Ctrl-C ends it "interrupted"."""
    import officescore.train.loop as loop

    recorders: list[_Recorder] = []
    real_open = loop.open_trackers

    def open_recorder(*args: Any, **kwargs: Any) -> Trackers:
        trackers = real_open(*args, **kwargs)
        recorders.append(_Recorder())
        trackers.trackers = [recorders[-1]]
        return trackers

    monkeypatch.setattr(loop, "open_trackers", open_recorder)
    result = train(small_config(data, tmp_path / "runs", epochs=1, max_train_images=4, log="none"))
    calls = recorders[0].calls
    args = json.loads((result.run_dir / "args.json").read_text())
    shown = {k: v for k, v in args.items() if k != "officescore_version"}  # paths whole, not from the run
    shown.update(data=str(data.resolve()), project=str((tmp_path / "runs").resolve()))
    assert calls[0] == ("start", (shown,))
    assert calls[1:] == [("step", (1,)), ("step", (2,)), ("epoch", (1,)), ("end", ("finished",))]
    expected = ["best.pt", "losses.png", "map.png", "lr.png", "metrics.csv", "args.json"]
    assert recorders[0].artefacts == expected

    class _CtrlC(Reporter):
        def stage(self, description: str, total: int | None = None) -> Any:
            from contextlib import nullcontext

            class _Batch(Stage):
                def advance(self, n: int = 1, status: str = "") -> None:
                    raise KeyboardInterrupt

            return nullcontext(_Batch())

    with pytest.raises(KeyboardInterrupt):
        train(small_config(data, tmp_path / "runs", epochs=1, max_train_images=4, log="none"), _CtrlC())
    assert [c[0] for c in recorders[1].calls] == ["start", "step", "end"]
    assert recorders[1].calls[-1] == ("end", ("interrupted",)) and recorders[1].artefacts == []


def test_tensorboard_names_and_steps_read_back_and_a_stopped_run_is_not_finished(tmp_path: Path) -> None:
    """Without training: one step and one epoch logged by hand (values exact in float32), read back
    with TensorBoard's reader.
    The CSV's `epoch` column is the step, never a scalar; an epoch not validated logs no val/;
    nested settings are dotted hyper-parameters; a run stopped by Ctrl-C has no "finished" mark."""
    from tensorboard.plugins.hparams import metadata

    from officescore.train.tracking import TensorBoardTracker, step_values

    tracker = TensorBoardTracker(tmp_path / "run", tmp_path)
    tracker.start({"lr": 0.01, "model_kwargs": {"min_size": 64}})
    tracker.step(3, step_values({"loss_mask": 0.5}, lr=0.125, img_per_s=2.0))
    row = {"epoch": 2, "loss": 1.5, "loss_attributes": None, "lr": 0.0625, "seconds": 4.0, "segm_map": None}
    tracker.epoch(row)
    tracker.end([], "interrupted")
    events = _events(tmp_path / "run")
    logged = {tag: _scalars(events, tag) for tag in events.Tags()["scalars"]}
    assert logged == {
        "train/loss_mask": [(3, 0.5)],
        "train/lr": [(3, 0.125)],
        "train/img_per_s": [(3, 2.0)],
        "epoch/loss": [(2, 1.5)],
        "epoch/lr": [(2, 0.0625)],
        "epoch/seconds": [(2, 4.0)],
    }
    content = events.PluginTagToContent(metadata.PLUGIN_NAME)
    start = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
    assert start.hparams["model_kwargs.min_size"].number_value == 64
    assert metadata.SESSION_END_INFO_TAG not in content  # interrupted: not marked finished


def test_only_rank_0_logs(tmp_path: Path) -> None:
    """Under DDP the other ranks get no tracker: one event file per run, not one per process."""
    from officescore.train.tracking import open_trackers

    trackers = open_trackers(
        "tensorboard", tmp_path / "run", tmp_path, is_main=False, resuming=False, steps_done=0
    )
    assert not trackers and not (tmp_path / "run").exists()


def test_a_tracking_server_that_answers_health_with_an_error_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy that wants a login for /health (401) answered: MLflow's client takes over. Only a
    server that does not answer at all is refused before training."""
    from fakeservers import FakeServer, Reply

    from officescore.train.tracking import _unreachable

    class LoginProxy(FakeServer):
        def route(self, method: str, path: str, query: dict, body: bytes, headers: dict) -> Reply:
            return Reply(401, b"log in first")

    server = LoginProxy().start()
    try:
        assert _unreachable(server.url) is None
    finally:
        server.stop()
    dead = _dead_server()
    assert (_unreachable(dead) or "").startswith(f"{dead} does not answer")
    assert _unreachable("sqlite:///somewhere.db") is None  # a local store: nothing to ask


def test_mlflow_keeps_every_param_and_metric_past_its_batch_limits_and_resumes_running(
    runs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """150 params (MLflow takes 100 a request) and 100 steps of 7 metrics (sent 500 at a time, the
    first batch cut in the middle of a step) all arrive; an epoch's metrics are sent at the epoch;
    resuming continues the run, RUNNING again until it ends."""
    from mlflow.tracking import MlflowClient

    from officescore.train import tracking

    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "limits")
    run_dir = runs / "limits" / "train"
    run_dir.mkdir(parents=True)
    tracker = tracking.MLflowTracker(run_dir, tracking.local_mlflow_uri(run_dir.parent))
    client = MlflowClient(tracking_uri=tracker.tracking_uri)
    params = {f"p{i:03d}": i for i in range(150)}
    tracker.start(params)
    assert client.get_run(tracker.run_id).data.params == {k: str(v) for k, v in params.items()}
    names = [f"train/part{n}" for n in range(7)]
    for step in range(1, 101):
        tracker.step(step, {name: float(step) for name in names})
    tracker.epoch({"epoch": 1, "loss": 0.75})
    assert [(m.step, m.value) for m in client.get_metric_history(tracker.run_id, "epoch/loss")] == [(1, 0.75)]
    tracker.end([], "failed")
    for name in names:
        history = sorted((m.step, m.value) for m in client.get_metric_history(tracker.run_id, name))
        assert history == [(step, float(step)) for step in range(1, 101)], name
    resumed = tracking.MLflowTracker(run_dir, tracker.tracking_uri, resuming=True)
    assert resumed.run_id == tracker.run_id
    assert client.get_run(tracker.run_id).info.status == "RUNNING"
    resumed.end([], "finished")
    assert client.get_run(tracker.run_id).info.status == "FINISHED"


def test_args_become_flat_params_named_by_their_whole_path() -> None:
    """An attribute-head run's model_kwargs nest three deep: every level stays in the name (else
    `attributes.desk.colour` would look like a top-level setting), lists are JSON, None and paths text."""
    from officescore.train.tracking import flat_params

    args = {
        "lr": 0.01,
        "resume": None,
        "data": Path("data/offices"),
        "classes": ["desk", "chair"],
        "model_kwargs": {"min_size": 64, "attributes": {"desk": {"colour": ["oak", "white"]}, "chair": {}}},
    }
    assert flat_params(args) == {
        "lr": 0.01,
        "resume": "None",
        "data": "data/offices",
        "classes": '["desk", "chair"]',
        "model_kwargs.min_size": 64,
        "model_kwargs.attributes.desk.colour": '["oak", "white"]',
    }


def test_two_projects_runs_of_one_name_are_told_apart_in_mlflow(
    runs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two working folders' runs/train/exp1 logging to one store and experiment: each MLflow run is
    named by its folder's path from three folders up, so they no longer show as two `exp1`; a resume
    continues the same MLflow run under its name."""
    from officescore.train import tracking

    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "two-projects")
    uri = tracking.local_mlflow_uri(runs / "train")  # the shared store
    trackers = []
    for project in ("officeA", "officeB"):
        run_dir = runs / project / "runs" / "train" / "exp1"
        run_dir.mkdir(parents=True)
        trackers.append(tracking.MLflowTracker(run_dir, uri))
        trackers[-1].end([], "finished")
    client = trackers[0].client
    names = [client.get_run(t.run_id).info.run_name for t in trackers]
    assert names == ["officeA/runs/train/exp1", "officeB/runs/train/exp1"]
    resumed = tracking.MLflowTracker(runs / "officeB" / "runs" / "train" / "exp1", uri, resuming=True)
    resumed.end([], "finished")
    assert resumed.run_id == trackers[1].run_id
    assert client.get_run(resumed.run_id).info.run_name == "officeB/runs/train/exp1"


def _eval(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[dict[str, Any], list[str]]:
    """`officescore eval ... --json`: the metrics document and the notes it printed on stderr."""
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", *args, "--device", "cpu", "--json"])
    captured = capsys.readouterr()
    assert exit_info.value.code == 0, captured.err
    return json.loads(captured.out), captured.err.splitlines()


def _expected_eval_scalars(doc: dict[str, Any], label: str) -> dict[str, float]:
    """What eval --log must log of a metrics document, spelled out here (not by the code under test)."""
    expected = {}
    for kind in ("bbox", "segm"):
        for key in (
            "map",
            "ap50",
            "ap75",
            "ap_small",
            "ar1",
            "ar100",
            "precision",
            "recall",
            "f1",
            "tp",
            "fp",
        ):
            if doc[kind][key] is not None:
                expected[f"eval/{label}/{kind}_{key}"] = float(doc[kind][key])
        for name, row in doc[kind]["per_class"].items():
            if row["ap"] is not None:
                expected[f"eval/{label}/{kind}_ap/{name}"] = float(row["ap"])
        for iou, value in doc[kind]["ap_at_iou"].items():
            expected[f"eval/{label}/{kind}_ap_iou{iou}"] = float(value)
        for iou, value in doc[kind]["ar_at_iou"].items():  # recall at each --iou too
            expected[f"eval/{label}/{kind}_ar_iou{iou}"] = float(value)
    return expected


def _trained_run(data: Path, run_dir: Path) -> Path:
    """A run folder as `train` leaves it after one epoch, without training: weights/best.pt (an
    untrained ResNet18-FPN at 64 px, epoch 1) and args.json naming the data set (its settings, in the
    checkpoint too, a few of train's; paths relative to the run folder)."""
    import os

    from officescore.model import build_model, save_checkpoint

    classes = json.loads((data / "dataset.json").read_text())["classes"]
    options = {**FAST_MODEL, "min_size": 64, "max_size": 64}
    model = build_model("maskrcnn_resnet18_fpn", classes, weights="none", **options)
    (run_dir / "weights").mkdir(parents=True)
    args = {"data": os.path.relpath(data, run_dir), "arch": "maskrcnn_resnet18_fpn", "epochs": 1}
    args.update(img_size=64, model_kwargs=options, project="..", resume=None, classes=classes)
    save_checkpoint(
        run_dir / "weights" / "best.pt",
        model=model.state_dict(),
        arch="maskrcnn_resnet18_fpn",
        classes=classes,
        model_kwargs=options,
        epoch=1,
        args=args,
    )
    (run_dir / "args.json").write_text(json.dumps(args))
    return run_dir


def test_eval_adds_its_numbers_to_the_training_run_of_its_model(
    data: Path,
    runs: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`eval --model RUN` (--log auto): the run's event files get eval/<data set>/<split>/* at the
    checkpoint's epoch, and the MLflow run its mlflow_run.json names (found without
    MLFLOW_TRACKING_URI) gets the same numbers, tags saying what was evaluated and metrics.json and
    the plots; its status and end time stay. Another data set has names of its own; the same one
    again says that MLflow now shows the newer numbers."""
    from mlflow.tracking import MlflowClient

    from officescore.train.tracking import MLflowTracker

    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "evals")
    run_dir = _trained_run(data, tmp_path / "runs" / "train" / "train")
    finished = MLflowTracker(run_dir, _store_uri(runs))  # as `train --log mlflow` leaves it
    finished.end([], "finished")
    run_id = finished.run_id
    client = MlflowClient(tracking_uri=_store_uri(runs))
    trained = client.get_run(run_id).info
    other = tmp_path / "other"  # another data set: a copy of the first
    shutil.copytree(data, other)

    evals = tmp_path / "runs" / "eval"
    docs = {}
    for name, data_set in (("dataset", data), ("other", other)):
        docs[name], notes = _eval(
            ["--model", str(run_dir), "--data", str(data_set), "--project", str(evals)], capsys
        )
        assert f"eval: logged as eval/{name}/val/* at step 1 (the checkpoint's epoch) in {run_dir}" in notes
        assert any(note.startswith(f"mlflow: run {run_id}") for note in notes)  # without MLFLOW_TRACKING_URI
    events = _events(run_dir)
    run = client.get_run(run_id)
    assert (run.info.status, run.info.end_time) == (trained.status, trained.end_time)
    assert len(client.search_runs([run.info.experiment_id])) == 1  # no run of its own
    for name, doc in docs.items():
        label = f"{name}/val"
        expected = _expected_eval_scalars(doc, label)
        assert f"eval/{label}/segm_map" in expected and f"eval/{label}/segm_ap/desk" in expected
        for tag, value in expected.items():
            assert _scalars(events, tag) == [(1, pytest.approx(value, rel=1e-6))], tag
            history = client.get_metric_history(run_id, tag)
            assert [(m.step, m.value) for m in history] == [(1, pytest.approx(value, rel=1e-9))], tag
        assert f"eval/{label}/segm_ap_large" not in run.data.metrics  # null: no large objects
        (text,) = events.Tensors(f"eval/{label}/text_summary")  # what TensorBoard says was measured
        assert (
            text.step == 1 and f"gt: `{doc['evaluated']['gt']}`" in text.tensor_proto.string_val[0].decode()
        )
        tags = run.data.tags
        assert tags[f"eval/{label}/split"] == "val" and tags[f"eval/{label}/gt"] == doc["evaluated"]["gt"]
        eval_dir = Path(tags[f"eval/{label}/eval_dir"])
        folder = f"eval/{label}/{eval_dir.name}"
        listed = {a.path for a in client.list_artifacts(run_id, folder)}
        assert listed == {
            f"{folder}/{file}" for file in ("metrics.json", "pr_curves.png", "confusion_matrix.png")
        }
        copy = client.download_artifacts(run_id, f"{folder}/metrics.json", str(tmp_path / name))
        assert (
            json.loads(Path(copy).read_text()) == doc == json.loads((eval_dir / "metrics.json").read_text())
        )

    _, notes = _eval(["--model", str(run_dir), "--project", str(evals)], capsys)  # its own data set again
    for tracker in ("tensorboard", "mlflow"):  # one line each, alike
        said = f"{tracker}: eval/dataset/val at step 1 was logged before (from {evals / 'eval'}); its "
        assert sum(note.startswith(said) for note in notes) == 1, notes
    assert len(client.get_metric_history(run_id, "eval/dataset/val/segm_map")) == 2  # both kept
    assert len(_scalars(_events(run_dir), "eval/dataset/val/segm_map")) == 2
    assert client.get_run(run_id).data.tags["eval/dataset/val/eval_dir"] == str(evals / "eval3")
    # the first evaluation's files are kept beside the new one's
    assert {a.path for a in client.list_artifacts(run_id, "eval/dataset/val")} == {
        "eval/dataset/val/eval",
        "eval/dataset/val/eval3",
    }


def test_an_evaluation_of_a_run_without_an_mlflow_run_starts_a_finished_one(
    runs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`eval --log mlflow` of a run trained without MLflow: a new MLflow run for the run folder,
    marked finished at once, which mlflow_run.json names for the next evaluation (or a --resume)."""
    from officescore.train.tracking import MLflowTracker

    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "late")
    run_dir = runs / "late" / "train"
    run_dir.mkdir(parents=True)
    first = MLflowTracker(run_dir, _store_uri(runs), adding=True)
    first.end([], "finished")
    assert first.client.get_run(first.run_id).info.status == "FINISHED"
    assert json.loads((run_dir / "mlflow_run.json").read_text())["run_id"] == first.run_id
    assert MLflowTracker(run_dir, _store_uri(runs), adding=True).run_id == first.run_id


def test_eval_gives_a_run_trained_without_mlflow_the_settings_it_trained_with(
    data: Path,
    runs: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`eval --log mlflow` of a run trained without MLflow: the MLflow run it starts gets the
    checkpoint's training settings as params, as `train` logs them (paths whole, nested options
    dotted, lists as JSON, None as 'None'); a later evaluation leaves them as they are."""
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", _store_uri(runs))
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "params")
    run_dir = _trained_run(data, tmp_path / "runs" / "train" / "exp1")
    evals = tmp_path / "runs" / "eval"
    for _ in range(2):
        _eval(["--model", str(run_dir), "--log", "mlflow", "--project", str(evals)], capsys)
    run = MlflowClient(_store_uri(runs)).get_run(
        json.loads((run_dir / "mlflow_run.json").read_text())["run_id"]
    )
    classes = json.loads((data / "dataset.json").read_text())["classes"]
    assert run.data.params == {
        "data": str(data.resolve()),
        "project": str(run_dir.parent.resolve()),
        "resume": "None",
        "arch": "maskrcnn_resnet18_fpn",
        "epochs": "1",
        "img_size": "64",
        "classes": json.dumps(classes),
        "model_kwargs.min_size": "64",
        "model_kwargs.max_size": "64",
        **{f"model_kwargs.{key}": str(value) for key, value in FAST_MODEL.items()},
    }


def test_eval_of_a_checkpoint_outside_its_run_keeps_its_settings_paths_as_recorded(
    data: Path, runs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """best.pt copied out of its run folder: the eval folder is its MLflow run, and the checkpoint's
    paths (relative to a run folder no longer known) are logged as recorded, not read as relative
    to the eval folder (a whole path that names no data set)."""
    import shutil

    from mlflow.tracking import MlflowClient

    from officescore.train.tracking import log_eval

    monkeypatch.setenv("MLFLOW_TRACKING_URI", _store_uri(runs))
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "copied")
    run_dir = _trained_run(data, tmp_path / "runs" / "train" / "exp1")
    copied = tmp_path / "models" / "best.pt"
    copied.parent.mkdir()
    shutil.copy(run_dir / "weights" / "best.pt", copied)
    out_dir = tmp_path / "runs" / "eval" / "eval"
    out_dir.mkdir(parents=True)
    log_eval("mlflow", _eval_doc(data / "val.json"), out_dir, copied, [])
    run_id = json.loads((out_dir / "mlflow_run.json").read_text())["run_id"]
    params = MlflowClient(_store_uri(runs)).get_run(run_id).data.params
    assert (params["data"], params["project"]) == (os.path.relpath(data, run_dir), "..")


def _results(gt: dict[str, Any]) -> list[dict[str, Any]]:
    """Results of a model that finds most objects, some shifted: AP differs at each IoU."""
    results = []
    for n, ann in enumerate(gt["annotations"]):
        if n % 4 == 3:
            continue  # missed
        x, y, w, h = ann["bbox"]
        shift = (n % 3) * 0.2 * w  # some boxes off by a fifth or two of their width
        results.append(
            {"image_id": ann["image_id"], "category_id": ann["category_id"], "bbox": [x + shift, y, w, h],
             "segmentation": ann["segmentation"], "score": 0.3 + 0.6 * ((n * 7) % 11) / 10}
        )  # fmt: skip
    return results


def test_eval_of_results_from_no_run_is_a_run_of_its_own(
    data: Path,
    runs: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A results file (no model, no run folder): the eval's own folder is its run: event files there
    and a new, finished MLflow run named after it, each holding every number of metrics.json (at
    step 0: no checkpoint epoch)."""
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", _store_uri(runs))
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "results-files")
    predictions = tmp_path / "results.json"
    predictions.write_text(json.dumps(_results(json.loads((data / "val.json").read_text()))))
    project = tmp_path / "work" / "runs" / "eval"
    doc, notes = _eval(
        ["--predictions", str(predictions), "--data", str(data), "--iou", "0.3", "--project", str(project)],
        capsys,
    )
    out_dir = project / "eval"
    assert f"eval: logged as eval/dataset/val/* at step 0 (no checkpoint epoch) in {out_dir}" in notes
    expected = _expected_eval_scalars(doc, "dataset/val")
    assert {"eval/dataset/val/segm_ap_iou0.3", "eval/dataset/val/segm_ar_iou0.3"} <= set(expected)
    assert len(set(expected.values())) > 5  # numbers that differ: a name given another's value shows
    events = _events(out_dir)
    logged = {tag: _scalars(events, tag) for tag in events.Tags()["scalars"]}
    assert {tag: logged[tag] for tag in expected} == {
        tag: [(0, pytest.approx(v, rel=1e-6))] for tag, v in expected.items()
    }

    client = MlflowClient(tracking_uri=_store_uri(runs))
    experiment = client.get_experiment_by_name("results-files")
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "work/runs/eval/eval" and run.info.status == "FINISHED"
    assert json.loads((out_dir / "mlflow_run.json").read_text())["run_id"] == run.info.run_id
    assert set(run.data.metrics) == set(logged)  # the same names in both
    assert {tag: run.data.metrics[tag] for tag in expected} == pytest.approx(expected, rel=1e-9)
    assert run.data.tags["eval/dataset/val/predictions"] == str(predictions)


def test_eval_log_setting_and_its_errors(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`[eval] log` in officescore.toml reaches eval (none: nothing logged, the tracking module not
    imported; a bad value refused by name), and `--log tensorboard` without tensorboard is one line
    before anything is evaluated."""
    predictions = tmp_path / "results.json"
    predictions.write_text(json.dumps(_results(json.loads((data / "val.json").read_text()))))
    args = ["eval", "--predictions", str(predictions), "--data", str(data), "--device", "cpu"]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "officescore.toml").write_text('[eval]\nlog = "None"\n')  # any case, as train's --log
    with monkeypatch.context() as hidden:  # none: the tracking module (torch with it) is not even imported
        _hide(hidden, "officescore.train.tracking")
        with pytest.raises(SystemExit) as exit_info:
            main(args)
    assert exit_info.value.code == 0 and "eval: logged" not in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "runs" / "eval" / "eval").iterdir()) == [
        "confusion_matrix.png", "metrics.json", "pr_curves.png", "predictions.json"
    ]  # fmt: skip
    (tmp_path / "officescore.toml").write_text('[eval]\nlog = "wandb"\n')
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    assert "--log 'wandb': choose one of auto, tensorboard, mlflow, none" in capsys.readouterr().err
    (tmp_path / "officescore.toml").unlink()
    _hide(monkeypatch, "tensorboard")
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--log", "tensorboard", "--name", "refused"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert (
        exit_info.value.code == 2
        and len(lines) == 1
        and "--log tensorboard: tensorboard is not installed" in lines[0]
    )
    assert not (tmp_path / "runs" / "eval" / "refused").exists()
    # A store found unusable only when opened (a file that is not a database): the evaluation, done
    # by then, is kept and the one line says where
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'store.db'}")
    (tmp_path / "store.db").write_text("not a database")
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--log", "mlflow", "--name", "kept"])
    err = capsys.readouterr().err
    error = err.strip().splitlines()[-1]  # after eval's own progress line
    assert exit_info.value.code == 2 and "Traceback" not in err and err.count("error:") == 1
    assert error.startswith("error: --log mlflow: mlflow could not start")
    assert error.endswith(f"(the evaluation is in {Path('runs') / 'eval' / 'kept'})")
    assert (tmp_path / "runs" / "eval" / "kept" / "metrics.json").is_file()


def test_eval_values_are_every_number_of_the_metrics_document() -> None:
    """Each number the evaluator writes per type (its COCOeval stats and the matched counts) is
    logged, per class AP, AP at each --iou and each attribute's accuracy and macro F1; a null number
    and the settings (conf, match_iou) are not."""
    from officescore.evaluate.match import prf
    from officescore.evaluate.metrics import STAT_NAMES
    from officescore.train.tracking import eval_values

    bbox: dict[str, Any] = {name: 0.01 * n for n, name in enumerate(STAT_NAMES, start=1)}
    bbox.update(prf(3, 1, 2), ap_large=None, conf=0.5, match_iou=0.5)
    bbox.update(per_class={"desk": {"ap": 0.4, "ap50": 0.9}}, ap_at_iou={"0.3": 0.7}, ar_at_iou={"0.3": 0.8})
    attribute = {"n": 4, "accuracy": 0.75, "macro_f1": 0.6, "values": ["oak", "white"]}
    doc = {"bbox": bbox, "segm": None, "attributes": {"desk.colour": attribute}, "images": 3}
    settings = ("conf", "match_iou")
    numbers = {k: v for k, v in bbox.items() if isinstance(v, (int, float)) and k not in settings}
    expected = {f"eval/d/val/bbox_{k}": float(v) for k, v in numbers.items()}
    expected.update({"eval/d/val/bbox_ap/desk": 0.4, "eval/d/val/bbox_ap_iou0.3": 0.7})
    expected.update({"eval/d/val/bbox_ar_iou0.3": 0.8})
    expected.update({"eval/d/val/attributes/desk.colour_accuracy": 0.75})
    expected.update({"eval/d/val/attributes/desk.colour_macro_f1": 0.6})
    assert "bbox_fn" in " ".join(expected) and "bbox_ar10" in " ".join(expected)
    assert eval_values(doc, "d/val") == expected


def _eval_doc(gt: Path) -> dict[str, Any]:
    """A metrics document as eval writes it for a results file, reduced to what log_eval reads."""
    evaluated = {"model": None, "predictions": "results.json", "gt": str(gt), "split": "val"}
    return {"bbox": {"map": 0.5, "tp": 3}, "segm": None, "evaluated": evaluated}


def test_log_eval_says_logged_only_when_it_was_and_tags_what_was_measured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An evaluation's `about` holds what was measured (nothing for a null: a results file has no
    model) and the eval folder as an absolute path; a tracker failing on the way is a warning, and
    the note that says where the numbers went is then not given."""
    from officescore.train.tracking import TensorBoardTracker, log_eval

    monkeypatch.chdir(tmp_path)
    out_dir = Path("runs") / "eval" / "eval"
    out_dir.mkdir(parents=True)
    doc = _eval_doc(tmp_path / "data" / "val.json")
    seen: list[Any] = []
    monkeypatch.setattr(TensorBoardTracker, "evaluation", lambda self, ev: seen.append(ev))
    notes = log_eval("tensorboard", doc, out_dir, None, [])
    [ev] = seen
    assert ev.label == "data/val" and ev.values == {"eval/data/val/bbox_map": 0.5, "eval/data/val/bbox_tp": 3}
    assert ev.about == {
        "predictions": "results.json",
        "gt": str(tmp_path / "data" / "val.json"),
        "split": "val",
        "eval_dir": str(tmp_path / out_dir),
    }
    assert f"eval: logged as eval/data/val/* at step 0 (no checkpoint epoch) in {out_dir}" in notes

    def fail(self: Any, ev: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(TensorBoardTracker, "evaluation", fail)
    warned: list[str] = []
    notes = log_eval("tensorboard", doc, out_dir, None, [], warned.append)
    assert len(warned) == 1 and "disk full" in warned[0]
    assert not any(note.startswith("eval: logged") for note in notes)


def test_eval_mlflow_store_is_the_runs_own_else_a_local_one_beside_the_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--log mlflow` with no store named anywhere: runs/mlflow beside the eval project folder, as
    training's; a folder whose mlflow_run.json names a store keeps logging there, whatever
    MLFLOW_TRACKING_URI says, into the same MLflow run."""
    from officescore.train.tracking import log_eval

    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "stores")
    out_dir = tmp_path / "runs" / "eval" / "eval"
    out_dir.mkdir(parents=True)
    doc = _eval_doc(tmp_path / "data" / "val.json")
    log_eval("mlflow", doc, out_dir, None, [])
    first = json.loads((out_dir / "mlflow_run.json").read_text())
    assert first["tracking_uri"] == f"sqlite:///{(tmp_path / 'runs' / 'mlflow' / 'mlflow.db').as_posix()}"
    other = tmp_path / "other.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{other.as_posix()}")
    notes = log_eval("auto", doc, out_dir, None, [])
    assert json.loads((out_dir / "mlflow_run.json").read_text()) == first and not other.exists()
    # the same evaluation logged again: its values are in the history twice, and that is said
    assert any(
        note.startswith(f"mlflow: eval/data/val at step 0 was logged before (from {out_dir})")
        for note in notes
    )


def test_a_repeated_evaluation_is_said_alike_by_each_tracker_and_every_value_is_kept(
    runs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An evaluation logged at a step its names were logged at before (the same checkpoint on the
    same split) is one line per tracker, alike, naming the earlier eval folder where known; both
    values stay (TensorBoard's events, MLflow's history). Another checkpoint (another step) is no
    repeat, and MLflow names no earlier folder when its tag names the other checkpoint's."""
    from mlflow.tracking import MlflowClient

    from officescore.train import tracking

    monkeypatch.setenv("MLFLOW_TRACKING_URI", _store_uri(runs))
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "repeats")
    run_dir = tmp_path / "runs" / "train" / "exp1"
    (run_dir / "weights").mkdir(parents=True)
    (run_dir / "args.json").write_text("{}")
    monkeypatch.setattr(tracking, "checkpoint_epoch", lambda model: {"best.pt": 1, "last.pt": 2}[model.name])
    doc = _eval_doc(tmp_path / "data" / "val.json")
    said: dict[str, list[str]] = {}
    for n, checkpoint in enumerate(("best.pt", "last.pt", "best.pt", "best.pt")):
        out_dir = tmp_path / "runs" / "eval" / f"eval{n}"
        out_dir.mkdir(parents=True)
        doc["bbox"]["map"] = n / 10
        notes = tracking.log_eval("auto", doc, out_dir, run_dir / "weights" / checkpoint, [])
        said[out_dir.name] = [note for note in notes if "logged before" in note]
    step1 = "eval/data/val at step 1 was logged before"
    shown = {"tensorboard": "its event files keep both", "mlflow": "its metric history keeps both"}
    assert said["eval0"] == said["eval1"] == []
    assert said["eval2"] == [
        f"tensorboard: {step1} (from {tmp_path / 'runs' / 'eval' / 'eval0'}); {shown['tensorboard']}, "
        "its plot shows the newer (both: tensorboard --load_fast=false)",
        f"mlflow: {step1}; {shown['mlflow']}, the run shows the newer",  # its tag names eval1's folder
    ]
    assert [note.split("; ")[0] for note in said["eval3"]] == [
        f"{tracker}: {step1} (from {tmp_path / 'runs' / 'eval' / 'eval2'})" for tracker in shown
    ]
    kept = [(1, 0.0), (2, 0.1), (1, 0.2), (1, 0.3)]
    logged = sorted(_scalars(_events(run_dir), "eval/data/val/bbox_map"))  # in event-file name order
    assert logged == [(s, pytest.approx(v)) for s, v in sorted(kept)]
    run_id = json.loads((run_dir / "mlflow_run.json").read_text())["run_id"]
    history = MlflowClient(_store_uri(runs)).get_metric_history(run_id, "eval/data/val/bbox_map")
    assert sorted((m.step, m.value) for m in history) == sorted(kept)


def test_evaluations_from_eval_folders_of_one_name_keep_their_own_mlflow_artefacts(
    runs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two projects' runs/eval/eval (or one deleted and made again) evaluating one run: the second's
    files go to eval/<label>/eval2, numbered as train numbers run folders, never over the first's;
    the tag `eval/<label>/artifacts` says where each went."""
    from mlflow.tracking import MlflowClient

    from officescore.train.tracking import log_eval

    monkeypatch.setenv("MLFLOW_TRACKING_URI", _store_uri(runs))
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "same-names")
    run_dir = tmp_path / "runs" / "train" / "exp1"
    (run_dir / "weights").mkdir(parents=True)
    (run_dir / "args.json").write_text("{}")
    doc = _eval_doc(tmp_path / "data" / "val.json")
    client = MlflowClient(_store_uri(runs))
    for n, project in enumerate(("officeA", "officeB", "officeC"), start=1):
        out_dir = tmp_path / project / "runs" / "eval" / "eval"
        out_dir.mkdir(parents=True)
        (out_dir / "metrics.json").write_text(json.dumps({"n": n}))
        log_eval("mlflow", doc, out_dir, run_dir / "weights" / "best.pt", [out_dir / "metrics.json"])
        run_id = json.loads((run_dir / "mlflow_run.json").read_text())["run_id"]
        folder = f"eval/data/val/{'eval' if n == 1 else f'eval{n}'}"
        assert client.get_run(run_id).data.tags["eval/data/val/artifacts"] == folder
    for n, folder in enumerate(("eval", "eval2", "eval3"), start=1):
        copy = client.download_artifacts(
            run_id, f"eval/data/val/{folder}/metrics.json", str(tmp_path / folder)
        )
        assert json.loads(Path(copy).read_text()) == {"n": n}


def test_eval_logs_to_a_training_run_only_for_a_model_in_its_weights_folder(tmp_path: Path) -> None:
    """eval --log adds to a run only for `<run>/weights/*.pt` beside the run's args.json: a model
    copied to another folder of the run (or a run without args.json) is not that run's checkpoint."""
    from officescore.runs import training_run

    run = tmp_path / "exp1"
    (run / "weights").mkdir(parents=True)
    (run / "args.json").write_text("{}")
    assert training_run(run / "weights" / "best.pt") == run
    assert training_run(run / "copies" / "best.pt") is None
    (run / "args.json").unlink()
    assert training_run(run / "weights" / "best.pt") is None
