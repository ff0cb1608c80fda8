"""Evaluation: metrics, the speaker-level bootstrap, scoring, tables, figures and the report."""
