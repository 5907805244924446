"""Running a suite: plan its configurations, execute each (through papermill or in process), resume an
interrupted suite, and collect the finished runs into `runs.csv`.

`node-transfer suite NAME --profile cpu|gpu --seeds K --out DIR` executes `book/experiment.md` once per
configuration and seed with papermill, keeps each executed notebook beside its run directory, and writes a
tidy `runs.csv` (one row per run: parameters, metrics and stability statistics).
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from ..analysis.statistics import stability_statistics
from ..core.config import ExperimentConfig
from ..core.errors import ConfigError
from ..core.rundir import CONFIG, DIVERGED, METRICS, lock, machine_of, read_history, read_json, unlock
from ..core.speed import FAST, LEGACY_LOOP
from ..core.suitedir import (
    RUNS_ROOT,
    SUITE_META,
    has_suite_meta,
    read_suite_meta,
    run_dir_name,
    write_runs_table,
    write_suite_meta,
)
from ..run.experiment import cpu_description
from ..run.rebuild import needs_rebuild, rebuild_dir
from .cluster import SubmititScheduler
from .options import SuiteOptions
from .registry import SuiteRun, get_suite
from .scheduling import Scheduler, Task


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """`NAME=VALUE` pairs (VALUE as JSON when it parses, else a string) for every configuration."""
    overrides = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep:
            raise ConfigError("set", item, "NAME=VALUE, e.g. epochs=2")
        try:
            overrides[name] = json.loads(text)
        except json.JSONDecodeError:
            overrides[name] = text
    return overrides


def plan(name: str, profile: str, seeds: int, out: Path, overrides: dict[str, Any] | None = None,
         labels: tuple[str, ...] | None = None,
         speed: dict[int, dict[str, str]] | None = None) -> list[tuple[SuiteRun, int, ExperimentConfig]]:
    """Every (run, seed, validated config) of a suite (only `labels`, if given), checked before anything runs.

    `speed` (per seed: memory_format, data_path, maybe ode_backend; see `suite_speed`) fills in what a run's own
    parameters and `overrides` leave unset."""
    if not isinstance(seeds, int) or seeds < 1:
        raise ConfigError("seeds", seeds, "a positive integer")
    for fixed, instead in (("seed", "--seeds"), ("out", "--out"), ("resume", "--resume"), ("init_from", "the suite")):
        if fixed in (overrides or {}):
            raise ConfigError("set", f"{fixed}={overrides[fixed]}", f"another parameter: {fixed} is set by {instead}")
    runs = get_suite(name, profile)
    if labels is not None:
        unknown = sorted(set(labels) - {run.label for run in runs})
        if unknown:
            raise ConfigError("labels", unknown[0], f"configurations of the {name!r} suite: "
                              f"{[run.label for run in runs]}")
        runs = [run for run in runs if run.label in labels]
    planned = []
    for seed in range(seeds):
        for run in runs:
            params = {**(speed or {}).get(seed, {}), **run.params, **(overrides or {}), "seed": seed,
                      "out": str(out / run_dir_name(run.label, seed))}
            if run.init_from:
                params["init_from"] = str(out / run_dir_name(run.init_from, seed))
            config = ExperimentConfig.from_dict(params)
            config.validate(check_paths=False)
            config.validate_inputs()
            planned.append((run, seed, config))
    return planned


def run_suite(name: str, profile: str = "cpu", seeds: int = 1, out: str | Path | None = None,
              overrides: dict[str, Any] | None = None, resume: bool = False, labels: tuple[str, ...] | None = None,
              only_seeds: tuple[int, ...] | None = None, options: SuiteOptions | None = None) -> Path:
    """Run a suite and write `runs.csv`; returns the suite directory.

    `labels` (and `only_seeds`) run part of the suite now (the rest can follow with `resume=True`); `suite.json`
    always lists the whole suite, and `runs.csv` every finished run. `options` say how the runs are carried out
    (`SuiteOptions`): `jobs` configurations at once (each in its own papermill kernel; default 1, and on SLURM no
    limit), a continued run only after the run it starts from, in this process's thread pool ("threads") or as
    submitit jobs on this machine ("local") or on a SLURM cluster ("slurm"): see `cluster`. A failed run stops the
    suite (once the runs going have finished), or with `keep_going` only the runs that continue from it.
    With `resume=True` an interrupted suite in `out` (same suite, profile, overrides; as many seeds or more,
    which extends it) goes on:
    finished runs are kept (so configurations added to the suite's definition since are the only ones
    run), a run killed mid-way continues from its `last.pt`, one with no checkpoint starts again in a fresh
    directory (the partial one is set aside as `NAME.partial-N`, never deleted). A finished run whose
    checkpoints are missing (committed results on a new machine) is trained again when a run continues from it,
    and its checkpoints are used only if it reproduces the committed numbers (`rebuild`).
    """
    out = Path(out) if out else RUNS_ROOT / f"suite-{name}-{profile}-{datetime.now():%Y%m%d-%H%M%S}"
    options = (options or SuiteOptions()).checked()
    speed = suite_speed(out, resume, seeds)
    everything = plan(name, profile, seeds, out, overrides, speed=speed)
    planned = plan(name, profile, seeds, out, overrides, labels, speed) if labels is not None else everything
    if only_seeds is not None:
        bad = [s for s in only_seeds if not isinstance(s, int) or not 0 <= s < seeds]
        if bad:
            raise ConfigError("only_seeds", bad[0], f"seeds of this suite, 0 to {seeds - 1} (--seeds {seeds})")
        planned = [entry for entry in planned if entry[1] in only_seeds]
    meta = {"suite": name, "profile": profile, "seeds": seeds, "overrides": overrides or {},
            "executor": options.executor,
            "speed": {str(seed): settings for seed, settings in speed.items()},
            "runs": [{"label": r.label, "seed": s, "group": r.group} for r, s, _ in everything]}
    if resume:
        _check_resumable(out, meta)
    elif out.exists():
        raise ConfigError("out", str(out), "a suite directory that does not exist yet "
                          "(or pass resume=True / --resume to continue the suite in it)")
    scheduler = (Scheduler if options.executor == "threads" else SubmititScheduler)(out, meta, options)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    handle = lock(out, "suite")  # two suite processes in one directory would overwrite each other's suite.json
    try:
        _run_planned(name, out, meta, planned, resume, scheduler)
    finally:
        unlock(handle, out)
        if created and not any(out.iterdir()):  # failed before its first file (a full disk): the suite can start again
            out.rmdir()
    return out


def suite_speed(out: Path, resume: bool, seeds: int) -> dict[int, dict[str, str]]:
    """The speed settings of each seed's runs. A seed is the unit whose runs are compared with each other, so it
    keeps one loop: a seed that already has runs in a resumed suite keeps the settings suite.json records for it,
    or, for a suite started before the settings existed, those of its runs (`speed.LEGACY_LOOP`: also torchdiffeq's
    backend, the default before `lean`); a new seed gets the fast ones (`speed.FAST`)."""
    recorded = read_suite_meta(out).get("speed", {}) if resume and has_suite_meta(out) else {}
    speeds = {}
    for seed in range(seeds):
        started = resume and any((run_dir / CONFIG).is_file() for run_dir in out.glob(run_dir_name("*", seed)))
        if str(seed) in recorded:
            speeds[seed] = dict(recorded[str(seed)])
        elif started:
            speeds[seed] = dict(LEGACY_LOOP)
        else:
            speeds[seed] = dict(FAST)
    return speeds


def _run_planned(name: str, out: Path, meta: dict[str, Any], planned: list[tuple[SuiteRun, int, ExperimentConfig]],
                 resume: bool, scheduler: Scheduler) -> None:
    previous = read_suite_meta(out) if resume else {}
    # seconds: the runs' wall times added up; wall_seconds: the suite's own wall time (less with jobs > 1)
    meta["seconds"] = float(previous.get("seconds", 0.0))
    meta["wall_seconds"] = float(previous.get("wall_seconds", previous.get("seconds", 0.0)))
    meta["rebuilt"] = list(previous.get("rebuilt", []))
    meta["placement"] = dict(previous.get("placement", {}))  # run -> the GPU its kernel was given
    write_suite_meta(meta, out)
    tasks = _tasks(name, out, planned, resume)
    check_one_machine_per_seed(out, {task.seed for task in tasks}, cpu_description())
    try:
        if tasks:
            scheduler.run(tasks)
    finally:  # also when a run failed: runs.csv lists every run that has finished
        write_runs_table(collect_runs(out), out)


def _tasks(name: str, out: Path, planned: list[tuple[SuiteRun, int, ExperimentConfig]],
           resume: bool) -> list[Task]:
    """The runs still to do, in plan order, each after the run it continues from (and its rebuild, if any)."""
    tasks: dict[str, Task] = {}
    for index, (run, seed, config) in enumerate(planned, 1):
        run_dir = Path(config.out)
        if resume and (run_dir / METRICS).is_file():
            print(f"[{index}/{len(planned)}] {name}: {run.label} seed {seed} done, kept", file=sys.stderr)
            continue
        if resume and (run_dir / DIVERGED).is_file():  # a result: retrying until it passes would hide it
            print(f"[{index}/{len(planned)}] {name}: {run.label} seed {seed} diverged, kept as a result "
                  f"(delete {run_dir / DIVERGED} to train it again)", file=sys.stderr)
            continue
        task = Task(run_dir_name(run.label, seed), run, seed, config)
        for base in {run.init_from, run.target_from} - {None}:
            base_key = run_dir_name(base, seed)
            base_dir = out / base_key
            if needs_rebuild(base_dir) and run.init_from == base:
                rebuild_key = f"{base_key}.rebuild"
                if rebuild_key not in tasks:
                    tasks[rebuild_key] = _rebuild_task(rebuild_key, run, seed, base_dir)
                task.after.add(rebuild_key)
            task.after.add(base_key)
        tasks[task.key] = task
    for task in tasks.values():
        task.after &= set(tasks)  # bases finished earlier are no dependency
    return list(tasks.values())


def check_one_machine_per_seed(out: Path, seeds: set[int], machine: dict[str, str]) -> None:
    """ConfigError when a seed about to get new runs already has finished runs made on another CPU model.

    Runs of one seed are compared with each other (paired), and another CPU model changes their last digits:
    such a seed is run again whole in a new suite directory, or left out (`only_seeds`). Runs that predate the
    recording of the CPU are not evidence either way; a baseline rebuilt for them must reproduce bit for bit.
    """
    here = f"{machine['cpu']} ({machine['cpu_capability']})"
    meta = read_suite_meta(out) if has_suite_meta(out) else {}
    for entry in meta.get("runs", []):
        run_dir = out / run_dir_name(entry["label"], entry["seed"])
        if entry["seed"] not in seeds or not (run_dir / METRICS).is_file():
            continue
        made_on = machine_of(run_dir)
        if made_on is not None and made_on != here:
            raise ConfigError("only_seeds", entry["seed"], f"seeds whose finished runs were made on this machine's "
                              f"CPU, {here}: {run_dir.name} was made on {made_on}, and one seed's runs are paired "
                              f"with each other (run the seed again whole in a new suite directory, or leave it "
                              f"out)")


def _rebuild_task(key: str, run: SuiteRun, seed: int, base_dir: Path) -> Task:
    """Train a finished run again (from its own config.json) into NAME.rebuild, to recover its checkpoints."""
    config = ExperimentConfig.from_json(base_dir / CONFIG).replace(
        out=str(rebuild_dir(base_dir)), resume=False, reproduce_run=str(base_dir))
    return Task(key, SuiteRun(f"{base_dir.name}.rebuild", {}, group=run.group), seed, config, rebuild_of=base_dir)


def _check_resumable(out: Path, meta: dict[str, Any]) -> None:
    """Refuse to resume into a directory that holds a different suite (it would mix results); more seeds than
    before extend the suite (its runs so far stay valid), fewer would drop finished runs from suite.json."""
    if not has_suite_meta(out):
        raise ConfigError("resume", True, f"False: {str(out)!r} holds no {SUITE_META} to resume from")
    previous = read_suite_meta(out)
    for key in ("suite", "profile", "overrides"):
        if previous.get(key) != meta[key]:
            raise ConfigError(key, meta[key], f"{previous.get(key)!r}, as the suite being resumed in {str(out)!r}")
    if meta["seeds"] < previous.get("seeds", 0):
        raise ConfigError("seeds", meta["seeds"], f"at least {previous.get('seeds')!r}, the seeds of the suite being "
                          f"resumed in {str(out)!r} (more seeds extend it)")


def collect_runs(suite_dir: Path) -> pd.DataFrame:
    """One row per run directory in a suite: label, seed, group, every parameter, metrics, stability."""
    meta = read_suite_meta(suite_dir)
    rows = []
    for entry in meta.get("runs", []):
        run_dir = suite_dir / run_dir_name(entry["label"], entry["seed"])
        if not (run_dir / METRICS).is_file():
            continue
        config = read_json(run_dir / CONFIG, "run configuration")
        params = {k: config[k] for k in ExperimentConfig.field_names() if k in config}
        metrics = read_json(run_dir / METRICS, "run metrics")
        history = read_history(run_dir)
        rows.append({"label": entry["label"], "seed": entry["seed"], "group": entry["group"],
                     "run_dir": run_dir.name, **params, **metrics, **stability_statistics(history)})
    return pd.DataFrame(rows)
