"""Ingest: a labelling tool's COCO export + its photos -> a checked, split data set folder.

- `checks`: `Problem` records and the per-image / per-annotation checks (CVAT recognised).
- `locate`: each export file name -> one file inside the image folder, never a guess.
- `split`: near-duplicate groups and the seeded, class-covering train/val split.
- `write`: safe file names, hard links or copies, temp folder then swap; `read_dataset_meta`, the
  one reader of an earlier data set's dataset.json.
- `conventions`: declared labelling conventions (`CLASS=whole|part`), recorded in dataset.json and
  read by audit and label push.
- `run`: `ingest_export`, the stage's entry point.
- `health`: the data set's health report (`stats`).
"""

from officescore.ingest.checks import class_key
from officescore.ingest.run import PHASH_THRESHOLD, IngestResult, ingest_export, read_export, strict_message
from officescore.ingest.write import read_dataset_meta

__all__ = [
    "PHASH_THRESHOLD",
    "IngestResult",
    "class_key",
    "ingest_export",
    "read_dataset_meta",
    "read_export",
    "strict_message",
]
