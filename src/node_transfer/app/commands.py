"""The handlers of every `node-transfer` subcommand, each taking plain arguments (`cli.py` only parses).

Each handler's parameters are named as the parser's destinations, so `cli.main` passes them through by name;
each prints what the command shows and returns its exit status.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from ..analysis.reporting import paper_tables, write_report, write_run_report
from ..core.config import ExperimentConfig
from ..core.errors import ConfigError, DataError
from ..core.rerun import environment_differences, papermill_parameters, read_run_config
from ..core.rundir import METRICS, saved_config
from ..core.suitedir import RUNS_ROOT, SUITE_META, TABLES, read_runs_table
from ..run.experiment import library_versions, run_experiment
from ..run.predict import format_prediction, image_paths, load_predictor, predict, write_csv
from ..suites.notebooks import book_dir, book_scripts, convert_book, strip_images
from ..suites.options import SlurmOptions, SuiteOptions
from ..suites.profiles import CPU_BASE
from ..suites.registry import PAPER_MODELS, SUITES
from ..suites.runner import parse_overrides, run_suite
from .readmes import write_readmes


def config_for_run(options: dict[str, Any], config_file: str | None = None) -> ExperimentConfig:
    """The options given; with resume, the run's saved configuration (last.pt, else config.json) overridden
    by those given; with `config_file`, a recorded run's options (a new `out`, or none) overridden by those given."""
    if config_file is not None:
        if options.get("resume"):
            raise ConfigError("resume", True, "False with --config: a recorded configuration runs again in a new "
                              "directory; continue a run with --out RUN_DIR --resume alone")
        recorded, _ = read_run_config(config_file)
        return ExperimentConfig.from_dict({**recorded, **options})
    if options.get("resume") and options.get("out"):
        stored = saved_config(Path(options["out"]))
        options = {**{k: stored[k] for k in ExperimentConfig.field_names() if k in stored}, **options}
    return ExperimentConfig.from_dict(options)


def run_command(options: dict[str, Any], quiet: bool = False, config_file: str | None = None,
                write_params: str | None = None) -> int:
    """`node-transfer run`: one experiment from its config options (and a recorded run's, with `config_file`);
    prints its run directory last. With `write_params`, writes papermill's parameters file instead of running."""
    config = config_for_run(options, config_file)
    if config_file is not None:
        note_rerun(config_file, config, options, validate=write_params is None)
    if write_params is not None:
        Path(write_params).write_text(papermill_parameters(config))
        print(write_params)
        return 0
    run_dir = run_experiment(config, progress=not quiet)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, the run directory is printed once
        print(run_dir)
    return 0


def note_rerun(config_file: str, config: ExperimentConfig, given: dict[str, Any], validate: bool = True) -> None:
    """Check a re-run's values (a bad one the file recorded is named as such, with the option that overrides it)
    and say on stderr where this machine differs from the recorded run's (its numbers may then differ)."""
    options, recorded = read_run_config(config_file)
    try:
        if validate:
            config.validate()
    except ConfigError as exc:
        if exc.name in given or exc.name not in options:
            raise
        option = "--" + exc.name.replace("_", "-")
        raise ConfigError(exc.name, exc.value, f"{exc.valid} (the value {config_file} records; give {option} "
                          "to override it)") from None
    import torch

    device_type = "cuda" if config.device != "cpu" and torch.cuda.is_available() else "cpu"
    differences = environment_differences(recorded, library_versions(), torch.get_num_threads(), device_type)
    if differences and int(os.environ.get("RANK", "0")) == 0:
        print(f"node-transfer: note: this machine differs from the run {config_file} records ({'; '.join(differences)})"
              ": its numbers may differ in their last digits", file=sys.stderr)


def suite_command(name: str | None, profile: str = "cpu", seeds: int = 1, out: str | None = None,
                  list_suites: bool = False, resume: bool = False, overrides: list[str] | None = None,
                  only: list[str] | None = None, only_seeds: list[int] | None = None, jobs: int | None = None,
                  in_process: bool = False, executor: str = "threads", slurm_partition: str | None = None,
                  slurm_gpus_per_job: int = 1, slurm_cpus_per_job: int | None = None, slurm_time: int | None = None,
                  slurm_setup: list[str] | None = None, slurm_option: list[str] | None = None,
                  keep_going: bool = False) -> int:
    """`node-transfer suite`: list the suites, or run one (papermill or in process, on threads or submitit)."""
    if list_suites or not name:
        for suite_name, suite in SUITES.items():
            print(f"{suite_name}: {suite.build.__doc__.strip()}")
            for run in suite(profile):
                print(f"    {run.label:18s} " + ", ".join(f"{k}={v}" for k, v in sorted(run.params.items())
                                                          if k not in CPU_BASE or k == "epochs"))
        return 0
    slurm = slurm_options(slurm_partition, slurm_gpus_per_job, slurm_cpus_per_job, slurm_time, slurm_setup or [],
                          slurm_option or [])
    options = SuiteOptions(use_papermill=not in_process, jobs=jobs, executor=executor, slurm=slurm,
                           keep_going=keep_going)
    out = run_suite(name, profile, seeds, out, parse_overrides(overrides or []), resume=resume,
                    labels=tuple(only) if only else None, only_seeds=tuple(only_seeds) if only_seeds else None,
                    options=options)
    print(out)
    return 0


def slurm_options(slurm_partition: str | None = None, slurm_gpus_per_job: int = 1,
                  slurm_cpus_per_job: int | None = None, slurm_time: int | None = None,
                  slurm_setup: list[str] | None = None, slurm_option: list[str] | None = None) -> SlurmOptions:
    """The --slurm-* options; each --slurm-option NAME=VALUE is passed to sbatch as --NAME=VALUE."""
    extra = {}
    for item in slurm_option or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError("slurm_option", item, "NAME=VALUE, e.g. account=myproject")
        extra[name.strip().removeprefix("--")] = value
    for name, value in (("slurm_gpus_per_job", slurm_gpus_per_job), ("slurm_cpus_per_job", slurm_cpus_per_job),
                        ("slurm_time", slurm_time)):
        if value is not None and value < (0 if name == "slurm_gpus_per_job" else 1):
            raise ConfigError(name, value, "a positive integer" + (" or 0" if name == "slurm_gpus_per_job" else ""))
    return SlurmOptions(partition=slurm_partition, gpus_per_job=slurm_gpus_per_job, cpus_per_job=slurm_cpus_per_job,
                        time_min=slurm_time, setup=list(slurm_setup or []), extra=extra)


def demo_command(out: str | None = None, seeds: int = 1) -> int:
    """`make demo`: the paper's three models at small scale, offline, and its Tables I and II."""
    out = Path(out) if out else RUNS_ROOT / f"demo-{datetime.now():%Y%m%d-%H%M%S}"
    started = time.perf_counter()
    run_suite("paper", "cpu", seeds, out, labels=PAPER_MODELS, options=SuiteOptions(use_papermill=False))
    tables = paper_tables(read_runs_table(out))
    for title, table in tables.items():
        print(f"\n{title}\n{table.to_markdown(index=False)}")
    print(f"\ndemo wall time: {time.perf_counter() - started:.0f} s")
    print(out)
    return 0


def report_command(directory: str, out: str | None = None) -> int:
    """`node-transfer report`: the tables and figures of a suite directory, or of one run directory."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"{str(directory)!r} is not a suite or run directory")
    single = not (directory / SUITE_META).exists() and (directory / METRICS).exists()
    out = write_run_report(directory, out) if single else write_report(directory, out)
    print((out / TABLES).read_text())
    print(out)
    return 0


def predict_command(run_dir: str, images: list[str], top: int = 3, csv_file: str | None = None,
                    device: str = "auto", batch_size: int = 64) -> int:
    """`node-transfer predict`: per image its top classes, as lines or CSV (`csv_file` "-": CSV on stdout)."""
    paths = image_paths(images)
    predictions = predict(load_predictor(run_dir, device), paths, top, batch_size)
    if csv_file == "-":
        write_csv(predictions, sys.stdout)
    else:
        for prediction in predictions:
            print(format_prediction(prediction))
        if csv_file:
            with open(csv_file, "w", newline="") as handle:
                write_csv(predictions, handle)
    return 0


def readme_command(check: bool = False) -> int:
    """`node-transfer readme`: rewrite (or with `check`, only compare) the README sections made from results."""
    stale = write_readmes(book_dir().parent, check=check)
    for section in stale:
        print(f"{'out of date' if check else 'written'}: {section}")
    return 1 if check and stale else 0


def notebooks_command(out: str | None = None, strip_images_from: list[str] | None = None,
                      scripts: str | None = None) -> int:
    """`node-transfer notebooks`: convert the book's pages to .ipynb (or scripts), or strip images from notebooks."""
    for path in strip_images_from or []:
        print(f"{path}: {strip_images(path)} output(s) removed")
    for path in (convert_book(out) if out else []) + (book_scripts(scripts) if scripts else []):
        print(path)
    return 0
