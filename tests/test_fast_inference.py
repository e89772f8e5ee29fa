"""The fast inference path (officescore.infer.accel): exact fp32 against eager torchvision, the precision
choice by hardware (mocked both ways), reduced precision against fp32, eval numbers unchanged."""

from __future__ import annotations

import copy
import inspect
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from cpus import AVX2_ONLY, NATIVE_BF16
from scoremodels import tiny_model, write_checkpoint, write_scenes
from torchvision.transforms.functional import pil_to_tensor

from officescore import DEFAULT_CLASSES
from officescore.errors import ConfigError
from officescore.infer.accel import capability, prepare

CONF = 0.5
# A tiny ResNet18-FPN (BatchNorm in its backbone) whose desk and monitor logits are biased: 14-18 of
# its 20 detections per scene score >= CONF, the rest below it.
FAVOUR = {"desk": 6.0, "monitor": 4.0}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from PIL import Image

    from officescore.model import load_any

    root = tmp_path_factory.mktemp("fast")
    checkpoint = write_checkpoint(root / "tiny.pt", favour=FAVOUR)
    photos = write_scenes(root / "photos", n=2, size=128, suffix=".png")
    model = load_any(checkpoint).model
    with torch.inference_mode():
        eager = [model([pil_to_tensor(Image.open(p).convert("RGB")).float() / 255])[0] for p in photos]
    return {"checkpoint": checkpoint, "photos": photos, "eager": eager}


def test_batchnorm_folding_keeps_v2_heads_outputs() -> None:
    """v2's box and mask heads (four 3x3 conv + BatchNorm each) with seeded statistics: folded, no
    BatchNorm is left and the outputs stay within float32 rounding."""
    from officescore.model import build_model

    torch.manual_seed(0)
    model = build_model("maskrcnn_resnet50_fpn_v2", list(DEFAULT_CLASSES), weights="none").eval()
    gen = torch.Generator().manual_seed(1)
    heads = torch.nn.ModuleList([model.roi_heads.box_head, model.roi_heads.mask_head])
    with torch.no_grad():
        for module in heads.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(torch.rand(n, generator=gen) * 0.2 - 0.1)
                module.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                module.weight.copy_(torch.rand(n, generator=gen) + 0.5)
    folded = copy.deepcopy(heads)
    assert prepare.fold_batchnorm(folded) == 8
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    for index, size in ((0, 7), (1, 14)):
        x = torch.randn(6, 256, size, size, generator=gen)
        with torch.inference_mode():
            want, got = heads[index](x), folded[index](x)
        assert torch.allclose(want, got, rtol=1e-4, atol=1e-4 * float(want.abs().max()))


@pytest.mark.parametrize("kind", ["BatchNorm2d", "FrozenBatchNorm2d"])
def test_batchnorm_folding_keeps_eps_for_channels_with_no_variance(kind: str) -> None:
    """Trained nets have channels whose running_var is ~0 (1e-6) or exactly 0 (dead channels):
    BatchNorm divides by sqrt(var + eps) there, so a fold that forgets eps (here 1e-3, as
    torchvision's v2 heads use) is 31x off or infinite. Folded outputs equal the unfolded module's."""
    from torchvision.ops.misc import FrozenBatchNorm2d

    gen = torch.Generator().manual_seed(0)
    conv = torch.nn.Conv2d(3, 4, 3, padding=1, bias=False)
    bn = torch.nn.BatchNorm2d(4, eps=1e-3) if kind == "BatchNorm2d" else FrozenBatchNorm2d(4, eps=1e-3)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen))
        bn.running_mean.copy_(torch.randn(4, generator=gen))
        bn.running_var.copy_(torch.tensor([1e-6, 0.0, 0.0, 0.7]))
        bn.weight.copy_(torch.rand(4, generator=gen) + 0.5)
        bn.bias.copy_(torch.randn(4, generator=gen))
    module = torch.nn.Sequential(conv, bn).eval()
    folded = copy.deepcopy(module)
    assert prepare.fold_batchnorm(folded) == 1 and isinstance(folded[1], torch.nn.Identity)
    x = torch.randn(2, 3, 9, 7, generator=gen)
    with torch.inference_mode():
        want, got = module(x), folded(x)
    assert torch.isfinite(got).all()
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-5 * float(want.abs().max()))


def _kept(output: dict[str, torch.Tensor], conf: float = CONF) -> dict[str, torch.Tensor]:
    keep = output["scores"] >= conf
    return {k: v[keep] for k, v in output.items()}


def _mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = float((a | b).sum())
    return float((a & b).sum()) / union if union else 1.0  # two empty masks are the same mask


def test_fp32_fast_path_equals_eager_torchvision_on_kept_detections(tiny: dict[str, Any]) -> None:
    """Same labels, boxes within 0.01 px, mask IoU >= 0.99; the mask head saw only kept detections;
    every BatchNorm is folded; the hooks other tools rely on still fire."""
    from officescore import masks as masklib
    from officescore.infer import Predictor

    predictor = Predictor.load(tiny["checkpoint"], device="cpu", conf=CONF, precision="fp32")
    assert predictor.precision == "fp32" and predictor.proposals is None
    model = predictor.model
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert model.rpn._post_nms_top_n["testing"] == 30  # the model's own (scoremodels.TINY_KWARGS)
    seen: dict[str, list[int]] = {"backbone": [], "box": [], "mask": []}
    hooks = [
        model.backbone.register_forward_hook(lambda m, i, o: seen["backbone"].append(len(o))),
        model.roi_heads.box_predictor.register_forward_hook(lambda m, i, o: seen["box"].append(len(o[0]))),
        model.roi_heads.mask_predictor.register_forward_hook(lambda m, i, o: seen["mask"].append(len(o))),
    ]
    try:
        results = predictor.predict(tiny["photos"], batch_size=1, workers=0)
    finally:
        for hook in hooks:
            hook.remove()
    names = predictor.label_names
    for result, eager in zip(results, tiny["eager"], strict=True):
        base = _kept(eager)
        assert 1 <= len(base["labels"]) < len(eager["labels"])  # some kept, some dropped
        assert [d.class_name for d in result.detections] == [names[int(k)] for k in base["labels"]]
        boxes = np.array([d.box for d in result.detections])
        assert np.abs(boxes - base["boxes"].numpy()).max() <= 0.01
        for det, probabilities in zip(result.detections, base["masks"][:, 0].numpy(), strict=True):
            mask = probabilities > 0.5
            assert _mask_iou(masklib.decode(det.mask).astype(bool), mask) >= 0.99
            # How sure the mask head is: its mean probability inside the mask, from the same pixels.
            assert det.mask_score == pytest.approx(float(probabilities[mask].mean()), abs=1e-3)
    assert seen["backbone"] and len(seen["box"]) == 2
    assert seen["mask"] == [len(r.detections) for r in results]  # masks for kept detections only


def test_a_mask_score_is_the_mean_probability_inside_its_mask() -> None:
    """Worked by hand: pixels above 0.5 are the mask; an empty mask scores 0; bf16 masks (autocast)
    score as their float32 values do."""
    from officescore.infer.accel.run import mask_scores

    masks = torch.tensor(
        [
            [[[0.9, 0.7], [0.4, 0.2]]],  # inside: 0.9, 0.7
            [[[0.3, 0.3], [0.5, 0.1]]],  # nothing above 0.5: empty
            [[[1.0, 0.6], [0.8, 0.52]]],  # all four inside
        ]
    )
    want = [0.8, 0.0, (1.0 + 0.6 + 0.8 + 0.52) / 4]
    assert mask_scores(masks).tolist() == pytest.approx(want)
    assert mask_scores(masks.bfloat16()).tolist() == pytest.approx(want, abs=0.01)
    assert mask_scores(masks[:0]).shape == (0,)


def test_a_mask_score_read_inside_its_box_equals_the_whole_photos() -> None:
    """With boxes, only the window torchvision pastes each mask into is read (100 masks on a photo:
    the whole photo's pixels would cost more than the detection's own work). Boxes anywhere, at the
    photo's edges and past them, small and large: the same scores as over the whole photo."""
    from torchvision.models.detection.roi_heads import paste_masks_in_image

    from officescore.infer.accel.run import mask_scores

    gen = torch.Generator().manual_seed(0)
    height, width = 90, 120
    corner = torch.rand(40, 2, generator=gen) * torch.tensor([width, height]) - 10
    boxes = torch.cat([corner, corner + torch.rand(40, 2, generator=gen) * 60 + 1], 1)
    edges = torch.tensor([[0.0, 0.0, 30.0, 20.0], [100.0, 75.0, 120.0, 90.0], [-5.0, 3.0, 130.0, 95.0]])
    boxes = torch.cat([boxes, edges])
    small = torch.rand(len(boxes), 1, 28, 28, generator=gen) * 0.6 + 0.2  # some cells above 0.5
    pasted = paste_masks_in_image(small, boxes, (height, width))
    whole = mask_scores(pasted)
    assert (whole > 0).sum() >= 40  # most masks have pixels inside
    assert torch.allclose(mask_scores(pasted, boxes), whole, atol=1e-6)


def test_precision_follows_the_hardware(cpu_flags: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from officescore.infer.accel import resolve_precision

    cpu = torch.device("cpu")
    cpu_flags(AVX2_ONLY)
    assert resolve_precision("auto", cpu) == "fp32"  # emulated bf16 would be slower
    for name in ("bf16", "fp16", "fp64"):  # int8 runs on AVX2 CPUs: tests/test_int8.py
        with pytest.raises(ConfigError, match="--precision") as exc:
            resolve_precision(name, cpu)
        assert "\n" not in str(exc.value)
    cpu_flags(NATIVE_BF16)
    assert resolve_precision("auto", cpu) == resolve_precision("BF16", cpu) == "bf16"
    assert resolve_precision("fp32", cpu) == "fp32"
    with pytest.raises(ConfigError, match="TorchScript"):
        resolve_precision("bf16", cpu, kind="torchscript")
    assert resolve_precision("auto", cpu, kind="torchscript") == "fp32"
    cuda = torch.device("cuda")  # resolving needs no GPU: only the choice is checked
    assert resolve_precision("auto", cuda) == resolve_precision("fp16", cuda) == "fp16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    with pytest.raises(ConfigError, match="no bf16"):
        resolve_precision("bf16", cuda)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_precision("bf16", cuda) == "bf16"


def test_cpu_flags_are_read_from_proc_cpuinfo() -> None:
    flags = capability.cpu_flags()
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    assert flags == frozenset(line.partition(":")[2].split())
    assert capability.native_bf16_cpu() == bool({"avx512_bf16", "amx_bf16"} & flags)


def test_cli_refuses_a_precision_the_hardware_lacks(
    cpu_flags: Any, tiny: dict[str, Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from officescore.cli import main
    from officescore.label import backend

    cpu_flags(AVX2_ONLY)
    monkeypatch.setattr(os, "execve", lambda *a: pytest.fail("must not start streamlit"))
    monkeypatch.setattr(backend, "make_server", lambda *a: pytest.fail("must not start the backend"))
    photo, checkpoint = str(tiny["photos"][0]), str(tiny["checkpoint"])
    for args in (
        ["score", photo, "--model", checkpoint, "--precision", "bf16"],
        ["serve", "--model", checkpoint, "--precision", "fp16", "--device", "cpu"],
        ["prelabel", photo, "--model", checkpoint, "--out", str(tiny["photos"][0].with_suffix(".json"))]
        + ["--precision", "bf16"],
        ["label", "backend", "--model", checkpoint, "--port", "0", "--precision", "bf16"],
    ):
        with pytest.raises(SystemExit) as exc:
            main(args)
        err = capsys.readouterr().err.strip()
        assert exc.value.code == 2 and "--precision" in err and len(err.splitlines()) == 1, (args, err)
    assert not tiny["photos"][0].with_suffix(".json").exists()  # nothing half-written


def test_prelabel_and_the_label_backend_predict_at_the_precision_asked(
    cpu_flags: Any, tiny: dict[str, Any]
) -> None:
    """The label tools load their model through the same fast path, at --precision."""
    from officescore.label.backend import Backend
    from officescore.label.predict import load_predictor

    exact = load_predictor(tiny["checkpoint"], "cpu", 0.3, None, "fp32").predictor
    assert (exact.precision, exact.proposals) == ("fp32", None)
    for flags, precision in ((AVX2_ONLY, "fp32"), (NATIVE_BF16, "bf16")):  # what `auto` picks on each CPU
        cpu_flags(flags)
        fast = load_predictor(tiny["checkpoint"], "cpu", 0.3, None, "auto").predictor
        assert (fast.precision, fast.proposals) == (precision, capability.FAST_PROPOSALS)
    backend = Backend(tiny["checkpoint"], device="cpu", precision="fp32")
    assert backend.current().predictor.proposals is None


def test_cli_precision_defaults_equal_the_library_defaults() -> None:
    from officescore.app import PageSettings
    from officescore.cli.evaluate import evaluate
    from officescore.cli.label import backend, push
    from officescore.cli.prelabel import prelabel
    from officescore.cli.score import score
    from officescore.cli.serve import serve
    from officescore.evaluate.run import run_eval
    from officescore.infer import Predictor
    from officescore.label.backend import Backend
    from officescore.label.predict import load_predictor

    def default(fn: Any, name: str) -> Any:
        value = inspect.signature(fn).parameters[name].default
        return getattr(value, "default", value)  # a typer.Option carries its default

    assert default(score, "precision") == default(Predictor.load, "precision") == "auto"
    for command in (prelabel, push, backend, load_predictor, Backend):
        assert default(command, "precision") == "auto", command
    assert default(serve, "precision") == PageSettings.precision == "auto"
    assert default(evaluate, "precision") == default(run_eval, "precision") == "fp32"  # eval: exact


def test_bf16_agrees_with_fp32_where_the_cpu_has_it(
    cpu_flags: Any, tiny: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """bf16 is chosen by `auto` only with native bf16 (mocked; here it runs emulated, same numbers),
    with FAST_PROPOSALS proposals; its detections agree with fp32 within what was measured on this
    untrained model, whose random box regression amplifies rounding (bf16 vs fp32 at the same
    proposals, 2026-12-01: 9 vs 9 kept, same labels, scores within 0.006, box IoU min 0.53, median
    0.66). What bf16 costs a trained model is mAP, measured in bench/score.py."""
    from PIL import Image
    from torchvision.ops import box_iou

    from officescore.infer import Predictor
    from officescore.infer.accel import forward

    monkeypatch.setattr(capability, "FAST_PROPOSALS", 20)  # below this small model's 30
    cpu_flags(NATIVE_BF16)
    fast = Predictor.load(tiny["checkpoint"], device="cpu", conf=CONF, precision="auto")
    assert (fast.precision, fast.proposals) == ("bf16", 20)
    assert fast.model.rpn._post_nms_top_n["testing"] == 20
    cpu_flags(AVX2_ONLY)
    auto = Predictor.load(tiny["checkpoint"], device="cpu", conf=CONF, precision="auto")
    assert (auto.precision, auto.proposals) == ("fp32", 20)  # never emulated bf16
    # The same 20 proposals in fp32 and bf16: what differs is the arithmetic.
    image = [pil_to_tensor(Image.open(tiny["photos"][0]).convert("RGB")).float() / 255]
    a = _kept(forward(auto.model, image, "cpu", "fp32", CONF)[0])
    b = _kept(forward(fast.model, image, "cpu", "bf16", CONF)[0])
    assert b["boxes"].dtype == torch.float32  # decoded from float32 deltas, not rounded to bf16
    iou = box_iou(a["boxes"], b["boxes"])
    best, match = iou.max(1)
    assert abs(len(a["labels"]) - len(b["labels"])) <= 1 and len(a["labels"]) >= 1
    assert torch.equal(a["labels"], b["labels"][match])
    assert float(best.min()) >= 0.45 and float(best.median()) >= 0.6
    assert float((a["scores"] - b["scores"][match]).abs().max()) <= 0.02


def test_eval_numbers_unchanged_and_the_model_left_as_it_was(tmp_path: Path) -> None:
    """predict_coco (eval and train's validation) on the fast path gives the metrics the raw model
    gives, and the model it was handed (as train hands its model) is not modified."""
    from officescore.dataset import OfficeDataset, collate_fn
    from officescore.evaluate import evaluate_coco, predict_coco
    from officescore.evaluate.metrics import _to_results
    from officescore.ingest import ingest_export
    from officescore.sample import write_sample

    write_sample(tmp_path / "export", n_images=6, seed=3, size=128)
    ingest_export(tmp_path / "export" / "annotations.json", out=tmp_path / "data", val_fraction=0.5, seed=0)
    val = OfficeDataset(tmp_path / "data", "val")
    model = tiny_model(list(DEFAULT_CLASSES), {1: 3.0, 3: 2.0})
    model.roi_heads.score_thresh = 0.05  # torchvision's default, as train's models have
    before = copy.deepcopy(model.state_dict())
    model.train()
    fast = predict_coco(model, val, "cpu", batch_size=2)
    assert not model.training  # eval mode, as predict_coco always left it (train switches back)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # not folded in place
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert next(model.parameters()).is_contiguous()  # not channels_last either
    raw = []
    with torch.inference_mode():
        for images, targets in torch.utils.data.DataLoader(val, batch_size=2, collate_fn=collate_fn):
            for det, target in zip(model(list(images)), targets, strict=True):
                raw += _to_results(det, int(target["image_id"]), 0.0, None)
    assert len(fast) == len(raw) > 0
    new, old = evaluate_coco(val.annotation_file, fast), evaluate_coco(val.annotation_file, raw)
    for kind in ("bbox", "segm"):
        for stat in ("map", "ap50", "ap75", "ar100"):
            assert new[kind][stat] == pytest.approx(old[kind][stat], abs=1e-6), (kind, stat)


def test_cpu_flags_come_from_an_x86_flags_line_or_an_arm_features_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/proc/cpuinfo names the flags `flags` on x86 and `Features` on ARM (e.g. bf16 on Graviton)."""
    cpuinfo = tmp_path / "cpuinfo"
    monkeypatch.setattr(capability, "Path", lambda _name: cpuinfo)
    cases = [
        ("processor\t: 0\nflags\t\t: fpu avx2 avx512_bf16\n", {"fpu", "avx2", "avx512_bf16"}),
        ("processor\t: 0\nFeatures\t: fp asimd bf16\n", {"fp", "asimd", "bf16"}),
        ("processor\t: 0\n", set()),
    ]
    try:
        for text, want in cases:
            cpuinfo.write_text(text)
            capability.cpu_flags.cache_clear()
            assert capability.cpu_flags() == want
        cpuinfo.unlink()  # no /proc (macOS)
        capability.cpu_flags.cache_clear()
        assert capability.cpu_flags() == frozenset()
    finally:
        monkeypatch.undo()
        capability.cpu_flags.cache_clear()


def test_only_exact_fp32_keeps_the_models_own_proposals(tiny: dict[str, Any]) -> None:
    from officescore.infer.accel import proposals_for
    from officescore.model import load_any

    assert proposals_for("fp32") is proposals_for("FP32") is None
    assert (
        proposals_for("auto") == proposals_for("bf16") == proposals_for("int8") == capability.FAST_PROPOSALS
    )
    model = prepare.prepare_model(load_any(tiny["checkpoint"]).model, "cpu", proposals=1000)
    assert model.rpn._post_nms_top_n["testing"] == 30  # never more than the model's own
    assert prepare.prepare_model(model, "cpu", proposals=20).rpn._post_nms_top_n["testing"] == 20


def test_bf16_heads_hand_on_float32_even_inside_tuples(tiny: dict[str, Any]) -> None:
    """The RPN head returns (objectness, deltas), lists of maps: each leaves autocast as float32."""
    from officescore.model import load_any

    model = prepare.prepare_model(load_any(tiny["checkpoint"]).model, "cpu", "bf16", channels_last=False)
    features = [torch.rand(1, model.backbone.out_channels, 8, 8)]
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        objectness, deltas = model.rpn.head(features)
        scores, boxes = model.roi_heads.box_predictor(
            torch.rand(3, model.roi_heads.box_predictor.cls_score.in_features)
        )
    assert [t.dtype for t in (*objectness, *deltas, scores, boxes)] == [torch.float32] * 4


def test_batchnorm_is_folded_only_where_it_is_in_eval_mode_and_fits() -> None:
    """A BatchNorm still training moves its statistics: folding it would freeze them. A Bottleneck's
    three conv/BatchNorm pairs all fold, and it computes the same."""
    from torchvision.models.resnet import Bottleneck

    training = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3).eval(), torch.nn.BatchNorm2d(4))
    assert prepare.fold_batchnorm(training) == 0 and isinstance(training[1], torch.nn.BatchNorm2d)
    torch.manual_seed(0)
    block = Bottleneck(16, 4).eval()
    for norm in (block.bn1, block.bn2, block.bn3):
        norm.running_mean.uniform_(-0.5, 0.5)
        norm.running_var.uniform_(0.5, 2.0)
    x = torch.rand(1, 16, 8, 8)
    with torch.inference_mode():
        want = block(x)
        assert prepare.fold_batchnorm(block) == 3
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in block.modules())
        assert torch.allclose(block(x), want, atol=1e-5)


class _Thresholded(torch.nn.Module):
    """A detector's shape: roi_heads.score_thresh, read (and recorded) when it is called."""

    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.roi_heads = type("Heads", (), {"score_thresh": 0.05})()
        self.seen: list[float] = []
        self.fail = fail

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        self.seen.append(self.roi_heads.score_thresh)
        if self.fail:
            raise RuntimeError("out of memory")
        masks = torch.tensor([[[[0.9, 0.2], [0.7, 0.1]]]])
        return [
            {"boxes": torch.tensor([[0.0, 0.0, 2.0, 2.0]]), "scores": torch.tensor([0.8]), "masks": masks}
        ]


def test_the_callers_threshold_keeps_a_score_equal_to_it_for_that_call_only() -> None:
    """torchvision keeps scores > score_thresh, the caller scores >= conf: a float32 score equal to
    conf passes, the float32 just below it does not; a conf below the model's own threshold does not
    lower it; after the call (also a failed one) the model's threshold is its own again."""
    from officescore.infer.accel import forward

    model = _Thresholded()
    out = forward(model, [torch.rand(3, 2, 2)], "cpu", conf=0.5)
    kept = torch.tensor([0.5, float(np.nextafter(np.float32(0.5), np.float32(0)))]) > model.seen[-1]
    assert kept.tolist() == [True, False]
    assert model.roi_heads.score_thresh == 0.05
    assert out[0]["mask_scores"].tolist() == pytest.approx([0.8])
    forward(model, [torch.rand(3, 2, 2)], "cpu", conf=0.01)
    assert model.seen[-1] == 0.05
    assert "mask_scores" not in forward(model, [torch.rand(3, 2, 2)], "cpu", with_mask_scores=False)[0]
    failing = _Thresholded(fail=True)
    with pytest.raises(RuntimeError, match="out of memory"):
        forward(failing, [torch.rand(3, 2, 2)], "cpu", conf=0.5)
    assert failing.seen[-1] < 0.5 and failing.roi_heads.score_thresh == 0.05
