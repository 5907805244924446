"""Timing: synchronised calls, configurations measured alternately, medians and spreads, a clock for the log."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

START = time.perf_counter()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    """(seconds, result) of one call, synchronised on CUDA."""
    sync(device)
    start = time.perf_counter()
    result = fn()
    sync(device)
    return time.perf_counter() - start, result


def interleaved(tasks: dict[str, Callable[[], Any]], reps: int, warmup: int, device: torch.device,
                on_result: Callable[[str, Any], None] | None = None, verbose: bool = True) -> dict[str, list[float]]:
    """Run every task `warmup` times (not recorded), then `reps` rounds of one call each, alternating.

    Round r runs the tasks in their given order when r is even and in reverse when it is odd (A B C, C B A,
    A B C ...). Returns each task's list of seconds; `on_result(name, result)` sees each timed call's result.
    """
    names = list(tasks)
    for _ in range(warmup):
        for name in names:
            tasks[name]()
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for r in range(reps):
        for name in (names if r % 2 == 0 else names[::-1]):
            elapsed, result = timed(tasks[name], device)
            seconds[name].append(elapsed)
            if on_result is not None:
                on_result(name, result)
        if verbose:
            log(f"  round {r + 1}/{reps}: " + ", ".join(f"{n}={seconds[n][-1]:.3g}s" for n in names))
    return seconds


def cpu_timed(fn: Callable[[], Any], record: list[float]) -> Callable[[], Any]:
    """`fn`, also recording the process CPU seconds of each call into `record`: with one thread, less sensitive
    than wall time to other work on a shared machine (time spent waiting for a core is not counted)."""
    def run() -> Any:
        start = time.process_time()
        result = fn()
        record.append(time.process_time() - start)
        return result

    return run


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def spread(values: list[float]) -> float:
    """(max - min) / median of the repetitions: how noisy a measurement was."""
    if not values:
        return float("nan")
    return (max(values) - min(values)) / statistics.median(values)


def log(message: str) -> None:
    print(f"[{time.perf_counter() - START:7.1f}s] {message}", flush=True)
