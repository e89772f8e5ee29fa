"""Image search providers: one page of one query -> results with licence data and a quota cost.

One module per provider; `base` holds what they share (results, pages, errors, the --rights
vocabulary). `PROVIDER_CLASSES` is the registry the scraper builds from.

- google     Custom Search JSON API (key + engine id); off for everyone from 2027-01-01
- openverse  Openverse REST API (no key needed)
- wikimedia  Wikimedia Commons, MediaWiki API (no key)
- unsplash   Unsplash API (UNSPLASH_ACCESS_KEY)
- flickr     Flickr REST API (FLICKR_API_KEY)
"""

from __future__ import annotations

from officescore.scrape.providers.base import (
    DEFAULT_RIGHTS,
    MIME_SUBTYPES,
    RIGHTS_TO_LICENSES,
    RIGHTS_TO_OPENVERSE,
    HourExhausted,
    ImageProvider,
    ProviderClosedError,
    ProviderError,
    RateLimited,
    RequestNotSent,
    Scrubber,
    SearchPage,
    SearchResult,
    TransientError,
    allowed_licenses,
    keep_allowed,
    retry_after_seconds,
)
from officescore.scrape.providers.flickr import FLICKR_LICENSES, FlickrProvider
from officescore.scrape.providers.google import (
    GOOGLE_CAP,
    GOOGLE_CLOSED,
    GOOGLE_CLOSING_NOTICE,
    GOOGLE_CUTOFF,
    GOOGLE_DEFAULT_ENDPOINT,
    GOOGLE_PAGE,
    IMG_SIZES,
    SAFE_VALUES,
    GoogleProvider,
    classify_google_error,
    google_closed,
)
from officescore.scrape.providers.openverse import OPENVERSE_DEFAULT_ENDPOINT, OpenverseProvider
from officescore.scrape.providers.unsplash import UnsplashProvider
from officescore.scrape.providers.wikimedia import WikimediaProvider, commons_license

PROVIDER_CLASSES: dict[str, type] = {
    cls.name: cls
    for cls in (GoogleProvider, OpenverseProvider, WikimediaProvider, UnsplashProvider, FlickrProvider)
}

__all__ = [
    "DEFAULT_RIGHTS",
    "FLICKR_LICENSES",
    "GOOGLE_CAP",
    "GOOGLE_CLOSED",
    "GOOGLE_CLOSING_NOTICE",
    "GOOGLE_CUTOFF",
    "GOOGLE_DEFAULT_ENDPOINT",
    "GOOGLE_PAGE",
    "IMG_SIZES",
    "MIME_SUBTYPES",
    "OPENVERSE_DEFAULT_ENDPOINT",
    "PROVIDER_CLASSES",
    "RIGHTS_TO_LICENSES",
    "RIGHTS_TO_OPENVERSE",
    "SAFE_VALUES",
    "FlickrProvider",
    "GoogleProvider",
    "HourExhausted",
    "ImageProvider",
    "OpenverseProvider",
    "ProviderClosedError",
    "ProviderError",
    "RateLimited",
    "RequestNotSent",
    "Scrubber",
    "SearchPage",
    "SearchResult",
    "TransientError",
    "UnsplashProvider",
    "WikimediaProvider",
    "allowed_licenses",
    "classify_google_error",
    "commons_license",
    "google_closed",
    "keep_allowed",
    "retry_after_seconds",
]
