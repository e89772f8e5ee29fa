"""Attributes: the schema, the sample's CVAT-style export, ingest, stats (issue 24)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from officescore.attributes import AttributeSchema, load_schema
from officescore.errors import ConfigError
from officescore.sample import render_scene, write_sample


def test_default_schema_declares_the_three_sample_attributes() -> None:
    schema = load_schema()
    assert {(a.class_name, a.name) for a in schema.attributes} == {
        ("chair", "armrests"),
        ("lamp", "kind"),
        ("plant", "size"),
    }
    armrests = schema.get("chair", "armrests")
    assert armrests is not None and armrests.values == (False, True) and armrests.default is False
    assert armrests.parse("yes") is True and armrests.parse(False) is False
    assert armrests.parse("1") is True and armrests.parse(" 0 ") is False  # a checkbox as a number
    with pytest.raises(ValueError):
        armrests.parse("maybe")
    lamp = schema.get("lamp", "kind")
    assert lamp is not None and lamp.parse("floor") == "floor"
    with pytest.raises(ValueError):
        lamp.parse("ceiling")
    # a tool whose choices were typed capitalised: "Floor" was dropped as not one of desk, floor
    assert lamp.parse("Floor") == "floor" and lamp.parse(" DESK ") == "desk"
    from officescore.attributes import Attribute

    twins = Attribute("lamp", "kind", "choice", ("floor", "Floor"), "floor")
    assert twins.parse("Floor") == "Floor" and twins.parse("floor") == "floor"  # exact first
    with pytest.raises(ValueError):
        twins.parse("FLOOR")  # two values it could mean: not guessed
    assert AttributeSchema.from_dict(schema.to_dict()) == schema  # survives dataset.json / checkpoints
    assert schema.restricted(["chair"]).to_dict() == {"chair": schema.to_dict()["chair"]}


@pytest.mark.parametrize(
    "text, fragment",
    [
        ('[chair.armrests]\nkind = "maybe"\ndefault = false\n', "kind must be"),
        ('[lamp.kind]\nkind = "choice"\nvalues = ["desk"]\ndefault = "desk"\n', "at least two"),
        ('[lamp.kind]\nkind = "choice"\nvalues = ["desk", "desk"]\ndefault = "desk"\n', "values repeat"),
        ('[lamp.kind]\nkind = "choice"\nvalues = ["desk", "floor"]\ndefault = "wall"\n', "default"),
        ('[chair.armrests]\nkind = "yesno"\n', "needs a default"),
        ('[chair.occluded]\nkind = "yesno"\ndefault = false\n', "CVAT"),
        ("[chair\n", "not valid TOML"),
    ],
)
def test_bad_schema_files_are_one_sentence(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "a.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=fragment):
        load_schema(path)


def test_a_folder_given_as_the_schema_is_called_a_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a folder; give the TOML file"):  # was "no such file"
        load_schema(tmp_path)


def test_a_schema_file_that_is_not_utf8_is_one_sentence(tmp_path: Path) -> None:
    path = tmp_path / "notepad.toml"  # saved as UTF-16, as some editors do
    path.write_bytes('[chair.armrests]\nkind = "yesno"\ndefault = false\n'.encode("utf-16"))
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_schema(path)


def test_scenes_know_what_they_draw() -> None:
    seen: dict[str, set[object]] = {}
    for seed in range(12):
        for inst in render_scene(seed, 128).instances:
            for name, value in inst.attributes.items():
                seen.setdefault(f"{inst.category}.{name}", set()).add(value)
            if inst.category in ("chair", "lamp", "plant"):
                assert inst.attributes, inst.category
            else:
                assert not inst.attributes
    assert seen == {
        "chair.armrests": {True, False},
        "lamp.kind": {"desk", "floor"},
        "plant.size": {"small", "large"},
    }


def test_the_plants_called_large_are_the_large_ones() -> None:
    areas: dict[str, list[int]] = {"small": [], "large": []}
    for seed in range(40):
        for inst in render_scene(seed, 128).instances:
            if inst.category == "plant":
                areas[inst.attributes["size"]].append(inst.full_area)
    assert np.median(areas["large"]) > 1.5 * np.median(areas["small"]), areas


def test_sample_export_writes_cvat_style_attributes(tmp_path: Path) -> None:
    write_sample(tmp_path, n_images=6, seed=3, size=128)
    doc = json.loads((tmp_path / "annotations.json").read_text())
    names = {c["id"]: c["name"] for c in doc["categories"]}
    schema = load_schema()
    for ann in doc["annotations"]:
        attrs = ann["attributes"]
        assert isinstance(attrs.pop("occluded"), bool)  # CVAT writes it on every object
        declared = {a.name: a for a in schema.for_class(names[ann["category_id"]])}
        assert set(attrs) == set(declared)
        for name, value in attrs.items():
            assert declared[name].parse(value) == value


# ---------------------------------------------------------------- ingest and stats


def _ingest(tmp_path: Path, edit=None, schema: Path | None = None) -> tuple[Path, dict, list]:
    from officescore.ingest import ingest_export

    export = tmp_path / "export"
    write_sample(export, n_images=8, seed=5, size=96)
    doc = json.loads((export / "annotations.json").read_text())
    if edit is not None:
        edit(doc)
    (export / "annotations.json").write_text(json.dumps(doc))
    result = ingest_export(
        export / "annotations.json",
        out=tmp_path / "dataset",
        attributes=load_schema(schema) if schema else None,
    )
    return tmp_path / "dataset", doc, result.problems


def _written(dataset: Path) -> dict[str, dict]:
    """Original annotation area+bbox -> written annotation, over both splits (ids are renumbered)."""
    out = {}
    for split in ("train", "val"):
        for ann in json.loads((dataset / f"{split}.json").read_text())["annotations"]:
            out[(round(ann["area"]), tuple(round(v) for v in ann["bbox"]))] = ann
    return out


def test_ingest_keeps_every_cvat_attribute_value(tmp_path: Path) -> None:
    dataset, doc, problems = _ingest(tmp_path)
    assert not [p for p in problems if p.kind.startswith("attribute")]
    written = _written(dataset)
    labelled = 0
    for ann in doc["annotations"]:
        got = written[(round(ann["area"]), tuple(round(v) for v in ann["bbox"]))]
        expected = {k: v for k, v in ann["attributes"].items() if k != "occluded"}
        assert got.get("attributes", {}) == expected  # occluded is CVAT's, not the class's
        assert got.get("unlabelled", []) == []
        labelled += len(expected)
    assert labelled >= 5
    meta = json.loads((dataset / "dataset.json").read_text())
    assert meta["attributes"] == load_schema().restricted(meta["classes"]).to_dict()


def test_bad_and_missing_values_are_listed_and_not_labelled(tmp_path: Path) -> None:
    chairs: list[int] = []

    def edit(doc: dict) -> None:
        chair_id = next(c["id"] for c in doc["categories"] if c["name"] == "chair")
        found = [a for a in doc["annotations"] if a["category_id"] == chair_id]
        assert len(found) >= 3
        found[0]["attributes"]["armrests"] = "perhaps"
        found[1]["attributes"]["wheels"] = True
        del found[2]["attributes"]["armrests"]
        chairs.extend(a["id"] for a in found[:3])

    dataset, doc, problems = _ingest(tmp_path, edit)
    listed = {(p.annotation, p.kind) for p in problems if p.kind.startswith("attribute")}
    assert listed == {(str(chairs[0]), "attribute_value"), (str(chairs[1]), "attribute_unknown")}
    by_id = {a["id"]: a for a in doc["annotations"]}
    written = _written(dataset)
    for k, chair in enumerate(chairs):
        ann = by_id[chair]
        got = written[(round(ann["area"]), tuple(round(v) for v in ann["bbox"]))]
        if k == 1:  # the unknown attribute is dropped, the known one kept
            assert (
                got["attributes"] == {"armrests": ann["attributes"]["armrests"]} and got["unlabelled"] == []
            )
        else:  # bad or missing: the default, marked unlabelled
            assert got["attributes"] == {"armrests": False} and got["unlabelled"] == ["armrests"]


def test_attributes_file_overrides_the_schema_and_stats_count_values(tmp_path: Path) -> None:
    schema = tmp_path / "attrs.toml"
    schema.write_text('[chair.armrests]\nkind = "yesno"\ndefault = true\n')

    def edit(doc: dict) -> None:
        chair_id = next(c["id"] for c in doc["categories"] if c["name"] == "chair")
        chairs = [a for a in doc["annotations"] if a["category_id"] == chair_id]
        del chairs[0]["attributes"]["armrests"]  # left unlabelled
        chairs[1]["segmentation"] = []  # a box only: an ignore region, whose value is not counted

    dataset, doc, problems = _ingest(tmp_path, edit, schema=schema)
    # lamp.kind and plant.size are not in this schema: listed as unknown, dropped
    assert {p.kind for p in problems} >= {"attribute_unknown"}
    meta = json.loads((dataset / "dataset.json").read_text())
    assert meta["attributes"] == {"chair": {"armrests": {"kind": "yesno", "default": True}}}

    from officescore.ingest.health import health_report

    report = health_report(dataset).to_dict()
    chair_id = next(c["id"] for c in doc["categories"] if c["name"] == "chair")
    chairs = [a for a in doc["annotations"] if a["category_id"] == chair_id and a["segmentation"] != []]
    truth = [a["attributes"].get("armrests") for a in chairs]
    counts = report["attributes"]["chair"]["armrests"]
    assert set(counts) == {"train", "val"}
    total = {key: sum(counts[s][key] for s in counts) for key in ("yes", "no", "unlabelled")}
    assert total == {"yes": truth.count(True), "no": truth.count(False), "unlabelled": 1}


def test_stats_table_shows_attribute_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from officescore.cli import main

    dataset, _, _ = _ingest(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["stats", str(dataset), "--no-plot"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "Attributes" in out and "armrests" in out and "unlabelled 0" in out


def test_a_misspelt_class_in_the_attributes_file_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """[chiar.armrests] matches no class: without a word, every chair's armrests is only one more
    attribute_unknown row and the data set silently has no attributes."""
    from officescore.cli import main

    export = tmp_path / "export"
    write_sample(export, n_images=4, seed=5, size=96)
    typo = tmp_path / "attrs.toml"
    typo.write_text('[chiar.armrests]\nkind = "yesno"\ndefault = false\n')
    spelt = tmp_path / "spelt.toml"
    spelt.write_text('[chair.armrests]\nkind = "yesno"\ndefault = false\n')
    said = []
    for schema in (typo, spelt):
        with pytest.raises(SystemExit) as exit_info:
            main(
                [
                    "ingest",
                    str(export / "annotations.json"),
                    "--out",
                    str(tmp_path / "ds"),
                    "--no-plot",
                    "--attributes",
                    str(schema),
                ]
            )
        assert exit_info.value.code == 0
        said.append(" ".join(capsys.readouterr().out.split()))
    assert f"--attributes {typo} declares attributes of chiar, which the data set does not label" in said[0]
    assert "declares attributes of" not in said[1]


def test_attribute_forms_of_other_tools() -> None:
    from officescore.ingest.attributes import raw_attributes, read_attributes

    # Hasty / V7 style: a list of name/value pairs; CVAT's own keys are not the class's attributes.
    ann = {"attributes": [{"name": "size", "value": "large"}, {"name": "occluded", "value": True}]}
    assert raw_attributes(ann) == {"size": "large"}
    assert raw_attributes({"attributes": [{"key": "size", "value": "large"}]}) == {"size": "large"}
    assert raw_attributes({"attributes": {"rotation": 0.0, "track_id": 3, "kind": "floor"}}) == {
        "kind": "floor"
    }
    assert raw_attributes({"attributes": "armrests"}) == {} and raw_attributes({}) == {}
    problems: list[tuple[str, str, str]] = []
    values, unlabelled = read_attributes(
        {"attributes": {"armrests": "", "kind": "floor"}},
        "chair",
        load_schema(),
        lambda *p: problems.append(p),
    )
    assert values == {"armrests": False} and unlabelled == ["armrests"]  # "" = not set
    assert [p[0] for p in problems] == ["attribute_unknown"]  # kind is a lamp's attribute
