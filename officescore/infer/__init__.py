"""Inference: the `Predictor`, the `Detection` records it returns, drawing and the office score.

Modules, each importing only those above it:
- `detection`: `Detection` and `ImageResult`, plain records (no torch).
- `score`: the rubric (TOML) -> `OfficeScore` with its breakdown.
- `drawing`: the annotated picture for `score --save-dir` and the web page.
- `accel/`: the one fast inference path (precision, BatchNorm folding, Winograd, int8, forward).
- `predictor`: `Predictor` (checkpoint, TorchScript export or zero-shot COCO model over photos) and
  `score_photos`.

Names are resolved on first use, so `from officescore.infer import Detection` does not import
torch; `officescore.infer.Predictor` keeps working as the public entry point.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "Detection": "detection",
    "ImageResult": "detection",
    "Predictor": "predictor",
    "PhotoScore": "predictor",
    "COCO_SOURCE": "predictor",
    "MASK_THRESHOLD": "predictor",
    "coco_categories": "predictor",
    "coco_label_names": "predictor",
    "default_batch_size": "predictor",
    "default_model_source": "predictor",
    "model_source": "predictor",
    "load_coco_mapping": "predictor",
    "ScoringStopped": "predictor",
    "score_photos": "predictor",
    "write_csv": "predictor",
    "OfficeScore": "score",
    "Rubric": "score",
    "score_office": "score",
}
# Photo inputs live with the image helpers (no torch); re-exported here for existing callers.
_ELSEWHERE = {"expand_inputs": "officescore.images", "IMAGE_SUFFIXES": "officescore.images"}

__all__ = sorted([*_HOMES, *_ELSEWHERE])


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        module = importlib.import_module(f"{__name__}.{_HOMES[name]}")
    elif name in _ELSEWHERE:
        module = importlib.import_module(_ELSEWHERE[name])
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(module, name)
