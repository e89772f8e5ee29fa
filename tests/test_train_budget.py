"""`TrainConfig.max_minutes` (label backend --train's time budget): training stops at the first step
past it, even inside the first epoch, and the checkpoints are written."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from trainsetup import make_dataset, small_config

from officescore.errors import ConfigError
from officescore.train import train


def test_training_stops_at_the_first_step_past_the_time_budget(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    data = make_dataset(tmp_path, images=5, size=64, seed=2)
    config = small_config(data, tmp_path / "runs", epochs=3, max_minutes=1e-6, batch_size=1)
    result = train(config)
    assert result.epochs_completed == 1  # one step of the first epoch, then validation and checkpoints
    assert len(result.history) == 1 and result.last_checkpoint.is_file()
    assert "time budget spent during epoch 1, after 1 of 3 steps" in result.notes  # 3 train photos
    assert "time budget of 1e-06 min spent after epoch 1" in result.notes
    with pytest.raises(ConfigError, match="--train-minutes 0: must be positive"):
        train(small_config(data, tmp_path / "runs", max_minutes=0))
