"""methods.registry: methods registered with their settings, build_method(cfg), unknown and doubly registered names."""

from __future__ import annotations

import dataclasses
import inspect

import pytest
import torch

from pixelssl.config import ModelConfig, PretrainConfig, load_config
from pixelssl.methods import build_method
from pixelssl.methods.base import Method
from pixelssl.methods.pixpro import PixProConfig
from pixelssl.methods.registry import available_methods, method_class, register_method
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


def test_every_method_is_registered_by_its_name():
    assert available_methods() == sorted(["densecl", "moco", "pixcon_coord", "pixcon_sim", "pixcon_sr", "pixcontrast",
                                          "pixpro", "pixpro_fpn"])
    for name in available_methods():
        cls = method_class(name)
        assert issubclass(cls, Method) and cls.method_name == name


def test_an_unknown_name_is_answered_with_the_nearest_one_or_the_choices():
    with pytest.raises(ValueError, match="unknown method 'pixpr'; did you mean 'pixpro'"):
        method_class("pixpr")
    with pytest.raises(ValueError, match="unknown method 'simclr'; choose from densecl, moco, "):
        method_class("simclr")


def test_a_name_cannot_be_taken_by_a_second_class():
    impostor = type("Impostor", (Method,), {})
    with pytest.raises(ValueError, match="method 'pixpro' is registered twice"):
        register_method("pixpro", PixProConfig)(impostor)
    assert method_class("pixpro").__name__ == "PixPro"
