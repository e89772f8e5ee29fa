"""What inference returns: one `Detection` per object and one `ImageResult` per photo.

Plain records with no torch in them, so drawing, scoring, Label Studio and curation can use them
without importing the model code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Detection:
    class_name: str
    score: float
    box: list[float]  # x0, y0, x1, y1 in pixels of the (EXIF-oriented) photo
    mask: dict[str, Any]  # COCO compressed RLE, str counts
    share: float  # mask area / image area
    # Predicted per-object attributes of its class (officescore.attributes: True/False for yes/no,
    # the value's name for a choice) and each value's probability; empty without an attribute head.
    attributes: dict[str, Any] = field(default_factory=dict)
    attribute_scores: dict[str, float] = field(default_factory=dict)
    # How sure the mask head is of the outline (mean probability inside the mask); None: boxes only.
    mask_score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "class": self.class_name,
            "score": round(self.score, 4),
            "box": [round(v, 2) for v in self.box],
            "share": round(self.share, 4),
            "mask_score": None if self.mask_score is None else round(self.mask_score, 4),
            "attributes": dict(self.attributes),
            "attribute_scores": {k: round(v, 4) for k, v in self.attribute_scores.items()},
            "mask": self.mask,
        }

    def label(self) -> str:
        """`chair 0.91 armrests`: class, score and the attributes as they read (yes/no by name)."""
        return " ".join(filter(None, [self.class_name, f"{self.score:.2f}", self.attributes_text()]))

    def attributes_text(self) -> str:
        """`armrests`, `no armrests`, `floor`: the attributes as they read, "" when there are none."""
        words = []
        for name, value in self.attributes.items():
            if isinstance(value, bool):
                words.append(name if value else f"no {name}")
            else:
                words.append(str(value))
        return " ".join(words)


# A photo whose shorter side is under this is enlarged many times to the model's input size (25x
# to 800 px from 32): a blur of a few pixels, whose detections say nothing about an office.
TOO_SMALL_SIDE = 32


@dataclass
class ImageResult:
    source: str  # the path as given (or "<image N>" for in-memory images)
    width: int = 0
    height: int = 0
    detections: list[Detection] = field(default_factory=list)
    error: str | None = None
    # Set when the model returned exactly its cap of detections per photo (torchvision's
    # `box_detections_per_img`) at the threshold it ran with: the cap and the lowest score kept.
    cap: int | None = None
    cap_lowest: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def too_small(self) -> str | None:
        """ "too small: WxH px" for a photo read whose shorter side is under TOO_SMALL_SIDE, else None."""
        if self.ok and self.width and min(self.width, self.height) < TOO_SMALL_SIDE:
            return f"too small: {self.width}x{self.height} px"
        return None

    def capped(self, conf: float) -> int | None:
        """The model's cap when it may have cut objects scoring >= conf (it kept exactly its cap,
        the lowest at or above conf: more above conf may have been dropped), else None."""
        return self.cap if self.cap is not None and self.cap_lowest >= conf else None

    def cap_note(self, conf: float) -> str | None:
        """What `score` and the page say of a photo the cap may have cut (None: it did not)."""
        cap = self.capped(conf)
        if cap is None:
            return None
        return (
            f"{cap} objects found, the most this model keeps per photo (lowest score {self.cap_lowest:.2f}, "
            f"threshold {conf:g}): objects above the threshold may be missing"
        )

    def above(self, conf: float) -> ImageResult:
        """The same result keeping only detections with score >= conf."""
        kept = [d for d in self.detections if d.score >= conf]
        return ImageResult(self.source, self.width, self.height, kept, self.error, self.cap, self.cap_lowest)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.source,
            "width": self.width,
            "height": self.height,
            "error": self.error,
            "detections": [d.to_dict() for d in self.detections],
        }
