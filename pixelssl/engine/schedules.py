"""The learning-rate schedules of every loop, in one place. Each is a pure function of the step, so a resumed run
recomputes the rate it stopped at, and each caller's arithmetic is kept exactly (the same floats as before the
schedules moved here):

- pre-training (``train.*``): linear warm-up to the peak, then cosine decay to ``final_lr`` (``warmup_cosine``);
- segmentation fine-tuning: linear warm-up from 0, then poly (power 0.9) or cosine decay to 0 (``warmup_decay``);
- detection fine-tuning: detectron2's ``WarmupMultiStepLR`` (x0.1 at each milestone) or cosine, with a linear
  warm-up from ``warmup_factor`` (``warmup_multistep``);
- linear probes: cosine decay to 0 (``cosine``).

Inpainting trains at a constant rate (DeepFill v1's Adam at 1e-4), so it needs none.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch.optim import Optimizer


def cosine(position: float, length: float = 1.0) -> float:
    """Half a cosine: 1 at ``position`` 0, 0 at ``position == length``."""
    return 0.5 * (1.0 + math.cos(math.pi * position / length))


def decay_progress(step: int, warmup_steps: int, total_steps: int) -> float:
    """How far ``step`` is through the decay after the warm-up, in [0, 1]."""
    return min(max(step - warmup_steps, 0) / max(total_steps - warmup_steps, 1), 1.0)


def warmup_cosine(step: int, total_steps: int, peak_lr: float, warmup_steps: int, final_lr: float = 0.0,
                  warmup_start_ratio: float = -1.0) -> float:
    """Pre-training's learning rate: linear warm-up to ``peak_lr`` over ``warmup_steps``, then cosine decay to
    ``final_lr`` at ``total_steps``.

    Warm-up from ``r = warmup_start_ratio``: ``peak * (r + (1 - r) * step / warmup)``, PixPro's
    ``GradualWarmupScheduler`` with ``multiplier = 1 / r`` (r = 0.01 there); ``r = -1`` starts at ``peak / warmup``.
    """
    if warmup_steps > 0 and step < warmup_steps:
        if warmup_start_ratio < 0:
            return peak_lr * (step + 1) / warmup_steps
        return peak_lr * (warmup_start_ratio + (1.0 - warmup_start_ratio) * step / warmup_steps)
    return final_lr + (peak_lr - final_lr) * cosine(decay_progress(step, warmup_steps, total_steps))


def warmup_decay(step: int, total_steps: int, warmup_steps: int, decay: str = "poly") -> float:
    """Segmentation fine-tuning's multiplier of the peak lr: linear warm-up (``(step + 1) / warmup``), then
    ``poly`` (``(1 - progress) ** 0.9``) or ``cosine`` decay to 0 at ``total_steps``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = decay_progress(step, warmup_steps, total_steps)
    if decay == "cosine":
        return cosine(progress)
    return (1 - progress) ** 0.9


def warmup_multistep(step: int, total_steps: int, milestones: Sequence[float], warmup_steps: int,
                     warmup_factor: float, decay: str = "step") -> float:
    """Detection fine-tuning's multiplier of the peak lr: ``step`` (x0.1 at each milestone, given as fractions of
    ``total_steps``) or ``cosine`` decay over the whole run, times detectron2's ``WarmupMultiStepLR`` warm-up
    (linear from ``warmup_factor`` to 1 over ``warmup_steps``)."""
    if decay == "cosine":
        factor = cosine(step, total_steps)
    else:
        factor = 0.1 ** sum(step >= m * total_steps for m in milestones)
    if step < warmup_steps:
        alpha = step / warmup_steps
        factor *= warmup_factor * (1 - alpha) + alpha
    return factor


def set_lr(optimizer: Optimizer, lr: float) -> None:
    """The same learning rate for every parameter group."""
    for group in optimizer.param_groups:
        group["lr"] = lr


def scale_lr(optimizer: Optimizer, base_lrs: Sequence[float], factor: float) -> None:
    """Each parameter group's base learning rate times ``factor`` (groups with their own rates keep the ratio)."""
    for group, base in zip(optimizer.param_groups, base_lrs, strict=True):
        group["lr"] = base * factor
