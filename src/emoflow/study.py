"""A run's corpora: one (``dataset:``) or a study of several (``datasets:`` + ``study:``).

A study namespaces every clip id and speaker by its corpus name (``tess/OAF_back_angry``,
``tess/OAF``), so two corpora never share a clip or a speaker; :func:`corpus_of` reads the
corpus back from a clip id. Each ``branches:`` entry may name the corpora its branch trains on
(``{audio: [ravdess, tess]}``); a branch never trains on a corpus whose files have no stream of
its modality (an audio-only corpus for a face branch).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import PurePosixPath
from typing import Any

# file extensions of audio-only media: a corpus of only these has no faces
AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac"})
FACE_STAGES = ("faces", "face_cnn")


def is_study(config: Mapping[str, Any]) -> bool:
    """Whether the run is a study of several corpora (``datasets:``)."""
    return bool(config.get("datasets"))


def run_name(config: Mapping[str, Any]) -> str:
    """The results folder name: ``study.name`` for a study, else ``dataset.name``."""
    return config["study"]["name"] if is_study(config) else config["dataset"]["name"]


def corpora(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The dataset sections of the run, in config order."""
    return list(config["datasets"]) if is_study(config) else [config["dataset"]]


def corpus_names(config: Mapping[str, Any]) -> list[str]:
    """The corpus names of a study, sorted (empty for a run of one dataset)."""
    return sorted(c["name"] for c in config["datasets"]) if is_study(config) else []


def class_list(config: Mapping[str, Any]) -> list[str] | None:
    """The configured class list: ``study.labels`` in a study, else ``dataset.labels``."""
    return config["study"]["labels"] if is_study(config) else config["dataset"]["labels"]


def corpus_of(clip_id: str) -> str:
    """The corpus of a study's clip id (its first path part)."""
    return clip_id.split("/", 1)[0]


def namespaced(corpus: str | None, value: str | None) -> str | None:
    """``<corpus>/<value>`` in a study, ``value`` alone otherwise (None stays None)."""
    if value is None or corpus is None:
        return value
    return f"{corpus}/{value}"


def branch_entry_name(entry: str | Mapping[str, Any]) -> str:
    """The branch a ``branches:`` entry names (a string, or ``{branch: [corpora]}``)."""
    return entry if isinstance(entry, str) else next(iter(entry))


def branch_corpora(config: Mapping[str, Any], branch: str) -> list[str] | None:
    """The corpora ``branch`` trains on, as its ``branches:`` entry names them; None: all."""
    for entry in config.get("branches") or []:
        if not isinstance(entry, str) and branch in entry:
            return sorted(entry[branch])
    return None


def audio_only(paths: Iterable[str]) -> bool:
    """Whether every path is an audio-only file (by extension)."""
    return all(PurePosixPath(p).suffix.lower() in AUDIO_EXTENSIONS for p in paths)


def check_study(config: Mapping[str, Any]) -> str | None:
    """Why the run's corpora and branch entries do not fit together (None when they do)."""
    if ("dataset" in config) == ("datasets" in config):
        return "give exactly one of dataset (one corpus) and datasets (a study of several)"
    names = [branch_entry_name(e) for e in config.get("branches") or []]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        return f"branches: {', '.join(twice)} listed more than once"
    if not is_study(config):
        if any(not isinstance(e, str) for e in config.get("branches") or []):
            return "branches: {branch: [corpora]} entries need a study (datasets:)"
        return None
    if "study" not in config:
        return "datasets: a study of several corpora needs study: {name: ...}"
    known = [c["name"] for c in config["datasets"]]
    if len(set(known)) != len(known):
        return f"datasets: corpus names must be unique ({', '.join(known)})"
    for corpus in config["datasets"]:
        if corpus.get("labels"):
            return (
                f"datasets[{corpus['name']}].labels: a study's class list is study.labels "
                "(each corpus maps its labels to it with map:)"
            )
    for entry in config.get("branches") or []:
        if isinstance(entry, str):
            continue
        ((branch, listed),) = entry.items()
        unknown = sorted(set(listed) - set(known))
        if unknown:
            return (
                f"branches: {branch} names corpora that are not in datasets: "
                f"{', '.join(unknown)} (known: {', '.join(sorted(known))})"
            )
    return None
