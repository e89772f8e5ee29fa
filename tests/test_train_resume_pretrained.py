"""Resuming a run that started from pretrained weights (`--weights coco`, the default, or imagenet)."""

from __future__ import annotations

import shutil
import urllib.error
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
import torchvision
from torchvision.ops.misc import FrozenBatchNorm2d
from trainsetup import make_dataset, small_config

from officescore.model import build_model, hub_checkpoint_dir, load_checkpoint, started_pretrained
from officescore.progress import Reporter, Stage
from officescore.train import TrainConfig, train


class _CopyAfterEpoch1(Reporter):
    """Copies last.pt when epoch 2 starts, as a SIGKILL during epoch 2 would leave it."""

    def __init__(self, last: Path, copy: Path) -> None:
        self.last, self.copy = last, copy

    @contextmanager
    def stage(self, description: str, total: int | None = None) -> Iterator[Stage]:
        if description.startswith("epoch 2/"):
            self.copy.parent.mkdir(parents=True)
            shutil.copy(self.last, self.copy)
        yield Stage()


def _offline_imagenet_resnet18(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, torch.Tensor]:
    """A stand-in for torchvision's ImageNet resnet18 file in a fresh TORCH_HOME (resnet18's "coco":
    an ImageNet backbone); downloads fail at once. Returns its state dict."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def no_network(url: str, *args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("network unreachable (test)")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    folder = hub_checkpoint_dir()
    folder.mkdir(parents=True)
    torch.manual_seed(0)
    imagenet = torchvision.models.resnet18().state_dict()
    torch.save(imagenet, folder / "resnet18-f37072fd.pth")
    return imagenet


def test_a_run_from_pretrained_weights_resumes_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resumed run was built as from random weights (every BatchNorm trained, no layer frozen),
    so the saved optimizer state did not fit it: `train --resume` of any run started from COCO or
    ImageNet weights stopped with torch's "loaded state dict contains a parameter group that
    doesn't match". Now it is built as the run was: 2 epochs straight == 1 + resume, bitwise."""
    imagenet = _offline_imagenet_resnet18(tmp_path, monkeypatch)
    data = make_dataset(tmp_path, images=10, size=64, seed=5)
    project = tmp_path / "runs"
    killed = tmp_path / "killed" / "weights" / "last.pt"
    config = small_config(data, project, weights="coco")
    straight = train(config, reporter=_CopyAfterEpoch1(project / "train" / "weights" / "last.pt", killed))
    assert load_checkpoint(killed)["epoch"] == 1

    resumed = train(TrainConfig(resume=killed, data=data, device="cpu", workers=0))
    assert resumed.epochs_completed == 2
    left, right = (
        load_checkpoint(straight.last_checkpoint)["model"],
        load_checkpoint(resumed.last_checkpoint)["model"],
    )
    assert left.keys() == right.keys()
    for key in left:
        assert torch.equal(left[key], right[key]), key
    # the first layers stayed frozen at the ImageNet weights, their BatchNorm too
    assert torch.equal(right["backbone.body.layer1.0.conv1.weight"], imagenet["layer1.0.conv1.weight"])
    assert torch.equal(right["backbone.body.bn1.running_var"], imagenet["bn1.running_var"])


def test_fine_tuning_a_model_from_a_pretrained_start_keeps_its_frozen_layers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`train --weights best.pt` (and every `label backend --train` job, which warm-starts from the
    model answering) built a model that came from COCO/ImageNet as if from random weights: BatchNorm
    trained on batches of 2 and the frozen first layers thawed. It now keeps the checkpoint's layout,
    which the checkpoint records; one saved before that is known by its start or its frozen BatchNorm,
    and a fine-tune so built resumes exactly."""
    imagenet = _offline_imagenet_resnet18(tmp_path, monkeypatch)
    data = make_dataset(tmp_path, images=10, size=64, seed=5)
    project = tmp_path / "runs"
    first = train(small_config(data, project, weights="coco", epochs=1, name="first"))
    start = load_checkpoint(first.last_checkpoint)
    assert start["pretrained_layout"] is True

    killed = tmp_path / "killed" / "weights" / "last.pt"
    reporter = _CopyAfterEpoch1(project / "tuned" / "weights" / "last.pt", killed)
    tuned = train(small_config(data, project, weights=str(first.last_checkpoint), name="tuned"), reporter)
    state = load_checkpoint(tuned.last_checkpoint)
    assert state["pretrained_layout"] is True
    assert "backbone.body.bn1.num_batches_tracked" not in state["model"]  # frozen BatchNorm
    assert torch.equal(state["model"]["backbone.body.bn1.running_var"], imagenet["bn1.running_var"])
    assert torch.equal(
        state["model"]["backbone.body.layer1.0.conv1.weight"], imagenet["layer1.0.conv1.weight"]
    )
    assert not torch.equal(
        state["model"]["backbone.body.layer4.0.conv1.weight"], imagenet["layer4.0.conv1.weight"]
    )

    resumed = train(TrainConfig(resume=killed, data=data, device="cpu", workers=0))
    right = load_checkpoint(resumed.last_checkpoint)["model"]
    for key in state["model"]:
        assert torch.equal(state["model"][key], right[key]), key

    # checkpoints saved before the layout was recorded: by their start, else by frozen BatchNorm
    older = {k: v for k, v in start.items() if k != "pretrained_layout"}
    assert started_pretrained(older)
    older["args"] = {**older["args"], "weights": "runs/train/x/weights/best.pt"}
    assert started_pretrained(older)
    torch.save(older, tmp_path / "older.pt")
    rebuilt = build_model("maskrcnn_resnet18_fpn", start["classes"], weights=tmp_path / "older.pt")
    assert any(isinstance(m, FrozenBatchNorm2d) for m in rebuilt.modules())
    scratch = build_model("maskrcnn_resnet18_fpn", start["classes"], weights="none")
    assert scratch.pretrained_layout is False  # what a run from scratch records
    assert not started_pretrained({**older, "pretrained_layout": False})
