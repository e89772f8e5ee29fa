"""`select` on a TorchScript export (officescore's own exporter): no forward hooks, so it falls back to
detection-score entropy and thumbnails, says so, and still respects the budget and puts the photo
the model is unsure about first."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from cpus import AVX2_ONLY
from scoremodels import TINY_KWARGS, controlled_model

from officescore import DEFAULT_CLASSES
from officescore.curate.features import image_signals
from officescore.curate.select import select
from officescore.export import export_model
from officescore.infer import Predictor
from officescore.model import save_checkpoint
from officescore.sample import render_scene


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[Path]]:
    """(checkpoint, its TorchScript export, [sure, unsure, two more scenes]) of a model whose classifier
    is sure on `sure` (desk) and torn between desk and chair on `unsure`."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        root = tmp_path_factory.mktemp("select_ts")
        scenes = [render_scene(seed, size=96).image for seed in (7, 8, 9, 10)]
        paths = []
        for name, image in zip(("sure", "unsure", "other_a", "other_b"), scenes, strict=True):
            paths.append(root / f"{name}.png")
            image.save(paths[-1])
        checkpoint = root / "controlled.pt"
        save_checkpoint(checkpoint, model=controlled_model(scenes[0], scenes[1]).state_dict(),
                        arch="maskrcnn_resnet18_fpn", classes=list(DEFAULT_CLASSES),
                        model_kwargs=dict(TINY_KWARGS), epoch=0)  # fmt: skip
        result = export_model(checkpoint, "torchscript", sample=paths[1])
        return checkpoint, result.path, paths
    finally:
        torch.set_num_threads(threads)


def test_torchscript_falls_back_to_score_entropy_and_says_so(exported: tuple[Path, Path, list[Path]]) -> None:
    _, scripted, paths = exported
    predictor = Predictor.load(scripted, device="cpu", conf=0.0)
    assert predictor.kind == "torchscript"
    signals = image_signals(predictor, paths[:2])
    assert all(s.fallback for s in signals)
    assert all(s.feature is not None and s.feature.shape == (3 * 16 * 16,) for s in signals)  # thumbnails
    assert all(s.mask_uncertainty == 0.0 for s in signals)  # no mask logits without hooks
    # Score entropy: the desk/chair tie on `unsure` scores near 0.5 each, `sure` has confident desks.
    assert signals[0].class_uncertainty < 0.3 < signals[1].class_uncertainty, signals

    for order in (paths[:2], paths[1::-1]):  # whatever the input order, the unsure photo comes first
        run = select(order, scripted, budget=1, device="cpu")
        assert [c.path for c in run.chosen] == [paths[1]]
        assert any("TorchScript export takes no hooks" in note for note in run.notes), run.notes

    # A larger pool: the budget holds, and the first pick is the pool's most uncertain photo by score entropy.
    entropy = {s.path: s.class_uncertainty for s in image_signals(predictor, paths)}
    run = select(paths[::-1], scripted, budget=2, device="cpu")
    assert len(run.chosen) == 2 and [c.rank for c in run.chosen] == [1, 2]
    assert run.chosen[0].path == max(entropy, key=entropy.__getitem__)
    assert run.chosen[0].uncertainty == 1.0 and run.chosen[0].class_uncertainty == pytest.approx(
        max(entropy.values())
    )
    assert any("TorchScript export takes no hooks" in note for note in run.notes), run.notes


def test_the_checkpoint_of_the_same_model_uses_its_hooks(
    cpu_flags: Any, exported: tuple[Path, Path, list[Path]]
) -> None:
    checkpoint, _, paths = exported
    cpu_flags(AVX2_ONLY)  # `auto` = fp32, as on the AVX2 CPU the thresholds were measured on
    signals = image_signals(Predictor.load(checkpoint, device="cpu", conf=0.0), paths[:2])
    assert not any(s.fallback for s in signals)
    assert signals[0].feature is not None and signals[0].feature.shape != (3 * 16 * 16,)  # FPN pooled
    assert signals[0].class_uncertainty < 0.05 < 0.1 < signals[1].class_uncertainty, signals
    run = select(paths[:2], checkpoint, budget=1, device="cpu")
    assert len(run.chosen) == 1 and not any("TorchScript" in note for note in run.notes)


def test_torchscript_score_entropy_is_over_the_labelled_classes_detections(
    exported: tuple[Path, Path, list[Path]],
) -> None:
    """--labelled names fewer classes than the TorchScript model knows: the fallback's score entropy is
    the mean over the detections of the data set's classes, not diluted by the others' (weighing 0)."""
    _, scripted, paths = exported
    predictor = Predictor.load(scripted, device="cpu", conf=0.0)
    classes = [c for c in DEFAULT_CLASSES if c != "chair"]  # torn between desk and chair on `unsure`
    (signal,) = image_signals(predictor, paths[1:2], classes=classes)
    (result,) = predictor.predict(paths[1:2], conf=0.0)
    p = torch.tensor([d.score for d in result.detections if d.class_name != "chair"])
    assert signal.fallback and len(p) < len(result.detections)
    assert signal.class_uncertainty == pytest.approx(float(-(p * p.log2() + (1 - p) * (1 - p).log2()).mean()))
