"""Audio branch epoch time with noise augmentation: none, (a) on the fly, (b) K cached copies.

    .venv/bin/python bench/augment_epoch.py --clips 24 --epochs 3
    .venv/bin/python bench/augment_epoch.py --corpus data/demo --epochs 4   # make demo's corpus

A demo corpus (``emoflow demo-corpus``) is generated, scanned, its audio stage extracted and split
(folds.k 3) under ``--work``; fold 0's audio branch is then trained as ``train`` does (the demo
config: 48 mels, batch 16, one torch thread) for ``--epochs`` epochs in each mode, timing every
epoch's pass over the training windows (``train_epoch``: loading, augmenting, forward, backward):

- ``none``: no augmentation (the stored log-mel windows);
- ``a pX``: on the fly (:class:`emoflow.training.augment.AugmentedWindows`): a clip that gets
  noise (probability X) has its track mixed and the window's log-mel recomputed with the audio
  stage's function; the first epoch also decodes each training clip's track once (ffmpeg);
- ``b K``: K noisy copies of every training clip computed up front with the same functions (the
  cost an extraction stage of its own would pay once per spec; printed as ``precompute``), the
  epoch then serves copy (seed, epoch, clip) mod K from memory with probability p.

Noise: 3 ffmpeg ``anoisesrc`` recordings (white, pink, brown; 44.1 kHz stereo, 7 s). Prints a
table and writes bench/results/augment_epoch.csv. Figures, never pass/fail.
"""

from __future__ import annotations

import argparse
import copy
import csv
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "results"


def prepare(work: Path, clips: int, root: Path | None = None) -> dict[str, Any]:
    from emoflow.config import validate_config
    from emoflow.datasets.manifest import refresh
    from emoflow.extraction.compute import run_compute
    from emoflow.extraction.shard_job import run_shard
    from emoflow.stages import run_split

    corpus = root or work / f"demo{clips}"
    if not corpus.exists():
        subprocess.run([str(REPO / ".venv/bin/emoflow"), "demo-corpus", str(corpus), "--clips",
                        str(clips), "--seed", "0"], check=True)  # fmt: skip
    noise = work / "noise"
    noise.mkdir(exist_ok=True)
    for color in ("white", "pink", "brown"):
        path = noise / f"{color}.wav"
        if not path.exists():
            subprocess.run(["ffmpeg", "-nostdin", "-y", "-v", "error", "-f", "lavfi", "-i",
                            f"anoisesrc=d=7:c={color}:r=44100:a=0.3:s=1", "-ac", "2",
                            str(path)], check=True)  # fmt: skip
    raw = yaml.safe_load((REPO / "config.yaml").read_text())
    raw["dataset"] = {"name": corpus.name, "adapter": "ravdess", "root": str(corpus)}
    raw["results"] = str(work / "results")
    raw["folds"] = {"k": 3}
    raw["branches"] = ["audio"]
    config = validate_config(raw)
    refresh(config)
    run_compute(config, "audio")
    for k in range(config["shards"]):
        run_shard(config, "audio", k)
    run_split(config)
    # librosa's first feature call JIT-compiles (about 3 s): not part of any epoch
    from emoflow.extraction.specs import stage_spec
    from emoflow.features.featurize import window_logmel

    window_logmel(np.zeros((1, 48000), np.float32) + 1e-3, stage_spec(config, "audio"))
    return {"config": config, "noise": noise}


class CachedCopies(torch.utils.data.Dataset):
    """(b): K noisy copies per clip held in memory; an epoch picks copy (seed, epoch, clip) mod K
    with probability p (else the stored window)."""

    def __init__(self, aug_ds: Any, k: int, p: float) -> None:
        from emoflow.features.featurize import track_windows, window_logmel
        from emoflow.training.augment import item_rng, mix_noise

        self.base, self.k, self.p, self.epoch = aug_ds.base, k, p, 0
        self.seed, self.index, self.labels = aug_ds.seed, aug_ds.index, aug_ds.labels
        self.copies: dict[str, list[np.ndarray]] = {}
        snr = aug_ds.aug["noise"]["snr_db"]
        for clip_id in dict.fromkeys(c for c, _ in self.index):
            track = aug_ds._track(clip_id)
            copies = []
            for j in range(k):
                rng = item_rng(0, j, clip_id, -1, "noise copy")
                f = int(rng.integers(len(aug_ds.bank)))
                noisy = mix_noise(track, aug_ds.bank[f], int(rng.integers(len(aug_ds.bank[f]))),
                                  float(rng.uniform(*snr)))  # fmt: skip
                logmel, _ = window_logmel(track_windows(noisy, aug_ds.spec).segments, aug_ds.spec)
                copies.append(logmel.astype(np.float32))
            self.copies[clip_id] = copies

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        from emoflow.training.augment import item_rng

        item = list(self.base[i])
        clip_id, w = self.index[i]
        rng = item_rng(self.seed, self.epoch, clip_id, -1, "noise")
        if rng.random() < self.p:
            copy_ = self.copies[clip_id][int(rng.integers(self.k))]
            item[0] = torch.from_numpy(copy_[w : w + 1])
        return tuple(item)


def run_mode(prep: dict[str, Any], mode: str, epochs: int) -> dict[str, Any]:
    from emoflow.branches import BRANCH_STAGE
    from emoflow.paths import Layout
    from emoflow.protocols.folds import class_names
    from emoflow.storage.shards import open_shards
    from emoflow.study import class_list
    from emoflow.training.augment import augmented
    from emoflow.training.branch_data import branch_data, fold_roles
    from emoflow.training.loaders import epoch_seed, make_loader
    from emoflow.training.runtime import seed_everything, setup_runtime
    from emoflow.training.targets import clip_targets
    from emoflow.training.train import Step, build_model, train_epoch

    config = copy.deepcopy(prep["config"])
    kind, _, arg = mode.partition(" ")
    if kind in ("a", "b"):
        p = float(arg[1:]) if kind == "a" else 1.0
        config["augment"] = {"noise": {"dir": str(prep["noise"]), "snr_db": [5, 20], "p": p}}
    layout = Layout.of(config)
    tcfg = config["train"]
    setup_runtime(tcfg, 0)
    manifest = pd.read_parquet(layout.manifest)
    folds = pd.read_parquet(layout.folds)
    folds = folds[folds.fold == 0]
    classes = class_names(manifest, class_list(config))
    targets = clip_targets(manifest, classes)
    shards = open_shards([layout.shard("audio", k) for k in range(config["shards"])],
                         BRANCH_STAGE["audio"])  # fmt: skip
    roles, parts = fold_roles(folds, shards, targets, tcfg["target"])
    data = branch_data(config, "audio", shards, roles, targets, parts)
    data.train = augmented(config, "audio", data.train, 0, shards.spec, manifest)
    precompute = 0.0
    if kind == "b":
        t0 = time.perf_counter()
        data.train = CachedCopies(data.train, int(arg), 0.5)
        precompute = time.perf_counter() - t0
    _, model = build_model(config, "audio", len(classes), data, shards.spec)
    optimizer = torch.optim.AdamW(model.parameters(), lr=float(tcfg["lr"]))
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    step = Step(model, "audio", optimizer, scaler, torch.device("cpu"), data.norm, None,
                tcfg["target"], None)  # fmt: skip
    times = []
    for epoch in range(epochs):
        seed_everything(epoch_seed(0, epoch))
        if hasattr(data.train, "set_epoch"):
            data.train.set_epoch(epoch)
        loader = make_loader(data.train, int(tcfg["batch_size"]), True, 0, epoch)
        t0 = time.perf_counter()
        train_epoch(step, loader)
        times.append(time.perf_counter() - t0)
    shards.close()
    return {"mode": mode, "train_windows": len(data.train), "train_clips": len(roles["train"]),
            "precompute_s": round(precompute, 2), "epoch1_s": round(times[0], 2),
            "later_epoch_s": round(float(np.mean(times[1:])), 2) if epochs > 1 else None,
            }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path("/tmp/augbench"))
    parser.add_argument(
        "--corpus",
        type=Path,
        default=None,
        help="an existing demo corpus (default: generate --clips clips)",
    )
    parser.add_argument("--modes", nargs="*", default=["none", "a p0.5", "a p1.0", "b 4"])
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    prep = prepare(args.work, args.clips, args.corpus)
    rows = [run_mode(prep, m, args.epochs) for m in args.modes]
    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / "augment_epoch.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    for row in rows:
        print(row)


if __name__ == "__main__":
    main()
