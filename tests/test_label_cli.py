"""The label commands before Label Studio answers: start-up without torch, local mistakes named
first, the server address from flag / LABEL_STUDIO_URL / officescore.toml, and output for pipes.
No server is needed: every address here is a closed port, and the error names the one tried."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from officescore.cli import main

REPO = Path(__file__).resolve().parent.parent

# Runs the CLI in a fresh interpreter and reports which heavy modules it imported on the way.
_PROBE = """
import json, sys
from officescore.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
heavy = sorted(m for m in ("torch", "torchvision", "label_studio_sdk", "cv2") if m in sys.modules)
with open(sys.argv[0] + ".json", "w") as handle:
    json.dump({"code": code, "modules": heavy}, handle)
"""


def closed_port() -> str:
    with socket.socket() as sock:  # a port nobody listens on: connecting fails at once
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err


def fresh_cli(args: list[str], tmp_path: Path, **env: str) -> tuple[int, list[str], str]:
    """(exit code, heavy modules imported, stderr) of `officescore ARGS` in a new interpreter."""
    probe = tmp_path / "probe.py"
    probe.write_text(_PROBE)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("LABEL_STUDIO_")}
    environment.update(env, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    environment["OFFICESCORE_CONFIG"] = os.devnull
    done = subprocess.run(
        [sys.executable, str(probe), *args],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = json.loads(Path(str(probe) + ".json").read_text())
    return int(report["code"] or 0), report["modules"], done.stderr


def test_push_help_and_a_bad_path_answer_without_torch(tmp_path: Path) -> None:
    for command in ("push", "pull", "backend"):
        code, modules, err = fresh_cli(["label", command, "--help"], tmp_path)
        assert code == 0 and modules == [], (command, modules, err)
    # A typo in the path: named at once, before Label Studio is asked (no key, no server needed)
    # and without loading torch, the SDK or OpenCV.
    code, modules, err = fresh_cli(
        ["label", "push", "nonexistent_dir", "--project", "offices"], tmp_path, LABEL_STUDIO_URL=closed_port()
    )
    assert code == 2 and "nonexistent_dir: no such image file" in err, err
    assert modules == [], modules


def test_backend_names_a_missing_checkpoint_before_contacting_label_studio(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OFFICESCORE_CONFIG", os.devnull)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "a-key")
    monkeypatch.setenv("LABEL_STUDIO_URL", closed_port())  # no Label Studio there
    code, out, err = run(["label", "backend", "--model", "nosuch.pt"], capsys)
    assert code == 2 and "--model nosuch.pt: no such model file" in err, err
    assert "not reachable" not in err and out == ""


@pytest.mark.slow
def test_label_studio_url_flag_then_environment_then_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from_flag, from_env, from_config = closed_port(), closed_port(), closed_port()
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OFFICESCORE_CONFIG", raising=False)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "a-key")
    (tmp_path / "officescore.toml").write_text(f'[label]\nurl = "{from_config}"\n')
    Image.new("RGB", (8, 6), "white").save(tmp_path / "photo.jpg")
    (tmp_path / "model.pt").write_bytes(b"not loaded: the server is asked first")

    def tried(args: list[str]) -> str:
        code, _, err = run(args, capsys)
        assert code == 2 and "Label Studio is not reachable at " in err, err
        return err.split("not reachable at ")[1].split()[0]

    commands = {
        "push": ["label", "push", "photo.jpg", "--project", "offices"],
        "pull": ["label", "pull", "--project", "offices", "--out", "export"],
        "backend": ["label", "backend", "--model", "model.pt"],
        "status": ["label", "status", "--project", "offices"],
    }
    for name, args in commands.items():
        monkeypatch.delenv("LABEL_STUDIO_URL", raising=False)
        assert tried(args) == from_config, name
        monkeypatch.setenv("LABEL_STUDIO_URL", from_env)
        assert tried(args) == from_env, name
        assert tried([*args, "--url", from_flag]) == from_flag, name


def test_status_without_model_versions_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A project no model has suggested labels in: one line saying so and how to start, not two
    empty tables; a backend that has run but trained nothing yet adds what it answers with."""
    from officescore.cli import label as label_cli
    from officescore.label import feedback

    document: dict[str, object] = {"project": "offices", "tasks": 12, "labelled_tasks": 3, "versions": []}
    monkeypatch.setattr(label_cli, "_client", lambda url: None)
    monkeypatch.setattr(feedback, "project_status", lambda client, title, folder: document)
    code, out, _ = run(["label", "status", "--project", "offices", "--backend-dir", "b"], capsys)
    assert code == 0
    assert out.splitlines() == [
        "offices: 3 of 12 task(s) labelled; no model has suggested labels here yet (none in b, no "
        "predictions in the project): start `officescore label backend --train`, or push with --model"
    ]
    document.update(pending_labels=3, model_version=None)
    code, out, _ = run(["label", "status", "--project", "offices", "--backend-dir", "b"], capsys)
    assert out.splitlines()[1] == "answering: no model yet; 3 label(s) since the last model"


def test_status_of_a_backend_training_its_first_job_says_so_and_names_failed_jobs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Walked live: while the backend's first job ran, `label status` told the labeller to start
    `label backend --train` (it ran), said nothing of the job, and a failed job was in --json only
    (a failure a later job got over is not news)."""
    from officescore.cli import label as label_cli
    from officescore.label import feedback

    document: dict[str, object] = {"project": "offices", "tasks": 20, "labelled_tasks": 3, "versions": []}
    document.update(pending_labels=3, model_version=None, running_job=2)
    document["failures"] = [
        {"job": 1, "error": "the backend stopped while the job ran; its labels stay counted"}
    ]
    monkeypatch.setattr(label_cli, "_client", lambda url: None)
    monkeypatch.setattr(feedback, "project_status", lambda client, title, folder: document)
    code, out, _ = run(["label", "status", "--project", "offices", "--backend-dir", "b"], capsys)
    assert code == 0 and out.splitlines() == [
        "offices: 3 of 20 task(s) labelled; no model has suggested labels here yet (the backend in b "
        "has trained none yet)",
        "answering: no model yet; 3 label(s) since the last model; job 2 is training",
        "1 job(s) failed since the last model; the last, job 1: the backend stopped while the job ran; "
        "its labels stay counted",
    ]
    document["versions"] = [{"model_version": "v2", "job": 2, "trained_photos": 3}]  # got over it
    code, out, _ = run(["label", "status", "--project", "offices", "--backend-dir", "b"], capsys)
    assert code == 0 and "failed" not in out
    # A task left out for its unreadable photo stays named after a later model got over the failure.
    document["left_out"] = {
        "17": "task 17: b.jpg from Label Studio is not a readable image (OSError)",
        "9": "task 9: a.jpg from Label Studio is not a readable image (OSError)",
    }
    code, out, _ = run(["label", "status", "--project", "offices", "--backend-dir", "b"], capsys)
    assert code == 0 and out.splitlines()[-3:] == [
        "2 labelled task(s) left out of training until labelled again:",
        "  task 9: a.jpg from Label Studio is not a readable image (OSError)",
        "  task 17: b.jpg from Label Studio is not a readable image (OSError)",
    ]


def test_pull_ingest_with_nothing_labelled_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`label pull --ingest` right after a push: the project is not labelled yet, which is what the
    error says (not ingest's "the export lists no images"); no data set is written."""
    from officescore.cli import label as label_cli
    from officescore.label import pull

    export = tmp_path / "export" / "annotations.json"
    pulled = pull.PullResult(export.parent, export, images=0, annotations=0, unlabelled=24, classes=["desk"])
    monkeypatch.setattr(label_cli, "_client", lambda url: None)
    monkeypatch.setattr(pull, "pull_project", lambda *args: pulled)
    dataset = tmp_path / "dataset"
    args = ["label", "pull", "--project", "offices", "--out", str(export.parent), "--ingest", str(dataset)]
    code, out, err = run(args, capsys)
    assert code == 2 and out == "", (out, err)
    assert err.strip() == (
        "error: nothing to ingest: no task of project 'offices' is labelled yet (24 not labelled; wrote "
        f"{export}); label some in Label Studio, then pull again"
    )
    assert not dataset.exists()


def test_status_tables_show_a_trained_versions_whole_name_in_80_columns(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A `--train` version's name (`label-jobNNNN-best-<sha8>`, 27 characters) is how a row is matched
    with Label Studio's model versions: cut to `label-job0001-best-3b8569…` it matched none."""
    from officescore.cli import label as label_cli
    from officescore.label import feedback

    version = "label-job0001-best-3b856984"
    row = {
        "model_version": version, "trained_photos": 5, "segm_map": 0.25, "bbox_map": 0.5, "suggest": None,
        "train_seconds": 9.2, "suggested": 123, "tasks": 100, "kept_share": 0.5, "added": 30,
        "mean_kept_iou": 0.8, "from_suggestions": 0.4, "predicted": 200, "kept": 100, "redrawn": 40,
        "reclassed": 20, "deleted": 40, "not_kept_by_class": {"desk": {"deleted": 40}},
    }  # fmt: skip
    worse = {**row, "model_version": "label-job0002-best-0a1b2c3d", "accepted": False}
    document = {"project": "offices", "tasks": 130, "labelled_tasks": 110, "versions": [row, worse]}
    monkeypatch.setattr(label_cli, "_client", lambda url: None)
    monkeypatch.setattr(feedback, "project_status", lambda client, title, folder: document)
    code, out, _ = run(["label", "status", "--project", "offices", "--backend-dir", "b"], capsys)
    assert code == 0
    rows = [
        [cell.strip() for cell in line.split("│")][1:-1] for line in out.splitlines() if "│ label-job" in line
    ]
    names = [cells[0] for cells in rows]  # the third table may cut them: it has no room
    assert names[:4] == [version, "label-job0002-best-0a1b2c3d"] * 2, out  # "(worse, unused)" below
    assert rows[0][4] == "-" and rows[2][1] == "100/123", out  # no threshold of its own; tasks
    assert all(len(line) <= 80 for line in out.splitlines()), out


_PIPED = """
from rich.table import Table
from officescore.cli.common import console, err_console
console.print("[green]pushed[/green] 3 photo(s) to existing project 'offices' (id 7): " + "word " * 30)
err_console.print("error: " + "long " * 40)
table = Table("class", "note")
table.add_row("desk", "wide " * 30)
console.print(table)
"""


def test_piped_status_lines_are_not_hard_wrapped(tmp_path: Path) -> None:
    environment = {**os.environ, "COLUMNS": "60", "PYTHONPATH": str(REPO)}
    environment.pop("FORCE_COLOR", None)
    done = subprocess.run(
        [sys.executable, "-c", _PIPED], env=environment, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    assert out[0].startswith("pushed 3 photo(s)") and out[0].count("word") == 30  # one line, not three
    assert done.stderr.strip().count("\n") == 0 and len(done.stderr.strip()) > 200
    assert all(len(line) <= 60 for line in out[1:]) and len(out) > 5  # a table still fits $COLUMNS


def test_a_stop_signal_is_kept_even_where_python_drops_exceptions() -> None:
    """`label backend` serves until Ctrl-C. A KeyboardInterrupt raised inside a `__del__` (or a weakref
    callback) is dropped by Python, and a backend in CI ran on after SIGINT; the flag is not lost."""
    import signal

    from officescore.cli.common import stop_signals

    class DroppedMidSignal:
        def __del__(self) -> None:
            signal.raise_signal(signal.SIGINT)

    before = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    with stop_signals() as stop:
        DroppedMidSignal()  # deleted at once: the handler runs inside __del__
        assert stop.is_set()
        stop.clear()
        signal.raise_signal(signal.SIGTERM)
        assert stop.wait(5)
    assert {number: signal.getsignal(number) for number in before} == before


@pytest.mark.parametrize(("flags", "shown"), [([], "0.30"), (["--conf", "0.55"], "0.55")])
def test_backend_says_the_threshold_it_suggests_at_and_stops_on_ctrl_c(
    tmp_path: Path, flags: list[str], shown: str
) -> None:
    """Without --train or --conf a model suggests at 0.3; Ctrl-C stops the backend cleanly (exit 0)."""
    import signal

    from labelmodels import solid_checkpoint

    checkpoint = solid_checkpoint(tmp_path / "model.pt")
    environment = {k: v for k, v in os.environ.items() if not k.startswith("LABEL_STUDIO_")}
    environment.update(PYTHONPATH=str(REPO), OFFICESCORE_CONFIG=os.devnull)
    command = [sys.executable, "-m", "officescore", "label", "backend", "--model", str(checkpoint)]
    child = subprocess.Popen(
        [*command, "--port", "0", "--device", "cpu", "--precision", "fp32", *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=environment,
        text=True,
    )
    try:
        banner = child.stdout.readline()  # printed once the server answers
    finally:
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=60)
    assert banner.startswith("ML backend for ") and f"(suggests scores >= {shown})" in banner, banner + err
    assert child.returncode == 0 and out.rstrip().endswith("stopped"), out + err


def test_backend_refuses_a_threshold_outside_0_1(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["label", "backend", "--model", "model.pt", "--conf", "1.5"], capsys)
    assert code == 2 and err.strip() == "error: --conf 1.5: must be between 0 and 1", err


def test_push_takes_a_threshold_of_0_and_refuses_one_above_1(capsys: pytest.CaptureFixture[str]) -> None:
    """--conf 0 (every detection suggested) passes the check; the next mistake is what is said."""
    code, _, err = run(["label", "push", "--project", "offices", "--conf", "0"], capsys)
    assert code == 2 and "nothing to push" in err and "--conf" not in err, err
    code, _, err = run(["label", "push", "--project", "offices", "--conf", "1.5"], capsys)
    assert code == 2 and err.strip() == "error: --conf 1.5: must be between 0 and 1", err


def test_push_refuses_review_with_a_model_or_photos(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    review = tmp_path / "review.json"
    review.write_text("[]")
    expected = "error: --review pushes a tasks file as it is: leave out IMAGES and --model"
    for extra in (["--model", "best.pt"], [str(tmp_path)]):
        code, _, err = run(["label", "push", "--project", "offices", "--review", str(review), *extra], capsys)
        assert code == 2 and err.strip() == expected, err


def test_status_threshold_and_most_not_kept_cells() -> None:
    from officescore.cli.label import _most_not_kept, _threshold

    assert _threshold({"conf": 0.42, "by_mask": True}) == "0.42"
    assert _threshold({"conf": 0.3}) == "0.30 (class)"  # from before mask scores: the class score alone
    assert _threshold({}) == "-"
    by_class = {"desk": {"deleted": 4}, "chair": {"redrawn": 10, "deleted": 2}, "mug": {"deleted": 4}}
    assert _most_not_kept(by_class) == "chair 12, desk 4"  # most first; ties by name
    assert _most_not_kept({}) == "-"


@pytest.mark.parametrize("accepted", [None, True, False])
def test_status_marks_only_a_version_its_job_rejected_and_counts_what_was_not_kept(
    accepted: bool | None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from officescore.cli import label as label_cli
    from officescore.label import feedback

    row = {"model_version": "v1", "predicted": 30, "kept": 12, "redrawn": 5, "reclassed": 6, "deleted": 7}
    if accepted is not None:
        row["accepted"] = accepted
    document = {"project": "offices", "tasks": 10, "labelled_tasks": 5, "versions": [row]}
    monkeypatch.setattr(label_cli, "_client", lambda url: None)
    monkeypatch.setattr(feedback, "project_status", lambda client, title, folder: document)
    code, out, _ = run(["label", "status", "--project", "offices"], capsys)
    assert code == 0 and ("worse, unused" in out) == (accepted is False), out
    unkept = out[out.index("suggestions not kept") :]
    cells = next([c.strip() for c in line.split("│")][1:-1] for line in unkept.splitlines() if "│ v1" in line)
    assert cells[1:5] == ["18", "5", "6", "7"], out  # 30 suggested - 12 kept


def test_pull_ingest_of_a_project_asking_no_questions_records_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A project whose config asks no attribute questions (made in Label Studio by hand, or before
    attributes): `label pull --ingest` gave its data set the package's default questions, so `stats`
    counted chairs' armrests as unlabelled in a project that never asked about them."""
    from officescore.attributes import AttributeSchema
    from officescore.cli import label as label_cli
    from officescore.label import pull
    from officescore.sample import write_sample

    write_sample(tmp_path / "export", n_images=4, seed=0, size=96)
    export = tmp_path / "export" / "annotations.json"
    coco = json.loads(export.read_text())
    for annotation in coco["annotations"]:
        annotation.pop("attributes", None)
    export.write_text(json.dumps(coco))
    pulled = pull.PullResult(
        export.parent, export, images=4, annotations=len(coco["annotations"]), unlabelled=0, classes=["chair"]
    )
    pulled.attributes = AttributeSchema()
    monkeypatch.setattr(label_cli, "_client", lambda url: None)
    monkeypatch.setattr(pull, "pull_project", lambda *args: pulled)
    dataset = tmp_path / "dataset"
    args = ["label", "pull", "--project", "offices", "--out", str(export.parent), "--ingest", str(dataset)]
    code, out, err = run(args, capsys)
    assert code == 0, (out, err)
    assert json.loads((dataset / "dataset.json").read_text())["attributes"] == {}
