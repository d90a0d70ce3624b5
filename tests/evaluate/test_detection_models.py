"""evaluate.detection_models: detectors around a pixelssl ResNet (weights, norms, frozen stages) and a pre-trained FPN."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from pixelssl.errors import PixelSSLError
from pixelssl.evaluate.detection import DetectionConfig
from pixelssl.evaluate.detection_models import build_detector, load_fpn_state
from pixelssl.models.backbones import build_backbone


def _cfg(**overrides):
    return DetectionConfig(**{"min_size": 64, "max_size": 64, **overrides})


# --------------------------------------------------------------------------- model construction
def test_backbone_weights_and_frozen_bn_come_from_the_pixelssl_backbone():
    torch.manual_seed(0)
    backbone = build_backbone("resnet18")
    with torch.no_grad():
        backbone.bn1.running_mean.uniform_()
    model = build_detector(backbone, 4, _cfg(model="fcos"))
    body = model.backbone.body
    assert torch.equal(body.conv1.weight, backbone.conv1.weight)
    assert torch.equal(body.layer3[1].conv2.weight, backbone.layer3[1].conv2.weight)
    assert isinstance(body.bn1, FrozenBatchNorm2d) and torch.equal(body.bn1.running_mean, backbone.bn1.running_mean)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in body.modules())
    trainable = {name.split(".")[0] for name, p in body.named_parameters() if p.requires_grad}
    assert trainable == {"layer2", "layer3", "layer4"}  # trainable_layers=3, as torchvision's default
    assert list(model.backbone.fpn.state_dict())[0] == "inner_blocks.0.0.weight"
    assert model.backbone.fpn.inner_blocks[0][0].in_channels == 128  # FCOS starts at C3 (R18: 128 channels)


def test_bn_norm_trains_batchnorm_except_in_frozen_stages():
    model = build_detector(build_backbone("resnet18"), 4, _cfg(model="faster_rcnn", norm="bn", trainable_layers=2))
    body = model.backbone.body
    assert isinstance(body.layer4[0].bn1, nn.BatchNorm2d) and isinstance(body.layer3[0].bn1, nn.BatchNorm2d)
    assert isinstance(body.layer2[0].bn1, FrozenBatchNorm2d) and isinstance(body.bn1, FrozenBatchNorm2d)
    assert model.backbone.fpn.inner_blocks[0][0].in_channels == 64  # R-CNN's FPN starts at C2
    everything = build_detector(build_backbone("resnet18"), 4, _cfg(model="faster_rcnn", norm="bn",
                                                                    trainable_layers=5))
    assert all(p.requires_grad for p in everything.backbone.body.parameters())


def test_fcos_fpn_width_must_suit_its_group_norm():
    with pytest.raises(PixelSSLError, match="divisible by 32"):
        build_detector(build_backbone("resnet18"), 4, _cfg(model="fcos"), fpn_channels=48)


def test_timm_backbones_are_refused_with_one_line():
    class NotAResNet(nn.Module):
        name = "timm:convnext_tiny"

    with pytest.raises(PixelSSLError, match="needs a torchvision ResNet backbone"):
        build_detector(NotAResNet(), 4, _cfg())


# --------------------------------------------------------------------------- pre-trained FPN
def test_fpn_state_loads_whole_into_fcos(fcos_fpn_state):
    state = fcos_fpn_state()
    model = build_detector(build_backbone("resnet18"), 4, _cfg(model="fcos"), fpn_channels=32)
    summary = load_fpn_state(model, state, "fcos")
    assert summary["skipped"] == [] and len(summary["loaded"]) == len(state) == 16  # 3 + 3 levels, P6, P7
    for key, value in model.backbone.fpn.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_fpn_state_loads_level_by_level_into_faster_rcnn(fcos_fpn_state):
    state = fcos_fpn_state()
    model = build_detector(build_backbone("resnet18"), 4, _cfg(model="faster_rcnn"), fpn_channels=32)
    c2_before = model.backbone.fpn.inner_blocks[0][0].weight.clone()
    summary = load_fpn_state(model, state, "faster_rcnn")
    fpn = model.backbone.fpn
    for level in range(3):  # FCOS level i is C3+i; R-CNN's index i+1
        assert torch.equal(fpn.inner_blocks[level + 1][0].weight, state[f"inner_blocks.{level}.0.weight"])
        assert torch.equal(fpn.layer_blocks[level + 1][0].bias, state[f"layer_blocks.{level}.0.bias"])
    assert torch.equal(fpn.inner_blocks[0][0].weight, c2_before)  # no C2 lateral in FCOS: kept
    assert summary["skipped"] == ["extra_blocks.p6.bias", "extra_blocks.p6.weight", "extra_blocks.p7.bias",
                                  "extra_blocks.p7.weight"]


def test_fpn_state_of_another_shape_is_refused_for_fcos(fcos_fpn_state):
    model = build_detector(build_backbone("resnet18"), 4, _cfg(model="fcos"), fpn_channels=64)
    with pytest.raises(PixelSSLError, match="fpn.safetensors does not fit the FCOS FPN .* --no-fpn-init"):
        load_fpn_state(model, fcos_fpn_state(32), "fcos", "run/fpn.safetensors")
    state = fcos_fpn_state(64)
    state.pop("extra_blocks.p7.bias")
    with pytest.raises(PixelSSLError, match="missing 'extra_blocks.p7.bias'"):
        load_fpn_state(model, state, "fcos")
