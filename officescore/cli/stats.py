"""`officescore stats`: the health report of a data set (also printed by `ingest`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from officescore.cli.common import console, err_console, print_json, said_when_stopped
from officescore.config import DEFAULT_DATASET_DIR

if TYPE_CHECKING:
    from officescore.ingest.health import HealthReport

EXAMPLES = """
[bold]Examples[/bold]
  officescore stats                      # data/dataset
  officescore stats demo/dataset --json
"""

TERMINAL_PROBLEM_LINES = 30


def render_health(report: HealthReport) -> None:
    """Rich tables: per-class balance and sizes, per-split summary, duplicates, problem counts."""
    splits = list(report.splits)
    classes = Table(title=Text(f"Data set {report.dataset}"), title_justify="left")
    classes.add_column("class", no_wrap=True)
    for split in splits:
        classes.add_column(f"{split}\nimages", justify="right")
        classes.add_column(f"{split}\nobjects", justify="right")
    for bucket in ("small", "medium", "large"):
        classes.add_column(f"size\n{bucket}", justify="right")
    for name in report.classes:
        row: list[str | Text] = [Text(name)]
        for split in splits:
            stats = report.splits[split]
            images, instances = stats.images_per_class[name], stats.instances_per_class[name]
            style = "red" if instances == 0 else ""  # nothing to learn from, or to measure
            row += [str(images), f"[{style}]{instances}[/{style}]" if style else str(instances)]
        row += [str(report.sizes[name][b]) for b in ("small", "medium", "large")]
        classes.add_row(*row)
    console.print(classes)
    if report.classes_without_objects:
        console.print(
            f"[yellow]no objects of[/yellow] {escape(', '.join(report.classes_without_objects))} in any "
            "split: "
            "a model trained on this data set learns them as never there; label some, or leave them "
            "out of `ingest --classes`",
            soft_wrap=True,
        )

    summary = Table(title="Splits", title_justify="left")
    for column in ("split", "images", "objects", "crowd", "no objects", "objects/image min/mean/max"):
        summary.add_column(column, justify="left" if column == "split" else "right")
    for split in splits:
        stats = report.splits[split]
        per = stats.instances_per_image
        summary.add_row(
            split,
            str(stats.images),
            str(stats.instances),
            str(stats.crowd),
            str(stats.images_without_annotations),
            f"{per['min']:g} / {per['mean']:.2f} / {per['max']:g}",
        )
    console.print(summary)

    if report.attributes:
        table = Table(title="Attributes (labelled values per split)", title_justify="left")
        for column in ("class", "attribute", *splits):
            table.add_column(column, justify="left")
        for class_name, per_attribute in report.attributes.items():
            for name, per_split in per_attribute.items():
                cells = [
                    ", ".join(f"{value} {n}" for value, n in per_split.get(split, {}).items())
                    for split in splits
                ]
                table.add_row(Text(class_name), Text(name), *(Text(cell) for cell in cells))
        console.print(table)

    dropped = report.dropped
    console.print(
        Text(
            f"duplicate groups: {len(report.duplicate_groups)}"
            + "".join(f"\n  {', '.join(group)}" for group in report.duplicate_groups[:10])
            + (
                f"\n  ... {len(report.duplicate_groups) - 10} more"
                if len(report.duplicate_groups) > 10
                else ""
            )
        )
    )
    console.print(
        f"dropped at ingest: {dropped.get('images', 0)} image(s), "
        f"{dropped.get('annotations', 0)} annotation(s)"
    )
    if report.problems_by_kind:
        problems = Table(title=f"Problems ({report.problem_count})", title_justify="left")
        problems.add_column("kind")
        problems.add_column("count", justify="right")
        for kind, count in report.problems_by_kind.items():
            problems.add_row(kind, str(count))
        console.print(problems)
    else:
        console.print("problems: none")


def render_problem_list(problems: list[dict[str, Any]], dataset: Path) -> None:
    """Each problem on one line; cut to TERMINAL_PROBLEM_LINES on a terminal, all of them otherwise."""
    if not problems:
        return
    limit = TERMINAL_PROBLEM_LINES if console.is_terminal else len(problems)
    table = Table(title="Problems found and what was done", title_justify="left")
    for column in ("image", "annotation", "what", "action"):
        table.add_column(column, overflow="fold")
    for problem in problems[:limit]:
        cells = (problem["image"] or "-", problem["annotation"] or "-", problem["what"], problem["action"])
        table.add_row(*(Text(str(cell)) for cell in cells))
    console.print(table)
    if len(problems) > limit:
        console.print(Text(f"{len(problems) - limit} more in {dataset / 'dataset.json'}"))


def stats(
    dataset: Path = typer.Argument(
        DEFAULT_DATASET_DIR, help="Data-set folder written by `officescore ingest`."
    ),
    plot: bool = typer.Option(True, "--plot/--no-plot", help="Also (re)write health.png in the data set."),
    json_output: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
) -> None:
    """Health report of a data set: class balance per split, sizes, empties, duplicates, problems."""
    from officescore.ingest.health import health_report

    # health.png is written whole or not at all (atomic), so it is either as it was or the new one
    written = f"{dataset / 'health.png'} is as it was, or rewritten whole" if plot else "nothing written"
    with said_when_stopped(written):
        report = health_report(dataset)
        png = _plot(report, dataset / "health.png") if plot else None
    if json_output:
        print_json({**report.to_dict(), "plot": str(png) if png else None})
        return
    render_health(report)
    if png:
        console.print(Text(f"plot: {png}"))


def _plot(report: HealthReport, path: Path) -> Path | None:
    """health.png, or None with a warning on stderr: a data set we may not write (a read-only
    mount, another user's) still gets its report."""
    from officescore.ingest.health import save_health_plot

    try:
        return save_health_plot(report, path)
    except OSError as exc:
        why = exc.strerror or str(exc)
        err_console.print(
            Text(f"warning: {path} not written ({why}); --no-plot leaves it out", style="yellow"),
            soft_wrap=True,
        )
        return None


def register(app: typer.Typer) -> None:
    app.command("stats", epilog=EXAMPLES)(stats)
