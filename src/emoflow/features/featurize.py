"""The one featurizer: a media file -> its audio windows and its face frames on the time grid.

The extraction stages (:mod:`emoflow.extraction.shard_job`) and ``emoflow predict`` both call
:func:`audio_features`, :func:`egemaps_features`, :func:`ssl_features` and
:func:`face_features`; nothing else decodes or windows a clip (the three audio-based stages
share :func:`_stream_windows`; training's noise augmentation cuts :func:`audio_track` with
:func:`track_windows`, the same windows).

- Audio: decoded once (mono, spec's rate), cut into the grid's windows as it decodes, each
  window's log-mel floored on its own (:func:`emoflow.features.audio.logmel_mfcc`), so a clip's
  features never depend on what else is computed with it.
- Faces: sampled at the grid's fixed rate along the whole clip in one streaming ffmpeg pass; a
  streaming backend (embedded) aligns each chunk of decoded frames as it arrives; a batching
  backend (OpenFace) gets a batch's clips in one call, their frames written to disk as they
  decode. A sample time with no decoded frame is masked, never filled with a copy of another
  frame.
- Memory stays flat with a clip's length: log-mel windows and face crops go to a
  :class:`~emoflow.storage.row_spool.RowSpool` (a temp file) as they are computed; the cache
  entry and ``predict`` read them back a block at a time.
- Both check truncation: a stream that decodes much shorter than the file declares fails as
  ``truncated`` (see :func:`emoflow.media.ffmpeg.check_truncation`).

:data:`FEATURE_VERSION` is part of each stage's spec, hence of the per-clip cache key and of the
shard's spec: bump a stage's number whenever a change of code changes its features (the golden
test in ``tests/test_featurize.py`` fails until you do).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from emoflow.errors import ClipError, internal_error
from emoflow.faces.openface import frame_folder, write_frames
from emoflow.faces.result import FaceResult, FaceResultBuilder
from emoflow.features.audio import Windows, cut_windows, logmel_mfcc, rms_dbfs, silence_error
from emoflow.features.track_windows import TrackWindows
from emoflow.media.ffmpeg import (
    MEDIA_DEFAULTS,
    FrameStream,
    MediaInfo,
    SampledFrames,
    audio_blocks,
    check_truncation,
    decode_audio,
    probe,
)
from emoflow.media.grid import TimeGrid
from emoflow.storage.row_spool import RowSpool
from emoflow.storage.shards import AudioClipFeatures, FaceClipFeatures, VectorClipFeatures

FEATURE_VERSION = {"audio": 2, "faces": 5, "egemaps": 1, "ssl": 2, "face_cnn": 2}
"""Per-stage version of the feature code (in the spec, the cache key and the shards). ssl and
face_cnn 2: torch on the AVX2 kernels of :mod:`emoflow.numerics`; faces 5: the embedded
backend tracks landmarks from frame to frame."""
CHUNK_FRAMES = 32  # decoded full frames held at once by a streaming face backend
LOGMEL_GROUP = 4  # windows per log-mel call: 4 were the fastest and hold 3.5 MiB (16: 5.6)


def media_settings(media: dict[str, Any] | None, spec: dict[str, Any]) -> dict[str, Any]:
    """The media settings a stage decodes with: the defaults, the config's, the spec's
    truncation tolerances."""
    # the spec's truncation tolerances win: predict applies the ones the model was trained with
    return {**MEDIA_DEFAULTS, **(media or {}), **spec.get("truncation", {})}


def _probe(path: str | Path, media: dict[str, Any], info: MediaInfo | None) -> MediaInfo:
    return info or probe(path, media["ffprobe"], media["timeout_s"])


def audio_track(
    path: str | Path,
    spec: dict[str, Any],
    media: dict[str, Any] | None = None,
    info: MediaInfo | None = None,
) -> np.ndarray:
    """A clip's decoded track (mono, spec's rate; truncation and silence checked): what
    :func:`track_windows` cuts, and what training's noise augmentation mixes into."""
    media = media_settings(media, spec)
    info = _probe(path, media, info)
    sr = int(spec["sample_rate"])
    samples = decode_audio(path, sr, media["ffmpeg"], media["timeout_s"], info)
    _check_track(len(samples) / sr, rms_dbfs(samples), info, media, spec)
    return samples


def track_windows(samples: np.ndarray, spec: dict[str, Any]) -> Windows:
    """A decoded track cut into the grid's windows."""
    sr = int(spec["sample_rate"])
    return cut_windows(samples, sr, spec["window_s"], spec["hop_s"], spec["last_window"])


def window_logmel(
    segments: np.ndarray | Sequence[np.ndarray], spec: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray]:
    """Log-mel and MFCC of windows as the audio stage computes them (one BLAS thread)."""
    # One BLAS thread: float sums then do not depend on how many threads a process has.
    with threadpool_limits(limits=1):
        return logmel_mfcc(segments, spec)


def audio_features(
    path: str | Path,
    spec: dict[str, Any],
    media: dict[str, Any] | None = None,
    info: MediaInfo | None = None,
) -> AudioClipFeatures:
    """A clip's audio windows: log-mel and MFCC per grid window (clip_id left empty), each
    window's put in a :class:`RowSpool` as it is computed (:func:`_stream_windows`)."""
    spools: list[RowSpool] = []

    def compute(windows: list[np.ndarray]) -> None:
        nonlocal spools
        got = window_logmel(windows, spec)
        spools = spools or [RowSpool(a.shape[1:], a.dtype) for a in got]
        for spool, rows in zip(spools, got, strict=True):
            spool.append(rows)

    cut = _stream_windows(path, spec, media, info, LOGMEL_GROUP, compute)
    sr = int(spec["sample_rate"])
    return AudioClipFeatures(
        clip_id="",
        logmel=spools[0],
        mfcc=spools[1],
        window_start_s=cut.starts / sr,
        duration_s=cut.n_samples / sr,
        padded=cut.n_samples < cut.win,
    )


def _stream_windows(
    path: str | Path, spec: dict[str, Any], media: dict[str, Any] | None,
    info: MediaInfo | None, group: int, compute: Callable[[list[np.ndarray]], None],
) -> TrackWindows:  # fmt: skip
    """Cut a clip's track into the grid's windows as it decodes (:class:`TrackWindows`) and
    pass them to ``compute``, ``group`` at a time in order, so memory stays flat with the
    clip's length; then check truncation and silence, as :func:`audio_track` does. Returns
    the cut (its window starts and the track's length)."""
    media = media_settings(media, spec)
    info = _probe(path, media, info)
    sr = int(spec["sample_rate"])
    cut = TrackWindows(sr, spec["window_s"], spec["hop_s"], spec["last_window"])
    pending: list[np.ndarray] = []
    for window in cut.windows(audio_blocks(path, sr, media["ffmpeg"], media["timeout_s"], info)):
        pending.append(window)  # a view of a buffer the cut never writes to again
        if len(pending) == group:
            compute(pending)
            pending = []
    if pending:
        compute(pending)
    _check_track(cut.n_samples / sr, cut.power.dbfs(), info, media, spec)
    return cut


def _check_track(
    decoded_s: float, level_dbfs: float, info: MediaInfo, media: dict[str, Any], spec: dict
) -> None:
    """The truncation, then the silence check of a decoded track."""
    declared = info.audio_duration_s or info.duration_s
    if declared:
        check_truncation("audio", decoded_s, declared, media)
    error = silence_error(level_dbfs, spec.get("silence_dbfs"))
    if error is not None:
        raise error


def _window_vectors(
    path: str | Path, spec: dict[str, Any], media: dict[str, Any] | None,
    info: MediaInfo | None, vectors_of: Any, group: int,
) -> VectorClipFeatures:  # fmt: skip
    """The audio stage's windows of a clip, ``group`` at a time turned into vectors by
    ``vectors_of`` as the track decodes."""
    parts: list[np.ndarray] = []
    cut = _stream_windows(path, spec, media, info, group,
                         lambda windows: parts.append(vectors_of(np.stack(windows))))  # fmt: skip
    sr = int(spec["sample_rate"])
    return VectorClipFeatures(
        clip_id="",
        vectors=np.concatenate(parts),
        window_start_s=cut.starts / sr,
        duration_s=cut.n_samples / sr,
        padded=cut.n_samples < cut.win,
    )


def ssl_features(
    path: str | Path,
    spec: dict[str, Any],
    media: dict[str, Any] | None = None,
    info: MediaInfo | None = None,
    *,
    folder: Path,
    device: str = "cpu",
) -> VectorClipFeatures:
    """A clip's self-supervised encoder embeddings per grid window (the audio stage's
    windows; ``folder`` holds the encoder the spec names)."""
    from emoflow.features.ssl_speech import embeddings

    # whole encoder batches, as embeddings() cuts them: the same sums however the track comes
    return _window_vectors(path, spec, media, info,
                           lambda segments: embeddings(segments, spec, folder, device),
                           int(spec["batch_windows"]))  # fmt: skip


def egemaps_features(
    path: str | Path,
    spec: dict[str, Any],
    media: dict[str, Any] | None = None,
    info: MediaInfo | None = None,
) -> VectorClipFeatures:
    """A clip's eGeMAPS functionals per grid window (the audio stage's windows)."""
    from emoflow.features.egemaps import functionals

    return _window_vectors(path, spec, media, info,
                           lambda segments: functionals(segments, spec), 16)  # fmt: skip


def _face_record(
    res: FaceResult, pick: np.ndarray, decoded_t: np.ndarray, times: np.ndarray,
    grid: TimeGrid, duration_s: float,
) -> FaceClipFeatures:  # fmt: skip
    """Spread the decoded frames' faces over the sample times (missing samples masked)."""
    have = pick >= 0
    idx = np.where(have, pick, 0)
    # every sample time has its own decoded frame, in order (the usual case): no copy
    identity = bool(have.all()) and np.array_equal(pick, np.arange(len(pick)))

    def take(values: np.ndarray | RowSpool | None, fill: float | int) -> Any:
        if values is None:
            return None
        if identity and len(values) == len(pick):
            return values
        if isinstance(values, RowSpool):  # crops stay on disk: a view of the rows
            return values.remap(np.where(have, idx, -1))
        values = np.asarray(values)
        out = values[idx]  # a new array
        out[~have] = fill
        return out

    starts = grid.windows_for_duration(duration_s)
    return FaceClipFeatures(
        clip_id="",
        faces=take(res.faces, 0),
        mask=np.asarray(res.mask, bool)[idx] & have,
        landmarks=take(res.landmarks, 0),
        frame_time_s=np.where(have, decoded_t[idx], times),
        n_faces=take(res.n_faces, 0),
        confidence=take(res.confidence, 0),
        window_start_s=starts,
        window_frame0=grid.window_frame0(starts),
        duration_s=float(duration_s),
        padded=bool(duration_s < grid.window_s),
        au=take(res.au, np.nan),
        pose=take(res.pose, np.nan),
        boxes=take(res.boxes, np.nan),
        gaze=take(res.gaze, np.nan),
    )


def open_frames(
    path: str | Path,
    grid: TimeGrid,
    max_side: int,
    media: dict[str, Any],
    info: MediaInfo | None = None,
) -> tuple[FrameStream, np.ndarray, float]:
    """The frame stream of a clip's sample times, the times and the video's duration."""
    info = _probe(path, media, info)
    if not info.has_video:
        raise ClipError("no_video", "the file has no video stream")
    duration = info.video_duration_s or info.duration_s or 1.0 / (info.fps or 25.0)
    times = grid.frame_times(duration, info.fps)
    return FrameStream(path, times, grid.rate, info, max_side, media), times, duration


def face_features(
    clips: Sequence[tuple[str, str | Path]],
    spec: dict[str, Any],
    backend: Any,
    media: dict[str, Any] | None = None,
    probe_with: Callable[[str | Path], MediaInfo] | None = None,
    sides: dict[str, str] | None = None,
) -> list[FaceClipFeatures | ClipError]:
    """Each clip's face frames on the grid, or its failure (one entry per clip, in order).

    A streaming backend aligns each chunk of decoded frames as it arrives; a batching one
    (OpenFace) gets the frames of all the clips in one call. ``probe_with`` gives a clip's
    :class:`MediaInfo` from its path (default: ffprobe it). ``sides``: per clip id, the side
    (``left``/``right``) of a two-person video whose person is aligned (streaming backends only).
    """
    media = media_settings(media, spec)
    grid = TimeGrid.of(spec)
    max_side = int(spec.get("max_side", 640))
    streaming = bool(getattr(backend, "streams", False))
    out: dict[str, FaceClipFeatures | FaceResult | ClipError] = {}
    sampled: dict[str, tuple[SampledFrames, np.ndarray, float]] = {}
    batch: list[tuple[str, Any]] = []  # (clip id, its frames on disk)
    with tempfile.TemporaryDirectory(prefix="emoflow-faces-") as work:
        for index, (clip_id, path) in enumerate(clips):
            try:
                info = probe_with(path) if probe_with else None
                side = (sides or {}).get(clip_id)
                if side and not streaming:
                    raise ClipError("unsupported", f"the {backend.name} face backend cannot follow "
                                    f"the {side} person of a two-person video; use the embedded "
                                    "backend (faces.backend: embedded)")  # fmt: skip
                stream, times, duration = open_frames(path, grid, max_side, media, info)
                if streaming:
                    out[clip_id] = _stream(backend, clip_id, stream, work, side)
                else:  # written to disk as they decode (a batch of long clips is gigabytes)
                    folder = Path(work) / "frames" / frame_folder(index, clip_id)
                    batch.append((clip_id, write_frames(stream.chunks(CHUNK_FRAMES),
                                                                folder)))  # fmt: skip
                sampled[clip_id] = (stream.finish(), times, duration)
            except ClipError as exc:
                out[clip_id] = exc
            except Exception as exc:  # noqa: BLE001 - one clip must never stop the others
                out[clip_id] = internal_error(exc, clip_id)
        batch = [(c, f) for c, f in batch if c in sampled]
        if batch:
            try:
                out.update(backend.process(batch, Path(work)))
            except Exception as exc:  # noqa: BLE001
                out.update({c: internal_error(exc, c) for c, _ in batch})
    results = [out.get(c) or ClipError("tool_crash", "the face backend gave no result")
               for c, _ in clips]  # fmt: skip
    return [_finish(res, *sampled[c], grid) if isinstance(res, FaceResult) else res
            for (c, _), res in zip(clips, results, strict=True)]  # fmt: skip


def _finish(
    res: FaceResult, sampled: SampledFrames, times: np.ndarray, duration: float, grid: TimeGrid
) -> FaceClipFeatures | ClipError:
    rec = _face_record(res, sampled.pick, sampled.decoded_t, times, grid, duration)
    if not rec.mask.any():
        return ClipError("no_face", f"no face found in any of the {len(rec.mask)} sampled frames")
    return rec


def _stream(
    backend: Any, clip_id: str, stream: FrameStream, work: str, side: str | None = None
) -> FaceResult:
    """A streaming backend's result for a clip, chunk by chunk; each chunk goes on from the
    face chosen last in the chunks before (``faces.select: track`` follows it). Each chunk's
    arrays are copied into arrays sized for the clip's sample times, so the crops are held
    once (not as a list of chunks and their concatenation)."""
    total = FaceResultBuilder(len(stream.times))
    last: np.ndarray | None = None
    for chunk in stream.chunks(CHUNK_FRAMES):
        res = _one(backend, clip_id, chunk, work, last, side)
        total.add(res)
        found = np.flatnonzero(res.mask) if res.boxes is not None else []
        if len(found):
            last = np.asarray(res.boxes[found[-1]], np.float64)
    if total.n == 0:
        stream.finish()  # raises: nothing was decoded (unreadable or too short)
    return total.result()


def _one(
    backend: Any, clip_id: str, frames: np.ndarray, work: str, prev: np.ndarray | None = None,
    side: str | None = None,
) -> FaceResult:  # fmt: skip
    kwargs: dict[str, Any] = {} if prev is None else {"prev_boxes": {clip_id: prev}}
    if side:
        kwargs["sides"] = {clip_id: side}
    res = backend.process([(clip_id, frames)], Path(work), **kwargs).get(clip_id)
    if isinstance(res, ClipError):
        raise res
    if res is None:
        raise ClipError("tool_crash", "the face backend gave no result")
    return res
