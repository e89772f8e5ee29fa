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
from trainsetup import make_dataset, small_config

from officescore.model import hub_checkpoint_dir, load_checkpoint
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


def test_a_run_from_pretrained_weights_resumes_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resumed run was built as from random weights (every BatchNorm trained, no layer frozen),
    so the saved optimizer state did not fit it: `train --resume` of any run started from COCO or
    ImageNet weights stopped with torch's "loaded state dict contains a parameter group that
    doesn't match". Now it is built as the run was: 2 epochs straight == 1 + resume, bitwise."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def no_network(url: str, *args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("network unreachable (test)")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    folder = hub_checkpoint_dir()
    folder.mkdir(parents=True)
    torch.manual_seed(0)
    imagenet = torchvision.models.resnet18().state_dict()
    torch.save(imagenet, folder / "resnet18-f37072fd.pth")  # resnet18's "coco": an ImageNet backbone
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
