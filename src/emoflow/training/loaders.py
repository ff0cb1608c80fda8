"""Deterministic loaders: :func:`make_loader` seeds a ``torch.Generator`` from (seed, epoch), so
the shuffle of an epoch does not depend on what ran before it (a resumed run sees the same
order), and :func:`worker_init_fn` seeds numpy and ``random`` in each DataLoader worker."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch's shuffle and of its torch RNG (independent of earlier epochs)."""
    return (int(seed) * 1_000_003 + int(epoch) * 7919 + 17) % (2**63 - 1)


def worker_init_fn(worker_id: int) -> None:
    """Seed numpy and ``random`` in a DataLoader worker from its torch seed."""
    s = torch.initial_seed() % 2**32
    np.random.seed(s)
    random.seed(s)


def make_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    seed: int,
    epoch: int = 0,
    num_workers: int = 0,
    collate_fn: Any = None,
    pin_memory: bool = False,
) -> DataLoader:
    """A DataLoader whose order depends only on (seed, epoch)."""
    generator = torch.Generator()
    generator.manual_seed(epoch_seed(seed, epoch))
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        num_workers=num_workers,
        worker_init_fn=worker_init_fn,
        collate_fn=collate_fn,
        pin_memory=pin_memory,
        drop_last=False,
    )
