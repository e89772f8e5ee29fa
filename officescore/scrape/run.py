"""Orchestration: search pages within the quota, download what was found, dedup, record it all.

A scrape is two phases over one manifest, the same for every provider:
1. search: for each query, fetch the next unfetched page while the day's (and the hour's) quota
   allows. The call is counted in the ledger (committed) before it is made, so a crash can never
   under-count; the page's results, its "fetched" mark and the cursor that fetches the next page
   (MediaWiki's `continue`) are committed together, so a page that came back is never paid for
   again.
2. download: every result still `pending` (from this run or an earlier one) is fetched,
   verified, deduplicated and stored as images/<sha256>.<ext>. Providers that ask to be told of
   downloads (Unsplash) then get one call per downloaded photo, counted in the same ledger and
   marked sent before it is made (at most once, never twice).

Stopping because the quota is used up (stop_reason "quota", or "hourly_quota" for an hourly
limit) or because the provider asked for a longer pause than we wait for (stop_reason
"rate_limited": the time is kept in the manifest and no call is made before it) is a normal end,
not an error. A search that keeps failing still lets the run download what earlier pages found
before the error is raised.

`--provider auto` (the default) picks Google when a key and engine id are configured, the date
is before 2027-01-01 and Google has not answered that it is closed; otherwise Openverse. A
closure answer in the middle of an auto run switches it to Openverse (one notice line).
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
    GOOGLE_CLOSED,
    GOOGLE_CLOSING_NOTICE,
    PROVIDER_CLASSES,
    FlickrProvider,
    GoogleProvider,
    HourExhausted,
    ImageProvider,
    OpenverseProvider,
    ProviderClosedError,
    ProviderError,
    RateLimited,
    Scrubber,
    TransientError,
    UnsplashProvider,
    WikimediaProvider,
    google_closed,
)
from officescore.scrape.quota import QuotaState

# Each provider's quota day, by name: --status reports providers it has no keys to build.
QUOTA_ZONES: dict[str, tzinfo] = {name: cls.quota_tz for name, cls in PROVIDER_CLASSES.items()}
AUTO = "auto"
PROVIDERS = (AUTO, *PROVIDER_CLASSES)
FALLBACK = "openverse"  # what auto searches without Google: no key needed, licence per image
CLOSED_KEY = "closed:{}"  # meta key: the provider answered that it is closed for good
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
    provider: str = AUTO
    per_query: int = 100
    daily_quota: int | None = None  # None: the provider's own default (Google's free tier: 100)
    hourly_quota: int | None = None  # None: the provider's own (Unsplash demo key: 50)
    out: Path = DEFAULT_RAW_DIR
    rights: str = DEFAULT_RIGHTS
    safe: str = "active"
    img_size: str | None = None
    file_type: str | None = None
    # For the provider the run starts with (auto's pick); a mid-run fallback uses `endpoints`.
    api_endpoint: str | None = None
    near_dup_threshold: int = DEFAULT_NEAR_DUP_THRESHOLD
    api_retries: int = 2
    api_backoff: float = 2.0
    download: DownloadConfig = field(default_factory=DownloadConfig)
    google_key: str | None = field(default=None, repr=False)
    google_cx: str | None = field(default=None, repr=False)
    openverse_client_id: str | None = field(default=None, repr=False)
    openverse_client_secret: str | None = field(default=None, repr=False)
    unsplash_key: str | None = field(default=None, repr=False)
    flickr_key: str | None = field(default=None, repr=False)
    contact: str | None = None  # e-mail or URL for Wikimedia's User-Agent policy
    # Per provider, from OFFICESCORE_<NAME>_ENDPOINT: where auto's choice is sent.
    endpoints: dict[str, str] = field(default_factory=dict)
    wait_hours: bool = False  # sleep through a used-up hourly limit instead of stopping
    # True when `queries` is the package's default list rather than the user's -q / --queries.
    default_query_list: bool = False

    def validate(self) -> None:
        if self.provider not in PROVIDERS:
            raise ConfigError(f"--provider must be one of {', '.join(PROVIDERS)}, not {self.provider!r}")
        if not self.queries:
            raise ConfigError("no queries: give -q QUERY, --queries FILE, or neither for the default list")
        if self.per_query < 1:
            raise ConfigError("--per-query must be at least 1")
        if (self.daily_quota is not None and self.daily_quota < 0) or (
            self.hourly_quota is not None and self.hourly_quota < 0
        ):
            raise ConfigError("--daily-quota and --hourly-quota must be 0 or more")
        for endpoint in (self.api_endpoint, *self.endpoints.values()):
            if endpoint is None:
                continue
            parts = urlsplit(endpoint)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ConfigError(
                    f"--api-endpoint must be an http(s) URL like https://api.example.org/, not {endpoint!r}"
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

    def limits(self, name: str) -> tuple[int, int | None]:
        """(calls per quota day, calls per hour or None) for the provider called `name`."""
        cls = PROVIDER_CLASSES.get(name)
        hourly = self.hourly_quota if self.hourly_quota is not None else (cls.hourly_limit if cls else None)
        daily = self.daily_quota if self.daily_quota is not None else (cls.daily_limit if cls else 100)
        # A day that is only 24 of the provider's hours (Unsplash, Flickr) follows a new hourly
        # limit: a production Unsplash key (--hourly-quota 5000) is not held to 1200 a day.
        derived = cls is not None and cls.hourly_limit and cls.daily_limit == 24 * cls.hourly_limit
        if self.daily_quota is None and derived and hourly is not None:
            daily = 24 * hourly
        return daily, hourly


def secrets_from_environment(config: ScrapeConfig) -> ScrapeConfig:
    """Fill in keys (and endpoints) from the environment / officescore.toml [scrape] where not given."""
    table = load_config()
    config.google_key = config.google_key or secret("GCS_DEVELOPER_KEY", "scrape", "gcs_developer_key", table)
    config.google_cx = config.google_cx or secret("GCS_CX", "scrape", "gcs_cx", table)
    config.openverse_client_id = config.openverse_client_id or secret(
        "OPENVERSE_CLIENT_ID", "scrape", "openverse_client_id", table
    )
    config.openverse_client_secret = config.openverse_client_secret or secret(
        "OPENVERSE_CLIENT_SECRET", "scrape", "openverse_client_secret", table
    )
    config.unsplash_key = config.unsplash_key or secret(
        "UNSPLASH_ACCESS_KEY", "scrape", "unsplash_access_key", table
    )
    config.flickr_key = config.flickr_key or secret("FLICKR_API_KEY", "scrape", "flickr_api_key", table)
    config.contact = config.contact or os.environ.get("OFFICESCORE_CONTACT") or None
    for name in PROVIDER_CLASSES:
        value = os.environ.get(f"OFFICESCORE_{name.upper()}_ENDPOINT")
        if value and name not in config.endpoints:
            config.endpoints[name] = value
    if config.api_endpoint is None and config.provider != AUTO:
        config.api_endpoint = config.endpoints.get(config.provider)
    return config


def make_provider(config: ScrapeConfig, name: str | None = None, fallback: bool = False) -> ImageProvider:
    """The provider called `name` (default: the configured one, which must not be auto); a
    `fallback` (auto's switch away from a closed Google) does not get --api-endpoint."""
    name = name or config.provider
    endpoint = None if fallback else config.api_endpoint
    endpoint = endpoint or config.endpoints.get(name)
    if name == "google":
        return GoogleProvider(
            developer_key=config.google_key or "",
            cx=config.google_cx or "",
            endpoint=endpoint,
            rights_filter=config.rights,
            safe=config.safe,
            img_size=config.img_size,
            file_type=config.file_type,
        )
    if name == "wikimedia":
        return WikimediaProvider(endpoint=endpoint, rights_filter=config.rights, contact=config.contact)
    if name == "unsplash":
        return UnsplashProvider(
            access_key=config.unsplash_key or "", endpoint=endpoint, rights_filter=config.rights
        )
    if name == "flickr":
        return FlickrProvider(api_key=config.flickr_key or "", endpoint=endpoint, rights_filter=config.rights)
    if name != "openverse":
        raise ConfigError(f"no provider called {name!r}; use one of {', '.join(PROVIDERS)}")
    return OpenverseProvider(
        endpoint=endpoint,
        client_id=config.openverse_client_id,
        client_secret=config.openverse_client_secret,
        rights_filter=config.rights,
    )


def choose_provider(config: ScrapeConfig, manifest: Manifest | None = None) -> tuple[str, list[str]]:
    """The provider a run uses and the notices that explain the choice (no network call).

    auto: Google when a key and engine id are set, the date is before 2027-01-01 and this folder's
    manifest has no closure answer from Google; otherwise Openverse. --provider google after the
    cut-off is a ProviderClosedError: no call could succeed.
    """
    when = clock.now()
    if config.provider == "google":
        if google_closed(when):
            raise ProviderClosedError(
                f"{GOOGLE_CLOSED}; use --provider auto, openverse, wikimedia, unsplash or flickr"
            )
        return "google", [GOOGLE_CLOSING_NOTICE]
    if config.provider != AUTO:
        return config.provider, []
    if google_closed(when):
        return FALLBACK, [f"{GOOGLE_CLOSED}: searching {FALLBACK} instead"]
    if not (config.google_key and config.google_cx):
        return FALLBACK, [f"no Google key and engine id (GCS_DEVELOPER_KEY, GCS_CX): searching {FALLBACK}"]
    closed = manifest.meta(CLOSED_KEY.format("google")) if manifest is not None else None
    if closed:
        return FALLBACK, [f"Google answered on {closed[:10]} that its API is closed: searching {FALLBACK}"]
    return "google", [GOOGLE_CLOSING_NOTICE]


@dataclass
class ScrapeResult:
    provider: str
    out: Path
    # "done" (every query has its pages), "quota" (the day's used up), "hourly_quota" or "rate_limited"
    stop_reason: str
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
    skipped: int = 0  # photos the provider returned under a licence --rights does not allow
    tracked: int = 0  # download events sent this run (Unsplash)

    def to_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "skipped_by_licence": self.skipped,
            "download_events": self.tracked,
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


def quota_state(manifest: Manifest, name: str, limit: int, hourly: int | None = None) -> QuotaState:
    """Today's (and this hour's) ledger entry for the provider called `name`."""
    tz = QUOTA_ZONES.get(name, timezone.utc)
    when = clock.now()
    day = clock.quota_day(tz, when).isoformat()
    calls, exhausted = manifest.quota(name, day)
    retry_at = _parse_time(manifest.retry_after(name))
    if retry_at is not None and retry_at <= when:
        retry_at = None
    resets = clock.next_reset(tz, when)
    state = QuotaState(name, day, calls, limit, exhausted or calls >= limit, resets, retry_at)
    if hourly is None:
        return state
    hour = clock.quota_hour(tz, when)
    hour_calls, hour_exhausted = manifest.hour_quota(name, hour)
    return replace(
        state,
        hour=hour,
        hour_calls=hour_calls,
        hour_limit=hourly,
        hour_exhausted=hour_exhausted or hour_calls >= hourly,
        hour_resets_at=clock.next_hour(tz, when),
    )


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
        self.skipped = 0
        self.tracked = 0
        self.refused: list[str] = []  # download events the provider would not take
        self.stop_reason = "done"
        self.next_query: str | None = None
        self.next_page: int | None = None

    def scrub(self, text: str | None) -> str | None:
        return Scrubber(self.provider.secrets())(text)

    def state(self) -> QuotaState:
        return quota_state(self.manifest, self.provider.name, *self.config.limits(self.provider.name))

    # ---- the ledger ---------------------------------------------------------------------------
    def spend(self) -> QuotaState:
        """Check the day, the hour and any pause, then count one call (committed before it is
        made). Raises _Stop when no call may be made now."""
        state = self.state()
        if state.exhausted:
            raise _Stop("quota")
        if state.hour_exhausted:
            raise _Stop("hourly_quota")
        if state.retry_at is not None:
            raise _Stop("rate_limited")
        self.manifest.spend_call(self.provider.name, state.day, clock.now().isoformat(), state.hour)
        self.calls += 1
        return state

    def hour_used_up(self, state: QuotaState) -> None:
        """The provider says the hour's calls are gone: no more calls until the next hour."""
        self.manifest.mark_hour_exhausted(
            self.provider.name, state.hour or clock.quota_hour(timezone.utc), clock.now().isoformat()
        )

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
                        if stop.reason == "hourly_quota" and self.wait_for_next_hour(stage):
                            continue
                        self.stop_reason, self.next_query, self.next_page = stop.reason, query, page
                        return
                    stage.advance(1, status=f"{query!r} p{page}")
                    if last:
                        stage.advance(wanted - page)
                        break
                    page += 1

    def wait_for_next_hour(self, stage: Any) -> bool:
        """--wait-hours: sleep until the provider's next clock hour; False when not asked to, or
        when the clock did not move (OFFICESCORE_NOW pinned), so a run can never spin."""
        state = self.state()
        if not self.config.wait_hours or state.hour_resets_at is None:
            return False
        seconds = max(0.0, (state.hour_resets_at - clock.now()).total_seconds()) + 1.0
        stage.log(f"{state.provider} hourly limit used up: waiting {seconds:.0f}s for {state.hour_text()}")
        time.sleep(seconds)
        return self.state().hour != state.hour

    def fetch_page(self, query: str, page: int, stage: Any = None) -> bool:
        """Fetch and record one page; returns its `last` flag. Raises _Stop to end the search."""
        provider, manifest = self.provider, self.manifest
        cursor = None
        if provider.uses_cursor and page > 1:
            cursor = manifest.cursor(provider.name, query, provider.filters, page)
        attempt = limited = 0
        while True:
            state = self.spend()
            try:
                result = provider.search(query, page, cursor)
            except QuotaExhaustedError:
                manifest.mark_exhausted(provider.name, state.day, clock.now().isoformat())
                raise _Stop("quota") from None
            except HourExhausted:
                self.hour_used_up(state)
                raise _Stop("hourly_quota") from None
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
                cursor=result.cursor,
            )
            self.pages += 1
            self.new_results += new
            self.skipped += result.skipped
            if getattr(provider, "remaining", None) == 0:  # Unsplash: X-Ratelimit-Remaining: 0
                self.hour_used_up(state)
            return result.last

    # ---- download events (Unsplash) ---------------------------------------------------------
    def track_downloads(self) -> None:
        """One download event per downloaded photo, within the ledger. Marked sent before the
        call, like a call is counted before it is made: a crash may lose one event, never repeat it."""
        for result_id, url in self.manifest.pending_tracking(self.provider.name):
            try:
                state = self.spend()
            except _Stop:
                return  # the next run sends the rest
            self.manifest.set_tracking(result_id, "sent", clock.now().isoformat())
            try:
                self.provider.track_download(url)
            except HourExhausted:
                self.manifest.set_tracking(result_id, "pending", clock.now().isoformat())
                self.hour_used_up(state)
                return
            except (RateLimited, TransientError):
                self.manifest.set_tracking(result_id, "pending", clock.now().isoformat())
                return
            except ProviderError as exc:
                self.manifest.set_tracking(result_id, "refused", clock.now().isoformat())
                self.refused.append(self.scrub(str(exc)) or "")
                continue
            self.tracked += 1
            if getattr(self.provider, "remaining", None) == 0:
                self.hour_used_up(state)

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


def _search(run: _Run, config: ScrapeConfig, notices: list[str]) -> _Run:
    """The search phase; under auto, a closure answer from Google switches the run to Openverse."""
    try:
        run.search_all(notices)
    except ProviderClosedError as exc:
        run.manifest.set_meta(CLOSED_KEY.format(run.provider.name), clock.now().isoformat())
        if config.provider != AUTO:
            raise ProviderClosedError(
                f"{exc}; use --provider auto, openverse, wikimedia, unsplash or flickr"
            ) from None
        notice = f"{exc}; searching {FALLBACK} instead"
        notices.append(notice)
        fallback = _Run(config, run.manifest, make_provider(config, FALLBACK, fallback=True), run.reporter)
        # What Google found before it closed stays in the manifest and in this run's counts.
        fallback.calls, fallback.pages, fallback.new_results = run.calls, run.pages, run.new_results
        fallback.search_all([notice])
        return fallback
    return run


def scrape(config: ScrapeConfig, reporter: Reporter = SILENT) -> ScrapeResult:
    """Run (or continue) a scrape into `config.out`; see the module docstring."""
    config.validate()
    out = Path(config.out)
    images = out / IMAGES_DIR
    if config.provider != AUTO:  # closure, key and rights problems show before any folder is made
        choose_provider(config)
        make_provider(config)
    with _exclusive(out), Manifest.open(out) as manifest:
        name, notices = choose_provider(config, manifest)
        provider = make_provider(config, name)
        removed = clean_partial_files(images)
        images.mkdir(parents=True, exist_ok=True)
        if removed:
            notices.append(f"removed {removed} partial download(s) left by an interrupted run")
        run = _Run(config, manifest, provider, reporter)
        failure: ProviderError | None = None
        try:
            run.track_downloads()  # events an earlier run could not send yet
            run = _search(run, config, notices)
        except ProviderError as exc:  # the search keeps failing: still download what was found
            failure = exc
        outcomes = run.download_pending(images)
        if failure is None:
            run.track_downloads()
        provider = run.provider
        state = run.state()
        kept_total = manifest.status_counts().get(KEPT, 0)
    if failure is not None:
        if run.pages or outcomes:
            raise type(failure)(f"{failure}. Before it failed: {_collected(run, outcomes, kept_total)}")
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
        skipped=run.skipped,
        tracked=run.tracked,
    )


def _collected(run: _Run, outcomes: Counter[str], kept_total: int) -> str:
    skipped = f", {run.skipped} skipped for their licence" if run.skipped else ""
    return (
        f"{run.pages} page(s) searched ({run.calls} API call(s)), {run.new_results} new result(s){skipped}, "
        f"{outcomes.get(KEPT, 0)} image(s) kept this run, {kept_total} in total"
    )


def _summary(run: _Run, outcomes: Counter[str], kept_total: int, state: QuotaState) -> str:
    got = _collected(run, outcomes, kept_total)
    where = f"{run.next_query!r} page {run.next_page}"
    if run.stop_reason == "rate_limited":
        until = f"until {state.retry_text()}" if state.retry_at else "for a moment"
        return (
            f"Paused: {state.provider} asked for a pause (rate limit) {until}; the day's quota is not "
            f"used up ({state.calls}/{state.limit} calls). {got}. Run the same command again after "
            f"that to continue at {where}."
        )
    if run.stop_reason == "hourly_quota":
        return (
            f"Paused: the {state.provider} hourly limit is used up ({state.hour_calls}/{state.hour_limit} "
            f"calls in hour {state.hour}). {got}. Run the same command again after {state.hour_text()} "
            f"to continue at {where}."
        )
    if run.stop_reason == "quota":
        return (
            f"Stopped: the {state.provider} quota for {state.day} is used up ({state.calls}/{state.limit} "
            f"calls{', provider says exhausted' if state.calls < state.limit else ''}). {got}. "
            f"Run the same command again after {state.resets_text()} to continue at {where}."
        )
    return f"Done: every query has its pages. {got}."


# ---- status -----------------------------------------------------------------------------------


@dataclass
class ScrapeStatus:
    out: Path
    queries: list[dict[str, Any]]
    quota: list[QuotaState]
    totals: dict[str, int]
    provider: str = FALLBACK  # the provider the next run would search
    notices: list[str] = field(default_factory=list)
    download_events: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "provider": self.provider,
            "notices": self.notices,
            "queries": self.queries,
            "quota": [q.to_dict() for q in self.quota],
            "totals": self.totals,
            "download_events": self.download_events,
        }


def status(config: ScrapeConfig) -> ScrapeStatus:
    """Per-query progress and the quota state of every provider in the folder, read from the
    manifest (works during a run; makes no call)."""
    path = Path(config.out) / MANIFEST_NAME
    if not path.is_file():  # nothing scraped yet: an empty status, and no files created for it
        path = Path(":memory:")
    with Manifest(path) as manifest:
        try:
            name, notices = choose_provider(config, manifest)
        except ProviderClosedError as exc:  # --provider google after the cut-off: still report
            name, notices = config.provider, [str(exc)]
        probe = _probe(config, name)
        provider_filters = probe.filters
        table = manifest.query_table()
        seen = {(row["provider"], row["query"], row["filters"]) for row in table}
        listed = config.queries
        if (
            config.default_query_list
            and table
            and not any((name, query, provider_filters) in seen for query in listed)
        ):
            listed = []  # this folder was scraped with the user's own queries: no default-list noise
        for query in listed:
            if (name, query, provider_filters) not in seen:
                table.append(
                    {
                        "provider": name,
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
            row["complete"] = row["last_page_seen"] or (row["provider"] == name and row["pages"] >= wanted)
        providers = sorted({row["provider"] for row in table} | manifest.ledger_providers() | {name})
        quotas = [quota_state(manifest, p, *config.limits(p)) for p in providers]
        totals = manifest.status_counts()
        events = manifest.tracking_counts()
    return ScrapeStatus(Path(config.out), table, quotas, totals, name, notices, events)


def _probe(config: ScrapeConfig, name: str) -> ImageProvider:
    """The named provider for its filters and paging only: no keys needed, no calls made."""
    return make_provider(
        replace(config, google_key="-", google_cx="-", unsplash_key="-", flickr_key="-"), name
    )
