"""Time to load a checkpoint (model.model_from_checkpoint) against the way it was loaded before.

    python bench/load.py                                  # four architectures, 5 repeats each
    python bench/load.py --archs maskrcnn_resnet50_fpn_v2 --repeats 9 --score 3

Each architecture's checkpoint is written here first (a seeded weights="none" model, the default
classes and sizes) and read into memory once; then, alternating in this process, the old way
(build_model(..., weights="none"), which initialises every weight at random, then a copying
load_state_dict) and model_from_checkpoint as it is now (built on the meta device, the checkpoint's
tensors taken as they are). Each repeat checks that both give the same state dict. The time is the
median; torch.load of the file is left out of both (`--with-read` puts it in).

`--coco`: also the zero-shot `coco` model (score/serve/prelabel --model coco): build_model(v2, COCO's
classes, weights="coco") against model.coco_detector, from a seeded stand-in for torchvision's COCO
file in a temporary $TORCH_HOME (the hub cache is left alone), torch.load of it inside both times.

`--score N`: also N end-to-end runs of `officescore score` on one synthetic 800x600 photo with the
default architecture's checkpoint, a fresh process each (imports, load, one forward pass, the
report), alternating the old way (patched in through `python -c`) and the new one.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchkit import cpu_name, non_negative_int, positive_int  # noqa: E402

from officescore import DEFAULT_CLASSES  # noqa: E402
from officescore.model import (  # noqa: E402
    ARCHS,
    DEFAULT_ARCH,
    build_model,
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
)

REPO = Path(__file__).resolve().parents[1]
# The old model_from_checkpoint, for the end-to-end runs: build for real, then copy the weights in.
OLD_WAY = (
    "import officescore.model as m; "
    "m.skeleton_model = lambda arch, classes, **kw: m.build_model(arch, classes, weights='none', **kw); "
    "m.load_into_skeleton = lambda model, state: model.load_state_dict(state); "
    "from officescore.cli import main; sys.argv[0] = 'officescore'; main()"
)


def write_checkpoint(folder: Path, arch: str) -> Path:
    torch.manual_seed(0)
    model = build_model(arch, list(DEFAULT_CLASSES), weights="none")
    path = folder / f"{arch}.pt"
    save_checkpoint(path, model=model.state_dict(), arch=arch, classes=list(DEFAULT_CLASSES), epoch=0)
    return path


def old_way(data: dict[str, Any]) -> torch.nn.Module:
    """model_from_checkpoint before: random initialisation, then every weight copied over it."""
    model = build_model(data["arch"], data["classes"], weights="none", **data.get("model_kwargs", {}))
    model.load_state_dict(data["model"])
    return model.eval()


def new_way(data: dict[str, Any]) -> torch.nn.Module:
    return model_from_checkpoint(data, "cpu", source="bench")[0]


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def load_times(path: Path, repeats: int, with_read: bool) -> tuple[list[float], list[float]]:
    cached = load_checkpoint(path)
    # The new way takes the checkpoint's tensors as they are; nothing here changes them, so reusing
    # one read is fair to both.
    read = (lambda: load_checkpoint(path)) if with_read else (lambda: cached)
    old, new = [], []
    for _ in range(repeats):
        t, a = timed(lambda: old_way(read()))
        old.append(t)
        t, b = timed(lambda: new_way(read()))
        new.append(t)
        if not same_weights(a, b):
            raise SystemExit(f"{path.name}: the two ways gave different weights")
        del a, b
    return old, new


def coco_times(folder: Path, repeats: int) -> tuple[list[float], list[float]]:
    import os

    import torchvision
    from torchvision.models.detection import MaskRCNN_ResNet50_FPN_V2_Weights

    from officescore.infer.predictor import coco_categories
    from officescore.model import coco_detector, hub_checkpoint_dir

    os.environ["TORCH_HOME"] = str(folder / "torch")
    cached = hub_checkpoint_dir() / Path(MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1.url).name
    cached.parent.mkdir(parents=True)
    torch.manual_seed(0)
    stand_in = torchvision.models.get_model("maskrcnn_resnet50_fpn_v2", weights=None, weights_backbone=None)
    torch.save(stand_in.state_dict(), cached)
    names = coco_categories()[1:]
    old, new = [], []
    for _ in range(repeats):
        t, a = timed(lambda: build_model(DEFAULT_ARCH, names, weights="coco"))
        old.append(t)
        t, b = timed(lambda: coco_detector(DEFAULT_ARCH, names))
        new.append(t)
        if not same_weights(a, b):
            raise SystemExit("coco: the two ways gave different weights")
    return old, new


def score_times(folder: Path, checkpoint: Path, runs: int) -> tuple[list[float], list[float]]:
    from officescore.sample import render_scene

    photo = folder / "office.jpg"
    render_scene(0, size=800).image.resize((800, 600)).save(photo)
    args = ["score", str(photo), "--model", str(checkpoint), "--json", "--device", "cpu"]
    old, new = [], []
    for _ in range(runs):
        for times, command in (
            (old, [sys.executable, "-c", "import sys; " + OLD_WAY, *args]),
            (new, [sys.executable, "-m", "officescore", *args]),
        ):
            start = time.perf_counter()
            subprocess.run(command, check=True, cwd=REPO, capture_output=True)
            times.append(time.perf_counter() - start)
    return old, new


def row(name: str, old: list[float], new: list[float]) -> str:
    a, b = statistics.median(old), statistics.median(new)
    spread = f"{min(new):.3f}-{max(new):.3f} (old {min(old):.3f}-{max(old):.3f})"
    return f"| {name} | {a:.3f} | {b:.3f} | {a / b:.1f}x | {a - b:.3f} | {spread} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archs", default=",".join(ARCHS), help="comma-separated architectures")
    parser.add_argument("--repeats", type=positive_int, default=5, help="loads per architecture and way")
    parser.add_argument("--with-read", action="store_true", help="time torch.load of the file too")
    parser.add_argument("--coco", action="store_true", help="also the zero-shot coco model")
    parser.add_argument(
        "--score", type=non_negative_int, default=0, help="end-to-end `officescore score` runs per way"
    )
    parser.add_argument("--threads", type=positive_int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {cpu_name()}")
    print("| model_from_checkpoint | before: s | now: s | speed-up | saved: s | now: min-max s |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for arch in args.archs.split(","):
            path = write_checkpoint(folder, arch.strip())
            old, new = load_times(path, args.repeats, args.with_read)
            size = path.stat().st_size / 2**20
            print(row(f"{arch} ({size:.0f} MiB)", old, new), flush=True)
        if args.coco:
            old, new = coco_times(folder, args.repeats)
            print(row(f"zero-shot coco model ({DEFAULT_ARCH}, file read included)", old, new), flush=True)
        if args.score:
            checkpoint = write_checkpoint(folder, DEFAULT_ARCH)
            old, new = score_times(folder, checkpoint, args.score)
            print(row(f"`officescore score` of one photo, {DEFAULT_ARCH}, whole process", old, new))


if __name__ == "__main__":
    main()
