"""The attribute head: small classifiers on Mask R-CNN's RoI box features, one per attribute.

Each attribute of the schema (officescore.attributes) gets one linear classifier over the box head's
representation (the vector torchvision's box predictor reads), applied only to objects of its class.

Training: the classifiers read the box features (detached: the attribute loss does not change the
detector) of the ground-truth boxes, slightly jittered so they resemble detections, and
`attribute_loss` is the cross-entropy over the objects whose value was labelled; a value left
unlabelled at ingest (target -1) never reaches the loss. Inference: the same
features for each detected box give, per detection, `attributes` (int64 N x A: the value's index in
the schema, -1 where the attribute is not of the detection's class) and `attribute_scores` (float32
N x A: the probability of that value).

`add_attribute_head` turns a built model's RoIHeads into `AttributeRoIHeads` (same weights and
settings; a subclass that runs the head after torchvision's own forward), so a model without
attributes is plain torchvision and old checkpoints load unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection.roi_heads import RoIHeads

from officescore.attributes import AttributeSchema

BOX_JITTER = 0.05  # training boxes move by up to this share of their size (detections are not exact)
STATE_PREFIX = "roi_heads.attribute_predictor."


class AttributePredictor(nn.Module):
    """One linear classifier per attribute; `labels[i]` is the model label (1..K) of attribute i."""

    def __init__(self, in_features: int, labels: list[int], sizes: list[int]) -> None:
        super().__init__()
        self.labels = list(labels)
        self.classifiers = nn.ModuleList(nn.Linear(in_features, n) for n in sizes)

    def forward(self, features: torch.Tensor) -> list[torch.Tensor]:
        return [classifier(features) for classifier in self.classifiers]


def attribute_loss(
    logits: list[torch.Tensor], labels: torch.Tensor, targets: torch.Tensor, predictor: AttributePredictor
) -> torch.Tensor:
    """Mean cross-entropy over (object, attribute) pairs of the attribute's class with a labelled value.

    `targets`: int64 N x A, the value index or -1 (unlabelled, or not this object's attribute).
    """
    total = sum(x.sum() for x in logits) * 0.0  # zero that keeps the graph when nothing is labelled
    count = 0
    for i, (scores, label) in enumerate(zip(logits, predictor.labels, strict=True)):
        wanted = (labels == label) & (targets[:, i] >= 0)
        if wanted.any():
            total = total + F.cross_entropy(scores[wanted], targets[wanted, i], reduction="sum")
            count += int(wanted.sum())
    return total / max(count, 1)


GEOMETRY_FEATURES = 6


def box_geometry(boxes: torch.Tensor, image_shape: tuple[int, int]) -> torch.Tensor:
    """Where the box is and how large, relative to the image (N x 6: centred corners, log2 sizes).

    RoIAlign resamples every box to the same grid, so the pooled features no longer say how large
    an object is; size is what tells a floor lamp from a desk lamp or a large plant from a small one.
    Scaled to a few units, like the box head's features, so a linear classifier learns from them
    within a few steps.
    """
    height, width = image_shape
    scale = torch.tensor([width, height, width, height], dtype=torch.float32, device=boxes.device)
    corners = boxes.float() / scale
    sizes = (corners[:, 2:] - corners[:, :2]).clamp(min=1e-3)
    return torch.cat([4.0 * (corners - 0.5), torch.log2(sizes) + 2.0], dim=1)


def _jitter(boxes: torch.Tensor, image_shape: tuple[int, int]) -> torch.Tensor:
    """Boxes moved by up to BOX_JITTER of their size. The offsets come from a generator seeded by the
    boxes themselves, not the global RNG: the head leaves the data order and augmentation of a run
    (and its exact resume) as they were without it."""
    size = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)
    generator = torch.Generator().manual_seed(int(boxes.detach().double().sum().item() * 1000) % 2**31)
    noise = torch.rand(boxes.shape, generator=generator).to(boxes.device, boxes.dtype)
    moved = boxes + (noise * 2 - 1) * BOX_JITTER * size
    height, width = image_shape
    moved[:, 0::2] = moved[:, 0::2].clamp(0, width)
    moved[:, 1::2] = moved[:, 1::2].clamp(0, height)
    good = (moved[:, 2] > moved[:, 0] + 1) & (moved[:, 3] > moved[:, 1] + 1)
    return torch.where(good[:, None], moved, boxes)


class AttributeRoIHeads(RoIHeads):
    """torchvision's RoIHeads plus `attribute_predictor` (set by `add_attribute_head`)."""

    attribute_predictor: AttributePredictor
    attribute_schema: AttributeSchema

    def _attribute_logits(
        self,
        features: dict[str, torch.Tensor],
        boxes: list[torch.Tensor],
        image_shapes: list[tuple[int, int]],
    ) -> list[torch.Tensor]:
        pooled = self.box_roi_pool(features, boxes, image_shapes)
        # Detached: the classifiers learn from the detector's features without pulling on them, so
        # adding the head leaves detection and masks as they were (a few epochs on a small data set
        # lost every detection above 0.1 when the attribute loss reached the shared box head).
        represented = self.box_head(pooled).detach()
        geometry = torch.cat([box_geometry(b, shape) for b, shape in zip(boxes, image_shapes, strict=True)])
        return self.attribute_predictor(torch.cat([represented, geometry.to(represented.dtype)], dim=1))

    def forward(  # type: ignore[override]
        self,
        features: dict[str, torch.Tensor],
        proposals: list[torch.Tensor],
        image_shapes: list[tuple[int, int]],
        targets: list[dict[str, torch.Tensor]] | None = None,
    ) -> tuple[list[dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
        result, losses = super().forward(features, proposals, image_shapes, targets)
        if self.training:
            if targets is None or not all("attributes" in t for t in targets):
                return result, losses  # a data set without attribute targets: nothing to learn here
            boxes = [_jitter(t["boxes"], shape) for t, shape in zip(targets, image_shapes, strict=True)]
            logits = self._attribute_logits(features, boxes, image_shapes)
            labels = torch.cat([t["labels"] for t in targets])
            wanted = torch.cat([t["attributes"] for t in targets])
            losses["loss_attributes"] = attribute_loss(logits, labels, wanted, self.attribute_predictor)
            return result, losses
        logits = self._attribute_logits(features, [r["boxes"] for r in result], image_shapes)
        decoded = _decode(logits, [r["labels"] for r in result], self.attribute_predictor.labels)
        for r, (values, scores) in zip(result, decoded, strict=True):
            r["attributes"], r["attribute_scores"] = values, scores
        return result, losses


def _decode(
    logits: list[torch.Tensor], labels: list[torch.Tensor], attribute_labels: list[int]
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per image: (value index N x A, -1 off the attribute's class; its probability N x A)."""
    counts = [len(x) for x in labels]
    per_attribute = [torch.softmax(x.float(), dim=1).split(counts) for x in logits]
    out = []
    for k, image_labels in enumerate(labels):
        values, scores = [], []
        for i, label in enumerate(attribute_labels):
            score, index = per_attribute[i][k].max(dim=1)
            mine = image_labels == label
            values.append(torch.where(mine, index, torch.full_like(index, -1)))
            scores.append(torch.where(mine, score, torch.zeros_like(score)))
        n = counts[k]
        out.append(
            (
                torch.stack(values, 1) if values else torch.zeros((n, 0), dtype=torch.int64),
                torch.stack(scores, 1) if scores else torch.zeros((n, 0)),
            )
        )
    return out


@torch.no_grad()
def classify_boxes(
    model: Any, images: list[torch.Tensor], boxes: list[torch.Tensor], labels: list[torch.Tensor]
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The attribute head on given boxes (xyxy, image pixels) of given classes, e.g. labelled
    objects: per image (value index N x A, probability N x A) as in a detection. Eval mode."""
    if not has_attribute_head(model):
        raise ValueError("the model has no attribute head")
    sizes = [tuple(image.shape[-2:]) for image in images]
    batch, _ = model.transform(images)
    scaled = []
    for b, (h, w), (nh, nw) in zip(boxes, sizes, batch.image_sizes, strict=True):
        ratio = torch.tensor([nw / w, nh / h, nw / w, nh / h], dtype=torch.float32, device=b.device)
        scaled.append(b.float() * ratio)
    features = model.backbone(batch.tensors)
    heads = model.roi_heads
    logits = heads._attribute_logits(features, scaled, batch.image_sizes)
    return _decode(logits, labels, heads.attribute_predictor.labels)


def head_layout(schema: AttributeSchema, classes: list[str]) -> tuple[list[int], list[int]]:
    """(model label of each attribute's class, number of values of each), in schema order."""
    attributes = schema.restricted(classes).attributes
    return [classes.index(a.class_name) + 1 for a in attributes], [len(a.values) for a in attributes]


def add_attribute_head(model: Any, classes: list[str], schema: AttributeSchema) -> None:
    """Give `model` (a torchvision MaskRCNN) a fresh attribute head for `schema` (restricted to
    `classes`); the class of its roi_heads becomes AttributeRoIHeads, everything else is kept."""
    labels, sizes = head_layout(schema, classes)
    heads = model.roi_heads
    in_features = heads.box_predictor.cls_score.in_features
    # Swapping the class keeps every submodule, buffer and setting torchvision's builder chose.
    heads.__class__ = AttributeRoIHeads
    heads.attribute_schema = schema.restricted(classes)  # names the outputs' columns (not saved state)
    heads.attribute_predictor = AttributePredictor(in_features + GEOMETRY_FEATURES, labels, sizes)


def has_attribute_head(model: Any) -> bool:
    return isinstance(getattr(model, "roi_heads", None), AttributeRoIHeads)


def model_attributes(model: Any) -> AttributeSchema:
    """The schema a model's attribute head predicts, in output order (empty: no head)."""
    return model.roi_heads.attribute_schema if has_attribute_head(model) else AttributeSchema()


def named_attributes(
    values: list[int], scores: list[float], schema: AttributeSchema
) -> tuple[dict[str, Any], dict[str, float]]:
    """One detection's output row as {name: value} and {name: probability} (its class's only)."""
    named, probability = {}, {}
    for index, score, attribute in zip(values, scores, schema.attributes, strict=True):
        if index >= 0:
            named[attribute.name] = attribute.values[int(index)]
            probability[attribute.name] = float(score)
    return named, probability
