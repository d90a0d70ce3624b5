"""export.keymaps: torchvision ResNet names in detectron2's convention, and back."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pixelssl.errors import PixelSSLError
from pixelssl.export import detectron2_name, to_detectron2, torchvision_name
from pixelssl.models.backbones import build_backbone


@pytest.mark.parametrize("arch", ["resnet50", "resnet18"])
def test_detectron2_names_are_exactly_detectron2s(arch, detectron2_names):
    expected = detectron2_names[arch]
    with torch.device("meta"):
        keys = [k for k in build_backbone(arch).state_dict() if not k.endswith("num_batches_tracked")]
    mapped = [detectron2_name(k) for k in keys]
    assert len(set(mapped)) == len(mapped) == len(expected)
    assert set(mapped) == set(expected)


def test_detectron2_name_hand_cases():
    assert detectron2_name("bn1.running_var") == "stem.conv1.norm.running_var"
    assert detectron2_name("layer1.0.downsample.0.weight") == "res2.0.shortcut.weight"
    assert detectron2_name("layer4.2.bn3.bias") == "res5.2.conv3.norm.bias"
    with pytest.raises(PixelSSLError, match="fc.weight"):
        detectron2_name("fc.weight")


@pytest.mark.parametrize("arch", ["resnet50", "resnet18"])
def test_torchvision_name_inverts_detectron2_name_and_ignores_other_names(arch):
    with torch.device("meta"):
        keys = [k for k in build_backbone(arch).state_dict() if not k.endswith("num_batches_tracked")]
    assert [torchvision_name(detectron2_name(k)) for k in keys] == keys
    for other in ("backbone.fpn_lateral2.weight", "stem.fc.0.weight", "res6.0.conv1.weight", "res2.0.conv4.weight"):
        assert torchvision_name(other) is None, other


def test_to_detectron2_gives_float32_arrays_without_step_counters():
    state = {"conv1.weight": torch.ones(2, 3, dtype=torch.float64), "bn1.num_batches_tracked": torch.tensor(7),
             "layer1.0.bn1.running_var": torch.full((2,), 0.5, dtype=torch.float16)}
    out = to_detectron2(state)
    assert sorted(out) == ["res2.0.conv1.norm.running_var", "stem.conv1.weight"]
    assert all(isinstance(v, np.ndarray) and v.dtype == np.float32 for v in out.values())
    assert out["res2.0.conv1.norm.running_var"].tolist() == [0.5, 0.5]
