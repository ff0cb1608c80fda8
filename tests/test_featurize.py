"""The one featurizer: the shared time grid, and golden hashes that tie the features to
:data:`emoflow.features.featurize.FEATURE_VERSION` (so the per-clip cache never serves features made
by other code)."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import numpy as np
import pytest
from skimage import data, transform

from emoflow.config import validate_config
from emoflow.errors import ClipError
from emoflow.extraction.specs import stage_spec
from emoflow.faces.backends import make_backend
from emoflow.features import featurize
from emoflow.media.grid import TimeGrid, window_frame_index

# (stage, FEATURE_VERSION[stage]) -> sha256 of the golden clip's features, rounded (see _digest).
GOLDEN = {
    ("audio", 2): "7f0a55cd19afdd5d41203e12ba8659ed9d57be0e05689ecb3f67ec9e9061099e",
    ("faces", 2): "0804baab1b3b5e3f37256474843a5388e02b17c1470857756af9741be40ba67b",
    # 3: detection at the scale a frame needs, faces.select, the chosen boxes stored
    ("faces", 3): "8604b44f0cd1d72b8952f6792caf6ed3c860d4c7780ea86b187643e6ecbc7b88",
    # 4: select track searches around the tracked face while one face is in the frame
    ("faces", 4): "ad24b4193bed349fad713b8984f75a371d9f94adbc13979a35eb4c2d17d31b62",
    ("faces", 5): "1a17f30a9e9653c6a465293375e9cc29e56a3248325bf0b44a1e9b2277d65e14",
}


def _golden_clip(path: Path) -> Path:
    """1.6 s, 10 fps, 320 x 320: the astronaut drifting right, a gliding tone with a pause;
    losslessly coded (FFV1 + PCM), so its decoded samples are exactly what numpy made."""
    face = (transform.resize(data.astronaut(), (320, 320), anti_aliasing=True) * 255).astype(
        np.uint8
    )
    frames = np.stack([np.roll(face, 2 * i, axis=1) for i in range(16)])
    t = np.arange(int(1.6 * 16000)) / 16000
    tone = 0.5 * np.sin(2 * np.pi * (200 + 60 * t) * t) * (t < 0.9)
    audio = (tone * 32767).astype("<i2")
    wav = path.with_suffix(".pcm")
    wav.write_bytes(audio.tobytes())
    args = ["ffmpeg", "-nostdin", "-y", "-v", "error",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", "320x320", "-r", "10", "-i", "pipe:0",
            "-f", "s16le", "-ar", "16000", "-ac", "1", "-i", str(wav),
            "-c:v", "ffv1", "-c:a", "pcm_s16le", "-fflags", "+bitexact", str(path)]  # fmt: skip
    subprocess.run(args, input=frames.tobytes(), check=True, timeout=120, capture_output=True)
    return path


def _digest(rec: object, stage: str) -> str:
    if stage == "audio":
        parts = [np.round(np.asarray(rec.logmel, np.float64), 2), np.round(np.asarray(rec.mfcc), 2),
                 rec.window_start_s, [rec.padded]]  # fmt: skip
    else:
        parts = [rec.faces, rec.mask, np.round(rec.landmarks.astype(np.float64), 1),
                 np.round(rec.frame_time_s, 4), rec.window_start_s, rec.window_frame0]  # fmt: skip
        if rec.boxes is not None:  # feature version 3 on
            parts += [np.round(rec.boxes.astype(np.float64), 1), rec.n_faces]
    h = hashlib.sha256()
    for p in parts:
        a = np.ascontiguousarray(np.asarray(p))
        h.update(str((a.dtype.str, a.shape)).encode() + a.tobytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def golden(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    path = _golden_clip(tmp_path_factory.mktemp("golden") / "golden.mkv")
    config = validate_config({"dataset": {"name": "g", "adapter": "csv", "root": "."}})
    return {"path": path, "config": config,
            "spec": {s: stage_spec(config, s) for s in ("audio", "faces")}}  # fmt: skip


def _features(golden: dict, stage: str) -> object:
    spec = golden["spec"][stage]
    if stage == "audio":
        return featurize.audio_features(golden["path"], spec)
    [rec] = featurize.face_features([("g", golden["path"])], spec,
                                    make_backend(golden["config"]["faces"]))  # fmt: skip
    assert not isinstance(rec, ClipError), rec
    return rec


@pytest.mark.parametrize("stage", ["audio", "faces"])
def test_golden_features_match_their_feature_version(golden: dict, stage: str) -> None:
    version = featurize.FEATURE_VERSION[stage]
    got = _digest(_features(golden, stage), stage)
    assert golden["spec"][stage]["feature_version"] == version
    assert GOLDEN.get((stage, version)) == got, (
        f"the {stage} features of the golden clip changed (sha256 {got}). If the change is "
        f"intended, bump FEATURE_VERSION[{stage!r}] in src/emoflow/features/featurize.py to "
        f"{version + 1} and add ({stage!r}, {version + 1}): {got!r} to GOLDEN in this file: the "
        "per-clip cache and old shards then stop serving features made by the old code."
    )


def test_a_one_pixel_change_of_the_alignment_changes_the_golden_hash(
    golden: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    from emoflow.faces import embedded

    real = embedded.align_face

    def shifted(frame, pts, size, scale):  # type: ignore[no-untyped-def]
        return real(frame, pts + np.array([1.0, 0.0]), size, scale)

    monkeypatch.setattr(embedded, "align_face", shifted)
    assert _digest(_features(golden, "faces"), "faces") != GOLDEN[("faces", 5)]


def test_golden_clip_windows_share_one_grid(golden: dict) -> None:
    audio, faces = _features(golden, "audio"), _features(golden, "faces")
    np.testing.assert_array_equal(audio.window_start_s, faces.window_start_s)
    assert audio.padded and faces.padded and len(faces.mask) == 8  # 1.6 s - 0.1 s at 5.33/s
    assert faces.mask.all()


@pytest.mark.parametrize("hop_s", [1.5, 1.0, 3.0])
@pytest.mark.parametrize("seconds", [0.4, 3.0, 3.2, 10.0, 70.0])
def test_window_frames_lie_inside_their_window(hop_s: float, seconds: float) -> None:
    grid = TimeGrid(16000, 3.0, hop_s, "pad", 16)
    starts = grid.windows_for_duration(seconds)
    times = grid.frame_times(seconds, 25.0)
    idx, exists = window_frame_index(grid.window_frame0(starts), 16, len(times))
    for i, start in enumerate(starts):
        t = times[idx[i][exists[i]]]
        assert np.all(t >= start) and np.all(t < start + 3.0)
        # a window fully inside the clip has all its 16 frames
        if start + 3.0 <= seconds - 0.04:
            assert exists[i].all()
    # the audio windows of the same clip are these windows
    n = int(round(seconds * 16000))
    np.testing.assert_array_equal(grid.window_starts(n) / 16000, starts)


def test_logmel_of_a_window_does_not_depend_on_its_neighbours(golden: dict) -> None:
    from emoflow.features.audio import logmel_mfcc

    spec = golden["spec"]["audio"]
    rng = np.random.default_rng(0)
    quiet = (1e-3 * rng.standard_normal(48000)).astype(np.float32)
    loud = rng.standard_normal(48000).astype(np.float32)
    alone, _ = logmel_mfcc(quiet[None], spec)
    together, _ = logmel_mfcc(np.stack([loud, quiet]), spec)
    np.testing.assert_array_equal(alone[0], together[1])


def _librosa_logmel_mfcc(segment: np.ndarray, spec: dict) -> tuple[np.ndarray, np.ndarray]:
    """What the audio stage computed with librosa itself (feature version 2)."""
    import librosa

    mel = librosa.feature.melspectrogram(
        y=segment, sr=spec["sample_rate"], n_fft=spec["n_fft"], hop_length=spec["hop_length"],
        window=spec["window"], center=spec["center"], pad_mode=spec["pad_mode"],
        power=spec["power"], n_mels=spec["n_mels"], fmin=spec["fmin"], fmax=spec["fmax"],
        htk=spec["htk"], norm=spec["norm"],
    )  # fmt: skip
    logmel = librosa.power_to_db(mel, ref=1.0, top_db=spec["top_db"])
    mfcc = librosa.feature.mfcc(S=logmel, n_mfcc=spec["n_mfcc"], dct_type=2, norm="ortho")
    return logmel.astype(spec["dtype"]), mfcc.astype(spec["dtype"])


@pytest.mark.parametrize(
    "change",
    [
        {},
        {"htk": True, "norm": None},
        {"center": False, "power": 1.0, "top_db": None},
        {"n_fft": 400, "hop_length": 160, "n_mels": 40, "fmin": 80.0, "fmax": 7000},
        {"n_fft": 512, "hop_length": 300, "dtype": "float16", "htk": True},
        {"sample_rate": 8000, "n_fft": 256, "hop_length": 128, "n_mels": 24, "window_s": 1.0},
    ],
)
def test_logmel_port_gives_librosas_bits(change: dict) -> None:
    """The audio stage's log-mel and MFCC (emoflow's port of librosa's stft, mel filter bank
    and power_to_db, which spares predict librosa's 2 s import) equal librosa's bit for bit."""
    from emoflow.features.audio import audio_spec, logmel_mfcc

    config = validate_config({"dataset": {"name": "g", "adapter": "csv", "root": "."}})
    spec = audio_spec({**config["audio"], **change}, "ffmpeg")
    n = int(spec["window_s"] * spec["sample_rate"])
    rng = np.random.default_rng(len(change))
    segments = (rng.standard_normal((3, n)) * np.array([[1.0], [1e-3], [0.3]])).astype(np.float32)
    segments[2, n // 3 :] = 0.0  # a window that ends in silence (the top_db floor bites)
    logmel, mfcc = logmel_mfcc(segments, spec)
    for i, segment in enumerate(segments):
        want = _librosa_logmel_mfcc(segment, spec)
        assert logmel[i].tobytes() == want[0].tobytes() and logmel[i].dtype == want[0].dtype
        assert mfcc[i].tobytes() == want[1].tobytes()


def test_window_views_are_the_cut_windows() -> None:
    from emoflow.features.audio import cut_windows, window_views

    samples = np.random.default_rng(1).standard_normal(16000 * 7 + 123)
    for last in ("pad", "drop"):
        views, starts, padded = window_views(samples, 16000, 3.0, 1.5, last)
        cut = cut_windows(samples, 16000, 3.0, 1.5, last)
        np.testing.assert_array_equal(np.stack(views), cut.segments)
        np.testing.assert_array_equal(starts, cut.start_s)
        assert views[0].dtype == np.float32 and padded == cut.padded is False
    short, _, padded = window_views(samples[:1000], 16000, 3.0, 1.5, "pad")
    assert padded and len(short) == 1 and short[0][1000:].max() == 0.0
