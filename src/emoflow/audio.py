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


@dataclass
class Windows:
    """Audio cut into equal windows."""

    segments: np.ndarray  # (W, window_samples) float32
    start_s: np.ndarray  # (W,)
    padded: bool  # the clip was shorter than one window and was zero-padded


def cut_windows(
    samples: np.ndarray, sample_rate: int, window_s: float, hop_s: float, last_window: str
) -> Windows:
    """Cut ``samples`` into windows of ``window_s`` every ``hop_s``.

    The last partial window is zero-padded (``last_window="pad"``) or dropped (``"drop"``);
    a clip shorter than one window always gives one zero-padded window, flagged ``padded``.
    """
    win = int(round(window_s * sample_rate))
    hop = int(round(hop_s * sample_rate))
    n = len(samples)
    if n <= win:
        seg = np.zeros((1, win), dtype=np.float32)
        seg[0, :n] = samples
        return Windows(seg, np.zeros(1), padded=n < win)
    starts = list(range(0, n - win + 1, hop))
    tail = starts[-1] + hop
    if last_window == "pad" and starts[-1] + win < n and tail < n:
        starts.append(tail)
    segments = np.zeros((len(starts), win), dtype=np.float32)
    for i, s in enumerate(starts):
        chunk = samples[s : s + win]
        segments[i, : len(chunk)] = chunk
    return Windows(segments, np.asarray(starts, dtype=np.float64) / sample_rate, padded=False)


def logmel_mfcc(segments: np.ndarray, spec: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Log-mel ``(W, n_mels, T)`` and MFCC ``(W, n_mfcc, T)`` of each window, in spec's dtype."""
    mel = librosa.feature.melspectrogram(
        y=segments,
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
    # ref=1.0 (absolute dB) so windows of one clip stay comparable.
    logmel = librosa.power_to_db(mel, ref=1.0, top_db=spec["top_db"])
    mfcc = librosa.feature.mfcc(S=logmel, n_mfcc=spec["n_mfcc"], dct_type=2, norm="ortho")
    dtype = np.dtype(spec["dtype"])
    return logmel.astype(dtype), mfcc.astype(dtype)
