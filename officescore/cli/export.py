"""`officescore export`: a checkpoint as TorchScript or ONNX, verified against the checkpoint."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.text import Text

from officescore.cli.common import console, print_json, reporter, said_when_stopped

EXAMPLES = """
[bold]Examples[/bold]

  officescore export --model runs/train/train/weights/best.pt     # writes best.torchscript.pt

  officescore score office.jpg --model runs/train/train/weights/best.torchscript.pt

  officescore export --model best.pt --format onnx --input-size 800x800 --out office.onnx

TorchScript keeps every feature (any image size, masks) and is what score, eval and serve load.
A checkpoint with an attribute head (trained on labelled attributes, as `sample` writes) is
refused: neither format carries it yet; train with --no-attributes for a model to export.
torch.export / AOTInductor (pt2) cannot capture Mask R-CNN's data-dependent shapes (NMS, RoI
pooling) in torch 2.14; `--format pt2` says so instead of writing a file.
ONNX takes one image of a fixed size; the export is refused if onnxruntime's detections or masks
differ from the checkpoint's on a sample image.
"""


def _parse_size(text: str | None) -> tuple[int, int] | None:
    from officescore.errors import ConfigError

    if not text:
        return None
    parts = text.lower().replace("*", "x").split("x")
    try:
        size = (int(parts[0]), int(parts[-1])) if len(parts) in (1, 2) else None
    except ValueError:
        size = None
    if size is None or min(size) < 32:
        raise ConfigError(f"--input-size {text}: use HEIGHTxWIDTH (e.g. 800x800) or one number, at least 32")
    return size


def export(
    model: Path = typer.Option(
        ..., "--model", "-m", help="Checkpoint from `officescore train` (weights/best.pt), or its run folder."
    ),
    fmt: str = typer.Option("torchscript", "--format", "-f", help="torchscript or onnx."),
    out: Path = typer.Option(None, "--out", "-o", help="Output file (default: next to the checkpoint)."),
    sample: Path = typer.Option(
        None, "--sample", help="Photo to verify the export on (default: a synthetic scene)."
    ),
    input_size: str = typer.Option(
        None, "--input-size", help="ONNX only: fixed HEIGHTxWIDTH (default: model size)."
    ),
    opset: int = typer.Option(11, "--opset", help="ONNX only: opset version (11 or newer)."),
    json_output: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
) -> None:
    """Export a checkpoint to TorchScript or ONNX and check it gives the checkpoint's detections."""
    from officescore.export import export_model

    result = export_model(
        model,
        fmt,
        out=out,
        sample=sample,
        input_size=_parse_size(input_size),
        opset=opset,
        reporter=reporter(json_output),
    )
    if json_output:
        print_json(result.to_dict())
        return
    parity = result.parity
    masks = "" if parity.mean_mask_diff is None else f", mean mask difference {parity.mean_mask_diff:.2g}"
    console.print(
        f"wrote [bold]{escape(str(result.path))}[/bold] ({result.format}, {result.size_bytes / 1e6:.1f} MB, "
        f"{len(result.classes)} classes)"
    )
    console.print(
        f"checked on a sample: {parity.detections} detections, same labels, "
        f"max box difference {parity.max_box_diff:.2g} px{masks}"
    )
    for note in result.notes:
        console.print(Text(note))


def register(app: typer.Typer) -> None:
    app.command("export", epilog=EXAMPLES)(said_when_stopped("nothing written; --out is as it was")(export))
