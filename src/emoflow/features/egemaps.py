"""eGeMAPS functionals per window (openSMILE through the ``opensmile`` package).

The extended Geneva Minimalistic Acoustic Parameter Set (Eyben et al., 2016): 88 functionals of
pitch, loudness, spectral and voice-quality descriptors per window, the affective-computing
standard. Computed on exactly the windows of the audio stage
(:func:`emoflow.features.audio.cut_windows` on the same decoded track, see
:func:`emoflow.features.featurize.egemaps_features`).

Licence: the ``opensmile`` Python package is MIT, but the openSMILE library it ships is licensed
by audEERING for private, research and educational use only (commercial use needs a licence);
the spec, the README and the report's provenance say so.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

LICENCE = "openSMILE (audEERING): research, educational and private use only; no commercial use"
FEATURE_SETS = ("eGeMAPSv02", "GeMAPSv01b")


def egemaps_spec(egemaps_cfg: dict[str, Any], audio_cfg: dict[str, Any], ffmpeg: str) -> dict:
    """The full parameter set of the eGeMAPS stage (stored in shards, hashed for the cache):
    the feature set, the audio decoding and window grid it shares with the audio stage, and
    the openSMILE version."""
    import opensmile

    shared = ("sample_rate", "window_s", "hop_s", "last_window", "silence_dbfs")
    smile = _smile(egemaps_cfg["feature_set"])
    return {
        "feature_set": egemaps_cfg["feature_set"],
        "feature_level": "Functionals",
        "n_features": len(smile.feature_names),
        **{k: audio_cfg[k] for k in shared},
        "opensmile_version": opensmile.__version__,
        "licence": LICENCE,
        "ffmpeg_version": ffmpeg,
        "decoder": "ffmpeg -ac 1 -ar <sample_rate> -f f32le",
        "dtype": "float32",
    }


@functools.cache
def _smile(feature_set: str) -> Any:
    """The openSMILE extractor of ``feature_set`` (built once per process)."""
    import opensmile

    if feature_set not in FEATURE_SETS:
        raise ValueError(f"unknown openSMILE feature set {feature_set!r}")
    return opensmile.Smile(
        feature_set=getattr(opensmile.FeatureSet, feature_set),
        feature_level=opensmile.FeatureLevel.Functionals,
    )


def feature_names(feature_set: str) -> list[str]:
    """The functionals' names, in column order."""
    return list(_smile(feature_set).feature_names)


def load(spec: dict[str, Any]) -> None:
    """Build the extractor now (once per process; forked workers inherit it)."""
    _smile(spec["feature_set"])


def functionals(segments: np.ndarray, spec: dict[str, Any]) -> np.ndarray:
    """``(W, n_features)`` float32: the functionals of each window, each computed on its own."""
    smile = _smile(spec["feature_set"])
    rate = int(spec["sample_rate"])
    rows = [
        smile.process_signal(np.asarray(seg, np.float32), rate).to_numpy()[0] for seg in segments
    ]
    out = np.asarray(rows, dtype=np.float32).reshape(len(segments), int(spec["n_features"]))
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)
