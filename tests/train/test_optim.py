"""LARS against a one-tensor reference, parameter grouping, and the warm-up + cosine schedule."""

import math

import pytest
import torch
from torch import nn

from pixelssl.train.optim import LARS, lr_at, parameter_groups


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


def test_lr_schedule_warmup_then_cosine():
    assert math.isclose(lr_at(0, 100, 1.0, 10), 0.1)
    assert math.isclose(lr_at(9, 100, 1.0, 10), 1.0)
    assert math.isclose(lr_at(10, 100, 1.0, 10), 1.0)
    assert math.isclose(lr_at(55, 100, 1.0, 10), 0.5, abs_tol=1e-12)
    assert math.isclose(lr_at(100, 100, 1.0, 10), 0.0, abs_tol=1e-12)


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


def test_warmup_from_a_fraction_of_the_peak_follows_pixpro_gradual_warmup():
    """PixPro's GradualWarmupScheduler (multiplier 100): lr = base / 100 * (99 * t / W + 1) for t <= W."""
    peak, warmup, multiplier = 2.0, 8, 100
    for step in range(warmup):
        expected = peak / multiplier * ((multiplier - 1) * step / warmup + 1)
        assert math.isclose(lr_at(step, 50, peak, warmup, 1e-6, 1 / multiplier), expected, rel_tol=1e-12)
    assert math.isclose(lr_at(warmup, 50, peak, warmup, 1e-6, 0.01), peak)


def test_cosine_decay_ends_at_min_lr_like_torch_cosine_annealing():
    """After warm-up the schedule equals torch's CosineAnnealingLR(T_max = total - warmup, eta_min) per step."""
    peak, warmup, total, floor = 1.0, 5, 40, 1e-3
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=peak)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total - warmup, eta_min=floor)
    for step in range(warmup, total + 1):
        assert math.isclose(lr_at(step, total, peak, warmup, floor), opt.param_groups[0]["lr"], rel_tol=1e-9)
        opt.step()
        sched.step()
    assert math.isclose(lr_at(total, total, peak, warmup, floor), floor)


def test_schedule_keys_are_validated():
    from pixelssl.config import ConfigError, PretrainConfig, load_config

    with pytest.raises(ConfigError, match="train.warmup_start_ratio"):
        load_config(PretrainConfig, None, ["train.warmup_start_ratio=1.5"])
    with pytest.raises(ConfigError, match="train.final_lr"):
        load_config(PretrainConfig, None, ["train.final_lr=5.0"])
