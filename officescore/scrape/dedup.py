"""Duplicate detection: exact by sha256, near-duplicate by perceptual hash (imagehash.phash).

The default Hamming threshold (10) comes from bench/near_duplicates.py: resized, re-encoded,
brightened or blurred copies of an image are 0-4 bits from the original, 2 % crops <= 8, 5 % crops
4-16 (median 10), while the closest of 55 unrelated pairs (photos and look-alike synthetic office
scenes) was 20 bits apart (median 32). 10 catches every re-encoded copy and most light crops and
leaves a 2x margin to the nearest unrelated image.
"""

from __future__ import annotations

import numpy as np

DEFAULT_NEAR_DUP_THRESHOLD = 10


def phash_int(hex_hash: str) -> int:
    return int(hex_hash, 16)


class DedupIndex:
    """The kept images' hashes; `check` says whether a new image is a copy of one of them."""

    def __init__(self, threshold: int = DEFAULT_NEAR_DUP_THRESHOLD) -> None:
        if threshold < 0:
            raise ValueError("near-duplicate threshold must be >= 0")
        self.threshold = threshold
        self._by_sha: dict[str, int] = {}
        self._ids: list[int] = []
        self._buffer = np.zeros(64, dtype=np.uint64)  # grows by doubling

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, row_id: int, sha256: str, phash: str | None) -> None:
        self._by_sha.setdefault(sha256, row_id)
        if phash:
            if len(self._ids) == len(self._buffer):
                self._buffer = np.concatenate([self._buffer, np.zeros_like(self._buffer)])
            self._buffer[len(self._ids)] = np.uint64(phash_int(phash))
            self._ids.append(row_id)

    def exact(self, sha256: str) -> int | None:
        return self._by_sha.get(sha256)

    def nearest(self, phash: str) -> tuple[int, int] | None:
        """(row id, Hamming distance) of the closest kept image, or None when the index is empty."""
        if not self._ids:
            return None
        xor = np.bitwise_xor(self._buffer[: len(self._ids)], np.uint64(phash_int(phash)))
        distances = np.unpackbits(xor.view(np.uint8).reshape(-1, 8), axis=1).sum(axis=1)
        best = int(np.argmin(distances))
        return self._ids[best], int(distances[best])

    def near(self, phash: str) -> tuple[int, int] | None:
        """(row id, distance) of a kept image within the threshold, else None."""
        found = self.nearest(phash)
        return found if found is not None and found[1] <= self.threshold else None
