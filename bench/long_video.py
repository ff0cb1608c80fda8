"""Peak memory and time of one long video through the extraction jobs and ``emoflow predict``.

    .venv/bin/python bench/long_video.py --minutes 1 5 15

For each length, builds a talking-face video by concatenating demo clips (``make demo`` writes
them to data/demo; stream copy, as bench/predict.py does), makes a one-clip corpus of it with
the default ``audio`` and ``faces`` settings (16 face samples per 3 s window, 112-pixel crops),
and runs, each as its own process, the commands the Snakemake rules run:
``emoflow compute-audio`` / ``compute-faces`` (the featurizer, into the per-clip cache) and
``extract-audio`` / ``extract-faces`` (the shard job: cache entry -> shard), then
``emoflow predict`` with the demo model. Peak RSS is the largest resident set of the command's
process tree (``wait4``'s ``ru_maxrss``: the command or any child it waited for, ffmpeg
included). The largest HDF5 chunk of each shard is reported too. Prints a table and writes
bench/results/long_video.csv, whose rows carry ``--label`` (default ``current``; rows of other
labels stay, so a ``before`` table can sit beside the figures after a change). Figures, never
pass/fail.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from predict import replace_label_rows  # noqa: E402

RESULTS_CSV = REPO / "bench" / "results" / "long_video.csv"
CLI = str(Path(sys.executable).parent / "emoflow")
CLIP_NAME = "01-01-03-01-01-01-01.mp4"  # a RAVDESS name: one actor, one clip


def run_measured(args: list[str]) -> tuple[float, float]:
    """Run ``args``; return (peak RSS in MiB of its process tree, wall seconds)."""
    t = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = proc.stderr.read() if proc.stderr else b""
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(args[:3])} failed:\n{stderr.decode(errors='replace')[-2000:]}")
    return usage.ru_maxrss / 1024, seconds  # ru_maxrss is in KiB on Linux


def max_chunk_kib(path: Path) -> float:
    """The largest chunk (uncompressed bytes) of any chunked dataset of an HDF5 file."""
    largest = 0
    with h5py.File(path, "r") as h5:
        for name in h5:
            ds = h5[name]
            if ds.chunks:
                largest = max(largest, int(np.prod(ds.chunks)) * ds.dtype.itemsize)
    return largest / 1024


def corpus_config(video: Path, root: Path, openface: Path | None = None) -> Path:
    """A one-clip corpus of ``video`` with default settings (the OpenFace backend with
    ``openface``, its FeatureExtraction); its scanned config JSON."""
    from emoflow.config import validate_config
    from emoflow.datasets.manifest import refresh

    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    if not (data / CLIP_NAME).exists():
        os.link(video, data / CLIP_NAME)
    raw = {"dataset": {"name": "long", "adapter": "ravdess", "root": str(data)},
           "results": str(root / "results"), "shards": 1,
           "execution": {"workers": 1}}  # fmt: skip
    if openface is not None:
        raw["faces"] = {"backend": "openface", "openface": {"bin": str(openface)}}
        raw["results"] = str(root / "results-openface")
    cfg = validate_config(raw)
    refresh(cfg)
    path = root / ("config-openface.json" if openface else "config.json")
    path.write_text(json.dumps(cfg, default=str))
    return path


def measure(
    minutes: float, clips: list[Path], model: Path, tmp: Path, openface: Path | None = None
) -> list[list]:
    """The rows of one video length (and the OpenFace backend's compute job with ``openface``,
    its FeatureExtraction)."""
    from predict import long_clip

    root = tmp / f"m{minutes:g}"
    root.mkdir()
    video = long_clip(clips, minutes * 60, root / "long.mp4")
    cfg = corpus_config(video, root / "corpus")
    results = root / "corpus" / "results" / "long"
    rows = []
    for stage in ("audio", "faces"):
        for job, args in (("compute", [CLI, f"compute-{stage}", "--config", str(cfg),
                                       "--workers", "1"]),
                          ("shard job", [CLI, f"extract-{stage}", "--config", str(cfg),
                                         "--shard", "0", "--workers", "1"])):  # fmt: skip
            rss, s = run_measured(args)
            chunk = max_chunk_kib(results / stage / "0.h5") if job == "shard job" else None
            rows.append([minutes, f"{stage} {job}", rss, s, chunk])
    args = [CLI, "predict", str(video), "--model", str(model), "--out", str(root / "pred")]
    rss, s = run_measured(args)
    rows.append([minutes, "predict (demo model)", rss, s, None])
    if openface is not None:  # FeatureExtraction's own memory is part of the peak
        cfg = corpus_config(video, root / "corpus", openface)
        rss, s = run_measured([CLI, "compute-faces", "--config", str(cfg), "--workers", "1"])
        rows.append([minutes, "faces compute (openface)", rss, s, None])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=REPO / "results/demo/model")
    ap.add_argument("--data", type=Path, default=REPO / "data/demo", help="demo clips")
    ap.add_argument("--minutes", type=float, nargs="+", default=[1.0, 5.0, 15.0])
    ap.add_argument("--label", default="current", help="the rows' label in the CSV")
    ap.add_argument("--openface", type=Path, help="FeatureExtraction: add the OpenFace backend's "
                    "compute job (see shared/notes/openface-build.md)")  # fmt: skip
    args = ap.parse_args()
    clips = sorted(args.data.resolve().rglob("*.mp4"))
    if not clips or not (args.model / "bundle.json").is_file():
        sys.exit("needs the demo corpus and model: run `make demo` first (or --data/--model)")
    rows = []
    with tempfile.TemporaryDirectory(prefix="emoflow-bench-long-") as tmp:
        for minutes in args.minutes:
            rows += measure(minutes, clips, args.model.resolve(), Path(tmp), args.openface)
    head = ("minutes", "stage", "peak RSS MiB", "seconds", "max chunk KiB")
    print("\n{:>7} {:26} {:>12} {:>8} {:>13}".format(*head))
    for m, stage, rss, s, chunk in rows:
        shown = f"{chunk:13.1f}" if chunk is not None else f"{'-':>13}"
        print(f"{m:7g} {stage:26} {rss:12.1f} {s:8.2f} {shown}")
    fields = ["label", "minutes", "stage", "peak_rss_mib", "seconds", "max_chunk_kib"]
    new = [dict(zip(fields, (args.label, f"{m:g}", stage, f"{rss:.1f}", f"{s:.2f}",
                             "" if chunk is None else f"{chunk:.1f}"), strict=True))
           for m, stage, rss, s, chunk in rows]  # fmt: skip
    replace_label_rows(RESULTS_CSV, fields, args.label, new)


if __name__ == "__main__":
    main()
