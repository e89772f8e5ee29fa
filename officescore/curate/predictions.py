"""Model predictions over a data-set split, as COCO results (category ids of the data set)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from officescore import masks as masklib
from officescore.curate.labels import LabelledImage, check_classes
from officescore.errors import DataError
from officescore.progress import SILENT, Reporter

PREDICT_CONF = 0.05  # keep weak predictions too: a weak other-class guess is evidence as well


def predict_images(
    predictor: Any,
    images: Sequence[LabelledImage],
    classes: list[str],
    conf: float = PREDICT_CONF,
    batch_size: int = 2,
    reporter: Reporter = SILENT,
) -> list[dict[str, Any]]:
    """COCO results for `images` (their ids, the data set's category ids), via `Predictor.predict`.
    Predictions of classes the model knows and the data set does not label are left out."""
    check_classes(predictor.classes, classes, predictor.source or "--model")
    category = {name: k for k, name in enumerate(classes, start=1)}
    results = predictor.predict(
        [image.path for image in images], batch_size=batch_size, conf=conf, reporter=reporter
    )
    out: list[dict[str, Any]] = []
    for image, result in zip(images, results, strict=True):
        if result.error is not None:
            # the error names the photo already ("<path>: truncated or corrupt image (...)")
            raise DataError(f"{result.error}; fix or remove the photo and re-run `officescore ingest`")
        if (result.width, result.height) != (image.width, image.height):
            raise DataError(
                f"{image.path}: is {result.width}x{result.height} but the data set says "
                f"{image.width}x{image.height}; re-run `officescore ingest`"
            )
        for det in result.detections:
            if det.class_name not in category:  # a class the data set does not label: background
                continue
            x0, y0, x1, y1 = det.box
            out.append(
                {
                    "image_id": image.id,
                    "category_id": category[det.class_name],
                    "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)],
                    "segmentation": masklib.normalise(det.mask),
                    "score": round(float(det.score), 5),
                }
            )
            if det.attributes:  # the attribute head's values: evidence for wrong_attribute
                out[-1]["attributes"] = dict(det.attributes)
                out[-1]["attribute_scores"] = dict(det.attribute_scores)
    return out
