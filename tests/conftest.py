"""Shared fixtures. Tests are CPU-only, deterministic and fast unless marked ``slow``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
CAMVID = Path(os.environ.get("PIXELSSL_CAMVID", REPO.parent / "shared" / "data" / "camvid"))


@pytest.fixture(autouse=True)
def _deterministic_torch():
    """Each test starts from the same torch RNG state and a small thread count (CI has 2 cores)."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(min(threads, 2))
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def one_thread():
    """One torch thread for tests of tiny ops: on a small shared CPU, OpenMP threads contend and run them slower
    (the thread count is restored by ``_deterministic_torch``)."""
    torch.set_num_threads(1)


@pytest.fixture
def camvid_root() -> Path:
    """Path of the CamVid copy used for integration tests; the test is skipped when it is absent."""
    if not (CAMVID / "train" / "images").is_dir():
        pytest.skip(f"CamVid not found at {CAMVID} (set PIXELSSL_CAMVID)")
    return CAMVID
