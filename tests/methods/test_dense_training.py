"""DenseCL and the PixCon variants end to end: from their presets, the CLI, an image folder; exact resume;
one-line errors for bad method settings."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pixelssl.cli import main
from pixelssl.config import ConfigError, PretrainConfig, load_config
from pixelssl.engine.checkpoint import load_checkpoint
from pixelssl.engine.logger import read_metrics
from pixelssl.train.loop import pretrain

PRESETS = ["densecl_r18_demo", "pixcon_coord_r18_demo", "pixcon_sim_r18_demo", "pixcon_sr_r18_demo"]
TINY = [
    "model.proj_hidden_dim=32", "model.proj_dim=16", "method.queue_size=12",
    "data.image_size=64", "data.synthetic.num_images=16", "data.synthetic.size=64", "data.num_workers=0",
    "train.batch_size=4", "train.warmup_steps=1", "train.log_every=1", "train.tensorboard=false",
    "train.progress=false", "train.amp=fp32", "train.threads=1",
]


def _finite_losses(run_dir: Path) -> list[dict]:
    records = read_metrics(run_dir / "metrics.jsonl")
    for r in records:
        for key in ("loss", "loss_global", "loss_dense", "dense_weight"):
            assert math.isfinite(r[key]), (key, r)
    return records


@pytest.mark.parametrize("preset", PRESETS)
def test_each_variant_trains_from_the_cli(tmp_path, capsys, preset):
    rc = main(["pretrain", "--config", preset, *TINY, "train.max_steps=3", f"run.output_dir={tmp_path}",
               "run.name=cli"])
    assert rc == 0, capsys.readouterr().err
    assert "backbone:" in capsys.readouterr().out
    records = _finite_losses(tmp_path / "cli")
    assert [r["step"] for r in records] == [1, 2, 3]
    assert (tmp_path / "cli" / "backbone.safetensors").is_file()


def test_sr_spatial_ablation_trains(tmp_path):
    cfg = load_config(PretrainConfig, "pixcon_sr_r18_demo",
                      [*TINY, "method.sr_weights=spatial", "train.max_steps=2", f"run.output_dir={tmp_path}"])
    records = _finite_losses(pretrain(cfg).run_dir)
    assert all(0 <= r["dense_weight"] <= 1 for r in records)


@pytest.fixture
def image_folder(tmp_path) -> Path:
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray(rng.integers(0, 255, (72, 96, 3), dtype=np.uint8)).save(folder / "sub" / f"{i}.png")
    return folder


@pytest.mark.parametrize("preset", PRESETS)
def test_each_variant_trains_on_an_image_folder(tmp_path, image_folder, preset):
    cfg = load_config(PretrainConfig, preset, [*TINY, f"data.root={image_folder}", "train.max_steps=2",
                                               f"run.output_dir={tmp_path}", "run.name=folder"])
    result = pretrain(cfg)
    assert result.skipped_files == 0
    assert len(_finite_losses(result.run_dir)) == 2


@pytest.mark.parametrize("preset", ["pixcon_sr_r18_demo", "densecl_r18_demo"])
def test_resume_is_bit_identical(tmp_path, preset):
    # 4 keys a step into queues of 6: the resumed run must also continue the queue pointers and contents.
    common = [*TINY, "method.queue_size=6", "train.max_steps=4", "train.checkpoint_every=2",
              "train.keep_checkpoints=5", f"run.output_dir={tmp_path}"]
    full = pretrain(load_config(PretrainConfig, preset, [*common, "run.name=full"]))

    resumed_dir = tmp_path / "resumed"
    (resumed_dir / "checkpoints").mkdir(parents=True)
    shutil.copy(full.run_dir / "checkpoints" / "step_00000002.pt", resumed_dir / "checkpoints" / "last.pt")
    torch.manual_seed(1234)  # the resumed run must restore its own RNG state (random view to enqueue, shuffled BN)
    pretrain(resume=resumed_dir)

    a = load_checkpoint(full.run_dir / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(resumed_dir / "checkpoints" / "last.pt")["model"]
    assert a.keys() == b.keys()
    assert {"queue.keys", "queue.ptr", "dense_queue.keys", "dense_queue.ptr"} <= a.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert [r["step"] for r in read_metrics(resumed_dir / "metrics.jsonl")] == [3, 4]


@pytest.mark.parametrize("override,key", [
    ("method.queue_size=0", "method.queue_size"),
    ("method.sr_weights=similarity", "method.sr_weights"),
    ("method.sr_power=0", "method.sr_power"),
    ("method.loss_lambda=1.5", "method.loss_lambda"),
])
def test_bad_method_settings_are_named_in_one_line(override, key):
    with pytest.raises(ConfigError, match=key) as info:
        load_config(PretrainConfig, "pixcon_sr_r18_demo", [override])
    assert "\n" not in str(info.value)


def test_cli_reports_a_missing_queue_in_one_line(tmp_path, capsys):
    rc = main(["pretrain", "--config", "densecl_r18_demo", "method.queue_size=0", f"run.output_dir={tmp_path}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1
    assert err == ["error: config key 'method.queue_size': densecl takes its negatives from a queue: set it >= 1 "
                   "(65536 in the paper, 4096 in the demo presets)"]
