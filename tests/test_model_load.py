"""Loading a checkpoint without initialising the weights it overwrites (model.skeleton_model): the
same model as building it for real, also with the attribute head, frozen BatchNorm or state that a
checkpoint does not hold, and other threads unaffected."""

from __future__ import annotations

import threading
import urllib.error
from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision
from torch import nn

from officescore import model as model_module
from officescore.attributes import load_schema
from officescore.model import (
    ARCHS,
    build_model,
    coco_detector,
    hub_checkpoint_dir,
    load_any,
    model_from_checkpoint,
    save_checkpoint,
    skeleton_model,
    started_pretrained,
)

CLASSES = ["desk", "chair", "mug", "plant", "lamp"]
TINY = {"min_size": 64, "max_size": 64, "rpn_pre_nms_top_n_test": 50, "rpn_post_nms_top_n_test": 20}


@pytest.fixture(autouse=True)
def _empty_torch_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretrained weights come only from files a test puts there; downloads fail at once."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path_factory.mktemp("torch_home")))

    def no_network(url: str, *args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("network unreachable (test)")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)


def _trained_looking(model: nn.Module) -> nn.Module:
    """Seeded BatchNorm statistics and counters, so a loader that kept fresh ones would show."""
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(torch.rand(n, generator=generator) * 0.2 - 0.1)
                module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
                module.num_batches_tracked.fill_(7)
    return model


def _write(path: Path, arch: str, **kwargs: Any) -> Path:
    torch.manual_seed(0)
    model = _trained_looking(build_model(arch, CLASSES, weights="none", **kwargs))
    save_checkpoint(path, model=model.state_dict(), arch=arch, classes=CLASSES, model_kwargs=kwargs)
    return path


def _the_old_way(path: Path) -> nn.Module:
    """What model_from_checkpoint did before: build for real (random weights), then copy in."""
    data = torch.load(path, weights_only=True)
    model = build_model(data["arch"], data["classes"], weights="none", **data["model_kwargs"])
    model.load_state_dict(data["model"])
    return model.eval()


def _all_tensors(model: nn.Module) -> list[torch.Tensor]:
    """Parameters, buffers and the tensors modules keep as attributes (AnchorGenerator's anchors)."""
    found = list(model.state_dict().values()) + [b for b in model.buffers()]
    for module in model.modules():
        for value in vars(module).values():
            items = value if isinstance(value, (list, tuple)) else [value]
            found += [t for t in items if isinstance(t, torch.Tensor)]
    return found


def _assert_same_model(old: nn.Module, new: nn.Module, detections: bool = True) -> dict[str, torch.Tensor]:
    assert not any(t.is_meta for t in _all_tensors(new))
    assert not new.training
    old_state, new_state = old.state_dict(), new.state_dict()
    assert list(old_state) == list(new_state)
    for key, value in old_state.items():
        assert torch.equal(value, new_state[key]), key
    assert [p.requires_grad for p in old.parameters()] == [p.requires_grad for p in new.parameters()]
    image = [torch.rand(3, 64, 80, generator=torch.Generator().manual_seed(5))]
    with torch.no_grad():
        (a,), (b,) = old(image), new(image)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert not detections or len(a["boxes"]) > 0  # something to compare
    return a


@pytest.mark.parametrize("arch", ARCHS)
def test_a_loaded_checkpoint_is_the_model_built_for_real(tmp_path: Path, arch: str) -> None:
    path = _write(tmp_path / "model.pt", arch, **TINY)
    new, classes = model_from_checkpoint(path)
    assert classes == CLASSES
    _assert_same_model(_the_old_way(path), new)


def test_a_loaded_attribute_head_is_the_one_built_for_real(tmp_path: Path) -> None:
    schema = load_schema().to_dict()
    path = _write(tmp_path / "model.pt", "maskrcnn_resnet18_fpn", attributes=schema, **TINY)
    loaded = load_any(path)
    out = _assert_same_model(_the_old_way(path), loaded.model)  # type: ignore[arg-type]
    assert "attributes" in out and "attribute_scores" in out
    assert [a.name for a in loaded.attributes.attributes] == ["armrests", "kind", "size"]


def test_a_checkpoint_trained_from_a_pretrained_backbone_loads(tmp_path: Path) -> None:
    """Frozen BatchNorm (a pretrained backbone) saves no batch counters; the check that names
    misfits counted them as missing and refused every such checkpoint."""
    folder = hub_checkpoint_dir()
    folder.mkdir(parents=True)
    torch.save(torchvision.models.resnet18().state_dict(), folder / "resnet18-f37072fd.pth")
    trained = build_model("maskrcnn_resnet18_fpn", CLASSES, weights="coco", **TINY)
    assert isinstance(trained.backbone.body.bn1, torchvision.ops.misc.FrozenBatchNorm2d)
    path = tmp_path / "best.pt"
    save_checkpoint(
        path, model=trained.state_dict(), arch="maskrcnn_resnet18_fpn", classes=CLASSES, model_kwargs=TINY
    )
    loaded = load_any(path).model
    _assert_same_model(_the_old_way(path), loaded)  # type: ignore[arg-type]
    assert int(loaded.backbone.body.bn1.num_batches_tracked) == 0  # type: ignore[union-attr]


def test_state_outside_the_checkpoint_is_built_for_real(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A constructor that keeps a tensor outside the state dict (a plain attribute, a buffer not
    saved) would leave it on the meta device: such a model is built for real instead."""
    arch = "maskrcnn_resnet18_fpn"
    build = model_module._BUILDERS[arch]

    def with_extras(*args: Any) -> nn.Module:
        model = build(*args)
        model.rpn.extra = [torch.arange(4.0)]
        model.roi_heads.register_buffer("scale", torch.full((2,), 3.0), persistent=False)
        return model

    monkeypatch.setitem(model_module._BUILDERS, arch, with_extras)
    path = _write(tmp_path / "model.pt", arch, **TINY)
    assert sorted(model_module._meta_outside_state(_meta_build(arch))) == ["roi_heads.scale", "rpn.extra"]
    new, _ = model_from_checkpoint(path)
    _assert_same_model(_the_old_way(path), new)
    assert torch.equal(new.rpn.extra[0], torch.arange(4.0))
    assert torch.equal(new.roi_heads.scale, torch.full((2,), 3.0))


def _meta_build(arch: str) -> nn.Module:
    with torch.device("meta"):
        return build_model(arch, CLASSES, weights="none", **TINY)


def test_the_meta_device_stays_in_its_thread_and_its_block(monkeypatch: pytest.MonkeyPatch) -> None:
    """The label backend loads a model in one thread while training builds one in another: only the
    loading thread's tensors go to the meta device, and only inside skeleton_model, errors or not."""
    arch = "maskrcnn_resnet18_fpn"
    build = model_module._BUILDERS[arch]
    inside, release = threading.Event(), threading.Event()

    def waiting(*args: Any) -> nn.Module:
        inside.set()
        assert release.wait(60)
        return build(*args)

    monkeypatch.setitem(model_module._BUILDERS, arch, waiting)
    loaded: list[nn.Module] = []
    thread = threading.Thread(target=lambda: loaded.append(skeleton_model(arch, CLASSES)))
    thread.start()
    try:
        assert inside.wait(60)  # the other thread is now building under torch.device("meta")
        monkeypatch.setitem(model_module._BUILDERS, arch, build)
        here = build_model(arch, CLASSES, weights="none")
    finally:
        release.set()
        thread.join()
    assert not any(t.is_meta for t in _all_tensors(here))
    assert next(loaded[0].parameters()).is_meta

    def failing(*args: Any) -> nn.Module:
        raise RuntimeError("failed while building")

    monkeypatch.setitem(model_module._BUILDERS, arch, failing)
    with pytest.raises(RuntimeError, match="failed while building"):
        skeleton_model(arch, CLASSES)
    assert torch.empty(1).device.type == "cpu" and nn.Linear(2, 2).weight.device.type == "cpu"


def test_a_checkpoint_shares_its_tensors_with_the_model(tmp_path: Path) -> None:
    """No second copy of the weights: the model holds the loaded tensors themselves."""
    path = _write(tmp_path / "model.pt", "maskrcnn_resnet18_fpn", **TINY)
    data = torch.load(path, weights_only=True)
    model, _ = model_from_checkpoint(data, source="x")
    key = "backbone.body.layer1.0.conv1.weight"
    assert model.state_dict()[key].data_ptr() == data["model"][key].data_ptr()


def test_the_zero_shot_coco_model_is_the_one_built_for_real(monkeypatch: pytest.MonkeyPatch) -> None:
    """`score --model coco`, `serve --model coco` and prelabel: every weight comes from the COCO file,
    so none is initialised first; the model is the one build_model(weights="coco") gives."""
    from torchvision.models.detection import MaskRCNN_ResNet50_FPN_V2_Weights

    from officescore.infer.predictor import Predictor, coco_categories

    torch.manual_seed(4)
    reference = torchvision.models.get_model("maskrcnn_resnet50_fpn_v2", weights=None, weights_backbone=None)
    cached = hub_checkpoint_dir() / Path(MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1.url).name
    cached.parent.mkdir(parents=True)
    torch.save(_trained_looking(reference).state_dict(), cached)
    names = coco_categories()[1:]
    old = build_model("maskrcnn_resnet50_fpn_v2", names, weights="coco", **TINY).eval()
    initialised: list[torch.Tensor] = []
    real = nn.init.kaiming_uniform_

    def spy(*args: Any, **kwargs: Any) -> torch.Tensor:
        initialised.append(args[0] if args else kwargs["tensor"])
        return real(*args, **kwargs)

    monkeypatch.setattr(nn.init, "kaiming_uniform_", spy)
    new = coco_detector("maskrcnn_resnet50_fpn_v2", names, **TINY)
    assert initialised and all(t.is_meta for t in initialised)  # none of the real weights
    assert new.weights_note.startswith("COCO weights")  # type: ignore[union-attr]
    _assert_same_model(old, new.eval(), detections=False)
    assert Predictor.load("coco", "cpu").kind == "coco"


def test_a_pretrained_start_is_told_by_its_frozen_batchnorm_where_nothing_records_it() -> None:
    """A plain state dict (torchvision's .pth, bare or as {"model": ...}) and a checkpoint saved before
    checkpoints recorded their layout, fine-tuned from a file: frozen BatchNorm keeps no batch
    counters, so its weights say how the model was built."""
    frozen = skeleton_model("maskrcnn_resnet18_fpn", CLASSES, pretrained_layout=True).state_dict()
    trained = skeleton_model("maskrcnn_resnet18_fpn", CLASSES).state_dict()
    assert started_pretrained(frozen) and started_pretrained({"model": frozen})
    assert not started_pretrained(trained) and not started_pretrained({"model": trained})
    older = {"format": "officescore-checkpoint", "args": {"weights": "runs/a/weights/best.pt"}}
    assert started_pretrained({**older, "model": frozen})
    assert not started_pretrained({**older, "model": trained})
    assert not started_pretrained({**older, "model": frozen, "pretrained_layout": False})


def test_a_checkpoint_saved_in_half_precision_loads_as_the_models_float32(tmp_path: Path) -> None:
    """Weights saved as float16 (a model halved before saving) are converted, as copying them into a
    built model would: taken as they are, the model would mix dtypes and fail at the first photo."""
    path = _write(tmp_path / "model.pt", "maskrcnn_resnet18_fpn", **TINY)
    data = torch.load(path, weights_only=True)
    data["model"] = {k: v.half() if v.is_floating_point() else v for k, v in data["model"].items()}
    model, _ = model_from_checkpoint(data, source="x")
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    with torch.no_grad():
        (out,) = model([torch.rand(3, 64, 64)])
    assert out["boxes"].dtype == torch.float32
