"""What every command shares: consoles, JSON output, progress, error exits."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from officescore.progress import Reporter, Stage

if TYPE_CHECKING:
    from officescore.attributes import AttributeSchema
    from officescore.infer.score import Rubric
    from officescore.label.sources import Gathered


class _Console(Console):
    """Off a terminal (piped into a file, a log or `grep`) a plain status line stays one line
    whatever its length: rich would otherwise hard-wrap it at 80 columns, mid-sentence. Tables
    and other layouts keep rich's width ($COLUMNS, else 80)."""

    def print(self, *objects: Any, soft_wrap: bool | None = None, **kwargs: Any) -> None:
        if soft_wrap is None and not self.is_terminal and all(isinstance(o, (str, Text)) for o in objects):
            soft_wrap = True
        super().print(*objects, soft_wrap=soft_wrap, **kwargs)


console = _Console()
err_console = _Console(stderr=True)


def print_json(obj: Any) -> None:
    """Machine-readable output: plain JSON on stdout, nothing else."""
    text = json.dumps(obj, indent=2, ensure_ascii=False, default=str)
    # A file name that is not UTF-8 (a photo from an old archive) decodes to lone surrogates, which
    # stdout cannot encode: write them as \udcXX escapes, which json.loads reads back to the name.
    sys.stdout.write(text.encode("utf-8", "backslashreplace").decode("utf-8") + "\n")
    sys.stdout.flush()


class _RichStage(Stage):
    def __init__(self, progress: Progress, task_id: Any) -> None:
        self._progress = progress
        self._task = task_id

    def advance(self, n: int = 1, status: str = "") -> None:
        self._progress.update(self._task, advance=n, status=status)

    def log(self, message: str) -> None:  # Text: a library message is plain, `[x]` in a path stays
        self._progress.console.print(Text(message))


class _LineStage(Stage):
    def __init__(self) -> None:
        self.done = 0
        self.status = ""

    def advance(self, n: int = 1, status: str = "") -> None:
        self.done += n
        if status:
            self.status = status

    def log(self, message: str) -> None:
        err_console.print(Text(message), soft_wrap=True)


class CliReporter(Reporter):
    """A rich progress bar on a terminal; one line per stage otherwise (logs, CI, pipes)."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet

    @contextmanager
    def stage(self, description: str, total: int | None = None) -> Iterator[Stage]:
        if self.quiet:
            yield Stage()
            return
        if err_console.is_terminal:
            columns = [
                SpinnerColumn(),
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[status]}", markup=False),  # a scrape query's own words
            ]
            with Progress(*columns, console=err_console, transient=False) as progress:
                yield _RichStage(progress, progress.add_task(description, total=total, status=""))
            return
        stage = _LineStage()
        start = time.perf_counter()
        try:
            yield stage
        finally:
            seconds = time.perf_counter() - start
            count = f"{stage.done}/{total}" if total is not None else str(stage.done)
            extra = f" ({stage.status})" if stage.status else ""
            err_console.print(Text(f"{description}: {count} in {seconds:.1f}s{extra}"), soft_wrap=True)

    def log(self, message: str) -> None:
        # stderr even with --json: stdout stays pure JSON, and this line is worth seeing
        err_console.print(Text(message), soft_wrap=True)


def reporter(json_output: bool = False) -> CliReporter:
    """Progress goes to stderr; with --json it stays quiet so stdout is pure JSON."""
    return CliReporter(quiet=json_output)


SUGGEST_CONF_HELP = (  # --conf of the commands that suggest labels (label push --model, prelabel)
    "Keep detections with at least this class score (0-1). Default: as `label backend` suggests: a "
    "model a `label backend --train` job made at the threshold the job found on class score x mask "
    "score², any other at 0.3."
)
PRECISION_HELP = (  # --precision of every command that runs a model (officescore.infer.accel)
    "auto (the fastest this hardware runs natively: bf16 on AVX512-BF16/AMX CPUs, fp16 on CUDA), "
    "fp32 (eager torchvision's detections), bf16, fp16 or int8 (an int8 backbone, x86 CPUs with AVX2; "
    "calibrated on --calibration photos)."
)
CALIBRATION_HELP = (  # --calibration of those commands (officescore.infer.accel.int8)
    "--precision int8 only: photos like the ones to score (files, folders, globs; up to 16, evenly spread) "
    "whose activations set the int8 ranges."
)


@contextmanager
def said_when_stopped(written: str = "nothing written") -> Iterator[None]:
    """Ctrl-C inside: one line, "stopped (Ctrl-C); <written>", then exit 130 as shells report it
    (Typer turns the KeyboardInterrupt into a silent exit 130). Also a decorator for a command."""
    import typer

    try:
        yield
    except KeyboardInterrupt:
        err_console.print(Text(f"stopped (Ctrl-C); {written}", style="yellow"), soft_wrap=True)
        raise typer.Exit(130) from None


@contextmanager
def stop_signals() -> Iterator[threading.Event]:
    """While inside, Ctrl-C (SIGINT) and SIGTERM set the returned event instead of raising.

    For commands that serve until stopped. A KeyboardInterrupt that lands while the main thread runs a
    weakref callback or a `__del__` is dropped by Python ("Exception ignored in ..."), and the server
    then ran on; a flag cannot be lost. The previous handlers come back on leaving."""
    stop = threading.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {number: signal.signal(number, lambda *_: stop.set()) for number in signals}
    try:
        yield stop
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def note_skipped_photos(gathered: Gathered) -> None:
    """Say which scrape folders were skipped (no photo) and which photos a scrape folder kept were
    left out because they were deleted by hand."""
    from officescore.scrape.manifest import deleted_note, empty_note

    if gathered.empty:
        console.print(Text(f"note: {empty_note(gathered.empty)}"), soft_wrap=True)
    if gathered.deleted:
        console.print(Text(f"note: {deleted_note(gathered.deleted)}"), soft_wrap=True)


def skipped_json(gathered: Gathered) -> dict[str, list[str]]:
    """The --json keys of `note_skipped_photos`."""
    return {
        "deleted": [str(p) for p in gathered.deleted],
        "skipped_folders": [str(p) for p in gathered.empty],
    }


def warn_rubric_reach(rubric: Rubric, classes: list[str], attributes: AttributeSchema | None = None) -> None:
    """Warn once, up front, on stderr (so --json stays pure) when the rubric asks for classes the
    model cannot detect and so caps every photo's score, and for each attribute rule the model
    (with these `attributes`) can never meet: `score` and `serve` alike, whatever the model's kind."""
    if not _warn_undetectable_essentials(rubric, classes):  # that one says more
        _warn_unreachable_total(rubric, classes)
    if attributes is not None:
        _warn_unmatchable_rules(rubric, attributes, classes)


def _warn_undetectable_essentials(rubric: Rubric, classes: list[str]) -> bool:
    """An essential none of the model's classes can meet caps every photo: say so once, up front
    (on stderr, so --json stays pure), rather than leave the user puzzling over a score stuck at 35.
    True when it warned."""
    blind = [e.name for e in rubric.essentials if not set(e.any_of) & set(classes)]
    if not (blind and rubric.missing_essential_cap < 100):
        return False
    err_console.print(
        Text(
            f"warning: the model cannot detect {', '.join(blind)}, essential in rubric {rubric.name}: "
            f"every score stays at most {rubric.missing_essential_cap:g}",
            style="yellow",
        ),
        soft_wrap=True,
    )
    return True


def _warn_unmatchable_rules(rubric: Rubric, attributes: AttributeSchema, classes: list[str]) -> None:
    """A rubric attribute rule the model can never meet (a misspelt name, a value it never gives)
    silently earns nothing: say so once, up front, on stderr."""
    from officescore.infer.score import unmatchable_rules

    for problem in unmatchable_rules(rubric, attributes, classes):
        err_console.print(Text(f"warning: {problem}; it earns nothing", style="yellow"), soft_wrap=True)


def _warn_unreachable_total(rubric: Rubric, classes: list[str]) -> None:
    """A rubric class the model cannot detect (often a misspelt name: `monitr`) silently earns
    nothing; when that keeps every photo under 100, say which classes and the highest score."""
    from officescore.infer.score import best_possible

    best = best_possible(rubric, classes)
    if best < 100:
        unknown = ", ".join(name for name in rubric.classes if name not in classes)
        err_console.print(
            Text(
                f"warning: the model cannot detect {unknown}, in rubric {rubric.name}: no photo can score "
                f"more than {best:g} (the model's classes: {', '.join(classes)})",
                style="yellow",
            ),
            soft_wrap=True,
        )
