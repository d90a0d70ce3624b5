"""Inpainting tests: helper modules next to the tests (``naive_reference``) importable, one torch thread."""

import sys
from pathlib import Path

import pytest
import torch

from pixelssl.config import load_config
from pixelssl.inpaint.config import InpaintConfig
from pixelssl.inpaint.fill import load_generator
from pixelssl.inpaint.train import build_generator, save_generator

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: these tests run many small ops, which two OpenMP threads only slow down on a busy machine."""
    torch.set_num_threads(1)
    yield


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A small untrained generator (cnum 8) saved as a weights file, once per module."""
    cfg = load_config(InpaintConfig, overrides=["model.cnum=8"])
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "generator.safetensors"
    save_generator(build_generator(cfg.model), cfg.model, path)
    return path


@pytest.fixture(scope="module")
def generator(weights):
    return load_generator(weights)
