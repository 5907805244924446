"""What every submitit job of a suite runs (`RunJob`): one configuration through papermill, as the thread pool runs
it, with SLURM's stop and requeue signals passed to its kernel so a requeued job resumes its run.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import time
from pathlib import Path
from typing import Any

from .notebooks import kernel_pids, stop_kernels_on_signal
from .scheduling import Task, execute_task

REQUEUE_STOP_SECONDS = 30.0  # a job about to be requeued waits this long for its kernel to stop


class RunJob:
    """What every submitit job runs: one task through papermill, as the thread pool executes it; returns its seconds.

    SIGTERM or SIGINT (a cancelled job, the time limit) reach its kernel, which keeps the run's last complete epoch.
    On SLURM a job stopped so leaves no result: whether it was cancelled or requeued is the queue's to say, and a
    requeued job resumes its run. submitit calls `checkpoint` when SLURM preempts the job or its time limit nears."""

    def __init__(self, on_slurm: bool) -> None:
        self.on_slurm = on_slurm

    def __call__(self, task: Task, out: str, progress: bool) -> float:
        """Execute the task in this job; its seconds (SystemExit, no result, when a signal stopped it on SLURM)."""
        received: list[int] = []

        def stopping(signum: int, how: signal.Signals) -> None:
            received.append(signum)
            print(f"{signal.Signals(signum).name}: stopping the run ({how.name} to its kernel)", file=sys.stderr,
                  flush=True)

        started = time.perf_counter()
        try:
            with stop_kernels_on_signal(stopping):
                execute_task(task, Path(out), use_papermill=True, progress=progress, stream=sys.stderr)
        except Exception:
            if not (self.on_slurm and received):
                raise
            print(f"{task.key} stopped by {signal.Signals(received[0]).name}: no result; a requeued job resumes "
                  "the run from its last complete epoch", file=sys.stderr, flush=True)
            raise SystemExit(128 + received[0]) from None
        return time.perf_counter() - started

    def checkpoint(self, task: Task, out: str, progress: bool) -> Any:
        """submitit's hook before it requeues the job: stop the kernel (its run keeps its last complete epoch) and
        hand back the same task, which resumes from that epoch (`execute_task` resumes a run that has last.pt)."""
        from submitit.helpers import DelayedSubmission

        print(f"{task.key}: preempted or near the time limit; stopping its kernel, the job is requeued and the run "
              "resumes from its last complete epoch", file=sys.stderr, flush=True)
        stop_kernels(REQUEUE_STOP_SECONDS)
        return DelayedSubmission(self, task, out, progress)


def stop_kernels(timeout: float) -> None:
    """SIGTERM to this process's Jupyter kernels, then wait up to `timeout` seconds for them to end."""
    import psutil

    kernels = []
    for pid in kernel_pids(0.0):
        with contextlib.suppress(psutil.Error):
            process = psutil.Process(pid)
            process.terminate()
            kernels.append(process)
    psutil.wait_procs(kernels, timeout=timeout)
