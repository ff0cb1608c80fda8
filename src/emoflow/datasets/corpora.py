"""Scan every corpus of a run into one clip table: label maps and namespaces applied.

Each corpus is scanned by its own adapter; its labels then go through its ``map`` (a label
mapped to null is **dropped**: failure ``label_dropped``), and a label that is not in the
run's class list afterwards is **unmapped** (failure ``bad_label``), so no clip is silently
mixed into a class it does not belong to and every one is accounted for. In a study, clip ids
and speakers are namespaced by the corpus name, and every corpus must have the targets the
run learns (valence/arousal corpora mix only with other dimensional corpora).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from emoflow.datasets.records import ClipRecord, ScanResult, check_label, failure
from emoflow.datasets.registry import scan_dataset
from emoflow.errors import ConfigError, Failure
from emoflow.study import class_list, corpora, is_study, namespaced

DROPPED = "label_dropped"


def _map_labels(scan: ScanResult, mapping: dict[str, str | None], corpus: str) -> ScanResult:
    """Labels through ``mapping``; clips whose label maps to None become label_dropped."""
    clips: list[ClipRecord] = []
    dropped: list[Failure] = []
    for clip in scan.clips:
        if clip.label is None or clip.label not in mapping:
            clips.append(clip)
        elif mapping[clip.label] is None:
            dropped.append(
                failure(clip.clip_id, DROPPED, f"label {clip.label!r} is dropped by {corpus}'s map")
            )
        else:
            clips.append(clip._replace(label=mapping[clip.label]))
    return ScanResult(clips, scan.failures + dropped, scan.tracks)


def _check_classes(scan: ScanResult, classes: list[str] | None) -> ScanResult:
    """Labelled clips whose (mapped) label is not a class become bad_label (unmapped);
    clips without a label (an official unlabelled test part) stay."""
    clips: list[ClipRecord] = []
    fails = list(scan.failures)
    for clip in scan.clips:
        problem = check_label(clip, classes) if clip.label is not None else None
        if problem is None:
            clips.append(clip)
        else:
            fails.append(problem)
    return ScanResult(clips, fails, scan.tracks)


def _namespace(scan: ScanResult, corpus: str) -> ScanResult:
    clips = [
        c._replace(clip_id=f"{corpus}/{c.clip_id}", speaker=namespaced(corpus, c.speaker))
        for c in scan.clips
    ]
    fails = [dataclasses.replace(f, clip_id=f"{corpus}/{f.clip_id}") for f in scan.failures]
    tracks = {f"{corpus}/{c}": source for c, source in scan.tracks.items()}
    return ScanResult(clips, fails, tracks)


def _check_targets(scan: ScanResult, corpus: str, target: str) -> None:
    """A study's corpus must give the targets the run learns (for some clip)."""
    if scan.tracks:  # per-frame labels: checked when the tracks are read
        return
    has_label = any(c.label is not None for c in scan.clips)
    has_va = any(
        c.valence is not None and c.arousal is not None and not math.isnan(c.valence)
        for c in scan.clips
    )
    if target == "categorical" and not has_label and has_va:
        raise ConfigError(
            f"datasets[{corpus}] has valence/arousal but no categorical labels: a categorical "
            "study mixes only labelled corpora (train.target dimensional or both uses it)"
        )
    if target == "dimensional" and not has_va and has_label:
        raise ConfigError(
            f"datasets[{corpus}] has categorical labels but no valence/arousal: a dimensional "
            "study mixes only dimensional corpora"
        )


def scan_corpora(config: dict[str, Any]) -> ScanResult:
    """Every corpus of the run scanned, mapped and (in a study) namespaced, as one result
    sorted by clip id; ``dataset:`` without a map is exactly its adapter's scan."""
    classes = class_list(config)
    study = is_study(config)
    results: list[ScanResult] = []
    for cfg in corpora(config):
        mapping = cfg.get("map") or {}
        if not mapping and not study:
            return scan_dataset(cfg)
        scan = _map_labels(scan_dataset({**cfg, "labels": None}), mapping, cfg["name"])
        scan = _check_classes(scan, classes)
        if study:
            _check_targets(scan, cfg["name"], config["train"]["target"])
            scan = _namespace(scan, cfg["name"])
        results.append(scan)
    clips = sorted((c for r in results for c in r.clips), key=lambda c: c.clip_id)
    fails = sorted(
        (f for r in results for f in r.failures), key=lambda f: (f.clip_id, f.kind, f.message)
    )
    return ScanResult(clips, fails, {c: t for r in results for c, t in r.tracks.items()})
