"""Duplicate grouping and the train/val split used by ingest.

Images that are byte-identical (same sha256), look the same (perceptual-hash Hamming distance at
or below a threshold) or are named as made from one photo (Roboflow's augmented copies) form one
group; a group always lands in one split so val never leaks into train.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

import numpy as np

# Roboflow names each image it exports `<source name>_<ext>.rf.<md5>.<ext>`; the augmented copies of
# one upload (flipped, cropped, rotated: beyond what a perceptual hash finds) share the source part.
ROBOFLOW_NAME = re.compile(r"^(?P<source>.+)\.rf\.[0-9a-f]{32}\.\w+$")


def augmented_from(file_name: str) -> str | None:
    """The photo a Roboflow export's image was made from (its source name), or None."""
    match = ROBOFLOW_NAME.match(file_name.replace("\\", "/").rsplit("/", 1)[-1])
    return match.group("source") if match else None


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def hamming_pairs(hashes: Sequence[int], threshold: int, chunk: int = 512) -> list[tuple[int, int]]:
    """Pairs (i < j) of 64-bit hashes at Hamming distance <= threshold (vectorised, chunked)."""
    values = np.array([h & 0xFFFFFFFFFFFFFFFF for h in hashes], dtype=np.uint64)
    pairs: list[tuple[int, int]] = []
    for start in range(0, len(values), chunk):
        block = values[start : start + chunk]
        distance = np.bitwise_count(block[:, None] ^ values[None, :])
        rows, cols = np.nonzero(distance <= threshold)
        pairs += [(start + r, c) for r, c in zip(rows.tolist(), cols.tolist(), strict=True) if start + r < c]
    return pairs


def duplicate_groups(
    sha256s: Sequence[str], phashes: Sequence[int], threshold: int, sources: Sequence[str | None] = ()
) -> list[int]:
    """A group number per image (the index of its group's first image). `sources`: per image, the
    photo it was made from where its name says so (`augmented_from`), else None."""
    groups = _UnionFind(len(sha256s))
    for keys in (sha256s, sources):
        first: dict[str, int] = {}
        for i, key in enumerate(keys):
            if key is not None:
                groups.union(first.setdefault(key, i), i)
    for a, b in hamming_pairs(phashes, threshold):
        groups.union(a, b)
    return [groups.find(i) for i in range(len(sha256s))]


def split_groups(
    groups: Sequence[int],
    image_classes: Sequence[set[str]],
    val_fraction: float,
    seed: int,
    previous: Sequence[str | None] = (),
) -> list[str]:
    """'train' or 'val' per image. Deterministic for a seed; duplicates stay together.

    `previous`: per image, the split an earlier ingest gave it (None: a new photo). Those keep it
    (a group with any val photo stays in val, so nothing leaks), so val stays the same photos as
    the data set grows and mAP stays comparable; only new groups are placed, as below.
    First, groups move to val until every class with >= 2 images is in val (greedy: most missing
    classes per group first), as long as train keeps an image of each class. Then shuffled groups fill val
    up to round(val_fraction * images) (at least one image when there are two or more), again
    without taking a class's last train image.
    """
    n = len(groups)
    if n == 0 or val_fraction <= 0:
        return ["train"] * n
    members: dict[int, list[int]] = {}
    for i, group in enumerate(groups):
        members.setdefault(group, []).append(i)
    order = sorted(members)
    random.Random(seed).shuffle(order)
    earlier = {group: {previous[i] for i in members[group]} if previous else {None} for group in order}
    placed = {group for group in order if earlier[group] - {None}}

    def classes_of(group: int) -> dict[str, int]:
        counts: dict[str, int] = {}
        for i in members[group]:
            for name in image_classes[i]:
                counts[name] = counts.get(name, 0) + 1
        return counts

    group_classes = {g: classes_of(g) for g in order}
    in_train: dict[str, int] = {}
    for classes in image_classes:
        for name in classes:
            in_train[name] = in_train.get(name, 0) + 1
    val: set[int] = set()
    val_images = 0

    def can_move(group: int) -> bool:
        return all(in_train[name] > count for name, count in group_classes[group].items())

    def move(group: int) -> None:
        nonlocal val_images
        val.add(group)
        val_images += len(members[group])
        for name, count in group_classes[group].items():
            in_train[name] -= count

    target = max(1, round(val_fraction * n)) if n >= 2 else 0
    for group in order:
        if "val" in earlier[group]:
            move(group)
    free = [group for group in order if group not in placed]
    # Cover classes greedily: the group adding the most missing classes, then the smallest, then
    # shuffled order. Few forced picks leave more of val to chance, so val stays representative.
    covered = {name for group in val for name in group_classes[group]}
    missing = {name for name, count in in_train.items() if count >= 2} - covered
    rank = {g: i for i, g in enumerate(order)}
    while missing:
        candidates = [g for g in free if g not in val and missing & group_classes[g].keys() and can_move(g)]
        if not candidates:
            break
        best = min(
            candidates, key=lambda g: (-len(missing & group_classes[g].keys()), len(members[g]), rank[g])
        )
        move(best)
        missing -= group_classes[best].keys()
    for group in free:
        if val_images >= target:
            break
        if group not in val and val_images + len(members[group]) <= target and can_move(group):
            move(group)
    return ["val" if groups[i] in val else "train" for i in range(n)]
