"""Ctrl-C and SIGTERM ask the long-running commands to stop at their next safe point."""

import os
import signal
import time

import pytest

from tributary.stop_signals import stop_on_signals


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
