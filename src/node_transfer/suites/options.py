"""How a suite's runs are carried out, not which runs: `SuiteOptions`, built once by the command handler from the
command line and passed whole to the scheduler of its executor (`scheduling.Scheduler`, `cluster.SubmititScheduler`),
and the SLURM options inside it."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..core.errors import ConfigError

EXECUTORS = ("threads", "local", "slurm")  # threads: this process's thread pool (the default)


@dataclass
class SlurmOptions:
    """What `--executor slurm` asks of the cluster for every job; `time_min` also bounds a local job."""

    partition: str | None = None
    gpus_per_job: int = 1
    cpus_per_job: int | None = None
    time_min: int | None = None
    setup: list[str] = field(default_factory=list)  # shell lines run before each job (module load, venv...)
    extra: dict[str, str] = field(default_factory=dict)  # other sbatch options, e.g. {"account": "x", "qos": "y"}


@dataclass(frozen=True)
class SuiteOptions:
    """How the runs of a suite are executed: each as a papermill page in its own kernel or in this process, with
    progress lines or not, `jobs` at once, on which executor (`EXECUTORS`, SLURM with `slurm`), and whether a failed
    run stops the suite or, with `keep_going`, only the runs that continue from it."""

    use_papermill: bool = True
    progress: bool = True
    jobs: int | None = None  # configurations at once: 1 unless given; on SLURM no limit unless given
    executor: str = "threads"
    slurm: SlurmOptions = field(default_factory=SlurmOptions)
    keep_going: bool = False

    def checked(self) -> SuiteOptions:
        """These options with `jobs` resolved; ConfigError naming the first bad option and its valid values."""
        if self.executor not in EXECUTORS:
            raise ConfigError("executor", self.executor, f"one of {list(EXECUTORS)}")
        if self.executor != "threads" and not self.use_papermill:
            raise ConfigError("executor", self.executor, "'threads' when running in process (--in-process): "
                              "submitit jobs execute the experiment page through papermill")
        jobs = self.jobs
        if jobs is not None and (not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1):
            raise ConfigError("jobs", jobs, "a positive integer (configurations run at once)")
        if jobs is not None and jobs > 1 and not self.use_papermill:
            raise ConfigError("jobs", jobs, "1 when running in process (parallel runs each need their own kernel)")
        return replace(self, jobs=1 if jobs is None and self.executor != "slurm" else jobs)
