"""engine.schedules: each loop's learning-rate schedule, and the same floats as the formulas each loop had before
the schedules were gathered into one module."""

from __future__ import annotations

import hashlib
import math

import pytest
import torch

from pixelssl.engine.schedules import cosine, scale_lr, set_lr, warmup_cosine, warmup_decay, warmup_multistep


def test_lr_schedule_warmup_then_cosine():
    assert math.isclose(warmup_cosine(0, 100, 1.0, 10), 0.1)
    assert math.isclose(warmup_cosine(9, 100, 1.0, 10), 1.0)
    assert math.isclose(warmup_cosine(10, 100, 1.0, 10), 1.0)
    assert math.isclose(warmup_cosine(55, 100, 1.0, 10), 0.5, abs_tol=1e-12)
    assert math.isclose(warmup_cosine(100, 100, 1.0, 10), 0.0, abs_tol=1e-12)


def test_warmup_from_a_fraction_of_the_peak_follows_pixpro_gradual_warmup():
    """PixPro's GradualWarmupScheduler (multiplier 100): lr = base / 100 * (99 * t / W + 1) for t <= W."""
    peak, warmup, multiplier = 2.0, 8, 100
    for step in range(warmup):
        expected = peak / multiplier * ((multiplier - 1) * step / warmup + 1)
        assert math.isclose(warmup_cosine(step, 50, peak, warmup, 1e-6, 1 / multiplier), expected, rel_tol=1e-12)
    assert math.isclose(warmup_cosine(warmup, 50, peak, warmup, 1e-6, 0.01), peak)


def test_cosine_decay_ends_at_min_lr_like_torch_cosine_annealing():
    """After warm-up the schedule equals torch's CosineAnnealingLR(T_max = total - warmup, eta_min) per step."""
    peak, warmup, total, floor = 1.0, 5, 40, 1e-3
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=peak)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total - warmup, eta_min=floor)
    for step in range(warmup, total + 1):
        assert math.isclose(warmup_cosine(step, total, peak, warmup, floor), opt.param_groups[0]["lr"], rel_tol=1e-9)
        opt.step()
        sched.step()
    assert math.isclose(warmup_cosine(total, total, peak, warmup, floor), floor)


def test_segmentation_schedules_warm_up_and_decay_to_zero():
    assert warmup_decay(0, 100, 10) == pytest.approx(0.1)
    assert warmup_decay(10, 100, 10) == pytest.approx(1.0)
    assert warmup_decay(100, 100, 10) == 0.0
    assert warmup_decay(55, 100, 10, "cosine") == pytest.approx(0.5)


def test_detection_warmup_then_steps_or_cosine():
    steps, milestones = 90, [0.5, 0.8]
    assert warmup_multistep(0, steps, milestones, 10, 0.001) == pytest.approx(0.001)
    assert warmup_multistep(5, steps, milestones, 10, 0.001) == pytest.approx(0.001 * 0.5 + 0.5)
    assert [warmup_multistep(s, steps, milestones, 10, 0.001) for s in (10, 44, 45, 71, 72, 89)] == \
        pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    assert [warmup_multistep(s, 100, milestones, 0, 0.001, "cosine") for s in (0, 50, 100)] == pytest.approx([1, 0.5, 0])


def test_probe_cosine_reaches_zero_and_stays():
    assert [cosine(min(s, 10), 10) for s in (0, 5, 10, 12)] == pytest.approx([1, 0.5, 0, 0])


# Every schedule at every step of these runs, as the loops computed them before engine.schedules existed (the
# formulas of train.optim.lr_at, evaluate.segmentation / detection.lr_factor and the probe's cosine at commit
# c16130d): the sha256 of the repr of the 45672 floats, so each loop's numbers are unchanged to the last bit.
BEFORE = "9bf46d04edc8812e1a76836740553ea9844f8efdd4b40dc5b7f9bb9a10575b28"


def test_every_schedule_gives_the_floats_its_loop_had_before():
    values = []
    for total, warmup in ((1, 0), (97, 0), (500, 13), (1000, 1), (4096, 300)):
        for step in range(total + 3):
            for peak, final, ratio in ((0.3, 0.0, -1.0), (4.8, 1e-6, 0.01), (1.0, 1e-3, 0.0)):
                values.append(warmup_cosine(step, total, peak, warmup, final, ratio))
            values += [warmup_decay(step, total, warmup, decay) for decay in ("poly", "cosine")]
            values += [warmup_multistep(step, total, [0.67, 0.89], warmup, 0.001, decay) for decay in ("step", "cosine")]
            values.append(cosine(min(step, total), total))
    assert len(values) == 45672
    assert hashlib.sha256(repr(values).encode()).hexdigest() == BEFORE


def test_set_lr_and_scale_lr():
    params = [torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))]
    opt = torch.optim.SGD([{"params": [params[0]], "lr": 0.1}, {"params": [params[1]], "lr": 0.01}], lr=0.1)
    scale_lr(opt, [0.1, 0.01], 0.5)
    assert [g["lr"] for g in opt.param_groups] == [0.05, 0.005]
    set_lr(opt, 0.2)
    assert [g["lr"] for g in opt.param_groups] == [0.2, 0.2]
