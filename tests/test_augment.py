"""Training-only augmentation (config ``augment``): noise from a folder of real noise wavs reaches
the training items' log-mel and nothing else (evaluation items, predict), seeding per (seed,
epoch, clip, window), the SNR achieved, SpecAugment masks, face flips and crop jitter, and
``augment`` off changing nothing."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from emoflow.config import validate_config
from emoflow.deploy import branch_outputs
from emoflow.deploy.predictor import load_predictor
from emoflow.extraction.specs import stage_spec
from emoflow.features.featurize import audio_features, audio_track, track_windows, window_logmel
from emoflow.media.ffmpeg import probe
from emoflow.storage.shard_write import write_shard
from emoflow.storage.shards import open_shards
from emoflow.training import train as train_module
from emoflow.training.augment import (
    AugmentedWindows,
    augmented,
    branch_augment,
    draw_noise,
    face_augment,
    item_rng,
    load_noise,
    mix_noise,
    spec_augment,
)
from emoflow.training.branch_data import branch_data, fold_roles
from emoflow.training.datasets import FaceWindows
from emoflow.training.loaders import make_loader
from emoflow.training.targets import clip_targets
from emoflow.training.train import run_training

sys.path.insert(0, str(Path(__file__).parent))
from mediagen import make_clip, run_ffmpeg  # noqa: E402
from shardmaker import make_config as synthetic_config  # noqa: E402
from shardmaker import make_corpus  # noqa: E402

CLASSES = ["hap", "sad"]
# 4 speakers x 2 clips: two train speakers, one validation, one test
ROLES = {"s0": "train", "s1": "train", "s2": "val", "s3": "test"}


def make_config(noise_dir: Path | None = None, **augment: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "dataset": {"name": "aug", "adapter": "csv", "root": ".", "labels": CLASSES},
        "audio": {"n_mels": 32},
        "train": {
            "epochs": 2,
            "patience": 5,
            "batch_size": 4,
            "embedding_dim": 8,
            "device": "cpu",
            "threads": 1,
        },  # fmt: skip
    }
    if noise_dir is not None:
        augment.setdefault("noise", {"dir": str(noise_dir), "snr_db": [5, 20], "p": 1.0})
    if augment:
        raw["augment"] = augment
    return validate_config(raw)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """8 real wav clips (tones, 4 s: two windows), their audio shard as the audio stage makes
    it, a manifest and a fold; 2 noise recordings at other rates and channel counts."""
    root = tmp_path_factory.mktemp("aug")
    rows = []
    for s, speaker in enumerate(ROLES):
        for c, label in enumerate(CLASSES):
            path = root / "media" / speaker / f"{label}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            make_clip(path, duration=4.0, video=False, tone_hz=180.0 + 60 * c + 15 * s,
                      audio_codec="pcm_s16le", audio_rate=22050, volume=0.5)  # fmt: skip
            rows.append({"clip_id": f"{speaker}/{label}", "path": str(path), "speaker": speaker,
                         "label": label, "valence": np.nan, "arousal": np.nan})  # fmt: skip
    manifest = pd.DataFrame(rows)
    manifest.to_parquet(root / "manifest.parquet")
    folds = pd.DataFrame({"fold": 0, "clip_id": manifest.clip_id, "speaker": manifest.speaker,
                          "role": manifest.speaker.map(ROLES)})  # fmt: skip
    noise = root / "noise"
    noise.mkdir()
    run_ffmpeg("-f", "lavfi", "-i", "anoisesrc=d=2.5:c=white:r=44100:a=0.4:s=3", "-ac", "2",
               str(noise / "white.wav"))  # fmt: skip
    run_ffmpeg("-f", "lavfi", "-i", "anoisesrc=d=1.5:c=pink:r=8000:a=0.5:s=4",
               str(noise / "pink.wav"))  # fmt: skip
    config = make_config()
    spec = stage_spec(config, "audio")
    records = []
    for row in rows:
        rec = audio_features(row["path"], spec)
        rec.clip_id = row["clip_id"]
        records.append(rec)
    shard = root / "audio.h5"
    write_shard(shard, "audio", spec, {}, records)
    return {"root": root, "manifest": manifest, "manifest_path": root / "manifest.parquet",
            "folds": folds, "noise": noise, "shards": [shard], "spec": spec}  # fmt: skip


def datasets(corpus: dict[str, Any], config: dict[str, Any], seed: int = 0) -> tuple[Any, Any]:
    """The run's training dataset (wrapped as run_training wraps it) and its BranchData."""
    manifest = corpus["manifest"]
    targets = clip_targets(manifest, CLASSES)
    shards = open_shards(corpus["shards"], "audio")
    roles, parts = fold_roles(corpus["folds"], shards, targets, "categorical")
    data = branch_data(config, "audio", shards, roles, targets, parts)
    return augmented(config, "audio", data.train, seed, shards.spec, manifest), data


def stored(corpus: dict[str, Any], clip_id: str) -> np.ndarray:
    shards = open_shards(corpus["shards"], "audio")
    try:
        return np.asarray(shards.get(clip_id).logmel, np.float32)
    finally:
        shards.close()


def items(ds: Any, order: Any = None) -> dict[tuple[str, int], bytes]:
    order = range(len(ds)) if order is None else order
    return {tuple(ds.index[i]): ds[i][0].numpy().tobytes() for i in order}


# --------------------------------------------------------------------------- off


def test_off_by_default_changes_nothing(corpus: dict[str, Any]) -> None:
    config = make_config()
    assert "augment" not in config  # the section is optional: configs and hashes unchanged
    explicit = make_config(noise={"p": 0.0}, specaugment={"p": 0.0}, faces={"flip_p": 0.0})
    for branch in ("audio", "visual", "egemaps", "ssl", "au", "face_cnn"):
        assert branch_augment(config, branch) is None
        assert branch_augment(explicit, branch) is None
    train, data = datasets(corpus, explicit)
    assert train is data.train  # not wrapped: the very items of before
    for i in range(len(train)):
        clip_id, w = train.index[i]
        assert np.array_equal(train[i][0].numpy()[0], stored(corpus, clip_id)[w])


def test_noise_needs_a_folder_of_wavs(tmp_path: Path) -> None:
    from emoflow.errors import ConfigError

    with pytest.raises(ConfigError, match="augment.noise.dir"):
        branch_augment(make_config(noise={"p": 0.5}), "audio")
    with pytest.raises(ConfigError, match="no .wav"):
        load_noise(tmp_path, 16000, None)


# --------------------------------------------------------------------------- noise


def test_clean_track_gives_the_stored_windows(corpus: dict[str, Any]) -> None:
    """One code path: the track noise is mixed into, cut and recomputed without noise, gives
    the audio stage's stored log-mel bit for bit."""
    row = corpus["manifest"].iloc[0]
    track = audio_track(row.path, corpus["spec"])
    logmel, _ = window_logmel(track_windows(track, corpus["spec"]).segments, corpus["spec"])
    assert logmel.tobytes() == stored(corpus, row.clip_id).tobytes()


def test_noise_changes_training_items_only(corpus: dict[str, Any], tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """Through the real run_training: every training item the loaders yield is noisy (p = 1);
    every item evaluate() sees (validation, test, and the train part whose embeddings
    feature-level fusion is fitted on) is the stored window; predict featurizes as stored."""
    seen: dict[str, list[Any]] = {"train": [], "eval": []}
    real_epoch, real_eval = train_module.train_epoch, train_module.evaluate

    def spy_epoch(step: Any, loader: Any) -> float:
        ds = loader.dataset
        seen["train"] += [(ds.index[i], ds[i][0].numpy().copy()) for i in range(len(ds))]
        return real_epoch(step, loader)

    def spy_eval(model: Any, branch: str, ds: Any, *args: Any) -> Any:
        seen["eval"] += [(c, ds[i][0].numpy().copy()) for i, c in enumerate(ds.clip_ids)]
        return real_eval(model, branch, ds, *args)

    monkeypatch.setattr(train_module, "train_epoch", spy_epoch)
    monkeypatch.setattr(train_module, "evaluate", spy_eval)
    config = make_config(corpus["noise"])
    out = tmp_path / "run"
    run_training(config, "audio", 0, 0, corpus["manifest_path"], corpus["folds"],
                 corpus["shards"], out)  # fmt: skip
    assert len(seen["train"]) == 2 * 8  # 2 epochs x 4 clips x 2 windows
    for (clip_id, w), x in seen["train"]:
        assert x.shape == (1, 32, 94)
        assert not np.array_equal(x[0], stored(corpus, clip_id)[w])
    evaluated = {c for c, _ in seen["eval"]}
    assert evaluated == set(corpus["manifest"].clip_id)  # train, val and test parts
    for clip_id, x in seen["eval"]:
        assert np.array_equal(x[:, 0], stored(corpus, clip_id))
    # the bundle names the augmentation; predict featurizes a file exactly as the audio stage
    predictor = load_predictor(out / "model.pt")
    bundle = predictor.branches["audio"].bundle
    assert set(bundle["train_config"]["augment"]) == {"noise"}
    assert set(bundle["train_config"]["augment"]["noise"]["files"]) == {"pink.wav", "white.wav"}
    assert bundle["spec"] == corpus["spec"]
    fed: list[np.ndarray] = []
    real_norm = branch_outputs.normalise_audio

    def spy_norm(x: Any, norm: Any) -> Any:
        fed.append(np.array(x))
        return real_norm(x, norm)

    monkeypatch.setattr(branch_outputs, "normalise_audio", spy_norm)
    row = corpus["manifest"].iloc[0]
    branch_outputs.audio_windows(Path(row.path), predictor, probe(row.path))
    assert fed and np.array_equal(fed[0], stored(corpus, row.clip_id))


def test_snr_is_achieved_and_noise_is_resampled(corpus: dict[str, Any]) -> None:
    bank = load_noise(corpus["noise"], 16000, None)
    assert sorted(len(b) for b in bank) == [24000, 40000]  # 1.5 s at 8 kHz, 2.5 s stereo 44.1k
    track = audio_track(corpus["manifest"].path.iloc[0], corpus["spec"])
    cfg = {"p": 1.0, "snr_db": [5, 20]}
    snrs = []
    for epoch in range(40):
        draw = draw_noise(cfg, bank, 0, epoch, "s0/hap")
        noisy = mix_noise(track, bank[draw.file], draw.offset, draw.snr_db)
        residual = noisy.astype(np.float64) - track
        measured = 10 * np.log10(np.mean(track.astype(np.float64) ** 2) / np.mean(residual**2))
        assert 5 - 1e-3 <= measured <= 20 + 1e-3
        assert measured == pytest.approx(draw.snr_db, abs=1e-3)
        snrs.append(measured)
    assert max(snrs) - min(snrs) > 5  # drawn over the range, not one value
    assert {draw_noise(cfg, bank, 0, e, "s0/hap").file for e in range(40)} == {0, 1}
    half = {"p": 0.5, "snr_db": [5, 20]}
    hits = sum(draw_noise(half, bank, 0, e, c) is not None
               for e in range(20) for c in corpus["manifest"].clip_id)  # fmt: skip
    assert 50 <= hits <= 110  # of 160 draws at p = 0.5


# --------------------------------------------------------------------------- seeding


def test_seeding_per_seed_epoch_clip(corpus: dict[str, Any]) -> None:
    config = make_config(corpus["noise"], specaugment={"p": 0.5})
    first, _ = datasets(corpus, config)
    again, _ = datasets(corpus, config)  # a fresh dataset: no state carried over
    first.set_epoch(3)
    again.set_epoch(3)
    forward = items(first)
    assert items(again, reversed(range(len(again)))) == forward  # any order, any process
    again.set_epoch(4)
    later = items(again)
    assert all(later[k] != forward[k] for k in forward)  # another epoch, other noise
    other_seed, _ = datasets(corpus, config, seed=1)
    other_seed.set_epoch(3)
    assert all(items(other_seed)[k] != forward[k] for k in forward)
    # DataLoader workers: the same batches as in-process loading
    batches = []
    for workers in (0, 2):
        loader = make_loader(first, 4, shuffle=True, seed=0, epoch=3, num_workers=workers)
        batches.append([b[0].numpy().tobytes() for b in loader])
    assert batches[0] == batches[1]


def test_training_runs_are_byte_identical_with_workers(corpus: dict[str, Any],
                                                       tmp_path: Path) -> None:  # fmt: skip
    config = make_config(corpus["noise"], specaugment={"p": 0.5})
    outs = []
    for workers in (0, 2):
        cfg = {**config, "train": {**config["train"], "num_workers": workers}}
        out = tmp_path / f"w{workers}"
        run_training(cfg, "audio", 0, 0, corpus["manifest_path"], corpus["folds"],
                     corpus["shards"], out)  # fmt: skip
        outs.append({n: (out / n).read_bytes() for n in ("predictions.parquet", "history.csv")})
    assert outs[0] == outs[1]


# --------------------------------------------------------------------------- masks, faces


def test_specaugment_masks_fill_with_the_window_mean() -> None:
    x = torch.from_numpy(np.random.default_rng(0).normal(-40, 10, (1, 32, 94)).astype(np.float32))
    cfg = {"p": 1.0, "time_masks": 2, "time_width": 10, "freq_masks": 2, "freq_width": 6}
    for epoch in range(20):
        out = spec_augment(x, cfg, item_rng(0, epoch, "c", 0, "specaugment"))
        fill = float(x.double().mean())
        changed = (out != x)[0].numpy()
        assert np.allclose(out[0].numpy()[changed], fill)
        cols = np.flatnonzero(changed.all(axis=0))  # whole time frames masked
        rows = np.flatnonzero(changed.all(axis=1))  # whole mel bands masked
        covered = np.zeros_like(changed)
        covered[:, cols] = True
        covered[rows, :] = True
        assert not (changed & ~covered).any()  # nothing but whole rows and columns
        assert len(cols) <= 20 and len(rows) <= 12
    none = {**cfg, "time_width": 0, "freq_width": 0}
    assert torch.equal(spec_augment(x, none, item_rng(0, 0, "c", 0, "s")), x)


def test_face_flip_and_crop_jitter(tmp_path: Path) -> None:
    x = torch.from_numpy(np.random.default_rng(1).integers(0, 255, (4, 1, 16, 16), np.uint8))
    flipped = face_augment(x, {"flip_p": 1.0, "crop_jitter_px": 0}, item_rng(0, 0, "c", 0, "f"))
    assert flipped.dtype == torch.uint8 and torch.equal(flipped, x.flip(-1))
    assert torch.equal(face_augment(x, {"flip_p": 0.0, "crop_jitter_px": 0},
                                    item_rng(0, 0, "c", 0, "f")), x)  # fmt: skip
    shifts = set()
    for epoch in range(30):
        out = face_augment(x, {"flip_p": 0.0, "crop_jitter_px": 2}, item_rng(0, epoch, "c", 0, "f"))
        padded = np.pad(x.numpy(), ((0, 0), (0, 0), (2, 2), (2, 2)), mode="edge")
        crops = {(dy, dx): padded[..., 2 + dy : 18 + dy, 2 + dx : 18 + dx]
                 for dy in range(-2, 3) for dx in range(-2, 3)}  # fmt: skip
        match = [k for k, crop in crops.items() if np.array_equal(out.numpy(), crop)]
        assert match  # a crop of the edge-replicated frames, the same for every frame
        shifts.add(match[0])
    assert len(shifts) > 5
    # the visual branch's training dataset, wrapped as run_training wraps it
    corpus = make_corpus(tmp_path / "faces")
    config = synthetic_config()
    config["augment"] = {"faces": {"flip_p": 1.0, "crop_jitter_px": 0}}
    shards = open_shards(corpus["visual"], "faces")
    table = corpus["table"]
    base = FaceWindows(shards, list(table.clip_id[:6]), clip_targets(table, ["ang", "hap", "sad"]),
                       16)  # fmt: skip
    wrapped = augmented(config, "visual", base, 0, shards.spec)
    assert isinstance(wrapped, AugmentedWindows) and len(wrapped) == len(base)
    for i in range(len(base)):
        assert torch.equal(wrapped[i][0], base[i][0].flip(-1))
        assert torch.equal(wrapped[i][1], base[i][1])  # the mask stays
    assert augmented(config, "au", base, 0, shards.spec) is base  # only the visual branch
    shards.close()
