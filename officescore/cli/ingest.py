"""`officescore ingest`: check, repair and split a COCO export into a data set."""

from __future__ import annotations

import os
import shlex
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.text import Text

from officescore.cli.common import console, print_json, reporter, said_when_stopped
from officescore.config import DEFAULT_DATASET_DIR

if TYPE_CHECKING:
    from officescore.attributes import AttributeSchema
    from officescore.ingest.run import IngestResult

EXAMPLES = """
[bold]Examples[/bold]
  officescore ingest export/annotations.json
  officescore ingest hasty.json --images photos/ --out data/dataset --val-fraction 0.2 --seed 1
  officescore ingest export.json --classes desk,chair,monitor --strict
  officescore ingest ls-export/result.json --images ~/.local/share/label-studio/media/upload/1
  officescore ingest instances_default.json --images photos/ --crowd ignore
  officescore ingest export.json --attributes my_attributes.toml
  officescore ingest train/_annotations.coco.json valid/_annotations.coco.json   # one data set, split anew
  officescore ingest export/annotations.json review/annotations.json --last-wins   # a review's fixes
  officescore ingest export.json --convention "plant=whole: include the pot" --convention desk=part
  officescore ingest coco.json --rename "potted plant=plant" --rename tv=monitor   # officescore's names
"""


def ingest(
    export: list[Path] = typer.Argument(
        ...,
        help="COCO instance-segmentation export (.json) from the labelling tool; several (Roboflow's "
        "train/valid/test, one per CVAT task) make one data set, classes matched by name.",
    ),
    images: list[Path] = typer.Option(
        None,
        "--images",
        help="Image folder (default: the export's folder); with several exports, once for all or once "
        "per export in their order. A photo not at its path is looked up in it by name, then by its "
        "name without Label Studio's upload prefix.",
    ),
    out: Path = typer.Option(DEFAULT_DATASET_DIR, "--out", "-o", help="Data-set folder to write (replaced)."),
    val_fraction: float = typer.Option(
        0.2, "--val-fraction", help="Share of images held out for validation."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the train/val split."),
    strict: bool = typer.Option(
        False,
        "--strict",
        help="Refuse the export if anything had to be fixed or dropped (ids from 0, as Label Studio and "
        "Roboflow write them, are fine: ingest renumbers every id).",
    ),
    classes: str = typer.Option(
        None, "--classes", help="Comma-separated class names to keep (others dropped)."
    ),
    crowd: str = typer.Option(
        "auto",
        "--crowd",
        help="iscrowd 1 masks: auto (instances in CVAT exports, whose brush masks all carry iscrowd 1; "
        "crowd regions elsewhere), instances, or ignore (ignore regions).",
    ),
    attributes: Path = typer.Option(
        None,
        "--attributes",
        help="Attribute schema (TOML, [<class>.<attribute>] tables; default: the package's "
        "data/attributes.toml). Recorded in dataset.json.",
    ),
    last_wins: bool = typer.Option(
        False,
        "--last-wins",
        help="A photo in several exports keeps only the labels of the last export holding it: give a "
        "review project's export last to apply its corrections.",
    ),
    convention: list[str] = typer.Option(
        None,
        "--convention",
        help="Declare how a class is outlined, CLASS=whole (with all its parts: the pot, the legs) or "
        "CLASS=part (the main part only), a note after a colon; repeatable. Recorded in dataset.json "
        "and kept by later ingests into --out unless given again (CLASS=none drops it); audit names "
        "the labels that break it.",
    ),
    rename: list[str] = typer.Option(
        None,
        "--rename",
        help="OLD=NEW: the export's category OLD (any case or spacing) is class NEW, before classes are "
        "matched (COCO's 'potted plant=plant', tv=monitor); two OLDs onto one NEW make one class. "
        "Repeatable; recorded in dataset.json (label pull --ingest keeps Label Studio's names).",
    ),
    plot: bool = typer.Option(True, "--plot/--no-plot", help="Write health.png in the data set."),
    json_output: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
) -> None:
    """Validate, repair and split a COCO export (Hasty, CVAT, Label Studio, Roboflow) into a data set."""
    from officescore.attributes import load_schema
    from officescore.cli.stats import render_health, render_problem_list
    from officescore.ingest import ingest_export
    from officescore.ingest.checks import parse_renames
    from officescore.ingest.conventions import parse_conventions
    from officescore.ingest.health import health_report, save_health_plot

    declared = parse_conventions(convention or [])
    renames = parse_renames(rename or [])
    before = earlier_data_set(out)
    schema = load_schema(attributes)
    result = ingest_export(
        export,
        images_dir=images or None,
        out=out,
        val_fraction=val_fraction,
        seed=seed,
        strict=strict,
        classes=classes.split(",") if classes is not None else None,
        crowd=crowd,
        reporter=reporter(json_output),
        attributes=schema,
        last_wins=last_wins,
        conventions=declared,
        renames=renames,
    )
    report = health_report(result.out)
    png = save_health_plot(report, result.out / "health.png") if plot else None
    if json_output:
        print_json(
            {"ingest": result.to_dict(), "health": report.to_dict(), "plot": str(png) if png else None}
        )
        return
    render_problem_list([p.to_dict() for p in result.problems], result.out)
    render_health(report)
    counts = result.counts
    if counts.get("excluded_by_classes"):  # not problems, but the user should see what was left out
        left_out, names = counts["excluded_by_classes"], ", ".join(result.excluded_classes)
        if classes is not None:
            console.print(Text(f"left out by --classes: {left_out} annotation(s) of other classes ({names})"))
        else:  # classes with ignore regions only: nothing to learn from
            console.print(
                Text(
                    f"left out: {left_out} ignore region(s) of classes with no object that has a mask "
                    f"(nothing to learn from): {names}"
                )
            )
    unused = [name for name in result.dropped_categories if name not in result.excluded_classes]
    if unused and classes is None:  # a class the user expected is missing from the model otherwise
        console.print(
            Text(
                "categories with no object left after the checks, not classes of the data set: "
                + ", ".join(unused)
            ),
            soft_wrap=True,
        )
    console.print(
        f"[green]wrote[/green] {escape(str(result.out))}: {counts['train']['images']} train / "
        f"{counts['val']['images']} val images, {len(result.classes)} classes, "
        f"{len(result.problems)} problem(s) fixed or dropped"
        + (f", {result.with_photos} label(s) dropped with their photos" if result.with_photos else "")
        + (f"; plot {escape(str(png))}" if png else "")
    )
    replaced = counts["replaced"]
    if replaced["images"]:
        console.print(
            f"--last-wins: {replaced['images']} photo(s) take their labels from a later export; "
            f"their {replaced['annotations']} earlier label(s) are left out",
            soft_wrap=True,
        )
    _say_renames(result)
    _say_unlisted(result.unlisted)
    print_ingest_notes(result, before)
    if result.conventions:  # carried over ones too: what audit and the labellers will be held to
        said = "; ".join(f"{name}={d.words()}" for name, d in result.conventions.items())
        console.print(Text(f"labelling conventions: {said}"), soft_wrap=True)
    note_other_spellings(result.classes)
    if attributes is not None:
        note_unused_attribute_classes(attributes, schema, result.classes)


def _say_renames(result: IngestResult) -> None:
    """What --rename did, and the categories it made one class (as asked, yet worth seeing)."""
    if result.renamed:
        said = ", ".join(f"{old} -> {new}" for old, new in result.renamed.items())
        console.print(Text(f"renamed by --rename: {said}"), soft_wrap=True)
    for name, sources in result.merged.items():
        console.print(Text(f"merged by --rename into one class {name}: {', '.join(sources)}"), soft_wrap=True)


def _say_unlisted(unlisted: list[str], shown: int = 3) -> None:
    """Photos in the image folder the export does not list: unlabelled, or labels the export lost
    (a task left out of it, a second project), which nothing else would show."""
    if unlisted:
        more = f" and {len(unlisted) - shown} more" if len(unlisted) > shown else ""
        console.print(
            Text(
                f"note: {len(unlisted)} photo(s) in the image folder are not in the export, so not in the "
                f"data set (unlabelled, or labels lost in the export?): {', '.join(unlisted[:shown])}{more}"
            ),
            soft_wrap=True,
        )


def note_other_spellings(classes: list[str]) -> None:
    """Classes the packaged rubric knows by another name, so a model trained on them would score
    nothing for them: officescore's own spelt otherwise (CVAT's "Monitor"), or COCO's ("tv")."""
    from officescore import DEFAULT_CLASSES
    from officescore.ingest import class_key

    own = {class_key(name): name for name in DEFAULT_CLASSES}
    other = [name for name in classes if own.get(class_key(name), name) != name]
    if other:
        respelt = shlex.quote(",".join(own.get(class_key(name), name) for name in classes))
        console.print(
            Text(
                f"note: class(es) {', '.join(other)}: officescore's "
                f"{', '.join(own[class_key(name)] for name in other)} spelt otherwise, and the packaged "
                f"rubric scores only its own spelling; to take it, ingest again with --classes {respelt}"
            ),
            soft_wrap=True,
        )
    coco = {class_key(name): office for name, office in _coco_names().items() if office in DEFAULT_CLASSES}
    named = {
        name: coco[class_key(name)]
        for name in classes
        if coco.get(class_key(name), name) != name and name not in other  # "Chair": said above
    }
    if named:
        renames = " ".join(f"--rename {shlex.quote(f'{name}={office}')}" for name, office in named.items())
        console.print(
            Text(
                f"note: class(es) {', '.join(named)}: COCO's names for officescore's "
                f"{', '.join(named.values())}, the names the packaged rubric scores; to train them as "
                f"those, ingest again with {renames}"
            ),
            soft_wrap=True,
        )


def _coco_names() -> dict[str, str]:
    """COCO category name -> office class, as the zero-shot `coco` model maps them (read here, not
    through officescore.infer, which would load torch)."""
    from officescore.config import tomllib  # tomli on Python 3.10

    text = resources.files("officescore").joinpath("data", "coco_to_office.toml").read_text("utf-8")
    return dict(tomllib.loads(text)["map"])


def note_unused_attribute_classes(path: Path, schema: AttributeSchema, classes: list[str]) -> None:
    """Classes of an --attributes file the data set does not have: a misspelt [chiar.armrests]
    otherwise only shows as every chair's armrests listed as an unknown attribute."""
    unused = schema.classes_outside(classes)
    if unused:
        console.print(
            f"[yellow]note[/yellow]: --attributes {escape(str(path))} declares attributes of "
            f"{escape(', '.join(unused))}, which the data set does not label "
            f"({escape(', '.join(classes))}); they are not used",
            soft_wrap=True,
        )


def print_ingest_notes(result: IngestResult, before: dict[str, Any] | None) -> None:
    """What became of the data set that was in --out (`before`, read before ingest wrote): photos
    that kept their split, or a data set from another export replaced by this one."""
    _note_corrections_left_out(result, before)
    _note_renames_left_out(result, before)
    kept = result.counts.get("split_kept", 0)
    if kept:
        new = result.counts["images"] - kept
        console.print(
            f"kept {kept} photo(s) in the split the earlier ingest gave them (same --seed "
            "and --val-fraction), so val stays comparable"
            + (f"; the {new} new photo(s) were split around them" if new else ""),
            soft_wrap=True,
        )
    if before is None or kept >= before["images"]:
        return  # a new data set, or grown exports that kept every photo
    if set(before["exports"]) <= set(result.exports):
        if _split_anew(result.out, before):
            return  # the same exports split anew: no photo could keep its split, yet none need be gone
        # a newer export at the same path (`label pull` into the same --out) without those photos
        console.print(
            f"[yellow]note[/yellow]: {before['images'] - kept} of the {before['images']} photo(s) of the "
            f"data set that was there are not in {escape(', '.join(result.exports))} (another project pulled "
            "into the same folder, or tasks deleted?); ingest replaced the data set",
            soft_wrap=True,
        )
        return
    # ingest replaces, it never adds: say so when photos from other export files are gone
    console.print(
        f"[yellow]replaced[/yellow] the data set that was there: {before['images']} image(s) from "
        f"{escape(', '.join(before['exports']))} (ingest replaces; to add an export to a data set, ingest "
        "it together with the earlier ones)",
        soft_wrap=True,
    )


def _note_corrections_left_out(result: IngestResult, before: dict[str, Any] | None) -> None:
    """The data set that was there took some photos' labels from a later export (--last-wins: a
    review's corrections) that this ingest was not given: those photos are back to their old labels
    (`label pull --ingest` of the labelling project after a review), which nothing else would say."""
    if before is None or not before.get("replaced"):
        return
    missing = [export for export in before["exports"] if export not in result.exports]
    if missing:
        console.print(
            Text(
                f"note: the data set that was there took the labels of {before['replaced']} photo(s) "
                f"from {', '.join(missing)} (--last-wins); they are not in this ingest, so those photos "
                f"have their earlier labels again: ingest {' '.join([*result.exports, *missing])} "
                "--last-wins to keep them"
            ),
            soft_wrap=True,
        )


def _note_renames_left_out(result: IngestResult, before: dict[str, Any] | None) -> None:
    """The data set that was there renamed categories (`ingest --rename`) that this ingest did not
    (none given again, or `label pull --ingest`, which keeps Label Studio's names): its classes changed."""
    if before is None:
        return
    left_out = {old: new for old, new in before["renames"].items() if result.renamed.get(old) != new}
    if left_out:
        said = ", ".join(f"{old} -> {new}" for old, new in left_out.items())
        console.print(
            Text(
                f"note: the data set that was there renamed {said} (ingest --rename); this ingest did "
                "not, so those classes take the export's names"
            ),
            soft_wrap=True,
        )


def _split_anew(out: Path, before: dict[str, Any]) -> bool:
    """Whether the data set now in `out` was split with another seed or val fraction than `before`."""
    from officescore.ingest import read_dataset_meta

    meta = read_dataset_meta(out) or {}
    return (meta.get("seed"), meta.get("val_fraction")) != (before["seed"], before["val_fraction"])


def earlier_data_set(out: Path) -> dict[str, Any] | None:
    """{exports, images, replaced, renames, seed, val_fraction} of the data set in `out`, or None when
    there is none: what `print_ingest_notes` and `split_settings` need of it."""
    from officescore.ingest import read_dataset_meta

    meta = read_dataset_meta(out)
    if meta is None:
        return None
    try:
        sources = meta["source"].get("exports") or [meta["source"]]
        # written relative to the data set
        exports = [os.path.normpath(Path(out) / source["export"]) for source in sources]
        split = {"seed": meta.get("seed"), "val_fraction": meta.get("val_fraction")}
        replaced = (meta["counts"].get("replaced") or {}).get("images", 0)  # by --last-wins
        renames = meta.get("renames") if isinstance(meta.get("renames"), dict) else {}
        found = {"exports": exports, "images": meta["counts"]["images"], "replaced": replaced}
        return {**found, "renames": renames, **split}
    except (KeyError, TypeError):  # a dataset.json without what ingest records
        return None


def split_settings(before: dict[str, Any] | None) -> dict[str, Any]:
    """ingest_export's seed and val_fraction for growing the data set `before` (`label pull --ingest`
    has no --seed or --val-fraction): its own, so its photos keep their splits; {} for a new one."""
    if before is None:
        return {}
    seed, fraction = before.get("seed"), before.get("val_fraction")
    if type(seed) is not int or type(fraction) not in (int, float) or not 0 <= fraction < 1:
        return {}  # not recorded as ingest writes it: the defaults
    return {"seed": seed, "val_fraction": float(fraction)}


def register(app: typer.Typer) -> None:
    app.command("ingest", epilog=EXAMPLES)(said_when_stopped("nothing written; --out is as it was")(ingest))
