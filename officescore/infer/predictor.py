"""Inference: `Predictor` runs a checkpoint, a TorchScript export or the zero-shot COCO model over
photos and returns `Detection` records (class, score, box, mask RLE, share of the image).

Files are decoded in DataLoader workers with `officescore.images.load_for_model` (EXIF orientation,
truncation and decompression-bomb checks); a bad file becomes an `ImageResult` with `error` set, so
one broken photo never stops the others. A photo much larger than the model's input size (a 12 or
108 MP phone photo) is decoded reduced to that size; boxes and masks are mapped back to the
original photo, one kept mask at a time.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms.functional import pil_to_tensor, to_pil_image

from officescore import masks as masklib
from officescore.attributes import AttributeSchema
from officescore.config import DEFAULT_RUNS_DIR
from officescore.devices import resolve_device
from officescore.errors import BadImageError, ConfigError, ModelError, WeightsUnavailable
from officescore.files import atomic_write_bytes
from officescore.images import (
    ImageInput,
    ModelInput,
    expand_inputs,
    fit_for_model,
    image_size,
    load_for_model,
)
from officescore.infer.accel.int8 import spread
from officescore.infer.accel.run import MASK_THRESHOLD, forward
from officescore.infer.detection import Detection, ImageResult
from officescore.infer.drawing import draw, save_width
from officescore.infer.score import OfficeScore, Rubric, count_classes, score_office
from officescore.progress import SILENT, Reporter
from officescore.runs import existing_model_file, newest_best_checkpoint

if TYPE_CHECKING:
    from officescore.distributed import DistContext

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

COCO_SOURCE = "coco"


# --------------------------------------------------------------------------- inputs


class _Decoded(NamedTuple):
    index: int
    pixels: torch.Tensor | None  # uint8 3xHxW at the size fed to the model; None: unreadable
    error: str | None
    size: tuple[int, int]  # (width, height) of the (EXIF-oriented) original photo


class _Images(Dataset):
    """Decodes one input per item, reduced to the model's input size when the photo is much larger
    (`model_size` = (min_size, max_size); None: decode whole); a bad file yields its error instead."""

    def __init__(self, items: Sequence[ImageInput], model_size: tuple[int, int] | None = None) -> None:
        self.items = items
        self.model_size = model_size

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> _Decoded:
        item = self.items[index]
        # Without a known model size nothing is reduced (an enormous limit stands for "never").
        min_size, max_size = self.model_size or (1 << 30, 1 << 30)
        try:
            if isinstance(item, Image.Image):
                decoded: ModelInput = fit_for_model(item, min_size, max_size)
            else:
                decoded = load_for_model(Path(item), min_size, max_size)
        except BadImageError as exc:
            return _Decoded(index, None, str(exc), (0, 0))
        return _Decoded(index, pil_to_tensor(decoded.image), None, decoded.original_size)


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


def model_source(model: str | None) -> str:
    """What `--model` names: 'coco', a model file, a run folder's weights/best.pt (a folder of runs:
    the newest); without one, `default_model_source`."""
    source = model or default_model_source()
    if source.lower() == COCO_SOURCE:
        return source
    return str(existing_model_file(source, option="--model", coco=True))


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
        self.precision = precision  # resolved: fp32, bf16, fp16 or int8 (officescore.infer.accel)
        self.proposals: int | None = None  # RPN proposals per image; None: the model's own
        self.label_names = list(label_names)  # index = model label; None = ignored
        self.device = device
        self.conf = conf
        self.kind = kind
        self.source = source
        # What the model's attribute head predicts, in the order of its outputs (empty: no head).
        self.attributes: AttributeSchema = AttributeSchema()

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
        calibration: Iterable[ImageInput] = (),
    ) -> Predictor:
        """`coco` (torchvision's COCO Mask R-CNN v2, classes mapped to office classes), an officescore
        checkpoint, or a TorchScript file made by `officescore export`.

        `precision` (officescore.infer.accel): `fp32` gives eager torchvision's detections; `auto` the
        fastest this hardware runs natively (bf16 on AVX512-BF16/AMX CPUs, fp16 on CUDA, else fp32),
        with fewer RPN proposals (as every precision but fp32). One the hardware lacks is a
        ConfigError. `int8` (an int8 backbone) is calibrated on up to CALIBRATION_PHOTOS of the
        `calibration` photos (files, folders, globs or PIL images like the model will see).
        """
        from officescore.infer.accel import prepare_model, proposals_for, resolve_precision

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
            predictor.attributes = loaded.attributes
        predictor.precision = resolve_precision(precision, torch_device, predictor.kind)
        predictor.proposals = proposals_for(precision)
        if img_size is not None:  # before calibrating: int8 is calibrated at the size it will run
            predictor.set_img_size(img_size)
        photos = predictor.calibration_photos(calibration) if predictor.precision == "int8" else []
        predictor.model = prepare_model(
            predictor.model, torch_device, predictor.precision, predictor.proposals, calibration=photos
        )
        return predictor

    def calibration_photos(self, inputs: Iterable[ImageInput]) -> list[torch.Tensor]:
        """Up to CALIBRATION_PHOTOS readable photos, evenly spread over `inputs`, decoded as `predict`
        decodes them (3xHxW floats in [0, 1]); none readable is a ConfigError."""
        chosen = spread(expand_inputs(inputs))
        photos = _Images(chosen, self.model_input_size())
        decoded = [photos[i].pixels for i in range(len(photos))]
        tensors = [p.to(self.device, dtype=torch.float32).div_(255.0) for p in decoded if p is not None]
        if not tensors:
            found = f"none of the {len(chosen)} photos it was given could be read" if chosen else "none given"
            raise ConfigError(
                f"--precision int8 calibrates on photos like the ones it will score ({found}): "
                "give readable ones with --calibration (a folder or files)"
            )
        return tensors

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
        transform = self._part("transform")
        if transform is None:
            raise ConfigError("--img-size: this model does not expose its resize settings; leave it out")
        try:
            transform.min_size = (int(img_size),)
            transform.max_size = int(img_size)
        except (RuntimeError, AttributeError) as exc:
            raise ConfigError(f"--img-size cannot be changed on this {self.kind} model ({exc})") from exc

    def model_input_size(self) -> tuple[int, int] | None:
        """(min_size, max_size) the model resizes photos to, or None when it does not say."""
        from officescore.model import input_size

        return input_size(self.model)

    def detection_cap(self) -> int | None:
        """The most detections the model returns per photo (torchvision's `box_detections_per_img`,
        100 unless the checkpoint's model_kwargs say otherwise), or None when it does not say."""
        try:
            return int(self._part("roi_heads").detections_per_img)
        except (AttributeError, TypeError, RuntimeError):
            return None

    def _part(self, name: str) -> Any:
        """The detector's `name` submodule, also inside a TorchScript export wrapping it; None: none."""
        part = getattr(self.model, name, None)
        return part if part is not None else getattr(getattr(self.model, "model", None), name, None)

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

        Photos are batched with those of the same padded size (`_batches`), so the order they are
        decoded in is not the input order. `on_image(index, result, pixels)` runs in that order for
        each photo that was read, with its decoded uint8 3xHxW tensor: callers that draw on the
        photo need not decode it again.
        """
        if isinstance(inputs, (str, Path, Image.Image)):
            inputs = [inputs]
        items = expand_inputs(inputs)
        conf = self.conf if conf is None else conf
        if not 0.0 <= conf <= 1.0:  # per call as at construction: 1.5 would silently find nothing
            raise ConfigError(f"--conf {conf}: must be between 0 and 1")
        if batch_size < 1:
            raise ConfigError(f"--batch-size {batch_size}: must be 1 or more")
        results: list[ImageResult] = [ImageResult(_describe(item, i)) for i, item in enumerate(items)]
        if not items:
            return results
        workers = min(2, os.cpu_count() or 1) if workers is None else workers
        loader = DataLoader(
            _Images(items, self.model_input_size()),
            batch_sampler=_batches(items, batch_size, self.model_input_size()),
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
        batch: list[_Decoded],
        results: list[ImageResult],
        conf: float,
        on_image: Callable[[int, ImageResult, torch.Tensor], None] | None,
    ) -> Iterator[tuple[int, str | None]]:
        good = [(d.index, d.pixels) for d in batch if d.pixels is not None]
        sizes = {d.index: d.size for d in batch}  # the original photo's size, for output coordinates
        for d in batch:
            if d.error is not None:
                yield d.index, d.error
        if not good:
            return
        tensors = [t.to(self.device, dtype=torch.float32).div_(255.0) for _, t in good]
        outputs: list[dict[str, torch.Tensor]] = [{} for _ in good]
        cap = self.detection_cap()
        # One forward per padded size: torchvision pads a batch to its largest photo, which changed a
        # photo's detections (and score) with the photos beside it in the folder.
        for group in _same_padding(tensors, self.model_input_size()):
            # Only detections scoring >= conf get masks (officescore.infer.accel.run).
            found = forward(self.model, [tensors[i] for i in group], self.device, self.precision, conf)
            for i, output in zip(group, found, strict=True):
                outputs[i] = output
        for (index, tensor), output in zip(good, outputs, strict=True):
            width, height = sizes[index]
            results[index].width, results[index].height = width, height
            input_size = (int(tensor.shape[2]), int(tensor.shape[1]))
            results[index].detections = self._detections(output, width, height, conf, input_size)
            _note_cap(results[index], output["scores"], cap, conf)
            if on_image is not None:
                on_image(index, results[index], tensor)
            yield index, None

    def _detections(
        self,
        output: dict[str, torch.Tensor],
        width: int,
        height: int,
        conf: float,
        input_size: tuple[int, int] | None = None,
    ) -> list[Detection]:
        """Kept detections in pixels of the original `width` x `height` photo; `input_size` (w, h) is
        the size the model was given, smaller when the photo was decoded reduced."""
        in_width, in_height = input_size or (width, height)
        scores = output["scores"].float().cpu()
        boxes = output["boxes"].float().cpu()
        names = [self._name(int(label)) for label in output["labels"].cpu().tolist()]
        # Background and classes with no office meaning (COCO "person", ...) are dropped.
        keep = [k for k in (scores >= conf).nonzero().flatten().tolist() if names[k] is not None]
        reduced = (in_width, in_height) != (width, height)
        if reduced:
            sx, sy = width / in_width, height / in_height
            boxes = boxes * torch.tensor([sx, sy, sx, sy])
        attributes = self._attributes(output, keep)
        mask_scores = output["mask_scores"][keep].float().cpu().tolist() if "mask_scores" in output else None
        masks = None
        if "masks" in output:  # threshold the kept masks at once: one copy off the device, not one each
            masks = (output["masks"][keep, 0] > MASK_THRESHOLD).to("cpu", torch.uint8).numpy()
        detections = []
        for position, k in enumerate(keep):
            if masks is None:
                binary = _box_mask(boxes[k].tolist(), width, height)
                rle, area = masklib.encode(binary), float(binary.sum())
            elif reduced:  # at the original size from the small mask, one at a time
                rle, area = masklib.scaled_up(masks[position], width, height)
            else:
                rle, area = masklib.encode(masks[position]), float(masks[position].sum())
            detections.append(
                Detection(
                    class_name=str(names[k]),
                    score=float(scores[k]),
                    box=[float(v) for v in boxes[k].tolist()],
                    mask=rle,
                    share=area / float(width * height),
                    mask_score=None if mask_scores is None else mask_scores[position],
                    attributes=attributes[position][0],
                    attribute_scores=attributes[position][1],
                )
            )
        return detections

    def _attributes(
        self, output: dict[str, torch.Tensor], keep: list[int]
    ) -> list[tuple[dict[str, Any], dict[str, float]]]:
        """Per kept detection: its class's attribute values and their probabilities."""
        found: list[tuple[dict[str, Any], dict[str, float]]] = [({}, {}) for _ in keep]
        if not self.attributes or "attributes" not in output:
            return found
        values = output["attributes"][keep].cpu().tolist()
        scores = output["attribute_scores"][keep].float().cpu().tolist()
        for position in range(len(keep)):
            for i, attribute in enumerate(self.attributes.attributes):
                index = int(values[position][i])
                if index >= 0:
                    found[position][0][attribute.name] = attribute.values[index]
                    found[position][1][attribute.name] = float(scores[position][i])
        return found

    def _name(self, label: int) -> str | None:
        return self.label_names[label] if 0 <= label < len(self.label_names) else None


def _note_cap(result: ImageResult, scores: torch.Tensor, cap: int | None, conf: float) -> None:
    """Marks `result` when the model returned exactly `cap` detections, all scoring >= conf: the
    cap may have dropped more. Counted before classes without an office meaning (COCO's "person")
    are left out: they take places under the cap too. A TorchScript export keeps scores over its
    own threshold, so its lowest kept score decides."""
    if cap is not None and len(scores) == cap and cap > 0 and bool((scores >= conf).all()):
        result.cap, result.cap_lowest = cap, float(scores.min())


def _same_padding(tensors: Sequence[torch.Tensor], model_size: tuple[int, int] | None) -> list[list[int]]:
    """Positions of `tensors` grouped by the padded size torchvision's transform gives each alone
    (`_padded_size`): within a group each photo is seen as it is alone."""
    groups: dict[tuple[int, int], list[int]] = {}
    for position, tensor in enumerate(tensors):
        key = _padded_size(int(tensor.shape[-2]), int(tensor.shape[-1]), model_size)
        groups.setdefault(key, []).append(position)
    return list(groups.values())


def _padded_size(height: int, width: int, model_size: tuple[int, int] | None) -> tuple[int, int]:
    """The size, in cells of 32 px, a photo is padded to alone: resized to `model_size` = (min_size,
    max_size) as torchvision's transform resizes it, each side rounded up to 32. Without a known
    model size, the exact size."""
    if model_size is None:
        return height, width
    scale = min(model_size[0] / min(height, width), model_size[1] / max(height, width))
    return math.ceil(int(height * scale) / 32), math.ceil(int(width * scale) / 32)


def _batches(
    items: Sequence[ImageInput], batch_size: int, model_size: tuple[int, int] | None
) -> list[list[int]]:
    """Positions of `items` in batches of at most `batch_size`, each of one padded size as far as
    the file headers tell (`_run_batch` runs one forward per padded size in a batch: a folder of
    mixed sizes in input order needed a forward for almost every photo). A reduced decode can pad a
    cell apart from its header's size: that costs a forward, never a different result. Files
    whose header cannot be read are batched together; their error comes when they are decoded."""
    groups: dict[tuple[int, int] | None, list[int]] = {}
    for position, item in enumerate(items):
        size = _header_size(item)
        key = None if size is None else _padded_size(size[1], size[0], model_size)
        groups.setdefault(key, []).append(position)
    return [group[i : i + batch_size] for group in groups.values() for i in range(0, len(group), batch_size)]


def _header_size(item: ImageInput) -> tuple[int, int] | None:
    """(width, height) of a photo as the model will see it, from its header alone; None: unreadable."""
    try:
        size = item.size if isinstance(item, Image.Image) else image_size(Path(item))
    except (BadImageError, OSError, ValueError):  # only the order is at stake: decoding says what is wrong
        return None
    return size if min(size) > 0 else None


def _describe(item: ImageInput, index: int) -> str:
    return f"<image {index + 1}>" if isinstance(item, Image.Image) else str(item)


def _box_mask(box: list[float], width: int, height: int) -> np.ndarray:
    mask = np.zeros((height, width), dtype=np.uint8)
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    mask[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = 1
    return mask


def _coco_model() -> Any:
    """torchvision's COCO Mask R-CNN ResNet-50 FPN v2 with its 91 labels (weights from the hub cache)."""
    from officescore.model import coco_detector

    names = coco_categories()[1:]
    try:
        return coco_detector("maskrcnn_resnet50_fpn_v2", names)
    except ModelError as exc:
        reason = exc.reason if isinstance(exc, WeightsUnavailable) else str(exc)  # without train's advice
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
        data["warning"] = self.result.too_small  # scored, but the score says little
        # The model's cap when it may have cut objects above the threshold (detections were kept >= it).
        data["detection_cap"] = self.result.cap
        return data


class ScoringStopped(KeyboardInterrupt):
    """Ctrl-C while scoring one process's photos: `done`, those scored before it (input order), of `total`."""

    def __init__(self, done: list[PhotoScore], total: int) -> None:
        super().__init__(f"stopped after {len(done)} of {total} photos")
        self.done, self.total = done, total


def default_batch_size(device: torch.device) -> int:
    """Photos per forward pass when the caller does not say: more on a GPU, which has the memory."""
    return 8 if device.type == "cuda" else 2


def score_photos(
    predictor: Predictor,
    inputs: Iterable[ImageInput],
    rubric: Rubric | None = None,
    conf: float | None = None,
    batch_size: int | None = None,
    save_dir: Path | None = None,
    reporter: Reporter = SILENT,
    ctx: DistContext | None = None,
) -> list[PhotoScore]:
    """Detect, score with the rubric and (with `save_dir`) write annotated JPEGs for each photo.

    Ctrl-C in a single process raises `ScoringStopped` with the photos scored before it.
    Under torch.distributed (`ctx` from `officescore.distributed.init`, e.g. `torchrun`) each rank
    scores its shard of the photos and every rank gets all the results, in input order.
    `batch_size` None: `default_batch_size` of the predictor's device.
    """
    from officescore.distributed import DistContext, gather_objects, shard

    rubric = rubric or Rubric.load()
    ctx = ctx or DistContext()
    items = expand_inputs(inputs)
    mine = shard(range(len(items)), ctx)
    # Names of annotated images are chosen over all photos, so two ranks never pick the same one.
    names = _annotated_names(items, Path(save_dir)) if save_dir is not None else {}
    scored: dict[int, PhotoScore] = {}

    def finish(position: int, result: ImageResult, pixels: torch.Tensor) -> None:
        index = mine[position]
        office = score_office(result.detections, rubric)
        annotated = None
        if save_dir is not None:  # draw on the pixels the model saw: the file is not decoded twice
            Path(save_dir).mkdir(parents=True, exist_ok=True)
            annotated = Path(save_dir) / names[index]
            photo = to_pil_image(pixels)
            seen = on_pixels(result, photo.width, photo.height)
            # Whole or not at all: a run stopped mid-write must not leave a torn JPEG over a good one.
            buffer = io.BytesIO()
            drawn = draw(photo, seen, office, width=save_width(photo.width), classes=predictor.classes)
            drawn.save(buffer, "JPEG", quality=90)
            atomic_write_bytes(annotated, buffer.getvalue())
        scored[index] = PhotoScore(result, office, annotated)

    batch_size = default_batch_size(predictor.device) if batch_size is None else batch_size
    try:
        results = predictor.predict(
            [items[i] for i in mine], batch_size=batch_size, conf=conf, reporter=reporter, on_image=finish
        )
    except KeyboardInterrupt:
        if ctx.world_size > 1:
            raise  # the other ranks' photos cannot be gathered any more
        done = [scored[index] for index in sorted(scored)]
        for index, photo in zip(sorted(scored), done, strict=True):
            photo.result.source = _describe(items[index], index)
        raise ScoringStopped(done, len(items)) from None
    own = []
    for index, result in zip(mine, results, strict=True):
        result.source = _describe(items[index], index)  # "<image N>" counts over all inputs
        own.append((index, scored.get(index, PhotoScore(result, None))))
    merged = sorted((pair for part in gather_objects(ctx, own) for pair in part), key=lambda pair: pair[0])
    return [photo for _, photo in merged]


def _annotated_names(items: Sequence[ImageInput], save_dir: Path) -> dict[int, str]:
    """`<stem>.jpg` per photo, `<stem>_2.jpg`... for photos of the same name in different folders."""
    # Never a photo being scored: `--save-dir` set to the photos' own folder overwrote each JPEG.
    photos = {Path(item).resolve() for item in items if isinstance(item, (str, Path))}
    names, used = {}, set()
    for index, item in enumerate(items):
        stem = Path(_describe(item, index)).stem or "image"
        name, n = f"{stem}.jpg", 1
        while name in used or (save_dir / name).resolve() in photos:
            n += 1
            name = f"{stem}_{n}.jpg"
        used.add(name)
        names[index] = name
    return names


def on_pixels(result: ImageResult, width: int, height: int) -> list[Detection]:
    """The detections at `width` x `height`: a photo decoded reduced is drawn at its reduced size."""
    if (width, height) == (result.width, result.height):
        return result.detections
    sx, sy = width / result.width, height / result.height
    scaled = []
    for det in result.detections:
        box = [det.box[0] * sx, det.box[1] * sy, det.box[2] * sx, det.box[3] * sy]
        scaled.append(dataclasses.replace(det, box=box, mask=masklib.resize(det.mask, width, height)))
    return scaled


def write_csv(path: Path, photos: Sequence[PhotoScore]) -> None:
    """One row per photo: score, label, object counts per class, error (a failed photo: blanks, not 0s)."""
    # Every rubric class in rubric order, so runs over different photos share one header; then any
    # other class the model found.
    scored = next((p.score for p in photos if p.score is not None), None)
    classes = [row.class_name for row in scored.breakdown] if scored is not None else []
    found = sorted({d.class_name for p in photos for d in p.result.detections} - set(classes))
    classes += found
    fixed = ("path", "score", "label", "objects", "error")
    # A class named like a fixed column ("score", "label") gets its own name: two "score" columns
    # would make every reader pick one of them.
    header = [*fixed[:4], *(f"{c} (count)" if c in fixed else c for c in classes), "error"]
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
    # A file name that is not UTF-8 holds lone surrogates: escaped (\udcXX), not a crash after scoring.
    atomic_write_bytes(Path(path), buffer.getvalue().encode("utf-8", "backslashreplace"))
