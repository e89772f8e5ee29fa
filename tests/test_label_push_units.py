"""`label push` without Label Studio: a stand-in client records what push_images and push_tasks_file
ask of `officescore.label.client.LabelStudio` (which photos, which task data, which storage, which
imports). Against the real server: test_label_studio.py."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from labelmodels import EdgePredictor, edge_model, polygon_region, write_photos

from officescore.errors import ConfigError
from officescore.files import sha256_file
from officescore.infer import ImageResult
from officescore.label import push
from officescore.label.client import LabelStudioError, Project
from officescore.label.formats import LabelSchema, config_path_for
from officescore.label.predict import LoadedPredictor
from officescore.label.prelabel import LOCAL_FILES_PREFIX
from officescore.progress import SILENT


class Studio:
    """The calls push makes of the client, against one project (None: not made yet)."""

    def __init__(self, project: LabelSchema | None = None, tasks: list[dict[str, Any]] | None = None) -> None:
        self.project = None if project is None else Project(4, "offices", project, project.config_xml())
        self.tasks = list(tasks or [])
        self.uploaded: list[str] = []
        self.imports: list[list[dict[str, Any]]] = []
        self.storages: list[Path] = []

    def find_project(self, title: str) -> Project | None:
        return self.project

    def create_project(self, title: str, schema: LabelSchema) -> Project:
        self.project = Project(4, title, schema, schema.config_xml())
        return self.project

    def export_tasks(self, project_id: int) -> list[dict[str, Any]]:
        return json.loads(json.dumps(self.tasks))

    def upload_file(self, project_id: int, name: str, data: bytes) -> str:
        self.uploaded.append(name)
        return f"/data/upload/4/{name}"

    def import_tasks(self, project_id: int, tasks: list[dict[str, Any]]) -> None:
        self.imports.append(list(tasks))
        self.tasks += tasks

    def add_local_storage(self, project_id: int, folder: Path) -> None:
        self.storages.append(folder)

    def set_project(self, project_id: int, label_config: str) -> None:
        assert self.project is not None
        self.project = Project(
            project_id, self.project.title, LabelSchema.from_config(label_config), label_config
        )

    @property
    def imported(self) -> list[dict[str, Any]]:
        return [task for chunk in self.imports for task in chunk]


def test_tasks_are_imported_in_chunks_and_every_one_arrives() -> None:
    client = Studio(LabelSchema(("desk",)))
    tasks = [{"data": {"image": f"https://example.org/{n}.jpg"}} for n in range(2 * push.CHUNK + 1)]
    push._import(client, 4, tasks, SILENT)  # type: ignore[arg-type]
    assert [len(chunk) for chunk in client.imports] == [push.CHUNK, push.CHUNK, 1]
    assert client.imported == tasks


def test_a_second_push_from_a_local_root_adds_only_new_photos_each_under_its_own_name(tmp_path: Path) -> None:
    """The project (other classes, made by hand) holds the first photo, another, and a task imported
    by hand without a sha256: the other photos become tasks pointing at their own files through a storage of
    their folder, named after the photo; what is said to be there already is the one photo given."""
    root = tmp_path / "root"
    photos = write_photos(root / "photos", n=3)
    there = [
        {"data": {"image": "x", "sha256": sha256_file(photos[0])}},
        {"data": {"image": "y", "sha256": "a photo not given"}},
        {"data": {"image": "by hand"}},
    ]
    client = Studio(LabelSchema(("sofa", "rug")), there)
    result = push.push_images(client, "offices", [root / "photos"], local_root=root)  # type: ignore[arg-type]
    assert (result.added, result.already_there, result.predictions) == (2, 1, 0)  # no model: none
    assert client.storages == [(root / "photos").resolve()]
    assert [(t["data"]["image"], t["data"]["name"]) for t in client.imported] == [
        (f"{LOCAL_FILES_PREFIX}photos/{p.name}", p.name) for p in photos[1:]
    ]
    assert client.uploaded == []


def test_photos_in_two_folders_below_the_local_root_get_a_storage_each(tmp_path: Path) -> None:
    """root/a and root/b: Label Studio refuses its document root as a storage, so each top folder gets
    its own (the common folder of its photos); a photo in the root itself is refused in a sentence."""
    root = tmp_path / "root"
    kitchen = write_photos(root / "a" / "kitchen", n=1)
    study = write_photos(root / "a" / "study", n=2)[1:]  # another scene: not the same photo twice
    office = write_photos(root / "b", n=3)[2:]
    client = Studio(LabelSchema(("desk",)))
    push.push_images(client, "offices", [*kitchen, *study, *office], local_root=root)  # type: ignore[arg-type]
    assert client.storages == [(root / "a").resolve(), (root / "b").resolve()]
    assert len(client.imported) == 3
    (root / "loose.jpg").write_bytes(office[0].read_bytes())
    with pytest.raises(
        ConfigError, match=r"document root itself \(loose.jpg is there\); put them in a subfolder"
    ):
        push.storage_folders([office[0], root / "loose.jpg"], root)


def test_a_push_with_a_model_into_a_new_brush_project(tmp_path: Path) -> None:
    """--classes may name more than the model predicts; --mask brush makes a brush project, whose
    predictions are brush regions on the photo's own size (128 x 96), and a later push without --mask
    keeps its kind."""
    photos = write_photos(tmp_path / "photos", n=1)
    client = Studio()
    classes = ["desk", "chair", "monitor", "lamp"]
    pushed = push.push_images(client, "offices", photos, edge_model(), classes=classes, mask="brush")  # type: ignore[arg-type]
    assert pushed.created and client.project is not None and client.project.schema.mask == "brush"
    (task,) = client.imported
    regions = task["predictions"][0]["result"]
    assert regions and {(r["type"], r["original_width"], r["original_height"]) for r in regions} == {
        ("brushlabels", 128, 96)
    }
    more = write_photos(tmp_path / "more", n=2)[1:]
    again = push.push_images(client, "offices", more, edge_model())  # type: ignore[arg-type]
    assert (again.created, again.added) == (False, 1)


class FailsTheSecond(EdgePredictor):
    """A model that cannot read the second photo (decoded fine before, e.g. gone meanwhile)."""

    def predict(self, paths: Sequence[Path], **kwargs: object) -> list[ImageResult]:
        results = super().predict(paths, **kwargs)
        results[1] = ImageResult(str(paths[1]), error="cannot read it")
        return results


def test_a_photo_the_model_fails_is_listed_and_not_counted_as_added(tmp_path: Path) -> None:
    photos = write_photos(tmp_path, n=2)
    client = Studio()
    loaded = LoadedPredictor(FailsTheSecond(), "fails", "fails-00000000")
    pushed = push.push_images(client, "offices", photos, loaded)  # type: ignore[arg-type]
    assert (pushed.added, [f["path"] for f in pushed.failed]) == (1, [str(photos[1])])
    assert len(client.imported) == 1


def test_push_interactive_gives_a_project_made_earlier_the_click_to_mask_tools(tmp_path: Path) -> None:
    client = Studio(LabelSchema(("desk",)))
    push.push_images(client, "offices", write_photos(tmp_path, n=1), interactive=True)  # type: ignore[arg-type]
    assert client.project is not None and client.project.schema.interactive


def write_tasks_file(folder: Path, tasks: list[dict[str, Any]], schema: LabelSchema) -> Path:
    tasks_file = folder / "review.json"
    tasks_file.write_text(json.dumps(tasks))
    config_path_for(tasks_file).write_text(schema.config_xml())
    return tasks_file


def test_a_tasks_file_skips_what_the_project_holds_and_serves_or_keeps_the_rest(tmp_path: Path) -> None:
    """Task 1's photo is in the project (by sha256) and gone from disk: skipped and counted. Task 2
    is an http(s) photo: imported as it is, not uploaded. Task 3's photo is served from --local-root
    through a storage of its folder; `path` (relative to the file) stays out of Label Studio."""
    schema = LabelSchema(("desk",))
    root = tmp_path / "root"
    (photo,) = write_photos(root / "photos", n=1)
    url = "https://photos.example/office.jpg"
    tasks = [
        {"data": {"image": "a.jpg", "path": "gone.jpg", "sha256": "aaa"}},
        {"data": {"image": url, "path": "root/photos/scene_0.jpg", "sha256": "bbb"}},
        {"data": {"image": "c.jpg", "path": "root/photos/scene_0.jpg"}},
    ]
    client = Studio(schema, [{"data": {"image": "old", "sha256": "aaa"}}])
    result = push.push_tasks_file(
        client, "offices", write_tasks_file(tmp_path, tasks, schema), local_root=root
    )  # type: ignore[arg-type]
    assert (result.added, result.already_there) == (2, 1)
    assert [t["data"]["image"] for t in client.imported] == [url, f"{LOCAL_FILES_PREFIX}photos/{photo.name}"]
    assert not any("path" in t["data"] for t in client.imported)
    assert client.imported[1]["data"]["sha256"] == sha256_file(photo)  # so a second push skips it
    assert client.storages == [(root / "photos").resolve()] and client.uploaded == []


def test_a_photo_a_tasks_file_lists_twice_is_pushed_once(tmp_path: Path) -> None:
    """Two prelabel files merged into one list scene_0 twice (under two names: the sha256 tells) and
    an http(s) photo twice: each became two tasks of one photo. The first task of each is pushed,
    the rest left out with a note; the photo is uploaded once."""
    schema = LabelSchema(("desk",))
    (photo,) = write_photos(tmp_path / "photos", n=1)
    (photo.parent / "copy.jpg").write_bytes(photo.read_bytes())
    url = "https://photos.example/office.jpg"
    tasks = [
        {"data": {"image": "a.jpg", "path": "photos/scene_0.jpg"}, "predictions": [{"result": []}]},
        {"data": {"image": url}},
        {"data": {"image": "b.jpg", "path": "photos/copy.jpg"}},
        {"data": {"image": url}},
        {"data": {"image": "c.jpg", "path": "photos/scene_0.jpg", "sha256": sha256_file(photo)}},
    ]
    client = Studio(schema)
    result = push.push_tasks_file(client, "offices", write_tasks_file(tmp_path, tasks, schema))  # type: ignore[arg-type]
    assert (result.added, result.already_there, len(client.uploaded)) == (2, 0, 1)
    assert [t["data"]["name"] for t in client.imported if "name" in t["data"]] == ["scene_0.jpg"]
    assert client.imported[0]["predictions"] == [{"result": []}]  # the first task of the photo
    assert result.notes == [
        "review.json: left out 3 task(s) of a photo an earlier task in it holds (the first is pushed)"
    ]


def test_photos_at_two_urls_are_two_photos_and_one_repeat_is_said(tmp_path: Path) -> None:
    """http(s) photos carry no sha256: told apart by their URL, so two URLs are both pushed; the
    first URL again is left out, and a single repeat is said as well."""
    schema = LabelSchema(("desk",))
    urls = ["https://photos.example/a.jpg", "https://photos.example/b.jpg"]
    tasks = [{"data": {"image": url}} for url in [*urls, urls[0]]]
    client = Studio(schema)
    result = push.push_tasks_file(client, "offices", write_tasks_file(tmp_path, tasks, schema))  # type: ignore[arg-type]
    assert [t["data"]["image"] for t in client.imported] == urls
    assert result.notes == [
        "review.json: left out 1 task(s) of a photo an earlier task in it holds (the first is pushed)"
    ]


@pytest.mark.parametrize("group", ["annotations", "predictions"])
def test_a_tasks_file_whose_labels_the_project_lacks_is_refused(tmp_path: Path, group: str) -> None:
    """An annotation or a prediction of a class the project has no label for: Label Studio would not
    show it, so the push is refused before anything is imported."""
    lamp = polygon_region([[10, 10], [40, 10], [40, 40]], "lamp", 128, 96)
    tasks = [{"data": {"image": "https://photos.example/a.jpg"}, group: [{"result": [lamp]}]}]
    client = Studio(LabelSchema(("desk",)))
    with pytest.raises(LabelStudioError, match="lamp"):
        push.push_tasks_file(
            client, "offices", write_tasks_file(tmp_path, tasks, LabelSchema(("desk", "lamp")))
        )  # type: ignore[arg-type]
    assert client.imports == []


def test_attributes_an_existing_project_does_not_ask_are_refused_not_ignored(tmp_path: Path) -> None:
    """--attributes is the config of a new project; an existing one kept its own questions and the
    file was silently ignored (a labeller never saw chair.wheels). The same questions are fine."""
    from officescore.attributes import AttributeSchema, load_schema

    client = Studio(LabelSchema(("desk", "chair"), attributes=load_schema()))
    photos = write_photos(tmp_path, n=2)
    wheels = AttributeSchema.from_dict({"chair": {"wheels": {"kind": "yesno", "default": True}}})
    with pytest.raises(
        LabelStudioError, match=r"asks for the attributes chair\.armrests \(no/yes\), not chair\.wheels"
    ):
        push.push_images(client, "offices", photos[:1], attributes=wheels)  # type: ignore[arg-type]
    assert not client.imported
    same = push.push_images(client, "offices", photos[:1], attributes=load_schema())  # type: ignore[arg-type]
    assert same.added == 1 and [n.split(",")[0] for n in same.notes] == [
        "--attributes declares attributes of lamp"  # and plant: classes the project does not label
    ]
    asks_none = Studio(LabelSchema(("desk", "chair")))  # made by hand: no --attributes keeps it so
    plain = push.push_images(asks_none, "offices", photos[:1])  # type: ignore[arg-type]
    assert plain.added == 1 and plain.notes == []


def test_attributes_of_a_class_the_project_lacks_are_named(tmp_path: Path) -> None:
    """A misspelt [chiar.armrests] made a project without the armrests question, without a word."""
    from officescore.attributes import AttributeSchema

    typo = AttributeSchema.from_dict({"chiar": {"armrests": {"kind": "yesno", "default": False}}})
    client = Studio()
    pushed = push.push_images(
        client,
        "offices",
        write_photos(tmp_path, n=1),
        classes=["desk", "chair"],
        attributes=typo,  # type: ignore[arg-type]
    )
    assert pushed.notes == [
        "--attributes declares attributes of chiar, which project 'offices' does not label (desk, chair); "
        "they are not asked"
    ]
    assert client.project is not None and not client.project.schema.attributes


def test_classes_that_leave_out_one_the_model_predicts_are_refused(tmp_path: Path) -> None:
    """A new project labelling desk and chair would never show the model's monitors (Label Studio
    hides a region whose label its config lacks): refused before a project is made."""
    client = Studio()
    with pytest.raises(ConfigError, match="--classes leaves out monitor, which the model predicts; add them"):
        push.push_images(
            client, "offices", write_photos(tmp_path, n=1), edge_model(), classes=["desk", "chair"]
        )  # type: ignore[arg-type]
    assert client.project is None and client.uploaded == []


def test_a_new_project_asks_what_the_models_attribute_head_answers(tmp_path: Path) -> None:
    """Without --attributes a model with an attribute head makes a project asking its questions
    (its predictions carry those answers), not the package's default ones."""
    from officescore.attributes import AttributeSchema

    loaded = edge_model()
    wheels = AttributeSchema.from_dict({"chair": {"wheels": {"kind": "yesno", "default": True}}})
    loaded.predictor.attributes = wheels  # type: ignore[attr-defined]
    client = Studio()
    push.push_images(client, "offices", write_photos(tmp_path, n=1), loaded)  # type: ignore[arg-type]
    assert client.project is not None
    assert [(a.class_name, a.name) for a in client.project.schema.attributes.attributes] == [
        ("chair", "wheels")
    ]


def test_a_photo_that_cannot_be_read_is_failed_not_already_there(tmp_path: Path) -> None:
    """A file that is no photo is listed in `failed`; it is not one of the photos the project holds."""
    (photo,) = write_photos(tmp_path, n=1)
    (tmp_path / "broken.jpg").write_bytes(b"not a photo")
    client = Studio(LabelSchema(("desk",)))
    pushed = push.push_images(client, "offices", [photo, tmp_path / "broken.jpg"])  # type: ignore[arg-type]
    assert (pushed.added, pushed.already_there) == (1, 0)
    assert [Path(f["path"]).name for f in pushed.failed] == ["broken.jpg"]


def test_two_photos_of_one_name_are_uploaded_under_two_names(tmp_path: Path) -> None:
    """a/scene_0.jpg and b/scene_0.jpg (other scenes): each upload's name starts with its photo's
    sha256, so Label Studio's upload folder keeps both."""
    (first,) = write_photos(tmp_path / "a", n=1)
    second = write_photos(tmp_path / "b", n=2)[1].rename(tmp_path / "b" / first.name)
    client = Studio(LabelSchema(("desk",)))
    push.push_images(client, "offices", [first, second])  # type: ignore[arg-type]
    assert client.uploaded == [f"{sha256_file(p)[:8]}-{first.name}" for p in (first, second)]
    assert [t["data"]["name"] for t in client.imported] == [first.name, first.name]


def test_a_mask_kind_other_than_the_projects_is_refused(tmp_path: Path) -> None:
    """--mask brush into a polygon project: the project's kind would win without a word."""
    client = Studio(LabelSchema(("desk",)))
    with pytest.raises(
        LabelStudioError, match="labels with polygon regions, not brush: leave out --mask brush"
    ):
        push.push_images(client, "offices", write_photos(tmp_path, n=1), mask="brush")  # type: ignore[arg-type]
    assert client.imported == [] and client.uploaded == []


def test_review_tasks_add_the_ignore_tag_only_to_a_project_without_it(tmp_path: Path) -> None:
    """The note says the labelling config was changed: only when it was."""
    from officescore.label.formats import IGNORE_TAG, make_task

    with_boxes, without = LabelSchema(("desk",), ignore_boxes=True), LabelSchema(("desk",))
    ignore = [{"category": "desk", "bbox": [10, 10, 20, 20]}]
    url = "https://photos.example/a.jpg"
    task = make_task(url, 128, 96, with_boxes, annotations=[], ignore_regions=ignore)
    tasks_file = write_tasks_file(tmp_path, [task], with_boxes)
    for project, changed in ((without, True), (with_boxes, False)):
        client = Studio(project)
        pushed = push.push_tasks_file(client, "offices", tasks_file)  # type: ignore[arg-type]
        assert [f"added the {IGNORE_TAG!r} rectangles" in note for note in pushed.notes] == [True] * changed
        assert client.project is not None and client.project.schema.ignore_boxes


def test_interactive_tools_are_set_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A project that has the click-to-mask tools already keeps its config: no change sent."""
    client = Studio(LabelSchema(("desk",)))
    photos = write_photos(tmp_path, n=2)
    sent: list[str] = []
    set_project = client.set_project
    monkeypatch.setattr(
        client,
        "set_project",
        lambda pid, label_config: sent.append(label_config) or set_project(pid, label_config),
    )
    for photo in photos:
        push.push_images(client, "offices", [photo], interactive=True)  # type: ignore[arg-type]
    assert len(sent) == 1 and client.project is not None and client.project.schema.interactive


def test_a_tasks_file_of_polygons_into_a_brush_project_is_refused(tmp_path: Path) -> None:
    """Label Studio would not show polygons in a project of brush regions; the sentence names both kinds."""
    lamp = polygon_region([[10, 10], [40, 10], [40, 40]], "desk", 128, 96)
    tasks = [{"data": {"image": "https://photos.example/a.jpg"}, "annotations": [{"result": [lamp]}]}]
    client = Studio(LabelSchema(("desk",), "brush"))
    with pytest.raises(
        LabelStudioError,
        match=r"labels with brush regions but review\.json holds polygon regions; .*--mask brush",
    ):
        push.push_tasks_file(client, "offices", write_tasks_file(tmp_path, tasks, LabelSchema(("desk",))))  # type: ignore[arg-type]
    assert client.imports == []
