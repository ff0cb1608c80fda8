"""The demo corpus's clip list, its RAVDESS codes and the seeded random streams of a clip."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EMOTIONS: dict[str, str] = {"01": "neutral", "03": "happy", "04": "sad", "05": "angry"}
"""RAVDESS emotion code -> name, for the four emotions of the demo corpus."""

MODALITY = "01"  # RAVDESS modality code of full audio-video clips; the vocal channel is 01, speech
FPS = 25
N_FRAMES = 80
DURATION_S = N_FRAMES / FPS  # 3.2 s: one full 3 s analysis window fits in every clip
FRAME_SIZE = 320  # frames are FRAME_SIZE x FRAME_SIZE
SAMPLE_RATE = 16_000
MAX_ACTORS = 24
ACTOR_BLOCK = 12  # actors are introduced twelve at a time
FFMPEG_TIMEOUT_S = 120.0

MARGIN = 48  # extra canvas around the frame, so head motion never shows an edge
CANVAS = FRAME_SIZE + 2 * MARGIN
# (statement, repetition) rounds; statement 02 is acted with strong intensity (not neutral).
ROUNDS: tuple[tuple[str, str], ...] = (("01", "01"), ("01", "02"), ("02", "01"), ("02", "02"))


@dataclass(frozen=True)
class Clip:
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


def clip_list(clips: int) -> list[Clip]:
    """The first ``clips`` clips in the fixed order: actor block, round, actor, emotion.

    Twelve actors are used before any actor gets a second clip of an emotion, so 8 clips are
    2 actors x 4 emotions and 96 clips are 12 actors x 4 emotions x 2 repetitions.
    """
    limit = MAX_ACTORS * len(ROUNDS) * len(EMOTIONS)
    if not 1 <= clips <= limit:
        raise ValueError(f"clips must be between 1 and {limit}, got {clips}")
    out: list[Clip] = []
    for block_start in range(1, MAX_ACTORS + 1, ACTOR_BLOCK):
        for statement, repetition in ROUNDS:
            for actor in range(block_start, block_start + ACTOR_BLOCK):
                for emotion in EMOTIONS:
                    strong = statement == "02" and emotion != "01"
                    out.append(
                        Clip(emotion, "02" if strong else "01", statement, repetition, actor)
                    )
                    if len(out) == clips:
                        return out
    return out


def seeded_rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, *keys]))


def clip_rng(seed: int, clip: Clip, stream: int) -> np.random.Generator:
    keys = (clip.actor, int(clip.emotion), int(clip.intensity), int(clip.statement))
    return seeded_rng(seed, *keys, int(clip.repetition), stream)


def strength(clip: Clip) -> float:
    return 1.3 if clip.intensity == "02" else 1.0
