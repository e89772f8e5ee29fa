"""Click to mask through the real Label Studio (labelstudio_server.py): the smart tools added to a
project made earlier, a click sent the way the browser sends it (`/api/ml/{id}/interactive-annotating`),
the request Label Studio forwards to the backend captured and its shape checked, the brush answer saved
as an annotation and read back by `label pull` as the same mask; then variants of the captured request
replayed to the backend."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from labelmodels import one_torch_thread, run, write_photos  # noqa: F401 (fixture)
from labelstudio_server import EMAIL, PASSWORD, LabelStudioServer, logged_in_session
from test_label_interactive import interior, iou, keypoint, rectangle, true_box

from officescore import masks as masklib
from officescore.label.client import LabelStudio
from officescore.label.regions import brush_to_mask
from officescore.sample import render_scene

CLASSES = "desk,chair,monitor"


def test_label_studio_forwards_a_click_and_keeps_the_brush_answer(
    labelstudio: LabelStudioServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from officescore.label import backend as ml
    from officescore.label.predict import RunsFolder

    monkeypatch.setenv("LABEL_STUDIO_API_KEY", labelstudio.api_key)
    url, title = labelstudio.url, "clicks"
    photos = write_photos(tmp_path / "photos", n=1)  # scene 0 cropped to 128 x 96
    width, height = 128, 96
    scene = render_scene(0, size=128)
    target = max(scene.instances, key=lambda i: int(i.mask[:height, :width].sum()))
    truth = target.mask[:height, :width]

    # A project made earlier, without the tools; `label push --interactive` adds them, tasks stay.
    push = ["label", "push", str(photos[0].parent), "--url", url, "--project", title, "--classes", CLASSES]
    code, _, err = run([*push, "--json"], capsys)
    assert code == 0, err
    client = LabelStudio.connect(url, labelstudio.api_key)
    assert not client.project(title).schema.interactive
    code, out, err = run(
        ["label", "push", "--url", url, "--project", title, "--interactive", "--json"], capsys
    )
    assert code == 0 and json.loads(out)["interactive"] is True, err
    project = client.project(title)
    assert project.schema.interactive and project.schema.mask == "polygon"  # its own tool is kept
    config = project.config
    assert 'smart="true"' in config and '<BrushLabels name="mask"' in config
    (task,) = client.export_tasks(project.id)

    runs = tmp_path / "runs"
    runs.mkdir()
    served = ml.Backend(RunsFolder(runs), client, device="cpu")  # no model yet: GrabCut answers
    captured: list[dict[str, Any]] = []
    answer = served.clicks.answer

    def recording(body: dict[str, Any], backend: Any) -> dict[str, Any]:
        captured.append(copy.deepcopy(body))
        return answer(body, backend)

    served.clicks.answer = recording  # type: ignore[method-assign]
    server = ml.make_server(served, "127.0.0.1", 0)
    ml.start(server)
    try:
        ml_id = client.connect_backend(project.id, ml.url_of(server), interactive=True)
        assert client.sdk.ml.get(id=ml_id).is_interactive
        # The browser: the labeller picks "desk" on the smart keypoint tool and clicks the object.
        session = logged_in_session(url, EMAIL, PASSWORD)
        headers = {"X-CSRFToken": session.cookies["csrftoken"], "Referer": f"{url}/"}
        x, y = interior(truth)
        click = keypoint(x, y, target.category, width, height)
        response = session.post(
            f"{url}/api/ml/{ml_id}/interactive-annotating",
            json={"task": task["id"], "context": {"result": [click]}},
            headers=headers,
            timeout=120,
        )
        assert response.status_code == 200, response.text[:300]
        reply = response.json()
        assert "errors" not in reply, reply
        data = reply["data"]

        # What Label Studio 1.23 sent the backend.
        (body,) = captured
        assert set(body) >= {"tasks", "project", "label_config", "params"}
        (sent_task,) = body["tasks"]
        assert sent_task["id"] == task["id"] and sent_task["data"]["image"] == task["data"]["image"]
        assert body["label_config"] == config
        assert set(body["params"]) >= {"login", "password", "context"}
        assert body["params"]["context"] == {"result": [click]}  # the browser's regions, as they were

        # What came back to the browser: one brush region of the chosen class, the mask itself.
        assert data["model_version"] == "grabcut" and len(data["result"]) == 1
        (region,) = data["result"]
        assert (
            region["type"] == "brushlabels" and region["from_name"] == "mask" and region["to_name"] == "image"
        )
        assert region["value"]["brushlabels"] == [target.category]
        mask = brush_to_mask(region["value"]["rle"], width, height)
        assert mask[int(y), int(x)] == 1 and iou(mask, truth) > 0.3

        # Kept: saved as the labeller's annotation and pulled back as the same mask.
        client.sdk.annotations.create(id=task["id"], result=data["result"], lead_time=3.0)
        export = tmp_path / "export"
        code, out, err = run(
            ["label", "pull", "--url", url, "--project", title, "--out", str(export)], capsys
        )
        assert code == 0, err
        coco = json.loads((export / "annotations.json").read_text())
        (ann,) = coco["annotations"]
        assert coco["categories"][ann["category_id"] - 1]["name"] == target.category
        seg = ann["segmentation"]
        pulled = masklib.decode(masklib.from_polygons(seg, height, width) if isinstance(seg, list) else seg)
        assert np.array_equal(pulled, mask)

        # Variants of the captured request, straight to the backend as Label Studio would send them.
        def replay(results: list[dict[str, Any]]) -> dict[str, Any]:
            variant = copy.deepcopy(body)
            variant["params"]["context"]["result"] = results
            got = requests.post(f"{ml.url_of(server)}/predict", json=variant, timeout=120)
            assert got.status_code == 200
            (prediction,) = got.json()["results"]
            return prediction

        boxed = replay([rectangle(true_box(truth), target.category, width, height)])
        assert (
            iou(brush_to_mask(boxed["result"][0]["value"]["rle"], width, height), truth) > 0.4
        )  # 0.50 measured
        nx, ny = interior(~(truth.astype(bool)) & (np.indices(truth.shape)[0] < height))  # off the object
        excluded = replay([click, keypoint(nx, ny, target.category, width, height, positive=False)])
        assert brush_to_mask(excluded["result"][0]["value"]["rle"], width, height)[int(ny), int(nx)] == 0
        outside = replay([keypoint(width + 5, y, target.category, width, height)])
        assert outside["result"] == [] and "outside the image" in outside["error"]
        unknown = replay([{**click, "value": {**click["value"], "keypointlabels": ["whiteboard"]}}])
        # A class the project's mask tags lack: no region of it, the labeller reads why.
        assert (
            unknown["result"] == []
            and "'whiteboard' is not a label of the BrushLabels tag" in unknown["error"]
        )
        broken = copy.deepcopy(body)
        broken["tasks"][0]["data"]["image"] = "/data/upload/1/missing.jpg"
        got = requests.post(f"{ml.url_of(server)}/predict", json=broken, timeout=60).json()["results"][0]
        assert got["result"] == [] and "cannot download" in got["error"]
        assert (
            requests.get(f"{ml.url_of(server)}/health", timeout=10).json()["status"] == "UP"
        )  # still serving
    finally:
        server.shutdown()
        server.server_close()
