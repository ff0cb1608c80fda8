"""Branch models: output shapes, masking of frames without a face, ResNet-18 weight loading,
losses."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from emoflow.models.arch import build_branch_model
from emoflow.models.audio import (
    AudioResNet18,
    AudioVGG,
    ResNet18Backbone,
    load_torchvision_resnet18,
)
from emoflow.models.losses import ccc, ccc_loss, class_weights, cross_entropy
from emoflow.models.visual import VisualCNNGRU


@pytest.mark.parametrize("target", ["categorical", "dimensional", "both"])
def test_audio_vgg_shapes(target: str) -> None:
    model = AudioVGG(n_classes=5, target=target, embedding_dim=12).eval()
    out = model(torch.randn(3, 1, 90, 94))
    assert out["embedding"].shape == (3, 12)
    assert ("logits" in out) == (target != "dimensional")
    assert ("va" in out) == (target != "categorical")
    if "logits" in out:
        assert out["logits"].shape == (3, 5)
    if "va" in out:
        assert out["va"].shape == (3, 2) and bool((out["va"].abs() <= 1).all())


def test_resnet18_shapes_and_builder() -> None:
    model = build_branch_model(
        "audio", {"name": "resnet18", "n_classes": 4, "target": "both", "embedding_dim": 8}
    ).eval()
    assert isinstance(model, AudioResNet18)
    out = model(torch.randn(2, 1, 40, 48))
    assert out["logits"].shape == (2, 4) and out["va"].shape == (2, 2)
    with pytest.raises(ValueError, match="unknown model"):
        build_branch_model("visual", {"name": "vgg", "n_classes": 2})


def _torchvision_like_state() -> dict[str, torch.Tensor]:
    """What torchvision's resnet18().state_dict() holds: the backbone's keys plus fc."""
    torch.manual_seed(0)
    state = ResNet18Backbone(in_channels=3).state_dict()
    state["fc.weight"] = torch.randn(1000, 512)
    state["fc.bias"] = torch.randn(1000)
    return state


def test_resnet18_key_names_and_weight_loading(tmp_path: Path) -> None:
    state = _torchvision_like_state()
    assert len(state) == 122  # torchvision resnet18: 120 backbone entries + fc.weight, fc.bias
    for key in ("conv1.weight", "bn1.running_var", "layer1.0.conv2.weight",
                "layer2.0.downsample.0.weight", "layer3.0.downsample.1.num_batches_tracked",
                "layer4.1.bn2.bias"):  # fmt: skip
        assert key in state
    path = tmp_path / "resnet18.pth"
    torch.save(state, path)
    model = AudioResNet18(n_classes=3, in_channels=1)
    load_torchvision_resnet18(model.backbone, path)
    loaded = model.backbone.state_dict()
    assert torch.equal(loaded["conv1.weight"], state["conv1.weight"].sum(dim=1, keepdim=True))
    assert torch.equal(loaded["layer4.1.conv2.weight"], state["layer4.1.conv2.weight"])
    del state["layer2.1.bn1.weight"]
    torch.save(state, path)
    with pytest.raises(RuntimeError, match="layer2.1.bn1.weight"):
        load_torchvision_resnet18(model.backbone, path)


@pytest.mark.parametrize("aggregation", ["gru", "netvlad", "mean"])
@pytest.mark.parametrize("train_mode", [False, True])
def test_visual_ignores_masked_frames(train_mode: bool, aggregation: str) -> None:
    torch.manual_seed(0)
    model = VisualCNNGRU(n_classes=3, target="both", embedding_dim=8, dropout=0.0,
                         aggregation=aggregation, clusters=3)  # fmt: skip
    model.train(train_mode)
    x = torch.randn(3, 6, 1, 16, 16)
    mask = torch.tensor([[1, 0, 1, 1, 0, 1], [0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 0]]).bool()
    out = model(x, mask)
    assert out["logits"].shape == (3, 3) and out["va"].shape == (3, 2)
    assert out["embedding"].shape == (3, 8)
    assert torch.equal(out["embedding"][1], torch.zeros(8))  # no face: zero embedding
    garbage = x.clone()
    garbage[~mask] = torch.randn_like(garbage[~mask]) * 100
    again = model(garbage, mask)
    for key in out:
        assert torch.allclose(out[key], again[key], atol=1e-6), key
    changed = x.clone()
    changed[0, 2] += 1.0  # a frame with a face does change the output
    assert not torch.allclose(model(changed, mask)["embedding"][0], out["embedding"][0])


def test_visual_mask_matches_compacted_sequence() -> None:
    """Masked frames are skipped, not zero-filled: same output as the valid frames alone."""
    torch.manual_seed(1)
    model = VisualCNNGRU(n_classes=2, embedding_dim=8).eval()
    x = torch.randn(1, 5, 1, 16, 16)
    mask = torch.tensor([[True, False, True, False, True]])
    short = x[:, mask[0]]
    full = model(x, mask)["logits"]
    alone = model(short, torch.ones(1, 3, dtype=torch.bool))["logits"]
    assert torch.allclose(full, alone, atol=1e-6)


def test_visual_models_saved_before_the_aggregation_option_still_load() -> None:
    """Their GRU was ``gru.*`` (now ``aggregate.gru.*``); the same weights, the same outputs."""
    torch.manual_seed(2)
    model = VisualCNNGRU(n_classes=2, embedding_dim=8).eval()
    old = {k.replace("aggregate.gru.", "gru."): v for k, v in model.state_dict().items()}
    assert any(k.startswith("gru.") for k in old)
    again = VisualCNNGRU(n_classes=2, embedding_dim=8).eval()
    again.load_state_dict(old)
    x, mask = torch.randn(2, 4, 1, 16, 16), torch.tensor([[1, 1, 0, 1], [0, 1, 1, 1]]).bool()
    assert torch.equal(model(x, mask)["logits"], again(x, mask)["logits"])


def test_losses() -> None:
    a = torch.tensor([0.1, 0.5, -0.3, 0.9])
    assert math.isclose(float(ccc(a, a)), 1.0, abs_tol=1e-6)
    assert float(ccc(a, -a)) < 0
    true = torch.tensor([[0.1, float("nan")], [0.5, 0.2], [-0.3, float("nan")], [0.9, 0.4]])
    pred = torch.stack([a, a], dim=1)
    # valence perfect, arousal has 2 known values and is perfectly anti/co-related
    loss = float(ccc_loss(pred, true))
    assert math.isfinite(loss) and loss >= 0
    assert math.isclose(float(ccc_loss(true.nan_to_num(0.0)[:, :1], true[:, :1])), 0.0,
                        abs_tol=1e-6)  # fmt: skip
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [5.0, -5.0]])
    y = torch.tensor([0, 1, -1])
    assert torch.isclose(cross_entropy(logits, y), cross_entropy(logits[:2], y[:2]))
    assert float(cross_entropy(logits, torch.tensor([-1, -1, -1]))) == 0.0
    assert class_weights([2, 6, 0]).tolist() == [2.0, pytest.approx(2 / 3), 0.0]
