"""Flickr: `flickr.photos.search` with an API key (FLICKR_API_KEY), 100 photos a page.

The --rights filter becomes Flickr's `license=` ids (flickr.photos.licenses.getInfo):
1 BY-NC-SA 2.0, 2 BY-NC 2.0, 3 BY-NC-ND 2.0, 4 BY 2.0, 5 BY-SA 2.0, 6 BY-ND 2.0, 9 CC0 1.0,
10 Public Domain Mark 1.0. 0 (all rights reserved), 7 (no known copyright restrictions) and
8 (United States Government Work) are never asked for or kept. Each photo's `license` (from
`extras=license,owner_name,url_o`) is checked again. Flickr allows 3600 calls an hour per key.
Flickr answers errors with HTTP 200 and `{"stat": "fail", "code": 100, "message": ...}`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import timezone, tzinfo
from typing import Any, ClassVar

from officescore.errors import ConfigError
from officescore.scrape.providers.base import (
    DEFAULT_RIGHTS,
    NoTracking,
    ProviderError,
    RateLimited,
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

FLICKR_DEFAULT_ENDPOINT = "https://api.flickr.com/services/rest/"
# Flickr licence id -> (code, version, deed URL)
FLICKR_LICENSES: dict[str, tuple[str, str, str]] = {
    "1": ("by-nc-sa", "2.0", "https://creativecommons.org/licenses/by-nc-sa/2.0/"),
    "2": ("by-nc", "2.0", "https://creativecommons.org/licenses/by-nc/2.0/"),
    "3": ("by-nc-nd", "2.0", "https://creativecommons.org/licenses/by-nc-nd/2.0/"),
    "4": ("by", "2.0", "https://creativecommons.org/licenses/by/2.0/"),
    "5": ("by-sa", "2.0", "https://creativecommons.org/licenses/by-sa/2.0/"),
    "6": ("by-nd", "2.0", "https://creativecommons.org/licenses/by-nd/2.0/"),
    "9": ("cc0", "1.0", "https://creativecommons.org/publicdomain/zero/1.0/"),
    "10": ("pdm", "1.0", "https://creativecommons.org/publicdomain/mark/1.0/"),
}
_LABELS = {"cc0": "CC0 1.0", "pdm": "Public Domain Mark 1.0"}
INVALID_KEY = 100
SERVICE_UNAVAILABLE = 105


def flickr_license_ids(allowed: tuple[str, ...]) -> list[str]:
    return [fid for fid, (code, _, _) in FLICKR_LICENSES.items() if code in allowed]


@dataclass
class FlickrProvider(NoTracking):
    """Flickr photo search restricted to Creative Commons and public-domain licences."""

    api_key: str = field(repr=False)
    endpoint: str | None = None
    rights_filter: str = DEFAULT_RIGHTS
    timeout: float = 30.0

    name = "flickr"
    quota_tz: ClassVar[tzinfo] = timezone.utc
    page_size = 100
    hourly_limit: ClassVar[int | None] = 3600  # Flickr's published per-key limit
    daily_limit: ClassVar[int] = 24 * 3600
    uses_cursor: ClassVar[bool] = False
    max_results = 4000  # Flickr returns at most this many distinct results per search

    def __post_init__(self) -> None:
        if not self.api_key:
            raise ConfigError(
                "the flickr provider needs an API key: set FLICKR_API_KEY (or flickr-api-key under "
                "[scrape] in officescore.toml), or use --provider wikimedia"
            )
        self._allowed = allowed_licenses(self.rights_filter)
        self._ids = flickr_license_ids(self._allowed)
        self._url = self.endpoint or FLICKR_DEFAULT_ENDPOINT
        if self.endpoint and not self._url.rstrip("/").endswith("/rest"):
            self._url = self._url.rstrip("/") + "/services/rest/"
        self._session = json_session()

    @property
    def rights(self) -> str:
        return self.rights_filter

    @property
    def filters(self) -> str:
        return "license=" + ",".join(self._ids) + "&content_type=1&safe_search=1"

    def pages_for(self, per_query: int) -> int:
        return math.ceil(min(per_query, self.max_results) / self.page_size)

    def search(self, query: str, page: int, cursor: str | None = None) -> SearchPage:
        params = {
            "method": "flickr.photos.search",
            "api_key": self.api_key,
            "text": query,
            "license": ",".join(self._ids),
            "extras": "license,owner_name,url_o,url_l",
            "content_type": "1",
            "media": "photos",
            "safe_search": "1",
            "sort": "relevance",
            "per_page": str(self.page_size),
            "page": str(page),
            "format": "json",
            "nojsoncallback": "1",
        }
        status, answer, response = get_json(self._session, "Flickr", self._url, self.timeout, params=params)
        if status == 429:
            raise RateLimited(retry_after_seconds(response.headers.get("Retry-After")))
        if status >= 500:
            raise TransientError(f"Flickr answered HTTP {status}")
        if status != 200 or not isinstance(answer, dict):
            raise ProviderError(
                f"Flickr answered HTTP {status} with something that is not an API answer "
                "(is --api-endpoint Flickr's REST endpoint?)"
            )
        if answer.get("stat") != "ok":
            code, message = as_int(answer.get("code")), str(answer.get("message") or "no message")
            if code == INVALID_KEY:
                raise ConfigError(
                    f"Flickr rejected the API key ({message}); set FLICKR_API_KEY to a valid key"
                )
            if code == SERVICE_UNAVAILABLE:
                raise TransientError(f"Flickr: {message}")
            raise ProviderError(f"Flickr answered error {code}: {message}")
        photos = answer.get("photos")
        items = photos.get("photo") if isinstance(photos, dict) else None
        if not isinstance(items, list):
            raise ProviderError("Flickr answered something that is not a photo search result")
        results = [r for r in (self._result(item) for item in items) if r is not None]
        kept, skipped = keep_allowed(results, self._allowed)
        pages = as_int(photos.get("pages")) or 0
        return SearchPage(
            kept, last=page >= pages or page * self.page_size >= self.max_results, skipped=skipped
        )

    @staticmethod
    def _result(item: Any) -> SearchResult | None:
        if not isinstance(item, dict):
            return None
        url, size = (item.get("url_o"), "o") if item.get("url_o") else (item.get("url_l"), "l")
        if not url:
            return None  # the owner allows no large rendition
        code, version, deed = FLICKR_LICENSES.get(str(item.get("license")), (None, None, None))
        owner, photo_id = item.get("owner"), item.get("id")
        title = str(item.get("title") or "") or None
        creator = item.get("ownername") or owner
        label = _LABELS.get(code or "", f"CC {(code or '').upper()} {version}")
        verb = "is marked with" if code in ("cc0", "pdm") else "is licensed under"
        return SearchResult(
            url=str(url),
            landing_page=f"https://www.flickr.com/photos/{owner}/{photo_id}" if owner and photo_id else None,
            title=title,
            width=as_int(item.get(f"width_{size}")),
            height=as_int(item.get(f"height_{size}")),
            license=code,
            license_version=version,
            license_url=deed,
            creator=str(creator) if creator else None,
            creator_url=f"https://www.flickr.com/photos/{owner}/" if owner else None,
            attribution=f'"{title or "Untitled"}" by {creator or "unknown"} {verb} {label}.'
            if code
            else None,
            source="flickr",
        )

    def secrets(self) -> list[str]:
        return [self.api_key]
