"""Scrape building blocks without servers: quota clock, error mapping, scrubbing, dedup, manifest."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from fakeservers import BAD_KEY_400, INVALID_400, QUOTA_429, google_error, scene

from officescore.errors import ConfigError, DataError, QuotaExhaustedError
from officescore.scrape import quota as clock
from officescore.scrape.dedup import DEFAULT_NEAR_DUP_THRESHOLD, DedupIndex
from officescore.scrape.download import _interleave_hosts, clean_partial_files
from officescore.scrape.manifest import Manifest
from officescore.scrape.providers import (
    FlickrProvider,
    GoogleProvider,
    OpenverseProvider,
    ProviderError,
    RateLimited,
    Scrubber,
    SearchResult,
    TransientError,
    UnsplashProvider,
    WikimediaProvider,
    classify_google_error,
)
from officescore.scrape.run import ScrapeConfig, default_queries, read_queries, scrape


def test_quota_day_turns_at_midnight_los_angeles(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OFFICESCORE_NOW", "2026-03-02T07:59:00Z")  # 23:59 PST on 1 March
    assert str(clock.quota_day(clock.PACIFIC)) == "2026-03-01"
    assert clock.next_reset(clock.PACIFIC).isoformat() == "2026-03-02T00:00:00-08:00"
    monkeypatch.setenv("OFFICESCORE_NOW", "2026-03-02T08:00:00")  # naive = UTC: midnight PST
    assert str(clock.quota_day(clock.PACIFIC)) == "2026-03-02"
    assert str(clock.quota_day(timezone.utc)) == "2026-03-02"
    # Across the spring-forward change the next midnight is PDT (UTC-7), not 24 h later.
    when = datetime(2026, 3, 8, 12, 0, tzinfo=timezone.utc)
    assert clock.next_reset(clock.PACIFIC, when).isoformat() == "2026-03-09T00:00:00-07:00"
    monkeypatch.setenv("OFFICESCORE_NOW", "not a time")
    with pytest.raises(ConfigError, match="OFFICESCORE_NOW"):
        clock.now()


def test_google_error_answers_are_classified() -> None:
    raw = lambda obj: json.dumps(obj).encode()  # noqa: E731
    assert isinstance(classify_google_error(429, raw(QUOTA_429)), QuotaExhaustedError)
    daily_403 = google_error(403, "Daily Limit Exceeded", "PERMISSION_DENIED", "dailyLimitExceeded")
    assert isinstance(classify_google_error(403, raw(daily_403)), QuotaExhaustedError)
    per_minute = google_error(
        429, "Quota exceeded for quota metric 'Queries per minute'", "RESOURCE_EXHAUSTED", "rateLimitExceeded"
    )
    assert isinstance(classify_google_error(429, raw(per_minute)), RateLimited)
    assert isinstance(classify_google_error(400, raw(BAD_KEY_400)), ConfigError)
    assert isinstance(classify_google_error(400, raw(INVALID_400)), ProviderError)
    assert isinstance(classify_google_error(503, b"<html>oops</html>"), TransientError)
    denied = google_error(
        403, "Custom Search API has not been used", "PERMISSION_DENIED", "accessNotConfigured"
    )
    assert "enabled" in str(classify_google_error(403, raw(denied)))


def test_google_paging_windows_and_missing_key() -> None:
    provider = GoogleProvider(developer_key="k", cx="c")
    assert [provider.page_window(p) for p in (1, 2, 10)] == [(1, 10), (11, 10), (91, 9)]
    assert provider.pages_for(100) == 10 and provider.pages_for(99) == 10 and provider.pages_for(25) == 3
    params = provider.request_params("home office", 10)  # built by google-images-search's backend
    assert (params["searchType"], params["start"], params["num"], params["imgType"]) == (
        "image",
        91,
        9,
        "photo",
    )
    with pytest.raises(ConfigError, match="GCS_DEVELOPER_KEY"):
        GoogleProvider(developer_key="", cx="c")
    with pytest.raises(ConfigError, match="--img-size"):
        GoogleProvider(developer_key="k", cx="c", img_size="gigantic")
    with pytest.raises(ConfigError, match="--rights"):
        OpenverseProvider(rights_filter="cc_attribute|anything_goes")
    assert OpenverseProvider().pages_for(1000) == 12  # anonymous Openverse stops at 240 results


def test_scrubber_removes_secrets_and_key_parameters() -> None:
    scrub = Scrubber(["AIzaSECRET", None, ""])
    text = "GET https://x/customsearch/v1?q=a&key=AIzaSECRET&cx=123 failed; token=abc AIzaSECRET"
    cleaned = scrub(text)
    assert (
        cleaned is not None and "AIzaSECRET" not in cleaned and "key=***" in cleaned and "cx=***" in cleaned
    )
    assert scrub.value("http://img/a.jpg?key=public&x=AIzaSECRET") == "http://img/a.jpg?key=public&x=***"
    assert scrub(None) is None


def test_a_secret_inside_a_longer_one_leaves_no_piece_of_the_longer() -> None:
    # Replacing the short one first would turn "abc123xyz" into "***xyz": part of a key on show.
    scrub = Scrubber(["abc123", "abc123xyz"])
    assert scrub.value("token abc123xyz and abc123") == "token *** and ***"


@pytest.mark.parametrize("provider", ["wikimedia", "unsplash", "flickr", "openverse"])
def test_a_misspelt_rights_name_is_refused_not_dropped(provider: str) -> None:
    # A typo in one name must not narrow the filter in silence (here: to public domain only).
    make = {
        "wikimedia": lambda r: WikimediaProvider(rights_filter=r),
        "unsplash": lambda r: UnsplashProvider(access_key="k", rights_filter=r),
        "flickr": lambda r: FlickrProvider(api_key="k", rights_filter=r),
        "openverse": lambda r: OpenverseProvider(rights_filter=r),
    }[provider]
    with pytest.raises(ConfigError, match="'cc_atribute' is unknown"):
        make("cc_publicdomain|cc_atribute")


def test_dedup_index_exact_and_near() -> None:
    import imagehash

    index = DedupIndex(threshold=10)
    assert index.nearest("0" * 16) is None
    base = scene(1)
    index.add(7, "a" * 64, str(imagehash.phash(base)))
    for i in range(100):  # grows past its initial buffer
        index.add(100 + i, f"{i:064x}", f"{(i * 0x9E3779B97F4A7C15) % 2**64:016x}")
    assert index.exact("a" * 64) == 7 and index.exact("b" * 64) is None
    near = index.near(str(imagehash.phash(base.resize((160, 120)))))
    assert near is not None and near[0] == 7 and near[1] <= 4
    assert index.near(str(imagehash.phash(scene(2)))) is None
    assert DEFAULT_NEAR_DUP_THRESHOLD == 10


def test_cli_defaults_match_the_library() -> None:
    """The CLI repeats library defaults (importing them would load the scraper for every command)."""
    import inspect

    from officescore.cli.scrape import scrape as command
    from officescore.scrape.download import DownloadConfig
    from officescore.scrape.providers import DEFAULT_RIGHTS

    cli = {name: p.default.default for name, p in inspect.signature(command).parameters.items()}
    library, download = ScrapeConfig(queries=["q"]), DownloadConfig()
    assert cli["near_dup"] == library.near_dup_threshold == DEFAULT_NEAR_DUP_THRESHOLD
    assert cli["rights"] == library.rights == DEFAULT_RIGHTS
    expected = {
        "provider": library.provider,
        "per_query": library.per_query,
        "daily_quota": library.daily_quota,
        "hourly_quota": library.hourly_quota,
        "contact": library.contact,
        "out": library.out,
        "safe": library.safe,
        "workers": download.workers,
        "per_host": download.per_host,
        "timeout": download.read_timeout,
        "retries": download.retries,
        "max_bytes": download.max_bytes,
        "min_size": download.min_width,
    }
    assert {name: cli[name] for name in expected} == expected
    assert download.min_width == download.min_height


def test_page_and_results_are_recorded_together_or_not_at_all(tmp_path: Path) -> None:
    with Manifest.open(tmp_path) as manifest:
        good = [SearchResult(url="http://a/1.jpg", title="one"), SearchResult(url="http://a/2.jpg")]
        assert manifest.record_page("google", "q", "f", 1, good, False, "r", "t") == 2
        # The second result cannot be stored: the first must not be left behind either.
        broken = [SearchResult(url="http://a/3.jpg"), SearchResult(url="http://a/4.jpg", title={"x": 1})]  # type: ignore[arg-type]
        with pytest.raises(sqlite3.Error):
            manifest.record_page("google", "q", "f", 2, broken, False, "r", "t")
        assert manifest.progress("google", "q", "f").pages == 1
        assert [url for _, url, _ in manifest.pending()] == ["http://a/1.jpg", "http://a/2.jpg"]
        # The same URL from another query is one row, not two.
        assert manifest.record_page("google", "q2", "f", 1, good[:1], True, "r", "t") == 0
        manifest.spend_call("google", "2026-03-01", "t")
        manifest.spend_call("google", "2026-03-01", "t")
        assert manifest.quota("google", "2026-03-01") == (2, False)
        manifest.mark_exhausted("google", "2026-03-01", "t")
        assert manifest.quota("google", "2026-03-01") == (2, True)


@pytest.mark.parametrize("written", ["99", "x", ""])
def test_a_manifest_of_another_schema_is_refused_in_a_sentence(tmp_path: Path, written: str) -> None:
    Manifest.open(tmp_path).close()
    db = sqlite3.connect(tmp_path / "manifest.sqlite")
    db.execute("UPDATE meta SET value=? WHERE key='schema'", (written,))
    db.commit()
    db.close()
    with pytest.raises(DataError, match=f"manifest schema {written} is not"):
        Manifest.open(tmp_path)
    with Manifest.open(tmp_path / "fresh") as manifest:  # a new one is written and read back
        assert manifest.progress("google", "q", "f").pages == 0


def test_status_counts_pages_as_the_run_does_when_a_page_row_was_deleted(tmp_path: Path) -> None:
    with Manifest.open(tmp_path) as manifest:
        for page in (1, 2, 3):
            manifest.record_page(
                "google", "q", "f", page, [SearchResult(url=f"http://a/{page}.jpg")], False, "r", "t"
            )
        manifest.db.execute("DELETE FROM pages WHERE page=2")
        (row,) = manifest.query_table()
        assert row["pages"] == manifest.progress("google", "q", "f").pages == 3


def test_timeouts_and_unavailable_hosts_are_tried_again_until_their_attempts_are_spent(
    tmp_path: Path,
) -> None:
    """A host that timed out through every retry is as likely to answer later as one that said 503;
    a 404 or a photo too small is final. Each is tried until it has had MAX_ATTEMPTS in all."""
    from officescore.scrape.manifest import MAX_ATTEMPTS

    outcomes = [
        ("timeout", 3),
        ("unavailable", 3),
        ("http_error", 1),
        ("too_small", 1),
        ("timeout", MAX_ATTEMPTS),
        ("pending", 0),
    ]
    urls = [f"http://a/{n}.jpg" for n in range(len(outcomes))]
    with Manifest.open(tmp_path) as manifest:
        manifest.record_page("google", "q", "f", 1, [SearchResult(url=u) for u in urls], False, "r", "t")
        for (row_id, _, _), (status, attempts) in zip(manifest.pending(), outcomes, strict=True):
            manifest.set_outcome(row_id, status=status, attempts=attempts)
        assert [url for _, url, _ in manifest.pending()] == [urls[0], urls[1], urls[5]]
        assert manifest.retry_later() == 2


def test_the_deleted_photos_note_names_three_and_says_when_there_are_more() -> None:
    from officescore.scrape.manifest import deleted_note

    photos = [Path(f"images/{n}.jpg") for n in range(4)]
    assert deleted_note(photos[:3]).endswith("left out: 0.jpg, 1.jpg, 2.jpg")
    assert deleted_note(photos).endswith("left out: 0.jpg, 1.jpg, 2.jpg ...")
    assert deleted_note(photos).startswith("4 photo(s) the scrape kept are no longer on disk")


def test_partial_files_from_a_killed_run_are_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    images = tmp_path / "raw" / "images"
    images.mkdir(parents=True)
    (images / ".0123abcd.part").write_bytes(b"half an image")
    (images / "keep.jpg").write_bytes(b"x")
    assert clean_partial_files(images) == 1
    assert [p.name for p in images.iterdir()] == ["keep.jpg"]
    (images / ".feed.part").write_bytes(b"half")
    # A run that fetches nothing (quota 0) still cleans up and says so.
    config = ScrapeConfig(queries=["x"], provider="openverse", daily_quota=0, out=tmp_path / "raw")
    result = scrape(config)
    assert result.stop_reason == "quota" and result.calls == 0
    assert any("removed 1 partial download" in n for n in result.notices)
    assert not list(images.glob(".*.part"))


def test_queries_files_and_default_list(tmp_path: Path) -> None:
    defaults = default_queries()
    assert defaults[:2] == ["unique home office", "well lit home office"] and len(defaults) >= 10
    path = tmp_path / "q.txt"
    path.write_text("# mine\nstanding desk\n\nstanding desk\n  reading nook  \n")
    assert read_queries(path) == ["standing desk", "reading nook"]
    # Saved by Windows Notepad or PowerShell 5 as "UTF-8" (with a byte-order mark): the first line
    # is still a comment, not a search for "\ufeff# mine" that costs a call
    path.write_bytes(b"\xef\xbb\xbf# mine\r\nb\xc3\xbcro\r\n")
    assert read_queries(path) == ["büro"]
    path.write_text("# only comments\n")
    with pytest.raises(ConfigError, match="no queries"):
        read_queries(path)


def test_hosts_are_interleaved() -> None:
    items = [(1, "http://a/1"), (2, "http://a/2"), (3, "http://a/3"), (4, "http://b/1"), (5, "http://c/1")]
    assert [key for key, _ in _interleave_hosts(items)] == [1, 4, 5, 2, 3]


def test_retry_after_header_forms() -> None:
    from email.utils import format_datetime

    from officescore.scrape.providers import retry_after_seconds

    assert retry_after_seconds("120") == 120.0 and retry_after_seconds(" 0 ") == 0.0
    assert retry_after_seconds(None) == 60.0 and retry_after_seconds("soon") == 60.0
    later = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=300)
    assert 290 <= retry_after_seconds(format_datetime(later, usegmt=True)) <= 300
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # already past


def test_commons_licence_names_map_onto_rights_codes() -> None:
    from officescore.scrape.providers import commons_license
    from officescore.scrape.providers.wikimedia import first_link, plain_text

    assert commons_license("CC BY-SA 4.0", "cc-by-sa-4.0") == ("by-sa", "4.0")
    assert commons_license("CC BY 2.5", None) == ("by", "2.5")
    assert commons_license("CC BY-SA 3.0 de", "cc-by-sa-3.0-de") == ("by-sa", "3.0")
    assert commons_license("CC0", "cc0") == ("cc0", "1.0")
    # Commons' "Public domain" (by age, by origin) is no CC mark: recorded as Commons says it.
    assert commons_license("Public domain", "pd") == ("pd", None)
    assert commons_license(None, "pd") == commons_license("Public domain", None) == ("pd", None)
    assert commons_license("Public Domain Mark 1.0", "pdm") == ("pdm", "1.0")  # the CC mark itself
    assert commons_license("GFDL", "gfdl") == (None, None)
    assert commons_license("Attribution", "attribution") == (None, None)
    assert commons_license("FAL", "fal") == (None, None) and commons_license(None, None) == (None, None)
    html = '<a href="//commons.wikimedia.org/wiki/User:A%26B" title="x">A &amp; B</a> (<span>x</span>)'
    assert (
        plain_text(html) == "A & B ( x )"
        and first_link(html) == "https://commons.wikimedia.org/wiki/User:A%26B"
    )
    assert first_link('<a href="javascript:alert(1)">x</a>') is None


def test_hour_keys_and_key_parameters_scrubbed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OFFICESCORE_NOW", "2026-06-01T10:59:59Z")
    assert clock.quota_hour(timezone.utc) == "2026-06-01T10"
    assert clock.next_hour(timezone.utc).isoformat() == "2026-06-01T11:00:00+00:00"
    assert clock.quota_hour(clock.PACIFIC) == "2026-06-01T03"
    scrub = Scrubber(["f1f2key"])
    assert scrub("GET /services/rest/?api_key=abc&text=x") == "GET /services/rest/?api_key=***&text=x"
    assert scrub("?client_id=abc") == "?client_id=***" and scrub("x f1f2key") == "x ***"


def test_provider_limits_and_overrides() -> None:
    config = ScrapeConfig(queries=["q"])
    assert [config.limits(name) for name in ("google", "openverse", "wikimedia", "unsplash", "flickr")] == [
        (100, None),
        (100, None),
        (5000, 500),
        (1200, 50),
        (86400, 3600),
    ]
    assert ScrapeConfig(queries=["q"], hourly_quota=5000).limits("unsplash") == (120000, 5000)
    assert ScrapeConfig(queries=["q"], hourly_quota=10, daily_quota=30).limits("unsplash") == (30, 10)
    assert ScrapeConfig(queries=["q"], hourly_quota=10).limits("wikimedia") == (5000, 10)


def test_quota_state_reads_the_providers_marks_its_hour_and_ignores_a_garbled_pause(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from officescore.scrape.status import quota_state

    monkeypatch.setenv("OFFICESCORE_NOW", "2026-06-01T12:30:00Z")  # 05:30 in Los Angeles
    with Manifest.open(tmp_path) as manifest:
        manifest.spend_call("openverse", "2026-06-01", "t")
        manifest.mark_exhausted("openverse", "2026-06-01", "t")  # the provider said so, at 1 of 100
        state = quota_state(manifest, "openverse", 100)
        assert (state.calls, state.exhausted, state.remaining) == (1, True, 0)
        # Google with an hourly limit: the hour is Los Angeles's, and its end is said in UTC.
        manifest.spend_call("google", "2026-06-01", "t", "2026-06-01T05")
        state = quota_state(manifest, "google", 100, 10)
        assert (state.hour, state.hour_calls, state.hour_remaining) == ("2026-06-01T05", 1, 9)
        assert state.hour_text() == "2026-06-01 13:00 UTC"
        # A pause hand-edited into something that is not a time is ignored, not a crash.
        manifest.set_retry_after("openverse", "soon")
        assert quota_state(manifest, "openverse", 100).retry_at is None
        # ... and one hand-written without a zone is UTC (it was compared with an aware time: TypeError).
        manifest.set_retry_after("openverse", "2026-06-01T14:00:00")
        assert quota_state(manifest, "openverse", 100).retry_at == datetime(
            2026, 6, 1, 14, tzinfo=timezone.utc
        )


def test_dedup_threshold_is_inclusive_and_zero_means_the_same_phash() -> None:
    index = DedupIndex(threshold=3)
    index.add(1, "a" * 64, "ffffffffffffffff")
    assert index.near("fffffffffffffff8") == (1, 3)  # exactly the threshold: a near-duplicate
    assert index.near("fffffffffffffff0") is None  # 4 bits apart
    # One kept image: the index's unused room is not an all-zero image to match against.
    assert index.nearest("0000000000000000") == (1, 64)
    exact = DedupIndex(threshold=0)  # --near-dup-threshold 0 is allowed: only identical phashes
    exact.add(2, "b" * 64, "0000000000000001")
    assert exact.near("0000000000000001") == (2, 0) and exact.near("0000000000000003") is None
    with pytest.raises(ValueError):
        DedupIndex(threshold=-1)


def test_zero_quotas_mean_zero_and_impossible_settings_are_refused() -> None:
    from officescore.scrape.download import DownloadConfig

    # 0 is a limit (no calls), not "the provider's default".
    assert ScrapeConfig(queries=["q"], hourly_quota=0).limits("unsplash") == (0, 0)
    assert ScrapeConfig(queries=["q"], daily_quota=0).limits("google") == (0, None)
    bad = [
        ({"download": DownloadConfig(per_host=0)}, "--per-host"),
        ({"queries": ["desk", "  "]}, "a query is empty"),
        ({"api_retries": -1}, "--retries"),
    ]
    for change, message in bad:
        with pytest.raises(ConfigError, match=message):
            ScrapeConfig(**{"queries": ["q"], **change}).validate()  # type: ignore[arg-type]


def test_auto_needs_both_the_google_key_and_the_engine_id(monkeypatch: pytest.MonkeyPatch) -> None:
    from officescore.scrape.settings import choose_provider

    monkeypatch.setenv("OFFICESCORE_NOW", "2026-06-01T12:00:00Z")
    for key, cx in (("k", None), (None, "c")):
        name, notices = choose_provider(ScrapeConfig(queries=["q"], google_key=key, google_cx=cx))
        assert name == "openverse" and "no Google key and engine id" in notices[0]
    assert choose_provider(ScrapeConfig(queries=["q"], google_key="k", google_cx="c"))[0] == "google"


def test_the_contact_comes_from_the_environment_unless_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from officescore.scrape.settings import secrets_from_environment

    monkeypatch.chdir(tmp_path)  # no officescore.toml
    monkeypatch.delenv("OFFICESCORE_CONFIG", raising=False)
    monkeypatch.setenv("OFFICESCORE_CONTACT", "env@example.org")
    assert secrets_from_environment(ScrapeConfig(queries=["q"])).contact == "env@example.org"
    given = ScrapeConfig(queries=["q"], contact="flag@example.org")
    assert secrets_from_environment(given).contact == "flag@example.org"


def test_a_bad_clock_setting_is_refused_before_the_folder_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OFFICESCORE_NOW", "yesterday")
    with pytest.raises(ConfigError, match="OFFICESCORE_NOW"):
        scrape(ScrapeConfig(queries=["q"], out=tmp_path / "raw"))  # auto: decided inside the folder
    assert not (tmp_path / "raw").exists()


def test_the_same_photo_found_twice_gets_one_download_event(tmp_path: Path) -> None:
    first = SearchResult(url="http://a/1.jpg", track_url="http://api/track/1")
    second = SearchResult(url="http://a/2.jpg", track_url="http://api/track/2")
    with Manifest.open(tmp_path) as manifest:
        assert manifest.record_page("unsplash", "q", "f", 1, [first, second], False, "r", "t") == 2
        # Another query finds the first photo again: no second row, no second event, page recorded.
        assert manifest.record_page("unsplash", "q2", "f", 1, [first], True, "r", "t") == 0
        assert manifest.progress("unsplash", "q2", "f").last_page_seen
        for row_id, _, _ in manifest.pending():
            manifest.set_outcome(row_id, status="ok")
        assert manifest.pending_tracking("unsplash") == [(1, "http://api/track/1"), (2, "http://api/track/2")]


def test_status_lists_the_whole_default_list_once_some_of_it_was_searched(tmp_path: Path) -> None:
    from officescore.scrape.run import status

    defaults = default_queries()
    filters = OpenverseProvider().filters
    found = [SearchResult(url="http://a/1.jpg")]
    with Manifest.open(tmp_path) as manifest:  # a default-list run stopped after its first query
        manifest.record_page("openverse", defaults[0], filters, 1, found, True, "r", "t")
    config = ScrapeConfig(queries=defaults, default_query_list=True, provider="openverse", out=tmp_path)
    report = status(config)
    assert [row["query"] for row in report.queries] == [defaults[0], *defaults[1:]]
    assert [row["complete"] for row in report.queries] == [True] + [False] * (len(defaults) - 1)


def test_status_judges_another_providers_query_by_its_own_last_page_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Google fetched 1 of the 2 pages --per-query 20 asks of it; Openverse would need only one.
    Google's row is not complete just because Openverse, the next provider, would be done."""
    from officescore.scrape.run import status

    monkeypatch.setenv("OFFICESCORE_NOW", "2026-06-01T12:00:00Z")
    google = [SearchResult(url=f"http://a/{i}.jpg") for i in range(10)]
    with Manifest.open(tmp_path) as manifest:
        manifest.record_page("google", "desk", "google-filters", 1, google, False, "r", "t")
    report = status(ScrapeConfig(queries=["desk"], provider="openverse", per_query=20, out=tmp_path))
    assert [(row["provider"], row["pages"], row["complete"]) for row in report.queries] == [
        ("google", 1, False),
        ("openverse", 0, False),
    ]


def test_status_for_provider_google_after_the_cutoff_names_google_and_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from officescore.scrape.run import status

    monkeypatch.setenv("OFFICESCORE_NOW", "2027-01-02T00:00:00Z")
    report = status(ScrapeConfig(queries=["desk"], provider="google", out=tmp_path / "raw"))
    assert report.provider == "google" and "closed" in report.notices[0] and report.closed
    assert [row["provider"] for row in report.queries] == ["google"]
    assert not (tmp_path / "raw").exists()
    before = status(ScrapeConfig(queries=["desk"], provider="openverse", out=tmp_path / "raw"))
    assert not before.closed


def test_status_after_the_cutoff_does_not_say_the_next_run_searches_google(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from officescore.cli import main

    monkeypatch.setenv("OFFICESCORE_NOW", "2027-01-02T00:00:00Z")
    with pytest.raises(SystemExit) as info:
        main(["scrape", "-q", "desk", "--provider", "google", "--out", str(tmp_path / "raw"), "--status"])
    out = " ".join(capsys.readouterr().out.split())
    assert info.value.code in (0, None)
    assert "next run searches: nothing (google is closed)" in out and "searches: google" not in out
    assert "quota google" not in out  # a closed API has no calls left: not "0/100 calls, 100 left"


def test_status_lists_no_quota_for_google_once_it_is_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from officescore.scrape.manifest import Manifest
    from officescore.scrape.run import status

    out = tmp_path / "raw"
    with Manifest.open(out) as manifest:  # a Google folder: calls paid in December
        manifest.spend_call("google", "2026-12-30", "2026-12-30T10:00:00+00:00")
    config = ScrapeConfig(queries=["desk"], out=out, google_key="k", google_cx="c")
    monkeypatch.setenv("OFFICESCORE_NOW", "2026-12-31T12:00:00Z")
    assert [q.provider for q in status(config).quota] == ["google"]
    monkeypatch.setenv("OFFICESCORE_NOW", "2027-01-02T00:00:00Z")  # past the cut-off
    assert [q.provider for q in status(config).quota] == ["openverse"]
    monkeypatch.setenv("OFFICESCORE_NOW", "2026-12-31T12:00:00Z")
    with Manifest.open(out) as manifest:  # ... or before it, once Google answered that it is closed
        manifest.set_meta("closed:google", "2026-12-31T11:00:00+00:00")
    assert [q.provider for q in status(config).quota] == ["openverse"]


def test_quotas_per_provider_and_the_flags_for_the_searched_one() -> None:
    """[scrape.<name>] quotas hold for that provider alone; the flags for the provider searched."""
    from officescore.config import SCRAPE_PROVIDERS
    from officescore.scrape.providers import PROVIDER_CLASSES

    assert tuple(PROVIDER_CLASSES) == SCRAPE_PROVIDERS  # config.py names them without importing them
    config = ScrapeConfig(queries=["q"], provider_quotas={"google": {"daily_quota": 90}})
    assert (config.limits("google"), config.limits("flickr")) == ((90, None), (86400, 3600))
    config.daily_quota, config.hourly_quota = 7, 3
    assert config.limits("google", "flickr") == (90, None) and config.limits("flickr", "flickr") == (7, 3)
    assert config.limits("google", "google") == (7, 3) and config.limits("wikimedia", "google") == (5000, 500)


def test_provider_quota_tables_take_zero_and_refuse_what_is_no_count() -> None:
    """0 is a quota (no calls that day); TOML's true is no count although Python's bool is an int; a
    float under [scrape] (timeout = 7.5) is a setting, not a provider table; a name like no provider
    is shown the names there are."""
    from officescore.config import provider_quotas

    table = {"timeout": 7.5, "google": {"daily-quota": 0}, "unsplash": {"hourly_quota": 5000}}
    assert provider_quotas({"scrape": table}) == {
        "google": {"daily_quota": 0},
        "unsplash": {"hourly_quota": 5000},
    }
    with pytest.raises(ConfigError, match=r"\[scrape.google\] daily-quota must be a whole number.*not True"):
        provider_quotas({"scrape": {"google": {"daily-quota": True}}})
    with pytest.raises(ConfigError, match=r"\[scrape.bing\] is no provider \(these are: google, openverse"):
        provider_quotas({"scrape": {"bing": {"daily-quota": 5}}})


def test_found_adds_up_what_every_page_returned_and_results_only_the_new(tmp_path: Path) -> None:
    """--status's `found` is what the paid calls returned, page after page; `new` (results) leaves
    out what was known already."""
    with Manifest.open(tmp_path) as manifest:
        manifest.record_page("openverse", "q", "o", 1, [SearchResult(url="http://a/1.jpg")], True, "r", "t")
        first = [SearchResult(url=f"http://a/{n}.jpg") for n in (1, 2)]
        manifest.record_page("google", "q", "g", 1, first, False, "r", "t")
        manifest.record_page("google", "q", "g", 2, [SearchResult(url="http://a/3.jpg")], True, "r", "t")
        google = next(row for row in manifest.query_table() if row["provider"] == "google")
    assert (google["pages"], google["found"], google["results"]) == (2, 3, 2)


@pytest.mark.parametrize(
    "error", ["InvalidHeader", "InvalidURL", "InvalidSchema", "MissingSchema", "URLRequired"]
)
def test_a_request_requests_refuses_to_send_is_our_own_fault(error: str) -> None:
    """No retry and no later run can send it: final (a download `refused`), not "unreachable"."""
    import requests

    from officescore.scrape.providers.base import local_error

    assert local_error(getattr(requests.exceptions, error)()) is not None
    assert local_error(requests.exceptions.ConnectionError()) is None
