"""The OpenFace backend's frame files and detection flags, measured on the same frames.

    .venv/bin/python bench/openface_frames.py --clips 8 [--openface BIN]

The frames are the face stage's own (the grid's sample times, longer side at most
``faces.max_side``) from the demo clips at 320 x 320, their 1280 x 720 re-encodings (decoded at
``max_side`` 640 and 1280) and their 176 x 144 ones (faces of about 45 px), made as in
``bench/faces.py``. Table 1: per frame format (PNG level 1, BMP, JPEG quality 95), the time to write
a frame and, with ``--openface``, one ``FeatureExtraction`` call on all the clips' folders (as the
backend makes it) per clip, the share of frames with ``success`` 1, and the largest AU intensity and
landmark difference from PNG. Table 2 (``--openface``): the backend's flags alone, with ``-wild``
and with ``-multi_view 1``: share of frames found, seconds per clip and the largest differences from
the flags alone. Writes bench/results/openface_frames.csv. Figures, never pass/fail."""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from faces import make_corpora  # noqa: E402

FORMATS = {"png1": (".png", {"compress_level": 1}), "bmp": (".bmp", {}),
           "jpeg95": (".jpg", {"quality": 95})}  # fmt: skip
FLAGS = {"default": [], "-wild": ["-wild"], "-multi_view 1": ["-multi_view", "1"]}
KEYS = ["table", "video", "frame_size", "variant", "clips", "frames", "write_ms_per_frame",
        "call_s_per_clip", "success", "max_au_diff", "max_landmark_px_diff"]  # fmt: skip


def sampled_frames(data: Path, max_side: int) -> list[np.ndarray]:
    """Each clip's frames as the face stage samples them (default grid)."""
    from emoflow.features.featurize import media_settings, open_frames
    from emoflow.media.grid import TimeGrid

    grid = TimeGrid(16000, 3.0, 1.5, "pad", 16)
    out = []
    for path in sorted(data.rglob("*.mp4")):
        stream = open_frames(path, grid, max_side, media_settings(None, {}))[0]
        out.append(np.concatenate(list(stream.chunks(64))))
        stream.finish()
    return out


def write(clips: list[np.ndarray], root: Path, fmt: str) -> tuple[list[Path], float]:
    """Write every clip's frames (backend naming) in ``fmt``; (folders, seconds)."""
    ext, kw = FORMATS[fmt]
    folders = [root / f"clip{i:05d}" for i in range(len(clips))]
    t = time.perf_counter()
    for frames, folder in zip(clips, folders, strict=True):
        folder.mkdir(parents=True)
        for j, frame in enumerate(frames, start=1):
            Image.fromarray(frame).save(folder / f"frame_{j:04d}{ext}", **kw)
    return folders, time.perf_counter() - t


def openface(binary: Path, folders: list[Path], out: Path, extra: list[str]) -> tuple[Any, float]:
    """One FeatureExtraction call on the folders: (per-clip (success, AU, landmarks), seconds)."""
    from emoflow.faces.openface import OpenFaceBackend, resolve_binary, run_logged
    from emoflow.faces.openface_csv import AU_NAMES, LANDMARK_X, LANDMARK_Y, read_table

    model = "model/main_clnf_general.txt"
    binary, model_path = resolve_binary(str(binary), model)
    cmd = OpenFaceBackend(binary, model, model_path=model_path).command(folders, out) + extra
    out.mkdir(parents=True)
    t = time.perf_counter()
    run_logged(cmd, binary.parent, 1800, out / "log.txt")
    seconds = time.perf_counter() - t
    parsed = []
    for folder in folders:
        header, rows = read_table(out / f"{folder.name}.csv")
        a = np.array(rows, dtype=np.float64)
        col = {name: i for i, name in enumerate(header)}
        au, x, y = ([col[n] for n in names] for names in (AU_NAMES, LANDMARK_X, LANDMARK_Y))
        parsed.append((a[:, col["success"]] == 1, a[:, au], np.stack([a[:, x], a[:, y]], -1)))
    return parsed, seconds


def compare(res: Any, ref: Any) -> tuple[float, float, float]:
    """Share of frames found, largest AU and landmark differences from ``ref`` (both found)."""
    found = np.concatenate([r[0] for r in res])
    both = found & np.concatenate([r[0] for r in ref])
    au = np.abs(np.concatenate([r[1] for r in res]) - np.concatenate([r[1] for r in ref]))[both]
    lm = np.concatenate([r[2] for r in res]) - np.concatenate([r[2] for r in ref])
    lm = np.linalg.norm(lm, axis=-1)[both]
    return float(found.mean()), float(au.max(initial=0)), float(lm.max(initial=0))


def measure(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    corpora = make_corpora(work, args.clips)
    rows: list[dict[str, Any]] = []
    cases = [("320x320", 640), ("1280x720", 640), ("1280x720", 1280), ("176x144", 640)]
    for video, max_side in cases:
        clips = sampled_frames(corpora[video], max_side)
        h, w = clips[0].shape[1:3]
        base = {"video": video, "frame_size": f"{w}x{h}", "clips": len(clips),
                "frames": sum(len(c) for c in clips)}  # fmt: skip
        results: dict[str, Any] = {}
        for fmt in FORMATS if video != "176x144" else []:
            best, folders = np.inf, []
            for rep in range(3):  # the fastest of 3 writes (the machine is shared)
                folders, dt = write(clips, work / f"w-{video}-{max_side}-{fmt}-{rep}", fmt)
                best = min(best, dt)
            row = {"table": "format", **base, "variant": fmt,
                   "write_ms_per_frame": round(1000 * best / base["frames"], 3)}  # fmt: skip
            if args.openface:
                out = work / f"o-{video}-{max_side}-{fmt}"
                results[fmt], dt = openface(args.openface, folders, out, [])
                row["call_s_per_clip"] = round(dt / len(clips), 3)
                ok, au, lm = compare(results[fmt], results.get("png1", results[fmt]))
                row |= {"success": round(ok, 4), "max_au_diff": round(au, 4),
                        "max_landmark_px_diff": round(lm, 3)}  # fmt: skip
            rows.append(row)
        if args.openface and max_side == 640 and video in ("320x320", "176x144"):
            folders = write(clips, work / f"f-{video}", "bmp")[0]
            for name, extra in FLAGS.items():
                res, dt = openface(args.openface, folders, work / f"f-{video}-{name}", extra)
                results[name] = res
                ok, au, lm = compare(res, results["default"])
                rows.append({"table": "flags", **base, "variant": name,
                             "call_s_per_clip": round(dt / len(clips), 3),
                             "success": round(ok, 4), "max_au_diff": round(au, 4),
                             "max_landmark_px_diff": round(lm, 3)})  # fmt: skip
        for path in work.glob("[wo]-*"):
            shutil.rmtree(path)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=8, help="demo clips")
    ap.add_argument("--openface", help="path to OpenFace's FeatureExtraction (optional)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="emoflow-bench-ofr-") as tmp:
        rows = measure(args, Path(tmp))
    (REPO / "bench/results").mkdir(parents=True, exist_ok=True)
    with open(REPO / "bench/results/openface_frames.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, KEYS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    print(" | ".join(KEYS))
    for r in rows:
        print(" | ".join(str(r.get(k, "")) for k in KEYS))


if __name__ == "__main__":
    main()
