"""Contact sheets of the top audit issues: per issue the labels (left) and the predictions (right)
of its photo side by side, the suspect outlined in white, a caption with rank, kind and score."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from officescore import masks as masklib
from officescore.attributes import value_name
from officescore.curate.labels import SplitLabels
from officescore.curate.scoring import Issue
from officescore.errors import BadImageError
from officescore.images import load_image

PANEL = 224  # pixels per side of each half of a tile
PER_SHEET = 12  # tiles per PNG (3 columns x 4 rows)
COLUMNS = 3
CAPTION = 18
CAPTION_CHARS = 70  # what a tile's width holds in PIL's default font
SUSPECT = (255, 255, 255)


def _colour(name: str, classes: Sequence[str] = ()) -> tuple[int, int, int]:
    from officescore.infer.drawing import class_colour  # drawing colours shared with `score`

    return class_colour(name, classes)


def _panel(
    photo: Image.Image, regions: list[tuple[str, dict[str, Any], bool]], classes: Sequence[str]
) -> Image.Image:
    """The photo with translucent masks; `regions` = (class, rle, is_suspect), coloured as `score`
    colours the data set's `classes`."""
    base = photo.convert("RGBA")
    overlay = Image.new("RGBA", base.size, (0, 0, 0, 0))
    for name, rle, _ in regions:
        mask = masklib.decode(rle)
        if mask.shape == (base.height, base.width):
            tint = Image.new("RGBA", base.size, (*_colour(name, classes), 110))
            overlay.paste(tint, (0, 0), Image.fromarray(mask * 255))
    out = Image.alpha_composite(base, overlay)
    pen = ImageDraw.Draw(out)
    width = max(2, min(base.size) // 80)
    for name, rle, suspect in regions:
        x, y, w, h = masklib.bbox(rle)
        pen.rectangle([x, y, x + w, y + h], outline=(*(SUSPECT if suspect else _colour(name, classes)), 255),
                      width=width * (2 if suspect else 1))  # fmt: skip
    scale = PANEL / max(out.size)  # small photos grow too: every tile the same size
    return out.convert("RGB").resize((max(1, round(out.width * scale)), max(1, round(out.height * scale))))


def _box_rle(bbox: list[float], height: int, width: int) -> dict[str, Any]:
    mask = np.zeros((height, width), dtype=np.uint8)
    x, y, w, h = (int(round(v)) for v in bbox)
    mask[max(y, 0) : max(y + h, 0), max(x, 0) : max(x + w, 0)] = 1
    return masklib.encode(mask)


def _tile(
    issue: Issue, row: dict[str, Any], split: SplitLabels, results: list[dict[str, Any]], conf: float
) -> Image.Image:
    image = split.by_id()[issue.image_id]
    tile = Image.new("RGB", (2 * PANEL, PANEL + CAPTION), (30, 30, 30))
    try:
        photo = load_image(image.path)
    except BadImageError:
        photo = Image.new("RGB", (image.width, image.height), (80, 80, 80))
    labels = [(lab.class_name, lab.rle, lab.id == issue.annotation_id) for lab in image.labels]
    if issue.kind == "missing":  # nothing labelled there: outline where the model saw it
        labels.append(("missing", _box_rle(issue.bbox, image.height, image.width), True))
    preds = [
        (split.classes[r["category_id"] - 1], r["segmentation"], k == issue.prediction)
        for k, r in enumerate(results)
        if r["image_id"] == issue.image_id and (r["score"] >= conf or k == issue.prediction)
    ]
    tile.paste(_panel(photo, labels, split.classes), (0, 0))
    tile.paste(_panel(photo, preds, split.classes), (PANEL, 0))
    text = caption(issue, row["rank"], image.file_name)
    ImageDraw.Draw(tile).text((4, PANEL + 3), text, fill=(255, 255, 255))
    return tile


def caption(issue: Issue, rank: int, file_name: str) -> str:
    """A tile's caption: rank, kind, score, class (-> the suggested one), for a wrong attribute the
    label's value -> the model's, and the photo; cut to what a tile holds."""
    what = issue.class_name or "-"
    if issue.suggested_class and issue.suggested_class != issue.class_name:
        what += f" -> {issue.suggested_class}"
    if issue.attribute:
        label, predicted = (value_name(issue.attribute[k]) for k in ("label", "predicted"))
        what += f" {issue.attribute['name']}: {label} -> {predicted}"
    if issue.convention:  # "plant != whole": the declared convention the label breaks
        what += f" != {issue.convention['convention']}"
    return f"#{rank} {issue.kind} {issue.score:.2f} {what} ({Path(file_name).name})"[:CAPTION_CHARS]


def write_contact_sheets(
    out_dir: Path,
    split: SplitLabels,
    results: list[dict[str, Any]],
    issues: list[Issue],
    rows: list[dict[str, Any]],
    conf: float = 0.5,
) -> list[Path]:
    """contact_sheet_01.png, ... with up to PER_SHEET issues each, in rank order."""
    paths = []
    pairs = list(zip(issues, rows, strict=False))
    for start in range(0, len(pairs), PER_SHEET):
        chunk = pairs[start : start + PER_SHEET]
        rows_n = (len(chunk) + COLUMNS - 1) // COLUMNS
        sheet = Image.new("RGB", (COLUMNS * 2 * PANEL, rows_n * (PANEL + CAPTION)), (0, 0, 0))
        for n, (issue, row) in enumerate(chunk):
            sheet.paste(
                _tile(issue, row, split, results, conf),
                ((n % COLUMNS) * 2 * PANEL, (n // COLUMNS) * (PANEL + CAPTION)),
            )
        path = Path(out_dir) / f"contact_sheet_{start // PER_SHEET + 1:02d}.png"
        sheet.save(path)
        paths.append(path)
    return paths


def _crop_box(boxes: list[list[float]], height: int, width: int) -> tuple[int, int, int, int]:
    """The union of [x, y, w, h] boxes with a 25 % margin, inside the photo, as PIL's (l, t, r, b)."""
    x0 = min(b[0] for b in boxes)
    y0 = min(b[1] for b in boxes)
    x1 = max(b[0] + b[2] for b in boxes)
    y1 = max(b[1] + b[3] for b in boxes)
    mx, my = 0.25 * (x1 - x0) + 2, 0.25 * (y1 - y0) + 2
    return (
        max(0, int(x0 - mx)),
        max(0, int(y0 - my)),
        min(width, int(x1 + mx) + 1),
        min(height, int(y1 + my) + 1),
    )


def write_convention_sheet(
    path: Path,
    split: SplitLabels,
    results: list[dict[str, Any]],
    members: list[tuple[int, int, int]],
    title: str,
) -> Path:
    """One convention group: per member (image id, annotation id, prediction index) its label (left)
    and the model's prediction of the object (right), cropped around both; the first PER_SHEET."""
    images = split.by_id()
    chunk = members[:PER_SHEET]
    rows_n = max(1, (len(chunk) + COLUMNS - 1) // COLUMNS)
    sheet = Image.new("RGB", (COLUMNS * 2 * PANEL, CAPTION + rows_n * (PANEL + CAPTION)), (0, 0, 0))
    ImageDraw.Draw(sheet).text((4, 3), title[: COLUMNS * 2 * PANEL // 6], fill=(255, 255, 255))
    for n, (image_id, annotation_id, prediction) in enumerate(chunk):
        image = images[image_id]
        label = next(lab for lab in image.labels if lab.id == annotation_id)
        pred = results[prediction]
        try:
            photo = load_image(image.path)
        except BadImageError:
            photo = Image.new("RGB", (image.width, image.height), (80, 80, 80))
        box = _crop_box([label.bbox, list(pred["bbox"])], image.height, image.width)
        name = split.classes[int(pred["category_id"]) - 1]
        tile = Image.new("RGB", (2 * PANEL, PANEL + CAPTION), (30, 30, 30))
        # crop, then grow to the panel before drawing, so outlines are panel pixels thin
        crop = photo.crop(box)
        scale = PANEL / max(crop.size)
        size = (max(1, round(crop.width * scale)), max(1, round(crop.height * scale)))
        crop = crop.resize(size, Image.Resampling.BILINEAR)
        for k, (cls, rle) in enumerate(((label.class_name, label.rle), (name, pred["segmentation"]))):
            cut = Image.fromarray(masklib.decode(rle)[box[1] : box[3], box[0] : box[2]] * 255)
            grown = (np.asarray(cut.resize(size, Image.Resampling.NEAREST)) > 0).astype(np.uint8)
            tile.paste(_panel(crop, [(cls, masklib.encode(grown), False)], split.classes), (k * PANEL, 0))
        caption = f"label {annotation_id} | prediction ({Path(image.file_name).name})"
        ImageDraw.Draw(tile).text((4, PANEL + 3), caption[:CAPTION_CHARS], fill=(255, 255, 255))
        sheet.paste(tile, ((n % COLUMNS) * 2 * PANEL, CAPTION + (n // COLUMNS) * (PANEL + CAPTION)))
    sheet.save(path)
    return path
