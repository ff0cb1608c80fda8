"""Torch datasets over feature shards.

- ``AudioWindows``: one item per 3 s log-mel window (training); the window carries its clip's
  targets. ``AudioClips``: one item per clip holding all its windows (evaluation: a clip's
  score is pooled over its windows by the caller); batch it with :func:`collate_clips`.
- ``FaceWindows``: one item per face window (training): the window's K frames resized to ``size`` x
  ``size`` (grayscale by default, see :func:`emoflow.training.windows.preprocess_faces`) as
  **uint8**, and the face mask. ``FaceClips``: one item per clip holding its windows (evaluation),
  like ``AudioClips``. Both build windows with :func:`emoflow.training.windows.clip_faces`, as
  ``predict`` does.
- Items are **not normalised**: log-mel windows stay raw float32 and faces uint8 until the
  model's device, where :mod:`emoflow.training.normalisation` standardises them (the same
  functions ``predict`` calls), so a GPU gets 9× fewer face bytes than float RGB and the CPU
  workers only gather.
- Targets of an item: ``y`` (class index, -1 unknown) and ``va`` (valence, arousal; NaN unknown),
  from :class:`emoflow.training.targets.Targets`. A time-continuous clip's windows have targets
  of their own: training keeps the windows that have one, evaluation predicts each window as a
  unit (``clip_ids`` then holds ``<clip>@w<window>``).

Decoded clips are kept in a per-dataset memory cache up to ``cache_bytes`` (first come, never
evicted; faces as one uint8 frame sequence per clip, windows gathered per item), which makes
later epochs cheap without ever loading more than the budget.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from emoflow.media.grid import TimeGrid
from emoflow.training.frame_inputs import READ_FIELDS, clip_frame_vectors
from emoflow.training.targets import Targets
from emoflow.training.windows import ClipFaces, clip_faces

DEFAULT_CACHE_BYTES = 512 * 2**20


def _target(targets: Targets, clip_id: str, w: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    y, v, a = targets.of(clip_id, w)
    return torch.tensor(y), torch.tensor([v, a], dtype=torch.float32)


def trained_windows(targets: Targets, clip_id: str, windows: Iterable[int]) -> list[int]:
    """The windows of a clip that training learns from: all of them for a clip-level target;
    for a time-continuous clip, those with a known target (enough annotated frames)."""
    if not targets.windowed(clip_id):
        return list(windows)
    return [w for w in windows if targets.usable(clip_id, "both", w)]


def eval_items(
    targets: Targets, clip_ids: Iterable[str], windows_of: Any
) -> list[tuple[str, int | None]]:
    """Evaluation items: ``(clip, None)`` for a clip scored as a whole, ``(clip, w)`` for each
    window ``windows_of(clip)`` of a time-continuous clip (predicted as its own unit)."""
    items: list[tuple[str, int | None]] = []
    for clip_id in clip_ids:
        if targets.windowed(clip_id):
            items += [(clip_id, int(w)) for w in windows_of(clip_id)]
        else:
            items.append((clip_id, None))
    return items


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
            n = len(shards.window_starts(clip_id))
            self.index += [(clip_id, w) for w in trained_windows(targets, clip_id, range(n))]
        self.labels = np.array([targets.of(c, w)[0] for c, w in self.index], dtype=np.int64)

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
        return (x, *_target(self.targets, clip_id, w))


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
        self.targets = targets
        self.items = eval_items(targets, clip_ids, lambda c: range(len(shards.window_starts(c))))
        self.clip_ids = [targets.unit(c, w) if w is not None else c for c, w in self.items]
        self.cache = _Cache(cache_bytes)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        clip_id, w = self.items[i]
        x = self.cache.get(clip_id)
        if x is None:
            rows = np.asarray(getattr(self.shards.get(clip_id), self.field), np.float32)
            x = torch.as_tensor(rows)[:, None] if rows.ndim == 3 else torch.as_tensor(rows)
            self.cache.put(clip_id, x, x.numel() * 4)
        return (x if w is None else x[w : w + 1], *_target(self.targets, clip_id, w))


def collate_clips(batch: list[tuple[torch.Tensor, ...]]) -> tuple[torch.Tensor, ...]:
    """Concatenate the windows of several clips: ``(*inputs, counts, y, va)`` from items
    ``(*inputs, y, va)`` whose inputs have one row per window."""
    columns = list(zip(*batch, strict=True))
    inputs, ys, vas = columns[:-2], columns[-2], columns[-1]
    counts = torch.tensor([len(x) for x in inputs[0]], dtype=torch.int64)
    return (*(torch.cat(c) for c in inputs), counts, torch.stack(ys), torch.stack(vas))


class FaceWindows(Dataset):
    """One item per face window with at least one face: ``(x (K, C, s, s) uint8, mask (K,), y,
    va)`` (training; a window without any face teaches nothing). ``inputs="au"`` or
    ``"face_cnn"``: ``x`` is the window's frame vectors ``(K, D)`` float32
    (:func:`emoflow.training.frame_inputs.clip_frame_vectors`; face_cnn: the stored ``columns``)."""

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
        self.with_face: dict[str, list[int]] = {}
        for clip_id in clip_ids:
            has = self._clip(clip_id).mask.any(dim=1).numpy()
            self.with_face[clip_id] = [int(w) for w in np.flatnonzero(has)]
            self.index += [(clip_id, w) for w in self.trained(clip_id)]
        self.labels = np.array([targets.of(c, w)[0] for c, w in self.index], dtype=np.int64)

    def trained(self, clip_id: str) -> list[int]:
        """The windows of a clip that training learns from (see :func:`trained_windows`)."""
        return trained_windows(self.targets, clip_id, self.with_face[clip_id])

    def _clip(self, clip_id: str) -> ClipFaces:
        item = self.cache.get(clip_id)
        if item is None:
            if self.inputs != "faces":
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
        return (x, mask, *_target(self.targets, clip_id, w))


class FaceClips(FaceWindows):
    """One item per clip with its windows that have a face: ``(x (W, K, C, s, s) uint8,
    mask (W, K), y, va)`` (evaluation: the caller pools the window outputs; batch with
    :func:`collate_clips`). Clips without such a window are left out of ``clip_ids``."""

    def trained(self, clip_id: str) -> list[int]:
        return self.with_face[clip_id]  # every window with a face is predicted

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        clips = list(dict.fromkeys(c for c, _ in self.index))
        self.items = eval_items(self.targets, clips, lambda c: self.with_face[c])
        self.clip_ids = [self.targets.unit(c, w) if w is not None else c for c, w in self.items]
        self.labels = np.array([self.targets.of(c, w)[0] for c, w in self.items], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        clip_id, w = self.items[i]
        faces = self._clip(clip_id)
        x, mask = faces.windows(faces.mask.any(dim=1) if w is None else slice(w, w + 1))
        return (x, mask, *_target(self.targets, clip_id, w))
