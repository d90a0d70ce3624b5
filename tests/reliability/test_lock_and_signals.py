"""Run-directory locking and the stop-signal flag, in isolation (the end-to-end kill tests are in
test_preemption.py)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import pytest

from pixelssl.engine.lock import RunLock
from pixelssl.engine.preemption import StopRequest
from pixelssl.errors import RunLocked


def test_second_lock_on_a_live_owner_is_refused(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (tmp_path / ".lock").write_text(f"{socket.gethostname()} {sleeper.pid}\n")
        with pytest.raises(RunLocked, match=f"pid {sleeper.pid}"):
            RunLock(tmp_path).acquire()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path, caplog):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / ".lock").write_text(f"{socket.gethostname()} {dead.pid}\n")
    with RunLock(tmp_path):
        assert (tmp_path / ".lock").read_text().split()[1] == str(os.getpid())
    assert not (tmp_path / ".lock").exists()
    assert "stale lock" in caplog.text


def test_garbage_lock_file_is_stale(tmp_path):
    (tmp_path / ".lock").write_text("not a lock")
    with RunLock(tmp_path) as lock:
        assert lock.held


def test_lock_from_another_host_is_refused_with_a_hint(tmp_path):
    (tmp_path / ".lock").write_text("some-other-host 1234\n")
    with pytest.raises(RunLocked, match="some-other-host"):
        RunLock(tmp_path).acquire()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1, signal.SIGINT])
def test_stop_signals_set_the_flag_and_handlers_are_restored(sig):
    before = signal.getsignal(sig)
    with StopRequest() as stop:
        assert not stop.requested
        os.kill(os.getpid(), sig)
        assert stop.requested and stop.signal_name == signal.Signals(sig).name
    assert signal.getsignal(sig) == before


def test_second_ctrl_c_interrupts_immediately():
    with StopRequest(), pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
