"""Session-wide set-up. The Label Studio server lives in labelstudio_server.py (started only when
a test asks for `labelstudio`); `cpu_flags` mocks the CPU that officescore.infer.accel sees."""

import os
import signal
from collections.abc import Callable, Iterator

import pytest
from labelstudio_server import labelstudio  # noqa: F401 - a fixture, found by name


def _share_the_cores() -> None:
    """`make test` runs one xdist worker per core. Torch's default of one thread per core in every
    worker (and in every process a test starts) made them fight over the cores: each worker gets its
    share instead, through OMP_NUM_THREADS so that child processes inherit it (measured on 2 cores:
    a third less wall time for the training tests). A value the user set is kept."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1 and "OMP_NUM_THREADS" not in os.environ:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        os.environ["OMP_NUM_THREADS"] = str(max(1, cores // workers))


_share_the_cores()  # before torch is imported: its thread pool reads OMP_NUM_THREADS once


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slowest tests first (stable otherwise): xdist hands tests out in this order, so the long
    ones run side by side at the start instead of one of them finishing the run alone."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture
def ctrl_c_default() -> Iterator[None]:
    """Python's own Ctrl-C handler, as in a terminal: a shell without job control (nohup, `make test
    &`) starts this process with SIGINT ignored, and training then leaves it ignored."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


@pytest.fixture
def cpu_flags(monkeypatch: pytest.MonkeyPatch) -> Callable[[frozenset[str]], None]:
    """Pretend the CPU has these /proc/cpuinfo flags (officescore.infer.accel reads them once per process)."""
    from officescore.infer.accel import capability

    def use(flags: frozenset[str]) -> None:
        monkeypatch.setattr(capability, "cpu_flags", lambda: flags)

    return use
