"""Builders for small COCO exports (clean, tool-styled and broken) used by the ingest tests.

Scenes are noisy backgrounds with solid rectangles, so every image has a distinct perceptual hash
and every mask is known exactly.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from officescore import masks

CLASSES = ("desk", "chair", "mug")


def draw_scene(
    path: Path, width: int, height: int, boxes: list[tuple[int, int, int, int]], seed: int
) -> None:
    """Noise background (distinct per seed) with solid rectangles at `boxes` (x, y, w, h)."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    image = Image.fromarray(blocks).resize((width, height), Image.NEAREST)
    pixels = np.array(image)
    for index, (x, y, w, h) in enumerate(boxes):
        pixels[y : y + h, x : x + w] = ((60 * index) % 256, 200, (90 * index + 40) % 256)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, quality=95) if path.suffix == ".jpg" else Image.fromarray(pixels).save(
        path
    )


def _boxes(index: int, width: int, height: int) -> list[tuple[int, int, int, int]]:
    rng = np.random.default_rng(1000 + index)
    boxes = []
    for _ in range(2):
        w, h = int(rng.integers(12, width // 3)), int(rng.integers(10, height // 3))
        x, y = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
        boxes.append((x, y, w, h))
    return boxes


def make_export(
    root: Path,
    n_images: int = 6,
    classes: tuple[str, ...] = CLASSES,
    width: int = 96,
    height: int = 64,
    seed: int = 0,
) -> dict[str, Any]:
    """Write root/images/*.png and return a clean COCO export dict (polygons, ids from 1).

    Image i holds two rectangles of classes[(i + j) % K]; the second one is drawn over the first,
    so its annotation is the full rectangle and the first one's is what stays visible.
    """
    images, annotations = [], []
    for i in range(n_images):
        name = f"scene_{i:03d}.png"
        boxes = _boxes(i + seed * 100, width, height)
        draw_scene(root / "images" / name, width, height, boxes, seed * 1000 + i)
        images.append({"id": i + 1, "file_name": name, "width": width, "height": height})
        covered = np.zeros((height, width), dtype=bool)
        for j, (x, y, w, h) in reversed(list(enumerate(boxes))):
            mask = np.zeros((height, width), dtype=np.uint8)
            mask[y : y + h, x : x + w] = 1
            mask &= ~covered
            covered |= mask.astype(bool)
            if not mask.any():
                continue  # fully hidden by the rectangle drawn over it
            if j == len(boxes) - 1:
                segmentation: Any = [[x, y, x + w, y, x + w, y + h, x, y + h]]
            else:
                segmentation = masks.encode(mask)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i + 1,
                    "category_id": (i + j) % len(classes) + 1,
                    "segmentation": segmentation,
                    "bbox": [x, y, w, h],
                    "area": int(mask.sum()),
                    "iscrowd": 0,
                }
            )
    categories = [{"id": k + 1, "name": name, "supercategory": "office"} for k, name in enumerate(classes)]
    return {
        "info": {"description": "test export"},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }


def write_export(root: Path, coco: dict[str, Any], name: str = "images/annotations.json") -> Path:
    """Write the export JSON; by default inside images/ so the image folder is the export's folder."""
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(coco), encoding="utf-8")
    return path


# ---------------------------------------------------------------- tool styles


def hasty_style(coco: dict[str, Any]) -> dict[str, Any]:
    """Hasty: every mask as compressed RLE with str counts, string (uuid-like) annotation ids."""
    coco = copy.deepcopy(coco)
    sizes = {im["id"]: (im["height"], im["width"]) for im in coco["images"]}
    for ann in coco["annotations"]:
        if isinstance(ann["segmentation"], list):
            ann["segmentation"] = masks.from_polygons(ann["segmentation"], *sizes[ann["image_id"]])
        ann["id"] = f"5f0c{ann['id']:04d}-aa1e-4c1b-9d3e-hasty"
    return coco


def cvat_style(root: Path, coco: dict[str, Any]) -> dict[str, Any]:
    """CVAT COCO 1.0: files in sub-folders (with a name collision across folders) and `attributes`."""
    coco = copy.deepcopy(coco)
    for index, image in enumerate(coco["images"]):
        folder = f"task_{index % 2}/frames"
        new_name = f"{folder}/frame_{index // 2:03d}.png"
        (root / "images" / folder).mkdir(parents=True, exist_ok=True)
        shutil.move(root / "images" / image["file_name"], root / "images" / new_name)
        image.update(file_name=new_name, license=0, flickr_url="", coco_url="", date_captured=0)
    for ann in coco["annotations"]:
        ann["attributes"] = {"occluded": False, "rotation": 0.0}
    coco["info"] = {"contributor": "", "date_created": "", "description": "", "url": "", "version": "1.0"}
    coco["licenses"] = [{"name": "", "id": 0, "url": ""}]
    return coco


def label_studio_style(root: Path, coco: dict[str, Any]) -> dict[str, Any]:
    """Label Studio: ids from 0, file_name "images/x", width/height null; JSON beside images/."""
    coco = copy.deepcopy(coco)
    for image in coco["images"]:
        image["id"] -= 1
        image["file_name"] = f"images/{image['file_name']}"
        image["width"] = image["height"] = None
    for ann in coco["annotations"]:
        ann["id"] -= 1
        ann["image_id"] -= 1
        ann["category_id"] -= 1
    for category in coco["categories"]:
        category["id"] -= 1
    return coco


def roboflow_style(coco: dict[str, Any]) -> dict[str, Any]:
    """Roboflow: image and annotation ids from 0, a dummy parent category id 0 with no annotations,
    real classes under it."""
    coco = copy.deepcopy(coco)
    for image in coco["images"]:
        image["id"] -= 1
    for ann in coco["annotations"]:
        ann["id"] -= 1
        ann["image_id"] -= 1
    for category in coco["categories"]:
        category["supercategory"] = "office-objects"
    coco["categories"].insert(0, {"id": 0, "name": "office-objects", "supercategory": "none"})
    return coco
