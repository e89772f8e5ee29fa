"""Training data for torch: `OfficeDataset` over a data-set split, and its transforms.

Reads the normalised COCO written by `officescore ingest` (docs/ARCHITECTURE.md, "Data set
folder"). Masks are decoded per item, so memory stays flat however large the split. Boxes are
always derived from the (transformed) masks, so image, boxes and masks can never disagree.

`decoded_for(min_size, max_size)`: photos much larger than a model's input (a 12 MP phone photo for
a 512 px model) are decoded reduced, as `score` decodes them (`images.load_for_model`), their masks
resized with them; such items carry `orig_size`, the photo's (width, height), so predictions can be
put back on the photo. Training and evaluation then cost the model's pixels, not the camera's.

Box convention: pixel edges, as COCO's [x, y, w, h] -> [x, y, x + w, y + h]. A mask covering
columns 3..5 has x0 = 3 and x1 = 6, so even a one-pixel object gets a box of positive size
(torchvision's Mask R-CNN rejects degenerate boxes) and a horizontal flip maps boxes exactly.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from officescore import masks as masklib
from officescore.attributes import AttributeSchema
from officescore.errors import DataError, UserError
from officescore.files import ingest_advice
from officescore.images import REDUCE_ABOVE, load_for_model, load_image

Target = dict[str, Any]
_INGEST_HINT = "run `officescore ingest EXPORT.json --out {dir}` first"


def boxes_from_masks(masks: torch.Tensor) -> torch.Tensor:
    """(N, H, W) masks -> (N, 4) float32 xyxy boxes on pixel edges; empty masks give zeros."""
    n, height, width = masks.shape
    if n == 0:
        return torch.zeros((0, 4), dtype=torch.float32)
    rows = masks.bool().any(dim=2)  # (N, H): rows the mask touches
    cols = masks.bool().any(dim=1)  # (N, W)
    ys = torch.arange(height).expand(n, height)
    xs = torch.arange(width).expand(n, width)
    y0 = torch.where(rows, ys, height).amin(dim=1)
    y1 = torch.where(rows, ys, -1).amax(dim=1) + 1
    x0 = torch.where(cols, xs, width).amin(dim=1)
    x1 = torch.where(cols, xs, -1).amax(dim=1) + 1
    boxes = torch.stack([x0, y0, x1, y1], dim=1).to(torch.float32)
    boxes[~rows.any(dim=1)] = 0.0
    return boxes


def collate_fn(batch: Sequence[tuple[torch.Tensor, Target]]) -> tuple[tuple[Any, ...], ...]:
    """Detection batches are lists (images differ in size): ((img, img, ...), (tgt, tgt, ...))."""
    return tuple(zip(*batch, strict=True))


def _read_json(path: Path, dataset_dir: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(
            f"{path}: unreadable ({exc}); {_INGEST_HINT.format(dir=dataset_dir)} to rebuild it"
        ) from exc


class OfficeDataset(Dataset):
    """(image float32 3xHxW in [0, 1], target) pairs ready for torchvision's Mask R-CNN.

    target: boxes (float32 Nx4 xyxy), labels (int64 N, 1..K), masks (uint8 NxHxW),
    image_id (int), area (float32 N, mask pixels), iscrowd (int64 N), and when dataset.json declares
    attributes, attributes (int64 N x A: each attribute's value index, in `self.attributes` order,
    or -1 where it was not labelled or is not the object's class's).
    """

    collate_fn = staticmethod(collate_fn)

    def __init__(
        self,
        dataset_dir: Path | str,
        split: str,
        transforms: Any = None,
        include_crowd: bool = False,
    ) -> None:
        self.dataset_dir = Path(dataset_dir)
        self.split = split
        self.transforms = transforms
        self.include_crowd = include_crowd
        # (min_size, max_size, reduce_above) of `decoded_for`; None: every photo at its own size
        self.decode_size: tuple[int, int, float] | None = None
        hint = _INGEST_HINT.format(dir=self.dataset_dir)
        if self.dataset_dir.is_file():  # the export itself, a tasks file: not `ingest --out` that file
            advice = ingest_advice(self.dataset_dir) or "pass the folder `officescore ingest` wrote"
            raise DataError(f"{self.dataset_dir}: a file, not a data-set folder; {advice}")
        if not self.dataset_dir.is_dir():
            raise DataError(f"{self.dataset_dir}: no data set folder there; {hint}")
        meta_path = self.dataset_dir / "dataset.json"
        if not meta_path.is_file():
            advice = ingest_advice(self.dataset_dir) or hint
            raise DataError(f"{self.dataset_dir}: not an officescore data set (no dataset.json); {advice}")
        meta = _read_json(meta_path, self.dataset_dir)
        classes = meta.get("classes") if isinstance(meta, dict) else None
        if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
            raise DataError(f'{meta_path}: no list of class names under "classes"; {hint}')
        self.classes: list[str] = list(classes)
        try:
            schema = AttributeSchema.from_dict(meta.get("attributes"), str(meta_path))
        except UserError as exc:
            raise DataError(f"{exc}; {hint.replace('first', 'again')}") from exc
        self.attributes = schema.restricted(self.classes)
        self.labelled_attributes = 0  # (object, attribute) pairs with a labelled value in this split
        self.annotation_file = self.dataset_dir / f"{split}.json"
        if not self.annotation_file.is_file():
            splits = sorted(p.stem for p in self.dataset_dir.glob("*.json") if p.name != "dataset.json")
            what_now = f"it has {', '.join(splits)}" if splits else f"it has none; {hint}"
            raise DataError(f"{self.annotation_file}: no split {split!r} in this data set ({what_now})")
        coco = _read_json(self.annotation_file, self.dataset_dir)
        try:
            self._images, self._annotations = self._index(coco)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:  # a hand-edited file
            raise DataError(
                f"{self.annotation_file}: not normalised COCO ({exc!r}); {hint.replace('first', 'again')}"
            ) from exc
        self.image_ids: list[int] = [int(info["id"]) for info in self._images]

    def _index(self, coco: Any) -> tuple[list[dict[str, Any]], dict[int, list[dict[str, Any]]]]:
        where = str(self.annotation_file)
        if not isinstance(coco, dict) or not isinstance(coco.get("images"), list):
            raise DataError(f'{where}: not COCO (no "images" list)')
        names = {int(c["id"]): c.get("name") for c in coco.get("categories", []) if "id" in c}
        expected = dict(enumerate(self.classes, start=1))
        if names and names != expected:
            raise DataError(
                f"{where}: categories {names} do not match dataset.json classes {self.classes}; "
                "re-run `officescore ingest`"
            )
        images = sorted(coco["images"], key=lambda info: int(info["id"]))
        known = {int(info["id"]) for info in images}
        by_image: dict[int, list[dict[str, Any]]] = {image_id: [] for image_id in known}
        for ann in coco.get("annotations", []):
            image_id = int(ann.get("image_id", -1))
            label = int(ann.get("category_id", 0))
            if image_id not in known or not 1 <= label <= len(self.classes):
                raise DataError(f"{where}: annotation {ann.get('id')} has a bad image or category id")
            if "segmentation" not in ann:
                raise DataError(f"{where}: annotation {ann.get('id')} has no segmentation")
            by_image[image_id].append(
                {
                    "segmentation": ann["segmentation"],
                    "label": label,
                    "iscrowd": int(ann.get("iscrowd", 0)),
                    "attributes": self._attribute_row(ann, label),
                }
            )
        for info in images:
            name = str(info.get("file_name", ""))
            parts = PurePosixPath(name).parts
            if not name or PurePosixPath(name).is_absolute() or ".." in parts:
                raise DataError(f"{where}: image {info.get('id')} has an unsafe file_name {name!r}")
        return images, by_image

    def _attribute_row(self, ann: dict[str, Any], label: int) -> list[int]:
        """Value index per schema attribute; -1 when unlabelled or not this object's class's."""
        values = ann.get("attributes") or {}
        unlabelled = set(ann.get("unlabelled") or ())
        row = []
        for attribute in self.attributes.attributes:
            index = -1
            name = attribute.name
            if attribute.class_name == self.classes[label - 1] and name in values and name not in unlabelled:
                try:
                    index = attribute.index(attribute.parse(values[name]))
                except ValueError as exc:
                    raise ValueError(f"annotation {ann.get('id')}: {name} {exc}") from exc
                self.labelled_attributes += not ann.get("iscrowd")
            row.append(index)
        return row

    def __len__(self) -> int:
        return len(self._images)

    def decoded_for(self, min_size: int, max_size: int, reduce_above: float = REDUCE_ABOVE) -> OfficeDataset:
        """This split with photos more than `reduce_above` times a model's input (min_size, max_size)
        decoded at that input's size (see the module docstring); the split itself is left as it is."""
        reduced = copy.copy(self)
        reduced.decode_size = (int(min_size), int(max_size), float(reduce_above))
        return reduced

    def _decode(self, segmentation: Any, height: int, width: int) -> np.ndarray:
        if isinstance(segmentation, list):  # polygons: tolerated, though ingest writes RLE
            rle = masklib.from_polygons(segmentation, height, width)
        else:
            rle = segmentation
        mask = masklib.decode(rle)
        if mask.shape != (height, width):
            raise DataError(
                f"{self.annotation_file}: a mask of {mask.shape[1]}x{mask.shape[0]} on a "
                f"{width}x{height} image; re-run `officescore ingest`"
            )
        return mask

    def raw_item(self, index: int) -> tuple[tv_tensors.Image, Target]:
        """The item before transforms: uint8 tv_tensors.Image and a target of tv_tensors."""
        info = self._images[index]
        path = self.dataset_dir / str(info["file_name"])
        original: tuple[int, int] | None = None  # the photo's (width, height) when decoded reduced
        if self.decode_size is None:
            image = load_image(path)
        else:
            min_size, max_size, reduce_above = self.decode_size
            loaded = load_for_model(path, min_size, max_size, reduce_above=reduce_above)
            image, original = loaded.image, (loaded.original_size if loaded.reduced else None)
        width, height = image.size
        full_width, full_height = original or (width, height)
        anns = [a for a in self._annotations[int(info["id"])] if self.include_crowd or not a["iscrowd"]]
        if anns:
            stacked = np.stack(
                [
                    _resized(self._decode(a["segmentation"], full_height, full_width), width, height)
                    for a in anns
                ]
            )
        else:
            stacked = np.zeros((0, height, width), dtype=np.uint8)
        masks = torch.from_numpy(stacked)
        target: Target = {
            "boxes": tv_tensors.BoundingBoxes(
                boxes_from_masks(masks), format=tv_tensors.BoundingBoxFormat.XYXY, canvas_size=(height, width)
            ),
            "masks": tv_tensors.Mask(masks),
            "labels": torch.tensor([a["label"] for a in anns], dtype=torch.int64),
            "iscrowd": torch.tensor([a["iscrowd"] for a in anns], dtype=torch.int64),
            "image_id": int(info["id"]),
        }
        if original is not None:
            target["orig_size"] = original
        if self.attributes:
            rows = [a["attributes"] for a in anns]
            target["attributes"] = torch.tensor(rows, dtype=torch.int64).reshape(
                len(anns), len(self.attributes.attributes)
            )
        return tv_tensors.Image(F.pil_to_tensor(image)), target

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Target]:
        image, target = self.raw_item(index)
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return finalise(image, target)


def finalise(image: torch.Tensor, target: Target) -> tuple[torch.Tensor, Target]:
    """Plain tensors out: float image in [0, 1]; instances whose mask vanished dropped; boxes and
    areas recomputed from the masks that are left."""
    image = image.as_subclass(torch.Tensor)
    if not image.is_floating_point():
        image = image.to(torch.float32) / 255.0
    image = image.to(torch.float32)
    masks = target["masks"].as_subclass(torch.Tensor).to(torch.uint8)
    pixels = masks.flatten(1).sum(dim=1)
    keep = pixels > 0
    masks = masks[keep]
    out = {
        "boxes": boxes_from_masks(masks),
        "labels": target["labels"].as_subclass(torch.Tensor)[keep].to(torch.int64),
        "masks": masks,
        "image_id": int(target["image_id"]),
        "area": pixels[keep].to(torch.float32),
        "iscrowd": target["iscrowd"].as_subclass(torch.Tensor)[keep].to(torch.int64),
    }
    if "attributes" in target:
        out["attributes"] = target["attributes"].as_subclass(torch.Tensor)[keep].to(torch.int64)
    if "orig_size" in target:
        out["orig_size"] = tuple(target["orig_size"])
    return image, out


def _resized(mask: np.ndarray, width: int, height: int) -> np.ndarray:
    """A binary mask at `width` x `height` (nearest pixel, as the photo it belongs to was reduced)."""
    if mask.shape == (height, width):
        return mask
    from PIL import Image

    return np.asarray(Image.fromarray(mask).resize((width, height), Image.Resampling.NEAREST))


class RandomZoom:
    """Scale jitter that keeps the canvas size: zoom in (resize up, random crop) or zoom out
    (resize down, pad). Mask R-CNN resizes every input to its own min_size, so resizing the
    whole image alone would be undone; only changing object size *within* the canvas teaches scale.
    """

    def __init__(
        self, scale_range: tuple[float, float] = (0.7, 1.4), p: float = 0.5, fill: int = 114
    ) -> None:
        if not 0 < scale_range[0] <= scale_range[1]:
            raise ValueError(f"scale_range must be 0 < low <= high, got {scale_range}")
        self.scale_range = scale_range
        self.p = p
        self.fill = fill

    def __call__(self, image: tv_tensors.Image, target: Target) -> tuple[tv_tensors.Image, Target]:
        if torch.rand(()).item() >= self.p:
            return image, target
        height, width = image.shape[-2:]
        lo, hi = (math.log(v) for v in self.scale_range)
        factor = math.exp(lo + (hi - lo) * torch.rand(()).item())
        new_h, new_w = max(1, round(height * factor)), max(1, round(width * factor))
        if new_h >= height and new_w >= width:
            top = int(torch.randint(0, new_h - height + 1, ()).item())
            left = int(torch.randint(0, new_w - width + 1, ()).item())

            def apply(x: Any, fill: int) -> Any:
                return F.crop(F.resize(x, [new_h, new_w], antialias=True), top, left, height, width)
        else:
            new_h, new_w = min(new_h, height), min(new_w, width)
            top = int(torch.randint(0, height - new_h + 1, ()).item())
            left = int(torch.randint(0, width - new_w + 1, ()).item())
            padding = [left, top, width - new_w - left, height - new_h - top]

            def apply(x: Any, fill: int) -> Any:
                return F.pad(F.resize(x, [new_h, new_w], antialias=True), padding, fill=fill)

        image = apply(image, self.fill)
        target = dict(target)
        for key, value in target.items():
            if isinstance(value, (tv_tensors.Mask, tv_tensors.BoundingBoxes)):
                target[key] = apply(value, 0)
        return image, target


def build_transforms(
    train: bool,
    hflip: float = 0.5,
    scale_range: tuple[float, float] = (0.7, 1.4),
    zoom_p: float = 0.5,
    color_jitter: float = 0.25,
) -> v2.Compose:
    """Training: horizontal flip, scale jitter (RandomZoom), colour jitter; eval: to float only.

    Use with OfficeDataset, which drops instances whose mask became empty and recomputes boxes.
    """
    steps: list[Any] = []
    if train:
        if hflip > 0:
            steps.append(v2.RandomHorizontalFlip(p=hflip))
        if zoom_p > 0:
            steps.append(RandomZoom(scale_range=scale_range, p=zoom_p))
        if color_jitter > 0:
            steps.append(
                v2.ColorJitter(
                    brightness=color_jitter,
                    contrast=color_jitter,
                    saturation=color_jitter,
                    hue=min(color_jitter / 5, 0.5),
                )
            )
    steps.append(v2.ToDtype(torch.float32, scale=True))
    return v2.Compose(steps)
