"""Running a suite's configurations as submitit jobs: on a SLURM cluster, or as processes of this machine.

`--executor slurm` submits each configuration and seed as a SLURM job (partition, GPUs per job, time limit, setup
lines and any other sbatch option passed through); a run that continues from another (`init_from`, `target_from`)
is submitted with an `afterok` dependency on it (and dropped by SLURM if that one fails). `--executor local` runs
the same jobs as processes of this machine (submitit's LocalExecutor: `--jobs` at a time, each continued run once
its base has finished, one GPU each where there are GPUs); the tests use it. Every job executes the experiment
page through papermill exactly as the default thread pool does (`scheduling.execute_task`), so the suite
directory, `suite.json`, `runs.csv` and `--resume` are the same. submitit's own files (the pickled jobs, their
logs) go beside the suite directory, in `SUITE.submitit/`, which a cluster's nodes must be able to read.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import ConfigError, SuiteRunError
from ..core.signals import signals_handled
from .notebooks import kernel_environment, stop_kernels_on_signal
from .scheduling import Scheduler, Task, execute_task

EXECUTORS = ("threads", "local", "slurm")  # threads: this process's thread pool (the default)
LOCAL_TIME_MIN = 7 * 24 * 60  # the local executor's time limit per job (submitit's own default is 2 minutes)
SLURM_TIME_MIN = 24 * 60  # SLURM's, unless --slurm-time is given (submitit's own default is 5 minutes)


@dataclass
class SlurmOptions:
    """What `--executor slurm` asks of the cluster for every job; `time_min` also bounds a local job."""

    partition: str | None = None
    gpus_per_job: int = 1
    cpus_per_job: int | None = None
    time_min: int | None = None
    setup: list[str] = field(default_factory=list)  # shell lines run before each job (module load, venv...)
    extra: dict[str, str] = field(default_factory=dict)  # other sbatch options, e.g. {"account": "x", "qos": "y"}


def check_executor(executor: str, use_papermill: bool) -> None:
    """ConfigError for an executor that does not exist, or one that cannot run in process."""
    if executor not in EXECUTORS:
        raise ConfigError("executor", executor, f"one of {list(EXECUTORS)}")
    if executor != "threads" and not use_papermill:
        raise ConfigError("executor", executor, "'threads' when running in process (--in-process): submitit jobs "
                          "execute the experiment page through papermill")


def run_job(task: Task, out: str, progress: bool) -> float:
    """One submitit job: the task through papermill, as the thread pool executes it; returns its seconds. SIGTERM or
    SIGINT (a cancelled job, the time limit) reach its kernel, which keeps the run's last complete epoch."""

    def stopping(signum: int, how: signal.Signals) -> None:
        print(f"{signal.Signals(signum).name}: stopping the run ({how.name} to its kernel)", file=sys.stderr,
              flush=True)

    started = time.perf_counter()
    with stop_kernels_on_signal(stopping):
        execute_task(task, Path(out), use_papermill=True, progress=progress, stream=sys.stderr)
    return time.perf_counter() - started


class SubmititScheduler(Scheduler):
    """The thread pool's contract (each run after its base, the first failure raised once the running jobs have
    finished or, with `keep_going`, every failure at the end, a signal stops the runs and raises `Interrupted`)
    with each run a submitit job."""

    def __init__(self, out: Path, meta: dict[str, Any], jobs: int | None, progress: bool, executor: str,
                 slurm: SlurmOptions | None = None, devices: list[str] | None = None, keep_going: bool = False) -> None:
        super().__init__(out, meta, jobs or 1, True, progress, devices if executor == "local" else [], keep_going)
        self.kind, self.slurm, self.limit = executor, slurm or SlurmOptions(), jobs
        self.folder = out.with_name(f"{out.name}.submitit")
        self.poll_seconds = 1.0 if executor == "local" else 15.0
        bad = [d for d in self.devices if not d.isdigit()]
        if bad:
            raise ConfigError("executor", executor, f"'threads' with CUDA_VISIBLE_DEVICES={bad[0]}: submitit's local "
                              "executor takes GPU indices only")

    def executor(self) -> Any:
        """The submitit executor, with the parameters every job shares."""
        import submitit

        options = self.slurm
        if self.kind == "local":
            executor = submitit.LocalExecutor(folder=self.folder)
            executor.update_parameters(timeout_min=options.time_min or LOCAL_TIME_MIN)
            return executor
        executor = submitit.SlurmExecutor(folder=self.folder)
        params: dict[str, Any] = {"time": options.time_min or SLURM_TIME_MIN, "nodes": 1, "ntasks_per_node": 1,
                                  "gpus_per_node": options.gpus_per_job, "setup": list(options.setup)}
        if options.partition:
            params["partition"] = options.partition
        if options.cpus_per_job:
            params["cpus_per_task"] = options.cpus_per_job
        executor.update_parameters(**params)
        return executor

    def submit(self, executor: Any, task: Task, running: dict[str, tuple]) -> tuple:
        """Submit one task: locally on the least busy GPU (if any), on SLURM after the bases still running."""
        device = None
        if self.kind == "local":
            device = self._claim_device(task.key)
            executor.update_parameters(gpus_per_node=0 if device is None else 1,
                                       visible_gpus=() if device is None else (int(device),))
        else:
            extra = {"chdir": os.getcwd(), **self.slurm.extra}  # the suite's paths are relative to this folder
            bases = [running[key][1].job_id for key in sorted(task.after) if key in running]
            if bases:
                extra.update({"dependency": "afterok:" + ":".join(bases), "kill-on-invalid-dep": "yes"})
            executor.update_parameters(job_name=f"{self.meta['suite']}-{task.key}", additional_parameters=extra)
        job = executor.submit(run_job, task, str(self.out), self.progress)
        return task, job, device

    def run(self, tasks: list[Task]) -> None:
        pending, done, total = list(tasks), set(), len(tasks)
        running: dict[str, tuple] = {}  # key -> (task, job, device)
        started, cancelled = time.perf_counter(), False
        if self.devices:
            self.meta["devices"] = self.devices
        try:
            with kernel_environment(self.jobs if self.kind == "local" else 1), self._signals_recorded():
                executor = self.executor()
                while pending or running:
                    if self._may_start():
                        for task in self._ready(pending, running, done):
                            pending.remove(task)
                            running[task.key] = self.submit(executor, task, running)
                            self._announce(task, total - len(pending), total, running[task.key][2])
                            self._say(f"    submitit job {running[task.key][1].job_id}, log "
                                      f"{running[task.key][1].paths.stderr}")
                    if not running:
                        break
                    if self.signals and not cancelled:
                        cancelled = self._cancel(job for _, job, _ in running.values())
                    time.sleep(self.poll_seconds)
                    for key, (task, job, device) in list(running.items()):
                        if job.done():
                            del running[key]
                            self._release_device(device)
                            outcome = self._collect(task, job)
                            if isinstance(outcome, BaseException):
                                self._failed(task, outcome)
                                if self.kind == "slurm" and not self.keep_going:  # no new run: the queued ones go
                                    self._cancel(j for _, j, _ in running.values() if j.state == "PENDING")
                            else:
                                done.add(key)
        finally:
            with self.lock:
                self.meta["wall_seconds"] += time.perf_counter() - started
                self._write_meta()
        self._raise_outcome(pending)

    def _ready(self, pending: list[Task], running: dict[str, tuple], done: set[str]) -> list[Task]:
        """Tasks to submit now: locally once their bases have finished, on SLURM once they are submitted (the
        dependency waits), at most `jobs` running (on SLURM only if --jobs was given)."""
        available = done | set(running) if self.kind == "slurm" else done
        ready = [task for task in pending if not task.after - available]
        room = (self.limit or 1) - len(running) if self.kind == "local" or self.limit else len(ready)
        return ready[:max(room, 0)]

    def _collect(self, task: Task, job: Any) -> BaseException | None:
        """Book a finished job's time, or return its failure as a SuiteRunError."""
        try:
            seconds = job.result()
        except Exception as exc:  # submitit's FailedJobError (with the job's traceback) or UncompletedJobError
            if self.signals:
                return exc
            lines = [line for line in str(exc).splitlines() if line.strip()]
            cause = next((line for line in reversed(lines) if "Error" in line), lines[-1] if lines else str(exc))
            return SuiteRunError(f"{task.key} failed in submitit job {job.job_id} ({cause.strip()[:300]}); its log "
                                 f"is {job.paths.stderr}; fix the cause and continue with --resume")
        self._finished(task, float(seconds))
        return None

    def _cancel(self, jobs: Iterator[Any]) -> bool:
        """Cancel jobs (SLURM: scancel, which sends SIGTERM first; local: SIGINT, then SIGKILL a second later)."""
        for job in list(jobs):
            with contextlib.suppress(Exception):
                job.cancel(check=False)
        return True

    @contextlib.contextmanager
    def _signals_recorded(self) -> Iterator[None]:
        """SIGTERM/SIGINT to the suite: no new job starts, the running ones are cancelled (their runs keep their last
        complete epoch), and `Interrupted` is raised once they have ended."""

        def handler(signum: int, frame: Any) -> None:
            self.signals.append(signum)
            self._say(f"{signal.Signals(signum).name}: cancelling the suite's jobs; each run keeps its last complete "
                      "epoch; no new run starts")

        with signals_handled(handler):
            yield
