"""What `select` needs from one forward pass per photo, read with forward hooks around
`Predictor.predict` (officescore/infer/predictor.py stays the one inference path):

- `model.backbone` -> FPN feature maps, mean-pooled per level and concatenated: an image embedding
  for diversity (k-center) that costs nothing extra;
- `model.roi_heads.box_predictor` -> per-proposal class logits: how unsure the classifier is on the
  most object-like proposals (1 - top-2 margin, or normalised entropy, over background + K classes),
  summed with each proposal's objectness as its weight;
- `model.roi_heads.mask_predictor` -> per-detection mask logits: how unsure the masks are (mean
  per-pixel binary entropy in the detection's class channel), summed with detection scores as weights.

Sums, not means: `--budget` counts photos, and a photo teaches as much as the unsure objects in it.
With means, photos with one or two objects rated the most uncertain (their other top proposals are
background), so `select` labelled fewer objects than random and tied with it (bench/selection.py
--scraped, 48 photos: 217 objects and mask mAP 0.188 against random's 0.179 +- 0.009; with sums 238
objects and 0.200).

TorchScript exports cannot take hooks: they fall back to the detection scores' binary entropy
and a 16x16 thumbnail as the embedding, and say so (`ImageSignals.fallback`).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from officescore.progress import SILENT, Reporter

UNCERTAINTIES = ("margin", "entropy")
TOP_PROPOSALS = 16  # the most object-like proposals per photo that the class uncertainty averages
THUMB = 16


@dataclass
class ImageSignals:
    path: Path
    feature: np.ndarray | None  # L2-normalised embedding; None when the photo was unreadable
    class_uncertainty: float = 0.0  # in [0, 1]: objectness-weighted sum over the top proposals / their number
    mask_uncertainty: float = 0.0  # >= 0: a score-weighted sum over detections
    detections: int = 0  # at score >= 0.5
    error: str | None = None
    fallback: bool = False


def _binary_entropy(p: torch.Tensor) -> torch.Tensor:
    p = p.clamp(1e-6, 1 - 1e-6)
    return -(p * p.log2() + (1 - p) * (1 - p).log2())


def class_uncertainty(
    logits: torch.Tensor, how: str = "margin", top: int = TOP_PROPOSALS, keep: Sequence[int] | None = None
) -> float:
    """Uncertainty of the `top` proposals least likely background, each weighted by its objectness
    (1 - p(background)), summed and divided by `top`: in [0, 1]. logits: [N, K+1], 0 = bg.
    `keep`: the columns of the classes that count; the others' probability is background's."""
    if logits.numel() == 0:
        return 0.0
    probs = logits.float().softmax(dim=1)
    if keep is not None:  # classes nobody will label: to the labeller they are background
        others = [k for k in range(1, probs.shape[1]) if k not in keep]
        probs = torch.cat([probs[:, [0, *others]].sum(dim=1, keepdim=True), probs[:, list(keep)]], dim=1)
    objectness = 1.0 - probs[:, 0]
    order = objectness.argsort(descending=True)[:top]
    probs, weights = probs[order], objectness[order]
    if how == "entropy":
        unsure = -(probs * probs.clamp_min(1e-12).log()).sum(dim=1) / np.log(probs.shape[1])
    else:
        two = probs.topk(2, dim=1).values
        unsure = 1.0 - (two[:, 0] - two[:, 1])
    return float((weights * unsure).sum() / top)


def mask_uncertainty(mask_logits: torch.Tensor, labels: Sequence[int], scores: Sequence[float]) -> float:
    """Sum over detections of the mean pixel entropy of each one's own-class mask, weighted by its
    score. mask_logits: [N, K+1, m, m]."""
    n = min(len(labels), mask_logits.shape[0])
    if n == 0:
        return 0.0
    rows = mask_logits[torch.arange(n), torch.as_tensor(list(labels[:n]))].float().sigmoid()
    per_det = _binary_entropy(rows).flatten(1).mean(dim=1)
    weights = torch.as_tensor(list(scores[:n]), dtype=torch.float32)
    return float((per_det * weights).sum())


@contextmanager
def _hooks(model: Any, sink: dict[str, list[Any]]):
    handles = []

    def keep(name: str, pick: Any):
        def hook(module: Any, args: Any, output: Any) -> None:
            sink[name].append(pick(output))

        return hook

    def pooled(output: Any) -> torch.Tensor:
        maps = output.values() if isinstance(output, dict) else [output]
        return torch.cat([m.float().mean(dim=(2, 3)) for m in maps], dim=1).cpu()

    handles.append(model.backbone.register_forward_hook(keep("backbone", pooled)))
    handles.append(
        model.roi_heads.box_predictor.register_forward_hook(keep("box", lambda o: o[0].detach().cpu()))
    )
    if getattr(model.roi_heads, "mask_predictor", None) is not None:
        handles.append(
            model.roi_heads.mask_predictor.register_forward_hook(keep("mask", lambda o: o.detach().cpu()))
        )
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def hookable(model: Any) -> bool:
    return not isinstance(model, torch.jit.ScriptModule) and all(
        hasattr(obj, "register_forward_hook")
        for obj in (getattr(model, "backbone", None), getattr(model, "roi_heads", None))
    )


def _normalise(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-12)


def image_signals(
    predictor: Any,
    paths: Sequence[Path],
    how: str = "margin",
    reporter: Reporter = SILENT,
    classes: Sequence[str] | None = None,
) -> list[ImageSignals]:
    """Embedding and uncertainties per photo, one photo per forward pass (hook outputs stay per photo).

    `classes`: the ones that count (the labelled data set's) when the model knows more; detections
    of the others weigh nothing and their probability is background's."""
    from officescore.infer import ImageResult

    out: dict[int, ImageSignals] = {}
    use_hooks = hookable(predictor.model)
    sink: dict[str, list[Any]] = {"backbone": [], "box": [], "mask": []}
    label_of = {name: k for k, name in enumerate(predictor.label_names) if name}
    keep = [label_of[name] for name in classes] if classes is not None else None

    def collect(index: int, result: ImageResult, pixels: torch.Tensor) -> None:
        dets = result.detections  # conf=0: every detection the model returned, in its order
        counts = [classes is None or d.class_name in classes for d in dets]
        # in that order, so the mask logits still line up: another class's detection weighs 0
        scores = [d.score if counted else 0.0 for d, counted in zip(dets, counts, strict=True)]
        confident = sum(s >= 0.5 for s in scores)
        if use_hooks and sink["backbone"]:
            feature = sink["backbone"].pop()[0].numpy()
            box = sink["box"].pop() if sink["box"] else torch.zeros(0, 2)
            mask = sink["mask"].pop() if sink["mask"] else torch.zeros(0, 1, 1, 1)
            out[index] = ImageSignals(
                paths[index],
                _normalise(feature),
                class_uncertainty(box, how, keep=keep),
                mask_uncertainty(mask, [label_of[d.class_name] for d in dets], scores),
                confident,
            )
        else:  # no hooks (TorchScript) or they did not fire: scores and a thumbnail instead
            thumb = torch.nn.functional.adaptive_avg_pool2d(pixels.float()[None] / 255.0, THUMB)[0]
            kept = [s for s, counted in zip(scores, counts, strict=True) if counted]
            entropy = _binary_entropy(torch.tensor(kept)).mean() if kept else torch.tensor(0.0)
            out[index] = ImageSignals(
                paths[index],
                _normalise(thumb.flatten().numpy()),
                float(entropy),
                0.0,
                confident,
                fallback=True,
            )
        for values in sink.values():
            values.clear()

    context = _hooks(predictor.model, sink) if use_hooks else _null()
    with context:
        results = predictor.predict(list(paths), batch_size=1, conf=0.0, reporter=reporter, on_image=collect)
    return [
        out.get(i) or ImageSignals(paths[i], None, error=r.error or "not read") for i, r in enumerate(results)
    ]


@contextmanager
def _null():
    yield
