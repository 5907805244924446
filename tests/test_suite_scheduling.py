"""Suites run several configurations at once (after the runs they continue from), part of their seeds, and
recover a committed run's missing checkpoints only when training it again reproduces its numbers."""

import io
import json
import os
import threading
import time

import nbformat
import numpy as np
import pandas as pd
import pytest
from myst_pages import myst_page

from node_transfer.core.config import ExperimentConfig
from node_transfer.core.errors import ConfigError, SuiteRunError, TrainingError
from node_transfer.suites.options import SuiteOptions
from node_transfer.suites.registry import SuiteRun
from node_transfer.suites.runner import run_suite
from node_transfer.suites.scheduling import Prefixed, Scheduler, Task, visible_devices

#: Runs in this process, without progress lines (the quick way through a suite in a test).
IN_PROCESS = SuiteOptions(use_papermill=False, progress=False)
TWO_KERNELS = SuiteOptions(jobs=2, progress=False)  # two papermill kernels at once

# The paper suite's digits profile, made tiny: 200 training images at 32 px, one epoch per run.
TINY = {"epochs": 1, "train_subset": 200, "image_size": 32}


def fake_tasks(tmp_path, spec):
    """Tasks named by `spec` {key: (seconds, depends_on)}; their config is never used."""
    config = ExperimentConfig(out=str(tmp_path / "unused"))
    return [Task(key, SuiteRun(key, {}), 0, config, after=set(after)) for key, (_, after) in spec.items()]


def test_scheduler_runs_at_most_jobs_at_once_and_each_after_its_base(tmp_path, monkeypatch):
    spec = {"base": (0.3, []), "a": (0.2, ["base"]), "b": (0.2, ["base"]), "c": (0.2, ["base"]),
            "other": (0.5, [])}
    log, lock, active = [], threading.Lock(), [0]

    def execute(self, task, index, total):
        with lock:
            active[0] += 1
            log.append(("start", task.key, active[0]))
        time.sleep(spec[task.key][0])
        with lock:
            active[0] -= 1
            log.append(("end", task.key, active[0]))

    monkeypatch.setattr(Scheduler, "_execute", execute)
    meta = {"suite": "fake", "seconds": 0.0, "wall_seconds": 0.0, "rebuilt": []}
    Scheduler(tmp_path, meta, TWO_KERNELS).run(fake_tasks(tmp_path, spec))
    assert max(count for kind, _, count in log if kind == "start") == 2
    order = [(kind, key) for kind, key, _ in log]
    assert {key for kind, key in order if kind == "start"} == set(spec)
    for key in ("a", "b", "c"):
        assert order.index(("end", "base")) < order.index(("start", key))
    assert order[:2] == [("start", "base"), ("start", "other")]  # the free core is not left idle
    assert meta["wall_seconds"] > 0 and json.loads((tmp_path / "suite.json").read_text())["suite"] == "fake"


def scripted_runs(monkeypatch, spec, failures):
    """Make the Scheduler's runs sleep their `spec` seconds and raise `failures[key]`; returns the keys started and
    finished, in order."""
    started, finished = [], []

    def execute(self, task, index, total):
        started.append(task.key)
        time.sleep(spec[task.key][0])
        if task.key in failures:
            raise failures[task.key]
        finished.append(task.key)

    monkeypatch.setattr(Scheduler, "_execute", execute)
    return started, finished


def test_a_failed_run_stops_new_runs_but_lets_the_running_ones_finish(tmp_path, monkeypatch):
    spec = {"slow": (0.4, []), "bad": (0.05, []), "after-bad": (0.0, ["bad"]), "free": (0.0, [])}
    started, finished = scripted_runs(monkeypatch, spec, {"bad": SuiteRunError("bad failed")})
    meta = {"suite": "fake", "seconds": 0.0, "wall_seconds": 0.0, "rebuilt": []}
    with pytest.raises(SuiteRunError, match="bad failed"):
        Scheduler(tmp_path, meta, TWO_KERNELS).run(fake_tasks(tmp_path, spec))
    assert started == ["slow", "bad"] and finished == ["slow"]  # nothing new after the failure


def test_keep_going_runs_what_does_not_continue_from_a_failure_and_lists_both_at_the_end(tmp_path, monkeypatch):
    spec = {"bad": (0.05, []), "after-bad": (0.0, ["bad"]), "after-that": (0.0, ["after-bad"]),
            "slow": (0.3, []), "free": (0.0, []), "after-free": (0.0, ["free"])}
    started, finished = scripted_runs(monkeypatch, spec, {"bad": TrainingError("the solver failed\nat epoch 3")})
    meta = {"suite": "fake", "seconds": 0.0, "wall_seconds": 0.0, "rebuilt": []}
    scheduler = Scheduler(tmp_path, meta, SuiteOptions(jobs=2, use_papermill=True, progress=False, keep_going=True))
    with pytest.raises(SuiteRunError) as raised:
        scheduler.run(fake_tasks(tmp_path, spec))
    assert sorted(finished) == ["after-free", "free", "slow"] and "after-bad" not in started
    assert str(raised.value) == (
        "1 run failed: bad (TrainingError: the solver failed); not started, as they continue from a failed run: "
        "after-bad, after-that; every other run finished; fix the causes and continue with --resume")
    assert isinstance(raised.value.__cause__, TrainingError)


def test_keep_going_with_submitit_jobs(tmp_path, monkeypatch):
    from node_transfer.suites.cluster import SubmititScheduler

    class FakeJob:
        def __init__(self, key):
            self.key, self.job_id, self.state = key, f"job-{key}", "RUNNING"
            self.paths = type("Paths", (), {"stderr": tmp_path / f"{key}.err"})()

        def done(self):
            return True

        def result(self):
            if self.key == "bad":
                raise RuntimeError("Traceback\nTrainingError: the solver failed")
            return 1.0

    submitted = []

    def submit(self, executor, task, running):
        submitted.append(task.key)
        return task, FakeJob(task.key), None

    monkeypatch.setattr(SubmititScheduler, "executor", lambda self: None)
    monkeypatch.setattr(SubmititScheduler, "submit", submit)
    meta = {"suite": "fake", "seconds": 0.0, "wall_seconds": 0.0, "rebuilt": []}
    options = SuiteOptions(jobs=1, progress=False, executor="local", keep_going=True)
    scheduler = SubmititScheduler(tmp_path, meta, options, devices=[])
    scheduler.poll_seconds = 0.0
    spec = {"bad": (0, []), "after-bad": (0, ["bad"]), "free": (0, [])}
    with pytest.raises(SuiteRunError, match=r"^1 run failed: bad \(SuiteRunError: bad failed in submitit job "
                       r"job-bad \(TrainingError: the solver failed\).*not started, as they continue from a "
                       r"failed run: after-bad; every other run finished"):
        scheduler.run(fake_tasks(tmp_path, spec))
    assert submitted == ["bad", "free"] and meta["seconds"] == 1.0


def test_parallel_progress_lines_carry_their_run(tmp_path):
    sink = io.StringIO()
    stream = Prefixed(sink, "[rk-s0] ")
    stream.write("epoch 1/3: loss 0.5\nepoch 2")
    stream.write("/3: loss 0.4\r")
    assert sink.getvalue() == "[rk-s0] epoch 1/3: loss 0.5\n[rk-s0] epoch 2/3: loss 0.4\n"


def test_jobs_and_seeds_are_checked_before_anything_is_written(tmp_path):
    for jobs in (0, -1, "2", True):
        with pytest.raises(ConfigError, match="jobs"):
            run_suite("smoke", "cpu", 1, tmp_path / "s", options=SuiteOptions(jobs=jobs))
    with pytest.raises(ConfigError, match="jobs"):
        run_suite("smoke", "cpu", 1, tmp_path / "s", options=SuiteOptions(jobs=2, use_papermill=False))
    with pytest.raises(ConfigError, match=r"only_seeds=2: expected seeds of this suite, 0 to 1"):
        run_suite("smoke", "cpu", 2, tmp_path / "s", only_seeds=(2,))
    assert not (tmp_path / "s").exists()


def test_only_seeds_runs_part_and_resume_adds_the_rest(tmp_path):
    from node_transfer.analysis.reporting import sweep_table
    from node_transfer.suites.results import suite_progress

    out = run_suite("smoke", "cpu", 2, tmp_path / "s", only_seeds=(1,), options=IN_PROCESS)
    runs = pd.read_csv(out / "runs.csv")
    assert sorted(runs["run_dir"]) == ["fc-s1", "node-s1"]
    progress = suite_progress(out).set_index("configuration")
    assert progress.loc["node", "seeds planned"] == 2 and progress.loc["node", "seeds finished"] == 1
    table = sweep_table(runs).set_index("configuration")
    assert table.loc["fc", "solver"] == "–" and table.loc["node", "solver"] == "dopri5"
    assert table.loc["fc", "head params"] == f"{runs.loc[runs['label'] == 'fc', 'params_head'].item():,}"
    run_suite("smoke", "cpu", 2, out, resume=True, options=IN_PROCESS)
    assert sorted(pd.read_csv(out / "runs.csv")["run_dir"]) == ["fc-s0", "fc-s1", "node-s0", "node-s1"]


def test_parallel_runs_through_papermill_start_continued_runs_after_their_base(tmp_path):
    out = run_suite("paper", "cpu", 1, tmp_path / "p", overrides=TINY, labels=("baseline", "rk", "fc-adam"),
                    options=SuiteOptions(jobs=2, progress=False))
    times = {}
    for key in ("baseline-s0", "rk-s0", "fc-adam-s0"):
        meta = nbformat.read(out / f"{key}.ipynb", as_version=4).metadata["papermill"]
        times[key] = (meta["start_time"], meta["end_time"])
    assert times["baseline-s0"][1] <= min(times["rk-s0"][0], times["fc-adam-s0"][0])
    assert max(times["rk-s0"][0], times["fc-adam-s0"][0]) < min(times["rk-s0"][1], times["fc-adam-s0"][1])
    suite = json.loads((out / "suite.json").read_text())
    assert suite["seconds"] > suite["wall_seconds"] > 0  # two runs overlapped
    assert len(pd.read_csv(out / "runs.csv")) == 3


def test_missing_checkpoints_of_a_finished_base_are_rebuilt_only_if_it_reproduces(tmp_path):
    tiny = {**TINY, "epochs": 2}
    out = run_suite("paper", "cpu", 1, tmp_path / "p", overrides=tiny, labels=("baseline",), options=IN_PROCESS)
    base = out / "baseline-s0"
    committed = {name: (base / name).read_bytes() for name in ("config.json", "history.csv", "metrics.json")}
    for name in ("last.pt", "best.pt"):  # the committed results of another machine: no weights
        (base / name).unlink()
    run_suite("paper", "cpu", 1, out, overrides=tiny, labels=("rk",), resume=True, options=IN_PROCESS)
    assert {name: (base / name).read_bytes() for name in committed} == committed  # untouched
    assert (base / "best.pt").is_file() and not (out / "baseline-s0.rebuild").exists()
    assert (out / "rk-s0" / "metrics.json").is_file()
    assert [entry["run"] for entry in json.loads((out / "suite.json").read_text())["rebuilt"]] == ["baseline-s0"]

    # a committed number that training no longer reproduces, one unit in its last digit: the rebuild stops at
    # that epoch (not after all of them), nothing committed changes
    (base / "last.pt").unlink()
    lines = (base / "history.csv").read_text().splitlines()
    header, first = lines[0].split(","), lines[1].split(",")
    column = header.index("val_loss")
    value = float(first[column])
    first[column] = repr(float(np.nextafter(value, 1.0)))
    (base / "history.csv").write_text("\n".join([lines[0], ",".join(first), *lines[2:]]) + "\n")
    edited = (base / "history.csv").read_bytes()
    run_dir = out / "fc-adam-s0"
    with pytest.raises(SuiteRunError, match=r"differs from the committed one .*history.csv epoch 1 val_loss: "
                                            r"committed .*it stopped after epoch 1"):
        run_suite("paper", "cpu", 1, out, overrides=tiny, labels=("fc-adam",), resume=True, options=IN_PROCESS)
    assert (base / "history.csv").read_bytes() == edited and not (base / "last.pt").exists()
    assert len(pd.read_csv(out / "baseline-s0.rebuild" / "history.csv")) == 1  # stopped after the first epoch
    assert (out / "baseline-s0.rebuild" / "best.pt").is_file() and not run_dir.exists()
    assert sorted(pd.read_csv(out / "runs.csv")["run_dir"]) == ["baseline-s0", "rk-s0"]  # written all the same


def test_a_second_suite_process_in_the_same_directory_is_refused(tmp_path):
    from node_transfer.core.rundir import lock, unlock

    out = run_suite("smoke", "cpu", 1, tmp_path / "s", labels=("fc",), options=IN_PROCESS)
    handle = lock(out, "suite")  # another `node-transfer suite` working in it
    before = (out / "suite.json").read_bytes()
    with pytest.raises(ConfigError, match="another suite holds its lock"):
        run_suite("smoke", "cpu", 1, out, resume=True, options=IN_PROCESS)
    assert (out / "suite.json").read_bytes() == before and not (out / "node-s0").exists()
    unlock(handle, out)
    run_suite("smoke", "cpu", 1, out, resume=True, options=IN_PROCESS)
    assert (out / "node-s0" / "metrics.json").is_file() and not (out / ".lock").exists()


def test_sigterm_to_a_suite_stops_its_kernels_and_keeps_their_epochs(tmp_path):
    """The kernels run in sessions of their own: a signal to the suite alone once left them running as orphans."""
    import os
    import signal
    import subprocess
    import sys

    import psutil

    out = tmp_path / "s"
    command = [sys.executable, "-m", "node_transfer", "suite", "smoke", "--out", str(out), "--jobs", "2",
               "--set", "epochs=500"]
    suite = subprocess.Popen(command, cwd=tmp_path, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 240
    while not all((out / f"{key}-s0" / "last.pt").is_file() for key in ("fc", "node")):
        assert suite.poll() is None and time.monotonic() < deadline, "both runs should have finished an epoch"
        time.sleep(0.5)
    kernels = [child for child in psutil.Process(suite.pid).children() if "ipykernel" in " ".join(child.cmdline())]
    assert len(kernels) == 2
    suite.send_signal(signal.SIGTERM)
    _, stderr = suite.communicate(timeout=120)
    assert suite.returncode == 128 + signal.SIGTERM, stderr
    assert "continue the suite with --resume" in stderr
    assert not any(kernel.is_running() and kernel.status() != psutil.STATUS_ZOMBIE for kernel in kernels)
    assert not (out / ".lock").exists() and (out / "runs.csv").is_file()
    for key in ("fc", "node"):  # stopped mid-way: an epoch kept to resume from, no metrics yet
        assert (out / f"{key}-s0" / "last.pt").is_file() and not (out / f"{key}-s0" / "metrics.json").exists()


# A page that records the GPU its kernel was given and when it ran (the suite's parameters are injected; `out` is
# the only one it reads).
DEVICE_PAGE = myst_page("""```{code-cell}
:tags: [parameters]
out = None
```

```{code-cell}
import json, os, pathlib, time
started = time.time()
time.sleep(2.0)
pathlib.Path(out).mkdir(parents=True, exist_ok=True)
record = {"cuda": os.environ.get("CUDA_VISIBLE_DEVICES"), "start": started, "end": time.time()}
pathlib.Path(out, "device.json").write_text(json.dumps(record))
```
""")


def test_parallel_kernels_each_get_their_own_gpu_and_suite_json_says_which(tmp_path, monkeypatch):
    """--jobs 2 with two visible devices: the two kernels running at once see different CUDA_VISIBLE_DEVICES; a
    third run takes the GPU freed first; this process's own environment is left alone."""
    from node_transfer.suites import notebooks

    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "experiment.md").write_text(DEVICE_PAGE)
    monkeypatch.setattr(notebooks, "book_dir", lambda: tmp_path / "book")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    tasks = [Task(key, SuiteRun(key, {}), 0, ExperimentConfig(out=str(tmp_path / key))) for key in ("a", "b", "c")]
    meta = {"suite": "fake", "seconds": 0.0, "wall_seconds": 0.0, "rebuilt": []}
    Scheduler(tmp_path, meta, TWO_KERNELS, devices=["0", "1"]).run(tasks)
    runs = {key: json.loads((tmp_path / key / "device.json").read_text()) for key in ("a", "b", "c")}
    assert {runs["a"]["cuda"], runs["b"]["cuda"]} == {"0", "1"}
    for first, second in (("a", "b"), ("a", "c"), ("b", "c")):
        overlap = runs[first]["start"] < runs[second]["end"] and runs[second]["start"] < runs[first]["end"]
        assert not overlap or runs[first]["cuda"] != runs[second]["cuda"]
    suite = json.loads((tmp_path / "suite.json").read_text())
    assert suite["devices"] == ["0", "1"] and suite["placement"] == {key: runs[key]["cuda"] for key in runs}
    assert "CUDA_VISIBLE_DEVICES" not in os.environ


def test_on_a_machine_without_gpus_the_kernels_get_no_device(tmp_path, monkeypatch):
    from node_transfer.suites import notebooks

    given = []
    monkeypatch.setattr(notebooks, "execute_page", lambda *args, env=None, **kwargs: given.append(env))
    meta = {"suite": "fake", "seconds": 0.0, "wall_seconds": 0.0, "rebuilt": []}
    Scheduler(tmp_path, meta, TWO_KERNELS, devices=[]).run(
        fake_tasks(tmp_path, {"a": (0, []), "b": (0, [])}))
    assert given == [None, None] and "placement" not in meta and "devices" not in meta


@pytest.mark.parametrize("setting, devices", [
    ("2,3", ["2", "3"]), (" 1 , 0", ["1", "0"]), ("", []), ("-1", []), ("1,-1,2", ["1"]),
    ("GPU-8e6a,GPU-1f2b", ["GPU-8e6a", "GPU-1f2b"]), ("0,", ["0"]),
])
def test_a_cuda_visible_devices_the_user_set_is_honoured(setting, devices):
    assert visible_devices({"CUDA_VISIBLE_DEVICES": setting}) == devices


def test_without_cuda_visible_devices_every_gpu_torch_sees_is_used(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    assert visible_devices({}) == ["0", "1", "2"]
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert visible_devices({}) == []
