"""Orchestration: search pages within the quota, download what was found, dedup, record it all.

A scrape is two phases over one manifest:
1. search: for each query, fetch the next unfetched page while the day's quota allows. The call
   is counted in the ledger (committed) before it is made, so a crash can never under-count;
   the page's results and its "fetched" mark are committed together, so a page that came back
   is never paid for again.
2. download: every result still `pending` (from this run or an earlier one) is fetched,
   verified, deduplicated and stored as images/<sha256>.<ext>.

Stopping because the quota is used up (stop_reason "quota") or because the provider asked for a
longer pause than we wait for (stop_reason "rate_limited": the time is kept in the manifest and no
call is made before it) is a normal end, not an error. A search that keeps failing still lets the
run download what earlier pages found before the error is raised.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from officescore.config import DEFAULT_RAW_DIR, load_config, secret
from officescore.errors import ConfigError, QuotaExhaustedError
from officescore.progress import SILENT, Reporter
from officescore.scrape import quota as clock
from officescore.scrape.dedup import DEFAULT_NEAR_DUP_THRESHOLD, DedupIndex
from officescore.scrape.download import DownloadConfig, Downloader, Fetched, clean_partial_files
from officescore.scrape.manifest import KEPT, MANIFEST_NAME, Manifest
from officescore.scrape.providers import (
    DEFAULT_RIGHTS,
    GOOGLE_CLOSING_NOTICE,
    GoogleProvider,
    ImageProvider,
    OpenverseProvider,
    ProviderError,
    RateLimited,
    Scrubber,
    TransientError,
)
from officescore.scrape.quota import QuotaState

# Each provider's quota day, by name: --status reports providers it has no keys to build.
QUOTA_ZONES: dict[str, tzinfo] = {cls.name: cls.quota_tz for cls in (GoogleProvider, OpenverseProvider)}
PROVIDERS = tuple(QUOTA_ZONES)
IMAGES_DIR = "images"
LOCK_NAME = ".scrape.lock"
MAX_RATE_LIMIT_WAIT = 120.0  # seconds; a longer wait ends the search phase instead
MAX_RATE_LIMITED = 5  # rate-limit answers in a row for one page before the run pauses anyway


class _Stop(Exception):
    """Ends the search phase normally: the quota is used up or a rate limit asks for a long pause."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def default_queries() -> list[str]:
    """The package's default search terms (officescore/data/queries.txt)."""
    return read_queries(Path(__file__).resolve().parent.parent / "data" / "queries.txt")


def read_queries(path: Path) -> list[str]:
    """One query per line; blank lines and lines starting with # are ignored."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read queries file {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not a UTF-8 text file (one query per line)") from None
    queries = [line.strip() for line in text.splitlines()]
    queries = [q for q in queries if q and not q.startswith("#")]
    if not queries:
        raise ConfigError(f"{path} holds no queries (one per line; # starts a comment)")
    return list(dict.fromkeys(queries))


@dataclass
class ScrapeConfig:
    queries: list[str]
    provider: str = "google"
    per_query: int = 100
    daily_quota: int = 100
    out: Path = DEFAULT_RAW_DIR
    rights: str = DEFAULT_RIGHTS
    safe: str = "active"
    img_size: str | None = None
    file_type: str | None = None
    api_endpoint: str | None = None
    near_dup_threshold: int = DEFAULT_NEAR_DUP_THRESHOLD
    api_retries: int = 2
    api_backoff: float = 2.0
    download: DownloadConfig = field(default_factory=DownloadConfig)
    google_key: str | None = field(default=None, repr=False)
    google_cx: str | None = field(default=None, repr=False)
    openverse_client_id: str | None = field(default=None, repr=False)
    openverse_client_secret: str | None = field(default=None, repr=False)
    # True when `queries` is the package's default list rather than the user's -q / --queries.
    default_query_list: bool = False

    def validate(self) -> None:
        if self.provider not in PROVIDERS:
            raise ConfigError(f"--provider must be one of {', '.join(PROVIDERS)}, not {self.provider!r}")
        if not self.queries:
            raise ConfigError("no queries: give -q QUERY, --queries FILE, or neither for the default list")
        if self.per_query < 1:
            raise ConfigError("--per-query must be at least 1")
        if self.daily_quota < 0:
            raise ConfigError("--daily-quota must be 0 or more")
        if self.api_endpoint is not None:
            parts = urlsplit(self.api_endpoint)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ConfigError(
                    f"--api-endpoint must be an http(s) URL like https://api.example.org/, "
                    f"not {self.api_endpoint!r}"
                )
        clock.now()  # a malformed OFFICESCORE_NOW fails here, before anything is opened
        if self.near_dup_threshold < 0 or self.near_dup_threshold > 64:
            raise ConfigError("--near-dup-threshold must be between 0 and 64 (bits of a 64-bit phash)")
        d = self.download
        if d.workers < 1 or d.per_host < 1:
            raise ConfigError("--workers and --per-host must be at least 1")
        if d.max_bytes < 1 or d.min_width < 0 or d.min_height < 0:
            raise ConfigError("--max-bytes must be positive and --min-size not negative")
        if min(d.connect_timeout, d.read_timeout, d.total_timeout) <= 0:
            raise ConfigError("--timeout must be more than 0 seconds")
        if d.retries < 0 or self.api_retries < 0:
            raise ConfigError("--retries must be 0 or more")


def secrets_from_environment(config: ScrapeConfig) -> ScrapeConfig:
    """Fill in keys from the environment / officescore.toml [scrape] where not given."""
    table = load_config()
    config.google_key = config.google_key or secret("GCS_DEVELOPER_KEY", "scrape", "gcs_developer_key", table)
    config.google_cx = config.google_cx or secret("GCS_CX", "scrape", "gcs_cx", table)
    config.openverse_client_id = config.openverse_client_id or secret(
        "OPENVERSE_CLIENT_ID", "scrape", "openverse_client_id", table
    )
    config.openverse_client_secret = config.openverse_client_secret or secret(
        "OPENVERSE_CLIENT_SECRET", "scrape", "openverse_client_secret", table
    )
    if config.api_endpoint is None:
        env = f"OFFICESCORE_{config.provider.upper()}_ENDPOINT"
        config.api_endpoint = os.environ.get(env) or None
    return config


def make_provider(config: ScrapeConfig) -> ImageProvider:
    if config.provider == "google":
        return GoogleProvider(
            developer_key=config.google_key or "",
            cx=config.google_cx or "",
            endpoint=config.api_endpoint,
            rights_filter=config.rights,
            safe=config.safe,
            img_size=config.img_size,
            file_type=config.file_type,
        )
    return OpenverseProvider(
        endpoint=config.api_endpoint,
        client_id=config.openverse_client_id,
        client_secret=config.openverse_client_secret,
        rights_filter=config.rights,
    )


@dataclass
class ScrapeResult:
    provider: str
    out: Path
    stop_reason: str  # "done" (every query has its pages), "quota" (used up) or "rate_limited"
    calls: int  # API calls made by this run
    pages: int  # pages fetched by this run
    new_results: int
    downloads: dict[str, int]  # this run's download outcomes by status
    kept_total: int
    quota: QuotaState
    message: str
    notices: list[str] = field(default_factory=list)
    next_query: str | None = None
    next_page: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "out": str(self.out),
            "manifest": str(self.out / MANIFEST_NAME),
            "stop_reason": self.stop_reason,
            "calls": self.calls,
            "pages": self.pages,
            "new_results": self.new_results,
            "downloads": self.downloads,
            "kept_total": self.kept_total,
            "quota": self.quota.to_dict(),
            "next": {"query": self.next_query, "page": self.next_page} if self.next_query else None,
            "message": self.message,
            "notices": self.notices,
        }


def quota_state(manifest: Manifest, name: str, limit: int) -> QuotaState:
    """Today's ledger entry for the provider called `name`."""
    tz = QUOTA_ZONES.get(name, timezone.utc)
    when = clock.now()
    day = clock.quota_day(tz, when).isoformat()
    calls, exhausted = manifest.quota(name, day)
    retry_at = _parse_time(manifest.retry_after(name))
    if retry_at is not None and retry_at <= when:
        retry_at = None
    resets = clock.next_reset(tz, when)
    return QuotaState(name, day, calls, limit, exhausted or calls >= limit, resets, retry_at)


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None  # a hand-edited manifest: ignore the pause rather than fail


@contextmanager
def _exclusive(out: Path) -> Iterator[None]:
    """One scrape per output folder at a time: two would pay for the same pages."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder for images/ and manifest.sqlite")
    try:
        out.mkdir(parents=True, exist_ok=True)
        handle = open(out / LOCK_NAME, "a+")  # noqa: SIM115 - held for the whole run
    except OSError as exc:
        raise ConfigError(f"cannot write to --out {out}: {exc.strerror or exc}") from None
    try:
        try:
            import fcntl

            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # pragma: no cover - Windows: no advisory lock
            pass
        except OSError:
            message = f"another scrape is writing to {out}; wait for it or use another --out"
            raise ConfigError(message) from None
        yield
    finally:
        handle.close()


class _Run:
    """State of one scrape run."""

    def __init__(self, config: ScrapeConfig, manifest: Manifest, provider: ImageProvider, reporter: Reporter):
        self.config = config
        self.manifest = manifest
        self.provider = provider
        self.reporter = reporter
        self.calls = 0
        self.pages = 0
        self.new_results = 0
        self.stop_reason = "done"
        self.next_query: str | None = None
        self.next_page: int | None = None

    def scrub(self, text: str | None) -> str | None:
        return Scrubber(self.provider.secrets())(text)

    # ---- search -----------------------------------------------------------------------------
    def search_all(self, notices: list[str]) -> None:
        provider, config = self.provider, self.config
        wanted = provider.pages_for(config.per_query)
        queries = list(dict.fromkeys(config.queries))
        todo = [(q, self.manifest.progress(provider.name, q, provider.filters)) for q in queries]
        total = sum(0 if p.complete(wanted) else wanted - p.pages for _, p in todo)
        with self.reporter.stage(f"search {provider.name}", total=total) as stage:
            for notice in notices:
                stage.log(notice)
            for query, progress in todo:
                page = progress.pages + 1
                if progress.complete(wanted):
                    continue
                while page <= wanted:
                    try:
                        last = self.fetch_page(query, page, stage)
                    except _Stop as stop:
                        self.stop_reason, self.next_query, self.next_page = stop.reason, query, page
                        return
                    stage.advance(1, status=f"{query!r} p{page}")
                    if last:
                        stage.advance(wanted - page)
                        break
                    page += 1

    def fetch_page(self, query: str, page: int, stage: Any = None) -> bool:
        """Fetch and record one page; returns its `last` flag. Raises _Stop to end the search."""
        provider, manifest = self.provider, self.manifest
        attempt = limited = 0
        while True:
            state = quota_state(manifest, provider.name, self.config.daily_quota)
            if state.exhausted:
                raise _Stop("quota")
            if state.retry_at is not None:
                raise _Stop("rate_limited")
            manifest.spend_call(provider.name, state.day, clock.now().isoformat())
            self.calls += 1
            try:
                result = provider.search(query, page)
            except QuotaExhaustedError:
                manifest.mark_exhausted(provider.name, state.day, clock.now().isoformat())
                raise _Stop("quota") from None
            except RateLimited as exc:
                # A rate limit is not the daily quota: the day stays open, only this pause is kept.
                limited += 1
                if exc.seconds > MAX_RATE_LIMIT_WAIT or limited > MAX_RATE_LIMITED:
                    until = clock.now() + timedelta(seconds=max(exc.seconds, 60.0 if limited > 1 else 1.0))
                    manifest.set_retry_after(provider.name, until.isoformat())
                    raise _Stop("rate_limited") from None
                if stage is not None:
                    stage.log(f"{provider.name} rate limit: waiting {exc.seconds:.0f}s")
                time.sleep(exc.seconds)
                continue
            except TransientError as exc:
                attempt += 1
                if attempt > self.config.api_retries:
                    raise ProviderError(
                        f"{self.scrub(str(exc))} (after {attempt} tries); nothing is lost: run the same "
                        "command again later to continue"
                    ) from None
                time.sleep(self.config.api_backoff * 2 ** (attempt - 1))
                continue
            except Exception as exc:  # UserErrors included: scrub their text before it travels
                exc.args = tuple(self.scrub(str(a)) if isinstance(a, str) else a for a in exc.args)
                raise
            results = [_scrub_result(r, Scrubber(provider.secrets())) for r in result.results]
            new = manifest.record_page(
                provider.name,
                query,
                provider.filters,
                page,
                results,
                result.last,
                provider.rights,
                clock.now().isoformat(),
            )
            self.pages += 1
            self.new_results += new
            return result.last

    # ---- download ---------------------------------------------------------------------------
    def download_pending(self, images: Path) -> Counter[str]:
        outcomes: Counter[str] = Counter()
        pending = self.manifest.pending()
        if not pending:
            return outcomes
        index = DedupIndex(self.config.near_dup_threshold)
        for row in self.manifest.kept():
            index.add(row["id"], row["sha256"], row["phash"])
        downloader = Downloader(self.config.download, images, scrub=lambda t: self.scrub(t) or "")
        with self.reporter.stage("download", total=len(pending)) as stage:
            for row_id, fetched in downloader.map(pending):
                status = self.store(row_id, fetched, index, images)
                outcomes[status] += 1
                stage.advance(1, status=f"{outcomes[KEPT]} kept")
        return outcomes

    def store(self, row_id: int, fetched: Fetched, index: DedupIndex, images: Path) -> str:
        """Decide duplicate / near-duplicate / keep, move the file into place, record the row."""
        now = clock.now().isoformat()
        common: dict[str, Any] = {"attempts": fetched.attempts, "fetched_at": now, "error": fetched.error}
        if fetched.status != "fetched":
            self.manifest.set_outcome(row_id, status=fetched.status, **common)
            return fetched.status
        assert fetched.sha256 and fetched.phash and fetched.temp_path
        common.update(
            sha256=fetched.sha256,
            phash=fetched.phash,
            width=fetched.width,
            height=fetched.height,
            bytes=fetched.bytes,
        )
        same = index.exact(fetched.sha256)
        near = index.near(fetched.phash) if same is None else None
        if same is not None or near is not None:
            fetched.discard()
            status = "duplicate" if same is not None else "near_duplicate"
            original, distance = (same, 0) if same is not None else near  # type: ignore[misc]
            common.update(duplicate_of=original, distance=distance)
            self.manifest.set_outcome(row_id, status=status, **common)
            return status
        name = f"{fetched.sha256}.{fetched.ext}"
        os.replace(fetched.temp_path, images / name)  # a killed run leaves the file or the .part
        fetched.temp_path = None
        self.manifest.set_outcome(row_id, status=KEPT, path=f"{IMAGES_DIR}/{name}", **common)
        index.add(row_id, fetched.sha256, fetched.phash)
        return KEPT


def _scrub_result(result: Any, scrub: Scrubber) -> Any:
    """Secrets never reach the manifest, even if a provider echoed them inside a URL."""
    changes = {
        f.name: scrub.value(getattr(result, f.name))
        for f in dataclasses.fields(result)
        if isinstance(getattr(result, f.name), str)
    }
    return replace(result, **changes)


def scrape(config: ScrapeConfig, reporter: Reporter = SILENT) -> ScrapeResult:
    """Run (or continue) a scrape into `config.out`; see the module docstring."""
    config.validate()
    provider = make_provider(config)
    out = Path(config.out)
    images = out / IMAGES_DIR
    notices = [GOOGLE_CLOSING_NOTICE] if provider.name == "google" else []
    with _exclusive(out), Manifest.open(out) as manifest:
        removed = clean_partial_files(images)
        images.mkdir(parents=True, exist_ok=True)
        if removed:
            notices.append(f"removed {removed} partial download(s) left by an interrupted run")
        run = _Run(config, manifest, provider, reporter)
        failure: ProviderError | None = None
        try:
            run.search_all(notices)
        except ProviderError as exc:  # the search keeps failing: still download what was found
            failure = exc
        outcomes = run.download_pending(images)
        state = quota_state(manifest, provider.name, config.daily_quota)
        kept_total = manifest.status_counts().get(KEPT, 0)
    if failure is not None:
        if run.pages or outcomes:
            raise ProviderError(f"{failure}. Before it failed: {_collected(run, outcomes, kept_total)}")
        raise failure
    message = _summary(run, outcomes, kept_total, state)
    return ScrapeResult(
        provider=provider.name,
        out=out,
        stop_reason=run.stop_reason,
        calls=run.calls,
        pages=run.pages,
        new_results=run.new_results,
        downloads=dict(outcomes),
        kept_total=kept_total,
        quota=state,
        message=message,
        notices=notices,
        next_query=run.next_query,
        next_page=run.next_page,
    )


def _collected(run: _Run, outcomes: Counter[str], kept_total: int) -> str:
    return (
        f"{run.pages} page(s) searched ({run.calls} API call(s)), {run.new_results} new result(s), "
        f"{outcomes.get(KEPT, 0)} image(s) kept this run, {kept_total} in total"
    )


def _summary(run: _Run, outcomes: Counter[str], kept_total: int, state: QuotaState) -> str:
    got = _collected(run, outcomes, kept_total)
    if run.stop_reason == "rate_limited":
        until = f"until {state.retry_text()}" if state.retry_at else "for a moment"
        return (
            f"Paused: {state.provider} asked for a pause (rate limit) {until}; the day's quota is not "
            f"used up ({state.calls}/{state.limit} calls). {got}. Run the same command again after "
            f"that to continue at {run.next_query!r} page {run.next_page}."
        )
    if run.stop_reason == "quota":
        return (
            f"Stopped: the {state.provider} quota for {state.day} is used up ({state.calls}/{state.limit} "
            f"calls{', provider says exhausted' if state.calls < state.limit else ''}). {got}. "
            f"Run the same command again after {state.resets_text()} to continue at "
            f"{run.next_query!r} page {run.next_page}."
        )
    return f"Done: every query has its pages. {got}."


# ---- status -----------------------------------------------------------------------------------


@dataclass
class ScrapeStatus:
    out: Path
    queries: list[dict[str, Any]]
    quota: list[QuotaState]
    totals: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "queries": self.queries,
            "quota": [q.to_dict() for q in self.quota],
            "totals": self.totals,
        }


def status(config: ScrapeConfig) -> ScrapeStatus:
    """Per-query progress and the quota state, read from the manifest (works during a run)."""
    path = Path(config.out) / MANIFEST_NAME
    if not path.is_file():  # nothing scraped yet: an empty status, and no files created for it
        path = Path(":memory:")
    probe = _probe(config)
    provider_filters = probe.filters
    with Manifest(path) as manifest:
        table = manifest.query_table()
        seen = {(row["provider"], row["query"], row["filters"]) for row in table}
        listed = config.queries
        if (
            config.default_query_list
            and table
            and not any((config.provider, query, provider_filters) in seen for query in listed)
        ):
            listed = []  # this folder was scraped with the user's own queries: no default-list noise
        for query in listed:
            if (config.provider, query, provider_filters) not in seen:
                table.append(
                    {
                        "provider": config.provider,
                        "query": query,
                        "filters": provider_filters,
                        "pages": 0,
                        "last_page_seen": False,
                        "results": 0,
                        "by_status": {},
                    }
                )
        wanted = probe.pages_for(config.per_query)
        for row in table:
            row["complete"] = row["last_page_seen"] or (
                row["provider"] == config.provider and row["pages"] >= wanted
            )
        providers = sorted({row["provider"] for row in table} | {config.provider})
        quotas = [quota_state(manifest, name, config.daily_quota) for name in providers]
        totals = manifest.status_counts()
    return ScrapeStatus(Path(config.out), table, quotas, totals)


def _probe(config: ScrapeConfig) -> ImageProvider:
    """The configured provider for its filters and paging only: no keys needed, no calls made."""
    return make_provider(replace(config, google_key="-", google_cx="-"))
