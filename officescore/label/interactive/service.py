"""Label Studio's interactive requests -> one region, for the ML backend.

Label Studio 1.23 forwards a smart-tool click or box (`POST /api/ml/{id}/interactive-annotating`)
to the backend as `POST /predict` with `params.context.result` (see `prompt`). The answer is
`{"results": [{"result": [region], "model_version", "score"}]}`: Label Studio hands `results[0]`
back to the browser, which adds the region. The region is brush RLE in the config's BrushLabels tag
(or, with mask="polygon" or no BrushLabels tag, a polygon in its PolygonLabels tag), labelled with the
class the labeller chose.

Errors a labeller can cause (a click outside the photo, an unreadable photo, a config without a
tag for the answer) come back as `results[0]["error"]` with an empty result and HTTP 200: Label
Studio 1.23 replaces the body of an HTTP error by "400 Client Error: ..." and so would lose the
sentence, while `results[0]` reaches the browser's response as it is. GrabCut answering in place
of the model says why in `results[0]["note"]`.
"""

from __future__ import annotations

import hashlib
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from officescore import masks as masklib
from officescore.errors import DataError, UserError
from officescore.label.formats import BRUSH, POLYGON, LabelSchema, mask_result
from officescore.label.interactive.clicker import Clicker, Reply
from officescore.label.interactive.heads import CACHE_PHOTOS, FeatureCache
from officescore.label.interactive.prompt import parse_context

_TAGS = {BRUSH: "BrushLabels", POLYGON: "PolygonLabels"}


def wants(body: Mapping[str, Any]) -> bool:
    """Whether a /predict body is an interactive request (it carries params.context.result)."""
    params = body.get("params")
    context = params.get("context") if isinstance(params, Mapping) else None
    return isinstance(context, Mapping) and bool(context.get("result"))


class ClickService:
    """Answers interactive requests with the backend's current model (a new model: a new Clicker)."""

    def __init__(self, mask: str = BRUSH, refine: bool = True, log: Callable[[str], None] = lambda m: None):
        if mask not in _TAGS:
            raise DataError(f"--mask {mask}: use one of {', '.join(_TAGS)}")
        self.mask = mask
        self.refine = refine
        self.log = log
        self.cache = FeatureCache()  # shared by successive Clickers: keys hold the model version
        self._clicker: Clicker | None = None
        self._photos: OrderedDict[tuple[str, str], bytes] = OrderedDict()  # downloads, by (task, ref)
        self._lock = threading.Lock()

    def clicker(self, loaded: Any) -> Clicker:
        """The Clicker for `loaded` (None or a LoadedPredictor with no model: GrabCut)."""
        with self._lock:
            if self._clicker is None or self._clicker.loaded is not loaded:
                self._clicker = Clicker(_usable(loaded), self.refine, self.cache)
            return self._clicker

    def answer(self, body: Mapping[str, Any], backend: Any) -> dict[str, Any]:
        """The /predict response for an interactive body; `backend` supplies the model (`current()`)
        and reads task photos (`photo`)."""
        version = "grabcut"
        try:
            clicker = self.clicker(backend.current())
            version = clicker.version
            tasks = body.get("tasks")
            if not isinstance(tasks, list) or len(tasks) != 1 or not isinstance(tasks[0], Mapping):
                raise DataError("an interactive request carries exactly one task")
            task = tasks[0]
            config = str(body.get("label_config") or "")
            chosen = parse_context(body["params"]["context"]).class_name
            from_name, to_name, kind = answer_tag(config, self.mask, chosen)
            schema = LabelSchema.from_config(config)
            photo = self._photo(backend, task, schema)
            reply = clicker.segment(photo, body["params"]["context"]["result"], str(task.get("id", "")))
            region = reply_region(reply, from_name, to_name, kind)
        except UserError as exc:
            self.log(f"click: {exc}")
            return {"results": [{"result": [], "model_version": version, "score": 0.0, "error": str(exc)}]}
        prediction: dict[str, Any] = {
            "result": [region] if region else [],
            "model_version": version,
            "score": reply.score if reply.score is not None else 0.0,
        }
        if reply.note:
            prediction["note"] = reply.note
            self.log(f"click: {reply.note}")
        if region is None:
            prediction["error"] = f"the {reply.method} found no {reply.class_name} there; click on the object"
        return {"results": [prediction]}

    def _photo(self, backend: Any, task: Mapping[str, Any], schema: LabelSchema) -> bytes:
        """The task's photo bytes, downloaded once per (task, reference) while it is among the last few."""
        data = task.get("data") or {}
        ref = data.get(schema.value) if isinstance(data, Mapping) else None  # backend.photo says why not
        key = (str(task.get("id", "")), str(ref or ""))
        with self._lock:
            found = self._photos.get(key)
        if found is None:
            with tempfile.TemporaryDirectory(prefix="officescore-click-") as tmp:
                path = backend.photo(dict(task), schema, Path(tmp), 0)
                try:
                    found = Path(path).read_bytes()
                except OSError as exc:
                    raise DataError(f"task {task.get('id')}: cannot read its photo ({exc})") from None
        with self._lock:
            self._photos[key] = found
            self._photos.move_to_end(key)
            while len(self._photos) > CACHE_PHOTOS:
                self._photos.popitem(last=False)
        return found


def _usable(loaded: Any) -> Any:
    """`loaded` when it has a model (a backend started on an empty runs folder has none)."""
    return loaded if getattr(getattr(loaded, "predictor", None), "model", None) is not None else None


def answer_tag(config: str, mask: str = BRUSH, class_name: str | None = None) -> tuple[str, str, str]:
    """(from_name, to_name, kind) of the tag the answer goes into: the first `mask` tag (BrushLabels
    or PolygonLabels) of the config, else the first tag of the other kind; with `class_name`, the
    first of them that has that label (a region whose label its tag lacks is one Label Studio
    shows without a class, and an edited config may have dropped the class from one tag only)."""
    try:
        root = ElementTree.fromstring(config) if config else None
    except ElementTree.ParseError as exc:
        raise DataError(f"the project's labelling config is not valid XML ({exc})") from None
    order = [mask] + [k for k in _TAGS if k != mask]
    tags = [(k, e) for k in order for e in (root.iter(_TAGS[k]) if root is not None else ())]
    if not tags:
        raise DataError(
            "the project's labelling config has no BrushLabels or PolygonLabels tag for the mask; "
            "add the tools with `officescore label push --project NAME --interactive`"
        )
    found = next(((k, e) for k, e in tags if class_name is None or class_name in _labels(e)), None)
    if found is None:
        kind, element = tags[0]
        raise DataError(
            f"{class_name!r} is not a label of the {_TAGS[kind]} tag {element.get('name')!r} the mask goes "
            f"into (it has {', '.join(_labels(element)) or 'none'}); add it there in the project's "
            "labelling config, or choose one of those"
        )
    kind, element = found
    return element.get("name", "label"), element.get("toName", "image"), kind


def _labels(element: ElementTree.Element) -> list[str]:
    """A labels tag's label values (`<Label value="desk"/>`)."""
    return [label.get("value", "") for label in element.iter("Label")]


def reply_region(reply: Reply, from_name: str, to_name: str, kind: str) -> dict[str, Any] | None:
    """The reply as one Label Studio region (brush RLE or polygon); None for an empty mask."""
    schema = LabelSchema((reply.class_name,), kind, from_name, to_name)
    rle = masklib.encode(reply.mask)
    region_id = hashlib.sha1(str(rle["counts"]).encode()).hexdigest()[:10]
    return mask_result(rle, reply.class_name, reply.width, reply.height, schema, reply.score, region_id)
