"""Audio windows and log-mel/MFCC features (pure functions)."""

from __future__ import annotations

import librosa
import numpy as np
import pytest

from emoflow.config import validate_config
from emoflow.features.audio import audio_spec, cut_windows, logmel_mfcc, rms_dbfs, silence_error

CFG = validate_config({"dataset": {"name": "x", "adapter": "ravdess", "root": "."}})
SPEC = audio_spec(CFG["audio"], "ffmpeg version test")


def test_spec_records_every_dsp_parameter() -> None:
    for key in ("n_fft", "hop_length", "n_mels", "n_mfcc", "fmin", "fmax", "htk", "norm",
                "center", "power", "top_db", "dtype", "mel_scale", "librosa_version",
                "ffmpeg_version", "window_s", "hop_s", "last_window"):  # fmt: skip
        assert key in SPEC, key
    assert SPEC["fmax"] == 8000 and SPEC["mel_scale"] == "slaney"
    assert SPEC["librosa_version"] == librosa.__version__


def test_windows_hop_and_padding() -> None:
    sr = 16000
    y = np.ones(int(4.0 * sr), np.float32)
    w = cut_windows(y, sr, 3.0, 1.5, "pad")
    assert w.start_s.tolist() == [0.0, 1.5] and not w.padded
    assert w.segments.shape == (2, 48000)
    assert w.segments[1, : int(2.5 * sr)].min() == 1 and w.segments[1, int(2.5 * sr) :].max() == 0
    assert cut_windows(y, sr, 3.0, 1.5, "drop").start_s.tolist() == [0.0]


def test_short_clip_is_padded_and_flagged() -> None:
    y = np.ones(6400, np.float32)  # 0.4 s
    w = cut_windows(y, 16000, 3.0, 1.5, "drop")
    assert w.padded and w.segments.shape == (1, 48000)
    assert w.segments[0, :6400].sum() == 6400 and w.segments[0, 6400:].sum() == 0


def test_logmel_mfcc_shapes_and_values() -> None:
    t = np.arange(48000) / 16000
    segs = np.stack([np.sin(2 * np.pi * 300 * t), np.sin(2 * np.pi * 3000 * t)]).astype("f4")
    logmel, mfcc = logmel_mfcc(segs, SPEC)
    assert logmel.shape == (2, 90, 94) and mfcc.shape == (2, 40, 94)
    assert logmel.dtype == np.float32
    mel_freqs = librosa.mel_frequencies(n_mels=90, fmin=0, fmax=8000)
    peak0 = mel_freqs[logmel[0].mean(axis=1).argmax()]
    peak1 = mel_freqs[logmel[1].mean(axis=1).argmax()]
    assert peak0 == pytest.approx(300, rel=0.15) and peak1 == pytest.approx(3000, rel=0.1)
    # MFCCs are the DCT of the log-mel: librosa's own mfcc from the same S agrees
    ref = librosa.feature.mfcc(S=logmel[0], n_mfcc=40)
    assert np.allclose(mfcc[0], ref, atol=1e-3)


def test_float16_dtype() -> None:
    spec = {**SPEC, "dtype": "float16"}
    logmel, mfcc = logmel_mfcc(np.zeros((1, 48000), "f4"), spec)
    assert logmel.dtype == np.float16 and mfcc.dtype == np.float16


def test_silence_threshold() -> None:
    t = np.arange(16000) / 16000
    sine = np.sin(2 * np.pi * 220 * t).astype(np.float32)
    assert rms_dbfs(sine) == pytest.approx(-3.01, abs=0.01)
    assert rms_dbfs(3e-5 * sine) == pytest.approx(-93.5, abs=0.1)
    assert rms_dbfs(np.zeros(100, np.float32)) == float("-inf")
    assert silence_error(rms_dbfs(0.01 * sine), -60.0) is None  # -43 dBFS: quiet speech, kept
    error = silence_error(rms_dbfs(3e-5 * sine), -60.0)
    assert error is not None and error.kind == "silent_audio"
    assert "RMS -93.5 dBFS, below audio.silence_dbfs -60" in error.message
    error = silence_error(rms_dbfs(np.zeros(100, np.float32)), -60.0)
    assert error is not None and "RMS -inf dBFS" in error.message
    assert silence_error(float("-inf"), None) is None  # null: never silent
