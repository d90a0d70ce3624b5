"""What the training loop does with a NaN/inf loss or gradient (``train.nonfinite``), and a last check that no
non-finite value ever reaches a checkpoint.

``stop`` ends the run with a message (the checkpoint on disk predates the bad step). ``skip`` drops the step: no
optimiser update, and the buffers the forward pass already changed (BatchNorm running statistics, negative
queues) are put back from a copy taken before it, so one bad batch leaves no trace; after
``train.max_nonfinite_skips`` skipped steps the run stops anyway, because by then something is systematically wrong.
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor, nn

from pixelssl.errors import TrainingDiverged

log = logging.getLogger(__name__)


class NonFiniteGuard:
    """The ``train.nonfinite`` policy for one run; ``skips`` is checkpointed so the limit spans resumes."""

    def __init__(self, policy: str, max_skips: int, skips: int = 0) -> None:
        self.policy = policy
        self.max_skips = max_skips
        self.skips = skips
        self._saved: dict[str, Tensor] | None = None

    def before_forward(self, model: nn.Module) -> None:
        """With ``skip``: copy every buffer the forward pass may change (costs one copy of the queues per step)."""
        if self.policy == "skip":
            self._saved = {name: buf.detach().clone() for name, buf in model.named_buffers()}

    def bad_step(self, model: nn.Module, step: int, problem: str, last_checkpoint: str) -> None:
        """Stop with a message, or undo the step's buffer updates and count it."""
        advice = "try a lower train.base_lr, train.grad_clip, or train.nonfinite=skip"
        if self.policy == "stop":
            raise TrainingDiverged(f"{problem} at step {step}; training stopped ({last_checkpoint}); {advice}")
        self.skips += 1
        if self.skips > self.max_skips:
            raise TrainingDiverged(f"{problem} at step {step}: {self.skips} non-finite steps skipped, more than "
                                   f"train.max_nonfinite_skips={self.max_skips}; training stopped ({last_checkpoint})")
        assert self._saved is not None, "before_forward() was not called this step"
        buffers = dict(model.named_buffers())
        with torch.no_grad():
            for name, saved in self._saved.items():
                buffers[name].copy_(saved)
        log.warning("%s at step %d: step skipped (%d of at most %d), BatchNorm statistics and queues restored",
                    problem, step, self.skips, self.max_skips)


def gradient_problem(params: list[nn.Parameter], optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                     grad_clip: float) -> str | None:
    """Unscale and clip as configured; say what is wrong when the gradients are not finite.

    With a GradScaler (fp16) an overflow is routine: the scaler skips that update and lowers its scale by itself.
    """
    if scaler.is_enabled():
        if grad_clip > 0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        return None
    if grad_clip > 0:
        norm = torch.nn.utils.clip_grad_norm_(params, grad_clip)
    else:
        grads = [p.grad for p in params if p.grad is not None]
        norm = torch.nn.utils.get_total_norm(grads) if grads else torch.zeros(())
    return None if bool(torch.isfinite(norm)) else f"gradient norm became {float(norm)}"


def first_nonfinite(model: nn.Module) -> str | None:
    """Name of the first floating-point parameter or buffer holding NaN/inf, if any."""
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            return name
    return None
