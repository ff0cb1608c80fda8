"""emoflow: an offline batch workflow for audio-visual emotion recognition."""

from emoflow.numerics import pin_cpu_numerics

__version__ = "0.1.0"

pin_cpu_numerics()  # before torch or numpy's BLAS load (see emoflow.numerics)
