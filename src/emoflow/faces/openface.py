"""The OpenFace backend: run ``FeatureExtraction`` on folders of sampled frames.

One subprocess per batch of clips (repeated ``-fdir``) pays the model load once. The call is an
argument list (never a shell string), runs in the binary's folder (``-mloc`` is relative to
it), has a timeout, and its stdout+stderr go to a log file in the work folder. Failures are
classified per clip (see :func:`classify_missing`); when a batch crashes, the clips without a
usable CSV are retried one per call so one bad clip does not fail its neighbours.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from emoflow.errors import ClipError, ToolMissingError
from emoflow.faces.openface_csv import AU_NAMES, parse_clip_output
from emoflow.faces.result import FaceResult, checked_frames
from emoflow.storage.file_memo import file_sha256

#: Output flags: 2-D landmarks, pose, AUs, gaze, aligned faces without masking.
BASE_FLAGS = ["-2Dfp", "-pose", "-aus", "-gaze", "-simalign", "-nomask"]
DEFAULT_SIZE = 112
DEFAULT_SCALE = 0.7
MODEL_MISSING_MARKERS = ("Could not load the landmark detector",)
OPEN_FAILED_MARKERS = ("Failed to open", "Could not open", "could not be opened")
SECTION_MARKER = "Attempting to read from"


def resolve_binary(bin_path: str | None, model: str) -> tuple[Path, Path]:
    """Absolute paths of FeatureExtraction and its model file, or ToolMissingError."""
    if not bin_path:
        raise ToolMissingError(
            "faces.backend is 'openface' but faces.openface.bin is not set: "
            "set it to the path of OpenFace's FeatureExtraction"
        )
    found = shutil.which(bin_path) if os.sep not in bin_path else None
    binary = Path(found) if found else Path(bin_path).expanduser()
    if not binary.is_file():
        raise ToolMissingError(f"OpenFace FeatureExtraction not found at {bin_path!r}")
    if not os.access(binary, os.X_OK):
        raise ToolMissingError(f"OpenFace FeatureExtraction at {binary} is not executable")
    binary = binary.resolve()
    model_path = Path(model)
    if not model_path.is_absolute():
        model_path = binary.parent / model_path
    if not model_path.is_file():
        raise ToolMissingError(
            f"OpenFace model file {model!r} not found at {model_path} "
            f"(-mloc is relative to the binary's folder {binary.parent})"
        )
    return binary, model_path


def signal_name(returncode: int | None) -> str | None:
    """Name of the signal that ended a process (``-11`` or shell-style 139 → SIGSEGV)."""
    if returncode is None:
        return None
    num = -returncode if returncode < 0 else returncode - 128 if returncode in (134, 139) else 0
    if num <= 0:
        return None
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


def log_section(log_text: str, folder: str) -> str:
    """The part of a FeatureExtraction log about one input folder ('' if it never started)."""
    parts = log_text.split(SECTION_MARKER)
    for part in parts[1:]:
        first = part.splitlines()[0] if part.splitlines() else ""
        if first.split(":", 1)[-1].strip().endswith(folder):
            return SECTION_MARKER + part
    return ""


def classify_missing(returncode: int | None, log_text: str, folder: str, log: Path) -> ClipError:
    """Why a clip has no CSV: killed by a signal, could not open its input, or no output."""
    sig = signal_name(returncode)
    if sig:
        return ClipError(
            "tool_crash",
            f"FeatureExtraction was killed by {sig} (exit {returncode}) without writing the "
            f"CSV; log: {log}",
        )
    section = log_section(log_text, folder)
    if any(marker in section for marker in OPEN_FAILED_MARKERS):
        return ClipError(
            "unreadable",
            f"FeatureExtraction could not open the frames (exit {returncode}); log: {log}",
        )
    return ClipError(
        "tool_crash", f"FeatureExtraction wrote no CSV (exit {returncode}); log: {log}"
    )


@dataclass
class RunOutcome:
    """What one FeatureExtraction call did."""

    returncode: int | None
    timed_out: bool
    log: Path
    log_text: str


def run_logged(cmd: list[str], cwd: Path, timeout: float, log: Path) -> RunOutcome:
    """Run ``cmd`` (a list, no shell) with stdout+stderr into ``log``; kill its group on timeout."""
    with open(log, "wb") as fh:
        proc = subprocess.Popen(  # noqa: S603 - argument list, no shell
            cmd,
            cwd=cwd,
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        timed_out = False
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
    text = log.read_text("utf-8", errors="replace")
    return RunOutcome(None if timed_out else proc.returncode, timed_out, log, text)


@dataclass(frozen=True)
class FrameFolder:
    """A clip's sampled frames written as BMPs (:func:`write_frames`)."""

    folder: Path  # its name names OpenFace's outputs: unique among a call's clips
    k: int  # frames


def frame_folder(index: int, clip_id: str) -> str:
    """The frame folder name of a call's ``index``-th clip (unique, plain ASCII)."""
    return f"clip{index:05d}-{hashlib.sha256(clip_id.encode('utf-8')).hexdigest()[:12]}"


def write_frames(chunks: Iterable[np.ndarray], folder: Path) -> FrameFolder:
    """A clip's frames, chunk by chunk as they decode, as ``frame_000001.bmp`` ... (names
    sort in frame order) in ``folder``: memory is one chunk, whatever the clip's length.
    BMP is lossless like PNG, so OpenFace's results are the same, and 14-20x cheaper to
    write than PNG level 1 (no compression; ``bench/openface_frames.py``)."""
    folder.mkdir(parents=True)
    k = 0
    for chunk in chunks:
        for frame in chunk:
            k += 1
            Image.fromarray(frame).save(folder / f"frame_{k:06d}.bmp")
    return FrameFolder(folder, k)


@dataclass
class _Clip:
    clip_id: str
    k: int
    folder: Path  # absolute frame folder; its name names the outputs


class OpenFaceBackend:
    """Wrapper around OpenFace 2.x ``FeatureExtraction`` on image folders."""

    name = "openface"
    au_names: list[str] = [name[:-2] for name in AU_NAMES]
    streams = False  # each call loads the model (seconds): whole clips, many per call

    def __init__(
        self,
        binary: Path,
        model: str,
        *,
        model_path: Path,
        size: int = DEFAULT_SIZE,
        scale: float = DEFAULT_SCALE,
        au_static: bool = True,
        timeout_s: float = 600.0,
        batch: int = 32,
    ) -> None:
        self.binary = Path(binary)
        self.model = model
        self.model_path = Path(model_path)
        self.size = int(size)
        self.scale = float(scale)
        self.au_static = bool(au_static)
        self.timeout_s = float(timeout_s)
        self.batch = max(1, int(batch))
        self._calls = 0

    @property
    def flags(self) -> list[str]:
        """The flags after the inputs/outputs (same for every call)."""
        flags = ["-mloc", self.model, *BASE_FLAGS]
        if self.scale != DEFAULT_SCALE:
            flags += ["-simscale", repr(self.scale)]
        if self.au_static:
            flags.append("-au_static")
        return flags

    def versions(self) -> dict[str, str]:
        """Binary sha256, model, flags and crop size (FeatureExtraction prints no version)."""
        return {
            "backend": self.name,
            "openface_sha256": file_sha256(self.binary),
            "openface_version": "unknown (FeatureExtraction has no version flag)",
            "model": self.model,
            "flags": " ".join(self.flags),
            "size": str(self.size),
        }

    def command(self, folders: list[Path], out_dir: Path) -> list[str]:
        """The argument list for one call on ``folders``."""
        cmd = [str(self.binary)]
        for folder in folders:
            cmd += ["-fdir", str(folder)]
        return [*cmd, "-out_dir", str(out_dir), *self.flags]

    def _call(self, clips: list[_Clip], root: Path) -> dict[str, FaceResult | ClipError]:
        self._calls += 1
        call = root / f"call-{self._calls:04d}"
        out_dir = call / "out"
        out_dir.mkdir(parents=True)
        log = call / "FeatureExtraction.log"
        outcome = run_logged(
            self.command([c.folder for c in clips], out_dir),
            self.binary.parent,
            self.timeout_s,
            log,
        )
        results: dict[str, FaceResult | ClipError] = {}
        if outcome.timed_out:
            err = f"FeatureExtraction ran past {self.timeout_s:g} s and was killed; log: {log}"
            return {c.clip_id: ClipError("tool_timeout", err) for c in clips}
        if any(m in outcome.log_text for m in MODEL_MISSING_MARKERS):
            err = (
                f"FeatureExtraction could not load its landmark model {self.model!r} "
                f"(exit {outcome.returncode}); log: {log}"
            )
            return {c.clip_id: ClipError("tool_missing", err) for c in clips}
        for clip in clips:
            name = clip.folder.name
            csv_path = out_dir / f"{name}.csv"
            if not csv_path.is_file():
                results[clip.clip_id] = classify_missing(
                    outcome.returncode, outcome.log_text, name, log
                )
                continue
            try:
                results[clip.clip_id] = parse_clip_output(
                    csv_path, out_dir / f"{name}_aligned", clip.k, self.size
                )
            except ClipError as exc:
                results[clip.clip_id] = ClipError(exc.kind, f"{exc.message}; log: {log}")
        shutil.rmtree(out_dir, ignore_errors=True)
        return results

    def process(
        self, clips: list[tuple[str, np.ndarray | FrameFolder]], workdir: Path
    ) -> dict[str, FaceResult | ClipError]:
        """Run FeatureExtraction on the clips (their frames, or the folder
        :func:`write_frames` wrote them to), ``batch`` clips per call; one result per clip."""
        workdir = Path(workdir).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        root = Path(tempfile.mkdtemp(prefix="openface-", dir=workdir))
        out: dict[str, FaceResult | ClipError] = {}
        prepared: list[_Clip] = []
        for index, (clip_id, frames) in enumerate(clips):
            if not isinstance(frames, FrameFolder):
                frames = checked_frames(clip_id, frames)
                if isinstance(frames, ClipError):
                    out[clip_id] = frames
                    continue
                frames = write_frames([frames], root / "frames" / frame_folder(index, clip_id))
            elif frames.k == 0:
                out[clip_id] = ClipError("too_short", "no frames were sampled from the clip")
                continue
            prepared.append(_Clip(clip_id, frames.k, frames.folder.resolve()))
        for start in range(0, len(prepared), self.batch):
            batch = prepared[start : start + self.batch]
            results = self._call(batch, root)
            if len(batch) > 1:
                retry = [
                    c
                    for c in batch
                    if isinstance(results[c.clip_id], ClipError)
                    and results[c.clip_id].kind in ("tool_crash", "unreadable")
                ]
                for clip in retry:
                    results.update(self._call([clip], root))
            out.update(results)
        shutil.rmtree(root / "frames", ignore_errors=True)
        return out
