"""Each branch's per-window outputs on one new file (``emoflow predict``).

Each file goes through the same code as the workflow's training data: the featurizer
(:mod:`emoflow.features.featurize`, with exactly the extraction spec stored in the bundle) gives its
audio windows and its face frames on the one time grid;
:func:`emoflow.training.windows.face_windows` and
:func:`emoflow.training.normalisation.normalise_audio` give the model inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emoflow.branches import FACE_BRANCHES
from emoflow.config import stable_hash
from emoflow.deploy.predictor import Branch, Predictor
from emoflow.errors import ClipError
from emoflow.features.face_cnn import encode_faces, load_encoder
from emoflow.features.featurize import audio_features, egemaps_features, face_features, ssl_features
from emoflow.media.ffmpeg import MediaInfo
from emoflow.training.frame_inputs import clip_frame_vectors
from emoflow.training.normalisation import face_model_input, normalise_audio, normalise_vectors
from emoflow.training.windows import clip_faces

BATCH_WINDOWS = 16  # windows per model call


Inputs = Callable[[dict[str, Any], slice], Sequence[torch.Tensor]]
"""A branch's model inputs of a batch of windows: ``(member's norm, rows) -> tensors``."""


@torch.inference_mode()
def window_outputs(
    model: Any, norm: dict[str, Any], inputs_of: Inputs, n: int
) -> dict[str, torch.Tensor]:
    """A model's outputs (float32, CPU) for the ``n`` windows, ``BATCH_WINDOWS`` at a time;
    each batch's inputs are built (standardised) just before its call, so memory holds one
    batch of model inputs however long the file."""
    parts: dict[str, list[torch.Tensor]] = {}
    for lo in range(0, n, BATCH_WINDOWS):
        out = model(*inputs_of(norm, slice(lo, min(lo + BATCH_WINDOWS, n))))
        for key, value in out.items():
            parts.setdefault(key, []).append(value.float())
    return {k: torch.cat(v) for k, v in parts.items()}


def member_outputs(branch: Branch, inputs_of: Inputs, n: int) -> dict[str, torch.Tensor]:
    """The branch's outputs on its ``n`` windows; an ensemble bundle averages its members'
    outputs, each member fed with its own normalisation (``inputs_of(norm, rows)``)."""
    outs = [window_outputs(model, bundle["norm"], inputs_of, n) for bundle, model in branch.members]
    if len(outs) == 1:
        return outs[0]
    return {k: torch.stack([o[k] for o in outs]).mean(dim=0) for k in outs[0]}


@dataclass
class BranchWindows:
    """One branch's per-window outputs on the grid and which windows have input."""

    start_s: np.ndarray  # (W,)
    has: np.ndarray  # (W,) bool
    out: dict[str, torch.Tensor]  # key -> (W, D), zeros where ``has`` is False
    face_fraction: np.ndarray | None = None  # (W,) visual only


def audio_windows(
    path: Path, predictor: Predictor, info: MediaInfo, name: str = "audio"
) -> BranchWindows | ClipError:
    """The ``audio`` (log-mel), ``egemaps`` or ``ssl`` model's outputs on every audio window
    of the file (a silent track: the ``silent_audio`` ClipError, as the extraction stages
    give it)."""
    branch = predictor.branches[name]
    try:
        if name == "egemaps":
            rec: Any = egemaps_features(path, branch.spec, info=info)
        elif name == "ssl":
            folder = predictor.encoder_folder("ssl")
            rec = ssl_features(path, branch.spec, info=info, folder=folder)
        else:
            rec = audio_features(path, branch.spec, info=info)
    except ClipError as exc:
        if exc.kind == "silent_audio":
            return exc
        raise
    n = len(rec.window_start_s)

    def inputs_of(norm: dict[str, Any], rows: slice) -> list[torch.Tensor]:
        if name != "audio":
            return [normalise_vectors(rec.vectors[rows], norm)]
        return [normalise_audio(rec.logmel[rows], norm)[:, None]]

    out = member_outputs(branch, inputs_of, n)
    return BranchWindows(rec.window_start_s, np.ones(n, bool), out)


def visual_windows(
    path: Path,
    predictor: Predictor,
    name: str = "visual",
    faces: dict[str, Any] | None = None,
    info: MediaInfo | None = None,
) -> BranchWindows | ClipError:
    """A face branch's (``visual``, ``face_cnn`` or ``au``) outputs on the face windows that
    have a face (no_face: a ClipError). ``faces`` caches the file's face record per faces spec,
    so face branches trained on the same faces stage run the face backend once; ``info``: the
    file's probe (None: probe it)."""
    branch = predictor.branches[name]
    norm, spec = branch.bundle["norm"], branch.spec
    faces_spec = spec.get("faces", spec)  # face_cnn: the faces stage's spec it encodes
    key = stable_hash(faces_spec)
    faces = {} if faces is None else faces
    if key not in faces:
        probe_with = None if info is None else lambda _: info
        backend = predictor.require_backend()
        [faces[key]] = face_features([(path.name, path)], faces_spec, backend, None, probe_with)
    rec = faces[key]
    if isinstance(rec, ClipError):
        if rec.kind == "no_face":
            return rec
        raise rec
    standardise: Any = normalise_vectors
    if name == "face_cnn":  # the stage's featurizer on this face record
        weights = predictor.encoders.get("face_cnn")
        encoder = load_encoder(spec["encoder"], weights, spec["weights_sha256"])
        columns = spec["fields"][norm["features"]]
        windows = clip_frame_vectors(name, encode_faces(rec, encoder), int(spec["frames"]),
                                     columns)  # fmt: skip
    elif name == "au":
        windows = clip_frame_vectors(name, rec, int(spec["frames"]))
    else:  # each frame once at model size; a batch's windows are gathered when it runs
        windows = clip_faces(rec, int(spec["frames"]), int(norm["size"]), bool(norm["gray"]))
        standardise = face_model_input
    mask = windows.mask
    has = mask.any(dim=1).numpy()
    if not has.any():  # faces only outside every window (last_window: drop)
        return ClipError("no_face", "no face in any window")
    kept_rows = torch.as_tensor(np.flatnonzero(has))

    def inputs_of(member: dict[str, Any], rows: slice) -> list[torch.Tensor]:
        x, m = windows.windows(kept_rows[rows])
        return [standardise(x, member), m]

    kept = member_outputs(branch, inputs_of, len(kept_rows))
    out = {k: v.new_zeros(len(has), v.shape[1]).index_copy_(0, kept_rows, v)
           for k, v in kept.items()}  # fmt: skip
    return BranchWindows(rec.window_start_s, has, out, mask.float().mean(dim=1).numpy())


AUDIO_BRANCHES = ("audio", "egemaps", "ssl")  # the branches that need the audio track


def branch_windows(
    path: Path, predictor: Predictor, info: MediaInfo
) -> tuple[dict[str, BranchWindows], dict[str, str]]:
    """Every usable branch's window outputs, and why a branch of the model was not used."""
    got: dict[str, BranchWindows] = {}
    why: dict[str, str] = {}
    for name in AUDIO_BRANCHES:
        if name not in predictor.branches:
            continue
        res = audio_windows(path, predictor, info, name) if info.has_audio else None
        if res is None:
            why[name] = "the file has no audio stream"
        elif isinstance(res, ClipError):
            why[name] = res.message
        else:
            got[name] = res
    faces: dict[str, Any] = {}
    for name in FACE_BRANCHES:
        if name not in predictor.branches:
            continue
        if not info.has_video:
            why[name] = "the file has no video stream"
            continue
        res = visual_windows(path, predictor, name, faces, info)
        if isinstance(res, ClipError):
            why[name] = "no face was found in any sampled frame"
        else:
            got[name] = res
    if not got:
        have = [m for m, ok in (("audio", info.has_audio), ("video", info.has_video)) if ok]
        reasons = "; ".join(f"{b}: {why[b]}" for b in predictor.branches if b in why)
        raise ClipError(
            "no_video" if info.has_audio else "no_audio",
            f"the model has the {' and '.join(predictor.branches)} branch only and the file "
            f"has {' and '.join(have) or 'no usable stream'} ({reasons})",
        )
    for modality, family in (("audio", AUDIO_BRANCHES), ("visual", FACE_BRANCHES)):
        if not any(b in predictor.branches for b in family):
            why[modality] = f"the model has no {modality} branch"
    return got, why
