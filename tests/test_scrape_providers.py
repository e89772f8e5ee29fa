"""Wikimedia Commons, Unsplash and Flickr end to end against their imitations (fake_providers.py):
rights filter, licence and attribution records, the persisted `continue` token, hourly and daily
pacing, download events, and SIGKILL then resume without a page fetched twice."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from fake_providers import FLICKR_LICENSE_INFO, FakeCommons, FakeFlickr, FakeUnsplash
from fakeservers import ImageHost, Reply

from officescore.cli import main
from officescore.errors import ConfigError
from officescore.scrape import DownloadConfig, ScrapeConfig, export, scrape, status
from officescore.scrape.manifest import Manifest
from officescore.scrape.providers import FLICKR_LICENSES, FlickrProvider, ProviderError, WikimediaProvider

UNSPLASH_KEY = "unsplash-access-Zx81-never-write"
FLICKR_KEY = "f1f2f3flickr0key9a8b7c6d5e4f3a2b"
CONTACT = "scrape-tests@example.org"
REPO = Path(__file__).resolve().parent.parent
DOWNLOADS = DownloadConfig(
    workers=4,
    per_host=4,
    connect_timeout=2,
    read_timeout=2,
    retries=0,
    min_width=64,
    min_height=64,
    allow_private_hosts=True,
)
NO_DOWNLOADS = DownloadConfig(workers=1, per_host=1, retries=0)  # loopback links refused unrequested


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OFFICESCORE_NOW", "2026-06-01T10:20:00Z")


@pytest.fixture(scope="module")
def host() -> Iterator[ImageHost]:
    server = ImageHost().start()
    yield server
    server.stop()


def link_for(host: ImageHost) -> Any:
    return lambda q, i: f"{host.url}/good/{i % 12}?q={quote(q)}&i={i}"


def config(tmp_path: Path, provider: str, server: Any, **kwargs: Any) -> ScrapeConfig:
    base: dict[str, Any] = {
        "queries": ["desk lamp"],
        "provider": provider,
        "per_query": 60,
        "out": tmp_path / "raw",
        "api_endpoint": server.url,
        "unsplash_key": UNSPLASH_KEY,
        "flickr_key": FLICKR_KEY,
        "contact": CONTACT,
        "api_backoff": 0.01,
        "download": DOWNLOADS,
    }
    base.update(kwargs)
    return ScrapeConfig(**base)


def rows(out: Path) -> list[sqlite3.Row]:
    db = sqlite3.connect(f"file:{out / 'manifest.sqlite'}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        return list(db.execute("SELECT * FROM results ORDER BY id"))
    finally:
        db.close()


def index_of(url: str) -> int:
    return int(parse_qs(urlsplit(url).query)["i"][0])


def no_secret_written(*folders: Path) -> None:
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                assert UNSPLASH_KEY.encode() not in data and FLICKR_KEY.encode() not in data, path


# ---- Wikimedia Commons ---------------------------------------------------------------------------


def test_wikimedia_rights_licences_attribution_continue_and_maxlag(tmp_path: Path, host: ImageHost) -> None:
    server = FakeCommons(link_for(host), total=45).start()
    server.split = {0}  # the first batch's imageinfo comes in two answers (iicontinue)
    server.maxlag = [7]  # the first request meets lagging replicas
    try:
        result = scrape(config(tmp_path, "wikimedia", server, per_query=100))
    finally:
        server.stop()
    query = "desk lamp filetype:bitmap"
    # Two answers make the first batch (split), one each the others; the last has no `continue`.
    assert (result.stop_reason, result.pages, result.calls) == ("done", 4, 5)  # + the maxlag answer
    assert sorted(server.ok_pages.values()) == [1, 1, 1, 1]
    assert {(k[0], k[1]) for k in server.ok_pages} == {(query, 0), (query, 20), (query, 40)}
    searches = [q for _, path, q, _ in server.requests]
    assert all(q["maxlag"] == ["5"] and q["gsrnamespace"] == ["6"] for q in searches)
    assert "iicontinue" in searches[2] and searches[2]["continue"] == ["gsroffset||"]
    agents = {h["user-agent"] for _, _, _, h in server.requests}
    assert len(agents) == 1 and CONTACT in agents.pop()
    # The image downloads (upload.wikimedia.org in real life) say who is fetching, too.
    image_agents = {
        h["user-agent"] for _, _, q, h in host.requests if q.get("q") == ["desk lamp filetype:bitmap"]
    }
    assert image_agents and all(CONTACT in a and "+https://" in a for a in image_agents)

    saved = rows(result.out)
    # Every fifth file is GFDL-only: no --rights name matches it, so it is never saved.
    assert len(saved) == 36 and result.skipped == 9
    assert not {index_of(r["url"]) for r in saved} & set(range(4, 45, 5))
    by_index = {index_of(r["url"]): r for r in saved}
    first = by_index[0]
    assert (first["license"], first["license_version"]) == ("by-sa", "4.0")
    assert first["license_url"] == "https://creativecommons.org/licenses/by-sa/4.0"
    assert (first["creator"], first["creator_url"]) == (
        "Maker&Co 0",
        "https://commons.wikimedia.org/wiki/User:Maker0",
    )
    assert first["attribution"] == "Maker&Co 0, CC BY-SA 4.0, via Wikimedia Commons"
    assert first["landing_page"] == "https://commons.wikimedia.org/wiki/File:Desk_Lamp_0.jpg"
    assert (by_index[2]["license"], by_index[3]["license"]) == ("pd", "cc0")
    assert by_index[2]["attribution"].endswith("(attribution not required)")
    assert {r["status"] for r in saved} <= {"ok", "duplicate"}

    exported = export(result.out, tmp_path / "labelling")
    text = exported.attribution.read_text()
    assert (
        '- Credit: ["Desk 0"](https://commons.wikimedia.org/wiki/File:Desk_Lamp_0.jpg) by '
        "[Maker&Co 0](https://commons.wikimedia.org/wiki/User:Maker0), via Wikimedia Commons is licensed "
        "under [CC BY-SA 4.0](https://creativecommons.org/licenses/by-sa/4.0)"
    ) in text
    assert "no attribution required; credited as a courtesy" in text  # the public-domain files
    # Commons said "Public domain", not the CC Public Domain Mark those files do not carry.
    assert "via Wikimedia Commons: Public domain (no attribution" in text and "Mark" not in text


def test_a_request_requests_cannot_send_is_final_in_one_line_naming_the_cause(
    tmp_path: Path, host: ImageHost
) -> None:
    """A --contact pasted with a newline cannot travel in the User-Agent: that is our request, not
    the network. It was "unreachable: InvalidHeader (after 3 tries) ... run again later", three calls
    spent; now one line saying why, and no call counted: Commons never saw it (one was, until
    session 45). A bad endpoint URL likewise (Openverse)."""
    server = FakeCommons(link_for(host), total=20).start()
    try:
        cfg = config(tmp_path, "wikimedia", server, contact="me@example.org\nx", api_backoff=0)
        with pytest.raises(ProviderError) as failure:
            scrape(cfg)
        assert server.requests == []
    finally:
        server.stop()
    said = str(failure.value)
    assert said.startswith("Wikimedia Commons: the request could not be sent (InvalidHeader)")
    assert "a newline or a quote pasted into a key or --contact?" in said and "later" not in said
    assert "\n" not in said and [q.calls for q in status(cfg).quota] == [0]
    from officescore.scrape.providers import OpenverseProvider

    with pytest.raises(ProviderError, match=r"not valid \(check --api-endpoint"):
        OpenverseProvider(endpoint="http://exa mple.org/").search("desk", 1)
    bad = config(tmp_path / "openverse", "openverse", server, api_endpoint="http://exa mple.org/")
    with pytest.raises(ProviderError, match=r"not valid \(check --api-endpoint"):
        scrape(bad)
    assert [(q.provider, q.calls) for q in status(bad).quota] == [("openverse", 0)]
    from officescore.scrape.providers import RequestNotSent, WikimediaProvider

    with pytest.raises(RequestNotSent, match="no continue token"):  # asked of nobody: taken back too
        WikimediaProvider(endpoint="http://127.0.0.1:9/w/api.php").search("desk", 2, None)


def test_wikimedia_narrow_rights_and_unknown_licences(tmp_path: Path, host: ImageHost) -> None:
    server = FakeCommons(link_for(host), total=20).start()
    try:
        result = scrape(
            config(tmp_path, "wikimedia", server, rights="cc_publicdomain", download=NO_DOWNLOADS)
        )
    finally:
        server.stop()
    assert {r["license"] for r in rows(result.out)} == {"pd", "cc0"} and result.skipped == 12
    with pytest.raises(ConfigError, match="no licence used on Wikimedia Commons"):
        scrape(config(tmp_path, "wikimedia", server, rights="cc_noncommercial|cc_nonderived"))


def test_wikimedia_resume_continues_from_the_stored_continue_token(tmp_path: Path, host: ImageHost) -> None:
    """One call a day: each day's run must pick up the `continue` token the last page left."""
    server = FakeCommons(link_for(host), total=45).start()
    server.split = {20}
    cfg = config(tmp_path, "wikimedia", server, per_query=100, daily_quota=1, download=NO_DOWNLOADS)
    try:
        days = []
        for day in ("01", "02", "03", "04"):
            os.environ["OFFICESCORE_NOW"] = f"2026-06-{day}T10:00:00Z"
            days.append(scrape(cfg))
    finally:
        server.stop()
    assert [(d.stop_reason, d.pages) for d in days] == [("quota", 1), ("quota", 1), ("quota", 1), ("done", 1)]
    assert [(d.next_query, d.next_page) for d in days[:3]] == [
        ("desk lamp", 2),
        ("desk lamp", 3),
        ("desk lamp", 4),
    ]
    # Four distinct pages, each answered once: no run started again from the first page.
    assert len(server.ok_pages) == 4 and set(server.ok_pages.values()) == {1}
    offsets = [q.get("gsroffset", ["0"])[0] for _, _, q, _ in server.requests]
    assert offsets == ["0", "20", "40", "40"]  # batch 20 is split: iicontinue, then the rest
    assert "iicontinue" in server.requests[2][2] and "iicontinue" not in server.requests[3][2]
    with Manifest.open(cfg.out) as manifest:
        token = manifest.cursor("wikimedia", "desk lamp", WikimediaProvider().filters, 2)
    assert token is not None and json.loads(token) == {"continue": "gsroffset||", "gsroffset": 20}


# ---- Unsplash ------------------------------------------------------------------------------------


def test_unsplash_plus_never_saved_attribution_and_download_events(tmp_path: Path, host: ImageHost) -> None:
    server = FakeUnsplash(UNSPLASH_KEY, link_for(host), total=40, limit=50).start()
    server.premium = {1, 5}  # Unsplash+ photos: a paid licence, never saved
    try:
        cfg = config(tmp_path, "unsplash", server)
        result = scrape(cfg)
        again = scrape(cfg)
        report = status(cfg)
    finally:
        server.stop()
    assert (result.stop_reason, result.pages, result.skipped) == ("done", 2, 2)
    saved = rows(result.out)
    assert len(saved) == 38 and not {index_of(r["url"]) for r in saved} & {1, 5}
    assert {r["license"] for r in saved} == {"unsplash"}
    first = saved[0]
    assert first["creator"] == "Maker 0"
    assert first["creator_url"] == "https://unsplash.com/@maker0?utm_source=officescore&utm_medium=referral"
    assert first["license_url"] == "https://unsplash.com/license"
    assert first["attribution"].startswith("Photo by Maker 0 (https://unsplash.com/@maker0?utm_source=")
    # One download event per downloaded photo (kept or duplicate), sent once over both runs.
    downloaded = {f"ph{index_of(r['url']):04d}x" for r in saved if r["status"] in ("ok", "duplicate")}
    assert len(downloaded) == 38 and dict(server.tracked) == dict.fromkeys(downloaded, 1)
    assert result.tracked == 38 and again.calls == 0 and again.tracked == 0
    assert report.quota[0].hour_calls == 40 and report.download_events == {"sent": 38}
    searches = [h for _, path, _, h in server.requests if path == "/search/photos"]
    assert all(h["accept-version"] == "v1" for h in searches)

    text = export(result.out, tmp_path / "labelling").attribution.read_text()
    assert (
        "- Credit: Photo by [Maker 0](https://unsplash.com/@maker0?utm_source=officescore&utm_medium="
        "referral) on [Unsplash](https://unsplash.com/?utm_source=officescore&utm_medium=referral)"
    ) in text
    no_secret_written(result.out, tmp_path / "labelling")


def test_a_download_event_refused_is_not_retried_and_one_that_failed_is_sent_next_run(
    tmp_path: Path,
    host: ImageHost,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Unsplash answers the first event 400 (refused: final, the others still go) and the second
    503 (the API is struggling: that one and the rest wait for the next run, which sends each once)."""
    server = FakeUnsplash(UNSPLASH_KEY, link_for(host), total=3).start()
    server.event_replies = [
        Reply(400, b'{"errors": ["ixid [/x] is invalid"]}', {"Content-Type": "application/json"}),
        Reply(503, b"Service Unavailable", {"Content-Type": "text/plain"}),
    ]
    try:
        cfg = config(tmp_path, "unsplash", server)
        first = scrape(cfg)
        events = status(cfg).download_events
        second = scrape(cfg)
    finally:
        server.stop()
    assert (first.stop_reason, first.downloads, first.tracked) == ("done", {"ok": 3}, 0)
    assert events == {"refused": 1, "pending": 2}
    assert first.calls == 3  # the refused event reached Unsplash: a call (one never sent is not)
    (why,) = first.events_refused
    assert "ixid [/x] is invalid" in why and first.to_dict()["download_events_refused"] == [why]
    assert first.to_dict()["download_events_waiting"] == 2 and second.events_waiting == 0
    assert second.events_refused == []
    # ... and the CLI says so in yellow after the run's summary (the real result, printed)
    import officescore.scrape

    monkeypatch.setattr(officescore.scrape, "scrape", lambda config, reporter: first)
    monkeypatch.setenv("UNSPLASH_ACCESS_KEY", UNSPLASH_KEY)
    with pytest.raises(SystemExit) as exit_info:
        main(["scrape", "-q", "desk lamp", "--provider", "unsplash", "--out", str(tmp_path / "raw")])
    assert exit_info.value.code in (0, None)
    out = capsys.readouterr().out
    assert f"unsplash refused 1 download event(s), not sent again: {why}" in " ".join(out.split())
    # "Done", but two are still owed: the run says so, or they would never be sent
    assert "2 unsplash download event(s) not sent yet: run the same command again to" in " ".join(out.split())
    assert (second.calls, second.tracked) == (2, 2)
    assert dict(server.tracked) == {"ph0001x": 1, "ph0002x": 1}


def test_a_run_whose_search_failed_leaves_its_download_events_to_the_next_run(
    tmp_path: Path, host: ImageHost
) -> None:
    """Page 2 keeps failing (503): the photos of page 1 are still downloaded, but their download
    events are not sent to a struggling API; the next run sends each of them once, before searching."""
    server = FakeUnsplash(UNSPLASH_KEY, link_for(host), total=40).start()
    server.hold = ("desk lamp", 2)
    server.release.set()  # the held page answers 503 at once, every time
    try:
        cfg = config(tmp_path, "unsplash", server)
        with pytest.raises(ProviderError, match="Before it failed"):
            scrape(cfg)
        downloaded = {
            f"ph{index_of(r['url']):04d}x" for r in rows(cfg.out) if r["status"] in ("ok", "duplicate")
        }
        assert len(downloaded) == 30 and not server.tracked
        assert status(cfg).download_events == {"pending": 30}
        with pytest.raises(ProviderError):  # failing again: what was owed is sent first all the same
            scrape(cfg)
        assert dict(server.tracked) == dict.fromkeys(downloaded, 1)
        server.hold = None
        third = scrape(cfg)
    finally:
        server.stop()
    assert third.stop_reason == "done" and third.tracked == 10
    assert dict(server.tracked) == {f"ph{i:04d}x": 1 for i in range(40)}


def test_unsplash_paces_to_the_hour_it_reports(tmp_path: Path, host: ImageHost) -> None:
    server = FakeUnsplash(UNSPLASH_KEY, link_for(host), total=150, limit=3).start()
    cfg = config(tmp_path, "unsplash", server, per_query=150, download=NO_DOWNLOADS)
    try:
        first = scrape(cfg)  # X-Ratelimit-Remaining reaches 0 on the third answer
        assert (first.stop_reason, first.calls, first.pages) == ("hourly_quota", 3, 3)
        assert "Run the same command again after 2026-06-01 11:00 UTC" in first.message
        assert status(cfg).quota[0].to_dict()["hour_exhausted"] is True
        shown = cli_status(["--provider", "unsplash", "--out", str(cfg.out), "-q", "desk lamp"])
        assert "quota unsplash 2026-06-01: 3/1200 calls" in shown
        assert "hour 2026-06-01T10: 3/50 calls, used up, next hour 2026-06-01 11:00 UTC" in shown
        assert scrape(cfg).calls == 0 and server.used == 3  # same hour: nothing is asked

        os.environ["OFFICESCORE_NOW"] = "2026-06-01T11:05:00Z"
        server.new_hour()
        server.used = 3  # ...but the server's own window has not turned yet: 403 Rate Limit Exceeded
        refused = scrape(cfg)
        assert (refused.stop_reason, refused.calls, refused.pages) == ("hourly_quota", 1, 0)
        os.environ["OFFICESCORE_NOW"] = "2026-06-01T12:01:00Z"
        server.new_hour()
        last = scrape(cfg)
    finally:
        server.stop()
    assert (last.stop_reason, last.pages) == ("done", 2)
    assert sorted(server.ok_pages) == [("desk lamp", p) for p in range(1, 6)]
    assert set(server.ok_pages.values()) == {1}


def test_unsplash_bad_key_and_foreign_download_location(tmp_path: Path, host: ImageHost) -> None:
    server = FakeUnsplash("another-key", link_for(host)).start()
    try:
        with pytest.raises(ConfigError, match="Unsplash refused the access key") as failure:
            scrape(config(tmp_path, "unsplash", server))
    finally:
        server.stop()
    assert UNSPLASH_KEY not in str(failure.value) and "access token is invalid" in str(failure.value)
    from officescore.scrape.providers import ProviderError, UnsplashProvider

    provider = UnsplashProvider(access_key=UNSPLASH_KEY, endpoint=server.url)
    with pytest.raises(ProviderError, match="not on the Unsplash API host"):
        provider.track_download("https://collector.example/steal?ixid=1")  # the key never leaves
    # Pasted with typographic quotes: the header could not be sent ("unexpected error:
    # UnicodeEncodeError"), where the other providers' keys (in the URL) are an invalid key.
    with pytest.raises(ConfigError, match="unsplash-access-key under .scrape.. holds a character no key has"):
        UnsplashProvider(access_key="\u201cabc\u201d", endpoint=server.url)
    # Two lines pasted (the Access Key and the Secret Key): a newline inside cannot travel in a header
    with pytest.raises(ConfigError, match="holds a character no key has"):
        UnsplashProvider(access_key="abc\ndef", endpoint=server.url)


def test_a_download_event_never_sent_is_no_call_of_the_hour(tmp_path: Path, host: ImageHost) -> None:
    """A search answer whose download_location is on another host: the event is refused without a
    request (the key would travel there), so neither Unsplash's hour nor our ledger has that call."""

    class Foreign(FakeUnsplash):
        def _photo(self, query: str, index: int) -> dict[str, Any]:
            photo = super()._photo(query, index)
            photo["links"]["download_location"] = "https://collector.example/steal?ixid=1"
            return photo

    server = Foreign(UNSPLASH_KEY, link_for(host), total=3).start()
    try:
        cfg = config(tmp_path, "unsplash", server)
        result = scrape(cfg)
        report = status(cfg)
    finally:
        server.stop()
    assert (result.downloads, result.tracked, len(result.events_refused)) == ({"ok": 3}, 0, 3)
    assert "not on the Unsplash API host" in result.events_refused[0]
    assert (result.calls, server.used, report.quota[0].calls, report.quota[0].hour_calls) == (1, 1, 1, 1)


def test_a_search_the_provider_answered_stays_a_call_of_the_quota(tmp_path: Path, host: ImageHost) -> None:
    """Only a request never sent is taken back from the ledger: a search Unsplash answered with a
    final error (HTTP 400) reached it, so it stays counted, in the day and in the hour."""
    server = FakeUnsplash(UNSPLASH_KEY, link_for(host), total=3).start()
    refusal = b'{"errors": ["per_page is invalid"]}'
    server.throttle = [Reply(400, refusal, {"Content-Type": "application/json"})]
    try:
        cfg = config(tmp_path, "unsplash", server)
        with pytest.raises(ProviderError, match="HTTP 400"):
            scrape(cfg)
        report = status(cfg)
    finally:
        server.stop()
    assert (server.used, report.quota[0].calls, report.quota[0].hour_calls) == (1, 1, 1)


def cli_status(args: list[str]) -> str:
    """`officescore scrape --status ...` as a user sees it."""
    import contextlib
    import io

    from officescore.cli import main

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), pytest.raises(SystemExit) as exit_info:
        main(["scrape", *args, "--status"])
    assert exit_info.value.code in (0, None)
    return " ".join(buffer.getvalue().split())


# ---- Flickr --------------------------------------------------------------------------------------


def test_flickr_licence_ids_rights_filter_and_attribution(tmp_path: Path, host: ImageHost) -> None:
    server = FakeFlickr(FLICKR_KEY, link_for(host), total=70).start()
    server.leaky = True  # also returns all-rights-reserved and "no known restrictions" photos
    try:
        result = scrape(config(tmp_path, "flickr", server, per_query=100))
        narrow = scrape(config(tmp_path / "pd", "flickr", server, per_query=100, rights="cc_publicdomain"))
    finally:
        server.stop()
    sent = flickr_searches(server)
    # The ids come from flickr.photos.licenses.getInfo: the CC 4.0 family (11-16) too.
    assert sent[0]["license"] == ["1,2,3,4,5,6,9,10,11,12,13,14,15,16"] and sent[1]["license"] == ["9,10"]
    assert set(sent[0]["extras"][0].split(",")) >= {"license", "owner_name", "url_o"}
    saved = rows(result.out)
    assert len(saved) == 50 and result.skipped == 20  # licences 0 and 7 never saved
    assert not {index_of(r["url"]) % 7 for r in saved} & {5, 6}
    by_index = {index_of(r["url"]): r for r in saved}
    first = by_index[0]
    assert (first["license"], first["license_version"]) == ("by", "2.0")
    assert first["license_url"] == "https://creativecommons.org/licenses/by/2.0/"
    assert (first["creator"], first["creator_url"]) == ("Owner 0", "https://www.flickr.com/photos/1000@N00/")
    assert first["landing_page"] == "https://www.flickr.com/photos/1000@N00/53000000000"
    assert first["attribution"] == '"desk lamp 0" by Owner 0 is licensed under CC BY 2.0.'
    assert by_index[3]["url"].endswith("&size=l")  # the owner hides the original: url_l
    assert by_index[2]["attribution"] == '"desk lamp 2" by Owner 2 is marked with CC0 1.0.'
    assert {r["license"] for r in rows(narrow.out)} == {"cc0", "pdm"}
    no_secret_written(tmp_path)


def flickr_searches(server: FakeFlickr) -> list[dict[str, list[str]]]:
    return [q for _, _, q, _ in server.requests if q.get("method") == ["flickr.photos.search"]]


def flickr_licence(row: sqlite3.Row) -> tuple[str, str, str]:
    return row["license"], row["license_version"], row["license_url"]


def test_flickr_learns_licence_ids_from_get_info(tmp_path: Path, host: ImageHost) -> None:
    """Ids newer than the built-in table (11 CC BY 4.0, 16 CC BY-NC-ND 4.0) are asked for and kept
    with their own version and deed; ids may come as text."""
    server = FakeFlickr(FLICKR_KEY, link_for(host), total=30)
    server.license_of = lambda i: ["11", "16", "4"][i % 3]
    server.license_info = [{**entry, "id": str(entry["id"])} for entry in FLICKR_LICENSE_INFO]
    server.start()
    try:
        result = scrape(config(tmp_path, "flickr", server, per_query=100, download=NO_DOWNLOADS))
    finally:
        server.stop()
    (search,) = flickr_searches(server)
    assert search["license"] == ["1,2,3,4,5,6,9,10,11,12,13,14,15,16"]
    saved = {index_of(r["url"]): r for r in rows(result.out)}
    assert len(saved) == 30 and result.skipped == 0
    assert flickr_licence(saved[0]) == ("by", "4.0", "https://creativecommons.org/licenses/by/4.0/")
    assert saved[0]["attribution"] == '"desk lamp 0" by Owner 0 is licensed under CC BY 4.0.'
    assert flickr_licence(saved[1]) == (
        "by-nc-nd",
        "4.0",
        "https://creativecommons.org/licenses/by-nc-nd/4.0/",
    )
    assert flickr_licence(saved[2]) == ("by", "2.0", "https://creativecommons.org/licenses/by/2.0/")


def test_flickr_asks_only_for_the_ids_the_rights_filter_allows(tmp_path: Path, host: ImageHost) -> None:
    server = FakeFlickr(FLICKR_KEY, link_for(host), total=30)
    server.license_of = lambda i: ["11", "16", "4"][i % 3]
    server.leaky = True  # returns the BY-NC-ND 4.0 photos anyway: the learned table drops them
    server.start()
    rights = "cc_publicdomain|cc_attribute|cc_sharealike"  # no NC, no ND
    try:
        result = scrape(
            config(tmp_path, "flickr", server, per_query=100, rights=rights, download=NO_DOWNLOADS)
        )
    finally:
        server.stop()
    (search,) = flickr_searches(server)
    assert search["license"] == ["4,5,9,10,11,12"]  # 16 (BY-NC-ND 4.0) is not asked for
    saved = rows(result.out)
    assert len(saved) == 20 and result.skipped == 10
    assert {flickr_licence(r)[:2] for r in saved} == {("by", "4.0"), ("by", "2.0")}


@pytest.mark.parametrize(
    "reply",
    [
        Reply(
            200,
            json.dumps({"stat": "fail", "code": 105, "message": "Service currently unavailable"}).encode(),
            {"Content-Type": "application/json"},
        ),
        Reply(500, b"<html>Internal Server Error</html>", {"Content-Type": "text/html"}),
        Reply(200, b'{"licenses": [], "stat": "ok"}', {"Content-Type": "application/json"}),
        Reply(200, b'{"licenses": {"license": [{"id": 0, "url": ""}]}, "stat": "ok"}', {}),
    ],
    ids=["stat-fail", "http-500", "wrong-shape", "no-cc-licence"],
)
def test_flickr_get_info_failing_falls_back_to_the_built_in_table(
    tmp_path: Path, host: ImageHost, reply: Reply
) -> None:
    server = FakeFlickr(FLICKR_KEY, link_for(host), total=30)
    server.license_of = lambda i: ["11", "4", "9"][i % 3]
    server.leaky = True  # the id-11 photos come back: unknown to the built-in table, so dropped
    server.info_reply = reply
    server.start()
    try:
        result = scrape(config(tmp_path, "flickr", server, per_query=100, download=NO_DOWNLOADS))
    finally:
        server.stop()
    assert server.info_calls == 1 and result.stop_reason == "done"
    (search,) = flickr_searches(server)
    assert search["license"] == ["1,2,3,4,5,6,9,10"]
    saved = {index_of(r["url"]): r for r in rows(result.out)}
    assert len(saved) == 20 and result.skipped == 10
    assert flickr_licence(saved[1]) == ("by", "2.0", "https://creativecommons.org/licenses/by/2.0/")
    assert flickr_licence(saved[2]) == ("cc0", "1.0", "https://creativecommons.org/publicdomain/zero/1.0/")


def test_flickr_get_info_unreachable_falls_back_to_the_built_in_table() -> None:
    import socket

    with socket.socket() as probe:  # a port nothing listens on: the connection is refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    provider = FlickrProvider(api_key=FLICKR_KEY, endpoint=f"http://127.0.0.1:{port}", timeout=2)
    assert provider.license_table() == FLICKR_LICENSES


def test_flickr_asks_get_info_once_per_run_and_status_never(tmp_path: Path, host: ImageHost) -> None:
    server = FakeFlickr(FLICKR_KEY, link_for(host), total=700).start()
    queries = ["desk lamp", "home office"]
    cfg = config(tmp_path, "flickr", server, queries=queries, per_query=300, download=NO_DOWNLOADS)
    try:
        result = scrape(cfg)
        report = status(cfg)  # --status makes no call: the paging key needs no ids
    finally:
        server.stop()
    assert result.pages == 6 and len(flickr_searches(server)) == 6
    assert server.info_calls == 1
    # One row a query: the run's paging key and the one --status computes are the same.
    assert sorted((row["query"], row["pages"]) for row in report.queries) == [(q, 3) for q in queries]


def test_flickr_bad_key_is_one_error_without_the_key(tmp_path: Path, host: ImageHost) -> None:
    server = FakeFlickr("the-right-key", link_for(host)).start()
    try:
        with pytest.raises(ConfigError, match="Invalid API Key") as failure:
            scrape(config(tmp_path, "flickr", server))
    finally:
        server.stop()
    assert FLICKR_KEY not in str(failure.value)


# ---- one quota model ---------------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["wikimedia", "unsplash", "flickr"])
def test_hourly_and_daily_limits_pace_every_provider(tmp_path: Path, host: ImageHost, provider: str) -> None:
    fakes = {
        "wikimedia": lambda: FakeCommons(link_for(host), total=100),
        "unsplash": lambda: FakeUnsplash(UNSPLASH_KEY, link_for(host), total=120, limit=1000),
        "flickr": lambda: FakeFlickr(FLICKR_KEY, link_for(host), total=700),
    }
    server = fakes[provider]().start()
    cfg = config(
        tmp_path, provider, server, per_query=300, hourly_quota=1, daily_quota=2, download=NO_DOWNLOADS
    )
    try:
        hour_one = scrape(cfg)
        same_hour = scrape(cfg)
        os.environ["OFFICESCORE_NOW"] = "2026-06-01T11:00:00Z"
        hour_two = scrape(cfg)
        os.environ["OFFICESCORE_NOW"] = "2026-06-01T12:00:00Z"
        day_used = scrape(cfg)
        report = status(replace(cfg, queries=["desk lamp"]))
        os.environ["OFFICESCORE_NOW"] = "2026-06-02T00:30:00Z"
        next_day = scrape(cfg)
    finally:
        server.stop()
    assert (hour_one.stop_reason, hour_one.calls) == ("hourly_quota", 1)
    # The second hour's call is the day's second: the day (checked first) ends that run.
    assert same_hour.calls == 0 and (hour_two.stop_reason, hour_two.calls) == ("quota", 1)
    assert (day_used.stop_reason, day_used.calls) == ("quota", 0)
    assert "after 2026-06-02 00:00 UTC" in day_used.message
    assert next_day.calls == 1 and next_day.pages == 1
    assert len(server.ok_pages) == 3 and set(server.ok_pages.values()) == {1}
    (state,) = report.quota
    assert (state.provider, state.calls, state.limit, state.exhausted) == (provider, 2, 2, True)
    assert (state.hour, state.hour_calls, state.hour_limit) == ("2026-06-01T12", 0, 1)


# ---- SIGKILL mid-search, then resume ------------------------------------------------------------

SIGKILL_CASES = {
    # provider: (fake, per-query, the held page's key, pages in all)
    "wikimedia": (
        lambda h: FakeCommons(link_for(h), total=45),
        60,
        ("desk lamp filetype:bitmap", 20, None),
        3,
    ),
    "unsplash": (lambda h: FakeUnsplash(UNSPLASH_KEY, link_for(h), total=70), 90, ("desk lamp", 2), 3),
    "flickr": (lambda h: FakeFlickr(FLICKR_KEY, link_for(h), total=250), 200, ("desk lamp", 2), 2),
}


@pytest.mark.parametrize("provider", sorted(SIGKILL_CASES))
def test_sigkill_mid_search_then_resume_fetches_no_page_twice(
    tmp_path: Path, host: ImageHost, provider: str
) -> None:
    make, per_query, held, pages = SIGKILL_CASES[provider]
    server = make(host).start()
    server.hold = held  # page 2's request arrives and is never answered: the client is killed
    out = tmp_path / "raw"
    args = ["-q", "desk lamp", "--provider", provider, "--api-endpoint", server.url, "--out", str(out)]
    args += ["--per-query", str(per_query), "--contact", CONTACT]
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "UNSPLASH_ACCESS_KEY": UNSPLASH_KEY,
        "FLICKR_API_KEY": FLICKR_KEY,
    }
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "officescore", "scrape", *args],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        assert server.held.wait(60), "the run never asked for page 2"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        server.hold = None
        server.release.set()
        with Manifest.open(out) as manifest:
            assert [p for p in manifest.query_table()][0]["pages"] == 1  # page 1 was recorded
            assert manifest.quota(provider, "2026-06-01") == (2, False)  # the killed call was counted
        result = scrape(config(tmp_path, provider, server, per_query=per_query, download=NO_DOWNLOADS))
    finally:
        server.release.set()
        server.stop()
    assert result.stop_reason == "done" and result.pages == pages - 1
    # Every page that came back was answered once; the killed request was asked again, nothing else.
    assert len(server.ok_pages) == pages and set(server.ok_pages.values()) == {1}
    assert status(config(tmp_path, provider, server, per_query=per_query)).quota[0].calls == pages + 1


def test_wait_hours_sleeps_through_the_hourly_limit(
    tmp_path: Path, host: ImageHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--wait-hours: the run sleeps to the next clock hour instead of stopping; a clock that did
    not move across the sleep ends the run instead of spinning."""
    from datetime import datetime, timedelta

    from officescore.scrape import run as scrape_run

    server = FakeUnsplash(UNSPLASH_KEY, link_for(host), total=150, limit=2).start()
    slept: list[float] = []

    def sleep(seconds: float) -> None:  # the clock moves by what was slept; Unsplash's hour turns
        slept.append(seconds)
        now = datetime.fromisoformat(os.environ["OFFICESCORE_NOW"].replace("Z", "+00:00"))
        monkeypatch.setenv("OFFICESCORE_NOW", (now + timedelta(seconds=seconds)).isoformat())
        server.new_hour()

    cfg = config(tmp_path, "unsplash", server, per_query=150, wait_hours=True, download=NO_DOWNLOADS)
    try:
        monkeypatch.setattr(scrape_run.time, "sleep", lambda seconds: slept.append(seconds))
        pinned = scrape(replace(cfg, out=tmp_path / "pinned"))
        slept.clear()
        server.ok_pages.clear()  # the pinned run wrote to another folder
        server.new_hour()
        monkeypatch.setattr(scrape_run.time, "sleep", sleep)
        result = scrape(cfg)
    finally:
        server.stop()
    assert pinned.stop_reason == "hourly_quota" and pinned.pages == 2
    assert (result.stop_reason, result.pages, result.calls) == ("done", 5, 5)
    assert slept == [2401.0, 3600.0]  # 10:20 -> 11:00:01, then 11:00:01 -> 12:00:01
    assert [k for k, n in server.ok_pages.items() if n > 1] == []


def test_wait_hours_does_not_wait_out_a_used_up_day(
    tmp_path: Path, host: ImageHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--wait-hours sleeps through an hourly limit only: a used-up day stops the run at once, even
    though each hour that passed would make the hour's limit look fresh."""
    from datetime import datetime, timedelta

    from officescore.scrape import run as scrape_run

    server = FakeUnsplash(UNSPLASH_KEY, link_for(host), total=150, limit=50).start()
    slept: list[float] = []

    def sleep(seconds: float) -> None:  # the clock moves by what was slept
        slept.append(seconds)
        now = datetime.fromisoformat(os.environ["OFFICESCORE_NOW"].replace("Z", "+00:00"))
        monkeypatch.setenv("OFFICESCORE_NOW", (now + timedelta(seconds=seconds)).isoformat())

    monkeypatch.setattr(scrape_run.time, "sleep", sleep)
    cfg = config(
        tmp_path, "unsplash", server, per_query=150, wait_hours=True, daily_quota=2, download=NO_DOWNLOADS
    )
    try:
        result = scrape(cfg)
    finally:
        server.stop()
    assert (result.stop_reason, result.calls, result.pages) == ("quota", 2, 2)
    assert slept == []


@pytest.mark.parametrize("provider", sorted(SIGKILL_CASES))
def test_429_retry_after_is_waited_out_or_kept_as_a_pause(
    tmp_path: Path, host: ImageHost, provider: str
) -> None:
    """Each API's 429 + Retry-After: a short wait is waited out, a long one ends the run and no
    call is made before it is over (the day stays open)."""
    from fakeservers import Reply

    make, per_query, _, pages = SIGKILL_CASES[provider]
    server = make(host).start()
    throttled = lambda seconds: Reply(429, b"Too Many Requests", {"Retry-After": str(seconds)})  # noqa: E731
    server.throttle = [throttled(0), throttled(600)]
    cfg = config(tmp_path, provider, server, per_query=per_query, download=NO_DOWNLOADS)
    try:
        paused = scrape(cfg)
        assert (paused.stop_reason, paused.calls, paused.pages) == ("rate_limited", 2, 0)
        assert paused.quota.to_dict()["retry_after"] == "2026-06-01T10:30:00+00:00"
        os.environ["OFFICESCORE_NOW"] = "2026-06-01T10:29:00Z"
        assert scrape(cfg).calls == 0
        os.environ["OFFICESCORE_NOW"] = "2026-06-01T10:30:01Z"
        resumed = scrape(cfg)
    finally:
        server.stop()
    assert (resumed.stop_reason, resumed.pages) == ("done", pages)
    assert set(server.ok_pages.values()) == {1} and len(server.ok_pages) == pages


@pytest.mark.parametrize("provider", ["unsplash", "flickr"])
def test_keys_never_reach_the_terminal_or_the_files(
    tmp_path: Path,
    host: ImageHost,
    provider: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from officescore.cli import main

    make = {
        "unsplash": lambda: FakeUnsplash(UNSPLASH_KEY, link_for(host), total=40),
        "flickr": lambda: FakeFlickr(FLICKR_KEY, link_for(host), total=40),
    }
    server = make[provider]()
    server.echo_key = True  # the key comes back inside titles: it must be scrubbed before storing
    server.start()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("UNSPLASH_ACCESS_KEY", UNSPLASH_KEY)
    monkeypatch.setenv("FLICKR_API_KEY", FLICKR_KEY)
    common = ["--provider", provider, "--out", "raw", "-q", "desk lamp"]
    texts = []
    try:
        for args in (
            [*common, "--api-endpoint", server.url, "--allow-private-hosts", "--min-size", "64"],
            [*common, "--status"],
            [*common, "--status", "--json"],
            ["--out", "raw", "--export", "labelling"],
        ):
            with pytest.raises(SystemExit) as exit_info:
                main(["scrape", *args])
            captured = capsys.readouterr()
            assert exit_info.value.code in (0, None), captured.err
            texts.append(captured.out + captured.err)
    finally:
        server.stop()
    assert "Done" in texts[0] and "kept" in texts[0]
    for text in texts:
        assert UNSPLASH_KEY not in text and FLICKR_KEY not in text
    no_secret_written(tmp_path)
