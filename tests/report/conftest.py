"""Tiny real runs shared by the report tests (trained once per session: two steps each on 64 px scenes)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pixelssl.config import PretrainConfig, load_config
from pixelssl.report.figures import TensorBoardFigures
from pixelssl.train.loop import pretrain

TINY = [
    "model.backbone=resnet18", "model.proj_hidden_dim=32", "model.proj_dim=16",
    "data.image_size=64", "data.synthetic.num_images=8", "data.synthetic.size=64", "data.num_workers=0",
    "train.batch_size=4", "train.optimizer=sgd", "train.base_lr=0.1", "train.warmup_steps=1", "train.max_steps=2",
    "train.log_every=1", "train.tensorboard=false", "train.progress=false", "train.amp=fp32",
]


def tiny_run(root: Path, name: str, *extra: str) -> Path:
    """A finished two-step run directory (metrics, checkpoint, backbone export)."""
    cfg = load_config(PretrainConfig, overrides=[*TINY, f"run.output_dir={root}", f"run.name={name}", *extra])
    return pretrain(cfg, figures=TensorBoardFigures()).run_dir


@pytest.fixture(scope="session")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        # The PixPro run also writes the periodic TensorBoard figures (test_html checks them).
        return {"pixpro": tiny_run(root, "pixpro", "train.tensorboard=true", "train.figure_every=1"),
                "pixcon_sr": tiny_run(root, "pixcon_sr", "method.name=pixcon_sr", "method.queue_size=8")}


@pytest.fixture(scope="session")
def comparison(runs, tmp_path_factory) -> Path:
    """report.html comparing the two tiny runs, one figure image each."""
    from pixelssl.report.html import write_report

    return write_report([runs["pixpro"], runs["pixcon_sr"]], tmp_path_factory.mktemp("report") / "report.html",
                        images=1)


@pytest.fixture
def make_run():
    """``make_run(root, name, *overrides)``: train another tiny run."""
    return tiny_run
