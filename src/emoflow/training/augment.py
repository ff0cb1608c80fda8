"""Augmentation of training items only (config ``augment``; everything off by default).

- ``noise``: a training clip's decoded track (:func:`emoflow.features.featurize.audio_track`,
  kept in memory after its first decode) gets a recording from ``augment.noise.dir`` added at
  an SNR drawn uniformly from ``snr_db`` (signal and noise power measured over the clip's
  whole track; the noise is looped from a random offset), with probability ``p`` per clip and
  epoch; the window is then cut and its log-mel recomputed with the audio stage's own function
  (:func:`emoflow.features.featurize.window_logmel`), so the features are exactly what the
  audio stage would store for the noisy clip. Noise files are decoded once, by the project's
  ffmpeg decode path, to ``audio.sample_rate`` mono.
- ``specaugment``: with probability ``p`` per window, ``time_masks`` masks of 0..``time_width``
  frames and ``freq_masks`` masks of 0..``freq_width`` mel bands, filled with the window's mean
  (of its raw log-mel, before the masks: items are raw dB, so zero would be full scale).
- ``faces``: a face window's frames (uint8, model size) flipped left-right with probability
  ``flip_p`` and shifted by up to ``crop_jitter_px`` pixels each way (a crop of the
  edge-replicated frame), the same for every frame of the window.

Only the training dataset of a run is wrapped (:class:`AugmentedWindows`); validation, test,
the ``train`` part's predictions (what feature-level fusion is fitted on), inner folds'
held-out predictions and ``predict`` read the unwrapped clip datasets. Every draw comes from
:func:`item_rng` of (seed, epoch, clip id, window, purpose): an item's augmentation does not
depend on worker count, thread count or the order items are read in. noise and specaugment
apply to the ``audio`` branch, faces to ``visual``; other branches are never augmented.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from emoflow.errors import ConfigError
from emoflow.training.augment_config import (  # noqa: F401 - re-exported
    DEFAULTS,
    SPEC_FILL,
    augment_record,
    branch_augment,
    noise_files,
    settings,
)

# --------------------------------------------------------------------------- seeding


def item_rng(seed: int, epoch: int, clip_id: str, window: int, purpose: str) -> np.random.Generator:
    """The generator of one draw: a function of (seed, epoch, clip id, window, purpose) only."""
    digest = hashlib.sha256(f"{purpose}\0{clip_id}".encode()).digest()
    words = [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4)]
    s = int(seed) % 2**64
    key = [s & 0xFFFFFFFF, s >> 32, int(epoch), int(window) + 1, *words]
    return np.random.default_rng(np.random.SeedSequence(key))


# --------------------------------------------------------------------------- noise


def load_noise(
    folder: str | Path, sample_rate: int, media: dict[str, Any] | None
) -> list[np.ndarray]:
    """Every noise file decoded with the project's ffmpeg path (mono, ``sample_rate``)."""
    from emoflow.media.ffmpeg import MEDIA_DEFAULTS, decode_audio, probe

    m = {**MEDIA_DEFAULTS, **(media or {})}
    out = []
    for path in noise_files(folder):
        info = probe(path, m["ffprobe"], m["timeout_s"])
        samples = decode_audio(path, sample_rate, m["ffmpeg"], m["timeout_s"], info)
        if not np.any(samples):
            raise ConfigError(f"noise file {path.name} is digital silence")
        out.append(samples)
    return out


@dataclass
class NoiseDraw:
    """One clip's noise in one epoch: which file, from which offset, at which SNR."""

    file: int
    offset: int
    snr_db: float


def draw_noise(cfg: dict[str, Any], bank: list[np.ndarray], seed: int, epoch: int,
               clip_id: str) -> NoiseDraw | None:  # fmt: skip
    """The clip's noise draw of this epoch, or None (probability 1 - p)."""
    rng = item_rng(seed, epoch, clip_id, -1, "noise")
    if rng.random() >= cfg["p"]:
        return None
    file = int(rng.integers(len(bank)))
    offset = int(rng.integers(len(bank[file])))
    low, high = cfg["snr_db"]
    return NoiseDraw(file, offset, float(rng.uniform(low, high)))


def mix_noise(samples: np.ndarray, noise: np.ndarray, offset: int, snr_db: float) -> np.ndarray:
    """``samples`` plus ``noise`` (looped from ``offset`` to the track's length) scaled so that
    the power ratio over the whole track is ``snr_db``."""
    n = np.take(noise, (offset + np.arange(len(samples))) % len(noise)).astype(np.float64)
    x = samples.astype(np.float64)
    p_signal, p_noise = float(np.mean(x * x)), float(np.mean(n * n))
    if p_signal <= 0 or p_noise <= 0:
        return samples
    gain = np.sqrt(p_signal / (p_noise * 10.0 ** (snr_db / 10.0)))
    return (x + gain * n).astype(np.float32)


# --------------------------------------------------------------------------- masks and faces


def spec_augment(x: torch.Tensor, cfg: dict[str, Any], rng: np.random.Generator) -> torch.Tensor:
    """Masks on a raw log-mel window ``(1, M, T)`` (a new tensor; filled with its mean)."""
    out = x.clone()
    fill = float(x.double().mean())
    bands, frames = x.shape[-2], x.shape[-1]
    for _ in range(cfg["time_masks"]):
        w = int(rng.integers(0, min(cfg["time_width"], frames) + 1))
        t0 = int(rng.integers(0, frames - w + 1))
        out[..., t0 : t0 + w] = fill
    for _ in range(cfg["freq_masks"]):
        w = int(rng.integers(0, min(cfg["freq_width"], bands) + 1))
        f0 = int(rng.integers(0, bands - w + 1))
        out[..., f0 : f0 + w, :] = fill
    return out


def face_augment(x: torch.Tensor, cfg: dict[str, Any], rng: np.random.Generator) -> torch.Tensor:
    """A window's frames ``(K, C, s, s)`` uint8 flipped and shifted alike (edges replicated)."""
    flip = bool(rng.random() < cfg["flip_p"])
    j = int(cfg["crop_jitter_px"])
    dy, dx = (int(v) for v in rng.integers(-j, j + 1, size=2)) if j else (0, 0)
    frames = x.numpy()
    if flip:
        frames = frames[..., ::-1]
    if dx or dy:
        size_y, size_x = frames.shape[-2:]
        padded = np.pad(frames, ((0, 0), (0, 0), (j, j), (j, j)), mode="edge")
        frames = padded[..., j + dy : j + dy + size_y, j + dx : j + dx + size_x]
    return torch.from_numpy(np.ascontiguousarray(frames))


# --------------------------------------------------------------------------- the dataset


class AugmentedWindows(Dataset):
    """A training dataset (``AudioWindows`` or ``FaceWindows``) whose items are augmented per
    (seed, epoch, clip, window); :meth:`set_epoch` before each epoch's loader."""

    def __init__(self, base: Any, aug: dict[str, Any], seed: int, spec: dict[str, Any],
                 paths: dict[str, str] | None = None, media: dict[str, Any] | None = None,
                 cache_bytes: int = 512 * 2**20) -> None:  # fmt: skip
        self.base = base
        self.aug = aug
        self.seed = int(seed)
        self.spec = spec
        self.paths = paths or {}
        self.media = media
        self.epoch = 0
        self.index = base.index
        self.labels = base.labels
        self.tracks: dict[str, np.ndarray] = {}
        self.track_bytes, self.cache_bytes = 0, cache_bytes
        self.bank: list[np.ndarray] = []
        if "noise" in aug:
            self.bank = load_noise(aug["noise"]["dir"], int(spec["sample_rate"]), media)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.base)

    def _track(self, clip_id: str) -> np.ndarray:
        from emoflow.features.featurize import audio_track

        track = self.tracks.get(clip_id)
        if track is None:
            track = audio_track(self.paths[clip_id], self.spec, self.media)
            if self.track_bytes + track.nbytes <= self.cache_bytes:
                self.tracks[clip_id] = track
                self.track_bytes += track.nbytes
        return track

    def noisy_window(self, clip_id: str, w: int) -> torch.Tensor | None:
        """Window ``w``'s log-mel ``(1, M, T)`` of the clip with this epoch's noise, or None
        when the clip gets none this epoch."""
        from emoflow.features.featurize import track_windows, window_logmel

        draw = draw_noise(self.aug["noise"], self.bank, self.seed, self.epoch, clip_id)
        if draw is None:
            return None
        noisy = mix_noise(self._track(clip_id), self.bank[draw.file], draw.offset, draw.snr_db)
        segments = track_windows(noisy, self.spec).segments[w : w + 1]
        logmel, _ = window_logmel(segments, self.spec)
        return torch.from_numpy(logmel.astype(np.float32))

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        item = list(self.base[i])
        clip_id, w = self.index[i]
        if "noise" in self.aug:
            noisy = self.noisy_window(clip_id, w)
            if noisy is not None:
                item[0] = noisy
        if "specaugment" in self.aug:
            rng = item_rng(self.seed, self.epoch, clip_id, w, "specaugment")
            if rng.random() < self.aug["specaugment"]["p"]:
                item[0] = spec_augment(item[0], self.aug["specaugment"], rng)
        if "faces" in self.aug:
            rng = item_rng(self.seed, self.epoch, clip_id, w, "faces")
            item[0] = face_augment(item[0], self.aug["faces"], rng)
        return tuple(item)


def augmented(config: dict[str, Any], branch: str, train: Any, seed: int, spec: dict[str, Any],
              manifest: Any = None) -> Any:  # fmt: skip
    """``train`` wrapped with the branch's augmentation, or ``train`` itself when none is on."""
    aug = branch_augment(config, branch)
    if aug is None:
        return train
    paths = None
    if "noise" in aug:
        if manifest is None:
            raise ConfigError("noise augmentation needs the clip table (the clips' media paths)")
        paths = dict(zip(manifest["clip_id"].astype(str), manifest["path"].astype(str),
                         strict=True))  # fmt: skip
    return AugmentedWindows(train, aug, seed, spec, paths, config.get("media"))
