"""`scrape --export DIR`: the manifest as CSV, ATTRIBUTION.md for kept images, an image list.

Every photo gets a credit line in the form its licence asks for, whatever the provider:
- CC BY, BY-SA, BY-NC, ... : title, author, source and licence, each linked (CC's "TASL");
- CC0, the Public Domain Mark and Commons' "Public domain": no attribution required, credit given
  as a courtesy;
- the Unsplash License: "Photo by <photographer> on Unsplash", both linked (Unsplash's guidelines);
- no licence stated (Google's results): the filter it was found with and a warning to check.

Paths written into these files are relative to DIR (the folder that holds them), so DIR can be
zipped together with the raw folder or read in place.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from officescore.errors import ConfigError
from officescore.files import atomic_write_bytes
from officescore.scrape.manifest import CREDIT_COLUMNS, MANIFEST_NAME, RESULT_COLUMNS, Manifest

LICENSE_NAMES = {
    "cc0": "CC0 1.0",
    "pdm": "Public Domain Mark",
    "pd": "Public domain",  # as Commons states it: no mark and no deed to link
    "by": "CC BY",
    "by-sa": "CC BY-SA",
    "by-nc": "CC BY-NC",
    "by-nd": "CC BY-ND",
    "by-nc-sa": "CC BY-NC-SA",
    "by-nc-nd": "CC BY-NC-ND",
    "unsplash": "Unsplash License",
    "unsplash+": "Unsplash+ License",
}
PUBLIC_DOMAIN = ("cc0", "pdm", "pd")
SOURCE_NAMES = {"wikimedia_commons": "Wikimedia Commons", "flickr": "Flickr", "unsplash": "Unsplash"}
UNSPLASH_HOME = "https://unsplash.com/?utm_source=officescore&utm_medium=referral"
EXPORT_COLUMNS = (*RESULT_COLUMNS, "credit")


@dataclass
class ExportResult:
    folder: Path
    csv: Path
    attribution: Path
    image_list: Path
    rows: int
    kept: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "folder": str(self.folder),
            "csv": str(self.csv),
            "attribution": str(self.attribution),
            "image_list": str(self.image_list),
            "rows": self.rows,
            "kept": self.kept,
        }


def _relative(raw_dir: Path, stored: str | None, folder: Path) -> str:
    if not stored:
        return ""
    return Path(os.path.relpath(raw_dir.resolve() / stored, folder.resolve())).as_posix()


def _md(text: str | None) -> str:
    """Plain text safe inside Markdown (no links or emphasis sneaking in from titles)."""
    if not text:
        return ""
    text = " ".join(str(text).split())
    for char in "\\`*_[]<>|":
        text = text.replace(char, "\\" + char)
    return text


# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection): titles,
# creators and URLs come from the internet, so such a value is written with a leading apostrophe,
# which Excel, LibreOffice and Google Sheets show as text (OWASP's advice).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A manifest value as a CSV cell a spreadsheet shows as text and never evaluates."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def _licence_name(row: Any) -> str:
    name = LICENSE_NAMES.get(str(row["license"]).lower(), str(row["license"]).upper())
    version = f" {row['license_version']}" if row["license_version"] and name != "CC0 1.0" else ""
    return f"{name}{version}"


def licence_url(row: Any) -> str | None:
    """The provider's licence URL, else the Creative Commons deed its code and version name (a CC BY
    credit must link the licence); None where neither is known."""
    if row["license_url"]:
        return str(row["license_url"])
    code, version = str(row["license"] or "").lower(), row["license_version"]
    if not version or code not in LICENSE_NAMES or code.startswith("unsplash"):
        return None
    if code in PUBLIC_DOMAIN:
        return f"https://creativecommons.org/publicdomain/{'zero' if code == 'cc0' else 'mark'}/{version}/"
    return f"https://creativecommons.org/licenses/{code}/{version}/"


def _link(text: str, url: str | None, markdown: bool) -> str:
    if not url:
        return text
    return f"[{text}]({url})" if markdown else f"{text} ({url})"


def credit(row: Any, markdown: bool = True) -> str:
    """The credit line the photo's licence asks for (see the module docstring)."""
    code = str(row["license"] or "").lower()
    clean = _md if markdown else (lambda t: " ".join(str(t or "").split()))
    creator = _link(clean(row["creator"]) or "unknown author", row["creator_url"], markdown)
    if code in ("unsplash", "unsplash+"):
        return f"Photo by {creator} on {_link('Unsplash', UNSPLASH_HOME, markdown)}"
    if not code:
        return f"Source: {row['landing_page'] or row['url']} (licence not stated by {row['provider']})"
    title = _link(f'"{clean(row["title"]) or "Untitled"}"', row["landing_page"], markdown)
    licence = _link(_licence_name(row), licence_url(row), markdown)
    source = SOURCE_NAMES.get(str(row["source"] or ""), clean(row["source"]))
    via = f", via {source}" if source else ""
    if code in PUBLIC_DOMAIN:
        return f"{title} by {creator}{via}: {licence} (no attribution required; credited as a courtesy)"
    return f"{title} by {creator}{via} is licensed under {licence}"


def _licence(row: Any) -> str:
    if row["license"]:
        return _link(_licence_name(row), licence_url(row), markdown=True)
    return (
        f"not stated by the provider (found with usage-rights filter `{row['rights']}`); "
        "confirm on the landing page before publishing"
    )


def _attribution_entry(row: Any, path: str) -> str:
    title = _md(row["title"]) or "Untitled"
    creator = _md(row["creator"]) or "unknown creator"
    if row["creator_url"]:
        creator = f"[{creator}]({row['creator_url']})"
    lines = [
        f"### `{path}`",
        f"- Title: {title}",
        f"- Creator: {creator}",
        f"- Licence: {_licence(row)}",
        f"- Credit: {credit(row)}",
        f"- Landing page: {row['landing_page'] or 'unknown'}",
        f"- Image URL: {row['url']}",
        f'- Found via: {row["provider"]}, query "{_md(row["query"])}"{_stated_by(row)}',
    ]
    if row["attribution"]:
        lines.append(f"- Attribution text: {_md(row['attribution'])}")
    return "\n".join(lines)


def _stated_by(row: Any) -> str:
    """Who stated the licence, where it was not the finder named before it (a later provider that
    found the same URL, or a byte-identical copy)."""
    said = row["license_from"]
    return f"; licence stated by {said}" if said and said != row["provider"] else ""


def _licences_of_copies(rows: list[Any]) -> list[Any]:
    """Rows with a kept photo whose finder stated no licence (Google) credited as a byte-identical
    copy another provider found and licensed (the copy was not kept, as a duplicate of it)."""
    stated = {
        row["duplicate_of"]: row
        for row in rows
        if row["status"] == "duplicate" and row["duplicate_of"] is not None and row["license"]
    }
    out = []
    for row in rows:
        copy = stated.get(row["id"]) if row["status"] == "ok" and not row["license"] else None
        if copy is not None:
            said = copy["license_from"] or copy["provider"]  # a row from before license_from
            row = {**dict(row), **{name: copy[name] for name in CREDIT_COLUMNS}, "license_from": said}
        out.append(row)
    return out


def _write(path: Path, data: bytes) -> None:
    """Atomic (files.py gives it the mode a plain open() would: shareable with a labelling tool)."""
    try:
        atomic_write_bytes(path, data)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None


def export(raw_dir: Path, folder: Path) -> ExportResult:
    """Write manifest.csv, ATTRIBUTION.md and images.txt for the scrape in `raw_dir` into `folder`."""
    raw_dir, folder = Path(raw_dir), Path(folder)
    path = raw_dir / MANIFEST_NAME
    if not path.is_file():
        raise ConfigError(f"no manifest at {path}: scrape into {raw_dir} first (or pass the right --out)")
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"--export {folder} is a file; give a folder to write the export into")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create export folder {folder}: {exc.strerror or exc}") from None
    with Manifest(path, read_only=True) as manifest:
        rows = list(manifest.rows())
    rows = _licences_of_copies(rows)
    kept = [row for row in rows if row["status"] == "ok" and row["path"]]

    buffer = io.StringIO()
    # RFC 4180 line ends: the writer then quotes any value holding a \r or \n, which keeps rows whole
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(EXPORT_COLUMNS)
    for row in rows:
        values = [row[name] for name in RESULT_COLUMNS]
        values[RESULT_COLUMNS.index("path")] = _relative(raw_dir, row["path"], folder)
        values.append(credit(row, markdown=False))
        writer.writerow([csv_cell(v) for v in values])
    csv_path = folder / "manifest.csv"
    _write(csv_path, buffer.getvalue().encode("utf-8"))

    entries = [_attribution_entry(row, _relative(raw_dir, row["path"], folder)) for row in kept]
    header = (
        "# Image attribution\n\n"
        f"{len(kept)} image(s) collected with `officescore scrape`. Keep this file with the images and "
        "credit each one as its licence requires.\n"
    )
    attribution = folder / "ATTRIBUTION.md"
    _write(attribution, (header + "\n" + "\n\n".join(entries) + "\n").encode("utf-8"))

    # One path per line: CVAT, Label Studio and Roboflow all take a plain list of files to upload.
    image_list = folder / "images.txt"
    listing = "".join(_relative(raw_dir, row["path"], folder) + "\n" for row in kept)
    _write(image_list, listing.encode("utf-8"))
    return ExportResult(folder, csv_path, attribution, image_list, len(rows), len(kept))
