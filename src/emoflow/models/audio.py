"""Audio branch: CNNs on normalised log-mel windows shaped ``(B, 1, n_mels, frames)``.

- ``AudioVGG``: VGG-style blocks (conv 3x3, BatchNorm, ReLU, max-pool 2x2), then mean and max
  pooling over frequency and time, a linear embedding and the heads.
- ``AudioResNet18``: a ResNet-18 written here (torchvision is not a dependency) whose backbone
  uses torchvision's state_dict key names, so a local ImageNet file
  (``train.resnet_weights``, e.g. ``resnet18-f37072fd.pth``) loads with
  :func:`load_torchvision_resnet18`; for one input channel the RGB ``conv1`` kernels are summed.

A clip's score is the mean of its windows' logits (see ``emoflow.training.train``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from emoflow.models.blocks import Heads, conv_stack


def _pool_flat(x: torch.Tensor) -> torch.Tensor:
    """Concatenate global mean and max pooling over the two spatial axes."""
    return torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)


class AudioVGG(nn.Module):
    """Small VGG-style CNN on log-mel windows."""

    def __init__(
        self,
        n_classes: int,
        target: str = "categorical",
        embedding_dim: int = 64,
        channels: list[int] | None = None,
        in_channels: int = 1,
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        channels = list(channels or [16, 32, 64, 128])
        self.features, prev = conv_stack(in_channels, channels)
        self.embed = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(2 * prev, embedding_dim), nn.ReLU(inplace=True)
        )
        self.heads = Heads(embedding_dim, n_classes, target)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.heads(self.embed(_pool_flat(self.features(x))))


class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock (same attribute names)."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet18Backbone(nn.Module):
    """ResNet-18 without its ``fc`` layer; keys match ``torchvision.models.resnet18``."""

    def __init__(self, in_channels: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = nn.Sequential(BasicBlock(64, 64), BasicBlock(64, 64))
        self.layer2 = nn.Sequential(BasicBlock(64, 128, 2), BasicBlock(128, 128))
        self.layer3 = nn.Sequential(BasicBlock(128, 256, 2), BasicBlock(256, 256))
        self.layer4 = nn.Sequential(BasicBlock(256, 512, 2), BasicBlock(512, 512))
        self.out_features = 512

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return x


def load_torchvision_resnet18(backbone: ResNet18Backbone, path: str | Path) -> None:
    """Load a torchvision ResNet-18 state dict file into ``backbone`` (``fc.*`` is dropped).

    The file is read with ``weights_only=True``. When the backbone takes one input channel,
    the RGB ``conv1`` kernels are summed over their input channels. Missing or unexpected
    keys raise ``RuntimeError``.
    """
    state = torch.load(Path(path), map_location="cpu", weights_only=True)
    if "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    conv1 = state.get("conv1.weight")
    want = backbone.conv1.weight.shape[1]
    if conv1 is not None and conv1.shape[1] != want:
        if want != 1:
            raise RuntimeError(f"conv1 has {conv1.shape[1]} input channels, the model {want}")
        state["conv1.weight"] = conv1.sum(dim=1, keepdim=True)
    backbone.load_state_dict(state, strict=True)


class AudioResNet18(nn.Module):
    """ResNet-18 backbone on log-mel windows, mean+max pooled, linear embedding, heads."""

    def __init__(
        self,
        n_classes: int,
        target: str = "categorical",
        embedding_dim: int = 64,
        in_channels: int = 1,
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        self.backbone = ResNet18Backbone(in_channels)
        self.embed = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(2 * 512, embedding_dim), nn.ReLU(inplace=True)
        )
        self.heads = Heads(embedding_dim, n_classes, target)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.heads(self.embed(_pool_flat(self.backbone(x))))
