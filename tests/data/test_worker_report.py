"""data.worker_report: a dead loader worker or a worker's exception becomes one line naming the file it was loading."""

from __future__ import annotations

import pickle
from pathlib import Path

from pixelssl.data.worker_report import LoadTracker, explain_worker_death, is_worker_death, worker_exception_line
from pixelssl.errors import DataError


def test_worker_death_message_without_a_note():
    assert explain_worker_death("DataLoader worker (pid 7) is killed by signal: Killed.", None).endswith(
        "(set data.num_workers=0 to get the error in the training process)")

    tracker = LoadTracker()
    try:
        line = explain_worker_death("DataLoader worker (pid(s) 999999) exited unexpectedly", tracker)
        assert line == "DataLoader worker (pid(s) 999999) exited unexpectedly (the file it was loading is unknown)"
    finally:
        tracker.cleanup()


def test_batch_cut_short_by_a_killed_worker_names_the_file(monkeypatch):
    # A worker killed while sending a batch leaves the main process an EOFError from the queue, not torch's
    # "killed by signal" message: it is reported as a dead worker with the file it noted.
    from types import SimpleNamespace

    from pixelssl.data import worker_report

    tracker = LoadTracker()
    try:
        (Path(tracker.folder) / "4242").write_text("loading\timg_007.png")
        iterator = SimpleNamespace(_workers=[SimpleNamespace(pid=4242, exitcode=-9)])
        error = worker_report._torn_batch_error(EOFError(), iterator, tracker, wait_s=0)
        assert str(error) == ("DataLoader worker (pid(s) 4242) exited unexpectedly (exit code -9, its batch cut short) "
                              "while loading img_007.png")
        alive = SimpleNamespace(_workers=[SimpleNamespace(pid=4242, exitcode=None)])
        assert worker_report._torn_batch_error(EOFError(), alive, tracker, wait_s=0) is None
        assert worker_report._torn_batch_error(ValueError(), iterator, tracker, wait_s=0) is None
    finally:
        tracker.cleanup()


def test_a_note_names_the_file_loading_or_just_loaded():
    tracker = LoadTracker()
    try:
        assert tracker.last_seen(4242) is None
        (Path(tracker.folder) / "4242").write_text("loading\timg_007.png")
        (Path(tracker.folder) / "4343").write_text("idle\timg_008.png")
        assert tracker.last_seen(4242) == (True, "img_007.png")
        killed = "DataLoader worker (pid 4343) is killed by signal: Killed.\nmore lines"
        assert explain_worker_death(killed, tracker) == ("DataLoader worker (pid 4343) is killed by signal: Killed. "
                                                         "after loading img_008.png (while augmenting or collating)")
        assert explain_worker_death("DataLoader worker (pid(s) 1, 4242) exited unexpectedly", tracker).endswith(
            "while loading img_007.png")
        assert pickle.loads(pickle.dumps(tracker)).folder == tracker.folder  # what a worker process receives
    finally:
        tracker.cleanup()
    assert not Path(tracker.folder).exists()


def test_worker_deaths_and_worker_exceptions_are_told_from_other_errors():
    assert is_worker_death(RuntimeError("DataLoader worker (pid 7) is killed by signal: Killed."))
    assert is_worker_death(RuntimeError("DataLoader worker (pid(s) 7) exited unexpectedly"))
    assert not is_worker_death(RuntimeError("CUDA out of memory")) and not is_worker_death(DataError("x"))
    reraised = ValueError("Caught MemoryError in DataLoader worker process 0.\nOriginal Traceback (most recent call "
                          "last):\n  File \"x.py\", line 1\nMemoryError: cannot allocate 12 GB\n")
    assert worker_exception_line(reraised) == "MemoryError: cannot allocate 12 GB"
    assert worker_exception_line(ValueError("Caught nothing here")) is None
