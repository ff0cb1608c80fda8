"""Self-supervised speech encoder embeddings per window (wav2vec 2.0, HuBERT, WavLM).

The encoder comes from a local folder (``ssl.model_path``: what ``save_pretrained`` writes, or a
snapshot folder of a local Hugging Face cache) and is loaded with ``local_files_only``: nothing
is ever downloaded. Each window of the audio stage's grid goes through the encoder; its
embedding is the mean over time of one hidden layer (``ssl.layer``), or of every layer
(``ssl.layer: weighted``: the branch model then learns a softmax-weighted sum of the layers,
as in SUPERB). The spec records the model's config hash and the weights' sha256, so another
model (or other weights) in the same folder recomputes the stage.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import numpy as np

from emoflow.config import stable_hash
from emoflow.errors import ConfigError, SpecMismatchError
from emoflow.storage.file_memo import file_sha256

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def model_folder(ssl_cfg: dict[str, Any]) -> Path:
    """The configured encoder folder (checked: it must hold ``config.json`` and weights)."""
    path = ssl_cfg.get("model_path")
    if not path:
        raise ConfigError(
            "the ssl branch needs ssl.model_path: a local encoder folder (save_pretrained "
            "output or a hub cache snapshot); nothing is downloaded"
        )
    folder = Path(path).expanduser()
    if not (folder / "config.json").is_file():
        raise ConfigError(f"ssl.model_path {folder} has no config.json: not a model folder")
    if not weight_files(folder):
        raise ConfigError(f"ssl.model_path {folder} has no {' or '.join(WEIGHT_FILES)} "
                          "(sharded weights: *.safetensors files)")  # fmt: skip
    return folder


def weight_files(folder: Path) -> list[Path]:
    """The weight files of a model folder (single or sharded safetensors, or a .bin)."""
    single = [folder / n for n in WEIGHT_FILES if (folder / n).is_file()]
    return single[:1] or sorted(folder.glob("model-*.safetensors"))


def weights_sha256(folder: Path) -> dict[str, str]:
    """``{file name: sha256}`` of the folder's weights (:func:`file_sha256`: hub-cache symlinks
    resolved to their blobs, each hashed once while it stays the same)."""
    return {f.name: file_sha256(f) for f in weight_files(folder)}


def ssl_spec(ssl_cfg: dict[str, Any], audio_cfg: dict[str, Any], ffmpeg: str) -> dict:
    """The full parameter set of the ssl stage: model identity (config hash, weights sha256),
    layer choice, input normalisation, and the decoding and grid shared with the audio stage."""
    import torch
    import transformers

    folder = model_folder(ssl_cfg)
    model_cfg = json.loads((folder / "config.json").read_text("utf-8"))
    layers = int(model_cfg.get("num_hidden_layers", 0)) + 1  # the CNN features' projection too
    hidden = int(model_cfg.get("hidden_size", 0))
    layer = ssl_cfg["layer"]
    if layer != "weighted" and not -layers <= int(layer) < layers:
        raise ConfigError(f"ssl.layer {layer} is outside the model's {layers} hidden states")
    pre = folder / "preprocessor_config.json"
    extractor = json.loads(pre.read_text("utf-8")) if pre.is_file() else {}
    rate = int(extractor.get("sampling_rate", audio_cfg["sample_rate"]))
    if rate != int(audio_cfg["sample_rate"]):
        raise ConfigError(f"the ssl model expects {rate} Hz audio, audio.sample_rate is "
                          f"{audio_cfg['sample_rate']}")  # fmt: skip
    shared = ("sample_rate", "window_s", "hop_s", "last_window", "silence_dbfs")
    return {
        "model_type": model_cfg.get("model_type"),
        "model_config_hash": stable_hash(model_cfg),
        "weights_sha256": weights_sha256(folder),
        "layer": layer,
        "n_layers": layers,
        "hidden_size": hidden,
        "n_features": hidden * (layers if layer == "weighted" else 1),
        "normalize": bool(extractor.get("do_normalize", True)),
        "pooling": "mean over time",
        "batch_windows": int(ssl_cfg["batch_windows"]),
        **{k: audio_cfg[k] for k in shared},
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "ffmpeg_version": ffmpeg,
        "decoder": "ffmpeg -ac 1 -ar <sample_rate> -f f32le",
        "dtype": "float32",
    }


def check_weights(folder: Path, spec: dict[str, Any]) -> None:
    """Refuse a folder whose weights are not the ones the spec (a shard, a bundle) records."""
    here = weights_sha256(folder)
    if here != spec["weights_sha256"]:
        raise SpecMismatchError(
            f"the ssl encoder in {folder} is not the one the features were made with "
            f"(weights sha256 {here} vs {spec['weights_sha256']})"
        )


def device_of(ssl_cfg: dict[str, Any]) -> str:
    """``cuda`` when configured or (``auto``) available, else ``cpu``."""
    import torch

    want = ssl_cfg.get("device", "auto")
    return "cuda" if want == "cuda" or (want == "auto" and torch.cuda.is_available()) else "cpu"


@functools.cache
def _encoder(folder: str, device: str) -> Any:
    import transformers
    from transformers import AutoModel

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    model = AutoModel.from_pretrained(folder, local_files_only=True)
    return model.eval().to(device)


def load(folder: Path, device: str = "cpu") -> None:
    """Load the encoder now (once per process)."""
    _encoder(str(folder), device)


def embeddings(
    segments: np.ndarray, spec: dict[str, Any], folder: Path, device: str = "cpu"
) -> np.ndarray:
    """``(W, n_features)`` float32: each window's mean hidden state of the chosen layer (or of
    every layer, concatenated in layer order, for ``weighted``); ``batch_windows`` at a time."""
    import torch

    model = _encoder(str(folder), device)
    out = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread per extraction worker; sums independent of the pool
    try:
        _embed(model, segments, spec, device, out)
    finally:
        torch.set_num_threads(threads)
    return np.concatenate(out).astype(np.float32).reshape(len(segments), int(spec["n_features"]))


def _embed(model: Any, segments: np.ndarray, spec: dict, device: str, out: list) -> None:
    import torch

    with torch.inference_mode():
        for lo in range(0, len(segments), int(spec["batch_windows"])):
            x = torch.as_tensor(np.asarray(segments[lo : lo + int(spec["batch_windows"])]))
            if spec["normalize"]:  # as Wav2Vec2FeatureExtractor: zero mean, unit variance
                x = (x - x.mean(dim=1, keepdim=True)) / torch.sqrt(
                    x.var(dim=1, keepdim=True, unbiased=False) + 1e-7
                )
            states = model(x.to(device), output_hidden_states=True).hidden_states
            if spec["layer"] == "weighted":
                pooled = torch.stack([h.mean(dim=1) for h in states], dim=1).flatten(1)
            else:
                pooled = states[int(spec["layer"])].mean(dim=1)
            out.append(pooled.float().cpu().numpy())
