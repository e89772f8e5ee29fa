"""The `officescore scrape` command: errors, status, export, secrets, and surviving SIGKILL."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fakeservers import FakeCustomSearch, FakeOpenverse, ImageHost

from officescore.cli import main
from officescore.scrape import DownloadConfig, ScrapeConfig, scrape

KEY = "AIzaSyCLI-secret-key-0c1d2e3f"
CX = "cx-engine-42"
REPO = Path(__file__).resolve().parent.parent
KEY_VARIABLES = ("GCS_DEVELOPER_KEY", "GCS_CX", "UNSPLASH_ACCESS_KEY", "FLICKR_API_KEY")
KEY_VARIABLES += ("OPENVERSE_CLIENT_ID", "OPENVERSE_CLIENT_SECRET")


@pytest.fixture(autouse=True)
def before_google_cutoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Google's API is off from 2027-01-01: these tests run on a day it still answers."""
    monkeypatch.setenv("OFFICESCORE_NOW", "2026-06-01T12:00:00Z")


@pytest.fixture(scope="module")
def host() -> Iterator[ImageHost]:
    server = ImageHost().start()
    yield server
    server.stop()


@pytest.fixture()
def google(host: ImageHost) -> Iterator[FakeCustomSearch]:
    server = FakeCustomSearch(KEY, CX, lambda q, i: f"{host.url}/good/{i % 12}?i={i}", total=20).start()
    yield server
    server.stop()


@pytest.fixture()
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clean working folder (no officescore.toml) and no keys in the environment."""
    monkeypatch.chdir(tmp_path)
    for name in (*KEY_VARIABLES, "OFFICESCORE_CONFIG", "OFFICESCORE_DEBUG", "OFFICESCORE_CONTACT"):
        monkeypatch.delenv(name, raising=False)
    for provider in ("GOOGLE", "OPENVERSE", "WIKIMEDIA", "UNSPLASH", "FLICKR"):
        monkeypatch.delenv(f"OFFICESCORE_{provider}_ENDPOINT", raising=False)
    return tmp_path


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(["scrape", *args])
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out, captured.err


def test_status_before_any_scrape_is_empty_and_writes_nothing(
    cwd: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(["--status", "--json"], capsys)
    assert code == 0
    status = json.loads(out)
    assert status["queries"] and all(q["pages"] == 0 for q in status["queries"])  # the default list
    assert status["quota"][0]["calls"] == 0 and status["quota"][0]["remaining"] == 100
    assert list(cwd.iterdir()) == []  # no manifest or folder made just to report nothing


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["-q", "desk", "--provider", "google"], {}, "needs an API key"),
        (["-q", "desk", "--provider", "unsplash"], {}, "UNSPLASH_ACCESS_KEY"),
        (["-q", "desk", "--provider", "flickr"], {}, "FLICKR_API_KEY"),
        (["-q", "desk", "--provider", "google"], {"OFFICESCORE_NOW": "2027-01-01T00:00:00Z"}, "is closed"),
        (["-q", "d", "--provider", "wikimedia", "--rights", "cc_noncommercial"], {}, "no licence used on"),
        (
            ["-q", "d", "--provider", "unsplash", "--rights", "cc_sharealike"],
            {"UNSPLASH_ACCESS_KEY": "k"},
            "Unsplash",
        ),
        (["-q", "desk", "--provider", "bing"], {}, "--provider must be one of"),
        (["-q", "desk", "--per-query", "0"], {"GCS_DEVELOPER_KEY": "k", "GCS_CX": "c"}, "--per-query"),
        (["--queries", "missing.txt"], {}, "cannot read queries file"),
        (["--export", "out"], {}, "no manifest"),
        (["--status", "--export", "out"], {}, "separate actions"),
        (["-q", "desk", "--safe", "maybe"], {"GCS_DEVELOPER_KEY": "k", "GCS_CX": "c"}, "--safe"),
        (["-q", "d", "--provider", "openverse"], {"OFFICESCORE_NOW": "yesterday"}, "OFFICESCORE_NOW"),
        (["-q", "d", "--provider", "openverse", "--out", "afile"], {}, "is a file"),
        (["--queries", "binary.txt"], {}, "not a UTF-8 text file"),
        (["--queries", "."], {}, "cannot read queries file"),
        (["--export", "afile"], {"_manifest": "1"}, "is a file"),
        (["-q", "d", "--provider", "openverse", "--api-endpoint", "localhost:8080"], {}, "--api-endpoint"),
        (
            ["-q", "d", "--provider", "openverse"],
            {"OFFICESCORE_OPENVERSE_ENDPOINT": "ftp://x/"},
            "http(s) URL",
        ),
    ],
)
def test_user_errors_exit_2_with_one_line(
    cwd: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    env: dict[str, str],
    expected: str,
) -> None:
    (cwd / "afile").write_text("not a folder")
    (cwd / "binary.txt").write_bytes(b"\xff\xfe\x00garbage\x80\x81")
    if env.pop("_manifest", None):
        from officescore.scrape.manifest import Manifest

        Manifest.open(cwd / "data" / "raw").close()  # an empty manifest in the default --out
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code, out, err = run_cli(args, capsys)
    assert code == 2
    assert expected in err and err.startswith("error:")
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err + out


@pytest.mark.parametrize("blank", ["", "   "])
def test_a_blank_query_is_refused_before_any_call(
    cwd: Path, capsys: pytest.CaptureFixture[str], host: ImageHost, blank: str
) -> None:
    server = FakeOpenverse(lambda q, i: f"{host.url}/good/{i % 12}?i={i}", total=20).start()
    try:
        args = ["--provider", "openverse", "--api-endpoint", server.url, "--out", "raw"]
        args += ["--allow-private-hosts", "--min-size", "64", "-n", "20"]
        code, out, err = run_cli(["-q", blank, *args], capsys)
        assert code == 2 and err.startswith("error: -q: a query is empty") and len(err.splitlines()) == 1
        assert server.counts.total() == 0 and not (cwd / "raw").exists()
        # A -q value is read like a --queries line: surrounding spaces are not a new query.
        assert run_cli(["-q", "  cozy office ", "--json", *args], capsys)[0] == 0
        assert run_cli(["-q", "cozy office", "--json", *args], capsys)[0] == 0
    finally:
        server.stop()
    db = sqlite3.connect(cwd / "raw" / "manifest.sqlite")
    assert db.execute("SELECT DISTINCT query FROM pages").fetchall() == [("cozy office",)]
    db.close()
    assert server.counts["/v1/images/"] == 1  # the second run had nothing left to pay for


@pytest.mark.parametrize(
    ("rights", "expected"), [("cc_comercial", "'cc_comercial' is unknown"), ("", "empty")]
)
def test_a_rights_filter_google_would_not_apply_is_refused_before_any_call(
    cwd: Path, capsys: pytest.CaptureFixture[str], google: FakeCustomSearch, rights: str, expected: str
) -> None:
    # Google is sent --rights as it is: a typo (or an empty value, an unset shell variable) would
    # search without a licence filter, and every photo would be kept.
    args = ["-q", "desk", "--api-endpoint", google.url, "--allow-private-hosts", "--rights", rights]
    with pytest.MonkeyPatch.context() as env:
        env.setenv("GCS_DEVELOPER_KEY", KEY)
        env.setenv("GCS_CX", CX)
        code, out, err = run_cli(args, capsys)
    assert code == 2 and err.startswith("error: --rights") and expected in err
    assert len(err.strip().splitlines()) == 1
    assert google.counts.total() == 0 and not (cwd / "data").exists()


def test_the_summary_says_which_failed_downloads_the_next_run_tries_again(
    cwd: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    host = ImageHost().start()
    host.flaky_failures = 1_000_000  # down all day
    kinds = ["flaky/1", "missing"]
    server = FakeOpenverse(lambda q, i: f"{host.url}/{kinds[i]}?i={i}", total=2).start()
    try:
        args = ["-q", "office", "--provider", "openverse", "--api-endpoint", server.url, "--out", "raw"]
        code, out, _ = run_cli([*args, "--allow-private-hosts", "--retries", "0"], capsys)
        kinds[0] = "missing"  # only final failures: nothing to try again, so no such note
        _, final, _ = run_cli([*args[:-1], "raw2", "--allow-private-hosts", "--retries", "0"], capsys)
    finally:
        server.stop()
        host.stop()
    text = " ".join(out.split())
    assert code == 0 and "downloads this run: http_error 1, unavailable 1" in text
    assert text.endswith(f"manifest: {Path('raw', 'manifest.sqlite')}")  # where the results are
    assert "1 photo(s) their host did not give (timeout, unavailable): the next run tries them again" in text
    assert "downloads this run: http_error 2" in " ".join(final.split()) and "tries them again" not in final


def test_a_second_scrape_into_the_folder_is_refused_before_any_call(
    cwd: Path, capsys: pytest.CaptureFixture[str], host: ImageHost
) -> None:
    """Two scrapes into one --out would pay for the same pages: the second is one line, at once."""
    import threading

    from officescore.files import hold_lock
    from officescore.scrape.run import LOCK_NAME

    (cwd / "raw").mkdir()
    held = hold_lock(cwd / "raw" / LOCK_NAME)  # the first scrape, still running
    let_go = threading.Timer(10, held.close)  # a scrape that waited for it would then go on
    let_go.start()
    server = FakeOpenverse(lambda q, i: f"{host.url}/good/{i % 12}?i={i}", total=20).start()
    try:
        args = ["-q", "cozy office", "--provider", "openverse", "--api-endpoint", server.url, "--out", "raw"]
        args += ["--allow-private-hosts", "--min-size", "64", "-n", "20"]
        code, _, err = run_cli(args, capsys)
        assert code == 2 and err.startswith("error: another scrape is writing to raw"), err
        assert len(err.splitlines()) == 1
        assert server.counts.total() == 0
        let_go.cancel()
        held.close()
        assert run_cli(args, capsys)[0] == 0  # the first one stopped: free again
    finally:
        let_go.cancel()
        held.close()
        server.stop()


def test_status_and_export_read_a_folder_that_cannot_be_written(
    cwd: Path, capsys: pytest.CaptureFixture[str], host: ImageHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = FakeOpenverse(lambda q, i: f"{host.url}/good/{i % 12}?i={i}", total=20).start()
    try:
        args = ["-q", "cozy office", "--provider", "openverse", "--api-endpoint", server.url, "--out", "raw"]
        assert run_cli([*args, "--allow-private-hosts", "--min-size", "64", "-n", "20"], capsys)[0] == 0
    finally:
        server.stop()
    raw = (cwd / "raw").resolve()
    before = (raw / "manifest.sqlite").read_bytes()
    # A read-only mount or another user's folder (imitated: the tests may run as root). There
    # SQLite cannot open a WAL database, not even to read it.
    real_access, real_connect = os.access, sqlite3.connect

    def access(path: Any, mode: int, **kwargs: Any) -> bool:
        return not (mode & os.W_OK and Path(path).resolve() == raw) and real_access(path, mode, **kwargs)

    def connect(target: Any, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        if not kwargs.get("uri") and Path(target).resolve().parent == raw:
            raise sqlite3.OperationalError("unable to open database file")
        return real_connect(target, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)
    monkeypatch.setattr(sqlite3, "connect", connect)
    code, out, err = run_cli(["--status", "--json", *args], capsys)
    assert code == 0, err
    assert [q["pages"] for q in json.loads(out)["queries"]] == [1]
    code, out, err = run_cli(["--export", "credits", "--out", "raw"], capsys)
    assert code == 0 and "exported 20 manifest row(s), 12 kept image(s)" in out, err
    assert (cwd / "credits" / "ATTRIBUTION.md").read_text(encoding="utf-8").count("### ") == 12
    assert (raw / "manifest.sqlite").read_bytes() == before


def test_a_read_only_manifest_shows_what_is_still_in_its_wal_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scrape killed (or still running) leaves rows in manifest.sqlite-wal: read from a folder we
    may not write, they are there, and neither file changes. A damaged manifest there is one error."""
    from officescore.errors import DataError
    from officescore.scrape.manifest import Manifest

    path = tmp_path / "raw" / "manifest.sqlite"
    Manifest(path).close()
    writer = sqlite3.connect(path, isolation_level=None)  # the scrape, still holding the file
    writer.execute("PRAGMA wal_autocheckpoint=0")
    writer.execute("INSERT INTO quota (provider, day, calls) VALUES ('openverse', '2026-12-04', 7)")
    files = {p.name: p.read_bytes() for p in path.parent.iterdir()}
    assert files["manifest.sqlite-wal"]  # the row is in the WAL file only
    real_access = os.access
    monkeypatch.setattr(
        os,
        "access",
        lambda p, mode, **kw: not (mode & os.W_OK and Path(p) == path.parent) and real_access(p, mode),
    )
    with Manifest(path, read_only=True) as manifest:
        assert manifest.frozen and manifest.quota("openverse", "2026-12-04") == (7, False)
    assert {p.name: p.read_bytes() for p in path.parent.iterdir()} == files
    writer.close()
    path.with_name("manifest.sqlite-wal").unlink(missing_ok=True)
    path.write_bytes(b"not a database, cut off by a full disk")
    with pytest.raises(DataError, match="not a usable manifest"):
        Manifest(path, read_only=True)


def test_wrong_key_is_one_line_without_the_key(
    cwd: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, google: FakeCustomSearch
) -> None:
    google.echo_key = True  # the server even repeats the wrong key in its error message
    monkeypatch.setenv("GCS_DEVELOPER_KEY", "AIza-wrong-key-777")
    monkeypatch.setenv("GCS_CX", CX)
    code, out, err = run_cli(["-q", "desk", "--api-endpoint", google.url], capsys)
    assert code == 2 and "rejected the API key" in err
    assert "AIza-wrong-key-777" not in out + err and "***" in err


def test_key_never_written_anywhere(
    cwd: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, google: FakeCustomSearch
) -> None:
    """Key from officescore.toml, endpoint from the environment; a server that echoes the key."""
    (cwd / "officescore.toml").write_text(
        f'[scrape]\ngcs-developer-key = "{KEY}"\ngcs-cx = "{CX}"\nper-query = 20\n'
    )
    monkeypatch.setenv("OFFICESCORE_GOOGLE_ENDPOINT", google.url)
    google.echo_key = True
    common = ["-q", "home office", "--out", "raw", "--allow-private-hosts", "--min-size", "64"]
    code, out, err = run_cli(common, capsys)
    assert code == 0, err
    assert err.count("closes the Custom Search JSON API") == 1  # the notice, once per run
    assert "Done" in out and "12 image(s) kept" in out
    assert len(google.requests) == 2  # per-query 20 came from officescore.toml

    code, status_out, _ = run_cli([*common, "--status", "--json"], capsys)
    report = json.loads(status_out)
    assert code == 0 and report["queries"][0]["pages"] == 2 and report["queries"][0]["complete"]
    assert report["totals"] == {"ok": 12, "duplicate": 8}
    assert report["quota"][0]["calls"] == 2 and report["quota"][0]["limit"] == 100
    code, table, _ = run_cli([*common, "--status"], capsys)
    assert code == 0 and "home" in table and "2/100 calls" in table
    code, exported, _ = run_cli(["--out", "raw", "--export", "labelling"], capsys)
    assert code == 0 and "12 kept image(s)" in exported

    code, again, err2 = run_cli([*common, "--json"], capsys)  # nothing left to do: no calls
    assert code == 0 and json.loads(again)["calls"] == 0

    written = [p for p in cwd.rglob("*") if p.is_file() and p.name != "officescore.toml"]
    assert any(p.suffix == ".sqlite" for p in written) and any(p.name == "ATTRIBUTION.md" for p in written)
    for path in written:
        assert KEY.encode() not in path.read_bytes(), path
    for text in (out, err, status_out, table, exported, again, err2):
        assert KEY not in text
    manifest = sqlite3.connect(cwd / "raw" / "manifest.sqlite")
    titles = [row[0] for row in manifest.execute("SELECT title FROM results")]
    manifest.close()
    assert all(title.endswith("key=***") for title in titles)


def test_sigkill_loses_nothing_and_the_next_run_resumes(tmp_path: Path) -> None:
    host = ImageHost(n_images=24, drip_pause=0.15).start()
    server = FakeOpenverse(lambda q, i: f"{host.url}/drip/{i}?i={i}", total=24).start()
    out = tmp_path / "raw"
    args = ["-q", "cozy office", "--provider", "openverse", "--api-endpoint", server.url, "--per-query", "24"]
    args += ["--out", str(out), "--allow-private-hosts", "--min-size", "64"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "officescore", "scrape", *args, "--workers", "2", "--per-host", "2"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and kept(out) < 4:
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        before = kept(out)
        assert 4 <= before < 24, "the run should have been killed half-way"
        searches = server.counts["/v1/images/"]
        assert searches == 2  # both pages were fetched before the downloads began

        # Nothing already saved is lost: every recorded image is on disk, whole.
        db = sqlite3.connect(f"file:{out / 'manifest.sqlite'}?mode=ro", uri=True)
        saved = [row[0] for row in db.execute("SELECT path FROM results WHERE status='ok'")]
        db.close()
        for path in saved:
            assert Path(path).stem == hashlib.sha256((out / path).read_bytes()).hexdigest()

        config = ScrapeConfig(
            queries=["cozy office"],
            provider="openverse",
            per_query=24,
            out=out,
            api_endpoint=server.url,
            download=DownloadConfig(
                workers=8, per_host=8, min_width=64, min_height=64, allow_private_hosts=True
            ),
        )
        result = scrape(config)
    finally:
        server.stop()
        host.stop()
    assert result.calls == 0 and server.counts["/v1/images/"] == searches  # no page paid twice
    assert kept(out) == 24 and result.kept_total == 24
    images = out / "images"
    assert not [p for p in images.iterdir() if p.name.endswith(".part")]  # partial files cleaned
    assert len(list(images.iterdir())) == 24


def test_ctrl_c_stops_the_downloads_under_way_at_once_and_says_how_to_go_on(tmp_path: Path) -> None:
    host = ImageHost(slow_delay=30).start()  # every photo but the first: no answer for 30 s
    server = FakeOpenverse(lambda q, i: f"{host.url}/{'slow' if i else 'good'}/{i}?i={i}", total=8).start()
    out = tmp_path / "raw"
    args = ["-q", "desk", "--provider", "openverse", "--api-endpoint", server.url, "--out", str(out)]
    args += ["--allow-private-hosts", "--min-size", "64", "--timeout", "20"]
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "officescore", "scrape", *args],
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and kept(out) < 1:
            time.sleep(0.05)
        time.sleep(0.5)  # the slow downloads are waiting for their answer
        process.send_signal(signal.SIGINT)
        start = time.monotonic()
        _, err = process.communicate(timeout=60)
        waited = time.monotonic() - start
    finally:
        server.stop()
        host.stop()
    # Not after each slow download's 20 s timeout (and its retries): at once.
    assert process.returncode == 130 and waited < 10, (process.returncode, waited)
    assert "interrupted: what was saved is kept" in err and "run the same command again" in err
    assert kept(out) == 1 and not list((out / "images").glob("*.part"))


def kept(out: Path) -> int:
    path = out / "manifest.sqlite"
    if not path.exists():
        return 0
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=0.2)
        try:
            return int(db.execute("SELECT COUNT(*) FROM results WHERE status='ok'").fetchone()[0])
        finally:
            db.close()
    except sqlite3.Error:
        return 0  # not created yet


def test_status_lists_only_queries_that_belong_to_the_folder(
    cwd: Path, capsys: pytest.CaptureFixture[str], host: ImageHost
) -> None:
    server = FakeOpenverse(lambda q, i: f"{host.url}/good/{i % 12}?i={i}", total=20).start()
    common = ["--provider", "openverse", "--out", "raw dir", "--min-size", "64"]
    try:
        code, _, err = run_cli(
            ["-q", "desk", *common, "--api-endpoint", server.url, "--allow-private-hosts"], capsys
        )
    finally:
        server.stop()
    assert code == 0, err
    # No -q: the default list is not this folder's, so it is not shown as 12 untouched queries.
    code, out, _ = run_cli([*common, "--status", "--json"], capsys)
    assert code == 0 and [row["query"] for row in json.loads(out)["queries"]] == ["desk"]
    code, out, _ = run_cli([*common, "--status", "--json", "-q", "reading nook"], capsys)
    assert [(row["query"], row["pages"]) for row in json.loads(out)["queries"]] == [
        ("desk", 1),
        ("reading nook", 0),
    ]
    code, out, _ = run_cli([*common, "--status"], capsys)
    assert "next day starts 20" in out and out.count(" UTC") == 1  # a UTC day is named once

    code, out, _ = run_cli(["--out", "raw dir", "--export", "for labelling", "--json"], capsys)
    exported = json.loads(out)
    assert code == 0 and exported["kept"] == 12
    umask = os.umask(0)
    os.umask(umask)
    for name in ("csv", "attribution", "image_list"):  # shareable, not private (0600) temp files
        assert Path(exported[name]).stat().st_mode & 0o777 == 0o666 & ~umask
    assert "image/jpeg" in Path(exported["csv"]).read_text() and "image/jpg," not in out


def test_status_table_counts_and_the_used_up_hour(cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The table's columns add up (new = ok + dup + bad + todo), a -q given twice is one query,
    and an hour the provider said is used up says so (not "0 left")."""
    from officescore.scrape.manifest import Manifest
    from officescore.scrape.providers import SearchResult, UnsplashProvider

    filters = UnsplashProvider(access_key="-").filters
    outcomes = {"ok": "ok", "dup": "duplicate", "bad": "http_error", "todo": "pending"}
    with Manifest.open(cwd / "raw") as manifest:
        found = [SearchResult(url=f"http://a/{name}.jpg") for name in outcomes]
        manifest.record_page("unsplash", "desk", filters, 1, found, False, "r", "t")
        for (row_id, _, _), status in zip(manifest.pending(), outcomes.values(), strict=True):
            manifest.set_outcome(row_id, status=status)
        manifest.mark_hour_exhausted("unsplash", "2026-06-01T12", "t")
    args = ["--status", "--provider", "unsplash", "--out", "raw", "-q", "desk", "-q", "lamp", "-q", "lamp"]
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in out.splitlines() if "│ " in line]
    assert rows == [
        ["desk", "1", "4", "4", "1", "1", "1", "1", "no"],  # new 4 = ok 1 + dup 1 + bad 1 + todo 1
        ["lamp", "0", "0", "0", "0", "0", "0", "0", "no"],
    ]
    text = " ".join(out.split())
    assert "hour 2026-06-01T12: 0/50 calls, used up, next hour 2026-06-01 13:00 UTC" in text


def test_status_counts_a_page_whose_results_were_all_known_as_found(
    cwd: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Google's page returned two photos Openverse had found already: the call was paid and the page
    found 2, none new. The table said "found 0", as if Google had returned nothing."""
    from officescore.scrape.manifest import Manifest
    from officescore.scrape.providers import SearchResult

    known = [SearchResult(url=f"http://a/{n}.jpg") for n in range(2)]
    with Manifest.open(cwd / "raw") as manifest:
        manifest.record_page("openverse", "desk", "o", 1, known, True, "r", "t")
        manifest.record_page("google", "desk", "g", 1, known, True, "r", "t")
    code, out, err = run_cli(["--status", "--provider", "openverse", "--out", "raw", "-q", "desk"], capsys)
    assert code == 0, err
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in out.splitlines() if "│ " in line]
    assert ["google", "desk", "1", "2", "0", "0", "0", "0", "0", "yes"] in rows
    assert ["openverse", "desk", "1", "2", "2", "0", "0", "0", "2", "yes"] in rows
    code, out, err = run_cli(["--status", "--out", "raw", "-q", "desk", "--json"], capsys)
    google = next(row for row in json.loads(out)["queries"] if row["provider"] == "google")
    assert (google["found"], google["results"]) == (2, 0)


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["--rights", "cc_atribute"], {}, "'cc_atribute' is unknown"),  # auto without a key: Openverse
        (["--safe", "maybe"], {"GCS_DEVELOPER_KEY": "k", "GCS_CX": "c"}, "--safe"),  # auto with: Google
    ],
)
def test_a_bad_setting_under_auto_makes_no_folder(
    cwd: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    env: dict[str, str],
    expected: str,
) -> None:
    """--provider auto (the default) refuses a bad setting before --out is made, as a named provider
    does: no empty folder with a manifest and a lock file is left behind."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code, out, err = run_cli(["-q", "desk", "--out", "raw", *args], capsys)
    assert code == 2 and expected in err and len(err.strip().splitlines()) == 1
    assert list(cwd.iterdir()) == []


def test_status_of_a_folder_two_providers_searched(cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Rows of two providers name theirs in a first column; near-duplicates count as dup; a day the
    provider said is used up, a rate limit and Unsplash's download events are each said."""
    from officescore.scrape.manifest import Manifest
    from officescore.scrape.providers import SearchResult, UnsplashProvider

    def found(prefix: str, n: int) -> list[SearchResult]:
        return [
            SearchResult(url=f"http://a/{prefix}{i}.jpg", track_url=f"http://t/{prefix}{i}") for i in range(n)
        ]

    unsplash = UnsplashProvider(access_key="-").filters
    with Manifest.open(cwd / "raw") as manifest:
        manifest.record_page("openverse", "lamp", "f", 1, found("o", 2), False, "r", "t")
        manifest.record_page("unsplash", "desk", unsplash, 1, found("u", 3), False, "r", "t")
        statuses = ["near_duplicate", "ok", "duplicate", "ok", "ok"]
        for (row_id, _, _), status in zip(manifest.pending(), statuses, strict=True):
            manifest.set_outcome(row_id, status=status)
            manifest.set_tracking(row_id, "sent" if status == "ok" else "pending", "t")
        manifest.mark_exhausted("openverse", "2026-06-01", "t")
        manifest.set_retry_after("unsplash", "2026-06-01T12:30:00+00:00")
    code, out, err = run_cli(["--status", "--provider", "unsplash", "--out", "raw", "-q", "desk"], capsys)
    assert code == 0, err
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in out.splitlines() if "│ " in line]
    assert rows == [
        ["openverse", "lamp", "1", "2", "2", "1", "1", "0", "0", "no"],
        ["unsplash", "desk", "1", "3", "3", "2", "1", "0", "0", "no"],
    ]
    text = " ".join(out.split())
    assert "quota openverse 2026-06-01: 0/100 calls, used up; next day" in text
    assert "rate-limited until 2026-06-01 12:30:00 UTC" in text
    assert "download events (unsplash): pending 2, sent 3" in text


def test_status_reads_the_keys_a_run_would_and_says_its_notices(
    cwd: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With Google's key in the environment auto's next run is Google's; after Google's cut-off
    `--provider google --status` still reports, and says why no run would search."""
    monkeypatch.setenv("GCS_DEVELOPER_KEY", "k")
    monkeypatch.setenv("GCS_CX", "c")
    code, out, err = run_cli(["--status", "-q", "desk"], capsys)
    assert code == 0 and "next run searches: google" in out, err
    monkeypatch.setenv("OFFICESCORE_NOW", "2027-01-02T00:00:00Z")
    code, out, err = run_cli(["--status", "-q", "desk", "--provider", "google"], capsys)
    assert code == 0 and "Google's Custom Search JSON API is closed" in " ".join(out.split()), err


def test_the_command_line_default_rights_are_the_librarys() -> None:
    from officescore.cli.scrape import DEFAULT_RIGHTS
    from officescore.scrape.providers.base import DEFAULT_RIGHTS as LIBRARY_RIGHTS

    assert DEFAULT_RIGHTS == LIBRARY_RIGHTS


def _limits(out: str) -> dict[str, tuple[int, int | None]]:
    return {q["provider"]: (q["limit"], q.get("hour_limit")) for q in json.loads(out)["quota"]}


def test_quotas_are_set_per_provider_and_the_flag_is_the_searched_providers(
    cwd: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """[scrape.google] daily-quota = 90 holds for Google alone: Commons keeps its 5000 a day when auto
    or the user switches to it (the flat [scrape] daily-quota capped every provider at 90).
    --daily-quota is for the provider the command searches; the others keep theirs."""
    from officescore.scrape.manifest import Manifest
    from officescore.scrape.providers import SearchResult

    (cwd / "officescore.toml").write_text(
        "[scrape.google]\ndaily-quota = 90\n\n[scrape.unsplash]\nhourly-quota = 500\n", encoding="utf-8"
    )
    with Manifest.open(cwd / "raw") as manifest:
        for provider in ("google", "unsplash"):
            manifest.record_page(
                provider, "desk", "f", 1, [SearchResult(url=f"http://a/{provider}")], True, "r", "t"
            )
    args = ["--status", "--json", "--out", "raw", "-q", "desk", "--provider", "wikimedia"]
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    # Unsplash's day follows its hour (24 x 500), as --hourly-quota's does.
    assert _limits(out) == {"google": (90, None), "unsplash": (12000, 500), "wikimedia": (5000, 500)}
    code, out, err = run_cli([*args, "--daily-quota", "7", "--hourly-quota", "3"], capsys)
    assert code == 0, err
    assert _limits(out) == {"google": (90, None), "unsplash": (12000, 500), "wikimedia": (7, 3)}


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        # The flat key was meant for one provider, and said nothing about which: one line with the new form.
        (
            "[scrape]\ndaily-quota = 90\n",
            "[scrape] daily-quota is per provider now: write it under [scrape.google]",
        ),
        ("[scrape]\nhourly-quota = 5\n", "hourly-quota is per provider now: write it under [scrape.google]"),
        ("[scrape.gogle]\ndaily-quota = 90\n", "[scrape.gogle] is no provider (did you mean google?)"),
        ("[scrape.google]\nper-query = 5\n", "[scrape.google] per-query is no setting of a provider"),
        ("[scrape.google]\ndaily-quota = '90'\n", "[scrape.google] daily-quota must be a whole number"),
        (
            "[scrape.google]\ndaily-quota = -1\n",
            "[scrape.google] daily-quota must be a whole number, 0 or more",
        ),
    ],
)
def test_a_quota_setting_in_the_wrong_place_or_form_is_one_line(
    cwd: Path, capsys: pytest.CaptureFixture[str], toml: str, expected: str
) -> None:
    (cwd / "officescore.toml").write_text(toml, encoding="utf-8")
    code, out, err = run_cli(["--status", "--out", "raw", "-q", "desk"], capsys)
    assert code == 2 and expected in err, err
    assert len(err.strip().splitlines()) == 1
