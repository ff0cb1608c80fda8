"""Benchmark of the extraction stages against the ffmpeg-decode floor.

    .venv/bin/python bench/extract.py --clips 32 --rss-clips 50 200

Per clip: (a) ffmpeg decode alone (audio to 16 kHz + the frames at the grid's sample times: the
floor), (b) the audio stage, (c) the face stage (embedded backend), each on 1 and 2 workers, as
clips/s; and the peak RSS of a whole shard job (a fresh process) for two corpus sizes, which must be
flat. Prints a table and writes bench/results/extract.csv. Figures, never pass/fail."""

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

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "results"


def make_corpus(root: Path, clips: int, unique: int) -> None:
    """``clips`` demo clips: ``unique`` generated ones, the rest renamed copies (new clip ids)."""
    from emoflow.demo.corpus import make_demo_corpus

    src = make_demo_corpus(root / "_src", clips=unique, seed=0)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(clips):
        p = src[i % len(src)]
        actor = 1 + i // len(src)
        name = p.name.rsplit("-", 1)[0] + f"-{actor:02d}.mp4"
        dest = root / f"copy{i // len(src):03d}" / name
        dest.parent.mkdir(exist_ok=True)
        if not dest.exists():
            os.link(p, dest)


def config_file(work: Path, data: Path, name: str) -> Path:
    cfg = {
        "dataset": {"name": name, "adapter": "ravdess", "root": str(data)},
        "results": str(work / "results"),
        "shards": 1,
        "cache": {"dir": str(work / f"cache-{name}")},
    }
    path = work / f"{name}.json"
    path.write_text(json.dumps(cfg))
    return path


def run_stage(cfg: Path, stage: str, workers: int) -> tuple[float, float]:
    """Run one shard job in a fresh process: (wall seconds, peak RSS MiB of the job)."""
    code = (
        "import resource, sys, time, json;"
        "from emoflow.config import load_config;"
        "from emoflow.extraction.shard_job import run_shard;"
        "from emoflow.datasets.manifest import refresh;"
        f"c = load_config({str(cfg)!r}); refresh(c); t = time.perf_counter();"
        f"run_shard(c, {stage!r}, 0, {workers});"
        "dt = time.perf_counter() - t;"
        "rss = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,"
        " resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024;"
        "print(json.dumps([dt, rss]))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    dt, rss = json.loads(proc.stdout.strip().splitlines()[-1])
    return dt, rss


def decode_floor(data: Path) -> float:
    """Mean seconds per clip to decode the audio and the frames at the grid's sample times
    (16 per 3 s window; ffmpeg only)."""
    from emoflow.media.ffmpeg import FrameStream, decode_audio, probe
    from emoflow.media.grid import TimeGrid

    grid = TimeGrid(16000, 3.0, 1.5, "pad", 16)
    clips = sorted(data.rglob("*.mp4"))
    t = time.perf_counter()
    for clip in clips:
        info = probe(clip)
        decode_audio(clip, 16000, info=info)
        stream = FrameStream(clip, grid.frame_times(info.duration_s, info.fps), grid.rate, info)
        for _ in stream.chunks():
            pass
        stream.finish()
    return (time.perf_counter() - t) / len(clips)


def audio_decode_floor(data: Path) -> float:
    """Mean seconds per clip to probe + decode the audio alone (the audio stage's floor)."""
    from emoflow.media.ffmpeg import decode_audio, probe

    clips = sorted(data.rglob("*.mp4"))
    t = time.perf_counter()
    for clip in clips:
        decode_audio(clip, 16000, info=probe(clip))
    return (time.perf_counter() - t) / len(clips)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=32, help="clips for the speed figures")
    ap.add_argument("--rss-clips", type=int, nargs=2, default=[50, 200], help="two corpus sizes")
    args = ap.parse_args()
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="emoflow-bench-") as tmp:
        work = Path(tmp)
        data = work / "speed"
        make_corpus(data, args.clips, unique=args.clips)
        n = args.clips
        floor_audio = audio_decode_floor(data)
        floor_all = decode_floor(data)
        rows.append(
            {
                "what": "ffmpeg: probe + audio decode (floor of audio)",
                "clips": n,
                "workers": 1,
                "s_per_clip": floor_audio,
                "clips_per_s": 1 / floor_audio,
            }
        )
        rows.append(
            {
                "what": "ffmpeg: audio + grid frames (floor of both)",
                "clips": n,
                "workers": 1,
                "s_per_clip": floor_all,
                "clips_per_s": 1 / floor_all,
            }
        )
        for stage in ("audio", "faces"):
            for workers in (1, 2):
                cfg = config_file(work, data, f"{stage}{workers}")
                dt, rss = run_stage(cfg, stage, workers)
                rows.append({"what": f"{stage} stage (embedded faces)" if stage == "faces"
                             else "audio stage", "clips": n, "workers": workers,
                             "s_per_clip": dt / n * workers, "clips_per_s": n / dt,
                             "peak_rss_mib": rss})  # fmt: skip
        for size in args.rss_clips:
            d = work / f"rss{size}"
            make_corpus(d, size, unique=min(size, 16))
            for stage in ("audio", "faces"):
                dt, rss = run_stage(config_file(work, d, f"rss{stage}{size}"), stage, 2)
                rows.append({"what": f"{stage} stage, peak RSS", "clips": size, "workers": 2,
                             "s_per_clip": dt / size * 2, "clips_per_s": size / dt,
                             "peak_rss_mib": rss})  # fmt: skip
    OUT.mkdir(parents=True, exist_ok=True)
    keys = ["what", "clips", "workers", "s_per_clip", "clips_per_s", "peak_rss_mib"]
    with open(OUT / "extract.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, keys, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    print(f"{'what':48} {'clips':>5} {'wrk':>3} {'s/clip·core':>11} {'clips/s':>8} {'RSS MiB':>8}")
    for r in rows:
        rss = r.get("peak_rss_mib")
        print(f"{r['what']:48} {r['clips']:>5} {r['workers']:>3} {r['s_per_clip']:>11.3f} "
              f"{r['clips_per_s']:>8.2f} {'' if rss is None else f'{rss:8.0f}':>8}")  # fmt: skip
    print(f"audio stage / audio-decode floor per clip (1 worker): "
          f"{rows[2]['s_per_clip'] / floor_audio:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
