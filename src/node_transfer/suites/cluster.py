"""Running a suite's configurations as submitit jobs: on a SLURM cluster, or as processes of this machine.

`--executor slurm` submits each configuration and seed as a SLURM job (partition, GPUs per job, time limit, setup
lines and any other sbatch option passed through); a run that continues from another (`init_from`, `target_from`)
is submitted with an `afterok` dependency on it (and dropped by SLURM if that one fails). `--executor local` runs
the same jobs as processes of this machine (submitit's LocalExecutor: `--jobs` at a time, each continued run once
its base has finished, one GPU each where there are GPUs); the tests use it. Every job executes the experiment
page through papermill exactly as the default thread pool does (`scheduling.execute_task`), so the suite
directory, `suite.json`, `runs.csv` and `--resume` are the same. submitit's own files (the pickled jobs, their
logs) go beside the suite directory, in `SUITE.submitit/`, which a cluster's nodes must be able to read.

On SLURM the suite never outlives its jobs. It reads their states from the queue (`squeue`, one call a poll; `sacct`
only for jobs the queue has forgotten, where the cluster keeps accounting), not through submitit, which asks `sacct`
alone and, on a cluster without accounting, warns at every poll and never learns that a job is gone. A job that
ends without a result (cancelled, failed before its run started, its node lost) counts as a run that did not
finish once the queue has said so for `ENDED_GRACE_SECONDS` (or has not known the job for `LOST_GRACE_SECONDS`);
the suite then names the runs that did not finish and exits with the command that continues it. SIGTERM or SIGINT
cancels the jobs (one scancel) and ends the suite at once; a SLURM command stuck on an unreachable controller is
given up, and squeue failing for `QUEUE_LOST_SECONDS` ends the wait. A job stopped to be requeued (a preemption,
`scontrol requeue`: it leaves no result) or warned of its time limit (submitit's USR2: `RunJob.checkpoint` stops
its kernel, submitit requeues it) resumes its run from the last complete epoch when it starts again.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import ConfigError, Interrupted, SuiteRunError
from ..core.signals import signals_handled
from .notebooks import kernel_environment, kernel_pids, stop_kernels_on_signal
from .scheduling import Scheduler, Task, execute_task

EXECUTORS = ("threads", "local", "slurm")  # threads: this process's thread pool (the default)
LOCAL_TIME_MIN = 7 * 24 * 60  # the local executor's time limit per job (submitit's own default is 2 minutes)
SLURM_TIME_MIN = 24 * 60  # SLURM's, unless --slurm-time is given (submitit's own default is 5 minutes)
SLURM_POLL_SECONDS = 10.0  # how often the suite asks squeue about its jobs (one call for all; results: every second)
ENDED_GRACE_SECONDS = 10.0  # an ended job's result may reach a network file system late: wait this long for it
LOST_GRACE_SECONDS = 60.0  # a job the queue (and accounting) no longer knows, with no result: gone after this long
QUEUE_LOST_SECONDS = 600.0  # squeue failing this long (the controller gone): the suite stops waiting for its jobs
SLURM_COMMAND_SECONDS = 30.0  # a squeue or sacct call that takes longer is given up (asked again at the next poll)
SCANCEL_SECONDS = 5.0  # scancel's time when the suite stops: a controller that does not answer cannot cancel anyway
REQUEUE_STOP_SECONDS = 30.0  # a job about to be requeued waits this long for its kernel to stop
#: squeue's states of a job that may still write a result (any other state, or none, means the job has ended)
LIVE_STATES = frozenset({"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "REQUEUE_FED",
                         "REQUEUE_HOLD", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD",
                         "POWER_UP_NODE"})


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


class SlurmQueue:
    """The states of a suite's SLURM jobs, from the queue: one `squeue` call a poll, `sacct` only for jobs the queue
    has forgotten (and only where accounting answers; whether it does is asked once and said in one line)."""

    def __init__(self, say: Callable[[str], None], interrupted: Callable[[], bool] = lambda: False) -> None:
        self.say, self.interrupted = say, interrupted  # interrupted(): a signal came, give up a SLURM call at once
        self.accounting: bool | None = None  # whether sacct answers here; None until asked
        self.failing_since: float | None = None  # when squeue began to fail (time.monotonic), None while it answers
        self.asked_at = float("-inf")  # when squeue was last asked (time.monotonic)
        self.known: dict[str, str] = {}  # job id -> its state when last asked ("": neither queue nor sacct knows it)
        self.ended_since: dict[str, float] = {}  # job id -> when the queue first said it had ended (or forgot it)

    def refresh(self, job_ids: list[str]) -> None:
        """Ask the queue about the jobs, once every SLURM_POLL_SECONDS (results are checked more often than that),
        and note when each one was first seen ended."""
        if not job_ids or time.monotonic() - self.asked_at < SLURM_POLL_SECONDS:
            return
        self.asked_at = now = time.monotonic()
        states = self.states(job_ids)
        if states is None:
            return
        self.known.update(states)
        for job_id, state in states.items():
            if state in LIVE_STATES:
                self.ended_since.pop(job_id, None)  # a requeued job comes back to PENDING
            else:
                self.ended_since.setdefault(job_id, now)

    def states(self, job_ids: list[str]) -> dict[str, str] | None:
        """Each job's state in squeue's words ("" for a job neither the queue nor accounting knows), or None when
        squeue cannot be asked (the controller unreachable): then nothing is decided."""
        if self.accounting is None and job_ids:
            self._ask_accounting(job_ids[0])
        try:
            output = run_slurm(["squeue", "--noheader", "--states=all", "--format=%i|%T",
                                "--jobs=" + ",".join(job_ids)], interrupted=self.interrupted)
        except (OSError, subprocess.SubprocessError) as exc:
            if self.failing_since is None:
                self.failing_since = time.monotonic()
                self.say(f"squeue failed ({first_line(exc)}); asking again every poll, for up to "
                         f"{QUEUE_LOST_SECONDS:.0f} s")
            return None
        if self.failing_since is not None:
            self.say("squeue answers again")
        self.failing_since = None
        states = dict.fromkeys(job_ids, "")
        for line in output.splitlines():
            job_id, _, state = line.partition("|")
            if job_id.strip() in states:
                states[job_id.strip()] = state.strip()
        forgotten = [job_id for job_id, state in states.items() if not state]
        if forgotten and self.accounting:
            states.update(self._sacct(forgotten))
        return states

    def ended(self, job_id: str, now: float) -> str | None:
        """How a job without a result ended (its state, or that SLURM no longer knows it), once the queue has said
        so for the grace period, or that SLURM has not answered for QUEUE_LOST_SECONDS; None while it may still
        write a result."""
        if self.failing_since is not None and now - self.failing_since >= QUEUE_LOST_SECONDS:
            return f"squeue failing for {QUEUE_LOST_SECONDS:.0f} s: the job may still run; see squeue before --resume"
        if job_id not in self.ended_since:
            return None
        state = self.known.get(job_id, "")
        if now - self.ended_since[job_id] < (ENDED_GRACE_SECONDS if state else LOST_GRACE_SECONDS):
            return None
        return state or f"unknown to SLURM for {LOST_GRACE_SECONDS:.0f} s"

    def _ask_accounting(self, job_id: str) -> None:
        try:
            run_slurm(["sacct", "--noheader", "--parsable2", "--allocations", "--format=JobID,State",
                       f"--jobs={job_id}"], interrupted=self.interrupted)
        except (OSError, subprocess.SubprocessError) as exc:
            self.accounting = False
            reason = (getattr(exc, "stderr", None) or "").strip() or first_line(exc)
            self.say(f"no SLURM accounting here (sacct: {reason.splitlines()[0]}): job states come from the "
                     "queue (squeue)")
            return
        self.accounting = True
        self.say("job states come from the queue (squeue), and from sacct for jobs the queue has forgotten")

    def _sacct(self, job_ids: list[str]) -> dict[str, str]:
        """Accounting's states of jobs the queue has forgotten (first word: "CANCELLED by 0" is CANCELLED)."""
        try:
            output = run_slurm(["sacct", "--noheader", "--parsable2", "--allocations", "--format=JobID,State",
                                "--jobs=" + ",".join(job_ids)], interrupted=self.interrupted)
        except (OSError, subprocess.SubprocessError):
            return {}
        states = {}
        for line in output.splitlines():
            job_id, _, state = line.partition("|")
            if job_id in job_ids and state.strip():
                states[job_id] = state.split()[0]
        return states


def run_slurm(command: list[str], timeout: float = SLURM_COMMAND_SECONDS,
              interrupted: Callable[[], bool] = lambda: False) -> str:
    """A SLURM client command's standard output; CalledProcessError (with its stderr) when it fails, TimeoutExpired
    when it takes longer than `timeout` seconds or `interrupted()` turns true meanwhile (a signal to the suite:
    a client stuck on an unreachable controller must not hold the suite up)."""
    deadline = time.monotonic() + timeout
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
        while True:
            try:
                out, err = process.communicate(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                if time.monotonic() > deadline or interrupted():
                    process.kill()
                    process.communicate()
                    raise subprocess.TimeoutExpired(command, round(time.monotonic() - deadline + timeout, 1)) \
                        from None
    if process.returncode:
        raise subprocess.CalledProcessError(process.returncode, command, out, err)
    return out


class SubmititScheduler(Scheduler):
    """The thread pool's contract (each run after its base, the first failure raised once the running jobs have
    finished or, with `keep_going`, every failure at the end, a signal stops the runs and raises `Interrupted`)
    with each run a submitit job. On SLURM a job that ends without a result is a failed run (see the module's
    docstring), a signal ends the suite as soon as its jobs are cancelled, and a suite that did not finish names
    its unfinished runs and the command that continues it."""

    def __init__(self, out: Path, meta: dict[str, Any], jobs: int | None, progress: bool, executor: str,
                 slurm: SlurmOptions | None = None, devices: list[str] | None = None, keep_going: bool = False) -> None:
        super().__init__(out, meta, jobs or 1, True, progress, devices if executor == "local" else [], keep_going)
        self.kind, self.slurm, self.limit = executor, slurm or SlurmOptions(), jobs
        self.folder = out.with_name(f"{out.name}.submitit")
        self.poll_seconds = 1.0  # SLURM: result files every second, squeue every SLURM_POLL_SECONDS
        self.unfinished: list[str] = []  # keys of the tasks that did not finish (known once `run` ends)
        self.scancel_failure = ""  # why scancel failed, when it did (the jobs may still be queued or running)
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
            # the suite's paths are relative to this folder; a requeued job's log goes on after its first start's
            extra = {"chdir": os.getcwd(), "open-mode": "append", **self.slurm.extra}
            bases = [running[key][1].job_id for key in sorted(task.after) if key in running]
            if bases:
                extra.update({"dependency": "afterok:" + ":".join(bases), "kill-on-invalid-dep": "yes"})
            executor.update_parameters(job_name=f"{self.meta['suite']}-{task.key}", additional_parameters=extra)
        job = executor.submit(RunJob(self.kind == "slurm"), task, str(self.out), self.progress)
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
            with self.lock:
                self.meta["wall_seconds"] += time.perf_counter() - started
                self._write_meta()
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
            if self.kind == "slurm" and not self.keep_going and not self.signals:  # no new run: queued ones go
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
        if self.keep_going:
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


def first_line(failure: BaseException, limit: int = 500) -> str:
    """A failure's message as one line of a summary (its type where the message is empty)."""
    text = next((line.strip() for line in str(failure).splitlines() if line.strip()), type(failure).__name__)
    return text[:limit]


def result_written(job: Any) -> bool:
    """Whether a submitit job has written its result file (its folder's attributes refreshed first, as submitit
    does, for network file systems that cache them)."""
    folder = job.paths.folder
    with contextlib.suppress(OSError):
        folder.chmod(folder.stat().st_mode)
    return job.paths.result_pickle.exists()

