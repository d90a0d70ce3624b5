"""Segmentation fine-tuning under torchrun on CPU (gloo): two processes sharing the global batch, with BatchNorm
synchronised over them, train the same model as one process with that batch; rank 0 alone writes eval.json; the
probes refuse to run under torchrun instead of repeating the work in every process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pixelssl.cli import main

FINETUNE = ["finetune-seg", "--backbone", "random", "--arch", "resnet18", "--data", "synthetic", "--head", "fcn",
            "steps=3", "batch_size=4", "log_every=1", "head_channels=8", "lr=0.001", "device=cpu", "threads=1",
            "sync_bn=true", "dropout=0", "augmentation.crop_size=[64,64]", "augmentation.scale_range=[1.0,1.0]",
            "synthetic.train_images=8", "synthetic.val_images=4", "synthetic.size=64"]


def torchrun(nproc: int, *args: str) -> subprocess.CompletedProcess:
    launcher = Path(sys.executable).with_name("torchrun")
    command = [str(launcher)] if launcher.exists() else [sys.executable, "-m", "torch.distributed.run"]
    return subprocess.run([*command, "--standalone", f"--nproc_per_node={nproc}", *args], capture_output=True,
                          text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)


def test_two_processes_fine_tune_as_one_with_the_global_batch(tmp_path):
    assert main([*FINETUNE, "--out", str(tmp_path / "one")]) == 0
    proc = torchrun(2, "-m", "pixelssl", *FINETUNE, "--out", str(tmp_path / "two"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    one, two = (json.loads((tmp_path / name / "eval.json").read_text()) for name in ("one", "two"))
    assert one["data"]["processes"] == 1 and two["data"]["processes"] == 2
    # Same crops, SyncBN statistics over the global batch, DDP's mean gradient, the logged loss averaged over the
    # processes: equal curves up to float rounding (no dropout; no void pixel, so the per-process means over pixels
    # average to the global one).
    for (step1, loss1), (step2, loss2) in zip(one["metrics"]["train_loss"], two["metrics"]["train_loss"], strict=True):
        assert step1 == step2 and loss2 == pytest.approx(loss1, rel=1e-4)
    assert two["metrics"]["miou"] == pytest.approx(one["metrics"]["miou"], abs=1e-6)
    assert (tmp_path / "two" / "model.safetensors").is_file()


def test_the_probe_refuses_torchrun(tmp_path):
    proc = torchrun(2, "-m", "pixelssl", "probe", "--backbone", "random", "--arch", "resnet18", "--data", "synthetic",
                    "--out", str(tmp_path))
    assert proc.returncode != 0
    assert "probe runs in one process; start it without torchrun" in proc.stderr


def test_detection_fine_tunes_in_two_processes_with_cpu_sync_batchnorm(tmp_path):
    from pixelssl.data.synthetic_coco import export_synthetic_coco

    export_synthetic_coco(tmp_path / "coco", train_images=4, val_images=4, size=64, num_classes=3, seed=1)
    proc = torchrun(2, "-m", "pixelssl", "finetune-det", "--backbone", "random", "--arch", "resnet18", "--data",
                    str(tmp_path / "coco"), "--model", "fcos", "--norm", "sync", "--steps", "2", "--out",
                    str(tmp_path / "out"), "min_size=64", "max_size=64", "batch_size=4", "fpn_channels=32",
                    "warmup_steps=0", "eval_batch_size=2", "detections_per_image=10", "threads=1", "device=cpu",
                    "log_every=1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((tmp_path / "out" / "eval.json").read_text())
    assert record["data"]["processes"] == 2 and [s for s, _ in record["metrics"]["train_loss"]] == [1, 2]
    assert set(record["metrics"]["bbox"]) >= {"AP", "AP50"}
