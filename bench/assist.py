"""Does the retraining backend save labellers work? `label backend --train` against a static backend.

A real Label Studio on 127.0.0.1 (started as the tests start it, tests/labelstudio_server.py),
synthetic scenes with exact masks (`officescore.sample`), and a scripted labeller: it opens the
tasks in order (Label Studio asks the backend for the prediction it shows), reads it, and submits
the scene's true labels, as a person correcting the suggestion would. With --wait (default) the
labeller waits for a running job (and a new model's load) before the next task, so each version's
suggestions are seen.

Two projects hold the same scenes:
- retraining: a backend with a trainer (`officescore.label.trainer`), a job every --every labels;
- static: the retraining backend's first model, never replaced.
Printed (markdown): per model version of the retraining backend, the labelled photos it trained
on, val mask mAP, seconds per job; then per window of --every tasks, for both backends
(`officescore.label.feedback`): objects suggested, the kept share and the mean mask IoU of kept
objects, objects drawn by hand (added), and the share of the final labels that came from a kept
suggestion (kept / (kept + added): the work saved).

With --standin, the first model starts from a checkpoint trained on other scenes with its class
layers dropped, as it would from COCO weights (which cannot be downloaded here); bench/standin.py
trains one (`--without lamp,bookshelf`: one that, like COCO's, never learned those classes).
Two ways a real project differs from what such a start learned: `--unlabelled mug,mouse` leaves
objects in the photos that the project does not label, and `--masks plant=leaves,desk=top` outlines
plants without their pot and desks by their top only (the start learned whole objects).

    python bench/assist.py --tasks 50 --every 10 --size 256 --epochs 10 --minutes 5 \
        --standin runs/bench-click/runs/model/weights/last.pt --out runs/bench-assist

Run one at a time: two runs side by side on 2 cores made each job hit --minutes 5 after 4-7 of its 10
epochs (2026-12-03), so the models were not those of a run alone.

One run's window of 10 tasks holds some 30-50 suggestions; `--pool A/assist.json B/assist.json ...`
sums the windows of runs on other scenes (--seed) and prints kept share, deleted and drawn objects.
`--replay OUT ...` scores the same runs' windows again under other threshold rules (bench/replay.py).
`--same-photos OUT ...` scores the model that answered after each job on the same --tasks new scenes
(another seed): a window's own photos move its kept share too.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from benchkit import cpu_name, positive_int  # noqa: E402 - bench/, first on sys.path when run as a script
from labelstudio_server import _stop  # noqa: E402 - the tests' own server start, reused
from labelstudio_server import start as start_server  # noqa: E402
from trainsetup import FAST_MODEL  # noqa: E402 - the tests' small-model settings

from officescore import DEFAULT_CLASSES  # noqa: E402
from officescore.label import backend as ml  # noqa: E402
from officescore.label.client import LabelStudio  # noqa: E402
from officescore.label.feedback import task_feedback, tasks_with_predictions  # noqa: E402
from officescore.label.formats import LabelSchema, annotation  # noqa: E402
from officescore.label.prelabel import DEFAULT_CONF  # noqa: E402
from officescore.label.push import push_images  # noqa: E402
from officescore.label.trainer import Trainer, TrainSettings  # noqa: E402


def start_label_studio(base: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    process, server = start_server(base)
    return process, server.url, server.api_key


class Labeller:
    """Opens each task (Label Studio asks the backend), then saves the scene's true labels."""

    def __init__(self, client: LabelStudio, project_id: int, scenes: Path, classes: list[str]) -> None:
        self.client = client
        self.coco = json.loads((scenes / "annotations.json").read_text())
        self.names = {c["id"]: c["name"] for c in self.coco["categories"]}
        self.schema = LabelSchema(tuple(classes))
        tasks = client.export_tasks(project_id)
        self.order = sorted(tasks, key=lambda t: t["data"]["name"])

    def label(self, task: dict[str, Any]) -> None:
        self.client.task(task["id"])  # what opening it in the browser does: a prediction is made
        image = next(i for i in self.coco["images"] if Path(i["file_name"]).name == task["data"]["name"])
        labels = [
            {"category": self.names[a["category_id"]], "segmentation": a["segmentation"]}
            for a in self.coco["annotations"]
            if a["image_id"] == image["id"] and self.names[a["category_id"]] in self.schema.classes
        ]
        result = annotation(labels, image["width"], image["height"], self.schema)["result"]
        self.client.sdk.annotations.create(id=task["id"], result=result, lead_time=1.0)


def windows(client: LabelStudio, project_id: int, order: list[int], every: int) -> list[dict[str, Any]]:
    """Kept share and mean kept mask IoU per window of `every` tasks, in labelling order."""
    by_id = {t["id"]: t for t in tasks_with_predictions(client, project_id)}
    out = []
    for start in range(0, len(order), every):
        found = [task_feedback(by_id[t]) for t in order[start : start + every]]
        found = [f for f in found if f is not None]
        predicted = sum(f.predicted for f in found)
        kept = sum(f.kept for f in found)
        ious = [i for f in found for i in f.kept_ious]
        added = sum(f.added for f in found)
        out.append(
            {
                "tasks": f"{start + 1}-{min(start + every, len(order))}",
                "versions": sorted({f.model_version for f in found}),
                "predicted": predicted,
                "kept_share": kept / predicted if predicted else None,
                "mean_kept_iou": sum(ious) / len(ious) if ious else None,
                "added": added,
                # of the final labels, the share that came from a kept suggestion: work saved
                "from_suggestions": kept / (kept + added) if kept + added else None,
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=positive_int, default=40)
    parser.add_argument("--every", type=positive_int, default=10)
    parser.add_argument("--size", type=int, default=128, help="scene size in pixels (and training size)")
    parser.add_argument("--epochs", type=positive_int, default=3)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--arch", default="maskrcnn_resnet18_fpn")
    parser.add_argument("--weights", default="none", help="the first model's start (none: offline)")
    parser.add_argument(
        "--standin",
        type=Path,
        help="an officescore checkpoint trained on other scenes: its class layers are dropped and the rest "
        "starts the first model, as COCO weights would (they cannot be downloaded here); overrides --weights",
    )
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--batch-size", type=positive_int, default=4)
    parser.add_argument(
        "--conf",
        type=float,
        default=None,
        help="fix the suggestion threshold (default: each model's own, as `label backend --train`)",
    )
    parser.add_argument("--seed", type=int, default=11, help="the scenes' seed")
    parser.add_argument(
        "--unlabelled",
        default="",
        help="comma-separated classes the project does not label: they stay in the photos, as the many "
        "objects of a real room that no class names (and that COCO's detector knows)",
    )
    parser.add_argument(
        "--masks",
        default="",
        help="the project's mask conventions, e.g. plant=leaves,desk=top (officescore.sample's "
        "MASK_CONVENTIONS): a start trained on whole objects (as COCO's potted plants and tables are) "
        "outlines them its own way",
    )
    parser.add_argument("--no-wait", action="store_true", help="do not wait for a running job between tasks")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-assist"))
    parser.add_argument(
        "--pool",
        type=Path,
        nargs="+",
        metavar="ASSIST_JSON",
        help="run nothing: pool the assist.json of earlier runs (other --seed, same settings) window "
        "by window and print that table",
    )
    parser.add_argument(
        "--replay",
        type=Path,
        nargs="+",
        metavar="OUT",
        help="run nothing: replay earlier runs (their --out folders) under other suggestion-threshold "
        "rules (bench/replay.py) and print suggested, kept, deleted and drawn objects per rule",
    )
    parser.add_argument(
        "--same-photos",
        type=Path,
        nargs="+",
        metavar="OUT",
        help="run nothing: score the model answering after each job of earlier runs (their --out "
        "folders) on the same --tasks new scenes, at its own threshold, its suggestions ranked by class "
        "score and by the backend's class x mask score (bench/replay.py)",
    )
    args = parser.parse_args()
    if args.same_photos:
        from replay import replay_table, same_photos, same_photos_rules, same_photos_table

        for by_mask in (False, True):
            runs = [same_photos(out, args.tasks, by_mask) for out in args.same_photos]
            ranked = "class score x mask score²" if by_mask else "class score"
            print(f"\n{len(runs)} run(s), {args.tasks} new scenes each, ranked by {ranked}")
            print(same_photos_table(runs))
            print(f"\nEvery job's model under each threshold rule:\n{replay_table(same_photos_rules(runs))}")
        return
    if args.replay:
        from replay import BAGGED, RATCHET, replay, replay_table, window_table

        totals, by_window = replay(args.replay)
        print(f"{len(args.replay)} run(s) replayed\n{replay_table(totals)}")
        print(
            f"\nPer window with a model, pooled over the runs:\n{window_table(by_window, [BAGGED, RATCHET])}"
        )
        return
    if args.pool:
        runs = [json.loads(path.read_text()) for path in args.pool]
        if any("static" not in run for run in runs):
            parser.error("--pool: every run needs its static backend's windows")
        if len({len(run["retraining"]["windows"]) for run in runs}) > 1:
            parser.error(
                "--pool: the runs have different numbers of windows (pool the same --tasks, --every)"
            )
        print(f"{len(runs)} run(s) pooled\n{pooled_table(runs)}")
        return
    classes, masks = scene_options(parser, args)
    if args.standin is not None and not args.standin.is_file():  # before Label Studio starts
        parser.error(f"--standin {args.standin}: no such checkpoint (bench/standin.py trains one)")

    from officescore.sample import write_sample

    args.out.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="assist-", dir=args.out))
    server, url, key = start_label_studio(base / "labelstudio")
    os.environ["LABEL_STUDIO_API_KEY"] = key
    try:
        write_sample(base / "scenes", n_images=args.tasks, seed=args.seed, size=args.size, masks=masks)
        client = LabelStudio.connect(url, key)
        results: dict[str, Any] = {}
        if args.standin is not None:
            args.weights = str(without_class_layers(args.standin, base / "standin.pth"))
        # ---------------------------------------------------------------- retraining backend
        pushed = push_images(client, "assist retraining", [base / "scenes" / "images"], classes=classes)
        messages: list[str] = []
        settings = TrainSettings(
            url=url,
            project="assist retraining",
            folder=base / "backend",
            runs=base / "runs" / "train",
            every=args.every,
            epochs=args.epochs,
            minutes=args.minutes,
            weights=args.weights,
            arch=args.arch,
            img_size=args.size,
            batch_size=args.batch_size,
            lr=args.lr,
            model_kwargs=dict(FAST_MODEL),
            device="cpu",
            amp=True,
        )
        trainer = Trainer(
            settings, key, pushed.project_id, log=lambda m: (messages.append(m), print(m, flush=True))
        )
        backend = ml.Backend(settings.runs, client, device="cpu", conf=args.conf, trainer=trainer)
        server_a = ml.make_server(backend, "127.0.0.1", 0)
        ml.start(server_a)
        client.connect_backend(pushed.project_id, ml.url_of(server_a))
        labeller = Labeller(client, pushed.project_id, base / "scenes", classes)
        started = time.monotonic()
        for task in labeller.order:
            labeller.label(task)
            time.sleep(0.2)  # the webhook
            if not args.no_wait:
                trainer.wait_idle(3600)
                backend.current()  # a switched model starts loading beside the old one ...
                backend.wait_for_load(600)  # ... and answers the next task
        trainer.wait_idle(3600)
        order = [t["id"] for t in labeller.order]
        results["retraining"] = {
            "versions": trainer.versions(),
            "failures": trainer.state["failures"],
            "windows": windows(client, pushed.project_id, order, args.every),
            "seconds": time.monotonic() - started,
        }
        from officescore.label.feedback import live_metrics

        live_metrics(trainer, client)  # learning_curve.png in the backend's folder
        first = next((v for v in trainer.versions() if v.get("accepted")), None)
        trainer.close()
        server_a.shutdown()
        server_a.server_close()
        # ---------------------------------------------------------------- static backend
        if first is not None:
            checkpoint = (settings.folder / first["checkpoint"]).resolve()
            pushed_b = push_images(client, "assist static", [base / "scenes" / "images"], classes=classes)
            # The first model as the retraining backend used it: at its own threshold (or --conf).
            own = (first.get("suggest") or {}).get("conf")
            static_conf = args.conf if args.conf is not None else own if own is not None else DEFAULT_CONF
            by_mask = args.conf is None and bool((first.get("suggest") or {}).get("by_mask"))
            static = ml.Backend(checkpoint, client, device="cpu", conf=static_conf, by_mask=by_mask)
            server_b = ml.make_server(static, "127.0.0.1", 0)
            ml.start(server_b)
            client.connect_backend(pushed_b.project_id, ml.url_of(server_b))
            labeller_b = Labeller(client, pushed_b.project_id, base / "scenes", classes)
            for n, task in enumerate(labeller_b.order):
                if n < args.every:  # like the retraining backend, no model for the first labels
                    client.sdk.annotations.create(id=task["id"], result=[], was_cancelled=True)
                    continue
                labeller_b.label(task)
            order_b = [t["id"] for t in labeller_b.order]
            results["static"] = {
                "version": first["model_version"],
                "conf": static_conf,
                "windows": windows(client, pushed_b.project_id, order_b, args.every),
            }
            server_b.shutdown()
            server_b.server_close()
        results["args"] = {k: str(v) for k, v in vars(args).items()}
        results["machine"] = {"cpu": cpu_name(), "cores": os.cpu_count(), "python": platform.python_version()}
        (args.out / "assist.json").write_text(json.dumps(results, indent=1, default=str))
        shutil.copy(settings.folder / "learning_curve.png", args.out / "learning_curve.png")
        print(table(results))
    finally:
        _stop(server)


def scene_options(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> tuple[list[str], dict[str, str]]:
    """The project's classes (--unlabelled left out) and mask conventions (--masks), checked."""
    from officescore.errors import UserError
    from officescore.sample import check_mask_conventions

    unlabelled = {name.strip() for name in args.unlabelled.split(",") if name.strip()}
    if unknown := unlabelled - set(DEFAULT_CLASSES):
        parser.error(f"--unlabelled: not a class of the scenes: {', '.join(sorted(unknown))}")
    items = [item.strip() for item in args.masks.split(",") if item.strip()]
    if any("=" not in item for item in items):
        parser.error(f"--masks {args.masks}: give class=convention pairs, e.g. plant=leaves,desk=top")
    masks = dict(item.split("=", 1) for item in items)
    try:
        check_mask_conventions(masks)
    except UserError as exc:
        parser.error(f"--masks: {exc}")
    return [name for name in DEFAULT_CLASSES if name not in unlabelled], masks


def without_class_layers(checkpoint: Path, out: Path) -> Path:
    """The checkpoint's weights as a plain state dict minus the class-specific layers (which a new
    class list starts fresh, as with COCO weights)."""
    import torch

    from officescore.model import HEAD_PREFIXES

    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["model"]
    torch.save({k: v for k, v in state.items() if not k.startswith(HEAD_PREFIXES)}, out)
    return out


def _f(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(results: dict[str, Any]) -> str:
    lines = [
        "| version | trained on | val photos | val mask mAP | val box mAP | suggests >= | job s | used |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for v in results["retraining"]["versions"]:
        cells = [
            v["model_version"],
            v.get("trained_photos"),
            v.get("val_photos"),
            _f(v.get("segm_map")),
            _f(v.get("bbox_map")),
            _f((v.get("suggest") or {}).get("conf"), 2),
            _f(v.get("job_seconds"), 0),
            "yes" if v.get("accepted") else "no",
        ]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    lines += [
        "",
        "| tasks | retraining: versions | suggested | kept share | kept IoU | drawn by hand "
        "| from suggestions | static: suggested | kept share | kept IoU | drawn by hand | from suggestions |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    static = (results.get("static") or {}).get("windows") or []
    for n, w in enumerate(results["retraining"]["windows"]):
        s = static[n] if n < len(static) else {}
        cells = [w["tasks"], ", ".join(w["versions"]) or "-"]
        for side in (w, s):
            cells += [
                side.get("predicted", "-"),
                _f(side.get("kept_share"), 2),
                _f(side.get("mean_kept_iou"), 2),
                side.get("added", "-"),
                _f(side.get("from_suggestions"), 2),
            ]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def pooled(runs: list[dict[str, Any]], side: str) -> list[dict[str, Any]]:
    """Sums per window over `runs` for one backend ("retraining" or "static")."""
    out = []
    for n, first in enumerate(runs[0][side]["windows"]):
        windows = [run[side]["windows"][n] for run in runs]
        predicted = sum(w["predicted"] for w in windows)
        # kept is not stored per window, only its share: predicted * share gives it back exactly
        kept = sum(round(w["predicted"] * (w["kept_share"] or 0.0)) for w in windows)
        added = sum(w["added"] for w in windows)
        out.append(
            {
                "tasks": first["tasks"],
                "predicted": predicted,
                "kept_share": kept / predicted if predicted else None,
                "deleted": predicted - kept,
                "added": added,
                "from_suggestions": kept / (kept + added) if kept + added else None,
            }
        )
    return out


def pooled_table(runs: list[dict[str, Any]]) -> str:
    retraining, static = pooled(runs, "retraining"), pooled(runs, "static")
    lines = [
        "| tasks | retraining: suggested | kept share | deleted | drawn by hand | from suggestions "
        "| static: suggested | kept share | deleted | drawn by hand | from suggestions |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r, s in zip(retraining, static, strict=True):
        cells = [r["tasks"]]
        for side in (r, s):
            cells += [side["predicted"], _f(side["kept_share"], 2), side["deleted"], side["added"]]
            cells.append(_f(side["from_suggestions"], 2))
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
