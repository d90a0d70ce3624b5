"""Momentum (EMA) teacher encoders."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


def cosine_momentum(base: float, step: int, total_steps: int) -> float:
    """BYOL / PixPro schedule ``m = 1 - (1 - m0) * (cos(pi * k / K) + 1) / 2``: m0 at step 0, 1 at step K."""
    k = min(max(step, 0), max(total_steps, 1))
    return 1.0 - (1.0 - base) * (math.cos(math.pi * k / max(total_steps, 1)) + 1.0) / 2.0


def make_teacher(module: nn.Module) -> nn.Module:
    """A frozen copy of ``module`` initialised equal to it."""
    teacher = copy.deepcopy(module)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


@torch.no_grad()
def ema_update_(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """``teacher <- m * teacher + (1 - m) * student`` over parameters (buffers keep their own statistics,
    as in the PixPro and MoCo releases). One fused foreach op instead of a Python loop per tensor."""
    t_params = [p for p in teacher.parameters()]
    s_params = [p.detach() for p in student.parameters()]
    if len(t_params) != len(s_params):
        raise ValueError("teacher and student have different parameter lists")
    torch._foreach_lerp_(t_params, s_params, 1.0 - momentum)
