"""Running a suite's configurations as submitit jobs: on a SLURM cluster, or as processes of this machine.

`--executor slurm` submits each configuration and seed as a SLURM job (partition, GPUs per job, time limit, setup
lines and any other sbatch option passed through); a run that continues from another (`init_from`, `target_from`)
is submitted with an `afterok` dependency on it (and dropped by SLURM if that one fails). `--executor local` runs
the same jobs as processes of this machine (submitit's LocalExecutor: `--jobs` at a time, each continued run once
its base has finished, one GPU each where there are GPUs); the tests use it. Every job executes the experiment
page through papermill exactly as the default thread pool does (`scheduling.execute_task`), so the suite
directory, `suite.json`, `runs.csv` and `--resume` are the same. submitit's own files (the pickled jobs, their
logs) go beside the suite directory, in `SUITE.submitit/`, which a cluster's nodes must be able to read.

On SLURM the suite never outlives its jobs: it reads their states from the queue (`slurm_queue`), not through
submitit; a job that ends without a result (cancelled, failed before its run started, its node lost) counts as a
run that did not finish, and the suite names those runs and exits with the command that continues it. SIGTERM or
SIGINT cancels the jobs (one scancel) and ends the suite at once. A job stopped to be requeued, or warned of its time
limit, resumes its run from the last complete epoch when it starts again (`jobs.RunJob`).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..core.errors import ConfigError, Interrupted, SuiteRunError
from ..core.signals import signals_handled
from .jobs import RunJob
from .notebooks import kernel_environment
from .options import SuiteOptions
from .scheduling import Scheduler, Task
from .slurm_queue import SCANCEL_SECONDS, SlurmQueue, first_line, run_slurm

LOCAL_TIME_MIN = 7 * 24 * 60  # the local executor's time limit per job (submitit's own default is 2 minutes)
SLURM_TIME_MIN = 24 * 60  # SLURM's, unless --slurm-time is given (submitit's own default is 5 minutes)


class SubmititScheduler(Scheduler):
    """The thread pool's contract (each run after its base, the first failure raised once the running jobs have
    finished or, with `keep_going`, every failure at the end, a signal stops the runs and raises `Interrupted`)
    with each run a submitit job. On SLURM a job that ends without a result is a failed run (see the module's
    docstring), a signal ends the suite as soon as its jobs are cancelled, and a suite that did not finish names
    its unfinished runs and the command that continues it."""

    def __init__(self, out: Path, meta: dict[str, Any], options: SuiteOptions,
                 devices: list[str] | None = None) -> None:
        super().__init__(out, meta, options, devices if options.executor == "local" else [])
        self.kind, self.slurm, self.limit = options.executor, options.slurm, options.jobs
        self.folder = out.with_name(f"{out.name}.submitit")
        self.poll_seconds = 1.0  # SLURM: result files every second, squeue every SLURM_POLL_SECONDS
        self.unfinished: list[str] = []  # keys of the tasks that did not finish (known once `run` ends)
        self.scancel_failure = ""  # why scancel failed, when it did (the jobs may still be queued or running)
        bad = [d for d in self.devices if not d.isdigit()]
        if bad:
            raise ConfigError("executor", self.kind, f"'threads' with CUDA_VISIBLE_DEVICES={bad[0]}: submitit's local "
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
            # the suite's paths are relative to this folder; a requeued job's log goes on after its first start's
            extra = {"chdir": os.getcwd(), "open-mode": "append", **self.slurm.extra}
            bases = [running[key][1].job_id for key in sorted(task.after) if key in running]
            if bases:
                extra.update({"dependency": "afterok:" + ":".join(bases), "kill-on-invalid-dep": "yes"})
            executor.update_parameters(job_name=f"{self.meta['suite']}-{task.key}", additional_parameters=extra)
        job = executor.submit(RunJob(self.kind == "slurm"), task, str(self.out), self.options.progress)
        return task, job, device

    def run(self, tasks: list[Task]) -> None:
        pending, done = list(tasks), set()
        running: dict[str, tuple] = {}  # key -> (task, job, device)
        started, cancelled = time.perf_counter(), False
        queue = SlurmQueue(self._say, lambda: bool(self.signals)) if self.kind == "slurm" else None
        if self.devices:
            self.meta["devices"] = self.devices
        try:
            with kernel_environment(self.jobs if self.kind == "local" else 1), self._signals_recorded():
                executor = self.executor()
                while pending or running:
                    if self._may_start():
                        self._submit_ready(executor, pending, running, done, len(tasks))
                    if not running:
                        break
                    if self.signals and not cancelled:
                        cancelled = self._cancel(job for _, job, _ in running.values())
                    if self.signals and queue is not None:  # SLURM ends the cancelled jobs: no need to wait
                        self._collect_finished(running, done, None)
                        break
                    self._sleep(self.poll_seconds)
                    self._collect_finished(running, done, queue)
        finally:
            self.unfinished = [task.key for task in tasks if task.key not in done]
            self._book_wall_time(started)
        self._raise_outcome(pending)

    def _submit_ready(self, executor: Any, pending: list[Task], running: dict[str, tuple], done: set[str],
                      total: int) -> None:
        for task in self._ready(pending, running, done):
            if self.signals:  # arrived while submitting: nothing more goes to the queue
                break
            pending.remove(task)
            running[task.key] = self.submit(executor, task, running)
            self._announce(task, total - len(pending), total, running[task.key][2])
            self._say(f"    submitit job {running[task.key][1].job_id}, log {running[task.key][1].paths.stderr}")

    def _collect_finished(self, running: dict[str, tuple], done: set[str], queue: SlurmQueue | None) -> None:
        """Take the jobs that have ended out of `running`: a result is a finished run or a failure; on SLURM a job
        the queue says has ended without one is a run that did not finish (with `queue` None, only results
        count). A failure without `keep_going` cancels the SLURM jobs still waiting to start."""
        if queue is not None:
            queue.refresh([job.job_id for _, job, _ in running.values()])
        now = time.monotonic()
        for key, (task, job, device) in list(running.items()):
            if self.kind == "local":
                if not job.done():
                    continue
                outcome = self._collect(task, job)
            elif result_written(job):
                outcome = self._collect(task, job)
            else:
                how = queue.ended(job.job_id, now) if queue is not None else None
                if how is None:
                    continue
                outcome = SuiteRunError(f"{task.key}: its SLURM job {job.job_id} ended ({how}) without finishing "
                                        f"the run; the job's log is {job.paths.stderr}")
            del running[key]
            self._release_device(device)
            if outcome is None:
                done.add(key)
                continue
            self._failed(task, outcome)
            if self.kind == "slurm" and not self.options.keep_going and not self.signals:  # no new run: queued ones go
                waiting = [j for _, j, _ in running.values() if queue and queue.known.get(j.job_id) == "PENDING"]
                self._cancel(iter(waiting))

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
        """Cancel jobs (SLURM: one scancel, which sends SIGTERM first; local: SIGINT, then SIGKILL a second later)."""
        jobs = list(jobs)
        if self.kind == "slurm":
            if jobs:
                try:
                    run_slurm(["scancel", *(job.job_id for job in jobs)], timeout=SCANCEL_SECONDS)
                except (OSError, subprocess.SubprocessError) as exc:
                    self.scancel_failure = first_line(exc)
            return True
        for job in jobs:
            with contextlib.suppress(Exception):
                job.cancel(check=False)
        return True

    def _sleep(self, seconds: float) -> None:
        """Wait between polls, cut short by a signal."""
        deadline = time.monotonic() + seconds
        received = len(self.signals)
        while time.monotonic() < deadline and len(self.signals) == received:
            time.sleep(0.2)

    def _raise_outcome(self, pending: list[Task]) -> None:
        """On SLURM, a suite that did not finish says which runs did not and the command that continues it;
        otherwise as the thread pool (see `Scheduler._raise_outcome`)."""
        if self.kind != "slurm" or not (self.signals or self.failures):
            super()._raise_outcome(pending)
            return
        advice = f"the finished runs are kept; continue the suite with: {self.resume_command()}"
        if self.signals:
            name = signal.Signals(self.signals[0]).name
            cancelled = "the suite's SLURM jobs were cancelled, each run keeps its last complete epoch"
            if self.scancel_failure:
                cancelled = f"scancel failed ({self.scancel_failure}): see squeue, and scancel the suite's jobs " \
                    "before --resume"
            raise Interrupted(self.signals[0], f"interrupted by {name}: {cancelled}\nruns that did not finish: "
                              f"{', '.join(self.unfinished)}\n{advice}")
        failed = "".join(f"\n  {first_line(failure)}" for _, failure in self.failures)
        raise SuiteRunError(f"runs that did not finish: {', '.join(self.unfinished)}{failed}\n{advice}") \
            from self.failures[0][1]

    def resume_command(self) -> str:
        """The command that continues this suite: the one that started it with --resume added (when it came from
        the command line), else the suite's own settings as options."""
        argv = sys.argv[1:]
        if Path(sys.argv[0]).name in ("node-transfer", "__main__.py") and argv[:1] == ["suite"]:
            return shlex.join(["node-transfer", *argv, *([] if "--resume" in argv else ["--resume"])])
        meta, options = self.meta, self.slurm
        words = ["node-transfer", "suite", meta["suite"], "--profile", meta["profile"], "--seeds", str(meta["seeds"]),
                 "--out", str(self.out), "--executor", self.kind, "--resume"]
        words += [f"--set={name}={value}" for name, value in sorted(meta.get("overrides", {}).items())]
        if self.limit:
            words.append(f"--jobs={self.limit}")
        if self.options.keep_going:
            words.append("--keep-going")
        if self.kind == "slurm":
            words += [f"--slurm-gpus-per-job={options.gpus_per_job}"]
            words += [f"--slurm-partition={options.partition}"] * bool(options.partition)
            words += [f"--slurm-cpus-per-job={options.cpus_per_job}"] * bool(options.cpus_per_job)
            words += [f"--slurm-time={options.time_min}"] * bool(options.time_min)
            words += [f"--slurm-setup={line}" for line in options.setup]
            words += [f"--slurm-option={name}={value}" for name, value in options.extra.items()]
        return shlex.join(words)

    @contextlib.contextmanager
    def _signals_recorded(self) -> Iterator[None]:
        """SIGTERM/SIGINT to the suite: no new job starts, the running ones are cancelled (their runs keep their last
        complete epoch), and `Interrupted` is raised once they have ended (on SLURM, once they are cancelled)."""

        def handler(signum: int, frame: Any) -> None:
            self.signals.append(signum)
            self._say(f"{signal.Signals(signum).name}: cancelling the suite's jobs; each run keeps its last complete "
                      "epoch; no new run starts")

        with signals_handled(handler):
            yield


def result_written(job: Any) -> bool:
    """Whether a submitit job has written its result file (its folder's attributes refreshed first, as submitit
    does, for network file systems that cache them)."""
    folder = job.paths.folder
    with contextlib.suppress(OSError):
        folder.chmod(folder.stat().st_mode)
    return job.paths.result_pickle.exists()
