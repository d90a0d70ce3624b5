"""models.backbones: the release-faithful zero-initialised residual BatchNorm switch, and weights files holding
pickled code refused."""

from __future__ import annotations

import os

import pytest
import torch

from pixelssl.config import ConfigError, PretrainConfig, load_config
from pixelssl.methods import build_method
from pixelssl.models.backbones import build_backbone


@pytest.mark.parametrize(("name", "last_bn"), [("resnet18", "bn2"), ("resnet50", "bn3")])
def test_zero_init_residual_zeroes_exactly_the_last_bn_weight_of_every_block(name, last_bn):
    torch.manual_seed(0)
    plain = build_backbone(name).state_dict()
    torch.manual_seed(0)
    zero = build_backbone(name, zero_init_residual=True).state_dict()
    assert plain.keys() == zero.keys()
    zeroed = sorted(k for k in zero if not torch.equal(zero[k], plain[k]))
    blocks = sorted({k.rsplit(".", 2)[0] for k in plain if k.startswith("layer") and ".downsample" not in k
                     and k.count(".") == 3})
    assert zeroed == sorted(f"{block}.{last_bn}.weight" for block in blocks)  # one per residual block, nothing else
    assert all(float(zero[k].abs().max()) == 0.0 for k in zeroed)


def test_zero_init_residual_block_starts_as_identity_plus_relu():
    torch.manual_seed(0)
    block = build_backbone("resnet18", zero_init_residual=True).layer1[0].eval()
    x = torch.randn(2, 64, 8, 8).relu()
    assert torch.allclose(block(x), x)


def test_method_backbone_follows_the_config_switch():
    cfg = load_config(PretrainConfig, "pixpro_r18_demo", ["model.zero_init_residual=true", "model.proj_hidden_dim=16",
                                                          "model.proj_dim=8"])
    method = build_method(cfg)
    assert float(method.backbone.layer4[1].bn2.weight.detach().abs().max()) == 0.0
    assert torch.equal(method.backbone_k.layer4[1].bn2.weight, method.backbone.layer4[1].bn2.weight)


def test_release_presets_choose_their_release_initialisation():
    assert load_config(PretrainConfig, "pixpro_r50").model.zero_init_residual  # PixPro contrast/resnet.py
    assert load_config(PretrainConfig, "pixcontrast_r50").model.zero_init_residual  # same code base
    for preset in ("moco_r50", "densecl_r50", "pixcon_sr_r50"):  # torchvision / OpenSelfSup / MMSelfSup defaults
        assert not load_config(PretrainConfig, preset).model.zero_init_residual


def test_zero_init_residual_with_a_timm_backbone_is_a_config_error():
    with pytest.raises(ConfigError, match="model.zero_init_residual"):
        load_config(PretrainConfig, None, ["model.backbone=timm:resnet18", "model.zero_init_residual=true"])


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_backbone_and_inpaint_loaders_refuse_pickled_code(tmp_path, monkeypatch):
    from pixelssl.models.backbones import build_backbone

    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil_weights.pt"
    torch.save({"conv1.weight": _Exploit()}, path)
    with pytest.raises(Exception) as exc:
        build_backbone("resnet18", str(path))
    assert "Traceback" not in str(exc.value)
    assert not (tmp_path / "PWNED").exists()
