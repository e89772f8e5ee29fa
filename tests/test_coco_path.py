"""The user's path from COCO weights, offline: `train` (weights "coco", the default) through every
command that takes its checkpoint. torchvision's pretrained files cannot be downloaded here, so a
randomly initialised state dict of each file's architecture sits in a temporary hub cache under the
name torchvision's weight enum gives it (a cached file is loaded as it is; only downloads are
hash-checked). The suite otherwise trains from weights "none", where nothing is frozen: a checkpoint
fine-tuned from COCO weights (frozen BatchNorm without batch counters, frozen backbone layers) went
untested, and loading and resuming one broke unnoticed."""

from __future__ import annotations

import json
import urllib.error
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d
from trainsetup import FAST_MODEL, make_dataset

from officescore.cli import main
from officescore.label.predict import load_predictor
from officescore.model import (
    _ARCH_WEIGHTS,
    build_model,
    cached_weights_path,
    hub_checkpoint_dir,
    load_any,
    load_checkpoint,
    save_checkpoint,
)

# The weight files the tests use (enum -> the torchvision model whose random state stands in).
MOBILENET = "maskrcnn_mobilenet_v3_fpn"
V2 = "maskrcnn_resnet50_fpn_v2"  # train's default
FILES = {
    _ARCH_WEIGHTS[V2][0]: lambda: torchvision.models.get_model(V2, weights=None, weights_backbone=None),
    _ARCH_WEIGHTS[MOBILENET][0]: lambda: torchvision.models.get_model(
        "fasterrcnn_mobilenet_v3_large_fpn", weights=None, weights_backbone=None
    ),
    _ARCH_WEIGHTS[MOBILENET][1]: lambda: torchvision.models.mobilenet_v3_large(weights=None),
}
TINY = {"min_size": 64, "max_size": 64}
OPTIONS = [f"--model-opt={key}={value}" for key, value in FAST_MODEL.items()]


def _no_network(url: str, *args: object, **kwargs: object) -> None:
    raise urllib.error.URLError("network unreachable (test)")


@pytest.fixture(scope="module")
def torch_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A hub cache holding the pretrained files (written once: v2's is 180 MB); downloads fail."""
    home = tmp_path_factory.mktemp("torch_home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TORCH_HOME", str(home))
        patch.setattr(torch.hub, "download_url_to_file", _no_network)
        hub_checkpoint_dir().mkdir(parents=True)
        for enum, make in FILES.items():
            torch.manual_seed(0)
            torch.save(make().state_dict(), cached_weights_path(enum))
        yield home


@pytest.fixture(scope="module")
def data(torch_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("coco_data"), images=5, size=64, seed=1)


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out, err = capsys.readouterr()
    assert int(exit_info.value.code or 0) == 0, err
    return out


def test_torchvision_loads_the_cached_file_offline(torch_home: Path) -> None:
    """The stand-in is what torchvision's own loader (check_hash=True) returns: no download, no hash."""
    enum = _ARCH_WEIGHTS[MOBILENET][0]
    model = torchvision.models.get_model("fasterrcnn_mobilenet_v3_large_fpn", weights=enum)
    cached = torch.load(cached_weights_path(enum), weights_only=True)
    key = "rpn.head.conv.0.0.weight"
    assert torch.equal(model.state_dict()[key], cached[key])


def _frozen_keys(arch: str, classes: list[str]) -> list[str]:
    """State keys training must leave as the COCO file has them: parameters of the frozen backbone
    layers (trainable_backbone_layers' default) and every frozen BatchNorm's statistics."""
    model = build_model(arch, classes, weights="none", pretrained_layout=True)
    keys = [name for name, p in model.named_parameters() if not p.requires_grad]
    for name, module in model.named_modules():
        if isinstance(module, FrozenBatchNorm2d):
            keys += [f"{name}.{buffer}" for buffer, _ in module.named_buffers()]
    return keys


def _photo(path: Path) -> torch.Tensor:
    with Image.open(path) as image:
        return torch.from_numpy(np.asarray(image.convert("RGB"))).permute(2, 0, 1).float() / 255


def _same_outputs(a: nn.Module, b: object, image: torch.Tensor) -> None:
    with torch.no_grad():
        (x,), (y,) = a([image]), b([image])  # type: ignore[operator]
    assert set(x) >= {"boxes", "scores", "masks"} and x["boxes"].shape == y["boxes"].shape
    for key in ("boxes", "scores", "labels", "masks"):
        assert torch.allclose(x[key].float(), y[key].float(), atol=1e-4), key


def _label_and_curate(
    best: Path, data: Path, classes: list[str], tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """prelabel, what `label backend` loads, audit and select, each from the checkpoint `best`."""
    photo, cpu = str(sorted((data / "images").iterdir())[0]), ["--device", "cpu"]
    _cli(["prelabel", photo, "--model", str(best), "--out", str(tmp / "pre.json"), *cpu], capsys)
    assert load_predictor(best, device="cpu").classes == classes
    _cli(["audit", str(data), "--model", str(best), "--out", str(tmp / "audit"), *cpu], capsys)
    pool = [str(data / "images"), "-n", "1", "--out", str(tmp / "next.csv")]
    _cli(["select", *pool, "--model", str(best), *cpu], capsys)


@pytest.mark.slow  # about a minute each on 2 cores
@pytest.mark.parametrize("arch", [V2, MOBILENET])
def test_a_model_trained_from_coco_goes_through_every_command(
    arch: str, data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = tmp_path / "runs"
    chosen = [] if arch == V2 else ["--arch", arch]  # v2 and --weights coco: train's defaults
    common = ["--device", "cpu"]
    trained = json.loads(
        _cli(
            ["train", "--data", str(data), "--project", str(runs), "--epochs", "1", "--img-size", "64"]
            + ["--workers", "0", "--log", "none", "--no-attributes", "--json", *common, *chosen, *OPTIONS],
            capsys,
        )
    )
    run = Path(trained["run_dir"])
    best = run / "weights" / "best.pt"
    checkpoint = load_checkpoint(best)
    classes = list(checkpoint["classes"])
    assert checkpoint["arch"] == arch and checkpoint["args"]["weights"] == "coco"

    # The default trainable_backbone_layers' frozen layers (and frozen BatchNorm) are the COCO file's.
    coco = torch.load(cached_weights_path(_ARCH_WEIGHTS[arch][0]), weights_only=True)
    frozen = _frozen_keys(arch, classes)
    assert frozen and all(torch.equal(checkpoint["model"][k], coco[k]) for k in frozen)
    trained_key = "backbone.fpn.layer_blocks.0.0.weight"
    assert not torch.equal(checkpoint["model"][trained_key], coco[trained_key])  # training happened
    if arch == MOBILENET:  # frozen BatchNorm: no batch counters in the backbone
        assert not any(
            k.startswith("backbone.body") and "num_batches_tracked" in k for k in checkpoint["model"]
        )

    # Reloaded, it is the model as trained: laid out as for COCO, its saved weights loaded.
    as_trained = build_model(
        arch, classes, weights="none", pretrained_layout=True, **checkpoint["model_kwargs"]
    )
    as_trained.load_state_dict(checkpoint["model"])
    image = _photo(sorted((data / "images").iterdir())[0])
    loaded = load_any(best)
    _same_outputs(as_trained.eval(), loaded.model, image)

    photo = str(sorted((data / "images").iterdir())[0])
    _cli(
        ["eval", "--model", str(best), "--data", str(data), "--project", str(tmp_path / "eval"), *common],
        capsys,
    )
    _cli(["score", photo, "--model", str(best), "--precision", "fp32", "--json", *common], capsys)
    scripted = tmp_path / "model.torchscript.pt"
    _cli(["export", "--model", str(best), "--format", "torchscript", "--out", str(scripted)], capsys)
    _same_outputs(as_trained, load_any(scripted).model, image)
    if arch == MOBILENET:  # label backend's default arch; v2's load the same way (load_any), slower
        _label_and_curate(best, data, classes, tmp_path, capsys)
        warm = build_model(arch, classes, weights=best)  # a `label backend --train` job's warm start
        assert torch.equal(warm.state_dict()[trained_key], checkpoint["model"][trained_key])
        # ... laid out as it was trained: frozen BatchNorm, the same parameters frozen
        assert any(isinstance(m, FrozenBatchNorm2d) for m in warm.backbone.modules())
        assert {n for n, p in warm.named_parameters() if not p.requires_grad} == {
            n for n, p in as_trained.named_parameters() if not p.requires_grad
        }

    # Resumed (stopped after epoch 1 of 2), the run keeps its frozen layers and its optimiser state.
    last = run / "weights" / "last.pt"
    stopped = torch.load(last, weights_only=True)
    stopped["args"]["epochs"] = 2
    torch.save(stopped, last)
    resumed = json.loads(
        _cli(["train", "--resume", str(run), "--workers", "0", "--log", "none", "--json", *common], capsys)
    )
    assert resumed["epochs_completed"] == 2
    final = load_checkpoint(last)
    assert final["epoch"] == 2 and all(torch.equal(final["model"][k], coco[k]) for k in frozen)
    assert not torch.equal(final["model"][trained_key], checkpoint["model"][trained_key])


def test_imagenet_weights_load_and_their_model_reloads(torch_home: Path, tmp_path: Path) -> None:
    """weights "imagenet" (backbone only) loads the backbone file; the model saved from it loads."""
    classes = ["desk", "chair"]
    model = build_model(MOBILENET, classes, weights="imagenet", **TINY)
    assert "ImageNet backbone" in model.weights_note
    assert isinstance(model.backbone.body["0"][1], FrozenBatchNorm2d)
    imagenet = torch.load(cached_weights_path(_ARCH_WEIGHTS[MOBILENET][1]), weights_only=True)
    assert torch.equal(model.backbone.body["1"].block[0][0].weight, imagenet["features.1.block.0.0.weight"])
    path = tmp_path / "best.pt"
    save_checkpoint(path, model=model.state_dict(), arch=MOBILENET, classes=classes, model_kwargs=TINY)
    _same_outputs(model.eval(), load_any(path).model, torch.rand(3, 64, 80))


def test_score_with_the_coco_model_itself(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--model coco` (zero-shot: COCO's classes mapped to office classes) takes the cached file."""
    photo = str(sorted((data / "images").iterdir())[0])
    scored = json.loads(_cli(["score", photo, "--model", "coco", "--device", "cpu", "--json"], capsys))
    assert scored["failed"] == 0 and len(scored["photos"]) == 1
