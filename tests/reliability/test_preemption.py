"""Killing a training process loses nothing: SIGTERM stops cleanly with a checkpoint and exit code 75, SIGKILL
leaves the last atomic checkpoint; either way the resumed run ends bit-identical to an uninterrupted one."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from pixelssl.config import PretrainConfig, load_config
from pixelssl.errors import Preempted
from pixelssl.train.loop import pretrain

STEPS = 8
TINY = ["model.backbone=resnet18", "model.proj_hidden_dim=32", "model.proj_dim=16", "data.image_size=32",
        "data.synthetic.num_images=32", "data.synthetic.size=48", "data.num_workers=0", "train.batch_size=4",
        "train.warmup_steps=1", "train.log_every=1", "train.tensorboard=false", "train.progress=false",
        "train.amp=fp32", "train.threads=1", f"train.max_steps={STEPS}", "train.checkpoint_every=1"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, torch.Tensor]:
    out = tmp_path_factory.mktemp("reference")
    cfg = load_config(PretrainConfig, "pixpro_r18_demo", [*TINY, f"run.output_dir={out}", "run.name=ref"])
    return load_file(pretrain(cfg).backbone_path)


def _launch(out: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "pixelssl", "pretrain", "--config", "pixpro_r18_demo", *TINY,
           f"run.output_dir={out}", "run.name=victim"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def _wait_for_checkpoint(run: Path, step: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    target = run / "checkpoints" / f"step_{step:08d}.pt.sha256"
    deadline = time.time() + timeout
    while not target.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "training did not reach the step in time"
        time.sleep(0.05)


def _resume_and_compare(run: Path, reference: dict[str, torch.Tensor]) -> None:
    result = pretrain(resume=run)
    assert result.steps == STEPS
    resumed = load_file(result.backbone_path)
    assert resumed.keys() == reference.keys()
    assert all(torch.equal(resumed[k], reference[k]) for k in reference)


def test_sigterm_checkpoints_and_exits_75_then_resumes_exactly(tmp_path, reference):
    proc = _launch(tmp_path)
    _wait_for_checkpoint(tmp_path / "victim", 2, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == Preempted.exit_code, err
    assert "SIGTERM after step" in err and "--resume" in err and "Traceback" not in err
    assert not (tmp_path / "victim" / ".lock").exists()  # the lock is released on the way out
    _resume_and_compare(tmp_path / "victim", reference)


def test_sigkill_at_a_random_step_then_resume_is_bit_identical(tmp_path, reference):
    kill_after = random.Random(os.getpid()).randint(1, STEPS - 2)
    proc = _launch(tmp_path)
    _wait_for_checkpoint(tmp_path / "victim", kill_after, proc)
    proc.kill()
    proc.wait(timeout=60)
    assert (tmp_path / "victim" / ".lock").exists()  # left behind by the dead process: stale, taken over
    _resume_and_compare(tmp_path / "victim", reference)


def test_resume_auto_starts_then_continues(tmp_path, capsys):
    from pixelssl.cli import main

    args = ["pretrain", "--resume", "auto", "--config", "pixpro_r18_demo", *TINY, f"run.output_dir={tmp_path}",
            "run.name=auto", "train.max_steps=2"]
    assert main([*args[:-1], "train.max_steps=1"]) == 0  # first call: a new run (stopped early on purpose)
    capsys.readouterr()
    assert main(args) == 1  # same run, different length: refused, the difference is named
    assert "train.max_steps" in capsys.readouterr().err
    assert main([*args[:-1], "train.max_steps=1"]) == 0  # the same command again: resumed, nothing left
    assert "already finished" in capsys.readouterr().out


def test_preempted_in_process_leaves_a_resumable_run(tmp_path, reference, monkeypatch, sigusr1_in_first_step):
    cfg = load_config(PretrainConfig, "pixpro_r18_demo", [*TINY, f"run.output_dir={tmp_path}", "run.name=usr1"])
    with pytest.raises(Preempted, match="SIGUSR1 after step 1/"):
        pretrain(cfg)
    monkeypatch.undo()
    _resume_and_compare(tmp_path / "usr1", reference)
