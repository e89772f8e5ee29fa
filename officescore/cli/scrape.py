"""`officescore scrape`: collect licensed home-office photos into data/raw/."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.text import Text

from officescore.cli.common import console, err_console, print_json, reporter
from officescore.config import DEFAULT_RAW_DIR

if TYPE_CHECKING:
    from officescore.scrape import ScrapeConfig

EXAMPLES = """
[bold]Examples[/bold]
  officescore scrape                              # default queries; auto: Google if keyed, else Openverse
  officescore scrape -q "well lit home office" --per-query 30
  officescore scrape --provider wikimedia --contact you@example.org --queries my_queries.txt
  UNSPLASH_ACCESS_KEY=... officescore scrape --provider unsplash --wait-hours  # 50 calls an hour
  FLICKR_API_KEY=... officescore scrape --provider flickr --rights 'cc_publicdomain|cc_attribute'
  officescore scrape --status                     # per-query progress, today's and this hour's quota
  officescore scrape --export data/labelling      # manifest.csv, ATTRIBUTION.md, images.txt

Run the same command again to continue where it stopped (same query, same page). When the day's
or the hour's quota is used up it stops cleanly with exit code 0 and says when it can continue.
Google's Custom Search JSON API is off for everyone from 2027-01-01: auto then uses Openverse.
"""

# the library's default (scrape.providers.base), spelled out so that --help need not import it
DEFAULT_RIGHTS = "cc_publicdomain|cc_attribute|cc_sharealike|cc_noncommercial|cc_nonderived"


def scrape(
    query: list[str] = typer.Option(None, "--query", "-q", help="A search query (repeatable)."),
    queries: Path = typer.Option(
        None, "--queries", help="File with one query per line; a line starting with # is a comment."
    ),
    provider: str = typer.Option(
        "auto",
        "--provider",
        help="auto, google, openverse, wikimedia, unsplash or flickr (see docs/scrape.md).",
    ),
    per_query: int = typer.Option(
        100, "--per-query", "-n", help="Results wanted per query, in whole pages (Google stops at 99)."
    ),
    daily_quota: int = typer.Option(
        None,
        "--daily-quota",
        help="API calls per quota day for the provider this run searches (default: its "
        "[scrape.<provider>] daily-quota, else its own, google 100).",
    ),
    hourly_quota: int = typer.Option(
        None,
        "--hourly-quota",
        help="API calls per clock hour for the provider this run searches (default: its "
        "[scrape.<provider>] hourly-quota, else its own, unsplash 50).",
    ),
    out: Path = typer.Option(DEFAULT_RAW_DIR, "--out", "-o", help="Folder for images/ and manifest.sqlite."),
    rights: str = typer.Option(DEFAULT_RIGHTS, "--rights", help="Usage-rights filter, |-separated."),
    safe: str = typer.Option("active", "--safe", help="SafeSearch: active or off (google)."),
    img_size: str = typer.Option(None, "--img-size", help="icon..huge, e.g. large (google)."),
    file_type: str = typer.Option(None, "--file-type", help="jpg, png, ... (google)."),
    api_endpoint: str = typer.Option(
        None, "--api-endpoint", help="Search API base URL (tests, proxies); env OFFICESCORE_*_ENDPOINT."
    ),
    wait_hours: bool = typer.Option(
        False, "--wait-hours", help="When an hourly limit is used up, sleep to the next hour and go on."
    ),
    contact: str = typer.Option(
        None, "--contact", help="Your e-mail or URL, sent in the User-Agent (Wikimedia asks for it)."
    ),
    workers: int = typer.Option(16, "--workers", help="Concurrent downloads."),
    per_host: int = typer.Option(8, "--per-host", help="Concurrent downloads per host."),
    timeout: float = typer.Option(
        15.0,
        "--timeout",
        help="Read timeout per download, seconds. A photo still arriving after 4 times this (60 s at "
        "least) is cut off only if it came slower than 32 KiB/s on average.",
    ),
    retries: int = typer.Option(
        2, "--retries", help="Retries after timeouts, 5xx and 429 (never other 4xx)."
    ),
    max_bytes: int = typer.Option(20 * 1024 * 1024, "--max-bytes", help="Largest download in bytes."),
    min_size: int = typer.Option(256, "--min-size", help="Smallest width and height kept, pixels."),
    near_dup: int = typer.Option(
        10, "--near-dup-threshold", help="phash Hamming distance (0-64) counted as a near-duplicate."
    ),
    allow_private_hosts: bool = typer.Option(
        False, "--allow-private-hosts", help="Allow image URLs on private/loopback addresses."
    ),
    show_status: bool = typer.Option(False, "--status", help="Print progress and quota; fetch nothing."),
    export_dir: Path = typer.Option(None, "--export", help="Write manifest.csv, ATTRIBUTION.md, images.txt."),
    json_output: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
) -> None:
    """Download licensed photos from Openverse, Wikimedia, Unsplash, Flickr or Google within quota.

    Resumable: run it again to go on where it stopped (the same pages are never paid twice)."""
    from officescore.errors import ConfigError
    from officescore.scrape import (
        DownloadConfig,
        ScrapeConfig,
        default_queries,
        read_queries,
        secrets_from_environment,
    )
    from officescore.scrape.download import total_timeout_for

    if show_status and export_dir is not None:
        raise ConfigError("--status and --export are separate actions; give one of them")
    chosen = [q.strip() for q in query or []]  # read like --queries lines: " desk" is "desk"
    if queries is not None:
        chosen += read_queries(queries)
    config = ScrapeConfig(
        queries=list(dict.fromkeys(chosen)) or default_queries(),
        default_query_list=not chosen,
        provider=provider,
        per_query=per_query,
        daily_quota=daily_quota,
        hourly_quota=hourly_quota,
        wait_hours=wait_hours,
        out=out,
        rights=rights,
        safe=safe,
        img_size=img_size,
        file_type=file_type,
        api_endpoint=api_endpoint,
        contact=contact,
        near_dup_threshold=near_dup,
        download=DownloadConfig(
            workers=workers,
            per_host=per_host,
            read_timeout=timeout,
            total_timeout=total_timeout_for(timeout),
            retries=retries,
            max_bytes=max_bytes,
            min_width=min_size,
            min_height=min_size,
            allow_private_hosts=allow_private_hosts,
        ),
    )
    if export_dir is not None:
        _export(out, export_dir, json_output)
    elif show_status:
        _status(secrets_from_environment(config), json_output)
    else:
        _run(secrets_from_environment(config), json_output)


def _run(config: ScrapeConfig, json_output: bool) -> None:
    from officescore.scrape import scrape as run_scrape

    try:
        result = run_scrape(config, reporter=reporter(json_output))
    except KeyboardInterrupt:  # every page and photo is committed as it comes: nothing to undo
        err_console.print(
            Text(
                f"interrupted: what was saved is kept in {config.out}; "
                "run the same command again to continue",
                style="yellow",
            ),
            soft_wrap=True,
        )
        raise typer.Exit(130) from None
    if json_output:
        print_json(result.to_dict())
        return
    style = "green" if result.stop_reason == "done" else "yellow"
    console.print(Text(result.message, style=style), soft_wrap=True)
    if result.downloads:
        parts = ", ".join(f"{k} {v}" for k, v in sorted(result.downloads.items()))
        console.print(Text(f"downloads this run: {parts}"), soft_wrap=True)
    if result.retry_later:
        from officescore.scrape.manifest import MAX_ATTEMPTS

        console.print(
            f"{result.retry_later} photo(s) their host did not give (timeout, unavailable): the next run "
            f"tries them again, up to {MAX_ATTEMPTS} attempts each",
            soft_wrap=True,
        )
    if result.events_refused:  # Unsplash's guidelines want one per photo used: say which did not count
        said = (  # the provider's own words: Text, so that "[/x]" in them is not read as markup
            f"{result.provider} refused {len(result.events_refused)} download event(s), not sent again: "
            f"{result.events_refused[0]}"
        )
        console.print(Text(said, style="yellow"), soft_wrap=True)
    if result.events_waiting:  # "Done" above, but Unsplash is still owed these
        state = result.quota
        when = f" after {state.hour_text()}" if state.hour_exhausted else ""
        console.print(
            Text(
                f"{result.events_waiting} {result.provider} download event(s) not sent yet: run the same "
                f"command again{when} to send them (it sends them first)",
                style="yellow",
            ),
            soft_wrap=True,
        )
    console.print(Text(f"manifest: {result.out / 'manifest.sqlite'}"))


def _status(config: ScrapeConfig, json_output: bool) -> None:
    from rich.table import Table

    from officescore.scrape import status

    report = status(config)
    if json_output:
        print_json(report.to_dict())
        return
    providers = sorted({row["provider"] for row in report.queries})
    one = len(providers) == 1
    title = f"scrape progress in {report.out}" + (f" ({providers[0]})" if one else "")
    for notice in report.notices:
        console.print(Text(notice, style="yellow"), soft_wrap=True)
    columns = ["query", "pages", "found", "new", "ok", "dup", "bad", "todo", "done"]
    table = Table(
        title=Text(title),
        caption="found: results the pages returned; new: those not found before (ok + dup + bad + todo); "
        "dup: (near-)duplicates; bad: rejected; todo: not downloaded yet",
    )
    for column in columns if one else ["provider", *columns]:
        left = column in ("provider", "query")
        table.add_column(
            column,
            justify="left" if left else "right",
            min_width=(20 if one else 10) if column == "query" else None,
        )
    for row in report.queries:
        counts = row["by_status"]
        dup = counts.get("duplicate", 0) + counts.get("near_duplicate", 0)
        rejected = row["results"] - dup - counts.get("ok", 0) - counts.get("pending", 0)
        cells = [
            Text(row["query"]),
            str(row["pages"]),
            str(row["found"]),
            str(row["results"]),
            str(counts.get("ok", 0)),
            str(dup),
            str(rejected),
            str(counts.get("pending", 0)),
            "yes" if row["complete"] else "no",
        ]
        table.add_row(*(cells if one else [row["provider"], *cells]))
    console.print(table)
    for state in report.quota:
        word = "used up" if state.exhausted else f"{state.remaining} left"
        pause = f"; rate-limited until {state.retry_text()}" if state.retry_at else ""
        hour = ""
        if state.hour_limit is not None:
            left = "used up" if state.hour_exhausted else f"{state.hour_remaining} left"
            hour = (
                f"; hour {state.hour}: {state.hour_calls}/{state.hour_limit} calls, {left}, "
                f"next hour {state.hour_text()}"
            )
        console.print(
            f"quota {state.provider} {state.day}: {state.calls}/{state.limit} calls, {word}; "
            f"next day starts {state.resets_text()}{hour}{pause}",
            soft_wrap=True,
        )
    if report.download_events:
        parts = ", ".join(f"{k} {v}" for k, v in sorted(report.download_events.items()))
        console.print(f"download events (unsplash): {parts}", soft_wrap=True)
    if report.closed:  # the notice above says what to use instead
        console.print(f"next run searches: nothing ({report.provider} is closed)")
    else:
        console.print(f"next run searches: {report.provider}")


def _export(out: Path, folder: Path, json_output: bool) -> None:
    from officescore.scrape import export

    result = export(out, folder)
    if json_output:
        print_json(result.to_dict())
        return
    console.print(
        Text(
            f"exported {result.rows} manifest row(s), {result.kept} kept image(s): "
            f"{result.csv}, {result.attribution}, {result.image_list}"
        ),
        soft_wrap=True,
    )


def register(app: typer.Typer) -> None:
    app.command("scrape", epilog=EXAMPLES)(scrape)
