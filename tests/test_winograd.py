"""NNPACK's Winograd convolutions on the fp32 fast path (officescore.infer.accel.winograd): the same
numbers as oneDNN's convolutions within fp32 rounding, used only where they pay, and the whole
model's kept detections still those of eager torchvision."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
from cpus import AVX2_ONLY
from scoremodels import tiny_model, write_scenes
from torchvision.transforms.functional import pil_to_tensor

from officescore import DEFAULT_CLASSES
from officescore.infer.accel import prepare, winograd

AVX512 = AVX2_ONLY | {"avx512f", "avx512bw"}


@pytest.fixture
def flags(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Pretend the CPU has these flags; nnpack_pays' cached answer is dropped before and after."""

    def use(value: frozenset[str]) -> None:
        winograd.nnpack_pays.cache_clear()
        monkeypatch.setattr(winograd, "cpu_flags", lambda: value)

    yield use
    winograd.nnpack_pays.cache_clear()  # also when the test failed half-way


@pytest.fixture
def nnpack_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, ...]]:
    """The input shapes of every NNPACK call."""
    calls: list[tuple[int, ...]] = []
    real = winograd._nnpack

    def counted(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        calls.append(tuple(x.shape))
        return real(x, weight, bias)

    monkeypatch.setattr(winograd, "_nnpack", counted)
    return calls


def _close(want: torch.Tensor, got: torch.Tensor) -> bool:
    # Winograd F(6x6, 3x3) in fp32: ~1e-5 of the largest output per layer, measured 2026-12-01.
    return want.shape == got.shape and float((want - got).abs().max()) <= 1e-4 * float(want.abs().max())


def test_nnpack_conv_matches_the_convolution_and_leaves_small_maps_to_onednn(
    nnpack_calls: list[tuple[int, ...]],
) -> None:
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(32, 48, 3, padding=1).eval()
    wrapped = winograd.NNPACKConv2d(conv)
    large = torch.randn(1, 32, 60, 50).contiguous(memory_format=torch.channels_last)  # 3000 >= MIN_AREA
    small = torch.randn(1, 32, 20, 20)
    with torch.inference_mode():
        assert _close(conv(large), wrapped(large))
        assert nnpack_calls == [(1, 32, 60, 50)]
        assert torch.equal(conv(small), wrapped(small))  # oneDNN's own result
        assert len(nnpack_calls) == 1
    assert not winograd.eligible(torch.nn.Conv2d(8, 8, 3, stride=2, padding=1))
    assert not winograd.eligible(torch.nn.Conv2d(8, 8, 3, padding=1, groups=8))
    assert not winograd.eligible(torch.nn.Conv2d(8, 8, 1))


def _conv_head(channels: int, depth: int, size: int, fc: bool) -> torch.nn.Sequential:
    from torchvision.ops.misc import Conv2dNormActivation

    blocks: list[torch.nn.Module] = [
        Conv2dNormActivation(channels, channels, 3, norm_layer=torch.nn.BatchNorm2d) for _ in range(depth)
    ]
    if fc:
        blocks += [torch.nn.Flatten(), torch.nn.Linear(channels * size * size, 16), torch.nn.ReLU()]
    head = torch.nn.Sequential(*blocks).eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in head.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.copy_(torch.rand(channels, generator=gen) * 0.2 - 0.1)
                module.running_var.copy_(torch.rand(channels, generator=gen) + 0.5)
            elif isinstance(module, torch.nn.Conv2d):
                module.bias = torch.nn.Parameter(torch.rand(channels, generator=gen))  # lights the gutter
    return head


@pytest.mark.parametrize(("proposals", "size", "fc"), [(150, 7, True), (45, 14, False)])
def test_roi_mosaic_gives_each_proposal_its_own_convolution(
    proposals: int, size: int, fc: bool, nnpack_calls: list[tuple[int, ...]]
) -> None:
    """150 box proposals of 7x7 (a 13x12 grid, its last row part empty) and 45 mask proposals of
    14x14 (7x7): tiled into one image, each proposal's output equals its own zero-padded convolution (a
    neighbour leaking through the gutter, or a gutter left lit by the bias, would change it)."""
    head = _conv_head(16, 4, size, fc)
    prepare.fold_batchnorm(head)
    convs = [block[0] for block in list(head)[:4]]
    mosaic = winograd.RoiMosaic(head, convs)
    torch.manual_seed(2)
    x = torch.rand(proposals, 16, size, size) * 4
    with torch.inference_mode():
        assert _close(head(x), mosaic(x))
    assert len(nnpack_calls) == 4 and nnpack_calls[0][:2] == (1, 16)
    with torch.inference_mode():
        alone = mosaic(x[:1])  # 1 tile: under MOSAIC_MIN_AREA, the head itself
    assert len(nnpack_calls) == 4 and torch.equal(alone, head(x[:1]))


def _v2() -> Any:
    from officescore.model import build_model

    torch.manual_seed(0)
    return build_model("maskrcnn_resnet50_fpn_v2", list(DEFAULT_CLASSES), weights="none").eval()


def test_prepare_model_routes_v2_through_nnpack_only_where_it_pays(flags: Any) -> None:
    """fp32 on an AVX2 CPU: v2's 4 FPN output convs, 2 RPN convs and its box and mask heads' 4 + 4
    convs. Not with AVX-512 (oneDNN's own kernels, not measured against), nor in bf16."""
    flags(AVX2_ONLY)
    model = prepare.prepare_model(_v2(), "cpu", "fp32")
    assert sum(isinstance(m, winograd.NNPACKConv2d) for m in model.modules()) == 6
    assert isinstance(model.roi_heads.box_head, winograd.RoiMosaic)
    assert model.roi_heads.box_head.depth == model.roi_heads.mask_head.depth == 4
    for cpu, precision in ((AVX512, "fp32"), (AVX2_ONLY, "bf16")):
        flags(cpu)
        other = prepare.prepare_model(_v2(), "cpu", precision)
        assert not any(isinstance(m, (winograd.NNPACKConv2d, winograd.RoiMosaic)) for m in other.modules())


def test_fast_path_with_nnpack_keeps_eager_torchvisions_kept_detections(
    tmp_path: Path, nnpack_calls: list[tuple[int, ...]]
) -> None:
    """A tiny ResNet18-FPN at 256 px (maps of 64x64 and 32x32 reach NNPACK): the kept detections'
    labels, boxes (0.01 px) and masks (IoU >= 0.99) are eager torchvision's."""
    from PIL import Image

    from officescore.infer.accel import forward

    model = tiny_model(list(DEFAULT_CLASSES), {1: 6.0, 3: 4.0})
    model.transform.min_size, model.transform.max_size = (256,), 256
    fast = prepare.prepare_model(copy.deepcopy(model), "cpu", "fp32", winograd=True)
    photos = write_scenes(tmp_path, n=2, size=256, suffix=".png")
    for photo in photos:
        image = [pil_to_tensor(Image.open(photo).convert("RGB")).float() / 255]
        with torch.inference_mode():
            eager = model(image)[0]
        keep = eager["scores"] >= 0.5
        got = forward(fast, image, "cpu", "fp32", 0.5)[0]
        assert int(keep.sum()) >= 1 and torch.equal(got["labels"], eager["labels"][keep])
        assert float((got["boxes"] - eager["boxes"][keep]).abs().max()) <= 0.01
        a, b = got["masks"][:, 0] > 0.5, eager["masks"][keep][:, 0] > 0.5
        union = (a | b).flatten(1).sum(1)
        iou = torch.where(union > 0, (a & b).flatten(1).sum(1) / union.clamp(min=1), 1.0)  # empty = empty
        assert float(iou.min()) >= 0.99
    assert any(shape[2] * shape[3] >= 64 * 64 for shape in nnpack_calls)  # the FPN's largest map


def test_a_map_of_exactly_min_area_goes_to_nnpack_and_a_bf16_map_never(
    nnpack_calls: list[tuple[int, ...]],
) -> None:
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(8, 8, 3, padding=1).eval()
    side = int(winograd.MIN_AREA**0.5)
    assert side * side == winograd.MIN_AREA
    with torch.inference_mode():
        winograd.NNPACKConv2d(conv)(torch.randn(1, 8, side, side))
        assert nnpack_calls == [(1, 8, side, side)]
        half = conv.bfloat16()
        x = torch.randn(1, 8, side, side).bfloat16()
        assert torch.equal(winograd.NNPACKConv2d(half)(x), half(x))
    assert nnpack_calls == [(1, 8, side, side)]


def test_an_int8_model_runs_its_fp32_fpn_through_nnpack_where_it_pays(
    flags: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """int8 quantises the body only: the FPN, RPN and heads stay fp32, and take NNPACK as fp32 does
    (the quantisation itself is tests/test_int8.py's: skipped here, it costs seconds)."""
    monkeypatch.setattr(prepare, "quantize_body", lambda model, calibration: model)
    flags(AVX2_ONLY)
    routed = []
    for precision in ("fp32", "int8"):
        model = tiny_model(list(DEFAULT_CLASSES), {})
        model = prepare.prepare_model(model, "cpu", precision, calibration=[torch.rand(3, 64, 64)])
        routed.append(sum(isinstance(m, winograd.NNPACKConv2d) for m in model.modules()))
    assert routed[0] > 0 and routed[1] == routed[0]
