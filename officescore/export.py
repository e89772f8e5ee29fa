"""Export a checkpoint to TorchScript or ONNX, each checked against the checkpoint on a sample.

TorchScript (recommended): the scripted model plus `officescore.json` (classes, arch, model
kwargs) as an extra file, in the format `officescore.model.load_any` reads, so `score`, `eval`
and `Predictor` use it without officescore's model code. `forward(List[Tensor])` returns
torchvision's detections (boxes, labels, scores, masks) for images of any size.

torch.export / AOTInductor (`pt2`) is not offered: torch 2.14's exporter cannot capture
torchvision's Mask R-CNN (see `PT2_UNSUPPORTED`); asking for it says why instead of writing a file.

ONNX (for runtimes without PyTorch): torchvision's Mask R-CNN exports with opset >= 11 for one
image of a fixed size (torchvision's own ONNX tests do the same); feed 3xHxW float images in [0, 1]
of exactly `input_size`. Outputs: boxes, labels, scores, masks (Nx1xHxW probabilities). The class
list is stored in the model's metadata under `officescore.json`. The export is refused when
onnxruntime's boxes, labels or masks differ from the checkpoint's on the sample.
"""

from __future__ import annotations

import io
import json
import os
import warnings
from copy import copy as shallow_copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.transforms.functional import pil_to_tensor

from officescore import __version__
from officescore.errors import ConfigError, ModelError
from officescore.files import atomic_write_bytes, check_output_file
from officescore.images import load_image
from officescore.progress import SILENT, Reporter

FORMATS = ("torchscript", "onnx")
SUFFIXES = {"torchscript": ".torchscript.pt", "onnx": ".onnx"}
BOX_TOLERANCE = {"torchscript": 1e-4, "onnx": 1e-3}  # pixels; ONNX kernels round differently
MASK_TOLERANCE = 1e-3  # mean absolute difference of mask probabilities
DEFAULT_OPSET = 11
# Measured with torch 2.14.1 / torchvision 0.29.1 (torch.export.export, strict and non-strict).
PT2_UNSUPPORTED = (
    "--format pt2: torch.export cannot capture torchvision's Mask R-CNN, whose output sizes depend "
    "on the data: it stops at `if boxes.numel() == 0` in torchvision.ops.batched_nms (the RPN's NMS: "
    "'Could not guard on data-dependent expression'), and past that at `len(rois)` in "
    "MultiScaleRoIAlign; use --format torchscript (or onnx)"
)


@dataclass
class Parity:
    """How the export's detections compare with the checkpoint's on the sample image."""

    detections: int
    labels_equal: bool
    max_box_diff: float
    mean_mask_diff: float | None
    found: int | None = None  # the export's detection count, when it is not the checkpoint's

    def to_dict(self) -> dict[str, Any]:
        return {
            "detections": self.detections,
            "labels_equal": self.labels_equal,
            "max_box_diff": self.max_box_diff,
            "mean_mask_diff": self.mean_mask_diff,
        }


@dataclass
class ExportResult:
    path: Path
    format: str
    classes: list[str]
    arch: str
    size_bytes: int
    parity: Parity
    input_size: tuple[int, int] | None = None  # (height, width), ONNX only
    opset: int | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "format": self.format,
            "classes": self.classes,
            "arch": self.arch,
            "size_bytes": self.size_bytes,
            "parity": self.parity.to_dict(),
            "input_size": list(self.input_size) if self.input_size else None,
            "opset": self.opset,
            "notes": self.notes,
        }


class _EagerResize(GeneralizedRCNNTransform):
    """torchvision's transform with the resize scale computed as eager torchvision computes it, in
    double: scripted, torchvision computes it in float32 and resized about a third of photo sizes
    one pixel short (200 px wide at a 128 px model: 127; 640x427 at 800 px), so the export found
    other objects, and gave other scores, than the checkpoint. Inference only, as exported."""

    def resize(
        self, image: Tensor, target: dict[str, Tensor] | None = None
    ) -> tuple[Tensor, dict[str, Tensor] | None]:
        height, width = image.shape[-2:]
        scale = min(float(self.min_size[-1]) / min(height, width), float(self.max_size) / max(height, width))
        image = nn.functional.interpolate(
            image[None], scale_factor=scale, mode="bilinear", recompute_scale_factor=True, align_corners=False
        )[0]
        return image, target


class _Detector(nn.Module):
    """Scripted entry point: torchvision returns (losses, detections) when scripted; keep detections."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: list[Tensor]) -> list[dict[str, Tensor]]:
        losses, detections = self.model(images)
        return detections


def default_output(checkpoint: Path, fmt: str) -> Path:
    """weights/best.pt -> weights/best.torchscript.pt or weights/best.onnx."""
    return checkpoint.with_name(checkpoint.stem + SUFFIXES[fmt])


def export_model(
    checkpoint: Path,
    fmt: str = "torchscript",
    out: Path | None = None,
    sample: Path | None = None,
    input_size: tuple[int, int] | None = None,
    opset: int = DEFAULT_OPSET,
    reporter: Reporter = SILENT,
) -> ExportResult:
    """Export `checkpoint` and verify the file against it; a mismatch raises ModelError."""
    from officescore.model import is_torchscript, load_checkpoint, model_from_checkpoint
    from officescore.runs import existing_model_file

    fmt = fmt.lower()
    if fmt in ("pt2", "torch.export", "aotinductor"):
        raise ConfigError(PT2_UNSUPPORTED)
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt}: choose torchscript or onnx")
    if fmt != "onnx" and input_size is not None:  # most likely a forgotten --format onnx
        raise ConfigError(
            f"--input-size is for --format onnx; a {fmt} export takes photos of any size (add --format onnx?)"
        )
    if fmt == "onnx" and opset < 11:
        raise ConfigError(f"--opset {opset}: Mask R-CNN needs ONNX opset 11 or newer")
    checkpoint = existing_model_file(checkpoint, option="--model", exports=False)  # a run folder: its best.pt
    if checkpoint.suffix.lower() == ".onnx" or is_torchscript(checkpoint):
        # Not a checkpoint: torch.load would warn about TorchScript and call the file damaged.
        raise ModelError(
            f"--model {checkpoint}: already an export; export the checkpoint it came from (weights/best.pt)"
        )
    data = load_checkpoint(checkpoint)
    _refuse_attribute_head(data, checkpoint, fmt)
    model, classes = model_from_checkpoint(data, "cpu", source=str(checkpoint))
    out = Path(out) if out else default_output(checkpoint, fmt)
    check_output_file(out, "--out")  # before the (slow) export, not after it
    image = _sample_image(sample, model)
    meta = {
        "format": "officescore-torchscript" if fmt == "torchscript" else "officescore-onnx",
        "classes": classes,
        "arch": data["arch"],
        "model_kwargs": _plain(data.get("model_kwargs", {})),
        "officescore_version": __version__,
        "source": checkpoint.name,
    }
    # Written and verified beside `out`, then moved over it: an export that fails its check (or
    # crashes on loading) must not replace, nor delete, a good file already at `out`.
    staging = out.with_name(f".{out.name}.partial")
    try:
        with reporter.stage(f"exporting {fmt}", total=2) as stage:
            if fmt == "torchscript":
                parity = _export_torchscript(model, meta, staging, image)
                os.replace(staging, out)
                result = ExportResult(out, fmt, classes, data["arch"], out.stat().st_size, parity)
            else:
                size = input_size or _default_input_size(model)
                parity = _export_onnx(model, meta, staging, image.resize((size[1], size[0])), opset)
                os.replace(staging, out)
                result = ExportResult(
                    out, fmt, classes, data["arch"], out.stat().st_size, parity, size, opset
                )
                result.notes.append(f"feed one 3x{size[0]}x{size[1]} float image in [0, 1] per run")
            stage.advance(2, status=f"max box diff {parity.max_box_diff:.2g}")
    finally:
        staging.unlink(missing_ok=True)
    return result


def _refuse_attribute_head(data: dict[str, Any], checkpoint: Path, fmt: str) -> None:
    """Exports do not carry the attribute head yet: refuse rather than drop it silently."""
    from officescore.model import attribute_schema

    schema = attribute_schema(data.get("model_kwargs", {}), data.get("classes", []))
    if schema:
        names = ", ".join(f"{a.class_name}.{a.name}" for a in schema.attributes)
        raise ModelError(
            f"{checkpoint}: has an attribute head ({names}), which {fmt} export does not carry yet "
            "(it runs after torchvision's RoI heads in Python); score with the checkpoint itself, or "
            "train with --no-attributes for an exportable model without attributes"
        )


# --------------------------------------------------------------------------- TorchScript


def _export_torchscript(model: nn.Module, meta: dict[str, Any], out: Path, image: Image.Image) -> Parity:
    from officescore.model import load_any

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "RCNN always returns a (Losses, Detections) tuple in scripting"
        try:
            scripted = torch.jit.script(_Detector(_eager_resize(model)).eval())
        except Exception as exc:  # noqa: BLE001 - the scripting compiler raises many types
            raise ModelError(f"TorchScript scripting failed: {str(exc).splitlines()[0]}") from exc
        buffer = io.BytesIO()
        torch.jit.save(scripted, buffer, _extra_files={"officescore.json": json.dumps(meta)})
    atomic_write_bytes(out, buffer.getvalue())
    loaded = load_any(out, "cpu")  # exactly what score/eval/Predictor will do with the file
    tensor = _to_tensor(image)
    with torch.inference_mode():
        expected = model([tensor])[0]
        got = loaded.model([tensor])[0]
    parity = _compare(expected, {k: v.numpy() for k, v in got.items()})
    _check(parity, "torchscript", out)
    return parity


def _eager_resize(model: nn.Module) -> nn.Module:
    """A shallow copy of `model` whose transform resizes as the eager checkpoint does (`_EagerResize`)."""
    if type(model.transform) is not GeneralizedRCNNTransform or model.transform.fixed_size is not None:
        return model  # not torchvision's own resize: scripted as it is
    transform = shallow_copy(model.transform)
    transform.__class__ = _EagerResize
    exported = shallow_copy(model)
    exported._modules = {**model._modules, "transform": transform}  # the checkpoint's model stays as it was
    return exported


# --------------------------------------------------------------------------- ONNX


def _export_onnx(model: nn.Module, meta: dict[str, Any], out: Path, image: Image.Image, opset: int) -> Parity:
    try:
        import onnx
        import onnxruntime
    except ImportError as exc:
        raise ModelError(
            "ONNX export needs onnx and onnxruntime: pip install 'officescore[export]' "
            "(or use --format torchscript)"
        ) from exc
    tensor = _to_tensor(image)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python values in torchvision's code
        try:
            torch.onnx.export(
                model,
                ([tensor],),
                buffer,
                opset_version=opset,
                dynamo=False,  # the TorchScript-based exporter: torchvision's Mask R-CNN is tested with it
                input_names=["image"],
                output_names=["boxes", "labels", "scores", "masks"],
            )
        except Exception as exc:  # noqa: BLE001 - exporter failures come in many types
            raise ModelError(
                f"ONNX export failed ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
                "use --format torchscript"
            ) from exc
    proto = onnx.load_from_string(buffer.getvalue())
    entry = proto.metadata_props.add()
    entry.key, entry.value = "officescore.json", json.dumps(meta)
    atomic_write_bytes(out, proto.SerializeToString())
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    boxes, labels, scores, masks = session.run(None, {session.get_inputs()[0].name: tensor.numpy()})
    with torch.inference_mode():
        expected = model([tensor])[0]
    parity = _compare(expected, {"boxes": boxes, "labels": labels, "scores": scores, "masks": masks})
    _check(parity, "onnx", out)
    return parity


# --------------------------------------------------------------------------- helpers


def _compare(expected: dict[str, Tensor], got: dict[str, np.ndarray]) -> Parity:
    want_boxes = expected["boxes"].numpy()
    got_boxes = np.asarray(got["boxes"])
    if want_boxes.shape != got_boxes.shape:
        return Parity(len(want_boxes), False, float("inf"), None, found=len(got_boxes))
    labels_equal = bool(np.array_equal(expected["labels"].numpy(), np.asarray(got["labels"])))
    box_diff = float(np.abs(want_boxes - got_boxes).max()) if len(want_boxes) else 0.0
    mask_diff = None
    if "masks" in expected and "masks" in got and len(want_boxes):
        want_masks, got_masks = expected["masks"].numpy(), np.asarray(got["masks"])
        mask_diff = (
            float(np.abs(want_masks - got_masks).mean())
            if want_masks.shape == got_masks.shape
            else float("inf")
        )
    return Parity(len(want_boxes), labels_equal, box_diff, mask_diff)


def _check(parity: Parity, fmt: str, out: Path) -> None:
    """Refuse (and remove) an export that does not reproduce the checkpoint."""
    problem = None
    if parity.found is not None:  # not "max box difference inf px"
        problem = (
            f"it finds {parity.found} objects on the sample where the checkpoint finds {parity.detections}"
        )
    elif not parity.labels_equal or parity.max_box_diff > BOX_TOLERANCE[fmt]:
        problem = (
            f"its detections differ from the checkpoint's (labels equal: {parity.labels_equal}, "
            f"max box difference {parity.max_box_diff:.3g} px > {BOX_TOLERANCE[fmt]:g})"
        )
    elif parity.mean_mask_diff is not None and parity.mean_mask_diff > MASK_TOLERANCE:
        problem = (
            f"its masks cannot be exported faithfully (mean mask difference {parity.mean_mask_diff:.3g} "
            f"> {MASK_TOLERANCE:g})"
        )
    if problem:
        out.unlink(missing_ok=True)
        # ONNX Runtime rounds the resize to the model's size differently at some input sizes.
        hint = "; try another --input-size, or use --format torchscript" if fmt == "onnx" else ""
        raise ModelError(f"{fmt} export refused: {problem}{hint}")


def _sample_image(sample: Path | None, model: nn.Module) -> Image.Image:
    """The photo to compare on: the user's, else a synthetic office scene at the model's size."""
    if sample is not None:
        return load_image(Path(sample))
    from officescore.sample import render_scene

    size = int(model.transform.min_size[-1])
    return render_scene(0, size=max(64, min(size, 512))).image


def _default_input_size(model: nn.Module) -> tuple[int, int]:
    """A square of the model's resize target (its images are resized to this anyway)."""
    size = int(model.transform.min_size[-1])
    return (size, size)


def _to_tensor(image: Image.Image) -> Tensor:
    return pil_to_tensor(image.convert("RGB")).float().div_(255.0)


def _plain(value: Any) -> Any:
    """JSON-ready copy of model kwargs (tuples -> lists)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
