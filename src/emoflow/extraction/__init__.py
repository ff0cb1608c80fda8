"""Extraction jobs: a stage's spec, its compute job (every missing clip, once), its shard jobs and
the failures table."""
