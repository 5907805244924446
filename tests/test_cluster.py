"""Suites through submitit: the local executor runs the same files as the default thread pool and resumes after a
kill; SLURM jobs are submitted with the options asked for and a dependency on the run they continue from."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from node_transfer.app.cli import build_parser, main
from node_transfer.app.commands import slurm_options
from node_transfer.core.config import ExperimentConfig
from node_transfer.suites.cluster import SubmititScheduler
from node_transfer.suites.options import SlurmOptions, SuiteOptions
from node_transfer.suites.registry import SuiteRun
from node_transfer.suites.runner import run_suite
from node_transfer.suites.scheduling import Task


def suite_files(suite: Path) -> list[str]:
    """Every file of a suite directory, relative to it (set-aside partial runs left out)."""
    return sorted(str(p.relative_to(suite)) for p in suite.rglob("*")
                  if p.is_file() and ".partial-" not in str(p.relative_to(suite)))


KILL_TEST_EPOCHS = 30


def wait_for(path: Path, process: subprocess.Popen, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert process.poll() is None, f"the suite ended (exit code {process.returncode}) before {path} appeared"
        assert time.monotonic() < deadline, f"{path} did not appear within {seconds} s"
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_local_executor_gives_the_default_executors_files_and_resumes_after_a_kill(tmp_path):
    """`suite smoke --executor local`, killed (SIGTERM) after its second run's first epoch, then `--resume`: the
    suite completes with the files the default thread pool writes, and the same numbers."""
    local, threads = tmp_path / "local", tmp_path / "threads"
    # Long enough that the NODE run is still going when the signal lands, even on a fast machine (one epoch of
    # the smoke suite takes well under a second there: killed at `config.json`, the run could finish first).
    epochs = {"epochs": KILL_TEST_EPOCHS}
    command = [sys.executable, "-m", "node_transfer", "suite", "smoke", "--profile", "cpu", "--seeds", "1",
               "--executor", "local", "--out", str(local), "--set", f"epochs={KILL_TEST_EPOCHS}"]
    suite = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for(local / "fc-s0" / "metrics.json", suite, 400)
    wait_for(local / "node-s0" / "history.csv", suite, 200)  # the second run has finished an epoch
    suite.send_signal(signal.SIGTERM)
    output = suite.communicate(timeout=120)[0]
    assert suite.returncode == 128 + signal.SIGTERM, output
    assert "continue the suite with --resume" in output
    assert list(pd.read_csv(local / "runs.csv")["label"]) == ["fc"]
    assert not (local / "node-s0" / "metrics.json").exists()

    run_suite("smoke", "cpu", 1, local, overrides=epochs, resume=True,
              options=SuiteOptions(executor="local", progress=False))
    run_suite("smoke", "cpu", 1, threads, overrides=epochs, options=SuiteOptions(progress=False))
    assert suite_files(local) == suite_files(threads)
    ran, reference = (pd.read_csv(d / "runs.csv").set_index("label") for d in (local, threads))
    assert list(ran.columns) == list(reference.columns)
    assert ran["test_acc"].to_dict() == reference["test_acc"].to_dict()
    meta = json.loads((local / "suite.json").read_text())
    assert meta["executor"] == "local" and meta["seconds"] > 0 and [r["label"] for r in meta["runs"]] == ["fc", "node"]
    assert (tmp_path / "local.submitit").is_dir() and not (local / "submitit").exists()


def two_tasks(tmp_path: Path) -> list[Task]:
    base = Task("baseline-s0", SuiteRun("baseline", {}), 0, ExperimentConfig(out=str(tmp_path / "baseline-s0")))
    continued = Task("rk-s0", SuiteRun("rk", {}, init_from="baseline", target_from="baseline"), 0,
                     ExperimentConfig(out=str(tmp_path / "rk-s0")), after={"baseline-s0"})
    return [base, continued]


def test_slurm_jobs_carry_the_options_and_a_dependency_on_their_base(tmp_path, monkeypatch):
    from submitit.slurm.test_slurm import mocked_slurm  # submitit's own stand-in for sbatch, sacct and scancel

    monkeypatch.chdir(tmp_path)
    options = SlurmOptions(partition="gpu", gpus_per_job=1, cpus_per_job=8, time_min=600,
                           setup=["module load cuda"], extra={"account": "proj"})
    meta = {"suite": "paper", "seconds": 0.0, "wall_seconds": 0.0, "rebuilt": []}
    scheduler = SubmititScheduler(tmp_path / "suite", meta,
                                  SuiteOptions(progress=False, executor="slurm", slurm=options))
    base, continued = two_tasks(tmp_path)
    with mocked_slurm():
        executor = scheduler.executor()
        running = {base.key: scheduler.submit(executor, base, {})}
        running[continued.key] = scheduler.submit(executor, continued, running)
    first, second = (running[key][1] for key in (base.key, continued.key))
    script = second.paths.submission_file.read_text()
    for line in ("--partition=gpu", "--gpus-per-node=1", "--cpus-per-task=8", "--time=600", "--account=proj",
                 f"--dependency=afterok:{first.job_id}", "--kill-on-invalid-dep=yes", "--job-name=paper-rk-s0",
                 f"--chdir={tmp_path}", "module load cuda"):
        assert line in script, line
    assert "--dependency" not in first.paths.submission_file.read_text()
    assert scheduler.folder == tmp_path / "suite.submitit"


def test_runs_are_ready_locally_once_their_base_is_done_and_on_slurm_once_it_is_submitted(tmp_path):
    base, continued = two_tasks(tmp_path)
    meta = {"suite": "paper"}
    local = SubmititScheduler(tmp_path / "s", meta, SuiteOptions(jobs=2, progress=False, executor="local"), devices=[])
    slurm = SubmititScheduler(tmp_path / "s", meta, SuiteOptions(progress=False, executor="slurm"))
    pending = [continued]
    assert local._ready(pending, {base.key: ()}, set()) == []
    assert local._ready(pending, {}, {base.key}) == [continued]
    assert slurm._ready(pending, {base.key: ()}, set()) == [continued]
    one_at_a_time = SuiteOptions(jobs=1, progress=False, executor="local")
    assert SubmititScheduler(tmp_path / "s", meta, one_at_a_time, devices=[])._ready(
        [base], {"other": ()}, set()) == []  # --jobs 1: one at a time


def test_the_local_executor_refuses_gpu_uuids(tmp_path):
    with pytest.raises(Exception, match="GPU indices only"):
        SubmititScheduler(tmp_path / "s", {"suite": "x"}, SuiteOptions(jobs=2, progress=False, executor="local"),
                          devices=["GPU-8e6a"])


def test_slurm_options_from_the_command_line():
    args = build_parser().parse_args(["suite", "paper", "--executor", "slurm", "--slurm-partition", "gpu",
                                      "--slurm-time", "90", "--slurm-setup", "module load cuda", "--slurm-option",
                                      "account=proj", "--slurm-option=--qos=long"])
    options = slurm_options(**{k: v for k, v in vars(args).items() if k.startswith("slurm_")})
    assert (options.partition, options.time_min, options.gpus_per_job, options.setup, options.extra) == (
        "gpu", 90, 1, ["module load cuda"], {"account": "proj", "qos": "long"})
    assert args.jobs is None  # no limit on SLURM unless --jobs is given
    assert not args.keep_going and build_parser().parse_args(["suite", "paper", "--keep-going"]).keep_going


def test_keep_going_reaches_the_scheduler_of_either_executor(tmp_path, monkeypatch):
    from node_transfer.suites.scheduling import Scheduler

    seen = []
    def record(self, tasks):
        seen.append((type(self).__name__, self.options.keep_going))

    monkeypatch.setattr(Scheduler, "run", record)
    monkeypatch.setattr(SubmititScheduler, "run", record)
    assert main(["suite", "smoke", "--out", str(tmp_path / "a"), "--keep-going"]) == 0
    assert main(["suite", "smoke", "--out", str(tmp_path / "b"), "--executor", "local"]) == 0
    assert seen == [("Scheduler", True), ("SubmititScheduler", False)]


@pytest.mark.parametrize("arguments, named", [
    (["--executor", "cloud"], "executor='cloud'"),
    (["--executor", "local", "--in-process"], "executor='local'"),
    (["--executor", "slurm", "--slurm-option", "account"], "slurm_option='account'"),
    (["--executor", "slurm", "--slurm-time", "0"], "slurm_time=0"),
])
def test_bad_executor_options_are_refused_before_anything_is_written(tmp_path, capsys, arguments, named):
    out = tmp_path / "suite"
    assert main(["suite", "smoke", "--out", str(out), *arguments]) == 2
    assert named in capsys.readouterr().err
    assert not out.exists() and not os.path.exists(f"{out}.submitit")


def test_the_slurm_queue_decides_that_a_job_ended_only_after_its_grace_period(monkeypatch):
    """squeue's word for the jobs: a live job is never decided, an ended one after ENDED_GRACE_SECONDS, one the
    queue has forgotten after LOST_GRACE_SECONDS, a requeued one (back to PENDING) is live again; no accounting is
    said once."""
    from node_transfer.suites import slurm_queue

    answers = {"squeue": "1|RUNNING\n2|CANCELLED\n"}

    def slurm(command, **kwargs):
        if command[0] == "sacct":
            raise subprocess.CalledProcessError(1, command, stderr="Slurm accounting storage is disabled\n")
        return answers["squeue"]

    said = []
    monkeypatch.setattr(slurm_queue, "run_slurm", slurm)
    monkeypatch.setattr(slurm_queue, "SLURM_POLL_SECONDS", 0.0)
    queue = slurm_queue.SlurmQueue(said.append)
    queue.refresh(["1", "2", "3"])
    now = time.monotonic()
    assert [queue.ended(job, now) for job in ("1", "2", "3")] == [None, None, None]
    later = now + slurm_queue.ENDED_GRACE_SECONDS + 1
    assert [queue.ended(job, later) for job in ("1", "2", "3")] == [None, "CANCELLED", None]
    assert queue.ended("3", now + slurm_queue.LOST_GRACE_SECONDS + 1) == "unknown to SLURM for 60 s"
    answers["squeue"] = "2|PENDING\n"  # requeued
    queue.refresh(["1", "2", "3"])
    assert queue.ended("2", later + 100) is None
    assert said == ["no SLURM accounting here (sacct: Slurm accounting storage is disabled): job states come from "
                    "the queue (squeue)"]


def test_a_suite_that_did_not_finish_on_slurm_names_the_command_that_continues_it(tmp_path, monkeypatch):
    """The resume command: the command line that started the suite with --resume, or (from Python) the suite's
    own settings as options."""
    meta = {"suite": "smoke", "profile": "cpu", "seeds": 2, "overrides": {"epochs": 30}}
    options = SlurmOptions(partition="gpu", gpus_per_job=0, setup=["module load cuda"], extra={"qos": "long"})
    scheduler = SubmititScheduler(tmp_path / "s", meta, SuiteOptions(progress=False, executor="slurm", slurm=options))
    monkeypatch.setattr(sys, "argv", ["pytest"])
    assert scheduler.resume_command() == (
        f"node-transfer suite smoke --profile cpu --seeds 2 --out {tmp_path / 's'} --executor slurm --resume "
        "--set=epochs=30 --slurm-gpus-per-job=0 --slurm-partition=gpu '--slurm-setup=module load cuda' "
        "--slurm-option=qos=long")
    monkeypatch.setattr(sys, "argv", ["/venv/bin/node-transfer", "suite", "smoke", "--out", "x y", "--executor",
                                      "slurm"])
    assert scheduler.resume_command() == "node-transfer suite smoke --out 'x y' --executor slurm --resume"


def test_a_slurm_queue_that_stops_answering_ends_the_wait_after_a_bound(monkeypatch):
    """squeue failing (the controller gone): said once, nothing decided at first, every job given up after
    QUEUE_LOST_SECONDS, with the advice to look at squeue before --resume."""
    from node_transfer.suites import slurm_queue

    def unreachable(command, **kwargs):
        raise subprocess.CalledProcessError(1, command, stderr="Unable to contact slurm controller\n")

    said = []
    monkeypatch.setattr(slurm_queue, "run_slurm", unreachable)
    monkeypatch.setattr(slurm_queue, "SLURM_POLL_SECONDS", 0.0)
    queue = slurm_queue.SlurmQueue(said.append)
    queue.refresh(["7"])
    queue.refresh(["7"])
    now = time.monotonic()
    assert queue.ended("7", now) is None
    assert "the job may still run; see squeue before --resume" in queue.ended("7", now + slurm_queue.QUEUE_LOST_SECONDS)
    assert len([line for line in said if line.startswith("squeue failed")]) == 1


def test_a_slurm_command_is_given_up_at_once_when_the_suite_is_signalled():
    """A client stuck on an unreachable controller must not hold up a suite that received SIGTERM."""
    from node_transfer.suites.slurm_queue import run_slurm

    started = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        run_slurm(["sleep", "30"], interrupted=lambda: True)
    assert time.monotonic() - started < 5
    assert run_slurm(["echo", "RUNNING"]) == "RUNNING\n"
    with pytest.raises(subprocess.CalledProcessError):
        run_slurm(["false"])
