"""Small synthetic corpora for the folds/models/train tests: a manifest, folds and real shards.

Audio: class c lights up mel band c of every window (plus noise). Faces: class c draws a bright
square in corner c of every face frame (plus noise), and raises AU intensity 3c of the
OpenFace-like ``au`` values stored with them (pose, gaze: noise). All are learnable in a few
epochs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emoflow.config import validate_config
from emoflow.protocols.folds import make_folds
from emoflow.storage.shard_write import write_shard
from emoflow.storage.shards import AudioClipFeatures, FaceClipFeatures

CLASSES = ["ang", "hap", "sad"]
VALENCE = [-0.6, 0.6, -0.3]
AROUSAL = [0.6, 0.3, -0.6]


def make_manifest(n_speakers: int = 8, per_class: int = 1, n_shards: int = 2) -> pd.DataFrame:
    """``n_speakers`` x len(CLASSES) x ``per_class`` clips with label, valence, arousal."""
    rows = []
    for s in range(n_speakers):
        for c, label in enumerate(CLASSES):
            for r in range(per_class):
                clip_id = f"spk{s:02d}/{label}_{r}.mp4"
                rows.append(
                    {
                        "clip_id": clip_id,
                        "path": f"/data/{clip_id}",
                        "bytes": 1000,
                        "sha256": "0" * 64,
                        "speaker": f"spk{s:02d}",
                        "label": label,
                        "valence": VALENCE[c] + 0.05 * ((s + r) % 3 - 1),
                        "arousal": AROUSAL[c] + 0.05 * ((s + 2 * r) % 3 - 1),
                        "split": None,
                        "shard": 0,
                    }
                )
    table = pd.DataFrame(rows).sort_values("clip_id").reset_index(drop=True)
    table["shard"] = np.arange(len(table)) % n_shards
    return table


def _class_of(clip_id: str) -> int:
    return CLASSES.index(clip_id.split("/")[1].split("_")[0])


def audio_record(
    clip_id: str, rng: np.random.Generator, n_mels: int = 16, frames: int = 24, windows: int = 2
) -> AudioClipFeatures:
    c = _class_of(clip_id)
    logmel = rng.normal(-40.0, 4.0, size=(windows, n_mels, frames)).astype(np.float32)
    band = n_mels // len(CLASSES)
    logmel[:, c * band : (c + 1) * band, :] += 12.0
    mfcc = rng.normal(size=(windows, 8, frames)).astype(np.float32)
    return AudioClipFeatures(
        clip_id=clip_id,
        logmel=logmel,
        mfcc=mfcc,
        window_start_s=np.arange(windows, dtype=np.float64) * 1.5,
        duration_s=1.5 * windows + 1.5,
        padded=False,
    )


def face_record(
    clip_id: str,
    rng: np.random.Generator,
    frames: int = 6,
    size: int = 24,
    masked: tuple[int, ...] = (1,),
    no_face: bool = False,
) -> FaceClipFeatures:
    c = _class_of(clip_id)
    faces = rng.integers(0, 60, size=(frames, size, size, 3), dtype=np.uint8)
    half = size // 2
    y0, x0 = [(0, 0), (0, half), (half, 0)][c]
    faces[:, y0 : y0 + half, x0 : x0 + half, :] += 150
    mask = np.ones(frames, dtype=bool)
    mask[list(masked)] = False
    if no_face:
        mask[:] = False
    faces[~mask] = rng.integers(0, 255, size=faces[~mask].shape, dtype=np.uint8)
    au = rng.normal(0.3, 0.2, size=(frames, 17)).astype(np.float32)
    au[:, 3 * c] += 2.0
    pose = rng.normal(0.0, 1.0, size=(frames, 6)).astype(np.float32) * [20, 20, 50, 0.2, 0.2, 0.1]
    gaze = rng.normal(0.0, 0.2, size=(frames, 8)).astype(np.float32)
    for values in (au, pose, gaze):
        values[~mask] = np.nan
    return FaceClipFeatures(
        clip_id=clip_id,
        faces=faces,
        mask=mask,
        landmarks=np.zeros((frames, 68, 2), np.float32),
        frame_time_s=np.arange(frames, dtype=np.float64) * 0.2,
        n_faces=mask.astype(np.int16),
        confidence=mask.astype(np.float32),
        window_start_s=np.array([0.0, 1.5]),
        window_frame0=np.array([0, 2]),  # 4 frames per window, hop of 2 frames
        duration_s=3.0,
        padded=False,
        au=au,
        pose=pose.astype(np.float32),
        gaze=gaze,
    )


AUDIO_SPEC = {"sample_rate": 16000, "n_mels": 16, "synthetic": True}
FACE_SPEC = {
    "size": 24,
    "frames": 4,
    "synthetic": True,
    "grid": {"sample_rate": 16000, "window_s": 3.0, "hop_s": 1.5, "last_window": "pad",
             "frames": 4},
}  # fmt: skip


def write_shards(
    folder: Path,
    manifest: pd.DataFrame,
    kind: str,
    seed: int = 0,
    missing: tuple[str, ...] = (),
    no_face: tuple[str, ...] = (),
    **shape: Any,
) -> list[Path]:
    """One shard per manifest ``shard`` value; clips in ``missing`` are left out."""
    rng = np.random.default_rng(seed)
    paths = []
    for k, part in manifest.groupby("shard", sort=True):
        records = []
        for clip_id in sorted(part["clip_id"]):
            if clip_id in missing:
                continue
            if kind == "audio":
                records.append(audio_record(clip_id, rng, **shape))
            else:
                records.append(face_record(clip_id, rng, no_face=clip_id in no_face, **shape))
        path = folder / kind / f"{k}.h5"
        spec = AUDIO_SPEC if kind == "audio" else FACE_SPEC
        write_shard(path, kind, spec, {"synthetic": "1"}, records)
        paths.append(path)
    return paths


def make_config(**train: Any) -> dict[str, Any]:
    """A validated config with small, fast training settings (overridable)."""
    settings = {
        "epochs": 3,
        "patience": 5,
        "batch_size": 8,
        "lr": 0.003,
        "embedding_dim": 16,
        "visual_size": 16,
        "device": "cpu",
        "threads": 1,
    }
    settings.update(train)
    raw = {
        "dataset": {"name": "synthetic", "adapter": "csv", "root": ".", "labels": CLASSES},
        "folds": {"k": 4, "val_speakers": 0.34, "seed": 0},
        "train": settings,
    }
    return validate_config(raw)


def make_corpus(folder: Path, missing: tuple[str, ...] = (), no_face: tuple[str, ...] = ()):
    """Write manifest, folds, audio and face shards under ``folder``; return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    manifest = make_manifest()
    manifest.to_parquet(folder / "manifest.parquet")
    config = make_config()
    folds = make_folds(manifest, config["folds"], target="categorical")
    folds.to_parquet(folder / "folds.parquet")
    return {
        "manifest": folder / "manifest.parquet",
        "folds": folder / "folds.parquet",
        "audio": write_shards(folder, manifest, "audio", missing=missing),
        "visual": write_shards(folder, manifest, "faces", seed=1, missing=missing, no_face=no_face),
        "table": manifest,
        "fold_table": folds,
    }
