"""`officescore score`: detect office objects in photos and score how well equipped each office is."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from officescore.cli.common import (
    CALIBRATION_HELP,
    PRECISION_HELP,
    console,
    err_console,
    print_json,
    reporter,
    warn_rubric_reach,
)

if TYPE_CHECKING:
    from officescore.images import ImageInput
    from officescore.infer import PhotoScore, ScoringStopped

EXAMPLES = """
[bold]Examples[/bold]

  officescore score office.jpg                 # model: newest runs/train/*/weights/best.pt, else coco

  officescore score photos/ --model runs/train/train/weights/best.pt --save-dir runs/score

  officescore score 'shots/*.jpg' --csv scores.csv

  officescore score office.jpg --model coco --conf 0.4 --json

  torchrun --nproc_per_node 4 -m officescore score photos/ --csv scores.csv   # each process scores a
                                                 # shard (one GPU each, or CPU); rank 0 writes the CSV

  officescore score photos/ --precision fp32    # exact: eager torchvision's detections

Exit code 2 when any photo could not be read (the others are still scored). Ctrl-C writes and
shows the photos scored so far (--json with "partial": true) and exits 130.
"""


def score(
    photos: list[str] = typer.Argument(..., help="Photos, folders or globs ('shots/*.jpg')."),
    model: str = typer.Option(
        None,
        "--model",
        "-m",
        help="Checkpoint, run folder, TorchScript export, or 'coco'. Default: newest best.pt, else coco.",
    ),
    rubric: Path = typer.Option(None, "--rubric", help="Rubric TOML (default: the packaged rubric)."),
    conf: float = typer.Option(0.5, "--conf", help="Keep detections with at least this score (0-1)."),
    save_dir: Path = typer.Option(None, "--save-dir", help="Write annotated images here."),
    json_output: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
    csv_file: Path = typer.Option(None, "--csv", help="Also write one row per photo to this CSV file."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or mps."),
    batch_size: int = typer.Option(
        None, "--batch-size", "-b", help="Photos per forward pass (default: 2 on CPU, 8 on a GPU)."
    ),
    precision: str = typer.Option("auto", "--precision", help=PRECISION_HELP),
    calibration: list[str] = typer.Option(
        None, "--calibration", help=CALIBRATION_HELP + " Default: the photos being scored."
    ),
    img_size: int = typer.Option(
        None, "--img-size", help="Longest image side fed to the model, as in train (default: the model's)."
    ),
) -> None:
    """Detect office objects in photos and score each office from 0 to 100 with a breakdown."""
    from officescore.errors import BadImageError, ConfigError
    from officescore.files import check_output_dir, check_output_file
    from officescore.infer import (
        Predictor,
        ScoringStopped,
        expand_inputs,
        model_source,
        score_photos,
        write_csv,
    )
    from officescore.infer.score import Rubric

    if not 0.0 <= conf <= 1.0:
        raise ConfigError(f"--conf {conf}: must be between 0 and 1")
    if batch_size is not None and batch_size < 1:
        raise ConfigError(f"--batch-size {batch_size}: must be 1 or more")
    rules = Rubric.load(rubric)  # a bad rubric fails before the model loads
    if csv_file is not None:  # so do outputs that could not be written, before any inference
        check_output_file(csv_file, "--csv")
    if save_dir is not None:
        check_output_dir(save_dir, "--save-dir")
    items = expand_inputs(photos)
    if save_dir is not None and items:
        items = _without_drawings(items, photos, save_dir)
        if not items:
            raise BadImageError(
                f"no photos found outside --save-dir {save_dir} (the photos in it are drawings, not scored)"
            )
    if not items:  # e.g. an empty folder: say so before loading a model
        raise BadImageError(f"no photos found in {', '.join(photos)}; pass image files, folders or globs")
    # All mistyped: say so before loading (or downloading) a model.
    if not any(Path(p).exists() for p in items):
        missing = ", ".join(map(str, items[:3])) + (f" and {len(items) - 3} more" if len(items) > 3 else "")
        raise BadImageError(f"no such photo: {missing}; pass image files, folders or globs")
    if csv_file is not None and csv_file.resolve() in {Path(p).resolve() for p in items}:
        # A slip such as `--csv office.jpg` would replace the photo with the table.
        raise ConfigError(f"--csv {csv_file}: is one of the photos being scored; give a .csv file name")
    source = model_source(model)  # a run folder: its best.pt, named in what score prints
    from officescore import distributed  # torch: imported once the cheap checks passed
    from officescore.devices import resolve_device
    from officescore.progress import SILENT

    ctx = distributed.init(resolve_device(device))  # a no-op unless started by torchrun
    stopped: ScoringStopped | None = None
    try:
        # Under torchrun each rank drives its own GPU (distributed.init selected it).
        predictor = Predictor.load(
            source, device, conf, img_size, precision, calibration=calibration or items
        )
        if not json_output and ctx.is_main:  # say which model scored: the default is picked, not given
            used = f"model: {source} ({predictor.kind}, {predictor.precision})"
            console.print(Text(used, style="dim"))
        if ctx.is_main:
            warn_rubric_reach(rules, predictor.classes, predictor.attributes)
        results = score_photos(
            predictor,
            items,
            rules,
            conf=conf,
            batch_size=batch_size,
            save_dir=save_dir,
            reporter=reporter(json_output) if ctx.is_main else SILENT,
            ctx=ctx,
        )
    except ScoringStopped as stop:  # Ctrl-C: what was scored so far is still written and shown
        results, stopped = stop.done, stop
    finally:
        distributed.shutdown()
    if not ctx.is_main:  # rank 0 alone prints and writes
        return
    if csv_file is not None and results:
        write_csv(csv_file, results)
    failed = [r for r in results if not r.result.ok]
    if json_output:
        print_json(
            {
                "model": str(source),
                "kind": predictor.kind,
                "precision": predictor.precision,
                "conf": conf,
                "rubric": rules.name,
                "photos": [r.to_dict() for r in results],
                "failed": len(failed),
                **({"partial": True} if stopped else {}),
            }
        )
    elif len(results) == 1 and not failed and not stopped:
        _show_one(results[0])
    elif results:
        _show_many(results)
    for photo in failed:
        err_console.print(Text(f"error: {photo.result.error}", style="red"), soft_wrap=True)
    for photo in results:  # scored, but enlarged from a few pixels: say so once per photo
        if photo.result.too_small:
            what = f"warning: {photo.result.source}: {photo.result.too_small}; its score says little"
            err_console.print(Text(what, style="yellow"), soft_wrap=True)
    for photo in results:  # the model's cap per photo may have dropped objects above --conf
        note = photo.result.cap_note(conf)
        if note:
            err_console.print(Text(f"note: {photo.result.source}: {note}", style="yellow"), soft_wrap=True)
    if stopped is not None:
        _say_stopped(stopped, csv_file)
    if not json_output and csv_file is not None:
        console.print(Text(f"wrote {csv_file}"))
    if failed:
        # A UserError (not typer.Exit) so the exit code is 2 whatever mode Click runs in.
        raise BadImageError(f"{len(failed)} of {len(results)} photos could not be read (listed above)")


def _say_stopped(stop: ScoringStopped, csv_file: Path | None) -> NoReturn:
    """One line for a Ctrl-C while scoring: how far it got and what it wrote; exit 130 as shells do."""
    wrote = [f"wrote {csv_file}"] if csv_file is not None and stop.done else []
    drawings = [photo.annotated for photo in stop.done if photo.annotated]
    if drawings:
        wrote.append(f"drawings in {drawings[0].parent}")
    what = f"{' and '.join(wrote)} (partial)" if wrote else "nothing written"
    message = f"stopped (Ctrl-C) after {len(stop.done)} of {stop.total} photos; {what}"
    err_console.print(Text(message, style="yellow"), soft_wrap=True)
    raise typer.Exit(130)


def _without_drawings(items: list[ImageInput], photos: list[str], save_dir: Path) -> list[ImageInput]:
    """The photos less those a folder or glob found inside `--save-dir`: an earlier run's drawings
    (`score . --save-dir annotated` run twice scored its own annotated copies). Files named on the
    command line stay, and so does all of a folder given as the --save-dir itself (its drawings
    cannot be told from its photos)."""
    drawings = Path(save_dir).resolve()
    if drawings in {Path(p).resolve() for p in photos if Path(p).is_dir()}:
        return items
    named = {Path(p).resolve() for p in photos if Path(p).is_file()}

    def drawn(item: ImageInput) -> bool:
        path = Path(str(item)).resolve()
        return path not in named and path.is_relative_to(drawings)

    return [item for item in items if not drawn(item)]


def _show_one(photo: PhotoScore) -> None:
    from officescore.infer.score import how_points_make_the_total, row_name

    result, office = photo.result, photo.score
    assert office is not None
    objects = Table(title=Text(f"{result.source} ({result.width}x{result.height})"), title_justify="left")
    for column, justify in (
        ("class", "left"),
        ("score", "right"),
        ("box x0,y0,x1,y1", "left"),
        ("share", "right"),
        ("attributes", "left"),
    ):
        objects.add_column(column, justify=justify)  # type: ignore[arg-type]
    for det in sorted(result.detections, key=lambda d: -d.score):
        box = ",".join(f"{v:.0f}" for v in det.box)
        attributes = " ".join(det.label().split(" ")[2:])  # "armrests", "floor", "no armrests"
        objects.add_row(Text(det.class_name), f"{det.score:.2f}", box, f"{det.share:.1%}", Text(attributes))
    if not result.detections:
        objects.add_row("[dim]nothing found[/dim]", "", "", "", "")
    console.print(objects)

    breakdown = Table(title="Breakdown", title_justify="left")
    for column in ("class", "count", "points", "of"):
        breakdown.add_column(column, justify="left" if column == "class" else "right")
    for row in office.breakdown:
        style = "" if row.count else "dim"
        breakdown.add_row(
            Text(row_name(row)),
            str(row.count),
            f"{row.earned:g}",
            f"{row.possible:g}",
            style=style,
        )
    for rule in office.attributes:  # the rubric's attribute rules: bonus points
        style = "" if rule.count else "dim"
        breakdown.add_row(
            Text(f"{rule.rule} (bonus)"),
            str(rule.count),
            f"{rule.earned:g}",
            f"{rule.possible:g}",
            style=style,
        )
    console.print(breakdown)
    if office.missing_essentials:
        console.print(f"[yellow]missing essentials:[/yellow] {escape(', '.join(office.missing_essentials))}")
    how = how_points_make_the_total(office)
    if how:
        console.print(Text(how, style="dim"))
    if office.unscored:
        unscored = ", ".join(f"{k} x{v}" for k, v in office.unscored.items())
        console.print(Text(f"not scored: {unscored}", style="dim"))
    for suggestion in office.suggestions[:5]:
        console.print(Text(f"  • {suggestion.text}"))
    console.print(f"[bold]Office score: {office.total:g}/100[/bold] - {escape(office.label)}")
    if photo.annotated:
        console.print(Text(f"annotated image: {photo.annotated}"))


def _show_many(results: list[PhotoScore]) -> None:
    table = Table(title=f"{len(results)} photos", title_justify="left")
    for column, justify in (("photo", "left"), ("objects", "right"), ("score", "right"), ("label", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for photo in results:
        if photo.score is None:
            table.add_row(Text(str(photo.result.source)), "", "[red]failed[/red]", "")
            continue
        table.add_row(
            Text(str(photo.result.source)),
            str(len(photo.result.detections)),
            f"{photo.score.total:g}",
            Text(photo.score.label),
        )
    console.print(table)
    scored = [p.score.total for p in results if p.score is not None]
    if scored:
        console.print(f"mean score {sum(scored) / len(scored):.1f} over {len(scored)} photos")
    saved = [p.annotated for p in results if p.annotated]
    if saved:
        console.print(Text(f"annotated images in {saved[0].parent}"))


def register(app: typer.Typer) -> None:
    app.command("score", epilog=EXAMPLES)(score)
