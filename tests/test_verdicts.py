"""Seed-paired tests, the four labels of a claim and Holm's correction, on synthetic seeds whose answer is known."""

import numpy as np
import pandas as pd
import pytest

from node_transfer.analysis.paired import (
    FAILS,
    HOLDS,
    UNDECIDED,
    claim_p_values,
    holm,
    not_shown,
    paired_compare,
    seeds_to_decide,
    verdict,
)
from node_transfer.analysis.verdicts import planned_seeds


def test_paired_test_sees_a_consistent_difference_that_intervals_miss():
    # seeds differ a lot from each other, but b is 1 point above a on every seed
    a = pd.Series([0.80, 0.90, 0.70, 0.85, 0.75])
    b = a + 0.01 + np.array([0.001, -0.001, 0.0005, -0.0005, 0.0])
    result = paired_compare(a, b, "test_acc", ("a", "b"), higher_is_better=True, margin=0.005)
    assert result.outcome == "a worse" and result.a_better_in == 0
    assert result.ci_high < 0 < result.p_value < 1e-4
    assert result.effect_size < -5  # d_z: the mean difference in units of its own SD
    assert verdict(result, "same") == FAILS  # 1 point apart, well beyond ±0.5
    # unpaired 95% intervals overlap widely: the old verdict would have been "indistinguishable"
    assert abs(a.mean() - b.mean()) < a.std()


def test_the_four_labels_of_an_equivalence_claim():
    a = pd.Series([0.900, 0.910, 0.905, 0.902, 0.908])
    same = paired_compare(a + np.array([0.001, -0.001, 0.0005, -0.0005, 0.0]), a, margin=0.005)
    assert same.outcome == "equivalent (±0.005)" and verdict(same, "same") == HOLDS
    noisy = paired_compare(a + np.array([0.03, -0.03, 0.02, -0.025, 0.004]), a, margin=0.005)
    assert verdict(noisy, "same") == UNDECIDED
    # lower on every seed, by 0.2 to 0.8 points: a real difference that may or may not pass the margin
    lower = paired_compare(a - np.array([0.002, 0.008, 0.004, 0.006, 0.005]), a, margin=0.005)
    assert lower.ci_high < 0 and lower.ci_low < -0.005 < lower.ci_high
    assert verdict(lower, "same") == "lower, equivalence not shown" == not_shown(-1, "same")
    one = paired_compare(pd.Series([0.9]), pd.Series([0.8]), margin=0.005)
    assert one.outcome.startswith("undecided") and verdict(one, "same") == UNDECIDED


def test_a_superiority_claim_needs_the_minimum_effect_not_just_significance():
    b = pd.Series([0.010, 0.012, 0.011, 0.009, 0.010])  # e.g. a fluctuation, lower is steadier
    big = paired_compare(b - 0.004 + np.array([0.0002, -0.0002, 0.0001, 0.0, -0.0001]), b, higher_is_better=False,
                         margin=0.0025)
    assert verdict(big, "better") == HOLDS
    tiny = paired_compare(b - 0.0005 + np.array([0.0001, -0.0001, 0.0, 0.00005, -0.00005]), b,
                          higher_is_better=False, margin=0.0025)
    assert tiny.ci_high < 0 and verdict(tiny, "better") == FAILS  # real, but smaller than counts: cannot hold
    edge = paired_compare(b - 0.002 + np.array([0.001, -0.001, 0.0008, -0.0008, 0.0]), b, higher_is_better=False,
                          margin=0.0025)
    assert edge.ci_high < 0 and edge.ci_low < -0.0025 and verdict(edge, "better") == "lower, minimum effect not shown"
    equal = paired_compare(b, b, higher_is_better=False, margin=0.0025)
    assert equal.outcome == "equal on every seed" and verdict(equal, "better") == FAILS
    assert verdict(paired_compare(b, b, margin=0.005), "same") == HOLDS
    with pytest.raises(ValueError, match="non-negative minimum effect"):
        verdict(paired_compare(b, b + 0.001, margin=-0.001), "better")


def test_labels_read_from_p_values_agree_with_the_interval_rules():
    rng = np.random.default_rng(1)
    for _ in range(200):
        d = pd.Series(rng.normal(rng.normal(0, 0.004), 0.004, size=5))
        result = paired_compare(d, pd.Series(np.zeros(5)), margin=0.005)
        p = claim_p_values(result, "same")
        assert (p["differs"] < 0.05) == (result.ci_low > 0 or result.ci_high < 0)
        assert (p["fails"] < 0.05) == (result.ci_low > 0.005 or result.ci_high < -0.005)
        better = claim_p_values(result, "better")
        assert (better["holds"] < 0.05) == (result.ci_low > 0)
        assert (better["fails"] < 0.05) == (result.ci_high < 0.005)


def test_holm_adjusts_step_down_and_keeps_order():
    adjusted = holm([0.01, 0.04, 0.03, np.nan, 0.005])
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, np.nan, 0.02], nan_ok=True)
    assert np.all(holm([0.5, 0.9]) <= 1.0) and holm([]).size == 0
    raw = np.random.default_rng(0).uniform(0, 0.2, 10)
    assert np.all(holm(raw) >= raw)


def test_seeds_are_paired_by_index_not_position():
    a = pd.Series([1.0, 2.0, 3.0], index=[0, 1, 2])
    b = pd.Series([3.1, 1.1, 2.1], index=[2, 0, 1])  # the same seeds, listed in another order
    result = paired_compare(a, b, higher_is_better=False)
    assert result.mean_diff == pytest.approx(-0.1) and result.ci_low == result.ci_high  # identical differences
    assert result.outcome == "a better" and result.n == 3 and result.seeds == [0, 1, 2]


def test_seeds_to_decide_is_where_the_same_mean_and_spread_would_decide():
    zero = pd.Series(0.0, index=range(4))
    # an SD of about 0.7 points around zero, margin 0.5 (like adjoint vs fc-sgd): about 9 seeds at alpha
    d = pd.Series([0.0066, -0.0066, 0.0033, -0.0033]) * 1.2
    close = paired_compare(d, zero, margin=0.005)
    n = seeds_to_decide(close, "same")

    def with_same_mean_and_sd(seeds: int) -> pd.Series:
        spread = np.linspace(-1, 1, seeds)
        return pd.Series(close.mean_diff + close.sd_diff * spread / spread.std(ddof=1))

    def label(seeds: int, alpha: float = 0.05) -> str:
        return verdict(paired_compare(with_same_mean_and_sd(seeds), pd.Series(0.0, index=range(seeds)),
                                      margin=0.005), "same", alpha=alpha)

    assert 6 <= n <= 12 and label(n) == HOLDS and label(n - 1) == UNDECIDED
    strict = seeds_to_decide(close, "same", alpha=0.05 / 11)  # Holm's first step asks for more
    assert strict > n and label(strict, 0.05 / 11) == HOLDS and label(strict - 1, 0.05 / 11) == UNDECIDED
    # a superiority claim far beyond its margin is decided by the seeds it has; one just below it never is
    clear = paired_compare(pd.Series([1.0, 1.2, 0.9]), pd.Series([0.0, 0.0, 0.0]), margin=0.5)
    assert seeds_to_decide(clear, "better") <= 3
    edge = paired_compare(pd.Series([0.44, 0.54, 0.49, 0.51]), pd.Series(0.0, index=range(4)), margin=0.5)
    assert seeds_to_decide(edge, "better", most=30) is None
    assert seeds_to_decide(paired_compare(pd.Series([0.9]), pd.Series([0.8]), margin=0.005), "same") is None


def test_planned_seeds_run_from_holms_last_step_to_its_first():
    noisy = paired_compare(pd.Series([0.004, -0.003, 0.006, -0.005]), pd.Series(0.0, index=range(4)), margin=0.005)
    low, high = planned_seeds(noisy, "same", family=11)
    assert low == seeds_to_decide(noisy, "same") and high == seeds_to_decide(noisy, "same", alpha=0.05 / 11)
    assert 4 < low < high
    assert all(np.isnan(planned_seeds(paired_compare(pd.Series([0.9]), pd.Series([0.8]), margin=0.005), "same", 11)))
    edge = paired_compare(pd.Series([0.44, 0.54, 0.49, 0.51]), pd.Series(0.0, index=range(4)), margin=0.5)
    assert planned_seeds(edge, "better", 11) == (np.inf, np.inf)
