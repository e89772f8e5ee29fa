"""How library loops report progress without printing anything themselves.

Library functions take a `Reporter` (default: silent). The CLI passes one that draws a rich
progress bar on a terminal and prints one line per stage elsewhere (see cli/common.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class Stage:
    """One running stage; `advance` moves the bar, `status` is shown beside it (loss, lr...)."""

    def advance(self, n: int = 1, status: str = "") -> None:  # noqa: B027 - silent by design
        pass

    def log(self, message: str) -> None:  # noqa: B027 - silent by design
        """A line worth keeping in the output (a warning, a summary)."""


class Reporter:
    """Silent reporter: the default for library calls."""

    @contextmanager
    def stage(self, description: str, total: int | None = None) -> Iterator[Stage]:
        yield Stage()

    def log(self, message: str) -> None:  # noqa: B027 - silent by design
        """A line worth keeping outside any stage (e.g. where an interrupted run was saved)."""


SILENT = Reporter()
