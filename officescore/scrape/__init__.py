"""Licensed image collection: providers, quota ledger, downloader, dedup, manifest, export.

from officescore.scrape import ScrapeConfig, scrape
result = scrape(ScrapeConfig(queries=["well lit home office"], provider="wikimedia"))

Providers: auto (default: Google while it lasts and is keyed, else Openverse), google, openverse,
wikimedia, unsplash, flickr; see docs/scrape.md.
"""

from officescore.scrape.download import DownloadConfig
from officescore.scrape.export import ExportResult, export
from officescore.scrape.providers import (
    PROVIDER_CLASSES,
    FlickrProvider,
    GoogleProvider,
    ImageProvider,
    OpenverseProvider,
    SearchPage,
    SearchResult,
    UnsplashProvider,
    WikimediaProvider,
)
from officescore.scrape.run import (
    ScrapeConfig,
    ScrapeResult,
    ScrapeStatus,
    default_queries,
    read_queries,
    scrape,
    secrets_from_environment,
    status,
)

__all__ = [
    "PROVIDER_CLASSES",
    "DownloadConfig",
    "ExportResult",
    "FlickrProvider",
    "GoogleProvider",
    "ImageProvider",
    "OpenverseProvider",
    "ScrapeConfig",
    "ScrapeResult",
    "ScrapeStatus",
    "SearchPage",
    "SearchResult",
    "UnsplashProvider",
    "WikimediaProvider",
    "default_queries",
    "export",
    "read_queries",
    "scrape",
    "secrets_from_environment",
    "status",
]
