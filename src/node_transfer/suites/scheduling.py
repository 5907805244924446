"""Running a suite's configurations, several at once where asked: each run after the run it continues from.

`Scheduler` executes `Task`s (one configuration and seed, or the rebuild of a finished run's checkpoints) in a
pool of threads, each driving its own papermill kernel, and keeps `suite.json`'s timings. On a machine with
GPUs each kernel is given one of them (`CUDA_VISIBLE_DEVICES`: the least busy of the visible ones, in order), and
`suite.json` records which run went where.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

from ..core.config import ExperimentConfig
from ..core.errors import ConfigError, Interrupted, SuiteRunError, TrainingError
from ..core.rundir import LAST, METRICS, read_json
from ..core.suitedir import notebook_name, run_dir_name, write_suite_meta
from ..run.rebuild import rebuild_failed, verify_rebuild
from .notebooks import kernel_environment, stop_kernels_on_signal
from .options import SuiteOptions
from .registry import SuiteRun


@dataclass
class Task:
    """One run to execute: a configuration and seed, or the rebuild of a finished run's checkpoints."""

    key: str  # LABEL-sSEED
    run: SuiteRun
    seed: int
    config: ExperimentConfig
    after: set[str] = field(default_factory=set)  # keys of tasks that must finish first
    rebuild_of: Path | None = None


class Scheduler:
    """Runs tasks `jobs` at a time, each once the tasks it depends on have finished; stops at the first failure
    (after the runs already going have finished), which is then raised. With `keep_going` a failure stops only the
    runs that continue from the failed one; the others go on, and a `SuiteRunError` listing what failed and what
    never started is raised at the end.

    SIGTERM or SIGINT to the suite reaches its runs: each papermill kernel gets SIGTERM (a second signal: SIGKILL),
    keeps its last complete epoch, no new run starts, and `Interrupted` is raised once they have stopped."""

    def __init__(self, out: Path, meta: dict[str, Any], options: SuiteOptions,
                 devices: list[str] | None = None) -> None:
        self.out, self.meta, self.options, self.jobs = out, meta, options, options.jobs or 1
        self.lock = threading.Lock()
        self.signals: list[int] = []  # signals received while running
        self.failures: list[tuple[Task, BaseException]] = []  # failed runs, in the order they failed
        # the GPUs the kernels share out (None: those visible here); in-process runs keep this process's own
        self.devices = (visible_devices() if devices is None else list(devices)) if options.use_papermill else []
        self.busy = dict.fromkeys(self.devices, 0)

    def run(self, tasks: list[Task]) -> None:
        pending, done, total = list(tasks), set(), len(tasks)
        started = time.perf_counter()
        if self.devices:
            self.meta["devices"] = self.devices
        try:
            with kernel_environment(self.jobs), self._signals_stop_kernels(), \
                    ThreadPoolExecutor(max_workers=self.jobs) as pool:
                running: dict[Future, Task] = {}
                while pending or running:
                    ready = [t for t in pending if not t.after - done] if self._may_start() else []
                    for task in ready[: self.jobs - len(running)]:
                        pending.remove(task)
                        index = total - len(pending)
                        running[pool.submit(self._execute, task, index, total)] = task
                    if not running:
                        break
                    finished, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in finished:
                        task = running.pop(future)
                        if future.exception() is None:
                            done.add(task.key)
                        else:
                            self._failed(task, future.exception())
        finally:
            self._book_wall_time(started)
        self._raise_outcome(pending)

    def _book_wall_time(self, started: float) -> None:
        """Add the suite's own wall time since `started` to suite.json (however its loop ended)."""
        with self.lock:
            self.meta["wall_seconds"] += time.perf_counter() - started
            self._write_meta()

    def _may_start(self) -> bool:
        """Whether new runs may start: no signal received, and no run failed (or `keep_going`)."""
        return not self.signals and (self.options.keep_going or not self.failures)

    def _failed(self, task: Task, failure: BaseException) -> None:
        self.failures.append((task, failure))
        if self.options.keep_going and not self.signals:
            self._say(f"{task.key} failed ({one_line(failure)}); the runs that do not continue from it go on "
                      "(--keep-going)")

    def _raise_outcome(self, pending: list[Task]) -> None:
        """`Interrupted` if a signal stopped the suite, else the first failure, or with `keep_going` every failure
        and the runs that never started (because they continue from a failed run) in one `SuiteRunError`."""
        if self.signals:
            raise Interrupted(self.signals[0], f"interrupted by {signal.Signals(self.signals[0]).name}: the runs "
                              "stopped, each keeps its last complete epoch; continue the suite with --resume")
        if not self.failures:
            return
        if not self.options.keep_going:
            raise self.failures[0][1]
        failed = "; ".join(f"{task.key} ({one_line(failure)})" for task, failure in self.failures)
        skipped = f"; not started, as they continue from a failed run: {', '.join(t.key for t in pending)}" \
            if pending else ""
        raise SuiteRunError(f"{len(self.failures)} run{'s' * (len(self.failures) > 1)} failed: {failed}{skipped}; "
                            "every other run finished; fix the causes and continue with --resume") \
            from self.failures[0][1]

    @contextlib.contextmanager
    def _signals_stop_kernels(self) -> Iterator[None]:
        """While the suite runs, SIGTERM/SIGINT stop its kernels instead of orphaning them (see `stop_kernels_on`)."""
        if not self.options.use_papermill:
            yield  # in-process runs: the default behaviour (the process ends; last.pt stays)
            return

        def stopping(signum: int, how: signal.Signals) -> None:
            self.signals.append(signum)
            self._say(f"{signal.Signals(signum).name}: stopping the running runs ({how.name}); no new run starts")

        with stop_kernels_on_signal(stopping):
            yield

    def _write_meta(self) -> None:
        write_suite_meta(self.meta, self.out)

    def _announce(self, task: Task, index: int, total: int, device: str | None) -> None:
        what = f"rebuild of {task.rebuild_of.name} (its checkpoints)" if task.rebuild_of else task.run.label
        where = f" on GPU {device}" if device is not None else ""
        self._say(f"[{index}/{total}] {self.meta['suite']}: {what} seed {task.seed}{where}")

    def _execute(self, task: Task, index: int, total: int) -> None:
        device = self._claim_device(task.key)
        self._announce(task, index, total, device)
        started = time.perf_counter()
        stream = Prefixed(sys.stderr, f"[{task.key}] ") if self.jobs > 1 else sys.stderr
        try:
            execute_task(task, self.out, self.options.use_papermill, self.options.progress, stream,
                         {"CUDA_VISIBLE_DEVICES": device} if device is not None else None)
        finally:
            self._release_device(device)
        self._finished(task, time.perf_counter() - started)

    def _finished(self, task: Task, seconds: float) -> None:
        """Add a finished run's time to suite.json (and a rebuild to its list)."""
        if task.rebuild_of is not None:
            self._say(f"{task.rebuild_of.name}: the rebuild reproduced every committed number; its checkpoints "
                      "are in place")
        with self.lock:
            self.meta["seconds"] += seconds
            if task.rebuild_of is not None:
                self.meta["rebuilt"].append({"run": task.rebuild_of.name, "seconds": seconds})
            self._write_meta()

    def _claim_device(self, key: str) -> str | None:
        """The GPU for a run's kernel: the visible device running the fewest runs (the first such in order), so
        that with jobs <= GPUs no two running kernels share one; recorded in suite.json's `placement`."""
        if not self.devices:
            return None
        with self.lock:
            device = min(self.devices, key=lambda d: (self.busy[d], self.devices.index(d)))
            self.busy[device] += 1
            self.meta.setdefault("placement", {})[key] = device
            self._write_meta()
        return device

    def _release_device(self, device: str | None) -> None:
        if device is not None:
            with self.lock:
                self.busy[device] -= 1

    def _say(self, text: str) -> None:
        with self.lock:
            print(text, file=sys.stderr, flush=True)


def one_line(failure: BaseException, limit: int = 300) -> str:
    """A failure as one line for a summary: its type and the first line of its message, at most `limit` chars."""
    first = next((line.strip() for line in str(failure).splitlines() if line.strip()), "")
    return f"{type(failure).__name__}: {first}"[:limit] if first else type(failure).__name__


class Prefixed:
    """A text stream that writes each complete line to `stream` behind `prefix` (parallel runs' progress)."""

    def __init__(self, stream: TextIO, prefix: str) -> None:
        self.stream, self.prefix, self.partial = stream, prefix, ""

    def write(self, text: str) -> int:
        lines = (self.partial + text.replace("\r", "\n")).split("\n")
        self.partial = lines.pop()
        for line in lines:
            if line.strip():
                self.stream.write(f"{self.prefix}{line}\n")
        self.stream.flush()
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


def execute_task(task: Task, out: Path, use_papermill: bool = True, progress: bool = True,
                 stream: TextIO | None = None, env: Mapping[str, str] | None = None) -> None:
    """Execute one task wherever it runs (a thread of this process, a submitit job): the experiment page through
    papermill (`env` added to its kernel's environment), or in process; a killed run resumes from its last.pt, one
    with no checkpoint starts afresh, a continued run stops at its base's validation accuracy, a rebuild is
    checked against the committed run."""
    config, run_dir = task.config, Path(task.config.out)
    if run_dir.exists():
        if (run_dir / LAST).is_file():
            config = replace(config, resume=True)
        else:
            set_aside(run_dir)
    if task.run.target_from:
        config = replace(config, target_val_acc=reference_val_acc(out / run_dir_name(task.run.target_from, task.seed)))
    notebook = out / notebook_name(task.key)
    if use_papermill:
        from papermill.exceptions import PapermillExecutionError

        from .notebooks import book_dir, execute_page

        try:
            execute_page(book_dir() / "experiment.md", notebook, parameters=config.to_dict(), cwd=Path.cwd(),
                         stderr=(stream or sys.stderr) if progress else None, env=env)
        except PapermillExecutionError as exc:
            if task.rebuild_of is not None and exc.ename == "TrainingError":
                raise rebuild_failed(task.rebuild_of, run_dir, exc.evalue) from None
            raise SuiteRunError(f"{task.key} failed ({exc.ename}: {exc.evalue}); the executed notebook is "
                                f"{notebook}; fix the cause and continue with --resume") from None
    else:
        from ..run.experiment import run_experiment

        try:
            run_experiment(config, progress=progress)
        except TrainingError as exc:
            if task.rebuild_of is None:
                raise
            raise rebuild_failed(task.rebuild_of, run_dir, str(exc)) from None
    if task.rebuild_of is not None:
        verify_rebuild(task.rebuild_of, run_dir)
        notebook.unlink(missing_ok=True)


def visible_devices(environ: Mapping[str, str] = os.environ) -> list[str]:
    """The GPUs a suite's kernels share out: the entries of a CUDA_VISIBLE_DEVICES the user set (indices or UUIDs;
    as CUDA does, none after an invalid one such as -1), else every device torch sees (none on a CPU machine)."""
    setting = environ.get("CUDA_VISIBLE_DEVICES")
    if setting is not None:
        devices = []
        for entry in (part.strip() for part in setting.split(",")):
            if not entry or entry.startswith("-"):
                break
            devices.append(entry)
        return devices
    import torch

    return [str(index) for index in range(torch.cuda.device_count())]


def reference_val_acc(run_dir: Path) -> float:
    """The validation accuracy a finished run reached (its selected epoch's): the target of runs continued
    from it."""
    path = run_dir / METRICS
    if not path.is_file():
        raise ConfigError("target_from", str(run_dir), f"a finished run (with {METRICS}) of the same seed, "
                          "run before the runs that stop at its validation accuracy")
    return float(read_json(path, "run metrics")["val_acc"])


def set_aside(run_dir: Path) -> None:
    """Rename an unfinished run directory with no checkpoint so the run can start again."""
    index = 1
    while run_dir.with_name(f"{run_dir.name}.partial-{index}").exists():
        index += 1
    run_dir.rename(run_dir.with_name(f"{run_dir.name}.partial-{index}"))
