"""The media layer: probe a file, decode its audio, sample frames — all through ffmpeg.

ffmpeg-python builds the argument lists; this module runs them with ``subprocess`` (never a
shell), a time limit and captured stderr, and turns ffmpeg's complaints into
:class:`~emoflow.errors.ClipError` with a failure kind and a message a person understands.
Inputs are passed as ``file:<absolute path>`` so names with a leading dash, colons, quotes
or ``$(...)`` are only ever file names.
"""

from __future__ import annotations

import functools
import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import ffmpeg
import numpy as np

from emoflow.errors import ClipError, ToolMissingError

DEFAULT_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class MediaInfo:
    """What ffprobe says about a file (None where it does not say)."""

    duration_s: float | None
    has_audio: bool
    has_video: bool
    width: int | None  # displayed size, after rotation
    height: int | None
    fps: float | None
    rotation: int
    audio_rate: int | None
    audio_channels: int | None


def _input(path: str | Path) -> str:
    return "file:" + str(Path(path).resolve())


def _first_line(stderr: bytes) -> str:
    lines = [ln.strip() for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    # ffmpeg prefixes lines with the input name; keep the message after the last "]: " / ": ".
    msg = lines[-1] if lines else "no message"
    return re.sub(r"^.*?file:[^:]*:\s*", "", msg)[:300]


def _run(args: list[str], timeout_s: float, what: str) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(args, capture_output=True, timeout=timeout_s, check=False)
    except FileNotFoundError as exc:
        raise ToolMissingError(
            f"{args[0]!r} not found: install Debian's ffmpeg package (apt-get install ffmpeg) "
            "or set media.ffmpeg / media.ffprobe in the config"
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise ClipError("tool_timeout", f"{what} ran past its {timeout_s:g} s time limit") from exc


@functools.cache
def ffmpeg_version(ffmpeg_bin: str = "ffmpeg") -> str:
    """The first line of ``ffmpeg -version`` (part of the audio and face parameter hashes)."""
    proc = _run([ffmpeg_bin, "-hide_banner", "-version"], 30, "ffmpeg -version")
    return proc.stdout.decode("utf-8", "replace").splitlines()[0].strip()


def _check_file(path: Path) -> None:
    if not path.exists():
        raise ClipError("unreadable", f"file not found: {path.name}")
    if path.stat().st_size == 0:
        raise ClipError("unreadable", "the file is empty (0 bytes)")


def _rate(text: str | None) -> float | None:
    if not text or text in ("0/0", "0"):
        return None
    num, _, den = text.partition("/")
    value = float(num) / float(den or 1)
    return value if value > 0 else None


def _rotation(stream: dict) -> int:
    for side in stream.get("side_data_list", []) or []:
        if "rotation" in side:
            return int(round(float(side["rotation"]))) % 360
    tag = stream.get("tags", {}).get("rotate")
    return int(tag) % 360 if tag else 0


def probe(path: str | Path, ffprobe: str = "ffprobe", timeout_s: float = 60.0) -> MediaInfo:
    """Probe streams, duration, fps and rotation; ClipError("unreadable") if ffprobe fails."""
    path = Path(path)
    _check_file(path)
    args = [ffprobe, "-v", "error", "-print_format", "json", "-show_streams", "-show_format"]
    proc = _run([*args, _input(path)], timeout_s, "ffprobe")
    if proc.returncode != 0:
        raise ClipError("unreadable", f"ffprobe cannot read the file: {_first_line(proc.stderr)}")
    info = json.loads(proc.stdout or b"{}")
    streams = info.get("streams", [])
    video = next((s for s in streams if s.get("codec_type") == "video"
                  and not s.get("disposition", {}).get("attached_pic")), None)  # fmt: skip
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    if video is None and audio is None:
        raise ClipError("unreadable", "the file has neither an audio nor a video stream")
    duration = info.get("format", {}).get("duration")
    width = height = None
    rotation = 0
    if video is not None:
        width, height = video.get("width"), video.get("height")
        rotation = _rotation(video)
        if rotation in (90, 270) and width and height:
            width, height = height, width
    return MediaInfo(
        duration_s=float(duration) if duration not in (None, "N/A") else None,
        has_audio=audio is not None,
        has_video=video is not None,
        width=width,
        height=height,
        fps=_rate(video.get("avg_frame_rate")) or _rate(video.get("r_frame_rate"))
        if video
        else None,
        rotation=rotation,
        audio_rate=int(audio["sample_rate"]) if audio and audio.get("sample_rate") else None,
        audio_channels=audio.get("channels") if audio else None,
    )


def decode_audio(
    path: str | Path,
    sample_rate: int = 16000,
    ffmpeg_bin: str = "ffmpeg",
    timeout_s: float = DEFAULT_TIMEOUT_S,
    info: MediaInfo | None = None,
) -> np.ndarray:
    """Decode the first audio stream to mono float32 at ``sample_rate`` (ffmpeg resamples)."""
    path = Path(path)
    info = info or probe(path, timeout_s=timeout_s)
    if not info.has_audio:
        raise ClipError("no_audio", "the file has no audio stream")
    stream = ffmpeg.input(_input(path)).output(
        "pipe:1", format="f32le", acodec="pcm_f32le", ac=1, ar=sample_rate, vn=None, sn=None
    )
    args = stream.global_args("-nostdin", "-v", "error").compile(cmd=ffmpeg_bin)
    proc = _run(args, timeout_s, "ffmpeg audio decode")
    if proc.returncode != 0:
        raise ClipError("unreadable", f"ffmpeg cannot decode the audio: {_first_line(proc.stderr)}")
    samples = np.frombuffer(proc.stdout, dtype="<f4").astype(np.float32)
    if samples.size == 0:
        raise ClipError("too_short", "the audio stream decodes to no samples")
    if not np.isfinite(samples).all():
        samples = np.nan_to_num(samples, nan=0.0, posinf=0.0, neginf=0.0)
    return samples


def target_times(duration_s: float, k: int) -> np.ndarray:
    """K times spread evenly over the clip: the centres of K equal segments."""
    return (np.arange(k) + 0.5) * duration_s / k


def _frame_size(info: MediaInfo, max_side: int) -> tuple[int, int]:
    w, h = info.width or max_side, info.height or max_side
    scale = min(1.0, max_side / max(w, h))
    return max(2, int(round(w * scale / 2)) * 2), max(2, int(round(h * scale / 2)) * 2)


def _select_expr(times: np.ndarray) -> str:
    # Select the first frame at or after each target time (once per target).
    return "+".join(f"gte(t,{t:.6f})*not(gte(prev_selected_t,{t:.6f}))" for t in times)


def _decode_frames(
    path: Path,
    select: str | None,
    width: int,
    height: int,
    ffmpeg_bin: str,
    timeout_s: float,
    limit: int | None = None,
) -> tuple[subprocess.CompletedProcess[bytes], np.ndarray]:
    """One ffmpeg pass: optional ``select`` filter -> scale -> raw RGB frames on a pipe."""
    video = ffmpeg.input(_input(path)).video
    if select is not None:
        video = video.filter("select", select)
    video = video.filter("showinfo").filter("scale", width, height)
    out_args = {"format": "rawvideo", "pix_fmt": "rgb24", "fps_mode": "passthrough", "an": None}
    if limit is not None:
        out_args["frames:v"] = limit
    stream = video.output("pipe:1", **out_args)
    args = stream.global_args("-nostdin", "-v", "info", "-nostats").compile(cmd=ffmpeg_bin)
    proc = _run(args, timeout_s, "ffmpeg frame sampling")
    frame_bytes = width * height * 3
    n = len(proc.stdout) // frame_bytes
    frames = np.frombuffer(proc.stdout[: n * frame_bytes], np.uint8).reshape(n, height, width, 3)
    return proc, frames


def sample_frames(
    path: str | Path,
    k: int,
    max_side: int = 640,
    ffmpeg_bin: str = "ffmpeg",
    timeout_s: float = DEFAULT_TIMEOUT_S,
    info: MediaInfo | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Sample ``k`` frames evenly over the clip as RGB uint8 ``(k, H, W, 3)`` with their times.

    One ffmpeg pass with a ``select`` filter into a raw pipe (no seeks, no image encoding);
    rotation metadata is applied; the longer side is scaled down to ``max_side``. A clip with
    fewer decodable frames than ``k`` repeats its nearest frames (times say which).
    """
    path = Path(path)
    info = info or probe(path, timeout_s=timeout_s)
    if not info.has_video:
        raise ClipError("no_video", "the file has no video stream")
    width, height = _frame_size(info, max_side)
    duration = info.duration_s or (1.0 / (info.fps or 25.0))
    times = target_times(duration, k)
    proc, frames = _decode_frames(path, _select_expr(times), width, height, ffmpeg_bin, timeout_s)
    if len(frames) == 0 and proc.returncode == 0:
        # Shorter than one frame interval per target (e.g. a 1-frame video): take what decodes.
        proc, frames = _decode_frames(path, None, width, height, ffmpeg_bin, timeout_s, limit=4 * k)
    n = len(frames)
    if proc.returncode != 0 and n == 0:
        raise ClipError("unreadable", f"ffmpeg cannot decode the video: {_first_line(proc.stderr)}")
    if n == 0:
        raise ClipError("too_short", "no video frame could be decoded")
    found = [float(t) for t in re.findall(rb"pts_time:\s*([-0-9.e+]+)", proc.stderr)][:n]
    found += [float(times[min(i, k - 1)]) for i in range(len(found), n)]
    got = np.asarray(found, dtype=np.float64)
    # Map each target time to the nearest decoded frame.
    pick = np.abs(got[None, :] - times[:, None]).argmin(axis=1) if n != k else np.arange(k)
    return np.ascontiguousarray(frames[pick]), got[pick]
