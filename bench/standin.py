"""A stand-in for pretrained weights, trained on synthetic scenes (COCO weights cannot be downloaded
here). bench/assist.py starts its first model from it with the class layers dropped.

`--without lamp,bookshelf` removes those labels before training, so the model learns them as
background: COCO's detector has never been taught either class, and a start that does not know
every class is what makes retraining while labelling worth measuring.

    python bench/standin.py --out /tmp/standin --epochs 20 --without lamp,bookshelf
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from benchkit import positive_int, train_scene_model


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--scenes", type=positive_int, default=400)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--epochs", type=positive_int, default=20)
    parser.add_argument("--without", default="", help="comma-separated classes learned as background")
    args = parser.parse_args()
    without = [name.strip() for name in args.without.split(",") if name.strip()]
    started = time.monotonic()
    checkpoint = train_scene_model(
        args.out, args.scenes, args.size, args.epochs, without, val_every=5, option="--scenes"
    )
    print(f"{checkpoint} ({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
