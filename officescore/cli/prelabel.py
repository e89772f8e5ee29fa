"""`officescore prelabel`: a model's detections as pre-annotations (COCO or a Label Studio tasks file)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.text import Text

from officescore.cli.common import (
    CALIBRATION_HELP,
    PRECISION_HELP,
    SUGGEST_CONF_HELP,
    console,
    err_console,
    note_skipped_photos,
    print_json,
    reporter,
    said_when_stopped,
    skipped_json,
)

EXAMPLES = """
[bold]Examples[/bold]

  officescore prelabel data/raw --model runs/train --format coco --out prelabel.json

  officescore prelabel photos/ --model best.pt --format labelstudio --out tasks.json --url-prefix http://files.local/photos

  officescore prelabel 'new/*.jpg' --model coco --conf 0.4 --format labelstudio --mask brush --out tasks.json

COCO output imports as pre-annotations into CVAT ("COCO 1.0"), Roboflow and Hasty, and into
`officescore ingest prelabel.json --images <image root>`. Label Studio output comes with its
labelling config (tasks.label_config.xml); import both, or use `officescore label push`.
"""


def prelabel(
    images: list[str] = typer.Argument(..., help="Photos, folders, globs or a scrape folder (data/raw)."),
    model: str = typer.Option(
        None,
        "--model",
        "-m",
        help="Checkpoint, run folder, runs/train, export or 'coco'. Default: newest best.pt, else coco.",
    ),
    out: Path = typer.Option(..., "--out", "-o", help="The file to write (.json)."),
    fmt: str = typer.Option("coco", "--format", "-f", help="coco or labelstudio."),
    conf: float = typer.Option(
        None,
        "--conf",
        help=SUGGEST_CONF_HELP,
    ),
    mask: str = typer.Option(
        "polygon", "--mask", help="polygon (editable outline) or brush (exact mask: LS brush / COCO RLE)."
    ),
    image_root: Path = typer.Option(
        None,
        "--image-root",
        help="Image paths are written relative to this folder (default: the photos' common folder).",
    ),
    url_prefix: str = typer.Option(
        None,
        "--url-prefix",
        help="labelstudio: data.image = PREFIX/<path>; default: Label Studio local files.",
    ),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or mps."),
    batch_size: int = typer.Option(2, "--batch-size", "-b", help="Photos per forward pass."),
    img_size: int = typer.Option(
        None, "--img-size", help="Longest image side fed to the model (default: the model's)."
    ),
    precision: str = typer.Option("auto", "--precision", help=PRECISION_HELP),
    calibration: list[str] = typer.Option(
        None, "--calibration", help=CALIBRATION_HELP + " Default: the photos being pre-labelled."
    ),
    json_output: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
) -> None:
    """Pre-label photos with a model: a COCO file (CVAT, Roboflow, Hasty) or Label Studio tasks."""
    from officescore.errors import BadImageError, ConfigError
    from officescore.infer import default_model_source
    from officescore.label.predict import load_predictor, threshold_record, threshold_words
    from officescore.label.prelabel import check_options
    from officescore.label.prelabel import prelabel as run_prelabel
    from officescore.label.sources import gather_images

    if conf is not None and not 0.0 <= conf <= 1.0:
        raise ConfigError(f"--conf {conf}: must be between 0 and 1")
    check_options(fmt, mask, out)  # before the model loads
    gathered = gather_images(images)  # a missing photo too; the scrape manifest read once
    loaded = load_predictor(
        model or default_model_source(), device, conf, img_size, precision, calibration or images
    )
    result = run_prelabel(
        gathered.images,
        loaded,
        out,
        fmt,
        conf=conf,
        mask=mask,
        image_root=image_root,
        url_prefix=url_prefix,
        batch_size=batch_size,
        reporter=reporter(json_output),
    )
    threshold = threshold_record(loaded)
    if json_output:
        print_json({**result.to_dict(), "threshold": threshold, **skipped_json(gathered)})
    else:
        note_skipped_photos(gathered)
        extra = f" and {result.config}" if result.config else ""
        by = f"{result.model_version} ({threshold_words(loaded)})"
        console.print(
            f"[green]wrote[/green] {escape(str(result.out) + extra)}: "
            f"{result.detections} detection(s) on {result.images} photo(s) by {escape(by)}",
            soft_wrap=True,
        )
    for failed in result.failed:
        err_console.print(Text(f"error: {failed['error']}", style="red"), soft_wrap=True)
    if result.failed:
        raise BadImageError(
            f"{len(result.failed)} photo(s) could not be read (listed above); the others were written"
        )


def register(app: typer.Typer) -> None:
    app.command("prelabel", epilog=EXAMPLES)(said_when_stopped()(prelabel))
