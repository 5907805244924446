"""Signals while a block runs: a handler for SIGTERM/SIGINT installed on entry, the previous ones restored on exit.

Python delivers signals to the main thread only and only lets it install handlers, so in any other thread these
helpers do nothing. Their users: a run (SIGTERM raises `Interrupted`), a suite (its kernels or jobs are stopped)
and the atomic writer (a signal waits until the file is whole).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

#: The signals that stop a run or a suite: `kill` and Ctrl-C (a SLURM time limit or `scancel` sends SIGTERM).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

Handler = Callable[[int, Any], Any]


@contextlib.contextmanager
def signals_handled(handler: Handler, signums: Iterable[int] = STOP_SIGNALS) -> Iterator[dict[int, Any]]:
    """`handler(signum, frame)` receives `signums` while the block runs; yields the handlers it replaced, which come
    back afterwards. A no-op outside the main thread (yields {}), and for a signal whose handler Python cannot
    restore (one not installed from Python)."""
    if threading.current_thread() is not threading.main_thread():
        yield {}
        return
    previous = {signum: signal.signal(signum, handler) for signum in signums if signal.getsignal(signum) is not None}
    try:
        yield previous
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGTERM and SIGINT while the block runs, then hand the first one received to its own handler (torch's
    zip writer turns an exception raised inside it into an unrelated RuntimeError)."""
    received: list[tuple[int, Any]] = []
    previous: dict[int, Any] = {}
    try:
        with signals_handled(lambda *args: received.append(args)) as previous:
            yield
    finally:
        for signum, frame in received[:1]:
            handler = previous[signum]
            if callable(handler):
                handler(signum, frame)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(signum)
