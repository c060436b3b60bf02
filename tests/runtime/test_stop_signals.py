"""Ctrl-C and SIGTERM ask the long-running commands to stop at their next safe point."""

import os
import signal
import time

import pytest

from tributary import stop_signals
from tributary.stop_signals import StopRequest, stop_on_signals


def test_a_stop_signal_asks_for_a_stop_and_a_second_ctrl_c_interrupts_at_once():
    with stop_on_signals() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.1)  # Python runs the handler between bytecodes, on this thread
        assert stop.requested
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_sigterm_asks_for_a_stop_like_ctrl_c():
    with stop_on_signals() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.1)  # Python runs the handler between bytecodes, on this thread
        assert stop.requested


def test_a_pause_ends_within_a_slice_of_the_stop_request(monkeypatch):
    stop = StopRequest()
    slices: list[float] = []

    def slice_then_ctrl_c(seconds: float) -> None:
        slices.append(seconds)
        if len(slices) == 3:
            stop.requested = True  # what the handler does

    monkeypatch.setattr(stop_signals, "sleep", slice_then_ctrl_c)
    stop.sleep(60)
    assert len(slices) == 3 and max(slices) <= stop_signals.SLEEP_SLICE_S


def test_the_first_signal_prints_the_notice_once(capfd):
    with stop_on_signals("stopping after the step in progress") as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.1)  # Python runs the handler between bytecodes, on this thread
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.1)
    assert stop.requested
    assert capfd.readouterr().err.count("stopping after the step in progress") == 1
