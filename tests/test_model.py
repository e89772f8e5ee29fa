"""Model building, weights resolution, checkpoints and load_any (no network, tiny sizes)."""

from __future__ import annotations

import json
import time
import urllib.error
import warnings
from pathlib import Path

import pytest
import torch
import torchvision
from torch import Tensor

from officescore.errors import ConfigError, ModelError
from officescore.model import (
    ARCHS,
    HEAD_PREFIXES,
    TORCHSCRIPT_META,
    _load_compatible,
    build_model,
    fetch_weights,
    hub_checkpoint_dir,
    is_onnx,
    load_any,
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
)

CLASSES = ["desk", "chair", "mug"]
TINY = {
    "min_size": 64,
    "max_size": 64,
    "rpn_pre_nms_top_n_test": 50,
    "rpn_post_nms_top_n_test": 20,
    "box_detections_per_img": 10,
}


@pytest.fixture(autouse=True)
def _empty_torch_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Pretrained weights come only from files a test puts there; downloads fail at once."""
    home = tmp_path_factory.mktemp("torch_home")
    monkeypatch.setenv("TORCH_HOME", str(home))

    def no_network(url: str, *args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("network unreachable (test)")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return home


# torchvision detectors whose COCO state dicts our architectures must accept (bar the class heads)
COCO_REFERENCE = {
    "maskrcnn_resnet50_fpn_v2": "maskrcnn_resnet50_fpn_v2",
    "maskrcnn_resnet50_fpn": "maskrcnn_resnet50_fpn",
    "maskrcnn_mobilenet_v3_fpn": "fasterrcnn_mobilenet_v3_large_fpn",
}


@pytest.mark.parametrize("arch", ARCHS)
def test_every_arch_builds_predicts_and_fits_coco_weights(arch: str) -> None:
    torch.manual_seed(0)
    model = build_model(arch, CLASSES, weights="none", **TINY).eval()
    assert model.roi_heads.box_predictor.cls_score.out_features == len(CLASSES) + 1
    assert model.roi_heads.mask_predictor.mask_fcn_logits.out_channels == len(CLASSES) + 1
    with torch.no_grad():
        (out,) = model([torch.rand(3, 64, 80)])
    assert set(out) == {"boxes", "labels", "scores", "masks"}
    n = out["boxes"].shape[0]
    assert out["masks"].shape == (n, 1, 64, 80)
    assert all(1 <= int(label) <= len(CLASSES) for label in out["labels"])
    if arch not in COCO_REFERENCE:
        return
    reference = COCO_REFERENCE[arch]
    coco = torchvision.models.get_model(reference, weights=None, weights_backbone=None).state_dict()
    own = {k: v.clone() for k, v in model.state_dict().items()}
    skipped = _load_compatible(model, coco, source=reference, allow_missing=("roi_heads.mask",))
    assert skipped and all(k.startswith(HEAD_PREFIXES) for k in skipped)
    key = "backbone.fpn.layer_blocks.0.0.weight"
    assert torch.equal(model.state_dict()[key], coco[key]) and not torch.equal(coco[key], own[key])


def test_unknown_arch_and_option_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="maskrcnn_resnet18_fpn"):
        build_model("yolo", CLASSES, weights="none")
    with pytest.raises(ConfigError, match="rpn_nms_thresh"):  # the message lists the known options
        build_model("maskrcnn_resnet18_fpn", CLASSES, weights="none", rpn_nms_treshold=0.5)


def test_offline_without_cached_file_names_file_and_folder() -> None:
    start = time.perf_counter()
    with pytest.raises(ModelError) as info:
        build_model("maskrcnn_resnet50_fpn_v2", CLASSES, weights="coco")
    message = str(info.value)
    assert "maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth" in message
    assert str(hub_checkpoint_dir()) in message and "$TORCH_HOME/hub/checkpoints" in message
    assert "\n" not in message
    assert time.perf_counter() - start < 10  # no waiting on a network timeout
    with pytest.raises(ModelError, match="resnet18-f37072fd.pth"):
        build_model("maskrcnn_resnet18_fpn", CLASSES, weights="imagenet")


def test_cached_imagenet_file_is_used_without_network() -> None:
    reference = torchvision.models.resnet18()
    folder = hub_checkpoint_dir()
    folder.mkdir(parents=True)
    torch.save(reference.state_dict(), folder / "resnet18-f37072fd.pth")
    model = build_model("maskrcnn_resnet18_fpn", CLASSES, weights="coco", **TINY)
    assert "no COCO weights" in model.weights_note
    assert torch.equal(model.backbone.body.layer3[0].conv1.weight, reference.layer3[0].conv1.weight)
    # pretrained backbone: frozen statistics and the first layers frozen (3 trainable by default)
    assert isinstance(model.backbone.body.bn1, torchvision.ops.misc.FrozenBatchNorm2d)
    assert not model.backbone.body.layer1[0].conv1.weight.requires_grad
    assert model.backbone.body.layer2[0].conv1.weight.requires_grad


def test_corrupt_cached_file_is_a_model_error() -> None:
    folder = hub_checkpoint_dir()
    folder.mkdir(parents=True)
    (folder / "resnet18-f37072fd.pth").write_bytes(b"half a download")
    with pytest.raises(ModelError, match="unreadable"):
        build_model("maskrcnn_resnet18_fpn", CLASSES, weights="imagenet")


def test_cached_coco_file_loads_for_mobilenet(tmp_path: Path) -> None:
    coco = torchvision.models.get_model(
        "fasterrcnn_mobilenet_v3_large_fpn", weights=None, weights_backbone=None
    )
    folder = hub_checkpoint_dir()
    folder.mkdir(parents=True)
    torch.save(coco.state_dict(), folder / "fasterrcnn_mobilenet_v3_large_fpn-fb6a3cc7.pth")
    model = build_model("maskrcnn_mobilenet_v3_fpn", CLASSES, weights="coco", **TINY)
    assert "mask head starts fresh" in model.weights_note
    key = "rpn.head.conv.0.0.weight"
    assert torch.equal(model.state_dict()[key], coco.state_dict()[key])


def test_state_dict_file_loads_and_wrong_arch_is_refused(tmp_path: Path) -> None:
    torch.manual_seed(1)
    source = build_model("maskrcnn_resnet18_fpn", CLASSES, weights="none")
    path = tmp_path / "weights.pth"
    torch.save(source.state_dict(), path)
    same = build_model("maskrcnn_resnet18_fpn", CLASSES, weights=path)
    for key, value in source.state_dict().items():
        assert torch.equal(same.state_dict()[key], value), key
    other = build_model("maskrcnn_resnet18_fpn", ["a", "b"], weights=path)
    assert "start fresh" in other.weights_note
    key = "backbone.body.layer4.1.conv2.weight"
    assert torch.equal(other.state_dict()[key], source.state_dict()[key])
    with pytest.raises(ModelError, match="another architecture"):
        build_model("maskrcnn_resnet50_fpn", CLASSES, weights=path)
    with pytest.raises(ModelError, match="no such file"):
        build_model("maskrcnn_resnet18_fpn", CLASSES, weights=tmp_path / "missing.pth")


def _checkpoint(path: Path) -> torch.nn.Module:
    torch.manual_seed(2)
    model = build_model("maskrcnn_resnet18_fpn", CLASSES, weights="none", **TINY)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    save_checkpoint(
        path,
        model=model.state_dict(),
        arch="maskrcnn_resnet18_fpn",
        classes=CLASSES,
        model_kwargs=TINY,
        epoch=3,
        optimizer=optimizer.state_dict(),
        metrics=[{"epoch": 1, "segm_map": 0.5}],
        best_metric=0.5,
        rng={"torch": torch.get_rng_state()},
        args={"epochs": 3},
    )
    return model


def test_checkpoint_round_trip_weights_only(tmp_path: Path) -> None:
    path = tmp_path / "weights" / "last.pt"
    model = _checkpoint(path).eval()
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temp file left behind
    raw = torch.load(path, weights_only=True)  # no pickled code inside
    assert raw["arch"] == "maskrcnn_resnet18_fpn" and raw["epoch"] == 3 and raw["officescore_version"]
    data = load_checkpoint(path)
    rebuilt, classes = model_from_checkpoint(data, "cpu")
    assert classes == CLASSES and not rebuilt.training
    assert rebuilt.transform.min_size == (64,)
    image = [torch.rand(3, 64, 64)]
    with torch.no_grad():
        a, b = model(image)[0], rebuilt(image)[0]
    assert torch.equal(a["boxes"], b["boxes"]) and torch.equal(a["masks"], b["masks"])
    loaded = load_any(path)
    assert loaded.kind == "checkpoint" and loaded.classes == CLASSES and loaded.model_kwargs == TINY


def test_weights_that_do_not_fit_name_the_file_and_the_tensor(tmp_path: Path) -> None:
    """A checkpoint whose class list no longer matches its heads (edited, or another version's), or
    that lost a tensor: one line naming the file and what does not fit, not torch's first line
    ("Error(s) in loading state_dict for MaskRCNN:"), which names neither."""
    good = tmp_path / "good.pt"
    _checkpoint(good)
    data = torch.load(good, weights_only=True)
    more = tmp_path / "more.pt"
    torch.save({**data, "classes": [*CLASSES, "lamp"]}, more)
    fewer = tmp_path / "fewer.pt"
    key = next(iter(data["model"]))
    torch.save({**data, "model": {k: v for k, v in data["model"].items() if k != key}}, fewer)
    for path, expected in [
        (more, "roi_heads.box_predictor.cls_score.weight has shape (4, "),
        (fewer, f"1 tensors missing (e.g. {key})"),
    ]:
        with pytest.raises(ModelError) as info:
            model_from_checkpoint(path)
        assert str(info.value).startswith(f"{path}: its weights do not fit its architecture ")
        assert expected in str(info.value) and "Error(s)" not in str(info.value)


def test_bad_checkpoints_are_one_line_model_errors(tmp_path: Path) -> None:
    good = tmp_path / "good.pt"
    _checkpoint(good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    plain = tmp_path / "plain.pt"
    torch.save({"weight": torch.zeros(2)}, plain)
    cases = {
        tmp_path / "missing.pt": "no such file",
        truncated: "not a readable",
        garbage: "not a readable",
        plain: "not an officescore checkpoint",
    }
    for path, expected in cases.items():
        with pytest.raises(ModelError) as info:
            load_checkpoint(path)
        assert expected in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ModelError, match="no such model file"):
        load_any(tmp_path / "missing.pt")
    with pytest.raises(
        ModelError,
        match="a folder with no weights/best.pt in it or its runs; pass a model file such as .*best.pt",
    ):
        load_any(tmp_path)
    onnx_file = tmp_path / "model.onnx"
    onnx_file.write_bytes(b"\x08\x07\x12\x07pytorch")
    with pytest.raises(ModelError, match="ONNX exports are for other runtimes.*TorchScript"):
        load_any(onnx_file)
    # weights_only loading refuses pickled objects (here a Path) instead of running their code
    pickled = tmp_path / "pickled.pt"
    torch.save({"format": "officescore-checkpoint", "model": {}, "extra": Path("x")}, pickled)
    with pytest.raises(ModelError, match="pickled code that weights_only loading refuses"):
        load_any(pickled)


class _Scripted(torch.nn.Module):
    """Stands in for an export: forward(List[Tensor]) -> List[Dict[str, Tensor]]."""

    def forward(self, images: list[Tensor]) -> list[dict[str, Tensor]]:
        out: list[dict[str, Tensor]] = []
        for image in images:
            h, w = image.shape[-2], image.shape[-1]
            out.append(
                {
                    "boxes": torch.tensor([[0.0, 0.0, 4.0, 4.0]]),
                    "labels": torch.tensor([2]),
                    "scores": torch.tensor([0.9]),
                    "masks": torch.ones(1, 1, h, w),
                }
            )
        return out


def test_load_any_reads_torchscript_exports(tmp_path: Path) -> None:
    path = tmp_path / "model.torchscript"
    meta = {"format": "officescore-torchscript", "classes": CLASSES, "arch": "maskrcnn_resnet18_fpn"}
    meta["model_kwargs"] = {"min_size": 64}
    torch.jit.save(
        torch.jit.script(_Scripted()), str(path), _extra_files={TORCHSCRIPT_META: json.dumps(meta)}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no deprecation noise in front of users' results
        loaded = load_any(path)
    assert loaded.kind == "torchscript" and loaded.classes == CLASSES
    assert loaded.arch == "maskrcnn_resnet18_fpn" and loaded.model_kwargs == {"min_size": 64}
    (out,) = loaded.model([torch.rand(3, 8, 10)])
    assert out["masks"].shape == (1, 1, 8, 10) and int(out["labels"][0]) == 2
    plain = tmp_path / "plain.torchscript"  # a TorchScript file without our metadata is not ours
    torch.jit.save(torch.jit.script(_Scripted()), str(plain))
    with pytest.raises(ModelError, match="without officescore metadata"):
        load_any(plain)
    for broken in ({"format": "officescore-torchscript"}, {"classes": []}, {"classes": [1, 2]}, ["desk"]):
        hand_made = tmp_path / "hand_made.torchscript"  # our metadata file, but no class list in it
        extra = {TORCHSCRIPT_META: json.dumps(broken)}
        torch.jit.save(torch.jit.script(_Scripted()), str(hand_made), _extra_files=extra)
        with pytest.raises(ModelError, match="metadata lists no classes"):
            load_any(hand_made)


@pytest.mark.parametrize(
    ("head", "onnx"),
    [
        (b"\x08\x03\x12", True),  # ir_version 3, then the producer's name
        (b"\x08\x0a\x3a", True),  # ir_version 10 (torch 2.x), then the graph
        (b"PK\x03\x04", False),  # a checkpoint or TorchScript zip
        (b"\x08\x07", False),  # too short to tell
        (b"\x08\x07\x99", False),  # no ModelProto field after the version
    ],
)
def test_an_onnx_model_is_told_by_its_opening_bytes(tmp_path: Path, head: bytes, onnx: bool) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(head)
    assert is_onnx(path) is onnx


def test_an_export_named_like_a_checkpoint_is_called_what_it_is(tmp_path: Path) -> None:
    """An ONNX or TorchScript export renamed model.pt was "not a readable weights file ...
    truncated, damaged": it is named for what it is, with the commands that take it."""
    onnx_file = tmp_path / "onnx.pt"
    onnx_file.write_bytes(b"\x08\x07\x12\x07pytorch")  # how torch's ONNX exports open
    with pytest.raises(ModelError, match="an ONNX model.*TorchScript export"):
        load_any(onnx_file)  # score, eval, serve: they take TorchScript
    with pytest.raises(ModelError, match="an ONNX model .*no officescore command loads it.*best.pt"):
        load_checkpoint(onnx_file)  # export, train --resume
    with pytest.raises(ModelError, match="an ONNX model"):
        build_model("maskrcnn_resnet18_fpn", CLASSES, weights=onnx_file)  # train --weights
    scripted = tmp_path / "scripted.pt"
    meta = {"format": "officescore-torchscript", "classes": CLASSES, "arch": "maskrcnn_resnet18_fpn"}
    torch.jit.save(
        torch.jit.script(_Scripted()), str(scripted), _extra_files={TORCHSCRIPT_META: json.dumps(meta)}
    )
    assert load_any(scripted).kind == "torchscript"
    with pytest.raises(ModelError, match="a TorchScript export .*score, eval, serve.* run; this needs"):
        build_model("maskrcnn_resnet18_fpn", CLASSES, weights=scripted)


def test_fetch_weights_reports_download_failure_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """One download attempt (no retry loop on an offline machine), one error naming the URL once."""
    from torchvision.models import ResNet18_Weights

    attempts: list[str] = []

    def offline(url: str, *args: object, **kwargs: object) -> None:
        attempts.append(url)
        raise urllib.error.URLError("network unreachable (test)")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    url = "https://download.pytorch.org/models/resnet18-f37072fd.pth"
    with pytest.raises(ModelError) as info:
        fetch_weights(ResNet18_Weights.IMAGENET1K_V1)
    assert attempts == [url]
    message = str(info.value)
    assert message.count(url) == 1 and "\n" not in message and "--weights none" in message
    assert not (hub_checkpoint_dir() / "resnet18-f37072fd.pth").exists()  # nothing half-written


def test_weights_from_a_checkpoint_with_other_classes_keep_the_classes_both_have(tmp_path: Path) -> None:
    """Fine-tuning from a checkpoint of another class list (a project that renamed or added a class):
    the class layers' rows follow the class names, so nothing is loaded under another class's name,
    even when the number of classes is the same."""
    path = tmp_path / "weights" / "best.pt"
    _checkpoint(path)  # desk, chair, mug
    old = load_checkpoint(path)["model"]
    torch.manual_seed(5)
    model = build_model("maskrcnn_resnet18_fpn", ["mug", "desk", "lamp"], weights=path, **TINY)
    assert "keep what it learnt for mug, desk, the others start fresh" in model.weights_note
    new = model.state_dict()
    fresh = build_model("maskrcnn_resnet18_fpn", ["mug", "desk", "lamp"], weights="none", **TINY).state_dict()

    def rows(state: dict[str, torch.Tensor], name: str, per: int, i: int) -> torch.Tensor:
        return state[name][i * per : (i + 1) * per]  # class i's rows of the layer

    for key, per in (("cls_score", 1), ("bbox_pred", 4)):
        for part in ("weight", "bias"):
            name = f"roi_heads.box_predictor.{key}.{part}"
            for target, source in ((0, 0), (1, 3), (2, 1)):  # background, mug (was 3rd), desk (was 1st)
                assert torch.equal(rows(new, name, per, target), rows(old, name, per, source)), (name, target)
            assert not any(torch.equal(rows(new, name, per, 3), rows(old, name, per, i)) for i in range(4))
    logits = "roi_heads.mask_predictor.mask_fcn_logits.weight"
    assert torch.equal(new[logits][1], old[logits][3]) and torch.equal(new[logits][2], old[logits][1])
    assert new[logits].shape == fresh[logits].shape
    backbone = "backbone.body.conv1.weight"
    assert torch.equal(new[backbone], old[backbone])  # everything else loads as it was


def test_a_checkpoint_of_the_same_classes_in_another_order_loads_them_by_name(tmp_path: Path) -> None:
    """Same class names, another order (a data set ingested with --classes in another order): the
    class layers' rows follow the names, not their positions."""
    path = tmp_path / "best.pt"
    _checkpoint(path)  # desk, chair, mug
    old = load_checkpoint(path)["model"]
    model = build_model("maskrcnn_resnet18_fpn", ["mug", "desk", "chair"], weights=path, **TINY)
    new = model.state_dict()
    for name, per in (("cls_score.weight", 1), ("bbox_pred.bias", 4)):
        key = f"roi_heads.box_predictor.{name}"
        for target, source in ((0, 0), (1, 3), (2, 1), (3, 2)):
            assert torch.equal(
                new[key][target * per : (target + 1) * per], old[key][source * per : (source + 1) * per]
            )
    logits = "roi_heads.mask_predictor.mask_fcn_logits.weight"
    assert torch.equal(new[logits][1], old[logits][3]) and torch.equal(new[logits][3], old[logits][2])


def test_a_model_from_scratch_trains_every_layer() -> None:
    """weights none: plain BatchNorm and no frozen layer (freezing is for a pretrained start)."""
    model = build_model("maskrcnn_resnet18_fpn", CLASSES, weights="none")
    assert model.pretrained_layout is False
    assert all(p.requires_grad for p in model.parameters())
    assert not any(isinstance(m, torchvision.ops.misc.FrozenBatchNorm2d) for m in model.modules())


def test_weight_choices_are_read_in_any_case() -> None:
    model = build_model("maskrcnn_resnet18_fpn", CLASSES, weights="None")
    assert model.weights_note.startswith("random initialisation")


def test_a_state_dict_wrapped_as_model_loads(tmp_path: Path) -> None:
    """The common {"model": state_dict} wrapping of other tools' files loads like the bare dict."""
    torch.manual_seed(1)
    source = build_model("maskrcnn_resnet18_fpn", CLASSES, weights="none")
    path = tmp_path / "wrapped.pth"
    torch.save({"model": source.state_dict(), "epoch": 4}, path)
    loaded = build_model("maskrcnn_resnet18_fpn", CLASSES, weights=path)
    assert loaded.weights_note == "state dict wrapped.pth"
    key = "roi_heads.box_predictor.cls_score.weight"
    assert torch.equal(loaded.state_dict()[key], source.state_dict()[key])


def test_imagenet_weights_for_mobilenet_fill_its_backbone() -> None:
    """torchvision's ImageNet MobileNetV3 keys its layers `features.N`; the backbone body `N`."""
    from torchvision.models import MobileNet_V3_Large_Weights

    from officescore.model import cached_weights_path

    reference = torchvision.models.mobilenet_v3_large().state_dict()
    path = cached_weights_path(MobileNet_V3_Large_Weights.IMAGENET1K_V1)
    path.parent.mkdir(parents=True)
    torch.save(reference, path)
    model = build_model("maskrcnn_mobilenet_v3_fpn", CLASSES, weights="imagenet", **TINY)
    assert model.weights_note.startswith("ImageNet backbone")
    key = "features.13.block.0.0.weight"
    assert torch.equal(model.backbone.body.state_dict()[key.removeprefix("features.")], reference[key])


def test_imagenet_weights_that_do_not_fit_the_backbone_are_refused() -> None:
    """A file under the expected name holding something else (another network's weights) is a
    ModelError, not a backbone left at random weights without a word."""
    folder = hub_checkpoint_dir()
    folder.mkdir(parents=True)
    torch.save({"fc.weight": torch.zeros(10, 512)}, folder / "resnet18-f37072fd.pth")
    with pytest.raises(ModelError, match="ImageNet weights do not fit the maskrcnn_resnet18_fpn backbone"):
        build_model("maskrcnn_resnet18_fpn", CLASSES, weights="imagenet")


def test_build_model_needs_a_class() -> None:
    with pytest.raises(ConfigError, match="at least one class"):
        build_model("maskrcnn_resnet18_fpn", [], weights="none")


def test_files_that_are_not_officescore_checkpoints_are_named_so(tmp_path: Path) -> None:
    """Our format tag without weights, and a state dict with other things than tensors in it: a
    one-line ModelError, not a KeyError or torch's own message."""
    no_model = tmp_path / "no_model.pt"
    torch.save(
        {"format": "officescore-checkpoint", "arch": "maskrcnn_resnet18_fpn", "classes": CLASSES}, no_model
    )
    with pytest.raises(ModelError, match="not an officescore checkpoint"):
        load_checkpoint(no_model)
    mixed = tmp_path / "mixed.pt"
    torch.save({"backbone.body.conv1.weight": torch.zeros(64, 3, 7, 7), "note": "hello"}, mixed)
    with pytest.raises(ModelError, match="neither an officescore checkpoint nor a state dict of tensors"):
        build_model("maskrcnn_resnet18_fpn", CLASSES, weights=mixed)
    shouting = tmp_path / "MODEL.ONNX"
    shouting.write_bytes(b"\x08\x07\x12\x07pytorch")
    with pytest.raises(ModelError, match="ONNX exports are for other runtimes"):
        load_any(shouting)


def test_weights_from_a_checkpoint_of_a_pretrained_start_keep_its_layout(tmp_path: Path) -> None:
    """`--weights best.pt` of a run that started from COCO or ImageNet: frozen BatchNorm and the
    first layers frozen, as that run had, and the new model says so for its own checkpoints; a
    checkpoint saved before the layout was recorded is known by its start (`args.weights`), which
    for v2 (BatchNorm never frozen) is the only sign."""
    start = build_model("maskrcnn_resnet18_fpn", CLASSES, weights="none", pretrained_layout=True)
    path = tmp_path / "best.pt"
    common = {"model": start.state_dict(), "arch": "maskrcnn_resnet18_fpn", "classes": CLASSES}
    save_checkpoint(path, **common, pretrained_layout=True)
    tuned = build_model("maskrcnn_resnet18_fpn", CLASSES, weights=path)
    assert tuned.pretrained_layout is True and "frozen BatchNorm" in tuned.weights_note
    assert isinstance(tuned.backbone.body.bn1, torchvision.ops.misc.FrozenBatchNorm2d)
    assert not tuned.backbone.body.layer1[0].conv1.weight.requires_grad
    assert tuned.backbone.body.layer2[0].conv1.weight.requires_grad
    scratch = build_model("maskrcnn_resnet18_fpn", CLASSES, weights="none").state_dict()  # with counters
    for weights in ("coco", "imagenet", "ImageNet"):
        older = tmp_path / f"older_{weights}.pt"
        save_checkpoint(older, **{**common, "model": scratch}, args={"weights": weights})
        assert build_model("maskrcnn_resnet18_fpn", CLASSES, weights=older).pretrained_layout is True, weights
    save_checkpoint(path, **{**common, "model": scratch}, args={"weights": "none"})
    assert build_model("maskrcnn_resnet18_fpn", CLASSES, weights=path).pretrained_layout is False


def test_a_checkpoint_with_a_tensor_its_model_has_not_names_it(tmp_path: Path) -> None:
    """A tensor the architecture has no place for: one line naming it, not torch's first line."""
    good = tmp_path / "good.pt"
    _checkpoint(good)
    data = torch.load(good, weights_only=True)
    extra = tmp_path / "extra.pt"
    torch.save({**data, "model": {**data["model"], "roi_heads.extra.weight": torch.zeros(2)}}, extra)
    with pytest.raises(ModelError) as info:
        model_from_checkpoint(extra)
    message = str(info.value)
    assert "it has roi_heads.extra.weight, which the model has not" in message and "Error(s)" not in message


def test_a_model_predicts_the_attributes_of_its_own_classes_only() -> None:
    """A schema that names other classes' attributes too (the packaged one: chair, lamp, plant)
    gives a model of desks and mugs no attribute head, and one with chairs only the chair's."""
    from officescore.attribute_head import has_attribute_head
    from officescore.attributes import load_schema
    from officescore.model import attribute_schema

    schema = load_schema().to_dict()
    model = build_model("maskrcnn_resnet18_fpn", ["desk", "mug"], weights="none", attributes=schema)
    assert not has_attribute_head(model)
    assert [a.name for a in attribute_schema({"attributes": schema}, ["desk", "chair"]).attributes] == [
        "armrests"
    ]


def test_a_state_dict_that_lacks_tensors_is_refused(tmp_path: Path) -> None:
    """A state dict without some of the model's tensors (another variant, a cut-down file): a
    ModelError naming one, not a model whose missing parts silently stay random."""
    state = build_model("maskrcnn_resnet18_fpn", CLASSES, weights="none").state_dict()
    del state["backbone.fpn.inner_blocks.0.0.weight"]
    path = tmp_path / "partial.pth"
    torch.save(state, path)
    with pytest.raises(ModelError, match=r"1 tensors missing \(e.g. backbone.fpn.inner_blocks.0.0.weight\)"):
        build_model("maskrcnn_resnet18_fpn", CLASSES, weights=path)
