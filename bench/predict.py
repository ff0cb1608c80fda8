"""Benchmark of ``emoflow predict`` against its decode floor, in seconds per minute of video.

    .venv/bin/python bench/predict.py --model results/demo/model --seconds 60

Builds a talking-face video of about ``--seconds`` by concatenating demo clips (``make demo``
writes them to data/demo; stream copy, no re-encoding), then times on the same file:
(a) the floor: ffprobe + decoding the audio and the frames at the grid's sample times (ffmpeg
only), (b) the featurizer alone (audio windows + aligned faces), (c) ``run_predict`` in this
process (models loaded once), (d) the ``emoflow predict`` command (process start and imports
included). Prints a table and writes bench/results/predict.csv, whose rows carry ``--label``
(default ``current``): rows of other labels stay, so a ``before`` table can sit beside the
figures after a change. Figures, never pass/fail.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS_CSV = REPO / "bench" / "results" / "predict.csv"


def long_clip(clips: list[Path], seconds: float, out: Path) -> Path:
    """Concatenate demo clips (stream copy) until ``seconds`` of video."""
    n = max(1, round(seconds / 3.2))
    listing = out.with_suffix(".txt")
    listing.write_text("".join(f"file '{clips[i % len(clips)]}'\n" for i in range(n)))
    args = ["ffmpeg", "-nostdin", "-y", "-v", "error", "-f", "concat", "-safe", "0",
            "-i", str(listing), "-c", "copy", str(out)]  # fmt: skip
    subprocess.run(args, check=True, timeout=300)
    return out


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=REPO / "results/demo/model")
    ap.add_argument("--data", type=Path, default=REPO / "data/demo", help="demo clips")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--label", default="current", help="the rows' label in the CSV")
    args = ap.parse_args()

    from emoflow.deploy.predict import run_predict
    from emoflow.deploy.predictor import load_predictor
    from emoflow.features.featurize import audio_features, face_features
    from emoflow.media.ffmpeg import FrameStream, decode_audio, probe
    from emoflow.media.grid import TimeGrid

    clips = sorted(args.data.rglob("*.mp4"))
    if not clips or not (args.model / "bundle.json").is_file():
        sys.exit("needs the demo corpus and model: run `make demo` first (or --data/--model)")
    with tempfile.TemporaryDirectory(prefix="emoflow-bench-predict-") as tmp:
        video = long_clip(clips, args.seconds, Path(tmp) / "long.mp4")
        info = probe(video)
        minutes = (info.duration_s or args.seconds) / 60
        predictor = load_predictor(args.model)
        spec = {b: predictor.branches[b].spec for b in ("audio", "visual")}
        grid = TimeGrid.of(spec["visual"])
        backend = predictor.require_backend()

        def floor() -> None:
            i = probe(video)
            decode_audio(video, grid.sample_rate, info=i)
            stream = FrameStream(video, grid.frame_times(i.duration_s, i.fps), grid.rate, i)
            for _ in stream.chunks():
                pass
            stream.finish()

        def featurize() -> None:
            audio_features(video, spec["audio"])
            face_features([("v", video)], spec["visual"], backend)

        out = Path(tmp) / "out"
        cli = [str(Path(sys.executable).parent / "emoflow"), "predict", str(video),
               "--model", str(args.model), "--out", str(out)]  # fmt: skip
        rows = [
            ("ffmpeg floor: probe + audio + grid frames", timed(floor)),
            ("featurizer: audio windows + aligned faces", timed(featurize)),
            ("run_predict (models loaded)", timed(lambda: run_predict([video], args.model, out))),
            ("emoflow predict (whole command)",
             timed(lambda: subprocess.run(cli, check=True, capture_output=True))),
        ]  # fmt: skip
    base = rows[0][1]
    print(f"\n{minutes * 60:.1f} s of video, {grid.rate:.2f} face samples/s")
    print(f"{'what':44} {'s':>7} {'s/min video':>12} {'x floor':>8}")
    for what, s in rows:
        print(f"{what:44} {s:7.2f} {s / minutes:12.2f} {s / base:8.2f}")
    write_rows(args.label, minutes, [(what, s, s / base) for what, s in rows])


def write_rows(label: str, minutes: float, rows: list[tuple[str, float, float]]) -> None:
    """Replace the ``label`` rows of bench/results/predict.csv (other labels' rows stay)."""
    fields = ["label", "what", "seconds", "seconds_per_minute", "x_floor"]
    new = [{"label": label, "what": what, "seconds": f"{s:.3f}",
            "seconds_per_minute": f"{s / minutes:.3f}", "x_floor": f"{x:.3f}"}
           for what, s, x in rows]  # fmt: skip
    replace_label_rows(RESULTS_CSV, fields, label, new)


def replace_label_rows(path: Path, fields: list[str], label: str, new: list[dict]) -> None:
    """Rewrite the results CSV ``path`` with ``new`` in place of its rows of ``label`` (the
    rows of other labels, e.g. a "before" run, are kept beside them)."""
    kept = []
    if path.exists():
        with open(path, newline="") as fh:
            kept = [r for r in csv.DictReader(fh) if r.get("label", label) != label]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(kept + new)


if __name__ == "__main__":
    main()
