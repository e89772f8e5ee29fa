"""The Label Studio client's errors and choices without Label Studio: a fake server on 127.0.0.1
(tests/fakeservers.py) answers uploads and photo downloads as Label Studio would, and the SDK is
stood in for where only the answer matters. Against the real server: test_label_studio.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from fakeservers import FakeServer, Reply

from officescore.label.client import LabelStudio, LabelStudioError
from officescore.label.formats import LabelSchema

KEY = "0123456789abcdef0123"  # a legacy token: sent as it is


class FakeStudio(FakeServer):
    """Answers an upload with a validation error and serves one uploaded photo; 404 for the rest."""

    def route(self, method: str, path: str, query: dict[str, list[str]], body: bytes, headers: dict) -> Reply:
        if method == "POST" and path == "/api/projects/3/import":
            error = {"validation_errors": {"file_upload": ["This file type is not supported."]}}
            return Reply(400, json.dumps(error).encode(), {"Content-Type": "application/json"})
        if method == "GET" and path == "/data/upload/3/photo.jpg":
            return Reply(200, b"the photo's bytes", {"Content-Type": "image/jpeg"})
        return Reply(404, b'{"detail": "Not found."}', {"Content-Type": "application/json"})


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
