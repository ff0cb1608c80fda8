"""Probing in this process, with the libavformat that the pinned PyAV wheel bundles
(``media.ffprobe: bundled``, the default).

Debian's ``ffprobe`` costs 0.12-0.15 s a call, nearly all of it the dynamic loader's symbol
lookups over its 216 shared libraries (``perf``); opening a clip here costs about 5 ms. The
answer comes shaped as the part of ``ffprobe -show_streams -show_format -print_format json``
that :func:`emoflow.media.ffmpeg.probe` reads, formatted as ffprobe formats it (durations
``%f`` of the same products), so both sources go through one parser and give the same
:class:`~emoflow.media.ffmpeg.MediaInfo`. The wheel pins its FFmpeg: the probe no longer
depends on the ffprobe a machine happens to have.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from emoflow.errors import ClipError, ToolMissingError


@functools.cache
def libav_version() -> str:
    """The probe's identity (part of the probe cache's key): PyAV's version, which fixes the
    FFmpeg libraries its wheel carries. Imports av (0.1 s): a process that probes asks for it
    first, and workers forked after inherit the import."""
    return f"PyAV {_av().__version__}"


def _av() -> Any:
    try:
        import av
    except ImportError as exc:  # pragma: no cover - av is a dependency
        raise ToolMissingError(
            "media.ffprobe: bundled needs the av package (pip install av), or set "
            "media.ffprobe: ffprobe to use the ffprobe on PATH"
        ) from exc
    return av


def _seconds(ts: int | None, time_base: Any) -> str | None:
    """ffprobe's ``print_time``: ``ts * av_q2d(time_base)`` as ``%f``; None for no timestamp."""
    if ts is None:
        return None
    return f"{ts * (time_base.numerator / time_base.denominator):f}"


def _rate(rate: Any) -> str:
    return f"{rate.numerator}/{rate.denominator}" if rate else "0/0"


def _rotation(container: Any, stream: Any) -> int | None:
    """The display matrix's rotation, read from the first decoded frame (the decoder copies the
    stream's matrix onto its frames; PyAV reads no stream side data); None if none decodes."""
    stream.codec_context.thread_count = 1
    try:
        frame = next(container.decode(stream), None)
    except Exception:  # noqa: BLE001 - any decode error: the decode stage reports it
        return None
    return None if frame is None else frame.rotation


def _stream(container: Any, stream: Any, av: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"codec_type": stream.type, "tags": dict(stream.metadata)}
    pic = bool(stream.disposition & av.stream.Disposition.attached_pic)
    entry["disposition"] = {"attached_pic": int(pic)}
    duration = _seconds(stream.duration, stream.time_base) if stream.time_base else None
    if duration is not None:
        entry["duration"] = duration
    ctx = stream.codec_context
    if stream.type == "video":
        entry.update(width=ctx.width, height=ctx.height, r_frame_rate=_rate(stream.base_rate))
        entry["avg_frame_rate"] = _rate(stream.average_rate)
    elif stream.type == "audio":
        entry.update(sample_rate=str(ctx.sample_rate), channels=ctx.channels)
    return entry


def probe_json(path: Path) -> dict[str, Any]:
    """The clip's streams and format as ffprobe's JSON has them (the fields
    :func:`emoflow.media.ffmpeg.probe` reads); ClipError("unreadable") if libavformat cannot
    open it. The first video stream that is not a cover picture carries its rotation as a
    display-matrix side data entry, as in ffprobe's ``side_data_list``."""
    av = _av()
    try:
        container = av.open("file:" + str(Path(path).resolve()))
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ClipError("unreadable", f"libavformat cannot read the file: {reason}") from exc
    with container:
        streams = [_stream(container, s, av) for s in container.streams]
        for entry, stream in zip(streams, container.streams, strict=True):
            if entry["codec_type"] == "video" and not entry["disposition"]["attached_pic"]:
                rotation = _rotation(container, stream)
                if rotation:
                    entry["side_data_list"] = [{"rotation": rotation}]
                break
        duration = container.duration
    fmt = {} if duration is None else {"duration": f"{duration * (1 / 1000000):f}"}
    return {"streams": streams, "format": fmt}
