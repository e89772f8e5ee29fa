"""Mask R-CNN variants, weights resolution, checkpoints and loading any saved model.

Architectures (`ARCHS`):
  maskrcnn_resnet50_fpn_v2   default; COCO weights (box AP 47.4, mask AP 41.8)
  maskrcnn_resnet50_fpn      v1, lighter; COCO weights (37.9 / 34.6)
  maskrcnn_mobilenet_v3_fpn  MobileNetV3-Large FPN (CPU friendly); `coco` loads torchvision's COCO
                             Faster R-CNN MobileNetV3 detector (backbone, RPN, box head), mask head fresh
  maskrcnn_resnet18_fpn      small, for tests and quick experiments; `coco` means ImageNet backbone

Weights (`build_model(..., weights=)`): "coco", "imagenet" (backbone only), "none", or a path to an
officescore checkpoint / a plain state-dict file. Pretrained files come from torchvision's weight
enums through the torch hub cache (`torch.hub.get_dir()/checkpoints`, i.e. $TORCH_HOME/hub/checkpoints);
offline without the file, a ModelError names the file, its URL and that folder.

Checkpoint format (`save_checkpoint` / `load_checkpoint`): a `torch.save` dict of tensors and plain
values, loadable with `torch.load(path, weights_only=True)`, with keys
  model, arch, classes, model_kwargs, epoch, optimizer, scheduler, scaler, metrics, best_metric, rng,
  args, officescore_version
`arch` + `classes` + `model_kwargs` rebuild the model, so a checkpoint alone is enough to score.

TorchScript format (written by `officescore export`, read by `load_any` without importing the model
code): `torch.jit.save(scripted, path, _extra_files={"officescore.json": json})` where the JSON holds
{"format": "officescore-torchscript", "classes": [...], "arch": ..., "model_kwargs": {...}} and the
scripted module's `forward(images: List[Tensor]) -> List[Dict[str, Tensor]]` returns torchvision's
detections (boxes xyxy, labels 1..K, scores, masks Nx1xHxW float in [0, 1]).
"""

from __future__ import annotations

import contextlib
import inspect
import io
import json
import sys
import urllib.error
import warnings
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn
from torchvision.models import (
    MobileNet_V3_Large_Weights,
    ResNet18_Weights,
    ResNet50_Weights,
    mobilenet_v3_large,
    resnet18,
    resnet50,
)
from torchvision.models.detection import (
    FasterRCNN_MobileNet_V3_Large_FPN_Weights,
    MaskRCNN,
    MaskRCNN_ResNet50_FPN_V2_Weights,
    MaskRCNN_ResNet50_FPN_Weights,
)
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import (
    BackboneWithFPN,
    _mobilenet_extractor,
    _resnet_fpn_extractor,
)
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead, FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.rpn import RPNHead
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool
from torchvision.ops.misc import FrozenBatchNorm2d

from officescore import __version__
from officescore.attribute_head import STATE_PREFIX as ATTRIBUTE_PREFIX
from officescore.attribute_head import add_attribute_head
from officescore.attributes import AttributeSchema
from officescore.errors import ConfigError, ModelError, WeightsUnavailable
from officescore.files import atomic_write
from officescore.runs import existing_model_file, model_file

# torchvision's scripted Mask R-CNN warns on every call that it returns (losses, detections); our
# TorchScript wrapper already unpacks that tuple, so the notice is noise for users.
warnings.filterwarnings("ignore", message="RCNN always returns a", category=UserWarning)

DEFAULT_ARCH = "maskrcnn_resnet50_fpn_v2"
ARCHS: tuple[str, ...] = (
    "maskrcnn_resnet50_fpn_v2",
    "maskrcnn_resnet50_fpn",
    "maskrcnn_mobilenet_v3_fpn",
    "maskrcnn_resnet18_fpn",
)
WEIGHT_CHOICES = ("coco", "imagenet", "none")
CHECKPOINT_FORMAT = "officescore-checkpoint"
TORCHSCRIPT_FORMAT = "officescore-torchscript"
TORCHSCRIPT_META = "officescore.json"

# Keys of the class-specific layers: replaced when the class list differs from the weights'. The
# attribute head is one too: weights without it (COCO, older checkpoints) leave it fresh.
HEAD_PREFIXES = ("roi_heads.box_predictor.", "roi_heads.mask_predictor.mask_fcn_logits.", ATTRIBUTE_PREFIX)

# (COCO detector enum or None, ImageNet backbone enum, max trainable layers, default trainable layers)
_ARCH_WEIGHTS: dict[str, tuple[Any, Any, int, int]] = {
    "maskrcnn_resnet50_fpn_v2": (
        MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1,
        ResNet50_Weights.IMAGENET1K_V1,
        5,
        3,
    ),
    "maskrcnn_resnet50_fpn": (MaskRCNN_ResNet50_FPN_Weights.COCO_V1, ResNet50_Weights.IMAGENET1K_V1, 5, 3),
    "maskrcnn_mobilenet_v3_fpn": (
        FasterRCNN_MobileNet_V3_Large_FPN_Weights.COCO_V1,
        MobileNet_V3_Large_Weights.IMAGENET1K_V1,
        6,
        3,
    ),
    "maskrcnn_resnet18_fpn": (None, ResNet18_Weights.IMAGENET1K_V1, 5, 3),
}

# MaskRCNN constructor options that are plain values (sizes, sampling, thresholds): model_kwargs.
_MASKRCNN_OPTIONS = frozenset(
    name
    for name, p in inspect.signature(MaskRCNN.__init__).parameters.items()
    if name not in {"self", "backbone", "num_classes", "kwargs"}
    and not name.endswith(("_head", "_predictor", "_pool", "_generator"))
    and p.kind is p.POSITIONAL_OR_KEYWORD
)
# "attributes": the attribute schema (AttributeSchema.to_dict()) the attribute head predicts; absent
# or empty means no head. Kept in model_kwargs so checkpoints, exports and resume carry it as is.
MODEL_KWARGS = frozenset(_MASKRCNN_OPTIONS | {"trainable_backbone_layers", "attributes"})


@dataclass
class LoadedModel:
    """A model ready to run: `model(list_of_CHW_float_tensors) -> list of detection dicts`."""

    model: Callable[[list[torch.Tensor]], list[dict[str, torch.Tensor]]] = field(repr=False)
    classes: list[str]
    kind: str  # "checkpoint" | "torchscript"
    arch: str
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def attributes(self) -> AttributeSchema:
        """What the model's attribute head predicts, in the order of its outputs (empty: no head)."""
        return attribute_schema(self.model_kwargs, self.classes)


def attribute_schema(model_kwargs: Mapping[str, Any], classes: Sequence[str]) -> AttributeSchema:
    """The schema of a model's attribute head from its model_kwargs (empty when it has none)."""
    return AttributeSchema.from_dict(model_kwargs.get("attributes") or None).restricted(list(classes))


# --------------------------------------------------------------------------- building


def build_model(
    arch: str = DEFAULT_ARCH,
    classes: Sequence[str] = (),
    weights: str | Path | None = "coco",
    pretrained_layout: bool = False,
    **model_kwargs: Any,
) -> MaskRCNN:
    """A Mask R-CNN for `classes` (labels 1..K, 0 = background) with the chosen initial weights.

    `model.weights_note` says in one line what was loaded (e.g. "ImageNet backbone: no COCO weights").
    `pretrained_layout`: with weights="none", the layout a pretrained start has (frozen BatchNorm,
    the first backbone layers frozen) for weights loaded next: resuming a run that started so. A
    checkpoint file as `weights` passes its own layout on (`started_pretrained`): fine-tuning a model
    that came from COCO keeps its BatchNorm frozen, as batches of 2 would ruin its statistics.
    `model.pretrained_layout` records the layout, for the checkpoints of a run that trains it.
    """
    if arch not in ARCHS:
        raise ConfigError(f"unknown architecture {arch!r}; choose one of: {', '.join(ARCHS)}")
    classes = list(classes)
    if not classes:
        raise ConfigError("build_model needs at least one class name")
    _check_model_kwargs(model_kwargs)
    choice = _weights_choice(weights)
    loaded = _torch_load(Path(str(weights))) if choice == "file" else None
    coco_enum, backbone_enum, max_layers, default_layers = _ARCH_WEIGHTS[arch]
    pretrained_backbone = choice in ("coco", "imagenet") or pretrained_layout or started_pretrained(loaded)
    layers = model_kwargs.get("trainable_backbone_layers")
    layers = (default_layers if layers is None else int(layers)) if pretrained_backbone else max_layers
    if not 0 <= layers <= max_layers:
        raise ConfigError(f"trainable_backbone_layers must be 0..{max_layers} for {arch}, got {layers}")
    options = {k: v for k, v in model_kwargs.items() if k not in ("trainable_backbone_layers", "attributes")}
    model = _BUILDERS[arch](len(classes) + 1, pretrained_backbone, layers, options)
    schema = attribute_schema(model_kwargs, classes)
    if schema:
        add_attribute_head(model, classes, schema)

    if choice == "none":
        note = "random initialisation (no pretrained weights)"
    elif choice == "imagenet" or (choice == "coco" and coco_enum is None):
        _load_backbone(model, arch, fetch_weights(backbone_enum))
        note = f"ImageNet backbone ({_file_name(backbone_enum.url)})"
        if choice == "coco":
            note += f"; torchvision has no COCO weights for {arch}, so the detector heads start fresh"
    elif choice == "coco":
        state = fetch_weights(coco_enum)
        _load_compatible(model, state, source=_file_name(coco_enum.url), allow_missing=("roi_heads.mask",))
        note = f"COCO weights ({_file_name(coco_enum.url)}), class heads replaced for {len(classes)} classes"
        if arch == "maskrcnn_mobilenet_v3_fpn":
            note += "; COCO Faster R-CNN detector, so the mask head starts fresh"
    else:
        note = _load_weights_file(model, loaded, Path(str(weights)), classes)
        if pretrained_backbone:
            note += "; frozen BatchNorm and first layers, as its pretrained start had"
    model.weights_note = note  # type: ignore[attr-defined]
    model.pretrained_layout = pretrained_backbone  # type: ignore[attr-defined]
    return model


def input_size(model: Any) -> tuple[int, int] | None:
    """(min_size, max_size) a detector resizes photos to (a TorchScript export: the model it wraps),
    or None when it does not say."""
    transform = getattr(model, "transform", None)
    if transform is None:
        transform = getattr(getattr(model, "model", None), "transform", None)
    try:
        return int(transform.min_size[-1]), int(transform.max_size)  # type: ignore[union-attr]
    except (AttributeError, TypeError, IndexError, RuntimeError):
        return None


def started_pretrained(weights: Any) -> bool:
    """Whether loaded weights have the layout of a pretrained start (frozen BatchNorm where the
    architecture freezes it, the first backbone layers frozen): an officescore checkpoint records it
    (`pretrained_layout`); one saved before that says so by its start (`args.weights` coco or
    imagenet); any state dict by frozen BatchNorm, which keeps no batch counters."""
    if not isinstance(weights, Mapping):
        return False
    if weights.get("format") == CHECKPOINT_FORMAT:
        recorded = weights.get("pretrained_layout")
        if isinstance(recorded, bool):
            return recorded
        if str((weights.get("args") or {}).get("weights", "")).lower() in ("coco", "imagenet"):
            return True
        weights = weights.get("model") or {}
    elif isinstance(weights.get("model"), Mapping) and "arch" not in weights:
        weights = weights["model"]  # common {"model": state_dict} wrapping
    return any(
        key.startswith("backbone.")
        and key.endswith(".running_var")
        and key.removesuffix("running_var") + "num_batches_tracked" not in weights
        for key in weights
    )


def _check_model_kwargs(model_kwargs: Mapping[str, Any]) -> None:
    unknown = sorted(set(model_kwargs) - MODEL_KWARGS)
    if unknown:
        raise ConfigError(
            f"unknown model option(s) {', '.join(unknown)}; known: {', '.join(sorted(MODEL_KWARGS))}"
        )


def _weights_choice(weights: str | Path | None) -> str:
    if weights is None:
        return "none"
    text = str(weights)
    if text.lower() in WEIGHT_CHOICES:
        return text.lower()
    path = Path(text)
    if path.is_dir():  # a run folder is the usual slip: a new run starts from a file
        raise ModelError(
            f"--weights {path}: a folder; pass a model file such as {path / 'weights' / 'best.pt'}"
        )
    if not path.is_file():
        raise ModelError(
            f"--weights {text}: no such file; use coco, imagenet, none, or a checkpoint / state-dict path"
        )
    return "file"


def _norm(pretrained_backbone: bool) -> Callable[..., nn.Module]:
    # Pretrained backbones keep their statistics frozen (batches of 2 would ruin them), as torchvision does.
    return FrozenBatchNorm2d if pretrained_backbone else nn.BatchNorm2d


def _resnet50_v1(num_classes: int, pretrained: bool, layers: int, options: dict[str, Any]) -> MaskRCNN:
    backbone = _resnet_fpn_extractor(resnet50(weights=None, norm_layer=_norm(pretrained)), layers)
    return MaskRCNN(backbone, num_classes=num_classes, **options)


def _resnet50_v2(num_classes: int, pretrained: bool, layers: int, options: dict[str, Any]) -> MaskRCNN:
    # Mirrors torchvision.models.detection.maskrcnn_resnet50_fpn_v2 (BatchNorm in backbone and heads).
    backbone = _resnet_fpn_extractor(resnet50(weights=None), layers, norm_layer=nn.BatchNorm2d)
    anchors = AnchorGenerator(((32,), (64,), (128,), (256,), (512,)), ((0.5, 1.0, 2.0),) * 5)
    rpn_head = RPNHead(backbone.out_channels, anchors.num_anchors_per_location()[0], conv_depth=2)
    box_head = FastRCNNConvFCHead(
        (backbone.out_channels, 7, 7), [256, 256, 256, 256], [1024], norm_layer=nn.BatchNorm2d
    )
    mask_head = MaskRCNNHeads(backbone.out_channels, [256, 256, 256, 256], 1, norm_layer=nn.BatchNorm2d)
    return MaskRCNN(
        backbone,
        num_classes=num_classes,
        rpn_anchor_generator=anchors,
        rpn_head=rpn_head,
        box_head=box_head,
        mask_head=mask_head,
        **options,
    )


SMALL_CHANNELS = 128  # resnet18 variant: FPN and head width (torchvision's are 256)


def _resnet18(num_classes: int, pretrained: bool, layers: int, options: dict[str, Any]) -> MaskRCNN:
    # Small on purpose: a 128-channel FPN and heads make the mask head (the costliest part at small
    # image sizes) about 4x cheaper than torchvision's 256-channel layout.
    body = resnet18(weights=None, norm_layer=_norm(pretrained))
    trainable = ["layer4", "layer3", "layer2", "layer1", "conv1"][:layers] + (["bn1"] if layers == 5 else [])
    for name, parameter in body.named_parameters():
        if not any(name.startswith(prefix) for prefix in trainable):
            parameter.requires_grad_(False)
    width = SMALL_CHANNELS
    backbone = BackboneWithFPN(
        body,
        return_layers={"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"},
        in_channels_list=[64, 128, 256, 512],
        out_channels=width,
        extra_blocks=LastLevelMaxPool(),
    )
    return MaskRCNN(
        backbone,
        num_classes=None,  # the predictors below carry the class count
        box_head=TwoMLPHead(width * 7 * 7, 512),
        box_predictor=FastRCNNPredictor(512, num_classes),
        mask_head=MaskRCNNHeads(width, [width] * 4, 1),
        mask_predictor=MaskRCNNPredictor(width, width, num_classes),
        **options,
    )


def _mobilenet_v3(num_classes: int, pretrained: bool, layers: int, options: dict[str, Any]) -> MaskRCNN:
    # Same backbone, anchors and box branch as torchvision's fasterrcnn_mobilenet_v3_large_fpn (so its
    # COCO weights fit): FPN maps "0" and "1" (stride 32) plus "pool"; poolers read "0" and "1".
    body = mobilenet_v3_large(weights=None, norm_layer=_norm(pretrained))
    backbone = _mobilenet_extractor(body, True, layers)
    sizes = ((32, 64, 128, 256, 512),) * 3
    anchors = AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes))
    box_pool = MultiScaleRoIAlign(featmap_names=["0", "1"], output_size=7, sampling_ratio=2)
    mask_pool = MultiScaleRoIAlign(featmap_names=["0", "1"], output_size=14, sampling_ratio=2)
    return MaskRCNN(
        backbone,
        num_classes=num_classes,
        rpn_anchor_generator=anchors,
        box_roi_pool=box_pool,
        mask_roi_pool=mask_pool,
        **options,
    )


_BUILDERS: dict[str, Callable[[int, bool, int, dict[str, Any]], MaskRCNN]] = {
    "maskrcnn_resnet50_fpn_v2": _resnet50_v2,
    "maskrcnn_resnet50_fpn": _resnet50_v1,
    "maskrcnn_mobilenet_v3_fpn": _mobilenet_v3,
    "maskrcnn_resnet18_fpn": _resnet18,
}


# --------------------------------------------------------------------------- pretrained weights


def _file_name(url: str) -> str:
    return Path(urlparse(url).path).name


def hub_checkpoint_dir() -> Path:
    """Where torchvision keeps downloaded weights: $TORCH_HOME/hub/checkpoints."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def cached_weights_path(enum: Any) -> Path:
    """Where the hub cache keeps (or will keep) the file of a torchvision weight enum."""
    return hub_checkpoint_dir() / _file_name(enum.url)


def fetch_weights(enum: Any, progress: bool = False) -> dict[str, torch.Tensor]:
    """The state dict of a torchvision weight enum: from the hub cache, else downloaded into it."""
    url = enum.url
    cached = cached_weights_path(enum)
    name, folder = cached.name, cached.parent
    if cached.is_file():
        try:
            return torch.load(cached, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same advice
            raise ModelError(
                f"pretrained weights file {cached} is unreadable ({type(exc).__name__}); "
                f"delete it and download {url} again"
            ) from exc
    try:
        # torch.hub prints "Downloading: ..." on stdout; keep stdout for --json output alone.
        with contextlib.redirect_stdout(sys.stderr):
            return torch.hub.load_state_dict_from_url(
                url,
                model_dir=str(folder),
                map_location="cpu",
                progress=progress,
                check_hash=True,
                weights_only=True,
            )
    except (urllib.error.URLError, OSError, TimeoutError, ConnectionError) as exc:
        raise WeightsUnavailable(
            f"cannot download pretrained weights {name} ({type(exc).__name__}: {exc}); offline, fetch "
            f"{url} elsewhere and place it as {name} in {folder} ($TORCH_HOME/hub/checkpoints)"
        ) from exc
    except RuntimeError as exc:  # hash mismatch of a partial download
        raise ModelError(f"downloaded weights {name} are corrupt ({exc}); delete {cached} and retry") from exc


def coco_detector(arch: str, classes: Sequence[str], **model_kwargs: Any) -> MaskRCNN:
    """torchvision's COCO detector as it is, `classes` being COCO's 90 category names (label 1..90),
    so its file holds every weight: built without initialising them (`skeleton_model`), the same
    model as `build_model(arch, classes, weights="coco")`, 0.5-1 s sooner. For the zero-shot model."""
    enum = _ARCH_WEIGHTS[arch][0]
    state = fetch_weights(enum)
    model = skeleton_model(arch, classes, pretrained_layout=True, **model_kwargs)
    misfit = _first_misfit(model.state_dict(), state)
    if misfit:
        raise ModelError(f"{_file_name(enum.url)}: COCO weights that do not fit {arch} ({misfit})")
    load_into_skeleton(model, state)
    note = f"COCO weights ({_file_name(enum.url)}) with COCO's own classes"
    model.weights_note = note  # type: ignore[attr-defined]
    return model


def _load_backbone(model: MaskRCNN, arch: str, state: Mapping[str, torch.Tensor]) -> None:
    """ImageNet classifier weights into the backbone body (the classifier head itself is dropped)."""
    body = model.backbone.body
    wanted = body.state_dict()
    if arch == "maskrcnn_mobilenet_v3_fpn":  # body holds `features.N`, renamed to `N` by the extractor
        state = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
    picked = {k: v for k, v in state.items() if k in wanted}
    missing = [k for k in wanted if k not in picked and not k.endswith("num_batches_tracked")]
    if missing:
        raise ModelError(f"ImageNet weights do not fit the {arch} backbone (missing {missing[:3]})")
    body.load_state_dict(picked, strict=False)


def _load_compatible(
    model: nn.Module,
    state: Mapping[str, torch.Tensor],
    source: str,
    allow_missing: tuple[str, ...] = (),
) -> list[str]:
    """Load all tensors but the class heads; anything else that does not fit is a ModelError.

    Returns the head keys that were skipped because their shapes differ (other class count).
    """
    own = model.state_dict()
    skipped: list[str] = []
    picked: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key not in own:
            # Frozen BatchNorm has no batch counter; other class heads may be absent.
            if key.startswith(HEAD_PREFIXES) or key.endswith("num_batches_tracked"):
                continue
            raise ModelError(
                f"{source}: unexpected tensor {key!r}; the file was made for another architecture"
            )
        if own[key].shape != value.shape:
            if key.startswith(HEAD_PREFIXES):
                skipped.append(key)
                continue
            raise ModelError(
                f"{source}: {key} has shape {tuple(value.shape)} but the model needs "
                f"{tuple(own[key].shape)}; the file was made for another architecture"
            )
        picked[key] = value
    missing = [
        k
        for k in own
        if k not in picked
        and not k.startswith(HEAD_PREFIXES + allow_missing)
        and not k.endswith("num_batches_tracked")
    ]
    if missing:
        raise ModelError(
            f"{source}: {len(missing)} tensors missing (e.g. {missing[0]}); "
            "it was made for another architecture"
        )
    model.load_state_dict(picked, strict=False)
    return skipped


# Class layers whose rows (times the factor) are one per class, background first.
_CLASS_ROWS = {
    "roi_heads.box_predictor.cls_score.weight": 1,
    "roi_heads.box_predictor.cls_score.bias": 1,
    "roi_heads.box_predictor.bbox_pred.weight": 4,
    "roi_heads.box_predictor.bbox_pred.bias": 4,
    "roi_heads.mask_predictor.mask_fcn_logits.weight": 1,
    "roi_heads.mask_predictor.mask_fcn_logits.bias": 1,
}


def _class_rows(
    own: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor], old: list[str], new: list[str]
) -> dict[str, torch.Tensor]:
    """The class layers for `new`: the model's fresh rows, with the rows of background and of every
    class `old` also has copied from `state` (a layer of another shape stays fresh)."""
    where = {name: n + 1 for n, name in enumerate(old)}
    sources = [0] + [where.get(name) for name in new]  # None: a class the weights never saw
    out: dict[str, torch.Tensor] = {}
    for key, per in _CLASS_ROWS.items():
        if key not in own:
            continue
        rows = own[key].clone()
        given = state.get(key)
        if given is not None and given.shape[0] == (len(old) + 1) * per and given.shape[1:] == rows.shape[1:]:
            for target, source in enumerate(sources):
                if source is not None:
                    rows[target * per : (target + 1) * per] = given[source * per : (source + 1) * per]
        out[key] = rows
    return out


def _load_weights_file(model: MaskRCNN, data: Any, path: Path, classes: list[str]) -> str:
    """Weights from an officescore checkpoint or a plain state dict (e.g. torchvision's .pth file):
    `data`, what `path` held."""
    if isinstance(data, dict) and data.get("format") == CHECKPOINT_FORMAT:
        state = data["model"]
        old = list(data.get("classes", []))
        if old == classes:
            _load_compatible(model, state, source=str(path))
            return f"weights from checkpoint {path.name}"
        # Other classes: never load the class layers as they are (rows would mean other classes,
        # even when the count matches); rows of the classes both lists have are carried over by name.
        rows = _class_rows(model.state_dict(), state, old, classes)
        _load_compatible(model, {k: v for k, v in state.items() if k not in rows}, source=str(path))
        model.load_state_dict(rows, strict=False)
        kept = [name for name in classes if name in old]
        return (
            f"weights from checkpoint {path.name}; its classes {old} differ from {classes}: the class "
            f"layers keep what it learnt for {', '.join(kept) or 'none of them'}, the others start fresh"
        )
    if isinstance(data, dict) and isinstance(data.get("model"), dict) and "arch" not in data:
        data = data["model"]  # common {"model": state_dict} wrapping
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise ModelError(f"{path}: neither an officescore checkpoint nor a state dict of tensors")
    skipped = _load_compatible(model, data, source=str(path))
    if skipped:
        return f"state dict {path.name}; its class heads have another class count, so they start fresh"
    return f"state dict {path.name}"


# --------------------------------------------------------------------------- checkpoints


# The commands that run a TorchScript export (through `load_any`); the others need a checkpoint.
TORCHSCRIPT_TAKERS = "score, eval, serve, audit, select, prelabel and label push --model"


def _torch_load(path: Path) -> Any:
    path = model_file(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such file")
    # An export under a checkpoint's name: torch.load would call it damaged.
    if is_onnx(path):
        raise ModelError(
            f"{path}: an ONNX model (from `officescore export --format onnx`), for other runtimes: no "
            "officescore command loads it; pass the training checkpoint it was exported from "
            "(runs/train/NAME/weights/best.pt)"
        )
    if any(name.endswith("/constants.pkl") for name in _zip_names(path)):
        raise ModelError(
            f"{path}: a TorchScript export (from `officescore export`), which {TORCHSCRIPT_TAKERS} "
            "run; this needs the training checkpoint it was exported from (runs/train/NAME/weights/best.pt)"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for damaged or foreign files
        raise ModelError(
            f"{path}: not a readable weights file ({type(exc).__name__}): truncated, damaged, or holding "
            "pickled code that weights_only loading refuses"
        ) from exc


def save_checkpoint(path: Path, **fields: Any) -> None:
    """Write a checkpoint atomically (temp file + rename): a crash never leaves half a file."""
    for key in ("model", "arch", "classes"):
        if key not in fields:
            raise ValueError(f"save_checkpoint needs {key!r}")
    record = {"format": CHECKPOINT_FORMAT, "officescore_version": __version__, "model_kwargs": {}}
    record.update(fields)
    buffer = io.BytesIO()
    torch.save(record, buffer)
    atomic_write(Path(path), lambda handle: handle.write(buffer.getbuffer()))


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint dict (weights_only load); missing, corrupt or foreign files raise ModelError."""
    data = _torch_load(Path(path))
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT or "model" not in data:
        raise ModelError(f"{path}: not an officescore checkpoint (made by `officescore train`)")
    if data.get("arch") not in ARCHS:
        raise ModelError(f"{path}: unknown architecture {data.get('arch')!r}; is officescore out of date?")
    return data


def _first_misfit(own: Mapping[str, torch.Tensor], state: Mapping[str, Any]) -> str | None:
    """The first tensor of `state` that does not fit `own` (a model's state dict), in words."""
    for key, value in state.items():
        if key not in own:
            return f"it has {key}, which the model has not"
        if not isinstance(value, torch.Tensor) or value.shape != own[key].shape:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            return f"{key} has shape {shape} but the model needs {tuple(own[key].shape)}"
    # A batch counter may be absent: frozen BatchNorm (a pretrained backbone) has none, and
    # BatchNorm2d's loader fills it in (as torch did for these checkpoints before this check).
    missing = [key for key in own if key not in state and not key.endswith("num_batches_tracked")]
    return f"{len(missing)} tensors missing (e.g. {missing[0]})" if missing else None


def model_from_checkpoint(
    checkpoint: Path | str | Mapping[str, Any], device: torch.device | str = "cpu", source: str = "checkpoint"
) -> tuple[MaskRCNN, list[str]]:
    """Rebuild the model a checkpoint describes, load its weights, eval mode on `device`.

    `source` names the checkpoint in errors when a loaded dict is given (a path names itself). The
    model is built without initialising its weights and takes the checkpoint's tensors themselves
    (`skeleton_model`, `load_into_skeleton`): on the CPU, a given dict's "model" tensors are the
    model's from then on."""
    if not isinstance(checkpoint, Mapping):
        source = str(checkpoint)
    data = checkpoint if isinstance(checkpoint, Mapping) else load_checkpoint(Path(checkpoint))
    classes = list(data["classes"])
    model = skeleton_model(data["arch"], classes, **dict(data.get("model_kwargs", {})))
    misfit = _first_misfit(model.state_dict(), data["model"])  # shapes only: no memory needed yet
    if misfit:
        # torch's own message starts "Error(s) in loading state_dict for MaskRCNN:" and lists every key.
        raise ModelError(
            f"{source}: its weights do not fit its architecture {data['arch']} ({misfit}); "
            "was it made by another officescore version, or edited?"
        )
    try:
        load_into_skeleton(model, data["model"])
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise ModelError(f"{source}: its weights do not fit {data['arch']}: {first}") from exc
    model.to(torch.device(device)).eval()
    return model, classes


def skeleton_model(arch: str, classes: Sequence[str], **model_kwargs: Any) -> MaskRCNN:
    """`build_model(arch, classes, weights="none", ...)` with its parameters and buffers on the meta
    device: no memory and no random initialisation (0.5 s for the ResNet50 variants on a CPU), for
    weights that `load_into_skeleton` puts in next. Where something built in a constructor outside
    the state dict would end up on meta, the model is built for real instead (slow but right).

    torch.device("meta") works through a torch-function mode, and torch keeps that mode stack per
    thread: a model another thread builds meanwhile (the label backend trains while it loads) gets
    real, initialised tensors. Leaving the block restores it, exception or not."""
    with torch.device("meta"):
        model = build_model(arch, classes, weights="none", **model_kwargs)
    if _meta_outside_state(model):
        return build_model(arch, classes, weights="none", **model_kwargs)
    return model


def load_into_skeleton(model: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Give a `skeleton_model` its weights: strict `load_state_dict` that takes the tensors of
    `state` themselves (assign=True: no second copy in memory, no time spent copying), so the model
    and `state` share them from then on. A tensor of another dtype or layout is converted first, as
    copying it into a built model would. A built model takes weights this way too.

    A batch counter the checkpoint lacks is filled in by BatchNorm2d's loader (0)."""
    own = model.state_dict()
    fitted = {
        key: value.to(own[key].dtype).contiguous()
        if key in own and isinstance(value, torch.Tensor)
        else value
        for key, value in state.items()
    }
    model.load_state_dict(fitted, assign=True)
    left = [key for key, tensor in model.state_dict().items() if tensor.is_meta]
    if left:  # strict loading checks names, not this; a tensor left on meta would fail at the first photo
        raise RuntimeError(f"{left[0]} is not in the checkpoint")


def _meta_outside_state(model: nn.Module) -> list[str]:
    """Meta tensors a state dict does not restore: non-persistent buffers, and tensors kept as plain
    attributes (as AnchorGenerator's cell anchors are; torchvision makes those on the CPU)."""
    found = []
    for name, module in model.named_modules():
        for key in module._non_persistent_buffers_set:
            if _has_meta(module._buffers.get(key)):
                found.append(f"{name}.{key}")
        for attr, value in vars(module).items():
            if attr not in _REGISTRIES and _has_meta(value):
                found.append(f"{name}.{attr}")
    return found


_REGISTRIES = ("_parameters", "_buffers", "_modules")


def _has_meta(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return value.is_meta
    if isinstance(value, dict):
        value = list(value.values())
    return isinstance(value, (list, tuple)) and any(_has_meta(item) for item in value)


def _zip_names(path: Path) -> list[str]:
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return []


def is_onnx(path: Path) -> bool:
    """True for an ONNX model whatever its name: a protobuf ModelProto opening with its ir_version
    (field 1, a small number) and then another of its fields. A torch checkpoint opens with "PK"."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(3)
    except OSError:
        return False
    return len(head) == 3 and head[0] == 0x08 and 0 < head[1] < 0x80 and head[2] in ONNX_FIELD_TAGS


ONNX_FIELD_TAGS = frozenset({0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42})  # ModelProto fields 2-8


def is_torchscript(path: Path) -> bool:
    """True for a zip written by torch.jit.save with our officescore.json extra file."""
    return any(name.endswith(f"/extra/{TORCHSCRIPT_META}") for name in _zip_names(path))


def load_any(path: Path | str, device: torch.device | str = "cpu") -> LoadedModel:
    """A checkpoint (.pt from train) or a TorchScript export, ready for inference on `device`."""
    path = existing_model_file(path)
    device = torch.device(device)
    if path.suffix.lower() == ".onnx" or is_onnx(path):
        raise ModelError(
            f"{path}: an ONNX model (from `officescore export --format onnx`); ONNX exports are for "
            "other runtimes: pass the checkpoint it came from "
            "or a TorchScript export (`officescore export --format torchscript`)"
        )
    if is_torchscript(path):
        extra = {TORCHSCRIPT_META: ""}
        try:
            with warnings.catch_warnings():  # torch 2.9+ calls jit.load deprecated: not the user's business
                warnings.filterwarnings("ignore", category=FutureWarning, message=".*torch.jit")
                scripted = torch.jit.load(str(path), map_location=device, _extra_files=extra)
            meta = json.loads(extra[TORCHSCRIPT_META])
        except Exception as exc:  # noqa: BLE001 - damaged archives raise many types
            raise ModelError(f"{path}: unreadable TorchScript export ({type(exc).__name__})") from exc
        classes = meta.get("classes") if isinstance(meta, dict) else None
        if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
            raise ModelError(
                f"{path}: a TorchScript file whose officescore metadata lists no classes; "
                "export it with `officescore export` instead"
            )
        scripted.eval()
        return LoadedModel(
            model=scripted,
            classes=list(classes),
            kind="torchscript",
            arch=str(meta.get("arch", "")),
            model_kwargs=dict(meta.get("model_kwargs", {})),
            device=device,
        )
    if any(name.endswith("/constants.pkl") for name in _zip_names(path)):
        raise ModelError(
            f"{path}: a TorchScript file without officescore metadata (classes); "
            "export it with `officescore export` instead"
        )
    data = load_checkpoint(path)
    model, classes = model_from_checkpoint(data, device, source=str(path))
    return LoadedModel(
        model=model,
        classes=classes,
        kind="checkpoint",
        arch=data["arch"],
        model_kwargs=dict(data.get("model_kwargs", {})),
        device=device,
    )
