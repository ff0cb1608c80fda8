"""A generated corpus at real shard sizes for the loader and GPU benchmarks (no video needed).

Each clip is 3.2 s like the demo's: 2 audio windows of 90 mel bands × 94 frames and 17 face
frames of 112 × 112 × 3 on the grid (5.33 frames/s, windows at 0 and 1.5 s). Faces are smooth
gradients with a class-dependent bright square and mild noise, so gzip sees image-like data
(random noise would make compression look worse than on real crops); log-mels are noise around
-40 dB with a class-dependent band. Four classes, 20 speakers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from emoflow.storage.shard_write import write_shard
from emoflow.storage.shards import AudioClipFeatures, FaceClipFeatures
from emoflow.training.targets import Targets

CLASSES = ["angry", "happy", "neutral", "sad"]
FRAMES_PER_CLIP = 17
N_MELS, T = 90, 94
SIZE = 112
GRID = {"sample_rate": 16000, "window_s": 3.0, "hop_s": 1.5, "last_window": "pad", "frames": 16}
AUDIO_SPEC = {"synthetic": True, "n_mels": N_MELS, "grid": GRID}
FACE_SPEC = {"synthetic": True, "size": SIZE, "frames": 16, "grid": GRID}


def clip_ids(n: int) -> list[str]:
    """``spkSS/clipNNNNN`` ids, sorted."""
    return sorted(f"spk{i % 20:02d}/clip{i:05d}" for i in range(n))


def label_of(clip_id: str) -> int:
    return int(clip_id[-5:]) % len(CLASSES)


def audio_record(clip_id: str, rng: np.random.Generator) -> AudioClipFeatures:
    c = label_of(clip_id)
    logmel = rng.normal(-40.0, 4.0, size=(2, N_MELS, T)).astype(np.float32)
    logmel[:, c * 20 : c * 20 + 20] += 10.0
    return AudioClipFeatures(
        clip_id=clip_id,
        logmel=logmel,
        mfcc=rng.normal(size=(2, 40, T)).astype(np.float32),
        window_start_s=np.array([0.0, 1.5]),
        duration_s=3.2,
        padded=True,
    )


def face_record(clip_id: str, rng: np.random.Generator) -> FaceClipFeatures:
    c = label_of(clip_id)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    base = (60 + 0.8 * yy + 0.4 * xx).astype(np.float32)[None, :, :, None]
    faces = np.repeat(base, FRAMES_PER_CLIP, axis=0).repeat(3, axis=3)
    y0, x0 = [(10, 10), (10, 60), (60, 10), (60, 60)][c]
    faces[:, y0 : y0 + 40, x0 : x0 + 40] += 70
    faces += rng.normal(0, 3, size=faces.shape)
    n = FRAMES_PER_CLIP
    return FaceClipFeatures(
        clip_id=clip_id,
        faces=np.clip(faces, 0, 255).astype(np.uint8),
        mask=np.ones(n, dtype=bool),
        landmarks=rng.uniform(0, SIZE, size=(n, 68, 2)).astype(np.float32),
        frame_time_s=(np.arange(n) + 0.5) / (16 / 3.0),
        n_faces=np.ones(n, dtype=np.int16),
        confidence=np.full(n, 0.9, dtype=np.float32),
        window_start_s=np.array([0.0, 1.5]),
        window_frame0=np.array([0, 8]),
        duration_s=3.2,
        padded=True,
    )


def make_shards(folder: Path, n_clips: int, n_shards: int = 8, seed: int = 0) -> dict:
    """Write audio and face shards of ``n_clips`` clips; return paths, ids and targets."""
    ids = clip_ids(n_clips)
    rng = np.random.default_rng(seed)
    out: dict = {"ids": ids, "audio": [], "faces": []}
    for kind, make, spec in (
        ("audio", audio_record, AUDIO_SPEC),
        ("faces", face_record, FACE_SPEC),
    ):
        for k in range(n_shards):
            part = ids[k::n_shards]
            path = folder / kind / f"{k}.h5"
            write_shard(path, kind, spec, {"synthetic": "1"}, (make(c, rng) for c in part))
            out[kind].append(path)
    out["targets"] = Targets(clips={c: (label_of(c), 0.0, 0.0) for c in ids})
    return out
