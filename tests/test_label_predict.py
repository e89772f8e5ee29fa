"""officescore.label.predict by hand, without a model: which file `--model` names, the threshold a
run's suggest.json hands on, how it is said, and `detect`'s scoring by the suggestion score."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from officescore.errors import ModelError
from officescore.infer.detection import Detection, ImageResult
from officescore.label.predict import (
    COCO_VERSION,
    SUGGEST_FILE,
    LoadedPredictor,
    as_suggestions,
    detect,
    model_version,
    own_threshold,
    resolve_model,
    suggestion_threshold,
    threshold_words,
)


def test_coco_is_named_in_any_case_and_a_missing_file_is_one_clear_error(tmp_path: Path) -> None:
    assert resolve_model("COCO") == resolve_model("coco") == "coco" and model_version("Coco") == COCO_VERSION
    with pytest.raises(ModelError, match=r"missing\.pt: no such model file; pass .* or `coco`"):
        resolve_model(tmp_path / "missing.pt")


def test_a_suggestion_scoring_exactly_the_threshold_is_shown() -> None:
    found = ImageResult(
        "a.png",
        4,
        4,
        [Detection("desk", 0.5, [0, 0, 2, 2], {}, 0.25), Detection("lamp", 0.4999, [0, 0, 2, 2], {}, 0.25)],
    )
    assert [d.class_name for d in as_suggestions(found, 0.5).detections] == ["desk"]


def _job_run(tmp_path: Path, **record: Any) -> tuple[Path, str]:
    """A best.pt a `label backend --train` job wrote, and its run's suggest.json holding `record`
    (model_version: these weights' version unless given)."""
    best = tmp_path / "label-job0001" / "weights" / "best.pt"
    best.parent.mkdir(parents=True)
    best.write_bytes(b"weights")
    version = model_version(best)
    (best.parent.parent / SUGGEST_FILE).write_text(json.dumps({"model_version": version, **record}))
    return best, version


def test_a_runs_own_threshold_is_handed_on_only_for_its_weights_on_the_suggestion_score(
    tmp_path: Path,
) -> None:
    best, version = _job_run(tmp_path, conf=0.41, by_mask=True)
    assert own_threshold(best, version) == 0.41
    assert suggestion_threshold(best, version, None) == (0.41, True)
    assert own_threshold(best, "label-job0001-best-00000000") is None  # another best.pt since


@pytest.mark.parametrize(
    "record",
    [
        {"conf": 0.41},  # found on the class score (before mask scores)
        {"conf": 0.41, "by_mask": False},
        {"conf": -0.1, "by_mask": True},
        {"conf": 1.5, "by_mask": True},
        {"conf": "0.41", "by_mask": True},
    ],
)
def test_a_threshold_not_on_the_suggestion_score_or_out_of_range_is_none(
    tmp_path: Path, record: dict
) -> None:
    best, version = _job_run(tmp_path, **record)
    assert own_threshold(best, version) is None
    assert suggestion_threshold(best, version, None) == (0.3, False)  # DEFAULT_CONF on the class score


class _Scores:
    """A predictor whose every photo holds the detections given (class score, mask score)."""

    def __init__(self, conf: float, detections: list[Detection]) -> None:
        self.conf, self.detections = conf, detections

    def predict(self, paths: list[Path], conf: float | None = None, **options: Any) -> list[ImageResult]:
        floor = self.conf if conf is None else conf  # the class score, as Predictor filters it
        return [ImageResult(str(p), 4, 4, [d for d in self.detections if d.score >= floor]) for p in paths]


def test_detect_scores_by_the_suggestion_score_at_the_threshold_asked(tmp_path: Path) -> None:
    """0.9 x 0.5² = 0.225 and 0.6 x 0.95² = 0.5415: asked for 0.2, both show; at the model's own
    0.3 only the second; a model thresholded on the class score shows both at their class scores."""
    detections = [
        Detection("desk", 0.9, [0, 0, 2, 2], {}, 0.25, mask_score=0.5),
        Detection("chair", 0.6, [0, 0, 2, 2], {}, 0.25, mask_score=0.95),
    ]
    by_mask = LoadedPredictor(_Scores(0.3, detections), "best.pt", "v", by_mask=True)
    (asked,) = detect(by_mask, [Path("a.png")], conf=0.2)
    assert [(d.class_name, round(d.score, 4)) for d in asked.detections] == [
        ("desk", 0.225),
        ("chair", 0.5415),
    ]
    (own,) = detect(by_mask, [Path("a.png")])
    assert [d.class_name for d in own.detections] == ["chair"]
    assert threshold_words(by_mask) == "suggests class x mask score² >= 0.30"
    by_class = LoadedPredictor(_Scores(0.3, detections), "best.pt", "v")
    (plain,) = detect(by_class, [Path("a.png")])
    assert [(d.class_name, d.score) for d in plain.detections] == [("desk", 0.9), ("chair", 0.6)]
    assert threshold_words(by_class) == "suggests scores >= 0.30"
