"""A scrape folder (`data/raw`) as `officescore scrape` leaves it, for the commands that read one."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from officescore.scrape.manifest import KEPT, Manifest
from officescore.scrape.providers import SearchResult


def scrape_folder(
    raw: Path, photos: Sequence[Path | None], results: Sequence[SearchResult] | None = None
) -> None:
    """Make `raw` a scrape folder whose manifest found one result per entry of `photos` (`results`,
    default plain ones) and kept each photo given: a file already inside `raw` (None: a result that
    was never downloaded)."""
    results = results or [SearchResult(url=f"https://img.example/{n}.jpg") for n in range(len(photos))]
    with Manifest.open(raw) as manifest:
        manifest.record_page("openverse", "desk", "", 1, list(results), True, "cc", "2026-01-01T00:00:00Z")
        for row_id, photo in enumerate(photos, start=1):  # rows are numbered in the order found
            if photo is not None:
                manifest.set_outcome(row_id, status=KEPT, path=photo.relative_to(raw).as_posix())
