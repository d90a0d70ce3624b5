"""One writer per run directory: ``run_dir/.lock`` holds the owner's host and pid; a second run pointed at the
same directory is refused while the owner lives, and a lock left by a dead process is taken over with a warning."""

from __future__ import annotations

import errno
import logging
import os
import socket
from pathlib import Path

from pixelssl.errors import RunLocked

log = logging.getLogger(__name__)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM  # exists, owned by someone else
    return True


class RunLock:
    """Exclusive lock on a run directory (context manager); same-host staleness check by pid."""

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.path = Path(run_dir) / ".lock"
        self.held = False

    def _owner(self) -> tuple[str, int] | None:
        try:
            host, pid = self.path.read_text().split()
            return host, int(pid)
        except (OSError, ValueError):
            return None  # vanished meanwhile, or half-written / garbage: treated as stale

    def acquire(self) -> None:
        me = f"{socket.gethostname()} {os.getpid()}\n"
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._owner()
                if owner is not None and owner[0] != socket.gethostname():
                    raise RunLocked(f"run directory {self.path.parent} is locked by pid {owner[1]} on host {owner[0]} "
                                    f"(delete {self.path} if that run is gone)") from None
                if owner is not None and _alive(owner[1]) and owner[1] != os.getpid():
                    raise RunLocked(f"run directory {self.path.parent} is in use by another process (pid {owner[1]}); "
                                    f"wait for it or choose another run.name") from None
                log.warning("removing a stale lock %s left by %s", self.path,
                            f"pid {owner[1]}" if owner else "an unreadable lock file")
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as handle:
                handle.write(me)
            self.held = True
            return
        raise RunLocked(f"could not lock run directory {self.path.parent} (another process keeps taking it)")

    def release(self) -> None:
        if self.held:
            owner = self._owner()
            if owner is not None and owner[1] == os.getpid():
                self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
