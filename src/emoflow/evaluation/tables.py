"""Rendering the scored table (:class:`emoflow.evaluation.scoring.Evaluation`) as Markdown, LaTeX
and CSV: fixed row order, fixed columns, three decimals, no times and no paths."""

from __future__ import annotations

import csv
import io
import re

import numpy as np

from emoflow.branches import BRANCH_LABEL
from emoflow.evaluation.metrics import format_number
from emoflow.evaluation.scoring import Evaluation, MethodScores, metric_names, primary_metric

METHOD_NAMES = {
    **BRANCH_LABEL,
    "late": "Late fusion",
    "stacking": "Stacking",
    "feature": "Feature fusion",
}
HEADERS = {
    "accuracy": "Accuracy",
    "uar": "UAR",
    "macro_f1": "Macro-F1",
    "arousal_ccc": "Arousal CCC",
    "valence_ccc": "Valence CCC",
    "pearson_r": "Pearson r",
    "mae": "MAE",
    "omg_arousal_ccc": "Arousal CCC (OMG per video)",
    "omg_valence_ccc": "Valence CCC (OMG per video)",
    "mean_ccc": "mean CCC",
    "video_arousal_ccc": "Arousal CCC (mean per video)",
    "video_valence_ccc": "Valence CCC (mean per video)",
}
DIGITS = 3


def fmt(x: float) -> str:
    """Three decimals, ``-`` for NaN."""
    return format_number(x, DIGITS)


def _interval(lo: float, hi: float) -> str:
    return "" if np.isnan(lo) else f" [{fmt(lo)}, {fmt(hi)}]"


def _signed(x: float) -> str:
    text = fmt(x)
    return text if text.startswith("-") or text == "-" else f"+{text}"


def delta_header(target: str) -> str:
    """The header of the fusion-vs-best-branch column."""
    return f"Δ {HEADERS[primary_metric(target)]} vs best branch"


def display_columns(target: str, omg: bool | str) -> list[str]:
    """Column keys of the Markdown/LaTeX table."""
    return ["model", "n", "missing", *metric_names(target, omg), "delta", "fusion"]


def _header(col: str, target: str) -> str:
    fixed = {"model": "Model", "n": "n", "missing": "Missing", "fusion": "Fusion"}
    if col == "delta":
        return delta_header(target)
    return fixed.get(col, HEADERS.get(col, col))


def _span(values: list[int]) -> str:
    lo, hi = min(values), max(values)
    return str(lo) if lo == hi else f"{lo}–{hi}"


FIT_KINDS = {
    "inner": "out-of-fold, inner folds",
    "training part": "the fold models' embeddings",
    "val": "validation clips",
}


def fit_text(method: str, fits: dict) -> str:
    """What ``method`` was fitted on over the runs' ``fusion_fit`` records: `` on 72 clips, 9
    speakers per fold (out-of-fold, inner folds)``; empty when the runs did not record it."""
    known = [f[method] for f in fits.values() if method in f]
    if not known:
        return ""
    kinds = ", ".join(FIT_KINDS.get(k, k) for k in sorted({f["on"] for f in known}))
    clips = _span([int(f["n_clips"]) for f in known])
    speakers = _span([int(f["n_speakers"]) for f in known])
    return f" on {clips} clips, {speakers} speakers per fold ({kinds})"


def fusion_cell(
    method: str, problems: dict[str, dict[str, str]], runs: int, fits: dict | None = None
) -> str:
    """``fitted on N clips, S speakers per fold (...)`` or ``fallback in r of R runs: reason``
    (``-`` for a branch row)."""
    if method in BRANCH_LABEL:
        return "-"
    failed = {run: p[method] for run, p in problems.items() if method in p}
    if not failed:
        return "fitted" + fit_text(method, fits or {})
    reasons = sorted(set(failed.values()))
    return f"fallback (equal weights) in {len(failed)} of {runs} runs: {reasons[0]}"


def display_row(
    r: MethodScores, ev: Evaluation, target: str, omg: bool | str, fusion: str
) -> dict[str, str]:
    """The cells of one table row."""
    row = {"model": METHOD_NAMES[r.method], "n": str(r.n), "missing": str(r.missing)}
    for m in metric_names(target, omg):
        spread = r.seed_std.get(m, np.nan)
        seeds = f" ±{fmt(spread)}" if ev.n_seeds > 1 and not np.isnan(spread) else ""
        row[m] = fmt(r.point[m]) + _interval(*r.interval[m]) + seeds
    if r.delta is None:
        row["delta"] = "best" if r.method == ev.best_branch else "-"
    else:
        row["delta"] = _signed(r.delta[0]) + _interval(r.delta[1], r.delta[2])
    row["fusion"] = fusion
    return row


def results_markdown(rows: list[dict[str, str]], target: str, omg: bool | str) -> str:
    """The results table as GitHub Markdown."""
    cols = display_columns(target, omg)
    lines = [
        "| " + " | ".join(_header(c, target) for c in cols) + " |",
        "|" + "|".join(":---" if c in ("model", "fusion") else "---:" for c in cols) + "|",
    ]
    for row in rows:
        lines.append("| " + " | ".join(row[c].replace("|", "\\|") for c in cols) + " |")
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
    """Escape LaTeX special characters; ``±`` becomes ``$\\pm$``, ``Δ`` ``$\\Delta$``."""
    escaped = re.sub(r"[\\&%$#_{}~^]", lambda m: _TEX_ESCAPES[m.group(0)], text)
    return escaped.replace("±", r"$\pm$").replace("Δ", r"$\Delta$")


def results_latex(rows: list[dict[str, str]], target: str, omg: bool | str, caption: str) -> str:
    """The results table as a booktabs ``tabular`` (needs ``\\usepackage{booktabs}``), with the
    protocol and interval description as a leading comment."""
    cols = display_columns(target, omg)
    spec = "".join("l" if c in ("model", "fusion") else "r" for c in cols)
    lines = [
        "% " + caption,
        rf"\begin{{tabular}}{{{spec}}}",
        r"\toprule",
        " & ".join(tex_escape(_header(c, target)) for c in cols) + r" \\",
        r"\midrule",
    ]
    for row in rows:
        lines.append(" & ".join(tex_escape(row[c]) for c in cols) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def csv_text(header: list[str], rows: list[list[str]]) -> str:
    """CSV with ``\\n`` line ends."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def results_csv(ev: Evaluation, target: str, omg: bool | str, fusion: dict[str, str]) -> str:
    """Machine-readable results: per metric the point estimate, its interval and the std over
    seeds; then the paired difference to the best branch and the fusion status."""
    metrics = metric_names(target, omg)
    header = ["method", "n", "missing"]
    for m in metrics:
        header += [m, f"{m}_ci_low", f"{m}_ci_high", f"{m}_seed_std"]
    header += ["best_branch", "delta", "delta_ci_low", "delta_ci_high", "fusion"]
    out = []
    for r in ev.rows:
        row = [r.method, str(r.n), str(r.missing)]
        for m in metrics:
            row += [fmt(r.point[m]), *map(fmt, r.interval[m]), fmt(r.seed_std.get(m, np.nan))]
        delta = r.delta or (np.nan, np.nan, np.nan)
        row += [ev.best_branch or "", *map(fmt, delta), fusion[r.method]]
        out.append(row)
    return csv_text(header, out)
