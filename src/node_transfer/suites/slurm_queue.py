"""What SLURM says about a suite's jobs: their states from the queue (`squeue`, one call a poll), from accounting
(`sacct`) only for jobs the queue has forgotten, and when a job that ended without a result counts as gone.

submitit asks `sacct` alone and, on a cluster without accounting, warns at every poll and never learns that a job
is gone; `SlurmQueue` is what `cluster.SubmititScheduler` reads instead. `run_slurm` runs one SLURM command with a
time limit, given up at once when the suite is being stopped (a controller that does not answer must not hold it).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

SLURM_POLL_SECONDS = 10.0  # how often the suite asks squeue about its jobs (one call for all; results: every second)
ENDED_GRACE_SECONDS = 10.0  # an ended job's result may reach a network file system late: wait this long for it
LOST_GRACE_SECONDS = 60.0  # a job the queue (and accounting) no longer knows, with no result: gone after this long
QUEUE_LOST_SECONDS = 600.0  # squeue failing this long (the controller gone): the suite stops waiting for its jobs
SLURM_COMMAND_SECONDS = 30.0  # a squeue or sacct call that takes longer is given up (asked again at the next poll)
SCANCEL_SECONDS = 5.0  # scancel's time when the suite stops: a controller that does not answer cannot cancel anyway
#: squeue's states of a job that may still write a result (any other state, or none, means the job has ended)
LIVE_STATES = frozenset({"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "REQUEUE_FED",
                         "REQUEUE_HOLD", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD",
                         "POWER_UP_NODE"})


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


def first_line(failure: BaseException, limit: int = 500) -> str:
    """A failure's message as one line of a summary (its type where the message is empty)."""
    text = next((line.strip() for line in str(failure).splitlines() if line.strip()), type(failure).__name__)
    return text[:limit]
