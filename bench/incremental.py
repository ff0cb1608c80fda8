"""Benchmark of incremental reprocessing at dataset scale: +1 % new, +1 % changed, 1 % removed.

    .venv/bin/python bench/incremental.py --clips 5000 --shards 64

1. Full extraction for N clips = N x the compute cost of a clip + the time to build the N-clip
   shards from the cache (step 2). The compute cost of a clip: ``--full-clips`` distinct demo
   clips (default 48) extracted from scratch by `snakemake features` on 2 shards (one per core),
   minus the same run with every clip cached (its fixed costs), divided by the clip count.
2. The corpus of N clips: hard links of those distinct clips under distinct clip ids (so N
   manifest rows and N shard entries whose bytes are those of real clips), in ``--shards``
   shards, built once from the per-clip cache the full run filled. Hard links keep the shards
   the same size as N distinct clips of that length; what they do not reproduce is N distinct
   cache entries on disk (here the page cache holds the few distinct ones).
3. On that corpus, each timed by `snakemake features`: +1 % new clips (distinct new content,
   computed), +1 % changed clips (an existing clip id gets distinct new content), 1 % removed, then
   a no-op rerun, and the fixed cost of one cached shard job of each stage and of each stage's
   compute job when nothing is missing from the cache. Per run: seconds, fraction of full, clips
   computed, shards rewritten, bytes rewritten (whole shard files replaced) and bytes encoded (the
   ``encoded_bytes`` of the stage's compute job, when it ran, and of the shard jobs; a shard job
   without that field re-encodes its whole shard). Writes bench/results/incremental.csv. Figures,
   never pass/fail."""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
OUT = REPO / "bench" / "results"


def env() -> dict[str, str]:
    return dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")


def snakemake(cfg: Path, *args: str) -> float:
    """Run `snakemake features` with ``cfg``; return wall seconds."""
    cmd = [str(BIN / "snakemake"), "--configfile", str(cfg), "--cores", "2", *args, "features"]
    t = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, env=env(), check=True, capture_output=True)
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


def shard_state(out: Path) -> dict[str, tuple[int, int, int]]:
    """(inode, mtime_ns, size) of every shard file."""
    state = {}
    for path in sorted(out.glob("*/[0-9]*.h5")):
        st = path.stat()
        state[str(path.relative_to(out))] = (st.st_ino, st.st_mtime_ns, st.st_size)
    return state


def compute_state(out: Path) -> dict[str, int]:
    """mtime_ns of each stage's compute-job summary."""
    return {p.stem: p.stat().st_mtime_ns for p in sorted((out / "computed").glob("*.json"))}


def measure(cfg: Path, out: Path, what: str, clips: int) -> dict[str, object]:
    """Time one `snakemake features` run and count what it computed and rewrote."""
    before, jobs_before = shard_state(out), compute_state(out)
    seconds = snakemake(cfg)
    after, jobs_after = shard_state(out), compute_state(out)
    rewritten = [k for k, v in after.items() if before.get(k) != v]
    encoded = computed = 0
    for stage, mtime in jobs_after.items():  # the stage's compute job, when it ran
        if jobs_before.get(stage) != mtime:
            summary = json.loads((out / "computed" / f"{stage}.json").read_text())
            computed += len(summary["computed"])
            encoded += summary["encoded_bytes"]
    for key in rewritten:  # the shard jobs (they compute only what the compute job left out)
        summary = json.loads((out / key).with_suffix(".json").read_text())
        computed += len(summary["computed"])
        encoded += summary.get("encoded_bytes", after[key][2])
    return {"what": what, "clips": clips, "seconds": seconds, "computed": computed,
            "shards": len(rewritten), "rewritten": sum(after[k][2] for k in rewritten),
            "encoded": encoded, "total": sum(v[2] for v in after.values())}  # fmt: skip


def link(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    os.link(src, tmp)
    os.replace(tmp, dest)


def clip_name(root: Path, i: int, tag: str = "r") -> Path:
    """A RAVDESS-style path for clip number ``i`` (distinct ids, valid actor and emotion)."""
    actor, rep = 1 + i % 24, i // 24
    return (
        root
        / f"b{rep // 100:03d}"
        / f"Actor_{actor:02d}"
        / f"{tag}{rep:05d}"
        / (f"01-01-03-01-01-01-{actor:02d}.mp4")
    )


def cached_job_cost(cfg_json: Path, shard: int) -> dict[str, float]:
    """Wall seconds of one shard job of each stage whose clips are all cached, and of each
    stage's compute job with nothing to compute."""
    cost = {}
    for stage in ("audio", "faces"):
        for what, command, args in (("shard", "extract", ["--shard", str(shard)]),
                                    ("compute", "compute", [])):  # fmt: skip
            cmd = [str(BIN / "python"), "-m", "emoflow", f"{command}-{stage}",
                   "--config", str(cfg_json), *args, "--workers", "2"]  # fmt: skip
            t = time.perf_counter()
            subprocess.run(cmd, cwd=REPO, env=env(), check=True, capture_output=True)
            cost[f"{stage} {what}"] = time.perf_counter() - t
    return cost


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=5000)
    ap.add_argument("--shards", type=int, default=64)
    ap.add_argument("--full-clips", type=int, default=48)
    args = ap.parse_args()
    from emoflow.demo.corpus import make_demo_corpus

    n, extra = args.clips, max(1, args.clips // 100)
    with tempfile.TemporaryDirectory(prefix="emoflow-incr-") as tmp:
        work = Path(tmp)
        pool = make_demo_corpus(work / "pool", clips=args.full_clips + 2 * extra, seed=0)
        base, fresh = pool[: args.full_clips], pool[args.full_clips :]
        full_data = work / "full"
        for clip in base:
            link(clip, full_data / clip.relative_to(work / "pool"))
        full_cfg = write_cfg(work, "full", full_data, 2)
        t_full = snakemake(full_cfg)
        for shard in (work / "results" / "full").glob("*/[0-9]*.h5"):
            shard.unlink()
        per_clip = (t_full - snakemake(full_cfg)) / len(base)

        data, out = work / "data", work / "results" / "big"
        for i in range(n):
            link(base[i % len(base)], clip_name(data, i))
        cfg = write_cfg(work, "big", data, args.shards)
        rows = [measure(cfg, out, f"build {n} clips from the cache", n)]
        for j, clip in enumerate(fresh[:extra]):  # +1 %: new clip ids, new content
            link(clip, clip_name(data, n + j))
        rows.append(measure(cfg, out, f"+{extra} new clips (1 %)", n + extra))
        for j, clip in enumerate(fresh[extra:]):  # +1 %: same ids, new content
            link(clip, clip_name(data, 100 * j + 7))
            os.utime(clip_name(data, 100 * j + 7))  # a new mtime too, as an edit would give
        rows.append(measure(cfg, out, f"{extra} changed clips (1 %)", n + extra))
        for j in range(extra):  # 1 % removed
            clip_name(data, 100 * j + 53).unlink()
        rows.append(measure(cfg, out, f"{extra} removed clips (1 %)", n))
        rows.append(measure(cfg, out, "no-op rerun", n))
        job = cached_job_cost(out / "config.json", 0)

    full = per_clip * n + rows[0]["seconds"]
    OUT.mkdir(parents=True, exist_ok=True)
    head = ["what", "clips", "seconds", "of_full", "computed", "shards_rewritten",
            "mb_rewritten", "mb_encoded", "encoded_of_shards"]  # fmt: skip
    what = f"full: {per_clip:.3f} s/clip x {n} (on {len(base)}) + build from cache"
    table = [[what, n,
              f"{full:.1f}", "1.000", n, args.shards, "", "", ""]]  # fmt: skip
    for r in rows:
        table.append([r["what"], r["clips"], f"{r['seconds']:.1f}", f"{r['seconds'] / full:.3f}",
                      r["computed"], r["shards"], f"{r['rewritten'] / 1e6:.1f}",
                      f"{r['encoded'] / 1e6:.1f}", f"{r['encoded'] / r['total']:.3f}"])  # fmt: skip
    for key, s in job.items():
        stage, what = key.split()
        label = (f"one cached {stage} shard job (~{n // args.shards} clips)" if what == "shard"
                 else f"{stage} compute job, nothing to compute ({n} clips)")  # fmt: skip
        table.append([label, "", f"{s:.2f}", "", 0, int(what == "shard"), "", "", ""])
    with open(OUT / "incremental.csv", "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(head)
        w.writerows(table)
    widths = [max(len(str(x)) for x in col) for col in zip(head, *table, strict=True)]
    for line in [head, *table]:
        print("  ".join(str(x).ljust(w) if i == 0 else str(x).rjust(w)
                        for i, (x, w) in enumerate(zip(line, widths, strict=True))))  # fmt: skip


if __name__ == "__main__":
    main()
