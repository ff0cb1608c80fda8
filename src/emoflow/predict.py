"""``emoflow predict``: an emotion timeline for new videos with a trained model bundle.

For each input file, with exactly the extraction spec stored in the bundle's branch models:

- the audio (decoded once, mono at the spec's sample rate) is cut into the training windows
  (``window_s`` every ``hop_s``, same last-window rule as :func:`emoflow.audio.cut_windows`) and
  each window's log-mel goes through the audio model;
- for every window, ``faces.frames`` frames are sampled evenly **within that window** (the
  centres of K equal segments of ``[start, min(end, video end)]``), decoded a few windows at a
  time with ``ffmpeg -ss/-t`` (frames shared by overlapping windows are detected once), passed
  to the face backend of the spec and then to the visual model;
- the two branches are combined with the fusion chosen at training (``bundle.json``
  ``fusion``): ``late`` re-applies the stored weight, ``stacking`` re-applies the stored
  logistic/ridge coefficients, ``feature`` rebuilds the stored fusion MLP and applies it to the
  concatenated audio and visual embeddings (an older bundle that stores only the MLP's hash
  falls back to the stored late weight, which the JSON says).

A window with audio and a face is ``both``; without a face ``audio_only``; a file without audio
gives ``visual_only`` windows (a window with neither is ``none`` and has empty values). The clip
prediction pools the windows like training pools a clip's audio windows: the mean of the window
logits (softmax after the mean), of valence/arousal and of the embeddings, per branch, then
the fusion.

Outputs in ``out`` per input ``<stem>``: ``<stem>.timeline.csv``, ``<stem>.json`` (no times,
no absolute paths beyond what was given, so reruns give the same bytes) and ``<stem>.png``.
Memory stays bounded for long files: one decoded audio track (about 38 MB for 10 minutes at
16 kHz) plus the frames of a few windows at a time.
"""

from __future__ import annotations

import json
import logging
import math
import re
import sys
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ffmpeg
import numpy as np
import torch

from emoflow import __version__
from emoflow.atomic import write_text
from emoflow.audio import logmel_mfcc
from emoflow.bundle import build_model, load_bundle
from emoflow.config import stable_hash
from emoflow.data import normalise_audio, normalise_faces, preprocess_faces
from emoflow.errors import ClipError, EmoflowError, SpecMismatchError, ToolMissingError
from emoflow.faces.result import FaceResult
from emoflow.media import (
    DEFAULT_TIMEOUT_S,
    MediaInfo,
    _first_line,
    _frame_size,
    _input,
    _run,
    _select_expr,
    decode_audio,
    ffmpeg_version,
    probe,
    target_times,
)

log = logging.getLogger("emoflow.predict")

FORMAT = "emoflow-prediction"
FORMAT_VERSION = 1
BRANCH_STAGE = {"audio": "audio", "visual": "faces"}
DEFAULT_WINDOW = {"window_s": 3.0, "hop_s": 1.5, "last_window": "pad", "sample_rate": 16000}
"""The window grid of a visual-only model (its bundle has no audio spec)."""
CHUNK_WINDOWS = 4  # windows per ffmpeg call / model batch: bounds memory for long files
SOURCES = ("both", "audio_only", "visual_only", "none")
_DIGITS = 6


# --------------------------------------------------------------------------- model loading


@dataclass
class Branch:
    """One loaded branch model with its bundle."""

    name: str  # "audio" | "visual"
    bundle: dict[str, Any]
    model: torch.nn.Module

    @property
    def spec(self) -> dict[str, Any]:
        return self.bundle["spec"]

    @property
    def spec_hash(self) -> str:
        """The params hash of the shards it was trained on (as in the shard attributes)."""
        return stable_hash(self.spec)


@dataclass(frozen=True)
class FusionPlan:
    """How the branch outputs are combined, from the bundle's ``fusion`` and weights."""

    requested: str | None  # the method chosen at training (None: single branch or none set)
    applied: str  # "late" | "stacking" | "feature" | "none" (a single branch)
    late: dict[str, float] = field(default_factory=dict)  # audio weight per output kind
    stacking: dict[str, Any] = field(default_factory=dict)  # the stored coefficients
    note: str | None = None
    # the rebuilt fusion MLP (None: it could not be fit at training, equal weights as there)
    feature: Any = field(default=None, compare=False, repr=False)

    def describe(self) -> dict[str, Any]:
        """The plan as it goes into the prediction JSON."""
        out: dict[str, Any] = {"requested": self.requested, "applied": self.applied}
        if self.applied == "late":
            out["audio_weight"] = {k: _round(v) for k, v in sorted(self.late.items())}
        if self.note:
            out["note"] = self.note
        return out


@dataclass
class Predictor:
    """Everything needed to predict: branch models, classes, target and fusion plan."""

    model_path: str  # as given
    branches: dict[str, Branch]
    classes: list[str]
    target: str
    fusion: FusionPlan
    warnings: list[str] = field(default_factory=list)
    backend: Any = None  # the face backend, made on first need (see require_backend)

    @property
    def window(self) -> dict[str, Any]:
        """The window grid: the audio spec's, else :data:`DEFAULT_WINDOW`."""
        if "audio" in self.branches:
            spec = self.branches["audio"].spec
            return {k: spec[k] for k in DEFAULT_WINDOW}
        return dict(DEFAULT_WINDOW)

    def require_backend(self) -> Any:
        """The face backend of the visual spec; ToolMissingError with advice if unavailable."""
        if self.backend is None:
            self.backend = make_face_backend(self.branches["visual"].spec)
            new = backend_warnings(self.branches["visual"].spec, self.backend)
            for w in new:
                log.warning("%s", w)
            self.warnings += new
        return self.backend


def has_categorical(target: str) -> bool:
    """Whether ``target`` has class probabilities."""
    return target in ("categorical", "both")


def has_dimensional(target: str) -> bool:
    """Whether ``target`` has valence/arousal."""
    return target in ("dimensional", "both")


def fusion_plan(
    requested: str | None, weights: dict[str, Any] | None, branches: Sequence[str]
) -> FusionPlan:
    """Decide how to fuse from ``bundle.json``'s ``fusion`` and ``fusion_weights`` (pure).

    ``late`` uses the stored audio weight per output kind; ``stacking`` its stored coefficients
    (a kind it could not fit at training used the equal-weight average there, and here too);
    ``feature`` rebuilds the stored fusion MLP (not fit at training: the equal-weight average,
    as there). Without stored parameters (an older bundle keeps only their hash) ``feature``
    falls back to late fusion with the stored late weight (0.5 without one), saying so in
    ``note``.
    """
    if len(branches) < 2:
        return FusionPlan(requested=None, applied="none", note=f"single branch: {branches[0]}")
    methods = (weights or {}).get("methods", {}) or {}
    late = {k: float(v) for k, v in (methods.get("late") or {}).items() if k != "n_fit"}
    if requested == "late":
        return FusionPlan(requested, "late", late=late)
    if requested == "stacking" and "stacking" in methods:
        return FusionPlan(requested, "stacking", stacking=methods["stacking"])
    feature = methods.get("feature")
    if requested == "feature" and feature is not None:
        if not feature.get("fitted"):
            return FusionPlan(requested, "feature")
        if "state" in feature:
            from emoflow.models.fusion import fusion_mlp_from_json

            try:
                model = fusion_mlp_from_json(feature)
            except (ValueError, KeyError, TypeError, RuntimeError) as exc:
                raise SpecMismatchError(
                    f"the bundle's feature fusion MLP is broken: {exc}"
                ) from exc
            return FusionPlan(requested, "feature", feature=model)
    why = {
        "feature": "the feature-level fusion MLP's parameters are not stored in the bundle "
        "(an older emoflow stored only their hash)",
        "stacking": "the bundle stores no stacking coefficients",
        None: "the bundle names no fusion method",
    }.get(requested, f"unknown fusion method {requested!r}")
    source = "the stored late-fusion weight" if late else "equal weights (0.5)"
    return FusionPlan(
        requested, "late", late=late, note=f"{why}; fell back to late fusion with {source}"
    )


def make_face_backend(spec: dict[str, Any]) -> Any:
    """The face backend named by a faces spec; a clear ToolMissingError when unavailable."""
    from emoflow.faces import make_backend

    try:
        return make_backend(spec)
    except ToolMissingError as exc:
        raise ToolMissingError(
            f"the visual model was trained with the {spec.get('backend')!r} face backend, "
            f"which is not available here: {exc}. Install it, or predict from the audio only "
            "with --model <bundle>/audio.pt"
        ) from exc


def _compare(what: str, trained: Any, here: Any) -> list[str]:
    if trained is None or trained == here:
        return []
    return [f"{what} differs: the model was trained with {trained!r}, this machine has {here!r}"]


def tool_warnings(spec: dict[str, Any], stage: str, ffmpeg_bin: str = "ffmpeg") -> list[str]:
    """Differences between the tool versions a spec records and the local ones."""
    import librosa

    out = _compare(
        f"{stage}: ffmpeg version", spec.get("ffmpeg_version"), ffmpeg_version(ffmpeg_bin)
    )
    if stage == "audio":
        out += _compare("audio: librosa version", spec.get("librosa_version"), librosa.__version__)
    return out


def backend_warnings(spec: dict[str, Any], backend: Any) -> list[str]:
    """Differences between the face backend versions of the spec and of ``backend``."""
    trained = spec.get("backend_versions") or {}
    here = backend.versions()
    return [
        msg
        for key in sorted(set(trained) | set(here))
        for msg in _compare(f"faces: {key}", trained.get(key), here.get(key))
    ]


def _load_branch(path: Path, expect: str | None = None) -> Branch:
    bundle = load_bundle(path)
    branch = bundle["branch"]
    if expect is not None and branch != expect:
        raise SpecMismatchError(f"{path} holds the {branch!r} branch, expected {expect!r}")
    return Branch(branch, bundle, build_model(bundle))


def load_predictor(model: str | Path) -> Predictor:
    """Load a bundle folder (``results/<name>/model``) or a single branch ``model.pt``.

    The face backend is made later, when a file with video needs it. Tool version differences
    become warnings (logged and written into every JSON), never errors.
    """
    given = str(model)
    path = Path(model)
    if path.is_dir():
        info_path = path / "bundle.json"
        if not info_path.is_file():
            raise EmoflowError(f"{path} has no bundle.json: not a model bundle folder")
        info = json.loads(info_path.read_text("utf-8"))
        if info.get("format") != "emoflow-bundle" or info.get("format_version") != 1:
            raise SpecMismatchError(f"{info_path} is not an emoflow-bundle of format version 1")
        files = info.get("branches") or {b: f"{b}.pt" for b in BRANCH_STAGE}
        branches = {b: _load_branch(path / files[b], b) for b in BRANCH_STAGE if b in files}
        requested, weights = info.get("fusion"), info.get("fusion_weights")
    elif path.is_file():
        one = _load_branch(path)
        branches, requested, weights = {one.name: one}, None, None
    else:
        raise EmoflowError(f"model not found: {given}")
    first = next(iter(branches.values())).bundle
    for b in branches.values():
        if b.bundle["classes"] != first["classes"] or b.bundle["target"] != first["target"]:
            raise SpecMismatchError("the bundle's branch models differ in classes or target")
    warnings: list[str] = []
    for name, b in branches.items():
        warnings += tool_warnings(b.spec, BRANCH_STAGE[name])
    for w in warnings:
        log.warning("%s", w)
    return Predictor(
        model_path=given,
        branches=branches,
        classes=list(first["classes"]),
        target=str(first["target"]),
        fusion=fusion_plan(requested, weights, list(branches)),
        warnings=warnings,
    )


# --------------------------------------------------------------------------- windows


def window_starts(n_samples: int, win: int, hop: int, last_window: str) -> np.ndarray:
    """Start samples of the windows :func:`emoflow.audio.cut_windows` makes (same rule)."""
    if n_samples <= win:
        return np.zeros(1, dtype=np.int64)
    starts = list(range(0, n_samples - win + 1, hop))
    tail = starts[-1] + hop
    if last_window == "pad" and starts[-1] + win < n_samples and tail < n_samples:
        starts.append(tail)
    return np.asarray(starts, dtype=np.int64)


def window_segments(samples: np.ndarray, starts: np.ndarray, win: int) -> np.ndarray:
    """``(len(starts), win)`` float32 windows of ``samples``, zero-padded at the end."""
    out = np.zeros((len(starts), win), dtype=np.float32)
    for i, s in enumerate(starts):
        chunk = samples[int(s) : int(s) + win]
        out[i, : len(chunk)] = chunk
    return out


def frame_times(start_s: float, end_s: float, k: int) -> np.ndarray:
    """``k`` times spread evenly over ``[start_s, end_s)`` (empty if the span is empty)."""
    if end_s <= start_s:
        return np.zeros(0)
    return start_s + target_times(end_s - start_s, k)


def _key(t: float) -> int:
    return int(round(t * 1e6))


def decode_frames_at(
    path: Path,
    times: np.ndarray,
    info: MediaInfo,
    max_side: int,
    ffmpeg_bin: str = "ffmpeg",
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode the first frame at or after each of ``times`` (sorted, seconds) in one pass.

    ``ffmpeg -ss <first> -t <span>`` (accurate input seeking) with a ``select`` filter into a raw
    RGB pipe, scaled like :func:`emoflow.media.sample_frames`. Returns ``(frames, got, valid)``:
    ``valid`` (one per time) says which times have a frame (none past the end of the video);
    ``frames`` and their actual times ``got`` are those of the valid times, in order.
    """
    width, height = _frame_size(info, max_side)
    empty = np.zeros((0, height, width, 3), np.uint8)
    if len(times) == 0:
        return empty, np.zeros(0), np.zeros(0, bool)
    ss = max(0.0, float(times[0]))
    margin = max(0.25, 2.0 / (info.fps or 25.0))
    span = float(times[-1]) - ss + margin
    stream = (
        ffmpeg.input(_input(path), ss=f"{ss:.6f}", t=f"{span:.6f}")
        .video.filter("select", _select_expr(np.asarray(times) - ss))
        .filter("showinfo")
        .filter("scale", width, height)
        .output("pipe:1", format="rawvideo", pix_fmt="rgb24", fps_mode="passthrough", an=None)
    )
    args = stream.global_args("-nostdin", "-v", "info", "-nostats").compile(cmd=ffmpeg_bin)
    proc = _run(args, timeout_s, "ffmpeg frame sampling")
    frame_bytes = width * height * 3
    n = len(proc.stdout) // frame_bytes
    if n == 0:
        if proc.returncode != 0:
            raise ClipError(
                "unreadable", f"ffmpeg cannot decode the video: {_first_line(proc.stderr)}"
            )
        return empty, np.zeros(0), np.zeros(len(times), bool)
    frames = np.frombuffer(proc.stdout[: n * frame_bytes], np.uint8).reshape(n, height, width, 3)
    found = [ss + float(t) for t in re.findall(rb"pts_time:\s*([-0-9.e+]+)", proc.stderr)][:n]
    found += [float(times[min(i, len(times) - 1)]) for i in range(len(found), n)]
    got = np.asarray(found, dtype=np.float64)
    pick = np.abs(got[None, :] - times[:, None]).argmin(axis=1)
    # a time with no frame near it (past the last frame) gets none rather than a far one
    valid = np.abs(got[pick] - times) <= max(0.1, 2.0 / (info.fps or 25.0))
    return np.ascontiguousarray(frames[pick[valid]]), got[pick[valid]], valid


# --------------------------------------------------------------------------- fusion (pure)


def softmax(x: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64."""
    x = np.asarray(x, dtype=np.float64)
    z = np.exp(x - x.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def apply_stacking_categorical(info: dict[str, Any], x: np.ndarray, n_classes: int) -> np.ndarray:
    """Re-apply fuse.py's logistic regression (stored ``coef``/``intercept``/``classes``)
    to ``x`` = concatenated audio and visual probabilities; what ``predict_proba`` gives."""
    coef = np.asarray(info["coef"], dtype=np.float64)
    intercept = np.asarray(info["intercept"], dtype=np.float64)
    classes = [int(c) for c in info["classes"]]
    scores = x @ coef.T + intercept
    if len(classes) == 2 and coef.shape[0] == 1:
        p1 = 1.0 / (1.0 + np.exp(-scores[:, 0]))
        fitted = np.stack([1.0 - p1, p1], axis=1)
    else:
        fitted = softmax(scores)
    prob = np.zeros((len(x), n_classes))
    prob[:, classes] = fitted
    return prob


def apply_feature(
    model: Any, embedding: dict[str, np.ndarray], rows: np.ndarray
) -> dict[str, np.ndarray]:
    """Re-apply fuse.py's fusion MLP to the audio then visual embeddings of ``rows``; what
    :func:`emoflow.models.fusion.predict_fusion_mlp` gives (float64)."""
    from emoflow.models.fusion import predict_fusion_mlp

    if "audio" not in embedding or "visual" not in embedding:
        raise EmoflowError("feature fusion needs the embeddings of both branches")
    x = np.hstack([embedding["audio"][rows], embedding["visual"][rows]])
    if x.shape[1] != model.in_dim:
        raise SpecMismatchError(
            f"the fusion MLP expects {model.in_dim} embedding values, the branch models give "
            f"{x.shape[1]}"
        )
    return {k: v.astype(np.float64) for k, v in predict_fusion_mlp(model, x).items()}


def fuse_outputs(
    plan: FusionPlan,
    target: str,
    prob: dict[str, np.ndarray],
    va: dict[str, np.ndarray],
    has: dict[str, np.ndarray],
    embedding: dict[str, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Fuse per-row branch outputs as training did; rows missing a branch take the other's.

    ``prob[b]`` is (N, C), ``va[b]`` (N, 2) and ``has[b]`` (N,) bool for b in audio, visual
    (a single-branch plan needs only its branch); ``embedding[b]`` (N, E_b) is needed by a
    ``feature`` plan only. Rows with neither are NaN.
    """
    names = [b for b in ("audio", "visual") if b in prob]
    n = len(next(iter(has.values())))
    c = next(iter(prob.values())).shape[1]
    out_p, out_va = np.full((n, c), np.nan), np.full((n, 2), np.nan)
    if len(names) == 2:
        both = has["audio"] & has["visual"]
        pa_, pv = prob["audio"], prob["visual"]
        vaa, vav = va["audio"], va["visual"]
        w_c = plan.late.get("categorical", 0.5)
        w_d = plan.late.get("dimensional", 0.5)
        fused_p = w_c * pa_ + (1 - w_c) * pv
        fused_va = w_d * vaa + (1 - w_d) * vav
        if plan.applied == "feature":
            fused_p, fused_va = 0.5 * pa_ + 0.5 * pv, 0.5 * vaa + 0.5 * vav
            if plan.feature is not None and both.any():
                out = apply_feature(plan.feature, embedding or {}, both)
                if "prob" in out:
                    fused_p[both] = out["prob"]
                if "va" in out:
                    fused_va[both] = out["va"]
        if plan.applied == "stacking":
            fused_p, fused_va = 0.5 * pa_ + 0.5 * pv, 0.5 * vaa + 0.5 * vav
            cat = plan.stacking.get("categorical") or {}
            if has_categorical(target) and cat.get("fitted"):
                fused_p = apply_stacking_categorical(cat, np.hstack([pa_, pv]), c)
            dims = plan.stacking.get("dimensional") or {}
            x = np.nan_to_num(np.hstack([vaa, vav]), nan=0.0)
            for d, name in enumerate(("valence", "arousal")):
                ridge = dims.get(name) or {}
                if has_dimensional(target) and ridge.get("fitted"):
                    fused_va[:, d] = x @ np.asarray(ridge["coef"]) + float(ridge["intercept"])
        out_p[both], out_va[both] = fused_p[both], fused_va[both]
    for b in names:
        others = [o for o in names if o != b]
        only = has[b] & ~np.logical_or.reduce([has[o] for o in others]) if others else has[b]
        out_p[only], out_va[only] = prob[b][only], va[b][only]
    return out_p, out_va


def row_sources(has: dict[str, np.ndarray]) -> list[str]:
    """``both`` / ``audio_only`` / ``visual_only`` / ``none`` per row."""
    a = has.get("audio")
    v = has.get("visual")
    n = len(a if a is not None else v)
    a = a if a is not None else np.zeros(n, bool)
    v = v if v is not None else np.zeros(n, bool)
    return [
        "both" if x and y else "audio_only" if x else "visual_only" if y else "none"
        for x, y in zip(a, v, strict=True)
    ]


# --------------------------------------------------------------------------- per file


@dataclass
class Timeline:
    """Per-window outputs of one file (numpy, float64)."""

    start_s: np.ndarray  # (W,)
    end_s: np.ndarray  # (W,)
    face_fraction: np.ndarray  # (W,)
    has: dict[str, np.ndarray]  # branch -> (W,) bool
    logits: dict[str, np.ndarray]  # branch -> (W, C)
    va: dict[str, np.ndarray]  # branch -> (W, 2)
    prob: np.ndarray | None = None  # fused (W, C)
    fused_va: np.ndarray | None = None  # fused (W, 2)
    embedding: dict[str, np.ndarray] = field(default_factory=dict)  # branch -> (W, E)

    @property
    def sources(self) -> list[str]:
        return row_sources(self.has)


def chunk_frame_plan(
    spans: Sequence[tuple[float, float]], k: int, chunk: int
) -> list[tuple[float, list[np.ndarray], np.ndarray]]:
    """Per chunk of ``chunk`` windows: its first start, each window's ``k`` frame times, and
    the times first needed in it (sorted; times shared with earlier windows still in range
    are decoded and detected once). Pure."""
    plan = []
    seen: set[int] = set()
    for lo in range(0, len(spans), chunk):
        part = spans[lo : lo + chunk]
        first = part[0][0]
        seen = {key for key in seen if key >= _key(first) - 1}
        per_window = [frame_times(s, e, k) for s, e in part]
        fresh = {_key(t): t for ts in per_window for t in ts if _key(t) not in seen}
        seen |= set(fresh)
        plan.append((first, per_window, np.asarray(sorted(fresh.values()), dtype=np.float64)))
    return plan


def visual_windows(
    path: Path,
    info: MediaInfo,
    spans: Sequence[tuple[float, float]],
    spec: dict[str, Any],
    backend: Any,
) -> Iterator[list[tuple[np.ndarray, np.ndarray]]]:
    """Per chunk of :data:`CHUNK_WINDOWS` windows: faces ``(K, S, S, 3)`` and mask ``(K,)`` of
    each window. The next chunks' frames are decoded in a background thread (at most two
    ahead) while the face backend works on the current one."""
    from emoflow.extract import ordered_map

    k, size = int(spec["frames"]), int(spec["size"])
    max_side = int(spec.get("max_side", 640))
    plan = chunk_frame_plan(spans, k, CHUNK_WINDOWS)
    cache: dict[int, tuple[np.ndarray, bool]] = {}
    tasks = ((decode_frames_at, path, new, info, max_side) for _, _, new in plan)
    with ThreadPoolExecutor(max_workers=1) as pool:
        for (first, per_window, new), (frames, _, valid) in zip(
            plan, ordered_map(pool, tasks, 2), strict=True
        ):
            for key in [key for key in cache if key < _key(first) - 1]:
                del cache[key]
            crops = np.zeros((len(new), size, size, 3), np.uint8)
            found = np.zeros(len(new), bool)
            if len(frames):
                with tempfile.TemporaryDirectory(prefix="emoflow-predict-") as work:
                    res = backend.process([("chunk", frames)], Path(work)).get("chunk")
                if isinstance(res, FaceResult):
                    crops[valid], found[valid] = np.asarray(res.faces), np.asarray(res.mask, bool)
                else:
                    why = res.message if isinstance(res, ClipError) else "no result"
                    log.warning("face backend failed on %s: %s", path.name, why)
            for t, crop, ok in zip(new, crops, found, strict=True):
                cache[_key(t)] = (crop, bool(ok))
            out = []
            for ts in per_window:
                faces = np.zeros((k, size, size, 3), np.uint8)
                mask = np.zeros(k, bool)
                for i, t in enumerate(ts):
                    faces[i], mask[i] = cache[_key(t)]
                out.append((faces, mask))
            yield out


@torch.inference_mode()
def _run_model(branch: Branch, *inputs: torch.Tensor) -> dict[str, np.ndarray]:
    out = branch.model(*inputs)
    return {k: v.float().numpy().astype(np.float64) for k, v in out.items()}


def predict_timeline(
    path: Path, predictor: Predictor, info: MediaInfo, progress: bool = False
) -> Timeline:
    """Run both branches window by window over one file (see the module docstring)."""
    from tqdm import tqdm

    grid = predictor.window
    sr = int(grid["sample_rate"])
    win, hop = int(round(grid["window_s"] * sr)), int(round(grid["hop_s"] * sr))
    use_audio = "audio" in predictor.branches and info.has_audio
    use_video = "visual" in predictor.branches and info.has_video
    if not (use_audio or use_video):
        have = [m for m, ok in (("audio", info.has_audio), ("video", info.has_video)) if ok]
        raise ClipError(
            "no_video" if info.has_audio else "no_audio",
            f"the model has the {' and '.join(predictor.branches)} branch only and the file "
            f"has {' and '.join(have) or 'no usable stream'}",
        )
    samples = None
    if use_audio:
        samples = decode_audio(path, sr, info=info)
        n_samples = len(samples)
    else:
        if not info.duration_s:
            raise ClipError("unreadable", "ffprobe gives no duration for the video")
        n_samples = int(round(info.duration_s * sr))
    starts = window_starts(n_samples, win, hop, grid["last_window"])
    start_s = starts / sr
    media_end = n_samples / sr
    end_s = np.minimum(start_s + grid["window_s"], max(media_end, start_s[0] + 1e-3))
    n_win, c = len(starts), len(predictor.classes)
    logits = {b: np.zeros((n_win, c)) for b in predictor.branches}
    va = {b: np.full((n_win, 2), np.nan) for b in predictor.branches}
    has = {b: np.zeros(n_win, bool) for b in predictor.branches}
    emb: dict[str, np.ndarray] = {}

    def keep_embedding(b: str, rows: np.ndarray, out: dict[str, np.ndarray]) -> None:
        if "embedding" in out:
            if b not in emb:
                emb[b] = np.zeros((n_win, out["embedding"].shape[1]))
            emb[b][rows] = out["embedding"]

    face_fraction = np.zeros(n_win)
    video_end = info.duration_s or media_end
    backend = predictor.require_backend() if use_video else None
    chunks = iter(())
    if use_video:
        spans = [(float(t), float(min(t + grid["window_s"], video_end))) for t in start_s]
        chunks = visual_windows(path, info, spans, predictor.branches["visual"].spec, backend)

    def store(name: str, rows: np.ndarray, out: dict) -> None:
        """Keep one branch's outputs for these windows."""
        if "logits" in out:
            logits[name][rows] = out["logits"]
        if "va" in out:
            va[name][rows] = out["va"]
        keep_embedding(name, rows, out)
        has[name][rows] = True

    bar = tqdm(total=n_win, desc=path.name, unit="window", disable=not progress, leave=False)
    for lo in range(0, n_win, CHUNK_WINDOWS):
        idx = np.arange(lo, min(lo + CHUNK_WINDOWS, n_win))
        if use_audio and samples is not None:
            branch = predictor.branches["audio"]
            logmel, _ = logmel_mfcc(window_segments(samples, starts[idx], win), branch.spec)
            store("audio", idx, _run_model(branch, normalise_audio(logmel, branch.bundle["norm"])))
        if use_video:
            branch = predictor.branches["visual"]
            norm = branch.bundle["norm"]
            got = next(chunks)
            masks = np.stack([m for _, m in got])
            face_fraction[idx] = masks.mean(axis=1)
            keep = masks.any(axis=1)
            if keep.any():
                x = torch.stack(
                    [
                        normalise_faces(
                            preprocess_faces(f, int(norm["size"]), bool(norm["gray"])), norm
                        )
                        for (f, m), k in zip(got, keep, strict=True)
                        if k
                    ]
                )
                store("visual", idx[keep], _run_model(branch, x, torch.as_tensor(masks[keep])))
        bar.update(len(idx))
    bar.close()
    return Timeline(start_s, end_s, face_fraction, has, logits, va, embedding=emb)


def _round(x: float) -> float | None:
    x = float(x)
    return None if math.isnan(x) else round(x, _DIGITS)


def _branch_summary(
    logits: np.ndarray, va: np.ndarray, has: np.ndarray, target: str
) -> tuple[np.ndarray, np.ndarray]:
    """Clip-level (1, C) probabilities and (1, 2) valence/arousal of one branch."""
    if not has.any():
        return np.full((1, logits.shape[1]), np.nan), np.full((1, 2), np.nan)
    prob = softmax(logits[has].mean(axis=0, keepdims=True)) if logits.shape[1] else logits[:1]
    v = np.nanmean(va[has], axis=0, keepdims=True) if has_dimensional(target) else va[:1]
    return prob, v


def _outputs(prob: np.ndarray, va: np.ndarray, classes: list[str], target: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if has_categorical(target) and classes:
        p = prob[0]
        out["probabilities"] = {c: _round(p[i]) for i, c in enumerate(classes)}
        out["label"] = None if np.isnan(p).any() else classes[int(np.argmax(p))]
    if has_dimensional(target):
        out["valence"], out["arousal"] = _round(va[0, 0]), _round(va[0, 1])
    return out


def clip_prediction(
    timeline: Timeline,
    predictor: Predictor,
    video: str,
    info: MediaInfo,
) -> dict[str, Any]:
    """The clip-level JSON document of one file (deterministic, no times)."""
    target, classes = predictor.target, predictor.classes
    probs, vas, has, embs = {}, {}, {}, {}
    branches: dict[str, Any] = {}
    for b in predictor.branches:
        probs[b], vas[b] = _branch_summary(
            timeline.logits[b], timeline.va[b], timeline.has[b], target
        )
        has[b] = np.array([bool(timeline.has[b].any())])
        if has[b][0] and b in timeline.embedding:
            embs[b] = timeline.embedding[b][timeline.has[b]].mean(axis=0, keepdims=True)
        if has[b][0]:
            branches[b] = {
                **_outputs(probs[b], vas[b], classes, target),
                "n_windows": int(timeline.has[b].sum()),
            }
    fused_p, fused_va = fuse_outputs(predictor.fusion, target, probs, vas, has, embs)
    source = row_sources(has)[0]
    modalities = [m for m, b in (("audio", "audio"), ("visual", "visual")) if b in branches]
    missing = {
        "audio": "the file has no audio stream"
        if not info.has_audio
        else "the model has no audio branch",
        "visual": "the file has no video stream"
        if not info.has_video
        else "the model has no visual branch"
        if "visual" not in predictor.branches
        else "no face was found in any sampled frame",
    }
    grid = predictor.window
    doc: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "file": video,
        "model": predictor.model_path,
        "target": target,
        "classes": classes,
        **_outputs(fused_p, fused_va, classes, target),
        "source": source,
        "modalities": modalities,
        "missing": {m: missing[m] for m in ("audio", "visual") if m not in modalities},
        "fusion": predictor.fusion.describe()
        if source == "both"
        else {**predictor.fusion.describe(), "used": False},
        "branches": branches,
        "n_windows": len(timeline.start_s),
        "window_s": grid["window_s"],
        "hop_s": grid["hop_s"],
        "duration_s": _round(info.duration_s) if info.duration_s else None,
        "face_fraction": _round(timeline.face_fraction.mean()) if len(timeline.start_s) else 0.0,
        "spec_hashes": {
            BRANCH_STAGE[b]: predictor.branches[b].spec_hash for b in predictor.branches
        },
        "warnings": list(predictor.warnings),
        "emoflow_version": __version__,
    }
    return doc


def fuse_timeline(timeline: Timeline, predictor: Predictor) -> Timeline:
    """Fill the fused per-window outputs of ``timeline`` (window logits -> softmax -> fusion)."""
    prob = {b: softmax(v) if v.shape[1] else v for b, v in timeline.logits.items()}
    timeline.prob, timeline.fused_va = fuse_outputs(
        predictor.fusion, predictor.target, prob, timeline.va, timeline.has, timeline.embedding
    )
    return timeline


def _fmt(x: float) -> str:
    return "" if math.isnan(x) else f"{x:.{_DIGITS}f}"


def timeline_csv(timeline: Timeline, classes: list[str], target: str) -> str:
    """The ``<stem>.timeline.csv`` text: start_s, end_s, p_<class>.../valence, arousal,
    face_fraction, source."""
    header = ["start_s", "end_s"]
    if has_categorical(target):
        header += [f"p_{c}" for c in classes]
    if has_dimensional(target):
        header += ["valence", "arousal"]
    header += ["face_fraction", "source"]
    lines = [",".join(header)]
    assert timeline.prob is not None and timeline.fused_va is not None
    for i, src in enumerate(timeline.sources):
        row = [f"{timeline.start_s[i]:.3f}", f"{timeline.end_s[i]:.3f}"]
        if has_categorical(target):
            row += [_fmt(p) for p in timeline.prob[i]]
        if has_dimensional(target):
            row += [_fmt(v) for v in timeline.fused_va[i]]
        row += [f"{timeline.face_fraction[i]:.4f}", src]
        lines.append(",".join(row))
    return "\n".join(lines) + "\n"


def predict_file(
    video: str | Path, predictor: Predictor, out_dir: Path, progress: bool = False
) -> dict[str, Any]:
    """Predict one file; write ``<stem>.timeline.csv``, ``<stem>.json``, ``<stem>.png``."""
    from emoflow.predict_plot import plot_timeline

    path = Path(video)
    info = probe(path)
    timeline = fuse_timeline(predict_timeline(path, predictor, info, progress), predictor)
    doc = clip_prediction(timeline, predictor, str(video), info)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = path.stem
    write_text(
        out_dir / f"{stem}.timeline.csv",
        timeline_csv(timeline, predictor.classes, predictor.target),
    )
    write_text(out_dir / f"{stem}.json", json.dumps(doc, indent=1, sort_keys=True) + "\n")
    plot_timeline(timeline, predictor.classes, predictor.target, out_dir / f"{stem}.png", path.name)
    return doc


# --------------------------------------------------------------------------- entry point


def summary_rows(docs: list[dict[str, Any]]) -> list[list[str]]:
    """The terminal summary: file, duration, windows, modalities, fusion, prediction, faces."""
    rows = []
    for d in docs:
        if "label" in d:
            p = (d.get("probabilities") or {}).get(d["label"]) if d["label"] else None
            pred = f"{d['label']} ({p:.2f})" if p is not None else "-"
        else:
            pred = ""
        if d.get("valence") is not None:
            pred = (pred + " " if pred else "") + f"v={d['valence']:+.2f} a={d['arousal']:+.2f}"
        fusion = d["fusion"]["applied"] if d["source"] == "both" else "-"
        rows.append(
            [
                Path(d["file"]).name,
                f"{d['duration_s']:.1f} s" if d.get("duration_s") else "?",
                str(d["n_windows"]),
                d["source"].replace("_", " "),
                fusion,
                pred or "-",
                f"{100 * d['face_fraction']:.0f} %",
            ]
        )
    return rows


def print_summary(docs: list[dict[str, Any]], failed: dict[str, str]) -> None:
    """Print the summary table (rich) and one line per missing modality or failure."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="emoflow predict")
    for name in ("file", "duration", "windows", "modalities", "fusion", "prediction", "faces"):
        right = name in ("duration", "windows", "faces")
        table.add_column(name, justify="right" if right else "left", overflow="fold")
    for row in summary_rows(docs):
        table.add_row(*row)
    console = Console(highlight=False)
    console.print(table)
    for d in docs:
        for modality, why in d["missing"].items():
            console.print(f"{Path(d['file']).name}: {modality} not used ({why})")
        if d["fusion"].get("note") and d["source"] == "both":
            console.print(f"{Path(d['file']).name}: fusion: {d['fusion']['note']}")
    for name, why in failed.items():
        console.print(f"{name}: failed: {why}")


def run_predict(
    videos: Sequence[str | Path], model: str | Path, out: str | Path, threads: int = 2
) -> list[dict[str, Any]]:
    """Predict every file of ``videos`` with the bundle ``model``; write into ``out``.

    Files are probed first: unreadable ones and duplicate stems stop the run before any work,
    and the face backend is made (ToolMissingError if unavailable) when a file has video and
    the model a visual branch. Returns the JSON documents in input order.
    """
    if not videos:
        raise EmoflowError("no input file given")
    stems: dict[str, str] = {}
    for v in videos:
        stem = Path(v).stem
        if stem in stems:
            raise EmoflowError(f"{v} and {stems[stem]} would write the same outputs ({stem}.*)")
        stems[stem] = str(v)
    predictor = load_predictor(model)
    infos = {}
    for v in videos:
        try:
            infos[str(v)] = probe(Path(v))
        except ClipError as exc:
            raise EmoflowError(f"{v}: {exc.message}") from exc
    if "visual" in predictor.branches and any(i.has_video for i in infos.values()):
        predictor.require_backend()
    old_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, int(threads)))
    docs, failed = [], {}
    try:
        for v in videos:
            try:
                docs.append(predict_file(v, predictor, Path(out), progress=sys.stderr.isatty()))
            except ClipError as exc:
                failed[str(v)] = exc.message
    finally:
        torch.set_num_threads(old_threads)
    print_summary(docs, failed)
    if failed:
        raise EmoflowError(f"{len(failed)} of {len(videos)} files failed: " + "; ".join(
            f"{k}: {m}" for k, m in failed.items()))  # fmt: skip
    return docs
