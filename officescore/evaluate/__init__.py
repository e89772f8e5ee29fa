"""Evaluate: COCO box and mask AP (pycocotools' COCOeval, reproduced to 1e-12), P/R/F1 and the
confusion matrix, and `officescore eval` run folders.

- `inputs`: ground truth and results files, loaded and checked (every problem a `DataError`).
- `match`: precision/recall/F1 and the confusion matrix at IoU 0.5.
- `metrics`: the metrics document (`evaluate_coco`), inference over a split (`predict_coco`).
- `run`: `run_eval` (run folders, newest checkpoint, PR and confusion plots).
"""

from officescore.evaluate.metrics import (
    STAT_NAMES,
    category_map,
    check_iou_thresholds,
    evaluate_coco,
    evaluate_model,
    predict_coco,
)
from officescore.evaluate.run import EvalRun, run_eval

__all__ = [
    "STAT_NAMES",
    "EvalRun",
    "category_map",
    "check_iou_thresholds",
    "evaluate_coco",
    "evaluate_model",
    "predict_coco",
    "run_eval",
]
