"""Typed errors and the documented list of failure kinds.

Every clip that cannot be processed by a stage gets one row in ``failures.parquet``
(clip_id, stage, kind, message); ``kind`` is one of :data:`FAILURE_KINDS`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

FAILURE_KINDS: dict[str, str] = {
    "unreadable": "ffmpeg could not open or decode the file (empty, truncated, not a media file)",
    "no_audio": "the file has no audio stream",
    "no_video": "the file has no video stream",
    "too_short": "the clip is too short to give one frame or any audio",
    "no_face": "no face was found in any sampled frame",
    "tool_crash": "an external tool crashed or produced no usable output",
    "tool_timeout": "an external tool ran past its time limit",
    "tool_missing": "an external tool or its model file is not available",
    "bad_label": "the label is missing or not one of the allowed labels",
    "outside_root": "the path resolves outside the dataset root",
    "duplicate_id": "two files map to the same clip id",
    "not_found": "the file listed in the labels table does not exist",
    "symlink_loop": "a symbolic link points to itself or to a folder above it",
}


@dataclass(frozen=True)
class Failure:
    """One failure row: which clip, which stage, what kind, and a message for a person."""

    clip_id: str
    stage: str
    kind: str
    message: str

    def __post_init__(self) -> None:
        if self.kind not in FAILURE_KINDS:
            raise ValueError(f"unknown failure kind {self.kind!r}")

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


class EmoflowError(Exception):
    """Base class of emoflow's own errors."""


class ConfigError(EmoflowError):
    """The configuration is invalid; the message names the offending key."""


class ClipError(EmoflowError):
    """A clip cannot be processed by a stage; carries a failure kind from FAILURE_KINDS."""

    def __init__(self, kind: str, message: str) -> None:
        if kind not in FAILURE_KINDS:
            raise ValueError(f"unknown failure kind {kind!r}")
        super().__init__(message)
        self.kind = kind
        self.message = message

    def __reduce__(self) -> tuple:  # picklable across worker processes
        return (ClipError, (self.kind, self.message))


class ToolMissingError(EmoflowError):
    """An external tool (ffmpeg, OpenFace) is not installed or not where the config says."""


class SpecMismatchError(EmoflowError):
    """An HDF5 shard or model bundle was made with other parameters than the current ones."""
