"""`export --format pt2`: torch.export cannot capture Mask R-CNN; the CLI says why and writes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from officescore.cli import main


def test_pt2_is_refused_with_the_reason_and_nothing_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = tmp_path / "best.pt"
    checkpoint.write_bytes(b"never read: the format is refused first")
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--model", str(checkpoint), "--format", "pt2"])
    assert exit_info.value.code == 2
    message = " ".join(capsys.readouterr().err.split())
    assert "torch.export cannot capture" in message and "data-dependent" in message
    assert "--format torchscript" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt"]
