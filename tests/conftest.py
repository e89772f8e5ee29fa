"""Session-wide fixtures. The Label Studio server lives in labelstudio_server.py (started only when
a test asks for `labelstudio`); `cpu_flags` mocks the CPU that officescore.infer.accel sees."""

from collections.abc import Callable

import pytest
from labelstudio_server import labelstudio  # noqa: F401 - a fixture, found by name


@pytest.fixture
def cpu_flags(monkeypatch: pytest.MonkeyPatch) -> Callable[[frozenset[str]], None]:
    """Pretend the CPU has these /proc/cpuinfo flags (officescore.infer.accel reads them once per process)."""
    from officescore.infer.accel import capability

    def use(flags: frozenset[str]) -> None:
        monkeypatch.setattr(capability, "cpu_flags", lambda: flags)

    return use
