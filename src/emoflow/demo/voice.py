"""The demo's voices: a harmonic stack with formant filters and a syllable envelope."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import signal

from emoflow.demo.actors import Actor
from emoflow.demo.clips import DURATION_S, SAMPLE_RATE, Clip, clip_rng, strength


@dataclass(frozen=True)
class Voice:
    """Per-emotion prosody."""

    f0_mult: float  # pitch relative to the actor's base
    f0_range: float  # relative size of the pitch accents
    rate: float  # syllables per second
    rms: float  # target RMS of the voiced part
    tilt: float  # harmonic k has amplitude k**-tilt (lower = brighter)
    jitter: float  # relative pitch wobble


# The voice carries arousal only: happy and angry share the aroused voice, neutral and sad the
# calm one (the face carries valence, emoflow.demo.animation), so neither branch alone can tell
# all four emotions apart. Both speak at one rate: lip sync shows no arousal on the face.
CALM = Voice(f0_mult=0.92, f0_range=0.05, rate=4.0, rms=0.035, tilt=1.8, jitter=0.004)
AROUSED = Voice(f0_mult=1.25, f0_range=0.26, rate=4.0, rms=0.13, tilt=0.85, jitter=0.012)
VOICES: dict[str, Voice] = {"01": CALM, "03": AROUSED, "04": CALM, "05": AROUSED}
"""RAVDESS emotion code -> its voice (by arousal)."""

# Vowel formants (F1, F2, F3) in Hz for an adult male voice.
VOWELS: dict[str, tuple[float, float, float]] = {
    "i": (300.0, 2250.0, 2950.0),
    "a": (730.0, 1200.0, 2550.0),
    "o": (500.0, 880.0, 2450.0),
    "e": (480.0, 1500.0, 2500.0),
}
# RAVDESS statements: (vowel, stressed, has a consonant burst) per syllable.
STATEMENTS: dict[str, tuple[tuple[str, bool, bool], ...]] = {
    # "Kids are talking by the door"
    "01": (("i", True, True), ("a", False, False), ("o", True, True), ("i", False, True),
           ("a", False, True), ("e", False, True), ("o", True, True)),
    # "Dogs are sitting by the door"
    "02": (("o", True, True), ("a", False, False), ("i", True, True), ("i", False, True),
           ("a", False, True), ("e", False, True), ("o", True, True)),
}  # fmt: skip


def resonator(freq: float, bandwidth: float) -> tuple[np.ndarray, np.ndarray]:
    """A unit-peak-gain two-pole resonator at ``freq`` Hz."""
    r = np.exp(-np.pi * bandwidth / SAMPLE_RATE)
    theta = 2.0 * np.pi * freq / SAMPLE_RATE
    a = np.array([1.0, -2.0 * r * np.cos(theta), r * r])
    return np.array([(1.0 - r) * np.sqrt(1.0 - 2.0 * r * np.cos(2 * theta) + r * r)]), a


def syllable_times(voice: Voice, statement: str, rng: np.random.Generator) -> np.ndarray:
    """Start and end times (s) of the statement's syllables, fitted inside the clip."""
    weights = np.array([1.35 if stressed else 0.85 for _, stressed, _ in STATEMENTS[statement]])
    weights *= rng.uniform(0.9, 1.1, size=weights.size)
    durations = weights / weights.mean() / (voice.rate * rng.uniform(0.93, 1.07))
    start = rng.uniform(0.25, 0.45)
    available = DURATION_S - start - 0.15
    durations *= min(1.0, available / durations.sum())
    edges = start + np.concatenate([[0.0], np.cumsum(durations)])
    return np.stack([edges[:-1], edges[1:]], axis=1)


def envelope(times: np.ndarray, syllables: np.ndarray) -> np.ndarray:
    """Smooth 0..1 loudness envelope: a raised-sine bump per syllable with short gaps."""
    env = np.zeros_like(times)
    for start, end in syllables:
        length = (end - start) * 0.88
        phase = (times - start) / length
        inside = (phase >= 0.0) & (phase <= 1.0)
        env[inside] = np.maximum(env[inside], np.sin(np.pi * phase[inside]) ** 0.6)
    return env


def synth_audio(seed: int, clip: Clip, actor: Actor, syllables: np.ndarray) -> np.ndarray:
    """Synthesise the clip's voice as float32 mono samples at SAMPLE_RATE."""
    rng = clip_rng(seed, clip, 1)
    voice = VOICES[clip.emotion]
    k = strength(clip)
    n = int(round(DURATION_S * SAMPLE_RATE))
    t = np.arange(n) / SAMPLE_RATE

    # Pitch contour: accents on stressed syllables, declination, slow random wobble.
    base = actor.f0 * (1.0 + (voice.f0_mult - 1.0) * k) * rng.uniform(0.96, 1.04)
    accent = np.zeros(n)
    stresses = [stressed for _, stressed, _ in STATEMENTS[clip.statement]]
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
    aroused = voice is AROUSED
    tilt = voice.tilt - (0.15 * (k - 1.0) if aroused else 0.0)
    source = np.zeros(n)
    for harmonic in range(1, int(7000.0 / f0.min()) + 1):
        audible = harmonic * f0 < 7000.0
        source += (harmonic**-tilt) * np.sin(harmonic * phase) * audible
    source += actor.breath * 4.0 * rng.standard_normal(n)

    env = envelope(t, syllables)
    out = np.zeros(n)
    bandwidths = (90.0, 110.0, 160.0)
    for (start, end), (vowel, _, burst) in zip(syllables, STATEMENTS[clip.statement], strict=True):
        lo, hi = int(start * SAMPLE_RATE), min(n, int(end * SAMPLE_RATE) + 400)
        segment = source[lo:hi] * env[lo:hi]
        voiced = np.zeros_like(segment)
        for formant, bandwidth in zip(VOWELS[vowel], bandwidths, strict=True):
            b, a = resonator(formant * actor.formant_scale, bandwidth)
            voiced += signal.lfilter(b, a, segment)
        if burst:  # a short noisy consonant at the syllable's onset
            length = min(int(0.035 * SAMPLE_RATE), voiced.size)
            noise = signal.lfilter([1.0, -0.95], [1.0], rng.standard_normal(length))
            voiced[:length] += 0.6 * noise * np.hanning(2 * length)[length:]
        out[lo:hi] += voiced

    active = env > 0.05
    rms = voice.rms * (1.0 + (k - 1.0) * (1.0 if aroused else -0.5))
    rms *= actor.loudness * rng.uniform(0.9, 1.1)
    out *= rms / (np.sqrt(np.mean(out[active] ** 2)) + 1e-12)
    if aroused:  # tense, slightly saturated
        out = 0.6 * np.tanh(out / 0.6)
    out += 0.002 * rng.standard_normal(n)  # room noise
    return np.clip(out, -0.99, 0.99).astype(np.float32)
