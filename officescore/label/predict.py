"""A model for the labelling commands: which file it is, its version name, and its detections.

Every prediction goes through `officescore.infer.Predictor` (the one fast path for all commands).
`--model` may name a checkpoint, a TorchScript export, `coco`, a run folder (`runs/train/NAME`:
its `weights/best.pt`) or a folder of runs (`runs/train`: the newest `best.pt` in it).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from officescore.attributes import AttributeSchema
from officescore.errors import ModelError
from officescore.progress import SILENT, Reporter

COCO_VERSION = "coco-maskrcnn_resnet50_fpn_v2"
NO_MODEL = "none"  # `label backend` on a runs folder with no run yet: nothing suggested, GrabCut clicks


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
    from officescore.runs import best_checkpoint_in

    if str(model).lower() == COCO_SOURCE:
        return COCO_SOURCE
    path = Path(model)
    if str(model) == NO_MODEL and not path.exists():  # what an empty RunsFolder resolved to
        return NO_MODEL
    if path.is_dir():
        found = best_checkpoint_in(path)
        if found is None and isinstance(model, RunsFolder):
            return NO_MODEL
        if found is None:
            raise ModelError(
                f"--model {path}: no weights/best.pt in this folder or its runs; "
                "train one with `officescore train` or pass a checkpoint file"
            )
        return found
    if not path.is_file():
        raise ModelError(f"--model {path}: no such checkpoint; pass a .pt file, a run folder or `coco`")
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


def load_predictor(
    model: str | Path,
    device: str = "auto",
    conf: float = 0.3,
    img_size: int | None = None,
    precision: str = "auto",
    calibration: Iterable[str | Path] = (),
) -> LoadedPredictor:
    from officescore.infer import Predictor

    source = resolve_model(model)
    version = model_version(source)
    if source == NO_MODEL:
        return LoadedPredictor(NoModel(), source, version)
    return LoadedPredictor(
        Predictor.load(source, device, conf, img_size, precision, calibration=calibration),
        source,
        version,
    )


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
) -> list[Any]:
    """`ImageResult`s for the photos, in order (a photo that cannot be read has `error` set)."""
    return loaded.predictor.predict(list(paths), batch_size=batch_size, conf=conf, reporter=reporter)
