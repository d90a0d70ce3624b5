"""engine.preemption: stop signals set a flag, a second Ctrl-C interrupts, the Preempted error says how to resume."""

from __future__ import annotations

import os
import signal
import threading

import pytest
import torch

from pixelssl.engine.preemption import StopRequest
from pixelssl.errors import Preempted


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


def test_the_error_names_the_signal_the_step_and_how_to_resume():
    stop = StopRequest()
    assert not stop.agreed(torch.device("cpu"))  # one process: the agreement is its own flag
    with stop:
        os.kill(os.getpid(), signal.SIGTERM)
    assert stop.agreed(torch.device("cpu"))
    error = stop.preempted(3, 10, "pixelssl pretrain --resume runs/x")
    assert isinstance(error, Preempted) and Preempted.exit_code == 75
    assert str(error) == "SIGTERM after step 3/10; checkpoint written; continue with: pixelssl pretrain --resume runs/x"
    assert str(StopRequest().preempted(1, 2, "x")).startswith("a stop signal (another process) after step 1/2")


def test_outside_the_main_thread_no_handler_is_installed():
    before, seen = signal.getsignal(signal.SIGTERM), []

    def enter() -> None:
        with StopRequest():
            seen.append(signal.getsignal(signal.SIGTERM))

    thread = threading.Thread(target=enter)
    thread.start()
    thread.join()
    assert seen == [before]
