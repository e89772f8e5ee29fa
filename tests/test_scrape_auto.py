"""`--provider auto`: Google while it is keyed and answering, Openverse without a key, after
2027-01-01, or once Google answers with its closure (403/410); `--provider google` then stops."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakeservers import FakeCustomSearch, FakeOpenverse

from officescore.cli import main
from officescore.scrape import DownloadConfig, ScrapeConfig, scrape, status
from officescore.scrape.providers import GOOGLE_CLOSING_NOTICE, ProviderClosedError

KEY = "AIzaSyAUTO-never-write-me-77"
CX = "auto-engine-1"
NO_DOWNLOADS = DownloadConfig(workers=1, per_host=1, retries=0)


@pytest.fixture()
def servers() -> Iterator[tuple[FakeCustomSearch, FakeOpenverse]]:
    # Image links on loopback are refused unrequested (no --allow-private-hosts): no image host.
    google = FakeCustomSearch(KEY, CX, lambda q, i: f"http://127.0.0.1:9/g{i}.jpg", total=20).start()
    openverse = FakeOpenverse(lambda q, i: f"http://127.0.0.1:9/o{i}.jpg", total=20).start()
    yield google, openverse
    google.stop()
    openverse.stop()


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("GCS_DEVELOPER_KEY", "GCS_CX", "OFFICESCORE_CONFIG", "OFFICESCORE_GOOGLE_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OFFICESCORE_NOW", "2026-12-31T23:59:00Z")  # the last minute Google answers


def auto(tmp_path: Path, google: FakeCustomSearch, openverse: FakeOpenverse, keyed: bool) -> ScrapeConfig:
    return ScrapeConfig(
        queries=["desk"],
        per_query=20,
        out=tmp_path / "raw",
        google_key=KEY if keyed else None,
        google_cx=CX if keyed else None,
        endpoints={"google": google.url, "openverse": openverse.url},
        download=NO_DOWNLOADS,
    )


def test_auto_uses_google_with_a_key_and_openverse_without(
    tmp_path: Path, servers: tuple[FakeCustomSearch, FakeOpenverse]
) -> None:
    google, openverse = servers
    keyless = scrape(auto(tmp_path / "a", google, openverse, keyed=False))
    assert keyless.provider == "openverse" and keyless.pages == 1
    assert keyless.notices == ["no Google key and engine id (GCS_DEVELOPER_KEY, GCS_CX): searching openverse"]
    assert len(google.requests) == 0
    keyed = scrape(auto(tmp_path / "b", google, openverse, keyed=True))
    assert (keyed.provider, keyed.pages, keyed.notices) == ("google", 2, [GOOGLE_CLOSING_NOTICE])
    assert len(openverse.requests) == 1


def test_auto_after_the_cutoff_never_calls_google(
    tmp_path: Path, servers: tuple[FakeCustomSearch, FakeOpenverse], monkeypatch: pytest.MonkeyPatch
) -> None:
    google, openverse = servers
    monkeypatch.setenv("OFFICESCORE_NOW", "2027-01-01T00:00:00Z")
    config = auto(tmp_path, google, openverse, keyed=True)
    result = scrape(config)
    assert result.provider == "openverse" and result.stop_reason == "done"
    assert len(result.notices) == 1 and "closed (turned off for everyone on 2027-01-01)" in result.notices[0]
    assert len(google.requests) == 0
    assert status(config).provider == "openverse"
    with pytest.raises(ProviderClosedError, match="use --provider auto, openverse"):
        scrape(
            ScrapeConfig(
                queries=["desk"], provider="google", google_key=KEY, google_cx=CX, out=tmp_path / "g"
            )
        )
    assert len(google.requests) == 0 and not (tmp_path / "g").exists()


@pytest.mark.parametrize("answer", [410, 403])
def test_a_closure_answer_switches_auto_to_openverse_and_is_remembered(
    tmp_path: Path, servers: tuple[FakeCustomSearch, FakeOpenverse], answer: int
) -> None:
    google, openverse = servers
    google.closed = answer
    config = auto(tmp_path, google, openverse, keyed=True)
    result = scrape(config)
    assert (result.provider, result.stop_reason, result.pages, result.calls) == ("openverse", "done", 1, 2)
    assert result.notices[0] == GOOGLE_CLOSING_NOTICE and f"HTTP {answer}" in result.notices[1]
    assert result.notices[1].endswith("searching openverse instead") and KEY not in result.notices[1]
    assert len(google.requests) == 1
    again = scrape(config)  # the manifest remembers: Google is not asked again
    assert len(google.requests) == 1 and again.provider == "openverse" and again.calls == 0
    assert "that its API is closed: searching openverse" in again.notices[0]
    report = status(config)
    assert report.provider == "openverse"
    assert {q.provider: q.calls for q in report.quota} == {"google": 1, "openverse": 1}


def test_provider_google_stops_on_the_closure_with_one_line(
    tmp_path: Path,
    servers: tuple[FakeCustomSearch, FakeOpenverse],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    google, _ = servers
    google.closed = 410
    monkeypatch.setenv("GCS_DEVELOPER_KEY", KEY)
    monkeypatch.setenv("GCS_CX", CX)
    with pytest.raises(SystemExit) as exit_info:
        main(["scrape", "-q", "desk", "--provider", "google", "--api-endpoint", google.url, "--out", "raw"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Custom Search JSON API is closed" in lines[0] and "HTTP 410" in lines[0]
    assert lines[0].endswith("use --provider auto, openverse, wikimedia, unsplash or flickr")
    assert KEY not in err and "Traceback" not in err


def test_cli_default_is_auto_and_status_names_the_next_provider(
    tmp_path: Path,
    servers: tuple[FakeCustomSearch, FakeOpenverse],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    google, openverse = servers
    monkeypatch.setenv("OFFICESCORE_OPENVERSE_ENDPOINT", openverse.url)
    with pytest.raises(SystemExit) as exit_info:
        main(["scrape", "-q", "desk", "--out", "raw", "--json"])
    answer = json.loads(capsys.readouterr().out)
    assert exit_info.value.code in (0, None) and answer["provider"] == "openverse"
    assert answer["notices"] == [
        "no Google key and engine id (GCS_DEVELOPER_KEY, GCS_CX): searching openverse"
    ]
    with pytest.raises(SystemExit):
        main(["scrape", "-q", "desk", "--out", "raw"])
    captured = capsys.readouterr()
    assert captured.err.count("no Google key") == 1 and "Done" in captured.out  # the notice: one line
    with pytest.raises(SystemExit):
        main(["scrape", "-q", "desk", "--out", "raw", "--status"])
    shown = capsys.readouterr()
    assert "next run searches: openverse" in shown.out
    # walked (session 45): the run's notice said "searching openverse" though --status searches nothing
    assert "(GCS_DEVELOPER_KEY, GCS_CX): the next run searches openverse" in " ".join(shown.out.split())
    assert "searching" not in shown.err + shown.out


def test_the_fallback_after_a_closure_is_not_sent_to_googles_api_endpoint(
    tmp_path: Path, servers: tuple[FakeCustomSearch, FakeOpenverse]
) -> None:
    """--api-endpoint is for the provider the run starts with (Google here): Openverse, switched to
    after Google's closure answer, goes to its own endpoint."""
    google, openverse = servers
    google.closed = 410
    config = auto(tmp_path, google, openverse, keyed=True)
    config.api_endpoint, config.endpoints = google.url, {"openverse": openverse.url}
    result = scrape(config)
    assert (result.provider, result.pages, result.calls) == ("openverse", 1, 2)
    assert len(google.requests) == 1 and len(openverse.requests) == 1


def test_the_daily_quota_given_for_google_does_not_hold_openverse_after_a_closure(
    tmp_path: Path, servers: tuple[FakeCustomSearch, FakeOpenverse]
) -> None:
    """--daily-quota is for the provider the run starts with (auto's pick): after Google's closure
    answer the run goes on with Openverse's own 100 a day, not Google's 1, or its [scrape.openverse]
    quota, not Google's."""
    google, openverse = servers
    google.closed = 410
    config = auto(tmp_path, google, openverse, keyed=True)
    config.daily_quota = 1
    result = scrape(config)
    assert (result.provider, result.stop_reason, result.quota.limit) == ("openverse", "done", 100)
    # A new folder, which does not know yet that Google is closed: auto starts with Google again.
    config.out = tmp_path / "again"
    config.provider_quotas = {"google": {"daily_quota": 90}, "openverse": {"daily_quota": 50}}
    result = scrape(config)
    assert (result.provider, result.quota.limit) == ("openverse", 50)
