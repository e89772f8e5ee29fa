"""`scrape --status`: per-query progress and every provider's day and hour, read from the manifest.

Works while a scrape writes (WAL) and makes no call; on a folder with no manifest it reports the
configured queries as not started and creates nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from officescore.scrape import quota as clock
from officescore.scrape.manifest import MANIFEST_NAME, Manifest
from officescore.scrape.providers import ImageProvider, ProviderClosedError, google_closed
from officescore.scrape.quota import QuotaState
from officescore.scrape.settings import (
    CLOSED_KEY,
    FALLBACK,
    QUOTA_ZONES,
    ScrapeConfig,
    choose_provider,
    make_provider,
)


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
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None  # a hand-edited manifest: ignore the pause rather than fail
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)  # hand-written without a zone


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
    closed: bool = False  # `provider` is gone for good (--provider google after the cut-off)

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "provider": self.provider,
            "closed": self.closed,
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
    with Manifest(path, read_only=True) as manifest:
        closed = False
        try:
            name, notices = choose_provider(config, manifest, doing="the next run searches")
        except ProviderClosedError as exc:  # --provider google after the cut-off: still report
            name, notices, closed = config.provider, [str(exc)], True
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
                        "found": 0,
                        "results": 0,
                        "by_status": {},
                    }
                )
        wanted = probe.pages_for(config.per_query)
        for row in table:
            row["complete"] = row["last_page_seen"] or (row["provider"] == name and row["pages"] >= wanted)
        providers = sorted({row["provider"] for row in table} | manifest.ledger_providers() | {name})
        quotas = [quota_state(manifest, p, *config.limits(p, name)) for p in providers]
        # A closed API has no calls left: "google: 0/100 calls, 100 left" after the cut-off misled.
        # The day it answered that it is closed, the calls that cost are still shown.
        quotas = [q for q in quotas if q.calls or not _closed(q.provider, manifest)]
        totals = manifest.status_counts()
        events = manifest.tracking_counts()
    return ScrapeStatus(Path(config.out), table, quotas, totals, name, notices, events, closed)


def _closed(name: str, manifest: Manifest) -> bool:
    """Whether the provider called `name` is gone for good: past Google's cut-off, or it said so."""
    return (name == "google" and google_closed(clock.now())) or bool(manifest.meta(CLOSED_KEY.format(name)))


def _probe(config: ScrapeConfig, name: str) -> ImageProvider:
    """The named provider for its filters and paging only: no keys needed, no calls made."""
    return make_provider(
        replace(config, google_key="-", google_cx="-", unsplash_key="-", flickr_key="-"), name
    )
