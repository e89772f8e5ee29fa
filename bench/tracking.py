"""What `train --log` costs a training step: the trackers' own time per optimiser step and per epoch.

Calls `officescore.train.tracking` exactly as the loop does (start, then per step the 8 scalars of
`step_values`, per epoch a metrics.csv row, then end) with no model, so the numbers are the
trackers' overhead alone; compare them with a step of training (seconds on a CPU, ~0.1 s on a GPU).
TensorBoard writes into a temporary run folder; MLflow into a temporary local SQLite store, as
`--log mlflow` does without MLFLOW_TRACKING_URI.

    .venv/bin/python bench/tracking.py
    .venv/bin/python bench/tracking.py --steps 5000 --steps-per-epoch 500
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from benchkit import positive_int  # bench/: first on sys.path when run as a script

from officescore.train.config import CSV_COLUMNS, LOSS_KEYS, METRIC_KEYS
from officescore.train.tracking import (
    MLflowTracker,
    TensorBoardTracker,
    Trackers,
    local_mlflow_uri,
    step_values,
)

ARGS = {"arch": "maskrcnn_resnet50_fpn_v2", "lr": 0.02, "epochs": 20, "model_kwargs": {"min_size": 800}}


def measure(name: str, steps: int, per_epoch: int) -> dict[str, float | str]:
    root = Path(tempfile.mkdtemp(prefix="officescore-bench-tracking-"))
    run_dir = root / "runs" / "train" / "train"
    run_dir.mkdir(parents=True)
    started = time.perf_counter()
    if name == "tensorboard":
        tracker = TensorBoardTracker(run_dir, run_dir.parent)
    else:
        tracker = MLflowTracker(run_dir, local_mlflow_uri(run_dir.parent))
    trackers = Trackers([tracker])
    trackers.start(ARGS)
    opened = time.perf_counter() - started
    parts = {key: 0.5 for key in ("loss", *LOSS_KEYS)}
    step_time = epoch_time = 0.0
    for step in range(1, steps + 1):
        t = time.perf_counter()
        trackers.step(step, step_values(parts, 0.01, 12.0))
        step_time += time.perf_counter() - t
        if step % per_epoch == 0:
            row = dict.fromkeys(CSV_COLUMNS, 0.25) | {"epoch": step // per_epoch}
            row.update(dict.fromkeys(METRIC_KEYS, 0.3))
            t = time.perf_counter()
            trackers.epoch(row)
            epoch_time += time.perf_counter() - t
    t = time.perf_counter()
    trackers.end([], "finished")
    ended = time.perf_counter() - t
    assert not trackers.notes, trackers.notes  # nothing was switched off
    epochs = steps // per_epoch
    return {
        "tracker": name,
        "open_and_start_s": round(opened, 3),
        "per_step_ms": round(1000 * step_time / steps, 4),
        "per_epoch_ms": round(1000 * epoch_time / max(1, epochs), 2),
        "end_s": round(ended, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=positive_int, default=2000)
    parser.add_argument("--steps-per-epoch", type=positive_int, default=200)
    parser.add_argument("--tracker", choices=("tensorboard", "mlflow"), action="append")
    args = parser.parse_args()
    for name in args.tracker or ("tensorboard", "mlflow"):
        print(json.dumps(measure(name, args.steps, args.steps_per_epoch)))


if __name__ == "__main__":
    main()
