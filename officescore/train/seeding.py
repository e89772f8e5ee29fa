"""Reproducible randomness: per-epoch seeds, RNG states in checkpoints, the data order and
per-item augmentation seeds that make `--resume` bitwise exact."""

from __future__ import annotations

import io
import math
import random
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from officescore.files import sha256_bytes


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    return (seed * 1_000_003 + epoch * 1_009 + rank) % 2**63


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch RNG states as tensors and plain values (weights_only loadable)."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": [py_version, torch.tensor(py_state, dtype=torch.int64), py_gauss],
        "numpy": [np_name, torch.from_numpy(np_keys.astype(np.int64)), np_pos, np_has_gauss, np_gauss],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, py_state, gauss = state["python"]
    random.setstate((version, tuple(int(x) for x in py_state.tolist()), gauss))
    name, keys, pos, has_gauss, np_gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, np_gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def worker_init(worker_id: int) -> None:
    # torch already seeds each worker from the loader's generator; NumPy and Python follow it.
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


class SeededItems(Dataset):
    """A dataset whose item `i` is drawn with torch, NumPy and Python RNGs seeded by (seed, i).

    Augmentation then depends on neither the worker that loads an item nor on what was loaded
    before it (the reason --workers N used to break exact resume: a resumed epoch restarts each
    worker's random stream). The RNG states are restored afterwards, so with --workers 0 data
    loading does not shift the main process's stream either.
    """

    def __init__(self, dataset: Any, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        saved = torch.get_rng_state(), random.getstate(), np.random.get_state()
        item_seed = (self.seed * 1_000_003 + index) % 2**63
        torch.default_generator.manual_seed(item_seed)  # CPU only: CUDA streams stay untouched
        random.seed(item_seed)
        np.random.seed(item_seed % 2**32)
        try:
            return self.dataset[index]
        finally:
            torch.set_rng_state(saved[0])
            random.setstate(saved[1])
            np.random.set_state(saved[2])


class EpochSampler(Sampler[int]):
    """This rank's indices for one epoch: a permutation seeded by (seed, epoch), strided by rank.

    Padded like DistributedSampler so every rank runs the same number of steps; `start` skips the
    samples a rank already trained on before an interruption.
    """

    def __init__(self, pool: Sequence[int], seed: int, epoch: int, rank: int, world: int, start: int = 0):
        generator = torch.Generator().manual_seed(epoch_seed(seed, epoch))
        order = [pool[i] for i in torch.randperm(len(pool), generator=generator).tolist()]
        per_rank = math.ceil(len(order) / world)
        missing = per_rank * world - len(order)  # repeated from the start, around again if need be
        order += [order[i % len(order)] for i in range(missing)]  # (fewer photos than ranks: 1 on 3)
        self.indices = order[rank::world][start:]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def weights_digest(model: torch.nn.Module) -> str:
    """sha256 over every tensor of the state dict: equal digests = bitwise-equal weights."""
    buffer = io.BytesIO()
    for key, value in sorted(model.state_dict().items()):
        buffer.write(key.encode())
        buffer.write(value.detach().cpu().contiguous().numpy().tobytes())
    return sha256_bytes(buffer.getvalue())
