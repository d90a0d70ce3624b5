"""Backbones that return dense feature maps.

torchvision ResNets keep torchvision's own parameter names (``conv1.weight``, ``layer1.0.bn1.running_mean``, ...)
so an exported ``backbone.safetensors`` loads into ``torchvision.models.resnet50()`` with only ``fc`` missing.
Nothing is downloaded: backbones start from random init or a local file.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision.models import resnet

from pixelssl.io import save_weights
from pixelssl.models.safe_load import load_weights_file

_RESNETS = {"resnet18": resnet.resnet18, "resnet34": resnet.resnet34, "resnet50": resnet.resnet50,
            "resnet101": resnet.resnet101}
RESNETS = tuple(sorted(_RESNETS))  # the torchvision ResNets, by name
LEVELS = ("c2", "c3", "c4", "c5")


class Backbone(nn.Module):
    """Common interface: ``forward(x) -> C5`` and ``forward_levels(x, levels) -> {level: map}``.

    ``channels[level]`` and ``strides[level]`` describe each level; ``out_channels`` is C5's width.
    """

    channels: dict[str, int]
    strides: dict[str, int]

    @property
    def out_channels(self) -> int:
        return self.channels["c5"]

    def forward_levels(self, x: Tensor, levels: tuple[str, ...]) -> dict[str, Tensor]:  # pragma: no cover
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_levels(x, ("c5",))["c5"]


def _block_out_channels(block: nn.Module) -> int:
    last_conv = getattr(block, "conv3", None) or block.conv2  # Bottleneck or BasicBlock
    return last_conv.out_channels


class ResNetBackbone(Backbone):
    """A torchvision ResNet without its pooling and classifier; C5 has stride 32 (7x7 at 224 px)."""

    def __init__(self, name: str, zero_init_residual: bool = False) -> None:
        super().__init__()
        net = _RESNETS[name](weights=None, zero_init_residual=zero_init_residual)
        for attr in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
            setattr(self, attr, getattr(net, attr))
        widths = [_block_out_channels(getattr(net, f"layer{i}")[-1]) for i in range(1, 5)]
        self.channels = dict(zip(LEVELS, widths))
        self.strides = {"c2": 4, "c3": 8, "c4": 16, "c5": 32}
        self.name = name

    def forward_levels(self, x: Tensor, levels: tuple[str, ...] = ("c5",)) -> dict[str, Tensor]:
        unknown = set(levels) - set(LEVELS)
        if unknown:
            raise ValueError(f"unknown feature level(s) {sorted(unknown)}; choose from {LEVELS}")
        out: dict[str, Tensor] = {}
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        deepest = max(LEVELS.index(level) for level in levels)
        for index, layer in enumerate((self.layer1, self.layer2, self.layer3, self.layer4)):
            x = layer(x)
            if LEVELS[index] in levels:
                out[LEVELS[index]] = x
            if index == deepest:
                break
        return out


class TimmBackbone(Backbone):
    """Any timm model with ``features_only`` support (optional dependency: ``pip install pixelssl[timm]``)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        try:
            import timm
        except ImportError as exc:
            raise ImportError(f"backbone 'timm:{name}' needs timm: pip install timm") from exc
        self.body = timm.create_model(name, pretrained=False, features_only=True)
        info = self.body.feature_info
        count = len(info.channels())
        picked = list(range(max(0, count - 4), count))  # the deepest four levels as c2..c5
        self._index = {LEVELS[4 - len(picked) + k]: i for k, i in enumerate(picked)}
        self.channels = {lvl: info.channels()[i] for lvl, i in self._index.items()}
        self.strides = {lvl: info.reduction()[i] for lvl, i in self._index.items()}
        self.name = f"timm:{name}"

    def forward_levels(self, x: Tensor, levels: tuple[str, ...] = ("c5",)) -> dict[str, Tensor]:
        feats = self.body(x)
        return {lvl: feats[self._index[lvl]] for lvl in levels}


def available_backbones() -> list[str]:
    return sorted(_RESNETS) + ["timm:<name>"]


def build_backbone(name: str, weights: str = "", zero_init_residual: bool = False) -> Backbone:
    """A backbone by name (``resnet18/34/50/101`` or ``timm:<model>``), optionally loaded from a local file.

    ``zero_init_residual`` zeroes the last BatchNorm weight of every residual block (``bn2`` of a BasicBlock,
    ``bn3`` of a Bottleneck), as PixPro's release (``contrast/resnet.py``): each block starts as the identity.
    """
    if name.startswith("timm:"):
        if zero_init_residual:
            raise ValueError("zero_init_residual applies to torchvision ResNets, not timm models")
        model: Backbone = TimmBackbone(name[5:])
    elif name in _RESNETS:
        model = ResNetBackbone(name, zero_init_residual=zero_init_residual)
    else:
        raise ValueError(f"unknown backbone '{name}'; choose from {', '.join(available_backbones())}")
    if weights:
        load_backbone_weights(model, weights)
    return model


def infer_arch(state: dict[str, Tensor]) -> str | None:
    """The torchvision ResNet whose parameter names and shapes match a state dict (None when none or several do)."""
    keys = {k: tuple(v.shape) for k, v in state.items() if not k.startswith("fc.")}
    matches = []
    for name in RESNETS:
        with torch.device("meta"):
            own = {k: tuple(v.shape) for k, v in build_backbone(name).state_dict().items()}
        if own == keys:
            matches.append(name)
    return matches[0] if len(matches) == 1 else None


_PREFIXES = ("module.", "backbone.", "encoder.", "model.")


def strip_prefixes(state: dict[str, Tensor]) -> dict[str, Tensor]:
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES:
            if state and all(k.startswith(prefix) for k in state):
                state = {k[len(prefix):]: v for k, v in state.items()}
                changed = True
    return state


RELEASE_HINT = "a released PixPro/DenseCL/PixCon/MoCo/detectron2 checkpoint? pass --from FORMAT or run pixelssl import"


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Tensors from a .safetensors file or a torch state dict, loaded safely (``models.safe_load``: no code runs;
    a file holding pickled objects is refused in one line that points to ``--from`` for released checkpoints)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file '{path}' does not exist")
    obj = load_weights_file(path, hint=RELEASE_HINT)
    for key in ("backbone", "state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise ValueError(f"weights file '{path}' does not hold a state dict")
    for key, value in obj.items():  # a state dict maps names to tensors; anything else would fail later, unnamed
        if not isinstance(key, str):
            raise ValueError(f"weights file '{path}' does not hold a state dict: it has a {type(key).__name__} key "
                             f"({str(key)[:40]!r}), not a tensor name")
        if not isinstance(value, Tensor):
            raise ValueError(f"weights file '{path}' does not hold a state dict: entry {key[:60]!r} is a "
                             f"{type(value).__name__}, not a tensor")
    return obj


def load_backbone_weights(model: nn.Module, path: str | Path) -> None:
    """Load backbone weights, tolerating common wrapper prefixes and a classifier (``fc.*``) in the file."""
    state = strip_prefixes(read_state_dict(path))
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} key(s) e.g. '{missing[0]}'")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} key(s) e.g. '{unexpected[0]}'")
        raise ValueError(f"weights file '{path}' does not fit this backbone: {'; '.join(parts)}")
    for key, value in state.items():
        if own[key].shape != value.shape:
            raise ValueError(
                f"weights file '{path}': '{key}' has shape {tuple(value.shape)}, backbone expects {tuple(own[key].shape)}"
            )
    model.load_state_dict(state)


def save_backbone(model: nn.Module, path: str | Path) -> None:
    """Write the backbone's state dict (torchvision key names) as safetensors, atomically."""
    save_weights(model.state_dict(), path)


