"""Torch datasets over feature shards, normalisation statistics and deterministic loaders.

- ``AudioWindows``: one item per 3 s log-mel window (training); the window carries its clip's
  targets. ``AudioClips``: one item per clip holding all its windows (evaluation: a clip's
  score is pooled over its windows by the caller); batch it with :func:`collate_clips`.
- ``FaceWindows``: one item per face window (training): the window's K frames resized to
  ``size`` x ``size`` (grayscale by default, see :func:`preprocess_faces`) as **uint8**, and the
  face mask. ``FaceClips``: one item per clip holding its windows (evaluation), like
  ``AudioClips``. Both build windows with :func:`face_windows`, as ``predict`` does.
- Items are **not normalised**: log-mel windows stay raw float32 and faces uint8 until the
  model's device, where :func:`normalise_audio` / :func:`face_model_input` standardise them
  (the same functions ``predict`` calls), so a GPU gets 9× fewer face bytes than float RGB and
  the CPU workers only gather.
- Normalisation statistics (per-mel mean/std for audio, per-channel for faces) are fitted on
  the training clips of a fold only, in one streaming pass (running sums in float64; one clip
  in memory at a time).
- Targets of an item: ``y`` (class index, -1 unknown) and ``va`` (valence, arousal; NaN unknown).
- Order: :func:`make_loader` seeds a ``torch.Generator`` from (seed, epoch), so the shuffle of an
  epoch does not depend on what ran before it (a resumed run sees the same order), and
  :func:`worker_init_fn` seeds numpy and ``random`` in each worker.

Decoded clips are kept in a per-dataset memory cache up to ``cache_bytes`` (first come, never
evicted; faces as one uint8 frame sequence per clip, windows gathered per item), which makes
later epochs cheap without ever loading more than the budget.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from emoflow.errors import EmoflowError
from emoflow.grid import TimeGrid, window_frame_index

Targets = dict[str, tuple[int, float, float]]
DEFAULT_CACHE_BYTES = 512 * 2**20


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


def norm_from_sums(parts: Iterable[tuple[np.ndarray, np.ndarray, int]], what: str) -> dict:
    """Mean and std (floored at 1e-5) from per-clip ``(sum, sum of squares, count)`` of
    float64 values, accumulated in order (one clip in memory at a time)."""
    total = sq = None
    count = 0
    for s, s2, n in parts:
        total = s if total is None else total + s
        sq = s2 if sq is None else sq + s2
        count += n
    if total is None or sq is None:
        raise EmoflowError(f"no training {what} to fit the normalisation on")
    mean = total / count
    std = np.sqrt(np.maximum(sq / count - mean**2, 0.0))
    return {
        "mean": torch.tensor(mean, dtype=torch.float32),
        "std": torch.tensor(np.maximum(std, 1e-5), dtype=torch.float32),
    }


def fit_audio_norm(
    shards: Any, clip_ids: Iterable[str], field: str = "logmel"
) -> dict[str, torch.Tensor]:
    """Per-row mean and std (per mel of the log-mel windows, per functional of the eGeMAPS
    windows: axis 1 of ``field``) over the windows of ``clip_ids`` (streaming, float64)."""

    def parts() -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
        for clip_id in clip_ids:
            x = np.asarray(getattr(shards.get(clip_id), field), dtype=np.float64)
            if x.size:
                axes = tuple(i for i in range(x.ndim) if i != 1)
                yield x.sum(axis=axes), (x**2).sum(axis=axes), x.size // x.shape[1]

    return norm_from_sums(parts(), f"{field} window")


def normalise_audio(logmel: np.ndarray | torch.Tensor, norm: dict[str, Any]) -> torch.Tensor:
    """``(..., n_mels, T)`` log-mel -> float32 standardised per mel, on the input's device
    (training calls it on the model's device, ``predict`` on the CPU)."""
    x = torch.as_tensor(logmel, dtype=torch.float32)
    mean = norm["mean"].to(x.device)[:, None]
    std = norm["std"].to(x.device)[:, None]
    return (x - mean) / std


def normalise_vectors(vectors: np.ndarray | torch.Tensor, norm: dict[str, Any]) -> torch.Tensor:
    """``(..., D)`` window vectors (eGeMAPS functionals) -> float32 standardised per feature,
    on the input's device (training and ``predict`` both call it)."""
    x = torch.as_tensor(vectors, dtype=torch.float32)
    return (x - norm["mean"].to(x.device)) / norm["std"].to(x.device)


class AudioWindows(Dataset):
    """One item per window of the given clips: ``(x, y, va (2,))`` with ``x`` the raw log-mel
    ``(1, M, T)`` or, for ``field="vectors"``, the raw window vector ``(D,)``."""

    def __init__(
        self,
        shards: Any,
        clip_ids: Sequence[str],
        targets: Targets,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        field: str = "logmel",
    ) -> None:
        self.shards = shards
        self.field = field
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
            cached = np.asarray(getattr(self.shards.get(clip_id), self.field), np.float32)
            self.cache.put(clip_id, cached, cached.nbytes)
        return cached

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        clip_id, w = self.index[i]
        rows = self._logmel(clip_id)
        # raw: normalised on the device; a log-mel window keeps a channel axis
        x = torch.from_numpy(rows[w : w + 1] if rows.ndim == 3 else rows[w])
        y, v, a = self.targets[clip_id]
        return x, torch.tensor(y), torch.tensor([v, a], dtype=torch.float32)


class AudioClips(Dataset):
    """One item per clip with all its windows: ``(x, y, va (2,))`` with ``x`` the raw log-mel
    ``(W, 1, M, T)`` or, for ``field="vectors"``, the raw window vectors ``(W, D)``."""

    def __init__(
        self,
        shards: Any,
        clip_ids: Sequence[str],
        targets: Targets,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        field: str = "logmel",
    ) -> None:
        self.shards = shards
        self.field = field
        self.clip_ids = list(clip_ids)
        self.targets = targets
        self.cache = _Cache(cache_bytes)

    def __len__(self) -> int:
        return len(self.clip_ids)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        clip_id = self.clip_ids[i]
        x = self.cache.get(clip_id)
        if x is None:
            rows = np.asarray(getattr(self.shards.get(clip_id), self.field), np.float32)
            x = torch.as_tensor(rows)[:, None] if rows.ndim == 3 else torch.as_tensor(rows)
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
    """``(K, S, S, 3)`` uint8 crops -> ``(K, C, size, size)`` uint8.

    Grayscale (C = 1, ITU-R 601 luma) by default; resized with area averaging (PIL's box
    filter). Integer image operations throughout: no float copies of whole clips, which made
    the process's memory grow with every clip read (glibc kept the freed float buffers).
    """
    frames = np.asarray(faces)
    channels = 1 if gray else 3
    out = np.empty((len(frames), size, size, channels), dtype=np.uint8)
    for i, frame in enumerate(frames):
        image = Image.fromarray(np.ascontiguousarray(frame))
        if gray:
            image = image.convert("L")
        if image.size != (size, size):
            image = image.resize((size, size), Image.Resampling.BOX)
        out[i] = np.asarray(image).reshape(size, size, channels)
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def face_model_input(x: torch.Tensor, norm: dict[str, Any]) -> torch.Tensor:
    """uint8 frames ``(..., C, s, s)`` -> float32 in [0, 1] standardised per channel, on the
    input's device (training: the model's device; ``predict``: the CPU)."""
    c = x.shape[-3]
    mean = norm["mean"].to(x.device).view(c, 1, 1)
    std = norm["std"].to(x.device).view(c, 1, 1)
    return (x.float() / 255.0 - mean) / std


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
        x = preprocess_faces(np.asarray(rec.faces)[mask], size, gray).double() / 255.0
        s, s2 = x.sum(dim=(0, 2, 3)), (x**2).sum(dim=(0, 2, 3))
        total = s if total is None else total + s
        sq = s2 if sq is None else sq + s2
        count += x.shape[0] * x.shape[2] * x.shape[3]
    if total is None or sq is None:
        raise EmoflowError("no training face frame to fit the normalisation on")
    mean = total / count
    std = (sq / count - mean**2).clamp(min=0).sqrt().clamp(min=1e-5)
    return {"mean": mean.float(), "std": std.float()}


@dataclass
class ClipFaces:
    """One clip's frames at model size (uint8, each frame once) and its windows' frame indices:
    window *i* is ``frames[index[i]]`` with ``mask[i]``."""

    frames: torch.Tensor  # (F, C, s, s) uint8
    index: torch.Tensor  # (W, K) int64
    mask: torch.Tensor  # (W, K) bool

    def windows(self, rows: Any = slice(None)) -> tuple[torch.Tensor, torch.Tensor]:
        """``x (w, K, C, s, s)`` uint8 and ``mask (w, K)`` of the windows ``rows``."""
        return self.frames[self.index[rows]], self.mask[rows]

    @property
    def nbytes(self) -> int:
        frames = self.frames.numel() * self.frames.element_size()
        return frames + self.index.numel() * 8 + self.mask.numel()


def frame_windows(per_frame: torch.Tensor, mask: np.ndarray, frame0: Any, k: int) -> ClipFaces:
    """A clip's per-frame inputs ``(F, ...)`` and face mask ``(F,)`` cut into its windows:
    window *i* holds the ``k`` frames from its first one ``frame0[i]`` (frames past the clip's
    end are masked)."""
    idx, exists = window_frame_index(np.asarray(frame0), k, len(per_frame))
    return ClipFaces(per_frame, torch.as_tensor(idx), torch.as_tensor(mask[idx] & exists))


def clip_faces(rec: Any, frames: int, size: int, gray: bool) -> ClipFaces:
    """A clip's face windows as the visual model takes them (before :func:`face_model_input`).
    Training, evaluation and predict all use this."""
    return frame_windows(
        preprocess_faces(np.asarray(rec.faces), size, gray),
        np.asarray(rec.mask, dtype=bool),
        rec.window_frame0,
        frames,
    )


def face_windows(rec: Any, frames: int, size: int, gray: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """All windows of :func:`clip_faces`: ``x (W, K, C, size, size)`` uint8, ``mask (W, K)``."""
    return clip_faces(rec, frames, size, gray).windows()


class FaceWindows(Dataset):
    """One item per face window with at least one face: ``(x (K, C, s, s) uint8, mask (K,), y,
    va)`` (training; a window without any face teaches nothing). ``inputs="au"`` or
    ``"face_cnn"``: ``x`` is the window's frame vectors ``(K, D)`` float32
    (:func:`emoflow.frame_inputs.clip_frame_vectors`; face_cnn: the stored ``columns``)."""

    def __init__(
        self,
        shards: Any,
        clip_ids: Sequence[str],
        targets: Targets,
        size: int,
        gray: bool = True,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        inputs: str = "faces",
        columns: tuple[int, int] | None = None,
    ) -> None:
        self.shards = shards
        self.inputs = inputs
        self.columns = columns
        self.targets = targets
        self.size = size
        self.gray = gray
        self.frames = int(TimeGrid.of(shards.spec).frames)
        self.cache = _Cache(cache_bytes)
        self.index: list[tuple[str, int]] = []
        for clip_id in clip_ids:
            has = self._clip(clip_id).mask.any(dim=1).numpy()
            self.index += [(clip_id, int(w)) for w in np.flatnonzero(has)]
        self.labels = np.array([targets[c][0] for c, _ in self.index], dtype=np.int64)

    def _clip(self, clip_id: str) -> ClipFaces:
        item = self.cache.get(clip_id)
        if item is None:
            if self.inputs != "faces":
                from emoflow.frame_inputs import READ_FIELDS, clip_frame_vectors

                rec = self.shards.get(clip_id, READ_FIELDS[self.inputs])
                item = clip_frame_vectors(self.inputs, rec, self.frames, self.columns)
            else:
                item = clip_faces(self.shards.get(clip_id), self.frames, self.size, self.gray)
            self.cache.put(clip_id, item, item.nbytes)
        return item

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        clip_id, w = self.index[i]
        x, mask = self._clip(clip_id).windows(w)
        y, v, a = self.targets[clip_id]
        return x, mask, torch.tensor(y), torch.tensor([v, a], dtype=torch.float32)


class FaceClips(FaceWindows):
    """One item per clip with its windows that have a face: ``(x (W, K, C, s, s) uint8,
    mask (W, K), y, va)`` (evaluation: the caller pools the window outputs; batch with
    :func:`collate_clips`). Clips without such a window are left out of ``clip_ids``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.clip_ids = list(dict.fromkeys(c for c, _ in self.index))
        self.labels = np.array([self.targets[c][0] for c in self.clip_ids], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.clip_ids)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        clip_id = self.clip_ids[i]
        faces = self._clip(clip_id)
        x, mask = faces.windows(faces.mask.any(dim=1))
        y, v, a = self.targets[clip_id]
        return x, mask, torch.tensor(y), torch.tensor([v, a], dtype=torch.float32)


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
