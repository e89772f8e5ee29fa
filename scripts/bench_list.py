"""`make bench`: the benchmark scripts under bench/ and what each measures (its docstring's first
line). Each runs for minutes to hours with options of its own: the command behind every table, and
the table, are in docs/BENCHMARKS.md; `python bench/<script> --help` shows the options."""

from __future__ import annotations

import ast
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"


def main() -> None:
    for script in sorted(BENCH.glob("*.py")):
        text = script.read_text(encoding="utf-8")
        if "__main__" not in text:
            continue  # shared code of the others (benchkit.py)
        doc = ast.get_docstring(ast.parse(text)) or ""
        print(f"bench/{script.name:<18} {doc.splitlines()[0] if doc else ''}")
    print("commands and figures: docs/BENCHMARKS.md; options: python bench/<script> --help")


if __name__ == "__main__":
    main()
