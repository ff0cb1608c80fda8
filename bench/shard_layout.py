"""Benchmark of shard storage choices: compression and chunking per dataset, raw chunk copy.

    .venv/bin/python bench/shard_layout.py results/demo/faces/0.h5 results/demo/audio/0.h5

For each large dataset of the given shards (faces; logmel, mfcc) and each candidate
(chunk rows x filter), rewrite the dataset into a scratch file and report: size on disk, write
seconds (encode + write), the read cost per clip the way training reads (one clip's rows at a
time, clips in random order, a cold HDF5 chunk cache) and the cost of moving the clip to another
file by raw chunk copy (read_direct_chunk / write_direct_chunk) against decoding and encoding it.
Figures, never pass/fail; the page cache is warm, so reads measure decoding, not the disk.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

CANDIDATES = {
    "none": {},
    "lzf": {"compression": "lzf"},
    "gzip1": {"compression": "gzip", "compression_opts": 1},
    "gzip1+shuffle": {"compression": "gzip", "compression_opts": 1, "shuffle": True},
    "gzip4+shuffle": {"compression": "gzip", "compression_opts": 4, "shuffle": True},
}


def clip_rows(h5: h5py.File, name: str) -> list[tuple[int, int]]:
    """(first row, rows) of each clip in the dataset ``name``."""
    first, count = ("frame0", "nframes") if name == "faces" else ("window0", "nwindows")
    starts, counts = h5[f"clip_{first}"][()].tolist(), h5[f"clip_{count}"][()].tolist()
    return list(zip(starts, counts, strict=True))


def write(path: Path, data: np.ndarray, rows: int, filters: dict) -> float:
    t = time.perf_counter()
    with h5py.File(path, "w") as h5:
        h5.create_dataset("x", data=data, chunks=(rows, *data.shape[1:]), **filters)
    return time.perf_counter() - t


def read_clips(path: Path, clips: list[tuple[int, int]], repeat: int = 3) -> float:
    """Seconds per clip to read each clip's rows, random order, fresh file handle per pass."""
    order = np.random.default_rng(0).permutation(len(clips))
    best = float("inf")
    for _ in range(repeat):
        with h5py.File(path, "r") as h5:
            ds = h5["x"]
            t = time.perf_counter()
            for i in order:
                a, n = clips[i]
                ds[a : a + n]
            best = min(best, (time.perf_counter() - t) / len(clips))
    return best


def move_clips(src: Path, dst: Path, clips: list[tuple[int, int]], raw: bool) -> float:
    """Seconds per clip to move every clip into a new file: raw chunk copy or decode + encode.

    Raw copy needs chunk boundaries at clip starts (one row per chunk here)."""
    t = time.perf_counter()
    with h5py.File(src, "r") as s, h5py.File(dst, "w") as d:
        x = s["x"]
        y = d.create_dataset("x", shape=x.shape, dtype=x.dtype, chunks=x.chunks,
                             compression=x.compression, compression_opts=x.compression_opts,
                             shuffle=x.shuffle)  # fmt: skip
        for a, n in clips:
            if raw:
                for r in range(a, a + n):
                    mask, blob = x.id.read_direct_chunk((r,) + (0,) * (x.ndim - 1))
                    y.id.write_direct_chunk((r,) + (0,) * (x.ndim - 1), blob, mask)
            else:
                y[a : a + n] = x[a : a + n]
    return (time.perf_counter() - t) / len(clips)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("shards", nargs="+", type=Path)
    args = ap.parse_args()
    print(f"{'dataset':8} {'chunk':>5} {'filter':14} {'MB':>7} {'ratio':>6} {'write s':>8} "
          f"{'read ms/clip':>12} {'raw move':>9} {'re-encode':>9}")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="emoflow-layout-") as tmp:
        for shard in args.shards:
            with h5py.File(shard, "r") as h5:
                names = [n for n in ("faces", "logmel", "mfcc") if n in h5]
                for name in names:
                    data, clips = h5[name][()], clip_rows(h5, name)
                    chunk_rows = (1, 16) if name == "faces" else (1,)
                    for rows in chunk_rows:
                        for label, filters in CANDIDATES.items():
                            f = Path(tmp) / "x.h5"
                            w = write(f, data, rows, filters)
                            size = h5py.File(f, "r")["x"].id.get_storage_size()
                            r = read_clips(f, clips) * 1e3
                            moved = ""
                            if rows == 1:
                                raw = move_clips(f, Path(tmp) / "y.h5", clips, True) * 1e3
                                enc = move_clips(f, Path(tmp) / "y.h5", clips, False) * 1e3
                                moved = f"{raw:>7.2f}ms {enc:>7.2f}ms"
                            ratio = size / data.nbytes
                            print(f"{name:8} {rows:>5} {label:14} {size / 1e6:>7.2f} "
                                  f"{ratio:>6.3f} {w:>8.3f} {r:>12.3f} {moved}")  # fmt: skip


if __name__ == "__main__":
    main()
