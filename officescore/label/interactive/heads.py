"""The model's answer: torchvision Mask R-CNN's heads run on the region a labeller points at.

A photo's backbone + FPN features (and its RPN proposals) are computed once and kept in an LRU
cache keyed by (task id, photo sha256); each click or box then runs only the heads:

- a box: the box itself is the proposal; the mask head draws the chosen class's mask in it. The box
  head may move it once (`refine`): its box for the chosen class, used when it still overlaps the
  drawn box well (the head tightens a roughly drawn box; it is not allowed to jump to a neighbour).
- a click: the RPN proposals holding every positive click go through the box head; the CANDIDATES
  most likely to be the chosen class (their boxes regressed for that class) go through the mask
  head, plus one box grown to hold clicks the best one misses. The mask that agrees with most
  clicks (positive inside, negative outside) wins, then the most likely one.

The caller (`officescore.label.interactive.Clicker`) falls back to GrabCut when nothing fits and
corrects the chosen mask with GrabCut when clicks still disagree with it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from officescore.label.interactive.prompt import Click

if TYPE_CHECKING:  # torch is imported where the heads run: importing the backend stays fast
    import torch

CANDIDATES = 6  # proposals whose masks are drawn for one click
MIN_FIT = 0.05  # the best proposal's probability of the chosen class below this: nothing fits
REFINE_OVERLAP = 0.7  # a refined box is used when its IoU with the drawn box is at least this
CACHE_PHOTOS = 8  # photos whose features are kept


@dataclass
class Features:
    """One photo as the model saw it: features, proposals, and the scale from photo to model pixels."""

    features: dict[str, torch.Tensor]
    image_size: tuple[int, int]  # (h, w) the model's input after its resize
    padded: tuple[int, int]  # (h, w) of the batch tensor (the RPN's anchors are laid out on it)
    scale: tuple[float, float]  # model px per photo px (x, y)
    proposals: torch.Tensor | None = None  # RPN boxes in model px, computed at the first click


@dataclass
class FeatureCache:
    """LRU of Features by (task id, photo sha256); `backbone_calls` counts the forwards it ran."""

    size: int = CACHE_PHOTOS
    backbone_calls: int = 0
    _items: OrderedDict[tuple[str, str], Features] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, key: tuple[str, str]) -> Features | None:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def put(self, key: tuple[str, str], value: Features) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


@dataclass
class Answer:
    """The model's mask for a prompt: probabilities (HxW float, photo px), binary mask, its box, fit."""

    probabilities: np.ndarray
    mask: np.ndarray
    box: list[float]  # photo px, x0 y0 x1 y1
    fit: float  # the box head's probability of the chosen class for this box


def supports(model: Any) -> bool:
    """Whether `model` is an eager torchvision Mask R-CNN whose heads can be run one by one."""
    from torchvision.models.detection.mask_rcnn import MaskRCNN

    return isinstance(model, MaskRCNN) and model.roi_heads.has_mask()


class Heads:
    """Runs the heads of an eager torchvision Mask R-CNN (`model`, on `device`, at `precision`)."""

    def __init__(
        self, model: Any, device: torch.device, precision: str = "fp32", cache: FeatureCache | None = None
    ):
        self.model = model
        self.device = device
        self.precision = precision
        self.cache = cache if cache is not None else FeatureCache()

    # ------------------------------------------------------------------ features

    def features(self, key: tuple[str, str], rgb: np.ndarray) -> Features:
        """The photo's features (computed once per key): backbone + FPN at the model's input size."""
        import torch

        found = self.cache.get(key)
        if found is not None:
            return found
        from PIL import Image

        from officescore.images import fit_for_model

        height, width = rgb.shape[:2]
        transform = self.model.transform
        # A photo much larger than the model's input is reduced first (a 12 MP photo is not made into
        # a 48 M float tensor only for the model to shrink it).
        reduced = fit_for_model(
            Image.fromarray(rgb), int(transform.min_size[-1]), int(transform.max_size)
        ).image
        tensor = (
            torch.from_numpy(np.array(reduced)).permute(2, 0, 1).to(self.device, torch.float32).div_(255.0)
        )
        with self._running():
            images, _ = transform([tensor])
            features = self.model.backbone(images.tensors)
        self.cache.backbone_calls += 1
        if isinstance(features, torch.Tensor):
            features = OrderedDict([("0", features)])
        image_size = tuple(int(v) for v in images.image_sizes[0])
        scale = (image_size[1] / width, image_size[0] / height)
        padded = (int(images.tensors.shape[-2]), int(images.tensors.shape[-1]))
        found = Features(features, image_size, padded, scale)  # type: ignore[arg-type]
        self.cache.put(key, found)
        return found

    def _proposals(self, feats: Features) -> torch.Tensor:
        import torch

        if feats.proposals is None:
            from torchvision.models.detection.image_list import ImageList

            dummy = torch.empty((1, 3, *feats.padded), device=self.device)
            with self._running():
                boxes, _ = self.model.rpn(ImageList(dummy, [feats.image_size]), feats.features)
            feats.proposals = boxes[0]
        return feats.proposals

    def _running(self) -> Any:
        from contextlib import ExitStack

        import torch

        from officescore.infer.accel.run import autocast

        stack = ExitStack()
        stack.enter_context(torch.inference_mode())
        stack.enter_context(autocast(self.precision, self.device))
        return stack

    # ------------------------------------------------------------------ heads

    def _box_head(
        self, feats: Features, boxes: torch.Tensor, label: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(probability of `label`, the box regressed for `label`) per box, model px."""
        import torch
        from torchvision.ops import boxes as box_ops

        heads = self.model.roi_heads
        with self._running():
            pooled = heads.box_roi_pool(feats.features, [boxes], [feats.image_size])
            logits, deltas = heads.box_predictor(heads.box_head(pooled))
        probs = torch.softmax(logits.float(), -1)[:, label]
        decoded = heads.box_coder.decode(deltas.float(), [boxes]).reshape(len(boxes), -1, 4)[:, label]
        return probs, box_ops.clip_boxes_to_image(decoded, feats.image_size)

    def _probabilities(
        self, feats: Features, boxes: torch.Tensor, label: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The mask head's probabilities of `label` in each box (N x 1 x M x M) and the boxes in photo px."""
        import torch

        heads = self.model.roi_heads
        with self._running():
            pooled = heads.mask_roi_pool(feats.features, [boxes], [feats.image_size])
            logits = heads.mask_predictor(heads.mask_head(pooled))
        sx, sy = feats.scale
        return logits.float()[:, label : label + 1].sigmoid(), boxes / torch.tensor(
            [sx, sy, sx, sy], device=boxes.device
        )

    def _masks(self, feats: Features, boxes: torch.Tensor, label: int, width: int, height: int) -> np.ndarray:
        """The mask head's probabilities of `label` in each box, pasted at the photo's size (N x H x W)."""
        return _pasted(*self._probabilities(feats, boxes, label), width, height)

    def box(
        self, feats: Features, box: Sequence[float], label: int, width: int, height: int, refine: bool = True
    ) -> Answer:
        """The chosen class's mask in `box` (photo px), its box moved by the box head when `refine`."""
        from torchvision.ops import box_iou

        drawn = self._to_model(feats, [box])
        probs, regressed = self._box_head(feats, drawn, label)
        chosen = drawn
        if refine and float(box_iou(regressed, drawn)[0, 0]) >= REFINE_OVERLAP:
            chosen = regressed
        masks = self._masks(feats, chosen, label, width, height)
        return _answer(masks[0], self._to_photo(feats, chosen[0]), float(probs[0]))

    def click(
        self,
        feats: Features,
        clicks: Sequence[Click],
        label: int,
        width: int,
        height: int,
        box: Sequence[float] | None = None,
    ) -> Answer | None:
        """The chosen class's mask that best agrees with `clicks` (None: no proposal of the class holds
        the positive clicks). With `box`, candidates are the box and its refinement instead of proposals."""
        import torch
        from torchvision.ops import nms

        positives = [c for c in clicks if c.positive]
        if box is not None:
            drawn = self._to_model(feats, [box])
            probs, regressed = self._box_head(feats, drawn, label)
            boxes, fits = torch.cat([drawn, regressed]), torch.cat([probs, probs])
        else:
            proposals = self._proposals(feats)
            points = self._to_model(feats, [[c.x, c.y, c.x, c.y] for c in positives])[:, :2]
            holding = _holding(proposals, points)
            if not holding.any():
                return None
            probs, regressed = self._box_head(feats, proposals[holding], label)
            keep = _holding(regressed, points)  # the regressed box must still hold the clicks
            if not keep.any():
                return None
            boxes, fits = regressed[keep], probs[keep]
            order = nms(boxes, fits, 0.9)[:CANDIDATES]  # near-identical boxes give near-identical masks
            boxes, fits = boxes[order], fits[order]
            if float(fits[0]) < MIN_FIT:
                return None
        # Candidates are compared at the clicks alone: pasting each at a 12 MP photo's size took ~0.5 s.
        probs, photo_boxes = self._probabilities(feats, boxes, label)
        values = _at_clicks(probs, photo_boxes, clicks, width, height)
        best = max(range(len(boxes)), key=lambda i: (_agreement(values[i], clicks), float(fits[i])))
        missed = [c for c, value in zip(clicks, values[best], strict=True) if c.positive and value <= 0.5]
        if missed:  # a positive click outside the best mask: the object is larger than its box
            grown = self._to_model(feats, [_grown(self._to_photo(feats, boxes[best]), missed)])
            grown_probs, grown_box = self._probabilities(feats, grown, label)
            grown_values = _at_clicks(grown_probs, grown_box, clicks, width, height)[0]
            if _agreement(grown_values, clicks) > _agreement(values[best], clicks):
                extra = _pasted(grown_probs, grown_box, width, height)[0]
                return _answer(extra, self._to_photo(feats, grown[0]), float(fits[best]))
        mask = _pasted(probs[best : best + 1], photo_boxes[best : best + 1], width, height)[0]
        return _answer(mask, self._to_photo(feats, boxes[best]), float(fits[best]))

    def _to_model(self, feats: Features, boxes: Sequence[Sequence[float]]) -> torch.Tensor:
        import torch

        sx, sy = feats.scale
        return torch.tensor(
            [[b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy] for b in boxes],
            dtype=torch.float32,
            device=self.device,
        )

    def _to_photo(self, feats: Features, box: torch.Tensor) -> list[float]:
        sx, sy = feats.scale
        x0, y0, x1, y1 = (float(v) for v in box.tolist())
        return [x0 / sx, y0 / sy, x1 / sx, y1 / sy]


def _holding(boxes: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Boxes (N x 4) that hold every point (P x 2)."""

    x, y = points[:, 0][None], points[:, 1][None]
    inside = (boxes[:, 0:1] <= x) & (x <= boxes[:, 2:3]) & (boxes[:, 1:2] <= y) & (y <= boxes[:, 3:4])
    return inside.all(dim=1)


def _pasted(probs: torch.Tensor, photo_boxes: torch.Tensor, width: int, height: int) -> np.ndarray:
    """Mask probabilities (N x 1 x M x M) pasted into their boxes at the photo's size (N x H x W)."""
    from torchvision.models.detection.roi_heads import paste_masks_in_image

    return paste_masks_in_image(probs, photo_boxes, (height, width), padding=1)[:, 0].cpu().numpy()


def _at_clicks(
    probs: torch.Tensor, photo_boxes: torch.Tensor, clicks: Sequence[Click], width: int, height: int
) -> np.ndarray:
    """Each mask's pasted probability at each click (N x C), as `_pasted` gives it there (torchvision's
    padding and box rounding, the resize's formula: equal to float rounding), without resizing any
    mask to its box's size (0.3 s for six candidates on a 12 MP photo)."""
    import torch
    from torchvision.models.detection.roi_heads import expand_boxes, expand_masks

    masks, scale = expand_masks(probs, padding=1)
    grids = masks[:, 0].cpu().numpy().astype(np.float32)
    boxes = expand_boxes(photo_boxes, scale).to(dtype=torch.int64).tolist()
    pixels = [(min(int(c.x), width - 1), min(int(c.y), height - 1)) for c in clicks]
    values = np.zeros((len(boxes), len(clicks)), dtype=np.float32)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        rows, columns = max(y1 - y0 + 1, 1), max(x1 - x0 + 1, 1)  # the box's size, as the paste's
        for j, (x, y) in enumerate(pixels):
            if x0 <= x <= x1 and y0 <= y <= y1:  # the pasted box's pixels; zero elsewhere
                values[i, j] = _resized_at(grids[i], rows, columns, y - y0, x - x0)
    return values


def _resized_at(grid: np.ndarray, rows: int, columns: int, row: int, column: int) -> float:
    """Pixel (row, column) of `grid` resized to rows x columns by PyTorch's bilinear interpolation
    (align_corners=False), computed alone with its formula in float32."""
    (r0, r1, wr), (c0, c1, wc) = _source(row, grid.shape[0], rows), _source(column, grid.shape[1], columns)
    one = np.float32(1)
    top = (one - wc) * grid[r0, c0] + wc * grid[r0, c1]
    bottom = (one - wc) * grid[r1, c0] + wc * grid[r1, c1]
    return float((one - wr) * top + wr * bottom)


def _source(index: int, size_in: int, size_out: int) -> tuple[int, int, np.float32]:
    """The two source pixels of output `index` and the weight of the second (PyTorch's rule)."""
    f = np.float32
    where = max(f(size_in) / f(size_out) * (f(index) + f(0.5)) - f(0.5), f(0))
    first = int(where)
    second = first + 1 if first < size_in - 1 else first
    return first, second, min(max(where - f(first), f(0)), f(1))


def _agreement(values: np.ndarray, clicks: Sequence[Click]) -> int:
    """Clicks a mask agrees with (its probabilities at them): positive ones inside, negative outside."""
    return sum(bool(value > 0.5) == c.positive for value, c in zip(values, clicks, strict=True))


def _grown(box: list[float], clicks: Sequence[Click]) -> list[float]:
    x0, y0, x1, y1 = box
    pad = 0.05 * max(x1 - x0, y1 - y0) + 2
    for c in clicks:
        x0, y0, x1, y1 = min(x0, c.x - pad), min(y0, c.y - pad), max(x1, c.x + pad), max(y1, c.y + pad)
    return [x0, y0, x1, y1]


def _answer(probabilities: np.ndarray, box: list[float], fit: float) -> Answer:
    return Answer(probabilities, (probabilities > 0.5).astype(np.uint8), box, fit)
