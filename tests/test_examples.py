"""The examples run at small sizes: examples/own_loop.py (plain PyTorch on a torchvision backbone) and
examples/lightning_module.py (skipped without the optional Lightning extra)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_own_loop_trains_a_torchvision_backbone(load_script, one_thread, capsys):
    losses = load_script(EXAMPLES / "own_loop.py").main(steps=2, size=64, batch_size=4)
    assert len(losses) == 2 and all(math.isfinite(loss) and -4 <= loss <= 4 for loss in losses)
    assert "step 1: loss" in capsys.readouterr().out


def test_lightning_module_trains(load_script, one_thread):
    pytest.importorskip("lightning")
    module = load_script(EXAMPLES / "lightning_module.py").main(steps=2, size=64, batch_size=4)
    assert module.trainer.global_step == 2 and module.method.settings.name == "pixpro"
