"""engine.numerics: the train.nonfinite policy (stop, or skip with buffers restored), the gradient check, no NaN saved."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pixelssl.engine.checkpoint import save_checkpoint
from pixelssl.engine.numerics import NonFiniteGuard, assert_finite, first_nonfinite, gradient_problem
from pixelssl.errors import TrainingDiverged
from pixelssl.models.queue import FeatureQueue


class _BnAndQueue(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
        self.queue = FeatureQueue(4, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def test_skip_restores_batchnorm_statistics_and_queue():
    torch.manual_seed(0)
    model = _BnAndQueue().train()
    model(torch.randn(2, 3, 4, 4))  # some history
    before = {k: v.clone() for k, v in model.state_dict().items()}
    guard = NonFiniteGuard("skip", max_skips=1)
    guard.before_forward(model)
    out = model(torch.full((2, 3, 4, 4), float("nan")))  # poisons the running statistics
    model.queue.enqueue(out.mean((2, 3)))  # and the queue
    assert first_nonfinite(model) is not None
    guard.bad_step(model, 5, "loss became nan", "no checkpoint")
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before) and guard.skips == 1
    guard.before_forward(model)
    with pytest.raises(TrainingDiverged, match="max_nonfinite_skips=1"):
        guard.bad_step(model, 6, "loss became nan", "no checkpoint")


def test_stop_policy_raises_with_advice():
    with pytest.raises(TrainingDiverged, match=r"gradient norm became nan at step 3.*train.nonfinite=skip"):
        NonFiniteGuard("stop", 5).bad_step(nn.Linear(1, 1), 3, "gradient norm became nan", "no checkpoint")


def test_gradient_problem_detects_nan_and_inf_and_leaves_fp16_overflow_to_the_scaler():
    layer = nn.Linear(3, 2)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    off = torch.amp.GradScaler("cpu", enabled=False)
    layer(torch.ones(1, 3)).sum().backward()
    assert gradient_problem(list(layer.parameters()), opt, off, 0.0) is None
    assert gradient_problem(list(layer.parameters()), opt, off, 1.0) is None
    for bad in (float("nan"), float("inf")):
        layer.weight.grad[0, 0] = bad
        problem = gradient_problem(list(layer.parameters()), opt, off, 0.0)
        assert problem is not None and problem.startswith("gradient norm became")
    assert gradient_problem(list(layer.parameters()), opt, torch.amp.GradScaler("cpu", enabled=True), 0.0) is None


def test_a_clipped_gradient_is_checked_after_clipping():
    layer = nn.Linear(3, 2)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    off = torch.amp.GradScaler("cpu", enabled=False)
    (100.0 * layer(torch.ones(1, 3))).sum().backward()
    assert gradient_problem(list(layer.parameters()), opt, off, 1.0) is None
    assert torch.nn.utils.get_total_norm([p.grad for p in layer.parameters()]) == pytest.approx(1.0, rel=1e-4)
    layer.bias.grad[0] = float("inf")
    assert gradient_problem(list(layer.parameters()), opt, off, 1.0) == "gradient norm became inf"


def test_a_model_holding_nan_is_never_checkpointed_and_the_error_names_the_tensor(tmp_path):
    model = _BnAndQueue()
    assert first_nonfinite(model) is None
    assert_finite(model, 3, tmp_path)  # finite: nothing to say
    with torch.no_grad():
        model.net[1].running_var[2] = float("inf")  # a buffer counts as much as a parameter
    assert first_nonfinite(model) == "net.1.running_var"
    with pytest.raises(TrainingDiverged, match=r"^net\.1\.running_var holds NaN/inf at step 4; no checkpoint written "
                                               r"\(no checkpoint was written yet\)$"):
        assert_finite(model, 4, tmp_path)
    save_checkpoint(tmp_path, {"step": 3}, 3, keep=2)
    with pytest.raises(TrainingDiverged, match="last good checkpoint: .*last.pt"):
        assert_finite(model, 4, tmp_path)
