"""Name the file behind a data-loader failure, even when a worker process dies without a Python exception.

A worker killed by the OOM killer or a crashing native decoder leaves only "DataLoader worker (pid 123) is killed
by signal" behind. Each worker therefore writes what it is loading into a small per-process file before touching
it; when the loader reports a dead worker, the pid in its message leads to that file and to the image's name.
"""

from __future__ import annotations

import os
import pickle
import re
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from torch.utils.data import get_worker_info

from pixelssl.errors import DataError

_BUSY, _IDLE = "loading", "idle"


class LoadTracker:
    """Per-worker 'now loading X' notes in a private temporary folder (a few bytes written per sample)."""

    def __init__(self) -> None:
        self.folder = tempfile.mkdtemp(prefix="pixelssl-loader-")
        self._fds: dict[int, int] = {}  # per process: the file stays open, each note is one pwrite

    def _note(self, text: str) -> None:
        if get_worker_info() is None:  # in the main process an exception names the file by itself
            return
        pid = os.getpid()
        fd = self._fds.get(pid)
        if fd is None:
            fd = self._fds[pid] = os.open(os.path.join(self.folder, str(pid)), os.O_WRONLY | os.O_CREAT, 0o600)
        data = text.encode("utf-8", "replace")
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))

    def loading(self, name: str) -> None:
        self._note(f"{_BUSY}\t{name}")

    def done(self, name: str) -> None:
        self._note(f"{_IDLE}\t{name}")

    def last_seen(self, pid: int) -> tuple[bool, str] | None:
        """(busy, file name) noted by worker ``pid``, or None when it noted nothing."""
        try:
            state, _, name = (Path(self.folder) / str(pid)).read_text("utf-8").partition("\t")
        except OSError:
            return None
        return state == _BUSY, name

    def cleanup(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def __getstate__(self) -> dict[str, Any]:  # workers get the folder, not the parent's open descriptors
        return {"folder": self.folder, "_fds": {}}


_PIDS = re.compile(r"pid\(?s?\)?\s+([\d, ]+)")


def explain_worker_death(message: str, tracker: LoadTracker | None) -> str:
    """One line for a dead worker: the loader's own words plus the file it was loading, when known."""
    first = message.strip().splitlines()[0] if message.strip() else "a data-loader worker died"
    if tracker is None:
        return f"{first} (set data.num_workers=0 to get the error in the training process)"
    found = _PIDS.search(message)
    pids = [int(p) for p in re.findall(r"\d+", found.group(1))] if found else []
    for pid in pids:
        seen = tracker.last_seen(pid)
        if seen is not None:
            busy, name = seen
            where = f"while loading {name}" if busy else f"after loading {name} (while augmenting or collating)"
            return f"{first} {where}"
    return f"{first} (the file it was loading is unknown)"


def is_worker_death(exc: BaseException) -> bool:
    """DataLoader's RuntimeErrors for a worker that exited or was killed without raising in Python."""
    return isinstance(exc, RuntimeError) and "DataLoader worker" in str(exc) and (
        "exited unexpectedly" in str(exc) or "killed by signal" in str(exc))


def worker_exception_line(exc: BaseException) -> str | None:
    """The original one-line message of an exception re-raised from a worker ('Caught X in DataLoader worker ...')."""
    text = str(exc)
    if not text.startswith("Caught ") or "DataLoader worker" not in text.splitlines()[0]:
        return None
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else None


def reporting(loader: Iterable, tracker: LoadTracker | None) -> Iterator:
    """Iterate ``loader``; a worker crash or a worker's exception becomes one ``DataError`` naming the file.

    PyTorch's SIGCHLD handler raises a dead worker's error from wherever the main thread happens to be, e.g. in
    the middle of an optimiser step, which would leave nothing consistent to checkpoint. While iterating, that
    handler is parked: the loader still notices the dead worker when it next waits for a batch (within its
    5 s status check), i.e. between two training steps, where this function turns it into a ``DataError``.
    """
    iterator = iter(loader)
    parked = _park_sigchld_handler()
    try:
        while True:
            try:
                batch = next(iterator)
            except StopIteration:
                return
            except Exception as exc:
                clear = _as_data_error(exc, tracker) or _torn_batch_error(exc, iterator, tracker)
                if clear is None:
                    raise
                raise clear from exc
            yield batch
    finally:
        if parked is not None:
            # Stop the workers (and unregister their pids) before PyTorch's handler is back: a dead worker still
            # registered would make it raise from an unrelated place later.
            shutdown = getattr(iterator, "_shutdown_workers", None)
            if shutdown is not None:
                shutdown()
            signal.signal(signal.SIGCHLD, parked)


def _park_sigchld_handler() -> Any:
    """Swap PyTorch's SIGCHLD handler (installed by the first multi-worker iterator) for the default; return it."""
    if threading.current_thread() is not threading.main_thread():
        return None
    current = signal.getsignal(signal.SIGCHLD)
    if current in (signal.SIG_DFL, signal.SIG_IGN, None):
        return None
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    return current


# What reading a batch raises when its worker was killed while sending it (the message arrives cut short).
_TORN = (EOFError, ConnectionError, pickle.UnpicklingError)


def _torn_batch_error(exc: Exception, iterator: Any, tracker: LoadTracker | None,
                      wait_s: float = 5.0) -> DataError | None:
    """A one-line ``DataError`` for a batch cut short by its worker's death (named as a dead worker), else None."""
    workers = list(getattr(iterator, "_workers", []) or [])
    if not isinstance(exc, _TORN) or not workers:
        return None
    deadline = time.monotonic() + wait_s  # the worker's exit may be noticed a moment after its broken message
    while True:
        dead = [w for w in workers if w.exitcode is not None]
        if dead or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    if not dead:
        return None
    pids = ", ".join(str(w.pid) for w in dead)
    codes = ", ".join(str(w.exitcode) for w in dead)
    return DataError(explain_worker_death(
        f"DataLoader worker (pid(s) {pids}) exited unexpectedly (exit code {codes}, its batch cut short)",
        tracker))


def _as_data_error(exc: Exception, tracker: LoadTracker | None) -> DataError | None:
    """A one-line ``DataError`` for a dead worker or an exception a worker re-raised here; None for anything else."""
    if is_worker_death(exc):
        return DataError(explain_worker_death(str(exc), tracker))
    original = worker_exception_line(exc)
    if original is None:
        return None
    kind, _, text = original.partition(": ")
    kind = kind.rsplit(".", 1)[-1]
    return DataError(text) if kind == "DataError" else DataError(f"data-loader worker failed: {kind}: {text}")
