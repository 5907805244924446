"""The generated parts of the two READMEs, which cannot glue: the answer at the top of `README.md` and its list of
suites (from the suite registry), the parameters cell of `book/experiment.md` (from the config), and in
`results/README.md` the command that regenerates each committed suite, the
suites' progress and their machines, each written between markers by `node-transfer readme` from the committed
results (the same facts the book glues). `tests/test_findings.py` fails when one differs from what the committed
results give.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from ..core.atomic import atomic_write_text
from ..core.config_groups import parameters_source
from ..core.rundir import machine_of
from ..core.suitedir import SUITE_META, read_suite_meta
from ..pages.answer import readme_answer
from ..suites.registry import SUITES
from ..suites.results import load_suite, suite_compute, suite_progress

ANSWER = "answer"
PROGRESS = "progress"
MACHINES = "machines"
SUITE_LIST = "suites"
PARAMETERS = "parameters"
COMMANDS = "commands"
#: The profile whose configurations the README's suite list names (the one the committed results use most).
LISTED_PROFILE = "fmnist"
NOT_RECORDED = "not recorded"


def markers(name: str) -> tuple[str, str]:
    """The comment lines that open and close a generated section (in a code cell: Python comments)."""
    if name == PARAMETERS:
        return (f"# {name}: written by `node-transfer readme` from ExperimentConfig; do not edit", f"# /{name}")
    return (f"<!-- {name}: written by `node-transfer readme` from the committed results; do not edit -->",
            f"<!-- /{name} -->")


def progress_markdown(results: str | Path) -> str:
    """Per committed suite: its configurations grouped by seeds finished against planned, and its compute."""
    results = Path(results)
    rows = []
    for suite_dir in sorted(path.parent for path in results.glob(f"*/{SUITE_META}")):
        progress = suite_progress(suite_dir)
        groups = progress.groupby(["seeds finished", "seeds planned"], sort=False)["configuration"].apply(list)
        finished = "; ".join(f"{', '.join(labels)}: {done} of {planned}"
                             for (done, planned), labels in sorted(groups.items(), key=lambda item: -item[0][0]))
        compute = suite_compute(suite_dir)
        rows.append({"suite": suite_dir.name, "seeds finished of planned, by configuration": finished,
                     "run hours": f"{compute['run hours']:.1f}"})
    return pd.DataFrame(rows).to_markdown(index=False)


def suites_markdown(profile: str = LISTED_PROFILE) -> str:
    """Every suite of the registry: what it runs (its docstring, as `suite --list` prints it) and its configurations."""
    rows = [{"suite": f"`{name}`", "what it runs": suite.description,
             f"configurations ({profile} profile)": ", ".join(f"`{run.label}`" for run in suite(profile))}
            for name, suite in SUITES.items()]
    return pd.DataFrame(rows).to_markdown(index=False)


def regenerate_command(suite_dir: Path) -> str:
    """The command that runs a committed suite again, or finishes it (`--resume` keeps what is done), from its
    `suite.json`: suite, profile, seeds and `--set` overrides."""
    meta = read_suite_meta(suite_dir)
    overrides = "".join(f" --set {key}={value}" for key, value in sorted(meta.get("overrides", {}).items()))
    return (f"node-transfer suite {meta['suite']} --profile {meta['profile']} --seeds {meta['seeds']}{overrides} "
            f"--out results/{suite_dir.name} --resume --jobs 2 --keep-going")


def commands_markdown(results: str | Path) -> str:
    """One command per committed suite directory, in a shell block."""
    suite_dirs = sorted(path.parent for path in Path(results).glob(f"*/{SUITE_META}"))
    return "```bash\n" + "\n".join(regenerate_command(suite_dir) for suite_dir in suite_dirs) + "\n```"


def seeds_by_machine(suite_dir: Path) -> dict[str, list[int]]:
    """{machine: seeds} of a suite's finished runs: a seed's machine is the CPU model and capability its runs
    recorded ("not recorded" where none did; two machines joined by " + " where its runs disagree)."""
    runs, _ = load_suite(suite_dir)
    machines: dict[str, list[int]] = {}
    for seed, group in runs.groupby("seed") if len(runs) else ():
        made_on = sorted({machine_of(suite_dir / run_dir) or NOT_RECORDED for run_dir in group["run_dir"]})
        recorded = [m for m in made_on if m != NOT_RECORDED]
        key = " + ".join(recorded) + (f" ({NOT_RECORDED} for some runs)" if NOT_RECORDED in made_on else "") \
            if recorded else NOT_RECORDED
        machines.setdefault(key, []).append(int(seed))
    return machines


def machines_markdown(results: str | Path) -> str:
    """Per committed suite, which machine (CPU model and torch's capability, as the runs recorded) made which
    seeds: a seed's runs are paired with each other, so one machine per seed."""
    rows = []
    for suite_dir in sorted(path.parent for path in Path(results).glob(f"*/{SUITE_META}")):
        for machine, seeds in seeds_by_machine(suite_dir).items():
            rows.append({"suite": suite_dir.name, "made on": machine, "seeds": ", ".join(map(str, seeds))})
    return pd.DataFrame(rows).to_markdown(index=False)


def sections(root: str | Path) -> dict[Path, dict[str, str]]:
    """What each README's generated sections should hold: {path: {marker name: text}}."""
    root = Path(root)
    return {root / "README.md": {ANSWER: readme_answer(root / "results"), SUITE_LIST: suites_markdown()},
            root / "book" / "experiment.md": {PARAMETERS: parameters_source()},
            root / "results" / "README.md": {COMMANDS: commands_markdown(root / "results"),
                                             PROGRESS: progress_markdown(root / "results"),
                                             MACHINES: machines_markdown(root / "results")}}


def section_text(text: str, name: str) -> str | None:
    """The body of a generated section in a README's text, or None when its markers are missing."""
    begin, end = markers(name)
    found = re.search(re.escape(begin) + r"\n(.*?)\n" + re.escape(end), text, flags=re.S)
    return found.group(1) if found else None


def write_readmes(root: str | Path, check: bool = False) -> list[str]:
    """Write every generated section (or, with `check`, only report those that differ); returns what differs."""
    stale = []
    for path, wanted in sections(root).items():
        text = path.read_text()
        for name, body in wanted.items():
            current = section_text(text, name)
            if current is None:
                raise ValueError(f"{path} has no {name} section: add the lines {markers(name)} where it goes")
            if current != body:
                stale.append(f"{path}: {name}")
                begin, end = markers(name)
                text = text.replace(f"{begin}\n{current}\n{end}", f"{begin}\n{body}\n{end}")
        if not check:
            atomic_write_text(text, path)
    return stale
