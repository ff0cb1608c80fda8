"""Per-clip, content-addressed cache: (sha256 of the clip's bytes, hash of the stage's spec).

The spec includes the stage's feature code version
(:data:`emoflow.features.featurize.FEATURE_VERSION`) and its storage layout, so a change of the
featurizer code that bumps it is never served old results.

Layout: ``<cache dir>/<stage>/<params hash>/<sha[:2]>/<sha>.h5`` for results and ``<sha>.fail.json``
for failures that would repeat (a corrupt file stays corrupt; see
:data:`emoflow.errors.DETERMINISTIC_KINDS`). A result is a one-clip shard
(:func:`emoflow.storage.shard_write.write_entry`): the clip encoded once, in the shard's storage, so
a shard job moves its stored chunks into the shard without decoding them. Entries are written
atomically, so concurrent shard jobs and killed runs never leave a half entry; two jobs writing the
same key write the same bytes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py

from emoflow.errors import DETERMINISTIC_KINDS, ClipError
from emoflow.storage.atomic import write_text
from emoflow.storage.shard_write import write_entry
from emoflow.storage.shards import FORMAT, FORMAT_VERSION, ShardReader


class ClipCache:
    """Cache of one stage's per-clip results under one parameter hash.

    ``spec`` and ``versions`` go into each entry's attributes (an entry explains itself like a
    shard)."""

    def __init__(
        self,
        root: str | Path,
        stage: str,
        params_hash: str,
        spec: dict[str, Any] | None = None,
        versions: dict[str, Any] | None = None,
    ) -> None:
        self.dir = Path(root) / stage / params_hash
        self.stage = stage
        self.spec = spec or {}
        self.versions = versions or {}

    def _base(self, sha256: str) -> Path:
        return self.dir / sha256[:2] / sha256

    def has(self, sha256: str) -> bool:
        """Whether a result or a remembered failure is cached (cheap: no file is read)."""
        base = self._base(sha256)
        return base.with_suffix(".h5").exists() or base.with_suffix(".fail.json").exists()

    def lookup(self, sha256: str) -> Path | ClipError | None:
        """The entry file of a cached result (checked to open as an entry of this stage), a
        cached ClipError, or None (absent or unreadable: recompute)."""
        base = self._base(sha256)
        entry = base.with_suffix(".h5")
        if entry.exists():
            try:
                with h5py.File(entry, "r", locking=False) as h5:
                    ok = (h5.attrs.get("format"), h5.attrs.get("format_version"),
                          h5.attrs.get("kind")) == (FORMAT, FORMAT_VERSION, self.stage)  # fmt: skip
            except (OSError, ValueError, KeyError):
                return None  # unreadable entry: recompute
            return entry if ok else None
        fail = base.with_suffix(".fail.json")
        if fail.exists():
            try:
                data = json.loads(fail.read_text("utf-8"))
                return ClipError(data["kind"], data["message"])
            except (OSError, ValueError, KeyError):
                return None
        return None

    def get(self, sha256: str, record_type: type | None = None) -> Any | ClipError | None:
        """The cached record (clip_id None), a cached ClipError, or None."""
        got = self.lookup(sha256)
        if not isinstance(got, Path):
            return got
        with ShardReader(got) as reader:
            rec = reader.get("")
        rec.clip_id = None
        return rec

    def put(self, sha256: str, result: Any | ClipError) -> int:
        """Store a record or a deterministic failure (others are retried next run); return the
        bytes of the entry written (0 for a failure)."""
        base = self._base(sha256)
        if isinstance(result, ClipError):
            if result.kind in DETERMINISTIC_KINDS:
                text = json.dumps({"kind": result.kind, "message": result.message}, sort_keys=True)
                write_text(base.with_suffix(".fail.json"), text)
            return 0
        return write_entry(base.with_suffix(".h5"), self.stage, self.spec, self.versions, result)
