"""The statistics registry, the stability statistics and the calibration error, on synthetic runs whose answer is
known (seed-paired tests and their labels: test_verdicts.py)."""

import numpy as np
import pandas as pd
import pytest

from node_transfer.analysis.statistics import (
    STATISTICS,
    common_window,
    names,
    pair_window,
    stability_statistics,
    statistic,
    trend_residual_sd,
)
from node_transfer.core.calibration import CalibrationBins
from node_transfer.core.errors import ConfigError


def curve(loss, acc=None, train_loss=None):
    acc = acc if acc is not None else [0.5] * len(loss)
    train_loss = train_loss if train_loss is not None else np.linspace(1.0, 0.1, len(loss))  # steady descent
    return pd.DataFrame({"epoch": range(1, len(loss) + 1), "val_loss": loss, "val_acc": acc,
                         "train_loss": train_loss})


def test_the_registry_is_the_one_place_statistics_are_described():
    assert statistic("test_acc").higher_is_better and not statistic("val_loss_fluctuation").higher_is_better
    assert set(names("stability")) == {"val_loss_fluctuation", "train_loss_fluctuation", "val_loss_rise",
                                       "train_loss_rise", "val_acc_drop", "val_acc_worst_drop",
                                       "val_loss_fluctuation_quadratic", "val_loss_sd", "val_loss_change_sd",
                                       "val_acc_fluctuation", "fine_val_loss_fluctuation"}
    assert all(STATISTICS[s.alternative] for s in STATISTICS.values() if s.alternative)
    with pytest.raises(ConfigError, match="val_loss_wobble.*one of"):
        statistic("val_loss_wobble")
    assert statistic("test_acc").show(0.0052, signed=True) == "+0.52"


def test_minimum_effects_scale_with_the_control_and_never_vanish():
    accuracy, fluctuation = statistic("test_acc"), statistic("val_loss_fluctuation")
    assert accuracy.minimum_effect(0.9) == 0.005  # ±0.5 points whatever the level
    assert fluctuation.minimum_effect(0.02) == pytest.approx(0.005)  # a quarter of the control's level
    # one margin for both directions: the loss level no longer moves it ...
    assert fluctuation.minimum_effect(0.0015) == pytest.approx(0.000375)
    # ... it only sets the floor a "holds" must also clear (1 % of a loss of 0.16)
    assert fluctuation.holds_floor(0.16) == pytest.approx(0.0016) and accuracy.holds_floor(0.16) == 0.0
    assert all(s.minimum_effect(0.0) > 0 for s in STATISTICS.values() if s.kind != "stability" and s.minimum)


def test_steady_descent_and_convergence_are_not_instability():
    descending = stability_statistics(curve([2.0, 1.5, 1.0, 0.6, 0.3, 0.1]))
    plateau = stability_statistics(curve([0.30, 0.30, 0.30, 0.30, 0.30, 0.30]))
    oscillating = stability_statistics(curve([0.5, 0.4, 0.6, 0.4, 0.6, 0.4]))
    assert descending["val_loss_rise"] == 0.0 and plateau["val_loss_rise"] == 0.0
    assert plateau["val_loss_fluctuation"] == pytest.approx(0.0, abs=1e-12)
    # the old statistic ranked the steep, steady descent as the least stable of the three
    assert descending["val_loss_tv"] > oscillating["val_loss_tv"] > plateau["val_loss_tv"]
    # epochs 4..6 against their predecessors: 0.6 -> 0.4 falls, 0.4 -> 0.6 rises by 0.2, 0.6 -> 0.4 falls
    assert oscillating["val_loss_rise"] == pytest.approx(0.2 / 3)
    assert oscillating["stability_window"] == 3 and oscillating["val_loss_fluctuation"] > 0.1


def test_the_other_fluctuation_statistics_of_the_sensitivity_table():
    parabola = np.array([(x - 5) ** 2 / 50 + 0.2 for x in range(11)])
    wobble = np.array([0.3, 0.32, 0.3, 0.32, 0.3, 0.32, 0.3, 0.32, 0.3, 0.32, 0.3])
    bent = stability_statistics(curve(parabola), window=10)
    assert bent["val_loss_fluctuation"] > 0.01 and bent["val_loss_fluctuation_quadratic"] == pytest.approx(0, abs=1e-9)
    wobbly = stability_statistics(curve(wobble), window=10)
    assert wobbly["val_loss_sd"] == pytest.approx(np.std(wobble, ddof=1))
    assert wobbly["val_loss_change_sd"] == pytest.approx(np.std(np.diff(wobble), ddof=1))
    assert wobbly["val_acc_fluctuation"] == pytest.approx(0.0, abs=1e-12)  # a flat accuracy


def test_fluctuation_is_blind_to_trends_and_steady_overfitting_but_not_to_wobble():
    assert trend_residual_sd(np.linspace(0.2, 0.8, 10)) == pytest.approx(0.0, abs=1e-12)  # steady overfitting
    assert trend_residual_sd(np.linspace(1.0, 0.1, 10)) == pytest.approx(0.0, abs=1e-12)  # steady descent
    wobble = np.linspace(0.2, 0.8, 10) + 0.05 * (-1.0) ** np.arange(10)
    assert trend_residual_sd(wobble) == pytest.approx(0.05, rel=0.15)
    assert np.isnan(trend_residual_sd([0.1, 0.2]))
    overfitting = stability_statistics(curve([0.6, 0.5, 0.55, 0.6, 0.65, 0.7]))
    assert overfitting["val_loss_rise"] == pytest.approx(0.05)  # the rise counts steady overfitting...
    assert overfitting["val_loss_fluctuation"] == pytest.approx(0.0, abs=1e-12)  # ...the fluctuation does not


def test_overfitting_is_a_validation_rise_and_a_training_blow_up_is_a_training_rise():
    overfitting = stability_statistics(curve([0.6, 0.5, 0.55, 0.6, 0.65, 0.7]))  # training loss still falls
    assert overfitting["val_loss_rise"] == pytest.approx(0.05) and overfitting["train_loss_rise"] == 0.0
    blow_up = stability_statistics(curve([0.6] * 6, train_loss=[0.9, 0.5, 0.36, 0.40, 0.45, 0.51]))
    # the last 3 changes: +0.04, +0.05, +0.06 (the fall into epoch 3 lies before the window)
    assert blow_up["train_loss_rise"] == pytest.approx(0.05) and blow_up["val_loss_rise"] == 0.0


def test_accuracy_drops_and_the_worst_fall_within_the_window():
    stats = stability_statistics(curve([1.0] * 6, [0.5, 0.9, 0.93, 0.507, 0.8, 0.9]), window=3)
    assert stats["val_acc_drop"] == pytest.approx((0.93 - 0.507) / 3)
    assert stats["val_acc_worst_drop"] == pytest.approx(0.93 - 0.507)
    assert np.isnan(stability_statistics(curve([1.0]))["val_loss_rise"])
    assert common_window([30, 30, 8]) == 4 and common_window([1, 30]) == 0
    assert common_window([8, 12], "longer") == 6 and common_window([30], "longer") == 22
    assert common_window([8, 12], "shorter") == 2 and pair_window(30, 7, "shorter") == 2
    assert pair_window(30, 9) == 5 and pair_window(9, 30) == 5  # the shorter run of the pair sets it
    with pytest.raises(ConfigError, match="window.*one of"):
        common_window([8], "quarter")


def test_expected_calibration_error_of_known_predictions():
    import torch

    bins = CalibrationBins(bins=10)
    # 4 samples at confidence 0.9 (softmax of two logits), 3 right: |0.75 - 0.9| = 0.15
    logit = float(np.log(0.9 / 0.1))
    logits = torch.tensor([[logit, 0.0]] * 4)
    bins.add(logits, torch.tensor([0, 0, 0, 1]))
    assert bins.ece() == pytest.approx(0.15, abs=1e-6)
    bins.add(torch.tensor([[0.0, 0.0]] * 4), torch.tensor([0, 1, 0, 1]))  # confidence 0.5, accuracy 0.5
    assert bins.ece() == pytest.approx(0.075, abs=1e-6)
    assert np.isnan(CalibrationBins().ece())


def test_fine_curve_fluctuation_reads_the_pairs_late_epochs_on_made_up_curves():
    from node_transfer.analysis.fine import MIN_FINE_POINTS, fine_values

    rows = []
    for label, wobble in (("rk", 0.05), ("fc-adam", 0.01)):
        for seed, epochs in ((0, 6), (1, 6), (2, 1)):
            for epoch in range(1, epochs + 1):
                for k in range(8):  # eight evaluations an epoch, around a falling trend
                    step = (epoch - 1) * 8 + k
                    rows.append({"label": label, "seed": seed, "epoch": epoch, "step": step,
                                 "val_loss": 1.0 - 0.01 * step + wobble * (-1) ** k})
    fine = pd.DataFrame(rows)
    a, b, points, left_out = fine_values(fine, "rk", "fc-adam", [0, 1, 2, 3])
    assert points == {0: 24, 1: 24} and left_out == [2, 3]  # 3 late epochs x 8; too short; no curve
    assert a[0] == pytest.approx(0.05, rel=0.1) and b[0] == pytest.approx(0.01, rel=0.1)  # the wobble, not the trend
    assert MIN_FINE_POINTS > 1


def test_fine_curves_ride_with_a_suites_histories_through_the_paired_tests(tmp_path):
    from node_transfer.analysis.verdicts import compare
    from node_transfer.core.rundir import FINE_COLUMNS, write_history
    from node_transfer.suites.results import fine_curves_of, load_histories

    rng = np.random.default_rng(0)
    runs = []
    for label in ("rk", "fc-adam"):
        for seed in range(3):
            run_dir = tmp_path / f"{label}-s{seed}"
            run_dir.mkdir()
            epochs = [{"epoch": e, "train_loss": 0.1, "train_acc": 0.9, "val_loss": 0.3 + 0.01 * rng.standard_normal(),
                       "val_acc": 0.9, "seconds": 1.0, "lr": 1e-3} for e in range(1, 9)]
            write_history(epochs, run_dir / "history.csv")
            fine = [{"epoch": e, "batch": k + 1, "step": (e - 1) * 8 + k + 1, "train_loss": 0.1,
                     "val_loss": 0.3 + 0.02 * rng.standard_normal(), "val_acc": 0.9} for e in range(1, 9)
                    for k in range(8)]
            write_history(fine, run_dir / "fine.csv", FINE_COLUMNS)
            runs.append({"label": label, "seed": seed, "run_dir": run_dir.name, "optimizer": "adam"})
    runs = pd.DataFrame(runs)
    histories = load_histories(tmp_path, runs)
    assert len(fine_curves_of(histories)) == 6 * 64 and fine_curves_of(histories[histories["seed"] == 0]).shape[0]
    for name in ("fine_val_loss_fluctuation", "val_loss_fluctuation"):  # derived frames keep working with it
        result = compare(runs, histories, "rk", "fc-adam", name)
        assert result.n == 3 and np.isfinite(result.mean_diff), name
    assert compare(runs, histories, "rk", "fc-adam", "fine_val_loss_fluctuation").details["windows"] == \
        {0: 32, 1: 32, 2: 32}  # the last 4 of 8 epochs, 8 points each
