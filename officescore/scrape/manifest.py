"""The scrape manifest: one SQLite file holding every result URL, page progress and the quota ledger.

`data/raw/manifest.sqlite` is the only state a scrape keeps, so a run can be killed at any moment
and the next one continues from it. WAL mode lets `--status` read while a scrape writes;
`synchronous=FULL` makes every commit durable before the next network call is made.
"""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from officescore.errors import DataError
from officescore.scrape.providers import SearchResult

MANIFEST_NAME = "manifest.sqlite"
SCHEMA_VERSION = 1

# Every status a result row can have; "pending" means not downloaded yet.
KEPT = "ok"
# The host did not give the photo after every retry (timeouts; 5xx, 429, dropped connections): a
# later run tries it again, until it has had MAX_ATTEMPTS attempts in all. The rest are final.
RETRY_LATER = ("timeout", "unavailable")
MAX_ATTEMPTS = 12
REJECTED = ("too_small", "not_image", "too_large", "http_error", *RETRY_LATER, "refused")
STATUSES = ("pending", KEPT, "duplicate", "near_duplicate", *REJECTED)

RESULT_COLUMNS = (
    "id",
    "provider",
    "query",
    "filters",
    "page",
    "rank",
    "url",
    "landing_page",
    "title",
    "rights",
    "license",
    "license_version",
    "license_url",
    "license_from",
    "creator",
    "creator_url",
    "attribution",
    "source",
    "mime",
    "status",
    "error",
    "sha256",
    "phash",
    "width",
    "height",
    "bytes",
    "path",
    "duplicate_of",
    "distance",
    "attempts",
    "found_at",
    "fetched_at",
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS results (
    id INTEGER PRIMARY KEY,
    provider TEXT NOT NULL, query TEXT NOT NULL, filters TEXT NOT NULL,
    page INTEGER NOT NULL, rank INTEGER NOT NULL,
    url TEXT NOT NULL UNIQUE,
    landing_page TEXT, title TEXT, rights TEXT,
    license TEXT, license_version TEXT, license_url TEXT,
    creator TEXT, creator_url TEXT, attribution TEXT, source TEXT, mime TEXT,
    status TEXT NOT NULL DEFAULT 'pending', error TEXT,
    sha256 TEXT, phash TEXT, width INTEGER, height INTEGER, bytes INTEGER, path TEXT,
    duplicate_of INTEGER REFERENCES results(id), distance INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    found_at TEXT NOT NULL, fetched_at TEXT,
    license_from TEXT
);
CREATE INDEX IF NOT EXISTS results_status ON results(status);
CREATE INDEX IF NOT EXISTS results_sha ON results(sha256);
CREATE TABLE IF NOT EXISTS pages (
    provider TEXT NOT NULL, query TEXT NOT NULL, filters TEXT NOT NULL, page INTEGER NOT NULL,
    results INTEGER NOT NULL, new_results INTEGER NOT NULL, last INTEGER NOT NULL,
    fetched_at TEXT NOT NULL,
    PRIMARY KEY (provider, query, filters, page)
);
CREATE TABLE IF NOT EXISTS quota (
    provider TEXT NOT NULL, day TEXT NOT NULL,
    calls INTEGER NOT NULL DEFAULT 0, exhausted INTEGER NOT NULL DEFAULT 0, updated_at TEXT,
    PRIMARY KEY (provider, day)
);
CREATE TABLE IF NOT EXISTS quota_hours (
    provider TEXT NOT NULL, hour TEXT NOT NULL,
    calls INTEGER NOT NULL DEFAULT 0, exhausted INTEGER NOT NULL DEFAULT 0, updated_at TEXT,
    PRIMARY KEY (provider, hour)
);
CREATE TABLE IF NOT EXISTS cursors (
    provider TEXT NOT NULL, query TEXT NOT NULL, filters TEXT NOT NULL, page INTEGER NOT NULL,
    cursor TEXT NOT NULL,
    PRIMARY KEY (provider, query, filters, page)
);
CREATE TABLE IF NOT EXISTS tracking (
    result_id INTEGER PRIMARY KEY REFERENCES results(id),
    provider TEXT NOT NULL, url TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending', sent_at TEXT
);
"""
# The tables after `quota` were added without a schema bump: CREATE IF NOT EXISTS gives an older
# manifest empty ones, which is what it would have held (no hours, cursors or tracking yet).
# Likewise these results columns, added to an older manifest empty (`_add_columns`):
# license_from: the provider that stated the row's licence (the finder, or a later one: `_adopt_licence`).
ADDED_COLUMNS = {"license_from": "TEXT"}


@dataclass(frozen=True)
class QueryProgress:
    """How far one (provider, query, filters) has been paged."""

    pages: int
    last_page_seen: bool
    results: int

    def complete(self, pages_wanted: int) -> bool:
        return self.last_page_seen or self.pages >= pages_wanted


class Manifest:
    """The manifest database. Use from one thread; open with `Manifest.open(out_dir)`."""

    def __init__(self, path: Path, read_only: bool = False) -> None:
        self.path = Path(path)
        # --status and --export in a folder we may not write (a read-only mount, another user's
        # data/raw): SQLite cannot open a WAL database there (it needs its -shm file), and opened as
        # immutable it would not see what is still in the -wal file. So a copy of both is read.
        self.frozen = read_only and self.path.is_file() and not os.access(self.path.parent, os.W_OK)
        self._copy: tempfile.TemporaryDirectory[str] | None = None
        source = self._copied() if self.frozen else self.path
        if not self.frozen:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(source, timeout=30, isolation_level=None)
            self.db.row_factory = sqlite3.Row
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self.db.executescript(_SCHEMA)
            self._add_columns()
            self._check_version()
        except BaseException as exc:
            self.close()
            if isinstance(exc, sqlite3.DatabaseError) and not disk_full(exc):  # full: run.py says so
                raise DataError(
                    f"{self.path}: not a usable manifest ({exc}); move it away to start afresh"
                ) from exc
            raise

    def _copied(self) -> Path:
        """The manifest and its -wal file copied into a temporary folder (deleted by `close`)."""
        self._copy = tempfile.TemporaryDirectory(prefix="officescore-manifest-")
        copy = Path(self._copy.name) / self.path.name
        try:
            for suffix in ("", "-wal"):
                original = self.path.with_name(self.path.name + suffix)
                if original.is_file():
                    shutil.copyfile(original, copy.with_name(copy.name + suffix))
        except OSError as exc:
            self.close()
            raise DataError(f"{self.path}: cannot read the manifest ({exc.strerror or exc})") from None
        return copy

    @classmethod
    def open(cls, out_dir: Path) -> Manifest:
        return cls(Path(out_dir) / MANIFEST_NAME)

    def close(self) -> None:
        if hasattr(self, "db"):  # not when the copy or the connection failed
            self.db.close()
        if self._copy is not None:
            self._copy.cleanup()
            self._copy = None

    def __enter__(self) -> Manifest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _add_columns(self) -> None:
        have = {row["name"] for row in self.db.execute("PRAGMA table_info(results)")}
        for name, kind in ADDED_COLUMNS.items():
            if name not in have:
                self.db.execute(f"ALTER TABLE results ADD COLUMN {name} {kind}")

    def _check_version(self) -> None:
        row = self.db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        if row is None:
            self.db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        elif str(row["value"]).strip() != str(SCHEMA_VERSION):  # a hand-edited "x" is not a crash
            raise DataError(
                f"{self.path}: manifest schema {row['value']} is not {SCHEMA_VERSION}; "
                "use the officescore version that wrote it"
            )

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT: all of it lands on disk or none of it does."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # ---- quota ledger -------------------------------------------------------------------------
    def quota(self, provider: str, day: str) -> tuple[int, bool]:
        row = self.db.execute(
            "SELECT calls, exhausted FROM quota WHERE provider=? AND day=?", (provider, day)
        ).fetchone()
        return (row["calls"], bool(row["exhausted"])) if row else (0, False)

    def ledger_providers(self) -> set[str]:
        """Every provider with a call in the ledger (a provider may be paid and have no page)."""
        return {row["provider"] for row in self.db.execute("SELECT DISTINCT provider FROM quota")}

    def hour_quota(self, provider: str, hour: str) -> tuple[int, bool]:
        row = self.db.execute(
            "SELECT calls, exhausted FROM quota_hours WHERE provider=? AND hour=?", (provider, hour)
        ).fetchone()
        return (row["calls"], bool(row["exhausted"])) if row else (0, False)

    def spend_call(self, provider: str, day: str, when: str, hour: str | None = None) -> None:
        """Count one API call on the day (and the hour), committed before the call is made (a crash
        never under-counts)."""
        with self.transaction() as db:
            db.execute(
                "INSERT INTO quota(provider, day, calls, updated_at) VALUES (?, ?, 1, ?) "
                "ON CONFLICT(provider, day) DO UPDATE SET calls = calls + 1, "
                "updated_at = excluded.updated_at",
                (provider, day, when),
            )
            if hour is not None:
                db.execute(
                    "INSERT INTO quota_hours(provider, hour, calls, updated_at) VALUES (?, ?, 1, ?) "
                    "ON CONFLICT(provider, hour) DO UPDATE SET calls = calls + 1, "
                    "updated_at = excluded.updated_at",
                    (provider, hour, when),
                )

    def unspend_call(self, provider: str, day: str, when: str, hour: str | None = None) -> None:
        """Take back a call `spend_call` counted that was never sent (the provider neither saw nor
        charged it); a crash before this leaves it counted: an over-count, never an under-count."""
        with self.transaction() as db:
            db.execute(
                "UPDATE quota SET calls = calls - 1, updated_at = ? WHERE provider = ? AND day = ? "
                "AND calls > 0",
                (when, provider, day),
            )
            if hour is not None:
                db.execute(
                    "UPDATE quota_hours SET calls = calls - 1, updated_at = ? WHERE provider = ? "
                    "AND hour = ? AND calls > 0",
                    (when, provider, hour),
                )

    def mark_hour_exhausted(self, provider: str, hour: str, when: str) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO quota_hours(provider, hour, exhausted, updated_at) VALUES (?, ?, 1, ?) "
                "ON CONFLICT(provider, hour) DO UPDATE SET exhausted = 1, updated_at = excluded.updated_at",
                (provider, hour, when),
            )

    def meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return str(row["value"]) if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                (key, value),
            )

    def mark_exhausted(self, provider: str, day: str, when: str) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO quota(provider, day, exhausted, updated_at) VALUES (?, ?, 1, ?) "
                "ON CONFLICT(provider, day) DO UPDATE SET exhausted = 1, updated_at = excluded.updated_at",
                (provider, day, when),
            )

    def retry_after(self, provider: str) -> str | None:
        """ISO time before which the provider asked not to be called again (a rate limit)."""
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (f"retry_after:{provider}",)).fetchone()
        return str(row["value"]) if row else None

    def set_retry_after(self, provider: str, when: str | None) -> None:
        with self.transaction() as db:
            if when is None:
                db.execute("DELETE FROM meta WHERE key=?", (f"retry_after:{provider}",))
            else:
                db.execute(
                    "INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                    (f"retry_after:{provider}", when),
                )

    # ---- pages and results --------------------------------------------------------------------
    def progress(self, provider: str, query: str, filters: str) -> QueryProgress:
        # The highest page, not how many: with a page row deleted by hand the count would name a
        # page that is there, whose insert fails after its call was paid, on every run.
        row = self.db.execute(
            "SELECT COALESCE(MAX(page), 0) AS pages, COALESCE(MAX(last), 0) AS last, "
            "COALESCE(SUM(results), 0) AS n "
            "FROM pages WHERE provider=? AND query=? AND filters=?",
            (provider, query, filters),
        ).fetchone()
        return QueryProgress(pages=row["pages"], last_page_seen=bool(row["last"]), results=row["n"])

    def record_page(
        self,
        provider: str,
        query: str,
        filters: str,
        page: int,
        results: list[SearchResult],
        last: bool,
        rights: str,
        when: str,
        cursor: str | None = None,
    ) -> int:
        """Store a page's results, mark the page fetched and keep the cursor that fetches the next
        page, all in one transaction; returns new rows."""
        new = 0
        with self.transaction() as db:
            for rank, result in enumerate(results, start=1):
                inserted = db.execute(
                    "INSERT OR IGNORE INTO results(provider, query, filters, page, rank, url, landing_page, "
                    "title, rights, license, license_version, license_url, creator, creator_url, "
                    "attribution, source, mime, found_at, license_from) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        provider,
                        query,
                        filters,
                        page,
                        rank,
                        result.url,
                        result.landing_page,
                        result.title,
                        rights,
                        result.license,
                        result.license_version,
                        result.license_url,
                        result.creator,
                        result.creator_url,
                        result.attribution,
                        result.source,
                        result.mime,
                        when,
                        provider if result.license else None,
                    ),
                )
                new += inserted.rowcount
                if not inserted.rowcount and result.license:
                    _adopt_licence(db, result, provider)
                if inserted.rowcount and result.track_url:
                    db.execute(
                        "INSERT INTO tracking(result_id, provider, url) VALUES (?, ?, ?)",
                        (inserted.lastrowid, provider, result.track_url),
                    )
            db.execute(
                "INSERT INTO pages VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (provider, query, filters, page, len(results), new, int(last), when),
            )
            if cursor is not None and not last:
                db.execute(
                    "INSERT OR REPLACE INTO cursors VALUES (?, ?, ?, ?, ?)",
                    (provider, query, filters, page + 1, cursor),
                )
        return new

    def cursor(self, provider: str, query: str, filters: str, page: int) -> str | None:
        """The token that fetches `page` (stored with the page before it)."""
        row = self.db.execute(
            "SELECT cursor FROM cursors WHERE provider=? AND query=? AND filters=? AND page=?",
            (provider, query, filters, page),
        ).fetchone()
        return str(row["cursor"]) if row else None

    # ---- download tracking (Unsplash) ---------------------------------------------------------
    def pending_tracking(self, provider: str) -> list[tuple[int, str]]:
        """(result id, url) of downloaded photos whose download event was not sent yet."""
        rows = self.db.execute(
            "SELECT t.result_id, t.url FROM tracking t JOIN results r ON r.id = t.result_id "
            "WHERE t.provider=? AND t.state='pending' AND r.status IN ('ok', 'duplicate', 'near_duplicate') "
            "ORDER BY t.result_id",
            (provider,),
        )
        return [(row["result_id"], row["url"]) for row in rows]

    def set_tracking(self, result_id: int, state: str, when: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE tracking SET state=?, sent_at=? WHERE result_id=?", (state, when, result_id))

    def tracking_counts(self) -> dict[str, int]:
        rows = self.db.execute("SELECT state, COUNT(*) AS n FROM tracking GROUP BY state")
        return {row["state"]: row["n"] for row in rows}

    def pending(self) -> list[tuple[int, str, int]]:
        """(id, url, attempts made by earlier runs) of every result not downloaded yet, and of those
        whose host failed for a reason that may pass (RETRY_LATER) with attempts to spare, in the
        order they were found."""
        again, params = _retry_later_where()
        rows = self.db.execute(
            f"SELECT id, url, attempts FROM results WHERE status='pending' OR {again} ORDER BY id", params
        )
        return [(row["id"], row["url"], int(row["attempts"])) for row in rows]

    def retry_later(self) -> int:
        """Results a later run downloads again: their host failed for a reason that may pass, and
        they have attempts to spare."""
        again, params = _retry_later_where()
        row = self.db.execute(f"SELECT COUNT(*) AS n FROM results WHERE {again}", params).fetchone()
        return int(row["n"])

    def kept(self) -> list[sqlite3.Row]:
        return list(self.db.execute("SELECT * FROM results WHERE status=? ORDER BY id", (KEPT,)))

    def set_outcome(self, row_id: int, **fields: Any) -> None:
        unknown = set(fields) - set(RESULT_COLUMNS)
        if unknown:
            raise ValueError(f"unknown manifest columns: {sorted(unknown)}")
        names = ", ".join(f"{name}=?" for name in fields)
        with self.transaction() as db:
            db.execute(f"UPDATE results SET {names} WHERE id=?", (*fields.values(), row_id))

    def rows(self) -> Iterable[sqlite3.Row]:
        return self.db.execute("SELECT * FROM results ORDER BY id")

    def status_counts(self) -> dict[str, int]:
        rows = self.db.execute("SELECT status, COUNT(*) AS n FROM results GROUP BY status")
        return {row["status"]: row["n"] for row in rows}

    def query_table(self) -> list[dict[str, Any]]:
        """Per (provider, query, filters): pages fetched, last page seen, results the pages returned
        (`found`: what the calls paid for) and the rows they added by status (`results`: those no
        other query or provider had found first)."""
        pages = {
            (r["provider"], r["query"], r["filters"]): (r["pages"], bool(r["last"]), r["found"])
            for r in self.db.execute(
                # MAX, as in `progress`: --status and the run agree when a page row was deleted.
                "SELECT provider, query, filters, MAX(page) AS pages, MAX(last) AS last, "
                "SUM(results) AS found FROM pages GROUP BY provider, query, filters"
            )
        }
        table: dict[tuple[str, str, str], dict[str, Any]] = {
            key: {"pages": n, "last_page_seen": last, "found": found, "results": 0, "by_status": {}}
            for key, (n, last, found) in pages.items()
        }
        for r in self.db.execute(
            "SELECT provider, query, filters, status, COUNT(*) AS n FROM results "
            "GROUP BY provider, query, filters, status"
        ):
            entry = table.setdefault(
                (r["provider"], r["query"], r["filters"]),
                {"pages": 0, "last_page_seen": False, "found": 0, "results": 0, "by_status": {}},
            )
            entry["results"] += r["n"]
            entry["by_status"][r["status"]] = r["n"]
        return [
            {"provider": p, "query": q, "filters": f, **entry} for (p, q, f), entry in sorted(table.items())
        ]


CREDIT_COLUMNS = (
    "landing_page",
    "title",
    "license",
    "license_version",
    "license_url",
    "creator",
    "creator_url",
    "attribution",
    "source",
)


def _adopt_licence(db: sqlite3.Connection, result: SearchResult, provider: str) -> None:
    """An image found again by a provider that states its licence, where the first finder stated none
    (Google never does): the stating provider's credit fields replace the first finder's, all of them
    together so a credit never links one provider's page with another's licence; `license_from`
    names that provider (the row's `provider` stays its finder)."""
    assignments = ", ".join(f"{name} = ?" for name in (*CREDIT_COLUMNS, "license_from"))
    db.execute(
        f"UPDATE results SET {assignments} WHERE url = ? AND (license IS NULL OR license = '')",  # noqa: S608
        (*(getattr(result, name) for name in CREDIT_COLUMNS), provider, result.url),
    )


def disk_full(exc: BaseException) -> bool:
    """Whether `exc` says the disk (or the user's quota) is full: SQLite's "database or disk is full",
    or a write's ENOSPC / EDQUOT."""
    if isinstance(exc, sqlite3.DatabaseError):
        return "full" in str(exc)
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def _retry_later_where() -> tuple[str, tuple[Any, ...]]:
    """The SQL condition (and its parameters) for a result a later run downloads again."""
    marks = ", ".join("?" for _ in RETRY_LATER)
    return f"(status IN ({marks}) AND attempts < ?)", (*RETRY_LATER, MAX_ATTEMPTS)


def kept_photos(folder: Path) -> tuple[list[tuple[Path, sqlite3.Row]], list[Path]]:
    """The photos a scrape folder kept: those on disk, with their rows, and those deleted by hand
    since (weeding out bad ones), which every command reading the folder leaves out. Read only: a
    folder we may not write (a read-only mount, another user's data/raw) works too."""
    with Manifest(Path(folder) / MANIFEST_NAME, read_only=True) as manifest:
        rows = [row for row in manifest.kept() if row["path"]]
    present: list[tuple[Path, sqlite3.Row]] = []
    deleted: list[Path] = []
    for row in rows:
        path = Path(folder) / row["path"]  # an absolute path stays as it is
        if path.is_file():
            present.append((path, row))
        else:
            deleted.append(path)
    return present, deleted


def deleted_note(deleted: list[Path]) -> str:
    """How the commands name the photos `kept_photos` found deleted (the first three)."""
    shown = ", ".join(p.name for p in deleted[:3]) + (" ..." if len(deleted) > 3 else "")
    return (
        f"{len(deleted)} photo(s) the scrape kept are no longer on disk (deleted by hand?), left out: {shown}"
    )


def empty_note(empty: Sequence[Path]) -> str:
    """How the commands name the scrape folders with no photo (a query that found nothing) they
    skipped beside others that have photos."""
    return (
        f"skipped {len(empty)} scrape folder(s) with no photos (none kept, or deleted since): "
        + ", ".join(map(str, empty))
    )


def no_photos_message(empty: Sequence[Path]) -> str:
    """The error when every scrape folder given is empty: nothing left to skip to."""
    which = "this scrape folder" if len(empty) == 1 else "these scrape folders"
    return f"{', '.join(map(str, empty))}: no photos in {which} (none kept, or deleted since)"
