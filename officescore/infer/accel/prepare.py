"""Inference-time rewrites of a torchvision detector.

Exact ones (any precision): BatchNorm folded into the convolution before it (v2's box head runs four
3x3 conv + BatchNorm on each of 1000 proposals; folding removes the BatchNorm passes) and
channels_last weights on CPU (oneDNN's native layout: no reorder around each convolution).
Outside exact fp32: at most `capability.FAST_PROPOSALS` RPN proposals per image at test time instead of
torchvision's 1000 (the box head's cost is linear in them; mAP cost measured in bench/score.py).

The model's submodules stay real nn.Modules called during the forward pass, so forward hooks on
`backbone`, `roi_heads.box_predictor` and `roi_heads.mask_predictor` still fire.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.models.resnet import BasicBlock, Bottleneck
from torchvision.ops.misc import FrozenBatchNorm2d

from officescore.infer.accel.int8 import quantize_body
from officescore.infer.accel.winograd import nnpack_pays, use_winograd

_BATCHNORMS = (nn.BatchNorm2d, FrozenBatchNorm2d)


def prepare_model(
    model: Any,
    device: torch.device | str,
    precision: str = "fp32",
    proposals: int | None = None,
    copy_model: bool = False,
    channels_last: bool = True,
    winograd: bool | None = None,
    calibration: Sequence[torch.Tensor] = (),
) -> Any:
    """`model` ready for the fast path on `device` (in place, or a copy with `copy_model`).

    `precision`: the resolved one (fp32, bf16, fp16, int8: an int8 backbone calibrated on
    `calibration`, 3xHxW float images in [0, 1]); `proposals`: at most this many RPN proposals
    per image at test time (None: the model's own, as exact fp32 needs); `winograd`: route the
    FPN/RPN convolutions and conv heads through NNPACK (None: in fp32 and int8, whose FPN and heads
    are fp32, on CPUs where it pays,
    officescore.infer.accel.winograd). Anything but an eager
    torchvision detector (a TorchScript export) is returned as it is.
    """
    if not isinstance(model, GeneralizedRCNN):
        return model
    if copy_model:  # e.g. train's validation: the training model must not change
        model = copy.deepcopy(model)
    model.eval().requires_grad_(False)
    fold_batchnorm(model)
    device = torch.device(device)
    model.to(device)
    if precision == "int8":
        quantize_body(model, calibration)
    if channels_last and device.type == "cpu":
        model.to(memory_format=torch.channels_last)
    if winograd is None:  # int8 quantises the body only: the rest is fp32
        winograd = precision in ("fp32", "int8") and device.type == "cpu" and nnpack_pays()
    if winograd:
        use_winograd(model)
    if proposals is not None:
        testing = model.rpn._post_nms_top_n
        testing["testing"] = min(int(testing["testing"]), int(proposals))
    if precision in ("bf16", "fp16"):
        # Box deltas, class logits and mask logits leave autocast as float32: decoded in bf16, a box
        # edge at x = 800 would be rounded to a multiple of 4 px.
        for head in (model.rpn.head, model.roi_heads.box_predictor, model.roi_heads.mask_predictor):
            if head is not None:
                head.register_forward_hook(_float32_outputs)
    return model


def _float32_outputs(module: nn.Module, inputs: Any, output: Any) -> Any:
    if isinstance(output, torch.Tensor):
        return output.float()
    if isinstance(output, (tuple, list)):
        return type(output)(_float32_outputs(module, inputs, item) for item in output)
    return output


def fold_batchnorm(module: nn.Module) -> int:
    """Fold every eval-mode BatchNorm that directly follows a Conv2d into that conv; returns how many.

    "Directly follows": consecutive children of an nn.Sequential (Conv2dNormActivation, ResNet's
    downsample), of torchvision's IntermediateLayerGetter (ResNet's stem), and ResNet blocks'
    convN/bnN pairs. The BatchNorm becomes nn.Identity.
    """
    folded = 0
    for parent in list(module.modules()):
        if isinstance(parent, (nn.Sequential, IntermediateLayerGetter)):  # children run in order
            names = list(parent._modules)
            pairs = list(zip(names, names[1:], strict=False))
        elif isinstance(parent, (Bottleneck, BasicBlock)):
            pairs = [(f"conv{i}", f"bn{i}") for i in (1, 2, 3) if hasattr(parent, f"bn{i}")]
        else:
            continue
        for conv_name, bn_name in pairs:
            conv, bn = parent._modules.get(conv_name), parent._modules.get(bn_name)
            if _foldable(conv, bn):
                parent._modules[conv_name] = _folded(conv, bn)
                parent._modules[bn_name] = nn.Identity()
                folded += 1
    return folded


def _foldable(conv: Any, bn: Any) -> bool:
    return (
        type(conv) is nn.Conv2d
        and isinstance(bn, _BATCHNORMS)
        and not bn.training
        and not conv.training
        and bn.running_mean is not None
        and bn.running_mean.numel() == conv.out_channels
    )


@torch.no_grad()
def _folded(conv: nn.Conv2d, bn: nn.Module) -> nn.Conv2d:
    # In float64, then back to the conv's dtype: the folded weights round once.
    scale = bn.weight.double() * torch.rsqrt(bn.running_var.double() + bn.eps)
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
    fused = copy.deepcopy(conv)
    if fused.bias is None:
        fused.bias = nn.Parameter(torch.empty(conv.out_channels, dtype=conv.weight.dtype))
    fused.weight.copy_(conv.weight.double() * scale.reshape(-1, 1, 1, 1))
    fused.bias.copy_((bias - bn.running_mean.double()) * scale + bn.bias.double())
    return fused.requires_grad_(False)
