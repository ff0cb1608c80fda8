"""The demo's faces in motion: expression displacement fields, head motion and lip sync."""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from emoflow.demo.actors import Actor, make_actor
from emoflow.demo.clips import (
    CANVAS,
    DURATION_S,
    FPS,
    FRAME_SIZE,
    MARGIN,
    N_FRAMES,
    Clip,
    clip_rng,
    strength,
)
from emoflow.demo.voice import envelope

# Bumps of the displacement field: (landmark, sigma in face widths).
BUMPS: tuple[tuple[str, float], ...] = (
    ("mouth_l", 0.09), ("mouth_r", 0.09), ("lip_bot", 0.10), ("lip_top", 0.08),
    ("brow_l_in", 0.08), ("brow_r_in", 0.08), ("brow_l_out", 0.08), ("brow_r_out", 0.08),
)  # fmt: skip
# Per bump: (outward, up) displacement in face widths; outward points away from the face's
# vertical midline (mouth corners and brows), so a mirrored actor needs no special case.
# The face carries valence only: neutral and happy share the pleasant face (a smile, raised
# inner brows, gentle nods), sad and angry the unpleasant one (corners down, brows drawn down
# and together, a slow droop); the voice carries arousal (emoflow.demo.voice).
PLEASANT = {"mouth_l": (0.05, 0.065), "mouth_r": (0.05, 0.065), "lip_top": (0.0, 0.015),
            "brow_l_in": (0.0, 0.015), "brow_r_in": (0.0, 0.015)}  # fmt: skip
UNPLEASANT = {"mouth_l": (-0.015, -0.07), "mouth_r": (-0.015, -0.07), "lip_bot": (0.0, 0.012),
              "brow_l_in": (-0.04, -0.04), "brow_r_in": (-0.04, -0.04),
              "brow_l_out": (0.0, -0.02), "brow_r_out": (0.0, -0.02)}  # fmt: skip
EXPRESSIONS: dict[str, dict[str, tuple[float, float]]] = {
    "01": PLEASANT, "03": PLEASANT, "04": UNPLEASANT, "05": UNPLEASANT,
}  # fmt: skip
"""RAVDESS emotion code -> its facial expression (by valence)."""


@functools.cache
def bump_layout(seed: int, actor_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where the actor's bumps sit on the canvas, how wide they are, and their axes.

    Returns ``centres`` (bumps, 2) canvas (x, y), ``sigmas`` (bumps,) canvas pixels and ``axes``
    (bumps, 2, 2): for each bump the canvas (dx, dy) of its "outward" and "up" directions.
    """
    actor = make_actor(seed, actor_id)
    midline = (actor.marks["lip_top"] + actor.marks["nose"]) / 2.0
    up = actor.marks["nose"] - actor.marks["chin"]
    up /= np.hypot(*up)
    right = np.array([-up[1], up[0]])
    axes = []
    for name, _ in BUMPS:
        side = np.sign(np.dot(actor.marks[name] - midline, right)) or 1.0
        axes.append(np.stack([side * right, up]))
    centres = np.stack([actor.marks[name] for name, _ in BUMPS])
    sigmas = np.array([sigma * actor.face_w for _, sigma in BUMPS])
    return centres, sigmas, np.stack(axes)


def head_motion(clip: Clip, times: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per-frame (rotation deg, dx px, dy px, scale) of the head, by valence like the face."""
    k = strength(clip)
    p = rng.uniform(0.0, 2.0 * np.pi, size=3)
    a = rng.uniform(0.8, 1.2, size=3)
    ramp = np.clip(times / DURATION_S, 0.0, 1.0)
    one = np.ones_like(times)
    if EXPRESSIONS[clip.emotion] is PLEASANT:  # gentle nods
        rot = 2.0 * a[0] * np.sin(2 * np.pi * 1.1 * times + p[0])
        dx = 2.0 * a[1] * np.sin(2 * np.pi * 0.7 * times + p[1])
        dy = -3.0 * k * a[2] * np.abs(np.sin(2 * np.pi * 1.8 * times + p[2]))
        scale = one + 0.02 * np.sin(2 * np.pi * 0.9 * times + p[0])
    else:  # slow droop
        rot = (-3.0 * k * a[0] * ramp) + 0.4 * np.sin(2 * np.pi * 0.3 * times + p[0])
        dx = 1.0 * a[1] * np.sin(2 * np.pi * 0.25 * times + p[1])
        dy = 12.0 * k * a[2] * ramp**1.5
        scale = one - 0.04 * ramp
    return np.stack([rot, dx, dy, scale], axis=1)


def render_frames(seed: int, clip: Clip, actor: Actor, syllables: np.ndarray) -> np.ndarray:
    """All frames of the clip as (N_FRAMES, FRAME_SIZE, FRAME_SIZE, 3) uint8.

    Each output pixel samples the actor's canvas at the inverse head motion of its position,
    minus the expression's displacement there; the displacement is a sum of separable Gaussian
    bumps, evaluated on the frame grid as one outer-product sum per axis.
    """
    rng = clip_rng(seed, clip, 2)
    centres, sigmas, axes = bump_layout(seed, clip.actor)
    times = np.arange(N_FRAMES) / FPS
    motion = head_motion(clip, times, rng)
    mouth = envelope(times, syllables)  # lip sync with the voice
    onset = rng.uniform(0.3, 0.6)
    level = np.clip(times / onset, 0.0, 1.0) * strength(clip) * rng.uniform(0.85, 1.15)
    level *= 1.0 + 0.08 * np.sin(2 * np.pi * 0.8 * times + rng.uniform(0, 2 * np.pi))

    # Per bump: canvas displacement (dx, dy) at full expression, and the lip-opening vector.
    expression = EXPRESSIONS[clip.emotion]
    full = np.zeros((len(BUMPS), 2))
    open_mouth = np.zeros((len(BUMPS), 2))
    for i, (name, _) in enumerate(BUMPS):
        outward, up = expression.get(name, (0.0, 0.0))
        full[i] = (outward * axes[i, 0] + up * axes[i, 1]) * actor.face_w
        if name == "lip_bot":
            open_mouth[i] = -0.055 * axes[i, 1] * actor.face_w

    centre = CANVAS / 2.0
    grid = np.arange(FRAME_SIZE, dtype=np.float64) + MARGIN - centre  # frame, rel. to centre
    ox, oy = np.meshgrid(grid, grid)
    sample = bilinear_sampler()
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
def bilinear_sampler() -> Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], None]:
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
