"""PNG curves for a training run (losses, validation mAP, learning rate), drawn with matplotlib Agg."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

PLOTS = ("losses.png", "map.png", "lr.png")
_LOSSES = ("loss", "loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg")
_MAPS = ("segm_map", "segm_ap50", "bbox_map", "bbox_ap50")
_LABELS = {"segm_map": "mask mAP", "segm_ap50": "mask AP50", "bbox_map": "box mAP", "bbox_ap50": "box AP50"}


def _series(history: Sequence[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    points = [(int(r["epoch"]), float(r[key])) for r in history if r.get(key) is not None]
    return [p[0] for p in points], [p[1] for p in points]


def _figure(
    history: Sequence[dict[str, Any]], keys: Sequence[str], title: str, ylabel: str, path: Path
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    for key in keys:
        xs, ys = _series(history, key)
        if xs:
            ax.plot(xs, ys, marker="o", markersize=3, label=_LABELS.get(key, key))
    ax.set_title(title)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # no "epoch 1.5" ticks on short runs
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_plots(run_dir: Path, history: Sequence[dict[str, Any]]) -> list[Path]:
    """losses.png, map.png and lr.png in `run_dir`; returns their paths."""
    run_dir = Path(run_dir)
    targets = [run_dir / name for name in PLOTS]
    _figure(history, _LOSSES, "training losses (epoch means)", "loss", targets[0])
    _figure(history, _MAPS, "validation AP", "AP", targets[1])
    _figure(history, ("lr",), "learning rate (end of epoch)", "lr", targets[2])
    return targets
