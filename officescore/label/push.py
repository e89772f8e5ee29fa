"""`label push`: photos (and a model's predictions) into a Label Studio project.

The project is created with a labelling config for the classes, or reused. Every task carries the
photo's sha256 in its data, so a second push adds only photos not already there. Photos are
uploaded (or, with `local_root`, served by Label Studio's local-files storage from that folder),
then all new tasks are imported in chunks of `CHUNK` in one request each: a chunk is all or
nothing, and a push that failed half way is simply run again (an uploaded photo whose task was
never made is left unused, never a task twice).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from officescore import DEFAULT_CLASSES
from officescore.attributes import AttributeSchema, load_schema
from officescore.errors import ConfigError
from officescore.ingest.conventions import Declared, check_convention_classes, with_conventions
from officescore.label.client import LabelStudio, LabelStudioError, Project
from officescore.label.formats import (
    IGNORE_TAG,
    POLYGON,
    LabelSchema,
    make_task,
    read_tasks,
    with_ignore_tag,
    with_smart_tools,
)
from officescore.label.predict import LoadedPredictor, detect
from officescore.label.prelabel import LOCAL_FILES_PREFIX, image_reference, relative_name
from officescore.label.regions import DEFAULT_SIMPLIFY
from officescore.label.sources import ImageSource, collect_images, readable_images
from officescore.progress import SILENT, Reporter

CHUNK = 50  # tasks per import request


@dataclass
class PushResult:
    project_id: int
    project: str
    created: bool
    added: int
    already_there: int
    predictions: int
    model_version: str | None = None
    failed: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(
        default_factory=list
    )  # what was changed beside the tasks, or not asked, in words

    def to_dict(self) -> dict[str, Any]:
        return {
            "project_id": self.project_id,
            "project": self.project,
            "created": self.created,
            "added": self.added,
            "already_there": self.already_there,
            "predictions": self.predictions,
            "model_version": self.model_version,
            "failed": self.failed,
            "notes": self.notes,
        }


def ensure_project(
    client: LabelStudio,
    title: str,
    schema: LabelSchema,
    model_classes: Sequence[str] | None = None,
    needed_by: str = "the model predicts",
    found: Project | None | bool = False,
) -> tuple[Project, bool]:
    """The project named `title` (created with `schema` if missing) and whether it was created.

    An existing project must have a label for every class in `model_classes` (`needed_by` says
    whose they are, for the error); its region kind (polygon / brush) wins over `schema`'s.
    `found`: what `client.find_project(title)` returned already (False: not asked yet).
    """
    project = client.find_project(title) if found is False else found
    if not isinstance(project, Project):
        return client.create_project(title, schema), True
    wanted = list(model_classes if model_classes is not None else schema.classes)
    missing = [c for c in wanted if c not in project.schema.classes]
    if missing:
        fix = " or a model trained on this project's classes" if needed_by == "the model predicts" else ""
        raise LabelStudioError(
            f"project {title!r} labels {', '.join(project.schema.classes)} but {needed_by} "
            f"{', '.join(missing)} too; use a new --project{fix}"
        )
    return project, False


def existing_sha256s(client: LabelStudio, project_id: int) -> set[str]:
    return {
        str(t["data"]["sha256"])
        for t in client.export_tasks(project_id)
        if isinstance(t.get("data"), dict) and t["data"].get("sha256")
    }


def push_images(
    client: LabelStudio,
    title: str,
    inputs: Sequence[str | Path],
    loaded: LoadedPredictor | None = None,
    classes: Sequence[str] | None = None,
    conf: float | None = None,
    mask: str | None = None,
    local_root: Path | None = None,
    batch_size: int = 2,
    simplify: float = DEFAULT_SIMPLIFY,
    reporter: Reporter = SILENT,
    attributes: AttributeSchema | None = None,
    interactive: bool = False,
    conventions: Mapping[str, Declared | None] | None = None,
) -> PushResult:
    """Add the photos not yet in project `title`, each with the model's prediction when `loaded`.

    Every new photo is decoded first; those that cannot be are left out and listed in `failed`.
    A new project labels `classes`, else the model's classes, else the ten office classes, with
    `mask` regions (default polygons) and a per-region choice for each attribute of `attributes`
    (default: the model's attribute head's, else the package's data/attributes.toml); predicted
    attribute values go into the predictions. An existing project keeps its kind, and a `mask`
    that differs from it is refused rather than dropped.
    `interactive`: the project gets the click-to-mask tools (a project made earlier too).
    `conventions`: declared labelling conventions for the project's instructions (`declare_conventions`).
    """
    images = collect_images(inputs)
    names = [relative_name(i.path, Path(local_root), "--local-root") for i in images] if local_root else None
    class_list = list(classes) if classes else (loaded.classes if loaded else list(DEFAULT_CLASSES))
    if loaded is not None and classes:
        unknown = [c for c in loaded.classes if c not in class_list]
        if unknown:
            raise ConfigError(
                f"--classes leaves out {', '.join(unknown)}, which the model predicts; add them"
            )
    asked = attributes  # --attributes FILE: an existing project must ask the same
    if attributes is None:
        head = loaded.predictor.attributes if loaded is not None else AttributeSchema()
        attributes = head if head else load_schema()
    # What an existing project must label: the model's classes, else --classes; plain photos
    # pushed without either go into the project as it is (they are not the ten default classes).
    needed = loaded.classes if loaded else (list(classes) if classes else [])
    project, created = ensure_project(
        client,
        title,
        LabelSchema(tuple(class_list), mask or POLYGON, attributes=attributes, interactive=interactive),
        needed,
        "the model predicts" if loaded else "--classes names",
    )
    if interactive and not created:  # a project made earlier (or by an earlier version) gets them
        project = add_smart_tools(client, project)
    schema = project.schema
    if mask is not None and schema.mask != mask:
        raise LabelStudioError(
            f"project {title!r} labels with {schema.mask} regions, not {mask}: leave out --mask {mask} "
            "or use a new --project"
        )
    notes = _attribute_notes(title, asked, schema, created)
    notes += declare_conventions(client, project, conventions) if conventions else []
    present = set() if created else existing_sha256s(client, project.id)
    todo = [(n, img) for n, img in enumerate(images) if img.sha256 not in present]
    already_there = len(images) - len(todo)
    # Decoded before anything is uploaded, with or without a model: no task for a non-photo.
    readable, failed = readable_images([img for _, img in todo], reporter)
    decoded = {img.sha256 for img in readable}
    todo = [(n, img) for n, img in todo if img.sha256 in decoded]
    results: list[Any] = [None] * len(todo)
    if loaded is not None and todo:
        results = detect(loaded, [img.path for _, img in todo], conf, batch_size, reporter)
    if local_root is not None and todo:
        for folder in storage_folders([img.path for _, img in todo], Path(local_root)):
            client.add_local_storage(project.id, folder)
    tasks = []
    with reporter.stage("uploading" if local_root is None else "preparing tasks", total=len(todo)) as stage:
        for (n, img), result in zip(todo, results, strict=True):
            stage.advance(1)
            if result is not None and not result.ok:
                failed.append({"path": str(img.path), "error": str(result.error)})
                continue
            ref = image_reference(names[n], None) if names else _upload(client, project.id, img)
            tasks.append(_task(img, ref, result, schema, loaded, simplify))
    predictions = _import(client, project.id, tasks, reporter)
    return PushResult(
        project.id,
        project.title,
        created,
        len(tasks),
        already_there,
        predictions,
        loaded.version if loaded else None,
        failed,
        notes,
    )


def _attribute_notes(
    title: str, asked: AttributeSchema | None, schema: LabelSchema, created: bool
) -> list[str]:
    """--attributes against the project: refused when an existing project asks other attribute
    questions (its config wins, as its region kind does; the file would be silently ignored); a note
    for the file's classes the project does not label (a misspelt [chiar.armrests] asks nothing)."""
    if asked is None:
        return []
    wanted, have = _questions(asked.restricted(schema.classes)), _questions(schema.attributes)
    if not created and wanted != have:
        raise LabelStudioError(
            f"project {title!r} asks for the attributes {', '.join(sorted(have)) or 'none'}, not "
            f"{', '.join(sorted(wanted)) or 'none'} (--attributes): leave it out, use a new --project, "
            "or change the project's labelling interface in Label Studio"
        )
    unused = asked.classes_outside(schema.classes)
    if not unused:
        return []
    return [
        f"--attributes declares attributes of {', '.join(unused)}, which project {title!r} does not "
        f"label ({', '.join(schema.classes)}); they are not asked"
    ]


def _questions(schema: AttributeSchema) -> set[str]:
    """The per-region questions a schema asks, as Label Studio's config keeps them (no defaults)."""
    return {f"{a.class_name}.{a.name} ({'/'.join(sorted(a.value_names()))})" for a in schema.attributes}


def add_smart_tools(client: LabelStudio, project: Project) -> Project:
    """Give an existing project the click-to-mask tools (smart keypoint and rectangle per class, and a
    BrushLabels tag for the answers); the rest of its config, and its tasks and labels, stay."""
    return _reconfigured(client, project, with_smart_tools(project.config))


def add_ignore_tag(client: LabelStudio, project: Project, labels: Sequence[str] = ()) -> Project:
    """Give an existing project the RectangleLabels tag of ignore regions (labelling its classes and
    `labels`): Label Studio neither shows a result whose tag its config lacks nor keeps it when the
    task is saved. The rest of the config, and the project's tasks and labels, stay."""
    return _reconfigured(client, project, with_ignore_tag(project.config, labels))


def _reconfigured(client: LabelStudio, project: Project, config: str) -> Project:
    """The project with labelling config `config`, set in Label Studio when it differs (a config
    already so, e.g. with the tools added before, is left alone)."""
    if config == project.config:
        return project
    client.set_project(project.id, label_config=config)
    return Project(project.id, project.title, LabelSchema.from_config(config), config)


def declare_conventions(
    client: LabelStudio, project: Project, given: Mapping[str, Declared | None]
) -> list[str]:
    """Write the declared conventions into the project's labelling instructions (shown to labellers
    before they label), over those an earlier push wrote there; the other instructions stay."""
    check_convention_classes(given, project.schema.classes)
    current = client.call("read the project", lambda: client.sdk.projects.get(id=project.id))
    text, declared = with_conventions(str(current.expert_instruction or ""), given, project.schema.classes)
    fields: dict[str, Any] = {"expert_instruction": text}
    if declared:  # shown before labelling, not only behind the instructions button
        fields["show_instruction"] = True
    client.set_project(project.id, **fields)
    said = "; ".join(f"{name}={d.convention}" for name, d in declared.items()) or "none"
    return [f"project {project.title!r}: labelling instructions hold the conventions {said}"]


def storage_folders(photos: Sequence[Path], local_root: Path) -> list[Path]:
    """The folders local-files storages are made for: per folder directly below `local_root`
    (Label Studio's LOCAL_FILES_DOCUMENT_ROOT, which it refuses as a storage itself), the common
    folder of the photos inside it. Photos in root/a and root/b get two storages."""
    root = Path(local_root).resolve()
    by_top: dict[str, list[str]] = {}
    for photo in photos:
        folder = photo.resolve().parent
        if folder == root:
            raise ConfigError(
                f"--local-root {local_root}: Label Studio serves no photos from its document root itself "
                f"({photo.name} is there); put them in a subfolder (e.g. photos/) of it"
            )
        by_top.setdefault(folder.relative_to(root).parts[0], []).append(str(folder))
    return [Path(os.path.commonpath(folders)) for folders in by_top.values()]


def _upload(client: LabelStudio, project_id: int, img: ImageSource) -> str:
    # The sha256 prefix keeps two photos with the same name apart in Label Studio's upload folder.
    return client.upload_file(project_id, f"{img.sha256[:8]}-{img.path.name}", img.path.read_bytes())


def _task(
    img: ImageSource,
    ref: str,
    result: Any,
    schema: LabelSchema,
    loaded: LoadedPredictor | None,
    simplify: float,
) -> dict[str, Any]:
    data = {"sha256": img.sha256, "name": img.path.name, **img.provenance}
    if result is None:
        return {"data": {schema.value: ref, **data}}
    return make_task(
        ref,
        result.width,
        result.height,
        schema,
        detections=result.detections,
        model_version=loaded.version if loaded else "",
        data=data,
        simplify=simplify,
    )


def _import(client: LabelStudio, project_id: int, tasks: list[dict[str, Any]], reporter: Reporter) -> int:
    with reporter.stage("importing tasks", total=len(tasks)) as stage:
        for start in range(0, len(tasks), CHUNK):
            chunk = tasks[start : start + CHUNK]
            client.import_tasks(project_id, chunk)
            stage.advance(len(chunk))
    return sum(len(t.get("predictions", [])) for t in tasks)


# ------------------------------------------------------------------ a tasks file (prelabel, audit)


def push_tasks_file(
    client: LabelStudio,
    title: str,
    tasks_file: Path,
    local_root: Path | None = None,
    reporter: Reporter = SILENT,
    conventions: Mapping[str, Declared | None] | None = None,
) -> PushResult:
    """Import a tasks file written by `prelabel --format labelstudio`, `audit --labelstudio` or
    `select --labelstudio` (its labelling config beside it), predictions and annotations included.

    Each task's photo is found through `data.path` (relative to the tasks file): it is uploaded,
    or with `local_root` referenced through local-files storage; a task whose `data.image` is
    already an http(s) URL is imported as it is. Tasks whose sha256 is in the project are skipped.
    """
    from officescore.files import sha256_file
    from officescore.label.formats import config_path_for

    tasks_file = Path(tasks_file)
    tasks = read_tasks(tasks_file)
    config = config_path_for(tasks_file)
    if not config.is_file():
        raise ConfigError(f"{tasks_file}: no labelling config {config.name} beside it; write the file again")
    schema = LabelSchema.from_config(config.read_text(encoding="utf-8"))
    file_classes = _classes_in(tasks, schema)
    existing = client.find_project(title)
    present = existing_sha256s(client, existing.id) if existing is not None else set()
    _check_photos(tasks, tasks_file, schema, present)  # before a project is made or a photo uploaded
    project, created = ensure_project(
        client, title, schema, file_classes, f"{tasks_file.name} uses", existing
    )
    if project.schema.mask != schema.mask:
        raise LabelStudioError(
            f"project {title!r} labels with {project.schema.mask} regions but {tasks_file.name} holds "
            f"{schema.mask} regions; write the file with --mask {project.schema.mask} or use a new --project"
        )
    notes = []
    boxes = _tag_labels(tasks, IGNORE_TAG)
    if boxes is not None and not project.schema.ignore_boxes:  # a project made before review tasks had them
        project = add_ignore_tag(client, project, boxes)
        notes.append(
            f"project {title!r}: added the {IGNORE_TAG!r} rectangles to its labelling config, so that "
            "ignore regions show and stay when a labeller saves a task"
        )
    notes += declare_conventions(client, project, conventions) if conventions else []
    todo, skipped, served = [], 0, []
    listed: set[str] = set()  # the photos of the tasks kept so far (sha256, else the URL)
    repeated = 0
    with reporter.stage("preparing tasks", total=len(tasks)) as stage:
        for task in tasks:
            stage.advance(1)
            data = dict(task["data"])
            local = tasks_file.parent / data["path"] if data.get("path") else None
            if not data.get("sha256") and local is not None and local.is_file():
                data["sha256"] = sha256_file(local)
            if data.get("sha256") in present:
                skipped += 1
                continue
            photo = str(data.get("sha256") or data.get(schema.value) or "")
            if photo in listed:  # the same photo again (merged files): one task per photo, as pushes keep
                repeated += 1
                continue
            listed.add(photo)
            ref = str(data.get(schema.value, ""))
            if local is not None and not ref.startswith(("http://", "https://")):
                if local_root is not None:
                    ref = LOCAL_FILES_PREFIX + relative_name(local, Path(local_root), "--local-root")
                    served.append(local)
                else:
                    ref = _upload(client, project.id, ImageSource(local, data.get("sha256", "")))
            data[schema.value] = ref
            if local is not None:
                data.setdefault("name", local.name)
            data.pop("path", None)  # relative to the tasks file: meaningless inside Label Studio
            if project.schema != schema:
                task = _renamed(task, schema, project.schema)
            todo.append({**task, "data": data})
    if served:  # only with local_root
        for folder in storage_folders(served, Path(local_root)):
            client.add_local_storage(project.id, folder)
    if repeated:
        notes.append(
            f"{tasks_file.name}: left out {repeated} task(s) of a photo an earlier task in it holds "
            "(the first is pushed)"
        )
    predictions = _import(client, project.id, todo, reporter)
    return PushResult(project.id, project.title, created, len(todo), skipped, predictions, None, [], notes)


def _check_photos(
    tasks: Sequence[dict[str, Any]], tasks_file: Path, schema: LabelSchema, present: set[str]
) -> None:
    """Every task's photo is an http(s) URL or a file found through `data.path`, unless the project
    already holds it (by sha256): that task is skipped, so its photo is not needed."""
    for task in tasks:
        data = task["data"]
        ref = str(data.get(schema.value, ""))
        if ref.startswith(("http://", "https://")) or data.get("sha256") in present:
            continue
        if not data.get("path") or not (tasks_file.parent / data["path"]).is_file():
            missing = data.get("path") or ref
            raise ConfigError(f"{tasks_file}: task photo {missing!r} not found beside the file")


def _classes_in(tasks: Sequence[dict[str, Any]], schema: LabelSchema) -> list[str]:
    found: dict[str, None] = {}
    for task in tasks:
        for group in ("predictions", "annotations"):
            for entry in task.get(group) or []:
                for result in entry.get("result") or []:
                    for label in (result.get("value") or {}).get(schema.result_type, []):
                        found[str(label)] = None
    return list(found)


def _tag_labels(tasks: Sequence[dict[str, Any]], tag: str) -> list[str] | None:
    """The labels the tasks' results of tag `tag` use; None when no result uses the tag."""
    results = [
        result
        for task in tasks
        for group in ("predictions", "annotations")
        for entry in task.get(group) or []
        for result in entry.get("result") or []
        if result.get("from_name") == tag
    ]
    if not results:
        return None
    labels = (label for r in results for label in (r.get("value") or {}).get(str(r.get("type", "")), []))
    return list(dict.fromkeys(str(label) for label in labels))


def _renamed(task: dict[str, Any], written: LabelSchema, schema: LabelSchema) -> dict[str, Any]:
    """The task's results re-pointed at the project's tag names (same kind, other names): the mask
    tag's regions at its mask tag, every result at its image; attribute choices and ignore rectangles
    keep their own tag names, which both configs share."""
    task = dict(task)
    for group in ("predictions", "annotations"):
        entries = []
        for entry in task.get(group) or []:
            results = [_repointed(r, written, schema) for r in entry.get("result") or []]
            entries.append({**entry, "result": results})
        if group in task:
            task[group] = entries
    return task


def _repointed(result: dict[str, Any], written: LabelSchema, schema: LabelSchema) -> dict[str, Any]:
    tag = result.get("from_name")
    return {
        **result,
        "from_name": schema.from_name if tag == written.from_name else tag,
        "to_name": schema.to_name,
    }
