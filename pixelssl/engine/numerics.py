"""What the training loop does with a NaN/inf loss or gradient (``train.nonfinite``), and a last check that no
non-finite value ever reaches a checkpoint.

``stop`` ends the run with a message (the checkpoint on disk predates the bad step). ``skip`` drops the step: no
optimiser update, and the buffers the forward pass already changed (BatchNorm running statistics, negative
queues) are put back from a copy taken before it, so one bad batch leaves no trace; after
``train.max_nonfinite_skips`` skipped steps the run stops anyway, because by then something is systematically wrong.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import Tensor, nn

from pixelssl.engine.checkpoint import last_checkpoint_note
from pixelssl.errors import TrainingDiverged

log = logging.getLogger(__name__)

PRETRAIN_ADVICE = "try a lower train.base_lr, train.grad_clip, or train.nonfinite=skip"


class NonFiniteGuard:
    """The ``train.nonfinite`` policy for one run; ``skips`` is checkpointed so the limit spans resumes.

    ``unit`` names what a skip drops (pre-training: a step; inpainting: one critic or generator update), ``advice``
    what to change when the run stops.
    """

    def __init__(self, policy: str, max_skips: int, skips: int = 0, advice: str = PRETRAIN_ADVICE,
                 unit: str = "step") -> None:
        self.policy = policy
        self.max_skips = max_skips
        self.skips = skips
        self.advice, self.unit = advice, unit
        self._saved: dict[str, Tensor] | None = None

    def before_forward(self, model: nn.Module) -> None:
        """With ``skip``: copy every buffer the forward pass may change (costs one copy of the queues per step)."""
        if self.policy == "skip":
            self._saved = {name: buf.detach().clone() for name, buf in model.named_buffers()}

    def bad_step(self, model: nn.Module, step: int, problem: str, last_checkpoint: str) -> None:
        """Stop with a message, or undo the step's buffer updates and count it."""
        if self.policy == "stop":
            raise TrainingDiverged(f"{problem} at step {step}; training stopped ({last_checkpoint}); {self.advice}")
        self.skips += 1
        if self.skips > self.max_skips:
            raise TrainingDiverged(f"{problem} at step {step}: {self.skips} non-finite {self.unit}s skipped, more than "
                                   f"train.max_nonfinite_skips={self.max_skips}; training stopped ({last_checkpoint})")
        assert self._saved is not None, "before_forward() was not called this step"
        buffers = dict(model.named_buffers())
        with torch.no_grad():
            for name, saved in self._saved.items():
                buffers[name].copy_(saved)
        restored = ", BatchNorm statistics and queues restored" if self._saved else ""
        log.warning("%s at step %d: %s skipped (%d of at most %d)%s", problem, step, self.unit, self.skips,
                    self.max_skips, restored)


def gradient_problem(params: list[nn.Parameter], optimizer: torch.optim.Optimizer,
                     scaler: torch.amp.GradScaler | None = None, grad_clip: float = 0.0) -> str | None:
    """Unscale and clip as configured; say what is wrong when the gradients are not finite.

    With a GradScaler (fp16) an overflow is routine: the scaler skips that update and lowers its scale by itself.
    """
    if scaler is not None and scaler.is_enabled():
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


def assert_finite(model: nn.Module, step: int, ckpt_dir: Path) -> None:
    """Refuse to checkpoint a model holding NaN/inf: a broken model never replaces a good checkpoint."""
    bad = first_nonfinite(model)
    if bad is not None:
        raise TrainingDiverged(f"{bad} holds NaN/inf at step {step}; no checkpoint written "
                               f"({last_checkpoint_note(ckpt_dir)})")
