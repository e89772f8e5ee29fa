"""Safe image loading shared by every stage: EXIF orientation, truncation and bomb checks.

`load_image` decodes every pixel (training, ingest, export samples). `load_for_model` decodes a photo
at the size a detector will resize it to (JPEGs through Pillow's draft mode, which scales in the DCT
so a 108 MP photo never exists in memory at full size) and returns the original displayed size for
the output coordinates.
"""

from __future__ import annotations

import glob
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, JpegImagePlugin, UnidentifiedImageError

from officescore.errors import BadImageError
from officescore.files import IMAGE_SUFFIXES

# Pillow warns above MAX_IMAGE_PIXELS and raises above twice that; we refuse at the limit.
MAX_PIXELS = 89_478_485  # Pillow's own default: about 9459 x 9459
# Photos at most this many times the model's size per side are decoded whole and resized by the
# model itself, exactly as eager torchvision would; larger ones are decoded reduced.
REDUCE_ABOVE = 2.0
_JPEG_MAGIC = b"\xff\xd8\xff"
_ROTATED = (5, 6, 7, 8)  # EXIF orientations that swap width and height
_HEIF_SUFFIXES = (".heic", ".heif")


def _read_heif() -> bool:
    """Teach Pillow HEIC/HEIF (phone photos) when pillow-heif is installed (`officescore[heic]`):
    optional, as its wheels bundle GPL-licensed codecs."""
    try:
        from pillow_heif import register_heif_opener
    except ImportError:
        return False
    register_heif_opener()
    return True


HEIF_READABLE = _read_heif()


@dataclass(frozen=True)
class ModelInput:
    """A photo decoded for a detector: `image` (RGB, EXIF-oriented) and the photo's displayed size."""

    image: Image.Image
    original_size: tuple[int, int]  # (width, height) of the EXIF-oriented original

    @property
    def reduced(self) -> bool:
        return self.image.size != self.original_size


def to_rgb(image: Image.Image) -> Image.Image:
    """The photo as 8-bit RGB. 16-bit grey (PNG, TIFF) is scaled down: Pillow's own conversion clips
    every value above 255, so such a photo would turn white. Float grey holding 0-1 is scaled up."""
    if image.mode.startswith("I;16") or (image.mode == "I" and image.getextrema()[1] > 255):
        image = image.convert("I").point(lambda v: v * (1 / 257))
    elif image.mode == "F" and image.getextrema()[1] <= 1.0:  # a float TIFF of 0-1 tones, not near-black
        image = image.point(lambda v: v * 255)
    return image.convert("RGB")


def _check_file(path: Path) -> None:
    if not path.exists():
        raise BadImageError(f"{path}: no such file")
    if path.is_dir():
        raise BadImageError(f"{path}: is a folder, not an image")
    if path.stat().st_size == 0:
        raise BadImageError(f"{path}: empty file (0 bytes)")


def _open(path: Path, max_pixels: int) -> Image.Image:
    _check_file(path)
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
        if path.suffix.lower() in _HEIF_SUFFIXES and not HEIF_READABLE:
            raise BadImageError(
                f"{path}: a HEIC/HEIF photo; pip install 'officescore[heic]' (pillow-heif) to read it, "
                "or convert it to JPEG"
            ) from exc
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
    return load_image_as_stored(path, max_pixels)[0]


def load_image_as_stored(path: Path, max_pixels: int = MAX_PIXELS) -> tuple[Image.Image, tuple[int, int]]:
    """`load_image`, and the photo's (width, height) as stored, before its EXIF orientation turns it
    (ingest compares an export's stated size with both, from one read of the file)."""
    path = Path(path)
    image = _open(path, max_pixels)
    stored = image.size
    try:
        image.load()
        return to_rgb(ImageOps.exif_transpose(image)), stored
    except OSError as exc:
        raise BadImageError(f"{path}: truncated or corrupt image ({exc})") from exc


def model_scale(width: int, height: int, min_size: int, max_size: int) -> float:
    """torchvision's GeneralizedRCNNTransform resize factor: short side to min_size, long side capped."""
    return min(min_size / min(width, height), max_size / max(width, height))


def load_for_model(
    path: Path, min_size: int, max_size: int, max_pixels: int = MAX_PIXELS, reduce_above: float = REDUCE_ABOVE
) -> ModelInput:
    """Decode `path` for a detector that resizes to (min_size, max_size), EXIF orientation respected.

    A photo more than `reduce_above` times the model's size is decoded at the model's size: a JPEG
    in Pillow's draft mode (1/2 to 1/8 scale in the decoder), then resized; other formats decoded and
    resized. `max_pixels` limits the pixels actually decoded, so a 108 MP JPEG is read (at 1/8 it is
    1.7 MP) while a PNG claiming a huge size is still refused as a possible decompression bomb.
    """
    path = Path(path)
    _check_file(path)
    with path.open("rb") as handle:
        is_jpeg = handle.read(3) == _JPEG_MAGIC
    if not is_jpeg:
        image = _open(path, max_pixels)
    else:
        # JpegImageFile directly, not Image.open: Pillow's bomb check there counts the pixels the
        # header claims, but draft mode decodes far fewer; ours below counts the decoded ones.
        try:
            image = JpegImagePlugin.JpegImageFile(str(path))
        except (SyntaxError, OSError) as exc:
            raise BadImageError(f"{path}: not a JPEG Pillow can read ({exc})") from exc
    width, height = image.size
    rotated = image.getexif().get(0x0112, 1) in _ROTATED
    original = (height, width) if rotated else (width, height)
    scale = model_scale(width, height, min_size, max_size)
    target = None
    if scale * reduce_above < 1.0:
        target = (max(1, round(original[0] * scale)), max(1, round(original[1] * scale)))
        if is_jpeg:  # the decoder picks the smallest 1/2^k scale still at least the target size
            image.draft("RGB", (max(1, round(width * scale)), max(1, round(height * scale))))
    decoded = image.size[0] * image.size[1]
    if decoded > max_pixels:
        image.close()
        raise BadImageError(
            f"{path}: {width}x{height} is over the {max_pixels:,}-pixel limit "
            "(possible decompression bomb); resize it first"
        )
    try:
        image.load()
        image = to_rgb(ImageOps.exif_transpose(image))
    except OSError as exc:
        raise BadImageError(f"{path}: truncated or corrupt image ({exc})") from exc
    if target is not None and image.size != target:
        image = image.resize(target, Image.Resampling.BILINEAR)
    return ModelInput(image, original)


def fit_for_model(
    image: Image.Image, min_size: int, max_size: int, reduce_above: float = REDUCE_ABOVE
) -> ModelInput:
    """An in-memory photo as `load_for_model` would decode it (RGB, reduced when much too large)."""
    image = to_rgb(image)
    original = image.size
    scale = model_scale(*original, min_size, max_size)
    if scale * reduce_above < 1.0:
        target = (max(1, round(original[0] * scale)), max(1, round(original[1] * scale)))
        image = image.resize(target, Image.Resampling.BILINEAR)
    return ModelInput(image, original)


ImageInput = str | Path | Image.Image  # a path, or a photo already in memory


def expand_inputs(items: Iterable[ImageInput]) -> list[ImageInput]:
    """Files as given, folders -> their image files (sorted, recursive), globs -> matches.

    A path that matches nothing is kept as is, so it is reported as missing for that photo only.
    """
    expanded: list[ImageInput] = []
    for item in items:
        if isinstance(item, Image.Image):
            expanded.append(item)
            continue
        path = Path(item)
        if path.is_dir():
            expanded.extend(
                p for p in sorted(path.rglob("*")) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
        elif not path.exists() and glob.has_magic(str(item)):
            matches = [Path(m) for m in sorted(glob.glob(str(item), recursive=True)) if Path(m).is_file()]
            expanded.extend(matches or [path])
        else:
            expanded.append(path)
    return expanded
