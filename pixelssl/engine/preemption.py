"""Stop signals become a clean stop: SIGTERM (schedulers, ``kill``), SIGINT (Ctrl-C) and SIGUSR1 (SLURM's
warning before the time limit) set a flag; the training loop finishes its current step, writes a checkpoint and
raises ``Preempted`` (the CLI exits 75). A second Ctrl-C interrupts at once (the last checkpoint stays valid:
writes are atomic)."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

import torch

from pixelssl import dist
from pixelssl.errors import Preempted

log = logging.getLogger(__name__)

STOP_SIGNALS = tuple(s for s in (signal.SIGTERM, signal.SIGINT, getattr(signal, "SIGUSR1", None)) if s is not None)


class StopRequest:
    """Context manager that turns stop signals into a flag (only in the main thread, where Python allows it)."""

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signal_name is not None

    def agreed(self, device: torch.device) -> bool:
        """Whether any process was asked to stop (a collective: every rank must agree to stop, since a signal may
        reach only one, and the others would hang in the next collective)."""
        flag = torch.tensor([float(self.requested)], device=device)
        return float(dist.all_reduce_mean(flag)) > 0

    def preempted(self, done: int, total: int, resume: str) -> Preempted:
        """The error to raise once the checkpoint after step ``done`` is written; ``resume`` continues the run."""
        return Preempted(f"{self.signal_name or 'a stop signal (another process)'} after step {done}/{total}; "
                         f"checkpoint written; continue with: {resume}")

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: the user means it
        self.signal_name = name
        log.warning("%s received: stopping after the current step and writing a checkpoint", name)

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
