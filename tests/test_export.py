"""TorchScript and ONNX export: parity with the checkpoint, metadata, loading without the model code."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scoremodels import write_checkpoint, write_scenes
from torchvision.transforms.functional import pil_to_tensor

from officescore import export as export_module
from officescore.cli import main
from officescore.errors import ConfigError, ModelError
from officescore.export import Parity, export_model
from officescore.infer import Predictor
from officescore.model import load_any, model_from_checkpoint


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("export")
    checkpoint = write_checkpoint(root / "weights" / "best.pt", {"desk": 8.0, "chair": 7.0})
    scenes = write_scenes(root / "photos", n=2)
    return {"root": root, "checkpoint": checkpoint, "scene": scenes[1]}


@pytest.fixture(scope="module")
def torchscript(setup: dict[str, Path]) -> Path:
    result = export_model(setup["checkpoint"], "torchscript", sample=setup["scene"])
    assert result.path == setup["checkpoint"].with_name("best.torchscript.pt")
    assert result.parity.labels_equal and result.parity.max_box_diff <= 1e-4
    assert result.parity.detections > 0
    return result.path


def test_torchscript_file_carries_its_classes(torchscript: Path) -> None:
    loaded = load_any(torchscript, "cpu")
    assert loaded.kind == "torchscript"
    assert loaded.classes[:2] == ["desk", "chair"] and len(loaded.classes) == 10
    assert loaded.arch == "maskrcnn_resnet18_fpn" and loaded.model_kwargs["min_size"] == 128


def test_torchscript_gives_the_checkpoints_detections(
    torchscript: Path, setup: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # fp32 on both sides: `auto` means bf16 on a CPU with native bf16, which no export matches to 1e-4.
    from_checkpoint = Predictor.load(setup["checkpoint"], device="cpu", conf=0.0, precision="fp32")
    from_checkpoint = from_checkpoint.predict(setup["scene"])[0]

    # The export must run without officescore's model-building code.
    def no_model_code(*args: object, **kwargs: object) -> None:
        raise AssertionError("build_model must not be needed to run an export")

    monkeypatch.setattr("officescore.model.build_model", no_model_code)
    scripted = Predictor.load(torchscript, device="cpu", conf=0.0, precision="fp32")
    assert scripted.kind == "torchscript"
    from_export = scripted.predict(setup["scene"])[0]
    assert len(from_export.detections) == len(from_checkpoint.detections) > 0
    assert [d.class_name for d in from_export.detections] == [
        d.class_name for d in from_checkpoint.detections
    ]
    boxes_a = np.array([d.box for d in from_checkpoint.detections])
    boxes_b = np.array([d.box for d in from_export.detections])
    assert np.abs(boxes_a - boxes_b).max() <= 1e-4
    assert [d.mask for d in from_export.detections] == [d.mask for d in from_checkpoint.detections]


def test_torchscript_gives_the_checkpoints_detections_on_photos_that_are_not_square(
    torchscript: Path, setup: dict[str, Path], tmp_path: Path
) -> None:
    """Scripted, torchvision's resize computes its scale in float32: a 200x150 photo reached the
    128 px model 127 px wide (the checkpoint: 128), so `score --model` an export found other
    objects, and gave other scores, than the checkpoint on a third of photo sizes."""
    photo = tmp_path / "wide.jpg"
    Image.open(setup["scene"]).resize((200, 150)).save(photo, quality=95)
    found = [
        Predictor.load(model, device="cpu", conf=0.0, precision="fp32").predict(photo, workers=0)[0]
        for model in (setup["checkpoint"], torchscript)
    ]
    checkpoint, export = ([(d.class_name, round(d.score, 4)) for d in r.detections] for r in found)
    assert checkpoint and export == checkpoint
    boxes = [np.array([d.box for d in r.detections]) for r in found]
    assert np.abs(boxes[0] - boxes[1]).max() <= 1e-3


def test_img_size_reaches_the_scripted_model(torchscript: Path, setup: dict[str, Path]) -> None:
    """--img-size on a TorchScript export resizes inside the scripted model, as on the checkpoint."""
    scripted = Predictor.load(torchscript, device="cpu", conf=0.0, img_size=96, precision="fp32")
    assert scripted.model.model.transform.min_size == (96,) and scripted.model.model.transform.max_size == 96
    native = Predictor.load(torchscript, device="cpu", conf=0.0, precision="fp32").predict(
        setup["scene"], workers=0
    )[0]
    resized = scripted.predict(setup["scene"], workers=0)[0]
    checkpoint = Predictor.load(setup["checkpoint"], device="cpu", conf=0.0, img_size=96, precision="fp32")
    expected = checkpoint.predict(setup["scene"], workers=0)[0]
    assert resized.detections and [d.box for d in resized.detections] != [d.box for d in native.detections]
    boxes = np.array([d.box for d in resized.detections]) - np.array([d.box for d in expected.detections])
    assert np.abs(boxes).max() <= 1e-4


def test_score_cli_runs_on_the_export(
    torchscript: Path, setup: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["score", str(setup["scene"]), "--model", str(torchscript), "--json", "--img-size", "128"])
    assert info.value.code == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["kind"] == "torchscript"
    assert {d["class"] for d in doc["photos"][0]["detections"]} == {"desk"}
    assert doc["photos"][0]["score"]["total"] == 25.0


def _onnxruntime_detections(path: Path, tensor: torch.Tensor) -> dict[str, np.ndarray]:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {session.get_inputs()[0].name: tensor.numpy()}), strict=True))


def test_onnx_export_matches_onnxruntime(setup: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    """A non-default --input-size; onnxruntime, run here on another photo, gives the checkpoint's output."""
    import onnx
    import onnxruntime

    out = setup["root"] / "office.onnx"
    args = ["export", "--model", str(setup["checkpoint"]), "--format", "onnx", "--input-size", "96x160"]
    with pytest.raises(SystemExit) as info:
        main([*args, "--out", str(out), "--json"])
    assert info.value.code == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["format"] == "onnx" and doc["opset"] == 11 and doc["input_size"] == [96, 160]
    model = onnx.load(str(out))
    meta = json.loads({p.key: p.value for p in model.metadata_props}["officescore.json"])
    assert meta["classes"][:2] == ["desk", "chair"] and meta["format"] == "officescore-onnx"
    assert model.opset_import[0].version >= 11
    assert [o.name for o in model.graph.output] == ["boxes", "labels", "scores", "masks"]
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == [3, 96, 160]

    photo = Image.open(setup["scene"]).convert("RGB").resize((160, 96))  # not the export's own sample
    tensor = pil_to_tensor(photo).float().div(255.0)
    checkpoint_model, _ = model_from_checkpoint(setup["checkpoint"], "cpu")
    with torch.inference_mode():
        want = {k: v.numpy() for k, v in checkpoint_model([tensor])[0].items()}
    got = _onnxruntime_detections(out, tensor)
    assert len(want["boxes"]) > 0 and got["boxes"].shape == want["boxes"].shape
    assert np.array_equal(got["labels"], want["labels"])
    assert np.abs(got["boxes"] - want["boxes"]).max() <= 1e-3
    assert np.abs(got["scores"] - want["scores"]).max() <= 1e-4
    assert got["masks"].shape == want["masks"].shape == (len(want["boxes"]), 1, 96, 160)
    assert np.abs(got["masks"] - want["masks"]).mean() <= 1e-3
    with pytest.raises(onnxruntime.capi.onnxruntime_pybind11_state.InvalidArgument):  # a fixed input size
        _onnxruntime_detections(out, torch.rand(3, 128, 128))


def test_export_that_differs_from_the_checkpoint_is_refused_and_removed(
    setup: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real mismatch: the ONNX file written has its box regression shifted, so onnxruntime's boxes
    differ from the checkpoint's; the export is refused and the file deleted."""
    import onnx
    from onnx import numpy_helper

    written_shapes: list[list[int]] = []
    real_write = export_module.atomic_write_bytes

    def write_perturbed(path: Path, data: bytes) -> None:
        proto = onnx.load_from_string(data)
        written_shapes.append([d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim])
        for tensor in proto.graph.initializer:
            if tensor.name == "roi_heads.box_predictor.bbox_pred.bias":
                tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor) + 0.5, tensor.name))
        real_write(path, proto.SerializeToString())

    monkeypatch.setattr(export_module, "atomic_write_bytes", write_perturbed)
    out = tmp_path / "shifted.onnx"
    with pytest.raises(ModelError, match=r"onnx export refused: its detections differ.*--format torchscript"):
        export_model(setup["checkpoint"], "onnx", out=out)
    assert written_shapes == [[3, 128, 128]]  # the default input size: the model's own 128 px square
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # nor its staging file
    # A good export already at --out survives a refused re-export untouched.
    out.write_bytes(b"a good earlier export")
    with pytest.raises(ModelError, match="onnx export refused"):
        export_model(setup["checkpoint"], "onnx", out=out)
    assert out.read_bytes() == b"a good earlier export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shifted.onnx"]


def test_an_export_that_fails_to_load_leaves_the_earlier_file_alone(
    setup: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check crashing (the written file does not load, or Ctrl-C while it runs): the good file at
    --out stays, and the file being checked is not left beside it (an ONNX Mask R-CNN is ~170 MB)."""
    from officescore import model as model_module

    def broken(path: Path, device: str) -> None:
        raise ModelError(f"{path}: cannot load")

    monkeypatch.setattr(model_module, "load_any", broken)
    out = tmp_path / "model.torchscript.pt"
    out.write_bytes(b"a good earlier export")
    with pytest.raises(ModelError, match="cannot load"):
        export_model(setup["checkpoint"], "torchscript", out=out)
    assert out.read_bytes() == b"a good earlier export"
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]


@pytest.mark.parametrize(
    ("fmt", "parity", "fragment"),
    [
        ("torchscript", Parity(3, True, 2e-4, 0.0), "its detections differ from the checkpoint's"),
        ("onnx", Parity(3, False, 0.0, 0.0), "labels equal: False"),
        ("onnx", Parity(3, True, 5e-4, 0.2), "its masks cannot be exported faithfully"),
    ],
)
def test_a_mismatching_export_is_refused_and_removed(
    tmp_path: Path, fmt: str, parity: Parity, fragment: str
) -> None:
    out = tmp_path / "model.out"
    out.write_bytes(b"exported")
    with pytest.raises(ModelError, match=f"{fmt} export refused: .*{fragment}") as info:
        export_module._check(parity, fmt, out)
    assert not out.exists()
    assert ("--format torchscript" in str(info.value)) == (fmt == "onnx")
    export_module._check(Parity(3, True, 5e-5, 1e-4), fmt, out)  # within tolerance: accepted


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--format", "tflite"], "--format tflite: choose torchscript or onnx"),
        (["--format", "onnx", "--input-size", "big"], "--input-size big"),
        (["--format", "onnx", "--opset", "9"], "opset 11 or newer"),
        (["--format", "onnx", "--opset", "10"], "opset 11 or newer"),
        # It was ignored: a TorchScript file written where an ONNX one of that size was meant.
        (["--input-size", "800x800"], "--input-size is for --format onnx; a torchscript export takes"),
    ],
)
def test_export_bad_options(
    setup: dict[str, Path], capsys: pytest.CaptureFixture, args: list[str], fragment: str
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["export", "--model", str(setup["checkpoint"]), *args])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and len(err.splitlines()) == 1


def test_export_of_an_export_says_so_in_one_line(torchscript: Path, capsys: pytest.CaptureFixture) -> None:
    # It used to be called "truncated, damaged, or holding pickled code", after a torch.load warning.
    with pytest.raises(SystemExit) as info:
        main(["export", "--model", str(torchscript)])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert f"--model {torchscript}: already an export; export the checkpoint it came from" in err
    assert len(err.splitlines()) == 1


def test_export_refuses_files_that_are_not_checkpoints(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(SystemExit) as info:
        main(["export", "--model", str(junk)])
    assert info.value.code == 2
    assert "junk.pt: not a readable weights file" in capsys.readouterr().err
    with pytest.raises(ConfigError):
        export_model(junk, "keras")


def _detections(boxes: list[list[float]], labels: list[int], masks: np.ndarray) -> dict[str, torch.Tensor]:
    return {"boxes": torch.tensor(boxes), "labels": torch.tensor(labels), "masks": torch.from_numpy(masks)}


def test_parity_is_the_worst_box_and_a_different_count_or_mask_size_never_passes(tmp_path: Path) -> None:
    masks = np.zeros((2, 1, 4, 4), np.float32)
    expected = _detections([[0, 0, 10, 10], [2, 2, 8, 8]], [1, 2], masks)
    one_box_off = {
        "boxes": np.array([[0, 0, 10, 10], [2, 2, 8, 8.5]]),
        "labels": np.array([1, 2]),
        "masks": masks,
    }
    parity = export_module._compare(expected, one_box_off)
    assert (parity.detections, parity.labels_equal, parity.max_box_diff, parity.mean_mask_diff) == (
        2,
        True,
        0.5,
        0.0,
    )

    fewer = {"boxes": np.array([[0, 0, 10, 10]]), "labels": np.array([1]), "masks": masks[:1]}
    none = {"boxes": np.zeros((0, 4)), "labels": np.zeros(0, np.int64), "masks": masks[:0]}
    small_masks = {
        "boxes": np.array([[0, 0, 10, 10], [2, 2, 8, 8]]),
        "labels": np.array([1, 2]),
        "masks": masks[..., :2],
    }
    for got, says in (
        (fewer, "it finds 1 objects on the sample where the checkpoint finds 2; try another --input-size"),
        (none, "it finds 0 objects on the sample where the checkpoint finds 2"),  # not "max box ... inf px"
        (small_masks, "its masks cannot be exported faithfully"),
    ):
        out = tmp_path / "model.onnx"
        out.write_bytes(b"exported")
        with pytest.raises(ModelError, match=f"onnx export refused: {says}"):
            export_module._check(export_module._compare(expected, got), "onnx", out)
        assert not out.exists()


def test_a_mask_difference_just_over_the_tolerance_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "model.torchscript.pt"
    out.write_bytes(b"exported")
    with pytest.raises(ModelError, match="mean mask difference 0.002 > 0.001"):
        export_module._check(Parity(3, True, 0.0, 2e-3), "torchscript", out)


def test_the_json_report_names_each_parity_number_by_its_key() -> None:
    parity = Parity(detections=3, labels_equal=False, max_box_diff=0.5, mean_mask_diff=0.25)
    assert parity.to_dict() == {
        "detections": 3,
        "labels_equal": False,
        "max_box_diff": 0.5,
        "mean_mask_diff": 0.25,
    }


def test_the_export_resizes_a_copy_and_leaves_the_checkpoints_model_as_it_was() -> None:
    """`_eager_resize` gives the export `_EagerResize` on a shallow copy: the checkpoint's model, which
    the parity check compares the export with, keeps torchvision's own resize; a fixed-size resize
    (not the one `_EagerResize` computes) is scripted as it is."""
    from torchvision.models.detection.transform import GeneralizedRCNNTransform

    from officescore.export import _eager_resize, _EagerResize

    class Detector(torch.nn.Module):
        def __init__(self, **fixed: object) -> None:
            super().__init__()
            self.transform = GeneralizedRCNNTransform(100, 150, [0.0] * 3, [1.0] * 3, **fixed)
            self.head = torch.nn.Linear(2, 2)

    model = Detector()
    exported = _eager_resize(model)
    assert type(exported.transform) is _EagerResize and exported.head is model.head
    assert type(model.transform) is GeneralizedRCNNTransform
    fixed = Detector(fixed_size=(64, 64))
    assert _eager_resize(fixed) is fixed and type(fixed.transform) is GeneralizedRCNNTransform


def test_the_exports_resize_is_the_checkpoints_on_models_of_other_min_and_max_sizes() -> None:
    """`_EagerResize` gives the very pixels torchvision's eager resize gives, also where the long
    side's limit decides (an 800/1333 model; the tiny test model is 128/128, where min and max agree)."""
    from torchvision.models.detection.transform import GeneralizedRCNNTransform

    from officescore.export import _EagerResize

    eager = GeneralizedRCNNTransform(100, 150, [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]).eval()
    ours = _EagerResize(100, 150, [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]).eval()
    for height, width in ((75, 100), (100, 300), (90, 91), (301, 200), (64, 64)):
        photo = torch.rand(3, height, width, generator=torch.Generator().manual_seed(height))
        assert torch.equal(ours.resize(photo)[0], eager.resize(photo)[0]), (height, width)
