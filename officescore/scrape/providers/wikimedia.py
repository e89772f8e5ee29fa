"""Wikimedia Commons through the MediaWiki Action API: no key, a licence on every file.

One search page is one API call:
    action=query & generator=search & gsrnamespace=6 (File:) & prop=imageinfo
    & iiprop=url|size|mime|extmetadata & formatversion=2 & maxlag=5
Paging follows MediaWiki's `continue` protocol: every answer that has more carries a `continue`
object whose parameters go, unchanged, into the next request (they may continue the generator,
`gsroffset`, or only the imageinfo of the same batch, `iicontinue` with `continue=gsroffset||`).
The object is returned as the page's cursor and the manifest stores it in the same transaction
as the page, so a resumed run asks for the next page, never a page it already has.

The licence comes from `extmetadata` (LicenseShortName, License, LicenseUrl, Artist,
AttributionRequired) and is mapped onto the --rights codes; a file with any other licence
(GFDL-only, Free Art License, "Attribution", ...) is dropped. Wikimedia's User-Agent policy asks
for a descriptive agent with contact details: see `user_agent`.
"""

from __future__ import annotations

import html
import json
import math
import re
from dataclasses import dataclass
from datetime import timezone, tzinfo
from typing import Any, ClassVar

from officescore.errors import ConfigError
from officescore.scrape.providers.base import (
    DEFAULT_RIGHTS,
    USER_AGENT,
    NoTracking,
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

WIKIMEDIA_DEFAULT_ENDPOINT = "https://commons.wikimedia.org/w/api.php"
MAXLAG = 5  # seconds: Wikimedia's advice for non-interactive clients
THUMB_WIDTH = 2048  # originals run to hundreds of megapixels; the scaled rendition is plenty
EXTMETADATA = "LicenseShortName|License|LicenseUrl|Artist|AttributionRequired|ObjectName|Credit"
PHOTO_MIMES = ("image/jpeg", "image/png", "image/webp")
_CC = re.compile(r"^cc[- ]by(-nc)?(-sa|-nd)?(?:[- ](\d\.\d))?")
_HREF = re.compile(r"""href=["']([^"']+)["']""")
_TAG = re.compile(r"<[^>]+>")


def commons_license(short: str | None, code: str | None) -> tuple[str | None, str | None]:
    """(licence code, version) from extmetadata's LicenseShortName / License; (None, None) if it
    is not a licence --rights knows (such files are never kept)."""
    name = " ".join((short or "").lower().split())
    key = (code or "").lower()
    if name.startswith("cc0") or key == "cc0":
        return "cc0", "1.0"
    if name.startswith("public domain mark") or key == "pdm" or name == "pdm":
        return "pdm", "1.0"  # the Creative Commons mark itself (1.0 is its only version)
    if name.startswith("public domain") or key == "pd":
        # Public domain as Commons states it (by age, by origin, by the author's release): not the
        # CC Public Domain Mark, which such files usually do not carry.
        return "pd", None
    for text in (key, name.replace(" ", "-")):
        match = _CC.match(text)
        if match:
            return "by" + (match.group(1) or "") + (match.group(2) or ""), match.group(3)
    return None, None


def plain_text(value: str | None) -> str | None:
    """extmetadata values are HTML snippets: the text only."""
    if not value:
        return None
    text = " ".join(html.unescape(_TAG.sub(" ", value)).split())
    return text or None


def first_link(value: str | None) -> str | None:
    """The first href in an HTML snippet, made absolute (Commons writes //commons... and /wiki/...)."""
    match = _HREF.search(value or "")
    if not match:
        return None
    link = html.unescape(match.group(1))
    if link.startswith("//"):
        return "https:" + link
    if link.startswith("/"):
        return "https://commons.wikimedia.org" + link
    return link if link.startswith(("http://", "https://")) else None


def _meta(extmetadata: dict[str, Any], key: str) -> str | None:
    entry = extmetadata.get(key)
    value = entry.get("value") if isinstance(entry, dict) else None
    return None if value is None else str(value)


@dataclass
class WikimediaProvider(NoTracking):
    """Wikimedia Commons file search (MediaWiki API, no key)."""

    endpoint: str | None = None
    rights_filter: str = DEFAULT_RIGHTS
    contact: str | None = None  # e-mail or URL for the User-Agent (Wikimedia asks for one)
    timeout: float = 30.0

    name = "wikimedia"
    quota_tz: ClassVar[tzinfo] = timezone.utc
    page_size = 20
    # No published read limit; these are our courtesy caps (one request at a time, always).
    daily_limit: ClassVar[int] = 5000
    hourly_limit: ClassVar[int | None] = 500
    uses_cursor: ClassVar[bool] = True

    def __post_init__(self) -> None:
        self._url = self.endpoint or WIKIMEDIA_DEFAULT_ENDPOINT
        if self.endpoint and not self._url.rstrip("/").endswith(".php"):
            self._url = self._url.rstrip("/") + "/w/api.php"  # a bare host: MediaWiki's usual path
        self._allowed = allowed_licenses(self.rights_filter)
        # Commons has no non-commercial or no-derivatives licences: those names match nothing there.
        if not set(self._allowed) & {"cc0", "pdm", "pd", "by", "by-sa"}:
            raise ConfigError(
                f"--rights {self.rights_filter!r} allows no licence used on Wikimedia Commons "
                "(public domain, CC0, CC BY, CC BY-SA); add cc_publicdomain, cc_attribute or cc_sharealike"
            )
        self._session = json_session(self.user_agent)

    @property
    def user_agent(self) -> str:
        """Wikimedia's policy: a descriptive agent with a way to reach whoever runs it."""
        contact = f"; {self.contact}" if self.contact else ""
        return USER_AGENT.replace(")", f"{contact}) python-requests")

    @property
    def rights(self) -> str:
        return self.rights_filter

    @property
    def filters(self) -> str:
        return "namespace=6&licenses=" + ",".join(self._allowed)

    def pages_for(self, per_query: int) -> int:
        return math.ceil(per_query / self.page_size)

    def params(self, query: str, cursor: str | None) -> dict[str, Any]:
        params: dict[str, Any] = {
            "action": "query",
            "format": "json",
            "formatversion": "2",
            "generator": "search",
            "gsrsearch": f"{query} filetype:bitmap",
            "gsrnamespace": "6",
            "gsrlimit": str(self.page_size),
            "prop": "imageinfo",
            "iiprop": "url|size|mime|extmetadata",
            "iiextmetadatafilter": EXTMETADATA,
            "iiextmetadatalanguage": "en",
            "iiurlwidth": str(THUMB_WIDTH),
            "maxlag": str(MAXLAG),
        }
        if cursor:
            params.update(json.loads(cursor))
        return params

    def search(self, query: str, page: int, cursor: str | None = None) -> SearchPage:
        if page > 1 and not cursor:
            raise RequestNotSent(
                f"the manifest has no continue token for {query!r} page {page}; Commons pages can only "
                "be reached by continuing from the page before: move manifest.sqlite away to start afresh"
            )
        status, answer, response = get_json(
            self._session, "Wikimedia Commons", self._url, self.timeout, params=self.params(query, cursor)
        )
        if status == 429:
            raise RateLimited(retry_after_seconds(response.headers.get("Retry-After")))
        if status >= 500:
            raise TransientError(f"Wikimedia Commons answered HTTP {status}")
        if status == 403:
            raise ProviderError(
                "Wikimedia refused the request (HTTP 403); its User-Agent policy asks for contact "
                "details: set --contact (or OFFICESCORE_CONTACT) to your e-mail or project URL"
            )
        if status != 200 or not isinstance(answer, dict):
            raise ProviderError(
                f"Wikimedia Commons answered HTTP {status} with something that is not an API answer "
                "(is --api-endpoint a MediaWiki api.php?)"
            )
        error = answer.get("error")
        if isinstance(error, dict):
            code, info = str(error.get("code", "")), str(error.get("info", ""))
            if code == "maxlag":  # replicas are lagging: the API asks bots to wait (HTTP 200)
                lag = as_int(error.get("lag")) or MAXLAG
                raise RateLimited(retry_after_seconds(response.headers.get("Retry-After"), float(lag)))
            if code == "ratelimited":
                raise RateLimited(retry_after_seconds(response.headers.get("Retry-After")))
            raise ProviderError(f"Wikimedia Commons API error {code}: {info}")
        pages = (answer.get("query") or {}).get("pages", [])
        if isinstance(pages, dict):  # formatversion=1 keys pages by id
            pages = list(pages.values())
        if not isinstance(pages, list):
            raise ProviderError("Wikimedia Commons answered something that is not a search result")
        results = [r for r in (self._result(p) for p in sorted(pages, key=_rank)) if r is not None]
        kept, skipped = keep_allowed(results, self._allowed)
        more = answer.get("continue")
        cursor_next = json.dumps(more, sort_keys=True) if isinstance(more, dict) and more else None
        return SearchPage(kept, last=cursor_next is None, cursor=cursor_next, skipped=skipped)

    @staticmethod
    def _result(page: Any) -> SearchResult | None:
        if not isinstance(page, dict):
            return None
        infos = page.get("imageinfo")
        if not isinstance(infos, list) or not infos or not isinstance(infos[0], dict):
            return None  # its imageinfo comes with the next (iicontinue) answer
        info = infos[0]
        if info.get("mime") not in PHOTO_MIMES or not (info.get("thumburl") or info.get("url")):
            return None  # drawings, PDFs, videos, TIFF scans: not photos we can use
        meta = info.get("extmetadata") if isinstance(info.get("extmetadata"), dict) else {}
        short = _meta(meta, "LicenseShortName")
        code, version = commons_license(short, _meta(meta, "License"))
        artist_html = _meta(meta, "Artist")
        creator = plain_text(artist_html) or plain_text(_meta(meta, "Credit"))
        title = plain_text(_meta(meta, "ObjectName")) or str(page.get("title", "")).removeprefix("File:")
        required = (_meta(meta, "AttributionRequired") or "true").strip().lower() != "false"
        credit = f"{creator or 'Unknown author'}, {short or 'licence unknown'}, via Wikimedia Commons"
        if not required:
            credit += " (attribution not required)"
        use_thumb = bool(info.get("thumburl"))
        return SearchResult(
            url=str(info.get("thumburl") if use_thumb else info.get("url")),
            landing_page=info.get("descriptionurl"),
            title=title or None,
            width=as_int(info.get("thumbwidth" if use_thumb else "width")),
            height=as_int(info.get("thumbheight" if use_thumb else "height")),
            mime=info.get("mime"),
            license=code,
            license_version=version,
            license_url=_meta(meta, "LicenseUrl"),
            creator=creator,
            creator_url=first_link(artist_html),
            attribution=credit,
            source="wikimedia_commons",
        )

    def secrets(self) -> list[str]:
        return []


def _rank(page: Any) -> int:
    """Generator pages come back keyed by id; `index` is the search rank."""
    return as_int(page.get("index")) or 0 if isinstance(page, dict) else 0
