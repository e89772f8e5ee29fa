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
is before 2027-01-01 and Google has not answered that it is closed; otherwise Openverse (see
settings.choose_provider). A closure answer in the middle of an auto run switches it to Openverse
(one notice line). The configuration lives in settings.py, `--status` in status.py.
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any

from officescore.errors import ConfigError, QuotaExhaustedError
from officescore.files import hold_lock
from officescore.progress import SILENT, Reporter
from officescore.scrape import quota as clock
from officescore.scrape.dedup import DedupIndex
from officescore.scrape.download import USER_AGENT, Downloader, Fetched, clean_partial_files
from officescore.scrape.manifest import KEPT, MANIFEST_NAME, Manifest, disk_full
from officescore.scrape.providers import (
    HourExhausted,
    ImageProvider,
    ProviderClosedError,
    ProviderError,
    RateLimited,
    RequestNotSent,
    Scrubber,
    TransientError,
)
from officescore.scrape.quota import QuotaState
from officescore.scrape.settings import (
    AUTO,
    CLOSED_KEY,
    FALLBACK,
    PROVIDERS,
    QUOTA_ZONES,
    ScrapeConfig,
    choose_provider,
    default_queries,
    make_provider,
    read_queries,
    secrets_from_environment,
)
from officescore.scrape.status import ScrapeStatus, quota_state, status

# Kept importable from here: callers and tests used run.py for all of these before the split.
__all__ = [
    "AUTO",
    "PROVIDERS",
    "QUOTA_ZONES",
    "ScrapeConfig",
    "ScrapeResult",
    "ScrapeStatus",
    "choose_provider",
    "default_queries",
    "make_provider",
    "quota_state",
    "read_queries",
    "scrape",
    "secrets_from_environment",
    "status",
]

IMAGES_DIR = "images"
LOCK_NAME = ".scrape.lock"
MAX_RATE_LIMIT_WAIT = 120.0  # seconds; a longer wait ends the search phase instead
MAX_RATE_LIMITED = 5  # rate-limit answers in a row for one page before the run pauses anyway


class _Stop(Exception):
    """Ends the search phase normally: the quota is used up or a rate limit asks for a long pause."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


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
    events_refused: list[str] = field(default_factory=list)  # why each refused one was (never sent again)
    events_waiting: int = 0  # download events not sent yet (the hour used up, the API failing): next run
    retry_later: int = 0  # photos whose host failed for a passing reason: the next run tries again

    def to_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "skipped_by_licence": self.skipped,
            "download_events": self.tracked,
            "download_events_refused": self.events_refused,
            "download_events_waiting": self.events_waiting,
            "out": str(self.out),
            "manifest": str(self.out / MANIFEST_NAME),
            "stop_reason": self.stop_reason,
            "calls": self.calls,
            "pages": self.pages,
            "new_results": self.new_results,
            "downloads": self.downloads,
            "retry_later": self.retry_later,
            "kept_total": self.kept_total,
            "quota": self.quota.to_dict(),
            "next": {"query": self.next_query, "page": self.next_page} if self.next_query else None,
            "message": self.message,
            "notices": self.notices,
        }


@contextmanager
def _full_disk(out: Path) -> Iterator[None]:
    """A full disk is the user's to fix, not a crash: one line. Every commit before it stands (calls
    counted, pages and downloads recorded), so the same command continues once there is room."""
    try:
        yield
    except (sqlite3.OperationalError, OSError) as exc:
        if not disk_full(exc):
            raise
        raise ConfigError(
            f"the disk holding --out {out} is full ({exc.strerror if isinstance(exc, OSError) else exc}); "
            "free some space and run the same command again: what was saved so far is kept"
        ) from None


@contextmanager
def _exclusive(out: Path) -> Iterator[None]:
    """One scrape per output folder at a time: two would pay for the same pages."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder for images/ and manifest.sqlite")
    try:
        out.mkdir(parents=True, exist_ok=True)
        handle = hold_lock(out / LOCK_NAME)
    except BlockingIOError:
        raise ConfigError(f"another scrape is writing to {out}; wait for it or use another --out") from None
    except OSError as exc:
        raise ConfigError(f"cannot write to --out {out}: {exc.strerror or exc}") from None
    try:
        yield
    finally:
        handle.close()


class _Run:
    """State of one scrape run."""

    def __init__(
        self,
        config: ScrapeConfig,
        manifest: Manifest,
        provider: ImageProvider,
        reporter: Reporter,
        started: str | None = None,
    ):
        self.config = config
        self.manifest = manifest
        self.provider = provider
        # The provider the run started with: --daily-quota / --hourly-quota are its, not a fallback's.
        self.started = started or provider.name
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
        name = self.provider.name
        return quota_state(self.manifest, name, *self.config.limits(name, self.started))

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

    def unspend(self, state: QuotaState) -> None:
        """The call `spend` counted was never sent (RequestNotSent): not one of the quota's."""
        self.manifest.unspend_call(self.provider.name, state.day, clock.now().isoformat(), state.hour)
        self.calls -= 1

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
                if isinstance(exc, RequestNotSent):
                    self.unspend(state)
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
                if isinstance(exc, RequestNotSent):
                    self.unspend(state)
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
        download = self.config.download
        if self.config.contact and download.user_agent == USER_AGENT:
            download = replace(download, user_agent=USER_AGENT.replace(")", f"; {self.config.contact})"))
        downloader = Downloader(download, images, scrub=lambda t: self.scrub(t) or "")
        earlier = {row_id: attempts for row_id, _, attempts in pending}  # read once, not per photo
        with self.reporter.stage("download", total=len(pending)) as stage:
            for row_id, fetched in downloader.map((row_id, url) for row_id, url, _ in pending):
                status = self.store(row_id, fetched, index, images, earlier[row_id])
                outcomes[status] += 1
                stage.advance(1, status=f"{outcomes[KEPT]} kept")
        return outcomes

    def store(self, row_id: int, fetched: Fetched, index: DedupIndex, images: Path, earlier: int) -> str:
        """Decide duplicate / near-duplicate / keep, move the file into place, record the row.
        `earlier`: the download attempts earlier runs made for it (the count goes on)."""
        now = clock.now().isoformat()
        attempts = earlier + fetched.attempts
        common: dict[str, Any] = {"attempts": attempts, "fetched_at": now, "error": fetched.error}
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
        fallback_provider = make_provider(config, FALLBACK, fallback=True)
        fallback = _Run(config, run.manifest, fallback_provider, run.reporter, started=run.started)
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
    # Closure, key and rights problems show before any folder is made. Auto is checked with the
    # provider it picks without the folder; a closure answer kept there only turns it to Openverse.
    make_provider(config, choose_provider(config)[0])
    with _full_disk(out), _exclusive(out), Manifest.open(out) as manifest:
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
        retry_later = manifest.retry_later()
        events_waiting = len(manifest.pending_tracking(provider.name))
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
        events_refused=run.refused,
        events_waiting=events_waiting,
        retry_later=retry_later,
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
