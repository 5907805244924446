"""Seed-paired tests and the four verdict labels, with Holm's correction for a family of primary tests.

Runs with the same seed share the train/validation split and the starting checkpoint, so two configurations are
compared through their per-seed differences d = a - b: the mean difference with a paired t-interval (95%), its
effect size (Cohen's d_z = mean / SD of the differences), the paired t-test against zero, and tests against the
claim's margin (its minimum effect of interest, `statistics.Statistic.minimum_effect`).

A claim is either "a has the same value as b" (an equivalence claim: accuracy) or "a is better than b" (a
superiority claim: steadier, quicker, better calibrated). Each gets one of four labels:

- **holds**: equivalence shown by two one-sided tests (TOST) within ±margin; or, for a superiority claim, a
  better (the 95% interval excludes zero on a's side) by at least the margin on average (and by at least the
  statistic's `floor`, a guard of "holds" alone). A difference smaller than the margin can never hold.
- **does not hold**: the 95% interval lies wholly beyond the margin (equivalence), or wholly below an advantage
  of one margin (superiority: a is worse, equal, or better by less than counts).
- **lower / higher, equivalence (or minimum effect) not shown**: the interval excludes zero, so a and b differ,
  but not in a way that decides the claim (e.g. rk's accuracy is lower than the baseline's, by an amount that
  may or may not exceed the margin).
- **undecided**: the seeds cannot tell.

Each label rests on one p-value (`claim_p_values`): "holds" on the TOST p (equivalence) or on the doubled
one-sided p of a better (superiority), "does not hold" on the doubled one-sided p against the margin,
"differ" on the two-sided p against zero; at α = 0.05 these are exactly the interval rules above. For a family
of primary tests each of the three p-values is adjusted by Holm's step-down method over the family (`holm`) and
the label is read from the adjusted ones. The sensitivity checks swap the t-test for Wilcoxon's signed-rank test
(`METHODS`) and Holm for Benjamini-Hochberg (`CORRECTIONS`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from .statistics import statistic

HOLDS, FAILS, UNDECIDED = "holds", "does not hold", "undecided"
#: A steadier validation loss that comes with a worse training fit (`verdicts.overfitting_rule`).
OVERFITS_MORE_SLOWLY = "overfits more slowly"
ALPHA = 0.05
#: Differences whose SD is below this are identical on every seed (float noise aside).
IDENTICAL = 1e-12
KINDS = ("same", "better")
#: The most seeds `seeds_to_decide` plans for: beyond it, "more than" this.
MOST_SEEDS_PLANNED = 50
#: The one-sample tests behind the labels: the paired t-test (declared) or Wilcoxon's signed-rank test.
METHODS = ("t", "wilcoxon")


def not_shown(mean_diff: float, kind: str) -> str:
    """The third label: a and b differ (interval excludes zero) without deciding the claim."""
    return f"{'higher' if mean_diff > 0 else 'lower'}, {'equivalence' if kind == 'same' else 'minimum effect'} " \
           "not shown"


@dataclass
class PairedComparison:
    """a against b on one statistic, seeds paired: d = a - b."""

    statistic: str
    a: str
    b: str
    n: int
    mean_a: float
    mean_b: float
    mean_diff: float
    ci_low: float
    ci_high: float
    p_value: float  # two-sided, against zero
    margin: float | None
    tost_p: float
    a_better_in: int
    outcome: str  # neutral: "a better", "a worse", "equivalent (±m)", "equal on every seed", "undecided"
    higher_is_better: bool = True
    sd_diff: float = float("nan")
    effect_size: float = float("nan")  # Cohen's d_z
    differences: pd.Series = field(default_factory=lambda: pd.Series(dtype=float))
    floor: float = 0.0  # the least advantage that may hold, besides the margin (a guard of "holds" only)
    correlation: float = float("nan")  # Pearson's r of a and b across the paired seeds: what pairing buys
    method: str = "t"  # the one-sample test of the labels (`METHODS`)
    details: dict = field(default_factory=dict)  # how the values were computed (window, target, seeds left out)

    @property
    def seeds(self) -> list[int]:
        return [int(s) for s in self.differences.index]

    @property
    def advantage(self) -> float:
        """The mean difference oriented so that positive means a is better."""
        return self.mean_diff if self.higher_is_better else -self.mean_diff


def percent_of_control(result: PairedComparison, kind: str) -> dict[str, float]:
    """A stability difference and its interval in % of the control's mean level ("-3 % [-47 %, +42 %]"), and the
    minimum effect likewise; NaN for other kinds, whose units speak for themselves."""
    keys = ("difference_pct", "ci_low_pct", "ci_high_pct", "minimum_effect_pct")
    level = result.mean_b
    if kind != "stability" or not np.isfinite(level) or level == 0:
        return dict.fromkeys(keys, float("nan"))
    values = (result.mean_diff, result.ci_low, result.ci_high, result.margin or 0.0)
    return {key: 100 * value / abs(level) for key, value in zip(keys, values)}


def _one_sided(d: np.ndarray, mu: float, greater: bool, method: str = "t") -> float:
    """p of a one-sided paired test (t, or Wilcoxon's signed rank) that d lies above (or below) mu; exact when d is
    constant."""
    if float(d.std(ddof=1)) < IDENTICAL:
        return 0.0 if (d.mean() > mu if greater else d.mean() < mu) else 1.0
    alternative = "greater" if greater else "less"
    if method == "wilcoxon":
        shifted = d - mu
        if not np.any(shifted):
            return 1.0
        return float(stats.wilcoxon(shifted, alternative=alternative, zero_method="zsplit").pvalue)
    return float(stats.ttest_1samp(d, mu, alternative=alternative).pvalue)


def paired_compare(a: pd.Series, b: pd.Series, statistic: str = "", names: tuple[str, str] = ("a", "b"),
                   higher_is_better: bool = True, margin: float | None = None, confidence: float = 0.95,
                   floor: float = 0.0, method: str = "t") -> PairedComparison:
    """Compare two configurations whose values are indexed by seed, through the per-seed differences.

    Seeds present in only one of a, b are left out; NaNs too. `outcome` is the neutral reading ("a better" when
    the interval excludes zero on a's side, "equivalent (±margin)" when TOST passes, ...); claims read
    `verdict` instead. `floor` guards "holds" of a superiority claim; `method` picks the labels' test."""
    if method not in METHODS:
        raise ValueError(f"a paired test's method is one of {METHODS}, not {method!r}")
    paired = pd.concat({"a": a, "b": b}, axis=1).dropna()
    differences = (paired["a"] - paired["b"]).astype(float).sort_index()
    d = differences.to_numpy()
    n = len(d)
    nan = float("nan")
    mean_a, mean_b = (float(paired[c].mean()) if n else nan for c in ("a", "b"))
    mean_diff = float(d.mean()) if n else nan
    better = (d > 0) if higher_is_better else (d < 0)
    ci_low = ci_high = p_value = tost_p = sd = effect = nan
    alpha = 1 - confidence
    if n >= 2:
        sd = float(d.std(ddof=1))
        if sd < IDENTICAL:  # identical differences on every seed: the interval collapses onto the mean
            ci_low = ci_high = mean_diff
            p_value = 1.0 if mean_diff == 0 else 0.0
            effect = 0.0 if mean_diff == 0 else math.copysign(math.inf, mean_diff)
        else:
            half = float(stats.t.ppf(1 - alpha / 2, n - 1)) * sd / math.sqrt(n)
            ci_low, ci_high = mean_diff - half, mean_diff + half
            p_value = float(stats.ttest_1samp(d, 0.0).pvalue)
            effect = mean_diff / sd
        if margin is not None:
            tost_p = max(_one_sided(d, -margin, True, method), _one_sided(d, margin, False, method))
    if n < 2:
        outcome = "undecided (fewer than 2 paired seeds)"
    elif np.all(d == 0):
        outcome = "equal on every seed"
    elif ci_low > 0 or ci_high < 0:
        outcome = "a better" if (ci_low > 0) == higher_is_better else "a worse"
    elif margin is not None and tost_p < alpha:
        outcome = f"equivalent (±{margin:g})"
    else:
        outcome = "undecided"
    if method == "wilcoxon" and n >= 2 and sd >= IDENTICAL:
        p_value = min(1.0, 2 * min(_one_sided(d, 0.0, True, method), _one_sided(d, 0.0, False, method)))
    correlation = nan
    if n >= 3 and paired["a"].std() > IDENTICAL and paired["b"].std() > IDENTICAL:
        correlation = float(np.corrcoef(paired["a"].astype(float), paired["b"].astype(float))[0, 1])
    return PairedComparison(statistic, names[0], names[1], n, mean_a, mean_b, mean_diff, ci_low, ci_high, p_value,
                            margin, tost_p, int(better.sum()), outcome, higher_is_better, sd, effect, differences,
                            floor, correlation, method)


def describe(result: PairedComparison) -> str:
    """'test accuracy: rk 90.65 vs baseline 91.17; difference -0.52 [-0.75, -0.30] points, d_z -2.9, rk better
    in 0/5 seeds' in the statistic's own scale."""
    s = statistic(result.statistic)
    if result.n == 0:
        return f"{s.label}: no paired seeds"
    interval = f" [{s.show(result.ci_low, True)}, {s.show(result.ci_high, True)}]" if result.n >= 2 else ""
    effect = f", d_z {result.effect_size:+.1f}" if np.isfinite(result.effect_size) else ""
    return (f"{s.label}: {result.a} {s.show(result.mean_a)} vs {result.b} {s.show(result.mean_b)}; difference "
            f"{s.show(result.mean_diff, True)}{interval}{' ' + s.unit if s.unit else ''}{effect}, {result.a} better "
            f"in {result.a_better_in}/{result.n} seeds")


def claim_p_values(result: PairedComparison, kind: str) -> dict[str, float]:
    """The p-value behind each label (module docstring): "holds", "fails" (does not hold), "differs"."""
    if kind not in KINDS:
        raise ValueError(f"a claim's kind is one of {KINDS}, not {kind!r}")
    nan = float("nan")
    if result.n < 2 or result.margin is None:
        return {"holds": nan, "fails": nan, "differs": nan}
    d = result.differences.to_numpy(dtype=float)
    margin, method = result.margin, result.method
    if kind == "same":
        holds = result.tost_p
        fails = 2 * min(_one_sided(d, margin, True, method), _one_sided(d, -margin, False, method))
    else:
        g = d if result.higher_is_better else -d  # the advantage of a
        holds = 2 * _one_sided(g, 0.0, True, method)
        fails = 2 * _one_sided(g, margin, False, method)
    return {"holds": min(1.0, holds), "fails": min(1.0, fails), "differs": result.p_value}


def verdict(result: PairedComparison, kind: str, p: dict[str, float] | None = None, alpha: float = ALPHA) -> str:
    """The claim's label from its p-values (`claim_p_values`, or Holm-adjusted ones passed as `p`)."""
    if result.n < 2 or result.margin is None:
        return UNDECIDED
    if kind == "better" and not result.margin >= 0:
        raise ValueError(f"a superiority claim needs a non-negative minimum effect, not {result.margin!r}")
    p = p if p is not None else claim_p_values(result, kind)
    if p["holds"] < alpha and (kind == "same" or result.advantage >= max(result.margin, result.floor)):
        return HOLDS
    if p["fails"] < alpha:
        return FAILS
    if p["differs"] < alpha:
        return not_shown(result.mean_diff, kind)
    return UNDECIDED


def holm(p_values: list[float] | np.ndarray | pd.Series) -> np.ndarray:
    """Holm's step-down adjusted p-values (same order as given; NaNs stay NaN and do not count in the family)."""
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(p.shape, np.nan)
    finite = np.flatnonzero(~np.isnan(p))
    m = len(finite)
    order = finite[np.argsort(p[finite], kind="stable")]
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted


def benjamini_hochberg(p_values: list[float] | np.ndarray | pd.Series) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (false discovery rate; same order, NaNs kept), for the sensitivity check."""
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(p.shape, np.nan)
    finite = np.flatnonzero(~np.isnan(p))
    m = len(finite)
    order = finite[np.argsort(p[finite], kind="stable")][::-1]
    running = 1.0
    for rank, index in zip(range(m, 0, -1), order):
        running = min(running, m * p[index] / rank)
        adjusted[index] = running
    return adjusted


#: The corrections a family of primary tests may take: Holm (declared) or Benjamini-Hochberg (a sensitivity check).
CORRECTIONS = {"holm": holm, "bh": benjamini_hochberg}


def seeds_to_decide(result: PairedComparison, kind: str, alpha: float = ALPHA,
                    most: int = MOST_SEEDS_PLANNED, start: int = 2) -> int | None:
    """The paired seeds at which `verdict` would decide the claim (holds or does not hold) if the mean difference
    and its SD stayed as measured: a planning estimate for the next runs, not a result (new seeds move both).
    None where two seeds are not yet in, or where `most` seeds would not decide (a mean close to the margin).
    `start` skips seed counts known not to decide (a stricter α never decides with fewer seeds than a looser one)."""
    if result.n < 2 or result.margin is None or not np.isfinite(result.sd_diff):
        return None
    for n in range(max(start, 2), most + 1):
        spread = np.linspace(-1.0, 1.0, n)
        d = pd.Series(result.mean_diff + result.sd_diff * spread / spread.std(ddof=1))  # that mean and SD exactly
        planned = paired_compare(d, pd.Series(0.0, index=d.index), higher_is_better=result.higher_is_better,
                                 margin=result.margin)
        if verdict(planned, kind, alpha=alpha) in (HOLDS, FAILS):
            return n
    return None
