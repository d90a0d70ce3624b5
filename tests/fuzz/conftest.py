"""Fuzz tests: hypothesis profiles, the helper module next to the tests importable, one torch thread.

Profiles: ``default`` (``make test``: the case counts of ``fuzz_support.CASES``) and ``thorough``
(``make test-all`` sets ``HYPOTHESIS_PROFILE=thorough``), ``THOROUGH`` times as many cases.
"""

import logging
import os
import sys
from pathlib import Path

import pytest
import torch

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)

try:
    from hypothesis import settings
except ImportError:  # the dev extra is not installed: nothing here can run
    collect_ignore_glob = ["test_*.py"]
    settings = None

if settings is not None:
    import fuzz_support

    for _name in fuzz_support.PROFILES:
        settings.register_profile(_name, deadline=None, print_blob=True)


def pytest_configure(config: pytest.Config) -> None:
    if settings is None:
        return
    name = os.environ.get("HYPOTHESIS_PROFILE") or "default"
    fuzz_support.use_profile(name)
    settings.load_profile(name)


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: many tiny cases, which OpenMP threads only slow down on a small shared machine."""
    torch.set_num_threads(1)
    yield


@pytest.fixture(autouse=True)
def _quiet_pixelssl_logs():
    """Skips are logged as warnings by design; thousands of them would only flood the captured output."""
    logger = logging.getLogger("pixelssl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    yield
    logger.setLevel(level)
