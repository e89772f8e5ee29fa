"""How far apart (phash Hamming distance) are copies of one image, and unrelated images?

Picks the default `--near-dup-threshold` of `officescore scrape`. Copies: resized, re-encoded,
slightly cropped, brightened, blurred. Unrelated: every pair of distinct base images, including
synthetic office scenes from one generator (similar layouts: the hard case).

Measured (imagehash 4.3.2, 11 images, 55 unrelated pairs):
    resize 25-50 %, JPEG q=30, resize+re-encode, brightness, blur: 0-4
    crop 2 % each side: <= 8; crop 5 %: 4-16 (median 10); crop 10 %: 8-26; small watermark: 4-18
    horizontal flip: 28-36 (phash treats a mirror as another picture)
    unrelated pairs: 20-40 (median 32); synthetic office scenes alone: 20-36
Default threshold 10: every resized/re-encoded copy and most light crops are caught, and the
closest unrelated pair measured (20) is still twice as far away.

    .venv/bin/python bench/near_duplicates.py
"""

from __future__ import annotations

import io
import itertools
import sys
from collections.abc import Callable
from pathlib import Path

import imagehash
from matplotlib import cbook
from PIL import Image, ImageEnhance, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from fakeservers import scene  # noqa: E402

from officescore.sample import render_scene  # noqa: E402


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def crop(image: Image.Image, fraction: float) -> Image.Image:
    dx, dy = int(image.width * fraction), int(image.height * fraction)
    return image.crop((dx, dy, image.width - dx, image.height - dy))


def resize(image: Image.Image, factor: float) -> Image.Image:
    return image.resize((int(image.width * factor), int(image.height * factor)), Image.Resampling.LANCZOS)


COPIES: dict[str, Callable[[Image.Image], Image.Image]] = {
    "resize 50%": lambda im: resize(im, 0.5),
    "resize 25%": lambda im: resize(im, 0.25),
    "jpeg q=30": lambda im: jpeg(im, 30),
    "resize 75% + jpeg q=60": lambda im: jpeg(resize(im, 0.75), 60),
    "crop 2% each side": lambda im: crop(im, 0.02),
    "crop 5% each side": lambda im: crop(im, 0.05),
    "crop 10% each side": lambda im: crop(im, 0.10),
    "brightness +15%": lambda im: ImageEnhance.Brightness(im).enhance(1.15),
    "gaussian blur r=1.5": lambda im: im.filter(ImageFilter.GaussianBlur(1.5)),
    "watermark-ish box": lambda im: _box(im),
    "horizontal flip": lambda im: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
}


def _box(image: Image.Image) -> Image.Image:
    copy = image.copy()
    w, h = copy.size
    copy.paste((255, 255, 255), (w - w // 5, h - h // 12, w - 4, h - 4))
    return copy


def base_images() -> dict[str, Image.Image]:
    photo = Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("RGB")
    images = {
        "photo grace_hopper": photo,
        "photo grace_hopper mirrored": photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
    }
    images.pop("photo grace_hopper mirrored")  # a mirror is a different picture for phash; kept out of bases
    for seed in range(6):
        images[f"office scene {seed}"] = render_scene(seed, size=512).image
    for seed in range(4):
        images[f"shapes {seed}"] = scene(seed, (480, 360))
    return images


def main() -> None:
    bases = base_images()
    hashes = {name: imagehash.phash(image) for name, image in bases.items()}
    print(
        f"{'copy':28s} {'min':>4s} {'median':>6s} {'max':>4s}   (distance to original, {len(bases)} images)"
    )
    for label, make in COPIES.items():
        distances = sorted(hashes[n] - imagehash.phash(make(im)) for n, im in bases.items())
        print(f"{label:28s} {distances[0]:4d} {distances[len(distances) // 2]:6d} {distances[-1]:4d}")
    pairs = sorted(hashes[a] - hashes[b] for a, b in itertools.combinations(bases, 2))
    scenes = sorted(
        hashes[a] - hashes[b] for a, b in itertools.combinations([n for n in bases if "office" in n], 2)
    )
    print(f"{'unrelated pairs':28s} {pairs[0]:4d} {pairs[len(pairs) // 2]:6d} {pairs[-1]:4d}  ({len(pairs)})")
    print(f"{'  of which office scenes':28s} {scenes[0]:4d} {scenes[len(scenes) // 2]:6d} {scenes[-1]:4d}")


if __name__ == "__main__":
    main()
