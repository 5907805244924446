"""core.signals: handlers installed for a block and restored after; a deferred signal reaches its own handler once."""

import os
import signal
import threading

import pytest

from node_transfer.core.signals import signals_deferred, signals_handled


def send(signum: int) -> None:
    """Deliver `signum` to this process; Python runs its handler before the next bytecode of the main thread."""
    os.kill(os.getpid(), signum)


def test_handler_receives_the_signals_and_the_old_ones_come_back():
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    received = []
    with signals_handled(lambda signum, frame: received.append(signum)) as previous:
        send(signal.SIGTERM)
        send(signal.SIGINT)
    assert received == [signal.SIGTERM, signal.SIGINT]
    assert previous == before
    assert {s: signal.getsignal(s) for s in before} == before


def test_restored_after_an_exception_and_only_the_named_signals_touched():
    before_int = signal.getsignal(signal.SIGINT)

    def fail(signum, frame):
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"), signals_handled(fail, [signal.SIGTERM]):
        assert signal.getsignal(signal.SIGINT) is before_int
        send(signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) is not fail


def test_outside_the_main_thread_nothing_is_installed():
    seen = []

    def in_thread():
        with signals_handled(lambda *args: None) as previous:
            seen.append((previous, signal.getsignal(signal.SIGTERM)))

    before = signal.getsignal(signal.SIGTERM)
    worker = threading.Thread(target=in_thread)
    worker.start()
    worker.join()
    assert seen == [({}, before)]


def test_a_deferred_signal_reaches_its_handler_once_after_the_block():
    received = []
    with signals_handled(lambda signum, frame: received.append(("outer", signum))):
        with signals_deferred():
            send(signal.SIGTERM)
            send(signal.SIGINT)
            assert received == []  # held while the block runs
        assert received == [("outer", signal.SIGTERM)]  # the first one only


def test_a_deferred_signal_is_handed_on_even_when_the_block_fails():
    received = []
    with signals_handled(lambda signum, frame: received.append(signum)):
        with pytest.raises(ValueError), signals_deferred():
            send(signal.SIGTERM)
            raise ValueError("write failed")
    assert received == [signal.SIGTERM]
