"""Audio features: fixed-length windows of 16 kHz mono audio -> log-mel and MFCC (librosa).

Pure functions on arrays. Every DSP parameter comes from the config's ``audio`` section and is
recorded in the shard spec (:func:`audio_spec`): mel scale (Slaney or HTK), filter norm,
fmin/fmax, centring, power, dB range, dtype and the librosa version.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence
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


class PowerSum:
    """The sum of squares of a track fed in pieces of any size: float64 sums over blocks of
    :attr:`BLOCK` samples counted from the track's start, added in order, so the total is the
    same however the track arrives (and no float64 copy of the track is made)."""

    BLOCK = 1 << 14

    def __init__(self) -> None:
        self.total = 0.0
        self.n = 0
        self._part = np.empty(0, np.float32)  # the samples of the block not yet complete

    @staticmethod
    def _block(samples: np.ndarray) -> float:
        return float(np.sum(np.square(samples, dtype=np.float64)))

    def add(self, samples: np.ndarray) -> None:
        """Feed the next samples of the track."""
        self.n += len(samples)
        if len(self._part):
            need = self.BLOCK - len(self._part)
            self._part = np.concatenate([self._part, samples[:need]])
            samples = samples[need:]
            if len(self._part) < self.BLOCK:
                return
            self.total += self._block(self._part)
        whole = len(samples) // self.BLOCK * self.BLOCK
        for i in range(0, whole, self.BLOCK):
            self.total += self._block(samples[i : i + self.BLOCK])
        self._part = np.array(samples[whole:], np.float32)

    def dbfs(self) -> float:
        """The RMS level of the samples fed so far, in dBFS (-inf for none or all zeros)."""
        total = self.total + (self._block(self._part) if len(self._part) else 0.0)
        power = total / self.n if self.n else 0.0
        return 10.0 * np.log10(power) if power > 0 else float("-inf")


def rms_dbfs(samples: np.ndarray) -> float:
    """RMS level of ``samples`` (float, full scale 1.0) in dBFS; -inf for all zeros
    (:class:`PowerSum` of the whole track)."""
    power = PowerSum()
    power.add(samples)
    return power.dbfs()


def silence_error(level: float, threshold_dbfs: float | None) -> ClipError | None:
    """The ``silent_audio`` ClipError when a track's RMS ``level`` is below the threshold."""
    if threshold_dbfs is None or level >= threshold_dbfs:
        return None
    shown = "-inf" if np.isinf(level) else f"{level:.1f}"
    return ClipError(
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


def window_views(
    samples: np.ndarray, sample_rate: int, window_s: float, hop_s: float, last_window: str
) -> tuple[list[np.ndarray], np.ndarray, bool]:
    """The windows of :func:`cut_windows` as views of ``samples`` (float32), a zero-padded
    copy only for a window that runs past the end: (windows, start times, padded). Memory is
    the track once, where :func:`cut_windows` holds each sample twice (windows overlap)."""
    samples = np.asarray(samples, dtype=np.float32)
    win = int(round(window_s * sample_rate))
    hop = int(round(hop_s * sample_rate))
    starts = window_starts(len(samples), win, hop, last_window)
    views = []
    for s in starts:
        chunk = samples[int(s) : int(s) + win]
        if len(chunk) < win:
            chunk = np.concatenate([chunk, np.zeros(win - len(chunk), np.float32)])
        views.append(chunk)
    return views, starts / sample_rate, len(samples) < win


def cut_windows(
    samples: np.ndarray, sample_rate: int, window_s: float, hop_s: float, last_window: str
) -> Windows:
    """Cut ``samples`` into the grid's windows (:func:`emoflow.media.grid.window_starts`).

    The last partial window is zero-padded (``last_window="pad"``) or dropped (``"drop"``);
    a clip shorter than one window always gives one zero-padded window, flagged ``padded``.
    """
    views, start_s, padded = window_views(samples, sample_rate, window_s, hop_s, last_window)
    return Windows(np.stack(views), start_s, padded)


def logmel_mfcc(
    segments: np.ndarray | Sequence[np.ndarray], spec: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray]:
    """Log-mel ``(W, n_mels, T)`` and MFCC ``(W, n_mfcc, T)`` of each window (a ``(W, n)``
    array or a sequence of ``n``-sample windows), in spec's dtype.

    Each window is computed on its own (its own ``top_db`` floor), so a window's features
    never depend on which other windows are passed with it.
    """
    if len(segments) == 0:
        raise ValueError("no window to compute")
    _check_spec(spec)
    basis = mel_basis(spec)
    first = _logmel_mfcc_window(segments[0], spec, basis)
    logmel = np.empty((len(segments), *first[0].shape), first[0].dtype)
    mfcc = np.empty((len(segments), *first[1].shape), first[1].dtype)
    logmel[0], mfcc[0] = first
    for i in range(1, len(segments)):
        logmel[i], mfcc[i] = _logmel_mfcc_window(segments[i], spec, basis)
    return logmel, mfcc


def _logmel_mfcc_window(
    segment: np.ndarray, spec: dict[str, Any], basis: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One window's log-mel and MFCC: librosa's ``melspectrogram``, ``power_to_db(ref=1.0)``
    and ``mfcc(S=..., dct_type=2, norm="ortho")``, as ported below."""
    import scipy.fft

    power = _stft_magnitude(segment, spec["n_fft"], spec["hop_length"], spec["center"])
    mel = np.einsum("...ft,mf->...mt", power ** spec["power"], basis, optimize=True)
    # ref=1.0 (absolute dB) so windows of one clip stay comparable; the top_db floor is
    # this window's own.
    logmel = _power_to_db(mel, spec["top_db"])
    mfcc = scipy.fft.dct(logmel, axis=-2, type=2, norm="ortho")[..., : spec["n_mfcc"], :]
    dtype = np.dtype(spec["dtype"])
    return logmel.astype(dtype), mfcc.astype(dtype)


# --------------------------------------------------------------------------- librosa's DSP
# A port of the librosa 0.11 functions the audio stage calls (stft with a periodic Hann window
# and constant padding, the mel filter bank, power_to_db), operation for operation, on the
# same numpy and scipy.fft calls: the same bits as librosa (tests/test_featurize.py compares
# them on every spec variant), without importing librosa, whose first use imports scipy.signal,
# numba and its own modules (about 2 s, a fifth of ``emoflow predict`` on a one-minute video).

_MAX_MEM_BLOCK = 2**8 * 2**10  # librosa.util.MAX_MEM_BLOCK: bytes of frames per rfft call


def _check_spec(spec: dict[str, Any]) -> None:
    if spec.get("window", "hann") != "hann" or spec.get("pad_mode", "constant") != "constant":
        raise ValueError("the audio stage computes a Hann window with constant padding only")


def _hann(n: int) -> np.ndarray:
    """``scipy.signal.get_window("hann", n, fftbins=True)``: the periodic Hann window."""
    fac = np.linspace(-np.pi, np.pi, n + 1, dtype=np.float64)
    w = np.zeros(n + 1, dtype=np.float64)
    for k, a in enumerate(np.asarray([0.5, 0.5], dtype=np.float64)):
        w += a * np.cos(k * fac)
    return w[:-1]


def _frames(x: np.ndarray, length: int, hop: int) -> np.ndarray:
    """``librosa.util.frame`` of a 1-d signal: a ``(length, n)`` read-only view."""
    if x.shape[-1] < length:
        raise ValueError(f"input is too short (n={x.shape[-1]}) for frame_length={length}")
    view = np.lib.stride_tricks.as_strided(
        x, strides=(*x.strides, x.strides[-1]), shape=(x.shape[-1] - length + 1, length),
        writeable=False,
    )  # fmt: skip
    return np.moveaxis(view, -1, -2)[..., ::hop]


def _stft_magnitude(y: np.ndarray, n_fft: int, hop: int, center: bool) -> np.ndarray:
    """``np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop, center=center))`` of a 1-d
    float signal (window hann, pad_mode constant), with librosa's blocks of rfft calls."""
    import scipy.fft

    if not np.isfinite(y).all():
        raise ValueError("audio buffer is not finite everywhere")
    window = _hann(n_fft).reshape(n_fft, 1)
    half = n_fft // 2
    pre = post = None
    start = extra = 0
    if center:
        start_k = int(np.ceil(half / hop))
        tail_k = (y.shape[-1] + half - n_fft) // hop + 1
        if tail_k <= start_k:
            y = np.pad(y, [(half, half)], mode="constant")
        else:
            start = start_k * hop - half
            y_pre = np.pad(y[: (start_k - 1) * hop - half + n_fft + 1], [(half, 0)],
                           mode="constant")  # fmt: skip
            pre = _frames(y_pre, n_fft, hop)[..., :start_k]
            extra = pre.shape[-1]
            if tail_k * hop - half + n_fft <= y.shape[-1] + half:
                post = _frames(np.pad(y[tail_k * hop - half :], [(0, half)], mode="constant"),
                               n_fft, hop)  # fmt: skip
                extra += post.shape[-1]
    elif n_fft > y.shape[-1]:
        raise ValueError(f"n_fft={n_fft} is too large for uncentered analysis of {y.shape[-1]}")
    dtype = np.complex128 if y.dtype == np.float64 else np.complex64
    frames = _frames(y[start:], n_fft, hop)
    out = np.zeros((1 + half, frames.shape[-1] + extra), dtype=dtype, order="F")
    off = 0
    if pre is not None:
        off = pre.shape[-1]
        out[..., :off] = scipy.fft.rfft(window * pre, axis=-2)
        if post is not None and post.shape[-1] > 0:
            out[..., -post.shape[-1] :] = scipy.fft.rfft(window * post, axis=-2)
    n_columns = max(int(_MAX_MEM_BLOCK // (frames.shape[0] * frames.itemsize)), 1)
    for lo in range(0, frames.shape[-1], n_columns):
        hi = min(lo + n_columns, frames.shape[-1])
        out[..., lo + off : hi + off] = scipy.fft.rfft(window * frames[..., lo:hi], axis=-2)
    return np.abs(out)


def _hz_to_mel(hz: Any, htk: bool) -> Any:
    hz = np.asanyarray(hz)
    if htk:
        return 2595.0 * np.log10(1.0 + hz / 700.0)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    mels = (hz - 0.0) / f_sp
    min_log_mel, logstep = (min_log_hz - 0.0) / f_sp, np.log(6.4) / 27.0
    if hz.ndim:
        log_t = hz >= min_log_hz
        mels[log_t] = min_log_mel + np.log(hz[log_t] / min_log_hz) / logstep
    elif hz >= min_log_hz:
        mels = min_log_mel + np.log(hz / min_log_hz) / logstep
    return mels


def _mel_to_hz(mels: np.ndarray, htk: bool) -> np.ndarray:
    if htk:
        return 700.0 * (10.0 ** (mels / 2595.0) - 1.0)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    freqs = 0.0 + f_sp * mels
    min_log_mel, logstep = (min_log_hz - 0.0) / f_sp, np.log(6.4) / 27.0
    log_t = mels >= min_log_mel
    freqs[log_t] = min_log_hz * np.exp(logstep * (mels[log_t] - min_log_mel))
    return freqs


@functools.lru_cache(maxsize=8)
def _mel_basis(
    sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float, htk: bool, norm: str | None
) -> np.ndarray:
    """``librosa.filters.mel(...)`` (float32); read-only, cached."""
    if norm not in ("slaney", None):
        raise ValueError(f"unsupported mel filter norm {norm!r} (slaney or None)")
    weights = np.zeros((n_mels, int(1 + n_fft // 2)), dtype=np.float32)
    fftfreqs = np.fft.rfftfreq(n=n_fft, d=1.0 / sr)
    mels = np.linspace(_hz_to_mel(fmin, htk), _hz_to_mel(fmax, htk), n_mels + 2)
    mel_f = _mel_to_hz(mels, htk)
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fftfreqs)
    for i in range(n_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))
    if norm == "slaney":
        weights *= (2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels]))[:, np.newaxis]
    if not np.all((mel_f[:-2] == 0) | (weights.max(axis=1) > 0)):
        warnings.warn("Empty filters detected in mel frequency basis: some mel bands will "
                      "produce empty responses", stacklevel=2)  # fmt: skip
    weights.flags.writeable = False
    return weights


def mel_basis(spec: dict[str, Any]) -> np.ndarray:
    """The spec's mel filter bank ``(n_mels, 1 + n_fft // 2)`` float32, as librosa builds it."""
    return _mel_basis(int(spec["sample_rate"]), int(spec["n_fft"]), int(spec["n_mels"]),
                      float(spec["fmin"]), float(spec["fmax"]), bool(spec["htk"]),
                      spec["norm"])  # fmt: skip


def _power_to_db(power: np.ndarray, top_db: float | None, amin: float = 1e-10) -> np.ndarray:
    """``librosa.power_to_db(power, ref=1.0, amin=amin, top_db=top_db)``."""
    log_spec = 10.0 * np.log10(np.maximum(amin, power))
    log_spec -= 10.0 * np.log10(np.maximum(amin, np.abs(1.0)))
    if top_db is not None:
        if top_db < 0:
            raise ValueError("top_db must be non-negative")
        log_spec = np.maximum(log_spec, log_spec.max() - top_db)
    return log_spec
