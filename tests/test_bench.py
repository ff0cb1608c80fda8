"""The GPU and loader benchmarks keep running: their dry checks on the CPU (figures are read
from their tables, never asserted as speed)."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(*args: str) -> str:
    proc = subprocess.run(
        [sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=900, check=False
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_gpu_benchmark_dry_run_on_cpu() -> None:
    out = run("bench/gpu.py", "--device", "cpu", "--clips", "12", "--epochs", "1", "--workers", "0")
    assert "| branch | precision | epoch_s | samples_per_s | loader_share |" in out
    rows = list(csv.DictReader((REPO / "bench/results/gpu.csv").open()))
    assert [(r["branch"], r["precision"]) for r in rows] == [("audio", "fp32"), ("visual", "fp32")]
    for r in rows:
        assert float(r["samples_per_s"]) > 0 and 0 <= float(r["loader_share"]) <= 1
        assert float(r["rerun_max_abs_diff"]) == 0.0  # deterministic mode on the CPU


def test_gpu_benchmark_refuses_cuda_without_a_gpu() -> None:
    import torch

    if torch.cuda.is_available():
        return
    proc = subprocess.run(
        [sys.executable, "bench/gpu.py", "--device", "cuda"], cwd=REPO, capture_output=True,
        text=True, check=False,
    )  # fmt: skip
    assert proc.returncode != 0 and "no CUDA device here" in proc.stderr


def test_loader_benchmark_runs() -> None:
    out = run("bench/loader.py", "--clips", "24", "--shards", "2", "--workers", "0")
    assert "| branch | workers | build s | epoch 1 samples/s |" in out
    rows = list(csv.DictReader((REPO / "bench/results/loader.csv").open()))
    assert [r["branch"] for r in rows] == ["audio", "visual"]
    assert rows[0]["samples"] == "48" and rows[1]["samples"] == "48"  # 2 windows per clip


def test_face_benchmark_runs_without_openface() -> None:
    out = run("bench/faces.py", "--clips", "2", "--workers", "1", "--free-landmarks")
    assert "OpenFace rows not run" in out
    rows = list(csv.DictReader((REPO / "bench/results/faces.csv").open()))
    by = {(r["what"], r["video"]): r for r in rows}
    assert by[("OpenFace per clip (whole video)", "320x320")]["seconds"].startswith("not run")
    for video in ("320x320", "1280x720"):
        floor = by[("ffmpeg decode floor", video)]
        emb = by[("face stage, embedded", video)]
        assert float(floor["clips_per_s"]) > 0 and float(emb["clips_per_s"]) > 0
        ratio = float(emb["seconds"]) / float(floor["seconds"])
        assert abs(float(emb["x_floor"]) - ratio) < 0.01 + 0.001 * ratio
        assert float(emb["face_frames"]) > 0.9  # the demo's faces are found
        probed = by[("face stage, embedded, clips probed", video)]
        assert float(probed["face_frames"]) == float(emb["face_frames"])
        assert float(by[("ffmpeg decode floor, clips probed", video)]["clips_per_s"]) > 0
        # every landmark fit was found in the recorded run: the same faces, boxes and crops
        free = by[("face stage, embedded, free landmarker (bound)", video)]
        assert (free["face_frames"], free["face_px"]) == (emb["face_frames"], emb["face_px"])
    small = by[("face stage, embedded", "176x144")]  # the same faces at about 45 px
    assert float(small["face_frames"]) > 0.9 and float(small["face_px"]) < 70
    assert ("OpenFace per clip (whole video)", "176x144") not in by


def test_openface_frames_benchmark_runs_without_openface() -> None:
    out = run("bench/openface_frames.py", "--clips", "1")
    assert "write_ms_per_frame" in out
    rows = list(csv.DictReader((REPO / "bench/results/openface_frames.csv").open()))
    sizes, formats = ("320x320", "640x360", "1280x720"), ("png1", "bmp", "jpeg95")
    assert {(r["frame_size"], r["variant"]) for r in rows} == {
        (a, b) for a in sizes for b in formats
    }
    assert all(float(r["write_ms_per_frame"]) > 0 and r["call_s_per_clip"] == "" for r in rows)


def test_encoder_benchmark_runs() -> None:
    out = run("bench/encoders.py", "--clips", "2")
    assert "| stage | s per clip | x floor | clips/s on 2 cores |" in out
    rows = list(csv.DictReader((REPO / "bench/results/encoders.csv").open()))
    assert [r["stage"] for r in rows] == [
        "floor: probe + decode audio", "audio (log-mel + MFCC)", "egemaps (eGeMAPSv02)",
        "ssl (tiny, 2 layers)",
    ]  # fmt: skip
    assert all(float(r["s_per_clip"]) > 0 for r in rows)
