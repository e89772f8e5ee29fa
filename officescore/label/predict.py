"""A model for the labelling commands: which file it is, its version name, and its detections.

Every prediction goes through `officescore.infer.Predictor` (the one fast path for all commands).
`--model` may name a checkpoint, a TorchScript export, `coco`, a run folder (`runs/train/NAME`:
its `weights/best.pt`) or a folder of runs (`runs/train`: the newest `best.pt` in it).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from officescore.attributes import AttributeSchema
from officescore.errors import ModelError
from officescore.progress import SILENT, Reporter

COCO_VERSION = "coco-maskrcnn_resnet50_fpn_v2"
NO_MODEL = "none"  # `label backend` on a runs folder with no run yet: nothing suggested, GrabCut clicks
# Lower than score's 0.5: a labeller deletes a wrong suggestion faster than drawing a missed one.
DEFAULT_CONF = 0.3
# In a run folder a `label backend --train` job wrote: the threshold it found for the run's best.pt.
SUGGEST_FILE = "suggest.json"


def suggestion_score(score: float, mask_score: float | None) -> float:
    """What a suggestion is shown and thresholded by: its class score times the square of its mask
    score (`Detection.mask_score`, SOLOv2's "maskness"). Most suggestions labellers do not keep are
    redrawn outlines of the right class at a high class score (docs/BENCHMARKS.md); a sure desk
    whose mask misses its legs ranks below a sure, well-outlined one. Boxes only: the class score."""
    return score if mask_score is None else score * mask_score**2


def as_suggestions(result: Any, conf: float) -> Any:
    """An `ImageResult` with its detections scored by `suggestion_score`, those below `conf` left out."""
    from dataclasses import replace

    scored = [replace(d, score=suggestion_score(d.score, d.mask_score)) for d in result.detections]
    return replace(result, detections=[d for d in scored if d.score >= conf])


class RunsFolder(str):
    """A `--model` folder that may hold no trained run yet (`label backend` before the first training):
    it resolves to NO_MODEL until a best.pt appears in it."""


def resolve_model(model: str | Path) -> Path | str:
    """The checkpoint file `--model` names right now (run folders resolve to their newest best.pt)."""
    from officescore.infer import COCO_SOURCE
    from officescore.runs import model_file, no_model_file

    if str(model).lower() == COCO_SOURCE:
        return COCO_SOURCE
    if str(model) == NO_MODEL and not Path(model).exists():  # what an empty RunsFolder resolved to
        return NO_MODEL
    try:
        path = model_file(model, option="--model")
    except ModelError:
        if isinstance(model, RunsFolder):  # `label backend` before its first training
            return NO_MODEL
        raise
    if not path.is_file():
        raise no_model_file(path, "--model", coco=True)
    return path


def model_version(source: Path | str) -> str:
    """A name for the exact weights: `<run>-<file stem>-<sha256[:8]>` (or `<stem>-<sha>` outside a run)."""
    if str(source).lower() == "coco":
        return COCO_VERSION
    if str(source) == NO_MODEL:
        return NO_MODEL
    path = Path(source)
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    name = path.stem
    if path.parent.name == "weights" and path.parent.parent.name:
        name = f"{path.parent.parent.name}-{name}"
    return f"{name}-{digest.hexdigest()[:8]}"


@dataclass
class LoadedPredictor:
    """A predictor with the file it came from and that file's version name."""

    predictor: Any  # officescore.infer.Predictor
    source: Path | str
    version: str
    # Suggestions shown by `suggestion_score` (at a threshold found on it), not by class score.
    by_mask: bool = False

    @property
    def classes(self) -> list[str]:
        return list(self.predictor.classes)


def own_threshold(source: Path | str, version: str) -> float | None:
    """The threshold on the suggestion score that the `label backend --train` job which trained
    `source` found for it (`SUGGEST_FILE` in its run folder), if any and for these very weights."""
    path = Path(source)
    if path.parent.name != "weights":
        return None
    try:
        found = json.loads((path.parent.parent / SUGGEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(found, dict) or found.get("model_version") != version or not found.get("by_mask"):
        return None  # another best.pt since, or a threshold on the class score
    conf = found.get("conf")
    return float(conf) if isinstance(conf, (int, float)) and 0.0 <= conf <= 1.0 else None


def load_predictor(
    model: str | Path,
    device: str = "auto",
    conf: float | None = 0.3,
    img_size: int | None = None,
    precision: str = "auto",
    calibration: Iterable[str | Path] = (),
) -> LoadedPredictor:
    """The model `model` names, suggesting at `conf` on the class score; None: as `label backend`
    suggests a trained model's detections, at the threshold its job found on the suggestion score
    (`own_threshold`), else at DEFAULT_CONF on the class score."""
    from officescore.infer import Predictor

    source = resolve_model(model)
    version = model_version(source)
    if source == NO_MODEL:
        return LoadedPredictor(NoModel(), source, version)
    threshold, by_mask = suggestion_threshold(source, version, conf)
    return LoadedPredictor(
        Predictor.load(source, device, threshold, img_size, precision, calibration=calibration),
        source,
        version,
        by_mask=by_mask,
    )


def suggestion_threshold(source: Path | str, version: str, conf: float | None) -> tuple[float, bool]:
    """The threshold `source` suggests at and whether on the suggestion score: `conf` on the class
    score when given, else its own (`own_threshold`), else DEFAULT_CONF on the class score."""
    if conf is not None:
        return conf, False
    own = own_threshold(source, version)
    return (DEFAULT_CONF, False) if own is None else (own, True)


def threshold_words(loaded: LoadedPredictor) -> str:
    """What a suggestion needs, in words: `suggests scores >= 0.30`, or at a threshold on the
    suggestion score `suggests class x mask score² >= 0.21`."""
    conf = getattr(loaded.predictor, "conf", None)
    if conf is None:  # NoModel
        return "suggests nothing"
    return suggests_words(float(conf), loaded.by_mask)


def threshold_record(loaded: LoadedPredictor) -> dict[str, Any] | None:
    """The threshold as `--json` reports it: {"conf", "by_mask"}; None for no model (`--model none`)."""
    conf = getattr(loaded.predictor, "conf", None)
    return None if conf is None else {"conf": conf, "by_mask": loaded.by_mask}


def suggests_words(conf: float, by_mask: bool) -> str:
    """`suggests scores >= 0.30`, or on the suggestion score `suggests class x mask score² >= 0.21`."""
    return f"suggests {'class x mask score²' if by_mask else 'scores'} >= {conf:.2f}"


class NoModel:
    """The predictor of a backend with no trained model yet: every photo gets no detections."""

    model = None
    classes: list[str] = []
    label_names: list[str | None] = [None]
    attributes = AttributeSchema()  # no attribute head either

    def predict(self, inputs: Sequence[Any], **options: Any) -> list[Any]:
        from officescore.infer.detection import ImageResult

        return [ImageResult(str(item)) for item in inputs]


def detect(
    loaded: LoadedPredictor,
    paths: Sequence[Path],
    conf: float | None = None,
    batch_size: int = 2,
    reporter: Reporter = SILENT,
    workers: int | None = None,
) -> list[Any]:
    """`ImageResult`s for the photos, in order (a photo that cannot be read has `error` set); a model
    that suggests by the suggestion score (`by_mask`) is scored and thresholded by it. `workers`:
    the predictor's decoding processes (None: its default; `label backend`, threaded, uses none)."""
    results = loaded.predictor.predict(
        list(paths), batch_size=batch_size, conf=conf, reporter=reporter, workers=workers
    )
    if loaded.by_mask:
        results = [as_suggestions(r, conf if conf is not None else loaded.predictor.conf) for r in results]
    return results
