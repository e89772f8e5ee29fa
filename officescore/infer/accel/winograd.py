"""3x3 convolutions through NNPACK's Winograd kernels, where they beat oneDNN on this CPU.

On CPUs without AVX-512, oneDNN's fp32 convolutions are direct (AVX2); NNPACK, which PyTorch ships,
computes a 3x3 stride-1 convolution with Winograd F(6x6, 3x3) transforms: about 5x fewer multiplies,
paid for by transforms that only pay off on large feature maps (probed 2026-12-01 on a 2-core AVX2
EPYC, 256 channels: 2.3x faster than oneDNN at 257x257, 3.6x slower at 13x13 and 1.4x slower on
1000 separate 7x7 proposals; bench/score.py measures the whole model). The numbers stay fp32
(relative error ~1e-5 per layer, as much as a changed summation order gives through a few layers).

Where it is used (prepare_model, fp32 on CPU only):
- `NNPACKConv2d` for the FPN's 3x3 output convolutions and the RPN head's, per call on maps of at
  least `MIN_AREA` pixels: they take and give NCHW, so the RPN and RoIAlign read them without the
  channels_last -> NCHW copy RoIAlign would otherwise make.
- `RoiMosaic` for the convolutions of the box and mask heads: v2's box head runs four 3x3
  convolutions on each of 1000 proposals of 7x7, too small for Winograd one by one, so the
  proposals are laid out as tiles of one image with a one-pixel zero gutter between them (a 3x3
  window never reaches a neighbour, so each tile's result is the same as its own zero-padded
  convolution) and the gutter is zeroed again after each layer.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch
from torch import nn
from torchvision.ops.misc import Conv2dNormActivation

from officescore.infer.accel.capability import cpu_flags

# Below these, oneDNN's direct convolution is faster (measured 2026-12-01 on a 2-core AVX2 EPYC, 256
# channels): a map with fewer pixels, and proposals whose tiled image has fewer (tiling and untiling
# cost two copies; v2's box head breaks even at ~150 proposals of 7x7, its mask head at ~35 of 14x14).
MIN_AREA = 48 * 48
MOSAIC_MIN_AREA = 96 * 96


@functools.cache
def nnpack_pays() -> bool:
    """True when NNPACK is usable and oneDNN has no AVX-512 kernels to beat it (measured on AVX2 only)."""
    try:
        available = bool(torch._nnpack_available())  # also initialises NNPACK: it fails without
    except (AttributeError, RuntimeError):
        return False
    flags = cpu_flags()
    return available and "avx2" in flags and "avx512f" not in flags


def eligible(conv: Any) -> bool:
    """A plain 3x3, stride-1, padding-1 convolution NNPACK computes (no groups, no dilation)."""
    return (
        type(conv) is nn.Conv2d
        and conv.kernel_size == (3, 3)
        and conv.stride == (1, 1)
        and conv.padding == (1, 1)
        and conv.dilation == (1, 1)
        and conv.groups == 1
        and conv.padding_mode == "zeros"
    )


def _initialise() -> None:
    if not torch._nnpack_available():  # the first call initialises NNPACK: its convolutions fail without
        raise RuntimeError("this torch build has no NNPACK")


def _nnpack(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return torch._nnpack_spatial_convolution(x.contiguous(), weight, bias, [1, 1])


class NNPACKConv2d(nn.Module):
    """`conv` through NNPACK on float32 CPU maps of at least MIN_AREA pixels, else `conv` itself."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        _initialise()
        self.conv = conv
        self.register_buffer("weight", conv.weight.detach().contiguous(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32 and x.device.type == "cpu" and x.shape[-2] * x.shape[-1] >= MIN_AREA:
            return _nnpack(x, self.weight, self.conv.bias)
        return self.conv(x)


def _conv_relu(block: Any) -> nn.Conv2d | None:
    """The conv of a Conv2dNormActivation that is conv -> (folded BatchNorm) -> ReLU, else None."""
    if not isinstance(block, Conv2dNormActivation):
        return None
    layers = [m for m in block if not isinstance(m, nn.Identity)]
    if len(layers) == 2 and eligible(layers[0]) and type(layers[1]) is nn.ReLU:
        return layers[0]
    return None


class RoiMosaic(nn.Module):
    """A box or mask head whose leading conv+ReLU blocks run on the proposals tiled into one image."""

    def __init__(self, head: nn.Sequential, convs: list[nn.Conv2d]) -> None:
        super().__init__()
        _initialise()
        self.head = head
        self.depth = len(convs)
        for i, conv in enumerate(convs):
            self.register_buffer(f"weight{i}", conv.weight.detach().contiguous(), persistent=False)
            self.register_buffer(f"bias{i}", conv.bias, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        if x.dtype != torch.float32 or x.device.type != "cpu" or n * (h + 1) * (w + 1) < MOSAIC_MIN_AREA:
            return self.head(x)
        image = _tile(x)
        for i in range(self.depth):
            image = _nnpack(image, getattr(self, f"weight{i}"), getattr(self, f"bias{i}")).relu_()
            _zero_gutters(image, h, w)  # as the next layer's zero padding of each proposal
        x = _untile(image, n, h, w)
        for block in list(self.head)[self.depth :]:
            x = block(x)
        return x


def _grid(n: int) -> tuple[int, int]:
    cols = math.ceil(math.sqrt(n))
    return math.ceil(n / cols), cols


def _cells(image: torch.Tensor, rows: int, cols: int, h: int, w: int) -> torch.Tensor:
    """The [c, rows, h, cols, w] view of `image`'s tile interiors (no copy)."""
    grid = (
        image[0, :, : rows * (h + 1), : cols * (w + 1)]
        .unflatten(1, (rows, h + 1))
        .unflatten(3, (cols, w + 1))
    )
    return grid[:, :, 1:, :, 1:]


def _tile(x: torch.Tensor) -> torch.Tensor:
    """[n, c, h, w] -> one [1, c, H, W] image of tiles with one-pixel zero gutters (one strided copy)."""
    n, c, h, w = x.shape
    rows, cols = _grid(n)
    image = x.new_zeros(1, c, rows * (h + 1) + 1, cols * (w + 1) + 1)
    cells = _cells(image, rows, cols, h, w)
    full = n // cols  # complete rows of tiles, then what is left in the last one
    cells[:, :full].copy_(x[: full * cols].unflatten(0, (full, cols)).permute(2, 0, 3, 1, 4))
    if n > full * cols:
        cells[:, full, :, : n - full * cols].copy_(x[full * cols :].permute(1, 2, 0, 3))
    return image


def _zero_gutters(image: torch.Tensor, h: int, w: int) -> torch.Tensor:
    image[:, :, :: h + 1].zero_()
    image[:, :, :, :: w + 1].zero_()
    return image


def _untile(image: torch.Tensor, n: int, h: int, w: int) -> torch.Tensor:
    rows, cols = _grid(n)
    cells = _cells(image, rows, cols, h, w)  # [c, rows, h, cols, w]
    return cells.permute(1, 3, 0, 2, 4).reshape(rows * cols, image.shape[1], h, w)[:n].contiguous()


def use_winograd(model: Any) -> int:
    """Route `model`'s FPN/RPN 3x3 convolutions and its conv box/mask heads through NNPACK; returns
    how many convolutions now can take it. Call after BatchNorm folding (the heads' blocks must be
    conv -> ReLU) and after any memory-format change (the NNPACK weights are kept NCHW)."""
    routed = 0
    parents = [getattr(getattr(model.backbone, "fpn", None), "layer_blocks", None), model.rpn.head]
    for parent in filter(None, parents):
        for module in list(parent.modules()):
            for name, child in list(module._modules.items()):
                if eligible(child):
                    module._modules[name] = NNPACKConv2d(child)
                    routed += 1
    heads = model.roi_heads
    for attr in ("box_head", "mask_head"):
        head = getattr(heads, attr, None)
        if not isinstance(head, nn.Sequential):
            continue
        convs = []
        for block in head:
            conv = _conv_relu(block)
            if conv is None:
                break
            convs.append(conv)
        if convs:
            setattr(heads, attr, RoiMosaic(head, convs))
            routed += len(convs)
    return routed
