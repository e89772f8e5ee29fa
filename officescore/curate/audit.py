"""`officescore audit`: rank likely label errors of a data-set split against out-of-sample predictions.

`audit_predictions` is the pure part (labels + COCO results -> ranked issues and image qualities);
`run_audit` gets the predictions (a model trained elsewhere, or `--folds K` cross-fitting) and writes
`runs/audit/NAME/`: issues.json, predictions.json, images.csv and contact-sheet PNGs, and
conventions.json with one contact sheet per group of a class whose labels follow two conventions.
Where the team declared the class's convention (dataset.json, `--convention`), the labels of the
group that breaks it are issues of kind `convention` instead.
"""

from __future__ import annotations

import csv
import io
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from officescore.curate.conventions import ConventionReport, breaches, declare, find_conventions
from officescore.curate.labels import SplitLabels, check_classes, extra_classes_note, load_split
from officescore.curate.match import match_image, predictions_by_image, tolerance
from officescore.curate.scoring import Calibration, Issue, calibrate, image_issues, image_quality
from officescore.errors import ConfigError, ModelError
from officescore.files import atomic_write_bytes, atomic_write_json
from officescore.ingest import read_dataset_meta
from officescore.ingest.conventions import Declared, check_convention_classes, merged, read_conventions
from officescore.progress import SILENT, Reporter

DEFAULT_SHEET_ISSUES = 24  # issues drawn on contact sheets


@dataclass
class AuditResult:
    issues: list[Issue]  # by score, highest first
    images: list[dict[str, Any]]  # {"image_id", "file_name", "quality"}, lowest quality first
    calibration: Calibration
    conventions: ConventionReport  # classes whose labels follow two conventions


def audit_predictions(
    split: SplitLabels, results: list[dict[str, Any]], declared: dict[str, Declared] | None = None
) -> AuditResult:
    """Rank label issues of `split` given COCO `results` (the data set's image and category ids);
    `declared`: the team's labelling conventions per class."""
    by_image = predictions_by_image(results, split.classes)
    matches = [
        match_image(image.labels, by_image.get(image.id, []), tolerance(image.height, image.width))
        for image in split.images
    ]
    cal = calibrate(matches, split.classes)
    issues: list[Issue] = []
    for image, m in zip(split.images, matches, strict=True):
        issues += image_issues(m, image.id, cal)
    conventions = find_conventions(
        matches,
        [image.id for image in split.images],
        split.classes,
        [tolerance(image.height, image.width) for image in split.images],
    )
    declare(conventions, declared or {})
    _convention_issues(issues, conventions)
    issues.sort(key=lambda i: (-i.score, i.image_id, i.annotation_id or 0))
    by_image_issues: dict[int, list[Issue]] = {}
    for issue in issues:
        by_image_issues.setdefault(issue.image_id, []).append(issue)
    images = [
        {
            "image_id": im.id,
            "file_name": im.file_name,
            "quality": image_quality(by_image_issues.get(im.id, [])),
        }
        for im in split.images
    ]
    images.sort(key=lambda row: (row["quality"], row["image_id"]))
    return AuditResult(issues, images, cal, conventions)


SYMPTOM = "bad_mask"  # what a label breaking a declared convention also looks like: not its cause


def _convention_issues(issues: list[Issue], report: ConventionReport) -> None:
    """Each label of a group that breaks its class's declared convention becomes a `convention` issue
    (unless a kind other than its bad mask scores higher: a duplicate stays a duplicate)."""
    by_label = {issue.annotation_id: issue for issue in issues if issue.annotation_id is not None}
    for split in report.splits:
        for pair, score in breaches(split):
            issue, score = by_label[pair.annotation_id], round(score, 6)
            issue.kinds["convention"] = score
            if max(v for k, v in issue.kinds.items() if k != SYMPTOM) > score:
                continue
            assert split.declared is not None
            issue.kind, issue.score, issue.prediction = "convention", score, pair.prediction
            issue.suggested_class, issue.other_annotation, issue.attribute = split.class_name, None, None
            issue.convention = {**split.declared.to_dict(), "breach": split.breach()}


def issue_rows(result: AuditResult, split: SplitLabels, min_score: float = 0.0) -> list[dict[str, Any]]:
    """The issues as `--json` prints them (rank from 1)."""
    names = {image.id: image.file_name for image in split.images}
    rows = []
    for issue in result.issues:
        if issue.score < min_score:
            break
        rows.append(
            {
                "rank": len(rows) + 1,
                "kind": issue.kind,
                "score": issue.score,
                "image_id": issue.image_id,
                "file_name": names[issue.image_id],
                "annotation_id": issue.annotation_id,
                "class": issue.class_name,
                "suggested_class": issue.suggested_class,
                "bbox": issue.bbox,
            }
        )
        if issue.attribute is not None:  # wrong_attribute: which one, labelled and predicted
            rows[-1]["attribute"] = issue.attribute
        if issue.convention is not None:  # convention: the declared one, and how the label breaks it
            rows[-1]["convention"] = issue.convention
    return rows


@dataclass
class AuditRun:
    dataset: Path
    model: str  # the checkpoint, or "folds:K (...)"
    split: str
    out_dir: Path
    issues: list[dict[str, Any]]
    images: list[dict[str, Any]]
    sheets: list[Path]
    folds: list[dict[str, Any]] = field(default_factory=list)
    tasks: Path | None = None  # --labelstudio: the review tasks file
    task_count: int = 0  # the photos in it
    seconds: float = 0.0
    conventions: list[dict[str, Any]] = field(default_factory=list)  # ConventionSplit.to_dict()
    convention_sheets: list[Path] = field(default_factory=list)
    convention_pairs: dict[str, int] = field(default_factory=dict)  # per class: labels compared
    notes: list[str] = field(default_factory=list)  # what the user should know about the run

    def to_json(self) -> dict[str, Any]:
        """The `--json` document (the issue's contract)."""
        return {
            "dataset": str(self.dataset),
            "model": self.model,
            "split": self.split,
            "issues": self.issues,
            "images": self.images,
            "conventions": self.conventions,
            "out": str(self.out_dir),  # where issues.json and the sheets went (runs/audit/auditN)
            "labelstudio": str(self.tasks) if self.tasks is not None else None,
            "notes": self.notes,
        }


def run_audit(
    dataset: Path,
    model: Path | str | None = None,
    folds: int | None = None,
    split: str = "train",
    train_args: Path | None = None,
    name: str = "audit",
    project: Path = Path("runs/audit"),
    out: Path | None = None,
    device: str = "auto",
    batch_size: int = 2,
    min_score: float = 0.0,
    sheet_issues: int = DEFAULT_SHEET_ISSUES,
    seed: int = 0,
    labelstudio: Path | None = None,
    mask: str = "polygon",
    reporter: Reporter = SILENT,
    conventions: dict[str, Declared | None] | None = None,
) -> AuditRun:
    """`conventions`: declared labelling conventions over the data set's (None: undeclared), this run."""
    from officescore.curate.folds import cross_predict, load_train_args
    from officescore.curate.predictions import PREDICT_CONF, predict_images
    from officescore.curate.sheets import write_contact_sheets
    from officescore.files import check_output_dir
    from officescore.runs import check_run_name, next_run_dir

    started = time.perf_counter()
    if (model is None) == (folds is None):
        raise ConfigError(
            "audit needs out-of-sample predictions: pass --model M (trained on other photos) "
            "or --folds K, not both"
        )
    if not 0.0 <= min_score <= 1.0:  # scores lie in [0, 1]: above 1 lists nothing, a clean-looking run
        raise ConfigError(f"--min-score {min_score}: use a score from 0 to 1 (issues score in [0, 1])")
    labels = load_split(dataset, split)
    if not labels.images:
        raise ConfigError(f"{dataset}: split {split!r} has no photos to audit; try --split all")
    declared = declared_conventions(dataset, conventions or {}, labels.classes)
    if out is not None:
        check_output_dir(Path(out), "--out")
    else:
        check_run_name(name)
    if labelstudio is not None:
        from officescore.files import check_output_file

        if Path(labelstudio).suffix.lower() != ".json":
            raise ConfigError(f"--labelstudio {labelstudio}: give a .json file name (e.g. review.json)")
        check_output_file(Path(labelstudio), "--labelstudio")
    if mask not in ("polygon", "brush"):
        raise ConfigError(f"--mask {mask!r}: use polygon or brush")
    config = load_train_args(train_args) if folds is not None else None
    fold_info: list[dict[str, Any]] = []
    notes: list[str] = []
    if model is not None:
        from officescore.infer import Predictor

        predictor = Predictor.load(model, device=device, conf=PREDICT_CONF)
        extra = check_classes(predictor.classes, labels.classes, str(model))
        notes += [extra_classes_note(str(model), extra)] if extra else []
        notes += [own_photos_note(model, dataset)] if split != "val" and trained_on(model, dataset) else []
        results = predict_images(
            predictor, labels.images, labels.classes, batch_size=batch_size, reporter=reporter
        )
        source = str(model)
    else:
        results, fold_list = cross_predict(
            labels, int(folds), config, device=device, seed=seed, reporter=reporter
        )
        fold_info = [asdict(f) for f in fold_list]
        source = f"folds:{folds}"
    result = audit_predictions(labels, results, declared)
    notes += weak_model_note(result.calibration, source)
    out_dir = Path(out) if out is not None else next_run_dir(Path(project), name)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = issue_rows(result, labels, min_score)
    atomic_write_json(out_dir / "predictions.json", results, indent=None)
    atomic_write_json(
        out_dir / "issues.json",
        {
            "dataset": str(dataset),
            "model": source,
            "split": split,
            "folds": fold_info,
            "notes": notes,
            "calibration": result.calibration.to_dict(),
            "issues": [
                {
                    **row,
                    "kinds": issue.kinds,
                    "prediction": issue.prediction,
                    "other_annotation": issue.other_annotation,
                }
                for row, issue in zip(rows, result.issues, strict=False)
            ],
        },
    )
    _write_images_csv(out_dir / "images.csv", result.images)
    sheets = write_contact_sheets(out_dir, labels, results, result.issues[:sheet_issues], rows[:sheet_issues])
    found = result.conventions.to_list()
    atomic_write_json(out_dir / "conventions.json", found)
    convention_sheets = write_convention_sheets(out_dir, labels, results, result.conventions)
    _remove_stale_sheets(out_dir, [*sheets, *convention_sheets])
    tasks, task_count = None, 0
    if labelstudio is not None:
        from officescore.curate.labelstudio import REVIEW_SCORE, audit_tasks

        version = f"audit-{Path(source).stem}"
        undeclared = [c for c in found if c["declared"] is None]  # declared: issues instead
        tasks, _, task_count = audit_tasks(
            Path(labelstudio), labels, results, rows, version, conventions=undeclared, mask=mask
        )
        if not task_count:  # an empty file pushed for review would look like a clean data set
            notes.append(
                f"no issue scores {REVIEW_SCORE} or more and no class splits into two conventions: "
                f"{tasks} holds no review tasks"
            )
        notes += _polygon_note(labels, tasks) if mask == "polygon" and task_count else []
    return AuditRun(
        dataset=Path(dataset),
        model=source,
        split=split,
        out_dir=out_dir,
        issues=rows,
        images=result.images,
        sheets=sheets,
        folds=fold_info,
        tasks=tasks,
        task_count=task_count,
        seconds=time.perf_counter() - started,
        conventions=found,
        convention_sheets=convention_sheets,
        convention_pairs=dict(result.conventions.pairs),
        notes=notes,
    )


def declared_conventions(
    dataset: Path, given: dict[str, Declared | None], classes: list[str]
) -> dict[str, Declared]:
    """The data set's declared conventions (dataset.json) with `given` over them for this run (None:
    undeclared); a class the data set does not label is refused."""
    check_convention_classes(given, classes)
    return merged(read_conventions(read_dataset_meta(dataset)), given, classes)


WEAK_RECALL = 0.5  # a class whose labels the model finds less often than this is judged by a weak model


def weak_model_note(cal: Calibration, source: str) -> list[str]:
    """A model that finds few of a class's labels makes most of that class's issues about itself
    (missing masks, unsupported labels), not the labels: say so rather than rank its noise."""
    weak = [name for name, recall in cal.recall.items() if recall < WEAK_RECALL]
    if not weak:
        return []
    which = "every class" if len(weak) == len(cal.recall) else ", ".join(weak)
    return [
        f"{source} finds under {WEAK_RECALL:.0%} of the labels of {which} (score 0.5 or more): "
        "issues there say more about the model than the labels; audit with a model that finds most "
        "of them (trained longer or on more photos)"
    ]


def _polygon_note(labels: SplitLabels, tasks: Path) -> list[str]:
    """What a polygon review does to labels of several parts (a desk and its drawer unit, a lamp's
    head and stand) or with holes: `label pull` brings back only the largest part."""
    from officescore.curate.labelstudio import labels_a_polygon_cuts
    from officescore.label.formats import read_tasks

    reviewed = {int(task["data"]["image_id"]) for task in read_tasks(tasks)}
    cut = labels_a_polygon_cuts(labels, reviewed)
    if not cut:
        return []
    ids = ", ".join(map(str, cut[:8])) + (", ..." if len(cut) > 8 else "")
    return [
        f"{len(cut)} label(s) on the review photos have several parts or holes that a polygon cannot "
        f"hold (ids {ids}): pulled back, each keeps only its largest part; audit --mask brush keeps "
        "them exactly"
    ]


def trained_on(model: Path | str, dataset: Path) -> bool:
    """Whether `model` is a run's checkpoint trained on `dataset` (its args.json says so): it learnt
    that data set's train photos."""
    from officescore.runs import model_file, trained_data_set

    try:
        trained = trained_data_set(model_file(model))  # `coco`: no file, no data set of ours
    except ModelError:  # `coco` beside a folder of that name: the predictor took the zero-shot model
        return False
    return trained is not None and trained.resolve() == Path(dataset).resolve()


def own_photos_note(model: Path | str, dataset: Path) -> str:
    return (
        f"{model} trained on {dataset}'s train photos and calls its own training labels fine, so "
        "errors there go unflagged: audit --split val with it, or use --folds K"
    )


def write_convention_sheets(
    out_dir: Path, labels: SplitLabels, results: list[dict[str, Any]], report: ConventionReport
) -> list[Path]:
    """conventions_<class>_<n>.png per group (1 = the minority): label and prediction side by side."""
    from officescore.curate.sheets import write_convention_sheet

    paths: list[Path] = []
    used: set[str] = set()
    for split in report.splits:
        base = safe = re.sub(r"[^A-Za-z0-9_-]+", "_", split.class_name)
        k = 1
        while safe in used:  # "desk lamp" and "desk_lamp": two sheets, not one written twice
            k += 1
            safe = f"{base}-{k}"
        used.add(safe)
        for n, group in enumerate(split.groups, start=1):
            members = [(p.image_id, p.annotation_id, p.prediction) for p in group.pairs]
            title = f"{split.class_name} group {n} ({len(members)} labels): {group.description}"
            if split.declared is not None:  # which group the team's convention holds wrong
                verb = "breaks" if n - 1 == split.breaks else "follows"
                title = f"{verb} {split.class_name}={split.declared.convention}: {title}"
            paths.append(
                write_convention_sheet(
                    out_dir / f"conventions_{safe}_{n}.png", labels, results, members, title
                )
            )
    return paths


STALE_SHEETS = ("contact_sheet_*.png", "conventions_*.png")


def _remove_stale_sheets(out_dir: Path, written: list[Path]) -> None:
    """Sheets an earlier audit into the same --out left (more issues then, another convention):
    beside this run's files they would show issues and groups that are no longer so."""
    keep = {path.name for path in written}
    for pattern in STALE_SHEETS:
        for path in out_dir.glob(pattern):
            if path.name not in keep:
                path.unlink(missing_ok=True)


def _write_images_csv(path: Path, images: list[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["image_id", "file_name", "quality"])
    writer.writeheader()
    writer.writerows(images)
    atomic_write_bytes(path, buffer.getvalue().encode("utf-8"))
