"""`officescore label push|pull|backend|status`: work with a running Label Studio."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

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
    stop_signals,
)
from officescore.label.trainer import DEFAULT_ARCH as TRAIN_ARCH
from officescore.label.trainer import DEFAULT_EPOCHS, DEFAULT_EVERY, DEFAULT_IMG_SIZE, DEFAULT_MINUTES

if TYPE_CHECKING:
    from officescore.ingest.conventions import Declared
    from officescore.label.client import LabelStudio, Project

EXAMPLES = """
[bold]Examples[/bold]

  export LABEL_STUDIO_API_KEY=...        # Account & Settings -> Personal Access Token
  export LABEL_STUDIO_URL=http://localhost:8080   # --url wins over it; without both: url under \\[label]

  officescore label push data/raw --project offices --model runs/train

  officescore label pull --project offices --out export/ --ingest data/dataset

  officescore label backend --model runs/train --port 9090 --connect offices

  officescore label push --review review.json --project offices-review   # from audit --labelstudio
"""

PUSH_EXAMPLES = """
[bold]Examples[/bold]

  officescore label push data/raw --project offices --model runs/train

  officescore label push photos/ --project offices --classes desk,chair,monitor

  officescore label push /srv/ls-files/photos --project offices --model best.pt --local-root /srv/ls-files

  officescore label push --review tasks.json --project offices-review

  officescore label push --project offices --convention "plant=whole: include the pot"  # instructions only
"""

PULL_EXAMPLES = """
[bold]Examples[/bold]

  officescore label pull --project offices --out export/

  officescore label pull --project offices --out export/ --ingest data/dataset
"""

BACKEND_EXAMPLES = """
[bold]Examples[/bold]

  officescore label backend --model runs/train --port 9090

  officescore label backend --model runs/train --connect offices     # connects it to the project too

  officescore label backend --model runs/train --connect offices --train --train-every 10

With --train the backend retrains itself while people label: every
--train-every new labels (or Label Studio's Start Training button) start one
job in a child process at a lower CPU priority: pull the labels, fine-tune
the current model for at most --train-epochs / --train-minutes, and switch
only if its val mask mAP is not worse on the same held-out photos. Each job
costs those CPU minutes, a run folder in --model and the pulled photos in
--backend-dir. See docs/label-training.md.

Label Studio must allow a backend on this machine: start it with ML_BLOCK_LOCAL_IP=false
(and SSRF_PROTECTION_ENABLED=false) or give the backend another address with --host.
"""

DEFAULT_URL = "http://localhost:8080"  # officescore.label.client.DEFAULT_URL (that module imports the SDK)

label_app = typer.Typer(
    help="Label Studio: push photos and predictions, pull annotations, serve live suggestions.",
    no_args_is_help=True,
)

URL_ENV = "LABEL_STUDIO_URL"  # Label Studio's SDK and ML-backend examples read it, beside the key
URL_HELP = "Label Studio's address; else $LABEL_STUDIO_URL, else \\[label] url in officescore.toml."
PROJECT_HELP = "Project title (3-50 characters)."


def _client(url: str):  # noqa: ANN202 - keeps label-studio-sdk out of import time
    from officescore.label.client import LabelStudio, api_key

    return LabelStudio.connect(url, api_key())


@label_app.command("push", epilog=PUSH_EXAMPLES)
@said_when_stopped("what was pushed stays in the project; run the same command again to push the rest")
def push(
    ctx: typer.Context,
    images: list[str] = typer.Argument(None, help="Photos, folders, globs or a scrape folder (data/raw)."),
    url: str = typer.Option(DEFAULT_URL, "--url", envvar=URL_ENV, help=URL_HELP),
    project: str = typer.Option(..., "--project", "-p", help=PROJECT_HELP),
    model: str = typer.Option(
        None,
        "--model",
        "-m",
        help="Attach this model's predictions (checkpoint, run folder, export or coco).",
    ),
    classes: str = typer.Option(
        None,
        "--classes",
        help="Comma-separated classes for a new project (default: the model's, else the office classes).",
    ),
    conf: float = typer.Option(
        None,
        "--conf",
        help=SUGGEST_CONF_HELP,
    ),
    mask: str = typer.Option(
        "polygon",
        "--mask",
        help="Region kind of a new project: polygon or brush (an existing project keeps its own; "
        "another is refused).",
    ),
    attributes: Path = typer.Option(
        None,
        "--attributes",
        help="Attribute schema for a new project's per-region choices (TOML; default: the model's, "
        "else the package's data/attributes.toml); an existing project must ask the same.",
    ),
    local_root: Path = typer.Option(
        None,
        "--local-root",
        help="Serve photos from this folder (Label Studio local files) instead of uploading.",
    ),
    review: Path = typer.Option(
        None,
        "--review",
        help="Push a tasks file (prelabel --format labelstudio, audit/select --labelstudio).",
    ),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or mps."),
    batch_size: int = typer.Option(2, "--batch-size", "-b", help="Photos per forward pass."),
    img_size: int = typer.Option(None, "--img-size", help="Longest image side fed to the model."),
    precision: str = typer.Option("auto", "--precision", help=PRECISION_HELP),
    calibration: list[str] = typer.Option(
        None, "--calibration", help=CALIBRATION_HELP + " Default: the photos being pushed."
    ),
    interactive: bool = typer.Option(
        False,
        "--interactive",
        help="Add click-to-mask tools (smart keypoint and box per class; `label backend` answers them), "
        "to a project made earlier too (then IMAGES may be left out).",
    ),
    convention: list[str] = typer.Option(
        None,
        "--convention",
        help="Declare how labellers outline a class, CLASS=whole (with all its parts) or CLASS=part (the "
        "main part only), a note after a colon; repeatable. Written into the project's labelling "
        "instructions (other text there stays; CLASS=none drops one); then IMAGES may be left out.",
    ),
    json_output: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
) -> None:
    """Create or reuse a project and add photos not yet in it (with the model's predictions)."""
    from officescore.attributes import load_schema
    from officescore.errors import ConfigError
    from officescore.ingest.conventions import parse_conventions
    from officescore.label.client import check_project_title
    from officescore.label.formats import MASK_KINDS
    from officescore.label.predict import load_predictor, threshold_record, threshold_words
    from officescore.label.push import push_images, push_tasks_file
    from officescore.label.sources import Gathered, gather_images

    check_project_title(project)
    if mask not in MASK_KINDS:
        raise ConfigError(f"--mask {mask}: use one of {', '.join(MASK_KINDS)}")
    if conf is not None and not 0.0 <= conf <= 1.0:
        raise ConfigError(f"--conf {conf}: must be between 0 and 1")
    if review is not None and (images or model):
        raise ConfigError("--review pushes a tasks file as it is: leave out IMAGES and --model")
    declared = parse_conventions(convention or [])
    if review is None and not images and not interactive and not declared:
        raise ConfigError("nothing to push: give photos (files, folders, globs, data/raw) or --review FILE")
    # Local mistakes (a missing path, a glob matching nothing) are reported before Label Studio is asked.
    gathered = gather_images(images) if review is None and images else Gathered([], [], [])
    # Only a --mask the user chose must match an existing project (its own kind wins over the default).
    source = ctx.get_parameter_source("mask")  # by name: Typer vendors its own Click
    chosen_mask = mask if source is not None and source.name != "DEFAULT" else None
    client = _client(url)
    if review is None and not images:  # --interactive or --convention alone: a project made earlier
        _project_settings(client, project, interactive, declared, json_output)
        return
    loaded = None
    if review is not None:
        result = push_tasks_file(client, project, review, local_root, reporter(json_output), declared)
    else:
        loaded = (
            load_predictor(model, device, conf, img_size, precision, calibration or images) if model else None
        )
        result = push_images(
            client,
            project,
            gathered.images,
            loaded,
            [c.strip() for c in classes.split(",") if c.strip()] if classes else None,
            conf,
            chosen_mask,
            local_root,
            batch_size,
            reporter=reporter(json_output),
            attributes=load_schema(attributes) if attributes is not None else None,
            interactive=interactive,
            conventions=declared,
        )
    threshold = threshold_record(loaded) if loaded is not None else None
    if json_output:
        print_json({**result.to_dict(), "threshold": threshold, **skipped_json(gathered)})
    else:
        note_skipped_photos(gathered)
        for note in result.notes:
            console.print(Text(f"note: {note}"), soft_wrap=True)
        made = "created" if result.created else "existing"
        model = f"; model {result.model_version} ({threshold_words(loaded)})" if loaded is not None else ""
        console.print(
            f"[green]pushed[/green] {result.added} photo(s) to {made} project {escape(repr(result.project))} "
            f"(id {result.project_id}): {result.predictions} with predictions, "
            f"{result.already_there} already there{escape(model)}"
        )
    for failed in result.failed:
        err_console.print(Text(f"error: {failed['error']}", style="red"), soft_wrap=True)
    if result.failed:
        from officescore.errors import BadImageError

        raise BadImageError(
            f"{len(result.failed)} photo(s) could not be read (listed above); the others were pushed"
        )


def _project_settings(
    client: LabelStudio,
    title: str,
    interactive: bool,
    declared: dict[str, Declared | None],
    json_output: bool,
) -> None:
    """`label push --interactive` and/or `--convention` without photos: the click-to-mask tools and
    the labelling instructions of a project made earlier."""
    from officescore.label.push import add_smart_tools, declare_conventions

    found = client.project(title)
    tooled = add_smart_tools(client, found) if interactive else found
    notes = declare_conventions(client, tooled, declared) if declared else []
    if json_output:
        print_json(
            {"project_id": tooled.id, "project": tooled.title, "interactive": interactive, "notes": notes}
        )
        return
    if interactive:
        console.print(
            Text(f"project {tooled.title!r} (id {tooled.id}) has the click-to-mask tools"), soft_wrap=True
        )
    for note in notes:
        console.print(Text(f"note: {note}"), soft_wrap=True)


@label_app.command("pull", epilog=PULL_EXAMPLES)
def pull(
    url: str = typer.Option(DEFAULT_URL, "--url", envvar=URL_ENV, help=URL_HELP),
    project: str = typer.Option(..., "--project", "-p", help=PROJECT_HELP),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for annotations.json and images/ (replaced)."),
    ingest: Path = typer.Option(None, "--ingest", help="Then ingest the export into this data-set folder."),
    local_root: Path = typer.Option(
        None,
        "--local-root",
        help="Label Studio's LOCAL_FILES_DOCUMENT_ROOT: read local-files photos from it.",
    ),
    json_output: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
) -> None:
    """Export a project's annotations as COCO + photos that `officescore ingest` reads unchanged."""
    from officescore.label.client import check_project_title
    from officescore.label.pull import pull_project

    check_project_title(project)
    with said_when_stopped("nothing written; --out is as it was"):
        result = pull_project(_client(url), project, out, local_root, reporter(json_output))
    ingested, before = None, None
    if ingest is not None and not result.images:  # else ingest blames the export it was just given
        from officescore.errors import DataError

        raise DataError(
            f"nothing to ingest: no task of project {project!r} is labelled yet ({result.unlabelled} "
            f"not labelled; wrote {result.export}); label some in Label Studio, then pull again"
        )
    if ingest is not None:
        from officescore.cli.ingest import earlier_data_set, split_settings
        from officescore.ingest import ingest_export

        before = earlier_data_set(ingest)
        with said_when_stopped(f"wrote {result.export}; the --ingest data set is as it was"):
            ingested = ingest_export(
                result.export,
                out=ingest,
                reporter=reporter(json_output),
                attributes=result.attributes,  # the project's own questions: none asked, none recorded
                **split_settings(before),  # the data set's seed and val fraction: its photos keep their split
            )
    if json_output:
        print_json({"pull": result.to_dict(), "ingest": ingested.to_dict() if ingested else None})
        return
    console.print(
        f"[green]wrote[/green] {escape(str(result.export))}: {result.images} photo(s), "
        f"{result.annotations} object(s), {len(result.classes)} classes; "
        f"{result.unlabelled} task(s) not labelled yet",
        soft_wrap=True,
    )
    if result.ignore_regions:
        console.print(
            f"{result.ignore_regions} rectangle(s) written as ignore regions (an object neither learnt "
            "from nor counted as missed; draw a polygon or brush mask to train on it)",
            soft_wrap=True,
        )
    if result.several:
        console.print(
            f"note: {result.several} task(s) were labelled more than once (several labellers?); "
            "the newest annotation of each counted",
            soft_wrap=True,
        )
    for twice in result.duplicates:
        others = ", ".join(str(t) for t in twice["tasks"] if t != twice["counted"])
        console.print(
            Text(
                f"note: {twice['photo']} is in tasks {', '.join(str(t) for t in twice['tasks'])}; the labels "
                f"of task {twice['counted']} counted (annotated last), those of task(s) {others} not: "
                "delete the tasks you do not want in Label Studio"
            ),
            soft_wrap=True,
        )
    for tag, count in result.skipped.items():
        err_console.print(
            Text(
                f"warning: left out {count} region(s) of {tag}: pull reads masks (polygon or brush "
                "regions) and rectangles (ignore regions); redraw them with the polygon or brush tool",
                style="yellow",
            ),
            soft_wrap=True,
        )
    if ingested is not None:
        from officescore.cli.ingest import print_ingest_notes

        counts = ingested.counts
        console.print(
            f"[green]ingested[/green] into {escape(str(ingested.out))}: {counts['train']['images']} train / "
            f"{counts['val']['images']} val images, {len(ingested.problems)} problem(s) fixed or dropped",
            soft_wrap=True,
        )
        print_ingest_notes(ingested, before)


@label_app.command("backend", epilog=BACKEND_EXAMPLES)
def backend(
    model: str = typer.Option(
        ..., "--model", "-m", help="Checkpoint, run folder or runs/train (newer best.pt picked up)."
    ),
    port: int = typer.Option(9090, "--port", help="Port to listen on."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0: every interface)."),
    url: str = typer.Option(
        DEFAULT_URL, "--url", envvar=URL_ENV, help=URL_HELP + " The backend reads uploaded photos from it."
    ),
    connect: str = typer.Option(None, "--connect", help="Also connect the backend to this project."),
    local_root: Path = typer.Option(
        None,
        "--local-root",
        help="Label Studio's LOCAL_FILES_DOCUMENT_ROOT: read local-files photos from it.",
    ),
    conf: float = typer.Option(
        None,
        "--conf",
        help="Suggest detections with at least this class score (0-1). Default 0.3; for a model a --train "
        "job made (its run folder's suggest.json), its own threshold on its suggestion score "
        "(class score x mask score², so that badly outlined objects are not suggested): the one with the "
        "best mask F1 on its val photos (averaged over resamples), no less precise there than the model it "
        "replaced.",
    ),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or mps."),
    img_size: int = typer.Option(None, "--img-size", help="Longest image side fed to the model."),
    precision: str = typer.Option("auto", "--precision", help=PRECISION_HELP),
    calibration: list[str] = typer.Option(
        None, "--calibration", help=CALIBRATION_HELP + " Needed with --precision int8."
    ),
    train: bool = typer.Option(
        False,
        "--train",
        help="Retrain from the project's labels while people label (needs --connect; CPU minutes per job).",
    ),
    train_every: int = typer.Option(
        DEFAULT_EVERY, "--train-every", help="--train: start a job after this many new labels."
    ),
    train_epochs: int = typer.Option(
        DEFAULT_EPOCHS, "--train-epochs", help="--train: epochs per job at most."
    ),
    train_minutes: float = typer.Option(
        DEFAULT_MINUTES,
        "--train-minutes",
        help="--train: minutes of training per job at most (checked after every step).",
    ),
    weights: str = typer.Option(
        "coco", "--weights", help="--train: the first model's start (coco, imagenet, none or a .pt)."
    ),
    arch: str = typer.Option(TRAIN_ARCH, "--arch", help="--train: the first model's architecture."),
    train_img_size: int = typer.Option(
        DEFAULT_IMG_SIZE, "--train-img-size", help="--train: longest image side in training."
    ),
    backend_dir: Path = typer.Option(
        Path("runs/label-backend"),
        "--backend-dir",
        help="--train: the backend's folder (state.json, learning_curve.png, jobs/).",
    ),
    repredict: bool = typer.Option(
        False,
        "--repredict",
        help="--train: after each job, predict each unlabelled task lacking the current model's prediction.",
    ),
    mask: str = typer.Option(
        "brush", "--mask", help="Answer clicks and boxes with a brush mask or a polygon (brush, polygon)."
    ),
) -> None:
    """Serve the model as a Label Studio ML backend (health, setup, predict, clicks, webhook)."""
    from officescore.config import secret
    from officescore.errors import ConfigError
    from officescore.label import backend as ml
    from officescore.label.client import LabelStudio, api_key
    from officescore.label.interactive.service import ClickService
    from officescore.label.predict import NO_MODEL, RunsFolder, resolve_model

    log = lambda m: err_console.print(Text(m, style="dim"), soft_wrap=True)  # noqa: E731
    clicks = ClickService(mask, log=log)  # a bad --mask: before connecting to anything
    if train and not connect:  # local mistakes first, before Label Studio is contacted
        raise ConfigError("--train needs --connect PROJECT: the project whose labels it trains on")
    if conf is not None and not 0.0 <= conf <= 1.0:
        raise ConfigError(f"--conf {conf}: must be between 0 and 1")
    source = RunsFolder(model) if Path(model).is_dir() else model  # an empty runs folder: no model yet
    if not train:  # with --train the trainer names the model (none before its first job)
        resolve_model(source)  # a missing checkpoint is named before Label Studio is contacted
    key = api_key() if connect else secret("label", "api_key")
    client = LabelStudio.connect(url, key) if key else None
    # The project is looked up before anything is announced: a typo fails without a banner.
    project = client.project(connect) if (client is not None and connect) else None
    trainer = None
    if train:
        from officescore.label.live import start_trainer

        trainer = start_trainer(
            client,
            key,
            connect,
            url,
            model,
            backend_dir,
            local_root,
            device,
            every=train_every,
            epochs=train_epochs,
            minutes=train_minutes,
            weights=weights,
            arch=arch,
            img_size=train_img_size,
            log=log,
        )
    server_backend = ml.Backend(
        source,
        client,
        local_root,
        device,
        conf,
        img_size,
        log=log,
        precision=precision,
        calibration=calibration or (),
        trainer=trainer,
        clicks=clicks,
    )
    if trainer is not None:
        from officescore.label.live import after_jobs

        after_jobs(trainer, server_backend, repredict)
    server = ml.make_server(server_backend, host, port)
    address = ml.url_of(server) if host not in ("0.0.0.0", "::") else f"http://127.0.0.1:{port}"
    version = server_backend.model_version
    what = (
        f"no model yet (nothing suggested until {model} holds a best.pt)"
        if version == NO_MODEL
        else f"{version} ({server_backend.suggests()})"
    )
    # From the first request on, Ctrl-C and SIGTERM set `stop` (see stop_signals): the finally runs.
    with stop_signals() as stop:
        thread = ml.start(server)
        try:
            console.print(Text(f"ML backend for {what} at {address} (Ctrl+C stops it)"), soft_wrap=True)
            console.print(Text(clicks.clicker(server_backend.current()).describe()), soft_wrap=True)
            if trainer is not None:
                console.print(Text(trainer.describe()), soft_wrap=True)
            if project is not None and client is not None:
                client.connect_backend(project.id, address, interactive=True)
                missing = missing_tools_line(project)
                if missing is not None:
                    console.print(Text(missing), soft_wrap=True)
                connected = f"connected to project {project.title!r} (id {project.id}) at {client.url}"
                console.print(Text(connected), soft_wrap=True)
            if trainer is not None:
                trainer.poke()  # labels counted before a restart may already be due
            while thread.is_alive() and not stop.wait(0.5):
                pass
        finally:
            server.shutdown()
            server.server_close()
            if trainer is not None:
                trainer.close()
    console.print("stopped", soft_wrap=True)


def missing_tools_line(project: Project) -> str | None:
    """What `label backend` says of a project whose labelling config lacks click-to-mask tools (all,
    or one: a hand-made config with a smart box and no click tool gets no clicks); None: it has them."""
    from officescore.label.formats import missing_smart_tools

    fix = f"`officescore label push --project {project.title!r} --interactive` adds"
    if not project.schema.interactive:
        return f"project {project.title!r} has no click-to-mask tools yet: {fix} them"
    missing = missing_smart_tools(project.config)
    if missing:
        return f"project {project.title!r} has a smart tool but no {' and no '.join(missing)}: {fix} it"
    return None


STATUS_EXAMPLES = """
[bold]Examples[/bold]

  officescore label status --project offices

  officescore label status --project offices --backend-dir runs/label-backend --json
"""


@label_app.command("status", epilog=STATUS_EXAMPLES)
@said_when_stopped()  # it only reads
def status(
    url: str = typer.Option(DEFAULT_URL, "--url", envvar=URL_ENV, help=URL_HELP),
    project: str = typer.Option(..., "--project", "-p", help=PROJECT_HELP),
    backend_dir: Path = typer.Option(
        Path("runs/label-backend"), "--backend-dir", help="The folder of `label backend --train`."
    ),
    json_output: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
) -> None:
    """Show per model version: photos trained on, val mAP, training time, how labellers changed its
    suggestions and why they did not keep one (redrawn, reclassed, deleted)."""
    from rich.table import Table

    from officescore.label.client import check_project_title
    from officescore.label.feedback import project_status

    check_project_title(project)
    document = project_status(_client(url), project, backend_dir)
    if json_output:
        print_json(document)
        return
    title = f"{project}: {document['labelled_tasks']} of {document['tasks']} task(s) labelled"
    if not document["versions"]:  # a line, not empty tables
        if document.get("pending_labels") is None:  # no backend has run here for this project
            why = (
                f"(none in {backend_dir}, no predictions in the project): start "
                "`officescore label backend --train`, or push with --model"
            )
        else:  # it has: telling the labeller to start it was wrong while its first job ran
            why = f"(the backend in {backend_dir} has trained none yet)"
        console.print(Text(f"{title}; no model has suggested labels here yet {why}"), soft_wrap=True)
        _print_answering(document)
        return
    # Tables of six columns, not one of seventeen: each fits 80 characters without cutting numbers
    # (the first two without cutting a `--train` version's name either).
    trained = Table(
        title=Text(title),
        title_justify="left",
        caption="conf: its own threshold, on class x mask score² (-: 0.30 on the class score)",
        caption_justify="left",
    )
    for column in ("model version", "photos", "mask mAP", "box mAP", "conf", "train s"):
        trained.add_column(column, justify="left" if column == "model version" else "right")
    changed = Table(
        title="how labellers changed its suggestions",
        title_justify="left",
        caption="tasks: labelled after its suggestion / holding one",
        caption_justify="left",
    )
    for column in ("model version", "tasks", "kept", "added", "kept IoU", "from sugg."):
        changed.add_column(column, justify="left" if column == "model version" else "right")
    unkept = Table(title="suggestions not kept, by what labellers did", title_justify="left")
    for column in ("model version", "not kept", "redrawn", "reclassed", "deleted", "most of them"):
        unkept.add_column(column, justify="left" if column in ("model version", "most of them") else "right")

    def num(value: object, digits: int = 3) -> str:
        return "-" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)

    def share(value: float | None) -> str:
        return "-" if value is None else f"{value:.0%}"

    for row in document["versions"]:
        worse = " (worse, unused)" if row.get("accepted") is False else ""
        version = Text(f"{row.get('model_version')}{worse}")
        trained.add_row(
            version,
            num(row.get("trained_photos")),
            num(row.get("segm_map")),
            num(row.get("bbox_map")),
            _threshold(row.get("suggest") or {}),
            num(row.get("train_seconds"), 0),
        )
        changed.add_row(
            version,
            f"{num(row.get('tasks'))}/{num(row.get('suggested'))}",
            share(row.get("kept_share")),
            num(row.get("added")),
            num(row.get("mean_kept_iou"), 2),
            share(row.get("from_suggestions")),
        )
        if row.get("predicted"):
            not_kept = int(row["predicted"]) - int(row.get("kept") or 0)
            causes = (num(row.get(key)) for key in ("redrawn", "reclassed", "deleted"))
            unkept.add_row(
                version, str(not_kept), *causes, Text(_most_not_kept(row.get("not_kept_by_class") or {}))
            )
    console.print(trained)
    console.print(changed)
    if unkept.row_count:
        console.print(unkept)
    _print_answering(document)


def _print_answering(document: dict[str, Any]) -> None:
    """The backend's answering model and the labels counted towards its next job, if it has run."""
    if document.get("pending_labels") is None:
        return
    running = document.get("running_job")
    console.print(
        Text(
            f"answering: {document.get('model_version') or 'no model yet'}; "
            f"{document['pending_labels']} label(s) since the last model"
            + (f"; job {running} is training" if running else "")
        ),
        soft_wrap=True,
    )
    # Failures since the newest model a job made (older ones were got over); else --json only said.
    newest = max((int(v.get("job") or 0) for v in document["versions"]), default=0)
    failures = [f for f in document.get("failures") or [] if int(f.get("job") or 0) > newest]
    if failures:
        last = failures[-1]
        console.print(
            Text(
                f"{len(failures)} job(s) failed since the last model; the last, job {last.get('job')}: "
                f"{last.get('error')}"
            ),
            soft_wrap=True,
        )
    left_out = document.get("left_out") or {}
    if left_out:  # named by the failed job too, but a later model hides that failure
        console.print(
            Text(
                f"{len(left_out)} labelled task(s) left out of training until labelled again:"
                + "".join(f"\n  {left_out[task]}" for task in sorted(left_out, key=int))
            ),
            soft_wrap=True,
        )


def _threshold(suggest: dict[str, object]) -> str:
    """A version's own threshold (found on its job's val photos); one from before mask scores is on
    the class score alone."""
    conf = suggest.get("conf")
    if not isinstance(conf, float | int):
        return "-"
    return f"{conf:.2f}" if suggest.get("by_mask") else f"{conf:.2f} (class)"


def _most_not_kept(by_class: dict[str, dict[str, int]], shown: int = 2) -> str:
    """The classes with the most suggestions not kept, most first: "desk 12, chair 3"."""
    totals = sorted(
        ((sum(causes.values()), name) for name, causes in by_class.items()), key=lambda t: (-t[0], t[1])
    )
    return ", ".join(f"{name} {count}" for count, name in totals[:shown]) or "-"


def register(app: typer.Typer) -> None:
    app.add_typer(label_app, name="label", epilog=EXAMPLES)
