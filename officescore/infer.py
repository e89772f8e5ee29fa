"""Inference: `Predictor` runs a checkpoint, a TorchScript export or the zero-shot COCO model over
photos and returns `Detection` records (class, score, box, mask RLE, share of the image).

Files are decoded in DataLoader workers with `officescore.images.load_image` (EXIF orientation,
truncation and decompression-bomb checks); a bad file becomes an `ImageResult` with `error` set, so
one broken photo never stops the others.
"""

from __future__ import annotations

import csv
import glob
import io
import os
import sys
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms.functional import pil_to_tensor, to_pil_image

from officescore import masks as masklib
from officescore.accel.run import forward
from officescore.config import DEFAULT_RUNS_DIR
from officescore.devices import resolve_device
from officescore.errors import BadImageError, ConfigError, ModelError
from officescore.files import atomic_write_bytes
from officescore.images import load_image
from officescore.progress import SILENT, Reporter
from officescore.runs import newest_best_checkpoint
from officescore.score import OfficeScore, Rubric, count_classes, score_office

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

COCO_SOURCE = "coco"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
MASK_THRESHOLD = 0.5  # torchvision's masks are per-pixel probabilities

ImageInput = str | Path | Image.Image


@dataclass
class Detection:
    class_name: str
    score: float
    box: list[float]  # x0, y0, x1, y1 in pixels of the (EXIF-oriented) photo
    mask: dict[str, Any]  # COCO compressed RLE, str counts
    share: float  # mask area / image area

    def to_dict(self) -> dict[str, Any]:
        return {
            "class": self.class_name,
            "score": round(self.score, 4),
            "box": [round(v, 2) for v in self.box],
            "share": round(self.share, 4),
            "mask": self.mask,
        }


@dataclass
class ImageResult:
    source: str  # the path as given (or "<image N>" for in-memory images)
    width: int = 0
    height: int = 0
    detections: list[Detection] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def above(self, conf: float) -> ImageResult:
        """The same result keeping only detections with score >= conf."""
        kept = [d for d in self.detections if d.score >= conf]
        return ImageResult(self.source, self.width, self.height, kept, self.error)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.source,
            "width": self.width,
            "height": self.height,
            "error": self.error,
            "detections": [d.to_dict() for d in self.detections],
        }


# --------------------------------------------------------------------------- inputs


def expand_inputs(items: Iterable[ImageInput]) -> list[ImageInput]:
    """Files as given, folders -> their image files (sorted, recursive), globs -> matches.

    A path that matches nothing is kept as is, so it is reported as missing for that photo only.
    """
    expanded: list[ImageInput] = []
    for item in items:
        if isinstance(item, Image.Image):
            expanded.append(item)
            continue
        path = Path(item)
        if path.is_dir():
            expanded.extend(
                p for p in sorted(path.rglob("*")) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
        elif not path.exists() and glob.has_magic(str(item)):
            matches = [Path(m) for m in sorted(glob.glob(str(item), recursive=True)) if Path(m).is_file()]
            expanded.extend(matches or [path])
        else:
            expanded.append(path)
    return expanded


class _Images(Dataset):
    """Decodes one input per item; a bad file yields its error message instead of pixels."""

    def __init__(self, items: Sequence[ImageInput]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor | None, str | None]:
        item = self.items[index]
        try:
            image = item.convert("RGB") if isinstance(item, Image.Image) else load_image(Path(item))
        except BadImageError as exc:
            return index, None, str(exc)
        return index, pil_to_tensor(image), None


def _collate(batch: list[Any]) -> list[Any]:
    return batch


# --------------------------------------------------------------------------- the predictor


def load_coco_mapping(path: Path | None = None) -> dict[str, str]:
    """COCO category name -> office class, from package data `coco_to_office.toml`."""
    if path is None:
        text = resources.files("officescore").joinpath("data", "coco_to_office.toml").read_text("utf-8")
    else:
        text = Path(path).read_text(encoding="utf-8")
    mapping = tomllib.loads(text).get("map", {})
    if not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values()):
        raise ConfigError(f"{path or 'coco_to_office.toml'}: [map] must map COCO names to class names")
    return dict(mapping)


def coco_categories() -> list[str]:
    """torchvision's 91 COCO category names, index = model label (0 background, 'N/A' gaps)."""
    from torchvision.models.detection import MaskRCNN_ResNet50_FPN_V2_Weights

    return list(MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1.meta["categories"])


def coco_label_names(mapping: dict[str, str] | None = None) -> list[str | None]:
    """Office class for each COCO model label (None: not an office object, ignored)."""
    mapping = load_coco_mapping() if mapping is None else mapping
    return [mapping.get(name) for name in coco_categories()]


def default_model_source(runs_dir: Path = DEFAULT_RUNS_DIR) -> str:
    """The newest `runs/train/*/weights/best.pt`, else the zero-shot COCO model."""
    found = newest_best_checkpoint(Path(runs_dir) / "train")
    return COCO_SOURCE if found is None else str(found)


class Predictor:
    """A detector plus the names of its labels; `predict` turns photos into `ImageResult`s."""

    def __init__(
        self,
        model: Any,
        label_names: Sequence[str | None],
        device: torch.device,
        conf: float = 0.5,
        kind: str = "checkpoint",
        source: str = "",
        precision: str = "fp32",
    ) -> None:
        if not 0.0 <= conf <= 1.0:
            raise ConfigError(f"--conf {conf}: must be between 0 and 1")
        self.model = model
        self.precision = precision  # resolved: fp32, bf16 or fp16 (officescore.accel)
        self.proposals: int | None = None  # RPN proposals per image; None: the model's own
        self.label_names = list(label_names)  # index = model label; None = ignored
        self.device = device
        self.conf = conf
        self.kind = kind
        self.source = source

    @property
    def classes(self) -> list[str]:
        """The office classes this predictor can output (in label order, unique)."""
        return list(dict.fromkeys(n for n in self.label_names if n))

    @classmethod
    def load(
        cls,
        source: str | Path,
        device: str = "auto",
        conf: float = 0.5,
        img_size: int | None = None,
        precision: str = "auto",
    ) -> Predictor:
        """`coco` (torchvision's COCO Mask R-CNN v2, classes mapped to office classes), an officescore
        checkpoint, or a TorchScript file made by `officescore export`.

        `precision` (officescore.accel): `fp32` gives eager torchvision's detections; `auto` the
        fastest this hardware runs natively (bf16 on AVX512-BF16/AMX CPUs, fp16 on CUDA, else fp32),
        with fewer RPN proposals (as every precision but fp32). One the hardware lacks is a
        ConfigError.
        """
        from officescore.accel import prepare_model, proposals_for, resolve_precision

        torch_device = resolve_device(device)
        resolve_precision(precision, torch_device)  # a precision this machine lacks: before loading
        if str(source).lower() == COCO_SOURCE:
            model = _coco_model()
            predictor = cls.from_coco_model(model, torch_device, conf)
        else:
            from officescore.model import load_any

            loaded = load_any(Path(source), torch_device)
            names: list[str | None] = [None, *loaded.classes]
            predictor = cls(loaded.model, names, torch_device, conf, loaded.kind, str(source))
        predictor.precision = resolve_precision(precision, torch_device, predictor.kind)
        predictor.proposals = proposals_for(precision)
        predictor.model = prepare_model(
            predictor.model, torch_device, predictor.precision, predictor.proposals
        )
        if img_size is not None:
            predictor.set_img_size(img_size)
        return predictor

    @classmethod
    def from_coco_model(
        cls, model: Any, device: torch.device, conf: float = 0.5, mapping: dict[str, str] | None = None
    ) -> Predictor:
        """Wrap any detector with COCO's 91 labels; COCO classes become office classes."""
        model.to(device).eval()
        return cls(model, coco_label_names(mapping), device, conf, kind="coco", source=COCO_SOURCE)

    def set_img_size(self, img_size: int) -> None:
        """Resize photos inside the model so that neither side exceeds `img_size` (train's --img-size)."""
        if img_size < 32:
            raise ConfigError(f"--img-size {img_size}: too small; use 32 or more (e.g. 512, 800)")
        transform = getattr(self.model, "transform", None)
        if transform is None:  # a TorchScript export wrapping the model
            transform = getattr(getattr(self.model, "model", None), "transform", None)
        if transform is None:
            raise ConfigError("--img-size: this model does not expose its resize settings; leave it out")
        try:
            transform.min_size = (int(img_size),)
            transform.max_size = int(img_size)
        except (RuntimeError, AttributeError) as exc:
            raise ConfigError(f"--img-size cannot be changed on this {self.kind} model ({exc})") from exc

    def predict(
        self,
        inputs: ImageInput | Iterable[ImageInput],
        batch_size: int = 2,
        conf: float | None = None,
        workers: int | None = None,
        reporter: Reporter = SILENT,
        on_image: Callable[[int, ImageResult, torch.Tensor], None] | None = None,
    ) -> list[ImageResult]:
        """Detections for each input (files, folders, globs or PIL images), in input order.

        `on_image(index, result, pixels)` runs, in input order, for each photo that was read, with
        its decoded uint8 3xHxW tensor: callers that draw on the photo need not decode it again.
        """
        if isinstance(inputs, (str, Path, Image.Image)):
            inputs = [inputs]
        items = expand_inputs(inputs)
        conf = self.conf if conf is None else conf
        if batch_size < 1:
            raise ConfigError(f"--batch-size {batch_size}: must be 1 or more")
        results: list[ImageResult] = [ImageResult(_describe(item, i)) for i, item in enumerate(items)]
        if not items:
            return results
        workers = min(2, os.cpu_count() or 1) if workers is None else workers
        loader = DataLoader(
            _Images(items),
            batch_size=batch_size,
            num_workers=workers if len(items) > 1 else 0,
            collate_fn=_collate,
        )
        with reporter.stage("detecting", total=len(items)) as stage:
            for batch in loader:
                for index, error in self._run_batch(batch, results, conf, on_image):
                    results[index].error = error
                stage.advance(len(batch))
        return results

    def _run_batch(
        self,
        batch: list[tuple[int, torch.Tensor | None, str | None]],
        results: list[ImageResult],
        conf: float,
        on_image: Callable[[int, ImageResult, torch.Tensor], None] | None,
    ) -> Iterator[tuple[int, str | None]]:
        good = [(i, t) for i, t, _ in batch if t is not None]
        for index, _, error in batch:
            if error is not None:
                yield index, error
        if not good:
            return
        tensors = [t.to(self.device, dtype=torch.float32).div_(255.0) for _, t in good]
        # Only detections scoring >= conf get masks (officescore.accel.run).
        outputs = forward(self.model, tensors, self.device, self.precision, conf)
        for (index, tensor), output in zip(good, outputs, strict=True):
            height, width = int(tensor.shape[1]), int(tensor.shape[2])
            results[index].width, results[index].height = width, height
            results[index].detections = self._detections(output, width, height, conf)
            if on_image is not None:
                on_image(index, results[index], tensor)
            yield index, None

    def _detections(
        self, output: dict[str, torch.Tensor], width: int, height: int, conf: float
    ) -> list[Detection]:
        scores = output["scores"].float().cpu()
        boxes = output["boxes"].float().cpu()
        names = [self._name(int(label)) for label in output["labels"].cpu().tolist()]
        # Background and classes with no office meaning (COCO "person", ...) are dropped.
        keep = [k for k in (scores >= conf).nonzero().flatten().tolist() if names[k] is not None]
        masks = None
        if "masks" in output:  # threshold the kept masks at once: one copy off the device, not one each
            masks = (output["masks"][keep, 0] > MASK_THRESHOLD).to("cpu", torch.uint8).numpy()
        detections = []
        for position, k in enumerate(keep):
            binary = masks[position] if masks is not None else _box_mask(boxes[k].tolist(), width, height)
            detections.append(
                Detection(
                    class_name=str(names[k]),
                    score=float(scores[k]),
                    box=[float(v) for v in boxes[k].tolist()],
                    mask=masklib.encode(binary),
                    share=float(binary.sum()) / float(width * height),
                )
            )
        return detections

    def _name(self, label: int) -> str | None:
        return self.label_names[label] if 0 <= label < len(self.label_names) else None


def _describe(item: ImageInput, index: int) -> str:
    return f"<image {index + 1}>" if isinstance(item, Image.Image) else str(item)


def _box_mask(box: list[float], width: int, height: int) -> np.ndarray:
    mask = np.zeros((height, width), dtype=np.uint8)
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    mask[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = 1
    return mask


def _coco_model() -> Any:
    """torchvision's COCO Mask R-CNN ResNet-50 FPN v2 with its 91 labels (weights from the hub cache)."""
    from officescore.model import build_model

    names = coco_categories()[1:]
    try:
        return build_model("maskrcnn_resnet50_fpn_v2", names, weights="coco")
    except ModelError as exc:
        reason = str(exc).replace(", or use --weights none", "")  # advice for train, not score
        raise ModelError(
            f"{reason}. The zero-shot `coco` model needs those weights; or pass --model PATH "
            "(a checkpoint from `officescore train`, or an export)"
        ) from exc


# --------------------------------------------------------------------------- scoring photos


@dataclass
class PhotoScore:
    result: ImageResult
    score: OfficeScore | None  # None when the photo could not be read
    annotated: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        data = self.result.to_dict()
        data["score"] = self.score.to_dict() if self.score else None
        data["annotated"] = str(self.annotated) if self.annotated else None
        return data


def score_photos(
    predictor: Predictor,
    inputs: Iterable[ImageInput],
    rubric: Rubric | None = None,
    conf: float | None = None,
    batch_size: int = 2,
    save_dir: Path | None = None,
    reporter: Reporter = SILENT,
) -> list[PhotoScore]:
    """Detect, score with the rubric and (with `save_dir`) write annotated JPEGs for each photo."""
    rubric = rubric or Rubric.load()
    scored: dict[int, PhotoScore] = {}
    used: set[str] = set()

    def finish(index: int, result: ImageResult, pixels: torch.Tensor) -> None:
        office = score_office(result.detections, rubric)
        annotated = None
        if save_dir is not None:  # draw on the pixels the model saw: the file is not decoded twice
            annotated = _annotated_path(Path(save_dir), result.source, used)
            draw(to_pil_image(pixels), result.detections, office).save(annotated, quality=90)
        scored[index] = PhotoScore(result, office, annotated)

    results = predictor.predict(inputs, batch_size=batch_size, conf=conf, reporter=reporter, on_image=finish)
    return [scored.get(i, PhotoScore(result, None)) for i, result in enumerate(results)]


def _annotated_path(save_dir: Path, source: str, used: set[str]) -> Path:
    save_dir.mkdir(parents=True, exist_ok=True)
    stem = Path(source).stem or "image"
    name, n = f"{stem}.jpg", 1
    while name in used:  # two photos with the same name in different folders
        n += 1
        name = f"{stem}_{n}.jpg"
    used.add(name)
    return save_dir / name


def write_csv(path: Path, photos: Sequence[PhotoScore]) -> None:
    """One row per photo: score, label, object counts per class, error (a failed photo: blanks, not 0s)."""
    # Every rubric class in rubric order, so runs over different photos share one header; then any
    # other class the model found.
    scored = next((p.score for p in photos if p.score is not None), None)
    classes = [row.class_name for row in scored.breakdown] if scored is not None else []
    found = sorted({d.class_name for p in photos for d in p.result.detections} - set(classes))
    classes += found
    header = ["path", "score", "label", "objects", *classes, "error"]
    rows = []
    for photo in photos:
        score = photo.score
        if score is None:  # never read: nothing was counted, so no numbers
            rows.append([photo.result.source, "", "", "", *("" for _ in classes), photo.result.error or ""])
            continue
        counts = count_classes(photo.result.detections)
        rows.append(
            [
                photo.result.source,
                score.total,
                score.label,
                len(photo.result.detections),
                *(counts.get(c, 0) for c in classes),
                photo.result.error or "",
            ]
        )
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    atomic_write_bytes(Path(path), buffer.getvalue().encode("utf-8"))


# --------------------------------------------------------------------------- drawing


def class_colour(name: str) -> tuple[int, int, int]:
    """A stable, saturated colour per class name."""
    import colorsys

    hue = (zlib.crc32(name.encode()) % 360) / 360.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one fixed-size bitmap font
        return ImageFont.load_default()


def draw(
    image: Image.Image, detections: Sequence[Detection], score: OfficeScore | None = None
) -> Image.Image:
    """The photo with translucent masks, boxes, 'class 0.87' labels and a score banner on top."""
    base = image.convert("RGBA")
    overlay = Image.new("RGBA", base.size, (0, 0, 0, 0))
    for det in detections:
        mask = masklib.decode(det.mask)
        if mask.shape != (base.height, base.width):
            continue  # a mask for another image size: boxes and labels still drawn
        colour = class_colour(det.class_name)
        layer = Image.new("RGBA", base.size, (*colour, 110))
        overlay.paste(layer, (0, 0), Image.fromarray(mask * 255, mode="L"))
    out = Image.alpha_composite(base, overlay)
    pen = ImageDraw.Draw(out)
    size = max(8, min(base.size) // 40)
    font = _font(size)
    line = max(2, min(base.size) // 250)
    for det in detections:
        colour = class_colour(det.class_name)
        x0, y0, x1, y1 = det.box
        pen.rectangle([x0, y0, x1, y1], outline=(*colour, 255), width=line)
        text = f"{det.class_name} {det.score:.2f}"
        left, top, right, bottom = pen.textbbox((x0, y0), text, font=font)
        ty = y0 - (bottom - top) - 4 if y0 - (bottom - top) - 4 >= 0 else y0
        pen.rectangle([x0, ty, x0 + (right - left) + 6, ty + (bottom - top) + 4], fill=(*colour, 220))
        pen.text((x0 + 3, ty + 1), text, fill=(0, 0, 0, 255), font=font)
    if score is not None:
        banner, bfont = _fit_banner(pen, score, base.width, max(8, min(base.size) // 24))
        left, top, right, bottom = pen.textbbox((0, 0), banner, font=bfont)
        pen.rectangle([0, 0, base.width, bottom - top + 12], fill=(20, 20, 20, 200))
        pen.text((8, 4), banner, fill=(255, 255, 255, 255), font=bfont)
    return out.convert("RGB")


def _fit_banner(pen: ImageDraw.ImageDraw, score: OfficeScore, width: int, start: int) -> tuple[str, Any]:
    """The longest banner text, at the largest font size from `start` down to 8, that fits `width`."""
    texts = (f"Office score: {score.total:g}/100 - {score.label}", f"Office score: {score.total:g}/100")
    for text in texts:
        for size in range(start, 7, -1):
            font = _font(size)
            left, _, right, _ = pen.textbbox((0, 0), text, font=font)
            if right - left <= width - 16:
                return text, font
    return f"{score.total:g}/100", _font(8)
