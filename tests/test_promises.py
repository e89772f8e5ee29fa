"""README promises across commands: `score` and `eval` default to the newest best.pt of several, and
`serve` loads its model once per server (whatever the uploads, slider moves and sessions)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from scoremodels import write_checkpoint, write_scenes
from trainsetup import make_dataset

from officescore.cli import main


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """runs/train with two best.pt files: `zzz` (a desk model, older) and `aaa` (a chair model, newer),
    so neither the first nor the last name in sorted order is the answer by accident."""
    root = tmp_path_factory.mktemp("newest")
    older = write_checkpoint(root / "runs/train/zzz/weights/best.pt", {"desk": 8.0})
    newer = write_checkpoint(root / "runs/train/aaa/weights/best.pt", {"chair": 8.0})
    now = time.time()
    os.utime(older, (now - 3600, now - 3600))
    os.utime(newer, (now - 60, now - 60))
    photo = write_scenes(root / "photos", n=1)[0]
    return {"root": root, "older": older, "newer": newer, "photo": photo}


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out, err = capsys.readouterr()
    assert exit_info.value.code == 0, err
    return out


def test_score_defaults_to_the_newest_of_several_best_pt(
    runs: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(runs["root"])
    doc = json.loads(_cli(["score", str(runs["photo"]), "--device", "cpu", "--json"], capsys))
    assert Path(doc["model"]) == Path("runs/train/aaa/weights/best.pt")
    assert {d["class"] for d in doc["photos"][0]["detections"]} == {"chair"}  # the newer model's classes
    os.utime(runs["older"])  # now the desk model is the newest
    doc = json.loads(_cli(["score", str(runs["photo"]), "--device", "cpu", "--json"], capsys))
    assert Path(doc["model"]) == Path("runs/train/zzz/weights/best.pt")
    assert {d["class"] for d in doc["photos"][0]["detections"]} == {"desk"}
    now = time.time()
    os.utime(runs["older"], (now - 3600, now - 3600))


def test_eval_defaults_to_the_newest_of_several_best_pt(
    runs: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = make_dataset(runs["root"] / "eval", images=5, size=64, seed=2)
    monkeypatch.chdir(runs["root"])
    out = _cli(["eval", "--data", str(data), "--device", "cpu", "--name", "newest"], capsys)
    assert "model runs/train/aaa/weights/best.pt on" in " ".join(out.split()), out


# --------------------------------------------------------------------------- serve


@pytest.fixture()
def page_env(runs: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """The page's settings as `officescore serve` passes them, and a log of every model load."""
    from streamlit import cache_resource

    from officescore.app import PageSettings
    from officescore.infer import Predictor

    for key, value in PageSettings(str(runs["newer"]), device="cpu", conf=0.5).to_env().items():
        monkeypatch.setenv(key, value)
    loads: list[Any] = []
    real_load = Predictor.load.__func__  # type: ignore[attr-defined]

    def counting_load(cls: type[Predictor], source: Any, *args: Any, **kwargs: Any) -> Predictor:
        loads.append(source)
        return real_load(cls, source, *args, **kwargs)

    monkeypatch.setattr(Predictor, "load", classmethod(counting_load))
    cache_resource.clear()  # one "server": this process, from a cold cache
    yield loads
    cache_resource.clear()


def test_serve_loads_the_model_once_per_server(runs: dict[str, Path], page_env: list[Any]) -> None:
    """Streamlit's AppTest runs officescore/app.py as the server would: two sessions, two uploads, a
    slider move; the model is loaded by the first page run and never again."""
    from streamlit.testing.v1 import AppTest

    import officescore.app

    photos = [runs["photo"], *write_scenes(runs["root"] / "more", n=2)[1:]]
    totals = []
    for _session in range(2):  # two browser tabs: two sessions of one server
        page = AppTest.from_file(officescore.app.__file__, default_timeout=300).run()
        assert not page.exception, page.exception
        for photo in photos:
            page.file_uploader[0].upload(photo.name, photo.read_bytes(), "image/jpeg").run()
            assert not page.exception and not page.error, (page.exception, page.error)
            totals.append(page.metric[0].value)
        page.select_slider(key="conf").set_value(0.05).run()
        assert not page.exception and page.metric[0].value.endswith("/100")
    assert len(totals) == 4 and all(t.endswith("/100") for t in totals)
    assert page_env == [str(runs["newer"])], f"loaded {len(page_env)} times"
