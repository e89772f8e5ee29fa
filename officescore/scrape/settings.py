"""What a scrape is asked to do: `ScrapeConfig`, keys from the environment, and which provider.

`choose_provider` is the whole of `--provider auto`: Google when a key and engine id are set, the
date is before 2027-01-01 and this folder's manifest holds no closure answer from Google;
otherwise Openverse, with one notice line saying why. It makes no call, so `--status` can say
which provider the next run will search.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import tzinfo
from pathlib import Path
from urllib.parse import urlsplit

from officescore.config import DEFAULT_RAW_DIR, load_config, provider_quotas, secret
from officescore.errors import ConfigError
from officescore.scrape import quota as clock
from officescore.scrape.dedup import DEFAULT_NEAR_DUP_THRESHOLD
from officescore.scrape.download import DownloadConfig
from officescore.scrape.manifest import Manifest
from officescore.scrape.providers import (
    DEFAULT_RIGHTS,
    GOOGLE_CLOSED,
    GOOGLE_CLOSING_NOTICE,
    PROVIDER_CLASSES,
    FlickrProvider,
    GoogleProvider,
    ImageProvider,
    OpenverseProvider,
    ProviderClosedError,
    UnsplashProvider,
    WikimediaProvider,
    allowed_licenses,
    google_closed,
)

# Each provider's quota day, by name: --status reports providers it has no keys to build.
QUOTA_ZONES: dict[str, tzinfo] = {name: cls.quota_tz for name, cls in PROVIDER_CLASSES.items()}
AUTO = "auto"
PROVIDERS = (AUTO, *PROVIDER_CLASSES)
FALLBACK = "openverse"  # what auto searches without Google: no key needed, licence per image
CLOSED_KEY = "closed:{}"  # meta key: the provider answered that it is closed for good


def default_queries() -> list[str]:
    """The package's default search terms (officescore/data/queries.txt)."""
    return read_queries(Path(__file__).resolve().parent.parent / "data" / "queries.txt")


def read_queries(path: Path) -> list[str]:
    """One query per line; blank lines and lines starting with # are ignored."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")  # a byte-order mark (Notepad) is no text
    except OSError as exc:
        raise ConfigError(f"cannot read queries file {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not a UTF-8 text file (one query per line)") from None
    queries = [line.strip() for line in text.splitlines()]
    queries = [q for q in queries if q and not q.startswith("#")]
    if not queries:
        raise ConfigError(f"{path} holds no queries (one per line; # starts a comment)")
    return list(dict.fromkeys(queries))


@dataclass
class ScrapeConfig:
    queries: list[str]
    provider: str = AUTO
    per_query: int = 100
    # --daily-quota / --hourly-quota, for the provider the command searches (auto: its pick at the
    # start). None: its [scrape.<name>] quota, else its own default (Google's free tier: 100 a day;
    # Unsplash's demo key: 50 an hour).
    daily_quota: int | None = None
    hourly_quota: int | None = None
    # [scrape.<name>] daily-quota / hourly-quota from officescore.toml: {name: {"daily_quota": n}}
    provider_quotas: dict[str, dict[str, int]] = field(default_factory=dict)
    out: Path = DEFAULT_RAW_DIR
    rights: str = DEFAULT_RIGHTS
    safe: str = "active"
    img_size: str | None = None
    file_type: str | None = None
    # For the provider the run starts with (auto's pick); a mid-run fallback uses `endpoints`.
    api_endpoint: str | None = None
    near_dup_threshold: int = DEFAULT_NEAR_DUP_THRESHOLD
    api_retries: int = 2
    api_backoff: float = 2.0
    download: DownloadConfig = field(default_factory=DownloadConfig)
    google_key: str | None = field(default=None, repr=False)
    google_cx: str | None = field(default=None, repr=False)
    openverse_client_id: str | None = field(default=None, repr=False)
    openverse_client_secret: str | None = field(default=None, repr=False)
    unsplash_key: str | None = field(default=None, repr=False)
    flickr_key: str | None = field(default=None, repr=False)
    contact: str | None = None  # e-mail or URL for Wikimedia's User-Agent policy
    # Per provider, from OFFICESCORE_<NAME>_ENDPOINT: where auto's choice is sent.
    endpoints: dict[str, str] = field(default_factory=dict)
    wait_hours: bool = False  # sleep through a used-up hourly limit instead of stopping
    # True when `queries` is the package's default list rather than the user's -q / --queries.
    default_query_list: bool = False

    def validate(self) -> None:
        if self.provider not in PROVIDERS:
            raise ConfigError(f"--provider must be one of {', '.join(PROVIDERS)}, not {self.provider!r}")
        if not self.queries:
            raise ConfigError("no queries: give -q QUERY, --queries FILE, or neither for the default list")
        if any(not query.strip() for query in self.queries):
            # An empty search is a search for anything: it would spend the quota on random photos.
            raise ConfigError("-q: a query is empty; give words to search for (an unset shell variable?)")
        # Here for every provider: Google is sent --rights as it is, so a misspelt name, or none at
        # all, would search without a licence filter.
        if not allowed_licenses(self.rights):
            raise ConfigError(f"--rights is empty; give one or more of {DEFAULT_RIGHTS}, |-separated")
        if self.per_query < 1:
            raise ConfigError("--per-query must be at least 1")
        if (self.daily_quota is not None and self.daily_quota < 0) or (
            self.hourly_quota is not None and self.hourly_quota < 0
        ):
            raise ConfigError("--daily-quota and --hourly-quota must be 0 or more")
        for endpoint in (self.api_endpoint, *self.endpoints.values()):
            if endpoint is None:
                continue
            parts = urlsplit(endpoint)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ConfigError(
                    f"--api-endpoint must be an http(s) URL like https://api.example.org/, not {endpoint!r}"
                )
        clock.now()  # a malformed OFFICESCORE_NOW fails here, before anything is opened
        if self.near_dup_threshold < 0 or self.near_dup_threshold > 64:
            raise ConfigError("--near-dup-threshold must be between 0 and 64 (bits of a 64-bit phash)")
        d = self.download
        if d.workers < 1 or d.per_host < 1:
            raise ConfigError("--workers and --per-host must be at least 1")
        if d.max_bytes < 1 or d.min_width < 0 or d.min_height < 0:
            raise ConfigError("--max-bytes must be positive and --min-size not negative")
        if min(d.connect_timeout, d.read_timeout, d.total_timeout) <= 0:
            raise ConfigError("--timeout must be more than 0 seconds")
        if d.retries < 0 or self.api_retries < 0:
            raise ConfigError("--retries must be 0 or more")

    def limits(self, name: str, searched: str | None = None) -> tuple[int, int | None]:
        """(calls per quota day, calls per hour or None) for the provider called `name`: the flags
        where it is the provider the command searches (`searched`; None: whichever), else its
        [scrape.<name>] quotas, else its own defaults."""
        cls = PROVIDER_CLASSES.get(name)
        chosen = dict(self.provider_quotas.get(name, {}))
        if searched in (None, name):
            flags = {"daily_quota": self.daily_quota, "hourly_quota": self.hourly_quota}
            chosen.update({key: value for key, value in flags.items() if value is not None})
        set_daily, set_hourly = chosen.get("daily_quota"), chosen.get("hourly_quota")
        hourly = set_hourly if set_hourly is not None else (cls.hourly_limit if cls else None)
        daily = set_daily if set_daily is not None else (cls.daily_limit if cls else 100)
        # A day that is only 24 of the provider's hours (Unsplash, Flickr) follows a new hourly
        # limit: a production Unsplash key (--hourly-quota 5000) is not held to 1200 a day.
        derived = cls is not None and cls.hourly_limit and cls.daily_limit == 24 * cls.hourly_limit
        if set_daily is None and derived and hourly is not None:
            daily = 24 * hourly
        return daily, hourly


# ScrapeConfig's field -> its key in `config.SECRETS["scrape"]` (environment variable, toml key).
_SECRET_FIELDS = {
    "google_key": "gcs_developer_key",
    "google_cx": "gcs_cx",
    "openverse_client_id": "openverse_client_id",
    "openverse_client_secret": "openverse_client_secret",
    "unsplash_key": "unsplash_access_key",
    "flickr_key": "flickr_api_key",
}


def secrets_from_environment(config: ScrapeConfig) -> ScrapeConfig:
    """Fill in keys (and endpoints) from the environment / officescore.toml [scrape] where not given."""
    table = load_config()
    config.provider_quotas = config.provider_quotas or provider_quotas(table)
    for field_name, key in _SECRET_FIELDS.items():
        if not getattr(config, field_name):
            setattr(config, field_name, secret("scrape", key, table))
    config.contact = config.contact or os.environ.get("OFFICESCORE_CONTACT") or None
    for name in PROVIDER_CLASSES:
        value = os.environ.get(f"OFFICESCORE_{name.upper()}_ENDPOINT")
        if value and name not in config.endpoints:
            config.endpoints[name] = value
    if config.api_endpoint is None and config.provider != AUTO:
        config.api_endpoint = config.endpoints.get(config.provider)
    return config


def make_provider(config: ScrapeConfig, name: str | None = None, fallback: bool = False) -> ImageProvider:
    """The provider called `name` (default: the configured one, which must not be auto); a
    `fallback` (auto's switch away from a closed Google) does not get --api-endpoint."""
    name = name or config.provider
    endpoint = None if fallback else config.api_endpoint
    endpoint = endpoint or config.endpoints.get(name)
    if name == "google":
        return GoogleProvider(
            developer_key=config.google_key or "",
            cx=config.google_cx or "",
            endpoint=endpoint,
            rights_filter=config.rights,
            safe=config.safe,
            img_size=config.img_size,
            file_type=config.file_type,
        )
    if name == "wikimedia":
        return WikimediaProvider(endpoint=endpoint, rights_filter=config.rights, contact=config.contact)
    if name == "unsplash":
        return UnsplashProvider(
            access_key=config.unsplash_key or "", endpoint=endpoint, rights_filter=config.rights
        )
    if name == "flickr":
        return FlickrProvider(api_key=config.flickr_key or "", endpoint=endpoint, rights_filter=config.rights)
    if name != "openverse":
        raise ConfigError(f"no provider called {name!r}; use one of {', '.join(PROVIDERS)}")
    return OpenverseProvider(
        endpoint=endpoint,
        client_id=config.openverse_client_id,
        client_secret=config.openverse_client_secret,
        rights_filter=config.rights,
    )


def choose_provider(
    config: ScrapeConfig, manifest: Manifest | None = None, doing: str = "searching"
) -> tuple[str, list[str]]:
    """The provider a run uses and the notices that explain the choice (no network call).

    auto: Google when a key and engine id are set, the date is before 2027-01-01 and this folder's
    manifest has no closure answer from Google; otherwise Openverse. --provider google after the
    cut-off is a ProviderClosedError: no call could succeed. `doing` says what the fallback is for
    ("searching" in a run; `--status` searches nothing, it names the next run's provider).
    """
    when = clock.now()
    if config.provider == "google":
        if google_closed(when):
            raise ProviderClosedError(
                f"{GOOGLE_CLOSED}; use --provider auto, openverse, wikimedia, unsplash or flickr"
            )
        return "google", [GOOGLE_CLOSING_NOTICE]
    if config.provider != AUTO:
        return config.provider, []
    if google_closed(when):
        return FALLBACK, [f"{GOOGLE_CLOSED}: {doing} {FALLBACK} instead"]
    if not (config.google_key and config.google_cx):
        return FALLBACK, [f"no Google key and engine id (GCS_DEVELOPER_KEY, GCS_CX): {doing} {FALLBACK}"]
    closed = manifest.meta(CLOSED_KEY.format("google")) if manifest is not None else None
    if closed:
        return FALLBACK, [f"Google answered on {closed[:10]} that its API is closed: {doing} {FALLBACK}"]
    return "google", [GOOGLE_CLOSING_NOTICE]
