"""Image search providers: one page of one query -> results with licence data and a quota cost.

`GoogleProvider` queries the Custom Search JSON API through google-images-search's backend
(`GoogleCustomSearch`): its `_search_params` builds the request parameters and its
`_query_google_api` runs them through googleapiclient's `customsearch` v1 service. We build that
service ourselves from the discovery document shipped inside googleapiclient (no network) with
`client_options={"api_endpoint": ...}`, so `--api-endpoint` can point it at another server, and
with an httplib2 client that has a timeout. The package's own downloader is not used (it has no
timeouts and rewrites files); its `search()` generator is not used either because it keeps only
the link and landing page and HEAD-probes each result.

`OpenverseProvider` calls Openverse's REST API directly (anonymous or with client credentials).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone, tzinfo
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar, Protocol

from officescore.errors import ConfigError, QuotaExhaustedError, UserError
from officescore.scrape.quota import PACIFIC

GOOGLE_DEFAULT_ENDPOINT = "https://customsearch.googleapis.com/"
OPENVERSE_DEFAULT_ENDPOINT = "https://api.openverse.org/"
DEFAULT_RIGHTS = "cc_publicdomain|cc_attribute|cc_sharealike|cc_noncommercial|cc_nonderived"
GOOGLE_CLOSING_NOTICE = (
    "notice: Google closes the Custom Search JSON API to all customers on 2027-01-01; "
    "after that use --provider openverse"
)
GOOGLE_PAGE = 10  # the API's maximum `num`
GOOGLE_CAP = 100  # start + num may never exceed this
IMG_SIZES = ("icon", "small", "medium", "large", "xlarge", "xxlarge", "huge")
SAFE_VALUES = ("active", "off")
MIME_SUBTYPES = {"jpg": "jpeg", "tif": "tiff", "svg": "svg+xml"}

# Google's rights filter -> Openverse licence codes, so one --rights flag works for both.
RIGHTS_TO_OPENVERSE = {
    "cc_publicdomain": ("cc0", "pdm"),
    "cc_attribute": ("by",),
    "cc_sharealike": ("by-sa",),
    "cc_noncommercial": ("by-nc", "by-nc-sa"),
    "cc_nonderived": ("by-nd", "by-nc-nd"),
}


class ProviderError(UserError):
    """A provider kept failing (server errors, timeouts) or answered something unusable."""


class TransientError(Exception):
    """Worth retrying: a timeout, a dropped connection or a 5xx."""


class RateLimited(Exception):
    """Slow down: retry after `seconds` (a per-minute limit, not the daily quota)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"rate limited; retry after {seconds:.0f}s")
        self.seconds = seconds


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


@dataclass(frozen=True)
class SearchPage:
    results: list[SearchResult]
    last: bool  # the provider has nothing after this page
    cost: int = 1


class ImageProvider(Protocol):
    """What the scraper needs from a search provider."""

    name: str
    quota_tz: tzinfo  # the quota day turns at midnight in this zone
    page_size: int

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

    def search(self, query: str, page: int) -> SearchPage:
        """Fetch one page (1-based). Raises QuotaExhaustedError, RateLimited, TransientError,
        ConfigError (bad key) or ProviderError."""
        ...

    def secrets(self) -> list[str]:
        """Values that must never be written anywhere."""
        ...


class Scrubber:
    """Removes secrets from any text before it is stored, logged or raised."""

    _PARAM = re.compile(r"(?i)([?&](?:key|cx|client_secret|access_token|token)=)[^&#\s\"']+")

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


def _mime(filetype: Any) -> str | None:
    """Openverse's `filetype` ("jpg", "png", ...) as a media type."""
    if not filetype:
        return None
    kind = str(filetype).lower()
    return "image/" + MIME_SUBTYPES.get(kind, kind)


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


# ---- Google ------------------------------------------------------------------------------------


def classify_google_error(status: int, content: bytes) -> Exception:
    """Map a Custom Search error answer to what the scraper should do about it."""
    try:
        error = json.loads(content.decode("utf-8", "replace")).get("error", {})
    except (ValueError, AttributeError):
        error = {}
    if not isinstance(error, dict):
        error = {}
    message = str(error.get("message") or "no error message (is --api-endpoint a Custom Search server?)")
    reasons = {str(e.get("reason", "")) for e in error.get("errors", []) if isinstance(e, dict)}
    for detail in error.get("details", []) or []:
        if isinstance(detail, dict) and detail.get("reason"):
            reasons.add(str(detail["reason"]))
    quota_reasons = {"rateLimitExceeded", "dailyLimitExceeded", "userRateLimitExceeded", "quotaExceeded"}
    if status in (429, 403) and (error.get("status") == "RESOURCE_EXHAUSTED" or reasons & quota_reasons):
        if "per minute" in message.lower():
            return RateLimited(60.0)
        return QuotaExhaustedError(f"Google reports the daily quota used up: {message}")
    if status >= 500:
        return TransientError(f"Custom Search API answered HTTP {status}: {message}")
    if status in (400, 401, 403) and (
        "API_KEY_INVALID" in reasons or "keyInvalid" in reasons or "API key" in message
    ):
        return ConfigError(
            f"Google rejected the API key ({message}); set GCS_DEVELOPER_KEY to a valid Custom Search key"
        )
    if status in (401, 403):
        return ConfigError(
            f"Google refused the request (HTTP {status}: {message}); check that the Custom Search API "
            "is enabled for the key's project and that GCS_CX is your engine id"
        )
    return ProviderError(f"Custom Search API answered HTTP {status}: {message}")


@dataclass
class GoogleProvider:
    """Google Custom Search (image search) via google-images-search's backend."""

    developer_key: str = field(repr=False)
    cx: str = field(repr=False)
    endpoint: str | None = None
    rights_filter: str = DEFAULT_RIGHTS
    safe: str = "active"
    img_size: str | None = None
    file_type: str | None = None
    timeout: float = 30.0

    name = "google"
    quota_tz: ClassVar[tzinfo] = PACIFIC
    page_size = GOOGLE_PAGE

    def __post_init__(self) -> None:
        if not self.developer_key or not self.cx:
            raise ConfigError(
                "the google provider needs an API key and a search engine id: set GCS_DEVELOPER_KEY "
                "and GCS_CX (or gcs-developer-key / gcs-cx under [scrape] in officescore.toml), "
                "or use --provider openverse"
            )
        if self.safe not in SAFE_VALUES:
            raise ConfigError(f"--safe must be one of {', '.join(SAFE_VALUES)}, not {self.safe!r}")
        if self.img_size and self.img_size.lower() not in IMG_SIZES:
            raise ConfigError(f"--img-size must be one of {', '.join(IMG_SIZES)}, not {self.img_size!r}")
        self._built: Any = None

    @property
    def _backend(self) -> Any:
        """Built on first use, so reading filters or paging costs nothing."""
        if self._built is None:
            self._built = self._build_backend()
        return self._built

    def _build_backend(self) -> Any:
        import httplib2
        from google_images_search.google_api import GoogleCustomSearch
        from googleapiclient import discovery

        backend = GoogleCustomSearch(developer_key=self.developer_key, custom_search_cx=self.cx)
        endpoint = (self.endpoint or GOOGLE_DEFAULT_ENDPOINT).rstrip("/") + "/"
        # static_discovery: the customsearch v1 document ships with googleapiclient, so building
        # the service needs no network; api_endpoint replaces https://customsearch.googleapis.com/.
        backend._google_build = discovery.build(
            "customsearch",
            "v1",
            developerKey=self.developer_key,
            http=httplib2.Http(timeout=self.timeout),
            static_discovery=True,
            cache_discovery=False,
            client_options={"api_endpoint": endpoint},
        )
        return backend

    @property
    def rights(self) -> str:
        return self.rights_filter

    @property
    def filters(self) -> str:
        parts = {
            "rights": self.rights_filter,
            "safe": self.safe,
            "imgType": "photo",
            "imgSize": self.img_size,
            "fileType": self.file_type,
        }
        return "&".join(f"{k}={v}" for k, v in parts.items() if v)

    def pages_for(self, per_query: int) -> int:
        max_results = GOOGLE_CAP - 1  # start 91 + num 9 = 100
        return math.ceil(min(per_query, max_results) / GOOGLE_PAGE)

    @staticmethod
    def page_window(page: int) -> tuple[int, int]:
        """(start, num) for a 1-based page: start 1, 11, ... 91 and start + num <= 100."""
        start = 1 + GOOGLE_PAGE * (page - 1)
        return start, min(GOOGLE_PAGE, GOOGLE_CAP - start)

    def request_params(self, query: str, page: int) -> dict[str, Any]:
        start, num = self.page_window(page)
        # The package merges these with its defaults (searchType=image) and upper-cases imgSize.
        return self._backend._search_params(
            {
                "q": query,
                "num": num,
                "start": start,
                "imgType": "photo",
                "imgSize": self.img_size,
                "fileType": self.file_type,
                "safe": self.safe,
                "rights": self.rights_filter,
            }
        )

    def search(self, query: str, page: int) -> SearchPage:
        import httplib2
        from googleapiclient.errors import HttpError

        start, num = self.page_window(page)
        if num <= 0:
            return SearchPage([], last=True, cost=0)
        params = self.request_params(query, page)
        try:
            answer = self._backend._query_google_api(params, cache_discovery=False)
        except HttpError as exc:
            raise classify_google_error(exc.resp.status, exc.content or b"") from None
        except (TimeoutError, OSError, httplib2.HttpLib2Error) as exc:
            # str(exc) never holds the request URL (which carries the key) for these.
            raise TransientError(f"Custom Search API unreachable: {type(exc).__name__}: {exc}") from None
        return self._parse(answer, start, num)

    @staticmethod
    def _parse(answer: Any, start: int, num: int) -> SearchPage:
        items = (answer.get("items") or []) if isinstance(answer, dict) else None
        if not isinstance(items, list):
            raise ProviderError(
                "the Custom Search API answered something that is not a search result "
                "(is --api-endpoint a Custom Search server?)"
            )
        results = []
        for item in items:
            if not isinstance(item, dict):
                continue
            link = item.get("link")
            if not link:
                continue
            image = item.get("image") or {}
            results.append(
                SearchResult(
                    url=link,
                    landing_page=image.get("contextLink"),
                    title=item.get("title"),
                    width=_int(image.get("width")),
                    height=_int(image.get("height")),
                    mime=item.get("mime"),
                    source=item.get("displayLink"),
                )
            )
        # Continue only when the API says there is a next page, and never on a reading of its
        # answer alone: a page with fewer items than asked (or none) is the end, and so is the
        # API's cap (start + num <= 100), whatever `nextPage` claims.
        queries = answer.get("queries")
        has_next = isinstance(queries, dict) and bool(queries.get("nextPage"))
        last = not has_next or len(items) < num or start + num >= GOOGLE_CAP
        return SearchPage(results, last=last)

    def secrets(self) -> list[str]:
        return [self.developer_key, self.cx]


# ---- Openverse ---------------------------------------------------------------------------------


@dataclass
class OpenverseProvider:
    """Openverse image search: CC-licensed images with per-image licence and attribution."""

    endpoint: str | None = None
    client_id: str | None = field(default=None, repr=False)
    client_secret: str | None = field(default=None, repr=False)
    rights_filter: str = DEFAULT_RIGHTS
    timeout: float = 30.0

    name = "openverse"
    quota_tz: ClassVar[tzinfo] = timezone.utc
    page_size = 20  # the anonymous maximum; fixed so page numbers stay stable across runs
    anonymous_max_results = 240  # deeper pages need credentials

    def __post_init__(self) -> None:
        import requests

        self._base = (self.endpoint or OPENVERSE_DEFAULT_ENDPOINT).rstrip("/") + "/"
        self._session = requests.Session()
        self._session.headers["User-Agent"] = "officescore-scrape (+https://github.com/officescore)"
        self._token: str | None = None
        self._token_expires = 0.0
        self._licenses = self._license_codes(self.rights_filter)

    @staticmethod
    def _license_codes(rights: str) -> str:
        codes: list[str] = []
        for part in filter(None, (p.strip() for p in rights.split("|"))):
            if part not in RIGHTS_TO_OPENVERSE:
                raise ConfigError(
                    f"--rights value {part!r} is unknown; use any of {'|'.join(RIGHTS_TO_OPENVERSE)}"
                )
            codes.extend(c for c in RIGHTS_TO_OPENVERSE[part] if c not in codes)
        return ",".join(codes)

    @property
    def rights(self) -> str:
        return self.rights_filter

    @property
    def filters(self) -> str:
        return f"license={self._licenses}"

    def pages_for(self, per_query: int) -> int:
        cap = per_query if self.client_id else min(per_query, self.anonymous_max_results)
        return math.ceil(cap / self.page_size)

    def _auth_header(self) -> dict[str, str]:
        if not (self.client_id and self.client_secret):
            return {}
        if self._token is None or time.monotonic() > self._token_expires - 60:
            answer = self._call(
                "POST",
                "v1/auth_tokens/token/",
                data={
                    "grant_type": "client_credentials",
                    "client_id": self.client_id,
                    "client_secret": self.client_secret,
                },
                auth=False,
            )
            self._token = str(answer.get("access_token") or "")
            if not self._token:
                raise ConfigError("Openverse gave no access token; check OPENVERSE_CLIENT_ID/SECRET")
            self._token_expires = time.monotonic() + float(answer.get("expires_in") or 3600)
        return {"Authorization": f"Bearer {self._token}"}

    def _call(self, method: str, path: str, auth: bool = True, **kwargs: Any) -> dict[str, Any]:
        import requests

        headers = self._auth_header() if auth else {}
        try:
            response = self._session.request(
                method, self._base + path, headers=headers, timeout=(10, self.timeout), **kwargs
            )
        except requests.RequestException as exc:
            raise TransientError(f"Openverse unreachable: {type(exc).__name__}") from None
        status = response.status_code
        if status == 429:
            # Openverse's limits (a per-minute burst, a per-day sustained rate) are rolling windows,
            # not calendar days: the wait it asks for is the truth, whatever its length.
            raise RateLimited(retry_after_seconds(response.headers.get("Retry-After")))
        if status >= 500:
            raise TransientError(f"Openverse answered HTTP {status}")
        if status in (401, 403):
            raise ConfigError(
                f"Openverse refused the credentials (HTTP {status}); check OPENVERSE_CLIENT_ID and "
                "OPENVERSE_CLIENT_SECRET, or unset them to search anonymously"
            )
        if status != 200:
            detail = response.text[:200].replace("\n", " ")
            raise ProviderError(f"Openverse answered HTTP {status}: {detail}")
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise ProviderError("Openverse answered something that is not a JSON object") from None
        return answer

    def search(self, query: str, page: int) -> SearchPage:
        params = {
            "q": query,
            "page": page,
            "page_size": self.page_size,
            "license": self._licenses,
            "mature": "false",
        }
        answer = self._call("GET", "v1/images/", params=params)
        items = answer.get("results") or []
        if not isinstance(items, list):
            raise ProviderError("Openverse answered something that is not an image search result")
        results = []
        for item in items:
            if not isinstance(item, dict) or not item.get("url"):
                continue
            filetype = item.get("filetype")
            results.append(
                SearchResult(
                    url=item["url"],
                    landing_page=item.get("foreign_landing_url"),
                    title=item.get("title"),
                    width=_int(item.get("width")),
                    height=_int(item.get("height")),
                    mime=_mime(filetype),
                    license=item.get("license"),
                    license_version=item.get("license_version"),
                    license_url=item.get("license_url"),
                    creator=item.get("creator"),
                    creator_url=item.get("creator_url"),
                    attribution=item.get("attribution"),
                    source=item.get("source") or item.get("provider"),
                )
            )
        page_count = _int(answer.get("page_count")) or 0
        return SearchPage(results, last=page >= page_count or len(results) < self.page_size)

    def secrets(self) -> list[str]:
        return [s for s in (self.client_secret, self._token) if s]
