"""`officescore serve`: the web page (Streamlit) for scoring uploaded photos."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
from pathlib import Path

import typer
from rich.text import Text

from officescore.cli.common import CALIBRATION_HELP, PRECISION_HELP, err_console, warn_rubric_reach

EXAMPLES = """
[bold]Examples[/bold]

  officescore serve                            # newest best.pt, else coco, on 127.0.0.1:8501

  officescore serve --model runs/train/train/weights/best.pt --port 8080

  officescore serve --model best.torchscript.pt --host 0.0.0.0

Needs the app extra: pip install 'officescore\\[app]'.
"""


def serve(
    model: str = typer.Option(
        None,
        "--model",
        "-m",
        help="Checkpoint, run folder, TorchScript export, or 'coco'. Default: newest best.pt, else coco.",
    ),
    port: int = typer.Option(8501, "--port", help="Port to listen on."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (0.0.0.0: every interface)."),
    conf: float = typer.Option(
        0.5, "--conf", help="Initial confidence threshold of the page's slider (0.05-0.95, its range)."
    ),
    rubric: Path = typer.Option(None, "--rubric", help="Rubric TOML (default: the packaged rubric)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or mps."),
    precision: str = typer.Option("auto", "--precision", help=PRECISION_HELP),
    calibration: list[str] = typer.Option(
        None, "--calibration", help=CALIBRATION_HELP + " Needed with --precision int8."
    ),
) -> None:
    """Serve the web page: upload photos, see each annotated, its objects and its score."""
    from officescore.app import SLIDER_RANGE, PageSettings, streamlit_command
    from officescore.devices import resolve_device
    from officescore.errors import ConfigError
    from officescore.infer import COCO_SOURCE, coco_label_names, expand_inputs, model_source
    from officescore.infer.score import Rubric
    from officescore.model import load_any

    low, high = SLIDER_RANGE
    if not low <= conf <= high:  # the page cannot show it: its slider would start elsewhere
        raise ConfigError(
            f"--conf {conf}: the page's slider runs from {low} to {high}; give one in that range"
        )
    source = model_source(model)  # a run folder: its best.pt, named to the page; a missing file fails
    coco = source.lower() == COCO_SOURCE
    if coco:  # the office classes COCO's map to, as `score --model coco` has them; no attributes
        kind, classes, attributes = "coco", list(dict.fromkeys(n for n in coco_label_names() if n)), None
    else:
        # An ONNX file, a damaged or foreign file (a TorchScript export too), or weights that do not
        # fit fail here, in the words `score` uses, not in the browser.
        loaded = load_any(Path(source), "cpu")
        kind, classes, attributes = loaded.kind, loaded.classes, loaded.attributes
    from officescore.infer.accel import resolve_precision

    resolved = resolve_precision(precision, resolve_device(device), kind)  # one it lacks fails here
    from officescore.infer.accel.int8 import spread

    photos = spread([str(Path(p).resolve()) for p in expand_inputs(calibration or []) if Path(p).is_file()])
    if resolved == "int8" and not photos:
        given = f"--calibration {' '.join(calibration)}: no photos there; " if calibration else ""
        raise ConfigError(
            f"{given}--precision int8 calibrates on photos like the uploads: give some with --calibration "
            "(a folder or files)"
        )
    rules = Rubric.load(rubric)  # a bad rubric fails here, not in the browser
    warn_rubric_reach(rules, classes, attributes)  # and what the model cannot meet is said, as by `score`
    settings = PageSettings(
        model=source if coco else str(Path(source).resolve()),
        device=device,
        conf=conf,
        precision=precision,
        calibration=tuple(photos) if resolved == "int8" else (),
        rubric=str(rubric.resolve()) if rubric else None,
    )
    argv, env = streamlit_command(settings, port=port, host=host)
    _check_address(host, port)
    if coco:  # last: it may download the weights
        _check_coco_weights()
    err_console.print(Text(f"serving {settings.model} at http://{host}:{port} (Ctrl+C to stop)"))
    env = {**os.environ, **env}
    sys.stdout.flush()
    if os.name == "posix":
        os.execve(argv[0], argv, env)  # streamlit replaces this process: signals reach it directly
    raise typer.Exit(subprocess.call(argv, env=env))


def _check_coco_weights() -> None:
    """`coco` without its weights in the hub cache (offline): fail here in one line, not on the page
    when the first photo is uploaded. Online they are downloaded now, once, as the page would."""
    from torchvision.models.detection import MaskRCNN_ResNet50_FPN_V2_Weights

    from officescore.infer.predictor import _coco_model
    from officescore.model import cached_weights_path

    if not cached_weights_path(MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1).is_file():
        _coco_model()  # downloads, or raises the ModelError `score --model coco` gives


def _check_address(host: str, port: int) -> None:
    """Refuse a port in use (or a --host that is not this machine's) in one line: Streamlit would
    print "serving ..." first, then a timestamped "Port N is not available" and exit 1."""
    from officescore.errors import ConfigError

    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, kind, proto) as probe:
            # As Tornado binds: a port left in TIME_WAIT by a stopped server is free to reuse.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except socket.gaierror as exc:
        raise ConfigError(f"--host {host}: not an address of this machine ({exc.strerror or exc})") from exc
    except OSError as exc:
        if exc.errno == errno.EADDRNOTAVAIL:  # a real address, but another machine's: not the port's fault
            raise ConfigError(
                f"--host {host}: not an address of this machine ({exc.strerror}); "
                "use 127.0.0.1, 0.0.0.0 (every interface) or one of its own addresses"
            ) from exc
        raise ConfigError(
            f"--port {port}: cannot listen on {host}:{port} ({exc.strerror or exc}); "
            "is another server on it? Pick another --port, or check --host"
        ) from exc


def register(app: typer.Typer) -> None:
    app.command("serve", epilog=EXAMPLES)(serve)
