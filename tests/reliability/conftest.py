"""Fixtures of the failure-behaviour tests shared by pre-training and inpainting training."""

from __future__ import annotations

import pytest


@pytest.fixture
def sigusr1_in_first_step(monkeypatch):
    """Every ``StopRequest`` entered from now on reports SLURM's SIGUSR1 as if it had arrived during the first step;
    ``monkeypatch.undo()`` ends it (e.g. before resuming)."""
    from pixelssl.engine import preemption

    original_enter = preemption.StopRequest.__enter__

    def signalled_at_enter(self):
        entered = original_enter(self)
        self.signal_name = "SIGUSR1"
        return entered

    monkeypatch.setattr(preemption.StopRequest, "__enter__", signalled_at_enter)
