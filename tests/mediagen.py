"""Small real media files for tests, made with ffmpeg (argument lists only)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
from skimage import data, io, transform


def run_ffmpeg(*args: str) -> None:
    """Run ffmpeg quietly; raise with its stderr on failure."""
    cmd = ["ffmpeg", "-nostdin", "-y", "-v", "error", *args]
    proc = subprocess.run(cmd, capture_output=True, timeout=300, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg failed: {proc.stderr.decode()[-500:]}")


def face_png(path: Path, size: int = 320) -> Path:
    """The astronaut photo (a real face) scaled to ``size`` x ``size``."""
    img = transform.resize(data.astronaut(), (size, size), anti_aliasing=True)
    io.imsave(path, (img * 255).astype(np.uint8), check_contrast=False)
    return path


def blank_png(path: Path, size: int = 320) -> Path:
    """A plain green picture (no face)."""
    img = np.zeros((size, size, 3), np.uint8)
    img[..., 1] = 160
    io.imsave(path, img, check_contrast=False)
    return path


def make_clip(
    path: Path,
    duration: float = 3.0,
    image: Path | None = None,
    audio: bool = True,
    video: bool = True,
    fps: int = 25,
    tone_hz: float = 220.0,
    audio_codec: str = "aac",
    audio_rate: int = 44100,
    channels: int = 1,
    extra: tuple[str, ...] = (),
    volume: float = 1.0,
) -> Path:
    """A clip: a still image (or test pattern) + a tone (scaled by ``volume``), H.264/AAC
    unless told otherwise."""
    args: list[str] = []
    if video:
        if image is not None:
            args += ["-loop", "1", "-framerate", str(fps), "-t", str(duration), "-i", str(image)]
        else:
            args += ["-f", "lavfi", "-i", f"testsrc=size=320x240:rate={fps}:duration={duration}"]
    if audio:
        layout = "mono" if channels == 1 else "stereo"
        src = f"sine=f={tone_hz}:sample_rate={audio_rate}:duration={duration},volume={volume}"
        args += ["-f", "lavfi", "-i", src, "-ac", str(channels), "-channel_layout", layout]
    if video:
        args += ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "ultrafast"]
    if audio:
        args += ["-c:a", audio_codec]
    args += [*extra, "-t", str(duration), str(path)]
    run_ffmpeg(*args)
    return path


def set_rotation(src: Path, dst: Path, degrees: int) -> Path:
    """Copy ``src`` to ``dst`` with rotation metadata (a display matrix), streams untouched."""
    run_ffmpeg("-i", str(src), "-c", "copy", "-metadata:s:v:0", f"rotate={degrees}", str(dst))
    return dst


def talking_face_clip(path: Path, face: Path, duration: float, fps: int = 25) -> Path:
    """A face that moves (slow pan and bob) with speech-like audio: a voiced tone whose pitch
    glides, in 3 Hz syllables, with pauses (so windows range from loud to near-silent)."""
    voice = (
        "0.6*sin(2*PI*(150+30*sin(2*PI*0.4*t))*t)*(0.55+0.45*sin(2*PI*3*t))"
        "*gt(sin(2*PI*0.23*t),-0.3)+0.002*sin(2*PI*50*t)"
    )
    motion = "crop=320:320:'80+60*sin(2*PI*t/7)':'40+30*sin(2*PI*t/5)'"
    run_ffmpeg(
        "-loop", "1", "-framerate", str(fps), "-t", str(duration), "-i", str(face),
        "-f", "lavfi", "-i", f"aevalsrc='{voice}':s=16000:d={duration}",
        "-vf", f"pad=480:400:80:40,{motion}",
        "-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "ultrafast", "-c:a", "aac",
        "-t", str(duration), str(path),
    )  # fmt: skip
    return path
