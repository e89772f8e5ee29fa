"""Every flag of the thin commands (train, eval, export, score, scrape, serve) reaches the API it
drives, as given.

The API is replaced by a recorder, so nothing trains, predicts or exports: each case takes well
under a second. Values differ from every default, so a flag dropped on the way (the API's own
default taking its place) shows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from officescore.cli import main


class _Recorded:
    """What a replaced API function was called with; its result has an empty `to_dict()`."""

    def __init__(self) -> None:
        self.args: tuple[Any, ...] = ()
        self.kwargs: dict[str, Any] = {}

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.args, self.kwargs = args, kwargs
        return self

    def to_dict(self) -> dict[str, Any]:
        return {}


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code in (0, None), capsys.readouterr().err


def test_train_flags_reach_the_training_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import officescore.train

    recorded = _Recorded()
    monkeypatch.setattr(officescore.train, "train", recorded)
    argv = ["train", "--data", str(tmp_path / "d"), "--arch", "maskrcnn_resnet18_fpn", "--weights", "none"]
    argv += [
        "--epochs",
        "7",
        "--batch-size",
        "3",
        "--lr",
        "0.005",
        "--optimizer",
        "AdamW",
        "--img-size",
        "96",
    ]
    argv += ["--workers", "1", "--device", "cpu", "--amp", "--patience", "4", "--name", "mine"]
    argv += ["--project", str(tmp_path / "p"), "--seed", "9", "--val-every", "2", "--max-train-images", "5"]
    argv += ["--warmup-iters", "11", "--log", "None", "--no-attributes", "--json"]
    # comma-separated and repeated, dashes or underscores; ints stay ints, floats floats
    argv += [
        "--model-opt",
        "rpn-post-nms-top-n-train=100,box_score_thresh=0.25",
        "--model-opt",
        "min_size=64",
    ]
    _run(argv, capsys)
    config = recorded.args[0]
    expected = {
        "data": tmp_path / "d",
        "arch": "maskrcnn_resnet18_fpn",
        "weights": "none",
        "epochs": 7,
        "batch_size": 3,
        "lr": 0.005,
        "optimizer": "adamw",
        "img_size": 96,
        "workers": 1,
        "device": "cpu",
        "amp": True,
        "patience": 4,
        "name": "mine",
        "project": tmp_path / "p",
        "resume": None,
        "seed": 9,
        "val_every": 2,
        "max_train_images": 5,
        "warmup_iters": 11,
        "log": "none",
    }
    assert {key: getattr(config, key) for key in expected} == expected
    options = {"rpn_post_nms_top_n_train": 100, "box_score_thresh": 0.25, "min_size": 64, "attributes": {}}
    assert config.model_kwargs == options
    assert [type(config.model_kwargs[k]) for k in options] == [int, float, int, dict]


def test_eval_flags_reach_run_eval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import officescore.evaluate.run

    recorded = _Recorded()
    monkeypatch.setattr(officescore.evaluate.run, "run_eval", lambda **kwargs: recorded(**kwargs) and None)
    argv = ["eval", "--model", str(tmp_path / "m.pt"), "--data", str(tmp_path / "d"), "--split", "train"]
    argv += ["--iou", "0.3", "--iou", "0.6", "--conf", "0.4", "--batch-size", "5", "--workers", "3"]
    argv += ["--device", "cpu", "--precision", "bf16", "--name", "mine", "--project", str(tmp_path / "p")]
    argv += ["--predictions", str(tmp_path / "r.json"), "--gt", str(tmp_path / "g.json")]
    _run(argv, capsys)
    got = recorded.kwargs
    assert {k: v for k, v in got.items() if k not in ("reporter", "train_runs")} == {
        "model": tmp_path / "m.pt",
        "data": tmp_path / "d",
        "split": "train",
        "predictions": tmp_path / "r.json",
        "gt": tmp_path / "g.json",
        "iou_thresholds": [0.3, 0.6],
        "conf": 0.4,
        "batch_size": 5,
        "workers": 3,
        "device": "cpu",
        "precision": "bf16",
        "name": "mine",
        "project": tmp_path / "p",
    }


def test_eval_measures_in_fp32_unless_told(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """eval measures the model: its default is exact fp32, not the fastest precision (`auto`)."""
    import officescore.evaluate.run

    recorded = _Recorded()
    monkeypatch.setattr(officescore.evaluate.run, "run_eval", lambda **kwargs: recorded(**kwargs) and None)
    _run(["eval", "--model", str(tmp_path / "m.pt")], capsys)
    assert recorded.kwargs["precision"] == "fp32"


@pytest.mark.parametrize(
    ("given", "size"),
    [("96x160", (96, 160)), ("96X160", (96, 160)), ("96*160", (96, 160)), ("128", (128, 128))],
)
def test_export_flags_reach_export_model(
    given: str,
    size: tuple[int, int],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import officescore.export

    recorded = _Recorded()
    monkeypatch.setattr(officescore.export, "export_model", recorded)
    argv = [
        "export",
        "--model",
        str(tmp_path / "m.pt"),
        "--format",
        "onnx",
        "--out",
        str(tmp_path / "o.onnx"),
    ]
    argv += ["--sample", str(tmp_path / "s.jpg"), "--input-size", given, "--opset", "17", "--json"]
    _run(argv, capsys)
    assert recorded.args == (tmp_path / "m.pt", "onnx")
    got = {k: v for k, v in recorded.kwargs.items() if k != "reporter"}
    assert got == {"out": tmp_path / "o.onnx", "sample": tmp_path / "s.jpg", "input_size": size, "opset": 17}


@pytest.mark.parametrize("given", ["31x64", "64x31", "16", "64x64x64", "x64", "big"])
def test_export_refuses_input_sizes_it_cannot_use(given: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--model", "m.pt", "--format", "onnx", "--input-size", given])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and f"--input-size {given}: use HEIGHTxWIDTH" in err, err


class _Predictor:
    """Stands in for a loaded model: what the score command reads of one."""

    kind, precision, classes, attributes = "checkpoint", "fp32", ["desk", "monitor", "chair"], None


def test_score_flags_reach_the_predictor_and_the_scoring(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from officescore.infer import predictor as predictor_module

    photo = tmp_path / "office.jpg"
    photo.write_bytes(b"not read: the model is a stand-in")
    loaded, scored = _Recorded(), _Recorded()
    monkeypatch.setattr(predictor_module.Predictor, "load", lambda *a, **k: loaded(*a, **k) and _Predictor())
    monkeypatch.setattr(predictor_module, "score_photos", lambda *a, **k: scored(*a, **k) and [])
    monkeypatch.setattr("officescore.infer.score.unmatchable_rules", lambda *args: [])
    argv = ["score", str(photo), "--model", "coco", "--conf", "0.35", "--device", "cpu", "--batch-size", "3"]
    argv += ["--precision", "bf16", "--img-size", "96", "--save-dir", str(tmp_path / "drawn"), "--json"]
    _run([*argv, "--calibration", str(tmp_path / "calib")], capsys)
    assert loaded.args == ("coco", "cpu", 0.35, 96, "bf16")
    assert loaded.kwargs == {"calibration": [str(tmp_path / "calib")]}
    assert scored.args[1] == [photo]
    assert {k: scored.kwargs[k] for k in ("conf", "batch_size", "save_dir")} == {
        "conf": 0.35,
        "batch_size": 3,
        "save_dir": tmp_path / "drawn",
    }
    assert json.loads(capsys.readouterr().out)["conf"] == 0.35
    _run(argv, capsys)  # int8 calibrates on the photos being scored when no --calibration is given
    assert loaded.kwargs == {"calibration": [photo]}


def test_score_keeps_every_detection_at_conf_0(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--conf 0 and 1 are the ends of the range, not outside it."""
    from officescore.infer import predictor as predictor_module

    photo = tmp_path / "office.jpg"
    photo.write_bytes(b"not read")
    loaded = _Recorded()
    monkeypatch.setattr(predictor_module.Predictor, "load", lambda *a, **k: loaded(*a, **k) and _Predictor())
    monkeypatch.setattr(predictor_module, "score_photos", lambda *a, **k: [])
    monkeypatch.setattr("officescore.infer.score.unmatchable_rules", lambda *args: [])
    for conf in ("0", "1"):
        _run(["score", str(photo), "--model", "coco", "--conf", conf, "--device", "cpu", "--json"], capsys)
        assert loaded.args[2] == float(conf)


def test_resume_takes_the_flags_a_session_may_change_and_refuses_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--resume continues with the run's saved settings: where the data lies, the device, workers and
    trackers may change; a flag it would ignore (a seed, epochs) is refused, not dropped silently."""
    import officescore.train

    recorded = _Recorded()
    monkeypatch.setattr(officescore.train, "train", recorded)
    last = tmp_path / "run" / "weights" / "last.pt"
    argv = ["train", "--resume", str(last), "--data", str(tmp_path / "moved"), "--device", "cpu"]
    _run([*argv, "--workers", "0", "--log", "none", "--json"], capsys)
    config = recorded.args[0]
    assert (config.resume, config.data, config.workers, config.log) == (last, tmp_path / "moved", 0, "none")
    for flag, value in (("--seed", "3"), ("--epochs", "30"), ("--model-opt", "min_size=64")):
        with pytest.raises(SystemExit) as exit_info:
            main([*argv, flag, value])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and f"so {flag} would be ignored" in err, err


def test_scrape_flags_reach_the_scrape_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """-q and --queries together (a -q read like a file line, each query once), and every other flag."""
    import officescore.scrape
    from officescore.scrape import DownloadConfig

    monkeypatch.chdir(tmp_path)  # no officescore.toml
    for name in ("OFFICESCORE_CONFIG", "OFFICESCORE_CONTACT", "OFFICESCORE_FLICKR_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    recorded = _Recorded()
    monkeypatch.setattr(officescore.scrape, "scrape", recorded)
    (tmp_path / "queries.txt").write_text("reading nook\n# a comment\ndesk\n")
    argv = ["scrape", "-q", " desk ", "-q", "lamp", "--queries", "queries.txt", "--provider", "flickr"]
    argv += ["--per-query", "30", "--daily-quota", "7", "--hourly-quota", "3", "--out", str(tmp_path / "raw")]
    argv += ["--rights", "cc_publicdomain", "--safe", "off", "--img-size", "large", "--file-type", "png"]
    argv += ["--api-endpoint", "http://127.0.0.1:9/", "--wait-hours", "--contact", "me@example.org"]
    argv += ["--workers", "5", "--per-host", "2", "--timeout", "7.5", "--retries", "4", "--max-bytes", "1000"]
    argv += ["--min-size", "64", "--near-dup-threshold", "3", "--allow-private-hosts", "--json"]
    _run(argv, capsys)
    config = recorded.args[0]
    expected = {
        "queries": ["desk", "lamp", "reading nook"],
        "default_query_list": False,
        "provider": "flickr",
        "per_query": 30,
        "daily_quota": 7,
        "hourly_quota": 3,
        "out": tmp_path / "raw",
        "rights": "cc_publicdomain",
        "safe": "off",
        "img_size": "large",
        "file_type": "png",
        "api_endpoint": "http://127.0.0.1:9/",
        "wait_hours": True,
        "contact": "me@example.org",
        "near_dup_threshold": 3,
    }
    assert {key: getattr(config, key) for key in expected} == expected
    assert config.download == DownloadConfig(
        workers=5,
        per_host=2,
        read_timeout=7.5,
        retries=4,
        max_bytes=1000,
        min_width=64,
        min_height=64,
        allow_private_hosts=True,
    )


@pytest.mark.parametrize(("timeout", "total"), [("30", 120.0), ("7.5", 60.0), ("15", 60.0)])
def test_the_total_download_timeout_follows_timeout(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    timeout: str,
    total: float,
) -> None:
    """A slow link's user raises --timeout: the total a photo may take before its rate is judged goes
    with it (4 reads, 60 s at least). It was 60 s whatever --timeout said, so a 15 MB original slower
    than 32 KiB/s was cut off on each of its 12 attempts."""
    import officescore.scrape

    monkeypatch.chdir(tmp_path)  # no officescore.toml
    monkeypatch.delenv("OFFICESCORE_CONFIG", raising=False)
    recorded = _Recorded()
    monkeypatch.setattr(officescore.scrape, "scrape", recorded)
    _run(["scrape", "-q", "desk", "--provider", "wikimedia", "--timeout", timeout, "--json"], capsys)
    download = recorded.args[0].download
    assert (download.read_timeout, download.total_timeout) == (float(timeout), total)


def test_serve_flags_reach_the_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """What the page is started with: files as absolute paths (Streamlit reads them), --conf 0.95 (the
    end of the slider's range, not outside it), and the address it listens on."""
    import os
    import shutil
    import socket

    from scoremodels import write_checkpoint

    import officescore
    from officescore.app import PageSettings

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OFFICESCORE_CONFIG", raising=False)
    write_checkpoint(tmp_path / "best.pt")
    shutil.copy(Path(officescore.__file__).parent / "data" / "rubric.toml", tmp_path / "mine.toml")
    started: list[tuple[list[str], dict[str, str]]] = []

    def execve(path: str, argv: list[str], env: dict[str, str]) -> None:  # where streamlit would start
        started.append((argv, env))
        raise SystemExit(0)

    monkeypatch.setattr(os, "execve", execve)
    with socket.socket() as probe:  # a port free right now
        probe.bind(("localhost", 0))
        port = probe.getsockname()[1]
    argv = ["serve", "--model", "best.pt", "--port", str(port), "--host", "localhost", "--conf", "0.95"]
    _run([*argv, "--device", "cpu", "--precision", "fp32", "--rubric", "mine.toml"], capsys)
    ((command, env),) = started
    assert PageSettings.from_env(env) == PageSettings(
        model=str(tmp_path / "best.pt"),
        device="cpu",
        conf=0.95,
        rubric=str(tmp_path / "mine.toml"),
        precision="fp32",
    )
    options = dict(zip(command[5::2], command[6::2], strict=True))
    assert (options["--server.address"], options["--server.port"]) == ("localhost", str(port))


def test_serve_takes_a_torchscript_export_and_coco_in_capitals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Neither is a checkpoint: each reaches the page as given, not refused as a damaged one. (A real
    export: serve reads its classes, for the rubric warnings `score` gives.)"""
    import os
    import socket

    from scoremodels import write_checkpoint
    from torchvision.models.detection import MaskRCNN_ResNet50_FPN_V2_Weights

    from officescore.app import PageSettings
    from officescore.export import export_model
    from officescore.model import hub_checkpoint_dir

    export = export_model(
        write_checkpoint(tmp_path / "best.pt"), "torchscript", tmp_path / "best.torchscript.pt"
    ).path
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # coco's weights as if fetched before
    cached = hub_checkpoint_dir() / Path(MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1.url).name
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"the weights")
    started: list[dict[str, str]] = []

    def execve(path: str, argv: list[str], env: dict[str, str]) -> None:  # where streamlit would start
        started.append(env)
        raise SystemExit(0)

    monkeypatch.setattr(os, "execve", execve)
    with socket.socket() as probe:  # a port free right now
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    for model in (str(export), "COCO"):
        _run(["serve", "--model", model, "--port", port, "--device", "cpu"], capsys)
    assert [PageSettings.from_env(env).model for env in started] == [str(export), "COCO"]
