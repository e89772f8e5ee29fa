"""Training settings the README promises, each observed while training runs: the learning rate scaled
with the global batch, AdamW, gradient clipping, bf16 autocast on the CPU, `--weights PATH`.

Every run is one short epoch of ResNet18-FPN at 64 px on a tiny synthetic data set.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook
from trainsetup import cli_model_options, make_dataset, small_config

from officescore.cli import main
from officescore.model import load_checkpoint
from officescore.train import TrainResult, train
from officescore.train import setup as train_module


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("settings"), images=10, size=64, seed=5)


@pytest.fixture(scope="module")
def adamw_run(data: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    """AdamW with the default learning rate at batch 4: one epoch of one step."""
    project = tmp_path_factory.mktemp("adamw") / "runs"
    return train(
        small_config(data, project, optimizer="adamw", lr=None, epochs=1, batch_size=4, max_train_images=4)
    )


def _spy_on_models(monkeypatch: pytest.MonkeyPatch) -> list[tuple[torch.nn.Module, dict[str, Any]]]:
    """Every model train() builds, with a copy of its weights as built (before any training step)."""
    built: list[tuple[torch.nn.Module, dict[str, Any]]] = []
    real = train_module.build_model

    def spy(*args: Any, **kwargs: Any) -> torch.nn.Module:
        model = real(*args, **kwargs)
        built.append((model, {k: v.clone() for k, v in model.state_dict().items()}))
        return model

    monkeypatch.setattr(train_module, "build_model", spy)
    return built


def test_default_lr_is_scaled_by_the_global_batch_and_adamw_is_used(adamw_run: TrainResult) -> None:
    """README: AdamW's 1e-3 at 16 images per step, scaled linearly: 4 images -> 2.5e-4."""
    args = json.loads((adamw_run.run_dir / "args.json").read_text())
    assert args["lr"] == pytest.approx(1e-3 * 4 / 16) and args["weight_decay"] == 0.05
    saved = load_checkpoint(adamw_run.last_checkpoint)
    group = saved["optimizer"]["param_groups"][0]
    assert group["initial_lr"] == pytest.approx(2.5e-4)  # what the schedule really peaks at
    assert "betas" in group and "amsgrad" in group  # AdamW's settings, not SGD's momentum
    moments = next(iter(saved["optimizer"]["state"].values()))
    assert {"exp_avg", "exp_avg_sq"} <= set(moments)  # Adam's moment estimates were kept
    assert group["weight_decay"] == 0.05


def test_weights_path_starts_from_an_officescore_checkpoint(
    adamw_run: TrainResult,
    data: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`train --weights runs/.../last.pt` (what --resume's refusal suggests): its weights, a new run."""
    built = _spy_on_models(monkeypatch)
    args = ["train", "--data", str(data), "--weights", str(adamw_run.last_checkpoint), "--epochs", "1"]
    args += ["--arch", "maskrcnn_resnet18_fpn", "--img-size", "64", "--workers", "0", "--device", "cpu"]
    args += ["--max-train-images", "2", "--project", str(tmp_path / "runs"), "--json", *cli_model_options()]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 0
    result = json.loads(capsys.readouterr().out)
    assert "weights: weights from checkpoint last.pt" in result["notes"]
    assert result["epochs_completed"] == 1  # a new run of its own (resuming would find nothing to do)
    source, (_, start) = load_checkpoint(adamw_run.last_checkpoint)["model"], built[0]
    assert start.keys() == source.keys()
    for key, value in source.items():
        assert torch.equal(start[key], value), key


def test_weights_that_cannot_be_loaded_leave_no_run_folder(data: Path, tmp_path: Path) -> None:
    """A damaged --weights file is a one-line error before anything is written: no empty run folder
    (train, then train2 for the next try) is left behind."""
    damaged = tmp_path / "best.pt"
    damaged.write_bytes(b"PK\x03\x04 not a whole checkpoint")
    args = ["train", "--data", str(data), "--weights", str(damaged), "--epochs", "1", "--device", "cpu"]
    args += ["--arch", "maskrcnn_resnet18_fpn", "--project", str(tmp_path / "runs")]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


class _GradNorms:
    """The gradient norm each optimiser step sees (a global step pre-hook: no code path is skipped)."""

    def __init__(self) -> None:
        self.norms: list[float] = []

    def __call__(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        self.norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))


@pytest.fixture()
def grad_norms() -> Iterator[_GradNorms]:
    recorder = _GradNorms()
    handle = register_optimizer_step_pre_hook(recorder)
    yield recorder
    handle.remove()


@pytest.mark.parametrize("clip", [0.05, 0.0])
def test_gradient_clipping_bounds_every_step(
    data: Path, tmp_path: Path, grad_norms: _GradNorms, clip: float
) -> None:
    """clip_grad 0.05: no step sees a gradient norm above it; 0 disables (then norms are far above)."""
    train(small_config(data, tmp_path / "runs", epochs=1, max_train_images=4, clip_grad=clip))
    assert len(grad_norms.norms) == 2  # 4 images, batch 2
    if clip:
        assert max(grad_norms.norms) <= clip * (1 + 1e-4), grad_norms.norms
    else:
        assert min(grad_norms.norms) > 0.5, grad_norms.norms  # so the bound above is the clipping's doing


@pytest.mark.parametrize(
    ("amp", "native_bf16", "expected"),
    [(True, True, torch.bfloat16), (True, False, torch.float32), (False, True, torch.float32)],
)
def test_amp_on_cpu_is_bf16_autocast_only_with_native_bf16(
    data: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    amp: bool,
    native_bf16: bool,
    expected: torch.dtype,
) -> None:
    """This CPU has no native bf16, so the capability check is forced both ways; the backbone's first
    convolution reports the dtype it really computed in during each training step."""
    monkeypatch.setattr(train_module, "cpu_bf16_helps", lambda: native_bf16)
    seen: list[tuple[bool, torch.dtype]] = []
    real_build = train_module.build_model

    def build_and_watch(*args: Any, **kwargs: Any) -> torch.nn.Module:
        model = real_build(*args, **kwargs)

        def watch(module: torch.nn.Module, inputs: Any, output: torch.Tensor) -> None:
            seen.append((module.training, output.dtype))

        model.backbone.body.conv1.register_forward_hook(watch)
        return model

    monkeypatch.setattr(train_module, "build_model", build_and_watch)
    result = train(small_config(data, tmp_path / "runs", epochs=1, max_train_images=2, amp=amp))
    training = [dtype for is_training, dtype in seen if is_training]
    assert training and set(training) == {expected}, seen
    note = next((n for n in result.notes if n.startswith("--amp")), "")
    assert ("bf16 autocast on this CPU" in note) == (expected == torch.bfloat16)
    assert ("training in float32" in note) == (amp and not native_bf16)
