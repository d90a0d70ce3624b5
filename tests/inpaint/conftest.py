"""Inpainting tests: helper modules next to the tests (``naive_reference``) importable, one torch thread."""

import sys
from pathlib import Path

import pytest
import torch

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: these tests run many small ops, which two OpenMP threads only slow down on a busy machine."""
    torch.set_num_threads(1)
    yield
