"""The office score: rubric maths (caps, diminishing returns, essentials, bonuses), suggestions,
determinism and rubric validation. Pure: no model involved."""

from __future__ import annotations

from pathlib import Path

import pytest

from officescore.errors import ConfigError
from officescore.infer import Detection
from officescore.infer.score import Rubric, best_possible, count_classes, score_office

FULL_OFFICE = {"desk": 1, "chair": 1, "monitor": 2, "laptop": 1, "keyboard": 1, "mouse": 1, "bookshelf": 1}


@pytest.fixture(scope="module")
def rubric() -> Rubric:
    return Rubric.load()


def row(score, name):  # noqa: ANN001, ANN201 - tiny lookup helper
    return next(r for r in score.breakdown if r.class_name == name)


def test_default_rubric_full_marks_and_labels(rubric: Rubric) -> None:
    assert rubric.full_marks == pytest.approx(100.0)
    assert rubric.name == "default"
    full = score_office(FULL_OFFICE, rubric)
    assert full.total == 100.0
    assert full.label == "superbly equipped"
    assert full.missing_essentials == []
    empty = score_office({}, rubric)
    assert empty.total == 0.0
    assert empty.label == "not an office yet"
    assert empty.missing_essentials == ["a desk", "a chair", "a screen"]


@pytest.mark.parametrize(
    ("total", "label"),
    [
        (100.0, "superbly equipped"),
        (85.0, "superbly equipped"),
        (84.9, "well equipped"),
        (65.0, "well equipped"),
        (64.9, "adequately equipped"),
        (40.0, "adequately equipped"),
        (39.9, "sparsely equipped"),
        (15.0, "sparsely equipped"),
        (14.9, "not an office yet"),
        (0.0, "not an office yet"),
    ],
)
def test_default_labels_and_their_boundaries(rubric: Rubric, total: float, label: str) -> None:
    """README: 85 and up "superbly equipped", 65 "well", 40 "adequately", 15 "sparsely", else "not an
    office yet" (totals have one decimal, so 84.9 is the highest total below 85)."""
    assert rubric.label_for(total) == label


def test_labels_follow_the_total_of_real_offices(rubric: Rubric) -> None:
    offices = {
        "superbly equipped": FULL_OFFICE,  # 100
        "well equipped": {"desk": 1, "chair": 1, "monitor": 2},  # 66
        "adequately equipped": {"desk": 1, "chair": 1, "laptop": 1},  # 55
        "sparsely equipped": {"desk": 1, "chair": 1},  # 45, capped at 35: no screen
        "not an office yet": {"plant": 2},  # 6
    }
    for label, counts in offices.items():
        assert score_office(counts, rubric).label == label, counts


def test_cap_and_diminishing_returns(rubric: Rubric) -> None:
    base = {"desk": 1, "chair": 1}
    totals = [score_office({**base, "monitor": n}, rubric).total for n in range(4)]
    # desk 25 + chair 20 (a screen missing: capped at 35), then 14 for the first monitor, 7 for the
    # second (decay 0.5), nothing for a third (cap 2).
    assert totals == [35.0, 59.0, 66.0, 66.0]
    third = score_office({**base, "monitor": 3}, rubric)
    assert (row(third, "monitor").count, row(third, "monitor").counted) == (3, 2)
    assert row(third, "monitor").earned == 21.0
    assert row(third, "monitor").possible == 21.0
    plants = [row(score_office({"plant": n}, rubric), "plant").earned for n in range(5)]
    assert plants == [0.0, 4.0, 6.0, 7.0, 7.0]


def test_essentials_cap_the_total_and_a_screen_is_monitor_or_laptop(rubric: Rubric) -> None:
    no_chair = {k: v for k, v in FULL_OFFICE.items() if k != "chair"}
    capped = score_office(no_chair, rubric)
    assert capped.missing_essentials == ["a chair"]
    assert capped.total == rubric.missing_essential_cap == 35.0
    with_laptop = score_office({"desk": 1, "chair": 1, "laptop": 1}, rubric)
    with_monitor = score_office({"desk": 1, "chair": 1, "monitor": 1}, rubric)
    assert with_laptop.missing_essentials == with_monitor.missing_essentials == []
    assert (with_laptop.total, with_monitor.total) == (55.0, 59.0)
    assert row(with_laptop, "laptop").essential and row(with_laptop, "monitor").essential
    assert not row(with_laptop, "keyboard").essential


def test_bonuses_add_on_top_but_never_past_100(rubric: Rubric) -> None:
    no_bookshelf = {k: v for k, v in FULL_OFFICE.items() if k != "bookshelf"}
    assert score_office(no_bookshelf, rubric).total == 92.0
    assert score_office({**no_bookshelf, "lamp": 1}, rubric).total == 100.0  # lamp (8) replaces it
    assert score_office({**no_bookshelf, "mug": 1}, rubric).total == 94.0
    everything = score_office({**FULL_OFFICE, "lamp": 1, "plant": 3, "books": 1, "mug": 1}, rubric)
    assert everything.total == 100.0
    assert row(everything, "lamp").bonus and not row(everything, "desk").bonus


def test_suggestions_sorted_by_gain_and_exact(rubric: Rubric) -> None:
    counts = {"desk": 1, "chair": 1, "monitor": 1, "keyboard": 1, "mouse": 1}
    office = score_office(counts, rubric)
    assert office.total == 75.0
    texts = [s.text for s in office.suggestions]
    assert texts[:4] == [
        "add a laptop: +10",
        "add a bookshelf: +8",
        "add a desk lamp: +8",
        "add another monitor: +7",
    ]
    gains = [s.gain for s in office.suggestions]
    assert gains == sorted(gains, reverse=True)
    for suggestion in office.suggestions:  # each gain is exactly what adding that object does
        more = {**counts, suggestion.class_name: counts.get(suggestion.class_name, 0) + 1}
        assert score_office(more, rubric).total - office.total == pytest.approx(suggestion.gain)
    # Nothing is suggested for classes at their cap.
    assert not {"desk", "chair", "keyboard", "mouse"} & {s.class_name for s in office.suggestions}


def test_suggestions_include_lifting_the_essential_cap(rubric: Rubric) -> None:
    no_desk = {k: v for k, v in FULL_OFFICE.items() if k != "desk"}
    office = score_office(no_desk, rubric)
    assert office.suggestions[0].text == "add a desk: +65"
    # While the desk is missing, a lamp does not move the capped total, so it is not suggested.
    assert "lamp" not in {s.class_name for s in office.suggestions}
    assert score_office(FULL_OFFICE, rubric).suggestions == []


def test_two_missing_essentials_are_suggested_together(rubric: Rubric) -> None:
    # At the cap, neither a desk nor a chair alone lifts it: the advice is both, with their real gain.
    no_desk_no_chair = {"monitor": 2, "keyboard": 1, "mouse": 1, "lamp": 1, "plant": 1}
    office = score_office(no_desk_no_chair, rubric)
    assert office.total == 35.0
    assert [s.text for s in office.suggestions] == ["add a desk and a chair: +59"]
    both = score_office({**no_desk_no_chair, "desk": 1, "chair": 1}, rubric)
    assert both.total - office.total == pytest.approx(office.suggestions[0].gain)
    # Below the cap the single additions still count, after the bigger combined one.
    texts = [s.text for s in score_office({}, rubric).suggestions]
    assert texts[:2] == ["add a desk, a chair and a monitor: +59", "add a desk: +25"]


def test_detections_and_counts_agree_and_scoring_is_deterministic(rubric: Rubric) -> None:
    rle = {"size": [4, 4], "counts": "04`0"}
    names = ["chair", "desk", "monitor", "monitor", "monitor", "lamp", "cat"]
    detections = [Detection(n, 0.9, [0, 0, 1, 1], rle, 0.1) for n in names]
    from_detections = score_office(detections, rubric)
    from_counts = score_office({"chair": 1, "desk": 1, "monitor": 3, "lamp": 1, "cat": 1}, rubric)
    assert from_detections == from_counts
    assert score_office(list(reversed(detections)), rubric) == from_detections
    assert score_office([{"class": n} for n in names], rubric) == from_detections
    assert from_detections.unscored == {"cat": 1}
    assert score_office({"cat": 1, "dog": 0}, rubric).unscored == {"cat": 1}  # no dog was found
    # desk 25 + chair 20 + two of three monitors (14 + 7) + a lamp 8 (bonus) = 74 of 100
    doc = from_detections.to_dict()
    assert (doc["total"], doc["label"], doc["missing_essentials"]) == (74.0, "well equipped", [])
    monitor = next(r for r in doc["breakdown"] if r["class_name"] == "monitor")
    assert monitor == {
        "class_name": "monitor",
        "count": 3,
        "counted": 2,
        "earned": 21.0,
        "possible": 21.0,
        "bonus": False,
        "essential": True,
    }
    assert count_classes(["desk", "desk"]) == {"desk": 2}


def test_custom_rubric_is_normalised_to_100(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(
        """
        decay = 0.0
        [classes.desk]
        points = 30
        [classes.monitor]
        points = 20
        cap = 3
        [classes.plant]
        points = 10
        bonus = true
        [[labels]]
        min = 50
        label = "good"
        [[labels]]
        min = 0
        label = "poor"
        """
    )
    mine = Rubric.load(path)
    assert mine.name == "mine" and mine.full_marks == 50.0
    assert score_office({"desk": 1}, mine).total == 60.0  # 30 of 50 full marks
    assert score_office({"monitor": 3}, mine).total == 40.0  # decay 0: only the first counts
    assert score_office({"desk": 1, "monitor": 1, "plant": 1}, mine).total == 100.0
    assert score_office({"desk": 1}, mine).label == "good"
    assert score_office({"monitor": 1}, mine).label == "poor"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[classes.desk\npoints = 1", "not valid TOML"),
        ("name = 'x'", "needs a [classes.<name>] table"),
        ("[classes.desk]\ncap = 2", "missing `points`"),
        ("[classes.desk]\npoints = -3", "classes.desk.points must be a number"),
        ("[classes.desk]\npoints = 5\ncap = 0", "classes.desk.cap must be a whole number"),
        ("[classes.desk]\npoints = 5\ncolour = 'red'", "unknown key(s) colour"),
        ("[classes.desk]\npoints = 5\nbonus = true", "standard (non-bonus) classes"),
        ("decay = 2\n[classes.desk]\npoints = 5", "decay must be a number from 0 to 1"),
        ("decay = true\n[classes.desk]\npoints = 5", "decay must be a number from 0 to 1"),
        (
            "[classes.desk]\npoints = 5\n[[attributes]]\nclass = 'desk'\nattribute = 'a'\nvalue = true\n"
            "points = 1\ncap = 0",
            "attributes[0].cap must be a whole number >= 1",
        ),
        ("[classes.desk]\npoints = 5\n[[essentials]]\nany_of = ['sofa']", "sofa not in [classes]"),
        ("[classes.desk]\npoints = 5\n[[labels]]\nmin = 10", "labels[0].label"),
        ("labels = 3\n[classes.desk]\npoints = 5", "labels must be a list of tables"),
        # A misspelt top-level key or section is refused, not silently replaced by the default.
        ("missing_essentials_cap = 50\n[classes.desk]\npoints = 5", "unknown key(s) missing_essentials_cap"),
        ("[classes.desk]\npoints = 5\n[[essential]]\nany_of = ['desk']", "unknown key(s) essential ("),
        ("essentials = [1]\n[classes.desk]\npoints = 5", "essentials must be a list of tables"),
        (
            "[classes.desk]\npoints = 5\n[classes.lamp]\npoints = 5\nbonus = 'yes'",
            "lamp.bonus must be true or false",
        ),
        ("[classes.desk]\npoints = 5\nnoun = ' '", "desk.noun must be a non-empty string"),
        (
            "[classes.desk]\npoints = 5\n[[attributes]]\nclass = 'desk'\nattribute = 'a'\n"
            "value = ''\npoints = 1",
            "attributes[0].value must be true/false",
        ),
    ],
)
def test_bad_rubric_files_give_one_line_config_errors(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        Rubric.load(path)
    message = str(info.value)
    assert fragment in message
    assert str(path) in message
    assert "\n" not in message


def test_missing_rubric_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        Rubric.load(tmp_path / "nope.toml")


def test_labels_listed_from_the_lowest_still_name_the_total(tmp_path: Path) -> None:
    """A rubric may list its [[labels]] in any order: the highest minimum the total reaches names it."""
    path = tmp_path / "upwards.toml"
    path.write_text(
        "[classes.desk]\npoints = 10\n[classes.chair]\npoints = 10\n"
        '[[labels]]\nmin = 0\nlabel = "poor"\n[[labels]]\nmin = 50\nlabel = "fair"\n'
        '[[labels]]\nmin = 100\nlabel = "full"\n'
    )
    upwards = Rubric.load(path)
    assert [score_office(c, upwards).label for c in ({}, {"desk": 1}, {"desk": 1, "chair": 1})] == [
        "poor",
        "fair",
        "full",
    ]


def test_attribute_rules_pay_only_their_class_and_read_saved_detections() -> None:
    """A rule pays for its own class's objects (another class may have an attribute of that name),
    reports what its cap makes possible, and scores a saved JSON detection (`"class"`) as the
    Detection it came from."""
    rubric = Rubric.from_dict(
        {
            "classes": {"chair": {"points": 50}, "sofa": {"points": 50}},
            "attributes": [
                {"class": "chair", "attribute": "armrests", "value": True, "points": 10, "cap": 2}
            ],
        }
    )
    chair = Detection("chair", 0.9, [0, 0, 1, 1], {}, 0.1, {"armrests": True})
    sofa = Detection("sofa", 0.9, [0, 0, 1, 1], {}, 0.1, {"armrests": True})
    assert score_office([sofa], rubric).total == 50.0  # the sofa's armrests earn nothing
    office = score_office([chair, sofa], rubric)
    assert office.total == 100.0
    (rule,) = office.attributes
    assert (rule.rule, rule.count, rule.earned, rule.possible) == ("chair.armrests=yes", 1, 10.0, 20.0)
    assert score_office([d.to_dict() for d in (chair, sofa)], rubric) == office


def _rubric(text: str, tmp_path: Path) -> Rubric:
    path = tmp_path / "rubric.toml"
    path.write_text(text)
    return Rubric.load(path)


def test_a_text_attribute_rule_pays_only_its_value_up_to_its_cap_and_a_no_rule_is_named_no() -> None:
    """`value = "mesh"` pays for mesh chairs only (every value's name is non-empty text, so none may
    pass for another), for at most `cap` of them; a rule on false is named `=no`."""
    rubric = Rubric.from_dict(
        {
            "classes": {"chair": {"points": 50}, "desk": {"points": 50}},
            "attributes": [
                {"class": "chair", "attribute": "material", "value": "mesh", "points": 5, "cap": 2},
                {"class": "chair", "attribute": "armrests", "value": False, "points": 3},
            ],
        }
    )
    chairs = [
        Detection("chair", 0.9, [0, 0, 1, 1], {}, 0.1, attributes)
        for attributes in (
            {"material": "mesh"},
            {"material": "leather"},
            {"material": "mesh", "armrests": False},
            {"material": "mesh", "armrests": True},
        )
    ]
    office = score_office(chairs, rubric)
    mesh, no_armrests = office.attributes
    assert (mesh.rule, mesh.count, mesh.earned, mesh.possible) == ("chair.material=mesh", 3, 10.0, 10.0)
    assert (no_armrests.rule, no_armrests.count, no_armrests.earned) == ("chair.armrests=no", 1, 3.0)
    assert office.total == 63.0  # (chair 50 + mesh 2 x 5 + no armrests 3) of 100


def test_every_rule_a_model_can_never_meet_is_named_whatever_the_classes_come_in() -> None:
    from officescore.attributes import AttributeSchema, load_schema
    from officescore.infer.score import unmatchable_rules

    rules = [
        {"class": "chair", "attribute": "armrest", "value": True, "points": 1},
        {"class": "lamp", "attribute": "kind", "value": "wall", "points": 1},
        {"class": "chair", "attribute": "armrests", "value": "Yes", "points": 1},  # fine
        {"class": "sofa", "attribute": "kind", "value": "wall", "points": 1},  # not the model's class
    ]
    rubric = Rubric.from_dict({"classes": {"chair": {"points": 10}}, "attributes": rules})
    problems = unmatchable_rules(rubric, load_schema(), (c for c in ("chair", "lamp")))
    named = [p.split(":")[0] for p in problems]
    assert named == ["rubric rule chair.armrest=yes", "rubric rule lamp.kind=wall"]
    assert unmatchable_rules(rubric, AttributeSchema(), ["chair", "lamp"]) == []  # no attributes: no word


def test_the_warning_and_the_points_agree_on_a_choice_named_yes() -> None:
    """A choice attribute whose values are the words yes/no: a rule written `value = true` pays when
    the model says "yes", so it must not be warned about; a value it never gives is."""
    from officescore.attributes import Attribute, AttributeSchema
    from officescore.infer.score import unmatchable_rules

    state = Attribute("chair", "state", "choice", ("yes", "no", "broken"), "yes")
    schema = AttributeSchema((state,))

    def rubric(value: object) -> Rubric:
        spec = {"class": "chair", "attribute": "state", "value": value, "points": 5}
        return Rubric.from_dict({"classes": {"chair": {"points": 50}}, "attributes": [spec]})

    said_yes = Detection("chair", 0.9, [0, 0, 1, 1], {}, 0.1, {"state": "yes"})
    assert score_office([said_yes], rubric(True)).total == 100.0  # 55 of 55 possible
    assert unmatchable_rules(rubric(True), schema, ["chair"]) == []
    assert unmatchable_rules(rubric("BROKEN"), schema, ["chair"]) == []
    assert unmatchable_rules(rubric("maybe"), schema, ["chair"]) == [
        "rubric rule chair.state=maybe: chair.state: 'maybe' is not one of yes, no, broken"
    ]


def test_an_attribute_rule_written_as_text_matches_the_value_however_it_was_written() -> None:
    """Models give yes/no attributes as booleans: a rubric written by hand with "yes", "No" or "TRUE"
    means the same, and a choice matches its name in any case; other values never match."""
    from officescore.attributes import same_value

    def rule(value: object) -> Rubric:
        spec = {"class": "chair", "attribute": "armrests", "value": value, "points": 5}
        return Rubric.from_dict(
            {"classes": {"chair": {"points": 50}, "desk": {"points": 50}}, "attributes": [spec]}
        )

    def chair(value: object) -> Detection:
        return Detection("chair", 0.9, [0, 0, 1, 1], {}, 0.1, {"armrests": value})

    for written, detected, pays in [
        ("yes", True, True),
        (" Yes ", True, True),
        ("TRUE", True, True),
        ("No", False, True),
        ("yes", False, False),
        ("no", True, False),
        ("Mesh", "mesh", True),
        ("mesh", "leather", False),
        (True, "yes", True),
    ]:
        assert score_office([chair(detected)], rule(written)).total == (55.0 if pays else 50.0), written
    assert same_value("1", True) and same_value(0, "false") and not same_value("maybe", True)


def test_a_total_below_every_labels_minimum_gets_the_lowest_label(tmp_path: Path) -> None:
    rubric = _rubric(
        "[classes.desk]\npoints = 10\n[classes.chair]\npoints = 10\n"
        '[[labels]]\nmin = 60\nlabel = "good"\n[[labels]]\nmin = 20\nlabel = "poor"\n',
        tmp_path,
    )
    assert [score_office(c, rubric).label for c in ({}, {"desk": 1, "chair": 1})] == ["poor", "good"]


def test_essentials_without_a_cap_or_a_name(tmp_path: Path) -> None:
    """A rubric's essential without `missing_essential_cap` caps nothing (the default is 100), one
    without a name is named by its classes, and a class counted 0 is missing."""
    rubric = _rubric(
        "[classes.desk]\npoints = 50\n[classes.monitor]\npoints = 25\n[classes.laptop]\npoints = 25\n"
        "[[essentials]]\nany_of = ['monitor', 'laptop']\n",
        tmp_path,
    )
    office = score_office({"desk": 1, "monitor": 0, "laptop": 0}, rubric)
    assert office.missing_essentials == ["monitor or laptop"]
    assert office.total == 50.0


def test_a_class_counted_zero_does_not_meet_an_essential(rubric: Rubric) -> None:
    office = score_office({"desk": 1, "chair": 1, "monitor": 0, "laptop": 0}, rubric)
    assert office.missing_essentials == ["a screen"]
    assert office.total == 35.0


def test_one_missing_essential_is_suggested_alone(rubric: Rubric) -> None:
    no_chair = {k: v for k, v in FULL_OFFICE.items() if k != "chair"}
    texts = [s.text for s in score_office(no_chair, rubric).suggestions]
    assert texts == ["add a chair: +65"]


def test_a_class_may_set_its_own_decay(tmp_path: Path) -> None:
    rubric = _rubric(
        "decay = 0.5\n[classes.desk]\npoints = 40\n[classes.plant]\npoints = 10\ncap = 3\ndecay = 1.0\n"
        "[classes.monitor]\npoints = 20\ncap = 2\n",
        tmp_path,
    )
    office = score_office({"desk": 1, "plant": 3, "monitor": 2}, rubric)
    assert (row(office, "plant").earned, row(office, "monitor").earned) == (30.0, 30.0)
    assert office.total == 100.0


def test_counts_from_dicts_with_class_name_and_negative_counts() -> None:
    assert count_classes([{"class_name": "desk"}, {"class": "desk"}, {"class_name": "chair"}]) == {
        "desk": 2,
        "chair": 1,
    }
    with pytest.raises(ValueError, match="negative"):
        count_classes({"desk": -1})
    with pytest.raises(ValueError, match="whole numbers: chair is 1.7"):
        count_classes({"desk": 2.0, "chair": 1.7})
    assert count_classes({"desk": 2.0}) == {"desk": 2}


def test_best_possible_is_below_100_only_when_classes_worth_points_are_undetectable(rubric: Rubric) -> None:
    office = ["desk", "chair", "monitor", "laptop", "keyboard", "mouse", "plant", "lamp", "bookshelf", "mug"]
    assert best_possible(rubric, office) == 100.0
    # The zero-shot COCO model has no bookshelf nor lamp: its bonuses make up for the 8 points.
    assert (
        best_possible(
            rubric, ["desk", "chair", "monitor", "laptop", "keyboard", "mouse", "plant", "books", "mug"]
        )
        == 100.0
    )
    typo = Rubric.from_dict({"classes": {"desk": {"points": 50}, "monitr": {"points": 50}}})
    assert best_possible(typo, office) == 50.0
