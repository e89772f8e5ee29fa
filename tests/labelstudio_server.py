"""A real Label Studio server for the label tests: started once per test session, on 127.0.0.1.

It runs from its own venv (`make labelstudio` makes `.venv-labelstudio`; OFFICESCORE_LABEL_STUDIO
may name another `label-studio` executable), with a temporary data folder (sqlite), and never
reaches the internet: version check, analytics and Sentry are off, and any outbound request would
go to a proxy that does not exist. A user is made at start; the tests then get a personal access
token the way a user does: log in, ask for a token.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parent.parent
EXECUTABLE_ENV = "OFFICESCORE_LABEL_STUDIO"
START_TIMEOUT = 300.0  # seconds; ~40 s on an idle machine, minutes when the CPUs are shared
EMAIL = "labeller@example.com"
PASSWORD = "officescore-tests"


@dataclass
class LabelStudioServer:
    url: str
    api_key: str  # a personal access token (JWT refresh token)
    data_dir: Path
    local_root: Path  # LOCAL_FILES_DOCUMENT_ROOT: photos served as /data/local-files/?d=...
    log: Path

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def executable() -> Path:
    override = os.environ.get(EXECUTABLE_ENV)
    path = Path(override) if override else REPO / ".venv-labelstudio" / "bin" / "label-studio"
    if not path.is_file():
        pytest.fail(
            f"Label Studio is not installed for the tests ({path} missing): run `make labelstudio`",
            pytrace=False,
        )
    return path


DB_NAME = "label_studio.sqlite3"


def migrated_database(exe: Path, env: dict[str, str]) -> Path | None:
    """A sqlite database with every migration applied, made once per Label Studio install.

    Applying Label Studio's ~400 migrations is most of its first start (minutes on a busy 2-core
    machine); a session copies this file instead, and `start` then has nothing left to migrate.
    `label-studio version` migrates and exits without making a user. None if it cannot be made
    (a read-only install): the server then migrates its own database, only slower.
    """
    folder = exe.resolve().parent.parent / "officescore-tests"
    database = folder / DB_NAME
    if database.is_file():
        return database
    try:
        folder.mkdir(exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix="migrating-", dir=folder))
    except OSError:
        return None
    try:
        subprocess.run(
            [str(exe), "version", "--data-dir", str(scratch)],
            env={**env, "LABEL_STUDIO_BASE_DATA_DIR": str(scratch)},
            cwd=scratch,
            capture_output=True,
            timeout=START_TIMEOUT,
            check=True,
        )
        os.replace(scratch / DB_NAME, database)  # atomic: a parallel session sees all of it or none
    except (OSError, subprocess.SubprocessError):
        return None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return database


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(data_dir: Path, local_root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABEL_STUDIO_", "DJANGO_"))}
    env.update(
        LABEL_STUDIO_BASE_DATA_DIR=str(data_dir),
        # An ML backend on this machine (the tests' own) is refused unless these are off.
        ML_BLOCK_LOCAL_IP="false",
        SSRF_PROTECTION_ENABLED="false",
        LOCAL_FILES_SERVING_ENABLED="true",
        LOCAL_FILES_DOCUMENT_ROOT=str(local_root),
        # Nothing leaves the machine: no version check, analytics or error reports...
        LATEST_VERSION_CHECK="false",
        COLLECT_ANALYTICS="false",
        SENTRY_DSN="",
        FRONTEND_SENTRY_DSN="",
        # ...and anything else that tries goes to a proxy that is not there.
        HTTP_PROXY="http://127.0.0.1:9",
        HTTPS_PROXY="http://127.0.0.1:9",
        NO_PROXY="127.0.0.1,localhost",
        PYTHONWARNINGS="ignore",
    )
    return env


def logged_in_session(url: str, email: str, password: str) -> requests.Session:
    """A browser-like session logged in through the web form (CSRF cookie and Referer)."""
    session = requests.Session()
    session.trust_env = False
    session.get(f"{url}/user/login/", timeout=30).raise_for_status()
    login = session.post(
        f"{url}/user/login/",
        data={"email": email, "password": password, "csrfmiddlewaretoken": session.cookies["csrftoken"]},
        headers={"Referer": f"{url}/user/login/"},
        allow_redirects=False,
        timeout=30,
    )
    assert login.status_code == 302, f"login failed: {login.status_code} {login.text[:200]}"
    return session


def personal_access_token(url: str, email: str, password: str) -> str:
    """Log in through the web form and create a personal access token, as a user would."""
    session = logged_in_session(url, email, password)
    token = session.post(
        f"{url}/api/token/",
        headers={"X-CSRFToken": session.cookies["csrftoken"], "Referer": f"{url}/"},
        timeout=30,
    )
    assert token.status_code == 201, f"no personal access token: {token.status_code} {token.text[:200]}"
    return str(token.json()["token"])


def _wait_up(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"Label Studio exited with {process.returncode}:\n{log.read_text(errors='replace')[-3000:]}"
            )
        try:
            if requests.get(f"{url}/health", timeout=2, proxies={"http": "", "https": ""}).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(1.0)
    pytest.fail(
        f"Label Studio did not start within {START_TIMEOUT:g}s:\n{log.read_text(errors='replace')[-3000:]}"
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)  # its own process group: the server and its workers
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=20)


def start(base: Path) -> tuple[subprocess.Popen[bytes], LabelStudioServer]:
    """A server on a free port with its data under `base` (a copy of the migrated database), up and
    with a user's personal access token; the caller stops the process (`_stop`)."""
    exe = executable()
    data_dir, local_root = base / "data", base / "files"
    local_root.mkdir(parents=True)
    data_dir.mkdir(parents=True)
    env = server_env(data_dir, local_root)
    database = migrated_database(exe, env)
    if database is not None:
        shutil.copy(database, data_dir / DB_NAME)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = base / "server.log"
    command = [str(exe), "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(port)]
    command += ["--host", url, "--data-dir", str(data_dir), "--username", EMAIL, "--password", PASSWORD]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=base, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        _wait_up(url, process, log)
        key = personal_access_token(url, EMAIL, PASSWORD)
    except BaseException:
        _stop(process)
        raise
    return process, LabelStudioServer(url, key, data_dir, local_root, log)


@pytest.fixture(scope="session")
def labelstudio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabelStudioServer]:
    """The running server, with a user's personal access token."""
    process, server = start(tmp_path_factory.mktemp("labelstudio"))
    try:
        yield server
    finally:
        _stop(process)
