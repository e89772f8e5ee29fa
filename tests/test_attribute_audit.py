"""audit's wrong_attribute issue (issue 24): a labelled attribute a confident prediction contradicts."""

from __future__ import annotations

import numpy as np

from officescore import masks as masklib
from officescore.curate.labels import Label
from officescore.curate.match import Prediction, match_image
from officescore.curate.scoring import KINDS, calibrate, image_issues


def _chair() -> np.ndarray:
    mask = np.zeros((120, 120), dtype=np.uint8)
    mask[20:90, 30:80] = 1
    return mask


def _issue(label_attributes: dict, predicted: dict, probability: float = 0.95):  # noqa: ANN202
    rle = masklib.encode(_chair())
    label = Label(1, "chair", rle, list(masklib.bbox(rle)), 0, label_attributes)
    pred = Prediction(
        0, "chair", 0.9, rle, list(masklib.bbox(rle)), predicted, dict.fromkeys(predicted, probability)
    )
    match = match_image([label], [pred], tol=2)
    (issue,) = image_issues(match, 3, calibrate([match], ["chair"]))
    return issue


def test_a_contradicted_label_attribute_is_a_wrong_attribute_issue() -> None:
    assert "wrong_attribute" in KINDS
    issue = _issue({"armrests": False}, {"armrests": True})
    assert issue.kind == "wrong_attribute"
    assert issue.score == round(0.9 * 0.95, 6)
    assert issue.attribute == {"name": "armrests", "label": False, "predicted": True}
    assert issue.suggested_class == "chair"


def test_of_two_contradicted_attributes_the_surer_one_is_reported() -> None:
    rle = masklib.encode(_chair())
    label = Label(1, "chair", rle, list(masklib.bbox(rle)), 0, {"armrests": False, "wheels": False})
    predicted = {"armrests": True, "wheels": True}
    pred = Prediction(
        0, "chair", 0.9, rle, list(masklib.bbox(rle)), predicted, {"armrests": 0.6, "wheels": 0.95}
    )
    match = match_image([label], [pred], tol=2)
    (issue,) = image_issues(match, 3, calibrate([match], ["chair"]))
    assert issue.attribute == {"name": "wheels", "label": False, "predicted": True}
    assert issue.score == round(0.9 * 0.95, 6)


def test_agreeing_unlabelled_or_unsure_values_are_not() -> None:
    assert "wrong_attribute" not in _issue({"armrests": True}, {"armrests": True}).kinds
    assert "wrong_attribute" not in _issue({"armrests": "yes"}, {"armrests": True}).kinds  # text form
    assert "wrong_attribute" not in _issue({"armrests": "No"}, {"armrests": False}).kinds  # any case
    assert "wrong_attribute" not in _issue({"armrests": True}, {"armrests": "TRUE"}).kinds
    assert (
        "wrong_attribute" not in _issue({}, {"armrests": True}).kinds
    )  # not labelled: nothing to contradict
    assert "wrong_attribute" not in _issue({"armrests": False}, {}).kinds  # a model without the head
    weak = _issue({"armrests": False}, {"armrests": True}, probability=0.5)
    assert weak.kinds["wrong_attribute"] == round(0.9 * 0.5, 6)  # less sure: ranked lower


def test_the_contact_sheet_caption_says_the_label_and_the_model_value() -> None:
    from officescore.curate.sheets import caption

    issue = _issue({"armrests": False}, {"armrests": True})
    text = caption(issue, 3, "images/office_0007.jpg")
    assert text == f"#3 wrong_attribute {issue.score:.2f} chair armrests: no -> yes (office_0007.jpg)"
    lamp = _issue({"kind": "desk"}, {"kind": "floor"})
    assert "kind: desk -> floor" in caption(lamp, 1, "a.jpg")
    assert len(caption(issue, 3, "images/" + "x" * 200 + ".jpg")) == 70  # what a tile holds


def test_the_audit_table_says_which_attribute_and_its_two_values() -> None:
    """The table's "suggested" column showed only the class ("chair" for a chair), so a
    wrong_attribute row told the reader nothing to change."""
    from officescore.cli.audit import suggested

    row = {"kind": "wrong_attribute", "suggested_class": "chair"}
    assert suggested({**row, "attribute": {"name": "armrests", "label": True, "predicted": False}}) == (
        "armrests: yes -> no"
    )
    assert suggested({**row, "attribute": {"name": "kind", "label": "desk", "predicted": "floor"}}) == (
        "kind: desk -> floor"
    )
    assert suggested({"kind": "wrong_class", "suggested_class": "mug"}) == "mug"
    assert suggested({"kind": "spurious", "suggested_class": None}) == "-"
