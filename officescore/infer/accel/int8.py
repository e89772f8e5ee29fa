"""int8 backbone: post-training static quantisation of a detector's ResNet/MobileNet body.

The body (about a third of v2's time at 800 px on an AVX2 CPU) runs as int8 convolutions through
PyTorch's x86 quantised kernels (fbgemm/oneDNN, VNNI where the CPU has it, AVX2 otherwise); the
FPN, RPN and heads stay fp32, so boxes and masks are decoded in full precision. Activation ranges
come from calibration photos as the body sees them (the model's own resize and normalisation), with
per-channel weight scales. FX graph mode (torch.ao.quantization.quantize_fx) is used because PT2E
needs torch.export, which cannot capture Mask R-CNN, and torch 2.14 moved PT2E to torchao.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch

from officescore.errors import ConfigError
from officescore.infer.accel.capability import INT8_ENGINE as ENGINE

CALIBRATION_PHOTOS = 16  # photos whose activations set the int8 ranges (mAP measured with 16)


def spread(items: Sequence[Any], n: int = CALIBRATION_PHOTOS) -> list[Any]:
    """Up to `n` of `items`, evenly spread from first to last (a folder sorted by name often holds
    one desk per run of names)."""
    if len(items) <= n:
        return list(items)
    return [items[i * len(items) // n] for i in range(n)]


@torch.no_grad()
def quantize_body(model: Any, calibration: Sequence[torch.Tensor]) -> Any:
    """Replace `model.backbone.body` by an int8 version calibrated on `calibration` (3xHxW float
    images in [0, 1], as the model takes them); returns the model. Run after fold_batchnorm, so
    each conv carries its BatchNorm, and before channels_last (the quantised body takes either)."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    if not calibration:
        raise ConfigError("--precision int8 needs calibration photos; none were given")
    body = model.backbone.body
    torch.backends.quantized.engine = ENGINE
    example = model.transform(list(calibration[:1]))[0].tensors
    with warnings.catch_warnings():  # FX's deprecation notices, once per model
        warnings.simplefilter("ignore")
        graph = _without_identities(body.float())
        mapping = get_default_qconfig_mapping(ENGINE).set_module_name(_first_conv(graph), None)
        observed = prepare_fx(graph, mapping, example_inputs=(example,))
        for image in calibration:  # resized and normalised by the model's own transform, as in use
            observed(model.transform([image])[0].tensors)
        model.backbone.body = convert_fx(observed)
    return model


def _without_identities(body: torch.nn.Module) -> torch.fx.GraphModule:
    """`body` traced, with the nn.Identity left by fold_batchnorm taken out: conv -> ReLU is then
    adjacent again, and FX fuses it into one int8 ConvReLU."""
    graph = torch.fx.symbolic_trace(body)
    for node in list(graph.graph.nodes):
        if node.op == "call_module" and isinstance(graph.get_submodule(node.target), torch.nn.Identity):
            node.replace_all_uses_with(node.args[0])
            graph.graph.erase_node(node)
    graph.delete_all_unused_submodules()
    graph.recompile()
    return graph


def _first_conv(graph: torch.fx.GraphModule) -> str:
    """The name of the body's first convolution, the one on the normalised RGB photo, which stays
    fp32: quantising it cost up to a box mAP point on a trained model, keeping it ~0.1-0.4."""
    for node in graph.graph.nodes:
        if node.op == "call_module" and isinstance(graph.get_submodule(node.target), torch.nn.Conv2d):
            return str(node.target)
    raise ValueError("the backbone body has no convolution to quantise")
