"""`officescore sample`: synthetic home-office scenes with exact masks, as a COCO export."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from officescore.cli.common import console, print_json, reporter, said_when_stopped

EXAMPLES = """
[bold]Examples[/bold]

  officescore sample data/sample                      # 200 scenes, 512 px

  officescore sample demo/sample --images 50 --size 256 --seed 3

  officescore sample /tmp/s -n 5 --json               # summary as JSON

  officescore sample data/leaves --plant-mask leaves  # plants labelled without their pots (same photos)
"""


def sample(
    out: Path = typer.Argument(..., help="Folder to write images/ and annotations.json into."),
    images: int = typer.Option(200, "--images", "-n", help="How many scenes to render."),
    seed: int = typer.Option(0, "--seed", help="Random seed: same seed and options, same bytes."),
    size: int = typer.Option(512, "--size", help="Image width and height in pixels (at least 64)."),
    plant_mask: str = typer.Option(
        "whole", "--plant-mask", help="Label convention for plants: whole (with the pot) or leaves."
    ),
    desk_mask: str = typer.Option(
        "whole", "--desk-mask", help="Label convention for desks: whole (with legs and drawers) or top."
    ),
    json_output: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
) -> None:
    """Render synthetic home-office scenes with exact masks as a COCO export."""
    from officescore.sample import write_sample

    written = f"{out / 'annotations.json'} not written, {out / 'images'} holds part of the scenes"
    with said_when_stopped(f"{written}: run the same command again"):
        result = write_sample(
            out,
            n_images=images,
            seed=seed,
            size=size,
            reporter=reporter(json_output),
            masks={"plant": plant_mask, "desk": desk_mask},
        )
    if json_output:
        print_json(result.to_dict())
        return
    table = Table(title=f"{result.images} scenes, {result.annotations} objects", title_justify="left")
    table.add_column("class")
    table.add_column("instances", justify="right")
    for name, count in result.per_class.items():
        table.add_row(Text(name), str(count))
    console.print(table)
    console.print(
        f"masks: {result.polygons} polygons, {result.rles} RLE · {result.size}px · seed {result.seed} "
        f"· {result.seconds:.1f}s"
    )
    written, images = escape(str(result.annotation_file)), escape(str(result.images_dir))
    console.print(f"wrote [bold]{written}[/bold] and {images}/")


def register(app: typer.Typer) -> None:
    app.command("sample", epilog=EXAMPLES)(sample)
