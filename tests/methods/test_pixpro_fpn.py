"""PixPro on FCOS's FPN (pixpro_fpn): gradients reach every trained part, the loss is the mean of the per-level
losses, the FPN / head weights load into torchvision's FCOS, and the chunked matcher changes nothing but memory."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from torchvision.models.detection import fcos_resnet50_fpn

from pixelssl.config import ConfigError, PretrainConfig, load_config
from pixelssl.methods.pixpro_fpn import FPN_FILE, HEAD_FILE, PixProFPN
from pixelssl.train.loop import pretrain


def _fcos() -> torch.nn.Module:
    torch.manual_seed(0)
    return fcos_resnet50_fpn(weights=None, weights_backbone=None, num_classes=3)


@pytest.mark.parametrize("overrides", [[], ["method.fpn_levels=p3-p5", "method.fpn_head_convs=2"]])
def test_every_trained_parameter_gets_a_gradient(tiny_method, two_view_batch, overrides):
    # default init: with the demo's zero-initialised residual BN, a block's inner convs get exactly zero gradient
    # at the first step (its output is scaled by a zero weight), which is that initialisation, not a wiring fault
    method = tiny_method("pixpro_fpn_r18_demo", "model.zero_init_residual=false", *overrides)
    out = method(two_view_batch(2, 64))
    out["loss"].backward()
    levels = ("p3", "p4", "p5") if overrides else ("p3", "p4", "p5", "p6", "p7")
    assert method.level_names == levels
    per_level = torch.stack([out[f"loss_dense_{name}"] for name in levels])
    assert torch.allclose(out["loss_dense"], per_level.mean())  # levels weigh equally
    assert -4.0 <= float(out["loss"].detach()) <= 4.0
    trained = {n: p for n, p in method.named_parameters() if p.requires_grad}
    assert any(n.startswith("fpn.extra_blocks") for n in trained) == (not overrides)
    assert any(n.startswith("head_tower.") for n in trained) == bool(overrides)
    silent = [n for n, p in trained.items() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not silent, f"no gradient reached {silent}"
    teachers = [n for n, p in method.named_parameters() if "_k." in n]
    assert any(n.startswith("fpn_k.") for n in teachers)
    assert all(not method.get_parameter(n).requires_grad for n in teachers)


def test_fpn_has_exactly_fcos_key_names():
    cfg = load_config(PretrainConfig, "pixpro_fpn_r50", ["model.proj_hidden_dim=32", "model.proj_dim=16"])
    with torch.device("meta"):
        method = PixProFPN.from_config(cfg)
        fcos = _fcos()
    fpn_state = method.extra_weights(method.state_dict())[FPN_FILE]
    expected = fcos.backbone.fpn.state_dict()
    assert list(fpn_state) == list(expected)
    assert all(fpn_state[k].shape == v.shape for k, v in expected.items())


def test_tiny_chunk_budget_gives_the_same_loss_and_gradients(tiny_method, two_view_batch):
    batch = two_view_batch(2, 64)
    results = []
    for budget in ("0", "0.001"):  # 0.001 MiB: row blocks of a few cells on every level
        method = tiny_method("pixpro_fpn_r18_demo", f"method.match_chunk_mib={budget}")
        out = method(batch)
        out["loss"].backward()
        results.append((out["loss"].detach(), method.fpn.inner_blocks[0][0].weight.grad.clone()))
    assert torch.allclose(results[0][0], results[1][0], rtol=1e-5, atol=1e-6)
    assert torch.allclose(results[0][1], results[1][1], rtol=1e-4, atol=1e-7)


def test_two_steps_write_an_fpn_and_head_that_load_into_fcos(tmp_path):
    cfg = load_config(PretrainConfig, "pixpro_fpn_r50", [
        "model.proj_hidden_dim=32", "model.proj_dim=16", "method.fpn_head_convs=4",
        "data.image_size=64", "data.synthetic.num_images=4", "data.synthetic.size=64", "data.num_workers=0",
        "train.batch_size=2", "train.max_steps=2", "train.warmup_steps=1", "train.log_every=1",
        "train.tensorboard=false", "train.progress=false", "train.amp=fp32", "train.threads=1",
        f"run.output_dir={tmp_path}", "run.name=fpn",
    ])
    result = pretrain(cfg)
    run = result.run_dir
    fpn_state = load_file(str(run / FPN_FILE))
    fcos = _fcos()
    fcos.backbone.fpn.load_state_dict(fpn_state, strict=True)
    trained = result.method.fpn.state_dict()
    assert all(torch.equal(fcos.backbone.fpn.state_dict()[k], trained[k]) for k in trained)

    head = load_file(str(run / HEAD_FILE))
    missing, unexpected = fcos.head.load_state_dict(head, strict=False)
    assert not unexpected
    assert {k.rsplit(".", 1)[0] for k in missing} == {
        "classification_head.cls_logits", "regression_head.bbox_reg", "regression_head.bbox_ctrness"}
    tower = result.method.head_tower.state_dict()
    assert torch.equal(fcos.head.regression_head.conv.state_dict()["9.weight"], tower["9.weight"])


@pytest.mark.parametrize("override, key", [
    ("method.fpn_levels=p2-p6", "method.fpn_levels"),
    ("method.fpn_head_convs=5", "method.fpn_head_convs"),
    ("method.match_chunk_mib=-1", "method.match_chunk_mib"),
])
def test_bad_settings_are_one_line_errors(override, key):
    with pytest.raises(ConfigError, match=key):
        load_config(PretrainConfig, "pixpro_fpn_r18_demo", [override])
