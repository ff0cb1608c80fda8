"""A deterministic demo corpus in the RAVDESS layout: real face photos, animated, with a voice.

Every clip is a short mp4 (H.264 yuv420p + AAC, 25 fps, 3.2 s) named the RAVDESS way
``01-01-EE-II-SS-RR-AA.mp4`` and stored under ``Actor_AA/`` as in the real corpus (RAVDESS
modality 01 is full audio-video; 02 would mean video-only, 03 audio-only).

* Faces are the real photographs that ship inside installed packages (scikit-image's
  ``astronaut`` and matplotlib's ``grace_hopper``). Each "actor" is one of them with its own
  colour, brightness, scale, crop offset, roll and mirror flip.
* Each emotion is a smooth displacement field around landmarks of the photo (mouth corners up for
  happy, down for sad, brows lowered and pinched for angry, none for neutral), plus a head-motion
  pattern (angry: fast shake; sad: slow droop; happy: bouncy nod; neutral: nearly still). The
  lower lip opens with the voice's syllables.
* The voice is a harmonic stack with formant filters and a syllable envelope: happy is high,
  wide-ranging and fast; sad is low, flat, slow and quiet; angry is loud, bright and fast; neutral
  is mid and flat. Each actor has its own base pitch and formant scale; each repetition its own
  jitter; a little noise is added.

The content of a clip depends only on ``(seed, file name)``, so a corpus of N clips is a prefix
of a larger one. With the same versions of numpy, scipy, Pillow, ffmpeg and x264 the files are
byte-identical from run to run (``-threads 1``, bitexact flags, no metadata).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import signal

from emoflow.errors import ToolMissingError

EMOTIONS: dict[str, str] = {"01": "neutral", "03": "happy", "04": "sad", "05": "angry"}
"""RAVDESS emotion code -> name, for the four emotions of the demo corpus."""

MODALITY = "01"  # RAVDESS modality code of full audio-video clips; the vocal channel is 01, speech
FPS = 25
N_FRAMES = 80
DURATION_S = N_FRAMES / FPS  # 3.2 s: one full 3 s analysis window fits in every clip
FRAME_SIZE = 320  # frames are FRAME_SIZE x FRAME_SIZE
SAMPLE_RATE = 16_000
MAX_ACTORS = 24
ACTOR_BLOCK = 8  # actors are introduced eight at a time
FFMPEG_TIMEOUT_S = 120.0

_MARGIN = 48  # extra canvas around the frame, so head motion never shows an edge
_CANVAS = FRAME_SIZE + 2 * _MARGIN
# (statement, repetition) rounds; statement 02 is acted with strong intensity (not neutral).
_ROUNDS: tuple[tuple[str, str], ...] = (("01", "01"), ("01", "02"), ("02", "01"), ("02", "02"))


# --------------------------------------------------------------------------- clip list


@dataclass(frozen=True)
class _Clip:
    """One clip of the corpus, by its RAVDESS codes."""

    emotion: str
    intensity: str
    statement: str
    repetition: str
    actor: int

    @property
    def name(self) -> str:
        return (
            f"{MODALITY}-01-{self.emotion}-{self.intensity}-{self.statement}-"
            f"{self.repetition}-{self.actor:02d}.mp4"
        )

    @property
    def relpath(self) -> str:
        return f"Actor_{self.actor:02d}/{self.name}"


def _clip_list(clips: int) -> list[_Clip]:
    """The first ``clips`` clips in the fixed order: actor block, round, actor, emotion.

    Eight actors are used before any actor gets a second clip of an emotion, so 8 clips are
    2 actors x 4 emotions and 64 clips are 8 actors x 4 emotions x 2 repetitions.
    """
    limit = MAX_ACTORS * len(_ROUNDS) * len(EMOTIONS)
    if not 1 <= clips <= limit:
        raise ValueError(f"clips must be between 1 and {limit}, got {clips}")
    out: list[_Clip] = []
    for block_start in range(1, MAX_ACTORS + 1, ACTOR_BLOCK):
        for statement, repetition in _ROUNDS:
            for actor in range(block_start, block_start + ACTOR_BLOCK):
                for emotion in EMOTIONS:
                    strong = statement == "02" and emotion != "01"
                    out.append(
                        _Clip(emotion, "02" if strong else "01", statement, repetition, actor)
                    )
                    if len(out) == clips:
                        return out
    return out


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, *keys]))


def _clip_rng(seed: int, clip: _Clip, stream: int) -> np.random.Generator:
    keys = (clip.actor, int(clip.emotion), int(clip.intensity), int(clip.statement))
    return _rng(seed, *keys, int(clip.repetition), stream)


# --------------------------------------------------------------------------- photos and actors

# Landmarks (x, y in photo pixels) from dlib's 68-point predictor, rounded; "w" is the jaw width.
_PHOTOS: dict[str, dict[str, tuple[float, float]]] = {
    "astronaut": {
        "jaw_l": (179, 104), "jaw_r": (272, 108), "chin": (220, 178), "nose": (225, 127),
        "eye_l": (203, 101.5), "eye_r": (246.5, 104), "brow_l_out": (186, 94),
        "brow_l_in": (216, 92), "brow_r_in": (236, 93), "brow_r_out": (265, 99),
        "mouth_l": (201, 139), "mouth_r": (246, 141), "lip_top": (224, 141), "lip_bot": (222, 156),
    },
    "grace_hopper": {
        "jaw_l": (178, 203), "jaw_r": (355, 195), "chin": (269, 333), "nose": (267, 238),
        "eye_l": (223.5, 192.5), "eye_r": (305.5, 189), "brow_l_out": (189, 188),
        "brow_l_in": (243, 171), "brow_r_in": (284, 168), "brow_r_out": (340, 181),
        "mouth_l": (233, 281), "mouth_r": (300, 277), "lip_top": (267, 274), "lip_bot": (269, 289),
    },
}  # fmt: skip


@functools.cache
def _photo(name: str) -> np.ndarray:
    """A bundled real photograph as uint8 RGB."""
    if name == "astronaut":
        from skimage import data

        return np.ascontiguousarray(data.astronaut()[..., :3])
    from matplotlib import cbook
    from PIL import Image

    with Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as im:
        return np.asarray(im.convert("RGB"))


@dataclass(frozen=True)
class _Actor:
    """How one actor looks and sounds."""

    canvas: np.ndarray  # (_CANVAS, _CANVAS, 3) uint8, face centred near the frame centre
    marks: dict[str, np.ndarray]  # landmark name -> (x, y) in canvas pixels
    face_w: float  # jaw width in canvas pixels
    f0: float  # base pitch, Hz
    formant_scale: float
    breath: float  # aspiration noise level
    loudness: float


@functools.cache
def _actor(seed: int, actor: int) -> _Actor:
    """Render an actor's still canvas (photo, flip, scale, offset, roll, colour) and voice."""
    from skimage.transform import SimilarityTransform, warp

    rng = _rng(seed, actor, 0xAC)
    photo_name = ("astronaut", "grace_hopper")[(actor - 1) % 2]
    flip = ((actor - 1) // 2) % 2 == 1
    photo = _photo(photo_name)
    marks = {k: np.asarray(v, dtype=np.float64) for k, v in _PHOTOS[photo_name].items()}
    jaw_w = float(np.hypot(*(marks["jaw_r"] - marks["jaw_l"])))
    face_w = float(rng.uniform(112.0, 142.0))
    scale = face_w / jaw_w
    roll = np.deg2rad(rng.uniform(-4.0, 4.0))
    offset = rng.uniform(-14.0, 14.0, size=2)
    centre = (marks["eye_l"] + marks["eye_r"] + marks["mouth_l"] + marks["mouth_r"]) / 4.0
    # photo -> canvas: move the face centre to the canvas centre (+ offset), scale and roll.
    to_origin = SimilarityTransform(translation=-centre)
    to_canvas = SimilarityTransform(
        scale=scale, rotation=roll, translation=_CANVAS / 2.0 + offset + (0.0, 8.0)
    )
    tform = SimilarityTransform(matrix=to_canvas.params @ to_origin.params)
    if scale < 1.0:  # anti-alias before shrinking
        from scipy.ndimage import gaussian_filter

        sigma = 0.5 * (1.0 / scale - 1.0)
        photo = gaussian_filter(photo.astype(np.float32), sigma=(sigma, sigma, 0))
    img = warp(
        photo.astype(np.float32) / 255.0,
        tform.inverse,
        output_shape=(_CANVAS, _CANVAS),
        order=1,
        mode="edge",
        preserve_range=True,
    )
    gains = rng.uniform(0.86, 1.14, size=3)
    gamma = rng.uniform(0.8, 1.25)
    img = np.clip(np.clip(img, 0.0, 1.0) ** gamma * gains, 0.0, 1.0)
    canvas_marks = {k: tform(v[None, :])[0] for k, v in marks.items()}
    if flip:
        img = img[:, ::-1]
        canvas_marks = {k: np.array([_CANVAS - 1 - v[0], v[1]]) for k, v in canvas_marks.items()}
    male = actor % 2 == 1  # RAVDESS: odd actors are male
    return _Actor(
        canvas=np.ascontiguousarray(np.round(img * 255.0).astype(np.uint8)),
        marks=canvas_marks,
        face_w=face_w,
        f0=float(rng.uniform(95.0, 135.0) if male else rng.uniform(175.0, 230.0)),
        formant_scale=float(rng.uniform(0.9, 1.0) if male else rng.uniform(1.05, 1.17)),
        breath=float(rng.uniform(0.02, 0.07)),
        loudness=float(rng.uniform(0.85, 1.15)),
    )


# --------------------------------------------------------------------------- voice


@dataclass(frozen=True)
class _Voice:
    """Per-emotion prosody."""

    f0_mult: float  # pitch relative to the actor's base
    f0_range: float  # relative size of the pitch accents
    rate: float  # syllables per second
    rms: float  # target RMS of the voiced part
    tilt: float  # harmonic k has amplitude k**-tilt (lower = brighter)
    jitter: float  # relative pitch wobble


_VOICES: dict[str, _Voice] = {
    "01": _Voice(f0_mult=1.0, f0_range=0.06, rate=4.0, rms=0.06, tilt=1.4, jitter=0.004),
    "03": _Voice(f0_mult=1.32, f0_range=0.32, rate=5.2, rms=0.09, tilt=1.15, jitter=0.006),
    "04": _Voice(f0_mult=0.84, f0_range=0.04, rate=2.9, rms=0.028, tilt=2.0, jitter=0.004),
    "05": _Voice(f0_mult=1.15, f0_range=0.18, rate=5.0, rms=0.16, tilt=0.75, jitter=0.015),
}

# Vowel formants (F1, F2, F3) in Hz for an adult male voice.
_VOWELS: dict[str, tuple[float, float, float]] = {
    "i": (300.0, 2250.0, 2950.0),
    "a": (730.0, 1200.0, 2550.0),
    "o": (500.0, 880.0, 2450.0),
    "e": (480.0, 1500.0, 2500.0),
}
# RAVDESS statements: (vowel, stressed, has a consonant burst) per syllable.
_STATEMENTS: dict[str, tuple[tuple[str, bool, bool], ...]] = {
    # "Kids are talking by the door"
    "01": (("i", True, True), ("a", False, False), ("o", True, True), ("i", False, True),
           ("a", False, True), ("e", False, True), ("o", True, True)),
    # "Dogs are sitting by the door"
    "02": (("o", True, True), ("a", False, False), ("i", True, True), ("i", False, True),
           ("a", False, True), ("e", False, True), ("o", True, True)),
}  # fmt: skip


def _resonator(freq: float, bandwidth: float) -> tuple[np.ndarray, np.ndarray]:
    """A unit-peak-gain two-pole resonator at ``freq`` Hz."""
    r = np.exp(-np.pi * bandwidth / SAMPLE_RATE)
    theta = 2.0 * np.pi * freq / SAMPLE_RATE
    a = np.array([1.0, -2.0 * r * np.cos(theta), r * r])
    return np.array([(1.0 - r) * np.sqrt(1.0 - 2.0 * r * np.cos(2 * theta) + r * r)]), a


def _syllables(voice: _Voice, statement: str, rng: np.random.Generator) -> np.ndarray:
    """Start and end times (s) of the statement's syllables, fitted inside the clip."""
    weights = np.array([1.35 if stressed else 0.85 for _, stressed, _ in _STATEMENTS[statement]])
    weights *= rng.uniform(0.9, 1.1, size=weights.size)
    durations = weights / weights.mean() / (voice.rate * rng.uniform(0.93, 1.07))
    start = rng.uniform(0.25, 0.45)
    available = DURATION_S - start - 0.15
    durations *= min(1.0, available / durations.sum())
    edges = start + np.concatenate([[0.0], np.cumsum(durations)])
    return np.stack([edges[:-1], edges[1:]], axis=1)


def _envelope(times: np.ndarray, syllables: np.ndarray) -> np.ndarray:
    """Smooth 0..1 loudness envelope: a raised-sine bump per syllable with short gaps."""
    env = np.zeros_like(times)
    for start, end in syllables:
        length = (end - start) * 0.88
        phase = (times - start) / length
        inside = (phase >= 0.0) & (phase <= 1.0)
        env[inside] = np.maximum(env[inside], np.sin(np.pi * phase[inside]) ** 0.6)
    return env


def _strength(clip: _Clip) -> float:
    return 1.3 if clip.intensity == "02" else 1.0


def _synth_audio(seed: int, clip: _Clip, actor: _Actor, syllables: np.ndarray) -> np.ndarray:
    """Synthesise the clip's voice as float32 mono samples at SAMPLE_RATE."""
    rng = _clip_rng(seed, clip, 1)
    voice = _VOICES[clip.emotion]
    k = _strength(clip)
    n = int(round(DURATION_S * SAMPLE_RATE))
    t = np.arange(n) / SAMPLE_RATE

    # Pitch contour: accents on stressed syllables, declination, slow random wobble.
    base = actor.f0 * (1.0 + (voice.f0_mult - 1.0) * k) * rng.uniform(0.96, 1.04)
    accent = np.zeros(n)
    stresses = [stressed for _, stressed, _ in _STATEMENTS[clip.statement]]
    for (start, end), stressed in zip(syllables, stresses, strict=True):
        mid, half = (start + end) / 2.0, (end - start) / 2.0
        height = (1.0 if stressed else 0.35) * rng.uniform(0.7, 1.3)
        accent += height * np.exp(-0.5 * ((t - mid) / max(half, 1e-3)) ** 2)
    declination = 1.0 - 0.08 * (t - syllables[0, 0]) / DURATION_S
    wobble = signal.lfilter([0.002], [1.0, -0.998], rng.standard_normal(n))
    wobble /= np.abs(wobble).max() + 1e-9
    f0 = base * declination * (1.0 + voice.f0_range * k * accent + voice.jitter * wobble)

    # Glottal source: band-limited harmonic stack with spectral tilt.
    phase = 2.0 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    tilt = voice.tilt - (0.15 * (k - 1.0) if clip.emotion == "05" else 0.0)
    source = np.zeros(n)
    for harmonic in range(1, int(7000.0 / f0.min()) + 1):
        audible = harmonic * f0 < 7000.0
        source += (harmonic**-tilt) * np.sin(harmonic * phase) * audible
    source += actor.breath * 4.0 * rng.standard_normal(n)

    env = _envelope(t, syllables)
    out = np.zeros(n)
    bandwidths = (90.0, 110.0, 160.0)
    for (start, end), (vowel, _, burst) in zip(syllables, _STATEMENTS[clip.statement], strict=True):
        lo, hi = int(start * SAMPLE_RATE), min(n, int(end * SAMPLE_RATE) + 400)
        segment = source[lo:hi] * env[lo:hi]
        voiced = np.zeros_like(segment)
        for formant, bandwidth in zip(_VOWELS[vowel], bandwidths, strict=True):
            b, a = _resonator(formant * actor.formant_scale, bandwidth)
            voiced += signal.lfilter(b, a, segment)
        if burst:  # a short noisy consonant at the syllable's onset
            length = min(int(0.035 * SAMPLE_RATE), voiced.size)
            noise = signal.lfilter([1.0, -0.95], [1.0], rng.standard_normal(length))
            voiced[:length] += 0.6 * noise * np.hanning(2 * length)[length:]
        out[lo:hi] += voiced

    active = env > 0.05
    rms = voice.rms * (1.0 + (k - 1.0) * (1.0 if clip.emotion != "04" else -0.5))
    rms *= actor.loudness * rng.uniform(0.9, 1.1)
    out *= rms / (np.sqrt(np.mean(out[active] ** 2)) + 1e-12)
    if clip.emotion == "05":  # tense, slightly saturated
        out = 0.6 * np.tanh(out / 0.6)
    out += 0.002 * rng.standard_normal(n)  # room noise
    return np.clip(out, -0.99, 0.99).astype(np.float32)


# --------------------------------------------------------------------------- face animation

# Bumps of the displacement field: (landmark, sigma in face widths).
_BUMPS: tuple[tuple[str, float], ...] = (
    ("mouth_l", 0.09), ("mouth_r", 0.09), ("lip_bot", 0.10), ("lip_top", 0.08),
    ("brow_l_in", 0.08), ("brow_r_in", 0.08), ("brow_l_out", 0.08), ("brow_r_out", 0.08),
)  # fmt: skip
# Per emotion and bump: (outward, up) displacement in face widths; outward points away from the
# face's vertical midline (mouth corners and brows), so a mirrored actor needs no special case.
_EXPRESSIONS: dict[str, dict[str, tuple[float, float]]] = {
    "01": {},
    "03": {"mouth_l": (0.05, 0.065), "mouth_r": (0.05, 0.065), "lip_top": (0.0, 0.015),
           "brow_l_in": (0.0, 0.015), "brow_r_in": (0.0, 0.015)},
    "04": {"mouth_l": (-0.01, -0.07), "mouth_r": (-0.01, -0.07), "lip_bot": (0.0, 0.012),
           "brow_l_in": (-0.02, 0.045), "brow_r_in": (-0.02, 0.045),
           "brow_l_out": (0.0, -0.025), "brow_r_out": (0.0, -0.025)},
    "05": {"mouth_l": (-0.025, 0.0), "mouth_r": (-0.025, 0.0), "lip_top": (0.0, -0.012),
           "brow_l_in": (-0.04, -0.055), "brow_r_in": (-0.04, -0.055),
           "brow_l_out": (0.0, -0.02), "brow_r_out": (0.0, -0.02)},
}  # fmt: skip


@functools.cache
def _bumps(seed: int, actor_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where the actor's bumps sit on the canvas, how wide they are, and their axes.

    Returns ``centres`` (bumps, 2) canvas (x, y), ``sigmas`` (bumps,) canvas pixels and ``axes``
    (bumps, 2, 2): for each bump the canvas (dx, dy) of its "outward" and "up" directions.
    """
    actor = _actor(seed, actor_id)
    midline = (actor.marks["lip_top"] + actor.marks["nose"]) / 2.0
    up = actor.marks["nose"] - actor.marks["chin"]
    up /= np.hypot(*up)
    right = np.array([-up[1], up[0]])
    axes = []
    for name, _ in _BUMPS:
        side = np.sign(np.dot(actor.marks[name] - midline, right)) or 1.0
        axes.append(np.stack([side * right, up]))
    centres = np.stack([actor.marks[name] for name, _ in _BUMPS])
    sigmas = np.array([sigma * actor.face_w for _, sigma in _BUMPS])
    return centres, sigmas, np.stack(axes)


def _head_motion(clip: _Clip, times: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per-frame (rotation deg, dx px, dy px, scale) of the head, per emotion."""
    k = _strength(clip)
    p = rng.uniform(0.0, 2.0 * np.pi, size=3)
    a = rng.uniform(0.8, 1.2, size=3)
    ramp = np.clip(times / DURATION_S, 0.0, 1.0)
    zero, one = np.zeros_like(times), np.ones_like(times)
    if clip.emotion == "03":  # bouncy nods
        rot = 2.5 * a[0] * np.sin(2 * np.pi * 1.1 * times + p[0])
        dx = 2.0 * a[1] * np.sin(2 * np.pi * 0.7 * times + p[1])
        dy = -4.0 * k * a[2] * np.abs(np.sin(2 * np.pi * 1.8 * times + p[2]))
        scale = one + 0.02 * np.sin(2 * np.pi * 0.9 * times + p[0])
    elif clip.emotion == "04":  # slow droop
        rot = (-3.0 * k * a[0] * ramp) + 0.4 * np.sin(2 * np.pi * 0.3 * times + p[0])
        dx = 1.0 * a[1] * np.sin(2 * np.pi * 0.25 * times + p[1])
        dy = 12.0 * k * a[2] * ramp**1.5
        scale = one - 0.04 * ramp
    elif clip.emotion == "05":  # fast shake, leaning in
        rot = 3.5 * k * a[0] * np.sin(2 * np.pi * 3.6 * times + p[0])
        dx = 6.0 * k * a[1] * np.sin(2 * np.pi * 3.6 * times + p[1])
        dy = 1.5 * a[2] * np.sin(2 * np.pi * 2.1 * times + p[2])
        scale = 1.0 + 0.05 * np.clip(times / 0.6, 0.0, 1.0)
    else:  # neutral: nearly still
        rot = 0.8 * a[0] * np.sin(2 * np.pi * 0.3 * times + p[0])
        dx = 1.0 * a[1] * np.sin(2 * np.pi * 0.2 * times + p[1])
        dy = zero + 0.8 * a[2] * np.sin(2 * np.pi * 0.35 * times + p[2])
        scale = one
    return np.stack([rot, dx, dy, scale], axis=1)


def _render_frames(seed: int, clip: _Clip, actor: _Actor, syllables: np.ndarray) -> np.ndarray:
    """All frames of the clip as (N_FRAMES, FRAME_SIZE, FRAME_SIZE, 3) uint8.

    Each output pixel samples the actor's canvas at the inverse head motion of its position,
    minus the expression's displacement there; the displacement is a sum of separable Gaussian
    bumps, evaluated on the frame grid as one outer-product sum per axis.
    """
    rng = _clip_rng(seed, clip, 2)
    centres, sigmas, axes = _bumps(seed, clip.actor)
    times = np.arange(N_FRAMES) / FPS
    motion = _head_motion(clip, times, rng)
    mouth = _envelope(times, syllables)  # lip sync with the voice
    onset = rng.uniform(0.3, 0.6)
    level = np.clip(times / onset, 0.0, 1.0) * _strength(clip) * rng.uniform(0.85, 1.15)
    level *= 1.0 + 0.08 * np.sin(2 * np.pi * 0.8 * times + rng.uniform(0, 2 * np.pi))

    # Per bump: canvas displacement (dx, dy) at full expression, and the lip-opening vector.
    expression = _EXPRESSIONS[clip.emotion]
    full = np.zeros((len(_BUMPS), 2))
    open_mouth = np.zeros((len(_BUMPS), 2))
    for i, (name, _) in enumerate(_BUMPS):
        outward, up = expression.get(name, (0.0, 0.0))
        full[i] = (outward * axes[i, 0] + up * axes[i, 1]) * actor.face_w
        if name == "lip_bot":
            open_mouth[i] = -0.055 * axes[i, 1] * actor.face_w

    centre = _CANVAS / 2.0
    grid = np.arange(FRAME_SIZE, dtype=np.float64) + _MARGIN - centre  # frame, rel. to centre
    ox, oy = np.meshgrid(grid, grid)
    sample = _sampler()
    frames = np.empty((N_FRAMES, FRAME_SIZE, FRAME_SIZE, 3), dtype=np.uint8)
    for f in range(N_FRAMES):
        rot, dx, dy, scale = motion[f]
        cos, sin = np.cos(np.deg2rad(rot)), np.sin(np.deg2rad(rot))
        # inverse head motion, frame -> canvas: q = R(-rot) (o - d) / scale + centre
        px, py = ox - dx, oy - dy
        sx = (cos * px + sin * py) / scale + centre
        sy = (-sin * px + cos * py) / scale + centre
        # forward head motion of the bump centres, canvas -> frame (relative to centre)
        qx, qy = centres[:, 0] - centre, centres[:, 1] - centre
        fx = scale * (cos * qx - sin * qy) + dx
        fy = scale * (sin * qx + cos * qy) + dy
        s = sigmas * scale
        gx = np.exp(-0.5 * ((grid[None, :] - fx[:, None]) / s[:, None]) ** 2)  # (bumps, W)
        gy = np.exp(-0.5 * ((grid[None, :] - fy[:, None]) / s[:, None]) ** 2)  # (bumps, H)
        vectors = level[f] * full + mouth[f] * open_mouth
        # einsum rather than BLAS: the sum order must not depend on the machine's thread count
        sx -= np.einsum("bh,bw->hw", gy, vectors[:, 0:1] * gx)
        sy -= np.einsum("bh,bw->hw", gy, vectors[:, 1:2] * gx)
        sample(actor.canvas, sx, sy, frames[f])
    return frames


@functools.cache
def _sampler() -> Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], None]:
    """A compiled bilinear sampler (numba, a dependency of librosa): about 1 ms a frame.

    ``sample(image, sx, sy, out)`` fills ``out`` (H, W, 3) uint8 with ``image`` (h, w, 3) uint8
    read at the float coordinates ``sx``, ``sy`` (H, W), clamped to the image's edge.
    """
    import numba

    @numba.njit(cache=False, nogil=True, fastmath=False)
    def sample(image, sx, sy, out):  # pragma: no cover - compiled
        height, width = image.shape[0], image.shape[1]
        for y in range(sx.shape[0]):
            for x in range(sx.shape[1]):
                fx = min(max(sx[y, x], 0.0), width - 1.001)
                fy = min(max(sy[y, x], 0.0), height - 1.001)
                x0, y0 = int(fx), int(fy)
                ax, ay = fx - x0, fy - y0
                for c in range(3):
                    top = image[y0, x0, c] * (1.0 - ax) + image[y0, x0 + 1, c] * ax
                    bottom = image[y0 + 1, x0, c] * (1.0 - ax) + image[y0 + 1, x0 + 1, c] * ax
                    out[y, x, c] = np.uint8(top * (1.0 - ay) + bottom * ay + 0.5)

    return sample


# --------------------------------------------------------------------------- encoding


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


def _write_clip(ffmpeg: str, seed: int, clip: _Clip, path: Path) -> bool:
    """Generate one clip; replace ``path`` atomically unless it already has these bytes."""
    actor = _actor(seed, clip.actor)
    syllables = _syllables(_VOICES[clip.emotion], clip.statement, _clip_rng(seed, clip, 0))
    audio = _synth_audio(seed, clip, actor, syllables)
    frames = _render_frames(seed, clip, actor, syllables)
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
    out_dir: Path, clips: int = 64, seed: int = 0, ffmpeg: str = "ffmpeg"
) -> list[Path]:
    """Write a deterministic corpus; return the written paths sorted.

    Clips go to ``out_dir/Actor_AA/01-01-EE-II-SS-RR-AA.mp4`` (the RAVDESS layout). The first
    ``clips`` clips of a fixed order are made: eight actors at a time, each round giving every
    actor one clip of each of the four :data:`EMOTIONS` (so any multiple of four is balanced;
    64 = 8 actors x 4 emotions x 2 repetitions). A clip's bytes depend only on ``seed`` and its
    name; a file that already holds exactly those bytes is left untouched (its mtime too), others
    are replaced atomically. Files not in the list are never touched.

    Args:
        out_dir: folder of the corpus (created if missing).
        clips: number of clips, 1 to 384 (24 actors x 4 rounds x 4 emotions).
        seed: changes every random choice (actor looks, voices, jitter).
        ffmpeg: name or path of the ffmpeg binary (with libx264 and the native aac encoder).

    Returns:
        The paths of all ``clips`` files of the corpus, sorted, whether rewritten or not.

    Raises:
        ToolMissingError: ffmpeg cannot be found.
        ValueError: ``clips`` is out of range.
    """
    plan = _clip_list(clips)
    binary = _resolve_ffmpeg(ffmpeg)
    out_dir = Path(out_dir)
    paths = []
    for clip in plan:
        path = out_dir / clip.relpath
        _write_clip(binary, seed, clip, path)
        paths.append(path)
    return sorted(paths)
