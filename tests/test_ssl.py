"""The ssl stage: a local self-supervised speech encoder's window embeddings (tiny wav2vec 2.0
saved here with save_pretrained: the real loading and embedding code, no network)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from emoflow.config import validate_config
from emoflow.datasets.manifest import refresh
from emoflow.errors import ConfigError, SpecMismatchError
from emoflow.extraction.shard_job import run_shard
from emoflow.extraction.specs import stage_spec
from emoflow.features.ssl_speech import check_weights, embeddings
from emoflow.models.vectors import WindowMLP
from emoflow.paths import Layout
from emoflow.storage.shards import open_shards
from tests.encoders import tiny_wav2vec2
from tests.mediagen import make_clip


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_wav2vec2(tmp_path_factory.mktemp("enc") / "tiny-w2v2")


def cfg(model: Path, root: str = ".", **ssl: object) -> dict:
    raw = {"dataset": {"name": "x", "adapter": "ravdess", "root": root},
           "ssl": {"model_path": str(model), **ssl}}  # fmt: skip
    return validate_config(raw)


def test_spec_names_the_model_and_its_weights(model: Path) -> None:
    spec = stage_spec(cfg(model), "ssl")
    assert spec["model_type"] == "wav2vec2" and spec["n_layers"] == 3
    assert spec["hidden_size"] == 32 and spec["n_features"] == 32 and spec["layer"] == -1
    assert list(spec["weights_sha256"]) == ["model.safetensors"]
    assert str(model) not in json.dumps(spec)  # the spec names the model by hashes, not paths
    assert stage_spec(cfg(model, layer="weighted"), "ssl")["n_features"] == 3 * 32
    with pytest.raises(ConfigError, match="outside the model's 3 hidden states"):
        stage_spec(cfg(model, layer=5), "ssl")
    with pytest.raises(ConfigError, match="ssl.model_path"):
        stage_spec(validate_config({"dataset": {"name": "x", "adapter": "ravdess", "root": "."}}),
                   "ssl")  # fmt: skip
    with pytest.raises(ConfigError, match="no config.json"):
        stage_spec(cfg(model.parent), "ssl")


def test_embeddings_are_the_mean_hidden_state(model: Path) -> None:
    from transformers import Wav2Vec2Model

    x = np.random.default_rng(0).normal(0, 0.1, (3, 48000)).astype(np.float32)
    spec = stage_spec(cfg(model, layer=1, batch_windows=2), "ssl")
    got = embeddings(x, spec, model)
    assert got.shape == (3, 32) and got.dtype == np.float32
    ref = Wav2Vec2Model.from_pretrained(model, local_files_only=True).eval()
    with torch.inference_mode():
        xn = torch.as_tensor(x[2:3])
        xn = (xn - xn.mean()) / torch.sqrt(xn.var(unbiased=False) + 1e-7)
        want = ref(xn, output_hidden_states=True).hidden_states[1].mean(dim=1)[0].numpy()
    np.testing.assert_allclose(got[2], want, rtol=1e-4, atol=1e-5)
    weighted = embeddings(x, stage_spec(cfg(model, layer="weighted"), "ssl"), model)
    np.testing.assert_allclose(weighted[:, 32:64], got, rtol=1e-4, atol=1e-5)  # layer 1


def test_other_weights_are_refused(model: Path, tmp_path: Path) -> None:
    spec = stage_spec(cfg(model), "ssl")
    other = tiny_wav2vec2(tmp_path / "other", seed=1)
    check_weights(model, spec)
    with pytest.raises(SpecMismatchError, match="not the one the features were made with"):
        check_weights(other, spec)
    assert stage_spec(cfg(other), "ssl")["weights_sha256"] != spec["weights_sha256"]


def test_layer_weighting_model() -> None:
    m = WindowMLP(in_dim=3 * 4, n_classes=2, layers=3, embedding_dim=8, hidden=8).eval()
    x = torch.zeros(2, 12)
    x[:, 4:8] = 1.0  # only layer 1 carries signal
    with torch.no_grad():
        m.layer_logits[:] = torch.tensor([-50.0, 50.0, -50.0])
        a = m(x)["logits"]
        b = m(torch.ones(2, 4).repeat(1, 3))["logits"]  # every layer equal to layer 1
    torch.testing.assert_close(a, b)


def test_shard_job(model: Path, tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    root.mkdir()
    make_clip(root / "03-01-03-01-01-01-01.wav", 3.5, video=False, audio_codec="pcm_s16le")
    make_clip(root / "03-01-04-01-01-01-02.wav", 1.0, video=False, audio_codec="pcm_s16le")
    c = validate_config({"dataset": {"name": "t", "adapter": "ravdess", "root": str(root)},
                         "results": str(tmp_path / "r"), "shards": 1,
                         "ssl": {"model_path": str(model), "device": "cpu"}})  # fmt: skip
    refresh(c)
    out = run_shard(c, "ssl", 0, workers=2)
    assert out["with_features"] == 2 and out["failures"] == []
    shards = open_shards([Layout.of(c).shard("ssl", 0)], "ssl")
    long, short = (shards.get(f"03-01-0{i}-01-01-01-0{i - 2}") for i in (3, 4))
    assert long.vectors.shape == (2, 32) and short.vectors.shape == (1, 32) and short.padded
    assert shards.spec["weights_sha256"] == stage_spec(c, "ssl")["weights_sha256"]
