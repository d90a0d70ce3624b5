"""Stop signals become a clean stop: SIGTERM (schedulers, ``kill``), SIGINT (Ctrl-C) and SIGUSR1 (SLURM's
warning before the time limit) set a flag; the training loop finishes its current step, writes a checkpoint and
raises ``Preempted``. A second Ctrl-C interrupts at once (the last checkpoint stays valid: writes are atomic)."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

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
