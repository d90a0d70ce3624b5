"""models.momentum: the cosine teacher-momentum schedule, frozen teacher copies and the EMA update."""

import math

import pytest
import torch
from torch import nn

from pixelssl.models.momentum import cosine_momentum, ema_update_, make_teacher


@pytest.mark.parametrize("step,expected", [(0, 0.99), (50, 0.995), (100, 1.0), (25, 1 - 0.01 * (math.cos(math.pi / 4) + 1) / 2)])
def test_cosine_momentum_schedule(step, expected):
    assert math.isclose(cosine_momentum(0.99, step, 100), expected, rel_tol=1e-12)


def test_steps_outside_the_schedule_are_clamped_to_its_ends():
    assert cosine_momentum(0.99, -5, 100) == pytest.approx(0.99)
    assert cosine_momentum(0.99, 250, 100) == 1.0
    assert cosine_momentum(0.99, 0, 0) == pytest.approx(0.99)  # no steps: the base, not a division by zero


def test_ema_update_moves_teacher_towards_student():
    student = nn.Linear(3, 2)
    teacher = make_teacher(student)
    assert all(not p.requires_grad for p in teacher.parameters())
    before = teacher.weight.clone()
    with torch.no_grad():
        student.weight.add_(1.0)
    ema_update_(teacher, student, 0.9)
    assert torch.allclose(teacher.weight, 0.9 * before + 0.1 * student.weight)


def test_ema_leaves_buffers_alone_and_refuses_another_architecture():
    student = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    teacher = make_teacher(student)
    with torch.no_grad():
        student[1].running_mean.fill_(5.0)
    ema_update_(teacher, student, 0.5)
    assert torch.equal(teacher[1].running_mean, torch.zeros(2))  # buffers keep their own statistics
    with pytest.raises(ValueError, match="different parameter lists"):
        ema_update_(teacher, nn.Linear(3, 2), 0.5)
