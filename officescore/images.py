"""Safe image loading shared by every stage: EXIF orientation, truncation and bomb checks."""

from __future__ import annotations

import warnings
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from officescore.errors import BadImageError

# Pillow warns above MAX_IMAGE_PIXELS and raises above twice that; we refuse at the limit.
MAX_PIXELS = 89_478_485  # Pillow's own default: about 9459 x 9459


def _open(path: Path, max_pixels: int) -> Image.Image:
    if not path.exists():
        raise BadImageError(f"{path}: no such file")
    if path.is_dir():
        raise BadImageError(f"{path}: is a folder, not an image")
    if path.stat().st_size == 0:
        raise BadImageError(f"{path}: empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path)
            width, height = image.size
            if width * height > max_pixels:
                raise BadImageError(
                    f"{path}: {width}x{height} is over the {max_pixels:,}-pixel limit "
                    "(possible decompression bomb); resize it first"
                )
            return image
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadImageError(f"{path}: too many pixels (possible decompression bomb)") from exc
    except UnidentifiedImageError as exc:
        raise BadImageError(f"{path}: not an image Pillow can read") from exc
    except OSError as exc:
        raise BadImageError(f"{path}: cannot read ({exc})") from exc


def image_size(path: Path, max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """(width, height) as displayed, i.e. after EXIF orientation, without decoding pixels."""
    image = _open(Path(path), max_pixels)
    width, height = image.size
    orientation = image.getexif().get(0x0112, 1)
    image.close()
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def load_image(path: Path, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode fully (so truncation is caught here), apply EXIF orientation, return RGB."""
    path = Path(path)
    image = _open(path, max_pixels)
    try:
        image.load()
        image = ImageOps.exif_transpose(image)
        return image.convert("RGB")
    except OSError as exc:
        raise BadImageError(f"{path}: truncated or corrupt image ({exc})") from exc
