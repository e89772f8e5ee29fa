"""Click or box -> one mask of the chosen class: the project's Mask R-CNN heads, else GrabCut.

    clicker = Clicker(loaded)                       # officescore.label.predict.LoadedPredictor, or None
    reply = clicker.segment("photo.jpg", context["result"], task="17")
    reply.mask, reply.class_name, reply.method, reply.note

The photo's features stay cached between clicks on the same task and photo (`clicker.cache`), so a
second click runs only the heads. The model answers when it is an eager torchvision Mask R-CNN that
knows the chosen class and finds that class at the click; otherwise GrabCut answers and `note` says
why. The model's mask is then finished by GrabCut started from its probabilities (`polish`; the model's
box is no hard limit), with the clicks as fixed seeds: that is also how clicks correct it (a positive
click outside the mask, a negative one inside). A negative click left inside the mask removes the part
of it nearer to that click than to any positive click.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from officescore.errors import BadImageError
from officescore.label.interactive.grabcut import grabcut, keep_clicked_parts
from officescore.label.interactive.heads import Answer, FeatureCache, Heads, supports
from officescore.label.interactive.prompt import Click, Prompt, parse_context

MODEL, GRABCUT = "model", "grabcut"


@dataclass
class Reply:
    """One mask (binary uint8 HxW, at the size Label Studio gave) and how it was made."""

    mask: np.ndarray
    class_name: str
    method: str  # "model" or "grabcut"
    note: str | None = None  # why GrabCut answered although there is a model
    score: float | None = None  # the model's probability of the class for the mask's box

    @property
    def width(self) -> int:
        return int(self.mask.shape[1])

    @property
    def height(self) -> int:
        return int(self.mask.shape[0])


class Clicker:
    """Answers clicks and boxes on photos with `loaded`'s model (None: GrabCut only)."""

    def __init__(
        self, loaded: Any = None, refine: bool = True, cache: FeatureCache | None = None, polish: bool = True
    ) -> None:
        self.loaded = loaded
        self.refine = refine
        # GrabCut always finishes the model's mask (not only when clicks disagree): on bench/click.py's
        # scenes it raised one click's mean IoU 0.63 -> 0.72 and a jittered box's 0.69 -> 0.74.
        self.polish = polish
        self.cache = cache if cache is not None else FeatureCache()
        predictor = getattr(loaded, "predictor", None)
        model = getattr(predictor, "model", None)
        self.heads = (
            Heads(model, predictor.device, predictor.precision, self.cache) if supports(model) else None
        )
        self._photos: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()  # one click at a time: the heads use every core anyway

    @property
    def version(self) -> str:
        return str(getattr(self.loaded, "version", "") or "") if self.heads is not None else GRABCUT

    def describe(self) -> str:
        """Who answers clicks, for the backend's start-up line."""
        if self.heads is not None:
            return f"clicks and boxes answered by {self.loaded.version} (GrabCut where it finds nothing)"
        if self.loaded is not None and getattr(self.loaded.predictor, "model", None) is not None:
            return f"clicks and boxes answered by GrabCut ({self.loaded.version} cannot run its heads alone)"
        return "clicks and boxes answered by GrabCut (no model yet)"

    def segment(
        self, photo: Path | str | bytes | np.ndarray, results: Sequence[Mapping[str, Any]], task: str = ""
    ) -> Reply:
        """The mask for Label Studio's context results (clicks in percent, a box) on `photo`."""
        prompt = parse_context({"result": list(results)})
        with self._lock:
            key, rgb = self._photo(photo, str(task))
            height, width = rgb.shape[:2]
            scaled = _scaled(prompt, width, height)
            reply = self._segment(key, rgb, scaled)
        if (reply.width, reply.height) != (prompt.width, prompt.height):  # Label Studio's size wins
            import cv2

            reply.mask = cv2.resize(
                reply.mask, (prompt.width, prompt.height), interpolation=cv2.INTER_NEAREST
            )
        return reply

    def _segment(self, key: tuple[str, str], rgb: np.ndarray, prompt: Prompt) -> Reply:
        height, width = rgb.shape[:2]
        name = prompt.class_name
        note = None
        answer: Answer | None = None
        if self.heads is not None:
            label = _label(self.loaded.predictor.label_names, name)
            if label is None:
                known = ", ".join(self.loaded.classes)
                note = f"the model does not know {name!r} (it knows {known}); GrabCut drew this mask"
            else:
                feats = self.heads.features((self.version, *key), rgb)
                if prompt.clicks:
                    answer = self.heads.click(feats, prompt.clicks, label, width, height, prompt.box)
                    where = "at this click"
                else:
                    answer = self.heads.box(
                        feats, prompt.box or (0, 0, width, height), label, width, height, self.refine
                    )
                    where = "in this box"
                if answer is not None and not answer.mask.any():
                    answer = None
                if answer is None:
                    note = f"the model finds no {name} {where}; GrabCut drew this mask"
        if answer is None:
            mask = grabcut(rgb, prompt.box, prompt.clicks)
            return Reply(_exclude(mask, prompt), name, GRABCUT, note)
        mask = answer.mask
        if self.polish or any(_at(mask, c) != c.positive for c in prompt.clicks):  # clicks correct it
            mask = grabcut(rgb, answer.box, prompt.clicks, prior=answer.probabilities)
        return Reply(_exclude(mask, prompt), name, MODEL, None, round(answer.fit, 4))

    def _photo(self, photo: Path | str | bytes | np.ndarray, task: str) -> tuple[tuple[str, str], np.ndarray]:
        """(task, sha256) and the photo as RGB uint8 (decoded once per key)."""
        if isinstance(photo, np.ndarray):
            rgb = np.ascontiguousarray(photo[:, :, :3], dtype=np.uint8)
            return (task, hashlib.sha256(rgb.tobytes()).hexdigest()), rgb
        data = photo if isinstance(photo, bytes) else _read(Path(photo))
        key = (task, hashlib.sha256(data).hexdigest())
        found = self._photos.get(key)
        if found is None:
            found = _decode(data, str(photo) if not isinstance(photo, bytes) else "the photo")
            self._photos[key] = found
            while len(self._photos) > self.cache.size:
                self._photos.popitem(last=False)
        self._photos.move_to_end(key)
        return key, found


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise BadImageError(f"{path}: cannot read the photo ({exc.strerror or exc})") from None


def _decode(data: bytes, name: str) -> np.ndarray:
    import io

    from PIL import Image, ImageOps, UnidentifiedImageError

    from officescore.images import MAX_PIXELS

    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > MAX_PIXELS:
                raise BadImageError(f"{name}: {image.width}x{image.height} is too large a photo")
            image.load()
            return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise BadImageError(f"{name}: not a readable image ({exc})") from None


def _label(names: Sequence[str | None], class_name: str) -> int | None:
    return next((i for i, n in enumerate(names) if n == class_name), None)


def _scaled(prompt: Prompt, width: int, height: int) -> Prompt:
    """The prompt in pixels of the decoded photo (Label Studio's original size may differ)."""
    if (width, height) == (prompt.width, prompt.height):
        return prompt
    sx, sy = width / prompt.width, height / prompt.height
    clicks = [Click(c.x * sx, c.y * sy, c.positive) for c in prompt.clicks]
    box = (
        None
        if prompt.box is None
        else (prompt.box[0] * sx, prompt.box[1] * sy, prompt.box[2] * sx, prompt.box[3] * sy)
    )
    return Prompt(prompt.class_name, width, height, clicks, box)


def _at(mask: np.ndarray, click: Click) -> bool:
    height, width = mask.shape
    return bool(mask[min(int(click.y), height - 1), min(int(click.x), width - 1)])


def _exclude(mask: np.ndarray, prompt: Prompt) -> np.ndarray:
    """A negative click still inside the mask removes the mask's pixels nearer to it than to every
    positive click (the box's centre stands in when there is none); then the clicked parts are kept."""
    inside = [c for c in prompt.negatives if _at(mask, c)]
    if not inside:
        return mask
    positives = prompt.positives
    if not positives and prompt.box is not None:
        x0, y0, x1, y1 = prompt.box
        positives = [Click((x0 + x1) / 2, (y0 + y1) / 2)]
    ys, xs = np.nonzero(mask)
    keep = np.ones(len(xs), dtype=bool)
    nearest_positive = np.full(len(xs), np.inf)
    for c in positives:
        nearest_positive = np.minimum(nearest_positive, (xs - c.x) ** 2 + (ys - c.y) ** 2)
    for c in inside:
        keep &= (xs - c.x) ** 2 + (ys - c.y) ** 2 >= nearest_positive
    out = np.zeros_like(mask)
    out[ys[keep], xs[keep]] = 1
    return keep_clicked_parts(out, prompt.positives)
