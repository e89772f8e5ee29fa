"""Every benchmark script under bench/ still starts: its imports resolve and it parses `--help`.

They run for minutes to hours, so the suite never runs them; without this, a rename elsewhere left
bench/selection.py failing at its first line (an import of a constant moved to benchkit.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = sorted(p.name for p in (REPO / "bench").glob("*.py") if p.name != "benchkit.py")
WITHOUT_OPTIONS = {"near_duplicates.py": "unrelated pairs"}  # no arguments; its whole run takes a second


@pytest.mark.parametrize("script", SCRIPTS)
def test_bench_script_starts(script: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    path = REPO / "bench" / script
    if "__main__" not in path.read_text(encoding="utf-8"):  # a helper module of the others: imported
        argv = [sys.executable, "-c", f"import sys; sys.path.insert(0, 'bench'); import {path.stem}"]
        expected = ""
    else:
        argv = [sys.executable, str(path)] + ([] if script in WITHOUT_OPTIONS else ["--help"])
        expected = WITHOUT_OPTIONS.get(script, "usage:")
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert expected in done.stdout


def test_too_few_training_scenes_is_a_one_line_exit(tmp_path: Path) -> None:
    """A smoke run's small --scenes left no training scenes after the held-out ones: ingest then
    named a --val-fraction of 2.67 that nobody typed, in a traceback, after drawing the scenes."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    argv = [sys.executable, str(REPO / "bench" / "standin.py"), "--out", str(tmp_path / "s"), "--scenes", "6"]
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert done.stderr.strip() == "--scenes must be more than 16 (the 16 held out for val mAP), got 6"
    assert not (tmp_path / "s").exists()  # it stops before drawing any scene


def test_label_job_only_out_of_range_is_a_usage_error(tmp_path: Path) -> None:
    """`--only 0,9` (8 candidates) ended in an IndexError, after drawing the 1024 px photos."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = tmp_path / "job"
    argv = [
        sys.executable,
        str(REPO / "bench" / "label_job.py"),
        "--out",
        str(out),
        "--photos",
        "2",
        "--val",
        "1",
    ]
    done = subprocess.run(
        argv + ["--only", "0,9"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == "label_job.py: error: --only: indices run from 0 to 7, got 0,9"
    assert not out.exists()


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["score.py", "--models", "v2,v3"], "--models: v3 is not one of v2, mobilenet"),  # was a KeyError
        (["scrape.py", "--size", "4000"], "--size: WxH, e.g. 4000x3000, got 4000"),  # was a ValueError
        # counts of nothing divided by zero once the run was over
        (["tracking.py", "--steps", "0"], "argument --steps: must be 1 or more, got 0"),
        (["scrape.py", "--n", "0"], "argument --n: must be 1 or more, got 0"),
        (["load.py", "--repeats", "-1"], "argument --repeats: must be 1 or more, got -1"),
        (["selection.py", "--copies", "-1"], "argument --copies: must be 0 or more, got -1"),
        # was a FileNotFoundError, after Label Studio had started and the scenes were drawn
        (
            ["assist.py", "--standin", "missing.pt", "--out", "OUT"],
            "--standin missing.pt: no such checkpoint",
        ),
    ],
)
def test_bad_option_is_a_usage_error(argv: list[str], error: str, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    argv = [str(tmp_path / "out") if arg == "OUT" else arg for arg in argv]
    command = [sys.executable, str(REPO / "bench" / argv[0]), *argv[1:]]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert f"{argv[0]}: error: {error}" in done.stderr.splitlines()[-1]
    assert not (tmp_path / "out").exists()


def test_audit_without_cleanlab_stops_before_training(tmp_path: Path) -> None:
    """bench/audit.py found cleanlab missing only after training its model (51 min by default)."""
    hidden = tmp_path / "hidden" / "cleanlab"  # a cleanlab that cannot be imported, installed or not
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("raise ImportError('hidden by the test')\n")
    env = {**os.environ, "PYTHONPATH": f"{hidden.parent}{os.pathsep}{REPO}"}
    argv = [sys.executable, str(REPO / "bench" / "audit.py"), "--out", str(tmp_path / "out")]
    argv += ["--train-scenes", "41", "--size", "64", "--epochs", "1", "--scenes", "2"]  # quick if it trains
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert done.stderr.startswith("bench/audit.py compares with cleanlab: pip install cleanlab")
    assert not (tmp_path / "out").exists()


def test_label_job_rerun_with_another_val_splits_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A re-run into the same --out with another --val trained on the first run's split while its
    table printed the new --val."""
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    import label_job

    label_job.scenes_data(tmp_path, 3, 1)
    again = label_job.scenes_data(tmp_path, 3, 2)
    assert json.loads((again / "dataset.json").read_text())["val_fraction"] == 2 / 3  # split for --val 2


def test_make_bench_lists_every_script_with_what_it_measures() -> None:
    """`make bench` lists the scripts (running them all would take hours, each with options of its
    own): one line per script with its docstring's first line, and where the commands are."""
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench_list.py")], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    runnable = [s for s in SCRIPTS if "__main__" in (REPO / "bench" / s).read_text(encoding="utf-8")]
    assert [line.split()[0] for line in lines[:-1]] == [f"bench/{s}" for s in runnable]
    assert all(len(line.split(maxsplit=1)) == 2 for line in lines[:-1])  # each says what it measures
    assert "docs/BENCHMARKS.md" in lines[-1]
