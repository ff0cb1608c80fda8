"""A clip's face windows as the frame models take them: the clip's frames once, at model size
(uint8), and each window's frame indices and mask. Training, evaluation and ``predict`` all build
them with :func:`clip_faces` (crops) or :func:`frame_windows` (per-frame vectors)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from emoflow.media.grid import window_frame_index
from emoflow.storage.row_spool import row_blocks


def preprocess_faces(faces: Any, size: int, gray: bool = True) -> torch.Tensor:
    """``(K, S, S, 3)`` uint8 crops (an array, or spooled rows read a block at a time) ->
    ``(K, C, size, size)`` uint8.

    Grayscale (C = 1, ITU-R 601 luma) by default; resized with area averaging (PIL's box
    filter). Integer image operations throughout: no float copies of whole clips, which made
    the process's memory grow with every clip read (glibc kept the freed float buffers).
    """
    channels = 1 if gray else 3
    out = np.empty((len(faces), size, size, channels), dtype=np.uint8)
    for lo, block in row_blocks(faces):
        for i, frame in enumerate(block, start=lo):
            image = Image.fromarray(np.ascontiguousarray(frame))
            if gray:
                image = image.convert("L")
            if image.size != (size, size):
                image = image.resize((size, size), Image.Resampling.BOX)
            out[i] = np.asarray(image).reshape(size, size, channels)
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


@dataclass
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
        preprocess_faces(rec.faces, size, gray),
        np.asarray(rec.mask, dtype=bool),
        rec.window_frame0,
        frames,
    )


def face_windows(rec: Any, frames: int, size: int, gray: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """All windows of :func:`clip_faces`: ``x (W, K, C, size, size)`` uint8, ``mask (W, K)``."""
    return clip_faces(rec, frames, size, gray).windows()
