"""The ML backend's HTTP side without Label Studio or torch: which checkpoint answers and under which
version, when it is reloaded, the threshold a suggestion needs, one prediction per task in order,
the status codes, and what /setup's access token must never reach. A stand-in predictor
(`ScoredPredictor`) replaces the model; the runs folder, versions and HTTP server are the real ones.
Label Studio itself calling the backend is in test_label_studio.py and test_label_train.py."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import requests
from labelmodels import write_photos
from PIL import Image

from officescore import masks as masklib
from officescore.attributes import AttributeSchema
from officescore.infer.detection import Detection, ImageResult
from officescore.label import backend as ml
from officescore.label.formats import LabelSchema, result_regions
from officescore.label.predict import LoadedPredictor, model_version, suggestion_threshold
from officescore.runs import NOT_USED_FILE

CLASSES = ("desk", "chair", "monitor")
# (class, class score, mask score) of every object the stand-in finds on a photo; by suggestion
# score (class x mask score²): 0.225, 0.648 and exactly 0.25.
FOUND = (("desk", 0.9, 0.5), ("chair", 0.8, 0.9), ("monitor", 0.25, 1.0))


class ScoredPredictor:
    """Stands in for `officescore.infer.Predictor`: on every readable photo the objects of `FOUND`
    (one square each), those below its class-score threshold `conf` left out as Predictor does; an
    unreadable photo gets an `error`, as Predictor gives it."""

    model = None
    attributes = AttributeSchema()

    def __init__(self, conf: float) -> None:
        self.conf = conf
        self.classes = list(CLASSES)

    def predict(self, paths: Sequence[Path], **_: object) -> list[ImageResult]:
        results = []
        for path in paths:
            try:
                with Image.open(path) as photo:
                    width, height = photo.size
            except OSError:  # named by the path read, as Predictor names it (`images.load_image`)
                results.append(ImageResult(str(path), error=f"{path}: truncated or corrupt image"))
                continue
            detections = []
            for n, (name, score, mask_score) in enumerate(FOUND):
                mask = np.zeros((height, width), np.uint8)
                mask[10:30, 10 + 30 * n : 30 + 30 * n] = 1
                box = [10.0 + 30 * n, 10.0, 30.0 + 30 * n, 30.0]
                detection = Detection(
                    name, score, box, masklib.encode(mask), float(mask.mean()), mask_score=mask_score
                )
                if score >= self.conf:
                    detections.append(detection)
            results.append(ImageResult(str(path), width, height, detections))
        return results


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, float]]:
    """Every model load of the backend, as (checkpoint, conf): a `ScoredPredictor` under the real
    version name of the checkpoint file."""
    loaded: list[tuple[str, float]] = []

    def load_predictor(source: Path | str, device: str, conf: float | None, *_: Any) -> LoadedPredictor:
        threshold, by_mask = suggestion_threshold(source, model_version(source), conf)
        loaded.append((str(source), threshold))
        return LoadedPredictor(ScoredPredictor(threshold), source, model_version(source), by_mask=by_mask)

    monkeypatch.setattr(ml, "load_predictor", load_predictor)
    return loaded


def checkpoint(path: Path, data: bytes, age: float = 0.0) -> Path:
    """A stand-in best.pt (the stand-in predictor never reads it), modified `age` seconds ago."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    when = time.time() - age
    os.utime(path, (when, when))
    return path


def version_of(run: str, data: bytes) -> str:
    """`<run>-best-<sha256[:8]>`, the version a run's best.pt answers under (docs/label-training.md)."""
    return f"{run}-best-{hashlib.sha256(data).hexdigest()[:8]}"


@contextmanager
def served(backend: ml.Backend) -> Iterator[str]:
    server = ml.make_server(backend, "127.0.0.1", 0)
    ml.start(server)
    try:
        yield ml.url_of(server)
    finally:
        server.shutdown()
        server.server_close()


def raw_post(url: str, request: bytes) -> str:
    """The server's whole answer to a hand-written request (HTTP/1.0: it closes after answering)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as client:
        client.sendall(request)
        answer = b""
        while chunk := client.recv(4096):
            answer += chunk
    return answer.decode()


def test_the_newest_used_run_answers_and_a_newer_best_pt_is_loaded_once(
    tmp_path: Path, loads: list[tuple[str, float]]
) -> None:
    """`--model runs/train`: the newest best.pt of a run the backend used (a NOT_USED.txt run, newer
    still, is skipped), under its own version; a best.pt written later is loaded by the next call,
    once, and the log says which model replaced which."""
    runs = tmp_path / "runs" / "train"
    checkpoint(runs / "old" / "weights" / "best.pt", b"old", age=100)
    best = checkpoint(runs / "exp" / "weights" / "best.pt", b"first", age=50)
    checkpoint(runs / "worse" / "weights" / "best.pt", b"worse", age=10)
    (runs / "worse" / NOT_USED_FILE).write_text("The label backend did not use this model: worse\n")
    messages: list[str] = []
    backend = ml.Backend(runs, device="cpu", log=messages.append)
    assert backend.model_version == version_of("exp", b"first")
    assert backend.setup({}) == {"model_version": version_of("exp", b"first")}
    assert backend.model_version == version_of("exp", b"first")
    assert loads == [(str(best), ml.DEFAULT_CONF)]  # one load, however often it is asked

    checkpoint(best, b"second")  # training wrote a better best.pt
    assert backend.model_version == version_of("exp", b"second")
    assert backend.model_version == version_of("exp", b"second")
    assert loads == [(str(best), ml.DEFAULT_CONF)] * 2
    first, second = version_of("exp", b"first"), version_of("exp", b"second")
    assert messages[-1] == f"model {first} -> {second} (suggests scores >= 0.30)"
    # A run folder named itself answers with its own best.pt, newer runs beside it or not.
    assert ml.Backend(runs / "old", device="cpu").model_version == version_of("old", b"old")


@pytest.mark.parametrize(
    ("conf", "by_mask", "trainer_conf", "shown"),
    [
        (None, False, 0.25, {"chair": 0.648, "monitor": 0.25}),  # --train: the model's own threshold
        (0.25, True, None, {"chair": 0.648, "monitor": 0.25}),  # --conf on the suggestion score
        (0.25, False, None, {"desk": 0.9, "chair": 0.8, "monitor": 0.25}),  # --conf on the class score
        (None, False, None, {"desk": 0.9, "chair": 0.8}),  # a model found at start: 0.3, class score
    ],
)
def test_suggestions_need_the_threshold_on_the_score_it_was_found_on(
    tmp_path: Path,
    loads: list[tuple[str, float]],
    conf: float | None,
    by_mask: bool,
    trainer_conf: float | None,
    shown: dict[str, float],
) -> None:
    """A threshold on the suggestion score (a trained model's own, or --conf with by_mask) keeps the
    suggestions whose class x mask score² reaches it (one exactly at it too) and shows that score; one
    on the class score keeps and shows the class scores."""
    best = checkpoint(tmp_path / "runs" / "exp" / "weights" / "best.pt", b"weights")
    trainer = SimpleNamespace(current_checkpoint=lambda: str(best), current_conf=lambda: trainer_conf)
    backend = ml.Backend(best, conf=conf, by_mask=by_mask, trainer=trainer, local_root=tmp_path)  # type: ignore[arg-type]
    (photo,) = write_photos(tmp_path / "photos", n=1)
    on_mask = by_mask or (conf is None and trainer_conf is not None)
    threshold = conf if conf is not None else trainer_conf if trainer_conf is not None else ml.DEFAULT_CONF
    assert (
        backend.suggests() == f"suggests {'class x mask score²' if on_mask else 'scores'} >= {threshold:.2f}"
    )
    task = {"id": 1, "data": {"image": f"/data/local-files/?d=photos/{photo.name}"}}
    (answer,) = backend.predict([task], None)
    regions = result_regions(answer["result"])
    assert {r.class_name: round(r.score, 4) for r in regions} == shown
    assert answer["model_version"] == version_of("exp", b"weights")


def test_predict_answers_every_task_in_order_and_says_what_was_wrong_with_a_request(
    tmp_path: Path, loads: list[tuple[str, float]]
) -> None:
    """Label Studio pairs the results with its tasks by position: a photo that cannot be read gets an
    empty prediction in its place, not a gap. A task without a photo, or one whose local-files path
    leads outside the backend's --local-root, is the request's fault: 400 with the reason."""
    root = tmp_path / "root"
    photos = write_photos(root / "photos", n=2)
    (root / "photos" / "broken.jpg").write_bytes(b"not a photo")
    outside = write_photos(tmp_path / "elsewhere", n=1)[0]
    checkpoint(tmp_path / "runs" / "exp" / "weights" / "best.pt", b"weights")
    backend = ml.Backend(tmp_path / "runs", local_root=root, log=lambda message: None)
    version = version_of("exp", b"weights")

    def task(n: int, ref: str) -> dict[str, Any]:
        return {"id": n, "data": {"image": f"/data/local-files/?d={ref}"}}

    with served(backend) as url:
        refs = [f"photos/{photos[0].name}", "photos/broken.jpg", f"photos/{photos[1].name}"]
        tasks = [task(n, ref) for n, ref in enumerate(refs, 1)]
        reply = requests.post(f"{url}/predict", json={"tasks": tasks}, timeout=30)
        assert reply.status_code == 200 and reply.json()["model_version"] == version
        first, broken, last = reply.json()["results"]
        assert broken == {"result": [], "score": 0.0, "model_version": version}
        for answer in (first, last):
            assert answer["model_version"] == version and answer["score"] > 0
            assert {r.class_name for r in result_regions(answer["result"])} == {"desk", "chair"}

        escape = task(4, f"../elsewhere/{outside.name}")
        reply = requests.post(f"{url}/predict", json={"tasks": [escape]}, timeout=30)
        assert reply.status_code == 400 and "is served by Label Studio" in reply.json()["error"]
        reply = requests.post(f"{url}/predict", json={"tasks": [{"id": 5, "data": {}}]}, timeout=30)
        assert reply.status_code == 400 and reply.json()["error"] == "task 5: no data.image to predict on"


def test_a_bug_is_a_500_that_names_it_logged_with_its_traceback_and_the_server_keeps_serving(
    tmp_path: Path, loads: list[tuple[str, float]]
) -> None:
    """An exception nobody expected (a bug) gets Label Studio an answer, not a dropped connection:
    500 naming it; the log has the traceback to report; the next request is served as usual."""
    best = checkpoint(tmp_path / "runs" / "exp" / "weights" / "best.pt", b"weights")
    messages: list[str] = []
    trainer = SimpleNamespace(current_checkpoint=lambda: str(best), current_conf=lambda: None)
    backend = ml.Backend(best, local_root=tmp_path, log=messages.append, trainer=trainer)  # type: ignore[arg-type]

    def broken(*_: object) -> object:
        raise IndexError("list index out of range")

    backend.predict = broken  # type: ignore[method-assign]
    backend.metrics = broken  # type: ignore[method-assign]
    with served(backend) as url:
        reply = requests.post(f"{url}/predict", json={"tasks": [{"id": 1, "data": {}}]}, timeout=30)
        assert reply.status_code == 500
        assert reply.json()["error"] == "officescore backend bug (IndexError: list index out of range)"
        reply = requests.get(f"{url}/metrics", timeout=30)
        assert reply.status_code == 500 and "IndexError" in reply.json()["error"]
        assert requests.get(f"{url}/health", timeout=30).json()["status"] == "UP"
    logged = [m for m in messages if "failed (IndexError" in m]
    assert [m.split(" failed")[0] for m in logged] == ["POST /predict", "GET /metrics"]
    assert all("Traceback (most recent call last)" in m and "in broken" in m for m in logged)

    def full(*_: object) -> object:  # the disk, not a bug: said as it is, nothing to report
        raise OSError(28, "No space left on device")

    backend.predict = full  # type: ignore[method-assign]
    with served(backend) as url:
        reply = requests.post(f"{url}/predict", json={"tasks": [{"id": 1, "data": {}}]}, timeout=30)
    assert reply.status_code == 500 and "No space left on device" in reply.json()["error"]
    assert "POST /predict failed: [Errno 28] No space left on device" in messages
    assert not [m for m in messages if "No space left" in m and "please report" in m]  # not a bug


def test_malformed_predict_bodies_are_a_400_and_the_server_keeps_serving(
    tmp_path: Path, loads: list[tuple[str, float]]
) -> None:
    """Tasks that are not a list of objects, a task whose data is not an object, a label_config that
    is not text (a proxy or a hand-made request): 400 with the reason, not a dropped connection."""
    checkpoint(tmp_path / "runs" / "exp" / "weights" / "best.pt", b"weights")
    backend = ml.Backend(tmp_path / "runs", local_root=tmp_path, log=lambda message: None)
    click = {
        "type": "keypointlabels",
        "value": {"x": 50, "y": 50, "keypointlabels": ["desk"]},
        "original_width": 64,
        "original_height": 64,
    }
    with served(backend) as url:
        for body, reason in (
            ({"task": [{"id": 1}]}, 'needs "tasks": a list of Label Studio tasks'),  # a typo: not "no photos"
            ({"tasks": {"id": 1}}, "tasks must be a list"),
            ({"tasks": "photo.jpg"}, "tasks must be a list"),
            ({"tasks": [1]}, "every task must be a JSON object"),
            ({"tasks": [{"id": 1, "data": "photo.jpg"}]}, "task 1: no data.image"),
            ({"tasks": [{"id": 1, "data": {"image": "a.jpg"}}], "label_config": 5}, "label_config must be"),
        ):
            reply = requests.post(f"{url}/predict", json=body, timeout=30)
            assert reply.status_code == 400 and reason in reply.json()["error"], body
        config = LabelSchema(CLASSES, "polygon", interactive=True).config_xml()
        interactive = {
            "tasks": [{"id": 1, "data": "photo.jpg"}],
            "label_config": config,
            "params": {"context": {"result": [click]}},
        }
        (answer,) = requests.post(f"{url}/predict", json=interactive, timeout=30).json()["results"]
        assert answer["result"] == [] and "task 1: no data.image" in answer["error"]
        assert requests.get(f"{url}/health", timeout=10).status_code == 200


def test_a_body_that_is_not_json_is_a_400_that_says_so(
    tmp_path: Path, loads: list[tuple[str, float]]
) -> None:
    """A form post or bytes that are not UTF-8 answered json's bare "Expecting value: line 1 column
    1 (char 0)", which does not say the body is at fault."""
    checkpoint(tmp_path / "runs" / "exp" / "weights" / "best.pt", b"weights")
    backend = ml.Backend(tmp_path / "runs", log=lambda message: None)
    with served(backend) as url:
        for path in ("/predict", "/setup", "/webhook"):
            for raw in (b"tasks=1", b'{"a": "\xff"}'):
                reply = requests.post(f"{url}{path}", data=raw, timeout=10)
                assert reply.status_code == 400 and reply.json()["error"].startswith(
                    "the request body is not JSON"
                )


def test_a_negative_or_huge_content_length_is_a_400_at_once(
    tmp_path: Path, loads: list[tuple[str, float]]
) -> None:
    """Content-Length -1 made the handler read until the client hung up; 10^12 would have been
    read into memory. Both are answered at once, before any body is read."""
    checkpoint(tmp_path / "runs" / "exp" / "weights" / "best.pt", b"weights")
    backend = ml.Backend(tmp_path / "runs", log=lambda message: None)
    with served(backend) as url:
        for length in ("-1", str(10**12)):
            request = f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n{{}}"
            answer = raw_post(url, request.encode())
            assert answer.startswith("HTTP/1.0 400") and f"Content-Length {length}:" in answer
        # No body at all (`curl -X POST .../validate`) is an empty request, not a bad length.
        assert requests.post(f"{url}/validate", timeout=10).status_code == 200


def test_a_chunked_body_is_read_not_taken_for_an_empty_one(
    tmp_path: Path, loads: list[tuple[str, float]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A body sent with Transfer-Encoding: chunked (a proxy, or a client streaming it) has no
    Content-Length: it was read as `{}`, so a webhook became "train" and bad tasks an empty batch."""
    import json

    checkpoint(tmp_path / "runs" / "exp" / "weights" / "best.pt", b"weights")
    backend = ml.Backend(tmp_path / "runs", log=lambda message: None)

    def chunked(body: dict[str, Any]) -> Iterator[bytes]:  # requests streams a generator chunked
        text = json.dumps(body).encode()
        yield from (text[i : i + 7] for i in range(0, len(text), 7))

    with served(backend) as url:
        event = requests.post(f"{url}/webhook", data=chunked({"action": "ANNOTATION_CREATED"}), timeout=10)
        assert event.status_code == 201 and event.json()["event"] == "ANNOTATION_CREATED"
        bad = requests.post(f"{url}/predict", data=chunked({"tasks": "all of them"}), timeout=10)
        assert bad.status_code == 400 and "tasks must be a list" in bad.json()["error"]
        raw, headers = b"zz\r\n{}\r\n0\r\n\r\n", {"Transfer-Encoding": "chunked"}
        broken = requests.post(f"{url}/setup", data=raw, headers=headers, timeout=10)
        assert broken.status_code == 400 and "bad chunk size line" in broken.json()["error"]
        assert requests.get(f"{url}/health", timeout=10).status_code == 200
        monkeypatch.setattr(ml, "MAX_BODY", 40)  # many small chunks count towards one limit
        big = requests.post(f"{url}/webhook", data=chunked({"action": "A" * 40}), timeout=10)
        assert big.status_code == 400 and "larger than 40 bytes" in big.json()["error"]


def test_predict_names_the_version_that_made_its_results_when_a_new_model_lands(
    tmp_path: Path, loads: list[tuple[str, float]]
) -> None:
    """A newer best.pt written while /predict ran: the answer's model_version was asked for again
    afterwards (loading the new model first) and named it, beside results the old one made."""
    photo = write_photos(tmp_path / "root" / "photos", n=1)[0]
    best = checkpoint(tmp_path / "runs" / "exp" / "weights" / "best.pt", b"old", age=100)
    backend = ml.Backend(tmp_path / "runs", local_root=tmp_path / "root", log=lambda message: None)
    predict = backend.predict

    def predict_then_train(*args: Any) -> list[dict[str, Any]]:
        results = predict(*args)
        checkpoint(best, b"new")  # training finished meanwhile
        return results

    backend.predict = predict_then_train  # type: ignore[method-assign]
    with served(backend) as url:
        task = {"id": 1, "data": {"image": f"/data/local-files/?d=photos/{photo.name}"}}
        answer = requests.post(f"{url}/predict", json={"tasks": [task]}, timeout=30).json()
    assert answer["results"][0]["model_version"] == version_of("exp", b"old")
    assert answer["model_version"] == version_of("exp", b"old")


def test_webhooks_reach_the_trainer_and_setup_never_logs_the_access_token(
    tmp_path: Path, loads: list[tuple[str, float]]
) -> None:
    """Every webhook is answered 201 with the event it was; Label Studio's older POST /train is its
    Start Training button. /setup answers the version that predicts; the access token Label Studio
    hands it is never logged. /metrics without --train is not served (404) and says it needs --train."""
    notified: list[tuple[str, dict[str, Any]]] = []
    messages: list[str] = []

    def notify(event: str, data: dict[str, Any]) -> dict[str, Any]:
        notified.append((event, data))
        return {"status": "counted"}

    trainer = SimpleNamespace(current_checkpoint=lambda: None, current_conf=lambda: None, notify=notify)
    backend = ml.Backend(tmp_path / "runs", trainer=trainer, log=messages.append)  # type: ignore[arg-type]
    with served(backend) as url:
        setup = {"project": "1.0", "hostname": "http://127.0.0.1:1", "access_token": "ls-token-do-not-keep"}
        reply = requests.post(f"{url}/setup", json=setup, timeout=10)
        assert reply.status_code == 200 and reply.json() == {"model_version": ml.NO_MODEL_VERSION}
        hook = requests.post(
            f"{url}/webhook", json={"action": "ANNOTATION_CREATED", "project": {"id": 1}}, timeout=10
        )
        assert hook.status_code == 201
        assert hook.json() == {
            "status": "counted",
            "event": "ANNOTATION_CREATED",
            "model_version": ml.NO_MODEL_VERSION,
        }
        train = requests.post(f"{url}/train", json={"project": "1.1712345"}, timeout=10)
        assert train.status_code == 201 and train.json()["event"] == "START_TRAINING"
        bare = requests.post(f"{url}/webhook", json={}, timeout=10)  # no action: no training asked for
        assert bare.status_code == 201 and bare.json()["event"] == "train"
    assert notified == [
        ("ANNOTATION_CREATED", {"action": "ANNOTATION_CREATED", "project": {"id": 1}}),
        ("START_TRAINING", {"project": "1.1712345"}),
        ("train", {}),
    ]
    assert any("POST /setup" in message for message in messages)
    assert not any("ls-token-do-not-keep" in message for message in messages)

    checkpoint(tmp_path / "runs" / "exp" / "weights" / "best.pt", b"weights")
    with served(ml.Backend(tmp_path / "runs")) as url:
        hook = requests.post(f"{url}/webhook", json={"action": "ANNOTATION_UPDATED"}, timeout=10)
        assert hook.status_code == 201 and hook.json()["status"] == "ok"
        metrics = requests.get(f"{url}/metrics", timeout=10)
        assert (
            metrics.status_code == 404 and "needs a backend started with --train" in metrics.json()["error"]
        )


def test_label_studio_failing_behind_a_request_is_a_bad_gateway(
    tmp_path: Path, loads: list[tuple[str, float]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A photo Label Studio serves while it is down, or /metrics while it is down: 502 (the server
    behind failed), not 500 (this one did), with Label Studio's error as the reason."""
    from officescore.label import feedback
    from officescore.label.client import LabelStudio, LabelStudioError

    checkpoint(tmp_path / "runs" / "exp" / "weights" / "best.pt", b"weights")
    down = LabelStudio("http://127.0.0.1:1", "key", timeout=2)
    with served(ml.Backend(tmp_path / "runs", client=down, log=lambda message: None)) as url:
        task = {"id": 1, "data": {"image": "/data/upload/1/desk.jpg"}}
        reply = requests.post(f"{url}/predict", json={"tasks": [task]}, timeout=30)
        assert reply.status_code == 502 and "Label Studio at http://127.0.0.1:1" in reply.json()["error"]

    def unreachable(trainer: Any, client: Any) -> dict[str, Any]:
        raise LabelStudioError("Label Studio at http://127.0.0.1:1 is not reachable")

    monkeypatch.setattr(feedback, "live_metrics", unreachable)
    trainer = SimpleNamespace(current_checkpoint=lambda: None, current_conf=lambda: None)
    with served(ml.Backend(tmp_path / "none", trainer=trainer, log=lambda m: None)) as url:  # type: ignore[arg-type]
        metrics = requests.get(f"{url}/metrics", timeout=10)
        assert metrics.status_code == 502
        assert metrics.json()["error"] == "Label Studio at http://127.0.0.1:1 is not reachable"


def test_without_train_a_run_a_job_made_suggests_at_its_own_threshold(
    tmp_path: Path, loads: list[tuple[str, float]]
) -> None:
    """`label backend --model runs/train` without --train or --conf: a model a `--train` job made
    suggests at the threshold the job left in its run folder, on the suggestion score, as `prelabel`
    and `label push` now use it; any other model at 0.3 on the class score."""
    from officescore.label.predict import SUGGEST_FILE

    best = checkpoint(tmp_path / "runs" / "label-job0001" / "weights" / "best.pt", b"weights")
    record = {"model_version": version_of("label-job0001", b"weights"), "conf": 0.25, "by_mask": True}
    (best.parent.parent / SUGGEST_FILE).write_text(json.dumps(record))
    (photo,) = write_photos(tmp_path / "photos", n=1)
    task = {"id": 1, "data": {"image": f"/data/local-files/?d=photos/{photo.name}"}}
    backend = ml.Backend(tmp_path / "runs", conf=None, local_root=tmp_path)
    assert backend.suggests() == "suggests class x mask score² >= 0.25"
    (answer,) = backend.predict([task], None)
    assert {r.class_name: round(r.score, 4) for r in result_regions(answer["result"])} == {
        "chair": 0.648,
        "monitor": 0.25,
    }
    (best.parent.parent / SUGGEST_FILE).unlink()
    messages: list[str] = []
    backend = ml.Backend(tmp_path / "runs", conf=None, local_root=tmp_path, log=messages.append)
    assert backend.suggests() == "suggests scores >= 0.30"
    (answer,) = backend.predict([task], None)
    assert {r.class_name for r in result_regions(answer["result"])} == {"desk", "chair"}
    # The job writes the threshold after best.pt: the running backend picks it up, without loading
    # the same weights again (only the threshold changed).
    del loads[:]
    (best.parent.parent / SUGGEST_FILE).write_text(json.dumps(record))
    assert backend.suggests() == "suggests class x mask score² >= 0.25"
    (answer,) = backend.predict([task], None)
    assert {r.class_name: round(r.score, 4) for r in result_regions(answer["result"])} == {
        "chair": 0.648,
        "monitor": 0.25,
    }
    assert loads == [] and backend.model_version == record["model_version"]
    assert messages == [
        f"model {record['model_version']}: now suggests class x mask score² >= 0.25 (its run's suggest.json)"
    ]


def test_with_train_the_log_says_what_the_first_model_suggests_at(
    tmp_path: Path, loads: list[tuple[str, float]]
) -> None:
    """The banner of `label backend --train` says "no model yet"; the first model a job made was
    loaded without a word of the threshold it suggests at (later ones: `model A -> B (suggests ...)`)."""
    best = checkpoint(tmp_path / "runs" / "label-job0001" / "weights" / "best.pt", b"weights")
    current: list[Path | None] = [None]
    trainer = SimpleNamespace(current_checkpoint=lambda: current[0], current_conf=lambda: 0.25)
    messages: list[str] = []
    backend = ml.Backend(tmp_path / "runs", conf=None, trainer=trainer, log=messages.append)  # type: ignore[arg-type]
    assert backend.model_version == ml.NO_MODEL_VERSION and messages == []
    current[0] = best  # the first job took over
    assert backend.model_version == version_of("label-job0001", b"weights")
    assert messages == [
        f"first model {version_of('label-job0001', b'weights')} (suggests class x mask score² >= 0.25)"
    ]


def test_a_restarted_backend_does_not_call_the_model_it_resumes_with_its_first(
    tmp_path: Path, loads: list[tuple[str, float]]
) -> None:
    """Walked live: `label backend --train` restarted after nine jobs logged "first model
    label-job0008-..." before its banner; the banner names the model it starts with, nothing more."""
    best = checkpoint(tmp_path / "runs" / "label-job0008" / "weights" / "best.pt", b"weights")
    trainer = SimpleNamespace(current_checkpoint=lambda: best, current_conf=lambda: 0.25)
    messages: list[str] = []
    backend = ml.Backend(tmp_path / "runs", conf=None, trainer=trainer, log=messages.append)  # type: ignore[arg-type]
    assert backend.model_version == version_of("label-job0008", b"weights") and messages == []


def test_the_model_loaded_filters_at_the_threshold_it_was_given(tmp_path: Path) -> None:
    """`--conf` (or a trained model's own threshold) reaches the real model's predictor, which drops
    the detections under it; the backend's suggestion-score filter reads it back from there."""
    from labelmodels import solid_checkpoint

    from officescore.label.predict import load_predictor

    best = solid_checkpoint(tmp_path / "runs" / "exp" / "weights" / "best.pt", {"desk": 8.0}, CLASSES)
    for conf in (0.05, 0.55):
        assert load_predictor(best, "cpu", conf).predictor.conf == conf


def test_a_job_threshold_equal_to_the_default_but_on_the_suggestion_score_is_picked_up(
    tmp_path: Path, loads: list[tuple[str, float]]
) -> None:
    """The threshold a job writes after best.pt may be 0.30, the default's number, yet on the
    suggestion score: a running backend (no --train, no --conf) switches to it all the same."""
    from officescore.label.predict import SUGGEST_FILE

    best = checkpoint(tmp_path / "runs" / "label-job0001" / "weights" / "best.pt", b"weights")
    backend = ml.Backend(tmp_path / "runs", conf=None, local_root=tmp_path, log=lambda m: None)
    assert backend.suggests() == "suggests scores >= 0.30"
    record = {"model_version": version_of("label-job0001", b"weights"), "conf": 0.3, "by_mask": True}
    (best.parent.parent / SUGGEST_FILE).write_text(json.dumps(record))
    assert backend.suggests() == "suggests class x mask score² >= 0.30"


def test_a_threshold_of_0_is_a_threshold_given_not_none(
    tmp_path: Path, loads: list[tuple[str, float]]
) -> None:
    """`--conf 0` (every detection) is a threshold on the class score, not "none given": it wins
    over the trainer's model's own and over the one a job left in the run folder; a job's own 0 is
    its own, on the suggestion score, not the default 0.3."""
    from officescore.label.predict import SUGGEST_FILE

    best = checkpoint(tmp_path / "runs" / "label-job0001" / "weights" / "best.pt", b"weights")
    record = {"model_version": version_of("label-job0001", b"weights"), "conf": 0.41, "by_mask": True}
    (best.parent.parent / SUGGEST_FILE).write_text(json.dumps(record))
    assert ml.Backend(tmp_path / "runs", conf=0.0).suggests() == "suggests scores >= 0.00"
    trainer = SimpleNamespace(current_checkpoint=lambda: str(best), current_conf=lambda: 0.41)
    given = ml.Backend(tmp_path / "runs", conf=0.0, trainer=trainer)  # type: ignore[arg-type]
    assert given.suggests() == "suggests scores >= 0.00"
    trainer.current_conf = lambda: 0.0
    own = ml.Backend(tmp_path / "runs", conf=None, trainer=trainer)  # type: ignore[arg-type]
    assert own.threshold() == (0.0, True)


def test_a_rewritten_best_pt_of_the_same_mtime_is_loaded(
    tmp_path: Path, loads: list[tuple[str, float]]
) -> None:
    """A file system with coarse times may give a best.pt rewritten within a moment the same mtime:
    its size still tells it changed."""
    best = checkpoint(tmp_path / "runs" / "exp" / "weights" / "best.pt", b"first")
    backend = ml.Backend(tmp_path / "runs")
    assert backend.model_version == version_of("exp", b"first")
    when = best.stat().st_mtime_ns
    best.write_bytes(b"second, longer")
    os.utime(best, ns=(when, when))
    assert backend.model_version == version_of("exp", b"second, longer")


def test_predictions_keep_to_the_projects_classes_and_each_task_its_own_photo(
    tmp_path: Path, loads: list[tuple[str, float]]
) -> None:
    """A project that does not label every class of the model gets suggestions of its own classes
    only; photos Label Studio serves are downloaded one per task (two tasks, two photo sizes); a
    local-files path under --local-root is read there, its name unquoted as Label Studio writes it,
    and one not there is asked of Label Studio. No labelling config: polygons."""
    root = tmp_path / "root"
    small = write_photos(tmp_path / "served" / "small", n=1, width=100, height=80)[0]
    large = write_photos(tmp_path / "served" / "large", n=1, width=160, height=120)[0]
    spaced = root / "photos" / "my desk.jpg"
    spaced.parent.mkdir(parents=True)
    spaced.write_bytes(small.read_bytes())
    served_photos = {
        "/data/upload/1/a.jpg": small,
        "/data/upload/1/b.jpg": large,
        "/data/local-files/?d=gone.jpg": large,
    }
    asked: list[str] = []

    def download(ref: str, task_id: int | None = None) -> bytes:
        asked.append(ref)
        return served_photos[ref].read_bytes()

    checkpoint(tmp_path / "runs" / "exp" / "weights" / "best.pt", b"weights")
    client = SimpleNamespace(download=download)
    backend = ml.Backend(tmp_path / "runs", client=client, local_root=root, conf=0.2)  # type: ignore[arg-type]
    config = LabelSchema(("desk", "monitor")).config_xml()
    refs = [
        "/data/upload/1/a.jpg",
        "/data/upload/1/b.jpg",
        "/data/local-files/?d=photos/my%20desk.jpg",
        "/data/local-files/?d=gone.jpg",
    ]
    tasks = [{"id": n, "data": {"image": ref}} for n, ref in enumerate(refs, 1)]
    answers = backend.predict(tasks, config)
    assert asked == [refs[0], refs[1], refs[3]]
    sizes = [(a["result"][0]["original_width"], a["result"][0]["original_height"]) for a in answers]
    assert sizes == [(100, 80), (160, 120), (100, 80), (160, 120)]
    for answer in answers:
        assert {r.class_name for r in result_regions(answer["result"])} == {"desk", "monitor"}
    (answer,) = backend.predict(tasks[:1], None)
    assert {r["type"] for r in answer["result"]} == {"polygonlabels"}


def test_an_unreadable_photo_is_logged_by_its_label_studio_name_not_the_copy_read(
    tmp_path: Path, loads: list[tuple[str, float]]
) -> None:
    """Walked live (session 43): a truncated upload was logged as `task 25:
    /tmp/officescore-backend-pz9vtnv5/0.jpg: truncated or corrupt image`, a copy already deleted
    that names no photo an admin can find; the log names the photo as the task does. The task gets
    an empty prediction, the other its suggestions."""
    good = write_photos(tmp_path / "served", n=1, width=100, height=80)[0]
    photos = {
        "/data/upload/1/ok.jpg": good.read_bytes(),
        "/data/upload/1/5c75481f-broken.jpg": b"\xff\xd8 cut",
    }
    checkpoint(tmp_path / "runs" / "exp" / "weights" / "best.pt", b"weights")
    client = SimpleNamespace(download=lambda ref, task_id=None: photos[ref])
    logged: list[str] = []
    backend = ml.Backend(tmp_path / "runs", client=client, conf=0.2, log=logged.append)  # type: ignore[arg-type]
    tasks = [{"id": 24, "data": {"image": ref}} for ref in photos]
    tasks[1]["id"] = 25
    ok, broken = backend.predict(tasks, None)
    assert ok["result"] and broken["result"] == []
    (line,) = [m for m in logged if m.startswith("task 25")]
    assert line.startswith("task 25: /data/upload/1/5c75481f-broken.jpg: truncated or corrupt image")
    assert "officescore-backend-" not in line


def test_requests_label_studio_and_clients_may_send_are_served(
    tmp_path: Path, loads: list[tuple[str, float]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """GET / is the health check too, and a trailing slash is the same endpoint; a POST with no
    Content-Length is an empty body; /predict with an empty list of tasks is an empty batch; a body
    of exactly MAX_BODY bytes is taken; a chunked body read whatever the case of its header and with
    chunk extensions; a JSON body that is not an object is a 400."""
    checkpoint(tmp_path / "runs" / "exp" / "weights" / "best.pt", b"weights")
    version = version_of("exp", b"weights")
    with served(ml.Backend(tmp_path / "runs", log=lambda message: None)) as url:
        for path in ("/", "/health/"):
            reply = requests.get(f"{url}{path}", timeout=10)
            assert reply.status_code == 200 and reply.json()["status"] == "UP", path
        assert requests.post(f"{url}/setup/", json={}, timeout=10).json() == {"model_version": version}
        assert raw_post(url, b"POST /validate HTTP/1.0\r\n\r\n").startswith("HTTP/1.0 200")
        reply = requests.post(f"{url}/predict", json={"tasks": []}, timeout=10)  # no "tasks" at all: a 400
        assert reply.status_code == 200 and reply.json() == {"results": [], "model_version": version}
        reply = requests.post(f"{url}/predict", json={"tasks": [{"id": 1, "data": {}}, 2]}, timeout=10)
        assert reply.status_code == 400 and reply.json()["error"].startswith(
            "every task must be a JSON object"
        )
        reply = requests.post(f"{url}/predict", json=[{"id": 1}], timeout=10)
        assert reply.status_code == 400 and reply.json()["error"] == "the request body must be a JSON object"
        chunked = b"POST /webhook HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n"
        chunked += b'c;name=value\r\n{"action": "\r\n8\r\nSTART"}\r\n0\r\n\r\n'
        answer = raw_post(url, chunked)
        assert answer.startswith("HTTP/1.0 201") and '"event": "START"' in answer, answer
        body = json.dumps({"action": "A" * 26}).encode()
        monkeypatch.setattr(ml, "MAX_BODY", len(body))
        assert requests.post(f"{url}/webhook", data=body, timeout=10).status_code == 201
        reply = requests.post(f"{url}/webhook", data=body + b" ", timeout=10)
        assert reply.status_code == 400 and "Content-Length" in reply.json()["error"]


def test_metrics_ask_the_backends_label_studio(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """GET /metrics joins the trainer's versions with the feedback read from the backend's own
    Label Studio client (without one it could only fail)."""
    from officescore.label import feedback

    asked: list[tuple[Any, Any]] = []
    monkeypatch.setattr(
        feedback, "live_metrics", lambda trainer, client: asked.append((trainer, client)) or {"versions": []}
    )
    trainer = SimpleNamespace(current_checkpoint=lambda: None, current_conf=lambda: None)
    client = SimpleNamespace(url="http://127.0.0.1:9")
    backend = ml.Backend(tmp_path / "runs", client=client, trainer=trainer)  # type: ignore[arg-type]
    with served(backend) as url:
        assert requests.get(f"{url}/metrics", timeout=10).json() == {"versions": []}
    assert asked == [(trainer, client)]


def test_simplify_sets_how_closely_a_polygon_follows_the_mask(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--simplify`: a round mask outlined at 0 px tolerance has more corners than at 1.5 px."""

    class RoundPredictor(ScoredPredictor):
        def predict(self, paths: Any, **_: object) -> Any:
            results = super().predict(paths)
            for result in results:
                rows, cols = np.ogrid[: result.height, : result.width]
                disc = ((rows - 40) ** 2 + (cols - 50) ** 2 < 30**2).astype(np.uint8)
                result.detections = [replace(result.detections[0], mask=masklib.encode(disc))]
            return results

    monkeypatch.setattr(
        ml, "load_predictor", lambda source, *_: LoadedPredictor(RoundPredictor(0.3), source, "v1")
    )
    (photo,) = write_photos(tmp_path / "photos", n=1)
    checkpoint(tmp_path / "runs" / "exp" / "weights" / "best.pt", b"weights")
    task = {"id": 1, "data": {"image": f"/data/local-files/?d=photos/{photo.name}"}}
    corners = []
    for simplify in (0.0, 1.5):
        backend = ml.Backend(tmp_path / "runs", local_root=tmp_path, simplify=simplify)
        (answer,) = backend.predict([task], None)
        (region,) = answer["result"]
        corners.append(len(region["value"]["points"]))
    assert corners[0] > corners[1] > 4, corners


def test_a_newer_best_pt_that_cannot_be_loaded_is_a_500_that_says_why(
    tmp_path: Path, loads: list[tuple[str, float]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The model is at fault, not the request: Label Studio's health check and setup get a 500 with
    the reason (not a 400 that blames what it sent)."""
    from officescore.errors import ModelError

    best = checkpoint(tmp_path / "runs" / "exp" / "weights" / "best.pt", b"weights", age=100)
    backend = ml.Backend(tmp_path / "runs", log=lambda message: None)

    def unloadable(source: Path | str, *_: Any) -> LoadedPredictor:
        raise ModelError(f"{source}: not an officescore checkpoint (made by `officescore train`)")

    monkeypatch.setattr(ml, "load_predictor", unloadable)
    checkpoint(best, b"something else")
    with served(backend) as url:
        for reply in (
            requests.get(f"{url}/health", timeout=10),
            requests.post(f"{url}/setup", json={}, timeout=10),
        ):
            assert reply.status_code == 500 and "not an officescore checkpoint" in reply.json()["error"]


@pytest.mark.parametrize("error", ["DataError", "ValueError"])
def test_a_model_that_fails_to_load_with_a_data_error_is_a_500_not_a_400(
    tmp_path: Path, loads: list[tuple[str, float]], monkeypatch: pytest.MonkeyPatch, error: str
) -> None:
    """A load that fails on data (int8 calibration photos, a model it cannot quantise) is the
    backend's problem: a 400 would tell Label Studio its request was wrong."""
    from officescore import errors

    best = checkpoint(tmp_path / "runs" / "exp" / "weights" / "best.pt", b"weights", age=100)
    backend = ml.Backend(tmp_path / "runs", log=lambda message: None)
    kind = getattr(errors, error, ValueError)

    def unloadable(source: Path | str, *_: Any) -> LoadedPredictor:
        raise kind("none of the 3 calibration photos could be read")

    monkeypatch.setattr(ml, "load_predictor", unloadable)
    checkpoint(best, b"something else")
    with served(backend) as url:
        reply = requests.post(f"{url}/setup", json={}, timeout=10)
    assert reply.status_code == 500
    assert reply.json()["error"] == f"{best}: none of the 3 calibration photos could be read"


def test_a_local_file_missing_under_the_local_root_is_named_when_label_studio_fails_too(
    tmp_path: Path, loads: list[tuple[str, float]]
) -> None:
    """Walked live: a photo deleted from --local-root while Label Studio was down answered only
    "Label Studio is not reachable", as if starting it would do; the missing file is named too."""
    from officescore.label.client import LabelStudioError

    def download(ref: str, task_id: int | None = None) -> bytes:
        raise LabelStudioError("Label Studio is not reachable at http://ls:8080 (ConnectError)")

    root = tmp_path / "root"
    root.mkdir()
    checkpoint(tmp_path / "runs" / "exp" / "weights" / "best.pt", b"weights")
    backend = ml.Backend(tmp_path / "runs", client=SimpleNamespace(download=download), local_root=root)  # type: ignore[arg-type]
    task = {"id": 12, "data": {"image": "/data/local-files/?d=photos/gone.jpg"}}
    with pytest.raises(LabelStudioError) as caught:
        backend.photo(task, LabelSchema(("desk",)), tmp_path, 0)
    gone = (root / "photos" / "gone.jpg").resolve()
    assert str(caught.value) == (
        f"Label Studio is not reachable at http://ls:8080 (ConnectError); {gone} (under --local-root) "
        "is not there either"
    )
    uploaded = {"id": 13, "data": {"image": "/data/upload/1/a.jpg"}}  # not a local file: as it was
    with pytest.raises(LabelStudioError, match=r"\(ConnectError\)$"):
        backend.photo(uploaded, LabelSchema(("desk",)), tmp_path, 0)


def test_a_started_backend_imports_the_brush_codec_before_the_first_click_needs_it() -> None:
    """Label Studio's SDK loads its whole converter with the brush codec (1.5-4 s): a fresh backend
    does it as it starts, not inside its first click's answer. A fresh interpreter, so that no
    other test imported it already."""
    import subprocess
    import sys

    script = """
import sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from officescore.label import backend as ml
codec = "label_studio_sdk.converter.brush"
before = codec in sys.modules
server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
ml.start(server)
for thread in threading.enumerate():
    if thread.name == "officescore-warm-up":
        thread.join(60)
print(before, codec in sys.modules)
server.shutdown()
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["False", "True"], done.stderr
