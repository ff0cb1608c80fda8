#!/usr/bin/env python3
"""Test double for OpenFace 2.x ``FeatureExtraction`` that replays recorded output.

It accepts the real binary's arguments (``-fdir`` repeated, ``-out_dir``, ``-mloc`` relative to
the working folder, output flags) and, per input folder, copies the recorded CSV rows and
aligned BMPs of ``tests/data/openface`` (a copy of ``shared/fixtures/openface``) under the
names the real binary would use, restricted (or cycled) to the folder's frame count, and prints
the recorded log lines.

What it replays is chosen by the frames' top-left pixel (so a test picks it per clip):
- (0, 255, 0) green (the recorded no-face input was a plain green picture): that frame gets a
  failed row (``no-face/``: success 0, garbage pose, zero landmarks) and a black aligned image;
- first frame (255, 0, 0) red: like ``logs/truncated-file.log`` — writes a details file and a
  partial aligned folder, then kills itself with SIGSEGV (no CSV; later folders not processed);
- first frame (0, 0, 255) blue: like ``logs/missing-file.log`` — prints "Failed to open",
  writes nothing for that folder and goes on;
- anything else: replays ``fdir-15-frames/`` (face found in every frame).
Whole-call modes come from ``FAKE_OPENFACE_MODE``: ``model_missing`` (exit 1 with the
recorded message) and ``hang`` (sleep 30 s, far past the tests' timeouts). A missing ``-mloc`` file
(relative to the working folder, as for the real binary) also gives the model-missing exit.
The fixtures folder is ``FAKE_OPENFACE_FIXTURES`` or found relative to this file.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

from PIL import Image

FIXTURES = Path(
    os.environ.get("FAKE_OPENFACE_FIXTURES")
    or Path(__file__).resolve().parent / "data" / "openface"
)
OK_DIR = FIXTURES / "fdir-15-frames"
NF_DIR = FIXTURES / "no-face"
GREEN, RED, BLUE = (0, 255, 0), (255, 0, 0), (0, 0, 255)
IMAGE_EXT = (".png", ".jpg", ".jpeg", ".bmp")


def log_lines(name: str) -> list[str]:
    return (FIXTURES / "logs" / name).read_text("utf-8").splitlines()


def say(line: str) -> None:
    print(line, flush=True)


def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    lines = path.read_text("utf-8").splitlines()
    header = [h.strip() for h in lines[0].split(",")]
    return header, [[v.strip() for v in line.split(",")] for line in lines[1:] if line]


def parse_args(argv: list[str]) -> dict:
    args: dict = {"fdir": [], "flags": []}
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("-fdir", "-out_dir", "-mloc", "-simscale", "-simsize", "-f"):
            if i + 1 >= len(argv):
                say(f"ERROR: {a} needs a value")
                sys.exit(2)
            if a == "-fdir":
                args["fdir"].append(argv[i + 1])
            else:
                args[a[1:]] = argv[i + 1]
            i += 2
        else:
            args["flags"].append(a)
            i += 1
    return args


def header_lines(static: bool) -> list[str]:
    lines = []
    for line in log_lines("ok-fdir.log"):
        if line.startswith("Attempting to read from"):
            break
        lines.append(line if static else line.replace("static", "dynamic"))
    return lines


def tracking_tail() -> list[str]:
    lines = log_lines("ok-fdir.log")
    start = next(i for i, line in enumerate(lines) if line.startswith("Device or file opened"))
    return lines[start:]


def frames_of(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXT)


def pixel(path: Path) -> tuple[int, int, int]:
    with Image.open(path) as im:
        return tuple(im.convert("RGB").getpixel((0, 0)))[:3]


def replay_folder(folder: Path, out_dir: Path) -> None:
    say(f"Attempting to read from directory: {folder}")
    frames = frames_of(folder) if folder.is_dir() else []
    first = pixel(frames[0]) if frames else BLUE
    name = folder.name
    if first == BLUE:
        for line in log_lines("missing-file.log"):
            if line.startswith("Failed to open"):
                say(line.replace("/nonexistent.mp4", str(folder)))
        return
    details = (OK_DIR / "clip frames_of_details.txt").read_text("utf-8")
    (out_dir / f"{name}_of_details.txt").write_text(details.replace("clip frames", name))
    aligned = out_dir / f"{name}_aligned"
    aligned.mkdir(exist_ok=True)
    if first == RED:
        lines = log_lines("truncated-file.log")
        start = next(i for i, line in enumerate(lines) if line.startswith("Attempting"))
        for line in lines[start + 1 :]:
            say(line)
        (out_dir / f"{name}.hog").write_bytes(b"\x00" * 64)
        shutil.copy(OK_DIR / "clip frames_aligned/frame_det_00_000001.bmp", aligned)
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGSEGV)
        time.sleep(5)  # not reached
    ok_header, ok_rows = read_csv(OK_DIR / "clip frames.csv")
    nf_header, nf_rows = read_csv(NF_DIR / "nf.csv")
    green = [pixel(p) == GREEN for p in frames]
    header = nf_header if all(green) else ok_header
    rows = []
    for i, is_green in enumerate(green, start=1):
        if is_green:
            src = dict(zip(nf_header, nf_rows[(i - 1) % len(nf_rows)], strict=True))
            row = [src.get(h, "0.0") for h in header]
            bmp = NF_DIR / "nf_aligned" / f"frame_det_00_{(i - 1) % len(nf_rows) + 1:06d}.bmp"
        else:
            row = list(ok_rows[(i - 1) % len(ok_rows)])
            bmp = (
                OK_DIR
                / "clip frames_aligned"
                / f"frame_det_00_{(i - 1) % len(ok_rows) + 1:06d}.bmp"
            )
        row[0] = str(i)
        rows.append(", ".join(row))
        shutil.copy(bmp, aligned / f"frame_det_00_{i:06d}.bmp")
    (out_dir / f"{name}.csv").write_text(", ".join(header) + "\n" + "\n".join(rows) + "\n")
    for line in tracking_tail():
        say(line)


def install(bin_dir: Path) -> Path:
    """This double as an executable ``FeatureExtraction`` in ``bin_dir``, with the
    ``model/main_clnf_general.txt`` that ``-mloc`` names (tests import this function)."""
    (bin_dir / "model").mkdir(parents=True, exist_ok=True)
    (bin_dir / "model" / "main_clnf_general.txt").write_text("fake model\n")
    binary = bin_dir / "FeatureExtraction"
    text = Path(__file__).read_text("utf-8").split("\n", 1)[1]
    binary.write_text(f"#!{sys.executable}\n{text}")
    binary.chmod(binary.stat().st_mode | 0o100)
    return binary


def main() -> int:
    args = parse_args(sys.argv[1:])
    say("FAKE argv: " + json.dumps(sys.argv[1:]))
    say(f"FAKE pid: {os.getpid()} cwd: {os.getcwd()}")
    mode = os.environ.get("FAKE_OPENFACE_MODE", "")
    model = args.get("mloc")
    if mode == "model_missing" or not model or not Path(model).is_file():
        say(f"Reading the landmark detector/tracker from: {Path.cwd() / (model or 'model')}")
        say("ERROR: Could not load the landmark detector")
        return 1
    for line in header_lines("-au_static" in args["flags"]):
        say(line)
    if mode == "hang":
        time.sleep(30)
    out_dir = Path(args.get("out_dir", "processed"))
    out_dir.mkdir(parents=True, exist_ok=True)
    for folder in args["fdir"]:
        replay_folder(Path(folder), out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
