"""select's per-photo uncertainty is a sum over likely objects, so a photo with more unsure objects
ranks higher (the budget counts photos), and background-like proposals count for less."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from officescore.curate.features import TOP_PROPOSALS, ImageSignals, class_uncertainty, mask_uncertainty
from officescore.curate.select import combined_uncertainty

BIG = 8.0


def _proposals(unsure_objects: int, half_background: int = 0) -> torch.Tensor:
    """TOP_PROPOSALS logits over (background, desk, chair): `unsure_objects` surely objects but desk
    and chair tie; `half_background` background and desk tie; the rest surely background."""
    rows = [[-BIG, 0.0, 0.0]] * unsure_objects + [[0.0, 0.0, -BIG]] * half_background
    rows += [[BIG, 0.0, 0.0]] * (TOP_PROPOSALS - len(rows))
    return torch.tensor(rows)


def test_class_uncertainty_adds_up_over_unsure_objects() -> None:
    one, three = class_uncertainty(_proposals(1)), class_uncertainty(_proposals(3))
    assert abs(one - 1 / TOP_PROPOSALS) < 0.01 and abs(three - 3 / TOP_PROPOSALS) < 0.01
    # A proposal as likely background as desk is as unsure by margin, but half as likely an object.
    half = class_uncertainty(_proposals(0, half_background=2))
    assert abs(half - class_uncertainty(_proposals(1))) < 0.01
    for how in ("margin", "entropy"):
        assert 0.0 <= class_uncertainty(_proposals(TOP_PROPOSALS), how) <= 1.0


def test_mask_uncertainty_adds_up_over_detections() -> None:
    unsure = torch.zeros(2, 3, 4, 4)  # logit 0: p = 0.5 everywhere, one bit of entropy per pixel
    one = mask_uncertainty(unsure[:1], [1], [0.9])
    two = mask_uncertainty(unsure, [1, 2], [0.9, 0.9])
    assert abs(one - 0.9) < 1e-4 and abs(two - 1.8) < 1e-4
    sure = torch.full((2, 3, 4, 4), BIG)
    assert mask_uncertainty(sure, [1, 2], [0.9, 0.9]) < 0.01


def test_a_mask_term_near_zero_everywhere_does_not_outvote_the_classes() -> None:
    """Masks certain on every photo (sums 0.07 and 0.05, as a model with saturated masks gives): the
    photo whose classes are unsure ranks first. With masks that do differ, both terms count."""

    def signals(mask_sure: float, mask_unsure: float) -> list[ImageSignals]:
        return [
            ImageSignals(Path("sure.png"), np.ones(2), class_uncertainty=0.0001, mask_uncertainty=mask_sure),
            ImageSignals(Path("unsure.png"), np.ones(2), class_uncertainty=0.3, mask_uncertainty=mask_unsure),
        ]

    ranks = combined_uncertainty(signals(0.07, 0.05))
    assert ranks[1] > ranks[0]
    assert list(combined_uncertainty(signals(3.0, 0.5))) == [0.5, 0.5]  # one term each way


def test_class_uncertainty_is_divided_by_the_top_count_not_by_the_rows() -> None:
    """4 proposals, one of them an unsure object: 1/TOP_PROPOSALS (a photo with few proposals is not
    made more uncertain by having few), not 1/4."""
    rows = torch.tensor([[-BIG, 0.0, 0.0]] + [[BIG, 0.0, 0.0]] * 3)
    # margin: 1 - (0.5 - 0.5) = 1; entropy: ln 2 / ln 3 (a two-way tie among three outcomes)
    for how, unsure in (("margin", 1.0), ("entropy", np.log(2) / np.log(3))):
        value = class_uncertainty(rows, how)
        assert abs(value - unsure / TOP_PROPOSALS) < 0.005, (how, value)


def test_the_most_object_like_proposals_are_the_ones_counted() -> None:
    """TOP_PROPOSALS sure background rows, then one unsure object row: the object is among the top
    proposals (by objectness) and counts; the background rows hardly do."""
    rows = torch.tensor([[BIG, 0.0, 0.0]] * TOP_PROPOSALS + [[-BIG, 0.0, 0.0]])
    assert abs(class_uncertainty(rows) - 1 / TOP_PROPOSALS) < 0.01
    assert class_uncertainty(rows[:TOP_PROPOSALS]) < 0.01  # the background rows alone


def test_ranks_of_one_photo_and_of_ties() -> None:
    """A pool of one photo is as uncertain as it gets (1, not 0/0); tied photos share their rank."""
    one = [ImageSignals(Path("only.png"), np.ones(2), class_uncertainty=0.2)]
    assert list(combined_uncertainty(one)) == [1.0]
    tied = [
        ImageSignals(Path(f"{k}.png"), np.ones(2), class_uncertainty=u)
        for k, u in enumerate((0.1, 0.3, 0.3, 0.5))
    ]
    assert list(combined_uncertainty(tied)) == [0.0, 0.5, 0.5, 1.0]


def test_each_detection_is_measured_in_its_own_class_channel() -> None:
    """Mask logits sure in every channel but the chair's (logit 0: p = 0.5): a chair detection's
    mask is unsure, a desk's on the same proposal is not."""
    logits = torch.full((1, 3, 4, 4), BIG)
    logits[0, 2] = 0.0  # (background, desk, chair)
    assert abs(mask_uncertainty(logits, [2], [1.0]) - 1.0) < 1e-4
    assert mask_uncertainty(logits, [1], [1.0]) < 0.01
