"""Running a suite: plan its configurations, execute each (through papermill or in process), resume an
interrupted suite, and collect the finished runs into `runs.csv`.

`node-transfer suite NAME --profile cpu|gpu --seeds K --out DIR` executes `book/experiment.md` once per
configuration and seed with papermill, keeps each executed notebook beside its run directory, and writes a
tidy `runs.csv` (one row per run: parameters, metrics and stability statistics).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from .config import ExperimentConfig
from .errors import ConfigError, DataError, SuiteRunError
from .rundir import read_json
from .statistics import stability_statistics
from .suites import SuiteRun, get_suite


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
         labels: tuple[str, ...] | None = None) -> list[tuple[SuiteRun, int, ExperimentConfig]]:
    """Every (run, seed, validated config) of a suite (only `labels`, if given), checked before anything runs."""
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
            params = {**run.params, **(overrides or {}), "seed": seed, "out": str(out / f"{run.label}-s{seed}")}
            if run.init_from:
                params["init_from"] = str(out / f"{run.init_from}-s{seed}")
            config = ExperimentConfig.from_dict(params)
            config.validate(check_paths=False)
            config.validate_inputs()
            planned.append((run, seed, config))
    return planned


def run_suite(name: str, profile: str = "cpu", seeds: int = 1, out: str | Path | None = None,
              overrides: dict[str, Any] | None = None, use_papermill: bool = True,
              progress: bool = True, resume: bool = False, labels: tuple[str, ...] | None = None) -> Path:
    """Run a suite and write `runs.csv`; returns the suite directory.

    `labels` runs only those configurations now (others can follow with `resume=True`); `suite.json` always
    lists the whole suite, and `runs.csv` every finished run.
    With `resume=True` an interrupted suite in `out` (same suite, profile, seeds, overrides) goes on:
    finished runs are kept (so configurations added to the suite's definition since are the only ones
    run), a run killed mid-way continues from its `last.pt`, one with no checkpoint starts again in a fresh
    directory (the partial one is set aside as `NAME.partial-N`, never deleted).
    """
    out = Path(out) if out else Path("runs") / f"suite-{name}-{profile}-{datetime.now():%Y%m%d-%H%M%S}"
    everything = plan(name, profile, seeds, out, overrides)
    planned = plan(name, profile, seeds, out, overrides, labels) if labels is not None else everything
    meta = {"suite": name, "profile": profile, "seeds": seeds, "overrides": overrides or {},
            "runs": [{"label": r.label, "seed": s, "group": r.group} for r, s, _ in everything]}
    if resume:
        _check_resumable(out, meta)
    elif out.exists():
        raise ConfigError("out", str(out), "a suite directory that does not exist yet "
                          "(or pass resume=True / --resume to continue the suite in it)")
    out.mkdir(parents=True, exist_ok=True)
    previous = read_json(out / "suite.json", "suite description") if resume else {}
    meta["seconds"] = float(previous.get("seconds", 0.0))  # wall time of the runs, kept across resumes
    (out / "suite.json").write_text(json.dumps(meta, indent=2) + "\n")
    for index, (run, seed, config) in enumerate(planned, 1):
        run_dir = Path(config.out)
        if resume and (run_dir / "metrics.json").is_file():
            print(f"[{index}/{len(planned)}] {name}: {run.label} seed {seed} done, kept", file=sys.stderr)
            continue
        if resume and run_dir.exists():
            if (run_dir / "last.pt").is_file():
                config = replace(config, resume=True)
            else:
                _set_aside(run_dir)
        if run.target_from:
            config = replace(config, target_val_acc=reference_val_acc(out / f"{run.target_from}-s{seed}"))
        print(f"[{index}/{len(planned)}] {name}: {run.label} seed {seed}", file=sys.stderr, flush=True)
        started = time.perf_counter()
        if use_papermill:
            from papermill.exceptions import PapermillExecutionError

            from .notebooks import book_dir, execute_page

            notebook = out / f"{run.label}-s{seed}.ipynb"
            try:
                execute_page(book_dir() / "experiment.md", notebook, parameters=config.to_dict(), cwd=Path.cwd(),
                             progress=progress)
            except PapermillExecutionError as exc:
                raise SuiteRunError(f"{run.label} seed {seed} failed ({exc.ename}: {exc.evalue}); the executed "
                                    f"notebook is {notebook}; fix the cause and continue with --resume") from None
        else:
            from .experiment import run_experiment

            run_experiment(config, progress=progress)
        meta["seconds"] += time.perf_counter() - started
        (out / "suite.json").write_text(json.dumps(meta, indent=2) + "\n")
    table = collect_runs(out)
    table.to_csv(out / "runs.csv", index=False)
    return out


def reference_val_acc(run_dir: Path) -> float:
    """The validation accuracy a finished run reached (its selected epoch's): the target of runs continued
    from it."""
    path = run_dir / "metrics.json"
    if not path.is_file():
        raise ConfigError("target_from", str(run_dir), "a finished run (with metrics.json) of the same seed, "
                          "run before the runs that stop at its validation accuracy")
    return float(json.loads(path.read_text())["val_acc"])


def _check_resumable(out: Path, meta: dict[str, Any]) -> None:
    """Refuse to resume into a directory that holds a different suite (it would mix results)."""
    path = out / "suite.json"
    if not path.is_file():
        raise ConfigError("resume", True, f"False: {str(out)!r} holds no suite.json to resume from")
    previous = read_json(path, "suite description")
    for key in ("suite", "profile", "seeds", "overrides"):
        if previous.get(key) != meta[key]:
            raise ConfigError(key, meta[key], f"{previous.get(key)!r}, as the suite being resumed in {str(out)!r}")


def _set_aside(run_dir: Path) -> None:
    """Rename an unfinished run directory with no checkpoint so the run can start again."""
    index = 1
    while run_dir.with_name(f"{run_dir.name}.partial-{index}").exists():
        index += 1
    run_dir.rename(run_dir.with_name(f"{run_dir.name}.partial-{index}"))


def collect_runs(suite_dir: Path) -> pd.DataFrame:
    """One row per run directory in a suite: label, seed, group, every parameter, metrics, stability."""
    meta = read_json(suite_dir / "suite.json", "suite description")
    rows = []
    for entry in meta.get("runs", []):
        run_dir = suite_dir / f"{entry['label']}-s{entry['seed']}"
        if not (run_dir / "metrics.json").is_file():
            continue
        config = read_json(run_dir / "config.json", "run configuration")
        params = {k: config[k] for k in ExperimentConfig.field_names() if k in config}
        metrics = read_json(run_dir / "metrics.json", "run metrics")
        try:
            history = pd.read_csv(run_dir / "history.csv")
        except (OSError, ValueError) as exc:
            raise DataError(f"{str(run_dir / 'history.csv')!r} is missing or unreadable ({exc})") from None
        rows.append({"label": entry["label"], "seed": entry["seed"], "group": entry["group"],
                     "run_dir": run_dir.name, **params, **metrics, **stability_statistics(history)})
    return pd.DataFrame(rows)
