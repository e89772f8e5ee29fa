"""Unsplash: `GET /search/photos` with an access key (UNSPLASH_ACCESS_KEY), 30 photos a page.

A demo key gets 50 requests an hour; every answer says how many are left
(`X-Ratelimit-Remaining`), and one past the limit is answered 403 "Rate Limit Exceeded". Both end
the hour in the ledger (`HourExhausted`), not the day. The API guidelines ask for two things we
do: credit the photographer and Unsplash with links (the `attribution` of each result), and call
the photo's `links.download_location` when it is downloaded (`track_download`). The key travels
in the `Authorization` header only, and only to the API's own host.

Photos under the Unsplash License are accepted by a --rights filter that accepts CC BY (it allows
at least as much); Unsplash+ photos (`premium`/`plus`) carry a paid licence and are never kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import timezone, tzinfo
from typing import Any, ClassVar
from urllib.parse import urlsplit

from officescore.errors import ConfigError
from officescore.scrape.providers.base import (
    DEFAULT_RIGHTS,
    HourExhausted,
    ProviderError,
    RateLimited,
    RequestNotSent,
    SearchPage,
    SearchResult,
    TransientError,
    allowed_licenses,
    as_int,
    get_json,
    json_session,
    keep_allowed,
    retry_after_seconds,
)

UNSPLASH_DEFAULT_ENDPOINT = "https://api.unsplash.com/"
UNSPLASH_LICENSE_URL = "https://unsplash.com/license"
UNSPLASH_PLUS_LICENSE_URL = "https://unsplash.com/plus/license"
REFERRAL = "utm_source=officescore&utm_medium=referral"  # the guidelines' referral parameters


def _with_referral(url: str | None) -> str | None:
    if not url:
        return None
    return f"{url}{'&' if '?' in url else '?'}{REFERRAL}"


@dataclass
class UnsplashProvider:
    """Unsplash photo search (the Unsplash License), with download tracking."""

    access_key: str = field(repr=False)
    endpoint: str | None = None
    rights_filter: str = DEFAULT_RIGHTS
    timeout: float = 30.0

    name = "unsplash"
    quota_tz: ClassVar[tzinfo] = timezone.utc
    page_size = 30  # the API's maximum per_page
    hourly_limit: ClassVar[int | None] = 50  # a demo key; production keys get 5000
    daily_limit: ClassVar[int] = 24 * 50
    uses_cursor: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if not self.access_key:
            raise ConfigError(
                "the unsplash provider needs an access key: set UNSPLASH_ACCESS_KEY (or "
                "unsplash-access-key under [scrape] in officescore.toml), or use --provider wikimedia"
            )
        if not (self.access_key.isascii() and self.access_key.isprintable()):
            # It travels in a header, which cannot carry a quote pasted with it: that was a crash.
            raise ConfigError(
                "the Unsplash access key (UNSPLASH_ACCESS_KEY, or unsplash-access-key under [scrape]) holds "
                "a character no key has (quotes pasted with it?); copy the Access Key again"
            )
        if "unsplash" not in allowed_licenses(self.rights_filter):
            raise ConfigError(
                f"--rights {self.rights_filter!r} does not accept the Unsplash License (it allows what "
                "CC BY allows); add cc_attribute or use another provider"
            )
        self._base = (self.endpoint or UNSPLASH_DEFAULT_ENDPOINT).rstrip("/") + "/"
        self._session = json_session()
        self._session.headers["Accept-Version"] = "v1"
        self.remaining: int | None = None  # X-Ratelimit-Remaining of the last answer

    @property
    def rights(self) -> str:
        return self.rights_filter

    @property
    def filters(self) -> str:
        return "license=unsplash&content_filter=high"

    def pages_for(self, per_query: int) -> int:
        return math.ceil(per_query / self.page_size)

    def _get(self, url: str, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Client-ID {self.access_key}"}
        status, answer, response = get_json(
            self._session, "Unsplash", url, self.timeout, headers=headers, **kwargs
        )
        self.remaining = as_int(response.headers.get("X-Ratelimit-Remaining"))
        if status == 429:
            raise RateLimited(retry_after_seconds(response.headers.get("Retry-After")))
        if status == 403 and ("rate limit" in response.text.lower() or self.remaining == 0):
            raise HourExhausted()
        if status >= 500:
            raise TransientError(f"Unsplash answered HTTP {status}")
        if status in (401, 403):
            raise ConfigError(
                f"Unsplash refused the access key (HTTP {status}: {_errors(answer)}); set "
                "UNSPLASH_ACCESS_KEY to your application's Access Key"
            )
        if status != 200:
            raise ProviderError(f"Unsplash answered HTTP {status}: {_errors(answer)}")
        return answer

    def search(self, query: str, page: int, cursor: str | None = None) -> SearchPage:
        params = {
            "query": query,
            "page": page,
            "per_page": self.page_size,
            "content_filter": "high",
        }
        answer = self._get(self._base + "search/photos", params=params)
        items = answer.get("results") if isinstance(answer, dict) else None
        if not isinstance(items, list):
            raise ProviderError(
                "Unsplash answered something that is not a photo search result "
                "(is --api-endpoint the Unsplash API?)"
            )
        results = [r for r in (self._result(item) for item in items) if r is not None]
        kept, skipped = keep_allowed(results, ("unsplash",))
        total_pages = as_int(answer.get("total_pages")) or 0
        return SearchPage(kept, last=page >= total_pages, skipped=skipped)

    @staticmethod
    def _result(item: Any) -> SearchResult | None:
        if not isinstance(item, dict):
            return None
        urls = item.get("urls") if isinstance(item.get("urls"), dict) else {}
        links = item.get("links") if isinstance(item.get("links"), dict) else {}
        user = item.get("user") if isinstance(item.get("user"), dict) else {}
        user_links = user.get("links") if isinstance(user.get("links"), dict) else {}
        url = urls.get("full") or urls.get("raw")
        if not url:
            return None
        paid = bool(item.get("premium") or item.get("plus"))
        name = str(user.get("name") or user.get("username") or "Unknown photographer")
        profile = _with_referral(user_links.get("html"))
        return SearchResult(
            url=str(url),
            landing_page=_with_referral(links.get("html")),
            title=item.get("description") or item.get("alt_description"),
            width=as_int(item.get("width")),
            height=as_int(item.get("height")),
            mime="image/jpeg",  # urls.full is a JPEG rendition
            license="unsplash+" if paid else "unsplash",
            license_url=UNSPLASH_PLUS_LICENSE_URL if paid else UNSPLASH_LICENSE_URL,
            creator=name,
            creator_url=profile,
            # The guidelines' form: "Photo by <photographer> on Unsplash", both linked.
            attribution=f"Photo by {name} ({profile or 'https://unsplash.com'}) on Unsplash "
            f"(https://unsplash.com/?{REFERRAL})",
            source="unsplash",
            track_url=links.get("download_location"),
        )

    def track_download(self, url: str) -> None:
        """Trigger the photo's download event. Only ever sent to the API's host: a search answer
        must not be able to send the key anywhere else."""
        if urlsplit(url).netloc.lower() != urlsplit(self._base).netloc.lower():
            raise RequestNotSent(f"download_location {url!r} is not on the Unsplash API host; not called")
        try:
            self._get(url)
        except ProviderError as exc:
            if "HTTP 404" not in str(exc):  # the photo is gone: nothing left to count
                raise

    def secrets(self) -> list[str]:
        return [self.access_key]


def _errors(answer: Any) -> str:
    """Unsplash's error shape: {"errors": ["OAuth error: The access token is invalid"]}."""
    if isinstance(answer, dict) and isinstance(answer.get("errors"), list):
        return "; ".join(str(e) for e in answer["errors"])[:200]
    return "no error message"
