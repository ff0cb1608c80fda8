"""The demo's actors: a bundled real photograph each, with its own look and voice settings."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from emoflow.demo.clips import CANVAS, seeded_rng

# Landmarks (x, y in photo pixels) from dlib's 68-point predictor, rounded; "w" is the jaw width.
PHOTOS: dict[str, dict[str, tuple[float, float]]] = {
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
def photo_rgb(name: str) -> np.ndarray:
    """A bundled real photograph as uint8 RGB."""
    if name == "astronaut":
        from skimage import data

        return np.ascontiguousarray(data.astronaut()[..., :3])
    from matplotlib import cbook
    from PIL import Image

    with Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as im:
        return np.asarray(im.convert("RGB"))


@dataclass(frozen=True)
class Actor:
    """How one actor looks and sounds."""

    canvas: np.ndarray  # (CANVAS, CANVAS, 3) uint8, face centred near the frame centre
    marks: dict[str, np.ndarray]  # landmark name -> (x, y) in canvas pixels
    face_w: float  # jaw width in canvas pixels
    f0: float  # base pitch, Hz
    formant_scale: float
    breath: float  # aspiration noise level
    loudness: float


@functools.cache
def make_actor(seed: int, actor: int) -> Actor:
    """Render an actor's still canvas (photo, flip, scale, offset, roll, colour) and voice."""
    from skimage.transform import SimilarityTransform, warp

    rng = seeded_rng(seed, actor, 0xAC)
    photo_name = ("astronaut", "grace_hopper")[(actor - 1) % 2]
    flip = ((actor - 1) // 2) % 2 == 1
    photo = photo_rgb(photo_name)
    marks = {k: np.asarray(v, dtype=np.float64) for k, v in PHOTOS[photo_name].items()}
    jaw_w = float(np.hypot(*(marks["jaw_r"] - marks["jaw_l"])))
    face_w = float(rng.uniform(112.0, 142.0))
    scale = face_w / jaw_w
    roll = np.deg2rad(rng.uniform(-4.0, 4.0))
    offset = rng.uniform(-14.0, 14.0, size=2)
    centre = (marks["eye_l"] + marks["eye_r"] + marks["mouth_l"] + marks["mouth_r"]) / 4.0
    # photo -> canvas: move the face centre to the canvas centre (+ offset), scale and roll.
    to_origin = SimilarityTransform(translation=-centre)
    to_canvas = SimilarityTransform(
        scale=scale, rotation=roll, translation=CANVAS / 2.0 + offset + (0.0, 8.0)
    )
    tform = SimilarityTransform(matrix=to_canvas.params @ to_origin.params)
    if scale < 1.0:  # anti-alias before shrinking
        from scipy.ndimage import gaussian_filter

        sigma = 0.5 * (1.0 / scale - 1.0)
        photo = gaussian_filter(photo.astype(np.float32), sigma=(sigma, sigma, 0))
    img = warp(
        photo.astype(np.float32) / 255.0,
        tform.inverse,
        output_shape=(CANVAS, CANVAS),
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
        canvas_marks = {k: np.array([CANVAS - 1 - v[0], v[1]]) for k, v in canvas_marks.items()}
    male = actor % 2 == 1  # RAVDESS: odd actors are male
    return Actor(
        canvas=np.ascontiguousarray(np.round(img * 255.0).astype(np.uint8)),
        marks=canvas_marks,
        face_w=face_w,
        f0=float(rng.uniform(95.0, 135.0) if male else rng.uniform(175.0, 230.0)),
        formant_scale=float(rng.uniform(0.9, 1.0) if male else rng.uniform(1.05, 1.17)),
        breath=float(rng.uniform(0.02, 0.07)),
        loudness=float(rng.uniform(0.85, 1.15)),
    )
