"""The torture corpus: every kind of bad input a real corpus has, plus the kinds expected.

``make_torture(root, good)`` writes the files into ``root`` and a labels CSV (generic CSV
adapter) listing them next to the good clips; it returns {clip_id: {stage: kind}} — the
failures the workflow must report (stage "scan", "audio" or "faces"); a stage not named
must give features.
"""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import numpy as np

from tests.mediagen import blank_png, face_png, make_clip, run_ffmpeg, set_rotation

WEIRD = "-dash 'quote' \"dq\" $(touch pwned) `touch pwned` Émotion ü"


def _partial_face_clip(path: Path, face: Path, blank: Path) -> Path:
    """2 s: the face for the first second, then an empty green picture."""
    run_ffmpeg(
        "-loop", "1", "-framerate", "25", "-t", "1", "-i", str(face),
        "-loop", "1", "-framerate", "25", "-t", "1", "-i", str(blank),
        "-f", "lavfi", "-i", "sine=f=200:duration=2",
        "-filter_complex", "[0:v][1:v]concat=n=2:v=1:a=0[v]", "-map", "[v]", "-map", "2:a",
        "-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "ultrafast", "-c:a", "aac",
        "-t", "2", str(path),
    )  # fmt: skip
    return path


def _vfr_clip(path: Path, face: Path) -> Path:
    """Variable frame rate: frames at irregular times (mkv keeps the timestamps)."""
    run_ffmpeg(
        "-loop", "1", "-framerate", "25", "-t", "2", "-i", str(face),
        "-f", "lavfi", "-i", "sine=f=300:duration=2",
        "-vf", "select='not(mod(n\\,3))+eq(n\\,1)+eq(n\\,7)',setpts=N/TB/25*1.3",
        "-fps_mode", "vfr", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "ultrafast",
        "-c:a", "aac", "-t", "2", str(path),
    )  # fmt: skip
    return path


def make_torture(root: Path, good: list[tuple[Path, str, str]]) -> dict[str, dict[str, str]]:
    """Write the torture files and ``labels.csv``; return the expected failure kinds."""
    root.mkdir(parents=True, exist_ok=True)
    t = root / "torture"
    t.mkdir()
    face, blank = face_png(root / ".face.png"), blank_png(root / ".blank.png")
    big = root / ".big.png"
    from skimage import io, transform

    canvas = np.full((2160, 3840, 3), 90, np.uint8)  # the face, undistorted, in a 4K frame
    canvas[:, 840:3000] = (transform.resize(io.imread(face), (2160, 2160)) * 255).astype(np.uint8)
    io.imsave(big, canvas)
    ok = make_clip(t / "ok_face.mp4", 2.0, image=face)
    rows: list[tuple[str, str, str]] = []  # (path, speaker, label)
    expect: dict[str, dict[str, str]] = {}

    def add(name: str, label: str | None = None, **kinds: str) -> None:
        # labels rotate over the demo's classes: the torture speaker's clips form a k-fold
        # test part, and a test part of one class is (rightly) refused by `split`
        if label is None:
            label = ("angry", "happy", "neutral", "sad")[len(rows) % 4]
        rows.append((f"torture/{name}", "Actor_90", label))
        expect[f"torture/{Path(name).with_suffix('')}"] = kinds

    (t / "empty.mp4").write_bytes(b"")
    add("empty.mp4", audio="unreadable", faces="unreadable")
    (t / "truncated.mp4").write_bytes(ok.read_bytes()[:30_000])
    add("truncated.mp4", audio="unreadable", faces="unreadable")
    # moov atom first: ffprobe still reads the full 3.2 s, decoding stops early
    front = make_clip(t / ".front.mp4", 3.2, image=face, extra=("-movflags", "+faststart"))
    (t / "truncated_moov_first.mp4").write_bytes(front.read_bytes()[: front.stat().st_size // 2])
    add("truncated_moov_first.mp4", audio="truncated", faces="truncated")
    (t / "random.mp4").write_bytes(np.random.default_rng(1).bytes(200_000))
    add("random.mp4", audio="unreadable", faces="unreadable")
    make_clip(t / "audio_only.m4a", 2.0, video=False)
    add("audio_only.m4a", faces="no_video")
    make_clip(t / "video_only.mp4", 2.0, image=face, audio=False)
    add("video_only.mp4", audio="no_audio")
    make_clip(t / "no_face.mp4", 2.0, image=blank)
    add("no_face.mp4", faces="no_face")
    _partial_face_clip(t / "partial_face.mp4", face, blank)
    add("partial_face.mp4")
    make_clip(t / "short.mp4", 0.4, image=face)
    add("short.mp4")
    make_clip(t / "one_frame.mp4", 0.04, image=face, audio=False)
    add("one_frame.mp4", audio="no_audio")
    # a long clip (4 min at 5 fps): 159 windows, 1279 face samples on the grid
    make_clip(t / "four_minutes.mp4", 240.0, image=face, fps=5)
    add("four_minutes.mp4")
    make_clip(t / "uhd.mp4", 1.0, image=big)
    add("uhd.mp4")
    _vfr_clip(t / "vfr.mkv", face)
    add("vfr.mkv")
    # stored sideways, displayed upright: as phones write portrait video
    sideways = make_clip(t / ".r.mp4", 1.5, image=face, extra=("-vf", "transpose=1"))
    set_rotation(sideways, t / "rotated.mp4", 90)
    add("rotated.mp4")
    make_clip(t / "pcm8.mov", 1.5, image=face, audio_codec="pcm_u8")
    add("pcm8.mov")
    make_clip(t / "pcm24_48k_stereo.mov", 1.5, image=face, audio_codec="pcm_s24le",
              audio_rate=48000, channels=2)  # fmt: skip
    add("pcm24_48k_stereo.mov")
    shutil.copy(ok, t / f"{WEIRD}.mp4")
    add(f"{WEIRD}.mp4")
    os.symlink(".", t / "loop")  # a symlink loop in the dataset folder: must not hang anything
    shutil.copy(ok, t / "dup.mp4")
    shutil.copy(ok, t / "dup.avi")
    add("dup.mp4", scan="duplicate_id")  # dup.mp4 keeps the id and gets features
    rows.append(("torture/dup.avi", "Actor_90", "happy"))  # same clip id: the failure row
    shutil.copy(ok, t / "unknown_label.mp4")
    add("unknown_label.mp4", label="bored", scan="bad_label")
    shutil.copy(ok, t / "no_label.mp4")
    add("no_label.mp4", label="", scan="bad_label")
    # an AAC track at about -93 dBFS (as a camera records "silence"): treated as no audio
    make_clip(t / "silent_track.mp4", 2.0, image=face, volume=3e-5)
    add("silent_track.mp4", audio="silent_audio")
    outside = root.parent / f"{root.name}-outside.mp4"
    shutil.copy(ok, outside)
    rows.append((str(outside), "Actor_90", "happy"))
    expect[f"../{outside.stem}"] = {"scan": "outside_root"}
    ok.unlink()

    with open(root / "labels.csv", "w", newline="", encoding="utf-8") as fh:
        # no valence/arousal/split columns at all: optional columns may be missing
        writer = csv.writer(fh)
        writer.writerow(["path", "speaker", "label"])
        for path, speaker, label in good:
            writer.writerow([str(path.relative_to(root)), speaker, label])
        writer.writerows(rows)
    return expect
