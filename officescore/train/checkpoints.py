"""Where a run stands (`State`), and writing it: last.pt, best.pt, metrics.csv, and a save on
Ctrl-C or SIGTERM wherever it lands."""

from __future__ import annotations

import csv
import io
import signal
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from officescore.files import atomic_write_bytes
from officescore.model import save_checkpoint
from officescore.train.config import CSV_COLUMNS
from officescore.train.seeding import rng_state
from officescore.train.setup import Run


@dataclass
class State:
    """Where training stands; what last.pt records. Saved as is whenever the run stops."""

    epoch: int = 0  # epochs completed
    step_in_epoch: int = 0  # batches of the unfinished epoch already trained (Ctrl-C resume)
    best_metric: float | None = None
    best_epoch: int | None = None
    bad_validations: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    pending_row: dict[str, Any] | None = None  # an epoch trained but not yet validated
    resume_rng: dict[str, Any] | None = None  # RNG states the unfinished epoch's next step starts from
    step_buffers: dict[str, Any] | None = None  # ... and the model's buffers (BatchNorm statistics)
    best_unsaved: bool = False  # this epoch improved on the best, best.pt not yet rewritten
    # The unfinished epoch's loss sums, steps, images and seconds so far: after a mid-epoch resume
    # its metrics.csv row still averages every step of the epoch, not only those after the stop.
    epoch_sums: dict[str, Any] | None = None


class Terminated(KeyboardInterrupt):
    """SIGTERM during training (a job scheduler's stop): handled like Ctrl-C, last.pt saved first."""


@contextmanager
def stop_signals_as_interrupts() -> Iterator[dict[str, bool]]:
    """While training, SIGTERM raises `Terminated` and Ctrl-C (SIGINT) KeyboardInterrupt in the main
    thread, and each sets its flag; the old handlers come back after.

    The flags stay set: a DataLoader error caused by the same signal reaching the worker processes
    first is still treated as an interruption, and `raise_if_stopped` (after every training step)
    raises again when Python dropped the first raise, which it does when the signal lands in a
    weakref callback or a `__del__` ("Exception ignored in ..."). A SIGINT the caller ignores
    (SIG_IGN, as under nohup) stays ignored. Inside `signals_held` a signal only sets its flag.
    """
    received = {"sigterm": False, "sigint": False}
    if threading.current_thread() is not threading.main_thread():
        yield received  # signal handlers can only be set from the main thread
        return

    def on_sigterm(signum: int, frame: Any) -> None:
        received["sigterm"] = True
        if not received.get("held"):
            raise Terminated(f"received signal {signum} (SIGTERM)")

    def on_sigint(signum: int, frame: Any) -> None:
        received["sigint"] = True
        if not received.get("held"):
            raise KeyboardInterrupt

    previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, on_sigterm)}
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        previous[signal.SIGINT] = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield received
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def raise_if_stopped(received: dict[str, bool] | None) -> None:
    """Raise the interruption a signal asked for, if Python dropped the handler's own raise."""
    if received and received["sigterm"]:
        raise Terminated("received SIGTERM")
    if received and received["sigint"]:
        raise KeyboardInterrupt


@contextmanager
def signals_held(received: dict[str, bool] | None) -> Iterator[None]:
    """Inside, Ctrl-C and SIGTERM only set their flags; the interruption is raised on leaving. For a
    step that must finish whole once begun (the optimiser step and the count of it)."""
    if received is None:
        yield
        return
    received["held"] = True
    try:
        yield
    finally:
        received["held"] = False
    raise_if_stopped(received)


def restore_state(run: Run, checkpoint: dict[str, Any] | None) -> State:
    """A new run starts at zero; a resumed one takes its optimiser, schedule and position from last.pt."""
    state = State()
    if checkpoint is None:
        return state
    run.optimizer.load_state_dict(checkpoint["optimizer"])
    run.scheduler.load_state_dict(checkpoint["scheduler"])
    if checkpoint.get("scaler"):
        run.scaler.load_state_dict(checkpoint["scaler"])
    state.epoch = int(checkpoint["epoch"])
    state.step_in_epoch = int(checkpoint.get("step_in_epoch", 0))
    state.best_metric = checkpoint.get("best_metric")
    state.best_epoch = checkpoint.get("best_epoch")
    state.bad_validations = int(checkpoint.get("bad_validations", 0))
    state.history = list(checkpoint.get("metrics") or [])
    # Stopped while validating: the trained epoch's row was saved, so resuming only validates it.
    state.pending_row = checkpoint.get("pending_row")
    if state.step_in_epoch and state.pending_row is None:
        state.resume_rng = checkpoint.get("rng")  # stopped mid-epoch: continue its random stream
        state.epoch_sums = checkpoint.get("epoch_sums")  # None from a last.pt of an older version
    return state


def _save_checkpoint(run: Run, state: State, path: Path) -> None:
    """Everything needed to continue exactly from `state` (rank 0 writes; atomic)."""
    if not run.ctx.is_main:
        return
    weights = run.model.state_dict()
    if state.step_buffers:  # stopped while training: the buffers as the last whole step left them
        weights.update((name, b) for name, b in state.step_buffers.items() if name in weights)
    save_checkpoint(
        path,
        model=weights,
        arch=run.config.arch,
        classes=run.classes,
        model_kwargs=run.model_kwargs,
        # how it was built: a run or a fine-tune from this file builds it so again (model.started_pretrained)
        pretrained_layout=bool(getattr(run.model, "pretrained_layout", False)),
        epoch=state.epoch,
        step_in_epoch=state.step_in_epoch,
        optimizer=run.optimizer.state_dict(),
        scheduler=run.scheduler.state_dict(),
        scaler=run.scaler.state_dict(),
        metrics=state.history,
        best_metric=state.best_metric,
        best_epoch=state.best_epoch,
        bad_validations=state.bad_validations,
        rng=state.resume_rng or rng_state(),  # not the states now: a stop mid-step has drawn from them
        args=run.args,
        pending_row=state.pending_row,
        epoch_sums=state.epoch_sums,
    )


def write_checkpoints(run: Run, state: State) -> None:
    """After an epoch: last.pt, best.pt when it improved, metrics.csv. Safe to repeat after a stop."""
    _save_checkpoint(run, state, run.last)
    if state.best_unsaved:
        _save_checkpoint(run, state, run.best)
        state.best_unsaved = False
    if run.ctx.is_main:
        write_metrics_csv(run.run_dir / "metrics.csv", state.history)


@contextmanager
def save_when_stopped(run: Run, state: State, received: dict[str, bool] | None) -> Iterator[None]:
    """Ctrl-C or SIGTERM anywhere inside: save last.pt (where the run stands) first, then stop."""
    try:
        yield
    except BaseException as exc:
        # SIGTERM sent to the whole process group may kill a DataLoader worker before the
        # handler here runs: the loader then reports the dead worker instead.
        sigterm = bool(received and received["sigterm"]) or "killed by signal: Terminated" in str(exc)
        if not (isinstance(exc, KeyboardInterrupt) or sigterm):
            raise
        write_checkpoints(run, state)
        if run.ctx.is_main:
            what = "terminated (SIGTERM)" if sigterm else "interrupted"
            if state.pending_row is not None:
                where = f"at epoch {state.epoch + 1}, while validating"
            elif state.step_in_epoch:
                where = f"at epoch {state.epoch + 1}, batch {state.step_in_epoch}"
            else:
                where = f"after epoch {state.epoch}"
            run.reporter.log(
                f"{what}: saved {run.last} {where}; continue with `officescore train --resume {run.last}`"
            )
        if sigterm and not isinstance(exc, Terminated):
            raise Terminated("received SIGTERM") from exc
        raise


def write_metrics_csv(path: Path, history: Sequence[dict[str, Any]]) -> None:
    """metrics.csv, rewritten whole (atomically) each epoch from the checkpointed history."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(CSV_COLUMNS), extrasaction="ignore")
    writer.writeheader()
    for row in history:
        writer.writerow({k: ("" if row.get(k) is None else _csv_value(row[k])) for k in CSV_COLUMNS})
    atomic_write_bytes(path, buffer.getvalue().encode("utf-8"))


def _csv_value(value: Any) -> Any:
    return f"{value:.6g}" if isinstance(value, float) else value
