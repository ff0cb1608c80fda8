"""Training: learning on synthetic shards, the predictions contract, byte-identical reruns,
kill-and-resume, other targets and the model bundle."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from emoflow.errors import EmoflowError, SpecMismatchError
from emoflow.models.bundle import FORMAT_VERSION, build_model, load_bundle, save_bundle
from emoflow.protocols.folds import make_folds
from emoflow.storage.shards import open_shards
from emoflow.training.normalisation import face_model_input, normalise_audio
from emoflow.training.runtime import STOP_ENV, TrainingInterrupted
from emoflow.training.train import run_training, selection_key
from emoflow.training.windows import face_windows

sys.path.insert(0, str(Path(__file__).parent))
from shardmaker import CLASSES, make_config, make_corpus, make_manifest  # noqa: E402

OUTPUTS = ("model.pt", "history.csv", "predictions.parquet")
SETTINGS = {"audio": {"epochs": 4}, "visual": {"epochs": 8, "lr": 0.01}, "au": {"epochs": 6}}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folds = make_folds(make_manifest(), make_config()["folds"])
    fold0 = folds[folds.fold == 0]
    test_ids = sorted(fold0.loc[fold0.role == "test", "clip_id"])
    val_ids = sorted(fold0.loc[fold0.role == "val", "clip_id"])
    train_ids = sorted(fold0.loc[fold0.role == "train", "clip_id"])
    root = tmp_path_factory.mktemp("corpus")
    c = make_corpus(root, missing=(val_ids[0],), no_face=(test_ids[0],))
    # the au branch trains on the OpenFace values stored in the face shards
    c.update(root=root, missing=val_ids[0], no_face=test_ids[0], test_ids=test_ids,
             val_ids=val_ids, train_ids=train_ids, au=c["visual"])  # fmt: skip
    return c


def train(corpus: dict[str, Any], branch: str, out: Path, **settings: Any) -> Path:
    config = make_config(**{**SETTINGS[branch], **settings})
    run_training(config, branch, 0, 0, corpus["manifest"], corpus["folds"], corpus[branch], out)
    return out


@pytest.fixture(scope="module")
def reference(corpus: dict[str, Any]) -> dict[str, Path]:
    return {b: train(corpus, b, corpus["root"] / f"ref-{b}") for b in ("audio", "visual", "au")}


def read_bytes(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in OUTPUTS}


def accuracy(predictions: pd.DataFrame, part: str) -> float:
    rows = predictions[predictions.part == part]
    return float((np.stack(rows.prob).argmax(axis=1) == rows.y).mean())


@pytest.mark.parametrize("branch", ["audio", "visual", "au"])
def test_learns_and_writes_the_contract(
    corpus: dict[str, Any], reference: dict[str, Path], branch: str
) -> None:
    out = reference[branch]
    history = pd.read_csv(out / "history.csv")
    assert list(history.columns) == ["epoch", "train_loss", "val_loss", "val_metric"]
    assert history["epoch"].tolist() == list(range(1, SETTINGS[branch]["epochs"] + 1))
    assert history["train_loss"].iloc[-1] < 0.7 * history["train_loss"].iloc[0]
    assert not (out / "checkpoint.pt").exists()

    table = pq.read_table(out / "predictions.parquet")
    assert [(f.name, str(f.type)) for f in table.schema] == [
        ("clip_id", "string"), ("part", "string"), ("y", "int32"),
        ("valence_true", "float"), ("arousal_true", "float"), ("prob", "list<element: float>"),
        ("valence", "float"), ("arousal", "float"), ("embedding", "list<element: float>"),
    ]  # fmt: skip
    meta = json.loads(table.schema.metadata[b"emoflow"])
    assert meta == {"classes": CLASSES, "branch": branch, "fold": 0, "seed": 0,
                    "target": "categorical"}  # fmt: skip
    preds = table.to_pandas()
    # a clip without any face window has no visual prediction (fusion uses its audio)
    no_visual = corpus["no_face"] if branch in ("visual", "au") else None
    expected = [("test", c) for c in corpus["test_ids"] if c != no_visual]
    expected += [("train", c) for c in corpus["train_ids"]]  # feature fusion's fitting clips
    expected += [("val", c) for c in corpus["val_ids"] if c != corpus["missing"]]
    assert list(zip(preds.part, preds.clip_id, strict=True)) == expected
    assert np.allclose(np.stack(preds.prob).sum(axis=1), 1.0, atol=1e-5)
    assert preds["valence"].isna().all() and preds["arousal"].isna().all()
    assert preds["valence_true"].notna().all()
    assert {len(e) for e in preds.embedding} == {16}
    assert accuracy(preds, "test") >= 0.66  # chance is 1/3


@pytest.mark.parametrize("branch", ["audio", "visual", "au"])
def test_rerun_is_byte_identical(
    corpus: dict[str, Any], reference: dict[str, Path], branch: str, tmp_path: Path
) -> None:
    again = train(corpus, branch, tmp_path / "again")
    assert read_bytes(again) == read_bytes(reference[branch])


def test_kill_and_resume_is_byte_identical(
    corpus: dict[str, Any], reference: dict[str, Path], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    out = tmp_path / "resumed"
    monkeypatch.setenv(STOP_ENV, "2")
    with pytest.raises(TrainingInterrupted):
        train(corpus, "audio", out)
    assert (out / "checkpoint.pt").exists()
    assert not any((out / name).exists() for name in OUTPUTS)
    monkeypatch.delenv(STOP_ENV)
    train(corpus, "audio", out)
    assert read_bytes(out) == read_bytes(reference["audio"])


def test_checkpoint_is_device_neutral(
    corpus: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every tensor of a checkpoint is a CPU tensor (model, optimizer moments, RNG), so one
    written on a GPU resumes on a CPU and vice versa (both load with map_location and move the
    state to the run's device)."""
    from emoflow.training.checkpoint import to_cpu

    out = tmp_path / "ckpt"
    monkeypatch.setenv(STOP_ENV, "1")
    with pytest.raises(TrainingInterrupted):
        train(corpus, "visual", out)
    found: list[torch.Tensor] = []

    def walk(obj: Any) -> None:
        if isinstance(obj, torch.Tensor):
            found.append(obj)
        elif isinstance(obj, dict):
            for v in obj.values():
                walk(v)
        elif isinstance(obj, list | tuple):
            for v in obj:
                walk(v)

    raw = torch.load(out / "checkpoint.pt", weights_only=True)  # no map_location
    walk(raw)
    assert found and all(t.device.type == "cpu" for t in found)
    assert set(raw) >= {"model", "optimizer", "scaler", "rng", "state"}
    assert len(raw["optimizer"]["state"]) > 0  # Adam moments are in it
    moved = to_cpu({"a": [torch.ones(2)], "b": (torch.zeros(1), 3)})
    assert moved["b"][1] == 3 and moved["a"][0].device.type == "cpu"


def test_mixed_precision_keeps_the_prediction_format(
    corpus: dict[str, Any], reference: dict[str, Path], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """Under autocast (bfloat16 on the CPU here, as on a GPU) the model computes in low
    precision, but evaluation outputs and predictions.parquet stay float32."""
    from emoflow.training import evaluate as evaluate_mod
    from emoflow.training.datasets import FaceClips
    from emoflow.training.evaluate import evaluate
    from emoflow.training.outputs import write_predictions
    from emoflow.training.targets import clip_targets

    used = []

    def cpu_autocast(device: torch.device, amp_dtype: torch.dtype | None) -> Any:
        used.append(amp_dtype)
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp_dtype is not None)

    monkeypatch.setattr(evaluate_mod, "autocast", cpu_autocast)
    bundle = load_bundle(reference["visual"] / "model.pt")
    model = build_model(bundle)
    shards = open_shards(corpus["visual"], "faces")
    targets = clip_targets(pd.read_parquet(corpus["manifest"]), CLASSES)
    ds = FaceClips(shards, corpus["test_ids"], targets, bundle["norm"]["size"])
    cpu = torch.device("cpu")
    low = evaluate(model, "visual", ds, 8, cpu, bundle["norm"], amp_dtype=torch.bfloat16)
    full = evaluate(model, "visual", ds, 8, cpu, bundle["norm"], amp_dtype=None)
    assert set(used) == {torch.bfloat16, None}  # both passes went through the autocast hook
    assert low.logits.dtype == full.logits.dtype == np.float32
    assert low.embedding.dtype == np.float32
    assert 0 < np.abs(low.logits - full.logits).max() < 0.5  # low precision, same model
    meta = {"classes": CLASSES, "branch": "visual", "fold": 0, "seed": 0, "target": "categorical"}
    write_predictions(tmp_path / "low.parquet", {"test": low}, meta)
    write_predictions(tmp_path / "full.parquet", {"test": full}, meta)
    assert pq.read_schema(tmp_path / "low.parquet") == pq.read_schema(tmp_path / "full.parquet")


def test_cuda_without_a_gpu_is_a_clear_error_and_auto_falls_back() -> None:
    from emoflow.training.runtime import select_device

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: cuda is valid here")
    with pytest.raises(EmoflowError, match="train.device is 'cuda' but no CUDA device"):
        select_device({"device": "cuda"})
    assert select_device({"device": "auto"}).type == "cpu"
    assert select_device({"device": "cpu"}).type == "cpu"


_CHILD = """
import sys
sys.path.insert(0, {tests!r})
from pathlib import Path
from shardmaker import make_config
from emoflow.training.train import run_training
import logging
logging.basicConfig(level=logging.INFO)
config = make_config(**{settings!r})
run_training(config, "visual", 0, 0, Path({manifest!r}), Path({folds!r}),
             [Path(p) for p in {shards!r}], Path({out!r}))
"""


def test_sigkill_and_resume_is_byte_identical(
    corpus: dict[str, Any], reference: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "killed"
    code = _CHILD.format(
        tests=str(Path(__file__).parent), settings=SETTINGS["visual"],
        manifest=str(corpus["manifest"]), folds=str(corpus["folds"]),
        shards=[str(p) for p in corpus["visual"]], out=str(out),
    )  # fmt: skip
    env = {**os.environ, STOP_ENV: "3:kill"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=120)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    assert b"epoch 3/8" in proc.stderr and b"epoch 4/8" not in proc.stderr
    assert (out / "checkpoint.pt").exists() and not (out / "model.pt").exists()
    train(corpus, "visual", out)
    assert read_bytes(out) == read_bytes(reference["visual"])


@pytest.mark.parametrize("target", ["dimensional", "both"])
def test_dimensional_targets(corpus: dict[str, Any], tmp_path: Path, target: str) -> None:
    out = train(corpus, "audio", tmp_path / target, target=target, epochs=2)
    table = pq.read_table(out / "predictions.parquet")
    preds = table.to_pandas()
    meta = json.loads(table.schema.metadata[b"emoflow"])
    assert meta["target"] == target
    assert preds["valence"].notna().all() and preds["arousal"].notna().all()
    assert preds["valence"].abs().max() <= 1.0
    if target == "dimensional":
        assert meta["classes"] == [] and {len(p) for p in preds.prob} == {0}
        assert (preds.y == -1).all()
    else:
        assert {len(p) for p in preds.prob} == {3}
    history = pd.read_csv(out / "history.csv")
    assert history["val_metric"].notna().all()


def test_bundle_round_trip(corpus: dict[str, Any], reference: dict[str, Path]) -> None:
    raw = torch.load(reference["audio"] / "model.pt", map_location="cpu", weights_only=True)
    assert raw["format"] == "emoflow-model" and raw["format_version"] == FORMAT_VERSION
    bundle = load_bundle(reference["audio"] / "model.pt")
    assert set(bundle) == {"format", "format_version", "branch", "arch", "state_dict", "classes",
                           "target", "norm", "spec", "emoflow_version", "train_config"}  # fmt: skip
    assert bundle["classes"] == CLASSES and bundle["arch"]["name"] == "vgg"
    assert bundle["spec"] == open_shards(corpus["audio"], "audio").spec
    preds = pd.read_parquet(reference["audio"] / "predictions.parquet").set_index("clip_id")
    model = build_model(bundle)
    shards = open_shards(corpus["audio"], "audio")
    for clip_id in corpus["test_ids"][:3]:
        x = normalise_audio(shards.get(clip_id).logmel, bundle["norm"])[:, None]
        with torch.no_grad():
            prob = torch.softmax(model(x)["logits"].mean(dim=0), dim=0).numpy()
        assert np.allclose(prob, preds.loc[clip_id, "prob"], atol=1e-5)

    visual = load_bundle(reference["visual"] / "model.pt")
    norm = visual["norm"]
    model = build_model(visual)
    faces = open_shards(corpus["visual"], "faces")
    preds = pd.read_parquet(reference["visual"] / "predictions.parquet").set_index("clip_id")
    clip_id = corpus["test_ids"][1]
    rec = faces.get(clip_id)
    x, mask = face_windows(rec, 4, norm["size"], norm["gray"])
    assert x.dtype == torch.uint8  # uint8 until the model's device
    with torch.no_grad():
        emb = (
            model(face_model_input(x, norm), mask)["embedding"].mean(dim=0).numpy()
        )  # pooled over the windows
    assert np.allclose(emb, preds.loc[clip_id, "embedding"], atol=1e-5)


def test_bundle_rejects_other_formats(tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    torch.save({"format": "something-else"}, path)
    with pytest.raises(SpecMismatchError, match="not an emoflow model bundle"):
        load_bundle(path)
    save_bundle(path, branch="audio", arch={"name": "vgg", "n_classes": 2}, state_dict={},
                classes=["a", "b"], target="categorical", norm={}, spec={},
                train_config={})  # fmt: skip
    bundle = torch.load(path, weights_only=True)
    bundle["format_version"] = FORMAT_VERSION + 1
    torch.save(bundle, path)
    with pytest.raises(SpecMismatchError, match="format version 2"):
        load_bundle(path)
    with pytest.raises(TypeError, match="cannot go into a model bundle"):
        save_bundle(path, branch="audio", arch={"x": object()}, state_dict={}, classes=[],
                    target="categorical", norm={}, spec={}, train_config={})  # fmt: skip


def test_selection_prefers_metric_then_loss() -> None:
    assert selection_key(0.8, 0.5) > selection_key(0.7, 0.1)
    assert selection_key(0.8, 0.4) > selection_key(0.8, 0.5)
    assert selection_key(float("nan"), 0.4) < selection_key(0.0, 9.0)


def test_loader_workers_give_the_same_outputs(
    corpus: dict[str, Any], reference: dict[str, Path], tmp_path: Path
) -> None:
    out = train(corpus, "audio", tmp_path / "workers", num_workers=2)
    mine, ref = read_bytes(out), read_bytes(reference["audio"])
    # model.pt differs only in the recorded train_config (num_workers)
    assert mine["predictions.parquet"] == ref["predictions.parquet"]
    assert mine["history.csv"] == ref["history.csv"]
