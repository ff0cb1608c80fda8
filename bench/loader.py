"""Loader throughput: the training Datasets/DataLoaders exactly as `train` builds them, no model.

    .venv/bin/python bench/loader.py --clips 1000 --workers 0 1 2

A generated corpus (bench/synthetic.py: real shard sizes, 3.2 s clips) is written once; then for
each branch and worker count, one DataLoader epoch over the training windows (shuffled, batch 16,
pinned memory as on a GPU) is timed twice: the first epoch reads the shards, the second is served
from the datasets' memory cache (what every later epoch sees). Each run is a fresh process, so its
peak RSS is its own. Dataset construction (which reads every clip once to index its windows) is
timed separately. Prints a table and writes bench/results/loader.csv. Figures, never pass/fail."""

from __future__ import annotations

import argparse
import csv
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "results"


def one_run(folder: Path, branch: str, workers: int, clips: int, batch: int) -> dict:
    """Time one branch with ``workers`` loader workers (in this process)."""
    import torch

    from emoflow.storage.shards import open_shards
    from emoflow.training.datasets import AudioWindows, FaceWindows
    from emoflow.training.loaders import make_loader
    from emoflow.training.targets import Targets

    sys.path.insert(0, str(REPO / "bench"))
    from synthetic import clip_ids, label_of

    ids = clip_ids(clips)
    targets = Targets(clips={c: (label_of(c), 0.0, 0.0) for c in ids})
    kind = "audio" if branch == "audio" else "faces"
    shards = open_shards(sorted((folder / kind).glob("*.h5")), kind)
    t = time.perf_counter()
    if branch == "audio":
        ds = AudioWindows(shards, ids, targets)
    else:
        ds = FaceWindows(shards, ids, targets, size=64, gray=True)
    build = time.perf_counter() - t
    epochs = []
    for epoch in range(2):
        loader = make_loader(ds, batch, shuffle=True, seed=0, epoch=epoch, num_workers=workers,
                             pin_memory=torch.cuda.is_available())  # fmt: skip
        t = time.perf_counter()
        n = 0
        for item in loader:
            n += len(item[-2])
        epochs.append(time.perf_counter() - t)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rss_children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {
        "branch": branch, "workers": workers, "samples": n, "build_s": round(build, 2),
        "epoch1_s": round(epochs[0], 2), "epoch2_s": round(epochs[1], 2),
        "epoch1_samples_per_s": round(n / epochs[0]), "epoch2_samples_per_s": round(n / epochs[1]),
        "peak_rss_mib": round(max(rss, rss_children)),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=1000)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--folder", type=Path, help="reuse (or make) the corpus here")
    parser.add_argument("--child", nargs=3, metavar=("FOLDER", "BRANCH", "WORKERS"))
    args = parser.parse_args()
    if args.child:
        folder, branch, workers = Path(args.child[0]), args.child[1], int(args.child[2])
        print(json.dumps(one_run(folder, branch, workers, args.clips, args.batch)))
        return
    sys.path.insert(0, str(REPO / "bench"))
    from synthetic import make_shards

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.folder or Path(tmp)
        if not (folder / "faces").exists():
            t = time.perf_counter()
            make_shards(folder, args.clips, args.shards)
            print(f"corpus: {args.clips} clips in {args.shards} shards, "
                  f"{time.perf_counter() - t:.1f} s to write")  # fmt: skip
        sizes = {
            k: sum(p.stat().st_size for p in (folder / k).glob("*.h5")) for k in ("audio", "faces")
        }
        print("shard bytes: " + ", ".join(f"{k} {v / 2**20:.0f} MiB" for k, v in sizes.items()))
        rows = []
        for branch in ("audio", "visual"):
            for workers in args.workers:
                cmd = [sys.executable, __file__, "--clips", str(args.clips), "--batch",
                       str(args.batch), "--child", str(folder), branch, str(workers)]  # fmt: skip
                out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
                rows.append(json.loads(out.strip().splitlines()[-1]))
                print(rows[-1])
    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / "loader.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    print("\n| branch | workers | build s | epoch 1 samples/s | epoch 2 samples/s | peak RSS MiB |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['branch']} | {r['workers']} | {r['build_s']} | {r['epoch1_samples_per_s']} "
              f"| {r['epoch2_samples_per_s']} | {r['peak_rss_mib']} |")  # fmt: skip


if __name__ == "__main__":
    main()
