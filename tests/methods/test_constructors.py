"""Every method is built from an nn.Module backbone and its own keyword settings (the keys of its settings class,
range-checked as config keys); build_method(cfg) is that constructor on the backbone cfg.model names."""

from __future__ import annotations

import dataclasses
import inspect

import pytest
import torch
import torchvision
from torch import nn

from pixelssl.config import ConfigError, ModelConfig, PretrainConfig, load_config
from pixelssl.methods import build_method
from pixelssl.methods.base import Method
from pixelssl.methods.registry import available_methods, method_class
from pixelssl.models.backbones import build_backbone

HEADS = {"proj_hidden_dim": 32, "proj_dim": 16}


def _keywords(cls: type) -> dict[str, inspect.Parameter]:
    """The keyword arguments a method class takes, through the ``**`` pass-through of its base classes."""
    out: dict[str, inspect.Parameter] = {}
    for klass in cls.__mro__:
        if klass is Method:
            break
        if "__init__" in vars(klass):
            params = inspect.signature(klass.__init__).parameters.values()
            out.update({p.name: p for p in params if p.kind is p.KEYWORD_ONLY and p.name not in out})
    return out


@pytest.mark.parametrize("name", available_methods())
def test_the_keywords_are_the_settings_keys_with_the_same_defaults(name):
    cls = method_class(name)
    keywords = _keywords(cls)
    fields = {f.name: f.default for f in dataclasses.fields(cls.settings_class) if f.name != "name"}
    assert set(keywords) == {*fields, "feature_dim", "proj_hidden_dim", "proj_dim"}
    assert {k: keywords[k].default for k in fields} == fields
    assert keywords["proj_hidden_dim"].default == ModelConfig.proj_hidden_dim
    assert keywords["proj_dim"].default == ModelConfig.proj_dim


@pytest.mark.parametrize("preset", ["pixpro_r18_demo", "moco_r18_demo", "pixcon_sr_r18_demo", "pixpro_fpn_r18_demo"])
def test_build_method_is_the_constructor_on_the_configs_backbone(preset):
    cfg = load_config(PretrainConfig, preset, ["model.proj_hidden_dim=32", "model.proj_dim=16"])
    torch.manual_seed(0)
    built = build_method(cfg)
    torch.manual_seed(0)
    backbone = build_backbone(cfg.model.backbone, zero_init_residual=cfg.model.zero_init_residual)
    settings = {k: v for k, v in cfg.method.items() if k != "name"}
    direct = method_class(cfg.method.name)(backbone, **HEADS, **settings)
    assert type(direct) is type(built) and direct.settings == built.settings
    a, b = built.state_dict(), direct.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)


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
