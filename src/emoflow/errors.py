"""Typed errors and the documented list of failure kinds.

Every clip that cannot be processed by a stage gets one row in ``failures.parquet``
(clip_id, stage, kind, message); ``kind`` is one of :data:`FAILURE_KINDS`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

FAILURE_KINDS: dict[str, str] = {
    "unreadable": "ffmpeg could not open or decode the file (empty, truncated, not a media file)",
    "no_audio": "the file has no audio stream",
    "silent_audio": "the audio track is digital silence (below audio.silence_dbfs): the clip is "
    "treated as having no audio",
    "no_video": "the file has no video stream",
    "too_short": "the clip is too short to give one frame or any audio",
    "no_face": "no face was found in any sampled frame",
    "truncated": "the file decodes much shorter than it declares (cut off or damaged)",
    "internal_error": "emoflow itself failed on the clip (a bug: the log has the traceback; "
    "it is retried on the next run)",
    "tool_crash": "an external tool crashed or produced no usable output",
    "tool_timeout": "an external tool ran past its time limit",
    "tool_missing": "an external tool or its model file is not available",
    "unsupported": "the configured tool cannot do what the clip needs (e.g. the OpenFace backend "
    "cannot follow one person of a two-person video)",
    "bad_label": "the label is missing or not one of the allowed labels",
    "label_dropped": "the corpus's label map drops the label (map: {label: null})",
    "outside_root": "the path resolves outside the dataset root",
    "duplicate_id": "two files map to the same clip id",
    "not_found": "the file listed in the labels table does not exist",
    "symlink_loop": "a symbolic link points to itself or to a folder above it",
}


# Failures that the same bytes and the same code always give again: remembered by the per-clip
# cache. Anything else (a crash, a timeout, a missing tool, an internal error) is retried.
DETERMINISTIC_KINDS = frozenset(
    {"unreadable", "no_audio", "silent_audio", "no_video", "no_face", "too_short", "truncated"}
)


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


def internal_error(exc: BaseException, clip_id: str = "") -> ClipError:
    """An unexpected exception inside emoflow as an ``internal_error`` failure of one clip.

    The traceback goes to the log (the shard job's log file); the failure is never cached, so
    the clip is computed again on the next run once the bug is fixed.
    """
    import logging
    import traceback

    detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    logging.getLogger("emoflow").error(
        "internal error on %s:\n%s", clip_id or "a clip",
        "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
    )  # fmt: skip
    return ClipError("internal_error", f"emoflow failed on the clip ({detail}); see the log")
