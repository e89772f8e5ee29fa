"""The quota clock: which quota day and hour it is for a provider and when the next one starts.

Google's Custom Search quota resets at midnight America/Los_Angeles; the others count in UTC.
Hourly limits (Unsplash's 50 an hour on a demo key, Flickr's 3600) count per clock hour of the
provider's zone.
`OFFICESCORE_NOW` (ISO 8601; a naive value is read as UTC) overrides the clock so tests can move
past midnight without waiting.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from officescore.errors import ConfigError

NOW_ENV = "OFFICESCORE_NOW"
PACIFIC = ZoneInfo("America/Los_Angeles")


def now() -> datetime:
    """The current time (aware), or OFFICESCORE_NOW when set."""
    value = os.environ.get(NOW_ENV)
    if not value:
        return datetime.now(timezone.utc)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ConfigError(f"{NOW_ENV}={value!r} is not an ISO time like 2026-03-01T08:30:00+00:00") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def quota_day(tz: ZoneInfo | timezone, when: datetime | None = None) -> date:
    """The provider's calendar day at `when`: the key of the quota ledger."""
    return (when or now()).astimezone(tz).date()


def next_reset(tz: ZoneInfo | timezone, when: datetime | None = None) -> datetime:
    """The next local midnight in `tz` after `when` (aware, in `tz`; DST-safe)."""
    local = (when or now()).astimezone(tz)
    tomorrow = local.date() + timedelta(days=1)
    # Build the wall-clock midnight and let zoneinfo pick the right offset for that date.
    return datetime(tomorrow.year, tomorrow.month, tomorrow.day, tzinfo=tz)


def quota_hour(tz: ZoneInfo | timezone, when: datetime | None = None) -> str:
    """The provider's clock hour at `when`, '2026-03-01T10' (the key of the hourly ledger)."""
    local = (when or now()).astimezone(tz)
    return f"{local:%Y-%m-%dT%H}"


def next_hour(tz: ZoneInfo | timezone, when: datetime | None = None) -> datetime:
    """The start of the next clock hour after `when` (aware, in `tz`)."""
    local = (when or now()).astimezone(tz)
    return (local.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)).astimezone(tz)


@dataclass(frozen=True)
class QuotaState:
    """A provider's ledger for one quota day."""

    provider: str
    day: str
    calls: int
    limit: int
    exhausted: bool
    resets_at: datetime
    retry_at: datetime | None = None  # a rate limit asked us to wait until then (not the quota)
    hour: str | None = None  # the clock hour, when the provider has an hourly limit
    hour_calls: int = 0
    hour_limit: int | None = None
    hour_exhausted: bool = False
    hour_resets_at: datetime | None = None

    @property
    def remaining(self) -> int:
        return 0 if self.exhausted else max(0, self.limit - self.calls)

    @property
    def hour_remaining(self) -> int | None:
        if self.hour_limit is None:
            return None
        return 0 if self.hour_exhausted else max(0, self.hour_limit - self.hour_calls)

    def hour_text(self) -> str:
        """'2026-03-01 11:00 UTC': when the next hour's calls may be made."""
        assert self.hour_resets_at is not None
        return f"{self.hour_resets_at.astimezone(timezone.utc):%Y-%m-%d %H:%M} UTC"

    def resets_text(self) -> str:
        """'2026-03-02 00:00 PST (08:00 UTC)': when the next quota day begins."""
        utc = self.resets_at.astimezone(timezone.utc)
        if self.resets_at.utcoffset() == utc.utcoffset():  # a UTC quota day: say it once
            return f"{utc:%Y-%m-%d %H:%M} UTC"
        return f"{self.resets_at:%Y-%m-%d %H:%M %Z} ({utc:%Y-%m-%d %H:%M} UTC)"

    def to_dict(self) -> dict[str, object]:
        return {
            "provider": self.provider,
            "day": self.day,
            "calls": self.calls,
            "limit": self.limit,
            "remaining": self.remaining,
            "exhausted": self.exhausted,
            "resets_at": self.resets_at.isoformat(),
            "resets_at_utc": self.resets_at.astimezone(timezone.utc).isoformat(),
            "retry_after": self.retry_at.astimezone(timezone.utc).isoformat() if self.retry_at else None,
            "hour": self.hour,
            "hour_calls": self.hour_calls,
            "hour_limit": self.hour_limit,
            "hour_remaining": self.hour_remaining,
            "hour_exhausted": self.hour_exhausted,
            "hour_resets_at_utc": (
                self.hour_resets_at.astimezone(timezone.utc).isoformat() if self.hour_resets_at else None
            ),
        }

    def retry_text(self) -> str:
        """'2026-03-01 10:03:20 UTC': when a rate-limited provider may be called again."""
        assert self.retry_at is not None
        return f"{self.retry_at.astimezone(timezone.utc):%Y-%m-%d %H:%M:%S} UTC"
