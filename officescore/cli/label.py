"""`officescore label push|pull|backend`: work with a running Label Studio."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.text import Text

from officescore.cli.common import (
    CALIBRATION_HELP,
    PRECISION_HELP,
    console,
    err_console,
    print_json,
    reporter,
)

EXAMPLES = """
[bold]Examples[/bold]

  export LABEL_STUDIO_API_KEY=...        (Account & Settings -> Personal Access Token)

  officescore label push data/raw --project offices --model runs/train

  officescore label pull --project offices --out export/ --ingest data/dataset

  officescore label backend --model runs/train --port 9090 --connect offices

  officescore label push --review runs/audit/audit/labelstudio.json --project offices-review
"""

PUSH_EXAMPLES = """
[bold]Examples[/bold]

  officescore label push data/raw --project offices --model runs/train

  officescore label push photos/ --project offices --classes desk,chair,monitor

  officescore label push /srv/ls-files/photos --project offices --model best.pt --local-root /srv/ls-files

  officescore label push --review tasks.json --project offices-review
"""

PULL_EXAMPLES = """
[bold]Examples[/bold]

  officescore label pull --project offices --out export/

  officescore label pull --project offices --out export/ --ingest data/dataset
"""

BACKEND_EXAMPLES = """
[bold]Examples[/bold]

  officescore label backend --model runs/train --port 9090

  officescore label backend --model runs/train --connect offices     (connects it to the project too)

Label Studio must allow a backend on this machine: start it with ML_BLOCK_LOCAL_IP=false
(and SSRF_PROTECTION_ENABLED=false) or give the backend another address with --host.
"""

label_app = typer.Typer(
    help="Label Studio: push photos and predictions, pull annotations, serve live suggestions.",
    no_args_is_help=True,
)

URL_HELP = "Label Studio's address."
PROJECT_HELP = "Project title (3-50 characters)."


def _client(url: str):  # noqa: ANN202 - keeps label-studio-sdk out of import time
    from officescore.label.client import LabelStudio, api_key

    return LabelStudio.connect(url, api_key())


@label_app.command("push", epilog=PUSH_EXAMPLES)
def push(
    images: list[str] = typer.Argument(None, help="Photos, folders, globs or a scrape folder (data/raw)."),
    url: str = typer.Option("http://localhost:8080", "--url", help=URL_HELP),
    project: str = typer.Option(..., "--project", "-p", help=PROJECT_HELP),
    model: str = typer.Option(
        None, "--model", "-m", help="Attach this model's predictions (checkpoint, run folder, coco)."
    ),
    classes: str = typer.Option(
        None,
        "--classes",
        help="Comma-separated classes for a new project (default: the model's, else the office classes).",
    ),
    conf: float = typer.Option(0.3, "--conf", help="Keep detections with at least this score (0-1)."),
    mask: str = typer.Option("polygon", "--mask", help="Region kind of a new project: polygon or brush."),
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
    json_output: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
) -> None:
    """Create or reuse a project and add photos not yet in it (with the model's predictions)."""
    from officescore.errors import ConfigError
    from officescore.label.client import check_project_title
    from officescore.label.formats import MASK_KINDS
    from officescore.label.predict import load_predictor
    from officescore.label.push import push_images, push_tasks_file

    check_project_title(project)
    if mask not in MASK_KINDS:
        raise ConfigError(f"--mask {mask}: use one of {', '.join(MASK_KINDS)}")
    if not 0.0 <= conf <= 1.0:
        raise ConfigError(f"--conf {conf}: must be between 0 and 1")
    if review is not None and (images or model):
        raise ConfigError("--review pushes a tasks file as it is: leave out IMAGES and --model")
    if review is None and not images and not interactive:
        raise ConfigError("nothing to push: give photos (files, folders, globs, data/raw) or --review FILE")
    client = _client(url)
    if review is None and not images:  # --interactive alone: the tools for a project made earlier
        from officescore.label.push import add_smart_tools

        tooled = add_smart_tools(client, project)
        if json_output:
            print_json({"project_id": tooled.id, "project": tooled.title, "interactive": True})
        else:
            console.print(
                f"project {tooled.title!r} (id {tooled.id}) has the click-to-mask tools", soft_wrap=True
            )
        return
    if review is not None:
        result = push_tasks_file(client, project, review, local_root, reporter(json_output))
    else:
        loaded = (
            load_predictor(model, device, conf, img_size, precision, calibration or images) if model else None
        )
        result = push_images(
            client,
            project,
            images,
            loaded,
            [c.strip() for c in classes.split(",") if c.strip()] if classes else None,
            conf,
            mask,
            local_root,
            batch_size,
            reporter=reporter(json_output),
            interactive=interactive,
        )
    if json_output:
        print_json(result.to_dict())
    else:
        made = "created" if result.created else "existing"
        console.print(
            f"[green]pushed[/green] {result.added} photo(s) to {made} project {result.project!r} "
            f"(id {result.project_id}): {result.predictions} with predictions, "
            f"{result.already_there} already there"
            + (f"; model {result.model_version}" if result.model_version else "")
        )
    for failed in result.failed:
        err_console.print(Text(f"error: {failed['error']}", style="red"), soft_wrap=True)
    if result.failed:
        from officescore.errors import BadImageError

        raise BadImageError(
            f"{len(result.failed)} photo(s) could not be read (listed above); the others were pushed"
        )


@label_app.command("pull", epilog=PULL_EXAMPLES)
def pull(
    url: str = typer.Option("http://localhost:8080", "--url", help=URL_HELP),
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
    result = pull_project(_client(url), project, out, local_root, reporter(json_output))
    ingested = None
    if ingest is not None:
        from officescore.ingest import ingest_export

        ingested = ingest_export(result.export, out=ingest, reporter=reporter(json_output))
    if json_output:
        print_json({"pull": result.to_dict(), "ingest": ingested.to_dict() if ingested else None})
        return
    console.print(
        f"[green]wrote[/green] {result.export}: {result.images} photo(s), {result.annotations} object(s), "
        f"{len(result.classes)} classes; {result.unlabelled} task(s) not labelled yet",
        soft_wrap=True,
    )
    if ingested is not None:
        counts = ingested.counts
        console.print(
            f"[green]ingested[/green] into {ingested.out}: {counts['train']['images']} train / "
            f"{counts['val']['images']} val images, {len(ingested.problems)} problem(s) fixed or dropped",
            soft_wrap=True,
        )


@label_app.command("backend", epilog=BACKEND_EXAMPLES)
def backend(
    model: str = typer.Option(
        ..., "--model", "-m", help="Checkpoint, run folder or runs/train (newer best.pt picked up)."
    ),
    port: int = typer.Option(9090, "--port", help="Port to listen on."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0: every interface)."),
    url: str = typer.Option(
        "http://localhost:8080", "--url", help="Label Studio, to read uploaded photos from."
    ),
    connect: str = typer.Option(None, "--connect", help="Also connect the backend to this project."),
    local_root: Path = typer.Option(
        None,
        "--local-root",
        help="Label Studio's LOCAL_FILES_DOCUMENT_ROOT: read local-files photos from it.",
    ),
    conf: float = typer.Option(0.3, "--conf", help="Keep detections with at least this score (0-1)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or mps."),
    img_size: int = typer.Option(None, "--img-size", help="Longest image side fed to the model."),
    precision: str = typer.Option("auto", "--precision", help=PRECISION_HELP),
    calibration: list[str] = typer.Option(
        None, "--calibration", help=CALIBRATION_HELP + " Needed with --precision int8."
    ),
    mask: str = typer.Option(
        "brush", "--mask", help="Answer clicks and boxes with a brush mask or a polygon (brush, polygon)."
    ),
) -> None:
    """Serve the model as a Label Studio ML backend (health, setup, predict, clicks, webhook)."""
    from officescore.config import secret
    from officescore.label import backend as ml
    from officescore.label.client import API_KEY_ENV, LabelStudio
    from officescore.label.interactive.service import ClickService
    from officescore.label.predict import NO_MODEL, RunsFolder

    clicks = ClickService(mask)  # a bad --mask: before connecting to anything
    key = secret(API_KEY_ENV, "label", "api_key")
    client = LabelStudio.connect(url, key) if (key or connect) else None
    server_backend = ml.Backend(
        RunsFolder(model) if Path(model).is_dir() else model,  # an empty runs folder: no model yet
        client,
        local_root,
        device,
        conf,
        img_size,
        log=lambda m: err_console.print(Text(m, style="dim"), soft_wrap=True),
        precision=precision,
        calibration=calibration or (),
    )
    clicks.log = server_backend.log
    server_backend.clicks = clicks
    server = ml.make_server(server_backend, host, port)
    thread = ml.start(server)
    address = ml.url_of(server) if host not in ("0.0.0.0", "::") else f"http://127.0.0.1:{port}"
    version = server_backend.model_version
    what = (
        f"no model yet (nothing suggested until {model} holds a best.pt)" if version == NO_MODEL else version
    )
    console.print(f"ML backend for {what} at {address} (Ctrl+C stops it)", soft_wrap=True)
    console.print(clicks.clicker(server_backend.current()).describe(), soft_wrap=True)
    try:
        if connect:
            assert client is not None
            project = client.project(connect)
            client.connect_backend(project.id, address, interactive=True)
            if not project.schema.interactive:
                console.print(
                    f"project {project.title!r} has no click-to-mask tools yet: "
                    f"`officescore label push --project {project.title!r} --interactive` adds them",
                    soft_wrap=True,
                )
            console.print(
                f"connected to project {project.title!r} (id {project.id}) at {client.url}", soft_wrap=True
            )
        while thread.is_alive():
            time.sleep(0.5)
    finally:
        server.shutdown()
        server.server_close()


def register(app: typer.Typer) -> None:
    app.add_typer(label_app, name="label", epilog=EXAMPLES)
