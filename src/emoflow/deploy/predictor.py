"""The model side of ``emoflow predict``: load a bundle (or one branch ``model.pt``), decide
how its fusion is applied, and compare tool versions with the ones it was trained with."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from emoflow.branches import BRANCH_STAGE, FACE_BRANCHES, ordered
from emoflow.config import stable_hash
from emoflow.errors import EmoflowError, SpecMismatchError, ToolMissingError
from emoflow.fusion.apply import late_weights
from emoflow.media.ffmpeg import BUNDLED, ffmpeg_version
from emoflow.media.grid import GRID_KEYS, TimeGrid
from emoflow.models.bundle import build_model, load_bundle

log = logging.getLogger("emoflow.deploy.predict")

LATE_WEIGHT_KEYS = ("branches", "categorical", "dimensional")  # late fusion's stored weights


@dataclass
class Branch:
    """One loaded branch model with its bundle."""

    name: str  # a branch of emoflow.branches
    bundle: dict[str, Any]
    model: torch.nn.Module
    others: list[tuple[dict[str, Any], torch.nn.Module]] = field(default_factory=list)

    @property
    def members(self) -> list[tuple[dict[str, Any], torch.nn.Module]]:
        """(bundle, model) of every model whose outputs are averaged (one unless an ensemble)."""
        return [(self.bundle, self.model), *self.others]

    @property
    def spec(self) -> dict[str, Any]:
        return self.bundle["spec"]

    @property
    def spec_hash(self) -> str:
        """The params hash of the shards it was trained on (as in the shard attributes)."""
        return stable_hash(self.spec)


@dataclass(frozen=True)
class FusionPlan:
    """How the branch outputs are combined: the method and the parameters fitted by ``fuse``
    (from the bundle's ``fusion`` and ``fusion_weights``), applied by
    :func:`emoflow.fusion.apply.apply_fusion`."""

    requested: str | None  # the method chosen at training (None: single branch or none set)
    applied: str  # "late" | "stacking" | "feature" | "none" (a single branch)
    params: dict[str, Any] = field(default_factory=dict)
    note: str | None = None

    def describe(self) -> dict[str, Any]:
        """The plan as it goes into the prediction JSON."""
        out: dict[str, Any] = {"requested": self.requested, "applied": self.applied}
        if self.applied == "late":
            names = ordered(self.params.get("branches") or ("audio", "visual"))
            out["weights"] = {
                kind: dict(zip(names, (round(float(w), 6) for w in
                                       late_weights(self.params, kind, names)), strict=True))
                for kind in ("categorical", "dimensional") if kind in self.params
            }  # fmt: skip
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
    mode: str = "single branch model"  # the bundle's mode (refit, fold0)
    warnings: list[str] = field(default_factory=list)
    backend: Any = None  # the face backend, made on first need (see require_backend)
    encoders: dict[str, str | None] = field(default_factory=dict)  # branch -> encoder path
    frames: str | None = None  # time-continuous labels: how windows map to frames (hold, linear)

    def encoder_folder(self, name: str) -> Path:
        """The local encoder folder of an encoder branch (ssl), checked against the weights
        the model was trained on."""
        from emoflow.features.ssl_speech import check_weights

        if name not in self.encoders:
            raise EmoflowError(
                f"the {name} branch needs its encoder folder: predict with the bundle folder "
                "(its bundle.json names the folder), not a single model file"
            )
        folder = Path(self.encoders[name])
        check_weights(folder, self.branches[name].spec)
        return folder

    @property
    def grid(self) -> TimeGrid:
        """The time grid the branch models were trained on (they agree; checked at load)."""
        first = next(iter(self.branches.values()))
        return TimeGrid.of(first.spec)

    def require_backend(self) -> Any:
        """The face backend of the first face branch's spec (visual, face_cnn, au); a
        ToolMissingError with advice if unavailable."""
        if self.backend is None:
            spec = next(self.branches[b].spec for b in FACE_BRANCHES if b in self.branches)
            spec = spec.get("faces", spec)  # face_cnn: the faces spec it builds on
            self.backend = make_face_backend(spec)
            new = backend_warnings(spec, self.backend)
            for w in new:
                log.warning("%s", w)
            self.warnings += new
        return self.backend


def fusion_plan(
    requested: str | None, weights: dict[str, Any] | None, branches: Sequence[str]
) -> FusionPlan:
    """Decide how to fuse from ``bundle.json``'s ``fusion`` and ``fusion_weights`` (pure).

    The stored parameters of the requested method are applied as ``fuse`` applied them (a
    method that could not be fit at training gives the equal-weight average there and here).
    An older bundle without them falls back to late fusion with the stored late weight (0.5
    without one), saying so in ``note``.
    """
    if len(branches) < 2:
        return FusionPlan(requested=None, applied="none", note=f"single branch: {branches[0]}")
    methods = (weights or {}).get("methods", {}) or {}
    late = {k: v for k, v in (methods.get("late") or {}).items() if k in LATE_WEIGHT_KEYS}
    stored = methods.get(requested) if requested else None
    if requested == "late":
        return FusionPlan(requested, "late", params=late)
    if requested == "stacking" and stored is not None:
        return FusionPlan(requested, "stacking", params=stored)
    if (
        requested == "feature"
        and stored is not None
        and (not stored.get("fitted") or "state" in stored)
    ):
        return FusionPlan(requested, "feature", params=stored)
    why = {
        "feature": "the feature-level fusion MLP's parameters are not stored in the bundle "
        "(an older emoflow stored only their hash)",
        "stacking": "the bundle stores no stacking coefficients",
        None: "the bundle names no fusion method",
    }.get(requested, f"unknown fusion method {requested!r}")
    source = "the stored late-fusion weight" if late else "equal weights (0.5)"
    return FusionPlan(
        requested, "late", params=late, note=f"{why}; fell back to late fusion with {source}"
    )


def make_face_backend(spec: dict[str, Any]) -> Any:
    """The face backend named by a faces spec; a clear ToolMissingError when unavailable."""
    from emoflow.faces.backends import make_backend

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


def tool_warnings(spec: dict[str, Any], stage: str, ffmpeg_bin: str = BUNDLED) -> list[str]:
    """Differences between the tool versions a spec records and the local ones."""
    import librosa

    out = _compare(
        f"{stage}: ffmpeg version", spec.get("ffmpeg_version"), ffmpeg_version(ffmpeg_bin)
    )
    if stage == "audio":
        out += _compare("audio: librosa version", spec.get("librosa_version"), librosa.__version__)
    if stage == "ssl":
        import transformers

        out += _compare("ssl: transformers version", spec.get("transformers_version"),
                        transformers.__version__)  # fmt: skip
    if stage == "egemaps":
        import opensmile

        out += _compare("egemaps: opensmile version", spec.get("opensmile_version"),
                        opensmile.__version__)  # fmt: skip
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


def check_spec_versions(branches: dict[str, Branch]) -> None:
    """Refuse models whose specs predate the shared time grid or disagree on it."""
    from emoflow.features.featurize import FEATURE_VERSION

    grids = {}
    for name, b in branches.items():
        stage = BRANCH_STAGE[name]
        version = b.spec.get("feature_version")
        if version != FEATURE_VERSION[stage]:
            raise SpecMismatchError(
                f"the {name} model was trained on {stage} features of version {version!r}; this "
                f"emoflow computes version {FEATURE_VERSION[stage]}: retrain it (rerun the "
                "workflow; snakemake redoes what changed)"
            )
        grid = TimeGrid.of(b.spec).describe()
        grids[name] = {k: grid[k] for k in GRID_KEYS}
    if len({json.dumps(g, sort_keys=True) for g in grids.values()}) > 1:
        raise SpecMismatchError(f"the branch models were trained on different time grids: {grids}")


def _load_branch(path: Path, expect: str | None = None) -> Branch:
    bundle = load_bundle(path)
    branch = bundle["branch"]
    if expect is not None and branch != expect:
        raise SpecMismatchError(f"{path} holds the {branch!r} branch, expected {expect!r}")
    return Branch(branch, bundle, build_model(bundle))


def _load_members(folder: Path, files: str | list[str], expect: str) -> Branch:
    """One branch from one file, or an ensemble from several trained on the same features."""
    names = [files] if isinstance(files, str) else list(files)
    first = _load_branch(folder / names[0], expect)
    for name in names[1:]:
        other = _load_branch(folder / name, expect)
        if other.spec != first.spec or other.bundle["classes"] != first.bundle["classes"]:
            raise SpecMismatchError(f"{folder / name} differs from {names[0]} in spec or classes")
        first.others.append((other.bundle, other.model))
    return first


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
        branches = {b: _load_members(path, files[b], b) for b in BRANCH_STAGE if b in files}
        requested, weights = info.get("fusion"), info.get("fusion_weights")
        mode = str(info.get("mode", "fold0"))
        encoders = dict(info.get("encoders") or {})
        frames = info.get("frames")
    elif path.is_file():
        one = _load_branch(path)
        branches, requested, weights = {one.name: one}, None, None
        mode, encoders, frames = "single branch model", {}, None
    else:
        raise EmoflowError(f"model not found: {given}")
    first = next(iter(branches.values())).bundle
    for b in branches.values():
        if b.bundle["classes"] != first["classes"] or b.bundle["target"] != first["target"]:
            raise SpecMismatchError("the bundle's branch models differ in classes or target")
    check_spec_versions(branches)
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
        mode=mode,
        warnings=warnings,
        encoders=encoders,
        frames=frames,
    )
