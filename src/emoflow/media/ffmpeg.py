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
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ffmpeg
import numpy as np

from emoflow.errors import ClipError, ToolMissingError
from emoflow.media.libav_probe import libav_version, probe_json
from emoflow.media.pipe import output_blocks, read_output, running, tool_not_found
from emoflow.storage.file_memo import file_value

DEFAULT_TIMEOUT_S = 600.0
BUNDLED = "bundled"
"""``media.ffmpeg: bundled``: imageio-ffmpeg's static ffmpeg; ``media.ffprobe``: av's libav."""
MEDIA_DEFAULTS: dict[str, Any] = {
    "ffmpeg": BUNDLED,
    "ffprobe": BUNDLED,
    "timeout_s": DEFAULT_TIMEOUT_S,
    "truncation_tolerance_s": 0.5,
    "truncation_tolerance": 0.1,
}


@dataclass(frozen=True)
class MediaInfo:
    """What the probe says about a file (None where it does not say)."""

    duration_s: float | None
    has_audio: bool
    has_video: bool
    width: int | None  # displayed size, after rotation
    height: int | None
    fps: float | None
    rotation: int
    audio_rate: int | None
    audio_channels: int | None
    video_duration_s: float | None = None  # the stream's own duration where it declares one
    audio_duration_s: float | None = None


def _input(path: str | Path) -> str:
    return "file:" + str(Path(path).resolve())


def _first_line(stderr: bytes) -> str:
    lines = [ln.strip() for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    # ffmpeg prefixes lines with the input name; keep the message after the last "]: " / ": ".
    msg = lines[-1] if lines else "no message"
    return re.sub(r"^.*?file:[^:]*:\s*", "", msg)[:300]


def tool_path(name: str) -> str:
    """The ffmpeg binary to run for ``media.ffmpeg``: a name on PATH or a path as given;
    :data:`BUNDLED` is the static ffmpeg that the imageio-ffmpeg package installs.

    Why bundled by default: Debian's ffmpeg links about 200 shared libraries, and linking them
    costs about 0.1 s per call — more than decoding a short clip's frames (bench/faces.py);
    the static build starts in about 0.01 s, and every machine that installs emoflow's pins
    (a cluster node without root included) decodes with the same ffmpeg.
    """
    if name != BUNDLED:
        return name
    return _bundled_ffmpeg()


@functools.cache
def _bundled_ffmpeg() -> str:
    try:
        import imageio_ffmpeg
    except ImportError as exc:
        raise ToolMissingError(
            "media.ffmpeg: bundled needs the imageio-ffmpeg package (pip install "
            "imageio-ffmpeg), or set media.ffmpeg: ffmpeg to use the ffmpeg on PATH"
        ) from exc
    return str(imageio_ffmpeg.get_ffmpeg_exe())


def _run(args: list[str], timeout_s: float, what: str) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(args, capture_output=True, timeout=timeout_s, check=False)
    except FileNotFoundError as exc:
        raise tool_not_found(args) from exc
    except subprocess.TimeoutExpired as exc:
        raise ClipError("tool_timeout", f"{what} ran past its {timeout_s:g} s time limit") from exc


@functools.cache
def ffmpeg_version(ffmpeg_bin: str = BUNDLED) -> str:
    """The first line of ``ffmpeg -version`` (part of the audio and face parameter hashes),
    kept by the binary's identity (:func:`emoflow.storage.file_memo.file_value`)."""
    tool = tool_path(ffmpeg_bin)

    def version() -> str:
        proc = _run([tool, "-hide_banner", "-version"], 30, "ffmpeg -version")
        return proc.stdout.decode("utf-8", "replace").splitlines()[0].strip()

    found = shutil.which(tool)
    return version() if found is None else file_value(found, "-version", version)


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


def probe(path: str | Path, ffprobe: str = BUNDLED, timeout_s: float = 60.0) -> MediaInfo:
    """Probe streams, duration, fps and rotation; ClipError("unreadable") if the file cannot be
    read. ``ffprobe``: :data:`BUNDLED` (libavformat in this process,
    :mod:`emoflow.media.libav_probe`), or the ffprobe binary to run (a name on PATH or a path)."""
    path = Path(path)
    _check_file(path)
    info = probe_json(path) if ffprobe == BUNDLED else _ffprobe_json(path, ffprobe, timeout_s)
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
        video_duration_s=_duration(video),
        audio_duration_s=_duration(audio),
    )


def _ffprobe_json(path: Path, ffprobe: str, timeout_s: float) -> dict[str, Any]:
    args = [ffprobe, "-v", "error", "-print_format", "json", "-show_streams", "-show_format"]
    proc = _run([*args, _input(path)], timeout_s, "ffprobe")
    if proc.returncode != 0:
        raise ClipError("unreadable", f"ffprobe cannot read the file: {_first_line(proc.stderr)}")
    return json.loads(proc.stdout or b"{}")


def probe_version(ffprobe: str = BUNDLED) -> str:
    """What probes, for the probe cache's key: PyAV's version for :data:`BUNDLED`, else the
    ffprobe binary's version line."""
    return libav_version() if ffprobe == BUNDLED else ffmpeg_version(ffprobe)


def _duration(stream: dict | None) -> float | None:
    """A stream's own declared duration: ``duration`` (mp4, avi, ...) or Matroska's
    ``DURATION`` tag (``HH:MM:SS.fffffffff``); None when it declares none."""
    stream = stream or {}
    value = stream.get("duration")
    tag = (stream.get("tags") or {}).get("DURATION")
    try:
        if value not in (None, "N/A"):
            seconds = float(value)
        elif tag:
            h, m, sec = tag.split(":")
            seconds = int(h) * 3600 + int(m) * 60 + float(sec)
        else:
            return None
    except ValueError:
        return None
    return seconds if seconds > 0 else None


def _audio_args(path: Path, sample_rate: int, ffmpeg_bin: str, info: MediaInfo) -> list[str]:
    if not info.has_audio:
        raise ClipError("no_audio", "the file has no audio stream")
    stream = ffmpeg.input(_input(path)).output(
        "pipe:1", format="f32le", acodec="pcm_f32le", ac=1, ar=sample_rate, vn=None, sn=None
    )
    return stream.global_args("-nostdin", "-v", "error").compile(cmd=tool_path(ffmpeg_bin))


def _check_decode(returncode: int, stderr: bytes, n_samples: int) -> None:
    """The audio decode's ClipError, if it failed or gave no sample."""
    if returncode != 0:
        raise ClipError("unreadable", f"ffmpeg cannot decode the audio: {_first_line(stderr)}")
    if n_samples == 0:
        raise ClipError("too_short", "the audio stream decodes to no samples")


def _finite(samples: np.ndarray) -> np.ndarray:
    if not np.isfinite(samples).all():
        samples = np.nan_to_num(samples, nan=0.0, posinf=0.0, neginf=0.0)
    return samples


def decode_audio(
    path: str | Path,
    sample_rate: int = 16000,
    ffmpeg_bin: str = BUNDLED,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    info: MediaInfo | None = None,
) -> np.ndarray:
    """Decode the first audio stream to mono float32 at ``sample_rate`` (ffmpeg resamples)."""
    path = Path(path)
    info = info or probe(path, timeout_s=timeout_s)
    args = _audio_args(path, sample_rate, ffmpeg_bin, info)
    declared = info.audio_duration_s or info.duration_s or 0.0
    size = 4 * (int(declared * sample_rate) + sample_rate)  # one second over: rarely regrown
    data, n, returncode, stderr = read_output(args, timeout_s, "ffmpeg audio decode", size)
    _check_decode(returncode, stderr, n // 4)
    return _finite(np.frombuffer(data, dtype=np.float32, count=n // 4))  # writable: no copy


def audio_blocks(
    path: str | Path,
    sample_rate: int,
    ffmpeg_bin: str,
    timeout_s: float,
    info: MediaInfo,
    block: int = 1 << 16,
) -> Iterator[np.ndarray]:
    """:func:`decode_audio`'s samples, ``block`` at a time as ffmpeg decodes them (memory: one
    block); the decode's errors come after the last block."""
    total = 0
    with running(_audio_args(Path(path), sample_rate, ffmpeg_bin, info), timeout_s,
                 "ffmpeg audio decode") as run:  # fmt: skip
        for data in output_blocks(run, 4 * block):
            samples = np.frombuffer(data, dtype=np.float32, count=len(data) // 4)
            total += samples.size
            if samples.size:
                yield _finite(samples)
    _check_decode(int(run.returncode or 0), run.stderr, total)


def frame_size(info: MediaInfo, max_side: int) -> tuple[int, int]:
    """Output frame size: the displayed size with the longer side at most ``max_side`` (even)."""
    w, h = info.width or max_side, info.height or max_side
    scale = min(1.0, max_side / max(w, h))
    return max(2, int(round(w * scale / 2)) * 2), max(2, int(round(h * scale / 2)) * 2)


def _grid_select(rate: float) -> str:
    # Select the first frame at or after each sample time (j + 0.5) / rate: a frame is taken
    # when the number of sample times up to it, floor(t * rate + 0.5), grows. O(1) per frame
    # whatever the clip's length.
    r = f"{rate:.9f}"
    count = f"floor(t*{r}+0.5)"
    return f"if(isnan(prev_t),gte({count},1),gt({count},floor(prev_t*{r}+0.5)))"


@dataclass
class SampledFrames:
    """What :class:`FrameStream` decoded: per sample time, the decoded frame it maps to."""

    pick: np.ndarray  # (N,) index into the decoded frames, -1 where no frame exists
    decoded_t: np.ndarray  # (D,) pts of the decoded frames


class FrameStream:
    """Decode the frames at a clip's sample ``times`` in one ffmpeg pass, in chunks.

    ``times`` must be the grid's ``(j + 0.5) / rate`` (or ``[0.0]`` for a clip shorter than one
    sample interval). Frames come as raw RGB from a pipe (no seeks, no image encoding), rotation
    applied, scaled to :func:`frame_size`. Iterate :meth:`chunks` for ``(D_i, H, W, 3)`` uint8
    arrays of decoded frames; then :meth:`finish` maps every sample time to its frame and
    raises ``truncated`` when the video stops well before its declared end.
    """

    def __init__(
        self,
        path: str | Path,
        times: np.ndarray,
        rate: float,
        info: MediaInfo,
        max_side: int = 640,
        media: dict[str, Any] | None = None,
    ) -> None:
        media = {**MEDIA_DEFAULTS, **(media or {})}
        self.path = Path(path)
        self.times = np.asarray(times, dtype=np.float64)
        self.info = info
        self.media = media
        self.width, self.height = frame_size(info, max_side)
        video = ffmpeg.input(_input(self.path)).video
        out_args: dict[str, Any] = {
            "format": "rawvideo", "pix_fmt": "rgb24", "fps_mode": "passthrough", "an": None,
        }  # fmt: skip
        if len(self.times) == 1 and self.times[0] == 0.0:
            out_args["frames:v"] = 1  # a clip shorter than one sample interval: its first frame
        else:
            video = video.filter("select", _grid_select(rate))
            out_args["frames:v"] = len(self.times)
        video = video.filter("showinfo").filter("scale", self.width, self.height)
        stream = video.output("pipe:1", **out_args)
        self.args = stream.global_args("-nostdin", "-v", "info", "-nostats").compile(
            cmd=tool_path(media["ffmpeg"])
        )
        self.n_decoded = 0
        self.stderr = b""
        self.returncode: int | None = None

    def chunks(self, size: int = 32) -> Iterator[np.ndarray]:
        """Decoded frames, ``size`` at a time (memory: one chunk of full frames)."""
        frame_bytes = self.width * self.height * 3
        timeout = float(self.media["timeout_s"])
        with running(self.args, timeout, "ffmpeg frame sampling") as run:
            for data in output_blocks(run, frame_bytes * size):
                n = len(data) // frame_bytes
                if n:
                    self.n_decoded += n
                    yield np.frombuffer(data[: n * frame_bytes], np.uint8).reshape(
                        n, self.height, self.width, 3
                    )
        self.returncode, self.stderr = run.returncode, run.stderr

    def finish(self) -> SampledFrames:
        """Map sample times to decoded frames; ClipError when nothing (or too little) decoded."""
        n = self.n_decoded
        if n == 0:
            if self.returncode != 0:
                raise ClipError(
                    "unreadable", f"ffmpeg cannot decode the video: {_first_line(self.stderr)}"
                )
            raise ClipError("too_short", "no video frame could be decoded")
        got = [float(t) for t in re.findall(rb"pts_time:\s*([-0-9.e+]+)", self.stderr)][:n]
        if len(got) < n:  # showinfo said less than was decoded: assume the sample times
            got += [float(self.times[min(i, len(self.times) - 1)]) for i in range(len(got), n)]
        decoded = np.asarray(got, dtype=np.float64)
        if len(self.times) == 1 and self.times[0] == 0.0:
            return SampledFrames(np.zeros(1, np.int64), decoded)
        # first decoded frame at or after each sample time (the select filter's rule)
        pick = np.searchsorted(decoded, self.times - 1e-6, side="left")
        missing = pick >= n
        declared = self.info.video_duration_s or self.info.duration_s
        if declared:
            # the stream runs on for up to one sampling step after the last sample decoded
            step = float(np.max(np.diff(self.times))) if len(self.times) > 1 else 0.0
            decoded_end = float(decoded[-1]) + max(_frame_interval(self.info), step)
            check_truncation("video", decoded_end, declared, self.media)
        pick[missing] = -1
        return SampledFrames(pick.astype(np.int64), decoded)


def _frame_interval(info: MediaInfo) -> float:
    return 1.0 / info.fps if info.fps else 0.0


def check_truncation(what: str, decoded_s: float, declared_s: float, media: dict) -> None:
    """ClipError("truncated") when ``decoded_s`` falls short of ``declared_s`` by more than
    ``media.truncation_tolerance_s`` or ``media.truncation_tolerance`` of it (the larger)."""
    allowed = max(
        float(media.get("truncation_tolerance_s", 0.5)),
        float(media.get("truncation_tolerance", 0.1)) * declared_s,
    )
    if declared_s - decoded_s > allowed:
        raise ClipError(
            "truncated",
            f"the {what} stream decodes to {decoded_s:.2f} s but the file declares "
            f"{declared_s:.2f} s: the file is truncated or damaged",
        )
