"""Per-clip cost of the audio-based extraction stages against their decode floor.

    .venv/bin/python bench/encoders.py --clips 16 [--ssl-base]

On the same demo clips, in one process and one thread each (so per-clip figures add up over
workers): the floor (ffprobe + decoding the audio track), the audio stage (log-mel + MFCC), the
egemaps stage (openSMILE eGeMAPSv02 functionals) and the ssl stage with a tiny local wav2vec 2.0 (2
layers, hidden 32: what the tests use) and, with ``--ssl-base``, a randomly initialised wav2vec 2.0
of base size (12 layers, hidden 768, 95 M parameters: the cost of the real
``facebook/wav2vec2-base``, whose weights this offline machine cannot fetch). Each stage runs
through :mod:`emoflow.features.featurize`, the code the workflow and ``predict`` use. Prints a table
and writes bench/results/encoders.csv. Figures, never pass/fail."""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "results"
sys.path.insert(0, str(REPO))


def base_wav2vec2(folder: Path) -> Path:
    """A wav2vec 2.0 of base size (default config), random weights, saved locally."""
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    torch.manual_seed(0)
    Wav2Vec2Model(Wav2Vec2Config()).save_pretrained(folder)
    return folder


def timed(fn, clips: list[Path]) -> float:  # noqa: ANN001 - a featurize function
    """Seconds per clip of ``fn`` over ``clips`` (after one warm-up call, not counted)."""
    fn(clips[0])
    start = time.perf_counter()
    for clip in clips:
        fn(clip)
    return (time.perf_counter() - start) / len(clips)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=16)
    ap.add_argument("--ssl-base", action="store_true", help="also a base-size wav2vec 2.0")
    args = ap.parse_args()

    import torch

    from emoflow.config import validate_config
    from emoflow.demo.corpus import make_demo_corpus
    from emoflow.extraction.specs import stage_spec
    from emoflow.features.featurize import (
        audio_features,
        audio_track,
        egemaps_features,
        ssl_features,
        track_windows,
    )
    from tests.encoders import tiny_wav2vec2

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="emoflow-bench-enc-") as tmp:
        work = Path(tmp)
        clips = make_demo_corpus(work / "data", clips=args.clips, seed=0)
        encoders = {"ssl (tiny, 2 layers)": tiny_wav2vec2(work / "tiny")}
        if args.ssl_base:
            encoders["ssl (base size, 12 layers)"] = base_wav2vec2(work / "base")

        def cfg(model: Path | None = None) -> dict:
            raw = {"dataset": {"name": "b", "adapter": "ravdess", "root": str(work / "data")}}
            if model is not None:
                raw["ssl"] = {"model_path": str(model), "device": "cpu"}
            return validate_config(raw)

        audio_spec = stage_spec(cfg(), "audio")
        ege_spec = stage_spec(cfg(), "egemaps")
        rows = [
            (
                "floor: probe + decode audio",
                timed(lambda c: track_windows(audio_track(c, audio_spec), audio_spec), clips),
            ),
            ("audio (log-mel + MFCC)", timed(lambda c: audio_features(c, audio_spec), clips)),
            ("egemaps (eGeMAPSv02)", timed(lambda c: egemaps_features(c, ege_spec), clips)),
        ]
        for name, folder in encoders.items():
            spec = stage_spec(cfg(folder), "ssl")
            rows.append((name, timed(lambda c, s=spec, f=folder: ssl_features(c, s, folder=f),
                                     clips)))  # fmt: skip
    floor = rows[0][1]
    print(f"{args.clips} demo clips (3.2 s, 2 windows each), one process, one thread\n")
    print("| stage | s per clip | x floor | clips/s on 2 cores |")
    print("|---|---:|---:|---:|")
    for name, sec in rows:
        print(f"| {name} | {sec:.3f} | {sec / floor:.1f} | {2 / sec:.1f} |")
    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / "encoders.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["stage", "s_per_clip", "x_floor", "clips"])
        w.writerows([(n, f"{s:.4f}", f"{s / floor:.2f}", args.clips) for n, s in rows])


if __name__ == "__main__":
    main()
