"""A small wrapper over label-studio-sdk: the calls the label commands make, with one-sentence errors.

The API key may be a personal access token (Label Studio 1.23's default: the SDK exchanges it for
short-lived access tokens) or a legacy token. It comes from LABEL_STUDIO_API_KEY or `[label]
api-key` in officescore.toml (`api_key()`), and is never printed, logged or written to a file:
error messages name the server, not the key.

Errors are translated into `LabelStudioError` (a UserError): server not reachable, key refused,
a project missing or labelling other classes, and Label Studio's own JSON validation errors
(first message, one line).
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from officescore.config import SECRETS, secret
from officescore.errors import ConfigError, UserError
from officescore.label.formats import LabelSchema

API_KEY_ENV = SECRETS["label"]["api_key"]  # LABEL_STUDIO_API_KEY
DEFAULT_URL = "http://localhost:8080"
TIMEOUT = 60.0  # seconds per request; an import of a few hundred tasks stays well inside it
CHECK_KEY = "check the API key"  # what `connect` asks first; its 404 means a wrong address
EXPORT_TRIES = 3  # an empty export body (never a real answer) is asked for again this often

T = TypeVar("T")


class LabelStudioError(UserError):
    """Label Studio refused a request or could not be reached."""


def api_key(config: dict[str, Any] | None = None) -> str:
    """The API key from LABEL_STUDIO_API_KEY, else `[label] api-key` in officescore.toml."""
    key = secret("label", "api_key", config)
    if not key:
        raise ConfigError(
            f"no Label Studio API key: set {API_KEY_ENV} (Label Studio: Account & Settings -> "
            "Personal Access Token) or `api-key` under [label] in officescore.toml"
        )
    return key


def check_project_title(title: str) -> str:
    title = (title or "").strip()
    if not 3 <= len(title) <= 50:
        raise ConfigError(f"--project {title!r}: a Label Studio project title has 3 to 50 characters")
    return title


def _first_message(body: Any) -> str:
    """Label Studio's error JSON in one line: its first validation error, else its detail."""
    if isinstance(body, dict):
        errors = body.get("validation_errors")
        if isinstance(errors, dict) and errors:
            field, messages = next(iter(errors.items()))
            text = messages[0] if isinstance(messages, list) and messages else messages
            if isinstance(text, (dict, list)):
                text = json.dumps(text)[:200]
            return f"{field}: {text}" if field not in ("non_field_errors", "detail") else str(text)
        if body.get("detail"):
            return str(body["detail"])
    text = str(body or "no details").replace("\n", " ")
    return text[:200]


def _every_page(pager: Any) -> list[Any]:
    """The items of every page of a paged SDK list. The SDK's own iteration always asks for one
    more page after the last (its pages say there is a next one whether or not there is)."""
    items: list[Any] = []
    for page in pager.iter_pages():
        items += page.items or []
        if not getattr(page.response, "next", None):
            break
    return items


@dataclass
class Project:
    id: int
    title: str
    schema: LabelSchema
    config: str = ""  # the labelling config as Label Studio holds it (the schema is read from it)


class LabelStudio:
    """One Label Studio server, reached with one API key."""

    def __init__(self, url: str, key: str, timeout: float = TIMEOUT) -> None:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"--url {url}: give Label Studio's address with http:// or https://")
        self.url = url.rstrip("/")
        self._key = key
        self.timeout = timeout
        with self._errors("connect"):
            from label_studio_sdk.client import LabelStudio as Sdk

            self.sdk = Sdk(base_url=self.url, api_key=key, timeout=timeout)

    @classmethod
    def connect(cls, url: str, key: str, timeout: float = TIMEOUT) -> LabelStudio:
        """A client whose server answered and accepted the key (checked once, here)."""
        client = cls(url, key, timeout)
        client.call(CHECK_KEY, lambda: client.sdk.users.whoami())
        return client

    # ----------------------------------------------------------------- errors

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        import httpx
        from label_studio_sdk.core.api_error import ApiError

        try:
            yield
        except ApiError as exc:
            status = exc.status_code or 0
            if status in (401, 403):
                raise LabelStudioError(
                    f"Label Studio at {self.url} refused the API key ({what}); set {API_KEY_ENV} to a "
                    "personal access token from Account & Settings (or a legacy token)"
                ) from None
            if status == 404 and what == CHECK_KEY:  # every Label Studio answers this: a wrong address
                raise LabelStudioError(
                    f"no Label Studio API at {self.url} (its user check answered 404 Not Found); give "
                    "--url the address Label Studio's own pages open at, e.g. http://localhost:8080"
                ) from None
            if status == 404:
                raise LabelStudioError(f"Label Studio at {self.url}: not found ({what})") from None
            message = _first_message(exc.body)
            raise LabelStudioError(f"Label Studio at {self.url} refused to {what}: {message}") from None
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError) as exc:
            raise LabelStudioError(
                f"Label Studio is not reachable at {self.url} ({type(exc).__name__}); start it "
                "(`label-studio start`) or fix --url"
            ) from None
        except httpx.TimeoutException:
            raise LabelStudioError(
                f"Label Studio at {self.url} did not answer within {self.timeout:g}s ({what}); try again"
            ) from None

    def call(self, what: str, fn: Callable[[], T]) -> T:
        with self._errors(what):
            return fn()

    def _request(self, what: str, path: str, method: str = "GET", **kwargs: Any) -> Any:
        """A request the SDK has no method for (file uploads), sent through the SDK's own
        authenticated HTTP client (so personal access tokens are exchanged the same way)."""
        from label_studio_sdk.core.api_error import ApiError

        def send() -> Any:
            response = self.sdk._client_wrapper.httpx_client.request(path, method=method, **kwargs)
            if response.status_code >= 400:
                try:
                    body = response.json()
                except ValueError:
                    body = response.text
                raise ApiError(status_code=response.status_code, body=body)
            return response

        return self.call(what, send)

    # ----------------------------------------------------------------- projects

    def find_project(self, title: str) -> Project | None:
        """The project with exactly this title (the oldest, if several), or None."""
        projects = self.call("list projects", lambda: _every_page(self.sdk.projects.list(title=title)))
        matches = sorted((p for p in projects if p.title == title), key=lambda p: p.id or 0)
        if not matches:
            return None
        project = matches[0]
        config = str(project.label_config or "")
        return Project(int(project.id), title, LabelSchema.from_config(config), config)

    def project(self, title: str) -> Project:
        found = self.find_project(check_project_title(title))
        if found is None:
            raise LabelStudioError(
                f"Label Studio at {self.url} has no project {title!r}; check --project "
                "(or create it with `officescore label push`)"
            )
        return found

    def create_project(self, title: str, schema: LabelSchema, description: str = "") -> Project:
        title = check_project_title(title)
        config = schema.config_xml()
        created = self.call(
            "create the project",
            lambda: self.sdk.projects.create(title=title, label_config=config, description=description),
        )
        return Project(int(created.id), title, schema, config)

    def set_project(self, project_id: int, **fields: Any) -> None:
        self.call("update the project", lambda: self.sdk.projects.update(id=project_id, **fields))

    # ----------------------------------------------------------------- tasks

    def export_tasks(self, project_id: int) -> list[dict[str, Any]]:
        """Every task of the project with its annotations and predictions (Label Studio JSON)."""

        def fetch() -> bytes:
            stream = self.sdk.projects.exports.download_sync(
                project_id, export_type="JSON", download_all_tasks=True
            )
            return b"".join(stream)

        for _ in range(EXPORT_TRIES):
            body = self.call("export the project's tasks", fetch)
            if body.strip():  # a project without tasks exports "[]": nothing at all is a cut-off download
                return json.loads(body)
        raise LabelStudioError(
            f"Label Studio at {self.url} sent an empty export of project {project_id} {EXPORT_TRIES} times; "
            "try again"
        )

    def upload_file(self, project_id: int, name: str, data: bytes) -> str:
        """Upload one photo (no task made yet) and return the URL Label Studio serves it at."""
        response = self._request(
            "upload an image",
            f"api/projects/{project_id}/import",
            method="POST",
            params={"commit_to_project": "false"},
            files={name: (name, data, "application/octet-stream")},
        )
        ids = response.json().get("file_upload_ids") or []
        if not ids:
            raise LabelStudioError(f"Label Studio at {self.url} did not keep the upload of {name}")
        upload = self.call("read the upload", lambda: self.sdk.files.get(id=int(ids[0])))
        return "/data/" + str(upload.file).lstrip("/")

    def import_tasks(self, project_id: int, tasks: Sequence[dict[str, Any]]) -> list[int]:
        """Import tasks (with their predictions / annotations) in one request: all or nothing."""
        response = self.call(
            "import the tasks",
            lambda: self.sdk.projects.import_tasks(
                project_id, request=list(tasks), return_task_ids=True, commit_to_project=True
            ),
        )
        return [int(i) for i in (getattr(response, "task_ids", None) or [])]

    def add_local_storage(self, project_id: int, folder: Path, title: str = "officescore") -> None:
        """Let the project serve photos from `folder` (Label Studio local-files storage), once."""
        path = str(Path(folder).resolve())
        existing = self.call(
            "list local storages", lambda: list(self.sdk.import_storage.local.list(project=project_id))
        )
        if any(getattr(s, "path", None) == path for s in existing):
            return
        self.call(
            "add local-files storage (is LOCAL_FILES_SERVING_ENABLED=true and the folder inside "
            "LOCAL_FILES_DOCUMENT_ROOT?)",
            lambda: self.sdk.import_storage.local.create(
                project=project_id, path=path, title=title, use_blob_urls=True
            ),
        )

    def download(self, url: str, task_id: int | None = None, cache_dir: Path | None = None) -> bytes:
        """The bytes of a task's image: an upload, a local-files path, any http(s) URL, or a file in
        the project's cloud storage (s3://, gs://, azure-blob://; Label Studio signs the link for
        `task_id`, so no cloud credentials are needed here).

        label-studio-sdk's `get_local_path` resolves every form Label Studio uses; the access token
        it needs is the SDK's current one (a personal access token is exchanged first).
        """
        from label_studio_sdk._extensions.label_studio_tools.core.utils.io import get_local_path

        def fetch() -> bytes:
            token = self.sdk._client_wrapper.get_headers()["Authorization"].split(" ", 1)[1]
            with tempfile.TemporaryDirectory(prefix="officescore-ls-") as tmp:
                path = get_local_path(
                    url,
                    cache_dir=str(cache_dir or tmp),
                    hostname=self.url,
                    access_token=token,
                    task_id=task_id,
                )
                return Path(path).read_bytes()

        try:
            return self.call(f"download {url}", fetch)
        except LabelStudioError:
            raise
        except Exception as exc:
            if not isinstance(exc, (OSError, ValueError)) and type(exc) is not Exception:
                raise  # a bug of ours, not a download that failed (get_local_path's own raises are bare)
            raise LabelStudioError(
                f"Label Studio at {self.url}: cannot download {url} ({_download_failure(exc)})"
            ) from None

    # ----------------------------------------------------------------- ML backends

    def connect_backend(
        self, project_id: int, backend_url: str, title: str = "officescore", interactive: bool = False
    ) -> int:
        """Connect an ML backend to the project (Label Studio checks it answers) and let Label Studio
        ask it for predictions whenever a labeller opens a task without one of its current version
        (the backend is the project's model version); `interactive`: also send it the smart tools'
        clicks and boxes."""
        backends = self.call("list ML backends", lambda: list(self.sdk.ml.list(project=project_id)))
        for backend in backends:
            if (backend.url or "").rstrip("/") == backend_url.rstrip("/"):
                if interactive and not backend.is_interactive:
                    backend_id = int(backend.id)
                    self.call(
                        "mark the ML backend interactive",
                        lambda backend_id=backend_id: self.sdk.ml.update(id=backend_id, is_interactive=True),
                    )
                break
        else:
            backend = self.call(
                "connect the ML backend (started with ML_BLOCK_LOCAL_IP=false for a backend on this "
                "machine?)",
                lambda: self.sdk.ml.create(
                    url=backend_url, project=project_id, title=title, is_interactive=interactive
                ),
            )
        # The backend's title as the project's model version: Label Studio then asks the backend for
        # the suggestions labellers see. A project that got predictions first (`label push --model`)
        # holds their version there, and labellers were shown those and never the backend's.
        self.set_project(
            project_id,
            evaluate_predictions_automatically=True,
            show_collab_predictions=True,
            model_version=str(backend.title or title),
        )
        return int(backend.id)

    def task(self, task_id: int) -> dict[str, Any]:
        """One task as a labeller's browser gets it (this is what triggers the ML backend)."""
        task = self.call("read the task", lambda: self.sdk.tasks.get(id=str(task_id)))
        # warnings=False: the SDK's model types some fields narrower than the server fills them
        return task.model_dump(warnings=False) if hasattr(task, "model_dump") else dict(task)


def _download_failure(exc: Exception) -> str:
    """Why a download failed, in a few words: an HTTP status and the URL it came from, without the
    query of a signed cloud-storage link (S3's Signature=, GCS's X-Goog-Signature=, Azure's sig=)."""
    response = getattr(exc, "response", None)
    if response is None or getattr(response, "status_code", None) is None:
        # A connection error quotes the URL it tried, signed query and all: keep the first line, no query.
        return re.sub(r"\?[^\s)'\"]*", "", str(exc)).strip().split("\n")[0]
    where, _, query = str(response.url).partition("?")
    if query and "sig" not in query.lower():
        where = f"{where}?{query}"
    return f"HTTP {response.status_code} {response.reason or ''} from {where}".replace("  ", " ")
