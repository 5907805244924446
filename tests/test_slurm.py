"""Suites on a real one-node SLURM cluster (tests/slurm/one_node_cluster.sh: munged, slurmctld and slurmd started
here as root, no accounting): submission gives the default executor's files; a requeued job continues its run from
its last checkpoint; a cancelled job ends the suite with the command that continues it, and that command completes
it; jobs that fail before their runs start, and a SIGTERM to the suite, end it within bounded time.

Marked `slurm`; skipped where the SLURM packages are missing (`make slurm` installs them) or not running as root.
"""

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest

from node_transfer.suites import slurm_queue

CLUSTER_SCRIPT = Path(__file__).parent / "slurm" / "one_node_cluster.sh"
EPOCHS = 30  # the smoke suite's NODE run then takes half a minute or more: long enough to act on it mid-run

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(not all(shutil.which(p) for p in ("munged", "slurmctld", "slurmd", "sbatch")),
                       reason="SLURM is not installed (make slurm)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="the one-node cluster's daemons run as root"),
]


@pytest.fixture(scope="module")
def slurm_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A one-node cluster for this module's tests; yields the environment its clients (and jobs) need."""
    folder = tmp_path_factory.mktemp("cluster")
    started = subprocess.run([str(CLUSTER_SCRIPT), "start", str(folder)], capture_output=True, text=True)
    assert started.returncode == 0, started.stdout + started.stderr  # says why (and the daemons' last log lines)
    env = {**os.environ, "SLURM_CONF": str(folder / "slurm.conf"), "OMP_NUM_THREADS": "1",
           "TQDM_MININTERVAL": "30", "PYTHONUNBUFFERED": "1"}
    try:
        yield env
    finally:
        subprocess.run([str(CLUSTER_SCRIPT), "stop", str(folder)], check=False, env=env)


def suite_command(out: Path, *options: str) -> list[str]:
    return [sys.executable, "-m", "node_transfer", "suite", "smoke", "--profile", "cpu", "--seeds", "1",
            "--out", str(out), *options]


def on_slurm(out: Path, *options: str) -> list[str]:
    """The smoke suite through `--executor slurm` (no GPU on this cluster: a job asking for one would wait forever)."""
    return suite_command(out, "--executor", "slurm", "--slurm-gpus-per-job", "0", *options)


@pytest.fixture
def start(slurm_env: dict[str, str]) -> Iterator[Callable[[list[str], Path], subprocess.Popen]]:
    """Starts suite processes on the cluster, each with its output (stdout and stderr) in a log file; any still
    running when the test ends (a failed assertion) is killed, never left polling."""
    processes: list[subprocess.Popen] = []

    def start_suite(command: list[str], log: Path) -> subprocess.Popen:
        with log.open("w") as handle:
            processes.append(subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, text=True,
                                              env=slurm_env))
        return processes[-1]

    yield start_suite
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()


def finish(process: subprocess.Popen, log: Path, seconds: float) -> str:
    """Wait for a suite process to end; its output."""
    process.wait(timeout=seconds)
    return log.read_text()


def wait_until(condition: Callable[[], bool], process: subprocess.Popen, log: Path, seconds: float,
               what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert process.poll() is None, f"the suite ended (exit code {process.returncode}) before {what}:\n" \
                                       f"{log.read_text()}"
        assert time.monotonic() < deadline, f"no {what} within {seconds} s:\n{log.read_text()}"
        time.sleep(0.2)


def epochs_done(run_dir: Path) -> int:
    path = run_dir / "history.csv"
    return len(pd.read_csv(path)) if path.is_file() and path.stat().st_size else 0


def job_of(run_key: str, env: dict[str, str]) -> str:
    """The SLURM job id of a run of the smoke suite (its job name is SUITE-RUN)."""
    return subprocess.run(["squeue", "--noheader", "--states=all", "--name", f"smoke-{run_key}", "--format=%i"],
                          check=True, capture_output=True, text=True, env=env).stdout.split()[-1]


def job_field(job_id: str, name: str, env: dict[str, str]) -> str:
    """A field of `scontrol show job` (the controller keeps ended jobs for MinJobAge, 300 s here)."""
    shown = subprocess.run(["scontrol", "show", "job", "--oneliner", job_id], check=True, capture_output=True,
                           text=True, env=env).stdout
    return re.search(rf"\b{name}=(\S+)", shown).group(1)


def suite_files(suite: Path) -> list[str]:
    """Every file of a suite directory, relative to it (set-aside partial runs left out), as test_cluster's."""
    return sorted(str(p.relative_to(suite)) for p in suite.rglob("*")
                  if p.is_file() and ".partial-" not in str(p.relative_to(suite)))


def resume_command(output: str) -> list[str]:
    """The command the suite printed to continue it, to run with this Python."""
    line = next(line for line in output.splitlines() if "continue the suite with: " in line)
    words = shlex.split(line.split("continue the suite with: ", 1)[1])
    assert words[0] == "node-transfer" and "--resume" in words, line
    return [sys.executable, "-m", "node_transfer", *words[1:]]


def test_a_suite_on_slurm_gives_the_default_executors_files_and_reads_job_states_from_the_queue(
        tmp_path: Path, slurm_env: dict[str, str], start: Callable) -> None:
    """`suite smoke --executor slurm`: both runs as SLURM jobs, the thread pool's files and numbers, and one line
    (not a warning a poll) saying that job states come from the queue, as this cluster keeps no accounting."""
    slurm, threads = tmp_path / "slurm", tmp_path / "threads"
    reference = start(suite_command(threads), tmp_path / "threads.log")  # alongside: the test's time
    started = time.monotonic()
    completed = subprocess.run(on_slurm(slurm), capture_output=True, text=True, env=slurm_env, timeout=240)
    print(f"suite smoke on SLURM: {time.monotonic() - started:.0f} s")
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    assert finish(reference, tmp_path / "threads.log", 240) is not None and reference.returncode == 0
    assert suite_files(slurm) == suite_files(threads)
    ran, expected = (pd.read_csv(d / "runs.csv").set_index("label") for d in (slurm, threads))
    assert list(ran.columns) == list(expected.columns)
    assert ran["test_acc"].to_dict() == expected["test_acc"].to_dict()
    assert [line for line in output.splitlines() if "job states come from the queue" in line] == [
        "no SLURM accounting here (sacct: Slurm accounting storage is disabled): job states come from the queue "
        "(squeue)"]
    assert "sacct error" not in output and "WARNING" not in output
    jobs = re.findall(r"submitit job (\d+)", output)
    assert len(jobs) == 2 and all(job_field(job, "JobState", slurm_env) == "COMPLETED" for job in jobs)


@pytest.mark.timeout(600)  # about 3 minutes on two busy cores
def test_a_requeued_job_continues_its_run_and_a_cancelled_one_ends_the_suite_until_resume(
        tmp_path: Path, slurm_env: dict[str, str], start: Callable) -> None:
    """One suite, its NODE run's job requeued twice, then cancelled.

    USR2, as SLURM sends it before the time limit (submitit's `--signal=USR2@90`): submitit calls the job's
    checkpoint, which stops the kernel, and requeues the job; then `scontrol requeue`, as a preemption that
    requeues (SIGTERM to the job, which leaves no result, and back to the queue). Each time the requeued job
    resumes the run from its last complete epoch (the epochs before stay as the earlier start wrote them, times and
    all: continued, not rerun). Then `scancel`: without accounting the suite learns it from the queue within a
    minute, names the run that did not finish and exits 1 printing the `--resume` command, which completes the
    suite."""
    out, log = tmp_path / "suite", tmp_path / "suite.log"
    run_dir = out / "node-s0"
    suite = start(on_slurm(out, "--set", f"epochs={EPOCHS}"), log)
    wait_until(lambda: epochs_done(run_dir) >= 2, suite, log, 240, "second NODE epoch")
    job = job_of("node-s0", slurm_env)
    starts = []  # the history as each requeue found it
    for restart, requeue in enumerate((["scancel", "--signal=USR2", job], ["scontrol", "requeue", job]), start=1):
        subprocess.run(requeue, check=True, env=slurm_env)
        starts.append(pd.read_csv(run_dir / "history.csv"))
        wait_until(lambda: job_field(job, "Restarts", slurm_env) == str(restart)  # noqa: B023 (called at once)
                   and epochs_done(run_dir) > len(starts[-1]) + 1, suite, log, 180, f"epoch of requeue {restart}")
    subprocess.run(["scancel", job], check=True, env=slurm_env)
    cancelled = time.monotonic()
    output = finish(suite, log, 120)
    print(f"the suite ended {time.monotonic() - cancelled:.1f} s after scancel")
    assert time.monotonic() - cancelled < 60, output
    assert suite.returncode == 1, output
    assert "runs that did not finish: node-s0\n" in output and "ended (CANCELLED)" in output, output
    job_log = "".join((tmp_path / "suite.submitit" / f"{job}_0_log.{kind}").read_text() for kind in ("out", "err"))
    assert "Calling checkpoint method" in job_log and "Requeued job" in job_log, job_log  # both starts' logs
    assert '"resume": true' in (run_dir / "config.json").read_text()  # the requeued start resumed the run
    kept = pd.read_csv(run_dir / "history.csv")
    assert len(starts[-1]) < len(kept) < EPOCHS and not (run_dir / "metrics.json").exists()
    for before in starts:
        continued = len(before) - 1  # the last row read may have been rewritten by an epoch finishing meanwhile
        pd.testing.assert_frame_equal(kept.iloc[:continued], before.iloc[:continued])

    resumed = subprocess.run(resume_command(output), capture_output=True, text=True, env=slurm_env, timeout=240)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert sorted(pd.read_csv(out / "runs.csv")["label"]) == ["fc", "node"]
    history = pd.read_csv(run_dir / "history.csv")
    assert list(history["epoch"]) == list(range(1, EPOCHS + 1))
    pd.testing.assert_frame_equal(history.iloc[:len(kept)], kept)  # the epochs before the cancel, times and all


def test_jobs_that_fail_before_their_runs_start_end_the_suite(tmp_path: Path, slurm_env: dict[str, str]) -> None:
    """A setup line that fails (a missing module, a wrong venv): the jobs end FAILED with no result; the suite
    names both runs and exits 1 with the resume command, within the poll and grace times."""
    out = tmp_path / "suite"
    started = time.monotonic()
    completed = subprocess.run(on_slurm(out, "--slurm-setup", "exit 3"), capture_output=True, text=True,
                               env=slurm_env, timeout=120)
    output = completed.stdout + completed.stderr
    print(f"the suite ended {time.monotonic() - started:.1f} s after it started")
    assert completed.returncode == 1, output
    assert "runs that did not finish: fc-s0, node-s0\n" in output and output.count("ended (FAILED)") == 2, output
    assert time.monotonic() - started < 3 * slurm_queue.SLURM_POLL_SECONDS + slurm_queue.ENDED_GRACE_SECONDS + 10
    assert "--resume" in resume_command(output)


def settled_state(job: str, slurm_env: dict[str, str], timeout: float = 30.0) -> str:
    """A job's state once SLURM has finished moving it (a cancelled job passes through COMPLETING first)."""
    deadline = time.monotonic() + timeout
    state = job_field(job, "JobState", slurm_env)
    while state == "COMPLETING" and time.monotonic() < deadline:
        time.sleep(0.5)
        state = job_field(job, "JobState", slurm_env)
    return state


def test_sigterm_cancels_the_jobs_and_ends_the_suite_within_seconds(tmp_path: Path, slurm_env: dict[str, str],
                                                                    start: Callable) -> None:
    """SIGTERM to a suite whose jobs are queued or running: it cancels them and exits 143 within seconds, naming
    the runs that did not finish and the resume command."""
    out, log = tmp_path / "suite", tmp_path / "suite.log"
    suite = start(on_slurm(out, "--set", f"epochs={EPOCHS}"), log)
    wait_until(lambda: len(re.findall(r"submitit job (\d+)", log.read_text())) == 2, suite, log, 120,
               "two submitted jobs")
    jobs = re.findall(r"submitit job (\d+)", log.read_text())
    wait_until(lambda: "RUNNING" in [job_field(job, "JobState", slurm_env) for job in jobs], suite, log, 60,
               "running job")
    suite.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    while "interrupted by SIGTERM" not in log.read_text() and suite.poll() is None:
        time.sleep(0.05)
    said = time.monotonic() - signalled
    output = finish(suite, log, 60)
    ended = time.monotonic() - signalled  # with the interpreter's exit, seconds of garbage collection on busy cores
    print(f"the suite said it was interrupted {said:.1f} s after SIGTERM and ended after {ended:.1f} s")
    assert said < 5 and ended < 30, output
    assert suite.returncode == 128 + signal.SIGTERM, output
    assert "runs that did not finish: " in output and "--resume" in resume_command(output)
    unfinished = output.split("runs that did not finish: ")[1].splitlines()[0].split(", ")
    states = {key: settled_state(job, slurm_env) for key, job in zip(("fc-s0", "node-s0"), jobs)}
    assert "node-s0" in unfinished and all(states[key] == "CANCELLED" for key in unfinished), (states, output)
