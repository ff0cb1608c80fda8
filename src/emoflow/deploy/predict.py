"""``emoflow predict``: an emotion timeline for new videos with a trained model bundle.

:mod:`emoflow.deploy.branch_outputs` runs each branch on the file with the featurizer and the
extraction spec stored in the bundle; :mod:`emoflow.deploy.timeline` fuses and formats; this
module only orchestrates and writes.

Outputs in ``out`` per input ``<stem>``: ``<stem>.timeline.csv``, ``<stem>.json`` (no times,
no absolute paths beyond what was given, so reruns give the same bytes) and ``<stem>.png``.
Memory stays bounded for long files: one decoded audio track (about 38 MB for 10 minutes at
16 kHz), one chunk of decoded frames and the clip's 112 x 112 crops.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from emoflow.branches import FACE_BRANCHES, is_fused
from emoflow.deploy.frame_timeline import frames_csv
from emoflow.deploy.plot import plot_timeline
from emoflow.deploy.predictor import Predictor, load_predictor
from emoflow.deploy.timeline import clip_prediction, predict_timeline, timeline_csv
from emoflow.errors import ClipError, EmoflowError
from emoflow.media.ffmpeg import MediaInfo, probe
from emoflow.storage.atomic import write_text


def predict_file(
    video: str | Path, predictor: Predictor, out_dir: Path, info: MediaInfo | None = None
) -> dict[str, Any]:
    """Predict one file; write ``<stem>.timeline.csv``, ``<stem>.json``, ``<stem>.png`` (and
    ``<stem>.frames.csv`` for a model of time-continuous labels)."""
    path = Path(video)
    info = info or probe(path)
    timeline, clip = predict_timeline(path, predictor, info)
    doc = clip_prediction(timeline, clip, predictor, str(video), info)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = path.stem
    write_text(
        out_dir / f"{stem}.timeline.csv",
        timeline_csv(timeline, predictor.classes, predictor.target),
    )
    if predictor.frames:  # trained on time-continuous labels: a prediction per video frame
        text = frames_csv(timeline, predictor.classes, predictor.target, info, predictor.frames)
        write_text(out_dir / f"{stem}.frames.csv", text)
    write_text(out_dir / f"{stem}.json", json.dumps(doc, indent=1, sort_keys=True) + "\n")
    plot_timeline(timeline, predictor.classes, predictor.target, out_dir / f"{stem}.png", path.name)
    return doc


# --------------------------------------------------------------------------- entry point


def summary_rows(docs: list[dict[str, Any]]) -> list[list[str]]:
    """The terminal summary: file, duration, windows, modalities, fusion, prediction, faces."""
    rows = []
    for d in docs:
        if "label" in d:
            p = (d.get("probabilities") or {}).get(d["label"]) if d["label"] else None
            pred = f"{d['label']} ({p:.2f})" if p is not None else "-"
        else:
            pred = ""
        if d.get("valence") is not None:
            pred = (pred + " " if pred else "") + f"v={d['valence']:+.2f} a={d['arousal']:+.2f}"
        fusion = d["fusion"]["applied"] if is_fused(d["source"]) else "-"
        rows.append(
            [
                Path(d["file"]).name,
                f"{d['duration_s']:.1f} s" if d.get("duration_s") else "?",
                str(d["n_windows"]),
                d["source"].replace("_", " "),
                fusion,
                pred or "-",
                f"{100 * d['face_fraction']:.0f} %",
            ]
        )
    return rows


def print_summary(docs: list[dict[str, Any]], failed: dict[str, str]) -> None:
    """Print the summary table (rich) and one line per missing modality or failure."""
    modes = sorted({d["model_mode"] for d in docs})
    table = Table(title=f"emoflow predict (model: {', '.join(modes) or '-'})")
    for name in ("file", "duration", "windows", "modalities", "fusion", "prediction", "faces"):
        right = name in ("duration", "windows", "faces")
        table.add_column(name, justify="right" if right else "left", overflow="fold")
    for row in summary_rows(docs):
        table.add_row(*row)
    console = Console(highlight=False)
    console.print(table)
    for d in docs:
        for modality, why in d["missing"].items():
            console.print(f"{Path(d['file']).name}: {modality} not used ({why})")
        if d["fusion"].get("note") and is_fused(d["source"]):
            console.print(f"{Path(d['file']).name}: fusion: {d['fusion']['note']}")
    for name, why in failed.items():
        console.print(f"{name}: failed: {why}")


def run_predict(
    videos: Sequence[str | Path], model: str | Path, out: str | Path, threads: int = 2
) -> list[dict[str, Any]]:
    """Predict every file of ``videos`` with the bundle ``model``; write into ``out``.

    Files are probed first: unreadable ones and duplicate stems stop the run before any work,
    and the face backend is made (ToolMissingError if unavailable) when a file has video and
    the model a visual branch. Returns the JSON documents in input order.
    """
    if not videos:
        raise EmoflowError("no input file given")
    stems: dict[str, str] = {}
    for v in videos:
        stem = Path(v).stem
        if stem in stems:
            raise EmoflowError(f"{v} and {stems[stem]} would write the same outputs ({stem}.*)")
        stems[stem] = str(v)
    predictor = load_predictor(model)
    infos = {}
    for v in videos:
        try:
            infos[str(v)] = probe(Path(v))
        except ClipError as exc:
            raise EmoflowError(f"{v}: {exc.message}") from exc
    if set(FACE_BRANCHES) & set(predictor.branches) and any(i.has_video for i in infos.values()):
        predictor.require_backend()
    old_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, int(threads)))
    docs, failed = [], {}
    try:
        for v in videos:
            try:
                docs.append(predict_file(v, predictor, Path(out), infos[str(v)]))
            except ClipError as exc:
                failed[str(v)] = exc.message
    finally:
        torch.set_num_threads(old_threads)
    print_summary(docs, failed)
    if failed:
        raise EmoflowError(f"{len(failed)} of {len(videos)} files failed: " + "; ".join(
            f"{k}: {m}" for k, m in failed.items()))  # fmt: skip
    return docs
