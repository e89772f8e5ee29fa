"""--precision int8 (officescore.infer.accel.int8): an int8 backbone calibrated on photos, chosen only where
the CPU runs int8 kernels (mocked both ways), close to fp32, and refused with one line where it has
nothing to calibrate on."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch
from cpus import AVX2_ONLY, NO_AVX2
from scoremodels import write_checkpoint, write_scenes
from torchvision.transforms.functional import pil_to_tensor

from officescore.errors import ConfigError
from officescore.infer.accel.capability import int8_supported

CONF = 0.5
QUANTISED = (torch.ao.nn.quantized.Conv2d, torch.ao.nn.intrinsic.quantized.ConvReLU2d)
# PyTorch's x86 int8 kernels need an x86 CPU with AVX2 (every machine this project runs on has one)
runs_int8 = pytest.mark.skipif(not int8_supported(), reason="no x86 CPU with AVX2: int8 cannot run here")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("int8")
    checkpoint = write_checkpoint(root / "tiny.pt", favour={"desk": 6.0, "monitor": 4.0})
    scenes = write_scenes(root / "photos", n=6, size=128, suffix=".png")
    photos, calibration = scenes[:2], scenes[2:]  # calibrated on other scenes than those scored
    return {"checkpoint": checkpoint, "photos": photos, "calibration": calibration, "root": root}


def _image(path: Path) -> list[torch.Tensor]:
    from PIL import Image

    return [pil_to_tensor(Image.open(path).convert("RGB")).float() / 255]


def test_int8_only_where_the_cpu_runs_it_and_never_by_auto(cpu_flags: Any) -> None:
    from officescore.infer.accel import resolve_precision

    cpu_flags(AVX2_ONLY)
    assert resolve_precision("int8", "cpu") == resolve_precision("INT8", "cpu") == "int8"
    assert resolve_precision("auto", "cpu") == "fp32"  # int8 needs calibration photos: asked for only
    cpu_flags(NO_AVX2)
    with pytest.raises(ConfigError, match="lacks AVX2"):
        resolve_precision("int8", "cpu")
    cpu_flags(AVX2_ONLY)
    with pytest.raises(ConfigError, match="for CPUs, not cuda"):
        resolve_precision("int8", "cuda")
    with pytest.raises(ConfigError, match="TorchScript"):
        resolve_precision("int8", "cpu", kind="torchscript")


@runs_int8
def test_int8_backbone_is_int8_calibrated_and_agrees_with_fp32(cpu_flags: Any, tiny: dict[str, Any]) -> None:
    """The body's convolutions but the stem are int8 (conv + ReLU fused), the rest fp32; the body's
    features stay within what was measured on this untrained model (relative error 0.03-0.06 per
    level, 2026-12-01), and so do the kept detections (int8 vs fp32 at the same proposals, 2 scenes:
    14 vs 14 and 16 vs 16 kept, same labels, box IoU min 0.58 and 0.39, median 0.98 and 0.80,
    scores within 0.006, on an AVX2 CPU; on one with AVX512-VNNI and AMX, whose int8 kernels round
    differently: 14 vs 14 and 16 vs 14 kept, min 0.51 and 0.46, median 0.69 and 0.97). Untrained
    box regression amplifies rounding; what int8 costs a trained model is mAP (bench/score.py)."""
    from torchvision.ops import box_iou

    from officescore.infer import Predictor
    from officescore.infer.accel import forward

    # auto on an AVX2-only CPU: fp32 with the 300 proposals int8 has (with native bf16 it is bf16)
    cpu_flags(AVX2_ONLY)
    fp32 = Predictor.load(tiny["checkpoint"], device="cpu", conf=CONF, precision="auto")
    int8 = Predictor.load(
        tiny["checkpoint"], device="cpu", conf=CONF, precision="int8", calibration=tiny["calibration"]
    )
    assert (int8.precision, int8.proposals) == ("int8", fp32.proposals)
    body = list(int8.model.backbone.body.modules())
    # ResNet18: each of the 8 blocks' first conv fuses with its ReLU
    assert sum(isinstance(m, torch.ao.nn.intrinsic.quantized.ConvReLU2d) for m in body) == 8
    fp32_convs = [n for n, m in int8.model.backbone.body.named_modules() if type(m) is torch.nn.Conv2d]
    assert fp32_convs == ["conv1.0"]  # the stem (fused with its ReLU) on the RGB photo stays fp32
    assert any(type(m) is torch.nn.Conv2d for m in int8.model.backbone.fpn.modules())  # FPN is not
    seen: list[int] = []
    hook = int8.model.backbone.register_forward_hook(lambda m, i, o: seen.append(len(o)))
    for photo in tiny["photos"]:
        image = _image(photo)
        with torch.inference_mode():
            want = fp32.model.backbone.body(fp32.model.transform(image)[0].tensors)
            got = int8.model.backbone.body(int8.model.transform(image)[0].tensors)
        for level, feature in want.items():
            assert got[level].dtype == torch.float32  # dequantised for the FPN
            assert float((feature - got[level]).norm() / feature.norm()) <= 0.1, level
        a = forward(fp32.model, image, "cpu", "fp32", CONF)[0]
        b = forward(int8.model, image, "cpu", "int8", CONF)[0]
        a, b = ({k: v[d["scores"] >= CONF] for k, v in d.items()} for d in (a, b))
        best, match = box_iou(a["boxes"], b["boxes"]).max(1)
        assert len(a["labels"]) >= 5 and abs(len(a["labels"]) - len(b["labels"])) <= 2
        assert torch.equal(a["labels"], b["labels"][match])
        assert float(best.min()) >= 0.3 and float(best.median()) >= 0.6
        assert float((a["scores"] - b["scores"][match]).abs().max()) <= 0.03
    hook.remove()
    assert seen  # hooks on the backbone (select's features) still fire


@runs_int8
def test_int8_calibration_sets_the_ranges(tiny: dict[str, Any]) -> None:
    """Calibrated on photos the features are close (relative error 0.03 measured); calibrated on one
    uniform grey image, whose activations hardly spread, they are not (0.49): the calibration photos
    really set the int8 ranges."""
    from officescore.infer.accel import fold_batchnorm
    from officescore.infer.accel.int8 import quantize_body
    from officescore.model import load_any

    image = _image(tiny["photos"][0])
    errors = []
    for calibration in ([_image(p)[0] for p in tiny["calibration"]], [torch.full((3, 128, 128), 0.5)]):
        reference = load_any(tiny["checkpoint"]).model.eval()
        fold_batchnorm(reference)
        model = quantize_body(load_any(tiny["checkpoint"]).model.eval(), calibration)
        with torch.inference_mode():
            want = reference.backbone.body(reference.transform(image)[0].tensors)["0"]
            got = model.backbone.body(model.transform(image)[0].tensors)["0"]
        errors.append(float((want - got).norm() / want.norm()))
    assert errors[0] <= 0.1 and errors[1] >= 0.25


@runs_int8
def test_int8_needs_photos_to_calibrate_on(tiny: dict[str, Any]) -> None:
    from officescore.infer import Predictor

    with pytest.raises(ConfigError, match="--calibration"):
        Predictor.load(tiny["checkpoint"], device="cpu", precision="int8")
    broken = tiny["root"] / "broken.jpg"
    broken.write_bytes(b"not a photo")
    with pytest.raises(ConfigError, match="--calibration"):
        Predictor.load(tiny["checkpoint"], device="cpu", precision="int8", calibration=[broken])


@runs_int8
def test_int8_from_the_command_line(
    tiny: dict[str, Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """score calibrates on the photos it scores unless told otherwise; serve and the label backend,
    which have no photos yet, refuse int8 without --calibration in one line, before starting."""
    import json

    from officescore.cli import main
    from officescore.label import backend

    def run(args: list[str]) -> tuple[int, str, str]:
        try:
            main(args)
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        out = capsys.readouterr()
        return code, out.out, out.err.strip()

    checkpoint, photo = str(tiny["checkpoint"]), str(tiny["photos"][0])
    code, out, err = run(["score", photo, "--model", checkpoint, "--precision", "int8", "--json"])
    assert code == 0, err
    assert json.loads(out)["precision"] == "int8"
    folder = str(tiny["calibration"][0].parent)
    assert (
        run(["score", photo, "--model", checkpoint, "--precision", "int8", "--calibration", folder])[0] == 0
    )
    empty = tiny["root"] / "empty"
    empty.mkdir(exist_ok=True)
    monkeypatch.setattr(os, "execve", lambda *a: pytest.fail("must not start streamlit"))
    monkeypatch.setattr(backend, "make_server", lambda *a: pytest.fail("must not start the backend"))
    for args in (
        ["serve", "--model", checkpoint, "--precision", "int8"],
        ["serve", "--model", checkpoint, "--precision", "int8", "--calibration", str(tiny["root"] / "none")],
        ["label", "backend", "--model", checkpoint, "--port", "0", "--precision", "int8"],
        ["score", photo, "--model", checkpoint, "--precision", "int8", "--calibration", str(empty)],
    ):
        code, _, err = run(args)
        assert code == 2 and "--calibration" in err and len(err.splitlines()) == 1, (args, err)


def test_serve_hands_the_calibration_photos_to_the_page(tiny: dict[str, Any]) -> None:
    from officescore.app import PageSettings

    photos = tuple(str(p) for p in tiny["calibration"])
    settings = PageSettings(model="coco", precision="int8", calibration=photos)
    assert PageSettings.from_env(settings.to_env()) == settings
    assert PageSettings.from_env(PageSettings(model="coco").to_env()).calibration == ()


@runs_int8
def test_eval_int8_calibrates_on_the_set_and_stays_close(tmp_path: Path, calibrations: list[int]) -> None:
    """predict_coco at int8 (eval --precision int8) runs on its own photos' pixels and predicts the
    same photos as fp32 with close scores."""
    from officescore.dataset import OfficeDataset
    from officescore.evaluate import predict_coco
    from officescore.ingest import ingest_export
    from officescore.model import load_any
    from officescore.sample import write_sample

    write_sample(tmp_path / "export", n_images=4, seed=3, size=96)
    ingest_export(tmp_path / "export" / "annotations.json", out=tmp_path / "data", val_fraction=0.5, seed=0)
    dataset = OfficeDataset(tmp_path / "data", "val")
    model = load_any(write_checkpoint(tmp_path / "m.pt", favour={"desk": 6.0})).model
    fp32 = predict_coco(model, dataset, "cpu", precision="auto")
    int8 = predict_coco(model, dataset, "cpu", precision="int8")
    assert calibrations == [len(dataset)]  # its own photos (fewer than 16)
    assert {r["image_id"] for r in fp32} == {r["image_id"] for r in int8}
    top = {r["image_id"]: r["score"] for r in sorted(fp32, key=lambda r: r["score"])}
    top8 = {r["image_id"]: r["score"] for r in sorted(int8, key=lambda r: r["score"])}
    assert all(abs(top[i] - top8[i]) <= 0.03 for i in top)
    assert not any(isinstance(m, QUANTISED) for m in model.modules())  # eval's model left as it was


@runs_int8
def test_prelabel_and_the_label_backend_run_int8(
    tiny: dict[str, Any], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """prelabel calibrates on the photos it pre-labels; the label backend on --calibration."""
    from officescore.cli import main
    from officescore.label.backend import Backend

    out = tmp_path / "pre.json"
    args = ["prelabel", *map(str, tiny["photos"]), "--model", str(tiny["checkpoint"]), "--out", str(out)]
    try:
        main([*args, "--precision", "int8"])
    except SystemExit as exc:
        assert not exc.code, capsys.readouterr().err
    assert out.exists()
    backend = Backend(tiny["checkpoint"], device="cpu", precision="int8", calibration=tiny["calibration"])
    predictor = backend.current().predictor
    assert predictor.precision == "int8"
    assert any(isinstance(m, QUANTISED) for m in predictor.model.backbone.body.modules())


@pytest.fixture
def calibrations(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many photos each int8 model was calibrated on."""
    from officescore.infer.accel import prepare

    seen: list[int] = []
    real = prepare.quantize_body

    def spy(model: Any, calibration: Any) -> Any:
        seen.append(len(calibration))
        return real(model, calibration)

    monkeypatch.setattr(prepare, "quantize_body", spy)
    return seen


@runs_int8
def test_calibration_photos_are_spread_and_reach_the_model(
    tiny: dict[str, Any], calibrations: list[int], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Up to 16 photos, evenly spread from first to last; eval, prelabel and serve hand them on."""
    from officescore.cli import main
    from officescore.infer.accel.int8 import spread

    assert spread(list(range(47))) == [i * 47 // 16 for i in range(16)] and spread(list(range(47)))[-1] == 44
    assert spread(list(range(17)))[-1] == 15 and spread([1, 2]) == [1, 2]
    checkpoint, out = str(tiny["checkpoint"]), str(tmp_path / "pre.json")
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "prelabel",
                *map(str, tiny["photos"]),
                "--model",
                checkpoint,
                "--out",
                out,
                "--precision",
                "int8",
            ]
        )
    assert exc.value.code in (0, None) and calibrations == [2]  # the two photos it pre-labelled
    env: dict[str, str] = {}

    def execve(path: str, argv: list[str], environment: dict[str, str]) -> None:
        env.update(environment)
        raise SystemExit(0)  # streamlit would start here

    monkeypatch.setattr(os, "execve", execve)
    folder = str(tiny["calibration"][0].parent)  # 6 scenes
    with pytest.raises(SystemExit):
        main(["serve", "--model", checkpoint, "--precision", "int8", "--calibration", folder])
    handed = env["OFFICESCORE_CALIBRATION"].split(os.pathsep)
    assert len(handed) == 6 and all(Path(p).is_absolute() and Path(p).is_file() for p in handed)


def test_calibration_photos_reach_the_last_of_a_list_that_does_not_divide() -> None:
    from officescore.infer.accel.int8 import spread

    assert spread(list(range(10)), 4) == [0, 2, 5, 7]
    assert spread(list(range(4)), 4) == [0, 1, 2, 3]
