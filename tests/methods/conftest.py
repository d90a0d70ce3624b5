"""Tiny methods and two-view batches for the method tests (ResNet-18 with narrow heads on 64-96 px views); the helper
module next to the tests (``reference_geometry``) importable."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from pixelssl.config import PretrainConfig, load_config
from pixelssl.methods import build_method

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)

# Narrow heads and short queues; presets supply everything else (recipe switches, temperature, momentum).
TINY_MODEL = ["model.backbone=resnet18", "model.proj_hidden_dim=32", "model.proj_dim=16"]
TINY_QUEUE = ["method.queue_size=12"]  # the methods with a queue (each method takes only its own keys)


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Method tests run tiny ops: one thread each."""


@pytest.fixture
def tiny_method():
    """``tiny_method(preset, *overrides)``: a method built from a shipped preset with narrow heads, in train mode."""

    def build(preset: str, *overrides: str):
        torch.manual_seed(0)
        queue = TINY_QUEUE if "queue_size" in load_config(PretrainConfig, preset, list(overrides)).method else []
        cfg = load_config(PretrainConfig, preset, [*TINY_MODEL, *queue, *overrides])
        return build_method(cfg).train()

    return build


@pytest.fixture
def two_view_batch():
    """``two_view_batch(b, size)``: random views whose boxes overlap partly, view 2 flipped in odd images."""

    def make(b: int = 4, size: int = 96) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(b * size)
        return {
            "view1": torch.randn(b, 3, size, size, generator=g), "view2": torch.randn(b, 3, size, size, generator=g),
            "box1": torch.tensor([[0.0, 0.0, 0.6, 0.7]]).repeat(b, 1),
            "box2": torch.tensor([[0.25, 0.3, 1.0, 1.0]]).repeat(b, 1),
            "flip1": torch.zeros(b, dtype=torch.bool), "flip2": torch.arange(b) % 2 == 1,
        }

    return make
