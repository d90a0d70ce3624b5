"""LARS against a one-tensor reference, parameter grouping, fused SGD, and the schedule keys' validation (the
schedule itself: tests/engine/test_schedules.py)."""

import pytest
import torch
from torch import nn

from pixelssl.train.optim import LARS, parameter_groups


def test_parameter_groups_exclude_bn_and_bias_from_decay():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    decay, plain = parameter_groups(model, 1e-4)
    assert [p.shape for p in decay["params"]] == [torch.Size([4, 3, 3, 3])]
    assert len(plain["params"]) == 3 and plain["weight_decay"] == 0 and plain["lars_exclude"]


def test_lars_step_matches_reference():
    torch.manual_seed(0)
    w = nn.Parameter(torch.randn(4, 3))
    b = nn.Parameter(torch.randn(4))
    w0, b0 = w.detach().clone(), b.detach().clone()
    opt = LARS([{"params": [w], "weight_decay": 0.1, "lars_exclude": False},
                {"params": [b], "weight_decay": 0.0, "lars_exclude": True}], lr=0.5, momentum=0.9)
    grads = [(torch.randn(4, 3), torch.randn(4)) for _ in range(2)]
    buf_w = buf_b = None
    ref_w, ref_b = w0.clone(), b0.clone()
    for gw, gb in grads:
        w.grad, b.grad = gw.clone(), gb.clone()
        opt.step()
        g = gw + 0.1 * ref_w
        g = g * (0.001 * ref_w.norm() / (g.norm() + 1e-8))
        buf_w = g if buf_w is None else 0.9 * buf_w + g
        buf_b = gb if buf_b is None else 0.9 * buf_b + gb
        ref_w = ref_w - 0.5 * buf_w
        ref_b = ref_b - 0.5 * buf_b
    assert torch.allclose(w, ref_w, atol=1e-6) and torch.allclose(b, ref_b, atol=1e-6)


def test_sgd_is_fused_and_steps_like_the_foreach_path():
    """build_optimizer's SGD uses torch's fused kernel on the CPU too; its updates equal the multi-tensor path's."""
    from pixelssl.train.optim import build_optimizer

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(2))
    model(torch.randn(2, 3, 6, 6))
    twin = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(64, 2))
    twin.load_state_dict(model.state_dict())
    fused = build_optimizer(model, "sgd", lr=0.1, weight_decay=1e-2, momentum=0.9)
    assert fused.defaults["fused"]
    reference = torch.optim.SGD(parameter_groups(twin, 1e-2), lr=0.1, momentum=0.9, foreach=True)
    for _ in range(3):
        grads = [torch.randn_like(p) for p in model.parameters()]
        for net, opt in ((model, fused), (twin, reference)):
            for p, g in zip(net.parameters(), grads):
                p.grad = g.clone()
            opt.step()
    for a, b in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_schedule_keys_are_validated():
    from pixelssl.config import ConfigError, PretrainConfig, load_config

    with pytest.raises(ConfigError, match="train.warmup_start_ratio"):
        load_config(PretrainConfig, None, ["train.warmup_start_ratio=1.5"])
    with pytest.raises(ConfigError, match="train.final_lr"):
        load_config(PretrainConfig, None, ["train.final_lr=5.0"])
