"""Training's parts without a detector: a toy model trained through the real epoch loop, checkpoint
writing and reading, stop handling, seeding, the data order, validation scheduling, settings and plots.
Each test runs in well under a second."""

from __future__ import annotations

import csv
import os
import random
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from officescore.distributed import DistContext
from officescore.errors import ConfigError, ModelError
from officescore.model import load_checkpoint
from officescore.progress import Reporter, Stage
from officescore.train import TrainConfig
from officescore.train import checkpoints as ckpt
from officescore.train.config import TrainResult, check_config
from officescore.train.engine import _epoch_loader, _sync_buffers, train_one_epoch
from officescore.train.seeding import EpochSampler, SeededItems, rng_state, set_rng_state, worker_init
from officescore.train.setup import Run
from officescore.train.validate import _subset_gt, validate_if_due

# --- a toy run: the real epoch loop, optimiser, schedule and checkpoints around a 3-weight model ---


class _Photos(Dataset):
    """Item i: a "photo" of 3 values drawn with torch, NumPy and Python's RNGs, as augmentation draws."""

    def __len__(self) -> int:
        return 10

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        jitter = torch.rand(3) + float(np.random.rand()) + random.random()
        return jitter + index, {"index": index}

    @staticmethod
    def collate_fn(batch: list[Any]) -> tuple[Any, ...]:
        return tuple(zip(*batch, strict=True))


class _Net(nn.Module):
    """(photos, targets) -> losses, with a random draw per step from every RNG (as RPN sampling)."""

    def __init__(self, explode_at: int | None = None) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.full((3,), 0.1))
        self.calls = 0
        self.explode_at = explode_at  # the call whose loss is inf

    def forward(self, images: list[torch.Tensor], targets: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        self.calls += 1
        noise = torch.rand(()) + float(np.random.rand()) + random.random()
        fit = ((torch.stack(images) @ self.w) - noise).pow(2).mean()
        if self.calls == self.explode_at:
            fit = fit * float("inf")
        return {"loss_classifier": fit, "loss_mask": self.w.pow(2).sum()}


def _toy_run(
    tmp_path: Path, reporter: Reporter | None = None, explode_at: int | None = None, model: _Net | None = None
) -> Run:
    """2 epochs of 5 steps (10 photos, batch 2) at lr 0.01 falling as 1 / (1 + step)."""
    model = _Net(explode_at) if model is None else model
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 / (1 + step))
    config = TrainConfig(epochs=2, batch_size=2, seed=3, workers=0, device="cpu", clip_grad=0.0)
    return Run(
        config=config,
        device=torch.device("cpu"),
        ctx=DistContext(),
        reporter=reporter or Reporter(),
        run_dir=tmp_path,
        classes=["desk"],
        model_kwargs={},
        model=model,
        net=model,
        train_set=_Photos(),
        val_set=[],
        pool=list(range(10)),
        steps_per_epoch=5,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=torch.amp.GradScaler("cpu", enabled=False),
        use_cuda_amp=False,
        use_cpu_bf16=False,
        args={},
        notes=[],
    )


class _StopAfter(Reporter):
    """Sets the Ctrl-C flag after `steps` training steps (as a dropped Ctrl-C leaves it)."""

    def __init__(self, steps: int, received: dict[str, bool]) -> None:
        self.steps, self.received, self.logged = steps, received, []

    def log(self, message: str) -> None:
        self.logged.append(message)

    @contextmanager
    def stage(self, description: str, total: int | None = None) -> Iterator[Stage]:
        outer = self

        class _Count(Stage):
            def advance(self, n: int = 1, status: str = "") -> None:
                if status != "resumed":
                    outer.steps -= 1
                    if outer.steps == 0:
                        outer.received["sigint"] = True

        yield _Count()


def _epochs(run: Run, state: ckpt.State, received: dict[str, bool] | None = None, until: int = 2) -> None:
    """The loop without validation: train each epoch, then record it and write last.pt."""
    from officescore.train.loop import _end_epoch

    while state.epoch < until:
        state.pending_row = train_one_epoch(run, state, received=received)
        _end_epoch(run, state, None)


def _straight(tmp_path: Path) -> tuple[torch.Tensor, list[dict[str, Any]]]:
    run = _toy_run(tmp_path / "straight")
    torch.manual_seed(0)
    state = ckpt.State()
    _epochs(run, state)
    return run.model.w.detach().clone(), state.history


def _losses(history: list[dict[str, Any]]) -> list[float]:
    return [row[key] for row in history for key in ("epoch", "loss", "loss_classifier", "loss_mask")]


def _other_process_rngs() -> None:
    """A resumed run starts in a new process: every RNG somewhere else."""
    torch.manual_seed(12345)
    np.random.seed(678)
    random.seed(910)


def _resumed(tmp_path: Path, last: Path, name: str, model: _Net | None = None) -> tuple[Run, ckpt.State]:
    """A new run restored from `last`, as `--resume` builds it."""
    checkpoint = load_checkpoint(last)
    run = _toy_run(tmp_path / name, model=model)
    run.model.load_state_dict(checkpoint["model"])
    return run, ckpt.restore_state(run, checkpoint)


def _stopped(tmp_path: Path, stop_after: int) -> Run:
    """A run stopped after `stop_after` steps: Ctrl-C mid-epoch, or (5) killed once epoch 1 was saved."""
    received = {"sigterm": False, "sigint": False}
    run = _toy_run(tmp_path / "cut", reporter=_StopAfter(stop_after, received))
    state = ckpt.State()
    torch.manual_seed(0)
    if stop_after == run.steps_per_epoch:
        _epochs(run, state, until=1)
        return run
    with pytest.raises(KeyboardInterrupt), ckpt.save_when_stopped(run, state, received):
        _epochs(run, state, received)
    return run


@pytest.mark.parametrize("stop_after", [3, 5, 7])
def test_a_run_stopped_and_resumed_ends_with_the_same_weights(tmp_path: Path, stop_after: int) -> None:
    """Stopped after 3 steps (mid epoch 1), 5 (killed after epoch 1's last.pt) or 7 (mid epoch 2),
    resumed in a process whose RNGs are elsewhere: the weights are bitwise those of the run that
    never stopped. The resumed run is stopped again before its first step (Ctrl-C while it still
    loaded the first batch) and resumed once more."""
    want, history = _straight(tmp_path)
    cut = _stopped(tmp_path, stop_after)
    _other_process_rngs()
    again, again_state = _resumed(tmp_path, cut.last, "again")
    assert (again_state.epoch, again_state.step_in_epoch) == divmod(stop_after, 5)
    ckpt.write_checkpoints(again, again_state)  # stopped before its first step
    _other_process_rngs()
    resumed, resumed_state = _resumed(tmp_path, again.last, "resumed")
    _epochs(resumed, resumed_state)
    assert torch.equal(resumed.model.w.detach(), want)
    # metrics.csv: the interrupted epoch's row is the mean over all its steps, before and after the stop
    assert _losses(resumed_state.history) == pytest.approx(_losses(history), rel=1e-12)


class _NetWithStatistics(_Net):
    """_Net with a running statistic that its forward updates (as BatchNorm's) and its loss uses; a
    Ctrl-C lands inside the forward of call `ctrl_c_at`, after its random draws and that update."""

    def __init__(self, ctrl_c_at: int | None = None) -> None:
        super().__init__()
        self.register_buffer("running", torch.zeros(()))
        self.ctrl_c_at = ctrl_c_at

    def forward(self, images: list[torch.Tensor], targets: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        losses = super().forward(images, targets)
        self.running.mul_(0.5).add_(torch.stack(images).mean())
        if self.calls == self.ctrl_c_at:
            raise KeyboardInterrupt
        return losses | {"loss_mask": losses["loss_mask"] * (1 + self.running)}


@pytest.mark.parametrize("ctrl_c_at", [1, 6, 8])
def test_a_ctrl_c_inside_a_step_resumes_from_the_last_whole_step(tmp_path: Path, ctrl_c_at: int) -> None:
    """A Ctrl-C inside the forward of epoch 1's first step (1), epoch 2's first (6) or third (8):
    last.pt holds the buffers and RNG states that step started from, so the resumed run equals the
    one that never stopped (a toy twin of test_train's test_a_ctrl_c_inside_a_step_resumes_exactly)."""
    straight = _toy_run(tmp_path / "straight", model=_NetWithStatistics())
    torch.manual_seed(0)
    straight_state = ckpt.State()
    _epochs(straight, straight_state)
    cut = _toy_run(tmp_path / "cut", model=_NetWithStatistics(ctrl_c_at))
    torch.manual_seed(0)
    state = ckpt.State()
    with pytest.raises(KeyboardInterrupt), ckpt.save_when_stopped(cut, state, None):
        _epochs(cut, state)
    _other_process_rngs()
    resumed, resumed_state = _resumed(tmp_path, cut.last, "resumed", model=_NetWithStatistics())
    _epochs(resumed, resumed_state)
    assert torch.equal(resumed.model.running, straight.model.running)
    assert torch.equal(resumed.model.w.detach(), straight.model.w.detach())
    assert _losses(resumed_state.history) == pytest.approx(_losses(straight_state.history), rel=1e-12)


@pytest.mark.usefixtures("ctrl_c_default")
@pytest.mark.parametrize("ctrl_c_at", [3, 8])
def test_a_ctrl_c_inside_the_optimiser_step_resumes_exactly(tmp_path: Path, ctrl_c_at: int) -> None:
    """A real Ctrl-C right after the optimiser moved the weights of step 3 (epoch 1) or 8 (epoch 2),
    before the step was counted: it is held until the step is recorded, so last.pt counts the step
    and the resumed run equals the one that never stopped (it does not take that step twice)."""
    want, history = _straight(tmp_path)
    cut = _toy_run(tmp_path / "cut")
    step, calls = cut.scaler.step, [0]

    def step_then_ctrl_c(optimizer: torch.optim.Optimizer) -> Any:
        moved = step(optimizer)
        calls[0] += 1
        if calls[0] == ctrl_c_at:
            os.kill(os.getpid(), signal.SIGINT)  # Python's handler runs at the next bytecode, here
        return moved

    cut.scaler.step = step_then_ctrl_c
    torch.manual_seed(0)
    state = ckpt.State()
    with (
        ckpt.stop_signals_as_interrupts() as received,
        pytest.raises(KeyboardInterrupt),
        ckpt.save_when_stopped(cut, state, received),
    ):
        _epochs(cut, state, received)
    assert (state.epoch, state.step_in_epoch) == divmod(ctrl_c_at, 5)
    _other_process_rngs()
    resumed, resumed_state = _resumed(tmp_path, cut.last, "resumed")
    _epochs(resumed, resumed_state)
    assert torch.equal(resumed.model.w.detach(), want)
    assert _losses(resumed_state.history) == pytest.approx(_losses(history), rel=1e-12)


@pytest.mark.usefixtures("ctrl_c_default")
@pytest.mark.parametrize(
    ("signum", "raised"), [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, ckpt.Terminated)]
)
def test_a_signal_inside_signals_held_is_raised_on_leaving_and_at_once_after(
    signum: int, raised: type[BaseException]
) -> None:
    """Ctrl-C or SIGTERM inside the hold only sets its flag and is raised on leaving it; after the
    hold a signal raises at once again; and a stop whose raise Python dropped before the hold (its
    flag set) is not forgotten by it."""
    held: list[str] = []
    with ckpt.stop_signals_as_interrupts() as received:
        with pytest.raises(raised):
            with ckpt.signals_held(received):
                os.kill(os.getpid(), signum)
                for _ in range(100):  # bytecodes for the handler to run at: it must not raise here
                    held.append("ran")
            held.append("not reached: leaving the hold raises")
        assert len(held) == 100
        received.update(sigint=False, sigterm=False)
        with pytest.raises(raised):
            os.kill(os.getpid(), signum)
            for _ in range(100):
                pass
        received.update(sigint=False, sigterm=False)
        received["sigterm" if signum == signal.SIGTERM else "sigint"] = True  # its raise dropped
        with pytest.raises(raised), ckpt.signals_held(received):
            pass


def test_last_pt_holds_the_statistics_the_ranks_averaged_at_the_epochs_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under DDP an epoch ends by averaging BatchNorm's statistics across the ranks: last.pt (and so a
    resume, and best.pt) holds those, not rank 0's as its last step left them."""
    from officescore.train import engine

    def averaged(model: nn.Module, ctx: DistContext) -> None:  # the mean over ranks, as a change
        model.running.add_(1.0)

    monkeypatch.setattr(engine, "_sync_buffers", averaged)
    run = _toy_run(tmp_path, model=_NetWithStatistics())
    _epochs(run, ckpt.State(), until=1)
    assert torch.equal(load_checkpoint(run.last)["model"]["running"], run.model.running)


def test_a_checkpoint_restores_where_the_run_stood(tmp_path: Path) -> None:
    """Every field of `State` last.pt holds comes back; the RNG only for an unfinished epoch."""
    run = _toy_run(tmp_path)
    history = [{"epoch": 1, "loss": 2.0, "segm_map": 0.25}, {"epoch": 2, "loss": 1.5, "segm_map": 0.2}]
    state = ckpt.State(epoch=2, step_in_epoch=3, best_metric=0.25, best_epoch=1, bad_validations=1)
    state.history = history
    ckpt.write_checkpoints(run, state)
    restored = ckpt.restore_state(_toy_run(tmp_path / "b"), load_checkpoint(run.last))
    assert (restored.epoch, restored.step_in_epoch) == (2, 3)
    assert (restored.best_metric, restored.best_epoch, restored.bad_validations) == (0.25, 1, 1)
    assert restored.history == history and restored.pending_row is None
    assert restored.resume_rng is not None
    # Stopped while validating epoch 3 (its training done): nothing random is left to continue.
    state.pending_row = {"epoch": 3, "loss": 1.0}
    ckpt.write_checkpoints(run, state)
    restored = ckpt.restore_state(_toy_run(tmp_path / "c"), load_checkpoint(run.last))
    assert restored.pending_row == {"epoch": 3, "loss": 1.0} and restored.resume_rng is None
    assert ckpt.restore_state(run, None) == ckpt.State()


def test_best_pt_holds_the_best_epoch_not_a_later_one_without_validation(tmp_path: Path) -> None:
    """Epoch 2 improved (best.pt written); epoch 3 was not validated (--val-every 2): best.pt stays
    epoch 2's, and so it does when a stop writes the checkpoints again."""
    run = _toy_run(tmp_path)
    state = ckpt.State(epoch=2, best_metric=0.3, best_epoch=2, best_unsaved=True)
    ckpt.write_checkpoints(run, state)
    state.epoch = 3
    ckpt.write_checkpoints(run, state)
    ckpt.write_checkpoints(run, state)
    assert load_checkpoint(run.best)["epoch"] == 2 and load_checkpoint(run.last)["epoch"] == 3


def _recording(run: Run) -> list[float]:
    """The total loss of every step the run's model takes, in order."""
    seen: list[float] = []
    real_forward = run.net.forward

    def recorded(images: list[torch.Tensor], targets: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        losses = real_forward(images, targets)
        seen.append(float(sum(losses.values()).detach()))
        return losses

    run.net.forward = recorded  # type: ignore[method-assign]
    return seen


def test_an_epoch_row_averages_its_steps_and_records_the_lr_after_them(tmp_path: Path) -> None:
    run = _toy_run(tmp_path)
    seen = _recording(run)
    row = train_one_epoch(run, ckpt.State())
    assert len(seen) == 5 and row["epoch"] == 1
    assert row["loss"] == pytest.approx(sum(seen) / 5)
    assert row["lr"] == pytest.approx(0.01 / (1 + 5))  # the schedule stepped once per step
    assert row["loss_box_reg"] == 0.0 and row["seconds"] > 0


def test_an_epoch_cut_by_the_time_budget_averages_the_steps_it_took(tmp_path: Path) -> None:
    run = _toy_run(tmp_path)
    seen = _recording(run)
    row = train_one_epoch(run, ckpt.State(), deadline=0.0)  # spent before the first step ends
    assert len(seen) == 1 and row["loss"] == pytest.approx(seen[0])  # one step's loss, not a fifth of it
    assert run.notes == ["time budget spent during epoch 1, after 1 of 5 steps"]


def test_a_non_finite_loss_names_its_epoch_batch_and_step(tmp_path: Path) -> None:
    run = _toy_run(tmp_path, explode_at=8)  # epoch 2, batch 3
    state = ckpt.State()
    with pytest.raises(ModelError) as info:
        _epochs(run, state)
    message = str(info.value)
    assert "loss became inf at epoch 2, batch 3 (step 8)" in message
    assert "--lr 0.001" in message  # a tenth of the peak 0.01, not of the lr reached by then


class _Steps:
    """A tracker that records the steps it is given."""

    name = "steps"

    def __init__(self) -> None:
        self.steps: list[int] = []

    def step(self, step: int, values: dict[str, float]) -> None:
        self.steps.append(step)
        assert values["train/lr"] > 0


def test_trackers_count_steps_across_epochs_and_a_resume(tmp_path: Path) -> None:
    from officescore.train.tracking import Trackers

    run = _toy_run(tmp_path)
    tracker = _Steps()
    run.trackers = Trackers([tracker])  # type: ignore[list-item]
    train_one_epoch(run, ckpt.State(epoch=1, step_in_epoch=2))  # resumed at epoch 2, batch 3
    assert tracker.steps == [8, 9, 10]


def test_the_epochs_data_skips_what_was_trained_and_changes_every_epoch(tmp_path: Path) -> None:
    """Resumed after 2 batches, the loader gives the rest of the same epoch; epoch 2's photos are
    drawn afresh (another order and other augmentation)."""
    run = _toy_run(tmp_path)

    def batches(epoch: int, start: int) -> list[tuple[list[int], torch.Tensor]]:
        loader = _epoch_loader(run, epoch, start)
        return [([t["index"] for t in targets], torch.stack(images)) for images, targets in loader]

    whole = batches(0, 0)
    assert sorted(i for indices, _ in whole for i in indices) == list(range(10))
    rest = batches(0, 2)
    assert [b[0] for b in rest] == [b[0] for b in whole[2:]]
    assert all(torch.equal(a[1], b[1]) for a, b in zip(rest, whole[2:], strict=True))
    second = {i: image for indices, images in batches(1, 0) for i, image in zip(indices, images, strict=True)}
    first = {i: image for indices, images in whole for i, image in zip(indices, images, strict=True)}
    assert [b[0] for b in batches(1, 0)] != [b[0] for b in whole]
    assert not any(torch.equal(first[i], second[i]) for i in range(10))


def test_batchnorm_statistics_are_averaged_across_ranks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two ranks: each ends with the mean of both ranks' running statistics (the count untouched)."""
    import torch.distributed as dist

    model = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2))
    norm = model[1]
    norm.running_mean.copy_(torch.tensor([1.0, 3.0]))
    norm.running_var.copy_(torch.tensor([2.0, 4.0]))
    norm.num_batches_tracked.fill_(5)
    other = {"1.running_mean": torch.tensor([3.0, 5.0]), "1.running_var": torch.tensor([4.0, 8.0])}
    names = {id(buffer): name for name, buffer in model.named_buffers()}

    def all_reduce(tensor: torch.Tensor, op: Any = None) -> None:  # the sum over both ranks
        tensor += other[names[id(tensor)]]

    monkeypatch.setattr(dist, "all_reduce", all_reduce)
    _sync_buffers(model, DistContext(rank=0, world_size=2))
    assert norm.running_mean.tolist() == [2.0, 4.0] and norm.running_var.tolist() == [3.0, 6.0]
    assert int(norm.num_batches_tracked) == 5
    _sync_buffers(model, DistContext())  # one process: nothing to average
    assert norm.running_mean.tolist() == [2.0, 4.0]


# --- stopping and metrics.csv ---


def test_a_dataloader_worker_killed_by_sigterm_is_a_sigterm(tmp_path: Path) -> None:
    """SIGTERM to the process group can kill a loader worker first: the loader's RuntimeError is then
    the stop. last.pt is saved, the log says where, and the caller gets `Terminated` (exit 143)."""
    logged: list[str] = []
    run = _toy_run(tmp_path)
    run.reporter.log = logged.append  # type: ignore[method-assign]
    state = ckpt.State(epoch=1, step_in_epoch=3)
    died = RuntimeError("DataLoader worker (pid(s) 4242) exited unexpectedly: killed by signal: Terminated.")
    with pytest.raises(ckpt.Terminated) as info, ckpt.save_when_stopped(run, state, None):
        raise died
    assert info.value.__cause__ is died
    saved = load_checkpoint(run.last)
    assert (saved["epoch"], saved["step_in_epoch"]) == (1, 3)
    assert logged == [
        f"terminated (SIGTERM): saved {run.last} at epoch 2, batch 3; "
        f"continue with `officescore train --resume {run.last}`"
    ]


@pytest.mark.parametrize(
    ("state", "where"),
    [
        (ckpt.State(epoch=2), "after epoch 2"),
        (ckpt.State(epoch=2, step_in_epoch=4), "at epoch 3, batch 4"),
        (ckpt.State(epoch=2, step_in_epoch=5, pending_row={"epoch": 3}), "at epoch 3, while validating"),
    ],
)
def test_a_ctrl_c_says_where_the_run_stopped(tmp_path: Path, state: ckpt.State, where: str) -> None:
    logged: list[str] = []
    run = _toy_run(tmp_path)
    run.reporter.log = logged.append  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt) as info, ckpt.save_when_stopped(run, state, None):
        raise KeyboardInterrupt
    assert type(info.value) is KeyboardInterrupt
    assert logged == [
        f"interrupted: saved {run.last} {where}; continue with `officescore train --resume {run.last}`"
    ]


def test_an_error_that_is_no_stop_saves_nothing(tmp_path: Path) -> None:
    run = _toy_run(tmp_path)
    with pytest.raises(RuntimeError, match="out of memory"), ckpt.save_when_stopped(run, ckpt.State(), None):
        raise RuntimeError("out of memory")
    assert not run.last.exists()


def test_metrics_csv_writes_zero_as_zero_and_missing_as_empty(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    ckpt.write_metrics_csv(
        path, [{"epoch": 1, "loss": 1.23456789, "segm_map": 0.0, "bbox_map": None, "lr": 0}]
    )
    (row,) = csv.DictReader(path.open())
    assert row["loss"] == "1.23457" and row["segm_map"] == "0" and row["lr"] == "0"
    assert row["bbox_map"] == "" and row["loss_attributes"] == ""


# --- seeding and the data order ---


def test_rng_state_round_trips_every_generator_through_a_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    torch.save(rng_state(), tmp_path / "rng.pt")
    want = (torch.rand(3).tolist(), np.random.rand(3).tolist(), [random.random() for _ in range(3)])
    _other_process_rngs()
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert (torch.rand(3).tolist(), np.random.rand(3).tolist(), [random.random() for _ in range(3)]) == want


def test_a_loader_worker_seeds_numpy_and_python_from_its_torch_seed() -> None:
    draws = []
    for _ in range(2):
        torch.manual_seed(2**40 + 7)  # as torch seeds a worker
        _other_process_rngs_but_torch()
        worker_init(0)
        draws.append((np.random.rand(), random.random()))
    assert draws[0] == draws[1]


def _other_process_rngs_but_torch() -> None:
    np.random.seed(int(np.random.randint(1000)) + 1)
    random.seed(random.random())


def test_an_item_is_drawn_from_its_own_seed_and_leaves_the_streams_alone() -> None:
    items = SeededItems(_Photos(), seed=11)
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    before = rng_state()
    first = [items[i][0] for i in (4, 2, 4)]
    after = rng_state()
    assert torch.equal(first[0], first[2]) and not torch.equal(first[0] - 4, first[1] - 2)
    assert torch.equal(before["torch"], after["torch"])
    assert before["python"][1].tolist() == after["python"][1].tolist()
    assert before["numpy"][1].tolist() == after["numpy"][1].tolist()


def test_epoch_samplers_split_the_pool_evenly_and_reshuffle_each_epoch() -> None:
    pool = [10, 11, 12, 13, 14]  # --max-train-images: a pool, not the whole data set
    ranks = [EpochSampler(pool, seed=0, epoch=0, rank=r, world=2).indices for r in (0, 1)]
    assert [len(r) for r in ranks] == [3, 3]  # padded: both ranks take the same steps
    assert set(ranks[0] + ranks[1]) == set(pool)
    one = EpochSampler(list(range(20)), seed=0, epoch=0, rank=0, world=1).indices
    assert EpochSampler(list(range(20)), seed=0, epoch=1, rank=0, world=1).indices != one
    assert EpochSampler(list(range(20)), seed=0, epoch=0, rank=0, world=1, start=6).indices == one[6:]
    # Fewer photos than ranks (one photo, three GPUs): every rank still gets its step, or the
    # others would wait for it forever at the first gradient all-reduce.
    for pool, world in (([7], 3), ([7, 8], 5)):
        ranks = [EpochSampler(pool, seed=0, epoch=0, rank=r, world=world).indices for r in range(world)]
        assert [len(r) for r in ranks] == [1] * world and set(sum(ranks, [])) == set(pool)


# --- validation schedule and ground truth ---


def test_validation_every_n_epochs_and_after_the_last(monkeypatch: pytest.MonkeyPatch) -> None:
    from officescore.train import validate

    monkeypatch.setattr(validate, "_validate", lambda *args: {"segm_map": args[-1]})
    config = TrainConfig(epochs=5, val_every=2)
    run: Any = type("R", (), {"config": config, "model": None, "val_set": None, "device": None})()
    run.ctx, run.reporter = DistContext(), Reporter()
    due = [epoch + 1 for epoch in range(5) if validate_if_due(run, epoch) is not None]
    assert due == [2, 4, 5]


def test_max_val_images_validates_that_many_against_their_labels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--max-val-images 2 of 3: the first two are predicted and scored against their own labels;
    the model goes back to training."""
    import json

    import officescore.evaluate as evaluate
    from officescore.train.validate import _validate

    seen: dict[str, Any] = {}

    def predict_coco(model: Any, val_set: Any, device: Any, **kwargs: Any) -> list[Any]:
        seen["indices"] = list(kwargs["indices"])
        return []

    def evaluate_coco(gt: Any, predictions: list[Any]) -> dict[str, Any]:
        seen["images"] = [image["id"] for image in gt["images"]]
        return {"segm": {"map": 0.5, "ap50": 0.75, "ap75": 0.25}, "bbox": None}

    monkeypatch.setattr(evaluate, "predict_coco", predict_coco)
    monkeypatch.setattr(evaluate, "evaluate_coco", evaluate_coco)
    gt = {"images": [{"id": 7}, {"id": 8}, {"id": 9}], "annotations": [], "categories": []}
    (tmp_path / "val.json").write_text(json.dumps(gt))
    val_set: Any = type("V", (), {"annotation_file": tmp_path / "val.json", "image_ids": [7, 8, 9]})()
    val_set.__class__.__len__ = lambda self: 3
    model = nn.Linear(1, 1).eval()
    config = TrainConfig(max_val_images=2)
    metrics = _validate(model, val_set, config, torch.device("cpu"), DistContext(), Reporter(), 1)
    assert seen == {"indices": [0, 1], "images": [7, 8]} and model.training
    assert metrics == {
        "segm_map": 0.5,
        "segm_ap50": 0.75,
        "segm_ap75": 0.25,
        "bbox_map": None,
        "bbox_ap50": None,
        "bbox_ap75": None,
    }


def test_validating_some_images_scores_against_their_labels_only(tmp_path: Path) -> None:
    import json

    gt = {
        "images": [{"id": 7}, {"id": 8}, {"id": 9}],
        "annotations": [{"id": 1, "image_id": 7}, {"id": 2, "image_id": 9}, {"id": 3, "image_id": 8}],
        "categories": [{"id": 1, "name": "desk"}],
    }
    (tmp_path / "val.json").write_text(json.dumps(gt))
    val_set: Any = type("V", (), {"annotation_file": tmp_path / "val.json", "image_ids": [7, 8, 9]})()
    subset = _subset_gt(val_set, [0, 2])
    assert [image["id"] for image in subset["images"]] == [7, 9]
    assert [a["id"] for a in subset["annotations"]] == [1, 2]
    assert subset["categories"] == gt["categories"]


# --- settings ---


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"epochs": 0}, "--epochs 0: must be at least 1"),
        ({"batch_size": 0}, "--batch-size 0: must be at least 1"),
        ({"val_every": 0}, "--val-every 0: must be at least 1"),
        ({"lr": 0.0}, "--lr 0: must be positive"),
        ({"patience": -1}, "--patience -1: must not be negative"),
        ({"workers": -1}, "--workers -1: must not be negative"),
        ({"img_size": 0}, "--img-size 0: must be at least 64 pixels"),
        ({"img_size": 63}, "--img-size 63: must be at least 64 pixels"),
        ({"max_minutes": 0.0}, "--train-minutes 0: must be positive"),
        ({"log": "wandb"}, "--log 'wandb': choose one of"),
        ({"warmup_iters": -5}, "--warmup-iters -5: must not be negative"),
        ({"max_train_images": 0}, "--max-train-images 0: must be at least 1"),
        ({"max_train_images": -3}, "--max-train-images -3: must be at least 1"),
        ({"max_val_images": 0}, "max_val_images 0: must be at least 1"),
        ({"weight_decay": -0.1}, "weight_decay -0.1: must not be negative"),
        ({"clip_grad": -1.0}, "clip_grad -1.0: must not be negative"),
        ({"momentum": 1.0}, "momentum 1.0: must be from 0 to below 1"),
        ({"momentum": -0.1}, "momentum -0.1: must be from 0"),
        ({"min_lr_ratio": 1.5}, "min_lr_ratio 1.5: must be from 0 to 1"),
    ],
)
def test_settings_out_of_range_are_refused(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=f"^{message}"):
        check_config(TrainConfig(**overrides))


def test_settings_at_their_smallest_are_accepted() -> None:
    smallest = TrainConfig(epochs=1, batch_size=1, val_every=1, lr=1e-9, patience=0, workers=0, img_size=64)
    check_config(smallest)
    check_config(
        TrainConfig(
            warmup_iters=0,
            max_train_images=1,
            max_val_images=1,
            weight_decay=0.0,
            clip_grad=0.0,
            momentum=0.0,
        )
    )
    check_config(TrainConfig(momentum=0.0, min_lr_ratio=1.0))
    check_config(TrainConfig(momentum=0.99))
    check_config(TrainConfig(min_lr_ratio=0.0))


def test_a_run_saved_with_max_train_images_0_resumes_with_every_image(tmp_path: Path) -> None:
    """Before 0 was refused it meant every image: a run saved so still resumes, with every image."""
    from officescore.model import CHECKPOINT_FORMAT, save_checkpoint
    from officescore.train.loop import _resolve_resume

    run_dir = tmp_path / "runs" / "old"
    saved = TrainConfig(data=tmp_path, max_train_images=0, max_val_images=0, epochs=3).to_json(
        relative_to=run_dir
    )
    last = run_dir / "weights" / "last.pt"
    last.parent.mkdir(parents=True)
    save_checkpoint(last, model={}, arch=TrainConfig().arch, classes=["desk"], epoch=1, args=saved)
    assert torch.load(last, weights_only=True)["format"] == CHECKPOINT_FORMAT
    resumed, _ = _resolve_resume(TrainConfig(resume=last))
    check_config(resumed)
    assert (resumed.max_train_images, resumed.max_val_images, resumed.epochs) == (None, None, 3)


def test_a_model_option_given_outright_beats_img_size() -> None:
    config = TrainConfig(img_size=640, model_kwargs={"min_size": 480})
    assert config.resolved_model_kwargs() == {"min_size": 480, "max_size": 640}


def test_args_json_paths_are_relative_to_the_run_folder_and_come_back(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "train"
    config = TrainConfig(
        data=tmp_path / "data", project=tmp_path / "runs", resume=run_dir / "weights" / "last.pt"
    )
    saved = config.to_json(relative_to=run_dir)
    assert saved["resume"] == str(Path("weights") / "last.pt") and saved["data"] == str(
        Path("..") / ".." / "data"
    )
    back = TrainConfig.from_json({**saved, "unknown_later_setting": 1}, relative_to=run_dir)
    assert back.resume == run_dir / "weights" / "last.pt" and back.data == tmp_path / "data"
    assert back.project == tmp_path / "runs"  # no runs/train/.. in what a resumed run prints


def test_a_result_without_best_pt_says_null_in_json(tmp_path: Path) -> None:
    result = TrainResult(tmp_path, 1, None, None, tmp_path / "last.pt", None, [], False, 1.0, "ab")
    out = result.to_dict()
    assert out["best_checkpoint"] is None and out["last_checkpoint"] == str(tmp_path / "last.pt")


# --- plots ---


def test_each_plot_goes_to_its_file_and_zero_values_are_drawn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import matplotlib.figure

    from officescore.train.plots import write_plots

    saved: dict[str, matplotlib.figure.Figure] = {}
    real = matplotlib.figure.Figure.savefig

    def spy(self: matplotlib.figure.Figure, path: Any, *args: Any, **kwargs: Any) -> None:
        saved[Path(path).name] = self
        real(self, path, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", spy)
    rows = [
        {"epoch": 1, "loss": 2.0, "lr": 0.01, "segm_map": 0.0, "bbox_map": 0.0},
        {"epoch": 2, "loss": 1.0, "lr": 0.005, "segm_map": 0.1, "bbox_map": None},
    ]
    write_plots(tmp_path, rows)
    titles = {name: figure.axes[0].get_title() for name, figure in saved.items()}
    assert titles == {
        "losses.png": "training losses (epoch means)",
        "map.png": "validation AP",
        "lr.png": "learning rate (end of epoch)",
    }
    lines = {line.get_label(): list(line.get_xdata()) for line in saved["map.png"].axes[0].lines}
    assert lines == {"mask mAP": [1, 2], "box mAP": [1]}  # an mAP of 0 is a point; None is not


class _Statuses(Reporter):
    """Keeps every progress status a stage shows."""

    def __init__(self) -> None:
        self.shown: list[str] = []

    @contextmanager
    def stage(self, description: str, total: int | None = None) -> Iterator[Stage]:
        outer = self

        class _Keep(Stage):
            def advance(self, n: int = 1, status: str = "") -> None:
                outer.shown.append(status)

        yield _Keep()


def test_the_progress_line_ends_on_the_epochs_mean_loss_as_the_table_shows_it(tmp_path: Path) -> None:
    """The progress line showed the last step's loss (4.845) while the table showed the epoch's mean
    (6.106) for the same epoch: it now shows the mean so far, so the finished line reads as the row."""
    statuses = _Statuses()
    run = _toy_run(tmp_path, reporter=statuses)
    torch.manual_seed(0)
    row = train_one_epoch(run, ckpt.State())
    assert len(statuses.shown) == 5
    assert statuses.shown[-1].startswith(f"loss {row['loss']:.3f} mask {row['loss_mask']:.3f} lr "), (
        statuses.shown
    )


def test_trackers_are_shown_whole_paths_and_the_device_auto_chose(tmp_path: Path) -> None:
    """args.json keeps paths relative to the run folder: MLflow and TensorBoard showed data =
    ../../../data/dataset and device = auto; they get whole paths and the device auto picked."""
    from types import SimpleNamespace

    from officescore.train.loop import _tracked_args

    run_dir = tmp_path / "runs" / "train" / "train2"
    args = {"data": "../../../data/dataset", "project": "..", "resume": None, "device": "auto", "lr": 0.01}
    run = SimpleNamespace(args=args, run_dir=run_dir, device=torch.device("cpu"))
    shown = _tracked_args(run)  # type: ignore[arg-type]
    assert shown == {
        "data": str(tmp_path.resolve() / "data" / "dataset"),
        "project": str(tmp_path.resolve() / "runs" / "train"),
        "resume": None,
        "device": "auto (cpu)",
        "lr": 0.01,
    }
    assert args["data"] == "../../../data/dataset"  # args.json's own copy is left as it is
    args["resume"] = "../train/weights/last.pt"  # a resumed run: the checkpoint it went on from
    resume = _tracked_args(run)["resume"]  # type: ignore[arg-type]
    assert resume == str(tmp_path.resolve() / "runs" / "train" / "train" / "weights" / "last.pt")


def test_the_summary_prints_notes_and_paths_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    """Rich read `officescore[track]` in the tracking note (and `[x]` in a run folder's name) as
    markup and dropped it: the note told a newcomer to `pip install 'officescore'`."""
    from officescore.cli import train as train_cli

    run_dir = Path("runs [old]") / "train"  # short: the table's title wraps at its width
    weights = run_dir / "weights"
    result = TrainResult(
        run_dir=run_dir,
        epochs_completed=1,
        best_metric=0.5,
        best_epoch=1,
        last_checkpoint=weights / "last.pt",
        best_checkpoint=weights / "best.pt",
        history=[],
        stopped_early=False,
        seconds=1.0,
        weights_sha256="0" * 64,
        notes=["tracking: nothing logged (pip install 'officescore[track]')"],
    )
    train_cli._summary(result)
    out = capsys.readouterr().out
    assert "pip install 'officescore[track]'" in out
    assert f"training: {run_dir}" in out and f"weights: {weights / 'last.pt'}, {weights / 'best.pt'}" in out
