"""Evaluation: result tables (CSV, Markdown, LaTeX), per-class scores, figures and a summary,
rendered only from the stored fused predictions.

Everything written is a function of the inputs alone: rows in a fixed order (audio, visual,
late, stacking, feature), columns in a fixed order, numbers with three decimals, no times and
no absolute paths, so the tables come out byte-identical on a rerun.

Numbers in the results table:

- categorical: accuracy, UAR and macro-F1 per (fold, seed), shown as mean ± std (sample std)
  over folds × seeds; the accuracy 95 % interval is a percentile bootstrap over the test clips
  pooled across folds and seeds (``report.bootstrap`` resamples, seed ``report.seed``);
- dimensional: arousal CCC, valence CCC, Pearson r and MAE (the last two averaged over valence
  and arousal), also mean ± std over folds × seeds;
- ``n``: test clips evaluated (distinct (fold, clip) pairs); ``fallback``: how many of them a
  fusion method predicted from one modality only (blank for the single-branch rows).
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from emoflow.atomic import write_bytes, write_text
from emoflow.errors import EmoflowError
from emoflow.fuse import META_KEY, has_categorical, has_dimensional
from emoflow.metrics import (
    accuracy,
    bootstrap_ci,
    ccc,
    confusion_matrix,
    format_mean_std,
    format_number,
    known_classes,
    known_values,
    macro_f1,
    mae,
    mean_std,
    pearson_r,
    per_class_prf,
    uar,
)

METHOD_ORDER = ("audio", "visual", "late", "stacking", "feature")
BRANCH_METHODS = ("audio", "visual")
METHOD_NAMES = {
    "audio": "Audio",
    "visual": "Visual",
    "late": "Late fusion",
    "stacking": "Stacking",
    "feature": "Feature fusion",
}
CAT_METRICS = ("accuracy", "uar", "macro_f1")
DIM_METRICS = ("arousal_ccc", "valence_ccc", "pearson_r", "mae")
HEADERS = {
    "accuracy": "Accuracy",
    "uar": "UAR",
    "macro_f1": "Macro-F1",
    "accuracy_ci": "Accuracy 95 % CI",
    "arousal_ccc": "Arousal CCC",
    "valence_ccc": "Valence CCC",
    "pearson_r": "Pearson r",
    "mae": "MAE",
}
DIGITS = 3
MAX_LISTED_FAILURES = 50


# --------------------------------------------------------------------------- loading


@dataclass
class FusedRows:
    """All fused test predictions of every (fold, seed), sorted by method, fold, seed, clip."""

    classes: list[str]
    target: str
    fold: np.ndarray
    seed: np.ndarray
    clip_id: np.ndarray
    method: np.ndarray
    y: np.ndarray
    va_true: np.ndarray  # (N, 2): valence, arousal
    prob: np.ndarray  # (N, C)
    va: np.ndarray  # (N, 2)
    source: np.ndarray


def load_fused(paths: list[Path]) -> FusedRows:
    """Read and concatenate fused prediction files; check they share classes and target."""
    parts: list[dict[str, Any]] = []
    classes: list[str] | None = None
    target: str | None = None
    for path in paths:
        table = pq.read_table(path)
        raw = (table.schema.metadata or {}).get(META_KEY)
        if raw is None:
            raise EmoflowError(f"{Path(path).name}: no 'emoflow' schema metadata")
        meta = json.loads(raw)
        if classes is None:
            classes, target = list(meta["classes"]), meta["target"]
        elif list(meta["classes"]) != classes or meta["target"] != target:
            raise EmoflowError("fused predictions differ in classes or target")
        cols = table.to_pydict()
        n = table.num_rows
        k = len(classes) if has_categorical(meta["target"]) else 0
        prob = np.asarray([p for p in cols["prob"]], dtype=np.float64).reshape(n, k)
        parts.append(
            {
                "fold": np.full(n, int(meta["fold"]), dtype=np.int64),
                "seed": np.full(n, int(meta["seed"]), dtype=np.int64),
                "clip_id": np.asarray(cols["clip_id"], dtype=object),
                "method": np.asarray(cols["method"], dtype=object),
                "y": np.asarray(cols["y"], dtype=np.int64),
                "va_true": np.asarray(
                    [cols["valence_true"], cols["arousal_true"]], dtype=np.float64
                ).T.reshape(n, 2),
                "prob": prob,
                "va": np.asarray([cols["valence"], cols["arousal"]], dtype=np.float64).T.reshape(
                    n, 2
                ),
                "source": np.asarray(cols["source"], dtype=object),
            }
        )
    if classes is None or target is None:
        raise EmoflowError("no fused predictions to evaluate")
    joined = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    order = np.lexsort(
        (
            joined["clip_id"].astype(str),
            joined["seed"],
            joined["fold"],
            joined["method"].astype(str),
        )
    )
    return FusedRows(classes, target, **{key: value[order] for key, value in joined.items()})


# --------------------------------------------------------------------------- pure summaries


@dataclass
class MethodSummary:
    """Per-method numbers: per-(fold, seed) metric values and pooled statistics."""

    method: str
    n: int
    fallback: int | None
    per_group: dict[str, list[float]] = field(default_factory=dict)
    accuracy_ci: tuple[float, float] = (float("nan"), float("nan"))
    per_class: dict[str, np.ndarray] | None = None
    confusion: np.ndarray | None = None


def _dim_group_metrics(va_true: np.ndarray, va: np.ndarray) -> dict[str, float]:
    out: dict[str, float] = {}
    r, err = [], []
    for d, name in ((1, "arousal"), (0, "valence")):
        t, p = known_values(va_true[:, d], va[:, d])
        if t.size >= 2:
            out[f"{name}_ccc"] = ccc(t, p)
            r.append(pearson_r(t, p))
            err.append(mae(t, p))
        else:
            out[f"{name}_ccc"] = float("nan")
    out["pearson_r"] = float(np.mean(r)) if r else float("nan")
    out["mae"] = float(np.mean(err)) if err else float("nan")
    return out


def summarise(rows: FusedRows, n_boot: int = 1000, boot_seed: int = 0) -> list[MethodSummary]:
    """One :class:`MethodSummary` per method present, in :data:`METHOD_ORDER`."""
    cat, dim = has_categorical(rows.target), has_dimensional(rows.target)
    k = len(rows.classes)
    summaries = []
    for method in METHOD_ORDER:
        sel = rows.method == method
        if not sel.any():
            continue
        keys = set(zip(rows.fold[sel].tolist(), rows.clip_id[sel].tolist(), strict=True))
        fallback = None
        if method not in BRANCH_METHODS:
            single = sel & (rows.source != "both")
            fallback = len(
                set(zip(rows.fold[single].tolist(), rows.clip_id[single].tolist(), strict=True))
            )
        summary = MethodSummary(method=method, n=len(keys), fallback=fallback)
        groups = sorted(set(zip(rows.fold[sel].tolist(), rows.seed[sel].tolist(), strict=True)))
        metrics: dict[str, list[float]] = {
            m: [] for m in (CAT_METRICS if cat else ()) + (DIM_METRICS if dim else ())
        }
        for fold, seed in groups:
            g = sel & (rows.fold == fold) & (rows.seed == seed)
            if cat:
                t, p = known_classes(rows.y[g], np.argmax(rows.prob[g], axis=1))
                metrics["accuracy"].append(accuracy(t, p))
                metrics["uar"].append(uar(t, p))
                metrics["macro_f1"].append(macro_f1(t, p))
            if dim:
                for name, value in _dim_group_metrics(rows.va_true[g], rows.va[g]).items():
                    metrics[name].append(value)
        summary.per_group = metrics
        if cat:
            t, p = known_classes(rows.y[sel], np.argmax(rows.prob[sel], axis=1))
            summary.accuracy_ci = bootstrap_ci(accuracy, t, p, n=n_boot, seed=boot_seed)
            summary.per_class = per_class_prf(t, p, k)
            summary.confusion = confusion_matrix(t, p, k)
        summaries.append(summary)
    return summaries


# --------------------------------------------------------------------------- rendering


def _display_columns(target: str) -> list[str]:
    cols = ["model", "n"]
    if has_categorical(target):
        cols += [*CAT_METRICS, "accuracy_ci"]
    if has_dimensional(target):
        cols += list(DIM_METRICS)
    return [*cols, "fallback"]


def _display_row(s: MethodSummary, target: str) -> dict[str, str]:
    row = {"model": METHOD_NAMES[s.method], "n": str(s.n)}
    for name, values in s.per_group.items():
        row[name] = format_mean_std(values, DIGITS)
    if has_categorical(target):
        lo, hi = s.accuracy_ci
        row["accuracy_ci"] = (
            "-" if np.isnan(lo) else f"[{format_number(lo, DIGITS)}, {format_number(hi, DIGITS)}]"
        )
    row["fallback"] = "-" if s.fallback is None else str(s.fallback)
    return row


def _header(col: str) -> str:
    return {"model": "Model", "n": "n", "fallback": "Fallback"}.get(col, HEADERS.get(col, col))


def results_markdown(summaries: list[MethodSummary], target: str) -> str:
    """The results table as GitHub Markdown (fixed columns, fixed number format)."""
    cols = _display_columns(target)
    lines = [
        "| " + " | ".join(_header(c) for c in cols) + " |",
        "|" + "|".join(":---" if c == "model" else "---:" for c in cols) + "|",
    ]
    for s in summaries:
        row = _display_row(s, target)
        lines.append("| " + " | ".join(row[c] for c in cols) + " |")
    return "\n".join(lines) + "\n"


_TEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def tex_escape(text: str) -> str:
    """Escape LaTeX special characters; ``±`` becomes ``$\\pm$``."""
    escaped = re.sub(r"[\\&%$#_{}~^]", lambda m: _TEX_ESCAPES[m.group(0)], text)
    return escaped.replace("±", r"$\pm$")


def results_latex(summaries: list[MethodSummary], target: str) -> str:
    """The results table as a booktabs ``tabular`` (needs ``\\usepackage{booktabs}``)."""
    cols = _display_columns(target)
    spec = "".join("l" if c == "model" else "r" for c in cols)
    lines = [
        rf"\begin{{tabular}}{{{spec}}}",
        r"\toprule",
        " & ".join(tex_escape(_header(c)) for c in cols) + r" \\",
        r"\midrule",
    ]
    for s in summaries:
        row = _display_row(s, target)
        lines.append(" & ".join(tex_escape(row[c]) for c in cols) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def _csv_text(header: list[str], rows: list[list[str]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def results_csv(summaries: list[MethodSummary], target: str) -> str:
    """Machine-readable results: one numeric column per statistic, three decimals.

    Columns: method, n, then ``<metric>_mean``/``<metric>_std`` (and
    ``accuracy_ci_low``/``accuracy_ci_high``) in table order, then fallback (blank for
    single-branch rows).
    """
    header = ["method", "n"]
    metric_cols: list[str] = []
    if has_categorical(target):
        metric_cols += list(CAT_METRICS)
    if has_dimensional(target):
        metric_cols += list(DIM_METRICS)
    for m in metric_cols:
        header += [f"{m}_mean", f"{m}_std"]
        if m == "accuracy":
            header += ["accuracy_ci_low", "accuracy_ci_high"]
    header.append("fallback")
    rows = []
    for s in summaries:
        row = [s.method, str(s.n)]
        for m in metric_cols:
            mean, std = mean_std(s.per_group[m])
            row += [format_number(mean, DIGITS), format_number(std, DIGITS)]
            if m == "accuracy":
                row += [format_number(v, DIGITS) for v in s.accuracy_ci]
        row.append("" if s.fallback is None else str(s.fallback))
        rows.append(row)
    return _csv_text(header, rows)


def per_class_csv(summaries: list[MethodSummary], classes: list[str]) -> str:
    """Per-class precision, recall and F1 per method, pooled over folds and seeds."""
    rows = []
    for s in summaries:
        if s.per_class is None:
            continue
        for i, name in enumerate(classes):
            rows.append(
                [
                    s.method,
                    name,
                    str(int(s.per_class["support"][i])),
                    format_number(float(s.per_class["precision"][i]), DIGITS),
                    format_number(float(s.per_class["recall"][i]), DIGITS),
                    format_number(float(s.per_class["f1"][i]), DIGITS),
                ]
            )
    return _csv_text(["method", "class", "support", "precision", "recall", "f1"], rows)


def table_notes(rows: FusedRows, n_boot: int, boot_seed: int) -> str:
    """One paragraph explaining the table's numbers (for summary.md)."""
    groups = len(set(zip(rows.fold.tolist(), rows.seed.tolist(), strict=True)))
    notes = [f"Mean ± sample std over {groups} fold × seed runs."]
    if has_categorical(rows.target):
        notes.append(
            f"Accuracy 95 % CI: percentile bootstrap over the pooled test clips "
            f"({n_boot} resamples, seed {boot_seed})."
        )
    if has_dimensional(rows.target):
        notes.append("Pearson r and MAE are averaged over valence and arousal.")
    notes.append(
        "n: test clips evaluated; Fallback: clips a fusion method predicted from one modality."
    )
    return " ".join(notes) + "\n"


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


def run_evaluate(
    config: dict[str, Any],
    fused_paths: list[Path],
    history_paths: list[Path],
    manifest_path: Path,
    failures_path: Path,
    out_dir: Path,
    provenance: dict[str, Any],
) -> str:
    """Write the report into ``out_dir`` and return the Markdown results table.

    Files: ``results.csv``, ``results.md``, ``results.tex``, ``per_class.csv`` (categorical),
    ``figures/confusion_<method>.png`` (categorical), ``figures/curves_<branch>.png`` (each
    branch with a history file), ``summary.md`` (table, notes, failures, provenance) and
    ``provenance.json``.
    Missing history files are skipped; a missing failures table counts as no failures.
    """
    from emoflow.report_figures import confusion_png, curves_png

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report_cfg = config.get("report", {})
    n_boot = int(report_cfg.get("bootstrap", 1000))
    boot_seed = int(report_cfg.get("seed", 0))

    rows = load_fused([Path(p) for p in fused_paths])
    summaries = summarise(rows, n_boot=n_boot, boot_seed=boot_seed)
    table_md = results_markdown(summaries, rows.target)
    write_text(out_dir / "results.md", table_md)
    write_text(out_dir / "results.csv", results_csv(summaries, rows.target))
    write_text(out_dir / "results.tex", results_latex(summaries, rows.target))

    if has_categorical(rows.target):
        write_text(out_dir / "per_class.csv", per_class_csv(summaries, rows.classes))
        for s in summaries:
            if s.confusion is not None:
                title = f"{METHOD_NAMES[s.method]}: pooled confusion matrix"
                png = confusion_png(s.confusion, rows.classes, title)
                write_bytes(out_dir / "figures" / f"confusion_{s.method}.png", png)

    by_branch: dict[str, list[tuple[str, dict[str, np.ndarray]]]] = {}
    for path in history_paths:
        path = Path(path)
        if not path.exists():
            continue
        branch, label = history_label(path)
        by_branch.setdefault(branch or "model", []).append((label, _read_history(path)))
    for branch in sorted(by_branch):
        png = curves_png(by_branch[branch], f"{branch}: training curves", _metric_name(rows.target))
        write_bytes(out_dir / "figures" / f"curves_{branch}.png", png)

    manifest_clips = pq.read_metadata(manifest_path).num_rows
    failures = _read_failures(Path(failures_path))
    summary = "\n".join(
        [
            "# emoflow report",
            "",
            "## Results",
            "",
            table_md,
            table_notes(rows, n_boot, boot_seed),
            f"Clips in the manifest: {manifest_clips}. "
            f"Classes: {', '.join(rows.classes) if rows.classes else '-'}. "
            f"Target: {rows.target}.",
            "",
            failures_markdown(failures),
            "## Provenance",
            "",
            "```json",
            _json(provenance).rstrip("\n"),
            "```",
            "",
        ]
    )
    write_text(out_dir / "summary.md", summary)
    write_text(out_dir / "provenance.json", _json(provenance))
    return table_md
