"""Google paging: continue only on `queries.nextPage`, stop cleanly on short or empty pages, and
never ask past the API's cap (start + num <= 100), whatever the answer says.

Against the imitation of Custom Search in fakeservers.py (a real HTTP server on 127.0.0.1).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fakeservers import FakeCustomSearch

from officescore.scrape import DownloadConfig, ScrapeConfig, scrape
from officescore.scrape.providers import GoogleProvider

KEY = "AIzaSyTEST-paging-4f9d2c"
CX = "017576662512468239146:paging"
NO_DOWNLOADS = DownloadConfig(workers=1, per_host=1, retries=0)  # loopback links are refused unrequested


@pytest.fixture(autouse=True)
def before_google_cutoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Google's API is off from 2027-01-01: these tests run on a day it still answers."""
    monkeypatch.setenv("OFFICESCORE_NOW", "2026-06-01T12:00:00Z")


@pytest.fixture()
def server() -> Iterator[FakeCustomSearch]:
    fake = FakeCustomSearch(KEY, CX, lambda q, i: f"http://127.0.0.1:9/{i}.jpg", total=500).start()
    yield fake
    fake.stop()


def _provider(server: FakeCustomSearch) -> GoogleProvider:
    return GoogleProvider(developer_key=KEY, cx=CX, endpoint=server.url)


def _starts(server: FakeCustomSearch) -> list[tuple[int, int]]:
    searches = [query for _, path, query, _ in server.requests if path == "/customsearch/v1"]
    return [(int(q["start"][0]), int(q["num"][0])) for q in searches]


def _config(
    tmp_path: Path, server: FakeCustomSearch, per_query: int = 100, daily_quota: int = 100
) -> ScrapeConfig:
    return ScrapeConfig(
        queries=["home office"],
        per_query=per_query,
        daily_quota=daily_quota,
        out=tmp_path / "raw",
        api_endpoint=server.url,
        google_key=KEY,
        google_cx=CX,
        api_backoff=0.01,
        download=NO_DOWNLOADS,
    )


def _scrape(tmp_path: Path, server: FakeCustomSearch) -> object:
    return scrape(_config(tmp_path, server))


def test_a_full_page_without_next_page_is_the_last(server: FakeCustomSearch, tmp_path: Path) -> None:
    server.next_page = "never"
    page = _provider(server).search("home office", 1)
    assert len(page.results) == 10 and page.last
    result = _scrape(tmp_path, server)
    assert result.stop_reason == "done" and result.pages == 1 and result.new_results == 10  # no guess


def test_a_short_page_ends_the_query_even_with_next_page(server: FakeCustomSearch, tmp_path: Path) -> None:
    server.next_page = "always"
    server.short_pages = {11: 4}  # page 2 holds 4 items although 10 were asked and nextPage is set
    provider = _provider(server)
    assert not provider.search("home office", 1).last
    short = provider.search("home office", 2)
    assert len(short.results) == 4 and short.last
    server.requests.clear()
    result = _scrape(tmp_path, server)
    assert _starts(server) == [(1, 10), (11, 10)] and result.pages == 2 and result.new_results == 14


def test_an_answer_without_items_ends_the_query(server: FakeCustomSearch, tmp_path: Path) -> None:
    server.next_page = "always"
    server.no_items = {21}  # the API leaves `items` out when there is nothing (more) to show
    page = _provider(server).search("home office", 3)
    assert page.results == [] and page.last
    server.requests.clear()
    result = _scrape(tmp_path, server)
    assert _starts(server) == [(1, 10), (11, 10), (21, 10)]
    assert result.stop_reason == "done" and result.pages == 3 and result.new_results == 20


def test_never_past_the_cap_whatever_next_page_says(server: FakeCustomSearch, tmp_path: Path) -> None:
    server.next_page = "always"  # claims a next page at start 91 too (startIndex 100)
    provider = _provider(server)
    last = provider.search("home office", 10)
    assert _starts(server) == [(91, 9)] and len(last.results) == 9 and last.last
    beyond = provider.search("home office", 11)  # asked anyway: answered without a request
    assert beyond.results == [] and beyond.last and beyond.cost == 0
    assert _starts(server) == [(91, 9)]
    server.requests.clear()
    result = _scrape(tmp_path, server)
    starts = _starts(server)
    assert starts[-1] == (91, 9) and all(start + num <= 100 for start, num in starts)
    assert result.pages == 10 and result.new_results == 99


def test_a_page_row_deleted_by_hand_does_not_fail_every_run(server: FakeCustomSearch, tmp_path: Path) -> None:
    import sqlite3

    from officescore.scrape.manifest import MANIFEST_NAME

    config = _config(tmp_path, server, per_query=40, daily_quota=2)
    assert scrape(config).pages == 2
    db = sqlite3.connect(config.out / MANIFEST_NAME)
    with db:
        db.execute("DELETE FROM pages WHERE page = 1")  # "fetch page 1 again", by hand
    db.close()
    server.requests.clear()
    config.daily_quota = 3
    result = scrape(config)  # was: the call for page 2 paid, then a UNIQUE constraint error
    assert _starts(server) == [(21, 10)] and (result.pages, result.calls) == (1, 1)
