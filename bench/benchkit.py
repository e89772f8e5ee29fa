"""What several bench scripts share: the small-model settings for synthetic scenes, the CPU's name."""

from __future__ import annotations

import platform
from pathlib import Path

# Mask R-CNN options for models trained on officescore.sample scenes (few objects per photo): fewer
# proposals and sampled RoIs than torchvision's defaults, which are sized for COCO.
SCENE_MODEL = {
    "rpn_pre_nms_top_n_train": 300,
    "rpn_post_nms_top_n_train": 100,
    "rpn_pre_nms_top_n_test": 300,
    "rpn_post_nms_top_n_test": 100,
    "rpn_batch_size_per_image": 64,
    "box_batch_size_per_image": 64,
}


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo; elsewhere what Python's platform module knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
