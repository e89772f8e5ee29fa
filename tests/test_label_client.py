"""The Label Studio client's errors and choices without Label Studio: a fake server on 127.0.0.1
(tests/fakeservers.py) answers uploads and photo downloads as Label Studio would, and the SDK is
stood in for where only the answer matters. Against the real server: test_label_studio.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fakeservers import FakeServer, Reply

from officescore.label.client import LabelStudio, LabelStudioError
from officescore.label.formats import LabelSchema

KEY = "0123456789abcdef0123"  # a legacy token: sent as it is


def _json(status: int, body: Any) -> Reply:
    return Reply(status, json.dumps(body).encode(), {"Content-Type": "application/json"})


class FakeStudio(FakeServer):
    """Answers KEY alone (a legacy token: `Token KEY`); keeps an upload of a photo (upload 7, stored
    as upload/3/photo.jpg) and refuses one of a text file with a validation error; serves the photo
    it keeps; 404 for the rest."""

    def route(self, method: str, path: str, query: dict[str, list[str]], body: bytes, headers: dict) -> Reply:
        if headers.get("authorization") != f"Token {KEY}":
            return _json(401, {"detail": "Invalid token."})
        if method == "GET" and path == "/api/current-user/whoami":
            return _json(200, {"id": 1, "email": "labeller@example.com"})
        if method == "POST" and path == "/api/projects/3/import":
            if b'filename="photo.jpg"' in body:
                return _json(201, {"file_upload_ids": [7]})
            return _json(400, {"validation_errors": {"file_upload": ["This file type is not supported."]}})
        if method == "GET" and path == "/api/import/file-upload/7":
            return _json(200, {"id": 7, "file": "upload/3/photo.jpg"})
        if method == "GET" and path == "/data/upload/3/photo.jpg":
            return Reply(200, b"the photo's bytes", {"Content-Type": "image/jpeg"})
        return _json(404, {"detail": "Not found."})


@pytest.fixture
def studio() -> Iterator[FakeStudio]:
    server = FakeStudio().start()
    try:
        yield server
    finally:
        server.stop()


def test_a_refused_upload_and_a_missing_photo_are_one_sentence_each(studio: FakeStudio) -> None:
    """HTTP 400 is Label Studio refusing the request (its first validation error is the reason),
    not an answer to read; a photo it cannot serve is a LabelStudioError naming the photo (the
    backend answers it as a bad request and keeps serving), never the key."""
    client = LabelStudio(studio.url, KEY)
    with pytest.raises(LabelStudioError) as refused:
        client.upload_file(3, "notes.txt", b"not a photo")
    reason = "file_upload: This file type is not supported."
    assert str(refused.value) == f"Label Studio at {studio.url} refused to upload an image: {reason}"
    assert client.download("/data/upload/3/photo.jpg") == b"the photo's bytes"
    with pytest.raises(LabelStudioError, match=r"cannot download /data/upload/3/gone\.jpg") as missing:
        client.download("/data/upload/3/gone.jpg")
    assert KEY not in str(missing.value)
    where = f"{studio.url}/storage-data/uploaded/?filepath=upload/3/gone.jpg"  # the SDK's first try
    assert str(missing.value).endswith(f"(HTTP 404 Not Found from {where})")
    # A cloud-storage photo needs its task for Label Studio to sign the link: without one (a
    # hand-made request to the backend) label-studio-sdk raises a bare Exception, still one sentence.
    with pytest.raises(LabelStudioError, match=r"cannot download s3://bucket/a\.jpg \(Label Studio Task ID"):
        client.download("s3://bucket/a.jpg")


def test_why_a_download_failed_never_quotes_a_signed_links_query() -> None:
    """The link Label Studio signs for a cloud photo carries its signature in the query: a storage
    host that does not answer is one line naming the host and path, without it."""
    import requests

    from officescore.label.client import _download_failure

    signed = "http://127.0.0.1:1/bucket/k.jpg?X-Amz-Signature=SECRET&X-Amz-Security-Token=TOKEN"
    with pytest.raises(requests.ConnectionError) as refused:
        requests.get(signed, timeout=5)
    why = _download_failure(refused.value)
    assert "/bucket/k.jpg" in why and "127.0.0.1" in why
    assert "SECRET" not in why and "TOKEN" not in why and "\n" not in why


def test_a_bug_in_a_download_is_not_called_a_failed_download(monkeypatch: pytest.MonkeyPatch) -> None:
    """label-studio-sdk's own failures are bare Exceptions (a sentence); a TypeError is a bug: raised."""
    import label_studio_sdk._extensions.label_studio_tools.core.utils.io as sdk_io

    def broken(*_: object, **__: object) -> str:
        raise TypeError("unsupported operand")

    monkeypatch.setattr(sdk_io, "get_local_path", broken)
    client = LabelStudio("http://127.0.0.1:1", KEY)
    client.sdk = SimpleNamespace(  # the token lookup download makes first
        _client_wrapper=SimpleNamespace(get_headers=lambda: {"Authorization": "Token abc"})
    )
    with pytest.raises(TypeError, match="unsupported operand"):
        client.download("/data/upload/3/photo.jpg")


def test_a_forbidden_key_is_the_keys_fault_and_the_oldest_project_of_a_title_is_used() -> None:
    """403 (a token without the rights, or one Label Studio turned off) says to fix the key, as 401
    does; of two projects with one title, the oldest (lowest id) is the project."""
    from label_studio_sdk.core.api_error import ApiError

    client = LabelStudio("http://127.0.0.1:1", KEY)
    for status in (401, 403):

        def refuse(status: int = status) -> Any:
            raise ApiError(status_code=status, body={"detail": "You do not have permission."})

        with pytest.raises(LabelStudioError, match="refused the API key \\(list projects\\)"):
            client.call("list projects", refuse)
    config = LabelSchema(("desk", "chair")).config_xml()
    listed = [
        SimpleNamespace(id=9, title="offices", label_config=config),
        SimpleNamespace(id=4, title="offices", label_config=config),
        SimpleNamespace(id=2, title="offices 2", label_config=config),
    ]
    # Two pages as label-studio-sdk's pager hands them (the last has no `next`), the oldest on page 2.
    pages = [
        SimpleNamespace(items=listed[:1], response=SimpleNamespace(next="page 2")),
        SimpleNamespace(items=listed[1:], response=SimpleNamespace(next=None)),
    ]

    def iter_pages() -> Any:
        yield from pages
        raise AssertionError("asked for a page after the one without `next`")  # the SDK would ask

    client.sdk = SimpleNamespace(
        projects=SimpleNamespace(list=lambda title: SimpleNamespace(iter_pages=iter_pages))
    )
    project = client.project("offices")
    assert (project.id, project.title, project.schema.classes) == (4, "offices", ("desk", "chair"))


def test_connect_checks_the_key_and_a_kept_upload_is_served_at_its_data_url(studio: FakeStudio) -> None:
    """`connect` asks the server once, so a wrong key, a server that is not there or a wrong path is
    one sentence before any work; an upload Label Studio kept is served at /data/<its file>, fetched
    with the key."""
    with pytest.raises(LabelStudioError, match=r"refused the API key \(check the API key\)"):
        LabelStudio.connect(studio.url, "a-wrong-key-0000000000")
    with pytest.raises(LabelStudioError, match="Label Studio is not reachable at http://127.0.0.1:1 "):
        LabelStudio.connect("http://127.0.0.1:1", KEY)
    # a server there, but not Label Studio's API at that path: the address, not the key, is wrong
    with pytest.raises(LabelStudioError, match=r"^no Label Studio API at .*/labelstudio \(its user check"):
        LabelStudio.connect(f"{studio.url}/labelstudio", KEY)
    client = LabelStudio.connect(studio.url, KEY)
    url = client.upload_file(3, "photo.jpg", b"the photo's bytes")
    assert url == "/data/upload/3/photo.jpg"
    assert client.download(url) == b"the photo's bytes"


def test_label_studios_error_answers_are_one_line_with_their_first_message() -> None:
    """The first validation error (a form-wide one without its field's name), else the detail, else
    the body's text on one line; a 404 says what was not found."""
    from label_studio_sdk.core.api_error import ApiError

    from officescore.label.client import _first_message

    two = {"validation_errors": {"label_config": ["the first problem", "the second problem"]}}
    assert _first_message(two) == "label_config: the first problem"
    assert _first_message({"validation_errors": {"non_field_errors": ["titles must differ"]}}) == (
        "titles must differ"
    )
    assert _first_message({"detail": "Not found."}) == "Not found."
    assert _first_message("<html>\n<h1>Server Error (500)</h1>\n</html>") == (
        "<html> <h1>Server Error (500)</h1> </html>"
    )
    client = LabelStudio("http://127.0.0.1:1", KEY)

    def missing() -> Any:
        raise ApiError(status_code=404, body={"detail": "Not found."})

    with pytest.raises(LabelStudioError) as info:
        client.call("read the task", missing)
    assert str(info.value) == "Label Studio at http://127.0.0.1:1: not found (read the task)"


def test_project_titles_have_3_to_50_characters() -> None:
    """Label Studio's own limits, both inclusive; the title is trimmed first."""
    from officescore.errors import ConfigError
    from officescore.label.client import check_project_title

    assert check_project_title(" abc ") == "abc" and check_project_title("x" * 50) == "x" * 50
    for title in ("ab", "x" * 51):
        with pytest.raises(ConfigError, match="3 to 50 characters"):
            check_project_title(title)


def test_the_backend_and_the_photo_folder_are_connected_once() -> None:
    """Label Studio stand-in recording the calls: a backend already connected (its URL written with
    a trailing slash) is reused, switched to interactive when asked, and the project's model version
    becomes that backend's title; a photo folder already a storage (by its resolved path) is not
    added again."""
    calls: list[tuple[str, Any]] = []
    known = SimpleNamespace(
        id=5, url="http://127.0.0.1:9090/", title="officescore-live", is_interactive=False
    )
    storage = SimpleNamespace(path=str(Path("photos").resolve()))
    client = LabelStudio("http://127.0.0.1:1", KEY)
    client.sdk = SimpleNamespace(
        ml=SimpleNamespace(
            list=lambda project: [known],
            create=lambda **made: calls.append(("create", made)),
            update=lambda id, **changed: calls.append(("update", (id, changed))),
        ),
        projects=SimpleNamespace(update=lambda id, **changed: calls.append(("project", (id, changed)))),
        import_storage=SimpleNamespace(
            local=SimpleNamespace(
                list=lambda project: [storage], create=lambda **made: calls.append(("storage", made))
            )
        ),
    )
    assert client.connect_backend(3, "http://127.0.0.1:9090", title="officescore", interactive=True) == 5
    project_fields = {"evaluate_predictions_automatically": True, "show_collab_predictions": True}
    assert calls == [
        ("update", (5, {"is_interactive": True})),
        ("project", (3, {**project_fields, "model_version": "officescore-live"})),
    ]
    calls.clear()
    client.add_local_storage(3, Path("photos"))
    assert calls == []
