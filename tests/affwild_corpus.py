"""An Aff-Wild2-shaped corpus of generated videos, for tests.

:func:`make_affwild_corpus` writes the official layout (ABAW 2024 folder names)::

    batch1/<video>.mp4, batch2/<video>.mp4
    annotations/VA_Estimation_Challenge/{Train_Set,Validation_Set}/<video>.txt
    annotations/EXPR_Recognition_Challenge/{Train_Set,Validation_Set}/<video>.txt

Each video is a sequence of segments of one or two units of :data:`UNIT_S` (3.2 s, the demo
clip's length), each acted with one emotion by the demo renderer (:mod:`emoflow.demo`): the
face carries valence (smile / frown, nods / droop, head motion throughout), the voice arousal
(calm / aroused speech, lips moving with the syllables). The face drifts slowly across a wider
frame. The per-frame labels follow the acted emotion: V/A from :data:`VA` through an
annotator's lag of :data:`LAG_S` plus a slow wobble, expressions as ABAW class indices; each
track has one unannotated stretch (-5 / -1) at its own place.

One video shows two actors side by side and has ``<video>_left.txt`` / ``<video>_right.txt``
in both tracks, each following its own side's emotions (never the same emotion at one time);
the two take turns speaking unit by unit, and the silent one's lips stay still.

Deterministic: a file's bytes depend only on the arguments (bitexact ffmpeg settings).
"""

from __future__ import annotations

import math
import multiprocessing
import shutil
import subprocess
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emoflow.demo.actors import make_actor
from emoflow.demo.animation import render_frames
from emoflow.demo.clips import DURATION_S, FPS, FRAME_SIZE, SAMPLE_RATE, Clip, clip_rng
from emoflow.demo.voice import VOICES, syllable_times, synth_audio
from emoflow.storage.atomic import atomic_path, write_text

UNIT_S = DURATION_S  # one rendered demo clip
CODES = {"neutral": "01", "happy": "03", "sad": "04", "angry": "05"}
EMOTIONS = tuple(CODES)
VA = {"neutral": (0.0, 0.0), "happy": (0.6, 0.5), "sad": (-0.6, -0.4), "angry": (-0.6, 0.6)}
EXPR_HEADER = "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other"
EXPR_INDEX = {"neutral": 0, "angry": 1, "happy": 4, "sad": 5}
LAG_S = 0.3
UNANNOTATED_S = (1.5, 3.0)  # length range of each track's unannotated stretch
VA_DIR = "annotations/VA_Estimation_Challenge"
EXPR_DIR = "annotations/EXPR_Recognition_Challenge"
SPLIT_DIRS = {"train": "Train_Set", "val": "Validation_Set"}
BACKGROUND = np.array([88, 92, 100], np.uint8)


@dataclass(frozen=True)
class VideoPlan:
    """One video to generate: actors (one, or two side by side: left, right)."""

    index: int
    name: str
    split: str  # train / val, or test for a video without annotations
    duration_s: float
    actors: tuple[int, ...]
    width: int


def _units(rng: np.random.Generator, n: int, avoid: list[str] | None = None) -> list[str]:
    """An emotion per unit: segments of 1–2 units, each emotion unlike the previous one and,
    when ``avoid`` is given, unlike ``avoid``'s emotion at the same units."""
    out: list[str] = []
    while len(out) < n:
        length = min(int(rng.integers(1, 3)), n - len(out))
        banned = {out[-1]} if out else set()
        if avoid is not None:
            banned |= set(avoid[len(out) : len(out) + length])
        choices = [e for e in EMOTIONS if e not in banned]
        out += [choices[int(rng.integers(len(choices)))]] * length
    return out


def _labels(
    emotions: np.ndarray, fps: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Per-frame (valence, arousal) rounded to 3 decimals with -5 stretches, and expression
    indices with -1 stretches, following ``emotions`` (one per frame)."""
    n = len(emotions)
    target = np.array([VA[e] for e in emotions], np.float64)
    alpha = 1.0 - math.exp(-1.0 / (LAG_S * fps))
    va = np.empty_like(target)
    level = target[0]
    for i in range(n):
        level = level + alpha * (target[i] - level)
        va[i] = level
    t = np.arange(n) / fps
    phase = rng.uniform(0, 2 * np.pi, size=2)
    va += 0.04 * np.sin(2 * np.pi * t[:, None] / np.array([5.3, 7.1]) + phase)
    va = np.round(np.clip(va, -1.0, 1.0), 3)
    expr = [EXPR_INDEX[e] for e in emotions]
    for which in ("va", "expr"):
        length = min(int(round(rng.uniform(*UNANNOTATED_S) * fps)), n // 3)
        start = int(rng.integers(min(n // 4, n - length), max(n // 4 + 1, n - length)))
        if which == "va":
            va[start : start + length] = -5.0
        else:
            expr[start : start + length] = [-1] * len(expr[start : start + length])
    return va[:, 0].copy(), va[:, 1].copy(), expr


def _va_text(valence: np.ndarray, arousal: np.ndarray) -> str:
    rows = [
        "-5,-5" if v == -5.0 else f"{v:.3f},{a:.3f}" for v, a in zip(valence, arousal, strict=True)
    ]
    return "valence,arousal\n" + "\n".join(rows) + "\n"


def _expr_text(expr: list[int]) -> str:
    return EXPR_HEADER + "\n" + "\n".join(map(str, expr)) + "\n"


def _clips(plan: VideoPlan, person: int, emotions: list[str]) -> list[Clip]:
    """The demo clip of each unit (a unique repetition number, so no two units repeat)."""
    actor = plan.actors[person]
    return [
        Clip(CODES[e], "01", "01" if u % 2 == 0 else "02", f"{plan.index * 1000 + u:04d}", actor)
        for u, e in enumerate(emotions)
    ]


def _audio(seed: int, clips: list[list[Clip]], n_samples: int) -> tuple[np.ndarray, list]:
    """The soundtrack (speaker of unit u: person u mod persons) and each person's syllables per
    unit (empty while silent)."""
    persons, units = len(clips), len(clips[0])
    syllables: list[list[np.ndarray]] = [[np.empty((0, 2))] * units for _ in range(persons)]
    parts = []
    for u in range(units):
        clip = clips[u % persons][u]
        actor = make_actor(seed, clip.actor)
        syl = syllable_times(VOICES[clip.emotion], clip.statement, clip_rng(seed, clip, 0))
        syllables[u % persons][u] = syl
        parts.append(synth_audio(seed, clip, actor, syl))
    audio = np.concatenate(parts)[:n_samples]
    return audio.astype(np.float32), syllables


def _encoder(ffmpeg: str, plan: VideoPlan, fps: int, audio: Path, target: Path, log):
    args = [
        ffmpeg, "-nostats", "-hide_banner", "-loglevel", "error", "-y",
        "-threads", "1", "-fflags", "+bitexact",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{plan.width}x{FRAME_SIZE}",
        "-r", str(fps), "-i", "pipe:0",
        "-f", "f32le", "-ar", str(SAMPLE_RATE), "-ac", "1", "-i", str(audio),
        "-map", "0:v:0", "-map", "1:a:0", "-map_metadata", "-1", "-map_chapters", "-1",
        "-c:v", "libx264", "-preset", "superfast", "-crf", "23", "-pix_fmt", "yuv420p",
        "-x264-params", "threads=1:lookahead-threads=1:sliced-threads=0",
        "-g", str(2 * fps), "-flags:v", "+bitexact",
        "-c:a", "aac", "-b:a", "48k", "-flags:a", "+bitexact",
        "-threads", "1", "-fflags", "+bitexact", "-movflags", "+faststart",
        "-f", "mp4", str(target),
    ]  # fmt: skip
    return subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=log)


def _render_unit(
    seed: int, plan: VideoPlan, clips: list[list[Clip]], syllables: list, u: int, times: np.ndarray
) -> np.ndarray:
    """The frames at ``times`` (seconds into the video, all inside unit ``u``)."""
    local = np.clip(np.round((times - u * UNIT_S) * FPS).astype(int), 0, None)
    out = np.empty((len(times), FRAME_SIZE, plan.width, 3), np.uint8)
    out[:] = BACKGROUND
    for person, person_clips in enumerate(clips):
        clip = person_clips[u]
        frames = render_frames(seed, clip, make_actor(seed, clip.actor), syllables[person][u])
        frames = frames[np.minimum(local, len(frames) - 1)]
        if len(clips) == 2:
            out[:, :, person * FRAME_SIZE : (person + 1) * FRAME_SIZE] = frames
            continue
        room = plan.width - FRAME_SIZE  # the face drifts across the frame
        for k, t in enumerate(times):
            x = int(round(room / 2 * (1 + math.sin(2 * math.pi * t / 17.0 + plan.index))))
            out[k, :, x : x + FRAME_SIZE] = frames[k]
    return out


def _write_video(ffmpeg: str, seed: int, fps: int, plan: VideoPlan, path: Path) -> dict[str, Any]:
    """Render, encode and label one video; return its labels (per clip id)."""
    rng = np.random.default_rng([seed, plan.index])
    n_frames = int(round(plan.duration_s * fps))
    units = int(math.ceil(n_frames / fps / UNIT_S - 1e-9))
    emotions = [_units(rng, units)]
    if len(plan.actors) == 2:
        emotions.append(_units(rng, units, avoid=emotions[0]))
    clips = [_clips(plan, p, e) for p, e in enumerate(emotions)]
    n_samples = int(round(n_frames / fps * SAMPLE_RATE))
    audio, syllables = _audio(seed, clips, n_samples)
    times = np.arange(n_frames) / fps
    unit_of = np.minimum((times / UNIT_S + 1e-9).astype(int), units - 1)
    with tempfile.TemporaryDirectory(prefix="affwild-") as tmp, atomic_path(path, ".mp4") as out:
        (Path(tmp) / "audio.f32").write_bytes(audio.astype("<f4").tobytes())
        with open(Path(tmp) / "log", "wb") as log:
            proc = _encoder(ffmpeg, plan, fps, Path(tmp) / "audio.f32", out, log)
            try:
                for u in range(units):
                    frames = _render_unit(seed, plan, clips, syllables, u, times[unit_of == u])
                    proc.stdin.write(np.ascontiguousarray(frames).tobytes())
            finally:
                proc.stdin.close()
                code = proc.wait(timeout=600)
        if code != 0:
            message = (Path(tmp) / "log").read_text("utf-8", "replace")[-2000:]
            raise RuntimeError(f"ffmpeg failed ({code}) on {path.name}: {message}")
    sides = ("left", "right") if len(plan.actors) == 2 else (None,)
    per_frame = {side: np.array(emotions[p], dtype=object)[unit_of] for p, side in enumerate(sides)}
    return {"frames": n_frames, "emotions": per_frame}


def _plans(
    durations: tuple[float, ...], two_person_s: float | None, two_person_split: str,
    test_videos: int, width: int, fps: int,
) -> list[VideoPlan]:  # fmt: skip
    plans = [
        VideoPlan(i, f"{i + 1}-{fps}-{width}x{FRAME_SIZE}", "val" if i % 3 == 2 else "train",
                  float(d), (i + 1,), width)
        for i, d in enumerate(durations)
    ]  # fmt: skip
    if two_person_s:
        i = len(plans)
        plans.append(VideoPlan(i, f"video{i + 1}", two_person_split, two_person_s, (1, 2), 640))
    for _ in range(test_videos):
        i = len(plans)
        plans.append(VideoPlan(i, f"{i + 1}-{fps}-test", "test", 6.4, (i % 4 + 1,), width))
    return plans


def make_affwild_corpus(
    root: Path,
    seed: int = 0,
    durations: tuple[float, ...] = (60.0, 64.0, 68.0, 72.0),
    two_person_s: float | None = 75.0,
    two_person_split: str = "val",
    test_videos: int = 0,
    fps: int = 15,
    width: int = 480,
    workers: int = 1,
    ffmpeg: str = "ffmpeg",
) -> dict[str, Any]:
    """Write an Aff-Wild2-shaped corpus under ``root`` (see the module docstring).

    Args: durations: seconds of each one-person video (split: every third one val, the others
        train). two_person_s: seconds of the two-person video (None: none), in
        ``two_person_split``. test_videos: 6.4 s videos without annotations (ABAW's test set).
        fps: frame rate; frames are ``width`` x 320 (the two-person video 640 x 320). workers:
        videos made at once, in fresh processes (the bytes do not depend on it).

    Returns: ``{"root", "fps", "videos": {name: {"path", "split", "frames", "sides"}},
        "clips": {clip_id: {"video", "path", "side", "split", "speaker", "va_file",
        "expr_file", "emotion", "valence", "arousal", "expression"}}}``: per frame, the acted
        ``emotion`` (str array), ``valence`` / ``arousal`` (float32, NaN where unannotated) and
        ``expression`` (class name or None) as an Aff-Wild2 reader should give them.
    """
    binary = shutil.which(ffmpeg)
    if binary is None:
        raise FileNotFoundError(f"ffmpeg not found ({ffmpeg!r})")
    root = Path(root)
    plans = _plans(tuple(durations), two_person_s, two_person_split, test_videos, width, fps)
    paths = [root / f"batch{1 + (p.index % 2)}" / f"{p.name}.mp4" for p in plans]
    order = sorted(range(len(plans)), key=lambda i: -plans[i].duration_s * len(plans[i].actors))
    if workers <= 1:
        made = {i: _write_video(binary, seed, fps, plans[i], paths[i]) for i in order}
    else:  # spawned, not forked: the caller may hold threads a fork would copy
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(min(workers, len(plans)), mp_context=context) as pool:
            futures = {
                i: pool.submit(_write_video, binary, seed, fps, plans[i], paths[i]) for i in order
            }
            made = {i: f.result() for i, f in futures.items()}
    corpus: dict[str, Any] = {"root": root, "fps": fps, "videos": {}, "clips": {}}
    for plan, path in zip(plans, paths, strict=True):
        result = made[plan.index]
        sides = list(result["emotions"])
        corpus["videos"][plan.name] = {
            "path": path, "split": plan.split, "frames": result["frames"], "sides": sides
        }  # fmt: skip
        if plan.split == "test":
            continue
        for k, (side, emotion) in enumerate(result["emotions"].items()):
            corpus["clips"].update(_write_labels(root, plan, path, side, emotion, fps, seed, k))
    return corpus


def _write_labels(
    root: Path, plan: VideoPlan, path: Path, side: str | None, emotion: np.ndarray,
    fps: int, seed: int, person: int,
) -> dict[str, Any]:  # fmt: skip
    """Write one clip's VA and expression files; return its expected labels."""
    clip_id = f"{plan.name}_{side}" if side else plan.name
    rng = np.random.default_rng([seed, plan.index, 7, person])
    valence, arousal, expr = _labels(emotion, fps, rng)
    folder = SPLIT_DIRS[plan.split]
    va_file = root / VA_DIR / folder / f"{clip_id}.txt"
    expr_file = root / EXPR_DIR / folder / f"{clip_id}.txt"
    write_text(va_file, _va_text(valence, arousal))
    write_text(expr_file, _expr_text(expr))
    names = {i: n for n, i in EXPR_INDEX.items()}
    return {
        clip_id: {
            "video": plan.name, "path": path, "side": side, "split": plan.split,
            "speaker": plan.name, "va_file": va_file, "expr_file": expr_file,
            "emotion": emotion,
            "valence": np.where(valence == -5.0, np.nan, valence).astype(np.float32),
            "arousal": np.where(arousal == -5.0, np.nan, arousal).astype(np.float32),
            "expression": [names.get(i) for i in expr],
        }
    }  # fmt: skip
