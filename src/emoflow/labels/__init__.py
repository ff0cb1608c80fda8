"""Time-continuous labels: where a clip's per-frame or per-timestamp labels come from
(:mod:`emoflow.labels.tracks`), the targets of each analysis window
(:mod:`emoflow.labels.windows`) and the mapping of window outputs back to frames."""
