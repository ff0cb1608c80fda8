"""A decoded track's grid windows as the decode goes: memory is one window and one decoded
block, whatever the track's length.

The windows are those of :func:`emoflow.features.audio.window_views` on the whole track, sample
for sample: every full window as soon as its last sample is decoded, then (at the end, when the
track's length is known) the zero-padded last window that :func:`emoflow.media.grid.window_starts`
keeps. The track's level is summed on the way (:class:`emoflow.features.audio.PowerSum`), so the
silence check needs no second pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from emoflow.features.audio import PowerSum
from emoflow.media.grid import window_starts


class TrackWindows:
    """Cut a track that arrives in blocks into the grid's windows (:meth:`windows`); after the
    last window, :attr:`n_samples`, :attr:`starts` (samples) and :attr:`power` describe it."""

    def __init__(self, sample_rate: int, window_s: float, hop_s: float, last_window: str) -> None:
        self.win = int(round(window_s * sample_rate))
        self.hop = int(round(hop_s * sample_rate))
        self.last_window = last_window
        self.power = PowerSum()
        self.starts = np.zeros(0, np.int64)

    @property
    def n_samples(self) -> int:
        return self.power.n

    def windows(self, blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Each window's ``win`` float32 samples, in order (a view, valid until the next one)."""
        buf = np.zeros(0, np.float32)
        offset = 0  # the track's sample index of buf[0]
        start = 0  # the next full window's first sample
        for block in blocks:
            self.power.add(block)
            keep = min(start - offset, len(buf))  # samples before the next window are done
            buf = np.concatenate([buf[keep:], np.asarray(block, np.float32)])
            offset += keep
            while start + self.win <= offset + len(buf):
                yield buf[start - offset : start - offset + self.win]
                start += self.hop
        self.starts = window_starts(self.n_samples, self.win, self.hop, self.last_window)
        for s in self.starts[self.starts >= start]:  # past the full windows: zero-padded
            tail = buf[int(s) - offset :]
            yield np.concatenate([tail, np.zeros(self.win - len(tail), np.float32)])
