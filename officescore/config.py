"""Defaults in one place, overridden by `officescore.toml` in the working directory, then by flags.

The TOML file has one table per command, keyed by option name (dashes or underscores):

    [train]
    epochs = 12
    arch = "maskrcnn_resnet18_fpn"
    log = "mlflow"            # auto | tensorboard | mlflow | none (docs/tracking.md)

    [scrape.google]           # one provider's quotas (see `provider_quotas`)
    daily-quota = 90

The CLI hands these tables to Click as its `default_map` (`officescore.cli.settings`, which refuses
a table or key that sets nothing), so a flag given on the command line always wins and `--help`
shows the effective default. [label] holds settings shared by the label subcommands (url, project,
...), and [label.push] etc. those of one.
"""

from __future__ import annotations

import difflib
import os
import sys
from pathlib import Path
from typing import Any

from officescore.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

CONFIG_FILE = "officescore.toml"
DEFAULT_DATASET_DIR = Path("data/dataset")
DEFAULT_RAW_DIR = Path("data/raw")
DEFAULT_RUNS_DIR = Path("runs")
MIN_IMG_SIZE = 64  # pixels: `train --img-size`, `label backend --train-img-size` (sample's smallest)


def config_path(cwd: Path | None = None) -> Path:
    """Where the config is read from: $OFFICESCORE_CONFIG, else ./officescore.toml."""
    env = os.environ.get("OFFICESCORE_CONFIG")
    if env:
        return Path(env)
    return (cwd or Path.cwd()) / CONFIG_FILE


def load_config(path: Path | None = None) -> dict[str, Any]:
    """Read the config file; a missing ./officescore.toml is an empty config; a broken file, or a
    $OFFICESCORE_CONFIG that names no file (a typo would silently drop every setting), a ConfigError."""
    if path is None:
        path = config_path()
        if os.environ.get("OFFICESCORE_CONFIG") and not path.exists():
            raise ConfigError(
                f"$OFFICESCORE_CONFIG {path}: no such file; fix the path, or unset it to read ./{CONFIG_FILE}"
            )
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8-sig"))  # a byte-order mark (Notepad) is no text
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}); fix or remove the file") from exc
    for section, table in data.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: '{section}' must be a table like [{section}], one per command")
    return data


# The secrets: `[section] key` in officescore.toml -> the environment variable that overrides it;
# read with `secret`, never handed to Click, never a flag (the one list: `cli/settings.py` skips these
# keys). The Label Studio key under [label], the image-search keys under [scrape].
SECRETS: dict[str, dict[str, str]] = {
    "label": {"api_key": "LABEL_STUDIO_API_KEY"},
    "scrape": {
        "gcs_developer_key": "GCS_DEVELOPER_KEY",
        "gcs_cx": "GCS_CX",
        "openverse_client_id": "OPENVERSE_CLIENT_ID",
        "openverse_client_secret": "OPENVERSE_CLIENT_SECRET",
        "unsplash_access_key": "UNSPLASH_ACCESS_KEY",
        "flickr_api_key": "FLICKR_API_KEY",
    },
}


def secret(section: str, key: str, config: dict[str, Any] | None = None) -> str | None:
    """A secret of `SECRETS` from its environment variable, else from `[section] key` in the config;
    never logged. A key not in `SECRETS` is a KeyError: it would be refused as a setting. Spaces and
    a newline around it (pasted with the key) are no part of it."""
    value = os.environ.get(SECRETS[section][key], "").strip()
    if value:
        return value
    table = (config if config is not None else load_config()).get(section, {})
    value = str(table.get(key) or table.get(key.replace("_", "-")) or "").strip()
    return value or None


# [scrape.<provider>] tables: that provider's quotas, read by `provider_quotas` rather than handed to
# Click (`--daily-quota` / `--hourly-quota` are for the provider the command searches). A flat
# `[scrape] daily-quota` is refused: it held for every provider, so the GUIDE's 90 meant for Google
# silently capped Commons (5000 a day) and Flickr at 90, and which provider it was meant for cannot
# be known.
SCRAPE_PROVIDERS = ("google", "openverse", "wikimedia", "unsplash", "flickr")
PROVIDER_QUOTA_KEYS = ("daily_quota", "hourly_quota")


def provider_quotas(config: dict[str, Any] | None = None) -> dict[str, dict[str, int]]:
    """{provider: {"daily_quota": n, "hourly_quota": n}} from the [scrape.<provider>] tables, keys
    with underscores; a misplaced, misspelt or non-numeric setting is a one-line ConfigError."""
    table = (config if config is not None else load_config()).get("scrape", {})
    quotas: dict[str, dict[str, int]] = {}
    for key, value in table.items():
        name = key.replace("-", "_")
        if not isinstance(value, dict):
            if name in PROVIDER_QUOTA_KEYS:
                raise ConfigError(
                    f"{config_path()}: [scrape] {key} is per provider now: write it under "
                    f"[scrape.google] (or the provider it is for), e.g. [scrape.google] {key} = {value!r}"
                )
            continue
        if key not in SCRAPE_PROVIDERS:
            close = difflib.get_close_matches(key, SCRAPE_PROVIDERS, n=1)
            hint = f"did you mean {close[0]}?" if close else f"these are: {', '.join(SCRAPE_PROVIDERS)}"
            raise ConfigError(f"{config_path()}: [scrape.{key}] is no provider ({hint})")
        quotas[key] = {_quota_key(key, k): _quota(key, k, v) for k, v in value.items()}
    return quotas


def _quota_key(provider: str, key: str) -> str:
    name = key.replace("-", "_")
    if name not in PROVIDER_QUOTA_KEYS:
        raise ConfigError(
            f"{config_path()}: [scrape.{provider}] {key} is no setting of a provider "
            "(these are: daily-quota, hourly-quota; the rest go under [scrape])"
        )
    return name


def _quota(provider: str, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(
            f"{config_path()}: [scrape.{provider}] {key} must be a whole number, 0 or more, not {value!r}"
        )
    return value
