"""``emoflow predict``: an emotion timeline for new videos with a trained model bundle.

Each file goes through the same code as the workflow's training data: the featurizer
(:mod:`emoflow.featurize`, with exactly the extraction spec stored in the bundle) gives its
audio windows and its face frames on the one time grid; :func:`emoflow.data.face_windows` and
:func:`emoflow.data.normalise_audio` give the model inputs; each branch's window outputs are
pooled per clip with :func:`emoflow.pooling.pool_windows` as evaluation pools them; the fusion
chosen at training is applied with :func:`emoflow.fusion_apply.apply_fusion`, per window (the
timeline) and per clip (the JSON). This module only orchestrates and writes.

A window with audio and a face is ``both``; without a face ``audio_only``; a file without audio
gives ``visual_only`` windows (a window with neither is ``none`` and has empty values).

Outputs in ``out`` per input ``<stem>``: ``<stem>.timeline.csv``, ``<stem>.json`` (no times,
no absolute paths beyond what was given, so reruns give the same bytes) and ``<stem>.png``.
Memory stays bounded for long files: one decoded audio track (about 38 MB for 10 minutes at
16 kHz), one chunk of decoded frames and the clip's 112 x 112 crops.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emoflow import __version__
from emoflow.atomic import write_text
from emoflow.branches import BRANCH_STAGE, FACE_BRANCHES, is_fused, ordered, row_sources
from emoflow.config import stable_hash
from emoflow.data import face_model_input, face_windows, normalise_audio, normalise_vectors
from emoflow.errors import ClipError, EmoflowError
from emoflow.face_cnn_stage import encode_faces, load_encoder
from emoflow.featurize import audio_features, egemaps_features, face_features, ssl_features
from emoflow.frame_inputs import clip_frame_vectors
from emoflow.fusion_apply import apply_fusion, has_categorical, has_dimensional
from emoflow.media import MediaInfo, probe
from emoflow.pooling import clip_probabilities, pool_windows
from emoflow.predict_model import Branch, Predictor, load_predictor

log = logging.getLogger("emoflow.predict")

FORMAT = "emoflow-prediction"
FORMAT_VERSION = 1
BATCH_WINDOWS = 16  # windows per model call
_DIGITS = 6


@dataclass
class Timeline:
    """Per-window outputs of one file (numpy, float64)."""

    start_s: np.ndarray  # (W,)
    end_s: np.ndarray  # (W,)
    face_fraction: np.ndarray  # (W,)
    has: dict[str, np.ndarray]  # branch -> (W,) bool
    prob: np.ndarray  # fused (W, C)
    fused_va: np.ndarray  # fused (W, 2)

    @property
    def sources(self) -> list[str]:
        return row_sources(self.has)


@torch.inference_mode()
def window_outputs(model: Any, inputs: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
    """A model's outputs (float32, CPU) for every window, ``BATCH_WINDOWS`` at a time."""
    parts: dict[str, list[torch.Tensor]] = {}
    for lo in range(0, len(inputs[0]), BATCH_WINDOWS):
        out = model(*(x[lo : lo + BATCH_WINDOWS] for x in inputs))
        for key, value in out.items():
            parts.setdefault(key, []).append(value.float())
    return {k: torch.cat(v) for k, v in parts.items()}


def member_outputs(branch: Branch, inputs_of: Any) -> dict[str, torch.Tensor]:
    """The branch's window outputs; an ensemble bundle averages its members' outputs, each
    member fed with its own normalisation (``inputs_of(norm)`` gives a member's inputs)."""
    outs = [window_outputs(model, inputs_of(bundle["norm"])) for bundle, model in branch.members]
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
    if name != "audio":
        out = member_outputs(branch, lambda norm: [normalise_vectors(rec.vectors, norm)])
    else:
        out = member_outputs(branch, lambda norm: [normalise_audio(rec.logmel, norm)[:, None]])
    return BranchWindows(rec.window_start_s, np.ones(len(rec.window_start_s), bool), out)


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
        x, mask = clip_frame_vectors(name, encode_faces(rec, encoder), int(spec["frames"]),
                                     columns).windows()  # fmt: skip
    elif name == "au":
        x, mask = clip_frame_vectors(name, rec, int(spec["frames"])).windows()
    else:
        x, mask = face_windows(rec, int(spec["frames"]), int(norm["size"]), bool(norm["gray"]))
        standardise = face_model_input
    has = mask.any(dim=1).numpy()
    if not has.any():  # faces only outside every window (last_window: drop)
        return ClipError("no_face", "no face in any window")
    kept = member_outputs(branch, lambda member: [standardise(x[has], member), mask[has]])
    rows = torch.as_tensor(np.flatnonzero(has))
    out = {k: v.new_zeros(len(has), v.shape[1]).index_copy_(0, rows, v) for k, v in kept.items()}
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


def _arrays(got: dict[str, BranchWindows], n: int, predictor: Predictor, pooled: bool) -> tuple:
    """prob, va, has, embedding per branch: per window (``n`` rows) or per clip (one row)."""
    c = len(predictor.classes) if has_categorical(predictor.target) else 0
    prob, va, has, emb = {}, {}, {}, {}
    for b, bw in got.items():
        out = bw.out
        w = len(bw.has)
        if pooled:
            rows = torch.as_tensor(np.flatnonzero(bw.has))
            out = pool_windows({k: v[rows] for k, v in out.items()}, torch.tensor([len(rows)]))
            has[b] = np.array([bool(bw.has.any())])
        else:
            has[b] = np.zeros(n, bool)
            has[b][:w] = bw.has
            out = {k: torch.cat([v, v.new_zeros(n - w, v.shape[1])]) for k, v in out.items()}
        rows_n = len(has[b])
        prob[b] = (clip_probabilities(out["logits"]).double().numpy() if "logits" in out
                   else np.zeros((rows_n, c)))  # fmt: skip
        va[b] = out["va"].double().numpy() if "va" in out else np.full((rows_n, 2), np.nan)
        emb[b] = out["embedding"].double().numpy()
    return prob, va, has, emb


def predict_timeline(path: Path, predictor: Predictor, info: MediaInfo) -> tuple[Timeline, dict]:
    """Per-window and clip-level predictions of one file (see the module docstring)."""
    got, why = branch_windows(path, predictor, info)
    grid = predictor.grid
    longest = max(got.values(), key=lambda bw: len(bw.start_s))
    start_s = np.asarray(longest.start_s, dtype=np.float64)
    n = len(start_s)
    duration = info.duration_s or (n * grid.hop_s)
    end_s = np.minimum(start_s + grid.window_s, max(duration, float(start_s[-1]) + 1e-3))
    face_fraction = np.zeros(n)
    for name in FACE_BRANCHES:
        ff = got[name].face_fraction if name in got else None
        if ff is not None:
            face_fraction[: len(ff)] = ff
            break
    plan = predictor.fusion
    prob, va, has, emb = _arrays(got, n, predictor, pooled=False)
    fused_p, fused_va = apply_fusion(
        plan.applied, plan.params, predictor.target, prob, va, has, emb
    )
    timeline = Timeline(start_s, end_s, face_fraction, has, fused_p, fused_va)
    cprob, cva, chas, cemb = _arrays(got, 1, predictor, pooled=True)
    clip_p, clip_va = apply_fusion(plan.applied, plan.params, predictor.target, cprob, cva, chas,
                                   cemb)  # fmt: skip
    clip = {"prob": clip_p, "va": clip_va, "branch_prob": cprob, "branch_va": cva,
            "has": chas, "n_windows": {b: int(bw.has.sum()) for b, bw in got.items()},
            "why": why}  # fmt: skip
    return timeline, clip


def _round(x: float) -> float | None:
    x = float(x)
    return None if math.isnan(x) else round(x, _DIGITS)


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
    timeline: Timeline, clip: dict[str, Any], predictor: Predictor, video: str, info: MediaInfo
) -> dict[str, Any]:
    """The clip-level JSON document of one file (deterministic, no times)."""
    target, classes = predictor.target, predictor.classes
    branches = {
        b: {**_outputs(clip["branch_prob"][b], clip["branch_va"][b], classes, target),
            "n_windows": clip["n_windows"][b]}
        for b in sorted(clip["has"]) if clip["has"][b][0]
    }  # fmt: skip
    source = row_sources(clip["has"])[0]
    grid = predictor.grid
    fusion = predictor.fusion.describe()
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "file": video,
        "model": predictor.model_path,
        "model_mode": predictor.mode,
        "target": target,
        "classes": classes,
        **_outputs(clip["prob"], clip["va"], classes, target),
        "source": source,
        "modalities": sorted(branches),
        "missing": {m: clip["why"][m] for m in ordered(clip["why"]) if m not in branches},
        "fusion": fusion if is_fused(source) else {**fusion, "used": False},
        "branches": branches,
        "n_windows": len(timeline.start_s),
        "window_s": grid.window_s,
        "hop_s": grid.hop_s,
        "duration_s": _round(info.duration_s) if info.duration_s else None,
        "face_fraction": _round(timeline.face_fraction.mean()) if len(timeline.start_s) else 0.0,
        "spec_hashes": {
            BRANCH_STAGE[b]: predictor.branches[b].spec_hash for b in predictor.branches
        },
        "warnings": list(predictor.warnings),
        "emoflow_version": __version__,
    }


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
    video: str | Path, predictor: Predictor, out_dir: Path, info: MediaInfo | None = None
) -> dict[str, Any]:
    """Predict one file; write ``<stem>.timeline.csv``, ``<stem>.json``, ``<stem>.png``."""
    from emoflow.predict_plot import plot_timeline

    path = Path(video)
    info = info or probe(path)
    timeline, clip = predict_timeline(path, predictor, info)
    doc = clip_prediction(timeline, clip, predictor, str(video), info)
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
        fusion = d["fusion"]["applied"] if is_fused(d["source"]) else "-"
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

    modes = sorted({d["model_mode"] for d in docs})
    table = Table(title=f"emoflow predict (model: {', '.join(modes) or '-'})")
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
        if d["fusion"].get("note") and is_fused(d["source"]):
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
    if set(FACE_BRANCHES) & set(predictor.branches) and any(i.has_video for i in infos.values()):
        predictor.require_backend()
    old_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, int(threads)))
    docs, failed = [], {}
    try:
        for v in videos:
            try:
                docs.append(predict_file(v, predictor, Path(out), infos[str(v)]))
            except ClipError as exc:
                failed[str(v)] = exc.message
    finally:
        torch.set_num_threads(old_threads)
    print_summary(docs, failed)
    if failed:
        raise EmoflowError(f"{len(failed)} of {len(videos)} files failed: " + "; ".join(
            f"{k}: {m}" for k, m in failed.items()))  # fmt: skip
    return docs
