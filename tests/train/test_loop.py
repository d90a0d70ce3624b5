"""train.loop: end-to-end pre-training on CPU: the loss drops, resume is bit-identical, failures are clean."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pixelssl.config import PretrainConfig, load_config
from pixelssl.engine.checkpoint import load_checkpoint
from pixelssl.engine.logger import read_metrics
from pixelssl.errors import PixelSSLError, TrainingDiverged
from pixelssl.train.loop import pretrain

TINY = [
    "model.backbone=resnet18", "model.proj_hidden_dim=64", "model.proj_dim=32",
    "data.image_size=64", "data.synthetic.num_images=24", "data.synthetic.size=64", "data.num_workers=0",
    "train.batch_size=8", "train.optimizer=sgd", "train.base_lr=0.5", "train.warmup_steps=1",
    "train.log_every=1", "train.tensorboard=false", "train.progress=false", "train.amp=fp32",
]


def tiny_config(tmp_path: Path, *extra: str) -> PretrainConfig:
    return load_config(PretrainConfig, overrides=[*TINY, f"run.output_dir={tmp_path}", *extra])


def test_short_pixpro_run_reduces_the_loss(tmp_path):
    result = pretrain(tiny_config(tmp_path, "run.name=drop", "train.max_steps=8"))
    losses = [r["loss"] for r in read_metrics(result.run_dir / "metrics.jsonl")]
    assert len(losses) == 8
    assert np.mean(losses[-3:]) < losses[0] - 0.5
    assert (result.run_dir / "config.yaml").is_file()
    assert (result.run_dir / "checkpoints" / "last.pt").is_file()


def test_exported_backbone_loads_into_torchvision(tmp_path):
    import torchvision
    from safetensors.torch import load_file

    result = pretrain(tiny_config(tmp_path, "run.name=export", "train.max_steps=1"))
    model = torchvision.models.resnet18()
    missing, unexpected = model.load_state_dict(load_file(result.backbone_path), strict=False)
    assert sorted(missing) == ["fc.bias", "fc.weight"] and not unexpected


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / "checkpoints" / "last.pt")["model"]


@pytest.mark.parametrize("method", [
    ["method.name=pixpro", "method.ins_loss_weight=1.0"],
    ["method.name=moco", "method.queue_size=16", "method.shuffle_bn_groups=2", "train.optimizer=lars"],
    ["method.name=pixcontrast", "method.queue_size=16"],
])
def test_resume_is_bit_identical(tmp_path, method):
    common = ["train.max_steps=6", "train.checkpoint_every=3", "train.keep_checkpoints=5", *method]
    full = pretrain(tiny_config(tmp_path, "run.name=full", *common))

    # Resume from the step-3 checkpoint in a fresh directory, with a loader worker this time:
    # batches depend only on (seed, step), not on the process that draws them.
    resumed_dir = tmp_path / "resumed"
    (resumed_dir / "checkpoints").mkdir(parents=True)
    shutil.copy(full.run_dir / "checkpoints" / "step_00000003.pt", resumed_dir / "checkpoints" / "last.pt")
    torch.manual_seed(1234)  # the resumed run must restore its own RNG state
    pretrain(resume=resumed_dir, overrides=["data.num_workers=1"])

    a, b = _weights(full.run_dir), _weights(resumed_dir)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    steps = [r["step"] for r in read_metrics(resumed_dir / "metrics.jsonl")]
    assert steps == [4, 5, 6]


def test_resume_refuses_a_changed_computation(tmp_path):
    result = pretrain(tiny_config(tmp_path, "run.name=r", "train.max_steps=1"))
    with pytest.raises(PixelSSLError, match="train.base_lr"):
        pretrain(resume=result.run_dir, overrides=["train.base_lr=9"])


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    from pixelssl.methods.pixpro import PixPro

    original = PixPro.forward
    calls = {"n": 0}

    def forward(self, batch):
        calls["n"] += 1
        out = original(self, batch)
        if calls["n"] == 3:
            out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(PixPro, "forward", forward)
    cfg = tiny_config(tmp_path, "run.name=nan", "train.max_steps=6", "train.checkpoint_every=1")
    with pytest.raises(TrainingDiverged, match="step 2"):
        pretrain(cfg)
    assert load_checkpoint(tmp_path / "nan" / "checkpoints" / "last.pt")["step"] == 2


def test_corrupt_image_is_skipped_with_one_warning(tmp_path, caplog):
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(9):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(folder / "sub" / f"{i}.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    cfg = tiny_config(tmp_path, f"data.root={folder}", "run.name=corrupt", "train.max_steps=3",
                      "train.batch_size=4", "data.image_size=32")
    with caplog.at_level(logging.WARNING):
        result = pretrain(cfg)
    assert result.skipped_files == 1
    assert sum("broken.jpg" in r.getMessage() for r in caplog.records) == 1
