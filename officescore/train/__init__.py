"""Train: Mask R-CNN fine-tuning, one process or data-parallel under `torchrun` (DDP).

Laid out like torchvision's detection references:
- `config`: `TrainConfig` (what args.json holds), `TrainResult`, defaults and checks.
- `setup`: data, run folder, model, optimiser + schedule, precision (`Run`).
- `engine`: `train_one_epoch` (loader, steps).
- `validate`: val box and mask AP through `officescore.evaluate`.
- `checkpoints`: `State`, last.pt / best.pt / metrics.csv, the save on Ctrl-C or SIGTERM.
- `seeding`: per-epoch seeds and RNG states that make `--resume` exact.
- `plots`: losses, mAP and learning-rate curves.
- `tracking`: `--log`: the trackers (TensorBoard, MLflow) the loop calls at run start, every step,
  every epoch and run end; each off when its package is missing.
- `loop`: `train()`, the epoch loop that calls the above.
"""

from officescore.train.checkpoints import Terminated, write_metrics_csv
from officescore.train.config import CSV_COLUMNS, LOSS_KEYS, METRIC_KEYS, TrainConfig, TrainResult, default_lr
from officescore.train.loop import train
from officescore.train.seeding import seed_everything, weights_digest
from officescore.train.setup import lr_factor

__all__ = [
    "CSV_COLUMNS",
    "LOSS_KEYS",
    "METRIC_KEYS",
    "Terminated",
    "TrainConfig",
    "TrainResult",
    "default_lr",
    "lr_factor",
    "seed_everything",
    "train",
    "weights_digest",
    "write_metrics_csv",
]
