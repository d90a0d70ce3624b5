"""engine.lock: one writer per run directory; a live owner is named and refused, a dead one's lock is taken over."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from pixelssl.engine.lock import RunLock
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


def test_release_removes_our_own_lock_only(tmp_path):
    lock = RunLock(tmp_path)
    lock.acquire()
    assert lock.held and (tmp_path / ".lock").read_text() == f"{socket.gethostname()} {os.getpid()}\n"
    lock.release()
    assert not lock.held and not (tmp_path / ".lock").exists()
    lock.release()  # twice is harmless
    with RunLock(tmp_path):
        (tmp_path / ".lock").write_text("some-other-host 1234\n")  # replaced by hand while we held it
    assert (tmp_path / ".lock").read_text() == "some-other-host 1234\n"  # someone else's lock is left alone
