"""`officescore scrape` end to end against real HTTP servers on 127.0.0.1 (see fakeservers.py)."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import signal
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import quote
from urllib.request import urlopen

import pytest
from fakeservers import (
    FakeCustomSearch,
    FakeOpenverse,
    FakeServer,
    ImageHost,
    Reply,
    encode,
    scene,
    self_signed_certificate,
)

from officescore.errors import ConfigError
from officescore.scrape import DownloadConfig, ScrapeConfig, export, scrape, status
from officescore.scrape.providers import DEFAULT_RIGHTS, GOOGLE_CLOSING_NOTICE, ProviderError

KEY = "AIzaSyTEST-never-write-me-4f9d2c"
CX = "017576662512468239146:omuauf_lfve"
FAST = DownloadConfig(
    workers=4,
    per_host=4,
    connect_timeout=2,
    read_timeout=0.4,
    retries=2,
    backoff=0.01,
    min_width=64,
    min_height=64,
)
PRIVATE_OK = DownloadConfig(**{**FAST.__dict__, "allow_private_hosts": True})


@pytest.fixture(autouse=True)
def before_google_cutoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Google's API is off from 2027-01-01: these tests run on a day it still answers."""
    monkeypatch.setenv("OFFICESCORE_NOW", "2026-06-01T12:00:00Z")


@pytest.fixture(scope="module")
def host() -> Iterator[ImageHost]:
    server = ImageHost(slow_delay=1.5).start()
    yield server
    server.stop()


@pytest.fixture()
def google(host: ImageHost) -> Iterator[FakeCustomSearch]:
    link = lambda q, i: f"{host.url}/good/{i % 12}?q={quote(q)}&i={i}"  # noqa: E731
    server = FakeCustomSearch(KEY, CX, link, total=30).start()
    yield server
    server.stop()


def google_config(tmp_path: Path, server: FakeCustomSearch, **kwargs: object) -> ScrapeConfig:
    base: dict[str, object] = {
        "queries": ["unique home office", "well lit home office"],
        "per_query": 30,
        "daily_quota": 100,
        "out": tmp_path / "raw",
        "api_endpoint": server.url,
        "google_key": KEY,
        "google_cx": CX,
        "api_backoff": 0.01,
        "download": PRIVATE_OK,
    }
    base.update(kwargs)
    return ScrapeConfig(**base)  # type: ignore[arg-type]


def rows(out: Path) -> list[sqlite3.Row]:
    db = sqlite3.connect(f"file:{out / 'manifest.sqlite'}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        return list(db.execute("SELECT * FROM results ORDER BY id"))
    finally:
        db.close()


def search_params(server: FakeCustomSearch) -> list[dict[str, str]]:
    return [
        {k: v[0] for k, v in q.items()} for _, path, q, _ in server.requests if path == "/customsearch/v1"
    ]


# ---- Google: paging, cap, parameters ------------------------------------------------------------


def test_google_pages_to_the_api_cap_and_sends_the_rights_filter(tmp_path: Path, host: ImageHost) -> None:
    server = FakeCustomSearch(KEY, CX, lambda q, i: f"{host.url}/good/{i % 12}?i={i}", total=500).start()
    try:
        config = google_config(tmp_path, server, queries=["home office"], per_query=100, download=FAST)
        requests_before = host.counts.total()
        result = scrape(config)
        params = search_params(server)
        assert [(int(p["start"]), int(p["num"])) for p in params] == [(1 + 10 * i, 10) for i in range(9)] + [
            (91, 9)
        ]  # start + num never past 100
        assert all(p["rights"] == DEFAULT_RIGHTS for p in params)
        assert {(p["searchType"], p["imgType"], p["safe"], p["cx"]) for p in params} == {
            ("image", "photo", "active", CX)
        }
        assert result.pages == 10 and result.calls == 10 and result.new_results == 99
        # The imitation enforces the real API's cap: start 91 with num 10 is a 400 INVALID_ARGUMENT.
        with pytest.raises(Exception) as answer:
            urlopen(f"{server.url}/customsearch/v1?key={KEY}&cx={CX}&q=x&start=91&num=10")
        assert answer.value.code == 400  # type: ignore[attr-defined]
        assert json.loads(answer.value.read())["error"]["status"] == "INVALID_ARGUMENT"  # type: ignore[attr-defined]
        # No --allow-private-hosts: every loopback image URL is refused, none is requested.
        assert {row["status"] for row in rows(config.out)} == {"refused"}
        assert all("private/loopback" in row["error"] for row in rows(config.out))
        assert host.counts.total() == requests_before
        assert result.notices == [GOOGLE_CLOSING_NOTICE]
    finally:
        server.stop()


def test_google_custom_filters_are_sent(tmp_path: Path, google: FakeCustomSearch) -> None:
    config = google_config(
        tmp_path,
        google,
        queries=["desk"],
        per_query=10,
        rights="cc_publicdomain",
        safe="off",
        img_size="large",
        file_type="jpg",
        download=FAST,
    )
    scrape(config)
    (params,) = search_params(google)
    assert (params["rights"], params["safe"], params["imgSize"], params["fileType"]) == (
        "cc_publicdomain",
        "off",
        "LARGE",
        "jpg",
    )
    assert rows(config.out)[0]["rights"] == "cc_publicdomain"


# ---- quota: clean stop, Pacific midnight, resume without paying twice ---------------------------


def test_quota_stop_and_resume_after_pacific_midnight(
    tmp_path: Path, google: FakeCustomSearch, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = google_config(tmp_path, google, daily_quota=4)  # 2 queries x 3 pages = 6 calls needed

    monkeypatch.setenv("OFFICESCORE_NOW", "2026-03-01T10:00:00-08:00")
    first = scrape(config)
    assert (first.stop_reason, first.calls, first.next_query, first.next_page) == (
        "quota",
        4,
        "well lit home office",
        2,
    )
    assert "2026-03-02 00:00 PST (2026-03-02 08:00 UTC)" in first.message
    assert "12 image(s) kept this run" in first.message  # 40 results over 12 distinct pictures
    assert first.quota.to_dict()["resets_at_utc"] == "2026-03-02T08:00:00+00:00"

    again = scrape(config)  # same day: nothing is spent
    assert (again.stop_reason, again.calls) == ("quota", 0)
    monkeypatch.setenv("OFFICESCORE_NOW", "2026-03-02T07:30:00Z")  # 23:30 in Los Angeles, same day
    assert scrape(config).calls == 0
    assert len(google.requests) == 4

    # Past midnight Pacific; Google itself now answers 429 RESOURCE_EXHAUSTED after one page.
    monkeypatch.setenv("OFFICESCORE_NOW", "2026-03-02T08:30:00Z")
    google.reset_quota(1)
    second = scrape(config)
    assert (second.stop_reason, second.calls, second.pages) == ("quota", 2, 1)
    assert "provider says exhausted" in second.message
    assert (second.next_query, second.next_page) == ("well lit home office", 3)
    assert scrape(config).calls == 0  # the 429 marked the whole day exhausted
    assert len(google.requests) == 6

    monkeypatch.setenv("OFFICESCORE_NOW", "2026-03-03T09:00:00Z")
    google.reset_quota(None)
    third = scrape(config)
    assert (third.stop_reason, third.calls) == ("done", 1)
    # Every page was answered exactly once over all runs: nothing was paid for twice.
    assert sorted(google.ok_pages.items()) == sorted(((q, s), 1) for q in config.queries for s in (1, 11, 21))
    report = status(config)
    assert [(row["query"], row["pages"], row["complete"]) for row in report.queries] == [
        ("unique home office", 3, True),
        ("well lit home office", 3, True),
    ]
    assert report.quota[0].day == "2026-03-03" and report.quota[0].calls == 1
    assert scrape(config).calls == 0  # complete: nothing more to fetch


def test_server_errors_are_retried_then_reported_without_the_key(
    tmp_path: Path, google: FakeCustomSearch
) -> None:
    config = google_config(tmp_path, google, queries=["desk"], per_query=10, api_retries=2)
    google.fail = [503, 503, 503]  # one more than the retries
    with pytest.raises(ProviderError) as failure:
        scrape(config)
    assert "503" in str(failure.value) and KEY not in str(failure.value) and "key=***" in str(failure.value)
    assert len(google.requests) == 3
    google.fail = [500]
    result = scrape(config)  # one failure, then the page
    assert (result.calls, result.pages, result.stop_reason) == (2, 1, "done")
    assert status(config).quota[0].calls == 5  # every attempt counted against the quota


def test_bad_key_is_a_config_error(tmp_path: Path, google: FakeCustomSearch) -> None:
    config = google_config(tmp_path, google, google_key="AIza-wrong")
    with pytest.raises(ConfigError, match="rejected the API key") as failure:
        scrape(config)
    assert "AIza-wrong" not in str(failure.value)


# ---- downloads: every status, retries, timeouts, files ------------------------------------------

KINDS = {
    "good/0": "ok",
    "good/1": "ok",
    "dup/0": "duplicate",
    "near/1": "near_duplicate",
    "redirect/2": "ok",
    "png/4": "ok",
    "flaky/3": "ok",
    "broken": "not_image",
    "html": "not_image",
    "small": "too_small",
    "huge": "too_large",
    "endless": "too_large",
    "bomb": "too_large",
    "missing": "http_error",
    "loop": "http_error",
    "slow/5": "timeout",
}


def test_every_download_status(tmp_path: Path, host: ImageHost) -> None:
    kinds = list(KINDS)
    server = FakeCustomSearch(KEY, CX, lambda q, i: f"{host.url}/{kinds[i]}?i={i}", total=len(kinds)).start()
    config = google_config(
        tmp_path,
        server,
        queries=["office"],
        per_query=20,
        download=DownloadConfig(**{**PRIVATE_OK.__dict__, "max_bytes": 1_000_000}),
    )
    try:
        result = scrape(config)
    finally:
        server.stop()
    got = {row["url"].split("/", 3)[3].split("?")[0]: row for row in rows(config.out)}
    assert {kind: row["status"] for kind, row in got.items()} == KINDS
    assert got["flaky/3"]["attempts"] == 3 and host.counts["/flaky/3"] == 3  # 503, 503, then the image
    assert got["missing"]["attempts"] == 1 and host.counts["/missing"] == 1  # 4xx: never retried
    assert got["slow/5"]["attempts"] == 3 and host.counts["/slow/5"] == 3  # read timeout, retried
    assert got["dup/0"]["duplicate_of"] == got["good/0"]["id"] and got["dup/0"]["distance"] == 0
    assert got["near/1"]["duplicate_of"] == got["good/1"]["id"] and got["near/1"]["distance"] <= 10
    assert "decompression bomb" in got["bomb"]["error"] and "declared" in got["huge"]["error"]
    assert "byte cap" in got["endless"]["error"] and "truncated" in got["broken"]["error"]
    assert result.downloads["ok"] == 5 and result.kept_total == 5
    # Kept files: named by their sha256, in their real format (png/4 was sent as octet-stream).
    images = config.out / "images"
    kept = {row["path"] for row in got.values() if row["status"] == "ok"}
    assert {f"images/{p.name}" for p in images.iterdir()} == kept
    for path in kept:
        data = (config.out / path).read_bytes()
        assert Path(path).stem == hashlib.sha256(data).hexdigest()
    assert got["png/4"]["path"].endswith(".png") and got["good/0"]["path"].endswith(".jpg")
    assert (got["good/0"]["width"], got["good/0"]["height"]) == (320, 240)


def test_hosts_that_failed_for_a_passing_reason_are_tried_again_by_later_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A photo whose host answered 503 (or timed out) through every retry was final, and as its
    search page is never fetched again, lost for good; a 404 is final. Later runs try the first
    kind again, until it has had MAX_ATTEMPTS in all."""
    from officescore.scrape import manifest

    host = ImageHost().start()
    host.flaky_failures = 4  # one run's three attempts fail, the next run's second succeeds
    host.flaky_seen["/flaky/8"] = -1_000_000  # down for good
    kinds = ["flaky/7", "missing", "flaky/8"]
    server = FakeCustomSearch(KEY, CX, lambda q, i: f"{host.url}/{kinds[i]}", total=len(kinds)).start()
    config = google_config(tmp_path, server, queries=["office"], per_query=10)
    try:
        first = scrape(config)
        by_kind = {row["url"].split("/", 3)[3]: (row["status"], row["attempts"]) for row in rows(config.out)}
        assert by_kind == {
            "flaky/7": ("unavailable", 3),
            "missing": ("http_error", 1),
            "flaky/8": ("unavailable", 3),
        }
        assert first.downloads == {"unavailable": 2, "http_error": 1} and first.retry_later == 2
        second = scrape(config)
        by_kind = {row["url"].split("/", 3)[3]: (row["status"], row["attempts"]) for row in rows(config.out)}
        assert by_kind == {"flaky/7": ("ok", 5), "missing": ("http_error", 1), "flaky/8": ("unavailable", 6)}
        assert second.downloads == {"ok": 1, "unavailable": 1} and second.kept_total == 1
        assert host.counts["/missing"] == 1 and server.counts["/customsearch/v1"] == 1  # no new search
        monkeypatch.setattr(manifest, "MAX_ATTEMPTS", 6)
        third = scrape(config)
        assert third.downloads == {} and host.counts["/flaky/8"] == 6  # its attempts are spent
        assert third.retry_later == 0 and second.retry_later == 1  # nothing left to try: not announced
    finally:
        server.stop()
        host.stop()


# ---- Openverse, export ----------------------------------------------------------------------------


def test_openverse_licences_paging_rate_limit_and_export(
    tmp_path: Path, host: ImageHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = FakeOpenverse(lambda q, i: f"{host.url}/good/{i}?ov={i}", total=45).start()
    server.throttle = [0]  # the first request is throttled with Retry-After: 0
    server.client_id, server.client_secret = "my-app", "ov-secret-xyz-123"
    config = ScrapeConfig(
        queries=["cozy home office"],
        provider="openverse",
        per_query=100,
        out=tmp_path / "raw",
        api_endpoint=server.url,
        openverse_client_id="my-app",
        openverse_client_secret="ov-secret-xyz-123",
        download=PRIVATE_OK,
    )
    try:
        result = scrape(config)
    finally:
        server.stop()
    pages = [q for method, path, q, _ in server.requests if path == "/v1/images/"]
    assert [p["page"][0] for p in pages] == ["1", "1", "2", "3"]  # throttled once, then paged to the end
    assert {p["license"][0] for p in pages} == {"cc0,pdm,by,by-sa,by-nc,by-nc-sa,by-nd,by-nc-nd"}
    assert {p["page_size"][0] for p in pages} == {"20"}
    assert server.counts["/v1/auth_tokens/token/"] == 1
    assert result.stop_reason == "done" and result.pages == 3 and result.new_results == 45
    assert result.notices == []  # the Google notice is for the google provider only
    first = rows(config.out)[0]
    assert (first["license"], first["license_version"], first["creator"]) == ("by-sa", "2.0", "Creator_0")
    assert first["landing_page"] == "https://www.flickr.com/photos/someone/0"

    exported = export(config.out, tmp_path / "labelling")
    assert (exported.rows, exported.kept) == (45, 12)
    listed = exported.image_list.read_text().splitlines()
    assert len(listed) == 12 and all((exported.folder / line).is_file() for line in listed)
    attribution = exported.attribution.read_text()
    assert "[CC BY-SA 2.0](https://creativecommons.org/licenses/by-sa/2.0/)" in attribution
    assert "Creator\\_0" in attribution and "https://www.flickr.com/photos/someone/0" in attribution
    csv_lines = exported.csv.read_text().splitlines()
    assert len(csv_lines) == 46 and csv_lines[0].startswith("id,provider,query")
    for path in [*config.out.rglob("*"), *exported.folder.rglob("*")]:
        if path.is_file():
            data = path.read_bytes()
            assert b"ov-secret-xyz-123" not in data and server.token.encode() not in data


# ---- safety ----------------------------------------------------------------------------------------


def test_redirect_hops_are_checked_and_only_http_is_fetched(
    tmp_path: Path, host: ImageHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    from officescore.scrape import download

    # Pretend 127.0.0.1 is a public address so the first hop passes; [::1] stays loopback.
    real = download._is_public
    monkeypatch.setattr(download, "_is_public", lambda a: a == "127.0.0.1" or real(a))
    fetcher = download.Downloader(FAST, tmp_path)
    followed = fetcher.fetch(f"{host.url}/redirect/2")
    assert followed.status == "fetched" and followed.final_url == f"{host.url}/good/2"
    followed.discard()
    refused = fetcher.fetch(f"{host.url}/to-private/2")
    assert refused.status == "refused" and "resolves to ::1" in (refused.error or "")
    for url in ("file:///etc/passwd", "ftp://example.com/a.jpg", "gopher://x/1"):
        assert fetcher.fetch(url).status == "refused"
    monkeypatch.setattr(download, "_is_public", real)
    assert download.Downloader(FAST, tmp_path).fetch(f"{host.url}/good/1").status == "refused"
    assert not list(tmp_path.glob("*.part")) and not list(tmp_path.glob(".*.part"))


def test_a_download_requests_cannot_send_is_final_not_tried_again(tmp_path: Path, host: ImageHost) -> None:
    """A User-Agent no header can carry fails before anything is sent: `refused` with the cause, not
    `unavailable` (tried again by every later run, 12 attempts each)."""
    from officescore.scrape import download

    fetched = download.Downloader(replace(PRIVATE_OK, user_agent="x (me\nx)"), tmp_path).fetch(
        f"{host.url}/good/1"
    )
    assert (fetched.status, fetched.attempts) == ("refused", 1)
    assert (fetched.error or "").startswith("not sent (InvalidHeader): a header holds a character")


class _Internal(FakeServer):
    """What a rebinding attacker wants to reach: a service on another loopback address."""

    def route(self, method: str, path: str, query: dict, body: bytes, headers: dict) -> Reply:
        return Reply(200, encode(scene(99)), {"Content-Type": "image/jpeg"})


def _rebinding_dns(monkeypatch: pytest.MonkeyPatch, name: str, answers: list[str]) -> list[str]:
    """`name` resolves to answers[0] on the first lookup and answers[1] ever after (DNS rebinding)."""
    real = socket.getaddrinfo
    lookups: list[str] = []

    def fake(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != name:
            return real(host, port, *args, **kwargs)
        address = answers[min(len(lookups), 1)]
        lookups.append(address)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port)))]

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return lookups


def test_connection_goes_to_the_address_that_was_checked(
    tmp_path: Path, host: ImageHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    from officescore.scrape import download

    port = host.server.server_address[1]
    internal = _Internal(("127.0.0.2", port)).start()  # same port, another loopback address
    try:
        real = download._is_public
        monkeypatch.setattr(download, "_is_public", lambda a: a == "127.0.0.1" or real(a))
        lookups = _rebinding_dns(monkeypatch, "images.rebind.test", ["127.0.0.1", "127.0.0.2"])
        before = host.counts["/good/3"]
        fetched = download.Downloader(FAST, tmp_path).fetch(f"http://images.rebind.test:{port}/good/3")
        assert lookups == ["127.0.0.1"]  # checked once; the connection did not ask DNS again
        assert fetched.status == "fetched" and fetched.sha256 == hashlib.sha256(host.jpegs[3]).hexdigest()
        assert internal.counts.total() == 0 and host.counts["/good/3"] == before + 1
        # The Host header still names the host in the URL (virtual hosting keeps working).
        assert host.requests[-1][3]["host"] == f"images.rebind.test:{port}"
        fetched.discard()
    finally:
        internal.stop()


def test_pinned_https_keeps_sni_and_certificate_checks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from officescore.scrape import download

    name = "secure.rebind.test"
    certfile, keyfile = self_signed_certificate(name, tmp_path)
    tls = ImageHost(n_images=4).use_tls(certfile, keyfile).start()
    try:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", certfile)  # trust the test certificate only
        real = download._is_public
        monkeypatch.setattr(download, "_is_public", lambda a: a == "127.0.0.1" or real(a))
        port = tls.server.server_address[1]
        lookups = _rebinding_dns(monkeypatch, name, ["127.0.0.1", "127.0.0.3"])
        fetcher = download.Downloader(FAST, tmp_path / "tmp")
        fetched = fetcher.fetch(f"https://{name}:{port}/good/2")
        assert fetched.status == "fetched", fetched.error
        assert lookups == ["127.0.0.1"]
        fetched.discard()
        # Verification is against the name in the URL, not the pinned address: an IP URL fails it.
        by_address = download.Downloader(FAST, tmp_path / "tmp").fetch(f"https://127.0.0.1:{port}/good/2")
        assert by_address.status == "http_error" and by_address.attempts == 1  # not worth a retry
        assert "certificate" in (by_address.error or "")
    finally:
        tls.stop()


class _Drip(FakeServer):
    """Sends a JPEG (about 7 KB: under one 64 KiB read piece) 100 bytes at a time, 0.1 s apart: each
    read is within the read timeout, the whole body takes about 7 s. /gzip sends it compressed, whole."""

    def route(self, method: str, path: str, query: dict, body: bytes, headers: dict) -> Reply:
        jpeg = encode(scene(7))
        if path == "/gzip":
            return Reply(200, gzip.compress(jpeg), {"Content-Type": "image/jpeg", "Content-Encoding": "gzip"})
        if path == "/steady":  # a slow link, not a drip: 10 pieces, 0.2 s apart (about 3.5 KB/s)
            return Reply(200, jpeg, {"Content-Type": "image/jpeg"}, chunks=10, pause=0.2)
        return Reply(200, jpeg, {"Content-Type": "image/jpeg"}, chunks=len(jpeg) // 100, pause=0.1)


def test_a_slow_drip_is_cut_off_at_the_total_timeout(tmp_path: Path) -> None:
    from officescore.scrape import download

    server = _Drip().start()
    try:
        config = replace(PRIVATE_OK, read_timeout=1.0, total_timeout=1.0, retries=0)
        started = time.monotonic()
        dripped = download.Downloader(config, tmp_path).fetch(f"{server.url}/drip")
        took = time.monotonic() - started
        whole = download.Downloader(config, tmp_path).fetch(f"{server.url}/gzip")
    finally:
        server.stop()
    assert dripped.status == "timeout" and "took over 1s" in (dripped.error or ""), dripped
    assert took < 3.0  # not the 7 s the body takes to drip in
    assert whole.status == "fetched" and whole.sha256 == hashlib.sha256(encode(scene(7))).hexdigest()
    whole.discard()
    assert not list(tmp_path.glob(".*.part"))


def test_a_large_photo_on_a_slow_link_is_not_cut_off_at_the_total_timeout(tmp_path: Path) -> None:
    """Past the total timeout only a body slower than the least rate is cut off: a steady 3.5 KB/s
    body arrives whole in 2 s with a 0.5 s total timeout when the least rate is 1 KB/s, and is cut
    off when it is 10 KB/s."""
    from officescore.scrape import download

    server = _Drip().start()
    try:
        config = replace(PRIVATE_OK, total_timeout=0.5, retries=0)
        slow_link = download.Downloader(replace(config, min_rate=1000), tmp_path).fetch(
            f"{server.url}/steady"
        )
        too_slow = download.Downloader(replace(config, min_rate=10_000), tmp_path).fetch(
            f"{server.url}/steady"
        )
    finally:
        server.stop()
    assert slow_link.status == "fetched" and slow_link.sha256 == hashlib.sha256(encode(scene(7))).hexdigest()
    slow_link.discard()
    assert too_slow.status == "timeout" and "bytes/s (under 10,000)" in (too_slow.error or ""), too_slow


def test_past_the_total_timeout_the_rate_is_judged_not_the_size() -> None:
    """A 1 MB body after 61 s came at 16 KB/s, under the 32 KiB/s least rate: cut off, however many
    bytes it already holds; 3 MB in 61 s (49 KB/s) goes on, and nothing is cut inside the timeout."""
    from officescore.scrape import download

    downloader = download.Downloader(download.DownloadConfig(), Path("."))
    with pytest.raises(download._Retry, match="under 32,768"):
        downloader._check_rate(1_000_000, 61.0)
    downloader._check_rate(3_000_000, 61.0)
    downloader._check_rate(10, 59.0)


def test_one_downloader_maps_again_after_a_map_ended_and_a_stopped_one_sends_nothing(tmp_path: Path) -> None:
    """A map's end stops the downloads under way (Ctrl-C); the next map downloads again, and a fetch
    begun after the stop makes no request (no retry after Ctrl-C)."""
    from officescore.scrape import download

    server = _Drip().start()
    try:
        downloader = download.Downloader(replace(PRIVATE_OK, retries=1), tmp_path)
        for _ in range(2):
            ((_, fetched),) = list(downloader.map([(1, f"{server.url}/gzip")]))
            assert fetched.status == "fetched", fetched
            fetched.discard()
        before = dict(server.counts)
        assert downloader.fetch(f"{server.url}/gzip").attempts == 0  # map's end stopped it
        assert dict(server.counts) == before
    finally:
        server.stop()


def test_a_connection_opened_as_the_run_stopped_is_shut_too(tmp_path: Path) -> None:
    """A connect under way at Ctrl-C finishes after the stop shut the others: its read must not wait
    out the read timeout (and its retries) before the run can end."""
    from officescore.scrape import download

    downloader = download.Downloader(PRIVATE_OK, tmp_path)
    downloader._stop()
    ours, host = socket.socketpair()
    with ours, host:
        ours.settimeout(2.0)
        downloader._opened(ours)
        assert ours.recv(1) == b""  # shut: the read returns at once, as if the host hung up


def test_a_stop_while_workers_open_connections_ends_them_all(tmp_path: Path) -> None:
    """Ctrl-C as workers open connections: listing the open sockets while one was added raised
    "RuntimeError: Set changed size during iteration" from the end of `map`, not the interrupt."""
    import sys
    import threading

    from officescore.scrape import download

    class Socket:  # what the stop needs of a socket
        def shutdown(self, how: int) -> None:
            pass

    downloader = download.Downloader(PRIVATE_OK, tmp_path)
    opened: list[Socket] = []
    done = threading.Event()

    def worker() -> None:
        while not done.is_set():
            opened.append(Socket())
            downloader._opened(opened[-1])
            del opened[:-50]  # closed ones leave the set too

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch as often as they can
    thread = threading.Thread(target=worker)
    thread.start()
    try:
        for _ in range(3000):
            downloader._stop()
    finally:
        done.set()
        thread.join()
        sys.setswitchinterval(interval)


class _Broken(FakeServer):
    """A photo whose body stops: /stall pauses past the read timeout halfway, /cut closes the
    connection short of its Content-Length."""

    def route(self, method: str, path: str, query: dict, body: bytes, headers: dict) -> Reply:
        jpeg = encode(scene(9))
        if path == "/stall":
            return Reply(200, jpeg, {"Content-Type": "image/jpeg"}, chunks=2, pause=1.0)
        cut = {"Content-Type": "image/jpeg", "Content-Length": str(len(jpeg) + 1000)}
        return Reply(200, jpeg, cut, close_delimited=True)


def test_a_ctrl_c_whose_raise_python_dropped_still_stops_the_downloads(tmp_path: Path) -> None:
    """Python drops Ctrl-C's KeyboardInterrupt when it lands in a weakref callback or a `__del__`
    (here: a handler that raises nothing stands in for it); the downloads went on to their 20 s
    timeouts. The map notices the Ctrl-C itself and stops within a fifth of a second."""
    from officescore.scrape import download

    def drop(number: int, frame: Any) -> None:  # Ctrl-C's raise, lost
        return None

    host = ImageHost(slow_delay=30).start()
    original = signal.signal(signal.SIGINT, drop)
    try:
        downloader = download.Downloader(replace(PRIVATE_OK, read_timeout=20.0, retries=0), tmp_path)
        threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
        started = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            list(downloader.map([(i, f"{host.url}/slow/{i}") for i in range(3)]))
        took = time.monotonic() - started
        restored = signal.getsignal(signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, original)
        host.stop()
    assert took < 5.0, took
    assert restored is drop  # the map's own handler is gone once it ends


def test_a_body_that_stops_halfway_is_retried_then_reported(tmp_path: Path) -> None:
    """Read piece by piece (read1), a stalled or cut body raises urllib3's own errors, not requests'
    wrapped ones: each is a retried timeout or unavailable, never an error that stops the scrape."""
    from officescore.scrape import download

    server = _Broken().start()
    try:
        fetcher = download.Downloader(replace(PRIVATE_OK, read_timeout=0.3, retries=1), tmp_path)
        stalled, cut = fetcher.fetch(f"{server.url}/stall"), fetcher.fetch(f"{server.url}/cut")
    finally:
        server.stop()
    assert (stalled.status, stalled.attempts) == ("timeout", 2), stalled
    assert (cut.status, cut.attempts) == ("unavailable", 2), cut
    assert "download interrupted" in (stalled.error or "") and "download interrupted" in (cut.error or "")
    assert not list(tmp_path.glob(".*.part"))
    with socket.socket() as closed:  # a host that refuses connections (down for now): tried again later
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    refused = fetcher.fetch(f"http://127.0.0.1:{port}/desk.jpg")
    assert (refused.status, refused.attempts) == ("unavailable", 2), refused


class _Busy(FakeServer):
    """An image CDN that answers a burst with 429 (Retry-After: 1, or none) before the photo."""

    def __init__(self) -> None:
        super().__init__()
        self.refused: dict[str, int] = {"/after": 1, "/bare": 2, "/busy": 99, "/later": 99}

    def route(self, method: str, path: str, query: dict, body: bytes, headers: dict) -> Reply:
        with self.lock:
            busy = self.refused.get(path, 0) > 0
            self.refused[path] = self.refused.get(path, 0) - 1
        if busy:
            wait = {"/after": {"Retry-After": "1"}, "/later": {"Retry-After": "30"}}.get(path, {})
            return Reply(429, b"Too Many Requests", {"Content-Type": "text/plain", **wait})
        return Reply(200, encode(scene(8)), {"Content-Type": "image/jpeg"})


def test_an_image_host_429_is_waited_out_and_retried(tmp_path: Path) -> None:
    from officescore.scrape import download

    server = _Busy().start()
    try:
        fetcher = download.Downloader(replace(PRIVATE_OK, retries=2), tmp_path)
        started = time.monotonic()
        after = fetcher.fetch(f"{server.url}/after")
        waited = time.monotonic() - started
        bare = fetcher.fetch(f"{server.url}/bare")
        bare_waited = time.monotonic() - started - waited
        busy = fetcher.fetch(f"{server.url}/busy")  # 429 through every retry: a later run tries again
    finally:
        server.stop()
    assert (busy.status, busy.attempts) == ("unavailable", 3), busy
    assert after.status == "fetched" and after.attempts == 2, after
    assert 1.0 <= waited < 5.0  # its Retry-After was honoured, and no more than that
    assert bare.status == "fetched" and bare.attempts == 3, bare
    assert bare_waited < 5.0  # no Retry-After: the usual backoff, not the longest wait
    after.discard()
    bare.discard()


def test_a_stop_ends_the_wait_for_a_retry_at_once(tmp_path: Path) -> None:
    """Ctrl-C during a host's 30 s Retry-After: the download ends now, not after the wait."""
    import threading

    from officescore.scrape import download

    server = _Busy().start()
    try:
        downloader = download.Downloader(replace(PRIVATE_OK, retries=2), tmp_path)
        done: list[download.Fetched] = []
        worker = threading.Thread(target=lambda: done.append(downloader.fetch(f"{server.url}/later")))
        worker.start()
        time.sleep(0.5)  # the first answer (429, Retry-After: 30) is in: waiting
        started = time.monotonic()
        downloader._stop()  # what the end of `map` does on Ctrl-C
        worker.join(10)
        waited = time.monotonic() - started
    finally:
        server.stop()
    assert waited < 3.0 and done and (done[0].status, done[0].attempts) == ("unavailable", 1), (waited, done)


# ---- rate limits and outages ------------------------------------------------------------------------


def openverse_config(tmp_path: Path, server: FakeOpenverse, **kwargs: object) -> ScrapeConfig:
    base: dict[str, object] = {
        "queries": ["cozy home office"],
        "provider": "openverse",
        "per_query": 60,
        "out": tmp_path / "raw",
        "api_endpoint": server.url,
        "download": PRIVATE_OK,
    }
    base.update(kwargs)
    return ScrapeConfig(**base)  # type: ignore[arg-type]


def test_a_long_rate_limit_pauses_without_using_up_the_day(
    tmp_path: Path, host: ImageHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = FakeOpenverse(lambda q, i: f"{host.url}/good/{i % 12}?ov={i}", total=60).start()
    try:
        config = openverse_config(tmp_path, server)
        monkeypatch.setenv("OFFICESCORE_NOW", "2026-03-01T10:00:00Z")
        server.throttle = []
        first_page = scrape(replace(config, per_query=20))  # page 1 of 3
        assert first_page.pages == 1
        server.throttle = [200]  # longer than the run waits, far shorter than a day
        paused = scrape(config)
        assert (paused.stop_reason, paused.calls, paused.pages) == ("rate_limited", 1, 0)
        assert (paused.next_query, paused.next_page) == ("cozy home office", 2)
        assert not paused.quota.exhausted and paused.quota.remaining == 98
        assert paused.quota.to_dict()["retry_after"] == "2026-03-01T10:03:20+00:00"
        assert "until 2026-03-01 10:03:20 UTC" in paused.message and "not used up" in paused.message
        assert status(config).quota[0].retry_at is not None

        monkeypatch.setenv("OFFICESCORE_NOW", "2026-03-01T10:03:00Z")  # still inside the pause
        assert scrape(config).calls == 0
        monkeypatch.setenv("OFFICESCORE_NOW", "2026-03-01T10:03:21Z")  # same UTC day, pause over
        resumed = scrape(config)
        assert (resumed.stop_reason, resumed.pages) == ("done", 2)
        pages = [q["page"][0] for _, path, q, _ in server.requests if path == "/v1/images/"]
        assert pages == ["1", "2", "2", "3"]  # the throttled call was repeated, nothing else
    finally:
        server.stop()


def test_endless_short_rate_limits_pause_instead_of_spending_the_quota(
    tmp_path: Path, host: ImageHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = FakeOpenverse(lambda q, i: f"{host.url}/good/{i % 12}?ov={i}", total=20).start()
    server.throttle = [0] * 50
    monkeypatch.setenv("OFFICESCORE_NOW", "2026-03-01T10:00:00Z")
    try:
        result = scrape(openverse_config(tmp_path, server))
    finally:
        server.stop()
    assert result.stop_reason == "rate_limited" and result.calls == 6  # 1 + 5 waits, then a pause
    assert result.quota.to_dict()["retry_after"] == "2026-03-01T10:01:00+00:00"


def test_a_failing_search_still_downloads_what_was_found(tmp_path: Path, google: FakeCustomSearch) -> None:
    google.outage_after = 1  # page 1 answers, then the API is down (and echoes the key)
    config = google_config(tmp_path, google, queries=["desk"], per_query=30, api_retries=1)
    with pytest.raises(ProviderError) as failure:
        scrape(config)
    message = str(failure.value)
    assert "503" in message and KEY not in message
    assert "Before it failed: 1 page(s) searched (3 API call(s)), 10 new result(s)" in message
    assert "10 image(s) kept this run" in message
    assert {row["status"] for row in rows(config.out)} == {"ok"}  # nothing left pending
    google.outage_after = None
    again = scrape(config)
    assert (again.stop_reason, again.pages) == ("done", 2)
    assert sorted(google.ok_pages) == [("desk", 1), ("desk", 11), ("desk", 21)]


def test_a_search_failing_at_once_still_reports_the_photos_it_downloaded(
    tmp_path: Path, google: FakeCustomSearch, host: ImageHost
) -> None:
    """No page came back this run, but photos an earlier run found were downloaded: the error says
    how many, so the user knows the run was not for nothing."""
    from officescore.scrape.manifest import Manifest
    from officescore.scrape.providers import SearchResult

    config = google_config(tmp_path, google, queries=["desk"], per_query=10, api_retries=0)
    found = [SearchResult(url=f"{host.url}/good/{i}?earlier={i}") for i in range(2)]
    with Manifest.open(config.out) as manifest:  # an earlier run found these and stopped
        manifest.record_page("google", "lamp", "f", 1, found, True, "r", "t")
    google.outage_after = 0
    with pytest.raises(ProviderError) as failure:
        scrape(config)
    assert "Before it failed: 0 page(s) searched (1 API call(s)), 0 new result(s)" in str(failure.value)
    assert "2 image(s) kept this run, 2 in total" in str(failure.value)


@pytest.mark.parametrize("where", ["manifest", "download"])
def test_a_full_disk_is_one_line_and_the_next_run_continues(
    tmp_path: Path, host: ImageHost, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    import errno
    import os

    from officescore.scrape.manifest import Manifest

    server = FakeOpenverse(lambda q, i: f"{host.url}/good/{i % 12}?i={i}", total=20).start()
    # One download at a time: with several, the photos that reach fsync first need not be the first
    # in the manifest's order, and the failure aborts before those are recorded (CI saw 0 kept).
    one_at_a_time = replace(PRIVATE_OK, workers=1)
    config = openverse_config(tmp_path, server, per_query=20, download=one_at_a_time)
    written = {"n": 0}
    real_outcome, real_fsync = Manifest.set_outcome, os.fsync

    def set_outcome(self: Manifest, row_id: int, **fields: Any) -> None:
        written["n"] += 1
        if written["n"] > 3:  # the fourth photo's row: SQLite cannot grow its WAL
            raise sqlite3.OperationalError("database or disk is full")
        real_outcome(self, row_id, **fields)

    def fsync(fd: int) -> None:
        written["n"] += 1
        if written["n"] > 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    try:
        with monkeypatch.context() as patch:
            if where == "manifest":
                patch.setattr(Manifest, "set_outcome", set_outcome)
            else:
                patch.setattr(os, "fsync", fsync)
            with pytest.raises(ConfigError) as full:
                scrape(config)
        assert str(full.value).startswith(f"the disk holding --out {config.out} is full (")
        assert "run the same command again" in str(full.value) and "\n" not in str(full.value)
        assert 1 <= sum(row["status"] == "ok" for row in rows(config.out)) <= 3  # kept what was saved
        again = scrape(config)  # room again: no page paid twice, the rest downloaded
    finally:
        server.stop()
    assert again.calls == 0 and server.counts["/v1/images/"] == 1
    assert {row["status"] for row in rows(config.out)} <= {"ok", "duplicate"} and again.kept_total == 12


def test_a_disk_full_as_the_manifest_opens_is_the_full_disk_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Full before anything is fetched (SQLite cannot even set up its WAL): the same one line, not
    the advice to move the manifest away, which would lose every photo's licence record."""
    real_connect = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        class Full(sqlite3.Connection):
            def execute(self, *a: Any, **k: Any) -> sqlite3.Cursor:
                raise sqlite3.OperationalError("database or disk is full")

        return real_connect(*args, **{**kwargs, "factory": Full})

    server = FakeOpenverse(lambda q, i: f"http://127.0.0.1:1/{i}", total=5).start()
    try:
        monkeypatch.setattr(sqlite3, "connect", connect)
        with pytest.raises(
            ConfigError, match=r"^the disk holding --out .* is full \(database or disk is full\)"
        ):
            scrape(openverse_config(tmp_path, server, per_query=5))
    finally:
        server.stop()
    assert server.counts.get("/v1/images/", 0) == 0


class _NotAnApi(FakeServer):
    """A wrong --api-endpoint: answers 200 with a web page (or a JSON list) to everything."""

    def __init__(self, body: bytes) -> None:
        super().__init__()
        self.body = body

    def route(self, method: str, path: str, query: dict, body: bytes, headers: dict) -> Reply:
        return Reply(200, self.body, {"Content-Type": "text/html"})


@pytest.mark.parametrize("provider", ["google", "openverse", "wikimedia", "unsplash", "flickr"])
@pytest.mark.parametrize("body", [b"<!doctype html><title>proxy login</title>", b"[1, 2]"])
def test_an_endpoint_that_is_not_the_api_is_a_user_error(tmp_path: Path, provider: str, body: bytes) -> None:
    server = _NotAnApi(body).start()
    try:
        config = ScrapeConfig(
            queries=["desk"],
            provider=provider,
            out=tmp_path / "raw",
            api_endpoint=server.url,
            google_key=KEY,
            google_cx=CX,
            unsplash_key=KEY,
            flickr_key=KEY,
        )
        with pytest.raises(ProviderError, match="not a") as failure:
            scrape(config)
    finally:
        server.stop()
    assert KEY not in str(failure.value)
