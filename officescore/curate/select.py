"""`officescore select`: which unlabelled photos to label next.

Uncertainty (class margin or entropy on the most object-like proposals, and mask entropy) picks
photos the model would learn from; greedy k-center on pooled backbone features keeps the budget
from going to twenty shots of one desk (each pick maximises uncertainty x distance to the nearest
photo already labelled or chosen); perceptual hashes keep out near-duplicates of labelled photos and
of each other. `strategy="random"` is the baseline the benchmark compares against.
"""

from __future__ import annotations

import csv
import io
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from officescore.curate.features import UNCERTAINTIES, ImageSignals, image_signals
from officescore.curate.labels import SplitLabels, check_classes, extra_classes_note, load_split
from officescore.curate.pool import NEAR_DUP_BITS, hamming, phash, pool_files
from officescore.errors import BadImageError, ConfigError
from officescore.files import atomic_write_bytes
from officescore.progress import SILENT, Reporter

STRATEGIES = ("uncertainty", "random")
UNCERTAINTY_FLOOR = 0.05  # a certain photo far from everything may still beat a close unsure one
MASK_SPREAD = 0.05  # bits: the least spread of the per-photo mask uncertainty sums that counts
DISTANCE_BLOCK = 1024  # pool photos per block of distances to the labelled ones (1024 x centres floats)


@dataclass
class Choice:
    rank: int
    path: Path
    score: float  # the pick's uncertainty x distance (random: 0)
    uncertainty: float  # combined, in [0, 1] (rank-normalised over the pool)
    class_uncertainty: float
    mask_uncertainty: float
    distance: float  # embedding distance to the nearest labelled or earlier-chosen photo
    detections: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "path": str(self.path),
            "score": round(self.score, 6),
            "uncertainty": round(self.uncertainty, 6),
            "class_uncertainty": round(self.class_uncertainty, 6),
            "mask_uncertainty": round(self.mask_uncertainty, 6),
            "distance": round(self.distance, 6),
            "detections": self.detections,
        }


@dataclass
class SelectRun:
    pool: int  # photos considered
    chosen: list[Choice]
    excluded_near_duplicates: list[str]  # pool photos too close to a labelled one
    unreadable: list[str]
    strategy: str
    model: str
    csv: Path | None = None
    images_txt: Path | None = None
    notes: list[str] = field(default_factory=list)
    tasks: Path | None = None  # --labelstudio: tasks with pre-annotations
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "strategy": self.strategy,
            "pool": self.pool,
            "chosen": [c.to_dict() for c in self.chosen],
            "excluded_near_duplicates": self.excluded_near_duplicates,
            "unreadable": self.unreadable,
            "csv": str(self.csv) if self.csv else None,
            "images_txt": str(self.images_txt) if self.images_txt else None,
            "labelstudio": str(self.tasks) if self.tasks else None,
            "notes": self.notes,
        }


def _rank01(values: np.ndarray) -> np.ndarray:
    """Ranks scaled to [0, 1] (ties share their mean rank): comparable across signals."""
    if len(values) <= 1:
        return np.ones(len(values))
    order = values.argsort(kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values))
    for v in np.unique(values):
        same = values == v
        ranks[same] = ranks[same].mean()
    return ranks / (len(values) - 1)


def combined_uncertainty(signals: list[ImageSignals]) -> np.ndarray:
    """Mean of the rank-normalised class and mask uncertainties (both sums over likely objects).
    A mask term that hardly varies over the pool (saturated masks: spread < MASK_SPREAD bits) is
    left out: ranked, it would weigh as much as the classes while saying nothing."""
    cls = np.array([s.class_uncertainty for s in signals], dtype=np.float64)
    msk = np.array([s.mask_uncertainty for s in signals], dtype=np.float64)
    if not len(signals):
        return np.zeros(0)
    if np.ptp(msk) < MASK_SPREAD:  # no mask head, the TorchScript fallback, or saturated masks
        return _rank01(cls)
    return (_rank01(cls) + _rank01(msk)) / 2.0


def nearest_distance(points: np.ndarray, centres: np.ndarray, block: int = DISTANCE_BLOCK) -> np.ndarray:
    """Per point, the Euclidean distance to its nearest centre, as sqrt(|a|^2 + |b|^2 - 2 a.b) in
    float64, `block` points at a time: the points x centres x dimensions differences would not fit
    in memory (2000 pool photos against 1600 labelled ones, 1280-d features: 16 GB)."""
    a, b = np.asarray(points, dtype=np.float64), np.asarray(centres, dtype=np.float64)
    b_norms = np.einsum("ij,ij->i", b, b)
    out = np.empty(len(a))
    for start in range(0, len(a), block):
        part = a[start : start + block]
        squared = np.einsum("ij,ij->i", part, part)[:, None] + b_norms[None, :] - 2.0 * (part @ b.T)
        out[start : start + block] = np.sqrt(np.maximum(squared.min(axis=1), 0.0))
    return out


def k_center_greedy(
    features: np.ndarray, uncertainty: np.ndarray, budget: int, centres: np.ndarray | None = None,
    blocked: np.ndarray | None = None, hashes: list[int | None] | None = None,
) -> list[tuple[int, float, float]]:  # fmt: skip
    """(index, score, distance) of up to `budget` picks, each maximising (floor + u) x distance to the
    nearest centre (labelled and already chosen photos); near-duplicates (by hash) of a pick are blocked."""
    n = len(features)
    blocked = np.zeros(n, dtype=bool) if blocked is None else blocked.copy()
    known = centres is not None and len(centres) > 0
    dist = nearest_distance(features, centres) if known else np.full(n, np.inf)  # type: ignore[arg-type]
    picks: list[tuple[int, float, float]] = []
    weight = UNCERTAINTY_FLOOR + uncertainty
    while len(picks) < budget and not blocked.all():
        finite = dist[np.isfinite(dist)]
        scale = float(finite.max()) if len(finite) and finite.max() > 0 else 1.0
        d_norm = np.where(np.isfinite(dist), dist / scale, 1.0)
        score = np.where(blocked, -np.inf, weight * d_norm)
        i = int(np.argmax(score))
        picks.append((i, float(score[i]), float(dist[i])))
        blocked[i] = True
        dist = np.minimum(dist, np.linalg.norm(features - features[i], axis=1))
        if hashes is not None and hashes[i] is not None:
            others = [k for k, h in enumerate(hashes) if h is not None and not blocked[k]]
            if others:
                near = hamming([hashes[i]], [hashes[k] for k in others])[0] <= NEAR_DUP_BITS
                blocked[[k for k, hit in zip(others, near, strict=True) if hit]] = True
    return picks


def _labelled_classes(
    model_classes: list[str], labels: SplitLabels, model: str
) -> tuple[list[str] | None, str]:
    """The labelled data set's classes when the model knows more (None when they are the model's),
    and the note that says so; refused when the model lacks one of them."""
    # select has no --folds: a model trained on the data set is the only advice
    advice = f"pass a model trained on it (officescore train --data {labels.dataset})"
    extra = check_classes(model_classes, labels.classes, model, advice)
    return (labels.classes, extra_classes_note(model, extra)) if extra else (None, "")


def select(
    pool: list[str | Path],
    model: str | Path,
    budget: int,
    labelled: Path | None = None,
    strategy: str = "uncertainty",
    uncertainty: str = "margin",
    out: Path | None = None,
    device: str = "auto",
    seed: int = 0,
    labelstudio: Path | None = None,
    reporter: Reporter = SILENT,
) -> SelectRun:
    """Rank the pool and keep the best `budget` photos; write `out` (CSV) and images.txt beside it."""
    started = time.perf_counter()
    if budget < 1:
        raise ConfigError(f"--budget {budget}: must be 1 or more (how many photos to label next)")
    if strategy not in STRATEGIES:
        raise ConfigError(f"--strategy {strategy!r}: use one of {', '.join(STRATEGIES)}")
    if uncertainty not in UNCERTAINTIES:
        raise ConfigError(f"--uncertainty {uncertainty!r}: use one of {', '.join(UNCERTAINTIES)}")
    if out is not None and Path(out).is_dir():
        raise ConfigError(f"--out {out}: a folder; give a CSV file name such as next.csv")
    if labelstudio is not None:
        if not model:
            raise ConfigError("--labelstudio: pre-annotations need --model (a .pt from train)")
        if Path(labelstudio).suffix.lower() != ".json":
            raise ConfigError(f"--labelstudio {labelstudio}: give a .json file name (e.g. next_tasks.json)")
    from officescore.scrape.manifest import deleted_note, empty_note

    files, deleted, empty = pool_files(pool)
    labels = load_split(labelled, "all") if labelled is not None else None  # read once: photos, classes
    labelled_files = [image.path for image in labels.images] if labels is not None else []
    predictor = None
    notes: list[str] = []
    classes: list[str] | None = None  # the labelled data set's, when the model knows more
    if strategy != "random" or labelstudio is not None:  # a model that does not fit fails before any work
        from officescore.infer import Predictor

        predictor = Predictor.load(model, device=device, conf=0.0)
        if labels is not None:
            classes, note = _labelled_classes(predictor.classes, labels, str(model))
            notes += [note] if note else []
    labelled_keys = {p.resolve() for p in labelled_files}
    files = [p for p in files if p.resolve() not in labelled_keys]  # already labelled: not a candidate
    hashes, labelled_hashes = _hash_photos(files, labelled_files, reporter)
    if files and all(h is None for h in hashes):  # an empty list is no answer: say so, write nothing
        raise BadImageError(
            f"none of the {len(files)} photo(s) in the pool could be read (the first: {files[0]})"
        )
    near = _near_labelled(hashes, labelled_hashes)
    excluded = [str(files[i]) for i in np.nonzero(near)[0]]
    unreadable = [str(files[i]) for i, h in enumerate(hashes) if h is None]
    usable = [i for i in range(len(files)) if hashes[i] is not None and not near[i]]
    notes[:0] = [deleted_note(deleted)] if deleted else []  # as label push and prelabel say
    notes[:0] = [empty_note(empty)] if empty else []
    more_unreadable: list[str] = []
    if strategy == "random":
        chosen = _random_choices(files, hashes, usable, budget, seed)
        source = str(model) if model else "-"
    else:
        chosen, more_unreadable, fallback = _uncertain_choices(
            predictor, [files[i] for i in usable], [hashes[i] for i in usable], labelled_files, budget,
            uncertainty, reporter, classes,
        )  # fmt: skip
        unreadable += more_unreadable
        if fallback:
            notes.append(
                f"{model}: a TorchScript export takes no hooks, so uncertainty comes from detection "
                "scores and diversity from thumbnails; pass the .pt checkpoint for the full signals"
            )
        source = str(model)
    if len(chosen) < budget:
        # usable photos neither chosen nor unreadable were blocked as near-copies of a pick
        copies = len(usable) - len(more_unreadable) - len(chosen)
        also = f": {copies} more are near-copies of photos chosen" if copies else ""
        notes.append(f"only {len(chosen)} photos left to choose from (budget {budget}){also}")
    run = SelectRun(len(files), chosen, excluded, unreadable, strategy, source, notes=notes)
    if out is not None:
        run.csv, run.images_txt = write_choices(Path(out), chosen)
    if labelstudio is not None:
        from officescore.curate.labelstudio import select_tasks

        paths = [c.path for c in chosen]  # select_tasks predicts at its own SUGGEST_CONF
        version = f"select-{Path(model).stem}"
        run.tasks, _, _ = select_tasks(Path(labelstudio), predictor, paths, version, classes)
    run.seconds = time.perf_counter() - started
    return run


def _hash_photos(
    files: list[Path], labelled_files: list[Path], reporter: Reporter
) -> tuple[list[int | None], list[int | None]]:
    """Perceptual hashes of the pool and of the labelled photos (None: unreadable)."""
    with reporter.stage("hashing photos", total=len(files) + len(labelled_files)) as stage:
        hashes = []
        for p in files:
            hashes.append(phash(p))
            stage.advance(1)
        labelled_hashes = []
        for p in labelled_files:
            labelled_hashes.append(phash(p))
            stage.advance(1)
    return hashes, labelled_hashes


def _near_labelled(hashes: list[int | None], labelled_hashes: list[int | None]) -> np.ndarray:
    """Per pool photo: a near-duplicate of a labelled one (within NEAR_DUP_BITS)."""
    near = np.zeros(len(hashes), dtype=bool)
    known = [h for h in labelled_hashes if h is not None]
    readable = [i for i, h in enumerate(hashes) if h is not None]
    if known and readable:
        near[readable] = hamming([hashes[i] for i in readable], known).min(axis=1) <= NEAR_DUP_BITS
    return near


def _random_choices(
    files: list[Path], hashes: list[int | None], usable: list[int], budget: int, seed: int
) -> list[Choice]:
    """The baseline: a seeded shuffle of the usable photos, no two near-duplicates."""
    order = list(usable)
    random.Random(seed).shuffle(order)
    chosen: list[int] = []
    for i in order:
        if len(chosen) == budget:
            break
        if chosen and hamming([hashes[i]], [hashes[k] for k in chosen]).min() <= NEAR_DUP_BITS:
            continue
        chosen.append(i)
    return [Choice(r + 1, files[i], 0.0, 0.0, 0.0, 0.0, 0.0, 0) for r, i in enumerate(chosen)]


def _uncertain_choices(
    predictor: Any, candidates: list[Path], hashes: list[int | None], labelled_files: list[Path],
    budget: int, uncertainty: str, reporter: Reporter, classes: list[str] | None = None,
) -> tuple[list[Choice], list[str], bool]:  # fmt: skip
    """k-center greedy weighted by uncertainty; also the photos the model could not read, and
    whether the signals came from the TorchScript fallback. `classes`: see `image_signals`."""
    if not candidates:  # all near-copies of labelled photos: embedding those would choose nothing
        return [], [], False
    signals = image_signals(predictor, candidates + labelled_files, uncertainty, reporter, classes)
    pool_signals, labelled_signals = signals[: len(candidates)], signals[len(candidates) :]
    ok = [k for k, s in enumerate(pool_signals) if s.feature is not None]
    unreadable = [str(s.path) for s in pool_signals if s.feature is None]
    feats = np.stack([pool_signals[k].feature for k in ok]) if ok else np.zeros((0, 1))
    centres = [s.feature for s in labelled_signals if s.feature is not None]
    u = combined_uncertainty([pool_signals[k] for k in ok])
    picks = k_center_greedy(
        feats, u, budget, np.stack(centres) if centres else None, hashes=[hashes[k] for k in ok]
    )
    chosen = []
    for rank, (j, score, dist) in enumerate(picks, start=1):
        s = pool_signals[ok[j]]
        d = dist if np.isfinite(dist) else 0.0
        chosen.append(
            Choice(rank, s.path, score, float(u[j]), s.class_uncertainty, s.mask_uncertainty, d, s.detections)
        )
    return chosen, unreadable, any(s.fallback for s in signals)


def write_choices(path: Path, chosen: list[Choice]) -> tuple[Path, Path]:
    """The CSV (one row per photo, best first) and images.txt (one path per line) beside it; paths
    relative to the folder that holds them (the project's rule for paths in files)."""
    path.parent.mkdir(parents=True, exist_ok=True)

    def rel(p: Path) -> str:
        return Path(os.path.relpath(Path(p).resolve(), path.parent.resolve())).as_posix()

    buffer = io.StringIO()
    columns = list(Choice.__dataclass_fields__)
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows({**c.to_dict(), "path": rel(c.path)} for c in chosen)
    atomic_write_bytes(path, buffer.getvalue().encode("utf-8"))
    listing = path.parent / "images.txt"
    atomic_write_bytes(listing, "".join(f"{rel(c.path)}\n" for c in chosen).encode("utf-8"))
    return path, listing
