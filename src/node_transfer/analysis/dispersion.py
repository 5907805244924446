"""Stability in the senses the fine-tuning literature uses besides wobble: spread across seeds and runs that diverge.

Mosbach et al. (2021) and Dodge et al. (2020) call fine-tuning unstable when its outcome varies from seed to seed
and when some runs fail outright. For each matched pair of a regime's primary tests (a NODE arm and its control):

- **spread**: the SD of final test accuracy across the paired seeds, as the ratio SD(a) / SD(b) with a paired
  bootstrap 95 % interval (seeds resampled together, `BOOTSTRAP` draws) and the Brown-Forsythe test (Levene's
  test about the median; it treats the arms as independent, so it is the rougher of the two). The NODE counts as
  less spread when the whole interval lies below 1 and the ratio is at most 1 - `SPREAD_MARGIN`.
- **divergence**: the runs whose losses became non-finite, that collapsed (their last validation accuracy more
  than `COLLAPSE` below their best), whose solver fell back to a fixed step, or that failed with an error, as k
  of n per arm, with McNemar's exact test on the seeds where only one arm diverged.

Both are exploratory (uncorrected) rows of `claims.csv`, beside the within-run fluctuation of the primary tests.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from ..core.rundir import ERROR, METRICS
from ..core.suitedir import run_dir_name
from .claims import Regime
from .paired import FAILS, HOLDS, UNDECIDED
from .statistics import by_seed
from .verdicts import DECLARED, Options, paired_seeds, regime_options

#: Paired bootstrap draws of the SD ratio (fixed generator: the interval is the same on every read).
BOOTSTRAP = 4000
#: The least reduction of the control's spread that counts (a quarter, as for fluctuation).
SPREAD_MARGIN = 0.25
#: A run whose last validation accuracy lies this far below its best has collapsed (5 points).
COLLAPSE = 0.05


def sd_ratio(a: pd.Series, b: pd.Series, draws: int = BOOTSTRAP) -> tuple[float, float, float, int]:
    """(SD(a) / SD(b), bootstrap 2.5 %, 97.5 %, n) over the seeds both have; NaN where fewer than 3 seeds."""
    paired = pd.concat({"a": a, "b": b}, axis=1).dropna()
    n = len(paired)
    if n < 3 or paired["b"].std() == 0:
        return float("nan"), float("nan"), float("nan"), n
    values = paired.to_numpy(dtype=float)
    ratio = float(values[:, 0].std(ddof=1) / values[:, 1].std(ddof=1))
    rng = np.random.default_rng(0)
    picks = values[rng.integers(0, n, size=(draws, n))]
    sd = picks.std(axis=1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):  # a draw of one seed repeated has no spread
        ratios = sd[:, 0] / sd[:, 1]
    ratios = ratios[np.isfinite(ratios)]
    return ratio, float(np.quantile(ratios, 0.025)), float(np.quantile(ratios, 0.975)), n


def spread_label(ratio: float, low: float, high: float) -> str:
    """The label of "a is less spread than b" from the ratio and its interval (module docstring)."""
    if not math.isfinite(ratio):
        return UNDECIDED
    if high < 1 and ratio <= 1 - SPREAD_MARGIN:
        return HOLDS
    if low > 1 - SPREAD_MARGIN:
        return FAILS
    if high < 1 or low > 1:
        return f"{'lower' if high < 1 else 'higher'}, minimum effect not shown"
    return UNDECIDED


def diverged(runs: pd.DataFrame, histories: pd.DataFrame, label: str) -> pd.Series:
    """Per seed of `label`: whether its run diverged or fell back (module docstring)."""
    flags = {}
    for _, run in runs[runs["label"] == label].iterrows():
        history = histories[(histories["label"] == label) & (histories["seed"] == run["seed"])].sort_values("epoch")
        losses = history[["train_loss", "val_loss"]].to_numpy(dtype=float)
        acc = history["val_acc"].to_numpy(dtype=float)
        collapsed = len(acc) > 0 and acc[-1] < acc.max() - COLLAPSE
        flags[int(run["seed"])] = bool(not np.isfinite(losses).all() or collapsed
                                       or float(run.get("fallbacks", 0) or 0) > 0)
    return pd.Series(flags, dtype=bool)


def failed_seeds(suite_dir: Path, label: str) -> set[int]:
    """Seeds of `label` whose run directory holds an error and no metrics: runs that failed outright."""
    found = set()
    for run_dir in Path(suite_dir).glob(run_dir_name(label, "*")):
        seed = run_dir.name.rsplit("-s", 1)[-1]
        if seed.isdigit() and (run_dir / ERROR).is_file() and not (run_dir / METRICS).is_file():
            found.add(int(seed))
    return found


def _pairs(regime: Regime) -> list[tuple[str, str]]:
    """The matched pairs of a regime's primary tests, in declaration order."""
    return list(dict.fromkeys((test.a, test.b) for test in regime.primary()))


def senses_rows(regime: Regime, runs: pd.DataFrame, histories: pd.DataFrame, options: Options = DECLARED,
                suite_dir: Path | None = None) -> list[dict]:
    """The spread and divergence rows of one regime, on the seeds its tests pair (`verdicts.paired_seeds`)."""
    rows = []
    present = set(runs["label"]) if len(runs) else set()
    options = regime_options(regime, options)
    for a, b in _pairs(regime):
        if not {a, b} <= present:
            continue
        seeds = set(paired_seeds(runs, a, b, options))
        values = {label: by_seed(runs, label, "test_acc") for label in (a, b)}
        values = {label: v[v.index.isin(seeds)] for label, v in values.items()}
        ratio, low, high, n = sd_ratio(values[a], values[b])
        both = pd.concat(values, axis=1).dropna()
        levene = float(stats.levene(both[a], both[b], center="median").pvalue) if n >= 3 else float("nan")
        sd_a, sd_b = (float(both[label].std(ddof=1)) * 100 if n >= 2 else float("nan") for label in (a, b))
        base = {"regime": regime.title, "claim": 2, "role": "exploratory", "a": a, "b": b, "n": n,
                "seeds": ", ".join(map(str, sorted(both.index.astype(int))))}
        rows.append({**base, "test": f"{a}: less spread across seeds than {b} (test accuracy)",
                     "name": "test_acc_spread", "statistic": "SD of test accuracy across seeds, ratio",
                     "unit": "x", "difference": ratio, "ci_low": low, "ci_high": high, "p_value": levene,
                     "minimum_effect": SPREAD_MARGIN, "verdict": spread_label(ratio, low, high),
                     "measured": (f"SD of test accuracy: {a} {sd_a:.2f}, {b} {sd_b:.2f} points; ratio {ratio:.2f} "
                                  f"[{low:.2f}, {high:.2f}] (paired bootstrap), Brown-Forsythe p {levene:.2f}")})
        flags = {label: diverged(runs, histories, label) for label in (a, b)}
        failed = {label: failed_seeds(suite_dir, label) if suite_dir is not None else set() for label in (a, b)}
        for label, lost in failed.items():
            for seed in lost:
                flags[label].loc[seed] = True
        counted = seeds | failed[a] | failed[b]  # a run that failed outright is a divergence, not a missing seed
        flags = {label: f[f.index.isin(counted)] for label, f in flags.items()}
        joint = pd.concat(flags, axis=1).dropna().astype(bool)
        only_a, only_b = int((joint[a] & ~joint[b]).sum()), int((~joint[a] & joint[b]).sum())
        mcnemar = float(stats.binomtest(only_a, only_a + only_b).pvalue) if only_a + only_b else 1.0
        count_a, count_b = int(flags[a].sum()), int(flags[b].sum())
        label = ("none diverged" if not count_a + count_b else
                 f"{'fewer' if count_a < count_b else 'more' if count_a > count_b else 'as many'} in {a}"
                 + ("" if mcnemar < 0.05 else ", not significant"))
        rows.append({**base, "test": f"{a}: fewer runs that diverge than {b}", "name": "divergence_rate",
                     "statistic": "runs that diverged or fell back", "unit": "runs", "n": len(joint),
                     "difference": count_a - count_b, "ci_low": float("nan"), "ci_high": float("nan"),
                     "p_value": mcnemar, "minimum_effect": 1, "verdict": label,
                     "measured": (f"diverged or fell back: {a} {count_a} of {len(flags[a])}, {b} {count_b} of "
                                  f"{len(flags[b])}; McNemar p {mcnemar:.2f}")})
    return rows


def senses_table(data: dict[Regime, tuple[pd.DataFrame, pd.DataFrame]], options: Options = DECLARED,
                 suite_dirs: dict[Regime, Path] | None = None) -> pd.DataFrame:
    """The spread and divergence rows of every regime of a study."""
    rows = [row for regime, (runs, histories) in data.items()
            for row in senses_rows(regime, runs, histories, options, (suite_dirs or {}).get(regime))]
    return pd.DataFrame(rows)
