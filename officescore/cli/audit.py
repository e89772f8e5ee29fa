"""`officescore audit`: rank likely label errors of a data set against out-of-sample predictions."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from officescore.cli.common import console, print_json, reporter, said_when_stopped
from officescore.config import DEFAULT_DATASET_DIR, DEFAULT_RUNS_DIR
from officescore.errors import UserError

if TYPE_CHECKING:
    from officescore.curate.audit import AuditRun

EXAMPLES = """
[bold]Examples[/bold]

  officescore audit data/dataset --model other/weights/best.pt      # a model trained on other photos

  officescore audit data/dataset --folds 5 --train-args runs/train/train/args.json    # trains 5 models

  officescore audit data/dataset --model best.pt --split all --json > issues.json

  officescore audit data/dataset --model best.pt --labelstudio review.json    # flagged photos as tasks

  officescore audit data/dataset --model best.pt --convention "plant=whole: include the pot"

Writes runs/audit/NAME (audit, audit2, ...): issues.json, predictions.json, images.csv (one quality
per photo, lowest first) and contact_sheet_NN.png (labels left, predictions right, suspect in white).
Kinds: missing, wrong_class, bad_mask, spurious, duplicate, wrong_attribute, convention; scores in
[0, 1], higher = likelier wrong.

Labelling conventions: a class whose labels fall into two consistent groups (plants with or without
their pots) is reported after the issues, with conventions.json and conventions_<class>_<n>.png
(label left, prediction right); `--conventions` shows only that report, every class checked. A class
whose convention the team declared (ingest --convention, or --convention here for this run) is not
two groups: the labels that break the declaration are issues of kind convention.
"""

SHOWN = 20  # issues in the table (all of them are in issues.json)


def audit(
    ctx: typer.Context,
    dataset: Path = typer.Argument(DEFAULT_DATASET_DIR, help="Data set folder (from `officescore ingest`)."),
    model: Path = typer.Option(
        None,
        "--model",
        "-m",
        help="Checkpoint, run folder or TorchScript export, trained on OTHER photos than these.",
    ),
    folds: int = typer.Option(
        None, "--folds", help="Instead of --model: train K models, each predicting the fold it did not see."
    ),
    train_args: Path = typer.Option(
        None, "--train-args", help="With --folds: train settings as JSON (e.g. a run's args.json)."
    ),
    split: str = typer.Option("train", "--split", help="train, val or all."),
    out: Path = typer.Option(None, "--out", help="Run folder (default: runs/audit/NAME)."),
    name: str = typer.Option("audit", "--name", help="Run folder name under runs/audit (never overwritten)."),
    min_score: float = typer.Option(0.0, "--min-score", help="List only issues scoring at least this."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or mps."),
    batch_size: int = typer.Option(2, "--batch-size", "-b", help="Photos per forward pass."),
    labelstudio: Path = typer.Option(
        None, "--labelstudio", help="Also write flagged photos as Label Studio review tasks (JSON)."
    ),
    mask: str = typer.Option(
        "polygon", "--mask", help="--labelstudio regions: polygon (editable outline) or brush (exact mask)."
    ),
    conventions: bool = typer.Option(
        False, "--conventions", help="Show only the labelling-convention report (every class checked)."
    ),
    convention: list[str] = typer.Option(
        None,
        "--convention",
        help="For this run: CLASS=whole (with all its parts) or CLASS=part (the main part only), over "
        "the data set's declarations (CLASS=none: undeclared); repeatable. Labels that break it are "
        "convention issues.",
    ),
    json_output: bool = typer.Option(False, "--json", help="Print the issues and image qualities as JSON."),
) -> None:
    """Rank likely label errors (missing, wrong_class, bad_mask, spurious, duplicate, wrong_attribute,
    convention)."""
    _refuse_arguments(ctx.args)
    from officescore.curate.audit import run_audit
    from officescore.ingest.conventions import parse_conventions

    run = run_audit(
        dataset,
        model=model,
        folds=folds,
        split=split,
        train_args=train_args,
        name=name,
        project=DEFAULT_RUNS_DIR / "audit",
        out=out,
        device=device,
        batch_size=batch_size,
        min_score=min_score,
        labelstudio=labelstudio,
        mask=mask,
        reporter=reporter(json_output),
        conventions=parse_conventions(convention or []),
    )
    if json_output:
        print_json(run.to_json())
        return
    if conventions:
        _show_notes(run)
        _show_conventions(run, every_class=True)
        console.print(f"wrote [bold]{escape(str(run.out_dir))}[/bold] in {run.seconds:.1f}s")
        return
    _show(run)


def _show(run: AuditRun) -> None:
    how = (
        f"{len(run.folds)} fold models (each predicts photos it did not train on)" if run.folds else run.model
    )
    console.print(Text(f"{run.dataset} ({run.split}): {len(run.images)} photos, predictions from {how}"))
    _show_notes(run)
    table = Table(
        title=f"top {min(SHOWN, len(run.issues))} of {len(run.issues)} issues", title_justify="left"
    )
    for col in ("#", "kind", "score", "photo", "label", "class", "suggested", "bbox"):
        # A photo's name cut to `scene_000…` names no photo: it wraps whole instead.
        justify = "right" if col in ("#", "score", "label") else "left"
        table.add_column(col, justify=justify, overflow="fold" if col == "photo" else "ellipsis")
    for row in run.issues[:SHOWN]:
        table.add_row(
            str(row["rank"]),
            row["kind"],
            f"{row['score']:.3f}",
            Text(Path(row["file_name"]).name),
            "-" if row["annotation_id"] is None else str(row["annotation_id"]),
            Text(row["class"] or "-"),
            Text(suggested(row)),
            " ".join(f"{v:.0f}" for v in row["bbox"]),
        )
    console.print(table)
    worst = ", ".join(f"{Path(r['file_name']).name} {r['quality']:.2f}" for r in run.images[:5])
    console.print(Text(f"lowest quality photos: {worst}"))
    if run.conventions:
        _show_conventions(run, every_class=False)
    out = escape(str(run.out_dir))
    console.print(f"wrote [bold]{out}[/bold] ({len(run.sheets)} contact sheets) in {run.seconds:.1f}s")
    if run.tasks is not None:
        tasks = escape(str(run.tasks))
        console.print(
            f"{run.task_count} review task(s) for Label Studio: [bold]{tasks}[/bold] "
            "(labelling config beside it)"
        )


def suggested(row: dict[str, Any]) -> str:
    """The table's suggestion: the class, or for a wrong attribute which one and its two values (the
    class alone would read as "nothing to change")."""
    from officescore.attributes import value_name

    if row.get("convention"):  # the class's declared convention, which the label breaks
        return f"{row['class']}={row['convention']['convention']}"
    attribute = row.get("attribute")
    if not attribute:
        return row["suggested_class"] or "-"
    label, predicted = (value_name(attribute[k]) for k in ("label", "predicted"))
    return f"{attribute['name']}: {label} -> {predicted}"


def _show_notes(run: AuditRun) -> None:
    for note in run.notes:
        console.print(f"[yellow]note:[/yellow] {escape(note)}", soft_wrap=True)


def _show_conventions(run: AuditRun, every_class: bool) -> None:
    found = {c["class"]: c for c in run.conventions}
    if every_class:
        for name, pairs in run.convention_pairs.items():
            if name not in found:
                console.print(Text(f"{name}: one convention ({pairs} labels compared with predictions)"))
    for c in run.conventions:  # declared: which group is wrong is known, so no two equal groups
        if c["declared"] is not None:
            console.print(Text(f"{c['declared']['verdict']} (convention issues)"), soft_wrap=True)
    two_ways = [c for c in run.conventions if c["declared"] is None]
    if two_ways:
        _show_two_ways(two_ways)
    if run.conventions:
        sheets = ", ".join(p.name for p in run.convention_sheets)
        console.print(Text(f"convention sheets: {sheets}"))


def _show_two_ways(conventions: list[dict[str, Any]]) -> None:
    table = Table(title="labelling conventions: classes labelled two ways", title_justify="left")
    for col in ("class", "confidence", "group", "labels", "photos", "label/prediction area", "how"):
        table.add_column(col, justify="right" if col in ("confidence", "labels", "photos") else "left")
    for c in conventions:
        for n, group in enumerate(c["groups"], start=1):
            table.add_row(
                Text(c["class"]) if n == 1 else "",
                f"{c['confidence']:.2f}" if n == 1 else "",
                "minority" if n == 1 else "majority",
                str(group["size"]),
                str(len(group["image_ids"])),
                f"{group['area_ratio']:.2f}",
                Text(group["description"]),
            )
    console.print(table)


def _refuse_arguments(args: list[str]) -> None:
    """audit takes one data set; `--conventions plant=whole` (the report flag for the declaring
    option, one letter apart) was Click's "Got unexpected extra argument (plant=whole)"."""
    if not args:
        return
    import shlex

    declared = [a for a in args if "=" in a]
    if declared:
        raise UserError(
            f"{shlex.join(declared)}: to declare a convention write --convention {shlex.quote(declared[0])} "
            "(--conventions, with an s, only shows the conventions report)"
        )
    raise UserError(f"audit takes one data set folder, not also {shlex.join(args)}")


def register(app: typer.Typer) -> None:
    stopped = said_when_stopped("nothing written, or part of its run folder if it was writing one")
    # extra arguments reach the command (ctx.args), which says what was meant
    settings = {"allow_extra_args": True}
    app.command("audit", epilog=EXAMPLES, context_settings=settings)(stopped(audit))
