"""Evaluation protocols: speaker-independent folds, official splits, fold files, the leakage
check."""
