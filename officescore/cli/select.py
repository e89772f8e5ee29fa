"""`officescore select`: rank unlabelled photos for labelling next (uncertainty + diversity)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from officescore.cli.common import console, print_json, reporter, said_when_stopped
from officescore.config import DEFAULT_RUNS_DIR

if TYPE_CHECKING:
    from officescore.curate.select import SelectRun

EXAMPLES = """
[bold]Examples[/bold]

  officescore select data/raw --model runs/train/train/weights/best.pt --budget 50 --labelled data/dataset

  officescore select photos/ --model best.pt --budget 20 --out next/next.csv --uncertainty entropy

  officescore select photos/ --budget 20 --strategy random --seed 3           # the baseline

  officescore select data/raw --model best.pt --budget 50 --labelstudio next_tasks.json   # pre-annotated

Writes the CSV (default runs/select/NAME/next.csv) and images.txt beside it, best photo first.
A photo within 10 perceptual-hash bits of a labelled photo (or of an earlier pick) is never chosen.
"""


def select(
    pool: list[str] = typer.Argument(..., help="Unlabelled photos: folders, files, globs, or data/raw."),
    model: str = typer.Option(
        None,
        "--model",
        "-m",
        help="Checkpoint, run folder, TorchScript export or 'coco'; not needed for --strategy random.",
    ),
    budget: int = typer.Option(..., "--budget", "-n", help="How many photos to choose."),
    labelled: Path = typer.Option(
        None, "--labelled", help="Data set already labelled: its photos and near-copies are skipped."
    ),
    strategy: str = typer.Option("uncertainty", "--strategy", help="uncertainty (+ diversity) or random."),
    uncertainty: str = typer.Option("margin", "--uncertainty", help="Class uncertainty: margin or entropy."),
    out: Path = typer.Option(None, "--out", help="CSV to write (default runs/select/NAME/next.csv)."),
    name: str = typer.Option(
        "select", "--name", help="Run folder name under runs/select (never overwritten)."
    ),
    seed: int = typer.Option(0, "--seed", help="Random strategy: the draw."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or mps."),
    labelstudio: Path = typer.Option(
        None, "--labelstudio", help="Also write the chosen photos as Label Studio tasks with pre-annotations."
    ),
    json_output: bool = typer.Option(False, "--json", help="Print the chosen photos as JSON."),
) -> None:
    """Choose which photos to label next: uncertain, diverse, and not copies of labelled ones."""
    from officescore.curate.select import select as run_select
    from officescore.errors import ConfigError
    from officescore.files import check_output_file
    from officescore.runs import check_run_name, next_run_dir

    if budget < 1:
        raise ConfigError(f"--budget {budget}: must be 1 or more (how many photos to label next)")
    if strategy == "uncertainty" and not model:  # a mistyped --strategy is named first, by the library
        raise ConfigError(
            "--model: needed to rank by uncertainty (a .pt from train), or use --strategy random"
        )
    if out is not None:
        check_output_file(out, "--out")
    else:
        check_run_name(name)
    result = run_select(
        pool,
        model=model,
        budget=budget,
        labelled=labelled,
        strategy=strategy,
        uncertainty=uncertainty,
        out=out,
        device=device,
        seed=seed,
        labelstudio=labelstudio,
        reporter=reporter(json_output),
    )
    if out is None:  # the run folder only once there is something to put in it
        from officescore.curate.select import write_choices

        folder = next_run_dir(DEFAULT_RUNS_DIR / "select", name)
        result.csv, result.images_txt = write_choices(folder / "next.csv", result.chosen)
    if json_output:
        print_json(result.to_json())
        return
    _show(result)


def _show(run: SelectRun) -> None:
    for note in run.notes:
        console.print(f"[yellow]note:[/yellow] {escape(note)}")
    console.print(
        Text(
            f"{run.pool} photos in the pool, {len(run.excluded_near_duplicates)} near-copies of labelled "
            f"photos skipped, {len(run.unreadable)} unreadable; strategy {run.strategy}"
        )
    )
    if run.unreadable:  # a count alone leaves the user hunting for the broken files
        left_out = escape(", ".join(run.unreadable))  # paths as written: `[x]` in one is no markup
        console.print(f"[yellow]unreadable, left out:[/yellow] {left_out}", soft_wrap=True)
    table = Table()
    for col in ("#", "photo", "score", "uncertainty", "class unc.", "mask unc.", "distance", "objects"):
        # A path cut to `pool/ima…` names no photo: it wraps whole instead.
        photo = col == "photo"
        table.add_column(col, justify="left" if photo else "right", overflow="fold" if photo else "ellipsis")
    for c in run.chosen[:30]:
        table.add_row(
            str(c.rank), Text(str(c.path)), f"{c.score:.3f}", f"{c.uncertainty:.3f}",
            f"{c.class_uncertainty:.3f}", f"{c.mask_uncertainty:.3f}", f"{c.distance:.3f}", str(c.detections),
        )  # fmt: skip
    console.print(table)
    written, listed = escape(str(run.csv)), escape(str(run.images_txt))
    console.print(f"wrote [bold]{written}[/bold] and {listed} in {run.seconds:.1f}s")
    if run.tasks is not None:
        console.print(f"Label Studio tasks with pre-annotations: [bold]{escape(str(run.tasks))}[/bold]")


def register(app: typer.Typer) -> None:
    app.command("select", epilog=EXAMPLES)(said_when_stopped()(select))
