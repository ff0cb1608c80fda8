"""Benchmark of incremental reprocessing: full vs +1 % clips vs no-op reruns of extraction.

    .venv/bin/python bench/incremental.py --clips 200 --noop-clips 10000

1. A demo corpus of M distinct clips: time `snakemake features` from clean (full), add 1 % new
   clips and time the rerun (incremental), then time a rerun with nothing changed (no-op).
2. The no-op rerun at dataset scale: N clips that are hard links of one demo clip (distinct
   clip ids, so distinct manifest rows and shard entries), extracted once from a primed per-clip
   cache, then timed with nothing changed.
Prints a table and writes bench/results/incremental.csv. Figures, never pass/fail.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
OUT = REPO / "bench" / "results"


def snakemake(cfg: Path, *args: str) -> float:
    """Run `snakemake features` with ``cfg``; return wall seconds."""
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    cmd = [str(BIN / "snakemake"), "--configfile", str(cfg), "--cores", "2", *args, "features"]
    t = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, env=env, check=True, capture_output=True)
    return time.perf_counter() - t


def write_cfg(work: Path, name: str, data: Path, shards: int) -> Path:
    cfg = {
        "dataset": {"name": name, "adapter": "ravdess", "root": str(data)},
        "results": str(work / "results"),
        "shards": shards,
        "cache": {"dir": str(work / "cache")},
    }
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def computed(work: Path, name: str) -> int:
    total = 0
    for stage in ("audio", "faces"):
        for summary in (work / "results" / name / stage).glob("*.json"):
            total += len(json.loads(summary.read_text())["computed"])
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=200)
    ap.add_argument("--noop-clips", type=int, default=10_000)
    ap.add_argument("--shards", type=int, default=8)
    args = ap.parse_args()
    from emoflow.demo import make_demo_corpus

    rows = []
    with tempfile.TemporaryDirectory(prefix="emoflow-incr-") as tmp:
        work = Path(tmp)
        extra = max(1, args.clips // 100)
        pool = work / "pool"
        clips = make_demo_corpus(pool, clips=args.clips + extra, seed=0)
        data = work / "data"
        for clip in clips[: args.clips]:
            dest = data / clip.relative_to(pool)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.link(clip, dest)
        cfg = write_cfg(work, "incr", data, args.shards)
        full = snakemake(cfg)
        rows.append(("full extraction", args.clips, full, computed(work, "incr")))
        for clip in clips[args.clips :]:
            dest = data / clip.relative_to(pool)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.link(clip, dest)
        incr = snakemake(cfg)
        rows.append((f"+{extra} clips (1 %)", args.clips + extra, incr, None))
        noop = snakemake(cfg)
        rows.append(("no-op rerun", args.clips + extra, noop, None))

        # dataset scale: N hard links of one clip, cache primed by a one-clip run
        big = work / "big"
        one = clips[0]
        prime = work / "prime"
        (prime / one.parent.name).mkdir(parents=True)
        os.link(one, prime / one.parent.name / one.name)
        snakemake(write_cfg(work, "prime", prime, 1))
        for i in range(args.noop_clips):
            actor, rep = 1 + i % 24, i // 24
            d = big / f"batch{rep // 100:03d}" / f"Actor_{actor:02d}"
            name = d / f"r{rep:04d}" / f"01-01-03-01-01-01-{actor:02d}.mp4"
            name.parent.mkdir(parents=True, exist_ok=True)
            os.link(one, name)
        bcfg = write_cfg(work, "big", big, args.shards)
        first = snakemake(bcfg)
        rows.append((f"{args.noop_clips} clips from primed cache", args.noop_clips, first, None))
        noop_big = snakemake(bcfg)
        rows.append((f"no-op rerun, {args.noop_clips} clips", args.noop_clips, noop_big, None))
        shutil.rmtree(work / "results", ignore_errors=True)

    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / "incremental.csv", "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["what", "clips", "seconds"])
        w.writerows([(r[0], r[1], f"{r[2]:.2f}") for r in rows])
    print(f"{'what':40} {'clips':>6} {'seconds':>8}")
    for r in rows:
        print(f"{r[0]:40} {r[1]:>6} {r[2]:>8.2f}")
    print(f"incremental / full: {incr / full:.3f}; no-op / full: {noop / full:.3f}")


if __name__ == "__main__":
    main()
