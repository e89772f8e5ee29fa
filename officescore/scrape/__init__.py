"""Licensed image collection: providers, quota ledger, downloader, dedup, manifest, export.

from officescore.scrape import ScrapeConfig, scrape
result = scrape(ScrapeConfig(queries=["well lit home office"], provider="openverse"))
"""

from officescore.scrape.download import DownloadConfig
from officescore.scrape.export import ExportResult, export
from officescore.scrape.providers import (
    GoogleProvider,
    ImageProvider,
    OpenverseProvider,
    SearchPage,
    SearchResult,
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
    "DownloadConfig",
    "ExportResult",
    "GoogleProvider",
    "ImageProvider",
    "OpenverseProvider",
    "ScrapeConfig",
    "ScrapeResult",
    "ScrapeStatus",
    "SearchPage",
    "SearchResult",
    "default_queries",
    "export",
    "read_queries",
    "scrape",
    "secrets_from_environment",
    "status",
]
