"""The tables of a study of several corpora: per protocol, one table per test corpus.

Each protocol's folds are pooled (every clip is tested once per protocol) and scored per test
corpus with the same rows, intervals and seed spread as a one-corpus table; ``pooled`` adds an
``all corpora`` table. A test corpus gets the rows that predicted it: a branch whose modality
the corpus lacks has none, and a fusion row appears only where some of its clips had every
fused branch. A corpus table also says how many clips each corpus gave and how many its label
map dropped or left unmapped.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd

from emoflow.branches import is_fused
from emoflow.evaluation.fused_rows import FusedRows
from emoflow.evaluation.tables import results_csv
from emoflow.fusion.methods import METHODS
from emoflow.protocols.study_folds import PROTOCOL_ORDER
from emoflow.study import corpus_of

ALL = "all corpora"
_ARRAYS = ("fold", "seed", "clip_id", "method", "y", "va_true", "prob", "va", "source", "part")


def select(rows: FusedRows, mask: np.ndarray) -> FusedRows:
    """The rows of ``mask``, with the fusion records of their folds; a fusion method keeps
    its rows only when some of them fused two or more branches."""
    mask = mask.copy()
    for method in METHODS:
        mine = mask & (rows.method == method)
        if mine.any() and not any(is_fused(s) for s in rows.source[mine]):
            mask &= rows.method != method
    folds = set(rows.fold[mask].tolist())
    return dataclasses.replace(
        rows,
        **{name: getattr(rows, name)[mask] for name in _ARRAYS},
        problems={k: v for k, v in rows.problems.items() if k[0] in folds},
        fits={k: v for k, v in rows.fits.items() if k[0] in folds},
    )


def sections(
    rows: FusedRows, record: dict[str, dict[str, Any]]
) -> list[tuple[str, str, FusedRows]]:
    """(protocol, test corpus, its rows) of every table, in protocol then corpus order."""
    protocol = np.array([record[str(f)]["protocol"] for f in rows.fold.tolist()], dtype=object)
    corpus = np.array([corpus_of(str(c)) for c in rows.clip_id], dtype=object)
    out = []
    for name in PROTOCOL_ORDER:
        mine = protocol == name
        if not mine.any():
            continue
        for test_corpus in sorted(set(corpus[mine & (rows.part == "test")].tolist())):
            out.append((name, test_corpus, select(rows, mine & (corpus == test_corpus))))
        if name == "pooled":
            out.append((name, ALL, select(rows, mine)))
    return out


def corpus_counts(manifest: pd.DataFrame, failures: pd.DataFrame, names: list[str]) -> str:
    """Markdown: clips per corpus in the clip table, dropped by its label map, unmapped, and
    failed otherwise (any stage)."""
    used = Counter(corpus_of(str(c)) for c in manifest["clip_id"])
    kinds: dict[str, Counter] = {n: Counter() for n in names}
    for clip, kind in zip(failures["clip_id"], failures["kind"], strict=True):
        kinds.setdefault(corpus_of(str(clip)), Counter())[str(kind)] += 1
    lines = [
        "| Corpus | Clips | Dropped by its label map | Unmapped label | Other failures |",
        "|:---|---:|---:|---:|---:|",
    ]
    for n in names:
        k = kinds[n]
        other = sum(k.values()) - k["label_dropped"] - k["bad_label"]
        lines.append(f"| {n} | {used[n]} | {k['label_dropped']} | {k['bad_label']} | {other} |")
    return "\n".join(lines) + "\n"


def section_title(protocol: str, corpus: str) -> str:
    """The heading of one table."""
    what = {
        "within": f"within {corpus} (trained and tested on {corpus})",
        "pooled": f"pooled folds over the union, test clips of {corpus}"
        if corpus != ALL
        else "pooled folds over the union, all test clips",
        "cross": f"cross-corpus: trained on the other corpora, tested on {corpus}",
    }[protocol]
    return f"### Protocol {protocol}: {what}"


def study_csv(parts: list[tuple[str, str, Any, dict[str, str], str, bool]]) -> str:
    """results.csv of a study: every table's rows with ``protocol`` and ``test_corpus``."""
    lines: list[str] = []
    for protocol, corpus, ev, fusion, target, omg in parts:
        text = results_csv(ev, target, omg, fusion).splitlines()
        if not lines:
            lines.append("protocol,test_corpus," + text[0])
        lines += [f"{protocol},{corpus},{line}" for line in text[1:]]
    return "\n".join(lines) + "\n"
