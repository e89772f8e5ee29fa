"""Click or box -> one mask of the chosen class: the project's Mask R-CNN heads, else GrabCut.

    clicker = Clicker(loaded)                       # officescore.label.predict.LoadedPredictor, or None
    reply = clicker.segment("photo.jpg", context["result"], task="17")
    reply.mask, reply.class_name, reply.method, reply.note

The photo's features stay cached between clicks on the same task and photo (`clicker.cache`), so a
second click runs only the heads. The model answers when it is an eager torchvision Mask R-CNN that
knows the chosen class and finds that class at the click; otherwise GrabCut answers and `note` says
why. The first positive click (or the box) picks the model's mask; GrabCut, started from the
mask's probabilities, may then move only a band along its edge and, for each other click, the
region around that click (`polish="edges"`, `editable`); the clicks are fixed seeds (a positive
click outside the mask, a negative one inside). A negative click left inside the mask removes the
part of it near that click that is nearer to it than to any positive click.
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
from officescore.label.interactive.grabcut import grabcut
from officescore.label.interactive.heads import Answer, FeatureCache, Heads, supports
from officescore.label.interactive.prompt import Click, Prompt, parse_context

MODEL, GRABCUT = "model", "grabcut"
# How GrabCut finishes the model's mask: "edges" lets it move the mask's edge a little and redraw the
# regions around correcting clicks, the rest stays the model's; "always" lets it redraw everything;
# "never" only where a click disagrees with the mask.
POLISH = ("edges", "always", "never")
EDGE_BAND = 0.02  # "edges": GrabCut may move the mask's edge this share of the object's size (>= 2 px)
# A correcting click may change the mask around it: 3x its distance to the mask's edge, 6 px at least,
# a quarter of the object's size at most.
REACH_PER_DISTANCE = 3.0
MIN_REACH = 6.0  # px
CORRECTION_REACH = 0.25
# A mask filling less than this share of its box is no object but a speck: a barely trained model's
# desks (objects fill 16 % of their boxes at least in sample's scenes; those specks 0-6 %, IoU 0.04).
MIN_FILL = 0.1


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
        self,
        loaded: Any = None,
        refine: bool = True,
        cache: FeatureCache | None = None,
        polish: str = "edges",
    ) -> None:
        if polish not in POLISH:
            raise ValueError(f"polish {polish!r}: one of {', '.join(POLISH)}")
        self.loaded = loaded
        self.refine = refine
        # bench/click_to_mask.py with a well-trained model (docs/BENCHMARKS.md): GrabCut redrawing the
        # whole mask lowered one click's IoU 0.82 -> 0.79 and a box's 0.84 -> 0.78; moving only the
        # edge raised them to 0.9, and local corrections made every further click help.
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
                    # With local corrections the first positive click alone picks the model's mask,
                    # so a correction never swaps the object for another proposal (an Alt-click made
                    # before it points at no object).
                    picking = prompt.positives[:1] if self.polish == "edges" else prompt.clicks
                    answer = self.heads.click(feats, picking, label, width, height, prompt.box)
                    where = "at this click"
                else:
                    answer = self.heads.box(
                        feats, prompt.box or (0, 0, width, height), label, width, height, self.refine
                    )
                    where = "in this box"
                if answer is not None and _speck(answer.mask, prompt.box or answer.box):
                    answer = None
                if answer is None:
                    note = f"the model finds no {name} {where}; GrabCut drew this mask"
        if answer is None:
            mask = grabcut(rgb, prompt.box, prompt.clicks)
            return Reply(_exclude(mask, prompt), name, GRABCUT, note)
        mask = answer.mask
        disagree = [c for c in prompt.clicks if _at(mask, c) != c.positive]
        if self.polish == "edges":  # only the edge and the regions around correcting clicks may change
            picked = prompt.positives[:1]
            later = [c for c in prompt.clicks if c not in picked or c in disagree]
            free, near = editable(mask, answer.box, later)
            mask = grabcut(rgb, answer.box, prompt.clicks, answer.probabilities, free, near)
        elif self.polish == "always" or disagree:
            mask = grabcut(rgb, answer.box, prompt.clicks, prior=answer.probabilities)
        if not mask.any():  # GrabCut took all of a thin mask away: the model's own beats nothing
            mask = answer.mask
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
    import warnings

    from PIL import Image, ImageOps, UnidentifiedImageError

    from officescore.images import MAX_PIXELS, to_rgb

    try:
        with warnings.catch_warnings():
            # Pillow raises its own bomb error above 2x its limit, before our size check can.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                if image.width * image.height > MAX_PIXELS:
                    raise BadImageError(f"{name}: {image.width}x{image.height} is too large a photo")
                image.load()
                return np.asarray(to_rgb(ImageOps.exif_transpose(image)))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise BadImageError(f"{name}: too many pixels (possible decompression bomb)") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise BadImageError(f"{name}: not a readable image ({exc})") from None


def _speck(mask: np.ndarray, box: Sequence[float]) -> bool:
    """Whether the model's mask is empty or fills less than MIN_FILL of the box (the labeller's,
    else the model's)."""
    x0, y0, x1, y1 = box
    return float(mask.sum()) < MIN_FILL * max((x1 - x0) * (y1 - y0), 1.0)


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


def editable(
    mask: np.ndarray, box: Sequence[float], correcting: Sequence[Click]
) -> tuple[np.ndarray, np.ndarray]:
    """("edges" polish) where GrabCut may change the model's `mask` (its edge band and the regions
    around the correcting clicks), and the part of that around the clicks (HxW bool each)."""
    near = _around(correcting, mask, box)
    return _edge(mask, box) | near, near


def _edge(mask: np.ndarray, box: Sequence[float]) -> np.ndarray:
    """The band along the mask's edge, EDGE_BAND of the object's box's longer side wide (>= 2 px)."""
    import cv2

    reach = max(2, int(round(EDGE_BAND * max(box[2] - box[0], box[3] - box[1]))))
    kernel = np.ones((2 * reach + 1, 2 * reach + 1), np.uint8)
    binary = mask.astype(np.uint8)
    return (cv2.dilate(binary, kernel) - cv2.erode(binary, kernel)) > 0


def _around(clicks: Sequence[Click], mask: np.ndarray, box: Sequence[float]) -> np.ndarray:
    """Where correcting clicks may change `mask`: a square around each, as far as REACH_PER_DISTANCE
    times the click's distance to the mask's edge (a labeller clicks inside the wrong region, so the
    distance says how large it is), at least MIN_REACH px and at most CORRECTION_REACH of the
    object's box's longer side."""
    most = max(CORRECTION_REACH * max(box[2] - box[0], box[3] - box[1]), MIN_REACH)
    binary = mask.astype(np.uint8)
    free = np.zeros(mask.shape[:2], dtype=bool)
    for c in clicks:
        x, y = min(int(c.x), mask.shape[1] - 1), min(int(c.y), mask.shape[0] - 1)
        region = binary if binary[y, x] else 1 - binary  # the click's side of the edge
        distance = _to_edge(region, x, y, most / REACH_PER_DISTANCE)
        reach = min(max(REACH_PER_DISTANCE * distance, MIN_REACH), most)
        x0, y0 = max(int(c.x - reach), 0), max(int(c.y - reach), 0)
        free[y0 : max(int(np.ceil(c.y + reach)), 0), x0 : max(int(np.ceil(c.x + reach)), 0)] = True
    return free


def _to_edge(region: np.ndarray, x: int, y: int, enough: float) -> float:
    """OpenCV's distance (DIST_L2, 3x3) from pixel (x, y) of `region` (uint8, 1 on the click's side)
    to its nearest 0: as the whole photo's transform gives it (to float rounding) up to `enough`, and
    at least `enough` beyond. Only a window around the pixel is transformed (the whole of a 12 MP
    photo took 0.4 s): a 3x3 distance d has its point within d / 0.955 px in x and y (0.955: a
    straight step's weight), and no shorter path leaves that box."""
    import cv2

    reach = int(np.ceil(enough / 0.955)) + 2
    top, left = max(y - reach, 0), max(x - reach, 0)
    window = np.ascontiguousarray(region[top : y + reach + 1, left : x + reach + 1])
    return float(cv2.distanceTransform(window, cv2.DIST_L2, 3)[y - top, x - left])


def _at(mask: np.ndarray, click: Click) -> bool:
    height, width = mask.shape
    return bool(mask[min(int(click.y), height - 1), min(int(click.x), width - 1)])


def _exclude(mask: np.ndarray, prompt: Prompt) -> np.ndarray:
    """A negative click still inside the mask removes the mask's pixels around it (as far as a
    correcting click reaches) that are nearer to it than to every positive click (the box's centre
    stands in when there is none), and the bits that cut off near it; the rest of the mask stays."""
    import cv2

    inside = [c for c in prompt.negatives if _at(mask, c)]
    if not inside:
        return mask
    positives = prompt.positives
    if not positives and prompt.box is not None:
        x0, y0, x1, y1 = prompt.box
        positives = [Click((x0 + x1) / 2, (y0 + y1) / 2)]
    ys, xs = np.nonzero(mask)
    near = _around(inside, mask, (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1))
    keep = np.ones(len(xs), dtype=bool)
    nearest_positive = np.full(len(xs), np.inf)
    for c in positives:
        nearest_positive = np.minimum(nearest_positive, (xs - c.x) ** 2 + (ys - c.y) ** 2)
    for c in inside:
        keep &= ~near[ys, xs] | ((xs - c.x) ** 2 + (ys - c.y) ** 2 >= nearest_positive)
    out = np.zeros_like(mask)
    out[ys[keep], xs[keep]] = 1
    count, parts = cv2.connectedComponents(out.astype(np.uint8), connectivity=8)
    height, width = mask.shape
    clicked = {int(parts[min(int(c.y), height - 1), min(int(c.x), width - 1)]) for c in prompt.positives}
    for part in set(range(1, count)) - clicked:
        if near[parts == part].all():  # a scrap the cut left beside the negative click
            out[parts == part] = 0
    return out
