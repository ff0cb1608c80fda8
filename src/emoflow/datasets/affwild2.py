"""Aff-Wild2 (the ABAW challenges' corpus): long in-the-wild videos with per-frame labels.

The layout as distributed (the folder names of every ABAW edition are read):

- videos anywhere under the root (``videos/``, ``batch1/``, ``batch2/``...), ``.mp4`` / ``.avi``;
  audio-only files (``.wav`` extracted next to them) are ignored;
- annotation folders, found up to three levels below the root (``annotations/``,
  ``6th ABAW Annotations/``...): valence-arousal in ``VA_Estimation_Challenge`` (2022 on) or
  ``VA_Set`` (2020–2021); expressions in ``EXPR_Recognition_Challenge`` (2024 on),
  ``EXPR_Classification_Challenge`` (2022–2023) or ``EXPR_Set`` (2020–2021). AU folders are not
  read. Inside each, ``Train_Set`` (or ``Training_Set``) and ``Validation_Set`` give the official
  split; a file directly in the track folder has no split;
- one ``<video>.txt`` per annotated video and track (:mod:`emoflow.labels.tracks` reads them);
  ``<video>_left.txt`` / ``<video>_right.txt`` for a video with two people: each is a clip of
  its own (``<video>_left``, ``<video>_right``) on the same video file, its TrackSource naming
  the side, so the face stage follows that person.

Clip ids are the annotation names (the video name, plus ``_left``/``_right``); speaker is the
video name, so the two people of one video and all of a video's frames stay in one group.
Clip-level label, valence and arousal are None: the labels are the clip's track. A clip with a
VA and an expression file gets both. When the tracks give one video different splits, the
held-out one wins (test over val over train), so no validation frame is ever trained on.

A video with no annotation file in any track is an unlabelled clip of split ``test`` with an
empty TrackSource (the ABAW test videos are exactly those; they are predicted window by window,
never scored). With
``dataset.label_tracks`` set to one track, videos annotated only in the other are left out.
An annotation file with no video is a ``not_found`` failure; two videos or two annotation files
of one name are ``duplicate_id`` failures.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emoflow.datasets.records import (
    ClipRecord,
    Fields,
    ScanResult,
    drop_duplicates,
    failure,
    finish,
    make_record,
    nfc,
)
from emoflow.datasets.splits import normalise_split
from emoflow.datasets.walk import FoundFile, normalise_extensions, walk_media
from emoflow.errors import ConfigError, Failure
from emoflow.labels.tracks import TrackSource

TRACK_FOLDERS: dict[str, str] = {
    "va_estimation_challenge": "va",
    "va_set": "va",
    "expr_recognition_challenge": "expr",
    "expr_classification_challenge": "expr",
    "expr_set": "expr",
}
"""Annotation folder name (any case) -> track."""
TRACKS = ("va", "expr")
SIDES = ("left", "right")
SEARCH_DEPTH = 3  # annotation folders are looked for this many levels below the root
AUDIO_ONLY = frozenset({".wav"})
_HELD_OUT = {"test": 3, "val": 2, "train": 1}  # which split wins when the tracks disagree


@dataclass(frozen=True)
class Annotation:
    """One annotation file: its track, name (file stem, NFC), split and path."""

    track: str
    name: str
    split: str | None
    path: str
    rel: str  # root-relative, for messages


def find_track_folders(root: Path) -> dict[str, list[Path]]:
    """Track -> the annotation folders of that track within SEARCH_DEPTH levels of ``root``."""
    found: dict[str, list[Path]] = {}
    level = [root]
    for _ in range(SEARCH_DEPTH):
        below: list[Path] = []
        for folder in level:
            try:
                with os.scandir(folder) as it:
                    entries = sorted((e for e in it if not e.name.startswith(".")), key=_name)
            except OSError:
                continue  # the media walk reports folders it cannot list
            for entry in entries:
                if not entry.is_dir():
                    continue
                track = TRACK_FOLDERS.get(entry.name.lower())
                if track:
                    found.setdefault(track, []).append(Path(entry.path))
                else:
                    below.append(Path(entry.path))
        level = below
    return found


def _name(entry: os.DirEntry[str]) -> str:
    return entry.name


def split_of_folder(name: str) -> str | None:
    """``Train_Set`` / ``Training_Set`` -> train, ``Validation_Set`` -> val, ``Test_Set`` ->
    test; other names as :func:`normalise_split` keeps them."""
    key = name.strip()
    if key.lower().endswith("_set"):
        key = key[: -len("_set")]
    return normalise_split(key)


def read_annotations(
    root: Path, folders: dict[str, list[Path]], allow_outside_root: bool
) -> tuple[list[Annotation], list[Failure]]:
    """Every ``.txt`` file of the track folders (one folder per track, else ConfigError)."""
    annotations: list[Annotation] = []
    failures: list[Failure] = []
    for track in TRACKS:
        places = folders.get(track, [])
        if len(places) > 1:
            shown = ", ".join(repr(str(p.relative_to(root))) for p in places)
            raise ConfigError(
                f"dataset.root {str(root)!r} holds {len(places)} {track.upper()} annotation "
                f"folders ({shown}): keep one ABAW edition's annotations under the root"
            )
        for folder in places:
            walked = walk_media(folder, [".txt"], allow_outside_root=True)  # checked below
            failures.extend(walked.failures)
            prefix = folder.relative_to(root).as_posix()
            for found in walked.files:
                parts = found.clip_id.split("/")
                rel = f"{prefix}/{found.rel}"
                if not allow_outside_root and not Path(found.path).is_relative_to(root):
                    failures.append(
                        failure(
                            parts[-1],
                            "outside_root",
                            f"{rel!r} resolves to {found.path!r}, outside the dataset root "
                            f"{str(root)!r} (set dataset.allow_outside_root to allow it)",
                        )
                    )
                    continue
                split = split_of_folder(parts[0]) if len(parts) > 1 else None
                annotations.append(Annotation(track, parts[-1], split, found.path, rel))
    return annotations, failures


def video_extensions(cfg: dict[str, Any]) -> list[str]:
    """``dataset.extensions`` less the audio-only ones."""
    return sorted(normalise_extensions(cfg["extensions"]) - AUDIO_ONLY)


def find_videos(root: Path, cfg: dict[str, Any]) -> tuple[dict[str, FoundFile], list[Failure]]:
    """Video name (file stem, NFC) -> its file; a name found twice is a duplicate_id."""
    walked = walk_media(root, video_extensions(cfg), bool(cfg.get("allow_outside_root", False)))
    files, duplicates = drop_duplicates(
        walked.files, key=lambda f: f.clip_id.rsplit("/", 1)[-1], describe=lambda f: repr(f.rel)
    )
    return {f.clip_id.rsplit("/", 1)[-1]: f for f in files}, walked.failures + duplicates


def video_of(name: str, videos: dict[str, FoundFile]) -> tuple[str, str | None] | None:
    """(video name, side) an annotation name belongs to, or None when no video has it."""
    if name in videos:
        return name, None
    base, _, side = name.rpartition("_")
    if side.lower() in SIDES and base in videos:
        return base, side.lower()
    return None


def combined_split(splits: Iterable[str | None]) -> str | None:
    """One split for a clip whose tracks may disagree: the most held-out one."""
    known = [s for s in splits if s is not None]
    if not known:
        return None
    return max(known, key=lambda s: (_HELD_OUT.get(s, 0), s))


def _grouped(
    annotations: list[Annotation],
) -> tuple[dict[str, dict[str, Annotation]], list[Failure]]:
    """Annotation name -> track -> its file; a second file of one name and track is a
    duplicate_id (in two split folders, say)."""
    by_name: dict[str, dict[str, Annotation]] = {}
    failures = []
    for note in sorted(annotations, key=lambda a: (a.name, a.track, a.rel)):
        tracks = by_name.setdefault(note.name, {})
        first = tracks.get(note.track)
        if first is None:
            tracks[note.track] = note
            continue
        failures.append(
            failure(
                note.name,
                "duplicate_id",
                f"{first.rel!r} and {note.rel!r} both annotate {note.name!r} "
                f"({note.track.upper()}); keeping {first.rel!r}",
            )
        )
    return by_name, failures


def scan(root: Path, cfg: dict[str, Any]) -> ScanResult:
    """Scan an Aff-Wild2 folder: videos, annotation folders per track, official split."""
    selected = set(cfg.get("label_tracks") or TRACKS)
    folders = find_track_folders(root)
    if not any(folders.get(track) for track in selected):
        names = ", ".join(n for n, t in TRACK_FOLDERS.items() if t in selected)
        raise ConfigError(
            f"dataset.root {str(root)!r} holds no Aff-Wild2 annotation folder (looked for "
            f"{names}, any case, up to {SEARCH_DEPTH} levels down)"
        )
    allow = bool(cfg.get("allow_outside_root", False))
    annotations, failures = read_annotations(root, folders, allow)
    videos, video_failures = find_videos(root, cfg)
    failures += video_failures
    by_name, duplicates = _grouped(annotations)
    failures += duplicates
    records: list[ClipRecord] = []
    tracks: dict[str, TrackSource] = {}
    annotated: set[str] = set()
    for name, notes in sorted(by_name.items()):
        owner = video_of(name, videos)
        if owner is None:
            shown = ", ".join(repr(n.rel) for n in notes.values())
            failures.append(
                failure(
                    name,
                    "not_found",
                    f"{shown} annotates video {name!r}, but no video of that name (with one of "
                    f"the extensions {', '.join(video_extensions(cfg))}) is under the root",
                )
            )
            continue
        video, side = owner
        annotated.add(video)
        mine = {t: n for t, n in notes.items() if t in selected}
        if not mine:
            continue  # annotated only in a track this run does not read
        split = combined_split(n.split for n in mine.values())
        fields = Fields(speaker=video, split=split)
        records.append(make_record(nfc(name), videos[video].path, fields))
        tracks[nfc(name)] = TrackSource(
            va=mine["va"].path if "va" in mine else None,
            expr=mine["expr"].path if "expr" in mine else None,
            side=side,
        )
    for video, found in sorted(videos.items()):
        if video not in annotated:  # an ABAW test video: predicted, never scored
            records.append(make_record(video, found.path, Fields(speaker=video, split="test")))
            tracks[video] = TrackSource()  # no labels: still predicted window by window
    result = finish(records, failures, None)
    result.tracks = {
        clip.clip_id: tracks[clip.clip_id] for clip in result.clips if clip.clip_id in tracks
    }
    return result
