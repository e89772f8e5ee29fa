"""`label backend`: a Label Studio ML backend that suggests the model's masks as a labeller works.

`Backend` is the small class Label Studio's ML backends are made of: `setup`, `predict`, `fit`.
The predictor does the work (`officescore.infer.Predictor`); the backend translates tasks into
photos and detections into Label Studio results for the project's own labelling config.

`serve()` puts Label Studio's ML backend HTTP protocol around it (stdlib `ThreadingHTTPServer`;
the PyPI `label-studio-ml` server pins Flask 1.1 / Jinja2 3.0, which clash with this project):

    GET  /health, /      {"status": "UP", "model_class": ..., "model_version": ...}
    POST /setup          {"model_version": ...}                 (Label Studio calls it on connect
                                                                 and before each batch of predictions)
    POST /predict        {"results": [prediction per task], "model_version": ...}
    POST /webhook        any Label Studio webhook (ANNOTATION_CREATED, START_TRAINING, ...) -> fit()
    GET  /versions       {"versions": [model_version]}
    GET  /metrics        with --train: per model version, its training and how labellers changed its
                         suggestions (`officescore.label.feedback`)

With `--model` naming a run folder or `runs/train`, every setup / predict call looks for a newer
`best.pt` (a stat, no hashing unless it changed) and loads it: train in another terminal and the
next task a labeller opens is predicted by the better model, with its `model_version`.
With a `trainer` (`label backend --train`, `officescore.label.trainer`) the webhooks count labels
and start training jobs, and the model is the one the trainer switched to (none at first: no
suggestions until the first job succeeded).
"""

from __future__ import annotations

import contextlib
import copy
import json
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from officescore.errors import DataError, ModelError, UserError
from officescore.label.client import LabelStudio, LabelStudioError
from officescore.label.formats import POLYGON, LabelSchema, prediction
from officescore.label.interactive.service import ClickService, wants
from officescore.label.predict import (
    NO_MODEL,
    SUGGEST_FILE,
    LoadedPredictor,
    detect,
    load_predictor,
    resolve_model,
    suggestion_threshold,
    suggests_words,
    threshold_words,
)
from officescore.label.prelabel import DEFAULT_CONF, LOCAL_FILES_PREFIX
from officescore.label.regions import DEFAULT_SIMPLIFY
from officescore.label.trainer import Trainer

DEFAULT_PORT = 9090
DEFAULT_HOST = "127.0.0.1"
# No model yet (an empty runs folder, or --train before its first job): one name for both.
NO_MODEL_VERSION = NO_MODEL
METRICS_NEED_TRAIN = "GET /metrics needs a backend started with --train"
# Bodies name photos, never carry them; Label Studio's largest are batches of tasks with their
# annotations (brush RLE): far below this.
MAX_BODY = 256 * 1024 * 1024
RELOAD_RETRY_SECONDS = 60.0  # --train: a new model that failed to load is tried again after this


# The checkpoint's path, mtime_ns and size: a newer best.pt changes it (and loads the model).
_Key = tuple[str, int, int]


@dataclass
class _Loaded:
    key: _Key
    model: LoadedPredictor
    # mtime_ns and size of its run's SUGGEST_FILE when its threshold was read ((0, 0): none): the file
    # a job writes after best.pt changes the threshold only, never a reason to load the model again
    suggest: tuple[int, int] = (0, 0)


class Backend:
    """setup / predict / fit for one model (a file, a run folder or `runs/train`)."""

    def __init__(
        self,
        model: str | Path,
        client: LabelStudio | None = None,
        local_root: Path | None = None,
        device: str = "auto",
        conf: float | None = DEFAULT_CONF,
        img_size: int | None = None,
        simplify: float = DEFAULT_SIMPLIFY,
        log: Callable[[str], None] = lambda message: None,
        precision: str = "auto",
        calibration: Sequence[str | Path] = (),
        trainer: Trainer | None = None,
        clicks: ClickService | None = None,
        by_mask: bool = False,
    ) -> None:
        self.model = model
        self.client = client  # reads uploaded photos from Label Studio; None: local files only
        self.local_root = Path(local_root) if local_root else None
        self.device, self.img_size, self.simplify = device, img_size, simplify
        # None: each model of the trainer suggests at its own threshold (`Trainer.current_conf`).
        self.conf = conf
        self.by_mask = by_mask  # a given conf is on the suggestion score, not the class score
        self.precision = precision  # officescore.infer.accel: resolved once per (re)load
        self.calibration = list(calibration)  # int8: each reloaded model is calibrated on these
        self.log = log
        self.trainer = trainer  # --train: webhooks train new models; the trainer names the current one
        self._loaded: _Loaded | None = None
        self._lock = threading.Lock()  # one model load / forward pass at a time
        self._reloading: _Key | None = None  # --train: the model loading beside
        self._load_thread: threading.Thread | None = None
        self._failed: tuple[_Key, float] | None = None  # a load that failed, and when
        # Smart-tool clicks and boxes (officescore.label.interactive); brush answers unless given.
        self.clicks = clicks or ClickService(log=log)
        self._starting = True  # the banner names the model loaded now: no "first model" line
        self.current()  # fail at start, not on the first task, when the model is unusable
        self._starting = False

    # ------------------------------------------------------------------ the model

    def current(self) -> LoadedPredictor | None:
        """The model to answer with now: reloaded when `--model` resolves to a newer file (with a
        trainer: when the trainer switched models); None while a trainer has no model yet."""
        with self._lock:
            source = self.trainer.current_checkpoint() if self.trainer else resolve_model(self.model)
            if source is None:
                return None
            key = (str(source), *_stat(Path(source)))
            suggest = _suggest_stat(source)
            threshold = self.threshold()
            if self.trainer is not None and self._loaded is not None and self._loaded.key != key:
                # The old model answers until the new one is loaded.
                self._reload_beside(source, key, threshold)
                return self._loaded.model
            if self._loaded is None or self._loaded.key != key:
                before = self._loaded.model.version if self._loaded else None
                if str(self.precision).lower() == "int8" and self.calibration:  # holds up predictions
                    self.log(f"calibrating int8 on {len(self.calibration)} photo source(s)")
                try:
                    loaded = self._load(source, threshold)
                except (DataError, ValueError) as exc:  # the model's fault, not the request's: a 500
                    raise ModelError(f"{source}: {exc}") from exc
                self._loaded = _Loaded(key, loaded, suggest)
                if before is None and self.trainer is not None and not self._starting:  # banner: none yet
                    self.log(f"first model {loaded.version} ({_words(threshold, loaded)})")
                elif before is not None:
                    self.log(f"model {before} -> {loaded.version} ({_words(threshold, loaded)})")
            elif self._loaded.suggest != suggest:  # its job wrote its threshold after best.pt
                self._loaded = _Loaded(key, self._rethresholded(self._loaded.model, threshold), suggest)
            return self._loaded.model

    def _load(self, source: Path | str, threshold: tuple[float | None, bool]) -> LoadedPredictor:
        conf, by_mask = threshold
        loaded = load_predictor(source, self.device, conf, self.img_size, self.precision, self.calibration)
        return loaded if conf is None else replace(loaded, by_mask=by_mask)

    def _rethresholded(
        self, loaded: LoadedPredictor, threshold: tuple[float | None, bool]
    ) -> LoadedPredictor:
        """The loaded model at the threshold its run folder says now (a shallow copy of its predictor
        shares the weights: nothing is loaded again); itself when that threshold did not change."""
        conf, by_mask = threshold
        if conf is None:  # the model's own: the SUGGEST_FILE its job wrote, if for these weights
            conf, by_mask = suggestion_threshold(loaded.source, loaded.version, None)
        if conf == getattr(loaded.predictor, "conf", None) and by_mask == loaded.by_mask:
            return loaded
        predictor = copy.copy(loaded.predictor)
        predictor.conf = conf
        changed = replace(loaded, predictor=predictor, by_mask=by_mask)
        self.log(f"model {loaded.version}: now {threshold_words(changed)} (its run's {SUGGEST_FILE})")
        return changed

    def suggests(self) -> str:
        """What a suggestion needs now, in words (`suggests scores >= 0.30`)."""
        loaded = self.current()
        return threshold_words(loaded) if loaded is not None else _suggests(self.threshold())

    def threshold(self) -> tuple[float | None, bool]:
        """What a suggestion needs, and whether on its suggestion score (`label.predict.
        suggestion_score`) rather than its class score: --conf when given (on the class score, unless
        `by_mask`); with a trainer its current model's own threshold (its job found it on the
        suggestion score), else DEFAULT_CONF (class score); without one None: the model's own, found
        in its run folder when a job trained it, as `prelabel` and `label push` find it
        (`label.predict.load_predictor`)."""
        if self.conf is not None:
            return self.conf, self.by_mask
        if self.trainer is None:
            return None, False
        own = self.trainer.current_conf()
        return (DEFAULT_CONF, False) if own is None else (own, True)

    def _reload_beside(self, source: Path | str, key: _Key, threshold: tuple[float, bool]) -> None:
        """Load the trainer's new model in a thread (lock held by the caller): requests never wait
        for a load, and Label Studio's short health checks keep getting answers."""
        if self._reloading == key:
            return
        failed_key, failed_at = self._failed or (None, 0.0)
        if failed_key == key and time.monotonic() < failed_at + RELOAD_RETRY_SECONDS:
            return  # it failed a moment ago: the old model answers a while longer
        self._reloading = key
        suggest = _suggest_stat(source)  # before the load reads it: a later write re-thresholds

        def load() -> None:
            try:
                loaded = self._load(source, threshold)
            except Exception as exc:  # noqa: BLE001 - the old model keeps answering; say why
                self.log(
                    f"cannot load the new model {source}, the old one keeps answering "
                    f"(trying again in {RELOAD_RETRY_SECONDS:g}s): {exc}"
                )
                with self._lock:
                    self._reloading, self._failed = None, (key, time.monotonic())
                return
            with self._lock:
                before = self._loaded.model.version if self._loaded else None
                self._loaded, self._reloading = _Loaded(key, loaded, suggest), None
            self.log(f"model {before} -> {loaded.version} ({_words(threshold, loaded)})")

        self._load_thread = threading.Thread(target=load, name="officescore-model-load", daemon=True)
        self._load_thread.start()

    def wait_for_load(self, timeout: float) -> None:
        """--train: wait (at most `timeout` s) for a model loading beside the old one to take over."""
        thread = self._load_thread
        if thread is not None:
            thread.join(timeout)

    @property
    def model_version(self) -> str:
        loaded = self.current()
        return loaded.version if loaded else NO_MODEL_VERSION

    # ------------------------------------------------------------------ the three calls

    def setup(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"model_version": self.model_version}

    def predict(self, tasks: Sequence[dict[str, Any]], label_config: str | None) -> list[dict[str, Any]]:
        """One prediction per task (in order) for the project's labelling config."""
        # A proxy or a hand-made request may send anything: say what is wrong (400), never crash.
        if not isinstance(tasks, Sequence) or isinstance(tasks, (str, bytes)):
            raise DataError("tasks must be a list of Label Studio tasks (JSON objects)")
        if not all(isinstance(task, dict) for task in tasks):
            raise DataError("every task must be a JSON object with its data")
        if label_config is not None and not isinstance(label_config, str):
            raise DataError("label_config must be the project's labelling config (XML text)")
        loaded = self.current()
        if loaded is None:  # no results at all: Label Studio stores nothing and asks again next time
            return []
        schema = _schema(label_config, loaded)
        unknown = [c for c in loaded.classes if c not in schema.classes]
        predictions = []
        with tempfile.TemporaryDirectory(prefix="officescore-backend-") as tmp:
            paths = [self.photo(task, schema, Path(tmp), n) for n, task in enumerate(tasks)]
            with self._lock:  # no decoding processes: requests are served by threads
                results = detect(loaded, paths, batch_size=2, workers=0)
        for task, path, result in zip(tasks, paths, results, strict=True):
            if not result.ok:  # named as Label Studio names it, not by the temporary copy read
                error = str(result.error).replace(str(path), str(task["data"][schema.value]))
                self.log(f"task {task.get('id')}: {error}; it gets no suggestions")
                predictions.append({"result": [], "score": 0.0, "model_version": loaded.version})
                continue
            kept = [d for d in result.detections if d.class_name not in unknown]
            ref = str(task.get("id", ""))
            predictions.append(
                prediction(kept, result.width, result.height, schema, loaded.version, ref, self.simplify)
            )
        return predictions

    def fit(self, event: str, data: dict[str, Any]) -> dict[str, Any]:
        """Without a trainer webhooks are acknowledged (train with `officescore train`; the backend
        picks up the new best.pt by itself); with one they are counted and may start a job."""
        counted = self.trainer.notify(event, data) if self.trainer else {"status": "ok"}
        return {**counted, "event": event, "model_version": self.model_version}

    def metrics(self) -> dict[str, Any]:
        """`GET /metrics`: the trainer's versions joined with how labellers changed their suggestions."""
        if self.trainer is None:
            raise UserError(METRICS_NEED_TRAIN)
        from officescore.label.feedback import live_metrics

        return live_metrics(self.trainer, self.client)

    # ------------------------------------------------------------------ photos

    def photo(self, task: dict[str, Any], schema: LabelSchema, folder: Path, n: int) -> Path:
        data = task.get("data") or {}
        ref = str(data.get(schema.value) or "") if isinstance(data, dict) else ""
        if not ref:
            raise DataError(f"task {task.get('id')}: no data.{schema.value} to predict on")
        missing = None  # the path under --local-root where the photo is not
        if self.local_root is not None and ref.startswith(LOCAL_FILES_PREFIX):
            from urllib.parse import unquote

            path = (self.local_root / unquote(ref[len(LOCAL_FILES_PREFIX) :])).resolve()
            if self.local_root.resolve() in path.parents:
                if path.is_file():
                    return path
                missing = path
        if self.client is None:
            raise DataError(
                f"task {task.get('id')}: {ref} is served by Label Studio; start the backend with --url "
                "and LABEL_STUDIO_API_KEY so it can read the photo"
            )
        target = folder / f"{n}{Path(ref.split('?')[0]).suffix or '.jpg'}"
        try:
            target.write_bytes(self.client.download(ref, task.get("id")))
        except LabelStudioError as exc:  # a deleted photo read "Label Studio is not reachable" alone
            if missing is None:
                raise
            raise LabelStudioError(f"{exc}; {missing} (under --local-root) is not there either") from None
        return target


def _suggest_stat(source: Path | str) -> tuple[int, int]:
    """`_stat` of the SUGGEST_FILE in the run folder of checkpoint `source` ((0, 0): none)."""
    path = Path(source)
    return _stat(path.parent.parent / SUGGEST_FILE) if path.parent.name == "weights" else (0, 0)


def _stat(path: Path) -> tuple[int, int]:
    """mtime_ns and size; (0, 0) for no such file."""
    try:
        info = path.stat()
    except OSError:
        return 0, 0
    return info.st_mtime_ns, info.st_size


def _words(threshold: tuple[float | None, bool], loaded: LoadedPredictor) -> str:
    """What the model just loaded needs: the threshold it was given, else the one it found."""
    return _suggests(threshold) if threshold[0] is not None else threshold_words(loaded)


def _suggests(threshold: tuple[float | None, bool]) -> str:
    """What the next model loaded will need (none is loaded yet)."""
    conf, by_mask = threshold
    if conf is None:
        return f"suggests at the model's own threshold, else scores >= {DEFAULT_CONF:.2f}"
    return suggests_words(conf, by_mask)


def _schema(label_config: str | None, loaded: LoadedPredictor) -> LabelSchema:
    if label_config:
        return LabelSchema.from_config(label_config)
    return LabelSchema(tuple(loaded.classes), POLYGON)


# ---------------------------------------------------------------------- HTTP


def _handler(backend: Backend) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "officescore-ml-backend"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's name
            backend.log(f"{self.address_string()} {format % args}")

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> dict[str, Any]:
            if "chunked" in str(self.headers.get("Transfer-Encoding") or "").lower():
                raw = _read_chunked(self.rfile)  # a proxy or client streaming its body: no length
            else:
                raw = self._sized()
            try:
                body = json.loads(raw or b"{}")
            except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError: name what was wrong
                raise DataError(f"the request body is not JSON ({exc})") from None
            if not isinstance(body, dict):
                raise DataError("the request body must be a JSON object")
            return body

        def _sized(self) -> bytes:
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                raise DataError("Content-Length is not a number") from None
            # read(-1) would wait for the client to hang up, and a huge length fill the memory.
            if not 0 <= length <= MAX_BODY:
                raise DataError(f"Content-Length {length}: a request body is 0 to {MAX_BODY:,} bytes")
            return self.rfile.read(length) if length else b"{}"

        def do_GET(self) -> None:  # noqa: N802 - stdlib's name
            path = self.path.split("?")[0].rstrip("/")
            try:
                if path in ("", "/health"):
                    version = backend.model_version
                    self._send(200, {"status": "UP", "model_class": "officescore", "model_version": version})
                elif path == "/versions":
                    self._send(200, {"versions": [backend.model_version]})
                elif path == "/metrics" and backend.trainer is None:  # not a failure: not served here
                    self._send(404, {"error": METRICS_NEED_TRAIN})
                elif path == "/metrics":
                    self._send(200, backend.metrics())
                else:
                    self._send(404, {"error": f"no such endpoint: GET {path}"})
            except LabelStudioError as exc:  # /metrics asks Label Studio, which failed: a bad gateway
                self._send(HTTPStatus.BAD_GATEWAY, {"status": "ERROR", "error": str(exc)})
            except UserError as exc:
                self._send(500, {"status": "ERROR", "error": str(exc)})
            except OSError as exc:  # Label Studio hung up, or the disk is full: no bug to report
                self._os_error(f"GET {path}", exc)
            except Exception as exc:  # noqa: BLE001 - a bug: answer and log it, keep serving the rest
                self._fail(f"GET {path}", exc)

        def do_POST(self) -> None:  # noqa: N802 - stdlib's name
            path = self.path.split("?")[0].rstrip("/")
            try:
                body = self._body()
                if path == "/setup":
                    self._send(200, backend.setup(body))
                elif path == "/predict" and wants(body):  # a click or box: one mask back
                    self._send(200, backend.clicks.answer(body, backend))
                elif path == "/predict":
                    if "tasks" not in body:  # Label Studio always sends them: a hand-made or proxied call
                        raise DataError('a /predict body needs "tasks": a list of Label Studio tasks')
                    tasks = body["tasks"] or []
                    results = backend.predict(tasks, body.get("label_config"))
                    # The version that made them: asking again may load a newer best.pt in between.
                    version = results[0]["model_version"] if results else backend.model_version
                    self._send(200, {"results": results, "model_version": version})
                elif path in ("/webhook", "/train"):  # Label Studio's older train call: /train
                    event = body.get("action") or ("START_TRAINING" if path == "/train" else "train")
                    self._send(201, backend.fit(str(event), body))
                elif path == "/validate":
                    self._send(200, {"status": "ok"})
                else:
                    self._send(404, {"error": f"no such endpoint: POST {path}"})
            except LabelStudioError as exc:  # a photo Label Studio did not hand over: a bad gateway
                self._send(HTTPStatus.BAD_GATEWAY, {"error": str(exc)})
            except (UserError, ValueError) as exc:  # a bad request or an unusable model: say so, keep serving
                bad_request = isinstance(exc, (ValueError, DataError))
                self._send(HTTPStatus.BAD_REQUEST if bad_request else 500, {"error": str(exc)})
            except OSError as exc:  # Label Studio hung up, or the disk is full: no bug to report
                self._os_error(f"POST {path}", exc)
            except Exception as exc:  # noqa: BLE001 - a bug: answer and log it, keep serving the rest
                self._fail(f"POST {path}", exc)

        def _os_error(self, what: str, exc: OSError) -> None:
            backend.log(f"{what} failed: {exc}")
            with contextlib.suppress(OSError):  # the caller may be gone: nothing to answer
                self._send(500, {"status": "ERROR", "error": str(exc)})

        def _fail(self, what: str, exc: Exception) -> None:
            """A bug, not the request's fault: Label Studio gets a 500 that says what broke (not a
            dropped connection), the log the traceback, and the backend serves the next request."""
            import traceback

            why = f"{type(exc).__name__}: {exc}"
            backend.log(f"{what} failed ({why}), please report it:\n{traceback.format_exc().rstrip()}")
            with contextlib.suppress(OSError):  # the caller is gone: nothing to answer
                self._send(500, {"status": "ERROR", "error": f"officescore backend bug ({why})"})

    return Handler


def _read_chunked(stream: Any) -> bytes:
    """A `Transfer-Encoding: chunked` body (hex size line, data, CRLF; a 0 size ends it), at most
    MAX_BODY bytes in all."""
    body = bytearray()
    while True:
        line = stream.readline(1024).split(b";")[0].strip()  # a chunk extension after ";" is ignored
        try:
            size = int(line, 16)
        except ValueError:
            raise DataError(f"a chunked request body has a bad chunk size line {line[:40]!r}") from None
        if size < 0 or len(body) + size > MAX_BODY:
            raise DataError(f"a chunked request body larger than {MAX_BODY:,} bytes")
        if size == 0:
            while stream.readline(1024).strip():  # trailer headers, up to the blank line
                pass
            return bytes(body) or b"{}"
        chunk = stream.read(size)
        if len(chunk) != size:
            raise DataError("a chunked request body ended inside a chunk")
        body += chunk
        stream.readline(1024)  # the CRLF after the chunk's data


def make_server(backend: Backend, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> ThreadingHTTPServer:
    """The HTTP server (not started: call `serve_forever()`, or `start()` for a background thread)."""
    try:
        server = ThreadingHTTPServer((host, port), _handler(backend))
    except OSError as exc:
        raise UserError(
            f"--port {port}: cannot listen on {host}:{port} ({exc.strerror}); choose another port"
        ) from None
    server.daemon_threads = True
    return server


def start(server: ThreadingHTTPServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, name="officescore-ml-backend", daemon=True)
    thread.start()
    threading.Thread(target=_import_brush_codec, name="officescore-warm-up", daemon=True).start()
    return thread


def _import_brush_codec() -> None:
    """Import Label Studio's brush RLE codec now: its package loads the SDK's whole converter (1.5-4 s
    measured on 2 cores), which the first brush answer (a click's mask) would otherwise wait for."""
    with contextlib.suppress(ImportError):  # `label backend` checked the extra; a caller may not have
        import label_studio_sdk.converter.brush  # noqa: F401


def url_of(server: ThreadingHTTPServer) -> str:
    host, port = server.server_address[:2]
    return f"http://{host}:{port}"
