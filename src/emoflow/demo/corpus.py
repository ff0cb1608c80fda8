"""Writing the demo corpus: render, synthesise and encode each clip with bitexact ffmpeg
settings."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ProcessPoolExecutor
from itertools import repeat
from pathlib import Path

import numpy as np

from emoflow.demo.actors import make_actor
from emoflow.demo.animation import render_frames
from emoflow.demo.clips import (
    FFMPEG_TIMEOUT_S,
    FPS,
    FRAME_SIZE,
    N_FRAMES,
    SAMPLE_RATE,
    Clip,
    clip_list,
    clip_rng,
)
from emoflow.demo.voice import VOICES, syllable_times, synth_audio
from emoflow.errors import ToolMissingError


def _resolve_ffmpeg(ffmpeg: str) -> str:
    found = shutil.which(ffmpeg)
    if found is None:
        raise ToolMissingError(
            f"ffmpeg not found ({ffmpeg!r}); install it (e.g. apt-get install ffmpeg) "
            "or pass the path of the binary"
        )
    return found


def _encode(ffmpeg: str, frames: np.ndarray, audio: np.ndarray, target: Path) -> None:
    """Encode frames + audio into an mp4 at ``target`` (overwritten) with bitexact settings."""
    with tempfile.TemporaryDirectory(prefix="emoflow-demo-") as tmp:
        audio_path = Path(tmp) / "audio.f32"
        audio_path.write_bytes(audio.astype("<f4").tobytes())
        args = [
            ffmpeg, "-nostats", "-hide_banner", "-loglevel", "error", "-y",
            "-threads", "1", "-fflags", "+bitexact",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{FRAME_SIZE}x{FRAME_SIZE}",
            "-r", str(FPS), "-i", "pipe:0",
            "-f", "f32le", "-ar", str(SAMPLE_RATE), "-ac", "1", "-i", str(audio_path),
            "-map", "0:v:0", "-map", "1:a:0", "-map_metadata", "-1", "-map_chapters", "-1",
            "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p",
            "-x264-params", "threads=1:lookahead-threads=1:sliced-threads=0",
            "-g", str(N_FRAMES), "-flags:v", "+bitexact",
            "-c:a", "aac", "-b:a", "64k", "-flags:a", "+bitexact",
            "-threads", "1", "-fflags", "+bitexact", "-movflags", "+faststart",
            "-f", "mp4", str(target),
        ]  # fmt: skip
        try:
            proc = subprocess.run(
                args,
                input=np.ascontiguousarray(frames).tobytes(),
                capture_output=True,
                timeout=FFMPEG_TIMEOUT_S,
                check=False,
            )
        except FileNotFoundError as exc:
            raise ToolMissingError(f"ffmpeg not found ({ffmpeg!r})") from exc
        if proc.returncode != 0:
            message = proc.stderr.decode("utf-8", "replace").strip()[-2000:]
            raise RuntimeError(f"ffmpeg failed ({proc.returncode}) on {target.name}: {message}")


def _write_clip(ffmpeg: str, seed: int, clip: Clip, path: Path) -> bool:
    """Generate one clip; replace ``path`` atomically unless it already has these bytes."""
    actor = make_actor(seed, clip.actor)
    syllables = syllable_times(VOICES[clip.emotion], clip.statement, clip_rng(seed, clip, 0))
    audio = synth_audio(seed, clip, actor, syllables)
    frames = render_frames(seed, clip, actor, syllables)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".tmp-{path.name}.", suffix=".mp4")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        _encode(ffmpeg, frames, audio, tmp)
        if path.is_file() and _same_bytes(tmp, path):
            tmp.unlink()
            return False
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        return True
    finally:
        tmp.unlink(missing_ok=True)


def _same_bytes(a: Path, b: Path) -> bool:
    return a.stat().st_size == b.stat().st_size and a.read_bytes() == b.read_bytes()


def make_demo_corpus(
    out_dir: Path, clips: int = 96, seed: int = 0, ffmpeg: str = "ffmpeg", workers: int = 1
) -> list[Path]:
    """Write a deterministic corpus; return the written paths sorted.

    Clips go to ``out_dir/Actor_AA/01-01-EE-II-SS-RR-AA.mp4`` (the RAVDESS layout). The first
    ``clips`` clips of a fixed order are made: twelve actors at a time, each round giving every
    actor one clip of each of the four :data:`EMOTIONS` (so any multiple of four is balanced;
    96 = 12 actors x 4 emotions x 2 repetitions). A clip's bytes depend only on ``seed`` and its
    name; a file that already holds exactly those bytes is left untouched (its mtime too), others
    are replaced atomically. Files not in the list are never touched.

    Args: out_dir: folder of the corpus (created if missing). clips: number of clips, 1 to 384 (24
        actors x 4 rounds x 4 emotions). seed: changes every random choice (actor looks, voices,
        jitter). ffmpeg: name or path of the ffmpeg binary (with libx264 and the native aac
        encoder). workers: clips made at once, in fresh processes (the bytes do not depend on
        it).

    Returns:
        The paths of all ``clips`` files of the corpus, sorted, whether rewritten or not.

    Raises: ToolMissingError: ffmpeg cannot be found. ValueError: ``clips`` is out of range.
    """
    plan = clip_list(clips)
    binary = _resolve_ffmpeg(ffmpeg)
    paths = [Path(out_dir) / clip.relpath for clip in plan]
    if workers <= 1:
        for clip, path in zip(plan, paths, strict=True):
            _write_clip(binary, seed, clip, path)
    else:  # spawned, not forked: the caller may hold threads (torch, OpenMP) a fork would copy
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(min(workers, len(plan)), mp_context=context) as pool:
            list(pool.map(_write_clip, repeat(binary), repeat(seed), plan, paths))
    return sorted(paths)
