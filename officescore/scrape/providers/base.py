"""What every search provider shares: results, pages, errors, the licence vocabulary, scrubbing.

One `--rights` vocabulary (Google's rights filter names) is mapped onto each provider's own
licences through `RIGHTS_TO_LICENSES`; providers that report a licence per photo drop every photo
whose licence is not allowed (`keep_allowed`) before the page reaches the manifest.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone, tzinfo
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar, Protocol

from officescore.errors import ConfigError, UserError

DEFAULT_RIGHTS = "cc_publicdomain|cc_attribute|cc_sharealike|cc_noncommercial|cc_nonderived"
USER_AGENT = "officescore-scrape/0.1 (+https://github.com/officescore/officescore)"
MIME_SUBTYPES = {"jpg": "jpeg", "tif": "tiff", "svg": "svg+xml"}

# --rights names -> licence codes (Openverse's codes; every provider maps onto these).
# "unsplash": the Unsplash License allows copying, changing and commercial use like CC BY (and
# asks for no more), so a filter that accepts CC BY accepts it; Unsplash+ photos never match.
# "pd": public domain as Commons states it (by age, by origin), which carries no CC mark.
RIGHTS_TO_LICENSES: dict[str, tuple[str, ...]] = {
    "cc_publicdomain": ("cc0", "pdm", "pd"),
    "cc_attribute": ("by", "unsplash"),
    "cc_sharealike": ("by-sa",),
    "cc_noncommercial": ("by-nc", "by-nc-sa"),
    "cc_nonderived": ("by-nd", "by-nc-nd"),
}
# What Openverse accepts in its `license` parameter (kept as the old public name): its own codes.
RIGHTS_TO_OPENVERSE = {
    name: tuple(code for code in codes if code not in ("unsplash", "pd"))
    for name, codes in RIGHTS_TO_LICENSES.items()
}


class ProviderError(UserError):
    """A provider kept failing (server errors, timeouts) or answered something unusable."""


class RequestNotSent(ProviderError):
    """Our own request could not be sent (a header or URL requests refuses, a page with no cursor):
    the provider never saw it, so it is no call of the quota's."""


class ProviderClosedError(ProviderError):
    """The provider's API is gone for good (Google's Custom Search JSON API from 2027-01-01)."""


class TransientError(Exception):
    """Worth retrying: a timeout, a dropped connection or a 5xx."""


class RateLimited(Exception):
    """Slow down: retry after `seconds` (a per-minute limit, not the daily quota)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"rate limited; retry after {seconds:.0f}s")
        self.seconds = seconds


class HourExhausted(Exception):
    """The provider says this hour's requests are used up (Unsplash's X-Ratelimit-Remaining: 0)."""


@dataclass(frozen=True)
class SearchResult:
    """One image a provider found, with whatever provenance and licence data it gives."""

    url: str
    landing_page: str | None = None
    title: str | None = None
    width: int | None = None
    height: int | None = None
    mime: str | None = None
    license: str | None = None
    license_version: str | None = None
    license_url: str | None = None
    creator: str | None = None
    creator_url: str | None = None
    attribution: str | None = None
    source: str | None = None
    # A URL to call once the photo is downloaded (Unsplash's download tracking); not a column.
    track_url: str | None = None


@dataclass(frozen=True)
class SearchPage:
    results: list[SearchResult]
    last: bool  # the provider has nothing after this page
    cost: int = 1
    # The token that fetches the next page (MediaWiki's `continue`), stored with this page.
    cursor: str | None = None
    skipped: int = 0  # photos dropped because their licence is not allowed by --rights


class ImageProvider(Protocol):
    """What the scraper needs from a search provider."""

    name: str
    quota_tz: tzinfo  # the quota day turns at midnight in this zone
    page_size: int
    daily_limit: ClassVar[int]  # default calls per quota day
    hourly_limit: ClassVar[int | None]  # default calls per clock hour (None: no hourly limit)
    uses_cursor: ClassVar[bool]  # page n + 1 needs the cursor page n returned

    @property
    def filters(self) -> str:
        """Canonical text of the search filters: paging is tracked per (query, filters)."""
        ...

    @property
    def rights(self) -> str:
        """The licence filter sent with every search, recorded with each result."""
        ...

    def pages_for(self, per_query: int) -> int:
        """How many pages give at least `per_query` results (capped at what the API allows)."""
        ...

    def search(self, query: str, page: int, cursor: str | None = None) -> SearchPage:
        """Fetch one page (1-based). Raises QuotaExhaustedError, RateLimited, HourExhausted,
        TransientError, ConfigError (bad key), ProviderClosedError or ProviderError."""
        ...

    def track_download(self, url: str) -> None:
        """Tell the provider a photo was downloaded (only Unsplash asks for it)."""
        ...

    def secrets(self) -> list[str]:
        """Values that must never be written anywhere."""
        ...


class Scrubber:
    """Removes secrets from any text before it is stored, logged or raised."""

    _PARAM = re.compile(
        r"(?i)([?&](?:key|cx|client_secret|access_token|token|api_key|client_id)=)[^&#\s\"']+"
    )

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def __call__(self, text: str | None) -> str | None:
        text = self.value(text)
        return None if text is None else self._PARAM.sub(r"\1***", text)

    def value(self, text: str | None) -> str | None:
        """Only the exact secrets: for URLs that must keep working."""
        if text is None:
            return None
        for value in self._secrets:
            text = text.replace(value, "***")
        return text


def retry_after_seconds(value: str | None, default: float = 60.0) -> float:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date; `default` if absent/garbled."""
    if not value:
        return default
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return default
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def allowed_licenses(rights: str) -> tuple[str, ...]:
    """Licence codes a --rights value accepts, in a fixed order; unknown names are a ConfigError."""
    codes: list[str] = []
    for part in filter(None, (p.strip() for p in rights.split("|"))):
        if part not in RIGHTS_TO_LICENSES:
            raise ConfigError(
                f"--rights value {part!r} is unknown; use any of {'|'.join(RIGHTS_TO_LICENSES)}"
            )
        codes.extend(c for c in RIGHTS_TO_LICENSES[part] if c not in codes)
    return tuple(codes)


def keep_allowed(results: list[SearchResult], allowed: Iterable[str]) -> tuple[list[SearchResult], int]:
    """The results whose licence code is allowed, and how many were dropped (unknown licence too)."""
    accepted = set(allowed)
    kept = [r for r in results if r.license is not None and r.license in accepted]
    return kept, len(results) - len(kept)


def mime_type(filetype: Any) -> str | None:
    """A file type ("jpg", "png", ...) as a media type."""
    if not filetype:
        return None
    kind = str(filetype).lower()
    return "image/" + MIME_SUBTYPES.get(kind, kind)


def as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


class NoTracking:
    """Mixin: providers whose terms ask for no download call."""

    def track_download(self, url: str) -> None:
        return None


def json_session(user_agent: str = USER_AGENT) -> Any:
    import requests

    session = requests.Session()
    session.headers["User-Agent"] = user_agent
    return session


def get_json(session: Any, label: str, url: str, timeout: float, **kwargs: Any) -> tuple[int, Any, Any]:
    """GET `url`; (status, parsed JSON or None, response). Connection trouble is a TransientError
    whose text names only the exception type: requests puts the full URL (a key) in its messages."""
    import requests

    try:
        response = session.get(url, timeout=(10, timeout), **kwargs)
    except requests.RequestException as exc:
        raise request_failed(label, exc) from None
    try:
        answer = response.json()
    except ValueError:
        answer = None
    return response.status_code, answer, response


BAD_URL = "the URL is not valid"


def local_error(exc: Exception) -> str | None:
    """What to check when requests refused to send our own request (a header or URL it cannot
    carry): no retry, and no later run, can help. None for trouble on the way (the network)."""
    import requests

    if isinstance(exc, requests.exceptions.InvalidHeader):
        return (
            "a header holds a character no header can carry "
            "(a newline or a quote pasted into a key or --contact?)"
        )
    bad_url = (
        requests.exceptions.InvalidURL,
        requests.exceptions.InvalidSchema,
        requests.exceptions.MissingSchema,
        requests.exceptions.URLRequired,
    )
    return BAD_URL if isinstance(exc, bad_url) else None


def request_failed(label: str, exc: Exception) -> Exception:
    """A failed request as the error the run acts on: our own request's fault is final, in one line
    naming the cause (it was "unreachable ... after 3 tries, run again later", three calls spent);
    the rest a TransientError, retried. Only the exception's type is named: requests puts the full
    URL (a key) and the header values in its messages."""
    cause = local_error(exc)
    if cause is not None:
        where = " (check --api-endpoint or OFFICESCORE_<PROVIDER>_ENDPOINT)" if cause == BAD_URL else ""
        said = f"{label}: the request could not be sent ({type(exc).__name__}): {cause}{where}"
        return RequestNotSent(said)
    return TransientError(f"{label} unreachable: {type(exc).__name__}")
