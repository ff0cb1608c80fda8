"""Per-clip, content-addressed cache: (sha256 of the clip's bytes, hash of the stage's spec).

The spec includes the stage's feature code version (:data:`emoflow.featurize.FEATURE_VERSION`),
so a change of the featurizer code that bumps it is never served old results.

Layout: ``<cache dir>/<stage>/<params hash>/<sha[:2]>/<sha>.npz`` for results and
``<sha>.fail.json`` for failures that would repeat (a corrupt file stays corrupt; see
:data:`emoflow.errors.DETERMINISTIC_KINDS`). Entries are
written atomically, so concurrent shard jobs and killed runs never leave a half entry; two
jobs writing the same key write the same bytes.
"""

from __future__ import annotations

import io
import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from emoflow.atomic import write_bytes, write_text
from emoflow.errors import DETERMINISTIC_KINDS, ClipError


class ClipCache:
    """Cache of one stage's per-clip results under one parameter hash."""

    def __init__(self, root: str | Path, stage: str, params_hash: str) -> None:
        self.dir = Path(root) / stage / params_hash

    def _base(self, sha256: str) -> Path:
        return self.dir / sha256[:2] / sha256

    def has(self, sha256: str) -> bool:
        """Whether a result or a remembered failure is cached (cheap: no file is read)."""
        base = self._base(sha256)
        return base.with_suffix(".npz").exists() or base.with_suffix(".fail.json").exists()

    def get(self, sha256: str, record_type: type) -> Any | ClipError | None:
        """The cached record (a ``record_type`` dataclass), a cached ClipError, or None."""
        base = self._base(sha256)
        npz = base.with_suffix(".npz")
        if npz.exists():
            try:
                with np.load(npz, allow_pickle=False) as data:
                    values = {f.name: data[f.name] for f in fields(record_type) if f.name in data}
            except (OSError, ValueError, KeyError):
                return None  # unreadable entry: recompute
            kwargs = {}
            for f in fields(record_type):
                v = values.get(f.name)
                kwargs[f.name] = v.item() if v is not None and v.ndim == 0 else v
            kwargs["clip_id"] = None
            return record_type(**kwargs)
        fail = base.with_suffix(".fail.json")
        if fail.exists():
            try:
                data = json.loads(fail.read_text("utf-8"))
                return ClipError(data["kind"], data["message"])
            except (OSError, ValueError, KeyError):
                return None
        return None

    def put(self, sha256: str, result: Any | ClipError) -> None:
        """Store a record or a deterministic failure (others are retried next run)."""
        base = self._base(sha256)
        if isinstance(result, ClipError):
            if result.kind in DETERMINISTIC_KINDS:
                text = json.dumps({"kind": result.kind, "message": result.message}, sort_keys=True)
                write_text(base.with_suffix(".fail.json"), text)
            return
        arrays = {
            f.name: np.asarray(getattr(result, f.name))
            for f in fields(result)
            if f.name != "clip_id" and getattr(result, f.name) is not None
        }
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        write_bytes(base.with_suffix(".npz"), buf.getvalue())
