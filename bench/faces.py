"""Benchmark of the face stage, side by side with OpenFace and the ffmpeg decode floor.

    .venv/bin/python bench/faces.py --clips 16 [--openface /tmp/openface/bin/FeatureExtraction]
        [--long]

On the same N demo clips (320 x 320, made by the demo corpus generator) and the same clips
re-encoded at 1280 x 720 (the square picture centred, padded), with the same worker count
(and at 176 x 144, faces of about 45 px, for the embedded backend's small-face detection rate):

- OpenFace per clip: ``FeatureExtraction -f clip`` on the whole video, one call per clip (as
  MMSA-FET and MERBench call it), ``workers`` calls at a time; only with ``--openface``;
- the emoflow face stage (one shard job in a fresh process, nothing cached) with the OpenFace
  backend (only with ``--openface``) and with the embedded backend; each again with the clips'
  probes already cached (``clips probed``: as in a workflow where another stage,
  audio say, met the clips first; :mod:`emoflow.media.probe_cache`); at 1280 x 720 also with
  ``faces.max_side: 1280`` (full-resolution alignment);
- the decode floor: the probe (``media.ffprobe``, in-process by default:
  :mod:`emoflow.media.libav_probe`) + ffmpeg decoding the frames at the grid's sample times (16
  per 3 s window), as the face stage decodes them, ``workers`` clips at a time; and ffmpeg alone
  (the probes made before, untimed: the floor of the ``clips probed`` row).

With ``--ffprobe BIN`` (e.g. ``ffprobe``, Debian's), also the floor and the embedded stage
probing with that binary (the default before the in-process probe), for a before/after table.
With ``--no-track-rows``, also the embedded stage (and with the clips probed) without landmark
tracking (:data:`emoflow.faces.embedded.TRACK_DEFAULT` off: a HOG search on every sampled
frame, the policy before it), for a before/after table in one run; ``--only`` runs only the
named videos (e.g. ``320x320,640x360 60s``). With ``--free-landmarks``, also the embedded stage
with a landmarker that costs nothing: dlib's 68-point fits recorded in a first run (untimed) and
looked up by frame and box, the model never loaded (a bound on what a cheaper landmarker gives).

With ``--long``, the same rows (less the 1280 x 720 one) for long clips at 640 x 360:
``--long-clips`` (2) clips of 60 s and as many of 5 minutes, each a demo clip looped, scaled to
360 px and padded; there OpenFace per clip reads every frame of the video and the face stage its
grid's 16 frames per 3 s window.

The face stage's runs each have their own cache folder (nothing cached), except the embedded
backend's detector serialization (``<cache>/models``, made untimed first: a project makes it in its
first face job, :func:`emoflow.faces.embedded.frontal_detector`) and the tools' versions and the
landmark model's sha256 (``<cache>/files``, :mod:`emoflow.storage.file_memo`, likewise).

Prints a table of clips/s, milliseconds per second of video, time relative to the floor and speed
relative to OpenFace per clip, and the share of sampled frames with a face; writes
bench/results/faces.csv. Figures, never pass/fail."""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "results"
KEYS = ["what", "video", "clips", "workers", "seconds", "clips_per_s", "video_s",
        "ms_per_video_s", "x_floor", "x_openface", "face_frames", "face_px"]  # fmt: skip


RESIZED = {
    "1280x720": "scale=720:720,pad=1280:720:280:0",
    "176x144": "scale=100:100,pad=176:144:38:22",
}
"""The re-encodings of the demo clips, the square picture centred (at 176 x 144 scaled to 100 px,
so that its faces are about 45 px tall, as in the small videos of in-the-wild corpora)."""


LONG = {"640x360 60s": 60, "640x360 300s": 300}
"""The long clips (``--long``): name -> seconds."""


def make_corpora(work: Path, clips: int, long_clips: int = 0) -> dict[str, Path]:
    """The demo clips, their re-encodings (:data:`RESIZED`, same relative paths) and, with
    ``long_clips``, that many of the first demo clips looped to each length of :data:`LONG`."""
    from emoflow.demo.corpus import make_demo_corpus

    demo = work / "demo"
    paths = make_demo_corpus(demo, clips=max(clips, long_clips), seed=0)
    corpora = {"320x320": demo}
    jobs = [(size, ["-i", str(p), "-vf", vf, "-c:a", "copy"], p)
            for size, vf in RESIZED.items() for p in paths[:clips]]  # fmt: skip
    if long_clips:
        jobs += [(name, ["-stream_loop", "-1", "-i", str(p), "-t", str(sec),
                         "-vf", "scale=360:360,pad=640:360:140:0", "-c:a", "aac"], p)
                 for name, sec in LONG.items() for p in paths[:long_clips]]  # fmt: skip
    for name, args, p in jobs:
        corpora[name] = work / name.replace(" ", "-")
        dest = corpora[name] / p.relative_to(demo)
        dest.parent.mkdir(parents=True, exist_ok=True)
        cmd = ["ffmpeg", "-nostdin", "-y", "-v", "error", *args, "-c:v", "libx264",
               "-preset", "fast", "-crf", "18", "-pix_fmt", "yuv420p", str(dest)]  # fmt: skip
        subprocess.run(cmd, check=True, capture_output=True, timeout=600)
    for p in paths[clips:]:  # made only to be looped
        p.unlink()
    return corpora


def video_seconds(data: Path) -> float:
    """Seconds of video of the clips under ``data`` (the probe's durations)."""
    from emoflow.media.ffmpeg import probe

    return sum(probe(p).video_duration_s or probe(p).duration_s or 0.0
               for p in sorted(data.rglob("*.mp4")))  # fmt: skip


def config_file(
    work: Path, data: Path, name: str, faces: dict[str, Any], media: dict[str, Any] | None = None
) -> Path:
    """A config for one run (its own results and cache folders: nothing is cached)."""
    name = name.replace(" ", "-")
    cfg = {
        "dataset": {"name": name, "adapter": "ravdess", "root": str(data)},
        "results": str(work / "results"),
        "shards": 1,
        "cache": {"dir": str(work / f"cache-{name}")},
        "faces": faces,
        "media": media or {},
    }
    path = work / f"{name}.json"
    path.write_text(json.dumps(cfg))
    return path


FREE_LANDMARKS = """
import atexit, hashlib, os, pickle, numpy as np, dlib
import emoflow.faces.embedded as E
def key(frame, box):
    return hashlib.blake2b(np.ascontiguousarray(frame[::7, ::7]).tobytes()
                           + np.asarray(box, np.float64).tobytes(), digest_size=16).digest()
if {record}:
    fit, fits = E.landmarks_for, {{}}
    def landmarks_for(frame, box):
        fits[key(frame, box)] = pts = fit(frame, box)
        return pts
    E.landmarks_for = landmarks_for
    atexit.register(lambda: pickle.dump(fits, open({table!r}, "wb")))
else:
    fits = pickle.load(open({table!r}, "rb"))
    def landmarks_for(frame, box):
        pts = fits.get(key(frame, box))
        if pts is None:  # not a fit of the recorded run: the bound would be wrong, stop
            os._exit(3)
        return pts.copy()
    E.landmarks_for = landmarks_for
    dlib.shape_predictor = lambda path: None
"""
"""``--free-landmarks``: code run before the face stage. ``record``: dlib's landmark fits are
kept, by frame and box, in ``table``; else they are looked up there, and the 68-point model is
not loaded: the stage as it would run with a landmarker that costs nothing (a fit that was not
recorded ends the run)."""


def run_face_stage(
    cfg: Path, workers: int, probed: bool = False, track: bool = True, prelude: str = ""
) -> tuple[float, float, float]:
    """One face shard job in a fresh process: (wall seconds, share of frames with a face,
    median height of the chosen face boxes in decoded-frame pixels). ``probed``: the clips'
    probes are in the cache first (untimed), as when another stage met the clips before.
    ``track``: False turns the embedded backend's landmark tracking off (the policy before it,
    :data:`emoflow.faces.embedded.TRACK_DEFAULT`). ``prelude``: code run first
    (:data:`FREE_LANDMARKS`)."""
    code = prelude + (
        "import json, time, h5py;"
        f"import emoflow.faces.embedded as E; E.TRACK_DEFAULT = E.TRACK_DEFAULT and {track};"
        "from emoflow.config import load_config, cache_dir, results_dir;"
        "from emoflow.extraction.shard_job import run_shard;"
        "from emoflow.media.probe_cache import ProbeCache;"
        "from emoflow.datasets.manifest import refresh, read_shard_list;"
        f"c = load_config({str(cfg)!r}); refresh(c);"
        "pc = ProbeCache(cache_dir(c), c['media']);"
        f"[pc.info(p, s) for _, s, p in read_shard_list(results_dir(c) / 'shards' / '0.json')"
        f" if {probed}];"
        "from emoflow.faces.embedded import frontal_detector;"
        "c['faces']['backend'] == 'embedded' and frontal_detector(cache_dir(c) / 'models');"
        "from emoflow.extraction.specs import stage_cache;"
        "from emoflow.media.ffmpeg import ffmpeg_version, probe_version;"
        "stage_cache(c, 'faces'); probe_version(c['media']['ffprobe']);"
        "from emoflow.storage.file_memo import forget;"
        "ffmpeg_version.cache_clear(); forget();"
        "t = time.perf_counter();"
        f"run_shard(c, 'faces', 0, {workers}); dt = time.perf_counter() - t;"
        "h5 = h5py.File(results_dir(c) / 'faces' / '0.h5', 'r');"
        "import numpy as np; m = h5['mask'][()] if 'mask' in h5 else np.zeros(0, bool);"
        "b = h5['boxes'][()][m] if 'boxes' in h5 else np.zeros((0, 4));"
        "px = float(np.median(b[:, 3] - b[:, 1])) if len(b) else 0.0;"
        "print(json.dumps([dt, float(m.mean()) if len(m) else 0.0, px]))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"face stage failed: {proc.stderr[-2000:]}")
    dt, share, px = json.loads(proc.stdout.strip().splitlines()[-1])
    return dt, share, px


def _decode_one(path: str, info: Any = None, ffprobe: str = "bundled") -> int:
    """Probe a clip with ``ffprobe`` (unless ``info`` is its probe) and decode its frames at the
    face grid's sample times (default config)."""
    from emoflow.media.ffmpeg import FrameStream, probe
    from emoflow.media.grid import TimeGrid

    grid = TimeGrid(16000, 3.0, 1.5, "pad", 16)
    info = info or probe(path, ffprobe)
    duration = info.video_duration_s or info.duration_s or 0.04
    stream = FrameStream(path, grid.frame_times(duration, info.fps), grid.rate, info)
    n = sum(len(chunk) for chunk in stream.chunks())
    stream.finish()
    return n


def decode_floor(data: Path, workers: int, probed: bool = False, ffprobe: str = "bundled") -> float:
    """Wall seconds to probe (with ``ffprobe``, :mod:`emoflow.media.ffmpeg`'s ``probe``) and
    decode every clip's sampled frames, ``workers`` at a time (``probed``: decode only, the
    probes made before, untimed)."""
    from emoflow.media.ffmpeg import probe

    clips = [str(p) for p in sorted(data.rglob("*.mp4"))]
    infos = [probe(p) if probed else None for p in clips]
    t = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers) as pool:
        list(pool.map(_decode_one, clips, infos, [ffprobe] * len(clips)))
    return time.perf_counter() - t


def openface_per_clip(binary: Path, data: Path, work: Path, workers: int) -> float:
    """Wall seconds for FeatureExtraction on each whole video (one call per clip)."""
    from emoflow.faces.openface import OpenFaceBackend, resolve_binary

    model = "model/main_clnf_general.txt"
    binary, model_path = resolve_binary(str(binary), model)
    flags = OpenFaceBackend(binary, model, model_path=model_path).flags
    clips = sorted(data.rglob("*.mp4"))

    def one(i: int) -> None:
        out = work / f"of-{data.name}-{i}"
        cmd = [str(binary), "-f", str(clips[i]), "-out_dir", str(out), *flags]
        proc = subprocess.run(cmd, cwd=binary.parent, capture_output=True, timeout=900)
        if proc.returncode != 0 or not list(out.glob("*.csv")):
            raise RuntimeError(f"OpenFace failed on {clips[i]}: {proc.stderr[-500:]!r}")

    t = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, range(len(clips))))
    return time.perf_counter() - t


def measure(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    """All rows of the table, per video size (and long clip length)."""
    rows: list[dict[str, Any]] = []
    w = args.workers
    corpora = make_corpora(work, args.clips, args.long_clips if args.long else 0)
    for video, data in corpora.items():
        if args.only and video not in args.only.split(","):
            continue
        n = len(list(data.rglob("*.mp4")))
        base = {"video": video, "clips": n, "workers": w, "video_s": round(video_seconds(data), 2)}
        floor = decode_floor(data, w)
        runs: list[tuple[str, float | None, tuple[float, float] | None]]
        decode_only = decode_floor(data, w, probed=True)
        runs = [("ffmpeg decode floor", floor, None),
                ("ffmpeg decode floor, clips probed", decode_only, None)]  # fmt: skip
        of_s = None
        if args.openface and video != "176x144":
            of_s = openface_per_clip(Path(args.openface), data, work, w)
            runs.append(("OpenFace per clip (whole video)", of_s, None))
            of = {"backend": "openface", "openface": {"bin": str(args.openface)}}
            dt, share, px = run_face_stage(config_file(work, data, f"of-{video}", of), w)
            runs.append(("face stage, openface backend", dt, (share, px)))
            dt, share, px = run_face_stage(config_file(work, data, f"of-p-{video}", of), w, True)
            runs.append(("face stage, openface backend, clips probed", dt, (share, px)))
        elif video != "176x144":  # small faces: the embedded backend's detection rate
            runs.append(("OpenFace per clip (whole video)", None, None))
            runs.append(("face stage, openface backend", None, None))
            runs.append(("face stage, openface backend, clips probed", None, None))
        dt, share, px = run_face_stage(config_file(work, data, f"emb-{video}", {}), w)
        runs.append(("face stage, embedded", dt, (share, px)))
        dt, share, px = run_face_stage(config_file(work, data, f"emb-p-{video}", {}), w, True)
        runs.append(("face stage, embedded, clips probed", dt, (share, px)))
        if args.no_track_rows:
            no = config_file(work, data, f"emb-nt-{video}", {})
            dt, share, px = run_face_stage(no, w, track=False)
            runs.append(("face stage, embedded, no landmark tracking", dt, (share, px)))
            no = config_file(work, data, f"emb-nt-p-{video}", {})
            dt, share, px = run_face_stage(no, w, True, track=False)
            runs.append(("face stage, embedded, no landmark tracking, probed", dt, (share, px)))
        if args.ffprobe:
            floor_ffprobe = decode_floor(data, w, ffprobe=args.ffprobe)
            runs.insert(1, (f"ffmpeg decode floor, probed by {args.ffprobe}", floor_ffprobe, None))
            cfg = config_file(work, data, f"emb-ffprobe-{video}", {}, {"ffprobe": args.ffprobe})
            dt, share, px = run_face_stage(cfg, w)
            runs.append((f"face stage, embedded, probed by {args.ffprobe}", dt, (share, px)))
        if args.free_landmarks:
            runs.append(("face stage, embedded, free landmarker (bound)",
                         *free_landmarks(work, data, video, w)))  # fmt: skip
        if video == "1280x720":
            hi = config_file(work, data, f"emb-hi-{video}", {"max_side": 1280})
            dt, share, px = run_face_stage(hi, w)
            runs.append(("face stage, embedded, max_side 1280", dt, (share, px)))
        rows += [_row(what, seconds, share, base, floor, of_s) for what, seconds, share in runs]
    return rows


def free_landmarks(work: Path, data: Path, video: str, workers: int) -> tuple[float, tuple]:
    """The embedded stage with a landmarker that costs nothing: dlib's fits recorded in a first
    run (untimed, one worker), then looked up (:data:`FREE_LANDMARKS`)."""
    table = work / f"fits-{video.replace(' ', '-')}.pickle"
    record = FREE_LANDMARKS.format(record=True, table=str(table))
    run_face_stage(config_file(work, data, f"emb-rec-{video}", {}), 1, prelude=record)
    lookup = FREE_LANDMARKS.format(record=False, table=str(table))
    dt, share, px = run_face_stage(config_file(work, data, f"emb-free-{video}", {}), workers,
                                   prelude=lookup)  # fmt: skip
    return dt, (share, px)


def _row(
    what: str,
    seconds: float | None,
    share: tuple[float, float] | None,
    base: dict[str, Any],
    floor: float,
    of_s: float | None,
) -> dict[str, Any]:
    """One row of the table."""
    row: dict[str, Any] = {"what": what, **base}
    if seconds is None:
        return row | {"seconds": "not run (no --openface)"}
    row |= {"seconds": round(seconds, 3), "clips_per_s": round(base["clips"] / seconds, 3),
            "ms_per_video_s": round(1000 * seconds / base["video_s"], 1),
            "x_floor": round(seconds / floor, 2),
            "x_openface": round(of_s / seconds, 2) if of_s else ""}  # fmt: skip
    if share is not None:
        row |= {"face_frames": round(share[0], 4), "face_px": round(share[1], 1)}
    return row


def print_table(rows: list[dict[str, Any]]) -> None:
    """The table: clips/s, ms per second of video, time / floor, speed vs OpenFace per clip,
    frames with a face."""
    print(f"{'what':46} {'video':>12} {'clips':>5} {'wrk':>3} {'seconds':>8} {'clips/s':>8} "
          f"{'ms/vid s':>8} {'x floor':>8} {'x OpenFace':>10} {'face frames':>11} "
          f"{'face px':>7}")  # fmt: skip
    for r in rows:
        if "clips_per_s" not in r:
            print(f"{r['what']:46} {r['video']:>12} {r['clips']:>5} {r['workers']:>3} "
                  f"{r['seconds']}")  # fmt: skip
            continue
        share = f"{100 * r['face_frames']:.1f} %" if "face_frames" in r else ""
        print(f"{r['what']:46} {r['video']:>12} {r['clips']:>5} {r['workers']:>3} "
              f"{r['seconds']:>8.2f} {r['clips_per_s']:>8.2f} {r['ms_per_video_s']:>8.1f} "
              f"{r['x_floor']:>8.2f} {r['x_openface']!s:>10} {share:>11} "
              f"{r.get('face_px', '')!s:>7}")  # fmt: skip


def main() -> None:
    """Run the benchmark; print the table and write bench/results/faces.csv."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=16, help="demo clips (N)")
    ap.add_argument("--openface", help="path to OpenFace's FeatureExtraction (optional)")
    ap.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--long", action="store_true", help="add the 60 s and 5 min clips")
    ap.add_argument("--long-clips", type=int, default=2, help="long clips of each length")
    ap.add_argument(
        "--no-track-rows",
        action="store_true",
        help="add the embedded stage without landmark tracking (the policy before)",
    )
    ap.add_argument(
        "--ffprobe",
        help="also the floor and the embedded stage probing with this ffprobe binary "
        "(media.ffprobe; e.g. ffprobe, Debian's: the default before the in-process probe)",
    )
    ap.add_argument(
        "--free-landmarks",
        action="store_true",
        help="add the embedded stage with dlib's landmark fits looked up from a recorded run "
        "(no fit, no model load): a bound on what a cheaper landmarker could give",
    )
    ap.add_argument("--only", help="comma-separated videos to run (e.g. 320x320,640x360 60s)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="emoflow-bench-faces-") as tmp:
        rows = measure(args, Path(tmp))
    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / "faces.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, KEYS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    print_table(rows)
    if not args.openface:
        print("OpenFace rows not run: pass --openface /path/to/FeatureExtraction")


if __name__ == "__main__":
    main()
