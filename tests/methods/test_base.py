"""methods.base: methods built from any backbone and checked keyword settings; frozen teachers; shuffled BatchNorm groups."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from pixelssl.config import ConfigError
from pixelssl.methods.base import Method, shuffled_forward
from pixelssl.methods.registry import method_class
from pixelssl.models.backbones import build_backbone

HEADS = {"proj_hidden_dim": 32, "proj_dim": 16}


def _torchvision_c5() -> nn.Module:
    return nn.Sequential(*list(torchvision.models.resnet18(weights=None).children())[:-2])  # (B, 512, h, w)


@pytest.mark.parametrize(("name", "settings"), [
    ("pixpro", {"ins_loss_weight": 1.0}), ("pixcontrast", {"queue_size": 8}), ("moco", {"queue_size": 8}),
    ("densecl", {"queue_size": 8, "head_bn": False, "predictor": False}), ("pixcon_coord", {"queue_size": 8}),
    ("pixcon_sr", {"queue_size": 8, "sr_weights": "spatial"}),
])
def test_a_plain_torchvision_backbone_trains(name, settings, two_view_batch):
    torch.manual_seed(0)
    method = method_class(name)(_torchvision_c5(), feature_dim=512, **HEADS, **settings).train()
    method.momentum_update(method.momentum_at(0, 10))
    out = method(two_view_batch(2, 64))
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and method.backbone[0].weight.grad is not None
    assert method.settings.name == name and not any(p.requires_grad for p in method.backbone_k.parameters())


def test_feature_dim_is_read_from_out_channels_or_asked_for():
    assert method_class("pixpro")(build_backbone("resnet18"), **HEADS).feature_dim == 512
    with pytest.raises(ValueError, match="feature_dim: give the channels of the backbone's feature map"):
        method_class("pixpro")(_torchvision_c5(), **HEADS)


def test_bad_settings_are_named():
    backbone = _torchvision_c5()
    with pytest.raises(ConfigError, match=r"^PixPro setting 'ppm_gamma': must be > 0 \(got -1\)$"):
        method_class("pixpro")(backbone, feature_dim=512, ppm_gamma=-1)
    with pytest.raises(ConfigError, match="DenseCL setting 'queue_size': densecl takes its negatives from a queue"):
        method_class("densecl")(backbone, feature_dim=512, queue_size=0)
    with pytest.raises(TypeError, match="PixPro has no setting 'fpn_levels'"):
        method_class("pixpro")(backbone, feature_dim=512, fpn_levels="p3-p5")
    with pytest.raises(TypeError, match="PixProFPN needs a backbone with forward_levels"):
        method_class("pixpro_fpn")(backbone, feature_dim=512)


def test_a_teacher_is_a_frozen_copy_that_follows_the_student_by_its_momentum():
    torch.manual_seed(0)
    method = Method(nn.Conv2d(3, 4, 1), momentum=0.9, momentum_schedule="constant")
    assert not method.has_teacher
    method.add_teacher("backbone")
    assert method.has_teacher and not any(p.requires_grad for p in method.backbone_k.parameters())
    assert torch.equal(method.backbone_k.weight, method.backbone.weight)
    start = method.backbone_k.weight.clone()
    with torch.no_grad():
        method.backbone.weight.add_(1.0)
    method.momentum_update(method.momentum_at(5, 10))  # constant schedule: 0.9 at every step
    torch.testing.assert_close(method.backbone_k.weight, 0.9 * start + 0.1 * method.backbone.weight)


def test_the_momentum_schedule_is_constant_or_cosine_from_the_base_to_one():
    constant = Method(nn.Identity(), momentum=0.99, momentum_schedule="constant")
    assert constant.momentum_at(0, 100) == constant.momentum_at(100, 100) == 0.99
    cosine = Method(nn.Identity(), momentum=0.99, momentum_schedule="cosine")
    assert cosine.momentum_at(0, 100) == pytest.approx(0.99)
    assert cosine.momentum_at(50, 100) == pytest.approx(0.995)
    assert cosine.momentum_at(100, 100) == 1.0
    with pytest.raises(ConfigError, match="momentum_schedule"):
        Method(nn.Identity(), momentum_schedule="linear")


def test_shuffled_forward_normalises_each_group_apart_and_restores_the_order():
    x = torch.randn(8, 3, 2, 2)
    assert torch.equal(shuffled_forward(nn.Identity(), x, groups=4), x)  # the order comes back
    bn = nn.BatchNorm2d(3, affine=False).train()
    whole = shuffled_forward(bn, x, groups=1)
    assert torch.equal(whole, nn.BatchNorm2d(3, affine=False).train()(x))  # one group: the plain forward
    pairs = shuffled_forward(bn, x, groups=4)
    assert pairs.shape == x.shape and not torch.allclose(pairs, whole, atol=1e-3)
    # Four BatchNorm groups of two images: each image has exactly one partner with which its features have zero
    # mean per channel (the pair it was normalised with), whichever pairs the shuffle drew.
    partners = [[j for j in range(8) if j != i and pairs[[i, j]].mean(dim=(0, 2, 3)).abs().max() < 1e-5]
                for i in range(8)]
    assert all(len(p) == 1 for p in partners), partners
    assert all(partners[p[0]] == [i] for i, p in enumerate(partners))
