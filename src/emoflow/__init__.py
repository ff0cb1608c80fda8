"""emoflow: an offline batch workflow for audio-visual emotion recognition."""

__version__ = "0.1.0"
