"""A suite's results on disk, as tables: its finished runs (`runs.csv`), their histories, the CPU model each run
recorded, the seeds planned against those finished, its compute, and its data and budget in words.

`reporting` makes tables and reports of them; `findings` and `chapter_facts` compute what the pages state.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..core.errors import DataError
from ..core.suitedir import RUNS_TABLE, read_runs_table, read_suite_meta

#: How the pages name each data set.
DATASET_NAMES = {"digits": "scikit-learn's 8x8 digits", "fashion-mnist": "Fashion-MNIST", "cifar10": "CIFAR-10",
                 "imagefolder": "an image folder"}


def suite_scale(suite_dir: str | Path, runs: pd.DataFrame) -> str:
    """The data and budget a sweep's runs share, in words, read from its first run's `config.json` (and the seeds
    each configuration has finished).

    A page glues this instead of stating the scale by hand, so the prose follows the committed runs.
    """
    from ..core.rundir import CONFIG, read_json  # rundir imports torch; reading results should not

    if runs.empty:
        raise DataError(f"suite {str(suite_dir)!r} has no finished runs to describe")
    config = read_json(Path(suite_dir) / runs["run_dir"].iloc[0] / CONFIG, "run configuration")
    sizes = config["sizes"]
    seeds = runs.groupby("label")["seed"].nunique()  # a suite run in chunks may have more seeds of some configurations
    seed_count = str(seeds.min()) if seeds.min() == seeds.max() else f"{seeds.min()}-{seeds.max()}"
    return (f"{DATASET_NAMES.get(config['dataset'], config['dataset'])} at {config['image_size']} px, "
            f"{sizes['train']:,} training images ({sizes['val']:,} validation, {sizes['test']:,} test), "
            f"{config['epochs']} epoch{'s' if config['epochs'] != 1 else ''} in batches of {config['batch_size']}, "
            f"{seed_count} seed{'s' if seeds.max() != 1 else ''} per configuration")


def suite_progress(suite_dir: str | Path) -> pd.DataFrame:
    """Per configuration of a suite: the seeds planned and those finished (committed suites run in chunks)."""
    suite_dir = Path(suite_dir)
    planned = pd.DataFrame(read_suite_meta(suite_dir)["runs"])
    finished = {(row["label"], row["seed"]) for _, row in load_suite(suite_dir)[0].iterrows()}
    planned["finished"] = [(label, seed) in finished for label, seed in zip(planned["label"], planned["seed"])]
    table = planned.groupby("label", sort=False).agg(group=("group", "first"), planned=("seed", "size"),
                                                     finished=("finished", "sum"))
    return table.reset_index().rename(columns={"label": "configuration", "planned": "seeds planned",
                                               "finished": "seeds finished"})


class _Riding:
    """A frame kept in another frame's `attrs`: pandas compares and deep-copies attrs on every derived object, so
    this compares by identity and is never copied."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame

    def __deepcopy__(self, memo: dict) -> _Riding:
        return self


def fine_curves_of(histories: pd.DataFrame) -> pd.DataFrame:
    """The fine curves (`fine.csv` rows, tagged with label and seed) that `load_histories` attached to a suite's
    histories; an empty frame with those columns when its runs have none."""
    from ..core.rundir import FINE_COLUMNS

    riding = histories.attrs.get("fine")
    return riding.frame if isinstance(riding, _Riding) else pd.DataFrame(columns=[*FINE_COLUMNS, "label", "seed"])


def load_histories(suite_dir: Path, runs: pd.DataFrame) -> pd.DataFrame:
    """All history.csv rows of a suite, tagged with label and seed; the runs' fine curves (`fine.csv`, where they
    have them) ride along, tagged alike (`fine_curves_of`)."""
    from ..core.rundir import read_fine_curves, read_history

    frames, fine = [], []
    for _, row in runs.iterrows():
        history = read_history(suite_dir / row["run_dir"])
        frames.append(history.assign(label=row["label"], seed=row["seed"]))
        curves = read_fine_curves(suite_dir / row["run_dir"])
        if len(curves):
            fine.append(curves.assign(label=row["label"], seed=row["seed"]))
    histories = pd.concat(frames, ignore_index=True)
    if fine:
        histories.attrs["fine"] = _Riding(pd.concat(fine, ignore_index=True))
    return histories


def load_suite(suite_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A committed or finished suite's `runs.csv` and all its histories (empty frames when it is absent)."""
    if not (Path(suite_dir) / RUNS_TABLE).is_file():
        return pd.DataFrame(), pd.DataFrame()
    runs = read_runs_table(suite_dir)
    return runs, load_histories(Path(suite_dir), runs)


def suite_compute(suite_dir: str | Path) -> dict[str, float | int | str]:
    """What a suite cost, from `suite.json`: its runs' wall times added up and its own wall time, in hours."""
    meta = read_suite_meta(suite_dir)
    runs = read_runs_table(suite_dir) if (Path(suite_dir) / RUNS_TABLE).is_file() else pd.DataFrame()
    return {"suite": Path(suite_dir).name, "runs": len(runs), "run hours": meta.get("seconds", 0.0) / 3600,
            "wall hours": meta.get("wall_seconds", meta.get("seconds", 0.0)) / 3600}
