"""Google Custom Search (image search) via google-images-search's backend.

`GoogleProvider` queries the Custom Search JSON API through google-images-search's backend
(`GoogleCustomSearch`): its `_search_params` builds the request parameters and its
`_query_google_api` runs them through googleapiclient's `customsearch` v1 service. We build that
service ourselves from the discovery document shipped inside googleapiclient (no network) with
`client_options={"api_endpoint": ...}`, so `--api-endpoint` can point it at another server, and
with an httplib2 client that has a timeout. The package's own downloader is not used (it has no
timeouts and rewrites files); its `search()` generator is not used either because it keeps only
the link and landing page and HEAD-probes each result.

Google closed the API to new customers in 2026 and turns it off on 2027-01-01 (`GOOGLE_CUTOFF`).
From then on (or as soon as it answers 410 Gone, or 403 with a closure message) the provider
raises `ProviderClosedError`; `--provider auto` then falls back to Openverse.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone, tzinfo
from typing import Any, ClassVar

from officescore.errors import ConfigError, QuotaExhaustedError
from officescore.scrape.providers.base import (
    DEFAULT_RIGHTS,
    NoTracking,
    ProviderClosedError,
    ProviderError,
    RateLimited,
    SearchPage,
    SearchResult,
    TransientError,
    as_int,
)
from officescore.scrape.quota import PACIFIC

GOOGLE_DEFAULT_ENDPOINT = "https://customsearch.googleapis.com/"
GOOGLE_CUTOFF = datetime(2027, 1, 1, tzinfo=timezone.utc)
GOOGLE_CLOSING_NOTICE = (
    "notice: Google closes the Custom Search JSON API to all customers on 2027-01-01; "
    "from then on --provider auto (the default) searches Openverse"
)
GOOGLE_CLOSED = "Google's Custom Search JSON API is closed (turned off for everyone on 2027-01-01)"
# Words of a closure answer (403 "no longer available to ...", 410 Gone): a plain 403 is a key problem.
CLOSURE_WORDS = ("no longer available", "discontinued", "shut down", "turned down", "closed", "sunset")
GOOGLE_PAGE = 10  # the API's maximum `num`
GOOGLE_CAP = 100  # start + num may never exceed this
IMG_SIZES = ("icon", "small", "medium", "large", "xlarge", "xxlarge", "huge")
SAFE_VALUES = ("active", "off")


def google_closed(when: datetime) -> bool:
    """True from 2027-01-01 (UTC): the API is off, no call is worth making."""
    return when >= GOOGLE_CUTOFF


# ---- errors ------------------------------------------------------------------------------------


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
    if status == 410 or (status == 403 and any(w in message.lower() for w in CLOSURE_WORDS)):
        return ProviderClosedError(f"{GOOGLE_CLOSED}: HTTP {status}: {message}")
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
class GoogleProvider(NoTracking):
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
    daily_limit: ClassVar[int] = 100  # the free tier
    hourly_limit: ClassVar[int | None] = None
    uses_cursor: ClassVar[bool] = False

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

    def search(self, query: str, page: int, cursor: str | None = None) -> SearchPage:
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
                    width=as_int(image.get("width")),
                    height=as_int(image.get("height")),
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
