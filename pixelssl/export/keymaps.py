"""Parameter names of a torchvision ResNet in other tools' conventions.

timm's ``resnet18/34/50/101`` use torchvision's names for everything but the classifier (checked against the real
timm models in the tests), so only detectron2 needs a map: its ResNet calls the stem ``stem.conv1``, stages
``res2``-``res5``, each conv's BatchNorm ``<conv>.norm`` and the projection shortcut ``shortcut`` (+ ``shortcut.norm``),
for bottleneck (conv1-conv3) and basic blocks (conv1-conv2) alike; its frozen BatchNorm has no ``num_batches_tracked``.
``torchvision_name`` is the inverse, for importing detectron2 files.
"""

from __future__ import annotations

import re

import numpy as np
from torch import Tensor

from pixelssl.errors import PixelSSLError

_BLOCK = re.compile(r"layer([1-4])\.(\d+)\.(.+)$")
_STEM = {"conv1.weight": "stem.conv1.weight", **{f"bn1.{p}": f"stem.conv1.norm.{p}" for p in
                                                 ("weight", "bias", "running_mean", "running_var")}}


def _block_part(part: str) -> str:
    """``bn2.weight`` -> ``conv2.norm.weight``; ``downsample.0.weight`` -> ``shortcut.weight``;
    ``downsample.1.bias`` -> ``shortcut.norm.bias``; conv weights keep their names."""
    if part.startswith("downsample.0."):
        return "shortcut." + part[len("downsample.0."):]
    if part.startswith("downsample.1."):
        return "shortcut.norm." + part[len("downsample.1."):]
    return re.sub(r"^bn(\d)\.", r"conv\1.norm.", part)


def detectron2_name(key: str) -> str:
    """detectron2's ResNet name of a torchvision ResNet parameter or buffer (``layer1.0.bn1.weight`` ->
    ``res2.0.conv1.norm.weight``)."""
    if key in _STEM:
        return _STEM[key]
    match = _BLOCK.match(key)
    if match is None:
        raise PixelSSLError(f"no detectron2 name for '{key}': not a torchvision ResNet parameter")
    stage, block, part = match.groups()
    return f"res{int(stage) + 1}.{block}.{_block_part(part)}"


_D2_STEM = re.compile(r"stem\.conv1\.(weight|norm\.\w+)$")
_D2_BLOCK = re.compile(r"res([2-5])\.(\d+)\.(conv[1-3]|shortcut)\.(weight|norm\.\w+)$")


def torchvision_name(key: str) -> str | None:
    """The torchvision ResNet name of a detectron2 ResNet parameter (``res2.0.conv1.norm.weight`` ->
    ``layer1.0.bn1.weight``, ``res3.0.shortcut.weight`` -> ``layer2.0.downsample.0.weight``); None for other names."""
    match = _D2_STEM.match(key)
    if match:
        part = match.group(1)
        return "conv1.weight" if part == "weight" else "bn1." + part[len("norm."):]
    match = _D2_BLOCK.match(key)
    if match is None:
        return None
    stage, block, conv, part = match.groups()
    prefix = f"layer{int(stage) - 1}.{block}."
    if conv == "shortcut":
        return prefix + ("downsample.0.weight" if part == "weight" else "downsample.1." + part[len("norm."):])
    return prefix + (f"{conv}.weight" if part == "weight" else f"bn{conv[-1]}." + part[len("norm."):])


def to_detectron2(state: dict[str, Tensor]) -> dict[str, np.ndarray]:
    """A torchvision ResNet state dict (no ``fc``) in detectron2's names, as float32 numpy arrays (what detectron2's
    ``.pkl`` checkpoints hold); BatchNorm step counters are dropped (detectron2's FrozenBN has none)."""
    return {detectron2_name(k): v.detach().float().cpu().numpy() for k, v in state.items()
            if not k.endswith("num_batches_tracked")}
