"""Audio features: fixed-length windows of 16 kHz mono audio -> log-mel and MFCC (librosa).

Pure functions on arrays. Every DSP parameter comes from the config's ``audio`` section and is
recorded in the shard spec (:func:`audio_spec`): mel scale (Slaney or HTK), filter norm,
fmin/fmax, centring, power, dB range, dtype and the librosa version.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import librosa
import numpy as np

from emoflow.errors import ClipError
from emoflow.media.grid import window_starts


def audio_spec(audio_cfg: dict[str, Any], ffmpeg_version: str) -> dict[str, Any]:
    """The full, explicit parameter set of the audio stage (stored in shards, hashed for cache)."""
    spec = dict(sorted(audio_cfg.items()))
    spec["fmax"] = (
        audio_cfg["fmax"] if audio_cfg["fmax"] is not None else audio_cfg["sample_rate"] / 2
    )
    spec["mel_scale"] = "htk" if audio_cfg["htk"] else "slaney"
    spec["window"] = "hann"
    spec["pad_mode"] = "constant"
    spec["mfcc_from"] = "log-mel (librosa.feature.mfcc(S=...), dct type 2, ortho)"
    spec["librosa_version"] = librosa.__version__
    spec["ffmpeg_version"] = ffmpeg_version
    spec["decoder"] = "ffmpeg -ac 1 -ar <sample_rate> -f f32le"
    return spec


def rms_dbfs(samples: np.ndarray) -> float:
    """RMS level of ``samples`` (float, full scale 1.0) in dBFS; -inf for all zeros."""
    power = float(np.mean(np.square(samples, dtype=np.float64))) if len(samples) else 0.0
    return 10.0 * np.log10(power) if power > 0 else float("-inf")


def check_silence(samples: np.ndarray, threshold_dbfs: float | None) -> None:
    """Raise ``ClipError("silent_audio")`` when the track's RMS level is below the threshold."""
    if threshold_dbfs is None:
        return
    level = rms_dbfs(samples)
    if level < threshold_dbfs:
        shown = "-inf" if np.isinf(level) else f"{level:.1f}"
        raise ClipError(
            "silent_audio",
            f"the audio track is digital silence (RMS {shown} dBFS, below audio.silence_dbfs "
            f"{threshold_dbfs:g}): treated as a clip without audio",
        )


@dataclass
class Windows:
    """Audio cut into equal windows."""

    segments: np.ndarray  # (W, window_samples) float32
    start_s: np.ndarray  # (W,)
    padded: bool  # the clip was shorter than one window and was zero-padded


def cut_windows(
    samples: np.ndarray, sample_rate: int, window_s: float, hop_s: float, last_window: str
) -> Windows:
    """Cut ``samples`` into the grid's windows (:func:`emoflow.media.grid.window_starts`).

    The last partial window is zero-padded (``last_window="pad"``) or dropped (``"drop"``);
    a clip shorter than one window always gives one zero-padded window, flagged ``padded``.
    """
    win = int(round(window_s * sample_rate))
    hop = int(round(hop_s * sample_rate))
    starts = window_starts(len(samples), win, hop, last_window)
    segments = np.zeros((len(starts), win), dtype=np.float32)
    for i, s in enumerate(starts):
        chunk = samples[int(s) : int(s) + win]
        segments[i, : len(chunk)] = chunk
    return Windows(segments, starts / sample_rate, padded=len(samples) < win)


def logmel_mfcc(segments: np.ndarray, spec: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Log-mel ``(W, n_mels, T)`` and MFCC ``(W, n_mfcc, T)`` of each window, in spec's dtype.

    Each window is computed on its own (its own ``top_db`` floor), so a window's features
    never depend on which other windows are passed with it.
    """
    if len(segments) == 0:
        raise ValueError("no window to compute")
    parts = [_logmel_mfcc_window(seg, spec) for seg in segments]
    return np.stack([p[0] for p in parts]), np.stack([p[1] for p in parts])


def _logmel_mfcc_window(segment: np.ndarray, spec: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    mel = librosa.feature.melspectrogram(
        y=segment,
        sr=spec["sample_rate"],
        n_fft=spec["n_fft"],
        hop_length=spec["hop_length"],
        window=spec["window"],
        center=spec["center"],
        pad_mode=spec["pad_mode"],
        power=spec["power"],
        n_mels=spec["n_mels"],
        fmin=spec["fmin"],
        fmax=spec["fmax"],
        htk=spec["htk"],
        norm=spec["norm"],
    )
    # ref=1.0 (absolute dB) so windows of one clip stay comparable; the top_db floor is
    # this window's own.
    logmel = librosa.power_to_db(mel, ref=1.0, top_db=spec["top_db"])
    mfcc = librosa.feature.mfcc(S=logmel, n_mfcc=spec["n_mfcc"], dct_type=2, norm="ortho")
    dtype = np.dtype(spec["dtype"])
    return logmel.astype(dtype), mfcc.astype(dtype)
