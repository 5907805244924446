"""The handlers of `node-transfer suite`, `demo` and `report`: they run suites and print their tables."""

from __future__ import annotations

import argparse
import time
from datetime import datetime
from pathlib import Path

from .cluster import SlurmOptions
from .errors import ConfigError, DataError
from .reporting import paper_tables, write_report, write_run_report
from .rundir import METRICS
from .suite_runner import parse_overrides, run_suite
from .suitedir import RUNS_ROOT, SUITE_META, TABLES, read_runs_table
from .suites import CPU_BASE, PAPER_MODELS, SUITES


def main_suite(args: argparse.Namespace) -> int:
    if args.list or not args.name:
        for name, builder in SUITES.items():
            print(f"{name}: {builder.__doc__.strip()}")
            for run in builder(args.profile):
                print(f"    {run.label:18s} " + ", ".join(f"{k}={v}" for k, v in sorted(run.params.items())
                                                          if k not in CPU_BASE or k == "epochs"))
        return 0
    out = run_suite(args.name, args.profile, args.seeds, args.out, parse_overrides(args.set),
                    use_papermill=not args.in_process, resume=args.resume,
                    labels=tuple(args.only) if args.only else None, jobs=args.jobs,
                    only_seeds=tuple(args.only_seeds) if args.only_seeds else None, executor=args.executor,
                    slurm=slurm_options(args))
    print(out)
    return 0


def slurm_options(args: argparse.Namespace) -> SlurmOptions:
    """The --slurm-* options; each --slurm-option NAME=VALUE is passed to sbatch as --NAME=VALUE."""
    extra = {}
    for item in args.slurm_option:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError("slurm_option", item, "NAME=VALUE, e.g. account=myproject")
        extra[name.strip().removeprefix("--")] = value
    for name in ("slurm_gpus_per_job", "slurm_cpus_per_job", "slurm_time"):
        value = getattr(args, name)
        if value is not None and value < (0 if name == "slurm_gpus_per_job" else 1):
            raise ConfigError(name, value, "a positive integer" + (" or 0" if name == "slurm_gpus_per_job" else ""))
    return SlurmOptions(partition=args.slurm_partition, gpus_per_job=args.slurm_gpus_per_job,
                        cpus_per_job=args.slurm_cpus_per_job, time_min=args.slurm_time, setup=list(args.slurm_setup),
                        extra=extra)


def main_demo(args: argparse.Namespace) -> int:
    """`make demo`: the paper's three models at small scale, offline, and its Tables I and II."""
    out = Path(args.out) if args.out else RUNS_ROOT / f"demo-{datetime.now():%Y%m%d-%H%M%S}"
    started = time.perf_counter()
    run_suite("paper", "cpu", args.seeds, out, use_papermill=False, labels=PAPER_MODELS)
    tables = paper_tables(read_runs_table(out))
    for title, table in tables.items():
        print(f"\n{title}\n{table.to_markdown(index=False)}")
    print(f"\ndemo wall time: {time.perf_counter() - started:.0f} s")
    print(out)
    return 0


def main_report(args: argparse.Namespace) -> int:
    directory = Path(args.directory)
    if not directory.is_dir():
        raise DataError(f"{str(directory)!r} is not a suite or run directory")
    single = not (directory / SUITE_META).exists() and (directory / METRICS).exists()
    out = write_run_report(directory, args.out) if single else write_report(directory, args.out)
    print((out / TABLES).read_text())
    print(out)
    return 0
