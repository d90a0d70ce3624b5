"""Inpainting training on the shared engine, as pre-training: one writer per run directory, SIGTERM / SIGUSR1
stop cleanly with a checkpoint (exit 75 from the CLI) and the resumed run ends bit-identical, and a NaN/inf loss
or gradient follows ``train.nonfinite`` (stop, or drop that update, with a limit) without ever writing a broken
checkpoint. The pre-training counterparts are test_preemption.py and test_numerics.py (the lock: tests/engine/test_lock.py)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

from pixelssl.config import load_config
from pixelssl.engine.checkpoint import load_checkpoint
from pixelssl.engine.logger import read_metrics
from pixelssl.errors import Preempted, RunLocked, TrainingDiverged
from pixelssl.inpaint.config import InpaintConfig
from pixelssl.inpaint.losses import InpaintLoss
from pixelssl.inpaint.train import train_inpainting

TINY = ["data.image_size=32", "data.synthetic.size=32", "data.synthetic.num_images=64", "data.val_images=4",
        "mask.box_size=16", "mask.max_delta=4", "model.cnum=8", "model.critic_cnum=8", "train.batch_size=4",
        "train.critic_steps=1", "train.tensorboard=false", "train.progress=false", "train.log_every=1",
        "train.checkpoint_every=1", "train.threads=1"]


def _config(tmp_path: Path, name: str, *extra: str) -> InpaintConfig:
    return load_config(InpaintConfig, overrides=[*TINY, f"run.output_dir={tmp_path}", f"run.name={name}", *extra])


def _generator(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run / "checkpoints" / "last.pt")["generator"]


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------------------------------- stop signals
def test_sigterm_checkpoints_and_exits_75_then_resumes_exactly(tmp_path):
    cmd = [sys.executable, "-m", "pixelssl", "inpaint", "train", *TINY, "train.max_steps=100000",
           f"run.output_dir={tmp_path}", "run.name=victim"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    target, deadline = tmp_path / "victim" / "checkpoints" / "step_00000002.pt.sha256", time.time() + 180
    while not target.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "training did not reach step 2 in time"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == Preempted.exit_code, err
    assert "SIGTERM after step" in err and "pixelssl inpaint train --resume" in err and "Traceback" not in err
    assert not (tmp_path / "victim" / ".lock").exists()  # the lock is released on the way out
    stopped = int(load_checkpoint(tmp_path / "victim" / "checkpoints" / "last.pt")["step"])
    assert stopped >= 2
    resumed = train_inpainting(resume=tmp_path / "victim", overrides=[f"train.max_steps={stopped + 2}"])
    whole = train_inpainting(_config(tmp_path, "whole", f"train.max_steps={stopped + 2}"))
    assert resumed.steps == whole.steps == stopped + 2
    assert _same(_generator(resumed.run_dir), _generator(whole.run_dir))


def test_preempted_in_process_leaves_a_resumable_run(tmp_path, monkeypatch, sigusr1_in_first_step):
    with pytest.raises(Preempted, match="SIGUSR1 after step 1/4; checkpoint written; continue with: pixelssl inpaint"):
        train_inpainting(_config(tmp_path, "usr1", "train.max_steps=4", "train.checkpoint_every=3"))
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "usr1" / "checkpoints" / "last.pt")["step"] == 1  # written for the stop
    resumed = train_inpainting(resume=tmp_path / "usr1")
    whole = train_inpainting(_config(tmp_path, "whole", "train.max_steps=4"))
    assert _same(_generator(resumed.run_dir), _generator(whole.run_dir))


# ------------------------------------------------------------------------------------------------ run lock
def test_a_run_directory_in_use_is_refused_and_a_finished_run_leaves_no_lock(tmp_path):
    first = train_inpainting(_config(tmp_path, "locked", "train.max_steps=1"))
    assert not (first.run_dir / ".lock").exists()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (first.run_dir / ".lock").write_text(f"{socket.gethostname()} {sleeper.pid}\n")
        with pytest.raises(RunLocked, match=f"pid {sleeper.pid}"):
            train_inpainting(resume=first.run_dir, overrides=["train.max_steps=2"])
    finally:
        sleeper.kill()
        sleeper.wait()
    assert load_checkpoint(first.run_dir / "checkpoints" / "last.pt")["step"] == 1  # the run was not touched


# ------------------------------------------------------------------------------------------ non-finite policy
def _poison(monkeypatch, part: str, at_calls: set[int], where: str = "loss") -> None:
    """Make the generator's (or the critics') loss NaN, or finite with NaN gradients, on the given calls."""
    original = getattr(InpaintLoss, part)
    calls = {"n": 0}

    def poisoned(self, *args, **kwargs):
        calls["n"] += 1
        terms = original(self, *args, **kwargs)
        if calls["n"] in at_calls:
            total = terms["total"]
            # sqrt'(0) = inf times d(0 * loss) = 0 -> NaN gradients; the value of the loss is unchanged
            terms = {**terms, "total": total * float("nan") if where == "loss" else total + torch.sqrt(total * 0)}
        return terms

    monkeypatch.setattr(InpaintLoss, part, poisoned)


def test_nonfinite_generator_loss_stops_and_keeps_the_good_checkpoint(tmp_path, monkeypatch):
    _poison(monkeypatch, "generator", {3})
    with pytest.raises(TrainingDiverged, match=r"generator loss became nan at step 2; training stopped \(last good "
                                               r"checkpoint: .*last.pt\); try a lower train.lr"):
        train_inpainting(_config(tmp_path, "stop", "train.max_steps=5"))
    state = load_checkpoint(tmp_path / "stop" / "checkpoints" / "last.pt")
    assert state["step"] == 2 and all(torch.isfinite(v).all() for v in state["generator"].values())
    assert not (tmp_path / "stop" / ".lock").exists()


def test_nan_critic_gradient_with_finite_loss_stops_the_run(tmp_path, monkeypatch):
    _poison(monkeypatch, "critic", {2}, where="grad")
    with pytest.raises(TrainingDiverged, match="gradient norm became nan at step 1"):
        train_inpainting(_config(tmp_path, "gradstop", "train.max_steps=5"))
    assert load_checkpoint(tmp_path / "gradstop" / "checkpoints" / "last.pt")["step"] == 1


def test_skip_policy_drops_the_update_and_finishes_with_finite_weights(tmp_path, monkeypatch):
    _poison(monkeypatch, "generator", {3})
    result = train_inpainting(_config(tmp_path, "skip", "train.max_steps=5", "train.nonfinite=skip"))
    state = load_checkpoint(result.run_dir / "checkpoints" / "last.pt")
    assert state["step"] == 5 and state["nonfinite_skips"] == 1
    assert all(torch.isfinite(v).all() for part in ("generator", "critics") for v in state[part].values())
    records = [r for r in read_metrics(result.run_dir / "metrics.jsonl") if "nonfinite_skips" in r]
    assert [r["nonfinite_skips"] for r in records] == [0, 0, 1, 1, 1]


def test_skips_count_across_a_resume_and_too_many_stop_the_run(tmp_path, monkeypatch):
    _poison(monkeypatch, "critic", {2})
    train_inpainting(_config(tmp_path, "many", "train.max_steps=3", "train.nonfinite=skip",
                             "train.max_nonfinite_skips=1"))
    assert load_checkpoint(tmp_path / "many" / "checkpoints" / "last.pt")["nonfinite_skips"] == 1
    monkeypatch.undo()
    _poison(monkeypatch, "critic", {1})  # the first critic update after the resume
    with pytest.raises(TrainingDiverged, match="2 non-finite updates skipped, more than train.max_nonfinite_skips=1"):
        train_inpainting(resume=tmp_path / "many", overrides=["train.max_steps=5"])


def test_a_model_holding_inf_is_never_checkpointed(tmp_path):
    """Weights turned to inf by an update whose loss and gradients were finite (a post-step hook on every
    optimiser; without critics only the generator's steps)."""

    def poison(optimizer, args, kwargs):
        with torch.no_grad():
            optimizer.param_groups[0]["params"][0].fill_(float("inf"))

    handle = register_optimizer_step_post_hook(poison)
    try:
        with pytest.raises(TrainingDiverged, match=r"^generator\.\S+ holds NaN/inf at step 1; no checkpoint written "
                                                   r"\(no checkpoint was written yet\)"):
            train_inpainting(_config(tmp_path, "inf", "train.max_steps=3", "loss.gan_alpha=0"))
    finally:
        handle.remove()
    assert not (tmp_path / "inf" / "checkpoints" / "last.pt").exists()
