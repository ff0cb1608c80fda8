"""HDF5 feature shards: the layout, its storage choices, and a validating reader.

Layout of an audio shard (``results/<name>/audio/<k>.h5``)::

    clip_id          (C,)            str    sorted clip ids clip_duration_s  (C,)            f8
    decoded audio duration clip_padded      (C,)            bool   shorter than one window:
    zero-padded clip_window0     (C,)            i8     index of the clip's first window
    clip_nwindows    (C,)            i8     number of windows of the clip logmel           (W,
    n_mels, T)  f4/f2  log-mel windows, one window per chunk mfcc             (W, n_mfcc, T)  f4/f2
    one window per chunk window_clip      (W,)            i8     index into clip_id window_start_s
    (W,)            f8

Layout of a window-vector shard (``results/<name>/<kind>/<k>.h5``, kinds
:data:`VECTOR_KINDS`: eGeMAPS functionals, self-supervised speech embeddings): the clip table
as above, and::

    vectors          (W, D)          f4     one vector per window (eGeMAPS: D = 88) window_clip
    (W,)            i8 window_start_s   (W,)            f8

Layout of a face shard (``results/<name>/faces/<k>.h5``): each clip's frame sequence at the
grid's fixed rate, stored once; a window's frames are ``frames`` samples from its first one::

    clip_id          (C,)               str clip_duration_s  (C,)               f8     the video's
    duration clip_padded      (C,)               bool   shorter than one window clip_frame0
    (C,)               i8     index of the clip's first frame clip_nframes     (C,)               i8
    clip_window0     (C,)               i8     index of the clip's first window clip_nwindows
    (C,)               i8 faces            (F, S, S, 3)       u1     aligned RGB crops (zeros where
    mask is False), one frame per chunk mask             (F,)               bool   a face was found
    in the frame landmarks        (F, 68, 2)         f4     in the sampled frame's pixels
    frame_time_s     (F,)               f8 frame_clip       (F,)               i8     index into
    clip_id n_faces          (F,)               i2 confidence       (F,)               f4 au
    (F, A)             f4     only when the backend gives AUs (attr au_names) pose             (F,
    6)             f4     only when the backend gives pose gaze             (F, 8)             f4
    only when the backend gives gaze (OpenFace's gaze_0_xyz, gaze_1_xyz, gaze_angle_x/y) boxes
    (F, 4)             f4     x0, y0, x1, y1 of the aligned face in the sampled frame's pixels
    (faces.select), NaN where none window_start_s   (W,)               f8 window_frame0    (W,)
    i8     first frame of the window, relative to its clip window_clip      (W,)               i8

Layout of a frame-vector shard (``results/<name>/face_cnn/<k>.h5``): the face shard's clip
table and window datasets, and per frame of the clip's frame sequence (the faces stage's)::

    vectors          (F, D)             f4     the frozen face encoder's outputs per frame (zeros
                                               where mask is False) mask             (F,)
                                               bool frame_time_s     (F,)               f8
                                               frame_clip       (F,)               i8

Storage (:data:`ROW_CHUNKED`, recorded in the spec as ``storage``): the large datasets hold one row
(a window, a frame) per chunk, so a chunk never mixes clips and a shard is rebuilt by copying each
clip's stored chunks unchanged (:mod:`emoflow.storage.shard_write`); every other dataset is small,
contiguous and uncompressed. Compression was chosen by measurement (``bench/shard_layout.py``): gzip
4 + shuffle for log-mel and MFCC (63 % / 72 % of raw, 0.25 ms per clip to decode), none for face
crops (gzip saves 12 % of them but costs 3.7 ms per clip on every training read, against 0.2 ms
uncompressed).

Root attributes: ``format`` ("emoflow-shard"), ``format_version``, ``kind`` ("audio", "faces",
or a vector kind), ``spec`` (JSON of the extraction parameters), ``spec_hash``, ``emoflow_version``,
``tool_versions`` (JSON). A shard explains itself with plain ``h5dump -A``. A per-clip cache
entry is a one-clip shard of this same layout (its clip id is empty).
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from emoflow.config import stable_hash
from emoflow.errors import SpecMismatchError

FORMAT = "emoflow-shard"
FORMAT_VERSION = 3  # 2: faces as frame sequences on the time grid; 3: one row per chunk
VECTOR_KINDS = ("egemaps", "ssl")
FRAME_KINDS = ("faces", "face_cnn")  # kinds stored per frame of the clip's frame sequence
KINDS = ("audio", "faces", *VECTOR_KINDS, "face_cnn")
_GZIP = {"compression": "gzip", "compression_opts": 4, "shuffle": True}
ROW_CHUNKED: dict[str, dict[str, dict[str, Any]]] = {
    "audio": {"logmel": _GZIP, "mfcc": _GZIP},
    "faces": {"faces": {}},
    **{kind: {} for kind in VECTOR_KINDS},
    "face_cnn": {},
}
"""Per shard kind: the datasets stored one row per chunk, and their HDF5 filters."""
FRAME_FIELDS = ("faces", "mask", "landmarks", "frame_time_s", "n_faces", "confidence", "au",
                "pose", "boxes", "gaze")  # fmt: skip
"""The per-frame arrays of a face record (and datasets of a face shard)."""


def storage_spec(kind: str) -> dict[str, Any]:
    """How a shard kind is stored (part of the stage's spec, so a shard says how it is laid out)."""
    chunked = {name: {"chunk_rows": 1, **filters} for name, filters in ROW_CHUNKED[kind].items()}
    return {"row_chunked": chunked, "other_datasets": "contiguous, uncompressed"}


# Shards are read-only once renamed; cluster file systems may refuse HDF5 file locks.
os.environ.setdefault("HDF5_USE_FILE_LOCKING", "FALSE")


@dataclass
class AudioClipFeatures:
    """All audio windows of one clip."""

    clip_id: str
    logmel: np.ndarray  # (W, n_mels, T)
    mfcc: np.ndarray  # (W, n_mfcc, T)
    window_start_s: np.ndarray  # (W,)
    duration_s: float
    padded: bool


@dataclass
class VectorClipFeatures:
    """One vector per window of one clip (eGeMAPS functionals, SSL embeddings)."""

    clip_id: str
    vectors: np.ndarray  # (W, D) float32
    window_start_s: np.ndarray  # (W,)
    duration_s: float
    padded: bool


@dataclass
class FaceClipFeatures:
    """A clip's face frames at the grid's fixed rate, and its windows."""

    clip_id: str
    faces: np.ndarray  # (F, S, S, 3) uint8
    mask: np.ndarray  # (F,) bool
    landmarks: np.ndarray  # (F, 68, 2) float32
    frame_time_s: np.ndarray  # (F,)
    n_faces: np.ndarray  # (F,) int16
    confidence: np.ndarray  # (F,) float32
    window_start_s: np.ndarray  # (W,)
    window_frame0: np.ndarray  # (W,) first frame of each window
    duration_s: float
    padded: bool
    au: np.ndarray | None = None  # (F, A)
    pose: np.ndarray | None = None  # (F, 6)
    boxes: np.ndarray | None = None  # (F, 4) chosen face box, NaN where none
    gaze: np.ndarray | None = None  # (F, 8) OpenFace gaze vectors and angles


@dataclass
class FrameVectorClipFeatures:
    """One vector per face frame of one clip (the face_cnn stage), and its windows."""

    clip_id: str
    vectors: np.ndarray  # (F, D) float32
    mask: np.ndarray  # (F,) bool
    frame_time_s: np.ndarray  # (F,)
    window_start_s: np.ndarray  # (W,)
    window_frame0: np.ndarray  # (W,)
    duration_s: float
    padded: bool


ClipFeatures = AudioClipFeatures | VectorClipFeatures | FaceClipFeatures | FrameVectorClipFeatures


def spec_hash(spec: dict[str, Any]) -> str:
    """The hash recorded next to a spec (same function as the per-clip cache key)."""
    return stable_hash(spec)


def h5_col(h5: h5py.File, name: str) -> np.ndarray:
    """A whole (small, per-clip) dataset as an array."""
    return h5[name][()]


def spec_diff(stored: dict[str, Any], expected: dict[str, Any], prefix: str = "") -> list[str]:
    """Keys whose values differ between two (nested) specs, as dotted paths."""
    diffs = []
    for key in sorted(set(stored) | set(expected)):
        a, b = stored.get(key, "<missing>"), expected.get(key, "<missing>")
        if isinstance(a, dict) and isinstance(b, dict):
            diffs += spec_diff(a, b, f"{prefix}{key}.")
        elif a != b:
            diffs.append(f"{prefix}{key}: shard has {a!r}, config wants {b!r}")
    return diffs


class ShardReader:
    """One shard, opened read-only; ``get(clip_id)`` returns that clip's arrays."""

    def __init__(self, path: str | os.PathLike[str], expected_spec: dict | None = None) -> None:
        self.path = Path(path)
        self._h5 = h5py.File(self.path, "r", locking=False)
        attrs = self._h5.attrs
        if attrs.get("format") != FORMAT:
            raise SpecMismatchError(f"{self.path} is not an emoflow feature shard")
        if int(attrs.get("format_version", 0)) != FORMAT_VERSION:
            raise SpecMismatchError(
                f"{self.path} has shard format version {attrs.get('format_version')}, this emoflow "
                f"reads version {FORMAT_VERSION} (faces as frame sequences on one time grid, "
                "large datasets one row per chunk); "
                "rebuild it: snakemake reruns the extraction"
            )
        self.kind = str(attrs["kind"])
        self.spec: dict[str, Any] = json.loads(attrs["spec"])
        self.spec_hash = str(attrs["spec_hash"])
        self.tool_versions: dict[str, Any] = json.loads(attrs["tool_versions"])
        if expected_spec is not None and spec_hash(expected_spec) != self.spec_hash:
            diffs = "; ".join(spec_diff(self.spec, expected_spec)) or "spec hash differs"
            raise SpecMismatchError(
                f"{self.path} was extracted with other parameters than the current config "
                f"({diffs}); rebuild it (snakemake reruns it when params change) or delete it"
            )
        self.clip_ids: list[str] = [c.decode() for c in self._h5["clip_id"][()]]
        self._index = {c: i for i, c in enumerate(self.clip_ids)}
        self._window0 = h5_col(self._h5, "clip_window0")
        self._nwin = h5_col(self._h5, "clip_nwindows")
        if self.kind in FRAME_KINDS:
            self._frame0 = h5_col(self._h5, "clip_frame0")
            self._nframes = h5_col(self._h5, "clip_nframes")

    def __contains__(self, clip_id: object) -> bool:
        return clip_id in self._index

    def __len__(self) -> int:
        return len(self.clip_ids)

    def get(self, clip_id: str, fields: Collection[str] | None = None) -> ClipFeatures:
        """The arrays of one clip (KeyError if the clip is not in this shard); of a face
        shard's per-frame arrays only ``fields`` when given (the others are None)."""
        i = self._index[clip_id]
        h5 = self._h5
        a, n = int(self._window0[i]), int(self._nwin[i])
        common = {
            "clip_id": clip_id,
            "window_start_s": h5["window_start_s"][a : a + n],
            "duration_s": float(h5["clip_duration_s"][i]),
            "padded": bool(h5["clip_padded"][i]),
        }
        if self.kind == "audio":
            return AudioClipFeatures(
                logmel=h5["logmel"][a : a + n], mfcc=h5["mfcc"][a : a + n], **common
            )
        if self.kind in VECTOR_KINDS:
            return VectorClipFeatures(vectors=h5["vectors"][a : a + n], **common)
        f0, nf = int(self._frame0[i]), int(self._nframes[i])
        if self.kind == "face_cnn":
            return FrameVectorClipFeatures(
                vectors=h5["vectors"][f0 : f0 + nf], mask=h5["mask"][f0 : f0 + nf],
                frame_time_s=h5["frame_time_s"][f0 : f0 + nf],
                window_frame0=h5["window_frame0"][a : a + n], **common,
            )  # fmt: skip
        frames = {
            name: h5[name][f0 : f0 + nf] if name in h5 and (fields is None or name in fields)
            else None
            for name in FRAME_FIELDS
        }  # fmt: skip
        return FaceClipFeatures(window_frame0=h5["window_frame0"][a : a + n], **frames, **common)

    def window_starts(self, clip_id: str) -> np.ndarray:
        """The start times (s) of a clip's windows, without reading its features."""
        i = self._index[clip_id]
        a, n = int(self._window0[i]), int(self._nwin[i])
        return self._h5["window_start_s"][a : a + n]

    def close(self) -> None:
        """Close the HDF5 file."""
        self._h5.close()

    def __enter__(self) -> ShardReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ShardSet:
    """Several shards of one kind seen as one mapping clip_id -> features.

    Files are opened lazily and re-opened after pickling, so a ShardSet can be handed to
    DataLoader workers or dask processes.
    """

    def __init__(self, paths: list[Path], kind: str, expected_spec: dict | None = None) -> None:
        self.paths = [Path(p) for p in sorted(paths)]
        self.kind = kind
        self.expected_spec = expected_spec
        self._readers: list[ShardReader] | None = None
        self._owner: dict[str, int] = {}
        readers = self._open()
        self.spec: dict[str, Any] = readers[0].spec if readers else {}
        self.clip_ids: list[str] = sorted(self._owner)

    def _open(self) -> list[ShardReader]:
        if self._readers is None:
            self._readers = [ShardReader(p, self.expected_spec) for p in self.paths]
            specs = {r.spec_hash for r in self._readers}
            if len(specs) > 1:
                raise SpecMismatchError(
                    f"the {self.kind} shards were extracted with different parameters: "
                    + ", ".join(f"{r.path.name}={r.spec_hash}" for r in self._readers)
                )
            for i, reader in enumerate(self._readers):
                if reader.kind != self.kind:
                    raise SpecMismatchError(f"{reader.path} is a {reader.kind} shard")
                for clip_id in reader.clip_ids:
                    self._owner[clip_id] = i
        return self._readers

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_readers"] = None
        return state

    def __contains__(self, clip_id: object) -> bool:
        return clip_id in self._owner

    def __len__(self) -> int:
        return len(self.clip_ids)

    def __iter__(self) -> Iterator[str]:
        return iter(self.clip_ids)

    def get(self, clip_id: str, fields: Collection[str] | None = None) -> ClipFeatures:
        """The arrays of one clip, from whichever shard holds it (see :meth:`ShardReader.get`)."""
        return self._open()[self._owner[clip_id]].get(clip_id, fields)

    def window_starts(self, clip_id: str) -> np.ndarray:
        """The start times (s) of a clip's windows (see :meth:`ShardReader.window_starts`)."""
        return self._open()[self._owner[clip_id]].window_starts(clip_id)

    def close(self) -> None:
        """Close every open file."""
        for reader in self._readers or []:
            reader.close()
        self._readers = None


def open_shards(
    paths: list[Path], kind: str, expected_spec: dict[str, Any] | None = None
) -> ShardSet:
    """Open the shards of one kind; with ``expected_spec`` reject shards made otherwise."""
    return ShardSet(list(paths), kind, expected_spec)
