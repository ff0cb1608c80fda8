"""The face backend interface and the factory that builds the configured backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from emoflow.errors import ClipError
from emoflow.faces.result import FaceResult


class FaceBackend(Protocol):
    """What the shard extraction needs from a face backend."""

    name: str
    au_names: list[str]
    streams: bool  # True: cheap per call (frames go in chunks); False: batch whole clips

    def versions(self) -> dict[str, str]:
        """Provenance that also goes into the parameter hash."""
        ...

    def process(
        self, clips: list[tuple[str, np.ndarray]], workdir: Path
    ) -> dict[str, FaceResult | ClipError]:
        """Faces of each clip's frames (K, H, W, 3) uint8 RGB; a ClipError for a failed clip.

        A streaming backend also takes ``prev_boxes`` (clip id -> the box chosen in the frame
        before these), so a clip's chunks choose faces as one sequence would.
        """
        ...


def make_backend(faces_cfg: dict[str, Any]) -> FaceBackend:
    """Build the backend named by the config's ``faces`` section.

    Raises ToolMissingError with a clear message when the backend's tool or model is missing
    (OpenFace binary not set, not found, not executable; model file not found relative to the
    binary's folder; dlib model package absent).
    """
    backend = faces_cfg.get("backend", "embedded")
    size = int(faces_cfg.get("size", 112))
    scale = float(faces_cfg.get("scale", 0.7))
    if backend == "embedded":
        from emoflow.faces.embedded import EmbeddedBackend

        return EmbeddedBackend(
            size=size,
            scale=scale,
            upsample=int(faces_cfg.get("upsample", 0)),
            select=str(faces_cfg.get("select", "track")),
        )
    if backend == "openface":
        from emoflow.faces.openface import OpenFaceBackend, resolve_binary

        of = faces_cfg.get("openface", {}) or {}
        model = of.get("model", "model/main_clnf_general.txt")
        binary, model_path = resolve_binary(of.get("bin"), model)
        return OpenFaceBackend(
            binary,
            model,
            model_path=model_path,
            size=size,
            scale=scale,
            au_static=bool(of.get("au_static", True)),
            timeout_s=float(of.get("timeout_s", 600)),
            batch=int(of.get("batch", 32)),
        )
    raise ValueError(f"unknown face backend {backend!r} (expected embedded or openface)")
