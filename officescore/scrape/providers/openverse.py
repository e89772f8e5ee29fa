"""Openverse image search: CC-licensed images with per-image licence and attribution.

Called directly over its REST API (anonymous, or with client credentials for deeper paging).
Its licence filter is sent with every search and each answer is checked against it again.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import timezone, tzinfo
from typing import Any, ClassVar

from officescore.errors import ConfigError
from officescore.scrape.providers.base import (
    DEFAULT_RIGHTS,
    RIGHTS_TO_OPENVERSE,
    USER_AGENT,
    NoTracking,
    ProviderError,
    RateLimited,
    SearchPage,
    SearchResult,
    TransientError,
    as_int,
    keep_allowed,
    mime_type,
    request_failed,
    retry_after_seconds,
)

OPENVERSE_DEFAULT_ENDPOINT = "https://api.openverse.org/"


@dataclass
class OpenverseProvider(NoTracking):
    """Openverse image search: CC-licensed images with per-image licence and attribution."""

    endpoint: str | None = None
    client_id: str | None = field(default=None, repr=False)
    client_secret: str | None = field(default=None, repr=False)
    rights_filter: str = DEFAULT_RIGHTS
    timeout: float = 30.0

    name = "openverse"
    quota_tz: ClassVar[tzinfo] = timezone.utc
    page_size = 20  # the anonymous maximum; fixed so page numbers stay stable across runs
    daily_limit: ClassVar[int] = 100
    hourly_limit: ClassVar[int | None] = None
    uses_cursor: ClassVar[bool] = False
    anonymous_max_results = 240  # deeper pages need credentials

    def __post_init__(self) -> None:
        import requests

        self._base = (self.endpoint or OPENVERSE_DEFAULT_ENDPOINT).rstrip("/") + "/"
        self._session = requests.Session()
        self._session.headers["User-Agent"] = USER_AGENT
        self._token: str | None = None
        self._token_expires = 0.0
        self._licenses = self._license_codes(self.rights_filter)
        if bool(self.client_id) != bool(self.client_secret):
            # Caught here, not after 240 anonymous results when page 13 is refused.
            given, missing = ("ID", "SECRET") if self.client_id else ("SECRET", "ID")
            raise ConfigError(
                f"an Openverse client {given} is set without its client {missing}: set "
                f"OPENVERSE_CLIENT_{missing} (or openverse-client-{missing.lower()} under [scrape] in "
                "officescore.toml) too, or neither to search anonymously (240 results per query)"
            )

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
            raise request_failed("Openverse", exc) from None
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

    def search(self, query: str, page: int, cursor: str | None = None) -> SearchPage:
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
                    width=as_int(item.get("width")),
                    height=as_int(item.get("height")),
                    mime=mime_type(filetype),
                    license=item.get("license"),
                    license_version=item.get("license_version"),
                    license_url=item.get("license_url"),
                    creator=item.get("creator"),
                    creator_url=item.get("creator_url"),
                    attribution=item.get("attribution"),
                    source=item.get("source") or item.get("provider"),
                )
            )
        page_count = as_int(answer.get("page_count")) or 0
        # A short page (counted as sent: a result without a URL does not end the query) is the last.
        last = page >= page_count or len(items) < self.page_size
        # Openverse filters by licence itself; a photo it sends outside the filter is still dropped.
        kept, skipped = keep_allowed(results, self._licenses.split(","))
        return SearchPage(kept, last=last, skipped=skipped)

    def secrets(self) -> list[str]:
        return [s for s in (self.client_secret, self._token) if s]
