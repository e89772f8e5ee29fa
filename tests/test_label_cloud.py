"""Photos in a project's cloud storage (s3://): Label Studio keeps the bucket's URI in the task and
signs a link for each task on request, so `label pull`, training jobs and the ML backend read the
photos without cloud credentials of their own. The bucket is moto's S3 imitation on 127.0.0.1; the
Label Studio is the real one (labelstudio_server.py)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from labelmodels import polygon_region, run, solid_checkpoint, write_photos
from labelstudio_server import LabelStudioServer

from officescore import DEFAULT_CLASSES
from officescore.label.client import LabelStudio
from officescore.label.formats import LabelSchema, result_regions

BUCKET = "office-photos"
CREDENTIALS = {
    "aws_access_key_id": "test-key",
    "aws_secret_access_key": "test-secret",
    "region_name": "us-east-1",
}


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """An S3 imitation on a free port of 127.0.0.1 with one bucket."""
    import boto3
    from moto.server import ThreadedMotoServer

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        boto3.client("s3", endpoint_url=endpoint, **CREDENTIALS).create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        server.stop()


@pytest.fixture
def key(labelstudio: LabelStudioServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """The CLI reads the API key from the environment."""
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", labelstudio.api_key)
    return labelstudio.api_key


def _cloud_project(
    server: LabelStudioServer, endpoint: str, title: str, photos: list[Path]
) -> tuple[LabelStudio, int, list[dict[str, Any]]]:
    """A project whose tasks are `photos` in the bucket (under a prefix of their own), imported by
    Label Studio's S3 storage sync as a user sets it up, the first one labelled (a desk); its tasks
    as exported, in photo order."""
    import boto3

    prefix = title.replace(" ", "-")
    bucket = boto3.client("s3", endpoint_url=endpoint, **CREDENTIALS)
    for photo in photos:
        bucket.put_object(Bucket=BUCKET, Key=f"{prefix}/{photo.name}", Body=photo.read_bytes())
    client = LabelStudio.connect(server.url, server.api_key)
    project = client.create_project(title, LabelSchema(list(DEFAULT_CLASSES)))
    storage = client.sdk.import_storage.s3.create(
        project=project.id,
        bucket=BUCKET,
        prefix=prefix,
        s3endpoint=endpoint,
        use_blob_urls=True,
        presign=True,
        title="photos in S3",
        **CREDENTIALS,
    )
    client.sdk.import_storage.s3.sync(id=storage.id)
    tasks = sorted(client.export_tasks(project.id), key=lambda t: t["data"]["image"])
    assert [t["data"]["image"] for t in tasks] == [f"s3://{BUCKET}/{prefix}/{p.name}" for p in photos]
    square = [[10, 10], [40, 10], [40, 40], [10, 40]]
    client.sdk.annotations.create(id=tasks[0]["id"], result=[polygon_region(square, "desk", 128, 96)])
    return client, project.id, tasks


def test_photos_in_s3_storage_are_pulled_and_predicted_on(
    labelstudio: LabelStudioServer,
    s3_endpoint: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    key: str,
) -> None:
    """A labelled task's photo comes from the bucket into the pull (CLI and a job's cached pull),
    byte for byte; the ML backend predicts on an unlabelled one as Label Studio sends it (the raw
    s3:// URI, which only Label Studio can sign)."""
    from officescore.label.backend import Backend
    from officescore.label.pull import pull_project

    photos = write_photos(tmp_path / "photos", n=2)
    client, _, tasks = _cloud_project(labelstudio, s3_endpoint, "cloud photos", photos)
    export = tmp_path / "export"
    pull = ["label", "pull", "--url", labelstudio.url, "--project", "cloud photos", "--out", str(export)]
    code, out, err = run([*pull, "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["pull"]["images"] == 1 and key not in out + err
    (pulled,) = (export / "images").iterdir()
    assert pulled.read_bytes() == photos[0].read_bytes()

    cached = pull_project(client, "cloud photos", tmp_path / "job", cache=tmp_path / "cache")
    assert cached.images == 1
    assert [p.read_bytes() for p in (tmp_path / "cache").iterdir()] == [photos[0].read_bytes()]

    backend = Backend(solid_checkpoint(tmp_path / "model.pt"), client=client, device="cpu", conf=0.05)
    config = client.project("cloud photos").config
    (answer,) = backend.predict([tasks[1]], config)
    regions = result_regions(answer["result"])
    assert regions and all(r.class_name in DEFAULT_CLASSES for r in regions)


def test_a_photo_missing_from_the_bucket_is_one_line_naming_it(
    labelstudio: LabelStudioServer,
    s3_endpoint: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    key: str,
) -> None:
    """Deleted from the bucket after Label Studio imported it: the pull stops with one line that
    names the photo, and writes no export."""
    import boto3

    photos = write_photos(tmp_path / "photos", n=1)
    client, _, (task,) = _cloud_project(labelstudio, s3_endpoint, "cloud photo gone", photos)
    stored_as = task["data"]["image"].removeprefix(f"s3://{BUCKET}/")
    boto3.client("s3", endpoint_url=s3_endpoint, **CREDENTIALS).delete_object(Bucket=BUCKET, Key=stored_as)
    export = tmp_path / "export"
    code, out, err = run(
        ["label", "pull", "--url", labelstudio.url, "--project", "cloud photo gone", "--out", str(export)],
        capsys,
    )
    assert code != 0 and "Traceback" not in err
    (line,) = [line for line in err.splitlines() if line.startswith("error:")]
    assert f"cannot download {task['data']['image']} (HTTP 403 FORBIDDEN from {s3_endpoint}/" in line
    assert "Signature" not in line  # the signed link's query is noise to a reader
    assert not (export / "annotations.json").exists()
