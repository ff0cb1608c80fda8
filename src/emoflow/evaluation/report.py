"""Evaluation: result tables (CSV, Markdown, LaTeX), per-class scores, figures and a summary,
rendered only from the stored fused predictions.

Everything written is a function of the inputs alone: rows in a fixed order (audio, visual,
late, stacking, feature), columns in a fixed order, numbers with three decimals, no times and
no absolute paths, so the tables come out byte-identical on a rerun.

What the numbers are (:mod:`emoflow.evaluation.scoring`): every row is scored on the same test clips
(those every row has a prediction for), seed predictions averaged per clip, folds pooled; each
metric has a 95 % speaker-level (cluster) bootstrap interval (``report.bootstrap`` resamples,
seed ``report.seed``); each fusion has its paired difference to the best single branch; the
``Fusion`` column says whether a fusion could be fitted in every run or fell back to equal
weights, and why. The table's caption names the evaluation protocol. Unlabelled official test
clips are written to ``unlabelled_predictions.csv``, never scored.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from emoflow.branches import ALL_BRANCHES
from emoflow.errors import EmoflowError
from emoflow.evaluation.frame_scoring import FRAMES, FrameContext, frame_context, per_class_frames
from emoflow.evaluation.fused_rows import FusedRows, load_fused
from emoflow.evaluation.metrics import confusion_matrix, known_classes, per_class_prf
from emoflow.evaluation.scoring import (
    BRANCH_METHODS,
    ClipPredictions,
    Evaluation,
    average_seeds,
    evaluate_methods,
    restrict,
)
from emoflow.evaluation.tables import (
    METHOD_NAMES,
    csv_text,
    display_row,
    fmt,
    fusion_cell,
    results_csv,
    results_latex,
    results_markdown,
)
from emoflow.fusion.apply import has_categorical, has_dimensional
from emoflow.fusion.methods import METHODS
from emoflow.storage.atomic import write_bytes, write_text

METHOD_ORDER = (*ALL_BRANCHES, *METHODS)
MAX_LISTED_FAILURES = 50


# --------------------------------------------------------------------------- scoring


def method_predictions(
    rows: FusedRows, part: str = "test"
) -> tuple[dict[str, ClipPredictions], dict[str, list[ClipPredictions]]]:
    """Per method (table order): seed-averaged predictions per (fold, clip) of ``part``, and
    each seed's own."""
    per_method: dict[str, ClipPredictions] = {}
    per_seed: dict[str, list[ClipPredictions]] = {}
    for method in METHOD_ORDER:
        sel = (rows.method == method) & (rows.part == part)
        if not sel.any():
            continue

        def pick(mask: np.ndarray) -> ClipPredictions:
            keys = list(zip(rows.fold[mask].tolist(), rows.clip_id[mask].tolist(), strict=True))
            return average_seeds(
                keys, rows.y[mask], rows.va_true[mask], rows.prob[mask], rows.va[mask]
            )

        per_method[method] = pick(sel)
        per_seed[method] = [pick(sel & (rows.seed == s)) for s in sorted(set(rows.seed[sel]))]
    return per_method, per_seed


@dataclass
class Report:
    """Everything the tables show."""

    evaluation: Evaluation
    fusion: dict[str, str]
    per_class: dict[str, dict[str, np.ndarray]]
    confusion: dict[str, np.ndarray]


def summarise(
    rows: FusedRows, speaker_of: dict[str, str | None], n_boot: int, boot_seed: int,
    omg: bool | str, frames: FrameContext | None = None,
) -> Report:  # fmt: skip
    """Score the test predictions of every method on the common clips (with ``frames``: the
    time-continuous clips per annotated frame, :mod:`emoflow.evaluation.frame_scoring`)."""
    per_method, per_seed = method_predictions(rows)
    if not per_method:
        raise EmoflowError("no test predictions to score (every test clip failed or is unlabelled)")
    if frames is not None:
        per_method = {m: frames.stats(p, rows.classes) for m, p in per_method.items()}
        per_seed = {m: [frames.stats(p, rows.classes) for p in v] for m, v in per_seed.items()}
    ev = evaluate_methods(per_method, per_seed, speaker_of, rows.target, n_boot, boot_seed, omg)
    runs = len(rows.problems)
    fusion = {m: fusion_cell(m, rows.problems, runs, rows.fits) for m in per_method}
    per_class, confusion = {}, {}
    if has_categorical(rows.target):
        k = len(rows.classes)
        for method, p in per_method.items():
            common = restrict(p, ev.common)
            if frames is not None:
                per_class[method], confusion[method] = per_class_frames(common)
                continue
            t, pred = known_classes(common.y, np.argmax(common.prob, axis=1))
            per_class[method] = per_class_prf(t, pred, k)
            confusion[method] = confusion_matrix(t, pred, k)
    return Report(ev, fusion, per_class, confusion)


def per_class_csv(report: Report, classes: list[str]) -> str:
    """Per-class precision, recall and F1 per method on the common clips."""
    rows = []
    for method, prf in report.per_class.items():
        for i, name in enumerate(classes):
            rows.append(
                [method, name, str(int(prf["support"][i]))]
                + [fmt(float(prf[m][i])) for m in ("precision", "recall", "f1")]
            )
    return csv_text(["method", "class", "support", "precision", "recall", "f1"], rows)


def unlabelled_csv(rows: FusedRows) -> str | None:
    """Seed-averaged predictions of the unlabelled (official test) clips, or None."""
    per_method, _ = method_predictions(rows, part="unlabelled")
    if not per_method:
        return None
    cat, dim = has_categorical(rows.target), has_dimensional(rows.target)
    header = ["clip_id", "method"]
    header += ["predicted", *(f"p_{c}" for c in rows.classes)] if cat else []
    header += ["valence", "arousal"] if dim else []
    out = []
    for method, p in per_method.items():
        for i, (_, clip) in enumerate(p.keys):
            row = [clip, method]
            if cat:
                row += [rows.classes[int(np.argmax(p.prob[i]))], *map(fmt, p.prob[i])]
            if dim:
                row += [fmt(p.va[i, 0]), fmt(p.va[i, 1])]
            out.append(row)
    return csv_text(header, sorted(out))


def caption(ev: Evaluation, protocol: dict[str, Any], n_boot: int, boot_seed: int) -> str:
    """What the table shows, in one paragraph: protocol, clips, what was resampled."""
    what = {
        "speaker": f"speakers ({ev.n_clusters} clusters; all of a drawn speaker's clips)",
        "clip": f"clips ({ev.n_clusters}; the corpus has no speaker ids, so clip level)",
        "mixed": f"speakers, a clip without a speaker being its own cluster ({ev.n_clusters})",
    }[ev.clusters]
    text = (
        f"Protocol: {protocol.get('description', 'not recorded')}. "
        f"Every row is scored on the same {len(ev.common)} test clips (those every row has a "
        "prediction for); Missing: test clips a row has no prediction for, left out of every "
        "row. Seed predictions are averaged per clip; folds are pooled. 95 % intervals: "
        f"percentile bootstrap over {what}, {n_boot} resamples, seed {boot_seed}; each fusion's "
        "Δ to the best single branch is paired (same resamples)."
    )
    if ev.n_seeds > 1:
        text += (
            f" ±: standard deviation over the {ev.n_seeds} training seeds, each seed's "
            "predictions scored on their own."
        )
    if protocol.get("unlabelled"):
        text += (
            f" {protocol['unlabelled']} unlabelled test clips are predicted "
            "(unlabelled_predictions.csv) and not scored."
        )
    return text


# --------------------------------------------------------------------------- failures etc.


def _md_cell(text: Any) -> str:
    return str(text).replace("\r", " ").replace("\n", " ").replace("|", "\\|")


def failures_markdown(failures: dict[str, list[str]]) -> str:
    """Counts by stage and kind, then up to :data:`MAX_LISTED_FAILURES` failures."""
    n = len(failures.get("clip_id", []))
    lines = ["## Failures", ""]
    if n == 0:
        return "\n".join([*lines, "No failures.", ""])
    records = sorted(
        zip(
            failures["stage"], failures["kind"], failures["clip_id"], failures["message"],
            strict=True,
        )
    )  # fmt: skip
    counts: dict[tuple[str, str], int] = {}
    for stage, kind, _, _ in records:
        counts[(stage, kind)] = counts.get((stage, kind), 0) + 1
    lines += [f"{n} failures.", "", "| Stage | Kind | Clips |", "|:---|:---|---:|"]
    lines += [f"| {_md_cell(s)} | {_md_cell(k)} | {c} |" for (s, k), c in sorted(counts.items())]
    shown = records[:MAX_LISTED_FAILURES]
    lines += ["", "| Clip | Stage | Kind | Message |", "|:---|:---|:---|:---|"]
    lines += [
        f"| {_md_cell(c)} | {_md_cell(s)} | {_md_cell(k)} | {_md_cell(m)} |" for s, k, c, m in shown
    ]
    if n > len(shown):
        lines += ["", f"… and {n - len(shown)} more (see failures.parquet)."]
    return "\n".join(lines) + "\n"


def _read_failures(path: Path) -> dict[str, list[str]]:
    if not Path(path).exists():
        return {"clip_id": [], "stage": [], "kind": [], "message": []}
    cols = pq.read_table(path, columns=["clip_id", "stage", "kind", "message"]).to_pydict()
    return {k: ["" if v is None else str(v) for v in vals] for k, vals in cols.items()}


def _json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False, default=str) + "\n"


def _read_history(path: Path) -> dict[str, np.ndarray]:
    with open(path, encoding="utf-8", newline="") as fh:
        records = list(csv.DictReader(fh))
    cols = ("epoch", "train_loss", "val_loss", "val_metric")
    return {
        c: np.asarray([float(r[c]) if r.get(c) not in (None, "") else np.nan for r in records])
        for c in cols
    }


def history_label(path: Path) -> tuple[str | None, str]:
    """``(branch, label)`` from a ``.../<branch>/fold<k>/seed<s>/history.csv`` path."""
    parents = list(Path(path).parts[:-1])
    for i in range(len(parents) - 1, -1, -1):
        if parents[i] in BRANCH_METHODS:
            rest = parents[i + 1 :]
            return parents[i], "/".join(rest) if rest else parents[i]
    return None, Path(path).parent.name


def _metric_name(target: str) -> str:
    return {"categorical": "UAR", "dimensional": "mean CCC"}.get(target, "mean of UAR and CCC")


# --------------------------------------------------------------------------- I/O wrapper


def _speakers(manifest_path: Path) -> dict[str, str | None]:
    cols = pq.read_table(manifest_path, columns=["clip_id", "speaker"]).to_pydict()
    return {
        str(c): (str(s) if s not in (None, "") else None)
        for c, s in zip(cols["clip_id"], cols["speaker"], strict=True)
    }


def _write_figures(out_dir: Path, rows: FusedRows, report: Report, history_paths: list) -> None:
    from emoflow.evaluation.figures import confusion_png, curves_png

    for method, cm in report.confusion.items():
        title = f"{METHOD_NAMES[method]}: confusion matrix (common test clips)"
        png = confusion_png(cm, rows.classes, title)
        write_bytes(out_dir / "figures" / f"confusion_{method}.png", png)
    by_branch: dict[str, list[tuple[str, dict[str, np.ndarray]]]] = {}
    for path in map(Path, history_paths):
        if path.exists():
            branch, label = history_label(path)
            by_branch.setdefault(branch or "model", []).append((label, _read_history(path)))
    for branch in sorted(by_branch):
        png = curves_png(by_branch[branch], f"{branch}: training curves", _metric_name(rows.target))
        write_bytes(out_dir / "figures" / f"curves_{branch}.png", png)


def _study_tables(
    rows: FusedRows, speakers: dict[str, str | None], protocol: dict[str, Any], n_boot: int,
    boot_seed: int, omg: bool | str, frames: FrameContext | None,
) -> tuple[Report, str, str, str]:  # fmt: skip
    """A study's tables (see :mod:`emoflow.evaluation.study_report`): the report of the first
    (for the figures), the Markdown, the CSV and the LaTeX."""
    from emoflow.evaluation.study_report import section_title, sections, study_csv

    md, tex, csv_parts, first = [], [], [], None
    for name, corpus, part in sections(rows, protocol["folds"]):
        report = summarise(part, speakers, n_boot, boot_seed, omg, frames)
        first = first or report
        ev = report.evaluation
        display = [display_row(r, ev, part.target, omg, report.fusion[r.method]) for r in ev.rows]
        text = caption(ev, {"description": f"{name}, test corpus {corpus}"}, n_boot, boot_seed)
        md.append(f"{section_title(name, corpus)}\n\n{text}\n\n"
                  + results_markdown(display, part.target, omg))  # fmt: skip
        tex.append(
            results_latex(display, part.target, omg, f"{section_title(name, corpus)[4:]}. {text}")
        )
        csv_parts.append((name, corpus, ev, report.fusion, part.target, omg))
    if first is None:
        raise EmoflowError("no test predictions to score in any protocol")
    head = f"Protocol: {protocol.get('description', 'not recorded')}.\n\n"
    return first, head + "\n".join(md), study_csv(csv_parts), "\n".join(tex)


def _corpus_counts(config: dict[str, Any], manifest_path: Path, failures_path: Path) -> str:
    import pandas as pd

    from emoflow.evaluation.study_report import corpus_counts
    from emoflow.study import corpus_names

    manifest = pd.read_parquet(manifest_path, columns=["clip_id"])
    path = Path(failures_path)
    failures = (
        pd.read_parquet(path, columns=["clip_id", "kind"]) if path.exists()
        else pd.DataFrame({"clip_id": [], "kind": []})
    )  # fmt: skip
    return "### Corpora\n\n" + corpus_counts(manifest, failures, corpus_names(config))


def run_evaluate(
    config: dict[str, Any],
    fused_paths: list[Path],
    history_paths: list[Path],
    manifest_path: Path,
    failures_path: Path,
    out_dir: Path,
    provenance: dict[str, Any],
) -> str:
    """Write the report into ``out_dir`` and return ``results.md`` (caption and table).

    Files: ``results.csv``, ``results.md``, ``results.tex``, ``per_class.csv`` (categorical),
    ``unlabelled_predictions.csv`` (when there are unlabelled test clips),
    ``figures/confusion_<method>.png`` (categorical), ``figures/curves_<branch>.png`` (each
    branch with a history file), ``summary.md`` (table, failures, provenance) and
    ``provenance.json``. ``provenance["protocol"]`` (from protocol.json) names the protocol.
    Missing history files are skipped; a missing failures table counts as no failures.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report_cfg = config.get("report", {})
    n_boot = int(report_cfg.get("bootstrap", 1000))
    boot_seed = int(report_cfg.get("seed", 0))
    omg = config.get("dataset", {}).get("adapter") == "omg" and has_dimensional(
        config.get("train", {}).get("target", "categorical")
    )

    rows = load_fused([Path(p) for p in fused_paths])
    speakers = _speakers(Path(manifest_path))
    frames = frame_context(config, Path(manifest_path))
    if frames is not None:
        omg = FRAMES
    if "folds" in provenance.get("protocol", {}):  # a study: a table per protocol and corpus
        report, table_md, csv_out, tex = _study_tables(
            rows, speakers, provenance["protocol"], n_boot, boot_seed, omg, frames
        )
        table_md = _corpus_counts(config, manifest_path, failures_path) + "\n" + table_md
    else:
        report = summarise(rows, speakers, n_boot, boot_seed, omg, frames)
        ev = report.evaluation
        display = [display_row(r, ev, rows.target, omg, report.fusion[r.method]) for r in ev.rows]
        text = caption(ev, provenance.get("protocol", {}), n_boot, boot_seed)
        text += f" {frames.describe()}" if frames is not None else ""
        table_md = text + "\n\n" + results_markdown(display, rows.target, omg)
        csv_out = results_csv(ev, rows.target, omg, report.fusion)
        tex = results_latex(display, rows.target, omg, text)
    write_text(out_dir / "results.md", table_md)
    write_text(out_dir / "results.csv", csv_out)
    write_text(out_dir / "results.tex", tex)
    if has_categorical(rows.target):
        write_text(out_dir / "per_class.csv", per_class_csv(report, rows.classes))
    unlabelled = unlabelled_csv(rows)
    if unlabelled is not None:
        write_text(out_dir / "unlabelled_predictions.csv", unlabelled)
    _write_figures(out_dir, rows, report, history_paths)

    manifest_clips = pq.read_metadata(manifest_path).num_rows
    failures = _read_failures(Path(failures_path))
    classes = ", ".join(rows.classes) if rows.classes else "-"
    summary = "\n".join(
        [
            "# emoflow report", "", "## Results", "", table_md,
            f"Clips in the manifest: {manifest_clips}. Classes: {classes}. "
            f"Target: {rows.target}. Per-metric std over seeds: results.csv.",
            "", failures_markdown(failures), "## Provenance", "", "```json",
            _json(provenance).rstrip("\n"), "```", "",
        ]
    )  # fmt: skip
    write_text(out_dir / "summary.md", summary)
    write_text(out_dir / "provenance.json", _json(provenance))
    return table_md
