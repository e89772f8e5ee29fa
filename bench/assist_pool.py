"""Pool several bench/assist.py runs (other --seed values, same settings) window by window.

Per window of tasks, for the retraining and the static backend: the suggested objects of all runs,
the pooled kept share (kept / suggested), the objects deleted (suggested, not kept) and drawn by
hand, and the pooled share of final labels that came from a suggestion. A window's kept share from
one run rests on some 30-50 suggestions; pooling runs on other scenes says which differences hold.

    python bench/assist_pool.py runs/assist-s11/assist.json runs/assist-s12/assist.json ...
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def pooled(runs: list[dict[str, Any]], side: str) -> list[dict[str, Any]]:
    """Sums per window over `runs` for one backend ("retraining" or "static")."""
    out = []
    for n, first in enumerate(runs[0][side]["windows"]):
        windows = [run[side]["windows"][n] for run in runs]
        predicted = sum(w["predicted"] for w in windows)
        # kept is not stored per window, only its share: predicted * share gives it back exactly
        kept = sum(round(w["predicted"] * (w["kept_share"] or 0.0)) for w in windows)
        added = sum(w["added"] for w in windows)
        out.append(
            {
                "tasks": first["tasks"],
                "predicted": predicted,
                "kept_share": kept / predicted if predicted else None,
                "deleted": predicted - kept,
                "added": added,
                "from_suggestions": kept / (kept + added) if kept + added else None,
            }
        )
    return out


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def table(runs: list[dict[str, Any]]) -> str:
    retraining, static = pooled(runs, "retraining"), pooled(runs, "static")
    lines = [
        "| tasks | retraining: suggested | kept share | deleted | drawn by hand | from suggestions "
        "| static: suggested | kept share | deleted | drawn by hand | from suggestions |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r, s in zip(retraining, static, strict=True):
        cells = [r["tasks"]]
        for side in (r, s):
            cells += [side["predicted"], _f(side["kept_share"]), side["deleted"], side["added"]]
            cells.append(_f(side["from_suggestions"]))
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("results", type=Path, nargs="+", help="assist.json files")
    args = parser.parse_args()
    runs = [json.loads(path.read_text()) for path in args.results]
    if any("static" not in run for run in runs):
        parser.error("every run needs its static backend's windows (a run whose first model was used)")
    if len({len(run["retraining"]["windows"]) for run in runs}) > 1:
        parser.error(
            "the runs have different numbers of windows: pool runs with the same --tasks and --every"
        )
    print(f"{len(runs)} run(s) pooled")
    print(table(runs))


if __name__ == "__main__":
    main()
