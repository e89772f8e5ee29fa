"""Flickr: `flickr.photos.search` with an API key (FLICKR_API_KEY), 100 photos a page.

The --rights filter becomes Flickr's `license=` ids. The ids are learned once per provider, before
the first search, from `flickr.photos.licenses.getInfo` (one extra call a run, not counted in the
ledger): each entry whose URL is a Creative Commons deed (creativecommons.org/licenses/<code>/
<version>/, publicdomain/zero/1.0 for CC0, publicdomain/mark/1.0 for the Public Domain Mark) maps
to (code, version, deed URL), so licences Flickr adds later (the CC 4.0 family) are asked for and
kept with their own version and deed. Entries without such a URL (all rights reserved, "no known
copyright restrictions", United States Government Work) are never asked for or kept. When getInfo
fails (unreachable, an error answer, an unexpected shape) the built-in table FLICKR_LICENSES
(ids 1-6: the CC 2.0 family, 9 CC0 1.0, 10 Public Domain Mark 1.0) is used for the whole run; an
invalid key is the same ConfigError as from a search. Each photo's `license` (from
`extras=license,owner_name,url_o`) is checked again against the same table.

`filters` (the key paging progress is kept under) names the allowed licence codes, not the ids:
it must be known without a call (`--status` makes none), and stays the same whichever table a run
got. Flickr allows 3600 calls an hour per key. Flickr answers errors with HTTP 200 and
`{"stat": "fail", "code": 100, "message": ...}`.
"""

from __future__ import annotations

import math
import re
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
# Flickr licence id -> (code, version, deed URL): the fallback when getInfo cannot be asked.
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
# The codes a Flickr licence can map to (the --rights vocabulary, less Unsplash's).
FLICKR_CODES = ("by", "by-sa", "by-nd", "by-nc", "by-nc-sa", "by-nc-nd", "cc0", "pdm")
_LABELS = {"cc0": "CC0", "pdm": "Public Domain Mark"}
_DEED = re.compile(
    r"https?://(?:www\.)?creativecommons\.org/(?:licenses/(?P<code>[a-z-]+)/(?P<version>\d+\.\d+)"
    r"(?:/(?P<port>[a-z]{2}(?:-[a-z]{2})?))?|publicdomain/(?P<pd>zero|mark)/(?P<pdversion>\d+\.\d+))"
    r"(?:/|$)",
    re.IGNORECASE,
)
INVALID_KEY = 100
SERVICE_UNAVAILABLE = 105


def flickr_license_ids(
    allowed: tuple[str, ...], table: dict[str, tuple[str, str, str]] = FLICKR_LICENSES
) -> list[str]:
    return sorted((fid for fid, (code, _, _) in table.items() if code in allowed), key=int)


def license_from_url(url: Any) -> tuple[str, str, str] | None:
    """(code, version, deed URL) for a Creative Commons deed or public-domain URL; None otherwise."""
    match = _DEED.match(str(url or "").strip())
    if not match:
        return None
    if match["pd"]:
        kind, version = match["pd"].lower(), match["pdversion"]
        return (
            ("cc0" if kind == "zero" else "pdm"),
            version,
            f"https://creativecommons.org/publicdomain/{kind}/{version}/",
        )
    code, version = match["code"].lower(), match["version"]
    if code not in FLICKR_CODES:
        return None  # a retired licence (sampling+, ...) no --rights name allows
    port = f"{match['port'].lower()}/" if match["port"] else ""  # a ported licence keeps its deed
    return code, version, f"https://creativecommons.org/licenses/{code}/{version}/{port}"


def _flickr_id(value: Any) -> str | None:
    """Ids come as numbers or strings ("4", 4): one text form for both."""
    number = None if isinstance(value, bool) else as_int(value)
    return None if number is None else str(number)


def licenses_from_info(answer: Any) -> dict[str, tuple[str, str, str]] | None:
    """The id table from a getInfo answer; None when its shape is not getInfo's or it names no
    Creative Commons licence at all (not believable: use the built-in table instead)."""
    licenses = answer.get("licenses") if isinstance(answer, dict) else None
    items = licenses.get("license") if isinstance(licenses, dict) else None
    if not isinstance(items, list):
        return None
    table: dict[str, tuple[str, str, str]] = {}
    for item in items:
        if not isinstance(item, dict):
            continue
        fid, mapped = _flickr_id(item.get("id")), license_from_url(item.get("url"))
        if fid is not None and mapped is not None:
            table[fid] = mapped
    return table or None


def _stat_fail(answer: dict[str, Any]) -> Exception:
    """The exception for a `stat: fail` answer."""
    code, message = as_int(answer.get("code")), str(answer.get("message") or "no message")
    if code == INVALID_KEY:
        return ConfigError(f"Flickr rejected the API key ({message}); set FLICKR_API_KEY to a valid key")
    if code == SERVICE_UNAVAILABLE:
        return TransientError(f"Flickr: {message}")
    return ProviderError(f"Flickr answered error {code}: {message}")


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
        self._codes = [code for code in self._allowed if code in FLICKR_CODES]
        self._licenses: dict[str, tuple[str, str, str]] | None = None  # learned before the first search
        self._ids: list[str] = []
        self._url = self.endpoint or FLICKR_DEFAULT_ENDPOINT
        if self.endpoint and not self._url.rstrip("/").endswith("/rest"):
            self._url = self._url.rstrip("/") + "/services/rest/"
        self._session = json_session()

    @property
    def rights(self) -> str:
        return self.rights_filter

    @property
    def filters(self) -> str:
        return "license=" + ",".join(self._codes) + "&content_type=1&safe_search=1"

    def pages_for(self, per_query: int) -> int:
        return math.ceil(min(per_query, self.max_results) / self.page_size)

    def license_table(self) -> dict[str, tuple[str, str, str]]:
        """Flickr's licence ids -> (code, version, deed URL): asked once, the built-in table if that fails."""
        if self._licenses is None:
            self._licenses = self._ask_licenses() or dict(FLICKR_LICENSES)
            self._ids = flickr_license_ids(self._allowed, self._licenses)
        return self._licenses

    def _ask_licenses(self) -> dict[str, tuple[str, str, str]] | None:
        params = {
            "method": "flickr.photos.licenses.getInfo",
            "api_key": self.api_key,
            "format": "json",
            "nojsoncallback": "1",
        }
        try:
            status, answer, _ = get_json(self._session, "Flickr", self._url, self.timeout, params=params)
        except TransientError:
            return None
        if status != 200 or not isinstance(answer, dict):
            return None
        if answer.get("stat") != "ok":
            error = _stat_fail(answer)
            if isinstance(error, ConfigError):
                raise error  # a bad key fails every search too: say so once, now
            return None
        return licenses_from_info(answer)

    def search(self, query: str, page: int, cursor: str | None = None) -> SearchPage:
        table = self.license_table()
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
            raise _stat_fail(answer)
        photos = answer.get("photos")
        items = photos.get("photo") if isinstance(photos, dict) else None
        if not isinstance(items, list):
            raise ProviderError("Flickr answered something that is not a photo search result")
        results = [r for r in (self._result(item, table) for item in items) if r is not None]
        kept, skipped = keep_allowed(results, self._allowed)
        pages = as_int(photos.get("pages")) or 0
        return SearchPage(
            kept, last=page >= pages or page * self.page_size >= self.max_results, skipped=skipped
        )

    @staticmethod
    def _result(item: Any, table: dict[str, tuple[str, str, str]]) -> SearchResult | None:
        if not isinstance(item, dict):
            return None
        url, size = (item.get("url_o"), "o") if item.get("url_o") else (item.get("url_l"), "l")
        if not url:
            return None  # the owner allows no large rendition
        fid = _flickr_id(item.get("license"))
        code, version, deed = table.get(fid, (None, None, None)) if fid is not None else (None, None, None)
        owner, photo_id = item.get("owner"), item.get("id")
        title = str(item.get("title") or "") or None
        creator = item.get("ownername") or owner
        name = _LABELS.get(code or "") or f"CC {(code or '').upper()}"
        label = f"{name} {version}"
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
