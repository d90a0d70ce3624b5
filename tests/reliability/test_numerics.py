"""Numerics end to end: every method's loss is finite for degenerate batches, and a NaN/inf loss or gradient in a run
follows ``train.nonfinite`` (stop, or skip with a limit) without ever writing a broken checkpoint (the policy's unit
tests: tests/engine/test_numerics.py)."""

from __future__ import annotations

import math

import pytest
import torch

from pixelssl.config import PretrainConfig, load_config
from pixelssl.engine.checkpoint import load_checkpoint
from pixelssl.engine.logger import read_metrics
from pixelssl.errors import TrainingDiverged
from pixelssl.methods import build_method
from pixelssl.train.loop import pretrain

PRESETS = ["moco_r18_demo", "pixpro_r18_demo", "pixcontrast_r18_demo", "densecl_r18_demo",
           "pixcon_coord_r18_demo", "pixcon_sim_r18_demo", "pixcon_sr_r18_demo"]
TINY_MODEL = ["model.backbone=resnet18", "model.proj_hidden_dim=32", "model.proj_dim=16"]
TINY_QUEUE = ["method.queue_size=12"]  # the methods with a queue (each method takes only its own keys)
TINY_RUN = [*TINY_MODEL, "data.image_size=32", "data.synthetic.num_images=16", "data.synthetic.size=48",
            "data.num_workers=0", "train.batch_size=4", "train.warmup_steps=1", "train.log_every=1",
            "train.tensorboard=false", "train.progress=false", "train.amp=fp32", "train.threads=1"]


def _batch(b: int, size: int, *, identical: bool, disjoint: bool) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    views = [torch.zeros(b, 3, size, size) if identical else torch.randn(b, 3, size, size, generator=g) for _ in "12"]
    box2 = [0.6, 0.6, 1.0, 1.0] if disjoint else [0.25, 0.3, 1.0, 1.0]
    return {"view1": views[0], "view2": views[1],
            "box1": torch.tensor([[0.0, 0.0, 0.5, 0.5]]).repeat(b, 1), "box2": torch.tensor([box2]).repeat(b, 1),
            "flip1": torch.zeros(b, dtype=torch.bool), "flip2": torch.arange(b) % 2 == 1}


@pytest.mark.parametrize("preset", PRESETS)
def test_losses_are_finite_for_degenerate_batches(preset, one_thread):
    """All pixels identical (zero features after BatchNorm), and views that share no pixel (no positives)."""
    torch.manual_seed(0)
    queue = TINY_QUEUE if "queue_size" in load_config(PretrainConfig, preset).method else []
    method = build_method(load_config(PretrainConfig, preset, [*TINY_MODEL, *queue])).train()
    for identical, disjoint in ((True, False), (False, True), (True, True)):
        method.zero_grad(set_to_none=True)
        out = method(_batch(4, 64, identical=identical, disjoint=disjoint))
        for name, value in out.items():
            assert torch.isfinite(value).all(), (preset, identical, disjoint, name, value)
        out["loss"].backward()
        bad = [n for n, p in method.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
        assert not bad, (preset, identical, disjoint, bad[:3])


def _poison(monkeypatch, at_calls: set[int], where: str) -> None:
    """Make PixPro's forward produce a NaN loss (or a finite loss with NaN gradients) on the given calls."""
    from pixelssl.methods.pixpro import PixPro

    original = PixPro.forward
    calls = {"n": 0}

    def forward(self, batch):
        calls["n"] += 1
        if calls["n"] in at_calls and where == "input":  # NaN images: also poisons BatchNorm statistics
            batch = {**batch, "view1": batch["view1"] * float("nan")}
        out = original(self, batch)
        if calls["n"] in at_calls and where == "grad":
            # sqrt'(0) = inf times d(0 * loss) = 0 -> NaN gradients; the value of the loss is unchanged
            out = {**out, "loss": out["loss"] + torch.sqrt(out["loss"] * 0)}
        return out

    monkeypatch.setattr(PixPro, "forward", forward)


def _cfg(tmp_path, *extra: str) -> PretrainConfig:
    return load_config(PretrainConfig, "pixpro_r18_demo", [*TINY_RUN, f"run.output_dir={tmp_path}", *extra])


def test_skip_policy_finishes_the_run_with_finite_weights(tmp_path, monkeypatch):
    _poison(monkeypatch, {3}, "input")
    result = pretrain(_cfg(tmp_path, "run.name=skip", "train.max_steps=5", "train.nonfinite=skip",
                           "train.checkpoint_every=1"))
    state = load_checkpoint(result.run_dir / "checkpoints" / "last.pt")
    assert state["step"] == 5 and state["nonfinite_skips"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    records = read_metrics(result.run_dir / "metrics.jsonl")
    assert [r["nonfinite_skips"] for r in records] == [0, 0, 1, 1, 1]
    assert math.isfinite(result.final_loss)


def test_nan_gradient_with_finite_loss_stops_and_keeps_the_good_checkpoint(tmp_path, monkeypatch):
    _poison(monkeypatch, {3}, "grad")
    with pytest.raises(TrainingDiverged, match="gradient norm became nan at step 2"):
        pretrain(_cfg(tmp_path, "run.name=gradstop", "train.max_steps=5", "train.checkpoint_every=1"))
    state = load_checkpoint(tmp_path / "gradstop" / "checkpoints" / "last.pt")
    assert state["step"] == 2 and first_nonfinite_in(state["model"]) is None


def first_nonfinite_in(state: dict[str, torch.Tensor]) -> str | None:
    return next((k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()), None)


def test_too_many_skips_stop_the_run(tmp_path, monkeypatch):
    _poison(monkeypatch, {2, 3, 4}, "grad")
    with pytest.raises(TrainingDiverged, match="3 non-finite steps skipped"):
        pretrain(_cfg(tmp_path, "run.name=many", "train.max_steps=6", "train.nonfinite=skip",
                      "train.max_nonfinite_skips=2"))
