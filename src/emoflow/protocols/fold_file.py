"""``folds.file``: a user's CSV that fixes the folds, so a paper's exact split is reproduced.

Columns: ``role`` (``train``, ``val`` or ``test``), ``fold`` (an integer; optional, default 0)
and one key column, ``clip_id`` or ``speaker`` (every clip of the speaker takes the row's role
in that fold). Clips the file does not list take no part in that fold; listed clips without a
usable target are left out like everywhere else. An id the clip table does not know is an error
naming it, never skipped.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from emoflow.errors import EmoflowError

FILE_ROLES = ("train", "val", "test")


def read_fold_file(path: Path) -> pd.DataFrame:
    """Read and check the fold CSV; columns ``fold``, ``key`` (``clip_id`` or ``speaker``),
    ``value`` and ``role``."""
    path = Path(path)
    if not path.is_file():
        raise EmoflowError(f"folds.file {path} does not exist")
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    keys = [c for c in ("clip_id", "speaker") if c in raw.columns]
    if len(keys) != 1 or "role" not in raw.columns:
        raise EmoflowError(
            f"{path.name}: needs a 'role' column and exactly one of 'clip_id' or 'speaker' "
            f"(found columns {', '.join(raw.columns)})"
        )
    unknown_cols = sorted(set(raw.columns) - {"fold", "role", *keys})
    if unknown_cols:
        raise EmoflowError(f"{path.name}: unknown column(s) {', '.join(unknown_cols)}")
    roles = raw["role"].str.strip().str.lower()
    bad = sorted(set(roles) - set(FILE_ROLES))
    if bad:
        raise EmoflowError(f"{path.name}: role(s) {', '.join(bad)} (use train, val, test)")
    folds = raw["fold"] if "fold" in raw.columns else pd.Series("0", index=raw.index)
    if not folds.str.fullmatch(r"\d+").all():
        raise EmoflowError(f"{path.name}: the fold column must hold non-negative integers")
    return pd.DataFrame(
        {
            "fold": folds.astype(int),
            "key": keys[0],
            "value": raw[keys[0]].str.strip(),
            "role": roles,
        }
    )


def folds_from_file(table: pd.DataFrame, path: Path) -> pd.DataFrame:
    """The fold rows the file describes for ``table`` (columns clip_id, speaker, usable)."""
    spec = read_fold_file(path)
    key = spec["key"].iloc[0] if len(spec) else "clip_id"
    known = (
        set(table["clip_id"]) if key == "clip_id" else set(table["speaker"].dropna().astype(str))
    )
    unknown = sorted(set(spec["value"]) - known)
    if unknown:
        shown = ", ".join(unknown[:10]) + (
            f" … ({len(unknown)} in all)" if len(unknown) > 10 else ""
        )
        raise EmoflowError(f"{Path(path).name}: {key}(s) not in the clip table: {shown}")
    twice = spec.duplicated(["fold", "value"])
    if twice.any():
        raise EmoflowError(
            f"{Path(path).name}: listed twice in one fold: "
            + ", ".join(sorted(spec.loc[twice, "value"])[:10])
        )
    usable = table[table["usable"]].copy()
    usable["value"] = usable["clip_id"] if key == "clip_id" else usable["speaker"].astype(str)
    rows = spec.merge(usable[["clip_id", "speaker", "value"]], on="value", how="inner")
    return rows[["fold", "clip_id", "speaker", "role"]].reset_index(drop=True)
