"""Torch datasets over feature shards, normalisation statistics and deterministic loaders.

- ``AudioWindows``: one item per 3 s log-mel window (training); the window carries its clip's
  targets. ``AudioClips``: one item per clip holding all its windows (evaluation: a clip's
  score is pooled over its windows by the caller); batch it with :func:`collate_clips`.
- ``FaceWindows``: one item per face window (training): the window's K frames resized to
  ``size`` x ``size`` (grayscale by default, see :func:`preprocess_faces`), normalised, and the
  face mask. ``FaceClips``: one item per clip holding its windows (evaluation), like
  ``AudioClips``. Both build windows with :func:`face_windows`, as ``predict`` does.
- Normalisation statistics (per-mel mean/std for audio, per-channel for faces) are fitted on
  the training clips of a fold only, in one streaming pass (running sums in float64; one clip
  in memory at a time).
- Targets of an item: ``y`` (class index, -1 unknown) and ``va`` (valence, arousal; NaN unknown).
- Order: :func:`make_loader` seeds a ``torch.Generator`` from (seed, epoch), so the shuffle of an
  epoch does not depend on what ran before it (a resumed run sees the same order), and
  :func:`worker_init_fn` seeds numpy and ``random`` in each worker.

Decoded clips are kept in a per-dataset memory cache up to ``cache_bytes`` (first come, never
evicted), which makes later epochs cheap without ever loading more than the budget.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from emoflow.errors import EmoflowError
from emoflow.grid import TimeGrid, window_frame_index

Targets = dict[str, tuple[int, float, float]]
DEFAULT_CACHE_BYTES = 512 * 2**20
_GRAY = (0.299, 0.587, 0.114)


def clip_targets(manifest: pd.DataFrame, classes: Sequence[str]) -> Targets:
    """Map clip_id -> (class index or -1, valence or NaN, arousal or NaN)."""
    index = {c: i for i, c in enumerate(classes)}
    out: Targets = {}
    for row in manifest.itertuples(index=False):
        label = getattr(row, "label", None)
        y = index.get(str(label), -1) if isinstance(label, str) else -1
        v = getattr(row, "valence", np.nan)
        a = getattr(row, "arousal", np.nan)
        out[str(row.clip_id)] = (
            y,
            float(v) if v is not None and pd.notna(v) else float("nan"),
            float(a) if a is not None and pd.notna(a) else float("nan"),
        )
    return out


class _Cache:
    """First-come memory cache of arrays with a byte budget."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.used = 0
        self.items: dict[str, Any] = {}

    def get(self, key: str) -> Any:
        return self.items.get(key)

    def put(self, key: str, value: Any, nbytes: int) -> None:
        if self.used + nbytes <= self.budget:
            self.items[key] = value
            self.used += nbytes


# --------------------------------------------------------------------------- audio


def fit_audio_norm(shards: Any, clip_ids: Iterable[str]) -> dict[str, torch.Tensor]:
    """Per-mel mean and std of the log-mel windows of ``clip_ids`` (streaming, float64)."""
    total = sq = None
    count = 0
    for clip_id in clip_ids:
        logmel = np.asarray(shards.get(clip_id).logmel, dtype=np.float64)
        if logmel.size == 0:
            continue
        s, s2 = logmel.sum(axis=(0, 2)), (logmel**2).sum(axis=(0, 2))
        total = s if total is None else total + s
        sq = s2 if sq is None else sq + s2
        count += logmel.shape[0] * logmel.shape[2]
    if total is None or sq is None:
        raise EmoflowError("no training audio window to fit the normalisation on")
    mean = total / count
    std = np.sqrt(np.maximum(sq / count - mean**2, 0.0))
    return {
        "mean": torch.tensor(mean, dtype=torch.float32),
        "std": torch.tensor(np.maximum(std, 1e-5), dtype=torch.float32),
    }


def normalise_audio(logmel: np.ndarray, norm: dict[str, torch.Tensor]) -> torch.Tensor:
    """``(W, n_mels, T)`` log-mel -> ``(W, 1, n_mels, T)`` float32, standardised per mel."""
    x = torch.as_tensor(np.asarray(logmel, dtype=np.float32))
    x = (x - norm["mean"][None, :, None]) / norm["std"][None, :, None]
    return x.unsqueeze(1)


class AudioWindows(Dataset):
    """One item per log-mel window of the given clips: ``(x (1, M, T), y, va (2,))``."""

    def __init__(
        self,
        shards: Any,
        clip_ids: Sequence[str],
        targets: Targets,
        norm: dict[str, torch.Tensor],
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        self.shards = shards
        self.norm = norm
        self.targets = targets
        self.cache = _Cache(cache_bytes)
        self.index: list[tuple[str, int]] = []
        for clip_id in clip_ids:
            logmel = self._logmel(clip_id)
            self.index += [(clip_id, w) for w in range(len(logmel))]
        self.labels = np.array([targets[c][0] for c, _ in self.index], dtype=np.int64)

    def _logmel(self, clip_id: str) -> np.ndarray:
        cached = self.cache.get(clip_id)
        if cached is None:
            cached = np.asarray(self.shards.get(clip_id).logmel, dtype=np.float32)
            self.cache.put(clip_id, cached, cached.nbytes)
        return cached

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        clip_id, w = self.index[i]
        x = normalise_audio(self._logmel(clip_id)[w : w + 1], self.norm)[0]
        y, v, a = self.targets[clip_id]
        return x, torch.tensor(y), torch.tensor([v, a], dtype=torch.float32)


class AudioClips(Dataset):
    """One item per clip with all its windows: ``(x (W, 1, M, T), y, va (2,))``."""

    def __init__(
        self,
        shards: Any,
        clip_ids: Sequence[str],
        targets: Targets,
        norm: dict[str, torch.Tensor],
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        self.shards = shards
        self.clip_ids = list(clip_ids)
        self.targets = targets
        self.norm = norm
        self.cache = _Cache(cache_bytes)

    def __len__(self) -> int:
        return len(self.clip_ids)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        clip_id = self.clip_ids[i]
        x = self.cache.get(clip_id)
        if x is None:
            x = normalise_audio(self.shards.get(clip_id).logmel, self.norm)
            self.cache.put(clip_id, x, x.numel() * 4)
        y, v, a = self.targets[clip_id]
        return x, torch.tensor(y), torch.tensor([v, a], dtype=torch.float32)


def collate_clips(batch: list[tuple[torch.Tensor, ...]]) -> tuple[torch.Tensor, ...]:
    """Concatenate the windows of several clips: ``(*inputs, counts, y, va)`` from items
    ``(*inputs, y, va)`` whose inputs have one row per window."""
    columns = list(zip(*batch, strict=True))
    inputs, ys, vas = columns[:-2], columns[-2], columns[-1]
    counts = torch.tensor([len(x) for x in inputs[0]], dtype=torch.int64)
    return (*(torch.cat(c) for c in inputs), counts, torch.stack(ys), torch.stack(vas))


# --------------------------------------------------------------------------- faces


def preprocess_faces(faces: np.ndarray, size: int, gray: bool = True) -> torch.Tensor:
    """``(K, S, S, 3)`` uint8 crops -> ``(K, C, size, size)`` float32 in [0, 1].

    Grayscale (C = 1, ITU-R 601 weights) by default; resized with area averaging.
    """
    x = torch.as_tensor(np.ascontiguousarray(faces)).permute(0, 3, 1, 2).float() / 255.0
    if gray:
        w = torch.tensor(_GRAY, dtype=torch.float32).view(1, 3, 1, 1)
        x = (x * w).sum(dim=1, keepdim=True)
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="area")
    return x.contiguous()


def fit_face_norm(
    shards: Any, clip_ids: Iterable[str], size: int, gray: bool = True
) -> dict[str, torch.Tensor]:
    """Per-channel mean and std over the face frames (mask True) of ``clip_ids``."""
    total = sq = None
    count = 0
    for clip_id in clip_ids:
        rec = shards.get(clip_id)
        mask = np.asarray(rec.mask, dtype=bool)
        if not mask.any():
            continue
        x = preprocess_faces(np.asarray(rec.faces)[mask], size, gray).double()
        s, s2 = x.sum(dim=(0, 2, 3)), (x**2).sum(dim=(0, 2, 3))
        total = s if total is None else total + s
        sq = s2 if sq is None else sq + s2
        count += x.shape[0] * x.shape[2] * x.shape[3]
    if total is None or sq is None:
        raise EmoflowError("no training face frame to fit the normalisation on")
    mean = total / count
    std = (sq / count - mean**2).clamp(min=0).sqrt().clamp(min=1e-5)
    return {"mean": mean.float(), "std": std.float()}


def normalise_faces(x: torch.Tensor, norm: dict[str, torch.Tensor]) -> torch.Tensor:
    """Standardise ``(K, C, s, s)`` frames per channel."""
    return (x - norm["mean"].view(1, -1, 1, 1)) / norm["std"].view(1, -1, 1, 1)


def face_windows(
    rec: Any, frames: int, size: int, gray: bool, norm: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """A clip's face windows as the visual model takes them: ``x (W, K, C, size, size)``
    normalised and ``mask (W, K)``; window *i* holds the ``K`` frames from its first one
    (frames past the clip's end are masked). Training, evaluation and predict all use this."""
    faces = np.asarray(rec.faces)
    x = normalise_faces(preprocess_faces(faces, size, gray), norm)
    idx, exists = window_frame_index(np.asarray(rec.window_frame0), frames, len(faces))
    mask = np.asarray(rec.mask, dtype=bool)[idx] & exists
    return x[torch.as_tensor(idx)], torch.as_tensor(mask)


class FaceWindows(Dataset):
    """One item per face window with at least one face: ``(x (K, C, s, s), mask (K,), y, va)``
    (training; a window without any face teaches nothing)."""

    def __init__(
        self,
        shards: Any,
        clip_ids: Sequence[str],
        targets: Targets,
        norm: dict[str, torch.Tensor],
        size: int,
        gray: bool = True,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        self.shards = shards
        self.targets = targets
        self.norm = norm
        self.size = size
        self.gray = gray
        self.frames = int(TimeGrid.of(shards.spec).frames)
        self.cache = _Cache(cache_bytes)
        self.index: list[tuple[str, int]] = []
        for clip_id in clip_ids:
            _, mask = self._windows(clip_id)
            self.index += [(clip_id, int(w)) for w in np.flatnonzero(mask.any(dim=1).numpy())]
        self.labels = np.array([targets[c][0] for c, _ in self.index], dtype=np.int64)

    def _windows(self, clip_id: str) -> tuple[torch.Tensor, torch.Tensor]:
        item = self.cache.get(clip_id)
        if item is None:
            rec = self.shards.get(clip_id)
            item = face_windows(rec, self.frames, self.size, self.gray, self.norm)
            self.cache.put(clip_id, item, item[0].numel() * 4)
        return item

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        clip_id, w = self.index[i]
        x, mask = self._windows(clip_id)
        y, v, a = self.targets[clip_id]
        return x[w], mask[w], torch.tensor(y), torch.tensor([v, a], dtype=torch.float32)


class FaceClips(FaceWindows):
    """One item per clip with its windows that have a face: ``(x (W, K, C, s, s), mask (W, K),
    y, va)`` (evaluation: the caller pools the window outputs; batch with
    :func:`collate_clips`). Clips without such a window are left out of ``clip_ids``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.clip_ids = list(dict.fromkeys(c for c, _ in self.index))
        self.labels = np.array([self.targets[c][0] for c in self.clip_ids], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.clip_ids)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        clip_id = self.clip_ids[i]
        x, mask = self._windows(clip_id)
        keep = mask.any(dim=1)
        y, v, a = self.targets[clip_id]
        return x[keep], mask[keep], torch.tensor(y), torch.tensor([v, a], dtype=torch.float32)


# --------------------------------------------------------------------------- loaders


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
